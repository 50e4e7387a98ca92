//! `/containers/...`: the API's container spec translated to the engine's (`CreateOpts`, what
//! `berth container create` parses its flags into) and the engine's typed results to docker's
//! JSON.

use super::http::{self, Chunked, Request, Response};
use super::{body_json, ApiError, ApiResult, Service};
use crate::engine::cli::CreateOpts;
use crate::engine::run::{self, Started, State};
use crate::engine::store::Containers;
use crate::engine::{adapt, ops, show, EngineError};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn cs(s: &Service) -> Containers {
    Containers::new(&s.e.data_root)
}

// ---------------------------------------------------------------------------------------------
// Typed reading of the request JSON: a field of the wrong type is a 400 naming it.

fn wrong(field: &str, want: &str) -> ApiError {
    ApiError::bad(format!("json: cannot unmarshal {field}: expected {want}"))
}

fn opt_str(v: &Value, k: &str) -> Result<Option<String>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong(k, "a string")),
    }
}

fn opt_bool(v: &Value, k: &str) -> Result<bool, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(wrong(k, "a boolean")),
    }
}

fn opt_i64(v: &Value, k: &str) -> Result<Option<i64>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| wrong(k, "an integer")),
        Some(_) => Err(wrong(k, "an integer")),
    }
}

fn str_list(v: &Value, k: &str) -> Result<Vec<String>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => {
            a.iter().map(|x| x.as_str().map(str::to_string).ok_or_else(|| wrong(k, "a list of strings"))).collect()
        }
        Some(_) => Err(wrong(k, "a list of strings")),
    }
}

/// A list of strings or one string (Cmd, Entrypoint); None when absent or null.
fn str_or_list(v: &Value, k: &str) -> Result<Option<Vec<String>>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(_) => str_list(v, k).map(Some),
    }
}

fn obj<'a>(v: &'a Value, k: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(wrong(k, "an object")),
    }
}

/// Translates docker's create body (Config with HostConfig and NetworkingConfig) to the
/// engine's container options.
pub fn create_opts(body: &Value, name: Option<String>) -> Result<CreateOpts, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad("invalid JSON body: expected an object"));
    }
    let null = Value::Null;
    let hc = body.get("HostConfig").unwrap_or(&null);
    if !hc.is_null() && !hc.is_object() {
        return Err(wrong("HostConfig", "an object"));
    }
    let image =
        opt_str(body, "Image")?.filter(|i| !i.is_empty()).ok_or_else(|| ApiError::bad("no image given (Image)"))?;
    let mut c = CreateOpts { name, restart: "no".into(), pull: "never".into(), ..Default::default() };
    c.tty = opt_bool(body, "Tty")?;
    c.interactive = opt_bool(body, "OpenStdin")?;
    c.env = str_list(body, "Env")?;
    c.workdir = opt_str(body, "WorkingDir")?.filter(|w| !w.is_empty());
    c.user = opt_str(body, "User")?.filter(|u| !u.is_empty());
    c.hostname = opt_str(body, "Hostname")?.filter(|h| !h.is_empty());
    c.stop_signal = opt_str(body, "StopSignal")?.filter(|h| !h.is_empty());
    c.stop_timeout = opt_i64(body, "StopTimeout")?;
    let cmd = str_or_list(body, "Cmd")?;
    match str_or_list(body, "Entrypoint")? {
        Some(ep) => {
            let mut it = ep.into_iter();
            c.entrypoint = Some(it.next().unwrap_or_default());
            c.args = std::iter::once(image).chain(it).chain(cmd.unwrap_or_default()).collect();
        }
        None => c.args = std::iter::once(image).chain(cmd.unwrap_or_default()).collect(),
    }
    if let Some(l) = obj(body, "Labels")? {
        for (k, v) in l {
            c.label.push(format!("{k}={}", v.as_str().ok_or_else(|| wrong("Labels", "string values"))?));
        }
    }
    if let Some(p) = obj(body, "ExposedPorts")? {
        c.expose.extend(p.keys().cloned());
    }
    let binds = str_list(hc, "Binds")?;
    let mut dests: Vec<String> = binds.iter().filter_map(|b| b.split(':').nth(1).map(str::to_string)).collect();
    if let Some(Value::Array(ms)) = hc.get("Mounts") {
        dests.extend(ms.iter().filter_map(|m| m.get("Target").and_then(Value::as_str).map(str::to_string)));
    }
    if let Some(vols) = obj(body, "Volumes")? {
        // Anonymous volumes, but for destinations a bind or mount covers.
        c.volume.extend(vols.keys().filter(|d| !dests.contains(d)).cloned());
    }
    c.volume.extend(binds);
    if let Some(Value::Array(ms)) = hc.get("Mounts") {
        for m in ms {
            let t = opt_str(m, "Type")?.unwrap_or_else(|| "volume".into());
            let target = opt_str(m, "Target")?.ok_or_else(|| ApiError::bad("Mounts: Target is required"))?;
            let mut spec = format!("type={t},target={target}");
            if let Some(src) = opt_str(m, "Source")?.filter(|s| !s.is_empty()) {
                spec.push_str(&format!(",source={src}"));
            }
            if opt_bool(m, "ReadOnly")? {
                spec.push_str(",readonly");
            }
            c.mount.push(spec);
        }
    } else if hc.get("Mounts").is_some_and(|m| !m.is_null()) {
        return Err(wrong("Mounts", "a list"));
    }
    if let Some(t) = obj(hc, "Tmpfs")? {
        for (k, v) in t {
            match v.as_str() {
                Some("") | None => c.tmpfs.push(k.clone()),
                Some(o) => c.tmpfs.push(format!("{k}:{o}")),
            }
        }
    }
    if let Some(pb) = obj(hc, "PortBindings")? {
        for (port, binds) in pb {
            let binds = binds.as_array().cloned().unwrap_or_default();
            if binds.is_empty() {
                c.publish.push(port.clone());
            }
            for b in binds {
                let ip = opt_str(&b, "HostIp")?.unwrap_or_default();
                let hp = opt_str(&b, "HostPort")?.unwrap_or_default();
                c.publish.push(match (ip.is_empty(), hp.is_empty()) {
                    (true, true) => port.clone(),
                    (true, false) => format!("{hp}:{port}"),
                    (false, _) => format!("{ip}:{hp}:{port}"),
                });
            }
        }
    }
    c.publish_all = opt_bool(hc, "PublishAllPorts")?;
    let mut network =
        opt_str(hc, "NetworkMode")?.filter(|n| !n.is_empty() && n != "default").unwrap_or("bridge".into());
    if let Some(nc) = body.get("NetworkingConfig").and_then(|n| n.get("EndpointsConfig")).and_then(Value::as_object) {
        if let Some((net, ep)) = nc.iter().next() {
            if network == "bridge" {
                network = net.clone();
            }
            c.network_alias = str_list(ep, "Aliases")?;
            if let Some(ip) = ep.get("IPAMConfig").map(|i| opt_str(i, "IPv4Address")).transpose()?.flatten() {
                c.ip = Some(ip).filter(|i| !i.is_empty());
            }
        }
    }
    c.network = network;
    if let Some(rp) = obj(hc, "RestartPolicy")? {
        let v = Value::Object(rp.clone());
        let n = opt_str(&v, "Name")?.unwrap_or_default();
        let max = opt_i64(&v, "MaximumRetryCount")?.unwrap_or(0);
        c.restart = match n.as_str() {
            "" | "no" => "no".into(),
            "on-failure" if max > 0 => format!("on-failure:{max}"),
            other => other.to_string(),
        };
    }
    let pos = |k: &str| -> Result<Option<i64>, ApiError> { Ok(opt_i64(hc, k)?.filter(|n| *n != 0)) };
    c.memory = pos("Memory")?.map(|n| n.to_string());
    c.memory_swap = pos("MemorySwap")?.map(|n| n.to_string());
    c.cpus = pos("NanoCpus")?.map(|n| format!("{}", n as f64 / 1e9));
    c.pids_limit = pos("PidsLimit")?;
    c.shm_size = pos("ShmSize")?.map(|n| n.to_string());
    c.cap_add = str_list(hc, "CapAdd")?;
    c.cap_drop = str_list(hc, "CapDrop")?;
    c.privileged = opt_bool(hc, "Privileged")?;
    c.security_opt = str_list(hc, "SecurityOpt")?;
    c.init = opt_bool(hc, "Init")?;
    c.rm = opt_bool(hc, "AutoRemove")?;
    c.read_only = opt_bool(hc, "ReadonlyRootfs")?;
    c.dns = str_list(hc, "Dns")?;
    c.dns_search = str_list(hc, "DnsSearch")?;
    c.dns_option = str_list(hc, "DnsOptions")?;
    c.group_add = str_list(hc, "GroupAdd")?;
    c.add_host = str_list(hc, "ExtraHosts")?;
    c.oom_score_adj = opt_i64(hc, "OomScoreAdj")?.filter(|n| *n != 0).map(|n| n as i32);
    for (k, field) in [("PidMode", &mut c.pid), ("IpcMode", &mut c.ipc), ("UTSMode", &mut c.uts)] {
        *field = opt_str(hc, k)?.filter(|m| !m.is_empty() && m != "private" && m != "shareable");
    }
    if let Some(sys) = obj(hc, "Sysctls")? {
        for (k, v) in sys {
            c.sysctl.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(Value::Array(us)) = hc.get("Ulimits") {
        for u in us {
            let n = opt_str(u, "Name")?.unwrap_or_default();
            c.ulimit.push(format!("{n}={}:{}", opt_i64(u, "Soft")?.unwrap_or(0), opt_i64(u, "Hard")?.unwrap_or(0)));
        }
    }
    if let Some(Value::Array(ds)) = hc.get("Devices") {
        for d in ds {
            let host = opt_str(d, "PathOnHost")?.unwrap_or_default();
            let inside = opt_str(d, "PathInContainer")?.unwrap_or_else(|| host.clone());
            let perms = opt_str(d, "CgroupPermissions")?.unwrap_or_else(|| "rwm".into());
            c.device.push(format!("{host}:{inside}:{perms}"));
        }
    }
    if let Some(lc) = obj(hc, "LogConfig")? {
        let t = lc.get("Type").and_then(Value::as_str).unwrap_or("");
        if !matches!(t, "" | "json-file" | "local") {
            return Err(ApiError::bad(format!("logging driver {t:?} is not supported (json-file only)")));
        }
    }
    Ok(c)
}

pub fn create(s: &Service, req: &Request) -> ApiResult {
    let body = body_json(req)?;
    let name = req.q("name").filter(|n| !n.is_empty()).map(|n| n.trim_start_matches('/').to_string());
    let c = create_opts(&body, name)?;
    let size = body
        .get("HostConfig")
        .and_then(|h| h.get("ConsoleSize"))
        .and_then(Value::as_array)
        .and_then(|a| Some((a.first()?.as_u64()? as u16, a.get(1)?.as_u64()? as u16)))
        .filter(|(h, w)| *h > 0 && *w > 0);
    let mut c = c;
    c.console_size = size;
    let rec = run::create(&s.e, &cs(s), &c)?;
    Ok(Response::json(201, &json!({"Id": rec.id, "Warnings": []})))
}

/// Docker's list filters (`{"status":["running"]}` or `{"label":{"a=b":true}}`) as the
/// engine's `key=value` ones.
pub(super) fn filters(req: &Request) -> Result<Vec<String>, ApiError> {
    let Some(f) = req.q("filters").filter(|f| !f.is_empty()) else { return Ok(Vec::new()) };
    let v: Value = serde_json::from_str(f).map_err(|e| ApiError::bad(format!("invalid filters: {e}")))?;
    let mut out = Vec::new();
    for (k, vals) in v.as_object().ok_or_else(|| ApiError::bad("invalid filters: expected an object"))? {
        match vals {
            Value::Array(a) => out.extend(a.iter().filter_map(Value::as_str).map(|x| format!("{k}={x}"))),
            Value::Object(m) => out.extend(m.keys().map(|x| format!("{k}={x}"))),
            _ => return Err(ApiError::bad(format!("invalid filter {k:?}"))),
        }
    }
    Ok(out)
}

fn ports_json(r: &crate::engine::store::Record, running: bool) -> Vec<Value> {
    let mut out = Vec::new();
    if !running {
        return out;
    }
    for p in &r.net.ports {
        let Some((host, cont)) = p.split_once("->") else { continue };
        let (ip, hp) = host.rsplit_once(':').unwrap_or(("", host));
        let (cp, proto) = cont.split_once('/').unwrap_or((cont, "tcp"));
        out.push(json!({"IP": ip, "PrivatePort": cp.parse::<u16>().unwrap_or(0), "PublicPort": hp.parse::<u16>().unwrap_or(0), "Type": proto}));
    }
    out
}

pub fn list(s: &Service, req: &Request) -> ApiResult {
    let cs = cs(s);
    let last = req.q("limit").and_then(|l| l.parse::<i64>().ok()).filter(|n| *n > 0).map(|n| n as usize);
    let recs = show::select(&s.e, &cs, req.flag("all"), &filters(req)?, last)?;
    let out: Vec<Value> = recs
        .iter()
        .map(|(r, st)| {
            let full = show::inspect_json(&s.e, &cs, r, st);
            let mut labels = r.image_config.labels.clone().unwrap_or_default();
            labels.extend(r.spec.labels.clone());
            json!({
                "Id": r.id,
                "Names": [format!("/{}", r.name)],
                "Image": r.image,
                "ImageID": r.image_id,
                "Command": show::command_text(r, false),
                "Created": adapt::parse_rfc3339(&r.created).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()).unwrap_or(0),
                "Ports": ports_json(r, st.state == State::Running),
                "Labels": labels,
                "State": st.state.as_str(),
                "Status": show::status_text(st),
                "HostConfig": {"NetworkMode": r.spec.network},
                "NetworkSettings": {"Networks": full["NetworkSettings"]["Networks"].clone()},
                "Mounts": full["Mounts"].clone(),
            })
        })
        .collect();
    Ok(Response::json(200, &Value::Array(out)))
}

pub fn inspect(s: &Service, key: &str) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    let st = run::status(&s.e, &cs, &rec.id);
    Ok(Response::json(200, &show::inspect_json(&s.e, &cs, &rec, &st)))
}

/// Someone waiting for a container's start to hand over its first attach connection: an
/// attach (relays it) or a wait (reads its exit frame).
pub struct Pending {
    pub tx: std::sync::mpsc::Sender<UnixStream>,
    pub attach: bool,
}

pub fn start(s: &Service, key: &str) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    if let Ok(mut m) = s.exits.lock() {
        m.remove(&rec.id);
    }
    let mut waiting = s.pending_attach.lock().map(|mut m| m.remove(&rec.id)).ok().flatten().unwrap_or_default();
    // An attach first: it relays the output (and records the exit code for the waits).
    waiting.sort_by_key(|p| !p.attach);
    match run::start(&s.e, &cs, &rec.id, !waiting.is_empty())? {
        Started::AlreadyRunning => Ok(Response::empty(304)),
        Started::Spawned { sock, .. } => {
            // The first one waiting gets the connection made before the container ran; the
            // others connect to the shim's socket themselves.
            let mut sock = sock;
            for p in waiting {
                if let Some(c) = sock.take() {
                    if let Err(back) = p.tx.send(c) {
                        sock = Some(back.0);
                    }
                }
            }
            Ok(Response::empty(204))
        }
    }
}

fn stop_time(req: &Request) -> Result<Option<i64>, ApiError> {
    req.q("t").map(|t| t.parse::<i64>().map_err(|_| ApiError::bad(format!("invalid t {t:?}")))).transpose()
}

pub fn stop(s: &Service, req: &Request, key: &str) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    let st = run::status(&s.e, &cs, &rec.id);
    if !matches!(st.state, State::Running | State::Restarting) {
        return Ok(Response::empty(304));
    }
    run::stop(&s.e, &cs, &rec, req.q("signal").filter(|x| !x.is_empty()), stop_time(req)?)?;
    Ok(Response::empty(204))
}

pub fn restart(s: &Service, req: &Request, key: &str) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    run::stop(&s.e, &cs, &rec, req.q("signal").filter(|x| !x.is_empty()), stop_time(req)?)?;
    run::start(&s.e, &cs, &rec.id, false)?;
    Ok(Response::empty(204))
}

pub fn kill(s: &Service, req: &Request, key: &str) -> ApiResult {
    let sig = adapt::parse_signal(req.q("signal").filter(|x| !x.is_empty()).unwrap_or("KILL"))?;
    match ops::kill(&s.e, &cs(s), key, sig) {
        Err(EngineError::Conflict(_)) => {
            Err(ApiError::new(409, format!("Cannot kill container: {key}: Container {key} is not running")))
        }
        r => r.map(|_| Response::empty(204)).map_err(Into::into),
    }
}

pub fn remove(s: &Service, req: &Request, key: &str) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    run::remove(&s.e, &cs, &rec, req.flag("force"), req.flag("v"))?;
    Ok(Response::empty(204))
}

pub fn prune(s: &Service) -> ApiResult {
    let cs = cs(s);
    cs.sweep();
    let mut deleted = Vec::new();
    for rec in cs.all() {
        let st = run::status(&s.e, &cs, &rec.id);
        if matches!(st.state, State::Running | State::Restarting) || st.shim_alive {
            continue;
        }
        if run::remove(&s.e, &cs, &rec, false, false).is_ok() {
            deleted.push(rec.id);
        }
    }
    Ok(Response::json(200, &json!({"ContainersDeleted": deleted, "SpaceReclaimed": 0})))
}

/// Whether the client of `w` has closed its connection (a wait nobody reads any more ends).
fn client_gone(w: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = [libc::pollfd { fd: w.as_raw_fd(), events: 0, revents: 0 }];
    crate::shim::sys::poll(&mut p, 0) > 0 && p[0].revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Reads an attach connection's frames until the exit frame: the exit code. None when the
/// connection ends first or the client (`w`) goes away.
fn read_exit(mut c: &UnixStream, w: &UnixStream) -> Option<i32> {
    use crate::shim::proto;
    use std::os::fd::AsRawFd;
    let mut rbuf: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let mut p = [
            libc::pollfd { fd: c.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: w.as_raw_fd(), events: 0, revents: 0 },
        ];
        crate::shim::sys::poll(&mut p, -1);
        if p[1].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return None;
        }
        if p[0].revents == 0 {
            continue;
        }
        let n = match c.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        rbuf.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let proto::Next::Frame(t, rg) = proto::next(&rbuf[start..]) {
            if t == proto::EXIT {
                return Some(proto::be_i32(&rbuf[start + rg.start..start + rg.end]).unwrap_or(255));
            }
            start += rg.end;
        }
        rbuf.drain(..start);
    }
}

fn record_exit(s: &Service, id: &str, code: i32) {
    if let Ok(mut m) = s.exits.lock() {
        m.insert(id.to_string(), code);
    }
    s.exited.notify_all();
}

fn seen_exit(s: &Service, id: &str) -> Option<i32> {
    s.exits.lock().ok().and_then(|m| m.get(id).copied())
}

/// The exit code of the container's next exit (it is created or running).
fn next_exit(s: &Service, cs: &Containers, rec: &crate::engine::store::Record, w: &UnixStream) -> Option<i32> {
    let dir = cs.path(&rec.id);
    let fresh = |s: &Service| seen_exit(s, &rec.id);
    let st = run::status(&s.e, cs, &rec.id);
    if st.state == State::Created && !st.shim_alive {
        // Not started: the start hands over its attach connection (unless an attach takes it).
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut m) = s.pending_attach.lock() {
            m.entry(rec.id.clone()).or_default().push(Pending { tx, attach: false });
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(c) => {
                    if let Some(code) = read_exit(&c, w) {
                        record_exit(s, &rec.id, code);
                        return Some(code);
                    }
                    if client_gone(w) {
                        return None;
                    }
                    break;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return await_code(s, &rec.id, &dir, w),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(code) = fresh(s) {
                        return Some(code);
                    }
                    if !dir.exists() {
                        return Some(0);
                    }
                    if client_gone(w) {
                        return None;
                    }
                    if adapt::shim_state(&dir).is_some() {
                        break;
                    }
                }
            }
        }
    }
    if let Ok(c) = crate::shim::sys::connect(&crate::shim::attach_sock(&dir)) {
        if let Some(code) = read_exit(&c, w) {
            return Some(code);
        }
    }
    await_code(s, &rec.id, &dir, w)
}

/// The exit code once an attach recorded it or the shim's state says exited; 0 when the
/// container is gone (--rm) without either.
fn await_code(s: &Service, id: &str, dir: &std::path::Path, w: &UnixStream) -> Option<i32> {
    let mut gone_since: Option<std::time::Instant> = None;
    loop {
        if let Some(code) = seen_exit(s, id) {
            return Some(code);
        }
        if let Some(st) = adapt::shim_state(dir) {
            if st.status == adapt::ShimStatus::Exited || !adapt::shim_alive(&st) && st.exit_code.is_some() {
                return Some(st.exit_code.unwrap_or(255));
            }
        }
        if !dir.exists() && gone_since.get_or_insert_with(std::time::Instant::now).elapsed() > Duration::from_secs(2) {
            return Some(0);
        }
        if client_gone(w) {
            return None;
        }
        if let Ok(g) = s.exits.lock() {
            let _ = s.exited.wait_timeout(g, Duration::from_millis(50));
        }
    }
}

/// `wait`: the headers go out at once; the body when the condition is met.
pub fn wait(s: &Service, req: &Request, key: &str, w: &mut UnixStream) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    let cond = req.q("condition").filter(|c| !c.is_empty()).unwrap_or("not-running");
    if !matches!(cond, "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad(format!("invalid condition {cond:?}")));
    }
    let st = run::status(&s.e, &cs, &rec.id);
    if http::start_stream(w, 200, "application/json").is_err() {
        return Ok(Response::Done);
    }
    let dir = cs.path(&rec.id);
    let code = match (cond, st.state) {
        ("not-running", State::Created) if !st.shim_alive => 0,
        ("not-running" | "removed", State::Exited) => st.exit_code.unwrap_or(0),
        _ => match next_exit(s, &cs, &rec, w) {
            Some(c) => c,
            // The client went away: nobody to answer.
            None => return Ok(Response::Done),
        },
    };
    if cond == "removed" {
        while dir.exists() && !client_gone(w) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut c = Chunked(w);
    let _ = c.send(format!("{}\n", json!({"StatusCode": code, "Error": null})).as_bytes());
    let _ = c.finish();
    Ok(Response::Done)
}

/// docker's stream header: stream type (1 stdout, 2 stderr), three zero bytes, big-endian
/// length.
pub fn mux(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

pub fn logs(s: &Service, req: &Request, key: &str, w: &mut UnixStream) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    let (out, err) = (req.flag("stdout"), req.flag("stderr"));
    if !out && !err {
        return Err(ApiError::bad("you must choose at least one stream"));
    }
    let tail = match req.q("tail") {
        None | Some("all") | Some("") => None,
        Some(n) => n.parse::<i64>().ok().filter(|n| *n >= 0).map(|n| n as usize),
    };
    let since = req.q("since").filter(|x| !x.is_empty() && *x != "0");
    let until = req.q("until").filter(|x| !x.is_empty() && *x != "0");
    let tty = rec.spec.tty;
    let ctype = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    if http::start_stream(w, 200, ctype).is_err() {
        return Ok(Response::Done);
    }
    // The client's socket, watched while the log is silent: a client that leaves ends a follow.
    let watch = w.try_clone().ok();
    let o = adapt::LogsOpts {
        follow: req.flag("follow"),
        tail,
        since,
        until,
        timestamps: req.flag("timestamps"),
        reader: watch.as_ref().map(std::os::fd::AsFd::as_fd),
    };
    let mut c = Chunked(w);
    let _ = adapt::logs_to(&cs.path(&rec.id), &o, &mut |is_err: bool, b: &[u8]| {
        if (is_err && !err) || (!is_err && !out) {
            return Ok(());
        }
        if tty {
            c.send(b)
        } else {
            c.send(&mux(if is_err { 2 } else { 1 }, b))
        }
    });
    let _ = c.finish();
    Ok(Response::Done)
}

/// Relays a shim attach connection and a hijacked client connection until the container's
/// output ends: output as docker's multiplexed stream (raw with a tty), input as stdin (the
/// client's half-close closes the container's stdin).
pub fn relay_attach(
    shim: UnixStream,
    client: &mut UnixStream,
    r: &mut BufReader<UnixStream>,
    stdin: bool,
    tty: bool,
    (want_out, want_err): (bool, bool),
) -> Option<i32> {
    use crate::shim::proto;
    let mut code = None;
    let pending = r.buffer().to_vec();
    r.consume(pending.len());
    let input = match (stdin, shim.try_clone(), client.try_clone()) {
        (true, Ok(mut to_shim), Ok(mut from_client)) => Some(std::thread::spawn(move || {
            if !pending.is_empty() && to_shim.write_all(&proto::frame(proto::STDIN, &pending)).is_err() {
                return;
            }
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match from_client.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = to_shim.write_all(&proto::frame(proto::STDIN, b""));
                        return;
                    }
                    Ok(n) => {
                        if to_shim.write_all(&proto::frame(proto::STDIN, &buf[..n])).is_err() {
                            return;
                        }
                    }
                }
            }
        })),
        _ => None,
    };
    let mut rd = &shim;
    let mut rbuf: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    'outer: loop {
        // The client leaving ends the relay even while the container is silent.
        let mut p = [
            libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&shim), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&*client), events: 0, revents: 0 },
        ];
        crate::shim::sys::poll(&mut p, -1);
        if p[1].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            break;
        }
        if p[0].revents == 0 {
            continue;
        }
        let n = match rd.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        rbuf.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let proto::Next::Frame(t, rg) = proto::next(&rbuf[start..]) {
            let data = &rbuf[start + rg.start..start + rg.end];
            let sent = match t {
                proto::STDOUT if want_out => client.write_all(&if tty { data.to_vec() } else { mux(1, data) }),
                proto::STDERR if want_err => client.write_all(&if tty { data.to_vec() } else { mux(2, data) }),
                proto::EXIT => {
                    code = proto::be_i32(data);
                    break 'outer;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                break 'outer;
            }
            start += rg.end;
        }
        rbuf.drain(..start);
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = shim.shutdown(std::net::Shutdown::Both);
    if let Some(t) = input {
        let _ = t.join();
    }
    code
}

pub fn attach(s: &Service, req: &Request, key: &str, w: &mut UnixStream, r: &mut BufReader<UnixStream>) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    let st = run::status(&s.e, &cs, &rec.id);
    let dir = cs.path(&rec.id);
    let streams = (req.flag("stdout"), req.flag("stderr"));
    let stdin = req.flag("stdin") && rec.spec.stdin_open;
    let shim = if st.state == State::Created && !st.shim_alive {
        // Not started yet: the start hands over the connection it makes before the container
        // runs, so no output is missed.
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut m) = s.pending_attach.lock() {
            m.entry(rec.id.clone()).or_default().push(Pending { tx, attach: true });
        }
        if http::upgrade(w, req, ctype(rec.spec.tty)).is_err() {
            return Ok(Response::Done);
        }
        match rx.recv() {
            Ok(c) => c,
            Err(_) => match crate::shim::sys::connect(&crate::shim::attach_sock(&dir)) {
                Ok(c) => c,
                Err(_) => return Ok(Response::Done),
            },
        }
    } else {
        if st.state != State::Running {
            return Err(ApiError::new(409, "You cannot attach to a stopped container, start it first"));
        }
        let c = crate::shim::sys::connect(&crate::shim::attach_sock(&dir))
            .map_err(|e| ApiError::new(500, format!("connect to {}: {e}", crate::shim::attach_sock(&dir).display())))?;
        if http::upgrade(w, req, ctype(rec.spec.tty)).is_err() {
            return Ok(Response::Done);
        }
        c
    };
    if let Some(code) = relay_attach(shim, w, r, stdin, rec.spec.tty, streams) {
        record_exit(s, &rec.id, code);
    }
    Ok(Response::Done)
}

fn ctype(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

pub fn size_of(req: &Request) -> Result<(u16, u16), ApiError> {
    let n = |k: &str| -> Result<u16, ApiError> {
        req.q(k).unwrap_or("0").parse::<u16>().map_err(|_| ApiError::bad(format!("invalid {k} {:?}", req.q(k))))
    };
    Ok((n("h")?, n("w")?))
}

pub fn resize(s: &Service, req: &Request, key: &str) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    let (h, wd) = size_of(req)?;
    if run::status(&s.e, &cs, &rec.id).state != State::Running {
        return Err(ApiError::new(409, format!("Container {key} is not running")));
    }
    let path = crate::shim::attach_sock(&cs.path(&rec.id));
    let mut c = crate::shim::sys::connect(&path)
        .map_err(|e| ApiError::new(500, format!("connect to {}: {e}", path.display())))?;
    let _ = c.write_all(&resize_frame(h, wd));
    Ok(Response::empty(200))
}

fn resize_frame(h: u16, w: u16) -> Vec<u8> {
    let mut p = [0u8; 4];
    p[..2].copy_from_slice(&h.to_be_bytes());
    p[2..].copy_from_slice(&w.to_be_bytes());
    crate::shim::proto::frame(crate::shim::proto::RESIZE, &p)
}

pub fn top(s: &Service, req: &Request, key: &str) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    let st = run::status(&s.e, &cs, &rec.id);
    if st.state != State::Running {
        return Err(ApiError::new(409, format!("Container {} is not running", rec.id)));
    }
    let _ = req;
    let pids = adapt::runtime_pids(&s.e, &rec.id)?;
    let mut procs = Vec::new();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = stat
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("0")
            .to_string();
        let ppid = stat.lines().find_map(|l| l.strip_prefix("PPid:")).map(|l| l.trim().to_string()).unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        procs.push(json!([uid, pid.to_string(), ppid, cmd]));
    }
    Ok(Response::json(200, &json!({"Titles": ["UID", "PID", "PPID", "CMD"], "Processes": procs})))
}

/// `stats`: one reading (`stream=false`; with `one-shot` no second reading for the CPU
/// delta) or one a second until the container stops or the client goes.
pub fn stats(s: &Service, req: &Request, key: &str, w: &mut UnixStream) -> ApiResult {
    let cs = cs(s);
    let rec = cs.find(key)?;
    let stream = req.q("stream").is_none_or(|v| !matches!(v, "0" | "false" | "False"));
    if http::start_stream(w, 200, "application/json").is_err() {
        return Ok(Response::Done);
    }
    let mut c = Chunked(w);
    let mut prev: Option<Value> = None;
    loop {
        let st = run::status(&s.e, &cs, &rec.id);
        if !stream && prev.is_none() && !req.flag("one-shot") && st.state == State::Running {
            prev = Some(show::stats_api_json(&s.e, &rec, &st, None));
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let v = show::stats_api_json(&s.e, &rec, &st, prev.as_ref());
        if c.send(format!("{v}\n").as_bytes()).is_err() || !stream || st.state != State::Running {
            break;
        }
        prev = Some(v);
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = c.finish();
    Ok(Response::Done)
}

// ---------------------------------------------------------------------------------------------
// pause, unpause, rename, update (src/engine/manage.rs).

pub fn pause(s: &Service, key: &str) -> ApiResult {
    crate::engine::manage::pause(&s.e, &cs(s), key)?;
    Ok(Response::empty(204))
}

pub fn unpause(s: &Service, key: &str) -> ApiResult {
    crate::engine::manage::unpause(&s.e, &cs(s), key)?;
    Ok(Response::empty(204))
}

pub fn rename(s: &Service, req: &Request, key: &str) -> ApiResult {
    let new = req.q("name").filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad("name is required"))?;
    crate::engine::manage::rename(&s.e, &cs(s), key, new)?;
    Ok(Response::empty(204))
}

/// `POST /containers/{id}/update`: docker's UpdateConfig (its Resources, zero meaning
/// unchanged, and RestartPolicy) translated to the engine's update request.
pub fn update(s: &Service, req: &Request, key: &str) -> ApiResult {
    use crate::engine::manage::{self, UpdateReq};
    use crate::engine::resources::ResourceFlags;
    let v = body_json(req)?;
    let nz = |k: &str| -> Result<Option<i64>, ApiError> { Ok(opt_i64(&v, k)?.filter(|n| *n != 0)) };
    let pos = |k: &str| -> Result<Option<u64>, ApiError> {
        nz(k)?.map(|n| u64::try_from(n).map_err(|_| wrong(k, "a positive integer"))).transpose()
    };
    let res = ResourceFlags {
        cpu_shares: pos("CpuShares")?,
        cpu_period: pos("CpuPeriod")?,
        cpu_quota: nz("CpuQuota")?,
        cpu_rt_period: pos("CpuRealtimePeriod")?,
        cpu_rt_runtime: nz("CpuRealtimeRuntime")?,
        cpuset_cpus: opt_str(&v, "CpusetCpus")?.filter(|x| !x.is_empty()),
        cpuset_mems: opt_str(&v, "CpusetMems")?.filter(|x| !x.is_empty()),
        memory_reservation: nz("MemoryReservation")?.map(|n| n.to_string()),
        ..Default::default()
    };
    let memory = nz("Memory")?.map(|n| n.to_string());
    let memory_swap = nz("MemorySwap")?.map(|n| n.to_string());
    let cpus = nz("NanoCpus")?.map(|n| format!("{}", n as f64 / 1e9));
    let pids_limit = nz("PidsLimit")?;
    let restart = match v.get("RestartPolicy") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => {
            let name = opt_str(p, "Name")?.unwrap_or_default();
            let max = opt_i64(p, "MaximumRetryCount")?.unwrap_or(0);
            match (name.as_str(), max) {
                ("", _) => None,
                ("on-failure", n) if n > 0 => Some(format!("on-failure:{n}")),
                (n, _) => Some(n.to_string()),
            }
        }
        Some(_) => return Err(wrong("RestartPolicy", "an object")),
    };
    let u = UpdateReq {
        res: &res,
        memory: memory.as_deref(),
        memory_swap: memory_swap.as_deref(),
        cpus: cpus.as_deref(),
        pids_limit,
        restart: restart.as_deref(),
    };
    manage::update(&s.e, &cs(s), key, &u)?;
    Ok(Response::json(200, &json!({ "Warnings": [] })))
}
