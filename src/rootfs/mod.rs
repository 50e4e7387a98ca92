//! Root filesystem set-up inside the container's new mount namespace.
//!
//! Called from the container's init process, in this order:
//! 1. `prepare`  (new mount ns, user ns already mapped, cgroup already joined)
//! 2. createContainer hooks run (by the caller)
//! 3. `pivot`
//! 4. `finalize`

use oci_spec::runtime::Spec;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs: {0}")]
    Other(String),
}

pub struct Context {
    /// Absolute, canonical path of the rootfs on the host.
    pub rootfs: PathBuf,
    /// `--no-pivot`: use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// The init is in a new user namespace: device nodes are bind-mounted from the host instead of mknod.
    pub userns: bool,
    /// What a `cgroup` type mount should show.
    pub cgroup: crate::cgroups::MountInfo,
}

/// Propagation of /, bind of the rootfs onto itself, every mount of the spec (destinations
/// resolved inside the rootfs), linux.devices plus the default devices, /dev symlinks, /dev/ptmx.
pub fn prepare(_spec: &Spec, _ctx: &Context) -> Result<(), RootfsError> {
    Ok(())
}

/// pivot_root into the rootfs (or move+chroot with no_pivot) and chdir("/").
pub fn pivot(_ctx: &Context) -> Result<(), RootfsError> {
    Ok(())
}

/// After pivot: maskedPaths, readonlyPaths, root.readonly, final rootfsPropagation.
pub fn finalize(_spec: &Spec, _ctx: &Context) -> Result<(), RootfsError> {
    Ok(())
}
