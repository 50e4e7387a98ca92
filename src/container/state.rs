//! Container state on disk: one directory per container under --root, holding state.json,
//! the exec fifo while the container is created, and a lock serializing commands on the id.

use crate::cgroups;
use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";
pub const EXEC_ERR: &str = "exec.err";
/// The cgroup of a container whose create has not saved its state yet: what `delete` removes
/// when a create died half-way (its init may already be in that cgroup).
pub const CGROUP_FILE: &str = "cgroup.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id {0:?}: use 1 to 1024 characters of [A-Za-z0-9_.+-], not . or ..")]
    InvalidId(String),
    /// runc's words, without the id: containerd matches "does not exist".
    #[error("container does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("{op} {path}: {err}")]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
    #[error("read state of container {id}: {err}")]
    Corrupt { id: String, err: serde_json::Error },
}

fn io(op: &'static str, path: &Path, err: std::io::Error) -> StateError {
    StateError::Io { op, path: path.to_path_buf(), err }
}

pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

/// What berth keeps about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` (field 22 of /proc/PID/stat), to detect a reused pid.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub cgroup: Option<cgroups::Manager>,
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// The config has a process to start.
    #[serde(default)]
    pub has_process: bool,
    /// The init has its own pid namespace (kill --all and delete can rely on pid 1 dying).
    #[serde(default)]
    pub own_pidns: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The runtime-spec state JSON.
#[derive(Debug, Serialize)]
pub struct SpecState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    pub pid: i32,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
}

fn is_zero(p: &i32) -> bool {
    *p == 0
}

impl Saved {
    pub fn spec_state(&self, status: Status) -> SpecState<'_> {
        SpecState {
            oci_version: &self.oci_version,
            id: &self.id,
            status: status.as_str(),
            pid: if status == Status::Stopped { 0 } else { self.pid },
            bundle: &self.bundle,
            annotations: &self.annotations,
        }
    }

    pub fn spec_state_json(&self, status: Status) -> Vec<u8> {
        serde_json::to_vec(&self.spec_state(status)).unwrap_or_default()
    }
}

/// Start time of a process, or None when it is gone or a zombie.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split(' ');
    let state = it.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // rest starts at field 3; starttime is field 22.
    it.nth(22 - 4)?.parse().ok()
}

/// A container's directory, locked for the lifetime of this value.
pub struct ContainerDir {
    pub id: String,
    pub dir: PathBuf,
    _lock: File,
}

fn lock(dir: &Path) -> Result<File, StateError> {
    let f = File::open(dir).map_err(|e| io("open", dir, e))?;
    // SAFETY: flock on a valid fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io("lock", dir, std::io::Error::last_os_error()));
    }
    Ok(f)
}

impl ContainerDir {
    /// Make the directory of a new container; fails when the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<ContainerDir, StateError> {
        validate_id(id)?;
        if let Err(e) = std::fs::create_dir(root) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                std::fs::create_dir_all(root).map_err(|e| io("create state root", root, e))?;
            }
        }
        let dir = root.join(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(StateError::Exists(id.into())),
            Err(e) => return Err(io("create state dir", &dir, e)),
        }
        let l = lock(&dir)?;
        Ok(ContainerDir { id: id.into(), dir, _lock: l })
    }

    /// Open and lock an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<ContainerDir, StateError> {
        validate_id(id)?;
        let dir = root.join(id);
        let l = match lock(&dir) {
            Ok(l) => l,
            Err(StateError::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.into()))
            }
            Err(e) => return Err(e),
        };
        // The directory may have been removed while we waited for the lock.
        if !dir.join(STATE_FILE).exists() && !dir.exists() {
            return Err(StateError::NotFound(id.into()));
        }
        Ok(ContainerDir { id: id.into(), dir, _lock: l })
    }

    pub fn load(&self) -> Result<Saved, StateError> {
        let p = self.dir.join(STATE_FILE);
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StateError::NotFound(self.id.clone())),
            Err(e) => return Err(io("read", &p, e)),
        };
        serde_json::from_slice(&data).map_err(|err| StateError::Corrupt { id: self.id.clone(), err })
    }

    pub fn save(&self, s: &Saved) -> Result<(), StateError> {
        let tmp = self.dir.join(".state.json.tmp");
        let data = serde_json::to_vec(s).map_err(|err| StateError::Corrupt { id: self.id.clone(), err })?;
        std::fs::write(&tmp, data).map_err(|e| io("write", &tmp, e))?;
        let p = self.dir.join(STATE_FILE);
        std::fs::rename(&tmp, &p).map_err(|e| io("rename", &p, e))
    }

    /// Records the cgroup a create is about to make (before anything is in it).
    pub fn save_cgroup(&self, cg: &cgroups::Manager) -> Result<(), StateError> {
        let tmp = self.dir.join(".cgroup.json.tmp");
        let data = serde_json::to_vec(cg).map_err(|err| StateError::Corrupt { id: self.id.clone(), err })?;
        std::fs::write(&tmp, data).map_err(|e| io("write", &tmp, e))?;
        let p = self.dir.join(CGROUP_FILE);
        std::fs::rename(&tmp, &p).map_err(|e| io("rename", &p, e))
    }

    /// The cgroup an unfinished create recorded, if any.
    pub fn load_cgroup(&self) -> Option<cgroups::Manager> {
        serde_json::from_slice(&std::fs::read(self.dir.join(CGROUP_FILE)).ok()?).ok()
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(FIFO)
    }

    /// Current status of the saved container.
    pub fn status(&self, s: &Saved) -> Status {
        match pid_start_time(s.pid) {
            Some(t) if t == s.pid_start => {}
            _ => return Status::Stopped,
        }
        if self.fifo().exists() {
            return Status::Created;
        }
        if let Some(cg) = &s.cgroup {
            if cg.is_frozen().unwrap_or(false) {
                return Status::Paused;
            }
        }
        Status::Running
    }

    /// Remove the directory (the lock goes with it).
    pub fn remove(self) -> Result<(), StateError> {
        std::fs::remove_dir_all(&self.dir).map_err(|e| io("remove", &self.dir, e))
    }
}

/// Ids of all containers under root, sorted.
pub fn list_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = match std::fs::read_dir(root) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| validate_id(n).is_ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "A-b_c.d+e", "0123456789abcdef"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "x y", "a\0b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_id(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        assert!(pid_start_time(me).is_some());
        assert!(pid_start_time(0).is_none());
        assert!(pid_start_time(i32::MAX).is_none());
    }
}
