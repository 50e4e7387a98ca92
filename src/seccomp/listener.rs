//! Hand the seccomp notify fd to the agent listening on `linux.seccomp.listenerPath`.

use super::{OsErr, SeccompError};
use nix::errno::Errno;
use nix::sys::socket::{
    connect, send, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use oci_spec::runtime::{ContainerProcessStateBuilder, State, SECCOMP_FD_NAME};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

/// Build the runtime spec's "container process state" JSON to send with the notify fd:
/// `{"ociVersion", "fds": ["seccompFd"], "pid", "metadata", "state"}`. `pid` and `ociVersion`
/// are taken from `state` (the container state with status "creating" and the init's pid as
/// the runtime sees it); `metadata` is `linux.seccomp.listenerMetadata` (omitted when None).
pub fn process_state_json(state: &State, metadata: Option<&str>) -> Result<Vec<u8>, SeccompError> {
    let pid = state.pid().ok_or_else(|| {
        SeccompError::Invalid("container state for the listener has no pid".into())
    })?;
    let mut b = ContainerProcessStateBuilder::default()
        .version(state.version().clone())
        .fds(vec![SECCOMP_FD_NAME.to_string()])
        .pid(pid)
        .state(state.clone());
    if let Some(m) = metadata {
        b = b.metadata(m.to_string());
    }
    let cps = b
        .build()
        .map_err(|e| SeccompError::Invalid(format!("build container process state: {e}")))?;
    serde_json::to_vec(&cps)
        .map_err(|e| SeccompError::Invalid(format!("encode container process state: {e}")))
}

/// Connect to the unix stream socket at `listener_path` and send `state_json` (see
/// [`process_state_json`]) with `notify_fd` attached as SCM_RIGHTS in the same message, as the
/// runtime spec's seccomp section describes. The connection is closed afterwards; the caller
/// keeps (and should close) its own copy of `notify_fd`.
pub fn send_to_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    let err = |op: &'static str, e: Errno| SeccompError::Listener {
        op,
        path: listener_path.to_path_buf(),
        err: OsErr(e as i32),
    };
    let addr = UnixAddr::new(listener_path).map_err(|e| err("connect to", e))?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err("connect to", e))?;
    loop {
        match connect(sock.as_raw_fd(), &addr) {
            Err(Errno::EINTR) => continue,
            r => break r.map_err(|e| err("connect to", e))?,
        }
    }
    let fds = [notify_fd.as_raw_fd()];
    let flags = MsgFlags::MSG_NOSIGNAL;
    let mut sent = loop {
        let iov = [IoSlice::new(state_json)];
        match sendmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            flags,
            None,
        ) {
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
