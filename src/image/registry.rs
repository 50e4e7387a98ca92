//! A blocking client for the OCI distribution API (registry v2): manifests and blobs,
//! with anonymous, basic and bearer-token authentication.
//!
//! Which scheme a registry host is spoken to with:
//! - `insecure` set: https without certificate verification first; if that fails at the
//!   connection level (no TLS server there), plain http. The first scheme that works is
//!   remembered for the host.
//! - a loopback host (`localhost`, `127.0.0.0/8`, `::1`, with any port) and no `tls_ca`: plain
//!   http, unless the host turns out to speak https (it answers plain http with a 400 that
//!   says so, as Go's and nginx's https servers do, or with something that is not http at
//!   all): then https, verified against the system CAs, for this and later requests.
//! - anything else: https only, verified against the system CAs
//!   (`$SSL_CERT_FILE`, else /etc/ssl/certs/ca-certificates.crt and the usual other bundle
//!   paths) plus the certificates in `tls_ca`.
//!
//! Redirects (registries send blobs to storage hosts) are followed, at most 10; the
//! Authorization header goes along only to the same host. With `insecure`, redirect
//! targets reached from an https registry are not verified either.
//!
//! Credentials come from a docker-style config.json (`auths` map): `auth_file`, else
//! `$REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
//! They are sent only when the registry (or its token server) asks with a 401. Bearer
//! tokens are cached per (registry, repository) and fetched again when one is refused.

use super::digest::Digest;
use super::reference::Reference;
use super::types;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest manifest or index accepted.
pub const MAX_MANIFEST: u64 = 4 << 20;
const USER_AGENT: &str = "berth/0.1";
const PROGRESS_STEP: u64 = 64 << 10;
/// Blob bytes handed on at a time.
const BLOB_BUF: usize = 256 << 10;
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Allow plain http and unverified https for every registry.
    pub insecure: bool,
    /// Extra CA certificates (PEM) to trust; also makes a loopback registry use https.
    pub tls_ca: Option<PathBuf>,
    /// docker-style config.json with an `auths` map.
    pub auth_file: Option<PathBuf>,
    /// (user, password) given with the request (the Engine API's `X-Registry-Auth`): used
    /// before the auth file's.
    pub credentials: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {host}: tls: {msg}")]
    Tls { host: String, msg: String },
    #[error("registry {host}: {msg}")]
    Transport { host: String, msg: String },
    #[error("registry {host}: manifest {what} not found (404)")]
    ManifestNotFound { host: String, what: String },
    #[error("registry {host}: blob {digest} not found in {repo} (404)")]
    BlobNotFound { host: String, repo: String, digest: Digest },
    #[error("registry {host}: authentication refused (401) for {repo} with the credentials in {file}")]
    AuthRefused { host: String, repo: String, file: String },
    #[error("registry {host}: access denied (401) for {repo}: the repository does not exist or needs credentials")]
    AuthRequired { host: String, repo: String },
    #[error("registry {host}: unsupported authentication challenge {challenge:?} for {repo}")]
    BadChallenge { host: String, repo: String, challenge: String },
    #[error("registry {host}: token server {realm}: {msg}")]
    Token { host: String, realm: String, msg: String },
    #[error("registry {host}: {what}: unexpected status {status}{detail}")]
    Status { host: String, what: String, status: u16, detail: String },
    #[error("manifest {what}: digest mismatch (got {got})")]
    ManifestDigest { what: String, got: Digest },
    #[error("manifest {what}: larger than {max} bytes")]
    ManifestTooBig { what: String, max: u64 },
    #[error("manifest {what}: read from registry {host}: {err}")]
    ManifestRead { what: String, host: String, err: io::Error },
    #[error("blob {digest}: size mismatch: expected {expected} bytes, registry sends {got}")]
    BlobSize { digest: Digest, expected: u64, got: String },
    #[error("blob {digest}: truncated after {got} of {expected} bytes")]
    Truncated { digest: Digest, got: u64, expected: u64 },
    #[error("blob {digest}: read from registry {host} after {got} bytes: {err}")]
    BlobRead { digest: Digest, host: String, got: u64, err: io::Error },
    #[error("blob {digest}: write: {err}")]
    BlobWrite { digest: Digest, err: io::Error },
    #[error("tls ca file {}: {msg}", path.display())]
    CaFile { path: PathBuf, msg: String },
    #[error("tls setup: {0}")]
    TlsSetup(String),
    #[error("auth file {}: {msg}", path.display())]
    AuthFile { path: PathBuf, msg: String },
}

/// One entry of a docker config.json `auths` map.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

/// A request body. A file range is opened again for each attempt (a 401 answered with
/// credentials sends it twice).
#[derive(Clone, Copy)]
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    File { path: &'a Path, offset: u64, len: u64, progress: &'a (dyn Fn(u64) + Sync) },
}

/// What a cross-repository mount request did.
#[derive(Debug)]
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The registry started an upload session (at this location) instead.
    Upload(String),
}

/// A file range as a reader.
fn open_range(path: &Path, offset: u64, len: u64) -> io::Result<io::Take<std::fs::File>> {
    use std::io::Seek;
    let mut f = std::fs::File::open(path)?;
    f.seek(io::SeekFrom::Start(offset))?;
    Ok(f.take(len))
}

/// A reader that reports the bytes read so far (plus `base`) every PROGRESS_STEP.
struct Counting<'a, R> {
    inner: R,
    base: u64,
    done: u64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.done / PROGRESS_STEP;
        self.done += n as u64;
        if self.done / PROGRESS_STEP != before {
            (self.progress)(self.base + self.done);
        }
        Ok(n)
    }
}

/// The Location of an upload session from a 202 reply.
fn upload_location(r: &Reference, digest: &Digest, resp: ureq::Response) -> Result<String, RegistryError> {
    let loc = resp.header("location").map(|l| l.trim().to_string()).filter(|l| !l.is_empty());
    drain(resp);
    match loc {
        Some(l) if l.starts_with('/') || l.contains("://") => Ok(l),
        Some(l) => Ok(format!("/{l}")),
        None => Err(RegistryError::Status {
            host: r.registry.clone(),
            what: format!("blob {digest} upload"),
            status: 202,
            detail: ": no Location header".to_string(),
        }),
    }
}

/// A registry client; cheap to share by reference between threads.
pub struct Client {
    /// Verifies certificates (system CAs + tls_ca).
    agent: ureq::Agent,
    /// Skips verification; only with `insecure`.
    insecure_agent: Option<ureq::Agent>,
    tls_ca_given: bool,
    auth_path: Option<PathBuf>,
    auths: BTreeMap<String, AuthEntry>,
    /// (registry, repository) → Authorization header value that worked.
    auth_cache: Mutex<HashMap<(String, String), String>>,
    /// Scheme found to work for a host when it had to be probed (insecure).
    schemes: Mutex<HashMap<String, Scheme>>,
    credentials: Option<(String, String)>,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client, RegistryError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let system = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(CA_BUNDLES.iter().map(PathBuf::from))
            .find_map(|p| std::fs::read(p).ok());
        if let Some(pem) = system {
            roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
        }
        if let Some(path) = &opts.tls_ca {
            let ca_err = |msg: String| RegistryError::CaFile { path: path.clone(), msg };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| ca_err(format!("bad PEM: {e}")))?;
                roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
                n += 1;
            }
            if n == 0 {
                return Err(ca_err("no certificate in PEM file".to_string()));
            }
        }
        let tls = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| RegistryError::TlsSetup(e.to_string()))?;
        let verified = tls.with_root_certificates(roots).with_no_client_auth();
        let insecure_agent = if opts.insecure {
            let cfg = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| RegistryError::TlsSetup(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth();
            Some(agent_builder().tls_connector(Arc::new(Tls(Arc::new(cfg)))).build())
        } else {
            None
        };
        let (auth_path, auths) = load_auth_file(opts.auth_file.as_deref())?;
        Ok(Client {
            agent: agent_builder().tls_connector(Arc::new(Tls(Arc::new(verified)))).build(),
            insecure_agent,
            tls_ca_given: opts.tls_ca.is_some(),
            auth_path,
            auths,
            auth_cache: Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
            credentials: opts.credentials.clone(),
        })
    }

    /// GET of any http(s) URL (a build's `ADD URL`) with this client's TLS setup and
    /// redirects: the response body, and its Last-Modified time (unix seconds) when given.
    pub fn get_url(&self, url: &str) -> Result<(Box<dyn io::Read + Send + Sync>, Option<i64>), String> {
        match self.agent.get(url).call() {
            Ok(resp) => {
                let lm = resp.header("Last-Modified").and_then(http_date);
                Ok((Box::new(resp.into_reader()), lm))
            }
            Err(ureq::Error::Status(code, _)) => Err(format!("{url}: unexpected status {code}")),
            Err(ureq::Error::Transport(t)) => Err(format!("{url}: {}", transport_message(&t).1)),
        }
    }

    /// The manifest (or index) `r` names, by digest if it has one, else by tag.
    /// Returns its bytes, media type and digest; a digest in `r` is verified.
    pub fn get_manifest(&self, r: &Reference) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        self.fetch_manifest(r, &r.tag_or_digest(), r.digest.as_ref())
    }

    /// The manifest `digest` in `r`'s repository (a child of an index), verified.
    pub fn get_manifest_by_digest(
        &self,
        r: &Reference,
        digest: &Digest,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        self.fetch_manifest(r, &digest.to_string(), Some(digest))
    }

    fn fetch_manifest(
        &self,
        r: &Reference,
        tag_or_digest: &str,
        want: Option<&Digest>,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let what = match want {
            Some(d) => format!("{}@{d}", r.repository),
            None => format!("{}:{tag_or_digest}", r.repository),
        };
        let path = format!("/v2/{}/manifests/{tag_or_digest}", r.repository);
        let resp = self.get(r, &path, Some(&types::MANIFEST_TYPES.join(", ")))?;
        match resp.status() {
            200 => {}
            404 => return Err(RegistryError::ManifestNotFound { host: r.registry.clone(), what }),
            _ => return Err(status_error(r, format!("manifest {what}"), resp)),
        }
        let content_type = resp.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
        let claimed = resp.header("docker-content-digest").and_then(|h| Digest::parse(h.trim()).ok());
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut body)
            .map_err(|err| RegistryError::ManifestRead { what: what.clone(), host: r.registry.clone(), err })?;
        if body.len() as u64 > MAX_MANIFEST {
            return Err(RegistryError::ManifestTooBig { what, max: MAX_MANIFEST });
        }
        let digest = Digest::of(&body);
        for expected in want.into_iter().chain(claimed.as_ref()) {
            if *expected != digest {
                return Err(RegistryError::ManifestDigest {
                    what: format!("{}@{expected}", r.repository),
                    got: digest,
                });
            }
        }
        let media_type = if content_type.starts_with("application/vnd.") {
            content_type
        } else {
            media_type_of_json(&body).unwrap_or(content_type)
        };
        Ok((body, media_type, digest))
    }

    /// Streams blob `digest` of `r`'s repository into `out`, checking its size (when
    /// given). The digest is not checked here: the caller writes into a store ingest, which
    /// hashes what it is given and verifies it before keeping anything (hashed once, not
    /// twice). `progress` gets the byte count so far, every 64 KiB or so and once at the end.
    /// Returns the number of bytes written.
    pub fn get_blob_unverified(
        &self,
        r: &Reference,
        digest: &Digest,
        out: &mut dyn Write,
        expected_size: Option<u64>,
        progress: &dyn Fn(u64),
    ) -> Result<u64, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let resp = self.get(r, &path, None)?;
        match resp.status() {
            200 => {}
            404 => {
                return Err(RegistryError::BlobNotFound {
                    host: r.registry.clone(),
                    repo: r.repository.clone(),
                    digest: digest.clone(),
                })
            }
            _ => return Err(status_error(r, format!("blob {digest}"), resp)),
        }
        let content_length = resp.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(want), Some(cl)) = (expected_size, content_length) {
            if want != cl {
                return Err(RegistryError::BlobSize { digest: digest.clone(), expected: want, got: cl.to_string() });
            }
        }
        let expected = expected_size.or(content_length);
        let mut body = resp.into_reader();
        // ureq hands out at most 8 KiB per read (its socket buffer); `out` gets whole
        // BLOB_BUF blocks, so the file writes and the hand-over to an unpacker stay few.
        let mut buf = vec![0u8; BLOB_BUF];
        let (mut total, mut reported) = (0u64, 0u64);
        let mut eof = false;
        while !eof {
            let mut fill = 0;
            while fill < buf.len() {
                match body.read(&mut buf[fill..]) {
                    Ok(0) => eof = true,
                    Ok(n) => fill += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && expected.is_some() => eof = true,
                    Err(err) => {
                        return Err(RegistryError::BlobRead {
                            digest: digest.clone(),
                            host: r.registry.clone(),
                            got: total + fill as u64,
                            err,
                        })
                    }
                }
                if eof {
                    break;
                }
            }
            total += fill as u64;
            if let Some(exp) = expected {
                if total > exp {
                    return Err(RegistryError::BlobSize {
                        digest: digest.clone(),
                        expected: exp,
                        got: "more".to_string(),
                    });
                }
            }
            out.write_all(&buf[..fill]).map_err(|err| RegistryError::BlobWrite { digest: digest.clone(), err })?;
            if total - reported >= PROGRESS_STEP {
                progress(total);
                reported = total;
            }
        }
        out.flush().map_err(|err| RegistryError::BlobWrite { digest: digest.clone(), err })?;
        progress(total);
        if let Some(exp) = expected {
            if total < exp {
                return Err(RegistryError::Truncated { digest: digest.clone(), got: total, expected: exp });
            }
        }
        Ok(total)
    }

    /// GET `path` on `r`'s registry, answering 401 challenges once. Returns the
    /// response whatever its status, except a 401 that persists.
    fn get(&self, r: &Reference, path: &str, accept: Option<&str>) -> Result<ureq::Response, RegistryError> {
        let headers: Vec<(&str, String)> = accept.map(|a| ("Accept", a.to_string())).into_iter().collect();
        self.request(r, "GET", path, &headers, Body::Empty)
    }

    /// `method` on `target` (a path on `r`'s registry, or an absolute URL the registry handed
    /// out, e.g. an upload location), answering 401 challenges once. Returns the response
    /// whatever its status, except a 401 that persists.
    fn request(
        &self,
        r: &Reference,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<ureq::Response, RegistryError> {
        let key = (r.registry.clone(), r.repository.clone());
        let mut auth = lock(&self.auth_cache).get(&key).cloned();
        let mut fresh = false;
        loop {
            let resp = self.send(r, method, target, headers, body, auth.as_deref())?;
            if resp.status() != 401 {
                return Ok(resp);
            }
            let challenges: Vec<String> = resp.all("www-authenticate").iter().map(|s| s.to_string()).collect();
            drain(resp);
            if fresh {
                return Err(self.denied(r));
            }
            let header = self.authenticate(r, &challenges)?;
            lock(&self.auth_cache).insert(key.clone(), header.clone());
            auth = Some(header);
            fresh = true;
        }
    }

    /// Whether blob `digest` is in `r`'s repository (HEAD).
    pub fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let resp = self.request(r, "HEAD", &path, &[], Body::Empty)?;
        match resp.status() {
            200 => {
                drain(resp);
                Ok(true)
            }
            404 => {
                drain(resp);
                Ok(false)
            }
            _ => Err(status_error(r, format!("blob {digest}"), resp)),
        }
    }

    /// Asks the registry to mount blob `digest` from repository `from` (same registry) into
    /// `r`'s repository. A registry that cannot mount it starts an ordinary upload instead.
    pub fn mount_blob(&self, r: &Reference, digest: &Digest, from: &str) -> Result<Mount, RegistryError> {
        let path = format!("/v2/{}/blobs/uploads/?mount={digest}&from={from}", r.repository);
        let resp = self.request(r, "POST", &path, &[("Content-Length", "0".into())], Body::Empty)?;
        match resp.status() {
            201 => {
                drain(resp);
                Ok(Mount::Mounted)
            }
            202 => Ok(Mount::Upload(upload_location(r, digest, resp)?)),
            _ => Err(status_error(r, format!("blob {digest} mount from {from}"), resp)),
        }
    }

    /// Starts an upload session in `r`'s repository; returns its location.
    pub fn start_upload(&self, r: &Reference, digest: &Digest) -> Result<String, RegistryError> {
        let path = format!("/v2/{}/blobs/uploads/", r.repository);
        let resp = self.request(r, "POST", &path, &[("Content-Length", "0".into())], Body::Empty)?;
        match resp.status() {
            202 => upload_location(r, digest, resp),
            _ => Err(status_error(r, format!("blob {digest} upload"), resp)),
        }
    }

    /// Uploads `size` bytes of file `path` as blob `digest` to the session at `location`:
    /// in one PUT when it is at most `put_max` bytes, else in one PATCH carrying the whole blob
    /// and a closing PUT without a body, as docker and skopeo send it (`docker-registry` then
    /// hashes it in one pass: 16 MiB PATCHes cost it a round trip and a saved hash state each).
    /// `progress` gets the byte count sent so far.
    #[allow(clippy::too_many_arguments)]
    pub fn upload_blob(
        &self,
        r: &Reference,
        location: &str,
        digest: &Digest,
        path: &Path,
        size: u64,
        put_max: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), RegistryError> {
        let what = || format!("blob {digest} upload");
        let octets = ("Content-Type", "application/octet-stream".to_string());
        let mut location = location.to_string();
        let mut offset = 0u64;
        if size > put_max {
            let headers =
                [octets.clone(), ("Content-Length", size.to_string()), ("Content-Range", format!("0-{}", size - 1))];
            let body = Body::File { path, offset: 0, len: size, progress };
            let resp = self.request(r, "PATCH", &location, &headers, body)?;
            if resp.status() != 202 {
                return Err(status_error(r, what(), resp));
            }
            location = upload_location(r, digest, resp)?;
            offset = size;
        }
        let url = format!("{location}{}digest={digest}", if location.contains('?') { '&' } else { '?' });
        let len = size - offset;
        let headers = [octets, ("Content-Length", len.to_string())];
        let body = if len == 0 { Body::Empty } else { Body::File { path, offset, len, progress } };
        let resp = self.request(r, "PUT", &url, &headers, body)?;
        match resp.status() {
            201 | 204 => {
                drain(resp);
                progress(size);
                Ok(())
            }
            _ => Err(status_error(r, what(), resp)),
        }
    }

    /// Abandons an upload session (best effort: the registry also expires them).
    pub fn cancel_upload(&self, r: &Reference, location: &str) {
        if let Ok(resp) = self.request(r, "DELETE", location, &[], Body::Empty) {
            drain(resp);
        }
    }

    /// Puts manifest `data` of `media_type` under `tag_or_digest` in `r`'s repository.
    /// Returns the digest the registry gives it (the digest of `data`, checked).
    pub fn put_manifest(
        &self,
        r: &Reference,
        tag_or_digest: &str,
        media_type: &str,
        data: &[u8],
    ) -> Result<Digest, RegistryError> {
        let path = format!("/v2/{}/manifests/{tag_or_digest}", r.repository);
        let what = format!("manifest {}:{tag_or_digest}", r.repository);
        let headers = [("Content-Type", media_type.to_string()), ("Content-Length", data.len().to_string())];
        let resp = self.request(r, "PUT", &path, &headers, Body::Bytes(data))?;
        if !(200..=202).contains(&resp.status()) {
            return Err(status_error(r, what, resp));
        }
        let ours = Digest::of(data);
        let claimed = resp.header("docker-content-digest").and_then(|h| Digest::parse(h.trim()).ok());
        drain(resp);
        match claimed {
            Some(d) if d != ours => Err(RegistryError::ManifestDigest { what, got: d }),
            _ => Ok(ours),
        }
    }

    fn denied(&self, r: &Reference) -> RegistryError {
        let (host, repo) = (r.registry.clone(), r.repository.clone());
        match self.credentials(&r.registry) {
            Some(_) => RegistryError::AuthRefused { host, repo, file: self.auth_file_name() },
            None => RegistryError::AuthRequired { host, repo },
        }
    }

    /// An Authorization header value answering one of `challenges`.
    fn authenticate(&self, r: &Reference, challenges: &[String]) -> Result<String, RegistryError> {
        let parsed: Vec<Challenge> = challenges.iter().filter_map(|c| parse_challenge(c)).collect();
        let creds = self.credentials(&r.registry);
        if let Some(bearer) = parsed.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer.param("realm").ok_or_else(|| RegistryError::BadChallenge {
                host: r.registry.clone(),
                repo: r.repository.clone(),
                challenge: challenges.join(", "),
            })?;
            return self.fetch_token(r, realm, bearer.param("service"), bearer.param("scope"), creds.as_ref());
        }
        if parsed.iter().any(|c| c.scheme == "basic") {
            return match creds {
                Some((u, p)) => Ok(basic_header(&u, &p)),
                None => Err(self.denied(r)),
            };
        }
        Err(RegistryError::BadChallenge {
            host: r.registry.clone(),
            repo: r.repository.clone(),
            challenge: challenges.join(", "),
        })
    }

    fn fetch_token(
        &self,
        r: &Reference,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        creds: Option<&(String, String)>,
    ) -> Result<String, RegistryError> {
        let token_err = |msg: String| RegistryError::Token { host: r.registry.clone(), realm: realm.to_string(), msg };
        let default_scope = format!("repository:{}:pull", r.repository);
        // The registry's own host gets the registry's TLS treatment; other hosts are verified.
        let agent = match (&self.insecure_agent, host_of_url(realm)) {
            (Some(a), Some(h)) if h == r.api_host() => a,
            _ => &self.agent,
        };
        let mut req = agent.get(realm);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        req = req.query("scope", scope.unwrap_or(&default_scope));
        if let Some((u, p)) = creds {
            req = req.set("Authorization", &basic_header(u, p));
        }
        let resp = match req.call() {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
            Err(ureq::Error::Transport(t)) => return Err(token_err(transport_message(&t).1)),
        };
        match resp.status() {
            200 => {}
            401 | 403 if creds.is_some() => {
                drain(resp);
                return Err(RegistryError::AuthRefused {
                    host: r.registry.clone(),
                    repo: r.repository.clone(),
                    file: self.auth_file_name(),
                });
            }
            401 | 403 => {
                drain(resp);
                return Err(RegistryError::AuthRequired { host: r.registry.clone(), repo: r.repository.clone() });
            }
            s => {
                drain(resp);
                return Err(token_err(format!("status {s}")));
            }
        }
        #[derive(serde::Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
        }
        let mut body = Vec::new();
        resp.into_reader().take(1 << 20).read_to_end(&mut body).map_err(|e| token_err(e.to_string()))?;
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| token_err(format!("bad reply: {e}")))?;
        match reply.token.or(reply.access_token) {
            Some(t) if !t.is_empty() => Ok(format!("Bearer {t}")),
            _ => Err(token_err("reply has no token".to_string())),
        }
    }

    /// One request on the scheme the host is spoken to with (see the module doc). A
    /// `target` that is an absolute URL on another host is sent as it is.
    fn send(
        &self,
        r: &Reference,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        auth: Option<&str>,
    ) -> Result<ureq::Response, RegistryError> {
        let host = r.api_host();
        let fail = |t: Box<ureq::Transport>| {
            let (tls, msg) = transport_message(&t);
            let host = r.registry.clone();
            if tls {
                RegistryError::Tls { host, msg }
            } else {
                RegistryError::Transport { host, msg }
            }
        };
        let with_headers = |mut req: ureq::Request| {
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if let Some(a) = auth {
                req = req.set("Authorization", a);
            }
            req
        };
        let call_url = |agent: &ureq::Agent, url: &str| -> Result<ureq::Response, Box<ureq::Transport>> {
            let req = with_headers(agent.request(method, url));
            let sent = match body {
                Body::Empty => req.call(),
                Body::Bytes(b) => req.send_bytes(b),
                Body::File { path, offset, len, progress } => match open_range(path, offset, len) {
                    Ok(f) => req.send(Counting { inner: f, base: offset, done: 0, progress }),
                    Err(e) => {
                        let msg = format!("open {}: {e}", path.display());
                        Err(ureq::Error::from(io::Error::other(msg)))
                    }
                },
            };
            match sent {
                Ok(resp) | Err(ureq::Error::Status(_, resp)) => Ok(resp),
                Err(ureq::Error::Transport(t)) => Err(Box::new(t)),
            }
        };
        let (path, foreign) = match target.split_once("://") {
            Some((_, rest)) => {
                let (h, p) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                if h.eq_ignore_ascii_case(host) {
                    (p.to_string(), None)
                } else {
                    (String::new(), Some(target))
                }
            }
            None => (target.to_string(), None),
        };
        if let Some(url) = foreign {
            let agent = self.insecure_agent.as_ref().unwrap_or(&self.agent);
            return call_url(agent, url).map_err(fail);
        }
        let path = path.as_str();
        let call = |agent: &ureq::Agent, scheme: Scheme| -> Result<ureq::Response, Box<ureq::Transport>> {
            let s = if scheme == Scheme::Https { "https" } else { "http" };
            call_url(agent, &format!("{s}://{host}{path}"))
        };
        let remember = |scheme: Scheme| {
            lock(&self.schemes).insert(host.to_string(), scheme);
        };
        let known = lock(&self.schemes).get(host).copied();
        match (&self.insecure_agent, known) {
            (Some(insecure), None) => match call(insecure, Scheme::Https) {
                Ok(resp) => {
                    remember(Scheme::Https);
                    Ok(resp)
                }
                Err(first) => match call(&self.agent, Scheme::Http) {
                    Ok(resp) => {
                        remember(Scheme::Http);
                        Ok(resp)
                    }
                    Err(_) => Err(fail(first)),
                },
            },
            (Some(insecure), Some(Scheme::Https)) => call(insecure, Scheme::Https).map_err(fail),
            (_, Some(scheme)) => call(&self.agent, scheme).map_err(fail),
            (None, None) if is_loopback(host) && !self.tls_ca_given => {
                // Plain http first (the usual local registry), https if the host speaks it.
                let https = || {
                    let resp = call(&self.agent, Scheme::Https).map_err(fail)?;
                    remember(Scheme::Https);
                    Ok(resp)
                };
                match call(&self.agent, Scheme::Http) {
                    Ok(resp) if resp.status() == 400 => {
                        let mut body = Vec::new();
                        let _ = resp.into_reader().take(4 << 10).read_to_end(&mut body);
                        // A HEAD's 400 has no body to say why: ask with a GET of /v2/.
                        let probe = || {
                            let mut b = Vec::new();
                            if let Ok(r) | Err(ureq::Error::Status(_, r)) =
                                self.agent.get(&format!("http://{host}/v2/")).call()
                            {
                                let _ = r.into_reader().take(4 << 10).read_to_end(&mut b);
                            }
                            says_https(&b)
                        };
                        if says_https(&body) || (body.is_empty() && method != "GET" && probe()) {
                            return https();
                        }
                        let text = String::from_utf8_lossy(&body);
                        ureq::Response::new(400, "Bad Request", &text)
                            .map_err(|e| RegistryError::Transport { host: r.registry.clone(), msg: e.to_string() })
                    }
                    Ok(resp) => {
                        remember(Scheme::Http);
                        Ok(resp)
                    }
                    Err(t) if maybe_tls_server(&t) => match https() {
                        Err(e @ RegistryError::Tls { .. }) => Err(e),
                        Ok(resp) => Ok(resp),
                        Err(_) => Err(fail(t)),
                    },
                    Err(t) => Err(fail(t)),
                }
            }
            (None, None) => call(&self.agent, Scheme::Https).map_err(fail),
        }
    }

    /// `login`: whether `registry` accepts `user`/`pass` (GET /v2/, answering its basic or
    /// bearer challenge with them).
    pub fn check_login(&mut self, registry: &str, user: &str, pass: &str) -> Result<(), RegistryError> {
        self.auths.clear();
        self.auths.insert(
            registry.to_string(),
            AuthEntry { auth: None, username: Some(user.to_string()), password: Some(pass.to_string()) },
        );
        self.auth_path = None;
        let r = Reference { registry: registry.to_string(), repository: String::new(), tag: None, digest: None };
        let resp = self.get(&r, "/v2/", None)?;
        let status = resp.status();
        drain(resp);
        match status {
            200..=299 => Ok(()),
            s => Err(RegistryError::Transport { host: registry.to_string(), msg: format!("GET /v2/: status {s}") }),
        }
    }

    /// (user, password) for `registry` from the auth file.
    fn credentials(&self, registry: &str) -> Option<(String, String)> {
        if let Some(c) = &self.credentials {
            return Some(c.clone());
        }
        lookup_credentials(&self.auths, registry)
    }

    /// The auth file the credentials came from (for errors).
    fn auth_file_name(&self) -> String {
        self.auth_path.as_deref().map_or_else(|| "the auth file".to_string(), |p| p.display().to_string())
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) as unix seconds.
fn http_date(s: &str) -> Option<i64> {
    let p: Vec<&str> = s.split_whitespace().collect();
    if p.len() != 6 || p[5] != "GMT" {
        return None;
    }
    let day: i64 = p[1].parse().ok()?;
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = months.iter().position(|x| *x == p[2])? as i64 + 1;
    let y: i64 = p[3].parse().ok()?;
    let t: Vec<i64> = p[4].split(':').map(|x| x.parse().ok()).collect::<Option<Vec<_>>>()?;
    if t.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + t[0] * 3600 + t[1] * 60 + t[2])
}

fn agent_builder() -> ureq::AgentBuilder {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .timeout_write(Duration::from_secs(60))
        .user_agent(USER_AGENT)
        .redirects(10)
        .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads (a bounded part of) a body so the connection can be reused.
fn drain(resp: ureq::Response) {
    let _ = io::copy(&mut resp.into_reader().take(64 << 10), &mut io::sink());
}

/// A non-success status, with the registry's own error message when it sent one.
fn status_error(r: &Reference, what: String, resp: ureq::Response) -> RegistryError {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = resp.status();
    let mut body = Vec::new();
    let _ = resp.into_reader().take(64 << 10).read_to_end(&mut body);
    let detail = match serde_json::from_slice::<Errors>(&body) {
        Ok(e) if !e.errors.is_empty() => {
            let items: Vec<String> =
                e.errors.iter().map(|i| format!("{} {}", i.code, i.message).trim().to_string()).collect();
            format!(": {}", items.join("; "))
        }
        // A short plain-text reply (e.g. an https server answering plain http) says it best.
        _ => match std::str::from_utf8(&body).map(|t| t.trim().lines().next().unwrap_or("")) {
            Ok(t) if !t.is_empty() && t.len() <= 200 && !t.starts_with('<') && !t.chars().any(char::is_control) => {
                format!(": {t}")
            }
            _ => String::new(),
        },
    };
    RegistryError::Status { host: r.registry.clone(), what, status, detail }
}

/// A TLS failure in words; a certificate that is not trusted says how to trust it.
fn tls_message(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(_) => format!(
            "{e}: the registry's certificate is not trusted; pass the CA certificate that signed it with --tls-ca FILE (or skip verification with --insecure)"
        ),
        _ => e.to_string(),
    }
}

/// (is a TLS failure, message) for a transport error, from its innermost useful cause.
fn transport_message(t: &ureq::Transport) -> (bool, String) {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    let mut last: Option<String> = None;
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return (true, tls_message(tls));
        }
        if let Some(ioe) = e.downcast_ref::<io::Error>() {
            if let Some(inner) = ioe.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return (true, tls_message(tls));
                }
            }
            if ioe.kind() == io::ErrorKind::TimedOut || ioe.kind() == io::ErrorKind::WouldBlock {
                return (false, "timed out".to_string());
            }
        }
        last = Some(e.to_string());
        cause = e.source();
    }
    let what = match t.kind() {
        ureq::ErrorKind::Dns => "dns lookup failed",
        ureq::ErrorKind::ConnectionFailed => "connect",
        ureq::ErrorKind::TooManyRedirects => "too many redirects",
        ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => "bad http response",
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => "bad url",
        _ => "io",
    };
    let msg = match (last, t.message()) {
        (Some(l), _) => format!("{what}: {l}"),
        (None, Some(m)) => format!("{what}: {m}"),
        (None, None) => what.to_string(),
    };
    (false, msg)
}

/// Whether a 400 reply to plain http says the server wants https ("Client sent an HTTP
/// request to an HTTPS server." from Go, "The plain HTTP request was sent to HTTPS port" from nginx).
fn says_https(body: &[u8]) -> bool {
    let t = String::from_utf8_lossy(body).to_ascii_lowercase();
    t.contains("https")
}

/// Whether a failed plain-http exchange looks like a TLS server on the other end: it
/// answered with something that is not http, or dropped the connection on the request.
fn maybe_tls_server(t: &ureq::Transport) -> bool {
    match t.kind() {
        ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => true,
        ureq::ErrorKind::Io => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
            while let Some(e) = cause {
                if let Some(ioe) = e.downcast_ref::<io::Error>() {
                    return matches!(
                        ioe.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionAborted
                    );
                }
                cause = e.source();
            }
            false
        }
        _ => false,
    }
}

fn host_of_url(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// True for `localhost`, 127.0.0.0/8 and ::1, with or without a port.
pub fn is_loopback(host_port: &str) -> bool {
    let host = if host_port.parse::<std::net::IpAddr>().is_ok() {
        host_port
    } else if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_port
            .rsplit_once(':')
            .map_or(host_port, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host_port })
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

fn media_type_of_json(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        config: Option<serde::de::IgnoredAny>,
    }
    let p: Probe = serde_json::from_slice(body).ok()?;
    match p {
        Probe { media_type: Some(m), .. } if !m.is_empty() => Some(m),
        Probe { manifests: Some(_), .. } => Some(types::OCI_INDEX.to_string()),
        Probe { config: Some(_), .. } => Some(types::OCI_MANIFEST.to_string()),
        _ => None,
    }
}

// ---- auth file -------------------------------------------------------------------------

/// Finds and parses the auth file. An explicitly named file must exist; the
/// fallback locations may be missing.
fn load_auth_file(explicit: Option<&Path>) -> Result<(Option<PathBuf>, BTreeMap<String, AuthEntry>), RegistryError> {
    let (path, required) = match explicit {
        Some(p) => (Some(p.to_path_buf()), true),
        None => (default_auth_path(), false),
    };
    let Some(path) = path else { return Ok((None, BTreeMap::new())) };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if !required && e.kind() == io::ErrorKind::NotFound => return Ok((None, BTreeMap::new())),
        Err(e) => return Err(RegistryError::AuthFile { path, msg: e.to_string() }),
    };
    let cfg: DockerConfig = serde_json::from_slice(&data)
        .map_err(|e| RegistryError::AuthFile { path: path.clone(), msg: e.to_string() })?;
    Ok((Some(path), cfg.auths))
}

pub(crate) fn default_auth_path() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("REGISTRY_AUTH_FILE")
        .or_else(|| env("DOCKER_CONFIG").map(|d| d.join("config.json")))
        .or_else(|| env("HOME").map(|h| h.join(".docker/config.json")))
}

/// `auths` keys are hosts, sometimes written as URLs (`https://host/v1/`); docker.io's
/// credentials are traditionally under `https://index.docker.io/v1/`.
fn lookup_credentials(auths: &BTreeMap<String, AuthEntry>, registry: &str) -> Option<(String, String)> {
    let norm = |h: &str| -> String {
        let h = h.strip_prefix("https://").or_else(|| h.strip_prefix("http://")).unwrap_or(h);
        let h = h.split('/').next().unwrap_or(h);
        match h {
            "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
            h => h.to_ascii_lowercase(),
        }
    };
    let want = norm(registry);
    let entry = auths.get(registry).or_else(|| auths.iter().find(|(k, _)| norm(k) == want).map(|(_, v)| v))?;
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        if !u.is_empty() {
            return Some((u.clone(), p.clone()));
        }
    }
    let decoded = base64_decode(entry.auth.as_deref()?.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn basic_header(user: &str, pass: &str) -> String {
    format!("Basic {}", base64_encode(format!("{user}:{pass}").as_bytes()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 (standard alphabet, padded), as config.json's `auth` values are written.
pub(crate) fn base64_encode_pub(data: &[u8]) -> String {
    base64_encode(data)
}

pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---- WWW-Authenticate --------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// Lower case: `basic`, `bearer`.
    scheme: String,
    /// Keys lower case, values unquoted.
    params: Vec<(String, String)>,
}

impl Challenge {
    fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `Bearer realm="https://auth/token",service="reg",scope="repository:a/b:pull"`
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = match header.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((s, r)) => (s, r),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let value;
        if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => v.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &q[end?..];
        } else {
            let end = after.find(',').unwrap_or(after.len());
            value = after[..end].trim().to_string();
            rest = &after[end..];
        }
        params.push((key, value));
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

// ---- TLS ------------------------------------------------------------------------------

/// rustls under ureq (ureq's own "tls" feature would also link a copy of the webpki roots).
struct Tls(Arc<ClientConfig>);

impl ureq::TlsConnector for Tls {
    fn connect(
        &self,
        dns_name: &str,
        mut io: Box<dyn ureq::ReadWrite>,
    ) -> Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        let name = dns_name.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("server name {dns_name:?}: {e}")))?
            .to_owned();
        let mut conn = rustls::ClientConnection::new(self.0.clone(), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        // Handshake now, so that its errors show as connection errors.
        while conn.is_handshaking() {
            conn.complete_io(&mut io)?;
        }
        Ok(Box::new(TlsStream(rustls::StreamOwned::new(conn, io))))
    }
}

struct TlsStream(rustls::StreamOwned<rustls::ClientConnection, Box<dyn ureq::ReadWrite>>);

impl ureq::ReadWrite for TlsStream {
    fn socket(&self) -> Option<&std::net::TcpStream> {
        self.0.get_ref().socket()
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsStream")
    }
}

// ---- insecure TLS --------------------------------------------------------------------------

/// Accepts any server certificate (still checks handshake signatures): `insecure` only.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Client>();
    }

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull,push"));
        assert_eq!(c.param("error"), None);

        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((c.scheme.as_str(), c.param("realm")), ("basic", Some("Registry Realm")));

        let c = parse_challenge(r#"bearer  Realm = "a\"b" , service=svc,error="invalid_token""#).unwrap();
        assert_eq!(c.param("realm"), Some("a\"b"));
        assert_eq!(c.param("service"), Some("svc"));
        assert_eq!(c.param("error"), Some("invalid_token"));

        assert_eq!(parse_challenge("Basic").unwrap().params, vec![]);
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
        assert!(parse_challenge("Bearer realm").is_none());
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn base64_round_trip() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "user:p@ss:word"] {
            let e = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&e).unwrap(), s.as_bytes(), "{s}");
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
        assert!(base64_decode("a!b").is_none());
        assert_eq!(basic_header("a", "b"), "Basic YTpi");
    }

    #[test]
    fn docker_config_lookup() {
        let cfg: DockerConfig = serde_json::from_str(
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "localhost:5000":{"auth":"dXNlcjpwYXNz"},
                "https://quay.io":{"username":"q","password":"w"},
                "http://Mixed.Example:8443/v2/":{"auth":"bTpu"},
                "broken.io":{"auth":"!!!"},
                "empty.io":{}
            },"credsStore":"desktop"}"#,
        )
        .unwrap();
        let a = &cfg.auths;
        let pair = |u: &str, p: &str| Some((u.to_string(), p.to_string()));
        assert_eq!(lookup_credentials(a, "docker.io"), pair("hub", "secret"));
        assert_eq!(lookup_credentials(a, "localhost:5000"), pair("user", "pass"));
        assert_eq!(lookup_credentials(a, "quay.io"), pair("q", "w"));
        assert_eq!(lookup_credentials(a, "mixed.example:8443"), pair("m", "n"));
        assert_eq!(lookup_credentials(a, "localhost:5001"), None);
        assert_eq!(lookup_credentials(a, "broken.io"), None);
        assert_eq!(lookup_credentials(a, "empty.io"), None);
        assert_eq!(lookup_credentials(&BTreeMap::new(), "docker.io"), None);
        let hub: DockerConfig = serde_json::from_str(r#"{"auths":{"docker.io":{"auth":"YTpi"}}}"#).unwrap();
        assert_eq!(lookup_credentials(&hub.auths, "docker.io"), pair("a", "b"));
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:80", "[::1]:5000", "[::1]", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["docker.io", "10.0.0.1:5000", "[::2]:5000", "localhost.example.com", "128.0.0.1"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(host_of_url("https://auth.io:443/token?x=1"), Some("auth.io:443"));
        assert_eq!(host_of_url("http://h"), Some("h"));
        assert_eq!(host_of_url("nourl"), None);
        assert_eq!(media_type_of_json(br#"{"mediaType":"x","manifests":[]}"#).as_deref(), Some("x"));
        assert_eq!(media_type_of_json(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(), Some(types::OCI_INDEX));
        assert_eq!(media_type_of_json(br#"{"schemaVersion":2,"config":{}}"#).as_deref(), Some(types::OCI_MANIFEST));
        assert_eq!(media_type_of_json(b"nope"), None);
    }

    #[test]
    fn auth_file_locations() {
        let dir = std::env::temp_dir().join(format!("berth-reg-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("auth.json");
        std::fs::write(&f, r#"{"auths":{"r.io":{"auth":"YTpi"}}}"#).unwrap();
        let (p, auths) = load_auth_file(Some(&f)).unwrap();
        assert_eq!(p.as_deref(), Some(f.as_path()));
        assert_eq!(lookup_credentials(&auths, "r.io"), Some(("a".into(), "b".into())));
        let missing = dir.join("missing.json");
        let e = load_auth_file(Some(&missing)).unwrap_err().to_string();
        assert!(e.starts_with(&format!("auth file {}: ", missing.display())), "{e}");
        std::fs::write(&f, "{bad").unwrap();
        assert!(load_auth_file(Some(&f)).unwrap_err().to_string().contains("auth file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
