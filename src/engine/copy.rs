//! `container cp` and `container export`: files between a container's root filesystem and
//! the host, with docker's rules:
//!
//! - `SRC` a directory: copied as `DEST/<name>` when DEST is an existing directory, as DEST
//!   when DEST does not exist; `SRC/.` copies the directory's contents into DEST.
//! - `SRC` a file: over DEST when it is a file, into it when it is a directory; a DEST ending
//!   in `/` must be an existing directory; a SRC ending in `/` must be a directory.
//! - `-` as DEST writes a tar of SRC to standard output; `-` as SRC extracts a tar from
//!   standard input into the directory DEST.
//! - `-L` follows a symlink SRC; otherwise it is copied as a symlink. Ownership: root in the
//!   container, the caller on the host; `-a` keeps the source's.
//!
//! Paths in the container are resolved with openat2(RESOLVE_IN_ROOT): a symlink in it, absolute
//! or with `..`, resolves inside the root filesystem and never leads out of it. Everything
//! below is then read and written through directory descriptors with *at calls that do not
//! follow symlinks, so nothing a container places (or swaps in while the copy runs) redirects
//! a read or a write outside. A stopped container's overlay is mounted for the copy and
//! unmounted after, under the container's lock.

use super::adapt;
use super::store::{Containers, Record};
use super::{Engine, EngineError};
use nix::dir::Dir;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn sys(op: &str, what: &str, e: nix::Error) -> EngineError {
    EngineError::Msg(format!("{op} {what}: {}", e.desc().to_lowercase()))
}

/// An entry `name` of the open directory `dir`.
struct Loc {
    dir: OwnedFd,
    name: CString,
    /// The name it is copied under (the name given, when a symlink was followed to `name`).
    as_name: CString,
    /// For messages.
    shown: String,
}

impl Loc {
    fn stat(&self) -> nix::Result<FileStat> {
        fstatat(self.dir.as_fd(), self.name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
    }
}

fn is(st: &FileStat, k: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == k
}

/// Who owns what the copy creates.
#[derive(Clone, Copy)]
enum Own {
    /// The source's owner (`-a`).
    Keep,
    /// The source's owner, moved by `f` (in or out of a remapped container's ids).
    KeepMapped(fn(u32, u32) -> (u32, u32)),
    Set(u32, u32),
}

/// `own` for a copy into (`into`) or out of container `rec`: with userns-remap (and not
/// `--userns host`) the container's ids are shifted on the host, as docker cp does.
fn remapped(rec: &super::store::Record, own: Own, into: bool) -> Own {
    if crate::remap::active().is_none() || rec.spec.userns_host {
        return own;
    }
    match (own, into) {
        (Own::Keep, true) => Own::KeepMapped(crate::remap::to_host),
        (Own::Keep, false) => Own::KeepMapped(crate::remap::to_container),
        (Own::Set(u, g), true) => {
            let (u, g) = crate::remap::to_host(u, g);
            Own::Set(u, g)
        }
        (o, _) => o,
    }
}

/// A container path split into (cleaned parent components, last name). `/` gives ("", ".").
fn split_container_path(p: &str) -> (String, String) {
    let mut comps: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                comps.pop();
            }
            c => comps.push(c),
        }
    }
    match comps.pop() {
        Some(last) => (comps.join("/"), last.to_string()),
        None => (String::new(), ".".to_string()),
    }
}

/// Opens `rel` (a directory) inside `root`, symlinks resolved as if `root` were `/`.
fn open_in_root(root: BorrowedFd<'_>, rel: &str, shown: &str) -> Result<OwnedFd, EngineError> {
    if rel.is_empty() {
        return openat(root, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| sys("open", shown, e));
    }
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how).map_err(|e| sys("open", shown, e))
}

/// A container's volumes and bind mounts as `cp` sees them: a path under a mount's
/// destination is resolved in the mount's source, as docker resolves it in the container's
/// mount namespace (the longest destination wins).
struct CpMounts {
    /// (destination without its leading `/`, source dir or file, read-write).
    list: Vec<(String, PathBuf, bool)>,
}

impl CpMounts {
    fn of(rec: &Record) -> CpMounts {
        let mut list: Vec<(String, PathBuf, bool)> = rec
            .mounts
            .iter()
            .map(|m| {
                let (parent, name) = split_container_path(&m.destination);
                let dest = if parent.is_empty() { name } else { format!("{parent}/{name}") };
                (dest, m.source.clone(), m.rw)
            })
            .filter(|(d, _, _)| d != ".")
            .collect();
        list.sort_by_key(|(d, _, _)| std::cmp::Reverse(d.len()));
        CpMounts { list }
    }

    /// The mount holding the clean container path `rel` (no leading `/`) and the rest of the
    /// path inside it.
    fn find<'a>(&'a self, rel: &'a str) -> Option<(&'a Path, bool, &'a str)> {
        self.list.iter().find_map(|(d, src, rw)| {
            let rest = if rel == d { Some("") } else { rel.strip_prefix(d.as_str()).and_then(|r| r.strip_prefix('/')) };
            rest.map(|r| (src.as_path(), *rw, r))
        })
    }
}

fn open_host_dir(p: &Path) -> Result<OwnedFd, EngineError> {
    nix::fcntl::open(p, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| sys("open", &p.display().to_string(), e))
}

/// The entry a container path names: its parent resolved inside the root, or inside the
/// source of the volume or bind mount whose destination holds it (a volume's own symlinks
/// then resolve inside the volume). With `follow`, a symlink there is followed (inside the
/// root too) until it is not one. With `write`, a path in a read-only mount is refused.
fn container_loc(
    root: BorrowedFd<'_>,
    mounts: &CpMounts,
    path: &str,
    follow: bool,
    write: bool,
) -> Result<Loc, EngineError> {
    let mut p = path.to_string();
    let bad = || EngineError::Invalid(format!("invalid path {path:?}"));
    let as_name = CString::new(split_container_path(path).1).map_err(|_| bad())?;
    for _ in 0..40 {
        let (parent, name) = split_container_path(&p);
        let full = if parent.is_empty() { name.clone() } else { format!("{parent}/{name}") };
        let loc = match mounts.find(&full) {
            Some((_, false, _)) if write => {
                return Err(EngineError::Invalid("mounted volume is marked read-only".into()));
            }
            // The mount point itself: the source directory (or bound file).
            Some((src, _, "")) => {
                if src.is_dir() {
                    let dir = open_host_dir(src)?;
                    let name = CString::new(".").map_err(|_| bad())?;
                    Loc { dir, name, as_name: as_name.clone(), shown: path.to_string() }
                } else {
                    let mut l = host_loc(src, false)?;
                    l.as_name = as_name.clone();
                    l.shown = path.to_string();
                    l
                }
            }
            Some((src, _, rest)) => {
                let (rparent, rname) = match rest.rsplit_once('/') {
                    Some((a, b)) => (a, b),
                    None => ("", rest),
                };
                let base = open_host_dir(src)?;
                let dir = open_in_root(base.as_fd(), rparent, path)?;
                let cname = CString::new(rname).map_err(|_| bad())?;
                Loc { dir, name: cname, as_name: as_name.clone(), shown: path.to_string() }
            }
            None => {
                let dir = open_in_root(root, &parent, path)?;
                let cname = CString::new(name.clone()).map_err(|_| bad())?;
                Loc { dir, name: cname, as_name: as_name.clone(), shown: path.to_string() }
            }
        };
        if follow {
            if let Ok(st) = loc.stat() {
                if is(&st, SFlag::S_IFLNK) {
                    let t = nix::fcntl::readlinkat(loc.dir.as_fd(), loc.name.as_c_str())
                        .map_err(|e| sys("readlink", path, e))?;
                    let t = t.to_string_lossy().into_owned();
                    p = if t.starts_with('/') { t } else { format!("{parent}/{t}") };
                    continue;
                }
            }
        }
        return Ok(loc);
    }
    Err(EngineError::Invalid(format!("{path}: too many levels of symbolic links")))
}

/// The entry a host path names (the host's own symlinks followed, except the last one
/// unless `follow`).
fn host_loc(path: &Path, follow: bool) -> Result<Loc, EngineError> {
    let shown = path.display().to_string();
    let p =
        if follow { std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()) } else { path.to_path_buf() };
    let (parent, name) = match p.file_name() {
        Some(n) => {
            (p.parent().filter(|x| !x.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(), n.to_os_string())
        }
        None => (p.clone(), OsStr::new(".").to_os_string()),
    };
    let dir = nix::fcntl::open(&parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| sys("open", &parent.display().to_string(), e))?;
    let bad = || EngineError::Invalid(format!("invalid path {shown:?}"));
    let name = CString::new(name.as_bytes()).map_err(|_| bad())?;
    let as_name = match path.file_name() {
        Some(n) if follow => CString::new(n.as_bytes()).map_err(|_| bad())?,
        _ => name.clone(),
    };
    Ok(Loc { dir, name, as_name, shown })
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr, shown: &str) -> Result<OwnedFd, EngineError> {
    openat(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| sys("open", shown, e))
}

/// Removes a non-directory entry (a file or symlink about to be replaced); ENOENT is fine.
fn remove_entry(dir: BorrowedFd<'_>, name: &std::ffi::CStr, shown: &str) -> Result<(), EngineError> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(sys("remove", shown, e)),
    }
}

fn owner(st: &FileStat, own: Own) -> (Option<Uid>, Option<Gid>) {
    match own {
        Own::Keep => (Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid))),
        Own::KeepMapped(f) => {
            let (u, g) = f(st.st_uid, st.st_gid);
            (Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
        }
        Own::Set(u, g) => (Some(Uid::from_raw(u)), Some(Gid::from_raw(g))),
    }
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (TimeSpec::new(st.st_atime, st.st_atime_nsec), TimeSpec::new(st.st_mtime, st.st_mtime_nsec))
}

/// Whether a relative symlink target, read from an entry `depth` levels below the directory
/// the copy extracts into, leads out of that directory (docker's untar refuses those:
/// "invalid symlink"). Absolute targets stay inside (docker joins them under it too).
fn link_escapes(target: &[u8], depth: usize) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    let mut level = depth.saturating_sub(1);
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if level == 0 {
                    return true;
                }
                level -= 1;
            }
            _ => level += 1,
        }
    }
    false
}

/// Copies the entry `src` (already stat'ed as `st`) to `dst` (created or replaced; an
/// existing directory there is merged into). `depth`: how far below the directory the copy
/// extracts into `dst` is (1 for the top entry), for docker's symlink check; None: no check.
fn copy_entry(src: &Loc, st: &FileStat, dst: &Loc, own: Own, depth: Option<usize>) -> Result<(), EngineError> {
    let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let (u, g) = owner(st, own);
    let shown = &dst.shown;
    if is(st, SFlag::S_IFDIR) {
        match dst.stat() {
            Ok(d) if is(&d, SFlag::S_IFDIR) => {}
            Ok(_) => {
                remove_entry(dst.dir.as_fd(), &dst.name, shown)?;
                mkdirat(dst.dir.as_fd(), dst.name.as_c_str(), Mode::from_bits_truncate(0o700))
                    .map_err(|e| sys("mkdir", shown, e))?;
            }
            Err(_) => mkdirat(dst.dir.as_fd(), dst.name.as_c_str(), Mode::from_bits_truncate(0o700))
                .map_err(|e| sys("mkdir", shown, e))?,
        }
        let sd = open_dir_at(src.dir.as_fd(), &src.name, &src.shown)?;
        let dd = open_dir_at(dst.dir.as_fd(), &dst.name, shown)?;
        copy_children(&sd, &src.shown, &dd, shown, own, depth.map(|d| d + 1))?;
        let _ = fchown(dd.as_fd(), u, g);
        fchmod(dd.as_fd(), perm).map_err(|e| sys("chmod", shown, e))?;
        let (a, m) = times(st);
        let _ = futimens(dd.as_fd(), &a, &m);
        return Ok(());
    }
    if let Ok(d) = dst.stat() {
        if is(&d, SFlag::S_IFDIR) {
            return Err(EngineError::Invalid(format!(
                "cannot overwrite directory {shown} with non-directory {}",
                src.shown
            )));
        }
        if !is(st, SFlag::S_IFREG) || !is(&d, SFlag::S_IFREG) {
            remove_entry(dst.dir.as_fd(), &dst.name, shown)?;
        }
    }
    let (a, m) = times(st);
    if is(st, SFlag::S_IFREG) {
        let sf = openat(
            src.dir.as_fd(),
            src.name.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| sys("open", &src.shown, e))?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let df = openat(dst.dir.as_fd(), dst.name.as_c_str(), flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| sys("create", shown, e))?;
        let (mut sf, mut df) = (File::from(sf), File::from(df));
        io::copy(&mut sf, &mut df).map_err(|e| EngineError::Msg(format!("copy {} to {shown}: {e}", src.shown)))?;
        let _ = fchown(df.as_fd(), u, g);
        fchmod(df.as_fd(), perm).map_err(|e| sys("chmod", shown, e))?;
        let _ = futimens(df.as_fd(), &a, &m);
        return Ok(());
    }
    if is(st, SFlag::S_IFLNK) {
        let t =
            nix::fcntl::readlinkat(src.dir.as_fd(), src.name.as_c_str()).map_err(|e| sys("readlink", &src.shown, e))?;
        if depth.is_some_and(|d| link_escapes(t.as_bytes(), d)) {
            return Err(EngineError::Invalid(format!("invalid symlink {shown:?} -> {:?}", t.to_string_lossy())));
        }
        symlinkat(t.as_os_str(), dst.dir.as_fd(), dst.name.as_c_str()).map_err(|e| sys("symlink", shown, e))?;
    } else if is(st, SFlag::S_IFCHR) || is(st, SFlag::S_IFBLK) || is(st, SFlag::S_IFIFO) {
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        mknodat(dst.dir.as_fd(), dst.name.as_c_str(), kind, perm, st.st_rdev).map_err(|e| sys("mknod", shown, e))?;
    } else {
        // Sockets are not copied (docker skips them too).
        return Ok(());
    }
    let _ = fchownat(dst.dir.as_fd(), dst.name.as_c_str(), u, g, AtFlags::AT_SYMLINK_NOFOLLOW);
    let _ = utimensat(dst.dir.as_fd(), dst.name.as_c_str(), &a, &m, UtimensatFlags::NoFollowSymlink);
    Ok(())
}

/// Copies every entry of the directory `sd` into the directory `dd` (the entries at `depth`).
fn copy_children(
    sd: &OwnedFd,
    s_shown: &str,
    dd: &OwnedFd,
    d_shown: &str,
    own: Own,
    depth: Option<usize>,
) -> Result<(), EngineError> {
    let dup = |fd: &OwnedFd, shown: &str| {
        fd.try_clone().map_err(|e| EngineError::Io { op: "dup", path: PathBuf::from(shown), err: e })
    };
    let mut it = Dir::from_fd(dup(sd, s_shown)?).map_err(|e| sys("read", s_shown, e))?;
    let mut names = Vec::new();
    for e in it.iter() {
        let e = e.map_err(|e| sys("read", s_shown, e))?;
        let n = e.file_name().to_owned();
        if n.as_bytes() != b"." && n.as_bytes() != b".." {
            names.push(n);
        }
    }
    for n in names {
        let nm = n.to_string_lossy().into_owned();
        let s = Loc { dir: dup(sd, s_shown)?, name: n.clone(), as_name: n.clone(), shown: format!("{s_shown}/{nm}") };
        let st = s.stat().map_err(|e| sys("stat", &s.shown, e))?;
        let d = Loc { dir: dup(dd, d_shown)?, name: n.clone(), as_name: n, shown: format!("{d_shown}/{nm}") };
        copy_entry(&s, &st, &d, own, depth)?;
    }
    Ok(())
}

/// docker's placement rules (see the module doc) for `src` → `dst`.
fn copy_by_rules(src: &Loc, src_path: &str, dst: &Loc, dst_path: &str, own: Own) -> Result<(), EngineError> {
    let st = src.stat().map_err(|e| sys("stat", &src.shown, e))?;
    let contents = src_path.ends_with("/.") || src_path == ".";
    let src_slash = src_path.ends_with('/');
    let dst_slash = dst_path.ends_with('/') || dst_path.ends_with("/.");
    let dst_st = match dst.stat() {
        Ok(s) => Some(s),
        Err(nix::Error::ENOENT) => None,
        Err(e) => return Err(sys("stat", &dst.shown, e)),
    };
    let src_dir = is(&st, SFlag::S_IFDIR);
    if src_slash && !src_dir {
        return Err(EngineError::Invalid(format!("{src_path}: not a directory")));
    }
    let base =
        if src.as_name.as_bytes() == b"." { CString::new("root").unwrap_or_default() } else { src.as_name.clone() };
    match dst_st {
        Some(d) if is(&d, SFlag::S_IFDIR) => {
            let dd = open_dir_at(dst.dir.as_fd(), &dst.name, &dst.shown)?;
            if src_dir && contents {
                let sd = open_dir_at(src.dir.as_fd(), &src.name, &src.shown)?;
                return copy_children(&sd, &src.shown, &dd, &dst.shown, own, Some(1));
            }
            let shown = format!("{}/{}", dst.shown.trim_end_matches('/'), base.to_string_lossy());
            copy_entry(src, &st, &Loc { dir: dd, name: base.clone(), as_name: base, shown }, own, Some(1))
        }
        Some(_) if src_dir => Err(EngineError::Invalid(format!("cannot copy a directory to a file: {dst_path}"))),
        Some(_) if dst_slash => Err(EngineError::Invalid(format!("{dst_path}: not a directory"))),
        Some(_) => copy_entry(src, &st, dst, own, Some(1)),
        None if dst_slash && !src_dir => {
            Err(EngineError::Invalid(format!("{dst_path}: no such directory (a path ending in / must be one)")))
        }
        None => copy_entry(src, &st, dst, own, Some(1)),
    }
}

/// The container's merged root filesystem for the duration of `f`: its mount when it has
/// one (running), else its overlay mounted for `f` under the container's lock.
fn with_rootfs<R>(
    cs: &Containers,
    rec: &Record,
    f: impl FnOnce(&Path) -> Result<R, EngineError>,
) -> Result<R, EngineError> {
    use std::os::unix::fs::MetadataExt;
    let dir = cs.path(&rec.id);
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    let mounted = || -> bool {
        match (std::fs::metadata(&rootfs), std::fs::metadata(&bundle)) {
            (Ok(a), Ok(b)) => a.dev() != b.dev(),
            _ => false,
        }
    };
    if rec.rootfs_copied || mounted() {
        return f(&rootfs);
    }
    let _lock = cs.lock(&rec.id)?;
    if mounted() {
        return f(&rootfs);
    }
    let overlay = adapt::mount_rootfs(&rec.lowers, &dir.join("rw/upper"), &dir.join("rw/work"), &rootfs)?;
    let res = f(&rootfs);
    if overlay {
        adapt::unmount_rootfs(&rootfs)?;
    }
    res
}

/// A fresh directory under the data root's tmp/, removed when dropped.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(e: &Engine) -> Result<TmpDir, EngineError> {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let p = e.data_root.join("tmp").join(format!("cp-{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|err| EngineError::Io { op: "create", path: p.clone(), err })?;
        Ok(TmpDir(p))
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `CONTAINER:PATH` → (container, path); None for a local path (one starting with `/` or
/// `.`, or without a colon), as docker splits them.
fn split_arg(a: &str) -> Option<(&str, &str)> {
    if a.starts_with('/') || a.starts_with('.') {
        return None;
    }
    let (c, p) = a.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c, p))
}

/// `P/` and `P/.` name what P resolves to: a symlink P is followed, as the kernel does.
fn trailing_slash(p: &str) -> bool {
    p.ends_with('/') || p.ends_with("/.")
}

pub struct CpOpts {
    pub archive: bool,
    pub follow: bool,
}

pub fn cp(e: &Engine, cs: &Containers, src: &str, dst: &str, o: CpOpts) -> Result<i32, EngineError> {
    let container_root = |root: &Path| -> Result<OwnedFd, EngineError> {
        nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|err| sys("open", &root.display().to_string(), err))
    };
    match (split_arg(src), split_arg(dst)) {
        (Some(_), Some(_)) => Err(EngineError::Invalid("copying between containers is not supported".into())),
        (None, None) => Err(EngineError::Invalid("must specify at least one container source".into())),
        (Some((c, path)), None) => {
            let rec = cs.find(c)?;
            let own =
                if o.archive { Own::Keep } else { Own::Set(Uid::effective().as_raw(), Gid::effective().as_raw()) };
            let own = remapped(&rec, own, false);
            with_rootfs(cs, &rec, |root| {
                let rfd = container_root(root)?;
                let sloc =
                    container_loc(rfd.as_fd(), &CpMounts::of(&rec), path, o.follow || trailing_slash(path), false)?;
                if dst == "-" {
                    let w = io::BufWriter::new(io::stdout().lock());
                    tar_of(e, &sloc, path, w)?.flush().map_err(|err| EngineError::Io {
                        op: "write",
                        path: PathBuf::from("-"),
                        err,
                    })?;
                    return Ok(0);
                }
                let dloc = host_loc(Path::new(dst), false)?;
                copy_by_rules(&sloc, path, &dloc, dst, own)?;
                Ok(0)
            })
        }
        (None, Some((c, path))) => {
            let rec = cs.find(c)?;
            let own = if o.archive { Own::Keep } else { Own::Set(0, 0) };
            let tmp;
            let (sloc, spath) = if src == "-" {
                // A tar from stdin: unpacked into a private dir (the tar reader keeps every
                // entry inside it), its contents then copied into the directory DEST.
                tmp = untar_to_tmp(e, io::stdin().lock(), o.archive)?;
                (host_loc(&tmp.0.join("."), false)?, "./.".to_string())
            } else {
                (host_loc(Path::new(src), o.follow || trailing_slash(src))?, src.to_string())
            };
            let own = if src == "-" && !o.archive { Own::Set(0, 0) } else { own };
            let own = remapped(&rec, own, true);
            with_rootfs(cs, &rec, |root| {
                let rfd = container_root(root)?;
                let dloc = container_loc(rfd.as_fd(), &CpMounts::of(&rec), path, true, true)?;
                if src == "-" {
                    match dloc.stat() {
                        Ok(st) if is(&st, SFlag::S_IFDIR) => {}
                        _ => {
                            return Err(EngineError::Invalid(format!(
                                "{path}: destination must be a directory when copying from stdin"
                            )))
                        }
                    }
                }
                copy_by_rules(&sloc, &spath, &dloc, path, own)?;
                Ok(0)
            })
        }
    }
}

/// A tar of the entry `sloc` (named by its last component, `root` for `/`), written to `w`:
/// copied out to a private dir first, archived from there.
fn tar_of<W: Write>(e: &Engine, sloc: &Loc, path: &str, w: W) -> Result<W, EngineError> {
    let tmp = TmpDir::new(e)?;
    let st = sloc.stat().map_err(|e| sys("stat", path, e))?;
    let name =
        if sloc.as_name.as_bytes() == b"." { CString::new("root").unwrap_or_default() } else { sloc.as_name.clone() };
    let tdir = nix::fcntl::open(&tmp.0, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| sys("open", &tmp.0.display().to_string(), e))?;
    let dl = Loc { dir: tdir, name: name.clone(), as_name: name.clone(), shown: "-".into() };
    copy_entry(sloc, &st, &dl, Own::Keep, None)?;
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let n = OsStr::from_bytes(name.as_bytes());
    let full = tmp.0.join(n);
    let r = if is(&st, SFlag::S_IFDIR) { b.append_dir_all(n, &full) } else { b.append_path_with_name(&full, n) };
    r.and_then(|_| b.into_inner()).map_err(|err| EngineError::Io { op: "write", path: PathBuf::from("-"), err })
}

/// A tar unpacked into a private dir (the tar reader keeps every entry inside it).
fn untar_to_tmp(e: &Engine, r: impl io::Read, keep_owners: bool) -> Result<TmpDir, EngineError> {
    let tmp = TmpDir::new(e)?;
    let mut a = tar::Archive::new(r);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(keep_owners);
    a.set_unpack_xattrs(false);
    a.unpack(&tmp.0).map_err(|err| EngineError::Invalid(format!("read tar: {err}")))?;
    Ok(tmp)
}

/// What docker's `X-Docker-Container-Path-Stat` says of a container path.
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's os.FileMode: the permission bits and its type bits (1<<31 a directory, 1<<27 a
    /// symlink, ...).
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub link_target: String,
}

/// Stats a path in a container (a symlink not followed), as `docker cp` asks first.
pub fn stat_path(cs: &Containers, key: &str, path: &str) -> Result<PathStat, EngineError> {
    let rec = cs.find(key)?;
    with_rootfs(cs, &rec, |root| {
        let rfd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|err| sys("open", &root.display().to_string(), err))?;
        let missing = || EngineError::NoSuchPath(format!("Could not find the file {path} in container {key}"));
        // A parent that cannot be opened (missing, not a directory) is a path not found.
        let loc =
            container_loc(rfd.as_fd(), &CpMounts::of(&rec), path, trailing_slash(path), false).map_err(
                |e| match e {
                    EngineError::Msg(_) => missing(),
                    e => e,
                },
            )?;
        let st = loc.stat().map_err(|_| missing())?;
        let kind = st.st_mode & SFlag::S_IFMT.bits();
        let type_bits = match SFlag::from_bits_truncate(kind) {
            SFlag::S_IFDIR => 1 << 31,
            SFlag::S_IFLNK => 1 << 27,
            SFlag::S_IFIFO => 1 << 25,
            SFlag::S_IFSOCK => 1 << 24,
            SFlag::S_IFCHR => (1 << 26) | (1 << 21),
            SFlag::S_IFBLK => 1 << 26,
            _ => 0,
        };
        let special = (if st.st_mode & 0o4000 != 0 { 1 << 23 } else { 0 })
            | (if st.st_mode & 0o2000 != 0 { 1 << 22 } else { 0 })
            | (if st.st_mode & 0o1000 != 0 { 1 << 20 } else { 0 });
        let link_target = if is(&st, SFlag::S_IFLNK) {
            nix::fcntl::readlinkat(loc.dir.as_fd(), loc.name.as_c_str())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(PathStat {
            name: loc.as_name.to_string_lossy().into_owned(),
            size: st.st_size,
            mode: (st.st_mode & 0o777) | type_bits | special,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as u32,
            link_target,
        })
    })
}

/// A tar of a container path written to `w` (docker cp's GET archive).
pub fn archive_out<W: Write>(e: &Engine, cs: &Containers, key: &str, path: &str, w: W) -> Result<W, EngineError> {
    let rec = cs.find(key)?;
    with_rootfs(cs, &rec, |root| {
        let rfd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|err| sys("open", &root.display().to_string(), err))?;
        let sloc = container_loc(rfd.as_fd(), &CpMounts::of(&rec), path, trailing_slash(path), false)?;
        tar_of(e, &sloc, path, w)
    })
}

/// A tar from `r` unpacked into the container directory `path` (docker cp's PUT archive):
/// owned by root in the container unless `keep_owners`.
pub fn archive_in(
    e: &Engine,
    cs: &Containers,
    key: &str,
    path: &str,
    keep_owners: bool,
    r: impl io::Read,
) -> Result<(), EngineError> {
    let rec = cs.find(key)?;
    let tmp = untar_to_tmp(e, r, keep_owners)?;
    let sloc = host_loc(&tmp.0.join("."), false)?;
    let own = if keep_owners { Own::Keep } else { Own::Set(0, 0) };
    with_rootfs(cs, &rec, |root| {
        let rfd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|err| sys("open", &root.display().to_string(), err))?;
        let dloc = container_loc(rfd.as_fd(), &CpMounts::of(&rec), path, true, true)?;
        match dloc.stat() {
            Ok(st) if is(&st, SFlag::S_IFDIR) => {}
            Ok(_) => return Err(EngineError::Invalid(format!("extraction point is not a directory: {path}"))),
            Err(_) => {
                return Err(EngineError::NoSuchPath(format!("Could not find the file {path} in container {key}")))
            }
        }
        copy_by_rules(&sloc, "./.", &dloc, path, own)
    })
}

/// `container export`: the container's merged root filesystem as a tar.
pub fn export(cs: &Containers, key: &str, output: Option<&Path>) -> Result<i32, EngineError> {
    cs.find(key)?;
    if output.is_none() {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(1) } == 1 {
            return Err(EngineError::Invalid(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
            ));
        }
    }
    match output {
        None => {
            let w = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
            let mut w = export_to(cs, key, w)?;
            w.flush().map_err(|err| EngineError::Io { op: "write", path: PathBuf::from("-"), err })?;
        }
        Some(p) => {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let tmp = dir.join(format!(
                ".{}.berth-export-{}",
                p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                std::process::id()
            ));
            let f = File::create(&tmp).map_err(|err| EngineError::Io { op: "create", path: tmp.clone(), err })?;
            let res = export_to(cs, key, io::BufWriter::with_capacity(1 << 20, f))
                .and_then(|mut w| w.flush().map_err(|err| EngineError::Io { op: "write", path: p.to_path_buf(), err }))
                .and_then(|_| {
                    std::fs::rename(&tmp, p).map_err(|err| EngineError::Io { op: "rename", path: p.to_path_buf(), err })
                });
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res?;
        }
    }
    Ok(0)
}

/// The container's merged root filesystem as a tar written to `w` (returned, not flushed).
pub fn export_to<W: Write>(cs: &Containers, key: &str, w: W) -> Result<W, EngineError> {
    use crate::image::upper_layer::LayerOptions;
    let rec = cs.find(key)?;
    with_rootfs(cs, &rec, |root| {
        crate::image::upper_layer::write_layer(root, &LayerOptions::default(), w)
            .map(|(w, _)| w)
            .map_err(|e| EngineError::Msg(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::link_escapes;

    #[test]
    fn symlinks_leaving_the_extraction_dir() {
        assert!(!link_escapes(b"/etc/passwd", 1));
        assert!(!link_escapes(b"x", 1));
        assert!(link_escapes(b"../x", 1));
        assert!(!link_escapes(b"../x", 2));
        assert!(link_escapes(b"../../x", 2));
        assert!(!link_escapes(b"a/../b", 1));
        assert!(link_escapes(b"a/../../b", 1));
        assert!(!link_escapes(b"./././x", 1));
    }
}
