//! docker's single-host network model beyond IPv4 bridges, through `berth container` and
//! `berth network`: every publish form (port ranges, `IP::PORT` random host ports, a host range
//! for one port, `-P` with exposed ranges, udp and sctp) and `container port`; bad publish input
//! refused with one line and nothing made.
//!
//! Each test has its own --data-root and --root, network names, subnets (10.23x.N.0/24) and
//! host ports picked free at run time; host-wide state (iptables, links) is checked only for
//! what names the test's containers or subnets.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// One test's engine: its Ctx (--root), --data-root and the busybox image loaded; dropping it
/// removes its containers and networks.
struct Eng {
    data: PathBuf,
    ctx: Ctx,
}

impl Eng {
    fn new(name: &str) -> Eng {
        let ctx = Ctx::new(name);
        let data = ctx.tempdir("data");
        let e = Eng { data, ctx };
        let (a, _) = crate::container::archives();
        e.cmd(&["image", "load", "-i", a.to_str().unwrap()]).ok();
        e
    }

    fn cmd(&self, args: &[&str]) -> Out {
        let mut c = self.ctx.command(&["--data-root", self.data.to_str().unwrap()]);
        c.args(args);
        self.ctx.exec_cmd(c, Duration::from_secs(60))
    }

    fn c(&self, args: &[&str]) -> Out {
        let mut v = vec!["container"];
        v.extend_from_slice(args);
        self.cmd(&v)
    }

    #[track_caller]
    fn run_d(&self, args: &[&str]) -> String {
        let mut v = vec!["run", "-d"];
        v.extend_from_slice(args);
        let o = self.c(&v);
        o.ok();
        o.stdout.trim().to_string()
    }

    /// `network create --subnet` with a subnet of this process (10.X.N.0/24).
    #[track_caller]
    fn net(&self, name: &str, second: u8, extra: &[&str]) -> String {
        let subnet = format!("10.{second}.{}.0/24", std::process::id() % 250);
        let mut a = vec!["network", "create", "--subnet", &subnet];
        a.extend_from_slice(extra);
        a.push(name);
        self.cmd(&a).ok();
        subnet
    }
}

impl Drop for Eng {
    fn drop(&mut self) {
        let o = self.c(&["ls", "-aq", "--no-trunc"]);
        for id in o.lines() {
            let _ = self.c(&["rm", "-f", id.trim()]);
        }
        let _ = self.cmd(&["network", "prune"]);
    }
}

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The first of `n` consecutive TCP and UDP ports free on every address right now.
fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = crate::common::registry::free_port();
        if base > 65000 {
            continue;
        }
        let ok = (base..base + n)
            .all(|p| TcpListener::bind(("0.0.0.0", p)).is_ok() && std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// GET `path` from addr (retrying while the server starts); the response.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        if s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).is_err() {
            return false;
        }
        last.clear();
        s.read_to_string(&mut last).is_ok() && last.contains(" 200 ")
    });
    assert!(ok, "GET http://{addr}{path}: {last:?}");
    last
}

/// nat and filter rules (IPv4 and IPv6) that name one of `needles`.
fn rules_naming(needles: &[&str]) -> Vec<String> {
    let all = sh("iptables-save -t nat; iptables-save -t filter; ip6tables-save -t nat; ip6tables-save -t filter");
    all.lines().filter(|l| needles.iter().any(|n| l.contains(n))).map(str::to_string).collect()
}

#[test]
fn publish_forms_and_container_port() {
    let e = Eng::new("n6-publish");
    let subnet = e.net("pubnet", 232, &[]);
    let prefix = subnet.rsplit_once('.').unwrap().0.to_string() + ".";
    let base = free_ports(8);
    let (r0, one, udp, sctp) = (base, base + 3, base + 4, base + 5);
    let range = format!("127.0.0.1:{r0}-{}:8000-8002", r0 + 2);
    let host_range = format!("127.0.0.1:{one}-{}:8100", one + 2);
    // Host port = container port: ls groups these into one range, as docker's CLI.
    let same = base + 6;
    let identity = format!("127.0.0.1:{same}-{}:{same}-{}", same + 1, same + 1);
    let id = e.run_d(&[
        "--name",
        "pub1",
        "--network",
        "pubnet",
        "-p",
        &range,
        "-p",
        "127.0.0.1::80",
        "-p",
        &host_range,
        "-p",
        &identity,
        "-p",
        &format!("{udp}:53/udp"),
        "-p",
        &format!("{sctp}:99/sctp"),
        "--expose",
        "7000-7001/udp",
        "-P",
        "busybox",
        "sh",
        "-c",
        "httpd -p 8001 -h /etc; httpd -p 8100 -h /etc; exec sleep 1000",
    ]);
    // The random host port of 127.0.0.1::80, read from `container port NAME 80`.
    let o = e.c(&["port", "pub1", "80"]);
    o.ok();
    let random = o.stdout.trim().strip_prefix("127.0.0.1:").unwrap_or_else(|| panic!("{o}")).to_string();
    assert!(random.parse::<u16>().is_ok_and(|p| p > 0), "{o}");
    // -P gave the exposed udp range free host ports: read them too.
    let p7000 = e.c(&["port", "pub1", "7000/udp"]).stdout.trim().to_string();
    let p7001 = e.c(&["port", "pub1", "7001/udp"]).stdout.trim().to_string();
    assert!(p7000.starts_with("0.0.0.0:") && p7001.starts_with("0.0.0.0:") && p7000 != p7001, "{p7000} {p7001}");
    let mut want = vec![
        format!("53/udp -> 0.0.0.0:{udp}"),
        format!("80/tcp -> 127.0.0.1:{random}"),
        format!("99/sctp -> 0.0.0.0:{sctp}"),
        format!("7000/udp -> {p7000}"),
        format!("7001/udp -> {p7001}"),
        format!("8000/tcp -> 127.0.0.1:{r0}"),
        format!("8001/tcp -> 127.0.0.1:{}", r0 + 1),
        format!("8002/tcp -> 127.0.0.1:{}", r0 + 2),
        format!("8100/tcp -> 127.0.0.1:{one}"),
        format!("{same}/tcp -> 127.0.0.1:{same}"),
        format!("{}/tcp -> 127.0.0.1:{}", same + 1, same + 1),
    ];
    want.sort_by_key(|l| l.split('/').next().unwrap().parse::<u32>().unwrap());
    assert_eq!(e.c(&["port", "pub1"]).lines(), want, "container port lists every mapping, sorted as docker");
    // ls shows the same mappings, inspect's Ports the same host ports.
    let ls = e.c(&["ls"]);
    for w in [
        format!("127.0.0.1:{random}->80/tcp"),
        format!("0.0.0.0:{sctp}->99/sctp"),
        format!("127.0.0.1:{same}-{}->{same}-{}/tcp", same + 1, same + 1),
    ] {
        assert!(ls.stdout.contains(&w), "{w} in {ls}");
    }
    let o = e.c(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "pub1"]);
    let ports: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap_or_else(|x| panic!("{x}: {o}"));
    assert_eq!(ports["8002/tcp"][0]["HostPort"], (r0 + 2).to_string());
    // Traffic: the middle of the range reaches container port 8001, the host range's first port 8100.
    let r = http_get(SocketAddr::from(([127, 0, 0, 1], r0 + 1)), "/berth-fixture");
    assert!(r.contains(FIXTURE_MARK.trim()), "{r}");
    http_get(SocketAddr::from(([127, 0, 0, 1], one)), "/berth-fixture");
    // The udp and sctp DNATs exist and name the container's address.
    let cip = e.c(&["inspect", "-f", "{{.NetworkSettings.Networks.pubnet.IPAddress}}", "pub1"]).stdout;
    let cip = cip.trim().to_string();
    assert!(cip.starts_with(&prefix), "{cip} in {subnet}");
    let rules = rules_naming(&[&format!("{cip}:")]);
    for (proto, port, to) in [("udp", udp, 53), ("sctp", sctp, 99)] {
        assert!(
            rules.iter().any(|l| l.contains(&format!("-p {proto}"))
                && l.contains(&format!("--dport {port}"))
                && l.contains(&format!("{cip}:{to}"))),
            "{proto} {port} DNAT to {cip}:{to} in {rules:#?}"
        );
    }
    // A second container asking for a host range whose first port is taken gets the next one.
    e.run_d(&["--name", "pub2", "--network", "pubnet", "-p", &host_range, "busybox", "sleep", "1000"]);
    assert_eq!(e.c(&["port", "pub2"]).lines(), [format!("8100/tcp -> 127.0.0.1:{}", one + 1)]);
    // Unknown port: docker's wording, exit 1.
    let o = e.c(&["port", "pub1", "81"]);
    assert_eq!(o.code, 1, "{o}");
    o.one_line_error(&["no public port '81' published for pub1"]);
    // rm removes every rule of the container (nothing names its address any more).
    e.c(&["rm", "-f", "pub1", "pub2"]).ok();
    let left = rules_naming(&[&format!("{cip}:"), &format!("{cip}/32")]);
    assert!(left.is_empty(), "rules left after rm: {left:#?}");
    want.clear();
    assert!(TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], r0 + 1)), Duration::from_secs(1)).is_err());
    let _ = id;
}

#[test]
fn bad_publish_input_makes_nothing() {
    let e = Eng::new("n6-badpub");
    e.net("badpub", 233, &[]);
    let p = free_ports(2);
    let held = TcpListener::bind(("127.0.0.1", p)).unwrap();
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (vec!["-p".into(), "8000-8010:80-81".into()], &["invalid ranges specified for container and host ports"]),
        (vec!["-p".into(), "80/foo".into()], &["invalid proto: foo"]),
        (vec!["-p".into(), "[::1:80:80".into()], &["invalid port mapping"]),
        (vec!["-p".into(), format!("{p}:80")], &["not available"]),
        (vec!["-p".into(), format!("{}:80", p + 1), "-p".into(), format!("{}:81", p + 1)], &["published twice"]),
    ];
    for (flags, words) in &cases {
        let mut a: Vec<&str> = vec!["run", "-d", "--network", "badpub"];
        a.extend(flags.iter().map(String::as_str));
        a.extend(["busybox", "sleep", "100"]);
        let o = e.c(&a);
        assert_eq!(o.code, 125, "{flags:?}: {o}");
        o.one_line_error(words);
        // Nothing made: no container (docker removes a container whose start failed only with
        // --rm, berth's run leaves none), no attachment, no namespace, no rule with the port.
        let ls = e.c(&["ls", "-aq"]);
        for id in ls.lines() {
            e.c(&["rm", "-f", id.trim()]).ok();
        }
        let att = std::fs::read_dir(e.data.join("network/attachments")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(att, 0, "{flags:?}: an attachment record is left");
        let rules = rules_naming(&[&format!("--dport {p} "), &format!("--dport {} ", p + 1)]);
        assert!(rules.is_empty(), "{flags:?}: rules left {rules:#?}");
    }
    drop(held);
}

/// Processes running `berth network proxy6` (the IPv6 loopback proxy) whose arguments name `needle`.
fn proxies_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("network proxy6") && c.contains(needle))
        .count()
}

#[test]
fn dual_stack_network_end_to_end() {
    let e = Eng::new("n6-dual");
    let n = std::process::id() % 250;
    let subnet6 = format!("fd00:234:{n:x}::/64");
    let subnet = e.net("v6net", 234, &["--ipv6", "--subnet", &subnet6]);
    let v: serde_json::Value = serde_json::from_str(&e.cmd(&["network", "inspect", "v6net"]).stdout).unwrap();
    assert_eq!((v[0]["EnableIPv6"].clone(), v[0]["Subnet6"].clone()), (true.into(), subnet6.clone().into()));
    let bridge = v[0]["Bridge"].as_str().unwrap().to_string();
    let base = free_ports(2);
    let (all, lo6) = (base, base + 1);
    let web = e.run_d(&[
        "--name",
        "web6",
        "--network",
        "v6net",
        "-p",
        &format!("{all}:80"),
        "-p",
        &format!("[::1]:{lo6}:80"),
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    // NAT66 (added with the first container) for traffic leaving the network, as NAT for IPv4.
    let masq6 = sh("ip6tables-save -t nat");
    assert!(
        masq6.lines().any(|l| l.contains(&format!("-s {subnet6} ! -o {bridge}")) && l.contains("MASQUERADE")),
        "no NAT66 rule for {subnet6}: {masq6}"
    );
    let ip6 = e.c(&["inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", "web6"]).stdout.trim().to_string();
    let prefix6 = subnet6.trim_end_matches("/64");
    assert!(ip6.starts_with(prefix6), "GlobalIPv6Address {ip6:?} in {subnet6}");
    let ip4 = e.c(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web6"]).stdout.trim().to_string();
    assert!(ip4.starts_with(subnet.rsplit_once('.').unwrap().0), "{ip4} in {subnet}");
    assert_eq!(
        e.c(&["port", "web6"]).lines(),
        // docker's natural order: "[::1]" before "[::]" ('1' < ']').
        [format!("80/tcp -> 0.0.0.0:{all}"), format!("80/tcp -> [::1]:{lo6}"), format!("80/tcp -> [::]:{all}")]
    );
    // From the host: [::1] on both forms (the loopback proxy), 127.0.0.1, and the container's
    // IPv6 address directly.
    for addr in [
        SocketAddr::new("::1".parse().unwrap(), all),
        SocketAddr::new("::1".parse().unwrap(), lo6),
        SocketAddr::from(([127, 0, 0, 1], all)),
        SocketAddr::new(ip6.parse().unwrap(), 80),
    ] {
        let r = http_get(addr, "/berth-fixture");
        assert!(r.contains(FIXTURE_MARK.trim()), "{addr}: {r}");
    }
    // [::1]:lo6 is published on IPv6 loopback only: 127.0.0.1:lo6 is not.
    assert!(TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], lo6)), Duration::from_secs(1)).is_err());
    // Between containers by name: the AAAA answer is web6's IPv6 address, and it serves there.
    let script = "a=$(nslookup -type=AAAA web6 | awk '/^Address: .*:/{print $2}'); echo \"aaaa=$a\"; \
                  wget -q -O- \"http://[$a]:80/berth-fixture\"";
    let o = e.c(&["run", "--rm", "--network", "v6net", "busybox", "sh", "-c", script]);
    o.ok();
    assert!(o.stdout.contains(&format!("aaaa={ip6}\n")), "AAAA of web6 is {ip6}: {o}");
    assert!(o.stdout.contains(FIXTURE_MARK.trim()), "{o}");
    // --ip6 and --mac-address pin the interface.
    let pinned = format!("{prefix6}99");
    let o = e.c(&[
        "run",
        "--rm",
        "--network",
        "v6net",
        "--ip6",
        &pinned,
        "--mac-address",
        "02:42:0a:ea:00:63",
        "busybox",
        "ip",
        "addr",
        "show",
        "eth0",
    ]);
    o.ok();
    assert!(
        o.stdout.contains(&format!("inet6 {pinned}/64")) && o.stdout.contains("link/ether 02:42:0a:ea:00:63"),
        "{o}"
    );
    // rm: the proxy, its ip6tables rules and the DNAT to the container's IPv6 address go.
    let id12 = &web[..12];
    assert_eq!(proxies_with(&ip6), 1, "one loopback proxy for web6");
    assert!(!rules_naming(&[&format!("loopback proxy {id12}")]).is_empty());
    e.c(&["rm", "-f", "web6"]).ok();
    let left = rules_naming(&[&format!("loopback proxy {id12}"), &format!("[{ip6}]"), &format!("{ip6}/128")]);
    assert!(left.is_empty(), "ip6tables rules left after rm: {left:#?}");
    assert_eq!(proxies_with(&ip6), 0, "the loopback proxy is gone");
    assert!(TcpStream::connect_timeout(&SocketAddr::new("::1".parse().unwrap(), all), Duration::from_secs(1)).is_err());
    // network rm takes the NAT66 rule with it.
    e.cmd(&["network", "rm", "v6net"]).ok();
    assert!(!sh("ip6tables-save -t nat").contains(&format!("-s {subnet6} ")), "NAT66 rule left");
}

#[test]
fn dual_stack_bad_input_makes_nothing() {
    let e = Eng::new("n6-dualbad");
    let n = std::process::id() % 250;
    let subnet6 = format!("fd00:235:{n:x}::/64");
    e.net("v6a", 235, &["--ipv6", "--subnet", &subnet6]);
    // An overlapping IPv6 subnet: one line, no network.
    let wide = format!("fd00:235:{n:x}::/48");
    let o = e.cmd(&["network", "create", "--ipv6", "--subnet", &format!("10.236.{n}.0/24"), "--subnet", &wide, "v6b"]);
    o.one_line_error(&["overlaps network v6a"]);
    assert!(!e.cmd(&["network", "ls", "-q"]).lines().iter().any(|l| l == "v6b"));
    // An IPv6 subnet without --ipv6.
    e.cmd(&["network", "create", "--subnet", "fd00:237::/64", "v6c"]).one_line_error(&["--ipv6"]);
    // A port held on the host's IPv6 loopback only: the dual-stack publish is refused, nothing
    // is left (attachment, rules, proxy).
    let p = free_ports(1);
    let held = TcpListener::bind(("::1", p)).unwrap();
    let o = e.c(&["run", "-d", "--network", "v6a", "-p", &format!("{p}:80"), "busybox", "sleep", "100"]);
    assert_eq!(o.code, 125, "{o}");
    o.one_line_error(&["not available"]);
    let att = std::fs::read_dir(e.data.join("network/attachments")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(att, 0, "an attachment record is left");
    assert!(rules_naming(&[&format!("--dport {p} ")]).is_empty());
    assert_eq!(proxies_with(&format!("{p}:80")), 0);
    // The same on an IPv4-only network is fine: [::1] is not one of its addresses.
    e.net("v4only", 238, &[]);
    e.run_d(&["--name", "v4c", "--network", "v4only", "-p", &format!("{p}:80"), "busybox", "sleep", "100"]);
    e.c(&["rm", "-f", "v4c"]).ok();
    // An IPv6 host address on an IPv4-only network: one line.
    let o = e.c(&["run", "-d", "--network", "v4only", "-p", &format!("[::1]:{p}:80"), "busybox", "sleep", "100"]);
    o.one_line_error(&["has no IPv6"]);
    for id in e.c(&["ls", "-aq"]).lines() {
        e.c(&["rm", "-f", id.trim()]);
    }
    let att = std::fs::read_dir(e.data.join("network/attachments")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(att, 0, "an attachment record is left");
    drop(held);
    // --ip6 outside the IPv6 subnet, and on an IPv4-only network.
    let o = e.c(&["run", "--rm", "--network", "v6a", "--ip6", "fd00:999::5", "busybox", "true"]);
    o.one_line_error(&["not a free host address"]);
    let o = e.c(&["run", "--rm", "--network", "v4only", "--ip6", "fd00:999::5", "busybox", "true"]);
    o.one_line_error(&["--ipv6"]);
}

/// A LAN made for a test: a network namespace holding one end of each veth pair (the LAN's
/// other hosts, address .1 of each subnet) with the other end on the host as the parent
/// interface of a macvlan or ipvlan network. Removed when dropped.
struct Lan {
    ns: String,
    tag: char,
    parents: Vec<String>,
}

impl Lan {
    fn new(tag: &str) -> Lan {
        let ns = format!("n6lan-{tag}-{}", std::process::id());
        assert!(sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up && echo ok")).contains("ok"));
        Lan { ns, tag: tag.chars().next().unwrap_or('x'), parents: Vec::new() }
    }

    /// A veth pair: `parent` on the host (up, no address), its peer in the LAN namespace with
    /// `peer_cidr`; returns the parent's name.
    fn link(&mut self, i: u32, peer_cidr: &str) -> String {
        let parent = format!("n6{}{}p{i}", self.tag, std::process::id() % 100_000);
        let peer = format!("n6{}{}q{i}", self.tag, std::process::id() % 100_000);
        let ns = &self.ns;
        let o = sh(&format!(
            "ip link add {parent} type veth peer name {peer} && ip link set {peer} netns {ns} && \
             ip link set {parent} up && ip -n {ns} addr add {peer_cidr} dev {peer} && \
             ip -n {ns} link set {peer} up && echo ok"
        ));
        assert!(o.contains("ok"), "veth {parent}: {o}");
        self.parents.push(parent.clone());
        parent
    }

    /// GET http://ip/path from the LAN namespace (retrying while the server starts).
    fn get(&self, ip: &str, path: &str) -> String {
        let mut last = String::new();
        wait_until(Duration::from_secs(10), || {
            last = sh(&format!("ip netns exec {} curl -s -m 2 http://{ip}{path}", self.ns));
            !last.is_empty()
        });
        last
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for p in &self.parents {
            let _ = sh(&format!("ip link del {p} 2>/dev/null"));
        }
        let _ = sh(&format!("ip netns del {} 2>/dev/null", self.ns));
    }
}

/// The host's macvlan and ipvlan links (other tests' veths and bridges come and go).
fn host_links() -> Vec<String> {
    sh("ip -o link show type macvlan; ip -o link show type ipvlan")
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(str::to_string))
        .collect()
}

/// True when the kernel has ipvlan (tried on a veth of the LAN's parent).
fn kernel_has_ipvlan(parent: &str) -> bool {
    let name = format!("n6t{}", std::process::id() % 100_000);
    let ok = sh(&format!("ip link add link {parent} name {name} type ipvlan mode l2 && echo ok")).contains("ok");
    let _ = sh(&format!("ip link del {name} 2>/dev/null"));
    ok
}

#[test]
fn macvlan_and_ipvlan_on_a_lan() {
    let e = Eng::new("n6-lan");
    let n = std::process::id() % 250;
    let mut lan = Lan::new("mv");
    let mv_parent = lan.link(1, &format!("10.239.{n}.1/24"));
    let iv_parent = lan.link(2, &format!("10.240.{n}.1/24"));
    let links_before = host_links();
    // macvlan: containers from the upper half of the LAN's subnet, .129 kept for a LAN host.
    let mv_subnet = format!("10.239.{n}.0/24");
    e.cmd(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        &format!("parent={mv_parent}"),
        "-o",
        "macvlan_mode=bridge",
        "--subnet",
        &mv_subnet,
        "--gateway",
        &format!("10.239.{n}.1"),
        "--ip-range",
        &format!("10.239.{n}.128/25"),
        "--aux-address",
        &format!("printer=10.239.{n}.129"),
        "mvnet",
    ])
    .ok();
    let ls = e.cmd(&["network", "ls"]);
    assert!(ls.lines().iter().any(|l| l.contains("mvnet") && l.contains("macvlan")), "{ls}");
    let mv1 = ["--name", "mv1", "--network", "mvnet", "--network-alias", "web"];
    e.run_d(&[&mv1[..], &["busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]].concat());
    e.run_d(&["--name", "mv2", "--network", "mvnet", "busybox", "sleep", "1000"]);
    let ip = |c: &str| e.c(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", c]).stdout.trim().to_string();
    let (ip1, ip2) = (ip("mv1"), ip("mv2"));
    let last = |ip: &str| ip.rsplit('.').next().unwrap().parse::<u8>().unwrap();
    assert!(last(&ip1) >= 128 && last(&ip2) >= 128, "in --ip-range: {ip1} {ip2}");
    assert!(last(&ip1) != 129 && last(&ip2) != 129, "the aux address is never given: {ip1} {ip2}");
    // The LAN's host reaches the container, the container reaches the LAN's host and the other
    // container (macvlan bridge mode).
    let r = lan.get(&ip1, "/berth-fixture");
    assert!(r.contains(FIXTURE_MARK.trim()), "GET from the LAN: {r:?}");
    let o = e.c(&[
        "exec",
        "mv2",
        "sh",
        "-c",
        &format!("ping -c1 -W2 10.239.{n}.1 && wget -q -O- http://{ip1}/berth-fixture"),
    ]);
    o.ok();
    assert!(o.stdout.contains(FIXTURE_MARK.trim()), "{o}");
    // Names resolve as on docker's macvlan networks: the network's DNS server answers at
    // 127.0.0.11 inside each container (the host has no address the containers can reach).
    let o = e.c(&[
        "exec",
        "mv2",
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup mv1; nslookup web; wget -q -O- http://mv1/berth-fixture",
    ]);
    o.ok();
    assert!(o.stdout.lines().any(|l| l.trim() == "nameserver 127.0.0.11"), "{o}");
    assert_eq!(o.stdout.matches(&format!("Address: {ip1}")).count(), 2, "mv1 and its alias: {o}");
    assert!(o.stdout.contains(FIXTURE_MARK.trim()), "GET by name: {o}");
    let o = e.c(&["exec", "mv1", "nslookup", "mv2"]);
    o.ok();
    assert!(o.stdout.contains(&format!("Address: {ip2}")), "{o}");
    // The DNS server killed: the next container start brings one back, which answers in the
    // running containers again.
    let lock = e.data.join("network/mvnet/dns.lock");
    let pid: i32 = std::fs::read_to_string(&lock).unwrap().trim().parse().unwrap();
    // SAFETY: kill(2) of the DNS server this test's network started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!("/proc/{pid}")).exists()));
    e.run_d(&["--name", "mv3", "--network", "mvnet", "busybox", "sleep", "1000"]);
    let ip3 = ip("mv3");
    let o = e.c(&["exec", "mv2", "sh", "-c", "nslookup mv3; nslookup mv1"]);
    o.ok();
    assert!(o.stdout.contains(&format!("Address: {ip3}")) && o.stdout.contains(&format!("Address: {ip1}")), "{o}");
    e.c(&["rm", "-f", "mv3"]).ok();
    // Published ports are a bridge network's: refused with one line on the LAN.
    let o = e.c(&["run", "-d", "--network", "mvnet", "-p", "8080:80", "busybox", "true"]);
    o.one_line_error(&["ports cannot be published"]);
    // ipvlan l2: the container shares the parent's MAC address (the mark of ipvlan).
    e.cmd(&[
        "network",
        "create",
        "-d",
        "ipvlan",
        "-o",
        &format!("parent={iv_parent}"),
        "-o",
        "ipvlan_mode=l2",
        "--subnet",
        &format!("10.240.{n}.0/24"),
        "--gateway",
        &format!("10.240.{n}.1"),
        "ivnet",
    ])
    .ok();
    let iv_args = ["--name", "iv1", "--network", "ivnet", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"];
    if kernel_has_ipvlan(&iv_parent) {
        e.run_d(&iv_args);
        let ivip = ip("iv1");
        let r = lan.get(&ivip, "/berth-fixture");
        assert!(r.contains(FIXTURE_MARK.trim()), "GET from the LAN over ipvlan: {r:?}");
        let parent_mac = std::fs::read_to_string(format!("/sys/class/net/{iv_parent}/address")).unwrap();
        let mac = e.c(&["inspect", "-f", "{{.NetworkSettings.MacAddress}}", "iv1"]).stdout;
        assert_eq!(mac.trim(), parent_mac.trim(), "an ipvlan interface has its parent's MAC");
        // The resolver at 127.0.0.11 answers on ipvlan too.
        let o = e.c(&["exec", "iv1", "nslookup", "iv1"]);
        o.ok();
        assert!(o.stdout.contains(&format!("Address: {ivip}")), "{o}");
    } else {
        // This kernel has no ipvlan: the plugin's failure is one line and nothing is left.
        let mut a = vec!["run", "-d"];
        a.extend_from_slice(&iv_args);
        let o = e.c(&a);
        o.one_line_error(&["ipvlan"]);
        e.c(&["rm", "-f", "iv1"]);
        let att = std::fs::read_dir(e.data.join("network/attachments")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(att, 2, "only mv1 and mv2 are attached");
        let res = std::fs::read_dir(e.data.join("network/ipam/ivnet")).map(|d| d.count()).unwrap_or(0);
        assert!(res <= 1, "only host-local's last-reserved marker may stay: {res} files");
    }
    // A removed container's name is gone; with the last one the network's DNS server goes.
    e.c(&["rm", "-f", "mv1"]).ok();
    let o = e.c(&["exec", "mv2", "nslookup", "mv1"]);
    assert!(!o.stdout.contains(&format!("Address: {ip1}")), "{o}");
    // Teardown: nothing new on the host's links, the addresses released.
    e.c(&["rm", "-f", "mv2"]).ok();
    let data = e.data.to_string_lossy().into_owned();
    let dns_left = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .any(|c| c.contains("dns-serve mvnet") && c.contains(&data))
    };
    assert!(wait_until(Duration::from_secs(5), || !dns_left()), "the DNS server of mvnet still runs");
    e.c(&["rm", "-f", "iv1"]);
    e.cmd(&["network", "rm", "mvnet", "ivnet"]).ok();
    assert_eq!(host_links(), links_before, "links changed");
    let left: Vec<_> = std::fs::read_dir(e.data.join("network/ipam")).into_iter().flatten().flatten().collect();
    assert!(left.is_empty(), "reservations left: {left:?}");
}

#[test]
fn lan_driver_bad_input_makes_nothing() {
    let e = Eng::new("n6-lanbad");
    let n = std::process::id() % 250;
    let mut lan = Lan::new("bad");
    let parent = lan.link(1, &format!("10.241.{n}.1/24"));
    let subnet = format!("10.241.{n}.0/24");
    let links_before = host_links();
    let p = format!("parent={parent}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-d", "macvlan", "-o", "parent=n6-nonexistent", "--subnet", &subnet], "does not exist"),
        (vec!["-d", "macvlan", "-o", "parent=../lo", "--subnet", &subnet], "does not exist"),
        (vec!["-d", "macvlan", "--subnet", &subnet], "parent="),
        (vec!["-d", "macvlan", "-o", &p, "-o", "macvlan_mode=l2", "--subnet", &subnet], "invalid macvlan_mode"),
        (vec!["-d", "ipvlan", "-o", &p, "-o", "ipvlan_mode=vepa", "--subnet", &subnet], "invalid ipvlan_mode"),
        (vec!["-d", "macvlan", "-o", &p], "--subnet"),
        (vec!["-d", "overlay", "--subnet", &subnet], "unknown driver"),
        (vec!["-d", "macvlan", "-o", &p, "--subnet", &subnet, "--ip-range", "10.1.0.0/25"], "not inside"),
        (vec!["-d", "macvlan", "-o", &p, "--subnet", &subnet, "--aux-address", "x=10.1.0.5"], "aux-address"),
    ];
    for (args, word) in &cases {
        let mut a = vec!["network", "create"];
        a.extend_from_slice(args);
        a.push("badlan");
        let o = e.cmd(&a);
        o.one_line_error(&[word]);
        assert!(!e.cmd(&["network", "ls", "-q"]).lines().iter().any(|l| l == "badlan"), "{args:?} made a network");
        assert!(!e.data.join("network/ipam/badlan").exists(), "{args:?} left reservations");
    }
    assert_eq!(host_links(), links_before, "links changed");
    // Modes are kept in the plugin's configuration.
    e.cmd(&["network", "create", "-d", "macvlan", "-o", &p, "-o", "macvlan_mode=private", "--subnet", &subnet, "mvp"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&e.cmd(&["network", "inspect", "mvp"]).stdout).unwrap();
    assert_eq!(v[0]["Config"]["plugins"][0]["mode"], "private");
    assert_eq!(v[0]["Config"]["plugins"][0]["master"], parent.as_str());
    assert_eq!(v[0]["Driver"], "macvlan");
}

#[test]
fn default_network_dual_stack_from_daemon_json_and_internal_v6() {
    let e = Eng::new("n6-default6");
    let n = std::process::id() % 250;
    let cidr6 = format!("fd00:242:{n:x}::/64");
    // A bad daemon.json is one line and makes nothing.
    std::fs::write(e.data.join("daemon.json"), r#"{"ipv6": "yes"}"#).unwrap();
    let o = e.c(&["run", "--rm", "busybox", "true"]);
    o.one_line_error(&["daemon.json"]);
    assert!(!e.data.join("network/bridge.conflist").exists());
    std::fs::write(e.data.join("daemon.json"), format!(r#"{{"ipv6": true, "fixed-cidr-v6": "{cidr6}"}}"#)).unwrap();
    let p = free_ports(1);
    e.run_d(&["--name", "d6", "-p", &format!("{p}:80"), "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    let v: serde_json::Value = serde_json::from_str(&e.cmd(&["network", "inspect", "bridge"]).stdout).unwrap();
    assert_eq!(v[0]["Subnet6"], cidr6.as_str());
    let ip6 = e.c(&["inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", "d6"]).stdout.trim().to_string();
    assert!(ip6.starts_with(cidr6.trim_end_matches("/64")), "{ip6} in {cidr6}");
    let r = http_get(SocketAddr::new("::1".parse().unwrap(), p), "/berth-fixture");
    assert!(r.contains(FIXTURE_MARK.trim()), "{r}");
    e.c(&["rm", "-f", "d6"]).ok();
    // An internal dual-stack network: no default route of either family, no NAT66.
    let s6 = format!("fd00:243:{n:x}::/64");
    e.net("in6", 243, &["--internal", "--ipv6", "--subnet", &s6]);
    let o = e.c(&[
        "run",
        "--rm",
        "--network",
        "in6",
        "busybox",
        "sh",
        "-c",
        "ip -4 route; ip -6 route; ip -6 addr show eth0",
    ]);
    o.ok();
    assert!(!o.stdout.contains("default"), "an internal network has no default route: {o}");
    assert!(o.stdout.contains(s6.trim_end_matches("::/64")), "{o}");
    assert!(!sh("ip6tables-save -t nat").contains(&format!("-s {s6} ")), "no NAT66 on an internal network");
    e.c(&["run", "--rm", "--network", "in6", "-p", "80", "busybox", "true"]).one_line_error(&["internal"]);
}

/// A TCP server in namespace `ns` on [addr]:port that writes each client's address to `log`.
fn peer_server(ns: &str, addr: &str, port: u16, log: &std::path::Path) -> Bg2 {
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{addr}',{port}))\ns.listen(8)\nwhile True:\n c,a=s.accept()\n \
         open('{}','a').write(a[0]+'\\n')\n c.sendall(b'hello\\n')\n c.close()\n",
        log.display()
    );
    let child = Command::new("ip").args(["netns", "exec", ns, "python3", "-c", &code]).spawn().unwrap();
    Bg2(child)
}

/// A child process killed (by its pid) when dropped.
struct Bg2(std::process::Child);

impl Drop for Bg2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn nat66_and_routed_ipv6_out() {
    let e = Eng::new("n6-nat66");
    let n = std::process::id() % 250;
    // An IPv6 peer outside the host: a namespace on a veth whose host end has fd00:244:N::1 and
    // whose peer has ::2. It routes the routed network's subnet back to the host, not the NAT
    // network's: a reply to a NAT network's container reaches it only masqueraded.
    let mut lan = Lan::new("nat");
    let parent = lan.link(1, &format!("fd00:244:{n:x}::2/64"));
    let host = format!("fd00:244:{n:x}::1");
    let peer = format!("fd00:244:{n:x}::2");
    let routed = format!("fd00:246:{n:x}::/64");
    let o = sh(&format!(
        "ip addr add {host}/64 dev {parent} nodad && ip netns exec {ns} ip -6 route add {routed} via {host} && echo ok",
        ns = lan.ns
    ));
    assert!(o.contains("ok"), "{o}");
    let log = e.ctx.dir.join("peer.log");
    let _server = peer_server(&lan.ns, "::", 9000, &log);
    e.net("nat6", 245, &["--ipv6", "--subnet", &format!("fd00:245:{n:x}::/64")]);
    e.net("rt6", 246, &["--ipv6", "--subnet", &routed, "-o", "com.docker.network.bridge.gateway_mode_ipv6=routed"]);
    let script = format!(
        "for i in $(seq 30); do nc -w 2 {peer} 9000 </dev/null | grep -q hello && exit 0; sleep 0.3; done; exit 1"
    );
    let client = |net: &str| {
        // The loop in a subshell: its `exit` must not end the container before inspect reads
        // its address (the gateway is usable at start, so the first try connects at once).
        let o = e.c(&["run", "-d", "--network", net, "busybox", "sh", "-c", &format!("({script}); sleep 100")]);
        o.ok();
        let id = o.stdout.trim().to_string();
        let ip6 = e.c(&["inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", &id]).stdout.trim().to_string();
        (id, ip6)
    };
    let (_, nat_ip) = client("nat6");
    let (_, routed_ip) = client("rt6");
    let mut seen = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        seen = std::fs::read_to_string(&log).unwrap_or_default();
        seen.lines().count() >= 2
    });
    assert!(ok, "the peer saw {seen:?}");
    let seen: Vec<&str> = seen.lines().collect();
    // NAT66: the peer saw the host's address; routed: the container's own.
    assert!(seen.contains(&host.as_str()) && !seen.contains(&nat_ip.as_str()), "NAT66: {seen:?} (container {nat_ip})");
    assert!(seen.contains(&routed_ip.as_str()), "routed: {seen:?} (container {routed_ip})");
    let nat = sh("ip6tables-save -t nat");
    assert!(!nat.contains(&format!("-s {routed} ")), "a routed network has no NAT66 rule");
    let v: serde_json::Value = serde_json::from_str(&e.cmd(&["network", "inspect", "rt6"]).stdout).unwrap();
    assert_eq!(v[0]["Options"]["com.docker.network.bridge.gateway_mode_ipv6"], "routed");
    // A bad gateway mode is one line.
    e.cmd(&["network", "create", "-o", "com.docker.network.bridge.gateway_mode_ipv6=open", "bad6"])
        .one_line_error(&["nat or routed"]);
}

#[test]
fn udp_published_on_both_families_and_ipv6_loopback() {
    let e = Eng::new("n6-udp");
    let n = std::process::id() % 250;
    e.net("udp6", 247, &["--ipv6", "--subnet", &format!("fd00:247:{n:x}::/64")]);
    let p = free_ports(1);
    // busybox has no UDP server: the host's python3 (its /usr read-only) echoes datagrams.
    let echo = "import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.bind(('::',5353))\n\
                while True:\n d,a=s.recvfrom(2048)\n s.sendto(b'echo:'+d,a)\n";
    let id = e.run_d(&[
        "--network",
        "udp6",
        "-p",
        &format!("{p}:5353/udp"),
        "-v",
        "/usr:/usr:ro",
        "-v",
        "/usr/lib:/lib:ro",
        "-v",
        "/usr/lib64:/lib64:ro",
        "busybox",
        "/usr/bin/python3",
        "-c",
        echo,
    ]);
    // The network's bridge is new: its gateway address went through duplicate address detection
    // when the container's veth joined. `run` returns only once the gateway is usable (a
    // tentative address is no source and answers no neighbour solicitation).
    let gw6: std::net::Ipv6Addr = format!("fd00:247:{n:x}::1").parse().unwrap();
    let hex: String = gw6.octets().iter().map(|b| format!("{b:02x}")).collect();
    let inet6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap();
    let line = inet6.lines().find(|l| l.starts_with(&hex)).unwrap_or_else(|| panic!("{gw6} not on the host"));
    let flags = u32::from_str_radix(line.split_whitespace().nth(4).unwrap(), 16).unwrap();
    assert_eq!(flags & 0x48, 0, "gateway {gw6} tentative or failed when run returned: {line}");
    for host in ["::1", "127.0.0.1"] {
        let addr = SocketAddr::new(host.parse().unwrap(), p);
        let s = std::net::UdpSocket::bind(if host.contains(':') { "[::1]:0" } else { "127.0.0.1:0" }).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut got = String::new();
        let ok = wait_until(Duration::from_secs(20), || {
            let _ = s.send_to(b"ping", addr);
            let mut b = [0u8; 64];
            match s.recv_from(&mut b) {
                Ok((k, _)) => {
                    got = String::from_utf8_lossy(&b[..k]).into_owned();
                    true
                }
                Err(_) => false,
            }
        });
        if !(ok && got == "echo:ping") {
            let logs = e.c(&["logs", &id]);
            panic!(
                "udp via {addr}: {got:?}; container logs: {logs}; rules: {:#?}",
                rules_naming(&[&format!("--dport {p}")])
            );
        }
    }
    // The loopback proxy's socket for this client sends from the gateway, whatever other
    // addresses the host has.
    let ip6 = e.c(&["inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", &id]).stdout.trim().to_string();
    let socks = sh("ss -H -u -n -a");
    let relay: Vec<&str> = socks.lines().filter(|l| l.contains(&format!("[{ip6}]:5353"))).collect();
    assert!(
        !relay.is_empty() && relay.iter().all(|l| l.contains(&format!("[{gw6}]:"))),
        "relay sockets to [{ip6}]:5353 not from [{gw6}]: {relay:#?}"
    );
    let id12 = &id[..12];
    assert!(rules_naming(&[&format!("loopback proxy {id12}")]).iter().any(|l| l.contains("-p udp")));
    e.c(&["rm", "-f", &id]).ok();
    assert!(rules_naming(&[&format!("loopback proxy {id12}")]).is_empty());
}

/// A stand-in Engine API on a unix socket for docker CLI 28: /_ping, a container's inspect
/// (`NetworkSettings.Ports` as berth's inspect has it) and the container list (`Ports` built
/// from the same), so the real CLI formats `docker port` and `docker ps` from berth's data.
const STUB_API: &str = r#"
import json, os, socketserver, sys
from http.server import BaseHTTPRequestHandler
sock, name, ports = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
listing = []
for k, v in ports.items():
    num, proto = k.split("/")
    for b in v or []:
        listing.append({"IP": b["HostIp"], "PrivatePort": int(num), "PublicPort": int(b["HostPort"]), "Type": proto})
class H(BaseHTTPRequestHandler):
    def address_string(self):
        return "stub"
    def log_message(self, *a):
        pass
    def send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_HEAD(self):
        self.send_response(200); self.send_header("Api-Version", "1.41"); self.end_headers()
    def do_GET(self):
        p = self.path.split("?")[0]
        if p.endswith("/_ping"):
            self.send_response(200); self.send_header("Api-Version", "1.41"); self.send_header("Content-Length", "2")
            self.end_headers(); self.wfile.write(b"OK")
        elif p.endswith("/containers/json"):
            self.send([{"Id": "0" * 64, "Names": ["/" + name], "Image": "busybox", "Command": "sh", "Created": 0,
                        "Ports": listing, "Labels": {}, "State": "running", "Status": "Up", "Mounts": []}])
        elif p.endswith("/containers/%s/json" % name):
            self.send({"Id": "0" * 64, "Name": "/" + name, "State": {"Running": True}, "Config": {},
                       "HostConfig": {}, "NetworkSettings": {"Ports": ports}})
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
S(sock, H).serve_forever()
"#;

#[test]
fn container_port_and_ls_match_docker_cli() {
    if Command::new("docker").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no docker CLI");
        return;
    }
    let e = Eng::new("n6-dockercli");
    let n = std::process::id() % 250;
    e.net("cmp6", 248, &["--ipv6", "--subnet", &format!("fd00:248:{n:x}::/64")]);
    let base = free_ports(6);
    let id = e.run_d(&[
        "--name",
        "cmpweb",
        "--network",
        "cmp6",
        "-p",
        &format!("{base}:80"),
        "-p",
        &format!("[::1]:{}:81", base + 1),
        "-p",
        &format!("127.0.0.1:{}-{}:{}-{}", base + 2, base + 3, base + 2, base + 3),
        "-p",
        "127.0.0.1::8080",
        "-p",
        &format!("{}:53/udp", base + 4),
        "busybox",
        "sleep",
        "1000",
    ]);
    let ports = e.c(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "cmpweb"]).stdout.trim().to_string();
    let sock = e.ctx.dir.join("api.sock");
    let _stub =
        Bg2(Command::new("python3").args(["-c", STUB_API, sock.to_str().unwrap(), "cmpweb", &ports]).spawn().unwrap());
    assert!(wait_until(Duration::from_secs(10), || sock.exists()), "stub API did not start");
    let docker = |args: &[&str]| {
        let o = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", e.ctx.dir.join("docker-config"))
            .output()
            .unwrap();
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // `docker port NAME` and `docker port NAME PORT` print what `berth container port` prints.
    let ours = e.c(&["port", "cmpweb"]);
    ours.ok();
    assert_eq!(ours.stdout, docker(&["port", "cmpweb"]), "container port vs docker port");
    assert_eq!(ours.lines().len(), 8, "{ours}");
    for p in ["80", "81/tcp", "53/udp"] {
        assert_eq!(e.c(&["port", "cmpweb", p]).stdout, docker(&["port", "cmpweb", p]), "port {p}");
    }
    // ls's PORTS is docker ps's.
    let ls = e.c(&["ls", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(ls.lines()[0].trim()).unwrap();
    assert_eq!(v["Ports"].as_str().unwrap(), docker(&["ps", "--format", "{{.Ports}}"]).trim(), "ls vs docker ps");
    e.c(&["rm", "-f", &id]).ok();
}
