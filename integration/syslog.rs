//! `--log-driver syslog`: the messages berth sends to a UDP and a unix datagram listener the
//! test makes, compared with what a private dockerd 20.10 sends for the same container output
//! and options (all but the time, hostname and pid fields); options and unreachable servers
//! refused as dockerd refuses them; `logs` as docker's CLI shows it.

use crate::container::{assert_one_line, Eng};
use std::fs;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A listener the containers send to.
enum Listener {
    Udp(UdpSocket),
    Gram(UnixDatagram),
    /// A stream server (tcp or unix): one connection per container, messages split at '\n'.
    Stream(Box<dyn Fn() -> std::io::Result<Box<dyn Read>>>),
}

impl Listener {
    /// Every datagram until none came for a while (at most `want` of them).
    fn drain(&self, want: usize) -> Vec<String> {
        let mut out = Vec::new();
        if let Listener::Stream(accept) = self {
            let t = Instant::now();
            let mut conn = loop {
                match accept() {
                    Ok(c) => break c,
                    Err(_) if t.elapsed() < Duration::from_secs(20) => std::thread::sleep(Duration::from_millis(50)),
                    Err(e) => panic!("no connection: {e}"),
                }
            };
            let mut all = Vec::new();
            // The container's end closes the connection when it exits.
            let _ = conn.read_to_end(&mut all);
            return String::from_utf8_lossy(&all).split_inclusive('\n').map(str::to_string).collect();
        }
        let mut buf = vec![0u8; 65536];
        let t = Instant::now();
        while out.len() < want && t.elapsed() < Duration::from_secs(20) {
            let n = match self {
                Listener::Udp(s) => s.recv(&mut buf),
                Listener::Gram(s) => s.recv(&mut buf),
                Listener::Stream(_) => unreachable!(),
            };
            if let Ok(n) = n {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        // Nothing more than expected arrives.
        std::thread::sleep(Duration::from_millis(300));
        while let Ok(n) = match self {
            Listener::Udp(s) => s.recv(&mut buf),
            Listener::Gram(s) => s.recv(&mut buf),
            Listener::Stream(_) => unreachable!(),
        } {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }
}

/// The message with its time and pid replaced (the hostname kept: both send the host's name);
/// `id` (the short id) as `ID`.
fn normal(m: &str, id: &str) -> String {
    let bsd = regex::Regex::new(r"^(<\d+>)[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\S+ )?(\S+)\[\d+\]: ").unwrap();
    let r5424 = regex::Regex::new(
        r"^(<\d+>)1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?(Z|[+-]\d\d:\d\d) (\S*) (\S+) \d+ (\S+) - ",
    )
    .unwrap();
    let m = m.replace(id, "ID");
    if let Some(c) = bsd.captures(&m) {
        let host = c.get(2).map(|h| h.as_str()).unwrap_or("");
        return format!("{}TIME {host}{}[PID]: {}", &c[1], &c[3], &m[c[0].len()..]);
    }
    if let Some(c) = r5424.captures(&m) {
        let micro = if c.get(2).is_some() { ".micro" } else { "" };
        return format!("{}1 TIME{micro} {} {} PID {} - {}", &c[1], &c[4], &c[5], &c[6], &m[c[0].len()..]);
    }
    panic!("not a syslog message docker sends: {m:?}");
}

fn output(mut c: Command) -> (bool, String, String) {
    let o = c.stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn syslog_messages_match_dockerd() {
    let e = Eng::new("syslog");
    let d = crate::layers::Dockerd::start(&e.ctx);
    let (archive, _) = crate::container::archives();
    assert!(d.docker(&["load", "-i", archive.to_str().unwrap()]).status().unwrap().success());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let udp_addr = format!("udp://{}", udp.local_addr().unwrap());
    let gram_path = e.ctx.tempdir("syslog").join("log.sock");
    let gram = UnixDatagram::bind(&gram_path).unwrap();
    gram.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let gram_addr = format!("unixgram://{}", gram_path.display());
    let (udp, gram) = (Listener::Udp(udp), Listener::Gram(gram));
    let tcp_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = format!("tcp://{}", tcp_l.local_addr().unwrap());
    tcp_l.set_nonblocking(true).unwrap();
    let tcp = Listener::Stream(Box::new(move || {
        let (c, _) = tcp_l.accept()?;
        c.set_nonblocking(false)?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Box::new(c) as Box<dyn Read>)
    }));
    let unix_path = gram_path.with_file_name("stream.sock");
    let unix_l = UnixListener::bind(&unix_path).unwrap();
    let unix_addr = format!("unix://{}", unix_path.display());
    unix_l.set_nonblocking(true).unwrap();
    let unix = Listener::Stream(Box::new(move || {
        let (c, _) = unix_l.accept()?;
        c.set_nonblocking(false)?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Box::new(c) as Box<dyn Read>)
    }));
    // Six messages: the empty line is not sent, a 20000-byte line is two (cut at 16 KiB, as
    // dockerd cuts), the unfinished last line is sent.
    let script = "echo one; echo; echo 'two <&> \"q\"' >&2; echo 'a\tb'; head -c 20000 /dev/zero | tr '\\0' x; \
                  echo; printf tail";
    let cases: &[(&Listener, &str, &[&str])] = &[
        (&udp, &udp_addr, &[]),
        (&gram, &gram_addr, &["--log-opt", "syslog-format=rfc5424"]),
        (&udp, &udp_addr, &["--log-opt", "syslog-format=rfc3164", "--log-opt", "syslog-facility=local3"]),
        (&gram, &gram_addr, &["--log-opt", "syslog-format=rfc5424micro", "--log-opt", "tag={{.Name}}/{{.ImageName}}"]),
        (&udp, &udp_addr, &["--log-opt", "syslog-facility=13", "--log-opt", "labels=a", "--log-opt", "env=X"]),
        (&tcp, &tcp_addr, &["--log-opt", "syslog-format=rfc5424"]),
        (&unix, &unix_addr, &["--log-opt", "syslog-facility=user"]),
        (&udp, &udp_addr, &["--log-opt", "cache-disabled=true"]),
    ];
    for (i, (l, addr, opts)) in cases.iter().enumerate() {
        let name = format!("slog-{}-{i}", std::process::id());
        let opt = format!("syslog-address={addr}");
        let mut args = vec!["--name", name.as_str(), "--network", "none", "--log-driver", "syslog", "--log-opt", &opt];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["busybox", "sh", "-c", script]);
        let mut dargs = vec!["run", "-d"];
        dargs.extend_from_slice(&args);
        let (ok, did, err) = output(d.docker(&dargs));
        assert!(ok, "docker {dargs:?}: {err}");
        let did = did.trim().to_string();
        let mut theirs: Vec<String> = l.drain(6).iter().map(|m| normal(m, &did[..12])).collect();
        let bid = e.run_d(&args);
        let mut ours: Vec<String> = l.drain(6).iter().map(|m| normal(m, &bid[..12])).collect();
        e.wait_status(&bid, "exited", Duration::from_secs(20));
        if i == 0 || opts.contains(&"cache-disabled=true") {
            // `logs` through docker's CLI on PATH (28) against dockerd 20.10, and berth's.
            assert!(d.docker(&["wait", &did]).status().unwrap().success());
            let mut c = Command::new("docker");
            c.args(["-H", &d.host(), "logs", &did]).env("DOCKER_CONFIG", e.ctx.tempdir("docker-cli"));
            let (dok, dout, derr) = output(c);
            let o = e.c(&["logs", &bid]);
            assert_eq!(o.code == 0, dok, "logs: berth {o} vs docker {derr}");
            if dok {
                assert_eq!((o.stdout.as_str(), o.stderr.as_str()), (dout.as_str(), derr.as_str()), "logs output");
            } else {
                let what = derr.lines().next().unwrap_or("").trim_start_matches("Error response from daemon: ");
                // docker's CLI exits 1 here; berth's engine errors are all 125.
                assert_one_line(&o, 125, &[what]);
            }
        }
        assert!(d.docker(&["rm", "-f", &did]).status().unwrap().success());
        assert!(e.c(&["rm", &bid]).code == 0);
        // The two streams' order between each other is the scheduler's.
        theirs.sort();
        ours.sort();
        assert_eq!(theirs.len(), 6, "dockerd's messages for {opts:?}: {theirs:#?}");
        assert_eq!(ours, theirs, "messages for {opts:?}");
    }
}

#[test]
fn syslog_options_and_unreachable_servers_fail_as_in_dockerd() {
    let e = Eng::new("syslog-bad");
    let d = crate::layers::Dockerd::start(&e.ctx);
    let (archive, _) = crate::container::archives();
    assert!(d.docker(&["load", "-i", archive.to_str().unwrap()]).status().unwrap().success());
    let dir = e.ctx.tempdir("syslog-bad");
    // A socket file nobody listens on, and a TCP port nobody listens on.
    let dead = dir.join("dead.sock");
    drop(UnixDatagram::bind(&dead).unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cases = [
        "nosuch=1".to_string(),
        "syslog-facility=local8".to_string(),
        "syslog-format=json".to_string(),
        "syslog-address=127.0.0.1:514".to_string(),
        format!("syslog-address=unixgram://{}/missing.sock", dir.display()),
        format!("syslog-address=unixgram://{}", dead.display()),
        format!("syslog-address=tcp://127.0.0.1:{port}"),
    ];
    let mut cases = cases.to_vec();
    // No local syslog socket on the host (here /var/run/log is a directory): the default
    // address fails the start.
    if ["/dev/log", "/var/run/syslog", "/var/run/log"]
        .iter()
        .all(|p| !fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
    {
        cases.push("syslog-facility=daemon".into());
    }
    let before = e.container_dirs();
    for opt in &cases {
        let args = ["run", "--network", "none", "--log-driver", "syslog", "--log-opt", opt, "busybox", "true"];
        let (ok, _, derr) = output(d.docker(&args));
        assert!(!ok, "dockerd refuses {opt}");
        // "docker: Error response from daemon: WHAT." (and a help line for create errors).
        let first = derr.lines().next().unwrap_or("");
        let what = first
            .trim_start_matches("docker: ")
            .trim_start_matches("Error response from daemon: ")
            .trim_end_matches('.')
            .to_string();
        let o = e.c(&args);
        let mut want = vec![what.as_str()];
        if opt.starts_with("nosuch") {
            want = vec!["unknown log opt 'nosuch' for syslog log driver"];
        }
        assert_one_line(&o, 125, &want);
        // A refused create makes nothing. After a failed start docker's `run` leaves the created
        // container; berth's `run` removes what it made (as for every failed run).
        let (_, dleft, _) = output(d.docker(&["ps", "-aq", "--filter", "status=created"]));
        let (_, bleft, _) = output(e.command(&["container", "ls", "-aq"]));
        assert_eq!(bleft.lines().count(), 0, "{opt}: berth's run left {bleft}");
        assert_eq!(dleft.lines().count(), usize::from(what.contains("failed to initialize logging driver")), "{opt}");
        for c in dleft.lines() {
            assert!(d.docker(&["rm", "-f", c]).status().unwrap().success());
        }
        for c in bleft.lines() {
            assert_eq!(e.c(&["rm", "-f", c]).code, 0);
        }
    }
    assert_eq!(e.container_dirs(), before);
    // create, then start: the start fails with dockerd's words and the container stays created.
    let opt = format!("syslog-address=tcp://127.0.0.1:{port}");
    let create = ["create", "--network", "none", "--log-driver", "syslog", "--log-opt", &opt, "busybox", "true"];
    let (ok, did, _) = output(d.docker(&create));
    assert!(ok);
    let (ok, _, derr) = output(d.docker(&["start", did.trim()]));
    assert!(!ok);
    let what = derr.lines().next().unwrap_or("").trim_start_matches("Error response from daemon: ").to_string();
    assert!(what.starts_with("failed to initialize logging driver: dial tcp"), "{derr}");
    let o = e.c(&create);
    assert_eq!(o.code, 0, "{o}");
    let bid = o.stdout.trim().to_string();
    assert_one_line(&e.c(&["start", &bid]), 125, &[what.trim_end_matches('.')]);
    e.wait_status(&bid, "created", Duration::from_secs(5));
    assert_eq!(e.c(&["rm", &bid]).code, 0);
    assert_eq!(e.container_dirs(), before);
    // No TLS client: tcp+tls is refused at create in one line, nothing made.
    let tls =
        ["run", "--log-driver", "syslog", "--log-opt", "syslog-address=tcp+tls://127.0.0.1:6514", "busybox", "true"];
    assert_one_line(&e.c(&tls), 125, &["tcp+tls", "not supported"]);
    assert_eq!(e.container_dirs(), before);
    // journald stays refused.
    assert_one_line(&e.c(&["run", "--log-driver", "journald", "busybox", "true"]), 125, &["journald"]);
}
