//! cgroup v2: one directory, controllers enabled through the parents' cgroup.subtree_control.

use super::devices::{self, RuleSet};
use super::stats::*;
use super::util::{self, read_opt, read_u64_opt, write};
use super::{blkio_weight_to_io_weight, check_memory_usage, convert_swap_to_v2, shares_to_weight, CgroupError};
use nix::errno::Errno;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// mkdir every level of `rel` below `root`, enabling in each parent (root included) all
/// controllers the root offers. Existing levels are kept.
pub(super) fn create_dirs(root: &Path, rel: &str, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let ctrls = util::read(root, "cgroup.controllers")?;
    let list: Vec<&str> = ctrls.split_whitespace().collect();
    let enable = list.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
    let mut cur = root.to_path_buf();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        if !list.is_empty() && write(&cur, "cgroup.subtree_control", &enable).is_err() {
            // Some controller cannot be enabled here (e.g. threaded or busy cgroup): enable
            // the others one by one, like runc.
            for c in &list {
                let _ = write(&cur, "cgroup.subtree_control", &format!("+{c}"));
            }
        }
        cur.push(comp);
        if util::mkdir(&cur)? {
            created.push(cur.clone());
        }
    }
    Ok(())
}

/// 0 = unset, -1 = "max".
fn num(v: i64) -> Option<String> {
    match v {
        0 => None,
        -1 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

pub(super) fn apply(
    dir: &Path,
    r: Option<&LinuxResources>,
    dev: Option<&RuleSet>,
    fresh: bool,
) -> Result<(), CgroupError> {
    if let Some(r) = r {
        if let Some(p) = r.pids() {
            let limit = p.limit();
            if limit != 0 {
                let v = if limit > 0 { limit.to_string() } else { "max".to_string() };
                write(dir, "pids.max", &v)?;
            }
        }
        if let Some(m) = r.memory() {
            set_memory(dir, m, fresh)?;
        }
        if let Some(b) = r.block_io() {
            set_io(dir, b)?;
        }
        if let Some(c) = r.cpu() {
            set_cpu(dir, c)?;
        }
    }
    if let Some(set) = dev {
        devices::apply_v2(dir, set, fresh)?;
    }
    let Some(r) = r else { return Ok(()) };
    if let Some(c) = r.cpu() {
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.mems", v)?;
        }
    }
    if let Some(h) = r.hugepage_limits() {
        let mut skip_rsvd = false;
        for l in h {
            let size = super::check_page_size(l.page_size())?;
            let v = l.limit().to_string();
            write(dir, &format!("hugetlb.{size}.max"), &v)?;
            if !skip_rsvd {
                match write(dir, &format!("hugetlb.{size}.rsvd.max"), &v) {
                    Err(CgroupError::Write { errno: Errno::ENOENT, .. }) => skip_rsvd = true,
                    r => r?,
                }
            }
        }
    }
    if let Some(rdma) = r.rdma() {
        for (dev, l) in rdma {
            if let Some(v) = super::rdma_line(dev, l) {
                write(dir, "rdma.max", &v)?;
            }
        }
    }
    // network (net_cls/net_prio), swappiness, disableOOMKiller, realtime and leaf weights
    // have no v2 equivalent and are ignored, as runc does.
    if let Some(u) = r.unified() {
        set_unified(dir, u)?;
    }
    Ok(())
}

fn set_memory(dir: &Path, m: &LinuxMemory, fresh: bool) -> Result<(), CgroupError> {
    let limit = m.limit().unwrap_or(0);
    let swap = m.swap().unwrap_or(0);
    let low = m.reservation().unwrap_or(0);
    if limit == 0 && swap == 0 && low == 0 {
        return Ok(());
    }
    if !fresh && m.check_before_update() == Some(true) {
        check_memory_usage(dir, "memory.current", limit, swap)?;
    }
    // An update of memory+swap alone is converted against the current memory.max (runc
    // merges the update into its stored limits, which comes to the same).
    let base = if limit == 0 && swap > 0 && !fresh {
        match read_opt(dir, "memory.max")?.as_deref().map(str::trim) {
            None | Some("max") => -1,
            Some(v) => v.parse().map_err(|_| CgroupError::Parse {
                path: dir.join("memory.max"),
                what: format!("not a number: {v:?}"),
            })?,
        }
    } else {
        limit
    };
    let sw = convert_swap_to_v2(swap, base)?;
    let sw_s = match num(sw) {
        None if swap > 0 => Some("0".to_string()), // swap == limit: no swap at all
        s => s,
    };
    if let Some(v) = sw_s {
        match write(dir, "memory.swap.max", &v) {
            // No swap accounting: "no limit" and "no swap" are both fine.
            Err(CgroupError::Write { errno: Errno::ENOENT, .. }) if v == "max" || v == "0" => {}
            r => r?,
        }
    }
    if let Some(v) = num(limit) {
        write(dir, "memory.max", &v)?;
    }
    if let Some(v) = num(low) {
        write(dir, "memory.low", &v)?;
    }
    Ok(())
}

fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(i) = c.idle() {
        write(dir, "cpu.idle", &i.to_string())?;
    }
    let weight = shares_to_weight(c.shares().unwrap_or(0));
    if weight != 0 {
        write(dir, "cpu.weight", &weight.to_string())?;
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    let mut burst_later = None;
    if let Some(b) = c.burst() {
        match write(dir, "cpu.max.burst", &b.to_string()) {
            Ok(()) => {}
            // burst > current quota: retry once the new quota is in place.
            Err(CgroupError::Write { errno: Errno::EINVAL, .. }) if quota != 0 => burst_later = Some(b),
            Err(e) => return Err(e),
        }
    }
    if quota != 0 || period != 0 {
        // Only a period: keep the current quota (reading cpu.max costs one read, update only).
        let cur = if quota == 0 { read_opt(dir, "cpu.max")? } else { None };
        if let Some(v) = cpu_max_value(quota, period, cur.as_deref()) {
            write(dir, "cpu.max", &v)?;
        }
        if let Some(b) = burst_later {
            write(dir, "cpu.max.burst", &b.to_string())?;
        }
    }
    Ok(())
}

/// The cpu.max line for the spec's quota and period (0 = unset, quota < 0 = no limit).
/// Without a period only the quota is written, so the kernel keeps the current period; without
/// a quota the current one (`cur`, cpu.max's content) is kept. None: nothing to write.
fn cpu_max_value(quota: i64, period: u64, cur: Option<&str>) -> Option<String> {
    let q = match quota {
        0 if period == 0 => return None,
        0 => cur.and_then(|c| c.split_whitespace().next()).unwrap_or("max").to_string(),
        q if q < 0 => "max".to_string(),
        q => q.to_string(),
    };
    Some(if period != 0 { format!("{q} {period}") } else { q })
}

fn set_io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let weight = b.weight().unwrap_or(0);
    let wd = b.weight_device().as_deref().unwrap_or(&[]);
    if weight != 0 || !wd.is_empty() {
        // With the BFQ scheduler io.bfq.weight takes the v1 range directly; it accepts
        // per-device lines when it reads as "default N".
        let bfq = read_opt(dir, "io.bfq.weight")?;
        if weight != 0 {
            match &bfq {
                Some(_) => write(dir, "io.bfq.weight", &weight.to_string())?,
                None => write(dir, "io.weight", &blkio_weight_to_io_weight(weight).to_string())?,
            }
        }
        if bfq.as_deref().is_some_and(|s| s.trim().parse::<u64>().is_err()) {
            for d in wd {
                if let Some(w) = d.weight().filter(|w| *w != 0) {
                    write(dir, "io.bfq.weight", &format!("{}:{} {w}", d.major(), d.minor()))?;
                }
            }
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for t in list.iter().flatten() {
            write(dir, "io.max", &format!("{}:{} {key}={}", t.major(), t.minor(), t.rate()))?;
        }
    }
    Ok(())
}

fn set_unified(dir: &Path, u: &std::collections::HashMap<String, String>) -> Result<(), CgroupError> {
    for (k, v) in u {
        if k.contains('/') || k.is_empty() || k.starts_with('.') {
            return Err(CgroupError::Invalid(format!("unified resource {k:?} must be a file name (no slashes)")));
        }
        // Multi-line values (io.max with several devices) need one write per line.
        let lines: Vec<&str> = v.split('\n').filter(|l| !l.is_empty()).collect();
        let lines = if lines.is_empty() { vec![v.as_str()] } else { lines };
        for l in lines {
            if let Err(e) = write(dir, k, l) {
                if let CgroupError::Write { errno: Errno::ENOENT | Errno::EACCES | Errno::EPERM, .. } = e {
                    if let Some((c, _)) = k.split_once('.') {
                        let avail = read_opt(dir, "cgroup.controllers")?.unwrap_or_default();
                        if c != "cgroup" && !avail.split_whitespace().any(|a| a == c) {
                            return Err(CgroupError::Invalid(format!(
                                "unified resource {k:?} can't be set: controller {c:?} not available in {}",
                                dir.display()
                            )));
                        }
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Write cgroup.freeze and, when freezing, wait until cgroup.events says "frozen 1".
pub(super) fn freeze(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    match write(dir, "cgroup.freeze", if frozen { "1" } else { "0" }) {
        Err(CgroupError::Write { errno: Errno::ENOENT, .. }) if !frozen => return Ok(()),
        Err(CgroupError::Write { errno: Errno::ENOENT, path, .. }) => {
            return Err(CgroupError::Other(format!(
                "freezer not supported: {} is missing (kernel < 5.2)",
                path.display()
            )))
        }
        r => r?,
    }
    if !frozen {
        return Ok(());
    }
    let start = Instant::now();
    let mut delay = Duration::from_micros(50);
    loop {
        let ev = util::read(dir, "cgroup.events")?;
        if util::value_by_key(&ev, "frozen") == Some(1) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = write(dir, "cgroup.freeze", "0");
            return Err(CgroupError::Other(format!("timeout waiting for {} to freeze", dir.display())));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Stats

pub(super) fn stats(dir: &Path) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    // pids
    match read_u64_opt(dir, "pids.current")? {
        Some(cur) => {
            s.pids.current = cur;
            s.pids.limit = match read_u64_opt(dir, "pids.max")? {
                Some(u64::MAX) | None => 0,
                Some(v) => v,
            };
        }
        None => {
            let procs = util::read(dir, "cgroup.procs")?;
            s.pids.current = procs.lines().count() as u64;
        }
    }
    // memory
    if let Some(st) = read_opt(dir, "memory.stat")? {
        s.memory.raw = util::key_values(&st).map(|(k, v)| (k.to_string(), v)).collect();
        s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
        let usage = MemoryEntry {
            usage: read_u64_opt(dir, "memory.current")?.unwrap_or(0),
            limit: read_u64_opt(dir, "memory.max")?.unwrap_or(0),
            max: read_u64_opt(dir, "memory.peak")?.unwrap_or(0),
            failcnt: 0,
        };
        let mut swap = MemoryEntry::default();
        if let Some(cur) = read_u64_opt(dir, "memory.swap.current")? {
            swap.usage = cur;
            swap.limit = read_u64_opt(dir, "memory.swap.max")?.unwrap_or(0);
        }
        // runc reports swap as memory+swap, like v1's memsw.
        swap.usage = swap.usage.saturating_add(usage.usage);
        if swap.limit != u64::MAX {
            swap.limit = swap.limit.saturating_add(usage.limit);
        }
        s.memory.usage = usage;
        s.memory.swap = swap;
        s.memory.psi = read_opt(dir, "memory.pressure")?.and_then(|p| parse_psi(&p));
    }
    // io
    if let Some(io) = read_opt(dir, "io.stat")? {
        let (bytes, ios) = parse_io_stat(&io);
        s.blkio.io_service_bytes_recursive = bytes;
        s.blkio.io_serviced_recursive = ios;
        s.blkio.psi = read_opt(dir, "io.pressure")?.and_then(|p| parse_psi(&p));
    }
    // cpu
    if let Some(c) = read_opt(dir, "cpu.stat")? {
        for (k, v) in util::key_values(&c) {
            match k {
                "usage_usec" => s.cpu.usage.total = v * 1000,
                "user_usec" => s.cpu.usage.user = v * 1000,
                "system_usec" => s.cpu.usage.kernel = v * 1000,
                "nr_periods" => s.cpu.throttling.periods = v,
                "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                "throttled_usec" => s.cpu.throttling.throttled_time = v * 1000,
                _ => {}
            }
        }
        s.cpu.psi = read_opt(dir, "cpu.pressure")?.and_then(|p| parse_psi(&p));
    }
    // hugetlb
    for size in hugepage_sizes() {
        let p = format!("hugetlb.{size}");
        let usage = match read_u64_opt(dir, &format!("{p}.rsvd.current"))? {
            Some(v) => v,
            None => match read_u64_opt(dir, &format!("{p}.current"))? {
                Some(v) => v,
                None => continue, // controller not enabled
            },
        };
        let failcnt = read_opt(dir, &format!("{p}.events"))?.and_then(|e| util::value_by_key(&e, "max")).unwrap_or(0);
        s.hugetlb.insert(size, Hugetlb { usage, max: 0, failcnt });
    }
    Ok(s)
}

/// io.stat lines "8:0 rbytes=1 wbytes=2 rios=3 wios=4 ..." to (bytes, ios) entries.
fn parse_io_stat(s: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for l in s.lines() {
        let mut it = l.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else { continue };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else { continue };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry { major, minor, op: op.into(), value });
        }
    }
    (bytes, ios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stat() {
        let (b, i) = parse_io_stat("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n253:1 rbytes=5\n");
        assert_eq!(b.len(), 3);
        assert_eq!(i.len(), 2);
        assert_eq!(b[1], BlkioEntry { major: 8, minor: 0, op: "Write".into(), value: 20 });
        assert_eq!(b[2].major, 253);
    }

    #[test]
    fn cpu_max() {
        assert_eq!(cpu_max_value(0, 0, Some("max 100000")), None);
        assert_eq!(cpu_max_value(50000, 0, None).as_deref(), Some("50000"));
        assert_eq!(cpu_max_value(50000, 200000, None).as_deref(), Some("50000 200000"));
        assert_eq!(cpu_max_value(-1, 0, None).as_deref(), Some("max"));
        assert_eq!(cpu_max_value(-1, 50000, None).as_deref(), Some("max 50000"));
        assert_eq!(cpu_max_value(0, 50000, Some("30000 200000\n")).as_deref(), Some("30000 50000"));
        assert_eq!(cpu_max_value(0, 50000, Some("max 100000")).as_deref(), Some("max 50000"));
        assert_eq!(cpu_max_value(0, 50000, None).as_deref(), Some("max 50000"));
    }

    #[test]
    fn nums() {
        assert_eq!(num(0), None);
        assert_eq!(num(-1).as_deref(), Some("max"));
        assert_eq!(num(5).as_deref(), Some("5"));
    }
}
