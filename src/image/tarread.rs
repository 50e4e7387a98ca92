//! A streaming reader of tar archives, as image layers and image archives carry them:
//! ustar and v7 headers, GNU headers (long names and link names, base-256 numbers, old
//! sparse files) and pax extended headers (`x` per entry, `g` global), each pax record read
//! through its length prefix so values may hold any byte (binary xattrs such as
//! `security.capability`). `SCHILY.xattr.*` records and libarchive's `LIBARCHIVE.xattr.*`
//! (percent-encoded name, base64 value) become xattrs; GNU sparse files in every pax
//! variant (0.0, 0.1, 1.0) come with their map.
//!
//! Global pax records apply to the entries after them, except `path`, `linkpath`, `size`
//! and `GNU.sparse.*`, which only make sense per entry.

use std::io::{self, Read};

const BLOCK: usize = 512;
/// Largest GNU long name/link or pax header body accepted (xattr values are at most 64 KiB).
const MAX_META: u64 = 8 << 20;
/// Most sparse segments accepted for one file.
const MAX_SPARSE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The underlying reader failed (not at an end of stream).
    #[error("{0}")]
    Read(io::Error),
    #[error("the tar is truncated")]
    Truncated,
    #[error("entry {name:?}: {what}")]
    Corrupt { name: String, what: String },
}

/// What an entry is, after GNU, pax and v7 conventions are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
    /// Any other type flag.
    Other(u8),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// The name as written (pax `path`, GNU long name or ustar prefix + name).
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: libc::timespec,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// The file's size: for a sparse file its full (real) size.
    pub size: u64,
    /// (name, value) in the order the records came.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A sparse file's data segments (offset, length), in order; the entry's data is their
    /// contents one after the other.
    pub sparse: Option<Vec<(u64, u64)>>,
}

pub struct Reader<R> {
    r: R,
    /// Unread data bytes of the current entry, and the padding after them.
    left: u64,
    pad: u64,
    global: Vec<(Vec<u8>, Vec<u8>)>,
    done: bool,
    scratch: Vec<u8>,
}

impl<R: Read> Reader<R> {
    pub fn new(r: R) -> Reader<R> {
        Reader { r, left: 0, pad: 0, global: Vec::new(), done: false, scratch: Vec::new() }
    }

    /// The underlying reader, positioned after the last block read (the end-of-archive
    /// block once `next` returned None).
    pub fn into_inner(self) -> R {
        self.r
    }

    /// Reads the current entry's data (for a sparse file: its segments back to back).
    /// Ok(0) at the end of the data.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        loop {
            match self.r.read(&mut buf[..want]) {
                Ok(0) => return Err(TarError::Truncated),
                Ok(n) => {
                    self.left -= n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
    }

    /// The next entry (metadata entries — GNU long names, pax headers — folded into it);
    /// None at the end of the archive. Unread data of the previous entry is skipped.
    pub fn next(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip(self.left + self.pad)?;
        self.left = 0;
        self.pad = 0;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut local: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut have_local = false;
        loop {
            let mut h = [0u8; BLOCK];
            if !self.read_block(&mut h, true)? {
                self.done = true;
                if long_name.is_some() || long_link.is_some() || have_local {
                    return Err(TarError::Truncated);
                }
                return Ok(None);
            }
            if h.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            let hname = header_name(&h);
            let corrupt = |what: &str| TarError::Corrupt {
                name: String::from_utf8_lossy(&hname).into_owned(),
                what: what.into(),
            };
            check_sum(&h).map_err(corrupt)?;
            let flag = h[156];
            let stored = number(&h[124..136]).map_err(|_| corrupt("bad size field"))?;
            let stored = u64::try_from(stored).map_err(|_| corrupt("bad size field"))?;
            match flag {
                b'L' | b'K' | b'x' | b'g' => {
                    if stored > MAX_META {
                        return Err(corrupt("extended header too large"));
                    }
                    let data = self.read_meta(stored)?;
                    match flag {
                        b'L' => long_name = Some(cut_nul(&data).to_vec()),
                        b'K' => long_link = Some(cut_nul(&data).to_vec()),
                        b'x' => {
                            if let Err(what) = parse_pax(&data, &mut local) {
                                return Err(self.named_by_next(what, hname));
                            }
                            have_local = true;
                        }
                        _ => {
                            let mut g = Vec::new();
                            parse_pax(&data, &mut g).map_err(corrupt)?;
                            for (k, v) in g {
                                if matches!(k.as_slice(), b"path" | b"linkpath" | b"size")
                                    || k.starts_with(b"GNU.sparse.")
                                {
                                    continue;
                                }
                                self.global.retain(|(gk, _)| *gk != k);
                                if !v.is_empty() {
                                    self.global.push((k, v));
                                }
                            }
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let e = self.entry(&h, flag, stored, long_name, long_link, &local)?;
            return Ok(Some(e));
        }
    }

    fn entry(
        &mut self,
        h: &[u8; BLOCK],
        flag: u8,
        stored: u64,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        local: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Entry, TarError> {
        let gnu = &h[257..263] == b"ustar " && &h[263..265] == b" \0";
        let mut name = match long_name {
            Some(n) => n,
            None => {
                let mut n = Vec::new();
                let prefix = cut_nul(&h[345..500]);
                if !gnu && &h[257..262] == b"ustar" && !prefix.is_empty() {
                    n.extend_from_slice(prefix);
                    n.push(b'/');
                }
                n.extend_from_slice(cut_nul(&h[..100]));
                n
            }
        };
        let mut link = long_link.unwrap_or_else(|| cut_nul(&h[157..257]).to_vec());
        let bad = |name: &[u8], what: &str| TarError::Corrupt {
            name: String::from_utf8_lossy(name).into_owned(),
            what: what.into(),
        };
        let mode = number(&h[100..108]).map_err(|_| bad(&name, "bad mode field"))?;
        let mut uid = number(&h[108..116]).map_err(|_| bad(&name, "bad uid field"))?;
        let mut gid = number(&h[116..124]).map_err(|_| bad(&name, "bad gid field"))?;
        let mut mtime =
            libc::timespec { tv_sec: number(&h[136..148]).map_err(|_| bad(&name, "bad mtime field"))?, tv_nsec: 0 };
        let mut size = stored;
        let mut xattrs = Vec::new();
        let mut sp = SparsePax::default();

        let pax_num = |k: &[u8], v: &[u8], name: &[u8]| -> Result<i64, TarError> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| bad(name, &format!("bad pax {} value", String::from_utf8_lossy(k))))
        };
        // Global records first, so the entry's own override them.
        for (k, v) in self.global.iter().chain(local.iter()) {
            let (k, v) = (k.as_slice(), v.as_slice());
            match k {
                // An empty value removes the record: the header's field stands.
                b"path" | b"linkpath" | b"size" | b"uid" | b"gid" | b"mtime" if v.is_empty() => {}
                b"path" => name = v.to_vec(),
                b"linkpath" => link = v.to_vec(),
                b"size" => size = u64::try_from(pax_num(k, v, &name)?).map_err(|_| bad(&name, "bad pax size value"))?,
                b"uid" => uid = pax_num(k, v, &name)?,
                b"gid" => gid = pax_num(k, v, &name)?,
                b"mtime" => mtime = pax_time(v).ok_or_else(|| bad(&name, "bad pax mtime value"))?,
                _ => {
                    if let Some(x) = k.strip_prefix(b"SCHILY.xattr.") {
                        set_xattr(&mut xattrs, x.to_vec(), v.to_vec());
                    } else if let Some(x) = k.strip_prefix(b"LIBARCHIVE.xattr.") {
                        let (Some(n), Some(val)) =
                            (percent_decode(x), std::str::from_utf8(v).ok().and_then(super::registry::base64_decode))
                        else {
                            return Err(bad(&name, "bad LIBARCHIVE.xattr record"));
                        };
                        set_xattr(&mut xattrs, n, val);
                    } else if let Some(s) = k.strip_prefix(b"GNU.sparse.") {
                        sp.record(s, v).map_err(|w| bad(&name, w))?;
                    }
                }
            }
        }
        // Only an entry's own pax `size` changes how much data it has.
        let stored = size;
        if let Some(n) = sp.name.take() {
            name = n;
        }

        let is_dir_name = name.last() == Some(&b'/');
        let kind = match flag {
            b'0' | 0 if is_dir_name => Kind::Dir,
            b'0' | 0 | b'7' | b'S' => Kind::File,
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' | b'D' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => Kind::Other(other),
        };
        let (dev_major, dev_minor) = if matches!(kind, Kind::Char | Kind::Block) {
            (
                dev_number(&h[329..337]).map_err(|_| bad(&name, "bad device major field"))?,
                dev_number(&h[337..345]).map_err(|_| bad(&name, "bad device minor field"))?,
            )
        } else {
            (0, 0)
        };
        let mode = u32::try_from(mode & 0o7777).unwrap_or(0);
        let (Ok(uid), Ok(gid)) = (u64::try_from(uid), u64::try_from(gid)) else {
            return Err(bad(&name, "negative uid or gid"));
        };

        self.left = stored;
        self.pad = pad_of(stored);
        let mut sparse = None;
        if flag == b'S' {
            let (map, real) = self.old_gnu_sparse(h).map_err(|e| rename(e, &name))?;
            size = real;
            sparse = Some(map);
        } else if sp.any {
            let (map, real) = if sp.major == Some(1) {
                // 1.0: the map is at the start of the data, in decimal lines, padded to a block.
                let map = self.sparse_map_v1().map_err(|e| rename(e, &name))?;
                (map, sp.real.ok_or_else(|| bad(&name, "sparse file without GNU.sparse.realsize"))?)
            } else {
                (std::mem::take(&mut sp.map), sp.real.ok_or_else(|| bad(&name, "sparse file without GNU.sparse.size"))?)
            };
            size = real;
            sparse = Some(map);
        }
        if let Some(map) = &sparse {
            let mut end = 0u64;
            let mut total = 0u64;
            for &(off, len) in map {
                let stop = off.checked_add(len).ok_or_else(|| bad(&name, "bad sparse map"))?;
                if off < end || stop > size {
                    return Err(bad(&name, "bad sparse map"));
                }
                end = stop;
                total += len;
            }
            if total != self.left {
                return Err(bad(&name, "sparse map does not match the data size"));
            }
        }
        Ok(Entry { kind, name, link, mode, uid, gid, mtime, dev_major, dev_minor, size, xattrs, sparse })
    }

    /// An error in an entry's pax header, named after the entry's own header (the next block)
    /// when it reads as one, else after the pax header.
    fn named_by_next(&mut self, what: &str, fallback: Vec<u8>) -> TarError {
        let mut b = [0u8; BLOCK];
        let name = match self.read_block(&mut b, true) {
            Ok(true) if check_sum(&b).is_ok() => header_name(&b),
            _ => fallback,
        };
        self.done = true;
        TarError::Corrupt { name: String::from_utf8_lossy(&name).into_owned(), what: what.into() }
    }

    /// The sparse map of an old GNU `S` header and its extension blocks; the real size.
    fn old_gnu_sparse(&mut self, h: &[u8; BLOCK]) -> Result<(Vec<(u64, u64)>, u64), TarError> {
        let bad = |w: &str| TarError::Corrupt { name: String::new(), what: w.into() };
        let mut map = Vec::new();
        let push = |map: &mut Vec<(u64, u64)>, rec: &[u8]| -> Result<(), TarError> {
            if rec[0] == 0 {
                return Ok(());
            }
            let off =
                number(&rec[..12]).ok().and_then(|v| u64::try_from(v).ok()).ok_or_else(|| bad("bad sparse map"))?;
            let len =
                number(&rec[12..24]).ok().and_then(|v| u64::try_from(v).ok()).ok_or_else(|| bad("bad sparse map"))?;
            if map.len() >= MAX_SPARSE {
                return Err(bad("too many sparse segments"));
            }
            map.push((off, len));
            Ok(())
        };
        for i in 0..4 {
            push(&mut map, &h[386 + i * 24..386 + (i + 1) * 24])?;
        }
        let real =
            number(&h[483..495]).ok().and_then(|v| u64::try_from(v).ok()).ok_or_else(|| bad("bad sparse real size"))?;
        let mut ext = h[482] != 0;
        while ext {
            let mut b = [0u8; BLOCK];
            if !self.read_block(&mut b, false)? {
                return Err(TarError::Truncated);
            }
            for i in 0..21 {
                push(&mut map, &b[i * 24..(i + 1) * 24])?;
            }
            ext = b[504] != 0;
        }
        Ok((map, real))
    }

    /// The map at the start of a pax 1.0 sparse file's data; the data that follows is the
    /// segments.
    fn sparse_map_v1(&mut self) -> Result<Vec<(u64, u64)>, TarError> {
        let bad = || TarError::Corrupt { name: String::new(), what: "bad sparse map".into() };
        let mut block = Vec::new();
        let mut pos = 0;
        let next_num = |this: &mut Self, block: &mut Vec<u8>, pos: &mut usize| -> Result<u64, TarError> {
            loop {
                if let Some(i) = block[*pos..].iter().position(|&b| b == b'\n') {
                    let s = std::str::from_utf8(&block[*pos..*pos + i]).map_err(|_| bad())?;
                    *pos += i + 1;
                    return s.parse().map_err(|_| bad());
                }
                if this.left < BLOCK as u64 || block.len() > 64 * BLOCK * 1024 {
                    return Err(bad());
                }
                let mut b = [0u8; BLOCK];
                if !this.read_block(&mut b, false)? {
                    return Err(TarError::Truncated);
                }
                this.left -= BLOCK as u64;
                block.extend_from_slice(&b);
            }
        };
        let n = next_num(self, &mut block, &mut pos)?;
        if n > MAX_SPARSE as u64 {
            return Err(bad());
        }
        let mut map = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let off = next_num(self, &mut block, &mut pos)?;
            let len = next_num(self, &mut block, &mut pos)?;
            map.push((off, len));
        }
        Ok(map)
    }

    /// Reads one block; false at a clean end of stream (when `eof_ok`).
    fn read_block(&mut self, b: &mut [u8; BLOCK], eof_ok: bool) -> Result<bool, TarError> {
        let mut n = 0;
        while n < BLOCK {
            match self.r.read(&mut b[n..]) {
                Ok(0) if n == 0 && eof_ok => return Ok(false),
                Ok(0) => return Err(TarError::Truncated),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        Ok(true)
    }

    fn read_meta(&mut self, len: u64) -> Result<Vec<u8>, TarError> {
        let mut data = vec![0u8; len as usize];
        let mut n = 0;
        while n < data.len() {
            match self.r.read(&mut data[n..]) {
                Ok(0) => return Err(TarError::Truncated),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        self.skip(pad_of(len))?;
        Ok(data)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        if n > 0 && self.scratch.is_empty() {
            self.scratch = vec![0u8; 64 * 1024];
        }
        while n > 0 {
            let want = n.min(self.scratch.len() as u64) as usize;
            match self.r.read(&mut self.scratch[..want]) {
                Ok(0) => return Err(TarError::Truncated),
                Ok(k) => n -= k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        Ok(())
    }
}

/// The current entry's data as an `io::Read`.
pub struct Data<'a, R>(pub &'a mut Reader<R>);

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| match e {
            TarError::Read(e) => e,
            TarError::Truncated => io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string()),
            e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        })
    }
}

/// The current entry's contents as an `io::Read`: for a sparse file, its segments with the
/// holes between them read as zeros, up to its full size.
pub struct Contents<'a, R> {
    tr: &'a mut Reader<R>,
    /// (offset, length) of the segments; a plain file is one segment.
    map: Vec<(u64, u64)>,
    next: usize,
    pos: u64,
    size: u64,
}

impl<'a, R: Read> Contents<'a, R> {
    pub fn new(tr: &'a mut Reader<R>, e: &Entry) -> Contents<'a, R> {
        let map = e.sparse.clone().unwrap_or_else(|| vec![(0, e.size)]);
        Contents { tr, map, next: 0, pos: 0, size: e.size }
    }
}

impl<R: Read> Read for Contents<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(&(off, len)) = self.map.get(self.next) {
            if self.pos < off {
                // In the hole before this segment.
                let n = buf.len().min((off - self.pos).min(usize::MAX as u64) as usize);
                buf[..n].fill(0);
                self.pos += n as u64;
                return Ok(n);
            }
            if self.pos < off + len {
                let want = buf.len().min((off + len - self.pos).min(usize::MAX as u64) as usize);
                let n = Data(&mut *self.tr).read(&mut buf[..want])?;
                if n == 0 && want > 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, TarError::Truncated.to_string()));
                }
                self.pos += n as u64;
                return Ok(n);
            }
            self.next += 1;
        }
        // The hole after the last segment.
        let n = buf.len().min(self.size.saturating_sub(self.pos).min(usize::MAX as u64) as usize);
        buf[..n].fill(0);
        self.pos += n as u64;
        Ok(n)
    }
}

fn read_err(e: io::Error) -> TarError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        TarError::Truncated
    } else {
        TarError::Read(e)
    }
}

/// Gives an error made without the entry's name that name.
fn rename(e: TarError, name: &[u8]) -> TarError {
    match e {
        TarError::Corrupt { what, .. } => TarError::Corrupt { name: String::from_utf8_lossy(name).into_owned(), what },
        e => e,
    }
}

fn pad_of(n: u64) -> u64 {
    (BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64
}

fn cut_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// The name a header block gives itself (for error messages).
fn header_name(h: &[u8; BLOCK]) -> Vec<u8> {
    let mut n = Vec::new();
    let prefix = cut_nul(&h[345..500]);
    if &h[257..263] == b"ustar\0" && !prefix.is_empty() {
        n.extend_from_slice(prefix);
        n.push(b'/');
    }
    n.extend_from_slice(cut_nul(&h[..100]));
    n
}

/// The header checksum: the byte sum with the checksum field read as spaces, unsigned (as
/// POSIX says) or signed (as some old writers computed it).
fn check_sum(h: &[u8; BLOCK]) -> Result<(), &'static str> {
    let want = number(&h[148..156]).map_err(|_| "bad header checksum field")?;
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as i64;
        signed += b as i8 as i64;
    }
    if want == unsigned || want == signed {
        Ok(())
    } else {
        Err("header checksum mismatch")
    }
}

/// A numeric header field: octal text (NUL/space terminated, blanks around it ignored) or
/// GNU base-256 (top bit of the first byte set; 0xff starts a negative number).
fn number(f: &[u8]) -> Result<i64, ()> {
    if let Some(&first) = f.first() {
        if first & 0x80 != 0 {
            // Big-endian two's complement below the marker bit.
            let neg = first & 0x40 != 0;
            let mut x: i64 = if neg { (!first & 0x3f) as i64 } else { (first & 0x7f) as i64 };
            for &b in &f[1..] {
                let b = if neg { !b } else { b };
                x = x.checked_mul(256).and_then(|x| x.checked_add(b as i64)).ok_or(())?;
            }
            return Ok(if neg { -x - 1 } else { x });
        }
    }
    let f = cut_nul(f);
    let s = f.iter().position(|&b| b != b' ').map_or(&f[f.len()..], |i| &f[i..]);
    let s = match s.iter().position(|&b| b == b' ') {
        Some(i) => &s[..i],
        None => s,
    };
    if s.is_empty() {
        return Ok(0);
    }
    let mut v: i64 = 0;
    for &b in s {
        if !(b'0'..=b'7').contains(&b) {
            return Err(());
        }
        v = v.checked_mul(8).and_then(|v| v.checked_add((b - b'0') as i64)).ok_or(())?;
    }
    Ok(v)
}

/// A device number field; blank (all NUL or space) reads as 0, as Go's archive/tar does.
fn dev_number(f: &[u8]) -> Result<u32, ()> {
    u32::try_from(number(f)?).map_err(|_| ())
}

/// Parses pax records ("LEN KEY=VALUE\n", LEN counting the whole record) into `out`, in
/// order. Each record is taken by its length, so a value may hold newlines and NULs.
pub fn parse_pax(data: &[u8], out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), &'static str> {
    let mut rest = data;
    while !rest.is_empty() {
        // Some writers pad the header's data with NULs.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest.iter().take(20).position(|&b| b == b' ').ok_or("malformed pax record length")?;
        let digits = &rest[..sp];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err("malformed pax record length");
        }
        let len: usize =
            std::str::from_utf8(digits).ok().and_then(|s| s.parse().ok()).ok_or("malformed pax record length")?;
        if len <= sp + 1 || len > rest.len() {
            return Err("pax record length does not match its data");
        }
        let rec = &rest[sp + 1..len];
        let Some((&b'\n', body)) = rec.split_last() else {
            return Err("pax record length does not match its data");
        };
        let eq = body.iter().position(|&b| b == b'=').ok_or("pax record without '='")?;
        if eq == 0 {
            return Err("pax record with an empty key");
        }
        out.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(())
}

/// A pax time: decimal seconds, optionally negative, with up to nanosecond fraction (more
/// digits are cut, as GNU tar and Go do).
pub fn pax_time(v: &[u8]) -> Option<libc::timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    if sec.is_empty() || !sec.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let sec: i64 = sec.parse().ok()?;
    let mut nsec = 0i64;
    for (i, c) in frac.bytes().take(9).enumerate() {
        nsec += (c - b'0') as i64 * 10i64.pow(8 - i as u32);
    }
    if !neg {
        return Some(libc::timespec { tv_sec: sec, tv_nsec: nsec });
    }
    // -S.F is -(S.F): one second less, and 1-F of it.
    if nsec == 0 {
        Some(libc::timespec { tv_sec: -sec, tv_nsec: 0 })
    } else {
        Some(libc::timespec { tv_sec: -sec - 1, tv_nsec: 1_000_000_000 - nsec })
    }
}

fn set_xattr(xs: &mut Vec<(Vec<u8>, Vec<u8>)>, k: Vec<u8>, v: Vec<u8>) {
    xs.retain(|(n, _)| *n != k);
    xs.push((k, v));
}

fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// GNU sparse records of a pax header.
#[derive(Default)]
struct SparsePax {
    any: bool,
    major: Option<u64>,
    real: Option<u64>,
    name: Option<Vec<u8>>,
    map: Vec<(u64, u64)>,
    /// 0.0: an offset waiting for its numbytes.
    offset: Option<u64>,
}

impl SparsePax {
    fn record(&mut self, k: &[u8], v: &[u8]) -> Result<(), &'static str> {
        let num = || -> Result<u64, &'static str> {
            std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or("bad GNU.sparse record")
        };
        match k {
            b"major" => {
                self.major = Some(num()?);
                self.any = true;
            }
            b"minor" | b"numblocks" => {}
            b"name" => self.name = Some(v.to_vec()),
            b"size" | b"realsize" => {
                self.real = Some(num()?);
                self.any = true;
            }
            b"offset" => self.offset = Some(num()?),
            b"numbytes" => {
                let off = self.offset.take().ok_or("GNU.sparse.numbytes without an offset")?;
                if self.map.len() >= MAX_SPARSE {
                    return Err("too many sparse segments");
                }
                self.map.push((off, num()?));
                self.any = true;
            }
            b"map" => {
                let s = std::str::from_utf8(v).map_err(|_| "bad GNU.sparse.map")?;
                let nums: Vec<u64> = if s.is_empty() {
                    Vec::new()
                } else {
                    s.split(',').map(|n| n.parse().map_err(|_| "bad GNU.sparse.map")).collect::<Result<_, _>>()?
                };
                if !nums.len().is_multiple_of(2) || nums.len() / 2 > MAX_SPARSE {
                    return Err("bad GNU.sparse.map");
                }
                self.map = nums.chunks(2).map(|c| (c[0], c[1])).collect();
                self.any = true;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
