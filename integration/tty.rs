//! Terminals: process.terminal with --console-socket (the pty master, /dev/pts/N, consoleSize),
//! terminal without a console socket (refused for create and run -d; attached run and exec -t
//! relay the caller's terminal: stdin/stdout, raw mode, window size, signals).

use crate::common::*;
use serde_json::json;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A bundle with a terminal, running `sh -c script`.
fn tty_bundle(ctx: &Ctx, script: &str) -> Bundle {
    let mut b = ctx.bundle();
    b.set("/process/terminal", json!(true));
    b.sh(script);
    b
}

fn lines(out: &str) -> Vec<String> {
    out.lines().map(|l| l.trim_end_matches('\r').to_string()).collect()
}

/// create + --console-socket: `tty` prints /dev/pts/N, `stty size` the config's consoleSize,
/// stdio are the terminal.
#[test]
fn tty_create_console_socket_size() {
    let ctx = Ctx::new("ttysize");
    let sock = ConsoleSocket::new(&ctx);
    let mut b = tty_bundle(&ctx, "tty; stty size; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty");
    b.set("/process/consoleSize", json!({"height": 33, "width": 101}));
    let id = ctx.id("sz");
    b.write_config(&id);
    ctx.cmd(&["create", "--bundle", b.dir.to_str().unwrap(), "--console-socket", sock.path.to_str().unwrap(), &id])
        .ok();
    let master = sock.recv_master(Duration::from_secs(10));
    ctx.start(&id).ok();
    let out = read_pty(&master, Duration::from_secs(10));
    let l = lines(&out);
    assert_eq!(l.len(), 3, "{out:?}");
    let n = l[0].strip_prefix("/dev/pts/").unwrap_or_else(|| panic!("tty: {out:?}"));
    assert!(n.parse::<u32>().is_ok(), "{out:?}");
    assert_eq!(l[1], "33 101", "{out:?}");
    assert_eq!(l[2], "all-tty", "{out:?}");
}

/// The engine resizes the pty through the master (TIOCSWINSZ): the process sees the new size.
#[test]
fn tty_resize_through_master() {
    let ctx = Ctx::new("ttyresize");
    let sock = ConsoleSocket::new(&ctx);
    let mut b = tty_bundle(&ctx, "stty size; read x; stty size");
    b.set("/process/consoleSize", json!({"height": 10, "width": 20}));
    let id = ctx.id("rs");
    b.write_config(&id);
    ctx.track(&id);
    ctx.cmd(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), "--console-socket", sock.path.to_str().unwrap(), &id])
        .ok();
    let master = sock.recv_master(Duration::from_secs(10));
    let mut seen = Vec::new();
    assert!(read_until(&master, &mut seen, "10 20", Duration::from_secs(10)), "{:?}", String::from_utf8_lossy(&seen));
    let ws = libc::winsize { ws_row: 44, ws_col: 132, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ on the received master with a live winsize.
    assert_eq!(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    nix::unistd::write(&master, b"go\n").unwrap();
    let out = String::from_utf8_lossy(&seen).into_owned() + &read_pty(&master, Duration::from_secs(10));
    let l = lines(&out);
    assert_eq!(l, ["10 20", "go", "44 132"], "{out:?}");
}

/// A terminal without a console socket is refused for create and run -d (nothing could hold
/// the pty), with one line and nothing left behind.
#[test]
fn tty_without_console_socket_refused_when_detached() {
    let ctx = Ctx::new("ttynosock");
    for args in [&["create"][..], &["run", "-d"][..]] {
        let mut b = tty_bundle(&ctx, "true");
        let id = ctx.id("ns");
        b.write_config(&id);
        ctx.track(&id);
        let snap = ctx.snapshot(&b);
        let mut a = args.to_vec();
        a.extend_from_slice(&["--bundle", b.dir.to_str().unwrap(), &id]);
        let o = ctx.cmd(&a);
        if is_runc() {
            o.fails();
        } else {
            o.one_line_error(&["console"]);
        }
        ctx.assert_nothing_left(&snap, &b, &id);
    }
}

// ---------------------------------------------------------------------------------------------
// berth holding the terminal itself

/// A pty owned by the test, its slave the controlling terminal of the runtime command.
struct TestPty {
    master: OwnedFd,
    /// The test's own handle on the slave: termios and window size of the caller's terminal.
    slave: OwnedFd,
    out: Vec<u8>,
}

impl TestPty {
    fn new(rows: u16, cols: u16) -> TestPty {
        let ws = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        let p = nix::pty::openpty(Some(&ws), None).unwrap();
        TestPty { master: p.master, slave: p.slave, out: Vec::new() }
    }

    /// Spawns `cmd` as a session leader with the slave as its controlling terminal and stdio.
    fn spawn(&self, mut cmd: std::process::Command) -> Child {
        let s = || Stdio::from(self.slave.try_clone().unwrap());
        cmd.stdin(s()).stdout(s()).stderr(s());
        // SAFETY: only async-signal-safe setsid and ioctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    fn write(&self, data: &[u8]) {
        nix::unistd::write(&self.master, data).unwrap();
    }

    /// Reads until the output contains `pat` (true) or `timeout` passes / the pty closes.
    fn wait_for(&mut self, pat: &str, timeout: Duration) -> bool {
        read_until(&self.master, &mut self.out, pat, timeout)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    fn termios(&self) -> libc::termios {
        // SAFETY: termios is plain data filled by tcgetattr on our slave fd.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.slave.as_raw_fd(), &mut t), 0);
            t
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ with a live winsize; the kernel signals SIGWINCH to the
        // foreground process group of the slave (the runtime).
        assert_eq!(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    }
}

/// Reads a pty master into `out` until it contains `pat` (true), or `timeout` passes / the
/// pty closes (false).
fn read_until(master: &OwnedFd, out: &mut Vec<u8>, pat: &str, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    loop {
        if String::from_utf8_lossy(out).contains(pat) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(left.as_millis().min(500) as u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return false,
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(master, &mut buf) {
            Ok(0) => return false,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(_) => return false,
        }
    }
}

/// Waits for `child` up to `timeout`; kills it on timeout. Returns the exit code (128+signal).
fn wait_child(mut child: Child, timeout: Duration) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return -1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn raw_mode(t: &libc::termios) -> bool {
    t.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG) == 0
}

/// Attached `run` with a terminal and no console socket, from an interactive terminal: the
/// container gets a pty of the caller's size, input typed on the caller's terminal reaches it,
/// the caller's terminal is raw meanwhile and restored afterwards, SIGWINCH resizes, and the
/// exit code is the container's.
#[test]
fn tty_run_attached_relays_terminal() {
    let ctx = Ctx::new("ttyrelay");
    let mut b =
        tty_bundle(&ctx, "tty; stty size; echo ready; read line; echo got:$line; read x; stty size; read y; exit 4");
    let id = ctx.id("rl");
    b.write_config(&id);
    ctx.track(&id);
    let mut pty = TestPty::new(27, 91);
    let before = pty.termios();
    assert!(!raw_mode(&before));
    let child = pty.spawn(ctx.command(&["run", "--bundle", b.dir.to_str().unwrap(), &id]));
    assert!(pty.wait_for("ready", Duration::from_secs(20)), "{}", pty.text());
    let t = pty.text();
    let l = lines(&t);
    assert!(l.iter().any(|x| x.starts_with("/dev/pts/")), "{t:?}");
    assert!(l.iter().any(|x| x == "27 91"), "container's size must be the caller's: {t:?}");
    assert!(raw_mode(&pty.termios()), "the caller's terminal must be raw while relaying");
    pty.write(b"hello relay\r");
    assert!(pty.wait_for("got:hello relay", Duration::from_secs(10)), "{}", pty.text());
    pty.resize(50, 160);
    // Give the runtime the SIGWINCH before the shell asks.
    std::thread::sleep(Duration::from_millis(200));
    pty.write(b"\r");
    assert!(pty.wait_for("50 160", Duration::from_secs(10)), "resize not relayed: {}", pty.text());
    pty.write(b"\r");
    let code = wait_child(child, Duration::from_secs(20));
    assert_eq!(code, 4, "{}", pty.text());
    let after = pty.termios();
    assert_eq!(after.c_lflag, before.c_lflag, "the caller's terminal was not restored");
    assert_eq!(after.c_iflag, before.c_iflag);
    assert_eq!(after.c_oflag, before.c_oflag);
    // `run` deleted the container.
    assert!(ctx.status(&id).is_none());
}

/// Ctrl-C typed on the caller's terminal reaches the container's foreground process as SIGINT
/// (the caller's terminal is raw, so the byte is relayed, not turned into a signal for berth).
#[test]
fn tty_run_attached_ctrl_c() {
    let ctx = Ctx::new("ttyctrlc");
    let mut b = tty_bundle(&ctx, "trap 'echo got-int; exit 3' INT; echo ready; while :; do sleep 0.1; done");
    let id = ctx.id("cc");
    b.write_config(&id);
    ctx.track(&id);
    let mut pty = TestPty::new(24, 80);
    let child = pty.spawn(ctx.command(&["run", "--bundle", b.dir.to_str().unwrap(), &id]));
    assert!(pty.wait_for("ready", Duration::from_secs(20)), "{}", pty.text());
    pty.write(b"\x03");
    let code = wait_child(child, Duration::from_secs(20));
    pty.wait_for("got-int", Duration::from_secs(2));
    assert!(pty.text().contains("got-int"), "{}", pty.text());
    assert_eq!(code, 3, "{}", pty.text());
}

/// Attached `run` with a terminal, stdin and stdout pipes (no terminal on the caller's side;
/// runc refuses this, berth relays anyway):
/// the input is relayed, the output comes back on stdout, and SIGTERM sent to the runtime is
/// forwarded to the container's process.
#[test]
fn tty_run_attached_pipes_and_signal() {
    if skip_on_runc("runc opens /dev/tty and fails without a controlling terminal") {
        return;
    }
    let ctx = Ctx::new("ttypipes");
    let mut b = tty_bundle(
        &ctx,
        "trap 'echo got-term; exit 9' TERM; read line; echo got:$line; echo ready; while :; do sleep 0.1; done",
    );
    let id = ctx.id("pp");
    b.write_config(&id);
    ctx.track(&id);
    let mut c = ctx.command(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    let out_path = ctx.dir.join("pipes.out");
    c.stdin(Stdio::piped()).stdout(fs::File::create(&out_path).unwrap()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"from-pipe\n").unwrap();
    assert!(wait_until(Duration::from_secs(20), || read(&out_path).contains("ready")), "{:?}", read(&out_path));
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let code = wait_child(child, Duration::from_secs(20));
    let out = read(&out_path);
    assert!(out.contains("got:from-pipe"), "{out:?}");
    assert!(out.contains("got-term"), "SIGTERM not forwarded: {out:?}");
    assert_eq!(code, 9, "{out:?}");
}

/// `exec -t` without a console socket, from an interactive terminal: a pty of the caller's
/// size, input relayed, exit code returned, the caller's terminal restored.
#[test]
fn tty_exec_attached_relays_terminal() {
    let ctx = Ctx::new("ttyexec");
    let mut b = ctx.bundle();
    b.args(&["sleep", "100000"]);
    let id = ctx.id("ex");
    ctx.run_detached(&mut b, &id);
    let mut pty = TestPty::new(30, 100);
    let before = pty.termios();
    let child = pty.spawn(ctx.command(&[
        "exec",
        "-t",
        &id,
        "sh",
        "-c",
        "tty; stty size; echo ready; read l; echo got:$l; exit 6",
    ]));
    assert!(pty.wait_for("ready", Duration::from_secs(20)), "{}", pty.text());
    let t = pty.text();
    let l = lines(&t);
    assert!(l.iter().any(|x| x.starts_with("/dev/pts/")), "{t:?}");
    // berth gives the exec'd process its size before it starts; runc resizes after (a race:
    // stty may see 0x0).
    if !is_runc() {
        assert!(l.iter().any(|x| x == "30 100"), "{t:?}");
    }
    pty.write(b"typed\r");
    assert!(pty.wait_for("got:typed", Duration::from_secs(10)), "{}", pty.text());
    let code = wait_child(child, Duration::from_secs(20));
    assert_eq!(code, 6, "{}", pty.text());
    assert_eq!(pty.termios().c_lflag, before.c_lflag, "the caller's terminal was not restored");
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));
}

/// `exec -t` without a console socket and with pipes: output and exit code come back.
#[test]
fn tty_exec_attached_pipes() {
    if skip_on_runc("runc opens /dev/tty and fails without a controlling terminal") {
        return;
    }
    let ctx = Ctx::new("ttyexecp");
    let mut b = ctx.bundle();
    b.args(&["sleep", "100000"]);
    let id = ctx.id("ep");
    ctx.run_detached(&mut b, &id);
    let o = ctx.cmd(&["exec", "-t", &id, "sh", "-c", "[ -t 1 ] && echo stdout-is-tty; exit 2"]);
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stdout.contains("stdout-is-tty"), "{o}");
    // Nothing left in --root from the runtime's console socket.
    let left: Vec<_> = fs::read_dir(&ctx.root).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains("tty")), "{left:?}");
}

/// The pty is the process's: owned by its uid with gid 5 (tty) and mode 0620, for the
/// container's process (root and a non-root user) and for `exec` (root and `--user`), as runc
/// leaves it (a non-root process can then change its own terminal's mode, as `mesg` does).
#[test]
fn tty_owner_group_and_mode() {
    let ctx = Ctx::new("ttyowner");
    let script = "stat -c '%u %g %a' $(tty); chmod 600 $(tty) && echo chmod-ok";
    for (uid, gid) in [(0u32, 0u32), (1000, 1000)] {
        let sock = ConsoleSocket::new(&ctx);
        let mut b = tty_bundle(&ctx, script);
        b.set("/process/user", json!({"uid": uid, "gid": gid}));
        let id = ctx.id("own");
        b.write_config(&id);
        ctx.cmd(&["create", "--bundle", b.dir.to_str().unwrap(), "--console-socket", sock.path.to_str().unwrap(), &id])
            .ok();
        let master = sock.recv_master(Duration::from_secs(10));
        ctx.start(&id).ok();
        let out = read_pty(&master, Duration::from_secs(10));
        assert_eq!(lines(&out), [format!("{uid} 5 620"), "chmod-ok".to_string()], "uid {uid}: {out:?}");
    }

    // exec with a terminal, as root and as --user.
    let mut b = ctx.bundle();
    b.args(&["sleep", "100000"]);
    let id = ctx.id("ex");
    ctx.run_detached(&mut b, &id);
    for user in [None, Some("1000:1000")] {
        let sock = ConsoleSocket::new(&ctx);
        // A console socket goes with --detach (runc refuses it otherwise), as engines use it.
        let mut args = vec!["exec", "-d", "-t", "--console-socket", sock.path.to_str().unwrap()];
        if let Some(u) = user {
            args.extend_from_slice(&["--user", u]);
        }
        args.extend_from_slice(&[&id, "sh", "-c", script]);
        let bg = ctx.spawn(&args);
        let master = sock.recv_master(Duration::from_secs(10));
        let out = read_pty(&master, Duration::from_secs(10));
        bg.wait(Duration::from_secs(10)).ok();
        let uid = if user.is_some() { 1000 } else { 0 };
        assert_eq!(lines(&out), [format!("{uid} 5 620"), "chmod-ok".to_string()], "exec {user:?}: {out:?}");
    }
}

/// `exec --process FILE` with `terminal` and `consoleSize`: the exec'd process starts with
/// that size (read before anything could resize it).
#[test]
fn tty_exec_process_console_size() {
    let ctx = Ctx::new("ttyexecsz");
    let mut b = ctx.bundle();
    b.args(&["sleep", "100000"]);
    let id = ctx.id("es");
    ctx.run_detached(&mut b, &id);
    let sock = ConsoleSocket::new(&ctx);
    let proc_json = json!({
        "terminal": true,
        "consoleSize": {"height": 27, "width": 91},
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "stty size; tty"],
        "env": ["PATH=/bin"],
        "cwd": "/"
    });
    let pf = ctx.dir.join("process.json");
    fs::write(&pf, proc_json.to_string()).unwrap();
    let pf = pf.to_str().unwrap();
    let bg = ctx.spawn(&["exec", "-d", "--process", pf, "--console-socket", sock.path.to_str().unwrap(), &id]);
    let master = sock.recv_master(Duration::from_secs(10));
    let out = read_pty(&master, Duration::from_secs(10));
    bg.wait(Duration::from_secs(10)).ok();
    let l = lines(&out);
    assert_eq!(l.first().map(String::as_str), Some("27 91"), "{out:?}");
    assert!(l.get(1).is_some_and(|t| t.starts_with("/dev/pts/")), "{out:?}");
}
