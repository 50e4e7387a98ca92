//! The Docker Engine API service (`berth system service`): docker's HTTP API on a unix socket,
//! so the docker CLI, docker-compose and the Docker SDKs drive berth unchanged. The service
//! keeps no state of its own: every request goes to the same typed engine core the command
//! line uses (same store, shims, networks and volumes), so containers made here are the ones
//! `berth container ls` shows and keep running when the service stops. The only things held in
//! memory are exec instances (as docker's daemon holds them) and attach connections waiting
//! for their container's start.
//!
//! HTTP is served by a small HTTP/1.1 server of its own ([`http`]), a thread per connection:
//! no asynchronous runtime, nothing of it on the runtime's path.

mod build;
pub(crate) mod containers;
mod exec;
mod files;
pub(crate) mod http;
mod images;
mod networks;
mod system;
mod tls;
mod volumes;

use crate::engine::{Engine, EngineError};
use http::{Request, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The API version served (docker 25's).
pub const API_VERSION: &str = "1.44";
/// The oldest version clients may ask for.
pub const MIN_API_VERSION: &str = "1.24";
/// Default listening address (root's; an ordinary user's is
/// `unix://$XDG_RUNTIME_DIR/berth/docker.sock`).
pub const DEFAULT_HOST: &str = "unix:///run/berth/docker.sock";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{op} {}: {err}", path.display())]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
}

/// `berth system service` options.
pub struct ServiceOpts {
    pub hosts: Vec<String>,
    /// Seconds without a connection after which the service exits (0: never).
    pub timeout: u64,
    /// Group owning the socket.
    pub group: Option<String>,
    /// TLS with a client certificate signed by `tlscacert` (required for tcp listeners).
    pub tlsverify: bool,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
}

/// State shared by the connection threads.
pub struct Service {
    pub e: Engine,
    /// Attach connections waiting for their container's start: container id → the sender of
    /// the shim connection `start` makes before the container runs.
    pub pending_attach: Mutex<HashMap<String, Vec<containers::Pending>>>,
    pub execs: Mutex<HashMap<String, exec::ExecInstance>>,
    /// A private (0700) directory for the console sockets of `exec -t` (short: a socket path
    /// is limited to 108 bytes).
    pub console_dir: PathBuf,
    /// Exit codes seen by attach connections (the `wait` of an --rm container reads them).
    pub exits: Mutex<HashMap<String, i32>>,
    pub exited: std::sync::Condvar,
}

/// An API error: docker's status code and `{"message": ...}` body.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let status = match &e {
            EngineError::Invalid(_) => 400,
            EngineError::NoSuchContainer(_)
            | EngineError::NoSuchVolume(_)
            | EngineError::NoSuchNetwork(_)
            | EngineError::NoSuchPath(_) => 404,
            EngineError::Conflict(_) => 409,
            EngineError::Image(m) if m.contains("unable to find image") || m.contains("no such image") => 404,
            _ => 500,
        };
        let message = match &e {
            EngineError::NoSuchContainer(k) => format!("No such container: {k}"),
            EngineError::NoSuchVolume(k) => format!("get {k}: no such volume"),
            EngineError::Image(m) if status == 404 => {
                let name = m.split('"').nth(1).unwrap_or(m);
                format!("No such image: {name}")
            }
            _ => e.to_string(),
        };
        ApiError { status, message }
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub fn error_body(status: u16, msg: &str) -> Response {
    Response::json(status, &json!({ "message": msg }))
}

/// Parses a JSON body (an empty body is `{}`); a malformed one is a 400.
pub fn body_json(req: &Request) -> Result<Value, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

fn route(s: &Service, req: &Request, w: &mut UnixStream, r: &mut BufReader<UnixStream>) -> ApiResult {
    let path = req.path.trim_end_matches('/');
    let seg: Vec<&str> = path.split('/').skip(1).collect();
    let m = req.method.as_str();
    match (m, seg.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => system::ping(req),
        ("GET", ["version"]) => Ok(system::version()),
        ("GET", ["info"]) => Ok(system::info(s)),
        ("GET", ["events"]) => system::events(s, req, w),
        ("GET", ["system", "df"]) => system::df(s),
        ("GET", ["containers", "json"]) => containers::list(s, req),
        ("POST", ["containers", "create"]) => containers::create(s, req),
        ("POST", ["containers", "prune"]) => containers::prune(s),
        ("GET", ["containers", id, "json"]) => containers::inspect(s, id),
        ("POST", ["containers", id, "start"]) => containers::start(s, id),
        ("POST", ["containers", id, "stop"]) => containers::stop(s, req, id),
        ("POST", ["containers", id, "restart"]) => containers::restart(s, req, id),
        ("POST", ["containers", id, "kill"]) => containers::kill(s, req, id),
        ("POST", ["containers", id, "wait"]) => containers::wait(s, req, id, w),
        ("DELETE", ["containers", id]) => containers::remove(s, req, id),
        ("GET", ["containers", id, "logs"]) => containers::logs(s, req, id, w),
        ("POST", ["containers", id, "attach"]) => containers::attach(s, req, id, w, r),
        ("GET", ["containers", id, "changes"]) => files::changes(s, id),
        ("GET", ["containers", id, "export"]) => files::export(s, id, w),
        ("POST", ["commit"]) => files::commit(s, req),
        ("HEAD", ["containers", id, "archive"]) => files::archive_head(s, req, id),
        ("GET", ["containers", id, "archive"]) => files::archive_get(s, req, id, w),
        ("PUT", ["containers", id, "archive"]) => files::archive_put(s, req, id),
        ("POST", ["containers", id, "pause"]) => containers::pause(s, id),
        ("POST", ["containers", id, "unpause"]) => containers::unpause(s, id),
        ("POST", ["containers", id, "rename"]) => containers::rename(s, req, id),
        ("POST", ["containers", id, "update"]) => containers::update(s, req, id),
        ("POST", ["containers", id, "resize"]) => containers::resize(s, req, id),
        ("GET", ["containers", id, "top"]) => containers::top(s, req, id),
        ("GET", ["containers", id, "stats"]) => containers::stats(s, req, id, w),
        ("POST", ["containers", id, "exec"]) => exec::create(s, req, id),
        ("POST", ["exec", id, "start"]) => exec::start(s, req, id, w, r),
        ("POST", ["exec", id, "resize"]) => exec::resize(s, req, id),
        ("GET", ["exec", id, "json"]) => exec::inspect(s, id),
        ("GET", ["images", "json"]) => images::list(s, req),
        ("POST", ["images", "create"]) => images::create(s, req, w),
        ("POST", ["images", "prune"]) => images::prune(s, req),
        ("GET", ["images", "get"]) => images::get(s, &req.query.get("names").cloned().unwrap_or_default(), w),
        ("POST", ["images", "load"]) => images::load(s, req),
        ("GET", ["images", rest @ .., "get"]) if !rest.is_empty() => images::get(s, &[rest.join("/")], w),
        ("POST", ["images", rest @ .., "push"]) if !rest.is_empty() => images::push(s, req, &rest.join("/"), w),
        ("GET", ["images", rest @ .., "json"]) if !rest.is_empty() => images::inspect(s, &rest.join("/")),
        ("GET", ["images", rest @ .., "history"]) if !rest.is_empty() => images::history(s, &rest.join("/")),
        ("POST", ["images", rest @ .., "tag"]) if !rest.is_empty() => images::tag(s, req, &rest.join("/")),
        ("DELETE", ["images", rest @ ..]) if !rest.is_empty() => images::remove(s, req, &rest.join("/")),
        ("GET", ["networks"]) => networks::list(s, req),
        ("POST", ["networks", "create"]) => networks::create(s, req),
        ("POST", ["networks", "prune"]) => networks::prune(s),
        ("GET", ["networks", id]) => networks::inspect(s, id),
        ("DELETE", ["networks", id]) => networks::remove(s, id),
        ("POST", ["networks", id, "connect"]) => networks::connect(s, req, id),
        ("POST", ["networks", id, "disconnect"]) => networks::disconnect(s, req, id),
        ("GET", ["volumes"]) => volumes::list(s),
        ("POST", ["volumes", "create"]) => volumes::create(s, req),
        ("POST", ["volumes", "prune"]) => volumes::prune(s),
        ("GET", ["volumes", name]) => volumes::inspect(s, name),
        ("DELETE", ["volumes", name]) => volumes::remove(s, req, name),
        (_, ["swarm" | "nodes" | "services" | "tasks" | "secrets" | "configs", ..]) => {
            Err(ApiError::new(503, "This node is not a swarm manager: berth does not do swarm mode"))
        }
        // Names keep their slashes (`docker inspect a/b:1` asks for a plugin too).
        ("GET", ["plugins", rest @ .., "json"]) if !rest.is_empty() => {
            Err(ApiError::new(404, format!("plugin \"{}\" not found", rest.join("/"))))
        }
        (_, ["plugins", ..]) => Err(ApiError::new(501, "berth does not do plugins")),
        ("POST", ["auth"]) => images::auth(req),
        ("POST", ["build"]) => build::build(s, req, w),
        ("GET", ["distribution", rest @ .., "json"]) if !rest.is_empty() => images::distribution(req, &rest.join("/")),
        (_, ["session"] | ["grpc", ..]) => Err(ApiError::new(
            501,
            "berth does not serve BuildKit sessions (/session, /grpc): it builds with docker's classic builder (DOCKER_BUILDKIT=0, or a docker CLI without buildx)",
        )),
        (_, ["build"] | ["distribution", ..]) => {
            Err(ApiError::new(405, format!("{} {path}: method not allowed", req.method)))
        }
        _ => Err(ApiError::new(404, format!("page not found: {} {}", req.method, req.path))),
    }
}

fn handle(s: &Service, req: &Request, w: &mut UnixStream, r: &mut BufReader<UnixStream>) -> Response {
    if let Some(v) = &req.version {
        if version_lt(v, MIN_API_VERSION) {
            return error_body(
                400,
                &format!("client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"),
            );
        }
    }
    let resp = match route(s, req, w, r) {
        Ok(resp) => resp,
        Err(e) => error_body(e.status, &e.message),
    };
    if s.e.debug {
        let status = match &resp {
            Response::Full { status, .. } => status.to_string(),
            Response::Done => "stream".into(),
        };
        eprintln!("api: {} {} {:?} -> {status}", req.method, req.path, req.query);
    }
    resp
}

fn version_lt(a: &str, b: &str) -> bool {
    let p = |s: &str| s.split('.').map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    p(a) < p(b)
}

/// Makes the listening socket at `path`: its directory created (0755), a stale socket
/// replaced, anything else (a symlink, a file, a live socket) refused; mode 0660.
fn listen_unix(path: &Path, group: Option<u32>) -> Result<UnixListener, ServiceError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |err| ServiceError::Io { op, path: p, err }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServiceError::Invalid(format!("{}: another service listens there", path.display())));
            }
            std::fs::remove_file(path).map_err(io("remove stale socket", path))?;
        }
        Ok(_) => {
            return Err(ServiceError::Invalid(format!(
                "{}: exists and is not a socket (refusing to replace it)",
                path.display()
            )))
        }
        Err(_) => {}
    }
    // bind() does not follow a symlink at the path: it fails with EADDRINUSE.
    let l = UnixListener::bind(path).map_err(io("bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io("chmod", path))?;
    if let Some(gid) = group {
        std::os::unix::fs::lchown(path, None, Some(gid)).map_err(io("chown", path))?;
    }
    Ok(l)
}

fn group_id(name: &str) -> Result<u32, ServiceError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let data = std::fs::read_to_string("/etc/group").map_err(|err| ServiceError::Io {
        op: "read",
        path: "/etc/group".into(),
        err,
    })?;
    data.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok()).flatten()
        })
        .ok_or_else(|| ServiceError::Invalid(format!("group {name:?} not found in /etc/group")))
}

/// Whether `pid` is a live (not zombie) berth process.
fn service_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let (comm, rest) = match (stat.find('('), stat.rfind(')')) {
        (Some(a), Some(b)) if a < b => (&stat[a + 1..b], &stat[b + 1..]),
        _ => return false,
    };
    comm == "berth" && !rest.trim_start().starts_with('Z')
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Runs the service until SIGTERM/SIGINT (or `timeout` idle seconds); the sockets are removed
/// on the way out.
pub fn serve(e: Engine, o: ServiceOpts) -> Result<(), ServiceError> {
    // root: /run/berth; an ordinary user: $XDG_RUNTIME_DIR/berth (the socket and the console
    // sockets of exec -t).
    // (An ordinary user's service runs in the user's namespace, where it is uid 0.)
    let ordinary = crate::unprivileged::active() || crate::unprivileged::needed();
    let run_dir = if !ordinary {
        PathBuf::from("/run/berth")
    } else {
        crate::unprivileged::api_dir().map_err(|e| ServiceError::Invalid(e.to_string()))?
    };
    let hosts = if !o.hosts.is_empty() {
        o.hosts.clone()
    } else if !ordinary {
        vec![DEFAULT_HOST.to_string()]
    } else {
        vec![format!("unix://{}", run_dir.join("docker.sock").display())]
    };
    let mut paths = Vec::new();
    let mut tcp = Vec::new();
    for h in &hosts {
        if let Some(p) = h.strip_prefix("unix://") {
            if !p.starts_with('/') {
                return Err(ServiceError::Invalid(format!("--host {h}: the socket path must be absolute")));
            }
            paths.push(PathBuf::from(p));
        } else if let Some(addr) = h.strip_prefix("tcp://") {
            tcp.push((h.clone(), addr.to_string()));
        } else {
            return Err(ServiceError::Invalid(format!(
                "--host {h}: unix:///path and tcp://HOST:PORT are the supported addresses"
            )));
        }
    }
    let tls_cfg = match (&o.tlscacert, &o.tlscert, &o.tlskey) {
        _ if tcp.is_empty() => None,
        (Some(ca), Some(cert), Some(key)) if o.tlsverify => Some(tls::server_config(ca, cert, key)?),
        _ => {
            return Err(ServiceError::Invalid(format!(
                "--host {}: a tcp listener needs --tlsverify with --tlscacert, --tlscert and --tlskey (plain tcp is refused)",
                tcp[0].0
            )))
        }
    };
    let mut tcp_listeners = Vec::new();
    for (h, addr) in &tcp {
        let l = std::net::TcpListener::bind(addr.as_str()).map_err(|err| ServiceError::Io {
            op: "bind",
            path: PathBuf::from(h),
            err,
        })?;
        let _ = l.set_nonblocking(true);
        tcp_listeners.push(l);
    }
    let gid = o.group.as_deref().map(group_id).transpose()?;
    // SIGTERM/SIGINT set a flag the accept loop reads (a handler, not a blocked mask: the
    // processes exec starts inherit the mask, and handlers are reset by execve).
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs an async-signal-safe handler (one atomic store).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let mut listeners = Vec::new();
    for p in &paths {
        match listen_unix(p, gid) {
            Ok(l) => listeners.push(l),
            Err(err) => {
                for q in &paths[..listeners.len()] {
                    let _ = std::fs::remove_file(q);
                }
                return Err(err);
            }
        }
    }
    for l in &listeners {
        let _ = l.set_nonblocking(true);
    }
    // Console directories of services that were killed (their pid gone) are removed first.
    if let Ok(rd) = std::fs::read_dir(&run_dir) {
        for d in rd.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("api.").and_then(|p| p.parse::<u32>().ok()) {
                if !service_alive(pid) {
                    let _ = std::fs::remove_dir_all(d.path());
                }
            }
        }
    }
    let console_dir = run_dir.join(format!("api.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&console_dir);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&console_dir).map_err(|err| ServiceError::Io {
        op: "create",
        path: console_dir.clone(),
        err,
    })?;
    let svc = Arc::new(Service {
        e,
        pending_attach: Mutex::new(HashMap::new()),
        execs: Mutex::new(HashMap::new()),
        console_dir: console_dir.clone(),
        exits: Mutex::new(HashMap::new()),
        exited: std::sync::Condvar::new(),
    });
    let active = Arc::new(AtomicUsize::new(0));
    let mut last = Instant::now();
    let idle = (o.timeout > 0).then(|| Duration::from_secs(o.timeout));
    'outer: loop {
        let mut fds: Vec<libc::pollfd> = listeners
            .iter()
            .map(|l| l.as_raw_fd())
            .chain(tcp_listeners.iter().map(|l| l.as_raw_fd()))
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        crate::shim::sys::poll(&mut fds, 200);
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        for l in &listeners {
            while let Ok((c, _)) = l.accept() {
                let _ = c.set_nonblocking(false);
                last = Instant::now();
                let (svc, mine) = (svc.clone(), active.clone());
                active.fetch_add(1, Ordering::SeqCst);
                let spawned = std::thread::Builder::new().name("api-conn".into()).spawn(move || {
                    http::serve_conn(c, &|req, w, r| handle(&svc, req, w, r));
                    mine.fetch_sub(1, Ordering::SeqCst);
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        for l in &tcp_listeners {
            let Some(cfg) = tls_cfg.clone() else { break };
            while let Ok((c, _)) = l.accept() {
                let _ = c.set_nonblocking(false);
                last = Instant::now();
                let (svc, mine, cfg) = (svc.clone(), active.clone(), cfg.clone());
                active.fetch_add(1, Ordering::SeqCst);
                let spawned = std::thread::Builder::new().name("api-tls".into()).spawn(move || {
                    tls::serve_conn(c, cfg, move |u| http::serve_conn(u, &|req, w, r| handle(&svc, req, w, r)));
                    mine.fetch_sub(1, Ordering::SeqCst);
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        if active.load(Ordering::SeqCst) > 0 {
            last = Instant::now();
        }
        if let Some(d) = idle {
            if last.elapsed() >= d {
                break 'outer;
            }
        }
    }
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(&console_dir);
    Ok(())
}
