//! Commands that act on a container's cgroup: pause, resume, ps, events, update.

use super::state::{ContainerDir, Status};
use super::{Error, Globals};
use oci_spec::runtime::LinuxResources;
use std::io::Write;

/// The container's directory, state and cgroup; `none` is the error (in runc's words) for a
/// container without a cgroup of its own (rootless).
fn cgroup_or(
    g: &Globals,
    id: &str,
    none: impl FnOnce() -> String,
) -> Result<(ContainerDir, super::state::Saved, crate::cgroups::Manager), Error> {
    let dir = ContainerDir::open(&g.root, id)?;
    let saved = dir.load()?;
    let cg = saved.cgroup.clone().ok_or_else(|| Error::Msg(none()))?;
    Ok((dir, saved, cg))
}

/// runc's error when a rootless container without cgroups is paused or resumed.
const NO_FREEZER: &str = "cannot toggle freezer: cgroups not configured for container";

pub fn pause(g: &Globals, id: &str) -> Result<(), Error> {
    let (dir, saved, cg) = cgroup_or(g, id, || NO_FREEZER.into())?;
    match dir.status(&saved) {
        Status::Running | Status::Created => Ok(cg.freeze()?),
        _ => Err(Error::Msg(super::NOT_RUNNING.into())),
    }
}

pub fn resume(g: &Globals, id: &str) -> Result<(), Error> {
    let (dir, saved, cg) = cgroup_or(g, id, || NO_FREEZER.into())?;
    match dir.status(&saved) {
        Status::Paused => Ok(cg.thaw()?),
        _ => Err(Error::Msg("container not paused".into())),
    }
}

/// The pids of the container's processes (its cgroup's, or found through the init).
pub fn pids(g: &Globals, id: &str) -> Result<Vec<i32>, Error> {
    let dir = ContainerDir::open(&g.root, id)?;
    let saved = dir.load()?;
    // As runc: a stopped container lists what is left in its cgroup (usually nothing, and a
    // cgroup already gone is nothing too), not an error.
    let stopped = dir.status(&saved) == Status::Stopped;
    let pids = match &saved.cgroup {
        Some(cg) => match cg.all_pids() {
            Ok(p) => p,
            Err(_) if stopped => Vec::new(),
            Err(e) => return Err(e.into()),
        },
        None if stopped => Vec::new(),
        // No cgroup (rootless): the processes found through the init.
        None => super::pids_without_cgroup(&saved),
    };
    Ok(pids)
}

/// `ps`: the container's host pids, as JSON or through ps(1) with the given options.
pub fn ps(g: &Globals, id: &str, format: &str, ps_args: &[String]) -> Result<(), Error> {
    let pids = pids(g, id)?;
    let mut out = std::io::stdout().lock();
    match format {
        // runc encodes an empty list as null.
        "json" if pids.is_empty() => {
            let _ = writeln!(out, "null");
            Ok(())
        }
        "json" => {
            let _ = writeln!(out, "{}", serde_json::to_string(&pids).unwrap_or_default());
            Ok(())
        }
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
            let o = std::process::Command::new("ps").args(&args).output().map_err(|e| super::sys("run ps", e))?;
            if !o.status.success() {
                return Err(Error::Msg(format!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
            let text = String::from_utf8_lossy(&o.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let pid_col = header
                .split_whitespace()
                .position(|c| c == "PID")
                .ok_or_else(|| Error::Msg("ps output has no PID column".into()))?;
            let _ = writeln!(out, "{header}");
            for l in lines {
                let pid: Option<i32> = l.split_whitespace().nth(pid_col).and_then(|p| p.parse().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    let _ = writeln!(out, "{l}");
                }
            }
            Ok(())
        }
        other => Err(Error::Msg(format!("unknown ps format {other:?} (table or json)"))),
    }
}

/// `events`: one stats JSON with `--stats`, else a stream: stats every `interval` and, as
/// runc does, `{"type":"oom","id":ID}` whenever the container hits its memory limit.
pub fn events(g: &Globals, id: &str, stats: bool, interval: std::time::Duration) -> Result<(), Error> {
    use crate::cgroups::stats::{Event, Stats};
    use crate::cgroups::OomEvent;
    use std::time::Instant;
    let print = |kind: &str, data: Option<Stats>| {
        let ev = Event { kind: kind.into(), id: id.into(), data };
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(&ev) {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    };
    // Without a memory controller there are no OOM notifications; stats still come.
    let mut oom = None;
    let mut first = true;
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            let dir = ContainerDir::open(&g.root, id)?;
            let saved = dir.load()?;
            if dir.status(&saved) == Status::Stopped {
                return Err(Error::Msg(super::NOT_RUNNING.into()));
            }
            drop(dir);
            // A container without a cgroup of its own (rootless on v1) has zeroed stats and
            // no OOM notifications, as with runc.
            if first && !stats {
                oom = saved.cgroup.as_ref().and_then(|cg| cg.oom_watcher().ok());
            }
            first = false;
            let data = match &saved.cgroup {
                Some(cg) => cg.stats()?,
                None => Stats::default(),
            };
            print("stats", Some(data));
            if stats {
                return Ok(());
            }
            next = Instant::now() + interval;
        }
        let left = next.saturating_duration_since(Instant::now());
        match oom.as_mut().map(|w| w.poll_event(left)) {
            None => std::thread::sleep(left),
            Some(Ok(Some(OomEvent::Oom))) => print("oom", None),
            Some(Ok(None)) => {}
            // The cgroup is gone or unwatchable: stats go on; the next round tells why.
            Some(Ok(Some(OomEvent::Gone))) | Some(Err(_)) => oom = None,
        }
    }
}

pub fn update(g: &Globals, id: &str, r: &LinuxResources) -> Result<(), Error> {
    let none = || match crate::cgroups::first_controller(r) {
        Some(c) => format!("cannot set {c} limit: container could not join or create cgroup"),
        None => format!("container {id} has no cgroup"),
    };
    let (dir, saved, cg) = cgroup_or(g, id, none)?;
    if dir.status(&saved) == Status::Stopped {
        return Err(Error::Msg(super::NOT_RUNNING.into()));
    }
    Ok(cg.update(r)?)
}
