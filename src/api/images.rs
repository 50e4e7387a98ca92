//! `/images/...`: the image store's typed results as docker's JSON.

use super::http::{self, Chunked, Request, Response};
use super::{ApiError, ApiResult, Service};
use crate::image::cli as icli;
use crate::image::pull::{self, PullOptions};
use crate::image::registry::{Client, ClientOptions};
use crate::image::store::{normalise, Store, StoreError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;

fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(q) => ApiError::new(404, format!("No such image: {q}")),
        StoreError::Conflict(m) => ApiError::new(409, m),
        e => ApiError::new(500, e.to_string()),
    }
}

fn open(s: &Service) -> Result<Store, ApiError> {
    Store::open(&s.e.data_root).map_err(store_err)
}

/// `GET /images/json` `filters`, as docker's: `dangling` (true: untagged images only; false:
/// tagged only), `reference` (a glob, `*` not crossing `/`, on the familiar `name:tag` or
/// `name`; only the matching tags are listed), `label` (`KEY` or `KEY=VALUE` of the image's
/// config, all must hold), `before`/`since` (an image: those created before/after it).
#[derive(Default)]
struct ImageFilters {
    dangling: Option<bool>,
    reference: Vec<String>,
    label: Vec<String>,
    before: Option<i64>,
    since: Option<i64>,
}

impl ImageFilters {
    fn parse(list: &[String], created_of: impl Fn(&str) -> Result<i64, ApiError>) -> Result<ImageFilters, ApiError> {
        let mut f = ImageFilters::default();
        for item in list {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            match k {
                "dangling" => {
                    f.dangling = Some(match v.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(ApiError::bad(format!("invalid filter 'dangling={v}'"))),
                    })
                }
                "reference" => {
                    crate::builder::ignore::glob(v, "").map_err(|_| {
                        ApiError::bad(format!("invalid reference filter {v:?}: syntax error in pattern"))
                    })?;
                    f.reference.push(v.to_string())
                }
                "label" => f.label.push(v.to_string()),
                "before" => f.before = Some(created_of(v)?),
                "since" => f.since = Some(created_of(v)?),
                _ => return Err(ApiError::bad(format!("invalid filter '{k}'"))),
            }
        }
        Ok(f)
    }

    /// A familiar `name:tag` (or `name@digest`) of `repo` kept by the reference filter.
    fn keeps_ref(&self, repo: &str, full: &str) -> bool {
        self.reference.is_empty()
            || self.reference.iter().any(|p| {
                crate::builder::ignore::glob(p, full).unwrap_or(false)
                    || crate::builder::ignore::glob(p, repo).unwrap_or(false)
            })
    }

    fn keeps_labels(&self, labels: &serde_json::Map<String, Value>) -> bool {
        self.label.iter().all(|l| match l.split_once('=') {
            Some((k, v)) => labels.get(k).and_then(Value::as_str) == Some(v),
            None => labels.contains_key(l.as_str()),
        })
    }
}

pub fn list(s: &Service, req: &Request) -> ApiResult {
    let store = open(s)?;
    let index = store.read_index().map_err(store_err)?;
    let rows = icli::rows(&index);
    let created_of = |q: &str| -> Result<i64, ApiError> {
        let img = store.resolve_in(&index, q).map_err(store_err)?;
        Ok(rows.iter().find(|r| r.id == img.config_digest).and_then(|r| r.created).unwrap_or(0))
    };
    let f = ImageFilters::parse(&super::containers::filters(req)?, created_of)?;
    // id → (tags, digests, created, size, named at all)
    type Entry = (Vec<String>, Vec<String>, i64, u64, bool);
    let mut by_id: BTreeMap<String, Entry> = BTreeMap::new();
    for r in &rows {
        let e = by_id
            .entry(r.id.to_string())
            .or_insert_with(|| (Vec::new(), Vec::new(), r.created.unwrap_or(0), r.size, false));
        if r.repo == "<none>" {
            continue;
        }
        e.4 = true;
        if r.tag != "<none>" {
            let t = format!("{}:{}", r.repo, r.tag);
            if f.keeps_ref(&r.repo, &t) {
                e.0.push(t);
            }
        }
        if r.digest != "<none>" {
            let d = format!("{}@{}", r.repo, r.digest);
            if !e.1.contains(&d) && f.keeps_ref(&r.repo, &d) {
                e.1.push(d);
            }
        }
    }
    let mut out = Vec::new();
    for (id, (tags, digests, created, size, named)) in by_id {
        // docker's: an image whose names all failed the reference filter is left out, an
        // unnamed one too when a reference filter is given.
        if !f.reference.is_empty() && tags.is_empty() && digests.is_empty() {
            continue;
        }
        let dangling = !named;
        match f.dangling {
            Some(true) if !tags.is_empty() => continue,
            Some(false) if dangling => continue,
            _ => {}
        }
        if f.before.is_some_and(|b| created >= b) || f.since.is_some_and(|t| created <= t) {
            continue;
        }
        let mut labels = serde_json::Map::new();
        if let Ok(cfg) =
            crate::image::digest::Digest::parse(&id).map_err(|_| ()).and_then(|d| store.read_blob(&d).map_err(|_| ()))
        {
            if let Ok(v) = serde_json::from_slice::<Value>(&cfg) {
                if let Some(m) = v["config"]["Labels"].as_object() {
                    labels = m.clone();
                }
            }
        }
        if !f.keeps_labels(&labels) {
            continue;
        }
        out.push(json!({"Id": id, "ParentId": "", "RepoTags": tags, "RepoDigests": digests, "Created": created,
                        "Size": size, "VirtualSize": size, "SharedSize": -1, "Labels": labels, "Containers": -1}));
    }
    out.sort_by_key(|v| std::cmp::Reverse(v["Created"].as_i64().unwrap_or(0)));
    Ok(Response::json(200, &Value::Array(out)))
}

pub fn inspect(s: &Service, name: &str) -> ApiResult {
    let store = open(s)?;
    let img = store.resolve(name).map_err(store_err)?;
    let mut v = icli::inspect_json(&img);
    if let Ok(data) = store.read_blob(&img.manifest_digest) {
        v["Descriptor"]["mediaType"] = Value::String(pull::manifest_media_type("", &data));
        v["Descriptor"]["size"] = Value::from(data.len());
    }
    v["Container"] = json!("");
    v["DockerVersion"] = json!("");
    v["GraphDriver"] = json!({"Name": "overlay2", "Data": null});
    Ok(Response::json(200, &v))
}

/// `GET /images/{name}/history`: the image's history rows (`image history`'s), newest first.
pub fn history(s: &Service, name: &str) -> ApiResult {
    let store = open(s)?;
    let img = store.resolve(name).map_err(store_err)?;
    let tags = icli::inspect_json(&img)["RepoTags"].clone();
    let rows: Vec<Value> = crate::image::history::rows(&store, &img)
        .into_iter()
        .map(|r| {
            let top = r.id.is_some();
            json!({"Id": r.id.unwrap_or_else(|| "<missing>".into()), "Created": r.created.unwrap_or(0),
                   "CreatedBy": r.created_by, "Tags": if top { tags.clone() } else { Value::Null },
                   "Size": r.size, "Comment": r.comment})
        })
        .collect();
    Ok(Response::json(200, &Value::Array(rows)))
}

pub fn tag(s: &Service, req: &Request, name: &str) -> ApiResult {
    let repo =
        req.q("repo").filter(|r| !r.is_empty()).ok_or_else(|| ApiError::bad("repository name (repo) is required"))?;
    let target = match req.q("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    let store = open(s)?;
    let (r, full) = normalise(&target).map_err(|e| ApiError::bad(e.to_string()))?;
    if r.digest.is_some() {
        return Err(ApiError::bad(format!("refusing to create a tag with a digest reference: {target}")));
    }
    let mut il = store.lock_index().map_err(store_err)?;
    let img = store.resolve_in(&il.index, name).map_err(store_err)?;
    il.index.set_ref(&full, &img.manifest_digest);
    il.save().map_err(store_err)?;
    Ok(Response::empty(201))
}

pub fn remove(s: &Service, req: &Request, name: &str) -> ApiResult {
    let store = open(s)?;
    let mut il = store.lock_index().map_err(store_err)?;
    let uses = store.uses().map_err(store_err)?;
    let (lines, deleted) = icli::rm_one(&mut il.index, &uses, name, req.flag("force")).map_err(store_err)?;
    il.save().map_err(store_err)?;
    drop(il);
    if deleted {
        let _ = store.gc();
    }
    let out: Vec<Value> = lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix("Untagged: ")
                .map(|x| json!({"Untagged": x}))
                .or_else(|| l.strip_prefix("Deleted: ").map(|x| json!({"Deleted": x})))
        })
        .collect();
    Ok(Response::json(200, &Value::Array(out)))
}

/// `POST /images/prune`: unnamed images no container uses (`dangling=false`: every unused
/// one), as `image prune` removes them.
pub fn prune(s: &Service, req: &Request) -> ApiResult {
    let all = super::containers::filters(req)?.iter().any(|f| f == "dangling=false" || f == "dangling=0");
    let store = open(s)?;
    let (lines, bytes) = icli::prune_images(&store, all).map_err(|e| ApiError::new(500, e.to_string()))?;
    let deleted: Vec<Value> = lines
        .iter()
        .filter_map(|l| match l.split_once(": ") {
            Some(("untagged", n)) => Some(json!({ "Untagged": n })),
            Some(("deleted", id)) => Some(json!({ "Deleted": id })),
            _ => None,
        })
        .collect();
    Ok(Response::json(200, &json!({"ImagesDeleted": deleted, "SpaceReclaimed": bytes})))
}

/// The credentials of an `X-Registry-Auth` header (base64url of docker's AuthConfig JSON:
/// username and password, or `auth` = base64 of `user:password`); None when absent or empty.
fn registry_auth(req: &Request) -> Result<Option<(String, String)>, ApiError> {
    let Some(h) = req.header("x-registry-auth").map(str::trim).filter(|h| !h.is_empty()) else { return Ok(None) };
    let std_b64 = h.replace('-', "+").replace('_', "/");
    let bad = || ApiError::bad("invalid X-Registry-Auth header: expected base64 of a JSON object");
    let json = crate::image::registry::base64_decode(&std_b64).ok_or_else(bad)?;
    let v: Value = serde_json::from_slice(&json).map_err(|_| bad())?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).filter(|x| !x.is_empty()).map(str::to_string);
    if let (Some(u), Some(p)) = (field("username"), field("password")) {
        return Ok(Some((u, p)));
    }
    if let Some(a) = field("auth") {
        let raw = crate::image::registry::base64_decode(&a).ok_or_else(bad)?;
        let s = String::from_utf8(raw).map_err(|_| bad())?;
        if let Some((u, p)) = s.split_once(':') {
            return Ok(Some((u.to_string(), p.to_string())));
        }
    }
    Ok(None)
}

/// `POST /images/create?fromImage=NAME&tag=TAG`: a pull, answered as docker's JSON progress
/// stream (errors inside the stream, as docker sends them once the stream has begun).
pub fn create(s: &Service, req: &Request, w: &mut UnixStream) -> ApiResult {
    if let Some(src) = req.q("fromSrc") {
        return import(s, req, src);
    }
    let from = req.q("fromImage").filter(|f| !f.is_empty()).ok_or_else(|| ApiError::bad("fromImage is required"))?;
    let reference = match req.q("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) if !from.rsplit('/').next().unwrap_or("").contains(':') => format!("{from}:{t}"),
        _ => from.to_string(),
    };
    let (r, _) = normalise(&reference).map_err(|e| ApiError::bad(e.to_string()))?;
    let platform = req
        .q("platform")
        .filter(|p| !p.is_empty())
        .map(pull::parse_platform)
        .transpose()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let store = open(s)?;
    if http::start_stream(w, 200, "application/json").is_err() {
        return Ok(Response::Done);
    }
    let mut c = Chunked(w);
    let tag = r.tag.clone().or(r.digest.as_ref().map(|d| d.to_string())).unwrap_or_else(|| "latest".into());
    let _ = c.send(format!("{}\n", json!({"status": format!("Pulling from {}", r.repository), "id": tag})).as_bytes());
    let credentials = registry_auth(req)?;
    let result = Client::new(ClientOptions { insecure: false, tls_ca: None, auth_file: None, credentials })
        .map_err(|e| e.to_string())
        .and_then(|client| {
            pull::pull(&store, &client, &r, &PullOptions { platform, quiet: true }).map_err(|e| e.to_string())
        });
    let line = match result {
        Ok(d) => json!({"status": format!("Digest: {d}\nStatus: Downloaded newer image for {reference}")}),
        Err(e) => json!({"errorDetail": {"message": e}, "error": e}),
    };
    let _ = c.send(format!("{line}\n").as_bytes());
    let _ = c.finish();
    Ok(Response::Done)
}

/// `POST /images/create?fromSrc=-` (`docker import`): the request body (a root filesystem tar,
/// plain or compressed, spooled to an unnamed file) imported as `image import` does, named
/// `repo` (with `tag`), configured by the `changes` lines (Dockerfile instructions) and with
/// `message` as its comment (docker's "Imported from -" without one); docker's
/// `{"status": "sha256:..."}` answer.
fn import(s: &Service, req: &Request, src: &str) -> ApiResult {
    use crate::image::import::ImportError;
    use std::os::fd::AsRawFd;
    if src != "-" {
        return Err(ApiError::new(501, format!("fromSrc {src:?}: berth imports the request body only (fromSrc=-)")));
    }
    let Some(f) = req.body_file.as_ref() else { return Err(ApiError::bad("no archive in the request body")) };
    let name = match (req.q("repo").filter(|r| !r.is_empty()), req.q("tag").filter(|t| !t.is_empty())) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r.to_string()),
        (None, _) => None,
    };
    let changes: Vec<String> = req.query.get("changes").cloned().unwrap_or_default();
    // docker's default message (the image's Comment and its history's).
    let message = req.q("message").filter(|m| !m.is_empty()).unwrap_or("Imported from -");
    let store = open(s)?;
    // The importer reads a path: the unnamed file through this process's descriptor of it.
    let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    let id = crate::image::import::import(&store, &path, name.as_deref(), &changes, Some(message)).map_err(|e| {
        let status = match &e {
            ImportError::Io { .. } => 500,
            _ => 400,
        };
        ApiError::new(status, e.to_string())
    })?;
    let body = format!("{}\n", json!({ "status": id.to_string() })).into_bytes();
    Ok(Response::Full { status: 200, content_type: "application/json", body, headers: Vec::new() })
}

/// `GET /distribution/{name}/json`: the descriptor of the manifest (or index) `name` names in
/// its registry and the platforms it serves, with the `X-Registry-Auth` credentials (else the
/// service's own auth file); nothing is pulled.
pub fn distribution(req: &Request, name: &str) -> ApiResult {
    use crate::image::distribution::{self, DistributionError};
    use crate::image::registry::RegistryError;
    let (r, _) = normalise(name).map_err(|e| ApiError::bad(e.to_string()))?;
    let credentials = registry_auth(req)?;
    let client = Client::new(ClientOptions { insecure: false, tls_ca: None, auth_file: None, credentials })
        .map_err(|e| ApiError::new(500, e.to_string()))?;
    let found = distribution::inspect(&client, &r).map_err(|e| {
        let status = match &e {
            DistributionError::Registry(RegistryError::ManifestNotFound { .. }) => 404,
            DistributionError::Registry(RegistryError::AuthRefused { .. } | RegistryError::AuthRequired { .. }) => 401,
            _ => 500,
        };
        ApiError::new(status, e.to_string())
    })?;
    Ok(Response::json(
        200,
        &json!({
            "Descriptor": {"mediaType": found.media_type, "digest": found.digest.to_string(), "size": found.size},
            "Platforms": found.platforms,
        }),
    ))
}

/// `POST /auth` (`docker login`): the credentials are tried against the registry (a manifest
/// request under them: refused is a 401, anything the registry answers past authentication
/// is a login).
pub fn auth(req: &Request) -> ApiResult {
    use crate::image::registry::RegistryError;
    let b = super::body_json(req)?;
    let field = |k: &str| b.get(k).and_then(Value::as_str).filter(|x| !x.is_empty()).map(str::to_string);
    let (Some(user), Some(password)) = (field("username"), field("password")) else {
        return Err(ApiError::bad("username and password are required"));
    };
    let server = field("serveraddress").unwrap_or_else(|| "docker.io".into());
    let host = server.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    let (r, _) = normalise(&format!("{host}/berth-login-check:latest")).map_err(|e| ApiError::bad(e.to_string()))?;
    let client = Client::new(ClientOptions { credentials: Some((user, password)), ..Default::default() })
        .map_err(|e| ApiError::new(500, e.to_string()))?;
    match client.get_manifest(&r) {
        Ok(_) | Err(RegistryError::ManifestNotFound { .. }) => {
            Ok(Response::json(200, &json!({"Status": "Login Succeeded", "IdentityToken": ""})))
        }
        Err(RegistryError::AuthRefused { .. } | RegistryError::AuthRequired { .. }) => {
            Err(ApiError::new(401, format!("login attempt to {host} failed with status: 401 Unauthorized")))
        }
        Err(e) => Err(ApiError::new(500, e.to_string())),
    }
}

/// `GET /images/{name}/get` and `GET /images/get?names=A&names=B`: one docker archive of the
/// images named (made whole in an unnamed temporary file first, so that an unknown name is
/// still a 404), streamed.
pub fn get(s: &Service, names: &[String], w: &mut UnixStream) -> ApiResult {
    use crate::image::save::{self, SaveError};
    use std::io::{Seek, Write};
    if names.is_empty() {
        return Err(ApiError::bad("names is required"));
    }
    let store = open(s)?;
    let tmp = http::spool_file().map_err(|e| ApiError::new(500, format!("create temporary file: {e}")))?;
    let f = save::save_to(&store, names, std::io::BufWriter::with_capacity(1 << 20, tmp)).map_err(|e| match e {
        SaveError::Store(e) => store_err(e),
        e => ApiError::new(500, e.to_string()),
    })?;
    let mut f = f.into_inner().map_err(|e| ApiError::new(500, format!("write temporary file: {}", e.error())))?;
    f.seek(std::io::SeekFrom::Start(0)).map_err(|e| ApiError::new(500, e.to_string()))?;
    if w.write_all(&http::stream_head(200, "application/x-tar", &[])).is_err() {
        return Ok(Response::Done);
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, http::ChunkWriter(Chunked(w)));
    if std::io::copy(&mut f, &mut out).is_ok() {
        if let Ok(http::ChunkWriter(c)) = out.into_inner().map_err(|_| ()) {
            let _ = c.finish();
        }
    }
    Ok(Response::Done)
}

/// `POST /images/load`: the archive body (spooled to an unnamed temporary file) loaded as
/// `image load` does; docker's `{"stream": "Loaded image: ..."}` lines.
pub fn load(s: &Service, req: &Request) -> ApiResult {
    use std::os::fd::AsRawFd;
    let Some(f) = req.body_file.as_ref() else { return Err(ApiError::bad("no archive in the request body")) };
    let store = open(s)?;
    let mut said = Vec::new();
    // The loader reads a path: the unnamed file through this process's descriptor of it.
    let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    crate::image::archive::load(&store, &path, &mut said).map_err(|e| ApiError::bad(e.to_string()))?;
    let mut body = Vec::new();
    for l in String::from_utf8_lossy(&said).lines().filter(|l| !l.is_empty()) {
        body.extend_from_slice(json!({ "stream": format!("{l}\n") }).to_string().as_bytes());
        body.push(b'\n');
    }
    Ok(Response::Full { status: 200, content_type: "application/json", body, headers: Vec::new() })
}

/// `POST /images/{name}/push?tag=`: pushed with the `X-Registry-Auth` credentials (else the
/// service's own auth file); docker's JSON progress stream, the result in `aux`.
pub fn push(s: &Service, req: &Request, name: &str, w: &mut UnixStream) -> ApiResult {
    use crate::image::push::{self as ipush, PushOptions};
    let name = match req.q("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    let (r, _) = normalise(&name).map_err(|e| ApiError::bad(e.to_string()))?;
    let store = open(s)?;
    store.resolve(&name).map_err(|_| ApiError::new(404, format!("No such image: {name}")))?;
    let credentials = registry_auth(req)?;
    if http::start_stream(w, 200, "application/json").is_err() {
        return Ok(Response::Done);
    }
    let mut c = Chunked(w);
    let repo = format!("{}/{}", r.registry, r.repository);
    let _ = c.send(format!("{}\n", json!({ "status": format!("The push refers to repository [{repo}]") })).as_bytes());
    let result = Client::new(ClientOptions { insecure: false, tls_ca: None, auth_file: None, credentials })
        .map_err(|e| e.to_string())
        .and_then(|client| {
            ipush::push(&store, &client, &name, &PushOptions { quiet: true, all_tags: false })
                .map_err(|e| e.to_string())
        });
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    match result {
        Ok(d) => {
            let size = store.read_blob(&d).map(|b| b.len()).unwrap_or(0);
            let _ = c.send(format!("{}\n", json!({ "status": format!("{tag}: digest: {d} size: {size}") })).as_bytes());
            let aux = json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": d.to_string(), "Size": size}});
            let _ = c.send(format!("{aux}\n").as_bytes());
        }
        Err(e) => {
            let _ = c.send(format!("{}\n", json!({"errorDetail": {"message": e}, "error": e})).as_bytes());
        }
    }
    let _ = c.finish();
    Ok(Response::Done)
}
