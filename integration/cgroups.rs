//! Cgroup resources on a cgroup v1 (or hybrid) host: every resource of the runtime spec that
//! the host supports is set at create and read back from the host's cgroup files and from the
//! container's own cgroup mount; `update`, `events`, `pause`/`resume`, `ps`, `kill --all`,
//! `delete -f`, an OOM kill, and bad input that must leave nothing behind.
//!
//! Every container gets an explicit top-level cgroupsPath `/berth-it-<tag>-<pid>`, so nothing
//! is ever created below the caller's own cgroup. On a pure cgroup v2 host these tests print
//! "skipped: not cgroup v1" and return (cgroups_v2.rs covers that layout).

use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers shared with cgroups_v2.rs

pub(crate) const CG_ROOT: &str = "/sys/fs/cgroup";

/// True when /sys/fs/cgroup itself is a cgroup2 mount (pure v2).
pub(crate) fn host_is_v2() -> bool {
    nix::sys::statfs::statfs(CG_ROOT)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// True when the host has v1 hierarchies (v1 or hybrid) with the memory controller.
pub(crate) fn host_is_v1() -> bool {
    !host_is_v2() && Path::new(CG_ROOT).join("memory/memory.limit_in_bytes").exists()
}

/// Prints the explicit skip note and returns true when the host is not cgroup v1.
pub(crate) fn skip_unless_v1(test: &str) -> bool {
    if host_is_v1() {
        return false;
    }
    eprintln!("{test}: skipped: not cgroup v1 (/sys/fs/cgroup has no v1 memory hierarchy)");
    true
}

/// The container's cgroupsPath for a test: top level, unique per test process.
pub(crate) fn cg_path(tag: &str) -> String {
    let p = format!("/berth-it-{tag}-{}", std::process::id());
    assert!(!p.contains("process_api"));
    p
}

/// Every cgroup hierarchy mount: /sys/fs/cgroup itself on v2, else its sub-directories that
/// are cgroup or cgroup2 mounts (symlinks such as cpu -> cpu,cpuacct are skipped).
pub(crate) fn hierarchy_roots() -> Vec<PathBuf> {
    if host_is_v2() {
        return vec![PathBuf::from(CG_ROOT)];
    }
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(CG_ROOT) {
        for e in rd.filter_map(|e| e.ok()) {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let ok = nix::sys::statfs::statfs(&e.path())
                .map(|s| {
                    let t = s.filesystem_type();
                    t == nix::sys::statfs::CGROUP_SUPER_MAGIC || t == nix::sys::statfs::CGROUP2_SUPER_MAGIC
                })
                .unwrap_or(false);
            if ok {
                v.push(e.path());
            }
        }
    }
    v.sort();
    v
}

/// The host directories of an absolute cgroups path in every hierarchy.
pub(crate) fn cg_dirs(cg: &str) -> Vec<PathBuf> {
    let rel = cg.trim_start_matches('/');
    assert!(!rel.is_empty() && !rel.contains(".."), "bad test cgroup path {cg}");
    hierarchy_roots().into_iter().map(|r| r.join(rel)).collect()
}

/// Host directory of `cg` in the v1 hierarchy `ctrl` ("memory") or, on v2, the only one.
pub(crate) fn cg_dir(ctrl: &str, cg: &str) -> PathBuf {
    let rel = cg.trim_start_matches('/');
    if host_is_v2() {
        Path::new(CG_ROOT).join(rel)
    } else {
        Path::new(CG_ROOT).join(ctrl).join(rel)
    }
}

/// A host cgroup file of the container, trimmed; panics with the path when unreadable.
#[track_caller]
pub(crate) fn cg_read(ctrl: &str, cg: &str, file: &str) -> String {
    let p = cg_dir(ctrl, cg).join(file);
    match fs::read_to_string(&p) {
        Ok(s) => s.trim().to_string(),
        Err(e) => panic!("read {}: {e}", p.display()),
    }
}

/// Asserts (waiting up to 3 s) that no hierarchy has a directory for `cg` any more.
#[track_caller]
pub(crate) fn assert_cg_gone(cg: &str) {
    let mut left = Vec::new();
    let gone = wait_until(Duration::from_secs(3), || {
        left = cg_dirs(cg).into_iter().filter(|d| d.exists()).collect();
        left.is_empty()
    });
    assert!(gone, "cgroup dirs left for {cg}: {left:?}");
}

/// A bundle whose cgroupsPath is `cg_path(tag)` and whose `linux.resources` gets every key of
/// `resources` (the default device rules stay unless `resources` has "devices").
pub(crate) fn cg_bundle(ctx: &Ctx, tag: &str, resources: Value) -> (Bundle, String) {
    let mut b = ctx.bundle();
    let cg = cg_path(tag);
    b.set("/linux/cgroupsPath", json!(cg));
    if let Value::Object(m) = resources {
        for (k, v) in m {
            b.set(&format!("/linux/resources/{k}"), v);
        }
    }
    (b, cg)
}

/// `exec ID sh -c script` (asserted to succeed) and its stdout.
#[track_caller]
pub(crate) fn exec_sh(ctx: &Ctx, id: &str, script: &str) -> String {
    let o = ctx.cmd(&["exec", id, "sh", "-c", script]);
    o.ok();
    o.stdout
}

/// Reads a cgroup file inside the container. `rel` is relative to the container's cgroup
/// mount: "memory/memory.limit_in_bytes" on v1, "memory.max" on v2.
#[track_caller]
pub(crate) fn inside(ctx: &Ctx, id: &str, rel: &str) -> String {
    exec_sh(ctx, id, &format!("cat /sys/fs/cgroup/{rel}")).trim().to_string()
}

/// `delete -f`, then the state and every cgroup dir must be gone.
#[track_caller]
pub(crate) fn delete_and_check(ctx: &Ctx, id: &str, cg: &str) {
    ctx.delete_force(id).ok();
    assert!(ctx.status(id).is_none(), "state of {id} still there after delete");
    assert!(!ctx.root.join(id).exists(), "state dir of {id} left");
    assert_cg_gone(cg);
}

/// Adds capabilities to every set of the process.
pub(crate) fn add_caps(b: &mut Bundle, caps: &[&str]) {
    for set in ["bounding", "effective", "permitted"] {
        let ptr = format!("/process/capabilities/{set}");
        let mut list: Vec<Value> = b.get(&ptr).and_then(|v| v.as_array().cloned()).unwrap_or_default();
        for c in caps {
            if !list.iter().any(|x| x == c) {
                list.push(json!(c));
            }
        }
        b.set(&ptr, Value::Array(list));
    }
}

/// The pids in the container's cgroup from `ps -f json`.
#[track_caller]
pub(crate) fn ps_pids(ctx: &Ctx, id: &str) -> Vec<i32> {
    let o = ctx.cmd(&["ps", "-f", "json", id]);
    o.ok();
    serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("ps -f json is not a pid list ({e}): {o}"))
}

/// A block device of the host as (major, minor, name): the first of /sys/block that is not a
/// loop, ram or zram device, else any.
pub(crate) fn block_device() -> Option<(u64, u64, String)> {
    let mut all = Vec::new();
    for e in fs::read_dir("/sys/block").ok()?.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let dev = read(e.path().join("dev"));
        let Some((ma, mi)) = dev.trim().split_once(':') else { continue };
        let (Ok(ma), Ok(mi)) = (ma.parse(), mi.parse()) else { continue };
        all.push((ma, mi, name));
    }
    all.sort_by_key(|(_, _, n)| (n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram"), n.clone()));
    all.into_iter().next()
}

/// Runs `c` with stdout piped and returns its first `n` lines with their arrival times
/// (fewer on timeout); the command is killed afterwards.
pub(crate) fn first_lines(mut c: Command, n: usize, timeout: Duration) -> Vec<(String, Instant)> {
    c.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send((l, Instant::now())).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(x) => got.push(x),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    got
}

/// A command whose stdout is read line by line as it comes; killed on drop.
pub(crate) struct LineReader {
    child: std::process::Child,
    rx: mpsc::Receiver<String>,
}

impl LineReader {
    pub(crate) fn spawn(mut c: Command) -> LineReader {
        c.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null());
        let mut child = c.spawn().expect("spawn");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        LineReader { child, rx }
    }

    /// The next line, None after `timeout` or at EOF.
    pub(crate) fn next(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Lines until one satisfies `f` (returned), None after `timeout`.
    pub(crate) fn until(&self, timeout: Duration, f: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.next(deadline.saturating_duration_since(Instant::now()))?;
            if f(&l) {
                return Some(l);
            }
        }
    }
}

impl Drop for LineReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `events` (stream) reports an OOM in the container as {"type":"oom","id":ID}, between its
/// stats lines. Shared with cgroups_v2.rs (`cgroupns`: give the container a cgroup namespace).
pub(crate) fn check_oom_event(ctx: &Ctx, tag: &str, cgroupns: bool) {
    let mut mem = json!({"limit": 33554432});
    if host_is_v2() || Path::new(CG_ROOT).join("memory/memory.memsw.limit_in_bytes").exists() {
        mem["swap"] = json!(33554432);
    }
    let (mut b, cg) = cg_bundle(ctx, tag, json!({ "memory": mem }));
    if cgroupns {
        b.ns_add("cgroup", None);
    }
    b.args(&["sleep", "1000"]);
    let id = ctx.id(tag);
    ctx.run_detached(&mut b, &id);
    let ev = LineReader::spawn(ctx.command(&["events", "--interval", "30s", &id]));
    // The first stats line comes at once; the OOM watch is set up before it.
    let first = ev.next(Duration::from_secs(30)).expect("no first stats line from events");
    check_stats_shape(&first, &id);
    let o = ctx.cmd(&["exec", &id, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    assert_eq!(o.code, 137, "dd over the limit must be OOM-killed: {o}");
    let line = ev.until(Duration::from_secs(20), |l| l.contains("\"oom\""));
    let line = line.unwrap_or_else(|| panic!("no oom event from `events` after an OOM kill in {id}"));
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v, json!({"type": "oom", "id": id}), "{line}");
    // The container itself survives (only dd was killed) and the stream goes on.
    assert_eq!(ctx.state(&id)["status"], "running");
    drop(ev);
    delete_and_check(ctx, &id, &cg);
}

/// Parses a `stats` event and checks the fields every runc consumer reads.
#[track_caller]
pub(crate) fn check_stats_shape(line: &str, id: &str) -> Value {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("stats line is not JSON ({e}): {line}"));
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], id, "{v}");
    let d = &v["data"];
    assert!(d["cpu"]["usage"].is_object(), "data.cpu.usage missing: {v}");
    assert!(d["cpu"]["usage"]["total"].is_u64(), "data.cpu.usage.total missing: {v}");
    assert!(d["memory"]["usage"].is_object(), "data.memory.usage missing: {v}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0, "data.memory.usage.usage is 0: {v}");
    assert!(d["memory"]["usage"]["limit"].is_u64(), "data.memory.usage.limit missing: {v}");
    assert!(d["pids"]["current"].as_u64().unwrap_or(0) >= 1, "data.pids.current < 1: {v}");
    v
}

/// The counter a `counter_script` container writes, read from the host through /proc.
pub(crate) fn read_counter(pid: i32) -> Option<u64> {
    read(format!("/proc/{pid}/root/dev/shm/n")).trim().parse().ok()
}

/// An init that bumps /dev/shm/n every 20 ms.
pub(crate) const COUNTER_SCRIPT: &str = "i=0; while :; do i=$((i+1)); echo $i > /dev/shm/n; usleep 20000; done";

/// Waits for a counter that moves.
#[track_caller]
pub(crate) fn wait_counter_moving(pid: i32) -> u64 {
    let mut first = None;
    let ok = wait_until(Duration::from_secs(10), || {
        let c = read_counter(pid);
        match (first, c) {
            (None, Some(c)) => {
                first = Some(c);
                false
            }
            (Some(f), Some(c)) => c > f,
            _ => false,
        }
    });
    assert!(ok, "the counter in /proc/{pid}/root/dev/shm/n does not move");
    read_counter(pid).unwrap_or(0)
}

fn v1_has(ctrl: &str) -> bool {
    Path::new(CG_ROOT).join(ctrl).join("cgroup.procs").exists()
}

// ---------------------------------------------------------------------------------------------
// Resources at create, one test per resource

#[test]
fn memory_limits() {
    if skip_unless_v1("memory_limits") {
        return;
    }
    let ctx = Ctx::new("cg-mem");
    let (mut b, cg) = cg_bundle(
        &ctx,
        "mem",
        json!({"memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                          "swappiness": 10, "disableOOMKiller": true}}),
    );
    b.args(&["sleep", "1000"]);
    let id = ctx.id("mem");
    ctx.run_detached(&mut b, &id);
    assert_eq!(cg_read("memory", &cg, "memory.limit_in_bytes"), "67108864");
    assert_eq!(cg_read("memory", &cg, "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(cg_read("memory", &cg, "memory.swappiness"), "10");
    assert!(cg_read("memory", &cg, "memory.oom_control").contains("oom_kill_disable 1"));
    let memsw = cg_dir("memory", &cg).join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        assert_eq!(read(&memsw).trim(), "134217728");
        assert_eq!(inside(&ctx, &id, "memory/memory.memsw.limit_in_bytes"), "134217728");
    } else {
        eprintln!("memory_limits: no swap accounting on this kernel, swap not checked");
    }
    // The container's own cgroup mount shows the same values.
    assert_eq!(inside(&ctx, &id, "memory/memory.limit_in_bytes"), "67108864");
    assert_eq!(inside(&ctx, &id, "memory/memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(inside(&ctx, &id, "memory/memory.swappiness"), "10");
    assert!(inside(&ctx, &id, "memory/memory.oom_control").contains("oom_kill_disable 1"));
    // Read-only: the container cannot lift its own limit.
    let o = ctx.cmd(&["exec", &id, "sh", "-c", "echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    assert!(o.code != 0 && o.stderr.contains("Read-only file system"), "cgroup mount must be read-only: {o}");
    assert_eq!(cg_read("memory", &cg, "memory.limit_in_bytes"), "67108864");
    // ... and the init is in it.
    let pid = ctx.pid(&id);
    assert!(cg_read("memory", &cg, "cgroup.procs").lines().any(|l| l == pid.to_string()));
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn cpu_shares_quota_period() {
    if skip_unless_v1("cpu_shares_quota_period") {
        return;
    }
    let ctx = Ctx::new("cg-cpu");
    let (mut b, cg) = cg_bundle(&ctx, "cpu", json!({"cpu": {"shares": 512, "quota": 25000, "period": 50000}}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("cpu");
    ctx.run_detached(&mut b, &id);
    assert_eq!(cg_read("cpu", &cg, "cpu.shares"), "512");
    assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us"), "25000");
    assert_eq!(cg_read("cpu", &cg, "cpu.cfs_period_us"), "50000");
    assert_eq!(inside(&ctx, &id, "cpu/cpu.shares"), "512");
    assert_eq!(inside(&ctx, &id, "cpu/cpu.cfs_quota_us"), "25000");
    assert_eq!(inside(&ctx, &id, "cpu/cpu.cfs_period_us"), "50000");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn cpuset_cpus_mems() {
    if skip_unless_v1("cpuset_cpus_mems") {
        return;
    }
    let ctx = Ctx::new("cg-cpuset");
    // The last online cpu: on a 1-cpu machine that is cpu 0, still a valid check.
    let online = read("/sys/devices/system/cpu/online");
    let last = online.trim().rsplit([',', '-']).next().unwrap_or("0").to_string();
    let (mut b, cg) = cg_bundle(&ctx, "cpuset", json!({"cpu": {"cpus": last, "mems": "0"}}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("cpuset");
    ctx.run_detached(&mut b, &id);
    assert_eq!(cg_read("cpuset", &cg, "cpuset.cpus"), last);
    assert_eq!(cg_read("cpuset", &cg, "cpuset.mems"), "0");
    assert_eq!(inside(&ctx, &id, "cpuset/cpuset.cpus"), last);
    // The kernel enforces it on the processes.
    let st = exec_sh(&ctx, &id, "cat /proc/self/status");
    assert_eq!(status_field(&st, "Cpus_allowed_list").as_deref(), Some(last.as_str()), "{st}");
    let init = read(format!("/proc/{}/status", ctx.pid(&id)));
    assert_eq!(status_field(&init, "Cpus_allowed_list").as_deref(), Some(last.as_str()));
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn cpu_realtime() {
    if skip_unless_v1("cpu_realtime") {
        return;
    }
    // RT group scheduling: the root must have runtime to give (cgroupsPath is at the top).
    let root_rt = read(Path::new(CG_ROOT).join("cpu/cpu.rt_runtime_us"));
    if root_rt.trim().is_empty() || root_rt.trim() == "0" {
        eprintln!("cpu_realtime: skipped: no CONFIG_RT_GROUP_SCHED or no rt runtime at the root");
        return;
    }
    let ctx = Ctx::new("cg-rt");
    let (mut b, cg) = cg_bundle(&ctx, "rt", json!({"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 500000}}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("rt");
    ctx.run_detached(&mut b, &id);
    assert_eq!(cg_read("cpu", &cg, "cpu.rt_period_us"), "500000");
    assert_eq!(cg_read("cpu", &cg, "cpu.rt_runtime_us"), "10000");
    assert_eq!(inside(&ctx, &id, "cpu/cpu.rt_runtime_us"), "10000");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn pids_limit() {
    if skip_unless_v1("pids_limit") || !v1_has("pids") {
        return;
    }
    let ctx = Ctx::new("cg-pids");
    let (mut b, cg) = cg_bundle(&ctx, "pids", json!({"pids": {"limit": 8}}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("pids");
    ctx.run_detached(&mut b, &id);
    assert_eq!(cg_read("pids", &cg, "pids.max"), "8");
    assert_eq!(inside(&ctx, &id, "pids/pids.max"), "8");
    // 12 background sleeps from a shell in the container: the limit stops some of them.
    let o = ctx.cmd(&["exec", &id, "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & done; echo done"]);
    let cur: u64 = cg_read("pids", &cg, "pids.current").parse().unwrap();
    assert!(cur <= 8, "pids.current {cur} above the limit");
    assert!(
        o.stderr.contains("fork") || o.stderr.contains("Resource temporarily unavailable"),
        "no fork failure under pids.max 8: {o}"
    );
    let events = read(cg_dir("pids", &cg).join("pids.events"));
    assert!(!events.contains("max 0"), "pids.events: {events}");
    delete_and_check(&ctx, &id, &cg);
}

/// blkio.weight support of this host: probed in a cgroup of our own (the root has no weight
/// files). "blkio.weight" (CFQ), "blkio.bfq.weight" (BFQ) or None.
pub(crate) fn v1_blkio_weight_file() -> Option<&'static str> {
    let probe = Path::new(CG_ROOT).join(format!("blkio/berth-it-probe-{}", std::process::id()));
    if fs::create_dir(&probe).is_err() {
        return None;
    }
    let f = ["blkio.weight", "blkio.bfq.weight"].into_iter().find(|f| probe.join(f).exists());
    let _ = fs::remove_dir(&probe);
    f
}

#[test]
fn blkio_throttle_and_weight() {
    if skip_unless_v1("blkio_throttle_and_weight") || !v1_has("blkio") {
        return;
    }
    let Some((ma, mi, name)) = block_device() else {
        eprintln!("blkio_throttle_and_weight: skipped: no block device in /sys/block");
        return;
    };
    let ctx = Ctx::new("cg-blkio");
    let dev = |rate: u64| json!([{"major": ma, "minor": mi, "rate": rate}]);
    let mut res = json!({"blockIO": {
        "throttleReadBpsDevice": dev(1048576), "throttleWriteBpsDevice": dev(2097152),
        "throttleReadIOPSDevice": dev(100), "throttleWriteIOPSDevice": dev(200)}});
    let weight = v1_blkio_weight_file();
    if weight.is_some() {
        res["blockIO"]["weight"] = json!(300);
    } else {
        eprintln!("blkio_throttle_and_weight: no blkio weight file on this kernel, weight not checked");
    }
    let (mut b, cg) = cg_bundle(&ctx, "blkio", res);
    b.args(&["sleep", "1000"]);
    let id = ctx.id("blkio");
    ctx.run_detached(&mut b, &id);
    let line = |rate: u64| format!("{ma}:{mi} {rate}");
    for (f, rate) in [
        ("blkio.throttle.read_bps_device", 1048576),
        ("blkio.throttle.write_bps_device", 2097152),
        ("blkio.throttle.read_iops_device", 100),
        ("blkio.throttle.write_iops_device", 200),
    ] {
        assert!(
            cg_read("blkio", &cg, f).lines().any(|l| l == line(rate)),
            "{f} of {name}: {}",
            cg_read("blkio", &cg, f)
        );
    }
    assert!(inside(&ctx, &id, "blkio/blkio.throttle.read_bps_device").contains(&line(1048576)));
    if let Some(wf) = weight {
        // CFQ prints "300", BFQ "default 300".
        let w = cg_read("blkio", &cg, wf);
        assert!(w == "300" || w.lines().any(|l| l == "default 300"), "{wf}: {w}");
    }
    delete_and_check(&ctx, &id, &cg);
}

/// A device the rules deny cannot be opened (EPERM) even with CAP_MKNOD; an allowed one can.
/// c 1:2 has no driver (/dev/kmem is gone), so when the cgroup lets the open through the
/// kernel says ENXIO instead: that tells the cgroup's EPERM from any other.
#[test]
fn devices_denied_eperm() {
    if skip_unless_v1("devices_denied_eperm") {
        return;
    }
    devices_eperm(&Ctx::new("cg-dev"), cg_bundle);
}

/// A device the rules deny gives EPERM, an allowed one works, and an access type the rules
/// leave out is refused (the body of the v1 and v2 tests; `make` builds the bundle).
pub(crate) fn devices_eperm(ctx: &Ctx, make: fn(&Ctx, &str, Value) -> (Bundle, String)) {
    let (mut b, cg) = make(ctx, "dev", json!({}));
    add_caps(&mut b, &["CAP_MKNOD"]);
    b.sh("mknod /dev/k12 c 1 2 || exit 10; mknod /dev/null2 c 1 3 || exit 11; \
         head -c1 /dev/k12 2>&1; echo; echo x > /dev/null2 && echo null-ok");
    let id = ctx.id("dev");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert!(o.stdout.contains("Operation not permitted"), "denied device must give EPERM: {o}");
    assert!(o.stdout.contains("null-ok"), "allowed device must work: {o}");
    assert_cg_gone(&cg);

    // Allowing c 1:2 for reading: the open reaches the (missing) driver.
    let (mut b, cg) = make(
        ctx,
        "dev2",
        json!({"devices": [{"allow": false, "access": "rwm"},
                           {"allow": true, "type": "c", "major": 1, "minor": 2, "access": "r"}]}),
    );
    add_caps(&mut b, &["CAP_MKNOD"]);
    b.sh("mknod /dev/k12 c 1 2 || exit 10; head -c1 /dev/k12 2>&1; echo; (echo x > /dev/k12) 2>&1");
    let id = ctx.id("dev2");
    let o = ctx.run(&mut b, &id);
    assert!(o.stdout.contains("No such device or address"), "an allowed read must reach the driver: {o}");
    assert!(o.stdout.contains("Operation not permitted"), "write is not allowed: {o}");
    assert_cg_gone(&cg);
}

#[test]
fn devices_list_on_host() {
    if skip_unless_v1("devices_list_on_host") || !v1_has("devices") {
        return;
    }
    let ctx = Ctx::new("cg-devlist");
    let (mut b, cg) = cg_bundle(
        &ctx,
        "devlist",
        json!({"devices": [{"allow": false, "access": "rwm"},
                           {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "r"}]}),
    );
    b.args(&["sleep", "1000"]);
    let id = ctx.id("devlist");
    ctx.run_detached(&mut b, &id);
    let list = cg_read("devices", &cg, "devices.list");
    for want in ["b 7:0 r", "c 1:3 rwm", "c *:* m"] {
        assert!(list.lines().any(|l| l == want), "devices.list lacks {want:?}: {list}");
    }
    assert!(!list.lines().any(|l| l == "a *:* rwm"), "devices.list allows everything: {list}");
    delete_and_check(&ctx, &id, &cg);
}

/// Changing the device rules of a running container between two lists that both allow
/// /dev/null goes from one to the other without a moment of deny-all: opens of /dev/null in a
/// tight loop never fail while the rules change back and forth.
#[test]
fn update_devices_without_window() {
    if skip_unless_v1("update_devices_without_window")
        || !v1_has("devices")
        || skip_on_runc("runc 1.1's update leaves the device rules as they are")
    {
        return;
    }
    let ctx = Ctx::new("cg-devupd");
    let rules = |minor: u32| {
        json!({"devices": [{"allow": false, "access": "rwm"},
                           {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                           {"allow": true, "type": "c", "major": 7, "minor": minor, "access": "r"}]})
    };
    let (mut b, cg) = cg_bundle(&ctx, "devupd", rules(0));
    // Two loops (more chances to hit a window), each counting failed opens and rounds.
    b.sh("loop() { f=0; n=0; while [ ! -e /dev/shm/stop ]; do \
            head -c1 /dev/null >/dev/null 2>&1 || f=$((f+1)); n=$((n+1)); echo \"$f $n\" > /dev/shm/count$1; \
          done; echo done > /dev/shm/done$1; }; loop 1 & loop 2 & exec sleep 1000");
    let id = ctx.id("devupd");
    ctx.run_detached(&mut b, &id);
    let f = ctx.dir.join("devices.json");
    for i in 0..200 {
        let minor = if i % 2 == 0 { 1 } else { 0 };
        fs::write(&f, json!({"devices": rules(minor)["devices"]}).to_string()).unwrap();
        ctx.cmd(&["update", "-r", f.to_str().unwrap(), &id]).ok();
        let list = cg_read("devices", &cg, "devices.list");
        assert!(list.lines().any(|l| l == format!("c 7:{minor} r")), "rules not applied: {list}");
        assert!(!list.lines().any(|l| l == format!("c 7:{} r", 1 - minor)), "old rule kept: {list}");
    }
    let out = exec_sh(
        &ctx,
        &id,
        "touch /dev/shm/stop; while [ ! -e /dev/shm/done1 ] || [ ! -e /dev/shm/done2 ]; do sleep 0.1; done; \
         cat /dev/shm/count1 /dev/shm/count2",
    );
    let counts: Vec<(u64, u64)> = out
        .lines()
        .map(|l| {
            let (f, n) = l.split_once(' ').unwrap_or_else(|| panic!("bad count line {l:?}: {out}"));
            (f.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(counts.len(), 2, "{out}");
    for (failed, rounds) in counts {
        assert!(rounds > 0, "the loop never ran: {out}");
        assert_eq!(failed, 0, "opens of /dev/null failed while the rules changed ({rounds} rounds): {out}");
    }
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn unified_rejected_on_v1() {
    if skip_unless_v1("unified_rejected_on_v1") {
        return;
    }
    let ctx = Ctx::new("cg-unified");
    let (mut b, cg) = cg_bundle(&ctx, "unified", json!({"unified": {"memory.high": "50000000"}}));
    b.args(&["true"]);
    let id = ctx.id("unified");
    let snap = ctx.snapshot(&b);
    let o = ctx.create(&mut b, &id);
    o.one_line_error(&["unified"]);
    ctx.assert_nothing_left(&snap, &b, &id);
    assert_cg_gone(&cg);
}

// ---------------------------------------------------------------------------------------------
// update

#[test]
fn update_every_flag() {
    if skip_unless_v1("update_every_flag") {
        return;
    }
    let ctx = Ctx::new("cg-update");
    let (mut b, cg) = cg_bundle(
        &ctx,
        "update",
        json!({"memory": {"limit": 67108864}, "cpu": {"shares": 1024}, "pids": {"limit": 100}}),
    );
    b.args(&["sleep", "1000"]);
    let id = ctx.id("update");
    ctx.run_detached(&mut b, &id);
    let memsw = cg_dir("memory", &cg).join("memory.memsw.limit_in_bytes").exists();
    let rt = read(Path::new(CG_ROOT).join("cpu/cpu.rt_runtime_us")).trim().parse::<i64>().unwrap_or(0) > 0;
    let weight = v1_blkio_weight_file();
    let online = read("/sys/devices/system/cpu/online");
    let last = online.trim().rsplit([',', '-']).next().unwrap_or("0").to_string();
    let mut args: Vec<String> =
        ["update", "--memory", "100m", "--memory-reservation", "50m"].iter().map(|s| s.to_string()).collect();
    if memsw {
        args.extend(["--memory-swap".into(), "200m".into()]);
    }
    args.extend(
        [
            "--cpu-shares",
            "512",
            "--cpu-quota",
            "20000",
            "--cpu-period",
            "50000",
            "--cpuset-cpus",
            &last,
            "--cpuset-mems",
            "0",
            "--pids-limit",
            "50",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    if weight.is_some() {
        args.extend(["--blkio-weight".into(), "300".into()]);
    }
    if rt {
        args.extend(["--cpu-rt-period".into(), "900000".into(), "--cpu-rt-runtime".into(), "10000".into()]);
    }
    args.push(id.clone());
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ctx.cmd(&a).ok();
    assert_eq!(cg_read("memory", &cg, "memory.limit_in_bytes"), (100u64 << 20).to_string());
    assert_eq!(cg_read("memory", &cg, "memory.soft_limit_in_bytes"), (50u64 << 20).to_string());
    if memsw {
        assert_eq!(cg_read("memory", &cg, "memory.memsw.limit_in_bytes"), (200u64 << 20).to_string());
    }
    assert_eq!(cg_read("cpu", &cg, "cpu.shares"), "512");
    assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us"), "20000");
    assert_eq!(cg_read("cpu", &cg, "cpu.cfs_period_us"), "50000");
    assert_eq!(cg_read("cpuset", &cg, "cpuset.cpus"), last);
    assert_eq!(cg_read("cpuset", &cg, "cpuset.mems"), "0");
    assert_eq!(cg_read("pids", &cg, "pids.max"), "50");
    if let Some(wf) = weight {
        let w = cg_read("blkio", &cg, wf);
        assert!(w == "300" || w.lines().any(|l| l == "default 300"), "{wf}: {w}");
    }
    if rt {
        assert_eq!(cg_read("cpu", &cg, "cpu.rt_period_us"), "900000");
        assert_eq!(cg_read("cpu", &cg, "cpu.rt_runtime_us"), "10000");
    }
    // Seen from inside too.
    assert_eq!(inside(&ctx, &id, "memory/memory.limit_in_bytes"), (100u64 << 20).to_string());
    assert_eq!(inside(&ctx, &id, "pids/pids.max"), "50");
    let st = exec_sh(&ctx, &id, "cat /proc/self/status");
    assert_eq!(status_field(&st, "Cpus_allowed_list").as_deref(), Some(last.as_str()));

    // Lowering the memory limit below the memsw limit and back up, in one call each: the
    // order of the two writes must follow the kernel's memsw >= memory rule.
    if memsw {
        ctx.cmd(&["update", "--memory", "300m", "--memory-swap", "400m", &id]).ok();
        assert_eq!(cg_read("memory", &cg, "memory.limit_in_bytes"), (300u64 << 20).to_string());
        assert_eq!(cg_read("memory", &cg, "memory.memsw.limit_in_bytes"), (400u64 << 20).to_string());
        ctx.cmd(&["update", "--memory", "32m", "--memory-swap", "64m", &id]).ok();
        assert_eq!(cg_read("memory", &cg, "memory.limit_in_bytes"), (32u64 << 20).to_string());
        assert_eq!(cg_read("memory", &cg, "memory.memsw.limit_in_bytes"), (64u64 << 20).to_string());
        // -1 (given as --memory=-1; the separate-word form is checked below): unlimited both.
        ctx.cmd(&["update", "--memory=-1", &id]).ok();
        let unl: u64 = cg_read("memory", &cg, "memory.limit_in_bytes").parse().unwrap();
        assert!(unl > 1 << 60, "memory -1 gives {unl}");
        let unl: u64 = cg_read("memory", &cg, "memory.memsw.limit_in_bytes").parse().unwrap();
        assert!(unl > 1 << 60, "memory -1 leaves memsw at {unl}");
    }
    delete_and_check(&ctx, &id, &cg);
}

/// `update --memory -1 --cpu-quota -1 ...`: runc (Go flag parsing) takes "-1" as the value
/// of the flag before it; containerd and docker pass it that way to lift a limit.
#[test]
fn update_minus_one_lifts_limits() {
    if skip_unless_v1("update_minus_one_lifts_limits") {
        return;
    }
    let ctx = Ctx::new("cg-updm1");
    let memsw = Path::new(CG_ROOT).join("memory/memory.memsw.limit_in_bytes").exists();
    let mut mem = json!({"limit": 67108864});
    if memsw {
        mem["swap"] = json!(134217728);
    }
    let (mut b, cg) = cg_bundle(
        &ctx,
        "updm1",
        json!({"memory": mem, "cpu": {"quota": 20000, "period": 100000}, "pids": {"limit": 50}}),
    );
    b.args(&["sleep", "1000"]);
    let id = ctx.id("updm1");
    ctx.run_detached(&mut b, &id);
    let mut args = vec!["update", "--memory", "-1", "--cpu-quota", "-1", "--pids-limit", "-1"];
    if memsw {
        args.extend(["--memory-swap", "-1"]);
    }
    args.push(&id);
    ctx.cmd(&args).ok();
    let unl: u64 = cg_read("memory", &cg, "memory.limit_in_bytes").parse().unwrap();
    assert!(unl > 1 << 60, "memory -1 gives {unl}");
    if memsw {
        let unl: u64 = cg_read("memory", &cg, "memory.memsw.limit_in_bytes").parse().unwrap();
        assert!(unl > 1 << 60, "memory-swap -1 gives {unl}");
    }
    assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us"), "-1");
    assert_eq!(cg_read("pids", &cg, "pids.max"), "max");
    delete_and_check(&ctx, &id, &cg);
}

/// runc's spelling of the shares flag is `--cpu-share` (berth also takes docker's `--cpu-shares`).
#[test]
fn update_cpu_share_flag_as_runc() {
    if skip_unless_v1("update_cpu_share_flag_as_runc") {
        return;
    }
    let ctx = Ctx::new("cg-updshare");
    let (mut b, cg) = cg_bundle(&ctx, "updshare", json!({"cpu": {"shares": 1024}}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("updshare");
    ctx.run_detached(&mut b, &id);
    ctx.cmd(&["update", "--cpu-share", "700", &id]).ok();
    assert_eq!(cg_read("cpu", &cg, "cpu.shares"), "700");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn update_resources_from_stdin() {
    if skip_unless_v1("update_resources_from_stdin") {
        return;
    }
    let ctx = Ctx::new("cg-updstdin");
    let (mut b, cg) = cg_bundle(&ctx, "updstdin", json!({"pids": {"limit": 100}}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("updstdin");
    ctx.run_detached(&mut b, &id);
    let r = json!({"memory": {"limit": 41943040, "reservation": 20971520},
                   "cpu": {"shares": 256, "quota": 30000, "period": 60000},
                   "pids": {"limit": 42}});
    let f = ctx.dir.join("resources.json");
    fs::write(&f, r.to_string()).unwrap();
    let mut c = ctx.command(&["update", "-r", "-", &id]);
    c.stdin(fs::File::open(&f).unwrap());
    ctx.exec_cmd(c, TIMEOUT).ok();
    assert_eq!(cg_read("memory", &cg, "memory.limit_in_bytes"), "41943040");
    assert_eq!(cg_read("memory", &cg, "memory.soft_limit_in_bytes"), "20971520");
    assert_eq!(cg_read("cpu", &cg, "cpu.shares"), "256");
    assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us"), "30000");
    assert_eq!(cg_read("cpu", &cg, "cpu.cfs_period_us"), "60000");
    assert_eq!(cg_read("pids", &cg, "pids.max"), "42");
    // A file works as well, and flags override the file.
    fs::write(&f, json!({"pids": {"limit": 7}}).to_string()).unwrap();
    ctx.cmd(&["update", "-r", f.to_str().unwrap(), "--cpu-shares", "300", &id]).ok();
    assert_eq!(cg_read("pids", &cg, "pids.max"), "7");
    assert_eq!(cg_read("cpu", &cg, "cpu.shares"), "300");
    // Garbage on stdin: one line, nothing changed.
    fs::write(&f, "{not json").unwrap();
    let mut c = ctx.command(&["update", "-r", "-", &id]);
    c.stdin(fs::File::open(&f).unwrap());
    ctx.exec_cmd(c, TIMEOUT).one_line_error(&["json", "parse", "resources"]);
    assert_eq!(cg_read("pids", &cg, "pids.max"), "7");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn update_rejected_by_kernel_keeps_old_value() {
    if skip_unless_v1("update_rejected_by_kernel_keeps_old_value") {
        return;
    }
    let ctx = Ctx::new("cg-updbad");
    let (mut b, cg) = cg_bundle(&ctx, "updbad", json!({"cpu": {"cpus": "0"}}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("updbad");
    ctx.run_detached(&mut b, &id);
    ctx.cmd(&["update", "--cpuset-cpus", "999", &id]).one_line_error(&["cpuset.cpus", "999"]);
    assert_eq!(cg_read("cpuset", &cg, "cpuset.cpus"), "0");
    ctx.cmd(&["update", "--cpu-shares", "1", &id]).one_line_error(&["cpu-shares", "cpu shares", "shares"]);
    assert_eq!(ctx.state(&id)["status"], "running");
    delete_and_check(&ctx, &id, &cg);
}

// ---------------------------------------------------------------------------------------------
// events

#[test]
fn events_stats_shape() {
    if skip_unless_v1("events_stats_shape") {
        return;
    }
    let ctx = Ctx::new("cg-stats");
    let (id, cg, v) = events_stats_of_sleepers(&ctx, cg_bundle);
    let ncpu = read("/sys/devices/system/cpu/present");
    assert!(!v["data"]["cpu"]["usage"]["percpu"].as_array().is_none_or(|a| a.is_empty()), "percpu: {v} ({ncpu})");
    delete_and_check(&ctx, &id, &cg);
    // On a deleted container: one line.
    ctx.cmd(&["events", "--stats", &id]).one_line_error(&["not exist", "does not exist", "not found", "no such"]);
}

/// `events --stats` (one line) of a running container with two processes, a memory and a pids
/// limit, checked against them: (id, cgroup, the stats). The body of the v1 and v2 tests.
pub(crate) fn events_stats_of_sleepers(
    ctx: &Ctx,
    make: fn(&Ctx, &str, Value) -> (Bundle, String),
) -> (String, String, Value) {
    let (mut b, cg) = make(ctx, "stats", json!({"memory": {"limit": 67108864}, "pids": {"limit": 64}}));
    b.sh("sleep 1000 & exec sleep 1000");
    let id = ctx.id("stats");
    ctx.run_detached(&mut b, &id);
    wait_until(Duration::from_secs(10), || ps_pids(ctx, &id).len() >= 2);
    let o = ctx.cmd(&["events", "--stats", &id]);
    o.ok();
    assert_eq!(o.stdout.trim().lines().count(), 1, "--stats prints one line: {o}");
    let v = check_stats_shape(o.stdout.trim(), &id);
    let d = &v["data"];
    assert!(d["pids"]["current"].as_u64().unwrap_or(0) >= 2, "{v}");
    assert_eq!(d["pids"]["limit"], 64, "{v}");
    assert_eq!(d["memory"]["usage"]["limit"], 67108864, "{v}");
    assert!(d["memory"]["raw"].is_object(), "{v}");
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{v}");
    (id, cg, v)
}

#[test]
fn events_stream_interval() {
    if skip_unless_v1("events_stream_interval") {
        return;
    }
    let ctx = Ctx::new("cg-evstream");
    let (mut b, cg) = cg_bundle(&ctx, "evstream", json!({}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("evstream");
    ctx.run_detached(&mut b, &id);
    let lines = first_lines(ctx.command(&["events", "--interval", "1s", &id]), 2, Duration::from_secs(10));
    assert_eq!(lines.len(), 2, "events --interval 1s gave {lines:?}");
    for (l, _) in &lines {
        check_stats_shape(l, &id);
    }
    let gap = lines[1].1.duration_since(lines[0].1);
    assert!(gap >= Duration::from_millis(700) && gap < Duration::from_secs(5), "interval between lines: {gap:?}");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn events_stream_reports_oom() {
    if skip_unless_v1("events_stream_reports_oom") {
        return;
    }
    let ctx = Ctx::new("cg-evoom");
    check_oom_event(&ctx, "evoom", false);
}

// ---------------------------------------------------------------------------------------------
// pause / resume / exec while paused

#[test]
fn pause_freezes_resume_thaws() {
    if skip_unless_v1("pause_freezes_resume_thaws") || !v1_has("freezer") {
        return;
    }
    let ctx = Ctx::new("cg-pause");
    let (mut b, cg) = cg_bundle(&ctx, "pause", json!({}));
    b.sh(COUNTER_SCRIPT);
    let id = ctx.id("pause");
    ctx.run_detached(&mut b, &id);
    let pid = ctx.pid(&id);
    wait_counter_moving(pid);
    ctx.cmd(&["pause", &id]).ok();
    assert_eq!(ctx.state(&id)["status"], "paused");
    assert_eq!(cg_read("freezer", &cg, "freezer.state"), "FROZEN");
    for p in ps_pids(&ctx, &id) {
        // A frozen v1 task sleeps uninterruptibly in the freezer.
        assert_eq!(proc_state(p), Some('D'), "pid {p} not frozen");
    }
    let c1 = read_counter(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_counter(pid), c1, "counter moved while paused");
    // Pausing twice fails, resume of a running one fails: both one line.
    ctx.cmd(&["pause", &id]).one_line_error(&["container not running"]);
    ctx.cmd(&["resume", &id]).ok();
    assert_eq!(ctx.state(&id)["status"], "running");
    assert_eq!(cg_read("freezer", &cg, "freezer.state"), "THAWED");
    wait_counter_moving(pid);
    ctx.cmd(&["resume", &id]).one_line_error(&["not paused", "running"]);
    // delete -f of a paused container works.
    ctx.cmd(&["pause", &id]).ok();
    delete_and_check(&ctx, &id, &cg);
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "init {pid} survived delete -f of a paused container"
    );
}

#[test]
fn exec_into_paused() {
    if skip_unless_v1("exec_into_paused") || !v1_has("freezer") {
        return;
    }
    let ctx = Ctx::new("cg-execpaused");
    let (mut b, cg) = cg_bundle(&ctx, "execpaused", json!({}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("execpaused");
    ctx.run_detached(&mut b, &id);
    ctx.cmd(&["pause", &id]).ok();
    ctx.cmd(&["exec", &id, "echo", "hi"]).one_line_error(&["paused"]);
    // With --ignore-paused the exec is accepted; its process joins the frozen cgroup and
    // runs once the container is resumed (runc behaves the same).
    let bg = ctx.spawn(&["exec", "--ignore-paused", &id, "echo", "after-resume"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ctx.state(&id)["status"], "paused");
    ctx.cmd(&["resume", &id]).ok();
    let o = bg.wait(Duration::from_secs(20));
    o.ok();
    assert_eq!(o.stdout.trim(), "after-resume", "{o}");
    delete_and_check(&ctx, &id, &cg);
}

// ---------------------------------------------------------------------------------------------
// ps

#[test]
fn ps_json_and_table() {
    if skip_unless_v1("ps_json_and_table") {
        return;
    }
    let ctx = Ctx::new("cg-ps");
    let (mut b, cg) = cg_bundle(&ctx, "ps", json!({}));
    b.sh("sleep 1001 & exec sleep 1000");
    let id = ctx.id("ps");
    ctx.run_detached(&mut b, &id);
    let init = ctx.pid(&id);
    assert!(wait_until(Duration::from_secs(5), || ps_pids(&ctx, &id).len() == 2));
    let pids = ps_pids(&ctx, &id);
    assert!(pids.contains(&init), "ps -f json {pids:?} lacks the init's host pid {init}");
    let child = *pids.iter().find(|p| **p != init).unwrap();

    // Default table: ps -ef rows of our pids only.
    let o = ctx.cmd(&["ps", &id]);
    o.ok();
    let rows = norm(&o.stdout);
    assert!(rows[0].starts_with("UID PID PPID"), "{o}");
    assert_eq!(rows.len(), 3, "header + 2 processes: {o}");
    assert!(rows.iter().any(|r| r.split(' ').nth(1) == Some(&init.to_string())), "{o}");

    // Options after the id go to ps(1), as with runc: `ps ID -o pid,comm`, `ps -- ID -o ...`.
    for args in [vec!["ps", &id, "-o", "pid,comm"], vec!["ps", "--", &id, "-o", "pid,comm"]] {
        let o = ctx.cmd(&args);
        o.ok();
        let rows = norm(&o.stdout);
        assert_eq!(rows[0], "PID COMMAND", "{o}");
        assert!(rows.contains(&format!("{init} sleep")), "{o}");
        assert!(rows.contains(&format!("{child} sleep")), "{o}");
        assert_eq!(rows.len(), 3, "{o}");
    }
    // -f json ignores ps options.
    let o = ctx.cmd(&["ps", "-f", "json", &id, "-o", "pid"]);
    o.ok();
    let v: Vec<i32> = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(v.len(), 2);
    // No PID column: one line, non-zero (runc: "couldn't find PID field in ps output").
    ctx.cmd(&["ps", &id, "-o", "comm"]).one_line_error(&["pid"]);
    // A ps option ps(1) refuses: non-zero with ps's complaint.
    ctx.cmd(&["ps", &id, "--no-such-ps-option"]).fails();
    delete_and_check(&ctx, &id, &cg);
    ctx.cmd(&["ps", &id]).fails();
}

// ---------------------------------------------------------------------------------------------
// kill --all and delete -f reach every process

/// A container without a pid namespace: its init's children outlive the init unless the
/// runtime kills the whole cgroup.
fn spawn_family(ctx: &Ctx, tag: &str, script: &str) -> (Bundle, String, String, Vec<i32>) {
    let (mut b, cg) = cg_bundle(ctx, tag, json!({}));
    b.ns_remove("pid");
    b.sh(script);
    let id = ctx.id(tag);
    ctx.run_detached(&mut b, &id);
    let mut pids = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            pids = cg_procs(&cg);
            family_children(&pids).len() == 2
        }),
        "the init did not start its children: {pids:?}"
    );
    (b, cg, id, pids)
}

/// The pids in the container's cgroup, read on the host (works for a stopped container too).
pub(crate) fn cg_procs(cg: &str) -> Vec<i32> {
    read(cg_dir("memory", cg).join("cgroup.procs")).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Of `pids`, the `sleep 1001` and `sleep 1002` children a family script starts.
pub(crate) fn family_children(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|p| {
            let cmd = read(format!("/proc/{p}/cmdline"));
            cmd == "sleep\x001001\x00" || cmd == "sleep\x001002\x00"
        })
        .collect()
}

#[test]
fn kill_all_reaches_children() {
    if skip_unless_v1("kill_all_reaches_children") {
        return;
    }
    let ctx = Ctx::new("cg-killall");
    // Children ignore nothing; the init ignores SIGTERM (set after the children started).
    let (_b, cg, id, pids) =
        spawn_family(&ctx, "killall", "sleep 1001 & sleep 1002 & trap '' TERM; while :; do sleep 1; done");
    let init = ctx.pid(&id);
    let children = family_children(&pids);
    ctx.cmd(&["kill", "--all", &id, "TERM"]).ok();
    for p in &children {
        assert!(wait_until(Duration::from_secs(5), || !pid_alive(*p)), "child {p} survived kill --all TERM");
    }
    assert!(pid_alive(init), "the init ignores TERM and must still run");
    assert_eq!(ctx.state(&id)["status"], "running");
    // KILL --all: everything goes, the container stops.
    let left = ps_pids(&ctx, &id);
    ctx.cmd(&["kill", "-a", &id, "KILL"]).ok();
    for p in left {
        assert!(wait_until(Duration::from_secs(5), || !pid_alive(p)), "pid {p} survived kill --all KILL");
    }
    ctx.wait_status(&id, "stopped", Duration::from_secs(5));
    ctx.delete(&id).ok();
    assert_cg_gone(&cg);
}

#[test]
fn delete_force_reaches_every_process() {
    if skip_unless_v1("delete_force_reaches_every_process") {
        return;
    }
    let ctx = Ctx::new("cg-delf");
    let (_b, cg, id, pids) = spawn_family(&ctx, "delf", "sleep 1001 & sleep 1002 & exec sleep 1000");
    delete_and_check(&ctx, &id, &cg);
    for p in pids {
        assert!(wait_until(Duration::from_secs(5), || !pid_alive(p)), "pid {p} survived delete -f");
    }
}

/// The init exits; its orphaned children keep the cgroup busy: `delete` (no -f) of the
/// stopped container still removes every process and the cgroup (runc does the same).
#[test]
fn delete_stopped_with_orphans() {
    if skip_unless_v1("delete_stopped_with_orphans") {
        return;
    }
    let ctx = Ctx::new("cg-orphans");
    let (_b, cg, id, pids) = spawn_family(&ctx, "orphans", "sleep 1001 & sleep 1002 & sleep 2");
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    ctx.delete(&id).ok();
    assert_cg_gone(&cg);
    for p in pids {
        assert!(wait_until(Duration::from_secs(5), || !pid_alive(p)), "pid {p} survived delete");
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: one line, non-zero, nothing left

#[test]
fn bad_cpuset_rejected_nothing_left() {
    if skip_unless_v1("bad_cpuset_rejected_nothing_left")
        || skip_on_runc("runc removes only the leaf and leaves the parents it made in cpuset")
    {
        return;
    }
    let ctx = Ctx::new("cg-badcpus");
    // Nested, so that the parents created on the way must go too.
    let top = cg_path("badcpus");
    let mut b = ctx.bundle();
    b.set("/linux/cgroupsPath", json!(format!("{top}/a/b")));
    b.set("/linux/resources/cpu", json!({"cpus": "999"}));
    b.args(&["true"]);
    let id = ctx.id("badcpus");
    let snap = ctx.snapshot(&b);
    let o = ctx.create(&mut b, &id);
    o.one_line_error(&["cpuset.cpus"]);
    assert!(o.stderr.contains("999"), "{o}");
    ctx.assert_nothing_left(&snap, &b, &id);
    assert_cg_gone(&top);
    // run too.
    let id = ctx.id("badcpus2");
    let o = ctx.run(&mut b, &id);
    o.one_line_error(&["cpuset.cpus"]);
    ctx.assert_nothing_left(&snap, &b, &id);
    assert_cg_gone(&top);
}

#[test]
fn bad_cgroups_path_rejected_nothing_left() {
    if skip_unless_v1("bad_cgroups_path_rejected_nothing_left")
        || skip_on_runc("runc accepts a cgroupsPath that leaves the root and creates it at the top")
    {
        return;
    }
    let ctx = Ctx::new("cg-badpath");
    let name = format!("berth-it-escape-{}", std::process::id());
    for p in [format!("../../{name}"), format!("/../../{name}"), format!("/x/../../{name}"), "..".to_string()] {
        let mut b = ctx.bundle();
        b.set("/linux/cgroupsPath", json!(p));
        b.args(&["true"]);
        let id = ctx.id("badpath");
        let snap = ctx.snapshot(&b);
        let o = ctx.create(&mut b, &id);
        o.one_line_error(&["cgroup"]);
        ctx.assert_nothing_left(&snap, &b, &id);
        // Nothing at the hierarchy roots, nothing above them, nothing under our own cgroup.
        for r in hierarchy_roots() {
            assert!(!r.join(&name).exists(), "{} created", r.join(&name).display());
        }
        assert!(!Path::new("/sys/fs").join(&name).exists());
        assert!(!Path::new("/sys").join(&name).exists());
        assert!(!Path::new(CG_ROOT).join(&name).exists());
    }
}

#[test]
fn bad_values_rejected_before_anything_is_made() {
    if skip_unless_v1("bad_values_rejected_before_anything_is_made") {
        return;
    }
    let ctx = Ctx::new("cg-badvals");
    for (tag, res, words) in [
        ("swappiness", json!({"memory": {"swappiness": 101}}), vec!["swappiness"]),
        ("shares", json!({"cpu": {"shares": 1}}), vec!["cpu-shares", "shares"]),
        (
            "devtype",
            json!({"devices": [{"allow": true, "type": "x", "access": "r"}]}),
            vec!["device", "type", "variant"],
        ),
    ] {
        let (mut b, cg) = cg_bundle(&ctx, &format!("badval{tag}"), res);
        b.args(&["true"]);
        let id = ctx.id(tag);
        let snap = ctx.snapshot(&b);
        let o = ctx.create(&mut b, &id);
        o.one_line_error(&words);
        ctx.assert_nothing_left(&snap, &b, &id);
        assert_cg_gone(&cg);
    }
}

// ---------------------------------------------------------------------------------------------
// OOM and small limits

#[test]
fn oom_kill_exit_137() {
    if skip_unless_v1("oom_kill_exit_137") {
        return;
    }
    let ctx = Ctx::new("cg-oom");
    let mut mem = json!({"limit": 33554432});
    if Path::new(CG_ROOT).join("memory/memory.memsw.limit_in_bytes").exists() {
        mem["swap"] = json!(33554432); // no escape to swap
    }
    let (mut b, cg) = cg_bundle(&ctx, "oom", json!({ "memory": mem }));
    // dd's 64 MiB buffer is touched by the read from /dev/zero.
    b.args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    let id = ctx.id("oom");
    let o = ctx.run(&mut b, &id);
    assert_eq!(o.code, 137, "OOM-killed init must give 137: {o}");
    assert_cg_gone(&cg);
    // Under the limit the same thing works.
    let (mut b, cg) = cg_bundle(&ctx, "nooom", json!({ "memory": mem }));
    b.args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=4"]);
    let id = ctx.id("nooom");
    ctx.run(&mut b, &id).ok();
    assert_cg_gone(&cg);
}

/// The smallest memory limit under which `berth run` of `true` still works, from `limits`
/// (bytes, descending); prints every result. Shared with cgroups_v2.rs.
pub(crate) fn memory_floor(ctx: &Ctx, tag: &str, limits: &[u64]) -> Option<u64> {
    let mut floor = None;
    let mut report = Vec::new();
    for &l in limits {
        let mut mem = json!({"limit": l});
        if host_is_v2() || Path::new(CG_ROOT).join("memory/memory.memsw.limit_in_bytes").exists() {
            mem["swap"] = json!(l);
        }
        let (mut b, cg) = cg_bundle(ctx, &format!("{tag}{l}"), json!({ "memory": mem }));
        b.args(&["echo", "alive"]);
        let id = ctx.id(&format!("floor{l}"));
        let o = ctx.run(&mut b, &id);
        let ok = o.code == 0 && o.stdout.trim() == "alive";
        report.push(format!(
            "{}K={}",
            l / 1024,
            if ok { "ok".to_string() } else { format!("exit {} {}", o.code, o.stderr.trim()) }
        ));
        let _ = ctx.delete_force(&id);
        assert_cg_gone(&cg);
        if ok {
            floor = Some(l);
        } else {
            break;
        }
    }
    eprintln!("memory floor ({}): {}", bin().display(), report.join(", "));
    floor
}

#[test]
fn works_under_1mib_memory_limit() {
    if skip_unless_v1("works_under_1mib_memory_limit") {
        return;
    }
    let ctx = Ctx::new("cg-floor");
    let f = memory_floor(
        &ctx,
        "floor",
        &[8 << 20, 6 << 20, 4 << 20, 3 << 20, 2 << 20, 1 << 20, 768 << 10, 512 << 10, 256 << 10, 128 << 10, 64 << 10],
    );
    if is_runc() {
        eprintln!("works_under_1mib_memory_limit: runc floor {f:?}");
        return;
    }
    assert!(f.is_some_and(|f| f <= 1 << 20), "berth must run under a 1 MiB memory limit (floor {f:?})");
}

// ---------------------------------------------------------------------------------------------
// exec and the container's cgroup; create into an existing cgroup

/// The cgroup of `pid` in every hierarchy, as /proc/PID/cgroup lists it (sorted lines).
fn proc_cgroups(pid: i32) -> Vec<String> {
    let mut v: Vec<String> = read(format!("/proc/{pid}/cgroup")).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// An exec'd process is in the container's cgroup in every v1 hierarchy and in the unified
/// one: its /proc/PID/cgroup equals the init's, line for line.
#[test]
fn exec_joins_every_hierarchy() {
    if skip_unless_v1("exec_joins_every_hierarchy") {
        return;
    }
    let ctx = Ctx::new("cg-execjoin");
    let (mut b, cg) = cg_bundle(&ctx, "execjoin", json!({}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("execjoin");
    ctx.run_detached(&mut b, &id);
    let init = proc_cgroups(ctx.pid(&id));
    assert!(init.iter().filter(|l| l.ends_with(&cg)).count() >= 2, "{init:?}");
    let pf = ctx.dir.join("exec.pid");
    let bg = ctx.spawn(&["exec", "--pid-file", pf.to_str().unwrap(), &id, "sleep", "30"]);
    assert!(wait_file(&pf, Duration::from_secs(10)), "no exec pid file");
    let pid: i32 = read(&pf).trim().parse().expect("exec pid");
    let mine = proc_cgroups(pid);
    assert_eq!(mine, init, "exec'd process {pid} is not in the container's cgroups");
    // Every hierarchy the host has (v1 ones and the unified one) names the container's path.
    for l in &mine {
        let path = l.splitn(3, ':').nth(2).unwrap_or("");
        assert_eq!(path, cg, "{l} (all: {mine:?})");
    }
    delete_and_check(&ctx, &id, &cg);
    let _ = bg.wait(Duration::from_secs(5));
}

/// exec into a paused or stopped container: runc's messages.
#[test]
fn exec_paused_and_stopped_messages() {
    if skip_unless_v1("exec_paused_and_stopped_messages") || !v1_has("freezer") {
        return;
    }
    let ctx = Ctx::new("cg-execmsg");
    let (mut b, cg) = cg_bundle(&ctx, "execmsg", json!({}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("execmsg");
    ctx.run_detached(&mut b, &id);
    ctx.cmd(&["pause", &id]).ok();
    let o = ctx.cmd(&["exec", &id, "true"]);
    o.fails();
    assert!(o.stderr.contains("cannot exec in a paused container (use --ignore-paused to override)"), "{o}");
    ctx.cmd(&["resume", &id]).ok();
    delete_and_check(&ctx, &id, &cg);

    let (mut b, cg) = cg_bundle(&ctx, "execmsg2", json!({}));
    b.args(&["true"]);
    let id = ctx.id("execmsg2");
    ctx.run_detached(&mut b, &id);
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    let o = ctx.cmd(&["exec", &id, "true"]);
    o.fails();
    assert!(o.stderr.contains("cannot exec in a stopped container"), "{o}");
    delete_and_check(&ctx, &id, &cg);
}

/// `create` into a cgroup that already has a process: a warning with runc's words (in the
/// log), and the container is made. Into a frozen cgroup: refused with runc's message, and
/// the cgroup (not the container's) is left as it was.
#[test]
fn create_into_busy_or_frozen_cgroup() {
    if skip_unless_v1("create_into_busy_or_frozen_cgroup") || !v1_has("freezer") {
        return;
    }
    let ctx = Ctx::new("cg-existing");
    let (mut b, cg) = cg_bundle(&ctx, "existing", json!({}));
    b.args(&["true"]);
    // A cgroup made beforehand (in the freezer and devices hierarchies: runc looks at devices
    // for processes), with a sleeping process in it.
    let dirs = [cg_dir("freezer", &cg), cg_dir("devices", &cg)];
    for d in &dirs {
        fs::create_dir_all(d).unwrap();
    }
    let mut sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
    let spid = sleeper.id().to_string();
    for d in &dirs {
        fs::write(d.join("cgroup.procs"), &spid).unwrap();
    }
    let cleanup = |sleeper: &mut std::process::Child| {
        let _ = fs::write(cg_dir("freezer", &cg).join("freezer.state"), "THAWED");
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        for d in cg_dirs(&cg) {
            let _ = fs::remove_dir(d);
        }
    };

    let id = ctx.id("busy");
    let log = ctx.dir.join("busy.log");
    b.write_config(&id);
    let o = ctx.cmd(&["--log", log.to_str().unwrap(), "create", "--bundle", b.dir.to_str().unwrap(), &id]);
    let logged = read(&log);
    if o.code != 0 {
        cleanup(&mut sleeper);
    }
    o.ok();
    assert!(logged.contains("container's cgroup is not empty: 1 process(es) found"), "log: {logged}\n{o}");
    assert!(!o.stderr.contains("not empty"), "with --log the warning goes to the file only: {o}");
    // Without --log the warning goes to stderr as runc's logrus text line (the sleeper and the
    // first container's init are in the cgroup now); create still succeeds.
    let id2 = ctx.id("busy2");
    b.write_config(&id2);
    let o = ctx.cmd(&["create", "--bundle", b.dir.to_str().unwrap(), &id2]);
    let created = o.code == 0;
    let warned = o.stderr.lines().any(|l| {
        l.starts_with("time=\"")
            && l.ends_with("\" level=warning msg=\"container's cgroup is not empty: 2 process(es) found\"")
    });
    ctx.delete_force(&id2).ok();
    if !created || !warned {
        ctx.delete_force(&id).ok();
        cleanup(&mut sleeper);
    }
    assert!(created, "{o}");
    assert!(warned, "no warning line on stderr: {o}");
    ctx.delete_force(&id).ok();

    // Frozen: refused, nothing of the container left, the cgroup and its process untouched.
    for d in &dirs {
        fs::create_dir_all(d).unwrap();
        fs::write(d.join("cgroup.procs"), &spid).unwrap();
    }
    fs::write(cg_dir("freezer", &cg).join("freezer.state"), "FROZEN").unwrap();
    let id = ctx.id("frozen");
    b.write_config(&id);
    let o = ctx.cmd(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    let still = cg_dir("freezer", &cg).exists();
    let state = ctx.status(&id);
    cleanup(&mut sleeper);
    o.fails();
    assert!(o.stderr.contains("container's cgroup unexpectedly frozen"), "{o}");
    if !is_runc() {
        assert_eq!(o.stderr.trim().lines().count(), 1, "{o}");
    }
    assert!(still, "the pre-existing frozen cgroup was removed");
    assert!(state.is_none(), "container state left: {state:?}");
}

/// `delete --force` removes the sub-cgroups made under the container's cgroup (here made by
/// the host, with a container process moved into one, as a container with a writable cgroup
/// mount would).
#[test]
fn delete_force_removes_sub_cgroups() {
    if skip_unless_v1("delete_force_removes_sub_cgroups") {
        return;
    }
    let ctx = Ctx::new("cg-subdel");
    let (mut b, cg) = cg_bundle(&ctx, "subdel", json!({}));
    b.sh("sleep 1000 & exec sleep 1001");
    let id = ctx.id("subdel");
    ctx.run_detached(&mut b, &id);
    let mem = cg_dir("memory", &cg);
    let sub = mem.join("a/b");
    fs::create_dir_all(&sub).unwrap();
    let pids: Vec<i32> = read(mem.join("cgroup.procs")).lines().filter_map(|l| l.trim().parse().ok()).collect();
    let child = pids.iter().copied().find(|&p| p != ctx.pid(&id));
    if let Some(c) = child {
        fs::write(sub.join("cgroup.procs"), c.to_string()).unwrap();
    }
    let other = cg_dir("pids", &cg).join("x");
    if v1_has("pids") {
        fs::create_dir_all(&other).unwrap();
    }
    delete_and_check(&ctx, &id, &cg);
    assert!(!sub.exists() && !other.exists(), "sub-cgroups left");
}

/// Device rules with the access string "rwa" (runc's own tests use it) are accepted: the
/// "a" is ignored, r and w apply.
#[test]
fn devices_access_rwa_accepted() {
    if skip_unless_v1("devices_access_rwa_accepted") {
        return;
    }
    let ctx = Ctx::new("cg-devrwa");
    let (mut b, cg) = cg_bundle(
        &ctx,
        "devrwa",
        json!({"devices": [{"allow": false, "access": "rwm"},
                           {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwa"},
                           {"allow": true, "type": "c", "major": 1, "minor": 2, "access": "ra"}]}),
    );
    add_caps(&mut b, &["CAP_MKNOD"]);
    b.writable_root();
    b.sh("echo x > /dev/null && echo null-ok; mknod /tmp/k12 c 1 2 || exit 10; \
          head -c1 /tmp/k12 2>&1; echo; (echo x > /tmp/k12) 2>&1");
    let id = ctx.id("devrwa");
    let o = ctx.run(&mut b, &id);
    assert_eq!(o.lines().first().map(String::as_str), Some("null-ok"), "{o}");
    // "ra": the read reaches the (missing) driver, the write is refused by the cgroup.
    assert!(o.stdout.contains("No such device or address"), "{o}");
    assert!(o.stdout.contains("Operation not permitted"), "{o}");
    assert_cg_gone(&cg);
}
