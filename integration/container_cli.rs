//! The rest of docker's engine command line: the cgroup resource flags of `run` (read back
//! from the cgroup files of this v1 host), `update` on a running container, `pause` /
//! `unpause` (the freezer), `rename`, health checks, `berth events`, `--format` and the
//! `system` commands. All berth-only (the effects are read from the kernel).

use crate::common::wait_until;
use crate::container::{assert_one_line, Eng};
use std::fs;
use std::time::Duration;

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
fn update_restart_applies_to_the_running_container() {
    let e = Eng::new("cli-update-restart");
    let id = e.run_d(&["busybox", "sh", "-c", "sleep 1; exit 4"]);
    e.c(&["update", "--restart", "on-failure:2", &id]).ok();
    assert_eq!(e.inspect(&id)["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    let mut last = serde_json::Value::Null;
    let ok = wait_until(Duration::from_secs(20), || {
        last = e.inspect(&id);
        last["RestartCount"] == 2 && last["State"]["Status"] == "exited"
    });
    assert!(ok, "restarted twice, then stopped: {}", last["RestartCount"]);
    assert_eq!(last["State"]["ExitCode"], 4);
    let rm = e.run_d(&["--rm", "busybox", "sleep", "300"]);
    assert_one_line(&e.c(&["update", "--restart", "always", &rm]), 125, &["AutoRemove"]);
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

/// A copy of the busybox archive whose image config has `healthcheck` (loaded as `tag`).
fn image_with_healthcheck(e: &Eng, tag: &str, healthcheck: serde_json::Value) {
    use crate::common::images::{sha256_bytes, tool};
    use std::process::Command;
    let (a, _) = crate::container::archives();
    let d = e.ctx.tempdir("hc-image");
    tool(Command::new("tar").arg("-C").arg(&d).arg("-xf").arg(a));
    let mut manifest: serde_json::Value = serde_json::from_slice(&fs::read(d.join("manifest.json")).unwrap()).unwrap();
    let old = manifest[0]["Config"].as_str().unwrap().to_string();
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(d.join(&old)).unwrap()).unwrap();
    cfg["config"]["Healthcheck"] = healthcheck;
    let data = serde_json::to_vec(&cfg).unwrap();
    let name = format!("{}.json", sha256_bytes(&data));
    fs::remove_file(d.join(&old)).unwrap();
    fs::write(d.join(&name), &data).unwrap();
    manifest[0]["Config"] = name.clone().into();
    manifest[0]["RepoTags"] = serde_json::json!([tag]);
    fs::write(d.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = e.ctx.dir.join("hc-image.tar");
    tool(Command::new("tar").arg("-C").arg(&d).arg("-cf").arg(&out).arg("."));
    e.cmd(&["image", "load", "-i", out.to_str().unwrap()]).ok();
}

fn health_of(e: &Eng, id: &str) -> serde_json::Value {
    e.inspect(id)["State"]["Health"].clone()
}

#[test]
fn health_checks_run_in_the_container_and_change_state() {
    let e = Eng::new("cli-health");
    let t0 =
        format!("{:.3}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64());
    let id = e.run_d(&[
        "--health-cmd",
        "echo probe-ran; test -f /tmp/ok",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(
        e.inspect(&id)["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "echo probe-ran; test -f /tmp/ok"])
    );
    let mut last = serde_json::Value::Null;
    let ok = wait_until(Duration::from_secs(10), || {
        last = health_of(&e, &id);
        last["Status"] == "unhealthy"
    });
    assert!(ok, "never unhealthy: {last}");
    assert!(last["FailingStreak"].as_i64().unwrap() >= 2, "{last}");
    let probe = &last["Log"][0];
    assert_eq!(probe["ExitCode"], 1, "{last}");
    assert_eq!(probe["Output"], "probe-ran\n", "the check runs inside the container: {last}");
    let ls = e.c(&["ls", "--filter", "health=unhealthy", "--format", "{{.ID}} {{.Status}}"]);
    assert!(ls.stdout.contains(&id[..12]) && ls.stdout.contains("(unhealthy)"), "{ls}");

    e.c(&["exec", &id, "touch", "/tmp/ok"]).ok();
    let ok = wait_until(Duration::from_secs(10), || {
        last = health_of(&e, &id);
        last["Status"] == "healthy"
    });
    assert!(ok, "never healthy: {last}");
    assert_eq!(last["FailingStreak"], 0);
    assert!(last["Log"].as_array().unwrap().len() <= 5, "docker keeps the last 5 results: {last}");
    let ls = e.c(&["ls", "--filter", &format!("id={id}")]);
    assert!(ls.stdout.contains("(healthy)"), "{ls}");

    // Both changes are events.
    let now =
        format!("{:.3}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64());
    let ev = e.cmd(&[
        "events",
        "--since",
        &t0,
        "--until",
        &now,
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}}",
    ]);
    ev.ok();
    assert_eq!(ev.lines(), vec!["health_status: unhealthy", "health_status: healthy"], "{ev}");

    // A timeout counts as a failure with docker's message.
    let slow = e.run_d(&[
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "300",
    ]);
    let ok = wait_until(Duration::from_secs(10), || {
        last = health_of(&e, &slow);
        last["Status"] == "unhealthy"
    });
    assert!(ok, "a timed-out check never made it unhealthy: {last}");
    assert!(last["Log"][0]["Output"].as_str().unwrap().contains("exceeded timeout"), "{last}");
}

#[test]
fn image_healthcheck_applies_unless_disabled() {
    let e = Eng::new("cli-health-img");
    let tag = format!("berth-test/health{}:latest", std::process::id());
    image_with_healthcheck(&e, &tag, serde_json::json!({"Test": ["CMD", "true"], "Interval": 200_000_000i64}));
    let id = e.run_d(&[&tag, "sleep", "300"]);
    let mut last = serde_json::Value::Null;
    let ok = wait_until(Duration::from_secs(10), || {
        last = health_of(&e, &id);
        last["Status"] == "healthy"
    });
    assert!(ok, "the image's HEALTHCHECK did not run: {last}");
    // Flags override single fields of the image's check.
    let id2 = e.run_d(&["--health-cmd", "false", "--health-retries", "1", &tag, "sleep", "300"]);
    let ok = wait_until(Duration::from_secs(10), || {
        last = health_of(&e, &id2);
        last["Status"] == "unhealthy"
    });
    assert!(ok, "--health-cmd did not override: {last}");
    assert_eq!(e.inspect(&id2)["Config"]["Healthcheck"]["Interval"], 200_000_000i64);
    let off = e.run_d(&["--no-healthcheck", &tag, "sleep", "300"]);
    std::thread::sleep(Duration::from_millis(700));
    assert!(health_of(&e, &off).is_null(), "--no-healthcheck: {}", e.inspect(&off));
    let st = e.c(&["ls", "--filter", &format!("id={off}"), "--format", "{{.Status}}"]);
    assert!(st.stdout.starts_with("Up") && !st.stdout.contains("health"), "{st}");
    assert_one_line(
        &e.c(&["run", "--rm", "--health-interval", "10parsecs", "busybox", "true"]),
        125,
        &["--health-interval"],
    );
    assert_one_line(
        &e.c(&["run", "--rm", "--no-healthcheck", "--health-cmd", "true", "busybox", "true"]),
        125,
        &["--no-healthcheck"],
    );
}

#[test]
fn events_record_the_lifecycle_and_follow() {
    let e = Eng::new("cli-events");
    let secs = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let t0 = format!("{:.3}", secs());
    let name = format!("ev-{}", std::process::id());
    // A follower that stops by itself 6 seconds from now.
    let until = format!("{:.3}", secs() + 6.0);
    let follow = e.ctx.spawn_cmd(e.command(&[
        "events",
        "--filter",
        &format!("container={name}"),
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    let id = e.run_d(&["--name", &name, "--label", "tier=web", "busybox", "sleep", "300"]);
    e.c(&["pause", &name]).ok();
    e.c(&["unpause", &name]).ok();
    e.c(&["stop", "-t", "1", &name]).ok();
    e.c(&["rm", &name]).ok();
    let t1 = format!("{:.3}", secs());
    let past = e.cmd(&["events", "--since", &t0, "--until", &t1, "--filter", &format!("container={id}")]);
    past.ok();
    let actions: Vec<String> =
        past.lines().iter().map(|l| l.split_whitespace().nth(2).unwrap_or("").to_string()).collect();
    assert_eq!(actions, vec!["create", "start", "pause", "unpause", "kill", "die", "stop", "destroy"], "{past}");
    let first = &past.lines()[0];
    assert!(
        first.contains(&format!("container create {id} ("))
            && first.contains(&format!("name={name}"))
            && first.contains("tier=web"),
        "{first}"
    );
    // docker's time: RFC 3339 with nanoseconds.
    assert_eq!(first.split_whitespace().next().unwrap().len(), "2026-01-01T00:00:00.000000000Z".len(), "{first}");
    // JSON, and filters that AND across keys and OR within one.
    let js = e.cmd(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--filter",
        "event=die",
        "--filter",
        "event=start",
        "--filter",
        "label=tier=web",
        "--format",
        "{{json .}}",
    ]);
    js.ok();
    let v: Vec<serde_json::Value> = js.lines().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(v.len(), 2, "{js}");
    assert_eq!(v[0]["Action"], "start");
    assert_eq!(v[0]["Type"], "container");
    assert_eq!(v[0]["Actor"]["ID"], id);
    // sleep as pid 1 ignores SIGTERM: killed after the 1s timeout.
    assert_eq!(v[1]["Actor"]["Attributes"]["exitCode"], "137");
    assert!(v[1]["timeNano"].as_i64().unwrap() >= v[0]["timeNano"].as_i64().unwrap());
    // The follower saw them as they happened, and ended at --until.
    let f = follow.wait(Duration::from_secs(15));
    f.ok();
    assert_eq!(f.lines().first().map(String::as_str), Some(format!("container create {name}").as_str()), "{f}");
    assert!(f.lines().iter().any(|l| l == &format!("container destroy {name}")), "{f}");
    // Volumes and networks have theirs.
    let t2 = format!("{:.3}", secs());
    let vname = format!("evvol{}", std::process::id());
    let nname = format!("evnet{}", std::process::id());
    e.cmd(&["volume", "create", &vname]).ok();
    e.cmd(&["volume", "rm", &vname]).ok();
    e.cmd(&["network", "create", &nname]).ok();
    e.cmd(&["network", "rm", &nname]).ok();
    // An anonymous volume of a --rm run: made and removed with it.
    e.c(&["run", "--rm", "-v", "/anon", "busybox", "true"]).ok();
    let t3 = format!("{:.3}", secs());
    let o = e.cmd(&[
        "events",
        "--since",
        &t2,
        "--until",
        &t3,
        "--filter",
        "type=volume",
        "--filter",
        "type=network",
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    assert_eq!(
        o.lines(),
        ["volume create", "volume destroy", "network create", "network destroy", "volume create", "volume destroy"],
        "{o}"
    );
    let o = e.cmd(&[
        "events",
        "--since",
        &t2,
        "--until",
        &t3,
        "--filter",
        &format!("network={nname}"),
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(o.lines(), ["create", "destroy"], "{o}");
    // Bad input: one line, 125.
    assert_one_line(&e.cmd(&["events", "--filter", "colour=red", "--until", &t1]), 125, &["colour"]);
    assert_one_line(&e.cmd(&["events", "--since", "yesterday", "--until", &t1]), 125, &["yesterday"]);
    assert_one_line(&e.cmd(&["events", "--format", "{{.Nope", "--until", &t1]), 125, &["template"]);
}

#[test]
fn system_df_info_and_prune() {
    let e = Eng::new("cli-system");
    let df = |e: &Eng| -> Vec<serde_json::Value> {
        let o = e.cmd(&["system", "df", "--format", "{{json .}}"]);
        o.ok();
        o.lines().iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let d0 = df(&e);
    assert_eq!(
        d0.iter().map(|r| r["Type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["Images", "Containers", "Local Volumes", "Build Cache"]
    );
    assert_eq!(d0[0]["TotalCount"], 1);
    assert_eq!(d0[0]["Active"], 0);
    assert_eq!(d0[1]["TotalCount"], 0);
    // A running container that wrote 2 MB to its rootfs, a stopped one with an anonymous volume.
    let run = e.run_d(&["busybox", "sh", "-c", "dd if=/dev/zero of=/big bs=1k count=2048 2>/dev/null; sleep 300"]);
    let stopped =
        e.run_d(&["-v", "/vol", "busybox", "sh", "-c", "dd if=/dev/zero of=/vol/f bs=1k count=1024 2>/dev/null"]);
    e.wait_status(&stopped, "exited", Duration::from_secs(10));
    let ok = wait_until(Duration::from_secs(10), || {
        df(&e)[1]["Size"].as_str().is_some_and(|s| s.ends_with("MB") && s.starts_with('2'))
    });
    let d1 = df(&e);
    assert!(ok, "container size: {d1:?}");
    assert_eq!(d1[0]["Active"], 1);
    assert_eq!((d1[1]["TotalCount"].as_i64(), d1[1]["Active"].as_i64()), (Some(2), Some(1)));
    assert_eq!((d1[2]["TotalCount"].as_i64(), d1[2]["Active"].as_i64()), (Some(1), Some(1)));
    assert!(d1[2]["Size"].as_str().unwrap().starts_with("1."), "{d1:?}");
    let table = e.cmd(&["system", "df"]);
    table.ok();
    assert!(table.lines()[0].starts_with("TYPE            TOTAL     ACTIVE    SIZE"), "{table}");

    let info = e.cmd(&[
        "system",
        "info",
        "--format",
        "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}} {{.Driver}} {{.CgroupVersion}}",
    ]);
    info.ok();
    let cgv = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" };
    assert_eq!(info.stdout.trim(), format!("2 1 1 1 overlay {cgv}"));
    assert_eq!(e.cmd(&["info", "--format", "{{.ContainersRunning}}"]).stdout, "1\n");
    let text = e.cmd(&["system", "info"]);
    text.ok();
    assert!(text.stdout.contains(" Containers: 2\n  Running: 1\n  Paused: 0\n  Stopped: 1\n"), "{text}");

    // prune: the stopped container; --volumes its anonymous volume; -a the image only when
    // nothing uses it.
    let o = e.cmd(&["system", "prune", "-f", "-a", "--volumes"]);
    o.ok();
    assert!(o.stdout.starts_with(&format!("Deleted Containers:\n{stopped}\n\nDeleted Volumes:\n")), "{o}");
    assert!(!o.stdout.contains("Deleted Images:"), "the image is in use: {o}");
    assert!(o.lines().last().unwrap().starts_with("Total reclaimed space: "), "{o}");
    assert_eq!(e.c(&["ls", "-aq", "--no-trunc"]).stdout.trim(), run);
    assert_eq!(df(&e)[2]["TotalCount"], 0);
    e.c(&["rm", "-f", &run]).ok();
    let o = e.cmd(&["system", "prune", "-a"]);
    o.ok();
    assert!(o.stdout.contains("Deleted Images:\nuntagged: busybox:latest\ndeleted: sha256:"), "{o}");
    assert_eq!(df(&e)[0]["TotalCount"], 0);
}

/// The json-file entries of a log file (plain or gzip).
fn entries(p: &std::path::Path) -> Vec<serde_json::Value> {
    let data = fs::read(p).unwrap();
    let data = if p.extension().is_some_and(|e| e == "gz") {
        let mut d = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut d).unwrap();
        d
    } else {
        data
    };
    data.split(|&c| c == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
}

/// One entry of docker's `local` log format, read with a protobuf reader of the test's own.
#[derive(Debug, Clone, PartialEq)]
struct LocalEntry {
    source: String,
    time_nano: i64,
    line: Vec<u8>,
    partial: bool,
    /// (last, id, ordinal)
    meta: Option<(bool, String, i64)>,
}

fn varint(b: &mut &[u8]) -> u64 {
    let mut v = 0;
    for i in 0.. {
        let c = b[0];
        *b = &b[1..];
        v |= ((c & 0x7f) as u64) << (7 * i);
        if c < 0x80 {
            break;
        }
    }
    v
}

/// (field, wire type, varint value or bytes) of each field of a message.
fn fields(mut b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let k = varint(&mut b);
        match k & 7 {
            0 => v.push((k >> 3, 0, varint(&mut b).to_le_bytes().to_vec())),
            2 => {
                let n = varint(&mut b) as usize;
                v.push((k >> 3, 2, b[..n].to_vec()));
                b = &b[n..];
            }
            w => panic!("wire type {w}"),
        }
    }
    v
}

/// The entries of a local log file: [len BE u32][LogEntry][len BE u32]...
fn local_entries(mut data: &[u8]) -> Vec<LocalEntry> {
    let mut v = Vec::new();
    while !data.is_empty() {
        let n = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        assert_eq!(data[4 + n..8 + n], data[..4], "length suffix");
        let mut e = LocalEntry { source: String::new(), time_nano: 0, line: vec![], partial: false, meta: None };
        let num = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
        for (f, _, b) in fields(&data[4..4 + n]) {
            match f {
                1 => e.source = String::from_utf8(b).unwrap(),
                2 => e.time_nano = num(&b) as i64,
                3 => e.line = b,
                4 => e.partial = num(&b) != 0,
                5 => {
                    let mut m = (false, String::new(), 0);
                    for (f, _, b) in fields(&b) {
                        match f {
                            1 => m.0 = num(&b) != 0,
                            2 => m.1 = String::from_utf8(b).unwrap(),
                            3 => m.2 = num(&b) as i64,
                            _ => panic!("meta field {f}"),
                        }
                    }
                    e.meta = Some(m);
                }
                _ => panic!("field {f}"),
            }
        }
        v.push(e);
        data = &data[8 + n..];
    }
    v
}

/// The same output logged by a private dockerd 20.10 with `--log-driver local` and by berth:
/// the files hold the same entries but for times and partial-line ids (lines without their
/// newline, a 40000-byte line in 16 KiB pieces sharing an id and a time, an unfinished last
/// line); berth's `logs` reads dockerd's file as `docker logs` does (with timestamps, --tail,
/// --until) and dockerd reads berth's file as berth does.
#[test]
fn local_log_files_match_dockerd() {
    let e = Eng::new("cli-locallog");
    let d = crate::layers::Dockerd::start(&e.ctx);
    let (archive, _) = crate::container::archives();
    let both = |mut c: std::process::Command| {
        let o = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).output().unwrap();
        assert!(o.status.success(), "{c:?}: {}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
    };
    both(d.docker(&["load", "-i", archive.to_str().unwrap()]));
    let script =
        "echo one; echo; echo err >&2; head -c 40000 /dev/zero | tr '\\0' x; echo; echo 'a\\tb <&>'; printf tail";
    let run = ["--network", "none", "--log-driver", "local", "busybox", "sh", "-c", script];
    let mut dargs = vec!["run", "-d"];
    dargs.extend_from_slice(&run);
    let did = both(d.docker(&dargs)).0.trim().to_string();
    both(d.docker(&["wait", &did]));
    let bid = e.run_d(&run);
    e.wait_status(&bid, "exited", Duration::from_secs(20));
    let dlog = d.data_root().join("containers").join(&did).join("local-logs/container.log");
    let blog = e.data.join("containers").join(&bid).join("container.log");
    let (dbytes, bbytes) = (fs::read(&dlog).unwrap(), fs::read(&blog).unwrap());
    let (dents, bents) = (local_entries(&dbytes), local_entries(&bbytes));
    // Per stream (the two streams' order between each other is the scheduler's).
    // (line length, its start, partial, (last, id length, ordinal))
    type View = (usize, String, bool, Option<(bool, usize, i64)>);
    let view = |v: &[LocalEntry], s: &str| -> Vec<View> {
        v.iter()
            .filter(|x| x.source == s)
            .map(|x| {
                let start = String::from_utf8_lossy(&x.line[..x.line.len().min(16)]).into_owned();
                (x.line.len(), start, x.partial, x.meta.as_ref().map(|m| (m.0, m.1.len(), m.2)))
            })
            .collect()
    };
    for s in ["stdout", "stderr"] {
        assert_eq!(view(&bents, s), view(&dents, s), "{s} entries: berth's vs dockerd's");
    }
    assert!(view(&dents, "stdout").iter().any(|x| x.2), "dockerd wrote partial entries");
    for v in [&dents, &bents] {
        let pieces: Vec<&LocalEntry> = v.iter().filter(|x| x.partial).collect();
        assert!(pieces.windows(2).all(|w| w[0].time_nano == w[1].time_nano || w[1].meta.as_ref().unwrap().2 == 1));
        assert!(v.iter().all(|x| x.time_nano > 1_700_000_000_000_000_000));
    }

    let dlogs = |args: &[&str]| {
        let mut a = vec!["logs"];
        a.extend_from_slice(args);
        a.push(&did);
        both(d.docker(&a))
    };
    let blogs = |args: &[&str]| {
        let mut a = vec!["logs"];
        a.extend_from_slice(args);
        a.push(&bid);
        let o = e.c(&a);
        o.ok();
        (o.stdout.clone(), o.stderr.clone())
    };
    // Long runs of x shortened in messages.
    let short = |(o, e): (String, String)| (o.replace(&"x".repeat(1000), "<x1000>"), e);
    // Each reads its own file to the same text.
    let (dplain, bplain) = (dlogs(&[]), blogs(&[]));
    assert_eq!(short(bplain), short(dplain), "logs of the same output");
    let (dstamped, bstamped) = (dlogs(&["-t"]), blogs(&["-t"]));
    // berth reads dockerd's file, dockerd reads berth's: byte for byte, times included.
    fs::write(&blog, &dbytes).unwrap();
    assert_eq!(short(blogs(&["-t"])), short(dstamped), "berth reading dockerd's file");
    for tail in ["1", "3", "5"] {
        assert_eq!(short(blogs(&["--tail", tail])), short(dlogs(&["--tail", tail])), "--tail {tail} of dockerd's file");
    }
    let third = dents.iter().filter(|x| x.source == "stdout").nth(2).unwrap().time_nano;
    let until = format!("{}.{:09}", third / 1_000_000_000, third % 1_000_000_000);
    assert_eq!(short(blogs(&["--until", &until])), short(dlogs(&["--until", &until])), "--until {until}");
    fs::write(&dlog, &bbytes).unwrap();
    assert_eq!(short(dlogs(&["-t"])), short(bstamped), "dockerd reading berth's file");
    both(d.docker(&["rm", &did]));
}

/// json-file's `attrs` for `labels`, `labels-regex`, `env`, `env-regex` and `tag`, against a
/// private dockerd 20.10 running the same container with the same options (image labels and
/// env count, keys listed but unset are left out, a later match of a key wins); options
/// dockerd refuses for `local` are refused by berth too; a bad regex is one line and nothing.
#[test]
fn json_file_attrs_match_dockerd() {
    let e = Eng::new("cli-logattrs");
    e.load_extra();
    let d = crate::layers::Dockerd::start(&e.ctx);
    let (archive, extra) = crate::container::archives();
    for a in [archive, extra] {
        let o = d.docker(&["load", "-i", a.to_str().unwrap()]).status().unwrap();
        assert!(o.success());
    }
    let first_attrs = |p: &std::path::Path| -> serde_json::Value {
        let v = entries(p);
        assert!(!v.is_empty(), "{}", p.display());
        v[0].get("attrs").cloned().unwrap_or(serde_json::Value::Null)
    };
    let cases: &[&[&str]] = &[
        &["--log-opt", "labels=tier,missing,org.example.kind", "--log-opt", "env=FOO,NOPE,PATH"],
        &["--log-opt", "labels-regex=^t"],
        &["--log-opt", "labels=tier", "--log-opt", "labels-regex=^(t|org)"],
        &["--log-opt", "env-regex=^BA", "--log-opt", "env=FOO"],
        &["--log-opt", "env-regex=O$", "--log-opt", "tag={{.Name}}|{{.ImageName}}"],
        &["--log-opt", "labels=tier", "--log-opt", "env=tier", "--log-opt", "tag=x"],
        &["--log-opt", "labels-regex=", "--log-opt", "env-regex="],
    ];
    for (i, opts) in cases.iter().enumerate() {
        let name = format!("lattr-{}-{i}", std::process::id());
        let mut args = vec!["--name", name.as_str(), "--network", "none", "--label", "tier=web", "--label", "team=a"];
        args.extend_from_slice(&["-e", "FOO=1", "-e", "BAR=2", "-e", "BAZ=3", "-e", "tier=env"]);
        args.extend_from_slice(opts);
        args.extend_from_slice(&["berth-test/extra:latest", "echo", "hi"]);
        let mut dargs = vec!["run", "-d"];
        dargs.extend_from_slice(&args);
        let o = d.docker(&dargs).stdout(std::process::Stdio::piped()).output().unwrap();
        assert!(o.status.success(), "docker {dargs:?}");
        let did = String::from_utf8(o.stdout).unwrap().trim().to_string();
        assert!(d.docker(&["wait", &did]).status().unwrap().success());
        let bid = e.run_d(&args);
        e.wait_status(&bid, "exited", Duration::from_secs(20));
        let theirs = first_attrs(&d.data_root().join("containers").join(&did).join(format!("{did}-json.log")));
        let ours = first_attrs(&e.data.join("containers").join(&bid).join("container.log"));
        assert_eq!(ours, theirs, "attrs for {opts:?}");
        // Every case but the empty regexes gives dockerd attrs to compare.
        assert_eq!(theirs.as_object().is_some_and(|m| !m.is_empty()), i + 1 < cases.len(), "{theirs}");
        let ours_raw = fs::read_to_string(e.data.join("containers").join(&bid).join("container.log")).unwrap();
        let theirs_raw =
            fs::read_to_string(d.data_root().join("containers").join(&did).join(format!("{did}-json.log"))).unwrap();
        let cut = |s: &str| s.split("\"time\"").next().unwrap_or("").to_string();
        assert_eq!(cut(&ours_raw), cut(&theirs_raw), "entry bytes up to the time for {opts:?}");
    }
    // What dockerd refuses for local, berth refuses (one line, nothing made).
    let before = e.container_dirs();
    for opt in ["labels=tier", "labels-regex=x", "env=FOO", "env-regex=x", "tag=x"] {
        let run = ["run", "--network", "none", "--log-driver", "local", "--log-opt", opt, "busybox", "true"];
        let theirs = d.docker(&run).status().unwrap().success();
        let o = e.c(&run);
        assert!(!theirs, "dockerd 20.10's local driver has only max-size, max-file, compress");
        assert_eq!(o.code == 0, theirs, "local --log-opt {opt}: {o}");
        if !theirs {
            let key = opt.split('=').next().unwrap();
            assert_one_line(&o, 125, &[&format!("unknown log opt '{key}'")]);
        }
    }
    for opt in ["labels-regex=(", "env-regex=[a-"] {
        assert_one_line(&e.c(&["run", "--log-opt", opt, "busybox", "true"]), 125, &["invalid log opt", opt]);
    }
    assert_eq!(e.container_dirs(), before);
}

#[test]
fn log_drivers_rotate_compress_and_tag() {
    let e = Eng::new("cli-logs");
    // 300 lines of ~100 bytes in files of at most 4 kB, 3 kept, rotated ones gzipped.
    let id = e.run_d(&[
        "--name",
        &format!("lg-{}", std::process::id()),
        "--label",
        "tier=web",
        "--log-opt",
        "max-size=4k",
        "--log-opt",
        "max-file=3",
        "--log-opt",
        "compress=true",
        "--log-opt",
        "labels=tier",
        "--log-opt",
        "tag={{.Name}}/{{.ID}}",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i-padding-padding-padding-padding-padding-padding-padding-padding-padding-pad; i=$((i+1)); done",
    ]);
    e.wait_status(&id, "exited", Duration::from_secs(20));
    let log = e.data.join("containers").join(&id).join("container.log");
    let cur = fs::metadata(&log).unwrap().len();
    assert!(cur <= 4096, "current file {cur} bytes");
    let r1 = log.with_extension("log.1.gz");
    let r2 = log.with_extension("log.2.gz");
    assert!(r1.exists() && r2.exists(), "rotated files");
    assert!(!log.with_extension("log.3.gz").exists() && !log.with_extension("log.1").exists());
    let first = &entries(&r1)[0];
    assert_eq!(first["attrs"]["tier"], "web", "{first}");
    assert_eq!(first["attrs"]["tag"], format!("lg-{}/{}", std::process::id(), &id[..12]));
    // logs reads the rotated files too, oldest first, and ends with the last line.
    let o = e.c(&["logs", &id]);
    o.ok();
    let lines = o.lines();
    let kept = entries(&r2).len() + entries(&r1).len() + entries(&log).len();
    assert_eq!(lines.len(), kept, "{o}");
    assert!(lines.last().unwrap().starts_with("line-299-"));
    let n: Vec<usize> = lines.iter().map(|l| l.split('-').nth(1).unwrap().parse().unwrap()).collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "in order, no gaps");
    let tail = e.c(&["logs", "--tail", "50", &id]);
    assert_eq!(tail.lines(), lines[lines.len() - 50..].to_vec());

    // none: nothing written, logs refused; local: docker's defaults shown in inspect.
    let none = e.run_d(&["--log-driver", "none", "busybox", "echo", "hidden"]);
    e.wait_status(&none, "exited", Duration::from_secs(10));
    assert!(!e.data.join("containers").join(&none).join("container.log").exists());
    assert_one_line(&e.c(&["logs", &none]), 125, &["does not support reading"]);
    let local = e.run_d(&["--log-driver", "local", "busybox", "echo", "kept"]);
    e.wait_status(&local, "exited", Duration::from_secs(10));
    assert_eq!(e.c(&["logs", &local]).stdout, "kept\n");
    assert_eq!(e.inspect(&local)["HostConfig"]["LogConfig"]["Type"], "local");
    // local rotates too: docker's frames in every file, the rotated ones gzipped.
    let local = e.run_d(&[
        "--log-driver",
        "local",
        "--log-opt",
        "max-size=4k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i-padding-padding-padding-padding-padding-padding-padding-padding-padding-pad; i=$((i+1)); done",
    ]);
    e.wait_status(&local, "exited", Duration::from_secs(20));
    let log = e.data.join("containers").join(&local).join("container.log");
    assert!(fs::metadata(&log).unwrap().len() <= 4096);
    let mut z = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&fs::read(log.with_extension("log.2.gz")).unwrap()[..]),
        &mut z,
    )
    .unwrap();
    let first = &local_entries(&z)[0];
    assert_eq!(first.source, "stdout");
    assert!(first.line.starts_with(b"line-") && !first.line.ends_with(b"\n"));
    assert!(!log.with_extension("log.3.gz").exists());
    let lines = e.c(&["logs", &local]).lines();
    assert!(lines.len() > 60 && lines.last().unwrap().starts_with("line-299-"), "{lines:?}");
    let n: Vec<usize> = lines.iter().map(|l| l.split('-').nth(1).unwrap().parse().unwrap()).collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "in order, no gaps");
    assert_eq!(e.c(&["logs", "--tail", "40", &local]).lines(), lines[lines.len() - 40..].to_vec());
    // -f follows a local log until the container ends.
    let local = e.run_d(&["--log-driver", "local", "busybox", "sh", "-c", "echo a; sleep 1; printf 'b\\nc'"]);
    let f = e.c(&["logs", "-f", &local]);
    f.ok();
    assert_eq!(f.stdout, "a\nb\nc", "{f}");

    let before = e.container_dirs();
    assert_one_line(
        &e.c(&["run", "--log-opt", "colour=red", "busybox", "true"]),
        125,
        &["unknown log opt 'colour' for json-file log driver"],
    );
    assert_one_line(
        &e.c(&["run", "--log-driver", "local", "--log-opt", "tag=x", "busybox", "true"]),
        125,
        &["unknown log opt 'tag' for local"],
    );
    assert_one_line(
        &e.c(&["run", "--log-driver", "fluentd", "busybox", "true"]),
        125,
        &["no log driver named 'fluentd'"],
    );
    assert_one_line(&e.c(&["run", "--log-opt", "max-file=3", "busybox", "true"]), 125, &["max-size"]);
    assert_one_line(&e.c(&["run", "--log-opt", "max-size=lots", "busybox", "true"]), 125, &["max-size"]);
    assert_eq!(e.container_dirs(), before);
}

#[test]
fn login_writes_the_auth_file_pull_reads_and_logout_removes_it() {
    use crate::common::images::Eng as ImgEng;
    use crate::common::registry::RegistryOpts;
    use crate::common::Ctx;
    let ctx = Ctx::new("cli-login");
    let (reg, _m, _c) = crate::image::registry_with_busybox(
        &ctx,
        RegistryOpts { basic_auth: Some(("carol".into(), "pw-123".into())), ..Default::default() },
    );
    let eng = ImgEng::new(&ctx);
    let auth = ctx.dir.join("docker/config.json");
    fs::create_dir_all(auth.parent().unwrap()).unwrap();
    fs::write(&auth, r#"{"auths":{"other.example:5000":{"auth":"eDp5"}},"psFormat":"table {{.ID}}"}"#).unwrap();
    let a = auth.to_str().unwrap();
    // A wrong password is refused by the registry and writes nothing.
    let o = eng.cmd(&["login", "--insecure", "--authfile", a, "-u", "carol", "-p", "wrong", &reg.host]);
    assert_eq!(o.code, 1, "{o}");
    o.one_line_error(&["401"]);
    assert!(!fs::read_to_string(&auth).unwrap().contains(&reg.host));
    // The right one (from stdin) is stored docker's way, other keys kept.
    let mut c = eng.command(&["login", "--insecure", "--authfile", a, "-u", "carol", "--password-stdin", &reg.host]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"pw-123\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&auth).unwrap()).unwrap();
    assert_eq!(v["auths"][&reg.host]["auth"], "Y2Fyb2w6cHctMTIz", "base64 of carol:pw-123: {v}");
    assert_eq!(v["psFormat"], "table {{.ID}}");
    assert_eq!(v["auths"]["other.example:5000"]["auth"], "eDp5");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&auth).unwrap().permissions().mode() & 0o777, 0o600);
    // pull reads it (here through DOCKER_CONFIG, as docker's CLI does).
    let r = reg.reference("berth/busybox:v1");
    let mut p = eng.command(&["image", "pull", "--insecure", &r]);
    p.env("DOCKER_CONFIG", auth.parent().unwrap()).env_remove("REGISTRY_AUTH_FILE");
    let o = ctx.exec_cmd(p, Duration::from_secs(120));
    o.ok();
    let o = eng.cmd(&["logout", "--authfile", a, &reg.host]);
    o.ok();
    assert_eq!(o.stdout, format!("Removing login credentials for {}\n", reg.host));
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&auth).unwrap()).unwrap();
    assert!(v["auths"].get(&reg.host).is_none() && v["auths"]["other.example:5000"].is_object(), "{v}");
    assert_eq!(eng.cmd(&["logout", "--authfile", a, &reg.host]).stdout, format!("Not logged in to {}\n", reg.host));
}

#[test]
fn run_flags_cidfile_labels_annotations_volumes_from_link() {
    let e = Eng::new("cli-flags");
    let cid = e.ctx.dir.join("cid");
    let lf = e.ctx.dir.join("labels");
    fs::write(&lf, "a=1\n# a comment\n\nb=2\n").unwrap();
    let id = e.run_d(&[
        "--cidfile",
        cid.to_str().unwrap(),
        "--label-file",
        lf.to_str().unwrap(),
        "--label",
        "b=3",
        "--annotation",
        "org.example.note=hello",
        "--domainname",
        "example.test",
        "--userns",
        "host",
        "-q",
        "--platform",
        &format!("linux/{}", crate::common::images::host_arch()),
        "-v",
        "/data",
        "busybox",
        "sh",
        "-c",
        "echo shared > /data/f; sleep 300",
    ]);
    assert_eq!(fs::read_to_string(&cid).unwrap(), id);
    let labels = &e.inspect(&id)["Config"]["Labels"];
    assert_eq!((labels["a"].as_str(), labels["b"].as_str()), (Some("1"), Some("3")), "{labels}");
    let cfg: serde_json::Value =
        serde_json::from_slice(&fs::read(e.data.join("containers").join(&id).join("bundle/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["annotations"]["org.example.note"], "hello");
    let dn = e.c(&["exec", &id, "cat", "/proc/sys/kernel/domainname"]);
    assert_eq!(dn.stdout.trim(), "example.test", "{dn}");
    // The same cidfile again: refused before anything is made.
    let before = e.container_dirs();
    assert_one_line(
        &e.c(&["run", "-d", "--cidfile", cid.to_str().unwrap(), "busybox", "true"]),
        125,
        &["container ID file found"],
    );
    for (flags, words) in [
        (vec!["--storage-opt", "size=10G"], vec!["--storage-opt"]),
        (vec!["--userns", "private"], vec!["--userns"]),
        (vec!["--runtime", "nosuch"], vec!["unknown or invalid runtime name: nosuch"]),
        (vec!["--platform", "linux/s390x"], vec!["platform"]),
        (vec!["--volumes-from", "nosuch-container"], vec!["nosuch-container"]),
        (vec!["--link", "nosuch-container:db"], vec!["nosuch-container"]),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend(flags);
        a.extend(["busybox", "true"]);
        assert_one_line(&e.c(&a), 125, &words);
    }
    assert_eq!(e.container_dirs(), before);

    // --volumes-from: the other container's anonymous volume, read-only here.
    let o = e.c(&[
        "run",
        "--rm",
        "--volumes-from",
        &format!("{id}:ro"),
        "busybox",
        "sh",
        "-c",
        "cat /data/f; touch /data/g",
    ]);
    assert_eq!(o.stdout, "shared\n", "{o}");
    assert_ne!(o.code, 0, "the volume is read-only: {o}");
    // --link: the other container's address under the alias and its name.
    let ip = e.inspect(&id)["NetworkSettings"]["IPAddress"].as_str().unwrap().to_string();
    let name = e.inspect(&id)["Name"].as_str().unwrap().trim_start_matches('/').to_string();
    let o = e.c(&["run", "--rm", "--link", &format!("{name}:db"), "busybox", "cat", "/etc/hosts"]);
    o.ok();
    assert!(o.lines().iter().any(|l| l.starts_with(&ip) && l.split_whitespace().any(|w| w == "db")), "{o}");
    // --mac-address: the container's interface has it.
    let o =
        e.c(&["run", "--rm", "--mac-address", "02:42:AC:11:00:99", "busybox", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(o.stdout, "02:42:ac:11:00:99\n", "{o}");
    assert_one_line(
        &e.c(&["run", "--rm", "--mac-address", "02:42:ac:11:00", "busybox", "true"]),
        125,
        &["not a valid mac address"],
    );
    assert_one_line(
        &e.c(&["run", "--rm", "--mac-address", "03:42:ac:11:00:99", "busybox", "true"]),
        125,
        &["multicast"],
    );
    assert_one_line(
        &e.c(&["run", "--rm", "--network", "none", "--mac-address", "02:42:ac:11:00:99", "busybox", "true"]),
        125,
        &["mac-address"],
    );
    // The shared volume outlives the --rm container that used it.
    assert_eq!(e.c(&["exec", &id, "cat", "/data/f"]).stdout, "shared\n");
}

#[test]
fn format_templates_for_ls_images_inspect_and_stats() {
    let e = Eng::new("cli-format");
    let name = format!("fmt-{}", std::process::id());
    let id = e.run_d(&["--name", &name, "--label", "tier=web", "busybox", "sleep", "300"]);
    let short = &id[..12];
    let o = e.c(&["ls", "--format", "table {{.ID}}\t{{.Names}}\t{{.Image}}", "--filter", &format!("id={id}")]);
    o.ok();
    // docker's tabwriter: cells padded to the widest + 3 (at least 10).
    let w = name.len().max(5) + 3;
    assert_eq!(o.stdout, format!("CONTAINER ID   {:<w$}IMAGE\n{short}   {name:<w$}busybox\n", "NAMES"));
    let o = e.c(&["ls", "--format", "{{.Names | upper}} {{json .Labels}}", "--filter", &format!("id={id}")]);
    assert_eq!(o.stdout, format!("{} \"tier=web\"\n", name.to_uppercase()));
    let o = e.c(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{index .Config.Labels \"tier\"}} {{json .HostConfig.CpuShares}}",
        &name,
    ]);
    assert_eq!(o.stdout, "running web 0\n");
    let o = e.cmd(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(o.stdout, "busybox:latest\n");
    let o = e.cmd(&["image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", "busybox"]);
    assert_eq!(o.stdout.trim(), format!("linux/{}", crate::common::images::host_arch()));
    let o = e.c(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", &name]);
    assert_eq!(o.stdout, format!("{name} 1\n"), "{o}");
    let o = e.c(&["stats", "--no-stream", "--format", "table {{.Name}}\t{{.MemPerc}}", &name]);
    assert!(o.stdout.starts_with(&format!("NAME{}MEM %\n{name}", " ".repeat(name.len().max(6) + 3 - 4))), "{o}");
    // A bad template: one line, 125, nothing printed.
    let bad = e.c(&["ls", "--format", "{{.ID"]);
    assert_one_line(&bad, 125, &["template"]);
    assert_one_line(&e.c(&["inspect", "--format", "{{nosuchfunc .ID}}", &name]), 125, &["nosuchfunc"]);
}

#[test]
fn runtime_flag_runs_the_container_with_a_configured_runtime() {
    let Some(runc) = ["/usr/sbin/runc", "/usr/bin/runc"].into_iter().find(|p| std::path::Path::new(p).exists()) else {
        eprintln!("runc not installed: skipped");
        return;
    };
    let e = Eng::new("cli-runtime");
    fs::write(e.data.join("runtimes.json"), format!(r#"{{"runc": {{"path": "{runc}"}}}}"#)).unwrap();
    let id = e.run_d(&["--runtime", "runc", "--cpu-shares", "768", "busybox", "sleep", "300"]);
    // runc holds the container (its own state root), not berth.
    let rroot = e.ctx.root.join("runtimes/runc");
    let list = std::process::Command::new(runc).arg("--root").arg(&rroot).args(["list", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), id);
    assert!(!e.ctx.root.join(&id).exists(), "berth's runtime state must not hold it");
    let pid = pid_of(&e, &id);
    assert_eq!(cg_file(&pid, "cpu", "cpu.shares"), "768");
    assert_eq!(e.c(&["exec", &id, "echo", "via-runc"]).stdout, "via-runc\n");
    e.c(&["update", "--cpu-shares", "300", &id]).ok();
    assert_eq!(cg_file(&pid, "cpu", "cpu.shares"), "300");
    e.c(&["pause", &id]).ok();
    assert_eq!(e.status(&id), "paused");
    e.c(&["unpause", &id]).ok();
    e.c(&["stop", "-t", "1", &id]).ok();
    assert_eq!(e.status(&id), "exited");
    e.c(&["rm", &id]).ok();
    e.assert_gone(&id);
    let list = std::process::Command::new(runc).arg("--root").arg(&rroot).args(["list", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "");
    assert_one_line(
        &e.c(&["run", "--rm", "--runtime", "crunchy", "busybox", "true"]),
        125,
        &["unknown or invalid runtime name: crunchy"],
    );
}

#[test]
fn attach_flag_selects_the_streams() {
    let e = Eng::new("cli-attach");
    let o = e.c(&["run", "--rm", "-a", "stderr", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (3, "", "err\n"), "{o}");
    let o = e.c(&["run", "--rm", "-a", "STDOUT", "busybox", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "out\n", ""), "{o}");
    let before = e.container_dirs();
    assert_one_line(&e.c(&["run", "-d", "-a", "stdout", "busybox", "true"]), 125, &["--attach", "--detach"]);
    assert_one_line(&e.c(&["run", "-a", "stdvoid", "busybox", "true"]), 125, &["stdvoid"]);
    assert_eq!(e.container_dirs(), before);
}

#[test]
fn detach_keys_leave_the_container_running() {
    use std::os::unix::process::CommandExt;
    let e = Eng::new("cli-detach");
    for (keys, typed) in [(None, &b"\x10\x11"[..]), (Some("ctrl-a,x"), &b"\x01x"[..])] {
        let ws = nix::pty::Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
        let p = nix::pty::openpty(Some(&ws), None).unwrap();
        let mut args = vec!["run", "-i", "-t"];
        if let Some(k) = keys {
            args.extend(["--detach-keys", k]);
        }
        args.extend(["busybox", "sh"]);
        let mut v = vec!["container"];
        v.extend(args);
        let mut cmd = e.command(&v);
        let s = || std::process::Stdio::from(p.slave.try_clone().unwrap());
        cmd.stdin(s()).stdout(s()).stderr(s());
        // SAFETY: only async-signal-safe setsid and ioctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        // Wait for the container to run.
        let ok = wait_until(Duration::from_secs(10), || {
            let ids = e.c(&["ls", "-q"]).stdout;
            !ids.trim().is_empty()
        });
        assert!(ok, "the container did not start");
        std::thread::sleep(Duration::from_millis(300));
        // The sequence typed on the caller's terminal.
        nix::unistd::write(&p.master, typed).unwrap();
        let exited = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
        if !exited {
            let _ = child.kill();
        }
        assert!(exited, "the CLI did not detach on {typed:?}");
        assert!(child.wait().unwrap().success());
        let id = e.c(&["ls", "-q", "--no-trunc"]).stdout.trim().to_string();
        assert_eq!(e.status(&id), "running", "the container goes on after a detach");
        e.c(&["rm", "-f", &id]).ok();
    }
    assert_one_line(
        &e.c(&["run", "--rm", "-it", "--detach-keys", "ctrl-pq", "busybox", "true"]),
        125,
        &["detach keys"],
    );

    // attach, and start -a -i: the same keys leave it again.
    let id = e.run_d(&["-i", "-t", "busybox", "sh"]);
    detach_on_pty(&e, &["container", "attach", &id]);
    assert_eq!(e.status(&id), "running");
    let o = e.c(&["create", "-i", "-t", "busybox", "sh"]);
    o.ok();
    let id = o.stdout.trim().to_string();
    detach_on_pty(&e, &["container", "start", "-a", "-i", &id]);
    assert_eq!(e.status(&id), "running");
}

/// Runs berth `args` on a new pty, types ctrl-p ctrl-q, and asserts it leaves with 0.
fn detach_on_pty(e: &Eng, args: &[&str]) {
    use std::os::unix::process::CommandExt;
    let ws = nix::pty::Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    let p = nix::pty::openpty(Some(&ws), None).unwrap();
    let mut cmd = e.command(args);
    let s = || std::process::Stdio::from(p.slave.try_clone().unwrap());
    cmd.stdin(s()).stdout(s()).stderr(s());
    // SAFETY: only async-signal-safe setsid and ioctl between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    nix::unistd::write(&p.master, b"\x10\x11").unwrap();
    let exited = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    assert!(exited, "{args:?} did not detach");
    assert!(child.wait().unwrap().success(), "{args:?}");
}

/// The docker CLI's output for the same templates, through a private dockerd 20.10: ls and
/// inspect templates (tabwriter alignment, header names, functions), the event lines of the
/// same lifecycle, and system df's rows.
#[test]
fn formats_match_docker() {
    let e = Eng::new("cli-vs-docker");
    let d = crate::layers::Dockerd::start(&e.ctx);
    let (archive, _) = crate::container::archives();
    let out = |mut c: std::process::Command| {
        let o = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).output().unwrap();
        assert!(o.status.success(), "{c:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    out(d.docker(&["load", "-i", archive.to_str().unwrap()]));
    let secs = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let t0 = format!("{:.3}", secs());
    let name = format!("vsdocker-{}", std::process::id());
    let run =
        ["run", "--name", name.as_str(), "--network", "none", "--label", "tier=web", "busybox", "sh", "-c", "exit 3"];
    let _ = d.docker(&run).status();
    let o = e.c(&run);
    assert_eq!(o.code, 3, "{o}");
    for t in ["table {{.Names}}\t{{.Image}}\t{{.Labels}}\t{{.State}}", "{{.Names | upper}} {{json .Labels}} {{.Image}}"]
    {
        let theirs = out(d.docker(&["ps", "-a", "--format", t]));
        let ours = e.c(&["ls", "-a", "--format", t]);
        assert_eq!(ours.stdout, theirs, "ls --format {t:?}");
    }
    for t in ["{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{json .Config.Labels}} {{index .Config.Labels \"tier\"}} {{.Config.Cmd}}", "{{.Config.Image}} {{.State.Running}} {{.HostConfig.NetworkMode}}"] {
        let theirs = out(d.docker(&["inspect", "--format", t, &name]));
        let ours = e.c(&["inspect", "--format", t, &name]);
        assert_eq!(ours.stdout, theirs, "inspect --format {t:?}");
    }
    out(d.docker(&["rm", &name]));
    e.c(&["rm", &name]).ok();
    let t1 = format!("{:.3}", secs());
    let t = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}";
    let f = format!("container={name}");
    let theirs = out(d.docker(&["events", "--since", &t0, "--until", &t1, "--filter", &f, "--format", t]));
    let ours = e.cmd(&["events", "--since", &t0, "--until", &t1, "--filter", &f, "--format", t]);
    assert_eq!(ours.stdout, theirs, "events");
    // The default line: TIME TYPE ACTION ID (attributes): the same but for the time and id.
    let plain = |text: &str| -> Vec<String> {
        let l = text.lines().next().unwrap_or("").to_string();
        let w: Vec<&str> = l.splitn(5, ' ').collect();
        assert_eq!(w.len(), 5, "{l}");
        assert!(w[0].len() == 30 && w[0].ends_with('Z') && w[0].as_bytes()[10] == b'T', "time {l}");
        vec![w[1].to_string(), w[2].to_string(), w[4].to_string()]
    };
    let ev = ["events", "--since", &t0, "--until", &t1, "--filter", &f, "--filter", "event=create"];
    assert_eq!(plain(&e.cmd(&ev).stdout), plain(&out(d.docker(&ev))));
    let t = "{{.Type}}\t{{.TotalCount}}\t{{.Active}}";
    assert_eq!(e.cmd(&["system", "df", "--format", t]).stdout, out(d.docker(&["system", "df", "--format", t])));
}

/// `ls`'s NETWORKS column follows `network connect` and `disconnect` (the first network
/// too), running and stopped, as docker's `ps` does.
#[test]
fn ls_networks_follow_connect_and_disconnect() {
    let e = Eng::new("cli-lsnet");
    let subnet = format!("10.215.{}.0/24", std::process::id() % 250);
    e.cmd(&["network", "create", "--subnet", &subnet, "lsnet"]).ok();
    let id = e.run_d(&["--name", "lsn", "busybox", "sleep", "1000"]);
    let nets = || {
        let o = e.c(&["ls", "-a", "--filter", "name=lsn", "--format", "{{.Networks}}"]);
        o.ok();
        o.stdout.trim().to_string()
    };
    assert_eq!(nets(), "bridge");
    e.cmd(&["network", "connect", "lsnet", "lsn"]).ok();
    assert_eq!(nets(), "bridge,lsnet");
    e.cmd(&["network", "disconnect", "bridge", "lsn"]).ok();
    assert_eq!(nets(), "lsnet");
    e.c(&["stop", "-t", "0", "lsn"]).ok();
    assert_eq!(nets(), "lsnet", "a stopped container keeps its networks");
    e.c(&["rm", "-f", &id]).ok();
    e.cmd(&["network", "rm", "lsnet"]).ok();
}

/// A system user (and its group) made for a test, with a range of 65536 subordinate uids and
/// gids from `start` (or none); the user, group and lines are removed on drop.
struct RemapUser {
    name: String,
    line: Option<String>,
}

impl RemapUser {
    fn new(name: &str, start: Option<u32>) -> RemapUser {
        use std::process::{Command, Stdio};
        let _ = Command::new("userdel").arg(name).stderr(Stdio::null()).status();
        let _ = Command::new("groupdel").arg(name).stderr(Stdio::null()).status();
        let ok = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name}");
        let line = start.map(|s| format!("{name}:{s}:65536"));
        if let Some(l) = &line {
            for f in ["/etc/subuid", "/etc/subgid"] {
                let mut h = fs::OpenOptions::new().append(true).create(true).open(f).unwrap();
                std::io::Write::write_all(&mut h, format!("{l}\n").as_bytes()).unwrap();
            }
        }
        RemapUser { name: name.to_string(), line }
    }
}

impl Drop for RemapUser {
    fn drop(&mut self) {
        if let Some(l) = &self.line {
            for f in ["/etc/subuid", "/etc/subgid"] {
                if let Ok(t) = fs::read_to_string(f) {
                    let kept: String = t.lines().filter(|x| x.trim() != l).map(|x| format!("{x}\n")).collect();
                    let _ = fs::write(f, kept);
                }
            }
        }
        let _ = std::process::Command::new("userdel").arg(&self.name).status();
        let _ = std::process::Command::new("groupdel").arg(&self.name).stderr(std::process::Stdio::null()).status();
    }
}

/// The files named `name` under `dir` (not following symlinks).
fn find_named(dir: &std::path::Path, name: &str, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            find_named(&p, name, out);
        } else if e.file_name() == name {
            out.push(p);
        }
    }
}

/// docker's `userns-remap` in `<data-root>/daemon.json` naming a user with subordinate ranges
/// the test adds: the store in `<data-root>/<uid>.<gid>` with image layer files owned by the
/// shifted ids, a container's /proc/self/uid_map and gid_map mapping 0 to the range, a file it
/// makes on a named volume owned by the mapped root on the host, `--userns host` without the
/// mapping; a user without ranges is refused in dockerd's words with nothing made.
#[test]
fn userns_remap_maps_containers_and_shifts_the_store() {
    use std::os::unix::fs::MetadataExt;
    let e = Eng::new("cli-remap");
    let pid = std::process::id();
    let start = 3_000_000 + (pid % 1000) * 65_536;
    let name = format!("berth-rm{}", pid % 100_000);
    let _user = RemapUser::new(&name, Some(start));
    let daemon = e.data.join("daemon.json");
    fs::write(&daemon, serde_json::json!({ "userns-remap": name }).to_string()).unwrap();
    let (archive, _) = crate::container::archives();
    e.cmd(&["image", "load", "-i", archive.to_str().unwrap()]).ok();
    let sub = e.data.join(format!("{start}.{start}"));
    let mut bins = Vec::new();
    find_named(&sub, "busybox", &mut bins);
    assert!(!bins.is_empty(), "busybox unpacked under {}", sub.display());
    for b in &bins {
        let m = fs::symlink_metadata(b).unwrap();
        assert_eq!((m.uid(), m.gid()), (start, start), "{}", b.display());
    }
    let vol = format!("rmv-{pid}");
    let o = e.c(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{vol}:/v"),
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; touch /v/made; id -u",
    ]);
    o.ok();
    let words: Vec<Vec<String>> =
        o.stdout.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect();
    let want = vec!["0".to_string(), start.to_string(), "65536".to_string()];
    assert_eq!(words, vec![want.clone(), want, vec!["0".to_string()]], "{o}");
    let made = sub.join("volumes").join(&vol).join("_data/made");
    let m = fs::metadata(&made).unwrap();
    assert_eq!((m.uid(), m.gid()), (start, start), "{}", made.display());
    // On the default network too (its netns made by the engine, outside the user namespace).
    let o = e.c(&["run", "--rm", "busybox", "sh", "-c", "cat /proc/self/uid_map; ls /sys/class/net"]);
    o.ok();
    assert!(o.stdout.starts_with(&format!("{:>10} {:>10} {:>10}\n", 0, start, 65536)), "{o}");
    assert!(o.stdout.lines().any(|l| l == "eth0"), "{o}");
    let o = e.c(&["run", "--rm", "--network", "none", "--userns", "host", "busybox", "cat", "/proc/self/uid_map"]);
    o.ok();
    assert_eq!(o.stdout.split_whitespace().collect::<Vec<_>>(), ["0", "0", "4294967295"], "{o}");
    e.cmd(&["volume", "rm", &vol]).ok();
    let o = e.cmd(&["system", "info", "--format", "{{json .SecurityOptions}} {{.DockerRootDir}}"]);
    o.ok();
    assert_eq!(o.stdout, format!("[\"name=seccomp,profile=builtin\",\"name=userns\"] {}\n", sub.display()));
    // commit writes the owners the container saw: its image runs with them.
    let c = format!("rmc-{pid}");
    e.c(&["run", "--name", &c, "--network", "none", "busybox", "sh", "-c", "echo x > /made; chown 7:8 /made"]).ok();
    e.c(&["commit", &c, &format!("rmimg-{pid}")]).ok();
    let o = e.c(&["run", "--rm", "--network", "none", &format!("rmimg-{pid}"), "stat", "-c", "%u:%g", "/made"]);
    o.ok();
    assert_eq!(o.stdout, "7:8\n");
    // cp into it: owned by the container's root (the mapped uid on the host), as docker cp.
    let host_file = e.ctx.dir.join("cp-in");
    fs::write(&host_file, "x").unwrap();
    e.c(&["cp", host_file.to_str().unwrap(), &format!("{c}:/copied")]).ok();
    e.c(&["commit", &c, &format!("rmimg2-{pid}")]).ok();
    let o = e.c(&["run", "--rm", "--network", "none", &format!("rmimg2-{pid}"), "stat", "-c", "%u:%g", "/copied"]);
    o.ok();
    assert_eq!(o.stdout, "0:0\n");
    e.c(&["rm", &c]).ok();
    // A build: RUN in the user namespace, COPY's owners shifted; the image shows them unshifted.
    let ctxdir = e.ctx.tempdir("remap-build");
    fs::write(ctxdir.join("x"), "x").unwrap();
    fs::write(
        ctxdir.join("Dockerfile"),
        "FROM busybox\nRUN cat /proc/self/uid_map > /map && echo hi > /f && chown 5:6 /f\nCOPY x /x\nCOPY --chown=7:8 x /y\n",
    )
    .unwrap();
    e.cmd(&["image", "build", "-q", "--network", "none", "-t", &format!("rmbuild-{pid}"), ctxdir.to_str().unwrap()])
        .ok();
    let o = e.c(&[
        "run",
        "--rm",
        "--network",
        "none",
        &format!("rmbuild-{pid}"),
        "sh",
        "-c",
        "cat /map; stat -c %u:%g /f /x /y",
    ]);
    o.ok();
    assert_eq!(o.stdout, format!("{:>10} {:>10} {:>10}\n5:6\n0:0\n7:8\n", 0, start, 65536), "{o}");
    // The remapped store's default network (and its bridge) goes with the test.
    e.cmd(&["network", "rm", "bridge"]).ok();

    // A user with no subordinate ranges: one line, no store made for it.
    let bare = format!("berth-rn{}", pid % 100_000);
    let _bare = RemapUser::new(&bare, None);
    fs::write(&daemon, serde_json::json!({ "userns-remap": bare }).to_string()).unwrap();
    let listing = || {
        let mut v: Vec<String> =
            fs::read_dir(&e.data).unwrap().map(|d| d.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let before = listing();
    assert_one_line(
        &e.c(&["run", "--rm", "busybox", "true"]),
        125,
        &[&format!("Can't create ID mappings: No subuid ranges found for user \"{bare}\"")],
    );
    assert_eq!(listing(), before);
    fs::remove_file(&daemon).unwrap();
}

/// Removes the `dockremap` user and group and their ranges (made by a test) on drop.
struct Dockremap;

impl Dockremap {
    /// The (uid, gid) range starts of dockremap, when it has both.
    fn ranges() -> Option<(u32, u32)> {
        let start = |f: &str| {
            fs::read_to_string(f).ok()?.lines().find_map(|l| {
                let v: Vec<&str> = l.split(':').collect();
                (v.len() == 3 && v[0] == "dockremap" && v[2] == "65536").then(|| v[1].parse().ok()).flatten()
            })
        };
        Some((start("/etc/subuid")?, start("/etc/subgid")?))
    }

    fn remove() {
        let _ = std::process::Command::new("userdel").arg("dockremap").status();
        let _ = std::process::Command::new("groupdel").arg("dockremap").stderr(std::process::Stdio::null()).status();
        for f in ["/etc/subuid", "/etc/subgid"] {
            if let Ok(t) = fs::read_to_string(f) {
                let kept: String =
                    t.lines().filter(|x| !x.starts_with("dockremap:")).map(|x| format!("{x}\n")).collect();
                let _ = fs::write(f, kept);
            }
        }
    }
}

impl Drop for Dockremap {
    fn drop(&mut self) {
        Dockremap::remove();
    }
}

/// `"userns-remap": "default"`: dockerd 20.10 makes `dockremap` with ranges; with the same
/// files berth makes the same user with the same ranges, its store in `<uid>.<gid>` as
/// dockerd's, and maps its containers' root to them. Skipped when dockremap already exists
/// (the host's own; the test only handles a dockremap it made).
#[test]
fn userns_remap_default_makes_dockremap_as_dockerd_does() {
    let exists = fs::read_to_string("/etc/passwd").unwrap().lines().any(|l| l.starts_with("dockremap:"));
    if exists {
        eprintln!("SKIPPED: a dockremap user exists on this host");
        return;
    }
    let _guard = Dockremap;
    let e = Eng::new("cli-remapdef");
    let theirs = {
        let d = crate::layers::Dockerd::start_with(&e.ctx, &["--userns-remap", "default"]);
        let r = Dockremap::ranges().expect("dockerd made dockremap's ranges");
        assert!(d.data_root().join(format!("{}.{}", r.0, r.1)).is_dir(), "dockerd's remapped root");
        r
    };
    Dockremap::remove();
    fs::write(e.data.join("daemon.json"), r#"{"userns-remap": "default"}"#).unwrap();
    let (archive, _) = crate::container::archives();
    e.cmd(&["image", "load", "-i", archive.to_str().unwrap()]).ok();
    assert_eq!(Dockremap::ranges(), Some(theirs), "berth's dockremap ranges vs dockerd's");
    assert!(e.data.join(format!("{}.{}", theirs.0, theirs.1)).is_dir());
    let o = e.c(&["run", "--rm", "--network", "none", "busybox", "cat", "/proc/self/uid_map", "/proc/self/gid_map"]);
    o.ok();
    let w: Vec<&str> = o.stdout.split_whitespace().collect();
    assert_eq!(w, ["0", &theirs.0.to_string(), "65536", "0", &theirs.1.to_string(), "65536"], "{o}");
    fs::remove_file(e.data.join("daemon.json")).unwrap();
}
