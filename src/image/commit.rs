//! A new image from a parent image and one more layer (a container's changes): the layer tar
//! is written into the store's tmp/ while hashed (its digest is its diff id: it is kept
//! uncompressed, as docker keeps committed layers), unpacked into its snapshot, and the image
//! recorded with docker's config and history (a changes-free tar makes an `empty_layer`
//! history entry and no layer, as docker does).
//!
//! Nothing is recorded until the layer, its snapshot, config and manifest are all in place; a
//! failure before that leaves only unreferenced content, which the store's GC removes.

use super::digest::Digest;
use super::store::{chain_ids, normalise, now_secs, ImageRecord, Store, StoreError};
use super::types::{self, Descriptor, RunConfig};
use serde_json::json;
use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Layer(String),
    #[error("image config: {0}")]
    Json(serde_json::Error),
}

pub struct CommitRequest<'a> {
    /// The parent image id (`sha256:...`).
    pub parent: &'a str,
    /// The new image's run config (the container's, with --change applied).
    pub run: RunConfig,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// The history entry's `created_by` (the container's command).
    pub created_by: String,
    pub container_id: String,
    /// A name for the image (`repo[:tag]`).
    pub name: Option<String>,
}

/// A tar of no entries: only its two 512-byte zero end blocks.
fn is_empty_tar(size: u64) -> bool {
    size <= 1024
}

/// Commits. `write_layer` writes the layer tar. Returns the new image id.
pub fn commit(
    store: &Store,
    req: CommitRequest<'_>,
    write_layer: impl FnOnce(&mut dyn Write) -> Result<(), String>,
) -> Result<Digest, CommitError> {
    let canonical = req.name.as_deref().map(|n| normalise(n).map(|(_, c)| c)).transpose()?;
    let g = store.write_guard()?;
    let parent = store.resolve(req.parent)?;
    let mut w = store.stage(&g)?;
    if let Err(e) = write_layer(&mut w) {
        return Err(match w.write_error() {
            Some(s) => s.into(),
            None => CommitError::Layer(e),
        });
    }
    w.flush().map_err(|e| CommitError::Layer(format!("write layer: {e}")))?;
    let staged = w.finish()?;
    let diff_id = staged.digest.clone();
    let layer_size = staged.size;
    let empty = is_empty_tar(layer_size);

    let mut config = parent.config.clone();
    let mut layers: Vec<Descriptor> = parent.layers.clone();
    let mut chains = parent.chain_ids.clone();
    let mut size = parent.size;
    if !empty {
        let mut diff_ids = config.rootfs.diff_ids.clone();
        diff_ids.push(diff_id.clone());
        let chain = chain_ids(&diff_ids).pop().unwrap_or_else(|| diff_id.clone());
        store.adopt(&g, staged)?;
        let bytes = match store.prepare_snapshot(&g, &chain, &diff_id, &diff_id, None, true)? {
            Some(p) => p.commit()?,
            None => store.snapshot_bytes(&chain).unwrap_or(0),
        };
        size += bytes;
        berth::faults::crash_point("image.commit.layer-stored");
        config.rootfs.diff_ids = diff_ids;
        chains.push(chain);
        layers.push(Descriptor {
            media_type: types::OCI_LAYER.to_string(),
            digest: diff_id.clone(),
            size: i64::try_from(layer_size).unwrap_or(i64::MAX),
            platform: None,
            annotations: None,
            urls: None,
        });
    }
    let created = berth::logging::now_rfc3339();
    config.created = Some(created.clone());
    config.author = req.author.clone().filter(|a| !a.is_empty());
    config.config = req.run;
    let mut entry = json!({"created": created, "created_by": req.created_by});
    if let Some(a) = &config.author {
        entry["author"] = json!(a);
    }
    if let Some(c) = req.comment.as_deref().filter(|c| !c.is_empty()) {
        entry["comment"] = json!(c);
    }
    if empty {
        entry["empty_layer"] = json!(true);
    }
    let mut history = match config.extra.remove("history") {
        Some(serde_json::Value::Array(a)) => a,
        _ => Vec::new(),
    };
    history.push(entry);
    config.extra.insert("history".into(), json!(history));
    config.extra.insert("container".into(), json!(req.container_id));
    config.extra.remove("container_config");
    let config_bytes = serde_json::to_vec(&config).map_err(CommitError::Json)?;
    let config_digest = store.write_blob(&g, &config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": types::OCI_MANIFEST,
        "config": {"mediaType": types::OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(CommitError::Json)?;
    let manifest_digest = store.write_blob(&g, &manifest_bytes)?;
    let rec = ImageRecord {
        config: config_digest.clone(),
        layers,
        chain_ids: chains,
        created: Some(created),
        size,
        repo_digests: Vec::new(),
        extra_blobs: Vec::new(),
        added: now_secs(),
    };
    berth::faults::crash_point("image.commit.manifest-written");
    let mut il = store.lock_index()?;
    il.index.add_image(&manifest_digest, rec);
    if let Some(n) = &canonical {
        il.index.set_ref(n, &manifest_digest);
    }
    il.save()?;
    drop(il);
    drop(g);
    Ok(config_digest)
}
