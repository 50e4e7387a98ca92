//! Shipping images: `berth image push` to a real registry (Debian's docker-registry on
//! 127.0.0.1, started here) and pulled back on a fresh data root, checked with skopeo;
//! `image save` loaded by podman; `image history`; `container commit/diff/cp/export`.

use crate::common::images::*;
use crate::common::registry::*;
use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[track_caller]
fn assert_contains(hay: &str, needles: &[&str], what: &str) {
    for n in needles {
        assert!(hay.contains(n), "{what}: {n:?} missing in:\n{hay}");
    }
}

/// A tar holding one file `name` of `size` pseudo-random (incompressible) bytes.
fn random_file_tar(ctx: &Ctx, name: &str, size: usize, seed: u64) -> PathBuf {
    let d = ctx.tempdir("rand");
    let mut x = seed | 1;
    let mut buf = Vec::with_capacity(size);
    while buf.len() < size {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    buf.truncate(size);
    fs::File::create(d.join(name)).unwrap().write_all(&buf).unwrap();
    let out = ctx.dir.join(format!("{name}.tar"));
    tar_dir(&d, &out);
    let _ = fs::remove_dir_all(&d);
    out
}

/// An OCI layout with a busybox layer (gzip) and a layer of one 20 MB random file (plain
/// tar: above the push chunk size), loaded into `eng` as `name`. Returns (manifest, config,
/// layers).
fn load_two_layer_image(ctx: &Ctx, eng: &Eng, name: &str) -> (Desc, Desc, Vec<Layer>) {
    let lay = Layout::create(&ctx.tempdir("layout"));
    let bb = busybox_layer_tar(ctx, "shipped");
    let big = random_file_tar(ctx, "big.bin", 20 << 20, 0x5eed);
    let layers = vec![lay.add_layer(&bb, true), lay.add_layer(&big, false)];
    let (m, c) = lay.add_image(&layers, &ImageSpec::new(&["sh", "-c", "cat /etc/image-marker"]));
    lay.tag(&m, "v1", Some(name));
    eng.image(&["load", "-i", s(&lay.dir)]).ok();
    (m, c, layers)
}

fn skopeo_inspect(reg: &Registry, repo_tag: &str, raw: bool) -> String {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--tls-verify=false"]);
    if raw {
        c.arg("--raw");
    }
    c.arg(format!("docker://{}", reg.reference(repo_tag)));
    c.env("HOME", &reg.dir).env("TMPDIR", &reg.dir);
    tool(&mut c)
}

/// Registry log lines of requests with `method` on paths containing `needle`.
fn requests(reg: &Registry, method: &str, needle: &str) -> Vec<String> {
    std::thread::sleep(std::time::Duration::from_millis(200));
    reg.log()
        .lines()
        .filter(|l| l.contains(&format!("\"{method} /v2/")) && l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Push (a monolithic and a chunked blob upload), the registry's copy checked with skopeo,
/// pulled back on a fresh data root (same ids, same tree), pushed again (nothing sent),
/// then under another repository of the registry (blobs mounted, not sent).
#[test]
fn ship_push_pull_back_and_mount() {
    let ctx = Ctx::new("ship-push");
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let eng = Eng::new(&ctx);
    let local = "localhost/berth-test/ship:v1";
    let (m, c, layers) = load_two_layer_image(&ctx, &eng, local);
    let one = reg.reference("ship/one:v1");
    eng.image(&["tag", local, &one]).ok();

    let o = eng.image(&["push", &one]);
    o.ok();
    assert_contains(
        &o.stdout,
        &[
            &format!("The push refers to repository [{}]\n", reg.reference("ship/one")),
            &format!("{}: Pushed\n", &layers[0].diff_id[7..19]),
            &format!("{}: Pushed\n", &layers[1].diff_id[7..19]),
            &format!("v1: digest: {} size: {}\n", m.digest, m.size),
        ],
        "push",
    );
    // The 20 MB layer went in PATCHes of 16 MiB then a PUT; the busybox layer in one PUT.
    let patches = requests(&reg, "PATCH", "/ship/one/blobs/uploads/");
    assert_eq!(patches.len(), 2, "chunked upload: PATCH requests: {patches:#?}");
    let puts = requests(&reg, "PUT", "/ship/one/blobs/uploads/");
    assert_eq!(puts.len(), 3, "one closing PUT per blob (2 layers + config): {puts:#?}");

    // What the registry holds is the stored manifest, byte for byte.
    let raw = skopeo_inspect(&reg, "ship/one:v1", true);
    assert_eq!(sha256_bytes(raw.as_bytes()), m.hex(), "manifest in the registry: {raw}");
    let info: Value = serde_json::from_str(&skopeo_inspect(&reg, "ship/one:v1", false)).unwrap();
    assert_eq!(info["Digest"], json!(m.digest), "{info:#}");
    assert_eq!(info["Layers"], json!(layers.iter().map(|l| l.desc.digest.clone()).collect::<Vec<_>>()), "{info:#}");
    let insp = eng.inspect(&one);
    assert!(
        insp["RepoDigests"].as_array().unwrap().contains(&json!(format!("{}@{}", reg.reference("ship/one"), m.digest))),
        "push records the repo digest: {insp:#}"
    );

    // Pull back on a fresh data root: same image id, same tree.
    let eng2 = Eng::new(&ctx);
    eng2.image(&["pull", &one]).ok();
    assert_eq!(eng2.inspect(&one)["Id"], json!(c.digest));
    let (a, b) = (ctx.dir.join("flat-a"), ctx.dir.join("flat-b"));
    eng.image(&["unpack", &one, s(&a)]).ok();
    eng2.image(&["unpack", &one, s(&b)]).ok();
    let d = tree_diff("pushed", &walk_tree(&a.join("rootfs")), "pulled", &walk_tree(&b.join("rootfs")));
    assert!(d.is_empty(), "tree differs after push and pull: {d:#?}");
    assert_eq!(fs::metadata(b.join("rootfs/big.bin")).unwrap().len(), 20 << 20);

    // Again: every blob already there, nothing uploaded.
    let before = requests(&reg, "POST", "/blobs/uploads/").len();
    let o = eng.image(&["push", &one]);
    o.ok();
    assert_eq!(o.stdout.matches(": Layer already exists\n").count(), 2, "{o}");
    assert_eq!(requests(&reg, "POST", "/blobs/uploads/").len(), before, "second push started uploads");

    // Another repository of the same registry: mounted from the first.
    let two = reg.reference("ship/two:v2");
    eng.image(&["tag", local, &two]).ok();
    let o = eng.image(&["push", &two]);
    o.ok();
    assert_eq!(o.stdout.matches(": Mounted from ship/one\n").count(), 2, "{o}");
    let mounts = requests(&reg, "POST", "/ship/two/blobs/uploads/?");
    assert_eq!(mounts.len(), 3, "one mount request per blob: {mounts:#?}");
    assert!(mounts.iter().all(|l| l.contains("from=ship/one") && l.contains("\" 201 ")), "{mounts:#?}");
    assert!(requests(&reg, "PATCH", "/ship/two/").is_empty() && requests(&reg, "PUT", "/ship/two/blobs/").is_empty());
    let info: Value = serde_json::from_str(&skopeo_inspect(&reg, "ship/two:v2", false)).unwrap();
    assert_eq!(info["Digest"], json!(m.digest), "{info:#}");
}

/// Pushes the registry refuses say why, in one line, and leave the store as it was; with
/// credentials (basic, and a bearer token from a token server) the same pushes work.
#[test]
fn ship_push_refused_and_auth() {
    let ctx = Ctx::new("ship-refused");
    let eng = Eng::new(&ctx);
    let local = "localhost/berth-test/refused:v1";
    let lay = Layout::create(&ctx.tempdir("layout"));
    let bb = busybox_layer_tar(&ctx, "refused");
    let l = lay.add_layer(&bb, true);
    let (m, _) = lay.add_image(&[l], &ImageSpec::new(&["true"]));
    lay.tag(&m, "v1", Some(local));
    eng.image(&["load", "-i", s(&lay.dir)]).ok();

    // A read-only registry refuses the upload.
    let ro = Registry::start(&ctx, RegistryOpts { readonly: true, ..Default::default() });
    let name = ro.reference("ro/img:v1");
    eng.image(&["tag", local, &name]).ok();
    let before = eng.store_snapshot();
    let o = eng.image(&["push", &name]);
    o.one_line_error(&["405", "UNSUPPORTED"]);
    eng.assert_store_unchanged(&before, "refused push");

    // Basic auth: refused without credentials, accepted with an auth file.
    let user = ("shipper".to_string(), "s3cret-ship".to_string());
    let basic = Registry::start(&ctx, RegistryOpts { basic_auth: Some(user.clone()), ..Default::default() });
    let name = basic.reference("auth/img:v1");
    eng.image(&["tag", local, &name]).ok();
    let before = eng.store_snapshot();
    let o = eng.image(&["push", &name]);
    o.one_line_error(&["401", "auth/img"]);
    eng.assert_store_unchanged(&before, "unauthenticated push");
    let authfile = ctx.dir.join("auth.json");
    write_authfile(&authfile, &[(&basic.host, &user.0, &user.1)]);
    let o = eng.image(&["push", "--authfile", s(&authfile), &name]);
    o.ok();
    assert_contains(&o.stdout, &[&format!("v1: digest: {}", m.digest)], "push with credentials");
    let uploads = fs::read_dir(basic.dir.join("storage/docker/registry/v2/repositories/auth/img/_uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(uploads, 0, "upload sessions left in the registry");

    // A bearer token front: a token fetched with the credentials, then the same push.
    let backend = Registry::start(&ctx, RegistryOpts::default());
    let front = TokenProxy::start(&backend, Some(user.clone()));
    let name = front.reference("tok/img:v1");
    eng.image(&["tag", local, &name]).ok();
    write_authfile(&authfile, &[(&front.host, &user.0, &user.1)]);
    let o = eng.image(&["push", "--authfile", s(&authfile), &name]);
    o.ok();
    let seen = front.seen();
    assert!(seen.iter().any(|l| l.starts_with("GET /token?") && l.ends_with("[basic-ok]")), "{seen:#?}");
    assert!(seen.iter().any(|l| l.starts_with("PUT /v2/tok/img/manifests/v1 [bearer-ok]")), "{seen:#?}");
    let raw = skopeo_inspect(&backend, "tok/img:v1", true);
    assert_eq!(sha256_bytes(raw.as_bytes()), m.hex());
}
