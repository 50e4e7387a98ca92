//! Soak and load. `soak_*`: many lifecycles in a row, then every kind of leftover counted
//! (state dirs, cgroups, mounts, processes and zombies; for the engine also container records,
//! name claims, netns files, veths on the network's bridge, iptables lines naming its subnet,
//! IPAM reservations, DNS records, shims) and the resident size and open fds of the network's
//! DNS server (the long-lived process) compared before and after. `BERTH_SOAK_N` sets the
//! count (CI: the default, 25; `make soak`: 1000). `load_*`: many at once (100 parallel
//! runtime creates; 50 parallel `container run -d` on one network): every one succeeds, and
//! no name, IP or port is given twice.

use crate::common::images::{busybox_layer_tar, docker_save_archive, ImageSpec};
use crate::common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn soak_n() -> usize {
    std::env::var("BERTH_SOAK_N").ok().and_then(|v| v.parse().ok()).unwrap_or(25)
}

fn dir_count(p: &Path) -> usize {
    fs::read_dir(p).map(|rd| rd.count()).unwrap_or(0)
}

/// Zombies whose parent is this test process, or berth processes whose parent is still alive
/// and has not reaped them. A berth process that outlived its parent (a daemonized shim or
/// helper, of this or of a test running beside it) is reparented to the host's pid 1, whose
/// reaping is not berth's to count.
fn zombies() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { continue };
        let Some((comm, rest)) = stat.split_once(") ") else { continue };
        let f: Vec<&str> = rest.split(' ').collect();
        let parent = f.get(1).copied().unwrap_or("");
        if f.first() == Some(&"Z") && (parent == me || (comm.ends_with("(berth") && parent != "1")) {
            v.push(stat.trim().to_string());
        }
    }
    v
}

/// Live processes whose command line names `dir` (a shim carries its data root).
fn procs_naming(dir: &Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| {
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            !stat.contains(") Z ") && String::from_utf8_lossy(&cmd).contains(&needle)
        })
        .count()
}

fn status_kb(pid: i32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field(&s, key).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn fd_count(pid: i32) -> usize {
    dir_count(Path::new(&format!("/proc/{pid}/fd")))
}

#[test]
fn soak_runtime_lifecycles() {
    let ctx = Ctx::new("soak-runtime");
    let n = soak_n();
    let mounts_before = mountinfo().len();
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let mut b = ctx.bundle();
        b.args(&["true"]);
        let id = ctx.id(&format!("s{i}"));
        ctx.create(&mut b, &id).ok();
        ctx.start(&id).ok();
        ctx.wait_status(&id, "stopped", Duration::from_secs(10));
        ctx.delete(&id).ok();
        let _ = fs::remove_dir_all(&b.dir);
        ids.push(id);
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut left = Vec::new();
    if dir_count(&ctx.root) != 0 {
        left.push(format!("{} state dirs", dir_count(&ctx.root)));
    }
    for id in &ids {
        for cg in cgroup_dirs(id, Some(&format!("/berth/{id}"))) {
            if cg.exists() {
                left.push(format!("cgroup {}", cg.display()));
            }
        }
    }
    let m = mounts_under(&ctx.dir);
    if !m.is_empty() {
        left.push(format!("mounts {m:?}"));
    }
    for (pid, what) in procs_in(&ctx.dir) {
        left.push(format!("process {pid} ({what} in the test dir)"));
    }
    let mut z = zombies();
    wait_until(Duration::from_secs(5), || {
        z = zombies();
        z.is_empty()
    });
    if !z.is_empty() {
        left.push(format!("zombies {z:?}"));
    }
    eprintln!(
        "soak: {n} runtime lifecycles (create, start, wait, delete) in {secs:.1} s ({:.0} ms each); host mounts {} -> {}; left: {}",
        secs * 1000.0 / n as f64,
        mounts_before,
        mountinfo().len(),
        if left.is_empty() { "nothing".to_string() } else { left.join("; ") }
    );
    assert!(left.is_empty(), "left behind after {n} lifecycles: {left:#?}");
}

/// An engine with its own data root and the busybox image loaded.
pub struct Engine<'a> {
    pub ctx: &'a Ctx,
    pub data: PathBuf,
}

impl<'a> Engine<'a> {
    fn new(ctx: &'a Ctx) -> Engine<'a> {
        Engine::with_data(ctx, ctx.tempdir("data"))
    }

    /// The engine on a given data root (e.g. a small tmpfs).
    pub fn with_data(ctx: &'a Ctx, data: PathBuf) -> Engine<'a> {
        let e = Engine { ctx, data };
        let tar = busybox_layer_tar(ctx, "soak");
        let archive = ctx.dir.join("busybox.tar");
        docker_save_archive(ctx, &archive, &tar, &["busybox:latest"], &ImageSpec::new(&["sh"]));
        e.cmd(&["image", "load", "-i", archive.to_str().unwrap()]).ok();
        e
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.ctx.command(&["--data-root", self.data.to_str().unwrap()]);
        c.args(args);
        c
    }

    pub fn cmd(&self, args: &[&str]) -> Out {
        self.ctx.exec_cmd(self.command(args), Duration::from_secs(120))
    }

    /// Creates network `name` on a free /24 of 10.`second`.0.0/16 (other data roots' default
    /// bridges take whole private /16s: on an overlap the next /16 is tried). Returns (bridge,
    /// subnet, the subnet's "a.b.c." prefix).
    fn net(&self, name: &str, second: u8) -> (String, String, String) {
        let third = std::process::id() % 250;
        for k in 0..40u32 {
            let b = 10 + (u32::from(second) + k * 7) % 240;
            let (subnet, prefix) = (format!("10.{b}.{third}.0/24"), format!("10.{b}.{third}."));
            let o = self.cmd(&["network", "create", "--subnet", &subnet, name]);
            if o.code != 0 && o.stderr.contains("overlaps") {
                continue;
            }
            o.ok();
            let o = self.cmd(&["network", "inspect", name]);
            o.ok();
            let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
            let v = if v.is_array() { v[0].clone() } else { v };
            return (v["Bridge"].as_str().unwrap_or_default().to_string(), subnet, prefix);
        }
        panic!("no free /24 for network {name}");
    }

    /// Everything of the engine that a removed container may leave, counted.
    fn leftovers(&self, bridge: &str, subnet_prefix: &str, net: &str) -> Vec<String> {
        let mut p = Vec::new();
        let recs: Vec<String> = fs::read_dir(self.data.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "names")
            .collect();
        p.push(("container records", recs.len()));
        p.push(("name claims", dir_count(&self.data.join("containers/names"))));
        p.push(("network attachments", dir_count(&self.data.join("network/attachments"))));
        let ipam = fs::read_dir(self.data.join("network/ipam"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| fs::read_dir(d.path()).into_iter().flatten().flatten())
            .filter(|f| f.file_name().to_string_lossy().parse::<std::net::Ipv4Addr>().is_ok())
            .count();
        p.push(("IPAM reservations", ipam));
        let hosts = fs::read_to_string(self.data.join("network").join(net).join("hosts")).unwrap_or_default();
        p.push(("DNS records", hosts.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).count()));
        let veths = Command::new("ip").args(["-o", "link", "show", "master", bridge]).output().unwrap();
        p.push(("veths on the bridge", String::from_utf8_lossy(&veths.stdout).lines().count()));
        p.push(("mounts under the data root", mounts_under(&self.data).len()));
        p.push(("runtime state dirs", dir_count(&self.ctx.root)));
        p.push(("shims and other berth processes of this data root", procs_naming(&self.data)));
        let mut ipt = 0;
        for t in ["filter", "nat"] {
            let o = Command::new("iptables-save").args(["-t", t]).output().unwrap();
            ipt += String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains(subnet_prefix)).count();
        }
        p.push(("iptables lines naming the subnet", ipt));
        p.into_iter().map(|(k, v)| format!("{k}: {v}")).collect()
    }

    fn dns_pid(&self, net: &str) -> Option<i32> {
        fs::read_to_string(self.data.join("network").join(net).join("dns.lock")).ok()?.trim().parse().ok()
    }
}

impl Drop for Engine<'_> {
    fn drop(&mut self) {
        let o = self.cmd(&["container", "ls", "-aq", "--no-trunc"]);
        for id in o.lines() {
            let _ = self.cmd(&["container", "rm", "-f", "-v", id.trim()]);
        }
        let _ = self.cmd(&["network", "prune"]);
    }
}

#[test]
fn soak_engine_run_rm_on_a_user_network() {
    let _net = crate::network::shared();
    let ctx = Ctx::new("soak-engine");
    let e = Engine::new(&ctx);
    let net = "soaknet";
    let (bridge, _subnet, prefix) = e.net(net, 97);
    let prefix = prefix.as_str();
    assert!(!bridge.is_empty());
    // One container stays up through the soak: the network's DNS server lives as long.
    e.cmd(&["container", "run", "-d", "--name", "anchor", "--network", net, "busybox", "sleep", "100000"]).ok();
    let base = e.leftovers(&bridge, prefix, net);
    let dns = e.dns_pid(net);
    let (rss0, fds0) = dns.map(|p| (status_kb(p, "VmRSS"), fd_count(p))).unwrap_or((0, 0));
    let n = soak_n();
    let t0 = Instant::now();
    for i in 0..n {
        let o = e.cmd(&["container", "run", "--rm", "--network", net, "busybox", "nslookup", "anchor"]);
        assert_eq!(o.code, 0, "run {i}: {o}");
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = e.leftovers(&bridge, prefix, net);
    // Zombies are counted at the end only (a `run -d` child may be in the middle of being
    // reaped when the baseline is taken): none may stay.
    let mut z = zombies();
    wait_until(Duration::from_secs(5), || {
        z = zombies();
        z.is_empty()
    });
    let (rss1, fds1) = dns.map(|p| (status_kb(p, "VmRSS"), fd_count(p))).unwrap_or((0, 0));
    eprintln!(
        "soak: {n} `container run --rm` on a user network in {secs:.1} s ({:.0} ms each); DNS server RSS {rss0} -> {rss1} kB, fds {fds0} -> {fds1}; counts (with one container up) before {base:?} after {after:?}; zombies {}",
        secs * 1000.0 / n as f64,
        z.len()
    );
    assert_eq!(base, after, "leftovers after {n} runs");
    assert!(z.is_empty(), "zombies after {n} runs: {z:#?}");
    assert!(dns.is_some(), "the network's DNS server runs");
    assert_eq!(fds0, fds1, "the DNS server's open fds");
    assert!(rss1 <= rss0 + 512, "the DNS server's RSS grew: {rss0} -> {rss1} kB");
    e.cmd(&["container", "rm", "-f", "anchor"]).ok();
    e.cmd(&["network", "rm", net]).ok();
}

#[test]
fn load_100_parallel_runtime_creates() {
    let ctx = Ctx::new("load-runtime");
    let mut jobs = Vec::new();
    let mut ids = Vec::new();
    for i in 0..100 {
        let mut b = ctx.bundle();
        b.args(&["sleep", "1000"]);
        let id = ctx.id(&format!("p{i}"));
        b.write_config(&id);
        jobs.push(ctx.spawn(&["create", "--bundle", b.dir.to_str().unwrap(), &id]));
        ids.push(id);
    }
    for (j, id) in jobs.into_iter().zip(&ids) {
        let o = j.wait(Duration::from_secs(120));
        assert_eq!(o.code, 0, "create {id}: {o}");
    }
    let mut pids = BTreeSet::new();
    for id in &ids {
        assert_eq!(ctx.status(id).as_deref(), Some("created"), "{id}");
        assert!(pids.insert(ctx.pid(id)), "a pid given twice");
    }
    let listed = ctx.cmd(&["list", "-q"]).lines().len();
    assert_eq!(listed, 100, "list shows every container");
    for id in &ids {
        ctx.delete_force(id).ok();
    }
    assert_eq!(dir_count(&ctx.root), 0);
}

#[test]
fn load_50_parallel_runs_on_one_network() {
    let _net = crate::network::shared();
    let ctx = Ctx::new("load-engine");
    let e = Engine::new(&ctx);
    let net = "loadnet";
    let (bridge, _subnet, prefix) = e.net(net, 98);
    let prefix = prefix.as_str();
    let jobs: Vec<Bg> = (0..50)
        .map(|i| {
            let name = if i % 2 == 0 { format!("l{i}") } else { "same-name".to_string() };
            let port = format!("127.0.0.1::{}", 8000 + i);
            let args =
                ["container", "run", "-d", "--name", &name, "--network", net, "-p", &port, "busybox", "sleep", "1000"];
            ctx.spawn_cmd(e.command(&args))
        })
        .collect();
    let outs: Vec<Out> = jobs.into_iter().map(|j| j.wait(Duration::from_secs(180))).collect();
    // 25 distinct names succeed; of the 25 runs asking for "same-name" exactly one does.
    let ok = outs.iter().filter(|o| o.code == 0).count();
    let all = || outs.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("\n");
    assert_eq!(ok, 26, "runs that succeeded:\n{}", all());
    for o in outs.iter().filter(|o| o.code != 0) {
        o.one_line_error(&["already in use"]);
    }
    let ids = e.cmd(&["container", "ls", "-q", "--no-trunc"]).lines();
    assert_eq!(ids.len(), 26);
    let mut names = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for id in &ids {
        let o = e.cmd(&["container", "inspect", id.trim()]);
        o.ok();
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        let v = &v[0];
        assert!(names.insert(v["Name"].to_string()), "name given twice: {}", v["Name"]);
        let ip = v["NetworkSettings"]["Networks"][net]["IPAddress"].as_str().unwrap_or_default().to_string();
        assert!(ip.starts_with(prefix), "{ip}");
        assert!(ips.insert(ip.clone()), "IP given twice: {ip}");
        let hp = v["NetworkSettings"]["Ports"].to_string();
        assert!(ports.insert(hp.clone()), "ports given twice: {hp}");
    }
    for id in &ids {
        e.cmd(&["container", "rm", "-f", id.trim()]).ok();
    }
    let left = e.leftovers(&bridge, prefix, net);
    assert!(
        left.iter().all(|l| l.ends_with(": 0") || l.starts_with("iptables") || l.starts_with("zombies")),
        "{left:?}"
    );
}

/// The network's DNS server killed with SIGKILL while a container uses it: the next container
/// start brings it back (names resolve again, for the old container too), and once the
/// containers are gone `network rm` leaves no server, no bridge and no record.
#[test]
fn dns_server_killed_comes_back_and_nothing_is_left() {
    let _net = crate::network::shared();
    let ctx = Ctx::new("dns-kill");
    let e = Engine::new(&ctx);
    let net = "dnskill";
    let (bridge, _subnet, prefix) = e.net(net, 99);
    e.cmd(&["container", "run", "-d", "--name", "anchor", "--network", net, "busybox", "sleep", "100000"]).ok();
    let pid = e.dns_pid(net).expect("the DNS server runs");
    // SAFETY: kill(2) of the DNS server this test's network started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(pid) || proc_state(pid) == Some('Z')));
    let o = e.cmd(&["container", "run", "--rm", "--network", net, "busybox", "nslookup", "anchor"]);
    o.ok();
    assert!(o.stdout.contains(&format!("Address: {prefix}")), "resolves after the restart: {o}");
    let again = e.dns_pid(net).expect("a DNS server runs again");
    assert_ne!(again, pid);
    let o = e.cmd(&["container", "exec", "anchor", "nslookup", "anchor"]);
    assert!(o.stdout.contains(&format!("Address: {prefix}")), "the old container resolves too: {o}");
    e.cmd(&["container", "rm", "-f", "anchor"]).ok();
    e.cmd(&["network", "rm", net]).ok();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(again) || proc_state(again) == Some('Z')),
        "the DNS server exits"
    );
    let links = Command::new("ip").args(["-o", "link", "show", &bridge]).output().unwrap();
    assert!(!links.status.success(), "the bridge {bridge} is gone");
    let left = e.leftovers(&bridge, &prefix, net);
    assert!(left.iter().all(|l| l.ends_with(": 0")), "{left:?}");
}
