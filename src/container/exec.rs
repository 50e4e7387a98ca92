//! `berth exec`: run a new process inside a running container.

use super::state::{ContainerDir, Status};
use super::{sys, Error, Globals};
use crate::process::{self, sync, BootHeader, ExecInfo};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Process, Spec};
use std::collections::HashSet;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Default, Clone)]
pub struct ExecOpts {
    pub id: String,
    pub args: Vec<String>,
    pub process_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub pidfd_socket: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub tty: bool,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub process_label: Option<String>,
    pub apparmor: Option<String>,
    pub no_new_privs: bool,
    pub caps: Vec<String>,
    pub preserve_fds: i32,
    pub cgroup: Option<String>,
    pub ignore_paused: bool,
    /// Descriptors to give the process as its stdin, stdout and stderr (instead of the
    /// caller's): for a caller that serves many clients (the Engine API service).
    pub stdio: Option<[RawFd; 3]>,
}

const NS_ORDER: [(LinuxNamespaceType, &str, &str); 7] = [
    (LinuxNamespaceType::User, "user", "user"),
    (LinuxNamespaceType::Ipc, "ipc", "ipc"),
    (LinuxNamespaceType::Uts, "uts", "uts"),
    (LinuxNamespaceType::Network, "net", "network"),
    (LinuxNamespaceType::Cgroup, "cgroup", "cgroup"),
    (LinuxNamespaceType::Time, "time", "time"),
    (LinuxNamespaceType::Mount, "mnt", "mount"),
];

fn ns_inode(path: &str) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

fn build_process(o: &ExecOpts, spec: &Spec) -> Result<Process, Error> {
    let mut p: Process = match &o.process_file {
        Some(f) => {
            let data =
                std::fs::read(f).map_err(|e| Error::Config(format!("read process file {}: {e}", f.display())))?;
            serde_json::from_slice(&data)
                .map_err(|e| Error::Config(format!("parse process file {}: {e}", f.display())))?
        }
        None => {
            let mut p = spec.process().clone().unwrap_or_default();
            if o.args.is_empty() {
                return Err(Error::Config("exec needs a command (or --process FILE)".into()));
            }
            p.set_args(Some(o.args.clone()));
            p.set_terminal(Some(o.tty));
            p.set_console_size(None);
            p
        }
    };
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Config("exec: process.args is empty".into()));
    }
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.clone());
    }
    if !o.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &o.env {
            let key = kv.split('=').next().unwrap_or("");
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(u) = &o.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        let uid: u32 = uid.parse().map_err(|_| Error::Config(format!("--user {u:?}: uid must be a number")))?;
        let user = p.user_mut();
        user.set_uid(uid);
        if let Some(g) = gid {
            let g: u32 = g.parse().map_err(|_| Error::Config(format!("--user {u:?}: gid must be a number")))?;
            user.set_gid(g);
        }
    }
    if !o.additional_gids.is_empty() {
        p.user_mut().set_additional_gids(Some(o.additional_gids.clone()));
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &o.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &o.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    if !o.caps.is_empty() {
        let mut c = p.capabilities().clone().unwrap_or_default();
        let mut add: HashSet<Capability> = HashSet::new();
        for name in &o.caps {
            let n = name.to_uppercase();
            let n = n.strip_prefix("CAP_").unwrap_or(&n).to_string();
            let cap =
                Capability::from_str(&n).map_err(|_| Error::Config(format!("--cap {name:?}: unknown capability")))?;
            add.insert(cap);
        }
        for set in [c.bounding().clone(), c.effective().clone(), c.permitted().clone()].iter().enumerate() {
            let mut s = set.1.clone().unwrap_or_default();
            s.extend(add.iter().copied());
            match set.0 {
                0 => c.set_bounding(Some(s)),
                1 => c.set_effective(Some(s)),
                _ => c.set_permitted(Some(s)),
            };
        }
        p.set_capabilities(Some(c));
    }
    crate::capabilities::Masks::from_spec(p.capabilities().as_ref())?;
    Ok(p)
}

/// Run the exec; returns the exit code (attached) or 0 (detached).
pub fn exec(g: &Globals, o: &ExecOpts) -> Result<i32, Error> {
    exec_inner(g, o).map(|r| match r {
        Exec::Detached(_) => 0,
        Exec::Exited(code) => code,
    })
}

/// Starts the process detached (`detach` is implied) and returns its pid: the caller's child,
/// which the caller must reap. A terminal needs `console_socket`.
pub fn exec_spawn(g: &Globals, o: &ExecOpts) -> Result<libc::pid_t, Error> {
    let mut o = o.clone();
    o.detach = true;
    match exec_inner(g, &o)? {
        Exec::Detached(pid) => Ok(pid),
        Exec::Exited(_) => Err(Error::Msg("exec: the detached process was waited for".into())),
    }
}

enum Exec {
    Detached(libc::pid_t),
    Exited(i32),
}

fn exec_inner(g: &Globals, o: &ExecOpts) -> Result<Exec, Error> {
    let dir = ContainerDir::open(&g.root, &o.id)?;
    let saved = dir.load()?;
    match dir.status(&saved) {
        Status::Running | Status::Created => {}
        Status::Paused if o.ignore_paused => {}
        // runc's wording (engines match it).
        Status::Paused => {
            return Err(Error::Msg("cannot exec in a paused container (use --ignore-paused to override)".into()))
        }
        Status::Stopped => return Err(Error::Msg("cannot exec in a stopped container".into())),
        s => return Err(Error::Msg(format!("cannot exec in container {}: it is {}", o.id, s.as_str()))),
    }
    let cfg_path = dir.dir.join(super::CONFIG_COPY);
    let config_bytes = std::fs::read(&cfg_path).map_err(|e| sys(format!("read {}", cfg_path.display()), e))?;
    let spec: Spec = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::Config(format!("parse {}: {e}", cfg_path.display())))?;
    let mut process = build_process(o, &spec)?;
    super::refuse_process(&process)?;
    super::rootless::check_process(&process).map_err(Error::Config)?;
    // A terminal without a console socket: berth holds the pty itself when attached.
    let tty = process.terminal().unwrap_or(false);
    let relay = if tty && o.console_socket.is_none() {
        if o.detach {
            return Err(Error::Config(
                "exec --tty --detach needs --console-socket (a detached process cannot use berth's terminal)".into(),
            ));
        }
        if let Some((rows, cols)) = super::tty_relay::caller_size() {
            let size = oci_spec::runtime::BoxBuilder::default().height(rows as u64).width(cols as u64).build();
            process.set_console_size(size.ok());
        }
        Some(super::tty_relay::TtyRelay::listen()?)
    } else {
        None
    };
    let console_path = match &relay {
        Some(r) => Some(r.path().to_path_buf()),
        None => o.console_socket.clone(),
    };
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(super::prepare_seccomp(g, s)?),
        None => None,
    };
    // Pin the init: namespaces are opened through its pid only while it is still ours.
    let pidfd = super::pidfd_of(&saved).ok_or_else(|| Error::Msg("cannot exec in a stopped container".into()))?;
    let cg = saved.cgroup.clone();
    drop(dir);

    let pid = saved.pid;
    crate::debug!("exec in container {} (init {pid}): {:?}", o.id, process.args().as_deref().unwrap_or(&[]));
    let mut namespaces = Vec::new();
    let mut userns = false;
    for (t, file, name) in NS_ORDER {
        let theirs = format!("/proc/{pid}/ns/{file}");
        let mine = format!("/proc/self/ns/{file}");
        if ns_inode(&theirs).is_some() && ns_inode(&theirs) != ns_inode(&mine) {
            if t == LinuxNamespaceType::User {
                userns = true;
            }
            namespaces.push((name.to_string(), PathBuf::from(theirs)));
        }
    }
    let console = match &console_path {
        Some(p) if tty => Some(super::connect_console(p)?),
        _ => None,
    };
    let (parent_ch, child_ch) = sync::pair()?;
    let exe = process::readonly_self()?;

    // The pid namespace applies to children: enter it around clone only. An unprivileged caller
    // may enter it only from inside the container's user namespace: then the process joins it
    // after the user namespace and forks once more (as a container's init does with late
    // namespaces); the forked process is re-parented to us.
    let pid_ns = format!("/proc/{pid}/ns/pid");
    let other_pid_ns = ns_inode(&pid_ns) != ns_inode("/proc/self/ns/pid_for_children");
    let late_pid = other_pid_ns && userns && super::rootless::euid() != 0;
    if late_pid {
        namespaces.insert(1, ("pid".to_string(), PathBuf::from(&pid_ns)));
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let restore = if other_pid_ns && !late_pid {
        let cur = std::fs::File::open("/proc/self/ns/pid_for_children")
            .map_err(|e| sys("open /proc/self/ns/pid_for_children", e))?;
        let f = std::fs::File::open(&pid_ns).map_err(|e| sys(format!("open {pid_ns}"), e))?;
        // SAFETY: setns on valid fds.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
            return Err(sys(format!("setns {pid_ns}"), std::io::Error::last_os_error()));
        }
        Some(cur)
    } else {
        None
    };
    let me = std::process::id() as libc::pid_t;
    crate::debug!("join namespaces {:?}", namespaces.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>());
    let first = process::clone_fork(0)?;
    if first == 0 {
        drop(parent_ch);
        let mut keep = vec![child_ch.fd.as_raw_fd()];
        if let Some(c) = &console {
            keep.push(c.as_raw_fd());
        }
        if let Some(fds) = o.stdio {
            for (i, fd) in fds.iter().enumerate() {
                // SAFETY: dup2 (async-signal-safe) in the forked child, onto its own stdio.
                unsafe { libc::dup2(*fd, i as RawFd) };
            }
        }
        // Joining a user namespace happens after the re-exec, so no id maps to wait for here.
        process::child_pre_exec(&child_ch, exe.as_raw_fd(), &keep, false, me);
    }
    if let Some(cur) = restore {
        // SAFETY: setns back to our own pid namespace for children.
        unsafe { libc::setns(cur.as_raw_fd(), libc::CLONE_NEWPID) };
    }
    drop(child_ch);
    drop(exe);
    crate::debug!("exec process pid {first}");
    crate::faults::crash_point("runtime.exec.spawned");
    let child_cell = std::cell::Cell::new(first);
    let kill_child = |e: Error| -> Error {
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(child_cell.get(), libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(child_cell.get(), &mut st, 0);
        }
        e
    };
    let child = first;
    match (&cg, &o.cgroup) {
        (Some(cg), Some(sub)) => cg.add_task_sub(child, sub).map_err(|e| kill_child(e.into()))?,
        (Some(cg), None) => cg.add_task(child).map_err(|e| kill_child(e.into()))?,
        (None, Some(sub)) => {
            return Err(kill_child(Error::Msg(format!("exec --cgroup {sub}: container {} has no cgroup", o.id))))
        }
        (None, None) => {}
    }
    let _ = userns;
    let header = BootHeader {
        id: o.id.clone(),
        bundle: saved.bundle.clone(),
        rootfs: saved.rootfs.clone(),
        no_pivot: false,
        no_new_keyring: true,
        preserve_fds: o.preserve_fds,
        fifo_fd: -1,
        exec_err_fd: -1,
        console_fd: console.as_ref().map(|c| c.as_raw_fd()).unwrap_or(-1),
        cgroup: crate::cgroups::MountInfo::V1 { hierarchies: Vec::new() },
        state_creating: String::new(),
        state_created: String::new(),
        debug: g.debug,
        wait_joined: false,
        late_ns: late_pid,
        hide_host_fs: false,
        bind_sources: Vec::new(),
        exec: Some(ExecInfo { namespaces, process }),
    };
    let header_json = serde_json::to_vec(&header).map_err(|e| Error::Msg(format!("encode boot header: {e}")))?;
    parent_ch
        .send(
            sync::kind::BOOT,
            &super::frame(&[&header_json, &config_bytes, &seccomp.map(|s| s.to_bytes()).unwrap_or_default()]),
        )
        .map_err(|e| kill_child(e.into()))?;
    drop(console);
    // The channel closes (EOF) when the process is executed; an error arrives as a message.
    loop {
        match parent_ch.recv() {
            Err(sync::SyncError::Eof) => break,
            Err(e) => return Err(kill_child(e.into())),
            Ok((sync::kind::SECCOMP_FD, payload, fd)) => {
                let fd = super::seccomp_fd_of(child, &payload, fd).map_err(kill_child)?;
                super::send_seccomp_fd(&spec, &saved, fd.as_raw_fd()).map_err(kill_child)?;
                parent_ch.send(sync::kind::SECCOMP_DONE, b"").map_err(|e| kill_child(e.into()))?;
            }
            Ok((sync::kind::READY, _, _)) => {}
            Ok((sync::kind::NEWPID, payload, _)) if late_pid => {
                let b: [u8; 4] = payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| kill_child(Error::Msg("bad pid message".into())))?;
                // Reap the process that forked it; the new one is our child now (subreaper).
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child_cell.get(), &mut st, 0) };
                child_cell.set(i32::from_le_bytes(b));
                parent_ch.send(sync::kind::PID_ACK, b"").map_err(|e| kill_child(e.into()))?;
            }
            Ok((k, _, _)) => return Err(kill_child(Error::Msg(format!("unexpected message {k} from exec process")))),
        }
    }
    let child = child_cell.get();
    drop(pidfd);
    crate::debug!("process {child} executed");
    if let Some(pf) = &o.pid_file {
        crate::debug!("write pid file {}", pf.display());
        super::write_pid_file(pf, child)?;
    }
    if let Some(sock) = &o.pidfd_socket {
        send_pidfd(sock, child)?;
    }
    if o.detach {
        return Ok(Exec::Detached(child));
    }
    if let Some(mut r) = relay {
        r.receive_master().inspect_err(|_| {
            // SAFETY: kill our own child, which has no terminal anyone reads.
            unsafe { libc::kill(child, libc::SIGKILL) };
            super::wait_forwarding(child);
        })?;
        return Ok(Exec::Exited(r.relay(child)));
    }
    let code = super::wait_forwarding(child);
    crate::debug!("process {child} exited: code {code}");
    Ok(Exec::Exited(code))
}

/// Send a pidfd of `pid` over the unix socket at `path` (runc's --pidfd-socket).
fn send_pidfd(path: &std::path::Path, pid: libc::pid_t) -> Result<(), Error> {
    let fd = crate::process::pidfd::open(pid).map_err(|e| sys(format!("pidfd_open {pid}"), e))?;
    let s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| sys(format!("connect to pidfd socket {}", path.display()), e))?;
    let fds = [fd.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(
        s.as_raw_fd(),
        &[std::io::IoSlice::new(b"pidfd")],
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| sys(format!("send pidfd to {}", path.display()), e.into()))?;
    Ok(())
}
