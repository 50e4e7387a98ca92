//! `/_ping`, `/version`, `/info`.

use super::http::{self, Chunked, Request, Response};
use super::{ApiError, ApiResult, Service, API_VERSION, MIN_API_VERSION};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;

pub fn ping(req: &Request) -> ApiResult {
    let mut r = Response::text(200, if req.method == "HEAD" { "" } else { "OK" });
    if let Response::Full { headers, .. } = &mut r {
        headers.push(("Builder-Version".into(), "1".into()));
        headers.push(("Cache-Control".into(), "no-cache, no-store, must-revalidate".into()));
        headers.push(("Pragma".into(), "no-cache".into()));
    }
    Ok(r)
}

fn uname() -> (String, String) {
    let u = nix::sys::utsname::uname().ok();
    let rel = u.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let host = u.as_ref().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default();
    (rel, host)
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn version() -> Response {
    let (kernel, _) = uname();
    let v = env!("CARGO_PKG_VERSION");
    Response::json(
        200,
        &json!({
            "Platform": {"Name": "berth"},
            "Components": [{"Name": "Engine", "Version": v, "Details": {
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch(),
                "KernelVersion": kernel, "Experimental": "false"}}],
            "Version": v,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": arch(),
            "KernelVersion": kernel,
            "BuildTime": "",
        }),
    )
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
        .map(|k| k * 1024)
        .unwrap_or(0)
}

pub fn info(s: &Service) -> Response {
    let e = &s.e;
    let cs = crate::engine::store::Containers::new(&e.data_root);
    let (mut running, mut stopped) = (0, 0);
    let all = cs.all();
    for r in &all {
        match crate::engine::run::status(e, &cs, &r.id).state {
            crate::engine::run::State::Running | crate::engine::run::State::Restarting => running += 1,
            _ => stopped += 1,
        }
    }
    let images = crate::image::store::Store::open(&e.data_root)
        .and_then(|st| st.read_index())
        .map(|i| i.images.len())
        .unwrap_or(0);
    let (kernel, host) = uname();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    Response::json(
        200,
        &json!({
            "ID": "",
            "Containers": all.len(),
            "ContainersRunning": running,
            "ContainersPaused": 0,
            "ContainersStopped": stopped,
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": [],
            "DockerRootDir": e.data_root,
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"]},
            "MemoryLimit": true,
            "SwapLimit": true,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "PidsLimit": true,
            "IPv4Forwarding": true,
            "Debug": e.debug,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": crate::engine::adapt::now_rfc3339(),
            "LoggingDriver": "json-file",
            "CgroupDriver": if e.systemd_cgroup { "systemd" } else { "cgroupfs" },
            "CgroupVersion": if v2 { "2" } else { "1" },
            "KernelVersion": kernel,
            "OperatingSystem": "berth",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": mem_total(),
            "Name": host,
            "Labels": [],
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Runtimes": {"berth": {"path": e.exe}},
            "DefaultRuntime": "berth",
            "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Warnings": [],
        }),
    )
}

/// `GET /events`: the engine's event journal streamed as docker's JSON messages, one a line;
/// `since`/`until` (unix seconds, RFC 3339 or a duration before now) and `filters`.
pub fn events(s: &Service, req: &Request, w: &mut UnixStream) -> ApiResult {
    use crate::events::{self, Filter, Journal};
    let time = |k: &str| -> Result<Option<i64>, ApiError> {
        req.q(k)
            .filter(|t| !t.is_empty())
            .map(|t| events::parse_time(t).map_err(|e| ApiError::bad(e.to_string())))
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    let filter = Filter::parse(&super::containers::filters(req)?).map_err(|e| ApiError::bad(e.to_string()))?;
    http::start_stream(w, 200, "application/json").map_err(|e| ApiError::new(500, e.to_string()))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&*w);
    // The client gone (its end closed): the stream ends even while no event comes.
    let alive = || {
        let mut p = [libc::pollfd { fd, events: libc::POLLRDHUP, revents: 0 }];
        crate::shim::sys::poll(&mut p, 0) == 0
    };
    let mut out = Chunked(w);
    let res = Journal::new(&s.e.data_root).stream_while(
        since,
        until,
        &filter,
        |ev| {
            let mut line = serde_json::to_vec(&ev.to_docker_json()).unwrap_or_default();
            line.push(b'\n');
            out.send(&line).is_ok()
        },
        alive,
    );
    if res.is_ok() {
        let _ = out.finish();
    }
    Ok(Response::Done)
}

/// Seconds since the epoch of a container record's RFC 3339 creation time (0 when unset).
fn created_secs(t: &str) -> i64 {
    crate::image::cli::parse_rfc3339(t).unwrap_or(0)
}

/// `GET /system/df`: images, containers and volumes with their sizes, as docker's DiskUsage.
pub fn df(s: &Service) -> ApiResult {
    use crate::engine::run::{self, State};
    use crate::engine::store::Containers;
    use crate::engine::system::disk_usage;
    use crate::engine::volume::Volumes;
    let cs = Containers::new(&s.e.data_root);
    let recs = cs.all();
    let store = crate::image::store::Store::open(&s.e.data_root).map_err(|e| ApiError::new(500, e.to_string()))?;
    let index = store.read_index().map_err(|e| ApiError::new(500, e.to_string()))?;
    let mut images: BTreeMap<String, (u64, Vec<String>, i64)> = BTreeMap::new();
    for (name, rec) in &index.images {
        let created = rec.created.as_deref().and_then(crate::image::cli::parse_rfc3339).unwrap_or(0);
        let e = images.entry(rec.config.to_string()).or_insert((rec.size, Vec::new(), created));
        e.1.push(name.to_string());
    }
    let uses = |id: &str| recs.iter().filter(|r| r.image_id == id).count();
    let layers: u64 = images.values().map(|(s, _, _)| s).sum();
    let images: Vec<Value> = images
        .iter()
        .map(|(id, (size, tags, created))| {
            json!({"Id": id, "ParentId": "", "RepoTags": tags, "RepoDigests": [], "Created": created, "Size": size,
                   "SharedSize": 0, "VirtualSize": size, "Labels": {}, "Containers": uses(id)})
        })
        .collect();
    let containers: Vec<Value> = recs
        .iter()
        .map(|r| {
            let st = run::status(&s.e, &cs, &r.id);
            let state = match st.state {
                State::Running if st.paused => "paused",
                State::Running => "running",
                State::Created => "created",
                _ => "exited",
            };
            json!({"Id": r.id, "Names": [format!("/{}", r.name)], "Image": r.image, "ImageID": r.image_id,
                   "Command": r.path, "Created": created_secs(&r.created), "State": state, "Status": state,
                   "SizeRw": disk_usage(&cs.path(&r.id).join("rw/upper")), "SizeRootFs": 0, "Labels": {},
                   "Mounts": [], "Ports": [], "HostConfig": {}, "NetworkSettings": {}})
        })
        .collect();
    let used: Vec<String> = recs.iter().flat_map(|r| r.mounts.iter().filter_map(|m| m.name.clone())).collect();
    let volumes: Vec<Value> = Volumes::new(&s.e.data_root)
        .list()
        .into_iter()
        .map(|v| {
            let refs = used.iter().filter(|u| **u == v.name).count();
            json!({"Name": v.name, "Driver": "local", "Mountpoint": v.mountpoint, "Labels": {}, "Scope": "local",
                   "Options": {}, "UsageData": {"Size": disk_usage(&v.mountpoint), "RefCount": refs}})
        })
        .collect();
    Ok(Response::json(
        200,
        &json!({"LayersSize": layers, "Images": images, "Containers": containers, "Volumes": volumes, "BuildCache": []}),
    ))
}
