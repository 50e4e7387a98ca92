//! Hand the seccomp notify fd to the agent listening on `linux.seccomp.listenerPath`.

use super::{OsErr, SeccompError};
use nix::errno::Errno;
use nix::sys::socket::{
    connect, send, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use oci_spec::runtime::SECCOMP_FD_NAME;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

/// Build the runtime spec's "container process state" JSON sent with the notify fd:
/// `{"ociVersion", "fds": ["seccompFd"], "pid", "metadata", "state"}`. `state` is the container
/// state (status "creating", the init's pid); `metadata` is `linux.seccomp.listenerMetadata`
/// and, as the spec says, present only when that is set.
pub fn process_state_json(oci_version: &str, pid: i32, state: serde_json::Value, metadata: Option<&str>) -> Vec<u8> {
    let mut msg = serde_json::json!({
        "ociVersion": oci_version,
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = metadata {
        msg["metadata"] = serde_json::json!(m);
    }
    serde_json::to_vec(&msg).unwrap_or_default()
}

/// Connect to the unix stream socket at `listener_path` and send `state_json` (see
/// [`process_state_json`]) with `notify_fd` attached as SCM_RIGHTS in the same message, as the
/// runtime spec's seccomp section describes. The connection is closed afterwards; the caller
/// keeps (and should close) its own copy of `notify_fd`.
pub fn send_to_listener(listener_path: &Path, notify_fd: BorrowedFd, state_json: &[u8]) -> Result<(), SeccompError> {
    let err = |op: &'static str, e: Errno| SeccompError::Listener {
        op,
        path: listener_path.to_path_buf(),
        err: OsErr(e as i32),
    };
    let addr = UnixAddr::new(listener_path).map_err(|e| err("connect to", e))?;
    let sock = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| err("connect to", e))?;
    loop {
        match connect(sock.as_raw_fd(), &addr) {
            Err(Errno::EINTR) => continue,
            r => {
                break r.map_err(|e| SeccompError::Agent { path: listener_path.to_path_buf(), err: OsErr(e as i32) })?
            }
        }
    }
    let fds = [notify_fd.as_raw_fd()];
    let flags = MsgFlags::MSG_NOSIGNAL;
    let mut sent = loop {
        let iov = [IoSlice::new(state_json)];
        match sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], flags, None) {
            Err(Errno::EINTR) => continue,
            r => break r.map_err(|e| err("send seccomp fd to", e))?,
        }
    };
    // A stream socket may take a long state in several parts; the fd went with the first.
    while sent < state_json.len() {
        match send(sock.as_raw_fd(), &state_json[sent..], flags) {
            Err(Errno::EINTR) => continue,
            Ok(0) => return Err(err("send state to", Errno::EPIPE)),
            r => sent += r.map_err(|e| err("send state to", e))?,
        }
    }
    Ok(())
}
