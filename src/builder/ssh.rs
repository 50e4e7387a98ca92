//! `RUN --mount=type=ssh`: the build's ssh agents (`--ssh ID=SOCKET`) forwarded into a RUN
//! step as buildkit forwards them: a proxy socket of the step's own (owner and mode from the
//! mount's `uid`, `gid`, `mode`), bound into the container at the mount's target, each
//! connection to it relayed to the agent's socket on the host. The agent's socket itself is
//! never bound into the container, and nothing of it is in the layer or the cache key.

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

/// Checks that `path` is a socket that accepts a connection (an agent's).
pub fn check_agent(path: &Path) -> Result<(), String> {
    let m = fs::metadata(path).map_err(|e| format!("ssh agent socket {}: {e}", path.display()))?;
    if !m.file_type().is_socket() {
        return Err(format!(
            "{} is not a socket: berth forwards ssh agent sockets (key files are not loaded into an agent of its own)",
            path.display()
        ));
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
