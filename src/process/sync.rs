//! The channel between the runtime (parent) and the container's init: a stream socketpair
//! carrying framed messages `[kind u8][len u32 le][payload]`, optionally with one fd.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub const MAX_MSG: usize = 16 << 20;

/// Message kinds.
pub mod kind {
    /// parent → init: uid/gid maps are written.
    pub const MAPPED: u8 = 1;
    /// parent → init: the boot message (header JSON, config, seccomp program).
    pub const BOOT: u8 = 2;
    /// init → parent: run createRuntime/prestart hooks now.
    pub const HOOKS: u8 = 3;
    /// parent → init: hooks done.
    pub const HOOKS_DONE: u8 = 4;
    /// init → parent: the seccomp notify fd is attached.
    pub const SECCOMP_FD: u8 = 5;
    /// parent → init: the seccomp fd was handed to the listener.
    pub const SECCOMP_DONE: u8 = 6;
    /// init → parent: set-up complete, waiting for start.
    pub const READY: u8 = 7;
    /// init → parent: set-up failed; payload is the one-line error.
    pub const ERROR: u8 = 8;
    /// parent → init: the init is in its cgroup (sent after BOOT when the join overlaps the
    /// init's own set-up).
    pub const JOINED: u8 = 9;
    /// init → parent: write my uid/gid maps (I made a new user namespace myself).
    pub const MAPS: u8 = 10;
    /// init → parent: the container's pid-1 process has this pid (payload i32 le); the one
    /// that sent it exits.
    pub const NEWPID: u8 = 11;
    /// parent → init: NEWPID noted, go on.
    pub const PID_ACK: u8 = 12;
    /// init → parent: I made my mount namespace myself (after joining or creating a user
    /// namespace): lend me your procfs and sysfs now, so they reach me by propagation.
    pub const LEND: u8 = 13;
    /// parent → init: lent.
    pub const LENT: u8 = 14;
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync with container init: {0}")]
    Io(#[from] std::io::Error),
    #[error("sync with container init: the other side closed the channel")]
    Eof,
    #[error("sync with container init: unexpected message {got} (wanted {want})")]
    Unexpected { got: u8, want: u8 },
    #[error("{0}")]
    Remote(String),
}

pub struct Channel {
    pub fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel), SyncError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: socketpair returned two fresh fds that we now own.
    Ok(unsafe { (Channel { fd: OwnedFd::from_raw_fd(fds[0]) }, Channel { fd: OwnedFd::from_raw_fd(fds[1]) }) })
}

impl Channel {
    pub fn send(&self, kind: u8, payload: &[u8]) -> Result<(), SyncError> {
        match self.send_with_fd(kind, payload, None) {
            // The other side died: if it left its error message, that is the real cause.
            Err(SyncError::Io(e)) if matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)) => {
                match self.recv() {
                    Err(remote @ SyncError::Remote(_)) => Err(remote),
                    _ => Err(SyncError::Eof),
                }
            }
            r => r,
        }
    }

    pub fn send_with_fd(&self, kind: u8, payload: &[u8], fd: Option<RawFd>) -> Result<(), SyncError> {
        let mut hdr = [0u8; 5];
        hdr[0] = kind;
        hdr[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let iov = [IoSlice::new(&hdr), IoSlice::new(payload)];
        let total = hdr.len() + payload.len();
        let mut sent = 0usize;
        let mut first = true;
        while sent < total {
            let fds;
            let cmsg: Vec<nix::sys::socket::ControlMessage> = match (first, fd.as_ref()) {
                (true, Some(f)) => {
                    fds = [*f];
                    vec![nix::sys::socket::ControlMessage::ScmRights(&fds)]
                }
                _ => Vec::new(),
            };
            // Rebuild the remaining slices after a short write.
            let mut bufs: Vec<IoSlice> = Vec::with_capacity(2);
            let mut skip = sent;
            for s in iov.iter() {
                if skip >= s.len() {
                    skip -= s.len();
                    continue;
                }
                bufs.push(IoSlice::new(&s[skip..]));
                skip = 0;
            }
            let n = nix::sys::socket::sendmsg::<()>(
                self.fd.as_raw_fd(),
                &bufs,
                &cmsg,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(|e| SyncError::Io(e.into()))?;
            sent += n;
            first = false;
        }
        Ok(())
    }

    /// Send a message with plain write(2) calls only (no sendmsg): for the init after its
    /// seccomp filter is loaded, where a profile may notify on sendmsg (runc refuses NOTIFY
    /// only on write). At most 64 bytes of payload.
    pub fn write_plain(&self, kind: u8, payload: &[u8]) -> Result<(), SyncError> {
        let mut buf = [0u8; 69];
        let n = 5 + payload.len();
        if n > buf.len() {
            return Err(SyncError::Io(std::io::Error::from_raw_os_error(libc::EMSGSIZE)));
        }
        buf[0] = kind;
        buf[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        buf[5..n].copy_from_slice(payload);
        let mut sent = 0;
        while sent < n {
            // SAFETY: writes from a live buffer within its length.
            let r = unsafe { libc::write(self.fd.as_raw_fd(), buf[sent..n].as_ptr().cast(), n - sent) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SyncError::Io(e));
            }
            sent += r as usize;
        }
        Ok(())
    }

    fn read_exact(&self, buf: &mut [u8], fd_out: &mut Option<OwnedFd>) -> Result<(), SyncError> {
        let mut got = 0;
        while got < buf.len() {
            let mut cbuf = nix::cmsg_space!([RawFd; 1]);
            let mut iov = [IoSliceMut::new(&mut buf[got..])];
            let msg = nix::sys::socket::recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cbuf),
                nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let msg = match msg {
                Ok(m) => m,
                Err(nix::errno::Errno::EINTR) => continue,
                // The other side died with our last message unread: it is gone all the same.
                Err(nix::errno::Errno::ECONNRESET) => return Err(SyncError::Eof),
                Err(e) => return Err(SyncError::Io(e.into())),
            };
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                        for f in fds {
                            // SAFETY: the kernel installed this fd for us; we take ownership.
                            let owned = unsafe { OwnedFd::from_raw_fd(f) };
                            if fd_out.is_none() {
                                *fd_out = Some(owned);
                            }
                        }
                    }
                }
            }
            if msg.bytes == 0 {
                return Err(SyncError::Eof);
            }
            got += msg.bytes;
        }
        Ok(())
    }

    /// Receive one message: (kind, payload, attached fd).
    pub fn recv(&self) -> Result<(u8, Vec<u8>, Option<OwnedFd>), SyncError> {
        let mut hdr = [0u8; 5];
        let mut fd = None;
        self.read_exact(&mut hdr, &mut fd)?;
        let len = u32::from_le_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
        if len > MAX_MSG {
            return Err(SyncError::Io(std::io::Error::other(format!("message of {len} bytes is too large"))));
        }
        let mut payload = vec![0u8; len];
        self.read_exact(&mut payload, &mut fd)?;
        if hdr[0] == kind::ERROR {
            return Err(SyncError::Remote(String::from_utf8_lossy(&payload).into_owned()));
        }
        Ok((hdr[0], payload, fd))
    }

    pub fn expect(&self, want: u8) -> Result<Vec<u8>, SyncError> {
        let (k, p, _) = self.recv()?;
        if k != want {
            return Err(SyncError::Unexpected { got: k, want });
        }
        Ok(p)
    }
}
