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
    let proto = match p.protocol {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    };
    let req = serde_json::json!({"execute": "add_hostfwd", "arguments": {
        "proto": proto,
        "host_addr": p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
        "host_port": p.host_port,
        "guest_port": p.container_port,
    }});
    let fail = |e: String| NetError::Msg(format!("publish {}: {e}", p.host_side()));
    let mut s = UnixStream::connect(sock).map_err(|e| fail(format!("connect {}: {e}", sock.display())))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    s.write_all(req.to_string().as_bytes()).map_err(|e| fail(e.to_string()))?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(|e| fail(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| fail(format!("reply {line:?}: {e}")))?;
    if let Some(err) = v.get("error") {
        let desc = err["desc"].as_str().map(str::to_string).unwrap_or_else(|| err.to_string());
        return Err(fail(desc));
    }
    Ok(())
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
