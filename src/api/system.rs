//! `/_ping`, `/version`, `/info`.

use super::http::{Request, Response};
use super::{ApiResult, Service, API_VERSION, MIN_API_VERSION};
use serde_json::json;

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
