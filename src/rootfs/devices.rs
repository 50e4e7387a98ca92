//! /dev: the default devices, linux.devices, /dev/ptmx and the /dev symlinks (as runc).

use super::resolve::{self, Create};
use super::sys::{self, FdPath};
use super::{cstring, Prep, RootfsError};
use nix::errno::Errno;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// (name under /dev, major, minor): char devices, mode 0666, root-owned.
const DEFAULTS: [(&CStr, u32, u32); 6] =
    [(c"null", 1, 3), (c"zero", 1, 5), (c"full", 1, 7), (c"random", 1, 8), (c"urandom", 1, 9), (c"tty", 5, 0)];

const SYMLINKS: [(&CStr, &CStr); 4] = [
    (c"/proc/self/fd", c"fd"),
    (c"/proc/self/fd/0", c"stdin"),
    (c"/proc/self/fd/1", c"stdout"),
    (c"/proc/self/fd/2", c"stderr"),
];

struct Node<'a> {
    /// Directory holding the node, and the node's name in it.
    dir: RawFd,
    name: &'a CStr,
    /// Absolute path in the container (= the host device to bind in a user namespace).
    path: &'a CStr,
    kind: libc::mode_t,
    major: u32,
    minor: u32,
    mode: u32,
    uid: u32,
    gid: u32,
}

pub(crate) fn setup_dev(p: &Prep, spec: &Spec) -> Result<(), RootfsError> {
    let root = p.root.as_raw_fd();
    let dev = resolve::open_create(root, c"dev", false, Create::Dir)
        .map_err(|e| RootfsError::sys(e, format!("open {}", p.host(c"dev"))))?;
    let devs: &[LinuxDevice] = spec.linux().as_ref().and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
    // Clean paths of the spec's devices, computed once.
    let mut cleaned: Vec<CString> = Vec::with_capacity(devs.len());
    for d in devs {
        cleaned
            .push(resolve::clean(d.path().as_os_str().as_bytes()).ok_or_else(|| {
                RootfsError::Other(format!("device path {} contains a NUL byte", d.path().display()))
            })?);
    }

    let mut abs = [0u8; 16];
    for (name, major, minor) in DEFAULTS {
        // A spec device with the same path replaces the default one.
        if cleaned.iter().any(|c| c.to_bytes().strip_prefix(b"dev/") == Some(name.to_bytes())) {
            continue;
        }
        let path = dev_path(&mut abs, name);
        create_node(
            p,
            &Node { dir: dev.as_raw_fd(), name, path, kind: libc::S_IFCHR, major, minor, mode: 0o666, uid: 0, gid: 0 },
        )?;
    }

    for (d, clean) in devs.iter().zip(&cleaned) {
        if clean.to_bytes() == b"dev/ptmx" {
            continue; // always the symlink below
        }
        let (parent, name) = resolve::split_last(clean)
            .ok_or_else(|| RootfsError::Other(format!("invalid device path {}", d.path().display())))?;
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(RootfsError::Other(format!(
                    "device {}: type a is not a valid device type",
                    d.path().display()
                )))
            }
        };
        let (major, minor) = match (u32::try_from(d.major()), u32::try_from(d.minor())) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                return Err(RootfsError::Other(format!(
                    "device {}: invalid number {}:{}",
                    d.path().display(),
                    d.major(),
                    d.minor()
                )))
            }
        };
        let owned;
        let dir = if parent.to_bytes() == b"dev" {
            dev.as_raw_fd()
        } else if parent.to_bytes().is_empty() {
            root
        } else {
            owned = resolve::open_create(root, &parent, false, Create::Dir)
                .map_err(|e| RootfsError::sys(e, format!("create parent of device {}", p.host(clean))))?;
            owned.as_raw_fd()
        };
        let mut absv = Vec::with_capacity(clean.to_bytes().len() + 2);
        absv.push(b'/');
        absv.extend_from_slice(clean.to_bytes());
        let path = cstring(&absv, "device path")?;
        create_node(
            p,
            &Node {
                dir,
                name: &name,
                path: &path,
                kind,
                major,
                minor,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            },
        )?;
    }

    // /dev/ptmx -> pts/ptmx (the devpts of the container).
    match sys::unlinkat(dev.as_raw_fd(), c"ptmx", 0) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(RootfsError::sys(e, format!("remove {}", p.host(c"dev/ptmx")))),
    }
    sys::symlinkat(c"pts/ptmx", dev.as_raw_fd(), c"ptmx")
        .map_err(|e| RootfsError::sys(e, format!("symlink {} -> pts/ptmx", p.host(c"dev/ptmx"))))?;
    for (target, name) in SYMLINKS {
        symlink(p, &dev, target, name)?;
    }
    // kcore only when the kernel has it (as runc).
    if sys::access_ok(c"/proc/kcore") {
        symlink(p, &dev, c"/proc/kcore", c"core")?;
    }
    Ok(())
}

fn dev_path<'a>(buf: &'a mut [u8; 16], name: &CStr) -> &'a CStr {
    let n = name.to_bytes();
    buf.fill(0);
    buf[..5].copy_from_slice(b"/dev/");
    let len = n.len().min(10);
    buf[5..5 + len].copy_from_slice(&n[..len]);
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"/dev/null")
}

fn symlink(p: &Prep, dev: &OwnedFd, target: &CStr, name: &CStr) -> Result<(), RootfsError> {
    match sys::symlinkat(target, dev.as_raw_fd(), name) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(RootfsError::sys(
            e,
            format!("symlink {}/{} -> {}", p.host(c"dev"), name.to_string_lossy(), target.to_string_lossy()),
        )),
    }
}

fn create_node(p: &Prep, n: &Node) -> Result<(), RootfsError> {
    if p.ctx.userns {
        return bind_node(p, n);
    }
    let dev = if n.kind == libc::S_IFIFO { 0 } else { libc::makedev(n.major, n.minor) };
    match sys::mknodat(n.dir, n.name, n.kind | n.mode, dev) {
        Ok(()) => {
            if n.uid != 0 || n.gid != 0 {
                sys::fchownat(n.dir, n.name, n.uid, n.gid, libc::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| RootfsError::sys(e, format!("chown {}", host_dev(p, n))))?;
            }
            Ok(())
        }
        // Already there (e.g. in the image): left as it is, as runc does.
        Err(Errno::EEXIST) => Ok(()),
        // No CAP_MKNOD: bind the host's node instead.
        Err(Errno::EPERM) => bind_node(p, n),
        Err(e) => Err(RootfsError::sys(e, format!("mknod {}", host_dev(p, n)))),
    }
}

/// Bind the host's device node at the same path onto an empty file.
fn bind_node(p: &Prep, n: &Node) -> Result<(), RootfsError> {
    let fd = match sys::openat(n.dir, n.name, libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, 0) {
        Ok(fd) => fd,
        Err(Errno::EEXIST) => {
            let fd = sys::openat(n.dir, n.name, libc::O_PATH | libc::O_NOFOLLOW, 0)
                .map_err(|e| RootfsError::sys(e, format!("open {}", host_dev(p, n))))?;
            let st = sys::fstat(fd.as_raw_fd()).map_err(|e| RootfsError::sys(e, format!("stat {}", host_dev(p, n))))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK || st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                return Err(RootfsError::Other(format!(
                    "cannot bind device {} onto {}: it is a symlink or a directory",
                    n.path.to_string_lossy(),
                    host_dev(p, n)
                )));
            }
            fd
        }
        Err(e) => return Err(RootfsError::sys(e, format!("create {}", host_dev(p, n)))),
    };
    sys::mount(Some(n.path), FdPath::new(&fd).as_cstr(), None, libc::MS_BIND, None)
        .map_err(|e| RootfsError::sys(e, format!("bind mount {} on {}", n.path.to_string_lossy(), host_dev(p, n))))
}

fn host_dev(p: &Prep, n: &Node) -> String {
    format!("{}{}", p.ctx.rootfs.display(), n.path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_paths() {
        let mut b = [0u8; 16];
        for (name, _, _) in DEFAULTS {
            let p = dev_path(&mut b, name).to_bytes().to_vec();
            assert_eq!(p, [b"/dev/".as_slice(), name.to_bytes()].concat());
        }
    }
}
