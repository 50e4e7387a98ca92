//! Published ports: `-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]` parsing and host port checks.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port. `host_port` 0 means "any free port" (resolved by attach).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// None: every host address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Proto,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(f, "{ip}:{}->{}/{}", self.host_port, self.container_port, self.protocol.as_str())
    }
}

impl PortMapping {
    /// "127.0.0.1:8080/tcp" style name of the host side.
    pub fn host_side(&self) -> String {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        format!("{ip}:{}/{}", self.host_port, self.protocol.as_str())
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

    /// Parses `-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]` (no HOSTPORT or an empty one: any
    /// free host port).
    pub fn parse(s: &str) -> Result<PortMapping, String> {
        let bad = |why: &str| format!("invalid port mapping {s:?}: {why}");
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, "tcp")) => (a, Proto::Tcp),
            Some((a, "udp")) => (a, Proto::Udp),
            Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?} (tcp or udp)"))),
            None => (s, Proto::Tcp),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (ip, host, cont) = match parts.as_slice() {
            [c] => (None, "", *c),
            [h, c] => (None, *h, *c),
            [i, h, c] => (Some(*i), *h, *c),
            _ => return Err(bad("expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]")),
        };
        let host_ip = match ip {
            None | Some("") => None,
            Some(i) => {
                let a: Ipv4Addr = i.parse().map_err(|_| bad(&format!("bad host IP {i:?}")))?;
                if a.is_unspecified() {
                    None
                } else {
                    Some(a)
                }
            }
        };
        let port = |p: &str, what: &str| -> Result<u16, String> {
            p.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| bad(&format!("bad {what} port {p:?}")))
        };
        let container_port = port(cont, "container")?;
        let host_port = if host.is_empty() { 0 } else { port(host, "host")? };
        Ok(PortMapping { host_ip, host_port, container_port, protocol: proto })
    }
}

/// Fails when a host process holds the port (we try to bind it).
pub fn host_port_free(m: &PortMapping) -> Result<(), std::io::Error> {
    let addr = SocketAddrV4::new(m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), m.host_port);
    match m.protocol {
        Proto::Tcp => TcpListener::bind(addr).map(drop),
        Proto::Udp => UdpSocket::bind(addr).map(drop),
    }
}

/// A free port from the kernel's ephemeral range for `m`'s address and protocol.
pub fn pick_free_port(m: &PortMapping) -> Result<u16, std::io::Error> {
    let addr = SocketAddrV4::new(m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
    match m.protocol {
        Proto::Tcp => TcpListener::bind(addr)?.local_addr().map(|a| a.port()),
        Proto::Udp => UdpSocket::bind(addr)?.local_addr().map(|a| a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let m = PortMapping::parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(m.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!((m.host_port, m.container_port, m.protocol), (8080, 80, Proto::Udp));
        let m = PortMapping::parse("8080:80").unwrap();
        assert_eq!((m.host_ip, m.host_port, m.container_port, m.protocol), (None, 8080, 80, Proto::Tcp));
        let m = PortMapping::parse("80").unwrap();
        assert_eq!((m.host_port, m.container_port), (0, 80));
        let m = PortMapping::parse("0.0.0.0::80/tcp").unwrap();
        assert_eq!((m.host_ip, m.host_port), (None, 0));
        for bad in ["", "x", "8080:", "1:2:3:4", "70000:80", "80/sctp", "nope:80:80", "0:80"] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflicts() {
        let a = PortMapping::parse("8080:80").unwrap();
        let b = PortMapping::parse("127.0.0.1:8080:81").unwrap();
        let c = PortMapping::parse("8080:80/udp").unwrap();
        let d = PortMapping::parse("127.0.0.2:8080:80").unwrap();
        assert!(a.conflicts(&b) && b.conflicts(&a));
        assert!(!a.conflicts(&c));
        assert!(!b.conflicts(&d));
        assert_eq!(b.cni()["hostIP"], "127.0.0.1");
        assert!(a.cni().get("hostIP").is_none());
    }
}
