//! Cgroup management (v1, hybrid and v2). See the interface contract below; the
//! runtime calls only these functions.

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups: {0}")]
    Other(String),
}

/// How the container's cgroup looks from the host, for the rootfs module's `cgroup` mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MountInfo {
    /// Pure v2: the host directory of the container's cgroup.
    V2 { host_dir: PathBuf },
    /// v1 or hybrid: one entry per mounted hierarchy: (directory name under /sys/fs/cgroup,
    /// e.g. "cpu,cpuacct" or "memory" or "unified", mount options to use such as "cpu,cpuacct"
    /// or "name=systemd" (empty for the cgroup2 "unified" one), host directory of the container's cgroup).
    V1 { hierarchies: Vec<(String, String, PathBuf)> },
}

/// The container's cgroup. Serializable: it is stored in the container's state so that later
/// commands (delete, kill --all, pause, update, ps, events) find it without recomputing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manager {}

impl Manager {
    /// Detect the host layout and compute the container's cgroup paths. Writes nothing.
    pub fn new(_cgroups_path: Option<&str>, _id: &str, _systemd: bool) -> Result<Manager, CgroupError> {
        Ok(Manager {})
    }
    /// Create the cgroup directories and apply `resources`. On error, removes what it created.
    pub fn create(&self, _resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        Ok(())
    }
    /// Move `pid` into the container's cgroup in every hierarchy.
    pub fn add_task(&self, _pid: i32) -> Result<(), CgroupError> {
        Ok(())
    }
    pub fn mount_info(&self) -> MountInfo {
        MountInfo::V1 { hierarchies: Vec::new() }
    }
    pub fn destroy(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    /// Move `pid` into a sub-cgroup of the container (`[controller:]path`, exec --cgroup).
    pub fn add_task_sub(&self, pid: i32, _sub: &str) -> Result<(), CgroupError> {
        self.add_task(pid)
    }
    pub fn freeze(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    pub fn thaw(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    pub fn update(&self, _r: &LinuxResources) -> Result<(), CgroupError> {
        Ok(())
    }
    pub fn stats(&self) -> Result<serde_json::Value, CgroupError> {
        Ok(serde_json::Value::Null)
    }
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(false)
    }
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Ok(Vec::new())
    }
    pub fn kill_all(&self, _sig: i32) -> Result<(), CgroupError> {
        Ok(())
    }
}
