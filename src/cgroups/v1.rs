//! cgroup v1 (and the v1 part of hybrid hosts): one directory per hierarchy.

use super::devices::{self, RuleSet};
use super::stats::*;
use super::util::{self, read_opt, read_u64_opt, write};
use super::{check_memory_usage, CgroupError, Manager};
use nix::errno::Errno;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use std::path::{Path, PathBuf};

/// mkdir `leaf` inside the hierarchy mounted at `hroot`, parents as needed. New cpuset
/// levels get cpuset.cpus/mems of their parent (an empty cpuset cannot take tasks).
pub(super) fn create_dir(
    hroot: &Path,
    leaf: &Path,
    created: &mut Vec<PathBuf>,
    cpuset: bool,
) -> Result<(), CgroupError> {
    match util::mkdir(leaf) {
        Ok(true) => {
            created.push(leaf.to_path_buf());
            if cpuset {
                cpuset_inherit(hroot, leaf)?;
            }
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(CgroupError::Io { errno: Errno::ENOENT, .. }) => {
            let rel = leaf
                .strip_prefix(hroot)
                .map_err(|_| CgroupError::Other(format!("{} is not below {}", leaf.display(), hroot.display())))?;
            let mut cur = hroot.to_path_buf();
            for c in rel.components() {
                cur.push(c);
                if util::mkdir(&cur)? {
                    created.push(cur.clone());
                    if cpuset {
                        cpuset_inherit(hroot, &cur)?;
                    }
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn cpuset_inherit(hroot: &Path, dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else { return Ok(()) };
    let mut cpus = util::read(parent, "cpuset.cpus")?;
    let mut mems = util::read(parent, "cpuset.mems")?;
    if (cpus.trim().is_empty() || mems.trim().is_empty()) && parent != hroot && parent.starts_with(hroot) {
        cpuset_inherit(hroot, parent)?;
        cpus = util::read(parent, "cpuset.cpus")?;
        mems = util::read(parent, "cpuset.mems")?;
    }
    if !cpus.trim().is_empty() {
        write(dir, "cpuset.cpus", cpus.trim())?;
    }
    if !mems.trim().is_empty() {
        write(dir, "cpuset.mems", mems.trim())?;
    }
    Ok(())
}

pub(super) fn apply(
    m: &Manager,
    r: Option<&LinuxResources>,
    dev: Option<&RuleSet>,
    fresh: bool,
) -> Result<(), CgroupError> {
    if let Some(cpu) = r.and_then(|r| r.cpu().as_ref()) {
        set_cpuset(m, cpu)?;
    }
    if let Some(set) = dev {
        match m.controller_dir("devices") {
            Some(d) => devices::apply_v1(d, set, fresh)?,
            None if set.allows_everything() => {}
            None => return Err(CgroupError::NoController { controller: "devices", what: "device rules" }),
        }
    }
    let Some(r) = r else { return Ok(()) };
    if let Some(mem) = r.memory() {
        set_memory(m, mem, fresh)?;
    }
    if let Some(cpu) = r.cpu() {
        set_cpu(m, cpu)?;
    }
    if let Some(p) = r.pids() {
        let limit = p.limit();
        if limit != 0 {
            let v = if limit > 0 { limit.to_string() } else { "max".to_string() };
            write(m.need("pids", "pids limit")?, "pids.max", &v)?;
        }
    }
    if let Some(b) = r.block_io() {
        set_blkio(m, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        let mut skip_rsvd = false;
        for l in h {
            let dir = m.need("hugetlb", "hugepage limits")?;
            let size = super::check_page_size(l.page_size())?;
            let v = l.limit().to_string();
            write(dir, &format!("hugetlb.{size}.limit_in_bytes"), &v)?;
            if !skip_rsvd {
                match write(dir, &format!("hugetlb.{size}.rsvd.limit_in_bytes"), &v) {
                    Err(CgroupError::Write { errno: Errno::ENOENT, .. }) => skip_rsvd = true,
                    r => r?,
                }
            }
        }
    }
    if let Some(n) = r.network() {
        if let Some(c) = n.class_id() {
            write(m.need("net_cls", "network class id")?, "net_cls.classid", &c.to_string())?;
        }
        for p in n.priorities().iter().flatten() {
            let v = format!("{} {}", p.name(), p.priority());
            write(m.need("net_prio", "network priorities")?, "net_prio.ifpriomap", &v)?;
        }
    }
    if let Some(rdma) = r.rdma() {
        for (dev, l) in rdma {
            if let Some(v) = super::rdma_line(dev, l) {
                write(m.need("rdma", "rdma limits")?, "rdma.max", &v)?;
            }
        }
    }
    Ok(())
}

fn set_cpuset(m: &Manager, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(c) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        write(m.need("cpuset", "cpuset cpus")?, "cpuset.cpus", c)?;
    }
    if let Some(c) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        write(m.need("cpuset", "cpuset mems")?, "cpuset.mems", c)?;
    }
    Ok(())
}

const MEM_LIMIT: &str = "memory.limit_in_bytes";
const MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";

fn set_mem_limit(dir: &Path, v: i64) -> Result<(), CgroupError> {
    if v == 0 {
        return Ok(());
    }
    match write(dir, MEM_LIMIT, &v.to_string()) {
        Err(CgroupError::Write { errno: Errno::EBUSY, path, .. }) => {
            // The new limit is below the current usage.
            let usage = util::read_u64(dir, "memory.usage_in_bytes").unwrap_or(0);
            let peak = util::read_u64(dir, "memory.max_usage_in_bytes").unwrap_or(0);
            Err(CgroupError::Invalid(format!(
                "write {v} to {}: Device or resource busy (current usage: {usage}, peak usage: {peak})",
                path.display()
            )))
        }
        r => r,
    }
}

fn set_swap(dir: &Path, v: i64) -> Result<(), CgroupError> {
    if v == 0 {
        return Ok(());
    }
    write(dir, MEMSW_LIMIT, &v.to_string())
}

fn set_memory(m: &Manager, mem: &LinuxMemory, fresh: bool) -> Result<(), CgroupError> {
    let limit = mem.limit().unwrap_or(0);
    let mut swap = mem.swap().unwrap_or(0);
    let reservation = mem.reservation().unwrap_or(0);
    // kernel and kernelTCP are ignored, as runc does (the kernel dropped them).
    if limit == 0 && swap == 0 && reservation == 0 && mem.disable_oom_killer().is_none() && mem.swappiness().is_none() {
        return Ok(());
    }
    let dir = m.need("memory", "memory limits")?;
    if !fresh && mem.check_before_update() == Some(true) {
        check_memory_usage(dir, "memory.usage_in_bytes", limit, swap)?;
    }
    // Unlimited memory without an explicit swap means unlimited swap too.
    if limit == -1 && swap == 0 && util::exists(&dir.join(MEMSW_LIMIT)) {
        swap = -1;
    }
    // memory.memsw.limit_in_bytes must stay >= memory.limit_in_bytes at every step: raise
    // memsw first when the new memsw is above the current memory limit.
    if limit != 0 && swap != 0 {
        let cur = if fresh { u64::MAX } else { util::read_u64(dir, MEM_LIMIT)? };
        if swap == -1 || cur < swap as u64 {
            set_swap(dir, swap)?;
            set_mem_limit(dir, limit)?;
        } else {
            set_mem_limit(dir, limit)?;
            set_swap(dir, swap)?;
        }
    } else {
        set_mem_limit(dir, limit)?;
        set_swap(dir, swap)?;
    }
    if reservation != 0 {
        write(dir, "memory.soft_limit_in_bytes", &reservation.to_string())?;
    }
    match mem.disable_oom_killer() {
        Some(true) => write(dir, "memory.oom_control", "1")?,
        Some(false) if !fresh => write(dir, "memory.oom_control", "0")?,
        _ => {}
    }
    if let Some(s) = mem.swappiness() {
        write(dir, "memory.swappiness", &s.to_string())?;
    }
    Ok(())
}

/// Write `v` to `dir/file`; an EINVAL is tolerated (returns the value to retry) when
/// `retry_later` says a related file written afterwards may make it valid.
fn write_or_defer(dir: &Path, file: &str, v: String, retry_later: bool) -> Result<Option<String>, CgroupError> {
    match write(dir, file, &v) {
        Ok(()) => Ok(None),
        Err(CgroupError::Write { errno: Errno::EINVAL, .. }) if retry_later => Ok(Some(v)),
        Err(e) => Err(e),
    }
}

fn set_cpu(m: &Manager, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    let shares = cpu.shares().unwrap_or(0);
    let quota = cpu.quota().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    let rt_runtime = cpu.realtime_runtime().unwrap_or(0);
    let rt_period = cpu.realtime_period().unwrap_or(0);
    if shares == 0
        && quota == 0
        && period == 0
        && cpu.burst().is_none()
        && cpu.idle().is_none()
        && rt_runtime == 0
        && rt_period == 0
    {
        return Ok(());
    }
    let dir = m.need("cpu", "cpu limits")?;
    if shares != 0 {
        write(dir, "cpu.shares", &shares.to_string())?;
    }
    // A new period or burst may not fit the current quota (EINVAL): then write it again
    // after the quota.
    let mut period_later = None;
    if period != 0 {
        period_later = write_or_defer(dir, "cpu.cfs_period_us", period.to_string(), quota != 0)?;
    }
    let mut burst_later = None;
    if let Some(b) = cpu.burst() {
        match write_or_defer(dir, "cpu.cfs_burst_us", b.to_string(), quota != 0) {
            Ok(v) => burst_later = v,
            // Kernels before 5.14 have no burst.
            Err(CgroupError::Write { errno: Errno::ENOENT, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if quota != 0 {
        write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        if let Some(p) = period_later {
            write(dir, "cpu.cfs_period_us", &p)?;
        }
        if let Some(b) = burst_later {
            write(dir, "cpu.cfs_burst_us", &b)?;
        }
    }
    if let Some(i) = cpu.idle() {
        write(dir, "cpu.idle", &i.to_string())?;
    }
    let mut rt_period_later = None;
    if rt_period != 0 {
        rt_period_later = write_or_defer(dir, "cpu.rt_period_us", rt_period.to_string(), rt_runtime != 0)?;
    }
    if rt_runtime != 0 {
        write(dir, "cpu.rt_runtime_us", &rt_runtime.to_string())?;
        if let Some(p) = rt_period_later {
            write(dir, "cpu.rt_period_us", &p)?;
        }
    }
    Ok(())
}

fn set_blkio(m: &Manager, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let weight = b.weight().unwrap_or(0);
    let leaf = b.leaf_weight().unwrap_or(0);
    let wd = b.weight_device().as_deref().unwrap_or(&[]);
    let throttles = [
        ("blkio.throttle.read_bps_device", b.throttle_read_bps_device()),
        ("blkio.throttle.write_bps_device", b.throttle_write_bps_device()),
        ("blkio.throttle.read_iops_device", b.throttle_read_iops_device()),
        ("blkio.throttle.write_iops_device", b.throttle_write_iops_device()),
    ];
    let any_throttle = throttles.iter().any(|(_, t)| t.as_ref().is_some_and(|t| !t.is_empty()));
    if weight == 0 && leaf == 0 && wd.is_empty() && !any_throttle {
        return Ok(());
    }
    let dir = m.need("blkio", "block io limits")?;
    if weight != 0 || !wd.is_empty() {
        // CFQ has blkio.weight; with BFQ it is blkio.bfq.weight.
        let (wf, wdf) = if util::exists(&dir.join("blkio.weight")) {
            ("blkio.weight", "blkio.weight_device")
        } else {
            ("blkio.bfq.weight", "blkio.bfq.weight_device")
        };
        if weight != 0 {
            write(dir, wf, &weight.to_string())?;
        }
        for d in wd {
            if let Some(w) = d.weight().filter(|w| *w != 0) {
                write(dir, wdf, &format!("{}:{} {w}", d.major(), d.minor()))?;
            }
            if let Some(w) = d.leaf_weight().filter(|w| *w != 0) {
                write(dir, "blkio.leaf_weight_device", &format!("{}:{} {w}", d.major(), d.minor()))?;
            }
        }
    }
    if leaf != 0 {
        write(dir, "blkio.leaf_weight", &leaf.to_string())?;
    }
    for (file, list) in throttles {
        for t in list.iter().flatten() {
            write(dir, file, &format!("{}:{} {}", t.major(), t.minor(), t.rate()))?;
        }
    }
    Ok(())
}

/// Freeze with freezer.state, waiting for FROZEN. Like runc, a freeze that keeps hanging in
/// FREEZING is retried by thawing shortly every 50 attempts.
pub(super) fn freeze(dir: &Path) -> Result<(), CgroupError> {
    let res = (|| {
        for i in 0..1000 {
            if i % 50 == 49 {
                write(dir, "freezer.state", "THAWED")?;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            write(dir, "freezer.state", "FROZEN")?;
            if i % 25 == 24 {
                std::thread::sleep(std::time::Duration::from_micros(10));
            }
            let st = util::read(dir, "freezer.state")?;
            match st.trim() {
                "FREEZING" => continue,
                "FROZEN" => return Ok(()),
                s => {
                    return Err(CgroupError::Other(format!(
                        "unexpected freezer state {s} in {} while freezing",
                        dir.display()
                    )))
                }
            }
        }
        Err(CgroupError::Other(format!("unable to freeze {}", dir.display())))
    })();
    if res.is_err() {
        let _ = write(dir, "freezer.state", "THAWED");
    }
    res
}

// ---------------------------------------------------------------------------------------------
// Stats

pub(super) fn stats(m: &Manager) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    if let Some(d) = m.controller_dir("cpuacct") {
        cpuacct_stats(d, &mut s.cpu.usage)?;
    }
    if let Some(d) = m.controller_dir("cpu") {
        if let Some(c) = read_opt(d, "cpu.stat")? {
            for (k, v) in util::key_values(&c) {
                match k {
                    "nr_periods" => s.cpu.throttling.periods = v,
                    "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                    "throttled_time" => s.cpu.throttling.throttled_time = v,
                    _ => {}
                }
            }
        }
    }
    if let Some(d) = m.controller_dir("cpuset") {
        cpuset_stats(d, &mut s.cpuset)?;
    }
    if let Some(d) = m.controller_dir("memory") {
        memory_stats(d, &mut s.memory)?;
    }
    if let Some(d) = m.controller_dir("pids") {
        s.pids.current = read_u64_opt(d, "pids.current")?.unwrap_or(0);
        s.pids.limit = match read_u64_opt(d, "pids.max")? {
            Some(u64::MAX) | None => 0,
            Some(v) => v,
        };
    }
    if let Some(d) = m.controller_dir("blkio") {
        blkio_stats(d, &mut s.blkio)?;
    }
    if let Some(d) = m.controller_dir("hugetlb") {
        for size in hugepage_sizes() {
            let p = format!("hugetlb.{size}");
            let rsvd = util::exists(&d.join(format!("{p}.rsvd.usage_in_bytes")));
            let p = if rsvd { format!("{p}.rsvd") } else { p };
            let get = |f: &str| read_u64_opt(d, &format!("{p}.{f}")).map(|v| v.unwrap_or(0));
            s.hugetlb.insert(
                size,
                Hugetlb { usage: get("usage_in_bytes")?, max: get("max_usage_in_bytes")?, failcnt: get("failcnt")? },
            );
        }
    }
    Ok(s)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn cpuacct_stats(d: &Path, u: &mut CpuUsage) -> Result<(), CgroupError> {
    u.total = read_u64_opt(d, "cpuacct.usage")?.unwrap_or(0);
    if let Some(s) = read_opt(d, "cpuacct.usage_percpu")? {
        u.percpu = s.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    }
    if let Some(s) = read_opt(d, "cpuacct.usage_all")? {
        let (k, us) = parse_usage_all(&s);
        u.percpu_kernel = k;
        u.percpu_user = us;
    }
    if let Some(s) = read_opt(d, "cpuacct.stat")? {
        let tck = clock_ticks();
        for (k, v) in util::key_values(&s) {
            match k {
                "user" => u.user = v.saturating_mul(1_000_000_000) / tck,
                "system" => u.kernel = v.saturating_mul(1_000_000_000) / tck,
                _ => {}
            }
        }
    }
    Ok(())
}

/// cpuacct.usage_all: "cpu user system\n0 123 456\n..." -> (per-cpu kernel, per-cpu user).
fn parse_usage_all(s: &str) -> (Vec<u64>, Vec<u64>) {
    let mut kernel = Vec::new();
    let mut user = Vec::new();
    let mut lines = s.lines();
    if !lines.next().is_some_and(|h| h.starts_with("cpu user system")) {
        return (kernel, user);
    }
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 3 {
            if let (Ok(us), Ok(sy)) = (f[1].parse(), f[2].parse()) {
                user.push(us);
                kernel.push(sy);
            }
        }
    }
    (kernel, user)
}

fn cpuset_stats(d: &Path, c: &mut CpuSet) -> Result<(), CgroupError> {
    let list = |f: &str| -> Result<Vec<u16>, CgroupError> {
        Ok(read_opt(d, f)?.and_then(|s| util::parse_list(&s)).unwrap_or_default())
    };
    let num = |f: &str| read_u64_opt(d, f).map(|v| v.unwrap_or(0));
    c.cpus = list("cpuset.cpus")?;
    c.mems = list("cpuset.mems")?;
    c.cpu_exclusive = num("cpuset.cpu_exclusive")?;
    c.mem_hardwall = num("cpuset.mem_hardwall")?;
    c.mem_exclusive = num("cpuset.mem_exclusive")?;
    c.memory_migrate = num("cpuset.memory_migrate")?;
    c.memory_spread_page = num("cpuset.memory_spread_page")?;
    c.memory_spread_slab = num("cpuset.memory_spread_slab")?;
    c.memory_pressure = num("cpuset.memory_pressure")?;
    c.sched_load_balance = num("cpuset.sched_load_balance")?;
    c.sched_relax_domain_level =
        read_opt(d, "cpuset.sched_relax_domain_level")?.and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    Ok(())
}

/// usage/limit/max/failcnt of "memory", "memory.memsw", "memory.kmem", "memory.kmem.tcp".
fn memory_entry(d: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    let Some(usage) = read_u64_opt(d, &format!("{prefix}.usage_in_bytes"))? else {
        return Ok(MemoryEntry::default());
    };
    let get = |f: &str| read_u64_opt(d, &format!("{prefix}.{f}")).map(|v| v.unwrap_or(0));
    Ok(MemoryEntry { usage, max: get("max_usage_in_bytes")?, failcnt: get("failcnt")?, limit: get("limit_in_bytes")? })
}

fn memory_stats(d: &Path, mem: &mut Memory) -> Result<(), CgroupError> {
    if let Some(s) = read_opt(d, "memory.stat")? {
        mem.raw = util::key_values(&s).map(|(k, v)| (k.to_string(), v)).collect();
    }
    mem.cache = mem.raw.get("cache").copied().unwrap_or(0);
    mem.usage = memory_entry(d, "memory")?;
    mem.swap = memory_entry(d, "memory.memsw")?;
    mem.kernel = memory_entry(d, "memory.kmem")?;
    mem.kernel_tcp = memory_entry(d, "memory.kmem.tcp")?;
    Ok(())
}

/// "8:0 Read 1282048" lines (the "Total N" line is skipped); None if the file is absent or
/// has no entries.
fn parse_blkio(s: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for l in s.lines() {
        let f: Vec<&str> = l.split([' ', ':']).filter(|x| !x.is_empty()).collect();
        let (Some(maj), Some(min)) = (f.first().and_then(|v| v.parse().ok()), f.get(1).and_then(|v| v.parse().ok()))
        else {
            continue;
        };
        let (op, val) = match f.len() {
            3 => (String::new(), f[2]),
            4 => (f[2].to_string(), f[3]),
            _ => continue,
        };
        let Ok(value) = val.parse() else { continue };
        out.push(BlkioEntry { major: maj, minor: min, op, value });
    }
    out
}

fn blkio_stats(d: &Path, b: &mut Blkio) -> Result<(), CgroupError> {
    // Like runc: the first group whose first file has entries is used.
    type Field = fn(&mut Blkio) -> &mut Vec<BlkioEntry>;
    let bfq_debug: &[(&str, Field)] = &[
        ("blkio.bfq.sectors_recursive", |b| &mut b.sectors_recursive),
        ("blkio.bfq.io_service_time_recursive", |b| &mut b.io_service_time_recursive),
        ("blkio.bfq.io_wait_time_recursive", |b| &mut b.io_wait_time_recursive),
        ("blkio.bfq.io_merged_recursive", |b| &mut b.io_merged_recursive),
        ("blkio.bfq.io_queued_recursive", |b| &mut b.io_queued_recursive),
        ("blkio.bfq.time_recursive", |b| &mut b.io_time_recursive),
        ("blkio.bfq.io_serviced_recursive", |b| &mut b.io_serviced_recursive),
        ("blkio.bfq.io_service_bytes_recursive", |b| &mut b.io_service_bytes_recursive),
    ];
    let bfq: &[(&str, Field)] = &[
        ("blkio.bfq.io_serviced_recursive", |b| &mut b.io_serviced_recursive),
        ("blkio.bfq.io_service_bytes_recursive", |b| &mut b.io_service_bytes_recursive),
    ];
    let cfq: &[(&str, Field)] = &[
        ("blkio.sectors_recursive", |b| &mut b.sectors_recursive),
        ("blkio.io_service_time_recursive", |b| &mut b.io_service_time_recursive),
        ("blkio.io_wait_time_recursive", |b| &mut b.io_wait_time_recursive),
        ("blkio.io_merged_recursive", |b| &mut b.io_merged_recursive),
        ("blkio.io_queued_recursive", |b| &mut b.io_queued_recursive),
        ("blkio.time_recursive", |b| &mut b.io_time_recursive),
        ("blkio.io_serviced_recursive", |b| &mut b.io_serviced_recursive),
        ("blkio.io_service_bytes_recursive", |b| &mut b.io_service_bytes_recursive),
    ];
    let throttle: &[(&str, Field)] = &[
        ("blkio.throttle.io_serviced_recursive", |b| &mut b.io_serviced_recursive),
        ("blkio.throttle.io_service_bytes_recursive", |b| &mut b.io_service_bytes_recursive),
    ];
    let base: &[(&str, Field)] = &[
        ("blkio.throttle.io_serviced", |b| &mut b.io_serviced_recursive),
        ("blkio.throttle.io_service_bytes", |b| &mut b.io_service_bytes_recursive),
    ];
    for group in [bfq_debug, bfq, cfq, throttle, base] {
        let first = read_opt(d, group[0].0)?.map(|s| parse_blkio(&s)).unwrap_or_default();
        if first.is_empty() {
            continue;
        }
        *(group[0].1)(b) = first;
        for (file, field) in &group[1..] {
            *field(b) = read_opt(d, file)?.map(|s| parse_blkio(&s)).unwrap_or_default();
        }
        return Ok(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_all() {
        let (k, u) = parse_usage_all("cpu user system\n0 10 20\n1 30 40\n");
        assert_eq!(k, vec![20, 40]);
        assert_eq!(u, vec![10, 30]);
        assert_eq!(parse_usage_all("garbage\n0 1 2\n"), (vec![], vec![]));
    }

    #[test]
    fn blkio_lines() {
        let e = parse_blkio("8:0 Read 1282048\n8:0 Write 2195456\n8:16 6792\nTotal 3477504\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], BlkioEntry { major: 8, minor: 0, op: "Read".into(), value: 1282048 });
        assert_eq!(e[2], BlkioEntry { major: 8, minor: 16, op: "".into(), value: 6792 });
        assert!(parse_blkio("Total 0\n").is_empty());
    }
}
