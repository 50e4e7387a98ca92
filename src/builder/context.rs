//! Sources of COPY and ADD: the build context (a directory, or a tar from stdin unpacked
//! into the build's scratch dir) with its `.dockerignore`, or another stage's root. Source
//! paths are cleaned, wildcards expanded, and each one opened beneath its root: `..` or a
//! symlink that leads out of the context is refused and named.

use super::fsops::{self, clean_rel};
use super::ignore::{glob, Ignore};
use super::BuildError;
use crate::image::digest::{Digest, Hasher};
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A root that COPY reads from.
pub struct SourceRoot {
    pub path: PathBuf,
    fd: OwnedFd,
    pub ignore: Ignore,
    /// The build context: symlinks may not lead out (RESOLVE_BENEATH). Another stage's
    /// root resolves its own absolute symlinks inside itself (RESOLVE_IN_ROOT).
    beneath: bool,
}

/// One resolved source: its path relative to the root, and a host path to read it by.
#[derive(Debug, Clone)]
pub struct Source {
    pub rel: String,
    pub host: PathBuf,
    pub is_dir: bool,
}

impl SourceRoot {
    pub fn context(path: &Path, ignore: Ignore) -> Result<SourceRoot, BuildError> {
        let fd = fsops::open_dir(path).map_err(super::io_err("open build context", path))?;
        Ok(SourceRoot { path: path.to_path_buf(), fd, ignore, beneath: true })
    }

    pub fn stage(path: &Path) -> Result<SourceRoot, BuildError> {
        let fd = fsops::open_dir(path).map_err(super::io_err("open", path))?;
        Ok(SourceRoot { path: path.to_path_buf(), fd, ignore: Ignore::default(), beneath: false })
    }

    /// The same root for another thread.
    pub fn try_clone(&self) -> std::io::Result<SourceRoot> {
        Ok(SourceRoot {
            path: self.path.clone(),
            fd: self.fd.try_clone()?,
            ignore: self.ignore.clone(),
            beneath: self.beneath,
        })
    }

    fn resolve_flag(&self) -> u64 {
        if self.beneath {
            libc::RESOLVE_BENEATH
        } else {
            libc::RESOLVE_IN_ROOT
        }
    }

    /// The sources a COPY/ADD argument names (wildcards expanded, ignored paths left out).
    pub fn resolve(&self, arg: &str) -> Result<Vec<Source>, String> {
        // Weakened (debug builds only, for the breakout tests): the argument as written, `..`
        // and symlinks resolved as the host resolves them.
        let weak = self.beneath && berth::faults::weakened("build-context-beneath");
        let rel = if weak {
            arg.trim_start_matches('/').to_string()
        } else if self.beneath {
            clean_rel(arg).ok_or_else(|| format!("{arg:?}: forbidden path outside the build context"))?
        } else {
            clean_rel(arg).unwrap_or_default()
        };
        let has_glob = rel.contains(['*', '?', '[']);
        let mut rels = Vec::new();
        if has_glob {
            self.expand(&rel, &mut rels)?;
            if rels.is_empty() {
                return Err(format!(
                    "{arg:?}: no source files were specified (the pattern matches nothing in the build context)"
                ));
            }
        } else {
            rels.push(rel);
        }
        let mut out = Vec::new();
        for r in rels {
            if !r.is_empty() && self.skipped(&r) {
                if has_glob {
                    continue;
                }
                return Err(format!("{arg:?}: not found (excluded by .dockerignore)"));
            }
            let resolve = if weak { 0 } else { self.resolve_flag() };
            let fd = match fsops::openat2(&self.fd, &r, libc::O_PATH, resolve) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    return Err(format!(
                        "{arg:?}: forbidden path outside the build context (a symlink leads out of it)"
                    ))
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    return Err(format!("{arg:?}: not found in the build context"))
                }
                Err(e) => return Err(format!("{arg:?}: {e}")),
            };
            let host = fsops::fd_path(&fd);
            let m = fs::metadata(&host).map_err(|e| format!("{arg:?}: {e}"))?;
            // The descriptor path stays valid while `fd` lives: keep the real path instead.
            let real = fs::read_link(&host).map_err(|e| format!("{arg:?}: {e}"))?;
            out.push(Source { rel: r, host: real, is_dir: m.is_dir() });
        }
        Ok(out)
    }

    fn expand(&self, pat: &str, out: &mut Vec<String>) -> Result<(), String> {
        let segs: Vec<&str> = pat.split('/').collect();
        let mut cur: Vec<String> = vec![String::new()];
        for (i, seg) in segs.iter().enumerate() {
            let mut next = Vec::new();
            for base in &cur {
                if !seg.contains(['*', '?', '[']) {
                    next.push(if base.is_empty() { seg.to_string() } else { format!("{base}/{seg}") });
                    continue;
                }
                let dir = self.path.join(base);
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                let mut names: Vec<String> =
                    rd.flatten().map(|e| String::from_utf8_lossy(e.file_name().as_bytes()).into_owned()).collect();
                names.sort();
                for n in names {
                    if glob(seg, &n).map_err(|_| format!("{pat:?}: bad pattern"))? {
                        next.push(if base.is_empty() { n } else { format!("{base}/{n}") });
                    }
                }
            }
            cur = next;
            if i + 1 < segs.len() {
                cur.retain(|p| self.path.join(p).is_dir());
            }
        }
        out.extend(cur.into_iter().filter(|p| fs::symlink_metadata(self.path.join(p)).is_ok()));
        Ok(())
    }

    /// Whether a path under a copied directory is left out (`.dockerignore`).
    /// An excluded directory with `!` exceptions that may match below it is walked (its
    /// entries are then judged one by one), as docker does.
    pub fn skipped(&self, rel: &str) -> bool {
        if self.ignore.is_empty() || !self.ignore.excluded(rel) {
            return false;
        }
        !(self.ignore.may_include_below(rel) && self.path.join(rel).is_dir())
    }
}

/// A checksum of sources' content and metadata (type, mode, owner, size, link target), not
/// of their times: the cache key of a COPY or ADD.
pub fn checksum(root: &SourceRoot, sources: &[Source]) -> Result<Digest, BuildError> {
    let mut h = Hasher::new();
    for s in sources {
        h.update(format!("src {}\n", s.rel).as_bytes());
        sum_entry(root, &s.host, &s.rel, &mut h)?;
    }
    Ok(h.finish())
}

fn sum_entry(root: &SourceRoot, p: &Path, rel: &str, h: &mut Hasher) -> Result<(), BuildError> {
    let m = fs::symlink_metadata(p).map_err(super::io_err("stat", p))?;
    let ft = m.file_type();
    h.update(
        format!(
            "{rel}\0{:o}\0{}\0{}\0{}\0",
            m.permissions().mode(),
            m.uid(),
            m.gid(),
            if ft.is_dir() { 0 } else { m.len() }
        )
        .as_bytes(),
    );
    if ft.is_symlink() {
        let t = fs::read_link(p).map_err(super::io_err("readlink", p))?;
        h.update(b"L");
        h.update(t.as_os_str().as_bytes());
    } else if ft.is_file() {
        h.update(b"F");
        let mut f = fs::File::open(p).map_err(super::io_err("open", p))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(super::io_err("read", p))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    } else if ft.is_dir() {
        h.update(b"D");
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(p)
            .map_err(super::io_err("read", p))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(super::io_err("read", p))?;
        names.sort();
        for n in names {
            let crel = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            if root.skipped(&crel) {
                continue;
            }
            sum_entry(root, &p.join(&n), &crel, h)?;
        }
    }
    h.update(b"\n");
    Ok(())
}
