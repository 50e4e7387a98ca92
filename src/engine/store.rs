//! Container records under `<data-root>/containers/`:
//!
//!   <id>/record.json   [`Record`] (written first: a half-made container is always findable)
//!   <id>/lock          flock held by whoever changes the container's mounts or network
//!   <id>/bundle/       config.json and rootfs/ (overlay mount point)
//!   <id>/rw/upper, rw/work   the overlay's writable layer
//!   <id>/etc/          hostname, hosts, resolv.conf bind-mounted into the container
//!   <id>/shim.json, container.log, attach.sock   the shim's (see crate::shim)
//!   names/<name>       the id owning that name (created with O_EXCL: names are unique)

use super::opts::RunSpec;
use super::EngineError;
use crate::image::types::RunConfig;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const RECORD: &str = "record.json";

/// A mount of the container (volumes resolved to host paths).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRec {
    /// "bind" or "volume".
    pub kind: String,
    /// Volume name (anonymous volumes get a 64-hex one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source: PathBuf,
    pub destination: String,
    pub rw: bool,
    #[serde(default)]
    pub anonymous: bool,
    /// Propagation and other options (bind mounts).
    #[serde(default)]
    pub options: Vec<String>,
}

/// The last network attachment (shown by ls / inspect).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetInfo {
    /// "HOSTIP:HOSTPORT->PORT/PROTO" strings.
    pub ports: Vec<String>,
    pub ip: Option<String>,
    pub prefix: Option<u8>,
    pub gateway: Option<String>,
    pub mac: Option<String>,
    pub networks: Vec<String>,
    pub sandbox: Option<PathBuf>,
    /// The first network's IPv6 address, prefix length and gateway (dual-stack networks).
    #[serde(default)]
    pub ip6: Option<String>,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default)]
    pub gateway6: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    /// Image id (config digest, "sha256:...").
    pub image_id: String,
    /// Snapshot dirs of the image, top first (overlay lower dirs).
    pub lowers: Vec<PathBuf>,
    /// The image's run config (Cmd, Entrypoint, Env, ...), kept so that starting needs no
    /// image store.
    pub image_config: RunConfig,
    pub spec: RunSpec,
    pub mounts: Vec<MountRec>,
    /// The process's command line (entrypoint + cmd), for display.
    pub path: String,
    pub args: Vec<String>,
    #[serde(default)]
    pub net: NetInfo,
    /// Set once a start made the rootfs a plain copy (overlayfs unusable): reuse it.
    #[serde(default)]
    pub rootfs_copied: bool,
}

pub struct Containers {
    pub dir: PathBuf,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EngineError + 'a {
    move |err| EngineError::Io { op, path: path.to_path_buf(), err }
}

pub fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// 64 random hex digits.
pub fn new_id() -> Result<String, EngineError> {
    let mut b = [0u8; 32];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: getrandom into the unfilled tail of a live buffer.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(EngineError::Msg(format!("getrandom: {e}")));
        }
        got += n as usize;
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// An exclusive flock on a container's lock file; released on drop.
pub struct Lock(#[allow(dead_code)] fs::File);

impl Containers {
    pub fn new(data_root: &Path) -> Containers {
        Containers { dir: data_root.join("containers") }
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn names_dir(&self) -> PathBuf {
        self.dir.join("names")
    }

    /// Creates the container's directory with its record, atomically: made as `.new-<id>`
    /// and renamed into place, so that a container dir always has a record. Returns the
    /// container's lock, held.
    pub fn create(&self, r: &Record) -> Result<Lock, EngineError> {
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let tmp = self.dir.join(format!(".new-{}", r.id));
        // Only root reads a record (it holds the container's environment).
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o711)
            .create(&tmp)
            .map_err(io("create", &tmp))?;
        let made = (|| {
            let lock = lock_file(&tmp.join("lock"), true)?
                .ok_or_else(|| EngineError::Msg(format!("lock {}: held", tmp.display())))?;
            write_record(&tmp, r)?;
            let dst = self.path(&r.id);
            fs::rename(&tmp, &dst).map_err(io("rename to", &dst))?;
            Ok(lock)
        })();
        if made.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        made
    }

    /// Removes what crashed creations and removals left (`.new-*`, `.rm-*` dirs whose lock
    /// nobody holds).
    pub fn sweep(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else { return };
        for e in rd.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if !(n.starts_with(".new-") || n.starts_with(".rm-")) {
                continue;
            }
            if let Ok(Some(_l)) = lock_file(&e.path().join("lock"), false) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    pub fn save(&self, r: &Record) -> Result<(), EngineError> {
        write_record(&self.path(&r.id), r)
    }

    pub fn load(&self, id: &str) -> Result<Record, EngineError> {
        let p = self.path(id).join(RECORD);
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EngineError::NoSuchContainer(id.to_string()))
            }
            Err(e) => return Err(EngineError::Io { op: "read", path: p, err: e }),
        };
        serde_json::from_slice(&data).map_err(|e| EngineError::Msg(format!("parse {}: {e}", p.display())))
    }

    /// Ids of every container dir holding a record.
    pub fn ids(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.dir) else { return Vec::new() };
        rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).filter(|n| is_id(n)).collect()
    }

    pub fn all(&self) -> Vec<Record> {
        self.ids().iter().filter_map(|id| self.load(id).ok()).collect()
    }

    /// The id a name is claimed by.
    pub fn name_owner(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.names_dir().join(name)).ok().map(|s| s.trim().to_string()).filter(|s| is_id(s))
    }

    /// Claims `name` for `id`; a claim whose container is gone (a crash between the two
    /// steps of create or rm) is taken over.
    pub fn claim_name(&self, name: &str, id: &str) -> Result<(), EngineError> {
        let dir = self.names_dir();
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let p = dir.join(name);
        for _ in 0..3 {
            match fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&p) {
                Ok(mut f) => {
                    f.write_all(id.as_bytes()).map_err(io("write", &p))?;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match self.name_owner(name) {
                        Some(other) if other != id && self.path(&other).join(RECORD).exists() => {
                            return Err(EngineError::Conflict(format!(
                                "the container name \"/{name}\" is already in use by container {other}: remove (or rename) that container to reuse the name"
                            )))
                        }
                        Some(other) if other == id => return Ok(()),
                        _ => {
                            let _ = fs::remove_file(&p);
                        }
                    }
                }
                Err(e) => return Err(EngineError::Io { op: "create", path: p, err: e }),
            }
        }
        Err(EngineError::Conflict(format!("the container name \"/{name}\" is already in use")))
    }

    /// Drops `name`'s claim if `id` holds it.
    pub fn release_name(&self, name: &str, id: &str) {
        if self.name_owner(name).as_deref() == Some(id) {
            let _ = fs::remove_file(self.names_dir().join(name));
        }
    }

    /// Finds a container by full id, name or unique id prefix.
    pub fn find(&self, key: &str) -> Result<Record, EngineError> {
        let key = key.strip_prefix('/').unwrap_or(key);
        if key.is_empty() {
            return Err(EngineError::NoSuchContainer(key.to_string()));
        }
        if is_id(key) {
            return self.load(key);
        }
        match self.name_owner(key) {
            Some(id) => {
                if let Ok(r) = self.load(&id) {
                    return Ok(r);
                }
            }
            // A create killed between writing its record and claiming the name: the record
            // still answers to its name (so `rm -f NAME` finds it).
            None => {
                if let Some(r) = self.ids().into_iter().filter_map(|i| self.load(&i).ok()).find(|r| r.name == key) {
                    return Ok(r);
                }
            }
        }
        if key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let key = key.to_ascii_lowercase();
            let m: Vec<String> = self.ids().into_iter().filter(|i| i.starts_with(&key)).collect();
            match m.len() {
                0 => {}
                1 => return self.load(&m[0]),
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "multiple containers match the id prefix {key:?}: be more specific"
                    )))
                }
            }
        }
        Err(EngineError::NoSuchContainer(key.to_string()))
    }

    /// Takes the container's lock (waiting for it). Fails with NoSuchContainer when its
    /// directory is gone.
    pub fn lock(&self, id: &str) -> Result<Lock, EngineError> {
        match lock_file(&self.path(id).join("lock"), true) {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(EngineError::Msg(format!("lock container {id}: held"))),
            Err(EngineError::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(EngineError::NoSuchContainer(id.to_string()))
            }
            Err(e) => Err(e),
        }
    }
}

fn write_record(dir: &Path, r: &Record) -> Result<(), EngineError> {
    let tmp = dir.join(".record.json.tmp");
    let data = serde_json::to_vec_pretty(r).map_err(|e| EngineError::Msg(format!("encode record of {}: {e}", r.id)))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(&data).map_err(io("write", &tmp))?;
    let dst = dir.join(RECORD);
    fs::rename(&tmp, &dst).map_err(io("rename to", &dst))
}

/// An exclusive flock on `p` (created if missing); `wait` false: None when someone holds it.
fn lock_file(p: &Path, wait: bool) -> Result<Option<Lock>, EngineError> {
    let f =
        fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(p).map_err(io("open", p))?;
    let op = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(Some(Lock(f)));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(None),
            _ => return Err(EngineError::Io { op: "lock", path: p.to_path_buf(), err: e }),
        }
    }
}

/// Adjective_noun names, as docker makes them.
const ADJECTIVES: &[&str] = &[
    "agile", "amber", "ancient", "bold", "brave", "bright", "brisk", "calm", "clever", "cosmic", "crisp", "curious",
    "daring", "dazzling", "eager", "elated", "epic", "fervent", "fond", "gentle", "gifted", "golden", "happy", "hardy",
    "humble", "jolly", "keen", "kind", "lively", "lucid", "lucky", "mellow", "merry", "mighty", "modest", "nimble",
    "noble", "patient", "placid", "plucky", "proud", "quiet", "quirky", "rapid", "serene", "sharp", "shiny", "silent",
    "sleepy", "snowy", "sober", "spry", "steady", "stoic", "sunny", "swift", "tender", "tidy", "vivid", "witty",
];
const NOUNS: &[&str] = &[
    "anchor", "badger", "beacon", "bison", "breeze", "canyon", "cedar", "comet", "coral", "cricket", "delta",
    "dolphin", "falcon", "fern", "fjord", "galaxy", "glacier", "harbor", "heron", "island", "jaguar", "kestrel",
    "lagoon", "lantern", "lynx", "maple", "meadow", "meteor", "narwhal", "nebula", "oasis", "orca", "otter", "panda",
    "pebble", "pelican", "pine", "prairie", "quasar", "raven", "reef", "river", "saffron", "sequoia", "sparrow",
    "spruce", "summit", "tern", "thistle", "tiger", "tundra", "valley", "vortex", "walrus", "willow", "wombat", "yak",
    "zebra", "zephyr", "quill",
];

/// A random adjective_noun name (with a number appended after a few clashes).
pub fn random_name(attempt: u32) -> String {
    let mut b = [0u8; 4];
    // SAFETY: getrandom into a live 4-byte buffer; a short read only weakens the choice.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let r = u32::from_le_bytes(b) as usize;
    let a = ADJECTIVES[r % ADJECTIVES.len()];
    let n = NOUNS[(r / ADJECTIVES.len()) % NOUNS.len()];
    if attempt < 3 {
        format!("{a}_{n}")
    } else {
        format!("{a}_{n}{}", r % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = new_id().unwrap();
        assert!(is_id(&id), "{id}");
        assert_ne!(id, new_id().unwrap());
        assert!(!is_id("abc") && !is_id(&"g".repeat(64)));
        for i in 0..5 {
            let n = random_name(i);
            assert!(super::super::opts::check_name(&n).is_ok(), "{n}");
        }
    }

    #[test]
    fn records_and_claims() {
        let d = std::env::temp_dir().join(format!("berth-engine-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let c = Containers::new(&d);
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        let mut rec = Record {
            id: a.clone(),
            name: "web".into(),
            created: String::new(),
            image: "busybox".into(),
            image_id: String::new(),
            lowers: vec![],
            image_config: RunConfig::default(),
            spec: RunSpec::default(),
            mounts: vec![],
            path: "sh".into(),
            args: vec![],
            net: NetInfo::default(),
            rootfs_copied: false,
        };
        drop(c.create(&rec).unwrap());
        c.save(&rec).unwrap();
        c.claim_name("web", &a).unwrap();
        rec.id = b.clone();
        let held = c.create(&rec).unwrap();
        // Leftovers of crashes are swept, unless someone holds their lock.
        fs::create_dir(c.dir.join(".new-x")).unwrap();
        fs::create_dir(c.dir.join(".rm-y")).unwrap();
        let keep = lock_file(&c.dir.join(".rm-y/lock"), true).unwrap();
        c.sweep();
        assert!(!c.dir.join(".new-x").exists() && c.dir.join(".rm-y").exists());
        drop(keep);
        c.sweep();
        assert!(!c.dir.join(".rm-y").exists());
        drop(held);
        assert!(matches!(c.claim_name("web", &b), Err(EngineError::Conflict(_))));
        assert_eq!(c.find("web").unwrap().id, a);
        assert_eq!(c.find(&a[..6]).unwrap().id, a);
        assert_eq!(c.find(&a).unwrap().id, a);
        assert!(matches!(c.find("nope"), Err(EngineError::NoSuchContainer(_))));
        // A claim whose container is gone is taken over.
        fs::remove_dir_all(c.path(&a)).unwrap();
        c.claim_name("web", &b).unwrap();
        assert_eq!(c.name_owner("web").as_deref(), Some(b.as_str()));
        c.release_name("web", &a);
        assert!(c.name_owner("web").is_some());
        c.release_name("web", &b);
        assert!(c.name_owner("web").is_none());
        let _ = fs::remove_dir_all(&d);
    }
}
