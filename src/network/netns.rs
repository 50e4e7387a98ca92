//! Persistent network namespaces: a file bind-mounted from a thread that unshared its netns
//! (as `ip netns add` does), with loopback brought up in the same thread.

use super::NetError;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where berth keeps its namespace files (BERTH_NETNS_DIR overrides, for tests).
pub fn dir() -> PathBuf {
    match std::env::var_os("BERTH_NETNS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/run/berth/netns"),
    }
}

const NSFS_MAGIC: i64 = 0x6e73_6673;
/// linux/sockios.h (not in the libc crate for Linux).
const SIOCBRDELBR: libc::c_ulong = 0x89a1;

fn io_err(what: String, e: impl std::fmt::Display) -> NetError {
    NetError::Msg(format!("{what}: {e}"))
}

/// Creates a new network namespace pinned at `path` (which must not exist), with lo up.
pub fn create(path: &Path) -> Result<(), NetError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io_err(format!("create {}", parent.display()), e))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(format!("create {}", path.display()), e))?;
    let target = path.to_path_buf();
    let r = std::thread::spawn(move || -> Result<(), NetError> {
        // Only this thread moves to the new namespace; it ends right after.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| io_err("unshare(CLONE_NEWNET)".into(), e))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io_err(format!("bind mount the new netns on {}", target.display()), e))?;
        loopback_up()
    })
    .join()
    .unwrap_or_else(|_| Err(NetError::Msg("netns thread panicked".into())));
    if r.is_err() {
        remove(path);
    }
    r
}

/// Sets lo up in the calling thread's network namespace (what the loopback plugin does).
fn loopback_up() -> Result<(), NetError> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err("socket for lo".into(), std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in ifr into ifr.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(io_err("SIOCGIFFLAGS lo".into(), std::io::Error::last_os_error()));
    }
    // SAFETY: the flags member of the union is the one SIOCGIFFLAGS filled.
    unsafe { ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS sets the flags of the interface named in ifr.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(io_err("SIOCSIFFLAGS lo up".into(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// True when `path` is a mounted network namespace.
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type().0 == NSFS_MAGIC).unwrap_or(false)
}

/// Unmounts and removes a namespace file; missing is fine.
pub fn remove(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    let _ = fs::remove_file(path);
}

/// Deletes a bridge of the host (set down, then SIOCBRDELBR); a missing one is fine. A bridge
/// that still has ports is left alone (a container still uses it).
pub fn delete_bridge(name: &str) -> Result<(), NetError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
        return Err(NetError::Msg(format!("invalid bridge name {name:?}")));
    }
    let brif = Path::new("/sys/class/net").join(name).join("brif");
    if fs::read_dir(&brif).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Ok(());
    }
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err(format!("delete bridge {name}: socket"), std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in ifr into ifr.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODEV) {
            return Ok(());
        }
        return Err(io_err(format!("delete bridge {name}: SIOCGIFFLAGS"), e));
    }
    // SAFETY: the flags member of the union is the one SIOCGIFFLAGS filled.
    unsafe { ifr.ifr_ifru.ifru_flags &= !(libc::IFF_UP as libc::c_short) };
    // SAFETY: SIOCSIFFLAGS sets the flags of the interface named in ifr.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(io_err(format!("delete bridge {name}: set down"), std::io::Error::last_os_error()));
    }
    let mut cname = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in cname.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCBRDELBR takes a NUL-terminated interface name (cname is zero-padded).
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCBRDELBR, cname.as_ptr()) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENXIO) && e.raw_os_error() != Some(libc::ENODEV) {
            return Err(io_err(format!("delete bridge {name}"), e));
        }
    }
    Ok(())
}

/// The state of an IPv6 address of the calling thread's network namespace (/proc/net/if_inet6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr6State {
    /// Not an address of any interface here.
    Absent,
    /// Still in duplicate address detection: not usable as a source, and neighbours get no
    /// answer for it.
    Tentative,
    /// Duplicate address detection found another holder.
    DadFailed,
    Usable,
}

/// linux/if_addr.h
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_TENTATIVE: u32 = 0x40;

/// The state of `addr` in the text of /proc/net/if_inet6 ("ADDR IFINDEX PLEN SCOPE FLAGS DEV").
pub fn addr6_state_in(text: &str, addr: std::net::Ipv6Addr) -> Addr6State {
    let want: String = addr.octets().iter().map(|b| format!("{b:02x}")).collect();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 5 || f[0] != want {
            continue;
        }
        let flags = u32::from_str_radix(f[4], 16).unwrap_or(0);
        return if flags & IFA_F_DADFAILED != 0 {
            Addr6State::DadFailed
        } else if flags & IFA_F_TENTATIVE != 0 {
            Addr6State::Tentative
        } else {
            Addr6State::Usable
        };
    }
    Addr6State::Absent
}

pub fn addr6_state(addr: std::net::Ipv6Addr) -> Addr6State {
    addr6_state_in(&fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap_or_default(), addr)
}

/// Waits (up to `limit`) until the host's IPv6 address `addr` has passed duplicate address
/// detection. A bridge's gateway address goes through it whenever the bridge gets its first
/// port (a new bridge, or one whose containers had all gone): about 1-2 s during which the
/// containers' default route is dead and a socket connected from the host to a container picks
/// another interface's address as its source and keeps it. Absent: nothing to wait for.
pub fn settle_addr6(addr: std::net::Ipv6Addr, limit: std::time::Duration) -> Result<(), NetError> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match addr6_state(addr) {
            Addr6State::Absent | Addr6State::Usable => return Ok(()),
            Addr6State::DadFailed => {
                return Err(NetError::Msg(format!(
                    "gateway address {addr}: duplicate address detection failed (another host has it)"
                )))
            }
            Addr6State::Tentative if std::time::Instant::now() >= deadline => {
                return Err(NetError::Msg(format!(
                    "gateway address {addr}: still tentative (duplicate address detection) after {}s",
                    limit.as_secs()
                )))
            }
            Addr6State::Tentative => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_inet6_states() {
        let t = "fd00024500c000000000000000000001 1e9a 40 00 c0 br-8d5b26e42c60\n\
                 fd00024400c000000000000000000001 1e97 40 00 82 n6n28692p1\n\
                 fd00024300c000000000000000000001 1e97 40 00 48 n6n28692p2\n\
                 00000000000000000000000000000001 01 80 10 80 lo\n";
        let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        assert_eq!(addr6_state_in(t, a("fd00:245:c0::1")), Addr6State::Tentative);
        assert_eq!(addr6_state_in(t, a("fd00:244:c0::1")), Addr6State::Usable);
        assert_eq!(addr6_state_in(t, a("fd00:243:c0::1")), Addr6State::DadFailed);
        assert_eq!(addr6_state_in(t, a("::1")), Addr6State::Usable);
        assert_eq!(addr6_state_in(t, a("fd00:245:c0::2")), Addr6State::Absent);
    }
}
