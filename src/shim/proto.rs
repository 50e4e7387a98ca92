//! The attach socket's framing: each frame is 1 byte type, a u32 big-endian length, then the
//! payload.
//!
//! shim → client: STDOUT / STDERR (output bytes), EXIT (i32 BE exit code; the shim closes after).
//! client → shim: STDIN (bytes; an empty frame is end of input: the container's stdin is closed),
//! RESIZE (u16 rows, u16 cols, BE), SIGNAL (i32 BE signal number), STOP (empty: stop requested,
//! no restart).

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const RESIZE: u8 = 4;
pub const SIGNAL: u8 = 5;
pub const STOP: u8 = 6;

pub const HEADER: usize = 5;
/// Frames larger than this are a protocol error (the peer is dropped).
pub const MAX_FRAME: usize = 1 << 20;

pub fn header(typ: u8, len: usize) -> [u8; HEADER] {
    let l = (len as u32).to_be_bytes();
    [typ, l[0], l[1], l[2], l[3]]
}

/// Appends one frame to `out`.
pub fn push(out: &mut Vec<u8>, typ: u8, payload: &[u8]) {
    out.extend_from_slice(&header(typ, payload.len()));
    out.extend_from_slice(payload);
}

pub fn frame(typ: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    push(&mut v, typ, payload);
    v
}

/// What is at the start of `buf`.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole frame: its type and the payload's range in `buf`.
    Frame(u8, std::ops::Range<usize>),
    /// Need more bytes.
    Partial,
    /// The length is over MAX_FRAME.
    TooBig,
}

pub fn next(buf: &[u8]) -> Next {
    if buf.len() < HEADER {
        return Next::Partial;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Next::TooBig;
    }
    if buf.len() < HEADER + len {
        return Next::Partial;
    }
    Next::Frame(buf[0], HEADER..HEADER + len)
}

pub fn be_i32(p: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut b = frame(STDOUT, b"hello");
        push(&mut b, EXIT, &7i32.to_be_bytes());
        let Next::Frame(t, r) = next(&b) else { panic!() };
        assert_eq!((t, &b[r.clone()]), (STDOUT, &b"hello"[..]));
        let rest = &b[r.end..];
        let Next::Frame(t, r) = next(rest) else { panic!() };
        assert_eq!(t, EXIT);
        assert_eq!(be_i32(&rest[r]), Some(7));
        assert_eq!(next(&b[..3]), Next::Partial);
        assert_eq!(next(&b[..7]), Next::Partial);
        assert_eq!(next(&header(STDIN, MAX_FRAME + 1)), Next::TooBig);
        assert_eq!(next(&header(STDIN, 0)), Next::Frame(STDIN, 5..5));
    }
}
