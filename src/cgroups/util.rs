//! Small, allocation-light helpers for cgroup files: every failure names the file.

use super::CgroupError;
use nix::errno::Errno;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub(crate) fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Write `value` to `dir/file` with a single open+write+close.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    write_path(&dir.join(file), value)
}

pub(crate) fn write_path(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err = |e: std::io::Error| CgroupError::Write {
        value: value.to_string(),
        path: path.to_path_buf(),
        errno: errno_of(&e),
    };
    let mut f = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(path).map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

/// An open cgroup file that takes several writes (devices.allow, io.max, ...).
pub(crate) struct Writer {
    path: PathBuf,
    file: File,
}

impl Writer {
    pub(crate) fn open(dir: &Path, file: &str, first_value: &str) -> Result<Writer, CgroupError> {
        let path = dir.join(file);
        match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(&path) {
            Ok(file) => Ok(Writer { path, file }),
            Err(e) => Err(CgroupError::Write { value: first_value.to_string(), path, errno: errno_of(&e) }),
        }
    }
    pub(crate) fn write(&mut self, value: &str) -> Result<(), CgroupError> {
        self.file.write_all(value.as_bytes()).map_err(|e| CgroupError::Write {
            value: value.to_string(),
            path: self.path.clone(),
            errno: errno_of(&e),
        })
    }
}

/// Read a whole (small) cgroup file. Avoids the fstat/lseek std's read_to_string does.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    read_path(&dir.join(file))
}

pub(crate) fn read_path(path: &Path) -> Result<String, CgroupError> {
    let err = |e: std::io::Error| CgroupError::Io { op: "read", path: path.to_path_buf(), errno: errno_of(&e) };
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(path).map_err(err)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        };
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(out).map_err(|_| CgroupError::Parse { path: path.to_path_buf(), what: "not utf-8".into() })
}

/// Like `read`, but a missing file gives `Ok(None)`.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    match read(dir, file) {
        Ok(s) => Ok(Some(s)),
        Err(CgroupError::Io { errno: Errno::ENOENT, .. }) => Ok(None),
        // Some kernels refuse reading files of disabled features.
        Err(CgroupError::Io { errno: Errno::EOPNOTSUPP, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parse a single number; "max" is u64::MAX (cgroup v2 style).
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    let s = read(dir, file)?;
    parse_u64(&s).ok_or_else(|| CgroupError::Parse { path: dir.join(file), what: format!("bad number {:?}", s.trim()) })
}

/// Like `read_u64` but a missing file gives `Ok(None)`.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    match read_opt(dir, file)? {
        None => Ok(None),
        Some(s) => parse_u64(&s)
            .map(Some)
            .ok_or_else(|| CgroupError::Parse { path: dir.join(file), what: format!("bad number {:?}", s.trim()) }),
    }
}

/// Iterate "key value" lines (memory.stat, cpu.stat, memory.events, ...).
pub(crate) fn key_values(s: &str) -> impl Iterator<Item = (&str, u64)> {
    s.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        let k = it.next()?;
        let v = parse_u64(it.next()?)?;
        Some((k, v))
    })
}

/// Value of `key` in a "key value" file.
pub(crate) fn value_by_key(s: &str, key: &str) -> Option<u64> {
    key_values(s).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Parse "0-3,7" lists as found in cpuset.cpus / cpuset.mems.
pub(crate) fn parse_list(s: &str) -> Option<Vec<u16>> {
    let mut out = Vec::new();
    let s = s.trim();
    if s.is_empty() {
        return Some(out);
    }
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u16 = a.trim().parse().ok()?;
                let b: u16 = b.trim().parse().ok()?;
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

pub(crate) fn exists(path: &Path) -> bool {
    // access(2) is the cheapest existence probe.
    let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::F_OK) == 0 }
}

pub(crate) fn mkdir(path: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(CgroupError::Io { op: "mkdir", path: path.to_path_buf(), errno: errno_of(&e) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("max\n"), Some(u64::MAX));
        assert_eq!(parse_u64(" 42\n"), Some(42));
        assert_eq!(parse_u64("x"), None);
    }

    #[test]
    fn kv() {
        let s = "oom 1\noom_kill 3\nbroken\n";
        assert_eq!(value_by_key(s, "oom_kill"), Some(3));
        assert_eq!(value_by_key(s, "nope"), None);
        assert_eq!(key_values(s).count(), 2);
    }

    #[test]
    fn lists() {
        assert_eq!(parse_list("0-3,7\n"), Some(vec![0, 1, 2, 3, 7]));
        assert_eq!(parse_list(""), Some(vec![]));
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("a"), None);
    }
}
