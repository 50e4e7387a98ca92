//! `/containers/{id}/exec` and `/exec/{id}/...`: exec instances are held in memory (as docker's
//! daemon holds them); `start` runs the process through the runtime with the hijacked
//! connection's streams: pipes multiplexed with docker's 8-byte headers, or a terminal whose
//! master the runtime sends to a console socket of ours.

use super::containers::{mux, size_of};
use super::http::{self, Request, Response};
use super::{body_json, ApiError, ApiResult, Service};
use crate::engine::run::{self, State};
use crate::engine::store::Containers;
use crate::engine::{adapt, store};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

#[derive(Clone)]
pub struct ExecInstance {
    pub container: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub privileged: bool,
    pub size: Option<(u16, u16)>,
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i32>,
    pub pid: i32,
    /// The terminal's master while the process runs (for resize).
    pub master: Option<Arc<OwnedFd>>,
}

fn bool_of(v: &Value, k: &str) -> Result<bool, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad(format!("json: cannot unmarshal {k}: expected a boolean"))),
    }
}

fn strs(v: &Value, k: &str) -> Result<Vec<String>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::bad(format!("json: cannot unmarshal {k}: expected a list of strings"))),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(_) => Err(ApiError::bad(format!("json: cannot unmarshal {k}: expected a list of strings"))),
    }
}

pub fn create(s: &Service, req: &Request, key: &str) -> ApiResult {
    let cs = Containers::new(&s.e.data_root);
    let rec = cs.find(key)?;
    let b = body_json(req)?;
    if run::status(&s.e, &cs, &rec.id).state != State::Running {
        return Err(ApiError::new(409, format!("Container {} is not running", rec.id)));
    }
    let cmd = strs(&b, "Cmd")?;
    if cmd.is_empty() {
        return Err(ApiError::bad("No exec command specified"));
    }
    let s_opt = |k: &str| b.get(k).and_then(Value::as_str).filter(|x| !x.is_empty()).map(str::to_string);
    let size = b
        .get("ConsoleSize")
        .and_then(Value::as_array)
        .and_then(|a| Some((a.first()?.as_u64()? as u16, a.get(1)?.as_u64()? as u16)));
    if let Some(w) = s_opt("WorkingDir") {
        if !w.starts_with('/') {
            return Err(ApiError::bad(format!(
                "the working directory {w:?} is invalid, it needs to be an absolute path"
            )));
        }
    }
    let inst = ExecInstance {
        container: rec.id.clone(),
        cmd,
        env: strs(&b, "Env")?,
        user: s_opt("User"),
        workdir: s_opt("WorkingDir"),
        tty: bool_of(&b, "Tty")?,
        stdin: bool_of(&b, "AttachStdin")?,
        stdout: bool_of(&b, "AttachStdout")?,
        stderr: bool_of(&b, "AttachStderr")?,
        privileged: bool_of(&b, "Privileged")?,
        size,
        running: false,
        started: false,
        exit_code: None,
        pid: 0,
        master: None,
    };
    let id = store::new_id()?;
    if let Ok(mut m) = s.execs.lock() {
        m.insert(id.clone(), inst);
    }
    Ok(Response::json(201, &json!({ "Id": id })))
}

fn get(s: &Service, id: &str) -> Result<ExecInstance, ApiError> {
    s.execs
        .lock()
        .ok()
        .and_then(|m| m.get(id).cloned())
        .ok_or_else(|| ApiError::new(404, format!("No such exec instance: {id}")))
}

fn update(s: &Service, id: &str, f: impl FnOnce(&mut ExecInstance)) {
    if let Ok(mut m) = s.execs.lock() {
        if let Some(i) = m.get_mut(id) {
            f(i);
        }
    }
}

pub fn inspect(s: &Service, id: &str) -> ApiResult {
    let i = get(s, id)?;
    Ok(Response::json(
        200,
        &json!({
            "ID": id,
            "Running": i.running,
            "ExitCode": i.exit_code,
            "ProcessConfig": {
                "tty": i.tty,
                "entrypoint": i.cmd.first(),
                "arguments": i.cmd.get(1..).unwrap_or(&[]),
                "privileged": i.privileged,
                "user": i.user.clone().unwrap_or_default(),
            },
            "OpenStdin": i.stdin,
            "OpenStderr": i.stderr,
            "OpenStdout": i.stdout,
            "CanRemove": false,
            "ContainerID": i.container,
            "DetachKeys": "",
            "Pid": i.pid,
        }),
    ))
}

fn set_size(fd: RawFd, (h, w): (u16, u16)) {
    let ws = libc::winsize { ws_row: h, ws_col: w, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ with a valid winsize on a terminal fd.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

pub fn resize(s: &Service, req: &Request, id: &str) -> ApiResult {
    let i = get(s, id)?;
    let size = size_of(req)?;
    match &i.master {
        Some(m) if i.running => set_size(m.as_raw_fd(), size),
        _ => update(s, id, |i| i.size = Some(size)),
    }
    Ok(Response::empty(200))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ApiError> {
    crate::shim::sys::pipe().map_err(|e| ApiError::new(500, format!("pipe: {e}")))
}

/// Receives the terminal master the runtime sends over the console socket.
fn recv_master(l: &UnixListener) -> Result<OwnedFd, ApiError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (c, _) = l.accept().map_err(|e| ApiError::new(500, format!("accept on the console socket: {e}")))?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(c.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| ApiError::new(500, format!("receive the terminal: {e}")))?;
    for cm in msg.cmsgs().map_err(|e| ApiError::new(500, format!("receive the terminal: {e}")))? {
        if let ControlMessageOwned::ScmRights(fds) = cm {
            if let Some(fd) = fds.first() {
                // SAFETY: a descriptor just received, owned by nobody else.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(ApiError::new(500, "the runtime sent no terminal"))
}

fn reap(pid: i32) -> i32 {
    let mut st = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
    }
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        255
    }
}

pub fn start(s: &Service, req: &Request, id: &str, w: &mut UnixStream, r: &mut BufReader<UnixStream>) -> ApiResult {
    let inst = get(s, id)?;
    let b = body_json(req)?;
    let detach = bool_of(&b, "Detach")?;
    {
        let mut m = s.execs.lock().map_err(|_| ApiError::new(500, "exec table poisoned"))?;
        let i = m.get_mut(id).ok_or_else(|| ApiError::new(404, format!("No such exec instance: {id}")))?;
        if i.started {
            return Err(ApiError::new(409, format!("Exec {id} has already started")));
        }
        i.started = true;
    }
    let cs = Containers::new(&s.e.data_root);
    if run::status(&s.e, &cs, &inst.container).state != State::Running {
        return Err(ApiError::new(409, format!("Container {} is not running", inst.container)));
    }
    let user = match &inst.user {
        Some(u) => Some(adapt::resolve_user(&cs.path(&inst.container).join("bundle/rootfs"), u)?),
        None => None,
    };
    let ereq = adapt::ExecRequest {
        id: inst.container.clone(),
        args: inst.cmd.clone(),
        env: inst.env.clone(),
        tty: inst.tty,
        detach: true,
        user,
        cwd: inst.workdir.clone(),
        privileged: inst.privileged,
    };
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| ApiError::new(500, format!("open /dev/null: {e}")))?;
    let stdin = inst.stdin && !detach;
    // The upgrade goes out before the process starts: a client that reads the answer's head
    // through a buffer (requests, in the Python SDK) would otherwise swallow the first output.
    let ctype =
        if inst.tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    let attached = !detach && http::upgrade(w, req, ctype).is_ok();
    if inst.tty {
        let sock = s.console_dir.join(&id[..16]);
        let _ = std::fs::remove_file(&sock);
        let l = UnixListener::bind(&sock).map_err(|e| ApiError::new(500, format!("bind {}: {e}", sock.display())))?;
        let nulls = [null.as_raw_fd(); 3];
        let spawned = adapt::runtime_exec_spawn(&s.e, ereq, Some(nulls), Some(sock.clone()));
        let _ = std::fs::remove_file(&sock);
        let pid = match spawned {
            Ok(p) => p,
            Err(e) => return failed(s, id, w, attached, inst.tty, e.into()),
        };
        let master = match recv_master(&l) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                // SAFETY: kill our own child, which nobody can talk to.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap(pid);
                return failed(s, id, w, attached, inst.tty, e);
            }
        };
        if let Some(sz) = inst.size {
            set_size(master.as_raw_fd(), sz);
        }
        update(s, id, |i| {
            i.running = true;
            i.pid = pid;
            i.master = Some(master.clone());
        });
        let input = if attached { relay_tty(&master, w, r, stdin) } else { None };
        let code = reap(pid);
        update(s, id, |i| {
            i.running = false;
            i.exit_code = Some(code);
            i.master = None;
        });
        // The client reads the exit code once the stream ends: the code is recorded first.
        finish(w, input);
        return Ok(if detach { Response::empty(200) } else { Response::Done });
    }
    let (in_r, in_w) = if stdin { pipe().map(|(a, b)| (Some(a), Some(b)))? } else { (None, None) };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let fds = [
        in_r.as_ref().map(|f| f.as_raw_fd()).unwrap_or(null.as_raw_fd()),
        if detach { null.as_raw_fd() } else { out_w.as_raw_fd() },
        if detach { null.as_raw_fd() } else { err_w.as_raw_fd() },
    ];
    let spawned = adapt::runtime_exec_spawn(&s.e, ereq, Some(fds), None);
    drop((in_r, out_w, err_w));
    let pid = match spawned {
        Ok(p) => p,
        Err(e) => return failed(s, id, w, attached, inst.tty, e.into()),
    };
    update(s, id, |i| {
        i.running = true;
        i.pid = pid;
    });
    let input = if attached { relay_pipes(in_w, out_r, err_r, w, r, (inst.stdout, inst.stderr)) } else { None };
    let code = reap(pid);
    update(s, id, |i| {
        i.running = false;
        i.exit_code = Some(code);
    });
    finish(w, input);
    Ok(if detach { Response::empty(200) } else { Response::Done })
}

/// A start that failed: an API error before the upgrade, else a message in the stream (as
/// docker does once it has hijacked the connection) and docker's exit code for it.
fn failed(s: &Service, id: &str, w: &mut UnixStream, attached: bool, tty: bool, err: ApiError) -> ApiResult {
    if !attached {
        return Err(err);
    }
    let msg = format!("{}\r\n", err.message);
    let _ = w.write_all(&if tty { msg.into_bytes() } else { mux(2, msg.as_bytes()) });
    let code = if err.message.contains("not found") || err.message.contains("no such file") { 127 } else { 126 };
    update(s, id, |i| i.exit_code = Some(code));
    let _ = w.shutdown(std::net::Shutdown::Both);
    Ok(Response::Done)
}

/// Ends a hijacked stream: the connection closed, the input pump joined.
fn finish(client: &UnixStream, input: Option<std::thread::JoinHandle<()>>) {
    let _ = client.shutdown(std::net::Shutdown::Both);
    if let Some(t) = input {
        let _ = t.join();
    }
}

/// Copies the client's input (with what the reader already buffered) to `to`; `to` is dropped
/// (closed) at the input's end.
fn pump_input(client: &UnixStream, r: &mut BufReader<UnixStream>, to: OwnedFd) -> Option<std::thread::JoinHandle<()>> {
    let pending = r.buffer().to_vec();
    r.consume(pending.len());
    let mut from = client.try_clone().ok()?;
    Some(std::thread::spawn(move || {
        let mut f = std::fs::File::from(to);
        if f.write_all(&pending).is_err() {
            return;
        }
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if f.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }))
}

fn relay_pipes(
    in_w: Option<OwnedFd>,
    out_r: OwnedFd,
    err_r: OwnedFd,
    client: &mut UnixStream,
    r: &mut BufReader<UnixStream>,
    (want_out, want_err): (bool, bool),
) -> Option<std::thread::JoinHandle<()>> {
    let input = in_w.and_then(|fd| pump_input(client, r, fd));
    let mut open = [Some(out_r), Some(err_r)];
    let mut buf = vec![0u8; 32 << 10];
    while open.iter().any(Option::is_some) {
        let mut p: Vec<libc::pollfd> = open
            .iter()
            .map(|f| libc::pollfd {
                fd: f.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if crate::shim::sys::poll(&mut p, -1) < 0 {
            break;
        }
        for (k, pf) in p.iter().enumerate() {
            if pf.revents == 0 {
                continue;
            }
            let Some(fd) = &open[k] else { continue };
            match crate::shim::sys::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => open[k] = None,
                Ok(n) => {
                    let want = if k == 0 { want_out } else { want_err };
                    if want && client.write_all(&mux(k as u8 + 1, &buf[..n])).is_err() {
                        // The client went away: keep draining so the process is not blocked.
                    }
                }
            }
        }
    }
    input
}

fn relay_tty(
    master: &Arc<OwnedFd>,
    client: &mut UnixStream,
    r: &mut BufReader<UnixStream>,
    stdin: bool,
) -> Option<std::thread::JoinHandle<()>> {
    let input = if stdin { master.try_clone().ok().and_then(|m| pump_input(client, r, m)) } else { None };
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match crate::shim::sys::read(master.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(libc::EINTR) | Err(libc::EAGAIN) => continue,
            Err(_) => break,
        }
    }
    input
}
