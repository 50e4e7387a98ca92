//! File operations of COPY and ADD, made so that nothing can redirect them: sources are opened
//! beneath their root (the build context, or another stage's root) with openat2
//! RESOLVE_BENEATH, so `..` or a symlink leading out is refused; destinations are reached
//! with RESOLVE_IN_ROOT from the stage's root (an image's symlinks resolve inside it) and every
//! file is made relative to an open directory with O_NOFOLLOW, so nothing is written outside.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// openat2 of `rel` under `root` with `resolve` flags.
pub fn openat2(root: &OwnedFd, rel: &str, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let rel = rel.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let c = CString::new(rel).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: valid dirfd, C string and open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}

/// An O_PATH|O_DIRECTORY descriptor of a host directory.
pub fn open_dir(p: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C string; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The /proc path of an open descriptor (to read through it with std::fs).
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Lexically cleaned `p` relative to a root; None when `..` climbs above the root.
pub fn clean_rel(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// Owner and mode overrides of COPY/ADD (`--chown`, `--chmod`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    /// `--chmod` (applied to files and directories copied).
    pub mode: Option<u32>,
    /// SOURCE_DATE_EPOCH: times no later than this.
    pub clamp: Option<i64>,
}

fn cstr(s: &std::ffi::OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The destination root of a COPY (the stage's rootfs mount).
pub struct DestRoot {
    root: OwnedFd,
}

impl DestRoot {
    pub fn open(p: &Path) -> io::Result<DestRoot> {
        Ok(DestRoot { root: open_dir(p)? })
    }

    /// Opens (creating what is missing, mode 0755 owned by `uid:gid`) directory `rel` inside
    /// the root; symlinks on the way resolve inside the root.
    pub fn ensure_dir(&self, rel: &str, uid: u32, gid: u32) -> io::Result<OwnedFd> {
        let rel = clean_rel(rel).unwrap_or_default();
        let mut done = String::new();
        let mut fd = openat2(&self.root, ".", libc::O_PATH | libc::O_DIRECTORY, libc::RESOLVE_IN_ROOT)?;
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            let next = if done.is_empty() { comp.to_string() } else { format!("{done}/{comp}") };
            match openat2(&self.root, &next, libc::O_PATH | libc::O_DIRECTORY, libc::RESOLVE_IN_ROOT) {
                Ok(f) => fd = f,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let c = cstr(std::ffi::OsStr::new(comp))?;
                    // SAFETY: valid dirfd and C string.
                    let r = unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o755) };
                    if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                        return Err(io::Error::last_os_error());
                    }
                    // SAFETY: valid dirfd and C string.
                    check(unsafe { libc::fchownat(fd.as_raw_fd(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })?;
                    fd = openat2(&self.root, &next, libc::O_PATH | libc::O_DIRECTORY, libc::RESOLVE_IN_ROOT)?;
                }
                Err(e) => return Err(e),
            }
            done = next;
        }
        Ok(fd)
    }

    /// Whether `rel` is an existing directory inside the root.
    pub fn is_dir(&self, rel: &str) -> bool {
        openat2(&self.root, rel, libc::O_PATH | libc::O_DIRECTORY, libc::RESOLVE_IN_ROOT).is_ok()
    }
}

/// Copies `src`'s extended attributes (not overlayfs' own) to the open `fd`.
fn copy_xattrs(src: &Path, fd: libc::c_int) -> io::Result<()> {
    use crate::image::upper_layer::{lgetxattr, llistxattr};
    for name in llistxattr(src) {
        if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") || name == "security.selinux" {
            continue;
        }
        let Some(v) = lgetxattr(src, &name) else { continue };
        let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: valid descriptor, C string and buffer of the given length.
        check(unsafe { libc::fsetxattr(fd, c.as_ptr(), v.as_ptr().cast(), v.len(), 0) })?;
    }
    Ok(())
}

fn set_times(dir: &OwnedFd, name: &CString, m: &fs::Metadata, clamp: Option<i64>) -> io::Result<()> {
    let mut mt = m.mtime();
    let mut ns = m.mtime_nsec();
    if let Some(c) = clamp {
        if mt > c || (mt == c && ns > 0) {
            mt = c;
            ns = 0;
        }
    }
    let ts = [
        libc::timespec { tv_sec: mt as libc::time_t, tv_nsec: ns as libc::c_long },
        libc::timespec { tv_sec: mt as libc::time_t, tv_nsec: ns as libc::c_long },
    ];
    // SAFETY: valid dirfd, C string and two timespecs.
    check(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

/// Removes `name` in `dir` unless it is a directory (a file replaced by a copy).
fn remove_non_dir(dir: &OwnedFd, name: &CString) -> io::Result<bool> {
    let mut st: libc::stat = unsafe_zeroed_stat();
    // SAFETY: valid dirfd, C string and stat buffer.
    let r = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r < 0 {
        return Ok(false);
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Ok(true);
    }
    // SAFETY: valid dirfd and C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
    Ok(false)
}

fn unsafe_zeroed_stat() -> libc::stat {
    // SAFETY: stat is plain data; zeroed is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Copies host entry `src` (not following a symlink at `src`) as `name` into directory `dir`
/// (an open descriptor inside the destination root); directories recursively, skipping what
/// `skip` says (given the path relative to the copy's top). Returns the entries copied.
pub fn copy_into(
    src: &Path,
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    attrs: &Attrs,
    rel: &str,
    skip: &dyn Fn(&str) -> bool,
) -> io::Result<u64> {
    let m = fs::symlink_metadata(src)?;
    let c = cstr(name)?;
    let ft = m.file_type();
    let mode = attrs.mode.unwrap_or(m.permissions().mode() & 0o7777);
    if ft.is_dir() {
        let exists_dir = remove_non_dir(dir, &c)?;
        if !exists_dir {
            // SAFETY: valid dirfd and C string.
            check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) })?;
        }
        let sub = openat2(
            dir,
            &name.to_string_lossy(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )?;
        let mut n = 1;
        let mut names: Vec<std::ffi::OsString> =
            fs::read_dir(src)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
        names.sort();
        for child in names {
            let crel = if rel.is_empty() {
                child.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", child.to_string_lossy())
            };
            if skip(&crel) {
                continue;
            }
            n += copy_into(&src.join(&child), &sub, &child, attrs, &crel, skip)?;
        }
        // SAFETY: valid descriptor.
        check(unsafe { libc::fchown(sub.as_raw_fd(), attrs.uid, attrs.gid) })?;
        // SAFETY: valid descriptor.
        check(unsafe { libc::fchmod(sub.as_raw_fd(), mode) })?;
        copy_xattrs(src, sub.as_raw_fd())?;
        set_times(dir, &c, &m, attrs.clamp)?;
        return Ok(n);
    }
    if remove_non_dir(dir, &c)? {
        // A directory where a file goes: docker replaces only an empty one.
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })?;
    }
    if ft.is_symlink() {
        let target = fs::read_link(src)?;
        let t = cstr(target.as_os_str())?;
        // SAFETY: valid C strings and dirfd.
        check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })?;
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::fchownat(dir.as_raw_fd(), c.as_ptr(), attrs.uid, attrs.gid, libc::AT_SYMLINK_NOFOLLOW) })?;
        set_times(dir, &c, &m, attrs.clamp)?;
        return Ok(1);
    }
    if ft.is_file() {
        let mut input = File::open(src)?;
        // SAFETY: valid dirfd and C string; the result is checked.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let mut out = unsafe { File::from_raw_fd(fd) };
        io::copy(&mut input, &mut out)?;
        // SAFETY: valid descriptor.
        check(unsafe { libc::fchown(out.as_raw_fd(), attrs.uid, attrs.gid) })?;
        // SAFETY: valid descriptor.
        check(unsafe { libc::fchmod(out.as_raw_fd(), mode) })?;
        // After chown, which clears security.capability.
        copy_xattrs(src, out.as_raw_fd())?;
        drop(out);
        set_times(dir, &c, &m, attrs.clamp)?;
        return Ok(1);
    }
    // Devices, fifos, sockets: not copied (docker skips sockets; devices are rare in contexts).
    Ok(0)
}

/// Writes `data` as file `name` in `dir` (heredoc COPY sources, downloads).
pub fn write_file(dir: &OwnedFd, name: &str, data: &[u8], attrs: &Attrs, mode: u32, mtime: i64) -> io::Result<()> {
    let c = cstr(std::ffi::OsStr::new(name))?;
    if remove_non_dir(dir, &c)? {
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })?;
    }
    // SAFETY: valid dirfd and C string; the result is checked.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    let mut out = unsafe { File::from_raw_fd(fd) };
    io::Write::write_all(&mut out, data)?;
    // SAFETY: valid descriptor.
    check(unsafe { libc::fchown(out.as_raw_fd(), attrs.uid, attrs.gid) })?;
    // SAFETY: valid descriptor.
    check(unsafe { libc::fchmod(out.as_raw_fd(), attrs.mode.unwrap_or(mode)) })?;
    let t = attrs.clamp.map_or(mtime, |c| mtime.min(c));
    let ts = [
        libc::timespec { tv_sec: t as libc::time_t, tv_nsec: 0 },
        libc::timespec { tv_sec: t as libc::time_t, tv_nsec: 0 },
    ];
    // SAFETY: valid descriptor and two timespecs.
    check(unsafe { libc::futimens(out.as_raw_fd(), ts.as_ptr()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean() {
        assert_eq!(clean_rel("a/./b//c/../d").as_deref(), Some("a/b/d"));
        assert_eq!(clean_rel("/x/").as_deref(), Some("x"));
        assert_eq!(clean_rel("../x"), None);
        assert_eq!(clean_rel("a/../../x"), None);
    }

    #[test]
    fn sources_cannot_leave_their_root() {
        let d = std::env::temp_dir().join(format!("berth-fsops-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("ctx/sub")).unwrap();
        fs::write(d.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("../secret", d.join("ctx/up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("ctx/abs")).unwrap();
        std::os::unix::fs::symlink("sub", d.join("ctx/in")).unwrap();
        let root = open_dir(&d.join("ctx")).unwrap();
        for bad in ["up", "abs", "../secret", "sub/../../secret"] {
            assert!(openat2(&root, bad, libc::O_PATH, libc::RESOLVE_BENEATH).is_err(), "{bad}");
        }
        assert!(openat2(&root, "in", libc::O_PATH, libc::RESOLVE_BENEATH).is_ok());
        let _ = fs::remove_dir_all(&d);
    }
}
