//! berth's DNS server for user-defined networks: one daemon per network on the gateway IP
//! (UDP and TCP port 53). It answers A and AAAA queries (other types: no data) for the names in
//! the network's record file <data-root>/network/<name>/hosts (re-read when it changes) and
//! forwards other queries to the host's upstream nameservers. It exits when the network has no
//! attachment left or is removed.
//!
//! A macvlan or ipvlan network has no address on the host that its containers can reach (the
//! gateway is the LAN's router; the kernel keeps a macvlan's traffic away from its parent). Its
//! server answers where docker's embedded resolver does: 127.0.0.11:53 inside each container's
//! network namespace. The attach binds those two sockets from a thread that entered the
//! container's namespace and hands them to the server over a unix datagram socket
//! (<state>/dns.sock, SCM_RIGHTS, the container id as the message): the sockets exist, and
//! queue queries, before the container runs. The server closes a container's pair when its
//! records leave the record file.

use super::{config, etc, NetError};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const TTL: u32 = 10;
const MAX_INFLIGHT: usize = 64;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// The record file: "IP name [alias...] # container-id" lines.

pub fn records_path(data_root: &Path, network: &str) -> PathBuf {
    config::state_dir(data_root, network).join("hosts")
}

fn lock_path(data_root: &Path, network: &str) -> PathBuf {
    config::state_dir(data_root, network).join("dns.lock")
}

/// Where a macvlan or ipvlan network's server takes the sockets of new containers.
fn ctl_path(data_root: &Path, network: &str) -> PathBuf {
    config::state_dir(data_root, network).join("dns.sock")
}

/// The resolver address inside a container of a macvlan or ipvlan network (docker's).
pub const IN_CONTAINER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Replaces the lines of `container_id` by `entry` (None: removes them); returns how many
/// containers are left. The metadata lock must be held.
pub fn set_record(
    data_root: &Path,
    network: &str,
    container_id: &str,
    entry: Option<(&[IpAddr], &[String])>,
) -> Result<usize, NetError> {
    let p = records_path(data_root, network);
    let old = fs::read_to_string(&p).unwrap_or_default();
    let tag = format!("# {container_id}");
    let mut lines: Vec<String> =
        old.lines().filter(|l| !l.ends_with(&tag) && !l.trim().is_empty()).map(str::to_string).collect();
    if let Some((ips, names)) = entry {
        for ip in ips {
            lines.push(format!("{ip} {} {tag}", names.join(" ")));
        }
    }
    if lines.is_empty() && entry.is_none() && old.is_empty() {
        return Ok(0);
    }
    let dir = config::state_dir(data_root, network);
    fs::create_dir_all(&dir).map_err(|e| NetError::io("create", &dir, e))?;
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    config::write_atomic(&p, text.as_bytes())?;
    Ok(lines.len())
}

/// name (lower case, no trailing dot) → addresses.
pub fn parse_records(text: &str) -> HashMap<String, Vec<IpAddr>> {
    let mut m: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for l in text.lines() {
        let l = l.split('#').next().unwrap_or("");
        let mut f = l.split_whitespace();
        let Some(ip) = f.next().and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
        for n in f {
            let v = m.entry(n.trim_end_matches('.').to_ascii_lowercase()).or_default();
            if !v.contains(&ip) {
                v.push(ip);
            }
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// DNS messages

/// The question of a query.
#[derive(Debug, PartialEq)]
pub struct Question {
    pub id: u16,
    pub flags: u16,
    /// Lower case, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// End of the question section in the message.
    pub end: usize,
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_REFUSED: u8 = 5;

/// Parses a standard query with one question; None for anything else.
pub fn parse_question(m: &[u8]) -> Option<Question> {
    if m.len() < 12 {
        return None;
    }
    let u16at = |o: usize| u16::from_be_bytes([m[o], m[o + 1]]);
    let (id, flags, qd) = (u16at(0), u16at(2), u16at(4));
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qd != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let n = *m.get(i)? as usize;
        i += 1;
        if n == 0 {
            break;
        }
        if n > 63 {
            return None; // compression pointers do not appear in a question's name
        }
        let l = m.get(i..i + n)?;
        labels.push(String::from_utf8_lossy(l).to_ascii_lowercase());
        i += n;
    }
    if i + 4 > m.len() {
        return None;
    }
    Some(Question { id, flags, name: labels.join("."), qtype: u16at(i), qclass: u16at(i + 2), end: i + 4 })
}

/// A response to `q` (question copied from `query`) with A records for the IPv4 `ips` and
/// AAAA records for the IPv6 ones.
pub fn response(q: &Question, query: &[u8], ips: &[IpAddr], rcode: u8) -> Vec<u8> {
    let mut r = Vec::with_capacity(q.end + 16 * ips.len());
    r.extend_from_slice(&q.id.to_be_bytes());
    // QR, opcode 0, AA, RD copied, RA, rcode.
    let flags: u16 = 0x8000 | 0x0400 | (q.flags & 0x0100) | 0x0080 | u16::from(rcode & 0xf);
    r.extend_from_slice(&flags.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&query[12..q.end]);
    for ip in ips {
        let (t, data) = match ip {
            IpAddr::V4(a) => (TYPE_A, a.octets().to_vec()),
            IpAddr::V6(a) => (TYPE_AAAA, a.octets().to_vec()),
        };
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&t.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(&data);
    }
    r
}

/// A bare error response (for queries we could not parse a question from).
fn error_response(query: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut r = query[..12].to_vec();
    r[2] = 0x80 | (query[2] & 0x79);
    r[3] = 0x80 | (rcode & 0xf);
    r[4..12].fill(0);
    Some(r)
}

/// What to do with a query.
#[derive(Debug, PartialEq)]
pub enum Action {
    Reply(Vec<u8>),
    Forward,
}

pub fn decide(query: &[u8], records: &HashMap<String, Vec<IpAddr>>, may_forward: bool) -> Action {
    let Some(q) = parse_question(query) else {
        return error_response(query, 1).map_or(Action::Reply(Vec::new()), Action::Reply);
    };
    if q.qclass == CLASS_IN {
        if let Some(ips) = records.get(&q.name) {
            let ans: Vec<IpAddr> = ips
                .iter()
                .filter(|i| (q.qtype == TYPE_A && i.is_ipv4()) || (q.qtype == TYPE_AAAA && i.is_ipv6()))
                .copied()
                .collect();
            return Action::Reply(response(&q, query, &ans, 0));
        }
    }
    if !q.name.contains('.') {
        // A single label is a container name or nothing: never leaks to the upstream.
        return Action::Reply(response(&q, query, &[], RCODE_NXDOMAIN));
    }
    if !may_forward {
        return Action::Reply(response(&q, query, &[], RCODE_REFUSED));
    }
    Action::Forward
}

// ---------------------------------------------------------------------------------------------
// Upstream

/// The host's nameservers, loopback ones last (they work: the server runs in the host netns).
pub fn upstreams() -> Vec<SocketAddr> {
    let r = etc::host_resolv();
    let (lo, other): (Vec<IpAddr>, Vec<IpAddr>) = r.nameservers.into_iter().partition(|a| a.is_loopback());
    other.into_iter().chain(lo).map(|a| SocketAddr::new(a, 53)).collect()
}

fn forward_udp(query: &[u8], ups: &[SocketAddr]) -> Option<Vec<u8>> {
    for u in ups {
        let bind: SocketAddr = if u.is_ipv4() { "0.0.0.0:0".parse().ok()? } else { "[::]:0".parse().ok()? };
        let Ok(s) = UdpSocket::bind(bind) else { continue };
        let _ = s.set_read_timeout(Some(UPSTREAM_TIMEOUT));
        if s.connect(u).is_err() || s.send(query).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        let deadline = Instant::now() + UPSTREAM_TIMEOUT;
        while Instant::now() < deadline {
            match s.recv(&mut buf) {
                Ok(n) if n >= 2 && buf[..2] == query[..2] => return Some(buf[..n].to_vec()),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    None
}

fn forward_tcp(query: &[u8], ups: &[SocketAddr]) -> Option<Vec<u8>> {
    for u in ups {
        let Ok(mut s) = TcpStream::connect_timeout(u, UPSTREAM_TIMEOUT) else { continue };
        let _ = s.set_read_timeout(Some(UPSTREAM_TIMEOUT));
        let _ = s.set_write_timeout(Some(UPSTREAM_TIMEOUT));
        if s.write_all(&(query.len() as u16).to_be_bytes()).is_err() || s.write_all(query).is_err() {
            continue;
        }
        if let Some(r) = read_frame(&mut s) {
            return Some(r);
        }
    }
    None
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut l = [0u8; 2];
    s.read_exact(&mut l).ok()?;
    let mut m = vec![0u8; u16::from_be_bytes(l) as usize];
    s.read_exact(&mut m).ok()?;
    Some(m)
}

fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    match parse_question(query) {
        Some(q) => Some(response(&q, query, &[], RCODE_SERVFAIL)),
        None => error_response(query, RCODE_SERVFAIL),
    }
}

// ---------------------------------------------------------------------------------------------
// The server

struct Shared {
    records: RwLock<HashMap<String, Vec<IpAddr>>>,
    upstreams: Vec<SocketAddr>,
    may_forward: bool,
    inflight: AtomicUsize,
}

/// `berth network dns-serve NAME`: daemonizes, reports "ready" (or "error: ...") on stdout,
/// serves until the network has no attachment or is gone.
pub fn serve(data_root: &Path, network: &str) -> Result<(), NetError> {
    let net = config::load(data_root, network)?;
    // Daemonize: the parent returns at once (its caller reaps it); the child leads a new session.
    // SAFETY: berth is single-threaded here (no thread was started before this command).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => return Err(NetError::Msg(format!("dns server for network {network}: fork: {e}"))),
    }
    let _ = nix::unistd::setsid();
    let _ = std::env::set_current_dir("/");
    match setup(data_root, &net) {
        Ok(Some((host, ctl, lockf))) => {
            println!("ready");
            let _ = std::io::stdout().flush();
            redirect_stdio_to_null();
            run(data_root, &net, host, ctl, lockf);
            Ok(())
        }
        Ok(None) => {
            println!("ready");
            Ok(())
        }
        Err(e) => {
            println!("error: {e}");
            Err(e)
        }
    }
}

/// The gateway's sockets (a bridge), the control socket (macvlan, ipvlan), the server lock.
type Sockets = (Option<(UdpSocket, TcpListener)>, Option<UnixDatagram>, fs::File);

/// Takes the server lock (None: another server runs) and binds the sockets.
fn setup(data_root: &Path, net: &config::Network) -> Result<Option<Sockets>, NetError> {
    let dir = config::state_dir(data_root, &net.name);
    fs::create_dir_all(&dir).map_err(|e| NetError::io("create", &dir, e))?;
    let lp = lock_path(data_root, &net.name);
    let mut lockf = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lp)
        .map_err(|e| NetError::io("open", &lp, e))?;
    match lockf.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(None),
        Err(fs::TryLockError::Error(e)) => return Err(NetError::io("lock", &lp, e)),
    }
    lockf.set_len(0).map_err(|e| NetError::io("truncate", &lp, e))?;
    lockf.write_all(std::process::id().to_string().as_bytes()).map_err(|e| NetError::io("write", &lp, e))?;
    if net.dns_in_container() {
        let sp = ctl_path(data_root, &net.name);
        // A socket file left by a server that was killed.
        let _ = fs::remove_file(&sp);
        let ctl = UnixDatagram::bind(&sp).map_err(|e| NetError::io("bind", &sp, e))?;
        return Ok(Some((None, Some(ctl), lockf)));
    }
    let addr = SocketAddr::new(IpAddr::V4(net.gateway), 53);
    let bind_err = |e: std::io::Error| NetError::Msg(format!("dns server for network {}: bind {addr}: {e}", net.name));
    let udp = UdpSocket::bind(addr).map_err(bind_err)?;
    let tcp = TcpListener::bind(addr).map_err(bind_err)?;
    Ok(Some((Some((udp, tcp)), None, lockf)))
}

fn redirect_stdio_to_null() {
    if let Ok(null) = fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in [0, 1, 2] {
            // SAFETY: dup2 onto the standard descriptors of this process; `null` stays open.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
        }
    }
}

fn file_key(p: &Path) -> FileKey {
    fs::metadata(p).ok().map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

type FileKey = Option<(u64, i64, i64)>;

/// Re-reads the record file when it changed (new inode or mtime: it is replaced by rename);
/// then the ids of the containers it names.
fn reload(p: &Path, key: &mut FileKey, count: &mut usize, sh: &Shared) -> Option<Vec<String>> {
    let k = file_key(p);
    if k == *key {
        return None;
    }
    *key = k;
    let text = fs::read_to_string(p).unwrap_or_default();
    *count = text.lines().filter(|l| !l.trim().is_empty()).count();
    if let Ok(mut w) = sh.records.write() {
        *w = parse_records(&text);
    }
    Some(text.lines().filter_map(|l| l.rsplit_once("# ").map(|(_, id)| id.trim().to_string())).collect())
}

/// One container's resolver sockets (bridge: the gateway's, with an empty id).
struct Listener {
    container: String,
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Takes one container's sockets from the control socket: the message is the container id,
/// the rights are its UDP socket then its TCP listener.
fn receive(ctl: &UnixDatagram) -> Option<Listener> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 128];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let (n, raw) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(ctl.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC).ok()?;
        let mut raw = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(v) = c {
                    raw.extend(v);
                }
            }
        }
        (msg.bytes, raw)
    };
    // SAFETY: the descriptors were just received with SCM_RIGHTS: this process owns them and
    // nothing else refers to them.
    let mut fds: Vec<OwnedFd> = raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect();
    let container = std::str::from_utf8(&buf[..n]).ok()?.to_string();
    if fds.len() != 2 || container.is_empty() {
        return None;
    }
    let tcp = TcpListener::from(fds.pop()?);
    let udp = UdpSocket::from(fds.pop()?);
    Some(Listener { container, udp, tcp })
}

fn run(
    data_root: &Path,
    net: &config::Network,
    host: Option<(UdpSocket, TcpListener)>,
    ctl: Option<UnixDatagram>,
    _lock: fs::File,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let rec_path = records_path(data_root, &net.name);
    let shared = Arc::new(Shared {
        records: RwLock::new(HashMap::new()),
        upstreams: upstreams(),
        may_forward: !net.internal,
        inflight: AtomicUsize::new(0),
    });
    let mut key = None;
    let mut count = 0;
    let started = Instant::now();
    let mut last_check = Instant::now() - Duration::from_secs(10);
    let mut buf = vec![0u8; 4096];
    let mut listeners: Vec<Listener> =
        host.into_iter().map(|(udp, tcp)| Listener { container: String::new(), udp, tcp }).collect();
    // A container's sockets go when its records do.
    let keep = |ids: Option<Vec<String>>, ls: &mut Vec<Listener>| {
        if let Some(ids) = ids {
            ls.retain(|l| l.container.is_empty() || ids.contains(&l.container));
        }
    };
    // A server started again (the last one was killed) answers the running containers again:
    // it binds 127.0.0.11 in the namespace of each set-up container the record file names (one
    // being attached now is not set up yet: its attach hands its sockets over).
    if ctl.is_some() {
        let text = fs::read_to_string(&rec_path).unwrap_or_default();
        let mut ids: Vec<&str> = text.lines().filter_map(|l| l.rsplit_once("# ").map(|(_, id)| id.trim())).collect();
        ids.dedup();
        for id in ids {
            let Some(ns) = super::resolver_netns(data_root, &net.name, id) else { continue };
            if let Ok((udp, tcp)) = bind_in_netns(&ns) {
                listeners.push(Listener { container: id.to_string(), udp, tcp });
            }
        }
    }
    loop {
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            keep(reload(&rec_path, &mut key, &mut count, &shared), &mut listeners);
            if (count == 0 && started.elapsed() > Duration::from_secs(2))
                || config::load(data_root, &net.name).map(|n| n.id != net.id).unwrap_or(true)
            {
                // Decide under the metadata lock so that an attach in progress either sees this
                // server gone or has its record read here.
                let Ok(_l) = config::lock(data_root) else { return };
                let text = fs::read_to_string(&rec_path).unwrap_or_default();
                let gone = config::load(data_root, &net.name).map(|n| n.id != net.id).unwrap_or(true);
                if gone || text.trim().is_empty() {
                    std::process::exit(0);
                }
                key = None;
                continue;
            }
        }
        let mut fds: Vec<PollFd> = Vec::new();
        for l in &listeners {
            fds.push(PollFd::new(l.udp.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(l.tcp.as_fd(), PollFlags::POLLIN));
        }
        if let Some(c) = &ctl {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(500u16)) {
            Ok(0) | Err(_) => continue,
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN))).collect();
        drop(fds);
        // A container attached a moment ago must resolve at once: re-read a changed file.
        keep(reload(&rec_path, &mut key, &mut count, &shared), &mut listeners);
        for (i, l) in listeners.iter().enumerate() {
            if ready.get(2 * i).copied().unwrap_or(false) {
                if let Ok((n, from)) = l.udp.recv_from(&mut buf) {
                    handle_udp(&shared, &l.udp, &buf[..n], from);
                }
            }
            if ready.get(2 * i + 1).copied().unwrap_or(false) {
                if let Ok((s, _)) = l.tcp.accept() {
                    if shared.inflight.fetch_add(1, Ordering::SeqCst) < MAX_INFLIGHT {
                        let sh = shared.clone();
                        std::thread::spawn(move || {
                            handle_tcp(&sh, s);
                            sh.inflight.fetch_sub(1, Ordering::SeqCst);
                        });
                    } else {
                        shared.inflight.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
        }
        if let (Some(c), true) = (&ctl, ready.last().copied().unwrap_or(false)) {
            if let Some(l) = receive(c) {
                listeners.retain(|x| x.container != l.container);
                listeners.push(l);
            }
        }
    }
}

fn handle_udp(sh: &Arc<Shared>, udp: &UdpSocket, q: &[u8], from: SocketAddr) {
    let action = match sh.records.read() {
        Ok(r) => decide(q, &r, sh.may_forward),
        Err(_) => return,
    };
    match action {
        Action::Reply(r) => {
            if !r.is_empty() {
                let _ = udp.send_to(&r, from);
            }
        }
        Action::Forward => {
            let Ok(sock) = udp.try_clone() else { return };
            if sh.inflight.fetch_add(1, Ordering::SeqCst) >= MAX_INFLIGHT {
                sh.inflight.fetch_sub(1, Ordering::SeqCst);
                if let Some(r) = servfail(q) {
                    let _ = udp.send_to(&r, from);
                }
                return;
            }
            let q = q.to_vec();
            let sh = sh.clone();
            std::thread::spawn(move || {
                if let Some(r) = forward_udp(&q, &sh.upstreams).or_else(|| servfail(&q)) {
                    let _ = sock.send_to(&r, from);
                }
                sh.inflight.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

fn handle_tcp(sh: &Shared, mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    while let Some(q) = read_frame(&mut s) {
        let action = match sh.records.read() {
            Ok(r) => decide(&q, &r, sh.may_forward),
            Err(_) => return,
        };
        let r = match action {
            Action::Reply(r) => r,
            Action::Forward => forward_tcp(&q, &sh.upstreams).or_else(|| servfail(&q)).unwrap_or_default(),
        };
        if r.is_empty() || s.write_all(&(r.len() as u16).to_be_bytes()).is_err() || s.write_all(&r).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Control from attach/detach (the metadata lock is held by the caller)

/// True when a server holds the network's dns.lock.
fn running(data_root: &Path, network: &str) -> Option<fs::File> {
    let f = fs::File::open(lock_path(data_root, network)).ok()?;
    match f.try_lock_shared() {
        Ok(()) => None,
        Err(_) => Some(f),
    }
}

/// The line a daemonizing helper (this binary's `dns-serve`, `proxy6`) reports on its stdout
/// pipe ("ready ..." or "error: ..."): the first child exits at once after forking the daemon,
/// which holds the pipe until it reports. Empty when it closed the pipe or 10 s passed.
pub(super) fn ready_line(
    child: &mut std::process::Child,
    err: &dyn Fn(String) -> NetError,
) -> Result<String, NetError> {
    let mut out = child.stdout.take().ok_or_else(|| err("no stdout pipe".into()))?;
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
    Ok(line)
}

/// Starts the network's DNS server unless one runs; returns once it listens.
pub fn ensure_server(data_root: &Path, network: &str) -> Result<(), NetError> {
    if running(data_root, network).is_some() {
        return Ok(());
    }
    let dir = config::state_dir(data_root, network);
    fs::create_dir_all(&dir).map_err(|e| NetError::io("create", &dir, e))?;
    let err = |m: String| NetError::Msg(format!("network {network}: dns server: {m}"));
    let log = dir.join("dns.log");
    let logf =
        fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| NetError::io("open", &log, e))?;
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut child = std::process::Command::new(&exe)
        .arg("--data-root")
        .arg(data_root)
        .args(["network", "dns-serve", network])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(logf)
        .current_dir("/")
        .spawn()
        .map_err(|e| err(format!("exec {}: {e}", exe.display())))?;
    let line = ready_line(&mut child, &err)?;
    let line = line.trim();
    if line == "ready" {
        return Ok(());
    }
    let msg = line.strip_prefix("error: ").unwrap_or(line);
    Err(if msg.is_empty() {
        err(format!("did not start (see {})", log.display()))
    } else {
        NetError::Msg(msg.to_string())
    })
}

/// Binds the resolver's UDP and TCP sockets at 127.0.0.11:53 inside the network namespace
/// `netns` (from a thread that enters it and ends).
pub fn bind_in_netns(netns: &Path) -> Result<(UdpSocket, TcpListener), NetError> {
    let ns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<(UdpSocket, TcpListener), NetError> {
        let f = fs::File::open(&ns).map_err(|e| NetError::io("open", &ns, e))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::Msg(format!("setns {}: {e}", ns.display())))?;
        let addr = SocketAddr::new(IpAddr::V4(IN_CONTAINER), 53);
        let bind_err = |e: std::io::Error| NetError::Msg(format!("dns resolver in {}: bind {addr}: {e}", ns.display()));
        let udp = UdpSocket::bind(addr).map_err(bind_err)?;
        let tcp = TcpListener::bind(addr).map_err(bind_err)?;
        Ok((udp, tcp))
    })
    .join()
    .unwrap_or_else(|_| Err(NetError::Msg("dns resolver: netns thread panicked".into())))
}

/// Gives a container's resolver sockets to the network's running server (the metadata lock is
/// held: the server cannot decide to exit meanwhile).
pub fn hand_over(
    data_root: &Path,
    network: &str,
    container_id: &str,
    udp: &UdpSocket,
    tcp: &TcpListener,
) -> Result<(), NetError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let sp = ctl_path(data_root, network);
    let err = |e: String| NetError::Msg(format!("network {network}: dns server {}: {e}", sp.display()));
    let addr = UnixAddr::new(&sp).map_err(|e| err(e.to_string()))?;
    let s = UnixDatagram::unbound().map_err(|e| err(format!("socket: {e}")))?;
    let fds = [udp.as_raw_fd(), tcp.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(container_id.as_bytes())];
    sendmsg(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&addr)).map_err(|e| err(format!("sendmsg: {e}")))?;
    Ok(())
}

/// Stops the network's DNS server if one runs.
pub fn stop_server(data_root: &Path, network: &str) {
    let Some(mut f) = running(data_root, network) else { return };
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    if let Ok(pid) = s.trim().parse::<i32>() {
        if pid > 1 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn sockets_handed_to_the_server() {
        let root = std::env::temp_dir().join(format!("berth-dns-handover-{}", std::process::id()));
        let dir = config::state_dir(&root, "lan");
        fs::create_dir_all(&dir).unwrap();
        let ctl = UnixDatagram::bind(ctl_path(&root, "lan")).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        hand_over(&root, "lan", "c0ffee", &udp, &tcp).unwrap();
        let l = receive(&ctl).unwrap();
        assert_eq!(l.container, "c0ffee");
        assert_eq!(l.udp.local_addr().unwrap(), udp.local_addr().unwrap());
        assert_eq!(l.tcp.local_addr().unwrap(), tcp.local_addr().unwrap());
        // Without a server listening: one error naming the socket.
        drop(ctl);
        let e = hand_over(&root, "lan", "c0ffee", &udp, &tcp).unwrap_err().to_string();
        assert!(e.contains("dns.sock") && e.contains("sendmsg"), "{e}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn records() {
        let m = parse_records("10.89.0.2 web Alias # c1\n10.89.0.3 db # c2\nbad line\n10.89.0.4 web # c3\n");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(m["web"], vec![ip("10.89.0.2"), ip("10.89.0.4")]);
        assert_eq!(m["alias"], vec![ip("10.89.0.2")]);
        assert!(!m.contains_key("c1"));
    }

    #[test]
    fn answers() {
        let m = parse_records("10.89.0.2 web # c1\n");
        let q = query("WEB", 1);
        let Action::Reply(r) = decide(&q, &m, true) else { panic!() };
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0xf, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 89, 0, 2]);
        // AAAA of a name with no IPv6 address: no data, no error.
        let Action::Reply(r) = decide(&query("web", 28), &m, true) else { panic!() };
        assert_eq!((r[3] & 0xf, u16::from_be_bytes([r[6], r[7]])), (0, 0));
        // A dual-stack name: A gets the IPv4 address only, AAAA the IPv6 one.
        let m6 = parse_records("10.89.0.2 web # c1\nfd00:5::2 web # c1\n");
        let Action::Reply(r) = decide(&query("web", 28), &m6, true) else { panic!() };
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 16..], &"fd00:5::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(&r[r.len() - 18..r.len() - 16], &[0, 16]);
        let Action::Reply(r) = decide(&query("web", 1), &m6, true) else { panic!() };
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 89, 0, 2]);
        // Unknown single label: NXDOMAIN, never forwarded.
        let Action::Reply(r) = decide(&query("nothere", 1), &m, true) else { panic!() };
        assert_eq!(r[3] & 0xf, RCODE_NXDOMAIN);
        assert_eq!(decide(&query("example.com", 1), &m, true), Action::Forward);
        let Action::Reply(r) = decide(&query("example.com", 1), &m, false) else { panic!() };
        assert_eq!(r[3] & 0xf, RCODE_REFUSED);
        let p = parse_question(&query("a.b", 1)).unwrap();
        assert_eq!((p.name.as_str(), p.qtype, p.qclass), ("a.b", 1, 1));
        assert!(parse_question(&[0u8; 5]).is_none());
    }
}
