//! Other OCI runtimes the engine may run containers with (`run --runtime NAME`), configured
//! as docker's `runtimes`: `<data-root>/runtimes.json` = `{"NAME": {"path": "/usr/bin/runc",
//! "runtimeArgs": []}}`. berth itself is the default and is always there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FILE: &str = "runtimes.json";

#[derive(Debug, Clone, serde::Deserialize)]
pub struct RuntimeConf {
    pub path: PathBuf,
}

/// The configured runtimes (a missing or unreadable file: none).
pub fn configured(data_root: &Path) -> BTreeMap<String, PathBuf> {
    load(data_root).into_iter().map(|(k, v)| (k, v.path)).collect()
}

pub fn load(data_root: &Path) -> BTreeMap<String, RuntimeConf> {
    std::fs::read(data_root.join(FILE)).ok().and_then(|d| serde_json::from_slice(&d).ok()).unwrap_or_default()
}

/// The file in a container's dir naming the runtime it runs with (absent: berth).
pub const MARK: &str = "runtime";

/// (binary, --root) of the other runtime container `id` runs with; None for berth.
pub fn of_container(data_root: &Path, runtime_root: &Path, id: &str) -> Option<(PathBuf, PathBuf)> {
    let name = std::fs::read_to_string(super::store::Containers::new(data_root).path(id).join(MARK)).ok()?;
    let name = name.trim();
    let conf = load(data_root).remove(name)?;
    Some((conf.path, runtime_root.join("runtimes").join(name)))
}

/// Checks `--runtime NAME`: berth, or a configured runtime whose binary exists.
pub fn check(data_root: &Path, name: Option<&str>) -> Result<Option<String>, super::EngineError> {
    let bad = |n: &str| super::EngineError::Invalid(format!("unknown or invalid runtime name: {n}"));
    match name {
        None | Some("") | Some("berth") => Ok(None),
        Some(n) => {
            let conf = load(data_root).remove(n).ok_or_else(|| bad(n))?;
            if !conf.path.is_absolute() || std::fs::metadata(&conf.path).is_err() {
                return Err(super::EngineError::Invalid(format!(
                    "runtime {n}: {} does not exist (see {} in the data root)",
                    conf.path.display(),
                    FILE
                )));
            }
            Ok(Some(n.to_string()))
        }
    }
}
