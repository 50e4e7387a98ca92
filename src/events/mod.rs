//! The engine's event journal: every change the engine makes to a container, image, network
//! or volume is one line appended to `<data-root>/events.jsonl` (one `write(2)` with
//! `O_APPEND`, so concurrent writers never interleave). Readers (`berth events`, the Engine
//! API's `/events`) take the past from the file and follow it for what comes next. The
//! journal keeps the last [`KEEP`] events: a writer that finds it too large rewrites it with
//! the newest half.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Records `action` on an object of `kind` (image, network, volume) named `name` with id `id`
/// in the journal of `data_root` (best effort: the change itself already happened).
pub fn record(data_root: &Path, kind: &str, action: &str, id: &str, name: &str) {
    let mut a = BTreeMap::new();
    if !name.is_empty() {
        a.insert("name".to_string(), name.to_string());
    }
    let _ = Journal::new(data_root).append(&Event::new(kind, action, id, a));
}

/// The file under the data root.
pub const FILE: &str = "events.jsonl";
/// How many events the journal keeps (docker keeps 256 in memory; a file can keep more).
pub const KEEP: usize = 10_000;
const MAX_BYTES: u64 = KEEP as u64 * 400;

/// The object an event is about, with docker's attributes (name, image, exitCode, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// One event, serialised as docker's `/events` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// container, image, network or volume.
    #[serde(rename = "Type")]
    pub kind: String,
    /// create, start, die, destroy, pause, rename, health_status: healthy, pull, ...
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("{op} {}: {err}", path.display())]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
    #[error("invalid filter {0:?}: {1}")]
    Filter(String, String),
    #[error("invalid time {0:?}: RFC 3339, unix seconds (with fractions) or a duration such as 10m")]
    Time(String),
}

impl Event {
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: Actor { id: id.into(), attributes },
            scope: "local".into(),
            time: now.as_secs() as i64,
            time_nano: now.as_nanos() as i64,
        }
    }

    /// docker's JSON with the legacy `status`/`id`/`from` fields it still sends for
    /// containers and images.
    pub fn to_docker_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            if self.kind == "container" || self.kind == "image" {
                m.insert("status".into(), self.action.clone().into());
                m.insert("id".into(), self.actor.id.clone().into());
                if let Some(img) = self.actor.attributes.get("image") {
                    m.insert("from".into(), img.clone().into());
                }
            }
        }
        v
    }
}

/// The journal of a data root.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn new(data_root: &Path) -> Journal {
        Journal { path: data_root.join(FILE) }
    }

    /// The journal in file `path`.
    pub fn at(path: &Path) -> Journal {
        Journal { path: path.to_path_buf() }
    }

    /// Appends one event (best effort for the caller: the change itself already happened).
    pub fn append(&self, ev: &Event) -> Result<(), EventsError> {
        let io = |op, err| EventsError::Io { op, path: self.path.clone(), err };
        let mut line = serde_json::to_vec(ev).unwrap_or_default();
        line.push(b'\n');
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| io("open", e))?;
        f.write_all(&line).map_err(|e| io("write", e))?;
        if f.metadata().map(|m| m.len()).unwrap_or(0) > MAX_BYTES {
            self.trim();
        }
        Ok(())
    }

    /// Keeps the newest half (rename over the file: readers holding the old one finish it).
    fn trim(&self) {
        let Ok(all) = self.read_all() else { return };
        let keep = &all[all.len().saturating_sub(KEEP / 2)..];
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let mut out = Vec::new();
        for ev in keep {
            if let Ok(l) = serde_json::to_vec(ev) {
                out.extend_from_slice(&l);
                out.push(b'\n');
            }
        }
        if std::fs::write(&tmp, out).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }

    /// Every event in the file (lines that do not parse are skipped).
    pub fn read_all(&self) -> Result<Vec<Event>, EventsError> {
        match std::fs::read(&self.path) {
            Ok(d) => Ok(d.split(|b| *b == b'\n').filter_map(|l| serde_json::from_slice(l).ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(EventsError::Io { op: "read", path: self.path.clone(), err: e }),
        }
    }

    /// Calls `f` with the events in [since, until] that match `filter`: the past, then (when
    /// `until` is None or in the future) what comes, until `until` or until `f` returns false.
    pub fn stream(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filter: &Filter,
        f: impl FnMut(&Event) -> bool,
    ) -> Result<(), EventsError> {
        self.stream_while(since, until, filter, f, || true)
    }

    /// [`Journal::stream`], also ending when `alive` (asked between reads of the file, every
    /// 100 ms while nothing comes) says false: a reader that went away.
    pub fn stream_while(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filter: &Filter,
        mut f: impl FnMut(&Event) -> bool,
        mut alive: impl FnMut() -> bool,
    ) -> Result<(), EventsError> {
        let now = now_nanos();
        let in_range = |ev: &Event| since.is_none_or(|s| ev.time_nano >= s) && until.is_none_or(|u| ev.time_nano <= u);
        // Without --since and --until docker shows only what comes.
        let past = since.is_some() || until.is_some();
        let mut file = None;
        let mut pos = 0u64;
        let mut ino = 0u64;
        loop {
            if file.is_none() {
                if let Ok(fh) = std::fs::File::open(&self.path) {
                    use std::os::unix::fs::MetadataExt;
                    ino = fh.metadata().map(|m| m.ino()).unwrap_or(0);
                    pos = 0;
                    file = Some(std::io::BufReader::new(fh));
                }
            }
            if let Some(r) = file.as_mut() {
                let _ = r.seek(std::io::SeekFrom::Start(pos));
                loop {
                    let mut line = Vec::new();
                    let n = r.read_until(b'\n', &mut line).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    if line.last() != Some(&b'\n') {
                        // A line being written: read it again next time.
                        break;
                    }
                    pos += n as u64;
                    let Ok(ev) = serde_json::from_slice::<Event>(&line) else { continue };
                    if ev.time_nano <= now && !past {
                        continue;
                    }
                    if in_range(&ev) && filter.matches(&ev) && !f(&ev) {
                        return Ok(());
                    }
                }
            }
            let t = now_nanos();
            if until.is_some_and(|u| t > u) || !alive() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
            // Trimmed (renamed over): start on the new file, skipping what was seen by time.
            use std::os::unix::fs::MetadataExt;
            if std::fs::metadata(&self.path).map(|m| m.ino()).ok().is_some_and(|i| i != ino) {
                file = None;
            }
        }
    }
}

pub fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64
}

/// `--since`/`--until`: RFC 3339, unix seconds (`1700000000.5`) or a duration before now
/// (`10m`, `1h30m`); nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, EventsError> {
    let bad = || EventsError::Time(s.to_string());
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    if let Some(d) = parse_duration(s) {
        return Ok(now_nanos() - d.as_nanos() as i64);
    }
    let t = crate::shim::parse_rfc3339(s).ok_or_else(bad)?;
    Ok(t.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_nanos() as i64)
}

/// Go's durations: 10s, 1.5h, 1h30m, 500ms.
pub fn parse_duration(s: &str) -> Option<Duration> {
    crate::shim::parse_go_duration(s)
}

/// `--filter KEY=VALUE`s: the same key ORs, different keys AND (docker's rule).
#[derive(Debug, Default)]
pub struct Filter {
    by_key: BTreeMap<String, Vec<String>>,
}

const FILTER_KEYS: &[&str] =
    &["container", "event", "image", "label", "network", "type", "volume", "scope", "daemon", "config", "node"];

impl Filter {
    pub fn parse(args: &[String]) -> Result<Filter, EventsError> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in args {
            let (k, v) =
                a.split_once('=').ok_or_else(|| EventsError::Filter(a.clone(), "expected KEY=VALUE".into()))?;
            if !FILTER_KEYS.contains(&k) {
                return Err(EventsError::Filter(a.clone(), format!("unknown key {k:?}")));
            }
            by_key.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filter { by_key })
    }

    pub fn matches(&self, ev: &Event) -> bool {
        let attr = |k: &str| ev.actor.attributes.get(k).map(String::as_str);
        let id_or_name = |v: &str| ev.actor.id == v || ev.actor.id.starts_with(v) || attr("name") == Some(v);
        self.by_key.iter().all(|(k, vs)| {
            vs.iter().any(|v| match k.as_str() {
                "type" => ev.kind == *v,
                "event" => ev.action == *v || ev.action.split(':').next() == Some(v.as_str()),
                "scope" => v == "local",
                "container" => ev.kind == "container" && id_or_name(v),
                "image" => {
                    (ev.kind == "image" && id_or_name(v))
                        || attr("image") == Some(v.as_str())
                        || (ev.kind == "image" && attr("name") == Some(v.as_str()))
                }
                "network" => ev.kind == "network" && id_or_name(v),
                "volume" => ev.kind == "volume" && id_or_name(v),
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => attr(lk) == Some(lv),
                    None => ev.actor.attributes.contains_key(v),
                },
                _ => false,
            })
        })
    }
}

/// The one-line text docker prints for an event:
/// `TIME TYPE ACTION ID (key=value, ...)`.
pub fn text_line(ev: &Event) -> String {
    let secs = ev.time_nano.div_euclid(1_000_000_000);
    let nanos = ev.time_nano.rem_euclid(1_000_000_000) as u32;
    let t = berth::logging::rfc3339(secs, 0);
    let t = format!("{}.{nanos:09}Z", t.get(..19).unwrap_or(&t));
    let attrs: Vec<String> = ev.actor.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut line = format!("{t} {} {} {}", ev.kind, ev.action, ev.actor.id);
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

/// The value a `--format` template sees: Go's field names (`.Type`, `.Action`, `.Actor.ID`,
/// `.ID`, `.Status`, `.From`, `.Time`, `.TimeNano`).
pub fn template_view(ev: &Event) -> serde_json::Value {
    let mut v = ev.to_docker_json();
    if let Some(m) = v.as_object_mut() {
        for (go, js) in [
            ("Status", "status"),
            ("ID", "id"),
            ("From", "from"),
            ("Scope", "scope"),
            ("Time", "time"),
            ("TimeNano", "timeNano"),
        ] {
            if let Some(x) = m.get(js).cloned() {
                m.insert(go.into(), x);
            }
        }
    }
    v
}

/// `berth events` / `berth system events`: prints the journal's events in the range that
/// match, then follows it (until `until`, or until the reader goes away).
pub fn command(
    data_root: &Path,
    since: Option<&str>,
    until: Option<&str>,
    filters: &[String],
    format: Option<&str>,
) -> Result<(), CommandError> {
    let since = since.map(parse_time).transpose()?;
    let until = until.map(parse_time).transpose()?;
    let filter = Filter::parse(filters)?;
    let tmpl = match format {
        None | Some("") | Some("{{json .}}") | Some("json") => None,
        Some(f) => Some(crate::template::Template::parse(f)?),
    };
    let json = matches!(format, Some("{{json .}}") | Some("json"));
    let mut out = std::io::stdout();
    let mut err = None;
    Journal::new(data_root).stream(since, until, &filter, |ev| {
        let line = match &tmpl {
            Some(t) => match t.render(&template_view(ev)) {
                Ok(l) => l,
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            },
            None if json => ev.to_docker_json().to_string(),
            None => text_line(ev),
        };
        writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
    })?;
    match err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// What `berth events` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, name: &str) -> Event {
        let mut a = BTreeMap::new();
        a.insert("name".to_string(), name.to_string());
        Event::new(kind, action, id, a)
    }

    #[test]
    fn filters() {
        let e = ev("container", "start", "abc123", "web");
        let f = |a: &[&str]| Filter::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        assert!(f(&["container=web"]).matches(&e));
        assert!(f(&["container=abc"]).matches(&e));
        assert!(f(&["event=start", "event=die"]).matches(&e));
        assert!(!f(&["event=die"]).matches(&e));
        assert!(!f(&["type=image"]).matches(&e));
        assert!(f(&["type=container", "event=start"]).matches(&e));
        let h = ev("container", "health_status: healthy", "abc", "web");
        assert!(f(&["event=health_status"]).matches(&h));
        assert!(Filter::parse(&["bogus=1".to_string()]).is_err());
        assert!(Filter::parse(&["nokey".to_string()]).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert!(parse_duration("5x").is_none());
        let t = parse_time("10m").unwrap();
        assert!((now_nanos() - t - 600_000_000_000).abs() < 5_000_000_000);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn journal_round_trip() {
        let d = std::env::temp_dir().join(format!("berth-events-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let j = Journal::new(&d);
        j.append(&ev("container", "create", "a1", "x")).unwrap();
        j.append(&ev("container", "start", "a1", "x")).unwrap();
        let mut got = Vec::new();
        j.stream(Some(0), Some(now_nanos()), &Filter::default(), |e| {
            got.push(e.action.clone());
            true
        })
        .unwrap();
        assert_eq!(got, vec!["create", "start"]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
