//! Cgroup management for cgroup v1, hybrid (v1 controllers plus cgroup2 at
//! /sys/fs/cgroup/unified) and pure v2 hosts.
//!
//! The runtime builds a [`Manager`] once per container (`Manager::new`, which only detects the
//! layout and computes paths), calls [`Manager::create`] and [`Manager::add_task`] on start, and
//! stores the `Manager` in the container's state so that later commands (`update`, `pause`,
//! `resume`, `kill --all`, `ps`, `events`, `delete`) use exactly the same directories.
//!
//! Paths: an absolute `cgroupsPath` is taken relative to each hierarchy root, a relative one too
//! (berth never nests the container inside the caller's own cgroup), an empty one becomes
//! `/berth/<id>`. A path that leaves the root through ".." is refused. With the systemd driver
//! the `slice:prefix:name` form is mapped to systemd's directory layout
//! (`/system.slice/prefix-name.scope`) and managed through cgroupfs; berth does not talk to
//! systemd over D-Bus.

pub mod devices;
mod oom;
pub mod stats;
mod util;
mod v1;
mod v2;

pub use oom::{OomEvent, OomWatcher};
pub use stats::Stats;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where the cgroup filesystems are mounted on the host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Writing a value to a cgroup file failed (also used when the file cannot be opened).
    #[error("write {value} to {}: {}", .path.display(), .errno.desc())]
    Write { value: String, path: PathBuf, errno: Errno },
    /// Any other system call on a path (read, mkdir, rmdir, statfs, open ...).
    #[error("{op} {}: {}", .path.display(), .errno.desc())]
    Io { op: &'static str, path: PathBuf, errno: Errno },
    #[error("parse {}: {what}", .path.display())]
    Parse { path: PathBuf, what: String },
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("systemd cgroup driver requested but systemd is not running")]
    SystemdNotRunning,
    #[error("unified resources need cgroup v2")]
    UnifiedNeedsV2,
    #[error("cannot set {what}: the {controller} cgroup controller is not mounted")]
    NoController { controller: &'static str, what: &'static str },
    /// A resource value that is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// bpf(2) failed while installing the device filter of `path`.
    #[error("bpf {op} for {}: {}{log}", .path.display(), .errno.desc())]
    Bpf { op: &'static str, path: PathBuf, errno: Errno, log: String },
    #[error("cgroups: {0}")]
    Other(String),
    /// A rootless container's limit or cgroup it has no permission for (runc's words).
    #[error("{0}")]
    Rootless(String),
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies plus a cgroup2 hierarchy without controllers (e.g. /sys/fs/cgroup/unified).
    Hybrid,
    /// /sys/fs/cgroup is cgroup2.
    V2,
}

/// One v1 hierarchy (or, for the unified one in hybrid mode, the cgroup2 hierarchy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// Directory name under /sys/fs/cgroup: "cpu,cpuacct", "memory", "systemd", "unified".
    pub name: String,
    /// Mount options naming it: "cpu,cpuacct", "memory", "name=systemd"; empty for cgroup2.
    pub options: String,
    /// Host directory of the container's cgroup in this hierarchy.
    pub path: PathBuf,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manager {
    id: String,
    layout: Layout,
    /// Host mount point of the cgroup filesystems (normally /sys/fs/cgroup).
    root: PathBuf,
    /// The container's cgroup path inside every hierarchy, starting with '/'.
    path: String,
    /// v1 and hybrid: the v1 hierarchies, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hierarchies: Vec<Hierarchy>,
    /// v2: the container's directory; hybrid: its directory in the cgroup2 hierarchy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unified: Option<Hierarchy>,
    /// Rootless (as runc's rootless cgroup manager): a cgroup the caller may not create is
    /// left out when the config named no cgroupsPath, and a limit that needs it fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    rootless: bool,
    /// Rootless: the config named a cgroupsPath (then no permission is an error, as runc).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    explicit_path: bool,
    /// Rootless: the mount options (controllers) of the hierarchies left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<String>,
}

impl Manager {
    /// Detect the host layout and compute the container's cgroup paths. Writes nothing.
    pub fn new(cgroups_path: Option<&str>, id: &str, systemd: bool) -> Result<Manager, CgroupError> {
        let systemd_running = systemd && Path::new("/run/systemd/system").is_dir();
        let path = resolve_path(cgroups_path, id, systemd, systemd_running)?;
        Manager::with_root(Path::new(CGROUP_ROOT), &path, id)
    }

    /// Like `new` with an already resolved cgroup path ("/a/b") and another mount root.
    pub fn with_root(root: &Path, path: &str, id: &str) -> Result<Manager, CgroupError> {
        let det = detect(root)?;
        let rel = path.trim_start_matches('/');
        let unified = det.unified.map(|name| Hierarchy {
            path: if name.is_empty() { root.join(rel) } else { root.join(&name).join(rel) },
            name,
            options: String::new(),
        });
        let hierarchies = det
            .v1
            .into_iter()
            .map(|(name, options)| Hierarchy { path: root.join(&name).join(rel), name, options })
            .collect();
        Ok(Manager {
            id: id.to_string(),
            layout: det.layout,
            root: root.to_path_buf(),
            path: path.to_string(),
            hierarchies,
            unified,
            rootless: false,
            explicit_path: false,
            skipped: Vec::new(),
        })
    }

    /// The manager for an unprivileged caller (runc's rootless cgroup manager): on cgroup v2 a
    /// relative or empty cgroupsPath is placed below the parent of the caller's own cgroup (the
    /// subtree a user's session has delegated to it), and cgroups it may not create are left out
    /// (see [`Manager::create`]).
    /// With the systemd driver (`systemd`) the path keeps its systemd form.
    pub fn into_rootless(self, cgroups_path: Option<&str>, systemd: bool) -> Result<Manager, CgroupError> {
        let given = cgroups_path.filter(|p| !p.is_empty());
        let nest = !systemd && self.layout == Layout::V2 && !given.is_some_and(|p| p.starts_with('/'));
        let mut m = if nest {
            let own = own_v2_cgroup()?;
            let parent = Path::new(&own).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            let inner = clean(given.unwrap_or(&self.id))?;
            let path = clean(&format!("{parent}/{}", inner.trim_start_matches('/')))?;
            Manager::with_root(&self.root, &path, &self.id)?
        } else {
            self
        };
        m.rootless = true;
        m.explicit_path = given.is_some();
        Ok(m)
    }

    /// True when the container has no cgroup of its own (a rootless container whose cgroups
    /// could not be made).
    pub fn is_empty(&self) -> bool {
        self.dirs().next().is_none()
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// Every host directory of the container's cgroup.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.hierarchies.iter().chain(self.unified.iter()).map(|h| h.path.as_path())
    }
    /// The container's directory in the cgroup2 hierarchy (v2, or "unified" in hybrid mode).
    /// On pure v2 the runtime may open it (O_PATH|O_DIRECTORY) for clone3's CLONE_INTO_CGROUP
    /// and skip `add_task`: that avoids the migration, whose first cgroup.procs write costs a
    /// kernel RCU grace period (~15 ms on this host).
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_ref().map(|h| h.path.as_path())
    }
    /// The directory of a v1 controller ("memory", "cpu", ...); on v2 the only directory.
    pub fn controller_dir(&self, controller: &str) -> Option<&Path> {
        if self.layout == Layout::V2 {
            return self.unified.as_ref().map(|h| h.path.as_path());
        }
        self.hierarchies.iter().find(|h| h.options.split(',').any(|o| o == controller)).map(|h| h.path.as_path())
    }
    fn v2_dir(&self) -> Result<&Path, CgroupError> {
        self.unified.as_ref().map(|h| h.path.as_path()).ok_or_else(|| CgroupError::Other("no cgroup2 directory".into()))
    }

    pub(crate) fn need(&self, controller: &'static str, what: &'static str) -> Result<&Path, CgroupError> {
        if let Some(d) = self.controller_dir(controller) {
            return Ok(d);
        }
        if self.skipped.iter().any(|o| o.split(',').any(|c| c == controller)) {
            return Err(CgroupError::Rootless(format!(
                "cannot set {controller} limit: container could not join or create cgroup"
            )));
        }
        Err(CgroupError::NoController { controller, what })
    }

    /// Check the parts of `resources` that need no file access, before anything is created.
    pub fn validate(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        self.check(r, true)
    }

    /// `validate`; for an update (`fresh` false) a v2 memory+swap without a memory limit is
    /// allowed: it is converted against the current memory.max.
    fn check(&self, r: &LinuxResources, fresh: bool) -> Result<(), CgroupError> {
        if self.layout != Layout::V2 && r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::UnifiedNeedsV2);
        }
        if let Some(m) = r.memory() {
            if let Some(s) = m.swappiness() {
                if s > 100 {
                    return Err(CgroupError::Invalid(format!(
                        "invalid memory swappiness value: {s} (valid range is 0-100)"
                    )));
                }
            }
            if self.layout == Layout::V2 && (fresh || m.limit().unwrap_or(0) != 0) {
                convert_swap_to_v2(m.swap().unwrap_or(0), m.limit().unwrap_or(0))?;
            }
        }
        if let Some(c) = r.cpu() {
            if let Some(s) = c.shares() {
                if self.layout != Layout::V2 && s != 0 {
                    if s < 2 {
                        return Err(CgroupError::Invalid("the minimum allowed cpu-shares is 2".into()));
                    }
                    if s > 262144 {
                        return Err(CgroupError::Invalid("the maximum allowed cpu-shares is 262144".into()));
                    }
                }
            }
        }
        if let Some(d) = r.devices() {
            devices::compile(d)?;
        }
        Ok(())
    }

    /// Create the cgroup directories and apply `resources`. On error, removes what it created.
    /// Rootless without a cgroupsPath, a hierarchy the caller may not create a cgroup in is
    /// left out of the manager (v1: a limit needing its controller fails; v2: any limit fails),
    /// and device rules are not applied (an unprivileged user cannot, as runc ignores).
    pub fn create(&mut self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        if let Some(r) = resources {
            self.validate(r)?;
        }
        let mut created = Vec::new();
        let res = self.create_dirs(&mut created, resources).and_then(|()| self.apply(resources, true));
        if res.is_err() {
            for d in created.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
        res
    }

    fn create_dirs(
        &mut self,
        created: &mut Vec<PathBuf>,
        resources: Option<&LinuxResources>,
    ) -> Result<(), CgroupError> {
        match self.layout {
            Layout::V2 => match v2::create_dirs(&self.root, &self.path, created) {
                Err(e) if self.may_skip(&e) => {
                    if resources.is_some_and(needs_controllers) {
                        return Err(CgroupError::Rootless(format!(
                            "rootless needs no limits + no cgrouppath when no permission is granted for cgroups: {e}"
                        )));
                    }
                    self.skipped.push(String::new());
                    self.unified = None;
                    Ok(())
                }
                r => r,
            },
            Layout::V1 | Layout::Hybrid => {
                let mut kept = Vec::with_capacity(self.hierarchies.len());
                for h in std::mem::take(&mut self.hierarchies) {
                    let cpuset = h.options.split(',').any(|o| o == "cpuset");
                    match v1::create_dir(&self.root.join(&h.name), &h.path, created, cpuset) {
                        Ok(()) => kept.push(h),
                        Err(e) if self.may_skip(&e) => self.skipped.push(h.options),
                        Err(e) => return Err(e),
                    }
                }
                self.hierarchies = kept;
                if let Some(u) = &self.unified {
                    match v1::create_dir(&self.root.join(&u.name), &u.path, created, false) {
                        Ok(()) => {}
                        Err(e) if self.may_skip(&e) => {
                            self.skipped.push(u.name.clone());
                            self.unified = None;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    /// runc's `isIgnorableError` for a rootless container without a cgroupsPath.
    fn may_skip(&self, e: &CgroupError) -> bool {
        self.rootless
            && !self.explicit_path
            && matches!(e, CgroupError::Io { errno: Errno::EACCES | Errno::EPERM | Errno::EROFS, .. })
    }

    fn apply(&self, r: Option<&LinuxResources>, fresh: bool) -> Result<(), CgroupError> {
        // The device rules: on creation always (runc's default list is appended), on update
        // only when the update names devices.
        let dev = match r.and_then(|r| r.devices().as_ref()) {
            _ if self.rootless => None,
            Some(d) => Some(devices::compile(d)?),
            None if fresh => Some(devices::compile(&[])?),
            None => None,
        };
        if self.layout == Layout::V2 && self.unified.is_none() {
            // A rootless container without a cgroup: create_dirs made sure nothing is asked.
            return Ok(());
        }
        match self.layout {
            Layout::V2 => v2::apply(self.v2_dir()?, r, dev.as_ref(), fresh),
            Layout::V1 | Layout::Hybrid => v1::apply(self, r, dev.as_ref(), fresh),
        }
    }

    /// Move `pid` into the container's cgroup in every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        let s = pid.to_string();
        for d in self.dirs() {
            util::write(d, "cgroup.procs", &s)?;
        }
        Ok(())
    }

    /// Move `pid` into an existing sub-cgroup of the container (`exec --cgroup`). `sub` is
    /// "path" (every hierarchy) or, on v1, "ctrl[,ctrl...]:path" (the listed controllers;
    /// the other hierarchies get the container's own cgroup). "path" may not leave the
    /// container's cgroup.
    pub fn add_task_sub(&self, pid: i32, sub: &str) -> Result<(), CgroupError> {
        let (ctrls, rel) = parse_sub(sub)?;
        let s = pid.to_string();
        if self.layout == Layout::V2 {
            if ctrls.is_some() {
                return Err(CgroupError::InvalidPath {
                    path: sub.to_string(),
                    reason: "controller-specific sub-cgroups need cgroup v1".into(),
                });
            }
            return util::write(&self.v2_dir()?.join(&rel), "cgroup.procs", &s);
        }
        for h in self.hierarchies.iter().chain(self.unified.iter()) {
            let pick = match &ctrls {
                None => true,
                Some(list) => list.iter().any(|c| h.options.split(',').any(|o| o == c || o == format!("name={c}"))),
            };
            let dir = if pick { h.path.join(&rel) } else { h.path.clone() };
            util::write(&dir, "cgroup.procs", &s)?;
        }
        Ok(())
    }

    /// Apply new resource limits to the running container (`berth update`).
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.check(resources, false)?;
        self.apply(Some(resources), false)
    }

    /// Freeze every process of the container and wait until the kernel reports it frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.layout {
            Layout::V2 => v2::freeze(self.v2_dir()?, true),
            _ => v1::freeze(self.need("freezer", "freezer state")?),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.layout {
            Layout::V2 => v2::freeze(self.v2_dir()?, false),
            _ => util::write(self.need("freezer", "freezer state")?, "freezer.state", "THAWED"),
        }
    }

    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.layout {
            Layout::V2 => Ok(util::read_opt(self.v2_dir()?, "cgroup.freeze")?.is_some_and(|s| s.trim() == "1")),
            _ => match self.controller_dir("freezer") {
                Some(d) => Ok(util::read(d, "freezer.state")?.trim() == "FROZEN"),
                None => Ok(false),
            },
        }
    }

    /// The directory whose cgroup.procs lists the container's processes.
    fn procs_dir(&self) -> Result<&Path, CgroupError> {
        self.controller_dir("freezer")
            .or_else(|| self.controller_dir("pids"))
            .or_else(|| self.dirs().next())
            .ok_or_else(|| CgroupError::Other("no cgroup directory".into()))
    }

    /// Pids in the container's cgroup and all its sub-cgroups.
    pub fn all_pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut out = Vec::new();
        collect_pids(self.procs_dir()?, &mut out, 0)?;
        Ok(out)
    }

    /// Send `sig` to every process of the container. On v2 SIGKILL uses cgroup.kill when the
    /// kernel has it; otherwise the cgroup is frozen, every pid signalled, then thawed, so that
    /// no process can fork away meanwhile.
    pub fn kill_all(&self, sig: Signal) -> Result<(), CgroupError> {
        if self.layout == Layout::V2 && sig == Signal::SIGKILL {
            match util::write(self.v2_dir()?, "cgroup.kill", "1") {
                Ok(()) => return Ok(()),
                Err(CgroupError::Write { errno: Errno::ENOENT, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let can_freeze = self.layout == Layout::V2 || self.controller_dir("freezer").is_some();
        let frozen = can_freeze && self.freeze().is_ok();
        let res = self.all_pids().map(|pids| {
            for p in pids {
                // ESRCH: it exited meanwhile.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
            }
        });
        if frozen {
            self.thaw()?;
        }
        res
    }

    /// Remove the container's cgroup directory (and any sub-cgroups the container made) in
    /// every hierarchy. Parents such as /berth stay. A missing directory is not an error.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for d in self.dirs() {
            if let Err(e) = remove_tree(d, 0) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    pub fn mount_info(&self) -> MountInfo {
        match self.layout {
            Layout::V2 => MountInfo::V2 { host_dir: self.unified.as_ref().map(|h| h.path.clone()).unwrap_or_default() },
            _ => MountInfo::V1 {
                hierarchies: self
                    .hierarchies
                    .iter()
                    .chain(self.unified.iter())
                    .map(|h| (h.name.clone(), h.options.clone(), h.path.clone()))
                    .collect(),
            },
        }
    }

    /// Resource usage in the shape of runc's `events --stats` "data".
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match self.layout {
            Layout::V2 => v2::stats(self.v2_dir()?),
            _ => v1::stats(self),
        }
    }

    /// Number of OOM kills so far (v1 needs kernel >= 4.13 for the counter; 0 otherwise).
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let (dir, file) = match self.layout {
            Layout::V2 => (self.v2_dir()?, "memory.events"),
            _ => (self.need("memory", "oom events")?, "memory.oom_control"),
        };
        Ok(util::read_opt(dir, file)?.and_then(|s| util::value_by_key(&s, "oom_kill")).unwrap_or(0))
    }

    /// Start watching for OOM events (for `events`). See [`OomWatcher`].
    pub fn oom_watcher(&self) -> Result<OomWatcher, CgroupError> {
        match self.layout {
            Layout::V2 => OomWatcher::v2(self.v2_dir()?),
            _ => OomWatcher::v1(self.need("memory", "oom events")?),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths

/// True when `r` asks for a limit that needs a cgroup controller (runc's `needAnyControllers`;
/// device rules do not count).
fn needs_controllers(r: &LinuxResources) -> bool {
    let mem = r.memory().as_ref().is_some_and(|m| {
        m.limit().is_some_and(|v| v != 0)
            || m.reservation().is_some_and(|v| v != 0)
            || m.swap().is_some_and(|v| v != 0)
            || m.swappiness().is_some()
            || m.disable_oom_killer().is_some()
    });
    let cpu = r.cpu().as_ref().is_some_and(|c| {
        c.shares().is_some_and(|v| v != 0)
            || c.quota().is_some_and(|v| v != 0)
            || c.period().is_some_and(|v| v != 0)
            || c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
            || c.cpus().as_deref().is_some_and(|s| !s.is_empty())
            || c.mems().as_deref().is_some_and(|s| !s.is_empty())
            || c.idle().is_some_and(|v| v != 0)
    });
    let pids = r.pids().as_ref().is_some_and(|p| p.limit() != 0);
    let io = r.block_io().as_ref().is_some_and(|b| {
        b.weight().is_some_and(|v| v != 0)
            || b.leaf_weight().is_some_and(|v| v != 0)
            || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
            || b.throttle_read_bps_device().as_ref().is_some_and(|v| !v.is_empty())
            || b.throttle_write_bps_device().as_ref().is_some_and(|v| !v.is_empty())
            || b.throttle_read_iops_device().as_ref().is_some_and(|v| !v.is_empty())
            || b.throttle_write_iops_device().as_ref().is_some_and(|v| !v.is_empty())
    });
    let huge = r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty());
    let unified = r.unified().as_ref().is_some_and(|u| !u.is_empty());
    let rdma = r.rdma().as_ref().is_some_and(|u| !u.is_empty());
    mem || cpu || pids || io || huge || unified || rdma
}

/// The first controller (in runc's order of v1 subsystems) that `r` sets a limit for: what runc
/// names when a rootless container without cgroups is updated.
pub fn first_controller(r: &LinuxResources) -> Option<&'static str> {
    let cpu = r.cpu().as_ref();
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if cpu.is_some_and(|c| set(c.cpus()) || set(c.mems())) {
        return Some("cpuset");
    }
    let mem = r.memory().as_ref().is_some_and(|m| {
        m.limit().is_some_and(|v| v != 0)
            || m.reservation().is_some_and(|v| v != 0)
            || m.swap().is_some_and(|v| v != 0)
            || m.swappiness().is_some()
    });
    if mem {
        return Some("memory");
    }
    let cpu_limits = cpu.is_some_and(|c| {
        c.shares().is_some_and(|v| v != 0) || c.quota().is_some_and(|v| v != 0) || c.period().is_some_and(|v| v != 0)
    });
    if cpu_limits {
        return Some("cpu");
    }
    if r.pids().as_ref().is_some_and(|p| p.limit() != 0) {
        return Some("pids");
    }
    if r.block_io().as_ref().is_some_and(|b| b.weight().is_some_and(|v| v != 0)) {
        return Some("blkio");
    }
    needs_controllers(r).then_some("memory")
}

/// The caller's own cgroup on a cgroup v2 host (the "0::" line of /proc/self/cgroup).
fn own_v2_cgroup() -> Result<String, CgroupError> {
    let p = Path::new("/proc/self/cgroup");
    let s = std::fs::read_to_string(p).map_err(|e| CgroupError::Io {
        op: "read",
        path: p.into(),
        errno: util::errno_of(&e),
    })?;
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
        .ok_or_else(|| CgroupError::Parse { path: p.into(), what: "no cgroup v2 entry".into() })
}

/// Turn the spec's cgroupsPath into the path inside every hierarchy ("/a/b").
pub fn resolve_path(
    cgroups_path: Option<&str>,
    id: &str,
    systemd: bool,
    systemd_running: bool,
) -> Result<String, CgroupError> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(CgroupError::InvalidPath { path: id.to_string(), reason: "invalid container id".into() });
    }
    let given = cgroups_path.filter(|p| !p.is_empty());
    if systemd {
        if !systemd_running {
            return Err(CgroupError::SystemdNotRunning);
        }
        return match given {
            None => Ok(format!("/system.slice/berth-{id}.scope")),
            Some(p) => systemd_path(p),
        };
    }
    match given {
        None => clean(&format!("berth/{id}")),
        Some(p) => clean(p),
    }
}

/// `exec --cgroup` argument: ([controllers], relative path without a leading '/').
fn parse_sub(sub: &str) -> Result<(Option<Vec<String>>, String), CgroupError> {
    let (ctrls, path) = match sub.split_once(':') {
        Some((c, p)) => {
            let list: Vec<String> = c.split(',').filter(|c| !c.is_empty()).map(String::from).collect();
            (if list.is_empty() { None } else { Some(list) }, p)
        }
        None => (None, sub),
    };
    let rel = clean(path)?;
    Ok((ctrls, rel.trim_start_matches('/').to_string()))
}

/// Lexically clean `p` as a path below the hierarchy root; ".." may not leave the root.
fn clean(p: &str) -> Result<String, CgroupError> {
    let bad = |reason: &str| CgroupError::InvalidPath { path: p.to_string(), reason: reason.into() };
    if p.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(bad("escapes the cgroup root"));
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(bad("is the cgroup root"));
    }
    let mut out = String::with_capacity(p.len() + 1);
    for c in parts {
        out.push('/');
        out.push_str(c);
    }
    Ok(out)
}

/// "slice:prefix:name" to systemd's cgroup directory, e.g.
/// "system.slice:docker:abc" -> "/system.slice/docker-abc.scope",
/// "a-b.slice:p:n" -> "/a.slice/a-b.slice/p-n.scope".
fn systemd_path(p: &str) -> Result<String, CgroupError> {
    let bad = |reason: String| CgroupError::InvalidPath { path: p.to_string(), reason };
    let parts: Vec<&str> = p.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(bad("expected \"slice:prefix:name\" for the systemd cgroup driver".into()));
    };
    if name.is_empty() || name.contains('/') || prefix.contains('/') {
        return Err(bad("invalid unit name".into()));
    }
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    let mut out = expand_slice(slice).map_err(bad)?;
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if out != "/" {
        out.push('/');
    } else {
        out.clear();
        out.push('/');
    }
    out.push_str(&unit);
    clean(&out)
}

/// systemd slice name to its directory: "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice".
pub fn expand_slice(slice: &str) -> Result<String, String> {
    let bad = || format!("invalid slice name {slice:?}");
    let base = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if base.is_empty() || slice.contains('/') {
        return Err(bad());
    }
    if base == "-" {
        return Ok("/".into());
    }
    let mut out = String::new();
    let mut prefix = String::new();
    for comp in base.split('-') {
        if comp.is_empty() {
            return Err(bad());
        }
        out.push('/');
        out.push_str(&prefix);
        out.push_str(comp);
        out.push_str(".slice");
        prefix.push_str(comp);
        prefix.push('-');
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Layout detection: one statfs of the root, one readdir, one statfs per directory.

struct Detected {
    layout: Layout,
    /// (directory name, mount options)
    v1: Vec<(String, String)>,
    /// cgroup2 hierarchy: "" for pure v2 (the root itself), "unified" in hybrid mode.
    unified: Option<String>,
}

#[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures
fn fs_type(path: &Path) -> Result<i64, CgroupError> {
    let io = |errno| CgroupError::Io { op: "statfs", path: path.to_path_buf(), errno };
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io(Errno::EINVAL))?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is NUL-terminated and `st` is a writable statfs buffer.
    if unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io(Errno::last()));
    }
    // SAFETY: statfs succeeded and filled the buffer (it was zeroed anyway).
    Ok(unsafe { st.assume_init() }.f_type as i64)
}

const KNOWN_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Mount options of a v1 hierarchy from its directory name: "cpu,cpuacct" stays, a name that
/// is not a list of controllers is a named hierarchy ("systemd" -> "name=systemd").
fn v1_options(dir: &str) -> String {
    if dir.split(',').all(|c| KNOWN_CONTROLLERS.contains(&c)) {
        dir.to_string()
    } else {
        format!("name={dir}")
    }
}

#[allow(clippy::unnecessary_cast)]
fn detect(root: &Path) -> Result<Detected, CgroupError> {
    let t = fs_type(root)?;
    if t == libc::CGROUP2_SUPER_MAGIC as i64 {
        return Ok(Detected { layout: Layout::V2, v1: Vec::new(), unified: Some(String::new()) });
    }
    let io = |e: std::io::Error| CgroupError::Io { op: "readdir", path: root.to_path_buf(), errno: util::errno_of(&e) };
    let mut v1 = Vec::new();
    let mut unified = None;
    for ent in std::fs::read_dir(root).map_err(io)? {
        let ent = ent.map_err(io)?;
        // d_type: symlinks such as cpu -> cpu,cpuacct are skipped without a stat.
        if !ent.file_type().map_err(io)?.is_dir() {
            continue;
        }
        let Ok(name) = ent.file_name().into_string() else { continue };
        match fs_type(&root.join(&name)) {
            Ok(t) if t == libc::CGROUP_SUPER_MAGIC as i64 => {
                let opts = v1_options(&name);
                v1.push((name, opts));
            }
            Ok(t) if t == libc::CGROUP2_SUPER_MAGIC as i64 => unified = Some(name),
            _ => {}
        }
    }
    if v1.is_empty() {
        return Err(CgroupError::Other(format!("no cgroup hierarchy mounted under {}", root.display())));
    }
    v1.sort();
    let layout = if unified.is_some() { Layout::Hybrid } else { Layout::V1 };
    Ok(Detected { layout, v1, unified })
}

// ---------------------------------------------------------------------------------------------
// Conversions between the (v1 oriented) spec and cgroup v2, as runc does them.

/// cpu.shares (2..262144) to cpu.weight (1..10000); 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        s if s <= 2 => 1,
        s if s >= 262144 => 10000,
        s => 1 + ((s - 2) * 9999) / 262142,
    }
}

/// blkio.weight (10..1000) to io.weight (1..10000); 0 means unset.
pub fn blkio_weight_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    let w = u64::from(w.max(10));
    1 + (w - 10) * 9999 / 990
}

/// The spec's swap is memory+swap; v2's memory.swap.max is swap alone. 0 = unset, -1 = max.
pub fn convert_swap_to_v2(swap: i64, memory: i64) -> Result<i64, CgroupError> {
    match (swap, memory) {
        (0, -1) => Ok(-1),
        (-1, _) | (0, _) => Ok(swap),
        (_, -1) => Ok(swap),
        (_, 0) => Err(CgroupError::Invalid("unable to set swap limit without memory limit".into())),
        (_, m) if m < 0 => Err(CgroupError::Invalid(format!("invalid memory value: {m}"))),
        (s, m) if s < m => Err(CgroupError::Invalid("memory+swap limit should be >= memory limit".into())),
        (s, m) => Ok(s - m),
    }
}

/// `memory.checkBeforeUpdate`: refuse limits at or below the current usage.
pub(crate) fn check_memory_usage(dir: &Path, usage_file: &str, limit: i64, swap: i64) -> Result<(), CgroupError> {
    if limit <= 0 && swap <= 0 {
        return Ok(());
    }
    let Ok(usage) = util::read_u64(dir, usage_file) else { return Ok(()) };
    if swap > 0 && swap as u64 <= usage {
        return Err(CgroupError::Invalid(format!(
            "rejecting memory+swap limit {swap} <= usage {usage} of {}",
            dir.display()
        )));
    }
    if limit > 0 && limit as u64 <= usage {
        return Err(CgroupError::Invalid(format!(
            "rejecting memory limit {limit} <= usage {usage} of {}",
            dir.display()
        )));
    }
    Ok(())
}

/// A hugepage size as used in file names ("2MB"); must not name another path.
pub(crate) fn check_page_size(s: &str) -> Result<&str, CgroupError> {
    if s.is_empty() || s.contains('/') || s.contains('\0') || s.starts_with('.') {
        return Err(CgroupError::Invalid(format!("invalid hugepage size {s:?}")));
    }
    Ok(s)
}

/// "mlx4_0 hca_handle=2 hca_object=2000" for rdma.max; None when nothing is limited.
pub(crate) fn rdma_line(dev: &str, l: &oci_spec::runtime::LinuxRdma) -> Option<String> {
    if l.hca_handles().is_none() && l.hca_objects().is_none() {
        return None;
    }
    let mut s = dev.to_string();
    if let Some(h) = l.hca_handles() {
        s.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = l.hca_objects() {
        s.push_str(&format!(" hca_object={o}"));
    }
    Some(s)
}

// ---------------------------------------------------------------------------------------------
// Tree helpers

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>, depth: u32) -> Result<(), CgroupError> {
    let s = match util::read(dir, "cgroup.procs") {
        Ok(s) => s,
        // A sub-cgroup removed meanwhile.
        Err(CgroupError::Io { errno: Errno::ENOENT, .. }) if depth > 0 => return Ok(()),
        Err(e) => return Err(e),
    };
    out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if depth < 32 {
        for d in subdirs(dir) {
            collect_pids(&d, out, depth + 1)?;
        }
    }
    Ok(())
}

/// rmdir `dir`, its sub-cgroups first; retry briefly on EBUSY (tasks still exiting).
fn remove_tree(dir: &Path, depth: u32) -> Result<(), CgroupError> {
    let mut delay_ms = 1;
    let mut scanned = false;
    loop {
        let e = match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let errno = util::errno_of(&e);
        match errno {
            Errno::ENOENT => return Ok(()),
            Errno::EBUSY | Errno::ENOTEMPTY => {
                if !scanned && depth < 32 {
                    scanned = true;
                    let subs = subdirs(dir);
                    if !subs.is_empty() {
                        for d in subs {
                            remove_tree(&d, depth + 1)?;
                        }
                        continue;
                    }
                }
                if delay_ms > 256 {
                    return Err(CgroupError::Io { op: "rmdir", path: dir.to_path_buf(), errno });
                }
                std::thread::sleep(std::time::Duration::from_millis(delay_ms));
                delay_ms *= 2;
                scanned = false;
            }
            _ => return Err(CgroupError::Io { op: "rmdir", path: dir.to_path_buf(), errno }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(resolve_path(None, "x", false, false).unwrap(), "/berth/x");
        assert_eq!(resolve_path(Some(""), "x", false, false).unwrap(), "/berth/x");
        assert_eq!(resolve_path(Some("/a/b"), "x", false, false).unwrap(), "/a/b");
        assert_eq!(resolve_path(Some("a/b/"), "x", false, false).unwrap(), "/a/b");
        assert_eq!(resolve_path(Some("/a/./c/../b"), "x", false, false).unwrap(), "/a/b");
        let e = resolve_path(Some("/a/../../etc"), "x", false, false).unwrap_err();
        assert!(e.to_string().contains("escapes the cgroup root"), "{e}");
        assert!(resolve_path(Some("../x"), "x", false, false).is_err());
        assert!(resolve_path(Some("/"), "x", false, false).is_err());
        assert!(resolve_path(None, "a/b", false, false).is_err());
        assert!(resolve_path(None, "..", false, false).is_err());
    }

    #[test]
    fn systemd_paths() {
        let e = resolve_path(Some("system.slice:docker:abc"), "x", true, false).unwrap_err();
        assert_eq!(e.to_string(), "systemd cgroup driver requested but systemd is not running");
        let p = |s| resolve_path(Some(s), "x", true, true);
        assert_eq!(p("system.slice:docker:abc").unwrap(), "/system.slice/docker-abc.scope");
        assert_eq!(p(":berth:abc").unwrap(), "/system.slice/berth-abc.scope");
        assert_eq!(p("a-b.slice:p:n").unwrap(), "/a.slice/a-b.slice/p-n.scope");
        assert_eq!(p("-.slice:p:n").unwrap(), "/p-n.scope");
        assert_eq!(p("system.slice::n.slice").unwrap(), "/system.slice/n.slice");
        assert!(p("system.slice:p").is_err());
        assert!(p("bad:p:n").is_err());
        assert!(p("a--b.slice:p:n").is_err());
        assert!(p("system.slice:p:../x").is_err());
        assert_eq!(resolve_path(None, "x", true, true).unwrap(), "/system.slice/berth-x.scope");
    }

    #[test]
    fn sub_cgroups() {
        assert_eq!(parse_sub("a/b").unwrap(), (None, "a/b".to_string()));
        assert_eq!(parse_sub("/a").unwrap(), (None, "a".to_string()));
        assert_eq!(parse_sub("memory,pids:x").unwrap(), (Some(vec!["memory".into(), "pids".into()]), "x".into()));
        assert_eq!(parse_sub(":x").unwrap(), (None, "x".to_string()));
        assert!(parse_sub("../x").is_err());
        assert!(parse_sub("memory:").is_err());
    }

    #[test]
    fn slices() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(expand_slice("a-b-c.slice").unwrap(), "/a.slice/a-b.slice/a-b-c.slice");
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert!(expand_slice("-a.slice").is_err());
        assert!(expand_slice(".slice").is_err());
        assert!(expand_slice("foo").is_err());
    }

    #[test]
    fn options() {
        assert_eq!(v1_options("cpu,cpuacct"), "cpu,cpuacct");
        assert_eq!(v1_options("memory"), "memory");
        assert_eq!(v1_options("systemd"), "name=systemd");
        assert_eq!(v1_options("net_cls,net_prio"), "net_cls,net_prio");
    }

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(shares_to_weight(1_000_000), 10000);
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
        assert_eq!(convert_swap_to_v2(0, -1).unwrap(), -1);
        assert_eq!(convert_swap_to_v2(0, 100).unwrap(), 0);
        assert_eq!(convert_swap_to_v2(-1, 100).unwrap(), -1);
        assert_eq!(convert_swap_to_v2(300, 100).unwrap(), 200);
        assert_eq!(convert_swap_to_v2(100, 100).unwrap(), 0);
        assert_eq!(convert_swap_to_v2(300, -1).unwrap(), 300);
        assert!(convert_swap_to_v2(50, 100).is_err());
        assert!(convert_swap_to_v2(50, 0).is_err());
    }

    fn fake_manager(layout: Layout) -> Manager {
        let root = PathBuf::from("/sys/fs/cgroup");
        let h = |n: &str, o: &str| Hierarchy { name: n.into(), options: o.into(), path: root.join(n).join("berth/x") };
        let (hierarchies, unified) = match layout {
            Layout::V2 => (vec![], Some(Hierarchy { name: "".into(), options: "".into(), path: root.join("berth/x") })),
            _ => (
                vec![h("cpu,cpuacct", "cpu,cpuacct"), h("memory", "memory"), h("systemd", "name=systemd")],
                (layout == Layout::Hybrid).then(|| h("unified", "")),
            ),
        };
        Manager {
            id: "x".into(),
            layout,
            root,
            path: "/berth/x".into(),
            hierarchies,
            unified,
            rootless: false,
            explicit_path: false,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn rootless_skipped_controllers() {
        let mut m = fake_manager(Layout::V1);
        m.rootless = true;
        let e = CgroupError::Io { op: "mkdir", path: "/x".into(), errno: Errno::EACCES };
        assert!(m.may_skip(&e));
        assert!(!m.may_skip(&CgroupError::Io { op: "mkdir", path: "/x".into(), errno: Errno::ENOSPC }));
        m.hierarchies.retain(|h| h.name != "memory");
        m.skipped.push("memory".into());
        assert_eq!(
            m.need("memory", "memory limits").unwrap_err().to_string(),
            "cannot set memory limit: container could not join or create cgroup"
        );
        assert!(matches!(m.need("pids", "pids limit"), Err(CgroupError::NoController { .. })));
        m.explicit_path = true;
        assert!(!m.may_skip(&e));
        let mem: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":1048576}}"#).unwrap();
        let dev: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#).unwrap();
        assert!(needs_controllers(&mem));
        assert!(!needs_controllers(&dev));
        // The state keeps what was left out.
        let back: Manager = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn manager_lookup_and_serde() {
        let m = fake_manager(Layout::Hybrid);
        assert_eq!(m.controller_dir("cpuacct").unwrap(), Path::new("/sys/fs/cgroup/cpu,cpuacct/berth/x"));
        assert!(m.controller_dir("pids").is_none());
        assert!(m.controller_dir("systemd").is_none());
        assert_eq!(m.dirs().count(), 4);
        let MountInfo::V1 { hierarchies } = m.mount_info() else { panic!() };
        assert_eq!(hierarchies[2].1, "name=systemd");
        assert_eq!(hierarchies[3], ("unified".into(), "".into(), PathBuf::from("/sys/fs/cgroup/unified/berth/x")));
        let j = serde_json::to_string(&m).unwrap();
        let back: Manager = serde_json::from_str(&j).unwrap();
        assert_eq!(back, m);
        let v2 = fake_manager(Layout::V2);
        assert_eq!(v2.controller_dir("memory").unwrap(), Path::new("/sys/fs/cgroup/berth/x"));
        assert!(matches!(v2.mount_info(), MountInfo::V2 { .. }));
    }

    #[test]
    fn validation() {
        let m = fake_manager(Layout::Hybrid);
        let r: LinuxResources = serde_json::from_str(r#"{"unified":{"memory.high":"1"}}"#).unwrap();
        assert_eq!(m.validate(&r).unwrap_err().to_string(), "unified resources need cgroup v2");
        let r: LinuxResources = serde_json::from_str(r#"{"memory":{"swappiness":101}}"#).unwrap();
        assert!(m.validate(&r).is_err());
        let r: LinuxResources = serde_json::from_str(r#"{"cpu":{"shares":1}}"#).unwrap();
        assert!(m.validate(&r).is_err());
        let v2 = fake_manager(Layout::V2);
        let r: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":100,"swap":50}}"#).unwrap();
        assert!(v2.validate(&r).is_err());
        let r: LinuxResources = serde_json::from_str(r#"{"unified":{"memory.high":"1"}}"#).unwrap();
        assert!(v2.validate(&r).is_ok());
        // memory+swap alone: refused at create, converted against memory.max on update.
        let r: LinuxResources = serde_json::from_str(r#"{"memory":{"swap":100}}"#).unwrap();
        assert!(v2.validate(&r).is_err());
        assert!(v2.check(&r, false).is_ok());
    }

    #[test]
    fn error_format() {
        let e = CgroupError::Write {
            value: "999999".into(),
            path: "/sys/fs/cgroup/cpuset/berth/x/cpuset.cpus".into(),
            errno: Errno::EINVAL,
        };
        assert_eq!(e.to_string(), "write 999999 to /sys/fs/cgroup/cpuset/berth/x/cpuset.cpus: Invalid argument");
    }
}
