//! The one place where the container layer calls the other layers: the image store, the
//! network layer, the bundle builder, the shim and the runtime. Everything else in
//! `engine` goes through these functions, so a change of those APIs is fixed here.

use super::opts::RunSpec;
use super::store::{NetInfo, Record};
use super::{Engine, EngineError};
use crate::image::bundle::{self, BundleOptions, DeviceSpec, EtcFiles, MountSpec, NetworkNs, Rlimit, SeccompChoice};
use crate::image::types::{ImageConfig, RunConfig};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Image store

/// What a container needs of its image.
pub struct ImageInfo {
    /// "sha256:<config digest>"
    pub id: String,
    pub lowers: Vec<PathBuf>,
    pub config: RunConfig,
}

fn image_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Image(e.to_string())
}

/// Finds `name` in the store; pulls it when missing (policy "missing") or always ("always").
pub fn resolve_image(
    e: &Engine,
    name: &str,
    pull: &str,
    quiet: bool,
    platform: Option<&str>,
) -> Result<ImageInfo, EngineError> {
    use crate::image::store::{Store, StoreError};
    let store = Store::open(&e.data_root).map_err(image_err)?;
    if !matches!(pull, "missing" | "never" | "always") {
        return Err(EngineError::Invalid(format!("invalid --pull {pull:?} (missing, never or always)")));
    }
    let found = if pull == "always" { Err(StoreError::NotFound(name.to_string())) } else { store.resolve(name) };
    let img = match found {
        Ok(i) => i,
        Err(StoreError::NotFound(_)) if pull != "never" => {
            // The manifest just pulled, whatever the name points at by now.
            let manifest = pull_image(&store, name, quiet, platform)?;
            store.resolve(&manifest.to_string()).map_err(image_err)?
        }
        Err(StoreError::NotFound(_)) => {
            return Err(EngineError::Image(format!("unable to find image {name:?} locally")))
        }
        Err(err) => return Err(image_err(err)),
    };
    if let Some(p) = platform {
        let want = crate::image::pull::parse_platform(p).map_err(image_err)?;
        let have = (img.config.os.as_str(), img.config.architecture.as_str());
        if (want.os.as_str(), want.architecture.as_str()) != have {
            return Err(EngineError::Image(format!(
                "image with reference {name} was found but its platform ({}/{}) does not match the specified platform ({p})",
                have.0, have.1
            )));
        }
    }
    store.ensure_snapshots(&img).map_err(image_err)?;
    let lowers = store.snapshot_dirs(&img);
    Ok(ImageInfo { id: img.config_digest.to_string(), lowers, config: img.config.config })
}

/// `image pull` with docker's defaults; its progress goes to stderr (stdout may carry the
/// container id of `run -d`).
fn pull_image(
    store: &crate::image::store::Store,
    name: &str,
    quiet: bool,
    platform: Option<&str>,
) -> Result<crate::image::digest::Digest, EngineError> {
    use crate::image::pull::{self, PullOptions};
    use crate::image::registry::{Client, ClientOptions};
    let (r, _) = crate::image::store::normalise(name).map_err(image_err)?;
    let client = Client::new(ClientOptions { insecure: false, tls_ca: None, auth_file: None, credentials: None })
        .map_err(|err| {
            EngineError::Image(format!("unable to find image {name:?} locally, and pulling it failed: {err}"))
        })?;
    let _redirect = StdoutToStderr::new();
    let platform = platform.map(pull::parse_platform).transpose().map_err(image_err)?;
    pull::pull(store, &client, &r, &PullOptions { platform, quiet }).map_err(|err| {
        EngineError::Image(format!("unable to find image {name:?} locally, and pulling it failed: {err}"))
    })
}

/// Points fd 1 at stderr until dropped.
struct StdoutToStderr(Option<OwnedFd>);

impl StdoutToStderr {
    fn new() -> StdoutToStderr {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: dup/dup2 of the standard descriptors; the saved copy is owned below.
        let saved = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
        if saved < 0 {
            return StdoutToStderr(None);
        }
        // SAFETY: as above.
        unsafe { libc::dup2(2, 1) };
        // SAFETY: `saved` is a fresh descriptor owned by nobody else.
        StdoutToStderr(Some(unsafe { OwnedFd::from_raw_fd(saved) }))
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if let Some(fd) = &self.0 {
            // SAFETY: restores fd 1 from the saved copy.
            unsafe { libc::dup2(fd.as_raw_fd(), 1) };
        }
    }
}

/// Records that container `id` uses image `image_id` (so `image rm` refuses it).
pub fn image_use_add(e: &Engine, image_id: &str, id: &str) -> Result<(), EngineError> {
    let store = crate::image::store::Store::open(&e.data_root).map_err(image_err)?;
    let d = crate::image::digest::Digest::parse(image_id).map_err(image_err)?;
    store.add_use(&d, id, "container").map_err(image_err)
}

pub fn image_use_remove(e: &Engine, id: &str) {
    if let Ok(store) = crate::image::store::Store::open(&e.data_root) {
        let _ = store.remove_use(id);
    }
}

fn image_config(c: &RunConfig) -> ImageConfig {
    ImageConfig { config: c.clone(), ..Default::default() }
}

/// The image's VOLUME paths.
pub fn image_volumes(c: &RunConfig) -> Vec<String> {
    bundle::image_volumes(&image_config(c))
}

/// The process's argv (entrypoint + cmd), or docker's "no command specified".
pub fn process_args(c: &RunConfig, spec: &RunSpec) -> Result<Vec<String>, EngineError> {
    let opts =
        BundleOptions { args: Some(spec.cmd.clone()), entrypoint: spec.entrypoint.clone(), ..Default::default() };
    bundle::process_args(&image_config(c), &opts).map_err(|e| EngineError::Invalid(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Network

use crate::network::{self, AttachRequest, DnsOptions, NetMode, NetRequest, PortMapping};

pub fn parse_port(s: &str) -> Result<(), EngineError> {
    PortMapping::parse(s).map(drop).map_err(EngineError::Invalid)
}

/// What a start gets from the network layer.
pub struct NetSetup {
    pub netns: NetworkNs,
    pub hosts: String,
    pub resolv_conf: String,
    pub hostname: String,
    pub info: NetInfo,
}

fn net_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Network(e.to_string())
}

fn ports_of(rec: &Record) -> Result<Vec<PortMapping>, EngineError> {
    let mut ports = Vec::new();
    for p in &rec.spec.publish {
        ports.extend(PortMapping::parse(p).map_err(EngineError::Invalid)?);
    }
    if rec.spec.publish_all {
        let mut exposed = bundle::exposed_ports(&image_config(&rec.image_config));
        for e in &rec.spec.expose {
            let (p, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
            let (lo, hi) = p.split_once('-').unwrap_or((p, p));
            if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) {
                exposed.extend((lo..=hi).map(|x| (x, proto.to_string())));
            }
        }
        for (port, proto) in exposed {
            if ports.iter().any(|m: &PortMapping| m.container_port == port && m.protocol.as_str() == proto) {
                continue;
            }
            if let Ok(m) = PortMapping::parse(&format!("{port}/{proto}")) {
                ports.extend(m);
            }
        }
    }
    Ok(ports)
}

/// The container's hostname: --hostname, else the host's with `--network host`, else the
/// first 12 digits of its id.
pub fn hostname_of(rec: &Record) -> String {
    if let Some(h) = &rec.spec.hostname {
        return h.clone();
    }
    if rec.spec.network == "host" {
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            if !h.trim().is_empty() {
                return h.trim().to_string();
            }
        }
    }
    rec.id[..12].to_string()
}

/// Joins the container to its network(s); undone by [`net_detach`].
pub fn net_attach(e: &Engine, rec: &Record) -> Result<NetSetup, EngineError> {
    let s = &rec.spec;
    let mut networks = Vec::new();
    let ip = s.ip.as_deref().and_then(|i| i.parse().ok());
    let ip6 = s.ip6.as_deref().and_then(|i| i.parse().ok());
    let static_net = |network: &str| NetRequest {
        network: network.to_string(),
        aliases: if network == "bridge" { Vec::new() } else { s.network_aliases.clone() },
        ip,
        ip6,
        mac: s.mac_address.clone(),
    };
    let pinned = ip.is_some() || ip6.is_some() || s.mac_address.is_some();
    let mode = match s.network.as_str() {
        // The first network was disconnected: the others only, or none at all.
        _ if s.network_left && s.connected.is_empty() => NetMode::None,
        _ if s.network_left => NetMode::Bridge,
        "none" => NetMode::None,
        "host" => NetMode::Host,
        "pasta" => NetMode::Pasta,
        "slirp4netns" => NetMode::Slirp4netns,
        "bridge" | "default" => {
            if pinned {
                networks.push(static_net("bridge"));
            }
            NetMode::Bridge
        }
        n => match n.strip_prefix("container:") {
            Some(id) => NetMode::Container(id.to_string()),
            None => {
                networks.push(static_net(n));
                NetMode::Bridge
            }
        },
    };
    if mode == NetMode::Bridge && !s.connected.is_empty() {
        if networks.is_empty() && !s.network_left {
            networks.push(NetRequest { network: network::config::DEFAULT_NETWORK.into(), ..Default::default() });
        }
        for c in &s.connected {
            let ip = c.ip.as_deref().and_then(|i| i.parse().ok());
            networks.push(NetRequest {
                network: c.network.clone(),
                aliases: c.aliases.clone(),
                ip,
                ..Default::default()
            });
        }
    }
    let req = AttachRequest {
        container_id: rec.id.clone(),
        name: rec.name.clone(),
        mode: mode.clone(),
        networks,
        // Published ports went with the first network when it was left and none remains.
        ports: if s.network_left && mode == NetMode::None { Vec::new() } else { ports_of(rec)? },
        dns: DnsOptions { servers: s.dns.clone(), search: s.dns_search.clone(), options: s.dns_options.clone() },
        extra_hosts: s.extra_hosts.clone(),
        hostname: hostname_of(rec),
    };
    let a = network::attach(&e.data_root, &req).map_err(net_err)?;
    let netns = match (&mode, &a.netns_path) {
        (_, Some(p)) => NetworkNs::Path(p.clone()),
        (NetMode::Host, None) => NetworkNs::Host,
        (_, None) => NetworkNs::New,
    };
    let info = net_info(&a);
    let hostname = if a.hostname.is_empty() { hostname_of(rec) } else { a.hostname.clone() };
    Ok(NetSetup { netns, hosts: a.hosts, resolv_conf: a.resolv_conf, hostname, info })
}

/// What the container record keeps of an attachment: the first interface's addresses, the
/// networks in order, the published ports.
fn net_info(a: &network::Attachment) -> NetInfo {
    let first = a.interfaces.first();
    NetInfo {
        ports: a.published(),
        ip: first.map(|i| i.ip.to_string()),
        prefix: first.map(|i| i.prefix),
        gateway: first.and_then(|i| i.gateway.map(|g| g.to_string())),
        mac: first.map(|i| i.mac.clone()),
        networks: a.interfaces.iter().map(|i| i.network.clone()).collect(),
        sandbox: a.netns_path.clone(),
        ip6: first.and_then(|i| i.ip6.map(|a| a.to_string())),
        prefix6: first.map_or(0, |i| i.prefix6),
        gateway6: first.and_then(|i| i.gateway6.map(|g| g.to_string())),
    }
}

/// A running container's network details as its attachment now is (after an interface was
/// added or removed); `was` when it cannot be read.
pub fn net_info_now(e: &Engine, id: &str, was: &NetInfo) -> NetInfo {
    match network::attachment(&e.data_root, id) {
        Ok(Some(a)) => net_info(&a),
        _ => was.clone(),
    }
}

/// Joins a running container to one more network; the network's name and the address.
pub fn net_connect(
    e: &Engine,
    id: &str,
    network: &str,
    aliases: &[String],
    ip: Option<&str>,
) -> Result<String, EngineError> {
    let ip =
        ip.map(|i| i.parse().map_err(|_| EngineError::Invalid(format!("invalid IPv4 address {i:?}")))).transpose()?;
    let req = NetRequest { network: network.to_string(), aliases: aliases.to_vec(), ip, ..Default::default() };
    network::connect(&e.data_root, id, &req).map(|i| i.ip.to_string()).map_err(|err| match err {
        network::NetError::NotFound(n) => EngineError::NoSuchNetwork(n),
        err => net_err(err),
    })
}

/// Takes a running container off a network.
pub fn net_disconnect(e: &Engine, id: &str, network: &str) -> Result<(), EngineError> {
    network::disconnect(&e.data_root, id, network).map_err(net_err)
}

/// Undoes [`net_attach`] (idempotent; works after a crash).
pub fn net_detach(e: &Engine, id: &str) -> Result<(), EngineError> {
    network::detach(&e.data_root, id).map_err(net_err)
}

/// The network namespace of a running container (for `--network container:NAME`).
pub fn net_check_container(e: &Engine, id: &str) -> Result<(), EngineError> {
    network::netns_path(&e.data_root, id).map(|_| ()).map_err(net_err)
}

// ---------------------------------------------------------------------------------------------
// Bundle

pub fn mount_rootfs(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<bool, EngineError> {
    if crate::remap::active().is_some() {
        // The writable layer's root is the remapped root's, as its image layers are.
        std::fs::create_dir_all(upper)
            .and_then(|_| crate::remap::chown_to_root(upper))
            .map_err(|err| EngineError::Io { op: "chown", path: upper.to_path_buf(), err })?;
    }
    match bundle::mount_rootfs(lowers, upper, work, target) {
        Ok(bundle::RootfsKind::Overlay) => Ok(true),
        Ok(bundle::RootfsKind::Copy) => Ok(false),
        Err(err) => Err(EngineError::Bundle(err.to_string())),
    }
}

pub fn unmount_rootfs(target: &Path) -> Result<(), EngineError> {
    bundle::unmount_rootfs(target).map_err(|e| EngineError::Bundle(e.to_string()))
}

/// Writes the container's /etc/{hostname,hosts,resolv.conf} into `dir`.
pub fn write_etc_files(dir: &Path, hostname: &str, hosts: &str, resolv: &str) -> Result<EtcFiles, EngineError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|err| EngineError::Io { op: "create", path: dir.to_path_buf(), err })?;
    let files = EtcFiles {
        hostname: Some(dir.join("hostname")),
        hosts: Some(dir.join("hosts")),
        resolv_conf: Some(dir.join("resolv.conf")),
    };
    for (p, text) in [
        (&files.hostname, format!("{hostname}\n")),
        (&files.hosts, hosts.to_string()),
        (&files.resolv_conf, resolv.to_string()),
    ] {
        let Some(p) = p else { continue };
        std::fs::write(p, text).map_err(|err| EngineError::Io { op: "write", path: p.clone(), err })?;
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644));
    }
    Ok(files)
}

/// Builds config.json for a start (the rootfs must be mounted: users are looked up in it).
pub fn write_spec(
    e: &Engine,
    rec: &Record,
    bundle_dir: &Path,
    rootfs: &Path,
    netns: NetworkNs,
    etc: EtcFiles,
    hostname: &str,
) -> Result<(), EngineError> {
    let s = &rec.spec;
    let berr = |err: bundle::BundleError| EngineError::Invalid(err.to_string());
    let opts = BundleOptions {
        args: Some(s.cmd.clone()).filter(|c| !c.is_empty()),
        entrypoint: s.entrypoint.clone(),
        env: s.env.clone(),
        workdir: s.workdir.clone(),
        user: s.user.clone(),
        group_add: s.group_add.clone(),
        hostname: Some(hostname.to_string()),
        terminal: s.tty,
        read_only: s.read_only,
        privileged: s.privileged,
        cap_add: s.cap_add.clone(),
        cap_drop: s.cap_drop.clone(),
        seccomp: match s.seccomp.as_deref() {
            None => SeccompChoice::Default,
            Some("unconfined") => SeccompChoice::Unconfined,
            Some(p) => SeccompChoice::File(PathBuf::from(p)),
        },
        apparmor: s.apparmor.clone().filter(|a| a != "unconfined"),
        no_new_privileges: s.no_new_privileges,
        mounts: rec
            .mounts
            .iter()
            .map(|m| MountSpec {
                source: m.source.to_string_lossy().into_owned(),
                destination: m.destination.clone(),
                readonly: !m.rw,
                options: m.options.clone(),
            })
            .collect(),
        tmpfs: s.tmpfs.clone(),
        devices: s
            .devices
            .iter()
            .map(|(h, c, p)| DeviceSpec { host: PathBuf::from(h), container: c.clone(), permissions: p.clone() })
            .collect(),
        labels: s.labels.clone(),
        memory: s.memory,
        memory_swap: s.memory_swap,
        cpus: s.cpus,
        pids_limit: s.pids_limit,
        shm_size: s.shm_size,
        netns,
        pid_host: s.pid_host,
        ipc_host: s.ipc_host,
        uts_host: s.uts_host,
        etc_files: Some(etc),
        init: if s.init { Some(e.exe.clone()) } else { None },
        stop_signal: s.stop_signal.clone(),
        sysctls: s.sysctls.clone(),
        rlimits: s.ulimits.iter().map(|(k, a, b)| Rlimit { kind: k.clone(), soft: *a, hard: *b }).collect(),
        oom_score_adj: s.oom_score_adj,
        cgroupns_host: s.cgroupns_host,
        cgroups_path: s.cgroup_parent.as_ref().map(|p| format!("/{}/{}", p.trim_matches('/'), rec.id)),
    };
    let mut spec = bundle::build_spec(&image_config(&rec.image_config), rootfs, &opts).map_err(berr)?;
    if let Some(res) = spec.pointer_mut("/linux/resources").and_then(|r| r.as_object_mut()) {
        super::resources::apply(&s.resources, res);
    }
    if let Some(d) = &s.domainname {
        spec["domainname"] = serde_json::json!(d);
    }
    if !s.annotations.is_empty() {
        if !spec["annotations"].is_object() {
            spec["annotations"] = serde_json::json!({});
        }
        for (k, v) in &s.annotations {
            spec["annotations"][k] = serde_json::json!(v);
        }
    }
    if s.privileged || s.cap_add.iter().any(|c| c.eq_ignore_ascii_case("all")) {
        // "All" can only be what this process may grant (a host may lack some).
        let own = own_caps();
        if let Some(caps) = spec.pointer_mut("/process/capabilities").and_then(|c| c.as_object_mut()) {
            for set in caps.values_mut() {
                if let Some(a) = set.as_array_mut() {
                    a.retain(|c| c.as_str().is_some_and(|c| own.iter().any(|o| o == c)));
                }
            }
        }
    }
    if let (Some(m), false) = (crate::remap::active(), s.userns_host) {
        m.apply(&mut spec);
    }
    if crate::unprivileged::active() {
        if s.userns_keep_id {
            crate::unprivileged::keep_id(&mut spec, s.user.is_none())
                .map_err(|err| EngineError::Invalid(err.to_string()))?;
        }
        crate::unprivileged::adapt_spec(&mut spec);
    }
    if let (Some((h, w)), Some(p)) = (s.console_size, spec.pointer_mut("/process").and_then(|p| p.as_object_mut())) {
        p.insert("consoleSize".into(), serde_json::json!({"height": h, "width": w}));
    }
    bundle::ensure_workdir(rootfs, &spec).map_err(berr)?;
    bundle::write_config(bundle_dir, &spec).map_err(|err| EngineError::Bundle(err.to_string()))
}

/// The capabilities in this process's bounding set.
fn own_caps() -> Vec<String> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string())))
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(u64::MAX);
    bundle::ALL_CAPS.iter().enumerate().filter(|(i, _)| mask & (1u64 << i) != 0).map(|(_, c)| c.to_string()).collect()
}

/// `-u` of exec resolved in the container's rootfs: (uid, gid, additional gids).
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>), EngineError> {
    let u = crate::image::passwd::resolve_in_rootfs(rootfs, user).map_err(|e| EngineError::Invalid(e.to_string()))?;
    Ok((u.uid, u.gid, u.additional_gids))
}

/// The stop signal of a container: --stop-signal, else the image's, else SIGTERM.
pub fn stop_signal(rec: &Record) -> String {
    rec.spec
        .stop_signal
        .clone()
        .or_else(|| rec.image_config.stop_signal.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "SIGTERM".into())
}

// ---------------------------------------------------------------------------------------------
// Shim

pub use crate::shim::{ShimState, Status as ShimStatus};

pub fn shim_config(e: &Engine, rec: &Record, dir: &Path) -> Result<crate::shim::ShimConfig, EngineError> {
    let restart =
        crate::shim::RestartPolicy::parse(&rec.spec.restart).map_err(|err| EngineError::Invalid(err.to_string()))?;
    let on_exit = vec![
        e.exe.to_string_lossy().into_owned(),
        "--root".into(),
        e.root.to_string_lossy().into_owned(),
        "--data-root".into(),
        e.data_root.to_string_lossy().into_owned(),
        "container".into(),
        "cleanup".into(),
        rec.id.clone(),
    ];
    let other = super::runtimes::of_container(&e.data_root, &e.root, &rec.id);
    Ok(crate::shim::ShimConfig {
        id: rec.id.clone(),
        bundle: dir.join("bundle"),
        runtime_root: other.as_ref().map(|o| o.1.clone()).unwrap_or_else(|| e.root.clone()),
        state_dir: dir.to_path_buf(),
        run_dir: crate::unprivileged::shim_dir(&rec.id),
        tty: rec.spec.tty,
        stdin: rec.spec.stdin_open,
        log_path: dir.join(crate::shim::LOG_FILE),
        restart,
        on_exit,
        runtime_binary: other.map(|o| o.0).unwrap_or_else(|| e.exe.clone()),
        health: super::opts::healthcheck(rec).filter(|h| crate::shim::health::probe_args(h).is_some()),
        events: Some(e.data_root.join(crate::events::FILE)),
        event_attrs: super::events::attrs(rec),
        log: super::logopts::log_config(rec)?,
    })
}

fn shim_err(err: crate::shim::ShimError) -> EngineError {
    let code = err.exit_code();
    EngineError::Start { msg: err.to_string(), code }
}

/// Starts the shim; returns the shim's pid.
pub fn shim_spawn(cfg: &crate::shim::ShimConfig) -> Result<i32, EngineError> {
    crate::shim::spawn(cfg).map(|i| i.shim_pid).map_err(shim_err)
}

/// Starts the shim with an attach connection made before the container runs.
pub fn shim_spawn_attached(
    cfg: &crate::shim::ShimConfig,
) -> Result<(i32, std::os::unix::net::UnixStream), EngineError> {
    crate::shim::spawn_attached(cfg).map(|(i, s)| (i.shim_pid, s)).map_err(shim_err)
}

/// [`shim_relay`] that ends at the detach keys: None = detached (the container goes on).
pub fn shim_relay_detachable(
    sock: std::os::unix::net::UnixStream,
    stdin: bool,
    tty: bool,
    dir: &Path,
    sig_proxy: bool,
    keys: &[u8],
) -> Result<Option<i32>, EngineError> {
    match crate::shim::relay_with(sock, stdin, tty, Some(dir), sig_proxy, Some(keys)) {
        Ok(crate::shim::RelayEnd::Exit(c)) => Ok(Some(c)),
        Ok(crate::shim::RelayEnd::Detached) => Ok(None),
        Err(e) => Err(EngineError::Msg(e.to_string())),
    }
}

pub fn shim_relay(
    sock: std::os::unix::net::UnixStream,
    stdin: bool,
    tty: bool,
    dir: &Path,
    sig_proxy: bool,
) -> Result<i32, EngineError> {
    crate::shim::relay(sock, stdin, tty, Some(dir), sig_proxy).map_err(|e| EngineError::Msg(e.to_string()))
}

/// [`shim_attach`] that ends at the detach keys: None = detached (the container goes on).
pub fn shim_attach_detachable(
    dir: &Path,
    stdin: bool,
    tty: bool,
    sig_proxy: bool,
    keys: &[u8],
) -> Result<Option<i32>, EngineError> {
    match crate::shim::attach_with(dir, stdin, tty, sig_proxy, Some(keys)) {
        Ok(crate::shim::RelayEnd::Exit(c)) => Ok(Some(c)),
        Ok(crate::shim::RelayEnd::Detached) => Ok(None),
        Err(e) => Err(EngineError::Msg(e.to_string())),
    }
}

pub fn shim_attach(dir: &Path, stdin: bool, tty: bool, sig_proxy: bool) -> Result<i32, EngineError> {
    crate::shim::attach(dir, stdin, tty, sig_proxy).map_err(|e| EngineError::Msg(e.to_string()))
}

pub fn shim_state(dir: &Path) -> Option<ShimState> {
    crate::shim::read_state(dir).ok()
}

pub fn shim_alive(st: &ShimState) -> bool {
    crate::shim::shim_alive(st)
}

pub fn shim_request_stop(dir: &Path) {
    let _ = crate::shim::request_stop(dir);
}

/// Prints the container's json-file or local log.
pub fn shim_logs(
    dir: &Path,
    follow: bool,
    tail: Option<usize>,
    (since, until): (Option<&str>, Option<&str>),
    timestamps: bool,
) -> Result<(), EngineError> {
    use std::io::Write;
    use std::os::fd::AsFd;
    let (mut o, mut er) = (std::io::stdout().lock(), std::io::stderr().lock());
    let stdout = std::io::stdout();
    // The reader of stdout leaving (a closed pipe, a hung-up terminal) ends a follow.
    let reader = Some(stdout.as_fd());
    logs_to(dir, &LogsOpts { follow, tail, since, until, timestamps, reader }, &mut |stderr: bool, b: &[u8]| {
        if stderr {
            er.write_all(b)
        } else {
            o.write_all(b).and_then(|_| o.flush())
        }
    })
}

/// What part of a json-file log to read.
pub struct LogsOpts<'a> {
    pub follow: bool,
    pub tail: Option<usize>,
    /// RFC 3339 time, unix seconds or a duration back from now.
    pub since: Option<&'a str>,
    /// As `since`: entries after it are left out (and `follow` stops there).
    pub until: Option<&'a str>,
    pub timestamps: bool,
    /// The reader's end (a client's socket, the pipe or terminal printed to): its hang-up ends
    /// a follow at once, also while the container writes nothing.
    pub reader: Option<std::os::fd::BorrowedFd<'a>>,
}

/// Passes the container's json-file log entries to `sink` (true: from stderr).
pub fn logs_to(
    dir: &Path,
    o: &LogsOpts,
    sink: &mut dyn FnMut(bool, &[u8]) -> std::io::Result<()>,
) -> Result<(), EngineError> {
    use crate::shim::LogStream;
    let time = |flag: &str, s: Option<&str>| match s {
        Some(s) => crate::shim::parse_since(s, std::time::SystemTime::now()).map(Some).ok_or_else(|| {
            EngineError::Invalid(format!("invalid {flag} {s:?} (RFC 3339 time, unix seconds or a duration like 10m)"))
        }),
        None => Ok(None),
    };
    let since = time("--since", o.since)?;
    let until = time("--until", o.until)?;
    let path = dir.join(crate::shim::LOG_FILE);
    let follow = o.follow && until.is_none_or(|u| u > std::time::SystemTime::now());
    let mut last_ok = true;
    crate::shim::logs(&path, follow, o.tail, (since, until), o.timestamps, o.reader, &mut |s: LogStream, b: &[u8]| {
        // Entries after `until` are left out by the reader; a follow ends when it is passed.
        if let (Some(u), true) = (until, follow) {
            if std::time::SystemTime::now() > u {
                last_ok = false;
                return Err(std::io::Error::other("until"));
            }
        }
        sink(s == LogStream::Stderr, b)
    })
    .or_else(|e| if last_ok { Err(EngineError::Msg(e.to_string())) } else { Ok(()) })
}

/// docker's exit code for a runtime error message (125, 126 or 127).
pub fn exit_code_for(msg: &str) -> i32 {
    crate::shim::exit_code_for(msg)
}

pub fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    crate::shim::parse_rfc3339(s)
}

pub fn now_rfc3339() -> String {
    crate::shim::now_rfc3339()
}

// ---------------------------------------------------------------------------------------------
// Runtime (in-process: berth's own runtime, state under --root)

fn globals(e: &Engine) -> berth::Globals {
    berth::Globals {
        root: e.root.clone(),
        systemd_cgroup: e.systemd_cgroup,
        debug: e.debug,
        rootless: berth::use_rootless_cgroups(None, e.systemd_cgroup),
    }
}

fn rt_err(e: berth::Error) -> EngineError {
    EngineError::Runtime(e.to_string())
}

/// A command of the other runtime container `id` runs with (runc's command line), if any.
fn other(e: &Engine, id: &str, sub: &str) -> Option<std::process::Command> {
    let (bin, root) = super::runtimes::of_container(&e.data_root, &e.root, id)?;
    let mut c = std::process::Command::new(bin);
    c.arg("--root").arg(root).arg(sub);
    Some(c)
}

/// Runs an other-runtime command; its stdout, or its stderr's last line as the error.
fn run_other(mut c: std::process::Command) -> Result<Vec<u8>, EngineError> {
    let out = c
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|err| EngineError::Runtime(format!("{:?}: {err}", c.get_program())))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(EngineError::Runtime(err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("runtime failed").to_string()))
}

/// (status, pid) of the runtime's container; None when the runtime has no such container.
pub fn runtime_state(e: &Engine, id: &str) -> Option<(String, i32)> {
    let s = match other(e, id, "state") {
        Some(mut c) => String::from_utf8(
            run_other({
                c.arg(id);
                c
            })
            .ok()?,
        )
        .ok()?,
        None => berth::state_json(&globals(e), id).ok()?,
    };
    let v: serde_json::Value = serde_json::from_str(&s).ok()?;
    Some((v["status"].as_str().unwrap_or("").to_string(), v["pid"].as_i64().unwrap_or(0) as i32))
}

pub fn runtime_kill(e: &Engine, id: &str, sig: i32, all: bool) -> Result<(), EngineError> {
    if let Some(mut c) = other(e, id, "kill") {
        if all {
            c.arg("--all");
        }
        c.arg(id).arg(sig.to_string());
        return run_other(c).map(|_| ());
    }
    berth::kill(&globals(e), id, sig, all).map_err(rt_err)
}

pub fn runtime_delete(e: &Engine, id: &str) -> Result<(), EngineError> {
    if let Some(mut c) = other(e, id, "delete") {
        c.arg("--force").arg(id);
        return run_other(c).map(|_| ());
    }
    berth::delete(&globals(e), id, true).map_err(rt_err)
}

pub fn parse_signal(s: &str) -> Result<i32, EngineError> {
    // The runtime passes 0 (an existence check) on; docker's commands take real signals only.
    match berth::parse_signal(s) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(EngineError::Invalid(format!("invalid signal {s:?}"))),
    }
}

pub struct ExecRequest {
    pub id: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub tty: bool,
    pub detach: bool,
    pub user: Option<(u32, u32, Vec<u32>)>,
    pub cwd: Option<String>,
    pub privileged: bool,
}

/// Runs a process in the container with the caller's stdio; its exit code (0 detached).
pub fn runtime_exec(e: &Engine, r: ExecRequest) -> Result<i32, EngineError> {
    let mut o = berth::ExecOpts {
        id: r.id,
        args: r.args,
        env: r.env,
        tty: r.tty,
        detach: r.detach,
        cwd: r.cwd.map(PathBuf::from),
        ..Default::default()
    };
    if let Some((uid, gid, groups)) = r.user {
        o.user = Some(format!("{uid}:{gid}"));
        o.additional_gids = groups;
    }
    if r.privileged {
        o.caps = own_caps();
    }
    if let Some(mut c) = other(e, &o.id, "exec") {
        if o.tty {
            c.arg("--tty");
        }
        if o.detach {
            c.arg("--detach");
        }
        if let Some(u) = &o.user {
            c.arg("--user").arg(u);
        }
        for g in &o.additional_gids {
            c.arg("--additional-gids").arg(g.to_string());
        }
        if let Some(w) = &o.cwd {
            c.arg("--cwd").arg(w);
        }
        for kv in &o.env {
            c.arg("--env").arg(kv);
        }
        for cap in &o.caps {
            c.arg("--cap").arg(cap);
        }
        c.arg(&o.id).args(&o.args);
        let st = c.status().map_err(|err| EngineError::Runtime(format!("{:?}: {err}", c.get_program())))?;
        return Ok(st.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0)));
    }
    berth::exec(&globals(e), &o).map_err(|err| {
        let msg = err.to_string();
        EngineError::Start { code: exit_code_for(&msg), msg }
    })
}

/// Starts a process in the container with the given stdio (or, `console`, a terminal whose
/// master is sent to that socket); returns its pid, a child of this process to reap.
pub fn runtime_exec_spawn(
    e: &Engine,
    r: ExecRequest,
    stdio: Option<[std::os::fd::RawFd; 3]>,
    console: Option<PathBuf>,
) -> Result<i32, EngineError> {
    let mut o = berth::ExecOpts {
        id: r.id,
        args: r.args,
        env: r.env,
        tty: r.tty,
        detach: true,
        cwd: r.cwd.map(PathBuf::from),
        console_socket: console,
        stdio,
        ..Default::default()
    };
    if let Some((uid, gid, groups)) = r.user {
        o.user = Some(format!("{uid}:{gid}"));
        o.additional_gids = groups;
    }
    if r.privileged {
        o.caps = own_caps();
    }
    berth::exec_spawn(&globals(e), &o).map_err(|err| {
        let msg = err.to_string();
        EngineError::Start { code: exit_code_for(&msg), msg }
    })
}

/// The pids of the container's processes.
pub fn runtime_pids(e: &Engine, id: &str) -> Result<Vec<i32>, EngineError> {
    berth::pids(&globals(e), id).map_err(rt_err)
}

/// `ps` output of the container's processes.
pub fn runtime_top(e: &Engine, id: &str, ps_args: &[String]) -> Result<(), EngineError> {
    if let Some(mut c) = other(e, id, "ps") {
        c.arg(id).args(ps_args);
        let out = run_other(c)?;
        use std::io::Write;
        let _ = std::io::stdout().write_all(&out);
        return Ok(());
    }
    berth::ps(&globals(e), id, "table", ps_args).map_err(rt_err)
}

/// The runtime's cgroup stats (as `berth events --stats` prints them, "data" part).
pub fn runtime_stats(e: &Engine, id: &str) -> Option<serde_json::Value> {
    if let Some(mut c) = other(e, id, "events") {
        c.arg("--stats").arg(id);
        let v: serde_json::Value = serde_json::from_slice(&run_other(c).ok()?).ok()?;
        return Some(v["data"].clone());
    }
    berth::cgroup_stats(&e.root, id)
}

pub fn runtime_pause(e: &Engine, id: &str) -> Result<(), EngineError> {
    if let Some(mut c) = other(e, id, "pause") {
        c.arg(id);
        return run_other(c).map(|_| ());
    }
    berth::pause(&globals(e), id).map_err(rt_err)
}

pub fn runtime_resume(e: &Engine, id: &str) -> Result<(), EngineError> {
    if let Some(mut c) = other(e, id, "resume") {
        c.arg(id);
        return run_other(c).map(|_| ());
    }
    berth::resume(&globals(e), id).map_err(rt_err)
}

/// Writes new resources (OCI `linux.resources` JSON) to a running container's cgroup.
pub fn runtime_update(e: &Engine, id: &str, r: serde_json::Value) -> Result<(), EngineError> {
    if let Some(mut c) = other(e, id, "update") {
        use std::io::Write;
        c.arg("--resources").arg("-").arg(id);
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().map_err(|err| EngineError::Runtime(format!("{:?}: {err}", c.get_program())))?;
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(r.to_string().as_bytes());
        }
        let out = child.wait_with_output().map_err(|err| EngineError::Runtime(err.to_string()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(EngineError::Runtime(err.lines().last().unwrap_or("update failed").to_string()));
        }
        return Ok(());
    }
    let r: oci_spec::runtime::LinuxResources =
        serde_json::from_value(r).map_err(|err| EngineError::Invalid(format!("resources: {err}")))?;
    berth::update(&globals(e), id, &r).map_err(rt_err)
}
