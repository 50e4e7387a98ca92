//! The IPv6 loopback proxy: the kernel never sends a packet from ::1 off the host, so a DNAT to
//! a container cannot serve a connection from the host's [::1] (IPv4 has route_localnet, IPv6
//! has nothing like it). A container with TCP ports published on [::1] (`-p '[::1]:P:C'`, or on
//! every address of a dual-stack network) gets one small process, as docker's docker-proxy,
//! that listens on [::1]:P and relays to the container's IPv6 address; an ip6tables rule
//! (`-d ::1 --dport P -j RETURN` first in nat OUTPUT) keeps those connections away from the
//! portmap plugin's DNAT. detach stops the process (by pid and start time) and removes the
//! rules.

use super::{config, NetError, PortMapping, Proto};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// (host port, container port) of the mappings reachable on the host's [::1].
pub fn loopback6(ports: &[PortMapping]) -> Vec<(u16, u16)> {
    ports
        .iter()
        .filter(|p| {
            p.protocol == Proto::Tcp
                && match p.host_ip {
                    None => true,
                    Some(IpAddr::V6(a)) => a.is_loopback() || a.is_unspecified(),
                    Some(IpAddr::V4(_)) => false,
                }
        })
        .map(|p| (p.host_port, p.container_port))
        .collect()
}

/// The ip6tables arguments of the rule that keeps [::1]:port out of the DNAT (op -I or -D).
pub fn rule_args(op: &str, port: u16, container_id: &str) -> Vec<String> {
    let comment = format!("berth loopback proxy {}", &container_id[..container_id.len().min(12)]);
    let mut v: Vec<String> = ["-w", "-t", "nat", op, "OUTPUT"].iter().map(|s| s.to_string()).collect();
    if op == "-I" {
        v.push("1".into());
    }
    for a in ["-d", "::1/128", "-p", "tcp", "-m", "tcp", "--dport"] {
        v.push(a.into());
    }
    v.push(port.to_string());
    v.extend(["-m", "comment", "--comment"].iter().map(|s| s.to_string()));
    v.push(comment);
    v.extend(["-j", "RETURN"].iter().map(|s| s.to_string()));
    v
}

/// Starts the proxy for `maps` to `target`; returns its pid once it listens on every port.
pub fn start(target: Ipv6Addr, maps: &[(u16, u16)]) -> Result<u32, NetError> {
    let err = |m: String| NetError::Msg(format!("ipv6 loopback proxy: {m}"));
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["network", "proxy6", "--target", &target.to_string()]);
    for (h, c) in maps {
        cmd.arg(format!("{h}:{c}"));
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .current_dir("/")
        .spawn()
        .map_err(|e| err(format!("exec {}: {e}", exe.display())))?;
    let mut out = child.stdout.take().ok_or_else(|| err("no stdout pipe".into()))?;
    // The first child exits at once after forking the daemon, which reports "ready PID".
    let _ = child.wait();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut b = [0u8; 256];
    while !line.contains('\n') && Instant::now() < deadline {
        let mut fds = [nix::poll::PollFd::new(out.as_fd(), nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(err(format!("poll: {e}"))),
            Ok(_) => {}
        }
        match out.read(&mut b) {
            Ok(0) => break,
            Ok(n) => line.push_str(&String::from_utf8_lossy(&b[..n])),
            Err(e) => return Err(err(format!("read: {e}"))),
        }
    }
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

/// `berth network proxy6 --target ADDR HOST:CONT...`: daemonizes, binds [::1]:HOST for each
/// pair, reports "ready PID" (or "error: ...") on stdout and relays until killed.
pub fn serve(target: Ipv6Addr, maps: &[String]) -> Result<(), NetError> {
    let mut pairs = Vec::new();
    for m in maps {
        let p = m.split_once(':').and_then(|(h, c)| Some((h.parse::<u16>().ok()?, c.parse::<u16>().ok()?)));
        pairs.push(p.ok_or_else(|| NetError::Msg(format!("invalid port pair {m:?}")))?);
    }
    // SAFETY: berth is single-threaded here (no thread was started before this command).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => return Err(NetError::Msg(format!("ipv6 loopback proxy: fork: {e}"))),
    }
    let _ = nix::unistd::setsid();
    let mut listeners = Vec::new();
    for (h, c) in &pairs {
        let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), *h);
        match TcpListener::bind(addr) {
            Ok(l) => listeners.push((l, *c)),
            Err(e) => {
                println!("error: host port [::1]:{h}/tcp is not available: {e}");
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
    for (l, c) in listeners {
        let to = SocketAddr::new(IpAddr::V6(target), c);
        threads.push(std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || relay(s, to));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
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
pub fn add_rules(container_id: &str, maps: &[(u16, u16)]) -> Result<(), NetError> {
    for (h, _) in maps {
        let o = config::iptables(true, &rule_args("-I", *h, container_id))?;
        if !o.status.success() {
            remove_rules(container_id, maps);
            let e = String::from_utf8_lossy(&o.stderr);
            return Err(NetError::Msg(format!("ipv6 loopback proxy: add ip6tables rule: {}", e.trim())));
        }
    }
    Ok(())
}

pub fn remove_rules(container_id: &str, maps: &[(u16, u16)]) {
    for (h, _) in maps {
        for _ in 0..4 {
            match config::iptables(true, &rule_args("-D", *h, container_id)) {
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
        assert_eq!(loopback6(&v), [(8080, 80), (81, 81), (83, 83)]);
        let r = rule_args("-I", 8080, "0123456789abcdef").join(" ");
        assert_eq!(
            r,
            "-w -t nat -I OUTPUT 1 -d ::1/128 -p tcp -m tcp --dport 8080 -m comment --comment berth loopback proxy 0123456789ab -j RETURN"
        );
    }
}
