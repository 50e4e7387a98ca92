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
