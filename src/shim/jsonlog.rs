//! Container logs in docker's json-file format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-23T14:00:00.123456789Z"}`.
//!
//! The writer (in the shim) splits output at '\n' and flushes partial lines at 16 KiB (such an
//! entry's "log" has no trailing newline); strings are escaped as docker does (Go's encoder:
//! `<`, `>`, `&`, U+2028/U+2029 and control characters as \uXXXX, invalid UTF-8 as U+FFFD).
//! The reader (`logs`) prints entries back, with tail / since / timestamps / follow.

use super::ShimError;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest "log" text of one entry: longer runs without a newline are split.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 UTC with nanoseconds: "2026-11-23T14:00:00.123456789Z" (30 bytes).
pub fn format_time(secs: i64, nanos: u32) -> [u8; 30] {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(mo));
    put(8, 2, u64::from(d));
    put(11, 2, (sod / 3600) as u64);
    put(14, 2, (sod / 60 % 60) as u64);
    put(17, 2, (sod % 60) as u64);
    put(20, 9, u64::from(nanos.min(999_999_999)));
    b
}

/// The current time as `format_time` text.
pub fn now_rfc3339() -> String {
    let (s, n) = super::sys::now();
    String::from_utf8_lossy(&format_time(s, n)).into_owned()
}

/// Parses RFC 3339 ("2026-11-23T14:00:00Z", fractions and ±hh:mm offsets allowed).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = i64::from((h1 - b'0') * 10 + (h2 - b'0')) * 3600 + i64::from((m1 - b'0') * 10 + (m2 - b'0')) * 60;
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos as u32))
}

/// Parses docker's --since / --until values: RFC 3339, a unix timestamp ("1700000000.5"), or a
/// duration before `now` ("10m", "1h30m", "45s", "500ms").
pub fn parse_since(s: &str, now: SystemTime) -> Option<SystemTime> {
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    if s.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        && s.bytes().filter(|&c| c == b'.').count() <= 1
        && !s.is_empty()
    {
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: u64 = whole.parse().ok()?;
        let mut nanos: u32 = 0;
        for (k, c) in frac.bytes().take(9).enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - k as u32);
        }
        return Some(UNIX_EPOCH + Duration::new(secs, nanos));
    }
    let d = parse_go_duration(s).filter(|d| !d.is_zero())?;
    now.checked_sub(d)
}

/// Go's durations: a sequence of <number><unit> (10s, 1.5h, 1h30m, 500ms).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += v * mult;
    }
    Duration::try_from_secs_f64(total).ok()
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Appends `s` to `out` as the inside of a JSON string, escaped as Go's encoder does.
pub fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in s.utf8_chunks() {
        let v = chunk.valid().as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < v.len() {
            let b = v[i];
            let (esc, len): (&[u8], usize) = match b {
                b'"' => (b"\\\"", 1),
                b'\\' => (b"\\\\", 1),
                b'\n' => (b"\\n", 1),
                b'\r' => (b"\\r", 1),
                b'\t' => (b"\\t", 1),
                b'<' => (b"\\u003c", 1),
                b'>' => (b"\\u003e", 1),
                b'&' => (b"\\u0026", 1),
                0..=0x1f => (&[], 1),
                0xE2 if v.get(i + 1) == Some(&0x80) && matches!(v.get(i + 2), Some(0xA8 | 0xA9)) => {
                    (if v[i + 2] == 0xA8 { b"\\u2028" } else { b"\\u2029" }, 3)
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(&v[start..i]);
            if esc.is_empty() {
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            } else {
                out.extend_from_slice(esc);
            }
            i += len;
            start = i;
        }
        out.extend_from_slice(&v[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
}

/// Appends one json-file entry (with its newline) to `out`; `attrs` is the pre-encoded
/// `"attrs":{...}` member (labels, tag), or empty.
pub fn push_entry(out: &mut Vec<u8>, text: &[u8], stream: LogStream, time: &[u8; 30], attrs: &[u8]) {
    out.extend_from_slice(b"{\"log\":\"");
    escape_into(out, text);
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(attrs);
    out.extend_from_slice(b"\"time\":\"");
    out.extend_from_slice(time);
    out.extend_from_slice(b"\"}\n");
}

/// How the container's output is kept: docker's `--log-driver` and `--log-opt`s.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogConfig {
    /// json-file, local (json-file entries with docker's `local` rotation defaults) or none.
    pub driver: String,
    /// Rotate when the file would grow past this many bytes (0: never).
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_file: u32,
    /// Gzip rotated files (`container.log.1.gz`).
    pub compress: bool,
    /// `attrs` of every entry (the labels asked for, the tag).
    pub attrs: std::collections::BTreeMap<String, String>,
    /// The syslog driver's server: every line is also sent there.
    #[serde(default)]
    pub syslog: Option<super::syslog::SyslogTarget>,
    /// No file is written (`none`, syslog with `cache-disabled=true`).
    #[serde(default)]
    pub no_file: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            driver: "json-file".into(),
            max_size: 0,
            max_file: 1,
            compress: false,
            attrs: Default::default(),
            syslog: None,
            no_file: false,
        }
    }
}

/// Path of rotated file `i` (1 = the newest), compressed or not.
pub fn rotated_path(path: &Path, i: u32, gz: bool) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{i}{}", if gz { ".gz" } else { "" }));
    s.into()
}

/// Line splitter and json-file writer, one per shim. Buffers only partial lines.
pub struct LogWriter {
    file: Option<File>,
    partial: [Vec<u8>; 2],
    enc: Encoder,
    path: std::path::PathBuf,
    cfg: LogConfig,
    size: u64,
}

/// A line cut into pieces (docker's partial messages): the id, first piece's time and the
/// next piece's number, per stream.
#[derive(Default)]
struct Pieces {
    id: String,
    time: (i64, u32),
    next: i32,
}

/// Turns lines into entries of the configured format, appended to `out`.
struct Encoder {
    out: Vec<u8>,
    local: bool,
    /// The pre-encoded `"attrs":{...},` member of json-file entries, or empty.
    attrs: Vec<u8>,
    pieces: [Pieces; 2],
    /// The syslog driver's connection: each line is sent as one message.
    syslog: Option<super::syslog::Sender>,
}

/// 64 hex digits of randomness (docker's id of a partial line).
fn random_id() -> String {
    let mut b = [0u8; 32];
    // SAFETY: getrandom into a live 32-byte buffer; a short read only weakens the id.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Encoder {
    /// One entry of `stream` for `text`: a whole line (ending in '\n'), or a piece of one
    /// (`more`: the line goes on in the next entry).
    fn emit(&mut self, stream: LogStream, text: &[u8], more: bool, now: (i64, u32)) {
        let k = stream as usize;
        if let Some(s) = self.syslog.as_mut() {
            s.send(stream == LogStream::Stderr, text.strip_suffix(b"\n").unwrap_or(text), now);
        }
        if !self.local {
            push_entry(&mut self.out, text, stream, &format_time(now.0, now.1), &self.attrs);
            return;
        }
        let line = text.strip_suffix(b"\n").unwrap_or(text);
        let p = &mut self.pieces[k];
        let (meta, time) = if more {
            if p.next == 0 {
                *p = Pieces { id: random_id(), time: now, next: 1 };
            }
            let m = super::locallog::PartialMeta { last: false, id: p.id.clone(), ordinal: p.next };
            p.next += 1;
            (Some(m), p.time)
        } else if p.next > 0 {
            let m = super::locallog::PartialMeta { last: true, id: std::mem::take(&mut p.id), ordinal: p.next };
            let t = p.time;
            *p = Pieces::default();
            (Some(m), t)
        } else {
            (None, now)
        };
        let e = super::locallog::Entry {
            source: stream.as_str().to_string(),
            time_nano: time.0.saturating_mul(1_000_000_000).saturating_add(time.1 as i64),
            line: line.to_vec(),
            partial: meta.is_some(),
            partial_meta: meta,
        };
        super::locallog::push_entry(&mut self.out, &e);
    }
}

impl LogWriter {
    pub fn open(path: &Path, cfg: &LogConfig) -> io::Result<LogWriter> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut attrs = Vec::new();
        if !cfg.attrs.is_empty() && cfg.driver == "json-file" {
            attrs.extend_from_slice(b"\"attrs\":");
            attrs.extend_from_slice(&serde_json::to_vec(&cfg.attrs).unwrap_or_default());
            attrs.push(b',');
        }
        // The syslog driver connects first: the start fails when the server cannot be reached.
        let syslog = match &cfg.syslog {
            Some(t) => Some(super::syslog::Sender::connect(t)?),
            None => None,
        };
        let file = if cfg.driver == "none" || cfg.no_file {
            None
        } else {
            Some(std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)?)
        };
        let size = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            file,
            partial: [Vec::new(), Vec::new()],
            // syslog keeps docker's local cache (dual logging) in the local format.
            enc: Encoder {
                out: Vec::new(),
                local: cfg.driver != "json-file",
                attrs,
                pieces: Default::default(),
                syslog,
            },
            path: path.to_path_buf(),
            cfg: cfg.clone(),
            size,
        })
    }

    /// A writer that keeps entries in memory (tests).
    #[cfg(test)]
    fn memory(local: bool) -> LogWriter {
        LogWriter {
            file: None,
            partial: [Vec::new(), Vec::new()],
            enc: Encoder { out: Vec::new(), local, attrs: Vec::new(), pieces: Default::default(), syslog: None },
            path: Default::default(),
            cfg: LogConfig::default(),
            size: 0,
        }
    }

    /// Shifts the rotated files up by one (dropping the oldest) and starts a new file; with
    /// max-file 1 the file is emptied.
    fn rotate(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        let n = self.cfg.max_file.max(1);
        if n > 1 {
            let _ = std::fs::remove_file(rotated_path(&self.path, n - 1, false));
            let _ = std::fs::remove_file(rotated_path(&self.path, n - 1, true));
            for i in (1..n - 1).rev() {
                for gz in [false, true] {
                    let _ = std::fs::rename(rotated_path(&self.path, i, gz), rotated_path(&self.path, i + 1, gz));
                }
            }
            let first = rotated_path(&self.path, 1, false);
            let _ = std::fs::rename(&self.path, &first);
            if self.cfg.compress {
                if let Ok(data) = std::fs::read(&first) {
                    let gz = rotated_path(&self.path, 1, true);
                    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    if enc.write_all(&data).is_ok() {
                        if let Ok(z) = enc.finish() {
                            if std::fs::write(&gz, z).is_ok() {
                                let _ = std::fs::remove_file(&first);
                            }
                        }
                    }
                }
            }
        }
        self.file =
            std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o640).open(&self.path).ok();
        self.size = 0;
    }

    /// Logs output of `stream`: every complete line, and runs of MAX_LINE bytes.
    pub fn write(&mut self, stream: LogStream, mut data: &[u8]) {
        let now = super::sys::now();
        let k = stream as usize;
        while !data.is_empty() {
            let room = MAX_LINE - self.partial[k].len();
            let (take, complete, more) = match data.iter().take(room).position(|&c| c == b'\n') {
                Some(i) => (i + 1, true, false),
                None if data.len() >= room => (room, true, true),
                None => (data.len(), false, false),
            };
            let (chunk, rest) = data.split_at(take);
            data = rest;
            if !complete {
                self.partial[k].extend_from_slice(chunk);
                break;
            }
            if self.partial[k].is_empty() {
                self.enc.emit(stream, chunk, more, now);
            } else {
                self.partial[k].extend_from_slice(chunk);
                self.enc.emit(stream, &self.partial[k], more, now);
                self.partial[k].clear();
            }
            // With a size limit each entry is written on its own, so that the file rotates
            // before the entry that would take it over the limit (as docker's writer), however
            // many lines one read of the container's output brought.
            if self.cfg.max_size > 0 {
                self.flush_out();
            }
        }
        self.flush_out();
    }

    /// Writes what is buffered of partial lines (end of the container's output).
    pub fn finish(&mut self) {
        let now = super::sys::now();
        for (k, stream) in [(0, LogStream::Stdout), (1, LogStream::Stderr)] {
            if !self.partial[k].is_empty() {
                // docker's local driver keeps an unfinished last line as a piece (not the last).
                let line = std::mem::take(&mut self.partial[k]);
                self.enc.emit(stream, &line, true, now);
            }
        }
        self.flush_out();
    }

    fn flush_out(&mut self) {
        if self.enc.out.is_empty() {
            return;
        }
        if self.cfg.driver == "none" || self.cfg.no_file {
            self.enc.out.clear();
            return;
        }
        let max = self.cfg.max_size;
        if max > 0 && self.size > 0 && self.size + self.enc.out.len() as u64 > max {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            // A full disk loses log lines, never the container.
            let _ = f.write_all(&self.enc.out);
            self.size += self.enc.out.len() as u64;
            self.enc.out.clear();
            if self.enc.out.capacity() > 4 * MAX_LINE {
                self.enc.out.shrink_to(MAX_LINE);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

#[derive(serde::Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// How a log file is written: json-file lines, or docker's `local` frames (see `locallog`).
/// Told apart by the first byte: a json-file entry starts with '{', a local frame with its
/// length's high byte (0: entries are at most 16 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Local,
}

fn format_of(first: u8) -> Format {
    if first == b'{' {
        Format::Json
    } else {
        Format::Local
    }
}

/// The format of the file at `f` (json-file when it is empty).
fn file_format(f: &File) -> Format {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 1];
    match f.read_at(&mut b, 0) {
        Ok(1) => format_of(b[0]),
        _ => Format::Json,
    }
}

/// Offset where the last `n` lines of json-file `f` start.
fn tail_offset(f: &mut File, n: usize) -> io::Result<u64> {
    let len = f.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = len;
    let mut seen = 0;
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let want = (pos - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..want])?;
        for i in (0..want).rev() {
            if buf[i] == b'\n' {
                seen += 1;
                // The file's final newline ends the last line; n+1 newlines back is the start.
                if seen == n + 1 {
                    return Ok(start + i as u64 + 1);
                }
            }
        }
        pos = start;
    }
    Ok(0)
}

/// The whole records of `data` (json-file lines with their newline, or local frames).
fn records(data: &[u8], fmt: Format) -> Vec<&[u8]> {
    match fmt {
        Format::Json => data.split_inclusive(|&c| c == b'\n').filter(|l| l.len() > 1 && l.ends_with(b"\n")).collect(),
        Format::Local => {
            let mut v = Vec::new();
            let mut pos = 0;
            while let Ok(Some((_, n))) = super::locallog::next_entry(&data[pos..]) {
                v.push(&data[pos..pos + n]);
                pos += n;
            }
            v
        }
    }
}

/// One entry as `logs` prints it.
struct Line<'a> {
    stream: LogStream,
    time: Option<SystemTime>,
    /// The time as printed by `--timestamps`.
    stamp: std::borrow::Cow<'a, [u8]>,
    text: std::borrow::Cow<'a, [u8]>,
}

/// The next entry of `pending` from `start`: (entry, bytes taken); None when it holds no
/// whole entry. An entry that does not parse is taken with no line.
#[allow(clippy::type_complexity)]
fn next_line(pending: &[u8], fmt: Format) -> Option<(Option<Line<'_>>, usize)> {
    match fmt {
        Format::Json => {
            let i = pending.iter().position(|&c| c == b'\n')?;
            let Ok(e) = serde_json::from_slice::<Entry>(&pending[..i]) else { return Some((None, i + 1)) };
            let stream = if e.stream == "stderr" { LogStream::Stderr } else { LogStream::Stdout };
            let time = parse_rfc3339(&e.time);
            let l = Line { stream, time, stamp: e.time.into_bytes().into(), text: e.log.into_bytes().into() };
            Some((Some(l), i + 1))
        }
        Format::Local => match super::locallog::next_entry(pending) {
            Ok(None) => None,
            // A corrupt frame: the rest cannot be framed again.
            Err(_) => Some((None, pending.len())),
            Ok(Some((e, n))) => {
                let stream = if e.source == "stderr" { LogStream::Stderr } else { LogStream::Stdout };
                let (s, ns) = (e.time_nano.div_euclid(1_000_000_000), e.time_nano.rem_euclid(1_000_000_000) as u32);
                let time = u64::try_from(s).ok().map(|s| UNIX_EPOCH + Duration::new(s, ns));
                let mut text = e.line;
                // docker's reader gives back the newline of whole lines only: a long line's
                // pieces, its last included, are printed as they are (as `docker logs` does).
                if !e.partial {
                    text.push(b'\n');
                }
                Some((Some(Line { stream, time, stamp: format_time(s, ns).to_vec().into(), text: text.into() }), n))
            }
        },
    }
}

/// Prints the complete entries in `pending` (and drops them); false when the sink failed.
fn print_lines(
    pending: &mut Vec<u8>,
    fmt: Format,
    (since, until): (Option<SystemTime>, Option<SystemTime>),
    timestamps: bool,
    line_out: &mut Vec<u8>,
    out: &mut LogSink<'_>,
) -> bool {
    let mut start = 0;
    while let Some((line, n)) = next_line(&pending[start..], fmt) {
        start += n;
        let Some(e) = line else { continue };
        if let Some(s) = since {
            if e.time.is_some_and(|t| t < s) {
                continue;
            }
        }
        if let Some(u) = until {
            if e.time.is_some_and(|t| t > u) {
                continue;
            }
        }
        line_out.clear();
        if timestamps {
            line_out.extend_from_slice(&e.stamp);
            line_out.push(b' ');
        }
        line_out.extend_from_slice(&e.text);
        if out(e.stream, line_out).is_err() {
            return false;
        }
    }
    pending.drain(..start);
    true
}

/// The sink of `logs`: gets each entry's stream and bytes (with the timestamp prefix if
/// asked). An error (e.g. a closed pipe) ends `logs` quietly.
pub type LogSink<'a> = dyn FnMut(LogStream, &[u8]) -> io::Result<()> + 'a;

/// Prints the entries of a json-file or local log. `tail`: only the last N entries; `window`:
/// only entries at or after its start and not after its end; `timestamps`: prefix each with its time and a space;
/// `follow`: keep printing new entries until the shim that writes the log (whose state is in
/// the log's directory) has exited, or until the reader behind `reader` (the client's socket,
/// or the pipe or terminal the entries are printed to) hangs up: that is watched while the log
/// is silent, so a reader that leaves ends a follow at once, not at the next entry.
pub fn logs(
    log_path: &Path,
    follow: bool,
    tail: Option<usize>,
    window: (Option<SystemTime>, Option<SystemTime>),
    timestamps: bool,
    reader: Option<BorrowedFd<'_>>,
    out: &mut LogSink<'_>,
) -> Result<(), ShimError> {
    let state_dir = log_path.parent().unwrap_or(Path::new("."));
    let mut f = match File::open(log_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !follow => return Ok(()),
        Err(e) => return Err(ShimError::io("open log", log_path, e)),
    };
    let mut fmt = file_format(&f);
    let mut pos = match (tail, fmt) {
        (Some(n), Format::Json) => tail_offset(&mut f, n).map_err(|e| ShimError::io("read log", log_path, e))?,
        (Some(n), Format::Local) => {
            use std::os::unix::fs::FileExt;
            let len = f.metadata().map_err(|e| ShimError::io("read log", log_path, e))?.len();
            super::locallog::tail_offset(len, n, &mut |o, b| f.read_exact_at(b, o))
                .map_err(|e| ShimError::io("read log", log_path, e))?
        }
        (None, _) => 0,
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut line_out: Vec<u8> = Vec::new();
    // Rotated files (oldest first) come before the current one: as many of their last
    // entries as the tail still wants.
    if pos == 0 {
        let mut want = tail.map(|n| {
            let cur = std::fs::read(log_path).map(|d| records(&d, fmt).len()).unwrap_or(0);
            n.saturating_sub(cur)
        });
        let mut older: Vec<(Format, Vec<u8>)> = Vec::new();
        for i in 1.. {
            let plain = rotated_path(log_path, i, false);
            let gz = rotated_path(log_path, i, true);
            let data = if let Ok(d) = std::fs::read(&plain) {
                d
            } else if let Ok(z) = std::fs::read(&gz) {
                let mut d = Vec::new();
                let _ = flate2::read::GzDecoder::new(&z[..]).read_to_end(&mut d);
                d
            } else {
                break;
            };
            if want == Some(0) {
                break;
            }
            let Some(&first) = data.first() else { continue };
            let rfmt = format_of(first);
            let recs = records(&data, rfmt);
            let keep = match want.as_mut() {
                Some(w) => {
                    let k = (*w).min(recs.len());
                    *w -= k;
                    k
                }
                None => recs.len(),
            };
            older.push((rfmt, recs[recs.len() - keep..].concat()));
        }
        for (rfmt, mut b) in older.into_iter().rev() {
            if !print_lines(&mut b, rfmt, window, timestamps, &mut line_out, out) {
                return Ok(());
            }
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_round = false;
    loop {
        f.seek(SeekFrom::Start(pos)).map_err(|e| ShimError::io("read log", log_path, e))?;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ShimError::io("read log", log_path, e)),
            };
            if pos == 0 {
                // An empty file when opened: its format is known from its first byte.
                fmt = format_of(buf[0]);
            }
            pos += n as u64;
            pending.extend_from_slice(&buf[..n]);
            if !print_lines(&mut pending, fmt, window, timestamps, &mut line_out, out) {
                return Ok(());
            }
        }
        if !follow || last_round {
            return Ok(());
        }
        // The writer is done when its shim has exited (or died): read once more, then stop.
        match super::read_state(state_dir) {
            Ok(st) if st.status != super::Status::Exited && super::shim_alive(&st) => {
                if reader_left(reader, Duration::from_millis(100)) {
                    return Ok(());
                }
            }
            _ => last_round = true,
        }
    }
}

/// Waits `d`, or less when the reader behind `fd` hangs up or fails (a socket closed or
/// half-closed by its peer, a pipe whose reading end is closed, a terminal hung up): true then.
fn reader_left(fd: Option<BorrowedFd<'_>>, d: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let Some(fd) = fd else {
        std::thread::sleep(d);
        return false;
    };
    let end = std::time::Instant::now() + d;
    let mut p = [libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 }];
    let gone = libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP | libc::POLLNVAL;
    if super::sys::poll(&mut p, d.as_millis() as i32) > 0 && p[0].revents & gone != 0 {
        return true;
    }
    // Woken for something else: the rest of the wait still passes.
    std::thread::sleep(end.saturating_duration_since(std::time::Instant::now()));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_lines_in_one_read_rotate_per_entry() {
        let d = std::env::temp_dir().join(format!("berth-jsonlog-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("container.log");
        let cfg = LogConfig { max_size: 400, max_file: 3, ..LogConfig::default() };
        let mut w = LogWriter::open(&path, &cfg).unwrap();
        // 20 lines of 40 bytes arrive in one read: about 2.5 kB of entries for 400-byte files.
        let chunk: Vec<u8> = (0..20).flat_map(|i| format!("line-{i:02}-{}\n", "x".repeat(31)).into_bytes()).collect();
        w.write(LogStream::Stdout, &chunk);
        w.finish();
        for p in [path.clone(), rotated_path(&path, 1, false), rotated_path(&path, 2, false)] {
            let n = std::fs::metadata(&p).map(|m| m.len()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(n > 0 && n <= 400, "{}: {n} bytes", p.display());
        }
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.contains("line-19-"), "{last}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_reader_that_leaves_ends_the_wait() {
        use std::os::fd::AsFd;
        let (r, w) = std::io::pipe().unwrap();
        let t = std::time::Instant::now();
        assert!(!reader_left(Some(w.as_fd()), Duration::from_millis(50)), "the reader is still there");
        assert!(t.elapsed() >= Duration::from_millis(50), "the whole wait passes");
        drop(r);
        let t = std::time::Instant::now();
        assert!(reader_left(Some(w.as_fd()), Duration::from_secs(5)), "the pipe's reader closed");
        assert!(t.elapsed() < Duration::from_secs(1), "at once, not after the wait");
        assert!(!reader_left(None, Duration::from_millis(1)));
    }

    #[test]
    fn time_round_trip() {
        assert_eq!(&format_time(0, 0), b"1970-01-01T00:00:00.000000000Z");
        // 2026-11-23T14:00:00Z
        let t = 1_795_442_400;
        assert_eq!(&format_time(t, 123_456_789), b"2026-11-23T14:00:00.123456789Z");
        assert_eq!(&format_time(951_782_400, 5), b"2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            parse_rfc3339("2026-11-23T14:00:00.123456789Z"),
            Some(UNIX_EPOCH + Duration::new(t as u64, 123_456_789))
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T15:30:00.5+01:30"),
            Some(UNIX_EPOCH + Duration::new(t as u64, 500_000_000))
        );
        assert_eq!(parse_rfc3339("2026-11-23T14:00:00Z"), Some(UNIX_EPOCH + Duration::from_secs(t as u64)));
        for bad in [
            "",
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "2026-11-23T14:00:00",
            "2026-11-23T14:00:00.Z",
            "x026-11-23T14:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for days in [-800_000i64, -1, 0, 59, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn since_values() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(parse_since("10m", now), Some(UNIX_EPOCH + Duration::from_secs(9_400)));
        assert_eq!(parse_since("1h2s", now), Some(UNIX_EPOCH + Duration::from_secs(6_398)));
        assert_eq!(parse_since("1700000000.25", now), Some(UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000)));
        assert_eq!(parse_since("1970-01-01T00:00:05Z", now), Some(UNIX_EPOCH + Duration::from_secs(5)));
        assert_eq!(parse_since("soon", now), None);
        assert_eq!(parse_since("5x", now), None);
    }

    #[test]
    fn escaping_matches_go() {
        let mut o = Vec::new();
        escape_into(&mut o, "a\"b\\c\n\t\r<>&\u{1}é\u{2028}€".as_bytes());
        assert_eq!(String::from_utf8(o).unwrap(), r#"a\"b\\c\n\t\r\u003c\u003e\u0026\u0001é\u2028€"#);
        let mut o = Vec::new();
        escape_into(&mut o, b"ok\xffok\xe2\x82");
        assert_eq!(String::from_utf8(o).unwrap(), r"ok\ufffdok\ufffd");
        let mut o = Vec::new();
        push_entry(&mut o, b"hi\n", LogStream::Stderr, b"2026-11-23T14:00:00.123456789Z", b"");
        assert_eq!(
            &o[..],
            &b"{\"log\":\"hi\\n\",\"stream\":\"stderr\",\"time\":\"2026-11-23T14:00:00.123456789Z\"}\n"[..]
        );
        let v: serde_json::Value = serde_json::from_slice(&o).unwrap();
        assert_eq!(v["log"], "hi\n");
    }

    fn entries(w: &LogWriter) -> Vec<(String, String)> {
        String::from_utf8_lossy(&w.enc.out)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["stream"].as_str().unwrap().to_string(), v["log"].as_str().unwrap().to_string())
            })
            .collect()
    }

    #[test]
    fn writer_splits_lines() {
        let mut w = LogWriter::memory(false);
        w.write(LogStream::Stdout, b"one\ntw");
        w.write(LogStream::Stderr, b"err\n");
        w.write(LogStream::Stdout, b"o\nthree");
        w.finish();
        assert_eq!(
            entries(&w),
            vec![
                ("stdout".into(), "one\n".into()),
                ("stderr".into(), "err\n".into()),
                ("stdout".into(), "two\n".into()),
                ("stdout".into(), "three".into())
            ]
        );
        let mut w = LogWriter::memory(false);
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        w.write(LogStream::Stdout, &big[..100]);
        w.write(LogStream::Stdout, &big[100..]);
        w.write(LogStream::Stdout, b"\n");
        let e = entries(&w);
        assert_eq!(e.iter().map(|(_, l)| l.len()).collect::<Vec<_>>(), vec![MAX_LINE, MAX_LINE, 11]);
    }

    #[test]
    fn reader_tail_since_timestamps() {
        let d = std::env::temp_dir().join(format!("berth-jsonlog-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("container.log");
        let mut o = Vec::new();
        for (i, t) in [1_000i64, 2_000, 3_000].iter().enumerate() {
            let s = if i == 1 { LogStream::Stderr } else { LogStream::Stdout };
            push_entry(&mut o, format!("l{i}\n").as_bytes(), s, &format_time(*t, 0), b"");
        }
        o.extend_from_slice(b"not json\n");
        std::fs::write(&p, &o).unwrap();
        let run = |tail, since, ts| {
            let mut got = Vec::new();
            logs(&p, false, tail, (since, None), ts, None, &mut |s: LogStream, b: &[u8]| {
                got.push(format!("{}:{}", s.as_str(), String::from_utf8_lossy(b)));
                Ok(())
            })
            .unwrap();
            got
        };
        assert_eq!(run(None, None, false), vec!["stdout:l0\n", "stderr:l1\n", "stdout:l2\n"]);
        assert_eq!(run(Some(2), None, false), vec!["stdout:l2\n"]); // the bad line counts
        assert_eq!(run(Some(0), None, false), Vec::<String>::new());
        assert_eq!(run(Some(10), None, false).len(), 3);
        assert_eq!(run(None, Some(UNIX_EPOCH + Duration::from_secs(2_000)), false), vec!["stderr:l1\n", "stdout:l2\n"]);
        assert_eq!(run(Some(2), None, true), vec!["stdout:1970-01-01T00:50:00.000000000Z l2\n"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn local_writer_pieces_and_reader() {
        use super::super::locallog;
        let mut w = LogWriter::memory(true);
        w.write(LogStream::Stdout, b"one\n\n");
        w.write(LogStream::Stderr, b"err\n");
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        w.write(LogStream::Stdout, &big);
        w.write(LogStream::Stdout, b"\nend");
        w.finish();
        let e = locallog::entries(&w.enc.out);
        type Seen<'a> = (&'a str, usize, bool, Option<(bool, i32)>);
        let got: Vec<Seen> = e
            .iter()
            .map(|e| (e.source.as_str(), e.line.len(), e.partial, e.partial_meta.as_ref().map(|m| (m.last, m.ordinal))))
            .collect();
        assert_eq!(
            got,
            vec![
                ("stdout", 3, false, None),
                ("stdout", 0, false, None),
                ("stderr", 3, false, None),
                ("stdout", MAX_LINE, true, Some((false, 1))),
                ("stdout", MAX_LINE, true, Some((false, 2))),
                ("stdout", 10, true, Some((true, 3))),
                ("stdout", 3, true, Some((false, 1))),
            ]
        );
        // The pieces share one id (64 hex digits) and the first piece's time.
        let id = &e[3].partial_meta.as_ref().unwrap().id;
        assert_eq!(id.len(), 64);
        assert!(e[4..6].iter().all(|x| &x.partial_meta.as_ref().unwrap().id == id && x.time_nano == e[3].time_nano));
        assert!(e[0].time_nano > 1_700_000_000_000_000_000);

        let d = std::env::temp_dir().join(format!("berth-locallog-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("container.log");
        let mut o = Vec::new();
        for (i, t) in [1_000i64, 2_000, 3_000].iter().enumerate() {
            let source = if i == 1 { "stderr" } else { "stdout" };
            let line = format!("l{i}").into_bytes();
            locallog::push_entry(
                &mut o,
                &locallog::Entry { source: source.into(), time_nano: t * 1_000_000_000, line, ..Default::default() },
            );
        }
        std::fs::write(&p, &o).unwrap();
        // An older rotated file, gzipped.
        let mut old = Vec::new();
        locallog::push_entry(
            &mut old,
            &locallog::Entry {
                source: "stdout".into(),
                time_nano: 500_000_000_000,
                line: b"old".to_vec(),
                ..Default::default()
            },
        );
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&old).unwrap();
        std::fs::write(rotated_path(&p, 1, true), z.finish().unwrap()).unwrap();
        let run = |tail, window, ts| {
            let mut got = Vec::new();
            logs(&p, false, tail, window, ts, None, &mut |s: LogStream, b: &[u8]| {
                got.push(format!("{}:{}", s.as_str(), String::from_utf8_lossy(b)));
                Ok(())
            })
            .unwrap();
            got
        };
        let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(run(None, (None, None), false), vec!["stdout:old\n", "stdout:l0\n", "stderr:l1\n", "stdout:l2\n"]);
        assert_eq!(run(Some(2), (None, None), false), vec!["stderr:l1\n", "stdout:l2\n"]);
        assert_eq!(run(Some(4), (None, None), false).len(), 4);
        assert_eq!(run(Some(0), (None, None), false), Vec::<String>::new());
        assert_eq!(run(None, (at(2_000), None), false), vec!["stderr:l1\n", "stdout:l2\n"]);
        assert_eq!(run(None, (None, at(2_000)), false), vec!["stdout:old\n", "stdout:l0\n", "stderr:l1\n"]);
        assert_eq!(run(Some(1), (None, None), true), vec!["stdout:1970-01-01T00:50:00.000000000Z l2\n"]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
