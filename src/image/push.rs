//! `berth image push`: an image of the store to a registry (distribution API v2), its
//! manifest as stored (docker schema2 or OCI, byte for byte, so its digest stays the same).
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
use super::store::{normalise, Store, StoreError, StoreIndex};
use super::types::{self, Descriptor};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blobs sent at the same time.
const PARALLEL: usize = 3;
/// Largest blob sent in one PUT; a larger one goes in one PATCH and a closing PUT.
pub const PUT_MAX: u64 = 16 << 20;

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
        last = Some(push_tag(store, client, &r, &index, &mdigest, tag, opts.quiet)?);
    }
    drop(g);
    last.ok_or_else(missing)
}

/// Pushes the image of manifest `mdigest` under `tag`.
fn push_tag(
    store: &Store,
    client: &Client,
    r: &Reference,
    index: &StoreIndex,
    mdigest: &Digest,
    tag: &str,
    quiet: bool,
) -> Result<Digest, PushError> {
    let img = store.image(index, mdigest)?;
    let mdata = store.read_blob(mdigest)?;
    let media_type = super::pull::manifest_media_type("", &mdata);
    let manifest: types::Manifest =
        serde_json::from_slice(&mdata).map_err(|source| PushError::Manifest { digest: mdigest.clone(), source })?;
    for d in manifest.layers.iter().chain(std::iter::once(&manifest.config)) {
        if !is_foreign(d) && !store.has_blob(&d.digest, u64::try_from(d.size).ok()) {
            let image = format!("{}/{}:{tag}", r.registry, r.repository);
            return Err(PushError::MissingBlob { image, digest: d.digest.clone() });
        }
    }
    let prog = Progress::new(quiet);
    // Docker lists the layers top first, named by their diff ids.
    let diff_ids = &img.config.rootfs.diff_ids;
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
                let l = &manifest.layers[order[k]];
                if let Err(e) = push_blob(store, client, r, index, l, Some((&prog, lines[k]))) {
                    failed.store(true, Ordering::Relaxed);
                    first_err.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    push_blob(store, client, r, index, &manifest.config, None)?;
    berth::faults::crash_point("image.push.blobs-uploaded");
    let got = client.put_manifest(r, tag, &media_type, &mdata)?;
    if !quiet {
        println!("{tag}: digest: {got} size: {}", mdata.len());
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

/// A repository of the same registry that holds blob `digest`, by the `repo@digest` names
/// of the images in the store that have it.
fn mount_source(index: &StoreIndex, r: &Reference, digest: &Digest) -> Option<String> {
    index
        .images
        .values()
        .filter(|rec| rec.config == *digest || rec.layers.iter().any(|l| l.digest == *digest))
        .flat_map(|rec| rec.repo_digests.iter())
        .filter_map(|rd| rd.split_once('@').map(|(name, _)| name))
        .filter_map(|name| name.strip_prefix(&format!("{}/", r.registry)))
        .find(|repo| *repo != r.repository)
        .map(str::to_string)
}

/// One blob: present, mounted or uploaded. `line` is the progress line of a layer.
fn push_blob(
    store: &Store,
    client: &Client,
    r: &Reference,
    index: &StoreIndex,
    d: &Descriptor,
    line: Option<(&Progress, usize)>,
) -> Result<(), PushError> {
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
    let path = store.blob_path(&d.digest);
    if let Err(e) = client.upload_blob(r, &location, &d.digest, &path, size, PUT_MAX, &show) {
        client.cancel_upload(r, &location);
        return Err(e.into());
    }
    say("Pushed".into(), true);
    Ok(())
}
