//! The container's init, after the re-exec: builds the container from inside its namespaces,
//! reports ready, waits for `start`, and executes the user's process.

use super::sync::{kind, Channel};
use super::BootHeader;
use crate::capabilities::{self, Masks};
use crate::namespaces::{self, Plan};
use crate::rootfs;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Sync(#[from] super::sync::SyncError),
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Caps(#[from] capabilities::CapError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Tty(#[from] super::tty::TtyError),
    #[error("parse boot message: {0}")]
    Boot(String),
    #[error("{call}: {err}")]
    Sys { call: String, err: std::io::Error },
    #[error("{0}")]
    Msg(String),
}

fn sys(call: impl Into<String>) -> InitError {
    InitError::Sys { call: call.into(), err: std::io::Error::last_os_error() }
}

fn check(r: libc::c_int, call: impl FnOnce() -> String) -> Result<(), InitError> {
    if r < 0 {
        Err(sys(call()))
    } else {
        Ok(())
    }
}

/// Once the init has reported ready, the runtime that created it is gone: later errors go to
/// this fd (the container's exec error file, which `start` reads).
static START_ERR_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Entry point of `berth init`. Never returns.
pub fn main(sync_fd: RawFd) -> ! {
    // SAFETY: the fd number comes from our own parent through the environment; we own it now.
    let ch = Channel { fd: unsafe { OwnedFd::from_raw_fd(sync_fd) } };
    // SAFETY: set close-on-exec on our end again (it was cleared for the re-exec).
    unsafe { libc::fcntl(sync_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let err = match run(&ch) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let msg = err.to_string();
    // Before READY the runtime is there to report our error (or, if it closed the channel, it
    // failed itself and reports that): stay quiet. After READY the error has already gone to
    // the exec error file and stderr.
    let err_fd = START_ERR_FD.load(std::sync::atomic::Ordering::Relaxed);
    if err_fd >= 0 {
        // SAFETY: writing a buffer to our own fd.
        unsafe { libc::write(err_fd, msg.as_ptr().cast(), msg.len()) };
        eprintln!("berth: {msg}");
    } else {
        let _ = ch.send(kind::ERROR, msg.as_bytes());
    }
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(1) }
}

fn parse_boot(payload: &[u8]) -> Result<(BootHeader, Spec, Option<crate::seccomp::Prepared>), InitError> {
    let take = |p: &[u8], at: usize| -> Result<(usize, usize), InitError> {
        let b = p.get(at..at + 4).ok_or_else(|| InitError::Boot("truncated".into()))?;
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if at + 4 + n > p.len() {
            return Err(InitError::Boot("truncated".into()));
        }
        Ok((at + 4, n))
    };
    let (h_at, h_len) = take(payload, 0)?;
    let header: BootHeader =
        serde_json::from_slice(&payload[h_at..h_at + h_len]).map_err(|e| InitError::Boot(e.to_string()))?;
    let (c_at, c_len) = take(payload, h_at + h_len)?;
    let spec: Spec =
        serde_json::from_slice(&payload[c_at..c_at + c_len]).map_err(|e| InitError::Boot(e.to_string()))?;
    let (s_at, s_len) = take(payload, c_at + c_len)?;
    let seccomp =
        if s_len == 0 { None } else { Some(crate::seccomp::Prepared::from_bytes(&payload[s_at..s_at + s_len])?) };
    Ok((header, spec, seccomp))
}

fn run(ch: &Channel) -> Result<std::convert::Infallible, InitError> {
    let (boot, spec, seccomp) = parse_boot(&ch.expect(kind::BOOT)?)?;
    // Inherited through the re-exec without close-on-exec: none of them may reach the process.
    for &fd in [boot.fifo_fd, boot.exec_err_fd, boot.console_fd].iter().chain(&boot.bind_sources) {
        if fd >= 0 {
            // SAFETY: fcntl on an fd number we were handed; an invalid one only fails.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    if let Some(info) = &boot.exec {
        return run_exec(ch, &boot, &spec, info, seccomp);
    }
    let linux = spec.linux().as_ref();
    let plan = Plan::from_linux(linux)?;

    // Join namespaces given by path (pid and time were joined by the parent before clone,
    // since they apply to children only); the user namespace comes first.
    for (t, path) in &plan.join {
        if matches!(t, LinuxNamespaceType::Pid) {
            continue;
        }
        let f = namespaces::open_ns(*t, path)?;
        namespaces::setns(*t, path, &f)?;
    }
    if plan.joins(LinuxNamespaceType::User).is_some() {
        // Our host ids mean nothing in a joined user namespace: become its root (as runc's
        // nsexec does), or files we make there could not be owned (EOVERFLOW).
        // SAFETY: setresgid/setresuid with integer arguments.
        unsafe {
            check(libc::setresgid(0, 0, 0), || "setresgid(0) in the joined user namespace".into())?;
            check(libc::setresuid(0, 0, 0), || "setresuid(0) in the joined user namespace".into())?;
        }
    }
    if boot.late_ns {
        make_late_namespaces(ch, &plan, boot.hide_host_fs)?;
    }
    // The cgroup namespace must be made once we are in our cgroup, so that its root is the
    // container's cgroup. Born there (v2): now, before the cgroup2 mount. Joined by the parent
    // while we set up (v1, hybrid: their cgroup mounts are binds): after the mounts.
    let cgroupns = plan.creates(LinuxNamespaceType::Cgroup);
    if cgroupns && !boot.wait_joined {
        namespaces::unshare(libc::CLONE_NEWCGROUP, "cgroup")?;
    }
    // SAFETY: setsid takes no arguments; the init becomes a session leader.
    unsafe { libc::setsid() };

    if !boot.no_new_keyring {
        join_session_keyring(&boot.id);
    }

    // A mount namespace joined by path gets the same root set-up as a new one (as runc does):
    // the namespace is the container's to shape.
    let new_mnt = plan.has(LinuxNamespaceType::Mount);
    let ctx = rootfs::Context {
        rootfs: boot.rootfs.clone(),
        no_pivot: boot.no_pivot,
        userns: plan.has(LinuxNamespaceType::User),
        cgroup: boot.cgroup.clone(),
        mount_label: spec
            .linux()
            .as_ref()
            .and_then(|l| l.mount_label().clone())
            .filter(|l| !l.is_empty() && selinux_enabled()),
        bind_sources: boot.bind_sources.clone(),
    };
    if new_mnt {
        rootfs::prepare(&spec, &ctx)?;
    }
    if boot.hide_host_fs {
        rootfs::drop_setup_fs()?;
    }
    if boot.wait_joined {
        ch.expect(kind::JOINED)?;
        if cgroupns {
            namespaces::unshare(libc::CLONE_NEWCGROUP, "cgroup")?;
        }
    }

    // createRuntime (and the deprecated prestart) hooks run in the runtime's namespaces.
    let hooks = spec.hooks().as_ref();
    if hooks.map(|h| h.create_runtime().is_some() || h.prestart().is_some()).unwrap_or(false) {
        ch.send(kind::HOOKS, b"")?;
        ch.expect(kind::HOOKS_DONE)?;
    }
    // In the rootfs directory (not yet the root), as runc runs them.
    crate::hooks::run_all_in(
        "createContainer",
        hooks.and_then(|h| h.create_container().as_ref()),
        boot.state_creating.as_bytes(),
        Some(&ctx.rootfs),
    )?;

    if new_mnt {
        rootfs::pivot(&ctx)?;
    } else {
        // No mount namespace: do not touch the host's mount table, only change root.
        chroot_into(&boot.rootfs)?;
    }
    // sysctls and the console go in while /proc/sys and /dev are still writable.
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        for (k, v) in sysctl {
            write_sysctl(k, v)?;
        }
    }
    let mut pty = None;
    if let Some(p) = spec.process().as_ref().filter(|p| p.terminal().unwrap_or(false)) {
        let t = open_console(&boot, p)?;
        if new_mnt {
            bind_dev_console(&t)?;
        }
        pty = Some(t);
    }
    if new_mnt {
        rootfs::finalize(&spec, &ctx)?;
    }

    if plan.has(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname() {
            set_name(libc::SYS_sethostname, h, "sethostname")?;
        }
        if let Some(d) = spec.domainname() {
            set_name(libc::SYS_setdomainname, d, "setdomainname")?;
        }
    }

    let Some(process) = spec.process().as_ref() else {
        // A config without a process can be created; `start` refuses it.
        // SAFETY: the runtime exits once we are ready; we must not die with it.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
        ch.send(kind::READY, b"")?;
        wait_for_start(boot.fifo_fd);
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(1) }
    };

    exec_process(ch, &boot, &spec, process, true, seccomp, pty)
}

/// `berth exec`: join the container's namespaces, then set up and run the process.
fn run_exec(
    ch: &Channel,
    boot: &BootHeader,
    spec: &Spec,
    info: &super::ExecInfo,
    seccomp: Option<crate::seccomp::Prepared>,
) -> Result<std::convert::Infallible, InitError> {
    for (kind_name, path) in &info.namespaces {
        let t = LinuxNamespaceType::try_from(kind_name.as_str())
            .map_err(|_| InitError::Msg(format!("unknown namespace type {kind_name}")))?;
        let f = namespaces::open_ns(t, path)?;
        namespaces::setns(t, path, &f)?;
    }
    if boot.late_ns {
        // The pid namespace was joined here (an unprivileged caller): fork into it.
        // SAFETY: single-threaded fork; the parent only reports the child's pid and exits.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(sys("fork into the container's pid namespace"));
        }
        if child > 0 {
            let _ = ch.send(kind::NEWPID, &child.to_le_bytes());
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(0) }
        }
        ch.expect(kind::PID_ACK)?;
    }
    // SAFETY: setsid takes no arguments.
    unsafe { libc::setsid() };
    let pty = match info.process.terminal().unwrap_or(false) {
        true => Some(open_console(boot, &info.process)?),
        false => None,
    };
    exec_process(ch, boot, spec, &info.process, false, seccomp, pty)
}

/// Set up `process` (terminal, attributes, seccomp, user, capabilities, cwd) and execute it.
/// For the container's init (`is_init`) report ready and wait for `start` first.
fn exec_process(
    ch: &Channel,
    boot: &BootHeader,
    spec: &Spec,
    process: &Process,
    is_init: bool,
    seccomp: Option<crate::seccomp::Prepared>,
    pty: Option<super::tty::Pty>,
) -> Result<std::convert::Infallible, InitError> {
    let hooks = spec.hooks().as_ref();
    if let Some(pty) = pty {
        super::tty::become_stdio(pty.slave.as_raw_fd())?;
    }

    setup_process(process)?;
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        set_personality(p)?;
    }

    let nnp = process.no_new_privileges().unwrap_or(false);
    let masks = Masks::from_spec(process.capabilities().as_ref())?;
    let sys_admin_kept = masks.effective & (1 << 21) != 0;
    let mut notify_sent = false;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before the drop unless
    // the process keeps that capability. With a notify action, the fd must reach the runtime
    // (through our parent) before we report ready.
    let early_seccomp = seccomp.as_ref().map(|s| s.uses_notify() || (!nnp && !sys_admin_kept)).unwrap_or(false);
    // The cwd, as runc does it: first with the runtime's privileges (a directory only root may
    // enter still works for a non-root process); when that is refused, once more as the
    // process's user (a directory only that user may enter, e.g. on root-squashing storage).
    // Before the filter too: the check (getcwd) must not run under one that may deny it.
    let cwd_done = early_cwd(process.cwd())?;
    if early_seccomp {
        if let Some(s) = &seccomp {
            if nnp {
                set_nnp()?;
            }
            if let Some(fd) = s.load()? {
                // Only the fd's number goes (by write, as runc): the runtime takes the fd with
                // pidfd_getfd(2). Kept open until the runtime has passed it on.
                ch.write_plain(kind::SECCOMP_FD, &fd.as_raw_fd().to_le_bytes())?;
                ch.expect(kind::SECCOMP_DONE)?;
                drop(fd);
                notify_sent = true;
            }
        }
    }
    let _ = notify_sent;

    set_user_and_caps(process, &masks)?;
    if nnp {
        set_nnp()?;
    }
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(process.user().umask().unwrap_or(0o022) as libc::mode_t) };

    if !cwd_done {
        change_cwd(process.cwd())?;
    }
    let env = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(InitError::Msg("process.args is empty".into()));
    }
    let exe = find_executable(&args[0], &env)?;

    // SAFETY: the runtime exits once we are ready; we must not die with it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    if is_init {
        // The filter goes on before the init reports ready, where runc loads it: the
        // startContainer hooks run under it. READY goes by plain write(2) (a profile may
        // refuse or notify sendmsg; runc writes too).
        if !early_seccomp {
            if let Some(s) = &seccomp {
                s.load()?;
            }
        }
        ch.write_plain(kind::READY, b"")?;
        drop_channel(ch);
        START_ERR_FD.store(boot.exec_err_fd, std::sync::atomic::Ordering::Relaxed);
        wait_for_start(boot.fifo_fd);
        crate::hooks::run_all(
            "startContainer",
            hooks.and_then(|h| h.start_container().as_ref()),
            boot.state_created.as_bytes(),
        )?;
    }

    if !early_seccomp && !is_init {
        if let Some(s) = &seccomp {
            s.load()?;
        }
    }
    close_fds(3 + boot.preserve_fds);
    exec(&exe, &args, &env, boot.exec_err_fd)
}

/// The tty group, owner group of a container's terminal (the spec's /dev/pts `gid=5`).
const TTY_GID: libc::gid_t = 5;

/// Make the pty, size it, give the slave to the process's user and hand the master to the
/// console socket.
fn open_console(boot: &BootHeader, process: &Process) -> Result<super::tty::Pty, InitError> {
    if boot.console_fd < 0 {
        return Err(InitError::Msg("process.terminal is true but no --console-socket was given".into()));
    }
    let pty = super::tty::open_pty()?;
    if let Some(sz) = process.console_size() {
        super::tty::set_winsize(pty.master.as_raw_fd(), sz.height() as u16, sz.width() as u16)?;
    }
    // The process's own terminal, as runc leaves it: its uid, group tty (5), mode 0620. In a
    // user namespace where gid 5 is not mapped only the owner changes; a failure leaves the
    // pty as devpts made it (runc does not fail there either).
    let slave = pty.slave.as_raw_fd();
    // SAFETY: fchown/fchmod on the pty slave fd we own.
    unsafe {
        if libc::fchown(slave, process.user().uid(), TTY_GID) != 0 {
            libc::fchown(slave, process.user().uid(), u32::MAX);
        }
        libc::fchmod(slave, 0o620);
    }
    super::tty::send_master(boot.console_fd, pty.master.as_raw_fd())?;
    // SAFETY: the console socket is no longer needed.
    unsafe { libc::close(boot.console_fd) };
    Ok(pty)
}

/// Bind the pty slave over /dev/console, as runc does, from the slave descriptor itself: a
/// path (`/dev/pts/N`) is looked up in a /dev the container may control and could lead to any
/// file, which would then be bound, writable, on /dev/console. The target is opened without
/// following symlinks and the mount goes onto that descriptor.
fn bind_dev_console(pty: &super::tty::Pty) -> Result<(), InitError> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes the pty number into n.
    if unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCGPTN, &mut n) } < 0 {
        return Err(sys("get pty number"));
    }
    let src = if crate::faults::weakened("console-pty-fd") {
        cstr(format!("/dev/pts/{n}").as_bytes())?
    } else {
        cstr(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()).as_bytes())?
    };
    // SAFETY: valid C strings; an existing /dev/console is reused, a symlink refused (ELOOP).
    let target = unsafe {
        let fd = libc::open(
            c"/dev/console".as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o600,
        );
        if fd < 0 {
            return Err(sys("create /dev/console"));
        }
        libc::close(fd);
        let fd = libc::open(c"/dev/console".as_ptr(), libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW);
        if fd < 0 {
            return Err(sys("open /dev/console"));
        }
        OwnedFd::from_raw_fd(fd)
    };
    let dest = cstr(format!("/proc/self/fd/{}", target.as_raw_fd()).as_bytes())?;
    // SAFETY: valid C strings.
    check(
        unsafe { libc::mount(src.as_ptr(), dest.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) },
        || format!("bind /dev/pts/{n} on /dev/console"),
    )
}

/// Create the namespaces clone could not: a user namespace (the parent writes its maps), then
/// the rest; a new pid namespace needs one more fork, whose child becomes the container's init.
fn make_late_namespaces(ch: &Channel, plan: &Plan, hide_host_fs: bool) -> Result<(), InitError> {
    if plan.creates(LinuxNamespaceType::User) {
        namespaces::unshare(libc::CLONE_NEWUSER, "user")?;
        ch.send(kind::MAPS, b"")?;
        ch.expect(kind::MAPPED)?;
        // SAFETY: become root of the new user namespace, which the parent has mapped.
        unsafe {
            check(libc::setresgid(0, 0, 0), || "setresgid(0) in user namespace".into())?;
            check(libc::setresuid(0, 0, 0), || "setresuid(0) in user namespace".into())?;
        }
    }
    let rest = plan.new_flags & !(libc::CLONE_NEWUSER | libc::CLONE_NEWCGROUP | libc::CLONE_NEWTIME);
    if rest != 0 {
        namespaces::unshare(rest, "namespaces")?;
    }
    if hide_host_fs && rest & libc::CLONE_NEWNS != 0 {
        // Our mount namespace is a copy of the runtime's with the host's procfs and sysfs
        // covered; its procfs and sysfs for our set-up must come now, by propagation.
        ch.send(kind::LEND, b"")?;
        ch.expect(kind::LENT)?;
    }
    if plan.creates(LinuxNamespaceType::Pid) {
        // SAFETY: single-threaded fork; the parent only reports the child's pid and exits.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(sys("fork into the new pid namespace"));
        }
        if child > 0 {
            let _ = ch.send(kind::NEWPID, &child.to_le_bytes());
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(0) }
        }
        ch.expect(kind::PID_ACK)?;
    }
    Ok(())
}

fn drop_channel(ch: &Channel) {
    // Close our end so that the runtime's reads see EOF once it stops caring; the fd number
    // stays owned by `ch`, so shut it down rather than close it here.
    // SAFETY: shutdown on a valid socket.
    unsafe { libc::shutdown(ch.fd.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Block until `start` writes to the exec fifo. The wait can be long (engines create ahead of
/// time), so the init first gives back the pages its set-up used.
fn wait_for_start(fifo: RawFd) {
    super::memory::release_readonly_image();
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a valid buffer.
        let r = unsafe { libc::read(fifo, b.as_mut_ptr().cast(), 1) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break;
    }
}

fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    if let Ok(name) = CString::new(format!("_ses.{id}")) {
        // SAFETY: keyctl with a valid C string; failure (e.g. keyrings not permitted) is ignored,
        // as runc does.
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    }
}

fn chroot_into(root: &Path) -> Result<(), InitError> {
    let c = cstr(root.as_os_str().as_bytes())?;
    // SAFETY: valid C strings.
    unsafe {
        check(libc::chdir(c.as_ptr()), || format!("chdir {}", root.display()))?;
        check(libc::chroot(c".".as_ptr()), || format!("chroot {}", root.display()))?;
        check(libc::chdir(c"/".as_ptr()), || "chdir /".into())?;
    }
    Ok(())
}

fn cstr(b: &[u8]) -> Result<CString, InitError> {
    CString::new(b).map_err(|_| InitError::Msg(format!("{:?} contains a NUL byte", String::from_utf8_lossy(b))))
}

fn set_name(nr: libc::c_long, name: &str, call: &'static str) -> Result<(), InitError> {
    // SAFETY: pointer and length of a valid byte slice.
    let r = unsafe { libc::syscall(nr, name.as_ptr(), name.len()) };
    check(r as libc::c_int, || format!("{call} {name:?}"))
}

fn write_sysctl(key: &str, value: &str) -> Result<(), InitError> {
    if key.contains("..") || key.starts_with('/') || key.contains('\0') {
        return Err(InitError::Msg(format!("sysctl {key:?}: invalid name")));
    }
    let rel = format!("sys/{}", key.replace('.', "/"));
    let path = format!("/proc/{rel}");
    let io = |err| InitError::Sys { call: format!("sysctl {key}={value} ({path})"), err };
    if crate::faults::weakened("sysctl-procfs-check") {
        return std::fs::write(&path, value).map_err(io);
    }
    // Only procfs's own file: a mount over it (or over /proc) would redirect the write.
    let c = cstr(rel.as_bytes())?;
    let fd = rootfs::open_proc_file(&c, libc::O_WRONLY).map_err(|e| match e {
        nix::errno::Errno::EXDEV | nix::errno::Errno::ELOOP => InitError::Msg(format!(
            "sysctl {key}: {path} is not procfs's own file (a mount or a symlink covers it): refusing to write"
        )),
        e => io(std::io::Error::from_raw_os_error(e as i32)),
    })?;
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, value.as_bytes()).map_err(io)
}

fn set_nnp() -> Result<(), InitError> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, || "prctl(PR_SET_NO_NEW_PRIVS)".into())
}

fn rlimit_resource(t: oci_spec::runtime::PosixRlimitType) -> libc::c_int {
    use oci_spec::runtime::PosixRlimitType as R;
    (match t {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

/// Process attributes set while still privileged: rlimits, oom score, io priority, scheduler,
/// personality, LSM labels.
fn setup_process(p: &Process) -> Result<(), InitError> {
    if let Some(rl) = p.rlimits() {
        for r in rl {
            let lim = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
            // SAFETY: valid rlimit struct.
            check(unsafe { libc::setrlimit(rlimit_resource(r.typ()) as _, &lim) }, || {
                format!("setrlimit {:?} soft={} hard={}", r.typ(), r.soft(), r.hard())
            })?;
        }
    }
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|err| InitError::Sys { call: format!("write {adj} to /proc/self/oom_score_adj"), err })?;
    }
    if let Some(io) = p.io_priority() {
        use oci_spec::runtime::IOPriorityClass as C;
        let class: i64 = match io.class() {
            C::IoprioClassRt => 1,
            C::IoprioClassBe => 2,
            C::IoprioClassIdle => 3,
        };
        if !(0..=7).contains(&io.priority()) {
            return Err(InitError::Msg(format!("ioPriority.priority {} out of range 0-7", io.priority())));
        }
        let prio = (class << 13) | io.priority();
        // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, self, prio).
        let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) };
        check(r as libc::c_int, || "ioprio_set".into())?;
    }
    if let Some(s) = p.scheduler() {
        set_scheduler(s)?;
    }
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        set_apparmor(profile)?;
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        set_selinux(label)?;
    }
    Ok(())
}

fn set_personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<(), InitError> {
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    let mut persona: libc::c_ulong = match p.domain() {
        D::PerLinux => 0x0000,
        D::PerLinux32 => 0x0008,
    };
    for f in p.flags().iter().flatten() {
        persona |= match f.as_str() {
            "ADDR_NO_RANDOMIZE" => 0x0040000,
            "ADDR_COMPAT_LAYOUT" => 0x0200000,
            "ADDR_LIMIT_32BIT" => 0x0800000,
            "ADDR_LIMIT_3GB" => 0x8000000,
            "FDPIC_FUNCPTRS" => 0x0080000,
            "MMAP_PAGE_ZERO" => 0x0100000,
            "READ_IMPLIES_EXEC" => 0x0400000,
            "SHORT_INODE" => 0x1000000,
            "STICKY_TIMEOUTS" => 0x4000000,
            "UNAME26" => 0x0020000,
            "WHOLE_SECONDS" => 0x2000000,
            other => return Err(InitError::Msg(format!("linux.personality: unknown flag {other:?}"))),
        };
    }
    // SAFETY: personality takes an integer.
    let r = unsafe { libc::personality(persona) };
    check(r, || format!("personality {persona:#x}"))
}

fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<(), InitError> {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr(0, &attr, 0) with a properly sized struct.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    check(r as libc::c_int, || format!("sched_setattr policy {:?}", s.policy()))
}

fn lsm_enabled(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .or_else(|_| std::fs::read_to_string("/proc/self/attr/../../../sys/kernel/security/lsm"))
        .map(|s| s.split(',').any(|l| l.trim() == name))
        .unwrap_or(false)
}

fn set_apparmor(profile: &str) -> Result<(), InitError> {
    let enabled =
        std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").map(|s| s.trim() == "Y").unwrap_or(false);
    if !enabled {
        return Err(InitError::Msg(format!(
            "apparmor profile {profile:?} requested but AppArmor is not enabled on this host"
        )));
    }
    let data = format!("exec {profile}");
    std::fs::write("/proc/self/attr/apparmor/exec", &data)
        .or_else(|_| std::fs::write("/proc/self/attr/exec", &data))
        .map_err(|err| match err.raw_os_error() {
            // The kernel's answer for a profile name it does not know.
            Some(libc::ENOENT) => InitError::Msg(format!("apparmor profile {profile:?} is not loaded")),
            _ => InitError::Sys { call: format!("set apparmor profile {profile:?}"), err },
        })
}

fn selinux_enabled() -> bool {
    lsm_enabled("selinux") || Path::new("/sys/fs/selinux/enforce").exists()
}

fn set_selinux(label: &str) -> Result<(), InitError> {
    if !selinux_enabled() {
        return Err(InitError::Msg(format!(
            "selinux label {label:?} requested but SELinux is not enabled on this host"
        )));
    }
    std::fs::write("/proc/self/attr/exec", label)
        .map_err(|err| InitError::Sys { call: format!("set selinux label {label:?}"), err })
}

fn set_user_and_caps(p: &Process, masks: &Masks) -> Result<(), InitError> {
    let user = p.user();
    capabilities::drop_bounding(masks.bounding)?;
    // SAFETY: plain syscalls with integer arguments or valid arrays.
    unsafe {
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0), || "prctl(PR_SET_KEEPCAPS)".into())?;
        let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
        let r = libc::setgroups(groups.len(), groups.as_ptr());
        // In a user namespace with setgroups denied, an empty list is fine to skip.
        if r != 0 && !(groups.is_empty() && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)) {
            return Err(sys(format!("setgroups {groups:?}")));
        }
        check(libc::setresgid(user.gid(), user.gid(), user.gid()), || format!("setresgid {}", user.gid()))?;
        check(libc::setresuid(user.uid(), user.uid(), user.uid()), || format!("setresuid {}", user.uid()))?;
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0), || "prctl(PR_SET_KEEPCAPS)".into())?;
    }
    capabilities::set_eip(masks)?;
    if masks.ambient != 0 {
        capabilities::set_ambient(masks.ambient)?;
    }
    Ok(())
}

/// `change_cwd` while still privileged: Ok(false) when the chdir was refused (EACCES, EPERM),
/// to be tried again as the process's user.
fn early_cwd(cwd: &Path) -> Result<bool, InitError> {
    let c = cstr(cwd.as_os_str().as_bytes())?;
    // SAFETY: valid C string.
    if unsafe { libc::chdir(c.as_ptr()) } != 0 {
        let e = std::io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
            return Ok(false);
        }
        return Err(InitError::Sys { call: format!("chdir to cwd {}", cwd.display()), err: e });
    }
    check_cwd(cwd)?;
    Ok(true)
}

fn change_cwd(cwd: &Path) -> Result<(), InitError> {
    let c = cstr(cwd.as_os_str().as_bytes())?;
    // SAFETY: valid C string.
    if unsafe { libc::chdir(c.as_ptr()) } != 0 {
        return Err(sys(format!("chdir to cwd {}", cwd.display())));
    }
    check_cwd(cwd)
}

fn check_cwd(cwd: &Path) -> Result<(), InitError> {
    if crate::faults::weakened("cwd-check") {
        return Ok(());
    }
    // A cwd reached through a leaked fd would lie outside our root: getcwd then reports
    // "(unreachable)" / fails with ENOENT (CVE-2024-21626).
    let mut buf = [0u8; 4096];
    // SAFETY: buffer and its length are valid.
    let p = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if p.is_null() || buf[0] != b'/' {
        return Err(InitError::Msg(format!("cwd {} is outside the container's root", cwd.display())));
    }
    Ok(())
}

fn env_path(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

fn is_executable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else { return false };
    // SAFETY: valid C string; stat into a zeroed struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::stat(c.as_ptr(), &mut st) == 0
            && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
            && libc::access(c.as_ptr(), libc::X_OK) == 0
    }
}

fn find_executable(name: &str, env: &[String]) -> Result<PathBuf, InitError> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        if is_executable(&p) {
            return Ok(p);
        }
        let why = if p.exists() { "permission denied or not a regular file" } else { "no such file or directory" };
        return Err(InitError::Msg(format!("exec {name:?}: {why}")));
    }
    for dir in env_path(env).split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    Err(InitError::Msg(format!("exec {name:?}: executable file not found in $PATH")))
}

fn close_fds(from: i32) {
    // SAFETY: close_range marks every fd from `from` close-on-exec; no memory is touched.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from as libc::c_uint,
            libc::c_uint::MAX,
            4u32, /* CLOSE_RANGE_CLOEXEC */
        )
    };
    if r != 0 {
        for fd in from..1024 {
            // SAFETY: fcntl on possibly-invalid fds only fails with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

fn exec(path: &Path, args: &[String], env: &[String], err_fd: RawFd) -> Result<std::convert::Infallible, InitError> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let a: Vec<CString> = args.iter().map(|s| cstr(s.as_bytes())).collect::<Result<_, _>>()?;
    let e: Vec<CString> = env.iter().map(|s| cstr(s.as_bytes())).collect::<Result<_, _>>()?;
    let mut av: Vec<*const libc::c_char> = a.iter().map(|s| s.as_ptr()).collect();
    av.push(std::ptr::null());
    let mut ev: Vec<*const libc::c_char> = e.iter().map(|s| s.as_ptr()).collect();
    ev.push(std::ptr::null());
    // Rust's runtime started this init with SIGPIPE ignored, and an ignored signal stays
    // ignored across execve: the container's process gets the default (as under runc), or a
    // writer into a closed pipe (`yes | head`) would spin on EPIPE instead of ending.
    // SAFETY: restoring a signal's default disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(p.as_ptr(), av.as_ptr(), ev.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let msg = format!("exec {}: {err}", path.display());
    if err_fd >= 0 {
        // SAFETY: writing a buffer to our own fd.
        unsafe { libc::write(err_fd, msg.as_ptr().cast(), msg.len()) };
    }
    eprintln!("berth: {msg}");
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 }) }
}
