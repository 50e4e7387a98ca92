//! `--no-pivot` with a new user namespace: keep the host's procfs and sysfs from letting the
//! container mount its own.
//!
//! The kernel lets a user namespace mount procfs or sysfs only where an instance of it is
//! already fully visible in the mount namespace (a mount of its root with no locked mount
//! over anything but an empty directory). pivot_root detaches the host's /proc and /sys;
//! move+chroot leaves them in the namespace, locked (they were copied from a more privileged
//! namespace), so they can neither be unmounted nor usefully covered from inside.
//!
//! So the runtime, still privileged, does it before the clone (also when the user namespace is
//! joined by path, or created by the init after it joins others: the init then unshares its
//! mount namespace from this one itself, and asks for the binds below once it has): in a mount namespace of its
//! own it mounts a tmpfs over a non-empty directory of every host procfs and sysfs (`sys` of
//! a procfs, `kernel` of a sysfs). The init's namespace is copied from that one, and there the
//! covers are locked: no host instance is fully visible any more. For the container's own
//! /proc and /sys mounts the runtime then binds, after the clone, its /proc and /sys (not
//! recursively, so fully visible) under the cover of /proc; they reach the init's namespace by
//! propagation, unlocked, and the init unmounts them once its mounts are made
//! ([`drop_setup_fs`]).

use super::{sys, RootfsError};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where the init finds the runtime's procfs and sysfs while it sets up its mounts: inside
/// the cover of the host's /proc (/proc/sys).
const SETUP_PROC: &std::ffi::CStr = c"/proc/sys/proc";
const SETUP_SYS: &std::ffi::CStr = c"/proc/sys/sys";

/// The runtime in its own mount namespace with the host's procfs and sysfs covered.
pub struct Hider {
    /// The runtime's original mount namespace, to go back to.
    home: File,
}

fn err(e: nix::errno::Errno, what: String) -> RootfsError {
    RootfsError::sys(e, what)
}

fn cpath(p: &Path) -> Result<CString, RootfsError> {
    super::cstring(p.as_os_str().as_bytes(), "mount point")
}

/// Undo the octal escapes of a mountinfo path field.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// Mount points of the procfs and sysfs mounts of their filesystem's root, outside `rootfs`,
/// each once (a mount stacked on another hides the one below).
fn host_instances(mountinfo: &str, rootfs: &Path) -> Vec<(PathBuf, bool)> {
    let mut v = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let f: Vec<&str> = pre.split(' ').collect();
        let fstype = post.split(' ').next().unwrap_or("");
        let is_proc = fstype == "proc";
        if f.len() < 5 || f[3] != "/" || !(is_proc || fstype == "sysfs") {
            continue;
        }
        let mp = unescape(f[4]);
        if !mp.starts_with(rootfs) && !v.iter().any(|(p, _)| *p == mp) {
            v.push((mp, is_proc));
        }
    }
    v
}

impl Hider {
    /// Enter a mount namespace of our own and cover the host's procfs and sysfs mounts.
    pub fn enter(rootfs: &Path) -> Result<Hider, RootfsError> {
        let home =
            File::open("/proc/self/ns/mnt").map_err(|e| RootfsError::Other(format!("open /proc/self/ns/mnt: {e}")))?;
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| RootfsError::Other(format!("read /proc/self/mountinfo: {e}")))?;
        // SAFETY: unshare takes only flags.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(err(nix::errno::Errno::last(), "unshare mount namespace".into()));
        }
        let h = Hider { home };
        let mut proc_covered = false;
        for (mp, is_proc) in host_instances(&info, rootfs) {
            let target = cpath(&mp)?;
            // Nothing made here may propagate back to the host.
            match sys::mount(None, &target, None, libc::MS_SLAVE, None) {
                Err(nix::errno::Errno::ENOENT) => continue,
                r => r.map_err(|e| err(e, format!("make {} a slave mount", mp.display())))?,
            }
            let cover = mp.join(if is_proc { "sys" } else { "kernel" });
            let c = cpath(&cover)?;
            sys::mount(
                Some(c"tmpfs"),
                &c,
                Some(c"tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some(c"size=64k,mode=0755"),
            )
            .map_err(|e| err(e, format!("mount tmpfs on {}", cover.display())))?;
            if mp == Path::new("/proc") {
                proc_covered = true;
                for d in [SETUP_PROC, SETUP_SYS] {
                    // SAFETY: NUL-terminated path.
                    if unsafe { libc::mkdir(d.as_ptr(), 0o755) } != 0 {
                        return Err(err(nix::errno::Errno::last(), format!("mkdir {}", d.to_string_lossy())));
                    }
                }
                // The binds made after the clone must reach the init's copy.
                sys::mount(None, c"/proc/sys", None, libc::MS_SHARED, None)
                    .map_err(|e| err(e, "make /proc/sys shared".into()))?;
            }
        }
        if !proc_covered {
            return Err(RootfsError::Other("--no-pivot with a user namespace needs procfs mounted on /proc".into()));
        }
        Ok(h)
    }

    /// Once the init has its mount namespace (a copy of this one, made by the clone, or by the
    /// init itself after it joined or created its user namespace): lend it our procfs and
    /// sysfs, then go back to our own namespace.
    pub fn lend_and_leave(self) -> Result<(), RootfsError> {
        let r = sys::mount(Some(c"/proc"), SETUP_PROC, None, libc::MS_BIND, None)
            .map_err(|e| err(e, "bind /proc for the container's set-up".into()))
            .and_then(|()| {
                sys::mount(Some(c"/sys"), SETUP_SYS, None, libc::MS_BIND, None)
                    .map_err(|e| err(e, "bind /sys for the container's set-up".into()))
            });
        self.leave()?;
        r
    }

    fn leave(&self) -> Result<(), RootfsError> {
        // SAFETY: setns into the namespace we came from, through an fd we hold.
        if unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
            return Err(err(nix::errno::Errno::last(), "setns back to the runtime's mount namespace".into()));
        }
        Ok(())
    }
}

impl Drop for Hider {
    /// A create that fails before lending still goes back to the runtime's own namespace
    /// (a second setns into it, after `lend_and_leave`, changes nothing).
    fn drop(&mut self) {
        let _ = self.leave();
    }
}

/// In the init, once its own mounts are made: unmount the procfs and sysfs the runtime lent.
pub fn drop_setup_fs() -> Result<(), RootfsError> {
    for p in [SETUP_PROC, SETUP_SYS] {
        sys::umount2(p, libc::MNT_DETACH).map_err(|e| err(e, format!("unmount {}", p.to_string_lossy())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_host_proc_and_sysfs() {
        let info = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                    23 27 0:22 / /sys rw,relatime - sysfs sysfs rw\n\
                    24 27 0:22 /kernel /x rw - sysfs sysfs rw\n\
                    25 27 0:23 / /b/rootfs/proc rw - proc proc rw\n\
                    26 27 0:23 / /a\\040b rw - proc proc rw\n\
                    28 22 0:24 / /proc rw - proc proc rw\n\
                    27 1 8:1 / / rw - ext4 /dev/sda1 rw\n";
        let v = host_instances(info, Path::new("/b/rootfs"));
        assert_eq!(
            v,
            vec![(PathBuf::from("/proc"), true), (PathBuf::from("/sys"), false), (PathBuf::from("/a b"), true)]
        );
    }
}
