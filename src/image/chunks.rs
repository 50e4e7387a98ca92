//! A bounded in-process byte pipe between two threads, in chunks: the writer fills a
//! buffer and hands it over whole, the reader lends it out through `BufRead` and sends it
//! back for reuse, so no allocation happens per chunk once the pipe is primed.
//!
//! The stream ends only when the writer says so (`finish`); a writer that fails (`fail`)
//! or is dropped unfinished makes the reader's next read fail instead of seeing an end, so
//! a reader never mistakes a cut stream for a complete one. A reader that goes away makes
//! the writer's writes fail with `BrokenPipe`.

use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

enum Msg {
    Data(Vec<u8>),
    End,
    Fail(io::ErrorKind, String),
}

/// A pipe holding at most `depth` full chunks of `chunk` bytes in flight.
pub fn channel(depth: usize, chunk: usize) -> (ChunkWriter, ChunkReader) {
    let (tx, rx) = mpsc::sync_channel(depth.max(1));
    let (free_tx, free_rx) = mpsc::channel();
    let chunk = chunk.max(1);
    (
        ChunkWriter { tx, free: free_rx, cur: Vec::new(), fill: 0, chunk, done: false },
        ChunkReader { rx, free: free_tx, cur: Vec::new(), pos: 0, state: State::Open },
    )
}

pub struct ChunkWriter {
    tx: SyncSender<Msg>,
    free: Receiver<Vec<u8>>,
    /// The chunk being filled: `chunk` bytes long once in use, `fill` of them filled.
    cur: Vec<u8>,
    fill: usize,
    chunk: usize,
    done: bool,
}

/// Why `ChunkWriter::fill_from` stopped.
#[derive(Debug)]
pub enum FillError {
    /// The source failed.
    Source(io::Error),
    /// The reader is gone.
    Closed,
}

impl ChunkWriter {
    fn buffer(&mut self) {
        if self.cur.is_empty() {
            self.cur = self.free.try_recv().unwrap_or_default();
            // Returned chunks keep their bytes: only a short tail (or a new chunk) is zeroed.
            self.cur.resize(self.chunk, 0);
            self.fill = 0;
        }
    }

    fn send(&mut self, m: Msg) -> io::Result<()> {
        self.tx.send(m).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "chunk reader is gone"))
    }

    fn send_cur(&mut self) -> io::Result<()> {
        if self.fill == 0 {
            return Ok(());
        }
        let mut full = std::mem::take(&mut self.cur);
        full.truncate(self.fill);
        self.fill = 0;
        self.send(Msg::Data(full))
    }

    /// One read of `src` straight into the chunk being filled (handed over once full);
    /// returns the bytes read, 0 at the source's end.
    pub fn fill_from<R: Read + ?Sized>(&mut self, src: &mut R) -> Result<usize, FillError> {
        self.buffer();
        let n = loop {
            match src.read(&mut self.cur[self.fill..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FillError::Source(e)),
            }
        };
        self.fill += n;
        if self.fill == self.cur.len() {
            self.send_cur().map_err(|_| FillError::Closed)?;
        }
        Ok(n)
    }

    /// Sends what is buffered and the end of the stream.
    pub fn finish(mut self) -> io::Result<()> {
        self.done = true;
        self.send_cur()?;
        self.send(Msg::End)
    }

    /// Ends the stream with an error: the reader's next read (after the data sent so far
    /// and before what is still buffered here) fails with `kind` and `msg`.
    pub fn fail(mut self, kind: io::ErrorKind, msg: String) {
        self.done = true;
        let _ = self.send(Msg::Fail(kind, msg));
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            self.buffer();
            let k = (self.cur.len() - self.fill).min(buf.len());
            self.cur[self.fill..self.fill + k].copy_from_slice(&buf[..k]);
            self.fill += k;
            buf = &buf[k..];
            if self.fill == self.cur.len() {
                self.send_cur()?;
            }
        }
        Ok(n)
    }

    /// Hands over a partly filled chunk.
    fn flush(&mut self) -> io::Result<()> {
        self.send_cur()
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.tx.send(Msg::Fail(io::ErrorKind::UnexpectedEof, "stream abandoned by its writer".into()));
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum State {
    Open,
    Ended,
    Failed(io::ErrorKind, String),
}

pub struct ChunkReader {
    rx: Receiver<Msg>,
    free: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    state: State,
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.cur.len() {
            match &self.state {
                State::Ended => return Ok(&[]),
                State::Failed(k, m) => return Err(io::Error::new(*k, m.clone())),
                State::Open => {}
            }
            let msg = self
                .rx
                .recv()
                .unwrap_or(Msg::Fail(io::ErrorKind::UnexpectedEof, "stream abandoned by its writer".into()));
            match msg {
                Msg::Data(v) => {
                    let old = std::mem::replace(&mut self.cur, v);
                    self.pos = 0;
                    if !old.is_empty() {
                        let _ = self.free.send(old);
                    }
                }
                Msg::End => self.state = State::Ended,
                Msg::Fail(k, m) => self.state = State::Failed(k, m),
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.cur.len());
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_chunks() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut w, mut r) = channel(2, 4096);
        let d2 = data.clone();
        let t = std::thread::spawn(move || {
            for part in d2.chunks(777) {
                w.write_all(part).unwrap();
            }
            w.finish().unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got, data);
        // After the end, reads keep returning 0.
        assert_eq!(r.read(&mut [0u8; 8]).unwrap(), 0);
    }

    #[test]
    fn failures_reach_the_reader() {
        let (mut w, mut r) = channel(4, 16);
        w.write_all(b"0123456789abcdef-rest").unwrap();
        w.fail(io::ErrorKind::InvalidData, "blob sha256:x: digest mismatch".into());
        let mut got = Vec::new();
        let e = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "blob sha256:x: digest mismatch");
        // The full chunk was delivered; the unsent tail was not.
        assert_eq!(got, b"0123456789abcdef");

        // A writer dropped without finish: an error, not an end.
        let (mut w, mut r) = channel(4, 16);
        w.write_all(b"abc").unwrap();
        w.flush().unwrap();
        drop(w);
        let mut got = Vec::new();
        assert_eq!(r.read_to_end(&mut got).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(got, b"abc");
    }

    #[test]
    fn fill_from_a_reader() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let (mut w, mut r) = channel(2, 1000);
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).map(|_| got)
        });
        let mut src = &data[..];
        while w.fill_from(&mut src).unwrap() > 0 {}
        w.finish().unwrap();
        assert_eq!(t.join().unwrap().unwrap(), data);
    }

    #[test]
    fn writer_sees_a_gone_reader() {
        let (mut w, r) = channel(1, 4);
        drop(r);
        assert_eq!(w.write_all(b"12345678").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
