//! Image references (`busybox`, `user/img:tag`, `localhost:5000/a/b:t`, `name@sha256:...`)
//! parsed and normalised the way docker does.

use super::digest::Digest;
use std::fmt;

/// The registry a name without one lives on.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The host docker.io's API is served from.
pub const DOCKER_API_HOST: &str = "registry-1.docker.io";
pub const DEFAULT_TAG: &str = "latest";

const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {why}")]
pub struct RefError {
    pub input: String,
    pub why: String,
}

/// A normalised image reference. `tag` is None only when the reference names a digest
/// alone; a name with neither gets the tag `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `quay.io`, `localhost:5000`, `[::1]:5000`, ...
    pub registry: String,
    /// `library/busybox`, `user/img`, `a/b`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, RefError> {
        let err = |why: &str| RefError { input: input.to_string(), why: why.to_string() };
        if input.is_empty() {
            return Err(err("empty name"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                let d = Digest::parse(d).map_err(|_| err("digest must be sha256:<64 lowercase hex digits>"))?;
                (r, Some(d))
            }
            None => (input, None),
        };
        // A tag is a ':' after the last '/' (a ':' before it is a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(err("tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(err("empty name"));
        }
        let (mut registry, mut repository) = match name.split_once('/') {
            Some((first, remote))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !valid_host(first) {
                    return Err(err("registry must be a host name or address with an optional :port"));
                }
                (first.to_string(), remote.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if registry == "index.docker.io" {
            registry = DEFAULT_REGISTRY.to_string();
        }
        if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        if !repository.split('/').all(valid_component) {
            return Err(err(
                "repository name components must be [a-z0-9] separated by '.', '_', '__' or '-', joined by single '/'",
            ));
        }
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(err("name is longer than 255 characters"));
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("repository name must not be a 64-character hex string (that is an image id)"));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (t, _) => t,
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// The host (and port) the registry API is served on: docker.io → registry-1.docker.io.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_API_HOST
        } else {
            &self.registry
        }
    }

    /// What goes after `/manifests/` in the URL: the digest if there is one, else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Reference, RefError> {
        Reference::parse(s)
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !t.is_empty() && t.len() <= MAX_TAG && ok(t.as_bytes()[0]) && t.bytes().all(|b| ok(b) || b == b'.' || b == b'-')
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is a DNS name, an IPv4 address or `[IPv6]`.
fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else { return false };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => ("x", Some(p)),
                None => return false,
            },
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_like_docker() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("busybox", "docker.io", "library/busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io", "library/busybox", "docker.io/library/busybox:1.36"),
            ("user/img:tag", "docker.io", "user/img", "docker.io/user/img:tag"),
            ("docker.io/busybox", "docker.io", "library/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/library/busybox", "docker.io", "library/busybox", "docker.io/library/busybox:latest"),
            ("localhost:5000/a/b:t", "localhost:5000", "a/b", "localhost:5000/a/b:t"),
            ("localhost/x", "localhost", "x", "localhost/x:latest"),
            ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "127.0.0.1:5000/x:latest"),
            ("[::1]:5000/x:y", "[::1]:5000", "x", "[::1]:5000/x:y"),
            ("quay.io/a/b/c", "quay.io", "a/b/c", "quay.io/a/b/c:latest"),
            ("Registry/x", "Registry", "x", "Registry/x:latest"),
            ("a.b-c/d__e.f-g---h", "a.b-c", "d__e.f-g---h", "a.b-c/d__e.f-g---h:latest"),
            ("host:5000/x:5000", "host:5000", "x", "host:5000/x:5000"),
        ];
        for (input, reg, repo, full) in cases {
            let r = p(input);
            assert_eq!((r.registry.as_str(), r.repository.as_str()), (*reg, *repo), "{input}");
            assert_eq!(r.to_string(), *full, "{input}");
            assert_eq!(p(full), r, "{full} round trip");
        }
    }

    #[test]
    fn digests() {
        let r = p(&format!("busybox@sha256:{HEX}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().map(|d| d.hex()), Some(HEX));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@sha256:{HEX}"));
        assert_eq!(r.tag_or_digest(), format!("sha256:{HEX}"));

        let r = p(&format!("localhost:5000/x:v1@sha256:{HEX}"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.to_string(), format!("localhost:5000/x:v1@sha256:{HEX}"));
        assert_eq!(r.tag_or_digest(), format!("sha256:{HEX}"));
    }

    #[test]
    fn helpers() {
        let r = p("busybox");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.tag_or_digest(), "latest");
        let l = p("localhost:5000/a/b:t");
        assert_eq!(l.api_host(), "localhost:5000");
        assert_eq!("busybox".parse::<Reference>().unwrap(), r);
    }

    #[test]
    fn rejects() {
        let long = "a".repeat(260);
        let hexname = "a".repeat(64);
        let cases: &[(&str, &str)] = &[
            ("", "empty name"),
            ("Busybox", "must be lowercase"),
            ("user/Img", "must be lowercase"),
            ("busybox:", "tag must be"),
            ("busybox:-x", "tag must be"),
            ("busybox:a/b", "registry must be"),
            (":tag", "empty name"),
            ("busybox@sha256:abc", "digest must be"),
            ("busybox@md5:00", "digest must be"),
            ("a//b", "components"),
            ("a/b/", "components"),
            ("/a", "components"),
            ("a..b", "components"),
            ("a_-b", "components"),
            ("-a", "components"),
            ("a b", "components"),
            ("localhost:abc/x", "registry must be"),
            ("bad_host.io/x", "registry must be"),
            ("[::zz]:5000/x", "registry must be"),
            ("quay.io/", "components"),
            (&long, "longer than 255"),
            (&hexname, "64-character hex"),
        ];
        for (input, why) in cases {
            match Reference::parse(input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => {
                    assert!(e.why.contains(why), "{input:?}: {e}");
                    assert!(e.to_string().starts_with(&format!("invalid reference {input:?}: ")), "{e}");
                }
            }
        }
        assert_eq!(
            Reference::parse("Busybox").unwrap_err().to_string(),
            "invalid reference \"Busybox\": repository name must be lowercase"
        );
    }
}
