//! OCI hooks: run with the container state JSON on stdin, their own args and env, and a timeout.

use oci_spec::runtime::Hook;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook {path}: start: {err}")]
    Spawn { kind: &'static str, path: String, err: std::io::Error },
    #[error("{kind} hook {path}: {status}{stderr}")]
    Failed { kind: &'static str, path: String, status: String, stderr: String },
    #[error("{kind} hook {path}: timed out after {secs}s")]
    Timeout { kind: &'static str, path: String, secs: i64 },
}

/// Run every hook in order; the first failure stops the sequence.
pub fn run_all(kind: &'static str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<(), HookError> {
    run_all_in(kind, hooks, state_json, None)
}

/// `run_all` with the hooks' working directory `dir` (None: the caller's). runc runs
/// createRuntime hooks in the bundle directory (it changes into it) and createContainer hooks
/// in the rootfs directory (before pivot_root): a relative hook path or a relative file a hook
/// writes resolves there.
pub fn run_all_in(
    kind: &'static str,
    hooks: Option<&Vec<Hook>>,
    state_json: &[u8],
    dir: Option<&std::path::Path>,
) -> Result<(), HookError> {
    let Some(hooks) = hooks else { return Ok(()) };
    for h in hooks {
        run_one(kind, h, state_json, dir)?;
    }
    Ok(())
}

/// Run every hook; a failure is reported as a warning and the next hook still runs (the spec
/// for poststart and poststop).
pub fn run_all_warn(kind: &'static str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) {
    let Some(hooks) = hooks else { return };
    for h in hooks {
        if let Err(e) = run_one(kind, h, state_json, None) {
            crate::logging::warn(&e.to_string());
            eprintln!("berth: warning: {e}");
        }
    }
}

fn run_one(kind: &'static str, h: &Hook, state_json: &[u8], dir: Option<&std::path::Path>) -> Result<(), HookError> {
    let path = h.path().display().to_string();
    // A relative path is a file relative to the working directory, never a PATH lookup (as
    // Go's exec.Cmd takes runc's hook path).
    let prog = if h.path().is_relative() && h.path().components().count() == 1 {
        std::path::Path::new(".").join(h.path())
    } else {
        h.path().clone()
    };
    let mut cmd = Command::new(prog);
    if let Some(args) = h.args() {
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first);
            cmd.args(rest);
        }
    }
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    // As runc (Go's exec.Cmd): `env` set, even empty, is the whole environment; no `env`
    // inherits the runtime's.
    if let Some(env) = h.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|err| HookError::Spawn { kind, path: path.clone(), err })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    // Drain stderr while waiting (a chatty hook must not block on a full pipe), then reap.
    let mut err_buf = Vec::new();
    let deadline = h.timeout().filter(|t| *t > 0).map(|t| (t, Instant::now() + Duration::from_secs(t as u64)));
    if let Some(mut s) = child.stderr.take() {
        use std::os::fd::AsRawFd;
        let mut chunk = [0u8; 4096];
        loop {
            let wait_ms = match deadline {
                Some((_, d)) => d.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32,
                None => -1,
            };
            let mut pfd = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: pfd is a valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            if r == 0 {
                if let Some((secs, _)) = deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HookError::Timeout { kind, path, secs });
                }
            }
            if r < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if err_buf.len() < 64 * 1024 {
                        err_buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(err) => return Err(HookError::Spawn { kind, path, err }),
        }
        if let Some((secs, d)) = deadline {
            if Instant::now() >= d {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { kind, path, secs });
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    if status.success() {
        return Ok(());
    }
    let err_text = String::from_utf8_lossy(&err_buf).trim().replace('\n', "; ");
    Err(HookError::Failed {
        kind,
        path,
        status: status.to_string(),
        stderr: if err_text.is_empty() { String::new() } else { format!(": {err_text}") },
    })
}
