//! The shim process: one thread, one poll(2) loop over the container's output (pipes or pty
//! master), its stdin, the attach socket and its clients, and a signalfd (SIGCHLD: the
//! container's init is our child once `create` exits, as we are its subreaper).

use super::jsonlog::{now_rfc3339, LogStream, LogWriter};
use super::{proto, sys, ShimConfig, ShimState, Status};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long to keep reading output after the init exited (other processes may hold the pipes).
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for the runtime to hand over the pty master.
const MASTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of the on-exit command.
const ON_EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that falls this far behind is dropped.
const MAX_CLIENT_BACKLOG: usize = 4 << 20;
/// Input buffered for the container's stdin before clients stop being read.
const MAX_STDIN_BACKLOG: usize = 64 << 10;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A run this long resets the restart back-off (as docker does).
const BACKOFF_RESET: Duration = Duration::from_secs(10);
const SIGNALS: [libc::c_int; 7] =
    [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

struct Client {
    sock: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// The client still sends (false after it shut its writing side).
    reading: bool,
    dead: bool,
}

impl Client {
    fn new(sock: UnixStream) -> Client {
        let _ = sock.set_nonblocking(true);
        Client { sock, rbuf: Vec::new(), wbuf: Vec::new(), reading: true, dead: false }
    }

    /// Queues one frame; written at once when nothing is pending.
    fn send(&mut self, typ: u8, data: &[u8]) {
        if self.dead {
            return;
        }
        let hdr = proto::header(typ, data.len());
        let mut skip = 0;
        if self.wbuf.is_empty() {
            let iov = [
                libc::iovec { iov_base: hdr.as_ptr() as *mut libc::c_void, iov_len: hdr.len() },
                libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() },
            ];
            // SAFETY: writev from two live buffers described by their exact lengths.
            let n = unsafe { libc::writev(self.sock.as_raw_fd(), iov.as_ptr(), 2) };
            if n < 0 {
                if !matches!(sys::errno(), libc::EAGAIN | libc::EINTR) {
                    self.dead = true;
                    return;
                }
            } else {
                skip = n as usize;
            }
        }
        let total = hdr.len() + data.len();
        if skip < total {
            if skip < hdr.len() {
                self.wbuf.extend_from_slice(&hdr[skip..]);
                self.wbuf.extend_from_slice(data);
            } else {
                self.wbuf.extend_from_slice(&data[skip - hdr.len()..]);
            }
        }
        if self.wbuf.len() > MAX_CLIENT_BACKLOG {
            self.dead = true;
        }
    }

    fn flush(&mut self) {
        while !self.wbuf.is_empty() && !self.dead {
            match sys::write(self.sock.as_raw_fd(), &self.wbuf) {
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(libc::EAGAIN) => return,
                Err(_) => self.dead = true,
            }
        }
        if self.wbuf.capacity() > 64 << 10 && self.wbuf.is_empty() {
            self.wbuf = Vec::new();
        }
    }
}

/// The stdio of one run of the container.
#[derive(Default)]
struct Io {
    /// stdout pipe, or the pty master.
    out: Option<OwnedFd>,
    /// stderr pipe (none with a tty).
    err: Option<OwnedFd>,
    /// Where input goes: the stdin pipe, or a dup of the pty master (-i only).
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    /// Close stdin once stdin_buf is written.
    stdin_eof: bool,
}

struct Shim {
    cfg: ShimConfig,
    st: ShimState,
    sigfd: OwnedFd,
    listener: UnixListener,
    clients: Vec<Client>,
    log: LogWriter,
    io: Io,
    /// A stop was requested over the socket.
    stop: bool,
    /// The init of the current run is alive (not reaped): its pid may be signalled.
    alive: bool,
    pfds: Vec<libc::pollfd>,
    revs: Vec<i16>,
}

enum Wait {
    /// Until the container's init exits and its output is drained.
    Exit,
    /// Until then (restart back-off), or a stop request.
    Until(Instant),
}

fn reply(sync: &mut Option<OwnedFd>, line: &str) {
    if let Some(fd) = sync.take() {
        let mut l = line.replace('\n', " ");
        l.push('\n');
        sys::write_all(fd.as_raw_fd(), l.as_bytes());
    }
}

/// The shim process's main; never returns before the container is gone for good.
pub(super) fn run(cfg: ShimConfig, mut sync: Option<OwnedFd>, attach: Option<OwnedFd>) -> i32 {
    // Hold no directory: the container layer may remove or unmount anything.
    let _ = std::env::set_current_dir("/");
    // Start-up pages (relocation, argument parsing) are not needed again: keep the peak low.
    berth::release_readonly_image();
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let sigfd = match sys::signalfd(&SIGNALS) {
        Ok((fd, _old)) => fd,
        Err(e) => {
            reply(&mut sync, &format!("shim: signalfd: {e}"));
            return 1;
        }
    };
    let sock_path = cfg.sock_dir().join(super::ATTACH_SOCK);
    let listener = match sys::listen(&sock_path) {
        Ok(l) => l,
        Err(e) => {
            reply(&mut sync, &format!("shim: listen on {}: {e}", sock_path.display()));
            return 1;
        }
    };
    let _ = listener.set_nonblocking(true);
    let log = match LogWriter::open(&cfg.log_path, &cfg.log) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(&sock_path);
            match e.get_ref().and_then(|i| i.downcast_ref::<super::syslog::DialError>()) {
                Some(d) => reply(&mut sync, &d.to_string()),
                None => reply(&mut sync, &format!("shim: open log {}: {e}", cfg.log_path.display())),
            }
            return 1;
        }
    };
    let me = std::process::id() as i32;
    let st = ShimState {
        shim_pid: me,
        shim_start: sys::start_time(me).unwrap_or(0),
        run_dir: cfg.run_dir.clone(),
        ..Default::default()
    };
    let mut sh = Shim {
        cfg,
        st,
        sigfd,
        listener,
        clients: Vec::new(),
        log,
        io: Io::default(),
        stop: false,
        alive: false,
        pfds: Vec::new(),
        revs: Vec::new(),
    };
    if let Some(fd) = attach {
        sh.clients.push(Client::new(UnixStream::from(fd)));
    }
    sh.save();
    if sh.cfg.health.is_some() {
        spawn_health(&sh.cfg);
    }

    let mut backoff = BACKOFF_START;
    let code = loop {
        if let Err(msg) = sh.start_container() {
            let code = super::exit_code_for(&msg);
            sh.st.status = Status::Exited;
            sh.st.exit_code = Some(code);
            sh.st.container_pid = 0;
            sh.st.error = Some(msg.clone());
            sh.st.finished_at = Some(now_rfc3339());
            sh.save();
            reply(&mut sync, &msg);
            break code;
        }
        reply(&mut sync, &format!("ok {} {}", sh.st.container_pid, sh.st.shim_pid));
        berth::release_readonly_image();
        let started = Instant::now();
        let code = sh.serve(Wait::Exit).unwrap_or(255);
        sh.event("die", Some(code));
        sh.log.finish();
        sh.io = Io::default();
        sh.st.exit_code = Some(code);
        sh.st.finished_at = Some(now_rfc3339());
        sh.st.oom_killed = code == 128 + libc::SIGKILL && sh.oom_killed();
        sh.runtime_delete();
        if let Ok(p) = std::fs::read_to_string(sh.cfg.state_dir.join(super::RESTART_FILE)) {
            if let Ok(r) = super::RestartPolicy::parse(p.trim()) {
                sh.cfg.restart = r;
            }
        }
        if !sh.cfg.restart.should_restart(code, sh.st.restart_count, sh.stop_requested()) {
            break code;
        }
        if started.elapsed() >= BACKOFF_RESET {
            backoff = BACKOFF_START;
        }
        sh.st.status = Status::Restarting;
        sh.st.container_pid = 0;
        sh.save();
        sh.serve(Wait::Until(Instant::now() + backoff));
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if sh.stop_requested() {
            break code;
        }
        sh.st.restart_count += 1;
    };
    // Clean up (network, rootfs; removal with --rm) before "exited" is recorded and the exit
    // code is sent: whoever sees the container exited finds it torn down.
    berth::faults::crash_point("shim.before-cleanup");
    if !sh.cfg.on_exit.is_empty() {
        run_on_exit(&sh.cfg.on_exit);
    }
    sh.st.status = Status::Exited;
    sh.st.container_pid = 0;
    sh.st.exit_code = Some(code);
    if sh.cfg.state_dir.is_dir() {
        sh.save();
    }
    berth::faults::crash_point("shim.exit-recorded");
    sh.goodbye(code);
    let _ = std::fs::remove_file(&sock_path);
    if let Some(r) = &sh.cfg.run_dir {
        // Empty by now (the pid file and console socket go right after create).
        let _ = std::fs::remove_dir(r);
    }
    reap_all();
    0
}

/// Reaps every exited child; returns the exit code of `pid` if it was among them.
fn reap_all_for(pid: i32) -> Option<i32> {
    let mut found = None;
    loop {
        let mut st = 0;
        // SAFETY: waitpid(-1, WNOHANG) on our own children (and the orphans we adopted).
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r <= 0 {
            if r < 0 && sys::errno() == libc::EINTR {
                continue;
            }
            return found;
        }
        if r == pid && pid > 0 {
            found = sys::exit_code(st);
        }
    }
}

fn reap_all() {
    reap_all_for(0);
}

/// A command whose child starts with an empty signal mask: ours blocks the signals read from
/// the signalfd, and a mask is inherited through exec (down to the container's process).
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    // SAFETY: the closure only calls sigemptyset and pthread_sigmask (async-signal-safe) on a
    // local set, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    c
}

fn run_on_exit(argv: &[String]) {
    let mut c = command(&argv[0]);
    c.args(&argv[1..]).current_dir("/").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let Ok(mut child) = c.spawn() else { return };
    // Block on a pidfd until the clean-up exits or the time is up (no polling delay).
    // Our own unreaped child: its pid cannot have been reused.
    if let Ok(pidfd) = berth::pidfd::open(child.id() as libc::pid_t) {
        if berth::pidfd::wait(&pidfd, Some(ON_EXIT_TIMEOUT)) {
            let _ = child.wait();
            return;
        }
    } else {
        let deadline = Instant::now() + ON_EXIT_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts the health-check helper (`shim health` with this shim's flags); it dies with us.
fn spawn_health(cfg: &ShimConfig) {
    use std::os::unix::process::CommandExt;
    let mut c = command(&cfg.runtime_binary);
    c.arg("shim").arg("health").args(cfg.to_args());
    c.current_dir("/").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: prctl with integer arguments, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    // Reaped with the other children (reap_all).
    let _ = c.spawn();
}

impl Shim {
    /// Appends a container event (`die` with its exit code) to the engine's journal.
    fn event(&self, action: &str, exit_code: Option<i32>) {
        let Some(j) = &self.cfg.events else { return };
        let mut attrs = self.cfg.event_attrs.clone();
        if let Some(c) = exit_code {
            attrs.insert("exitCode".into(), c.to_string());
        }
        let _ =
            crate::events::Journal::at(j).append(&crate::events::Event::new("container", action, &self.cfg.id, attrs));
    }

    fn save(&self) {
        // The state is advisory for readers; the shim goes on if it cannot be written.
        let _ = super::write_state(&self.cfg.state_dir, &self.st);
    }

    fn stop_requested(&self) -> bool {
        self.stop || self.cfg.state_dir.join(super::STOP_FILE).exists()
    }

    fn runtime(&self, sub: &str) -> Command {
        let mut c = command(&self.cfg.runtime_binary);
        c.arg("--root").arg(&self.cfg.runtime_root).arg(sub);
        // The pid file and console socket are given relative to the run dir (short paths).
        c.current_dir(self.cfg.sock_dir());
        c
    }

    /// `runtime delete -f ID` and reap whatever it killed.
    fn runtime_delete(&mut self) {
        let mut c = self.runtime("delete");
        c.arg("-f").arg(&self.cfg.id).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let _ = c.status();
        reap_all();
        self.alive = false;
    }

    /// `create` (with our pipes / console socket) then `start`; Err is the runtime's one line.
    fn start_container(&mut self) -> Result<(), String> {
        let dir = self.cfg.sock_dir().to_path_buf();
        let _ = std::fs::remove_file(dir.join(super::PID_FILE));
        let perr = |what: &str, e: std::io::Error| format!("shim: {what}: {e}");
        let (err_r, err_w) = sys::pipe().map_err(|e| perr("pipe", e))?;
        let mut c = self.runtime("create");
        c.arg("--bundle").arg(&self.cfg.bundle).arg("--pid-file").arg(super::PID_FILE);
        let mut io = Io::default();
        let mut console = None;
        if self.cfg.tty {
            let p = dir.join(super::CONSOLE_SOCK);
            console = Some(sys::listen(&p).map_err(|e| perr(&format!("listen on {}", p.display()), e))?);
            // Relative: the runtime runs in the run dir (socket paths are short).
            c.arg("--console-socket").arg(super::CONSOLE_SOCK);
            c.stdin(Stdio::null()).stdout(Stdio::null());
        } else {
            let (out_r, out_w) = sys::pipe().map_err(|e| perr("pipe", e))?;
            c.stdout(Stdio::from(out_w));
            if self.cfg.stdin {
                let (in_r, in_w) = sys::pipe().map_err(|e| perr("pipe", e))?;
                c.stdin(Stdio::from(in_r));
                sys::set_nonblocking(in_w.as_raw_fd(), true);
                io.stdin = Some(in_w);
            } else {
                c.stdin(Stdio::null());
            }
            sys::set_nonblocking(out_r.as_raw_fd(), true);
            io.out = Some(out_r);
        }
        // Without a tty the runtime's stderr is the container's: its error, if any, is what
        // comes out there before it exits.
        c.stderr(Stdio::from(err_w));
        c.arg(&self.cfg.id);
        let status = c.status();
        drop(c); // closes our copies of the ends the runtime got
        berth::release_readonly_image();
        sys::set_nonblocking(err_r.as_raw_fd(), true);
        let ok = matches!(&status, Ok(s) if s.success());
        if !ok {
            let _ = std::fs::remove_file(dir.join(super::CONSOLE_SOCK));
            let mut buf = vec![0u8; 16 << 10];
            let n = sys::read(err_r.as_raw_fd(), &mut buf).unwrap_or(0);
            let msg = super::error_line(&buf[..n]).unwrap_or_else(|| match status {
                Ok(s) => format!("runtime create of container {} failed ({s})", self.cfg.id),
                Err(e) => format!("run the runtime {}: {e}", self.cfg.runtime_binary.display()),
            });
            // An interrupted create may leave state behind.
            self.runtime_delete();
            return Err(msg);
        }
        let pid: i32 = match std::fs::read_to_string(dir.join(super::PID_FILE)).ok().and_then(|s| s.trim().parse().ok())
        {
            Some(p) if p > 0 => p,
            _ => {
                self.runtime_delete();
                return Err(format!("runtime create of container {}: no pid in {}", self.cfg.id, super::PID_FILE));
            }
        };
        let _ = std::fs::remove_file(dir.join(super::PID_FILE));
        if let Some(l) = console {
            let r = receive_master(&l);
            let _ = std::fs::remove_file(dir.join(super::CONSOLE_SOCK));
            match r {
                Ok(m) => {
                    sys::set_nonblocking(m.as_raw_fd(), true);
                    if self.cfg.stdin {
                        // SAFETY: dup of a valid fd; the result is checked and then owned.
                        let d = unsafe { libc::fcntl(m.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
                        if d >= 0 {
                            // SAFETY: fresh fd owned by nobody else.
                            io.stdin = Some(unsafe { OwnedFd::from_raw_fd(d) });
                        }
                    }
                    io.out = Some(m);
                }
                Err(e) => {
                    self.runtime_delete();
                    return Err(format!("terminal of container {}: {e}", self.cfg.id));
                }
            }
        } else {
            io.err = Some(err_r);
        }
        self.st.container_pid = pid;
        self.alive = true;
        let mut c = self.runtime("start");
        c.arg(&self.cfg.id).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        match c.output() {
            Ok(o) if o.status.success() => {}
            r => {
                let msg = match &r {
                    Ok(o) => super::error_line(&o.stderr)
                        .unwrap_or_else(|| format!("runtime start of container {} failed ({})", self.cfg.id, o.status)),
                    Err(e) => format!("run the runtime {}: {e}", self.cfg.runtime_binary.display()),
                };
                self.runtime_delete();
                return Err(msg);
            }
        }
        self.io = io;
        self.st.status = Status::Running;
        self.st.error = None;
        self.st.started_at = Some(now_rfc3339());
        self.save();
        // Recorded here, before the shim can see the process exit: `start` always comes
        // before its `die`, however short the process lives.
        self.event("start", None);
        Ok(())
    }

    fn oom_killed(&self) -> bool {
        berth::oom_killed(&self.cfg.runtime_root, &self.cfg.id)
    }

    /// Output of the container: to the log and every client.
    fn output(&mut self, stream: LogStream, data: &[u8]) {
        self.log.write(stream, data);
        let typ = if stream == LogStream::Stdout { proto::STDOUT } else { proto::STDERR };
        for c in &mut self.clients {
            c.send(typ, data);
        }
    }

    fn flush_stdin(&mut self) {
        let io = &mut self.io;
        if let Some(fd) = &io.stdin {
            while !io.stdin_buf.is_empty() {
                match sys::write(fd.as_raw_fd(), &io.stdin_buf) {
                    Ok(n) => {
                        io.stdin_buf.drain(..n);
                    }
                    Err(libc::EAGAIN) => break,
                    Err(_) => {
                        // The container closed its stdin.
                        io.stdin_buf.clear();
                        io.stdin = None;
                        break;
                    }
                }
            }
        } else {
            io.stdin_buf.clear();
        }
        if io.stdin_eof && io.stdin_buf.is_empty() {
            io.stdin = None;
        }
        if io.stdin_buf.capacity() > 2 * MAX_STDIN_BACKLOG && io.stdin_buf.is_empty() {
            io.stdin_buf = Vec::new();
        }
    }

    fn handle_frame(&mut self, typ: u8, p: &[u8]) {
        match typ {
            proto::STDIN => {
                if self.io.stdin.is_none() || self.io.stdin_eof {
                    return;
                }
                if p.is_empty() {
                    self.io.stdin_eof = true;
                } else {
                    self.io.stdin_buf.extend_from_slice(p);
                }
                self.flush_stdin();
            }
            proto::RESIZE if p.len() >= 4 && self.cfg.tty => {
                if let Some(m) = &self.io.out {
                    sys::set_winsize(m.as_raw_fd(), u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]));
                }
            }
            proto::SIGNAL => {
                if let (Some(sig), true) = (proto::be_i32(p), self.alive && self.st.container_pid > 0) {
                    if (1..=64).contains(&sig) {
                        // SAFETY: kill(2) of the container's init: our child, not yet reaped, so
                        // the pid cannot have been reused.
                        unsafe { libc::kill(self.st.container_pid, sig) };
                    }
                }
            }
            proto::STOP => self.stop = true,
            _ => {}
        }
    }

    fn client_input(&mut self, i: usize) {
        let mut buf = [0u8; 8192];
        loop {
            let c = &mut self.clients[i];
            match sys::read(c.sock.as_raw_fd(), &mut buf) {
                Ok(0) => {
                    c.reading = false;
                    break;
                }
                Ok(n) => c.rbuf.extend_from_slice(&buf[..n]),
                Err(libc::EAGAIN) => break,
                Err(_) => {
                    c.dead = true;
                    break;
                }
            }
            if c.rbuf.len() > MAX_STDIN_BACKLOG {
                break;
            }
        }
        let mut rbuf = std::mem::take(&mut self.clients[i].rbuf);
        let mut start = 0;
        loop {
            match proto::next(&rbuf[start..]) {
                proto::Next::Frame(t, r) => {
                    let (a, b) = (start + r.start, start + r.end);
                    self.handle_frame(t, &rbuf[a..b]);
                    start = b;
                }
                proto::Next::Partial => break,
                proto::Next::TooBig => {
                    self.clients[i].dead = true;
                    start = rbuf.len();
                    break;
                }
            }
        }
        rbuf.drain(..start);
        self.clients[i].rbuf = rbuf;
    }

    fn signals(&mut self) -> Option<i32> {
        let mut exit = None;
        while let Some(sig) = sys::next_signal(self.sigfd.as_raw_fd()) {
            // Only SIGCHLD matters; terminating signals sent to the shim are ignored (the
            // container is stopped through the runtime).
            if sig == libc::SIGCHLD {
                if let Some(code) = reap_all_for(if self.alive { self.st.container_pid } else { 0 }) {
                    self.alive = false;
                    exit = Some(code);
                }
            }
        }
        exit
    }

    /// The poll loop. Returns the init's exit code for `Wait::Exit`.
    fn serve(&mut self, wait: Wait) -> Option<i32> {
        let mut exited: Option<i32> = None;
        let mut drain_until = None;
        let mut buf = [0u8; 8192];
        let waiting_exit = matches!(wait, Wait::Exit);
        if waiting_exit {
            // The init may have exited before we got here (its SIGCHLD is then queued).
            exited = self.signals();
        }
        loop {
            let now = Instant::now();
            if let Some(code) = exited {
                let until = *drain_until.get_or_insert(now + DRAIN_GRACE);
                if (self.io.out.is_none() && self.io.err.is_none()) || now >= until {
                    return Some(code);
                }
            }
            let deadline = match wait {
                Wait::Until(t) => {
                    if now >= t || self.stop {
                        return None;
                    }
                    Some(t)
                }
                Wait::Exit => drain_until,
            };
            let timeout = deadline.map_or(-1, |d| d.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1);

            let io = &self.io;
            let fd = |f: &Option<OwnedFd>| f.as_ref().map_or(-1, |f| f.as_raw_fd());
            let stdin_full = io.stdin_buf.len() >= MAX_STDIN_BACKLOG;
            self.pfds.clear();
            let ev = |fd: RawFd, events: i16| libc::pollfd { fd, events, revents: 0 };
            self.pfds.push(ev(self.sigfd.as_raw_fd(), libc::POLLIN));
            self.pfds.push(ev(self.listener.as_raw_fd(), libc::POLLIN));
            self.pfds.push(ev(fd(&io.out), libc::POLLIN));
            self.pfds.push(ev(fd(&io.err), libc::POLLIN));
            self.pfds.push(ev(if io.stdin_buf.is_empty() { -1 } else { fd(&io.stdin) }, libc::POLLOUT));
            for c in &self.clients {
                let mut e = 0;
                if c.reading && !stdin_full {
                    e |= libc::POLLIN;
                }
                if !c.wbuf.is_empty() {
                    e |= libc::POLLOUT;
                }
                self.pfds.push(ev(c.sock.as_raw_fd(), e));
            }
            if sys::poll(&mut self.pfds, timeout) == 0 {
                continue;
            }
            let mut rev = std::mem::take(&mut self.revs);
            rev.clear();
            rev.extend(self.pfds.iter().map(|p| p.revents));
            let readable = |r: i16| r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;

            if readable(rev[0]) {
                if let Some(code) = self.signals() {
                    if waiting_exit && exited.is_none() {
                        exited = Some(code);
                    }
                }
            }
            if readable(rev[1]) {
                while let Ok((s, _)) = self.listener.accept() {
                    self.clients.push(Client::new(s));
                }
            }
            for (k, stream) in [(2, LogStream::Stdout), (3, LogStream::Stderr)] {
                if !readable(rev[k]) {
                    continue;
                }
                // Read a few buffers per wake-up, so one chatty stream cannot starve the rest.
                for _ in 0..4 {
                    let slot = if k == 2 { &mut self.io.out } else { &mut self.io.err };
                    let Some(f) = slot.as_ref() else { break };
                    match sys::read(f.as_raw_fd(), &mut buf) {
                        Ok(0) => {
                            *slot = None;
                            break;
                        }
                        Ok(n) => self.output(stream, &buf[..n]),
                        Err(libc::EAGAIN) => break,
                        // EIO on a pty master: every holder of the slave is gone.
                        Err(_) => {
                            *slot = None;
                            break;
                        }
                    }
                }
            }
            if rev[4] & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0 {
                self.flush_stdin();
            }
            for (i, r) in rev[5..].iter().enumerate().take(self.clients.len()) {
                if r & libc::POLLOUT != 0 {
                    self.clients[i].flush();
                }
                if self.clients[i].reading && readable(*r) {
                    self.client_input(i);
                }
                if r & (libc::POLLHUP | libc::POLLERR) != 0 && !self.clients[i].reading {
                    self.clients[i].dead = true;
                }
            }
            self.clients.retain(|c| !c.dead);
            self.revs = rev;
        }
    }

    /// Tells every client the exit code and lets them go.
    fn goodbye(&mut self, code: i32) {
        let deadline = Instant::now() + Duration::from_secs(2);
        for c in &mut self.clients {
            c.send(proto::EXIT, &code.to_be_bytes());
        }
        for c in &mut self.clients {
            sys::set_nonblocking(c.sock.as_raw_fd(), false);
            let _ = c.sock.set_write_timeout(Some(
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10)),
            ));
            if !c.dead && !c.wbuf.is_empty() {
                use std::io::Write;
                let _ = c.sock.write_all(&c.wbuf);
            }
        }
        self.clients.clear();
    }
}

/// Accepts the runtime's connection on the console socket and takes the pty master it sends.
fn receive_master(l: &UnixListener) -> std::io::Result<OwnedFd> {
    let _ = l.set_nonblocking(true);
    let deadline = Instant::now() + MASTER_TIMEOUT;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(MASTER_TIMEOUT))?;
                return sys::recv_fd(&s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no pty master received on the console socket",
                    ));
                }
                let mut p = [libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
                sys::poll(&mut p, left.as_millis().min(1000) as i32);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
