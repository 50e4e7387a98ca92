//! `--network pasta` for an ordinary user's containers: pasta (Debian package `passt`), a
//! user-mode network stack that, unlike slirp4netns, copies the host's address, routes and
//! interface into the container's namespace (`--config-net`) and forwards published ports with
//! plain sockets (`-t`/`-u`) instead of an API. It runs in the host's network namespace,
//! daemonizes once the namespace is configured, and is stopped by pid at clean-up.
//!
//! As podman runs it: no forwarding from the container back to the host's ports (`-T none
//! -U none`) and no mapping of the gateway address to the host (`--no-map-gw`), so the host's
//! loopback services stay out of reach, as with slirp4netns's `--disable-host-loopback`. DNS
//! goes to [`DNS`], which pasta maps to the host's first resolver (`--dns-forward`).

use super::ports::{PortMapping, Proto};
use super::slirp::Helper;
use super::NetError;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const BINARY: &str = "pasta";
/// The container's interface (pasta would otherwise take the host's interface name).
pub const IFNAME: &str = "eth0";
/// The container's resolver: forwarded by pasta to the host's first one.
pub const DNS: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

fn pid_path(netns: &Path) -> PathBuf {
    netns.with_extension("pasta.pid")
}

fn log_path(netns: &Path) -> PathBuf {
    netns.with_extension("pasta.log")
}

/// Removes the pid file and the log of the helper of the namespace at `netns`.
pub fn remove_files(netns: &Path) {
    let _ = std::fs::remove_file(pid_path(netns));
    let _ = std::fs::remove_file(log_path(netns));
}

/// pasta's `-t`/`-u` spec of one published port: `[ADDR/]HOST:CONTAINER`.
fn port_spec(p: &PortMapping) -> String {
    match p.host_ip {
        Some(ip) => format!("{ip}/{}:{}", p.host_port, p.container_port),
        None => format!("{}:{}", p.host_port, p.container_port),
    }
}

/// The command line for the namespace at `netns` with `ports` published.
fn args(netns: &Path, ports: &[PortMapping]) -> Result<Vec<std::ffi::OsString>, NetError> {
    let mut a: Vec<std::ffi::OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    for s in ["--config-net", "--quiet", "--ns-ifname", IFNAME, "--no-map-gw", "-T", "none", "-U", "none"] {
        push(s);
    }
    push("--dns-forward");
    push(&DNS.to_string());
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    for p in ports {
        match p.protocol {
            Proto::Tcp => tcp.push(port_spec(p)),
            Proto::Udp => udp.push(port_spec(p)),
            Proto::Sctp => {
                return Err(NetError::Msg(format!("publish {}: pasta forwards only tcp and udp", p.host_side())))
            }
        }
    }
    for (flag, specs) in [("-t", tcp), ("-u", udp)] {
        if specs.is_empty() {
            push(flag);
            push("none");
        }
        for s in specs {
            push(flag);
            push(&s);
        }
    }
    a.push("--pid".into());
    a.push(pid_path(netns).into_os_string());
    a.push("--netns".into());
    a.push(netns.as_os_str().to_os_string());
    Ok(a)
}

/// Starts pasta for the namespace pinned at `netns` with `ports` published; returns once the
/// namespace is configured (pasta's first process exits when it has daemonized).
pub fn start(netns: &Path, ports: &[PortMapping]) -> Result<Helper, NetError> {
    let args = args(netns, ports)?;
    let (pidf, log) = (pid_path(netns), log_path(netns));
    let _ = std::fs::remove_file(&pidf);
    // Its messages go to a file (the daemon may keep the descriptor: a pipe would not end).
    let log_file = std::fs::File::create(&log).map_err(|e| NetError::io("create", &log, e))?;
    let status = Command::new(BINARY)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .status()
        .map_err(|e| NetError::Msg(format!("run {BINARY} (package passt): {e}")))?;
    let pid = std::fs::read_to_string(&pidf).ok().and_then(|s| s.trim().parse::<u32>().ok());
    let helper = pid.map(|pid| Helper { pid, start: super::proc_start(pid).unwrap_or(0) });
    match helper {
        Some(h) if status.success() && h.start != 0 => Ok(h),
        h => {
            if let Some(h) = h {
                super::slirp::stop(&h);
            }
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            remove_files(netns);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim).unwrap_or("");
            let last = if last.is_empty() { status.to_string() } else { last.to_string() };
            Err(NetError::Msg(format!("{BINARY} failed: {last}")))
        }
    }
}

/// What pasta gives the container: the address, prefix length and gateway of the host's
/// interface with the default route.
pub fn host_template() -> Option<(Ipv4Addr, u8, Option<Ipv4Addr>)> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let (ifname, gw) = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(f[2], 16).ok().map(|g| Ipv4Addr::from(g.to_ne_bytes()));
        Some((f[0].to_string(), gw.filter(|g| !g.is_unspecified())))
    })?;
    let (_, addr, prefix) = super::ipnet::interface_addrs().into_iter().find(|(n, _, _)| *n == ifname)?;
    Some((addr, prefix, gw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasta_args() {
        let p = |spec: &str| PortMapping::parse(spec).unwrap().remove(0);
        let a = args(Path::new("/x/ns/c1"), &[p("127.0.0.1:8080:80"), p("5353:53/udp")]).unwrap();
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let s = a.join(" ");
        assert!(s.contains("-t 127.0.0.1/8080:80 -u 5353:53 --pid /x/ns/c1.pasta.pid --netns /x/ns/c1"), "{s}");
        assert!(s.starts_with("--config-net --quiet --ns-ifname eth0 --no-map-gw -T none -U none"), "{s}");
        let a = args(Path::new("/n"), &[]).unwrap();
        let s: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert!(s.join(" ").contains("-t none -u none"), "{s:?}");
    }
}
