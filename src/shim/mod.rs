//! The per-container shim, like conmon: one small detached process per container that
//! starts it through the runtime (berth's own binary: `create` then `start`), holds its stdio
//! (pipes, or the pty master received over a console socket), is its child subreaper so it gets
//! the real exit status, writes the json-file log, serves `attach` on a unix socket, applies the
//! restart policy, and runs the container layer's clean-up command at the end.
//!
//! Files in the container's state dir:
//!   shim.json       [`ShimState`], rewritten atomically on every change
//!   container.log   the log: json-file or docker's local format (default log path)
//!   attach.sock     attach socket while the shim runs (framing in `proto`)
//!   stop-requested  written by [`request_stop`]: no restart after the next exit
//!   restart-policy  a new restart policy (`update --restart`), applied from the next exit
//!   container.pid   the runtime's --pid-file; console.sock briefly with a tty
//!
//! The sockets and the pid file (attach.sock, console.sock, container.pid) go to the run dir
//! instead when one is given (an ordinary user's engine: under $XDG_RUNTIME_DIR, which a
//! reboot empties, while shim.json and the log stay with the container's record); shim.json
//! names it, so clients find the attach socket through [`attach_sock`].
//!
//! The shim is the same binary: [`spawn`] double-forks and execs `/proc/self/exe shim serve ...`
//! (setsid, own process group, stdio on /dev/null) and waits on a sync pipe for
//! "ok <container-pid> <shim-pid>" or the runtime's one-line error.

mod client;
pub mod health;
mod jsonlog;
pub mod locallog;
pub(crate) mod proto;
mod server;
pub(crate) mod sys;
pub mod syslog;

pub use client::{attach, attach_with, parse_detach_keys, relay, relay_with, RelayEnd};
#[allow(unused_imports)] // API of the container layer
pub use jsonlog::{logs, now_rfc3339, parse_go_duration, parse_rfc3339, parse_since, LogConfig, LogSink, LogStream};

use serde::{Deserialize, Serialize};
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "shim.json";
pub const LOG_FILE: &str = "container.log";
pub const ATTACH_SOCK: &str = "attach.sock";
pub const STOP_FILE: &str = "stop-requested";
/// A restart policy changed while the shim runs (`container update --restart`): read at the
/// next exit.
pub const RESTART_FILE: &str = "restart-policy";
const PID_FILE: &str = "container.pid";
const CONSOLE_SOCK: &str = "console.sock";

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The container did not start: the runtime's error, with docker's exit code (125 runtime
    /// error, 126 not executable, 127 not found).
    #[error("{msg}")]
    Start { msg: String, code: i32 },
    #[error("{op} {path}: {err}")]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
    #[error("{0}")]
    Msg(String),
}

impl ShimError {
    fn io(op: &'static str, path: &Path, err: std::io::Error) -> ShimError {
        ShimError::Io { op, path: path.to_path_buf(), err }
    }

    /// The exit code a docker-like CLI reports for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ShimError::Start { code, .. } => *code,
            _ => 125,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    /// Restart after a non-zero exit, at most N times (0: no limit).
    OnFailure(u32),
    Always,
    /// As `Always` here (the difference is only at engine start).
    UnlessStopped,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy, ShimError> {
        let bad =
            || ShimError::Msg(format!("invalid restart policy {s:?} (no, always, unless-stopped, on-failure[:N])"));
        Ok(match s {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(0),
            _ => match s.strip_prefix("on-failure:") {
                Some(n) => RestartPolicy::OnFailure(n.parse().map_err(|_| bad())?),
                None => return Err(bad()),
            },
        })
    }

    /// Restart after an exit with `code`, when `count` restarts were made already?
    pub fn should_restart(self, code: i32, count: u32, stop_requested: bool) -> bool {
        if stop_requested {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && (max == 0 || count < max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure(0) => f.write_str("on-failure"),
            RestartPolicy::OnFailure(n) => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

/// What the shim of one container is told.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// Runtime container id.
    pub id: String,
    pub bundle: PathBuf,
    /// The runtime's --root.
    pub runtime_root: PathBuf,
    /// Where shim.json, attach.sock (and by default the log) live; created if missing.
    pub state_dir: PathBuf,
    /// Where the sockets and the runtime's pid file live instead of `state_dir` (created if
    /// missing, removed when the shim ends).
    pub run_dir: Option<PathBuf>,
    /// The config asks for a terminal (process.terminal): the pty comes over a console socket.
    pub tty: bool,
    /// Keep the container's stdin open (docker -i).
    pub stdin: bool,
    pub log_path: PathBuf,
    pub restart: RestartPolicy,
    /// Run (argv, with a timeout) once the container is gone for good.
    pub on_exit: Vec<String>,
    /// The runtime to call (berth itself: its resolved /proc/self/exe).
    pub runtime_binary: PathBuf,
    /// The health check to run while the container runs (see [`health`]).
    pub health: Option<crate::image::types::Healthcheck>,
    /// The engine's event journal (die and health_status events) and the container's event
    /// attributes (name, image, labels).
    pub events: Option<PathBuf>,
    pub event_attrs: std::collections::BTreeMap<String, String>,
    /// Log driver and options.
    pub log: LogConfig,
}

/// Returned by [`spawn`] once the container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartInfo {
    pub shim_pid: i32,
    pub container_pid: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    /// Exited, waiting for the restart back-off.
    Restarting,
    Exited,
}

/// shim.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShimState {
    pub shim_pid: i32,
    /// Start time of the shim's pid (/proc/PID/stat field 22): tells a live shim from a reused pid.
    pub shim_start: u64,
    pub container_pid: i32,
    pub status: Status,
    /// Exit code of the last run (128+signal when killed), or 125/126/127 when it did not start.
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub restart_count: u32,
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the container could not be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The shim's run dir (its sockets), when not the state dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
}

impl ShimConfig {
    /// Where the sockets and the runtime's pid file live.
    pub fn sock_dir(&self) -> &Path {
        self.run_dir.as_deref().unwrap_or(&self.state_dir)
    }
}

/// The attach socket of the shim whose state is in `state_dir` (in its run dir when shim.json
/// names one).
pub fn attach_sock(state_dir: &Path) -> PathBuf {
    read_state(state_dir).ok().and_then(|s| s.run_dir).unwrap_or_else(|| state_dir.to_path_buf()).join(ATTACH_SOCK)
}

pub fn read_state(state_dir: &Path) -> Result<ShimState, ShimError> {
    let p = state_dir.join(STATE_FILE);
    let data = std::fs::read(&p).map_err(|e| ShimError::io("read", &p, e))?;
    serde_json::from_slice(&data).map_err(|e| ShimError::Msg(format!("parse {}: {e}", p.display())))
}

fn write_state(state_dir: &Path, st: &ShimState) -> Result<(), ShimError> {
    let tmp = state_dir.join(".shim.json.tmp");
    let data = serde_json::to_vec(st).map_err(|e| ShimError::Msg(format!("encode {STATE_FILE}: {e}")))?;
    std::fs::write(&tmp, data).map_err(|e| ShimError::io("write", &tmp, e))?;
    let p = state_dir.join(STATE_FILE);
    std::fs::rename(&tmp, &p).map_err(|e| ShimError::io("rename", &p, e))
}

/// True while the shim that wrote `state` runs (same pid and start time, not a zombie). A dead
/// shim leaves its container running and stoppable through the runtime (kill, delete -f).
pub fn shim_alive(state: &ShimState) -> bool {
    state.shim_pid > 0 && sys::start_time(state.shim_pid) == Some(state.shim_start)
}

/// Asks the shim not to restart the container after its next exit (`stop` then signals it
/// through the runtime). Works with a dead shim too (the file stays).
pub fn request_stop(state_dir: &Path) -> Result<(), ShimError> {
    let p = state_dir.join(STOP_FILE);
    std::fs::write(&p, b"").map_err(|e| ShimError::io("write", &p, e))?;
    if let Ok(s) = sys::connect(&attach_sock(state_dir)) {
        sys::write_all(s.as_raw_fd(), &proto::frame(proto::STOP, b""));
    }
    Ok(())
}

/// docker's exit code for a runtime error: 127 when the process's executable is not found,
/// 126 when it cannot be executed, 125 for anything else.
pub fn exit_code_for(msg: &str) -> i32 {
    let m = msg.to_ascii_lowercase();
    let exec = m.starts_with("exec ") || m.starts_with("exec:") || m.contains(": exec ") || m.contains(": exec:");
    if !exec {
        125
    } else if m.contains("not found") || m.contains("no such file or directory") {
        127
    } else if m.contains("permission denied")
        || m.contains("exec format error")
        || m.contains("not a regular file")
        || m.contains("is a directory")
    {
        126
    } else {
        125
    }
}

/// The one line of a runtime's stderr that says what failed ("berth: " prefix removed).
fn error_line(stderr: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(stderr);
    let l = s.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    Some(l.strip_prefix("berth: ").unwrap_or(l).to_string())
}

// ---------------------------------------------------------------------------------------------
// Spawning

impl ShimConfig {
    /// The `serve` arguments that hand this config to the shim process.
    fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::with_capacity(24 + self.on_exit.len());
        let mut kv = |k: &str, v: &std::ffi::OsStr| {
            a.push(k.into());
            a.push(v.to_os_string());
        };
        kv("--id", self.id.as_ref());
        kv("--bundle", self.bundle.as_os_str());
        kv("--root", self.runtime_root.as_os_str());
        kv("--state-dir", self.state_dir.as_os_str());
        if let Some(r) = &self.run_dir {
            kv("--run-dir", r.as_os_str());
        }
        kv("--log", self.log_path.as_os_str());
        kv("--runtime", self.runtime_binary.as_os_str());
        kv("--restart", self.restart.to_string().as_ref());
        if let Some(h) = &self.health {
            kv("--health", serde_json::to_string(h).unwrap_or_default().as_ref());
        }
        if self.log != LogConfig::default() {
            kv("--log-config", serde_json::to_string(&self.log).unwrap_or_default().as_ref());
        }
        if let Some(e) = &self.events {
            kv("--events", e.as_os_str());
            kv("--event-attrs", serde_json::to_string(&self.event_attrs).unwrap_or_default().as_ref());
        }
        if self.tty {
            a.push("--tty".into());
        }
        if self.stdin {
            a.push("--stdin".into());
        }
        if !self.on_exit.is_empty() {
            a.push("--".into());
            a.extend(self.on_exit.iter().map(OsString::from));
        }
        a
    }
}

fn cstring(s: &[u8]) -> Result<CString, ShimError> {
    CString::new(s)
        .map_err(|_| ShimError::Msg(format!("argument {:?} contains a NUL byte", String::from_utf8_lossy(s))))
}

/// Starts the detached shim of `cfg` and returns once the container runs; a runtime error
/// comes back as `ShimError::Start` with its exit code.
pub fn spawn(cfg: &ShimConfig) -> Result<StartInfo, ShimError> {
    spawn_inner(cfg, None)
}

/// As [`spawn`], with an attach connection made before the container starts (so no output is
/// missed): pass the stream to [`relay`].
pub fn spawn_attached(cfg: &ShimConfig) -> Result<(StartInfo, UnixStream), ShimError> {
    let (mine, theirs) = UnixStream::pair().map_err(|e| ShimError::Msg(format!("socketpair for attach: {e}")))?;
    let info = spawn_inner(cfg, Some(theirs.as_raw_fd()))?;
    Ok((info, mine))
}

fn spawn_inner(cfg: &ShimConfig, attach_fd: Option<RawFd>) -> Result<StartInfo, ShimError> {
    berth::validate_id(&cfg.id).map_err(|e| ShimError::Msg(e.to_string()))?;
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| ShimError::io("create", &cfg.state_dir, e))?;
    if let Some(r) = &cfg.run_dir {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(r).map_err(|e| ShimError::io("create", r, e))?;
    }
    // A stop asked of an earlier run of this container does not apply to this one.
    let _ = std::fs::remove_file(cfg.state_dir.join(STOP_FILE));

    let mut args: Vec<CString> = vec![cstring(b"berth")?, cstring(b"shim")?, cstring(b"serve")?];
    args.push(cstring(b"--sync-fd")?);
    args.push(cstring(b"3")?);
    if attach_fd.is_some() {
        args.push(cstring(b"--attach-fd")?);
        args.push(cstring(b"4")?);
    }
    for a in cfg.to_args() {
        args.push(cstring(a.as_bytes())?);
    }
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let exe = cstring(b"/proc/self/exe")?;
    let (sync_r, sync_w) = sys::pipe().map_err(|e| ShimError::Msg(format!("pipe for the shim: {e}")))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| ShimError::io("open", Path::new("/dev/null"), e))?;
    let (sw, nl, af) = (sync_w.as_raw_fd(), null.as_raw_fd(), attach_fd.unwrap_or(-1));

    // SAFETY: fork; the child only makes async-signal-safe calls (setsid, fork, setpgid, fcntl,
    // dup2, close_range, execve, _exit) on fds and arrays prepared above, so this is sound even
    // when the caller has other threads.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ShimError::Msg(format!("fork the shim: {}", std::io::Error::last_os_error())));
    }
    if pid == 0 {
        // SAFETY: see above; nothing here returns into Rust code of the parent.
        unsafe {
            libc::setsid();
            let p = libc::fork();
            if p != 0 {
                libc::_exit(if p < 0 { 1 } else { 0 });
            }
            libc::setpgid(0, 0);
            // Move the fds above 4 first, so that the dup2s below cannot clobber each other.
            let s = libc::fcntl(sw, libc::F_DUPFD, 10);
            let a = if af >= 0 { libc::fcntl(af, libc::F_DUPFD, 10) } else { -1 };
            for t in 0..3 {
                libc::dup2(nl, t);
            }
            libc::dup2(s, 3);
            let mut first_closed = 4;
            if a >= 0 {
                libc::dup2(a, 4);
                first_closed = 5;
            }
            libc::syscall(libc::SYS_close_range, first_closed as libc::c_uint, libc::c_uint::MAX, 0u32);
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    drop(sync_w);
    drop(null);
    let mut st = 0;
    // SAFETY: reaping our own child (it exits right after forking the shim).
    unsafe { libc::waitpid(pid, &mut st, 0) };

    // Reply: one line, "ok <container-pid> <shim-pid>" or the runtime's error.
    let mut reply = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        match sys::read(sync_r.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.contains(&b'\n') || reply.len() > 64 * 1024 {
                    break;
                }
            }
            Err(libc::EAGAIN) => continue,
            Err(e) => {
                return Err(ShimError::Msg(format!("read the shim's reply: {}", std::io::Error::from_raw_os_error(e))))
            }
        }
    }
    let line = String::from_utf8_lossy(&reply);
    let line = line.lines().next().unwrap_or("").trim();
    if let Some(rest) = line.strip_prefix("ok ") {
        let mut it = rest.split(' ').filter_map(|x| x.parse::<i32>().ok());
        if let (Some(c), Some(s)) = (it.next(), it.next()) {
            return Ok(StartInfo { shim_pid: s, container_pid: c });
        }
    }
    if line.is_empty() {
        let why = match std::fs::read(cfg.state_dir.join(STATE_FILE)) {
            Ok(_) => "the shim exited before the container started".to_string(),
            Err(_) => "the shim did not start (see the exit status of /proc/self/exe shim serve)".to_string(),
        };
        return Err(ShimError::Start { msg: format!("container {}: {why}", cfg.id), code: 125 });
    }
    Err(ShimError::Start { msg: line.to_string(), code: exit_code_for(line) })
}

// ---------------------------------------------------------------------------------------------
// The hidden `shim` subcommand

const USAGE: &str = "usage: berth shim serve|health|spawn|attach|logs|state|stop [options] (internal)";

struct Args {
    v: Vec<OsString>,
    i: usize,
}

impl Args {
    fn next(&mut self) -> Option<OsString> {
        let a = self.v.get(self.i).cloned();
        self.i += 1;
        a
    }

    fn value(&mut self, flag: &str) -> Result<OsString, ShimError> {
        self.next().ok_or_else(|| ShimError::Msg(format!("{flag} needs a value")))
    }
}

fn fd_arg(a: &mut Args, flag: &str) -> Result<OwnedFd, ShimError> {
    let v = a.value(flag)?;
    let n: RawFd = v
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 2)
        .ok_or_else(|| ShimError::Msg(format!("invalid {flag} {v:?}")))?;
    // SAFETY: fcntl(F_GETFD) only checks that the fd is open.
    if unsafe { libc::fcntl(n, libc::F_GETFD) } < 0 {
        return Err(ShimError::Msg(format!("{flag} {n}: not an open file descriptor")));
    }
    sys::set_cloexec(n);
    // SAFETY: the fd is open and was handed to this process to own.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Entry of `berth shim ...` (`args` = what follows "shim"). `serve` is the shim process
/// itself; `spawn`, `attach`, `logs`, `state` and `stop` are a small debugging / test CLI.
pub fn main(args: Vec<OsString>) -> i32 {
    let mut a = Args { v: args, i: 0 };
    let sub = a.next().and_then(|s| s.into_string().ok()).unwrap_or_default();
    let r = match sub.as_str() {
        "serve" => return serve_main(&mut a),
        "health" => health_main(&mut a),
        "spawn" => spawn_main(&mut a),
        "attach" | "logs" | "state" | "stop" => tool_main(&sub, &mut a),
        _ => Err(ShimError::Msg(USAGE.into())),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            let line = e.to_string().replace('\n', " ");
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "berth: {line}");
            e.exit_code()
        }
    }
}

/// Parses the ShimConfig flags; unknown flags go to `extra`.
fn parse_config(
    a: &mut Args,
    extra: &mut dyn FnMut(&str, &mut Args) -> Result<bool, ShimError>,
) -> Result<ShimConfig, ShimError> {
    let mut c = ShimConfig {
        id: String::new(),
        bundle: PathBuf::new(),
        runtime_root: PathBuf::from("/run/berth"),
        state_dir: PathBuf::new(),
        run_dir: None,
        tty: false,
        stdin: false,
        log_path: PathBuf::new(),
        restart: RestartPolicy::No,
        on_exit: Vec::new(),
        runtime_binary: PathBuf::new(),
        health: None,
        events: None,
        event_attrs: Default::default(),
        log: LogConfig::default(),
    };
    while let Some(f) = a.next() {
        let f = f.to_string_lossy().into_owned();
        match f.as_str() {
            "--id" => c.id = a.value(&f)?.to_string_lossy().into_owned(),
            "--bundle" | "-b" => c.bundle = a.value(&f)?.into(),
            "--root" => c.runtime_root = a.value(&f)?.into(),
            "--state-dir" => c.state_dir = a.value(&f)?.into(),
            "--run-dir" => c.run_dir = Some(a.value(&f)?.into()),
            "--log" => c.log_path = a.value(&f)?.into(),
            "--runtime" => c.runtime_binary = a.value(&f)?.into(),
            "--restart" => c.restart = RestartPolicy::parse(&a.value(&f)?.to_string_lossy())?,
            "--health" => {
                let v = a.value(&f)?;
                c.health = Some(
                    serde_json::from_slice(v.as_bytes())
                        .map_err(|e| ShimError::Msg(format!("invalid --health: {e}")))?,
                );
            }
            "--events" => c.events = Some(a.value(&f)?.into()),
            "--log-config" => {
                let v = a.value(&f)?;
                c.log = serde_json::from_slice(v.as_bytes())
                    .map_err(|e| ShimError::Msg(format!("invalid --log-config: {e}")))?;
            }
            "--event-attrs" => {
                let v = a.value(&f)?;
                c.event_attrs = serde_json::from_slice(v.as_bytes())
                    .map_err(|e| ShimError::Msg(format!("invalid --event-attrs: {e}")))?;
            }
            "--tty" | "-t" => c.tty = true,
            "--stdin" | "-i" => c.stdin = true,
            "--" => {
                while let Some(x) = a.next() {
                    c.on_exit.push(x.to_string_lossy().into_owned());
                }
            }
            _ => {
                if !extra(&f, a)? {
                    return Err(ShimError::Msg(format!("unknown option {f:?} ({USAGE})")));
                }
            }
        }
    }
    if c.id.is_empty() || c.bundle.as_os_str().is_empty() || c.state_dir.as_os_str().is_empty() {
        return Err(ShimError::Msg("--id, --bundle and --state-dir are required".into()));
    }
    if c.log_path.as_os_str().is_empty() {
        c.log_path = c.state_dir.join(LOG_FILE);
    }
    if c.runtime_binary.as_os_str().is_empty() {
        c.runtime_binary = std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    }
    Ok(c)
}

fn serve_main(a: &mut Args) -> i32 {
    let mut sync = None;
    let mut attach = None;
    let mut fd_err = None;
    let cfg = parse_config(a, &mut |f, a| match f {
        "--sync-fd" => {
            match fd_arg(a, f) {
                Ok(fd) => sync = Some(fd),
                Err(e) => fd_err = Some(e),
            }
            Ok(true)
        }
        "--attach-fd" => {
            match fd_arg(a, f) {
                Ok(fd) => attach = Some(fd),
                Err(e) => fd_err = Some(e),
            }
            Ok(true)
        }
        _ => Ok(false),
    });
    let cfg = match (cfg, fd_err) {
        (Ok(c), None) => c,
        (Err(e), _) | (_, Some(e)) => {
            if let Some(s) = &sync {
                sys::write_all(s.as_raw_fd(), format!("{e}\n").as_bytes());
            }
            return 2;
        }
    };
    server::run(cfg, sync, attach)
}

/// `shim health`: the health-check helper the shim starts (the same flags as `serve`).
fn health_main(a: &mut Args) -> Result<i32, ShimError> {
    let cfg = parse_config(a, &mut |_, _| Ok(false))?;
    let Some(check) = cfg.health else { return Ok(0) };
    health::Monitor {
        state_dir: cfg.state_dir,
        runtime: cfg.runtime_binary,
        runtime_root: cfg.runtime_root,
        id: cfg.id,
        check,
        events: cfg.events,
        attrs: cfg.event_attrs,
    }
    .run();
    Ok(0)
}

fn spawn_main(a: &mut Args) -> Result<i32, ShimError> {
    let mut detach = false;
    let cfg = parse_config(a, &mut |f, _| {
        Ok(match f {
            "-d" | "--detach" => {
                detach = true;
                true
            }
            _ => false,
        })
    })?;
    if detach {
        let info = spawn(&cfg)?;
        println!("{} {}", info.container_pid, info.shim_pid);
        return Ok(0);
    }
    let (_info, sock) = spawn_attached(&cfg)?;
    relay(sock, cfg.stdin, cfg.tty, Some(&cfg.state_dir), true)
}

fn tool_main(sub: &str, a: &mut Args) -> Result<i32, ShimError> {
    let (mut dir, mut stdin, mut tty, mut follow, mut ts) = (PathBuf::new(), false, false, false, false);
    let (mut tail, mut since, mut log) = (None, None, None);
    while let Some(f) = a.next() {
        match f.to_string_lossy().as_ref() {
            "--state-dir" => dir = a.value("--state-dir")?.into(),
            "-i" | "--stdin" => stdin = true,
            "-t" | "--tty" if sub == "attach" => tty = true,
            "-t" | "--timestamps" => ts = true,
            "-f" | "--follow" => follow = true,
            "--log" => log = Some(PathBuf::from(a.value("--log")?)),
            "--tail" => {
                let v = a.value("--tail")?.to_string_lossy().into_owned();
                tail = if v == "all" {
                    None
                } else {
                    Some(v.parse().map_err(|_| ShimError::Msg(format!("invalid --tail {v:?}")))?)
                };
            }
            "--since" => {
                let v = a.value("--since")?.to_string_lossy().into_owned();
                since = Some(
                    parse_since(&v, std::time::SystemTime::now())
                        .ok_or_else(|| ShimError::Msg(format!("invalid --since {v:?}")))?,
                );
            }
            other => return Err(ShimError::Msg(format!("unknown option {other:?} ({USAGE})"))),
        }
    }
    if dir.as_os_str().is_empty() {
        return Err(ShimError::Msg("--state-dir is required".into()));
    }
    match sub {
        "attach" => attach(&dir, stdin, tty, true),
        "logs" => {
            use std::io::Write;
            let (mut o, mut e) = (std::io::stdout().lock(), std::io::stderr().lock());
            let path = log.unwrap_or_else(|| dir.join(LOG_FILE));
            // The reader of stdout leaving (a closed pipe) ends a follow.
            // SAFETY: fd 1 stays open for the whole call.
            let stdout = unsafe { std::os::fd::BorrowedFd::borrow_raw(1) };
            logs(&path, follow, tail, (since, None), ts, Some(stdout), &mut |s: LogStream, b: &[u8]| match s {
                LogStream::Stdout => o.write_all(b).and_then(|_| o.flush()),
                LogStream::Stderr => e.write_all(b),
            })?;
            Ok(0)
        }
        "state" => {
            let st = read_state(&dir)?;
            let mut v = serde_json::to_value(&st).map_err(|e| ShimError::Msg(e.to_string()))?;
            v["shim_alive"] = serde_json::json!(shim_alive(&st));
            println!("{v}");
            Ok(0)
        }
        _ => request_stop(&dir).map(|_| 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(RestartPolicy::parse("on-failure:3").unwrap(), RestartPolicy::OnFailure(3));
        assert_eq!(RestartPolicy::parse("on-failure").unwrap(), RestartPolicy::OnFailure(0));
        assert_eq!(RestartPolicy::parse("always").unwrap(), RestartPolicy::Always);
        assert!(RestartPolicy::parse("on-failure:x").is_err());
        assert!(RestartPolicy::parse("sometimes").is_err());
        for s in ["no", "on-failure", "on-failure:2", "always", "unless-stopped"] {
            assert_eq!(RestartPolicy::parse(s).unwrap().to_string(), s);
        }
        let f2 = RestartPolicy::OnFailure(2);
        assert!(f2.should_restart(1, 0, false) && f2.should_restart(1, 1, false));
        assert!(!f2.should_restart(1, 2, false) && !f2.should_restart(0, 0, false));
        assert!(RestartPolicy::OnFailure(0).should_restart(3, 100, false));
        assert!(RestartPolicy::Always.should_restart(0, 9, false));
        assert!(!RestartPolicy::Always.should_restart(0, 0, true));
        assert!(!RestartPolicy::No.should_restart(1, 0, false));
    }

    #[test]
    fn exit_codes_of_runtime_errors() {
        assert_eq!(exit_code_for("exec \"nope\": executable file not found in $PATH"), 127);
        assert_eq!(exit_code_for("exec \"/nope\": no such file or directory"), 127);
        assert_eq!(exit_code_for("exec \"/etc/passwd\": permission denied or not a regular file"), 126);
        assert_eq!(exit_code_for("cannot start container x: exec /bin/x: Exec format error"), 126);
        assert_eq!(exit_code_for("exec: \"nope\": executable file not found in $PATH"), 127);
        assert_eq!(exit_code_for("read /b/config.json: No such file or directory"), 125);
        assert_eq!(exit_code_for("chdir to cwd /x: Permission denied"), 125);
    }

    #[test]
    fn error_lines() {
        assert_eq!(error_line(b"warn\nberth: it broke\n\n").as_deref(), Some("it broke"));
        assert_eq!(error_line(b"  \n"), None);
    }

    #[test]
    fn config_args_round_trip() {
        let c = ShimConfig {
            id: "c1".into(),
            bundle: "/b".into(),
            runtime_root: "/r".into(),
            state_dir: "/s".into(),
            run_dir: Some("/run/s".into()),
            tty: true,
            stdin: false,
            log_path: "/s/l".into(),
            restart: RestartPolicy::OnFailure(2),
            on_exit: vec!["berth".into(), "--x".into(), "c1".into()],
            runtime_binary: "/bin/berth".into(),
            health: Some(crate::image::types::Healthcheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: 1_000_000,
                ..Default::default()
            }),
            events: Some("/d/events.jsonl".into()),
            event_attrs: [("name".to_string(), "web".to_string())].into(),
            log: LogConfig {
                driver: "local".into(),
                max_size: 1000,
                max_file: 3,
                compress: true,
                attrs: Default::default(),
                syslog: Some(syslog::SyslogTarget {
                    proto: "udp".into(),
                    addr: "127.0.0.1:514".into(),
                    facility: 24,
                    format: "rfc5424".into(),
                    tag: "web".into(),
                }),
                no_file: false,
            },
        };
        let mut a = Args { v: c.to_args(), i: 0 };
        let d = parse_config(&mut a, &mut |_, _| Ok(false)).unwrap();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }
}
