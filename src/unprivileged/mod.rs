//! The engine for an ordinary user (no root, no daemon): per-user paths, and the user and
//! mount namespace every engine command of that user runs in.
//!
//! As podman does, the first engine command of a user makes a user namespace mapping the
//! user to 0 and the user's subordinate ranges (/etc/subuid, /etc/subgid, written by the
//! setuid `newuidmap`/`newgidmap`) to 1.., with a mount namespace of its own, and leaves a
//! small process holding both ("the keeper"). Every later command joins them: as root there,
//! the engine unpacks layers with their owners (stored on disk shifted into the user's range),
//! mounts overlayfs, makes network namespaces and runs the runtime, and the mounts of one
//! command are there for the next. The keeper's pid is in `$XDG_RUNTIME_DIR/berth-engine`.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Set in the environment of an engine command that runs in a user's namespace (children
/// such as the shim and its clean-up command inherit it).
pub const ACTIVE_ENV: &str = "BERTH_UNPRIVILEGED";

#[derive(Debug, thiserror::Error)]
pub enum UnprivError {
    #[error("{op} {}: {err}", path.display())]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
    #[error("{0}: {1}")]
    Sys(String, std::io::Error),
    #[error("{0}")]
    Msg(String),
}

fn io(op: &'static str, path: &Path, err: std::io::Error) -> UnprivError {
    UnprivError::Io { op, path: path.to_path_buf(), err }
}

fn sys(what: impl Into<String>) -> UnprivError {
    UnprivError::Sys(what.into(), std::io::Error::last_os_error())
}

/// True when this process is an engine command of an ordinary user (outside its namespace).
pub fn needed() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() != 0 }
}

/// True in an engine command that runs in a user's namespace.
pub fn active() -> bool {
    std::env::var_os(ACTIVE_ENV).is_some_and(|v| !v.is_empty())
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from).filter(|p| p.is_absolute())
}

/// The user's engine data: `$XDG_DATA_HOME/berth`, else `~/.local/share/berth`.
pub fn data_root() -> Result<PathBuf, UnprivError> {
    if let Some(d) = env_dir("XDG_DATA_HOME") {
        return Ok(d.join("berth"));
    }
    env_dir("HOME").map(|h| h.join(".local/share/berth")).ok_or_else(|| {
        UnprivError::Msg("neither $XDG_DATA_HOME nor $HOME is set: give --data-root for the engine's data".into())
    })
}

/// Where the keeper's pid, the lock and the network namespace files live:
/// `$XDG_RUNTIME_DIR/berth-engine` (the runtime's state root holds container state only).
pub fn run_dir() -> Result<PathBuf, UnprivError> {
    env_dir("XDG_RUNTIME_DIR").map(|d| d.join("berth-engine")).ok_or_else(|| {
        UnprivError::Msg("$XDG_RUNTIME_DIR is not set: the engine keeps its per-user state there".into())
    })
}

/// When `$XDG_RUNTIME_DIR` is unset, does what podman does: `/run/user/UID` when it is the
/// user's (mode 0700), else `$TMPDIR/berth-run-UID` (made 0700; it must be the user's, not a
/// symlink), and sets the variable for this command and its children (the runtime's state
/// root, the shims). Returns the line to print when the temporary directory is used, which a
/// reboot empties as it does a session's.
pub fn default_runtime_dir() -> Result<Option<String>, UnprivError> {
    use std::os::unix::fs::MetadataExt;
    if env_dir("XDG_RUNTIME_DIR").is_some() {
        return Ok(None);
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let own =
        |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o777 == 0o700);
    let session = PathBuf::from(format!("/run/user/{uid}"));
    let (dir, line) = if own(&session) {
        (session, None)
    } else {
        let tmp = std::env::temp_dir().join(format!("berth-run-{uid}"));
        match fs::DirBuilder::new().mode(0o700).create(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create", &tmp, e)),
        }
        if !own(&tmp) {
            return Err(UnprivError::Msg(format!(
                "$XDG_RUNTIME_DIR is not set and {} is not a directory of yours with mode 0700: set XDG_RUNTIME_DIR",
                tmp.display()
            )));
        }
        let line = format!(
            "$XDG_RUNTIME_DIR is not set: runtime state goes to {} (set it to a directory of yours, as a login session's /run/user/{uid})",
            tmp.display()
        );
        (tmp, Some(line))
    };
    // SAFETY: single-threaded: nothing reads the environment concurrently.
    std::env::set_var("XDG_RUNTIME_DIR", &dir);
    Ok(line)
}

/// The run dir of a container's shim in an ordinary user's engine (its sockets and the
/// runtime's pid file): `$XDG_RUNTIME_DIR/berth-engine/shims/ID`, which a reboot empties; the
/// shim's state (shim.json) and the log stay in the data root. None for root's engine.
pub fn shim_dir(id: &str) -> Option<PathBuf> {
    if !active() {
        return None;
    }
    run_dir().ok().map(|d| d.join("shims").join(id))
}

/// The Engine API service's directory for an ordinary user: `$XDG_RUNTIME_DIR/berth` (its
/// default socket `docker.sock` there, as rootless docker's `$XDG_RUNTIME_DIR/docker.sock`).
pub fn api_dir() -> Result<PathBuf, UnprivError> {
    env_dir("XDG_RUNTIME_DIR").map(|d| d.join("berth")).ok_or_else(|| {
        UnprivError::Msg("$XDG_RUNTIME_DIR is not set: give --host unix:///PATH for the API socket".into())
    })
}

/// One subordinate range of a user: (first host id, count).
type Range = (u32, u32);

/// The user's ranges in an /etc/subuid-style file (by name or by number).
pub(crate) fn sub_ranges(text: &str, name: &str, id: u32) -> Vec<Range> {
    let mut v = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split(':').collect();
        if f.len() != 3 || !(f[0] == name || f[0].parse::<u32>().ok() == Some(id)) {
            continue;
        }
        if let (Ok(start), Ok(count)) = (f[1].parse::<u32>(), f[2].parse::<u32>()) {
            if count > 0 {
                v.push((start, count));
            }
        }
    }
    v
}

fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name out
    // before any other call that could reuse it.
    unsafe {
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return uid.to_string();
        }
        std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
    }
}

/// The newuidmap/newgidmap arguments for 0 → `id`, 1.. → the ranges.
fn map_args(id: u32, ranges: &[Range]) -> Vec<String> {
    let mut args = vec!["0".to_string(), id.to_string(), "1".to_string()];
    let mut next = 1u64;
    for (start, count) in ranges {
        args.extend([next.to_string(), start.to_string(), count.to_string()]);
        next += u64::from(*count);
    }
    args
}

/// Start time (clock ticks after boot) of a live process, None when gone (or a zombie).
fn proc_start(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = s.rsplit_once(')')?.1.split_whitespace();
    if matches!(f.next(), Some("Z" | "X")) {
        return None;
    }
    f.nth(18)?.parse().ok()
}

fn pipe() -> Result<(OwnedFd, OwnedFd), UnprivError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(sys("pipe2"));
    }
    // SAFETY: both fds were just made and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn put(fd: &OwnedFd) -> bool {
    // SAFETY: writing one byte from a valid buffer.
    unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) == 1 }
}

fn get(fd: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a valid buffer.
        let r = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return r == 1;
    }
}

/// The keeper: made in a forked child, it never returns.
fn keeper(to_parent: OwnedFd, from_parent: OwnedFd) -> ! {
    let fail = || -> ! {
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(1) }
    };
    // SAFETY: unshare with a constant flag, in a single-threaded child.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 || !put(&to_parent) || !get(&from_parent) {
        fail();
    }
    // SAFETY: plain syscalls with constant arguments; the parent has written our maps.
    let ok = unsafe {
        libc::setresgid(0, 0, 0) == 0
            && libc::setresuid(0, 0, 0) == 0
            && libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) == 0
    };
    if !ok || !put(&to_parent) {
        fail();
    }
    drop(to_parent);
    drop(from_parent);
    // SAFETY: detaching from the caller's session and terminal, then closing every fd we
    // inherited (stdio goes to /dev/null): the keeper holds nothing of the command.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        for fd in 3..1024 {
            libc::close(fd);
        }
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        loop {
            libc::pause();
        }
    }
}

/// Makes the namespaces and their keeper; returns the keeper's pid.
fn create(warn: &mut Vec<String>) -> Result<i32, UnprivError> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let name = user_name(uid);
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let uids = sub_ranges(&read("/etc/subuid"), &name, uid);
    let gids = sub_ranges(&read("/etc/subgid"), &name, uid);
    let (c_read, p_write) = pipe()?;
    let (p_read, c_write) = pipe()?;
    // SAFETY: the engine command is single-threaded here; the child only makes syscalls.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(sys("fork"));
    }
    if pid == 0 {
        drop(p_read);
        drop(p_write);
        keeper(c_write, c_read);
    }
    drop(c_read);
    drop(c_write);
    let kill = |e: UnprivError| {
        // SAFETY: killing and reaping the child we forked.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        e
    };
    if !get(&p_read) {
        return Err(kill(UnprivError::Msg("the user namespace could not be made (unshare failed)".into())));
    }
    let mapped = if uids.is_empty() || gids.is_empty() {
        warn.push(format!(
            "no subordinate ids for {name} in /etc/subuid and /etc/subgid: only your own id is mapped, so images \
             whose files belong to other users cannot be used (add ranges: usermod --add-subuids 100000-165535 \
             --add-subgids 100000-165535 {name})"
        ));
        let w = |f: &str, text: String| {
            let p = PathBuf::from(format!("/proc/{pid}/{f}"));
            fs::write(&p, text).map_err(|e| io("write", &p, e))
        };
        w("setgroups", "deny".into())
            .and_then(|()| w("uid_map", format!("0 {uid} 1\n")))
            .and_then(|()| w("gid_map", format!("0 {gid} 1\n")))
    } else {
        let run = |tool: &str, id: u32, r: &[Range]| -> Result<(), UnprivError> {
            let o = std::process::Command::new(tool)
                .arg(pid.to_string())
                .args(map_args(id, r))
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| UnprivError::Msg(format!("run {tool} (package uidmap): {e}")))?;
            if !o.status.success() {
                let err = String::from_utf8_lossy(&o.stderr);
                return Err(UnprivError::Msg(format!("{tool}: {}", err.trim())));
            }
            Ok(())
        };
        run("newuidmap", uid, &uids).and_then(|()| run("newgidmap", gid, &gids))
    };
    if let Err(e) = mapped {
        return Err(kill(e));
    }
    if !put(&p_write) || !get(&p_read) {
        return Err(kill(UnprivError::Msg("the user namespace's keeper failed to set up".into())));
    }
    Ok(pid)
}

fn join(pid: i32) -> Result<(), UnprivError> {
    let open = |ns: &str| {
        let p = PathBuf::from(format!("/proc/{pid}/ns/{ns}"));
        fs::File::open(&p).map_err(|e| io("open", &p, e))
    };
    let (user, mnt) = (open("user")?, open("mnt")?);
    let cwd = std::env::current_dir().ok();
    // SAFETY: setns with fds we hold; the process is single-threaded here.
    unsafe {
        if libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) != 0 {
            return Err(sys(format!("join the user namespace of {pid}")));
        }
        if libc::setns(mnt.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
            return Err(sys(format!("join the mount namespace of {pid}")));
        }
        if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
            return Err(sys("become root in the user namespace"));
        }
        // Allowed when the ranges were written by newgidmap; harmless to fail otherwise.
        libc::setgroups(0, std::ptr::null());
    }
    if let Some(d) = cwd {
        let _ = std::env::set_current_dir(d);
    }
    Ok(())
}

/// Resource limits of an ordinary user's container need a cgroup v2 subtree delegated to the
/// user (what systemd's user@.service gives): the parent of this process's cgroup, writable,
/// on a pure v2 host, where the runtime places the container. Otherwise one line says so.
pub fn check_limits(flag: &str) -> Result<(), UnprivError> {
    if !active() {
        return Ok(());
    }
    match delegated_v2() {
        Some(true) => Ok(()),
        v2 => Err(UnprivError::Msg(format!(
            "{flag}: an unprivileged user's limits need a cgroup v2 subtree delegated to the user (systemd's user@.service with Delegate=yes); this host has {}",
            if v2.is_some() { "none writable for this user" } else { "cgroup v1 controllers" }
        ))),
    }
}

/// None on a host with cgroup v1 controllers; on a pure cgroup v2 host, whether the parent of
/// this process's cgroup is writable (delegated to the user).
fn delegated_v2() -> Option<bool> {
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    let own = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string)));
    let parent = own
        .as_deref()
        .map(|p| Path::new("/sys/fs/cgroup").join(p.trim_start_matches('/')))
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let writable = parent.as_ref().is_some_and(|p| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok());
    v2.then_some(writable)
}

/// The outside id mapped to 0 here, and how many ids follow it (the subordinate range):
/// from `/proc/self/{uid_map,gid_map}` of the user's namespace.
fn own_map(file: &str) -> Option<(u32, u64)> {
    let text = fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    let mut host = None;
    let mut more = 0u64;
    for l in text.lines() {
        let f: Vec<u64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if f.len() != 3 {
            continue;
        }
        if f[0] == 0 {
            host = u32::try_from(f[1]).ok();
        } else {
            more += f[2];
        }
    }
    host.map(|h| (h, more))
}

/// The id maps of `--userns keep-id` for the user's `id` (host) with `more` subordinate ids:
/// container 0..id → 1..=id, id → 0 (the user), id+1.. → id+1.. (as podman's).
fn keep_id_maps(id: u32, more: u64) -> Vec<serde_json::Value> {
    let m = |c: u64, h: u64, n: u64| serde_json::json!({"containerID": c, "hostID": h, "size": n});
    let id = u64::from(id);
    let mut v = Vec::new();
    let below = id.min(more);
    if below > 0 {
        v.push(m(0, 1, below));
    }
    v.push(m(id, 0, 1));
    if more > id {
        v.push(m(id + 1, id + 1, more - id));
    }
    v
}

/// `--userns keep-id`: the container gets a user namespace of its own in which the user has
/// its host id (and, unless `-u` was given, runs as that user, with its host gid).
pub fn keep_id(spec: &mut serde_json::Value, as_user: bool) -> Result<(), UnprivError> {
    let bad = || UnprivError::Msg("--userns keep-id: no id map in the user's namespace".into());
    let (uid, umore) = own_map("uid_map").ok_or_else(bad)?;
    let (gid, gmore) = own_map("gid_map").ok_or_else(bad)?;
    let Some(root) = spec.as_object_mut() else { return Err(bad()) };
    let linux = root.entry("linux").or_insert_with(|| serde_json::json!({}));
    linux["uidMappings"] = serde_json::Value::Array(keep_id_maps(uid, umore));
    linux["gidMappings"] = serde_json::Value::Array(keep_id_maps(gid, gmore));
    let Some(l) = linux.as_object_mut() else { return Err(bad()) };
    if let Some(a) = l.entry("namespaces").or_insert_with(|| serde_json::json!([])).as_array_mut() {
        a.retain(|n| n["type"] != "user");
        a.push(serde_json::json!({"type": "user"}));
    }
    if as_user {
        spec["process"]["user"] = serde_json::json!({"uid": uid, "gid": gid});
    }
    Ok(())
}

/// Whether `id` is mapped in this process's user namespace (`file`: uid_map or gid_map).
fn mapped(file: &str, id: u32) -> bool {
    let text = fs::read_to_string(format!("/proc/self/{file}")).unwrap_or_default();
    text.lines().any(|l| {
        let f: Vec<u64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        f.len() == 3 && f[0] <= u64::from(id) && u64::from(id) < f[0] + f[2]
    })
}

/// A container config for the user's namespace: mount options naming an id the namespace
/// does not map (devpts' `gid=5` with only the user's own id) are dropped, as runc's rootless
/// config does, since the kernel refuses them; so are additional groups where setgroups(2)
/// is denied. With the host's network, sysfs becomes a read-only bind of /sys; on cgroup v2
/// without a delegated subtree there is no cgroup mount.
pub fn adapt_spec(spec: &mut serde_json::Value) {
    // Without subordinate ranges setgroups(2) is denied in the namespace: no additional groups.
    if fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny") {
        if let Some(u) = spec.pointer_mut("/process/user").and_then(|u| u.as_object_mut()) {
            u.remove("additionalGids");
        }
    }
    // A network namespace made by the engine (joined by path) is owned by the user's
    // namespace, not by one the container makes for itself (keep-id).
    let nss = spec.pointer("/linux/namespaces").and_then(|n| n.as_array()).cloned().unwrap_or_default();
    let own_userns = nss.iter().any(|n| n["type"] == "user" && n.get("path").is_none());
    let own_netns = nss.iter().any(|n| n["type"] == "network" && (n.get("path").is_none() || !own_userns));
    let Some(mounts) = spec.pointer_mut("/mounts").and_then(|m| m.as_array_mut()) else { return };
    // On cgroup v2 without a delegated subtree the container has no cgroup of its own to
    // mount (the runtime leaves it in the user's): no cgroup filesystem at /sys/fs/cgroup.
    if delegated_v2() == Some(false) {
        mounts.retain(|m| m["type"] != "cgroup" && m["type"] != "cgroup2");
    }
    for m in mounts.iter_mut() {
        // sysfs can be mounted only in a network namespace of our own (not --network host):
        // the host's /sys, bound read-only, as runc's rootless config has it.
        if !own_netns && m["type"] == "sysfs" {
            *m = serde_json::json!({"destination": m["destination"], "type": "none", "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        }
    }
    for m in mounts {
        let Some(opts) = m.get_mut("options").and_then(|o| o.as_array_mut()) else { continue };
        opts.retain(|o| {
            let Some(o) = o.as_str() else { return true };
            let id = |p: &str| o.strip_prefix(p).and_then(|v| v.parse::<u32>().ok());
            match (id("uid="), id("gid=")) {
                (Some(u), _) => mapped("uid_map", u),
                (_, Some(g)) => mapped("gid_map", g),
                _ => true,
            }
        });
    }
}

/// Joins the user's namespaces, making them (and their keeper) first when needed. Returns
/// warnings to print (one line each). Must run before any thread is started.
pub fn enter() -> Result<Vec<String>, UnprivError> {
    let dir = run_dir()?;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| io("create", &dir, e))?;
    let lock_path = dir.join("keeper.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| io("open", &lock_path, e))?;
    // SAFETY: flock on an fd we hold; released when it is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(sys(format!("lock {}", lock_path.display())));
    }
    let pid_path = dir.join("keeper.pid");
    let recorded = fs::read_to_string(&pid_path).ok().and_then(|s| {
        let (p, t) = s.trim().split_once(' ')?;
        Some((p.parse::<i32>().ok()?, t.parse::<u64>().ok()?))
    });
    let mut warn = Vec::new();
    let pid = match recorded {
        Some((p, t)) if proc_start(p) == Some(t) => p,
        _ => {
            let p = create(&mut warn)?;
            let t = proc_start(p).unwrap_or(0);
            let tmp = dir.join("keeper.pid.tmp");
            let mut f = fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
            f.write_all(format!("{p} {t}\n").as_bytes()).map_err(|e| io("write", &tmp, e))?;
            fs::rename(&tmp, &pid_path).map_err(|e| io("rename", &pid_path, e))?;
            p
        }
    };
    join(pid)?;
    drop(lock);
    // SAFETY: single-threaded: nothing reads the environment concurrently.
    std::env::set_var(ACTIVE_ENV, "1");
    std::env::set_var("BERTH_NETNS_DIR", dir.join("netns"));
    Ok(warn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_map_args() {
        let t = "alice:100000:65536\nbob:200000:1000\n1001:300000:10\nbad line\nalice:400000:0\n";
        assert_eq!(sub_ranges(t, "alice", 1000), vec![(100000, 65536)]);
        assert_eq!(sub_ranges(t, "carol", 1001), vec![(300000, 10)]);
        assert!(sub_ranges(t, "dave", 5).is_empty());
        let v = keep_id_maps(1000, 65536);
        assert_eq!(
            serde_json::Value::Array(v).to_string(),
            r#"[{"containerID":0,"hostID":1,"size":1000},{"containerID":1000,"hostID":0,"size":1},{"containerID":1001,"hostID":1001,"size":64536}]"#
        );
        assert_eq!(keep_id_maps(1000, 0).len(), 1);
        assert_eq!(
            map_args(1000, &[(100000, 65536), (300000, 10)]),
            ["0", "1000", "1", "1", "100000", "65536", "65537", "300000", "10"]
        );
    }
}
