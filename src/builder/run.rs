//! A RUN step: a container of berth's own runtime (the library's create/start/wait) over
//! the step's overlay mount, with the stage's config (env, user, workdir), the build's
//! network, and the step's `--mount`s. Its output goes to the build's stderr.

use super::BuildError;
use crate::image::bundle::{self, BundleOptions, EtcFiles, MountSpec, NetworkNs};
use crate::image::types::ImageConfig;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What a RUN container gets.
pub struct RunContainer<'a> {
    pub id: String,
    pub runtime_root: &'a Path,
    /// The step's scratch dir (bundle, /etc files).
    pub dir: &'a Path,
    /// The mounted root.
    pub rootfs: &'a Path,
    pub config: &'a ImageConfig,
    pub argv: Vec<String>,
    /// The full environment.
    pub env: Vec<String>,
    pub network: super::Network,
    /// The build's sandbox on the default network (`Network::Default`).
    pub sandbox: Option<&'a Sandbox>,
    pub mounts: Vec<MountSpec>,
    pub tmpfs: Vec<(String, String)>,
}

/// The build's network sandbox: one namespace on the engine's default bridge network (with
/// its DNS, as a container gets it) that every RUN of the build joins; detached when dropped.
pub struct Sandbox {
    data_root: PathBuf,
    id: String,
    pub netns: PathBuf,
    pub hosts: String,
    pub resolv: String,
}

impl Sandbox {
    pub fn attach(data_root: &Path, id: &str, hostname: &str) -> Result<Sandbox, BuildError> {
        use crate::network::{attach, AttachRequest, DnsOptions, NetMode};
        let req = AttachRequest {
            container_id: id.to_string(),
            name: String::new(),
            mode: NetMode::Bridge,
            networks: Vec::new(),
            ports: Vec::new(),
            dns: DnsOptions::default(),
            extra_hosts: Vec::new(),
            hostname: hostname.to_string(),
        };
        let a = match attach(data_root, &req) {
            Ok(a) => a,
            Err(e) => {
                let _ = crate::network::detach(data_root, id);
                return Err(BuildError::Invalid(format!("the build's network: {e}")));
            }
        };
        let mut sb = Sandbox {
            data_root: data_root.to_path_buf(),
            id: id.to_string(),
            netns: PathBuf::new(),
            hosts: a.hosts,
            resolv: a.resolv_conf,
        };
        match a.netns_path {
            Some(p) => {
                sb.netns = p;
                Ok(sb)
            }
            None => Err(BuildError::Invalid("the build's network: no network namespace".into())),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = crate::network::detach(&self.data_root, &self.id);
    }
}

/// Points fds 0, 1 (and 2 when quiet) elsewhere while a build runs containers: they get no
/// stdin and their output goes to the build's stderr.
pub struct Redirect(Vec<(i32, OwnedFd)>);

impl Redirect {
    pub fn new(quiet: bool) -> Redirect {
        let mut saved = Vec::new();
        let null = fs::OpenOptions::new().read(true).write(true).open("/dev/null").ok();
        let mut point = |fd: i32, to: i32| {
            // SAFETY: dup of a descriptor this process owns; checked.
            let old = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
            if old >= 0 {
                // SAFETY: both descriptors are valid.
                unsafe { libc::dup2(to, fd) };
                // SAFETY: `old` is a new descriptor that nothing else owns.
                saved.push((fd, unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(old) }));
            }
        };
        if let Some(n) = &null {
            point(0, n.as_raw_fd());
            if quiet {
                point(1, n.as_raw_fd());
                point(2, n.as_raw_fd());
            } else {
                point(1, 2);
            }
        }
        Redirect(saved)
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        for (fd, old) in self.0.drain(..).rev() {
            // SAFETY: both descriptors are valid.
            unsafe { libc::dup2(old.as_raw_fd(), fd) };
        }
    }
}

/// The paths the runtime mounts over (created in the rootfs when missing, and so in the
/// step's upper dir): removed again after the run when they were made for it.
pub fn mount_points(spec: &serde_json::Value) -> Vec<String> {
    spec.pointer("/mounts")
        .and_then(|m| m.as_array())
        .map(|a| a.iter().filter_map(|m| m.get("destination")?.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Runs the container; returns its exit code, and the mount points that did not exist
/// before (to be removed from the layer when still empty).
pub fn run(c: &RunContainer) -> Result<(i32, Vec<String>), BuildError> {
    let bundle_dir = c.dir.join("bundle");
    fs::create_dir_all(&bundle_dir).map_err(super::io_err("create", &bundle_dir))?;
    let etc = c.dir.join("etc");
    fs::create_dir_all(&etc).map_err(super::io_err("create", &etc))?;
    let hostname = "buildkitsandbox";
    let hosts = etc.join("hosts");
    let mut hosts_text = format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let resolv = etc.join("resolv.conf");
    let resolv_text = match (c.network, c.sandbox) {
        (super::Network::None, _) => String::new(),
        (super::Network::Default, Some(s)) => {
            hosts_text = s.hosts.clone();
            s.resolv.clone()
        }
        _ => {
            if let Ok(h) = fs::read_to_string("/etc/hosts") {
                hosts_text.push_str(&h);
            }
            fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        }
    };
    fs::write(&hosts, hosts_text).map_err(super::io_err("write", &hosts))?;
    fs::write(&resolv, resolv_text).map_err(super::io_err("write", &resolv))?;
    let hn = etc.join("hostname");
    fs::write(&hn, format!("{hostname}\n")).map_err(super::io_err("write", &hn))?;
    let opts = BundleOptions {
        args: Some(c.argv.clone()),
        entrypoint: Some(Vec::new()),
        env: c.env.clone(),
        hostname: Some(hostname.to_string()),
        netns: match (c.network, c.sandbox) {
            (super::Network::None, _) => NetworkNs::New,
            (super::Network::Default, Some(s)) => NetworkNs::Path(s.netns.clone()),
            _ => NetworkNs::Host,
        },
        etc_files: Some(EtcFiles { hostname: Some(hn), hosts: Some(hosts), resolv_conf: Some(resolv) }),
        mounts: c.mounts.clone(),
        tmpfs: c.tmpfs.clone(),
        ..Default::default()
    };
    // The image's Env is replaced by the full environment given.
    let mut img = c.config.clone();
    img.config.env = Some(Vec::new());
    let mut spec = bundle::build_spec(&img, c.rootfs, &opts).map_err(|e| BuildError::Invalid(e.to_string()))?;
    // With userns-remap a RUN step runs in the user namespace containers get.
    if let Some(m) = crate::remap::active() {
        m.apply(&mut spec);
    }
    let made: Vec<String> = mount_points(&spec)
        .into_iter()
        .filter(|d| fs::symlink_metadata(c.rootfs.join(d.trim_start_matches('/'))).is_err())
        .collect();
    bundle::ensure_workdir(c.rootfs, &spec).map_err(|e| BuildError::Invalid(e.to_string()))?;
    bundle::write_config(&bundle_dir, &spec).map_err(|e| BuildError::Invalid(e.to_string()))?;
    let g = berth::Globals {
        root: c.runtime_root.to_path_buf(),
        systemd_cgroup: false,
        debug: false,
        rootless: berth::use_rootless_cgroups(None, false),
    };
    let o = berth::CreateOpts {
        id: c.id.clone(),
        bundle: bundle_dir.clone(),
        console_socket: None,
        pid_file: None,
        no_pivot: false,
        no_new_keyring: false,
        preserve_fds: 0,
    };
    let code = run_and_wait(&g, &o);
    let _ = berth::delete(&g, &c.id, true);
    match code {
        Ok(code) => Ok((code, made)),
        Err(e) => Err(e),
    }
}

/// create, start, and wait for the container's init. A SIGINT/SIGTERM/SIGHUP to the build
/// (see `exec::catch_signals`) interrupts the wait: the container is killed and the build
/// stops.
fn run_and_wait(g: &berth::Globals, o: &berth::CreateOpts) -> Result<i32, BuildError> {
    super::exec::interrupted()?;
    let created = berth::create(g, o).map_err(|e| BuildError::Invalid(format!("create container: {e}")))?;
    let pid = created.saved.pid;
    drop(created.dir);
    berth::start(g, &o.id).map_err(|e| BuildError::Invalid(format!("start container: {e}")))?;
    let mut killed = false;
    // Polled (not a blocking wait): several stages' RUNs may wait at once in threads, and each
    // must see an interruption.
    let mut nap = std::time::Duration::from_micros(200);
    loop {
        if super::exec::interrupted().is_err() && !killed {
            let _ = berth::kill(g, &o.id, libc::SIGKILL, true);
            killed = true;
        }
        let mut st = 0;
        // SAFETY: waiting for the container's init, a child of this process.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        if r == 0 {
            std::thread::sleep(nap);
            nap = (nap * 2).min(std::time::Duration::from_millis(20));
            continue;
        }
        if r == pid {
            if killed {
                return Err(BuildError::Interrupted);
            }
            if libc::WIFEXITED(st) {
                return Ok(libc::WEXITSTATUS(st));
            }
            if libc::WIFSIGNALED(st) {
                return Ok(128 + libc::WTERMSIG(st));
            }
            continue;
        }
        let e = std::io::Error::last_os_error();
        if r < 0 && e.raw_os_error() != Some(libc::EINTR) {
            return Err(BuildError::Invalid(format!("wait for the container's init {pid}: {e}")));
        }
    }
}

/// Removes from `upper` the mount points listed (and the parents made with them) when they
/// are empty: what the runtime created only to mount over. The step's container may have
/// replaced any of those directories with a symlink: each parent is opened beneath `upper`
/// without following symlinks (`openat2` RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so a removal
/// never lands outside the upper dir; a path that does not resolve that way is left alone.
pub fn remove_mount_points(upper: &Path, made: &[String]) {
    let weak = berth::faults::weakened("build-upper-beneath");
    let Ok(root) = fs::File::open(upper).map(OwnedFd::from) else { return };
    let mut made: Vec<&String> = made.iter().collect();
    made.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for d in made {
        let Some(mut rel) = super::fsops::clean_rel(d) else { continue };
        while !rel.is_empty() {
            let (parent, name) = match rel.rsplit_once('/') {
                Some((p, n)) => (p.to_string(), n.to_string()),
                None => (String::new(), rel.clone()),
            };
            // The parent directory's descriptor: it must stay open while its path is used.
            let dir: OwnedFd;
            let p: PathBuf = if weak {
                // Weakened (debug builds only, for the breakout tests): resolved as the host
                // resolves it, through any symlink the container left.
                upper.join(&rel)
            } else {
                let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
                let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
                let Ok(fd) = super::fsops::openat2(&root, &parent, flags, resolve) else { break };
                dir = fd;
                // The verified directory's descriptor path, then the last component (lstat,
                // rmdir and unlink do not follow it).
                super::fsops::fd_path(&dir).join(&name)
            };
            let Ok(m) = fs::symlink_metadata(&p) else { break };
            let ok = if m.is_dir() {
                // An opaque dir stands for a deletion of the lower dir's content: kept.
                !crate::image::upper_layer::is_opaque_dir(&p) && fs::remove_dir(&p).is_ok()
            } else if m.is_file() && m.len() == 0 {
                fs::remove_file(&p).is_ok()
            } else {
                false
            };
            if !ok {
                break;
            }
            rel = parent;
        }
    }
}
