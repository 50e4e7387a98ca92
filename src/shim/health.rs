//! Health checks, run by a small helper of the shim (`berth shim health ...`, the shim's child,
//! killed with it): while the container runs, it executes the check inside the container
//! through the runtime (`exec`) at the configured interval, and keeps docker's state
//! (`starting`, `healthy`, `unhealthy`, the failing streak and the last 5 results) in
//! `health.json` in the container's state dir, atomically rewritten. A new container process
//! (a restart) starts over at `starting`. Status changes go to the engine's event journal as
//! `health_status: STATE`.

use super::{read_state, shim_alive, Status};
use crate::image::types::Healthcheck;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const HEALTH_FILE: &str = "health.json";
/// docker's defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: i64 = 3;
/// docker keeps this many results and this much output of each.
const KEEP_RESULTS: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// One check's result (docker's `State.Health.Log[]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    #[serde(rename = "Start")]
    pub start: String,
    #[serde(rename = "End")]
    pub end: String,
    #[serde(rename = "ExitCode")]
    pub exit_code: i64,
    #[serde(rename = "Output")]
    pub output: String,
}

/// docker's `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "FailingStreak")]
    pub failing_streak: i64,
    #[serde(rename = "Log")]
    pub log: Vec<Probe>,
}

pub fn read_health(state_dir: &Path) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(state_dir.join(HEALTH_FILE)).ok()?).ok()
}

fn write_health(state_dir: &Path, h: &Health) {
    let tmp = state_dir.join(".health.json.tmp");
    if let Ok(d) = serde_json::to_vec(h) {
        if std::fs::write(&tmp, d).is_ok() {
            let _ = std::fs::rename(&tmp, state_dir.join(HEALTH_FILE));
        }
    }
}

fn dur(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

/// The process a check runs: `CMD-SHELL c` is `/bin/sh -c c`, `CMD a b` is `a b`; None when
/// checks are off (`NONE`, or nothing).
pub fn probe_args(h: &Healthcheck) -> Option<Vec<String>> {
    match h.test.split_first() {
        Some((k, rest)) if k == "CMD-SHELL" && !rest.is_empty() => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        Some((k, rest)) if k == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        _ => None,
    }
}

/// What the helper is told.
pub struct Monitor {
    pub state_dir: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub id: String,
    pub check: Healthcheck,
    /// The engine's event journal and the container's event attributes.
    pub events: Option<PathBuf>,
    pub attrs: BTreeMap<String, String>,
}

impl Monitor {
    /// Runs until the shim is gone.
    pub fn run(&self) {
        let Some(args) = probe_args(&self.check) else { return };
        let interval = dur(self.check.interval, DEFAULT_INTERVAL);
        let timeout = dur(self.check.timeout, DEFAULT_TIMEOUT);
        let start_period = dur(self.check.start_period, Duration::ZERO);
        let start_interval = dur(self.check.start_interval, DEFAULT_START_INTERVAL);
        let retries = if self.check.retries > 0 { self.check.retries } else { DEFAULT_RETRIES };
        let mut pid = 0;
        let mut started = Instant::now();
        let mut h = Health::default();
        let mut next = Instant::now();
        loop {
            let Ok(st) = read_state(&self.state_dir) else { return };
            if !shim_alive(&st) {
                return;
            }
            if st.status != Status::Running || st.container_pid <= 0 {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            if st.container_pid != pid {
                // A new container process: checks start over.
                pid = st.container_pid;
                started = Instant::now();
                h = Health { status: "starting".into(), ..Default::default() };
                write_health(&self.state_dir, &h);
                let in_start = start_period > Duration::ZERO;
                next = started + if in_start { start_interval } else { interval };
            }
            let now = Instant::now();
            if now < next {
                std::thread::sleep((next - now).min(Duration::from_millis(200)));
                continue;
            }
            let probe = self.probe(&args, timeout);
            // The container may have stopped meanwhile: a failed exec then means nothing.
            match read_state(&self.state_dir) {
                Ok(s) if s.status == Status::Running && s.container_pid == pid => {}
                _ => continue,
            }
            let in_start_period = started.elapsed() < start_period;
            let before = h.status.clone();
            if probe.exit_code == 0 {
                h.status = "healthy".into();
                h.failing_streak = 0;
            } else if !(in_start_period && h.status == "starting") {
                // Failures in the start period do not count (until a first success).
                h.failing_streak += 1;
                if h.failing_streak >= retries {
                    h.status = "unhealthy".into();
                }
            }
            h.log.push(probe);
            if h.log.len() > KEEP_RESULTS {
                h.log.remove(0);
            }
            write_health(&self.state_dir, &h);
            if h.status != before {
                self.event(&h.status);
            }
            let in_start = h.status == "starting" && started.elapsed() < start_period;
            next = Instant::now() + if in_start { start_interval } else { interval };
        }
    }

    fn event(&self, status: &str) {
        if let Some(j) = &self.events {
            let ev = crate::events::Event::new(
                "container",
                &format!("health_status: {status}"),
                &self.id,
                self.attrs.clone(),
            );
            let _ = crate::events::Journal::at(j).append(&ev);
        }
    }

    /// One check: `runtime exec` with the output captured, killed after `timeout`.
    fn probe(&self, args: &[String], timeout: Duration) -> Probe {
        let start = super::now_rfc3339();
        let mut c = Command::new(&self.runtime);
        c.arg("--root").arg(&self.runtime_root).arg("exec").arg(&self.id).args(args);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).current_dir("/");
        let mut child = match c.spawn() {
            Ok(ch) => ch,
            Err(e) => {
                return Probe { start, end: super::now_rfc3339(), exit_code: -1, output: format!("exec: {e}") };
            }
        };
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_end(&mut b);
            }
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_end(&mut b);
            }
            b
        });
        let deadline = Instant::now() + timeout;
        let code = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s.code().map(i64::from).unwrap_or(-1),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = reader.join();
                    return Probe {
                        start,
                        end: super::now_rfc3339(),
                        exit_code: -1,
                        output: format!("Health check exceeded timeout ({}s)", timeout.as_secs_f64()),
                    };
                }
            }
        };
        let mut out = reader.join().unwrap_or_default();
        out.truncate(MAX_OUTPUT);
        Probe { start, end: super::now_rfc3339(), exit_code: code, output: String::from_utf8_lossy(&out).into_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_forms() {
        let h = |t: &[&str]| Healthcheck { test: t.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        assert_eq!(probe_args(&h(&["CMD-SHELL", "test -f /x"])).unwrap(), vec!["/bin/sh", "-c", "test -f /x"]);
        assert_eq!(probe_args(&h(&["CMD", "true"])).unwrap(), vec!["true"]);
        assert!(probe_args(&h(&["NONE"])).is_none());
        assert!(probe_args(&h(&[])).is_none());
    }
}
