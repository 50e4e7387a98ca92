//! On-disk cache of compiled programs, keyed by the exact profile (see `prepare_cached`).

use super::{bpf_from_bytes, bpf_to_bytes, compile, Compiled, SeccompError, BPF_MAXINSNS};
use oci_spec::runtime::LinuxSeccomp;
use std::fs::{DirBuilder, OpenOptions};
use std::hash::{DefaultHasher, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Bump when `compile` changes what it produces for the same profile.
const MAGIC: &[u8] = b"berth-seccomp-cache 2\n";

pub(super) fn get_or_compile(s: &LinuxSeccomp, dir: &Path) -> Result<Compiled, SeccompError> {
    let Some(key) = key(s) else {
        return compile(s, 2);
    };
    let mut h = DefaultHasher::new();
    h.write(&key);
    let path = dir.join(format!("{:016x}.bpf", h.finish()));
    if let Some(c) = read(&path, &key) {
        return Ok(c);
    }
    let c = compile(s, 2)?;
    let _ = write(dir, &path, &key, &c);
    Ok(c)
}

/// The cache directory is ours alone (owned by the euid, not writable by group or others), and
/// nobody else can swap it: its parent is owned by the euid or root and not writable by others
/// unless sticky (like /tmp).
fn private(dir: &Path) -> bool {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let own = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == euid && m.mode() & 0o022 == 0);
    let parent = dir.parent().is_none_or(|p| {
        std::fs::metadata(p).is_ok_and(|m| {
            (m.uid() == euid || m.uid() == 0) && (m.mode() & 0o022 == 0 || m.mode() & libc::S_ISVTX != 0)
        })
    });
    own && parent
}

/// What the program depends on: libseccomp's version (its syscall tables), the machine, and
/// the whole profile.
fn key(s: &LinuxSeccomp) -> Option<Vec<u8>> {
    let v = libseccomp::ScmpVersion::current().ok()?;
    let mut k = format!("{}.{}.{} {}\n", v.major, v.minor, v.micro, std::env::consts::ARCH).into_bytes();
    serde_json::to_writer(&mut k, s).ok()?;
    Some(k)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

fn read(path: &Path, key: &[u8]) -> Option<Compiled> {
    if !path.parent().is_some_and(private) {
        return None;
    }
    let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).ok()?;
    let m = f.metadata().ok()?;
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !m.is_file() || m.uid() != euid || m.mode() & 0o022 != 0 {
        return None;
    }
    let mut b = Vec::with_capacity(m.len() as usize);
    f.read_to_end(&mut b).ok()?;
    let mut r = Reader(&b);
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let klen = r.u32()?;
    if r.take(klen)? != key {
        return None;
    }
    let mut unknown = Vec::new();
    for _ in 0..r.u32()? {
        let l = r.u32()?;
        unknown.push(String::from_utf8(r.take(l)?.to_vec()).ok()?);
    }
    let n = r.u32()?;
    if n > BPF_MAXINSNS {
        return None;
    }
    let prog = bpf_from_bytes(r.take(n * 8)?)?;
    if !r.0.is_empty() {
        return None;
    }
    Some(Compiled { prog, unknown })
}

fn write(dir: &Path, path: &Path, key: &[u8], c: &Compiled) -> std::io::Result<()> {
    let len = |n: usize| u32::try_from(n).map(u32::to_le_bytes).map_err(std::io::Error::other);
    let mut b = Vec::with_capacity(MAGIC.len() + key.len() + c.prog.len() * 8 + 64);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&len(key.len())?);
    b.extend_from_slice(key);
    b.extend_from_slice(&len(c.unknown.len())?);
    for u in &c.unknown {
        b.extend_from_slice(&len(u.len())?);
        b.extend_from_slice(u.as_bytes());
    }
    b.extend_from_slice(&len(c.prog.len())?);
    bpf_to_bytes(&c.prog, &mut b);

    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if !private(dir) {
        return Err(std::io::Error::other("cache directory is not private"));
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let r = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&b))
        .and_then(|_| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}
