//! gzip compression on every core, as pigz does: the input is cut into blocks of `BLOCK`
//! bytes, each compressed on its own (raw deflate ending in a sync flush, so the blocks join
//! into one deflate stream), written in order behind one gzip header and followed by an empty
//! final block, the CRC-32 and the length. One gzip member any gzip reader takes; the output
//! depends only on the input and the level, not on the number of threads, so the same layer
//! always compresses to the same digest.

use flate2::{Compress, Compression, Crc, FlushCompress};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{mpsc, Mutex};

/// Bytes compressed by one thread at a time.
const BLOCK: usize = 1 << 20;

/// gzip header: deflate, no flags, no mtime, no extra flags, OS unknown (as Go's writer).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Compresses `src` into `out` at `level` (0-9); returns the bytes read. One thread reads
/// (and sums the CRC), one per core deflates, the caller's writes the blocks in order: reading,
/// compressing and writing (with the hashing a store writer does) overlap.
pub fn compress(src: &mut (impl Read + Send), out: &mut impl Write, level: u32) -> io::Result<u64> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    out.write_all(&HEADER)?;
    let (btx, brx) = mpsc::sync_channel::<(usize, Vec<u8>)>(threads * 2);
    let brx = Mutex::new(brx);
    let crc = std::thread::scope(|s| -> io::Result<Crc> {
        let (otx, orx) = mpsc::sync_channel::<(usize, io::Result<Vec<u8>>)>(threads * 2);
        let reader = s.spawn(move || -> io::Result<Crc> {
            let mut crc = Crc::new();
            for i in 0.. {
                let b = read_block(src)?;
                let last = b.len() < BLOCK;
                if !b.is_empty() {
                    crc.update(&b);
                    if btx.send((i, b)).is_err() {
                        break;
                    }
                }
                if last {
                    break;
                }
            }
            Ok(crc)
        });
        for _ in 0..threads {
            let (otx, brx) = (otx.clone(), &brx);
            s.spawn(move || loop {
                let next = brx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((i, b)) = next else { break };
                if otx.send((i, deflate_block(&b, level))).is_err() {
                    break;
                }
            });
        }
        drop(otx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        let mut err: Option<io::Error> = None;
        // Ends when every deflating thread is done (the reader's channel closed).
        for (i, r) in orx.iter() {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&want) {
                want += 1;
                match r {
                    Ok(o) if err.is_none() => {
                        if let Err(e) = out.write_all(&o) {
                            err = Some(e);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        err.get_or_insert(e);
                    }
                }
            }
        }
        let crc = reader.join().map_err(|_| io::Error::other("the compression reader panicked"))??;
        match err {
            Some(e) => Err(e),
            None => Ok(crc),
        }
    })?;
    // An empty final block closes the deflate stream: 0b011 (BFINAL, fixed Huffman), then
    // the end-of-block code, padded to a byte.
    out.write_all(&[0x03, 0x00])?;
    out.write_all(&crc.sum().to_le_bytes())?;
    out.write_all(&crc.amount().to_le_bytes())?;
    Ok(u64::from(crc.amount()))
}

/// Up to BLOCK bytes; fewer only at the end of the input.
fn read_block(src: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut b = Vec::with_capacity(BLOCK);
    src.take(BLOCK as u64).read_to_end(&mut b)?;
    Ok(b)
}

/// One block as raw deflate ending in a sync flush (byte-aligned, not final).
fn deflate_block(b: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(b.len() + b.len() / 64 + 1024);
    loop {
        let done = usize::try_from(c.total_in()).unwrap_or(b.len()).min(b.len());
        c.compress_vec(&b[done..], &mut out, FlushCompress::Sync).map_err(io::Error::other)?;
        // Finished when all input is in and the flush left room to spare in the buffer.
        if c.total_in() as usize >= b.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(64 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8]) -> Vec<u8> {
        let mut gz = Vec::new();
        assert_eq!(compress(&mut &data[..], &mut gz, 6).unwrap(), data.len() as u64);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        gz
    }

    #[test]
    fn any_gzip_reader_gets_the_input_back() {
        roundtrip(b"");
        roundtrip(b"x");
        let text: Vec<u8> = (0..(BLOCK * 3 + 5)).map(|i| b"layer text "[i % 11]).collect();
        let gz = roundtrip(&text);
        assert!(gz.len() < text.len() / 50, "{} bytes", gz.len());
        // Incompressible data (stored blocks) and an exact multiple of the block size.
        let mut x: u64 = 0x5eed;
        let noise: Vec<u8> = (0..BLOCK * 2)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        roundtrip(&noise);
        // The same input, the same bytes.
        assert_eq!(roundtrip(&text), gz);
    }
}
