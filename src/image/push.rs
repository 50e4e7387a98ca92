//! `berth image push`: an image of the store to a registry (distribution API v2), its
//! manifest as stored (docker schema2 or OCI, byte for byte, so its digest stays the same)
//! when its layers are compressed. Layers stored as plain tars (made by `container commit`
//! and `image build`, or loaded from a `docker save` archive) go gzip-compressed, as docker
//! pushes them, under a manifest naming the gzip blobs with the gzip media types (the config,
//! and so the image id, unchanged). Each gzip blob is made once and kept in the store with
//! the layer (`StoreIndex::compressed`) once a manifest naming it is accepted (until then it
//! waits under tmp/, and a failed push leaves nothing), so a second push finds it already in
//! the registry and the manifest digest is the same every time.
//!
//! Each blob (the layers, up to 3 at a time, then the config) is first looked for in the
//! repository (HEAD); one the registry has in another repository of the same registry (known
//! from the `repo@digest` names the store recorded for images pulled from or pushed there)
//! is mounted from it; anything else is uploaded: in one PUT up to PUT_MAX bytes, above that in
//! one PATCH of the whole blob and a closing PUT. The manifest goes last, under the tag. A failed
//! upload session is cancelled; the store is changed only after the manifest is accepted (the
//! new `repo@digest` is recorded, as docker does).

use super::digest::Digest;
use super::pull::{progress_size, Progress};
use super::reference::Reference;
use super::registry::{Client, Mount, RegistryError};
use super::store::{normalise, CompressedBlob, StagedBlob, Store, StoreError, StoreIndex, WriteGuard};
use super::types::{self, Descriptor};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blobs sent at the same time.
const PARALLEL: usize = 3;
/// Largest blob sent in one PUT; a larger one goes in one PATCH and a closing PUT.
pub const PUT_MAX: u64 = 16 << 20;
/// gzip level of layers compressed for a push (see the design notes in README.md).
const GZIP_LEVEL: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("An image does not exist locally with the tag: {0}")]
    NoSuchImage(String),
    #[error("{0}: cannot push by digest; name a tag")]
    ByDigest(String),
    #[error("tag can't be used with --all-tags/-a: {0}")]
    TagWithAllTags(String),
    #[error("blob {digest} of {image} is missing from the store")]
    MissingBlob { image: String, digest: Digest },
    #[error("manifest {digest}: {source}")]
    Manifest { digest: Digest, source: serde_json::Error },
}

pub struct PushOptions {
    pub quiet: bool,
    pub all_tags: bool,
}

/// Pushes the image named `name` to the registry and repository the name says (with
/// `all_tags`, every tag of that repository in the store). Prints docker's lines (the
/// repository, one line per layer, `TAG: digest: D size: N`) unless `quiet`. Returns the
/// manifest digest of the last tag pushed.
pub fn push(store: &Store, client: &Client, name: &str, opts: &PushOptions) -> Result<Digest, PushError> {
    let (r, canonical) = normalise(name)?;
    if r.digest.is_some() {
        return Err(PushError::ByDigest(name.to_string()));
    }
    // The parser adds `latest` to a name without a tag: look at what was written.
    let explicit_tag = name.split('@').next().unwrap_or(name).rsplit('/').next().is_some_and(|l| l.contains(':'));
    if opts.all_tags && explicit_tag {
        return Err(PushError::TagWithAllTags(name.to_string()));
    }
    let g = store.write_guard()?;
    let index = store.read_index()?;
    let tags: Vec<String> = if opts.all_tags {
        let prefix = format!("{}/{}:", r.registry, r.repository);
        index.refs.keys().filter_map(|n| n.strip_prefix(&prefix)).map(str::to_string).collect()
    } else {
        vec![r.tag.clone().unwrap_or_else(|| "latest".to_string())]
    };
    let missing = || PushError::NoSuchImage(super::store::familiar(&canonical).to_string());
    if tags.is_empty() || !tags.iter().all(|t| index.refs.contains_key(&format!("{}/{}:{t}", r.registry, r.repository)))
    {
        return Err(missing());
    }
    if !opts.quiet {
        println!("The push refers to repository [{}/{}]", r.registry, r.repository);
    }
    let mut last = None;
    for tag in &tags {
        let mdigest = index.refs[&format!("{}/{}:{tag}", r.registry, r.repository)].clone();
        let t = Target { store, g: &g, client, r: &r, index: &index };
        last = Some(push_tag(&t, &mdigest, tag, opts.quiet)?);
    }
    drop(g);
    last.ok_or_else(missing)
}

/// Where one push goes and what it reads: the store (write-locked by `g`) and its index, the
/// registry client and the repository.
#[derive(Clone, Copy)]
struct Target<'a> {
    store: &'a Store,
    g: &'a WriteGuard,
    client: &'a Client,
    r: &'a Reference,
    index: &'a StoreIndex,
}

/// Pushes the image of manifest `mdigest` under `tag`. An image loaded from a multi-platform
/// index goes as docker 25+ (containerd image store) pushes one: the whole index, every
/// platform's manifest put by digest first, when the store has every platform's blobs; the
/// image's own manifest alone when some platform's are missing (a pull keeps only one).
fn push_tag(t: &Target, mdigest: &Digest, tag: &str, quiet: bool) -> Result<Digest, PushError> {
    let Target { store, g, client, r, index } = *t;
    let image = format!("{}/{}:{tag}", r.registry, r.repository);
    let prog = Progress::new(quiet);
    let mut made = Vec::new();
    let (got, size) = match complete_index(store, index, mdigest) {
        Some((idx_digest, mut idx)) => {
            let mut changed = false;
            for d in idx.manifests.iter_mut().filter(|d| d.media_type.is_empty() || types::is_manifest(&d.media_type)) {
                let (mt, data) = push_image(t, &d.digest, &image, &prog, &mut made)?;
                let got = client.put_manifest(r, &Digest::of(&data).to_string(), &mt, &data)?;
                if got != d.digest {
                    changed = true;
                    d.digest = got;
                    d.size = i64::try_from(data.len()).unwrap_or(i64::MAX);
                    d.media_type = mt;
                }
            }
            let data = if changed {
                serde_json::to_vec(&idx).map_err(|source| PushError::Manifest { digest: idx_digest.clone(), source })?
            } else {
                store.read_blob(&idx_digest)?
            };
            let mt = super::pull::manifest_media_type("", &data);
            berth::faults::crash_point("image.push.blobs-uploaded");
            (client.put_manifest(r, tag, &mt, &data)?, data.len())
        }
        None => {
            let (mt, data) = push_image(t, mdigest, &image, &prog, &mut made)?;
            berth::faults::crash_point("image.push.blobs-uploaded");
            (client.put_manifest(r, tag, &mt, &data)?, data.len())
        }
    };
    keep_made(store, g, made)?;
    if !quiet {
        println!("{tag}: digest: {got} size: {size}");
    }
    // Record where the image now is (also a source for later cross-repository mounts).
    let repo_digest = format!("{}/{}@{got}", r.registry, r.repository);
    let mut il = store.lock_index()?;
    if let Some(rec) = il.index.images.get_mut(mdigest) {
        if !rec.repo_digests.contains(&repo_digest) {
            rec.repo_digests.push(repo_digest);
            il.save()?;
        }
    }
    Ok(got)
}

/// The multi-platform index image `mdigest` was loaded from, when the store holds every
/// blob of every manifest it lists (the index kept among the image's extra blobs).
fn complete_index(store: &Store, index: &StoreIndex, mdigest: &Digest) -> Option<(Digest, types::Index)> {
    let rec = index.images.get(mdigest)?;
    let (d, idx) = rec.extra_blobs.iter().find_map(|b| {
        let data = store.read_blob(b).ok()?;
        if !types::is_index(&super::pull::manifest_media_type("", &data)) {
            return None;
        }
        let idx: types::Index = serde_json::from_slice(&data).ok()?;
        idx.manifests.iter().any(|m| m.digest == *mdigest).then(|| (b.clone(), idx))
    })?;
    let manifests: Vec<&Descriptor> =
        idx.manifests.iter().filter(|m| m.media_type.is_empty() || types::is_manifest(&m.media_type)).collect();
    if manifests.len() < 2 || manifests.len() != idx.manifests.len() {
        return None;
    }
    let complete = manifests.iter().all(|m| {
        let Ok(data) = store.read_blob(&m.digest) else { return false };
        let Ok(man) = serde_json::from_slice::<types::Manifest>(&data) else { return false };
        man.layers
            .iter()
            .chain(std::iter::once(&man.config))
            .all(|l| is_foreign(l) || store.has_blob(&l.digest, u64::try_from(l.size).ok()))
    });
    complete.then_some((d, idx))
}

/// Sends the layers and config of the image of manifest `mdigest`; returns the manifest to
/// put (media type, bytes): the stored one, or the same naming the compressed layers. The
/// gzip blobs it made are added to `all_made`.
fn push_image(
    t: &Target,
    mdigest: &Digest,
    image: &str,
    prog: &Progress,
    all_made: &mut Vec<Made>,
) -> Result<(String, Vec<u8>), PushError> {
    let Target { store, g, index, .. } = *t;
    let mdata = store.read_blob(mdigest)?;
    let media_type = super::pull::manifest_media_type("", &mdata);
    let manifest: types::Manifest =
        serde_json::from_slice(&mdata).map_err(|source| PushError::Manifest { digest: mdigest.clone(), source })?;
    for d in manifest.layers.iter().chain(std::iter::once(&manifest.config)) {
        if !is_foreign(d) && !store.has_blob(&d.digest, u64::try_from(d.size).ok()) {
            return Err(PushError::MissingBlob { image: image.to_string(), digest: d.digest.clone() });
        }
    }
    let cdata = store.read_blob(&manifest.config.digest)?;
    let diff_ids = serde_json::from_slice::<types::ImageConfig>(&cdata).map(|c| c.rootfs.diff_ids).unwrap_or_default();
    // Docker lists the layers top first, named by their diff ids.
    let order: Vec<usize> = (0..manifest.layers.len()).rev().collect();
    let lines: Vec<usize> = order
        .iter()
        .map(|&i| {
            let id = diff_ids.get(i).unwrap_or(&manifest.layers[i].digest);
            let line = prog.add(id.short());
            prog.set(line, "Preparing".into(), Some("Preparing".into()), true);
            line
        })
        .collect();
    // What is sent for each layer: the stored blob, or for a layer stored uncompressed (made
    // by commit or build, or loaded from a docker-save archive) its gzip form, as docker sends.
    let sent: Vec<Mutex<Option<Descriptor>>> = manifest.layers.iter().map(|_| Mutex::new(None)).collect();
    let made: Mutex<Vec<Made>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_err: Mutex<Option<PushError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(order.len()) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= order.len() {
                    break;
                }
                let i = order[k];
                let res = distributable(store, g, index, &manifest.layers[i]).and_then(|(d, m)| {
                    let path = m.as_ref().map(|(_, st)| st.path().to_path_buf());
                    push_blob(t, &d, path.as_deref(), Some((prog, lines[k])))?;
                    *sent[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
                    if let Some(m) = m {
                        made.lock().unwrap_or_else(|p| p.into_inner()).push(m);
                    }
                    Ok(())
                });
                if let Err(e) = res {
                    failed.store(true, Ordering::Relaxed);
                    first_err.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let sent: Vec<Descriptor> = sent
        .into_iter()
        .zip(&manifest.layers)
        .map(|(m, l)| m.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(|| l.clone()))
        .collect();
    // The manifest as stored when every layer goes as stored (its digest stays the image's);
    // else the same manifest naming the compressed layers.
    let mdata = if sent.iter().zip(&manifest.layers).all(|(a, b)| a.digest == b.digest) {
        mdata
    } else {
        let mut m = manifest.clone();
        m.layers = sent;
        serde_json::to_vec(&m).map_err(|source| PushError::Manifest { digest: mdigest.clone(), source })?
    };
    push_blob(t, &manifest.config, None, None)?;
    all_made.extend(made.into_inner().unwrap_or_else(|p| p.into_inner()));
    Ok((media_type, mdata))
}

/// A layer that is not distributed with the image (its `urls` say where it is): not pushed.
fn is_foreign(d: &Descriptor) -> bool {
    matches!(
        d.media_type.as_str(),
        types::DOCKER_LAYER_FOREIGN
            | types::OCI_LAYER_NONDIST
            | types::OCI_LAYER_NONDIST_GZIP
            | types::OCI_LAYER_NONDIST_ZSTD
    )
}

/// A gzip blob made during this push, kept under tmp/ until the manifest is accepted.
type Made = (Digest, StagedBlob);

/// The layer as it is distributed: a layer stored uncompressed becomes its gzip blob, with the
/// gzip media type of its kind; any other layer as stored. The gzip blob is the one the store
/// already keeps for the layer (made by an earlier push), or one made now and returned, to be
/// kept (and recorded) only once the manifest is accepted.
fn distributable(
    store: &Store,
    g: &WriteGuard,
    index: &StoreIndex,
    l: &Descriptor,
) -> Result<(Descriptor, Option<Made>), PushError> {
    let gzip_type = match l.media_type.as_str() {
        types::DOCKER_LAYER => types::DOCKER_LAYER_GZIP,
        types::OCI_LAYER => types::OCI_LAYER_GZIP,
        _ => return Ok((l.clone(), None)),
    };
    let known = index.compressed.get(&l.digest).filter(|c| store.has_blob(&c.digest, Some(c.size))).cloned();
    let (c, made) = match known {
        Some(c) => (c, None),
        None => {
            let staged = compress(store, g, &l.digest)?;
            (CompressedBlob { digest: staged.digest.clone(), size: staged.size }, Some((l.digest.clone(), staged)))
        }
    };
    let size = i64::try_from(c.size).unwrap_or(i64::MAX);
    Ok((Descriptor { media_type: gzip_type.to_string(), digest: c.digest, size, ..l.clone() }, made))
}

/// The gzip form of blob `plain`, written under the store's tmp/ (hashed as it is written),
/// compressed on every core.
fn compress(store: &Store, g: &WriteGuard, plain: &Digest) -> Result<StagedBlob, PushError> {
    let path = store.blob_path(plain);
    let mut src = store.open_blob(plain)?;
    let mut w = store.stage(g)?;
    if let Err(source) = super::pgzip::compress(&mut src, &mut w, GZIP_LEVEL) {
        return Err(w.write_error().unwrap_or(StoreError::Io { op: "compress", path, source }).into());
    }
    Ok(w.finish()?)
}

/// Keeps the gzip blobs made by a push whose manifest was accepted, each recorded as its
/// layer's compressed form.
fn keep_made(store: &Store, g: &WriteGuard, made: Vec<Made>) -> Result<(), PushError> {
    if made.is_empty() {
        return Ok(());
    }
    let mut rec = Vec::new();
    for (plain, staged) in made {
        rec.push((plain, CompressedBlob { digest: staged.digest.clone(), size: staged.size }));
        store.adopt(g, staged)?;
    }
    let mut il = store.lock_index()?;
    il.index.compressed.extend(rec);
    il.save()?;
    Ok(())
}

/// A repository of the same registry that holds blob `digest`, by the `repo@digest` names
/// of the images in the store that have it.
fn mount_source(index: &StoreIndex, r: &Reference, digest: &Digest) -> Option<String> {
    index
        .images
        .values()
        .filter(|rec| {
            rec.config == *digest
                || rec.layers.iter().any(|l| {
                    l.digest == *digest || index.compressed.get(&l.digest).is_some_and(|c| c.digest == *digest)
                })
        })
        .flat_map(|rec| rec.repo_digests.iter())
        .filter_map(|rd| rd.split_once('@').map(|(name, _)| name))
        .filter_map(|name| name.strip_prefix(&format!("{}/", r.registry)))
        .find(|repo| *repo != r.repository)
        .map(str::to_string)
}

/// One blob: present, mounted or uploaded. `line` is the progress line of a layer.
fn push_blob(
    t: &Target,
    d: &Descriptor,
    file: Option<&std::path::Path>,
    line: Option<(&Progress, usize)>,
) -> Result<(), PushError> {
    let Target { store, client, r, index, .. } = *t;
    let say = |status: String, force: bool| {
        if let Some((p, i)) = line {
            let plain = force.then(|| status.clone());
            p.set(i, status, plain, force);
        }
    };
    if is_foreign(d) {
        say("Skipped foreign layer".into(), true);
        return Ok(());
    }
    if client.blob_exists(r, &d.digest)? {
        say("Layer already exists".into(), true);
        return Ok(());
    }
    let location = match mount_source(index, r, &d.digest) {
        Some(from) => match client.mount_blob(r, &d.digest, &from)? {
            Mount::Mounted => {
                say(format!("Mounted from {from}"), true);
                return Ok(());
            }
            Mount::Upload(loc) => loc,
        },
        None => client.start_upload(r, &d.digest)?,
    };
    let size = u64::try_from(d.size).unwrap_or(0);
    let show = |n: u64| say(format!("Pushing {}/{}", progress_size(n), progress_size(size)), false);
    let path = file.map_or_else(|| store.blob_path(&d.digest), std::path::Path::to_path_buf);
    if let Err(e) = client.upload_blob(r, &location, &d.digest, &path, size, PUT_MAX, &show) {
        client.cancel_upload(r, &location);
        return Err(e.into());
    }
    say("Pushed".into(), true);
    Ok(())
}
