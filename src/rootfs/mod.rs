//! Root filesystem set-up inside the container's new mount namespace.
//!
//! Called from the container's init process, in this order:
//! 1. `prepare`  (new mount ns, user ns already mapped, cgroup already joined)
//! 2. createContainer hooks run (by the caller)
//! 3. `pivot`
//! 4. `finalize`
//!
//! Every mount destination and device path is resolved inside the rootfs (symlinks are
//! followed as if the rootfs were `/`), opened, and mounted on through `/proc/self/fd/N`, so
//! a mount lands on exactly what was resolved and never outside the rootfs. No mountinfo is
//! read.

mod devices;
mod hostfs;
mod mounts;
mod options;
mod resolve;
mod sys;
pub(crate) use sys::open_proc_file;

pub use hostfs::{drop_setup_fs, Hider};
pub(crate) use sys::mount_setattr;

use nix::errno::Errno;
use oci_spec::runtime::Spec;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Test hook: use the user-space resolver even where openat2(2) exists.
#[doc(hidden)]
#[allow(unused_imports)]
pub use sys::force_no_openat2;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs: {0}")]
    Other(String),
    /// A syscall failed; `what` names the call and the path.
    #[error("{what}: {}", .errno.desc())]
    Sys { what: String, errno: Errno },
}

impl RootfsError {
    pub(crate) fn sys(errno: Errno, what: String) -> RootfsError {
        RootfsError::Sys { what, errno }
    }
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
    /// linux.mountLabel, only when SELinux is enabled on the host (as runc, the label is
    /// dropped when it is not): given to tmpfs, devpts and other fresh mounts as `context=`.
    pub mount_label: Option<String>,
    /// Per entry of `mounts`: a detached copy of a bind mount's source that the runtime made
    /// before the init entered its user namespace ([`open_bind_sources`]), or -1.
    pub bind_sources: Vec<RawFd>,
}

/// In the runtime, for a container with a new user namespace: a detached copy
/// (open_tree(OPEN_TREE_CLONE)) of every bind mount's source, made while still privileged, as
/// runc does, so that a source its mapped root cannot reach is mounted all the same. `None`
/// where the source cannot be opened (the init then reports why).
pub fn open_bind_sources(spec: &Spec) -> Vec<Option<OwnedFd>> {
    let Some(mounts) = spec.mounts() else { return Vec::new() };
    mounts
        .iter()
        .map(|m| {
            let opts = m.options().as_deref().unwrap_or(&[]);
            let bind = m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
            let src = m.source().as_ref()?;
            if !bind || !src.is_absolute() {
                return None;
            }
            let c = CString::new(src.as_os_str().as_bytes()).ok()?;
            sys::open_tree_clone(&c, opts.iter().any(|o| o == "rbind")).ok()
        })
        .collect()
}

/// State shared by the steps of `prepare`.
pub(crate) struct Prep<'a> {
    /// O_PATH descriptor of the rootfs (taken after it was bound onto itself).
    pub root: OwnedFd,
    pub ctx: &'a Context,
}

impl Prep<'_> {
    /// Host path of `rel` (relative to the rootfs), for error messages.
    pub(crate) fn host(&self, rel: &CStr) -> String {
        host_path(&self.ctx.rootfs, rel)
    }
}

pub(crate) fn host_path(rootfs: &Path, rel: &CStr) -> String {
    format!("{}/{}", rootfs.display(), rel.to_string_lossy())
}

pub(crate) fn cstring(b: &[u8], what: &str) -> Result<CString, RootfsError> {
    CString::new(b).map_err(|_| RootfsError::Other(format!("{what} contains a NUL byte")))
}

/// linux.rootfsPropagation as MS_* flags (rslave recursively when unset).
fn root_propagation(spec: &Spec) -> Result<libc::c_ulong, RootfsError> {
    match spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => Ok(libc::MS_SLAVE | libc::MS_REC),
        Some(s) => {
            options::propagation(s).ok_or_else(|| RootfsError::Other(format!("rootfsPropagation={s} is not supported")))
        }
    }
}

/// Propagation of /, bind of the rootfs onto itself, every mount of the spec (destinations
/// resolved inside the rootfs), linux.devices plus the default devices, /dev symlinks, /dev/ptmx.
pub fn prepare(spec: &Spec, ctx: &Context) -> Result<(), RootfsError> {
    let prop = root_propagation(spec)?;
    if ctx.no_pivot && prop & libc::MS_PRIVATE != 0 {
        return Err(RootfsError::Other("rootfsPropagation of [r]private is not safe without pivot_root".into()));
    }
    let rootfs = cstring(ctx.rootfs.as_os_str().as_bytes(), "rootfs path")?;
    // As runc, the asked propagation goes on "/" of the new namespace now (rshared keeps
    // the mounts peers of the host's, for bidirectional bind mounts). Except runbindable:
    // it would make every later bind mount fail, so it starts as rslave and is applied to
    // the container's "/" by finalize.
    let initial = if prop == libc::MS_UNBINDABLE | libc::MS_REC { libc::MS_SLAVE | libc::MS_REC } else { prop };
    sys::mount(None, c"/", None, initial, None)
        .map_err(|e| RootfsError::sys(e, format!("set propagation of / to {initial:#x}")))?;
    // Unless everything is already slave or private, make the mount holding the rootfs
    // private (or slave): pivot_root refuses a shared parent, and the bind below must not
    // propagate to the host.
    if initial != libc::MS_SLAVE | libc::MS_REC && initial != libc::MS_PRIVATE | libc::MS_REC {
        parent_mount_private(&rootfs, initial)?;
    }
    sys::mount(Some(&rootfs), &rootfs, None, libc::MS_BIND | libc::MS_REC, None)
        .map_err(|e| RootfsError::sys(e, format!("bind mount {} onto itself", ctx.rootfs.display())))?;
    let root = sys::open_path(&rootfs, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| RootfsError::sys(e, format!("open {}", ctx.rootfs.display())))?;
    let p = Prep { root, ctx };

    let old_umask = sys::umask(0);
    let r = prepare_inner(&p, spec);
    sys::umask(old_umask);
    r
}

fn prepare_inner(p: &Prep, spec: &Spec) -> Result<(), RootfsError> {
    let mut dev_is_bind = false;
    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            let src_fd = p.ctx.bind_sources.get(i).copied().filter(|&fd| fd >= 0);
            if mounts::mount_one(p, m, src_fd)? {
                dev_is_bind = true;
            }
        }
    }
    // As runc: /dev is populated unless the spec bind-mounts something onto it.
    if !dev_is_bind {
        devices::setup_dev(p, spec)?;
    }
    Ok(())
}

/// mount(MS_PRIVATE or MS_SLAVE) on the mount holding `path`: try `path`, then its parents
/// (EINVAL means "not a mount point").
fn parent_mount_private(path: &CStr, prop: libc::c_ulong) -> Result<(), RootfsError> {
    let flag = if prop & libc::MS_SLAVE != 0 { libc::MS_SLAVE } else { libc::MS_PRIVATE };
    let mut buf = path.to_bytes_with_nul().to_vec();
    loop {
        let len = buf.len() - 1;
        let cur = CStr::from_bytes_with_nul(&buf).map_err(|_| RootfsError::Other("bad rootfs path".into()))?;
        match sys::mount(None, cur, None, flag, None) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) if len > 1 => {
                let cut = buf[..len].iter().rposition(|&c| c == b'/').unwrap_or(0).max(1);
                buf.truncate(cut);
                buf.push(0);
            }
            Err(e) => {
                return Err(RootfsError::sys(e, format!("make the mount holding {} private", cur.to_string_lossy())))
            }
        }
    }
}

/// pivot_root into the rootfs (or move+chroot with no_pivot) and chdir("/").
pub fn pivot(ctx: &Context) -> Result<(), RootfsError> {
    let rootfs = cstring(ctx.rootfs.as_os_str().as_bytes(), "rootfs path")?;
    let show = || ctx.rootfs.display().to_string();
    if ctx.no_pivot {
        sys::chdir(&rootfs).map_err(|e| RootfsError::sys(e, format!("chdir {}", show())))?;
        sys::mount(Some(&rootfs), c"/", None, libc::MS_MOVE, None)
            .map_err(|e| RootfsError::sys(e, format!("move mount {} to /", show())))?;
        sys::chroot(c".").map_err(|e| RootfsError::sys(e, format!("chroot {}", show())))?;
    } else {
        let old =
            sys::open_path(c"/", libc::O_PATH | libc::O_DIRECTORY).map_err(|e| RootfsError::sys(e, "open /".into()))?;
        let new = sys::open_path(&rootfs, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| RootfsError::sys(e, format!("open {}", show())))?;
        sys::fchdir(new.as_raw_fd()).map_err(|e| RootfsError::sys(e, format!("chdir {}", show())))?;
        // pivot_root(".", "."): the old root ends up stacked under the new one, at ".".
        sys::pivot_root(c".", c".").map_err(|e| RootfsError::sys(e, format!("pivot_root {}", show())))?;
        sys::fchdir(old.as_raw_fd()).map_err(|e| RootfsError::sys(e, "chdir to the old root".into()))?;
        // rslave first, so that the unmount does not propagate to the host.
        sys::mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
            .map_err(|e| RootfsError::sys(e, "make the old root rslave".into()))?;
        sys::umount2(c".", libc::MNT_DETACH).map_err(|e| RootfsError::sys(e, "unmount the old root".into()))?;
    }
    sys::chdir(c"/").map_err(|e| RootfsError::sys(e, "chdir /".into()))
}

/// After pivot: maskedPaths, readonlyPaths, root.readonly, final rootfsPropagation.
pub fn finalize(spec: &Spec, ctx: &Context) -> Result<(), RootfsError> {
    let _ = ctx;
    // shared and unbindable apply to the new "/" (private and slave were set up by prepare);
    // unbindable last, as the read-only paths below are bind mounts.
    let prop = root_propagation(spec)?;
    let set_prop = || {
        sys::mount(None, c"/", None, prop, None)
            .map_err(|e| RootfsError::sys(e, format!("set propagation of the container's / to {prop:#x}")))
    };
    if prop & libc::MS_SHARED != 0 {
        set_prop()?;
    }
    mounts::remount_deferred_ro(spec)?;
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        mounts::remount_ro(c"/")?;
    }
    if let Some(linux) = spec.linux() {
        if let Some(paths) = linux.readonly_paths() {
            for path in paths {
                mounts::readonly_path(path)?;
            }
        }
        if let Some(paths) = linux.masked_paths() {
            mounts::mask_paths(paths)?;
        }
    }
    if prop & libc::MS_UNBINDABLE != 0 {
        set_prop()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_default_and_errors() {
        let mut spec = Spec::default();
        assert_eq!(root_propagation(&spec).unwrap(), libc::MS_SLAVE | libc::MS_REC);
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_rootfs_propagation(Some("shared".into()));
        spec.set_linux(Some(linux.clone()));
        assert_eq!(root_propagation(&spec).unwrap(), libc::MS_SHARED);
        linux.set_rootfs_propagation(Some("bogus".into()));
        spec.set_linux(Some(linux));
        let e = root_propagation(&spec).unwrap_err().to_string();
        assert_eq!(e, "rootfs: rootfsPropagation=bogus is not supported");
    }

    #[test]
    fn error_format() {
        let e = RootfsError::sys(Errno::EPERM, "mount proc on /x/rootfs/proc".into());
        assert_eq!(e.to_string(), "mount proc on /x/rootfs/proc: Operation not permitted");
    }
}
