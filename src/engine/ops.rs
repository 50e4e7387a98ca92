//! The `container` subcommands.

use super::adapt;
use super::cli::{ContainerCmd, RunArgs};
use super::run::{self, Started, State};
use super::store::{Containers, Record};
use super::{show, Engine, EngineError};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub fn dispatch(e: &Engine, cmd: ContainerCmd) -> Result<i32, EngineError> {
    let cs = Containers::new(&e.data_root);
    match cmd {
        ContainerCmd::Run(a) => run_cmd(e, &cs, a),
        ContainerCmd::Create(c) => {
            let rec = run::create(e, &cs, &c)?;
            println!("{}", rec.id);
            Ok(0)
        }
        ContainerCmd::Start { attach, interactive, detach_keys, containers } => {
            if attach && containers.len() > 1 {
                return Err(EngineError::Invalid("you cannot attach to more than one container".into()));
            }
            let keys = detach_keys_of(detach_keys.as_deref())?;
            each(&containers, |key| {
                let rec = cs.find(key)?;
                let stdin = interactive && rec.spec.stdin_open;
                let dir = cs.path(&rec.id);
                let keys = keys.as_deref().filter(|_| stdin && rec.spec.tty);
                match run::start(e, &cs, &rec.id, attach)? {
                    Started::Spawned { sock: Some(sock), .. } => {
                        return match keys {
                            Some(k) => {
                                Ok(adapt::shim_relay_detachable(sock, stdin, rec.spec.tty, &dir, true, k)?.unwrap_or(0))
                            }
                            None => adapt::shim_relay(sock, stdin, rec.spec.tty, &dir, true),
                        };
                    }
                    _ if attach => {
                        return match keys {
                            Some(k) => {
                                Ok(adapt::shim_attach_detachable(&dir, stdin, rec.spec.tty, true, k)?.unwrap_or(0))
                            }
                            None => adapt::shim_attach(&dir, stdin, rec.spec.tty, true),
                        };
                    }
                    _ => println!("{key}"),
                }
                Ok(0)
            })
        }
        ContainerCmd::Stop { time, signal, containers } => {
            if let Some(s) = &signal {
                adapt::parse_signal(s)?;
            }
            each(&containers, |key| {
                let rec = cs.find(key)?;
                run::stop(e, &cs, &rec, signal.as_deref(), time)?;
                println!("{key}");
                Ok(0)
            })
        }
        ContainerCmd::Restart { time, signal, containers } => each(&containers, |key| {
            let rec = cs.find(key)?;
            run::stop(e, &cs, &rec, signal.as_deref(), time)?;
            run::start(e, &cs, &rec.id, false)?;
            super::events::container(e, &rec, "restart");
            println!("{key}");
            Ok(0)
        }),
        ContainerCmd::Kill { signal, containers } => {
            let sig = adapt::parse_signal(&signal)?;
            each(&containers, |key| {
                kill(e, &cs, key, sig)?;
                println!("{key}");
                Ok(0)
            })
        }
        ContainerCmd::Rm { force, volumes, containers } => each(&containers, |key| {
            let rec = cs.find(key)?;
            run::remove(e, &cs, &rec, force, volumes)?;
            println!("{key}");
            Ok(0)
        }),
        ContainerCmd::Ls { all, quiet, format, no_trunc, last, filter } => {
            show::ls(e, &cs, &show::LsOpts { all, quiet, format, no_trunc, last, filter })?;
            Ok(0)
        }
        ContainerCmd::Logs { follow, tail, since, until, timestamps, container } => {
            let rec = cs.find(&container)?;
            let no_cache = rec.spec.log_driver.as_deref() == Some("syslog")
                && matches!(rec.spec.log_opts.get("cache-disabled").map(String::as_str), Some("true" | "1"));
            if rec.spec.log_driver.as_deref() == Some("none") || no_cache {
                return Err(EngineError::Invalid("configured logging driver does not support reading".into()));
            }
            let tail = match tail.as_deref() {
                None | Some("all") => None,
                Some(n) => Some(n.parse::<i64>().map_err(|_| EngineError::Invalid(format!("invalid --tail {n:?}")))?)
                    .filter(|n| *n >= 0)
                    .map(|n| n as usize),
            };
            adapt::shim_logs(&cs.path(&rec.id), follow, tail, (since.as_deref(), until.as_deref()), timestamps)?;
            Ok(0)
        }
        ContainerCmd::Exec {
            interactive,
            tty,
            detach,
            env,
            env_file,
            user,
            workdir,
            privileged,
            container,
            command,
        } => {
            let rec = cs.find(&container)?;
            if run::status(e, &cs, &rec.id).state != State::Running {
                return Err(EngineError::Conflict(format!("container {} is not running", rec.id)));
            }
            let env = super::opts::parse_env(&env, &env_file)?;
            let user = match user.as_deref().filter(|u| !u.is_empty()) {
                Some(u) => Some(adapt::resolve_user(&cs.path(&rec.id).join("bundle/rootfs"), u)?),
                None => None,
            };
            if let Some(w) = &workdir {
                if !w.starts_with('/') {
                    return Err(EngineError::Invalid(format!(
                        "the working directory {w:?} is invalid, it needs to be an absolute path"
                    )));
                }
            }
            let req = adapt::ExecRequest {
                id: rec.id.clone(),
                args: command,
                env,
                tty: tty && !detach,
                detach,
                user,
                cwd: workdir,
                privileged,
            };
            // The process gets our stdio: without -i no stdin; detached, nothing.
            let _null = Redirect::new(!interactive || detach, detach);
            adapt::runtime_exec(e, req)
        }
        ContainerCmd::Inspect { format, containers } => show::inspect(e, &cs, &containers, format.as_deref()),
        ContainerCmd::Wait { containers } => each(&containers, |key| {
            let rec = cs.find(key)?;
            let code = wait_exit(e, &cs, &rec);
            println!("{code}");
            Ok(0)
        }),
        ContainerCmd::Attach { no_stdin, detach_keys, sig_proxy, container } => {
            let keys = detach_keys_of(detach_keys.as_deref())?;
            let rec = cs.find(&container)?;
            let st = run::status(e, &cs, &rec.id);
            if st.state != State::Running {
                return Err(EngineError::Conflict(
                    "you cannot attach to a stopped container, start it first".to_string(),
                ));
            }
            super::events::container(e, &rec, "attach");
            let stdin = !no_stdin && rec.spec.stdin_open;
            match keys {
                Some(k) if stdin && rec.spec.tty => {
                    Ok(adapt::shim_attach_detachable(&cs.path(&rec.id), stdin, rec.spec.tty, sig_proxy, &k)?
                        .unwrap_or(0))
                }
                _ => adapt::shim_attach(&cs.path(&rec.id), stdin, rec.spec.tty, sig_proxy),
            }
        }
        ContainerCmd::Top { container, ps_args } => {
            let rec = cs.find(&container)?;
            if run::status(e, &cs, &rec.id).state != State::Running {
                return Err(EngineError::Conflict(format!("container {} is not running", rec.id)));
            }
            adapt::runtime_top(e, &rec.id, &ps_args)?;
            Ok(0)
        }
        ContainerCmd::Port { container, private_port } => show::port(e, &cs, &container, private_port.as_deref()),
        ContainerCmd::Stats { no_stream, all, no_trunc, format, containers } => {
            show::stats(e, &cs, &containers, all, no_stream, no_trunc, format.as_deref())
        }
        ContainerCmd::Prune { force: _ } => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "Deleted Containers:");
            cs.sweep();
            for rec in cs.all() {
                let st = run::status(e, &cs, &rec.id);
                if matches!(st.state, State::Running | State::Restarting) || st.shim_alive {
                    continue;
                }
                if run::remove(e, &cs, &rec, false, false).is_ok() {
                    let _ = writeln!(out, "{}", rec.id);
                }
            }
            Ok(0)
        }
        ContainerCmd::Commit { author, change, message, pause, container, reference } => {
            let o = super::commit::CommitOpts { author, changes: change, message, pause };
            super::commit::commit(e, &cs, &container, reference.as_deref(), o)
        }
        ContainerCmd::Diff { container } => super::commit::diff(&cs, &container),
        ContainerCmd::Cp { archive, follow_link, src, dest } => {
            super::copy::cp(e, &cs, &src, &dest, super::copy::CpOpts { archive, follow: follow_link })
        }
        ContainerCmd::Export { output, container } => super::copy::export(&cs, &container, output.as_deref()),
        ContainerCmd::Pause { containers } => each(&containers, |key| {
            super::manage::pause(e, &cs, key)?;
            println!("{key}");
            Ok(0)
        }),
        ContainerCmd::Unpause { containers } => each(&containers, |key| {
            super::manage::unpause(e, &cs, key)?;
            println!("{key}");
            Ok(0)
        }),
        ContainerCmd::Rename { container, new_name } => {
            super::manage::rename(e, &cs, &container, &new_name)?;
            Ok(0)
        }
        ContainerCmd::Update(u) => {
            let req = super::manage::UpdateReq {
                res: &u.res,
                memory: u.memory.as_deref(),
                memory_swap: u.memory_swap.as_deref(),
                cpus: u.cpus.as_deref(),
                pids_limit: u.pids_limit,
                restart: u.restart.as_deref(),
            };
            each(&u.containers, |key| {
                super::manage::update(e, &cs, key, &req)?;
                println!("{key}");
                Ok(0)
            })
        }
        ContainerCmd::Cleanup { id } => {
            run::cleanup(e, &cs, &id)?;
            Ok(0)
        }
    }
}

/// Sends `sig` to the running container `key` (its shim is told first when it is the stop
/// signal or SIGKILL, so a restart policy does not apply).
pub fn kill(e: &Engine, cs: &Containers, key: &str, sig: i32) -> Result<(), EngineError> {
    let rec = cs.find(key)?;
    let st = run::status(e, cs, &rec.id);
    if st.state != State::Running {
        return Err(EngineError::Conflict(format!("cannot kill container {key}: it is not running")));
    }
    if sig == libc::SIGKILL || adapt::parse_signal(&adapt::stop_signal(&rec)).ok() == Some(sig) {
        adapt::shim_request_stop(&cs.path(&rec.id));
    }
    let pidfd = berth::pidfd::open(st.pid).ok();
    adapt::runtime_kill(e, &rec.id, sig, false)?;
    super::events::container_with(e, &rec, "kill", [("signal".to_string(), sig.to_string())].into());
    super::manage::thaw_if_paused(e, &cs.path(&rec.id), &rec.id);
    if !st.shim_alive && sig == libc::SIGKILL {
        // No shim to see the exit and clean up: do it here.
        if let Some(fd) = &pidfd {
            berth::pidfd::wait(fd, Some(Duration::from_secs(5)));
        }
        run::finish_without_shim(e, cs, &rec, st.shim.clone(), 128 + libc::SIGKILL)?;
    }
    Ok(())
}

/// `network connect`: a running container joins `network` at once; a stopped one at its next
/// start (and every start after).
pub fn network_connect(
    e: &Engine,
    cs: &Containers,
    network: &str,
    key: &str,
    aliases: &[String],
    ip: Option<&str>,
) -> Result<(), EngineError> {
    let rec = cs.find(key)?;
    let _lock = cs.lock(&rec.id)?;
    let mut rec = cs.load(&rec.id)?;
    let s = &rec.spec;
    if matches!(s.network.as_str(), "none" | "host") || s.network.starts_with("container:") {
        return Err(EngineError::Invalid(format!(
            "container {key} uses network mode {}: it cannot join other networks",
            s.network
        )));
    }
    let primary = if matches!(s.network.as_str(), "bridge" | "default") { "bridge" } else { s.network.as_str() };
    if (primary == network && !s.network_left) || s.connected.iter().any(|c| c.network == network) {
        return Err(EngineError::Conflict(format!("container {key} is already connected to network {network}")));
    }
    let rejoin = primary == network;
    if !crate::network::config::list(&e.data_root).iter().any(|n| n.name == network) && network != "bridge" {
        return Err(EngineError::NoSuchNetwork(network.to_string()));
    }
    if run::status(e, cs, &rec.id).state == State::Running {
        let ip = adapt::net_connect(e, &rec.id, network, aliases, ip)?;
        rec.net.networks.push(network.to_string());
        if rec.net.ip.is_none() {
            rec.net.ip = Some(ip);
        }
    }
    if rejoin && aliases.is_empty() && ip.is_none() {
        // The first network, left before, joined again as it was.
        rec.spec.network_left = false;
    } else {
        rec.spec.connected.push(super::opts::Connected {
            network: network.to_string(),
            aliases: aliases.to_vec(),
            ip: ip.map(str::to_string),
        });
    }
    cs.save(&rec)
}

/// `network disconnect`: the container leaves a network, its first one (the one it was created
/// with) included, as docker's: a running container loses that interface at once, and the
/// network is not joined at the next starts (with no network left, the container has only its
/// loopback; the network mode shown stays as it was, as docker's).
pub fn network_disconnect(e: &Engine, cs: &Containers, network: &str, key: &str) -> Result<(), EngineError> {
    let rec = cs.find(key)?;
    let _lock = cs.lock(&rec.id)?;
    let mut rec = cs.load(&rec.id)?;
    let s = &rec.spec;
    if matches!(s.network.as_str(), "none" | "host") || s.network.starts_with("container:") {
        return Err(EngineError::Invalid(format!(
            "container {key} uses network mode {}: it has no network to leave",
            s.network
        )));
    }
    let primary = if matches!(s.network.as_str(), "bridge" | "default") { "bridge" } else { s.network.as_str() };
    let joined = s.connected.iter().position(|c| c.network == network);
    if joined.is_none() && (primary != network || s.network_left) {
        return Err(EngineError::Invalid(format!("container {key} is not connected to network {network}")));
    }
    if run::status(e, cs, &rec.id).state == State::Running {
        adapt::net_disconnect(e, &rec.id, network)?;
        rec.net = adapt::net_info_now(e, &rec.id, &rec.net);
    }
    match joined {
        Some(i) => {
            rec.spec.connected.remove(i);
        }
        None => rec.spec.network_left = true,
    }
    rec.net.networks.retain(|n| n != network);
    cs.save(&rec)
}

/// Runs `f` on every container; the first error is returned after the others were tried
/// (later errors are printed).
fn each(keys: &[String], mut f: impl FnMut(&str) -> Result<i32, EngineError>) -> Result<i32, EngineError> {
    let mut first: Option<EngineError> = None;
    let mut code = 0;
    for k in keys {
        match f(k) {
            Ok(c) => code = c,
            Err(err) => {
                if first.is_some() {
                    let _ = writeln!(std::io::stderr(), "berth: {err}");
                }
                first.get_or_insert(err);
            }
        }
    }
    match first {
        Some(err) => Err(err),
        None => Ok(code),
    }
}

/// `--detach-keys` (None: docker's ctrl-p,ctrl-q; "": none).
fn detach_keys_of(k: Option<&str>) -> Result<Option<Vec<u8>>, EngineError> {
    Ok(match k {
        None => crate::shim::parse_detach_keys("ctrl-p,ctrl-q"),
        Some("") => None,
        Some(k) => Some(
            crate::shim::parse_detach_keys(k)
                .ok_or_else(|| EngineError::Invalid(format!("invalid detach keys ({k}) provided")))?,
        ),
    })
}

fn run_cmd(e: &Engine, cs: &Containers, a: RunArgs) -> Result<i32, EngineError> {
    let mut streams = Vec::new();
    for s in &a.c.attach {
        match s.to_ascii_lowercase().as_str() {
            v @ ("stdin" | "stdout" | "stderr") => streams.push(v.to_string()),
            _ => {
                return Err(EngineError::Invalid(format!(
                    "invalid argument {s:?} for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
                )))
            }
        }
    }
    let keys = detach_keys_of(a.c.detach_keys.as_deref())?;
    if a.detach && !streams.is_empty() {
        return Err(EngineError::Invalid("conflicting options: cannot specify both --attach and --detach".into()));
    }
    let rec = run::create(e, cs, &a.c)?;
    let started = match run::start(e, cs, &rec.id, !a.detach) {
        Ok(s) => s,
        Err(err) => {
            // docker leaves nothing of a run that could not start.
            run::discard(e, cs, &rec.id);
            return Err(err);
        }
    };
    match started {
        Started::Spawned { shim_pid, sock: Some(sock) } => {
            let shim = berth::pidfd::open(shim_pid).ok();
            // -a: the streams not named are not shown (nor read, for stdin).
            let want = |s: &str| streams.is_empty() || streams.iter().any(|x| x == s);
            let hidden: Vec<i32> =
                [(1, "stdout"), (2, "stderr")].into_iter().filter(|(_, s)| !want(s)).map(|(fd, _)| fd).collect();
            let stdin = rec.spec.stdin_open && want("stdin");
            let dir = cs.path(&rec.id);
            let code = {
                let _hide = Redirect::fds(&hidden);
                match &keys {
                    // docker's escape sequence applies to a terminal with stdin.
                    Some(k) if stdin && rec.spec.tty => {
                        adapt::shim_relay_detachable(sock, stdin, rec.spec.tty, &dir, a.sig_proxy, k)?
                    }
                    _ => Some(adapt::shim_relay(sock, stdin, rec.spec.tty, &dir, a.sig_proxy)?),
                }
            };
            let Some(code) = code else {
                // Detached: the container goes on (docker's CLI says nothing either).
                return Ok(0);
            };
            if rec.spec.auto_remove {
                // As docker's CLI: return once the container is removed.
                if let Some(fd) = &shim {
                    berth::pidfd::wait(fd, Some(Duration::from_secs(20)));
                }
            }
            Ok(code)
        }
        _ => {
            println!("{}", rec.id);
            Ok(0)
        }
    }
}

/// Waits for the container's (final) exit; its exit code.
pub fn wait_exit(e: &Engine, cs: &Containers, rec: &Record) -> i32 {
    let dir = cs.path(&rec.id);
    let mut last = None;
    loop {
        match adapt::shim_state(&dir) {
            Some(st) => {
                if st.status == adapt::ShimStatus::Exited {
                    return st.exit_code.unwrap_or(255);
                }
                let alive = adapt::shim_alive(&st);
                last = st.exit_code;
                if !alive {
                    let s = run::status(e, cs, &rec.id);
                    if s.state == State::Exited {
                        return s.exit_code.unwrap_or(255);
                    }
                }
            }
            // Removed (--rm) after its exit.
            None if !dir.exists() => return last.unwrap_or(0),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Points stdin (and, `all`, stdout and stderr) at /dev/null until dropped; errors still
/// reach the caller's stderr once restored.
struct Redirect {
    saved: Vec<(i32, OwnedFd)>,
}

impl Redirect {
    fn new(stdin: bool, all: bool) -> Redirect {
        let fds: &[i32] = match (stdin, all) {
            (_, true) => &[0, 1, 2],
            (true, false) => &[0],
            (false, false) => &[],
        };
        Redirect::fds(fds)
    }

    /// Points `fds` at /dev/null until dropped.
    fn fds(fds: &[i32]) -> Redirect {
        let mut saved = Vec::new();
        let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") else {
            return Redirect { saved };
        };
        for &fd in fds {
            // SAFETY: duplicating and replacing the standard descriptors; the saved copies
            // are owned below.
            let s = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if s >= 0 {
                // SAFETY: a fresh descriptor owned by nobody else.
                saved.push((fd, unsafe { OwnedFd::from_raw_fd(s) }));
                // SAFETY: see above.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
        Redirect { saved }
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        for (fd, s) in &self.saved {
            // SAFETY: restores a standard descriptor from its saved copy.
            unsafe { libc::dup2(s.as_raw_fd(), *fd) };
        }
    }
}
