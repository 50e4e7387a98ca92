//! `berth system df`, `system prune` and `system info`: the engine as a whole (containers,
//! images, volumes, networks under one data root).

use super::run::{self, State};
use super::store::Containers;
use super::volume::Volumes;
use super::{Engine, EngineError};
use crate::image::cli::human_size;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes used by the files under `p` (allocated blocks, hard links once, one filesystem).
pub fn disk_usage(p: &Path) -> u64 {
    fn walk(p: &Path, dev: u64, seen: &mut BTreeSet<(u64, u64)>) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else { return 0 };
        if m.dev() != dev || (m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino()))) {
            return 0;
        }
        let mut n = m.blocks() * 512;
        if m.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                n += walk(&e.path(), dev, seen);
            }
        }
        n
    }
    let Ok(m) = std::fs::symlink_metadata(p) else { return 0 };
    walk(p, m.dev(), &mut BTreeSet::new())
}

fn img_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Image(e.to_string())
}

/// The rows of `system df`: docker's Type, TotalCount, Active, Size, Reclaimable.
pub fn df_rows(e: &Engine) -> Result<Vec<Value>, EngineError> {
    let cs = Containers::new(&e.data_root);
    let recs = cs.all();
    let used_images: BTreeSet<String> = recs.iter().map(|r| r.image_id.clone()).collect();
    let store = crate::image::store::Store::open(&e.data_root).map_err(img_err)?;
    let index = store.read_index().map_err(img_err)?;
    // One image id may have several manifests (names): count it once.
    let mut images: BTreeMap<String, u64> = BTreeMap::new();
    // Cached build steps (unnamed step images) are the build cache, as docker counts them.
    let steps = crate::builder::step_images(&e.data_root);
    let (mut cache_count, mut cache_size, mut cache_reclaim) = (0usize, 0u64, 0u64);
    for (m, rec) in &index.images {
        if steps.contains(m) && index.names_of(m).is_empty() {
            cache_count += 1;
            cache_size += rec.size;
            if !used_images.contains(&rec.config.to_string()) {
                cache_reclaim += rec.size;
            }
            continue;
        }
        images.insert(rec.config.to_string(), rec.size);
    }
    let mounts = crate::builder::cache_mounts_usage(&e.data_root);
    cache_size += mounts;
    cache_reclaim += mounts;
    let img_total: u64 = images.values().sum();
    let img_active = images.keys().filter(|i| used_images.contains(*i)).count();
    let img_reclaim: u64 = images.iter().filter(|(i, _)| !used_images.contains(*i)).map(|(_, s)| s).sum();

    let (mut c_size, mut c_reclaim, mut c_active) = (0u64, 0u64, 0usize);
    for r in &recs {
        let size = disk_usage(&cs.path(&r.id).join("rw/upper"));
        c_size += size;
        if run::status(e, &cs, &r.id).state == State::Running {
            c_active += 1;
        } else {
            c_reclaim += size;
        }
    }
    let vols = Volumes::new(&e.data_root);
    let users: BTreeSet<String> = recs.iter().flat_map(|r| r.mounts.iter().filter_map(|m| m.name.clone())).collect();
    let (mut v_size, mut v_reclaim, mut v_active, mut v_total) = (0u64, 0u64, 0usize, 0usize);
    for v in vols.list() {
        v_total += 1;
        let size = disk_usage(&v.mountpoint);
        v_size += size;
        if users.contains(&v.name) {
            v_active += 1;
        } else {
            v_reclaim += size;
        }
    }
    let pct = |r: u64, t: u64| (r * 100).checked_div(t).unwrap_or(0);
    Ok(vec![
        json!({"Type": "Images", "TotalCount": images.len(), "Active": img_active, "Size": human_size(img_total),
               "Reclaimable": format!("{} ({}%)", human_size(img_reclaim), pct(img_reclaim, img_total))}),
        json!({"Type": "Containers", "TotalCount": recs.len(), "Active": c_active, "Size": human_size(c_size),
               "Reclaimable": format!("{} ({}%)", human_size(c_reclaim), pct(c_reclaim, c_size))}),
        json!({"Type": "Local Volumes", "TotalCount": v_total, "Active": v_active, "Size": human_size(v_size),
               "Reclaimable": format!("{} ({}%)", human_size(v_reclaim), pct(v_reclaim, v_size))}),
        json!({"Type": "Build Cache", "TotalCount": cache_count, "Active": 0, "Size": human_size(cache_size),
               "Reclaimable": human_size(cache_reclaim)}),
    ])
}

fn headers() -> BTreeMap<&'static str, &'static str> {
    [("Type", "TYPE"), ("TotalCount", "TOTAL"), ("Active", "ACTIVE"), ("Size", "SIZE"), ("Reclaimable", "RECLAIMABLE")]
        .into_iter()
        .collect()
}

/// `system df [--format F]`.
pub fn df(e: &Engine, format: Option<&str>) -> Result<(), EngineError> {
    let rows = df_rows(e)?;
    let mut rows = rows;
    // docker shows "0B" (no percentage) when nothing of a kind exists.
    for r in &mut rows {
        if r["Size"] == "0B" {
            r["Reclaimable"] = json!("0B");
        }
    }
    let f = format.unwrap_or("table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}");
    let f = if f == "table" { "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}" } else { f };
    let text = crate::template::render_rows(f, &rows, &headers()).map_err(super::show::template_err)?;
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}

/// `system prune [-a] [--volumes]`: stopped containers, unused networks, dangling (`all`:
/// unused) images and (`volumes`) unused anonymous volumes, as docker prints them.
pub fn prune(e: &Engine, all: bool, volumes: bool) -> Result<(), EngineError> {
    let before = disk_usage(&e.data_root);
    let cs = Containers::new(&e.data_root);
    let mut out = std::io::stdout().lock();
    cs.sweep();
    let mut gone = Vec::new();
    for rec in cs.all() {
        let st = run::status(e, &cs, &rec.id);
        if matches!(st.state, State::Running | State::Restarting) || st.shim_alive {
            continue;
        }
        if run::remove(e, &cs, &rec, false, false).is_ok() {
            gone.push(rec.id.clone());
        }
    }
    let section = |out: &mut std::io::StdoutLock, title: &str, items: &[String]| {
        if !items.is_empty() {
            let _ = writeln!(out, "{title}");
            for i in items {
                let _ = writeln!(out, "{i}");
            }
            let _ = writeln!(out);
        }
    };
    section(&mut out, "Deleted Containers:", &gone);
    if volumes {
        let vols = Volumes::new(&e.data_root);
        let users: BTreeSet<String> =
            cs.all().iter().flat_map(|r| r.mounts.iter().filter_map(|m| m.name.clone())).collect();
        let mut v_gone = Vec::new();
        for v in vols.list() {
            if v.meta.anonymous && !users.contains(&v.name) && vols.remove_unchecked(&v.name).is_ok() {
                v_gone.push(v.name.clone());
            }
        }
        section(&mut out, "Deleted Volumes:", &v_gone);
    }
    let nets = crate::network::prune(&e.data_root).map_err(|err| EngineError::Network(err.to_string()))?;
    section(&mut out, "Deleted Networks:", &nets);
    let store = crate::image::store::Store::open(&e.data_root).map_err(img_err)?;
    let (lines, _) = crate::image::cli::prune_images(&store, all).map_err(img_err)?;
    section(&mut out, "Deleted Images:", &lines);
    let after = disk_usage(&e.data_root);
    let _ = writeln!(out, "Total reclaimed space: {}", human_size(before.saturating_sub(after)));
    Ok(())
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// docker's `/info` fields that mean something here.
pub fn info_json(e: &Engine) -> Value {
    let cs = Containers::new(&e.data_root);
    let (mut running, mut paused, mut stopped) = (0, 0, 0);
    let recs = cs.all();
    for r in &recs {
        let st = run::status(e, &cs, &r.id);
        match st.state {
            State::Running if st.paused => paused += 1,
            State::Running | State::Restarting => running += 1,
            _ => stopped += 1,
        }
    }
    let images = crate::image::store::Store::open(&e.data_root)
        .and_then(|s| s.read_index())
        .map(|i| i.images.values().map(|r| r.config.to_string()).collect::<BTreeSet<_>>().len())
        .unwrap_or(0);
    let os = read_trim("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_else(|| "Linux".into());
    let mem = read_trim("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut runtimes = serde_json::Map::new();
    runtimes.insert("berth".into(), json!({"path": e.exe}));
    for (name, path) in super::runtimes::configured(&e.data_root) {
        runtimes.insert(name, json!({"path": path}));
    }
    json!({
        "ID": "",
        "Containers": recs.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay",
        "LoggingDriver": "json-file",
        "CgroupDriver": if e.systemd_cgroup { "systemd" } else { "cgroupfs" },
        "CgroupVersion": if cgroup_v2 { "2" } else { "1" },
        "KernelVersion": read_trim("/proc/sys/kernel/osrelease"),
        "OperatingSystem": os,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "DockerRootDir": e.data_root,
        "Name": read_trim("/proc/sys/kernel/hostname"),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": runtimes,
        "DefaultRuntime": "berth",
        "SecurityOptions": security_options(),
    })
}

/// docker's list: seccomp, and `name=userns` while remapping.
fn security_options() -> Vec<&'static str> {
    let mut v = vec!["name=seccomp,profile=builtin"];
    if crate::remap::active().is_some() {
        v.push("name=userns");
    }
    v
}

/// `system info [--format F]`.
pub fn info(e: &Engine, format: Option<&str>) -> Result<(), EngineError> {
    let v = info_json(e);
    let mut out = std::io::stdout().lock();
    if let Some(f) = format {
        let f = if f == "json" { "{{json .}}" } else { f };
        let t = crate::template::Template::parse(f).map_err(super::show::template_err)?;
        let _ = writeln!(out, "{}", t.render(&v).map_err(super::show::template_err)?);
        return Ok(());
    }
    let s = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let runtimes: Vec<String> = v["Runtimes"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let _ = write!(
        out,
        "Server:\n Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n Images: {}\n Server Version: {}\n Storage Driver: {}\n Logging Driver: {}\n Cgroup Driver: {}\n Cgroup Version: {}\n Runtimes: {}\n Default Runtime: {}\n Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}\n CPUs: {}\n Total Memory: {}\n Name: {}\n Docker Root Dir: {}\n",
        s("Containers"),
        s("ContainersRunning"),
        s("ContainersPaused"),
        s("ContainersStopped"),
        s("Images"),
        s("ServerVersion"),
        s("Driver"),
        s("LoggingDriver"),
        s("CgroupDriver"),
        s("CgroupVersion"),
        runtimes.join(" "),
        s("DefaultRuntime"),
        s("KernelVersion"),
        s("OperatingSystem"),
        s("OSType"),
        s("Architecture"),
        s("NCPU"),
        bin_size(v["MemTotal"].as_u64().unwrap_or(0)),
        s("Name"),
        s("DockerRootDir"),
    );
    Ok(())
}

/// docker's binary sizes for info ("7.763GiB").
fn bin_size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.4}").trim_end_matches('0').trim_end_matches('.').to_string() + units[i]
}
