//! Published ports: docker's `-p [IP:][HOSTPORT[-END]:]CONTAINERPORT[-END][/tcp|udp|sctp]` forms
//! (IPv6 host addresses bare or in brackets, port ranges), host port checks and free port picks.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// One published port. `host_port` 0 means "any free port" (resolved by attach); a
/// `host_port_end` above `host_port` means "the first free port of host_port..=host_port_end".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// None: every host address (of each family the network has).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port_end: u16,
    pub container_port: u16,
    pub protocol: Proto,
}

/// `ip:port` with IPv6 addresses in brackets.
fn join_host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        write!(f, "{}->{}/{}", join_host_port(ip, self.host_port), self.container_port, self.protocol.as_str())
    }
}

impl PortMapping {
    /// "127.0.0.1:8080/tcp" style name of the host side.
    pub fn host_side(&self) -> String {
        let ip = self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        format!("{}/{}", join_host_port(ip, self.host_port), self.protocol.as_str())
    }

    /// The "IP:HOST->PORT/PROTO" lines docker shows: a mapping on every address is shown once
    /// per family the network has (`0.0.0.0` and `[::]`).
    pub fn shown(&self, ipv6: bool) -> Vec<String> {
        let mut v = vec![self.to_string()];
        if self.host_ip.is_none() && ipv6 {
            let six = PortMapping { host_ip: Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), ..self.clone() };
            v.push(six.to_string());
        }
        v
    }

    /// True when both claim the same host port (same protocol, overlapping addresses).
    pub fn conflicts(&self, o: &PortMapping) -> bool {
        self.protocol == o.protocol
            && self.host_port == o.host_port
            && (self.host_ip.is_none() || o.host_ip.is_none() || self.host_ip == o.host_ip)
    }

    /// The portmap plugin's runtimeConfig entry.
    pub fn cni(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "hostPort": self.host_port, "containerPort": self.container_port, "protocol": self.protocol.as_str()
        });
        if let Some(ip) = self.host_ip {
            v["hostIP"] = serde_json::json!(ip.to_string());
        }
        v
    }

    /// Parses one `-p` value into its mappings (one per port of a range). No HOSTPORT, or an
    /// empty one (`IP::PORT`), is any free host port; a host range for one container port is
    /// the first free port of that range.
    pub fn parse(s: &str) -> Result<Vec<PortMapping>, String> {
        let bad = |why: &str| format!("invalid port mapping {s:?}: {why}");
        let (spec, protocol) = match s.rsplit_once('/') {
            Some((a, p)) => (a, Proto::parse(p).ok_or_else(|| bad(&format!("invalid proto: {p}")))?),
            None => (s, Proto::Tcp),
        };
        // [IPv6]:HOST:CONT, IP:HOST:CONT (a bare IPv6 address too), HOST:CONT, CONT.
        let (ip, rest) = match spec.strip_prefix('[') {
            Some(r) => {
                let (ip, rest) = r.split_once("]:").ok_or_else(|| bad("expected [IPv6]:HOSTPORT:CONTAINERPORT"))?;
                (Some(ip), rest)
            }
            None => (None, spec),
        };
        let mut parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        parts.reverse();
        let (ip, host, cont) = match (ip, parts.as_slice()) {
            (None, [c]) => (None, "", *c),
            (None, [h, c]) => (None, *h, *c),
            (None, [i, h, c]) => (Some(*i), *h, *c),
            (Some(i), [h, c]) => (Some(i), *h, *c),
            _ => return Err(bad("expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]")),
        };
        let host_ip = match ip {
            None | Some("") => None,
            Some(i) => {
                let a: IpAddr = i.parse().map_err(|_| bad(&format!("invalid IP address: {i}")))?;
                // 0.0.0.0 is every address of every family, as no address.
                (a != IpAddr::V4(Ipv4Addr::UNSPECIFIED)).then_some(a)
            }
        };
        let range = |p: &str, what: &str| -> Result<(u16, u16), String> {
            let one = |x: &str| x.parse::<u16>().ok().filter(|n| *n > 0);
            let (lo, hi) = p.split_once('-').unwrap_or((p, p));
            match (one(lo), one(hi)) {
                (Some(l), Some(h)) if l <= h => Ok((l, h)),
                _ => Err(bad(&format!("invalid {what}: {p}"))),
            }
        };
        let (clo, chi) = range(cont, "containerPort")?;
        let one = |hp: u16, hpe: u16, cp: u16| PortMapping {
            host_ip,
            host_port: hp,
            host_port_end: hpe,
            container_port: cp,
            protocol,
        };
        if host.is_empty() {
            return Ok((clo..=chi).map(|c| one(0, 0, c)).collect());
        }
        let (hlo, hhi) = range(host, "hostPort")?;
        if clo == chi {
            return Ok(vec![one(hlo, if hhi > hlo { hhi } else { 0 }, clo)]);
        }
        if hhi - hlo != chi - clo {
            return Err(bad(&format!("invalid ranges specified for container and host Ports: {cont} and {host}")));
        }
        Ok((clo..=chi).zip(hlo..=hhi).map(|(c, h)| one(h, 0, c)).collect())
    }
}

/// The addresses a mapping binds: its own, else 0.0.0.0 and, on a dual-stack network, [::].
fn bind_addrs(m: &PortMapping, port: u16, ipv6: bool) -> Vec<SocketAddr> {
    match m.host_ip {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None if ipv6 => vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        ],
        None => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)],
    }
}

fn bind(addr: SocketAddr, proto: Proto) -> Result<u16, std::io::Error> {
    match proto {
        Proto::Tcp => TcpListener::bind(addr)?.local_addr().map(|a| a.port()),
        Proto::Udp => UdpSocket::bind(addr)?.local_addr().map(|a| a.port()),
        // The kernel may have no SCTP at all: only berth's own records are checked.
        Proto::Sctp => Ok(addr.port()),
    }
}

/// Fails when a host process holds the port on any address (and family) the mapping uses.
pub fn host_port_free(m: &PortMapping, port: u16, ipv6: bool) -> Result<(), std::io::Error> {
    for a in bind_addrs(m, port, ipv6) {
        bind(a, m.protocol)?;
    }
    Ok(())
}

/// A free port from the kernel's ephemeral range for `m`'s addresses and protocol.
pub fn pick_free_port(m: &PortMapping, ipv6: bool) -> Result<u16, std::io::Error> {
    let proto = if m.protocol == Proto::Sctp { Proto::Tcp } else { m.protocol };
    let addrs = bind_addrs(m, 0, ipv6);
    // The last address family first: on a dual-stack network [::] (not IPv6-only) covers both.
    let port = bind(addrs[addrs.len() - 1], proto)?;
    host_port_free(&PortMapping { protocol: proto, ..m.clone() }, port, ipv6)?;
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> PortMapping {
        let v = PortMapping::parse(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v[0].clone()
    }

    #[test]
    fn parse_forms() {
        let m = one("127.0.0.1:8080:80/udp");
        assert_eq!(m.host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!((m.host_port, m.container_port, m.protocol), (8080, 80, Proto::Udp));
        let m = one("8080:80");
        assert_eq!((m.host_ip, m.host_port, m.container_port, m.protocol), (None, 8080, 80, Proto::Tcp));
        let m = one("80");
        assert_eq!((m.host_port, m.container_port), (0, 80));
        let m = one("0.0.0.0::80/tcp");
        assert_eq!((m.host_ip, m.host_port), (None, 0));
        let m = one("127.0.0.1::80");
        assert_eq!((m.host_ip, m.host_port), (Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), 0));
        for s in ["[::1]:8080:80", "::1:8080:80"] {
            let m = one(s);
            assert_eq!((m.host_ip, m.host_port), (Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), 8080), "{s}");
            assert_eq!(m.to_string(), "[::1]:8080->80/tcp");
        }
        let m = one("[::]:8080:80/sctp");
        assert_eq!((m.host_ip, m.protocol), (Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), Proto::Sctp));
        assert_eq!(m.host_side(), "[::]:8080/sctp");
        let v = PortMapping::parse("8000-8002:9000-9002/udp").unwrap();
        let pairs: Vec<(u16, u16)> = v.iter().map(|m| (m.host_port, m.container_port)).collect();
        assert_eq!(pairs, [(8000, 9000), (8001, 9001), (8002, 9002)]);
        let v = PortMapping::parse("127.0.0.1::7000-7001").unwrap();
        assert!(v.iter().all(|m| m.host_port == 0) && v.len() == 2);
        let m = one("8000-8005:80");
        assert_eq!((m.host_port, m.host_port_end, m.container_port), (8000, 8005, 80));
        for bad in [
            "",
            "x",
            "8080:",
            "1:2:3:4",
            "70000:80",
            "80/foo",
            "nope:80:80",
            "0:80",
            "8000-8010:80-81",
            "80:80-81",
            "9-8:80",
            "[::1:80:80",
        ] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
        let e = PortMapping::parse("8000-8010:80-81").unwrap_err();
        assert!(e.contains("invalid ranges specified for container and host Ports: 80-81 and 8000-8010"), "{e}");
    }

    #[test]
    fn conflicts_and_shown() {
        let a = one("8080:80");
        let b = one("127.0.0.1:8080:81");
        let c = one("8080:80/udp");
        let d = one("127.0.0.2:8080:80");
        let e = one("[::1]:8080:80");
        assert!(a.conflicts(&b) && b.conflicts(&a) && a.conflicts(&e));
        assert!(!a.conflicts(&c));
        assert!(!b.conflicts(&d) && !b.conflicts(&e));
        assert_eq!(b.cni()["hostIP"], "127.0.0.1");
        assert_eq!(e.cni()["hostIP"], "::1");
        assert!(a.cni().get("hostIP").is_none());
        assert_eq!(a.shown(false), ["0.0.0.0:8080->80/tcp"]);
        assert_eq!(a.shown(true), ["0.0.0.0:8080->80/tcp", "[::]:8080->80/tcp"]);
        assert_eq!(e.shown(true), ["[::1]:8080->80/tcp"]);
    }

    #[test]
    fn records_stay_readable() {
        let old = r#"{"host_ip":"127.0.0.1","host_port":8080,"container_port":80,"protocol":"tcp"}"#;
        let m: PortMapping = serde_json::from_str(old).unwrap();
        assert_eq!(m, one("127.0.0.1:8080:80"));
    }
}
