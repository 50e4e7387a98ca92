//! `berth image pull`: manifest (choosing the platform from an index), config, then the
//! layers fetched in parallel (up to 3 at a time), each unpacked while it downloads (see
//! `fetch_layer`), then the name recorded.

use super::chunks;
use super::digest::Digest;
use super::reference::Reference;
use super::registry::{Client, RegistryError};
use super::store::{canonical_name, chain_ids, familiar, now_secs, ImageRecord, Store, StoreError, WriteGuard};
use super::types::{self, Descriptor, ImageConfig, Index, Manifest, Platform};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Layers fetched at the same time.
const PARALLEL: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unsupported media type {0} in manifest")]
    MediaType(String),
    #[error("no matching manifest for {want} in the manifest list entries (available: {available})")]
    NoPlatform { want: String, available: String },
    #[error("invalid platform {0:?}: expected os/arch[/variant]")]
    BadPlatform(String),
    #[error("{what} {digest}: {source}")]
    Json { what: &'static str, digest: Digest, source: serde_json::Error },
    #[error("manifest {0}: digest of the content is {1}")]
    ManifestDigest(Digest, Digest),
    #[error("image config {digest}: {diff_ids} diff ids for {layers} layers")]
    LayerCount { digest: Digest, diff_ids: usize, layers: usize },
    #[error("manifest list {0} lists another manifest list")]
    NestedIndex(Digest),
}

/// "os/arch[/variant]".
pub fn parse_platform(s: &str) -> Result<Platform, PullError> {
    let parts: Vec<&str> = s.split('/').collect();
    let ok =
        |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
        return Err(PullError::BadPlatform(s.to_string()));
    }
    Ok(Platform {
        os: parts[0].to_ascii_lowercase(),
        architecture: parts[1].to_ascii_lowercase(),
        variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        os_version: None,
    })
}

pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Whether an image of platform `have` runs on `want`. A wanted variant must match
/// (arm64 without a variant is v8); no wanted variant accepts any.
pub fn platform_matches(want: &Platform, have: &Platform) -> bool {
    if want.os != have.os || want.architecture != have.architecture {
        return false;
    }
    match (&want.variant, &have.variant) {
        (Some(w), Some(h)) => w == h,
        (Some(w), None) => want.architecture == "arm64" && w == "v8",
        (None, _) => true,
    }
}

/// The manifest of an index for platform `want`: the first match with the same variant
/// when one was asked for, else the first match.
pub fn select_manifest<'a>(idx: &'a Index, want: &Platform) -> Result<&'a Descriptor, PullError> {
    let usable = |d: &&Descriptor| {
        d.media_type.is_empty() || types::is_manifest(&d.media_type) || types::is_index(&d.media_type)
    };
    let found =
        idx.manifests.iter().filter(usable).find(|d| d.platform.as_ref().is_some_and(|p| platform_matches(want, p)));
    if let Some(d) = found {
        return Ok(d);
    }
    // An index without platforms and a single manifest (e.g. an OCI layout) is that image.
    let plain: Vec<&Descriptor> = idx.manifests.iter().filter(usable).collect();
    if plain.len() == 1 && plain[0].platform.is_none() {
        return Ok(plain[0]);
    }
    let mut avail: Vec<String> = idx
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(platform_string)
        .collect();
    avail.dedup();
    Err(PullError::NoPlatform {
        want: platform_string(want),
        available: if avail.is_empty() { "none".into() } else { avail.join(", ") },
    })
}

/// Media type of a manifest: the one the registry sent, else the document's own field.
pub fn manifest_media_type(sent: &str, data: &[u8]) -> String {
    if !sent.is_empty() && sent != "application/json" && sent != "text/plain" {
        return sent.to_string();
    }
    #[derive(serde::Deserialize)]
    struct Mt {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Mt>(data) {
        Ok(Mt { media_type: Some(m), .. }) => m,
        Ok(Mt { manifests: Some(_), .. }) => types::OCI_INDEX.to_string(),
        Ok(_) => types::OCI_MANIFEST.to_string(),
        Err(_) => sent.to_string(),
    }
}

/// Checks that berth can use every part of a manifest.
pub fn check_manifest(m: &Manifest) -> Result<(), PullError> {
    let ct = m.config.media_type.as_str();
    if !(ct == types::OCI_CONFIG || ct == types::DOCKER_CONFIG) {
        return Err(PullError::MediaType(ct.to_string()));
    }
    for l in &m.layers {
        if types::layer_compression(&l.media_type).is_none() {
            return Err(PullError::MediaType(l.media_type.clone()));
        }
    }
    Ok(())
}

pub struct PullOptions {
    pub platform: Option<Platform>,
    pub quiet: bool,
}

/// Decimal size with one decimal, as the progress shows it ("3.2 MB").
pub fn progress_size(n: u64) -> String {
    let f = n as f64;
    if n < 1000 {
        format!("{n} B")
    } else if n < 1_000_000 {
        format!("{:.1} kB", f / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.1} MB", f / 1e6)
    } else {
        format!("{:.2} GB", f / 1e9)
    }
}

struct ProgressState {
    lines: Vec<(String, String)>,
    drawn: usize,
    last: Instant,
}

/// Per-layer progress: redrawn lines on a terminal, one line per event otherwise.
pub(super) struct Progress {
    pub(super) tty: bool,
    quiet: bool,
    st: Mutex<ProgressState>,
}

impl Progress {
    pub(super) fn new(quiet: bool) -> Progress {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(1) } == 1;
        Progress { tty, quiet, st: Mutex::new(ProgressState { lines: Vec::new(), drawn: 0, last: Instant::now() }) }
    }

    pub(super) fn add(&self, id: &str) -> usize {
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        st.lines.push((id.to_string(), "Waiting".into()));
        st.lines.len() - 1
    }

    /// `plain` is the line printed when not on a terminal (None: nothing).
    pub(super) fn set(&self, i: usize, status: String, plain: Option<String>, force: bool) {
        if self.quiet {
            return;
        }
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = st.lines.get_mut(i) {
            l.1 = status;
        }
        let mut out = io::stdout().lock();
        if !self.tty {
            if let (Some(p), Some(l)) = (plain, st.lines.get(i)) {
                let _ = writeln!(out, "{}: {p}", l.0);
            }
            return;
        }
        if !force && st.last.elapsed() < Duration::from_millis(100) {
            return;
        }
        st.last = Instant::now();
        let mut s = String::new();
        if st.drawn > 0 {
            s.push_str(&format!("\x1b[{}A", st.drawn));
        }
        for (id, status) in &st.lines {
            s.push_str(&format!("\x1b[2K{id}: {status}\n"));
        }
        st.drawn = st.lines.len();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }
}

/// Pulls `reference` into the store. Prints progress and docker's closing lines on
/// stdout (only the name with `quiet`). Returns the digest of the manifest recorded (the
/// platform's one for a multi-platform image).
pub fn pull(store: &Store, client: &Client, reference: &Reference, opts: &PullOptions) -> Result<Digest, PullError> {
    let name = canonical_name(reference);
    let repo = format!("{}/{}", reference.registry, reference.repository);
    let (top, top_type, top_digest) = client.get_manifest(reference)?;
    let top_type = manifest_media_type(&top_type, &top);
    let want = opts.platform.clone().unwrap_or_else(types::host_platform);
    let (mdata, mdigest, index_blob) = if types::is_index(&top_type) {
        let idx: Index = serde_json::from_slice(&top).map_err(|source| PullError::Json {
            what: "manifest list",
            digest: top_digest.clone(),
            source,
        })?;
        let desc = select_manifest(&idx, &want)?;
        let (data, mt, d) = client.get_manifest_by_digest(reference, &desc.digest)?;
        let mt = manifest_media_type(&mt, &data);
        if types::is_index(&mt) {
            return Err(PullError::NestedIndex(top_digest));
        }
        if !types::is_manifest(&mt) {
            return Err(PullError::MediaType(mt));
        }
        (data, d, Some(top))
    } else if types::is_manifest(&top_type) {
        (top, top_digest.clone(), None)
    } else {
        return Err(PullError::MediaType(top_type));
    };
    let got = Digest::of(&mdata);
    if got != mdigest {
        return Err(PullError::ManifestDigest(mdigest, got));
    }
    let manifest: Manifest = serde_json::from_slice(&mdata).map_err(|source| PullError::Json {
        what: "manifest",
        digest: mdigest.clone(),
        source,
    })?;
    check_manifest(&manifest)?;
    let repo_digest = format!("{repo}@{top_digest}");
    let mut extra = Vec::new();
    if index_blob.is_some() {
        extra.push(top_digest.clone());
    }

    if !opts.quiet {
        let what = match (&reference.tag, &reference.digest) {
            (_, Some(d)) => d.to_string(),
            (Some(t), None) => t.clone(),
            (None, None) => "latest".into(),
        };
        println!("{what}: Pulling from {}", reference.repository);
    }
    // From here on GC waits for this pull, so what is checked present stays present.
    let g = store.write_guard()?;
    // Already complete in the store?
    let index = store.read_index()?;
    if let Some(rec) = index.images.get(&mdigest) {
        let complete = rec.config == manifest.config.digest
            && store.has_blob(&rec.config, None)
            && rec.layers.iter().all(|l| store.has_blob(&l.digest, None))
            && rec.chain_ids.iter().all(|c| store.has_snapshot(c));
        if complete {
            let up_to_date = index.refs.get(&name) == Some(&mdigest);
            if let Some(b) = &index_blob {
                store.write_blob(&g, b)?;
            }
            let mut rec = rec.clone();
            rec.repo_digests = vec![repo_digest];
            rec.extra_blobs = extra;
            record(store, &name, &mdigest, rec)?;
            finish(opts, &name, &top_digest, up_to_date);
            return Ok(mdigest);
        }
    }

    if let Some(b) = &index_blob {
        store.write_blob(&g, b)?;
    }
    store.write_blob(&g, &mdata)?;
    fetch_blob(store, &g, client, reference, &manifest.config, &|_| {})?;
    let cdata = store.read_blob(&manifest.config.digest)?;
    let config: ImageConfig = serde_json::from_slice(&cdata).map_err(|source| PullError::Json {
        what: "image config",
        digest: manifest.config.digest.clone(),
        source,
    })?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(PullError::LayerCount {
            digest: manifest.config.digest.clone(),
            diff_ids: diff_ids.len(),
            layers: manifest.layers.len(),
        });
    }
    let chains = chain_ids(diff_ids);
    let sizes = fetch_layers(store, &g, client, reference, &manifest.layers, diff_ids, &chains, opts.quiet)?;
    let rec = ImageRecord {
        config: manifest.config.digest.clone(),
        layers: manifest.layers.clone(),
        chain_ids: chains,
        created: config.created.clone(),
        size: sizes.iter().sum(),
        repo_digests: vec![repo_digest],
        extra_blobs: extra,
        added: now_secs(),
    };
    record(store, &name, &mdigest, rec)?;
    drop(g);
    finish(opts, &name, &top_digest, false);
    Ok(mdigest)
}

fn record(store: &Store, name: &str, manifest: &Digest, rec: ImageRecord) -> Result<(), StoreError> {
    let mut il = store.lock_index()?;
    il.index.add_image(manifest, rec);
    il.index.set_ref(name, manifest);
    il.save()
}

fn finish(opts: &PullOptions, name: &str, digest: &Digest, up_to_date: bool) {
    if opts.quiet {
        println!("{name}");
        return;
    }
    println!("Digest: {digest}");
    if up_to_date {
        println!("Status: Image is up to date for {}", familiar(name));
    } else {
        println!("Status: Downloaded newer image for {}", familiar(name));
    }
    println!("{name}");
}

/// Fetches a blob unless present; Ok(true) when it was fetched.
fn fetch_blob(
    store: &Store,
    g: &WriteGuard,
    client: &Client,
    r: &Reference,
    desc: &Descriptor,
    progress: &dyn Fn(u64),
) -> Result<bool, PullError> {
    let size = u64::try_from(desc.size).ok();
    let Some(mut ing) = store.begin_ingest(g, &desc.digest, size)? else {
        return Ok(false);
    };
    if let Err(e) = client.get_blob_unverified(r, &desc.digest, &mut ing, size, progress) {
        // A failed write to the store (a full disk) is the real cause, whatever the client says.
        return Err(match ing.write_error() {
            Some(w) => PullError::Store(w),
            None => PullError::Registry(e),
        });
    }
    ing.commit(size)?;
    Ok(true)
}

/// Compressed layer bytes in flight between the download and the unpack of a layer:
/// STREAM_DEPTH chunks of STREAM_CHUNK bytes.
const STREAM_DEPTH: usize = 16;
const STREAM_CHUNK: usize = 256 << 10;

/// Fetches layer `l` and unpacks it into the snapshot `chain` unless that exists; returns
/// the layer's uncompressed size. `downloaded` is called once the blob is in.
///
/// The unpack runs while the blob downloads: the body goes to the blob's ingest file (which
/// hashes it) and, through a bounded in-memory pipe, to an unpacker thread that builds the
/// snapshot under tmp/. The unpacker's stream ends only once the whole blob has been
/// received and its digest and size verified; if they do not match, its stream fails
/// instead and the half-made snapshot is removed. Blob and snapshot are moved into place
/// only when both are complete (after one syncfs of the store's filesystem).
#[allow(clippy::too_many_arguments)]
fn fetch_layer(
    store: &Store,
    g: &WriteGuard,
    client: &Client,
    r: &Reference,
    l: &Descriptor,
    diff_id: &Digest,
    chain: &Digest,
    progress: &dyn Fn(u64),
    downloaded: &dyn Fn(),
) -> Result<u64, PullError> {
    let size = u64::try_from(l.size).ok();
    let Some(mut ing) = store.begin_ingest(g, &l.digest, size)? else {
        // The blob is here (fetched meanwhile by another writer): unpack it from the store.
        downloaded();
        return Ok(store.ensure_snapshot(g, chain, diff_id, &l.digest)?);
    };
    let (w, rd) = chunks::channel(STREAM_DEPTH, STREAM_CHUNK);
    let (fetched, unpacked) = std::thread::scope(|s| {
        let unpacker = s.spawn(move || store.prepare_snapshot_from(g, chain, diff_id, &l.digest, rd, true));
        let mut tee = Tee { ing: &mut ing, pipe: Some(w) };
        let got = client.get_blob_unverified(r, &l.digest, &mut tee, size, progress);
        let pipe = tee.pipe.take();
        let fetched = match got {
            // A failed write to the store (a full disk) is the real cause, whatever the client says.
            Err(e) => Err(match ing.write_error() {
                Some(w) => PullError::Store(w),
                None => PullError::Registry(e),
            }),
            Ok(_) => ing.verify(size).map_err(PullError::Store),
        };
        // The unpacker sees the end of the layer only once it is known to be the right one.
        if let Some(p) = pipe {
            match &fetched {
                Ok(_) => {
                    let _ = p.finish();
                }
                Err(e) => p.fail(io::ErrorKind::InvalidData, e.to_string()),
            }
        }
        if fetched.is_ok() {
            downloaded();
        }
        let unpacked = unpacker.join().unwrap_or_else(|_| Err(StoreError::Conflict("layer unpacker panicked".into())));
        (fetched, unpacked)
    });
    let mut blob = fetched?;
    match unpacked? {
        Some(mut snap) => {
            // One syncfs covers the blob file and the snapshot.
            store.sync_tmp()?;
            snap.mark_synced();
            blob.mark_synced();
            blob.commit()?;
            Ok(snap.commit()?)
        }
        // Made meanwhile by another writer.
        None => {
            blob.commit()?;
            Ok(store.snapshot_bytes(chain).unwrap_or(0))
        }
    }
}

/// The download's writer: the ingest file and, while the unpacker reads, the pipe to it.
struct Tee<'a, W: Write> {
    ing: &'a mut W,
    pipe: Option<chunks::ChunkWriter>,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ing.write_all(buf)?;
        if let Some(p) = self.pipe.as_mut() {
            // An unpacker that stopped (failed, or found the snapshot made) reads no more;
            // the blob is still fetched and verified, for the error to name the real cause.
            if p.write_all(buf).is_err() {
                self.pipe = None;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ing.flush()?;
        if let Some(p) = self.pipe.as_mut() {
            if p.flush().is_err() {
                self.pipe = None;
            }
        }
        Ok(())
    }
}

/// Fetches and unpacks every layer, PARALLEL at a time; returns each layer's
/// uncompressed size.
#[allow(clippy::too_many_arguments)]
fn fetch_layers(
    store: &Store,
    g: &WriteGuard,
    client: &Client,
    r: &Reference,
    layers: &[Descriptor],
    diff_ids: &[Digest],
    chains: &[Digest],
    quiet: bool,
) -> Result<Vec<u64>, PullError> {
    let prog = Progress::new(quiet);
    let ids: Vec<usize> = layers.iter().map(|l| prog.add(l.digest.short())).collect();
    if prog.tty && !quiet {
        prog.set(0, "Waiting".into(), None, true);
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<u64, PullError>>>> = Mutex::new((0..layers.len()).map(|_| None).collect());
    let work = |i: usize| -> Result<u64, PullError> {
        let l = &layers[i];
        let total = u64::try_from(l.size).unwrap_or(0);
        let line = ids[i];
        if store.has_snapshot(&chains[i]) && store.has_blob(&l.digest, u64::try_from(l.size).ok()) {
            prog.set(line, "Already exists".into(), Some("already exists".into()), true);
            return Ok(store.snapshot_bytes(&chains[i]).unwrap_or(total));
        }
        let show = |n: u64| {
            prog.set(line, format!("Downloading {}/{}", progress_size(n), progress_size(total)), None, false);
        };
        let downloaded = || {
            prog.set(line, "Download complete".into(), Some(format!("downloaded {}", progress_size(total))), true);
            prog.set(line, "Extracting".into(), None, true);
        };
        let bytes = fetch_layer(store, g, client, r, l, &diff_ids[i], &chains[i], &show, &downloaded)?;
        prog.set(line, "Pull complete".into(), Some("extracted".into()), true);
        Ok(bytes)
    };
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(layers.len()) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= layers.len() {
                    break;
                }
                let res = work(i);
                if res.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                let mut rs = results.lock().unwrap_or_else(|e| e.into_inner());
                rs[i] = Some(res);
            });
        }
    });
    let rs = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut sizes = Vec::with_capacity(rs.len());
    let mut first_err = None;
    for r in rs {
        match r {
            Some(Ok(n)) => sizes.push(n),
            Some(Err(e)) if first_err.is_none() => first_err = Some(e),
            _ => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(sizes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(p: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: types::OCI_MANIFEST.into(),
            digest: Digest::of(p.unwrap_or("none").as_bytes()),
            size: 1,
            platform: p.map(|s| parse_platform(s).unwrap()),
            annotations: None,
            urls: None,
        }
    }

    #[test]
    fn platforms() {
        let p = parse_platform("linux/arm/v7").unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()), ("linux", "arm", Some("v7")));
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux//x").is_err());
        assert!(parse_platform("a/b/c/d").is_err());
        let idx = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                desc(Some("linux/arm/v6")),
                desc(Some("linux/arm/v7")),
                desc(Some("linux/amd64")),
                desc(Some("unknown/unknown")),
            ],
            annotations: None,
        };
        assert_eq!(
            select_manifest(&idx, &parse_platform("linux/amd64").unwrap()).unwrap().digest,
            Digest::of(b"linux/amd64")
        );
        assert_eq!(
            select_manifest(&idx, &parse_platform("linux/arm/v7").unwrap()).unwrap().digest,
            Digest::of(b"linux/arm/v7")
        );
        match select_manifest(&idx, &parse_platform("linux/s390x").unwrap()) {
            Err(PullError::NoPlatform { want, available }) => {
                assert_eq!(want, "linux/s390x");
                assert_eq!(available, "linux/arm/v6, linux/arm/v7, linux/amd64");
            }
            _ => panic!("expected NoPlatform"),
        }
        assert!(platform_matches(&parse_platform("linux/arm64/v8").unwrap(), &parse_platform("linux/arm64").unwrap()));
        let single = Index { schema_version: 2, media_type: None, manifests: vec![desc(None)], annotations: None };
        assert!(select_manifest(&single, &parse_platform("linux/amd64").unwrap()).is_ok());
    }

    #[test]
    fn media_types() {
        assert_eq!(manifest_media_type("", br#"{"schemaVersion":2,"manifests":[]}"#), types::OCI_INDEX);
        assert_eq!(manifest_media_type("application/json", br#"{"mediaType":"x"}"#), "x");
        assert_eq!(manifest_media_type(types::DOCKER_LIST, b"{}"), types::DOCKER_LIST);
        let m: Manifest = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{}","size":1}},
               "layers":[{{"mediaType":"application/vnd.in-toto+json","digest":"{}","size":1}}]}}"#,
            types::OCI_CONFIG,
            Digest::of(b"c"),
            Digest::of(b"l")
        ))
        .unwrap();
        assert_eq!(
            check_manifest(&m).unwrap_err().to_string(),
            "unsupported media type application/vnd.in-toto+json in manifest"
        );
        assert_eq!(progress_size(3_200_000), "3.2 MB");
        assert_eq!(progress_size(999), "999 B");
    }
}
