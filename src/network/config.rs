//! Network definitions: one CNI conflist per network at <data-root>/network/<name>.conflist (berth's
//! own fields under the "berth" key, which CNI ignores), per-network state in <data-root>/network/<name>/.

use super::ipnet::{self, Ipv4Net, Ipv6Net};
use super::{cni, NetError};
use serde_json::{json, Value};
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// The default network (docker's "bridge"): created on first use, no name resolution.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's bridge is berth0 for the default data-root.
pub const DEFAULT_BRIDGE: &str = "berth0";
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";

/// berth0 for /var/lib/berth, and `berth-` + 8 hex digits of a hash of the path for any other
/// data-root: two data-roots never share a bridge (their address allocations are separate).
pub fn default_bridge_name(data_root: &Path) -> String {
    let abs = fs::canonicalize(data_root).unwrap_or_else(|_| data_root.to_path_buf());
    if abs == Path::new(DEFAULT_DATA_ROOT) {
        return DEFAULT_BRIDGE.to_string();
    }
    // FNV-1a: stable across builds and releases (std's hasher is not).
    let mut h: u32 = 0x811c_9dc5;
    for b in abs.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("berth-{h:08x}")
}

/// A host route that overlaps `net` on a device other than `bridge`: another data-root's
/// network, or a host interface added since the network was made.
pub fn subnet_clash(net: &Network) -> Option<String> {
    if !net.is_bridge() {
        // A macvlan or ipvlan network is the parent's LAN: its routes are expected.
        return None;
    }
    let v4 = ipnet::host_subnets()
        .into_iter()
        .find(|(h, dev)| h.overlaps(&net.subnet) && dev != &net.bridge)
        .map(|(h, dev)| format!("network {}: subnet {} overlaps host route {h} on {dev}", net.name, net.subnet));
    v4.or_else(|| {
        let s6 = net.subnet6?;
        ipnet::host_subnets6()
            .into_iter()
            .find(|(h, dev)| h.overlaps(&s6) && dev != &net.bridge)
            .map(|(h, dev)| format!("network {}: subnet {s6} overlaps host route {h} on {dev}", net.name))
    })
}

#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The Linux bridge (bridge driver; empty for macvlan and ipvlan).
    pub bridge: String,
    /// bridge, macvlan or ipvlan.
    pub driver: String,
    /// The host interface macvlan and ipvlan networks sit on.
    pub parent: Option<String>,
    pub internal: bool,
    /// The IPv6 subnet and gateway of a dual-stack network (`--ipv6`).
    pub subnet6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    pub created: String,
    /// The CNI network configuration list.
    pub conflist: Value,
}

impl Network {
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }

    /// User-defined networks resolve container names: a bridge's through a DNS server on its
    /// gateway (an address of the host), a macvlan or ipvlan network's (whose gateway is a
    /// router of the LAN) through the same server reached at 127.0.0.11 inside each container.
    pub fn has_dns(&self) -> bool {
        !self.is_default()
    }

    /// The network's DNS server listens in each container's namespace (at [`super::dns::IN_CONTAINER`]),
    /// not on a host address.
    pub fn dns_in_container(&self) -> bool {
        self.has_dns() && !self.is_bridge()
    }

    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
}

pub fn root(data_root: &Path) -> PathBuf {
    data_root.join("network")
}

fn conf_path(data_root: &Path, name: &str) -> PathBuf {
    root(data_root).join(format!("{name}.conflist"))
}

/// Per-network state: the DNS record file `hosts`, `dns.lock` (held by the DNS server).
pub fn state_dir(data_root: &Path, name: &str) -> PathBuf {
    root(data_root).join(name)
}

/// host-local's dataDir: reservations under <data-root>/network/ipam/<network>/.
pub fn ipam_dir(data_root: &Path) -> PathBuf {
    root(data_root).join("ipam")
}

/// Exclusive lock over network metadata (networks, attachment records, DNS records, ports).
pub fn lock(data_root: &Path) -> Result<fs::File, NetError> {
    let dir = root(data_root);
    fs::create_dir_all(&dir).map_err(|e| NetError::io("create", &dir, e))?;
    let p = dir.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| NetError::io("open", &p, e))?;
    f.lock().map_err(|e| NetError::io("lock", &p, e))?;
    Ok(f)
}

/// Writes `data` to `path` through a temp file and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), NetError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, data).map_err(|e| NetError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        NetError::io("rename", path, e)
    })
}

pub fn validate_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
    if !ok {
        return Err(NetError::Msg(format!(
            "invalid network name {name:?}: use letters, digits, '_', '.', '-' (at most 64, starting with a letter or digit)"
        )));
    }
    Ok(())
}

pub fn load(data_root: &Path, name: &str) -> Result<Network, NetError> {
    if validate_name(name).is_err() {
        return Err(NetError::NotFound(name.to_string()));
    }
    let p = conf_path(data_root, name);
    let data = match fs::read(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(NetError::NotFound(name.to_string())),
        Err(e) => return Err(NetError::io("read", &p, e)),
    };
    let v: Value = serde_json::from_slice(&data).map_err(|e| NetError::Msg(format!("{}: {e}", p.display())))?;
    from_conflist(v).ok_or_else(|| NetError::Msg(format!("{}: not a berth network", p.display())))
}

fn from_conflist(v: Value) -> Option<Network> {
    let b = &v["berth"];
    Some(Network {
        name: v["name"].as_str()?.to_string(),
        id: b["id"].as_str()?.to_string(),
        subnet: Ipv4Net::parse(b["subnet"].as_str()?).ok()?,
        gateway: b["gateway"].as_str()?.parse().ok()?,
        bridge: b["bridge"].as_str()?.to_string(),
        driver: b["driver"].as_str().unwrap_or("bridge").to_string(),
        parent: b["parent"].as_str().map(str::to_string),
        internal: b["internal"].as_bool().unwrap_or(false),
        subnet6: b["subnet6"].as_str().and_then(|x| Ipv6Net::parse(x).ok()),
        gateway6: b["gateway6"].as_str().and_then(|x| x.parse().ok()),
        created: b["created"].as_str().unwrap_or("").to_string(),
        conflist: v,
    })
}

/// Every network of this data-root, by name.
pub fn list(data_root: &Path) -> Vec<Network> {
    let mut v: Vec<Network> = fs::read_dir(root(data_root))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".conflist").map(str::to_string))
        .filter_map(|n| load(data_root, &n).ok())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The CNI list of a network: bridge (+ host-local, one range per address family), portmap,
/// firewall, tuning.
pub fn conflist(data_root: &Path, name: &str, meta: &Value, a: &Addressing, bridge: &str, internal: bool) -> Value {
    let ipam = ipam(data_root, a, internal);
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        // Masquerading is one rule per network (and family) that berth adds
        // (ensure_masquerade) rather than the plugin's chain per container: ~15 iptables runs
        // less per container.
        "ipMasq": false,
        "hairpinMode": true,
        "capabilities": {"ips": true, "mac": true},
        "ipam": ipam,
    })];
    if !internal {
        plugins.push(json!({"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}));
    }
    plugins.push(json!({"type": "firewall", "backend": "iptables"}));
    plugins.push(json!({"type": "tuning"}));
    json!({"cniVersion": cni::CNI_VERSION, "name": name, "plugins": plugins, "berth": meta})
}

/// A network's addresses: IPv4 always, IPv6 on a dual-stack network.
#[derive(Clone, Copy, Debug)]
pub struct Addressing {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub subnet6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    /// --ip-range: containers get addresses of this part of the subnet only.
    pub ip_range: Option<Ipv4Net>,
}

/// host-local's ranges and routes for `a`.
pub fn ipam(data_root: &Path, a: &Addressing, internal: bool) -> Value {
    let mut r4 = json!({"subnet": a.subnet.to_string(), "gateway": a.gateway.to_string()});
    if let Some(r) = a.ip_range {
        let start = if r.addr == a.subnet.addr { a.subnet.first_host() } else { r.addr };
        let end = if r.broadcast() == a.subnet.broadcast() {
            Ipv4Addr::from(u32::from(r.broadcast()) - 1)
        } else {
            r.broadcast()
        };
        r4["rangeStart"] = json!(start.to_string());
        r4["rangeEnd"] = json!(end.to_string());
    }
    let mut ranges = vec![json!([r4])];
    if let (Some(s6), Some(g6)) = (a.subnet6, a.gateway6) {
        ranges.push(json!([{"subnet": s6.to_string(), "gateway": g6.to_string()}]));
    }
    let mut ipam = json!({
        "type": "host-local",
        "ranges": ranges,
        "dataDir": ipam_dir(data_root).to_string_lossy(),
    });
    if !internal {
        let mut routes = vec![json!({"dst": "0.0.0.0/0"})];
        if a.subnet6.is_some() {
            routes.push(json!({"dst": "::/0"}));
        }
        ipam["routes"] = Value::Array(routes);
    }
    ipam
}

/// What `network create` asks for.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// --subnet values (at most one per family).
    pub subnets: Vec<String>,
    /// --gateway values (at most one per family).
    pub gateways: Vec<String>,
    pub internal: bool,
    /// Dual-stack: an IPv6 subnet too (a random unique local /64 when none is given).
    pub ipv6: bool,
    /// bridge (default), macvlan or ipvlan.
    pub driver: String,
    /// -o KEY=VALUE driver options.
    pub opts: Vec<(String, String)>,
    /// --ip-range (IPv4, inside the subnet).
    pub ip_range: Option<String>,
    /// --aux-address NAME=IP: addresses of the subnet never given to a container.
    pub aux: Vec<(String, String)>,
}

fn random_id() -> Result<String, NetError> {
    let mut b = [0u8; 32];
    let mut f = fs::File::open("/dev/urandom").map_err(|e| NetError::io("open", Path::new("/dev/urandom"), e))?;
    std::io::Read::read_exact(&mut f, &mut b).map_err(|e| NetError::io("read", Path::new("/dev/urandom"), e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], NetError> {
    let mut b = [0u8; N];
    let mut f = fs::File::open("/dev/urandom").map_err(|e| NetError::io("open", Path::new("/dev/urandom"), e))?;
    std::io::Read::read_exact(&mut f, &mut b).map_err(|e| NetError::io("read", Path::new("/dev/urandom"), e))?;
    Ok(b)
}

/// Splits values by address family (a ':' is IPv6); more than one of a family is refused.
fn by_family<'a>(what: &str, vals: &'a [String]) -> Result<(Option<&'a str>, Option<&'a str>), NetError> {
    let (six, four): (Vec<&String>, Vec<&String>) = vals.iter().partition(|v| v.contains(':'));
    if four.len() > 1 || six.len() > 1 {
        return Err(NetError::Msg(format!("at most one IPv4 and one IPv6 {what} are supported")));
    }
    Ok((four.first().map(|s| s.as_str()), six.first().map(|s| s.as_str())))
}

/// The IPv4 and IPv6 addressing of a new network, checked against the other networks and the
/// host's routes.
fn addressing(
    o: &CreateOptions,
    existing: &[Network],
    claimed: &[(Ipv4Net, String)],
    lan: bool,
) -> Result<Addressing, NetError> {
    let (subnet, subnet6) = by_family("subnet", &o.subnets)?;
    let (gateway, gateway6) = by_family("gateway", &o.gateways)?;
    if (subnet6.is_some() || gateway6.is_some()) && !o.ipv6 {
        return Err(NetError::Msg("an IPv6 subnet or gateway needs --ipv6".into()));
    }
    // A macvlan or ipvlan network is the parent's LAN: the host routes its subnet already.
    let host = if lan { Vec::new() } else { ipnet::host_subnets() };
    if lan && subnet.is_none() {
        return Err(NetError::Msg(format!("the {} driver needs the LAN's --subnet", o.driver)));
    }
    let subnet = match subnet {
        Some(s) => {
            let net = Ipv4Net::parse(s).map_err(NetError::Msg)?;
            if let Some(o) = existing.iter().find(|o| o.subnet.overlaps(&net)) {
                return Err(NetError::Msg(format!("subnet {net} overlaps network {} ({})", o.name, o.subnet)));
            }
            if let Some((h, dev)) = host.iter().find(|(h, _)| h.overlaps(&net)) {
                return Err(NetError::Msg(format!("subnet {net} overlaps host route {h} on {dev}")));
            }
            if let Some((c, who)) = claimed.iter().find(|(c, _)| c.overlaps(&net)) {
                return Err(NetError::Msg(format!("subnet {net} overlaps {c} of {who}")));
            }
            net
        }
        None => ipnet::default_pool()
            .find(|n| {
                !existing.iter().any(|o| o.subnet.overlaps(n))
                    && !host.iter().any(|(h, _)| h.overlaps(n))
                    && !claimed.iter().any(|(c, _)| c.overlaps(n))
            })
            .ok_or_else(|| NetError::Msg("no free subnet left in the default pools: use --subnet".into()))?,
    };
    let gw = match gateway {
        Some(g) => {
            let ip: Ipv4Addr = g.parse().map_err(|_| NetError::Msg(format!("invalid gateway {g:?}")))?;
            if !subnet.is_host(ip) {
                return Err(NetError::Msg(format!("gateway {ip} is not a host address of subnet {subnet}")));
            }
            ip
        }
        None => subnet.first_host(),
    };
    let (mut subnet6_out, mut gateway6_out) = (None, None);
    if o.ipv6 {
        let host6 = if lan { Vec::new() } else { ipnet::host_subnets6() };
        let net = match subnet6 {
            Some(s) => Ipv6Net::parse(s).map_err(NetError::Msg)?,
            None => ipnet::random_ula64(&random_bytes::<5>()?),
        };
        if let Some(o) = existing.iter().find(|o| o.subnet6.is_some_and(|x| x.overlaps(&net))) {
            let theirs = o.subnet6.map(|x| x.to_string()).unwrap_or_default();
            return Err(NetError::Msg(format!("subnet {net} overlaps network {} ({theirs})", o.name)));
        }
        if let Some((h, dev)) = host6.iter().find(|(h, _)| h.overlaps(&net)) {
            return Err(NetError::Msg(format!("subnet {net} overlaps host route {h} on {dev}")));
        }
        let g6 = match gateway6 {
            Some(g) => {
                let ip: Ipv6Addr = g.parse().map_err(|_| NetError::Msg(format!("invalid gateway {g:?}")))?;
                if !net.is_host(ip) {
                    return Err(NetError::Msg(format!("gateway {ip} is not a host address of subnet {net}")));
                }
                ip
            }
            None => net.first_host(),
        };
        subnet6_out = Some(net);
        gateway6_out = Some(g6);
    }
    let ip_range = match &o.ip_range {
        None => None,
        Some(r) => {
            let net = Ipv4Net::parse(r).map_err(NetError::Msg)?;
            if !(subnet.contains(net.addr) && net.prefix >= subnet.prefix) {
                return Err(NetError::Msg(format!("--ip-range {net} is not inside subnet {subnet}")));
            }
            Some(net)
        }
    };
    Ok(Addressing { subnet, gateway: gw, subnet6: subnet6_out, gateway6: gateway6_out, ip_range })
}

/// Creates a network (the lock must be held). No IPv4 subnet picks the first free one of the
/// default pool.
pub fn create(data_root: &Path, name: &str, o: &CreateOptions) -> Result<Network, NetError> {
    validate_name(name)?;
    if matches!(name, "host" | "none") || name.starts_with("container:") {
        return Err(NetError::Msg(format!("network name {name:?} is reserved")));
    }
    if conf_path(data_root, name).exists() {
        return Err(NetError::Msg(format!("network {name} already exists")));
    }
    let is_default = name == DEFAULT_NETWORK;
    let driver = if o.driver.is_empty() { "bridge" } else { o.driver.as_str() };
    let lan = match driver {
        "bridge" => None,
        "macvlan" | "ipvlan" => Some(super::lan::options(name, driver, &o.opts)?),
        d => return Err(NetError::Msg(format!("network {name}: unknown driver {d:?} (bridge, macvlan or ipvlan)"))),
    };
    // docker's gateway modes: "nat" (masquerade out, the default) or "routed" (no NAT: the
    // LAN routes the subnet back to the host).
    let (mut routed4, mut routed6) = (false, false);
    if lan.is_none() {
        for (k, v) in &o.opts {
            let routed = match v.as_str() {
                "nat" => false,
                "routed" => true,
                _ => return Err(NetError::Msg(format!("network {name}: invalid {k} {v:?} (nat or routed)"))),
            };
            match k.as_str() {
                "com.docker.network.bridge.gateway_mode_ipv4" => routed4 = routed,
                "com.docker.network.bridge.gateway_mode_ipv6" => routed6 = routed,
                _ => return Err(NetError::Msg(format!("network {name}: unknown bridge option {k:?}"))),
            }
        }
    }
    let existing = list(data_root);
    // Held until the network's config is written (its claim then counts as live).
    let host = super::claims::lock();
    let claimed = if lan.is_some() { Vec::new() } else { super::claims::others(&host, data_root, name) };
    let a = addressing(o, &existing, &claimed, lan.is_some())?;
    let mut aux = Vec::new();
    for (n, ip) in &o.aux {
        let addr: Ipv4Addr = ip.parse().map_err(|_| NetError::Msg(format!("invalid --aux-address {n}={ip}")))?;
        if !a.subnet.is_host(addr) {
            return Err(NetError::Msg(format!("--aux-address {n}={ip} is not a host address of {}", a.subnet)));
        }
        aux.push((n.clone(), addr));
    }
    let id = random_id()?;
    let internal = o.internal;
    let bridge_name = match (&lan, is_default) {
        (Some(_), _) => String::new(),
        (None, true) => default_bridge_name(data_root),
        (None, false) => format!("br-{}", &id[..12]),
    };
    let mut meta = json!({
        "id": id, "subnet": a.subnet.to_string(), "gateway": a.gateway.to_string(), "bridge": bridge_name,
        "internal": internal, "created": berth::logging::now_rfc3339(), "masquerade": !internal && lan.is_none(),
        "driver": driver, "nat4": !routed4, "nat6": !routed6,
    });
    if let (Some(s6), Some(g6)) = (a.subnet6, a.gateway6) {
        meta["subnet6"] = json!(s6.to_string());
        meta["gateway6"] = json!(g6.to_string());
    }
    if let Some(r) = a.ip_range {
        meta["ip_range"] = json!(r.to_string());
    }
    if !aux.is_empty() {
        meta["aux_addresses"] = aux.iter().map(|(n, ip)| (n.clone(), json!(ip.to_string()))).collect();
    }
    let v = match &lan {
        Some(l) => {
            meta["parent"] = json!(l.parent);
            meta["mode"] = json!(l.mode);
            super::lan::conflist(data_root, name, &meta, &a, l, internal)
        }
        None => conflist(data_root, name, &meta, &a, &bridge_name, internal),
    };
    let data = serde_json::to_vec_pretty(&v).map_err(|e| NetError::Msg(format!("encode network {name}: {e}")))?;
    // Auxiliary addresses are host-local reservations made before any container: files named
    // by the address in the network's reservation directory.
    let ipam = ipam_dir(data_root).join(name);
    if !aux.is_empty() {
        fs::create_dir_all(&ipam).map_err(|e| NetError::io("create", &ipam, e))?;
        for (n, ip) in &aux {
            let p = ipam.join(ip.to_string());
            if let Err(e) = fs::write(&p, format!("aux-address {n}")) {
                let _ = fs::remove_dir_all(&ipam);
                return Err(NetError::io("write", &p, e));
            }
        }
    }
    if let Err(e) = write_atomic(&conf_path(data_root, name), &data) {
        let _ = fs::remove_dir_all(&ipam);
        return Err(e);
    }
    if lan.is_none() {
        super::claims::claim(&host, data_root, name, &a.subnet);
    }
    from_conflist(v).ok_or_else(|| NetError::Msg(format!("network {name}: bad configuration")))
}

/// The iptables arguments of a network's masquerade rule for `subnet` with `op` (-C, -A or -D).
fn masquerade_args(net: &Network, subnet: &str, op: &str) -> Vec<String> {
    let comment = format!("berth network {}", &net.id[..net.id.len().min(12)]);
    [
        "-w",
        "-t",
        "nat",
        op,
        "POSTROUTING",
        "-s",
        subnet,
        "!",
        "-o",
        &net.bridge,
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        "MASQUERADE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs iptables (`ipv6`: ip6tables, the same backend: Debian's alternatives switch both).
pub fn iptables(ipv6: bool, args: &[String]) -> Result<std::process::Output, NetError> {
    let prog = if ipv6 { "ip6tables" } else { "iptables" };
    std::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| NetError::io("run", Path::new(prog), e))
}

/// (is IPv6, subnet) of each family the network masquerades (not the routed ones).
fn families(net: &Network) -> Vec<(bool, String)> {
    let b = &net.conflist["berth"];
    let mut v = Vec::new();
    if b["nat4"] != false {
        v.push((false, net.subnet.to_string()));
    }
    if let Some(s6) = net.subnet6.filter(|_| b["nat6"] != false) {
        v.push((true, s6.to_string()));
    }
    v
}

/// Adds the network's masquerade rules (traffic from its subnets leaving by another interface:
/// NAT for IPv4, NAT66 for IPv6) unless they are there; networks made before berth owned the
/// rule carry ipMasq and are skipped.
pub fn ensure_masquerade(net: &Network) -> Result<(), NetError> {
    if net.conflist["berth"]["masquerade"] != true {
        return Ok(());
    }
    for (six, subnet) in families(net) {
        if iptables(six, &masquerade_args(net, &subnet, "-C"))?.status.success() {
            continue;
        }
        let o = iptables(six, &masquerade_args(net, &subnet, "-A"))?;
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            return Err(NetError::Msg(format!("network {}: add masquerade rule: {}", net.name, err.trim())));
        }
    }
    Ok(())
}

/// Removes the network's masquerade rules (every copy); missing is fine.
pub fn remove_masquerade(net: &Network) {
    if net.conflist["berth"]["masquerade"] != true {
        return;
    }
    for (six, subnet) in families(net) {
        for _ in 0..8 {
            match iptables(six, &masquerade_args(net, &subnet, "-D")) {
                Ok(o) if o.status.success() => {}
                _ => break,
            }
        }
    }
}

/// The default network, created on first use (the lock must be held), dual-stack when the
/// data root's daemon.json asks for it.
pub fn ensure_default(data_root: &Path) -> Result<Network, NetError> {
    match load(data_root, DEFAULT_NETWORK) {
        Err(NetError::NotFound(_)) => create(data_root, DEFAULT_NETWORK, &default_options(data_root)?),
        r => r,
    }
}

/// docker's daemon.json keys for the default network, read from <data-root>/daemon.json when it
/// exists: `"ipv6": true` and `"fixed-cidr-v6": "fd00:…/64"` (without it a random unique local
/// /64). They apply when the default network is made: at its first use, or after
/// `network rm bridge`.
pub fn default_options(data_root: &Path) -> Result<CreateOptions, NetError> {
    let p = crate::remap::daemon_json(data_root);
    let data = match fs::read(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CreateOptions::default()),
        Err(e) => return Err(NetError::io("read", &p, e)),
    };
    let v: Value = serde_json::from_slice(&data).map_err(|e| NetError::Msg(format!("{}: {e}", p.display())))?;
    let mut o = CreateOptions::default();
    match &v["ipv6"] {
        Value::Null => {}
        Value::Bool(b) => o.ipv6 = *b,
        x => return Err(NetError::Msg(format!("{}: \"ipv6\" must be true or false, not {x}", p.display()))),
    }
    match &v["fixed-cidr-v6"] {
        Value::Null => {}
        Value::String(c) if o.ipv6 => o.subnets.push(c.clone()),
        Value::String(_) => {
            return Err(NetError::Msg(format!("{}: \"fixed-cidr-v6\" needs \"ipv6\": true", p.display())))
        }
        x => return Err(NetError::Msg(format!("{}: \"fixed-cidr-v6\" must be a string, not {x}", p.display()))),
    }
    Ok(o)
}

/// The network of an ordinary user's container that names none: slirp4netns, or what
/// `"default-rootless-network-cmd"` in `<data-root>/daemon.json` says (`"pasta"` or
/// `"slirp4netns"`, as podman's containers.conf key of that name).
pub fn default_user_network(data_root: &Path) -> Result<super::NetMode, NetError> {
    let p = data_root.join("daemon.json");
    let data = match fs::read(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(super::NetMode::Slirp4netns),
        Err(e) => return Err(NetError::io("read", &p, e)),
    };
    let v: Value = serde_json::from_slice(&data).map_err(|e| NetError::Msg(format!("{}: {e}", p.display())))?;
    match &v["default-rootless-network-cmd"] {
        Value::Null => Ok(super::NetMode::Slirp4netns),
        Value::String(s) if s == "slirp4netns" => Ok(super::NetMode::Slirp4netns),
        Value::String(s) if s == "pasta" => Ok(super::NetMode::Pasta),
        x => Err(NetError::Msg(format!(
            "{}: \"default-rootless-network-cmd\" must be \"pasta\" or \"slirp4netns\", not {x}",
            p.display()
        ))),
    }
}

/// Removes what a network left on the host and its files (the lock must be held, and no
/// container may use it): the DNS server, the bridge, host-local's reservations, the config.
pub fn remove_files(data_root: &Path, net: &Network) -> Result<(), NetError> {
    super::dns::stop_server(data_root, &net.name);
    if net.is_bridge() {
        super::claims::release(data_root, &net.name, &net.subnet);
    }
    remove_masquerade(net);
    if net.is_bridge() {
        super::netns::delete_bridge(&net.bridge)?;
    }
    let ipam = ipam_dir(data_root).join(&net.name);
    if let Err(e) = fs::remove_dir_all(&ipam) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(NetError::io("remove", &ipam, e));
        }
    }
    let st = state_dir(data_root, &net.name);
    if let Err(e) = fs::remove_dir_all(&st) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(NetError::io("remove", &st, e));
        }
    }
    let p = conf_path(data_root, &net.name);
    fs::remove_file(&p).map_err(|e| NetError::io("remove", &p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("my-net_1.x").is_ok());
        for bad in ["", "-x", "a/b", "a b", "x:y", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflist_shape() {
        let s = Ipv4Net::parse("10.99.0.0/16").unwrap();
        let mut a = Addressing { subnet: s, gateway: s.first_host(), subnet6: None, gateway6: None, ip_range: None };
        let v = conflist(Path::new("/d"), "n", &json!({}), &a, "br-x", false);
        let types: Vec<&str> = v["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["bridge", "portmap", "firewall", "tuning"]);
        assert_eq!(v["plugins"][0]["ipMasq"], false);
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/d/network/ipam");
        assert_eq!(v["plugins"][0]["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        let s6 = Ipv6Net::parse("fd00:99::/64").unwrap();
        (a.subnet6, a.gateway6) = (Some(s6), Some(s6.first_host()));
        let d = conflist(Path::new("/d"), "n", &json!({}), &a, "br-x", false);
        assert_eq!(d["plugins"][0]["ipam"]["ranges"][1][0]["subnet"], "fd00:99::/64");
        assert_eq!(d["plugins"][0]["ipam"]["ranges"][1][0]["gateway"], "fd00:99::1");
        assert_eq!(d["plugins"][0]["ipam"]["routes"][1]["dst"], "::/0");
        let v = conflist(Path::new("/d"), "n", &json!({}), &a, "br-x", true);
        assert_eq!(default_bridge_name(Path::new("/var/lib/berth")), "berth0");
        let a = default_bridge_name(Path::new("/nonexistent/a"));
        assert!(a.starts_with("berth-") && a.len() == 14, "{a}");
        assert_ne!(a, default_bridge_name(Path::new("/nonexistent/b")));
        let types: Vec<&str> = v["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["bridge", "firewall", "tuning"]);
        assert_eq!(v["plugins"][0]["ipMasq"], false);
        assert!(v["plugins"][0]["ipam"].get("routes").is_none());
    }
}
