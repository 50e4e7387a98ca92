//! `POST /build`: docker's classic builder endpoint. The tar context (the request body,
//! spooled to an unnamed temporary file) and the query's options become a typed
//! `builder::BuildRequest`; the answer is docker's JSON stream ending with `{"aux":{"ID":...}}`.

use super::http::{self, Chunked, Request, Response};
use super::{ApiError, ApiResult, Service};
use crate::builder::{self, BuildRequest, ContextSource, DockerfileSource, Network, Progress};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// A JSON object parameter (`buildargs`, `labels`): string values, `null` for a build arg
/// taken from the environment (the service's, as docker's daemon has none: left unset).
fn json_map(req: &Request, k: &str) -> Result<BTreeMap<String, Option<String>>, ApiError> {
    let Some(raw) = req.q(k).filter(|v| !v.is_empty()) else { return Ok(BTreeMap::new()) };
    let v: Value = serde_json::from_str(raw).map_err(|e| ApiError::bad(format!("invalid {k}: {e}")))?;
    let obj = v.as_object().ok_or_else(|| ApiError::bad(format!("invalid {k}: expected a JSON object")))?;
    obj.iter()
        .map(|(key, val)| match val {
            Value::String(s) => Ok((key.clone(), Some(s.clone()))),
            Value::Null => Ok((key.clone(), None)),
            _ => Err(ApiError::bad(format!("invalid {k}: {key} is not a string"))),
        })
        .collect()
}

/// The typed request the query and body ask for.
fn request(s: &Service, req: &Request) -> Result<BuildRequest, ApiError> {
    let Some(f) = req.body_file.as_ref() else { return Err(ApiError::bad("no build context in the request body")) };
    if req.q("version") == Some("2") {
        return Err(ApiError::bad(
            "BuildKit builds (version=2) are not served by berth: it builds with docker's classic builder (DOCKER_BUILDKIT=0, or a docker CLI without buildx)",
        ));
    }
    if req.q("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad("remote build contexts are not supported: send the context as a tar"));
    }
    let dockerfile = match req.q("dockerfile").filter(|d| !d.is_empty()) {
        Some(d) => DockerfileSource::InContext(d.to_string()),
        None => DockerfileSource::Default,
    };
    let network = match req.q("networkmode").filter(|n| !n.is_empty()) {
        Some("bridge") | None => Network::Default,
        Some(n) => Network::parse(n).ok_or_else(|| ApiError::bad(format!("unsupported networkmode {n:?}")))?,
    };
    let labels = json_map(req, "labels")?.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect();
    Ok(BuildRequest {
        context: Some(ContextSource::Tar(format!("/proc/self/fd/{}", f.as_raw_fd()).into())),
        dockerfile: Some(dockerfile),
        tags: req.query.get("t").cloned().unwrap_or_default().into_iter().filter(|t| !t.is_empty()).collect(),
        build_args: json_map(req, "buildargs")?.into_iter().filter(|(_, v)| v.is_some()).collect(),
        target: req.q("target").filter(|t| !t.is_empty()).map(str::to_string),
        no_cache: req.flag("nocache"),
        pull: req.flag("pull"),
        network,
        labels,
        // Plain progress on stderr, which `build` points into the answer.
        progress: if req.flag("q") { Progress::Quiet } else { Progress::Plain },
        data_root: s.e.data_root.clone(),
        runtime_root: s.e.root.clone(),
        // SIGTERM/SIGINT stop the service (its handlers), not the build's steps.
        keep_signal_handlers: true,
        ..Default::default()
    })
}

pub fn build(s: &Service, req: &Request, w: &mut UnixStream) -> ApiResult {
    let breq = request(s, req)?;
    if http::start_stream(w, 200, "application/json").is_err() {
        return Ok(Response::Done);
    }
    let out = w.try_clone();
    // One build at a time: the builder points the process's fds 0-2 elsewhere while its
    // containers run (restored after), and holds the store's write guard for the whole build.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let built = {
        let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
        match (breq.progress, out) {
            (Progress::Plain, Ok(out)) => with_stderr_forwarded(out, || builder::build(&breq)),
            _ => builder::build(&breq),
        }
    };
    let mut c = Chunked(w);
    let mut say = |v: Value| {
        let _ = c.send(format!("{v}\n").as_bytes());
    };
    match built {
        Ok(b) => {
            let id = b.id.to_string();
            if req.flag("q") {
                // The classic builder's quiet answer: the id as the stream (what the CLI prints).
                say(json!({ "stream": format!("{id}\n") }));
            } else {
                let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
                say(json!({ "stream": format!("Successfully built {short}\n") }));
                for t in &breq.tags {
                    say(json!({ "stream": format!("Successfully tagged {t}\n") }));
                }
            }
            say(json!({ "aux": { "ID": id } }));
        }
        Err(e) => {
            let m = e.to_string();
            say(json!({"errorDetail": {"message": m}, "error": m}));
        }
    }
    let _ = c.finish();
    Ok(Response::Done)
}

/// Runs `f` with the process's stderr (where the builder writes its steps and its RUN
/// containers their output) pointed into a pipe whose lines go to the client as docker's
/// `{"stream": ...}` messages; stderr is restored after. Callers hold the one-build lock.
fn with_stderr_forwarded<R>(out: UnixStream, f: impl FnOnce() -> R) -> R {
    use std::io::{BufRead, BufReader};
    use std::os::fd::{FromRawFd, OwnedFd};
    let Ok((rd, wr)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else { return f() };
    // SAFETY: duplicates fd 2, which this process owns; checked below.
    let saved = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 10) };
    if saved < 0 {
        return f();
    }
    // SAFETY: `saved` is a new descriptor nothing else owns.
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    // Set when the answer goes on without the reader (a process of a step still holds the
    // pipe): the reader writes nothing after it.
    let closed = std::sync::Arc::new(std::sync::Mutex::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let reader_closed = closed.clone();
    std::thread::spawn(move || {
        let mut c = out;
        let mut r = BufReader::new(std::fs::File::from(rd));
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let msg = json!({ "stream": String::from_utf8_lossy(&line) });
            let gone = {
                let closed = reader_closed.lock().unwrap_or_else(|p| p.into_inner());
                *closed || Chunked(&mut c).send(format!("{msg}\n").as_bytes()).is_err()
            };
            if gone {
                // Drained, so that no writer blocks on a full pipe.
                let _ = std::io::copy(&mut r, &mut std::io::sink());
                break;
            }
            line.clear();
        }
        let _ = done_tx.send(());
    });
    // SAFETY: both descriptors are valid; fd 2 now refers to the pipe's write end.
    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&wr), 2) };
    drop(wr);
    let r = f();
    // SAFETY: puts the saved stderr back on fd 2 (closing the pipe's last write end).
    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&saved), 2) };
    if done_rx.recv_timeout(std::time::Duration::from_secs(2)).is_err() {
        *closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
    r
}
