//! docker's cgroup resource flags (`--cpu-shares`, `--cpuset-cpus`, `--blkio-weight`,
//! `--device-read-bps`, ...): one clap group shared by `run`/`create` and `update`, checked
//! against this host before anything is made, stored in the container record and turned into
//! the OCI `linux.resources` the runtime writes to the cgroup.

use super::EngineError;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// The resource flags as given.
#[derive(Args, Debug, Clone, Default)]
pub struct ResourceFlags {
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// Limit CPU CFS period (microseconds).
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// Limit CPU CFS quota (microseconds; -1: none).
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Limit CPU real-time period (microseconds).
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// Limit CPU real-time runtime (microseconds).
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Tune the container's memory swappiness (0 to 100; -1: the host's).
    #[arg(long = "memory-swappiness", allow_hyphen_values = true)]
    pub memory_swappiness: Option<i64>,
    /// Disable the OOM killer.
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Block IO relative weight (10 to 1000, 0: none).
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Block IO relative weight of a device (DEVICE:WEIGHT).
    #[arg(long = "blkio-weight-device")]
    pub blkio_weight_device: Vec<String>,
    /// Limit the read rate from a device (DEVICE:RATE, e.g. /dev/vda:1mb).
    #[arg(long = "device-read-bps")]
    pub device_read_bps: Vec<String>,
    /// Limit the write rate to a device (DEVICE:RATE).
    #[arg(long = "device-write-bps")]
    pub device_write_bps: Vec<String>,
    /// Limit the read rate from a device in IO per second (DEVICE:N).
    #[arg(long = "device-read-iops")]
    pub device_read_iops: Vec<String>,
    /// Limit the write rate to a device in IO per second (DEVICE:N).
    #[arg(long = "device-write-iops")]
    pub device_write_iops: Vec<String>,
    /// Add a rule to the cgroup's allowed devices ('c 1:3 rwm', 'b *:* m').
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
}

/// A per-device value: (major, minor, value).
pub type DevValue = (i64, i64, u64);

/// The checked resources, as stored in the container record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub cpu_shares: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub memory_reservation: Option<i64>,
    pub memory_swappiness: Option<u64>,
    pub oom_kill_disable: bool,
    pub blkio_weight: Option<u16>,
    pub blkio_weight_device: Vec<DevValue>,
    pub device_read_bps: Vec<DevValue>,
    pub device_write_bps: Vec<DevValue>,
    pub device_read_iops: Vec<DevValue>,
    pub device_write_iops: Vec<DevValue>,
    /// (type a|b|c, major or -1 for *, minor or -1, access)
    pub device_cgroup_rules: Vec<(String, i64, i64, String)>,
}

fn invalid(msg: String) -> EngineError {
    EngineError::Invalid(msg)
}

/// "0-2,4" into the numbers it names; None when malformed.
pub fn parse_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        if b < a || b - a > 65536 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

/// Checks a cpuset list against the host's online list (`/sys/devices/system/...`), with
/// docker's wording.
fn check_set(flag: &str, what: &str, s: &str, online_file: &str) -> Result<String, EngineError> {
    let want = parse_list(s).ok_or_else(|| invalid(format!("invalid value {s:?} for {flag}")))?;
    let online_text = std::fs::read_to_string(online_file).unwrap_or_else(|_| "0".into());
    let online = parse_list(online_text.trim()).unwrap_or_default();
    if want.iter().any(|c| !online.contains(c)) {
        return Err(invalid(format!(
            "Requested {what} are not available - requested {s}, available: {}",
            online_text.trim()
        )));
    }
    Ok(s.to_string())
}

/// DEVICE:VALUE with DEVICE a block device node: (major, minor, value text).
fn device_value<'a>(flag: &str, s: &'a str) -> Result<(i64, i64, &'a str), EngineError> {
    let (dev, val) =
        s.rsplit_once(':').ok_or_else(|| invalid(format!("invalid value {s:?} for {flag}: expected DEVICE:VALUE")))?;
    let md = std::fs::metadata(dev).map_err(|e| invalid(format!("invalid value {s:?} for {flag}: stat {dev}: {e}")))?;
    if !md.file_type().is_block_device() {
        return Err(invalid(format!("invalid value {s:?} for {flag}: {dev} is not a block device")));
    }
    let rdev = md.rdev();
    Ok((libc::major(rdev) as i64, libc::minor(rdev) as i64, val))
}

fn blkio_weight_file() -> bool {
    let d = std::path::Path::new("/sys/fs/cgroup/blkio");
    d.join("blkio.weight").exists() || d.join("blkio.bfq.weight").exists() || d.join("io.weight").exists()
}

fn check_weight(flag: &str, w: u64) -> Result<u16, EngineError> {
    if !(10..=1000).contains(&w) {
        return Err(invalid(format!("invalid {flag} {w}: range of blkio weight is from 10 to 1000")));
    }
    if !blkio_weight_file() {
        return Err(invalid(format!(
            "{flag}: this kernel's blkio cgroup has no weight (no blkio.weight or blkio.bfq.weight: no CFQ/BFQ scheduler)"
        )));
    }
    Ok(w as u16)
}

fn device_rule(s: &str) -> Result<(String, i64, i64, String), EngineError> {
    let bad =
        || invalid(format!("invalid device cgroup rule {s:?}: expected 'TYPE MAJOR:MINOR ACCESS' (e.g. 'c 1:3 rwm')"));
    let f: Vec<&str> = s.split_whitespace().collect();
    let [t, mm, acc] = f.as_slice() else { return Err(bad()) };
    if !matches!(*t, "a" | "b" | "c") || acc.is_empty() || !acc.chars().all(|c| "rwm".contains(c)) {
        return Err(bad());
    }
    let (ma, mi) = mm.split_once(':').ok_or_else(bad)?;
    let num = |x: &str| if x == "*" { Ok(-1) } else { x.parse::<i64>().map_err(|_| bad()) };
    Ok((t.to_string(), num(ma)?, num(mi)?, acc.to_string()))
}

/// Checks the flags; `base` is what the container had (for `update`: unchanged fields kept).
pub fn parse(f: &ResourceFlags, base: &Resources) -> Result<Resources, EngineError> {
    let mut r = base.clone();
    if let Some(s) = f.cpu_shares {
        if s != 0 && !(2..=262144).contains(&s) {
            return Err(invalid(format!("invalid --cpu-shares {s}: the range is from 2 to 262144")));
        }
        r.cpu_shares = Some(s).filter(|s| *s != 0);
    }
    if let Some(p) = f.cpu_period {
        if p != 0 && !(1000..=1_000_000).contains(&p) {
            return Err(invalid(
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)".into(),
            ));
        }
        r.cpu_period = Some(p).filter(|p| *p != 0);
    }
    if let Some(q) = f.cpu_quota {
        if q > 0 && q < 1000 {
            return Err(invalid("CPU cfs quota can not be less than 1ms (i.e. 1000)".into()));
        }
        r.cpu_quota = Some(q).filter(|q| *q != 0);
    }
    if let Some(p) = f.cpu_rt_period {
        r.cpu_rt_period = Some(p).filter(|p| *p != 0);
    }
    if let Some(q) = f.cpu_rt_runtime {
        r.cpu_rt_runtime = Some(q).filter(|q| *q != 0);
    }
    if let (Some(rt), Some(p)) = (r.cpu_rt_runtime, r.cpu_rt_period) {
        if rt > p as i64 {
            return Err(invalid("--cpu-rt-runtime cannot be higher than --cpu-rt-period".into()));
        }
    }
    if let Some(c) = &f.cpuset_cpus {
        r.cpuset_cpus = Some(check_set("--cpuset-cpus", "CPUs", c, "/sys/devices/system/cpu/online")?);
    }
    if let Some(m) = &f.cpuset_mems {
        r.cpuset_mems = Some(check_set("--cpuset-mems", "memory nodes", m, "/sys/devices/system/node/online")?);
    }
    if let Some(m) = &f.memory_reservation {
        r.memory_reservation = Some(super::opts::parse_size("--memory-reservation", m)?).filter(|m| *m != 0);
    }
    if let Some(s) = f.memory_swappiness {
        if !(-1..=100).contains(&s) {
            return Err(invalid(format!("invalid value: {s}, valid memory swappiness range is 0-100")));
        }
        r.memory_swappiness = u64::try_from(s).ok();
    }
    if f.oom_kill_disable {
        r.oom_kill_disable = true;
    }
    if let Some(w) = f.blkio_weight {
        r.blkio_weight = if w == 0 { None } else { Some(check_weight("--blkio-weight", w.into())?) };
    }
    for s in &f.blkio_weight_device {
        let (ma, mi, v) = device_value("--blkio-weight-device", s)?;
        let w = v.parse::<u64>().map_err(|_| invalid(format!("invalid value {s:?} for --blkio-weight-device")))?;
        let w = check_weight("--blkio-weight-device", w)?;
        set_dev(&mut r.blkio_weight_device, (ma, mi, w.into()));
    }
    let rates: [(&str, &Vec<String>, &mut Vec<DevValue>, bool); 4] = [
        ("--device-read-bps", &f.device_read_bps, &mut r.device_read_bps, true),
        ("--device-write-bps", &f.device_write_bps, &mut r.device_write_bps, true),
        ("--device-read-iops", &f.device_read_iops, &mut r.device_read_iops, false),
        ("--device-write-iops", &f.device_write_iops, &mut r.device_write_iops, false),
    ];
    for (flag, given, dst, bytes) in rates {
        for s in given {
            let (ma, mi, v) = device_value(flag, s)?;
            let n = if bytes {
                berth::units::ram_in_bytes(v).and_then(|n| u64::try_from(n).ok())
            } else {
                v.parse::<u64>().ok()
            };
            let n = n.ok_or_else(|| invalid(format!("invalid value {s:?} for {flag}: bad rate {v:?}")))?;
            set_dev(dst, (ma, mi, n));
        }
    }
    for s in &f.device_cgroup_rule {
        r.device_cgroup_rules.push(device_rule(s)?);
    }
    Ok(r)
}

fn set_dev(list: &mut Vec<DevValue>, v: DevValue) {
    list.retain(|d| (d.0, d.1) != (v.0, v.1));
    list.push(v);
}

fn dev_json(list: &[DevValue], key: &str) -> Value {
    Value::Array(list.iter().map(|(ma, mi, v)| json!({"major": ma, "minor": mi, key: v})).collect())
}

/// Adds the resources to an OCI `linux.resources` object (cpu, memory, blockIO, devices).
pub fn apply(r: &Resources, res: &mut Map<String, Value>) {
    let mut put = |section: &str, key: &str, v: Value| {
        let s = res.entry(section.to_string()).or_insert_with(|| json!({}));
        if let Some(m) = s.as_object_mut() {
            m.insert(key.to_string(), v);
        }
    };
    if let Some(v) = r.cpu_shares {
        put("cpu", "shares", json!(v));
    }
    if let Some(v) = r.cpu_period {
        put("cpu", "period", json!(v));
    }
    if let Some(v) = r.cpu_quota {
        put("cpu", "quota", json!(v));
    }
    if let Some(v) = r.cpu_rt_period {
        put("cpu", "realtimePeriod", json!(v));
    }
    if let Some(v) = r.cpu_rt_runtime {
        put("cpu", "realtimeRuntime", json!(v));
    }
    if let Some(v) = &r.cpuset_cpus {
        put("cpu", "cpus", json!(v));
    }
    if let Some(v) = &r.cpuset_mems {
        put("cpu", "mems", json!(v));
    }
    if let Some(v) = r.memory_reservation {
        put("memory", "reservation", json!(v));
    }
    if let Some(v) = r.memory_swappiness {
        put("memory", "swappiness", json!(v));
    }
    if r.oom_kill_disable {
        put("memory", "disableOOMKiller", json!(true));
    }
    if let Some(v) = r.blkio_weight {
        put("blockIO", "weight", json!(v));
    }
    if !r.blkio_weight_device.is_empty() {
        put("blockIO", "weightDevice", dev_json(&r.blkio_weight_device, "weight"));
    }
    for (list, key) in [
        (&r.device_read_bps, "throttleReadBpsDevice"),
        (&r.device_write_bps, "throttleWriteBpsDevice"),
        (&r.device_read_iops, "throttleReadIOPSDevice"),
        (&r.device_write_iops, "throttleWriteIOPSDevice"),
    ] {
        if !list.is_empty() {
            put("blockIO", key, dev_json(list, "rate"));
        }
    }
    if !r.device_cgroup_rules.is_empty() {
        let devs = res.entry("devices".to_string()).or_insert_with(|| json!([]));
        if let Some(a) = devs.as_array_mut() {
            for (t, ma, mi, acc) in &r.device_cgroup_rules {
                let mut d = json!({"allow": true, "type": t, "access": acc});
                if *ma >= 0 {
                    d["major"] = json!(ma);
                }
                if *mi >= 0 {
                    d["minor"] = json!(mi);
                }
                a.push(d);
            }
        }
    }
}

/// docker's `HostConfig` resource fields for `inspect`.
pub fn inspect_fields(r: &Resources, h: &mut Map<String, Value>) {
    let devs = |l: &[DevValue], key: &str| {
        Value::Array(l.iter().map(|(ma, mi, v)| json!({"Path": format!("{ma}:{mi}"), key: v})).collect())
    };
    let fields = [
        ("CpuShares", json!(r.cpu_shares.unwrap_or(0))),
        ("CpuPeriod", json!(r.cpu_period.unwrap_or(0))),
        ("CpuQuota", json!(r.cpu_quota.unwrap_or(0))),
        ("CpuRealtimePeriod", json!(r.cpu_rt_period.unwrap_or(0))),
        ("CpuRealtimeRuntime", json!(r.cpu_rt_runtime.unwrap_or(0))),
        ("CpusetCpus", json!(r.cpuset_cpus.clone().unwrap_or_default())),
        ("CpusetMems", json!(r.cpuset_mems.clone().unwrap_or_default())),
        ("MemoryReservation", json!(r.memory_reservation.unwrap_or(0))),
        ("MemorySwappiness", json!(r.memory_swappiness)),
        ("OomKillDisable", json!(r.oom_kill_disable)),
        ("BlkioWeight", json!(r.blkio_weight.unwrap_or(0))),
        ("BlkioWeightDevice", devs(&r.blkio_weight_device, "Weight")),
        ("BlkioDeviceReadBps", devs(&r.device_read_bps, "Rate")),
        ("BlkioDeviceWriteBps", devs(&r.device_write_bps, "Rate")),
        ("BlkioDeviceReadIOps", devs(&r.device_read_iops, "Rate")),
        ("BlkioDeviceWriteIOps", devs(&r.device_write_iops, "Rate")),
        (
            "DeviceCgroupRules",
            json!(r
                .device_cgroup_rules
                .iter()
                .map(|(t, ma, mi, a)| {
                    let n = |x: &i64| if *x < 0 { "*".to_string() } else { x.to_string() };
                    format!("{t} {}:{} {a}", n(ma), n(mi))
                })
                .collect::<Vec<_>>()),
        ),
    ];
    for (k, v) in fields {
        h.insert(k.to_string(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0-2,4"), Some(vec![0, 1, 2, 4]));
        assert_eq!(parse_list("1"), Some(vec![1]));
        assert_eq!(parse_list("2-1"), None);
        assert_eq!(parse_list("x"), None);
        assert_eq!(parse_list(""), None);
    }

    #[test]
    fn rules_and_ranges() {
        assert_eq!(device_rule("c 1:3 rwm").unwrap(), ("c".into(), 1, 3, "rwm".into()));
        assert_eq!(device_rule("b *:* m").unwrap(), ("b".into(), -1, -1, "m".into()));
        assert!(device_rule("x 1:3 rwm").is_err());
        assert!(device_rule("c 1:3 rwz").is_err());
        let f = ResourceFlags { cpu_shares: Some(1), ..Default::default() };
        assert!(parse(&f, &Resources::default()).is_err());
        let f = ResourceFlags { memory_swappiness: Some(101), ..Default::default() };
        assert!(parse(&f, &Resources::default()).is_err());
        let f = ResourceFlags { cpu_shares: Some(512), cpu_quota: Some(-1), ..Default::default() };
        let r = parse(&f, &Resources::default()).unwrap();
        let mut m = Map::new();
        apply(&r, &mut m);
        assert_eq!(m["cpu"], json!({"shares": 512, "quota": -1}));
    }
}
