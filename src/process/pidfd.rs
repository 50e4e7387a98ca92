//! Process file descriptors (pidfd_open(2)): a handle on one process that cannot be confused
//! with a later process given the same pid, used to signal it and to wait for its exit.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A pidfd of `pid`; the error when the process is gone (ESRCH) or the kernel has no pidfds.
pub fn open(pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    if pid <= 0 {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: pidfd_open takes a pid and flags; the result is checked before use.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `sig` to the process behind `fd` (pidfd_send_signal(2), no siginfo).
pub fn send_signal(fd: &OwnedFd, sig: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal on a valid pidfd with a null siginfo and no flags.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, std::ptr::null::<u8>(), 0) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits for the process behind `fd` to exit; false when `timeout` (None: forever) runs out
/// first. Interrupted polls are resumed with the time that is left.
pub fn wait(fd: &OwnedFd, timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32,
            None => -1,
        };
        let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return true;
        }
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn waits_for_exit_and_times_out() {
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().expect("spawn sleep");
        let fd = super::open(child.id() as i32).expect("pidfd of a live child");
        assert!(!super::wait(&fd, Some(Duration::from_millis(10))), "a sleeping child has not exited");
        assert!(super::wait(&fd, Some(Duration::from_secs(5))), "the child exits within 5 s");
        let _ = child.wait();
        assert!(super::open(0).is_err());
    }

    #[test]
    fn signals() {
        let mut child = std::process::Command::new("sleep").arg("10").spawn().expect("spawn sleep");
        let fd = super::open(child.id() as i32).expect("pidfd");
        super::send_signal(&fd, libc::SIGKILL).expect("signal");
        assert!(super::wait(&fd, Some(Duration::from_secs(5))));
        let st = child.wait().expect("reap");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
    }
}
