//! docker's `syslog` log driver, as dockerd 20.10 sends it (moby's daemon/logger/syslog over
//! the srslog client): every line of the container's output is one message, stdout at severity
//! INFO (6), stderr at ERR (3), the facility (daemon by default) times 8 added. The message ends
//! in '\n'; empty lines are not sent. Formats:
//!
//! - `""` (docker's default, srslog's unix formatter): `<PRI>Mmm dd hh:mm:ss TAG[PID]: LINE`
//! - `rfc3164`: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: LINE`
//! - `rfc5424`: `<PRI>1 RFC3339-TIME HOSTNAME TAG PID TAG - LINE`
//! - `rfc5424micro`: the same with microseconds in the time.
//!
//! Transports: `udp://`, `tcp://` (port 514 by default), `unix://`, `unixgram://`, and by default
//! the local syslog socket (`/dev/log`, `/var/run/syslog`, `/var/run/log`; datagram, then stream).

use std::io::{self, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};

/// Where and how messages are sent: the parts of the container's `--log-opt`s the shim needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyslogTarget {
    /// `udp`, `tcp`, `unix`, `unixgram`, or empty for the local syslog socket.
    pub proto: String,
    /// host:port or a socket path (empty with the local socket).
    pub addr: String,
    /// The facility's code times 8 (daemon: 24).
    pub facility: u8,
    /// `""`, `rfc3164`, `rfc5424` or `rfc5424micro`.
    pub format: String,
    /// The rendered `tag` template (default: the short container id).
    pub tag: String,
}

/// docker's facility names.
const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// `syslog-facility`: a name or a number 0..=23; the code times 8. docker's error otherwise.
pub fn parse_facility(s: &str) -> Result<u8, String> {
    if s.is_empty() {
        return Ok(3 << 3);
    }
    if let Some((_, f)) = FACILITIES.iter().find(|(n, _)| *n == s) {
        return Ok(f << 3);
    }
    match s.parse::<u8>() {
        Ok(n) if n <= 23 => Ok(n << 3),
        _ => Err("invalid syslog facility".into()),
    }
}

/// `syslog-format`, with docker's error.
pub fn parse_format(s: &str) -> Result<String, String> {
    match s {
        "" | "rfc3164" | "rfc5424" | "rfc5424micro" => Ok(s.to_string()),
        _ => Err("Invalid syslog format".into()),
    }
}

/// `syslog-address` into (proto, address), with docker's errors. A unix socket must exist.
pub fn parse_address(s: &str) -> Result<(String, String), String> {
    if s.is_empty() {
        return Ok((String::new(), String::new()));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("syslog-address should be in form proto://address, got {s}"));
    };
    match scheme {
        "unix" | "unixgram" => {
            // url.Parse's path: what follows the host (empty for unix:///path).
            let path = match rest.find('/') {
                Some(i) => &rest[i..],
                None => "",
            };
            std::fs::metadata(path).map_err(|e| format!("stat {path}: {}", errno_text(&e)))?;
            Ok((scheme.to_string(), path.to_string()))
        }
        "udp" | "tcp" => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let has_port = match host.strip_prefix('[') {
                Some(v6) => v6.split_once(']').is_some_and(|(_, p)| p.starts_with(':')),
                None => host.contains(':'),
            };
            if !host.starts_with('[') && host.matches(':').count() > 1 {
                return Err(format!("address {host}: too many colons in address"));
            }
            let host = if has_port { host.to_string() } else { format!("{host}:514") };
            Ok((scheme.to_string(), host))
        }
        "tcp+tls" => Err("syslog-address tcp+tls:// is not supported by berth (udp, tcp, unix, unixgram are)".into()),
        _ => Err(format!("syslog-address should be in form proto://address, got {s}")),
    }
}

/// Go's text of an errno (lower case, without Rust's "(os error N)").
fn errno_text(e: &io::Error) -> String {
    let Some(n) = e.raw_os_error() else { return e.to_string() };
    let t = io::Error::from_raw_os_error(n).to_string();
    let t = t.split(" (os error").next().unwrap_or("").to_string();
    let mut c = t.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => t,
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// One message, as srslog formats it for docker (UTC times); `line` without its newline.
pub fn format_message(
    t: &SyslogTarget,
    stderr: bool,
    hostname: &str,
    pid: u32,
    line: &[u8],
    now: (i64, u32),
) -> Vec<u8> {
    let pri = u32::from(t.facility) + if stderr { 3 } else { 6 };
    let stamp = super::jsonlog::format_time(now.0, now.1);
    // "2026-11-23T14:00:00.123456789Z"
    let s = std::str::from_utf8(&stamp).unwrap_or("1970-01-01T00:00:00.000000000Z");
    let mut out = Vec::with_capacity(line.len() + 80);
    let head = match t.format.as_str() {
        "rfc5424" | "rfc5424micro" => {
            let time = if t.format == "rfc5424" { format!("{}Z", &s[..19]) } else { format!("{}Z", &s[..26]) };
            format!("<{pri}>1 {time} {hostname} {tag} {pid} {tag} - ", tag = t.tag)
        }
        _ => {
            let month: usize = s[5..7].parse().unwrap_or(1);
            let day: u32 = s[8..10].parse().unwrap_or(1);
            // Go's time.Stamp: "Jan _2 15:04:05".
            let stamp = format!("{} {day:>2} {}", MONTHS[(month.clamp(1, 12)) - 1], &s[11..19]);
            if t.format == "rfc3164" {
                format!("<{pri}>{stamp} {hostname} {}[{pid}]: ", t.tag)
            } else {
                format!("<{pri}>{stamp} {}[{pid}]: ", t.tag)
            }
        }
    };
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(line);
    out.push(b'\n');
    out
}

/// The server could not be reached: docker fails the container's start with
/// `failed to initialize logging driver: ...`.
#[derive(Debug, thiserror::Error)]
#[error("failed to initialize logging driver: {0}")]
pub struct DialError(String);

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixStream),
    Gram(UnixDatagram),
}

/// A connection to the syslog server, reconnected once when a send fails (as srslog does).
pub struct Sender {
    target: SyslogTarget,
    conn: Option<Conn>,
    hostname: String,
    pid: u32,
}

fn dial(proto: &str, addr: &str) -> io::Result<(Conn, String)> {
    let dial_err = |e: io::Error| io::Error::new(e.kind(), format!("dial {proto} {addr}: connect: {}", errno_text(&e)));
    Ok(match proto {
        "udp" => {
            let target: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(addr)
                .map_err(dial_err)?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("dial udp {addr}: no address")))?;
            let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = UdpSocket::bind(bind).map_err(dial_err)?;
            s.connect(target).map_err(dial_err)?;
            let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
            (Conn::Udp(s), local)
        }
        "tcp" => {
            let s = TcpStream::connect(addr).map_err(dial_err)?;
            let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
            (Conn::Tcp(s), local)
        }
        "unix" => (Conn::Unix(UnixStream::connect(addr).map_err(dial_err)?), String::new()),
        "unixgram" => {
            let s = UnixDatagram::unbound().map_err(dial_err)?;
            s.connect(addr).map_err(dial_err)?;
            (Conn::Gram(s), String::new())
        }
        _ => {
            for gram in [true, false] {
                for path in ["/dev/log", "/var/run/syslog", "/var/run/log"] {
                    let c = if gram {
                        UnixDatagram::unbound().and_then(|s| s.connect(path).map(|_| Conn::Gram(s)))
                    } else {
                        UnixStream::connect(path).map(Conn::Unix)
                    };
                    if let Ok(c) = c {
                        return Ok((c, "localhost".into()));
                    }
                }
            }
            return Err(io::Error::new(io::ErrorKind::NotFound, "Unix syslog delivery error"));
        }
    })
}

/// The host's name, which dockerd puts in rfc3164 and rfc5424 messages whatever the transport.
fn hostname() -> String {
    let mut b = [0u8; 256];
    // SAFETY: gethostname writes at most b.len() bytes into the live buffer.
    let r = unsafe { libc::gethostname(b.as_mut_ptr().cast(), b.len()) };
    if r != 0 {
        return String::new();
    }
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..n]).into_owned()
}

impl Sender {
    /// Connects to the target (the container's start fails when this does, as in docker).
    pub fn connect(target: &SyslogTarget) -> io::Result<Sender> {
        let (conn, _) =
            dial(&target.proto, &target.addr).map_err(|e| io::Error::new(e.kind(), DialError(e.to_string())))?;
        Ok(Sender { target: target.clone(), conn: Some(conn), hostname: hostname(), pid: std::process::id() })
    }

    /// Sends one line (without its newline); empty lines are not sent. A failed send is retried
    /// once on a new connection, then the line is dropped (the container goes on).
    pub fn send(&mut self, stderr: bool, line: &[u8], now: (i64, u32)) {
        if line.is_empty() {
            return;
        }
        let msg = format_message(&self.target, stderr, &self.hostname, self.pid, line, now);
        for _ in 0..2 {
            if self.conn.is_none() {
                self.conn = dial(&self.target.proto, &self.target.addr).ok().map(|(c, _)| c);
            }
            let ok = match self.conn.as_mut() {
                Some(Conn::Udp(s)) => s.send(&msg).is_ok(),
                Some(Conn::Tcp(s)) => s.write_all(&msg).is_ok(),
                Some(Conn::Unix(s)) => s.write_all(&msg).is_ok(),
                Some(Conn::Gram(s)) => s.send(&msg).is_ok(),
                None => false,
            };
            if ok {
                return;
            }
            self.conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(format: &str, facility: u8) -> SyslogTarget {
        SyslogTarget {
            proto: "udp".into(),
            addr: "127.0.0.1:514".into(),
            facility,
            format: format.into(),
            tag: "0123456789ab".into(),
        }
    }

    // 2026-03-05T07:08:09.123456789Z
    const NOW: (i64, u32) = (1_772_694_489, 123_456_789);

    #[test]
    fn formats_as_docker() {
        let m =
            |f: &str, err| String::from_utf8(format_message(&target(f, 24), err, "h:1", 42, b"hi there", NOW)).unwrap();
        assert_eq!(m("", false), "<30>Mar  5 07:08:09 0123456789ab[42]: hi there\n");
        assert_eq!(m("", true), "<27>Mar  5 07:08:09 0123456789ab[42]: hi there\n");
        assert_eq!(m("rfc3164", false), "<30>Mar  5 07:08:09 h:1 0123456789ab[42]: hi there\n");
        assert_eq!(m("rfc5424", true), "<27>1 2026-03-05T07:08:09Z h:1 0123456789ab 42 0123456789ab - hi there\n");
        assert_eq!(
            m("rfc5424micro", false),
            "<30>1 2026-03-05T07:08:09.123456Z h:1 0123456789ab 42 0123456789ab - hi there\n"
        );
        let two_digit_day = format_message(&target("", 8), false, "", 1, b"x", (NOW.0 + 10 * 86400, 0));
        assert_eq!(String::from_utf8(two_digit_day).unwrap(), "<14>Mar 15 07:08:09 0123456789ab[1]: x\n");
    }

    #[test]
    fn options_parse_as_docker() {
        assert_eq!(parse_facility(""), Ok(24));
        assert_eq!(parse_facility("local7"), Ok(23 * 8));
        assert_eq!(parse_facility("authpriv"), Ok(80));
        assert_eq!(parse_facility("23"), Ok(184));
        assert_eq!(parse_facility("24"), Err("invalid syslog facility".into()));
        assert_eq!(parse_facility("Local0"), Err("invalid syslog facility".into()));
        assert_eq!(parse_format("rfc5424micro"), Ok("rfc5424micro".into()));
        assert_eq!(parse_format("json"), Err("Invalid syslog format".into()));
        assert_eq!(parse_address("udp://127.0.0.1"), Ok(("udp".into(), "127.0.0.1:514".into())));
        assert_eq!(parse_address("tcp://[::1]:601"), Ok(("tcp".into(), "[::1]:601".into())));
        assert_eq!(parse_address("udp://::1"), Err("address ::1: too many colons in address".into()));
        assert_eq!(parse_address("udp://[::1]"), Ok(("udp".into(), "[::1]:514".into())));
        assert_eq!(
            parse_address("127.0.0.1:514"),
            Err("syslog-address should be in form proto://address, got 127.0.0.1:514".into())
        );
        assert_eq!(
            parse_address("unixgram:///nonexistent/log"),
            Err("stat /nonexistent/log: no such file or directory".into())
        );
        assert_eq!(parse_address("unix:///"), Ok(("unix".into(), "/".into())));
        assert!(parse_address("tcp+tls://127.0.0.1:6514").is_err());
    }
}
