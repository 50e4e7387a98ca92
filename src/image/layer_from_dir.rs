//! A layer tar from an overlayfs upper directory: what a container (a build step, a commit)
//! changed over its image. Deletions (overlay whiteouts: character devices 0/0) become
//! `.wh.NAME` entries and replaced directories (`trusted.overlay.opaque=y`) get a
//! `.wh..wh..opq` entry, as the OCI image spec and docker write them; only the upper
//! directory is read, never the whole tree. Entries come in name order with numeric owners
//! and no user names, and with `clamp_mtime` (SOURCE_DATE_EPOCH) no time is later than it,
//! so the same changes give the same bytes and digest.

use super::digest::{Digest, HashingWriter};
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |source| LayerError::Io { op, path: path.to_path_buf(), source }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (its diff id, and its digest as a blob).
    pub diff_id: Digest,
    pub size: u64,
    /// Entries written (whiteouts included).
    pub entries: u64,
}

/// Reads an extended attribute (not following symlinks); None when absent.
pub fn lgetxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let cp = CString::new(p.as_os_str().as_bytes()).ok()?;
    let cn = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: cp and cn are NUL-terminated; buf is valid for buf.len() bytes.
        let n = unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Some(buf);
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return None;
    }
}

/// The names of a file's extended attributes (not following symlinks).
pub fn llistxattr(p: &Path) -> Vec<String> {
    let Ok(cp) = CString::new(p.as_os_str().as_bytes()) else { return Vec::new() };
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: cp is NUL-terminated; buf is valid for buf.len() bytes.
        let n = unsafe { libc::llistxattr(cp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return Vec::new();
    }
    buf.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Whether overlayfs marked the directory opaque (its lower contents are hidden).
pub fn is_opaque_dir(p: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"].iter().any(|n| lgetxattr(p, n).as_deref() == Some(b"y"))
}

/// Whether the entry is an overlay whiteout.
pub fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

struct Writer<W: Write> {
    tar: tar::Builder<W>,
    clamp: Option<u64>,
    links: HashMap<(u64, u64), String>,
    entries: u64,
}

impl<W: Write> Writer<W> {
    fn header(&self, m: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(u64::from(m.uid()));
        h.set_gid(u64::from(m.gid()));
        let mt = u64::try_from(m.mtime()).unwrap_or(0);
        h.set_mtime(self.clamp.map_or(mt, |c| mt.min(c)));
        h.set_size(0);
        h
    }

    fn pax(&mut self, name: &str, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let mut body: Vec<u8> = Vec::new();
        for (k, v) in xattrs {
            let key = format!("SCHILY.xattr.{k}");
            // "LEN key=value\n" where LEN counts itself.
            let rest = key.len() + v.len() + 3;
            let mut len = rest + rest.to_string().len();
            if len.to_string().len() != rest.to_string().len() {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        let short: String = name.chars().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
        h.set_path(format!("PaxHeaders.0/{}", short.trim_start_matches('/')))?;
        h.set_cksum();
        self.tar.append(&h, body.as_slice())
    }

    fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
        let mut names = llistxattr(path);
        names.retain(|n| !n.starts_with("trusted.overlay.") && !n.starts_with("user.overlay."));
        names.sort();
        names.into_iter().filter_map(|n| lgetxattr(path, &n).map(|v| (n, v))).collect()
    }

    fn walk(&mut self, dir: &Path, rel: &str) -> Result<(), LayerError> {
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)
            .map_err(io_err("read", dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err("read", dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let path = dir.join(&n);
            let name = if rel.is_empty() {
                String::from_utf8_lossy(n.as_bytes()).into_owned()
            } else {
                format!("{rel}/{}", String::from_utf8_lossy(n.as_bytes()))
            };
            self.entry(&path, &name, &n)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, name: &str, base: &OsStr) -> Result<(), LayerError> {
        let m = fs::symlink_metadata(path).map_err(io_err("stat", path))?;
        let ft = m.file_type();
        let werr = |e: io::Error| LayerError::Io { op: "write layer entry", path: path.to_path_buf(), source: e };
        self.entries += 1;
        if is_whiteout(&m) {
            let parent = name.rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or_default();
            let wh = format!("{parent}.wh.{}", String::from_utf8_lossy(base.as_bytes()));
            let mut h = self.header(&m, tar::EntryType::Regular);
            h.set_mode(0o644);
            self.tar.append_data(&mut h, &wh, io::empty()).map_err(werr)?;
            return Ok(());
        }
        let xattrs = Self::xattrs(path);
        if ft.is_dir() {
            self.pax(name, &xattrs).map_err(werr)?;
            let mut h = self.header(&m, tar::EntryType::Directory);
            self.tar.append_data(&mut h, format!("{name}/"), io::empty()).map_err(werr)?;
            if is_opaque_dir(path) {
                let mut h = self.header(&m, tar::EntryType::Regular);
                h.set_mode(0o644);
                self.tar.append_data(&mut h, format!("{name}/.wh..wh..opq"), io::empty()).map_err(werr)?;
            }
            return self.walk(path, name);
        }
        if m.nlink() > 1 && !ft.is_dir() {
            let key = (m.dev(), m.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = self.header(&m, tar::EntryType::Link);
                self.tar.append_link(&mut h, name, first).map_err(werr)?;
                return Ok(());
            }
            self.links.insert(key, name.to_string());
        }
        self.pax(name, &xattrs).map_err(werr)?;
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err("readlink", path))?;
            let mut h = self.header(&m, tar::EntryType::Symlink);
            self.tar.append_link(&mut h, name, target).map_err(werr)?;
        } else if ft.is_file() {
            let f = fs::File::open(path).map_err(io_err("open", path))?;
            let mut h = self.header(&m, tar::EntryType::Regular);
            h.set_size(m.len());
            self.tar.append_data(&mut h, name, f).map_err(werr)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            };
            let mut h = self.header(&m, kind);
            if !ft.is_fifo() {
                let _ = h.set_device_major(libc::major(m.rdev()));
                let _ = h.set_device_minor(libc::minor(m.rdev()));
            }
            self.tar.append_data(&mut h, name, io::empty()).map_err(werr)?;
        }
        // Sockets are not carried in layers.
        Ok(())
    }
}

/// Writes the layer tar of `upper` to `out`; returns its digest and size.
pub fn write_layer<W: Write>(upper: &Path, out: W, clamp_mtime: Option<u64>) -> Result<LayerInfo, LayerError> {
    let hw = HashingWriter::new(out);
    let mut w = Writer { tar: tar::Builder::new(hw), clamp: clamp_mtime, links: HashMap::new(), entries: 0 };
    w.tar.mode(tar::HeaderMode::Complete);
    w.walk(upper, "")?;
    let entries = w.entries;
    let hw = w.tar.into_inner().map_err(io_err("write layer", upper))?;
    let (mut inner, diff_id, size) = hw.finish();
    inner.flush().map_err(io_err("write layer", upper))?;
    Ok(LayerInfo { diff_id, size, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_of_a_dir_is_stable_and_ordered() {
        let d = std::env::temp_dir().join(format!("berth-layer-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("b/c")).unwrap();
        fs::write(d.join("b/c/f"), "hello").unwrap();
        fs::write(d.join("a"), "x").unwrap();
        fs::hard_link(d.join("a"), d.join("a2")).unwrap();
        std::os::unix::fs::symlink("../a", d.join("b/l")).unwrap();
        let mut one = Vec::new();
        let i1 = write_layer(&d, &mut one, Some(1000)).unwrap();
        let mut two = Vec::new();
        let i2 = write_layer(&d, &mut two, Some(1000)).unwrap();
        assert_eq!(i1.diff_id, i2.diff_id);
        assert_eq!(one, two);
        assert_eq!(i1.diff_id, Digest::of(&one));
        let mut ar = tar::Archive::new(one.as_slice());
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert!(e.header().mtime().unwrap() <= 1000);
            names.push((e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type()));
        }
        let got: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(got, ["a", "a2", "b/", "b/c/", "b/c/f", "b/l"]);
        assert_eq!(names[1].1, tar::EntryType::Link);
        assert_eq!(names[5].1, tar::EntryType::Symlink);
        let _ = fs::remove_dir_all(&d);
    }

    /// An overlay upper dir's deletions: a whiteout (char device 0/0) becomes `.wh.NAME`, an
    /// opaque dir gets `.wh..wh..opq` (needs root: mknod and trusted.* xattrs).
    #[test]
    fn whiteouts_and_opaque_dirs() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let d = std::env::temp_dir().join(format!("berth-layer-wh-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("etc/opq")).unwrap();
        fs::write(d.join("etc/opq/new"), "n").unwrap();
        let wh = CString::new(d.join("etc/gone").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string; mknod of a 0/0 character device (an overlay whiteout).
        assert_eq!(unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR, 0) }, 0);
        let opq = CString::new(d.join("etc/opq").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C strings and a 1-byte value.
        let r =
            unsafe { libc::lsetxattr(opq.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        let mut out = Vec::new();
        write_layer(&d, &mut out, None).unwrap();
        let mut ar = tar::Archive::new(out.as_slice());
        let names: Vec<String> =
            ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["etc/", "etc/.wh.gone", "etc/opq/", "etc/opq/.wh..wh..opq", "etc/opq/new"]);
        let _ = fs::remove_dir_all(&d);
    }
}
