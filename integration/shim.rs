//! The per-container shim (src/shim), driven through the hidden `berth shim` command:
//! `shim spawn` (attached, or -d), `shim attach`, `shim logs`, `shim state`, `shim stop`.
//! Exit codes (7, 137), json-file logs, attach (output, stdin, tty with resize), restart
//! policies, the caller or the shim being killed, exec errors (127/126), OOM, and that nothing
//! is left behind (socket, runtime state, cgroup, shim process). All berth-only.

use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One shim under test: its state dir and container id. Dropping it asks for a stop, deletes
/// the runtime container and waits for (or kills) the shim, before the Ctx cleans up.
struct Shim<'a> {
    ctx: &'a Ctx,
    id: String,
    dir: PathBuf,
    cg: Option<String>,
}

impl<'a> Shim<'a> {
    fn new(ctx: &'a Ctx, b: &mut Bundle, tag: &str) -> Shim<'a> {
        let id = ctx.id(tag);
        b.write_config(&id);
        let dir = ctx.tempdir("shimstate");
        Shim { ctx, id, dir, cg: b.cgroups_path() }
    }

    /// `berth shim spawn --id .. --bundle .. --root .. --state-dir .. EXTRA...`
    fn spawn_cmd(&self, b: &Bundle, extra: &[&str]) -> Command {
        let mut c = self.ctx.command_noroot(&["shim", "spawn", "--id", &self.id, "--bundle", b.dir.to_str().unwrap()]);
        c.arg("--root").arg(&self.ctx.root).arg("--state-dir").arg(&self.dir).args(extra);
        c
    }

    /// `spawn -d`, asserted; returns (container pid, shim pid).
    fn spawn_detached(&self, b: &Bundle, extra: &[&str]) -> (i32, i32) {
        let mut args = vec!["-d"];
        args.extend_from_slice(extra);
        let o = self.ctx.exec_cmd(self.spawn_cmd(b, &args), TIMEOUT);
        o.ok();
        let v: Vec<i32> = o.stdout.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        assert_eq!(v.len(), 2, "spawn -d prints the container and shim pids: {o}");
        (v[0], v[1])
    }

    fn tool(&self, sub: &str, extra: &[&str]) -> Command {
        let mut c = self.ctx.command_noroot(&["shim", sub, "--state-dir", self.dir.to_str().unwrap()]);
        c.args(extra);
        c
    }

    fn state(&self) -> Value {
        serde_json::from_str(&read(self.dir.join("shim.json"))).unwrap_or(Value::Null)
    }

    #[track_caller]
    fn wait_state(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(timeout, || {
            last = self.state();
            f(&last)
        });
        assert!(ok, "shim of {}: {what} not reached in {timeout:?}; shim.json: {last}", self.id);
        last
    }

    #[track_caller]
    fn wait_exited(&self) -> Value {
        let st = self.wait_state("status exited", Duration::from_secs(20), |v| v["status"] == "exited");
        let pid = st["shim_pid"].as_i64().unwrap() as i32;
        assert!(
            wait_until(Duration::from_secs(10), || !pid_alive(pid)),
            "shim {pid} still runs after the container exited"
        );
        st
    }

    fn log_entries(&self) -> Vec<Value> {
        read(self.dir.join("container.log"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}")))
            .collect()
    }

    /// After the shim is done: no socket or pid file, no runtime state, no cgroup, no process.
    #[track_caller]
    fn assert_clean(&self) {
        let names: Vec<String> = fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for n in &names {
            assert!(
                ["shim.json", "container.log", "stop-requested"].contains(&n.as_str()),
                "left in the shim's state dir: {n} (all: {names:?})"
            );
        }
        assert!(!self.ctx.root.join(&self.id).exists(), "runtime state of {} still exists", self.id);
        for cg in cgroup_dirs(&self.id, self.cg.as_deref()) {
            assert!(!cg.exists(), "cgroup {} still exists", cg.display());
        }
        assert!(procs_in_cgroup(&self.id, self.cg.as_deref()).is_empty(), "processes left in the container's cgroup");
    }
}

impl Drop for Shim<'_> {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("stop-requested"), "");
        let pid = self.state()["shim_pid"].as_i64().unwrap_or(0) as i32;
        let _ = self.ctx.exec_cmd(self.ctx.command(&["delete", "-f", &self.id]), TIMEOUT);
        if pid > 0 && !wait_until(Duration::from_secs(10), || !pid_alive(pid)) {
            // SAFETY: kill(2) of the shim this test started (its pid from its own state file).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A raw attach connection (the framing of src/shim/proto.rs).
struct Conn(UnixStream);

impl Conn {
    fn open(dir: &Path) -> Conn {
        let s = UnixStream::connect(dir.join("attach.sock")).expect("connect to attach.sock");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn(s)
    }

    fn send(&mut self, typ: u8, p: &[u8]) {
        let mut f = vec![typ];
        f.extend_from_slice(&(p.len() as u32).to_be_bytes());
        f.extend_from_slice(p);
        self.0.write_all(&f).unwrap();
    }

    /// Reads frames until the exit frame: (stdout, stderr, exit code).
    fn collect(&mut self) -> (String, String, i32) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            let mut h = [0u8; 5];
            self.0.read_exact(&mut h).unwrap_or_else(|e| {
                panic!("attach frame header: {e}; stdout so far {:?}", String::from_utf8_lossy(&out))
            });
            let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
            let mut p = vec![0u8; len];
            self.0.read_exact(&mut p).unwrap();
            match h[0] {
                1 => out.extend_from_slice(&p),
                2 => err.extend_from_slice(&p),
                3 => {
                    let code = i32::from_be_bytes(p[..4].try_into().unwrap());
                    return (
                        String::from_utf8_lossy(&out).into_owned(),
                        String::from_utf8_lossy(&err).into_owned(),
                        code,
                    );
                }
                t => panic!("unexpected frame type {t}"),
            }
        }
    }
}

fn is_rfc3339_nanos_utc(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 30
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            29 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Attached spawn: the container's exit code is the command's; its stdout/stderr come through;
/// shim.json says exited 7 with start/finish times; nothing is left.
#[test]
fn shim_exit_code_kept() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-exit");
    let mut b = ctx.bundle();
    b.sh("echo out; echo err >&2; exit 7");
    let sh = Shim::new(&ctx, &mut b, "exit");
    let o = ctx.exec_cmd(sh.spawn_cmd(&b, &[]), TIMEOUT);
    assert_eq!(o.code, 7, "{o}");
    assert_eq!(o.stdout, "out\n", "{o}");
    assert_eq!(o.stderr, "err\n", "{o}");
    let st = sh.wait_exited();
    assert_eq!(st["exit_code"], 7, "{st}");
    assert_eq!(st["restart_count"], 0, "{st}");
    assert_eq!(st["oom_killed"], false, "{st}");
    for k in ["started_at", "finished_at"] {
        assert!(is_rfc3339_nanos_utc(st[k].as_str().unwrap_or("")), "{k}: {st}");
    }
    sh.assert_clean();
}

/// Detached, then `berth kill ID KILL`: 137 in shim.json and from a late attach.
#[test]
fn shim_sigkill_gives_137() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-137");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let sh = Shim::new(&ctx, &mut b, "k");
    let (cpid, spid) = sh.spawn_detached(&b, &[]);
    assert!(pid_alive(cpid) && pid_alive(spid));
    assert_eq!(ctx.pid(&sh.id), cpid, "the runtime's pid is the one spawn reported");
    // The shim's blocked signals (read from its signalfd) do not reach the container.
    let status = read(format!("/proc/{cpid}/status"));
    assert_eq!(status_field(&status, "SigBlk").as_deref(), Some("0000000000000000"), "{status}");
    let st = sh.state();
    assert_eq!((st["status"].as_str(), st["container_pid"].as_i64()), (Some("running"), Some(cpid as i64)), "{st}");
    // The shim is detached: its own session and process group.
    let stat = read(format!("/proc/{spid}/stat"));
    let f: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    assert_eq!(f[2], spid.to_string(), "shim is its own process group leader: {stat}");
    assert_ne!(
        f[3],
        read("/proc/self/stat").rsplit_once(')').unwrap().1.split_whitespace().nth(3).unwrap(),
        "shim has its own session"
    );
    ctx.kill(&sh.id, "KILL").ok();
    let st = sh.wait_exited();
    assert_eq!(st["exit_code"], 137, "{st}");
    let o = ctx.exec_cmd(sh.tool("attach", &[]), TIMEOUT);
    assert_eq!(o.code, 137, "attach to an exited container returns its code: {o}");
    sh.assert_clean();
}

/// json-file log: one object per line with log/stream/time, stdout and stderr apart, a partial
/// last line, a 40000-byte line split at 16 KiB; `shim logs` with --tail and -t.
#[test]
fn shim_logs_json_file() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-logs");
    let mut b = ctx.bundle();
    b.sh("echo one; echo two >&2; echo '\"<q>\"'; head -c 40000 /dev/zero | tr '\\0' x; echo; printf tail");
    let sh = Shim::new(&ctx, &mut b, "logs");
    let o = ctx.exec_cmd(sh.spawn_cmd(&b, &["-d"]), TIMEOUT);
    o.ok();
    sh.wait_exited();
    let e = sh.log_entries();
    for v in &e {
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 3, "{v}");
        assert!(is_rfc3339_nanos_utc(v["time"].as_str().unwrap()), "{v}");
    }
    let by = |s: &str| -> Vec<String> {
        e.iter().filter(|v| v["stream"] == s).map(|v| v["log"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(by("stderr"), vec!["two\n"]);
    let out = by("stdout");
    assert_eq!(out.len(), 6, "{:?}", out.iter().map(|l| l.len()).collect::<Vec<_>>());
    assert_eq!(out[0], "one\n");
    assert_eq!(out[1], "\"<q>\"\n");
    assert_eq!(out[2].len(), 16384);
    assert_eq!(out[3].len(), 16384);
    assert_eq!(out[4], format!("{}\n", "x".repeat(40000 - 2 * 16384)));
    assert_eq!(out[5], "tail");
    // Escaped as docker does.
    assert!(read(sh.dir.join("container.log")).contains(r#"{"log":"\"\u003cq\u003e\"\n","stream":"stdout","time":""#));
    let o = ctx.exec_cmd(sh.tool("logs", &["--tail", "2"]), TIMEOUT);
    o.ok();
    assert_eq!(o.stdout, format!("{}\ntail", "x".repeat(40000 - 2 * 16384)), "{o}");
    let o = ctx.exec_cmd(sh.tool("logs", &["-t"]), TIMEOUT);
    o.ok();
    assert_eq!(o.stderr.len(), 31 + 4, "{o}");
    assert!(is_rfc3339_nanos_utc(&o.stderr[..30]) && o.stderr.ends_with(" two\n"), "{o}");
    sh.assert_clean();
}

/// `logs -f` follows until the shim exits.
#[test]
fn shim_logs_follow() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-logsf");
    let mut b = ctx.bundle();
    b.sh("for i in 1 2 3; do echo line$i; sleep 0.2; done");
    let sh = Shim::new(&ctx, &mut b, "lf");
    sh.spawn_detached(&b, &[]);
    let o = ctx.exec_cmd(sh.tool("logs", &["-f"]), TIMEOUT);
    o.ok();
    assert_eq!(o.stdout, "line1\nline2\nline3\n", "{o}");
    sh.wait_exited();
    sh.assert_clean();
}

/// -i: `echo hi | spawn -i cat` gives hi back; attach of a detached -i container sends stdin,
/// its end closes the container's stdin, and the exit code comes back.
#[test]
fn shim_attach_stdin_and_output() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-attach");
    let input = ctx.dir.join("input");
    fs::write(&input, "hi\nthere\n").unwrap();

    let mut b = ctx.bundle();
    b.args(&["cat"]);
    let sh = Shim::new(&ctx, &mut b, "cat");
    let mut c = sh.spawn_cmd(&b, &["-i"]);
    c.stdin(fs::File::open(&input).unwrap());
    let o = ctx.exec_cmd(c, TIMEOUT);
    assert_eq!((o.code, o.stdout.as_str()), (0, "hi\nthere\n"), "{o}");
    sh.wait_exited();
    sh.assert_clean();

    let mut b = ctx.bundle();
    b.sh("read l; echo got:$l; echo to-err >&2; cat; echo bye; exit 5");
    let sh2 = Shim::new(&ctx, &mut b, "att");
    sh2.spawn_detached(&b, &["-i"]);
    let mut c = sh2.tool("attach", &["-i"]);
    c.stdin(fs::File::open(&input).unwrap());
    let o = ctx.exec_cmd(c, TIMEOUT);
    assert_eq!(o.code, 5, "{o}");
    assert_eq!(o.stdout, "got:hi\nthere\nbye\n", "{o}");
    assert_eq!(o.stderr, "to-err\n", "{o}");
    sh2.wait_exited();
    sh2.assert_clean();
}

/// A second client attached without stdin sees the same output; signal frames reach the init.
#[test]
fn shim_attach_two_clients_and_signal() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-sig");
    let mut b = ctx.bundle();
    b.sh("trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done");
    let sh = Shim::new(&ctx, &mut b, "sig");
    sh.spawn_detached(&b, &[]);
    assert!(wait_until(Duration::from_secs(10), || read(sh.dir.join("container.log")).contains("ready")));
    let mut a = Conn::open(&sh.dir);
    let mut b2 = Conn::open(&sh.dir);
    a.send(5, &libc::SIGTERM.to_be_bytes());
    let (out_a, _, code_a) = a.collect();
    let (out_b, _, code_b) = b2.collect();
    assert_eq!((out_a.as_str(), code_a), ("got-term\n", 42));
    assert_eq!((out_b.as_str(), code_b), ("got-term\n", 42));
    sh.wait_exited();
    sh.assert_clean();
}

/// -t -i: the pty comes from the runtime over the console socket; a resize frame sets its
/// size, stdin goes through the terminal; everything is logged as stdout.
#[test]
fn shim_tty() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-tty");
    let mut b = ctx.bundle();
    b.set("/process/terminal", json!(true));
    b.sh("read x; stty size; tty; echo got:$x; echo err >&2; exit 4");
    let sh = Shim::new(&ctx, &mut b, "tty");
    sh.spawn_detached(&b, &["-t", "-i"]);
    let mut c = Conn::open(&sh.dir);
    let mut size = Vec::new();
    size.extend_from_slice(&30u16.to_be_bytes());
    size.extend_from_slice(&100u16.to_be_bytes());
    c.send(4, &size);
    c.send(0, b"ok\n");
    let (out, err, code) = c.collect();
    assert_eq!(code, 4, "{out:?}");
    assert_eq!(err, "", "a terminal has no separate stderr");
    let l: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(l.first(), Some(&"ok"), "the terminal echoes input: {out:?}");
    assert!(l.contains(&"30 100"), "{out:?}");
    assert!(l.iter().any(|x| x.starts_with("/dev/pts/")), "{out:?}");
    assert!(l.contains(&"got:ok") && l.contains(&"err"), "{out:?}");
    sh.wait_exited();
    let e = sh.log_entries();
    assert!(e.iter().all(|v| v["stream"] == "stdout"), "{e:?}");
    assert!(e.iter().any(|v| v["log"] == "err\r\n"), "{e:?}");
    sh.assert_clean();
}

/// on-failure:2: two restarts, then exited with restart_count 2; the on-exit command runs
/// once, at the very end.
#[test]
fn shim_restart_on_failure() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-restart");
    let mut b = ctx.bundle();
    b.sh("echo run; exit 3");
    let sh = Shim::new(&ctx, &mut b, "rs");
    let marker = ctx.dir.join("on-exit");
    let script = format!("echo done >> {}", marker.display());
    let o = ctx.exec_cmd(sh.spawn_cmd(&b, &["--restart", "on-failure:2", "--", "/bin/sh", "-c", &script]), TIMEOUT);
    assert_eq!(o.code, 3, "{o}");
    assert_eq!(o.stdout, "run\nrun\nrun\n", "the attach lasts over restarts: {o}");
    let st = sh.wait_exited();
    assert_eq!((st["restart_count"].as_i64(), st["exit_code"].as_i64()), (Some(2), Some(3)), "{st}");
    assert!(wait_file(&marker, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(read(&marker), "done\n");
    assert_eq!(sh.log_entries().len(), 3);
    sh.assert_clean();
}

/// always: restarts after exit 0 until a stop is requested.
#[test]
fn shim_restart_always_until_stop() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-always");
    let mut b = ctx.bundle();
    b.sh("echo run; sleep 0.1");
    let sh = Shim::new(&ctx, &mut b, "al");
    sh.spawn_detached(&b, &["--restart", "always"]);
    sh.wait_state("two restarts", Duration::from_secs(20), |v| v["restart_count"].as_i64() >= Some(2));
    ctx.exec_cmd(sh.tool("stop", &[]), TIMEOUT).ok();
    let st = sh.wait_exited();
    let n = st["restart_count"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sh.state()["restart_count"].as_i64(), Some(n), "no restart after the stop");
    assert_eq!(st["exit_code"], 0, "{st}");
    sh.assert_clean();
}

/// Killing the command that spawned the shim (attached) leaves the container running; it is
/// still stopped normally through the runtime.
#[test]
fn shim_caller_killed_container_survives() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-caller");
    let mut b = ctx.bundle();
    b.sh("echo up; sleep 1000");
    let sh = Shim::new(&ctx, &mut b, "cl");
    let mut c = sh.spawn_cmd(&b, &["-i"]);
    c.stdin(Stdio::piped());
    let bg = ctx.spawn_cmd(c);
    let st = sh.wait_state("running", Duration::from_secs(20), |v| v["status"] == "running");
    let cpid = st["container_pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) of the process group of the command this test started.
    unsafe { libc::kill(-bg.pid(), libc::SIGKILL) };
    let o = bg.wait(TIMEOUT);
    assert_eq!(o.code, 137, "{o}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(pid_alive(cpid), "the container died with its caller");
    assert_eq!(ctx.status(&sh.id).as_deref(), Some("running"));
    assert_eq!(sh.state()["status"], "running");
    ctx.kill(&sh.id, "KILL").ok();
    let st = sh.wait_exited();
    assert_eq!(st["exit_code"], 137, "{st}");
    sh.assert_clean();
}

/// A SIGKILLed shim leaves the container running; the state stays readable, `shim state`
/// says the shim is dead, and `kill` / `delete -f` still work.
#[test]
fn shim_killed_container_stays_stoppable() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-dead");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let sh = Shim::new(&ctx, &mut b, "dead");
    let (cpid, spid) = sh.spawn_detached(&b, &[]);
    let o = ctx.exec_cmd(sh.tool("state", &[]), TIMEOUT);
    o.ok();
    assert!(o.stdout.contains("\"shim_alive\":true"), "{o}");
    // SAFETY: kill(2) of the shim this test started.
    unsafe { libc::kill(spid, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(spid)));
    std::thread::sleep(Duration::from_millis(200));
    assert!(pid_alive(cpid), "the container died with its shim");
    assert_eq!(ctx.status(&sh.id).as_deref(), Some("running"));
    let o = ctx.exec_cmd(sh.tool("state", &[]), TIMEOUT);
    o.ok();
    assert!(o.stdout.contains("\"shim_alive\":false") && o.stdout.contains("\"status\":\"running\""), "{o}");
    let o = ctx.exec_cmd(sh.tool("attach", &[]), TIMEOUT);
    o.one_line_error(&["shim"]);
    ctx.kill(&sh.id, "KILL").ok();
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(cpid)), "kill works without the shim");
    ctx.delete_force(&sh.id).ok();
    assert!(!ctx.root.join(&sh.id).exists());
    for cg in cgroup_dirs(&sh.id, sh.cg.as_deref()) {
        assert!(!cg.exists(), "cgroup {} still exists", cg.display());
    }
}

/// Exec errors come back from spawn as ONE line with docker's codes: 127 not found, 126 not
/// executable (create-time and start-time failures); nothing is left (runtime state, cgroup,
/// socket).
#[test]
fn shim_exec_errors_126_127() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-execerr");
    let cases: &[(&[&str], i32, &[&str])] = &[
        (&["nope-not-here"], 127, &["not found"]),
        (&["/bin/nope"], 127, &["no such file"]),
        (&["/etc/passwd"], 126, &["permission denied"]),
        (&["/bin/garbage"], 126, &["exec format error"]),
    ];
    for (args, code, words) in cases {
        for detach in [true, false] {
            let mut b = ctx.bundle();
            b.write_file("bin/garbage", "\u{1}\u{2}not an executable", 0o755);
            b.args(args);
            let sh = Shim::new(&ctx, &mut b, "ee");
            let snap = ctx.snapshot(&b);
            let o = ctx.exec_cmd(sh.spawn_cmd(&b, if detach { &["-d"] } else { &[] }), TIMEOUT);
            assert_eq!(o.code, *code, "{args:?}: {o}");
            o.one_line_error(words);
            assert!(o.stdout.is_empty(), "{o}");
            let st = sh.wait_exited();
            assert_eq!(st["exit_code"].as_i64(), Some(*code as i64), "{st}");
            assert!(st["error"].as_str().is_some_and(|e| !e.is_empty()), "{st}");
            ctx.assert_nothing_left(&snap, &b, &sh.id);
            sh.assert_clean();
        }
    }
}

/// A bad bundle is a runtime error: 125, one line.
#[test]
fn shim_runtime_error_125() {
    if skip_on_runc("berth shim") {
        return;
    }
    let ctx = Ctx::new("shim-125");
    let mut b = ctx.bundle();
    let sh = Shim::new(&ctx, &mut b, "bad");
    fs::write(b.config_path(), "{not json").unwrap();
    let o = ctx.exec_cmd(sh.spawn_cmd(&b, &["-d"]), TIMEOUT);
    assert_eq!(o.code, 125, "{o}");
    o.one_line_error(&["config.json"]);
    sh.wait_exited();
    sh.assert_clean();
}

/// An OOM-killed container: 137 and oom_killed in shim.json (cgroup v1 memory controller).
#[test]
fn shim_oom_killed() {
    if skip_on_runc("berth shim") {
        return;
    }
    if !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        eprintln!("shim_oom_killed: skipped: no cgroup v1 memory controller");
        return;
    }
    let ctx = Ctx::new("shim-oom");
    let mut b = ctx.bundle();
    let mut mem = json!({"limit": 33554432});
    if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        mem["swap"] = json!(33554432);
    }
    b.set("/linux/resources/memory", mem);
    b.args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    let sh = Shim::new(&ctx, &mut b, "oom");
    let o = ctx.exec_cmd(sh.spawn_cmd(&b, &[]), TIMEOUT);
    assert_eq!(o.code, 137, "{o}");
    let st = sh.wait_exited();
    assert_eq!((st["exit_code"].as_i64(), st["oom_killed"].as_bool()), (Some(137), Some(true)), "{st}");
    sh.assert_clean();
}
