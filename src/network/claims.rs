//! IPv4 subnets claimed host-wide. Every data root of the host shares the host's network
//! namespace, but a network's bridge (and so its route) appears only with its first container:
//! two data roots making networks at the same time would both pick the first free pool subnet
//! and clash at their first container. So a new network claims its subnet in
//! `/run/berth-subnets/` (one file per subnet naming the data root and the network) under a
//! host-wide lock, skips the subnets other data roots claimed, and releases its claim when it
//! is removed. A claim whose network no longer exists (its data root deleted) is stale and
//! dropped; a claim younger than a minute counts while its network's config is being written.
//! An ordinary user's networks live in its own network namespace: no claims there.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ipnet::Ipv4Net;

const DIR: &str = "/run/berth-subnets";

/// The host-wide lock (None where the directory cannot be made: an ordinary user).
pub struct HostLock(Option<fs::File>);

pub fn lock() -> HostLock {
    if crate::unprivileged::active() || fs::create_dir_all(DIR).is_err() {
        return HostLock(None);
    }
    let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(Path::new(DIR).join(".lock"));
    HostLock(f.ok().filter(|f| f.lock().is_ok()))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn file_of(subnet: &Ipv4Net) -> PathBuf {
    Path::new(DIR).join(subnet.to_string().replace('/', "_"))
}

/// The live claims of other networks: (subnet, "network NAME of DATA_ROOT").
pub fn others(held: &HostLock, data_root: &Path, name: &str) -> Vec<(Ipv4Net, String)> {
    if held.0.is_none() {
        return Vec::new();
    }
    let data_root = &absolute(data_root);
    let mut out = Vec::new();
    for e in fs::read_dir(DIR).into_iter().flatten().flatten() {
        let fname = e.file_name().to_string_lossy().into_owned();
        let Ok(subnet) = Ipv4Net::parse(&fname.replace('_', "/")) else { continue };
        let Ok(text) = fs::read_to_string(e.path()) else { continue };
        let mut lines = text.lines();
        let (Some(root), Some(net)) = (lines.next(), lines.next()) else { continue };
        if Path::new(root) == data_root && net == name {
            continue;
        }
        let live = super::config::load(Path::new(root), net).is_ok_and(|n| n.subnet == subnet);
        let young = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(60));
        if live || young {
            out.push((subnet, format!("network {net} of data root {root}")));
        } else {
            let _ = fs::remove_file(e.path());
        }
    }
    out
}

/// Claims `subnet` for `name` of `data_root`.
pub fn claim(held: &HostLock, data_root: &Path, name: &str, subnet: &Ipv4Net) {
    if held.0.is_some() {
        let _ = fs::write(file_of(subnet), format!("{}\n{name}\n", absolute(data_root).display()));
    }
}

/// Drops the claim of `name` of `data_root` on `subnet` (if it is still theirs).
pub fn release(data_root: &Path, name: &str, subnet: &Ipv4Net) {
    let _held = lock();
    let p = file_of(subnet);
    if fs::read_to_string(&p).is_ok_and(|t| t == format!("{}\n{name}\n", absolute(data_root).display())) {
        let _ = fs::remove_file(p);
    }
}
