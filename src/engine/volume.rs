//! Named volumes: `<data-root>/volumes/<name>/_data` (what containers mount) and
//! `<name>/meta.json` (creation time, labels, anonymous or not).

use super::cli::VolumeCmd;
use super::opts::valid_volume_name;
use super::store::Containers;
use super::{Engine, EngineError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for an image VOLUME or `-v /dest`: removed with the container by `rm -v` / `--rm`.
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    pub meta: Meta,
    pub mountpoint: PathBuf,
}

pub struct Volumes {
    pub dir: PathBuf,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EngineError + 'a {
    move |err| EngineError::Io { op, path: path.to_path_buf(), err }
}

impl Volumes {
    pub fn new(data_root: &Path) -> Volumes {
        Volumes { dir: data_root.join("volumes") }
    }

    pub fn data_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Creates `name` (or finds it). Returns the volume and whether this call made it.
    pub fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<(Volume, bool), EngineError> {
        if !valid_volume_name(name) {
            return Err(EngineError::Invalid(format!(
                "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let vdir = self.dir.join(name);
        match fs::create_dir(&vdir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Finish a creation interrupted by a crash.
                let data = self.data_path(name);
                if !data.is_dir() {
                    fs::create_dir_all(&data).map_err(io("create", &data))?;
                }
                return Ok((self.get(name)?, false));
            }
            Err(e) => return Err(EngineError::Io { op: "create", path: vdir, err: e }),
        }
        let made = (|| {
            let data = self.data_path(name);
            fs::create_dir(&data).map_err(io("create", &data))?;
            // With userns-remap a new volume belongs to the remapped root, as in docker.
            crate::remap::chown_to_root(&data).map_err(io("chown", &data))?;
            let meta = Meta { created: crate::shim::now_rfc3339(), labels, anonymous };
            let tmp = vdir.join(".meta.json.tmp");
            let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
            f.write_all(&serde_json::to_vec(&meta).unwrap_or_default()).map_err(io("write", &tmp))?;
            let dst = vdir.join("meta.json");
            fs::rename(&tmp, &dst).map_err(io("rename to", &dst))?;
            Ok(Volume { name: name.to_string(), meta, mountpoint: data })
        })();
        match made {
            Ok(v) => Ok((v, true)),
            Err(e) => {
                let _ = fs::remove_dir_all(&vdir);
                Err(e)
            }
        }
    }

    pub fn get(&self, name: &str) -> Result<Volume, EngineError> {
        if !valid_volume_name(name) {
            return Err(EngineError::NoSuchVolume(name.to_string()));
        }
        let vdir = self.dir.join(name);
        let data = self.data_path(name);
        if !data.is_dir() {
            return Err(EngineError::NoSuchVolume(name.to_string()));
        }
        let meta = fs::read(vdir.join("meta.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<Meta>(&d).ok())
            .unwrap_or_default();
        Ok(Volume { name: name.to_string(), meta, mountpoint: data })
    }

    pub fn list(&self) -> Vec<Volume> {
        let Ok(rd) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut v: Vec<Volume> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| self.get(&n).ok())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Ids of the containers that mount `name`.
    pub fn users(&self, name: &str, containers: &Containers) -> Vec<String> {
        containers
            .all()
            .into_iter()
            .filter(|r| r.mounts.iter().any(|m| m.kind == "volume" && m.name.as_deref() == Some(name)))
            .map(|r| r.id)
            .collect()
    }

    /// Removes a volume no container uses.
    pub fn remove(&self, name: &str, containers: &Containers) -> Result<(), EngineError> {
        self.get(name)?;
        if let Some(id) = self.users(name, containers).first() {
            return Err(EngineError::Conflict(format!("remove {name}: volume is in use by container {}", &id[..12])));
        }
        self.remove_unchecked(name)
    }

    /// Removes a volume without asking who uses it (a container's own anonymous volumes).
    pub fn remove_unchecked(&self, name: &str) -> Result<(), EngineError> {
        if !valid_volume_name(name) {
            return Ok(());
        }
        let vdir = self.dir.join(name);
        // Renamed first: a half-removed volume is never seen under its name.
        let trash = self.dir.join(format!(".rm-{name}-{}", std::process::id()));
        match fs::rename(&vdir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(EngineError::Io { op: "rename", path: vdir, err: e }),
        }
        fs::remove_dir_all(&trash).map_err(io("remove", &trash))
    }
}

pub fn inspect_json(v: &Volume) -> serde_json::Value {
    json!({
        "CreatedAt": v.meta.created,
        "Driver": "local",
        "Labels": v.meta.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": {},
        "Scope": "local",
    })
}

/// `berth volume ...`
pub fn command(e: &Engine, cmd: VolumeCmd) -> Result<i32, EngineError> {
    let vols = Volumes::new(&e.data_root);
    let containers = Containers::new(&e.data_root);
    let mut out = std::io::stdout().lock();
    match cmd {
        VolumeCmd::Create { driver, label, name } => {
            if driver != "local" {
                return Err(EngineError::Invalid(format!("volume driver {driver:?} is not supported (only local)")));
            }
            let mut labels = BTreeMap::new();
            for l in &label {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                labels.insert(k.to_string(), v.to_string());
            }
            let name = match name {
                Some(n) => n,
                None => super::store::new_id()?,
            };
            let (v, made) = vols.create(&name, labels, false)?;
            if made {
                crate::events::record(&e.data_root, "volume", "create", &v.name, "");
            }
            let _ = writeln!(out, "{}", v.name);
        }
        VolumeCmd::Ls { quiet, format } => {
            let list = vols.list();
            match (quiet, format.as_deref()) {
                (true, _) => {
                    for v in &list {
                        let _ = writeln!(out, "{}", v.name);
                    }
                }
                (false, Some("json")) | (false, Some("{{json .}}")) => {
                    for v in &list {
                        let j = json!({"Driver": "local", "Labels": v.meta.labels, "Mountpoint": v.mountpoint, "Name": v.name, "Scope": "local"});
                        let _ = writeln!(out, "{j}");
                    }
                }
                (false, None) | (false, Some("table")) => {
                    let _ = writeln!(out, "{:<16}VOLUME NAME", "DRIVER");
                    for v in &list {
                        let _ = writeln!(out, "{:<16}{}", "local", v.name);
                    }
                }
                (false, Some(f)) => {
                    return Err(EngineError::Invalid(format!("unknown --format {f:?} (table or json)")))
                }
            }
        }
        VolumeCmd::Inspect { volumes } => {
            let mut arr = Vec::new();
            let mut first_err = None;
            for n in &volumes {
                match vols.get(n) {
                    Ok(v) => arr.push(inspect_json(&v)),
                    Err(err) => {
                        first_err.get_or_insert(err);
                    }
                }
            }
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&arr).unwrap_or_default());
            if let Some(err) = first_err {
                return Err(err);
            }
        }
        VolumeCmd::Rm { force: _, volumes } => {
            let mut first_err = None;
            for n in &volumes {
                match vols.remove(n, &containers) {
                    Ok(()) => {
                        crate::events::record(&e.data_root, "volume", "destroy", n, "");
                        let _ = writeln!(out, "{n}");
                    }
                    Err(err) => {
                        if first_err.is_some() {
                            let _ = writeln!(std::io::stderr(), "berth: {err}");
                        }
                        first_err.get_or_insert(err);
                    }
                }
            }
            if let Some(err) = first_err {
                return Err(err);
            }
        }
        VolumeCmd::Prune { all, force: _ } => {
            let _ = writeln!(out, "Deleted Volumes:");
            let users: Vec<String> =
                containers.all().iter().flat_map(|r| r.mounts.iter().filter_map(|m| m.name.clone())).collect();
            for v in vols.list() {
                if (all || v.meta.anonymous) && !users.contains(&v.name) && vols.remove_unchecked(&v.name).is_ok() {
                    crate::events::record(&e.data_root, "volume", "destroy", &v.name, "");
                    let _ = writeln!(out, "{}", v.name);
                }
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_get_remove() {
        let d = std::env::temp_dir().join(format!("berth-engine-vol-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let v = Volumes::new(&d);
        let c = Containers::new(&d);
        let (a, made) = v.create("data1", BTreeMap::new(), false).unwrap();
        assert!(made && a.mountpoint.is_dir());
        let (_, made) = v.create("data1", BTreeMap::new(), false).unwrap();
        assert!(!made);
        assert!(v.create("bad/name", BTreeMap::new(), false).is_err());
        assert_eq!(v.list().len(), 1);
        assert!(matches!(v.get("nope"), Err(EngineError::NoSuchVolume(_))));
        v.remove("data1", &c).unwrap();
        assert!(v.list().is_empty());
        assert!(matches!(v.remove("data1", &c), Err(EngineError::NoSuchVolume(_))));
        let _ = fs::remove_dir_all(&d);
    }
}
