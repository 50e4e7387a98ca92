//! Path resolution confined to the rootfs: every symlink (absolute or with `..`) is resolved
//! as if the rootfs were `/`, so a lookup never leaves it. openat2(RESOLVE_IN_ROOT) when the
//! kernel has it, else a walk one component at a time with O_NOFOLLOW, keeping our own stack
//! of directory descriptors (`..` pops it, never the kernel's `..`). The walk also creates
//! missing components.

use super::sys::{self, Res};
use nix::errno::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Lexically clean an absolute or relative container path into a path relative to the
/// rootfs: no empty, `.` or `..` components (`..` at the top stays at the top), no leading or
/// trailing `/`. `""` is the rootfs itself. `None` if the path holds a NUL byte.
pub(crate) fn clean(p: &[u8]) -> Option<CString> {
    let mut out: Vec<u8> = Vec::with_capacity(p.len() + 1);
    for comp in p.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                let cut = out.iter().rposition(|&c| c == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    CString::new(out).ok()
}

/// Split a cleaned relative path into (parent, last component). `None` for `""`.
pub(crate) fn split_last(p: &CStr) -> Option<(CString, CString)> {
    let b = p.to_bytes();
    if b.is_empty() {
        return None;
    }
    let (parent, name) = match b.iter().rposition(|&c| c == b'/') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (&b[..0], b),
    };
    Some((CString::new(parent).ok()?, CString::new(name).ok()?))
}

/// What to create when a component is missing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Create {
    No,
    /// Missing components (the last one too) become directories (0755).
    Dir,
    /// Missing parents become directories, a missing last component an empty file (0644).
    File,
}

/// Open (O_PATH) `rel` inside the rootfs `root`. `no_symlinks`: fail with ELOOP on any
/// symlink component. `rel` may hold `..` and symlinks: they never lead outside `root`.
/// An empty `rel` is refused (EINVAL): nothing is ever done on the rootfs itself here.
pub(crate) fn open(root: RawFd, rel: &CStr, no_symlinks: bool) -> Res<OwnedFd> {
    if rel.to_bytes().is_empty() {
        return Err(Errno::EINVAL);
    }
    match sys::openat2_in_root(root, rel, no_symlinks) {
        Err(Errno::ENOSYS) => walk(root, rel.to_bytes(), no_symlinks, Create::No),
        r => r,
    }
}

/// Like `open`, creating what is missing.
pub(crate) fn open_create(root: RawFd, rel: &CStr, no_symlinks: bool, create: Create) -> Res<OwnedFd> {
    match open(root, rel, no_symlinks) {
        Err(Errno::ENOENT) => self::create(root, rel, no_symlinks, create),
        r => r,
    }
}

/// Create what is missing of `rel` (after `open` said ENOENT) and open it.
pub(crate) fn create(root: RawFd, rel: &CStr, no_symlinks: bool, create: Create) -> Res<OwnedFd> {
    if create == Create::No {
        return Err(Errno::ENOENT);
    }
    walk(root, rel.to_bytes(), no_symlinks, create)
}

const MAX_LINKS: u32 = 40;

/// Name of one component as a C string, on the stack.
struct Name {
    buf: [u8; 256],
}

impl Name {
    fn new(comp: &[u8]) -> Res<Name> {
        if comp.len() > 255 || comp.contains(&0) {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut buf = [0u8; 256];
        buf[..comp.len()].copy_from_slice(comp);
        Ok(Name { buf })
    }
    fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }
}

/// The user-space resolver (and creator). Each step is openat(O_PATH|O_NOFOLLOW) from a
/// descriptor we hold; symlinks are read and spliced into the remaining path, restarting
/// from `root` when absolute.
pub(crate) fn walk(root: RawFd, rel: &[u8], no_symlinks: bool, create: Create) -> Res<OwnedFd> {
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut path: Vec<u8> = rel.to_vec();
    let mut pos = 0;
    let mut links = 0;
    loop {
        while pos < path.len() && path[pos] == b'/' {
            pos += 1;
        }
        if pos == path.len() {
            break;
        }
        let start = pos;
        let end = path[pos..].iter().position(|&c| c == b'/').map_or(path.len(), |i| pos + i);
        let last = path[end..].iter().all(|&c| c == b'/');
        pos = end;
        let comp = &path[start..end];
        if comp == b"." {
            continue;
        }
        if comp == b".." {
            stack.pop();
            continue;
        }
        let name = Name::new(comp)?;
        let name = name.as_cstr();
        let cur = stack.last().map_or(root, |f| f.as_raw_fd());
        let fd = match sys::openat(cur, name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create != Create::No => {
                if last && create == Create::File {
                    let flags = libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
                    match sys::openat(cur, name, flags, 0o644) {
                        Ok(fd) => {
                            stack.push(fd);
                            break;
                        }
                        Err(Errno::EEXIST) => {
                            pos = start;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                match sys::mkdirat(cur, name, 0o755) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                sys::openat(cur, name, libc::O_PATH | libc::O_NOFOLLOW, 0)?
            }
            Err(e) => return Err(e),
        };
        let st = sys::fstat(fd.as_raw_fd())?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => stack.push(fd),
            libc::S_IFLNK => {
                if no_symlinks {
                    return Err(Errno::ELOOP);
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::ELOOP);
                }
                let mut buf = [0u8; 4096];
                let target = sys::readlinkat(fd.as_raw_fd(), c"", &mut buf)?;
                if target.first() == Some(&b'/') {
                    stack.clear();
                }
                let mut np = Vec::with_capacity(target.len() + 1 + path.len() - pos);
                np.extend_from_slice(target);
                np.push(b'/');
                np.extend_from_slice(&path[pos..]);
                path = np;
                pos = 0;
            }
            _ => {
                if !last {
                    return Err(Errno::ENOTDIR);
                }
                stack.push(fd);
            }
        }
    }
    // Resolving to the rootfs itself is refused, as in `open`.
    stack.pop().ok_or(Errno::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn clean_paths() {
        let t = |i: &str| String::from_utf8(clean(i.as_bytes()).unwrap().into_bytes()).unwrap();
        assert_eq!(t("/proc"), "proc");
        assert_eq!(t("proc/"), "proc");
        assert_eq!(t("/dev//pts/./x/"), "dev/pts/x");
        assert_eq!(t("/"), "");
        assert_eq!(t(""), "");
        assert_eq!(t("../../../../tmp/x"), "tmp/x");
        assert_eq!(t("/a/b/../../../c"), "c");
        assert_eq!(t("/a/b/../c"), "a/c");
        assert_eq!(t("/a/.."), "");
        assert!(clean(b"/a\0b").is_none());
    }

    #[test]
    fn split() {
        let (p, n) = split_last(&c("dev/net/tun")).unwrap();
        assert_eq!((p.to_bytes(), n.to_bytes()), (&b"dev/net"[..], &b"tun"[..]));
        let (p, n) = split_last(&c("null")).unwrap();
        assert_eq!((p.to_bytes(), n.to_bytes()), (&b""[..], &b"null"[..]));
        assert!(split_last(&c("")).is_none());
    }

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("berth-resolve-{}-{}", tag, std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let r = d.join("root");
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::write(r.join("etc/file"), b"x").unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../../..", r.join("up")).unwrap();
        symlink("sub", r.join("etc/rel")).unwrap();
        symlink("/nonexistent/dir", r.join("dangling")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        Tmp(d)
    }

    fn id(fd: &OwnedFd) -> (u64, u64) {
        let st = sys::fstat(fd.as_raw_fd()).unwrap();
        (st.st_dev, st.st_ino)
    }

    fn path_id(p: &std::path::Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    #[test]
    fn walk_and_openat2_agree_and_stay_inside() {
        let t = tree("agree");
        let root_p = t.0.join("root");
        let root = sys::open_path(&c(root_p.to_str().unwrap()), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let r = root.as_raw_fd();
        let cases: &[(&str, &str)] = &[
            ("etc", "etc"),
            ("abs", "etc"),
            ("abs/sub", "etc/sub"),
            ("etc/rel", "etc/sub"),
            ("up/etc", "etc"),
            ("up/etc/file", "etc/file"),
            ("etc/sub/../../up/abs/rel", "etc/sub"),
        ];
        for (p, want) in cases {
            let expect = path_id(&root_p.join(want));
            let w = walk(r, p.as_bytes(), false, Create::No).unwrap();
            assert_eq!(id(&w), expect, "walk {p}");
            if let Ok(o) = sys::openat2_in_root(r, &c(p), false) {
                assert_eq!(id(&o), expect, "openat2 {p}");
            }
        }
        assert_eq!(walk(r, b"loop1", false, Create::No).unwrap_err(), Errno::ELOOP);
        assert_eq!(walk(r, b"abs", true, Create::No).unwrap_err(), Errno::ELOOP);
        assert_eq!(walk(r, b"etc/file/x", false, Create::No).unwrap_err(), Errno::ENOTDIR);
        assert_eq!(walk(r, b"up", false, Create::No).unwrap_err(), Errno::EINVAL);
        assert_eq!(open(r, &c(""), false).unwrap_err(), Errno::EINVAL);
    }

    #[test]
    fn create_inside_through_symlinks() {
        let t = tree("create");
        let root_p = t.0.join("root");
        let root = sys::open_path(&c(root_p.to_str().unwrap()), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let r = root.as_raw_fd();
        // An absolute, dangling symlink: its target is created inside the root.
        let fd = open_create(r, &c("dangling/x"), false, Create::Dir).unwrap();
        assert_eq!(id(&fd), path_id(&root_p.join("nonexistent/dir/x")));
        // `..` escaping symlink: created inside.
        let fd = open_create(r, &c("up/up/newdir/f"), false, Create::File).unwrap();
        assert_eq!(id(&fd), path_id(&root_p.join("newdir/f")));
        assert!(root_p.join("newdir/f").is_file());
        // Forced fallback gives the same.
        let fd = walk(r, b"abs/made", false, Create::Dir).unwrap();
        assert_eq!(id(&fd), path_id(&root_p.join("etc/made")));
        // Nothing appeared outside.
        assert_eq!(std::fs::read_dir(t.0.join("outside")).unwrap().count(), 0);
        assert!(!std::path::Path::new("/nonexistent").exists());
    }
}
