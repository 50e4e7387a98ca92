//! Thin wrappers over the few syscalls the rootfs set-up needs (raw `libc`, no allocation).

use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) type Res<T> = Result<T, Errno>;

// openat2(2) (Linux 5.6). Syscall numbers of syscalls added after 5.1 are the same on every
// architecture that uses the generic table (x86_64, aarch64, riscv64, ...).
const SYS_OPENAT2: libc::c_long = 437;
const SYS_MOUNT_SETATTR: libc::c_long = 442;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Set once openat2 returned ENOSYS (or by tests, to exercise the fallback walker).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Force the user-space resolver instead of openat2 (used by tests and the harness).
#[allow(dead_code)] // used by tests and the scratch harness only
pub fn force_no_openat2(on: bool) {
    NO_OPENAT2.store(on, Ordering::Relaxed);
}

/// openat2(dirfd, path, O_PATH|O_CLOEXEC, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS [|RESOLVE_NO_SYMLINKS]).
/// `Err(ENOSYS)` means: use the fallback resolver.
pub(crate) fn openat2_in_root(dirfd: RawFd, path: &CStr, no_symlinks: bool) -> Res<OwnedFd> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return Err(Errno::ENOSYS);
    }
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | if no_symlinks { RESOLVE_NO_SYMLINKS } else { 0 },
    };
    // A concurrent rename or mount makes RESOLVE_IN_ROOT fail with EAGAIN: retry a little.
    for _ in 0..16 {
        // SAFETY: path is NUL-terminated, `how` is a valid open_how of the size we pass.
        let r = unsafe {
            libc::syscall(SYS_OPENAT2, dirfd, path.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
        };
        if r >= 0 {
            // SAFETY: the kernel just returned this new descriptor, we own it.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
        }
        match Errno::last() {
            Errno::EAGAIN | Errno::EINTR => continue,
            Errno::ENOSYS => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                return Err(Errno::ENOSYS);
            }
            e => return Err(e),
        }
    }
    Err(Errno::EAGAIN)
}

/// Opens `rel` (relative to /proc, e.g. `sys/kernel/domainname`) for a write the runtime makes
/// in procfs, refusing anything but procfs's own file: /proc must be a procfs, and the lookup
/// crosses no mount (`RESOLVE_NO_XDEV`: a file bound over a /proc file, as a racing container
/// can arrange, is refused with EXDEV) and follows no symlink (ELOOP). Without openat2 the
/// file is opened plainly and only its filesystem type is checked.
pub(crate) fn open_proc_file(rel: &CStr, flags: libc::c_int) -> Res<OwnedFd> {
    const RESOLVE_NO_XDEV: u64 = 0x01;
    const RESOLVE_BENEATH: u64 = 0x08;
    let proc_fd = open_path(c"/proc", libc::O_PATH | libc::O_DIRECTORY)?;
    if fstatfs(proc_fd.as_raw_fd())?.f_type != libc::PROC_SUPER_MAGIC {
        return Err(Errno::EXDEV);
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode: 0,
        resolve: RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH,
    };
    let fd = if NO_OPENAT2.load(Ordering::Relaxed) {
        openat(proc_fd.as_raw_fd(), rel, flags | libc::O_NOFOLLOW, 0)?
    } else {
        // SAFETY: rel is NUL-terminated, `how` is a valid open_how of the size we pass.
        let r = unsafe {
            libc::syscall(
                SYS_OPENAT2,
                proc_fd.as_raw_fd(),
                rel.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if r < 0 {
            return Err(Errno::last());
        }
        // SAFETY: the kernel just returned this new descriptor, we own it.
        unsafe { OwnedFd::from_raw_fd(r as RawFd) }
    };
    if fstatfs(fd.as_raw_fd())?.f_type != libc::PROC_SUPER_MAGIC {
        return Err(Errno::EXDEV);
    }
    Ok(fd)
}

pub(crate) fn openat(dirfd: RawFd, path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> Res<OwnedFd> {
    loop {
        // SAFETY: path is NUL-terminated; the returned fd is owned by the caller.
        let r = unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
        if r >= 0 {
            // SAFETY: new descriptor from the kernel.
            return Ok(unsafe { OwnedFd::from_raw_fd(r) });
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

pub(crate) fn open_path(path: &CStr, flags: libc::c_int) -> Res<OwnedFd> {
    openat(libc::AT_FDCWD, path, flags, 0)
}

fn check(r: libc::c_int) -> Res<()> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

pub(crate) fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Res<()> {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    check(unsafe { libc::mount(p(src), target.as_ptr(), p(fstype), flags, p(data).cast()) })
}

/// mount_setattr(fd, "", AT_EMPTY_PATH [|AT_RECURSIVE], {set, clr}).
pub(crate) fn mount_setattr(fd: RawFd, recursive: bool, set: u64, clr: u64) -> Res<()> {
    let attr = MountAttr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd: 0 };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: "" is a valid C string, `attr` is a valid mount_attr of the size we pass.
    let r = unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// open_tree(path, OPEN_TREE_CLONE [|AT_RECURSIVE] | OPEN_TREE_CLOEXEC): a detached copy of
/// the mount at `path`, attachable with [`move_mount_to`] from another mount namespace.
pub(crate) fn open_tree_clone(path: &CStr, recursive: bool) -> Res<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | if recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    // SAFETY: path is a valid C string; open_tree returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: r is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS).
pub(crate) fn move_mount_to(fd: RawFd, target: &CStr) -> Res<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_SYMLINKS: libc::c_uint = 0x10;
    // SAFETY: "" and target are valid C strings; fd is only read.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

pub(crate) fn umount2(target: &CStr, flags: libc::c_int) -> Res<()> {
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })
}

pub(crate) fn mkdirat(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> Res<()> {
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) })
}

pub(crate) fn mknodat(dirfd: RawFd, name: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> Res<()> {
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::mknodat(dirfd, name.as_ptr(), mode, dev) })
}

pub(crate) fn symlinkat(target: &CStr, dirfd: RawFd, name: &CStr) -> Res<()> {
    // SAFETY: NUL-terminated paths.
    check(unsafe { libc::symlinkat(target.as_ptr(), dirfd, name.as_ptr()) })
}

pub(crate) fn unlinkat(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> Res<()> {
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::unlinkat(dirfd, name.as_ptr(), flags) })
}

pub(crate) fn fchownat(dirfd: RawFd, name: &CStr, uid: u32, gid: u32, flags: libc::c_int) -> Res<()> {
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::fchownat(dirfd, name.as_ptr(), uid, gid, flags) })
}

/// readlinkat into `buf`; returns the target bytes.
pub(crate) fn readlinkat<'a>(dirfd: RawFd, name: &CStr, buf: &'a mut [u8]) -> Res<&'a [u8]> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(Errno::last());
    }
    let n = n as usize;
    if n >= buf.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(&buf[..n])
}

pub(crate) fn fstat(fd: RawFd) -> Res<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is a valid out-pointer; "" with AT_EMPTY_PATH works on O_PATH descriptors too.
    check(unsafe { libc::fstatat(fd, c"".as_ptr(), st.as_mut_ptr(), libc::AT_EMPTY_PATH) })?;
    // SAFETY: fstatat succeeded and filled st.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn stat(path: &CStr) -> Res<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid path and out-pointer.
    check(unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: stat succeeded.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn fstatfs(fd: RawFd) -> Res<libc::statfs> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: valid out-pointer; fstatfs accepts O_PATH descriptors.
    check(unsafe { libc::fstatfs(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstatfs succeeded.
    Ok(unsafe { st.assume_init() })
}

/// statvfs(path).f_flag (ST_* flags, whose values equal the MS_* ones).
pub(crate) fn statvfs_flags(path: &CStr) -> Res<libc::c_ulong> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: valid path and out-pointer.
    check(unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statvfs succeeded.
    Ok(unsafe { st.assume_init() }.f_flag)
}

/// fstatvfs(fd).f_flag.
pub(crate) fn fstatvfs_flags(fd: RawFd) -> Res<libc::c_ulong> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: valid out-pointer; fstatvfs accepts O_PATH descriptors.
    check(unsafe { libc::fstatvfs(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded.
    Ok(unsafe { st.assume_init() }.f_flag)
}

pub(crate) fn fchdir(fd: RawFd) -> Res<()> {
    // SAFETY: plain syscall on a descriptor.
    check(unsafe { libc::fchdir(fd) })
}

pub(crate) fn chdir(path: &CStr) -> Res<()> {
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::chdir(path.as_ptr()) })
}

pub(crate) fn chroot(path: &CStr) -> Res<()> {
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::chroot(path.as_ptr()) })
}

pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> Res<()> {
    // SAFETY: NUL-terminated paths.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

pub(crate) fn access_ok(path: &CStr) -> bool {
    // SAFETY: NUL-terminated path.
    unsafe { libc::access(path.as_ptr(), libc::F_OK) == 0 }
}

pub(crate) fn umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) }
}

/// "/proc/self/fd/<n>" as a C string on the stack: the mount target that lands exactly on
/// what a descriptor refers to.
pub(crate) struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    pub(crate) fn new(fd: &impl AsRawFd) -> FdPath {
        FdPath::raw(fd.as_raw_fd())
    }

    pub(crate) fn raw(fd: RawFd) -> FdPath {
        const P: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..P.len()].copy_from_slice(P);
        let mut digits = [0u8; 12];
        let mut n = fd.max(0) as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[P.len() + i] = digits[len - 1 - i];
        }
        FdPath { buf }
    }

    pub(crate) fn as_cstr(&self) -> &CStr {
        // The buffer always holds a NUL after the digits (at most 14 + 10 bytes are written).
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/proc/self/fd/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_path() {
        assert_eq!(FdPath::raw(0).as_cstr().to_bytes(), b"/proc/self/fd/0");
        assert_eq!(FdPath::raw(1234).as_cstr().to_bytes(), b"/proc/self/fd/1234");
        assert_eq!(FdPath::raw(i32::MAX).as_cstr().to_bytes(), b"/proc/self/fd/2147483647");
    }
}
