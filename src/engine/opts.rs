//! `run`/`create` flags turned into a [`RunSpec`]: everything checked here, before anything is
//! made, so that bad input fails with 125 and leaves nothing behind. The spec is stored in the
//! container's record and turned into bundle options at every start.

use super::cli::CreateOpts;
use super::EngineError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A `-v`/`--mount` as given, checked (volumes not yet resolved to host paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeArg {
    /// Host path (absolute) → destination.
    Bind { source: String, dest: String, readonly: bool, options: Vec<String> },
    /// Named volume (None: anonymous) → destination.
    Volume { name: Option<String>, dest: String, readonly: bool },
}

impl VolumeArg {
    pub fn dest(&self) -> &str {
        match self {
            VolumeArg::Bind { dest, .. } | VolumeArg::Volume { dest, .. } => dest,
        }
    }
}

/// What the user asked for, as stored in the container record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunSpec {
    pub cmd: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub group_add: Vec<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub stdin_open: bool,
    pub read_only: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// "unconfined" or a profile file path; None = default profile.
    pub seccomp: Option<String>,
    pub apparmor: Option<String>,
    pub no_new_privileges: bool,
    pub volumes: Vec<VolumeArg>,
    pub tmpfs: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub shm_size: Option<i64>,
    pub init: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub restart: String,
    pub auto_remove: bool,
    /// bridge, none, host, container:ID (resolved to the id at create) or a network name.
    pub network: String,
    pub network_aliases: Vec<String>,
    pub ip: Option<String>,
    #[serde(default)]
    pub ip6: Option<String>,
    #[serde(default)]
    pub mac_address: Option<String>,
    /// -p as given (checked).
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub expose: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// (host, ip)
    pub extra_hosts: Vec<(String, String)>,
    pub devices: Vec<(String, String, String)>,
    pub sysctls: BTreeMap<String, String>,
    /// (kind, soft, hard)
    pub ulimits: Vec<(String, u64, u64)>,
    pub pid_host: bool,
    pub ipc_host: bool,
    pub uts_host: bool,
    pub oom_score_adj: Option<i32>,
    /// The terminal's size at start (rows, columns), as the API's `HostConfig.ConsoleSize`.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Networks joined later (`network connect`), joined again at every start after the
    /// first one.
    #[serde(default)]
    pub connected: Vec<Connected>,
    /// The first network (`network`) was disconnected: it is not joined at start any more (as
    /// docker, the network mode stays as it was; with no other network the container gets
    /// only its loopback).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_left: bool,
    #[serde(default)]
    pub resources: super::resources::Resources,
    /// `--cgroup-parent`.
    #[serde(default)]
    pub cgroup_parent: Option<String>,
    #[serde(default)]
    pub cgroupns_host: bool,
    /// The --health-* flags (fields 0 = the image's), or `NONE` for --no-healthcheck.
    #[serde(default)]
    pub health: Option<crate::image::types::Healthcheck>,
    /// `--log-driver` (None: json-file) and `--log-opt`s.
    #[serde(default)]
    pub log_driver: Option<String>,
    #[serde(default)]
    pub log_opts: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub domainname: Option<String>,
    /// `--runtime NAME` (None: berth).
    #[serde(default)]
    pub runtime: Option<String>,
    /// `--userns keep-id`: the container in a user namespace of its own where the user has
    /// the same id as on the host.
    #[serde(default)]
    pub userns_keep_id: bool,
    /// `--userns host`: no user namespace even when the daemon remaps (`userns-remap`).
    #[serde(default)]
    pub userns_host: bool,
}

/// A network joined by `network connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Connected {
    pub network: String,
    pub aliases: Vec<String>,
    pub ip: Option<String>,
}

/// The container's health check: its own flags over the image's HEALTHCHECK.
pub fn healthcheck(rec: &super::store::Record) -> Option<crate::image::types::Healthcheck> {
    let img = rec.image_config.healthcheck.clone();
    let Some(own) = &rec.spec.health else { return img };
    let mut h = img.unwrap_or_default();
    if !own.test.is_empty() {
        h.test = own.test.clone();
    }
    for (mine, theirs) in [
        (own.interval, &mut h.interval),
        (own.timeout, &mut h.timeout),
        (own.start_period, &mut h.start_period),
        (own.start_interval, &mut h.start_interval),
        (own.retries, &mut h.retries),
    ] {
        if mine != 0 {
            *theirs = mine;
        }
    }
    Some(h)
}

/// A --health-* duration (Go's form: 30s, 1m30s, 500ms): nanoseconds; docker's minimum of 1ms.
fn health_duration(flag: &str, v: &Option<String>) -> Result<i64, EngineError> {
    let Some(s) = v else { return Ok(0) };
    let d = crate::events::parse_duration(s)
        .ok_or_else(|| invalid(format!("invalid argument {s:?} for \"{flag}\" flag: time: invalid duration {s:?}")))?;
    let ns = d.as_nanos() as i64;
    if ns != 0 && ns < 1_000_000 {
        return Err(invalid(format!("{flag} cannot be less than 1ms")));
    }
    Ok(ns)
}

fn parse_health(c: &CreateOpts) -> Result<Option<crate::image::types::Healthcheck>, EngineError> {
    let any = c.health_cmd.is_some()
        || c.health_interval.is_some()
        || c.health_retries.is_some()
        || c.health_start_period.is_some()
        || c.health_start_interval.is_some()
        || c.health_timeout.is_some();
    if c.no_healthcheck {
        if any {
            return Err(invalid("--no-healthcheck conflicts with --health-* options".into()));
        }
        return Ok(Some(crate::image::types::Healthcheck { test: vec!["NONE".into()], ..Default::default() }));
    }
    if !any {
        return Ok(None);
    }
    let retries = c.health_retries.unwrap_or(0);
    if retries < 0 {
        return Err(invalid("--health-retries cannot be negative".into()));
    }
    Ok(Some(crate::image::types::Healthcheck {
        test: match c.health_cmd.as_deref() {
            Some("") | None => Vec::new(),
            Some(cmd) => vec!["CMD-SHELL".into(), cmd.to_string()],
        },
        interval: health_duration("--health-interval", &c.health_interval)?,
        timeout: health_duration("--health-timeout", &c.health_timeout)?,
        start_period: health_duration("--health-start-period", &c.health_start_period)?,
        start_interval: health_duration("--health-start-interval", &c.health_start_interval)?,
        retries,
    }))
}

fn invalid(msg: String) -> EngineError {
    EngineError::Invalid(msg)
}

/// Parse a size such as 512m, 1g, 100000, 1.5g (units::ram_in_bytes).
pub fn parse_size(flag: &str, s: &str) -> Result<i64, EngineError> {
    berth::units::ram_in_bytes(s).ok_or_else(|| {
        invalid(format!("invalid {flag} {s:?}: a size is a number with an optional b, k, m or g suffix"))
    })
}

fn clean_dest(flag: &str, spec: &str, d: &str) -> Result<String, EngineError> {
    if !d.starts_with('/') {
        return Err(invalid(format!("invalid {flag} {spec:?}: destination {d:?} must be an absolute path")));
    }
    let parts: Vec<&str> = d.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if parts.is_empty() {
        return Err(invalid(format!("invalid {flag} {spec:?}: destination can't be /")));
    }
    if parts.contains(&"..") {
        return Err(invalid(format!("invalid {flag} {spec:?}: destination {d:?} contains \"..\"")));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// A volume name as docker allows it: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (one character is fine too).
pub fn valid_volume_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

const MOUNT_MODES: &[&str] =
    &["ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared", "rshared", "slave", "rslave"];

/// `-v SRC:DEST[:MODE]`, `-v NAME:DEST[:MODE]` or `-v DEST`.
pub fn parse_volume(spec: &str) -> Result<VolumeArg, EngineError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dest, mode) = match parts.as_slice() {
        [d] => (None, *d, ""),
        [s, d] if d.starts_with('/') => (Some(*s), *d, ""),
        [d, m] if d.starts_with('/') => (None, *d, *m),
        [s, d, m] => (Some(*s), *d, *m),
        _ => return Err(invalid(format!("invalid volume specification {spec:?}: expected [SOURCE:]DEST[:MODE]"))),
    };
    let dest = clean_dest("volume specification", spec, dest)?;
    let mut readonly = false;
    let mut options = Vec::new();
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        if !MOUNT_MODES.contains(&m) {
            return Err(invalid(format!("invalid volume specification {spec:?}: unknown mode {m:?}")));
        }
        match m {
            "ro" => readonly = true,
            "rw" | "z" | "Z" | "nocopy" => {}
            p => options.push(p.to_string()),
        }
    }
    match src {
        None => Ok(VolumeArg::Volume { name: None, dest, readonly }),
        Some(s) if s.starts_with('/') => Ok(VolumeArg::Bind { source: s.to_string(), dest, readonly, options }),
        Some("") => Err(invalid(format!("invalid volume specification {spec:?}: empty source"))),
        Some(s) if s.starts_with('.') || s.starts_with('~') => {
            Err(invalid(format!("invalid volume specification {spec:?}: a bind mount source must be an absolute path")))
        }
        Some(s) if valid_volume_name(s) => {
            if !options.is_empty() {
                return Err(invalid(format!(
                    "invalid volume specification {spec:?}: propagation is only for bind mounts"
                )));
            }
            Ok(VolumeArg::Volume { name: Some(s.to_string()), dest, readonly })
        }
        Some(s) => Err(invalid(format!(
            "invalid volume specification {spec:?}: {s:?} is neither an absolute path nor a valid volume name"
        ))),
    }
}

/// What a `--mount` becomes: a volume or bind, or a tmpfs (destination, options).
pub type ParsedMount = (Option<VolumeArg>, Option<(String, String)>);

/// `--mount type=bind|volume|tmpfs,source=..,target=..[,readonly]`; tmpfs comes back as Err-free
/// `(None, Some((dest, options)))`.
pub fn parse_mount(spec: &str) -> Result<ParsedMount, EngineError> {
    let bad = |why: &str| invalid(format!("invalid --mount {spec:?}: {why}"));
    let (mut kind, mut src, mut dst, mut ro) = ("volume".to_string(), None, None, false);
    let mut tmpfs_opts = Vec::new();
    let mut prop = Vec::new();
    for kv in spec.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => kind = v.to_string(),
            "source" | "src" => src = Some(v.to_string()),
            "target" | "destination" | "dst" => dst = Some(v.to_string()),
            "readonly" | "ro" => ro = matches!(v, "" | "true" | "1"),
            "bind-propagation" => prop.push(v.to_string()),
            "tmpfs-size" => tmpfs_opts.push(format!("size={}", parse_size("tmpfs-size", v)?)),
            "tmpfs-mode" => tmpfs_opts.push(format!("mode={v}")),
            "volume-nocopy" | "consistency" => {}
            _ => return Err(bad(&format!("unknown key {k:?}"))),
        }
    }
    let dst = dst.ok_or_else(|| bad("target is required"))?;
    let dest = clean_dest("--mount", spec, &dst)?;
    match kind.as_str() {
        "bind" => {
            let s = src.ok_or_else(|| bad("source is required for a bind mount"))?;
            if !s.starts_with('/') {
                return Err(bad("a bind mount source must be an absolute path"));
            }
            // --mount (unlike -v) does not create a missing bind source.
            if std::fs::metadata(&s).is_err() {
                return Err(bad(&format!("bind source path does not exist: {s}")));
            }
            Ok((Some(VolumeArg::Bind { source: s, dest, readonly: ro, options: prop }), None))
        }
        "volume" => {
            let name = src.filter(|s| !s.is_empty());
            if let Some(n) = &name {
                if !valid_volume_name(n) {
                    return Err(bad(&format!("invalid volume name {n:?}")));
                }
            }
            Ok((Some(VolumeArg::Volume { name, dest, readonly: ro }), None))
        }
        "tmpfs" => {
            if ro {
                tmpfs_opts.push("ro".into());
            }
            Ok((None, Some((dest, tmpfs_opts.join(",")))))
        }
        t => Err(bad(&format!("unknown type {t:?} (bind, volume or tmpfs)"))),
    }
}

/// KEY=VALUE lines of an env file (docker's rules: `#` comments, blank lines skipped, a bare
/// KEY takes the caller's value, when set).
pub fn parse_env_file(path: &str, text: &str) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let key = l.split('=').next().unwrap_or("");
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(invalid(format!("env file {path} line {}: invalid variable name {key:?}", i + 1)));
        }
        out.extend(env_value(l));
    }
    Ok(out)
}

/// `-e KEY=VALUE` as is; `-e KEY` takes the caller's value (dropped when unset).
fn env_value(kv: &str) -> Option<String> {
    if kv.contains('=') {
        return Some(kv.to_string());
    }
    std::env::var_os(kv).map(|v| format!("{kv}={}", v.to_string_lossy()))
}

pub fn parse_env(env: &[String], env_files: &[String]) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    for f in env_files {
        let text = std::fs::read_to_string(f).map_err(|e| invalid(format!("read env file {f}: {e}")))?;
        out.extend(parse_env_file(f, &text)?);
    }
    for kv in env {
        if kv.is_empty() || kv.starts_with('=') {
            return Err(invalid(format!("invalid environment variable {kv:?}")));
        }
        out.extend(env_value(kv));
    }
    Ok(out)
}

fn key_value(flag: &str, s: &str) -> Result<(String, String), EngineError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        None if !s.is_empty() && flag == "--label" => Ok((s.to_string(), String::new())),
        _ => Err(invalid(format!("invalid {flag} {s:?}: expected KEY=VALUE"))),
    }
}

/// docker's container name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a leading '/' is dropped).
pub fn check_name(n: &str) -> Result<String, EngineError> {
    let n = n.strip_prefix('/').unwrap_or(n);
    let b = n.as_bytes();
    let ok = b.len() >= 2
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
    if ok {
        Ok(n.to_string())
    } else {
        Err(invalid(format!(
            "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (2 characters or more)"
        )))
    }
}

pub fn check_restart(s: &str) -> Result<(), EngineError> {
    crate::shim::RestartPolicy::parse(s).map(|_| ()).map_err(|e| invalid(e.to_string()))
}

/// A signal name or number (SIGTERM, TERM, 15).
pub fn check_signal(s: &str) -> Result<i32, EngineError> {
    match berth::parse_signal(s) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(format!("invalid signal {s:?}"))),
    }
}

fn host_mode(flag: &str, v: &Option<String>) -> Result<bool, EngineError> {
    match v.as_deref() {
        None | Some("") | Some("private") => Ok(false),
        Some("host") => Ok(true),
        Some(o) => Err(invalid(format!("invalid {flag} {o:?} (host or private)"))),
    }
}

fn parse_ulimit(s: &str) -> Result<(String, u64, u64), EngineError> {
    let bad = || invalid(format!("invalid --ulimit {s:?}: expected TYPE=SOFT[:HARD]"));
    let (k, v) = s.split_once('=').ok_or_else(bad)?;
    let num = |x: &str| -> Result<u64, EngineError> {
        if x == "-1" || x == "unlimited" {
            Ok(u64::MAX)
        } else {
            x.parse().map_err(|_| bad())
        }
    };
    let (soft, hard) = match v.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(v)?, num(v)?),
    };
    if soft > hard || k.is_empty() {
        return Err(bad());
    }
    Ok((k.to_string(), soft, hard))
}

/// Checks every flag and builds the spec. `network` is stored as given (a `container:NAME`
/// is resolved by the caller).
pub fn parse(c: &CreateOpts) -> Result<RunSpec, EngineError> {
    let mut s = RunSpec {
        cmd: c.command().to_vec(),
        env: parse_env(&c.env, &c.env_file)?,
        workdir: c.workdir.clone().filter(|w| !w.is_empty()),
        user: c.user.clone().filter(|u| !u.is_empty()),
        group_add: c.group_add.clone(),
        hostname: c.hostname.clone().filter(|h| !h.is_empty()),
        tty: c.tty,
        console_size: c.console_size.filter(|_| c.tty),
        stdin_open: c.interactive,
        read_only: c.read_only,
        privileged: c.privileged,
        cap_add: c.cap_add.clone(),
        cap_drop: c.cap_drop.clone(),
        init: c.init,
        stop_timeout: c.stop_timeout,
        restart: c.restart.clone(),
        auto_remove: c.rm,
        network: c.network.clone(),
        network_aliases: c.network_alias.clone(),
        ip: c.ip.clone(),
        ip6: c.ip6.clone(),
        mac_address: c.mac_address.clone(),
        publish: c.publish.clone(),
        publish_all: c.publish_all,
        expose: c.expose.clone(),
        dns: c.dns.clone(),
        dns_search: c.dns_search.clone(),
        dns_options: c.dns_option.clone(),
        pids_limit: c.pids_limit,
        oom_score_adj: c.oom_score_adj,
        userns_keep_id: match c.userns.as_deref() {
            None | Some("") | Some("host") => false,
            Some("keep-id") if crate::unprivileged::active() => true,
            Some("keep-id") => return Err(invalid("--userns keep-id is for an ordinary user's containers".into())),
            Some(o) => return Err(invalid(format!("invalid --userns {o:?} (keep-id or host)"))),
        },
        userns_host: c.userns.as_deref() == Some("host"),
        pid_host: host_mode("--pid", &c.pid)?,
        ipc_host: host_mode("--ipc", &c.ipc)?,
        uts_host: host_mode("--uts", &c.uts)?,
        resources: super::resources::parse(&c.res, &Default::default())?,
        health: parse_health(c)?,
        ..Default::default()
    };
    let (driver, log_opts) = super::logopts::parse(c.log_driver.as_deref(), &c.log_opt)?;
    s.log_driver = Some(driver).filter(|d| d != "json-file");
    s.log_opts = log_opts;
    s.cgroupns_host = match c.cgroupns.as_deref() {
        None | Some("private") => false,
        Some("host") => true,
        Some(o) => return Err(invalid(format!("invalid --cgroupns {o:?}: host or private"))),
    };
    if let Some(p) = c.cgroup_parent.as_deref().filter(|p| !p.is_empty()) {
        if p.split('/').any(|c| c == "..") {
            return Err(invalid(format!("invalid --cgroup-parent {p:?}: contains \"..\"")));
        }
        s.cgroup_parent = Some(p.to_string());
    }
    if let Some(w) = &s.workdir {
        if !w.starts_with('/') {
            return Err(invalid(format!("the working directory {w:?} is invalid, it needs to be an absolute path")));
        }
    }
    if let Some(e) = &c.entrypoint {
        // docker takes --entrypoint as one word; "" clears the image's.
        s.entrypoint = Some(if e.is_empty() { Vec::new() } else { vec![e.clone()] });
    }
    check_restart(&c.restart)?;
    if c.rm && !matches!(c.restart.as_str(), "" | "no") {
        return Err(invalid("conflicting options: --restart and --rm".into()));
    }
    if let Some(sig) = &c.stop_signal {
        check_signal(sig)?;
        s.stop_signal = Some(sig.clone());
    }
    for v in &c.volume {
        s.volumes.push(parse_volume(v)?);
    }
    for m in &c.mount {
        match parse_mount(m)? {
            (Some(v), _) => s.volumes.push(v),
            (None, Some(t)) => s.tmpfs.push(t),
            _ => {}
        }
    }
    for t in &c.tmpfs {
        let (d, o) = t.split_once(':').unwrap_or((t.as_str(), ""));
        let d = clean_dest("--tmpfs", t, d)?;
        s.tmpfs.push((d, o.to_string()));
    }
    let mut dests: Vec<&str> = s.volumes.iter().map(|v| v.dest()).chain(s.tmpfs.iter().map(|t| t.0.as_str())).collect();
    dests.sort();
    if let Some(w) = dests.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(format!("duplicate mount point: {}", w[0])));
    }
    for f in &c.label_file {
        let text = std::fs::read_to_string(f).map_err(|e| invalid(format!("open {f}: {e}")))?;
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            s.labels.insert(k.to_string(), v.to_string());
        }
    }
    for l in &c.label {
        let (k, v) = key_value("--label", l)?;
        s.labels.insert(k, v);
    }
    for a in &c.annotation {
        let (k, v) = key_value("--annotation", a)?;
        s.annotations.insert(k, v);
    }
    if let Some(d) = c.domainname.as_deref().filter(|d| !d.is_empty()) {
        if d.len() > 64 || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            return Err(invalid(format!("invalid --domainname {d:?}")));
        }
        s.domainname = Some(d.to_string());
    }
    if let Some(m) = c.mac_address.as_deref().filter(|m| !m.is_empty()) {
        let bytes: Vec<Option<u8>> =
            m.split(':').map(|b| if b.len() == 2 { u8::from_str_radix(b, 16).ok() } else { None }).collect();
        if bytes.len() != 6 || bytes.iter().any(Option::is_none) {
            return Err(invalid(format!("{m} is not a valid mac address")));
        }
        if bytes[0].is_some_and(|b| b & 1 == 1) {
            return Err(invalid(format!("{m} is a multicast address: a container's address must be unicast")));
        }
        if matches!(c.network.as_str(), "host" | "none") || c.network.starts_with("container:") {
            return Err(invalid("conflicting options: mac-address and the network mode".into()));
        }
        s.mac_address = Some(m.to_ascii_lowercase());
    }
    if let Some(o) = c.storage_opt.first() {
        return Err(invalid(format!(
            "invalid --storage-opt {o:?}: berth's overlay storage has no per-container options (a size= quota needs overlay over xfs with the pquota mount option)"
        )));
    }

    if let Some(m) = &c.memory {
        s.memory = Some(parse_size("--memory", m)?);
    }
    if let Some(m) = &c.memory_swap {
        s.memory_swap = Some(if m.trim() == "-1" { -1 } else { parse_size("--memory-swap", m)? });
    }
    if let Some(m) = &c.shm_size {
        s.shm_size = Some(parse_size("--shm-size", m)?);
    }
    if let Some(x) = &c.cpus {
        let v: f64 = x
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| invalid(format!("invalid --cpus {x:?}")))?;
        s.cpus = Some(v);
    }
    for o in &c.security_opt {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match k {
            "seccomp" if !v.is_empty() => {
                if v != "unconfined" && std::fs::metadata(v).is_err() {
                    return Err(invalid(format!("invalid --security-opt {o:?}: cannot read seccomp profile {v}")));
                }
                s.seccomp = Some(v.to_string());
            }
            "apparmor" if !v.is_empty() => s.apparmor = Some(v.to_string()),
            "no-new-privileges" => {
                s.no_new_privileges = match v {
                    "" | "true" => true,
                    "false" => false,
                    _ => return Err(invalid(format!("invalid --security-opt {o:?}"))),
                }
            }
            "label" => {}
            _ => {
                return Err(invalid(format!(
                    "invalid --security-opt {o:?} (seccomp=FILE|unconfined, apparmor=PROFILE, no-new-privileges)"
                )))
            }
        }
    }
    for h in &c.add_host {
        let (host, ip) =
            h.split_once([':', '=']).ok_or_else(|| invalid(format!("invalid --add-host {h:?}: expected HOST:IP")))?;
        if host.is_empty() || (ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err()) {
            return Err(invalid(format!("invalid --add-host {h:?}: expected HOST:IP")));
        }
        s.extra_hosts.push((host.to_string(), ip.to_string()));
    }
    for d in &c.device {
        let mut it = d.splitn(3, ':');
        let host = it.next().unwrap_or("");
        if !host.starts_with('/') {
            return Err(invalid(format!("invalid --device {d:?}: host path must be absolute")));
        }
        s.devices.push((host.to_string(), it.next().unwrap_or("").to_string(), it.next().unwrap_or("").to_string()));
    }
    for x in &c.sysctl {
        let (k, v) = key_value("--sysctl", x)?;
        s.sysctls.insert(k, v);
    }
    for u in &c.ulimit {
        s.ulimits.push(parse_ulimit(u)?);
    }
    for p in &c.publish {
        super::adapt::parse_port(p)?;
    }
    for e in &c.expose {
        let (p, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        let (lo, hi) = p.split_once('-').unwrap_or((p, p));
        let ok = matches!(proto, "tcp" | "udp" | "sctp")
            && lo.parse::<u16>().is_ok_and(|l| l > 0)
            && hi.parse::<u16>().is_ok_and(|h| h >= lo.parse::<u16>().unwrap_or(u16::MAX));
        if !ok {
            return Err(invalid(format!("invalid --expose {e:?}")));
        }
    }
    if let Some(ip) = &c.ip {
        ip.parse::<std::net::Ipv4Addr>().map_err(|_| invalid(format!("invalid --ip {ip:?}")))?;
    }
    if let Some(ip) = &c.ip6 {
        ip.parse::<std::net::Ipv6Addr>().map_err(|_| invalid(format!("invalid --ip6 {ip:?}")))?;
    }
    if let Some(m) = &c.mac_address {
        if !crate::network::valid_mac(m) {
            return Err(invalid(format!("invalid --mac-address {m:?}")));
        }
    }
    if (c.ip.is_some() || c.ip6.is_some() || c.mac_address.is_some()) && matches!(s.network.as_str(), "host" | "none") {
        return Err(invalid(format!("--ip, --ip6 and --mac-address need a bridge network, not {}", s.network)));
    }
    match s.network.as_str() {
        "host" | "none" if !s.publish.is_empty() || s.publish_all => {
            return Err(invalid(format!(
                "published ports are discarded with --network {}: use the bridge network",
                s.network
            )));
        }
        "" => return Err(invalid("invalid --network \"\"".into())),
        _ => {}
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        assert_eq!(
            parse_volume("/h:/c:ro").unwrap(),
            VolumeArg::Bind { source: "/h".into(), dest: "/c".into(), readonly: true, options: vec![] }
        );
        assert_eq!(
            parse_volume("data:/d").unwrap(),
            VolumeArg::Volume { name: Some("data".into()), dest: "/d".into(), readonly: false }
        );
        assert_eq!(
            parse_volume("/anon").unwrap(),
            VolumeArg::Volume { name: None, dest: "/anon".into(), readonly: false }
        );
        assert_eq!(
            parse_volume("/anon:ro").unwrap(),
            VolumeArg::Volume { name: None, dest: "/anon".into(), readonly: true }
        );
        assert_eq!(
            parse_volume("/h:/c:rshared").unwrap(),
            VolumeArg::Bind {
                source: "/h".into(),
                dest: "/c".into(),
                readonly: false,
                options: vec!["rshared".into()]
            }
        );
        for bad in ["", "rel", "a:b", "/h:/c:xx", "/h:rel", "x y:/d", ":/d", "/h:/", "a:b:c:d", "./x:/d", "/h:/c/../d"]
        {
            assert!(parse_volume(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("-m", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("-m", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("-m", "1.5k").unwrap(), 1536);
        assert_eq!(parse_size("-m", "100").unwrap(), 100);
        assert_eq!(parse_size("-m", "10mb").unwrap(), 10 << 20);
        assert!(parse_size("-m", "lots").is_err());
        assert!(parse_size("-m", "-5").is_err());
    }

    #[test]
    fn env_files() {
        std::env::set_var("BERTH_OPTS_TEST_X", "fromhost");
        let v = parse_env_file("f", "# c\n\nA=1\nBERTH_OPTS_TEST_X\nUNSET_BERTH_VAR_Q\nB=x=y\n").unwrap();
        assert_eq!(v, vec!["A=1", "BERTH_OPTS_TEST_X=fromhost", "B=x=y"]);
        assert!(parse_env_file("f", "BAD KEY=1\n").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(check_name("/web_1").unwrap(), "web_1");
        assert!(check_name("a").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a b").is_err());
        assert!(
            valid_volume_name("v")
                && valid_volume_name("my-vol.1")
                && !valid_volume_name("_x")
                && !valid_volume_name("a/b")
        );
    }

    #[test]
    fn mounts() {
        let (v, t) = parse_mount("type=volume,source=v1,target=/data,readonly").unwrap();
        assert_eq!(v, Some(VolumeArg::Volume { name: Some("v1".into()), dest: "/data".into(), readonly: true }));
        assert!(t.is_none());
        let (v, t) = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap();
        assert!(v.is_none());
        assert_eq!(t, Some(("/t".into(), "size=1048576".into())));
        assert!(parse_mount("type=bind,source=/nonexistent-berth-x,target=/x").is_err());
        assert!(parse_mount("type=weird,target=/x").is_err());
        assert!(parse_mount("type=volume,source=v").is_err());
    }

    #[test]
    fn ulimits() {
        assert_eq!(parse_ulimit("nofile=1024:2048").unwrap(), ("nofile".into(), 1024, 2048));
        assert_eq!(parse_ulimit("nproc=10").unwrap(), ("nproc".into(), 10, 10));
        assert!(parse_ulimit("nofile=3:2").is_err());
        assert!(parse_ulimit("nofile").is_err());
    }
}
