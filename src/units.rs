//! Sizes written the way docker and runc take them (`--memory 512m`, `update --memory 1.5g`):
//! a decimal number, then an optional k, m, g, t or p (powers of 1024) and an optional "b"
//! ("512mb", "1gib" too).

/// Bytes of `s`, or None when it is not a size (negative, not a number, too large).
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|x| !x.is_empty()).unwrap_or(&t);
    let t = t.strip_suffix('i').filter(|x| x.ends_with(|c: char| c.is_ascii_alphabetic())).unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        Some('p') => (&t[..t.len() - 1], 50),
        _ => (t, 0),
    };
    // Digits and at most one point only: no sign, exponent, "inf" or "nan".
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let v = n * (1u64 << shift) as f64;
    (v.is_finite() && v < i64::MAX as f64).then_some(v as i64)
}

#[cfg(test)]
mod tests {
    use super::ram_in_bytes as r;

    #[test]
    fn sizes() {
        assert_eq!(r("512m"), Some(512 << 20));
        assert_eq!(r("1G"), Some(1 << 30));
        assert_eq!(r("1.5k"), Some(1536));
        assert_eq!(r("1000"), Some(1000));
        assert_eq!(r(" 10mb "), Some(10 << 20));
        assert_eq!(r("2gib"), Some(2 << 30));
        assert_eq!(r("1p"), Some(1 << 50));
        for bad in ["", "lots", "-5", "-1", "1e3", "inf", "nan", "m", "b", "1x", "99999999999p", "1..2"] {
            assert_eq!(r(bad), None, "{bad:?}");
        }
    }
}
