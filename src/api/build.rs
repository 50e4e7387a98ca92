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
        // The builder's own progress lines go nowhere (they would land in the service's
        // log); the answer says what was built.
        progress: Progress::Quiet,
        data_root: s.e.data_root.clone(),
        runtime_root: s.e.root.clone(),
        ..Default::default()
    })
}

pub fn build(s: &Service, req: &Request, w: &mut UnixStream) -> ApiResult {
    let breq = request(s, req)?;
    if http::start_stream(w, 200, "application/json").is_err() {
        return Ok(Response::Done);
    }
    let mut c = Chunked(w);
    let mut say = |v: Value| {
        let _ = c.send(format!("{v}\n").as_bytes());
    };
    // One build at a time: the builder points the process's fds 0-2 elsewhere while its
    // containers run (restored after), and holds the store's write guard for the whole build.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let built = {
        let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
        builder::build(&breq)
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
