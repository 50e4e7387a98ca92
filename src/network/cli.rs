//! `berth network ...` commands.

use super::{config, AttachRequest, DnsOptions, NetError, NetMode, NetRequest, PortMapping, Proto};
use serde_json::{json, Value};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(clap::Subcommand)]
pub enum NetworkCmd {
    /// Create a network (a Linux bridge on a private subnet).
    Create {
        /// Subnet in CIDR form (default: the first free of 10.88.0.0/16, 10.89.0.0/16, ...).
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway address (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<String>,
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
        NetworkCmd::Create { subnet, gateway, internal, name } => {
            let n = {
                let _l = config::lock(data_root)?;
                if name == config::DEFAULT_NETWORK {
                    return Err(NetError::Msg(format!("network {name} is predefined (created on first use)")));
                }
                config::create(data_root, &name, subnet.as_deref(), gateway.as_deref(), internal)?
            };
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
                    "bridge".into(),
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
            }),
        );
    }
    Ok(json!({
        "Name": n.name, "Id": n.id, "Created": n.created, "Driver": "bridge",
        "Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string(), "Internal": n.internal,
        "Bridge": n.bridge, "DNS": n.has_dns(), "Containers": containers, "Config": n.conflist,
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
            None => networks.push(NetRequest { network: n.clone(), aliases: Vec::new(), ip: None }),
        }
    }
    for w in networks.iter_mut().filter(|w| w.network != config::DEFAULT_NETWORK) {
        w.aliases = a.aliases.clone();
    }
    if let Some(ip) = a.ip {
        match networks.first_mut() {
            Some(w) => w.ip = Some(ip),
            None if mode == NetMode::Bridge => {
                networks.push(NetRequest { network: config::DEFAULT_NETWORK.into(), aliases: Vec::new(), ip: Some(ip) })
            }
            None => return Err(NetError::Msg("--ip needs a bridge network".into())),
        }
    }
    let mut ports = Vec::new();
    for p in &a.publish {
        ports.push(PortMapping::parse(p).map_err(NetError::Msg)?);
    }
    if a.publish_all {
        for e in &a.expose {
            let (port, proto) = match e.split_once('/') {
                Some((p, "udp")) => (p, Proto::Udp),
                Some((p, "tcp")) | Some((p, "")) => (p, Proto::Tcp),
                None => (e.as_str(), Proto::Tcp),
                Some((_, x)) => return Err(NetError::Msg(format!("invalid --expose {e:?}: unknown protocol {x:?}"))),
            };
            let cp = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| NetError::Msg(format!("invalid --expose {e:?}")))?;
            if !ports.iter().any(|m: &PortMapping| m.container_port == cp && m.protocol == proto) {
                ports.push(PortMapping { host_ip: None, host_port: 0, container_port: cp, protocol: proto });
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
