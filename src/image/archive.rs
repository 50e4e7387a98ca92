//! `berth image load`: docker save archives (classic `<id>/layer.tar` layout and docker
//! 25+'s OCI-style `blobs/sha256/`) and OCI image layouts (a directory or a tar), any tar
//! optionally gzip- or zstd-compressed.
//!
//! A tar is read once, in whatever order its entries come: every file is staged under the
//! store's tmp/ while hashed. Only when all blobs of all images check out (digests, sizes,
//! and each layer's diff id, by unpacking it into a snapshot under tmp/) does anything move
//! into the store, so a bad archive leaves the store unchanged.

use super::digest::Digest;
use super::pull::{check_manifest, select_manifest, PullError};
use super::store::{
    chain_ids, familiar, normalise, now_secs, ImageRecord, PreparedSnapshot, StagedBlob, Store, StoreError, WriteGuard,
};
use super::tarread::{Contents, Kind, Reader, TarError};
use super::types::{self, Descriptor, ImageConfig, Index, Manifest};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Largest JSON document (manifest, config, index) read into memory.
const MAX_JSON: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {source}", path.display())]
    Pull { path: PathBuf, source: PullError },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    #[error("{}: {entry}: {source}", path.display())]
    Json { path: PathBuf, entry: String, source: serde_json::Error },
    #[error("{}: {entry} is missing from the archive", path.display())]
    Missing { path: PathBuf, entry: String },
    #[error("{}: {entry}: digest mismatch (expected {expected}, got {got})", path.display())]
    DigestMismatch { path: PathBuf, entry: String, expected: Digest, got: Digest },
    #[error("{}: {entry}: size mismatch (expected {expected} bytes, got {got})", path.display())]
    SizeMismatch { path: PathBuf, entry: String, expected: u64, got: u64 },
}

/// One entry of a docker save `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct DockerSaveEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

pub fn parse_docker_manifest(data: &[u8]) -> Result<Vec<DockerSaveEntry>, serde_json::Error> {
    serde_json::from_slice(data)
}

/// The schema2 manifest berth records for a docker save image (docker save carries none,
/// but the store keys images by manifest digest). Deterministic, so loading the same
/// archive twice gives the same digest.
pub fn docker_manifest(config: &Digest, config_size: u64, layers: &[(Digest, u64, &str)]) -> Vec<u8> {
    let m = Manifest {
        schema_version: 2,
        media_type: Some(types::DOCKER_MANIFEST.to_string()),
        config: desc(types::DOCKER_CONFIG, config, config_size),
        layers: layers.iter().map(|(d, s, mt)| desc(mt, d, *s)).collect(),
        annotations: None,
    };
    serde_json::to_vec(&m).unwrap_or_default()
}

fn desc(mt: &str, d: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: mt.to_string(),
        digest: d.clone(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        platform: None,
        annotations: None,
        urls: None,
    }
}

/// Layer media type (docker schema2 names) from a layer's first bytes.
pub fn sniff_layer_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        types::DOCKER_LAYER_GZIP
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        types::OCI_LAYER_ZSTD
    } else {
        types::DOCKER_LAYER
    }
}

/// A path inside an archive with `.`, `..` and empty components resolved; None when it
/// climbs above the root.
pub fn norm(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            x => parts.push(x),
        }
    }
    Some(parts.join("/"))
}

/// Image names an OCI index descriptor carries: `io.containerd.image.name`, else a full
/// `org.opencontainers.image.ref.name` (a bare tag like `v1` names no repository).
pub fn annotation_names(d: &Descriptor) -> Vec<String> {
    let Some(a) = &d.annotations else { return Vec::new() };
    let candidates = [a.get("io.containerd.image.name"), a.get("org.opencontainers.image.ref.name")];
    for c in candidates.into_iter().flatten() {
        if !(c.contains('/') || c.contains(':') || c.contains('@')) {
            continue;
        }
        if let Ok((_, n)) = normalise(c) {
            return vec![n];
        }
    }
    Vec::new()
}

/// Where the archive's files are: staged from a tar, or read from a layout directory.
struct Source<'s> {
    store: &'s Store,
    g: &'s WriteGuard,
    input: PathBuf,
    dir: Option<PathBuf>,
    files: HashMap<String, StagedBlob>,
    links: HashMap<String, String>,
}

impl<'s> Source<'s> {
    fn resolve(&self, p: &str) -> String {
        let mut cur = p.to_string();
        for _ in 0..16 {
            match self.links.get(&cur) {
                Some(t) => cur = t.clone(),
                None => break,
            }
        }
        cur
    }

    /// Stages every file of a tar stream.
    fn read_tar(&mut self, r: impl Read) -> Result<(), ArchiveError> {
        let mut tr = Reader::new(r);
        let bad = |e: TarError| ArchiveError::Format { path: self.input.clone(), msg: format!("reading the tar: {e}") };
        while let Some(e) = tr.next().map_err(bad)? {
            let raw = String::from_utf8_lossy(&e.name).into_owned();
            let Some(path) = norm(&raw) else { continue };
            let kind = e.kind;
            if kind == Kind::File {
                let mut w = self.store.stage(self.g)?;
                if let Err(err) = io::copy(&mut Contents::new(&mut tr, &e), &mut w) {
                    return Err(match w.write_error() {
                        Some(we) => ArchiveError::Store(we),
                        None => ArchiveError::Io { path: self.input.clone(), source: err },
                    });
                }
                self.files.insert(path, w.finish()?);
            } else if kind == Kind::Symlink || kind == Kind::Hardlink {
                let target = String::from_utf8_lossy(&e.link).into_owned();
                let full = if kind == Kind::Symlink && !target.starts_with('/') {
                    match path.rsplit_once('/') {
                        Some((parent, _)) => format!("{parent}/{target}"),
                        None => target,
                    }
                } else {
                    target
                };
                if let Some(t) = norm(&full) {
                    self.links.insert(path, t);
                }
            }
        }
        Ok(())
    }

    fn has(&self, p: &str) -> bool {
        match &self.dir {
            Some(d) => d.join(p).is_file(),
            None => self.files.contains_key(&self.resolve(p)),
        }
    }

    /// The staged copy of an archive file (staged now, for a layout directory).
    fn get(&mut self, p: &str) -> Result<&StagedBlob, ArchiveError> {
        let key = self.resolve(p);
        if !self.files.contains_key(&key) {
            let Some(dir) = &self.dir else {
                return Err(ArchiveError::Missing { path: self.input.clone(), entry: p.to_string() });
            };
            let src = dir.join(&key);
            let mut f = match File::open(&src) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(ArchiveError::Missing { path: self.input.clone(), entry: p.to_string() })
                }
                Err(e) => return Err(ArchiveError::Io { path: src, source: e }),
            };
            let mut w = self.store.stage(self.g)?;
            if let Err(err) = io::copy(&mut f, &mut w) {
                return Err(match w.write_error() {
                    Some(we) => ArchiveError::Store(we),
                    None => ArchiveError::Io { path: src, source: err },
                });
            }
            self.files.insert(key.clone(), w.finish()?);
        }
        self.files.get(&key).ok_or_else(|| ArchiveError::Missing { path: self.input.clone(), entry: p.to_string() })
    }

    fn read_small(&mut self, p: &str) -> Result<Vec<u8>, ArchiveError> {
        let input = self.input.clone();
        let s = self.get(p)?;
        if s.size > MAX_JSON {
            return Err(ArchiveError::Format { path: input, msg: format!("{p}: {} bytes is too large", s.size) });
        }
        std::fs::read(s.path()).map_err(|source| ArchiveError::Io { path: s.path().to_path_buf(), source })
    }

    /// A blob at `blobs/sha256/<hex>`, checked against its name (and size, when known).
    fn blob(&mut self, d: &Digest, size: Option<u64>) -> Result<(Digest, u64), ArchiveError> {
        let entry = format!("blobs/sha256/{}", d.hex());
        self.checked(&entry, d, size)
    }

    fn checked(&mut self, entry: &str, d: &Digest, size: Option<u64>) -> Result<(Digest, u64), ArchiveError> {
        let input = self.input.clone();
        let s = self.get(entry)?;
        if s.digest != *d {
            return Err(ArchiveError::DigestMismatch {
                path: input,
                entry: entry.to_string(),
                expected: d.clone(),
                got: s.digest.clone(),
            });
        }
        if let Some(n) = size {
            if n != s.size {
                return Err(ArchiveError::SizeMismatch {
                    path: input,
                    entry: entry.to_string(),
                    expected: n,
                    got: s.size,
                });
            }
        }
        Ok((s.digest.clone(), s.size))
    }
}

/// An image found in the archive, checked and ready to go into the store.
struct Candidate {
    manifest: Vec<u8>,
    manifest_digest: Digest,
    config_digest: Digest,
    config: ImageConfig,
    layers: Vec<Descriptor>,
    /// Archive path of each layer (None: the store has it already).
    layer_paths: Vec<Option<String>>,
    config_path: String,
    names: Vec<String>,
    /// Extra blobs (an index a manifest was chosen from): (digest, archive path).
    extra: Vec<(Digest, String)>,
}

/// What `load` put into the store.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    pub names: Vec<String>,
}

/// Loads every image of an archive or layout. Prints docker's `Loaded image: NAME` /
/// `Loaded image ID: sha256:..` lines to `out`.
pub fn load(store: &Store, input: &Path, out: &mut dyn io::Write) -> Result<Vec<Loaded>, ArchiveError> {
    let stdin = input.as_os_str() == "-";
    let is_dir = !stdin
        && std::fs::metadata(input).map_err(|source| ArchiveError::Io { path: input.to_path_buf(), source })?.is_dir();
    let g = store.write_guard()?;
    let mut src = Source {
        store,
        g: &g,
        input: if stdin { PathBuf::from("stdin") } else { input.to_path_buf() },
        dir: is_dir.then(|| input.to_path_buf()),
        files: HashMap::new(),
        links: HashMap::new(),
    };
    if !is_dir {
        let f: Box<dyn Read> = if stdin {
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(input).map_err(|source| ArchiveError::Io { path: input.to_path_buf(), source })?)
        };
        let mut br = BufReader::with_capacity(256 * 1024, f);
        let head = br.fill_buf().map_err(|source| ArchiveError::Io { path: input.to_path_buf(), source })?.to_vec();
        if head.starts_with(&[0x1f, 0x8b]) {
            src.read_tar(flate2::read::MultiGzDecoder::new(br))?;
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let z = zstd::stream::read::Decoder::with_buffer(br)
                .map_err(|source| ArchiveError::Io { path: input.to_path_buf(), source })?;
            src.read_tar(z)?;
        } else {
            src.read_tar(br)?;
        }
    }
    let input = src.input.clone();
    let input = input.as_path();
    let cands = if src.has("index.json") {
        oci_candidates(&mut src)?
    } else if src.has("manifest.json") {
        docker_candidates(&mut src)?
    } else {
        return Err(ArchiveError::Format {
            path: input.to_path_buf(),
            msg: "neither a docker save archive nor an OCI image layout (no manifest.json or index.json)".into(),
        });
    };
    if cands.is_empty() {
        return Err(ArchiveError::Format { path: input.to_path_buf(), msg: "no image in the archive".into() });
    }

    // Unpack every layer into a snapshot under tmp/ (checking diff ids) before anything
    // enters the store; up to PARALLEL layers at a time.
    struct Job {
        chain: Digest,
        diff_id: Digest,
        blob: Digest,
        staged: Option<PathBuf>,
    }
    let mut jobs: Vec<Job> = Vec::new();
    let mut queued: BTreeSet<Digest> = BTreeSet::new();
    for c in &cands {
        for (i, chain) in chain_ids(&c.config.rootfs.diff_ids).into_iter().enumerate() {
            if store.has_snapshot(&chain) || !queued.insert(chain.clone()) {
                continue;
            }
            let staged = match &c.layer_paths[i] {
                Some(p) => Some(src.get(p)?.path().to_path_buf()),
                None => None,
            };
            jobs.push(Job {
                chain,
                diff_id: c.config.rootfs.diff_ids[i].clone(),
                blob: c.layers[i].digest.clone(),
                staged,
            });
        }
    }
    let results =
        run_parallel(&jobs, |j| store.prepare_snapshot(&g, &j.chain, &j.diff_id, &j.blob, j.staged.as_deref(), false))?;
    let mut prepared: Vec<PreparedSnapshot> = Vec::new();
    let mut chain_bytes: HashMap<Digest, u64> = HashMap::new();
    for (j, r) in jobs.iter().zip(results) {
        if let Some(p) = r {
            chain_bytes.insert(j.chain.clone(), p.bytes);
            prepared.push(p);
        }
    }
    let sizes: Vec<u64> = cands
        .iter()
        .map(|c| {
            chain_ids(&c.config.rootfs.diff_ids)
                .iter()
                .map(|ch| chain_bytes.get(ch).copied().or_else(|| store.snapshot_bytes(ch)).unwrap_or(0))
                .sum()
        })
        .collect();
    if !prepared.is_empty() {
        store.sync_tmp()?;
        for p in &mut prepared {
            p.mark_synced();
        }
    }
    // Commit: blobs, snapshots, then the index.
    let mut adopted: BTreeSet<Digest> = BTreeSet::new();
    for c in &cands {
        let mut wanted: Vec<(Digest, String)> = vec![(c.config_digest.clone(), c.config_path.clone())];
        for (l, p) in c.layers.iter().zip(&c.layer_paths) {
            if let Some(p) = p {
                wanted.push((l.digest.clone(), p.clone()));
            }
        }
        wanted.extend(c.extra.iter().cloned());
        for (d, p) in wanted {
            if adopted.contains(&d) || store.has_blob(&d, None) {
                continue;
            }
            let key = src.resolve(&p);
            if let Some(s) = src.files.remove(&key) {
                store.adopt(&g, s)?;
            }
            adopted.insert(d);
        }
        store.write_blob(&g, &c.manifest)?;
    }
    for p in prepared {
        p.commit()?;
    }
    let mut loaded = Vec::new();
    {
        let mut il = store.lock_index()?;
        for (c, size) in cands.iter().zip(&sizes) {
            let chains = chain_ids(&c.config.rootfs.diff_ids);
            il.index.add_image(
                &c.manifest_digest,
                ImageRecord {
                    config: c.config_digest.clone(),
                    layers: c.layers.clone(),
                    chain_ids: chains,
                    created: c.config.created.clone(),
                    size: *size,
                    repo_digests: Vec::new(),
                    extra_blobs: c.extra.iter().map(|(d, _)| d.clone()).collect(),
                    added: now_secs(),
                },
            );
            for n in &c.names {
                il.index.set_ref(n, &c.manifest_digest);
            }
            loaded.push(Loaded { id: c.config_digest.clone(), names: c.names.clone() });
        }
        il.save()?;
    }
    drop(g);
    for l in &loaded {
        if l.names.is_empty() {
            let _ = writeln!(out, "Loaded image ID: {}", l.id);
        }
        for n in &l.names {
            let _ = writeln!(out, "Loaded image: {}", familiar(n));
        }
    }
    Ok(loaded)
}

/// Layers unpacked at the same time.
const PARALLEL: usize = 3;

/// `f` over every job, PARALLEL at a time; stops taking new jobs after an error. The
/// results in job order, or the first error in job order.
fn run_parallel<J: Sync, T: Send, E: Send>(jobs: &[J], f: impl Fn(&J) -> Result<T, E> + Sync) -> Result<Vec<T>, E> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Mutex<Vec<Option<Result<T, E>>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(jobs.len()) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(j) = jobs.get(i) else { break };
                let r = f(j);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    let slots = slots.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(slots.len());
    let mut skipped = false;
    for r in slots {
        match r {
            Some(r) => out.push(r?),
            None => skipped = true, // not run because another job failed: its error follows
        }
    }
    debug_assert!(!skipped, "a job was skipped without an error");
    Ok(out)
}

fn json<T: serde::de::DeserializeOwned>(src: &Source, entry: &str, data: &[u8]) -> Result<T, ArchiveError> {
    serde_json::from_slice(data).map_err(|source| ArchiveError::Json {
        path: src.input.clone(),
        entry: entry.to_string(),
        source,
    })
}

/// Checks a manifest's config and layers in the archive and builds the candidate.
fn candidate_from_manifest(
    src: &mut Source,
    manifest: Vec<u8>,
    manifest_digest: Digest,
    names: Vec<String>,
    extra: Vec<(Digest, String)>,
) -> Result<Candidate, ArchiveError> {
    let entry = format!("blobs/sha256/{}", manifest_digest.hex());
    let m: Manifest = json(src, &entry, &manifest)?;
    check_manifest(&m).map_err(|source| ArchiveError::Pull { path: src.input.clone(), source })?;
    src.blob(&m.config.digest, u64::try_from(m.config.size).ok())?;
    let config_path = format!("blobs/sha256/{}", m.config.digest.hex());
    let cdata = src.read_small(&config_path)?;
    let config: ImageConfig = json(src, &config_path, &cdata)?;
    check_layer_count(src, &config, m.layers.len())?;
    let mut layer_paths = Vec::new();
    for l in &m.layers {
        let size = u64::try_from(l.size).ok();
        let p = format!("blobs/sha256/{}", l.digest.hex());
        if !src.has(&p) && src.store.has_blob(&l.digest, size) {
            layer_paths.push(None);
            continue;
        }
        src.blob(&l.digest, size)?;
        layer_paths.push(Some(p));
    }
    Ok(Candidate {
        manifest,
        manifest_digest,
        config_digest: m.config.digest.clone(),
        config,
        layers: m.layers,
        layer_paths,
        config_path,
        names,
        extra,
    })
}

fn check_layer_count(src: &Source, config: &ImageConfig, layers: usize) -> Result<(), ArchiveError> {
    if config.rootfs.diff_ids.len() != layers {
        return Err(ArchiveError::Format {
            path: src.input.clone(),
            msg: format!("image config lists {} diff ids for {layers} layers", config.rootfs.diff_ids.len()),
        });
    }
    Ok(())
}

/// Images of an OCI layout (also inside docker 25+ save archives).
fn oci_candidates(src: &mut Source) -> Result<Vec<Candidate>, ArchiveError> {
    let data = src.read_small("index.json")?;
    let idx: Index = json(src, "index.json", &data)?;
    let host = types::host_platform();
    // Several platforms listed at the top: keep the host's, when there is one.
    let any_host =
        idx.manifests.iter().any(|d| d.platform.as_ref().is_some_and(|p| super::pull::platform_matches(&host, p)));
    // RepoTags of a docker 25+ archive, by config digest, for descriptors without names.
    let mut docker_tags: HashMap<String, Vec<String>> = HashMap::new();
    if src.has("manifest.json") {
        let md = src.read_small("manifest.json")?;
        if let Ok(entries) = parse_docker_manifest(&md) {
            for e in entries {
                let key = norm(&e.config).unwrap_or_default();
                docker_tags.entry(key).or_default().extend(e.repo_tags.unwrap_or_default());
            }
        }
    }
    let mut by_digest: BTreeMap<Digest, Candidate> = BTreeMap::new();
    for d in &idx.manifests {
        if any_host && d.platform.as_ref().is_some_and(|p| !super::pull::platform_matches(&host, p)) {
            continue;
        }
        let names = annotation_names(d);
        let (mdesc, extra) = if types::is_index(&d.media_type) {
            src.blob(&d.digest, u64::try_from(d.size).ok())?;
            let entry = format!("blobs/sha256/{}", d.digest.hex());
            let nd = src.read_small(&entry)?;
            let nested: Index = json(src, &entry, &nd)?;
            let m = select_manifest(&nested, &host)
                .map_err(|source| ArchiveError::Pull { path: src.input.clone(), source })?;
            let mut extra = vec![(d.digest.clone(), entry)];
            // The other platforms whose every blob the layout holds are kept with the image
            // (not unpacked), so that a push can send the whole index.
            for o in nested.manifests.iter().filter(|o| o.digest != m.digest) {
                extra.extend(platform_blobs(src, o)?);
            }
            (m.clone(), extra)
        } else if d.media_type.is_empty() || types::is_manifest(&d.media_type) {
            (d.clone(), Vec::new())
        } else {
            continue; // an artifact berth does not run
        };
        if let Some(c) = by_digest.get_mut(&mdesc.digest) {
            for n in names {
                if !c.names.contains(&n) {
                    c.names.push(n);
                }
            }
            continue;
        }
        src.blob(&mdesc.digest, u64::try_from(mdesc.size).ok())?;
        let mdata = src.read_small(&format!("blobs/sha256/{}", mdesc.digest.hex()))?;
        let c = candidate_from_manifest(src, mdata, mdesc.digest.clone(), names, extra)?;
        by_digest.insert(mdesc.digest.clone(), c);
    }
    let mut out: Vec<Candidate> = by_digest.into_values().collect();
    for c in &mut out {
        if c.names.is_empty() {
            if let Some(tags) = docker_tags.get(&c.config_path) {
                c.names = tags.iter().filter_map(|t| normalise(t).ok().map(|(_, n)| n)).collect();
            }
        }
        c.names.sort();
        c.names.dedup();
    }
    Ok(out)
}

/// The blobs (manifest, config, layers) of one platform's manifest `d` of an index, each
/// checked against its digest: none when the layout lacks any of them or `d` is not an image
/// manifest.
fn platform_blobs(src: &mut Source, d: &Descriptor) -> Result<Vec<(Digest, String)>, ArchiveError> {
    let entry = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    if !(d.media_type.is_empty() || types::is_manifest(&d.media_type)) || !src.has(&entry(&d.digest)) {
        return Ok(Vec::new());
    }
    src.blob(&d.digest, u64::try_from(d.size).ok())?;
    let data = src.read_small(&entry(&d.digest))?;
    let m: types::Manifest = json(src, &entry(&d.digest), &data)?;
    let mut out = vec![(d.digest.clone(), entry(&d.digest))];
    for b in std::iter::once(&m.config).chain(m.layers.iter()) {
        if !src.has(&entry(&b.digest)) {
            return Ok(Vec::new());
        }
        src.blob(&b.digest, u64::try_from(b.size).ok())?;
        out.push((b.digest.clone(), entry(&b.digest)));
    }
    Ok(out)
}

/// Images of a classic docker save archive (`manifest.json` with paths to the config and
/// the layer tars).
fn docker_candidates(src: &mut Source) -> Result<Vec<Candidate>, ArchiveError> {
    let data = src.read_small("manifest.json")?;
    let entries: Vec<DockerSaveEntry> = json(src, "manifest.json", &data)?;
    let mut out: Vec<Candidate> = Vec::new();
    for e in entries {
        let config_path = norm(&e.config).unwrap_or_default();
        let cdata = src.read_small(&config_path)?;
        let config_digest = Digest::of(&cdata);
        let config: ImageConfig = json(src, &config_path, &cdata)?;
        check_layer_count(src, &config, e.layers.len())?;
        let mut layers = Vec::new();
        let mut layer_paths = Vec::new();
        for l in &e.layers {
            let p = norm(l).unwrap_or_default();
            let s = src.get(&p)?;
            let mut head = [0u8; 4];
            let n = File::open(s.path()).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
            layers.push((s.digest.clone(), s.size, sniff_layer_type(&head[..n])));
            layer_paths.push(Some(p));
        }
        // A layer named by its digest must have that digest.
        for (l, p) in layers.iter().zip(&layer_paths) {
            if let Some(hex) = p.as_deref().and_then(|p| p.strip_prefix("blobs/sha256/")) {
                if hex != l.0.hex() {
                    let expected = Digest::parse(&format!("sha256:{hex}")).unwrap_or_else(|_| l.0.clone());
                    return Err(ArchiveError::DigestMismatch {
                        path: src.input.clone(),
                        entry: p.clone().unwrap_or_default(),
                        expected,
                        got: l.0.clone(),
                    });
                }
            }
        }
        if let Some(hex) = config_path.strip_prefix("blobs/sha256/") {
            if hex != config_digest.hex() {
                let expected = Digest::parse(&format!("sha256:{hex}")).unwrap_or_else(|_| config_digest.clone());
                return Err(ArchiveError::DigestMismatch {
                    path: src.input.clone(),
                    entry: config_path,
                    expected,
                    got: config_digest,
                });
            }
        }
        let manifest = docker_manifest(&config_digest, cdata.len() as u64, &layers);
        let manifest_digest = Digest::of(&manifest);
        let mut names: Vec<String> =
            e.repo_tags.unwrap_or_default().iter().filter_map(|t| normalise(t).ok().map(|(_, n)| n)).collect();
        names.sort();
        names.dedup();
        if let Some(c) = out.iter_mut().find(|c| c.manifest_digest == manifest_digest) {
            c.names.extend(names);
            c.names.sort();
            c.names.dedup();
            continue;
        }
        let m: Manifest = serde_json::from_slice(&manifest).map_err(|source| ArchiveError::Json {
            path: src.input.clone(),
            entry: "manifest.json".into(),
            source,
        })?;
        out.push(Candidate {
            manifest,
            manifest_digest,
            config_digest,
            config,
            layers: m.layers,
            layer_paths,
            config_path,
            names,
            extra: Vec::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_save_manifest() {
        let j = br#"[{"Config":"abc.json","RepoTags":["busybox:latest","me/x:1"],"Layers":["l1/layer.tar","./l2/layer.tar"]},
                    {"Config":"blobs/sha256/ff","RepoTags":null,"Layers":[]}]"#;
        let e = parse_docker_manifest(j).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].repo_tags.as_ref().unwrap()[1], "me/x:1");
        assert_eq!(norm(&e[0].layers[1]).unwrap(), "l2/layer.tar");
        assert!(e[1].repo_tags.is_none());
        let c = Digest::of(b"config");
        let l = Digest::of(b"layer");
        let m = docker_manifest(&c, 6, &[(l.clone(), 5, types::DOCKER_LAYER)]);
        let back: Manifest = serde_json::from_slice(&m).unwrap();
        assert_eq!(back.media_type.as_deref(), Some(types::DOCKER_MANIFEST));
        assert_eq!(back.config.media_type, types::DOCKER_CONFIG);
        assert_eq!(back.layers[0].digest, l);
        assert_eq!(Digest::of(&m), Digest::of(&docker_manifest(&c, 6, &[(l, 5, types::DOCKER_LAYER)])));
        assert!(check_manifest(&back).is_ok());
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(norm("./a//b/./c").unwrap(), "a/b/c");
        assert_eq!(norm("a/../b").unwrap(), "b");
        assert!(norm("../x").is_none());
        assert_eq!(sniff_layer_type(&[0x1f, 0x8b, 8, 0]), types::DOCKER_LAYER_GZIP);
        assert_eq!(sniff_layer_type(b"abc"), types::DOCKER_LAYER);
        let mut d = desc(types::OCI_MANIFEST, &Digest::of(b"m"), 1);
        let mut a = BTreeMap::new();
        a.insert("org.opencontainers.image.ref.name".to_string(), "v1".to_string());
        d.annotations = Some(a.clone());
        assert!(annotation_names(&d).is_empty());
        a.insert("org.opencontainers.image.ref.name".to_string(), "busybox:1.36".to_string());
        d.annotations = Some(a.clone());
        assert_eq!(annotation_names(&d), vec!["docker.io/library/busybox:1.36".to_string()]);
        a.insert("io.containerd.image.name".to_string(), "localhost:5000/x/y:t".to_string());
        d.annotations = Some(a);
        assert_eq!(annotation_names(&d), vec!["localhost:5000/x/y:t".to_string()]);
    }
}
