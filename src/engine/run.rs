//! The lifecycle core: create (record, name, volumes), start (rootfs, network, config.json,
//! shim), status (shim state, dead-shim detection), stop, teardown and removal. Every step that
//! makes something registers its undo, so a failure leaves nothing half-made.

use super::adapt::{self, ShimState, ShimStatus};
use super::cli::CreateOpts;
use super::opts::{self, VolumeArg};
use super::store::{self, Containers, MountRec, NetInfo, Record};
use super::volume::Volumes;
use super::{Engine, EngineError, Undo};
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long to wait for a shim to finish its clean-up and exit.
const SHIM_EXIT_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Processes

/// Waits until the shim whose state is in `dir` has exited (it first runs the clean-up).
/// True when no shim runs any more.
pub fn wait_shim_gone(dir: &Path, timeout: Duration) -> bool {
    let Some(st) = adapt::shim_state(dir) else { return true };
    let Ok(fd) = berth::pidfd::open(st.shim_pid) else { return true };
    // The pidfd is of the shim only if it is still the process that wrote the state.
    if !adapt::shim_alive(&st) {
        return true;
    }
    berth::pidfd::wait(&fd, Some(timeout))
}

/// Waits for the shim of a just-failed spawn: its state file may not be written yet.
fn wait_failed_shim(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while adapt::shim_state(dir).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_shim_gone(dir, SHIM_EXIT_TIMEOUT);
}

fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(p), p.parent().map(fs::symlink_metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev() || a.ino() == b.ino(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Status

/// A container's state, as docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Restarting,
    Exited,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Exited => "exited",
        }
    }
}

pub struct Status {
    pub state: State,
    pub shim: Option<ShimState>,
    pub shim_alive: bool,
    /// The container's init pid (0 when not running).
    pub pid: i32,
    pub exit_code: Option<i32>,
    /// Running with its cgroup frozen (`container pause`).
    pub paused: bool,
    /// The health check's state (starting, healthy, unhealthy) while running with one.
    pub health: Option<String>,
}

/// Reads the shim's state; a dead shim with a still-running container is told from the
/// runtime's state.
pub fn status(e: &Engine, cs: &Containers, id: &str) -> Status {
    let dir = cs.path(id);
    let Some(st) = adapt::shim_state(&dir) else {
        return Status {
            state: State::Created,
            shim: None,
            shim_alive: false,
            pid: 0,
            exit_code: None,
            paused: false,
            health: None,
        };
    };
    let alive = adapt::shim_alive(&st);
    let (state, pid) = match (st.status, alive) {
        (ShimStatus::Exited, _) => (State::Exited, 0),
        (ShimStatus::Running, true) => (State::Running, st.container_pid),
        (ShimStatus::Restarting, true) => (State::Restarting, 0),
        (ShimStatus::Created, true) => (State::Created, 0),
        // The shim died: the container may still run (the runtime knows).
        (_, false) => match adapt::runtime_state(e, id) {
            Some((s, p)) if s == "running" || s == "paused" || s == "created" => (State::Running, p),
            _ => (State::Exited, 0),
        },
    };
    let exit_code = if state == State::Exited { Some(st.exit_code.unwrap_or(255)) } else { None };
    // The marker is only a hint that saves asking the runtime for every listed container.
    let paused = state == State::Running
        && dir.join(super::manage::PAUSED_MARK).exists()
        && adapt::runtime_state(e, id).is_some_and(|(s, _)| s == "paused");
    let health = if state == State::Running { crate::shim::health::read_health(&dir).map(|h| h.status) } else { None };
    Status { state, shim: Some(st), shim_alive: alive, pid, exit_code, paused, health }
}

fn write_shim_state(dir: &Path, st: &ShimState) {
    let tmp = dir.join(".shim.json.engine.tmp");
    if let Ok(data) = serde_json::to_vec(st) {
        if fs::write(&tmp, data).is_ok() {
            let _ = fs::rename(&tmp, dir.join(crate::shim::STATE_FILE));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Create

fn mounts_of(e: &Engine, spec: &opts::RunSpec, image_volumes: &[String]) -> Result<Vec<MountRec>, EngineError> {
    let vols = Volumes::new(&e.data_root);
    let mut out = Vec::new();
    for v in &spec.volumes {
        match v {
            VolumeArg::Bind { source, dest, readonly, options } => out.push(MountRec {
                kind: "bind".into(),
                name: None,
                source: source.into(),
                destination: dest.clone(),
                rw: !readonly,
                anonymous: false,
                options: options.clone(),
            }),
            VolumeArg::Volume { name, dest, readonly } => {
                let (name, anonymous) = match name {
                    Some(n) => (n.clone(), false),
                    None => (store::new_id()?, true),
                };
                out.push(MountRec {
                    kind: "volume".into(),
                    source: vols.data_path(&name),
                    name: Some(name),
                    destination: dest.clone(),
                    rw: !readonly,
                    anonymous,
                    options: Vec::new(),
                });
            }
        }
    }
    for d in image_volumes {
        if out.iter().any(|m| &m.destination == d) || spec.tmpfs.iter().any(|t| &t.0 == d) {
            continue;
        }
        let name = store::new_id()?;
        out.push(MountRec {
            kind: "volume".into(),
            source: vols.data_path(&name),
            name: Some(name),
            destination: d.clone(),
            rw: true,
            anonymous: true,
            options: Vec::new(),
        });
    }
    Ok(out)
}

/// `--volumes-from C[:ro|rw]`: the volumes and binds of C (its anonymous volumes become shared,
/// never removed with this container).
fn volumes_from(cs: &Containers, specs: &[String]) -> Result<Vec<MountRec>, EngineError> {
    let mut out = Vec::new();
    for v in specs {
        let (key, mode) = match v.rsplit_once(':') {
            Some((k, m)) if m == "ro" || m == "rw" => (k, Some(m)),
            _ => (v.as_str(), None),
        };
        let other = cs.find(key)?;
        for m in &other.mounts {
            let mut m = m.clone();
            if let Some(mode) = mode {
                m.rw = mode == "rw";
            }
            m.anonymous = false;
            out.push(m);
        }
    }
    Ok(out)
}

/// `--link NAME[:ALIAS]`: /etc/hosts entries for a running container's address.
fn links_of(e: &Engine, cs: &Containers, links: &[String]) -> Result<Vec<(String, String)>, EngineError> {
    let mut out = Vec::new();
    for l in links {
        let (name, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
        let other = cs.find(name).map_err(|_| EngineError::Invalid(format!("could not get container for {name}")))?;
        if status(e, cs, &other.id).state != State::Running {
            return Err(EngineError::Invalid(format!("cannot link to a non running container: /{}", other.name)));
        }
        let Some(ip) = other.net.ip.clone() else {
            return Err(EngineError::Invalid(format!(
                "cannot link to /{}: it has no address on a network",
                other.name
            )));
        };
        for h in [alias, other.name.as_str(), &other.id[..12]] {
            if !out.iter().any(|(x, _): &(String, String)| x == h) {
                out.push((h.to_string(), ip.clone()));
            }
        }
    }
    Ok(out)
}

/// `create`: checks everything, then makes the record, the name claim, the image use and
/// the volumes. Nothing is left behind when it fails.
pub fn create(e: &Engine, cs: &Containers, c: &CreateOpts) -> Result<Record, EngineError> {
    let mut spec = opts::parse(c)?;
    let limits = [
        ("--memory", spec.memory.is_some()),
        ("--memory-swap", spec.memory_swap.is_some()),
        ("--cpus", spec.cpus.is_some()),
        ("--pids-limit", spec.pids_limit.is_some()),
    ];
    if let Some((flag, _)) = limits.iter().find(|(_, set)| *set) {
        crate::unprivileged::check_limits(flag).map_err(|err| EngineError::Invalid(err.to_string()))?;
    }
    if let Some(t) = spec.network.strip_prefix("container:") {
        let other = cs.find(t)?;
        if status(e, cs, &other.id).state != State::Running {
            return Err(EngineError::Invalid(format!("cannot join the network of container {t}: it is not running")));
        }
        adapt::net_check_container(e, &other.id)?;
        spec.network = format!("container:{}", other.id);
    }
    let name = c.name.as_deref().map(opts::check_name).transpose()?;
    if let Some(n) = &name {
        // Checked early (before a pull); the claim below is what makes it safe.
        if let Some(owner) = cs.name_owner(n) {
            if cs.path(&owner).join(store::RECORD).exists() {
                return Err(EngineError::Conflict(format!(
                    "the container name \"/{n}\" is already in use by container {owner}: remove (or rename) that container to reuse the name"
                )));
            }
        }
    }
    for v in &spec.volumes {
        if let VolumeArg::Bind { source, .. } = v {
            // -v creates a missing host directory, as docker does.
            if fs::symlink_metadata(source).is_err() {
                fs::create_dir_all(source)
                    .map_err(|err| EngineError::Invalid(format!("create bind source {source}: {err}")))?;
            }
        }
    }
    if let Some(f) = c.cidfile.as_deref().filter(|f| !f.is_empty()) {
        if std::path::Path::new(f).exists() {
            return Err(EngineError::Invalid(format!(
                "container ID file found, make sure the other container isn't running or delete {f}"
            )));
        }
    }
    spec.runtime = super::runtimes::check(&e.data_root, c.runtime.as_deref())?;
    let from = volumes_from(cs, &c.volumes_from)?;
    let links = links_of(e, cs, &c.link)?;
    spec.extra_hosts.extend(links);
    let img = adapt::resolve_image(e, c.image(), &c.pull, c.quiet, c.platform.as_deref())?;
    let argv = adapt::process_args(&img.config, &spec)?;
    let id = store::new_id()?;
    let mut mounts = mounts_of(e, &spec, &adapt::image_volumes(&img.config))?;
    for m in from {
        if !mounts.iter().any(|x| x.destination == m.destination) && !spec.tmpfs.iter().any(|t| t.0 == m.destination) {
            mounts.push(m);
        }
    }
    let mut rec = Record {
        id: id.clone(),
        name: name.clone().unwrap_or_default(),
        created: adapt::now_rfc3339(),
        image: c.image().to_string(),
        image_id: img.id.clone(),
        lowers: img.lowers,
        image_config: img.config,
        spec,
        mounts,
        path: argv.first().cloned().unwrap_or_default(),
        args: argv.get(1..).map(<[String]>::to_vec).unwrap_or_default(),
        net: NetInfo::default(),
        rootfs_copied: false,
    };

    let mut undo = Undo::new();
    if name.is_none() {
        rec.name = store::random_name(0);
    }
    // The record exists before anything else is made: whatever a crash leaves, `rm` finds.
    let _lock = cs.create(&rec)?;
    berth::faults::crash_point("engine.create.record-written");
    let dir = cs.path(&id);
    undo.push(move || {
        let _ = fs::remove_dir_all(&dir);
    });
    // A claim whose container is gone (a crash between the two steps) is taken over.
    let mut attempt = 0;
    loop {
        if name.is_none() && attempt > 0 {
            rec.name = store::random_name(attempt);
            cs.save(&rec)?;
        }
        match cs.claim_name(&rec.name, &id) {
            Ok(()) => break,
            Err(EngineError::Conflict(_)) if name.is_none() && attempt < 20 => attempt += 1,
            Err(err) => return Err(err),
        }
    }
    berth::faults::crash_point("engine.create.name-claimed");
    let claimed = rec.name.clone();
    undo.push(move || cs.release_name(&claimed, &id));
    adapt::image_use_add(e, &rec.image_id, &rec.id)?;
    undo.push(|| adapt::image_use_remove(e, &rec.id));
    let vols = Volumes::new(&e.data_root);
    for m in rec.mounts.iter().filter(|m| m.kind == "volume") {
        let Some(n) = &m.name else { continue };
        let (_, made) = vols.create(n, Default::default(), m.anonymous)?;
        if made {
            crate::events::record(&e.data_root, "volume", "create", n, "");
            let vols = Volumes::new(&e.data_root);
            let n = n.clone();
            undo.push(move || {
                if vols.remove_unchecked(&n).is_ok() {
                    crate::events::record(&e.data_root, "volume", "destroy", &n, "");
                }
            });
        }
    }
    if let Some(r) = &rec.spec.runtime {
        let p = cs.path(&rec.id).join(super::runtimes::MARK);
        fs::write(&p, r).map_err(|err| EngineError::Io { op: "write", path: p, err })?;
    }
    if let Some(f) = c.cidfile.as_deref().filter(|f| !f.is_empty()) {
        use std::io::Write;
        let mut file = fs::OpenOptions::new().write(true).create_new(true).open(f).map_err(|err| {
            EngineError::Invalid(format!(
                "container ID file found, make sure the other container isn't running or delete {f}: {err}"
            ))
        })?;
        file.write_all(rec.id.as_bytes()).map_err(|err| EngineError::Io { op: "write", path: f.into(), err })?;
    }
    undo.disarm();
    super::events::container(e, &rec, "create");
    Ok(rec)
}

// ---------------------------------------------------------------------------------------------
// Start

pub enum Started {
    /// The shim runs; with an attach connection when asked for.
    Spawned {
        shim_pid: i32,
        sock: Option<UnixStream>,
    },
    AlreadyRunning,
}

/// Mounts the rootfs, attaches the network, writes config.json and spawns the shim. On
/// failure everything this start made is undone (the container itself stays).
pub fn start(e: &Engine, cs: &Containers, id: &str, attach: bool) -> Result<Started, EngineError> {
    let dir = cs.path(id);
    let st = status(e, cs, id);
    match st.state {
        State::Running | State::Restarting => return Ok(Started::AlreadyRunning),
        State::Created if st.shim_alive => return Ok(Started::AlreadyRunning),
        _ => {}
    }
    // A shim that is still running its clean-up: let it finish.
    if st.shim_alive && !wait_shim_gone(&dir, SHIM_EXIT_TIMEOUT) {
        return Err(EngineError::Conflict(format!("container {id}: the previous run is still being cleaned up")));
    }
    let lock = cs.lock(id)?;
    // Started by someone else while we waited for the lock?
    let st = status(e, cs, id);
    if st.shim_alive || st.state == State::Running {
        return Ok(Started::AlreadyRunning);
    }
    let mut rec = cs.load(id)?;
    let mut undo = Undo::new();
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    // Leftovers of a run whose shim died (nothing runs now): runtime state, network, mount.
    let _ = adapt::runtime_delete(e, id);
    adapt::net_detach(e, id)?;
    if !rec.rootfs_copied {
        adapt::unmount_rootfs(&rootfs)?;
        let overlay = adapt::mount_rootfs(&rec.lowers, &dir.join("rw/upper"), &dir.join("rw/work"), &rootfs)?;
        if overlay {
            let r = rootfs.clone();
            undo.push(move || {
                let _ = adapt::unmount_rootfs(&r);
            });
        } else {
            rec.rootfs_copied = true;
        }
    }
    berth::faults::crash_point("engine.start.rootfs-mounted");
    let net = adapt::net_attach(e, &rec)?;
    undo.push(|| {
        let _ = adapt::net_detach(e, id);
    });
    berth::faults::crash_point("engine.start.network-attached");
    let etc = adapt::write_etc_files(&dir.join("etc"), &net.hostname, &net.hosts, &net.resolv_conf)?;
    adapt::write_spec(e, &rec, &bundle, &rootfs, net.netns, etc, &net.hostname)?;
    rec.net = net.info;
    cs.save(&rec)?;
    let cfg = adapt::shim_config(e, &rec, &dir)?;
    let _ = fs::remove_file(dir.join(crate::shim::STATE_FILE));
    let _ = fs::remove_file(dir.join(crate::shim::health::HEALTH_FILE));
    let _ = fs::remove_file(dir.join(super::manage::PAUSED_MARK));
    let _ = fs::remove_file(dir.join(crate::shim::RESTART_FILE));
    let spawned = if attach {
        super::events::container(e, &rec, "attach");
        adapt::shim_spawn_attached(&cfg).map(|(pid, s)| (pid, Some(s)))
    } else {
        adapt::shim_spawn(&cfg).map(|pid| (pid, None))
    };
    match spawned {
        Ok((shim_pid, sock)) => {
            berth::faults::crash_point("engine.start.shim-spawned");
            undo.disarm();
            drop(lock);
            Ok(Started::Spawned { shim_pid, sock })
        }
        Err(err) => {
            // The shim runs the clean-up itself (it needs the lock); then undo what is left.
            drop(lock);
            wait_failed_shim(&dir);
            let _l = cs.lock(id);
            let _ = adapt::runtime_delete(e, id);
            undo.run();
            Err(err)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stop, teardown, removal

/// Stops a running container: its stop signal, then SIGKILL after `timeout` seconds (< 0:
/// wait forever); no restart afterwards. Returns once the clean-up is done.
pub fn stop(
    e: &Engine,
    cs: &Containers,
    rec: &Record,
    signal: Option<&str>,
    timeout: Option<i64>,
) -> Result<(), EngineError> {
    let dir = cs.path(&rec.id);
    let st = status(e, cs, &rec.id);
    if !matches!(st.state, State::Running | State::Restarting) {
        if st.shim_alive {
            wait_shim_gone(&dir, SHIM_EXIT_TIMEOUT);
        }
        return Ok(());
    }
    adapt::shim_request_stop(&dir);
    let sig_name = signal.map(str::to_string).unwrap_or_else(|| adapt::stop_signal(rec));
    let sig = adapt::parse_signal(&sig_name)?;
    let t = timeout.or(rec.spec.stop_timeout).unwrap_or(10);
    let mut killed = false;
    if st.state == State::Running {
        if let Some((rs, pid)) = adapt::runtime_state(e, &rec.id) {
            if matches!(rs.as_str(), "running" | "paused" | "created") {
                let fd = berth::pidfd::open(pid).ok();
                let _ = adapt::runtime_kill(e, &rec.id, sig, false);
                super::events::container_with(e, rec, "kill", [("signal".to_string(), sig.to_string())].into());
                super::manage::thaw_if_paused(e, &dir, &rec.id);
                let limit = if t < 0 { None } else { Some(Duration::from_secs(t as u64)) };
                let exited = fd.as_ref().is_some_and(|fd| berth::pidfd::wait(fd, limit));
                if !exited {
                    let _ = adapt::runtime_kill(e, &rec.id, libc::SIGKILL, true);
                    killed = true;
                    if let Some(fd) = &fd {
                        berth::pidfd::wait(fd, Some(Duration::from_secs(10)));
                    }
                }
            }
        }
    }
    if st.shim_alive {
        wait_shim_gone(&dir, SHIM_EXIT_TIMEOUT);
        super::events::container(e, rec, "stop");
        return Ok(());
    }
    finish_without_shim(e, cs, rec, st.shim, 128 + if killed { libc::SIGKILL } else { sig })?;
    super::events::container(e, rec, "stop");
    Ok(())
}

/// A container whose shim died has stopped: nobody records the exit or cleans up but us.
pub fn finish_without_shim(
    e: &Engine,
    cs: &Containers,
    rec: &Record,
    shim: Option<ShimState>,
    code: i32,
) -> Result<(), EngineError> {
    let _l = cs.lock(&rec.id)?;
    if status(e, cs, &rec.id).shim_alive {
        return Ok(());
    }
    teardown(e, cs, rec)?;
    if let Some(mut s) = shim {
        s.status = ShimStatus::Exited;
        s.container_pid = 0;
        s.exit_code = Some(code);
        s.finished_at = Some(adapt::now_rfc3339());
        write_shim_state(&cs.path(&rec.id), &s);
    }
    Ok(())
}

/// Kills the container (if it runs), removes the runtime's state, detaches the network and
/// unmounts the rootfs. Idempotent; the caller holds the container's lock.
pub fn teardown(e: &Engine, cs: &Containers, rec: &Record) -> Result<(), EngineError> {
    let dir = cs.path(&rec.id);
    let mut first: Option<EngineError> = None;
    if let Err(err) = adapt::runtime_delete(e, &rec.id) {
        first.get_or_insert(err);
    }
    if let Err(err) = adapt::net_detach(e, &rec.id) {
        first.get_or_insert(err);
    }
    if !rec.rootfs_copied {
        if let Err(err) = adapt::unmount_rootfs(&dir.join("bundle/rootfs")) {
            first.get_or_insert(err);
        }
    }
    match first {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Removes a torn-down container: its directory, name, image use and (`anon_volumes`) its
/// anonymous volumes. The caller holds the lock.
pub fn remove_files(e: &Engine, cs: &Containers, rec: &Record, anon_volumes: bool) -> Result<(), EngineError> {
    let dir = cs.path(&rec.id);
    let rootfs = dir.join("bundle/rootfs");
    if !rec.rootfs_copied && is_mountpoint(&rootfs) {
        return Err(EngineError::Msg(format!("remove container {}: {} is still mounted", rec.id, rootfs.display())));
    }
    // Out of sight first, then removed: a half-removed container is never listed.
    let trash = cs.dir.join(format!(".rm-{}", rec.id));
    match fs::rename(&dir, &trash) {
        Ok(()) => super::events::container(e, rec, "destroy"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(EngineError::Io { op: "rename", path: dir, err }),
    }
    cs.release_name(&rec.name, &rec.id);
    adapt::image_use_remove(e, &rec.id);
    if anon_volumes {
        let vols = Volumes::new(&e.data_root);
        for m in rec.mounts.iter().filter(|m| m.anonymous) {
            if let Some(n) = &m.name {
                if vols.remove_unchecked(n).is_ok() {
                    crate::events::record(&e.data_root, "volume", "destroy", n, "");
                }
            }
        }
    }
    if let Some(r) = crate::unprivileged::shim_dir(&rec.id) {
        // The shim removes it when it ends; not when it was killed.
        let _ = fs::remove_dir_all(r);
    }
    fs::remove_dir_all(&trash).map_err(|err| EngineError::Io { op: "remove", path: trash, err })
}

/// `rm`: refuses a running container unless `force` (then kills it).
pub fn remove(e: &Engine, cs: &Containers, rec: &Record, force: bool, anon_volumes: bool) -> Result<(), EngineError> {
    let dir = cs.path(&rec.id);
    let st = status(e, cs, &rec.id);
    if matches!(st.state, State::Running | State::Restarting) {
        if !force {
            return Err(EngineError::Conflict(format!(
                "cannot remove container {}: it is {}: stop it first or use rm -f",
                rec.name,
                st.state.as_str()
            )));
        }
        adapt::shim_request_stop(&dir);
        let _ = adapt::runtime_kill(e, &rec.id, libc::SIGKILL, true);
        super::manage::thaw_if_paused(e, &dir, &rec.id);
    }
    if st.shim_alive && !wait_shim_gone(&dir, SHIM_EXIT_TIMEOUT) {
        if !force {
            return Err(EngineError::Conflict(format!("cannot remove container {}: its shim does not exit", rec.name)));
        }
        if let Some(s) = &st.shim {
            if adapt::shim_alive(s) {
                // SAFETY: kill(2) of the shim process verified alive (pid + start time) just now.
                unsafe { libc::kill(s.shim_pid, libc::SIGKILL) };
            }
        }
    }
    let _l = match cs.lock(&rec.id) {
        Ok(l) => l,
        // Removed meanwhile (--rm clean-up).
        Err(EngineError::NoSuchContainer(_)) => return Ok(()),
        Err(err) => return Err(err),
    };
    let rec = match cs.load(&rec.id) {
        Ok(r) => r,
        Err(EngineError::NoSuchContainer(_)) => return Ok(()),
        Err(err) => return Err(err),
    };
    let now = status(e, cs, &rec.id);
    if !force && (now.shim_alive || now.state == State::Running) {
        return Err(EngineError::Conflict(format!("cannot remove container {}: it was started meanwhile", rec.name)));
    }
    teardown(e, cs, &rec)?;
    berth::faults::crash_point("engine.rm.torn-down");
    remove_files(e, cs, &rec, anon_volumes)
}

/// Removes what a failed `run` made (record, name, anonymous volumes).
pub fn discard(e: &Engine, cs: &Containers, id: &str) {
    let Ok(rec) = cs.load(id) else { return };
    let _ = remove(e, cs, &rec, true, true);
}

/// The hidden `container cleanup ID` the shim runs once the container is gone for good.
pub fn cleanup(e: &Engine, cs: &Containers, id: &str) -> Result<(), EngineError> {
    if !store::is_id(id) {
        return Err(EngineError::Invalid(format!("cleanup: invalid container id {id:?}")));
    }
    let _l = match cs.lock(id) {
        Ok(l) => l,
        Err(EngineError::NoSuchContainer(_)) => return Ok(()),
        Err(err) => return Err(err),
    };
    let rec = match cs.load(id) {
        Ok(r) => r,
        Err(EngineError::NoSuchContainer(_)) => return Ok(()),
        Err(err) => return Err(err),
    };
    // A newer shim than the one that runs us: the container was started again.
    if let Some(st) = adapt::shim_state(&cs.path(id)) {
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        if adapt::shim_alive(&st) && st.shim_pid != parent {
            return Ok(());
        }
    }
    let torn = teardown(e, cs, &rec);
    if rec.spec.auto_remove {
        torn?;
        return remove_files(e, cs, &rec, true);
    }
    torn
}
