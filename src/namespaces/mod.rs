//! Linux namespaces: which ones the container gets, joining existing ones by path,
//! user-namespace id maps and time-namespace offsets.

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("namespace {kind}: open {path}: {err}")]
    Open { kind: &'static str, path: PathBuf, err: std::io::Error },
    #[error("namespace {kind}: setns {path}: {err}")]
    Setns { kind: &'static str, path: PathBuf, err: std::io::Error },
    #[error("namespace {kind}: unshare: {err}")]
    Unshare { kind: &'static str, err: std::io::Error },
    /// runc's wording (Go's %q of the spec entry: `{"pid" ""}`).
    #[error("malformed spec file: duplicated ns {{{kind:?} {path:?}}}")]
    Duplicate { kind: &'static str, path: String },
    #[error("write {path}: {err}")]
    Write { path: String, err: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

pub fn type_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// The kernel's CLONE_NEW* flag for a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// The namespace plan of a container, worked out once from the config.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// CLONE_NEW* flags of the namespaces to create.
    pub new_flags: libc::c_int,
    /// Namespaces to join: (type, path). Order: user first, then the rest as listed.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Plan {
    pub fn from_linux(linux: Option<&Linux>) -> Result<Plan, NamespaceError> {
        let mut plan = Plan::default();
        let mut seen = 0;
        let Some(nss) = linux.and_then(|l| l.namespaces().as_ref()) else {
            return Ok(plan);
        };
        for ns in nss {
            let t = ns.typ();
            let flag = clone_flag(t);
            if seen & flag != 0 {
                let path = ns.path().as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                return Err(NamespaceError::Duplicate { kind: type_name(t), path });
            }
            seen |= flag;
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    if !p.is_absolute() {
                        return Err(NamespaceError::Invalid(format!(
                            "namespace {}: path {} is not absolute",
                            type_name(t),
                            p.display()
                        )));
                    }
                    if t == LinuxNamespaceType::User {
                        plan.join.insert(0, (t, p.clone()));
                    } else {
                        plan.join.push((t, p.clone()));
                    }
                }
                _ => plan.new_flags |= flag,
            }
        }
        Ok(plan)
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.new_flags & clone_flag(t) != 0 || self.join.iter().any(|(k, _)| *k == t)
    }

    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.new_flags & clone_flag(t) != 0
    }

    pub fn joins(&self, t: LinuxNamespaceType) -> Option<&PathBuf> {
        self.join.iter().find(|(k, _)| *k == t).map(|(_, p)| p)
    }

    /// Whether every namespace can be made by one clone(2) in the parent: true unless a new
    /// user namespace has to be created after joining other namespaces by path.
    pub fn single_clone(&self) -> bool {
        (!self.creates(LinuxNamespaceType::User) || self.join.is_empty())
            && self.joins(LinuxNamespaceType::User).is_none()
    }
}

/// The namespace a sysctl lives in, for the ones a container may set; `None` for sysctls that
/// are global to the machine. Keys may use '.' or '/' as separator.
pub fn sysctl_namespace(key: &str) -> Option<LinuxNamespaceType> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let k = key.replace('/', ".");
    if IPC.contains(&k.as_str()) || k.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if k.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if k == "kernel.domainname" || k == "kernel.hostname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// Refuse `linux.sysctl` entries that would change the host (as runc does): a sysctl must be
/// namespaced and the container must have that namespace (a new one, or one joined by path
/// that is not the runtime's own network namespace). kernel.hostname conflicts with the
/// `hostname` field.
pub fn check_sysctls(linux: Option<&Linux>, plan: &Plan) -> Result<(), NamespaceError> {
    let Some(map) = linux.and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for key in map.keys() {
        let Some(t) = sysctl_namespace(key) else {
            return Err(NamespaceError::Invalid(format!("sysctl {key:?} is not in a separate kernel namespace")));
        };
        if !plan.has(t) {
            return Err(NamespaceError::Invalid(format!(
                "sysctl {key:?} is not allowed in the host's {} namespace",
                type_name(t)
            )));
        }
        if t == LinuxNamespaceType::Uts && key.replace('/', ".") == "kernel.hostname" {
            return Err(NamespaceError::Invalid(format!(
                "sysctl {key:?} is not allowed as it conflicts with the hostname field"
            )));
        }
        if let Some(path) = plan.joins(t).filter(|_| t == LinuxNamespaceType::Network) {
            if same_file(path, "/proc/self/ns/net") {
                return Err(NamespaceError::Invalid(format!(
                    "sysctl {key:?} is not allowed in the host's network namespace ({} is ours)",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

fn same_file(a: &std::path::Path, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Open a namespace file for setns.
pub fn open_ns(t: LinuxNamespaceType, path: &PathBuf) -> Result<File, NamespaceError> {
    File::open(path).map_err(|err| NamespaceError::Open { kind: type_name(t), path: path.clone(), err })
}

/// setns(2) into the namespace behind `f`.
pub fn setns(t: LinuxNamespaceType, path: &Path, f: &File) -> Result<(), NamespaceError> {
    // SAFETY: setns only reads the fd and flag; the fd is valid for the File's lifetime.
    let r = unsafe { libc::setns(f.as_raw_fd(), clone_flag(t)) };
    if r != 0 {
        return Err(NamespaceError::Setns {
            kind: type_name(t),
            path: path.to_path_buf(),
            err: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

pub fn unshare(flags: libc::c_int, kind: &'static str) -> Result<(), NamespaceError> {
    // SAFETY: unshare takes only flags.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(NamespaceError::Unshare { kind, err: std::io::Error::last_os_error() });
    }
    Ok(())
}

fn format_map(maps: &[LinuxIdMapping]) -> String {
    let mut s = String::with_capacity(maps.len() * 24);
    for m in maps {
        s.push_str(&format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()));
    }
    s
}

fn write_proc(path: &str, data: &str) -> Result<(), NamespaceError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|err| NamespaceError::Write { path: path.to_string(), err })?;
    f.write_all(data.as_bytes()).map_err(|err| NamespaceError::Write { path: path.to_string(), err })
}

/// Write uid_map and gid_map of `pid` (a process in a new user namespace). With `deny_setgroups`
/// "deny" goes to /proc/PID/setgroups first (needed when the writer lacks CAP_SETGID outside).
pub fn write_id_maps(
    pid: i32,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
    deny_setgroups: bool,
) -> Result<(), NamespaceError> {
    if uid.is_empty() || gid.is_empty() {
        return Err(NamespaceError::Invalid("user namespace needs linux.uidMappings and linux.gidMappings".into()));
    }
    if deny_setgroups {
        write_proc(&format!("/proc/{pid}/setgroups"), "deny")?;
    }
    write_map(pid, "uid_map", "newuidmap", uid)?;
    write_map(pid, "gid_map", "newgidmap", gid)?;
    Ok(())
}

/// Writes /proc/PID/{uid,gid}_map; a non-root caller denied (EPERM: a mapping other than its own
/// id) falls back to the setuid helper of the uidmap package, which maps the ranges that
/// /etc/subuid and /etc/subgid grant it, as runc does.
fn write_map(pid: i32, file: &str, tool: &str, maps: &[LinuxIdMapping]) -> Result<(), NamespaceError> {
    let path = format!("/proc/{pid}/{file}");
    let err = match write_proc(&path, &format_map(maps)) {
        Err(NamespaceError::Write { err, .. }) if err.raw_os_error() == Some(libc::EPERM) => err,
        r => return r,
    };
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Err(NamespaceError::Write { path, err });
    }
    let mut cmd = std::process::Command::new(tool);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([m.container_id().to_string(), m.host_id().to_string(), m.size().to_string()]);
    }
    let out = match cmd.stdin(std::process::Stdio::null()).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NamespaceError::Invalid(format!(
                "write {path}: {err}: mapping ids other than the caller's own needs {tool} (from the uidmap package)"
            )))
        }
        Err(e) => return Err(NamespaceError::Invalid(format!("run {tool}: {e}"))),
    };
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        return Err(NamespaceError::Invalid(format!("{tool} {pid} failed ({}): {msg}", out.status)));
    }
    Ok(())
}

/// Create a time namespace for the caller's future children and write its offsets. Must be
/// called in the parent right before clone: offsets can only be set before a process enters.
pub fn prepare_time_ns(linux: &Linux) -> Result<(), NamespaceError> {
    unshare(libc::CLONE_NEWTIME, "time")?;
    let Some(offsets) = linux.time_offsets() else {
        return Ok(());
    };
    let mut data = String::new();
    for (clock, off) in offsets {
        let name = match clock.as_str() {
            "monotonic" | "boottime" => clock.as_str(),
            other => {
                return Err(NamespaceError::Invalid(format!(
                    "time offset for unknown clock {other:?} (monotonic or boottime)"
                )))
            }
        };
        data.push_str(&format!("{} {} {}\n", name, off.secs().unwrap_or(0), off.nanosecs().unwrap_or(0)));
    }
    if !data.is_empty() {
        write_proc("/proc/self/timens_offsets", &data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plan_new_and_join() {
        let l = linux(
            r#"{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"},{"type":"user","path":"/x"}]}"#,
        );
        let p = Plan::from_linux(Some(&l)).unwrap();
        assert_eq!(p.new_flags, libc::CLONE_NEWPID);
        assert_eq!(p.join[0].0, LinuxNamespaceType::User);
        assert_eq!(p.join.len(), 2);
        assert!(!p.single_clone());
        assert!(p.has(LinuxNamespaceType::Network));
        assert!(!p.creates(LinuxNamespaceType::Network));
    }

    #[test]
    fn sysctl_namespaces() {
        assert_eq!(sysctl_namespace("kernel.shmmax"), Some(LinuxNamespaceType::Ipc));
        assert_eq!(sysctl_namespace("kernel/shmmax"), Some(LinuxNamespaceType::Ipc));
        assert_eq!(sysctl_namespace("fs.mqueue.msg_max"), Some(LinuxNamespaceType::Ipc));
        assert_eq!(sysctl_namespace("net.ipv4.ip_forward"), Some(LinuxNamespaceType::Network));
        assert_eq!(sysctl_namespace("kernel.domainname"), Some(LinuxNamespaceType::Uts));
        assert_eq!(sysctl_namespace("kernel.pid_max"), None);
        assert_eq!(sysctl_namespace("vm.swappiness"), None);
        assert_eq!(sysctl_namespace("fs.mqueue"), None);
    }

    fn check(json: &str) -> Result<(), String> {
        let l = linux(json);
        let p = Plan::from_linux(Some(&l)).unwrap();
        check_sysctls(Some(&l), &p).map_err(|e| e.to_string())
    }

    #[test]
    fn sysctls_need_their_namespace() {
        assert!(check(r#"{"namespaces":[{"type":"ipc"}],"sysctl":{"kernel.shmmax":"1"}}"#).is_ok());
        assert!(check(r#"{"namespaces":[{"type":"ipc","path":"/proc/1/ns/ipc"}],"sysctl":{"kernel.sem":"1"}}"#).is_ok());
        assert!(check(r#"{"namespaces":[{"type":"network"}],"sysctl":{"net.ipv4.ip_forward":"1"}}"#).is_ok());
        assert!(check(r#"{"namespaces":[{"type":"uts"}],"sysctl":{"kernel.domainname":"d"}}"#).is_ok());
        assert!(check(r#"{"namespaces":[]}"#).is_ok());
        let e = check(r#"{"namespaces":[{"type":"network"}],"sysctl":{"kernel.shmmax":"1"}}"#).unwrap_err();
        assert!(e.contains("host's ipc namespace"), "{e}");
        let e = check(r#"{"namespaces":[{"type":"ipc"}],"sysctl":{"net/ipv4/ip_forward":"1"}}"#).unwrap_err();
        assert!(e.contains("host's network namespace"), "{e}");
        let e = check(r#"{"namespaces":[{"type":"ipc"}],"sysctl":{"kernel.pid_max":"1"}}"#).unwrap_err();
        assert!(e.contains("not in a separate kernel namespace"), "{e}");
        let e = check(r#"{"namespaces":[{"type":"uts"}],"sysctl":{"kernel.hostname":"h"}}"#).unwrap_err();
        assert!(e.contains("conflicts with the hostname field"), "{e}");
        let e = check(
            r#"{"namespaces":[{"type":"network","path":"/proc/self/ns/net"}],"sysctl":{"net.core.somaxconn":"1"}}"#,
        )
        .unwrap_err();
        assert!(e.contains("host's network namespace"), "{e}");
    }

    #[test]
    fn plan_rejects_duplicates_and_relative() {
        let l = linux(r#"{"namespaces":[{"type":"pid"},{"type":"pid"}]}"#);
        assert_eq!(
            Plan::from_linux(Some(&l)).unwrap_err().to_string(),
            r#"malformed spec file: duplicated ns {"pid" ""}"#
        );
        let l = linux(r#"{"namespaces":[{"type":"network","path":"rel/x"}]}"#);
        assert!(Plan::from_linux(Some(&l)).unwrap_err().to_string().contains("not absolute"));
    }

    #[test]
    fn single_clone_with_userns() {
        let l = linux(r#"{"namespaces":[{"type":"user"},{"type":"mount"}]}"#);
        assert!(Plan::from_linux(Some(&l)).unwrap().single_clone());
        let l = linux(r#"{"namespaces":[{"type":"user"},{"type":"network","path":"/n"}]}"#);
        assert!(!Plan::from_linux(Some(&l)).unwrap().single_clone());
    }

    #[test]
    fn id_map_format() {
        let m: Vec<LinuxIdMapping> = serde_json::from_str(
            r#"[{"containerID":0,"hostID":1000,"size":1},{"containerID":1,"hostID":100000,"size":65536}]"#,
        )
        .unwrap();
        assert_eq!(format_map(&m), "0 1000 1\n1 100000 65536\n");
    }
}
