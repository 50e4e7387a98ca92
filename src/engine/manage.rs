//! Changes to a container that exists: `pause`, `unpause`, `rename` and `update`.

use super::resources::{self, ResourceFlags};
use super::run::{self, State};
use super::store::Containers;
use super::{adapt, opts, Engine, EngineError};
use std::path::Path;

/// File in the container's dir while it is paused (a hint for `ls`; the freezer is the truth).
pub const PAUSED_MARK: &str = "paused";

/// `container pause`: freezes the container's cgroup.
pub fn pause(e: &Engine, cs: &Containers, key: &str) -> Result<(), EngineError> {
    let rec = cs.find(key)?;
    let st = run::status(e, cs, &rec.id);
    if st.state != State::Running {
        return Err(EngineError::Conflict(format!("container {} is not running", rec.id)));
    }
    if st.paused {
        return Err(EngineError::Conflict(format!("container {} is already paused", rec.id)));
    }
    let mark = cs.path(&rec.id).join(PAUSED_MARK);
    std::fs::write(&mark, b"").map_err(|err| EngineError::Io { op: "write", path: mark.clone(), err })?;
    if let Err(err) = adapt::runtime_pause(e, &rec.id) {
        let _ = std::fs::remove_file(&mark);
        return Err(err);
    }
    super::events::container(e, &rec, "pause");
    Ok(())
}

/// `container unpause`: thaws it.
pub fn unpause(e: &Engine, cs: &Containers, key: &str) -> Result<(), EngineError> {
    let rec = cs.find(key)?;
    let st = run::status(e, cs, &rec.id);
    if !st.paused {
        return Err(EngineError::Conflict(format!("container {} is not paused", rec.id)));
    }
    adapt::runtime_resume(e, &rec.id)?;
    let _ = std::fs::remove_file(cs.path(&rec.id).join(PAUSED_MARK));
    super::events::container(e, &rec, "unpause");
    Ok(())
}

/// After a signal to a paused container: thaw it so that the signal is delivered.
pub fn thaw_if_paused(e: &Engine, dir: &Path, id: &str) {
    let mark = dir.join(PAUSED_MARK);
    if mark.exists() {
        let _ = adapt::runtime_resume(e, id);
        let _ = std::fs::remove_file(mark);
    }
}

/// `container rename OLD NEW`.
pub fn rename(e: &Engine, cs: &Containers, key: &str, new: &str) -> Result<(), EngineError> {
    let rec = cs.find(key)?;
    let new = new.strip_prefix('/').unwrap_or(new);
    let new = opts::check_name(new)?;
    if new == rec.name {
        return Err(EngineError::Invalid("Renaming a container with the same name as its current name".into()));
    }
    let _l = cs.lock(&rec.id)?;
    let mut rec = cs.load(&rec.id)?;
    cs.claim_name(&new, &rec.id)?;
    let old = std::mem::replace(&mut rec.name, new.clone());
    if let Err(err) = cs.save(&rec) {
        cs.release_name(&new, &rec.id);
        return Err(err);
    }
    cs.release_name(&old, &rec.id);
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("oldName".to_string(), format!("/{old}"));
    super::events::container_with(e, &rec, "rename", attrs);
    Ok(())
}

/// What `update` may change besides the cgroup resource flags.
pub struct UpdateReq<'a> {
    pub res: &'a ResourceFlags,
    pub memory: Option<&'a str>,
    pub memory_swap: Option<&'a str>,
    pub cpus: Option<&'a str>,
    pub pids_limit: Option<i64>,
    pub restart: Option<&'a str>,
}

/// `container update`: checks everything first, then writes the record and, for a running
/// container, the cgroup.
pub fn update(e: &Engine, cs: &Containers, key: &str, u: &UpdateReq) -> Result<(), EngineError> {
    let rec = cs.find(key)?;
    let _l = cs.lock(&rec.id)?;
    let mut rec = cs.load(&rec.id)?;
    let s = &mut rec.spec;
    s.resources = resources::parse(u.res, &s.resources)?;
    if let Some(m) = u.memory {
        s.memory = Some(opts::parse_size("--memory", m)?).filter(|m| *m != 0);
    }
    if let Some(m) = u.memory_swap {
        s.memory_swap = Some(if m.trim() == "-1" { -1 } else { opts::parse_size("--memory-swap", m)? });
    }
    if let Some(c) = u.cpus {
        let v: f64 = c
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| EngineError::Invalid(format!("invalid --cpus {c:?}")))?;
        s.cpus = Some(v).filter(|v| *v != 0.0);
    }
    if let Some(p) = u.pids_limit {
        s.pids_limit = Some(p);
    }
    if let Some(r) = u.restart {
        opts::check_restart(r)?;
        if s.auto_remove && !matches!(r, "" | "no") {
            return Err(EngineError::Invalid("Restart policy cannot be updated because AutoRemove is enabled".into()));
        }
        s.restart = r.to_string();
    }
    if let (Some(m), Some(sw)) = (s.memory, s.memory_swap) {
        if sw > 0 && sw < m {
            return Err(EngineError::Invalid(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            ));
        }
    }
    if let Some(m) = s.resources.memory_reservation {
        if s.memory.is_some_and(|l| l < m) {
            return Err(EngineError::Invalid(
                "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
            ));
        }
    }
    if run::status(e, cs, &rec.id).state == State::Running {
        let mut r = serde_json::Map::new();
        if let Some(m) = s.memory {
            let swap = match s.memory_swap {
                Some(sw) if sw != 0 => sw,
                _ => m.saturating_mul(2),
            };
            r.insert("memory".into(), serde_json::json!({"limit": m, "swap": swap}));
        }
        if let Some(c) = s.cpus {
            r.insert("cpu".into(), serde_json::json!({"quota": (c * 100_000.0).round() as i64, "period": 100_000}));
        }
        if let Some(p) = s.pids_limit {
            r.insert("pids".into(), serde_json::json!({"limit": if p <= 0 { -1 } else { p }}));
        }
        resources::apply(&s.resources, &mut r);
        // Device rules are set when the container starts, not changed under it.
        r.remove("devices");
        adapt::runtime_update(e, &rec.id, serde_json::Value::Object(r))?;
    }
    cs.save(&rec)?;
    if u.restart.is_some() {
        // The running shim takes it from its next exit; a new shim from the record.
        let p = cs.path(&rec.id).join(crate::shim::RESTART_FILE);
        std::fs::write(&p, &rec.spec.restart).map_err(|err| EngineError::Io { op: "write", path: p, err })?;
    }
    super::events::container(e, &rec, "update");
    Ok(())
}
