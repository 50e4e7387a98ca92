//! Terminals: a pty made inside the container's devpts, its master handed to the engine over
//! the console socket with SCM_RIGHTS (as runc does; containerd and conmon receive it there).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    #[error("terminal: {call}: {err}")]
    Sys { call: &'static str, err: std::io::Error },
}

fn err(call: &'static str) -> TtyError {
    TtyError::Sys { call, err: std::io::Error::last_os_error() }
}

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Open a new pty pair from /dev/ptmx of the current root.
pub fn open_pty() -> Result<Pty, TtyError> {
    let path = b"/dev/ptmx\0";
    // SAFETY: path is NUL-terminated.
    let m = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        return Err(err("open /dev/ptmx"));
    }
    // SAFETY: m is a fresh fd.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) } < 0 {
        return Err(err("unlock pty"));
    }
    // SAFETY: TIOCGPTPEER opens the peer of this master, returning a new fd.
    let s =
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if s < 0 {
        return Err(err("open pty peer"));
    }
    // SAFETY: s is a fresh fd.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    Ok(Pty { master, slave })
}

pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> Result<(), TtyError> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize struct.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(err("set window size"));
    }
    Ok(())
}

/// Send `master` over the connected unix socket `sock`.
pub fn send_master(sock: RawFd, master: RawFd) -> Result<(), TtyError> {
    let name = b"/dev/ptmx";
    let fds = [master];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(sock, &[IoSlice::new(name)], &cmsg, nix::sys::socket::MsgFlags::empty(), None)
        .map_err(|e| TtyError::Sys { call: "send pty master to console socket", err: e.into() })?;
    Ok(())
}

/// Make `slave` the controlling terminal and the process's stdio.
pub fn become_stdio(slave: RawFd) -> Result<(), TtyError> {
    // SAFETY: ioctl/dup2 on valid fds.
    unsafe {
        if libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
            return Err(err("set controlling terminal"));
        }
        for t in 0..3 {
            if libc::dup2(slave, t) < 0 {
                return Err(err("dup2 pty to stdio"));
            }
        }
    }
    Ok(())
}

/// A terminal in raw mode (cfmakeraw) while alive; its attributes are restored on drop. Used
/// by the callers that relay a container's terminal to their own (`run`/`exec` without a
/// console socket, `container attach`/`run -it` through the shim).
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// None when `fd` is not a terminal or its attributes can't be changed.
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        // SAFETY: isatty only inspects the fd.
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        // SAFETY: termios is plain data, filled by tcgetattr.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on a terminal fd with live termios structs.
        unsafe {
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return None;
            }
        }
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter` on the same fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}
