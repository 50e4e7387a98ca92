//! `berth image save`: images of the store as one tar in docker's save format (docker 25
//! and later): an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) that also
//! carries docker's `manifest.json` and `repositories`, so `docker load`, `podman load` and
//! OCI tools read it. Layers are written uncompressed (a layer stored compressed is
//! decompressed into the store's tmp/ and checked against its diff id first), with an OCI
//! manifest over them, as docker writes them.
//!
//! The tar is written next to its destination under a temporary name and renamed into place
//! once complete; on failure it is removed.

use super::digest::Digest;
use super::store::{familiar, split_name, Image, Store, StoreError, WriteGuard};
use super::types::{self, LayerCompression};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("write archive: {0}")]
    Write(io::Error),
    #[error("cowardly refusing to save to a terminal. Use the -o flag or redirect")]
    Terminal,
    #[error("layer {blob}: unsupported media type {media_type}")]
    MediaType { blob: Digest, media_type: String },
}

/// One image to save and the names it is saved under (familiar form, e.g. `busybox:latest`).
struct Entry {
    img: Image,
    tags: Vec<String>,
}

/// The images `queries` name, each with the names it is saved under.
fn resolve(store: &Store, queries: &[String]) -> Result<Vec<Entry>, SaveError> {
    let index = store.read_index()?;
    let mut entries: Vec<Entry> = Vec::new();
    for q in queries {
        let img = store.resolve_in(&index, q)?;
        // A name (not an id) is saved with that name; the canonical form says which tag.
        let name = super::store::normalise(q)
            .ok()
            .map(|(_, n)| n)
            .filter(|n| index.refs.get(n) == Some(&img.manifest_digest) && !n.contains('@'));
        match entries.iter_mut().find(|e| e.img.manifest_digest == img.manifest_digest) {
            Some(e) => e.tags.extend(name.map(|n| familiar(&n).to_string())),
            None => entries.push(Entry { tags: name.map(|n| familiar(&n).to_string()).into_iter().collect(), img }),
        }
    }
    Ok(entries)
}

/// Saves the images `queries` name as one docker archive written to `w` (returned, not
/// flushed).
pub fn save_to<W: Write>(store: &Store, queries: &[String], w: W) -> Result<W, SaveError> {
    let g = store.write_guard()?;
    let entries = resolve(store, queries)?;
    write_archive(store, &g, &entries, w)
}

/// Saves the images `queries` name to `output` (None: standard output, which must not be a
/// terminal).
pub fn save(store: &Store, queries: &[String], output: Option<&Path>) -> Result<(), SaveError> {
    let g = store.write_guard()?;
    let entries = resolve(store, queries)?;
    if output.is_none() {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(1) } == 1 {
            return Err(SaveError::Terminal);
        }
    }
    match output {
        Some(path) => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let tmp = dir.join(format!(".{base}.berth-save-{}", std::process::id()));
            let f = File::create(&tmp).map_err(|source| SaveError::Io { op: "create", path: tmp.clone(), source })?;
            let res = write_archive(store, &g, &entries, BufWriter::with_capacity(1 << 20, f)).and_then(|w| {
                let f = w.into_inner().map_err(|e| SaveError::Write(e.into_error()))?;
                f.sync_all().map_err(SaveError::Write)
            });
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, path).map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                SaveError::Io { op: "rename", path: path.to_path_buf(), source }
            })
        }
        None => {
            let w = write_archive(store, &g, &entries, BufWriter::with_capacity(1 << 20, io::stdout().lock()))?;
            let mut out = w.into_inner().map_err(|e| SaveError::Write(e.into_error()))?;
            out.flush().map_err(SaveError::Write)?;
            Ok(())
        }
    }
}

fn header(path: &str, size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_entry_type(if dir { tar::EntryType::Directory } else { tar::EntryType::Regular });
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    // Paths here are short ASCII ("blobs/sha256/<64 hex>").
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<(), SaveError> {
    let h = header(path, data.len() as u64, false);
    tar.append(&h, data).map_err(SaveError::Write)
}

fn add_file<W: Write>(tar: &mut tar::Builder<W>, name: &str, file: &Path, size: u64) -> Result<(), SaveError> {
    let f = File::open(file).map_err(|source| SaveError::Io { op: "open", path: file.to_path_buf(), source })?;
    let h = header(name, size, false);
    tar.append(&h, BufReader::with_capacity(1 << 20, f).take_exact(size)).map_err(SaveError::Write)
}

/// `Read::take`, failing if the file is shorter than the header says.
trait TakeExact: io::Read + Sized {
    fn take_exact(self, n: u64) -> Exact<Self> {
        Exact { inner: self, left: n }
    }
}
impl<R: io::Read> TakeExact for R {}

struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: io::Read> io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than recorded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn write_archive<W: Write>(store: &Store, g: &WriteGuard, entries: &[Entry], out: W) -> Result<W, SaveError> {
    let mut tar = tar::Builder::new(out);
    for d in ["blobs/", "blobs/sha256/"] {
        tar.append(&header(d, 0, true), io::empty()).map_err(SaveError::Write)?;
    }
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let mut docker_manifest = Vec::new();
    let mut index_entries = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for e in entries {
        let img = &e.img;
        // Layers, uncompressed, named by their diff ids.
        let mut layer_descs = Vec::new();
        for (i, l) in img.layers.iter().enumerate() {
            let diff_id = img.config.rootfs.diff_ids.get(i).cloned().unwrap_or_else(|| l.digest.clone());
            let comp = types::layer_compression(&l.media_type)
                .ok_or_else(|| SaveError::MediaType { blob: l.digest.clone(), media_type: l.media_type.clone() })?;
            let size = if comp == LayerCompression::None && l.digest == diff_id {
                let size = u64::try_from(l.size).unwrap_or(0);
                if written.insert(diff_id.clone()) {
                    add_file(&mut tar, &blob_name(&diff_id), &store.blob_path(&l.digest), size)?;
                }
                size
            } else {
                let staged = decompress(store, g, &l.digest, comp)?;
                if staged.digest != diff_id {
                    return Err(StoreError::DiffIdMismatch {
                        blob: l.digest.clone(),
                        expected: diff_id,
                        got: staged.digest.clone(),
                    }
                    .into());
                }
                if written.insert(diff_id.clone()) {
                    add_file(&mut tar, &blob_name(&diff_id), staged.path(), staged.size)?;
                }
                staged.size
            };
            layer_descs.push(serde_json::json!({"mediaType": types::OCI_LAYER, "digest": diff_id, "size": size}));
        }
        let config = store.read_blob(&img.config_digest)?;
        if written.insert(img.config_digest.clone()) {
            add_bytes(&mut tar, &blob_name(&img.config_digest), &config)?;
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": types::OCI_MANIFEST,
            "config": {"mediaType": types::OCI_CONFIG, "digest": img.config_digest, "size": config.len()},
            "layers": layer_descs,
        }))
        .map_err(|e| SaveError::Write(e.into()))?;
        let mdigest = Digest::of(&manifest);
        if written.insert(mdigest.clone()) {
            add_bytes(&mut tar, &blob_name(&mdigest), &manifest)?;
        }
        let desc = |annotations: Option<serde_json::Value>| {
            let mut d =
                serde_json::json!({"mediaType": types::OCI_MANIFEST, "digest": mdigest, "size": manifest.len()});
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        if e.tags.is_empty() {
            index_entries.push(desc(None));
        }
        for t in &e.tags {
            let full = img.names.iter().find(|n| familiar(n) == t).cloned().unwrap_or_else(|| t.clone());
            let (repo, tag, _) = split_name(t);
            index_entries.push(desc(Some(serde_json::json!({
                "io.containerd.image.name": full,
                "org.opencontainers.image.ref.name": tag.unwrap_or("latest"),
            }))));
            if let Some(top) = img.config.rootfs.diff_ids.last() {
                repositories
                    .entry(repo.to_string())
                    .or_default()
                    .insert(tag.unwrap_or("latest").into(), top.hex().into());
            }
        }
        docker_manifest.push(serde_json::json!({
            "Config": blob_name(&img.config_digest),
            "RepoTags": if e.tags.is_empty() { serde_json::Value::Null } else { serde_json::json!(e.tags) },
            "Layers": img.config.rootfs.diff_ids.iter().map(blob_name).collect::<Vec<_>>(),
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": types::OCI_INDEX, "manifests": index_entries});
    let to_vec = |v: &serde_json::Value| serde_json::to_vec(v).map_err(|e| SaveError::Write(e.into()));
    add_bytes(&mut tar, "index.json", &to_vec(&index)?)?;
    add_bytes(&mut tar, "manifest.json", &to_vec(&serde_json::json!(docker_manifest))?)?;
    if !repositories.is_empty() {
        add_bytes(&mut tar, "repositories", &to_vec(&serde_json::json!(repositories))?)?;
    }
    tar.into_inner().map_err(SaveError::Write)
}

/// A compressed layer blob decompressed into the store's tmp/ (removed when dropped).
fn decompress(
    store: &Store,
    g: &WriteGuard,
    blob: &Digest,
    comp: LayerCompression,
) -> Result<super::store::StagedBlob, SaveError> {
    let path = store.blob_path(blob);
    let f = File::open(&path).map_err(|source| SaveError::Io { op: "open", path: path.clone(), source })?;
    let br = BufReader::with_capacity(1 << 20, f);
    let mut r: Box<dyn io::Read> = match comp {
        LayerCompression::None => Box::new(br),
        LayerCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        LayerCompression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(br).map_err(|source| SaveError::Io {
                op: "read",
                path: path.clone(),
                source,
            })?)
        }
    };
    let mut w = store.stage(g)?;
    if let Err(source) = io::copy(&mut r, &mut w) {
        return Err(match w.write_error() {
            Some(e) => e.into(),
            None => SaveError::Io { op: "decompress", path, source },
        });
    }
    Ok(w.finish()?)
}
