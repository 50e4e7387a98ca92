//! The executor: stages, instructions, layers, the cache, and the resulting image.

use super::context::{self, SourceRoot};
use super::fsops::{self, Attrs, DestRoot};
use super::git;
use super::ignore::Ignore;
use super::parser::{self, Args, Node};
use super::progress;
use super::run::{self, RunContainer};
use super::shell::Lex;
use super::ssh;
use super::{io_err, BuildError, BuildRequest, Built, ContextSource, DockerfileSource, Network, Progress};
use crate::image::bundle::{self, MountSpec};
use crate::image::digest::{Digest, Hasher};
use crate::image::store::{chain_ids, normalise, now_secs, ImageRecord, Store, WriteGuard};
use crate::image::types::{host_platform, Descriptor, ImageConfig, RootFs, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use crate::image::upper_layer::{self, LayerOptions};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Build args every RUN sees without an ARG (and that history leaves out), as docker's.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM/SIGHUP set a flag: the build stops at the next step boundary (the running
/// container gets the signal from the terminal or is stopped by the runtime) and cleans up.
fn catch_signals() {
    for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: sigaction is plain data; zeroed is a valid value.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        // No SA_RESTART: a wait for a RUN container returns EINTR and sees the flag.
        sa.sa_flags = 0;
        // SAFETY: a handler that only stores to an atomic is async-signal-safe; sa is valid.
        unsafe { libc::sigaction(s, &sa, std::ptr::null_mut()) };
    }
}

pub(crate) fn interrupted() -> Result<(), BuildError> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(BuildError::Interrupted)
    } else {
        Ok(())
    }
}

/// A stage as written.
#[derive(Clone)]
struct StageDef {
    name: Option<String>,
    base: String,
    /// `base` names an earlier stage.
    base_is_stage: bool,
    nodes: Vec<Node>,
    line: usize,
    from_original: String,
}

/// A stage's image while it is built.
#[derive(Clone)]
struct State {
    config: ImageConfig,
    layers: Vec<Descriptor>,
    chain: Vec<Digest>,
    /// The cache key of the state (its parent chain and instructions).
    key: Digest,
    /// ARGs declared in the stage: (name, value).
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
}

impl State {
    /// Variables for expansion: ARG values, then ENV (which wins).
    fn env(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            self.args.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone()))).collect();
        for e in self.config.config.env.iter().flatten() {
            let (k, val) = e.split_once('=').unwrap_or((e, ""));
            v.push((k.to_string(), val.to_string()));
        }
        v
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let kv = format!("{k}={v}");
        match env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) == k) {
            Some(e) => *e = kv,
            None => env.push(kv),
        }
    }

    fn history(&mut self, created: &str, created_by: &str, empty: bool) {
        let h = self.config.extra.entry("history".to_string()).or_insert_with(|| json!([]));
        if !h.is_array() {
            *h = json!([]);
        }
        let mut e = json!({"created": created, "created_by": created_by, "comment": HISTORY_COMMENT});
        if empty {
            e["empty_layer"] = json!(true);
        }
        if let Some(a) = h.as_array_mut() {
            a.push(e);
        }
    }

    fn shell(&self) -> Vec<String> {
        self.config.config.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn workdir(&self) -> String {
        self.config.config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
    }
}

fn key_of(parts: &[&str]) -> Digest {
    let mut h = Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\0");
    }
    h.finish()
}

/// Go's %q of a string list, as docker's history shows CMD and ENTRYPOINT.
fn go_quoted(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(" "))
}

/// Unmounts and removes a step's scratch mount when dropped.
struct Mounted(PathBuf);

/// What a RUN step's mounts hold until the step ends: `sharing=locked` cache locks, the
/// forwarded ssh agents.
#[derive(Default)]
struct Held {
    files: Vec<fs::File>,
    ssh: Vec<ssh::Forward>,
    /// The ssh mounts of the step so far (for their default targets).
    ssh_mounts: usize,
    /// The first forwarded agent's target: SSH_AUTH_SOCK.
    ssh_target: Option<String>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = bundle::unmount_rootfs(&self.0);
    }
}

/// Removes the build's scratch dir when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        // Mounts under it first (a failed step may have left one).
        if let Ok(m) = fs::read_to_string("/proc/self/mountinfo") {
            let prefix = self.0.to_string_lossy().into_owned();
            let mut points: Vec<&str> =
                m.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&prefix)).collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = bundle::unmount_rootfs(Path::new(p));
            }
        }
        let _ = fs::remove_dir_all(&self.0);
        // builder/tmp and builder/ go too when nothing else is in them (a failed first
        // build leaves no trace).
        if let Some(tmp) = self.0.parent() {
            let _ = fs::remove_dir(tmp);
            if let Some(b) = tmp.parent() {
                let _ = fs::remove_dir(b);
            }
        }
    }
}

/// The work of a layer step, given the mounted root and the step's scratch dir; returns the
/// mount points it made (removed from the layer).
type StepFn<'f, 'a> = dyn FnMut(&mut Builder<'a>, &Path, &Path) -> Result<Vec<String>, String> + 'f;

/// What the threads building independent stages share.
struct Shared {
    /// The default network's sandbox, made by the first RUN that needs it (dropped, and so
    /// detached, before the scratch dir goes).
    net: std::sync::Mutex<Option<Arc<run::Sandbox>>>,
    /// `--ssh` ids and their agents' sockets (a key file's: its agent's, below).
    ssh: BTreeMap<String, PathBuf>,
    /// The agents of the build's own for `--ssh ID=KEYFILE` (stopped before the scratch
    /// dir goes).
    _key_agents: Vec<ssh::KeyAgent>,
    guard: WriteGuard,
    scratch: Scratch,
    step: AtomicUsize,
    mounts: AtomicUsize,
}

pub struct Builder<'a> {
    req: &'a BuildRequest,
    store: Store,
    shared: Arc<Shared>,
    ctx: SourceRoot,
    file: String,
    stages: Vec<StageDef>,
    meta: Vec<(String, Option<String>)>,
    build_args: BTreeMap<String, String>,
    used_args: BTreeSet<String>,
    done: HashMap<usize, State>,
    building: BTreeSet<usize>,
    cache_dir: PathBuf,
}

impl<'a> Builder<'a> {
    pub fn run(req: &'a BuildRequest) -> Result<Built, BuildError> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(BuildError::Interrupted);
        }
        if !req.keep_signal_handlers {
            catch_signals();
        }
        let store = Store::open(&req.data_root)?;
        let builder_dir = req.data_root.join("builder");
        let tmp = builder_dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        clean_stale(&tmp, req);
        let scratch = tmp.join(format!("{}-{}", std::process::id(), now_secs()));
        let scratch = Scratch(scratch);
        fs::create_dir_all(&scratch.0).map_err(io_err("create", &scratch.0))?;
        // The context: a directory, or a tar from stdin unpacked into the scratch dir.
        let ctx_dir = match req.context.clone().unwrap_or(ContextSource::Dir(PathBuf::from("."))) {
            ContextSource::Dir(d) => {
                if !d.is_dir() {
                    return Err(BuildError::Invalid(format!(
                        "unable to prepare context: path {:?} not found",
                        d.display().to_string()
                    )));
                }
                d
            }
            ContextSource::StdinTar => {
                let d = scratch.0.join("context");
                fs::create_dir_all(&d).map_err(io_err("create", &d))?;
                let stdin = io::stdin();
                crate::image::unpack::unpack_layer(stdin, &d, crate::image::unpack::WhiteoutMode::Apply)
                    .map_err(|e| BuildError::Invalid(format!("build context from stdin: {e}")))?;
                d
            }
            ContextSource::Tar(f) => {
                let d = scratch.0.join("context");
                fs::create_dir_all(&d).map_err(io_err("create", &d))?;
                let r = fs::File::open(&f).map_err(io_err("open", &f))?;
                crate::image::unpack::unpack_layer(
                    io::BufReader::new(r),
                    &d,
                    crate::image::unpack::WhiteoutMode::Apply,
                )
                .map_err(|e| BuildError::Invalid(format!("build context: {e}")))?;
                d
            }
        };
        let (file, text, df_name) = match req.dockerfile.clone().unwrap_or(DockerfileSource::Default) {
            DockerfileSource::Default => {
                let p = ctx_dir.join("Dockerfile");
                let t = fs::read_to_string(&p).map_err(io_err("read Dockerfile", &p))?;
                ("Dockerfile".to_string(), t, "Dockerfile".to_string())
            }
            DockerfileSource::Path(p) => {
                let t = fs::read_to_string(&p).map_err(io_err("read Dockerfile", &p))?;
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (p.display().to_string(), t, name)
            }
            DockerfileSource::InContext(name) => {
                let outside =
                    || BuildError::Invalid(format!("the Dockerfile ({name}) must be a file inside the build context"));
                if name.split('/').any(|c| c == "..") {
                    return Err(outside());
                }
                let root = ctx_dir.canonicalize().map_err(io_err("resolve", &ctx_dir))?;
                let p = root.join(name.trim_start_matches('/'));
                let real = p
                    .canonicalize()
                    .map_err(|_| BuildError::Invalid(format!("Cannot locate specified Dockerfile: {name}")))?;
                if !real.starts_with(&root) || !real.is_file() {
                    return Err(BuildError::Invalid(format!(
                        "the Dockerfile ({name}) must be a file inside the build context"
                    )));
                }
                let t = fs::read_to_string(&real).map_err(io_err("read Dockerfile", &real))?;
                let base = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (name.clone(), t, base)
            }
            DockerfileSource::Stdin => {
                let mut t = String::new();
                io::stdin().read_to_string(&mut t).map_err(io_err("read Dockerfile", Path::new("stdin")))?;
                ("Dockerfile".to_string(), t, "Dockerfile".to_string())
            }
        };
        // <Dockerfile>.dockerignore next to the Dockerfile wins over the context's.
        let mut ignore = Ignore::default();
        let specific = match req.dockerfile.clone() {
            Some(DockerfileSource::Path(p)) => Some(p.with_file_name(format!("{df_name}.dockerignore"))),
            _ => Some(ctx_dir.join(format!("{df_name}.dockerignore"))),
        };
        for p in specific.into_iter().chain([ctx_dir.join(".dockerignore")]) {
            if let Ok(t) = fs::read_to_string(&p) {
                ignore = Ignore::parse(&p.display().to_string(), &t)?;
                break;
            }
        }
        let df = parser::parse(&text).map_err(|source| BuildError::Parse { file: file.clone(), source })?;
        if req.progress != Progress::Quiet {
            let mut e = io::stderr().lock();
            if let Some(s) = &df.syntax {
                let _ = writeln!(e, "#0 syntax={s}: built with berth's own Dockerfile frontend");
            }
            for w in &df.warnings {
                let _ = writeln!(e, "[WARNING]: {w}");
            }
        }
        let ctx = SourceRoot::context(&ctx_dir, ignore)?;
        let guard = store.write_guard()?;
        let mut build_args = BTreeMap::new();
        for (k, v) in &req.build_args {
            match v {
                Some(v) => {
                    build_args.insert(k.clone(), v.clone());
                }
                None => {
                    if let Ok(v) = std::env::var(k) {
                        build_args.insert(k.clone(), v);
                    }
                }
            }
        }
        // `--ssh ID=KEYFILE`: an agent of the build's own holding the key.
        let mut ssh_socks = BTreeMap::new();
        let mut key_agents = Vec::new();
        for (id, p) in &req.ssh {
            if p.is_file() {
                let a = ssh::KeyAgent::start(id, p, &scratch.0, key_agents.len()).map_err(BuildError::Invalid)?;
                ssh_socks.insert(id.clone(), a.socket.clone());
                key_agents.push(a);
            } else {
                ssh_socks.insert(id.clone(), p.clone());
            }
        }
        let cache_dir = builder_dir.join("cache");
        let mut b = Builder {
            req,
            store,
            shared: Arc::new(Shared {
                net: std::sync::Mutex::new(None),
                ssh: ssh_socks,
                _key_agents: key_agents,
                guard,
                scratch,
                step: AtomicUsize::new(0),
                mounts: AtomicUsize::new(0),
            }),
            ctx,
            file,
            stages: Vec::new(),
            meta: Vec::new(),
            build_args,
            used_args: BTreeSet::new(),
            done: HashMap::new(),
            building: BTreeSet::new(),
            cache_dir,
        };
        b.split_stages(&df)?;
        let target = match &req.target {
            Some(t) => b
                .stage_index(t)
                .ok_or_else(|| BuildError::Invalid(format!("failed to reach build target {t} in Dockerfile")))?,
            None => b.stages.len() - 1,
        };
        // On a terminal (`--progress tty`, or `auto`), a live view: the progress and the
        // containers' output go to it through a pipe; plain lines otherwise.
        let live = matches!(req.progress, Progress::Tty | Progress::Auto) && progress::stderr_is_tty();
        let _view = if live { progress::TtyView::start() } else { None };
        // From here RUN containers get no stdin and write to stderr (nothing with -q).
        let _stdio = run::Redirect::new(req.progress == Progress::Quiet);
        b.build_needed(target)?;
        let st = b.build_stage(target)?;
        b.finish(st)
    }

    fn created(&self) -> String {
        match self.req.source_date_epoch {
            Some(e) => berth::logging::rfc3339(e, 0).replace(".000000000Z", "Z"),
            None => berth::logging::now_rfc3339(),
        }
    }

    fn quiet(&self) -> bool {
        self.req.progress == Progress::Quiet
    }

    fn say(&self, msg: &str) {
        if !self.quiet() {
            let mut e = io::stderr().lock();
            let _ = writeln!(e, "{msg}");
        }
    }

    fn err(&self, node: &Node, msg: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.file.clone(),
            line: node.start_line,
            instruction: node.original.trim().to_string(),
            msg: msg.into(),
        }
    }

    fn split_stages(&mut self, df: &parser::Dockerfile) -> Result<(), BuildError> {
        let lex = Lex::new(df.escape);
        let platform = host_platform();
        let os_arch = format!("{}/{}", platform.os, platform.architecture);
        let auto: Vec<(&str, String)> = vec![
            ("TARGETPLATFORM", os_arch.clone()),
            ("TARGETOS", platform.os.clone()),
            ("TARGETARCH", platform.architecture.clone()),
            ("TARGETVARIANT", String::new()),
            ("BUILDPLATFORM", os_arch),
            ("BUILDOS", platform.os.clone()),
            ("BUILDARCH", platform.architecture.clone()),
            ("BUILDVARIANT", String::new()),
        ];
        for (k, v) in auto {
            self.meta.push((k.to_string(), Some(v)));
        }
        for n in &df.nodes {
            let cmd = n.cmd();
            if cmd == "from" {
                let words = match &n.args {
                    Args::Words(w) => w.clone(),
                    _ => Vec::new(),
                };
                for f in &n.flags {
                    if let Some(p) = f.strip_prefix("--platform=") {
                        let p = lex.process_word(p, &self.meta_env()).map_err(|e| self.err(n, e.to_string()))?;
                        self.check_platform(n, &p)?;
                    } else {
                        return Err(self.err(n, format!("unknown flag: {}", f.split('=').next().unwrap_or(f))));
                    }
                }
                let (base, name) = match words.as_slice() {
                    [b] => (b.clone(), None),
                    [b, as_, name] if as_.eq_ignore_ascii_case("as") => (b.clone(), Some(name.to_ascii_lowercase())),
                    _ => return Err(self.err(n, "FROM requires either one or three arguments")),
                };
                let base = lex.process_word(&base, &self.meta_env()).map_err(|e| self.err(n, e.to_string()))?;
                if base.is_empty() {
                    return Err(self.err(n, "base name (empty) should not be blank"));
                }
                if let Some(nm) = &name {
                    let ok = nm.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                        && nm.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
                    if !ok {
                        return Err(self.err(n, format!("invalid name for build stage: {nm:?}, name can't start with a number or contain symbols")));
                    }
                    if self.stages.iter().any(|s| s.name.as_deref() == Some(nm)) {
                        return Err(self.err(n, format!("duplicate stage name {nm:?}")));
                    }
                }
                let base_is_stage =
                    self.stages.iter().any(|s| s.name.as_deref() == Some(base.to_ascii_lowercase().as_str()));
                self.stages.push(StageDef {
                    name,
                    base_is_stage,
                    base,
                    nodes: Vec::new(),
                    line: n.start_line,
                    from_original: n.original.trim().to_string(),
                });
                continue;
            }
            match self.stages.last_mut() {
                Some(s) => s.nodes.push(n.clone()),
                None if cmd == "arg" => {
                    let Args::Words(words) = &n.args else { continue };
                    for w in words {
                        let (k, def) = match w.split_once('=') {
                            Some((k, v)) => {
                                let v =
                                    lex.process_word(v, &self.meta_env()).map_err(|e| self.err(n, e.to_string()))?;
                                (k.to_string(), Some(v))
                            }
                            None => (w.clone(), None),
                        };
                        let v = self.build_args.get(&k).cloned().or(def);
                        self.used_args.insert(k.clone());
                        self.meta.retain(|(mk, _)| *mk != k);
                        self.meta.push((k, v));
                    }
                }
                None => {
                    return Err(
                        self.err(n, format!("{} instruction before the first FROM", n.value.to_ascii_uppercase()))
                    )
                }
            }
        }
        if self.stages.is_empty() {
            return Err(BuildError::Invalid(format!("{}: no build stage in the Dockerfile (no FROM)", self.file)));
        }
        Ok(())
    }

    fn meta_env(&self) -> Vec<(String, String)> {
        self.meta.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone()))).collect()
    }

    fn check_platform(&self, n: &Node, p: &str) -> Result<(), BuildError> {
        let h = host_platform();
        let ok = p.is_empty() || p == format!("{}/{}", h.os, h.architecture) || p == h.architecture;
        if ok {
            Ok(())
        } else {
            Err(self.err(
                n,
                format!(
                    "platform {p:?} is not this host's ({}/{}): berth builds for the host only",
                    h.os, h.architecture
                ),
            ))
        }
    }

    fn stage_index(&self, name: &str) -> Option<usize> {
        let l = name.to_ascii_lowercase();
        if let Some(i) = self.stages.iter().position(|s| s.name.as_deref() == Some(l.as_str())) {
            return Some(i);
        }
        name.parse::<usize>().ok().filter(|i| *i < self.stages.len())
    }

    fn next_step(&mut self) -> usize {
        self.shared.step.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The stages stage `i` reads: its base, `COPY --from` and `RUN --mount from=` stages.
    fn deps(&self, i: usize) -> BTreeSet<usize> {
        let lex = Lex::new('\\');
        let env = self.meta_env();
        let mut out = BTreeSet::new();
        let add = |name: &str, out: &mut BTreeSet<usize>| {
            let name = lex.process_word(name, &env).unwrap_or_else(|_| name.to_string());
            if let Some(j) = self.stage_index(&name) {
                if j < i && (self.stages[j].name.is_some() || name.parse::<usize>().is_ok()) {
                    out.insert(j);
                }
            }
        };
        let base = self.stages[i].base.clone();
        if self.stages[i].base_is_stage {
            add(&base, &mut out);
        }
        for n in &self.stages[i].nodes {
            for f in &n.flags {
                if let Some(v) = f.strip_prefix("--from=") {
                    add(v, &mut out);
                } else if let Some(m) = f.strip_prefix("--mount=") {
                    for part in m.split(',') {
                        if let Some(v) = part.strip_prefix("from=") {
                            add(v, &mut out);
                        }
                    }
                }
            }
        }
        out
    }

    /// Builds the stages the target needs (not the target itself), those that do not depend
    /// on each other at the same time, each in a thread.
    fn build_needed(&mut self, target: usize) -> Result<(), BuildError> {
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            for d in self.deps(i) {
                if needed.insert(d) {
                    todo.push(d);
                }
            }
        }
        loop {
            let ready: Vec<usize> = needed
                .iter()
                .copied()
                .filter(|i| !self.done.contains_key(i) && self.deps(*i).iter().all(|d| self.done.contains_key(d)))
                .collect();
            match ready.len() {
                0 => return Ok(()),
                1 => {
                    self.build_stage(ready[0])?;
                }
                _ => {
                    let mut workers: Vec<Builder<'a>> = Vec::new();
                    for _ in &ready {
                        workers.push(self.fork()?);
                    }
                    let results: Vec<(usize, Result<State, BuildError>, BTreeSet<String>)> = std::thread::scope(|sc| {
                        let handles: Vec<_> = ready
                            .iter()
                            .copied()
                            .zip(workers)
                            .map(|(i, mut w)| {
                                sc.spawn(move || {
                                    let r = w.build_stage(i);
                                    (i, r, w.used_args)
                                })
                            })
                            .collect();
                        handles.into_iter().filter_map(|h| h.join().ok()).collect()
                    });
                    let mut first_err = None;
                    for (i, r, used) in results {
                        self.used_args.extend(used);
                        match r {
                            Ok(st) => {
                                self.done.insert(i, st);
                            }
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                    if let Some(e) = first_err {
                        return Err(e);
                    }
                    if ready.iter().any(|i| !self.done.contains_key(i)) {
                        return Err(BuildError::Invalid("a build stage's thread failed".into()));
                    }
                }
            }
        }
    }

    /// A builder for a thread: the same request, store, scratch dir and counters.
    fn fork(&self) -> Result<Builder<'a>, BuildError> {
        Ok(Builder {
            req: self.req,
            store: self.store.clone(),
            shared: self.shared.clone(),
            ctx: self.ctx.try_clone().map_err(io_err("open build context", &self.ctx.path))?,
            file: self.file.clone(),
            stages: self.stages.clone(),
            meta: self.meta.clone(),
            build_args: self.build_args.clone(),
            used_args: BTreeSet::new(),
            done: self.done.clone(),
            building: BTreeSet::new(),
            cache_dir: self.cache_dir.clone(),
        })
    }

    /// Builds stage `i` (and, first, the stages it needs); memoised.
    fn build_stage(&mut self, i: usize) -> Result<State, BuildError> {
        if let Some(s) = self.done.get(&i) {
            return Ok(s.clone());
        }
        if !self.building.insert(i) {
            return Err(BuildError::Invalid(format!("{}: circular dependency between build stages", self.file)));
        }
        let base = self.stages[i].base.clone();
        let label = self.stages[i].name.clone().unwrap_or_else(|| format!("stage-{i}"));
        let total = self.stages[i].nodes.len() + 1;
        let from_line = self.stages[i].from_original.clone();
        let mut st = if let Some(j) = self.stage_index(&base).filter(|j| *j < i && self.stages[i].base_is_stage) {
            let mut s = self.build_stage(j)?;
            s.args.clear();
            s.cmd_set = false;
            s
        } else {
            self.base_state(&base, i)?
        };
        let n = self.next_step();
        self.say(&format!("#{n} [{label} 1/{total}] {from_line}"));
        // ONBUILD triggers of the base image run first.
        let triggers = st.config.config.on_build.take().unwrap_or_default();
        for t in triggers {
            let df = parser::parse(&t).map_err(|source| BuildError::Parse { file: format!("ONBUILD {t}"), source })?;
            for mut node in df.nodes {
                // A failing trigger is named at the FROM that ran it.
                node.start_line = self.stages[i].line;
                node.original = format!("ONBUILD {}", node.original.trim());
                self.dispatch(&mut st, &node, &label, 0, total)?;
            }
        }
        let nodes = self.stages[i].nodes.clone();
        for (k, node) in nodes.iter().enumerate() {
            interrupted()?;
            self.dispatch(&mut st, node, &label, k + 2, total)?;
        }
        self.building.remove(&i);
        self.done.insert(i, st.clone());
        Ok(st)
    }

    /// The state of `FROM name` (an image, pulled when missing or with --pull; or scratch).
    fn base_state(&mut self, name: &str, stage: usize) -> Result<State, BuildError> {
        let plat = host_platform();
        let epoch = self.req.source_date_epoch.map(|e| e.to_string()).unwrap_or_default();
        if name == "scratch" {
            let config = ImageConfig {
                architecture: plat.architecture.clone(),
                os: plat.os.clone(),
                config: Default::default(),
                rootfs: RootFs { kind: "layers".into(), diff_ids: Vec::new() },
                ..Default::default()
            };
            return Ok(State {
                config,
                layers: Vec::new(),
                chain: Vec::new(),
                key: key_of(&["FROM scratch", &epoch]),
                args: Vec::new(),
                cmd_set: false,
            });
        }
        let found = if self.req.pull { None } else { self.store.resolve(name).ok() };
        let img = match found {
            Some(i) => i,
            None => {
                let m = self.pull(name).map_err(|e| {
                    BuildError::Invalid(format!(
                        "{}:{}: {}: {e}",
                        self.file, self.stages[stage].line, self.stages[stage].from_original
                    ))
                })?;
                self.store.resolve(&m.to_string())?
            }
        };
        self.store.ensure_snapshots(&img)?;
        let mut config = img.config.clone();
        let history = config.extra.remove("history");
        config.extra.clear();
        if let Some(h) = history {
            config.extra.insert("history".into(), h);
        }
        if config.config.env.is_none() {
            config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
        }
        Ok(State {
            config,
            layers: img.layers.clone(),
            chain: img.chain_ids.clone(),
            key: key_of(&["FROM", &img.config_digest.to_string(), &epoch]),
            args: Vec::new(),
            cmd_set: false,
        })
    }

    fn pull(&self, name: &str) -> Result<Digest, String> {
        use crate::image::pull::{self, PullOptions};
        use crate::image::registry::{Client, ClientOptions};
        let (r, _) = normalise(name).map_err(|e| e.to_string())?;
        let client = Client::new(ClientOptions::default()).map_err(|e| e.to_string())?;
        pull::pull(&self.store, &client, &r, &PullOptions { platform: None, quiet: true }).map_err(|e| e.to_string())
    }

    /// One instruction of a stage.
    fn dispatch(&mut self, st: &mut State, n: &Node, label: &str, idx: usize, total: usize) -> Result<(), BuildError> {
        let lex = Lex::new('\\');
        let cmd = n.cmd();
        let step = self.next_step();
        let title = format!("#{step} [{label} {idx}/{total}] {}", n.original.trim());
        let env = st.env();
        let word = |s: &str| lex.process_word(s, &env).map_err(|e| self.err(n, e.to_string()));
        let created = self.created();
        let no_flags = |me: &Self| -> Result<(), BuildError> {
            match n.flags.first() {
                Some(f) => Err(me.err(n, format!("unknown flag: {}", f.split('=').next().unwrap_or(f)))),
                None => Ok(()),
            }
        };
        let meta = |st: &mut State, msg: String| {
            st.key = key_of(&[st.key.hex(), &msg]);
            st.history(&created, &msg, true);
        };
        match cmd.as_str() {
            "run" => {
                self.say(&title);
                return self.run_step(st, n, step);
            }
            "copy" | "add" => {
                self.say(&title);
                return self.copy_step(st, n, cmd == "add", step);
            }
            _ => {}
        }
        match cmd.as_str() {
            "env" => {
                no_flags(self)?;
                let Args::KeyValues { pairs, .. } = &n.args else {
                    return Err(self.err(n, "ENV requires at least one argument"));
                };
                let mut msg = String::from("ENV");
                for (k, v) in pairs {
                    let env = st.env();
                    let k = lex.process_word(k, &env).map_err(|e| self.err(n, e.to_string()))?;
                    let v = lex.process_word(v, &env).map_err(|e| self.err(n, e.to_string()))?;
                    if k.is_empty() {
                        return Err(self.err(n, "ENV names can not be blank"));
                    }
                    st.set_env(&k, &v);
                    msg.push_str(&format!(" {k}={v}"));
                }
                meta(st, msg);
            }
            "label" => {
                no_flags(self)?;
                let Args::KeyValues { pairs, .. } = &n.args else {
                    return Err(self.err(n, "LABEL requires at least one argument"));
                };
                let mut msg = String::from("LABEL");
                for (k, v) in pairs {
                    let k = word(k)?;
                    let v = word(v)?;
                    if k.is_empty() {
                        return Err(self.err(n, "LABEL names can not be blank"));
                    }
                    st.config.config.labels.get_or_insert_with(BTreeMap::new).insert(k.clone(), v.clone());
                    msg.push_str(&format!(" {k}={v}"));
                }
                meta(st, msg);
            }
            "arg" => {
                no_flags(self)?;
                let Args::Words(words) = &n.args else { return Err(self.err(n, "ARG requires exactly one argument")) };
                let mut parts = Vec::new();
                let mut newly_used = Vec::new();
                for w in words {
                    let (k, def) = match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(word(v)?)),
                        None => (w.clone(), None),
                    };
                    if k.is_empty() {
                        return Err(self.err(n, "ARG names can not be blank"));
                    }
                    let global = self.meta.iter().find(|(mk, _)| *mk == k).and_then(|(_, v)| v.clone());
                    let v = self.build_args.get(&k).cloned().or(def).or(global);
                    newly_used.push(k.clone());
                    parts.push(match &v {
                        Some(v) => format!("{k}={v}"),
                        None => k.clone(),
                    });
                    st.args.retain(|(ak, _)| *ak != k);
                    st.args.push((k, v));
                }
                meta(st, format!("ARG {}", parts.join(" ")));
                self.used_args.extend(newly_used);
            }
            "workdir" => {
                no_flags(self)?;
                let Args::Line(w) = &n.args else { return Err(self.err(n, "WORKDIR requires exactly one argument")) };
                let w = word(w)?;
                let abs = if w.starts_with('/') { w } else { format!("{}/{}", st.workdir().trim_end_matches('/'), w) };
                let abs = format!("/{}", fsops::clean_rel(&abs).unwrap_or_default());
                st.config.config.working_dir = Some(abs.clone());
                self.say(&title);
                // The directory is made (owned by the stage's user, as docker does) when missing.
                let msg = format!("WORKDIR {abs}");
                let key = key_of(&[st.key.hex(), &msg]);
                let user = st.config.config.user.clone().unwrap_or_default();
                return self.layer_step(st, key, msg, n, step, &mut |_, merged, _| {
                    let (uid, gid) = if user.is_empty() { (0, 0) } else { resolve_owner(merged, &user)? };
                    DestRoot::open(merged)
                        .and_then(|d| d.ensure_dir(&abs, uid, gid))
                        .map_err(|e| format!("mkdir {abs}: {e}"))?;
                    Ok(Vec::new())
                });
            }
            "user" => {
                no_flags(self)?;
                let Args::Line(u) = &n.args else { return Err(self.err(n, "USER requires exactly one argument")) };
                let u = word(u)?;
                st.config.config.user = Some(u.clone());
                meta(st, format!("USER {u}"));
            }
            "expose" => {
                no_flags(self)?;
                let Args::Words(ws) = &n.args else { return Err(self.err(n, "EXPOSE requires at least one argument")) };
                let mut ports = Vec::new();
                for w in ws {
                    for p in lex.process_words(w, &env).map_err(|e| self.err(n, e.to_string()))? {
                        let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                        let proto = proto.to_ascii_lowercase();
                        let range_ok = num.split_once('-').map_or_else(
                            || num.parse::<u16>().is_ok(),
                            |(a, b)| a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
                        );
                        if !range_ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                            return Err(self.err(n, format!("invalid port {p:?}")));
                        }
                        ports.push(format!("{num}/{proto}"));
                    }
                }
                ports.sort();
                ports.dedup();
                let map = st.config.config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in &ports {
                    map.insert(p.clone(), json!({}));
                }
                meta(st, format!("EXPOSE [{}]", ports.join(" ")));
            }
            "volume" => {
                no_flags(self)?;
                let list = match &n.args {
                    Args::Json(v) | Args::Words(v) => v.clone(),
                    _ => return Err(self.err(n, "VOLUME requires at least one argument")),
                };
                let mut vols = Vec::new();
                for v in list {
                    let v = word(&v)?;
                    if v.is_empty() {
                        return Err(self.err(n, "VOLUME specified can not be an empty string"));
                    }
                    vols.push(v);
                }
                let map = st.config.config.volumes.get_or_insert_with(BTreeMap::new);
                for v in &vols {
                    map.insert(v.clone(), json!({}));
                }
                meta(st, format!("VOLUME [{}]", vols.join(" ")));
            }
            "stopsignal" => {
                no_flags(self)?;
                let Args::Line(s) = &n.args else {
                    return Err(self.err(n, "STOPSIGNAL requires exactly one argument"));
                };
                let s = word(s)?;
                if berth::parse_signal(&s).is_err() {
                    return Err(self.err(n, format!("invalid signal: {s}")));
                }
                st.config.config.stop_signal = Some(s.clone());
                meta(st, format!("STOPSIGNAL {s}"));
            }
            "cmd" | "entrypoint" => {
                no_flags(self)?;
                let v = match &n.args {
                    Args::Json(v) => v.clone(),
                    Args::Line(l) => {
                        let mut v = st.shell();
                        v.push(l.clone());
                        v
                    }
                    _ => Vec::new(),
                };
                let msg = format!("{} {}", cmd.to_ascii_uppercase(), go_quoted(&v));
                if cmd == "cmd" {
                    st.config.config.cmd = Some(v);
                    st.cmd_set = true;
                } else {
                    st.config.config.entrypoint = Some(v);
                    if !st.cmd_set {
                        st.config.config.cmd = None;
                    }
                }
                meta(st, msg);
            }
            "shell" => {
                no_flags(self)?;
                let Args::Json(v) = &n.args else {
                    return Err(self.err(n, "SHELL requires the arguments to be in JSON form"));
                };
                if v.is_empty() {
                    return Err(self.err(n, "SHELL requires at least one argument"));
                }
                st.config.config.shell = Some(v.clone());
                meta(st, format!("SHELL [{}]", v.join(" ")));
            }
            "healthcheck" => {
                let Args::Health { kind, cmd: c } = &n.args else {
                    return Err(self.err(n, "HEALTHCHECK requires an argument"));
                };
                let hc = self.healthcheck(n, kind, c)?;
                let msg = format!("HEALTHCHECK {hc}");
                st.config.config.healthcheck = serde_json::from_value(hc).ok();
                meta(st, msg);
            }
            "onbuild" => {
                no_flags(self)?;
                let Args::Sub(sub) = &n.args else { return Err(self.err(n, "ONBUILD requires at least one argument")) };
                let c = sub.cmd();
                if matches!(c.as_str(), "onbuild" | "from" | "maintainer") {
                    return Err(self.err(n, format!("{} isn't allowed as an ONBUILD trigger", c.to_ascii_uppercase())));
                }
                let text = n.original.trim()[n.value.len()..].trim().to_string();
                st.config.config.on_build.get_or_insert_with(Vec::new).push(text.clone());
                st.key = key_of(&[st.key.hex(), "ONBUILD", &text]);
            }
            "maintainer" => {
                no_flags(self)?;
                let Args::Line(m) = &n.args else {
                    return Err(self.err(n, "MAINTAINER requires exactly one argument"));
                };
                st.config.author = Some(m.clone());
                meta(st, format!("MAINTAINER {m}"));
            }
            other => return Err(self.err(n, format!("unknown instruction: {}", other.to_ascii_uppercase()))),
        }
        self.say(&title);
        Ok(())
    }

    fn healthcheck(&self, n: &Node, kind: &str, c: &Args) -> Result<Value, BuildError> {
        let k = kind.to_ascii_uppercase();
        if k == "NONE" {
            if !matches!(c, Args::None) || !n.flags.is_empty() {
                return Err(self.err(n, "HEALTHCHECK NONE takes no arguments"));
            }
            return Ok(json!({"Test": ["NONE"]}));
        }
        if k != "CMD" {
            return Err(self.err(n, format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)")));
        }
        let test: Vec<String> = match c {
            Args::Json(v) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
            Args::Line(l) => vec!["CMD-SHELL".into(), l.clone()],
            _ => return Err(self.err(n, "Missing command after HEALTHCHECK CMD")),
        };
        let mut hc = json!({"Test": test});
        for f in &n.flags {
            let (name, val) = f.split_once('=').unwrap_or((f, ""));
            let key = match name {
                "--interval" => "Interval",
                "--timeout" => "Timeout",
                "--start-period" => "StartPeriod",
                "--start-interval" => "StartInterval",
                "--retries" => {
                    let r: i64 = val.parse().map_err(|_| self.err(n, format!("invalid --retries {val:?}")))?;
                    hc["Retries"] = json!(r);
                    continue;
                }
                _ => return Err(self.err(n, format!("unknown flag: {name}"))),
            };
            let ns = go_duration(val).ok_or_else(|| self.err(n, format!("invalid {name} {val:?}")))?;
            hc[key] = json!(ns);
        }
        Ok(hc)
    }

    /// A step that changes the filesystem: cached, or run over an overlay of the state's
    /// layers; the upper dir becomes a layer (none when the step changed nothing).
    #[allow(clippy::too_many_arguments)]
    fn layer_step(
        &mut self,
        st: &mut State,
        key: Digest,
        created_by: String,
        n: &Node,
        step: usize,
        f: &mut StepFn<'_, 'a>,
    ) -> Result<(), BuildError> {
        let started = Instant::now();
        if !self.req.no_cache {
            if let Some(hit) = self.cache_lookup(&key, false) {
                st.config = hit.0;
                st.layers = hit.1;
                st.chain = hit.2;
                st.key = key;
                // Keep the stage's own view of what is only in memory (ARGs).
                self.say(&format!("#{step} CACHED"));
                return Ok(());
            }
        }
        let dir = self.shared.scratch.0.join(format!("step-{step}"));
        let upper = dir.join("upper");
        let work = dir.join("work");
        let merged = dir.join("merged");
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        crate::remap::chown_to_root(&upper).map_err(io_err("chown", &upper))?;
        let mut lowers: Vec<PathBuf> = st.chain.iter().rev().map(|c| self.store.snapshot_dir(c).join("fs")).collect();
        if lowers.is_empty() {
            let empty = self.shared.scratch.0.join("empty");
            fs::create_dir_all(&empty).map_err(io_err("create", &empty))?;
            lowers.push(empty);
        }
        bundle::mount_overlay(&lowers, &upper, &work, &merged)
            .map_err(|e| self.err(n, format!("mount the stage's root: {e}")))?;
        let mounted = Mounted(merged.clone());
        let made = f(self, &merged, &dir);
        drop(mounted);
        let made = made.map_err(|m| self.err(n, m))?;
        interrupted()?;
        run::remove_mount_points(&upper, &made);
        let empty = fs::read_dir(&upper).map_err(io_err("read", &upper))?.next().is_none();
        let created = self.created();
        if !empty {
            let (diff, size, entries) = self.commit_layer(&upper)?;
            berth::faults::crash_point("build.step.layer-written");
            st.config.rootfs.kind = "layers".into();
            st.config.rootfs.diff_ids.push(diff.clone());
            // The upper dir is the snapshot (already in the overlay format): renamed into the
            // store rather than unpacked again from the layer just written.
            let chain = chain_ids(&st.config.rootfs.diff_ids).pop();
            if let Some(c) = chain {
                self.store.adopt_snapshot_dir(&self.shared.guard, &c, &diff, &upper, entries, size)?;
            }
            st.layers.push(Descriptor {
                media_type: OCI_LAYER.into(),
                digest: diff,
                size: size as i64,
                platform: None,
                annotations: None,
                urls: None,
            });
            st.chain = chain_ids(&st.config.rootfs.diff_ids);
        }
        st.history(&created, &created_by, empty);
        st.key = key.clone();
        let (_, manifest) = self.save_image(st)?;
        berth::faults::crash_point("build.step.image-saved");
        self.cache_store(&key, &manifest, false);
        let _ = fs::remove_dir_all(&dir);
        self.say(&format!("#{step} DONE {:.1}s", started.elapsed().as_secs_f64()));
        Ok(())
    }

    /// Writes the layer of an upper dir into the store (blob and snapshot).
    fn commit_layer(&self, upper: &Path) -> Result<(Digest, u64, u64), BuildError> {
        let mut w = self.store.stage(&self.shared.guard)?;
        // With userns-remap the files' shifted owners go into the layer as the build saw them.
        let owners = crate::remap::active().map(|_| crate::remap::to_container as upper_layer::OwnerMap);
        let opts = LayerOptions {
            clamp_mtime: self.req.source_date_epoch.map(|e| e.max(0) as u64),
            owners,
            ..Default::default()
        };
        let info =
            upper_layer::write_layer_info(upper, &opts, &mut w).map_err(|e| BuildError::Invalid(e.to_string()))?;
        let staged = w.finish()?;
        let diff = info.diff_id.clone();
        let size = info.size;
        self.store.adopt(&self.shared.guard, staged)?;
        Ok((diff, size, info.entries))
    }

    /// Stores the state as an (unnamed) image; returns its config and manifest digests.
    fn save_image(&self, st: &mut State) -> Result<(Digest, Digest), BuildError> {
        // Snapshots of new layers (chain ids over the whole stack).
        let chains = chain_ids(&st.config.rootfs.diff_ids);
        for (i, c) in chains.iter().enumerate() {
            if !self.store.has_snapshot(c) {
                let d = &st.config.rootfs.diff_ids[i];
                let blob = &st.layers[i].digest;
                self.store.ensure_snapshot(&self.shared.guard, c, d, blob)?;
            }
        }
        st.chain = chains.clone();
        st.config.created = Some(self.created());
        let config = serde_json::to_vec(&st.config).map_err(|e| BuildError::Invalid(e.to_string()))?;
        let cd = self.store.write_blob(&self.shared.guard, &config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": config.len()},
            "layers": st.layers,
        });
        let mb = serde_json::to_vec(&manifest).map_err(|e| BuildError::Invalid(e.to_string()))?;
        let md = self.store.write_blob(&self.shared.guard, &mb)?;
        let size: u64 = chains.iter().map(|c| self.store.snapshot_bytes(c).unwrap_or(0)).sum();
        let mut il = self.store.lock_index()?;
        il.index.add_image(
            &md,
            ImageRecord {
                config: cd.clone(),
                layers: st.layers.clone(),
                chain_ids: chains,
                created: st.config.created.clone(),
                size,
                repo_digests: Vec::new(),
                extra_blobs: Vec::new(),
                added: now_secs(),
            },
        );
        il.save()?;
        Ok((cd, md))
    }

    /// The cache file of a key: `<hex>` for a step, `final-<hex>` for a build's result (which
    /// `image ls` shows; step images it hides).
    fn cache_file(&self, key: &Digest, last: bool) -> PathBuf {
        if last {
            self.cache_dir.join(format!("final-{}", key.hex()))
        } else {
            self.cache_dir.join(key.hex())
        }
    }

    fn cache_lookup(&self, key: &Digest, last: bool) -> Option<(ImageConfig, Vec<Descriptor>, Vec<Digest>)> {
        let m = fs::read_to_string(self.cache_file(key, last)).ok()?;
        let m = Digest::parse(m.trim()).ok()?;
        let index = self.store.read_index().ok()?;
        let img = self.store.image(&index, &m).ok()?;
        if !img.chain_ids.iter().all(|c| self.store.has_snapshot(c)) {
            return None;
        }
        Some((img.config, img.layers, img.chain_ids))
    }

    fn cache_store(&self, key: &Digest, manifest: &Digest, last: bool) {
        let _ = fs::create_dir_all(&self.cache_dir);
        let tmp = self.cache_dir.join(format!(".{}.tmp", key.hex()));
        if fs::write(&tmp, manifest.to_string()).is_ok() {
            let _ = fs::rename(&tmp, self.cache_file(key, last));
        }
    }

    /// A read-only view of another stage's (or an image's) root, for COPY --from and
    /// RUN --mount from=: an overlay of its snapshots at a scratch path.
    fn mount_from(&mut self, n: &Node, from: &str) -> Result<(PathBuf, Mounted, Digest), BuildError> {
        let st = match self.stage_index(from) {
            Some(i) if self.stages[i].name.is_some() || from.parse::<usize>().is_ok() => self.build_stage(i)?,
            _ => {
                let lex_from = from.to_string();
                let found = self.store.resolve(&lex_from).ok();
                let img = match found {
                    Some(i) => i,
                    None => {
                        let m = self.pull(&lex_from).map_err(|e| self.err(n, format!("--from={from}: {e}")))?;
                        self.store.resolve(&m.to_string())?
                    }
                };
                self.store.ensure_snapshots(&img)?;
                State {
                    config: img.config.clone(),
                    layers: img.layers.clone(),
                    chain: img.chain_ids.clone(),
                    key: key_of(&["IMAGE", &img.config_digest.to_string()]),
                    args: Vec::new(),
                    cmd_set: false,
                }
            }
        };
        let k = self.shared.mounts.fetch_add(1, Ordering::SeqCst) + 1;
        let dir = self.shared.scratch.0.join(format!("from-{k}"));
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        let mut lowers: Vec<PathBuf> = st.chain.iter().rev().map(|c| self.store.snapshot_dir(c).join("fs")).collect();
        if lowers.is_empty() {
            lowers.push(upper.join("..").join("empty"));
            fs::create_dir_all(&lowers[0]).map_err(io_err("create", &lowers[0]))?;
        }
        bundle::mount_overlay(&lowers, &upper, &work, &merged)
            .map_err(|e| self.err(n, format!("mount --from={from}: {e}")))?;
        Ok((merged.clone(), Mounted(merged), st.key))
    }

    fn run_step(&mut self, st: &mut State, n: &Node, step: usize) -> Result<(), BuildError> {
        let lex = Lex::new('\\');
        let env = st.env();
        let mut network = self.req.network;
        let mut mount_args: Vec<String> = Vec::new();
        for f in &n.flags {
            let (name, val) = f.split_once('=').unwrap_or((f, ""));
            match name {
                "--mount" => mount_args.push(lex.process_word(val, &env).map_err(|e| self.err(n, e.to_string()))?),
                "--network" => {
                    network = Network::parse(val).ok_or_else(|| {
                        self.err(n, format!("unsupported network mode {val:?} (default, none or host)"))
                    })?
                }
                "--security" if val == "sandbox" => {}
                _ => return Err(self.err(n, format!("unknown flag: {name}"))),
            }
        }
        let shell = st.shell();
        let argv: Vec<String> = match &n.args {
            Args::Json(v) => v.clone(),
            Args::Line(l) => {
                let mut v = shell.clone();
                let heredoc_only = n.heredocs.len() == 1 && parser::parse_heredoc(l.trim()).ok().flatten().is_some();
                if heredoc_only {
                    let h = &n.heredocs[0];
                    let content = if h.chomp { parser::chomp_heredoc(&h.content) } else { h.content.clone() };
                    v.push(content);
                } else {
                    let mut s = l.clone();
                    for h in &n.heredocs {
                        s.push('\n');
                        s.push_str(&h.content);
                        s.push_str(&h.name);
                    }
                    v.push(s);
                }
                v
            }
            _ => return Err(self.err(n, "RUN requires at least one argument")),
        };
        if argv.is_empty() {
            return Err(self.err(n, "RUN requires at least one argument"));
        }
        // created_by: docker's `RUN |N K=V ... cmd # buildkit`.
        let mut build_env: Vec<String> = Vec::new();
        for (k, v) in &st.args {
            let val = super::shell::Env::get(env.as_slice(), k).or_else(|| v.clone()).unwrap_or_default();
            build_env.push(format!("{k}={val}"));
        }
        let mut shown: Vec<String> = Vec::new();
        if !build_env.is_empty() {
            shown.push(format!("|{}", build_env.len()));
            shown.extend(build_env.iter().cloned());
        }
        shown.extend(argv.iter().cloned());
        let created_by = format!("RUN {} # buildkit", shown.join(" "));
        // The process's environment: image Env, ARG values, proxy build args.
        let mut penv: Vec<String> = Vec::new();
        for (k, v) in &st.args {
            if let Some(v) = v {
                if !st.config.config.env.iter().flatten().any(|e| e.split_once('=').map_or(e.as_str(), |(a, _)| a) == k)
                {
                    penv.push(format!("{k}={v}"));
                }
            }
        }
        for p in PROXY_ARGS {
            if let Some(v) = self.build_args.get(*p) {
                penv.push(format!("{p}={v}"));
            }
        }
        penv.extend(st.config.config.env.iter().flatten().cloned());
        let runtime_root = self.req.runtime_root.clone();
        let config = st.config.clone();
        let workdir = st.workdir();
        let mut mounts_spec = Vec::new();
        let mut tmpfs = Vec::new();
        let mut keep: Vec<Mounted> = Vec::new();
        let mut locks = Held::default();
        let mut mount_keys = Vec::new();
        for m in &mount_args {
            mount_keys.push(self.run_mount(n, m, &mut mounts_spec, &mut tmpfs, &mut keep, &mut locks)?);
        }
        // As buildkit: SSH_AUTH_SOCK names the first ssh mount's target.
        if let Some(t) = &locks.ssh_target {
            penv.retain(|e| !e.starts_with("SSH_AUTH_SOCK="));
            penv.push(format!("SSH_AUTH_SOCK={t}"));
        }
        // The cache key: the command with its build args, the mounts (a bind mount's source by
        // its content), the network.
        let key = key_of(&[st.key.hex(), &created_by, &mount_keys.join("\n"), &format!("{network:?}")]);
        let id = format!("berth-build-{}-{step}", std::process::id());
        let sandbox = if network == Network::Default { Some(self.sandbox()?) } else { None };
        let argv_shown = argv.join(" ");
        let mut code_out = 0;
        let res = self.layer_step(st, key, created_by, n, step, &mut |_, merged, dir| {
            let mut cfg = config.clone();
            cfg.config.working_dir = Some(workdir.clone());
            let c = RunContainer {
                id: id.clone(),
                runtime_root: &runtime_root,
                dir,
                rootfs: merged,
                config: &cfg,
                argv: argv.clone(),
                env: penv.clone(),
                network,
                sandbox: sandbox.as_deref(),
                mounts: mounts_spec.clone(),
                tmpfs: tmpfs.clone(),
            };
            let (code, made) = run::run(&c).map_err(|e| e.to_string())?;
            if code != 0 {
                code_out = code;
                return Err(format!("process \"{argv_shown}\" did not complete successfully: exit code: {code}"));
            }
            Ok(made)
        });
        drop(keep);
        drop(locks);
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(BuildError::Interrupted);
        }
        res
    }

    /// The build's sandbox on the default network (attached once per build).
    fn sandbox(&self) -> Result<Arc<run::Sandbox>, BuildError> {
        let mut g = self.shared.net.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = g.as_ref() {
            return Ok(s.clone());
        }
        let id = format!("berth-build-{}-net", std::process::id());
        let s = Arc::new(run::Sandbox::attach(&self.req.data_root, &id, "buildkitsandbox")?);
        *g = Some(s.clone());
        Ok(s)
    }

    /// One `RUN --mount=...`.
    fn run_mount(
        &mut self,
        n: &Node,
        spec: &str,
        mounts: &mut Vec<MountSpec>,
        tmpfs: &mut Vec<(String, String)>,
        keep: &mut Vec<Mounted>,
        locks: &mut Held,
    ) -> Result<String, BuildError> {
        let mut key = spec.to_string();
        let mut kv: BTreeMap<String, String> = BTreeMap::new();
        for part in spec.split(',') {
            let (k, v) = part.split_once('=').unwrap_or((part, "true"));
            kv.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let kind = kv.get("type").cloned().unwrap_or_else(|| "bind".into());
        let target = kv.get("target").or_else(|| kv.get("dst")).or_else(|| kv.get("destination")).cloned();
        let ro = kv.get("ro").or_else(|| kv.get("readonly")).is_some_and(|v| v != "false");
        match kind.as_str() {
            "cache" => {
                let target = target.ok_or_else(|| self.err(n, "mount type=cache requires a target"))?;
                let id = kv.get("id").cloned().unwrap_or_else(|| target.clone());
                let dir = self.req.data_root.join("builder/cache-mounts").join(key_of(&[&id]).hex());
                if !dir.exists() {
                    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                    let uid: u32 = kv.get("uid").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let gid: u32 = kv.get("gid").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let mode = kv.get("mode").and_then(|v| u32::from_str_radix(v, 8).ok()).unwrap_or(0o755);
                    let _ = std::os::unix::fs::chown(&dir, Some(uid), Some(gid));
                    let _ = fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode));
                }
                // sharing=locked: one RUN at a time uses it (parallel stages, other builds).
                if kv.get("sharing").map(String::as_str) == Some("locked") {
                    let lp = dir.with_extension("lock");
                    let f = fs::File::create(&lp).map_err(io_err("create", &lp))?;
                    // SAFETY: flock on a descriptor this process owns.
                    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
                        return Err(io_err("lock", &lp)(io::Error::last_os_error()));
                    }
                    locks.files.push(f);
                }
                mounts.push(MountSpec {
                    source: dir.to_string_lossy().into_owned(),
                    destination: target,
                    readonly: ro,
                    options: Vec::new(),
                });
            }
            "bind" => {
                let target = target.ok_or_else(|| self.err(n, "mount type=bind requires a target"))?;
                let source = kv.get("source").or_else(|| kv.get("src")).cloned().unwrap_or_default();
                let host = match kv.get("from") {
                    Some(from) => {
                        let (root, m, k) = self.mount_from(n, from)?;
                        keep.push(m);
                        key.push_str(&format!("\0{k}"));
                        let r = SourceRoot::stage(&root)?;
                        let s = r.resolve(&source).map_err(|e| self.err(n, e))?;
                        s.into_iter().next().map(|s| s.host).unwrap_or(root)
                    }
                    None => {
                        let s = self
                            .ctx
                            .resolve(if source.is_empty() { "." } else { &source })
                            .map_err(|e| self.err(n, e))?;
                        key.push_str(&format!("\0{}", context::checksum(&self.ctx, &s)?));
                        s.into_iter().next().map(|s| s.host).unwrap_or_else(|| self.ctx.path.clone())
                    }
                };
                // `rw`: writes go to a throwaway overlay upper dir, as docker discards them.
                let rw = kv.get("rw").or_else(|| kv.get("readwrite")).is_some_and(|v| v != "false");
                let host = if rw && host.is_dir() {
                    let k = self.shared.mounts.fetch_add(1, Ordering::SeqCst) + 1;
                    let dir = self.shared.scratch.0.join(format!("bind-{k}"));
                    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
                    for d in [&upper, &work, &merged] {
                        fs::create_dir_all(d).map_err(io_err("create", d))?;
                    }
                    bundle::mount_overlay(std::slice::from_ref(&host), &upper, &work, &merged)
                        .map_err(|e| self.err(n, format!("mount {target} rw: {e}")))?;
                    keep.push(Mounted(merged.clone()));
                    merged
                } else {
                    host
                };
                mounts.push(MountSpec {
                    source: host.to_string_lossy().into_owned(),
                    destination: target,
                    readonly: !rw,
                    options: Vec::new(),
                });
            }
            "tmpfs" => {
                let target = target.ok_or_else(|| self.err(n, "mount type=tmpfs requires a target"))?;
                let opts = kv.get("size").map(|s| format!("size={s}")).unwrap_or_default();
                tmpfs.push((target, opts));
            }
            "secret" => {
                let id = kv
                    .get("id")
                    .cloned()
                    .or_else(|| target.as_ref().and_then(|t| t.rsplit('/').next().map(str::to_string)))
                    .ok_or_else(|| self.err(n, "mount type=secret requires an id or a target"))?;
                let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
                let required = kv.get("required").is_some_and(|v| v != "false");
                match self.req.secrets.get(&id) {
                    Some(p) => mounts.push(MountSpec {
                        source: p.to_string_lossy().into_owned(),
                        destination: target,
                        readonly: true,
                        options: Vec::new(),
                    }),
                    None if required => {
                        return Err(
                            self.err(n, format!("secret {id} not found (give it with --secret id={id},src=PATH)"))
                        )
                    }
                    None => {}
                }
            }
            "ssh" => {
                let id = kv.get("id").cloned().unwrap_or_else(|| "default".into());
                let nth = locks.ssh_mounts;
                locks.ssh_mounts += 1;
                let target = target.unwrap_or_else(|| ssh::default_target(nth));
                let required = kv.get("required").is_some_and(|v| v != "false");
                let num = |k: &str, radix: u32, def: u32| -> Result<u32, BuildError> {
                    match kv.get(k) {
                        Some(v) => u32::from_str_radix(v, radix)
                            .map_err(|_| self.err(n, format!("invalid ssh mount {k} {v:?}"))),
                        None => Ok(def),
                    }
                };
                let (uid, gid, mode) = (num("uid", 10, 0)?, num("gid", 10, 0)?, num("mode", 8, 0o600)?);
                match self.shared.ssh.get(&id) {
                    Some(agent) => {
                        let k = self.shared.mounts.fetch_add(1, Ordering::SeqCst) + 1;
                        let dir = self.shared.scratch.0.join(format!("ssh-{k}"));
                        let f = ssh::Forward::start(agent, &dir, uid, gid, mode)?;
                        mounts.push(MountSpec {
                            source: f.socket.to_string_lossy().into_owned(),
                            destination: target.clone(),
                            readonly: false,
                            options: Vec::new(),
                        });
                        locks.ssh.push(f);
                        if locks.ssh_target.is_none() {
                            locks.ssh_target = Some(target);
                        }
                    }
                    None if required => {
                        return Err(self.err(
                            n,
                            format!("no SSH key {id:?} forwarded from the client (give it with --ssh {id}=SOCKET)"),
                        ))
                    }
                    None => {}
                }
            }
            other => {
                return Err(self.err(n, format!("unsupported mount type {other:?} (bind, cache, tmpfs, secret or ssh)")))
            }
        }
        Ok(key)
    }

    fn copy_step(&mut self, st: &mut State, n: &Node, add: bool, step: usize) -> Result<(), BuildError> {
        let lex = Lex::new('\\');
        let env = st.env();
        let word = |s: &str| lex.process_word(s, &env).map_err(|e| self.err(n, e.to_string()));
        let name = if add { "ADD" } else { "COPY" };
        let (mut from, mut chown, mut chmod, mut checksum_flag) = (None, None, None, None);
        let mut parents = false;
        let mut keep_git_dir = false;
        for f in &n.flags {
            let (k, v) = f.split_once('=').unwrap_or((f, ""));
            match k {
                "--from" if !add => from = Some(word(v)?),
                "--parents" if !add => {
                    parents = match v {
                        "" | "true" => true,
                        "false" => false,
                        _ => return Err(self.err(n, format!("invalid --parents value {v:?}: true or false"))),
                    }
                }
                "--chown" => chown = Some(word(v)?),
                "--chmod" => chmod = Some(word(v)?),
                "--link" => {}
                "--checksum" if add => checksum_flag = Some(word(v)?),
                "--keep-git-dir" if add => {
                    keep_git_dir = match v {
                        "" | "true" => true,
                        "false" => false,
                        _ => return Err(self.err(n, format!("invalid --keep-git-dir value {v:?}: true or false"))),
                    }
                }
                _ => return Err(self.err(n, format!("unknown flag: {k}"))),
            }
        }
        let raw = match &n.args {
            Args::Json(v) | Args::Words(v) => v.clone(),
            _ => Vec::new(),
        };
        if raw.len() < 2 {
            return Err(self.err(n, format!("{name} requires at least two arguments")));
        }
        let mut args = Vec::new();
        for a in &raw {
            args.push(word(a)?);
        }
        let dest_raw = args.pop().unwrap_or_default();
        let workdir = st.workdir();
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), dest_raw)
        };
        let dest_is_dir = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let mode = match &chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8).map_err(|_| self.err(n, format!("invalid --chmod {m:?} (an octal mode)")))?,
            ),
            None => None,
        };
        // Sources: heredocs, or paths in the context or another stage.
        let mut heredocs: Vec<(String, String)> = Vec::new();
        let mut paths: Vec<String> = Vec::new();
        for a in &args {
            match n.heredocs.iter().find(|h| parser::parse_heredoc(a).ok().flatten().is_some_and(|p| p.name == h.name))
            {
                Some(h) => {
                    let mut c = if h.chomp { parser::chomp_heredoc(&h.content) } else { h.content.clone() };
                    if h.expand {
                        // As buildkit: variables expanded, quotes left as written.
                        let hl = Lex { escape: '\\', raw_quotes: false, skip_unset: false, skip_quotes: true };
                        c = hl.process_word(&c, &env).map_err(|e| self.err(n, e.to_string()))?;
                    }
                    heredocs.push((h.name.clone(), c));
                }
                None => paths.push(a.clone()),
            }
        }
        let mut from_mount = None;
        let mut from_key = String::new();
        let root = match &from {
            Some(f) => {
                let (root, m, k) = self.mount_from(n, f)?;
                from_mount = Some(m);
                from_key = k.to_string();
                SourceRoot::stage(&root)?
            }
            None => SourceRoot::context(&self.ctx.path, self.ctx.ignore.clone())?,
        };
        let mut sources = Vec::new();
        let mut remote: BTreeSet<PathBuf> = BTreeSet::new();
        let is_url = |p: &str| p.starts_with("http://") || p.starts_with("https://");
        if checksum_flag.is_some() && !paths.iter().all(|p| is_url(p)) {
            return Err(self.err(n, "--checksum can only be used with a URL source"));
        }
        // --parents: each source keeps its path below the context (or below a `/./` pivot in
        // the argument) under the destination directory.
        let mut kept: Vec<String> = Vec::new();
        // ADD of git repositories: each checkout's root (or subdir), copied as a directory;
        // the key holds the resolved commits.
        let mut git_trees: Vec<PathBuf> = Vec::new();
        let mut git_key = String::new();
        for p in &paths {
            if add && git::is_git_url(p) {
                let src = git::parse(p);
                let k = self.shared.mounts.fetch_add(1, Ordering::SeqCst) + 1;
                let dir = self.shared.scratch.0.join(format!("git-{k}"));
                let (tree, commit) = git::checkout(&src, &dir, keep_git_dir).map_err(|e| self.err(n, e))?;
                let host = match &src.subdir {
                    None => tree,
                    Some(sub) => {
                        let r = SourceRoot::stage(&tree)?;
                        let s = r.resolve(sub).map_err(|e| self.err(n, format!("{}: {e}", src.url)))?;
                        match s.into_iter().next() {
                            Some(s) if s.is_dir => s.host,
                            _ => return Err(self.err(n, format!("{}: {sub:?} is not a directory", src.url))),
                        }
                    }
                };
                git_key.push_str(&format!("{}\0{commit}\0{:?}\0{keep_git_dir}\0", src.url, src.subdir));
                git_trees.push(host);
                continue;
            }
            if add && is_url(p) {
                let (path, name) =
                    self.download(p, checksum_flag.as_deref(), step, remote.len()).map_err(|e| self.err(n, e))?;
                remote.insert(path.clone());
                kept.push(String::new());
                sources.push(context::Source { rel: name, host: path, is_dir: false });
                continue;
            }
            let found = root.resolve(p).map_err(|e| self.err(n, e))?;
            let pivot = p.trim_start_matches("./").rsplit_once("/./").map(|(a, _)| a).unwrap_or("");
            let pivot = fsops::clean_rel(pivot).unwrap_or_default();
            for s in &found {
                let rest = if pivot.is_empty() {
                    Some(s.rel.as_str())
                } else if s.rel == pivot {
                    Some("")
                } else {
                    s.rel.strip_prefix(&format!("{pivot}/"))
                };
                kept.push(rest.unwrap_or(&s.rel).to_string());
            }
            sources.extend(found);
        }
        if parents && !dest_is_dir {
            return Err(self.err(n, format!("{name} --parents: the destination must be a directory and end with a /")));
        }
        let count = sources.len() + heredocs.len() + git_trees.len();
        if count > 1 && !dest_is_dir {
            return Err(self.err(n, format!("When using {name} with more than one source file, the destination must be a directory and end with a /")));
        }
        let sum = context::checksum(&root, &sources)?;
        let mut msg = String::from(name);
        if parents {
            msg.push_str(" --parents");
        }
        if let Some(c) = &chown {
            msg.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod {
            msg.push_str(&format!(" --chmod={c}"));
        }
        for p in &paths {
            msg.push_str(&format!(" {p}"));
        }
        for (h, _) in &heredocs {
            msg.push_str(&format!(" <<{h}"));
        }
        msg.push_str(&format!(" {dest_raw} # buildkit"));
        let hd: Vec<String> = heredocs.iter().map(|(a, b)| format!("{a}\0{b}")).collect();
        let key = key_of(&[st.key.hex(), &msg, &workdir, &from_key, sum.hex(), &hd.join("\0"), &git_key]);
        let clamp = self.req.source_date_epoch;
        let mtime_now = self.req.source_date_epoch.unwrap_or(now_secs() as i64);
        let res = self.layer_step(st, key, msg, n, step, &mut |_, merged, _| {
            let (uid, gid) = match &chown {
                Some(c) => resolve_owner(merged, c)?,
                None => (0, 0),
            };
            // With userns-remap the files are the shifted owners' on disk.
            let (uid, gid) = crate::remap::to_host(uid, gid);
            let attrs = Attrs { uid, gid, mode, clamp };
            let droot = DestRoot::open(merged).map_err(|e| format!("open root: {e}"))?;
            let dest_rel = fsops::clean_rel(&dest).unwrap_or_default();
            let into_dir = dest_is_dir || droot.is_dir(&dest_rel);
            for (k, s) in sources.iter().enumerate() {
                if k > 0 {
                    // One source copied into the step's upper dir, the next not yet.
                    berth::faults::crash_point("build.copy.mid");
                }
                let is_archive = add && !s.is_dir && !remote.contains(&s.host) && is_archive(&s.host);
                // Under --parents, the directory (or the file's parent) the source keeps.
                let keep = |sub: &str| -> String {
                    match (dest_rel.is_empty(), sub.is_empty()) {
                        (_, true) => dest_rel.clone(),
                        (true, false) => sub.to_string(),
                        (false, false) => format!("{dest_rel}/{sub}"),
                    }
                };
                if parents && !s.is_dir {
                    let k = kept.get(k).map(String::as_str).unwrap_or("");
                    let (sub, fname) = k.rsplit_once('/').unwrap_or(("", k));
                    let dir_rel = keep(sub);
                    let d = droot.ensure_dir(&dir_rel, 0, 0).map_err(|e| format!("mkdir /{dir_rel}: {e}"))?;
                    let skip = |_: &str| false;
                    fsops::copy_into(&s.host, &d, std::ffi::OsStr::new(fname), &attrs, &s.rel, &skip)
                        .map_err(|e| format!("copy {}: {e}", s.rel))?;
                    continue;
                }
                if s.is_dir || is_archive {
                    let into =
                        if parents { keep(kept.get(k).map(String::as_str).unwrap_or("")) } else { dest_rel.clone() };
                    let d = droot.ensure_dir(&into, uid, gid).map_err(|e| format!("mkdir {dest}: {e}"))?;
                    if is_archive {
                        let f = fs::File::open(&s.host).map_err(|e| format!("{}: {e}", s.rel))?;
                        crate::image::unpack::unpack_layer(
                            f,
                            &fsops::fd_path(&d),
                            crate::image::unpack::WhiteoutMode::Apply,
                        )
                        .map_err(|e| format!("{}: {e}", s.rel))?;
                        continue;
                    }
                    let skip = |rel: &str| root.skipped(rel);
                    let mut names: Vec<std::ffi::OsString> = fs::read_dir(&s.host)
                        .map_err(|e| format!("{}: {e}", s.rel))?
                        .map(|e| e.map(|e| e.file_name()))
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("{}: {e}", s.rel))?;
                    names.sort();
                    for c in names {
                        let crel = if s.rel.is_empty() {
                            c.to_string_lossy().into_owned()
                        } else {
                            format!("{}/{}", s.rel, c.to_string_lossy())
                        };
                        if skip(&crel) {
                            continue;
                        }
                        fsops::copy_into(&s.host.join(&c), &d, &c, &attrs, &crel, &skip)
                            .map_err(|e| format!("copy {crel}: {e}"))?;
                    }
                    continue;
                }
                let base = s.rel.rsplit('/').next().unwrap_or(&s.rel).to_string();
                let (dir_rel, fname) = if into_dir {
                    (dest_rel.clone(), base)
                } else {
                    match dest_rel.rsplit_once('/') {
                        Some((d, f)) => (d.to_string(), f.to_string()),
                        None => (String::new(), dest_rel.clone()),
                    }
                };
                let d = droot.ensure_dir(&dir_rel, 0, 0).map_err(|e| format!("mkdir /{dir_rel}: {e}"))?;
                let skip = |_: &str| false;
                fsops::copy_into(&s.host, &d, std::ffi::OsStr::new(&fname), &attrs, &s.rel, &skip)
                    .map_err(|e| format!("copy {}: {e}", s.rel))?;
            }
            for tree in &git_trees {
                let d = droot.ensure_dir(&dest_rel, uid, gid).map_err(|e| format!("mkdir {dest}: {e}"))?;
                let mut names: Vec<std::ffi::OsString> = fs::read_dir(tree)
                    .map_err(|e| format!("{}: {e}", tree.display()))?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{}: {e}", tree.display()))?;
                names.sort();
                let skip = |_: &str| false;
                for c in names {
                    let crel = c.to_string_lossy().into_owned();
                    fsops::copy_into(&tree.join(&c), &d, &c, &attrs, &crel, &skip)
                        .map_err(|e| format!("copy {crel}: {e}"))?;
                }
            }
            for (name, content) in &heredocs {
                if name.contains('/') || name == ".." || name == "." {
                    return Err(format!("heredoc name {name:?} cannot be a file name"));
                }
                let (dir_rel, fname) = if into_dir {
                    (dest_rel.clone(), name.clone())
                } else {
                    match dest_rel.rsplit_once('/') {
                        Some((d, f)) => (d.to_string(), f.to_string()),
                        None => (String::new(), dest_rel.clone()),
                    }
                };
                let d = droot.ensure_dir(&dir_rel, 0, 0).map_err(|e| format!("mkdir /{dir_rel}: {e}"))?;
                fsops::write_file(&d, &fname, content.as_bytes(), &attrs, 0o644, mtime_now)
                    .map_err(|e| format!("write {fname}: {e}"))?;
            }
            Ok(Vec::new())
        });
        drop(from_mount);
        res
    }

    /// `ADD URL`: the body downloaded into the scratch dir (mode 0600, its Last-Modified time),
    /// checked against `--checksum`; returns its path and file name (the URL's last segment).
    fn download(&self, url: &str, checksum: Option<&str>, step: usize, k: usize) -> Result<(PathBuf, String), String> {
        use crate::image::registry::{Client, ClientOptions};
        let name = url
            .split(['?', '#'])
            .next()
            .unwrap_or(url)
            .rsplit('/')
            .find(|s| !s.is_empty() && !s.contains(':'))
            .unwrap_or("download")
            .to_string();
        let client = Client::new(ClientOptions::default()).map_err(|e| e.to_string())?;
        let (mut body, modified) = client.get_url(url)?;
        let dir = self.shared.scratch.0.join(format!("download-{step}-{k}"));
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join(&name);
        let f = fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let mut w = crate::image::digest::HashingWriter::new(io::BufWriter::new(f));
        io::copy(&mut body, &mut w).map_err(|e| format!("{url}: download: {e}"))?;
        let (mut f, got, _) = w.finish();
        f.flush().map_err(|e| format!("write {}: {e}", path.display()))?;
        if let Some(want) = checksum {
            if want != got.to_string() {
                return Err(format!("{url}: checksum mismatch: expected {want}, got {got}"));
            }
        }
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        if let Some(t) = modified {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
            if let Ok(f) = fs::File::options().write(true).open(&path) {
                let _ = f.set_modified(when);
            }
        }
        Ok((path, name))
    }

    /// The final image: `--label`s, stored, named, its id printed and written.
    fn finish(&mut self, mut st: State) -> Result<Built, BuildError> {
        if !self.req.labels.is_empty() {
            let l = st.config.config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in &self.req.labels {
                l.insert(k.clone(), v.clone());
            }
        }
        let unused: Vec<&String> = self
            .build_args
            .keys()
            .filter(|k| {
                !self.used_args.contains(*k) && !PROXY_ARGS.contains(&k.as_str()) && k.as_str() != "SOURCE_DATE_EPOCH"
            })
            .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.say(&format!("[Warning] One or more build-args [{}] were not consumed", names.join(" ")));
        }
        // The final config (metadata steps included) is cached too: a build with nothing
        // changed gives the same image.
        let labels: Vec<String> = self.req.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let key = key_of(&[st.key.hex(), "FINAL", &labels.join("\0")]);
        let cached = if self.req.no_cache { None } else { self.cache_lookup(&key, true) };
        let (id, manifest) = match cached {
            Some(_) => {
                let m = fs::read_to_string(self.cache_file(&key, true)).unwrap_or_default();
                let m = Digest::parse(m.trim()).map_err(|e| BuildError::Invalid(e.to_string()))?;
                let index = self.store.read_index()?;
                let img = self.store.image(&index, &m)?;
                (img.config_digest, m)
            }
            None => {
                let r = self.save_image(&mut st)?;
                self.cache_store(&key, &r.1, true);
                r
            }
        };
        let step = self.next_step();
        self.say(&format!("#{step} writing image {id} done"));
        let mut names = Vec::new();
        for t in &self.req.tags {
            let (_, canonical) = normalise(t)?;
            names.push(canonical);
        }
        if !names.is_empty() {
            let mut il = self.store.lock_index()?;
            for c in &names {
                il.index.set_ref(c, &manifest);
            }
            il.save()?;
            for c in &names {
                self.say(&format!("#{step} naming to {c} done"));
            }
        }
        if let Some(p) = &self.req.iidfile {
            fs::write(p, id.to_string()).map_err(io_err("write", p))?;
        }
        Ok(Built { id })
    }
}

/// Scratch dirs of builds whose process is gone (killed): unmounted and removed.
fn clean_stale(tmp: &Path, req: &BuildRequest) {
    let Ok(rd) = fs::read_dir(tmp) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid: i32 = name.split('-').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if pid > 0 && Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Its RUN containers (killed), its network sandbox, then its mounts and files.
        let g = berth::Globals {
            root: req.runtime_root.clone(),
            systemd_cgroup: false,
            debug: false,
            rootless: berth::use_rootless_cgroups(None, false),
        };
        let prefix = format!("berth-build-{pid}-");
        if let Ok(rd) = fs::read_dir(&req.runtime_root) {
            for c in rd.flatten() {
                let id = c.file_name().to_string_lossy().into_owned();
                if id.starts_with(&prefix) {
                    let _ = berth::delete(&g, &id, true);
                }
            }
        }
        let _ = crate::network::detach(&req.data_root, &format!("{prefix}net"));
        ssh::kill_stale(&e.path());
        drop(Scratch(e.path()));
    }
}

/// `--chown` / USER owner `user[:group]` resolved in the stage's root.
fn resolve_owner(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    let u = crate::image::passwd::resolve_in_rootfs(root, spec).map_err(|e| format!("--chown={spec}: {e}"))?;
    Ok((u.uid, u.gid))
}

/// Whether ADD unpacks a local file: a tar, plain or compressed (gzip, bzip2, xz, zstd).
fn is_archive(p: &Path) -> bool {
    let Ok(mut f) = fs::File::open(p) else { return false };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let h = &head[..n];
    h.starts_with(&[0x1f, 0x8b]) || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || (n >= 262 && &h[257..262] == b"ustar")
}

/// Go's time.ParseDuration for HEALTHCHECK flags, in nanoseconds.
fn go_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_quoting() {
        assert_eq!(go_duration("5s"), Some(5_000_000_000));
        assert_eq!(go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(go_duration("5"), None);
        assert_eq!(
            go_quoted(&["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["/bin/sh" "-c" "echo \"hi\""]"#
        );
    }
}
