//! An image turned into an OCI bundle: the config.json `docker run` would give the container
//! ([`build_spec`]), the bind mounts of the per-container /etc/{hostname,hosts,resolv.conf} (written by the network layer),
//! and the rootfs as an overlay of the image's layer snapshots ([`mount_rootfs`]) or, where
//! overlayfs cannot be used, a flattened copy of them.
//!
//! Overlay mounting: the new mount API (fsopen/fsconfig/fsmount/move_mount) with one
//! `lowerdir+` per layer (Linux >= 6.8). It has no length limit on the whole layer list (the
//! mount(2) data page limits `lowerdir=a:b:c` to 4 KiB, ~30 snapshot paths), needs no escaping
//! of `:`/`,` in paths, and changes no process-wide state, so it is safe in the multi-threaded
//! engine (docker's alternative, chdir to the layers' common parent, is not). fsconfig strings
//! are limited to 256 bytes, so a longer layer path is passed as an open directory fd instead
//! (FSCONFIG_SET_FD, Linux >= 6.13). Older kernels get mount(2); when its data would exceed a
//! page, a forked child chdirs to the layers' common parent and mounts with relative paths.

use super::passwd::{self, PasswdError};
use super::seccomp_profile::{self, ProfileError};
use super::types::ImageConfig;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where `--init`'s binary is bind-mounted in the container.
pub const INIT_PATH: &str = "/sbin/berth-init";
/// Annotation carrying the image's (or --stop-signal's) stop signal.
pub const STOP_SIGNAL_ANNOTATION: &str = "org.opencontainers.image.stopSignal";

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, in kernel number order (index = capability number).
pub use berth::ALL_CAPS;

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Devices every container may use (device cgroup allow list after deny-all): mknod of any
/// node, then null, random, full, tty, zero, urandom, console, pts, ptmx, tun.
const ALLOWED_DEVICES: &[(&str, i64, i64, &str)] = &[
    ("c", -1, -1, "m"),
    ("b", -1, -1, "m"),
    ("c", 1, 3, "rwm"),
    ("c", 1, 8, "rwm"),
    ("c", 1, 7, "rwm"),
    ("c", 5, 0, "rwm"),
    ("c", 1, 5, "rwm"),
    ("c", 1, 9, "rwm"),
    ("c", 5, 1, "rwm"),
    ("c", 136, -1, "rwm"),
    ("c", 5, 2, "rwm"),
    ("c", 10, 200, "rwm"),
];

/// An errno as its plain text ("Invalid argument"), without Rust's " (os error N)".
#[derive(Debug)]
pub struct Sys(pub std::io::Error);

impl fmt::Display for Sys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.to_string();
        f.write_str(s.split(" (os error").next().unwrap_or(&s))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("no command specified")]
    NoCommand,
    #[error("the working directory {0:?} is invalid, it needs to be an absolute path")]
    Workdir(String),
    #[error(transparent)]
    User(#[from] PasswdError),
    #[error("unknown capability {0:?}")]
    UnknownCap(String),
    #[error(transparent)]
    Seccomp(#[from] ProfileError),
    #[error("invalid mount {dest:?}: {msg}")]
    Mount { dest: String, msg: String },
    #[error("invalid {what}: {msg}")]
    Invalid { what: &'static str, msg: String },
    /// A syscall or file operation on a path failed: "mount overlay on /x: Invalid argument".
    #[error("{op} {}: {err}", path.display())]
    Io { op: String, path: PathBuf, err: Sys },
}

fn io_err(op: impl Into<String>, path: &Path, err: std::io::Error) -> BundleError {
    BundleError::Io { op: op.into(), path: path.to_path_buf(), err: Sys(err) }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompChoice {
    /// berth's docker-like default profile, fitted to the final capability set.
    #[default]
    Default,
    /// No seccomp filter.
    Unconfined,
    /// A profile file: runtime-spec `linux.seccomp` object or docker's profile format.
    File(PathBuf),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkNs {
    /// A new network namespace (`--network none` or a bridge the network layer sets up).
    #[default]
    New,
    /// The host's network namespace (`--network host`).
    Host,
    /// Join an existing namespace (`/proc/PID/ns/net` or a bind-mounted nsfs file).
    Path(PathBuf),
}

/// A bind mount (`-v`/`--mount type=bind|volume`, volumes already resolved to a host dir).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountSpec {
    /// Absolute host path.
    pub source: String,
    /// Absolute path in the container.
    pub destination: String,
    pub readonly: bool,
    /// Extra mount options ("nosuid", a propagation like "rshared", "bind" for a
    /// non-recursive bind). "rbind" and "rprivate" are added unless overridden.
    pub options: Vec<String>,
}

/// A host device made available in the container (`--device HOST[:CONTAINER[:PERMS]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSpec {
    pub host: PathBuf,
    /// Path in the container; empty = same as on the host.
    pub container: String,
    /// Cgroup permissions, a combination of "rwm"; empty = "rwm".
    pub permissions: String,
}

/// One `--ulimit`: `kind` is "nofile" or "RLIMIT_NOFILE".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// Host paths of per-container files bind-mounted over /etc/hostname, /etc/hosts and
/// /etc/resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcFiles {
    pub hostname: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

/// What `docker run` flags change in the container's config. `Default` = `docker run IMAGE`.
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// Overrides the image's Cmd (`docker run IMAGE ARGS...`); None or empty = image Cmd.
    pub args: Option<Vec<String>>,
    /// `--entrypoint`: replaces the image's Entrypoint and drops its Cmd (Some(vec![]) clears it).
    pub entrypoint: Option<Vec<String>>,
    /// `-e KEY=VALUE` added to / overriding the image's Env; a bare `KEY` removes KEY.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u user[:group]`, names or numbers, resolved in the rootfs; None = image User.
    pub user: Option<String>,
    /// `--group-add`: group names (resolved in the rootfs) or gids.
    pub group_add: Vec<String>,
    /// `-h`; also HOSTNAME in the env.
    pub hostname: Option<String>,
    /// `-t`.
    pub terminal: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `--privileged`: all capabilities, no seccomp (unless a file is given), no masked or
    /// read-only paths, all host devices, /sys and cgroups writable.
    pub privileged: bool,
    /// `--cap-add`/`--cap-drop`: "NET_ADMIN", "CAP_NET_ADMIN", "net_admin" or "ALL".
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt seccomp=...`.
    pub seccomp: SeccompChoice,
    /// `--security-opt apparmor=PROFILE`.
    pub apparmor: Option<String>,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
    /// `-v`/`--mount` binds and volumes.
    pub mounts: Vec<MountSpec>,
    /// `--tmpfs DEST[:OPTIONS]` as (destination, options "size=64m,mode=1777").
    pub tmpfs: Vec<(String, String)>,
    /// `--device`.
    pub devices: Vec<DeviceSpec>,
    /// `--label`: annotations after the image's Labels.
    pub labels: BTreeMap<String, String>,
    /// `-m` in bytes (minimum 6 MiB).
    pub memory: Option<i64>,
    /// `--memory-swap` in bytes (memory + swap), -1 = unlimited; None = twice `memory`
    /// where swap accounting exists, as docker does.
    pub memory_swap: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids-limit`; <= 0 = unlimited.
    pub pids_limit: Option<i64>,
    /// `--shm-size` in bytes; None = 64 MiB.
    pub shm_size: Option<i64>,
    /// `--network`.
    pub netns: NetworkNs,
    /// `--pid host`, `--ipc host`, `--uts host`, `--cgroupns host`.
    pub pid_host: bool,
    pub ipc_host: bool,
    pub uts_host: bool,
    pub cgroupns_host: bool,
    /// linux.cgroupsPath.
    pub cgroups_path: Option<String>,
    /// Per-container /etc files to bind-mount (written by `network::attach`).
    pub etc_files: Option<EtcFiles>,
    /// `--init`: host path of the init binary, bind-mounted read-only at [`INIT_PATH`] and
    /// run as `INIT_PATH -- ARGS...`.
    pub init: Option<PathBuf>,
    /// `--stop-signal`; None = image StopSignal.
    pub stop_signal: Option<String>,
    /// `--sysctl`.
    pub sysctls: BTreeMap<String, String>,
    /// `--ulimit`.
    pub rlimits: Vec<Rlimit>,
    /// `--oom-score-adj`.
    pub oom_score_adj: Option<i32>,
}

/// The container's process.args: docker's Entrypoint + Cmd rules.
pub fn process_args(img: &ImageConfig, opts: &BundleOptions) -> Result<Vec<String>, BundleError> {
    let cfg = &img.config;
    let user_args = opts.args.as_ref().filter(|a| !a.is_empty());
    let (entry, cmd): (&[String], &[String]) = match &opts.entrypoint {
        // --entrypoint drops the image's Cmd too.
        Some(e) => (e, user_args.map(Vec::as_slice).unwrap_or(&[])),
        None => {
            (cfg.entrypoint.as_deref().unwrap_or(&[]), user_args.or(cfg.cmd.as_ref()).map(Vec::as_slice).unwrap_or(&[]))
        }
    };
    let mut args: Vec<String> = entry.iter().chain(cmd).cloned().collect();
    if args.is_empty() {
        return Err(BundleError::NoCommand);
    }
    if opts.init.is_some() {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    Ok(args)
}

/// Set `kv` ("KEY=VALUE") in `env`, replacing KEY in place; a bare "KEY" removes KEY.
fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
    let same = |e: &String| e.split_once('=').map(|(k, _)| k).unwrap_or(e) == key;
    if !kv.contains('=') {
        env.retain(|e| !same(e));
        return;
    }
    match env.iter_mut().find(|e| same(e)) {
        Some(slot) => *slot = kv.to_string(),
        None => env.push(kv.to_string()),
    }
}

/// The container's env: PATH, HOSTNAME, TERM (with a terminal), then the image's Env, then
/// `opts.env`, then HOME from passwd when nothing set it.
pub fn process_env(img: &ImageConfig, opts: &BundleOptions, home: &str) -> Vec<String> {
    let mut env = vec![format!("PATH={DEFAULT_PATH_ENV}")];
    if let Some(h) = &opts.hostname {
        env.push(format!("HOSTNAME={h}"));
    }
    if opts.terminal {
        env.push("TERM=xterm".to_string());
    }
    for kv in img.config.env.iter().flatten().chain(&opts.env) {
        if !kv.is_empty() {
            set_env(&mut env, kv);
        }
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Clean an absolute path lexically ("/a//b/./c/" → "/a/b/c", ".." kept from going above /).
fn clean_abs(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// The process cwd: `-w`, else the image's WorkingDir, else "/".
pub fn process_cwd(img: &ImageConfig, opts: &BundleOptions) -> Result<String, BundleError> {
    let w = opts.workdir.as_deref().or(img.config.working_dir.as_deref()).unwrap_or("");
    if w.is_empty() {
        return Ok("/".into());
    }
    clean_abs(w).ok_or_else(|| BundleError::Workdir(w.to_string()))
}

fn norm_cap(c: &str) -> Result<String, BundleError> {
    let up = c.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let name = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
    if ALL_CAPS.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(BundleError::UnknownCap(c.to_string()))
    }
}

/// The capabilities this kernel has (cap_last_cap), in number order.
fn host_caps() -> &'static [&'static str] {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(ALL_CAPS.len() - 1);
    &ALL_CAPS[..(last + 1).min(ALL_CAPS.len())]
}

/// The container's capability set (bounding = effective = permitted), docker's rules:
/// privileged = all; `--cap-add ALL` = all minus drops; `--cap-drop ALL` = only the adds;
/// else default minus drops plus adds. Sorted by capability number.
pub fn capabilities(opts: &BundleOptions) -> Result<Vec<String>, BundleError> {
    if opts.privileged {
        return Ok(host_caps().iter().map(|s| s.to_string()).collect());
    }
    let adds = opts.cap_add.iter().map(|c| norm_cap(c)).collect::<Result<Vec<_>, _>>()?;
    let drops = opts.cap_drop.iter().map(|c| norm_cap(c)).collect::<Result<Vec<_>, _>>()?;
    let all = |v: &[String]| v.iter().any(|c| c == "ALL");
    let set: Vec<String> = if all(&adds) {
        host_caps().iter().map(|s| s.to_string()).filter(|c| !drops.contains(c)).collect()
    } else if all(&drops) {
        adds
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).filter(|c| !drops.contains(c)).chain(adds).collect()
    };
    let mut out: Vec<String> = ALL_CAPS.iter().filter(|c| set.iter().any(|s| s == *c)).map(|s| s.to_string()).collect();
    out.dedup();
    Ok(out)
}

/// The image's Volumes (anonymous volumes for the container layer to create), sorted, cleaned.
pub fn image_volumes(img: &ImageConfig) -> Vec<String> {
    let mut v: Vec<String> =
        img.config.volumes.iter().flat_map(|m| m.keys()).filter_map(|k| clean_abs(k)).filter(|k| k != "/").collect();
    v.sort();
    v.dedup();
    v
}

/// The image's ExposedPorts as (port, protocol) pairs: "80/tcp", "53/udp", "8080" (tcp),
/// "7000-7002/tcp" (a range). Malformed keys are skipped.
pub fn exposed_ports(img: &ImageConfig) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for key in img.config.exposed_ports.iter().flat_map(|m| m.keys()) {
        let (ports, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            continue;
        }
        let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
        let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else { continue };
        if lo == 0 || hi < lo {
            continue;
        }
        out.extend((lo..=hi).map(|p| (p, proto.clone())));
    }
    out.sort();
    out.dedup();
    out
}

fn mount_json(dest: &str, kind: &str, source: &str, options: &[String]) -> Value {
    json!({"destination": dest, "type": kind, "source": source, "options": options})
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// docker's default mounts.
fn default_mounts(opts: &BundleOptions) -> Vec<Value> {
    let sys_ro = if opts.privileged { &[][..] } else { &["ro"][..] };
    let shm = format!("size={}k", opts.shm_size.filter(|s| *s > 0).unwrap_or(64 << 20) / 1024);
    let with = |base: &[&str], extra: &[&str]| -> Vec<String> { strs(base).into_iter().chain(strs(extra)).collect() };
    vec![
        mount_json("/proc", "proc", "proc", &strs(&["nosuid", "noexec", "nodev"])),
        mount_json("/dev", "tmpfs", "tmpfs", &strs(&["nosuid", "strictatime", "mode=755", "size=65536k"])),
        mount_json(
            "/dev/pts",
            "devpts",
            "devpts",
            &strs(&["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        ),
        mount_json("/sys", "sysfs", "sysfs", &with(&["nosuid", "noexec", "nodev"], sys_ro)),
        mount_json("/sys/fs/cgroup", "cgroup", "cgroup", &with(&["nosuid", "noexec", "nodev", "relatime"], sys_ro)),
        mount_json("/dev/mqueue", "mqueue", "mqueue", &strs(&["nosuid", "noexec", "nodev"])),
        mount_json("/dev/shm", "tmpfs", "shm", &with(&["nosuid", "noexec", "nodev", "mode=1777"], &[&shm])),
    ]
}

const PROPAGATIONS: &[&str] =
    &["private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"];

fn check_dest(dest: &str) -> Result<String, BundleError> {
    match clean_abs(dest) {
        Some(d) if d != "/" => Ok(d),
        _ => Err(BundleError::Mount {
            dest: dest.to_string(),
            msg: "destination must be an absolute path other than /".into(),
        }),
    }
}

/// User mounts: binds, tmpfs, /etc files, init; sorted by destination depth so that a parent
/// is mounted before what goes inside it.
fn user_mounts(opts: &BundleOptions) -> Result<Vec<(String, Value)>, BundleError> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for m in &opts.mounts {
        let dest = check_dest(&m.destination)?;
        if !m.source.starts_with('/') {
            return Err(BundleError::Mount { dest, msg: format!("source {:?} is not an absolute path", m.source) });
        }
        let mut o: Vec<String> = Vec::new();
        if !m.options.iter().any(|x| x == "bind" || x == "rbind") {
            o.push("rbind".into());
        }
        o.extend(m.options.iter().cloned());
        if m.readonly && !o.iter().any(|x| x == "ro") {
            o.push("ro".into());
        }
        if !o.iter().any(|x| PROPAGATIONS.contains(&x.as_str())) {
            o.push("rprivate".into());
        }
        out.push((dest.clone(), mount_json(&dest, "bind", &m.source, &o)));
    }
    for (d, opt) in &opts.tmpfs {
        let dest = check_dest(d)?;
        let user: Vec<&str> = opt.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        // Defaults unless the user says otherwise ("exec" lifts "noexec", ...).
        let mut o: Vec<String> =
            ["noexec", "nosuid", "nodev"].iter().filter(|d| !user.contains(&&d[2..])).map(|s| s.to_string()).collect();
        o.extend(user.iter().map(|s| s.to_string()));
        out.push((dest.clone(), mount_json(&dest, "tmpfs", "tmpfs", &o)));
    }
    if let Some(e) = &opts.etc_files {
        let mut o = strs(&["rbind", "rprivate"]);
        if opts.read_only {
            o.push("ro".into());
        }
        for (dest, p) in
            [("/etc/hostname", &e.hostname), ("/etc/hosts", &e.hosts), ("/etc/resolv.conf", &e.resolv_conf)]
        {
            if let Some(p) = p {
                out.push((dest.to_string(), mount_json(dest, "bind", &p.to_string_lossy(), &o)));
            }
        }
    }
    if let Some(init) = &opts.init {
        out.push((INIT_PATH.into(), mount_json(INIT_PATH, "bind", &init.to_string_lossy(), &strs(&["bind", "ro"]))));
    }
    let depth = |d: &str| d.split('/').filter(|c| !c.is_empty()).count();
    out.sort_by_key(|(d, _)| depth(d));
    Ok(out)
}

fn dev_major(d: u64) -> i64 {
    (((d >> 8) & 0xfff) | ((d >> 32) & !0xfff)) as i64
}
fn dev_minor(d: u64) -> i64 {
    ((d & 0xff) | ((d >> 12) & !0xff)) as i64
}

fn device_json(path: &str, m: &std::fs::Metadata) -> Option<Value> {
    let kind = if m.file_type().is_char_device() {
        "c"
    } else if m.file_type().is_block_device() {
        "b"
    } else {
        return None;
    };
    Some(json!({"path": path, "type": kind, "major": dev_major(m.rdev()), "minor": dev_minor(m.rdev()),
        "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid()}))
}

/// Every device node under the host's /dev (for --privileged), as docker lists them.
fn host_devices() -> Vec<Value> {
    fn walk(dir: &Path, out: &mut Vec<Value>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                let name = e.file_name();
                if !matches!(name.to_str(), Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")) {
                    walk(&p, out);
                }
            } else if p != Path::new("/dev/console") {
                if let Some(d) = device_json(&p.to_string_lossy(), &m) {
                    out.push(d);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/dev"), &mut out);
    out
}

fn host_cpus() -> i64 {
    // SAFETY: sysconf with a valid name has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as i64
    } else {
        1
    }
}

/// Swap limits need swap accounting: memsw files on cgroup v1 (often off), always on v2.
fn swap_accounting() -> bool {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    v2 || Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
}

fn resources(opts: &BundleOptions) -> Result<Map<String, Value>, BundleError> {
    let mut r = Map::new();
    let invalid = |what, msg: String| BundleError::Invalid { what, msg };
    if let Some(mem) = opts.memory.filter(|m| *m != 0) {
        if mem < 6 << 20 {
            return Err(invalid("memory limit", format!("{mem}: the minimum allowed is 6MB")));
        }
        let mut m = json!({"limit": mem});
        match opts.memory_swap {
            Some(-1) => m["swap"] = json!(-1),
            Some(s) if s > 0 => {
                if s < mem {
                    return Err(invalid("memory-swap limit", format!("{s}: must be at least the memory limit {mem}")));
                }
                m["swap"] = json!(s);
            }
            _ if swap_accounting() => m["swap"] = json!(mem.saturating_mul(2)),
            _ => {}
        }
        r.insert("memory".into(), m);
    }
    if let Some(c) = opts.cpus.filter(|c| *c != 0.0) {
        let n = host_cpus();
        if !(c.is_finite() && c >= 0.01 && c <= n as f64) {
            return Err(invalid(
                "cpus",
                format!("{c}: range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"),
            ));
        }
        r.insert("cpu".into(), json!({"quota": (c * 100_000.0).round() as i64, "period": 100_000}));
    }
    if let Some(p) = opts.pids_limit.filter(|p| *p > 0) {
        r.insert("pids".into(), json!({"limit": p}));
    }
    let mut devs = if opts.privileged {
        vec![json!({"allow": true, "access": "rwm"})]
    } else {
        let mut d = vec![json!({"allow": false, "access": "rwm"})];
        for (t, maj, min, acc) in ALLOWED_DEVICES {
            let mut e = json!({"allow": true, "type": t, "access": acc});
            if *maj >= 0 {
                e["major"] = json!(maj);
            }
            if *min >= 0 {
                e["minor"] = json!(min);
            }
            d.push(e);
        }
        d
    };
    for d in &opts.devices {
        let m = std::fs::metadata(&d.host).map_err(|e| io_err("stat device", &d.host, e))?;
        let Some(j) = device_json("", &m) else {
            return Err(invalid("device", format!("{} is not a device node", d.host.display())));
        };
        let acc = if d.permissions.is_empty() { "rwm" } else { d.permissions.as_str() };
        if acc.is_empty() || !acc.chars().all(|c| "rwm".contains(c)) {
            return Err(invalid("device", format!("{}: bad permissions {acc:?}", d.host.display())));
        }
        devs.push(json!({"allow": true, "type": j["type"], "major": j["major"], "minor": j["minor"], "access": acc}));
    }
    r.insert("devices".into(), Value::Array(devs));
    Ok(r)
}

/// Build the runtime-spec config.json for running `img` with `opts` (as docker/moby would for
/// `docker run`). `rootfs` is where the container's root is (read for the user lookup); it is
/// written as root.path as given (pass the path relative to the bundle, or set root.path
/// afterwards, for a relocatable bundle).
pub fn build_spec(img: &ImageConfig, rootfs: &Path, opts: &BundleOptions) -> Result<Value, BundleError> {
    let args = process_args(img, opts)?;
    let cwd = process_cwd(img, opts)?;
    let user_spec = opts.user.as_deref().or(img.config.user.as_deref()).unwrap_or("");
    let mut user = passwd::resolve_in_rootfs(rootfs, user_spec)?;
    if !opts.group_add.is_empty() {
        let groups =
            passwd::read_rootfs_file(rootfs, "etc/group")?.map(|t| passwd::parse_group(&t)).unwrap_or_default();
        for g in &opts.group_add {
            let gid = match groups.iter().find(|e| &e.name == g) {
                Some(e) => e.gid,
                None => g
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= i32::MAX as u32)
                    .ok_or_else(|| PasswdError::NoGroup(g.clone()))?,
            };
            if !user.additional_gids.contains(&gid) {
                user.additional_gids.push(gid);
            }
        }
    }
    let env = process_env(img, opts, &user.home);
    let caps = capabilities(opts)?;

    let mut process = json!({
        "terminal": opts.terminal,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": opts.no_new_privileges,
    });
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }
    if let Some(a) = &opts.apparmor {
        process["apparmorProfile"] = json!(a);
    }
    if let Some(o) = opts.oom_score_adj {
        process["oomScoreAdj"] = json!(o);
    }
    if !opts.rlimits.is_empty() {
        let rl: Vec<Value> = opts
            .rlimits
            .iter()
            .map(|r| {
                let k = r.kind.to_ascii_uppercase();
                let k = if k.starts_with("RLIMIT_") { k } else { format!("RLIMIT_{k}") };
                json!({"type": k, "soft": r.soft, "hard": r.hard})
            })
            .collect();
        process["rlimits"] = Value::Array(rl);
    }

    // Mounts: docker's defaults, replaced by a user mount on the same destination.
    let user_mounts = user_mounts(opts)?;
    let mut mounts: Vec<Value> = default_mounts(opts)
        .into_iter()
        .filter(|m| !user_mounts.iter().any(|(d, _)| m["destination"] == d.as_str()))
        .collect();
    mounts.extend(user_mounts.into_iter().map(|(_, m)| m));

    let mut ns = Vec::new();
    let mut add_ns = |t: &str, host: bool| {
        if !host {
            ns.push(json!({"type": t}));
        }
    };
    add_ns("pid", opts.pid_host);
    add_ns("ipc", opts.ipc_host);
    add_ns("uts", opts.uts_host);
    add_ns("mount", false);
    match &opts.netns {
        NetworkNs::New => ns.push(json!({"type": "network"})),
        NetworkNs::Host => {}
        NetworkNs::Path(p) => ns.push(json!({"type": "network", "path": p})),
    }
    if !opts.cgroupns_host {
        ns.push(json!({"type": "cgroup"}));
    }

    let mut linux = Map::new();
    linux.insert("resources".into(), Value::Object(resources(opts)?));
    if let Some(c) = &opts.cgroups_path {
        linux.insert("cgroupsPath".into(), json!(c));
    }
    linux.insert("namespaces".into(), Value::Array(ns));
    if !opts.privileged {
        linux.insert("maskedPaths".into(), json!(MASKED_PATHS));
        linux.insert("readonlyPaths".into(), json!(READONLY_PATHS));
    }
    let mut devices = if opts.privileged { host_devices() } else { Vec::new() };
    for d in &opts.devices {
        let m = std::fs::metadata(&d.host).map_err(|e| io_err("stat device", &d.host, e))?;
        let path = if d.container.is_empty() { d.host.to_string_lossy().into_owned() } else { d.container.clone() };
        let path = clean_abs(&path)
            .ok_or_else(|| BundleError::Invalid { what: "device", msg: format!("{path:?} is not an absolute path") })?;
        if let Some(j) = device_json(&path, &m) {
            devices.retain(|x| x["path"] != path.as_str());
            devices.push(j);
        }
    }
    if !devices.is_empty() {
        linux.insert("devices".into(), Value::Array(devices));
    }
    let seccomp = match (&opts.seccomp, opts.privileged) {
        (SeccompChoice::File(p), _) => Some(seccomp_profile::load_profile(p, &caps)?),
        (SeccompChoice::Unconfined, _) | (SeccompChoice::Default, true) => None,
        (SeccompChoice::Default, false) => Some(seccomp_profile::default_profile(&caps)),
    };
    if let Some(s) = seccomp {
        linux.insert("seccomp".into(), s);
    }
    if !opts.sysctls.is_empty() {
        linux.insert("sysctl".into(), json!(opts.sysctls));
    }

    let mut annotations: BTreeMap<String, String> = img.config.labels.clone().unwrap_or_default();
    annotations.extend(opts.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(s) = opts.stop_signal.as_ref().or(img.config.stop_signal.as_ref()).filter(|s| !s.is_empty()) {
        annotations.insert(STOP_SIGNAL_ANNOTATION.into(), s.clone());
    }

    let mut spec = json!({
        "ociVersion": "1.1.0",
        "process": process,
        "root": {"path": rootfs, "readonly": opts.read_only},
        "mounts": mounts,
        "linux": linux,
    });
    if let (Some(h), false) = (&opts.hostname, opts.uts_host) {
        spec["hostname"] = json!(h);
    }
    if !annotations.is_empty() {
        spec["annotations"] = json!(annotations);
    }
    Ok(spec)
}

/// Write `spec` as `bundle/config.json` (through a temporary file and rename).
pub fn write_config(bundle: &Path, spec: &Value) -> Result<(), BundleError> {
    let tmp = bundle.join(".config.json.tmp");
    let dst = bundle.join("config.json");
    let data = serde_json::to_vec_pretty(spec).map_err(|e| io_err("encode", &dst, e.into()))?;
    std::fs::write(&tmp, data).map_err(|e| io_err("write", &tmp, e))?;
    std::fs::rename(&tmp, &dst).map_err(|e| io_err("rename to", &dst, e))
}

/// Create the spec's process.cwd inside `rootfs` if missing (mode 0755, root-owned, as docker
/// does). Every component, symlinks included, is resolved inside the rootfs; a dangling
/// symlink on the way gets its target created.
pub fn ensure_workdir(rootfs: &Path, spec: &Value) -> Result<(), BundleError> {
    let cwd = spec.pointer("/process/cwd").and_then(Value::as_str).unwrap_or("/");
    let full = rootfs.join(cwd.trim_start_matches('/'));
    let err = |op: &str, e: std::io::Error| io_err(op, &full, e);
    let split =
        |p: &str| -> Vec<String> { p.split('/').filter(|c| !c.is_empty() && *c != ".").map(String::from).collect() };
    let mut todo: std::collections::VecDeque<String> = split(cwd).into();
    if todo.is_empty() {
        return Ok(());
    }
    let root = passwd::open_dir_path(rootfs).map_err(|e| io_err("open", rootfs, e))?;
    let dir_flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let open = |comps: &[String]| -> std::io::Result<OwnedFd> {
        if comps.is_empty() {
            passwd::open_dir_path(rootfs)
        } else {
            passwd::open_in_root(&root, &comps.join("/"), dir_flags)
        }
    };
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(comp) = todo.pop_front() {
        done.push(comp);
        match open(&done) {
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err("open workdir", e)),
        }
        let comp = done.pop().unwrap_or_default();
        let parent = open(&done).map_err(|e| err("open workdir", e))?;
        let name = CString::new(comp.as_str())
            .map_err(|_| err("create workdir", std::io::Error::from_raw_os_error(libc::EINVAL)))?;
        let mut buf = [0u8; libc::PATH_MAX as usize];
        // SAFETY: valid dirfd, C string and buffer of the given length.
        let n = unsafe { libc::readlinkat(parent.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            // A dangling symlink: continue along its target, inside the rootfs.
            links += 1;
            if links > 40 {
                return Err(err("create workdir", std::io::Error::from_raw_os_error(libc::ELOOP)));
            }
            let target = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
            if target.starts_with('/') {
                done.clear();
            }
            for c in split(&target).into_iter().rev() {
                todo.push_front(c);
            }
            continue;
        }
        // SAFETY: valid dirfd and C string.
        if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(err("create workdir", e));
            }
        }
        done.push(comp);
    }
    open(&done).map(|_| ()).map_err(|e| err("open workdir", e))
}

// ---------------------------------------------------------------------------------------
// rootfs: overlay mount, copy fallback

/// How [`mount_rootfs`] made the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    /// An overlay mount at the target (undo with [`unmount_rootfs`]).
    Overlay,
    /// A plain copy of the layers in the target directory (upper/work unused).
    Copy,
}

fn cstr(p: &Path) -> Result<CString, BundleError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io_err("use path", p, std::io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Mount the overlay of `lowers` (top layer first) with `upper` and `work` at `target`
/// (all created when missing). When overlayfs refuses (e.g. upper on overlayfs or a filesystem
/// without the needed features), the layers are copied into `target` instead.
pub fn mount_rootfs(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<RootfsKind, BundleError> {
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).map_err(|e| io_err("create", d, e))?;
    }
    if lowers.is_empty() {
        return Ok(RootfsKind::Copy); // an image without layers: an empty root
    }
    match mount_overlay(lowers, upper, work, target) {
        Ok(()) => Ok(RootfsKind::Overlay),
        Err(_) => {
            copy_rootfs(lowers, target)?;
            Ok(RootfsKind::Copy)
        }
    }
}

/// Mount overlayfs (see the module doc for the method and fallbacks).
pub fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), BundleError> {
    match mount_overlay_fsconfig(lowers, upper, work, target) {
        Ok(()) => Ok(()),
        Err(Fallback::Legacy) => mount_overlay_legacy(lowers, upper, work, target),
        Err(Fallback::Fail(e)) => Err(e),
    }
}

enum Fallback {
    /// The kernel lacks the new mount API or `lowerdir+`.
    Legacy,
    Fail(BundleError),
}

// Kernel ABI of the new mount API (include/uapi/linux/mount.h).
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
/// fsconfig copies at most this many bytes of a string value (NUL included).
const FSCONFIG_STRING_MAX: usize = 256;

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn mount_overlay_fsconfig(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), Fallback> {
    let fail = |op: &str, p: &Path, e| Fallback::Fail(io_err(op, p, e));
    // SAFETY: valid C string; the result is checked.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        return Err(Fallback::Legacy);
    }
    // SAFETY: a new descriptor that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    let set = |key: &CStr, path: &Path| -> std::io::Result<()> {
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() < FSCONFIG_STRING_MAX {
            let v = CString::new(bytes).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: valid fd and C strings.
            let r = unsafe {
                libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), FSCONFIG_SET_STRING, key.as_ptr(), v.as_ptr(), 0)
            };
            return if r < 0 { Err(last_err()) } else { Ok(()) };
        }
        // Too long for a string value: pass the opened directory (Linux >= 6.13).
        let d = std::fs::File::open(path)?;
        // SAFETY: valid fds and C string; value must be NULL for SET_FD.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_FD,
                key.as_ptr(),
                std::ptr::null::<u8>(),
                d.as_raw_fd(),
            )
        };
        if r < 0 {
            Err(last_err())
        } else {
            Ok(())
        }
    };
    for l in lowers {
        if let Err(e) = set(c"lowerdir+", l) {
            // lowerdir+ refused with EINVAL: a kernel before 6.8 (unknown key).
            // (Or a long path on 6.8-6.12, whose fsconfig lacks SET_FD for overlay.)
            if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EBADF)) {
                return Err(Fallback::Legacy);
            }
            return Err(fail("overlay lowerdir", l, e));
        }
    }
    set(c"upperdir", upper).map_err(|e| fail("overlay upperdir", upper, e))?;
    set(c"workdir", work).map_err(|e| fail("overlay workdir", work, e))?;
    for (k, v) in [(c"index", c"off"), (c"source", c"overlay")] {
        // SAFETY: valid fd and C strings. Best effort: neither is needed for the mount.
        unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0) };
    }
    // SAFETY: valid fd; no strings for CMD_CREATE.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    };
    if r < 0 {
        let e = last_err();
        // Before 6.5 overlayfs had no fs_context of its own: the keys above were only collected
        // into a legacy option string, and `lowerdir+` is refused here, at creation.
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Err(Fallback::Legacy);
        }
        return Err(fail("create overlay for", target, e));
    }
    // SAFETY: valid fd; the result is checked.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if m < 0 {
        return Err(fail("fsmount overlay for", target, last_err()));
    }
    // SAFETY: a new descriptor that nothing else owns.
    let m = unsafe { OwnedFd::from_raw_fd(m as i32) };
    let t = cstr(target).map_err(Fallback::Fail)?;
    // SAFETY: valid fds and C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            m.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(fail("mount overlay on", target, last_err()));
    }
    Ok(())
}

/// Escape a path for overlay's legacy option string (`:` separates layers, `,` options).
fn ovl_escape(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ':' | ',') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn page_size() -> usize {
    // SAFETY: sysconf with a valid name has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// The longest common ancestor directory of `paths` (all absolute).
fn common_parent(paths: &[PathBuf]) -> PathBuf {
    let mut common: Vec<Component> = match paths.first().and_then(|p| p.parent()) {
        Some(p) => p.components().collect(),
        None => return PathBuf::from("/"),
    };
    for p in &paths[1..] {
        let c: Vec<Component> = p.parent().map(|x| x.components().collect()).unwrap_or_default();
        let n = common.iter().zip(&c).take_while(|(a, b)| a == b).count();
        common.truncate(n);
    }
    common.iter().collect()
}

/// mount(2) with `lowerdir=a:b:c,...`. Data longer than a page is retried with lower paths
/// relative to their common parent, in a forked child that chdirs there (the parent's cwd, which
/// all its threads share, stays untouched).
pub(crate) fn mount_overlay_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), BundleError> {
    let tail = format!(",upperdir={},workdir={},index=off", ovl_escape(upper), ovl_escape(work));
    let join = |ls: Vec<String>| format!("lowerdir={}{tail}", ls.join(":"));
    let data = join(lowers.iter().map(|l| ovl_escape(l)).collect());
    let t = cstr(target)?;
    if data.len() < page_size() {
        let d = CString::new(data)
            .map_err(|_| io_err("mount overlay on", target, std::io::Error::from_raw_os_error(libc::EINVAL)))?;
        // SAFETY: valid C strings.
        let r = unsafe { libc::mount(c"overlay".as_ptr(), t.as_ptr(), c"overlay".as_ptr(), 0, d.as_ptr().cast()) };
        return if r < 0 { Err(io_err("mount overlay on", target, last_err())) } else { Ok(()) };
    }
    let base = common_parent(lowers);
    let rel: Vec<String> =
        lowers.iter().map(|l| l.strip_prefix(&base).map(ovl_escape).unwrap_or_else(|_| ovl_escape(l))).collect();
    let data = join(rel);
    if data.len() >= page_size() {
        return Err(BundleError::Invalid {
            what: "overlay mount",
            msg: format!("{} layers give {} bytes of options, more than a page", lowers.len(), data.len()),
        });
    }
    let d = CString::new(data)
        .map_err(|_| io_err("mount overlay on", target, std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    let b = cstr(&base)?;
    // SAFETY: fork; the child only makes async-signal-safe syscalls (chdir, mount, _exit) on
    // memory prepared before the fork, then exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io_err("fork to mount overlay on", target, last_err()));
    }
    if pid == 0 {
        // SAFETY: see above; all pointers are valid C strings in the copied address space.
        unsafe {
            if libc::chdir(b.as_ptr()) != 0 {
                libc::_exit(255);
            }
            let r = libc::mount(c"overlay".as_ptr(), t.as_ptr(), c"overlay".as_ptr(), 0, d.as_ptr().cast());
            let code = if r == 0 { 0 } else { *libc::__errno_location() };
            libc::_exit(code.clamp(0, 254));
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && last_err().raw_os_error() != Some(libc::EINTR) {
            return Err(io_err("wait for overlay mount of", target, last_err()));
        }
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 255) => Err(io_err("chdir", &base, std::io::Error::from_raw_os_error(libc::ENOENT))),
        (true, e) => Err(io_err("mount overlay on", target, std::io::Error::from_raw_os_error(e))),
        _ => Err(io_err("mount overlay on", target, std::io::Error::from_raw_os_error(libc::EINTR))),
    }
}

/// Unmount the rootfs at `target` (lazily, MNT_DETACH). Not mounted (a copied rootfs) or
/// missing is fine. Remove upper/work afterwards with [`remove_dirs`].
pub fn unmount_rootfs(target: &Path) -> Result<(), BundleError> {
    let t = cstr(target)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = last_err();
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            return Err(io_err("unmount", target, e));
        }
    }
    Ok(())
}

/// Remove directories (the upper/work dirs of an unmounted rootfs, or a copied rootfs) with
/// everything in them; missing ones are fine. Symlinks inside are removed, not followed.
pub fn remove_dirs(dirs: &[&Path]) -> Result<(), BundleError> {
    for d in dirs {
        match std::fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", d, e)),
        }
    }
    Ok(())
}

const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

fn lgetxattr(p: &CStr, name: &CStr) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings and buffer of the given length.
        let n = unsafe { libc::lgetxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Some(buf);
        }
        if last_err().raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 16 {
            return None;
        }
        buf.resize(buf.len() * 4, 0);
    }
}

fn is_opaque(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else { return false };
    lgetxattr(&c, OPAQUE_XATTR).as_deref() == Some(b"y")
}

/// Copy the extended attributes of `src` to `dst` (no symlink following), except overlay's own.
fn copy_xattrs(src: &Path, dst: &Path) -> Result<(), BundleError> {
    let s = cstr(src)?;
    let d = cstr(dst)?;
    // SAFETY: valid C string; NULL buffer of size 0 asks for the needed size.
    let n = unsafe { libc::llistxattr(s.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Ok(());
    }
    let mut names = vec![0u8; n as usize];
    // SAFETY: buffer of the given length.
    let n = unsafe { libc::llistxattr(s.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Ok(());
    }
    names.truncate(n as usize);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let Ok(cn) = CString::new(name) else { continue };
        let Some(v) = lgetxattr(&s, &cn) else { continue };
        // SAFETY: valid C strings and value buffer.
        if unsafe { libc::lsetxattr(d.as_ptr(), cn.as_ptr(), v.as_ptr().cast(), v.len(), 0) } != 0 {
            let e = last_err();
            // Filesystems without (this namespace of) xattrs: keep the file, drop the attribute.
            if !matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) {
                return Err(io_err(format!("set xattr {} on", String::from_utf8_lossy(name)), dst, e));
            }
        }
    }
    Ok(())
}

/// Owner, mode, xattrs and times of `m` onto `dst`.
fn copy_meta(src: &Path, dst: &Path, m: &std::fs::Metadata) -> Result<(), BundleError> {
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid())).map_err(|e| io_err("chown", dst, e))?;
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| io_err("chmod", dst, e))?;
    }
    copy_xattrs(src, dst)?;
    let times = [
        libc::timespec { tv_sec: m.atime() as libc::time_t, tv_nsec: m.atime_nsec() as _ },
        libc::timespec { tv_sec: m.mtime() as libc::time_t, tv_nsec: m.mtime_nsec() as _ },
    ];
    let d = cstr(dst)?;
    // SAFETY: valid C string and two timespecs.
    unsafe { libc::utimensat(libc::AT_FDCWD, d.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    Ok(())
}

fn remove_any(p: &Path) -> Result<(), BundleError> {
    let r = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(_) => return Ok(()),
    };
    r.map_err(|e| io_err("remove", p, e))
}

/// Copy the layers (top first, like lowerdirs) into `target` bottom-up, applying the overlay
/// whiteouts they hold: a 0:0 char device deletes the path below, an opaque directory
/// (trusted.overlay.opaque=y) hides what lower layers had in it. Owners, modes, xattrs, times
/// and hard links (within a layer) are kept.
pub fn copy_rootfs(lowers: &[PathBuf], target: &Path) -> Result<(), BundleError> {
    std::fs::create_dir_all(target).map_err(|e| io_err("create", target, e))?;
    for layer in lowers.iter().rev() {
        let mut links = HashMap::new();
        copy_dir(layer, target, &mut links)?;
        let m = std::fs::metadata(layer).map_err(|e| io_err("stat", layer, e))?;
        copy_meta(layer, target, &m)?;
    }
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<(), BundleError> {
    let rd = std::fs::read_dir(src).map_err(|e| io_err("read directory", src, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| io_err("read directory", src, e))?;
        let sp = entry.path();
        let dp = dst.join(entry.file_name());
        let m = std::fs::symlink_metadata(&sp).map_err(|e| io_err("stat", &sp, e))?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            remove_any(&dp)?; // whiteout
            continue;
        }
        let existing = std::fs::symlink_metadata(&dp).ok();
        if ft.is_dir() {
            match existing {
                Some(e) if e.is_dir() => {
                    if is_opaque(&sp) {
                        for c in std::fs::read_dir(&dp).map_err(|e| io_err("read directory", &dp, e))? {
                            let c = c.map_err(|e| io_err("read directory", &dp, e))?;
                            remove_any(&c.path())?;
                        }
                    }
                }
                other => {
                    if other.is_some() {
                        remove_any(&dp)?;
                    }
                    std::fs::create_dir(&dp).map_err(|e| io_err("create", &dp, e))?;
                }
            }
            copy_dir(&sp, &dp, links)?;
            copy_meta(&sp, &dp, &m)?;
            continue;
        }
        if existing.is_some() {
            remove_any(&dp)?;
        }
        if m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                std::fs::hard_link(first, &dp).map_err(|e| io_err("link", &dp, e))?;
                continue;
            }
            links.insert((m.dev(), m.ino()), dp.clone());
        }
        if ft.is_file() {
            std::fs::copy(&sp, &dp).map_err(|e| io_err("copy to", &dp, e))?;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&sp).map_err(|e| io_err("read link", &sp, e))?;
            std::os::unix::fs::symlink(&t, &dp).map_err(|e| io_err("create symlink", &dp, e))?;
        } else {
            let c = cstr(&dp)?;
            // SAFETY: valid C string; mode and device number from the source node.
            if unsafe { libc::mknod(c.as_ptr(), m.mode() as libc::mode_t, m.rdev() as libc::dev_t) } != 0 {
                return Err(io_err("mknod", &dp, last_err()));
            }
        }
        copy_meta(&sp, &dp, &m)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn img(j: Value) -> ImageConfig {
        serde_json::from_value(json!({"architecture": "amd64", "os": "linux", "config": j})).unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        strs(v)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-bundle-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn args_rules() {
        let i = img(json!({"Entrypoint": ["/ep", "-x"], "Cmd": ["c1", "c2"]}));
        let mut o = BundleOptions::default();
        assert_eq!(process_args(&i, &o).unwrap(), s(&["/ep", "-x", "c1", "c2"]));
        o.args = Some(s(&["a"]));
        assert_eq!(process_args(&i, &o).unwrap(), s(&["/ep", "-x", "a"]));
        o.args = Some(vec![]);
        assert_eq!(process_args(&i, &o).unwrap(), s(&["/ep", "-x", "c1", "c2"]));
        // --entrypoint replaces the entrypoint and drops the image's Cmd.
        o.args = None;
        o.entrypoint = Some(s(&["/bin/sh"]));
        assert_eq!(process_args(&i, &o).unwrap(), s(&["/bin/sh"]));
        o.args = Some(s(&["-c", "true"]));
        assert_eq!(process_args(&i, &o).unwrap(), s(&["/bin/sh", "-c", "true"]));
        o.entrypoint = Some(vec![]);
        assert_eq!(process_args(&i, &o).unwrap(), s(&["-c", "true"]));
        o.args = None;
        assert_eq!(process_args(&i, &o).unwrap_err().to_string(), "no command specified");
        let none = img(json!({}));
        assert!(matches!(process_args(&none, &BundleOptions::default()), Err(BundleError::NoCommand)));
        let o = BundleOptions { init: Some("/usr/bin/tini".into()), ..Default::default() };
        assert_eq!(process_args(&i, &o).unwrap(), s(&[INIT_PATH, "--", "/ep", "-x", "c1", "c2"]));
    }

    #[test]
    fn env_rules() {
        let i = img(json!({"Env": ["PATH=/img/bin", "A=1", "B=2"]}));
        let o = BundleOptions {
            env: s(&["B=3", "C=4", "A", "D="]),
            hostname: Some("h1".into()),
            terminal: true,
            ..Default::default()
        };
        assert_eq!(
            process_env(&i, &o, "/root"),
            s(&["PATH=/img/bin", "HOSTNAME=h1", "TERM=xterm", "B=3", "C=4", "D=", "HOME=/root"])
        );
        let e = process_env(&img(json!({})), &BundleOptions { env: s(&["HOME=/x"]), ..Default::default() }, "/root");
        assert_eq!(e, s(&[&format!("PATH={DEFAULT_PATH_ENV}"), "HOME=/x"]));
    }

    #[test]
    fn cwd_rules() {
        let o = BundleOptions::default();
        assert_eq!(process_cwd(&img(json!({})), &o).unwrap(), "/");
        assert_eq!(process_cwd(&img(json!({"WorkingDir": "/app//x/./"})), &o).unwrap(), "/app/x");
        let e = process_cwd(&img(json!({"WorkingDir": "app"})), &o).unwrap_err();
        assert_eq!(e.to_string(), "the working directory \"app\" is invalid, it needs to be an absolute path");
        let o = BundleOptions { workdir: Some("/w".into()), ..Default::default() };
        assert_eq!(process_cwd(&img(json!({"WorkingDir": "/app"})), &o).unwrap(), "/w");
    }

    #[test]
    fn caps_rules() {
        let c = |add: &[&str], drop: &[&str]| {
            capabilities(&BundleOptions { cap_add: s(add), cap_drop: s(drop), ..Default::default() })
        };
        let d = c(&[], &[]).unwrap();
        assert_eq!(d.len(), DEFAULT_CAPS.len());
        assert!(DEFAULT_CAPS.iter().all(|x| d.contains(&x.to_string())));
        let v = c(&["NET_ADMIN", "sys_admin"], &["CAP_CHOWN", "mknod"]).unwrap();
        assert!(v.contains(&"CAP_NET_ADMIN".into()) && v.contains(&"CAP_SYS_ADMIN".into()));
        assert!(!v.contains(&"CAP_CHOWN".into()) && !v.contains(&"CAP_MKNOD".into()));
        assert_eq!(c(&["KILL"], &["ALL"]).unwrap(), s(&["CAP_KILL"]));
        let all = c(&["ALL"], &["NET_ADMIN"]).unwrap();
        assert!(all.len() > 30 && !all.contains(&"CAP_NET_ADMIN".into()) && all.contains(&"CAP_SYS_ADMIN".into()));
        assert_eq!(c(&["FOO"], &[]).unwrap_err().to_string(), "unknown capability \"FOO\"");
        let p = capabilities(&BundleOptions { privileged: true, cap_drop: s(&["ALL"]), ..Default::default() }).unwrap();
        assert_eq!(p.len(), host_caps().len());
    }

    #[test]
    fn ports_and_volumes() {
        let i = img(
            json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080": {}, "7000-7002/tcp": {}, "x/tcp": {}, "1/foo": {}},
            "Volumes": {"/data": {}, "/var/lib/x/": {}, "rel": {}}}),
        );
        let p = exposed_ports(&i);
        assert_eq!(
            p,
            vec![
                (53, "udp".into()),
                (80, "tcp".into()),
                (7000, "tcp".into()),
                (7001, "tcp".into()),
                (7002, "tcp".into()),
                (8080, "tcp".into())
            ]
        );
        assert_eq!(image_volumes(&i), s(&["/data", "/var/lib/x"]));
    }

    fn rootfs_with_passwd(name: &str) -> PathBuf {
        let d = tmp(name);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
            .unwrap();
        std::fs::write(d.join("etc/group"), "root:x:0:\nwheel:x:10:root\napp:x:1000:\nvideo:x:44:app\n").unwrap();
        d
    }

    #[test]
    fn spec_defaults() {
        let r = rootfs_with_passwd("spec");
        let i = img(json!({"Cmd": ["sh"], "Labels": {"a": "1", "b": "2"}, "StopSignal": "SIGQUIT", "User": "app"}));
        let o = BundleOptions {
            labels: [("b".to_string(), "3".to_string())].into(),
            hostname: Some("c1".into()),
            ..Default::default()
        };
        let v = build_spec(&i, &r, &o).unwrap();
        let spec: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(v["ociVersion"], "1.1.0");
        assert_eq!(v["process"]["user"], json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 44]}));
        assert!(v["process"]["env"].as_array().unwrap().contains(&json!("HOME=/home/app")));
        assert_eq!(v["process"]["capabilities"]["bounding"].as_array().unwrap().len(), DEFAULT_CAPS.len());
        assert!(v["process"]["capabilities"].get("inheritable").is_none());
        assert_eq!(v["hostname"], "c1");
        assert_eq!(v["annotations"], json!({"a": "1", "b": "3", STOP_SIGNAL_ANNOTATION: "SIGQUIT"}));
        let ns: Vec<&str> =
            v["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(ns, vec!["pid", "ipc", "uts", "mount", "network", "cgroup"]);
        assert_eq!(v["linux"]["maskedPaths"].as_array().unwrap().len(), MASKED_PATHS.len());
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["linux"]["resources"]["devices"][0], json!({"allow": false, "access": "rwm"}));
        let dests: Vec<&str> =
            v["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(dests, vec!["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]);
        assert!(v["process"].get("rlimits").is_none() && v["process"].get("oomScoreAdj").is_none());
        assert_eq!(v["root"], json!({"path": r, "readonly": false}));
        assert_eq!(spec.process().as_ref().unwrap().cwd().to_str(), Some("/"));
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn spec_options() {
        let r = rootfs_with_passwd("opts");
        let i = img(json!({"Cmd": ["sh"]}));
        let o = BundleOptions {
            user: Some("1234:video".into()),
            group_add: s(&["wheel", "77"]),
            read_only: true,
            privileged: true,
            mounts: vec![
                MountSpec { source: "/srv/data".into(), destination: "/data".into(), readonly: true, options: vec![] },
                MountSpec {
                    source: "/srv/x".into(),
                    destination: "/data/x".into(),
                    readonly: false,
                    options: s(&["bind", "rshared"]),
                },
            ],
            tmpfs: vec![("/dev/shm".into(), "size=1m,exec".into())],
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            cpus: Some(0.5),
            pids_limit: Some(100),
            netns: NetworkNs::Path("/proc/1/ns/net".into()),
            cgroups_path: Some("/berth/x".into()),
            etc_files: Some(EtcFiles {
                hostname: Some("/e/hostname".into()),
                hosts: None,
                resolv_conf: Some("/e/resolv.conf".into()),
            }),
            apparmor: Some("berth-default".into()),
            no_new_privileges: true,
            stop_signal: Some("SIGINT".into()),
            rlimits: vec![Rlimit { kind: "nofile".into(), soft: 10, hard: 20 }],
            uts_host: true,
            hostname: Some("ignored".into()),
            ..Default::default()
        };
        let v = build_spec(&i, &r, &o).unwrap();
        let _: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(v["process"]["user"], json!({"uid": 1234, "gid": 44, "additionalGids": [44, 10, 77]}));
        assert_eq!(v["root"]["readonly"], true);
        assert!(v["linux"].get("seccomp").is_none() && v["linux"].get("maskedPaths").is_none());
        assert_eq!(v["linux"]["resources"]["devices"], json!([{"allow": true, "access": "rwm"}]));
        assert!(!v["linux"]["devices"].as_array().unwrap().is_empty());
        assert_eq!(v["linux"]["resources"]["memory"], json!({"limit": 64 << 20, "swap": -1}));
        assert_eq!(v["linux"]["resources"]["cpu"], json!({"quota": 50000, "period": 100000}));
        assert_eq!(v["linux"]["resources"]["pids"], json!({"limit": 100}));
        assert_eq!(v["linux"]["cgroupsPath"], "/berth/x");
        assert!(v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "network", "path": "/proc/1/ns/net"})));
        assert!(v.get("hostname").is_none());
        assert_eq!(v["process"]["apparmorProfile"], "berth-default");
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["rlimits"], json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]));
        assert_eq!(v["annotations"][STOP_SIGNAL_ANNOTATION], "SIGINT");
        let m = v["mounts"].as_array().unwrap();
        let find = |d: &str| m.iter().find(|x| x["destination"] == d).cloned().unwrap();
        assert_eq!(m.iter().filter(|x| x["destination"] == "/dev/shm").count(), 1);
        assert_eq!(find("/dev/shm")["options"], json!(["nosuid", "nodev", "size=1m", "exec"]));
        assert_eq!(find("/data")["options"], json!(["rbind", "ro", "rprivate"]));
        assert_eq!(find("/data/x")["options"], json!(["bind", "rshared"]));
        assert_eq!(find("/etc/resolv.conf")["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(find("/sys")["options"], json!(["nosuid", "noexec", "nodev"]));
        let order: Vec<&str> = m.iter().map(|x| x["destination"].as_str().unwrap()).collect();
        assert!(order.iter().position(|d| *d == "/data") < order.iter().position(|d| *d == "/data/x"));

        // Bad input.
        let bad = |o: BundleOptions| build_spec(&i, &r, &o).unwrap_err().to_string();
        assert_eq!(
            bad(BundleOptions { user: Some("nobody".into()), ..Default::default() }),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert!(bad(BundleOptions { memory: Some(1 << 20), ..Default::default() }).contains("6MB"));
        assert!(bad(BundleOptions { cpus: Some(1000.0), ..Default::default() }).contains("range of CPUs"));
        assert!(bad(BundleOptions { tmpfs: vec![("rel".into(), String::new())], ..Default::default() })
            .contains("absolute"));
        assert!(bad(BundleOptions {
            mounts: vec![MountSpec { source: "x".into(), destination: "/x".into(), ..Default::default() }],
            ..Default::default()
        })
        .contains("source \"x\""));
        assert!(bad(BundleOptions {
            seccomp: SeccompChoice::File("/nonexistent/p.json".into()),
            ..Default::default()
        })
        .starts_with("seccomp profile /nonexistent/p.json: "));
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn workdir_created_inside_rootfs() {
        let d = tmp("wd");
        let r = d.join("rootfs");
        std::fs::create_dir_all(&r).unwrap();
        std::os::unix::fs::symlink(d.join("outside"), r.join("link")).unwrap();
        ensure_workdir(&r, &json!({"process": {"cwd": "/link/a/b"}})).unwrap();
        let inside = r.join(d.join("outside/a/b").strip_prefix("/").unwrap());
        assert!(inside.is_dir(), "the absolute symlink resolves inside the rootfs");
        std::os::unix::fs::symlink("../../../..", r.join("up")).unwrap();
        ensure_workdir(&r, &json!({"process": {"cwd": "/up/c"}})).unwrap();
        assert!(r.join("c").is_dir());
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(ensure_workdir(&r, &json!({"process": {"cwd": "/loop/x"}})).is_err());
        assert!(!d.join("outside").exists());
        ensure_workdir(&r, &json!({"process": {"cwd": "/"}})).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    // ---- functional (root): overlay and copy

    fn mknod_whiteout(p: &Path) {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) }, 0, "mknod {}", p.display());
    }

    fn set_opaque(p: &Path) {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C strings and value.
        assert_eq!(unsafe { libc::lsetxattr(c.as_ptr(), OPAQUE_XATTR.as_ptr(), b"y".as_ptr().cast(), 1, 0) }, 0);
    }

    /// Two layers: lower has a, d/x, d/y, o/old, gone/f, link(hard)->a2; upper whites out
    /// d/y and gone, makes o opaque with o/new, changes a.
    fn make_layers(base: &Path) -> Vec<PathBuf> {
        let lo = base.join("l1");
        let up = base.join("l2");
        for d in ["d", "o", "gone"] {
            std::fs::create_dir_all(lo.join(d)).unwrap();
        }
        std::fs::write(lo.join("a"), "lower-a").unwrap();
        std::fs::write(lo.join("d/x"), "x").unwrap();
        std::fs::write(lo.join("d/y"), "y").unwrap();
        std::fs::write(lo.join("o/old"), "old").unwrap();
        std::fs::write(lo.join("gone/f"), "f").unwrap();
        std::fs::write(lo.join("h1"), "hard").unwrap();
        std::fs::hard_link(lo.join("h1"), lo.join("h2")).unwrap();
        std::os::unix::fs::symlink("/a", lo.join("sym")).unwrap();
        std::os::unix::fs::lchown(lo.join("d/x"), Some(1234), Some(5678)).unwrap();
        std::fs::set_permissions(lo.join("d/x"), std::fs::Permissions::from_mode(0o4751)).unwrap();
        std::fs::create_dir_all(up.join("d")).unwrap();
        std::fs::create_dir_all(up.join("o")).unwrap();
        std::fs::write(up.join("a"), "upper-a").unwrap();
        mknod_whiteout(&up.join("d/y"));
        mknod_whiteout(&up.join("gone"));
        set_opaque(&up.join("o"));
        std::fs::write(up.join("o/new"), "new").unwrap();
        vec![up, lo] // top first
    }

    /// The tree under `root` as sorted "path type content/mode/owner" lines.
    fn view(root: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let what = if m.is_dir() {
                    walk(root, &p, out);
                    "dir".to_string()
                } else if m.file_type().is_symlink() {
                    format!("-> {}", std::fs::read_link(&p).unwrap().display())
                } else {
                    std::fs::read_to_string(&p).unwrap_or_else(|_| "?".into())
                };
                out.push(format!("{rel} {what} {:o} {}:{}", m.mode(), m.uid(), m.gid()));
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    fn expected_view(v: &[String]) {
        let names: Vec<&str> = v.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(names, vec!["a", "d", "d/x", "h1", "h2", "o", "o/new", "sym"], "{v:#?}");
        assert!(v.iter().any(|l| l.starts_with("a upper-a ")));
        assert!(v.iter().any(|l| l == "d/x x 104751 1234:5678"), "{v:#?}");
        assert!(v.iter().any(|l| l.starts_with("sym -> /a ")));
    }

    #[test]
    fn overlay_and_copy_views() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let base = tmp("ovl");
        let lowers = make_layers(&base);
        let (upper, work, target) = (base.join("upper"), base.join("work"), base.join("merged"));
        assert_eq!(mount_rootfs(&lowers, &upper, &work, &target).unwrap(), RootfsKind::Overlay);
        let ov = view(&target);
        expected_view(&ov);
        // Writes go to upper.
        std::fs::write(target.join("w"), "w").unwrap();
        assert!(upper.join("w").exists());
        std::fs::remove_file(target.join("w")).unwrap();
        unmount_rootfs(&target).unwrap();
        unmount_rootfs(&target).unwrap(); // not mounted any more: fine
        remove_dirs(&[&upper, &work]).unwrap();
        assert!(!upper.exists());

        let flat = base.join("flat");
        copy_rootfs(&lowers, &flat).unwrap();
        let cp = view(&flat);
        assert_eq!(cp, ov);
        let (a, b) = (std::fs::metadata(flat.join("h1")).unwrap(), std::fs::metadata(flat.join("h2")).unwrap());
        assert_eq!(a.ino(), b.ino(), "hard link kept");
        assert!(!is_opaque(&flat.join("o")));

        // Legacy mount(2), short options.
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        mount_overlay_legacy(&lowers, &upper, &work, &target).unwrap();
        assert_eq!(view(&target), ov);
        unmount_rootfs(&target).unwrap();
        remove_dirs(&[&upper, &work]).unwrap();

        // Nested: an upper on overlayfs is refused by the kernel → copy.
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        mount_overlay(&lowers, &upper, &work, &target).unwrap();
        let nested = target.join("nested");
        let kind = mount_rootfs(&lowers, &nested.join("upper"), &nested.join("work"), &nested.join("rootfs")).unwrap();
        assert_eq!(kind, RootfsKind::Copy);
        let nv: Vec<String> = view(&nested.join("rootfs"));
        expected_view(&nv);
        unmount_rootfs(&target).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn overlay_many_long_layers() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let base = tmp("long");
        // 30 layers of ~150-byte paths: over 4 KiB of lowerdir (~3 KiB relative to their
        // parent), and one path over 256 bytes.
        let parent = base.join("snapshots");
        let mut lowers = Vec::new();
        for i in 0..30 {
            let name = format!("{i:02}{}", "a".repeat(100));
            let d = parent.join(&name).join("fs");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("f{i:02}")), format!("{i}")).unwrap();
            std::fs::write(d.join("top"), format!("{i}")).unwrap();
            lowers.push(d);
        }
        let deep = parent.join("b".repeat(200)).join("c".repeat(100)).join("fs");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("deep"), "deep").unwrap();
        lowers.reverse(); // top first: layer 39 on top
        let (upper, work, target) = (base.join("u"), base.join("w"), base.join("m"));
        let check = |t: &Path, with_deep: bool| {
            assert_eq!(std::fs::read_to_string(t.join("top")).unwrap(), "29");
            assert_eq!(std::fs::read_to_string(t.join("f00")).unwrap(), "0");
            assert_eq!(t.join("deep").exists(), with_deep);
        };
        let mut with_deep = lowers.clone();
        with_deep.push(deep.clone());
        assert_eq!(mount_rootfs(&with_deep, &upper, &work, &target).unwrap(), RootfsKind::Overlay);
        check(&target, true);
        unmount_rootfs(&target).unwrap();
        // The same through mount(2): over a page, so via relative paths in a child.
        let data_len: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
        assert!(data_len > page_size());
        remove_dirs(&[&upper, &work]).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        mount_overlay_legacy(&lowers, &upper, &work, &target).unwrap();
        check(&target, false);
        unmount_rootfs(&target).unwrap();
        assert_eq!(std::env::current_dir().unwrap(), std::env::current_dir().unwrap());
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Runs a busybox bundle made from build_spec under berth (BERTH_BIN) with the default
    /// seccomp profile; skipped unless BERTH_BIN is set and we are root.
    #[test]
    fn berth_runs_default_profile() {
        let Ok(bin) = std::env::var("BERTH_BIN") else {
            eprintln!("skipped: BERTH_BIN not set");
            return;
        };
        if !is_root() {
            return;
        }
        let base = tmp("run");
        let bundle = base.join("b");
        let st = Command::new("/work/shared/testkit/busybox-bundle").arg(&bundle).arg("true").output().unwrap();
        assert!(st.status.success(), "{st:?}");
        std::fs::create_dir_all(bundle.join("rootfs/mnt")).unwrap();
        let state = base.join("state");
        let run = |name: &str, script: &str, o: BundleOptions| -> (i32, String) {
            let i = img(json!({"Cmd": ["sh", "-c", script]}));
            let mut v = build_spec(&i, &bundle.join("rootfs"), &o).unwrap();
            v["root"]["path"] = json!("rootfs");
            write_config(&bundle, &v).unwrap();
            let out = Command::new(&bin)
                .arg("--root")
                .arg(&state)
                .arg("run")
                .arg("--bundle")
                .arg(&bundle)
                .arg(name)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (out.status.code().unwrap_or(-1), text)
        };
        let d = BundleOptions::default;
        let (rc, out) = run("t1", "echo ok", d());
        assert_eq!((rc, out.trim()), (0, "ok"));
        let (rc, out) = run("t2", "unshare -n true; echo rc=$?", d());
        assert!(rc == 0 && out.contains("Operation not permitted") && out.contains("rc=1"), "{out}");
        let (rc, out) = run("t3", "mount -t tmpfs x /mnt; echo rc=$?", d());
        assert!(rc == 0 && out.contains("permission denied") && out.contains("rc=1"), "{out}");
        let sa = || BundleOptions { cap_add: s(&["SYS_ADMIN"]), ..Default::default() };
        let (rc, out) = run(
            "t4",
            "mount -t tmpfs x /mnt && grep -c ' /mnt tmpfs' /proc/mounts && unshare -n true && echo un",
            sa(),
        );
        assert_eq!((rc, out.trim()), (0, "1\nun"), "{out}");
        // With CAP_SYS_ADMIN but the profile of the default capability set (as a file), it is
        // seccomp that refuses mount, unshare and clone with namespace flags.
        let prof = base.join("profile.json");
        let caps = capabilities(&d()).unwrap();
        std::fs::write(&prof, seccomp_profile::default_profile(&caps).to_string()).unwrap();
        let f = || BundleOptions {
            cap_add: s(&["SYS_ADMIN"]),
            seccomp: SeccompChoice::File(prof.clone()),
            ..Default::default()
        };
        let (rc, out) = run(
            "t6",
            "mount -t tmpfs x /mnt; echo rc=$?; unshare -n true; echo rc=$?; unshare -m true; echo rc=$?",
            f(),
        );
        assert!(rc == 0 && out.contains("permission denied") && out.matches("rc=1").count() == 3, "{out}");
        assert!(out.contains("Operation not permitted"), "{out}");
        let (rc, out) = run(
            "t7",
            "id -u; id -g; pwd",
            BundleOptions { user: Some("1000:1000".into()), workdir: Some("/tmp".into()), ..Default::default() },
        );
        assert_eq!((rc, out.trim()), (0, "1000\n1000\n/tmp"), "{out}");
        // Threads and fork work (clone without namespace flags, clone3 → ENOSYS → clone).
        let (rc, out) = run("t5", "(echo sub) & wait; echo done", d());
        assert_eq!((rc, out.trim()), (0, "sub\ndone"), "{out}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
