//! The writable (upper) directory of an overlay mount, read as a layer: its changes against
//! the lower directories (docker's `A`/`C`/`D` lines) and a layer tar of them, with
//! overlayfs's deletions (character devices 0/0) as `.wh.NAME` whiteouts and its replaced
//! directories (`trusted.overlay.opaque=y`) as `.wh..wh..opq` entries, written as docker
//! writes them (empty 0600 files; the opaque marker with its directory's permissions and
//! owner). Only the upper dir is walked, never the merged tree. `container commit`,
//! `container diff`, `container export` and the Dockerfile builder's layers all come from here.
//!
//! The tar is reproducible: entries in name order (parents first), numeric owners and no
//! user names, extended attributes (sorted, overlayfs's own left out) as `SCHILY.xattr.*`
//! pax records, a file linked more than once written once and then as hard links, and with
//! `clamp_mtime` (SOURCE_DATE_EPOCH) no time later than it: the same changes give the same
//! bytes and digest.
//!
//! The upper dir is read through directory descriptors (openat with O_NOFOLLOW, entries
//! stat'ed without following links, contents opened with openat2 beneath the root): a
//! symlink placed in it, even while the walk runs, is read as a symlink and never followed.
//! Lower dirs (image snapshots, not written while mounted) are looked up one component at a
//! time, a component that is not a real directory ending the lookup.
//!
//! `exclude` names mount points that the engine itself made in the container (e.g.
//! `/etc/hosts`, `/proc`): when the lower dirs do not have them they are left out, as docker
//! leaves out its init layer.

use super::digest::{Digest, HashingWriter};
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};
use std::collections::{BTreeSet, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// overlayfs's own extended attributes (not carried into layers).
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
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

/// What a layer is made against and how its times are written.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerOptions<'a> {
    /// The lower dirs, top first: a directory the upper dir only copied up unchanged is left
    /// out, and an opaque directory's hidden lower entries count as deletions. None: every
    /// entry of the upper dir goes into the layer.
    pub lowers: &'a [PathBuf],
    /// Mount points the engine made (`/`-rooted), left out when the lower dirs lack them.
    pub exclude: Option<&'a BTreeSet<String>>,
    /// No entry's time is written later than this (SOURCE_DATE_EPOCH).
    pub clamp_mtime: Option<u64>,
    /// The owners written for the files' (uid, gid) on disk (a remapped container's shifted
    /// ids back to the container's). None: as on disk.
    pub owners: Option<OwnerMap>,
}

/// Maps a file's (uid, gid) on disk to the (uid, gid) written for it.
pub type OwnerMap = fn(u32, u32) -> (u32, u32);

/// What was written.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (its diff id, and its digest as a blob).
    pub diff_id: Digest,
    pub size: u64,
    /// Tar entries written (whiteouts and opaque markers included, pax records not), as the
    /// unpacker counts them.
    pub entries: u64,
}

/// Reads an extended attribute (not following a symlink); None when absent.
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

/// The names of a file's extended attributes (not following a symlink).
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
    lgetxattr(p, OPAQUE_XATTR).as_deref() == Some(b"y")
}

/// The entry `name` of the open directory `dir` as a path (through the descriptor, so a
/// swapped-in symlink on the way is not followed; the l* calls do not follow the last one).
fn at_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
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
    exclude: Option<&'a BTreeSet<String>>,
}

fn is_whiteout(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFCHR && st.st_rdev == 0
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// The xattrs of `name` in the directory `dir` (not following a symlink), sorted, without
/// overlayfs's own.
fn xattrs(dir: BorrowedFd<'_>, name: &OsStr) -> Vec<(String, Vec<u8>)> {
    let p = at_path(dir, name);
    let mut names = llistxattr(&p);
    names.retain(|n| !n.starts_with(OVERLAY_XATTR_PREFIX));
    names.sort();
    names.into_iter().filter_map(|n| lgetxattr(&p, &n).map(|v| (n, v))).collect()
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
                if is_opaque_dir(&p) {
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
            if is_opaque_dir(&d) {
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
            if lower.is_none() && self.exclude.is_some_and(|x| x.contains(&format!("/{child}"))) {
                continue;
            }
            let xs = xattrs(fd, &name);
            if kind(&st) == SFlag::S_IFDIR {
                let opaque = is_opaque_dir(&at_path(fd, &name));
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

    /// The nodes under the upper dir opened as `root` (None: there is none).
    fn nodes(&self, root: Option<&OwnedFd>) -> Result<Vec<Node>, UpperError> {
        let mut out = Vec::new();
        let Some(root) = root else { return Ok(out) };
        let fd = root.try_clone().map_err(|e| UpperError::Sys {
            op: "dup",
            path: self.upper.to_path_buf(),
            err: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
        })?;
        let mut dir =
            Dir::from_fd(fd).map_err(|err| UpperError::Sys { op: "opendir", path: self.upper.to_path_buf(), err })?;
        self.walk(&mut dir, "", &mut out)?;
        Ok(out)
    }
}

/// Opens the upper dir (not through a symlink); None when there is none (a container never
/// started has no upper dir: no changes).
fn open_root(upper: &Path) -> Result<Option<OwnedFd>, UpperError> {
    match nix::fcntl::open(
        upper,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::Error::ENOENT) => Ok(None),
        Err(err) => Err(UpperError::Sys { op: "open", path: upper.to_path_buf(), err }),
    }
}

/// The changes of `upper` against `lowers` (top first), sorted by path as docker lists them.
pub fn changes(upper: &Path, lowers: &[PathBuf], exclude: &BTreeSet<String>) -> Result<Vec<Change>, UpperError> {
    let root = open_root(upper)?;
    let nodes = Walk { upper, lowers, exclude: Some(exclude) }.nodes(root.as_ref())?;
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

/// Writes the layer tar of `upper` (its changes against `opts.lowers`) to `out`; returns
/// `out` and the number of tar entries written.
pub fn write_layer<W: Write>(upper: &Path, opts: &LayerOptions<'_>, out: W) -> Result<(W, u64), UpperError> {
    let root = open_root(upper)?;
    let nodes = Walk { upper, lowers: opts.lowers, exclude: opts.exclude }.nodes(root.as_ref())?;
    let mut tar = tar::Builder::new(out);
    let w = UpperError::Write;
    let mtime = |st: &FileStat| {
        let t = u64::try_from(st.st_mtime).unwrap_or(0);
        opts.clamp_mtime.map_or(t, |c| t.min(c))
    };
    // Numeric owners, no user names; mode, owner and time from the upper dir's entry.
    let header = |st: &FileStat, kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        let (uid, gid) = opts.owners.map_or((st.st_uid, st.st_gid), |f| f(st.st_uid, st.st_gid));
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(mtime(st));
        h.set_size(0);
        h
    };
    let mut entries = 0u64;
    // First path of each multiply-linked inode.
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    for n in nodes {
        let Some(root) = root.as_ref() else { break };
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
                let mut h = header(&st, tar::EntryType::Regular);
                h.set_mode(0o600);
                tar.append_data(&mut h, wh, io::empty()).map_err(w)?;
                entries += 1;
            }
            Node::Entry { rel, st, opaque, xattrs, .. } => {
                let k = kind(&st);
                let t = match k {
                    SFlag::S_IFDIR => tar::EntryType::Directory,
                    SFlag::S_IFREG => tar::EntryType::Regular,
                    SFlag::S_IFLNK => tar::EntryType::Symlink,
                    SFlag::S_IFCHR => tar::EntryType::Char,
                    SFlag::S_IFBLK => tar::EntryType::Block,
                    SFlag::S_IFIFO => tar::EntryType::Fifo,
                    // Sockets are not kept in layers.
                    _ => continue,
                };
                if k != SFlag::S_IFDIR && st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = links.get(&key) {
                        let mut h = header(&st, tar::EntryType::Link);
                        tar.append_link(&mut h, &rel, first).map_err(w)?;
                        entries += 1;
                        continue;
                    }
                    links.insert(key, rel.clone());
                }
                if !xattrs.is_empty() {
                    let pax: Vec<(String, &[u8])> =
                        xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice())).collect();
                    tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v))).map_err(w)?;
                }
                let mut h = header(&st, t);
                match k {
                    SFlag::S_IFDIR => {
                        tar.append_data(&mut h, format!("{rel}/"), io::empty()).map_err(w)?;
                        if opaque {
                            // As docker writes it: the directory's permissions and owner.
                            let mut o = header(&st, tar::EntryType::Regular);
                            o.set_mode(st.st_mode & 0o777);
                            o.set_mtime(0);
                            tar.append_data(&mut o, format!("{rel}/{OPAQUE_MARKER}"), io::empty()).map_err(w)?;
                            entries += 1;
                        }
                    }
                    SFlag::S_IFREG => {
                        // O_NONBLOCK: a fifo swapped in since the walk does not block the open.
                        let f =
                            File::from(open_beneath(root.as_fd(), upper, &rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?);
                        let size = f.metadata().map_err(w)?.len();
                        h.set_size(size);
                        // Exactly `size` bytes, even if the file shrinks while read.
                        let body = f.take(size).chain(io::repeat(0)).take(size);
                        tar.append_data(&mut h, &rel, body).map_err(w)?;
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
                        tar.append_link(&mut h, &rel, target).map_err(w)?;
                    }
                    _ => {
                        if k != SFlag::S_IFIFO {
                            h.set_device_major(libc::major(st.st_rdev)).map_err(w)?;
                            h.set_device_minor(libc::minor(st.st_rdev)).map_err(w)?;
                        }
                        tar.append_data(&mut h, &rel, io::empty()).map_err(w)?;
                    }
                }
                entries += 1;
            }
        }
    }
    Ok((tar.into_inner().map_err(w)?, entries))
}

/// Writes the layer tar of `upper` to `out` as [`write_layer`] does, flushed; returns its
/// digest (diff id), size and entry count.
pub fn write_layer_info<W: Write>(upper: &Path, opts: &LayerOptions<'_>, out: W) -> Result<LayerInfo, UpperError> {
    let (hw, entries) = write_layer(upper, opts, HashingWriter::new(out))?;
    let (mut inner, diff_id, size) = hw.finish();
    inner.flush().map_err(UpperError::Write)?;
    Ok(LayerInfo { diff_id, size, entries })
}

/// Opens `rel` beneath the directory `root` (openat2: no symlink followed on the way, nothing
/// outside `root` reached, whatever was swapped in since the walk).
fn open_beneath(root: BorrowedFd<'_>, upper: &Path, rel: &str, flags: OFlag) -> Result<OwnedFd, UpperError> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how).map_err(|err| UpperError::Sys { op: "openat2", path: upper.join(rel), err })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
        let opts = LayerOptions { clamp_mtime: Some(1000), ..Default::default() };
        let i1 = write_layer_info(&d, &opts, &mut one).unwrap();
        let mut two = Vec::new();
        let i2 = write_layer_info(&d, &opts, &mut two).unwrap();
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
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.join("etc/opq"), fs::Permissions::from_mode(0o750)).unwrap();
        let f = CString::new(d.join("etc/opq/new").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C strings and a 2-byte value.
        let r = unsafe { libc::lsetxattr(f.as_ptr(), c"trusted.berth-test".as_ptr(), b"v1".as_ptr().cast(), 2, 0) };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        let mut out = Vec::new();
        let (_, entries) = write_layer(&d, &LayerOptions::default(), &mut out).unwrap();
        let mut ar = tar::Archive::new(out.as_slice());
        let mut got = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let xattrs: Vec<String> = e
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .map(|x| x.unwrap())
                .map(|x| format!("{}={}", x.key().unwrap(), String::from_utf8_lossy(x.value_bytes())))
                .collect();
            let h = e.header();
            got.push((e.path().unwrap().to_string_lossy().into_owned(), h.mode().unwrap(), xattrs));
        }
        let names: Vec<&str> = got.iter().map(|(n, ..)| n.as_str()).collect();
        assert_eq!(names, ["etc/", "etc/.wh.gone", "etc/opq/", "etc/opq/.wh..wh..opq", "etc/opq/new"]);
        assert_eq!(entries, 5);
        // As docker writes them: whiteouts 0600, the opaque marker with its dir's mode.
        assert_eq!(got[1].1, 0o600);
        assert_eq!(got[3].1, 0o750);
        // overlayfs's own xattr is not carried; others are, as pax records.
        assert!(got[2].2.is_empty(), "{:?}", got[2].2);
        assert_eq!(got[4].2, ["SCHILY.xattr.trusted.berth-test=v1"]);
        let _ = fs::remove_dir_all(&d);
    }

    /// docker's A/C/D against a lower dir: an unchanged copied-up dir is left out, an opaque
    /// dir's hidden lower entries are deletions (needs root: mknod and trusted.* xattrs).
    #[test]
    fn changes_against_lower() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let d = std::env::temp_dir().join(format!("berth-layer-changes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let (lower, upper) = (d.join("lower"), d.join("upper"));
        for p in ["etc/opq", "usr/bin"] {
            fs::create_dir_all(lower.join(p)).unwrap();
        }
        for p in ["etc/group", "etc/keep", "etc/opq/old", "usr/bin/sh"] {
            fs::write(lower.join(p), "l").unwrap();
        }
        for p in ["etc/opq", "usr"] {
            fs::create_dir_all(upper.join(p)).unwrap();
        }
        fs::write(upper.join("etc/opq/new"), "n").unwrap();
        let wh = CString::new(upper.join("etc/group").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string; mknod of a 0/0 character device (an overlay whiteout).
        assert_eq!(unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR, 0) }, 0);
        let opq = CString::new(upper.join("etc/opq").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C strings and a 1-byte value.
        let r =
            unsafe { libc::lsetxattr(opq.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        let lowers = [lower.clone()];
        let got: Vec<String> = changes(&upper, &lowers, &BTreeSet::new())
            .unwrap()
            .into_iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect();
        assert_eq!(got, ["C /etc", "D /etc/group", "C /etc/opq", "A /etc/opq/new", "D /etc/opq/old"]);
        let opts = LayerOptions { lowers: &lowers, ..Default::default() };
        let (out, _) = write_layer(&upper, &opts, Vec::new()).unwrap();
        let names: Vec<String> = tar::Archive::new(out.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["etc/", "etc/.wh.group", "etc/opq/", "etc/opq/.wh..wh..opq", "etc/opq/new"]);
        let _ = fs::remove_dir_all(&d);
    }

    /// A symlink in the upper dir is written as a symlink, never followed to what it names.
    #[test]
    fn symlinks_are_not_followed() {
        let d = std::env::temp_dir().join(format!("berth-layer-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("outside")).unwrap();
        fs::write(d.join("outside/secret"), "s").unwrap();
        fs::create_dir_all(d.join("upper")).unwrap();
        std::os::unix::fs::symlink(d.join("outside"), d.join("upper/dir")).unwrap();
        let (out, entries) = write_layer(&d.join("upper"), &LayerOptions::default(), Vec::new()).unwrap();
        let mut ar = tar::Archive::new(out.as_slice());
        let got: Vec<(String, tar::EntryType)> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type()))
            .collect();
        assert_eq!(got, [("dir".to_string(), tar::EntryType::Symlink)]);
        assert_eq!(entries, 1);
        let _ = fs::remove_dir_all(&d);
    }
}
