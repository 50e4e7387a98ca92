//! The image store under `<data-root>/image`: verified content-addressed blobs, one
//! unpacked snapshot per layer chain, and an index of names and images.
//!
//! Crash safety: everything is written under `tmp/` first and renamed into place once
//! complete (blobs after digest verification and fsync, snapshots after their unpack and a
//! syncfs). A crash leaves only garbage in `tmp/`, removed by the next `open` that finds
//! no writer at work. Writers (pull, load) hold `activity.lock` shared; tmp cleanup and
//! garbage collection take it exclusively. The index is changed under `lock`.
//!
//! Durability costs one syncfs per committed snapshot (or per batch: `sync_tmp` +
//! `mark_synced`), never an fsync per unpacked file: the rename that publishes a snapshot
//! comes after the syncfs, so a snapshot that exists after a crash has all its files on
//! disk. A pull unpacks a layer from its download stream (`prepare_snapshot_from`); that
//! snapshot is published only after the blob verified, see pull.rs.

use super::digest::{Digest, HashingWriter};
use super::reference::Reference;
use super::types::{Descriptor, ImageConfig};
use super::unpack::{self, UnpackError, WhiteoutMode};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("blob {expected}: digest mismatch (got {got})")]
    DigestMismatch { expected: Digest, got: Digest },
    #[error("blob {digest}: size mismatch (expected {expected} bytes, got {got})")]
    SizeMismatch { digest: Digest, expected: u64, got: u64 },
    #[error("layer {blob}: diff id mismatch (image config says {expected}, layer content is {got})")]
    DiffIdMismatch { blob: Digest, expected: Digest, got: Digest },
    #[error("layer {blob}: {source}")]
    Unpack { blob: Digest, source: UnpackError },
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    #[error("{}: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("{0:?} is ambiguous: it matches images {1}")]
    Ambiguous(String, String),
    #[error("{0}")]
    Conflict(String),
    #[error("invalid use id {0:?}")]
    BadUser(String),
    /// (input, why): the reference parser's message names the input already.
    #[error("{1}")]
    BadName(String, String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { op, path: path.to_path_buf(), source }
}

/// One image as recorded in the index (keyed there by its manifest digest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest: the image id.
    pub config: Digest,
    pub layers: Vec<Descriptor>,
    pub chain_ids: Vec<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Uncompressed size of all layers.
    #[serde(default)]
    pub size: u64,
    /// `repo@digest` names the image was pulled by (digest of the manifest or of its index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// Further blobs to keep with the image (the index a manifest was chosen from).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_blobs: Vec<Digest>,
    /// When it was recorded (unix seconds); the newest wins among images of one id.
    #[serde(default)]
    pub added: u64,
}

/// The content of `index.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreIndex {
    /// Normalised name (`registry/repo:tag` or `registry/repo@sha256:..`) → manifest digest.
    #[serde(default)]
    pub refs: BTreeMap<String, Digest>,
    /// Manifest digest → image.
    #[serde(default)]
    pub images: BTreeMap<Digest, ImageRecord>,
    /// A layer stored uncompressed → the gzip blob made of it when it was first pushed, as
    /// docker's distribution metadata remembers one: later pushes send (or find already
    /// there) the same blob, so the pushed manifest keeps its digest. Kept while an image
    /// uses the layer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub compressed: BTreeMap<Digest, CompressedBlob>,
}

/// A gzip blob of an uncompressed layer (see `StoreIndex::compressed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedBlob {
    pub digest: Digest,
    pub size: u64,
}

impl StoreIndex {
    /// Names pointing at a manifest, sorted.
    pub fn names_of(&self, manifest: &Digest) -> Vec<String> {
        self.refs.iter().filter(|(_, d)| *d == manifest).map(|(n, _)| n.clone()).collect()
    }

    /// Points `name` at `manifest`; returns the manifest it pointed at before.
    pub fn set_ref(&mut self, name: &str, manifest: &Digest) -> Option<Digest> {
        self.refs.insert(name.to_string(), manifest.clone())
    }

    /// Adds (or refreshes) an image record, keeping repo digests already known.
    pub fn add_image(&mut self, manifest: &Digest, mut rec: ImageRecord) {
        if let Some(old) = self.images.get(manifest) {
            for rd in &old.repo_digests {
                if !rec.repo_digests.contains(rd) {
                    rec.repo_digests.push(rd.clone());
                }
            }
            for b in &old.extra_blobs {
                if !rec.extra_blobs.contains(b) {
                    rec.extra_blobs.push(b.clone());
                }
            }
        }
        rec.repo_digests.sort();
        self.images.insert(manifest.clone(), rec);
    }

    /// Manifests whose image is `id` (config digest), newest first.
    pub fn manifests_of_id(&self, id: &Digest) -> Vec<Digest> {
        let mut v: Vec<(&Digest, &ImageRecord)> = self.images.iter().filter(|(_, r)| r.config == *id).collect();
        v.sort_by(|a, b| b.1.added.cmp(&a.1.added).then(a.0.cmp(b.0)));
        v.into_iter().map(|(d, _)| d.clone()).collect()
    }

    /// Finds the manifest digest of an image. `query` is what the user typed, `name`
    /// its normalised form when it parses as an image reference.
    pub fn find(&self, query: &str, name: Option<&Reference>) -> Result<Digest, StoreError> {
        let not_found = || StoreError::NotFound(query.to_string());
        if let Some(hex) = query.strip_prefix("sha256:") {
            if let Ok(d) = Digest::parse(query) {
                if self.images.contains_key(&d) {
                    return Ok(d);
                }
                return self.manifests_of_id(&d).into_iter().next().ok_or_else(not_found);
            }
            return self.find_prefix(query, hex);
        }
        if let Some(r) = name {
            if let Some(d) = &r.digest {
                let repo = format!("{}/{}", r.registry, r.repository);
                let full = format!("{repo}@{d}");
                if let Some(m) = self.refs.get(&full) {
                    return Ok(m.clone());
                }
                if let Some((m, _)) = self.images.iter().find(|(_, rec)| rec.repo_digests.contains(&full)) {
                    return Ok(m.clone());
                }
                if self.images.contains_key(d) {
                    return Ok(d.clone());
                }
            } else if let Some(m) = self.refs.get(&canonical_name(r)) {
                return Ok(m.clone());
            }
        }
        self.find_prefix(query, query)
    }

    fn find_prefix(&self, query: &str, hex: &str) -> Result<Digest, StoreError> {
        if hex.len() < 4 || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(StoreError::NotFound(query.to_string()));
        }
        let ids: BTreeSet<&Digest> =
            self.images.values().map(|r| &r.config).filter(|c| c.hex().starts_with(hex)).collect();
        match ids.len() {
            0 => Err(StoreError::NotFound(query.to_string())),
            1 => {
                let id = ids.into_iter().next().cloned().ok_or_else(|| StoreError::NotFound(query.to_string()))?;
                self.manifests_of_id(&id).into_iter().next().ok_or_else(|| StoreError::NotFound(query.to_string()))
            }
            _ => Err(StoreError::Ambiguous(
                query.to_string(),
                ids.iter().map(|d| d.short().to_string()).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    /// Blob hexes and snapshot (chain id) hexes that some image still needs.
    pub fn referenced(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut blobs = BTreeSet::new();
        let mut snaps = BTreeSet::new();
        for (m, r) in &self.images {
            blobs.insert(m.hex().to_string());
            blobs.insert(r.config.hex().to_string());
            for l in &r.layers {
                blobs.insert(l.digest.hex().to_string());
                if let Some(c) = self.compressed.get(&l.digest) {
                    blobs.insert(c.digest.hex().to_string());
                }
            }
            for b in &r.extra_blobs {
                blobs.insert(b.hex().to_string());
            }
            for c in &r.chain_ids {
                snaps.insert(c.hex().to_string());
            }
        }
        (blobs, snaps)
    }

    /// Forgets the compressed forms of layers no image uses any more; true if any was.
    pub fn drop_unused_compressed(&mut self) -> bool {
        let used: BTreeSet<&Digest> = self.images.values().flat_map(|r| r.layers.iter().map(|l| &l.digest)).collect();
        let stale: Vec<Digest> = self.compressed.keys().filter(|k| !used.contains(k)).cloned().collect();
        for k in &stale {
            self.compressed.remove(k);
        }
        !stale.is_empty()
    }
}

/// The name under which a reference is recorded: `registry/repo:tag`, or
/// `registry/repo@digest` when it carries a digest (the tag is then dropped, as docker does).
pub fn canonical_name(r: &Reference) -> String {
    match (&r.digest, &r.tag) {
        (Some(d), _) => format!("{}/{}@{}", r.registry, r.repository, d),
        (None, Some(t)) => format!("{}/{}:{}", r.registry, r.repository, t),
        (None, None) => format!("{}/{}:latest", r.registry, r.repository),
    }
}

/// Splits a recorded name into (repository, tag or None, digest or None).
pub fn split_name(name: &str) -> (&str, Option<&str>, Option<&str>) {
    if let Some((repo, d)) = name.split_once('@') {
        return (repo, None, Some(d));
    }
    match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], Some(&name[i + 1..]), None),
        _ => (name, None, None),
    }
}

/// The short form docker shows: `busybox:latest` for `docker.io/library/busybox:latest`.
pub fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/").or_else(|| name.strip_prefix("docker.io/")).unwrap_or(name)
}

/// Chain ids of a layer stack (OCI image spec): the first is the first diff id, each next
/// one is sha256 of "<previous chain id> <diff id>".
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A resolved image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Names pointing at this manifest (normalised, sorted).
    pub names: Vec<String>,
    pub repo_digests: Vec<String>,
    pub manifest_digest: Digest,
    /// The image id.
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// Layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    pub chain_ids: Vec<Digest>,
    pub size: u64,
}

impl Image {
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a new file or dir under tmp/ that no other process or thread picks.
fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}{}-{t:x}-{n}", std::process::id())
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn lock(path: &Path, arg: FlockArg) -> Result<Option<Flock<File>>, StoreError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err("open", path))?;
    let mut f = f;
    loop {
        match Flock::lock(f, arg) {
            Ok(l) => return Ok(Some(l)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((back, nix::errno::Errno::EINTR)) => f = back,
            Err((_, e)) => return Err(StoreError::Io { op: "flock", path: path.to_path_buf(), source: e.into() }),
        }
    }
}

fn lock_blocking(path: &Path, exclusive: bool) -> Result<Flock<File>, StoreError> {
    let arg = if exclusive { FlockArg::LockExclusive } else { FlockArg::LockShared };
    lock(path, arg)?.ok_or_else(|| StoreError::Io {
        op: "flock",
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::WouldBlock),
    })
}

/// An exclusive lock on a file under tmp/ that is removed on release, so tmp/ is empty when
/// nothing is at work. The lock holds only while the path still names the locked inode
/// (checked after locking; a holder unlinks before unlocking).
pub struct TmpLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Drop for TmpLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn tmp_lock(path: &Path) -> Result<TmpLock, StoreError> {
    use std::os::unix::fs::MetadataExt;
    loop {
        let l = lock_blocking(path, true)?;
        let held = l.metadata().map_err(io_err("stat", path))?;
        match fs::metadata(path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                return Ok(TmpLock { path: path.to_path_buf(), _lock: l });
            }
            _ => continue, // released and removed meanwhile: take the new one
        }
    }
}

fn sync_fs(path: &Path) -> Result<(), StoreError> {
    let f = File::open(path).map_err(io_err("open", path))?;
    nix::unistd::syncfs(&f).map_err(|e| StoreError::Io { op: "syncfs", path: path.to_path_buf(), source: e.into() })
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err("fsync", dir))
}

fn remove_any(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Proof that this process is writing to the store (holds `activity.lock` shared), so
/// garbage collection and tmp cleanup wait. Keep it until the new image is in the index.
pub struct WriteGuard {
    _lock: Flock<File>,
}

/// Holds `lock` exclusively: the index may be read, changed and written back.
pub struct IndexLock<'a> {
    store: &'a Store,
    _lock: Flock<File>,
    pub index: StoreIndex,
    /// The index as read, to skip writing an unchanged one.
    read: Vec<u8>,
}

impl IndexLock<'_> {
    /// Writes the index back (tmp file, fsync, rename).
    pub fn save(&self) -> Result<(), StoreError> {
        if serde_json::to_vec(&self.index).ok().as_deref() == Some(self.read.as_slice()) && !self.read.is_empty() {
            return Ok(());
        }
        let path = self.store.root.join("index.json");
        let tmp = self.store.root.join("index.json.tmp");
        let data =
            serde_json::to_vec_pretty(&self.index).map_err(|source| StoreError::Json { path: path.clone(), source })?;
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Io { op: "write", path: tmp, source: e });
        }
        berth::faults::crash_point("image.index.tmp-synced");
        fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        berth::faults::crash_point("image.index.renamed");
        sync_dir(&self.store.root)
    }
}

/// A file being written under tmp/ while it is hashed. Removed on drop unless kept.
pub struct BlobWriter {
    path: PathBuf,
    w: Option<HashingWriter<BufWriter<File>>>,
    /// The first write error, kept so a caller whose source (a registry client) reports
    /// it in its own words can still name the real cause.
    write_err: Option<(io::ErrorKind, String)>,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let w = self.w.as_mut().ok_or_else(|| io::Error::other("blob writer closed"))?;
        w.write(buf).inspect_err(|e| {
            if self.write_err.is_none() {
                self.write_err = Some((e.kind(), e.to_string()));
            }
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.w.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter {
    /// The error of a failed write to the tmp file, as a store error naming the file.
    pub fn write_error(&self) -> Option<StoreError> {
        self.write_err.as_ref().map(|(k, m)| StoreError::Io {
            op: "write",
            path: self.path.clone(),
            source: io::Error::new(*k, m.clone()),
        })
    }

    /// Flushes and closes the file; returns what was written.
    pub fn finish(mut self) -> Result<StagedBlob, StoreError> {
        let w = self.w.take().ok_or_else(|| StoreError::Io {
            op: "write",
            path: self.path.clone(),
            source: io::Error::other("blob writer closed"),
        })?;
        let (buf, digest, size) = w.finish();
        let path = std::mem::take(&mut self.path);
        let staged = StagedBlob { path, digest, size };
        buf.into_inner().map_err(|e| StoreError::Io {
            op: "write",
            path: staged.path.clone(),
            source: e.into_error(),
        })?;
        Ok(staged)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            self.w = None;
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A complete file under tmp/ with its digest; removed on drop unless adopted.
pub struct StagedBlob {
    path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

impl StagedBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A blob being fetched, under its per-digest ingest lock.
pub struct Ingest {
    expected: Digest,
    writer: BlobWriter,
    _lock: TmpLock,
    blobs: PathBuf,
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl Ingest {
    pub fn write_error(&self) -> Option<StoreError> {
        self.writer.write_error()
    }

    /// Verifies digest (and size when known), fsyncs and moves the blob into place.
    pub fn commit(self, size: Option<u64>) -> Result<(), StoreError> {
        self.verify(size)?.commit()
    }

    /// Closes the file and verifies digest (and size when known); the blob stays under
    /// tmp/ (and its ingest lock held) until `commit`, and is removed if dropped.
    pub fn verify(self, size: Option<u64>) -> Result<VerifiedBlob, StoreError> {
        let staged = self.writer.finish()?;
        if staged.digest != self.expected {
            return Err(StoreError::DigestMismatch { expected: self.expected, got: staged.digest.clone() });
        }
        if let Some(s) = size {
            if s != staged.size {
                return Err(StoreError::SizeMismatch { digest: self.expected, expected: s, got: staged.size });
            }
        }
        Ok(VerifiedBlob { staged, _lock: self._lock, blobs: self.blobs, synced: false })
    }
}

/// A fetched blob whose digest matched, waiting under tmp/ to be moved into place.
pub struct VerifiedBlob {
    staged: StagedBlob,
    _lock: TmpLock,
    blobs: PathBuf,
    synced: bool,
}

impl VerifiedBlob {
    /// Records that the filesystem was synced since the blob was written (`Store::sync_tmp`).
    pub fn mark_synced(&mut self) {
        self.synced = true;
    }

    /// Moves the blob into blobs/ (after an fsync, unless marked synced).
    pub fn commit(self) -> Result<(), StoreError> {
        move_into(self.staged, &self.blobs, self.synced)
    }
}

/// Moves a staged blob into `blobs` (its data fsynced first unless `synced`) and syncs the dir.
fn move_into(mut staged: StagedBlob, blobs: &Path, synced: bool) -> Result<(), StoreError> {
    if !synced {
        File::open(&staged.path).and_then(|f| f.sync_all()).map_err(io_err("fsync", &staged.path))?;
    }
    let dest = blobs.join(staged.digest.hex());
    berth::faults::crash_point("image.blob.synced");
    fs::rename(&staged.path, &dest).map_err(io_err("rename", &staged.path))?;
    berth::faults::crash_point("image.blob.renamed");
    staged.path = PathBuf::new();
    sync_dir(blobs)
}

/// A snapshot unpacked under tmp/, waiting to be renamed into snapshots/.
pub struct PreparedSnapshot {
    dir: PathBuf,
    dest: PathBuf,
    snapshots: PathBuf,
    lock_path: PathBuf,
    pub bytes: u64,
    /// The snapshot's lock, when kept from the unpack to the commit.
    lock: Option<TmpLock>,
    synced: bool,
}

impl PreparedSnapshot {
    /// Records that the filesystem was synced since the unpack (see `Store::sync_tmp`).
    pub fn mark_synced(&mut self) {
        self.synced = true;
    }

    /// Renames the snapshot into place (after a syncfs, unless marked synced); a complete
    /// snapshot made meanwhile by another writer wins and this one is dropped.
    pub fn commit(mut self) -> Result<u64, StoreError> {
        if !self.synced {
            sync_fs(&self.dir)?;
        }
        let _l = match self.lock.take() {
            Some(l) => l,
            None => tmp_lock(&self.lock_path)?,
        };
        if self.dest.join("done").is_file() {
            return Ok(self.bytes); // made meanwhile by another writer; ours is dropped
        }
        // A dir without its done marker cannot be there (renames are atomic), but if it
        // is, it is not a snapshot: replace it.
        remove_any(&self.dest);
        berth::faults::crash_point("image.snapshot.synced");
        if let Err(e) = fs::rename(&self.dir, &self.dest) {
            if self.dest.join("done").is_file() {
                return Ok(self.bytes);
            }
            return Err(StoreError::Io { op: "rename", path: self.dir.clone(), source: e });
        }
        self.dir = PathBuf::new();
        berth::faults::crash_point("image.snapshot.renamed");
        sync_dir(&self.snapshots)?;
        Ok(self.bytes)
    }
}

impl Drop for PreparedSnapshot {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            remove_any(&self.dir);
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotInfo {
    diff_id: Digest,
    entries: u64,
    bytes: u64,
}

/// A use record: `user` (container id or `mount-<hash>`) uses image `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub user: String,
    pub id: Digest,
    pub note: String,
}

impl Use {
    /// How a conflict names the user: "container 0123456789ab", or the note.
    pub fn describe(&self) -> String {
        if !self.note.is_empty() {
            return self.note.clone();
        }
        if self.user.len() == 64 && self.user.bytes().all(|b| b.is_ascii_hexdigit()) {
            return format!("container {}", &self.user[..12]);
        }
        self.user.clone()
    }
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcStats {
    pub blobs: u64,
    pub snapshots: u64,
    pub bytes: u64,
}

/// The store. Cheap to open; shareable across threads (`&Store`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating when needed) `<data_root>/image`, and clears leftovers of crashed
    /// writers from tmp/ when no writer is at work.
    /// Creates nothing: the first write does (so failed commands leave no trace).
    pub fn open(data_root: &Path) -> Result<Store, StoreError> {
        let root = data_root.join("image");
        let s = Store { root };
        s.clean_tmp(false)?;
        Ok(s)
    }

    fn ensure_dirs(&self) -> Result<(), StoreError> {
        for d in [self.blobs_dir(), self.root.join("snapshots"), self.tmp()] {
            if !d.is_dir() {
                fs::create_dir_all(&d).map_err(io_err("create", &d))?;
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Removes everything in tmp/ if no writer holds the activity lock (or, with `wait`,
    /// once none does). Returns whether it ran.
    fn clean_tmp(&self, wait: bool) -> Result<bool, StoreError> {
        let tmp = self.tmp();
        let mut rd = match fs::read_dir(&tmp) {
            Ok(rd) => rd.peekable(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(StoreError::Io { op: "read", path: tmp, source: e }),
        };
        if rd.peek().is_none() {
            return Ok(true);
        }
        let arg = if wait { FlockArg::LockExclusive } else { FlockArg::LockExclusiveNonblock };
        let Some(_g) = lock(&self.root.join("activity.lock"), arg)? else {
            return Ok(false);
        };
        for e in rd.flatten() {
            remove_any(&e.path());
        }
        Ok(true)
    }

    /// Declares this process a writer (see `WriteGuard`).
    pub fn write_guard(&self) -> Result<WriteGuard, StoreError> {
        self.ensure_dirs()?;
        Ok(WriteGuard { _lock: lock_blocking(&self.root.join("activity.lock"), false)? })
    }

    /// Takes the index lock and reads the index.
    pub fn lock_index(&self) -> Result<IndexLock<'_>, StoreError> {
        if !self.root.is_dir() {
            fs::create_dir_all(&self.root).map_err(io_err("create", &self.root))?;
        }
        let l = lock_blocking(&self.root.join("lock"), true)?;
        let index = self.read_index()?;
        let read = serde_json::to_vec(&index).unwrap_or_default();
        Ok(IndexLock { store: self, _lock: l, index, read })
    }

    /// Reads the index without locking (it is only ever replaced by rename).
    pub fn read_index(&self) -> Result<StoreIndex, StoreError> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|source| StoreError::Json { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StoreIndex::default()),
            Err(e) => Err(StoreError::Io { op: "read", path, source: e }),
        }
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    /// Whether the blob is there (and has `size` bytes, when given).
    pub fn has_blob(&self, d: &Digest, size: Option<u64>) -> bool {
        match fs::metadata(self.blob_path(d)) {
            Ok(m) => m.is_file() && size.is_none_or(|s| s == m.len()),
            Err(_) => false,
        }
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob(d.clone())
            } else {
                StoreError::Io { op: "open", path: p.clone(), source: e }
            }
        })
    }

    /// Reads a small blob (manifest, config), checking its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut data = Vec::new();
        self.open_blob(d)?.read_to_end(&mut data).map_err(io_err("read", &self.blob_path(d)))?;
        let got = Digest::of(&data);
        if got != *d {
            return Err(StoreError::DigestMismatch { expected: d.clone(), got });
        }
        Ok(data)
    }

    /// A new hashed file under tmp/.
    pub fn stage(&self, _g: &WriteGuard) -> Result<BlobWriter, StoreError> {
        let path = self.tmp().join(unique("blob-"));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("create", &path))?;
        Ok(BlobWriter { path, w: Some(HashingWriter::new(BufWriter::with_capacity(256 * 1024, f))), write_err: None })
    }

    /// Moves a staged (already hashed) file into blobs/ unless that blob is there.
    pub fn adopt(&self, _g: &WriteGuard, staged: StagedBlob) -> Result<(), StoreError> {
        if self.has_blob(&staged.digest, Some(staged.size)) {
            return Ok(());
        }
        let _l = tmp_lock(&self.tmp().join(format!("{}.lock", staged.digest.hex())))?;
        if self.has_blob(&staged.digest, Some(staged.size)) {
            return Ok(());
        }
        move_into(staged, &self.blobs_dir(), false)
    }

    /// Starts fetching a blob: None when it is already there (with `size` bytes when
    /// given). Waits while another process or thread fetches the same blob.
    pub fn begin_ingest(&self, g: &WriteGuard, d: &Digest, size: Option<u64>) -> Result<Option<Ingest>, StoreError> {
        if self.has_blob(d, size) {
            return Ok(None);
        }
        let l = tmp_lock(&self.tmp().join(format!("{}.lock", d.hex())))?;
        if self.has_blob(d, size) {
            return Ok(None);
        }
        let writer = self.stage(g)?;
        Ok(Some(Ingest { expected: d.clone(), writer, _lock: l, blobs: self.blobs_dir() }))
    }

    /// Stores a small blob held in memory; returns its digest.
    pub fn write_blob(&self, g: &WriteGuard, data: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(data);
        if let Some(mut ing) = self.begin_ingest(g, &d, Some(data.len() as u64))? {
            if let Err(e) = ing.write_all(data) {
                return Err(ing.write_error().unwrap_or(StoreError::Io { op: "write", path: self.tmp(), source: e }));
            }
            ing.commit(Some(data.len() as u64))?;
        }
        Ok(d)
    }

    pub fn snapshot_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain.hex())
    }

    pub fn has_snapshot(&self, chain: &Digest) -> bool {
        self.snapshot_dir(chain).join("done").is_file()
    }

    /// Uncompressed bytes of a snapshot's layer, from its done marker.
    pub fn snapshot_bytes(&self, chain: &Digest) -> Option<u64> {
        let data = fs::read(self.snapshot_dir(chain).join("done")).ok()?;
        serde_json::from_slice::<SnapshotInfo>(&data).ok().map(|i| i.bytes)
    }

    /// Unpacks layer blob `blob` (or `layer`, when given, a staged copy of it) into a new
    /// snapshot under tmp/, checking its diff id. None when the snapshot already exists.
    /// The snapshot's lock (one unpack of a snapshot at a time) is kept until the commit
    /// with `hold`; without, it is taken again by the commit, so that a caller preparing
    /// several snapshots never holds one lock while waiting for another.
    pub fn prepare_snapshot(
        &self,
        _g: &WriteGuard,
        chain: &Digest,
        diff_id: &Digest,
        blob: &Digest,
        layer: Option<&Path>,
        hold: bool,
    ) -> Result<Option<PreparedSnapshot>, StoreError> {
        if self.has_snapshot(chain) {
            return Ok(None);
        }
        let file = match layer {
            Some(p) => File::open(p).map_err(io_err("open", p))?,
            None => self.open_blob(blob)?,
        };
        self.prepare_snapshot_from(_g, chain, diff_id, blob, io::BufReader::with_capacity(256 * 1024, file), hold)
    }

    /// `prepare_snapshot` of a layer read from `src` (e.g. while it is being downloaded):
    /// the snapshot stays under tmp/ until committed, so a caller that finds the layer's blob
    /// bad drops it unused. None when the snapshot already exists (`src` is then not read).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_snapshot_from<R: Read + Send>(
        &self,
        _g: &WriteGuard,
        chain: &Digest,
        diff_id: &Digest,
        blob: &Digest,
        src: R,
        hold: bool,
    ) -> Result<Option<PreparedSnapshot>, StoreError> {
        if self.has_snapshot(chain) {
            return Ok(None);
        }
        let lock_path = self.tmp().join(format!("{}.snap.lock", chain.hex()));
        let l = tmp_lock(&lock_path)?;
        if self.has_snapshot(chain) {
            return Ok(None);
        }
        let dir = self.tmp().join(unique("snap-"));
        let fsdir = dir.join("fs");
        fs::create_dir_all(&fsdir).map_err(io_err("create", &fsdir))?;
        let mut prep = PreparedSnapshot {
            dir: dir.clone(),
            dest: self.snapshot_dir(chain),
            snapshots: self.root.join("snapshots"),
            lock_path,
            bytes: 0,
            lock: Some(l),
            synced: false,
        };
        let stats = unpack::unpack_layer(src, &fsdir, WhiteoutMode::Overlay)
            .map_err(|source| StoreError::Unpack { blob: blob.clone(), source })?;
        if stats.diff_id != *diff_id {
            return Err(StoreError::DiffIdMismatch {
                blob: blob.clone(),
                expected: diff_id.clone(),
                got: stats.diff_id,
            });
        }
        let info = SnapshotInfo { diff_id: stats.diff_id, entries: stats.entries, bytes: stats.bytes };
        let done = dir.join("done");
        let data = serde_json::to_vec(&info).map_err(|source| StoreError::Json { path: done.clone(), source })?;
        fs::write(&done, data).map_err(io_err("write", &done))?;
        prep.bytes = stats.bytes;
        if !hold {
            prep.lock = None;
        }
        Ok(Some(prep))
    }

    /// Makes `fs_dir` (a directory on the store's filesystem holding a layer's files in the
    /// overlay whiteout format, e.g. a container's upper dir whose layer tar was just
    /// written) the snapshot of `chain`, by renaming it instead of unpacking the layer again.
    /// Ok(false) when that cannot be done (another filesystem): `fs_dir` is left as it was
    /// and the caller unpacks the layer instead. Ok(true) when the snapshot exists after.
    #[allow(clippy::too_many_arguments)]
    pub fn adopt_snapshot_dir(
        &self,
        _g: &WriteGuard,
        chain: &Digest,
        diff_id: &Digest,
        fs_dir: &Path,
        entries: u64,
        bytes: u64,
    ) -> Result<bool, StoreError> {
        if self.has_snapshot(chain) {
            return Ok(true);
        }
        let lock_path = self.tmp().join(format!("{}.snap.lock", chain.hex()));
        let l = tmp_lock(&lock_path)?;
        if self.has_snapshot(chain) {
            return Ok(true);
        }
        let dir = self.tmp().join(unique("snap-"));
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let mut prep = PreparedSnapshot {
            dir: dir.clone(),
            dest: self.snapshot_dir(chain),
            snapshots: self.root.join("snapshots"),
            lock_path,
            bytes,
            lock: Some(l),
            synced: false,
        };
        if fs::rename(fs_dir, dir.join("fs")).is_err() {
            prep.lock = None;
            return Ok(false);
        }
        let info = SnapshotInfo { diff_id: diff_id.clone(), entries, bytes };
        let done = dir.join("done");
        let data = serde_json::to_vec(&info).map_err(|source| StoreError::Json { path: done.clone(), source })?;
        fs::write(&done, data).map_err(io_err("write", &done))?;
        prep.commit()?;
        Ok(true)
    }

    /// syncfs of the filesystem of tmp/ (once for many prepared snapshots).
    pub fn sync_tmp(&self) -> Result<(), StoreError> {
        sync_fs(&self.tmp())
    }

    /// Unpacks a layer blob into its snapshot unless that exists; returns the layer's
    /// uncompressed size.
    pub fn ensure_snapshot(
        &self,
        g: &WriteGuard,
        chain: &Digest,
        diff_id: &Digest,
        blob: &Digest,
    ) -> Result<u64, StoreError> {
        match self.prepare_snapshot(g, chain, diff_id, blob, None, true)? {
            Some(p) => p.commit(),
            None => Ok(self.snapshot_bytes(chain).unwrap_or(0)),
        }
    }

    /// Snapshot `fs` dirs of an image, top first (overlay lowerdir order).
    pub fn snapshot_dirs(&self, img: &Image) -> Vec<PathBuf> {
        img.chain_ids.iter().rev().map(|c| self.snapshot_dir(c).join("fs")).collect()
    }

    /// Creates the snapshots an image lacks (e.g. removed by hand); cheap when all exist.
    pub fn ensure_snapshots(&self, img: &Image) -> Result<(), StoreError> {
        if img.chain_ids.iter().all(|c| self.has_snapshot(c)) {
            return Ok(());
        }
        let g = self.write_guard()?;
        for (i, c) in img.chain_ids.iter().enumerate() {
            let diff = img.config.rootfs.diff_ids.get(i).ok_or_else(|| StoreError::NotFound(c.to_string()))?;
            let blob = &img.layers.get(i).ok_or_else(|| StoreError::NotFound(c.to_string()))?.digest;
            self.ensure_snapshot(&g, c, diff, blob)?;
        }
        Ok(())
    }

    /// Finds an image by name, `sha256:` digest (id or manifest) or unique id prefix.
    pub fn resolve(&self, query: &str) -> Result<Image, StoreError> {
        let index = self.read_index()?;
        self.resolve_in(&index, query)
    }

    pub fn resolve_in(&self, index: &StoreIndex, query: &str) -> Result<Image, StoreError> {
        let parsed = if query.starts_with("sha256:") { None } else { Reference::parse(query).ok() };
        let m = index.find(query, parsed.as_ref())?;
        self.image(index, &m)
    }

    /// The image of a manifest recorded in `index`.
    pub fn image(&self, index: &StoreIndex, manifest: &Digest) -> Result<Image, StoreError> {
        let rec = index.images.get(manifest).ok_or_else(|| StoreError::NotFound(manifest.to_string()))?;
        let data = self.read_blob(&rec.config)?;
        let config: ImageConfig = serde_json::from_slice(&data)
            .map_err(|source| StoreError::Json { path: self.blob_path(&rec.config), source })?;
        Ok(Image {
            names: index.names_of(manifest),
            repo_digests: rec.repo_digests.clone(),
            manifest_digest: manifest.clone(),
            config_digest: rec.config.clone(),
            config,
            layers: rec.layers.clone(),
            chain_ids: rec.chain_ids.clone(),
            size: rec.size,
        })
    }

    fn uses_dir(&self) -> PathBuf {
        self.root.join("uses")
    }

    /// Records that `user` (a container id, or `mount-<hash>`) uses image `id`, so that
    /// neither `image rm` nor GC removes it; `note` is shown when the use blocks `image rm`
    /// (e.g. a mount path). Fails if the image is gone meanwhile.
    pub fn add_use(&self, id: &Digest, user: &str, note: &str) -> Result<(), StoreError> {
        check_user(user)?;
        let il = self.lock_index()?;
        if il.index.manifests_of_id(id).is_empty() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let dir = self.uses_dir();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let tmp = dir.join(format!(".{user}.tmp"));
        let path = dir.join(user);
        let note = note.replace('\n', " ");
        fs::write(&tmp, format!("{id}\n{note}\n")).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))
    }

    pub fn remove_use(&self, user: &str) -> Result<(), StoreError> {
        check_user(user)?;
        let p = self.uses_dir().join(user);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io { op: "remove", path: p, source: e }),
            _ => Ok(()),
        }
    }

    /// Every use record.
    pub fn uses(&self) -> Result<Vec<Use>, StoreError> {
        let dir = self.uses_dir();
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::Io { op: "read", path: dir, source: e }),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(s) = fs::read_to_string(e.path()) {
                let mut lines = s.lines();
                if let Some(Ok(id)) = lines.next().map(|l| Digest::parse(l.trim())) {
                    out.push(Use { user: name, id, note: lines.next().unwrap_or("").to_string() });
                }
            }
        }
        out.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(out)
    }

    /// Removes blobs and snapshots that no recorded image needs, and tmp leftovers.
    /// Waits for writers (pull, load) to finish: do not call it holding a WriteGuard.
    pub fn gc(&self) -> Result<GcStats, StoreError> {
        if !self.root.is_dir() {
            return Ok(GcStats::default());
        }
        let _act = lock_blocking(&self.root.join("activity.lock"), true)?;
        let mut il = self.lock_index()?;
        if il.index.drop_unused_compressed() {
            il.save()?;
        }
        let (blobs, snaps) = il.index.referenced();
        let mut st = GcStats::default();
        self.ensure_dirs()?;
        let bd = self.blobs_dir();
        for e in fs::read_dir(&bd).map_err(io_err("read", &bd))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !blobs.contains(&name) {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(e.path()).is_ok() {
                    st.blobs += 1;
                    st.bytes += len;
                }
            }
        }
        let sd = self.root.join("snapshots");
        for e in fs::read_dir(&sd).map_err(io_err("read", &sd))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !snaps.contains(&name) {
                // Rename out of the way first, so that a half-removed snapshot is never
                // seen under its name.
                let trash = self.tmp().join(unique("gc-"));
                if fs::rename(e.path(), &trash).is_ok() {
                    st.bytes += Self::snapshot_bytes_at(&trash);
                    remove_any(&trash);
                    st.snapshots += 1;
                }
            }
        }
        drop(il);
        for e in fs::read_dir(self.tmp()).map_err(io_err("read", &self.tmp()))?.flatten() {
            remove_any(&e.path());
        }
        Ok(st)
    }

    fn snapshot_bytes_at(dir: &Path) -> u64 {
        fs::read(dir.join("done"))
            .ok()
            .and_then(|d| serde_json::from_slice::<SnapshotInfo>(&d).ok())
            .map(|i| i.bytes)
            .unwrap_or(0)
    }
}

fn check_user(user: &str) -> Result<(), StoreError> {
    let ok = !user.is_empty()
        && user.len() <= 200
        && !user.starts_with('.')
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadUser(user.to_string()))
    }
}

/// Normalises a user-given image name for recording (`busybox` → `docker.io/library/busybox:latest`).
pub fn normalise(name: &str) -> Result<(Reference, String), StoreError> {
    let r = Reference::parse(name).map_err(|e| StoreError::BadName(name.to_string(), e.to_string()))?;
    let n = canonical_name(&r);
    Ok((r, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    fn rec(config: &Digest, added: u64) -> ImageRecord {
        ImageRecord {
            config: config.clone(),
            layers: vec![],
            chain_ids: vec![],
            created: None,
            size: 0,
            repo_digests: vec![],
            extra_blobs: vec![],
            added,
        }
    }

    #[test]
    fn chain_id_rule() {
        let (a, b, c) = (d("a"), d("b"), d("c"));
        let ch = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(ch[0], a);
        assert_eq!(ch[1], Digest::of(format!("sha256:{} sha256:{}", a.hex(), b.hex()).as_bytes()));
        assert_eq!(ch[2], Digest::of(format!("{} {}", ch[1], c).as_bytes()));
        assert!(chain_ids(&[]).is_empty());
        // The OCI image spec's own example is built the same way; a known value:
        let e = Digest::parse("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap();
        let two = chain_ids(&[e.clone(), e.clone()]);
        assert_eq!(two[1], Digest::of(format!("{e} {e}").as_bytes()));
    }

    #[test]
    fn names() {
        assert_eq!(split_name("docker.io/library/busybox:latest"), ("docker.io/library/busybox", Some("latest"), None));
        assert_eq!(split_name("localhost:5000/x/y"), ("localhost:5000/x/y", None, None));
        assert_eq!(split_name("localhost:5000/x/y:t"), ("localhost:5000/x/y", Some("t"), None));
        let dd = d("m").to_string();
        assert_eq!(split_name(&format!("a.io/x@{dd}")), ("a.io/x", None, Some(dd.as_str())));
        assert_eq!(familiar("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(familiar("docker.io/me/x:1"), "me/x:1");
        assert_eq!(familiar("quay.io/me/x:1"), "quay.io/me/x:1");
        let (_, n) = normalise("busybox").unwrap();
        assert_eq!(n, "docker.io/library/busybox:latest");
    }

    #[test]
    fn find_and_index_updates() {
        let mut ix = StoreIndex::default();
        let (m1, c1) = (
            d("m1"),
            Digest::parse("sha256:abcd1111111111111111111111111111111111111111111111111111111111aa").unwrap(),
        );
        let (m2, c2) = (
            d("m2"),
            Digest::parse("sha256:abcd2222222222222222222222222222222222222222222222222222222222bb").unwrap(),
        );
        ix.add_image(&m1, rec(&c1, 1));
        ix.add_image(&m2, rec(&c2, 2));
        let busy = "docker.io/library/busybox:latest";
        assert_eq!(ix.set_ref(busy, &m1), None);
        assert_eq!(ix.set_ref(busy, &m1), Some(m1.clone()));
        let q = |ix: &StoreIndex, s: &str| {
            let r = if s.starts_with("sha256:") { None } else { Reference::parse(s).ok() };
            ix.find(s, r.as_ref())
        };
        assert_eq!(q(&ix, "busybox").unwrap(), m1);
        assert_eq!(q(&ix, "busybox:latest").unwrap(), m1);
        assert_eq!(q(&ix, busy).unwrap(), m1);
        assert!(matches!(q(&ix, "busybox:1"), Err(StoreError::NotFound(_))));
        assert!(matches!(q(&ix, "abcd"), Err(StoreError::Ambiguous(..))));
        assert_eq!(q(&ix, "abcd2").unwrap(), m2);
        assert!(matches!(q(&ix, "abc"), Err(StoreError::NotFound(_))));
        assert_eq!(q(&ix, &c2.to_string()).unwrap(), m2);
        assert_eq!(q(&ix, &m2.to_string()).unwrap(), m2);
        assert_eq!(q(&ix, c2.hex()).unwrap(), m2);
        // By repo digest.
        let mut r = ix.images[&m2].clone();
        let idx = d("index");
        r.repo_digests = vec![format!("docker.io/library/alpine@{idx}")];
        ix.add_image(&m2, r);
        assert_eq!(q(&ix, &format!("alpine@{idx}")).unwrap(), m2);
        // Same config under two manifests: the newest wins, and a prefix is not ambiguous.
        let m3 = d("m3");
        ix.add_image(&m3, rec(&c2, 5));
        assert_eq!(q(&ix, "abcd2").unwrap(), m3);
        // Re-adding keeps the repo digests learnt before.
        ix.add_image(&m2, rec(&c2, 6));
        assert_eq!(ix.images[&m2].repo_digests.len(), 1);
        assert_eq!(ix.names_of(&m1), vec![busy.to_string()]);
        let (blobs, _) = ix.referenced();
        assert!(blobs.contains(m3.hex()) && blobs.contains(c1.hex()));
        // Round trip through JSON.
        let j = serde_json::to_string(&ix).unwrap();
        let back: StoreIndex = serde_json::from_str(&j).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), j);
    }

    #[test]
    fn compressed_forms_live_with_their_layer() {
        let mut ix = StoreIndex::default();
        let (plain, gz, other) = (d("plain"), d("gz"), d("other-gz"));
        let mut r = rec(&d("cfg"), 1);
        r.layers = vec![Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest: plain.clone(),
            size: 1,
            platform: None,
            annotations: None,
            urls: None,
        }];
        ix.add_image(&d("m"), r);
        ix.compressed.insert(plain.clone(), CompressedBlob { digest: gz.clone(), size: 1 });
        ix.compressed.insert(d("gone"), CompressedBlob { digest: other.clone(), size: 1 });
        let (blobs, _) = ix.referenced();
        assert!(blobs.contains(gz.hex()) && !blobs.contains(other.hex()));
        assert!(ix.drop_unused_compressed());
        assert_eq!(ix.compressed.keys().collect::<Vec<_>>(), vec![&plain]);
        assert!(!ix.drop_unused_compressed());
        ix.images.clear();
        assert!(ix.drop_unused_compressed() && ix.compressed.is_empty());
    }

    #[test]
    fn users() {
        assert!(check_user("0123abc").is_ok());
        assert!(check_user("mount-abc").is_ok());
        assert!(check_user("../x").is_err());
        assert!(check_user(".x").is_err());
        assert!(check_user("").is_err());
    }
}
