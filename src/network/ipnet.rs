//! IPv4 and IPv6 subnets: parsing, overlap, and what the host already routes (for picking a
//! free subnet).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv4 subnet in canonical form (no host bits set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Ipv4Net {
    /// Parses "A.B.C.D/N". Host bits must be zero, N between 8 and 30 (room for a gateway and
    /// at least one container).
    pub fn parse(s: &str) -> Result<Ipv4Net, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("invalid subnet {s:?}: expected A.B.C.D/N"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("invalid subnet {s:?}: bad address {a:?}"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|n| *n <= 32)
            .ok_or_else(|| format!("invalid subnet {s:?}: bad prefix length {p:?}"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("invalid subnet {s:?}: prefix length must be between 8 and 30"));
        }
        let net = Ipv4Net::new(addr, prefix);
        if net.addr != addr {
            return Err(format!("invalid subnet {s:?}: host bits set (it should be {net})"));
        }
        Ok(net)
    }

    /// The subnet holding `addr` (host bits cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        let prefix = prefix.min(32);
        Ipv4Net { addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// The first usable host address (the default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// True for an address usable by a host of this subnet (not the network or broadcast address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.addr && ip != self.broadcast()
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Subnets tried in order for networks created without --subnet.
pub fn default_pool() -> impl Iterator<Item = Ipv4Net> {
    let tens = (88u8..=127).map(|b| Ipv4Net::new(Ipv4Addr::new(10, b, 0, 0), 16));
    let one72 = (17u8..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let one92 = (0u8..=255).map(|c| Ipv4Net::new(Ipv4Addr::new(192, 168, c, 0), 24));
    tens.chain(one72).chain(one92)
}

/// What the host's main routing table and interface addresses cover, without the default
/// route: (subnet, interface name).
pub fn host_subnets() -> Vec<(Ipv4Net, String)> {
    let mut v = Vec::new();
    // /proc/net/route: Iface Destination Gateway Flags RefCnt Use Metric Mask ..., hex in host order.
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                continue;
            }
            let (Ok(dst), Ok(m)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16)) else { continue };
            // The kernel prints each network-order word as a native-endian number.
            let dst = Ipv4Addr::from(dst.to_ne_bytes());
            let prefix = m.count_ones() as u8;
            if prefix == 0 {
                continue;
            }
            v.push((Ipv4Net::new(dst, prefix), f[0].to_string()));
        }
    }
    for (ifname, addr, prefix) in interface_addrs() {
        if prefix > 0 {
            v.push((Ipv4Net::new(addr, prefix), ifname));
        }
    }
    v
}

/// IPv4 addresses of the host's interfaces: (interface, address, prefix length).
pub fn interface_addrs() -> Vec<(String, Ipv4Addr, u8)> {
    let mut v = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return v;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family we check before casting.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address (and its netmask) is a sockaddr_in.
        let (a, m) = unsafe {
            (
                (*(ifa.ifa_addr as *const libc::sockaddr_in)).sin_addr.s_addr,
                (*(ifa.ifa_netmask as *const libc::sockaddr_in)).sin_addr.s_addr,
            )
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        v.push((name, Ipv4Addr::from(u32::from_be(a)), u32::from_be(m).count_ones() as u8));
    }
    // SAFETY: frees the list getifaddrs allocated; no pointer into it is used after this.
    unsafe { libc::freeifaddrs(head) };
    v
}

/// An IPv6 subnet in canonical form (no host bits set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Net {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

fn mask6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl Ipv6Net {
    /// Parses "ADDR/N": host bits zero, N between 16 and 120 (docker refuses shorter ones too).
    pub fn parse(s: &str) -> Result<Ipv6Net, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("invalid subnet {s:?}: expected ADDR/N"))?;
        let addr: Ipv6Addr = a.parse().map_err(|_| format!("invalid subnet {s:?}: bad address {a:?}"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|n| *n <= 128)
            .ok_or_else(|| format!("invalid subnet {s:?}: bad prefix length {p:?}"))?;
        if !(16..=120).contains(&prefix) {
            return Err(format!("invalid subnet {s:?}: prefix length must be between 16 and 120"));
        }
        let net = Ipv6Net::new(addr, prefix);
        if net.addr != addr {
            return Err(format!("invalid subnet {s:?}: host bits set (it should be {net})"));
        }
        Ok(net)
    }

    pub fn new(addr: Ipv6Addr, prefix: u8) -> Ipv6Net {
        let prefix = prefix.min(128);
        Ipv6Net { addr: Ipv6Addr::from(u128::from(addr) & mask6(prefix)), prefix }
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & mask6(self.prefix) == u128::from(self.addr)
    }

    pub fn overlaps(&self, other: &Ipv6Net) -> bool {
        let m = mask6(self.prefix.min(other.prefix));
        u128::from(self.addr) & m == u128::from(other.addr) & m
    }

    /// The first address after the subnet-router anycast address (the default gateway).
    pub fn first_host(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) + 1)
    }

    /// True for an address of this subnet other than the subnet-router anycast address.
    pub fn is_host(&self, ip: Ipv6Addr) -> bool {
        self.contains(ip) && ip != self.addr
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A unique local /64 (fdXX:XXXX:XXXX::/64, 40 random bits as RFC 4193's global ID) for an
/// `--ipv6` network created without an IPv6 --subnet.
pub fn random_ula64(random: &[u8]) -> Ipv6Net {
    let mut b = [0u8; 16];
    b[0] = 0xfd;
    for (i, x) in random.iter().take(5).enumerate() {
        b[1 + i] = *x;
    }
    Ipv6Net::new(Ipv6Addr::from(b), 64)
}

/// IPv6 routes of the host's main table (without the default route, link-local and multicast):
/// (subnet, interface name), from /proc/net/ipv6_route.
pub fn host_subnets6() -> Vec<(Ipv6Net, String)> {
    let mut v = Vec::new();
    let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") else { return v };
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Ok(dst), Ok(prefix)) = (u128::from_str_radix(f[0], 16), u8::from_str_radix(f[1], 16)) else {
            continue;
        };
        let net = Ipv6Net::new(Ipv6Addr::from(dst), prefix);
        let seg0 = net.addr.segments()[0];
        if prefix == 0 || f[9] == "lo" || (seg0 & 0xffc0) == 0xfe80 || (seg0 & 0xff00) == 0xff00 {
            continue;
        }
        v.push((net, f[9].to_string()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_overlap() {
        let a = Ipv4Net::parse("10.88.0.0/16").unwrap();
        assert_eq!(a.to_string(), "10.88.0.0/16");
        assert_eq!(a.first_host(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(a.broadcast(), Ipv4Addr::new(10, 88, 255, 255));
        assert!(a.overlaps(&Ipv4Net::parse("10.88.3.0/24").unwrap()));
        assert!(Ipv4Net::parse("10.0.0.0/8").unwrap().overlaps(&a));
        assert!(!a.overlaps(&Ipv4Net::parse("10.89.0.0/16").unwrap()));
        assert!(a.is_host(Ipv4Addr::new(10, 88, 1, 1)));
        assert!(!a.is_host(Ipv4Addr::new(10, 88, 255, 255)));
        assert!(!a.is_host(Ipv4Addr::new(10, 89, 0, 1)));
        for bad in ["10.88.0.0", "10.300.0.0/16", "10.88.0.0/33", "10.88.0.1/16", "10.88.0.0/31", "x/8", "10.0.0.0/-1"]
        {
            assert!(Ipv4Net::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_order() {
        let v: Vec<String> = default_pool().take(2).map(|n| n.to_string()).collect();
        assert_eq!(v, ["10.88.0.0/16", "10.89.0.0/16"]);
        assert!(default_pool().any(|n| n.to_string() == "172.17.0.0/16"));
    }

    #[test]
    fn ipv6_subnets() {
        let a = Ipv6Net::parse("fd00:1:2::/64").unwrap();
        assert_eq!(a.to_string(), "fd00:1:2::/64");
        assert_eq!(a.first_host().to_string(), "fd00:1:2::1");
        assert!(a.overlaps(&Ipv6Net::parse("fd00:1::/32").unwrap()));
        assert!(!a.overlaps(&Ipv6Net::parse("fd00:1:3::/64").unwrap()));
        assert!(a.is_host("fd00:1:2::5".parse().unwrap()) && !a.is_host("fd00:1:2::".parse().unwrap()));
        for bad in ["fd00::", "fd00::1/64", "fd00::/129", "fd00::/8", "x/64", "10.0.0.0/8"] {
            assert!(Ipv6Net::parse(bad).is_err(), "{bad}");
        }
        let u = random_ula64(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(u.to_string(), "fd01:203:405::/64");
    }
}
