//! Users and groups of an image: `/etc/passwd` and `/etc/group` read from a rootfs (never
//! following a symlink out of it) and docker's `user[:group]` resolution.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Larger account files than this are refused (a real one is a few KiB).
const MAX_FILE: u64 = 8 << 20;
/// Highest uid/gid docker accepts.
const MAX_ID: u64 = i32::MAX as u64;

#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("user {0:?}: uids and gids must be in range 0-{MAX_ID}")]
    Range(String),
    #[error("read {}: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("read {}: not a regular file or larger than {MAX_FILE} bytes", path.display())]
    BadFile { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The process identity a `user[:group]` string resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the groups that list the user as a member (none when a
    /// group was given explicitly), without duplicates.
    pub additional_gids: Vec<u32>,
    /// Home directory from passwd, "/" when the user has no entry.
    pub home: String,
    pub name: Option<String>,
}

fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Saturate absurdly long numbers so that they fail the range check, not the parse.
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

fn fields(line: &str) -> Option<Vec<&str>> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(line.split(':').collect())
}

/// Parse passwd(5) text; malformed lines are skipped, as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f = fields(l)?;
            if f.len() < 4 {
                return None;
            }
            let uid = u32::try_from(parse_id(f[2])?).ok()?;
            let gid = u32::try_from(parse_id(f[3])?).ok()?;
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid,
                gid,
                home: f.get(5).copied().unwrap_or("").to_string(),
                shell: f.get(6).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// Parse group(5) text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|l| {
            let f = fields(l)?;
            if f.len() < 3 {
                return None;
            }
            let gid = u32::try_from(parse_id(f[2])?).ok()?;
            let members = f
                .get(3)
                .map(|m| m.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
                .unwrap_or_default();
            Some(GroupEntry { name: f[0].to_string(), gid, members })
        })
        .collect()
}

/// Resolve `spec` (`user`, `uid`, `user:group`, `uid:gid`, ...; empty = root) against parsed
/// passwd and group entries, the way docker does.
pub fn resolve(spec: &str, passwd: &[PasswdEntry], groups: &[GroupEntry]) -> Result<ExecUser, PasswdError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let range = || PasswdError::Range(spec.to_string());
    let mut out = ExecUser { uid: 0, gid: 0, additional_gids: Vec::new(), home: "/".into(), name: None };

    if !user_part.is_empty() {
        let num = parse_id(user_part);
        match passwd.iter().find(|p| p.name == user_part || num == Some(u64::from(p.uid))) {
            Some(p) => {
                out.uid = p.uid;
                out.gid = p.gid;
                out.home = if p.home.is_empty() { "/".into() } else { p.home.clone() };
                out.name = Some(p.name.clone());
            }
            None => match num {
                Some(n) if n <= MAX_ID => out.uid = n as u32,
                Some(_) => return Err(range()),
                None => return Err(PasswdError::NoUser(user_part.to_string())),
            },
        }
    } else if let Some(p) = passwd.iter().find(|p| p.uid == 0) {
        out.gid = p.gid;
        out.home = if p.home.is_empty() { "/".into() } else { p.home.clone() };
        out.name = Some(p.name.clone());
    }
    if out.uid as u64 > MAX_ID || out.gid as u64 > MAX_ID {
        return Err(range());
    }

    match group_part {
        Some(g) if !g.is_empty() => {
            let num = parse_id(g);
            match groups.iter().find(|e| e.name == g || num == Some(u64::from(e.gid))) {
                Some(e) => out.gid = e.gid,
                None => match num {
                    Some(n) if n <= MAX_ID => out.gid = n as u32,
                    Some(_) => return Err(range()),
                    None => return Err(PasswdError::NoGroup(g.to_string())),
                },
            }
            out.additional_gids = vec![out.gid];
        }
        _ => {
            out.additional_gids.push(out.gid);
            if let Some(name) = &out.name {
                for e in groups.iter().filter(|e| e.members.iter().any(|m| m == name)) {
                    if !out.additional_gids.contains(&e.gid) {
                        out.additional_gids.push(e.gid);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Resolve `spec` against the rootfs's /etc/passwd and /etc/group (missing files are empty).
pub fn resolve_in_rootfs(rootfs: &Path, spec: &str) -> Result<ExecUser, PasswdError> {
    // Root with no group needs no lookup beyond the root entry; still read passwd for home.
    let passwd = read_rootfs_file(rootfs, "etc/passwd")?.map(|t| parse_passwd(&t)).unwrap_or_default();
    let groups = read_rootfs_file(rootfs, "etc/group")?.map(|t| parse_group(&t)).unwrap_or_default();
    resolve(spec, &passwd, &groups)
}

/// Open `rel` inside `rootfs` with every symlink resolved as if `rootfs` were `/`
/// (openat2 RESOLVE_IN_ROOT), so an image's `/etc/passwd -> /host/file` cannot read host files.
/// Returns None when the file does not exist. Non-regular or huge files are refused.
pub fn read_rootfs_file(rootfs: &Path, rel: &str) -> Result<Option<String>, PasswdError> {
    let full = rootfs.join(rel);
    let err = |e: std::io::Error| PasswdError::Read { path: full.clone(), err: e };
    let rfd = open_dir_path(rootfs).map_err(err)?;
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd = match open_in_root(&rfd, rel, flags) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) || e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let mut f = File::from(fd);
    let meta = f.metadata().map_err(err)?;
    if !meta.file_type().is_file() || meta.len() > MAX_FILE {
        return Err(PasswdError::BadFile { path: full });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.by_ref().take(MAX_FILE).read_to_end(&mut buf).map_err(err)?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// An O_PATH descriptor of directory `dir`.
pub(crate) fn open_dir_path(dir: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C string; the returned fd is checked before use.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// openat2(RESOLVE_IN_ROOT) of `rel` under `root` with open `flags` (callers reading files
/// pass O_NONBLOCK so that a FIFO planted at the path cannot block them). On kernels without
/// openat2 (< 5.6) each component is opened with O_NOFOLLOW instead (a symlink anywhere on the
/// path then fails with ELOOP).
pub(crate) fn open_in_root(root: &OwnedFd, rel: &str, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let c = CString::new(rel.trim_start_matches('/')).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid dirfd, C string and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a new descriptor that nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    // Fallback: walk the components without following any symlink.
    let mut cur: Option<OwnedFd> = None;
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    for (i, part) in parts.iter().enumerate() {
        if *part == ".." {
            return Err(std::io::Error::from_raw_os_error(libc::EXDEV));
        }
        let last = i + 1 == parts.len();
        let f = if last {
            flags | libc::O_NOFOLLOW
        } else {
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
        };
        let cp = CString::new(*part).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let dir = cur.as_ref().unwrap_or(root).as_raw_fd();
        // SAFETY: valid dirfd and C string; result checked.
        let fd = unsafe { libc::openat(dir, cp.as_ptr(), f) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        cur = Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    cur.ok_or_else(|| std::io::Error::from_raw_os_error(libc::EISDIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbad line\ndaemon:x:1:1::/usr/sbin:/bin/false\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\nweird:x:99999999999:1::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,app\napp:x:1000:\naudio:x:29:app\nstaff:x:50:\n";

    fn r(spec: &str) -> Result<ExecUser, PasswdError> {
        resolve(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn parse() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[2],
            PasswdEntry { name: "app".into(), uid: 1000, gid: 1000, home: "/home/app".into(), shell: "/bin/sh".into() }
        );
        let g = parse_group(GROUP);
        assert_eq!(g[1].members, vec!["root".to_string(), "app".to_string()]);
    }

    #[test]
    fn resolve_forms() {
        let u = r("").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.clone(), u.home.as_str()), (0, 0, vec![0, 10], "/root"));
        let u = r("app").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone(), u.home.as_str()),
            (1000, 1000, vec![1000, 10, 29], "/home/app")
        );
        assert_eq!(r("1000").unwrap().name.as_deref(), Some("app"));
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.clone(), u.home.as_str(), u.name), (4242, 0, vec![0], "/", None));
        let u = r("app:staff").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 50, vec![50]));
        let u = r("4242:777").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 777));
        let u = r(":wheel").unwrap();
        assert_eq!((u.uid, u.gid), (0, 10));
        assert_eq!(
            r("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:nogroup").unwrap_err().to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        assert!(matches!(r("4294967296"), Err(PasswdError::Range(_))));
        assert!(matches!(r("2147483648"), Err(PasswdError::Range(_))));
        assert!(matches!(r("1:2147483648"), Err(PasswdError::Range(_))));
    }

    #[test]
    fn rootfs_symlink_stays_inside() {
        let d = std::env::temp_dir().join(format!("berth-passwd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("rootfs/etc")).unwrap();
        std::fs::create_dir_all(d.join("rootfs/other")).unwrap();
        std::fs::write(d.join("secret"), "evil:x:7:7::/:/bin/sh\n").unwrap();
        std::fs::write(d.join("rootfs/other/passwd"), "inside:x:5:5::/in:/bin/sh\n").unwrap();
        // An absolute symlink out of the rootfs resolves inside it instead.
        std::os::unix::fs::symlink(d.join("secret"), d.join("rootfs/etc/passwd")).unwrap();
        assert_eq!(read_rootfs_file(&d.join("rootfs"), "etc/passwd").unwrap(), None);
        std::fs::remove_file(d.join("rootfs/etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../../other/passwd", d.join("rootfs/etc/passwd")).unwrap();
        let u = resolve_in_rootfs(&d.join("rootfs"), "inside").unwrap();
        assert_eq!((u.uid, u.home.as_str()), (5, "/in"));
        assert!(resolve_in_rootfs(&d.join("rootfs"), "evil").is_err());
        // A missing group file is fine.
        assert_eq!(resolve_in_rootfs(&d.join("rootfs"), "inside").unwrap().additional_gids, vec![5]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
