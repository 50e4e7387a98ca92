//! Networking with the real Debian CNI plugins: `network create/ls/inspect/rm/prune`,
//! containers on user networks reaching each other by name, published ports from the host
//! (127.0.0.1 included) and from other containers, `none`, `host` and `container:` modes, several
//! networks per container, crash clean-up, bad input, and teardown leaving the host as it was.
//!
//! Each test has its own --data-root, network names and subnets (10.2xx.N.0/24). Host-wide state
//! (links, /run/berth/netns, iptables) is compared only in what names one of the test's markers
//! (its container ids, subnets, bridges), so tests of other files that attach containers may run
//! at the same time. The test of the host-wide default bridge berth0 holds NET_LOCK exclusively,
//! the others shared (other files' tests that use the default bridge should take `shared()`).

use crate::common::*;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// attach/detach cycles in `attach_detach_cycles_leave_nothing` (the `_long` variant runs 200).
const CYCLES: usize = 20;

static NET_LOCK: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    NET_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    NET_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

/// A test's network world: its data-root, and what to tear down when dropped (attachments first,
/// then networks).
struct Net<'a> {
    ctx: &'a Ctx,
    data: PathBuf,
    ids: RefCell<Vec<String>>,
    nets: RefCell<Vec<String>>,
    /// What names this test's leftovers: container ids, subnet prefixes, bridge names.
    markers: RefCell<Vec<String>>,
}

impl<'a> Net<'a> {
    fn new(ctx: &'a Ctx) -> Net<'a> {
        Net {
            ctx,
            data: ctx.tempdir("data"),
            ids: RefCell::new(Vec::new()),
            nets: RefCell::new(Vec::new()),
            markers: RefCell::new(Vec::new()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.ctx.command_noroot(&["--data-root", self.data.to_str().unwrap(), "network"]);
        c.args(args);
        c
    }

    /// `berth --data-root D network ARGS...`
    fn cmd(&self, args: &[&str]) -> Out {
        self.ctx.exec_cmd(self.command(args), TIMEOUT)
    }

    fn cmd_env(&self, env: &[(&str, &str)], args: &[&str]) -> Out {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        self.ctx.exec_cmd(c, TIMEOUT)
    }

    fn create(&self, name: &str, extra: &[&str]) -> Out {
        let mut a = vec!["create", name];
        a.extend_from_slice(extra);
        if let Some(i) = extra.iter().position(|a| *a == "--subnet") {
            if let Some((pre, _)) = extra.get(i + 1).and_then(|s| s.rsplit_once('.')) {
                self.markers.borrow_mut().push(format!("{pre}."));
            }
        }
        let o = self.cmd(&a);
        if o.code == 0 {
            self.nets.borrow_mut().push(name.to_string());
            let br = self.inspect(name)["Bridge"].as_str().unwrap_or_default().to_string();
            self.markers.borrow_mut().push(br);
        }
        o
    }

    /// Registers a container id (cleaned up at the end, a marker of leftovers).
    fn track(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
        self.markers.borrow_mut().push(id.to_string());
    }

    /// `network attach --json ARGS... ID`, asserted; the attachment JSON.
    fn attach(&self, id: &str, args: &[&str]) -> Value {
        self.attach_env(&[], id, args)
    }

    fn attach_env(&self, env: &[(&str, &str)], id: &str, args: &[&str]) -> Value {
        let mut a = vec!["attach", "--json"];
        a.extend_from_slice(args);
        a.push(id);
        self.track(id);
        let o = self.cmd_env(env, &a);
        o.ok();
        serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("attach output is not JSON ({e}): {o}"))
    }

    fn detach(&self, id: &str) {
        self.cmd(&["detach", id]).ok();
        self.ids.borrow_mut().retain(|i| i != id);
    }

    fn rm(&self, name: &str) {
        self.cmd(&["rm", name]).ok();
        self.nets.borrow_mut().retain(|n| n != name);
    }

    fn inspect(&self, name: &str) -> Value {
        let o = self.cmd(&["inspect", name]);
        o.ok();
        let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("inspect is not JSON ({e}): {o}"));
        v[0].clone()
    }

    /// A busybox bundle in the attachment's namespace with its resolv.conf, hosts and hostname.
    fn bundle(&self, att: &Value) -> Bundle {
        let mut b = self.ctx.bundle();
        match att["netns_path"].as_str() {
            Some(p) => b.ns_add("network", Some(p)),
            None => b.ns_remove("network"),
        };
        b.write_file("etc/resolv.conf", att["resolv_conf"].as_str().unwrap(), 0o644);
        b.write_file("etc/hosts", att["hosts"].as_str().unwrap(), 0o644);
        b.set("/hostname", att["hostname"].clone());
        b
    }

    /// A detached container serving `body` over HTTP on `port` (busybox httpd).
    fn web(&self, id: &str, att: &Value, port: u16, body: &str) {
        let mut b = self.bundle(att);
        b.write_file("www/index.html", body, 0o644);
        b.args(&["httpd", "-f", "-p", &port.to_string(), "-h", "/www"]);
        self.ctx.run_detached(&mut b, id);
    }

    /// Runs `sh -c script` in a new container of the attachment; its output.
    fn run_sh(&self, id: &str, att: &Value, script: &str) -> Out {
        let mut b = self.bundle(att);
        b.sh(script);
        self.ctx.run(&mut b, id)
    }

    fn records(&self) -> BTreeSet<String> {
        dir_names(&self.data.join("network/attachments"))
    }

    /// host-local reservations (files named by an IP) under the data-root.
    fn reservations(&self) -> Vec<String> {
        let mut v = Vec::new();
        for net in dir_names(&self.data.join("network/ipam")) {
            for f in dir_names(&self.data.join("network/ipam").join(&net)) {
                if f.parse::<Ipv4Addr>().is_ok() {
                    v.push(format!("{net}/{f}"));
                }
            }
        }
        v
    }
}

impl Drop for Net<'_> {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter().rev() {
            let _ = self.ctx.delete_force(id);
            let _ = self.cmd(&["detach", id]);
        }
        for n in self.nets.borrow().iter() {
            let _ = self.cmd(&["rm", n]);
        }
        let _ = self.cmd(&["prune"]);
    }
}

fn dir_names(p: &Path) -> BTreeSet<String> {
    fs::read_dir(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// What networking leaves on the host: link names, namespace files, iptables (filter and nat,
/// without counters).
#[derive(Debug, PartialEq)]
struct HostSnap {
    links: BTreeSet<String>,
    netns: BTreeSet<String>,
    iptables: Vec<String>,
}

fn host_snap() -> HostSnap {
    let out = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let links = out(&["ip", "-o", "link"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
        .collect();
    let mut iptables = Vec::new();
    for t in ["filter", "nat"] {
        for l in out(&["iptables-save", "-t", t]).lines() {
            if l.starts_with('#') {
                continue;
            }
            // ":CHAIN POLICY [packets:bytes]" → without the counters.
            let l = match l.rfind(" [") {
                Some(i) if l.starts_with(':') => &l[..i],
                _ => l,
            };
            iptables.push(l.to_string());
        }
    }
    HostSnap { links, netns: dir_names(Path::new("/run/berth/netns")), iptables }
}

/// Only what names one of the markers.
fn filtered(s: &HostSnap, markers: &[String]) -> HostSnap {
    let hit = |l: &String| markers.iter().any(|m| !m.is_empty() && l.contains(m.as_str()));
    HostSnap {
        links: s.links.iter().filter(|l| hit(l)).cloned().collect(),
        netns: s.netns.iter().filter(|l| hit(l)).cloned().collect(),
        iptables: s.iptables.iter().filter(|l| hit(l)).cloned().collect(),
    }
}

#[track_caller]
fn assert_same_host(n: &Net, before: &HostSnap, after: &HostSnap) {
    let markers = n.markers.borrow().clone();
    let (before, after) = (&filtered(before, &markers), &filtered(after, &markers));
    if before == after {
        return;
    }
    let diff = |a: &BTreeSet<String>, b: &BTreeSet<String>| {
        (a.difference(b).cloned().collect::<Vec<_>>(), b.difference(a).cloned().collect::<Vec<_>>())
    };
    let ia: BTreeSet<String> = before.iptables.iter().cloned().collect();
    let ib: BTreeSet<String> = after.iptables.iter().cloned().collect();
    panic!(
        "host changed: links (gone, new) {:?}; netns files {:?}; iptables lines {:?}",
        diff(&before.links, &after.links),
        diff(&before.netns, &after.netns),
        diff(&ia, &ib)
    );
}

/// A port that is free on 127.0.0.1 right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET / from addr (retries while the server starts); the whole response.
fn http_get(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut r = String::new();
                let _ = s.read_to_string(&mut r);
                if r.contains("200 OK") {
                    return r;
                }
                last = r;
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("GET http://{addr}/ failed: {last}");
}

/// Shell that fetches a URL, retrying while the server starts.
fn wget_loop(url: &str) -> String {
    format!("for i in $(seq 100); do wget -q -O- {url} && exit 0; sleep 0.1; done; exit 1")
}

fn ip_of(att: &Value, i: usize) -> String {
    att["interfaces"][i]["ip"].as_str().unwrap_or_else(|| panic!("no interface {i} in {att}")).to_string()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn network_create_ls_inspect_rm() {
    let ctx = Ctx::new("netcrud");
    let _g = shared();
    let n = Net::new(&ctx);
    let o = n.create("front", &["--subnet", "10.210.0.0/24", "--gateway", "10.210.0.254"]);
    o.ok();
    let id = o.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "create prints the id: {o}");
    n.create("back", &["--subnet", "10.210.1.0/24", "--internal"]).ok();
    let ls = n.cmd(&["ls"]);
    ls.ok();
    let rows = norm(&ls.stdout);
    assert!(
        rows.iter().any(|r| r.starts_with(&id[..12]) && r.contains("front bridge 10.210.0.0/24 10.210.0.254 false")),
        "{ls}"
    );
    assert!(rows.iter().any(|r| r.contains("back bridge 10.210.1.0/24 10.210.1.1 true")), "{ls}");
    for builtin in ["bridge", "host", "none"] {
        assert!(rows.iter().any(|r| r.split(' ').nth(1) == Some(builtin)), "{builtin} listed: {ls}");
    }
    let q = n.cmd(&["ls", "-q"]);
    assert_eq!(q.lines(), ["back", "bridge", "front", "host", "none"]);
    let v = n.inspect("front");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Subnet"], "10.210.0.0/24");
    assert_eq!(v["Gateway"], "10.210.0.254");
    assert_eq!(v["Internal"], false);
    assert_eq!(v["Config"]["cniVersion"], "1.0.0");
    let types: Vec<&str> =
        v["Config"]["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["bridge", "portmap", "firewall", "tuning"]);
    assert_eq!(v["Config"]["plugins"][0]["ipam"]["dataDir"], n.data.join("network/ipam").to_str().unwrap());
    assert!(n.data.join("network/front.conflist").is_file());
    // No subnet: one of the default pool; it does not overlap the others.
    n.create("auto", &[]).ok();
    let auto = n.inspect("auto");
    let s = auto["Subnet"].as_str().unwrap();
    assert!(s.starts_with("10.") || s.starts_with("172.") || s.starts_with("192.168."), "{auto}");
    n.create("front", &["--subnet", "10.210.5.0/24"]).one_line_error(&["already exists"]);
    n.cmd(&["inspect", "nosuch"]).one_line_error(&["network nosuch not found"]);
    for name in ["auto", "back", "front"] {
        n.rm(name);
    }
    n.cmd(&["rm", "front"]).one_line_error(&["network front not found"]);
    assert_eq!(n.cmd(&["ls", "-q"]).lines(), ["bridge", "host", "none"]);
    assert!(!n.data.join("network/front.conflist").exists());
    // prune removes unused user networks and keeps used ones.
    n.create("p1", &["--subnet", "10.210.2.0/24"]).ok();
    n.create("p2", &["--subnet", "10.210.3.0/24"]).ok();
    let cid = ctx.id("pr");
    n.attach(&cid, &["--network", "p2"]);
    let o = n.cmd(&["prune"]);
    o.ok();
    assert_eq!(o.lines(), ["p1"]);
    n.nets.borrow_mut().retain(|x| x != "p1");
    n.cmd(&["rm", "p2"]).one_line_error(&["in use by container"]);
    n.detach(&cid);
    n.rm("p2");
}

#[test]
fn containers_reach_each_other_by_name() {
    let ctx = Ctx::new("netdns");
    let _g = shared();
    let n = Net::new(&ctx);
    n.create("app", &["--subnet", "10.211.0.0/24"]).ok();
    let web = ctx.id("web");
    let a1 = n.attach(&web, &["--network", "app", "--name", "web"]);
    assert_eq!(a1["resolv_conf"], "nameserver 10.211.0.1\noptions ndots:0\n");
    assert!(a1["hosts"].as_str().unwrap().contains(&format!("{}\t", ip_of(&a1, 0))), "{a1}");
    n.web(&web, &a1, 8080, "from-web\n");
    // Attached after the first: reaches it by name, and is reached by name and alias.
    let cl = ctx.id("client");
    let a2 = n.attach(&cl, &["--network", "app", "--name", "client", "--alias", "cli2", "--ip", "10.211.0.77"]);
    assert_eq!(ip_of(&a2, 0), "10.211.0.77");
    // The same static address again: the IPAM plugin refuses, nothing is left of the attempt.
    let dup = ctx.id("dup");
    n.track(&dup);
    n.cmd(&["attach", "--network", "app", "--ip", "10.211.0.77", &dup])
        .one_line_error(&["network app: plugin bridge:", "10.211.0.77"]);
    assert!(!n.records().contains(&format!("{dup}.json")));
    assert!(!Path::new("/run/berth/netns").join(&dup).exists());
    n.web(&cl, &a2, 8080, "from-client\n");
    let o = ctx.cmd(&["exec", &cl, "sh", "-c", &wget_loop("http://web:8080/")]);
    o.ok();
    assert_eq!(o.stdout, "from-web\n");
    for name in ["client", "cli2", "CLIENT"] {
        let o = ctx.cmd(&["exec", &web, "sh", "-c", &wget_loop(&format!("http://{name}:8080/"))]);
        o.ok();
        assert_eq!(o.stdout, "from-client\n");
    }
    // nc by name, too.
    let o = ctx.cmd(&["exec", &web, "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc client 8080"]);
    o.ok();
    assert!(o.stdout.contains("from-client"), "{o}");
    // A short id resolves; an unknown single name does not (and is never forwarded).
    let o = ctx.cmd(&["exec", &web, "nslookup", &cl[..12]]);
    assert!(o.stdout.contains(&ip_of(&a2, 0)), "{o}");
    ctx.cmd(&["exec", &web, "nslookup", "nosuchcontainer"]).fails();
    // Once detached, a name is gone at once.
    ctx.delete_force(&cl).ok();
    n.detach(&cl);
    ctx.cmd(&["exec", &web, "nslookup", "client"]).fails();
    assert!(n.inspect("app")["Containers"].get(&web).is_some());
}

/// The DNS server forwards other names to the host's upstream (here a fake one on loopback,
/// given by BERTH_RESOLV_CONF): the loopback upstream works because the server runs on the host.
#[test]
fn dns_forwards_to_host_upstream() {
    let ctx = Ctx::new("netfwd");
    let _g = shared();
    let n = Net::new(&ctx);
    let up = UdpSocket::bind("127.0.0.77:53").unwrap();
    up.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let srv = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((len, from)) = up.recv_from(&mut buf) else { continue };
            let q = &buf[..len];
            // Question name and type.
            let mut i = 12;
            let mut labels = Vec::new();
            while i < len && q[i] != 0 {
                let l = q[i] as usize;
                labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + l]).into_owned());
                i += 1 + l;
            }
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            seen2.lock().unwrap().push(labels.join("."));
            let end = i + 5;
            let mut r = q[..end].to_vec();
            r[2] = 0x81;
            r[3] = 0x80;
            r[6..12].copy_from_slice(&[0, (qtype == 1) as u8, 0, 0, 0, 0]);
            if qtype == 1 {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
            }
            let _ = up.send_to(&r, from);
        }
    });
    let conf = ctx.dir.join("resolv.conf");
    fs::write(&conf, "nameserver 127.0.0.77\n").unwrap();
    n.create("fw", &["--subnet", "10.214.0.0/24"]).ok();
    let id = ctx.id("fwd");
    let att =
        n.attach_env(&[("BERTH_RESOLV_CONF", conf.to_str().unwrap())], &id, &["--network", "fw", "--name", "asker"]);
    let o = n.run_sh(&id, &att, "nslookup some.example.test; nslookup nosuchname && echo BAD; true");
    o.ok();
    assert!(o.stdout.contains("1.2.3.4"), "{o}");
    assert!(!o.stdout.contains("BAD"), "{o}");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    srv.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().any(|s| s == "some.example.test"), "{seen:?}");
    assert!(seen.iter().all(|s| s.contains("example.test")), "only the dotted name is forwarded: {seen:?}");
}

#[test]
fn published_ports_from_host_and_containers() {
    let ctx = Ctx::new("netport");
    let _g = shared();
    let n = Net::new(&ctx);
    n.create("pub", &["--subnet", "10.212.0.0/24"]).ok();
    n.create("other", &["--subnet", "10.212.1.0/24"]).ok();
    let (p1, p2) = (free_port(), free_port());
    let web = ctx.id("web");
    let a = n.attach(
        &web,
        &[
            "--network",
            "pub",
            "-p",
            &format!("127.0.0.1:{p1}:8080"),
            "-p",
            &format!("{p2}:8080"),
            "-P",
            "--expose",
            "8081",
        ],
    );
    let ports = a["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 3, "{a}");
    let p3 = ports.iter().find(|p| p["container_port"] == 8081).unwrap()["host_port"].as_u64().unwrap() as u16;
    assert!(p3 > 0);
    let mut b = n.bundle(&a);
    b.write_file("www/index.html", "published\n", 0o644);
    b.sh("httpd -p 8081 -h /www && exec httpd -f -p 8080 -h /www");
    ctx.run_detached(&mut b, &web);
    for p in [p1, p2, p3] {
        let r = http_get(SocketAddr::from(([127, 0, 0, 1], p)));
        assert!(r.ends_with("published\n"), "port {p}: {r}");
    }
    // From a container of the same network (through the gateway, hairpin on the bridge) and
    // from one of another network (routed by the host).
    for net in ["pub", "other"] {
        let id = ctx.id("cl");
        let att = n.attach(&id, &["--network", net]);
        let gw = att["interfaces"][0]["gateway"].as_str().unwrap().to_string();
        let o = n.run_sh(&id, &att, &wget_loop(&format!("http://{gw}:{p2}/")));
        o.ok();
        assert_eq!(o.stdout, "published\n", "from network {net}");
    }
    // The same host port again: refused, whoever asks.
    let id = ctx.id("dup");
    n.cmd(&["attach", "--network", "pub", "-p", &format!("{p2}:80"), &id])
        .one_line_error(&[&format!("{p2}"), "already published"]);
    assert!(!n.records().contains(&format!("{id}.json")));
}

#[test]
fn none_host_and_container_modes() {
    let ctx = Ctx::new("netmodes");
    let _g = shared();
    let n = Net::new(&ctx);
    // none: a namespace with lo only, up.
    let id = ctx.id("none");
    let a = n.attach(
        &id,
        &[
            "--network",
            "none",
            "--dns",
            "10.1.2.3",
            "--dns-search",
            "example.test",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "db:10.9.9.9",
        ],
    );
    assert!(a["interfaces"].as_array().unwrap().is_empty());
    assert_eq!(a["resolv_conf"], "nameserver 10.1.2.3\nsearch example.test\noptions ndots:2\n");
    assert!(a["hosts"].as_str().unwrap().ends_with("10.9.9.9\tdb\n"), "{a}");
    let o = n.run_sh(&id, &a, "cat /proc/net/dev; ip link show lo");
    o.ok();
    let ifs: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.split_once(':').map(|x| x.0.trim()))
        .filter(|x| !x.contains('|') && !x.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(ifs.contains(&"lo") && !ifs.iter().any(|i| i.starts_with("eth")), "{o}");
    assert!(o.stdout.contains("UP"), "{o}");
    n.detach(&id);
    assert!(!Path::new(a["netns_path"].as_str().unwrap()).exists());
    // host: no namespace of its own.
    let id = ctx.id("host");
    let a = n.attach(&id, &["--network", "host"]);
    assert!(a["netns_path"].is_null(), "{a}");
    n.detach(&id);
    // container:ID shares the stack.
    n.create("shr", &["--subnet", "10.213.0.0/24"]).ok();
    let owner = ctx.id("owner");
    let a1 = n.attach(&owner, &["--network", "shr"]);
    let joiner = ctx.id("joiner");
    let a2 = n.attach(&joiner, &["--network", &format!("container:{owner}")]);
    assert_eq!(a1["netns_path"], a2["netns_path"]);
    let o = n.run_sh(&joiner, &a2, "ip addr show eth0");
    o.ok();
    assert!(o.stdout.contains(&format!("inet {}/24", ip_of(&a1, 0))), "{o}");
    n.detach(&joiner);
    assert!(Path::new(a1["netns_path"].as_str().unwrap()).exists(), "the owner's namespace stays");
    n.cmd(&["attach", "--network", "container:nosuch", &ctx.id("x")]).one_line_error(&["nosuch"]);
}

#[test]
fn internal_network_has_no_way_out() {
    let ctx = Ctx::new("netint");
    let _g = shared();
    let n = Net::new(&ctx);
    n.create("int", &["--subnet", "10.215.0.0/24", "--internal"]).ok();
    let id = ctx.id("int");
    n.cmd(&["attach", "--network", "int", "-p", "18999:80", &id]).one_line_error(&["internal"]);
    let a = n.attach(&id, &["--network", "int", "--name", "lonely"]);
    let o = n.run_sh(&id, &a, "ip route; nslookup lonely");
    o.ok();
    assert!(!o.stdout.contains("default"), "{o}");
    assert!(o.stdout.contains(&ip_of(&a, 0)), "names still resolve: {o}");
}

/// The default network (bridge berth0, or berthN when another data-root has berth0) plus a user
/// network: eth0 and eth1, one default route; `network rm bridge` removes the bridge.
#[test]
fn default_bridge_and_two_networks() {
    let ctx = Ctx::new("netmulti");
    let _g = exclusive();
    let n = Net::new(&ctx);
    let before = host_snap();
    n.create("second", &["--subnet", "10.216.0.0/24"]).ok();
    n.nets.borrow_mut().push("bridge".into());
    let id = ctx.id("multi");
    let a = n.attach(
        &id,
        &["--network", "bridge", "--network", "second", "--hostname", "multi", "--add-host", "gw:host-gateway"],
    );
    let gw0 = a["interfaces"][0]["gateway"].as_str().unwrap().to_string();
    assert_eq!(a["interfaces"][0]["network"], "bridge");
    assert_eq!(a["interfaces"][1]["ifname"], "eth1");
    assert!(a["hosts"].as_str().unwrap().contains(&format!("{gw0}\tgw\n")), "{a}");
    let br = n.inspect("bridge")["Bridge"].as_str().unwrap().to_string();
    assert!(br.starts_with("berth"), "{br}");
    n.markers.borrow_mut().push(br.clone());
    let o = n.run_sh(&id, &a, "ip addr; ip route; hostname");
    o.ok();
    assert!(
        o.stdout.contains(&format!("inet {}/", ip_of(&a, 0)))
            && o.stdout.contains(&format!("inet {}/24", ip_of(&a, 1))),
        "{o}"
    );
    assert_eq!(o.stdout.lines().filter(|l| l.starts_with("default")).count(), 1, "{o}");
    assert!(o.stdout.contains(&format!("default via {gw0} dev eth0")), "{o}");
    assert!(o.stdout.ends_with("multi\n"), "{o}");
    ctx.delete_force(&id).ok();
    n.detach(&id);
    n.rm("bridge");
    n.rm("second");
    assert_same_host(&n, &before, &host_snap());
    assert!(!Path::new("/sys/class/net").join(&br).exists(), "{br} left behind");
}

fn cycles(count: usize) {
    let ctx = Ctx::new("netcycle");
    let _g = shared();
    let n = Net::new(&ctx);
    n.create("cyc", &["--subnet", "10.217.0.0/24"]).ok();
    // Warm-up: host-local makes its files once.
    let w = ctx.id("warm");
    n.attach(&w, &["--network", "cyc", "-p", &format!("{}:80", free_port())]);
    n.detach(&w);
    let before = host_snap();
    let ipam_before = dir_names(&n.data.join("network/ipam/cyc"));
    let port = free_port();
    let start = Instant::now();
    for i in 0..count {
        let id = format!("{}-{i}", ctx.id("cy"));
        let a = n.attach(&id, &["--network", "cyc", "--name", "cy", "-p", &format!("127.0.0.1:{port}:80")]);
        assert!(Path::new(a["netns_path"].as_str().unwrap()).exists());
        n.detach(&id);
    }
    eprintln!("{count} attach/detach cycles: {:?}", start.elapsed());
    assert_same_host(&n, &before, &host_snap());
    assert!(n.reservations().is_empty(), "{:?}", n.reservations());
    assert_eq!(ipam_before, dir_names(&n.data.join("network/ipam/cyc")));
    assert!(n.records().is_empty());
    assert_eq!(fs::read_to_string(n.data.join("network/cyc/hosts")).unwrap_or_default(), "");
}

#[test]
fn attach_detach_cycles_leave_nothing() {
    cycles(CYCLES);
}

#[test]
#[ignore = "slow: 200 cycles (about a minute)"]
fn attach_detach_cycles_leave_nothing_long() {
    cycles(200);
}

/// Containers running, talking, with ports; then torn down: the host is as before, and
/// `network rm` removes the bridge.
#[test]
fn teardown_leaves_host_as_it_was() {
    let ctx = Ctx::new("netclean");
    let _g = shared();
    let n = Net::new(&ctx);
    let before = host_snap();
    n.create("tidy", &["--subnet", "10.218.0.0/24"]).ok();
    let bridge = n.inspect("tidy")["Bridge"].as_str().unwrap().to_string();
    let s = ctx.id("srv");
    let a = n.attach(&s, &["--network", "tidy", "--name", "srv", "-p", &format!("{}:8080", free_port())]);
    n.web(&s, &a, 8080, "tidy\n");
    let c = ctx.id("cli");
    let a2 = n.attach(&c, &["--network", "tidy"]);
    let o = n.run_sh(&c, &a2, &wget_loop("http://srv:8080/"));
    o.ok();
    assert_eq!(o.stdout, "tidy\n");
    assert!(host_snap().links.contains(&bridge));
    ctx.delete_force(&s).ok();
    ctx.delete_force(&c).ok();
    n.detach(&c);
    n.detach(&s);
    // The DNS server is gone with the last attachment.
    let dr = n.data.to_string_lossy().into_owned();
    assert!(wait_until(Duration::from_secs(5), || !dns_server_running(&dr)), "dns server still running");
    n.rm("tidy");
    assert_same_host(&n, &before, &host_snap());
    assert!(n.reservations().is_empty());
    assert!(dir_names(&n.data.join("network/ipam")).is_empty());
}

fn dns_server_running(data_root: &str) -> bool {
    fs::read_dir("/proc").into_iter().flatten().filter_map(|e| e.ok()).any(|e| {
        let c = read(e.path().join("cmdline"));
        c.contains("dns-serve") && c.contains(data_root)
    })
}

#[test]
fn bad_input_one_line_and_nothing_left() {
    let ctx = Ctx::new("netbad");
    let _g = shared();
    let n = Net::new(&ctx);
    n.create("ok", &["--subnet", "10.219.0.0/24"]).ok();
    // The bridge of "ok" exists from now on.
    let w = ctx.id("warm");
    n.attach(&w, &["--network", "ok", "-p", &format!("{}:80", free_port())]);
    n.detach(&w);
    let before = host_snap();
    let nets_before = n.cmd(&["ls", "-q"]).stdout;
    for (subnet, words) in [
        ("10.300.0.0/16", &["10.300.0.0"][..]),
        ("10.219.0.0/33", &["prefix"]),
        ("10.219.0.7/24", &["host bits"]),
        ("banana", &["banana"]),
        ("10.219.0.0/16", &["overlaps network ok"]),
        ("10.219.0.128/25", &["overlaps network ok"]),
    ] {
        n.create("bad", &["--subnet", subnet]).one_line_error(words);
    }
    n.create("bad", &["--subnet", "10.219.1.0/24", "--gateway", "10.219.2.1"]).one_line_error(&["gateway"]);
    n.create("bad/x", &[]).one_line_error(&["invalid network name"]);
    let id = ctx.id("bad");
    n.track(&id);
    // A port a host process holds.
    let hold = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = hold.local_addr().unwrap().port();
    n.cmd(&["attach", "--network", "ok", "-p", &format!("127.0.0.1:{held}:80"), &id])
        .one_line_error(&[&format!("{held}")]);
    n.cmd(&["attach", "--network", "ok", "-p", &format!("{held}:80"), &id]).one_line_error(&[&format!("{held}")]);
    n.cmd(&["attach", "--network", "ok", "-p", "99999:80", &id]).one_line_error(&["99999"]);
    n.cmd(&["attach", "--network", "nosuchnet", &id]).one_line_error(&["network nosuchnet not found"]);
    n.cmd(&["attach", "--network", "ok", "--ip", "10.99.0.5", &id]).one_line_error(&["10.99.0.5"]);
    n.cmd_env(&[("BERTH_CNI_PATH", "/nonexistent")], &["attach", "--network", "ok", &id])
        .one_line_error(&["network ok: cni plugin \"bridge\" not found in /nonexistent"]);
    // A plugin that fails mid-chain: everything before it is rolled back.
    let bin = fake_cni_dir(
        &ctx,
        "firewall",
        "[ \"$CNI_COMMAND\" = ADD ] || exit 0\necho '{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"firewall says no\",\"details\":\"really\"}'; exit 1",
    );
    n.cmd_env(&[("BERTH_CNI_PATH", bin.to_str().unwrap())], &["attach", "--network", "ok", &id])
        .one_line_error(&["network ok: plugin firewall: firewall says no: really"]);
    drop(hold);
    assert_same_host(&n, &before, &host_snap());
    assert!(n.records().is_empty(), "{:?}", n.records());
    assert!(n.reservations().is_empty(), "{:?}", n.reservations());
    assert_eq!(n.cmd(&["ls", "-q"]).stdout, nets_before);
}

/// A CNI_PATH dir with every real plugin except `plugin`, which runs `script`.
fn fake_cni_dir(ctx: &Ctx, plugin: &str, script: &str) -> PathBuf {
    let d = ctx.tempdir("cni");
    for e in fs::read_dir("/usr/lib/cni").unwrap().filter_map(|e| e.ok()) {
        if e.file_name() != plugin {
            std::os::unix::fs::symlink(e.path(), d.join(e.file_name())).unwrap();
        }
    }
    let p = d.join(plugin);
    fs::write(&p, format!("#!/bin/sh\ncat >/dev/null\n{script}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// berth killed (SIGKILL) in the middle of set-up: the record written before ADD lets
/// `network prune` undo what was done.
#[test]
fn crash_mid_setup_is_cleaned_by_prune() {
    let ctx = Ctx::new("netcrash");
    let _g = shared();
    let n = Net::new(&ctx);
    // prune removes the (then unused) network too: the host is compared from before it.
    let before = host_snap();
    n.create("crash", &["--subnet", "10.220.0.0/24"]).ok();
    let marks = ctx.tempdir("marks");
    let bin = fake_cni_dir(&ctx, "firewall", &format!("touch \"{}/$CNI_CONTAINERID\"; exec sleep 60", marks.display()));
    // Two set-ups killed while the (fake, slow) firewall plugin runs.
    let crash = |id: &str| {
        n.track(id);
        let mark = marks.join(id);
        let mut c = n.command(&["attach", "--network", "crash", "-p", &format!("{}:80", free_port()), id]);
        c.env("BERTH_CNI_PATH", &bin);
        let mut bg = ctx.spawn_cmd(c);
        assert!(wait_file(&mark, Duration::from_secs(20)), "the fake firewall plugin never ran");
        // SAFETY: kill(2) of the process group of a child this test spawned (process_group(0)).
        unsafe { libc::kill(-bg.pid(), libc::SIGKILL) };
        assert!(wait_until(Duration::from_secs(5), || bg.exited()));
        assert!(n.records().contains(&format!("{id}.json")), "record written before ADD");
    };
    let (id1, id2) = (ctx.id("crash1"), ctx.id("crash2"));
    crash(&id1);
    crash(&id2);
    assert_eq!(n.reservations().len(), 2, "the bridge plugin had reserved addresses");
    let m = n.markers.borrow().clone();
    assert_ne!(filtered(&before, &m), filtered(&host_snap(), &m), "the bridge plugin had made a bridge and rules");
    // The next attach of the same container undoes its crashed set-up first.
    let a = n.attach(&id2, &["--network", "crash"]);
    assert!(Path::new(a["netns_path"].as_str().unwrap()).exists());
    n.detach(&id2);
    // prune undoes the other one, then removes the unused network.
    let o = n.cmd(&["prune"]);
    o.ok();
    assert_eq!(o.lines(), ["crash"]);
    n.nets.borrow_mut().clear();
    assert!(n.records().is_empty());
    assert!(n.reservations().is_empty());
    assert_same_host(&n, &before, &host_snap());
}

/// Set-up + teardown time per container, bridge vs none (medians, through the CLI, so each
/// includes two berth execs). `cargo test --release --test integration network_setup_time -- --ignored --nocapture`
#[test]
#[ignore = "measurement"]
fn network_setup_time() {
    let ctx = Ctx::new("netbench");
    let _g = shared();
    let n = Net::new(&ctx);
    n.create("bench", &["--subnet", "10.221.0.0/24"]).ok();
    let median = |net: &str| {
        let mut v: Vec<Duration> = (0..30)
            .map(|i| {
                let id = format!("{}-{i}", ctx.id("b"));
                let t = Instant::now();
                n.attach(&id, &["--network", net]);
                n.detach(&id);
                t.elapsed()
            })
            .collect();
        v.sort();
        v[v.len() / 2]
    };
    let none = median("none");
    let bridge = median("bench");
    let t = Instant::now();
    for _ in 0..30 {
        ctx.exec_cmd(ctx.command_noroot(&["--version"]), TIMEOUT).ok();
    }
    eprintln!(
        "network set-up + teardown, median of 30: none {none:?}, bridge {bridge:?} (one berth exec: {:?})",
        t.elapsed() / 30
    );
}

/// Two data roots making networks from the default pool before either has a container (so
/// before either bridge and route exists) get different subnets: each claims its subnet
/// host-wide; a removed network releases its claim.
#[test]
fn pool_subnets_are_not_given_twice_across_data_roots() {
    let ctx = Ctx::new("netclaim");
    let _g = shared();
    let a = Net::new(&ctx);
    let b = Net::new(&ctx);
    assert_ne!(a.data, b.data);
    a.create("pool", &[]).ok();
    b.create("pool", &[]).ok();
    let sa = a.inspect("pool")["Subnet"].as_str().unwrap_or_default().to_string();
    let sb = b.inspect("pool")["Subnet"].as_str().unwrap_or_default().to_string();
    assert!(!sa.is_empty() && !sb.is_empty());
    assert_ne!(sa, sb, "both data roots got {sa}");
    let claim = Path::new("/run/berth-subnets").join(sa.replace('/', "_"));
    assert!(claim.is_file(), "{} claims {sa}", claim.display());
    // An explicit subnet another data root claimed is refused, naming it.
    b.create("clash", &["--subnet", &sa]).one_line_error(&["overlaps", "pool"]);
    a.cmd(&["rm", "pool"]).ok();
    assert!(!claim.exists(), "the claim of a removed network is released");
    b.cmd(&["rm", "pool"]).ok();
}
