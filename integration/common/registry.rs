//! Registry fixtures for the image tests: a real registry (Debian's `docker-registry`, optionally
//! with TLS from a CA made here with `openssl`, optionally with htpasswd basic auth), a small
//! bearer-token front for it, pushes with `skopeo`, and a docker config.json writer.
//! Everything listens on 127.0.0.1 only and is torn down on Drop (child killed by pid).

use super::images::tool;
use super::{mkdir, Ctx};
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default, Clone)]
pub struct RegistryOpts {
    /// Serve https with a certificate for IP 127.0.0.1 signed by a test CA.
    pub tls: bool,
    /// Require basic auth (htpasswd, bcrypt) with this user and password.
    pub basic_auth: Option<(String, String)>,
    /// Storage in read-only maintenance mode: every upload refused (405 UNSUPPORTED).
    pub readonly: bool,
}

/// A running `docker-registry serve` on 127.0.0.1:<free port>.
pub struct Registry {
    /// "127.0.0.1:PORT"
    pub host: String,
    pub port: u16,
    pub dir: PathBuf,
    /// CA certificate (PEM) that signed the server certificate (tls only): for --tls-ca.
    pub ca: Option<PathBuf>,
    /// A dir holding only ca.crt: for skopeo --dest-cert-dir.
    pub cert_dir: Option<PathBuf>,
    pub opts: RegistryOpts,
    log: PathBuf,
    child: Option<Child>,
}

/// A port that was free a moment ago (the registry retries when it lost the race).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Makes a CA and a server certificate for IP:127.0.0.1 in `dir`: (ca.crt, server.crt, server.key).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    tool(
        Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.crt"))
            .args(["-days", "2", "-subj", "/CN=berth-test-ca"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
    );
    tool(
        Command::new("openssl")
            .arg("req")
            .args(ec)
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr"))
            .args(["-subj", "/CN=127.0.0.1"]),
    );
    fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    tool(
        Command::new("openssl")
            .args(["x509", "-req", "-in"])
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.crt"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .args(["-CAcreateserial", "-days", "2", "-extfile"])
            .arg(p("ext.cnf"))
            .arg("-out")
            .arg(p("server.crt")),
    );
    (p("ca.crt"), p("server.crt"), p("server.key"))
}

impl Registry {
    /// Starts a registry whose files live in a fresh dir of the test; panics when it does not
    /// come up.
    pub fn start(ctx: &Ctx, opts: RegistryOpts) -> Registry {
        for tool in ["/usr/bin/docker-registry", "/usr/bin/skopeo"] {
            assert!(Path::new(tool).exists(), "{tool} missing (apt-get install -y docker-registry skopeo)");
        }
        let dir = ctx.tempdir("registry");
        let (mut ca, mut cert_dir, mut tls_yaml) = (None, None, String::new());
        if opts.tls {
            let (ca_crt, crt, key) = make_certs(&dir);
            let cd = dir.join("certs.d");
            mkdir(&cd, 0o755);
            fs::copy(&ca_crt, cd.join("ca.crt")).unwrap();
            tls_yaml = format!("  tls:\n    certificate: {}\n    key: {}\n", crt.display(), key.display());
            ca = Some(ca_crt);
            cert_dir = Some(cd);
        }
        let mut auth_yaml = String::new();
        if let Some((u, pw)) = &opts.basic_auth {
            let line = tool(Command::new("htpasswd").args(["-Bbn", u, pw]));
            fs::write(dir.join("htpasswd"), line.trim()).unwrap();
            auth_yaml =
                format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", dir.join("htpasswd").display());
        }
        let maint = if opts.readonly { "  maintenance:\n    readonly:\n      enabled: true\n" } else { "" };
        let log = dir.join("registry.log");
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{maint}http:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n{tls_yaml}{auth_yaml}",
                dir.join("storage").display()
            );
            let cfg = dir.join("config.yml");
            fs::write(&cfg, config).unwrap();
            let logf = fs::File::create(&log).unwrap();
            let child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(logf.try_clone().unwrap())
                .stderr(logf)
                .process_group(0)
                .spawn()
                .expect("spawn docker-registry");
            let mut r = Registry {
                host: format!("127.0.0.1:{port}"),
                port,
                dir: dir.clone(),
                ca: ca.clone(),
                cert_dir: cert_dir.clone(),
                opts: opts.clone(),
                log: log.clone(),
                child: Some(child),
            };
            if r.wait_ready(Duration::from_secs(20)) {
                return r;
            }
            last_err = fs::read_to_string(&log).unwrap_or_default();
            r.stop();
        }
        panic!("docker-registry did not start:\n{last_err}");
    }

    /// True once the port answers (GET /v2/ → 200 or 401 on plain http; a TCP connect for tls).
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return false;
                }
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if self.opts.tls {
                    return true;
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.host);
                if s.write_all(req.as_bytes()).is_ok() {
                    let mut buf = String::new();
                    let _ = s.read_to_string(&mut buf);
                    if buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.1 401") {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// "127.0.0.1:PORT/<repo_tag>"
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{}", self.host, repo_tag)
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://HOST/REPO_TAG` (with `--all` for an index).
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str, all: bool) {
        let mut c = Command::new("skopeo");
        c.args(["--insecure-policy", "copy", "-q", "--retry-times", "2"]);
        if all {
            c.arg("--all");
        }
        match &self.cert_dir {
            Some(d) => {
                c.arg("--dest-cert-dir").arg(d);
            }
            None => {
                c.arg("--dest-tls-verify=false");
            }
        }
        if let Some((u, p)) = &self.opts.basic_auth {
            c.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        c.arg(format!("oci:{}:{tag}", layout.display())).arg(format!("docker://{}", self.reference(repo_tag)));
        // skopeo keeps its own state under $HOME/.local and /var/tmp; keep it in the registry dir.
        c.env("HOME", &self.dir).env("TMPDIR", &self.dir);
        tool(&mut c);
    }

    /// Everything the registry logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Access-log request lines ("GET /v2/... HTTP/1.1" 200 ...) so far.
    pub fn access_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") || l.contains("\"HEAD /v2/") || l.contains("\"PUT /v2/"))
            .map(str::to_string)
            .collect()
    }

    /// Number of blob GETs answered so far.
    pub fn blob_gets(&self) -> usize {
        // The access log is written when a response completes; give the last one a moment.
        std::thread::sleep(Duration::from_millis(200));
        self.access_lines().iter().filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/")).count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("BERTH_ITEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Docker config.json

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Writes a docker config.json with `{"auths": {host: {"auth": base64(user:pass)}}}`.
pub fn write_authfile(path: &Path, entries: &[(&str, &str, &str)]) {
    let mut auths = serde_json::Map::new();
    for (host, user, pass) in entries {
        auths.insert(host.to_string(), serde_json::json!({"auth": base64(format!("{user}:{pass}").as_bytes())}));
    }
    fs::write(path, serde_json::to_vec_pretty(&serde_json::json!({"auths": auths})).unwrap()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bearer token front

/// A fake registry front that needs a bearer token: /v2/... without `Authorization: Bearer T`
/// answers 401 with a `WWW-Authenticate: Bearer realm=".../token",service=..,scope=..`
/// challenge; /token hands out T (checking basic credentials when configured); requests with
/// the token are forwarded to a real registry (HTTP/1.1, one request per connection).
pub struct TokenProxy {
    pub host: String,
    pub port: u16,
    /// Request lines seen, with the kind of Authorization header: "GET /v2/ [none]",
    /// "GET /token?... [basic-ok]", "GET /v2/x/manifests/v1 [bearer-ok]".
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub const BEARER_TOKEN: &str = "berth-test-token-7f3a";

impl TokenProxy {
    pub fn start(backend: &Registry, creds: Option<(String, String)>) -> TokenProxy {
        assert!(!backend.opts.tls && backend.opts.basic_auth.is_none(), "the token front needs a plain backend");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token proxy");
        let port = listener.local_addr().unwrap().port();
        let host = format!("127.0.0.1:{port}");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (rq, st, h, be) = (requests.clone(), stop.clone(), host.clone(), backend.host.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = conn else { continue };
                let (rq, h, be, creds) = (rq.clone(), h.clone(), be.clone(), creds.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(s, &h, &be, creds.as_ref(), &rq);
                });
            }
        });
        TokenProxy { host, port, requests, stop, thread: Some(thread) }
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{}", self.host, repo_tag)
    }

    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Request> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = Request { method, target, headers, body: Vec::new() };
    let len: usize = req.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    req.body = body;
    Ok(req)
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    s.write_all(out.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

/// "repository:<name>:pull" for /v2/<name>/(manifests|blobs|tags)/..., None for /v2/.
fn scope_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    for sep in ["/manifests/", "/blobs/", "/tags/"] {
        if let Some(i) = rest.find(sep) {
            return Some(format!("repository:{}:pull", &rest[..i]));
        }
    }
    None
}

fn serve_one(
    s: TcpStream,
    host: &str,
    backend: &str,
    creds: Option<&(String, String)>,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut s = s;
    let req = read_request(&mut reader)?;
    let auth = req.header("authorization").unwrap_or("").to_string();
    let path = req.target.split('?').next().unwrap_or("").to_string();
    let mut kind = if auth.is_empty() {
        "none".to_string()
    } else if let Some(b) = auth.strip_prefix("Basic ") {
        let ok = creds.map(|(u, p)| base64(format!("{u}:{p}").as_bytes()) == b.trim()).unwrap_or(false);
        if ok { "basic-ok" } else { "basic-bad" }.to_string()
    } else if auth.strip_prefix("Bearer ").map(str::trim) == Some(BEARER_TOKEN) {
        "bearer-ok".to_string()
    } else {
        "other".to_string()
    };
    if path == "/token" {
        let allowed = match creds {
            None => true,
            Some(_) => kind == "basic-ok",
        };
        seen.lock().unwrap().push(format!("{} {} [{kind}]", req.method, req.target));
        if !allowed {
            return respond(
                &mut s,
                "401 Unauthorized",
                &[("Content-Type", "application/json".into())],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            );
        }
        let body = format!(r#"{{"token":"{BEARER_TOKEN}","access_token":"{BEARER_TOKEN}","expires_in":300}}"#);
        return respond(&mut s, "200 OK", &[("Content-Type", "application/json".into())], body.as_bytes());
    }
    if kind != "bearer-ok" {
        if kind == "none" && !path.starts_with("/v2") {
            kind = "none-not-v2".into();
        }
        seen.lock().unwrap().push(format!("{} {} [{kind}]", req.method, req.target));
        let mut chal = format!(r#"Bearer realm="http://{host}/token",service="berth-test""#);
        if let Some(sc) = scope_of(&path) {
            chal.push_str(&format!(r#",scope="{sc}""#));
        }
        return respond(
            &mut s,
            "401 Unauthorized",
            &[
                ("Content-Type", "application/json".into()),
                ("WWW-Authenticate", chal),
                ("Docker-Distribution-Api-Version", "registry/2.0".into()),
            ],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
    }
    seen.lock().unwrap().push(format!("{} {} [{kind}]", req.method, req.target));
    // Forward to the backend, one request per connection, and copy the answer back as is.
    let mut b = TcpStream::connect(backend)?;
    b.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut fwd = format!("{} {} HTTP/1.1\r\nHost: {backend}\r\n", req.method, req.target);
    let skip: HashMap<&str, ()> = [("host", ()), ("authorization", ()), ("connection", ()), ("keep-alive", ())].into();
    for (k, v) in &req.headers {
        if !skip.contains_key(k.to_ascii_lowercase().as_str()) {
            fwd.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    fwd.push_str("Connection: close\r\n\r\n");
    b.write_all(fwd.as_bytes())?;
    b.write_all(&req.body)?;
    std::io::copy(&mut b, &mut s)?;
    s.flush()?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}
