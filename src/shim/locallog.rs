//! Container logs in docker's `local` format: each entry is a big-endian uint32 length, the
//! protobuf-marshalled `LogEntry` of docker's logdriver API, then the same length again (so
//! the file can be read backwards for `--tail`):
//!
//! ```text
//! message LogEntry {
//!   string source = 1;                 // "stdout" or "stderr"
//!   int64 time_nano = 2;               // unix nanoseconds
//!   bytes line = 3;                    // the text, without its newline
//!   bool partial = 4;                  // a piece of a line longer than 16 KiB (or unfinished)
//!   PartialLogEntryMetadata partial_log_metadata = 5;
//! }
//! message PartialLogEntryMetadata { bool last = 1; string id = 2; int32 ordinal = 3; }
//! ```
//!
//! Encoded as Go's gogo-protobuf marshals it: fields in number order, proto3 defaults (empty,
//! zero, false, absent) left out. The decoder skips fields it does not know.

/// Bytes of each length prefix and suffix.
pub const LEN_BYTES: usize = 4;

/// Largest entry the reader accepts (docker's decoder refuses bigger ones as corrupt).
pub const MAX_ENTRY: usize = 1 << 24;

/// The pieces of a line longer than docker's 16 KiB buffer share an id; numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartialMeta {
    pub last: bool,
    pub id: String,
    pub ordinal: i32,
}

/// One `LogEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub source: String,
    pub time_nano: i64,
    pub line: Vec<u8>,
    pub partial: bool,
    pub partial_meta: Option<PartialMeta>,
}

/// Why a local log file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocalLogError {
    #[error("local log entry of {0} bytes is larger than {MAX_ENTRY}")]
    TooLarge(usize),
    #[error("local log entry: length suffix {suffix} does not match prefix {prefix}")]
    LengthMismatch { prefix: usize, suffix: usize },
    #[error("local log entry: truncated protobuf field")]
    Truncated,
    #[error("local log entry: bad protobuf wire type {0}")]
    WireType(u8),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn marshal_meta(m: &PartialMeta, out: &mut Vec<u8>) {
    if m.last {
        out.extend_from_slice(&[0x08, 1]);
    }
    if !m.id.is_empty() {
        put_bytes(out, 0x12, m.id.as_bytes());
    }
    if m.ordinal != 0 {
        out.push(0x18);
        // int32 is sign-extended to 64 bits on the wire.
        put_varint(out, m.ordinal as i64 as u64);
    }
}

/// The protobuf bytes of `e` (without the length frame).
pub fn marshal(e: &Entry, out: &mut Vec<u8>) {
    if !e.source.is_empty() {
        put_bytes(out, 0x0a, e.source.as_bytes());
    }
    if e.time_nano != 0 {
        out.push(0x10);
        put_varint(out, e.time_nano as u64);
    }
    if !e.line.is_empty() {
        put_bytes(out, 0x1a, &e.line);
    }
    if e.partial {
        out.extend_from_slice(&[0x20, 1]);
    }
    if let Some(m) = &e.partial_meta {
        let mut inner = Vec::new();
        marshal_meta(m, &mut inner);
        put_bytes(out, 0x2a, &inner);
    }
}

/// Appends `e` framed: length, message, length.
pub fn push_entry(out: &mut Vec<u8>, e: &Entry) {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    marshal(e, out);
    let n = (out.len() - start - LEN_BYTES) as u32;
    out[start..start + LEN_BYTES].copy_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, LocalLogError> {
        let mut v = 0u64;
        for (i, &c) in self.b.iter().enumerate().take(10) {
            v |= ((c & 0x7f) as u64) << (7 * i);
            if c < 0x80 {
                self.b = &self.b[i + 1..];
                return Ok(v);
            }
        }
        Err(LocalLogError::Truncated)
    }

    fn bytes(&mut self) -> Result<&[u8], LocalLogError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| LocalLogError::Truncated)?;
        if n > self.b.len() {
            return Err(LocalLogError::Truncated);
        }
        let (v, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(v)
    }

    /// (field number, wire type) of the next field.
    fn key(&mut self) -> Result<(u64, u8), LocalLogError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn skip(&mut self, wire: u8) -> Result<(), LocalLogError> {
        let n = match wire {
            0 => return self.varint().map(|_| ()),
            1 => 8,
            2 => return self.bytes().map(|_| ()),
            5 => 4,
            w => return Err(LocalLogError::WireType(w)),
        };
        if self.b.len() < n {
            return Err(LocalLogError::Truncated);
        }
        self.b = &self.b[n..];
        Ok(())
    }
}

fn unmarshal_meta(b: &[u8]) -> Result<PartialMeta, LocalLogError> {
    let mut r = Reader { b };
    let mut m = PartialMeta::default();
    while !r.b.is_empty() {
        match r.key()? {
            (1, 0) => m.last = r.varint()? != 0,
            (2, 2) => m.id = String::from_utf8_lossy(r.bytes()?).into_owned(),
            (3, 0) => m.ordinal = r.varint()? as i32,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(m)
}

/// Parses the protobuf bytes of one entry.
pub fn unmarshal(b: &[u8]) -> Result<Entry, LocalLogError> {
    let mut r = Reader { b };
    let mut e = Entry::default();
    while !r.b.is_empty() {
        match r.key()? {
            (1, 2) => e.source = String::from_utf8_lossy(r.bytes()?).into_owned(),
            (2, 0) => e.time_nano = r.varint()? as i64,
            (3, 2) => e.line = r.bytes()?.to_vec(),
            (4, 0) => e.partial = r.varint()? != 0,
            (5, 2) => e.partial_meta = Some(unmarshal_meta(r.bytes()?)?),
            (_, w) => r.skip(w)?,
        }
    }
    Ok(e)
}

/// The first framed entry of `b` and the bytes it took; None while `b` holds only part of it.
pub fn next_entry(b: &[u8]) -> Result<Option<(Entry, usize)>, LocalLogError> {
    let Some(pre) = b.get(..LEN_BYTES) else { return Ok(None) };
    let n = u32::from_be_bytes([pre[0], pre[1], pre[2], pre[3]]) as usize;
    if n > MAX_ENTRY {
        return Err(LocalLogError::TooLarge(n));
    }
    let total = 2 * LEN_BYTES + n;
    let Some(frame) = b.get(..total) else { return Ok(None) };
    let suf = &frame[LEN_BYTES + n..];
    let s = u32::from_be_bytes([suf[0], suf[1], suf[2], suf[3]]) as usize;
    if s != n {
        return Err(LocalLogError::LengthMismatch { prefix: n, suffix: s });
    }
    Ok(Some((unmarshal(&frame[LEN_BYTES..LEN_BYTES + n])?, total)))
}

/// Every whole entry of `b` (a file's contents), in order; a torn or corrupt end is left out.
#[cfg(test)]
pub fn entries(b: &[u8]) -> Vec<Entry> {
    let mut v = Vec::new();
    let mut pos = 0;
    while let Ok(Some((e, n))) = next_entry(&b[pos..]) {
        v.push(e);
        pos += n;
    }
    v
}

/// Offset in a file of `len` bytes where its last `n` entries start, reading the length
/// suffixes backwards with `read_at` (fills the buffer from the offset).
pub fn tail_offset(
    len: u64,
    n: usize,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut pos = len;
    for _ in 0..n {
        if pos < 2 * LEN_BYTES as u64 {
            break;
        }
        let mut b = [0u8; LEN_BYTES];
        read_at(pos - LEN_BYTES as u64, &mut b)?;
        let size = u32::from_be_bytes(b) as u64 + 2 * LEN_BYTES as u64;
        if size > pos {
            break;
        }
        pos -= size;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trip_and_bytes() {
        let e = Entry {
            source: "stdout".into(),
            time_nano: 1_795_442_400_123_456_789,
            line: b"hello".to_vec(),
            partial: false,
            partial_meta: None,
        };
        let mut o = Vec::new();
        push_entry(&mut o, &e);
        // 0a 06 "stdout" 10 <varint 9 bytes> 1a 05 "hello"
        let body_len = 2 + 6 + 1 + 9 + 2 + 5;
        assert_eq!(&o[..4], &(body_len as u32).to_be_bytes());
        assert_eq!(&o[4..12], b"\x0a\x06stdout");
        assert_eq!(o[12], 0x10);
        assert_eq!(&o[o.len() - 11..o.len() - 4], b"\x1a\x05hello");
        assert_eq!(&o[o.len() - 4..], &(body_len as u32).to_be_bytes());
        assert_eq!(next_entry(&o).unwrap(), Some((e.clone(), o.len())));
        // A partial piece with its metadata; an empty line and zero time are left out.
        let p = Entry {
            source: "stderr".into(),
            time_nano: 0,
            line: Vec::new(),
            partial: true,
            partial_meta: Some(PartialMeta { last: true, id: "ab".into(), ordinal: 3 }),
        };
        let mut q = Vec::new();
        marshal(&p, &mut q);
        assert_eq!(q, b"\x0a\x06stderr\x20\x01\x2a\x08\x08\x01\x12\x02ab\x18\x03");
        assert_eq!(unmarshal(&q).unwrap(), p);
        // Negative int32: ten bytes, as Go writes it.
        let mut n = Vec::new();
        marshal_meta(&PartialMeta { last: false, id: String::new(), ordinal: -1 }, &mut n);
        assert_eq!(n.len(), 11);
        assert_eq!(unmarshal_meta(&n).unwrap().ordinal, -1);
        push_entry(&mut o, &p);
        assert_eq!(entries(&o), vec![e.clone(), p.clone()]);
        // Unknown fields are skipped.
        let mut u = vec![0x40, 0x05, 0x4a, 0x01, b'x', 0x55, 1, 2, 3, 4, 0x59, 1, 2, 3, 4, 5, 6, 7, 8];
        marshal(&e, &mut u);
        assert_eq!(unmarshal(&u).unwrap(), e);
    }

    #[test]
    fn partial_frames_and_corruption() {
        let e = Entry { source: "stdout".into(), time_nano: 5, line: b"x".to_vec(), ..Default::default() };
        let mut o = Vec::new();
        push_entry(&mut o, &e);
        for cut in 0..o.len() {
            assert_eq!(next_entry(&o[..cut]).unwrap(), None, "cut at {cut}");
        }
        let mut bad = o.clone();
        let l = bad.len();
        bad[l - 1] ^= 1;
        assert!(matches!(next_entry(&bad), Err(LocalLogError::LengthMismatch { .. })));
        assert_eq!(next_entry(&[0xff, 0, 0, 0]), Err(LocalLogError::TooLarge(0xff00_0000)));
        assert_eq!(unmarshal(b"\x0a\x09std"), Err(LocalLogError::Truncated));
        assert_eq!(unmarshal(b"\x0b"), Err(LocalLogError::WireType(3)));
        let mut two = o.clone();
        two.extend_from_slice(&o);
        two.extend_from_slice(&o[..5]);
        assert_eq!(entries(&two).len(), 2);
    }

    #[test]
    fn tail_walks_back_over_suffixes() {
        let mut o = Vec::new();
        let mut starts = Vec::new();
        for i in 0..5 {
            starts.push(o.len() as u64);
            let line = vec![b'a'; i * 100];
            push_entry(&mut o, &Entry { source: "stdout".into(), time_nano: i as i64 + 1, line, ..Default::default() });
        }
        let mut at = |off: u64, b: &mut [u8]| {
            b.copy_from_slice(&o[off as usize..off as usize + b.len()]);
            Ok(())
        };
        let len = o.len() as u64;
        assert_eq!(tail_offset(len, 0, &mut at).unwrap(), len);
        assert_eq!(tail_offset(len, 2, &mut at).unwrap(), starts[3]);
        assert_eq!(tail_offset(len, 5, &mut at).unwrap(), 0);
        assert_eq!(tail_offset(len, 50, &mut at).unwrap(), 0);
    }
}
