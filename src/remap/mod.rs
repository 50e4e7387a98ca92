//! docker's `userns-remap` daemon setting, read from `<data-root>/daemon.json`: containers run
//! in a user namespace whose root is a subordinate id of a host user, and the engine keeps its
//! store in `<data-root>/<uid>.<gid>` (the mapped root's host ids), where image layers are
//! unpacked with their owners shifted into the range, as dockerd does.
//!
//! `"userns-remap": "default"` uses the user and group `dockremap`, made (with a free range of
//! 65536 ids in /etc/subuid and /etc/subgid, where dockerd would put it) when missing; `"USER[:GROUP]"` uses that user's
//! subordinate uids and the group's (the user's name when no group) subordinate gids.
//! `--userns host` runs one container without it.

// The ordinary-user engine's reader of /etc/subuid-style ranges (by name or number, in file
// order).
use crate::unprivileged::sub_ranges;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One subordinate range: (first host id, count).
pub type Range = (u32, u32);

/// Why the remapping could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemapError {
    #[error("read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{path}: {err}")]
    Json { path: PathBuf, err: serde_json::Error },
    /// dockerd's wording.
    #[error("Can't create ID mappings: No subuid ranges found for user {0:?}")]
    NoSubuid(String),
    #[error("Can't create ID mappings: No subgid ranges found for group {0:?}")]
    NoSubgid(String),
    #[error("Can't create ID mappings: user {0:?} does not exist")]
    NoUser(String),
    #[error("Can't create ID mappings: group {0:?} does not exist")]
    NoGroup(String),
    #[error("userns-remap: {cmd}: {msg}")]
    Command { cmd: String, msg: String },
    #[error("create {path}: {err}")]
    Create { path: PathBuf, err: std::io::Error },
}

/// The mapping of the remapped containers: container ids from 0 up, range after range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<Range>,
    pub gids: Vec<Range>,
}

fn in_ranges(ranges: &[Range], id: u32) -> Option<u32> {
    let mut base = 0u64;
    for &(start, count) in ranges {
        let id = u64::from(id);
        if id < base + u64::from(count) {
            return u32::try_from(u64::from(start) + id - base).ok();
        }
        base += u64::from(count);
    }
    None
}

fn spec_maps(ranges: &[Range]) -> serde_json::Value {
    let mut v = Vec::new();
    let mut base = 0u64;
    for &(start, count) in ranges {
        v.push(serde_json::json!({"containerID": base, "hostID": start, "size": count}));
        base += u64::from(count);
    }
    serde_json::Value::Array(v)
}

impl IdMap {
    /// The host uid of container uid `id` (None: outside the ranges).
    pub fn uid(&self, id: u32) -> Option<u32> {
        in_ranges(&self.uids, id)
    }

    pub fn gid(&self, id: u32) -> Option<u32> {
        in_ranges(&self.gids, id)
    }

    /// The host ids of the container's root.
    pub fn root(&self) -> (u32, u32) {
        (self.uids[0].0, self.gids[0].0)
    }

    /// Adds a user namespace with the mappings to an OCI config.
    pub fn apply(&self, spec: &mut serde_json::Value) {
        let Some(linux) = spec.get_mut("linux").and_then(|l| l.as_object_mut()) else { return };
        let ns = linux.entry("namespaces").or_insert_with(|| serde_json::json!([]));
        if let Some(a) = ns.as_array_mut() {
            if !a.iter().any(|n| n["type"] == "user") {
                a.push(serde_json::json!({"type": "user"}));
            }
        }
        linux.insert("uidMappings".into(), spec_maps(&self.uids));
        linux.insert("gidMappings".into(), spec_maps(&self.gids));
    }
}

fn from_host(ranges: &[Range], host: u32) -> Option<u32> {
    let mut base = 0u64;
    for &(start, count) in ranges {
        if host >= start && u64::from(host) < u64::from(start) + u64::from(count) {
            return u32::try_from(base + u64::from(host - start)).ok();
        }
        base += u64::from(count);
    }
    None
}

/// The kernel's overflow id: what a container sees for an owner outside its mapping.
const OVERFLOW_ID: u32 = 65_534;

/// The container's view of host owner `uid:gid` under the active remapping (the overflow id
/// for one outside the ranges); unchanged without one.
pub fn to_container(uid: u32, gid: u32) -> (u32, u32) {
    match active() {
        Some(m) => (from_host(&m.uids, uid).unwrap_or(OVERFLOW_ID), from_host(&m.gids, gid).unwrap_or(OVERFLOW_ID)),
        None => (uid, gid),
    }
}

/// The host owner of container owner `uid:gid` under the active remapping (unchanged outside
/// the ranges, or without one).
pub fn to_host(uid: u32, gid: u32) -> (u32, u32) {
    match active() {
        Some(m) => (m.uid(uid).unwrap_or(uid), m.gid(gid).unwrap_or(gid)),
        None => (uid, gid),
    }
}

static ACTIVE: OnceLock<IdMap> = OnceLock::new();
/// The data root named on the command line when the store moved to `<uid>.<gid>`.
static DAEMON_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The daemon.json of the engine using `data_root`: the one the remapping was read from.
pub fn daemon_json(data_root: &Path) -> PathBuf {
    DAEMON_ROOT.get().map(|d| d.as_path()).unwrap_or(data_root).join("daemon.json")
}

/// The remapping this process's engine uses, if `setup` found one.
pub fn active() -> Option<&'static IdMap> {
    ACTIVE.get()
}

fn read(path: &Path) -> Result<String, RemapError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(err) => Err(RemapError::Read { path: path.to_path_buf(), err }),
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<(), RemapError> {
    let o = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| RemapError::Command { cmd: cmd.to_string(), msg: e.to_string() })?;
    if !o.status.success() {
        let msg = String::from_utf8_lossy(&o.stderr).trim().lines().next().unwrap_or("failed").to_string();
        return Err(RemapError::Command { cmd: format!("{cmd} {}", args.join(" ")), msg });
    }
    Ok(())
}

/// Where dockerd puts a new range of 65536 ids in an /etc/subuid-style file: from 100000, past
/// every range (in start order) that the candidate would overlap (idtools' findNextRangeStart,
/// its inclusive bounds kept).
fn free_start(text: &str) -> u64 {
    const LEN: u64 = 65_536;
    let mut ranges: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?))
        })
        .collect();
    ranges.sort();
    let mut start = 100_000u64;
    for (s, c) in ranges {
        let (low, high) = (start, start + LEN);
        if (low >= s && low <= s + c) || (high <= s + c && high >= s) {
            start = s + c;
        }
    }
    start
}

/// Makes the `dockremap` user and group and its ranges when missing (dockerd's "default").
fn ensure_dockremap() -> Result<(), RemapError> {
    if lookup("/etc/passwd", "dockremap")?.is_none() {
        run("useradd", &["--system", "--user-group", "--shell", "/bin/false", "--no-create-home", "dockremap"])?;
    }
    let (su, sg) = (read(Path::new("/etc/subuid"))?, read(Path::new("/etc/subgid"))?);
    if sub_ranges(&su, "dockremap", u32::MAX).is_empty() || sub_ranges(&sg, "dockremap", u32::MAX).is_empty() {
        let (u, g) = (free_start(&su), free_start(&sg));
        let (ur, gr) = (format!("{u}-{}", u + 65_535), format!("{g}-{}", g + 65_535));
        run("usermod", &["-v", &ur, "-w", &gr, "dockremap"])?;
    }
    Ok(())
}

/// (name, id, primary gid) of a user in /etc/passwd (or a group in /etc/group) named `key`, or
/// numbered so when `key` is a number. The files are read directly, as shadow's tools do: the
/// NSS modules of a host without their services cannot be relied on for a missing name.
fn lookup(file: &str, key: &str) -> Result<Option<(String, u32, u32)>, RemapError> {
    let num = key.parse::<u32>().ok();
    Ok(read(Path::new(file))?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let id = f.get(2)?.parse::<u32>().ok()?;
        let matches = match num {
            Some(n) => id == n,
            None => f[0] == key,
        };
        matches.then(|| (f[0].to_string(), id, f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id)))
    }))
}

/// The mapping for a `userns-remap` value.
pub fn resolve(value: &str) -> Result<IdMap, RemapError> {
    let value = if value == "default" {
        ensure_dockremap()?;
        "dockremap"
    } else {
        value
    };
    let (user, group) = value.split_once(':').unwrap_or((value, ""));
    let (uname, uid, ugid) = lookup("/etc/passwd", user)?.ok_or_else(|| RemapError::NoUser(user.to_string()))?;
    let (gname, gid, _) = if group.is_empty() {
        match lookup("/etc/group", &uname)? {
            Some(g) => Some(g),
            None => lookup("/etc/group", &ugid.to_string())?,
        }
    } else {
        lookup("/etc/group", group)?
    }
    .ok_or_else(|| RemapError::NoGroup(if group.is_empty() { uname.clone() } else { group.to_string() }))?;
    let uids = sub_ranges(&read(Path::new("/etc/subuid"))?, &uname, uid);
    if uids.is_empty() {
        return Err(RemapError::NoSubuid(uname));
    }
    let gids = sub_ranges(&read(Path::new("/etc/subgid"))?, &gname, gid);
    if gids.is_empty() {
        return Err(RemapError::NoSubgid(gname));
    }
    Ok(IdMap { uids, gids })
}

/// Reads `<data_root>/daemon.json`; with `userns-remap` set, makes it this process's mapping
/// and returns the data root to use: `<data_root>/<uid>.<gid>` (made, traversable by the
/// mapped root).
pub fn setup(data_root: &Path) -> Result<Option<PathBuf>, RemapError> {
    #[derive(serde::Deserialize)]
    struct Daemon {
        #[serde(rename = "userns-remap", default)]
        userns_remap: Option<String>,
    }
    let path = data_root.join("daemon.json");
    let text = read(&path)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let d: Daemon = serde_json::from_str(&text).map_err(|err| RemapError::Json { path: path.clone(), err })?;
    let Some(value) = d.userns_remap.filter(|v| !v.is_empty()) else { return Ok(None) };
    let map = resolve(&value)?;
    let (uid, gid) = map.root();
    let dir = data_root.join(format!("{uid}.{gid}"));
    if !dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&dir)
            .map_err(|err| RemapError::Create { path: dir.clone(), err })?;
    }
    let _ = ACTIVE.set(map);
    let _ = DAEMON_ROOT.set(data_root.to_path_buf());
    Ok(Some(dir))
}

/// Gives `path` to the container's root when remapping (an upper dir, a volume's data).
pub fn chown_to_root(path: &Path) -> std::io::Result<()> {
    match active() {
        Some(m) => {
            let (u, g) = m.root();
            std::os::unix::fs::chown(path, Some(u), Some(g))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_ids() {
        let t = "a:100000:65536\nb:200000:10\n# x\n1001:300000:5\nb:400000:20\nb:1:0\n";
        assert_eq!(sub_ranges(t, "b", 1001), vec![(200_000, 10), (300_000, 5), (400_000, 20)]);
        let m = IdMap { uids: sub_ranges(t, "b", 1001), gids: vec![(7, 1)] };
        assert_eq!(m.uid(0), Some(200_000));
        assert_eq!(m.uid(9), Some(200_009));
        assert_eq!(m.uid(10), Some(300_000));
        assert_eq!(m.uid(15), Some(400_000));
        assert_eq!(m.uid(35), None);
        assert_eq!(m.gid(1), None);
        assert_eq!(m.root(), (200_000, 7));
        assert_eq!(from_host(&m.uids, 300_004), Some(14));
        assert_eq!(from_host(&m.uids, 200_010), None);
        assert_eq!(from_host(&m.uids, 0), None);
        let mut spec = serde_json::json!({"linux": {"namespaces": [{"type": "pid"}]}});
        m.apply(&mut spec);
        assert_eq!(spec["linux"]["namespaces"][1]["type"], "user");
        assert_eq!(
            spec["linux"]["uidMappings"][1],
            serde_json::json!({"containerID": 10, "hostID": 300000, "size": 5})
        );
        assert_eq!(free_start(""), 100_000);
        assert_eq!(free_start("a:100000:65536\n"), 165_536);
        // A gap wide enough is taken; ranges are looked at in start order.
        assert_eq!(free_start("b:400000:10\na:100000:65536\n"), 165_536);
        // dockerd's overlap test misses a small range inside the candidate; so does this.
        assert_eq!(free_start("b:200000:10\na:100000:65536\n"), 165_536);
        assert_eq!(free_start("x:1:5\n"), 100_000);
        let d = std::env::temp_dir().join(format!("berth-remap-{}", std::process::id()));
        std::fs::write(&d, "root:x:0:0::/root:/bin/sh\nbob:x:1001:1002::/h:/bin/sh\n# c\n").unwrap();
        let f = d.to_str().unwrap();
        assert_eq!(lookup(f, "bob").unwrap(), Some(("bob".into(), 1001, 1002)));
        assert_eq!(lookup(f, "0").unwrap(), Some(("root".into(), 0, 0)));
        assert_eq!(lookup(f, "nobody").unwrap(), None);
        std::fs::remove_file(&d).unwrap();
    }
}
