//! Container networking: networks as CNI conflists run with the standard plugins
//! (bridge + host-local, portmap, firewall, tuning), persistent network namespaces, published
//! ports, a DNS server per user-defined network, and crash-safe teardown from an attachment
//! record written before anything is set up.
//!
//! Layout under <data-root>/network/: `<name>.conflist` (one per network), `<name>/hosts` (DNS
//! records) and `<name>/dns.lock` (held by its DNS server), `ipam/` (host-local's dataDir),
//! `attachments/<container-id>.json`, `lock` (metadata lock). Namespace files live in
//! /run/berth/netns/<container-id>.

pub mod claims;
pub mod cli;
pub mod cni;
pub mod cni_result;
pub mod config;
pub mod dns;
pub mod etc;
pub mod ipnet;
pub mod lan;
pub mod netns;
pub mod pasta;
pub mod ports;
pub mod proxy;
pub mod slirp;

pub use cli::{run, NetworkCmd};
pub(crate) use cni_result::interface_of;
pub use cni_result::Interface;
pub use ports::{PortMapping, Proto};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network {network}: cni plugin {plugin:?} not found in {path}")]
    PluginMissing { network: String, plugin: String, path: String },
    #[error("network {network}: plugin {plugin}: {msg}")]
    Plugin { network: String, plugin: String, msg: String },
    #[error("{op} {path}: {err}")]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
    #[error("{0}")]
    Msg(String),
}

impl NetError {
    pub fn io(op: &'static str, path: &Path, err: std::io::Error) -> NetError {
        NetError::Io { op, path: path.to_path_buf(), err }
    }
}

// ---------------------------------------------------------------------------------------------
// API for the container layer

/// One network to join (bridge mode).
#[derive(Clone, Debug, Default)]
pub struct NetRequest {
    pub network: String,
    /// Extra names this container answers to on that network (user-defined networks only).
    pub aliases: Vec<String>,
    /// A static address inside the network's subnet.
    pub ip: Option<Ipv4Addr>,
    /// A static address inside the network's IPv6 subnet (dual-stack networks).
    pub ip6: Option<Ipv6Addr>,
    /// The interface's MAC address ("aa:bb:cc:dd:ee:ff").
    pub mac: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// Own namespace with only lo.
    None,
    /// The host's namespace.
    Host,
    /// Own namespace joined to `AttachRequest::networks` (empty: the default "bridge" network).
    Bridge,
    /// The namespace of another attached container (by container id).
    Container(String),
    /// Own namespace connected by slirp4netns (an ordinary user's; its default).
    Slirp4netns,
    /// Own namespace connected by pasta (an ordinary user's).
    Pasta,
}

impl NetMode {
    /// The user-mode helper modes, which only an ordinary user's engine has.
    pub fn user_mode(&self) -> bool {
        matches!(self, NetMode::Slirp4netns | NetMode::Pasta)
    }
}

#[derive(Clone, Debug, Default)]
pub struct DnsOptions {
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct AttachRequest {
    pub container_id: String,
    /// The container's name (resolvable on user-defined networks); may be empty.
    pub name: String,
    pub mode: NetMode,
    pub networks: Vec<NetRequest>,
    /// host_port 0 = any free port (-P).
    pub ports: Vec<PortMapping>,
    pub dns: DnsOptions,
    /// (hostname, ip) for /etc/hosts; ip "host-gateway" = the first network's gateway.
    pub extra_hosts: Vec<(String, String)>,
    pub hostname: String,
}

/// What a container gets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attachment {
    /// The namespace to join (linux.namespaces network path); None: the host's.
    pub netns_path: Option<PathBuf>,
    pub interfaces: Vec<Interface>,
    /// Published ports with the host ports actually used.
    pub ports: Vec<PortMapping>,
    /// The ports' network is dual-stack: a mapping on every address covers [::] too.
    #[serde(default)]
    pub ports_ipv6: bool,
    pub resolv_conf: String,
    pub hosts: String,
    pub hostname: String,
}

impl Attachment {
    /// The published ports as docker shows them ("0.0.0.0:8080->80/tcp", and "[::]:8080->80/tcp"
    /// too when the ports' network is dual-stack).
    pub fn published(&self) -> Vec<String> {
        self.ports.iter().flat_map(|p| p.shown(self.ports_ipv6)).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The attachment record

#[derive(Clone, Debug, Serialize, Deserialize)]
struct RecNet {
    network: String,
    ifname: String,
    aliases: Vec<String>,
    /// The conflist used for ADD (DEL runs with it even if the network changed).
    conflist: Value,
    runtime_config: Value,
    /// ADD was started: DEL is needed.
    added: bool,
    result: Option<Value>,
    dns: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    container_id: String,
    name: String,
    /// The process setting up, to tell a crashed set-up from one in progress.
    owner_pid: u32,
    owner_start: u64,
    ready: bool,
    mode: String,
    owns_netns: bool,
    nets: Vec<RecNet>,
    attachment: Attachment,
    /// The IPv6 loopback proxy (pid, start time) and its (host port, container port) pairs.
    #[serde(default)]
    proxy: Option<(u32, u64)>,
    #[serde(default)]
    proxy_ports: Vec<proxy::Relay>,
    /// The slirp4netns of an unprivileged user's container (pid, start time), to stop.
    #[serde(default)]
    helper: Option<(u32, u64)>,
}

fn records_dir(data_root: &Path) -> PathBuf {
    config::root(data_root).join("attachments")
}

fn record_path(data_root: &Path, id: &str) -> PathBuf {
    records_dir(data_root).join(format!("{id}.json"))
}

/// The namespace of a set-up container whose resolv.conf names `network`'s DNS server (its
/// first network with names): where a restarted macvlan/ipvlan server binds 127.0.0.11 again.
pub(crate) fn resolver_netns(data_root: &Path, network: &str, container_id: &str) -> Option<PathBuf> {
    let rec = load_record(data_root, container_id).ok()??;
    let first = rec.nets.iter().find(|n| n.dns)?;
    (rec.ready && first.network == network).then_some(rec.attachment.netns_path?)
}

fn load_record(data_root: &Path, id: &str) -> Result<Option<Record>, NetError> {
    let p = record_path(data_root, id);
    match fs::read(&p) {
        Ok(d) => serde_json::from_slice(&d).map(Some).map_err(|e| NetError::Msg(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NetError::io("read", &p, e)),
    }
}

fn save_record(data_root: &Path, r: &Record) -> Result<(), NetError> {
    let dir = records_dir(data_root);
    fs::create_dir_all(&dir).map_err(|e| NetError::io("create", &dir, e))?;
    let data = serde_json::to_vec(r).map_err(|e| NetError::Msg(format!("encode attachment record: {e}")))?;
    config::write_atomic(&record_path(data_root, &r.container_id), &data)
}

fn all_records(data_root: &Path) -> Vec<Record> {
    fs::read_dir(records_dir(data_root))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .filter_map(|id| load_record(data_root, &id).ok().flatten())
        .collect()
}

/// How long an attach waits for a bridge's IPv6 gateway address to pass duplicate address
/// detection (it takes 1-2 s).
const GATEWAY6_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Start time (clock ticks after boot) of a process, None when gone.
fn proc_start(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = s.rsplit_once(')')?.1.split_whitespace();
    // A zombie has finished.
    if matches!(f.next(), Some("Z" | "X")) {
        return None;
    }
    f.nth(18)?.parse().ok()
}

/// A set-up whose process died before it finished.
fn is_stale(r: &Record) -> bool {
    !r.ready && proc_start(r.owner_pid) != Some(r.owner_start)
}

fn validate_id(id: &str) -> Result<(), NetError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(NetError::Msg(format!("invalid container id {id:?}")))
    }
}

fn valid_dns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

// ---------------------------------------------------------------------------------------------
// attach / detach

/// Sets up networking for a container. On failure everything done is undone.
pub fn attach(data_root: &Path, req: &AttachRequest) -> Result<Attachment, NetError> {
    validate_id(&req.container_id)?;
    for n in
        req.networks.iter().flat_map(|n| n.aliases.iter()).chain(std::iter::once(&req.name).filter(|n| !n.is_empty()))
    {
        if !valid_dns_name(n) {
            return Err(NetError::Msg(format!("invalid container name or alias {n:?}")));
        }
    }
    if !req.hostname.is_empty() && !valid_dns_name(&req.hostname) {
        return Err(NetError::Msg(format!("invalid hostname {:?}", req.hostname)));
    }
    for (h, ip) in &req.extra_hosts {
        if !valid_dns_name(h) || (ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err()) {
            return Err(NetError::Msg(format!("invalid --add-host {h}:{ip}")));
        }
    }
    if req.mode != NetMode::Bridge && !req.mode.user_mode() {
        if !req.ports.is_empty() {
            return Err(NetError::Msg("published ports need a bridge network (not none, host or container:)".into()));
        }
        if !req.networks.is_empty() {
            return Err(NetError::Msg("networks can only be joined in bridge mode".into()));
        }
    }
    // What a crashed set-up of the same container left is undone first (this takes the lock).
    if let Some(old) = load_record(data_root, &req.container_id)?.filter(is_stale) {
        detach_record(data_root, old)?;
    }
    // An ordinary user cannot make bridges or rules in the host's namespace: the default
    // network is slirp4netns.
    if (req.mode == NetMode::Bridge || req.mode.user_mode()) && crate::unprivileged::active() {
        slirp::check_ports(&req.ports)?;
        if req.mode.user_mode() || req.networks.is_empty() {
            let pasta = match req.mode {
                NetMode::Pasta => true,
                NetMode::Slirp4netns => false,
                _ => config::default_user_network(data_root)? == NetMode::Pasta,
            };
            return attach_slirp(data_root, req, pasta);
        }
        // User-defined networks: bridges in the user's shared namespace (its slirp4netns
        // reaches out; published ports go through it to CNI's portmap there).
        // In the shared namespace a published port arrives from slirp4netns on its own
        // address, whatever host address the user gave (that one is slirp4netns's).
        let mut inner = req.clone();
        for p in &mut inner.ports {
            p.host_ip = None;
        }
        let mut a = {
            let _in = slirp::shared::enter()?;
            attach_own(data_root, &inner)?
        };
        for (p, want) in a.ports.iter_mut().zip(&req.ports) {
            p.host_ip = want.host_ip;
        }
        for p in &a.ports {
            if let Err(e) = slirp::shared::publish(p) {
                let _ = detach(data_root, &req.container_id);
                return Err(e);
            }
        }
        return Ok(a);
    }
    match &req.mode {
        NetMode::Host | NetMode::Container(_) => attach_shared(data_root, req),
        NetMode::None | NetMode::Bridge => attach_own(data_root, req),
        NetMode::Slirp4netns | NetMode::Pasta => Err(NetError::Msg(format!(
            "--network {}: for an ordinary user's containers (root's have bridge networks)",
            if req.mode == NetMode::Pasta { "pasta" } else { "slirp4netns" }
        ))),
    }
}

fn new_record(req: &AttachRequest, mode: &str) -> Record {
    let pid = std::process::id();
    Record {
        container_id: req.container_id.clone(),
        name: req.name.clone(),
        owner_pid: pid,
        owner_start: proc_start(pid).unwrap_or(0),
        ready: false,
        mode: mode.into(),
        owns_netns: false,
        nets: Vec::new(),
        proxy: None,
        proxy_ports: Vec::new(),
        helper: None,
        attachment: Attachment {
            netns_path: None,
            interfaces: Vec::new(),
            ports: Vec::new(),
            ports_ipv6: false,
            resolv_conf: String::new(),
            hosts: String::new(),
            hostname: hostname_of(req),
        },
    }
}

fn hostname_of(req: &AttachRequest) -> String {
    if !req.hostname.is_empty() {
        req.hostname.clone()
    } else {
        req.container_id.chars().take(12).collect()
    }
}

/// Refuses a container that has a record (the metadata lock is held).
fn claim(data_root: &Path, id: &str) -> Result<(), NetError> {
    if load_record(data_root, id)?.is_some() {
        return Err(NetError::Msg(format!("container {id} is already attached")));
    }
    Ok(())
}

/// host and container: modes: nothing to set up, only a record.
fn attach_shared(data_root: &Path, req: &AttachRequest) -> Result<Attachment, NetError> {
    let mut rec;
    {
        let _l = config::lock(data_root)?;
        claim(data_root, &req.container_id)?;
        match &req.mode {
            NetMode::Container(target) => {
                let t = load_record(data_root, target)?
                    .filter(|t| t.ready)
                    .ok_or_else(|| NetError::Msg(format!("container {target} has no network attachment")))?;
                rec = new_record(req, "container");
                rec.attachment = t.attachment.clone();
                rec.attachment.ports.clear();
            }
            _ => {
                rec = new_record(req, "host");
                let host = etc::host_resolv();
                let hr = etc::resolv_conf(
                    &pick(&req.dns.servers, || host.nameservers.iter().map(|a| a.to_string()).collect()),
                    &pick(&req.dns.search, || host.search.clone()),
                    &pick(&req.dns.options, || host.options.clone()),
                );
                let mut hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
                if !hosts.is_empty() && !hosts.ends_with('\n') {
                    hosts.push('\n');
                }
                for (h, ip) in &req.extra_hosts {
                    if ip != "host-gateway" {
                        hosts.push_str(&format!("{ip}\t{h}\n"));
                    }
                }
                rec.attachment.resolv_conf = hr;
                rec.attachment.hosts = hosts;
            }
        }
        rec.ready = true;
        save_record(data_root, &rec)?;
    }
    Ok(rec.attachment)
}

fn pick(given: &[String], default: impl FnOnce() -> Vec<String>) -> Vec<String> {
    if given.is_empty() {
        default()
    } else {
        given.to_vec()
    }
}

fn attach_own(data_root: &Path, req: &AttachRequest) -> Result<Attachment, NetError> {
    let cni = cni::Cni::from_env();
    let mut rec = new_record(req, if req.mode == NetMode::None { "none" } else { "bridge" });
    let mut nets: Vec<(config::Network, &NetRequest)> = Vec::new();
    let default_req = NetRequest { network: config::DEFAULT_NETWORK.into(), ..Default::default() };
    {
        let _l = config::lock(data_root)?;
        if req.mode == NetMode::Bridge {
            let wanted: Vec<&NetRequest> =
                if req.networks.is_empty() { vec![&default_req] } else { req.networks.iter().collect() };
            for w in wanted {
                if nets.iter().any(|(n, _)| n.name == w.network) {
                    return Err(NetError::Msg(format!("network {} given twice", w.network)));
                }
                let n = if w.network == config::DEFAULT_NETWORK {
                    config::ensure_default(data_root)?
                } else {
                    config::load(data_root, &w.network)?
                };
                if let Some(ip) = w.ip {
                    if !n.subnet.is_host(ip) || ip == n.gateway {
                        return Err(NetError::Msg(format!(
                            "network {}: address {ip} is not a free host address of {}",
                            n.name, n.subnet
                        )));
                    }
                }
                if let Some(ip6) = w.ip6 {
                    match n.subnet6 {
                        Some(s6) if s6.is_host(ip6) && Some(ip6) != n.gateway6 => {}
                        Some(s6) => {
                            return Err(NetError::Msg(format!(
                                "network {}: address {ip6} is not a free host address of {s6}",
                                n.name
                            )))
                        }
                        None => {
                            return Err(NetError::Msg(format!(
                                "network {}: --ip6 needs a network created with --ipv6",
                                n.name
                            )))
                        }
                    }
                }
                if let Some(mac) = &w.mac {
                    if !valid_mac(mac) {
                        return Err(NetError::Msg(format!("invalid MAC address {mac:?}")));
                    }
                }
                if !w.aliases.is_empty() && !n.has_dns() {
                    return Err(NetError::Msg(format!("network {}: aliases need a user-defined network", n.name)));
                }
                cni.check(&n.name, &n.conflist)?;
                if let Some(m) = config::subnet_clash(&n) {
                    return Err(NetError::Msg(m));
                }
                config::ensure_masquerade(&n)?;
                nets.push((n, w));
            }
        }
        // Published ports go to the first network that is not internal.
        let port_net = if req.ports.is_empty() {
            None
        } else {
            Some(nets.iter().position(|(n, _)| !n.internal && n.is_bridge()).ok_or_else(|| {
                let first = nets.first().map(|(n, _)| n);
                NetError::Msg(format!(
                    "network {} is {}: ports cannot be published",
                    first.map(|n| n.name.as_str()).unwrap_or(""),
                    if first.is_some_and(|n| n.internal) { "internal" } else { "on the parent's LAN" },
                ))
            })?)
        };
        claim(data_root, &req.container_id)?;
        let ports_v6 = port_net.is_some_and(|i| nets[i].0.subnet6.is_some());
        if let (Some(i), false) = (port_net, ports_v6) {
            if let Some(m) = req.ports.iter().find(|m| m.host_ip.is_some_and(|a| a.is_ipv6())) {
                return Err(NetError::Msg(format!(
                    "network {} has no IPv6 (create it with --ipv6): cannot publish on {}",
                    nets[i].0.name,
                    m.host_side()
                )));
            }
        }
        rec.attachment.ports = resolve_ports(data_root, &req.ports, ports_v6)?;
        rec.attachment.ports_ipv6 = ports_v6;
        let mut default_route = false;
        for (i, (n, w)) in nets.iter().enumerate() {
            let mut list = n.conflist.clone();
            if let Some(routes) = list["plugins"][0]["ipam"]["routes"].as_array_mut() {
                if default_route {
                    routes.retain(|r| r["dst"] != "0.0.0.0/0" && r["dst"] != "::/0");
                } else if routes.iter().any(|r| r["dst"] == "0.0.0.0/0") {
                    default_route = true;
                }
            }
            if let Some(mac) = &w.mac {
                if let Some(ps) = list["plugins"].as_array_mut() {
                    for p in ps.iter_mut().filter(|p| p["type"] == "tuning") {
                        p["mac"] = json!(mac);
                    }
                }
            }
            let mut rc = json!({});
            if port_net == Some(i) {
                rc["portMappings"] = Value::Array(rec.attachment.ports.iter().map(PortMapping::cni).collect());
            }
            let ips: Vec<String> =
                w.ip.map(|i| i.to_string()).into_iter().chain(w.ip6.map(|i| i.to_string())).collect();
            if !ips.is_empty() {
                rc["ips"] = json!(ips);
            }
            if let Some(mac) = &w.mac {
                rc["mac"] = json!(mac);
            }
            rec.nets.push(RecNet {
                network: n.name.clone(),
                ifname: format!("eth{i}"),
                aliases: w.aliases.clone(),
                conflist: list,
                runtime_config: rc,
                added: false,
                result: None,
                dns: n.has_dns(),
            });
        }
        rec.owns_netns = true;
        rec.attachment.netns_path = Some(netns::dir().join(&req.container_id));
        save_record(data_root, &rec)?;
    }
    match setup(data_root, &cni, &mut rec, req, &nets) {
        Ok(()) => Ok(rec.attachment),
        Err(e) => {
            let _ = detach(data_root, &req.container_id);
            Err(e)
        }
    }
}

/// An ordinary user's container in a namespace of its own, connected by a user-mode helper:
/// slirp4netns, or pasta when `pasta`.
fn attach_slirp(data_root: &Path, req: &AttachRequest, pasta: bool) -> Result<Attachment, NetError> {
    let mut rec = new_record(req, if pasta { "pasta" } else { "slirp4netns" });
    {
        let _l = config::lock(data_root)?;
        claim(data_root, &req.container_id)?;
        rec.attachment.ports = resolve_ports(data_root, &req.ports, false)?;
        rec.owns_netns = true;
        rec.attachment.netns_path = Some(netns::dir().join(&req.container_id));
        save_record(data_root, &rec)?;
    }
    let set_up = if pasta { setup_pasta(data_root, &mut rec, req) } else { setup_slirp(data_root, &mut rec, req) };
    match set_up {
        Ok(()) => Ok(rec.attachment),
        Err(e) => {
            let _ = detach(data_root, &req.container_id);
            Err(e)
        }
    }
}

/// The namespace, slirp4netns in it with the published ports, /etc/resolv.conf and hosts.
fn setup_slirp(data_root: &Path, rec: &mut Record, req: &AttachRequest) -> Result<(), NetError> {
    let ns = rec.attachment.netns_path.clone().unwrap_or_default();
    netns::create(&ns)?;
    let h = slirp::start(&ns, &rec.attachment.ports)?;
    rec.helper = Some((h.pid, h.start));
    save_record(data_root, rec)?;
    let helper = UserModeNet {
        network: "slirp4netns",
        ifname: slirp::IFNAME,
        ip: slirp::GUEST_IP,
        prefix: slirp::PREFIX,
        gateway: Some(slirp::GATEWAY),
        dns: slirp::DNS.to_string(),
    };
    finish_user_mode(data_root, rec, req, helper)
}

/// The namespace, pasta in it with the published ports, /etc/resolv.conf and hosts: the
/// container has the address and gateway of the host's interface with the default route.
fn setup_pasta(data_root: &Path, rec: &mut Record, req: &AttachRequest) -> Result<(), NetError> {
    let ns = rec.attachment.netns_path.clone().unwrap_or_default();
    let (ip, prefix, gateway) = pasta::host_template().ok_or_else(|| {
        NetError::Msg("--network pasta: the host has no interface with an IPv4 default route to copy".into())
    })?;
    netns::create(&ns)?;
    let h = pasta::start(&ns, &rec.attachment.ports)?;
    rec.helper = Some((h.pid, h.start));
    save_record(data_root, rec)?;
    let helper =
        UserModeNet { network: "pasta", ifname: pasta::IFNAME, ip, prefix, gateway, dns: pasta::DNS.to_string() };
    finish_user_mode(data_root, rec, req, helper)
}

/// What a user-mode helper (slirp4netns, pasta) gives the container.
struct UserModeNet {
    network: &'static str,
    ifname: &'static str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    /// The resolver the container is told of unless --dns names others.
    dns: String,
}

/// The rest of a user-mode attachment once its helper runs: the interface record,
/// /etc/resolv.conf (the helper's resolver, the host's search and options) and /etc/hosts
/// (`host-gateway` naming the helper's gateway); the record is then saved ready.
fn finish_user_mode(data_root: &Path, rec: &mut Record, req: &AttachRequest, net: UserModeNet) -> Result<(), NetError> {
    rec.attachment.interfaces.push(Interface {
        network: net.network.into(),
        ifname: net.ifname.into(),
        ip: net.ip,
        prefix: net.prefix,
        gateway: net.gateway,
        mac: String::new(),
        ip6: None,
        prefix6: 0,
        gateway6: None,
    });
    let host = etc::host_resolv();
    rec.attachment.resolv_conf = etc::resolv_conf(
        &pick(&req.dns.servers, || vec![net.dns.clone()]),
        &pick(&req.dns.search, || host.search.clone()),
        &pick(&req.dns.options, || host.options.clone()),
    );
    let hostname = rec.attachment.hostname.clone();
    let mut names: Vec<&str> = vec![&hostname];
    if !req.name.is_empty() {
        names.push(&req.name);
    }
    let gw = net.gateway.map(|g| g.to_string()).unwrap_or_default();
    let extra: Vec<(String, String)> = req
        .extra_hosts
        .iter()
        .map(|(h, a)| (h.clone(), if a == "host-gateway" { gw.clone() } else { a.clone() }))
        .collect();
    rec.attachment.hosts = etc::hosts_file(&[net.ip.into()], &names, &extra);
    rec.ready = true;
    save_record(data_root, rec)
}

/// Checks published ports against berth's records and the host (on each family the network
/// has: `ipv6`), picks free ones for port 0 and the first free one of a host range.
/// The metadata lock is held.
fn resolve_ports(data_root: &Path, want: &[PortMapping], ipv6: bool) -> Result<Vec<PortMapping>, NetError> {
    if want.is_empty() {
        return Ok(Vec::new());
    }
    let taken: Vec<(String, PortMapping)> = all_records(data_root)
        .into_iter()
        .flat_map(|r| r.attachment.ports.into_iter().map(move |p| (r.container_id.clone(), p)))
        .collect();
    let mut out: Vec<PortMapping> = Vec::new();
    let used = |m: &PortMapping, out: &[PortMapping]| -> Option<String> {
        if let Some((id, _)) = taken.iter().find(|(_, t)| t.conflicts(m)) {
            return Some(format!("host port {} is already published by container {id}", m.host_side()));
        }
        out.iter().any(|o| o.conflicts(m)).then(|| format!("host port {} is published twice", m.host_side()))
    };
    for m in want {
        let mut m = m.clone();
        if m.host_port == 0 {
            let mut found = false;
            for _ in 0..32 {
                m.host_port = ports::pick_free_port(&m, ipv6)
                    .map_err(|e| NetError::Msg(format!("pick a free host port for {}: {e}", m.container_port)))?;
                if used(&m, &out).is_none() {
                    found = true;
                    break;
                }
            }
            if !found {
                return Err(NetError::Msg(format!("no free host port for container port {}", m.container_port)));
            }
        } else if m.host_port_end > m.host_port {
            let (lo, hi) = (m.host_port, m.host_port_end);
            m.host_port_end = 0;
            let free = (lo..=hi).find(|p| {
                let c = PortMapping { host_port: *p, ..m.clone() };
                used(&c, &out).is_none() && ports::host_port_free(&c, *p, ipv6).is_ok()
            });
            m.host_port = free.ok_or_else(|| {
                NetError::Msg(format!("no free host port in {lo}-{hi} for container port {}", m.container_port))
            })?;
        } else {
            if let Some(why) = used(&m, &out) {
                return Err(NetError::Msg(why));
            }
            ports::host_port_free(&m, m.host_port, ipv6)
                .map_err(|e| NetError::Msg(format!("host port {} is not available: {e}", m.host_side())))?;
        }
        out.push(m);
    }
    Ok(out)
}

/// Creates the namespace, runs ADD for every network, registers DNS names.
fn setup(
    data_root: &Path,
    cni: &cni::Cni,
    rec: &mut Record,
    req: &AttachRequest,
    nets: &[(config::Network, &NetRequest)],
) -> Result<(), NetError> {
    let ns = rec.attachment.netns_path.clone().unwrap_or_default();
    netns::create(&ns)?;
    let ns_str = ns.to_string_lossy().into_owned();
    for i in 0..rec.nets.len() {
        rec.nets[i].added = true;
        save_record(data_root, rec)?;
        berth::faults::crash_point("network.attach.recorded");
        let rn = rec.nets[i].clone();
        let call = cni::Call {
            network: &rn.network,
            container_id: &req.container_id,
            netns: &ns_str,
            ifname: &rn.ifname,
            runtime_config: &rn.runtime_config,
        };
        let result = cni.add(&rn.conflist, &call, &mut |res| {
            rec.nets[i].result = Some(res.clone());
            save_record(data_root, rec)
        })?;
        berth::faults::crash_point("network.attach.cni-added");
        let iface = interface_of(&rn.network, &rn.ifname, &ns_str, &result)
            .ok_or_else(|| NetError::Msg(format!("network {}: no IPv4 address in the plugin result", rn.network)))?;
        rec.attachment.interfaces.push(iface);
    }
    // A dual-stack bridge's gateway address is usable (duplicate address detection done) before
    // the container runs, the loopback proxy relays or `run` returns.
    for g6 in nets.iter().filter(|(n, _)| n.is_bridge()).filter_map(|(n, _)| n.gateway6) {
        netns::settle_addr6(g6, GATEWAY6_SETTLE)?;
    }
    // Ports published on the host's [::1] of a dual-stack network: the loopback proxy.
    let port_iface = rec.nets.iter().position(|n| n.runtime_config.get("portMappings").is_some());
    let port_if = port_iface.and_then(|i| rec.attachment.interfaces.get(i));
    if let Some((ip6, gw6)) = port_if.and_then(|i| Some((i.ip6?, i.gateway6))) {
        let maps = proxy::loopback6(&rec.attachment.ports);
        if !maps.is_empty() {
            rec.proxy_ports = maps.clone();
            save_record(data_root, rec)?;
            proxy::add_rules(&req.container_id, &maps)?;
            // The gateway as the relays' source when it is an address of the host's.
            let source = gw6.filter(|g| netns::addr6_state(*g) != netns::Addr6State::Absent);
            let pid = proxy::start(ip6, source, &maps)?;
            rec.proxy = Some((pid, proc_start(pid).unwrap_or(0)));
            save_record(data_root, rec)?;
        }
    }
    // /etc/resolv.conf and /etc/hosts.
    let host = etc::host_resolv();
    let dns_net = nets.iter().position(|(n, _)| n.has_dns());
    let resolv = match dns_net {
        Some(i) => {
            let at = if nets[i].0.dns_in_container() { dns::IN_CONTAINER } else { nets[i].0.gateway };
            let mut servers = vec![at.to_string()];
            servers.extend(req.dns.servers.iter().cloned());
            etc::resolv_conf(
                &servers,
                &pick(&req.dns.search, || host.search.clone()),
                &pick(&req.dns.options, || vec!["ndots:0".into()]),
            )
        }
        None => etc::resolv_conf(
            &pick(&req.dns.servers, || etc::host_container_nameservers(&host)),
            &pick(&req.dns.search, || host.search.clone()),
            &pick(&req.dns.options, || host.options.clone()),
        ),
    };
    let own: Vec<IpAddr> = rec
        .attachment
        .interfaces
        .iter()
        .take(1)
        .flat_map(|i| std::iter::once(i.ip.into()).chain(i.ip6.map(IpAddr::from)))
        .collect();
    let hostname = rec.attachment.hostname.clone();
    let mut names: Vec<&str> = vec![&hostname];
    if !req.name.is_empty() {
        names.push(&req.name);
    }
    let gw = rec.attachment.interfaces.iter().find_map(|i| i.gateway);
    let mut extra = Vec::new();
    for (h, ip) in &req.extra_hosts {
        let ip = if ip == "host-gateway" {
            gw.map(|g| g.to_string()).ok_or_else(|| {
                NetError::Msg(format!("--add-host {h}:host-gateway: no gateway (network mode {})", rec.mode))
            })?
        } else {
            ip.clone()
        };
        extra.push((h.clone(), ip));
    }
    rec.attachment.resolv_conf = resolv;
    rec.attachment.hosts = etc::hosts_file(&own, &names, &extra);
    // Names on user-defined networks, then their DNS servers.
    let _l = config::lock(data_root)?;
    for (i, (rn, iface)) in rec.nets.iter().zip(&rec.attachment.interfaces).enumerate() {
        if !rn.dns {
            continue;
        }
        let mut nm: Vec<String> = Vec::new();
        for n in std::iter::once(&req.name).chain(rn.aliases.iter()).filter(|n| !n.is_empty()) {
            nm.push(n.clone());
        }
        nm.push(req.container_id.chars().take(12).collect());
        let ips: Vec<IpAddr> = std::iter::once(iface.ip.into()).chain(iface.ip6.map(IpAddr::from)).collect();
        dns::set_record(data_root, &rn.network, &req.container_id, Some((&ips, &nm)))?;
        dns::ensure_server(data_root, &rn.network)?;
        // macvlan, ipvlan: the server answers at 127.0.0.11 inside the container, for the
        // network its resolv.conf names.
        if dns_net == Some(i) && nets.get(i).is_some_and(|(n, _)| n.dns_in_container()) {
            let (udp, tcp) = dns::bind_in_netns(&ns)?;
            dns::hand_over(data_root, &rn.network, &req.container_id, &udp, &tcp)?;
        }
    }
    rec.ready = true;
    save_record(data_root, rec)
}

/// "aa:bb:cc:dd:ee:ff", unicast.
pub fn valid_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

/// Tears down a container's networking (idempotent; works from the record after a crash).
pub fn detach(data_root: &Path, container_id: &str) -> Result<(), NetError> {
    validate_id(container_id)?;
    match load_record(data_root, container_id)? {
        // A user's container on user-defined networks: CNI DEL in the user's shared namespace.
        Some(r) if crate::unprivileged::active() && !r.nets.is_empty() => {
            for p in &r.attachment.ports {
                slirp::shared::unpublish(p);
            }
            let _in = slirp::shared::enter()?;
            detach_record(data_root, r)
        }
        Some(r) => detach_record(data_root, r),
        None => Ok(()),
    }
}

fn detach_record(data_root: &Path, mut rec: Record) -> Result<(), NetError> {
    if let Some((pid, start)) = rec.helper {
        slirp::stop(&slirp::Helper { pid, start });
    }
    let cni = cni::Cni::from_env();
    let ns = rec.attachment.netns_path.clone().filter(|_| rec.owns_netns);
    let ns_str = match &ns {
        Some(p) if netns::is_netns(p) => p.to_string_lossy().into_owned(),
        _ => String::new(),
    };
    let mut first: Option<NetError> = None;
    if let Some((pid, start)) = rec.proxy.take() {
        proxy::stop(pid, start);
    }
    if !rec.proxy_ports.is_empty() {
        proxy::remove_rules(&rec.container_id, &rec.proxy_ports);
        rec.proxy_ports.clear();
    }
    // DNS names first: nobody resolves to an address about to be released.
    if rec.nets.iter().any(|n| n.dns) {
        match config::lock(data_root) {
            Ok(_l) => {
                for rn in rec.nets.iter().filter(|n| n.dns) {
                    match dns::set_record(data_root, &rn.network, &rec.container_id, None) {
                        Ok(0) => dns::stop_server(data_root, &rn.network),
                        Ok(_) => {}
                        Err(e) => {
                            first.get_or_insert(e);
                        }
                    }
                }
            }
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    for i in (0..rec.nets.len()).rev() {
        let rn = &rec.nets[i];
        if !rn.added {
            continue;
        }
        let call = cni::Call {
            network: &rn.network,
            container_id: &rec.container_id,
            netns: &ns_str,
            ifname: &rn.ifname,
            runtime_config: &rn.runtime_config,
        };
        match cni.del(&rn.conflist, &call, rn.result.as_ref()) {
            Ok(()) => rec.nets[i].added = false,
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first {
        // Keep the record (with what is left to undo) for the next detach or prune.
        rec.ready = false;
        let _ = save_record(data_root, &rec);
        return Err(e);
    }
    if let Some(p) = &ns {
        netns::remove(p);
        slirp::remove_files(p);
        pasta::remove_files(p);
    }
    let p = record_path(data_root, &rec.container_id);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io("remove", &p, e)),
    }
}

/// Joins the running container `container_id` (attached in bridge mode, with its own
/// namespace) to one more network: a new interface `ethN`, its names in that network's DNS.
/// On failure nothing of the new interface is left.
pub fn connect(data_root: &Path, container_id: &str, want: &NetRequest) -> Result<Interface, NetError> {
    validate_id(container_id)?;
    for a in &want.aliases {
        if !valid_dns_name(a) {
            return Err(NetError::Msg(format!("invalid alias {a:?}")));
        }
    }
    let cni = cni::Cni::from_env();
    let (mut rec, net, ifname) = {
        let _l = config::lock(data_root)?;
        let rec = load_record(data_root, container_id)?
            // "none": a namespace of its own with no network (the first one left by
            // `disconnect` before the start); the engine refuses `--network none` containers.
            .filter(|r| r.ready && r.owns_netns && (r.mode == "bridge" || r.mode == "none"))
            .ok_or_else(|| {
                NetError::Msg(format!("container {container_id} is not running on a bridge network of its own"))
            })?;
        if rec.nets.iter().any(|n| n.network == want.network) {
            return Err(NetError::Msg(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, want.network
            )));
        }
        let net = if want.network == config::DEFAULT_NETWORK {
            config::ensure_default(data_root)?
        } else {
            config::load(data_root, &want.network)?
        };
        if let Some(ip) = want.ip {
            if !net.subnet.is_host(ip) || ip == net.gateway {
                return Err(NetError::Msg(format!(
                    "network {}: address {ip} is not a free host address of {}",
                    net.name, net.subnet
                )));
            }
        }
        if !want.aliases.is_empty() && !net.has_dns() {
            return Err(NetError::Msg(format!("network {}: aliases need a user-defined network", net.name)));
        }
        cni.check(&net.name, &net.conflist)?;
        config::ensure_masquerade(&net)?;
        let n = (0..).find(|i| !rec.nets.iter().any(|x| x.ifname == format!("eth{i}"))).unwrap_or(0);
        let mut rec = rec;
        rec.mode = "bridge".into();
        (rec, net, format!("eth{n}"))
    };
    let mut list = net.conflist.clone();
    // The first network keeps the default route (a network joined when no other is left, the
    // first one disconnected, takes it).
    if let (Some(routes), false) = (list["plugins"][0]["ipam"]["routes"].as_array_mut(), rec.nets.is_empty()) {
        routes.retain(|r| r["dst"] != "0.0.0.0/0" && r["dst"] != "::/0");
    }
    let mut rc = json!({});
    if let Some(ip) = want.ip {
        rc["ips"] = json!([ip.to_string()]);
    }
    let ns_str = rec.attachment.netns_path.clone().unwrap_or_default().to_string_lossy().into_owned();
    rec.nets.push(RecNet {
        network: net.name.clone(),
        ifname: ifname.clone(),
        aliases: want.aliases.clone(),
        conflist: list,
        runtime_config: rc,
        added: true,
        result: None,
        dns: net.has_dns(),
    });
    save_record(data_root, &rec)?;
    berth::faults::crash_point("network.connect.recorded");
    let i = rec.nets.len() - 1;
    let rn = rec.nets[i].clone();
    let call = cni::Call {
        network: &rn.network,
        container_id,
        netns: &ns_str,
        ifname: &rn.ifname,
        runtime_config: &rn.runtime_config,
    };
    let added = cni.add(&rn.conflist, &call, &mut |res| {
        rec.nets[i].result = Some(res.clone());
        save_record(data_root, &rec)
    });
    let iface = added.and_then(|result| {
        interface_of(&rn.network, &rn.ifname, &ns_str, &result)
            .ok_or_else(|| NetError::Msg(format!("network {}: no IPv4 address in the plugin result", rn.network)))
    });
    // As at attach: the bridge's IPv6 gateway usable before the connection is reported.
    let iface = iface.and_then(|i| match net.gateway6.filter(|_| net.is_bridge()) {
        Some(g6) => netns::settle_addr6(g6, GATEWAY6_SETTLE).map(|()| i),
        None => Ok(i),
    });
    let iface = match iface {
        Ok(i) => i,
        Err(e) => {
            let _ = cni.del(&rn.conflist, &call, rec.nets[i].result.as_ref());
            rec.nets.pop();
            save_record(data_root, &rec)?;
            return Err(e);
        }
    };
    rec.attachment.interfaces.push(iface.clone());
    save_record(data_root, &rec)?;
    berth::faults::crash_point("network.connect.cni-added");
    if rn.dns {
        let _l = config::lock(data_root)?;
        let mut nm: Vec<String> = Vec::new();
        for n in std::iter::once(&rec.name).chain(rn.aliases.iter()).filter(|n| !n.is_empty()) {
            nm.push(n.clone());
        }
        nm.push(container_id.chars().take(12).collect());
        let ips: Vec<IpAddr> = std::iter::once(iface.ip.into()).chain(iface.ip6.map(IpAddr::from)).collect();
        dns::set_record(data_root, &rn.network, container_id, Some((&ips, &nm)))?;
        dns::ensure_server(data_root, &rn.network)?;
    }
    Ok(iface)
}

/// Takes the running container `container_id` off `network` (its interface and DNS names).
pub fn disconnect(data_root: &Path, container_id: &str, network: &str) -> Result<(), NetError> {
    validate_id(container_id)?;
    let cni = cni::Cni::from_env();
    let mut rec = load_record(data_root, container_id)?
        .filter(|r| r.ready)
        .ok_or_else(|| NetError::Msg(format!("container {container_id} has no network attachment")))?;
    let i = rec
        .nets
        .iter()
        .position(|n| n.network == network)
        .ok_or_else(|| NetError::Msg(format!("container {container_id} is not connected to network {network}")))?;
    let rn = rec.nets[i].clone();
    if rn.dns {
        let _l = config::lock(data_root)?;
        if dns::set_record(data_root, network, container_id, None)? == 0 {
            dns::stop_server(data_root, network);
        }
    }
    let ns_str = rec.attachment.netns_path.clone().unwrap_or_default().to_string_lossy().into_owned();
    let call = cni::Call {
        network: &rn.network,
        container_id,
        netns: &ns_str,
        ifname: &rn.ifname,
        runtime_config: &rn.runtime_config,
    };
    cni.del(&rn.conflist, &call, rn.result.as_ref())?;
    rec.nets.remove(i);
    rec.attachment.interfaces.retain(|x| x.network != network);
    if rn.runtime_config.get("portMappings").is_some() {
        // The published ports were this network's (CNI DEL took their rules): they go, and
        // the IPv6 loopback proxy relaying to them with them.
        rec.attachment.ports.clear();
        if let Some((pid, start)) = rec.proxy.take() {
            proxy::stop(pid, start);
        }
        if !rec.proxy_ports.is_empty() {
            proxy::remove_rules(&rec.container_id, &rec.proxy_ports);
            rec.proxy_ports.clear();
        }
    }
    save_record(data_root, &rec)
}

/// The attachment of a container, if attached.
pub fn attachment(data_root: &Path, container_id: &str) -> Result<Option<Attachment>, NetError> {
    validate_id(container_id)?;
    Ok(load_record(data_root, container_id)?.filter(|r| r.ready).map(|r| r.attachment))
}

/// The network namespace of an attached container (for `container:NAME`); None: the host's.
pub fn netns_path(data_root: &Path, container_id: &str) -> Result<Option<PathBuf>, NetError> {
    attachment(data_root, container_id)?
        .map(|a| a.netns_path)
        .ok_or_else(|| NetError::Msg(format!("container {container_id} has no network attachment")))
}

// ---------------------------------------------------------------------------------------------
// Network management used by the CLI

/// (container id, container name, interface) of every attachment to `network`.
pub fn users(data_root: &Path, network: &str) -> Vec<(String, String, Option<Interface>)> {
    all_records(data_root)
        .into_iter()
        .filter(|r| r.nets.iter().any(|n| n.network == network))
        .map(|r| {
            let iface = r.attachment.interfaces.iter().find(|x| x.network == network).cloned();
            (r.container_id, r.name, iface)
        })
        .collect()
}

/// Removes an unused network.
pub fn remove_network(data_root: &Path, name: &str) -> Result<(), NetError> {
    if matches!(name, "host" | "none") {
        return Err(NetError::Msg(format!("network {name} is predefined and cannot be removed")));
    }
    // A user's bridges are in the user's shared namespace.
    let _in = if crate::unprivileged::active() { Some(slirp::shared::enter()?) } else { None };
    let _l = config::lock(data_root)?;
    let net = config::load(data_root, name)?;
    if let Some((id, _, _)) = users(data_root, name).first() {
        return Err(NetError::Msg(format!("network {name} is in use by container {id}")));
    }
    config::remove_files(data_root, &net)
}

/// Cleans up crashed set-ups, then removes every unused user-defined network; returns their names.
pub fn prune(data_root: &Path) -> Result<Vec<String>, NetError> {
    let _in = if crate::unprivileged::active() { Some(slirp::shared::enter()?) } else { None };
    let mut first = None;
    for r in all_records(data_root).into_iter().filter(is_stale) {
        if let Err(e) = detach_record(data_root, r) {
            first.get_or_insert(e);
        }
    }
    let mut removed = Vec::new();
    {
        let _l = config::lock(data_root)?;
        let recs = all_records(data_root);
        for n in config::list(data_root) {
            if recs.iter().any(|r| r.nets.iter().any(|x| x.network == n.name)) {
                continue;
            }
            if n.is_default() && n.is_bridge() {
                // The default network stays (as docker's); its idle bridge goes, and the CNI
                // bridge plugin makes it again on the next container.
                config::remove_masquerade(&n);
                if let Err(e) = netns::delete_bridge(&n.bridge) {
                    first.get_or_insert(e);
                }
                continue;
            }
            match config::remove_files(data_root, &n) {
                Ok(()) => removed.push(n.name),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_result_to_interface() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "br-x", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
                {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/berth/netns/c1"}
            ],
            "ips": [{"interface": 2, "address": "10.89.0.5/16", "gateway": "10.89.0.1"}]
        });
        let i = interface_of("n", "eth0", "/run/berth/netns/c1", &r).unwrap();
        assert_eq!(i.ip, Ipv4Addr::new(10, 89, 0, 5));
        assert_eq!(i.prefix, 16);
        assert_eq!(i.gateway, Some(Ipv4Addr::new(10, 89, 0, 1)));
        assert_eq!(i.mac, "cc:cc:cc:cc:cc:cc");
        assert!(interface_of("n", "eth0", "/x", &json!({"ips": []})).is_none());
        assert_eq!(i.ip6, None);
        let mut r6 = r.clone();
        r6["ips"]
            .as_array_mut()
            .unwrap()
            .push(json!({"interface": 2, "address": "fd00:5::3/64", "gateway": "fd00:5::1"}));
        let i = interface_of("n", "eth0", "/run/berth/netns/c1", &r6).unwrap();
        assert_eq!((i.ip6, i.prefix6), (Some("fd00:5::3".parse().unwrap()), 64));
        assert_eq!(i.gateway6, Some("fd00:5::1".parse().unwrap()));
        assert!(valid_mac("02:42:ac:11:00:02") && !valid_mac("01:42:ac:11:00:02") && !valid_mac("02:42:ac:11:00"));
    }

    #[test]
    fn ids_and_names() {
        assert!(validate_id("abc-1.2_x").is_ok());
        assert!(validate_id("../x").is_err() && validate_id("").is_err() && validate_id(".x").is_err());
        assert!(valid_dns_name("web") && valid_dns_name("a.b-c"));
        assert!(!valid_dns_name("a..b") && !valid_dns_name("a b") && !valid_dns_name(""));
    }
}
