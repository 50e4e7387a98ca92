//! `berth login` / `logout`: the docker-style auth file (`auths` in config.json) that pull
//! and push read (see [`super::registry`] for where it is looked for). Login checks the
//! credentials against the registry first and writes `auths[REGISTRY].auth` =
//! base64(user:password), keeping every other key of the file; the file is replaced
//! atomically with mode 0600.

use super::registry::{self, Client, ClientOptions, RegistryError};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{op} {}: {err}", path.display())]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
    #[error("auth file {}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    #[error("{0}")]
    Invalid(String),
}

/// docker's key for a registry: Docker Hub is `https://index.docker.io/v1/`.
pub fn server_key(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let host = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/".into(),
        h => h.to_string(),
    }
}

fn registry_host(key: &str) -> String {
    if key.starts_with("https://index.docker.io") {
        "docker.io".into()
    } else {
        key.to_string()
    }
}

fn auth_path(explicit: Option<&Path>) -> Result<PathBuf, LoginError> {
    explicit
        .map(Path::to_path_buf)
        .or_else(registry::default_auth_path)
        .ok_or_else(|| LoginError::Invalid("no auth file: set HOME, DOCKER_CONFIG or --authfile".into()))
}

fn read(path: &Path) -> Result<Map<String, Value>, LoginError> {
    match std::fs::read(path) {
        Ok(d) if d.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(d) => match serde_json::from_slice(&d) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(LoginError::File { path: path.into(), msg: "not a JSON object".into() }),
            Err(e) => Err(LoginError::File { path: path.into(), msg: e.to_string() }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(err) => Err(LoginError::Io { op: "read", path: path.into(), err }),
    }
}

fn write(path: &Path, m: &Map<String, Value>) -> Result<(), LoginError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |op, err| LoginError::Io { op, path: path.to_path_buf(), err };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    let mut data = serde_json::to_vec_pretty(&Value::Object(m.clone())).unwrap_or_default();
    data.push(b'\n');
    let r = f.write_all(&data).and_then(|_| f.sync_all()).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", e));
    }
    Ok(())
}

/// Checks the credentials with the registry and stores them; returns the file written.
pub fn login(
    server: Option<&str>,
    user: &str,
    password: &str,
    authfile: Option<&Path>,
    opts: ClientOptions,
) -> Result<PathBuf, LoginError> {
    if user.is_empty() || password.is_empty() {
        return Err(LoginError::Invalid("username and password are required (-u and -p or --password-stdin)".into()));
    }
    let key = server_key(server);
    let path = auth_path(authfile)?;
    let mut m = read(&path)?;
    let mut client = Client::new(ClientOptions { auth_file: None, ..opts })?;
    client.check_login(&registry_host(&key), user, password)?;
    let auths = m.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Some(a) = auths.as_object_mut() {
        let entry = serde_json::json!({"auth": registry::base64_encode_pub(format!("{user}:{password}").as_bytes())});
        a.insert(key, entry);
    }
    write(&path, &m)?;
    Ok(path)
}

/// Removes the credentials of `server`; false when there were none.
pub fn logout(server: Option<&str>, authfile: Option<&Path>) -> Result<bool, LoginError> {
    let key = server_key(server);
    let path = auth_path(authfile)?;
    let mut m = read(&path)?;
    let host = registry_host(&key);
    let removed = m
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .map(|a| {
            let keys: Vec<String> = a
                .keys()
                .filter(|k| server_key(Some(k)) == key || registry_host(&server_key(Some(k))) == host)
                .cloned()
                .collect();
            for k in &keys {
                a.remove(k);
            }
            !keys.is_empty()
        })
        .unwrap_or(false);
    if removed {
        write(&path, &m)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(server_key(None), "https://index.docker.io/v1/");
        assert_eq!(server_key(Some("docker.io")), "https://index.docker.io/v1/");
        assert_eq!(server_key(Some("localhost:5000")), "localhost:5000");
        assert_eq!(server_key(Some("https://localhost:5000/v2/")), "localhost:5000");
    }

    #[test]
    fn logout_keeps_other_keys() {
        let d = std::env::temp_dir().join(format!("berth-login-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("config.json");
        std::fs::write(&f, r#"{"auths":{"a:1":{"auth":"eDp5"},"b:2":{"auth":"eDp5"}},"credsStore":"x"}"#).unwrap();
        assert!(logout(Some("a:1"), Some(&f)).unwrap());
        assert!(!logout(Some("a:1"), Some(&f)).unwrap());
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(v["credsStore"], "x");
        assert!(v["auths"]["b:2"].is_object() && v["auths"].get("a:1").is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
