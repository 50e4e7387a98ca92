//! Container lifecycle operations: create, start, run, kill, delete, state, list.

pub mod exec;
pub mod listing;
pub mod manage;
pub mod rootless;
pub mod state;
pub mod tty_relay;

/// The copy of config.json kept in the state dir.
pub const CONFIG_COPY: &str = "config.json";

use crate::cgroups;
use crate::namespaces::{self, Plan};
use crate::process::{self, sync, BootHeader};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use state::{ContainerDir, Saved, StateError, Status};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    #[error(transparent)]
    Sync(#[from] sync::SyncError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Caps(#[from] crate::capabilities::CapError),
    #[error("{0}")]
    Config(String),
    #[error("{call}: {err}")]
    Sys { call: String, err: std::io::Error },
    #[error("{0}")]
    Msg(String),
}

/// runc's error for signalling, pausing or exec'ing a container that is not running; engines
/// (containerd's shim) match these words.
pub const NOT_RUNNING: &str = "container not running";

pub(crate) fn sys(call: impl Into<String>, err: std::io::Error) -> Error {
    Error::Sys { call: call.into(), err }
}

/// Global options every command needs.
pub struct Globals {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    pub debug: bool,
    /// Cgroups as for an unprivileged user (`--rootless`, see [`rootless::use_rootless_cgroups`]).
    pub rootless: bool,
}

pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
}

/// Read and parse `bundle/config.json`, with errors that name the file.
pub fn load_config(bundle: &Path) -> Result<(Vec<u8>, Spec), Error> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| Error::Config(format!("read {}: {e}", path.display())))?;
    let spec = parse_config(&data, &path)?;
    Ok((data, spec))
}

/// config.json's bytes (read from `path`) as a spec.
pub(crate) fn parse_config(data: &[u8], path: &Path) -> Result<Spec, Error> {
    match serde_json::from_slice(data) {
        Ok(s) => Ok(s),
        Err(e) => {
            // A bad seccomp profile gets a precise one-line message instead of serde's.
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
                if let Some(sec) = v.get("linux").and_then(|l| l.get("seccomp")) {
                    crate::seccomp::check_json(sec)?;
                }
            }
            Err(Error::Config(format!("parse {}: {e}", path.display())))
        }
    }
}

fn canonical_bundle(b: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(b).map_err(|e| Error::Config(format!("bundle {}: {e}", b.display())))
}

/// Everything that was made on the host for a container being created; undone on failure.
struct Undo {
    dir: Option<ContainerDir>,
    cgroup: Option<cgroups::Manager>,
    child: libc::pid_t,
}

impl Undo {
    fn disarm(&mut self) -> ContainerDir {
        self.cgroup = None;
        self.child = 0;
        self.dir.take().expect("container dir present until disarmed")
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.child > 0 {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(self.child, libc::SIGKILL);
                let mut st = 0;
                libc::waitpid(self.child, &mut st, 0);
            }
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.destroy();
        }
        if let Some(d) = self.dir.take() {
            let _ = d.remove();
        }
    }
}

/// A created container; `child` is the init's pid (our child, for `run`).
pub struct Created {
    pub dir: ContainerDir,
    pub saved: Saved,
}

fn mkfifo(path: &Path) -> Result<OwnedFd, Error> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Msg(format!("fifo path {} contains NUL", path.display())))?;
    // SAFETY: valid C string.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(sys(format!("mkfifo {}", path.display()), std::io::Error::last_os_error()));
    }
    // O_RDWR never blocks on a fifo; the init keeps it as the reader it blocks on.
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(sys(format!("open {}", path.display()), std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn connect_console(path: &Path) -> Result<OwnedFd, Error> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| sys(format!("connect to console socket {}", path.display()), e))?;
    Ok(OwnedFd::from(s))
}

pub(crate) fn frame(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        v.extend_from_slice(&(p.len() as u32).to_le_bytes());
        v.extend_from_slice(p);
    }
    v
}

pub fn create(g: &Globals, o: &CreateOpts) -> Result<Created, Error> {
    state::validate_id(&o.id)?;
    let bundle = canonical_bundle(&o.bundle)?;
    crate::debug!("create container {}: bundle {}", o.id, bundle.display());
    let (config_bytes, spec) = load_config(&bundle)?;
    let root_path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| Error::Config("config.json has no root.path".into()))?;
    let rootfs_raw = if root_path.is_absolute() { root_path } else { bundle.join(root_path) };
    let rootfs = std::fs::canonicalize(&rootfs_raw)
        .map_err(|e| Error::Config(format!("rootfs {}: {e}", rootfs_raw.display())))?;
    if !rootfs.is_dir() {
        return Err(Error::Config(format!("rootfs {} is not a directory", rootfs.display())));
    }
    refuse_unsupported(&spec)?;
    let linux = spec.linux().as_ref();
    let plan = Plan::from_linux(linux)?;
    namespaces::check_sysctls(linux, &plan)?;
    // With a user namespace to create after joining others by path (or one to join), the init
    // makes its namespaces itself and forks once for a new pid namespace.
    let late_ns = !plan.single_clone();
    if late_ns && plan.creates(LinuxNamespaceType::Pid) {
        // The forked pid 1 is re-parented to us (and `run` can wait for it).
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    if let Some(p) = spec.process() {
        crate::capabilities::Masks::from_spec(p.capabilities().as_ref())?;
        if p.terminal().unwrap_or(false) && o.console_socket.is_none() {
            return Err(Error::Config(
                "process.terminal is true: --console-socket is required (berth does not hold the terminal itself)"
                    .into(),
            ));
        }
    }
    crate::debug!("rootfs {}", rootfs.display());
    let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(prepare_seccomp(g, s)?),
        None => None,
    };
    let rootless_euid = rootless::euid() != 0;
    if rootless_euid {
        rootless::check_config(&spec).map_err(Error::Config)?;
    }
    let userns = plan.creates(LinuxNamespaceType::User);
    if userns {
        let l = linux.ok_or_else(|| Error::Config("user namespace without linux section".into()))?;
        if l.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
            || l.gid_mappings().as_ref().is_none_or(|m| m.is_empty())
        {
            return Err(Error::Config("a new user namespace needs linux.uidMappings and linux.gidMappings".into()));
        }
    }

    let dir = ContainerDir::create(&g.root, &o.id)?;
    crate::debug!("state directory {}", dir.dir.display());
    crate::faults::crash_point("runtime.create.state-dir");
    let mut undo = Undo { dir: Some(dir), cgroup: None, child: 0 };

    let cg_path = linux.and_then(|l| l.cgroups_path().as_ref()).map(|p| p.to_string_lossy().into_owned());
    let mut cg = cgroups::Manager::new(cg_path.as_deref(), &o.id, g.systemd_cgroup)?;
    if g.rootless {
        cg = cg.into_rootless(cg_path.as_deref(), g.systemd_cgroup)?;
    }
    check_existing_cgroup(&cg)?;
    // Recorded first: a create killed from here on leaves its cgroup (and init) for `delete`.
    if let Some(d) = &undo.dir {
        d.save_cgroup(&cg)?;
    }
    cg.create(linux.and_then(|l| l.resources().as_ref()))?;
    crate::debug!("cgroup created (cgroupsPath {})", cg_path.as_deref().unwrap_or("not set: the default"));
    undo.cgroup = Some(cg.clone());

    let fifo_path = undo.dir.as_ref().map(|d| d.fifo()).unwrap_or_default();
    let fifo = mkfifo(&fifo_path)?;
    // Where the init writes why it could not execute the process after `start` released it
    // (a failing startContainer hook, a failed execve): `start` reports it.
    let err_path = fifo_path.with_file_name(state::EXEC_ERR);
    let exec_err = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&err_path)
        .map_err(|e| sys(format!("create {}", err_path.display()), e))?;
    let console = match &o.console_socket {
        Some(p) if spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false) => Some(connect_console(p)?),
        _ => None,
    };
    let (parent_ch, child_ch) = sync::pair()?;
    let exe = process::readonly_self()?;

    let annotations = spec.annotations().clone().unwrap_or_default();
    let mut saved = Saved {
        oci_version: spec.version().clone(),
        id: o.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: crate::logging::now_rfc3339(),
        annotations,
        owner: String::new(),
        // A rootless container whose cgroups could not be made has none.
        cgroup: if cg.is_empty() { None } else { Some(cg.clone()) },
        hooks: spec.hooks().clone(),
        has_process: spec.process().is_some(),
        own_pidns: plan.creates(LinuxNamespaceType::Pid),
    };

    // --no-pivot cannot detach the host's /proc and /sys from a user namespace's mount
    // namespace: cover them before the clone, while still privileged.
    let hide_host_fs = o.no_pivot && plan.has(LinuxNamespaceType::User) && plan.creates(LinuxNamespaceType::Mount);
    // Bind sources are opened while privileged, as runc does, for a mapped root that cannot
    // reach them.
    let bind_sources =
        if plan.has(LinuxNamespaceType::User) { crate::rootfs::open_bind_sources(&spec) } else { Vec::new() };
    let mut hider = if hide_host_fs {
        Some(crate::rootfs::Hider::enter(&rootfs).map_err(|e| Error::Msg(e.to_string()))?)
    } else {
        None
    };
    // Namespaces that apply to children only are entered by the parent just around clone.
    let restore = ParentNs::enter(&plan, linux)?;
    let flags = if late_ns { 0 } else { plan.new_flags & !(libc::CLONE_NEWCGROUP | libc::CLONE_NEWTIME) };
    let me = std::process::id() as libc::pid_t;
    // On cgroup v2 the init is born in its cgroup (CLONE_INTO_CGROUP). Elsewhere writing
    // cgroup.procs waits for an RCU grace period (~10 ms): that write overlaps the init's own
    // set-up instead of delaying it.
    let cg_fd = match cg.layout() {
        cgroups::Layout::V2 => cg.unified_dir().and_then(|d| std::fs::File::open(d).ok()),
        _ => None,
    };
    crate::debug!("spawn init: new namespaces {flags:#x}, into cgroup at birth: {}", cg_fd.is_some());
    // runc before 1.1.12 (debug builds only, to show CVE-2024-21626): a handle to the host's
    // /sys/fs/cgroup left open in the init while it changes to process.cwd.
    let leaked =
        crate::faults::weakened("init-host-dirfd").then(|| std::fs::File::open("/sys/fs/cgroup").ok()).flatten();
    let (pid, born_in_cgroup) = process::clone3_fork(flags, cg_fd.as_ref().map(|f| f.as_raw_fd()))?;
    if pid == 0 {
        drop(parent_ch);
        let mut keep = vec![child_ch.fd.as_raw_fd(), fifo.as_raw_fd(), exec_err.as_raw_fd()];
        if let Some(c) = &console {
            keep.push(c.as_raw_fd());
        }
        keep.extend(bind_sources.iter().flatten().map(|f| f.as_raw_fd()));
        keep.extend(leaked.as_ref().map(|f| f.as_raw_fd()));
        process::child_pre_exec(&child_ch, exe.as_raw_fd(), &keep, userns && !late_ns, me);
    }
    undo.child = pid;
    crate::debug!("init pid {pid}");
    // The clone made the init's mount namespace: lend now. An init that makes it later asks.
    if !late_ns {
        if let Some(h) = hider.take() {
            h.lend_and_leave().map_err(|e| Error::Msg(e.to_string()))?;
        }
    }
    restore.leave()?;
    drop(child_ch);
    drop(exe);

    if userns && !late_ns {
        let l = linux.ok_or_else(|| Error::Config("user namespace without linux section".into()))?;
        namespaces::write_id_maps(
            pid,
            l.uid_mappings().as_deref().unwrap_or(&[]),
            l.gid_mappings().as_deref().unwrap_or(&[]),
            deny_setgroups(l),
        )?;
        parent_ch.send(sync::kind::MAPPED, b"").map_err(|e| sync_failed(e, pid, &mut undo))?;
    }
    drop(cg_fd);
    saved.pid = pid;
    crate::faults::crash_point("runtime.create.init-spawned");
    let header = BootHeader {
        id: o.id.clone(),
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        no_pivot: o.no_pivot,
        no_new_keyring: o.no_new_keyring,
        preserve_fds: o.preserve_fds,
        fifo_fd: fifo.as_raw_fd(),
        exec_err_fd: exec_err.as_raw_fd(),
        console_fd: console.as_ref().map(|c| c.as_raw_fd()).unwrap_or(-1),
        cgroup: cg.mount_info(),
        state_creating: String::from_utf8_lossy(&saved.spec_state_json(Status::Creating)).into_owned(),
        state_created: String::from_utf8_lossy(&saved.spec_state_json(Status::Created)).into_owned(),
        debug: g.debug,
        wait_joined: !born_in_cgroup && !late_ns,
        late_ns,
        hide_host_fs,
        bind_sources: bind_sources.iter().map(|f| f.as_ref().map_or(-1, |f| f.as_raw_fd())).collect(),
        exec: None,
    };
    let header_json = serde_json::to_vec(&header).map_err(|e| Error::Msg(format!("encode boot header: {e}")))?;
    let bpf = seccomp.map(|s| s.to_bytes()).unwrap_or_default();
    if late_ns && !born_in_cgroup {
        // Joined before the init forks, so its pid 1 inherits the cgroup.
        cg.add_task(pid)?;
    }
    crate::debug!("send the config to init (seccomp program: {} bytes)", bpf.len());
    parent_ch
        .send(sync::kind::BOOT, &frame(&[&header_json, &config_bytes, &bpf]))
        .map_err(|e| sync_failed(e, pid, &mut undo))?;
    if !born_in_cgroup && !late_ns {
        cg.add_task(pid)?;
        parent_ch.send(sync::kind::JOINED, b"").map_err(|e| sync_failed(e, pid, &mut undo))?;
    }
    drop(fifo);
    drop(exec_err);
    drop(console);

    loop {
        let (k, _payload, fd) = match parent_ch.recv() {
            Ok(m) => m,
            Err(e) => return Err(sync_failed(e, pid, &mut undo)),
        };
        match k {
            sync::kind::HOOKS => {
                crate::debug!("run prestart and createRuntime hooks");
                let hooks = spec.hooks().as_ref();
                // The deprecated prestart hooks get "created" (runtime-tools checks it; crun does
                // the same), createRuntime gets "creating" as the spec's lifecycle says.
                let st = saved.spec_state_json(Status::Created);
                // In the bundle directory, as runc (which changes into it) runs them.
                let dir = Some(saved.bundle.as_path());
                crate::hooks::run_all_in("prestart", hooks.and_then(|h| h.prestart().as_ref()), &st, dir)?;
                let st = saved.spec_state_json(Status::Creating);
                crate::hooks::run_all_in("createRuntime", hooks.and_then(|h| h.create_runtime().as_ref()), &st, dir)?;
                parent_ch.send(sync::kind::HOOKS_DONE, b"")?;
            }
            sync::kind::SECCOMP_FD => {
                let fd = seccomp_fd_of(saved.pid, &_payload, fd)?;
                send_seccomp_fd(&spec, &saved, fd.as_raw_fd())?;
                parent_ch.send(sync::kind::SECCOMP_DONE, b"")?;
            }
            sync::kind::MAPS => {
                let l = linux.ok_or_else(|| Error::Config("user namespace without linux section".into()))?;
                namespaces::write_id_maps(
                    saved.pid,
                    l.uid_mappings().as_deref().unwrap_or(&[]),
                    l.gid_mappings().as_deref().unwrap_or(&[]),
                    deny_setgroups(l),
                )?;
                parent_ch.send(sync::kind::MAPPED, b"")?;
            }
            sync::kind::LEND => {
                if let Some(h) = hider.take() {
                    h.lend_and_leave().map_err(|e| Error::Msg(e.to_string()))?;
                }
                parent_ch.send(sync::kind::LENT, b"")?;
            }
            sync::kind::NEWPID => {
                let b: [u8; 4] = _payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::Msg("bad pid message".into()))?;
                let newpid = i32::from_le_bytes(b);
                // Reap the process that forked it; the new one is our child now (subreaper).
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(saved.pid, &mut st, 0) };
                saved.pid = newpid;
                undo.child = newpid;
                parent_ch.send(sync::kind::PID_ACK, b"")?;
            }
            sync::kind::READY => break,
            other => return Err(Error::Msg(format!("unexpected message {other} from container init"))),
        }
    }
    let pid = saved.pid;
    crate::debug!("init {pid} is ready: waiting on the exec fifo for start");
    saved.pid_start = state::pid_start_time(pid).unwrap_or(0);
    let dir = undo.dir.as_ref().ok_or_else(|| Error::Msg("state dir vanished".into()))?;
    // exec builds its processes from the config as it was at create.
    let cfg_copy = dir.dir.join(CONFIG_COPY);
    std::fs::write(&cfg_copy, &config_bytes).map_err(|e| sys(format!("write {}", cfg_copy.display()), e))?;
    dir.save(&saved)?;
    crate::faults::crash_point("runtime.create.state-saved");
    if let Some(pf) = &o.pid_file {
        crate::debug!("write pid file {}", pf.display());
        write_pid_file(pf, pid)?;
    }
    crate::debug!("container {} created", o.id);
    let dir = undo.disarm();
    Ok(Created { dir, saved })
}

/// The runtime-spec (1.3.0) fields berth does not apply: refused with one line before anything
/// is created, never silently ignored. Idmapped mounts are refused where mounts are made.
pub(crate) fn refuse_unsupported(spec: &Spec) -> Result<(), Error> {
    let refuse = |what: &str, why: &str| Err(Error::Config(format!("{what} is not supported: {why}")));
    if spec.vm().is_some() {
        return refuse("vm", "berth runs containers, not virtual machines");
    }
    if let Some(p) = spec.process() {
        refuse_process(p)?;
    }
    let Some(l) = spec.linux() else { return Ok(()) };
    if l.intel_rdt().is_some() {
        return refuse("linux.intelRdt", "berth does not manage resctrl (Intel RDT) groups");
    }
    if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return refuse("linux.netDevices", "berth does not move host network devices into a container");
    }
    if l.memory_policy().is_some() {
        return refuse("linux.memoryPolicy", "berth does not set NUMA memory policies");
    }
    Ok(())
}

/// The process fields berth does not apply (for create and for `exec --process`).
pub(crate) fn refuse_process(p: &oci_spec::runtime::Process) -> Result<(), Error> {
    if p.exec_cpu_affinity().is_some() {
        return Err(Error::Config(
            "process.execCPUAffinity is not supported: berth does not set a CPU affinity for executing the process"
                .into(),
        ));
    }
    Ok(())
}

/// berth's private scratch directory outside the state root (engines list and clean `--root`,
/// which holds one directory per container and nothing else): the cache of compiled seccomp
/// programs and the console sockets of attached `run`/`exec`. `$BERTH_CACHE_DIR` if set, else
/// `/run/berth-cache` for root, `$XDG_RUNTIME_DIR/berth-cache` for others (or a per-uid dir
/// under the temp dir). Shared by every `--root`: cache entries are keyed and checked by the
/// whole profile, and socket names carry the pid.
pub fn aux_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return PathBuf::from("/run/berth-cache");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("berth-cache"),
        None => std::env::temp_dir().join(format!("berth-cache-{euid}")),
    }
}

/// A non-root caller can write a gid_map only after denying setgroups in the new namespace,
/// unless newgidmap writes it: runc denies it when the gid mappings are exactly the caller's
/// own gid as 0 (anything else needs root or the mapping tool).
fn deny_setgroups(l: &oci_spec::runtime::Linux) -> bool {
    let gids = l.gid_mappings().as_deref().unwrap_or(&[]);
    rootless::euid() != 0
        && gids.len() == 1
        && gids[0].container_id() == 0
        && gids[0].host_id() == rootless::egid()
        && gids[0].size() == 1
}

/// Build (or reuse from the cache in [`aux_dir`]) the seccomp program of a config.
pub(crate) fn prepare_seccomp(
    _g: &Globals,
    s: &oci_spec::runtime::LinuxSeccomp,
) -> Result<crate::seccomp::Prepared, Error> {
    let p = crate::seccomp::prepare_cached(s, &aux_dir().join("seccomp"))?;
    for name in p.unknown_syscalls() {
        crate::logging::debug(&format!("seccomp: unknown syscall {name} skipped"));
    }
    Ok(p)
}

/// runc's checks of a cgroup that exists before the container (wording as runc's): processes
/// in it only warn, a frozen one is refused (the init would hang in it). Nothing is made or
/// removed here: the cgroup is not the container's yet.
fn check_existing_cgroup(cg: &cgroups::Manager) -> Result<(), Error> {
    // A missing cgroup (the usual case) fails both reads.
    let n = cg.all_pids().map(|p| p.len()).unwrap_or(0);
    if n != 0 {
        crate::logging::warn(&format!("container's cgroup is not empty: {n} process(es) found"));
    }
    if cg.is_frozen().unwrap_or(false) {
        return Err(Error::Msg("container's cgroup unexpectedly frozen".into()));
    }
    Ok(())
}

fn sync_failed(e: sync::SyncError, pid: libc::pid_t, undo: &mut Undo) -> Error {
    match e {
        sync::SyncError::Eof => Error::Msg(init_died(pid, undo)),
        e => e.into(),
    }
}

fn init_died(pid: libc::pid_t, undo: &mut Undo) -> String {
    let mut st = 0;
    // SAFETY: reap our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, 0) };
    undo.child = 0;
    if r == pid && libc::WIFSIGNALED(st) {
        let oom = libc::WTERMSIG(st) == libc::SIGKILL
            && undo.cgroup.as_ref().and_then(|c| c.oom_kill_count().ok()).is_some_and(|n| n > 0);
        if oom {
            return "container init was killed by the OOM killer during set-up: the memory limit is too low".into();
        }
        format!("container init was killed by signal {} during set-up", libc::WTERMSIG(st))
    } else {
        "container init exited during set-up".into()
    }
}

/// The seccomp notify fd a process announced by number (`payload`, le i32): a copy taken with
/// pidfd_getfd(2) (the process does not use sendmsg after loading its filter). An fd that came
/// with the message is used as it is.
pub(crate) fn seccomp_fd_of(pid: libc::pid_t, payload: &[u8], fd: Option<OwnedFd>) -> Result<OwnedFd, Error> {
    if let Some(fd) = fd {
        return Ok(fd);
    }
    let n: [u8; 4] =
        payload.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| Error::Msg("bad seccomp fd message".into()))?;
    let target = i32::from_le_bytes(n);
    // SAFETY: pidfd_open with a pid and no flags.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(sys(format!("pidfd_open {pid}"), std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: pidfd_getfd on our pidfd; flags must be 0.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(sys(format!("pidfd_getfd {pid} fd {target}"), std::io::Error::last_os_error()));
    }
    // SAFETY: pidfd_getfd returned a new fd (close-on-exec) that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(crate) fn send_seccomp_fd(spec: &Spec, saved: &Saved, fd: RawFd) -> Result<(), Error> {
    let sec = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .ok_or_else(|| Error::Msg("seccomp fd without seccomp config".into()))?;
    let listener = sec
        .listener_path()
        .as_ref()
        .ok_or_else(|| Error::Config("seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into()))?;
    let mut st = serde_json::to_value(saved.spec_state(Status::Creating)).unwrap_or_default();
    st["pid"] = serde_json::json!(saved.pid);
    let bytes =
        crate::seccomp::process_state_json(&saved.oci_version, saved.pid, st, sec.listener_metadata().as_deref());
    // SAFETY: fd is valid for the duration of this call (owned by the caller).
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    crate::seccomp::send_to_listener(listener, b, &bytes)?;
    Ok(())
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(|e| sys(format!("write pid file {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| sys(format!("write pid file {}", path.display()), e))
}

/// Namespaces the parent enters for its children (pid by path, a new time ns) and leaves
/// right after clone, so that hooks it runs later stay in the runtime's namespaces.
struct ParentNs {
    saved: Vec<(libc::c_int, std::fs::File)>,
}

impl ParentNs {
    fn enter(plan: &Plan, linux: Option<&oci_spec::runtime::Linux>) -> Result<ParentNs, Error> {
        let mut saved = Vec::new();
        if let Some(p) = plan.joins(LinuxNamespaceType::Pid) {
            let cur = std::fs::File::open("/proc/self/ns/pid_for_children")
                .map_err(|e| sys("open /proc/self/ns/pid_for_children", e))?;
            let f = namespaces::open_ns(LinuxNamespaceType::Pid, p)?;
            namespaces::setns(LinuxNamespaceType::Pid, p, &f)?;
            saved.push((libc::CLONE_NEWPID, cur));
        }
        if let Some(p) = plan.joins(LinuxNamespaceType::Time) {
            let cur = std::fs::File::open("/proc/self/ns/time_for_children")
                .map_err(|e| sys("open /proc/self/ns/time_for_children", e))?;
            let f = namespaces::open_ns(LinuxNamespaceType::Time, p)?;
            namespaces::setns(LinuxNamespaceType::Time, p, &f)?;
            saved.push((libc::CLONE_NEWTIME, cur));
        } else if plan.creates(LinuxNamespaceType::Time) {
            let cur = std::fs::File::open("/proc/self/ns/time_for_children")
                .map_err(|e| sys("open /proc/self/ns/time_for_children", e))?;
            if let Some(l) = linux {
                namespaces::prepare_time_ns(l)?;
            }
            saved.push((libc::CLONE_NEWTIME, cur));
        }
        Ok(ParentNs { saved })
    }

    fn leave(self) -> Result<(), Error> {
        for (flag, f) in self.saved {
            // SAFETY: setns back into the namespace we came from.
            if unsafe { libc::setns(f.as_raw_fd(), flag) } != 0 {
                return Err(sys("setns back to the runtime's namespace", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

/// Release a created container's init (write to its fifo) and wait until it has executed the
/// user's process (its fifo end closes at execve).
pub fn start(g: &Globals, id: &str) -> Result<(), Error> {
    let dir = ContainerDir::open(&g.root, id)?;
    let saved = dir.load()?;
    let status = dir.status(&saved);
    // runc's words for each state.
    match status {
        Status::Created => {}
        Status::Stopped => return Err(Error::Msg("cannot start a container that has stopped".into())),
        Status::Running => return Err(Error::Msg("cannot start an already running container".into())),
        s => return Err(Error::Msg(format!("cannot start a container in the {} state", s.as_str()))),
    }
    let fifo = dir.fifo();
    crate::debug!("start container {id}: release init {} through {}", saved.pid, fifo.display());
    crate::faults::crash_point("runtime.start.before-exec-fifo");
    let c =
        std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).map_err(|_| Error::Msg("bad fifo path".into()))?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Err(Error::Msg(format!("cannot start container {id}: its init is gone")));
        }
        return Err(sys(format!("open {}", fifo.display()), e));
    }
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: write one byte from a valid buffer.
    if unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
        return Err(sys(format!("write {}", fifo.display()), std::io::Error::last_os_error()));
    }
    let _ = std::fs::remove_file(&fifo);
    if !saved.has_process {
        // The init had nothing to run: released, it exits and the container is stopped.
        return Err(Error::Msg(format!("cannot start container {id}: config.json has no process")));
    }
    // Wait for the reader (the init) to go away: execve closed it, or the init died.
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: 0, revents: 0 };
    loop {
        // SAFETY: valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break;
    }
    let err = std::fs::read_to_string(dir.dir.join(state::EXEC_ERR)).unwrap_or_default();
    let _ = std::fs::remove_file(dir.dir.join(state::EXEC_ERR));
    if !err.trim().is_empty() {
        return Err(Error::Msg(format!("cannot start container {id}: {}", err.trim())));
    }
    crate::debug!("container {id} started");
    let st = saved.spec_state_json(Status::Running);
    // runtime-spec 1.3: a failing poststart hook is an error and the container is stopped
    // (runc does the same); delete then runs the poststop hooks.
    if let Err(e) = crate::hooks::run_all("poststart", saved.hooks.as_ref().and_then(|h| h.poststart().as_ref()), &st) {
        crate::debug!("poststart hook failed: kill container {id}");
        destroy_processes(&saved);
        return Err(e.into());
    }
    Ok(())
}

pub fn state_json(g: &Globals, id: &str) -> Result<String, Error> {
    let dir = ContainerDir::open(&g.root, id)?;
    let saved = dir.load()?;
    let status = dir.status(&saved);
    let mut v = serde_json::to_value(saved.spec_state(status)).map_err(|e| Error::Msg(e.to_string()))?;
    // runc also reports these; engines read "created" and "rootfs".
    v["rootfs"] = serde_json::json!(saved.rootfs);
    v["created"] = serde_json::json!(listing::go_rfc3339_nano(&saved.created));
    v["owner"] = serde_json::json!(saved.owner);
    if status == Status::Stopped {
        v["pid"] = serde_json::json!(0);
    }
    serde_json::to_string_pretty(&v).map_err(|e| Error::Msg(e.to_string()))
}

pub fn parse_signal(s: &str) -> Result<i32, Error> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        // 0 is kill(2)'s existence check, as runc passes it on.
        if (0..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Msg(format!("unknown signal {s:?}")));
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => {
            if let Some(rt) = name.strip_prefix("RTMIN") {
                let off: i32 = if rt.is_empty() { 0 } else { rt.trim_start_matches('+').parse().unwrap_or(-1) };
                if (0..=30).contains(&off) {
                    return Ok(libc::SIGRTMIN() + off);
                }
            }
            return Err(Error::Msg(format!("unknown signal {s:?}")));
        }
    };
    Ok(n)
}

pub(crate) fn pidfd_of(saved: &Saved) -> Option<OwnedFd> {
    let fd = process::pidfd::open(saved.pid).ok()?;
    // The pid is pinned by the pidfd now: check it is still our process.
    if state::pid_start_time(saved.pid) != Some(saved.pid_start) {
        return None;
    }
    Some(fd)
}

pub fn kill(g: &Globals, id: &str, sig: i32, all: bool) -> Result<(), Error> {
    let dir = ContainerDir::open(&g.root, id)?;
    let saved = dir.load()?;
    let status = dir.status(&saved);
    crate::debug!("kill container {id} ({}): signal {sig}, all processes: {all}", status.as_str());
    // runc's words: containerd's shim reads "container not running" as "already gone" (and so
    // can stop and remove a container that exited on its own).
    if status == Status::Stopped && !all {
        return Err(Error::Msg(NOT_RUNNING.into()));
    }
    if all && sig != 0 {
        if let Some(cg) = &saved.cgroup {
            // The init is in the cgroup too: once the cgroup is signalled, we are done.
            crate::debug!("send signal {sig} to every process of the cgroup");
            cg.kill_all(to_signal(sig)?)?;
            return Ok(());
        }
        if status != Status::Stopped {
            // No cgroup (rootless): the processes found through the init.
            for p in pids_without_cgroup(&saved) {
                // SAFETY: kill with a pid and a signal number; ESRCH (gone meanwhile) is fine.
                unsafe { libc::kill(p, sig) };
            }
            return Ok(());
        }
    }
    if status == Status::Stopped {
        return Ok(());
    }
    let Some(fd) = pidfd_of(&saved) else {
        return Err(Error::Msg(NOT_RUNNING.into()));
    };
    crate::debug!("send signal {sig} to init {}", saved.pid);
    process::pidfd::send_signal(&fd, sig).map_err(|e| sys(format!("send signal {sig} to pid {}", saved.pid), e))
}

pub fn delete(g: &Globals, id: &str, force: bool) -> Result<(), Error> {
    let dir = match ContainerDir::open(&g.root, id) {
        Ok(d) => d,
        Err(StateError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let saved = match dir.load() {
        Ok(s) => s,
        // A directory without state is what an interrupted create leaves: its cgroup (with
        // the init, when one was spawned) if it got that far, then the directory.
        Err(StateError::NotFound(_)) => {
            if let Some(cg) = dir.load_cgroup() {
                crate::debug!("interrupted create: kill and remove its cgroup");
                let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
                cg.destroy()?;
            }
            dir.remove()?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let status = dir.status(&saved);
    crate::debug!("delete container {id} ({}), force: {force}", status.as_str());
    // A created container is deleted without --force, as runc does: containerd's shim deletes
    // tasks that were created but never started without passing --force.
    if status != Status::Stopped {
        if !force && status != Status::Created {
            return Err(Error::Msg(format!("cannot delete container {id} that is not stopped: {}", status.as_str())));
        }
        crate::debug!("kill the container's processes");
        destroy_processes(&saved);
        crate::faults::crash_point("runtime.delete.killed");
    } else if let Some(cg) = &saved.cgroup {
        // Stray processes left in the cgroup (no own pid namespace) go too.
        if !saved.own_pidns {
            let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
        }
    }
    if let Some(cg) = &saved.cgroup {
        crate::debug!("destroy cgroup");
        cg.destroy()?;
        crate::faults::crash_point("runtime.delete.cgroup-removed");
    }
    crate::debug!("run poststop hooks");
    let st = saved.spec_state_json(Status::Stopped);
    // The spec: a failing poststop hook is logged and the deletion goes on.
    crate::hooks::run_all_warn("poststop", saved.hooks.as_ref().and_then(|h| h.poststop().as_ref()), &st);
    crate::debug!("remove state directory {}", dir.dir.display());
    dir.remove()?;
    Ok(())
}

fn destroy_processes(saved: &Saved) {
    if saved.cgroup.is_none() && !saved.own_pidns {
        for p in pids_without_cgroup(saved) {
            // SAFETY: kill with a pid and a signal number.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    if let Some(cg) = &saved.cgroup {
        if cg.is_frozen().unwrap_or(false) {
            let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
        }
    }
    if let Some(fd) = pidfd_of(saved) {
        let _ = process::pidfd::send_signal(&fd, libc::SIGKILL);
        process::pidfd::wait(&fd, Some(std::time::Duration::from_secs(5)));
    }
    if let Some(cg) = &saved.cgroup {
        let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
    }
}

/// The processes of a running container that has no cgroup of its own (rootless, cgroups not
/// writable): with its own pid namespace every process in that namespace, else the init and its
/// descendants. Empty when the init is gone.
pub(crate) fn pids_without_cgroup(saved: &Saved) -> Vec<i32> {
    let Some(_pin) = pidfd_of(saved) else { return Vec::new() };
    let ns_of = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let init_ns = ns_of(saved.pid);
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The ppid is the 2nd field after the parenthesised command name.
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
        procs.push((pid, ppid.unwrap_or(0)));
    }
    if saved.own_pidns && init_ns.is_some() {
        return procs.into_iter().filter(|(p, _)| ns_of(*p) == init_ns).map(|(p, _)| p).collect();
    }
    let mut out = vec![saved.pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(procs.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// The user name of `uid` in /etc/passwd, else "#UID" (as runc's `list` shows owners).
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

pub struct ListEntry {
    /// The ociVersion of the container's config.
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    pub annotations: std::collections::HashMap<String, String>,
}

pub fn list(g: &Globals) -> Vec<ListEntry> {
    let mut out = Vec::new();
    for id in state::list_ids(&g.root) {
        let Ok(dir) = ContainerDir::open(&g.root, &id) else { continue };
        let Ok(saved) = dir.load() else { continue };
        let status = dir.status(&saved);
        out.push(ListEntry {
            oci_version: saved.oci_version,
            id,
            pid: if status == Status::Stopped { 0 } else { saved.pid },
            status,
            bundle: saved.bundle,
            rootfs: saved.rootfs,
            created: saved.created,
            owner: if saved.owner.is_empty() {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(&dir.dir).map(|m| user_name(m.uid())).unwrap_or_else(|_| "root".into())
            } else {
                saved.owner
            },
            annotations: saved.annotations,
        });
    }
    out
}

/// Attached `run`: create, start, wait for the init (our child) and return its exit code.
pub fn run(g: &Globals, o: &CreateOpts, detach: bool, keep: bool) -> Result<i32, Error> {
    // Attached, a terminal and no console socket: berth holds the pty itself (as runc does).
    let mut relay = None;
    let relay_opts;
    let o = if !detach && o.console_socket.is_none() && tty_relay::wants_terminal(&o.bundle) {
        let r = tty_relay::TtyRelay::listen()?;
        relay_opts = CreateOpts {
            id: o.id.clone(),
            bundle: o.bundle.clone(),
            console_socket: Some(r.path().to_path_buf()),
            pid_file: o.pid_file.clone(),
            no_pivot: o.no_pivot,
            no_new_keyring: o.no_new_keyring,
            preserve_fds: o.preserve_fds,
        };
        relay = Some(r);
        &relay_opts
    } else {
        o
    };
    let created = create(g, o)?;
    let pid = created.saved.pid;
    drop(created.dir);
    if let Some(r) = relay.as_mut() {
        if let Err(e) = r.receive_master() {
            let _ = delete(g, &o.id, true);
            return Err(e);
        }
        r.sync_size();
    }
    if let Err(e) = start(g, &o.id) {
        let _ = delete(g, &o.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    crate::debug!("wait for init {pid}, forwarding signals");
    // Forward the usual terminating signals to the container while we wait.
    let code = match relay {
        Some(r) => r.relay(pid),
        None => wait_forwarding(pid),
    };
    crate::debug!("init {pid} exited: code {code}");
    if !keep {
        delete(g, &o.id, true)?;
    }
    Ok(code)
}

static FWD_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FWD_PID.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

pub(crate) fn wait_forwarding(pid: libc::pid_t) -> i32 {
    FWD_PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH] {
        // SAFETY: installing an async-signal-safe handler.
        unsafe { libc::signal(s, forward as *const () as libc::sighandler_t) };
    }
    loop {
        let mut st = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            if libc::WIFEXITED(st) {
                return libc::WEXITSTATUS(st);
            }
            if libc::WIFSIGNALED(st) {
                return 128 + libc::WTERMSIG(st);
            }
            continue;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return 255;
        }
    }
}

fn to_signal(sig: i32) -> Result<nix::sys::signal::Signal, Error> {
    nix::sys::signal::Signal::try_from(sig).map_err(|_| {
        Error::Msg(format!("signal {sig} cannot be sent to every process (kill --all takes a standard signal)"))
    })
}
