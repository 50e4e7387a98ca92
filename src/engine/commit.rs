//! `container commit` and `container diff`: a container's writable layer (the overlay's
//! upper dir) read by `crate::image::upper_layer`, made into a new image by
//! `crate::image::commit`.

use super::adapt;
use super::run::{self, State};
use super::store::{Containers, Record};
use super::{Engine, EngineError};
use crate::image::commit::{commit as commit_image, CommitRequest};
use crate::image::store::Store;
use crate::image::types::RunConfig;
use crate::image::upper_layer::{self, UpperError};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Paths the engine makes in every container as mount points (docker's init layer has them):
/// left out of diff and commit when the image does not have them.
const ENGINE_MOUNT_POINTS: &[&str] = &["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/proc", "/sys", "/dev"];

fn upper_err(e: UpperError) -> EngineError {
    EngineError::Msg(e.to_string())
}

/// (upper dir, lower dirs, excluded mount points) of a container.
fn layer_of(cs: &Containers, rec: &Record) -> Result<(PathBuf, Vec<PathBuf>, BTreeSet<String>), EngineError> {
    if rec.rootfs_copied {
        return Err(EngineError::Conflict(format!(
            "container {}: its rootfs is a plain copy (overlayfs was unusable), it has no layer of changes",
            rec.id
        )));
    }
    let mut exclude: BTreeSet<String> = ENGINE_MOUNT_POINTS.iter().map(|s| s.to_string()).collect();
    for m in &rec.mounts {
        exclude.insert(m.destination.clone());
    }
    for (d, _) in &rec.spec.tmpfs {
        exclude.insert(d.clone());
    }
    Ok((cs.path(&rec.id).join("rw/upper"), rec.lowers.clone(), exclude))
}

/// A container's changes to its image's filesystem (what `diff` prints).
pub fn changes(cs: &Containers, key: &str) -> Result<Vec<upper_layer::Change>, EngineError> {
    let rec = cs.find(key)?;
    let (upper, lowers, exclude) = layer_of(cs, &rec)?;
    upper_layer::changes(&upper, &lowers, &exclude).map_err(upper_err)
}

/// docker's `diff` lines.
pub fn diff(cs: &Containers, key: &str) -> Result<i32, EngineError> {
    let changes = changes(cs, key)?;
    let mut out = String::new();
    for c in changes {
        out.push(c.kind.letter());
        out.push(' ');
        out.push_str(&c.path);
        out.push('\n');
    }
    print!("{out}");
    Ok(0)
}

/// The run config a committed image gets: the image's, with the container's command,
/// entrypoint, environment, user, working dir and labels over it.
fn container_config(rec: &Record) -> RunConfig {
    let mut c = rec.image_config.clone();
    let s = &rec.spec;
    if let Some(ep) = &s.entrypoint {
        c.entrypoint = Some(ep.clone()).filter(|e| !e.is_empty());
        if s.cmd.is_empty() {
            c.cmd = None;
        }
    }
    if !s.cmd.is_empty() {
        c.cmd = Some(s.cmd.clone());
    }
    if !s.env.is_empty() {
        let mut env = c.env.take().unwrap_or_default();
        for kv in &s.env {
            let key = kv.split('=').next().unwrap_or(kv);
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        c.env = Some(env);
    }
    if let Some(u) = &s.user {
        c.user = Some(u.clone());
    }
    if let Some(w) = &s.workdir {
        c.working_dir = Some(w.clone());
    }
    if !s.labels.is_empty() {
        let mut l = c.labels.take().unwrap_or_default();
        l.extend(s.labels.clone());
        c.labels = Some(l);
    }
    if let Some(sig) = &s.stop_signal {
        c.stop_signal = Some(sig.clone());
    }
    c
}

pub struct CommitOpts {
    pub author: Option<String>,
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub pause: bool,
}

/// Commits a container; prints the new image id.
pub fn commit(e: &Engine, cs: &Containers, key: &str, name: Option<&str>, o: CommitOpts) -> Result<i32, EngineError> {
    println!("{}", commit_image_of(e, cs, key, name, o)?);
    Ok(0)
}

/// Commits a container to a new image (named `name` when given); its id.
pub fn commit_image_of(
    e: &Engine,
    cs: &Containers,
    key: &str,
    name: Option<&str>,
    o: CommitOpts,
) -> Result<String, EngineError> {
    let rec = cs.find(key)?;
    let (upper, lowers, exclude) = layer_of(cs, &rec)?;
    let mut run_cfg = container_config(&rec);
    // docker's created_by: the container's command, before --change.
    let created_by = run_cfg.cmd.clone().unwrap_or_default().join(" ");
    crate::image::import::apply_changes(&mut run_cfg, &o.changes).map_err(|e| EngineError::Invalid(e.to_string()))?;
    if let Some(n) = name {
        crate::image::store::normalise(n).map_err(|e| EngineError::Invalid(e.to_string()))?;
    }
    let store = Store::open(&e.data_root).map_err(|e| EngineError::Image(e.to_string()))?;
    let req = CommitRequest {
        parent: &rec.image_id,
        run: run_cfg,
        author: o.author,
        comment: o.message,
        created_by,
        container_id: rec.id.clone(),
        name: name.map(str::to_string),
    };
    // A running container is frozen while its layer is read (unless --pause=false).
    let paused =
        o.pause && run::status(e, cs, &rec.id).state == State::Running && adapt::runtime_pause(e, &rec.id).is_ok();
    let res = commit_image(&store, req, |w| {
        // A remapped container's files are written with the owners it saw.
        let owners = crate::remap::active().map(|_| crate::remap::to_container as upper_layer::OwnerMap);
        let opts = upper_layer::LayerOptions { lowers: &lowers, exclude: Some(&exclude), clamp_mtime: None, owners };
        upper_layer::write_layer(&upper, &opts, w).map(|_| ()).map_err(|e| e.to_string())
    });
    if paused {
        let _ = adapt::runtime_resume(e, &rec.id);
    }
    let id = res.map_err(|e| EngineError::Image(e.to_string()))?;
    Ok(id.to_string())
}
