//! The container's /etc/resolv.conf and /etc/hosts contents, and the host's resolver settings.

use std::net::IpAddr;

/// The host's resolv.conf (BERTH_RESOLV_CONF overrides, for tests).
pub fn host_resolv_path() -> String {
    match std::env::var("BERTH_RESOLV_CONF") {
        Ok(p) if !p.is_empty() => p,
        _ => "/etc/resolv.conf".into(),
    }
}

/// nameserver, search and options entries of a resolv.conf.
#[derive(Debug, Default, PartialEq)]
pub struct Resolv {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

pub fn parse_resolv(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for l in text.lines() {
        let l = l.split(['#', ';']).next().unwrap_or("");
        let mut f = l.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                // "fe80::1%eth0" scoped addresses are of no use in a container: they fail to parse.
                if let Some(ip) = f.next().and_then(|a| a.parse().ok()) {
                    r.nameservers.push(ip);
                }
            }
            Some("search") | Some("domain") => r.search = f.map(str::to_string).collect(),
            Some("options") => r.options.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    r
}

pub fn host_resolv() -> Resolv {
    parse_resolv(&std::fs::read_to_string(host_resolv_path()).unwrap_or_default())
}

/// Where systemd-resolved keeps the real upstream servers when /etc/resolv.conf names its stub.
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// The nameservers a container in its own network namespace can use (as docker picks them):
/// the host's without loopback ones; when only loopback ones were given (a local stub such as
/// systemd-resolved's 127.0.0.53), the stub's upstream file; when still none, Google's public DNS.
pub fn container_nameservers(host: &Resolv, resolved_upstream: Option<&str>) -> Vec<String> {
    let usable =
        |r: &Resolv| r.nameservers.iter().filter(|a| !a.is_loopback()).map(|a| a.to_string()).collect::<Vec<_>>();
    let mut v = usable(host);
    if v.is_empty() && !host.nameservers.is_empty() {
        if let Some(text) = resolved_upstream {
            v = usable(&parse_resolv(text));
        }
    }
    if v.is_empty() {
        v = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    v
}

/// [`container_nameservers`] for this host.
pub fn host_container_nameservers(host: &Resolv) -> Vec<String> {
    let upstream = std::fs::read_to_string(RESOLVED_UPSTREAM).ok();
    container_nameservers(host, upstream.as_deref())
}

/// resolv.conf text.
pub fn resolv_conf(nameservers: &[String], search: &[String], options: &[String]) -> String {
    let mut s = String::new();
    for n in nameservers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}

/// /etc/hosts text: localhost entries, the container's own addresses with its names, extra hosts.
pub fn hosts_file(own: &[std::net::IpAddr], names: &[&str], extra: &[(String, String)]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    let mut uniq: Vec<&str> = Vec::new();
    for n in names {
        if !n.is_empty() && !uniq.contains(n) {
            uniq.push(n);
        }
    }
    if !uniq.is_empty() {
        for ip in own {
            s.push_str(&format!("{ip}\t{}\n", uniq.join(" ")));
        }
    }
    for (h, ip) in extra {
        s.push_str(&format!("{ip}\t{h}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_parse_and_write() {
        let r = parse_resolv("# x\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # c\nnameserver fe80::1%eth0\nsearch a.example b.example\noptions edns0 trust-ad\n");
        assert_eq!(r.nameservers, vec!["127.0.0.53".parse::<IpAddr>().unwrap(), "10.0.0.2".parse().unwrap()]);
        assert_eq!(r.search, ["a.example", "b.example"]);
        assert_eq!(r.options, ["edns0", "trust-ad"]);
        let t = resolv_conf(&["10.89.0.1".into()], &[], &["ndots:0".into()]);
        assert_eq!(t, "nameserver 10.89.0.1\noptions ndots:0\n");
    }

    #[test]
    fn hosts() {
        let t = hosts_file(
            &[std::net::Ipv4Addr::new(10, 89, 0, 2).into()],
            &["web", "web", "abc"],
            &[("db".into(), "10.0.0.9".into())],
        );
        assert!(t.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(t.contains("\n10.89.0.2\tweb abc\n"));
        assert!(t.ends_with("10.0.0.9\tdb\n"));
    }

    #[test]
    fn nameservers_like_docker() {
        let stub = parse_resolv("nameserver 127.0.0.53\nsearch lan\n");
        assert_eq!(
            container_nameservers(&stub, Some("nameserver 10.0.0.1\nnameserver 10.0.0.2\n")),
            ["10.0.0.1", "10.0.0.2"]
        );
        assert_eq!(container_nameservers(&stub, None), ["8.8.8.8", "8.8.4.4"]);
        let mixed = parse_resolv("nameserver 192.168.1.1\nnameserver ::1\n");
        assert_eq!(container_nameservers(&mixed, Some("nameserver 10.9.9.9\n")), ["192.168.1.1"]);
        assert_eq!(container_nameservers(&Resolv::default(), None), ["8.8.8.8", "8.8.4.4"]);
    }
}
