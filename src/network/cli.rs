//! `berth network ...` commands.

use super::{config, AttachRequest, DnsOptions, NetError, NetMode, NetRequest, PortMapping, Proto};
use serde_json::{json, Value};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(clap::Subcommand)]
pub enum NetworkCmd {
    /// Create a network (a Linux bridge on a private subnet, or a place on a host interface's LAN).
    Create {
        /// Subnet in CIDR form, one IPv4 and with --ipv6 one IPv6 (default: the first free of
        /// 10.88.0.0/16, 10.89.0.0/16, ...; for IPv6 a random unique local /64).
        #[arg(long)]
        subnet: Vec<String>,
        /// Gateway address, one per family (default: the subnet's first address).
        #[arg(long)]
        gateway: Vec<String>,
        /// Dual-stack: an IPv6 subnet too, containers get both addresses.
        #[arg(long)]
        ipv6: bool,
        /// bridge (a Linux bridge on the host), macvlan or ipvlan (on a host interface's LAN).
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// Driver option KEY=VALUE: parent=IFACE, macvlan_mode=bridge|private|vepa|passthru,
        /// ipvlan_mode=l2|l3|l3s; for bridges com.docker.network.bridge.gateway_mode_ipv4 and
        /// _ipv6 = nat|routed.
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        /// Give containers addresses of this part of the subnet only.
        #[arg(long = "ip-range")]
        ip_range: Option<String>,
        /// NAME=IP: an address of the subnet never given to a container (a LAN host).
        #[arg(long = "aux-address")]
        aux_address: Vec<String>,
        /// No route out of the network, no masquerading, no published ports.
        #[arg(long)]
        internal: bool,
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Print only the names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print networks as a JSON array.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while a container uses one).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every unused user-defined network and clean up crashed set-ups.
    Prune {
        /// Accepted for docker compatibility (berth never prompts).
        #[arg(short, long)]
        force: bool,
    },
    /// Connect a container to a network (a running one at once, a stopped one at its start).
    Connect {
        /// Extra DNS name of the container on that network.
        #[arg(long = "alias")]
        alias: Vec<String>,
        /// Static IPv4 address on that network.
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network it was connected to.
    Disconnect {
        /// Accepted for docker's command line.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Internal: the DNS server of a user-defined network.
    #[command(hide = true)]
    DnsServe { network: String },
    /// Internal: the IPv6 loopback proxy of a container's published ports.
    #[command(hide = true)]
    Proxy6 {
        #[arg(long)]
        target: std::net::Ipv6Addr,
        /// The host's address the UDP relays send from (the network's gateway).
        #[arg(long)]
        source: Option<std::net::Ipv6Addr>,
        /// HOSTPORT:CONTAINERPORT pairs.
        maps: Vec<String>,
    },
    /// Internal (tests): set up a container's network; prints the netns path.
    #[command(hide = true)]
    Attach(AttachArgs),
    /// Internal (tests): tear down a container's network.
    #[command(hide = true)]
    Detach { container_id: String },
}

#[derive(clap::Args)]
pub struct AttachArgs {
    /// none, host, bridge, container:ID or a network name (repeatable for several networks).
    #[arg(long = "network", alias = "net")]
    networks: Vec<String>,
    /// Container name (resolvable on user-defined networks).
    #[arg(long, default_value = "")]
    name: String,
    /// Extra name on the user-defined networks, repeatable.
    #[arg(long = "alias")]
    aliases: Vec<String>,
    /// Static address on the first network.
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], repeatable.
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every --expose port on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// PORT[/tcp|udp] the container exposes, repeatable.
    #[arg(long)]
    expose: Vec<String>,
    #[arg(long)]
    dns: Vec<String>,
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    #[arg(long = "dns-option")]
    dns_option: Vec<String>,
    /// HOST:IP, repeatable.
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    #[arg(long, default_value = "")]
    hostname: String,
    /// Print the whole attachment as JSON.
    #[arg(long)]
    json: bool,
    container_id: String,
}

pub fn run(data_root: &Path, cmd: NetworkCmd) -> Result<(), NetError> {
    let mut out = std::io::stdout().lock();
    match cmd {
        // Containers are the engine's: main dispatches these there.
        NetworkCmd::Connect { .. } | NetworkCmd::Disconnect { .. } => {
            return Err(NetError::Msg("network connect/disconnect go through the container engine".into()))
        }
        NetworkCmd::Create { subnet, gateway, internal, ipv6, driver, opt, ip_range, aux_address, name } => {
            let kv = |flag: &str, v: &String| {
                v.split_once('=')
                    .map(|(k, x)| (k.to_string(), x.to_string()))
                    .ok_or_else(|| NetError::Msg(format!("invalid {flag} {v:?}: expected KEY=VALUE")))
            };
            let opts = opt.iter().map(|o| kv("--opt", o)).collect::<Result<Vec<_>, _>>()?;
            let aux = aux_address.iter().map(|o| kv("--aux-address", o)).collect::<Result<Vec<_>, _>>()?;
            let n = {
                let _l = config::lock(data_root)?;
                if name == config::DEFAULT_NETWORK {
                    return Err(NetError::Msg(format!("network {name} is predefined (created on first use)")));
                }
                let o = config::CreateOptions {
                    subnets: subnet,
                    gateways: gateway,
                    internal,
                    ipv6,
                    driver,
                    opts,
                    ip_range,
                    aux,
                };
                config::create(data_root, &name, &o)?
            };
            crate::events::record(data_root, "network", "create", &n.id, &name);
            let _ = writeln!(out, "{}", n.id);
        }
        NetworkCmd::Ls { quiet } => {
            let nets = config::list(data_root);
            let mut rows: Vec<[String; 6]> = Vec::new();
            if !nets.iter().any(|n| n.is_default()) {
                rows.push([
                    "-".into(),
                    config::DEFAULT_NETWORK.into(),
                    "bridge".into(),
                    "-".into(),
                    "-".into(),
                    "false".into(),
                ]);
            }
            for n in &nets {
                rows.push([
                    n.id[..12].to_string(),
                    n.name.clone(),
                    n.driver.clone(),
                    n.subnet.to_string(),
                    n.gateway.to_string(),
                    n.internal.to_string(),
                ]);
            }
            rows.push(["-".into(), "host".into(), "host".into(), "-".into(), "-".into(), "false".into()]);
            rows.push(["-".into(), "none".into(), "null".into(), "-".into(), "-".into(), "false".into()]);
            rows.sort_by(|a, b| a[1].cmp(&b[1]));
            if quiet {
                for r in &rows {
                    let _ = writeln!(out, "{}", r[1]);
                }
            } else {
                let _ = writeln!(
                    out,
                    "{:<14}{:<24}{:<8}{:<18}{:<16}INTERNAL",
                    "NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY"
                );
                for r in &rows {
                    let _ = writeln!(out, "{:<14}{:<24}{:<8}{:<18}{:<16}{}", r[0], r[1], r[2], r[3], r[4], r[5]);
                }
            }
        }
        NetworkCmd::Inspect { names } => {
            let mut v = Vec::new();
            for name in &names {
                v.push(inspect(data_root, name)?);
            }
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&Value::Array(v)).unwrap_or_default());
        }
        NetworkCmd::Rm { names } => {
            let mut first = None;
            for n in &names {
                match super::remove_network(data_root, n) {
                    Ok(()) => {
                        crate::events::record(data_root, "network", "destroy", n, n);
                        let _ = writeln!(out, "{n}");
                    }
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first {
                return Err(e);
            }
        }
        NetworkCmd::Prune { force: _ } => {
            for n in super::prune(data_root)? {
                crate::events::record(data_root, "network", "destroy", &n, &n);
                let _ = writeln!(out, "{n}");
            }
        }
        NetworkCmd::DnsServe { network } => {
            drop(out);
            super::dns::serve(data_root, &network)?;
        }
        NetworkCmd::Attach(a) => {
            let json = a.json;
            let req = attach_request(a)?;
            let att = super::attach(data_root, &req)?;
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string(&att).unwrap_or_default());
            } else {
                let _ =
                    writeln!(out, "{}", att.netns_path.as_deref().map(|p| p.display().to_string()).unwrap_or_default());
            }
        }
        NetworkCmd::Proxy6 { target, source, maps } => {
            drop(out);
            super::proxy::serve(target, source, &maps)?;
        }
        NetworkCmd::Detach { container_id } => super::detach(data_root, &container_id)?,
    }
    Ok(())
}

pub fn inspect(data_root: &Path, name: &str) -> Result<Value, NetError> {
    if matches!(name, "host" | "none") {
        return Ok(json!({"Name": name, "Driver": if name == "host" { "host" } else { "null" }}));
    }
    let n = if name == config::DEFAULT_NETWORK {
        let _l = config::lock(data_root)?;
        config::ensure_default(data_root)?
    } else {
        config::load(data_root, name)?
    };
    let mut containers = serde_json::Map::new();
    for (id, cname, iface) in super::users(data_root, name) {
        containers.insert(
            id,
            json!({
                "Name": cname,
                "IPv4Address": iface.as_ref().map(|i| format!("{}/{}", i.ip, i.prefix)).unwrap_or_default(),
                "MacAddress": iface.as_ref().map(|i| i.mac.clone()).unwrap_or_default(),
                "IPv6Address": iface.as_ref().and_then(|i| i.ip6.map(|a| format!("{a}/{}", i.prefix6))).unwrap_or_default(),
            }),
        );
    }
    Ok(json!({
        "Name": n.name, "Id": n.id, "Created": n.created, "Driver": n.driver,
        "Parent": n.parent, "IPRange": n.conflist["berth"]["ip_range"], "AuxiliaryAddresses": n.conflist["berth"]["aux_addresses"],
        "Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string(), "Internal": n.internal,
        "Bridge": n.bridge, "DNS": n.has_dns(), "Containers": containers, "Config": n.conflist,
        "EnableIPv6": n.subnet6.is_some(),
        "Options": if n.is_bridge() {
            let mode = |k: &str| if n.conflist["berth"][k] == false { "routed" } else { "nat" };
            json!({
                "com.docker.network.bridge.gateway_mode_ipv4": mode("nat4"),
                "com.docker.network.bridge.gateway_mode_ipv6": mode("nat6"),
            })
        } else {
            json!({"parent": n.parent, "mode": n.conflist["berth"]["mode"]})
        },
        "Subnet6": n.subnet6.map(|x| x.to_string()).unwrap_or_default(),
        "Gateway6": n.gateway6.map(|x| x.to_string()).unwrap_or_default(),
    }))
}

fn attach_request(a: AttachArgs) -> Result<AttachRequest, NetError> {
    let mut mode = NetMode::Bridge;
    let mut networks = Vec::new();
    for n in &a.networks {
        let m = match n.as_str() {
            "none" => Some(NetMode::None),
            "host" => Some(NetMode::Host),
            _ => n.strip_prefix("container:").map(|c| NetMode::Container(c.to_string())),
        };
        match m {
            Some(m) if a.networks.len() == 1 => mode = m,
            Some(_) => return Err(NetError::Msg(format!("--network {n} cannot be combined with other networks"))),
            None => networks.push(NetRequest { network: n.clone(), ..Default::default() }),
        }
    }
    for w in networks.iter_mut().filter(|w| w.network != config::DEFAULT_NETWORK) {
        w.aliases = a.aliases.clone();
    }
    if let Some(ip) = a.ip {
        match networks.first_mut() {
            Some(w) => w.ip = Some(ip),
            None if mode == NetMode::Bridge => networks.push(NetRequest {
                network: config::DEFAULT_NETWORK.into(),
                ip: Some(ip),
                ..Default::default()
            }),
            None => return Err(NetError::Msg("--ip needs a bridge network".into())),
        }
    }
    let mut ports = Vec::new();
    for p in &a.publish {
        ports.extend(PortMapping::parse(p).map_err(NetError::Msg)?);
    }
    if a.publish_all {
        for e in &a.expose {
            let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
            let proto = Proto::parse(proto)
                .ok_or_else(|| NetError::Msg(format!("invalid --expose {e:?}: unknown protocol {proto:?}")))?;
            let cp = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| NetError::Msg(format!("invalid --expose {e:?}")))?;
            if !ports.iter().any(|m: &PortMapping| m.container_port == cp && m.protocol == proto) {
                ports.push(PortMapping {
                    host_ip: None,
                    host_port: 0,
                    host_port_end: 0,
                    container_port: cp,
                    protocol: proto,
                });
            }
        }
    }
    let mut extra_hosts = Vec::new();
    for h in &a.add_host {
        let (host, ip) =
            h.split_once(':').ok_or_else(|| NetError::Msg(format!("invalid --add-host {h:?} (HOST:IP)")))?;
        extra_hosts.push((host.to_string(), ip.to_string()));
    }
    Ok(AttachRequest {
        container_id: a.container_id,
        name: a.name,
        mode,
        networks,
        ports,
        dns: DnsOptions { servers: a.dns, search: a.dns_search, options: a.dns_option },
        extra_hosts,
        hostname: a.hostname,
    })
}
