//! The IPv6 loopback proxy: the kernel never sends a packet from ::1 off the host, so a DNAT to
//! a container cannot serve a connection from the host's [::1] (IPv4 has route_localnet, IPv6
//! has nothing like it). A container with TCP or UDP ports published on [::1] (`-p
//! '[::1]:P:C'`, or on every address of a dual-stack network) gets one small process, as
//! docker's docker-proxy, that listens on [::1]:P and relays to the container's IPv6 address
//! (UDP: one socket per client, dropped after two idle minutes); an ip6tables rule (`-d ::1
//! --dport P -j RETURN` first in nat OUTPUT) keeps that traffic away from the portmap plugin's
//! DNAT. detach stops the process (by pid and start time) and removes the rules.

use super::{config, NetError, PortMapping, Proto};
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One relayed port: (host port, container port, protocol: tcp or udp).
pub type Relay = (u16, u16, Proto);

/// The tcp and udp mappings reachable on the host's [::1].
pub fn loopback6(ports: &[PortMapping]) -> Vec<Relay> {
    ports
        .iter()
        .filter(|p| {
            p.protocol != Proto::Sctp
                && match p.host_ip {
                    None => true,
                    Some(IpAddr::V6(a)) => a.is_loopback() || a.is_unspecified(),
                    Some(IpAddr::V4(_)) => false,
                }
        })
        .map(|p| (p.host_port, p.container_port, p.protocol))
        .collect()
}

/// "HOST:CONT/PROTO", the proxy's argument for one relay.
fn relay_arg(r: &Relay) -> String {
    format!("{}:{}/{}", r.0, r.1, r.2.as_str())
}

/// The ip6tables arguments of the rule that keeps [::1]:port out of the DNAT (op -I or -D).
pub fn rule_args(op: &str, port: u16, proto: Proto, container_id: &str) -> Vec<String> {
    let comment = format!("berth loopback proxy {}", &container_id[..container_id.len().min(12)]);
    let mut v: Vec<String> = ["-w", "-t", "nat", op, "OUTPUT"].iter().map(|s| s.to_string()).collect();
    if op == "-I" {
        v.push("1".into());
    }
    for a in ["-d", "::1/128", "-p", proto.as_str(), "-m", proto.as_str(), "--dport"] {
        v.push(a.into());
    }
    v.push(port.to_string());
    v.extend(["-m", "comment", "--comment"].iter().map(|s| s.to_string()));
    v.push(comment);
    v.extend(["-j", "RETURN"].iter().map(|s| s.to_string()));
    v
}

/// Starts the proxy for `maps` to `target`; returns its pid once it listens on every port.
/// `source`: the host's address on the container's network (the bridge's gateway), the source
/// of the relayed UDP datagrams.
pub fn start(target: Ipv6Addr, source: Option<Ipv6Addr>, maps: &[Relay]) -> Result<u32, NetError> {
    let err = |m: String| NetError::Msg(format!("ipv6 loopback proxy: {m}"));
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["network", "proxy6", "--target", &target.to_string()]);
    if let Some(s) = source {
        cmd.args(["--source", &s.to_string()]);
    }
    for r in maps {
        cmd.arg(relay_arg(r));
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .current_dir("/")
        .spawn()
        .map_err(|e| err(format!("exec {}: {e}", exe.display())))?;
    // The daemon reports "ready PID".
    let line = super::dns::ready_line(&mut child, &err)?;
    let line = line.trim();
    if let Some(pid) = line.strip_prefix("ready ").and_then(|p| p.parse::<u32>().ok()) {
        return Ok(pid);
    }
    Err(NetError::Msg(line.strip_prefix("error: ").unwrap_or("ipv6 loopback proxy did not start").to_string()))
}

/// Stops a proxy started by [`start`] if `pid` is still the process that started at `start`.
pub fn stop(pid: u32, start: u64) {
    if pid > 1 && super::proc_start(pid) == Some(start) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
}

/// `berth network proxy6 --target ADDR [--source ADDR] HOST:CONT/PROTO...`: daemonizes, binds
/// [::1]:HOST for each, reports "ready PID" (or "error: ...") on stdout and relays until killed.
pub fn serve(target: Ipv6Addr, source: Option<Ipv6Addr>, maps: &[String]) -> Result<(), NetError> {
    let mut relays: Vec<Relay> = Vec::new();
    for m in maps {
        let (pair, proto) = m.split_once('/').unwrap_or((m.as_str(), "tcp"));
        let r = pair.split_once(':').and_then(|(h, c)| {
            let proto = Proto::parse(proto).filter(|p| *p != Proto::Sctp)?;
            Some((h.parse::<u16>().ok()?, c.parse::<u16>().ok()?, proto))
        });
        relays.push(r.ok_or_else(|| NetError::Msg(format!("invalid relay {m:?} (HOST:CONT/tcp|udp)")))?);
    }
    // SAFETY: berth is single-threaded here (no thread was started before this command).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => return Err(NetError::Msg(format!("ipv6 loopback proxy: fork: {e}"))),
    }
    let _ = nix::unistd::setsid();
    enum Sock {
        Tcp(TcpListener),
        Udp(UdpSocket),
    }
    let mut socks = Vec::new();
    for (h, c, proto) in &relays {
        let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), *h);
        let s = match proto {
            Proto::Udp => UdpSocket::bind(addr).map(Sock::Udp),
            _ => TcpListener::bind(addr).map(Sock::Tcp),
        };
        match s {
            Ok(s) => socks.push((s, *c)),
            Err(e) => {
                println!("error: host port [::1]:{h}/{} is not available: {e}", proto.as_str());
                return Ok(());
            }
        }
    }
    println!("ready {}", std::process::id());
    let _ = std::io::stdout().flush();
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in [0, 1, 2] {
            // SAFETY: dup2 onto the standard descriptors of this process; `null` stays open.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
        }
    }
    let mut threads = Vec::new();
    for (s, c) in socks {
        let to = SocketAddr::new(IpAddr::V6(target), c);
        threads.push(match s {
            Sock::Tcp(l) => std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    std::thread::spawn(move || relay(s, to));
                }
            }),
            Sock::Udp(u) => std::thread::spawn(move || relay_udp(u, source, to)),
        });
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// UDP: datagrams from each client go out of a socket of its own connected to the container;
/// that socket's replies go back to the client from [::1]:HOST. Idle clients are dropped.
///
/// The client's socket is bound to `source` (the network's gateway) rather than letting
/// connect() pick one: a connected socket keeps the source it got at connect() for the whole
/// session, and while the gateway is still tentative (duplicate address detection) the kernel
/// would pick another interface's address, one the container may have no route back to. A
/// client that keeps its port (every retry of a resolver or a test) would then never get an
/// answer. While the gateway cannot be bound the datagram is dropped and the next one tries again.
fn relay_udp(listen: UdpSocket, source: Option<Ipv6Addr>, to: SocketAddr) {
    let Ok(listen) = listen.try_clone().map(Arc::new) else { return };
    let clients: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = listen.recv_from(&mut buf) else { continue };
        let existing = clients.lock().ok().and_then(|m| m.get(&from).cloned());
        let up = match existing {
            Some(u) => u,
            None => {
                let src = IpAddr::V6(source.unwrap_or(Ipv6Addr::UNSPECIFIED));
                let Ok(u) = UdpSocket::bind(SocketAddr::new(src, 0)) else { continue };
                if u.connect(to).is_err() || u.set_read_timeout(Some(Duration::from_secs(120))).is_err() {
                    continue;
                }
                let u = Arc::new(u);
                if let Ok(mut m) = clients.lock() {
                    m.insert(from, u.clone());
                }
                let (back, down, map) = (listen.clone(), u.clone(), clients.clone());
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 65536];
                    loop {
                        match down.recv(&mut b) {
                            Ok(k) => {
                                let _ = back.send_to(&b[..k], from);
                            }
                            // A datagram that reached the container before its server bound
                            // the port: the client's next one goes through the same socket.
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                            // Idle for the read timeout (or the socket failed): the client goes.
                            Err(_) => break,
                        }
                    }
                    if let Ok(mut m) = map.lock() {
                        m.remove(&from);
                    }
                });
                u
            }
        };
        let _ = up.send(&buf[..n]);
    }
}

/// Copies both ways between a client and the container until both sides are done.
fn relay(client: TcpStream, to: SocketAddr) {
    let Ok(server) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else { return };
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else { return };
    let up = std::thread::spawn(move || {
        let mut c = client;
        let mut s = server;
        let _ = std::io::copy(&mut c, &mut s);
        let _ = s.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut s2, &mut c2);
    let _ = c2.shutdown(Shutdown::Write);
    let _ = up.join();
}

/// Adds the RETURN rules for `maps` (undone by [`remove_rules`] on failure).
pub fn add_rules(container_id: &str, maps: &[Relay]) -> Result<(), NetError> {
    for (h, _, proto) in maps {
        let o = config::iptables(true, &rule_args("-I", *h, *proto, container_id))?;
        if !o.status.success() {
            remove_rules(container_id, maps);
            let e = String::from_utf8_lossy(&o.stderr);
            return Err(NetError::Msg(format!("ipv6 loopback proxy: add ip6tables rule: {}", e.trim())));
        }
    }
    Ok(())
}

pub fn remove_rules(container_id: &str, maps: &[Relay]) {
    for (h, _, proto) in maps {
        for _ in 0..4 {
            match config::iptables(true, &rule_args("-D", *h, *proto, container_id)) {
                Ok(o) if o.status.success() => {}
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_ports_and_rules() {
        let mut v = Vec::new();
        for s in ["8080:80", "[::1]:81:81", "127.0.0.1:82:82", "[::]:83:83", "84:84/udp", "[fd00::2]:85:85"] {
            v.extend(PortMapping::parse(s).unwrap());
        }
        let tcp = Proto::Tcp;
        assert_eq!(loopback6(&v), [(8080, 80, tcp), (81, 81, tcp), (83, 83, tcp), (84, 84, Proto::Udp)]);
        assert_eq!(relay_arg(&(84, 84, Proto::Udp)), "84:84/udp");
        let r = rule_args("-I", 8080, tcp, "0123456789abcdef").join(" ");
        assert_eq!(
            r,
            "-w -t nat -I OUTPUT 1 -d ::1/128 -p tcp -m tcp --dport 8080 -m comment --comment berth loopback proxy 0123456789ab -j RETURN"
        );
    }
}
