//! `berth image ...`: the clap definitions and their implementation.

use super::archive::{self, ArchiveError};
use super::bundle::{self, BundleError, BundleOptions};
use super::digest::Digest;
use super::pull::{self, PullError, PullOptions};
use super::registry::{Client, ClientOptions, RegistryError};
use super::store::{familiar, normalise, split_name, Image, Store, StoreError, StoreIndex, Use};
use super::unpack::{self, UnpackError, WhiteoutMode};
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum ImageCmd {
    /// Load images from a docker save archive or an OCI image layout (directory or tar; tars may be gzip- or zstd-compressed).
    Load {
        /// Archive file ("-": standard input) or OCI layout directory.
        #[arg(short = 'i', long = "input")]
        input: PathBuf,
        /// Accepted for docker compatibility (load prints no progress).
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
    },
    /// Make an image from a root filesystem: a tar (plain, gzip or zstd; "-": stdin) or a directory.
    Import {
        /// A Dockerfile instruction to apply (CMD, ENTRYPOINT, ENV, EXPOSE, WORKDIR, USER, LABEL, STOPSIGNAL, VOLUME).
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
        /// A comment kept in the image's history.
        #[arg(short = 'm', long = "message")]
        message: Option<String>,
        source: PathBuf,
        /// Name for the image, e.g. busybox:local.
        reference: Option<String>,
    },
    /// Pull an image from a registry.
    Pull {
        /// Platform to pull from a multi-platform image: os/arch[/variant].
        #[arg(long)]
        platform: Option<String>,
        /// Allow plain http and unverified TLS.
        #[arg(long)]
        insecure: bool,
        /// CA certificate (PEM) to trust for the registry.
        #[arg(long = "tls-ca")]
        tls_ca: Option<PathBuf>,
        /// Credentials file (docker config.json format).
        #[arg(long = "authfile")]
        authfile: Option<PathBuf>,
        /// Print only the image name at the end.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
        /// Image reference, e.g. busybox, localhost:5000/x/y:t, name@sha256:...
        reference: String,
    },
    /// Push an image to a registry.
    Push {
        /// Push every tag of the repository.
        #[arg(short = 'a', long = "all-tags")]
        all_tags: bool,
        /// Allow plain http and unverified TLS.
        #[arg(long)]
        insecure: bool,
        /// CA certificate (PEM) to trust for the registry.
        #[arg(long = "tls-ca")]
        tls_ca: Option<PathBuf>,
        /// Credentials file (docker config.json format).
        #[arg(long = "authfile")]
        authfile: Option<PathBuf>,
        /// Print only the reference pushed.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
        /// Image name with the registry, e.g. localhost:5000/x/y:t
        reference: String,
    },
    /// Save images to a tar archive (docker's save format; standard output by default).
    Save {
        /// Write to a file instead of standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the history of an image.
    History {
        /// Print only the image ids.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
        /// Do not truncate the output.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Print sizes and dates in human readable form.
        #[arg(short = 'H', long = "human", default_value = "true", action = clap::ArgAction::Set)]
        human: bool,
        /// Output format: table (default) or json (one object per line).
        #[arg(long)]
        format: Option<String>,
        image: String,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// Show all images (intermediate build steps too).
        #[arg(short = 'a', long = "all")]
        all: bool,
        /// Show only image ids.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
        /// Show digests.
        #[arg(long)]
        digests: bool,
        /// Output format: table (default) or json (one object per line).
        #[arg(long)]
        format: Option<String>,
        /// Show full image ids.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Show details of images as a JSON array.
    Inspect {
        /// A template such as '{{.Id}}' or '{{json .Config}}'.
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Remove image names, and images left without a name.
    #[command(alias = "remove")]
    Rm {
        /// Remove even when used, or named in several repositories.
        #[arg(short = 'f', long = "force")]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unnamed images (with -a, every image no container uses).
    Prune {
        #[arg(short = 'a', long = "all")]
        all: bool,
        /// Accepted for docker compatibility (prune never prompts).
        #[arg(short = 'f', long = "force")]
        force: bool,
    },
    /// Verify the store: re-hash every blob, account for every image's blobs and snapshots.
    Check,
    /// Write a flat bundle: DIR/rootfs (layers applied in order) and DIR/config.json.
    Unpack { image: String, dir: PathBuf },
    /// Write an overlay bundle: DIR/rootfs mounted over the image's snapshots, DIR/config.json.
    Mount { image: String, dir: PathBuf },
    /// Undo `image mount`.
    Umount { dir: PathBuf },
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
}

/// `berth image build`'s flags: docker build's.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); repeatable.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; "-": standard input).
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Build-time variables: KEY=VALUE, or KEY to take its value from the environment.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// The build stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Always pull the base images.
    #[arg(long)]
    pub pull: bool,
    /// The network of RUN steps: default, none or host.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// A secret for RUN --mount=type=secret: id=ID,src=PATH.
    #[arg(long)]
    pub secret: Vec<String>,
    /// An ssh agent for RUN --mount=type=ssh: default|ID[=SOCKET] (default: $SSH_AUTH_SOCK).
    #[arg(long)]
    pub ssh: Vec<String>,
    /// Labels of the image: KEY=VALUE.
    #[arg(long)]
    pub label: Vec<String>,
    /// Write the image id to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Print only the image id.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Progress output: auto, plain or tty.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// The target platform (this host's only).
    #[arg(long)]
    pub platform: Option<String>,
    /// The build context: a directory, or "-" for a tar on standard input.
    pub context: String,
}

/// Translates `image build` flags into a build request.
pub fn build_request(
    a: BuildArgs,
    data_root: &Path,
    runtime_root: &Path,
) -> Result<crate::builder::BuildRequest, CliError> {
    use crate::builder::{BuildRequest, ContextSource, DockerfileSource, Network, Progress};
    let context =
        if a.context == "-" { ContextSource::StdinTar } else { ContextSource::Dir(PathBuf::from(&a.context)) };
    let dockerfile = match a.file.as_deref() {
        None => DockerfileSource::Default,
        Some("-") => {
            if a.context == "-" {
                return Err(CliError::Usage(
                    "invalid argument: can't use stdin for both build context and dockerfile".into(),
                ));
            }
            DockerfileSource::Stdin
        }
        Some(p) => DockerfileSource::Path(PathBuf::from(p)),
    };
    let network = Network::parse(&a.network)
        .ok_or_else(|| CliError::Usage(format!("invalid --network {:?}: default, none or host", a.network)))?;
    let progress = match (a.quiet, a.progress.as_str()) {
        (true, _) => Progress::Quiet,
        (false, "auto") => Progress::Auto,
        (false, "plain") => Progress::Plain,
        (false, "tty") => Progress::Tty,
        (false, p) => return Err(CliError::Usage(format!("invalid --progress {p:?}: auto, plain or tty"))),
    };
    if let Some(p) = &a.platform {
        let h = super::types::host_platform();
        if p != &format!("{}/{}", h.os, h.architecture) && p != &h.architecture {
            return Err(CliError::Usage(format!(
                "--platform {p}: berth builds for this host's platform only ({}/{})",
                h.os, h.architecture
            )));
        }
    }
    let mut build_args = Vec::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), Some(v.to_string()))),
            None => build_args.push((b.clone(), None)),
        }
    }
    let mut secrets = std::collections::BTreeMap::new();
    for s in &a.secret {
        let mut id = None;
        let mut src = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("type", "file")) => {}
                _ => return Err(CliError::Usage(format!("invalid --secret {s:?}: id=ID,src=PATH"))),
            }
        }
        let id = id.ok_or_else(|| CliError::Usage(format!("invalid --secret {s:?}: no id")))?;
        let src = src.ok_or_else(|| CliError::Usage(format!("invalid --secret {s:?}: no src")))?;
        if !src.is_file() {
            return Err(CliError::Usage(format!("--secret {s:?}: {} is not a file", src.display())));
        }
        secrets.insert(id, src);
    }
    let mut ssh = std::collections::BTreeMap::new();
    for s in &a.ssh {
        let (id, paths) = s.split_once('=').unwrap_or((s, ""));
        if id.is_empty() {
            return Err(CliError::Usage(format!("invalid --ssh {s:?}: default|ID[=SOCKET]")));
        }
        // As docker: several paths may be given; berth forwards one agent socket.
        let path = match paths.split(',').find(|p| !p.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => match std::env::var_os("SSH_AUTH_SOCK").filter(|v| !v.is_empty()) {
                Some(v) => PathBuf::from(v),
                None => {
                    return Err(CliError::Usage(format!(
                        "--ssh {s}: invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set"
                    )))
                }
            },
        };
        crate::builder::ssh::check_agent(&path).map_err(|e| CliError::Usage(format!("--ssh {s}: {e}")))?;
        ssh.insert(id.to_string(), path);
    }
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    for t in &a.tags {
        normalise(t).map_err(|e| CliError::Usage(format!("invalid tag {t:?}: {e}")))?;
    }
    let epoch = build_args
        .iter()
        .rev()
        .find(|(k, _)| k == "SOURCE_DATE_EPOCH")
        .and_then(|(_, v)| v.clone())
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok().filter(|v| !v.is_empty()));
    let source_date_epoch = match epoch {
        Some(e) => Some(e.parse::<i64>().map_err(|_| CliError::Usage(format!("invalid SOURCE_DATE_EPOCH {e:?}")))?),
        None => None,
    };
    Ok(BuildRequest {
        context: Some(context),
        dockerfile: Some(dockerfile),
        tags: a.tags,
        build_args,
        target: a.target,
        no_cache: a.no_cache,
        pull: a.pull,
        network,
        secrets,
        ssh,
        labels,
        iidfile: a.iidfile,
        progress,
        source_date_epoch,
        data_root: data_root.to_path_buf(),
        runtime_root: runtime_root.to_path_buf(),
        keep_signal_handlers: false,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Push(#[from] super::push::PushError),
    #[error(transparent)]
    Save(#[from] super::save::SaveError),
    #[error(transparent)]
    History(#[from] super::history::HistoryError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Import(#[from] super::import::ImportError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("layer {blob}: {source}")]
    Unpack { blob: Digest, source: UnpackError },
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("{0}")]
    Usage(String),
    #[error("image store check: {0} problem(s) found")]
    CheckFailed(usize),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CliError + 'a {
    move |source| CliError::Io { op, path: path.to_path_buf(), source }
}

pub fn run(data_root: &Path, cmd: ImageCmd) -> Result<(), CliError> {
    let store = Store::open(data_root)?;
    match cmd {
        ImageCmd::Load { input, quiet: _ } => {
            let mut out = io::stdout().lock();
            archive::load(&store, &input, &mut out)?;
            Ok(())
        }
        ImageCmd::Import { change, message, source, reference } => {
            let id = super::import::import(&store, &source, reference.as_deref(), &change, message.as_deref())?;
            println!("{id}");
            Ok(())
        }
        ImageCmd::Pull { platform, insecure, tls_ca, authfile, quiet, reference } => {
            let (r, canonical) = normalise(&reference)?;
            let platform = platform.as_deref().map(pull::parse_platform).transpose()?;
            let client = Client::new(ClientOptions { insecure, tls_ca, auth_file: authfile, credentials: None })?;
            pull::pull(&store, &client, &r, &PullOptions { platform, quiet })?;
            crate::events::record(data_root, "image", "pull", familiar(&canonical), "");
            Ok(())
        }
        ImageCmd::Push { all_tags, insecure, tls_ca, authfile, quiet, reference } => {
            let client = Client::new(ClientOptions { insecure, tls_ca, auth_file: authfile, credentials: None })?;
            super::push::push(&store, &client, &reference, &super::push::PushOptions { quiet, all_tags })?;
            if quiet {
                // docker prints the reference pushed (with :latest added unless --all-tags).
                let (r, canonical) = normalise(&reference)?;
                if all_tags {
                    println!("{}/{}", r.registry, r.repository);
                } else {
                    println!("{canonical}");
                }
            }
            Ok(())
        }
        ImageCmd::Save { output, images } => Ok(super::save::save(&store, &images, output.as_deref())?),
        ImageCmd::History { quiet, no_trunc, human, format, image } => {
            Ok(super::history::history(&store, &image, quiet, no_trunc, human, format.as_deref())?)
        }
        ImageCmd::Ls { all, quiet, digests, format, no_trunc } => {
            let hide = if all { BTreeSet::new() } else { crate::builder::step_images(data_root) };
            ls(&store, &hide, quiet, digests, format.as_deref(), no_trunc)
        }
        ImageCmd::Inspect { format, images } => inspect(&store, &images, format.as_deref()),
        ImageCmd::Tag { source, target } => {
            tag(&store, &source, &target)?;
            crate::events::record(data_root, "image", "tag", &source, &target);
            Ok(())
        }
        ImageCmd::Rm { force, images } => rm(&store, &images, force),
        ImageCmd::Prune { all, force: _ } => prune(&store, all),
        ImageCmd::Check => check(&store),
        ImageCmd::Unpack { image, dir } => unpack_flat(&store, &image, &dir),
        ImageCmd::Mount { image, dir } => mount(&store, &image, &dir),
        ImageCmd::Umount { dir } => umount(&store, &dir),
        ImageCmd::Build(_) => Err(CliError::Usage("image build needs the runtime root".into())),
    }
}

/// Docker's size format: three significant digits, decimal units ("4.26MB").
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 999.5 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    let s = if v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}{}", units[u])
}

/// Docker's "2 weeks" style of a duration in seconds.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let minutes = s / 60;
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", s / 3600 / 24 / 365)
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Seconds since the epoch of an RFC 3339 time ("2024-01-02T03:04:05.123Z", "...+01:00").
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(|c| c.is_ascii_digit()).count();
        rest = &r[n..];
    }
    let off = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600 + rest.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off)
}

/// "2024-01-02 03:04:05 +0000 UTC", as docker prints CreatedAt.
pub fn format_utc(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    let s = t.rem_euclid(86400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC", s / 3600, s / 60 % 60, s % 60)
}

pub struct Row {
    pub repo: String,
    pub tag: String,
    pub digest: String,
    pub id: Digest,
    pub created: Option<i64>,
    pub size: u64,
}

pub fn rows(index: &StoreIndex) -> Vec<Row> {
    let mut out = Vec::new();
    for (m, rec) in &index.images {
        let created = rec.created.as_deref().and_then(parse_rfc3339);
        let names = index.names_of(m);
        let digest_of = |repo: &str| {
            rec.repo_digests
                .iter()
                .find_map(|rd| rd.split_once('@').filter(|(r, _)| *r == repo).map(|(_, d)| d.to_string()))
                .unwrap_or_else(|| "<none>".into())
        };
        if names.is_empty() {
            let digest = rec
                .repo_digests
                .first()
                .and_then(|rd| rd.split_once('@').map(|(_, d)| d.to_string()))
                .unwrap_or_else(|| "<none>".into());
            out.push(Row {
                repo: "<none>".into(),
                tag: "<none>".into(),
                digest,
                id: rec.config.clone(),
                created,
                size: rec.size,
            });
        }
        for n in names {
            let (repo, tag, dg) = split_name(&n);
            let digest = dg.map(str::to_string).unwrap_or_else(|| digest_of(repo));
            out.push(Row {
                repo: familiar(repo).to_string(),
                tag: tag.unwrap_or("<none>").to_string(),
                digest,
                id: rec.config.clone(),
                created,
                size: rec.size,
            });
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.repo.cmp(&b.repo)).then_with(|| a.tag.cmp(&b.tag)));
    out
}

fn ls(
    store: &Store,
    hide: &BTreeSet<Digest>,
    quiet: bool,
    digests: bool,
    format: Option<&str>,
    no_trunc: bool,
) -> Result<(), CliError> {
    let mut index = store.read_index()?;
    index.images.retain(|m, _| !hide.contains(m) || !index.refs.values().all(|r| r != m));
    let rows = rows(&index);
    let mut out = io::stdout().lock();
    let idstr = |d: &Digest| if no_trunc { d.to_string() } else { d.short().to_string() };
    if quiet {
        let mut seen = BTreeSet::new();
        for r in &rows {
            if seen.insert(r.id.clone()) {
                let _ = writeln!(out, "{}", idstr(&r.id));
            }
        }
        return Ok(());
    }
    let now = super::store::now_secs() as i64;
    let since = |c: Option<i64>| c.map(|t| format!("{} ago", human_duration(now - t))).unwrap_or_else(|| "N/A".into());
    match format {
        None | Some("table") => {
            let mut table: Vec<Vec<String>> = Vec::new();
            let mut head = vec!["REPOSITORY", "TAG"];
            if digests {
                head.push("DIGEST");
            }
            head.extend(["IMAGE ID", "CREATED", "SIZE"]);
            table.push(head.iter().map(|s| s.to_string()).collect());
            for r in &rows {
                let mut line = vec![r.repo.clone(), r.tag.clone()];
                if digests {
                    line.push(r.digest.clone());
                }
                line.extend([idstr(&r.id), since(r.created), human_size(r.size)]);
                table.push(line);
            }
            let cols = table[0].len();
            let widths: Vec<usize> =
                (0..cols).map(|c| table.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
            for l in &table {
                let mut s = String::new();
                for (c, cell) in l.iter().enumerate() {
                    if c + 1 == cols {
                        s.push_str(cell);
                    } else {
                        s.push_str(&format!("{cell:<w$}   ", w = widths[c]));
                    }
                }
                let _ = writeln!(out, "{}", s.trim_end());
            }
        }
        Some(f) => {
            let mut views = Vec::new();
            for r in &rows {
                let v = serde_json::json!({
                    "Containers": "N/A",
                    "CreatedAt": r.created.map(format_utc).unwrap_or_default(),
                    "CreatedSince": since(r.created),
                    "Digest": r.digest,
                    "ID": idstr(&r.id),
                    "Repository": r.repo,
                    "SharedSize": "N/A",
                    "Size": human_size(r.size),
                    "Tag": r.tag,
                    "UniqueSize": "N/A",
                    "VirtualSize": human_size(r.size),
                });
                views.push(v);
            }
            let names = [
                ("Repository", "REPOSITORY"),
                ("Tag", "TAG"),
                ("ID", "IMAGE ID"),
                ("CreatedSince", "CREATED"),
                ("CreatedAt", "CREATED AT"),
                ("Size", "SIZE"),
                ("Digest", "DIGEST"),
            ]
            .into_iter()
            .collect();
            let text = crate::template::render_rows(f, &views, &names).map_err(|e| CliError::Usage(e.to_string()))?;
            let _ = out.write_all(text.as_bytes());
        }
    }
    Ok(())
}

pub fn inspect_json(img: &Image) -> serde_json::Value {
    let c = &img.config;
    let repo_tags: Vec<&str> = img.names.iter().filter(|n| !n.contains('@')).map(|n| familiar(n)).collect();
    let mut repo_digests: Vec<String> = img.repo_digests.iter().map(|n| familiar(n).to_string()).collect();
    for n in img.names.iter().filter(|n| n.contains('@')) {
        let f = familiar(n).to_string();
        if !repo_digests.contains(&f) {
            repo_digests.push(f);
        }
    }
    let mut v = serde_json::json!({
        "Id": img.config_digest.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": c.extra.get("comment").cloned().unwrap_or(serde_json::Value::String(String::new())),
        "Created": c.created.clone().unwrap_or_default(),
        "Author": c.author.clone().unwrap_or_default(),
        "Config": c.config,
        "Architecture": c.architecture,
        "Os": c.os,
        "Size": img.size,
        "RootFS": { "Type": if c.rootfs.kind.is_empty() { "layers" } else { c.rootfs.kind.as_str() }, "Layers": c.rootfs.diff_ids },
        "Descriptor": {
            "mediaType": "",
            "digest": img.manifest_digest.to_string(),
        },
    });
    if let Some(var) = &c.variant {
        v["Variant"] = serde_json::Value::String(var.clone());
    }
    v
}

fn inspect(store: &Store, queries: &[String], format: Option<&str>) -> Result<(), CliError> {
    let tmpl = format
        .map(|f| crate::template::Template::parse(if f == "json" { "{{json .}}" } else { f }))
        .transpose()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let index = store.read_index()?;
    let mut found = Vec::new();
    let mut first_err = None;
    for q in queries {
        match store.resolve_in(&index, q) {
            Ok(img) => {
                let mut v = inspect_json(&img);
                if let Ok(data) = store.read_blob(&img.manifest_digest) {
                    let mt = super::pull::manifest_media_type("", &data);
                    v["Descriptor"]["mediaType"] = serde_json::Value::String(mt);
                    v["Descriptor"]["size"] = serde_json::Value::from(data.len());
                }
                found.push(v);
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(t) = &tmpl {
        for v in &found {
            println!("{}", t.render(v).map_err(|e| CliError::Usage(e.to_string()))?);
        }
    } else {
        let s = serde_json::to_string_pretty(&serde_json::Value::Array(found)).unwrap_or_else(|_| "[]".into());
        println!("{s}");
    }
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn tag(store: &Store, source: &str, target: &str) -> Result<(), CliError> {
    let (r, name) = normalise(target)?;
    if r.digest.is_some() {
        return Err(CliError::Usage(format!("refusing to create a tag with a digest reference: {target}")));
    }
    let mut il = store.lock_index()?;
    let img = store.resolve_in(&il.index, source)?;
    il.index.set_ref(&name, &img.manifest_digest);
    il.save()?;
    Ok(())
}

/// Who uses image `id`, as conflicts name them.
fn users_of(uses: &[Use], id: &Digest) -> Vec<String> {
    uses.iter().filter(|u| u.id == *id).map(Use::describe).collect()
}

/// What `rm` of one name or id does to the index; returns the lines to print and whether
/// an image was deleted.
pub fn rm_one(
    index: &mut StoreIndex,
    uses: &[Use],
    query: &str,
    force: bool,
) -> Result<(Vec<String>, bool), StoreError> {
    let mut lines = Vec::new();
    let name = if query.starts_with("sha256:") { None } else { normalise(query).ok() };
    if let Some((_, n)) = &name {
        if let Some(m) = index.refs.get(n).cloned() {
            let id = index.images.get(&m).map(|r| r.config.clone());
            let others = index.names_of(&m).into_iter().filter(|x| x != n).count();
            let Some(id) = id else {
                index.refs.remove(n);
                lines.push(format!("Untagged: {}", familiar(n)));
                return Ok((lines, false));
            };
            let same_id = index.manifests_of_id(&id).len();
            let users = users_of(uses, &id);
            if others == 0 && same_id == 1 && !users.is_empty() && !force {
                return Err(StoreError::Conflict(format!(
                    "conflict: unable to remove repository reference {query:?} (must force) - {} is using its referenced image {}",
                    users[0],
                    id.short()
                )));
            }
            index.refs.remove(n);
            lines.push(format!("Untagged: {}", familiar(n)));
            if others == 0 && users.is_empty() {
                index.images.remove(&m);
                if same_id == 1 {
                    lines.push(format!("Deleted: {id}"));
                }
                return Ok((lines, true));
            }
            return Ok((lines, false));
        }
    }
    let parsed = name.as_ref().map(|(r, _)| r.clone());
    let m = index.find(query, parsed.as_ref())?;
    let id = index.images.get(&m).map(|r| r.config.clone()).ok_or_else(|| StoreError::NotFound(query.to_string()))?;
    let manifests = index.manifests_of_id(&id);
    let names: Vec<String> = manifests.iter().flat_map(|m| index.names_of(m)).collect();
    let repos: BTreeSet<&str> = names.iter().map(|n| split_name(n).0).collect();
    if repos.len() > 1 && !force {
        return Err(StoreError::Conflict(format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            id.short()
        )));
    }
    let users = users_of(uses, &id);
    if !users.is_empty() && !force {
        return Err(StoreError::Conflict(format!(
            "conflict: unable to delete {} (must be forced) - image is being used by {}",
            id.short(),
            users[0]
        )));
    }
    for n in &names {
        index.refs.remove(n);
        lines.push(format!("Untagged: {}", familiar(n)));
    }
    if !users.is_empty() {
        return Ok((lines, false));
    }
    for m in &manifests {
        index.images.remove(m);
    }
    lines.push(format!("Deleted: {id}"));
    Ok((lines, true))
}

fn rm(store: &Store, queries: &[String], force: bool) -> Result<(), CliError> {
    let mut deleted = false;
    let mut last_err = None;
    for q in queries {
        let mut il = store.lock_index()?;
        let uses = store.uses()?;
        match rm_one(&mut il.index, &uses, q, force) {
            Ok((lines, del)) => {
                il.save()?;
                drop(il);
                for l in lines {
                    println!("{l}");
                }
                deleted |= del;
            }
            Err(e) => {
                if let Some(prev) = last_err.replace(e) {
                    eprintln!("berth: {prev}");
                }
            }
        }
    }
    if deleted {
        store.gc()?;
    }
    match last_err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Manifests `prune` removes: unnamed ones (all with `all`) whose image no one uses.
pub fn prune_set(index: &StoreIndex, uses: &[Use], all: bool) -> Vec<Digest> {
    let used: BTreeSet<&Digest> = uses.iter().map(|u| &u.id).collect();
    index
        .images
        .iter()
        .filter(|(m, rec)| !used.contains(&rec.config) && (all || index.names_of(m).is_empty()))
        .map(|(m, _)| m.clone())
        .collect()
}

fn prune(store: &Store, all: bool) -> Result<(), CliError> {
    let (lines, bytes) = prune_images(store, all)?;
    if !lines.is_empty() {
        println!("Deleted Images:");
        for l in lines {
            println!("{l}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(())
}

/// Removes unused images (dangling ones; `all`: every image no container uses): docker's
/// "untagged: NAME" / "deleted: ID" lines and the bytes the store's clean-up freed.
pub fn prune_images(store: &Store, all: bool) -> Result<(Vec<String>, u64), CliError> {
    let mut il = store.lock_index()?;
    let uses = store.uses()?;
    let gone = prune_set(&il.index, &uses, all);
    let mut lines = Vec::new();
    for m in &gone {
        for n in il.index.names_of(m) {
            il.index.refs.remove(&n);
            lines.push(format!("untagged: {}", familiar(&n)));
        }
        if let Some(rec) = il.index.images.remove(m) {
            if il.index.manifests_of_id(&rec.config).is_empty() {
                lines.push(format!("deleted: {}", rec.config));
            }
        }
    }
    if !gone.is_empty() {
        il.save()?;
    }
    drop(il);
    let st = store.gc()?;
    Ok((lines, st.bytes))
}

/// DIR/config.json for the image as `docker run IMAGE` would run it (`sh` when the image
/// names no command, as `runc spec` does), with the bundle-relative root path `rootfs`.
fn write_config(img: &Image, dir: &Path, rootfs: &Path) -> Result<(), CliError> {
    let mut spec = match bundle::build_spec(&img.config, rootfs, &BundleOptions::default()) {
        Err(BundleError::NoCommand) => {
            let opts = BundleOptions { args: Some(vec!["sh".to_string()]), ..Default::default() };
            bundle::build_spec(&img.config, rootfs, &opts)?
        }
        r => r?,
    };
    spec["root"]["path"] = serde_json::Value::String("rootfs".into());
    let path = dir.join("config.json");
    let data = serde_json::to_vec_pretty(&spec).unwrap_or_default();
    fs::write(&path, data).map_err(io_err("write", &path))
}

fn empty_or_absent(p: &Path) -> Result<(), CliError> {
    match fs::read_dir(p) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(CliError::Usage(format!("{}: exists and is not empty", p.display())));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(p).map_err(io_err("create", p)),
        Err(e) => Err(CliError::Io { op: "read", path: p.to_path_buf(), source: e }),
    }
}

/// A flat bundle: every layer applied in order straight from its blob.
fn unpack_flat(store: &Store, query: &str, dir: &Path) -> Result<(), CliError> {
    let img = store.resolve(query)?;
    let rootfs = dir.join("rootfs");
    empty_or_absent(&rootfs)?;
    let res = (|| -> Result<(), CliError> {
        for (i, l) in img.layers.iter().enumerate() {
            let f = store.open_blob(&l.digest)?;
            let stats = unpack::unpack_layer(BufReader::with_capacity(256 * 1024, f), &rootfs, WhiteoutMode::Apply)
                .map_err(|source| CliError::Unpack { blob: l.digest.clone(), source })?;
            if let Some(want) = img.config.rootfs.diff_ids.get(i) {
                if stats.diff_id != *want {
                    return Err(StoreError::DiffIdMismatch {
                        blob: l.digest.clone(),
                        expected: want.clone(),
                        got: stats.diff_id,
                    }
                    .into());
                }
            }
        }
        let abs = fs::canonicalize(&rootfs).map_err(io_err("resolve", &rootfs))?;
        write_config(&img, dir, &abs)
    })();
    if res.is_err() {
        let _ = fs::remove_dir_all(&rootfs);
    }
    res
}

fn mount_user(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    format!("mount-{}", &Digest::of(dir.as_os_str().as_bytes()).hex()[..32])
}

fn mount(store: &Store, query: &str, dir: &Path) -> Result<(), CliError> {
    let img = store.resolve(query)?;
    store.ensure_snapshots(&img)?;
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let dir = fs::canonicalize(dir).map_err(io_err("resolve", dir))?;
    let (rootfs, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
    for p in [&upper, &work] {
        if p.exists() {
            return Err(CliError::Usage(format!("{}: exists (already mounted? see berth image umount)", p.display())));
        }
    }
    empty_or_absent(&rootfs)?;
    let user = mount_user(&dir);
    store.add_use(img.id(), &user, &format!("image mount at {}", dir.display()))?;
    let res = (|| -> Result<(), CliError> {
        bundle::mount_rootfs(&store.snapshot_dirs(&img), &upper, &work, &rootfs)?;
        write_config(&img, &dir, &rootfs)
    })();
    if res.is_err() {
        let _ = teardown(&dir);
        let _ = store.remove_use(&user);
    }
    res
}

/// Unmounts DIR/rootfs and removes it with DIR/upper, DIR/work and DIR/config.json.
fn teardown(dir: &Path) -> Result<(), CliError> {
    let rootfs = dir.join("rootfs");
    bundle::unmount_rootfs(&rootfs)?;
    // Still another filesystem there (mounted twice?): leave it alone.
    let dev = |p: &Path| fs::metadata(p).map(|m| m.dev());
    if let (Ok(a), Ok(b)) = (dev(dir), dev(&rootfs)) {
        if a != b {
            return Err(CliError::Usage(format!("{}: still a mount point after unmounting", rootfs.display())));
        }
    }
    // rootfs is an empty mount point now, or a copy of the layers (no overlay support).
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    bundle::remove_dirs(&[&upper, &work, &rootfs])?;
    let cfg = dir.join("config.json");
    match fs::remove_file(&cfg) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CliError::Io { op: "remove", path: cfg, source: e }),
        _ => Ok(()),
    }
}

fn umount(store: &Store, dir: &Path) -> Result<(), CliError> {
    let dir = fs::canonicalize(dir).map_err(io_err("resolve", dir))?;
    teardown(&dir)?;
    store.remove_use(&mount_user(&dir))?;
    Ok(())
}

fn check(store: &Store) -> Result<(), CliError> {
    let r = super::check::check(store)?;
    let mut out = io::stdout().lock();
    for l in r.problems.iter().chain(&r.garbage) {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(
        out,
        "{} blobs re-hashed, {} snapshots, {} images: {} problem(s), {} garbage (removed by image prune)",
        r.blobs,
        r.snapshots,
        r.images,
        r.problems.len(),
        r.garbage.len()
    );
    if r.problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::CheckFailed(r.problems.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::ImageRecord;

    #[test]
    fn formats() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(4_261_226), "4.26MB");
        assert_eq!(human_size(128_000), "128kB");
        assert_eq!(human_size(1_200_000_000), "1.2GB");
        assert_eq!(human_size(4_000_000), "4MB");
        assert_eq!(human_size(12_345), "12.3kB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(15 * 86400), "2 weeks");
        assert_eq!(human_duration(800 * 86400), "2 years");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-03-01T12:00:00.123456789Z"), Some(1709294400));
        assert_eq!(parse_rfc3339("2024-03-01T13:00:00+01:00"), Some(1709294400));
        assert_eq!(parse_rfc3339("nope"), None);
        assert_eq!(format_utc(1709294400), "2024-03-01 12:00:00 +0000 UTC");
    }

    fn rec(config: &Digest) -> ImageRecord {
        ImageRecord {
            config: config.clone(),
            layers: vec![],
            chain_ids: vec![],
            created: Some("2024-03-01T12:00:00Z".into()),
            size: 10,
            repo_digests: vec![],
            extra_blobs: vec![],
            added: 1,
        }
    }

    #[test]
    fn rm_rules() {
        let (m1, c1) = (Digest::of(b"m1"), Digest::of(b"c1"));
        let mut ix = StoreIndex::default();
        ix.add_image(&m1, rec(&c1));
        ix.set_ref("docker.io/library/a:1", &m1);
        ix.set_ref("docker.io/library/a:2", &m1);
        ix.set_ref("docker.io/library/b:1", &m1);
        // Untag while other names remain.
        let (l, del) = rm_one(&mut ix, &[], "a:1", false).unwrap();
        assert_eq!((l, del), (vec!["Untagged: a:1".to_string()], false));
        // By id with names in two repositories: needs -f.
        assert!(rm_one(&mut ix, &[], c1.short(), false).is_err());
        // In use: the last name cannot go without -f.
        let uses = vec![Use {
            user: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string(),
            id: c1.clone(),
            note: String::new(),
        }];
        rm_one(&mut ix, &uses, "a:2", false).unwrap();
        let e = rm_one(&mut ix, &uses, "b:1", false).unwrap_err().to_string();
        assert!(e.contains("container 0123456789ab is using"), "{e}");
        // Forced: untagged, kept (dangling) while used.
        let (_, del) = rm_one(&mut ix, &uses, "b:1", true).unwrap();
        assert!(!del && ix.images.contains_key(&m1) && ix.refs.is_empty());
        assert!(prune_set(&ix, &uses, true).is_empty());
        assert_eq!(prune_set(&ix, &[], false), vec![m1.clone()]);
        // Not used any more: rm by id deletes it.
        let (l, del) = rm_one(&mut ix, &[], &c1.to_string(), false).unwrap();
        assert!(del && ix.images.is_empty());
        assert_eq!(l, vec![format!("Deleted: {c1}")]);
        assert!(matches!(rm_one(&mut ix, &[], "a:1", false), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn ls_rows() {
        let (m1, c1) = (Digest::of(b"m1"), Digest::of(b"c1"));
        let mut ix = StoreIndex::default();
        let mut r = rec(&c1);
        r.repo_digests = vec![format!("docker.io/library/busybox@{}", Digest::of(b"idx"))];
        ix.add_image(&m1, r);
        ix.set_ref("docker.io/library/busybox:latest", &m1);
        ix.add_image(&Digest::of(b"m2"), rec(&Digest::of(b"c2")));
        let rs = rows(&ix);
        assert_eq!(rs.len(), 2);
        let b = rs.iter().find(|r| r.repo == "busybox").unwrap();
        assert_eq!((b.tag.as_str(), b.digest.clone()), ("latest", Digest::of(b"idx").to_string()));
        assert!(rs.iter().any(|r| r.repo == "<none>" && r.tag == "<none>"));
    }
}
