//! Network definitions: one CNI conflist per network at <data-root>/network/<name>.conflist (berth's
//! own fields under the "berth" key, which CNI ignores), per-network state in <data-root>/network/<name>/.

use super::ipnet::{self, Ipv4Net};
use super::{cni, NetError};
use serde_json::{json, Value};
use std::fs;
use std::net::Ipv4Addr;
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
    ipnet::host_subnets()
        .into_iter()
        .find(|(h, dev)| h.overlaps(&net.subnet) && dev != &net.bridge)
        .map(|(h, dev)| format!("network {}: subnet {} overlaps host route {h} on {dev}", net.name, net.subnet))
}

#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub bridge: String,
    pub internal: bool,
    pub created: String,
    /// The CNI network configuration list.
    pub conflist: Value,
}

impl Network {
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }

    /// User-defined networks resolve container names (a DNS server on the gateway).
    pub fn has_dns(&self) -> bool {
        !self.is_default()
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
        internal: b["internal"].as_bool().unwrap_or(false),
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

/// The CNI list of a network: bridge (+ host-local), portmap, firewall, tuning.
pub fn conflist(
    data_root: &Path,
    name: &str,
    meta: &Value,
    subnet: Ipv4Net,
    gw: Ipv4Addr,
    bridge: &str,
    internal: bool,
) -> Value {
    let mut ipam = json!({
        "type": "host-local",
        "ranges": [[{"subnet": subnet.to_string(), "gateway": gw.to_string()}]],
        "dataDir": ipam_dir(data_root).to_string_lossy(),
    });
    if !internal {
        ipam["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    }
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        // Masquerading is one rule per network that berth adds (ensure_masquerade) rather than
        // the plugin's chain per container: ~15 iptables runs less per container.
        "ipMasq": false,
        "hairpinMode": true,
        "capabilities": {"ips": true},
        "ipam": ipam,
    })];
    if !internal {
        plugins.push(json!({"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}));
    }
    plugins.push(json!({"type": "firewall", "backend": "iptables"}));
    plugins.push(json!({"type": "tuning"}));
    json!({"cniVersion": cni::CNI_VERSION, "name": name, "plugins": plugins, "berth": meta})
}

fn random_id() -> Result<String, NetError> {
    let mut b = [0u8; 32];
    let mut f = fs::File::open("/dev/urandom").map_err(|e| NetError::io("open", Path::new("/dev/urandom"), e))?;
    std::io::Read::read_exact(&mut f, &mut b).map_err(|e| NetError::io("read", Path::new("/dev/urandom"), e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Creates a network (the lock must be held). `subnet` None picks the first free one of the
/// default pool.
pub fn create(
    data_root: &Path,
    name: &str,
    subnet: Option<&str>,
    gateway: Option<&str>,
    internal: bool,
) -> Result<Network, NetError> {
    validate_name(name)?;
    if matches!(name, "host" | "none") || name.starts_with("container:") {
        return Err(NetError::Msg(format!("network name {name:?} is reserved")));
    }
    if conf_path(data_root, name).exists() {
        return Err(NetError::Msg(format!("network {name} already exists")));
    }
    let is_default = name == DEFAULT_NETWORK;
    let existing = list(data_root);
    let host = ipnet::host_subnets();
    let id = random_id()?;
    let subnet = match subnet {
        Some(s) => {
            let net = Ipv4Net::parse(s).map_err(NetError::Msg)?;
            if let Some(o) = existing.iter().find(|o| o.subnet.overlaps(&net)) {
                return Err(NetError::Msg(format!("subnet {net} overlaps network {} ({})", o.name, o.subnet)));
            }
            if let Some((h, dev)) = host.iter().find(|(h, _)| h.overlaps(&net)) {
                return Err(NetError::Msg(format!("subnet {net} overlaps host route {h} on {dev}")));
            }
            net
        }
        None => ipnet::default_pool()
            .find(|n| !existing.iter().any(|o| o.subnet.overlaps(n)) && !host.iter().any(|(h, _)| h.overlaps(n)))
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
    let bridge_name = if is_default { default_bridge_name(data_root) } else { format!("br-{}", &id[..12]) };
    let meta = json!({
        "id": id, "subnet": subnet.to_string(), "gateway": gw.to_string(), "bridge": bridge_name,
        "internal": internal, "created": berth::logging::now_rfc3339(), "masquerade": !internal,
    });
    let v = conflist(data_root, name, &meta, subnet, gw, &bridge_name, internal);
    let data = serde_json::to_vec_pretty(&v).map_err(|e| NetError::Msg(format!("encode network {name}: {e}")))?;
    write_atomic(&conf_path(data_root, name), &data)?;
    from_conflist(v).ok_or_else(|| NetError::Msg(format!("network {name}: bad configuration")))
}

/// The iptables arguments of a network's masquerade rule with `op` (-C, -A or -D).
fn masquerade_args(net: &Network, op: &str) -> Vec<String> {
    let comment = format!("berth network {}", &net.id[..net.id.len().min(12)]);
    [
        "-w",
        "-t",
        "nat",
        op,
        "POSTROUTING",
        "-s",
        &net.subnet.to_string(),
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

fn iptables(args: &[String]) -> Result<std::process::Output, NetError> {
    std::process::Command::new("iptables")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| NetError::io("run", Path::new("iptables"), e))
}

/// Adds the network's masquerade rule (traffic from its subnet leaving by another interface)
/// unless it is there; networks made before berth owned the rule carry ipMasq and are skipped.
pub fn ensure_masquerade(net: &Network) -> Result<(), NetError> {
    if net.conflist["berth"]["masquerade"] != true {
        return Ok(());
    }
    if iptables(&masquerade_args(net, "-C"))?.status.success() {
        return Ok(());
    }
    let o = iptables(&masquerade_args(net, "-A"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(NetError::Msg(format!("network {}: add masquerade rule: {}", net.name, err.trim())));
    }
    Ok(())
}

/// Removes the network's masquerade rule (every copy); missing is fine.
pub fn remove_masquerade(net: &Network) {
    if net.conflist["berth"]["masquerade"] != true {
        return;
    }
    for _ in 0..8 {
        match iptables(&masquerade_args(net, "-D")) {
            Ok(o) if o.status.success() => {}
            _ => break,
        }
    }
}

/// The default network, created on first use (the lock must be held).
pub fn ensure_default(data_root: &Path) -> Result<Network, NetError> {
    match load(data_root, DEFAULT_NETWORK) {
        Err(NetError::NotFound(_)) => create(data_root, DEFAULT_NETWORK, None, None, false),
        r => r,
    }
}

/// Removes what a network left on the host and its files (the lock must be held, and no
/// container may use it): the DNS server, the bridge, host-local's reservations, the config.
pub fn remove_files(data_root: &Path, net: &Network) -> Result<(), NetError> {
    super::dns::stop_server(data_root, &net.name);
    remove_masquerade(net);
    super::netns::delete_bridge(&net.bridge)?;
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
        let gw = s.first_host();
        let v = conflist(Path::new("/d"), "n", &json!({}), s, gw, "br-x", false);
        let types: Vec<&str> = v["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["bridge", "portmap", "firewall", "tuning"]);
        assert_eq!(v["plugins"][0]["ipMasq"], false);
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/d/network/ipam");
        assert_eq!(v["plugins"][0]["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        let v = conflist(Path::new("/d"), "n", &json!({}), s, gw, "br-x", true);
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
