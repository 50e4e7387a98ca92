//! `berth image import`: an image from a root filesystem (a tar, plain or compressed, or a
//! directory), as `docker import` does: one layer, a config built from `--change` lines.
//!
//! The image is written as an OCI layout in the store's tmp/ and handed to `archive::load`,
//! so it goes through the same verification, unpacking and commit as any loaded image.

use super::archive::{self, ArchiveError};
use super::digest::{Digest, HashingWriter};
use super::store::{normalise, Store, StoreError};
use super::types::{host_platform, ImageConfig, RootFs, RunConfig, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("--change {0:?}: {1}")]
    Change(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImportError + 'a {
    move |source| ImportError::Io { op, path: path.to_path_buf(), source }
}

/// Applies Dockerfile-style `--change` lines (CMD, ENTRYPOINT, ENV, EXPOSE, WORKDIR, USER,
/// LABEL, STOPSIGNAL, VOLUME) to a run config, as `docker import --change` does.
pub fn apply_changes(cfg: &mut RunConfig, changes: &[String]) -> Result<(), ImportError> {
    for line in changes {
        let bad = |m: &str| ImportError::Change(line.clone(), m.to_string());
        let t = line.trim();
        let (word, rest) = t.split_once(char::is_whitespace).ok_or_else(|| bad("an instruction and its arguments"))?;
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            "CMD" => cfg.cmd = Some(command_form(rest).map_err(|m| bad(&m))?),
            "ENTRYPOINT" => cfg.entrypoint = Some(command_form(rest).map_err(|m| bad(&m))?),
            "ENV" => {
                let env = cfg.env.get_or_insert_with(Vec::new);
                for (k, v) in key_values(rest).map_err(|m| bad(&m))? {
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = cfg.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in key_values(rest).map_err(|m| bad(&m))? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let ports = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    if num.parse::<u16>().map_or(true, |n| n == 0) || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(bad(&format!("invalid port {p:?}")));
                    }
                    ports.insert(format!("{num}/{proto}"), json!({}));
                }
            }
            "VOLUME" => {
                let vols = cfg.volumes.get_or_insert_with(BTreeMap::new);
                let list = if rest.starts_with('[') {
                    serde_json::from_str::<Vec<String>>(rest).map_err(|e| bad(&format!("bad JSON array: {e}")))?
                } else {
                    rest.split_whitespace().map(str::to_string).collect()
                };
                for v in list {
                    if !v.starts_with('/') {
                        return Err(bad(&format!("volume {v:?} is not an absolute path")));
                    }
                    vols.insert(v, json!({}));
                }
            }
            "WORKDIR" => cfg.working_dir = Some(rest.to_string()),
            "USER" => cfg.user = Some(rest.to_string()),
            "STOPSIGNAL" => cfg.stop_signal = Some(rest.to_string()),
            _ => return Err(bad("unknown or unsupported instruction")),
        }
    }
    Ok(())
}

/// `["a", "b"]` (exec form) or a shell line, run by `/bin/sh -c`.
fn command_form(s: &str) -> Result<Vec<String>, String> {
    if s.starts_with('[') {
        serde_json::from_str::<Vec<String>>(s).map_err(|e| format!("bad JSON array: {e}"))
    } else if s.is_empty() {
        Err("empty command".into())
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), s.into()])
    }
}

/// `K=V K2="v 2"` or the legacy `K V` form.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    if !s.contains('=') {
        let (k, v) = s.split_once(char::is_whitespace).ok_or("expected KEY=VALUE")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("expected KEY=VALUE, got {key:?}"));
        }
        let mut val = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => val.push(c),
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_whitespace() => break,
                None if c == '\\' => {
                    chars.next();
                    if let Some(n) = chars.next() {
                        val.push(n);
                    }
                    continue;
                }
                None => val.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        out.push((key, val));
    }
    Ok(out)
}

/// Removes the staging layout however import ends.
struct TmpDir(PathBuf);
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Imports `source` ("-" = stdin, a tar file, or a directory) as an image named `name`.
/// Returns the image id (the config digest).
pub fn import(
    store: &Store,
    source: &Path,
    name: Option<&str>,
    changes: &[String],
    message: Option<&str>,
) -> Result<Digest, ImportError> {
    let canonical = name.map(|n| normalise(n).map(|(_, c)| c)).transpose()?;
    let mut run = RunConfig {
        env: Some(vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]),
        ..RunConfig::default()
    };
    apply_changes(&mut run, changes)?;
    let stdin = source.as_os_str() == "-";
    let is_dir = !stdin && fs::metadata(source).map_err(io_err("open", source))?.is_dir();

    // Hold a writer's guard so that no other berth clears tmp/ under us.
    let g = store.write_guard()?;
    let tmp_root = store.root().join("tmp");
    fs::create_dir_all(&tmp_root).map_err(io_err("create", &tmp_root))?;
    // Per call, not only per process: the API service imports on several threads at once.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let layout = TmpDir(tmp_root.join(format!("import-{}-{seq}", std::process::id())));
    let _ = fs::remove_dir_all(&layout.0);
    let blobs = layout.0.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;

    // The layer, uncompressed (its digest is then its diff id).
    let layer_tmp = layout.0.join("layer.tar");
    let f = File::create(&layer_tmp).map_err(io_err("create", &layer_tmp))?;
    let mut w = HashingWriter::new(BufWriter::with_capacity(256 * 1024, f));
    if is_dir {
        let mut b = tar::Builder::new(&mut w);
        b.follow_symlinks(false);
        b.append_dir_all(".", source).map_err(io_err("read", source))?;
        b.finish().map_err(io_err("write", &layer_tmp))?;
    } else {
        let r: Box<dyn Read> = if stdin {
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(source).map_err(io_err("open", source))?)
        };
        let mut br = BufReader::with_capacity(256 * 1024, r);
        let head = br.fill_buf().map_err(io_err("read", source))?.to_vec();
        let mut r: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(br))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(zstd::stream::read::Decoder::with_buffer(br).map_err(io_err("read", source))?)
        } else {
            Box::new(br)
        };
        io::copy(&mut r, &mut w).map_err(io_err("read", source))?;
    }
    w.flush().map_err(io_err("write", &layer_tmp))?;
    let layer_size = w.hasher.len();
    let layer = w.hasher.clone().finish();
    drop(w);
    if layer_size < 1024 {
        return Err(ImportError::Archive(ArchiveError::Format {
            path: source.to_path_buf(),
            msg: "not a tar archive (too short)".into(),
        }));
    }
    let layer_path = blobs.join(layer.hex());
    fs::rename(&layer_tmp, &layer_path).map_err(io_err("rename", &layer_path))?;

    let plat = host_platform();
    let created = berth::logging::now_rfc3339();
    let mut history = json!({"created": created, "created_by": "berth image import"});
    if let Some(m) = message {
        history["comment"] = json!(m);
    }
    let mut extra = BTreeMap::new();
    extra.insert("history".to_string(), json!([history]));
    if let Some(m) = message {
        // docker keeps the message as the image's Comment too.
        extra.insert("comment".to_string(), json!(m));
    }
    let config = ImageConfig {
        created: Some(created),
        author: None,
        architecture: plat.architecture.clone(),
        os: plat.os.clone(),
        variant: plat.variant.clone(),
        config: run,
        rootfs: RootFs { kind: "layers".into(), diff_ids: vec![layer.clone()] },
        extra,
    };
    let config_bytes = serde_json::to_vec(&config).map_err(|e| io_err("encode", &layout.0)(io::Error::other(e)))?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": Digest::of(&config_bytes), "size": config_bytes.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": layer_size}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| io_err("encode", &layout.0)(io::Error::other(e)))?;
    for data in [&config_bytes, &manifest_bytes] {
        let p = blobs.join(Digest::of(data).hex());
        fs::write(&p, data).map_err(io_err("write", &p))?;
    }
    let mut desc =
        json!({"mediaType": OCI_MANIFEST, "digest": Digest::of(&manifest_bytes), "size": manifest_bytes.len()});
    if let Some(c) = &canonical {
        desc["annotations"] = json!({"io.containerd.image.name": c});
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]});
    for (f, v) in [("index.json", index), ("oci-layout", json!({"imageLayoutVersion": "1.0.0"}))] {
        let p = layout.0.join(f);
        fs::write(&p, v.to_string()).map_err(io_err("write", &p))?;
    }
    let loaded = archive::load(store, &layout.0, &mut io::sink())?;
    drop(g);
    loaded.into_iter().next().map(|l| l.id).ok_or_else(|| {
        ImportError::Archive(ArchiveError::Format { path: source.to_path_buf(), msg: "nothing imported".into() })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_like_docker() {
        let mut c = RunConfig::default();
        let ch: Vec<String> = [
            r#"CMD ["httpd", "-f", "-p", "80"]"#,
            "ENTRYPOINT /bin/init --x",
            r#"ENV A=1 B="two words""#,
            "ENV A 3",
            "EXPOSE 80 53/udp",
            "WORKDIR /www",
            "USER nobody",
            "LABEL org.x=y",
            "STOPSIGNAL SIGQUIT",
            "VOLUME /data",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        apply_changes(&mut c, &ch).unwrap();
        assert_eq!(c.cmd.unwrap(), ["httpd", "-f", "-p", "80"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/init --x"]);
        assert_eq!(c.env.unwrap(), ["B=two words", "A=3"]);
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.working_dir.as_deref(), Some("/www"));
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!(c.labels.unwrap()["org.x"], "y");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert!(c.volumes.unwrap().contains_key("/data"));
    }

    #[test]
    fn bad_changes_are_named() {
        for bad in ["RUN echo", "EXPOSE 99999", "EXPOSE 80/icmp", "CMD [\"x\"", "VOLUME data", "CMD", "ENV A=\"x"] {
            let e = apply_changes(&mut RunConfig::default(), &[bad.to_string()]).unwrap_err().to_string();
            assert!(e.starts_with("--change "), "{bad}: {e}");
        }
    }
}
