//! Layers as real tar writers make them, pulled from a registry and unpacked by berth, compared
//! file by file with `umoci unpack` of the same image: GNU tar in each of its formats (v7,
//! ustar, gnu, oldgnu, posix with xattrs and each sparse version), Python's tarfile in each of its
//! formats (long and non-UTF-8 names, base-256 and pax numbers, binary xattrs, whiteouts),
//! buildah (layers committed from a container it mounted: file capabilities, hard links,
//! whiteouts) and a private dockerd 20.10 (`docker build` with RUN steps, classic builder and
//! BuildKit, `docker save`: a file capability, hard links, whiteouts, an opaque dir). A file capability restored from a layer is
//! then used by a non-root process.

use crate::common::images::*;
use crate::common::registry::*;
use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A value holding a NUL, a non-UTF-8 byte and a newline.
const BIN_XATTR: [u8; 4] = [0x00, 0xff, 0x7c, 0x0a];

/// A static program that opens a raw IP socket (needs CAP_NET_RAW) and says how it went; with
/// `setcap FILE` it gives FILE the capability cap_net_raw+ep instead (for images built where
/// there is no setcap tool).
fn rawsock(ctx: &Ctx) -> PathBuf {
    let src = ctx.dir.join("rawsock.c");
    fs::write(
        &src,
        r#"#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/xattr.h>
int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "setcap") == 0) {
        /* struct vfs_cap_data, revision 2 with the effective flag; permitted: bit 13 */
        unsigned char cap[20] = {0x01, 0, 0, 0x02, 0, 0x20, 0, 0};
        if (setxattr(argv[2], "security.capability", cap, sizeof cap, 0) != 0) { perror("setxattr"); return 1; }
        return 0;
    }
    int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (s < 0) { printf("raw socket: %s\n", strerror(errno)); return 1; }
    printf("raw socket: ok\n");
    return 0;
}
"#,
    )
    .unwrap();
    let out = ctx.dir.join("rawsock");
    tool(Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&out).arg(&src));
    out
}

fn setxattr(p: &Path, key: &str, val: &[u8]) {
    tool(
        Command::new("python3")
            .args(["-c", "import os,sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), follow_symlinks=False)"])
            .arg(p)
            .arg(key)
            .arg(hex(val)),
    );
}

fn sh(script: &str) {
    tool(Command::new("sh").arg("-ec").arg(script));
}

/// A tree for GNU tar under `dir`. `full` adds what ustar cannot hold: long names and link
/// names, a uid past 2097151, xattrs (binary, and a file capability), a sparse file, a
/// non-UTF-8 name, pre-1970 and sub-second times.
fn source_tree(dir: &Path, full: bool, rawsock: &Path) {
    let d = s(dir);
    sh(&format!(
        "mkdir -p {d}/d/sub {d}/sticky && chmod 750 {d}/d && chmod 1777 {d}/sticky
         printf hello > {d}/f && : > {d}/empty && printf s > {d}/setuid && chmod 4755 {d}/setuid
         printf owned > {d}/owned && chown 1000:1000 {d}/owned && chmod 600 {d}/owned
         printf h > {d}/d/hard && ln {d}/d/hard {d}/h1 && ln {d}/d/hard {d}/d/sub/h2
         ln -s f {d}/sl && ln -s /abs/target {d}/d/abs && mkfifo {d}/fifo && mknod {d}/null c 1 3
         mkdir -p {d}/{p} && printf pfx > {d}/{p}/in-prefix",
        p = format!("{}/{}", "p".repeat(60), "q".repeat(50))
    ));
    if !full {
        return;
    }
    let long = format!("{}/{}/{}", "a".repeat(120), "b".repeat(120), "c".repeat(120));
    sh(&format!(
        "mkdir -p {d}/{long} && printf long > {d}/{long}/file && ln -s {long}/file {d}/longlink
         ln {d}/{long}/file {d}/hard-to-long
         printf big > {d}/biguid && chown 3000000:3000001 {d}/biguid
         truncate -s 5M {d}/sparse && printf start | dd of={d}/sparse conv=notrunc status=none
         printf middle | dd of={d}/sparse bs=1 seek=3000000 conv=notrunc status=none
         printf old > {d}/old && touch -h -d '1960-01-01 00:00:00.25 UTC' {d}/old
         printf sub > {d}/subsec && touch -d '2020-02-02 02:02:02.123456789 UTC' {d}/subsec
         printf latin1 > {d}/caf$(printf '\\351')
         cp {r} {d}/rawsock && setcap cap_net_raw+ep {d}/rawsock",
        r = s(rawsock)
    ));
    setxattr(&dir.join("f"), "user.bin", &BIN_XATTR);
    setxattr(&dir.join("d"), "user.dir", b"on a dir");
}

/// The layers of the tar writers: (GNU tar formats, python tarfile formats).
fn writer_layers(ctx: &Ctx, rawsock: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let gnu: [(&str, bool, &[&str]); 7] = [
        ("v7", false, &["--format=v7"]),
        ("ustar", false, &["--format=ustar"]),
        // GNU sparse entries (type 'S') are refused by umoci: they get a layer of their own.
        ("gnu", true, &["--format=gnu"]),
        ("oldgnu", true, &["--format=oldgnu"]),
        ("posix00", true, &["--format=posix", "--sparse-version=0.0", "--xattrs", "--xattrs-include=*"]),
        ("posix01", true, &["--format=posix", "--sparse-version=0.1", "--xattrs", "--xattrs-include=*"]),
        ("posix10", true, &["--format=posix", "--sparse-version=1.0", "--xattrs", "--xattrs-include=*"]),
    ];
    for (name, full, args) in gnu {
        let src = ctx.tempdir("src");
        let top = src.join(format!("gnutar-{name}"));
        fs::create_dir(&top).unwrap();
        source_tree(&top, full, rawsock);
        if name == "v7" {
            // No fifos, devices or names past 99 bytes in v7.
            fs::remove_file(top.join("fifo")).unwrap();
            fs::remove_file(top.join("null")).unwrap();
            fs::remove_dir_all(top.join("p".repeat(60))).unwrap();
        }
        let tarp = ctx.dir.join(format!("gnutar-{name}.tar"));
        tool(
            Command::new("tar")
                .args(["--numeric-owner", "--sort=name"])
                .args(args)
                .arg("-C")
                .arg(&src)
                .arg("-cf")
                .arg(&tarp)
                .arg(format!("gnutar-{name}")),
        );
        out.push(tarp);
    }
    for (name, fmt) in [("ustar", "USTAR_FORMAT"), ("gnu", "GNU_FORMAT"), ("pax", "PAX_FORMAT")] {
        let tarp = ctx.dir.join(format!("py-{name}.tar"));
        tool(Command::new("python3").arg("-c").arg(PY_LAYER).arg(&tarp).arg(fmt).arg(format!("py-{name}")));
        out.push(tarp);
    }
    // Whiteouts and an opaque dir over the python layers (pax, as Go's writers make them).
    let wh = ctx.dir.join("py-whiteouts.tar");
    python_tar(
        &wh,
        &json!([
            {"name": "py-gnu/.wh.f"},
            {"name": "py-gnu/d", "type": "dir"},
            {"name": "py-gnu/d/.wh..wh..opq"},
            {"name": "py-gnu/d/new", "data": "after the opaque marker\n"},
            {"name": "py-ustar/.wh.d"},
        ]),
    );
    out.push(wh);
    out
}

/// python3 tarfile, one layer in the format argv[2] under the dir argv[3]: what each format
/// can hold of long names, non-UTF-8 names, big ids, pre-1970 and sub-second times, binary
/// xattrs (pax records written by length); a global pax header first with argv[4] = global.
const PY_LAYER: &str = r#"
import io, sys, tarfile
out, fmt, top = sys.argv[1], getattr(tarfile, sys.argv[2]), sys.argv[3]
pax, gnu = fmt == tarfile.PAX_FORMAT, fmt == tarfile.GNU_FORMAT
kw = {"pax_headers": {"comment": "a global header"}} if sys.argv[4:] == ["global"] else {}
with tarfile.open(out, "w", format=fmt, encoding="utf-8", errors="surrogateescape", **kw) as t:
    def add(name, type=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, mtime=1700000000, link="", pax_headers=None, dev=(0, 0)):
        ti = tarfile.TarInfo(top + "/" + name)
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = type, mode, uid, gid, mtime, link
        ti.uname = ti.gname = ""
        ti.devmajor, ti.devminor = dev
        if pax_headers:
            ti.pax_headers = pax_headers
        if type == tarfile.REGTYPE:
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        else:
            t.addfile(ti)
    add("d", tarfile.DIRTYPE, mode=0o750)
    add("d/file", data=b"in d\n", uid=1000, gid=1000, mode=0o600)
    add("f", data=b"hello\n")
    add("setuid", data=b"s", mode=0o4755)
    add("sl", tarfile.SYMTYPE, link="f")
    add("hl", tarfile.LNKTYPE, link=top + "/f")
    add("fifo", tarfile.FIFOTYPE)
    add("null", tarfile.CHRTYPE, dev=(1, 3))
    add("p" * 90 + "/" + "q" * 60, data=b"split by the ustar prefix\n")
    if gnu or pax:
        long = "/".join(c * 120 for c in "abc")
        add(long, data=b"long\n")
        add("longlink", tarfile.SYMTYPE, link="/" + "t" * 300)
        add("hard-to-long", tarfile.LNKTYPE, link=top + "/" + long)
        add("caf\udce9", data=b"latin-1 name\n")
        add("biguid", data=b"big\n", uid=3000000, gid=3000001)
        add("old", data=b"old\n", mtime=-100)
        add("future", data=b"future\n", mtime=2**33 + 7)
    if pax:
        cap = bytes.fromhex("0100000200200000000000000000000000000000")
        add("xattrs", data=b"x\n", mtime=1600000000.5, pax_headers={
            "SCHILY.xattr.user.bin": b"\x00\xff|\n".decode("utf-8", "surrogateescape"),
            "SCHILY.xattr.user.text": "plain",
            "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
        })
"#;

/// Runs buildah (vfs storage, no runtime: files are changed through `buildah mount`) to make a
/// two-layer image in the OCI layout `out`: a file capability, binary and text xattrs, then
/// hard links, a deleted file and a deleted-and-remade directory.
fn buildah_layout(ctx: &Ctx, out: &Path, rawsock: &Path) {
    let st = ctx.tempdir("buildah");
    let b = format!("buildah --root {st}/root --runroot {st}/run --storage-driver vfs", st = s(&st));
    let run = |script: &str| {
        tool(
            Command::new("sh")
                .arg("-ec")
                .arg(script)
                .env("HOME", &st)
                .env("TMPDIR", &st)
                .env("BUILDAH_ISOLATION", "chroot"),
        );
    };
    let mnt = st.join("mnt-path");
    run(&format!(
        "c=$({b} from scratch); m=$({b} mount $c); echo $m > {mp}
         mkdir -p $m/etc $m/d $m/bin && printf gone > $m/etc/gone && printf keep > $m/etc/keep
         printf old > $m/d/old && cp {r} $m/rawsock && cp {r} $m/rawsock-nocap
         setcap cap_net_raw+ep $m/rawsock && chown 1000:1000 $m/etc/keep",
        mp = s(&mnt),
        r = s(rawsock)
    ));
    let m = PathBuf::from(fs::read_to_string(&mnt).unwrap().trim());
    setxattr(&m.join("etc/keep"), "user.bin", &BIN_XATTR);
    run(&format!("{b} commit -q $({b} containers -q) berth-base >/dev/null && {b} rm -a >/dev/null"));
    run(&format!(
        "c=$({b} from berth-base); m=$({b} mount $c); echo $m > {mp}
         rm $m/etc/gone && rm -r $m/d && mkdir $m/d && printf new > $m/d/new
         ln $m/rawsock $m/bin/rawsock-link && ln -s ../rawsock $m/bin/sl",
        mp = s(&mnt)
    ));
    let m = PathBuf::from(fs::read_to_string(&mnt).unwrap().trim());
    setxattr(&m.join("d/new"), "user.bin", &BIN_XATTR);
    run(&format!(
        "{b} commit -q $({b} containers -q) oci:{o}:v1 >/dev/null && {b} rm -a >/dev/null && {b} rmi -a -f >/dev/null",
        o = s(out)
    ));
}

/// Pushes the layout's `tag` to the registry, pulls it with berth, unpacks it with berth and
/// with umoci; returns (berth's rootfs, the differences).
fn pull_and_compare(
    ctx: &Ctx,
    eng: &Eng,
    reg: &Registry,
    layout: &Path,
    tag: &str,
    repo: &str,
) -> (PathBuf, Vec<String>) {
    reg.push(layout, tag, repo, false);
    let r = reg.reference(repo);
    eng.image(&["pull", "--insecure", &r]).ok();
    let mine = ctx.dir.join(format!("berth-{tag}"));
    eng.image(&["unpack", &r, s(&mine)]).ok();
    let theirs = ctx.dir.join(format!("umoci-{tag}"));
    tool(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:{tag}", layout.display())).arg(&theirs));
    let a = walk_tree(&mine.join("rootfs"));
    let b = walk_tree(&theirs.join("rootfs"));
    (mine.join("rootfs"), tree_diff("berth", &a, "umoci", &b))
}

#[track_caller]
fn no_diff(what: &str, diff: &[String]) {
    assert!(
        diff.is_empty(),
        "{what}: berth differs from umoci unpack ({} differences):\n{}",
        diff.len(),
        diff.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );
}

fn xattr(p: &Path, key: &str) -> Option<Vec<u8>> {
    let o = Command::new("python3")
        .args([
            "-c",
            "import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).hex())",
        ])
        .arg(p)
        .arg(key)
        .output()
        .unwrap();
    if !o.status.success() {
        return None;
    }
    let h = String::from_utf8(o.stdout).unwrap();
    Some((0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect())
}

#[test]
fn layers_from_tar_writers_match_umoci() {
    let ctx = Ctx::new("layers-writers");
    let eng = Eng::new(&ctx);
    let raw = rawsock(&ctx);
    let lay = Layout::create(&ctx.tempdir("layout"));
    let layers: Vec<Layer> = writer_layers(&ctx, &raw).iter().map(|t| lay.add_layer(t, true)).collect();
    let (m, _) = lay.add_image(&layers, &ImageSpec::new(&["/gnutar-gnu/rawsock"]));
    lay.tag(&m, "writers", None);
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let (r, diff) = pull_and_compare(&ctx, &eng, &reg, &lay.dir, "writers", "berth-test/writers:v1");
    no_diff("GNU tar and python tarfile layers", &diff);

    // What the comparison relies on is there at all.
    for dir in ["gnutar-posix00", "gnutar-posix01", "gnutar-posix10"] {
        assert_eq!(xattr(&r.join(dir).join("f"), "user.bin").as_deref(), Some(&BIN_XATTR[..]), "{dir}/f");
        assert!(xattr(&r.join(dir).join("rawsock"), "security.capability").is_some(), "{dir}/rawsock capability");
    }
    assert_eq!(xattr(&r.join("py-pax/xattrs"), "user.bin").as_deref(), Some(&BIN_XATTR[..]));
    assert_eq!(
        xattr(&r.join("py-pax/xattrs"), "security.capability").map(|v| hex(&v)).as_deref(),
        Some("0100000200200000000000000000000000000000")
    );
    for dir in ["gnutar-gnu", "gnutar-oldgnu", "gnutar-posix00", "gnutar-posix01", "gnutar-posix10"] {
        if dir.starts_with("gnutar-posix") {
            sparse_ok(&r.join(dir).join("sparse"), dir);
        }
        let md = fs::metadata(r.join(dir).join("biguid")).unwrap();
        assert_eq!((md.uid(), md.gid()), (3000000, 3000001), "{dir}/biguid");
        assert_eq!(fs::symlink_metadata(r.join(dir).join("old")).unwrap().mtime(), -315619200, "{dir}/old");
    }
    let md = fs::metadata(r.join("gnutar-posix10/subsec")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1580608922, 123456789), "sub-second time");
    for dir in ["py-gnu", "py-pax"] {
        assert_eq!(fs::metadata(r.join(dir).join("old")).unwrap().mtime(), -100, "{dir}/old");
        assert_eq!(fs::metadata(r.join(dir).join("future")).unwrap().mtime(), (1 << 33) + 7, "{dir}/future");
        assert_eq!(fs::metadata(r.join(dir).join("biguid")).unwrap().uid(), 3000000, "{dir}/biguid");
        assert!(r.join(dir).join(std::ffi::OsStr::from_bytes(b"caf\xe9")).exists(), "{dir}: non-UTF-8 name");
    }
    assert_eq!(fs::metadata(r.join("py-pax/xattrs")).unwrap().mtime_nsec(), 500_000_000);
    assert!(!r.join("py-gnu/f").exists() && !r.join("py-ustar/d").exists(), "whiteouts applied");
    assert_eq!(dir_entries_sorted(&r.join("py-gnu/d")), vec!["new"], "opaque directory");

    // What umoci refuses: GNU sparse entries (gnu and oldgnu formats), checked against the
    // source tree, and a global pax header (python tarfile's pax_headers), checked against the
    // same entries without it.
    let src = ctx.tempdir("src");
    let mut tars = Vec::new();
    for fmt in ["gnu", "oldgnu"] {
        let top = src.join(format!("sparse-{fmt}"));
        fs::create_dir(&top).unwrap();
        source_tree(&top, true, &raw);
        let tarp = ctx.dir.join(format!("sparse-{fmt}.tar"));
        tool(
            Command::new("tar")
                .args(["--numeric-owner", "--sparse", &format!("--format={fmt}"), "-C"])
                .arg(&src)
                .arg("-cf")
                .arg(&tarp)
                .arg(format!("sparse-{fmt}")),
        );
        tars.push(tarp);
    }
    let paxg = ctx.dir.join("py-paxg.tar");
    tool(Command::new("python3").args(["-c", PY_LAYER]).arg(&paxg).args(["PAX_FORMAT", "py-paxg", "global"]));
    tars.push(paxg);
    let lay = Layout::create(&ctx.tempdir("layout"));
    let layers: Vec<Layer> = tars.iter().map(|t| lay.add_layer(t, true)).collect();
    let (m, _) = lay.add_image(&layers, &ImageSpec::new(&["/sparse-gnu/rawsock"]));
    lay.tag(&m, "sparse", None);
    reg.push(&lay.dir, "sparse", "berth-test/sparse:v1", false);
    let name = reg.reference("berth-test/sparse:v1");
    eng.image(&["pull", "--insecure", &name]).ok();
    let mine = ctx.dir.join("berth-sparse");
    eng.image(&["unpack", &name, s(&mine)]).ok();
    for fmt in ["gnu", "oldgnu"] {
        let dir = format!("sparse-{fmt}");
        sparse_ok(&mine.join("rootfs").join(&dir).join("sparse"), &dir);
        let a = walk_tree(&mine.join("rootfs").join(&dir));
        let b = walk_tree(&src.join(&dir));
        // These formats hold no xattrs.
        let strip = |t: &(std::collections::BTreeMap<String, Node>, Vec<Vec<String>>)| {
            let mut t = t.clone();
            t.0.values_mut().for_each(|n| n.xattrs.clear());
            t
        };
        no_diff(&format!("{dir} against its source tree"), &tree_diff("berth", &strip(&a), "source", &strip(&b)));
    }
    let a = walk_tree(&mine.join("rootfs/py-paxg"));
    let b = walk_tree(&r.join("py-pax"));
    no_diff("pax layer with a global header against the same without", &tree_diff("global", &a, "plain", &b));
}

#[track_caller]
fn sparse_ok(sp: &Path, what: &str) {
    let md = fs::metadata(sp).unwrap();
    assert_eq!(md.len(), 5 << 20, "{what}/sparse size");
    assert!(md.blocks() < 200, "{what}/sparse kept its holes: {} blocks", md.blocks());
    let data = fs::read(sp).unwrap();
    assert_eq!((&data[..5], &data[3_000_000..3_000_006]), (&b"start"[..], &b"middle"[..]), "{what}/sparse");
    assert!(data[5..3_000_000].iter().all(|&b| b == 0), "{what}/sparse hole reads as zeros");
}

/// Runs `args` in a container of the image `r` (mounted) as uid/gid 1000 with CAP_NET_RAW in
/// the bounding set only: no capability in its effective, permitted, inheritable or ambient
/// sets, so it can only have one through a file capability.
fn run_unprivileged(eng: &Eng, r: &str, args: &[&str]) -> Out {
    let bundle = eng.ctx.dir.join(format!("mnt-{}", eng.ctx.id("m")));
    eng.image(&["mount", r, s(&bundle)]).ok();
    let cfgp = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&fs::read(&cfgp).unwrap()).unwrap();
    let id = eng.ctx.id("cap");
    cfg["linux"]["cgroupsPath"] = json!(format!("/berth/{id}"));
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(args);
    cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    cfg["process"]["noNewPrivileges"] = json!(false);
    cfg["process"]["capabilities"] = json!({
        "bounding": ["CAP_NET_RAW"], "effective": [], "permitted": [], "inheritable": [], "ambient": []
    });
    fs::write(&cfgp, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let o = eng.cmd(&["run", "--bundle", s(&bundle), &id]);
    eng.image(&["umount", s(&bundle)]).ok();
    o
}

#[test]
fn layers_from_buildah_match_umoci_and_keep_file_capabilities() {
    let ctx = Ctx::new("layers-buildah");
    let eng = Eng::new(&ctx);
    let raw = rawsock(&ctx);
    let lay = ctx.dir.join("buildah-layout");
    buildah_layout(&ctx, &lay, &raw);
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let (r, diff) = pull_and_compare(&ctx, &eng, &reg, &lay, "v1", "berth-test/buildah:v1");
    no_diff("buildah layers", &diff);
    assert!(xattr(&r.join("rawsock"), "security.capability").is_some(), "file capability restored");
    assert!(xattr(&r.join("rawsock-nocap"), "security.capability").is_none());
    assert_eq!(xattr(&r.join("etc/keep"), "user.bin").as_deref(), Some(&BIN_XATTR[..]));
    assert_eq!(xattr(&r.join("d/new"), "user.bin").as_deref(), Some(&BIN_XATTR[..]));
    assert!(!r.join("etc/gone").exists() && !r.join("d/old").exists(), "whiteouts");
    // A link made in a later layer to a file of a lower one: buildah writes a copy.
    assert_eq!(fs::read(r.join("bin/rawsock-link")).unwrap(), fs::read(&raw).unwrap());

    // The capability works in a container (overlay snapshots of the same layers): the same
    // program without it is refused under the same process settings.
    let name = reg.reference("berth-test/buildah:v1");
    let o = run_unprivileged(&eng, &name, &["/rawsock"]);
    o.ok();
    assert_eq!(o.stdout, "raw socket: ok\n", "{o}");
    let o = run_unprivileged(&eng, &name, &["/rawsock-nocap"]);
    assert_eq!(o.stdout, "raw socket: Operation not permitted\n", "{o}");
    assert_ne!(o.code, 0, "{o}");
}

#[test]
fn corrupt_layers_fail_naming_the_entry_store_unchanged() {
    let ctx = Ctx::new("layers-corrupt");
    let eng = Eng::new(&ctx);
    let spec = ImageSpec::new(&["sh"]);
    let (good, _, _) =
        busybox_oci_layout(&ctx, &ctx.tempdir("layout"), "v1", Some("localhost/berth-test/good:v1"), &spec);
    eng.image(&["load", "-i", s(&good.dir)]).ok();
    let snap = eng.store_snapshot();
    let entries = json!([
        {"name": "etc", "type": "dir"},
        {"name": "etc/first", "data": "first\n"},
        {"name": "etc/victim-entry", "data": "x".repeat(3000), "xattrs": {"user.k": "value"}},
        {"name": "etc/last", "data": "last\n"},
    ]);
    let base = ctx.dir.join("base.tar");
    python_tar(&base, &entries);
    let bytes = fs::read(&base).unwrap();
    // The (last) header block of `name`.
    let header_of = |name: &str| -> usize {
        (0..bytes.len()).step_by(512).rfind(|&o| bytes[o..o + 100].starts_with(name.as_bytes())).unwrap()
    };
    let victim = header_of("etc/victim-entry");
    let load = |tag: &str, data: &[u8]| -> Out {
        let tarp = ctx.dir.join(format!("{tag}.tar"));
        fs::write(&tarp, data).unwrap();
        let lay = Layout::create(&ctx.tempdir("layout"));
        let l = lay.add_layer(&tarp, false);
        let (m, _) = lay.add_image(&[l], &ImageSpec::new(&["sh"]));
        lay.tag(&m, "v1", Some(&format!("localhost/berth-test/{tag}:v1")));
        eng.image(&["load", "-i", s(&lay.dir)])
    };

    // A header whose checksum no longer matches.
    let mut bad = bytes.clone();
    bad[victim + 130] ^= 0x01;
    let o = load("cksum", &bad);
    o.one_line_error(&["corrupt layer: entry \"etc/victim-entry\": header checksum mismatch"]);
    eng.assert_store_unchanged(&snap, "load of a layer with a bad header checksum");

    // A pax record whose length does not match its data (same digit count, so the header's
    // checksum still matches).
    let mut bad = bytes.clone();
    let rec = bad.windows(20).position(|w| w == b" SCHILY.xattr.user.k").expect("xattr record") - 2;
    assert_eq!(&bad[rec..rec + 2], b"29");
    bad[rec + 1] = b'8';
    let o = load("paxlen", &bad);
    o.one_line_error(&["corrupt layer: entry \"etc/victim-entry\": pax record length does not match its data"]);
    eng.assert_store_unchanged(&snap, "load of a layer with a bad pax record length");

    // Cut inside the entry's data.
    let o = load("cut", &bytes[..victim + 512 + 1000]);
    o.one_line_error(&["layer is truncated in entry \"etc/victim-entry\""]);
    eng.assert_store_unchanged(&snap, "load of a truncated layer");
}

/// A private dockerd: its own data root, exec root, socket and pidfile under the test dir, no
/// bridge, no iptables, its own cgroup parent; stopped by pid on drop, with what it leaves on
/// the host (`/etc/docker/key.json` and `/run/docker` when they were not there, its cgroup
/// dirs) removed.
pub(crate) struct Dockerd {
    dir: PathBuf,
    child: Option<Child>,
    key_was_there: bool,
    run_docker_was_there: bool,
    cgroup: String,
}

const DOCKER_KEY: &str = "/etc/docker/key.json";

impl Dockerd {
    pub(crate) fn start(ctx: &Ctx) -> Dockerd {
        Dockerd::start_with(ctx, &[])
    }

    /// With more daemon flags.
    pub(crate) fn start_with(ctx: &Ctx, extra: &[&str]) -> Dockerd {
        let dir = ctx.tempdir("dockerd");
        let cgroup = format!("berth-layers-{}", std::process::id());
        let log = fs::File::create(dir.join("dockerd.log")).unwrap();
        let key_was_there = Path::new(DOCKER_KEY).exists();
        let run_docker_was_there = Path::new("/run/docker").exists();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false", "--storage-driver", "overlay2"])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", &format!("/{cgroup}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd (scripts/deps.sh test installs docker.io)");
        let d = Dockerd { dir, child: Some(child), key_was_there, run_docker_was_there, cgroup };
        let t = Instant::now();
        while !d.docker(&["version"]).status().map(|s| s.success()).unwrap_or(false) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "dockerd did not come up: {}",
                fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    /// The daemon's --data-root.
    pub(crate) fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The daemon's socket, for another docker CLI's -H.
    pub(crate) fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// Debian's docker 20.10 CLI (its BuildKit client is built in; a newer CLI elsewhere on
    /// PATH wants a buildx plugin).
    pub(crate) fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.arg("-H").arg(format!("unix://{}", self.dir.join("docker.sock").display())).args(args);
        c.env("DOCKER_CONFIG", &self.dir).env("DOCKER_BUILDKIT", "0").stdout(Stdio::null()).stderr(Stdio::null());
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if t.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if !self.key_was_there {
            let _ = fs::remove_file(DOCKER_KEY);
        }
        if !self.run_docker_was_there {
            // Empty dirs only: another daemon's are left alone.
            let _ = fs::remove_dir("/run/docker/plugins");
            let _ = fs::remove_dir("/run/docker");
        }
        if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
            for e in rd.flatten() {
                let _ = fs::remove_dir(e.path().join(&self.cgroup));
            }
        }
    }
}

#[test]
fn layers_from_dockerd_match_umoci_and_keep_file_capabilities() {
    let ctx = Ctx::new("layers-docker");
    let eng = Eng::new(&ctx);
    let raw = rawsock(&ctx);
    let base = busybox_layer_tar(&ctx, "docker-base");
    let d = Dockerd::start(&ctx);
    let run = |c: &mut Command| {
        let c = c.stdout(Stdio::piped()).stderr(Stdio::piped());
        tool(c)
    };
    run(d.docker(&["import"]).arg(&base).arg("berth-test/docker-base:v1"));
    let bctx = ctx.tempdir("build");
    fs::copy(&raw, bctx.join("rawsock")).unwrap();
    fs::write(
        bctx.join("Dockerfile"),
        "FROM berth-test/docker-base:v1
COPY rawsock /rawsock
RUN mkdir -p /d/sub && echo old > /d/sub/old && echo gone > /etc/gone && echo keep > /etc/keep
RUN cp /rawsock /rawsock-nocap && /rawsock setcap /rawsock && ln /rawsock /rawsock-hard \\
    && rm /etc/gone && rm -rf /d && mkdir /d && echo new > /d/new && chown 1000:1000 /etc/keep
",
    )
    .unwrap();
    // The classic builder (docker's own layer diffs) and BuildKit (containerd's differ).
    let builders = [("classic", "0"), ("buildkit", "1")];
    for (b, kit) in builders {
        let tag = format!("berth-test/docker-{b}:v1");
        run(d.docker(&["build", "-q", "--network", "none", "-t", &tag]).arg(&bctx).env("DOCKER_BUILDKIT", kit));
        let saved = ctx.dir.join(format!("docker-save-{b}.tar"));
        run(d.docker(&["save", "-o"]).arg(&saved).arg(&tag));
    }
    drop(d);
    let reg = Registry::start(&ctx, RegistryOpts::default());
    for (b, _) in builders {
        // The layers as docker wrote them, into an OCI layout (blobs copied as they are).
        let lay = ctx.dir.join(format!("docker-layout-{b}"));
        tool(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "-q"])
                .arg(format!("docker-archive:{}", ctx.dir.join(format!("docker-save-{b}.tar")).display()))
                .arg(format!("oci:{}:{b}", lay.display()))
                .env("HOME", &ctx.dir)
                .env("TMPDIR", &ctx.dir),
        );
        let (r, diff) = pull_and_compare(&ctx, &eng, &reg, &lay, b, &format!("berth-test/docker-{b}:v1"));
        no_diff(&format!("docker layers ({b} builder)"), &diff);
        assert_eq!(
            xattr(&r.join("rawsock"), "security.capability").map(|v| hex(&v)).as_deref(),
            Some("0100000200200000000000000000000000000000"),
            "{b}: file capability restored"
        );
        assert!(xattr(&r.join("rawsock-nocap"), "security.capability").is_none(), "{b}");
        let ino = |p: &str| fs::metadata(r.join(p)).unwrap().ino();
        assert_eq!(ino("rawsock-hard"), ino("rawsock"), "{b}: hard link");
        assert!(!r.join("etc/gone").exists(), "{b}: whiteout");
        assert_eq!(dir_entries_sorted(&r.join("d")), vec!["new"], "{b}: opaque directory");
        assert_eq!(fs::metadata(r.join("etc/keep")).unwrap().uid(), 1000, "{b}");
    }

    for (b, _) in builders {
        let name = reg.reference(&format!("berth-test/docker-{b}:v1"));
        let o = run_unprivileged(&eng, &name, &["/rawsock"]);
        o.ok();
        assert_eq!(o.stdout, "raw socket: ok\n", "{b}: {o}");
        let o = run_unprivileged(&eng, &name, &["/rawsock-nocap"]);
        assert_eq!(o.stdout, "raw socket: Operation not permitted\n", "{b}: {o}");
    }
}
