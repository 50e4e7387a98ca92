//! The default network of an ordinary user's containers: slirp4netns (Debian package
//! `slirp4netns`), a user-mode TCP/IP stack on a tap device in the container's namespace, as
//! podman's rootless default. It runs in the host's network namespace, so published ports are
//! sockets it listens on (`add_hostfwd` through its API socket).

use super::ports::{PortMapping, Proto};
use super::NetError;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The addresses `slirp4netns --configure` gives: the container, the gateway (the host), DNS.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
pub const PREFIX: u8 = 24;
pub const IFNAME: &str = "tap0";
const BINARY: &str = "slirp4netns";

/// The first port an unprivileged process may bind (`net.ipv4.ip_unprivileged_port_start`).
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Refuses host ports an unprivileged user cannot listen on.
pub fn check_ports(ports: &[PortMapping]) -> Result<(), NetError> {
    let first = unprivileged_port_start();
    if let Some(p) = ports.iter().find(|p| p.host_port != 0 && p.host_port < first) {
        return Err(NetError::Msg(format!(
            "host port {} is below {first}: an unprivileged user cannot publish it (lower \
             net.ipv4.ip_unprivileged_port_start, or publish a port from {first} up)",
            p.host_port
        )));
    }
    Ok(())
}

/// A running slirp4netns: its pid and start time (to tell it from a reused pid).
pub struct Helper {
    pub pid: u32,
    pub start: u64,
}

/// The API socket of the helper for the namespace at `netns` (next to it).
fn api_socket(netns: &Path) -> PathBuf {
    netns.with_extension("slirp.sock")
}

/// The socket's name, and its directory: a socket path is limited to 107 bytes, so the
/// helper binds it by a relative name and we reach it through an fd of the directory.
fn socket_parts(netns: &Path) -> (PathBuf, std::ffi::OsString) {
    let s = api_socket(netns);
    (s.parent().map(Path::to_path_buf).unwrap_or_default(), s.file_name().map(|n| n.to_os_string()).unwrap_or_default())
}

/// Starts slirp4netns for the namespace pinned at `netns`, waits until the tap device is
/// configured, and publishes `ports`. On failure the helper is stopped.
pub fn start(netns: &Path, ports: &[PortMapping]) -> Result<Helper, NetError> {
    let sock = api_socket(netns);
    let _ = std::fs::remove_file(&sock);
    let (sock_dir, sock_name) = socket_parts(netns);
    // Its messages go to a file next to the namespace (a pipe nobody reads would block it).
    let log = log_path(netns);
    let log_file = std::fs::File::create(&log).map_err(|e| NetError::io("create", &log, e))?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(NetError::Msg(format!("pipe2: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: both fds were just made and are owned by nobody else.
    let (ready_r, ready_w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wfd = ready_w.as_raw_fd();
    let mut c = Command::new(BINARY);
    c.args(["--configure", "--mtu=65520", "--disable-host-loopback", "--netns-type=path"])
        .arg(format!("--ready-fd={wfd}"))
        .arg("--api-socket")
        .arg(&sock_name)
        .current_dir(&sock_dir)
        .arg(netns)
        .arg(IFNAME)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    // SAFETY: between fork and exec only async-signal-safe calls: setsid and fcntl.
    unsafe {
        c.pre_exec(move || {
            libc::setsid();
            // The ready fd must survive the exec.
            if libc::fcntl(wfd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c.spawn().map_err(|e| NetError::Msg(format!("run {BINARY} (package slirp4netns): {e}")))?;
    drop(ready_w);
    let pid = child.id();
    let helper = Helper { pid, start: super::proc_start(pid).unwrap_or(0) };
    let mut b = [0u8; 1];
    let ready = (&std::fs::File::from(ready_r)).read(&mut b).unwrap_or(0) == 1;
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        remove_files(netns);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("exited").trim().to_string();
        return Err(NetError::Msg(format!("{BINARY} failed: {last}")));
    }
    let dir = std::fs::File::open(&sock_dir).map_err(|e| NetError::io("open", &sock_dir, e))?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(&sock_name);
    for p in ports {
        if let Err(e) = add_hostfwd(&short, p) {
            stop(&helper);
            return Err(e);
        }
    }
    Ok(helper)
}

fn add_hostfwd(sock: &Path, p: &PortMapping) -> Result<(), NetError> {
    let proto = proto_name(p)
        .ok_or_else(|| NetError::Msg(format!("publish {}: slirp4netns forwards only tcp and udp", p.host_side())))?;
    let req = serde_json::json!({"execute": "add_hostfwd", "arguments": {
        "proto": proto,
        "host_addr": p.host_ip.unwrap_or(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED)).to_string(),
        "host_port": p.host_port,
        "guest_port": p.container_port,
    }});
    call(sock, &req).map(|_| ()).map_err(|e| NetError::Msg(format!("publish {}: {e}", p.host_side())))
}

fn proto_name(p: &PortMapping) -> Option<&'static str> {
    match p.protocol {
        Proto::Tcp => Some("tcp"),
        Proto::Udp => Some("udp"),
        Proto::Sctp => None,
    }
}

/// One request to slirp4netns's API socket; its reply.
fn call(sock: &Path, req: &serde_json::Value) -> Result<serde_json::Value, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect {}: {e}", sock.display()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    s.write_all(req.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| format!("reply {line:?}: {e}"))?;
    if let Some(err) = v.get("error") {
        return Err(err["desc"].as_str().map(str::to_string).unwrap_or_else(|| err.to_string()));
    }
    // Replies come as {"return": ...} or, for list_hostfwd, bare.
    Ok(v.get("return").cloned().unwrap_or(v))
}

/// Stops the helper if it is still the process that was started.
pub fn stop(h: &Helper) {
    let Ok(pid) = i32::try_from(h.pid) else { return };
    if super::proc_start(h.pid) == Some(h.start) {
        // SAFETY: signalling a process we started, checked by its start time.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..100 {
            // Reaped here when this command started it (`run --rm`); ECHILD otherwise.
            // SAFETY: waitpid without blocking, on a pid checked above.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            if super::proc_start(h.pid) != Some(h.start) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn log_path(netns: &Path) -> PathBuf {
    netns.with_extension("slirp.log")
}

/// Removes the API socket and the log of the helper of the namespace at `netns`.
pub fn remove_files(netns: &Path) {
    let _ = std::fs::remove_file(api_socket(netns));
    let _ = std::fs::remove_file(log_path(netns));
}

/// The user's shared network namespace for user-defined networks (as podman's rootless
/// netns): bridges, veths, CNI's rules and berth's DNS servers live there, and one slirp4netns
/// gives it the outside. Made on first use, kept with the user's namespaces.
pub mod shared {
    use super::super::{netns, NetError};
    use std::os::fd::AsRawFd;
    use std::path::PathBuf;

    fn path() -> PathBuf {
        netns::dir().join("user-networks")
    }

    /// The namespace, made (with its slirp4netns) when missing or when its helper is gone.
    pub fn ensure() -> Result<PathBuf, NetError> {
        let p = path();
        let dir = netns::dir();
        std::fs::create_dir_all(&dir).map_err(|e| NetError::io("create", &dir, e))?;
        let lock_path = dir.join("user-networks.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| NetError::io("open", &lock_path, e))?;
        // SAFETY: flock on an fd we hold; released when it is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(NetError::io("lock", &lock_path, std::io::Error::last_os_error()));
        }
        let pid_path = p.with_extension("pid");
        let helper = std::fs::read_to_string(&pid_path).ok().and_then(|s| {
            let (a, b) = s.trim().split_once(' ')?;
            Some(super::Helper { pid: a.parse().ok()?, start: b.parse().ok()? })
        });
        let alive = helper.as_ref().is_some_and(|h| super::super::proc_start(h.pid) == Some(h.start));
        if alive && netns::is_netns(&p) {
            return Ok(p);
        }
        // A helper whose namespace went (the user's namespaces were made again) goes too.
        if let Some(h) = &helper {
            super::stop(h);
        }
        netns::remove(&p);
        super::remove_files(&p);
        netns::create(&p)?;
        let h = match super::start(&p, &[]) {
            Ok(h) => h,
            Err(e) => {
                netns::remove(&p);
                return Err(e);
            }
        };
        std::fs::write(&pid_path, format!("{} {}\n", h.pid, h.start))
            .map_err(|e| NetError::io("write", &pid_path, e))?;
        Ok(p)
    }

    /// Publishes a host port to the shared namespace (where CNI's portmap takes it on).
    pub fn publish(p: &super::PortMapping) -> Result<(), NetError> {
        let ns = path();
        let (dir, name) = super::socket_parts(&ns);
        let d = std::fs::File::open(&dir).map_err(|e| NetError::io("open", &dir, e))?;
        let short = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd())).join(name);
        let mut fwd = p.clone();
        fwd.container_port = p.host_port;
        super::add_hostfwd(&short, &fwd)
    }

    /// Stops publishing a host port (its container is gone).
    pub fn unpublish(p: &super::PortMapping) {
        let ns = path();
        let (dir, name) = super::socket_parts(&ns);
        let Ok(d) = std::fs::File::open(&dir) else { return };
        let short = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd())).join(name);
        let Ok(list) = super::call(&short, &serde_json::json!({"execute": "list_hostfwd"})) else { return };
        for e in list["entries"].as_array().into_iter().flatten() {
            if e["host_port"] == p.host_port && super::proto_name(p).is_some_and(|n| e["proto"] == n) {
                let req = serde_json::json!({"execute": "remove_hostfwd", "arguments": {"id": e["id"]}});
                let _ = super::call(&short, &req);
            }
        }
    }

    /// While alive, this thread (and what it starts) is in the shared namespace.
    pub struct Inside {
        home: std::fs::File,
    }

    pub fn enter() -> Result<Inside, NetError> {
        let p = ensure()?;
        let home = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|e| NetError::io("open", std::path::Path::new("/proc/thread-self/ns/net"), e))?;
        let ns = std::fs::File::open(&p).map_err(|e| NetError::io("open", &p, e))?;
        // SAFETY: setns with an fd we hold; only this thread moves.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(NetError::io("setns", &p, std::io::Error::last_os_error()));
        }
        Ok(Inside { home })
    }

    impl Drop for Inside {
        fn drop(&mut self) {
            // SAFETY: back to the namespace we came from, through an fd we hold.
            unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) };
        }
    }
}
