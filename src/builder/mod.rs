//! `berth image build`: Dockerfile builds. The parser and word expansion follow Docker's
//! frontend (moby/buildkit); each RUN is a container of berth's own runtime over an overlay
//! of the stage's snapshots, and the overlay's upper directory becomes the new layer
//! (`image::upper_layer`). Every step that makes a layer is recorded in the image store as
//! an unnamed image, and the build cache maps a step (its parent and its instruction, with
//! the build args and source checksums it depends on) to that image.
//!
//! The command line and the Engine API translate their flags into a [`BuildRequest`];
//! [`build`] is the one core both call.

pub mod context;
pub mod exec;
pub mod fsops;
pub mod git;
pub mod ignore;
pub mod parser;
pub mod progress;
pub mod run;
pub mod shell;
pub mod ssh;

use crate::image::digest::Digest;
use crate::image::store::StoreError;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

/// Where the build context comes from.
#[derive(Debug, Clone)]
pub enum ContextSource {
    Dir(PathBuf),
    /// A tar on standard input (`berth image build -`).
    StdinTar,
    /// A tar in a file (the Engine API's request body, spooled).
    Tar(PathBuf),
}

/// Where the Dockerfile comes from.
#[derive(Debug, Clone)]
pub enum DockerfileSource {
    /// `Dockerfile` at the context's root.
    Default,
    /// `-f PATH` (relative to the current directory, as docker reads it).
    Path(PathBuf),
    /// `-f -`.
    Stdin,
    /// A path inside the context (the Engine API's `dockerfile`): it must stay inside it, a
    /// symlink included.
    InContext(String),
}

/// The network of RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The engine's default bridge network, with its DNS: one sandbox namespace per build
    /// that every RUN joins.
    #[default]
    Default,
    /// A namespace with loopback only.
    None,
    Host,
}

impl Network {
    pub fn parse(s: &str) -> Option<Network> {
        match s {
            "default" | "" => Some(Network::Default),
            "none" => Some(Network::None),
            "host" => Some(Network::Host),
            _ => None,
        }
    }
}

/// Progress output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    #[default]
    Auto,
    Plain,
    Tty,
    /// `-q`: nothing but the image id on stdout.
    Quiet,
}

/// One build, as the command line (or the Engine API) asks for it.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub context: Option<ContextSource>,
    pub dockerfile: Option<DockerfileSource>,
    pub tags: Vec<String>,
    /// `--build-arg K=V`; `--build-arg K` (None) takes K from the environment.
    pub build_args: Vec<(String, Option<String>)>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub network: Network,
    /// `--secret id=ID,src=PATH`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh ID=SOCKET`: the ssh agents RUN `--mount=type=ssh` forwards, by id.
    pub ssh: BTreeMap<String, PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub iidfile: Option<PathBuf>,
    pub progress: Progress,
    /// SOURCE_DATE_EPOCH (from the environment or a build arg): the image's times.
    pub source_date_epoch: Option<i64>,
    /// The image store's data root and the runtime's state root.
    pub data_root: PathBuf,
    pub runtime_root: PathBuf,
    /// Leave the process's SIGINT/SIGTERM/SIGHUP handlers as they are (the API service: its
    /// own handlers stop the service, and a build there ends with its client). The command
    /// line's builds take them over, to stop at the next step and clean up.
    pub keep_signal_handlers: bool,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image id (its config digest).
    pub id: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{file}: {source}")]
    Parse { file: String, source: parser::ParseError },
    #[error(transparent)]
    Ignore(#[from] ignore::IgnoreError),
    /// A step failed: the file, line, instruction and why.
    #[error("{file}:{line}: {instruction}: {msg}")]
    Step { file: String, line: usize, instruction: String, msg: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("build interrupted")]
    Interrupted,
}

pub(crate) fn io_err<'a>(op: &'static str, path: &'a std::path::Path) -> impl FnOnce(io::Error) -> BuildError + 'a {
    move |source| BuildError::Io { op, path: path.to_path_buf(), source }
}

/// `berth builder ...`.
#[derive(Debug, clap::Subcommand)]
pub enum BuilderCmd {
    /// Remove the build cache: the cache's records, its unnamed step images, cache mounts.
    Prune {
        /// Accepted for docker compatibility (the whole cache is removed).
        #[arg(short = 'a', long = "all")]
        all: bool,
        /// Accepted for docker compatibility (prune never prompts).
        #[arg(short = 'f', long = "force")]
        force: bool,
    },
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => n += dir_bytes(&e.path()),
                Ok(_) => n += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    n
}

/// The manifests of cached build steps (not of build results): unnamed images `image ls`
/// hides unless `-a`, as docker hides intermediate images.
pub fn step_images(data_root: &std::path::Path) -> std::collections::BTreeSet<Digest> {
    let mut out = std::collections::BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(data_root.join("builder/cache")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("final-") || name.starts_with('.') {
                continue;
            }
            if let Some(d) = std::fs::read_to_string(e.path()).ok().and_then(|t| Digest::parse(t.trim()).ok()) {
                out.insert(d);
            }
        }
    }
    out
}

/// Bytes held by the build's cache mounts (`RUN --mount=type=cache`).
pub fn cache_mounts_usage(data_root: &std::path::Path) -> u64 {
    dir_bytes(&data_root.join("builder/cache-mounts"))
}

/// `builder prune`: forgets every cached step, removes the step images only the cache
/// kept (unnamed, not used by a container) and the cache mounts; returns the bytes freed.
pub fn prune(data_root: &std::path::Path) -> Result<u64, BuildError> {
    let store = crate::image::store::Store::open(data_root)?;
    let dir = data_root.join("builder");
    let cache = dir.join("cache");
    let mut manifests = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&cache) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path()) {
                if let Ok(d) = Digest::parse(t.trim()) {
                    manifests.push(d);
                }
            }
        }
    }
    let mounts = dir.join("cache-mounts");
    let mut freed = dir_bytes(&mounts);
    std::fs::remove_dir_all(&mounts)
        .or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        .map_err(io_err("remove", &mounts))?;
    std::fs::remove_dir_all(&cache)
        .or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        .map_err(io_err("remove", &cache))?;
    if !manifests.is_empty() {
        let uses = store.uses()?;
        let mut il = store.lock_index()?;
        let mut changed = false;
        for m in &manifests {
            let Some(rec) = il.index.images.get(m) else { continue };
            let used = uses.iter().any(|u| u.id == rec.config);
            if used || !il.index.names_of(m).is_empty() {
                continue;
            }
            il.index.images.remove(m);
            changed = true;
        }
        if changed {
            il.save()?;
        }
        drop(il);
        freed += store.gc()?.bytes;
    }
    Ok(freed)
}

/// Runs a build: parses the Dockerfile, builds the stages the target needs, stores the
/// image and names it.
pub fn build(req: &BuildRequest) -> Result<Built, BuildError> {
    exec::Builder::run(req)
}
