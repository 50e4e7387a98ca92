use super::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::atomic::{AtomicU32, Ordering};

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = PathBuf::from(format!(
            "/tmp/berth-unpack-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn hdr(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

/// A builder over a Vec with helpers for each entry type.
struct T(tar::Builder<Vec<u8>>);
impl T {
    fn new() -> T {
        T(tar::Builder::new(Vec::new()))
    }
    fn dir(&mut self, p: &str, mode: u32) -> &mut Self {
        let mut h = hdr(tar::EntryType::Directory, mode, 0, 0, 1_000_000);
        self.0.append_data(&mut h, p, io::empty()).unwrap();
        self
    }
    fn file(&mut self, p: &str, data: &[u8]) -> &mut Self {
        self.file_full(p, data, 0o644, 0, 0, 1_000_000)
    }
    fn file_full(&mut self, p: &str, data: &[u8], mode: u32, uid: u64, gid: u64, mtime: u64) -> &mut Self {
        let mut h = hdr(tar::EntryType::Regular, mode, uid, gid, mtime);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, p, data).unwrap();
        self
    }
    fn symlink(&mut self, p: &str, target: &str) -> &mut Self {
        let mut h = hdr(tar::EntryType::Symlink, 0o777, 0, 0, 1_000_000);
        self.0.append_link(&mut h, p, target).unwrap();
        self
    }
    fn hardlink(&mut self, p: &str, target: &str) -> &mut Self {
        let mut h = hdr(tar::EntryType::Link, 0o644, 0, 0, 1_000_000);
        self.0.append_link(&mut h, p, target).unwrap();
        self
    }
    fn pax(&mut self, recs: &[(&str, &[u8])]) -> &mut Self {
        self.0.append_pax_extensions(recs.iter().map(|(k, v)| (*k, *v))).unwrap();
        self
    }
    /// An entry whose name (and link name) go into the header unchecked.
    fn raw(&mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> &mut Self {
        let mut h = hdr(kind, 0o644, 0, 0, 1_000_000);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn done(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

fn unpack(tar: &[u8], dest: &Path, mode: WhiteoutMode) -> Result<UnpackStats, UnpackError> {
    unpack_layer(tar, dest, mode)
}

fn lstat(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

fn xattr(p: &Path, key: &str) -> Option<Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let k = CString::new(key).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: test helper; valid C strings and buffer.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn every_entry_type_with_metadata() {
    let d = TempDir::new("types");
    let long = format!("deep/{}/file", "n".repeat(150));
    let longlink = format!("/{}", "t".repeat(150));
    let mut t = T::new();
    t.dir("./", 0o755)
        .dir("etc", 0o750)
        .file_full("etc/data", b"hello", 0o640, 1000, 2000, 1_234_567)
        .file_full("bin/su", b"#!", 0o4755, 1000, 1000, 1_000_000) // parent bin/ made implicitly
        .file_full("bin/sg", b"#!", 0o2755, 0, 50, 1_000_000)
        .dir("tmp", 0o1777);
    t.pax(&[("SCHILY.xattr.user.foo", b"bar"), ("uid", b"3000000"), ("gid", b"3000001"), ("mtime", b"1600000000.5")]);
    t.file_full("etc/x", b"x", 0o600, 0, 0, 1);
    // xattrs on a symlink: trusted.* is set on the link itself, user.* (refused by the
    // kernel on symlinks) is skipped.
    t.pax(&[("SCHILY.xattr.trusted.t", b"v"), ("SCHILY.xattr.user.u", b"v")]);
    let mut h = hdr(tar::EntryType::Symlink, 0o777, 1001, 1002, 1_111_111);
    t.0.append_link(&mut h, "etc/link", "data").unwrap();
    t.hardlink("etc/hard", "etc/data");
    let mut h = hdr(tar::EntryType::Char, 0o666, 0, 0, 1_000_000);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    t.0.append_data(&mut h, "dev/null", io::empty()).unwrap();
    let mut h = hdr(tar::EntryType::Block, 0o660, 0, 6, 1_000_000);
    h.set_device_major(7).unwrap();
    h.set_device_minor(0).unwrap();
    t.0.append_data(&mut h, "dev/loop0", io::empty()).unwrap();
    let mut h = hdr(tar::EntryType::Fifo, 0o620, 5, 5, 1_000_000);
    t.0.append_data(&mut h, "run/fifo", io::empty()).unwrap();
    t.file(&long, b"long"); // GNU long name
    t.symlink("longlink", &longlink); // GNU long link name
    t.file("etc/after", b"late"); // written into etc after its times were read
    let tar = t.done();

    let st = unpack(&tar, &d.0, WhiteoutMode::Overlay).unwrap();
    assert_eq!(st.entries, 15);
    assert_eq!(st.bytes, tar.len() as u64);

    let m = lstat(&d.p("etc/data"));
    assert!(m.is_file());
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()), (0o640, 1000, 2000, 1_234_567));
    assert_eq!(fs::read(d.p("etc/data")).unwrap(), b"hello");
    let m = lstat(&d.p("bin/su"));
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o4755, 1000), "setuid survives chown");
    assert_eq!(lstat(&d.p("bin/sg")).mode() & 0o7777, 0o2755);
    let m = lstat(&d.p("bin"));
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o755, 0), "implicit parent");
    assert_eq!(lstat(&d.p("tmp")).mode() & 0o7777, 0o1777);
    assert_eq!(lstat(&d.p("etc")).mode() & 0o7777, 0o750);
    assert_eq!(lstat(&d.p("etc")).mtime(), 1_000_000, "dir mtime set after its contents");
    assert_eq!(lstat(&d.0).mtime(), 1_000_000, "root entry applies to dest");
    let m = lstat(&d.p("etc/x"));
    assert_eq!((m.uid(), m.gid(), m.mtime(), m.mtime_nsec()), (3000000, 3000001, 1600000000, 500_000_000));
    assert_eq!(xattr(&d.p("etc/x"), "user.foo").as_deref(), Some(&b"bar"[..]));
    let m = lstat(&d.p("etc/link"));
    assert!(m.file_type().is_symlink());
    assert_eq!((m.uid(), m.gid(), m.mtime()), (1001, 1002, 1_111_111));
    assert_eq!(fs::read_link(d.p("etc/link")).unwrap(), Path::new("data"));
    assert_eq!(xattr(&d.p("etc/link"), "trusted.t").as_deref(), Some(&b"v"[..]));
    assert_eq!(xattr(&d.p("etc/data"), "trusted.t"), None);
    assert_eq!(lstat(&d.p("etc/hard")).ino(), lstat(&d.p("etc/data")).ino());
    let m = lstat(&d.p("dev/null"));
    assert!(m.file_type().is_char_device());
    assert_eq!((m.rdev(), m.mode() & 0o7777), (libc::makedev(1, 3), 0o666));
    let m = lstat(&d.p("dev/loop0"));
    assert!(m.file_type().is_block_device());
    assert_eq!((m.rdev(), m.gid()), (libc::makedev(7, 0), 6));
    let m = lstat(&d.p("run/fifo"));
    assert!(m.file_type().is_fifo());
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o620, 5));
    assert_eq!(fs::read(d.p(&long)).unwrap(), b"long");
    assert_eq!(fs::read_link(d.p("longlink")).unwrap(), Path::new(&longlink));
}

#[test]
fn compression_detected_and_diff_id_covers_padding() {
    let mut tar = T::new().file("a", &vec![7u8; 100_000]).dir("d", 0o755).done();
    // Trailing padding after the end-of-archive blocks, as GNU tar writes (10 KiB records).
    tar.extend_from_slice(&[0u8; 9 * 1024]);
    let want = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (what, data) in [("plain", &tar), ("gzip", &gz), ("zstd", &zst)] {
        let d = TempDir::new(what);
        let st = unpack(data, &d.0, WhiteoutMode::Overlay).unwrap();
        assert_eq!(st.diff_id, want, "{what}");
        assert_eq!(st.bytes, tar.len() as u64, "{what}");
        assert_eq!(st.entries, 2);
        assert_eq!(fs::read(d.p("a")).unwrap(), vec![7u8; 100_000], "{what}");
    }
    // Via a file, too.
    let d = TempDir::new("file");
    let f = d.p("layer.tar.gz");
    fs::write(&f, &gz).unwrap();
    let out = d.p("out");
    fs::create_dir(&out).unwrap();
    assert_eq!(unpack_layer(fs::File::open(&f).unwrap(), &out, WhiteoutMode::Apply).unwrap().diff_id, want);
    // Empty layer.
    let st = unpack(b"", &out, WhiteoutMode::Apply).unwrap();
    assert_eq!((st.entries, st.bytes, st.diff_id), (0, 0, Digest::of(b"")));
}

#[test]
fn overlay_whiteouts() {
    let d = TempDir::new("ovl");
    let mut t = T::new();
    t.pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc"), ("SCHILY.xattr.trusted.overlay.opaque", b"y")]);
    t.dir("r", 0o755);
    let tar = t
        .dir("d", 0o755)
        .file("d/keep", b"k")
        .file("d/.wh..wh..opq", b"")
        .file(".wh.gone", b"")
        .file("x/.wh.y", b"")
        .done();
    unpack(&tar, &d.0, WhiteoutMode::Overlay).unwrap();
    for p in ["gone", "x/y"] {
        let m = lstat(&d.p(p));
        assert!(m.file_type().is_char_device(), "{p}");
        assert_eq!((m.rdev(), m.mode() & 0o7777, m.uid(), m.gid()), (0, 0, 0, 0));
    }
    assert_eq!(xattr(&d.p("d"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert!(d.p("d/keep").exists());
    assert_eq!(xattr(&d.p("r"), "trusted.overlay.redirect"), None, "overlay xattrs from the tar are dropped");
    assert_eq!(xattr(&d.p("r"), "trusted.overlay.opaque"), None);
    assert!(!d.p("d/.wh..wh..opq").exists());
    assert!(!d.p(".wh.gone").exists());
}

#[test]
fn apply_whiteouts_and_opaque_keep_this_layer() {
    let d = TempDir::new("apply");
    let lower = T::new()
        .file("a/lower1", b"1")
        .file("a/sub/lower2", b"2")
        .file("a/kept-dir-lower/z", b"z")
        .file("b/file", b"b")
        .dir("c", 0o755)
        .file("c/deep", b"c")
        .file("e", b"e")
        .done();
    unpack(&lower, &d.0, WhiteoutMode::Apply).unwrap();
    let layer = T::new()
        .file("a/new", b"n") // before the marker: must survive it
        .dir("a/kept-dir-lower", 0o700)
        .file("a/kept-dir-lower/mine", b"m")
        .file("a/.wh..wh..opq", b"")
        .file("a/new2", b"n2")
        .file(".wh.c", b"")
        .file("b/.wh.file", b"")
        .file("nothere/.wh.x", b"")
        .file(".wh.missing", b"")
        .done();
    unpack(&layer, &d.0, WhiteoutMode::Apply).unwrap();
    assert!(d.p("a/new").exists() && d.p("a/new2").exists());
    assert!(d.p("a/kept-dir-lower/mine").exists());
    assert!(!d.p("a/kept-dir-lower/z").exists(), "lower content of a dir re-made in the layer goes too");
    assert!(!d.p("a/lower1").exists() && !d.p("a/sub").exists());
    assert!(!d.p("c").exists() && !d.p("b/file").exists() && d.p("b").is_dir());
    assert!(d.p("e").exists());
    assert!(!d.p("nothere").exists(), "a whiteout makes no parents");
    assert!(!d.p("a/.wh..wh..opq").exists());
}

#[test]
fn apply_replaces_entries() {
    let d = TempDir::new("replace");
    unpack(
        &T::new()
            .file("f2d", b"x")
            .dir("d2f", 0o755)
            .file("d2f/inner", b"i")
            .dir("keep", 0o755)
            .file("keep/old", b"o")
            .symlink("s", "/etc")
            .done(),
        &d.0,
        WhiteoutMode::Apply,
    )
    .unwrap();
    let layer = T::new()
        .dir("f2d", 0o700)
        .file("d2f", b"now a file")
        .dir("keep", 0o711)
        .file("s", b"file replaces symlink")
        .done();
    unpack(&layer, &d.0, WhiteoutMode::Apply).unwrap();
    assert!(d.p("f2d").is_dir());
    assert_eq!(fs::read(d.p("d2f")).unwrap(), b"now a file");
    assert!(d.p("keep/old").exists(), "existing dir kept");
    assert_eq!(lstat(&d.p("keep")).mode() & 0o7777, 0o711);
    assert!(lstat(&d.p("s")).is_file());
    // The same name twice in one layer: the last wins.
    let d = TempDir::new("dup");
    unpack(&T::new().file("x", b"1").file("x", b"2").done(), &d.0, WhiteoutMode::Overlay).unwrap();
    assert_eq!(fs::read(d.p("x")).unwrap(), b"2");
}

#[test]
fn names_leaving_the_layer_are_refused() {
    let top = TempDir::new("escape");
    let d = top.p("root");
    fs::create_dir(&d).unwrap();
    for name in ["../x", "a/../../x", "a/../b"] {
        let tar = T::new().raw(tar::EntryType::Regular, name, "", b"pwned").done();
        let e = unpack(&tar, &d, WhiteoutMode::Apply).unwrap_err();
        assert_eq!(e.to_string(), format!("layer entry {name:?}: leaves the layer"));
    }
    assert!(!top.p("x").exists());
    let tar = T::new().raw(tar::EntryType::Regular, ".wh...", "", b"").done();
    assert!(unpack(&tar, &d, WhiteoutMode::Apply).is_err());
    // An absolute name is taken relative to the layer root.
    let tar = T::new().raw(tar::EntryType::Regular, "/etc/abs", "", b"in").done();
    unpack(&tar, &d, WhiteoutMode::Apply).unwrap();
    assert_eq!(fs::read(d.join("etc/abs")).unwrap(), b"in");
}

#[test]
fn symlinks_cannot_carry_writes_outside() {
    let top = TempDir::new("symesc");
    let outside = top.p("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(top.p("victim"), b"orig").unwrap();
    let d = top.p("root");
    fs::create_dir(&d).unwrap();
    let out = outside.to_str().unwrap().to_string();
    // Absolute symlink to a real outside dir, then a file through it: no such dir in the
    // layer's root, so refused.
    let tar = T::new().symlink("evil", &out).file("evil/pwn", b"x").done();
    let e = unpack(&tar, &d, WhiteoutMode::Overlay).unwrap_err();
    assert!(e.to_string().starts_with("layer entry \"evil/pwn\": "), "{e}");
    // Relative symlink climbing out: clamped at the root, lands inside.
    let d2 = top.p("root2");
    fs::create_dir(&d2).unwrap();
    let tar = T::new()
        .symlink("up", "../../../../../../..")
        .file("up/pwn", b"x")
        .symlink("abs", "/")
        .file("abs/pwn2", b"y")
        .done();
    unpack(&tar, &d2, WhiteoutMode::Overlay).unwrap();
    assert_eq!(fs::read(d2.join("pwn")).unwrap(), b"x");
    assert_eq!(fs::read(d2.join("pwn2")).unwrap(), b"y");
    // A symlink to an outside file, then a file entry of the same name: replaced, not written through.
    let victim = top.p("victim");
    let tar = T::new().symlink("v", victim.to_str().unwrap()).file("v", b"pwned").done();
    unpack(&tar, &d2, WhiteoutMode::Apply).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"orig");
    assert_eq!(fs::read(d2.join("v")).unwrap(), b"pwned");
    // Hardlink through an escaping symlink, and via a dir symlink + parent dir.
    let tar = T::new().symlink("vl", victim.to_str().unwrap()).hardlink("h", "vl").done();
    unpack(&tar, &d2, WhiteoutMode::Apply).unwrap();
    assert!(lstat(&d2.join("h")).file_type().is_symlink(), "hardlink to a symlink links the symlink");
    assert_eq!(fs::read(&victim).unwrap(), b"orig");
    let walk: Vec<_> = fs::read_dir(&outside).unwrap().collect();
    assert!(walk.is_empty(), "nothing outside");
    assert_eq!(fs::read_dir(top.0.clone()).unwrap().count(), 4);
}

#[test]
fn hardlinks_must_stay_inside() {
    let d = TempDir::new("hard");
    for target in ["/etc/passwd", "../etc/passwd", "etc/../../passwd", "nothere"] {
        let tar = T::new().raw(tar::EntryType::Link, "h", target, b"").done();
        let e = unpack(&tar, &d.0, WhiteoutMode::Apply).unwrap_err();
        assert_eq!(e.to_string(), format!("layer entry \"h\": hardlink target {target:?} is not in the layer"));
    }
    let tar = T::new().symlink("s", "/etc").raw(tar::EntryType::Link, "h", "s/passwd", b"").done();
    assert!(matches!(unpack(&tar, &d.0, WhiteoutMode::Apply), Err(UnpackError::LinkTarget { .. })));
    assert!(!d.p("h").exists());
    // Through an in-layer dir symlink to an in-layer file: fine.
    let tar = T::new().file("real/f", b"f").symlink("s2", "/real").hardlink("h2", "s2/f").done();
    unpack(&tar, &d.0, WhiteoutMode::Apply).unwrap();
    assert_eq!(lstat(&d.p("h2")).ino(), lstat(&d.p("real/f")).ino());
}

#[test]
fn broken_streams() {
    let d = TempDir::new("broken");
    let tar = T::new().file("a", &vec![1u8; 50_000]).done();
    let e = unpack(&tar[..20_000], &d.0, WhiteoutMode::Overlay).unwrap_err();
    assert_eq!(e.to_string(), "layer is truncated in entry \"a\"");
    let e = unpack(&tar[..300], &d.0, WhiteoutMode::Overlay).unwrap_err();
    assert_eq!(e.to_string(), "layer is truncated");
    let mut bad = tar.clone();
    bad[0] ^= 0x55; // header checksum no longer matches
    let e = unpack(&bad, &d.0, WhiteoutMode::Overlay).unwrap_err();
    assert!(e.to_string().starts_with("corrupt layer: "), "{e}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let e = unpack(&gz[..gz.len() - 4], &d.0, WhiteoutMode::Overlay).unwrap_err();
    assert_eq!(e.to_string(), "layer is truncated", "{e:?}");
    let e = unpack(&gz[..gz.len() / 2], &d.0, WhiteoutMode::Overlay).unwrap_err();
    assert!(matches!(e, UnpackError::Truncated | UnpackError::TruncatedIn { .. }), "{e:?}");
    let mut badgz = gz.clone();
    let n = badgz.len();
    badgz[n - 6] ^= 0xff; // crc
    let e = unpack(&badgz, &d.0, WhiteoutMode::Overlay).unwrap_err();
    assert!(e.to_string().starts_with("corrupt layer: "), "{e}");
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let e = unpack(&zst[..zst.len() / 2], &d.0, WhiteoutMode::Overlay).unwrap_err();
    assert!(matches!(e, UnpackError::Truncated | UnpackError::TruncatedIn { .. } | UnpackError::Corrupt(_)), "{e}");
    // The reader's own failure is reported as such.
    struct Fail;
    impl Read for Fail {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
    }
    let e = unpack_layer(Fail, &d.0, WhiteoutMode::Overlay).unwrap_err();
    assert_eq!(e.to_string(), "read layer: Input/output error");
    let e = unpack_layer(&gz[..10], Path::new("/nonexistent/x"), WhiteoutMode::Overlay).unwrap_err();
    assert_eq!(e.to_string(), "open /nonexistent/x: No such file or directory");
}

#[test]
fn errors_name_the_entry() {
    let d = TempDir::new("errs");
    fs::write(d.p("plainfile"), b"").unwrap();
    let tar = T::new().file("plainfile/x", b"").done();
    let e = unpack(&tar, &d.0, WhiteoutMode::Apply).unwrap_err();
    assert_eq!(e.to_string(), "layer entry \"plainfile/x\": open parent directory: Not a directory");
    let tar = T::new().raw(tar::EntryType::new(b'V'), "vol", "", b"").done();
    let e = unpack(&tar, &d.0, WhiteoutMode::Apply).unwrap_err();
    assert_eq!(e.to_string(), "layer entry \"vol\": unsupported entry type");
}

#[test]
fn names_are_normalised() {
    let mut out = Vec::new();
    assert!(normalize(b"/./a//b/", &mut out));
    assert_eq!(out, b"a/b");
    assert!(!normalize(b"a/..", &mut out));
}

#[test]
fn binary_xattrs_and_file_capabilities() {
    let d = TempDir::new("caps");
    // cap_net_raw (bit 13) permitted + effective, v2: magic 0x02000001 little endian.
    let mut cap = vec![0x01, 0x00, 0x00, 0x02];
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&[0; 12]);
    // A value holding a newline, as a capability set can (bit 3 of the second byte: 0x0a).
    let bin: &[u8] = &[0x00, 0xff, 0x7c, 0x0a];
    let mut t = T::new();
    t.pax(&[("SCHILY.xattr.user.bin", bin), ("SCHILY.xattr.security.capability", &cap)]);
    t.file_full("ping", b"\x7fELF", 0o755, 0, 0, 1_000_000);
    t.pax(&[("path", b"dir/with\nnewline")]);
    t.file("placeholder", b"nl");
    let tar = t.done();
    unpack(&tar, &d.0, WhiteoutMode::Overlay).unwrap();
    assert_eq!(xattr(&d.p("ping"), "user.bin").as_deref(), Some(bin));
    assert_eq!(xattr(&d.p("ping"), "security.capability").as_deref(), Some(cap.as_slice()));
    assert_eq!(lstat(&d.p("ping")).mode() & 0o7777, 0o755);
    assert_eq!(fs::read(d.p("dir/with\nnewline")).unwrap(), b"nl");
}

#[test]
fn sparse_files_keep_their_holes() {
    let d = TempDir::new("sparse");
    let mut tar = Vec::new();
    let mut pax = Vec::new();
    for (k, v) in [("GNU.sparse.size", "3000000"), ("GNU.sparse.map", "0,3,2999998,2"), ("GNU.sparse.name", "sp")] {
        let body = format!("{k}={v}\n");
        let n = body.len() + 3;
        pax.extend_from_slice(format!("{n} {body}").as_bytes());
    }
    for (kind, name, data) in [(b'x', "p", pax.as_slice()), (b'0', "GNUSparseFile.0/sp", b"abcde")] {
        let mut h = hdr(tar::EntryType::new(kind), 0o644, 0, 0, 1_000_000);
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0; 1024]);
    unpack(&tar, &d.0, WhiteoutMode::Overlay).unwrap();
    let got = fs::read(d.p("sp")).unwrap();
    assert_eq!(got.len(), 3_000_000);
    assert_eq!((&got[..3], &got[2_999_998..]), (&b"abc"[..], &b"de"[..]));
    assert!(got[3..2_999_998].iter().all(|&b| b == 0));
    assert!(lstat(&d.p("sp")).blocks() < 100, "holes are kept: {} blocks", lstat(&d.p("sp")).blocks());
}
