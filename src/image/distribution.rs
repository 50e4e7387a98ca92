//! What a registry holds under a reference, without pulling it: the descriptor of the manifest
//! (or index) the reference names and the platforms it serves, as docker's
//! `GET /distribution/{name}/json` answers (`docker service create` and the SDKs'
//! `get_registry_data` ask it).
//!
//! An index lists its manifests' platforms; a single manifest's platform is read from its
//! config blob (fetched, size-bounded and verified), as dockerd does.

use super::digest::Digest;
use super::reference::Reference;
use super::registry::{Client, RegistryError};
use super::types::{Index, Manifest, Platform, DOCKER_LIST, OCI_INDEX};

/// Largest image config read for its platform.
const MAX_CONFIG: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("manifest {what}: {msg}")]
    Manifest { what: String, msg: String },
}

/// The manifest or index a reference names, and the platforms behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteImage {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// In the index's order; one for a single manifest (none when its config names none).
    pub platforms: Vec<Platform>,
}

/// Looks `r` up in its registry.
pub fn inspect(client: &Client, r: &Reference) -> Result<RemoteImage, DistributionError> {
    let (body, media_type, digest) = client.get_manifest(r)?;
    let what = format!("{}/{}@{digest}", r.registry, r.repository);
    let bad = |msg: String| DistributionError::Manifest { what: what.clone(), msg };
    let platforms = if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        let index: Index = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        index.manifests.into_iter().filter_map(|d| d.platform).collect()
    } else {
        let m: Manifest = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        let size = u64::try_from(m.config.size).ok().filter(|s| *s <= MAX_CONFIG);
        let size = size.ok_or_else(|| bad(format!("config size {} out of bounds", m.config.size)))?;
        let mut config = Vec::new();
        client.get_blob_unverified(r, &m.config.digest, &mut config, Some(size), &|_| {})?;
        if Digest::of(&config) != m.config.digest {
            return Err(bad(format!("config {} does not match its digest", m.config.digest)));
        }
        // The platform fields of the config (architecture, os, variant, os.version).
        match serde_json::from_slice::<Platform>(&config) {
            Ok(p) if !p.os.is_empty() || !p.architecture.is_empty() => vec![p],
            _ => Vec::new(),
        }
    };
    Ok(RemoteImage { media_type, digest, size: body.len() as u64, platforms })
}
