//! The container's process: how the runtime starts its init (one clone, one re-exec through a
//! read-only detached mount of the runtime binary), and what the init does inside.

pub mod init;
pub mod memory;
pub mod pidfd;
pub mod sync;
pub mod tty;

use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

pub const INIT_ENV: &str = "_BERTH_INIT";

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{call}: {err}")]
    Sys { call: &'static str, err: std::io::Error },
}

fn sys_err(call: &'static str) -> SpawnError {
    SpawnError::Sys { call, err: std::io::Error::last_os_error() }
}

/// What the parent tells the init, besides the config itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootHeader {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    pub fifo_fd: RawFd,
    /// File for the reason the process could not be executed after `start` (-1: none).
    #[serde(default = "no_fd")]
    pub exec_err_fd: RawFd,
    pub console_fd: RawFd,
    pub cgroup: crate::cgroups::MountInfo,
    /// State JSON for createContainer hooks (status creating) and startContainer (created).
    pub state_creating: String,
    pub state_created: String,
    pub debug: bool,
    /// The parent joins the init to its cgroup while the init sets up its root: wait for
    /// JOINED before anything that must happen inside the cgroup.
    #[serde(default)]
    pub wait_joined: bool,
    /// The namespaces were not made by clone: join the given ones, then create the new ones
    /// (a new user namespace after joining others by path, or a user namespace joined by path).
    #[serde(default)]
    pub late_ns: bool,
    /// `--no-pivot` in a new user namespace: the runtime lent its procfs and sysfs for the
    /// set-up (see `rootfs::Hider`); unmount them once the mounts are made.
    #[serde(default)]
    pub hide_host_fs: bool,
    /// Per entry of `mounts`: the fd of a detached copy of a bind source the runtime made
    /// before the user namespace (`rootfs::open_bind_sources`), or -1.
    #[serde(default)]
    pub bind_sources: Vec<i32>,
    /// Set for `berth exec`: join the running container instead of building one.
    #[serde(default)]
    pub exec: Option<ExecInfo>,
}

fn no_fd() -> RawFd {
    -1
}

/// What an exec'd process needs: the namespaces to join and the process to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecInfo {
    /// Namespace files of the container's init to join, user first.
    pub namespaces: Vec<(String, PathBuf)>,
    pub process: oci_spec::runtime::Process,
}

/// Open the runtime binary as a read-only, detached mount (open_tree + mount_setattr), so that
/// the init re-executed from it can never be reopened for writing through /proc/PID/exe
/// (CVE-2019-5736) without copying the binary. Falls back to a sealed memfd copy when the
/// kernel lacks open_tree.
pub fn readonly_self() -> Result<OwnedFd, SpawnError> {
    if crate::faults::weakened("exe-readonly") {
        // runc before its fix: the init runs the host's binary file itself.
        let f = std::fs::File::open("/proc/self/exe")
            .map_err(|err| SpawnError::Sys { call: "open /proc/self/exe", err })?;
        return Ok(OwnedFd::from(f));
    }
    let exe =
        std::fs::read_link("/proc/self/exe").map_err(|err| SpawnError::Sys { call: "readlink /proc/self/exe", err })?;
    let path = CString::new(exe.as_os_str().as_encoded_bytes())
        .map_err(|_| SpawnError::Sys { call: "readlink /proc/self/exe", err: std::io::Error::other("nul in path") })?;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: path is a valid C string; open_tree returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
    };
    if fd < 0 {
        return memfd_copy();
    }
    // SAFETY: fd was just returned by open_tree and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    const MOUNT_ATTR_RDONLY: u64 = 1;
    let r = crate::rootfs::mount_setattr(fd.as_raw_fd(), false, MOUNT_ATTR_RDONLY, 0);
    if r.is_err() {
        return memfd_copy();
    }
    Ok(fd)
}

fn memfd_copy() -> Result<OwnedFd, SpawnError> {
    let name = b"berth\0";
    // SAFETY: name is NUL-terminated.
    let m = unsafe { libc::memfd_create(name.as_ptr().cast(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if m < 0 {
        return Err(sys_err("memfd_create"));
    }
    // SAFETY: m is a fresh fd we own.
    let m = unsafe { OwnedFd::from_raw_fd(m) };
    let mut src =
        std::fs::File::open("/proc/self/exe").map_err(|err| SpawnError::Sys { call: "open /proc/self/exe", err })?;
    let mut dst = std::fs::File::from(m);
    std::io::copy(&mut src, &mut dst).map_err(|err| SpawnError::Sys { call: "copy runtime binary", err })?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a valid memfd.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(sys_err("seal runtime copy"));
    }
    Ok(OwnedFd::from(dst))
}

/// clone(2) with `flags` (namespace flags) behaving like fork: returns 0 in the child.
pub fn clone_fork(flags: libc::c_int) -> Result<libc::pid_t, SpawnError> {
    // SAFETY: raw clone without CLONE_VM and with a NULL stack duplicates the (single-threaded)
    // process like fork(2); the child only runs `pre_exec` code before execve.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(sys_err("clone"));
    }
    Ok(r as libc::pid_t)
}

/// clone3(2) with `flags` and, when given, CLONE_INTO_CGROUP: the child is born in the cgroup2
/// directory `cgroup_fd`, so no write to cgroup.procs (and none of its RCU grace-period wait) is
/// needed. Falls back to plain clone when clone3 is unavailable.
pub fn clone3_fork(flags: libc::c_int, cgroup_fd: Option<RawFd>) -> Result<(libc::pid_t, bool), SpawnError> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut args = CloneArgs { flags: flags as u32 as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: clone3 without CLONE_VM and with no stack duplicates this single-threaded process
    // like fork(2); args is a valid, fully initialized clone_args of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return clone_fork(flags).map(|p| (p, false));
        }
        return Err(SpawnError::Sys { call: "clone3", err: e });
    }
    Ok((r as libc::pid_t, cgroup_fd.is_some()))
}

/// In the freshly cloned child: die with the parent, take root in a new user namespace once the
/// parent has written the maps, then re-execute the runtime from `exe` as `berth init`.
pub fn child_pre_exec(ch: &sync::Channel, exe: RawFd, keep: &[RawFd], userns: bool, parent: libc::pid_t) -> ! {
    // SAFETY: plain prctl/getppid calls.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        // In a new pid namespace the parent is invisible and getppid() is 0.
        let pp = libc::getppid();
        if pp != parent && pp != 0 {
            libc::_exit(1);
        }
    }
    let fail = |what: &str| -> ! {
        let msg = format!("{what}: {}", std::io::Error::last_os_error());
        let _ = ch.send(sync::kind::ERROR, msg.as_bytes());
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(1) }
    };
    if userns {
        if ch.expect(sync::kind::MAPPED).is_err() {
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(1) }
        }
        // SAFETY: set ids to the namespace's root, which the parent has mapped.
        unsafe {
            if libc::setresgid(0, 0, 0) != 0 {
                fail("setresgid(0) in user namespace");
            }
            if libc::setresuid(0, 0, 0) != 0 {
                fail("setresuid(0) in user namespace");
            }
        }
    }
    for &fd in keep {
        // SAFETY: clearing FD_CLOEXEC on an fd we hold.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    let argv0 = b"berth\0";
    let argv1 = b"init\0";
    let argv = [argv0.as_ptr() as *const libc::c_char, argv1.as_ptr() as *const libc::c_char, std::ptr::null()];
    let env = match CString::new(format!("{INIT_ENV}={}", ch.fd.as_raw_fd())) {
        Ok(e) => e,
        Err(_) => fail("init environment"),
    };
    // The fault hooks (debug builds only) follow the runtime into its init.
    let weaken = crate::faults::inherited_env();
    let mut envp = vec![env.as_ptr()];
    envp.extend(weaken.iter().map(|e| e.as_ptr()));
    envp.push(std::ptr::null());
    let empty = b"\0";
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings that outlive the call.
    unsafe {
        libc::syscall(libc::SYS_execveat, exe, empty.as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH);
    }
    fail("re-exec runtime as init")
}
