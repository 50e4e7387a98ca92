//! Small libc wrappers the shim and its client share.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two fds into a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblocking(fd: RawFd, on: bool) {
    // SAFETY: fcntl on a valid fd; no memory is involved.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            let nfl = if on { fl | libc::O_NONBLOCK } else { fl & !libc::O_NONBLOCK };
            libc::fcntl(fd, libc::F_SETFL, nfl);
        }
    }
}

pub fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on a valid fd; no memory is involved.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// read(2); EINTR is reported as EAGAIN ("nothing yet").
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: reading into a valid buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = errno();
        return Err(if e == libc::EINTR { libc::EAGAIN } else { e });
    }
    Ok(n as usize)
}

/// write(2) once; EINTR is reported as EAGAIN.
pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: writing from a valid buffer of the given length.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = errno();
        return Err(if e == libc::EINTR { libc::EAGAIN } else { e });
    }
    Ok(n as usize)
}

/// Blocking write of everything (waits on POLLOUT for non-blocking fds); false on error.
pub fn write_all(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(libc::EAGAIN) => {
                let mut p = [libc::pollfd { fd, events: libc::POLLOUT, revents: 0 }];
                poll(&mut p, 1000);
            }
            Err(_) => return false,
        }
    }
    true
}

/// poll(2); returns the number of ready fds (0 on timeout or EINTR).
pub fn poll(fds: &mut [libc::pollfd], ms: i32) -> i32 {
    // SAFETY: poll on a valid array of pollfds (negative fds are ignored by the kernel).
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    r.max(0)
}

/// Blocks `sigs` in this thread and returns a non-blocking signalfd for them plus the old mask.
pub fn signalfd(sigs: &[libc::c_int]) -> io::Result<(OwnedFd, libc::sigset_t)> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls only touch these
    // sets and the thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            let e = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            return Err(e);
        }
        Ok((OwnedFd::from_raw_fd(fd), old))
    }
}

/// Next signal number queued on a signalfd, None when there is none.
pub fn next_signal(sfd: RawFd) -> Option<i32> {
    // SAFETY: signalfd_siginfo is plain data filled by read.
    let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reading one signalfd_siginfo into a live struct of that size.
    let n = unsafe { libc::read(sfd, (&mut si as *mut libc::signalfd_siginfo).cast(), size) };
    (n == size as isize).then_some(si.ssi_signo as i32)
}

pub fn restore_mask(old: &libc::sigset_t) {
    // SAFETY: sets back a mask saved by `signalfd`.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// Exit code of a wait status: the code, or 128+signal.
pub fn exit_code(st: libc::c_int) -> Option<i32> {
    if libc::WIFEXITED(st) {
        Some(libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        Some(128 + libc::WTERMSIG(st))
    } else {
        None
    }
}

pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// (rows, cols) of the terminal on `fd`, None when it is not a terminal.
pub fn get_winsize(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data; TIOCGWINSZ writes into it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: see above; the struct outlives the call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && (ws.ws_row > 0 || ws.ws_col > 0)).then_some((ws.ws_row, ws.ws_col))
}

/// Seconds and nanoseconds since the epoch (CLOCK_REALTIME).
pub fn now() -> (i64, u32) {
    // SAFETY: timespec is plain data filled by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec, ts.tv_nsec as u32)
}

/// Unix socket paths are limited to 107 bytes: longer ones are reached through an O_PATH fd
/// of their directory (/proc/self/fd/N/name). The fd must stay open while the path is used.
fn short_path(path: &Path) -> io::Result<(std::path::PathBuf, Option<OwnedFd>)> {
    if path.as_os_str().len() < 100 {
        return Ok((path.to_path_buf(), None));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C string; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name), Some(fd)))
}

pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let (p, _keep) = short_path(path)?;
    UnixStream::connect(p)
}

/// Binds a unix listener (mode 0600), replacing a stale socket file.
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    let (p, _keep) = short_path(path)?;
    let _ = std::fs::remove_file(&p);
    let l = UnixListener::bind(&p)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Receives one message carrying an fd (the runtime sends the pty master this way).
pub fn recv_fd(s: &UnixStream) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 2]);
    let msg = loop {
        match recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.map_err(io::Error::from)?,
        }
    };
    let mut got = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel installed this fd in our table for us; we own it now.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(fd);
                }
            }
        }
    }
    got.ok_or_else(|| io::Error::other("no file descriptor in the message"))
}

/// Start time (clock ticks since boot) of a live, non-zombie process.
pub fn start_time(pid: i32) -> Option<u64> {
    berth::pid_start_time(pid)
}
