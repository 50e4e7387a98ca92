//! The attach client: relays the caller's stdin/stdout/stderr to a shim's attach socket and
//! returns the container's exit code. With a tty the caller's terminal is put in raw mode and
//! its size follows SIGWINCH; SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 received
//! by the caller are forwarded to the container (docker's sig-proxy).

use super::{proto, read_state, shim_alive, sys, ShimError, Status};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

const SIGNALS: [libc::c_int; 7] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

/// Attaches to the container whose shim keeps its state in `state_dir`; returns its exit code
/// (at once when it has already exited). `stdin`: send our stdin (its end closes the
/// container's stdin); `tty`: the container has a terminal.
pub fn attach(state_dir: &Path, stdin: bool, tty: bool, sig_proxy: bool) -> Result<i32, ShimError> {
    attach_with(state_dir, stdin, tty, sig_proxy, None).map(|e| match e {
        RelayEnd::Exit(c) => c,
        RelayEnd::Detached => 0,
    })
}

/// [`attach`], ending early at the detach keys typed on stdin.
pub fn attach_with(
    state_dir: &Path,
    stdin: bool,
    tty: bool,
    sig_proxy: bool,
    detach_keys: Option<&[u8]>,
) -> Result<RelayEnd, ShimError> {
    let path = super::attach_sock(state_dir);
    let sock = match sys::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            let st = read_state(state_dir)?;
            if st.status == Status::Exited {
                return Ok(RelayEnd::Exit(st.exit_code.unwrap_or(255)));
            }
            if !shim_alive(&st) {
                return Err(ShimError::Msg(format!(
                    "cannot attach: the shim of the container (pid {}) is not running",
                    st.shim_pid
                )));
            }
            return Err(ShimError::Io { op: "connect to", path, err: e });
        }
    };
    relay_with(sock, stdin, tty, Some(state_dir), sig_proxy, detach_keys)
}

struct MaskGuard(libc::sigset_t);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        sys::restore_mask(&self.0);
    }
}

fn send(sock: &UnixStream, typ: u8, p: &[u8]) -> bool {
    sys::write_all(sock.as_raw_fd(), &proto::frame(typ, p))
}

fn send_size(sock: &UnixStream) {
    if let Some((r, c)) = sys::get_winsize(0).or_else(|| sys::get_winsize(1)) {
        let mut p = [0u8; 4];
        p[..2].copy_from_slice(&r.to_be_bytes());
        p[2..].copy_from_slice(&c.to_be_bytes());
        send(sock, proto::RESIZE, &p);
    }
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The container exited with this code.
    Exit(i32),
    /// The caller typed the detach keys: the container goes on.
    Detached,
}

/// docker's `--detach-keys` ("ctrl-p,ctrl-q", "a,ctrl-@"): the bytes of the sequence.
pub fn parse_detach_keys(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let b = c.as_bytes()[0].to_ascii_lowercase();
                out.push(match b {
                    b'a'..=b'z' => b - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => return None,
                });
            }
            None if k.len() == 1 => out.push(k.as_bytes()[0]),
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Relays over an attach connection (from [`attach`] or [`super::spawn_attached`]) until the
/// exit frame; returns the exit code. `state_dir` gives the code if the connection is lost.
pub fn relay(
    sock: UnixStream,
    stdin: bool,
    tty: bool,
    state_dir: Option<&Path>,
    sig_proxy: bool,
) -> Result<i32, ShimError> {
    relay_with(sock, stdin, tty, state_dir, sig_proxy, None).map(|e| match e {
        RelayEnd::Exit(c) => c,
        RelayEnd::Detached => 0,
    })
}

/// [`relay`], ending early (the container goes on) when the caller types `detach_keys` on
/// stdin; bytes that only start the sequence are held back until it is clear.
pub fn relay_with(
    sock: UnixStream,
    stdin: bool,
    tty: bool,
    state_dir: Option<&Path>,
    sig_proxy: bool,
    detach_keys: Option<&[u8]>,
) -> Result<RelayEnd, ShimError> {
    let mut held: Vec<u8> = Vec::new();
    // Without the proxy only SIGWINCH is taken: the others keep their default action here.
    let sigs: &[libc::c_int] = if sig_proxy { &SIGNALS } else { &[libc::SIGWINCH] };
    let (sigfd, old) = sys::signalfd(sigs).map_err(|e| ShimError::Msg(format!("signalfd: {e}")))?;
    let _mask = MaskGuard(old);
    let _raw = if tty && stdin { berth::RawMode::enter(0) } else { None };
    let _ = sock.set_nonblocking(false);
    if tty {
        send_size(&sock);
    }
    let mut stdin_open = stdin;
    let mut stdout_ok = true;
    let mut stderr_ok = true;
    let mut rbuf: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let mut p = [
            libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if stdin_open { 0 } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: sigfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        if sys::poll(&mut p, -1) == 0 {
            continue;
        }
        let readable = |r: i16| r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        if readable(p[2].revents) {
            while let Some(sig) = sys::next_signal(sigfd.as_raw_fd()) {
                if sig == libc::SIGWINCH {
                    if tty {
                        send_size(&sock);
                    }
                } else {
                    send(&sock, proto::SIGNAL, &sig.to_be_bytes());
                }
            }
        }
        if readable(p[1].revents) {
            match sys::read(0, &mut buf) {
                Ok(0) => {
                    stdin_open = false;
                    send(&sock, proto::STDIN, b"");
                }
                Ok(n) => {
                    let data: Vec<u8> = match detach_keys {
                        Some(keys) => {
                            let mut pass = Vec::with_capacity(n);
                            for &b in &buf[..n] {
                                held.push(b);
                                if keys.starts_with(&held) {
                                    if held.len() == keys.len() {
                                        return Ok(RelayEnd::Detached);
                                    }
                                } else {
                                    pass.append(&mut held);
                                }
                            }
                            pass
                        }
                        None => buf[..n].to_vec(),
                    };
                    if !data.is_empty() && !send(&sock, proto::STDIN, &data) {
                        stdin_open = false;
                    }
                }
                Err(libc::EAGAIN) => {}
                Err(_) => {
                    stdin_open = false;
                    send(&sock, proto::STDIN, b"");
                }
            }
        }
        if readable(p[0].revents) {
            let n = match sys::read(sock.as_raw_fd(), &mut buf) {
                Ok(n) => n,
                Err(libc::EAGAIN) => continue,
                Err(_) => 0,
            };
            if n == 0 {
                return lost(state_dir).map(RelayEnd::Exit);
            }
            rbuf.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let proto::Next::Frame(t, r) = proto::next(&rbuf[start..]) {
                let data = &rbuf[start + r.start..start + r.end];
                match t {
                    proto::STDOUT if stdout_ok => stdout_ok = sys::write_all(1, data),
                    proto::STDERR if stderr_ok => stderr_ok = sys::write_all(2, data),
                    proto::EXIT => return Ok(RelayEnd::Exit(proto::be_i32(data).unwrap_or(255))),
                    _ => {}
                }
                start += r.end;
            }
            if let proto::Next::TooBig = proto::next(&rbuf[start..]) {
                return Err(ShimError::Msg("attach: malformed frame from the shim".into()));
            }
            rbuf.drain(..start);
        }
    }
}

/// The connection ended without an exit frame: the exit code from the shim's state, if it
/// says the container exited (the shim may still be writing it).
fn lost(state_dir: Option<&Path>) -> Result<i32, ShimError> {
    if let Some(dir) = state_dir {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match read_state(dir) {
                Ok(st) if st.status == Status::Exited => return Ok(st.exit_code.unwrap_or(255)),
                Ok(st) if !shim_alive(&st) => break,
                _ => {}
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Err(ShimError::Msg("attach: the connection to the shim was lost before the container exited".into()))
}

#[cfg(test)]
mod detach_tests {
    #[test]
    fn keys() {
        assert_eq!(super::parse_detach_keys("ctrl-p,ctrl-q"), Some(vec![16, 17]));
        assert_eq!(super::parse_detach_keys("a,ctrl-@"), Some(vec![b'a', 0]));
        assert_eq!(super::parse_detach_keys("ctrl-pq"), None);
        assert_eq!(super::parse_detach_keys(""), None);
    }
}
