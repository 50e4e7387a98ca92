//! `RUN --mount=type=ssh`: the build's ssh agents (`--ssh ID=SOCKET`) forwarded into a RUN
//! step as buildkit forwards them: a proxy socket of the step's own (owner and mode from the
//! mount's `uid`, `gid`, `mode`), bound into the container at the mount's target, each
//! connection to it relayed to the agent's socket on the host. The agent's socket itself is
//! never bound into the container, and nothing of it is in the layer or the cache key.
//! `--ssh ID=KEYFILE` gets an agent of the build's own holding that key ([`KeyAgent`]).

use super::{io_err, BuildError};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The default target of the Nth ssh mount of a step, as buildkit's.
pub fn default_target(n: usize) -> String {
    format!("/run/buildkit/ssh_agent.{n}")
}

/// Checks that `path` is a socket that accepts a connection (an agent's), or a readable
/// file (a key, loaded into an agent of the build's own).
pub fn check_agent(path: &Path) -> Result<(), String> {
    let m = fs::metadata(path).map_err(|e| format!("ssh agent socket or key {}: {e}", path.display()))?;
    if m.is_file() {
        fs::File::open(path).map_err(|e| format!("ssh key {}: {e}", path.display()))?;
        return Ok(());
    }
    if !m.file_type().is_socket() {
        return Err(format!("{} is not a socket or a key file", path.display()));
    }
    UnixStream::connect(path).map_err(|e| format!("connect to ssh agent socket {}: {e}", path.display()))?;
    Ok(())
}

/// One forwarded agent: the proxy socket and its accepting thread; stopped and removed
/// when dropped.
pub struct Forward {
    pub socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forward {
    /// Listens on `dir/agent.sock` (owner `uid:gid`, `mode`) and relays each connection to
    /// `agent`.
    pub fn start(agent: &Path, dir: &Path, uid: u32, gid: u32, mode: u32) -> Result<Forward, BuildError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let socket = dir.join("agent.sock");
        let listener = UnixListener::bind(&socket).map_err(io_err("bind", &socket))?;
        std::os::unix::fs::chown(&socket, Some(uid), Some(gid)).map_err(io_err("chown", &socket))?;
        fs::set_permissions(&socket, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", &socket))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (agent, st) = (agent.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = conn else { continue };
                let Ok(a) = UnixStream::connect(&agent) else { continue };
                relay(c, a);
            }
        });
        Ok(Forward { socket, stop, thread: Some(thread) })
    }
}

/// Copies both ways between the container's connection and the agent's, each direction in
/// a thread of its own, ending when either side closes.
fn relay(c: UnixStream, a: UnixStream) {
    let (Ok(c2), Ok(a2)) = (c.try_clone(), a.try_clone()) else { return };
    std::thread::spawn(move || pipe(c, a));
    std::thread::spawn(move || pipe(a2, c2));
}

fn pipe(mut from: UnixStream, mut to: UnixStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
    let _ = from.shutdown(std::net::Shutdown::Read);
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the stop.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.socket);
    }
}

/// An agent of the build's own for `--ssh ID=KEYFILE`: the host's `ssh-agent -D` on a socket
/// in the build's scratch dir with the key added by `ssh-add` (a key with a passphrase is
/// refused: nothing can ask for it); killed by its pid when dropped.
pub struct KeyAgent {
    child: std::process::Child,
    pub socket: PathBuf,
}

impl KeyAgent {
    pub fn start(id: &str, key: &Path, dir: &Path, n: usize) -> Result<KeyAgent, String> {
        use std::process::{Command, Stdio};
        let socket = dir.join(format!("key-agent-{n}.sock"));
        let mut cmd = Command::new("ssh-agent");
        cmd.arg("-D").arg("-a").arg(&socket).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("--ssh {id}={}: run ssh-agent: {e}", key.display()))?;
        // Its pid, for the next build to end it when this one is killed outright (ssh-agent is
        // setgid: a parent-death signal does not survive its exec).
        let _ = fs::write(dir.join(format!("key-agent-{n}.pid")), child.id().to_string());
        let mut a = KeyAgent { child, socket };
        let t0 = std::time::Instant::now();
        while UnixStream::connect(&a.socket).is_err() {
            if t0.elapsed() > std::time::Duration::from_secs(5) || a.child.try_wait().ok().flatten().is_some() {
                return Err(format!("--ssh {id}={}: ssh-agent made no socket", key.display()));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let o = Command::new("ssh-add")
            .arg("-q")
            .arg("--")
            .arg(key)
            .env("SSH_AUTH_SOCK", &a.socket)
            .env_remove("SSH_ASKPASS")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("--ssh {id}={}: run ssh-add: {e}", key.display()))?;
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            a.stop();
            return Err(format!("--ssh {id}={}: ssh-add: {last}", key.display()));
        }
        Ok(a)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ends the agents of a build that was killed outright (its scratch dir `dir`): each pid
/// recorded there whose process is still the `ssh-agent` of that dir's socket.
pub fn kill_stale(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("key-agent-").and_then(|r| r.strip_suffix(".pid")) else { continue };
        let Some(pid) = fs::read_to_string(e.path()).ok().and_then(|p| p.trim().parse::<i32>().ok()) else { continue };
        let sock = dir.join(format!("key-agent-{n}.sock"));
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if pid > 1 && cmdline.starts_with("ssh-agent") && cmdline.contains(&*sock.to_string_lossy()) {
            // SAFETY: a signal to the pid checked just above to be that agent.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}
