//! A terminal held by berth itself, as runc does: attached `run` with process.terminal and no
//! --console-socket, and `exec -t` without one. berth listens on a private console socket
//! under --root, passes its path as the console socket, takes the pty master the init sends
//! there, and relays between its own stdin/stdout and the master until the process exits. When
//! stdin is a terminal it is put in raw mode (restored afterwards); the caller's window size is
//! copied to the pty at start and on every SIGWINCH; SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1
//! and SIGUSR2 sent to berth are forwarded to the process.
//!
//! Wiring: `run` (attached, no console socket, config asks for a terminal) and `exec` (tty, not
//! detached, no console socket) call [`TtyRelay::listen`], use [`TtyRelay::path`] as the console
//! socket, then [`TtyRelay::receive_master`] once the init has sent the master (create has
//! returned / the exec'd process is running), and [`TtyRelay::relay`] instead of waiting for
//! the process.

use super::{sys, Error};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for the init to hand over the pty master.
const MASTER_TIMEOUT: Duration = Duration::from_secs(10);
/// After the process exited, how long to wait for more output from processes that still hold
/// the pty (the pty buffer itself is drained whatever this is).
const DRAIN_GRACE_MS: i32 = 50;

/// Signals berth handles while relaying (blocked and read from a signalfd). The process's exit
/// is seen on a pidfd, not through SIGCHLD.
const SIGNALS: [libc::c_int; 7] =
    [libc::SIGWINCH, libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// True when `bundle/config.json` asks for a terminal. Only process.terminal is decoded; any
/// read or parse problem gives false (create then reports it properly).
pub fn wants_terminal(bundle: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct P {
        terminal: Option<bool>,
    }
    #[derive(serde::Deserialize)]
    struct C {
        process: Option<P>,
    }
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<C>(&d).ok())
        .and_then(|c| c.process)
        .and_then(|p| p.terminal)
        .unwrap_or(false)
}

/// The caller's window size (rows, cols), from stdin or else stdout when it is a terminal.
pub fn caller_size() -> Option<(u16, u16)> {
    let ws = caller_winsize()?;
    Some((ws.ws_row, ws.ws_col))
}

fn caller_winsize() -> Option<libc::winsize> {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        // SAFETY: winsize is plain data; TIOCGWINSZ fills it or fails (e.g. ENOTTY).
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: ioctl with a pointer to a live winsize.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some(ws);
        }
    }
    None
}

/// Copy the caller's window size to the pty master (nothing when the caller has no terminal).
fn copy_size(master: RawFd) {
    if let Some(ws) = caller_winsize() {
        // SAFETY: TIOCSWINSZ reads a live winsize; a failure only leaves the old size.
        unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
    }
}

pub struct TtyRelay {
    listener: UnixListener,
    path: PathBuf,
    master: Option<OwnedFd>,
}

impl TtyRelay {
    /// Listen on `<aux dir>/tty-<pid>.sock` (see `container::aux_dir`: never under the state
    /// root). Mode 0600; only a connection made by this process itself is accepted in
    /// [`TtyRelay::receive_master`].
    pub fn listen() -> Result<TtyRelay, Error> {
        let dir = super::aux_dir();
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| sys(format!("create {}", dir.display()), e))?;
        }
        let path = dir.join(format!("tty-{}.sock", std::process::id()));
        // A leftover of a killed berth that had our pid: nothing can be using it.
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(|e| sys(format!("listen on console socket {}", path.display()), e))?;
        let relay = TtyRelay { listener, path, master: None };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&relay.path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| sys(format!("chmod console socket {}", relay.path.display()), e))?;
        Ok(relay)
    }

    /// The console socket path to pass to create / the exec'd process.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the pty master the init sent over the console socket, and remove the socket file.
    pub fn receive_master(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + MASTER_TIMEOUT;
        let fail = |what: &str, e: std::io::Error| sys(format!("{what} on console socket {}", self.path.display()), e);
        self.listener.set_nonblocking(true).map_err(|e| fail("set non-blocking", e))?;
        let me = std::process::id() as libc::pid_t;
        let stream = loop {
            match self.listener.accept() {
                // The console socket was connected by this very process (create / exec).
                Ok((s, _)) if peer_pid(&s) == Some(me) => break s,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Msg(format!(
                            "terminal: no pty master received on {} in {}s",
                            self.path.display(),
                            MASTER_TIMEOUT.as_secs()
                        )));
                    }
                    wait_readable(self.listener.as_raw_fd(), left.as_millis().min(1000) as i32);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail("accept", e)),
            }
        };
        stream.set_nonblocking(false).map_err(|e| fail("set blocking", e))?;
        stream.set_read_timeout(Some(MASTER_TIMEOUT)).map_err(|e| fail("set timeout", e))?;
        let master = recv_fd(&stream).map_err(|e| fail("receive pty master", e))?;
        let _ = std::fs::remove_file(&self.path);
        self.master = Some(master);
        Ok(())
    }

    /// Copy the caller's window size to the pty now (before the process starts).
    pub fn sync_size(&self) {
        if let Some(m) = &self.master {
            copy_size(m.as_raw_fd());
        }
    }

    /// Relay between stdin/stdout and the pty until `pid` (a child of this process) exits, and
    /// return its exit code (128+signal when killed), like `wait_forwarding`.
    pub fn relay(mut self, pid: libc::pid_t) -> i32 {
        let _ = std::fs::remove_file(&self.path);
        let Some(master) = self.master.take() else {
            return super::wait_forwarding(pid);
        };
        let raw = crate::process::tty::RawMode::enter(libc::STDIN_FILENO);
        match relay_loop(master.as_raw_fd(), pid, libc::STDIN_FILENO, libc::STDOUT_FILENO) {
            Ok(code) => code,
            Err(_) => {
                drop(raw);
                super::wait_forwarding(pid)
            }
        }
    }
}

impl Drop for TtyRelay {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn peer_pid(s: &UnixStream) -> Option<libc::pid_t> {
    // SAFETY: ucred is plain data.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(SO_PEERCRED) writes at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.pid)
}

fn wait_readable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Receive one message carrying an fd (the init sends "/dev/ptmx" with the master).
fn recv_fd(s: &UnixStream) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 2]);
    let msg = loop {
        match recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.map_err(std::io::Error::from)?,
        }
    };
    let mut got = None;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
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
    got.ok_or_else(|| std::io::Error::other("no file descriptor in the message"))
}

/// Restores the signal mask on drop.
struct MaskGuard(libc::sigset_t);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        // SAFETY: sets back the mask saved when blocking.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// waitpid(WNOHANG): the exit code once `pid` has ended.
fn reap(pid: libc::pid_t) -> std::io::Result<Option<i32>> {
    let mut st = 0;
    // SAFETY: waitpid on our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if r == pid {
        if libc::WIFEXITED(st) {
            return Ok(Some(libc::WEXITSTATUS(st)));
        }
        if libc::WIFSIGNALED(st) {
            return Ok(Some(128 + libc::WTERMSIG(st)));
        }
        return Ok(None);
    }
    if r < 0 && errno() != libc::EINTR {
        return Err(std::io::Error::last_os_error());
    }
    Ok(None)
}

/// read(2) that reports EINTR as "nothing yet".
fn read_fd(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: reading into a valid buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = errno();
        return Err(if e == libc::EINTR { libc::EAGAIN } else { e });
    }
    Ok(n as usize)
}

/// Write all of `data` to `out`; false when it is gone (the output is then dropped).
fn write_all(out: RawFd, data: &[u8]) -> bool {
    let mut off = 0;
    while off < data.len() {
        // SAFETY: writing from a valid buffer.
        let n = unsafe { libc::write(out, data[off..].as_ptr().cast(), data.len() - off) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        off += n as usize;
    }
    true
}

/// Copy `input` to the master and the master to `output` until `pid` exits.
fn relay_loop(master: RawFd, pid: libc::pid_t, input: RawFd, output: RawFd) -> std::io::Result<i32> {
    // SAFETY: sigset_t is plain data initialized by sigemptyset; the calls only touch these
    // sets and the thread's mask.
    let (set, old) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        (set, old)
    };
    let _mask = MaskGuard(old);
    // SAFETY: signalfd on a valid set; the result is checked and then owned.
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if sfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned by nobody else.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    // SAFETY: fcntl on the valid master fd.
    unsafe {
        let fl = libc::fcntl(master, libc::F_GETFL);
        libc::fcntl(master, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }

    // Our own child, not yet reaped: the pid is still its.
    let pidfd = crate::process::pidfd::open(pid).ok();
    // Without a pidfd (old kernel) the exit is polled for.
    let timeout = if pidfd.is_some() { -1 } else { 100 };

    let mut buf = vec![0u8; 16384];
    let mut to_master: Vec<u8> = Vec::new();
    let mut stdin_open = true;
    let mut master_open = true;
    let mut stdout_ok = true;
    loop {
        if let Some(code) = reap(pid)? {
            if master_open {
                drain(master, &mut buf, output, stdout_ok);
            }
            return Ok(code);
        }
        let mut fds = [
            libc::pollfd { fd: sfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd {
                fd: if master_open { master } else { -1 },
                events: libc::POLLIN | if to_master.is_empty() { 0 } else { libc::POLLOUT },
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open && to_master.is_empty() { input } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd { fd: pidfd.as_ref().map_or(-1, |p| p.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: poll on an array of valid pollfds (negative fds are ignored).
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) } < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(std::io::Error::last_os_error());
        }
        if fds[0].revents & libc::POLLIN != 0 {
            handle_signals(sfd.as_raw_fd(), master, pid);
        }
        let mrev = fds[1].revents;
        if mrev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match read_fd(master, &mut buf) {
                Ok(0) => master_open = false,
                Ok(n) => stdout_ok = stdout_ok && write_all(output, &buf[..n]),
                Err(libc::EAGAIN) => {}
                // EIO: every holder of the pty's other end closed it.
                Err(_) => master_open = false,
            }
        }
        if master_open && mrev & libc::POLLOUT != 0 && !to_master.is_empty() {
            // SAFETY: writing from a valid buffer to the master.
            let n = unsafe { libc::write(master, to_master.as_ptr().cast(), to_master.len()) };
            if n > 0 {
                to_master.drain(..n as usize);
            } else if n < 0 && !matches!(errno(), libc::EAGAIN | libc::EINTR) {
                to_master.clear();
            }
        }
        if !master_open {
            to_master.clear();
        }
        if fds[2].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match read_fd(input, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    if master_open {
                        to_master.extend_from_slice(&buf[..n]);
                    }
                }
                Err(libc::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
    }
}

fn handle_signals(sfd: RawFd, master: RawFd, pid: libc::pid_t) {
    loop {
        // SAFETY: signalfd_siginfo is plain data filled by read.
        let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reading one signalfd_siginfo into a live struct of that size.
        let n = unsafe { libc::read(sfd, (&mut si as *mut libc::signalfd_siginfo).cast(), size) };
        if n != size as isize {
            return;
        }
        match si.ssi_signo as libc::c_int {
            libc::SIGWINCH => copy_size(master),
            // SAFETY: forwarding a signal to our own child.
            sig => unsafe {
                libc::kill(pid, sig);
            },
        }
    }
}

/// After the process exited: copy what is left in the pty, then a little more while some
/// other process of the container still writes to it.
fn drain(master: RawFd, buf: &mut [u8], output: RawFd, mut stdout_ok: bool) {
    loop {
        match read_fd(master, buf) {
            Ok(0) => return,
            Ok(n) => stdout_ok = stdout_ok && write_all(output, &buf[..n]),
            Err(libc::EAGAIN) => {
                if !wait_readable(master, DRAIN_GRACE_MS) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_terminal_reads_only_the_flag() {
        let d = std::env::temp_dir().join(format!("berth-ttyrelay-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let cfg = d.join("config.json");
        std::fs::write(&cfg, r#"{"ociVersion":"1.0.2","process":{"terminal":true,"args":["sh"]},"x":[1,2]}"#).unwrap();
        assert!(wants_terminal(&d));
        std::fs::write(&cfg, r#"{"process":{"terminal":false}}"#).unwrap();
        assert!(!wants_terminal(&d));
        std::fs::write(&cfg, r#"{"root":{"path":"rootfs"}}"#).unwrap();
        assert!(!wants_terminal(&d));
        std::fs::write(&cfg, "not json").unwrap();
        assert!(!wants_terminal(&d));
        std::fs::remove_dir_all(&d).unwrap();
        assert!(!wants_terminal(&d));
    }

    #[test]
    fn relay_copies_both_ways_and_returns_exit_code() {
        // A pty pair; the child reads a line from the slave, echoes it back with a prefix and
        // exits 3. The relay's input is a pipe holding "ping\n", its output another pipe.
        // SAFETY: plain libc calls on fds made here; the forked child only uses
        // async-signal-safe calls and _exits.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(m >= 0);
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let name = std::ffi::CStr::from_ptr(libc::ptsname(m)).to_owned();
            let (mut inp, mut out) = ([0; 2], [0; 2]);
            assert_eq!(libc::pipe(inp.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(out.as_mut_ptr()), 0);
            libc::write(inp[1], b"ping\n".as_ptr().cast(), 5);
            libc::close(inp[1]);
            // No echo, set before the relay can write anything.
            let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
            assert!(s >= 0);
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(s, &mut t), 0);
            t.c_lflag &= !libc::ECHO;
            assert_eq!(libc::tcsetattr(s, libc::TCSANOW, &t), 0);
            let pid = libc::fork();
            if pid == 0 {
                let mut b = [0u8; 64];
                let n = libc::read(s, b.as_mut_ptr().cast(), b.len());
                libc::write(s, b"got:".as_ptr().cast(), 4);
                libc::write(s, b.as_ptr().cast(), n.max(0) as usize);
                libc::_exit(3);
            }
            libc::close(s);
            let code = relay_loop(m, pid, inp[0], out[1]).unwrap();
            libc::close(out[1]);
            let mut got = Vec::new();
            let mut b = [0u8; 256];
            loop {
                let n = libc::read(out[0], b.as_mut_ptr().cast(), b.len());
                if n <= 0 {
                    break;
                }
                got.extend_from_slice(&b[..n as usize]);
            }
            assert_eq!(code, 3);
            assert_eq!(String::from_utf8_lossy(&got), "got:ping\r\n");
            for fd in [m, inp[0], out[0]] {
                libc::close(fd);
            }
        }
    }
}
