//! `berth image build`: Dockerfile builds. The parser and word expansion follow Docker's
//! frontend (moby/buildkit); each RUN is a container of berth's own runtime over an overlay
//! of the stage's snapshots, and the overlay's upper directory becomes the new layer
//! (`image::layer_from_dir`). Every step that makes a layer is recorded in the image store as
//! an unnamed image, and the build cache maps a step (its parent and its instruction, with
//! the build args and source checksums it depends on) to that image.
//!
//! The command line and the Engine API translate their flags into a [`BuildRequest`];
//! [`build`] is the one core both call.

pub mod context;
pub mod exec;
pub mod fsops;
pub mod ignore;
pub mod parser;
pub mod run;
pub mod shell;

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
}

/// The network of RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace with its DNS configuration (what buildah's and
    /// BuildKit's OCI worker give a RUN by default as root).
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
    pub labels: BTreeMap<String, String>,
    pub iidfile: Option<PathBuf>,
    pub progress: Progress,
    /// SOURCE_DATE_EPOCH (from the environment or a build arg): the image's times.
    pub source_date_epoch: Option<i64>,
    /// The image store's data root and the runtime's state root.
    pub data_root: PathBuf,
    pub runtime_root: PathBuf,
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

/// Runs a build: parses the Dockerfile, builds the stages the target needs, stores the
/// image and names it.
pub fn build(req: &BuildRequest) -> Result<Built, BuildError> {
    exec::Builder::run(req)
}
