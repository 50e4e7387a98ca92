//! The rest of docker's engine command line: the cgroup resource flags of `run` (read back
//! from the cgroup files of this v1 host), `update` on a running container, `pause` /
//! `unpause` (the freezer), `rename`, health checks, `berth events`, `--format` and the
//! `system` commands. All berth-only (the effects are read from the kernel).

use crate::container::{assert_one_line, Eng};
use std::fs;

/// The cgroup v1 file `file` of `controller` for process `pid`.
fn cg_file(pid: &str, controller: &str, file: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctl, p) = (it.next()?, it.next()?, it.next()?);
            ctl.split(',').any(|c| c == controller).then(|| p.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup for {pid}: {text}"));
    let f = format!("/sys/fs/cgroup/{controller}{path}/{file}");
    fs::read_to_string(&f).unwrap_or_else(|e| panic!("read {f}: {e}")).trim().to_string()
}

fn pid_of(e: &Eng, key: &str) -> String {
    let o = e.c(&["inspect", "-f", "{{.State.Pid}}", key]);
    o.ok();
    o.stdout.trim().to_string()
}

/// vda's "MAJ:MIN", the block device the limits name.
fn disk() -> (String, String) {
    for d in ["/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/loop0"] {
        if let Ok(m) = fs::metadata(d) {
            use std::os::unix::fs::MetadataExt;
            let r = m.rdev();
            return (d.to_string(), format!("{}:{}", libc::major(r), libc::minor(r)));
        }
    }
    panic!("no block device to limit");
}

#[test]
fn resource_flags_reach_the_cgroup_and_update_changes_them() {
    let e = Eng::new("cli-res");
    let (dev, mm) = disk();
    let rbps = format!("{dev}:1mb");
    let wiops = format!("{dev}:100");
    let id = e.run_d(&[
        "--cpu-shares",
        "512",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "25000",
        "--cpuset-cpus",
        "0",
        "--memory-reservation",
        "32m",
        "--memory-swappiness",
        "10",
        "--oom-kill-disable",
        "-m",
        "256m",
        "--device-read-bps",
        &rbps,
        "--device-write-iops",
        &wiops,
        "--device-cgroup-rule",
        "c 10:200 rwm",
        "busybox",
        "sleep",
        "300",
    ]);
    let pid = pid_of(&e, &id);
    assert_eq!(cg_file(&pid, "cpu", "cpu.shares"), "512");
    assert_eq!(cg_file(&pid, "cpu", "cpu.cfs_period_us"), "50000");
    assert_eq!(cg_file(&pid, "cpu", "cpu.cfs_quota_us"), "25000");
    assert_eq!(cg_file(&pid, "cpuset", "cpuset.cpus"), "0");
    assert_eq!(cg_file(&pid, "memory", "memory.soft_limit_in_bytes"), (32u64 << 20).to_string());
    assert_eq!(cg_file(&pid, "memory", "memory.swappiness"), "10");
    assert!(cg_file(&pid, "memory", "memory.oom_control").contains("oom_kill_disable 1"));
    assert_eq!(cg_file(&pid, "blkio", "blkio.throttle.read_bps_device"), format!("{mm} 1048576"));
    assert_eq!(cg_file(&pid, "blkio", "blkio.throttle.write_iops_device"), format!("{mm} 100"));
    assert!(cg_file(&pid, "devices", "devices.list").lines().any(|l| l == "c 10:200 rwm"));
    let hc = &e.inspect(&id)["HostConfig"];
    assert_eq!(hc["CpuShares"], 512);
    assert_eq!(hc["CpusetCpus"], "0");
    assert_eq!(hc["OomKillDisable"], true);
    assert_eq!(hc["BlkioDeviceReadBps"][0]["Rate"], 1048576);

    // update: the running container's cgroup and the record change.
    let o = e.c(&[
        "update",
        "--cpu-shares",
        "256",
        "--cpuset-cpus",
        "0-1",
        "--memory-reservation",
        "16m",
        "--pids-limit",
        "50",
        &id,
    ]);
    o.ok();
    assert_eq!(o.stdout.trim(), id);
    assert_eq!(cg_file(&pid, "cpu", "cpu.shares"), "256");
    assert_eq!(cg_file(&pid, "cpuset", "cpuset.cpus"), "0-1");
    assert_eq!(cg_file(&pid, "memory", "memory.soft_limit_in_bytes"), (16u64 << 20).to_string());
    assert_eq!(cg_file(&pid, "pids", "pids.max"), "50");
    assert_eq!(e.inspect(&id)["HostConfig"]["CpuShares"], 256);
    // Bad update input changes nothing.
    assert_one_line(&e.c(&["update", "--cpuset-cpus", "0-4095", &id]), 125, &["not available"]);
    assert_eq!(cg_file(&pid, "cpuset", "cpuset.cpus"), "0-1");
    // The settings survive a restart (config.json is written from the record).
    e.c(&["restart", "-t", "0", &id]).ok();
    let pid = pid_of(&e, &id);
    assert_eq!(cg_file(&pid, "cpu", "cpu.shares"), "256");
    assert_eq!(cg_file(&pid, "cpu", "cpu.cfs_quota_us"), "25000");
}

#[test]
fn pause_unpause_and_rename() {
    let e = Eng::new("cli-pause");
    let name = format!("pz-{}", std::process::id());
    let id = e.run_d(&["--name", &name, "busybox", "sh", "-c", "while true; do date +%s%N > /tmp/t; sleep 0.1; done"]);
    let pid = pid_of(&e, &id);
    e.c(&["pause", &name]).ok();
    assert_eq!(cg_file(&pid, "freezer", "freezer.state"), "FROZEN");
    assert_eq!(e.status(&id), "paused");
    assert_eq!(e.inspect(&id)["State"]["Paused"], true);
    let ls = e.c(&["ls", "--filter", &format!("name={name}")]);
    assert!(ls.stdout.contains("(Paused)"), "{ls}");
    // Frozen: the loop writes nothing.
    let t1 = e.c(&["exec", &id, "cat", "/tmp/t"]);
    assert!(t1.code != 0, "exec into a paused container must not run: {t1}");
    assert_one_line(&e.c(&["pause", &id]), 125, &["already paused"]);
    e.c(&["unpause", &id]).ok();
    assert_eq!(cg_file(&pid, "freezer", "freezer.state"), "THAWED");
    assert_eq!(e.status(&id), "running");
    assert_one_line(&e.c(&["unpause", &id]), 125, &["not paused"]);

    let new = format!("{name}-new");
    e.c(&["rename", &name, &new]).ok();
    assert_eq!(e.inspect(&new)["Name"], format!("/{new}"));
    assert_one_line(&e.c(&["inspect", &name]), 125, &["no such container"]);
    // The old name is free again; a taken one is refused.
    let other = e.run_d(&["--name", &name, "busybox", "sleep", "300"]);
    assert_one_line(&e.c(&["rename", &new, &name]), 125, &["already in use"]);
    // A paused container is stopped (the signal is delivered once thawed).
    e.c(&["pause", &other]).ok();
    e.c(&["stop", "-t", "2", &other]).ok();
    assert_eq!(e.status(&other), "exited");
}

#[test]
fn bad_resource_flags_are_125_and_make_nothing() {
    let e = Eng::new("cli-resbad");
    let before = e.container_dirs();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--cpuset-cpus", "0-4095"], vec!["Requested CPUs are not available"]),
        (vec!["--cpuset-mems", "7"], vec!["Requested memory nodes are not available"]),
        (
            vec!["--device-read-bps", "/dev/berth-no-such-disk:1mb"],
            vec!["--device-read-bps", "/dev/berth-no-such-disk"],
        ),
        (vec!["--device-write-iops", "/dev/null:10"], vec!["not a block device"]),
        (vec!["--cpu-shares", "1"], vec!["--cpu-shares"]),
        (vec!["--memory-swappiness", "101"], vec!["swappiness"]),
        (vec!["--device-cgroup-rule", "q 1:1 rwm"], vec!["device cgroup rule"]),
        (vec!["--cgroupns", "shared"], vec!["--cgroupns"]),
    ];
    for (flags, words) in cases {
        let mut a = vec!["run", "--rm"];
        a.extend(flags.iter().copied());
        a.extend(["busybox", "true"]);
        assert_one_line(&e.c(&a), 125, &words);
    }
    // No BFQ/CFQ on a host without blkio.weight: refused, not ignored.
    if !std::path::Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists()
        && !std::path::Path::new("/sys/fs/cgroup/blkio/blkio.bfq.weight").exists()
    {
        assert_one_line(&e.c(&["run", "--rm", "--blkio-weight", "500", "busybox", "true"]), 125, &["blkio"]);
    }
    assert_eq!(e.container_dirs(), before);
}

#[test]
fn cgroup_parent_and_cgroupns_host() {
    let e = Eng::new("cli-cgparent");
    let parent = format!("berth-test-parent-{}", std::process::id());
    let id = e.run_d(&["--cgroup-parent", &parent, "--cgroupns", "host", "busybox", "sleep", "300"]);
    let pid = pid_of(&e, &id);
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = format!("/{parent}/{id}");
    assert!(cg.lines().any(|l| l.ends_with(&format!(":memory:{want}"))), "{cg}");
    // With the host's cgroup namespace the container sees the full path.
    let inside = e.c(&["exec", &id, "cat", "/proc/self/cgroup"]);
    inside.ok();
    assert!(inside.stdout.contains(&want), "{inside}");
    assert_eq!(e.inspect(&id)["HostConfig"]["CgroupParent"], parent);
    e.c(&["rm", "-f", &id]).ok();
    // The parent the runtime made in every hierarchy.
    for c in ["blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd", "unified"] {
        let _ = fs::remove_dir(format!("/sys/fs/cgroup/{c}/{parent}"));
    }
}
