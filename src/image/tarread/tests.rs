use super::*;

fn all(data: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while let Some(e) = r.next()? {
        let mut d = Vec::new();
        let mut buf = [0u8; 100];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            d.extend_from_slice(&buf[..n]);
        }
        out.push((e, d));
    }
    Ok(out)
}

fn gnu(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(1_000_000);
    h
}

/// A header block of `kind` whose data is `data`, followed by the data, padded.
fn raw_entry(out: &mut Vec<u8>, kind: u8, name: &str, data: &[u8]) {
    let mut h = gnu(tar::EntryType::new(kind), data.len() as u64);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn rec(k: &str, v: &[u8]) -> Vec<u8> {
    let body = [k.as_bytes(), b"=", v, b"\n"].concat();
    let mut len = body.len() + 2;
    loop {
        let s = format!("{len} ");
        if s.len() + body.len() == len {
            return [s.as_bytes(), &body].concat();
        }
        len = s.len() + body.len();
    }
}

#[test]
fn pax_values_with_any_bytes() {
    let bin: &[u8] = &[0x00, 0xff, 0x7c, 0x0a];
    let cap: &[u8] = &[1, 0, 0, 2, 0x0a, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let long = format!("dir/{}\nnl", "p".repeat(200));
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.user.bin", bin),
        ("SCHILY.xattr.security.capability", cap),
        ("path", long.as_bytes()),
        ("mtime", b"1700000000.25"),
        ("uid", b"70000"),
    ])
    .unwrap();
    let mut h = gnu(tar::EntryType::Regular, 3);
    b.append_data(&mut h, "short", &b"abc"[..]).unwrap();
    let mut h = gnu(tar::EntryType::Regular, 1);
    b.append_data(&mut h, "next", &b"n"[..]).unwrap();
    let data = b.into_inner().unwrap();
    let es = all(&data).unwrap();
    assert_eq!(es.len(), 2);
    let (e, d) = &es[0];
    assert_eq!(e.name, long.as_bytes());
    assert_eq!(d, b"abc");
    assert_eq!(e.kind, Kind::File);
    assert_eq!(e.xattrs, vec![(b"user.bin".to_vec(), bin.to_vec()), (b"security.capability".to_vec(), cap.to_vec())]);
    assert_eq!((e.mtime.tv_sec, e.mtime.tv_nsec, e.uid), (1_700_000_000, 250_000_000, 70000));
    // The records were for that entry only.
    let (e, d) = &es[1];
    assert_eq!((e.name.as_slice(), d.as_slice(), e.xattrs.len(), e.uid), (&b"next"[..], &b"n"[..], 0, 0));
}

#[test]
fn pax_records_are_checked() {
    let mut out = Vec::new();
    assert!(parse_pax(b"12 path=a\nb\n", &mut out).is_ok());
    assert_eq!(out, vec![(b"path".to_vec(), b"a\nb".to_vec())]);
    for bad in [
        &b"13 path=a\nb\n"[..],
        b"11 path=a\nb\n",
        b"99 path=x\n",
        b"x path=a\n",
        b"9 pathab\n",
        b"7 =abc\n",
        b"11 path=abc",
    ] {
        assert!(parse_pax(bad, &mut Vec::new()).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    // In an archive: one line naming the pax header.
    let mut data = Vec::new();
    raw_entry(&mut data, b'x', "PaxHeaders/f", b"30 SCHILY.xattr.user.a=xyz\n");
    raw_entry(&mut data, b'0', "f", b"");
    let e = all(&data).unwrap_err();
    assert_eq!(e.to_string(), "entry \"f\": pax record length does not match its data");
}

#[test]
fn global_pax_applies_to_later_entries() {
    let mut data = Vec::new();
    raw_entry(
        &mut data,
        b'g',
        "global",
        &[rec("uid", b"42"), rec("path", b"ignored"), rec("SCHILY.xattr.user.g", b"1")].concat(),
    );
    raw_entry(&mut data, b'0', "a", b"A");
    raw_entry(&mut data, b'x', "pax", &[rec("uid", b"7"), rec("SCHILY.xattr.user.g", b"2")].concat());
    raw_entry(&mut data, b'0', "b", b"");
    raw_entry(&mut data, b'0', "c", b"");
    data.extend_from_slice(&[0u8; 1024]);
    let es = all(&data).unwrap();
    type Seen = (String, u64, Vec<(Vec<u8>, Vec<u8>)>);
    let got: Vec<Seen> =
        es.iter().map(|(e, _)| (String::from_utf8_lossy(&e.name).into_owned(), e.uid, e.xattrs.clone())).collect();
    let g = |v: &[u8]| vec![(b"user.g".to_vec(), v.to_vec())];
    assert_eq!(got, vec![("a".into(), 42, g(b"1")), ("b".into(), 7, g(b"2")), ("c".into(), 42, g(b"1"))]);
}

#[test]
fn libarchive_xattrs_are_decoded() {
    let mut data = Vec::new();
    raw_entry(&mut data, b'x', "pax", &rec("LIBARCHIVE.xattr.user.a%3Db", b"AP98Cg==").to_vec());
    raw_entry(&mut data, b'0', "f", b"");
    let es = all(&data).unwrap();
    assert_eq!(es[0].0.xattrs, vec![(b"user.a=b".to_vec(), vec![0x00, 0xff, 0x7c, 0x0a])]);
    let mut data = Vec::new();
    raw_entry(&mut data, b'x', "pax", &rec("LIBARCHIVE.xattr.user.a", b"!!").to_vec());
    raw_entry(&mut data, b'0', "f", b"");
    assert_eq!(all(&data).unwrap_err().to_string(), "entry \"f\": bad LIBARCHIVE.xattr record");
}

#[test]
fn numbers_octal_and_base256() {
    assert_eq!(number(b"0000644\0"), Ok(0o644));
    assert_eq!(number(b"  644 \0"), Ok(0o644));
    assert_eq!(number(b"\0\0\0\0"), Ok(0));
    assert_eq!(number(b"        "), Ok(0));
    assert!(number(b"0009\0").is_err());
    let mut f = [0u8; 12];
    f[0] = 0x80;
    f[4..].copy_from_slice(&(1u64 << 40).to_be_bytes());
    assert_eq!(number(&f), Ok(1 << 40));
    assert_eq!(number(&[0xff; 12]), Ok(-1));
    let mut f = [0xffu8; 12];
    f[11] = 0xfe;
    assert_eq!(number(&f), Ok(-2));
    // A header with base-256 size, uid and a negative mtime.
    let mut h = gnu(tar::EntryType::Regular, 0);
    let g = h.as_gnu_mut().unwrap();
    g.size = [0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    g.uid = [0x80, 0, 0, 0, 0, 0, 0x20, 0];
    g.mtime = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x9c];
    h.set_path("big").unwrap();
    h.set_cksum();
    let mut data = h.as_bytes().to_vec();
    data.extend_from_slice(b"12345");
    data.resize(1024, 0);
    let es = all(&data).unwrap();
    assert_eq!((es[0].0.uid, es[0].0.mtime.tv_sec, es[0].1.as_slice()), (0x2000, -100, &b"12345"[..]));
}

#[test]
fn pax_times() {
    let t = |s: &[u8]| pax_time(s).map(|t| (t.tv_sec, t.tv_nsec));
    assert_eq!(t(b"12.000000001"), Some((12, 1)));
    assert_eq!(t(b"12"), Some((12, 0)));
    assert_eq!(t(b"12.1234567899"), Some((12, 123_456_789)));
    assert_eq!(t(b"-1.5"), Some((-2, 500_000_000)));
    assert_eq!(t(b"-3"), Some((-3, 0)));
    assert_eq!(t(b"99999999999"), Some((99_999_999_999, 0)));
    assert_eq!(t(b"1.x"), None);
    assert_eq!(t(b""), None);
}

#[test]
fn gnu_long_names_and_ustar_prefix() {
    let name = format!("a/{}/b", "n".repeat(120));
    let link = format!("/{}", "l".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = gnu(tar::EntryType::Regular, 1);
    b.append_data(&mut h, &name, &b"x"[..]).unwrap();
    let mut h = gnu(tar::EntryType::Symlink, 0);
    b.append_link(&mut h, "l", &link).unwrap();
    let mut u = tar::Header::new_ustar();
    u.set_path(format!("{}/f", "u".repeat(120))).unwrap();
    u.set_entry_type(tar::EntryType::Regular);
    u.set_size(0);
    u.set_cksum();
    b.append(&u, &b""[..]).unwrap();
    let es = all(&b.into_inner().unwrap()).unwrap();
    assert_eq!(es[0].0.name, name.as_bytes());
    assert_eq!((es[1].0.kind, es[1].0.link.as_slice()), (Kind::Symlink, link.as_bytes()));
    assert_eq!(es[2].0.name, format!("{}/f", "u".repeat(120)).as_bytes());
}

#[test]
fn corrupt_and_truncated() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = gnu(tar::EntryType::Regular, 600);
    b.append_data(&mut h, "name-here", &[1u8; 600][..]).unwrap();
    let data = b.into_inner().unwrap();
    let mut bad = data.clone();
    bad[120] ^= 1;
    assert_eq!(all(&bad).unwrap_err().to_string(), "entry \"name-here\": header checksum mismatch");
    for cut in [100, 512, 700, 1024] {
        assert!(matches!(all(&data[..cut]), Err(TarError::Truncated)), "cut at {cut}");
    }
    // A clean end of stream without end blocks is an end.
    assert_eq!(all(&data[..1536]).unwrap().len(), 1);
    // A long name with nothing after it.
    let mut d = Vec::new();
    raw_entry(&mut d, b'L', "././@LongLink", b"x");
    assert!(matches!(all(&d), Err(TarError::Truncated)));
}

#[test]
fn sparse_old_gnu() {
    // 3 segments: two in the header, one in an extension block; 10 bytes of data.
    let mut h = gnu(tar::EntryType::GNUSparse, 10);
    h.set_path("sp").unwrap();
    let g = h.as_gnu_mut().unwrap();
    let oct = |v: u64| {
        let s = format!("{v:011o}\0");
        let mut a = [0u8; 12];
        a.copy_from_slice(s.as_bytes());
        a
    };
    g.sparse[0].offset = oct(0);
    g.sparse[0].numbytes = oct(2);
    g.sparse[1].offset = oct(4096);
    g.sparse[1].numbytes = oct(3);
    g.isextended = [1];
    g.realsize = oct(100_000);
    h.set_cksum();
    let mut data = h.as_bytes().to_vec();
    let mut ext = [0u8; 512];
    ext[..12].copy_from_slice(&oct(99_995));
    ext[12..24].copy_from_slice(&oct(5));
    data.extend_from_slice(&ext);
    data.extend_from_slice(b"aabbbccccc");
    data.resize(data.len().div_ceil(512) * 512 + 1024, 0);
    let es = all(&data).unwrap();
    let (e, d) = &es[0];
    assert_eq!((e.kind, e.size, d.as_slice()), (Kind::File, 100_000, &b"aabbbccccc"[..]));
    assert_eq!(e.sparse.as_deref(), Some(&[(0, 2), (4096, 3), (99_995, 5)][..]));
    // Expanded, holes as zeros.
    let mut r = Reader::new(&data[..]);
    let e = r.next().unwrap().unwrap();
    let mut got = Vec::new();
    io::copy(&mut Contents::new(&mut r, &e), &mut got).unwrap();
    let mut want = vec![0u8; 100_000];
    want[..2].copy_from_slice(b"aa");
    want[4096..4099].copy_from_slice(b"bbb");
    want[99_995..].copy_from_slice(b"ccccc");
    assert!(got == want, "expanded sparse contents differ");
    assert!(r.next().unwrap().is_none());
    // Cut inside a segment: an error, not zeros.
    let mut r = Reader::new(&data[..1024 + 5]);
    let e = r.next().unwrap().unwrap();
    assert!(io::copy(&mut Contents::new(&mut r, &e), &mut io::sink()).is_err());
}

#[test]
fn sparse_pax_versions() {
    // 0.0: offset/numbytes pairs; 0.1: a map; 1.0: the map in the data.
    let mut d = Vec::new();
    let v00 = [
        rec("GNU.sparse.size", b"8192"),
        rec("GNU.sparse.numblocks", b"2"),
        rec("GNU.sparse.offset", b"0"),
        rec("GNU.sparse.numbytes", b"1"),
        rec("GNU.sparse.offset", b"8190"),
        rec("GNU.sparse.numbytes", b"2"),
    ]
    .concat();
    raw_entry(&mut d, b'x', "p0", &v00);
    raw_entry(&mut d, b'0', "s00", b"abc");
    let v01 = [rec("GNU.sparse.size", b"8192"), rec("GNU.sparse.map", b"0,1,8190,2"), rec("GNU.sparse.name", b"s01")]
        .concat();
    raw_entry(&mut d, b'x', "p1", &v01);
    raw_entry(&mut d, b'0', "GNUSparseFile.0/s01", b"abc");
    let v10 = [
        rec("GNU.sparse.major", b"1"),
        rec("GNU.sparse.minor", b"0"),
        rec("GNU.sparse.name", b"s10"),
        rec("GNU.sparse.realsize", b"8192"),
    ]
    .concat();
    raw_entry(&mut d, b'x', "p2", &v10);
    let mut body = b"2\n0\n1\n8190\n2\n".to_vec();
    body.resize(512, 0);
    body.extend_from_slice(b"abc");
    raw_entry(&mut d, b'0', "GNUSparseFile.0/s10", &body);
    d.extend_from_slice(&[0u8; 1024]);
    let es = all(&d).unwrap();
    for ((e, data), name) in es.iter().zip(["s00", "s01", "s10"]) {
        assert_eq!((e.name.as_slice(), e.size, data.as_slice()), (name.as_bytes(), 8192, &b"abc"[..]), "{name}");
        assert_eq!(e.sparse.as_deref(), Some(&[(0, 1), (8190, 2)][..]), "{name}");
    }
    // A map that claims more data than there is.
    let mut d = Vec::new();
    raw_entry(&mut d, b'x', "p", &[rec("GNU.sparse.size", b"10"), rec("GNU.sparse.map", b"0,5")].concat());
    raw_entry(&mut d, b'0', "s", b"abc");
    assert_eq!(all(&d).unwrap_err().to_string(), "entry \"s\": sparse map does not match the data size");
}
