//! `--init`: the static berth binary, bind-mounted read-only at /sbin/berth-init, runs as the
//! container's pid 1 (`/sbin/berth-init -- CMD...`): it starts CMD, forwards every signal it
//! gets to it, reaps orphaned zombies and exits with CMD's status (128+N when killed by
//! signal N). main() takes this path before any argument parsing when argv[0] ends in
//! "berth-init".

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

/// True when this process was started as the init (argv[0] is ".../berth-init").
pub fn is_init(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0.is_some_and(|a| a.as_bytes().rsplit(|b| *b == b'/').next() == Some(b"berth-init"))
}

fn die(msg: &str, code: i32) -> ! {
    let line = format!("berth-init: {msg}\n");
    // SAFETY: write(2) of a live buffer to stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    std::process::exit(code)
}

/// The init's main; `args` are the arguments after argv[0].
pub fn main(args: Vec<OsString>) -> ! {
    let args: &[OsString] = match args.first() {
        Some(a) if a == "--" => &args[1..],
        _ => &args[..],
    };
    if args.is_empty() {
        die("usage: berth-init [--] COMMAND [ARG...]", 2);
    }
    let cargs: Vec<CString> = match args.iter().map(|a| CString::new(a.as_bytes())).collect() {
        Ok(v) => v,
        Err(_) => die("an argument contains a NUL byte", 2),
    };
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());

    // SAFETY: sigset_t is plain data, initialised by sigfillset/sigemptyset below.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: signal mask calls on live sigset_t values. Blocked signals are queued even for a
    // pid 1 (never dropped as "no handler"), and read with sigwaitinfo below.
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: fork in a single-threaded process.
    let child = unsafe { libc::fork() };
    if child < 0 {
        die(&format!("fork: {}", std::io::Error::last_os_error()), 1);
    }
    if child == 0 {
        // SAFETY: in the child: restore the caller's mask and exec; only async-signal-safe
        // calls (sigprocmask, execvp, write, _exit) until exec.
        unsafe {
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            libc::execvp(argv[0], argv.as_ptr());
            let errno = *libc::__errno_location();
            let msg = format!(
                "berth-init: exec {}: {}\n",
                String::from_utf8_lossy(cargs[0].as_bytes()),
                std::io::Error::from_raw_os_error(errno)
            );
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(if errno == libc::ENOENT { 127 } else { 126 });
        }
    }
    loop {
        // SAFETY: siginfo_t is plain data filled by sigwaitinfo.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits on the (blocked) full set with a live siginfo_t.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(child, sig) };
            continue;
        }
        loop {
            let mut st = 0;
            // SAFETY: reaping our children (and orphans re-parented to us, pid 1).
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                let code = if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else if libc::WIFSIGNALED(st) {
                    128 + libc::WTERMSIG(st)
                } else {
                    continue;
                };
                std::process::exit(code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_its_name() {
        assert!(is_init(Some(std::ffi::OsStr::new("/sbin/berth-init"))));
        assert!(is_init(Some(std::ffi::OsStr::new("berth-init"))));
        assert!(!is_init(Some(std::ffi::OsStr::new("/usr/bin/berth"))));
        assert!(!is_init(None));
    }
}
