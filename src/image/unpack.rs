//! Applying one image layer (a tar stream: gzip, zstd or uncompressed) to a directory.
//!
//! The layer is untrusted and this runs as root, so no path from the tar is ever handed
//! to a path-walking syscall from `/`. Each entry's parent directory is opened with
//! openat2(RESOLVE_IN_ROOT) beneath a directory fd of the destination (symlinks inside the
//! layer resolve as if the destination were `/`), and the entry itself is made with *at()
//! syscalls on that parent fd that never follow a final symlink. Names with a `..`
//! component are refused; a leading `/` is dropped.

use super::chunks;
use super::digest::{Digest, HashingReader};
use super::tarread::{self, Kind};
use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;

/// How whiteout entries (`.wh.NAME`, `.wh..wh..opq`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Into an empty dir that becomes an overlayfs lower layer: `.wh.NAME` becomes a char
    /// device 0:0 named NAME, `.wh..wh..opq` sets trusted.overlay.opaque="y" on its dir.
    Overlay,
    /// Onto an existing tree (a flat rootfs): `.wh.NAME` removes NAME, `.wh..wh..opq`
    /// removes what lower layers put in its dir.
    Apply,
}

#[derive(Debug, Clone)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream, read to its end.
    pub diff_id: Digest,
    /// Tar entries applied (global pax headers not counted).
    pub entries: u64,
    /// Length of the uncompressed tar stream (the bytes `diff_id` covers).
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("open {path}: {}", plain(.source))]
    Dest { path: PathBuf, source: io::Error },
    #[error("read layer: {}", plain(.source))]
    Read { source: io::Error },
    #[error("corrupt layer: {0}")]
    Corrupt(String),
    #[error("layer is truncated")]
    Truncated,
    #[error("layer is truncated in entry {name:?}")]
    TruncatedIn { name: String },
    #[error("layer entry {name:?}: leaves the layer")]
    Escapes { name: String },
    #[error("layer entry {name:?}: hardlink target {target:?} is not in the layer")]
    LinkTarget { name: String, target: String },
    #[error("layer entry {name:?}: {what}")]
    Invalid { name: String, what: &'static str },
    #[error("layer entry {name:?}: {op}: {}", plain(.source))]
    Entry { name: String, op: &'static str, source: io::Error },
    #[error("layer entry {name:?}: setxattr {key}: {}", plain(.source))]
    Xattr { name: String, key: String, source: io::Error },
}

/// An io::Error's text without Rust's " (os error N)" suffix.
fn plain(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

const COPY_BUF: usize = 256 * 1024;
const WH_PREFIX: &[u8] = b".wh.";
const WH_META: &[u8] = b".wh..wh.";
const WH_OPAQUE: &[u8] = b".wh..wh..opq";

/// Applies one layer read from `r` (gzip, zstd or plain tar, told apart by magic bytes) to
/// the directory `dest`. The whole stream is read, trailing padding included, so `diff_id`
/// matches what docker and umoci compute.
///
/// A compressed layer is decompressed on a second thread, which hands the tar stream over
/// in chunks: decompression and the hashing and writing of the entries overlap.
pub fn unpack_layer<R: Read + Send>(mut r: R, dest: &Path, mode: WhiteoutMode) -> Result<UnpackStats, UnpackError> {
    let root = open_dir_path(dest).map_err(|source| UnpackError::Dest { path: dest.to_path_buf(), source })?;
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(UnpackError::Read { source: io::Error::new(e.kind(), plain(&e)) }),
        }
    }
    let head = &magic[..n];
    let codec = if head.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if head == [0x28, 0xb5, 0x2f, 0xfd] {
        Codec::Zstd
    } else {
        Codec::None
    };
    let slot: Rc<Cell<Option<io::Error>>> = Rc::new(Cell::new(None));
    let mut u = Unpacker::new(root, mode, slot.clone());
    if codec == Codec::None {
        let src = SourceReader { inner: head.chain(r), slot: slot.clone() };
        let hashed = HashingReader::new(BufReader::with_capacity(COPY_BUF, src));
        return read_tar(hashed, &mut u, &slot);
    }
    let decode_err: Mutex<Option<UnpackError>> = Mutex::new(None);
    let (w, chunks) = chunks::channel(DECODE_DEPTH, COPY_BUF);
    let res = std::thread::scope(|s| {
        let derr = &decode_err;
        s.spawn(move || decode(head.chain(r), codec, w, derr));
        let src = SourceReader { inner: chunks, slot: slot.clone() };
        // On an error the chunk reader is dropped here, which stops the decoder.
        read_tar(HashingReader::new(src), &mut u, &slot)
    });
    match res {
        // A failed read of the decoded stream: the decoder's own error says what happened.
        Err(UnpackError::Read { source }) => {
            Err(decode_err.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or(UnpackError::Read { source }))
        }
        r => r,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    None,
    Gzip,
    Zstd,
}

/// Decoded chunks in flight between the decoder thread and the tar reader.
const DECODE_DEPTH: usize = 8;

/// The decoder thread: decompresses `src` into `w`. Its failure is recorded in `err`
/// before the stream is failed, so the reader finds it there.
fn decode<R: Read>(src: R, codec: Codec, mut w: chunks::ChunkWriter, err: &Mutex<Option<UnpackError>>) {
    let slot: Rc<Cell<Option<io::Error>>> = Rc::new(Cell::new(None));
    let raw = BufReader::with_capacity(COPY_BUF, SourceReader { inner: src, slot: slot.clone() });
    let fail = |w: chunks::ChunkWriter, e: UnpackError| {
        let msg = e.to_string();
        *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        w.fail(io::ErrorKind::Other, msg);
    };
    let mut dec: Box<dyn Read + '_> = match codec {
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        Codec::Zstd => match zstd::stream::read::Decoder::with_buffer(raw) {
            Ok(d) => Box::new(d),
            Err(e) => return fail(w, classify(&slot, e)),
        },
        Codec::None => Box::new(raw),
    };
    loop {
        match w.fill_from(&mut dec) {
            Ok(0) => {
                let _ = w.finish();
                return;
            }
            Ok(_) => {}
            Err(chunks::FillError::Closed) => return,
            Err(chunks::FillError::Source(e)) => return fail(w, classify(&slot, e)),
        }
    }
}

/// Applies the tar stream `hashed` (read to its end); returns the stats.
fn read_tar<R: Read>(
    hashed: HashingReader<R>,
    u: &mut Unpacker,
    slot: &Cell<Option<io::Error>>,
) -> Result<UnpackStats, UnpackError> {
    let mut tr = tarread::Reader::new(hashed);
    let mut entries = 0u64;
    while let Some(e) = tr.next().map_err(|e| tar_err(slot, e))? {
        u.entry(&e, &mut tr)?;
        entries += 1;
    }
    let mut rest = tr.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| classify(slot, e))?;
    u.finish()?;
    let (diff_id, bytes) = rest.finish();
    Ok(UnpackStats { diff_id, entries, bytes })
}

/// A tar reader's error as the unpacker reports it.
fn tar_err(slot: &Cell<Option<io::Error>>, e: tarread::TarError) -> UnpackError {
    match e {
        tarread::TarError::Read(e) => classify(slot, e),
        tarread::TarError::Truncated => match slot.take() {
            Some(source) => UnpackError::Read { source },
            None => UnpackError::Truncated,
        },
        e @ tarread::TarError::Corrupt { .. } => UnpackError::Corrupt(e.to_string()),
    }
}

/// The caller's reader, remembering its own errors so they are told apart from a corrupt
/// stream once they come back wrapped by the decoder and the tar parser.
struct SourceReader<R> {
    inner: R,
    slot: Rc<Cell<Option<io::Error>>>,
}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.slot.set(Some(io::Error::new(e.kind(), plain(e))));
            }
        })
    }
}

fn classify(slot: &Cell<Option<io::Error>>, e: io::Error) -> UnpackError {
    if let Some(source) = slot.take() {
        return UnpackError::Read { source };
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return UnpackError::Truncated;
    }
    // The tar crate wraps decoder errors behind its own words; show the cause too.
    let mut msg = plain(&e);
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().and_then(|i| i.source());
    while let Some(c) = cur {
        let s = c.to_string();
        if let Some(ioe) = c.downcast_ref::<io::Error>() {
            if ioe.kind() == io::ErrorKind::UnexpectedEof {
                return UnpackError::Truncated;
            }
        }
        msg.push_str(": ");
        msg.push_str(s.split(" (os error ").next().unwrap_or(&s));
        cur = match c.downcast_ref::<io::Error>() {
            Some(ioe) => ioe.get_ref().and_then(|i| i.source()),
            None => c.source(),
        };
    }
    UnpackError::Corrupt(msg)
}

struct Unpacker {
    root: OwnedFd,
    mode: WhiteoutMode,
    slot: Rc<Cell<Option<io::Error>>>,
    /// The last parent dir opened, by its normalised path: layers list a dir's entries together.
    cache_path: Vec<u8>,
    cache_fd: Option<OwnedFd>,
    /// Directories whose times are set at the end, once nothing more is created in them.
    dirs: Vec<(Vec<u8>, libc::timespec)>,
    /// Apply mode: paths this layer made, which an opaque marker must not remove.
    created: HashSet<Vec<u8>>,
    buf: Vec<u8>,
    path: Vec<u8>,
    raw: Vec<u8>,
    cname: Vec<u8>,
    cparent: Vec<u8>,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// Metadata from an entry's header and pax records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: libc::timespec,
}

impl Unpacker {
    fn new(root: OwnedFd, mode: WhiteoutMode, slot: Rc<Cell<Option<io::Error>>>) -> Unpacker {
        Unpacker {
            root,
            mode,
            slot,
            cache_path: Vec::new(),
            cache_fd: None,
            dirs: Vec::new(),
            created: HashSet::new(),
            buf: Vec::new(),
            path: Vec::new(),
            raw: Vec::new(),
            cname: Vec::new(),
            cparent: Vec::new(),
            xattrs: Vec::new(),
        }
    }

    fn name(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    fn err(&self, op: &'static str, source: io::Error) -> UnpackError {
        UnpackError::Entry { name: self.name(), op, source }
    }

    fn invalid(&self, what: &'static str) -> UnpackError {
        UnpackError::Invalid { name: self.name(), what }
    }

    /// A tar reader's error while reading this entry's data.
    fn tar_err(&self, e: tarread::TarError) -> UnpackError {
        match tar_err(&self.slot, e) {
            UnpackError::Truncated => UnpackError::TruncatedIn { name: self.name() },
            e => e,
        }
    }

    /// Applies one entry (its data, if any, is read from `tr`).
    fn entry<R: Read>(&mut self, e: &tarread::Entry, tr: &mut tarread::Reader<R>) -> Result<(), UnpackError> {
        let kind = e.kind;
        self.raw.clear();
        self.raw.extend_from_slice(&e.name);
        if !normalize(&self.raw, &mut self.path) {
            return Err(if self.raw.contains(&0) {
                self.invalid("name contains a NUL byte")
            } else {
                UnpackError::Escapes { name: self.name() }
            });
        }
        self.xattrs.clear();
        for (k, v) in &e.xattrs {
            // Overlay's own attributes are made from whiteouts only: a layer must not plant
            // redirects or metacopy markers.
            if k.starts_with(b"trusted.overlay.") {
                continue;
            }
            let key = CString::new(k.as_slice()).map_err(|_| self.invalid("xattr name contains a NUL byte"))?;
            self.xattrs.push((key, v.clone()));
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(e.uid), u32::try_from(e.gid)) else {
            return Err(self.invalid("uid or gid out of range"));
        };
        let meta = Meta { mode: e.mode, uid, gid, mtime: e.mtime };

        let split = self.path.iter().rposition(|&b| b == b'/');
        let (pstart, nstart) = match split {
            Some(i) => (i, i + 1),
            None => (0, 0),
        };
        if self.path.is_empty() {
            // The layer's root ("./"): only its metadata applies, to dest itself.
            if kind != Kind::Dir {
                return Err(self.invalid("the layer root is not a directory"));
            }
            let fd = reopen_dir(self.root.as_raw_fd()).map_err(|e| self.err("open", e))?;
            self.dir_meta(&fd, &meta)?;
            self.dirs.push((Vec::new(), meta.mtime));
            return Ok(());
        }
        set_c(&mut self.cname, &self.path[nstart..]);

        // Whiteouts.
        let base = &self.path[nstart..];
        if base.starts_with(WH_PREFIX) {
            if base == WH_OPAQUE {
                self.opaque(pstart)?;
            } else if base.starts_with(WH_META) {
                // aufs bookkeeping (.wh..wh.plnk and the like): nothing to apply.
            } else {
                self.whiteout(pstart, nstart, meta.mtime)?;
            }
            return Ok(());
        }

        let pfd = self.parent(pstart, true)?;
        match kind {
            Kind::Dir => self.make_dir(pfd, &meta)?,
            Kind::File => self.make_file(pfd, e, tr, &meta)?,
            Kind::Symlink => {
                let target =
                    CString::new(e.link.as_slice()).map_err(|_| self.invalid("link name contains a NUL byte"))?;
                self.make_symlink(pfd, &target, &meta)?
            }
            Kind::Hardlink => self.make_hardlink(pfd, &e.link)?,
            Kind::Fifo => self.make_node(pfd, libc::S_IFIFO, 0, &meta)?,
            Kind::Char | Kind::Block => {
                let fmt = if kind == Kind::Char { libc::S_IFCHR } else { libc::S_IFBLK };
                self.make_node(pfd, fmt, libc::makedev(e.dev_major, e.dev_minor), &meta)?
            }
            Kind::Other(_) => return Err(self.invalid("unsupported entry type")),
        }
        if self.mode == WhiteoutMode::Apply {
            self.created.insert(self.path.clone());
        }
        Ok(())
    }

    /// An fd of the dir at self.path[..plen] (the layer root for 0), beneath the root. With
    /// `create`, missing dirs are made (0755, root-owned), as docker does. The fd stays
    /// valid until the cache is next changed.
    fn parent(&mut self, plen: usize, create: bool) -> Result<RawFd, UnpackError> {
        if plen == 0 {
            return Ok(self.root.as_raw_fd());
        }
        let p = &self.path[..plen];
        if let Some(fd) = &self.cache_fd {
            if self.cache_path == p {
                return Ok(fd.as_raw_fd());
            }
        }
        set_c(&mut self.cparent, p);
        let fd = match open_beneath(self.root.as_raw_fd(), cstr(&self.cparent), libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => self.make_parents(plen)?,
            Err(e) => return Err(self.err("open parent directory", e)),
        };
        self.cache_path.clear();
        self.cache_path.extend_from_slice(&self.path[..plen]);
        let raw = fd.as_raw_fd();
        self.cache_fd = Some(fd);
        Ok(raw)
    }

    /// Makes each missing dir of self.path[..plen], one component at a time.
    fn make_parents(&mut self, plen: usize) -> Result<OwnedFd, UnpackError> {
        let mut cur = reopen_path(self.root.as_raw_fd()).map_err(|e| self.err("open parent directory", e))?;
        let mut start = 0;
        while start < plen {
            let end = self.path[start..plen].iter().position(|&b| b == b'/').map_or(plen, |i| start + i);
            set_c(&mut self.cparent, &self.path[..end]);
            let next = match open_beneath(self.root.as_raw_fd(), cstr(&self.cparent), libc::O_PATH | libc::O_DIRECTORY)
            {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let mut comp = Vec::new();
                    set_c(&mut comp, &self.path[start..end]);
                    mkdirat(cur.as_raw_fd(), cstr(&comp), 0o755)
                        .map_err(|e| self.err("mkdirat parent directory", e))?;
                    // mkdir's mode is cut by the umask.
                    fchmodat(cur.as_raw_fd(), cstr(&comp), 0o755)
                        .map_err(|e| self.err("fchmodat parent directory", e))?;
                    if self.mode == WhiteoutMode::Apply {
                        self.created.insert(self.path[..end].to_vec());
                    }
                    open_beneath(self.root.as_raw_fd(), cstr(&self.cparent), libc::O_PATH | libc::O_DIRECTORY)
                        .map_err(|e| self.err("open parent directory", e))?
                }
                Err(e) => return Err(self.err("open parent directory", e)),
            };
            cur = next;
            start = end + 1;
        }
        Ok(cur)
    }

    /// Forgets the cached parent: something is being removed, and a path that named the
    /// cached dir may name something else afterwards. The fd itself stays open (callers may
    /// be using it as the current parent) until the cache is next filled.
    fn invalidate(&mut self) {
        self.cache_path.clear();
    }

    /// Removes whatever is at self.path (in dir `pfd`, named self.cname) so a new entry can
    /// take its place.
    fn clear_slot(&mut self, pfd: RawFd) -> Result<(), UnpackError> {
        self.invalidate();
        match remove_all(pfd, cstr(&self.cname)) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(self.err("remove existing entry", e)),
        }
    }

    fn make_dir(&mut self, pfd: RawFd, meta: &Meta) -> Result<(), UnpackError> {
        let name = cstr(&self.cname);
        let fd = match mkdirat(pfd, name, 0o700) {
            Ok(()) => openat(pfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                .map_err(|e| self.err("open", e))?,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                match openat(pfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0) {
                    // An existing dir is kept (its contents too); only its metadata changes.
                    Ok(fd) => fd,
                    Err(_) => {
                        self.clear_slot(pfd)?;
                        let name = cstr(&self.cname);
                        mkdirat(pfd, name, 0o700).map_err(|e| self.err("mkdirat", e))?;
                        openat(pfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                            .map_err(|e| self.err("open", e))?
                    }
                }
            }
            Err(e) => return Err(self.err("mkdirat", e)),
        };
        self.dir_meta(&fd, meta)?;
        self.dirs.push((self.path.clone(), meta.mtime));
        // The next entries are most likely this dir's children.
        self.cache_path.clear();
        self.cache_path.extend_from_slice(&self.path);
        self.cache_fd = Some(fd);
        Ok(())
    }

    fn dir_meta(&self, fd: &OwnedFd, meta: &Meta) -> Result<(), UnpackError> {
        let fd = fd.as_raw_fd();
        fchown(fd, meta.uid, meta.gid).map_err(|e| self.err("fchown", e))?;
        self.set_xattrs(XTarget::Fd(fd), false)?;
        fchmod(fd, meta.mode).map_err(|e| self.err("fchmod", e))
    }

    fn make_file<R: Read>(
        &mut self,
        pfd: RawFd,
        e: &tarread::Entry,
        tr: &mut tarread::Reader<R>,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let fd = match openat(pfd, cstr(&self.cname), flags, 0o600) {
            Ok(fd) => fd,
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                self.clear_slot(pfd)?;
                openat(pfd, cstr(&self.cname), flags, 0o600).map_err(|e| self.err("openat", e))?
            }
            Err(err) => return Err(self.err("openat", err)),
        };
        let mut f = File::from(fd);
        match &e.sparse {
            None => self.copy_data(&mut f, tr, e.size)?,
            Some(map) => {
                // Each segment at its offset; the holes between stay holes.
                for &(off, len) in map {
                    f.seek(SeekFrom::Start(off)).map_err(|e| self.err("lseek", e))?;
                    self.copy_data(&mut f, tr, len)?;
                }
                f.set_len(e.size).map_err(|e| self.err("ftruncate", e))?;
            }
        }
        let fd = f.as_raw_fd();
        fchown(fd, meta.uid, meta.gid).map_err(|e| self.err("fchown", e))?;
        self.set_xattrs(XTarget::Fd(fd), false)?;
        // After chown, which clears setuid/setgid.
        fchmod(fd, meta.mode).map_err(|e| self.err("fchmod", e))?;
        let ts = [meta.mtime, meta.mtime];
        // SAFETY: fd is an open file we own; ts is a valid array of two timespecs.
        cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }).map_err(|e| self.err("futimens", e))?;
        Ok(())
    }

    /// Copies `len` bytes of the entry's data from `tr` to `f`.
    fn copy_data<R: Read>(&mut self, f: &mut File, tr: &mut tarread::Reader<R>, len: u64) -> Result<(), UnpackError> {
        let mut left = len;
        if left > 0 && self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF];
        }
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match tr.read(&mut self.buf[..want]) {
                Ok(0) => return Err(UnpackError::TruncatedIn { name: self.name() }),
                Ok(n) => n,
                Err(err) => return Err(self.tar_err(err)),
            };
            f.write_all(&self.buf[..n]).map_err(|e| self.err("write", e))?;
            left -= n as u64;
        }
        Ok(())
    }

    fn make_symlink(&mut self, pfd: RawFd, target: &CStr, meta: &Meta) -> Result<(), UnpackError> {
        match symlinkat(target, pfd, cstr(&self.cname)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.clear_slot(pfd)?;
                symlinkat(target, pfd, cstr(&self.cname)).map_err(|e| self.err("symlinkat", e))?;
            }
            Err(e) => return Err(self.err("symlinkat", e)),
        }
        self.node_meta(pfd, meta, false)
    }

    fn make_node(&mut self, pfd: RawFd, fmt: libc::mode_t, dev: libc::dev_t, meta: &Meta) -> Result<(), UnpackError> {
        match mknodat(pfd, cstr(&self.cname), fmt, dev) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.clear_slot(pfd)?;
                mknodat(pfd, cstr(&self.cname), fmt, dev).map_err(|e| self.err("mknodat", e))?;
            }
            Err(e) => return Err(self.err("mknodat", e)),
        }
        self.node_meta(pfd, meta, true)
    }

    /// Owner, xattrs, mode (unless a symlink) and times of the non-file entry self.cname in pfd.
    fn node_meta(&self, pfd: RawFd, meta: &Meta, chmod: bool) -> Result<(), UnpackError> {
        let name = cstr(&self.cname);
        fchownat(pfd, name, meta.uid, meta.gid).map_err(|e| self.err("fchownat", e))?;
        if !self.xattrs.is_empty() {
            self.set_xattrs(XTarget::At(pfd, name), true)?;
        }
        if chmod {
            // Not a symlink (made just now by mknodat), so following is moot.
            fchmodat(pfd, name, meta.mode).map_err(|e| self.err("fchmodat", e))?;
        }
        let ts = [meta.mtime, meta.mtime];
        // SAFETY: name is NUL-terminated; ts is a valid array of two timespecs.
        cvt(unsafe { libc::utimensat(pfd, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
            .map_err(|e| self.err("utimensat", e))?;
        Ok(())
    }

    fn make_hardlink(&mut self, pfd: RawFd, target: &[u8]) -> Result<(), UnpackError> {
        let not_in =
            |s: &Self| UnpackError::LinkTarget { name: s.name(), target: String::from_utf8_lossy(target).into_owned() };
        if target.first() == Some(&b'/') && berth::faults::weakened("unpack-link-beneath") {
            // Weakened (debug builds only, for the breakout tests): an absolute target taken as
            // the host's path, as a naive unpacker would.
            let mut hp = Vec::new();
            set_c(&mut hp, target);
            return linkat(libc::AT_FDCWD, cstr(&hp), pfd, cstr(&self.cname)).map_err(|e| self.err("linkat", e));
        }
        let mut tpath = Vec::new();
        if !normalize(target, &mut tpath) || tpath.is_empty() {
            return Err(not_in(self));
        }
        let (tparent, tname) = match tpath.iter().rposition(|&b| b == b'/') {
            Some(i) => (&tpath[..i], &tpath[i + 1..]),
            None => (&b"."[..], &tpath[..]),
        };
        let mut cp = Vec::new();
        set_c(&mut cp, tparent);
        let tfd = match open_beneath(self.root.as_raw_fd(), cstr(&cp), libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => return Err(not_in(self)),
            Err(e) => return Err(self.err("open hardlink target directory", e)),
        };
        let mut tn = Vec::new();
        set_c(&mut tn, tname);
        let link = |s: &Self| linkat(tfd.as_raw_fd(), cstr(&tn), pfd, cstr(&s.cname));
        match link(self) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // Linking a name to itself would remove the target first.
                if tpath == self.path {
                    return Ok(());
                }
                self.clear_slot(pfd)?;
                match link(self) {
                    Ok(()) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(not_in(self)),
                    Err(e) => Err(self.err("linkat", e)),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(not_in(self)),
            Err(e) => Err(self.err("linkat", e)),
        }
    }

    fn set_xattrs(&self, target: XTarget<'_>, node: bool) -> Result<(), UnpackError> {
        let mut proc_path = None;
        for (key, val) in &self.xattrs {
            let r = match target {
                // SAFETY: key is NUL-terminated; val points to val.len() readable bytes.
                XTarget::Fd(fd) => unsafe { libc::fsetxattr(fd, key.as_ptr(), val.as_ptr().cast(), val.len(), 0) },
                XTarget::At(pfd, name) => {
                    // No lsetxattrat before Linux 6.13: name the entry through the parent
                    // fd's magic link; the final component is still not followed.
                    let p: &CString = proc_path.get_or_insert_with(|| {
                        let mut v = format!("/proc/self/fd/{pfd}/").into_bytes();
                        v.extend_from_slice(name.to_bytes());
                        CString::new(v).unwrap_or_default()
                    });
                    // SAFETY: p and key are NUL-terminated; val points to val.len() readable bytes.
                    unsafe { libc::lsetxattr(p.as_ptr(), key.as_ptr(), val.as_ptr().cast(), val.len(), 0) }
                }
            };
            if r == 0 {
                continue;
            }
            let e = io::Error::last_os_error();
            let k = key.to_bytes();
            let errno = e.raw_os_error().unwrap_or(0);
            // security.* (capabilities, selinux labels) depends on the host: best effort.
            // user.* is refused by filesystems without it and on symlinks and devices.
            let ignore = k.starts_with(b"security.")
                || (k.starts_with(b"user.") && (errno == libc::EOPNOTSUPP || (node && errno == libc::EPERM)));
            if !ignore {
                return Err(UnpackError::Xattr {
                    name: self.name(),
                    key: String::from_utf8_lossy(k).into_owned(),
                    source: e,
                });
            }
        }
        Ok(())
    }

    /// `.wh.NAME` at self.path (parent ends at pstart, name starts at nstart).
    fn whiteout(&mut self, pstart: usize, nstart: usize, mtime: libc::timespec) -> Result<(), UnpackError> {
        let hidden = &self.path[nstart + WH_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnpackError::Escapes { name: self.name() });
        }
        set_c(&mut self.cname, hidden);
        // self.path becomes the hidden entry's path.
        self.path.drain(nstart..nstart + WH_PREFIX.len());
        self.xattrs.clear();
        match self.mode {
            WhiteoutMode::Overlay => {
                let pfd = self.parent(pstart, true)?;
                self.make_node(pfd, libc::S_IFCHR, 0, &Meta { mode: 0, uid: 0, gid: 0, mtime })
            }
            WhiteoutMode::Apply => {
                let pfd = match self.parent(pstart, false) {
                    Ok(fd) => fd,
                    // Nothing to hide under a parent that does not exist.
                    Err(UnpackError::Entry { source, .. })
                        if matches!(source.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) =>
                    {
                        return Ok(())
                    }
                    Err(e) => return Err(e),
                };
                self.clear_slot(pfd)
            }
        }
    }

    /// `.wh..wh..opq` in the dir self.path[..plen].
    fn opaque(&mut self, plen: usize) -> Result<(), UnpackError> {
        let pfd = self.parent(plen, self.mode == WhiteoutMode::Overlay);
        let pfd = match (pfd, self.mode) {
            (Ok(fd), _) => fd,
            (Err(UnpackError::Entry { source, .. }), WhiteoutMode::Apply)
                if matches!(source.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) =>
            {
                return Ok(())
            }
            (Err(e), _) => return Err(e),
        };
        let dfd = reopen_dir(pfd).map_err(|e| self.err("open", e))?;
        match self.mode {
            WhiteoutMode::Overlay => {
                let key = c"trusted.overlay.opaque";
                // SAFETY: key is NUL-terminated; the value is 1 readable byte.
                cvt(unsafe { libc::fsetxattr(dfd.as_raw_fd(), key.as_ptr(), b"y".as_ptr().cast(), 1, 0) }).map_err(
                    |source| UnpackError::Xattr { name: self.name(), key: "trusted.overlay.opaque".into(), source },
                )
            }
            WhiteoutMode::Apply => {
                let mut dpath = self.path[..plen].to_vec();
                self.invalidate();
                self.remove_lower(&dfd, &mut dpath).map_err(|e| self.err("remove lower entries", e))
            }
        }
    }

    /// Removes every entry under dfd (at dpath) that this layer did not make.
    fn remove_lower(&self, dfd: &OwnedFd, dpath: &mut Vec<u8>) -> io::Result<()> {
        for (n, dtype) in list_dir(dfd)? {
            let len = dpath.len();
            if !dpath.is_empty() {
                dpath.push(b'/');
            }
            dpath.extend_from_slice(n.to_bytes());
            let r = if self.created.contains(dpath.as_slice()) {
                if dtype == libc::DT_DIR || dtype == libc::DT_UNKNOWN {
                    match openat(dfd.as_raw_fd(), &n, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0) {
                        Ok(sub) => self.remove_lower(&sub, dpath),
                        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => Ok(()),
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(())
                }
            } else {
                match remove_all(dfd.as_raw_fd(), &n) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                    r => r,
                }
            };
            dpath.truncate(len);
            r?;
        }
        Ok(())
    }

    /// Sets directory times, now that nothing more is created in them.
    fn finish(&mut self) -> Result<(), UnpackError> {
        self.cache_fd = None;
        let mut c = Vec::new();
        for (p, t) in &self.dirs {
            set_c(&mut c, if p.is_empty() { b"." } else { p });
            let fd = match open_beneath(
                self.root.as_raw_fd(),
                cstr(&c),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            ) {
                Ok(fd) => fd,
                // Removed or replaced by a later entry.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                    continue
                }
                Err(source) => {
                    return Err(UnpackError::Entry {
                        name: String::from_utf8_lossy(p).into_owned(),
                        op: "open",
                        source,
                    })
                }
            };
            let ts = [*t, *t];
            // SAFETY: fd is an open dir we own; ts is a valid array of two timespecs.
            cvt(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) }).map_err(|source| UnpackError::Entry {
                name: String::from_utf8_lossy(p).into_owned(),
                op: "futimens",
                source,
            })?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum XTarget<'a> {
    Fd(RawFd),
    At(RawFd, &'a CStr),
}

/// Normalises a tar name into `out`: no leading `/`, no empty or `.` components. False if
/// a component is `..` or the name holds a NUL byte.
fn normalize(raw: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if raw.contains(&0) {
        return false;
    }
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return false,
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    true
}

/// Fills `buf` with `s` and a NUL (callers have checked `s` holds none).
fn set_c(buf: &mut Vec<u8>, s: &[u8]) {
    buf.clear();
    buf.extend_from_slice(s);
    buf.push(0);
}

fn cstr(buf: &[u8]) -> &CStr {
    CStr::from_bytes_until_nul(buf).unwrap_or(c"")
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_dir_path(p: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    openat(libc::AT_FDCWD, &c, libc::O_PATH | libc::O_DIRECTORY, 0)
}

fn openat(dfd: RawFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: name is NUL-terminated; the returned fd is owned by us alone.
        let fd = unsafe { libc::openat(dfd, name.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
        if fd >= 0 {
            // SAFETY: fd was just returned by openat and is not owned elsewhere.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// openat2 of `path` beneath `root`, with symlinks resolved as if `root` were `/`.
fn open_beneath(root: RawFd, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // struct open_how of linux/openat2.h (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    let mut tries = 0;
    loop {
        // SAFETY: path is NUL-terminated; how is a valid open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: fd was just returned by openat2 and is not owned elsewhere.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a concurrent rename made the kernel unsure of a ".." walk; retry.
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) if tries < 16 => tries += 1,
            _ => return Err(e),
        }
    }
}

/// A readable fd of the dir `fd` refers to (which may be an O_PATH fd).
fn reopen_dir(fd: RawFd) -> io::Result<OwnedFd> {
    openat(fd, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

fn reopen_path(fd: RawFd) -> io::Result<OwnedFd> {
    openat(fd, c".", libc::O_PATH | libc::O_DIRECTORY, 0)
}

fn mkdirat(dfd: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    cvt(unsafe { libc::mkdirat(dfd, name.as_ptr(), mode) })
}

fn mknodat(dfd: RawFd, name: &CStr, fmt: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    // SAFETY: name is NUL-terminated. Permission bits are set by fchmodat afterwards.
    cvt(unsafe { libc::mknodat(dfd, name.as_ptr(), fmt, dev) })
}

fn symlinkat(target: &CStr, dfd: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dfd, name.as_ptr()) })
}

fn linkat(ofd: RawFd, old: &CStr, nfd: RawFd, new: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated; flags 0 does not follow a symlink target.
    cvt(unsafe { libc::linkat(ofd, old.as_ptr(), nfd, new.as_ptr(), 0) })
}

fn unlinkat(dfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    cvt(unsafe { libc::unlinkat(dfd, name.as_ptr(), flags) })
}

/// The host owner of a layer's `uid:gid`: shifted into the ranges with `userns-remap`.
fn host_owner(uid: u32, gid: u32) -> io::Result<(u32, u32)> {
    match crate::remap::active() {
        None => Ok((uid, gid)),
        Some(m) => match (m.uid(uid), m.gid(gid)) {
            (Some(u), Some(g)) => Ok((u, g)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("owner {uid}:{gid} is outside the userns-remap ranges of /etc/subuid and /etc/subgid"),
            )),
        },
    }
}

fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = host_owner(uid, gid)?;
    // SAFETY: plain syscall on an fd we own.
    cvt(unsafe { libc::fchown(fd, uid, gid) }).map_err(|e| unmapped_owner(e, uid, gid))
}

fn fchownat(dfd: RawFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = host_owner(uid, gid)?;
    // SAFETY: name is NUL-terminated; AT_SYMLINK_NOFOLLOW changes a symlink itself.
    cvt(unsafe { libc::fchownat(dfd, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        .map_err(|e| unmapped_owner(e, uid, gid))
}

/// EINVAL from chown: the owner is not mapped in the user namespace we unpack in (an ordinary
/// user's engine with too few subordinate ids).
fn unmapped_owner(e: io::Error, uid: u32, gid: u32) -> io::Error {
    if e.raw_os_error() != Some(libc::EINVAL) {
        return e;
    }
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "owner {uid}:{gid} is not mapped in this user namespace (an ordinary user needs subordinate ids \
             for it in /etc/subuid and /etc/subgid)"
        ),
    )
}

fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we own.
    cvt(unsafe { libc::fchmod(fd, mode as libc::mode_t) })
}

fn fchmodat(dfd: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: name is NUL-terminated; callers only pass names they just made as non-symlinks.
    cvt(unsafe { libc::fchmodat(dfd, name.as_ptr(), mode as libc::mode_t, 0) })
}

/// The names (and d_type) in the dir `fd`, without `.` and `..`.
fn list_dir(fd: &OwnedFd) -> io::Result<Vec<(CString, u8)>> {
    let dup = reopen_dir(fd.as_raw_fd())?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(dup);
    // SAFETY: raw is an open dir fd we own; fdopendir takes it over on success.
    let dirp = unsafe { libc::fdopendir(raw) };
    if dirp.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so raw is still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut out = Vec::new();
    let res = loop {
        // SAFETY: errno is thread-local; readdir64 on a valid DIR*; the entry it returns
        // stays valid until the next readdir64/closedir, and its name is copied before that.
        unsafe {
            *libc::__errno_location() = 0;
            let ent = libc::readdir64(dirp);
            if ent.is_null() {
                let errno = *libc::__errno_location();
                break if errno == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(errno)) };
            }
            let name = CStr::from_ptr((*ent).d_name.as_ptr());
            let b = name.to_bytes();
            if b != b"." && b != b".." {
                out.push((name.to_owned(), (*ent).d_type));
            }
        }
    };
    // SAFETY: dirp is a valid DIR* not used after this.
    unsafe { libc::closedir(dirp) };
    res.map(|()| out)
}

/// Removes `name` in `parent`, recursively for a dir, never following symlinks. Iterative,
/// so a deep tree cannot overflow the stack.
fn remove_all(parent: RawFd, name: &CStr) -> io::Result<()> {
    match unlinkat(parent, name, 0) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {}
        Err(e) => return Err(e),
    }
    struct Frame {
        fd: OwnedFd,
        names: Vec<(CString, u8)>,
        name: CString,
    }
    let open = |dfd: RawFd, n: &CStr| openat(dfd, n, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0);
    let fd = open(parent, name)?;
    let names = list_dir(&fd)?;
    let mut stack = vec![Frame { fd, names, name: name.to_owned() }];
    loop {
        let Some(top) = stack.last_mut() else { return Ok(()) };
        if let Some((n, _)) = top.names.pop() {
            match unlinkat(top.fd.as_raw_fd(), &n, 0) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                    let fd = open(top.fd.as_raw_fd(), &n)?;
                    let names = list_dir(&fd)?;
                    stack.push(Frame { fd, names, name: n });
                }
                Err(e) => return Err(e),
            }
        } else if let Some(done) = stack.pop() {
            drop(done.fd);
            let pfd = stack.last().map_or(parent, |f| f.fd.as_raw_fd());
            unlinkat(pfd, &done.name, libc::AT_REMOVEDIR)?;
        }
    }
}

#[cfg(test)]
mod tests;
