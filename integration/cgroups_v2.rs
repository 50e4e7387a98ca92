//! Pure cgroup v2 (/sys/fs/cgroup is cgroup2): the spec's v1-shaped resources converted to
//! v2 files, `unified`, the eBPF device filter, cgroup.freeze, the cgroup namespace, update,
//! events, OOM and the smallest memory limit berth runs under.
//!
//! Every test prints "skipped: not cgroup v2" and returns on other hosts: run them in the VM
//! with integration/vm/run-v2.sh. Containers get a cgroup namespace (as `runc spec` configs
//! do), so /sys/fs/cgroup inside is the container's own cgroup.

use crate::cgroups::*;
use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::time::Duration;

fn skip_unless_v2(test: &str) -> bool {
    if host_is_v2() {
        return false;
    }
    eprintln!("{test}: skipped: not cgroup v2 (/sys/fs/cgroup is not a cgroup2 mount)");
    true
}

/// The host directory of the container's cgroup.
fn dir(cg: &str) -> std::path::PathBuf {
    cg_dir("", cg)
}

#[track_caller]
fn host(cg: &str, file: &str) -> String {
    cg_read("", cg, file)
}

/// A cgroup-v2 bundle: `cg_bundle` plus a cgroup namespace.
fn v2_bundle(ctx: &Ctx, tag: &str, resources: Value) -> (Bundle, String) {
    let (mut b, cg) = cg_bundle(ctx, tag, resources);
    b.ns_add("cgroup", None);
    (b, cg)
}

/// run -d of `sleep 1000` with `resources`.
fn sleeper(ctx: &Ctx, tag: &str, resources: Value) -> (String, String) {
    let (mut b, cg) = v2_bundle(ctx, tag, resources);
    b.args(&["sleep", "1000"]);
    let id = ctx.id(tag);
    ctx.run_detached(&mut b, &id);
    (id, cg)
}

/// `update -r -` with `r` on stdin.
#[track_caller]
fn update_json(ctx: &Ctx, id: &str, r: Value) -> Out {
    let f = ctx.dir.join(format!("res-{}.json", std::process::id()));
    fs::write(&f, r.to_string()).unwrap();
    let mut c = ctx.command(&["update", "-r", "-", id]);
    c.stdin(fs::File::open(&f).unwrap());
    ctx.exec_cmd(c, TIMEOUT)
}

#[test]
fn memory_max_swap_low() {
    if skip_unless_v2("memory_max_swap_low") {
        return;
    }
    let ctx = Ctx::new("v2-mem");
    let (id, cg) =
        sleeper(&ctx, "v2mem", json!({"memory": {"limit": 67108864, "swap": 100663296, "reservation": 33554432}}));
    assert_eq!(host(&cg, "memory.max"), "67108864");
    assert_eq!(host(&cg, "memory.low"), "33554432");
    let swap = dir(&cg).join("memory.swap.max").exists();
    if swap {
        // The spec's swap is memory+swap; v2 wants swap alone: 96M - 64M.
        assert_eq!(host(&cg, "memory.swap.max"), "33554432");
        assert_eq!(inside(&ctx, &id, "memory.swap.max"), "33554432");
    } else {
        eprintln!("memory_max_swap_low: no memory.swap.max (no swap accounting), swap not checked");
    }
    assert_eq!(inside(&ctx, &id, "memory.max"), "67108864");
    assert_eq!(inside(&ctx, &id, "memory.low"), "33554432");
    if swap {
        // swap == limit: no swap at all.
        update_json(&ctx, &id, json!({"memory": {"limit": 67108864, "swap": 67108864}})).ok();
        assert_eq!(host(&cg, "memory.swap.max"), "0");
        // -1: unlimited swap.
        update_json(&ctx, &id, json!({"memory": {"limit": 67108864, "swap": -1}})).ok();
        assert_eq!(host(&cg, "memory.swap.max"), "max");
        // Only a new memory+swap: converted against the current memory.max, as runc does
        // with its stored limit.
        ctx.cmd(&["update", "--memory-swap", "100m", &id]).ok();
        assert_eq!(host(&cg, "memory.swap.max"), (36u64 << 20).to_string());
        // swap below memory: one line, nothing changed.
        update_json(&ctx, &id, json!({"memory": {"limit": 67108864, "swap": 1048576}})).one_line_error(&["swap"]);
        assert_eq!(host(&cg, "memory.swap.max"), (36u64 << 20).to_string());
    }
    // -1: memory.max "max".
    update_json(&ctx, &id, json!({"memory": {"limit": -1, "swap": -1}})).ok();
    assert_eq!(host(&cg, "memory.max"), "max");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn cpu_weight_from_shares() {
    if skip_unless_v2("cpu_weight_from_shares") {
        return;
    }
    let ctx = Ctx::new("v2-weight");
    let (id, cg) = sleeper(&ctx, "v2weight", json!({"cpu": {"shares": 1024}}));
    // 1 + (shares - 2) * 9999 / 262142
    assert_eq!(host(&cg, "cpu.weight"), "39");
    assert_eq!(inside(&ctx, &id, "cpu.weight"), "39");
    for (shares, weight) in [("2", "1"), ("262144", "10000"), ("512", "20")] {
        ctx.cmd(&["update", "--cpu-shares", shares, &id]).ok();
        assert_eq!(host(&cg, "cpu.weight"), weight, "shares {shares}");
    }
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn cpu_max_quota_period() {
    if skip_unless_v2("cpu_max_quota_period") {
        return;
    }
    let ctx = Ctx::new("v2-cpumax");
    let (id, cg) = sleeper(&ctx, "v2cpumax", json!({"cpu": {"quota": 50000, "period": 200000}}));
    assert_eq!(host(&cg, "cpu.max"), "50000 200000");
    assert_eq!(inside(&ctx, &id, "cpu.max"), "50000 200000");
    // A new quota keeps the period; a new period keeps the quota (runc merges the flags into
    // the stored limits, so both stay there too).
    ctx.cmd(&["update", "--cpu-quota", "30000", &id]).ok();
    assert_eq!(host(&cg, "cpu.max"), "30000 200000");
    ctx.cmd(&["update", "--cpu-period", "100000", &id]).ok();
    assert_eq!(host(&cg, "cpu.max"), "30000 100000");
    update_json(&ctx, &id, json!({"cpu": {"quota": -1}})).ok();
    assert_eq!(host(&cg, "cpu.max"), "max 100000");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn cpuset_cpus_mems() {
    if skip_unless_v2("cpuset_cpus_mems") {
        return;
    }
    let ctx = Ctx::new("v2-cpuset");
    let online = read("/sys/devices/system/cpu/online");
    let last = online.trim().rsplit([',', '-']).next().unwrap_or("0").to_string();
    let (id, cg) = sleeper(&ctx, "v2cpuset", json!({"cpu": {"cpus": last, "mems": "0"}}));
    assert_eq!(host(&cg, "cpuset.cpus"), last);
    assert_eq!(host(&cg, "cpuset.mems"), "0");
    let st = exec_sh(&ctx, &id, "cat /proc/self/status");
    assert_eq!(status_field(&st, "Cpus_allowed_list").as_deref(), Some(last.as_str()), "{st}");
    ctx.cmd(&["update", "--cpuset-cpus", "0", &id]).ok();
    assert_eq!(host(&cg, "cpuset.cpus"), "0");
    ctx.cmd(&["update", "--cpuset-cpus", "999", &id]).one_line_error(&["cpuset.cpus"]);
    assert_eq!(host(&cg, "cpuset.cpus"), "0");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn pids_max() {
    if skip_unless_v2("pids_max") {
        return;
    }
    let ctx = Ctx::new("v2-pids");
    let (id, cg) = sleeper(&ctx, "v2pids", json!({"pids": {"limit": 8}}));
    assert_eq!(host(&cg, "pids.max"), "8");
    assert_eq!(inside(&ctx, &id, "pids.max"), "8");
    let o = ctx.cmd(&["exec", &id, "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & done; echo done"]);
    let cur: u64 = host(&cg, "pids.current").parse().unwrap();
    assert!(cur <= 8, "pids.current {cur} above the limit");
    assert!(o.stderr.contains("fork") || o.stderr.contains("Resource temporarily unavailable"), "{o}");
    update_json(&ctx, &id, json!({"pids": {"limit": -1}})).ok();
    assert_eq!(host(&cg, "pids.max"), "max");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn io_max_and_weight() {
    if skip_unless_v2("io_max_and_weight") {
        return;
    }
    let Some((ma, mi, name)) = block_device() else {
        eprintln!("io_max_and_weight: skipped: no block device in /sys/block (modprobe loop)");
        return;
    };
    let ctx = Ctx::new("v2-io");
    let dev = |rate: u64| json!([{"major": ma, "minor": mi, "rate": rate}]);
    let (id, cg) = sleeper(
        &ctx,
        "v2io",
        json!({"blockIO": {
            "throttleReadBpsDevice": dev(1048576), "throttleWriteBpsDevice": dev(2097152),
            "throttleReadIOPSDevice": dev(100), "throttleWriteIOPSDevice": dev(200)}}),
    );
    let io = host(&cg, "io.max");
    assert!(
        io.lines().any(|l| l == format!("{ma}:{mi} rbps=1048576 wbps=2097152 riops=100 wiops=200")),
        "io.max for {name}: {io}"
    );
    assert_eq!(inside(&ctx, &id, "io.max"), io);
    // blkio weight: io.bfq.weight (BFQ, v1 range) or io.weight (converted), if either exists.
    let bfq = dir(&cg).join("io.bfq.weight").exists();
    let iow = dir(&cg).join("io.weight").exists();
    if bfq || iow {
        ctx.cmd(&["update", "--blkio-weight", "500", &id]).ok();
        if bfq {
            let w = host(&cg, "io.bfq.weight");
            assert!(w.lines().any(|l| l == "default 500" || l == "500"), "io.bfq.weight: {w}");
        } else {
            let w = host(&cg, "io.weight");
            assert!(w.lines().any(|l| l == "default 4950"), "io.weight: {w}");
        }
    } else {
        eprintln!("io_max_and_weight: neither io.bfq.weight nor io.weight here, weight not checked");
    }
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn unified_keys() {
    if skip_unless_v2("unified_keys") {
        return;
    }
    let ctx = Ctx::new("v2-unified");
    let (id, cg) = sleeper(
        &ctx,
        "v2unified",
        json!({"unified": {"memory.high": "50003968", "pids.max": "20", "cpu.weight": "77"}}),
    );
    assert_eq!(host(&cg, "memory.high"), "50003968");
    assert_eq!(host(&cg, "pids.max"), "20");
    assert_eq!(host(&cg, "cpu.weight"), "77");
    assert_eq!(inside(&ctx, &id, "memory.high"), "50003968");
    update_json(&ctx, &id, json!({"unified": {"pids.max": "30"}})).ok();
    assert_eq!(host(&cg, "pids.max"), "30");
    delete_and_check(&ctx, &id, &cg);

    // Bad keys: one line, nothing left.
    for (tag, key) in [("nofile", "memory.no_such_file"), ("slash", "../memory.max"), ("noctrl", "nosuch.max")] {
        let (mut b, cg) = v2_bundle(&ctx, &format!("v2unibad{tag}"), json!({"unified": {key: "1"}}));
        b.args(&["true"]);
        let id = ctx.id(tag);
        let snap = ctx.snapshot(&b);
        ctx.create(&mut b, &id).one_line_error(&[key, "unified"]);
        ctx.assert_nothing_left(&snap, &b, &id);
        assert_cg_gone(&cg);
    }
}

/// The eBPF device filter: a denied device gives EPERM, an allowed one works, and a device
/// allowed for reading only reaches its driver on read (c 1:2 has none: ENXIO) but not on write.
#[test]
fn devices_ebpf_eperm() {
    if skip_unless_v2("devices_ebpf_eperm") {
        return;
    }
    devices_eperm(&Ctx::new("v2-dev"), v2_bundle);
}

#[test]
fn freeze_with_cgroup_freeze() {
    if skip_unless_v2("freeze_with_cgroup_freeze") {
        return;
    }
    let ctx = Ctx::new("v2-freeze");
    let (mut b, cg) = v2_bundle(&ctx, "v2freeze", json!({}));
    b.sh(COUNTER_SCRIPT);
    let id = ctx.id("v2freeze");
    ctx.run_detached(&mut b, &id);
    let pid = ctx.pid(&id);
    wait_counter_moving(pid);
    ctx.cmd(&["pause", &id]).ok();
    assert_eq!(ctx.state(&id)["status"], "paused");
    assert_eq!(host(&cg, "cgroup.freeze"), "1");
    assert!(host(&cg, "cgroup.events").lines().any(|l| l == "frozen 1"));
    let c1 = read_counter(pid);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read_counter(pid), c1, "counter moved while paused");
    ctx.cmd(&["exec", &id, "true"]).one_line_error(&["paused"]);
    ctx.cmd(&["resume", &id]).ok();
    assert_eq!(ctx.state(&id)["status"], "running");
    assert_eq!(host(&cg, "cgroup.freeze"), "0");
    wait_counter_moving(pid);
    ctx.cmd(&["pause", &id]).ok();
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn cgroup_namespace_root() {
    if skip_unless_v2("cgroup_namespace_root") {
        return;
    }
    let ctx = Ctx::new("v2-cgns");
    let (id, cg) = sleeper(&ctx, "v2cgns", json!({"pids": {"limit": 33}}));
    assert_eq!(exec_sh(&ctx, &id, "cat /proc/self/cgroup").trim(), "0::/");
    assert_eq!(exec_sh(&ctx, &id, "cat /proc/1/cgroup").trim(), "0::/");
    // /sys/fs/cgroup inside is the container's own cgroup.
    assert_eq!(inside(&ctx, &id, "pids.max"), "33");
    assert!(inside(&ctx, &id, "cgroup.procs").lines().any(|l| l == "1"));
    let o = ctx.cmd(&["exec", &id, "sh", "-c", "echo 1000 > /sys/fs/cgroup/pids.max"]);
    assert!(o.code != 0 && o.stderr.contains("Read-only file system"), "cgroup mount must be read-only: {o}");
    assert_eq!(host(&cg, "pids.max"), "33");
    // From the host the init is in the configured path.
    let pid = ctx.pid(&id);
    assert_eq!(read(format!("/proc/{pid}/cgroup")).trim(), format!("0::{cg}"));
    delete_and_check(&ctx, &id, &cg);
}

/// Without a cgroup namespace the container sees the hierarchy from its root, as with runc
/// (a cgroup2 mount made in the host's cgroup namespace): its own cgroup is at the
/// configured path. Read-only either way.
#[test]
fn cgroup_mount_without_namespace() {
    if skip_unless_v2("cgroup_mount_without_namespace") {
        return;
    }
    let ctx = Ctx::new("v2-nocgns");
    let (mut b, cg) = cg_bundle(&ctx, "v2nocgns", json!({"pids": {"limit": 34}}));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("v2nocgns");
    ctx.run_detached(&mut b, &id);
    assert_eq!(inside(&ctx, &id, &format!("{}/pids.max", cg.trim_start_matches('/'))), "34");
    assert_eq!(exec_sh(&ctx, &id, "cat /proc/self/cgroup").trim(), format!("0::{cg}"));
    let o = ctx.cmd(&["exec", &id, "sh", "-c", &format!("echo 1000 > /sys/fs/cgroup{cg}/pids.max")]);
    assert!(o.code != 0 && o.stderr.contains("Read-only file system"), "cgroup mount must be read-only: {o}");
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn update_every_flag() {
    if skip_unless_v2("update_every_flag") {
        return;
    }
    let ctx = Ctx::new("v2-update");
    let (id, cg) = sleeper(&ctx, "v2update", json!({"memory": {"limit": 67108864}, "pids": {"limit": 100}}));
    let swap = dir(&cg).join("memory.swap.max").exists();
    let mut args = vec![
        "update",
        "--memory",
        "100m",
        "--memory-reservation",
        "50m",
        "--cpu-shares",
        "512",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "50000",
        "--cpuset-cpus",
        "0",
        "--cpuset-mems",
        "0",
        "--pids-limit",
        "50",
    ];
    if swap {
        args.extend(["--memory-swap", "200m"]);
    }
    args.push(&id);
    ctx.cmd(&args).ok();
    assert_eq!(host(&cg, "memory.max"), (100u64 << 20).to_string());
    assert_eq!(host(&cg, "memory.low"), (50u64 << 20).to_string());
    if swap {
        assert_eq!(host(&cg, "memory.swap.max"), (100u64 << 20).to_string());
    }
    assert_eq!(host(&cg, "cpu.weight"), "20");
    assert_eq!(host(&cg, "cpu.max"), "20000 50000");
    assert_eq!(host(&cg, "cpuset.cpus"), "0");
    assert_eq!(host(&cg, "cpuset.mems"), "0");
    assert_eq!(host(&cg, "pids.max"), "50");
    assert_eq!(inside(&ctx, &id, "memory.max"), (100u64 << 20).to_string());
    // Resources JSON on stdin.
    update_json(&ctx, &id, json!({"memory": {"limit": 41943040}, "cpu": {"shares": 2}, "pids": {"limit": 42}})).ok();
    assert_eq!(host(&cg, "memory.max"), "41943040");
    assert_eq!(host(&cg, "cpu.weight"), "1");
    assert_eq!(host(&cg, "pids.max"), "42");
    // A limit below the current usage: the kernel reclaims or OOM-kills on v2; berth refuses
    // only with checkBeforeUpdate. Here: a sane lower limit works.
    ctx.cmd(&["update", "--memory", "32m", &id]).ok();
    assert_eq!(host(&cg, "memory.max"), (32u64 << 20).to_string());
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn events_stats() {
    if skip_unless_v2("events_stats") {
        return;
    }
    let ctx = Ctx::new("v2-stats");
    let (id, cg, _) = events_stats_of_sleepers(&ctx, v2_bundle);
    let lines = first_lines(ctx.command(&["events", "--interval", "1s", &id]), 2, Duration::from_secs(30));
    assert_eq!(lines.len(), 2, "events --interval 1s: {lines:?}");
    for (l, _) in &lines {
        check_stats_shape(l, &id);
    }
    delete_and_check(&ctx, &id, &cg);
}

#[test]
fn events_stream_reports_oom() {
    if skip_unless_v2("events_stream_reports_oom") {
        return;
    }
    let ctx = Ctx::new("v2-evoom");
    check_oom_event(&ctx, "v2evoom", true);
}

#[test]
fn delete_force_and_kill_all() {
    if skip_unless_v2("delete_force_and_kill_all") {
        return;
    }
    let ctx = Ctx::new("v2-kill");
    for (tag, how) in [("v2killall", "kill"), ("v2delf", "delete")] {
        let (mut b, cg) = v2_bundle(&ctx, tag, json!({}));
        // No pid namespace: the children outlive the init unless the cgroup is killed.
        b.ns_remove("pid");
        b.sh("sleep 1001 & sleep 1002 & exec sleep 1000");
        let id = ctx.id(tag);
        ctx.run_detached(&mut b, &id);
        let mut pids = Vec::new();
        assert!(wait_until(Duration::from_secs(20), || {
            pids = cg_procs(&cg);
            family_children(&pids).len() == 2
        }));
        if how == "kill" {
            ctx.cmd(&["kill", "--all", &id, "KILL"]).ok();
            ctx.wait_status(&id, "stopped", Duration::from_secs(10));
            ctx.delete(&id).ok();
            assert_cg_gone(&cg);
        } else {
            delete_and_check(&ctx, &id, &cg);
        }
        for p in pids {
            assert!(wait_until(Duration::from_secs(5), || !pid_alive(p)), "{how}: pid {p} survived");
        }
    }
}

#[test]
fn bad_cpuset_nothing_left() {
    if skip_unless_v2("bad_cpuset_nothing_left") || skip_on_runc("runc leaves the parents it made") {
        return;
    }
    let ctx = Ctx::new("v2-badcpus");
    let top = cg_path("v2badcpus");
    let mut b = ctx.bundle();
    b.set("/linux/cgroupsPath", json!(format!("{top}/a")));
    b.set("/linux/resources/cpu", json!({"cpus": "999"}));
    b.args(&["true"]);
    let id = ctx.id("v2badcpus");
    let snap = ctx.snapshot(&b);
    ctx.create(&mut b, &id).one_line_error(&["cpuset.cpus"]);
    ctx.assert_nothing_left(&snap, &b, &id);
    assert_cg_gone(&top);
}

#[test]
fn oom_kill_exit_137() {
    if skip_unless_v2("oom_kill_exit_137") {
        return;
    }
    let ctx = Ctx::new("v2-oom");
    let mem = json!({"limit": 33554432, "swap": 33554432});
    let (mut b, cg) = v2_bundle(&ctx, "v2oom", json!({ "memory": mem }));
    b.args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    let id = ctx.id("v2oom");
    let o = ctx.run(&mut b, &id);
    assert_eq!(o.code, 137, "OOM-killed init must give 137: {o}");
    assert_cg_gone(&cg);
    // Detached: the cgroup stays until delete and counts the kill.
    let (mut b, cg) = v2_bundle(&ctx, "v2oomd", json!({ "memory": mem }));
    b.args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    let id = ctx.id("v2oomd");
    ctx.run_detached(&mut b, &id);
    ctx.wait_status(&id, "stopped", Duration::from_secs(30));
    let ev = host(&cg, "memory.events");
    assert!(ev.lines().any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"), "memory.events: {ev}");
    ctx.delete(&id).ok();
    assert_cg_gone(&cg);
}

/// The issue: runc's init (a Go binary) cannot start under small memory limits. berth's init
/// runs in the container's cgroup from clone3 on (CLONE_INTO_CGROUP), so everything it does
/// is charged: it must still work under 1 MiB. Prints the measured floor.
#[test]
fn works_under_1mib_memory_limit() {
    if skip_unless_v2("works_under_1mib_memory_limit") {
        return;
    }
    let ctx = Ctx::new("v2-floor");
    let limits: Vec<u64> =
        [8192u64, 6144, 4096, 3072, 2048, 1536, 1024, 768, 512, 384, 256, 192, 128].iter().map(|k| k << 10).collect();
    let f = memory_floor(&ctx, "v2floor", &limits);
    if is_runc() {
        eprintln!("works_under_1mib_memory_limit: runc floor {f:?}");
        return;
    }
    assert!(f.is_some_and(|f| f <= 1 << 20), "berth must run under a 1 MiB memory limit (floor {f:?})");
}
