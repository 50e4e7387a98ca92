//! `berth image check`: the store verified from its files. Every blob is re-hashed and
//! compared with its name; every image's manifest, config and layer blobs and every snapshot
//! of its layer chain must exist, the snapshots complete (their `done` marker); snapshots no
//! image needs, blobs no image needs and leftovers in tmp/ are garbage a crash may leave (the
//! publishing renames come last, see store.rs): reported, not corruption; `image prune`
//! and the next writer remove them.

use super::digest::Digest;
use super::store::{Store, StoreError};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io;
use std::path::Path;

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    pub blobs: usize,
    pub snapshots: usize,
    pub images: usize,
    /// Corruption: each a line naming what is wrong.
    pub problems: Vec<String>,
    /// Garbage (not corruption): each a line.
    pub garbage: Vec<String>,
}

fn hash_file(p: &Path) -> io::Result<String> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn names(dir: &Path) -> Result<Vec<String>, StoreError> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::Io { op: "read", path: dir.to_path_buf(), source: e }),
    }
}

/// Checks the store under its index lock (no writer changes the index meanwhile).
pub fn check(store: &Store) -> Result<Report, StoreError> {
    let mut r = Report::default();
    if !store.root().is_dir() {
        return Ok(r);
    }
    let il = store.lock_index()?;
    let index = &il.index;
    let (want_blobs, want_snaps) = index.referenced();

    let blobs_dir = store.root().join("blobs/sha256");
    for name in names(&blobs_dir)? {
        r.blobs += 1;
        let p = blobs_dir.join(&name);
        match hash_file(&p) {
            Ok(h) if h == name => {}
            Ok(h) => r.problems.push(format!("corrupt blob sha256:{name}: its content hashes to sha256:{h}")),
            Err(e) => r.problems.push(format!("unreadable blob {}: {e}", p.display())),
        }
        if !want_blobs.contains(&name) {
            r.garbage.push(format!("unreferenced blob sha256:{name}"));
        }
    }
    let snaps_dir = store.root().join("snapshots");
    for name in names(&snaps_dir)? {
        r.snapshots += 1;
        let d = snaps_dir.join(&name);
        if !d.join("done").is_file() || !d.join("fs").is_dir() {
            r.problems.push(format!("incomplete snapshot {}", d.display()));
        }
        if !want_snaps.contains(&name) {
            r.garbage.push(format!("unreferenced snapshot {name}"));
        }
    }
    for (manifest, img) in &index.images {
        r.images += 1;
        let mut need: Vec<(&str, &Digest)> = vec![("manifest", manifest), ("config", &img.config)];
        need.extend(img.layers.iter().map(|l| ("layer", &l.digest)));
        for (what, d) in need {
            if !blobs_dir.join(d.hex()).is_file() {
                r.problems.push(format!("image {}: its {what} blob {d} is missing", manifest.short()));
            }
        }
        for c in &img.chain_ids {
            if !store.snapshot_dir(c).join("done").is_file() {
                r.problems.push(format!("image {}: the snapshot of layer chain {c} is missing", manifest.short()));
            }
        }
    }
    for (name, m) in &index.refs {
        if !index.images.contains_key(m) {
            r.problems.push(format!("name {name} points at {m}, which is not an image of the store"));
        }
    }
    for name in names(&store.root().join("tmp"))? {
        r.garbage.push(format!("leftover tmp/{name}"));
    }
    Ok(r)
}
