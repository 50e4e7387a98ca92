//! The writable (upper) directory of an overlay mount, read as a layer: its changes against
//! the lower directories (docker's `A`/`C`/`D` lines) and a layer tar of them, with
//! overlayfs's deletions (character devices 0/0) as `.wh.NAME` whiteouts and its replaced
//! directories (`trusted.overlay.opaque=y`) as `.wh..wh..opq` entries. Only the upper dir is
//! walked, never the merged tree.
//!
//! The upper dir is read through directory descriptors (openat with O_NOFOLLOW, entries
//! stat'ed without following links): a symlink placed in it, even while the walk runs, is
//! read as a symlink and never followed. Lower dirs (image snapshots, not written while
//! mounted) are looked up one component at a time, a component that is not a real
//! directory ending the lookup.
//!
//! `exclude` names mount points that the engine itself made in the container (e.g.
//! `/etc/hosts`, `/proc`): when the lower dirs do not have them they are left out, as docker
//! leaves out its init layer.

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};
use std::collections::{BTreeSet, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UpperError {
    #[error("{op} {}: {err}", path.display())]
    Sys { op: &'static str, path: PathBuf, err: nix::Error },
    #[error("write layer: {0}")]
    Write(io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    /// docker's letter.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path, `/`-rooted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

enum Node {
    /// A deletion of the lower entry `rel`.
    Whiteout {
        rel: String,
        /// The character device overlayfs left (its owner and time go into the tar).
        st: FileStat,
    },
    /// A lower entry hidden by an opaque directory above it (a deletion that the opaque
    /// marker already carries in the layer).
    Hidden {
        rel: String,
    },
    Entry {
        rel: String,
        st: FileStat,
        in_lower: bool,
        opaque: bool,
        xattrs: Vec<(String, Vec<u8>)>,
    },
}

struct Walk<'a> {
    upper: &'a Path,
    lowers: &'a [PathBuf],
    exclude: &'a BTreeSet<String>,
}

fn is_whiteout(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFCHR && st.st_rdev == 0
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// The xattrs of `name` in the directory `dir` (not following a symlink), without
/// overlayfs's own.
fn xattrs(dir: BorrowedFd<'_>, name: &OsStr) -> Vec<(String, Vec<u8>)> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    let Ok(path) = CString::new(p) else { return Vec::new() };
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for key in names.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let Ok(k) = std::str::from_utf8(key) else { continue };
        if k.starts_with("trusted.overlay.") {
            continue;
        }
        let Ok(ck) = CString::new(key) else { continue };
        let mut val = vec![0u8; 64 << 10];
        // SAFETY: as above; the value buffer is valid for its length.
        let m = unsafe { libc::lgetxattr(path.as_ptr(), ck.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if m >= 0 {
            val.truncate(m as usize);
            out.push((k.to_string(), val));
        }
    }
    out
}

fn xattr_is(dir: BorrowedFd<'_>, name: &OsStr, key: &str, want: &[u8]) -> bool {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    let (Ok(path), Ok(k)) = (CString::new(p), CString::new(key)) else { return false };
    let mut val = [0u8; 16];
    // SAFETY: the buffers are valid for their lengths; the strings are NUL-terminated.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), k.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
    n >= 0 && &val[..n as usize] == want
}

fn path_is_opaque(p: &Path) -> bool {
    let (Ok(path), Ok(k)) = (CString::new(p.as_os_str().as_bytes()), CString::new(OPAQUE_XATTR)) else {
        return false;
    };
    let mut val = [0u8; 4];
    // SAFETY: the buffers are valid for their lengths; the strings are NUL-terminated.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), k.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
    n == 1 && val[0] == b'y'
}

impl Walk<'_> {
    /// The entry `rel` as the lower dirs (top first) show it, None when absent or deleted.
    fn lower(&self, rel: &str) -> Option<std::fs::Metadata> {
        use std::os::unix::fs::FileTypeExt;
        let comps: Vec<&str> = rel.split('/').collect();
        for lower in self.lowers {
            let mut p = lower.clone();
            let mut hidden_below = false;
            let mut present = true;
            for (i, c) in comps.iter().enumerate() {
                p.push(c);
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    present = false;
                    break;
                };
                let ft = md.file_type();
                if ft.is_char_device() && md.rdev() == 0 {
                    return None;
                }
                if i + 1 == comps.len() {
                    return Some(md);
                }
                if !ft.is_dir() {
                    return None;
                }
                if path_is_opaque(&p) {
                    hidden_below = true;
                }
            }
            if !present && hidden_below {
                return None;
            }
        }
        None
    }

    /// The names in the lower directory `rel` as the lower dirs show it merged (whiteouts
    /// and opaque directories applied).
    fn lower_children(&self, rel: &str) -> BTreeSet<OsString> {
        use std::os::unix::fs::FileTypeExt;
        let mut names = BTreeSet::new();
        let mut gone = BTreeSet::new();
        if self.lower(rel).is_none_or(|md| !md.is_dir()) {
            return names;
        }
        for lower in self.lowers {
            let d = lower.join(rel);
            let Ok(md) = std::fs::symlink_metadata(&d) else { continue };
            if !md.is_dir() {
                break;
            }
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    let n = e.file_name();
                    let whiteout =
                        e.file_type().is_ok_and(|t| t.is_char_device()) && e.metadata().is_ok_and(|m| m.rdev() == 0);
                    if whiteout {
                        gone.insert(n);
                    } else if !gone.contains(&n) {
                        names.insert(n);
                    }
                }
            }
            if path_is_opaque(&d) {
                break;
            }
        }
        names
    }

    /// The nodes under the open directory `dir` (upper-relative `rel`), parents before
    /// children, names sorted.
    fn walk(&self, dir: &mut Dir, rel: &str, out: &mut Vec<Node>) -> Result<(), UpperError> {
        let here = self.upper.join(rel);
        let sys = |op, err| UpperError::Sys { op, path: here.clone(), err };
        let mut names: Vec<OsString> = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(|e| sys("readdir", e))?;
            let n = OsStr::from_bytes(e.file_name().to_bytes());
            if n != "." && n != ".." {
                names.push(n.to_os_string());
            }
        }
        names.sort();
        let fd = dir.as_fd();
        for name in names {
            let child = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            let st = fstatat(fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| UpperError::Sys {
                op: "stat",
                path: self.upper.join(&child),
                err: e,
            })?;
            if is_whiteout(&st) {
                out.push(Node::Whiteout { rel: child, st });
                continue;
            }
            let lower = self.lower(&child);
            if lower.is_none() && self.exclude.contains(&format!("/{child}")) {
                continue;
            }
            let xs = xattrs(fd, &name);
            if kind(&st) == SFlag::S_IFDIR {
                let opaque = xattr_is(fd, &name, OPAQUE_XATTR, b"y");
                let mut sub = Dir::openat(
                    fd,
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| UpperError::Sys { op: "open", path: self.upper.join(&child), err: e })?;
                let mut below = Vec::new();
                self.walk(&mut sub, &child, &mut below)?;
                let differs = match &lower {
                    None => true,
                    Some(md) => {
                        !md.is_dir() || md.mode() != st.st_mode || md.uid() != st.st_uid || md.gid() != st.st_gid
                    }
                };
                if opaque && lower.is_some() {
                    let here: BTreeSet<OsString> = below
                        .iter()
                        .filter_map(|n| match n {
                            Node::Entry { rel, .. } | Node::Whiteout { rel, .. } | Node::Hidden { rel } => {
                                rel.strip_prefix(&format!("{child}/")).filter(|r| !r.contains('/')).map(OsString::from)
                            }
                        })
                        .collect();
                    for n in self.lower_children(&child) {
                        if !here.contains(&n) {
                            below.push(Node::Hidden { rel: format!("{child}/{}", n.to_string_lossy()) });
                        }
                    }
                }
                if differs || opaque || !below.is_empty() {
                    out.push(Node::Entry { rel: child, st, in_lower: lower.is_some(), opaque, xattrs: xs });
                    out.append(&mut below);
                }
            } else {
                out.push(Node::Entry { rel: child, st, in_lower: lower.is_some(), opaque: false, xattrs: xs });
            }
        }
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<Node>, UpperError> {
        let mut out = Vec::new();
        let mut root = match Dir::open(
            self.upper,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => d,
            // A container never started has no upper dir: no changes.
            Err(nix::Error::ENOENT) => return Ok(out),
            Err(err) => return Err(UpperError::Sys { op: "open", path: self.upper.to_path_buf(), err }),
        };
        self.walk(&mut root, "", &mut out)?;
        Ok(out)
    }
}

/// The changes of `upper` against `lowers` (top first), sorted by path as docker lists them.
pub fn changes(upper: &Path, lowers: &[PathBuf], exclude: &BTreeSet<String>) -> Result<Vec<Change>, UpperError> {
    let nodes = Walk { upper, lowers, exclude }.nodes()?;
    let mut out: Vec<Change> = nodes
        .into_iter()
        .map(|n| match n {
            Node::Whiteout { rel, .. } | Node::Hidden { rel } => {
                Change { path: format!("/{rel}"), kind: ChangeKind::Deleted }
            }
            Node::Entry { rel, in_lower, .. } => {
                Change { path: format!("/{rel}"), kind: if in_lower { ChangeKind::Changed } else { ChangeKind::Added } }
            }
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Writes the layer tar of `upper`'s changes to `out`; returns `out`.
pub fn write_layer<W: Write>(
    upper: &Path,
    lowers: &[PathBuf],
    exclude: &BTreeSet<String>,
    out: W,
) -> Result<W, UpperError> {
    let walk = Walk { upper, lowers, exclude };
    let nodes = walk.nodes()?;
    let mut tar = tar::Builder::new(out);
    let w = UpperError::Write;
    let root = match nix::fcntl::open(upper, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => Some(fd),
        Err(nix::Error::ENOENT) => None,
        Err(err) => return Err(UpperError::Sys { op: "open", path: upper.to_path_buf(), err }),
    };
    // First path of each multiply-linked inode.
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    for n in nodes {
        match n {
            Node::Hidden { .. } => {}
            Node::Whiteout { rel, st } => {
                let (dir, name) = rel.rsplit_once('/').map_or(("", rel.as_str()), |(d, n)| (d, n));
                let wh = if dir.is_empty() {
                    format!("{WHITEOUT_PREFIX}{name}")
                } else {
                    format!("{dir}/{WHITEOUT_PREFIX}{name}")
                };
                // As docker writes them: an empty 0600 file with the device's owner and time.
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o600);
                h.set_uid(u64::from(st.st_uid));
                h.set_gid(u64::from(st.st_gid));
                h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
                tar.append_data(&mut h, wh, io::empty()).map_err(w)?;
            }
            Node::Entry { rel, st, opaque, xattrs, .. } => {
                if !xattrs.is_empty() {
                    let pax: Vec<(String, &[u8])> =
                        xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice())).collect();
                    tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v))).map_err(w)?;
                }
                let mut h = tar::Header::new_gnu();
                h.set_mode(st.st_mode & 0o7777);
                h.set_uid(u64::from(st.st_uid));
                h.set_gid(u64::from(st.st_gid));
                h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
                h.set_size(0);
                let Some(root) = root.as_ref() else { continue };
                match kind(&st) {
                    SFlag::S_IFDIR => {
                        h.set_entry_type(tar::EntryType::Directory);
                        tar.append_data(&mut h, format!("{rel}/"), io::empty()).map_err(w)?;
                        if opaque {
                            // As docker writes it: the directory's permissions and owner.
                            let mut o = tar::Header::new_gnu();
                            o.set_entry_type(tar::EntryType::Regular);
                            o.set_size(0);
                            o.set_mode(st.st_mode & 0o777);
                            o.set_uid(u64::from(st.st_uid));
                            o.set_gid(u64::from(st.st_gid));
                            o.set_mtime(0);
                            tar.append_data(&mut o, format!("{rel}/{OPAQUE_MARKER}"), io::empty()).map_err(w)?;
                        }
                    }
                    SFlag::S_IFREG => {
                        let key = (st.st_dev, st.st_ino);
                        if st.st_nlink > 1 {
                            if let Some(first) = links.get(&key) {
                                h.set_entry_type(tar::EntryType::Link);
                                tar.append_link(&mut h, &rel, first).map_err(w)?;
                                continue;
                            }
                            links.insert(key, rel.clone());
                        }
                        h.set_entry_type(tar::EntryType::Regular);
                        let f = File::from(open_beneath(root.as_fd(), upper, &rel, OFlag::O_RDONLY)?);
                        let size = f.metadata().map_err(w)?.len();
                        h.set_size(size);
                        tar.append_data(&mut h, &rel, io::Read::take(f, size)).map_err(w)?;
                    }
                    SFlag::S_IFLNK => {
                        let (dir, name) = rel.rsplit_once('/').map_or(("", rel.as_str()), |(d, n)| (d, n));
                        let target = if dir.is_empty() {
                            nix::fcntl::readlinkat(root.as_fd(), name)
                        } else {
                            let d = open_beneath(root.as_fd(), upper, dir, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
                            nix::fcntl::readlinkat(d.as_fd(), name)
                        }
                        .map_err(|err| UpperError::Sys {
                            op: "readlink",
                            path: upper.join(&rel),
                            err,
                        })?;
                        h.set_entry_type(tar::EntryType::Symlink);
                        tar.append_link(&mut h, &rel, target).map_err(w)?;
                    }
                    k => {
                        let t = match k {
                            SFlag::S_IFCHR => tar::EntryType::Char,
                            SFlag::S_IFBLK => tar::EntryType::Block,
                            SFlag::S_IFIFO => tar::EntryType::Fifo,
                            // Sockets are not kept in layers.
                            _ => continue,
                        };
                        h.set_entry_type(t);
                        let dev = st.st_rdev;
                        h.set_device_major(libc::major(dev)).map_err(w)?;
                        h.set_device_minor(libc::minor(dev)).map_err(w)?;
                        tar.append_data(&mut h, &rel, io::empty()).map_err(w)?;
                    }
                }
            }
        }
    }
    tar.into_inner().map_err(w)
}

/// Opens `rel` beneath the directory `root` (openat2: no symlink followed on the way, nothing
/// outside `root` reached, whatever was swapped in since the walk).
fn open_beneath(
    root: BorrowedFd<'_>,
    upper: &Path,
    rel: &str,
    flags: OFlag,
) -> Result<std::os::fd::OwnedFd, UpperError> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how).map_err(|err| UpperError::Sys { op: "openat2", path: upper.join(rel), err })
}
