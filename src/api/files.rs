//! A container's filesystem: `changes` (docker diff), `export`, `archive` (docker cp) and
//! `POST /commit`, translated to the engine's cores in `engine::commit` and `engine::copy`.

use super::http::{self, ChunkWriter, Chunked, Request, Response};
use super::{ApiError, ApiResult, Service};
use crate::engine::commit::{self, CommitOpts};
use crate::engine::copy;
use crate::engine::store::Containers;
use crate::image::upper_layer::ChangeKind;
use serde_json::{json, Value};
use std::os::unix::net::UnixStream;

fn cs(s: &Service) -> Containers {
    Containers::new(&s.e.data_root)
}

/// `GET /containers/{id}/changes`: docker's `[{"Path", "Kind"}]` (0 modified, 1 added,
/// 2 deleted).
pub fn changes(s: &Service, key: &str) -> ApiResult {
    let list: Vec<Value> = commit::changes(&cs(s), key)?
        .into_iter()
        .map(|c| {
            let kind = match c.kind {
                ChangeKind::Changed => 0,
                ChangeKind::Added => 1,
                ChangeKind::Deleted => 2,
            };
            json!({"Path": c.path, "Kind": kind})
        })
        .collect();
    Ok(Response::json(200, &Value::Array(list)))
}

/// `GET /containers/{id}/export`: the merged root filesystem as a tar, streamed.
pub fn export(s: &Service, key: &str, w: &mut UnixStream) -> ApiResult {
    let cs = cs(s);
    cs.find(key)?;
    http::start_stream(w, 200, "application/x-tar").map_err(|e| ApiError::new(500, e.to_string()))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, ChunkWriter(Chunked(w)));
    // Once the head is sent an error can only end the stream short (as docker's daemon does).
    if let Ok(out) = crate::engine::copy::export_to(&cs, key, out) {
        if let Ok(ChunkWriter(c)) = out.into_inner().map_err(|_| ()) {
            let _ = c.finish();
        }
    }
    Ok(Response::Done)
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`: the new image's id.
pub fn commit(s: &Service, req: &Request) -> ApiResult {
    let key = req.q("container").filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad("container is required"))?;
    let name = match (req.q("repo").filter(|r| !r.is_empty()), req.q("tag").filter(|t| !t.is_empty())) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r.to_string()),
        (None, Some(_)) => return Err(ApiError::bad("tag given without a repository")),
        (None, None) => None,
    };
    let o = CommitOpts {
        author: req.q("author").filter(|a| !a.is_empty()).map(str::to_string),
        changes: req.query.get("changes").cloned().unwrap_or_default().into_iter().filter(|c| !c.is_empty()).collect(),
        message: req.q("comment").filter(|c| !c.is_empty()).map(str::to_string),
        pause: req.q("pause").is_none() || req.flag("pause"),
    };
    let id = commit::commit_image_of(&s.e, &cs(s), key, name.as_deref(), o)?;
    Ok(Response::json(201, &json!({ "Id": id })))
}

fn path_q(req: &Request) -> Result<&str, ApiError> {
    req.q("path").filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad("path is required"))
}

/// docker's `X-Docker-Container-Path-Stat`: base64 of the path's JSON stat.
fn stat_header(st: &copy::PathStat) -> (String, String) {
    let v = json!({"name": st.name, "size": st.size, "mode": st.mode,
                   "mtime": crate::logging::rfc3339(st.mtime, st.mtime_nsec), "linkTarget": st.link_target});
    let b = crate::image::registry::base64_encode_pub(v.to_string().as_bytes());
    ("X-Docker-Container-Path-Stat".to_string(), b)
}

/// `HEAD /containers/{id}/archive?path=`: the stat header only.
pub fn archive_head(s: &Service, req: &Request, key: &str) -> ApiResult {
    let st = copy::stat_path(&cs(s), key, path_q(req)?)?;
    let mut r = Response::empty(200);
    if let Response::Full { headers, .. } = &mut r {
        headers.push(stat_header(&st));
    }
    Ok(r)
}

/// `GET /containers/{id}/archive?path=`: a tar of the path, with the stat header.
pub fn archive_get(s: &Service, req: &Request, key: &str, w: &mut UnixStream) -> ApiResult {
    let path = path_q(req)?;
    let cs = cs(s);
    let st = copy::stat_path(&cs, key, path)?;
    // The tar is made whole first (a temporary file) so that an error is still an answer.
    let tmp = http::spool_file().map_err(|e| ApiError::new(500, format!("create temporary file: {e}")))?;
    let f = copy::archive_out(&s.e, &cs, key, path, std::io::BufWriter::new(tmp))?;
    let mut f = f.into_inner().map_err(|e| ApiError::new(500, format!("write temporary file: {}", e.error())))?;
    use std::io::{Seek, Write};
    f.seek(std::io::SeekFrom::Start(0)).map_err(|e| ApiError::new(500, e.to_string()))?;
    let (k, v) = stat_header(&st);
    let head = http::stream_head(200, "application/x-tar", &[(k, v)]);
    w.write_all(&head).map_err(|e| ApiError::new(500, e.to_string()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, ChunkWriter(Chunked(w)));
    if std::io::copy(&mut f, &mut out).is_ok() {
        if let Ok(ChunkWriter(c)) = out.into_inner().map_err(|_| ()) {
            let _ = c.finish();
        }
    }
    Ok(Response::Done)
}

/// `PUT /containers/{id}/archive?path=DIR`: the tar body (spooled to a temporary file)
/// unpacked into DIR; `copyUIDGID` keeps the tar's owners.
pub fn archive_put(s: &Service, req: &Request, key: &str) -> ApiResult {
    let path = path_q(req)?;
    let Some(f) = req.body_file.as_ref() else { return Err(ApiError::bad("no archive in the request body")) };
    copy::archive_in(&s.e, &cs(s), key, path, req.flag("copyUIDGID"), std::io::BufReader::new(f))?;
    Ok(Response::empty(200))
}
