//! Image layer: `berth image load/pull/ls/inspect/tag/rm/prune/unpack/mount/umount`
//! through the real binary, against hand-made OCI layouts and docker-save archives, a real
//! registry (docker-registry: plain, TLS, basic auth), a bearer-token front, and a layered
//! Debian image compared with umoci's unpack.

use crate::common::images::*;
use crate::common::registry::*;
use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

const FIXTURE_OUT: &str = "berth-itest-rootfs";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `image mount REF DIR`, makes the bundle runnable in the suite (own cgroup, no terminal,
/// writable root, `edit` for the rest), runs it attached; returns (run output, bundle dir).
fn mount_and_run(eng: &Eng, r: &str, edit: impl FnOnce(&mut Value)) -> (Out, PathBuf) {
    let bundle = eng.ctx.dir.join(format!("mnt-{}", SEQ.fetch_add(1, Ordering::SeqCst)));
    eng.image(&["mount", r, s(&bundle)]).ok();
    let rootfs = bundle.join("rootfs");
    let mi = mountinfo();
    let m = mi.iter().find(|m| Path::new(&m.mount_point) == rootfs);
    assert!(m.is_some(), "image mount: nothing mounted on {}", rootfs.display());
    assert_eq!(m.unwrap().fstype, "overlay", "image mount: {} is not an overlay mount", rootfs.display());
    let cfgp = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&fs::read(&cfgp).unwrap_or_else(|e| panic!("{}: {e}", cfgp.display())))
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", cfgp.display()));
    let id = eng.ctx.id("img");
    cfg["linux"]["cgroupsPath"] = json!(format!("/berth/{id}"));
    cfg["process"]["terminal"] = json!(false);
    cfg["root"]["readonly"] = json!(false);
    edit(&mut cfg);
    fs::write(&cfgp, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let o = eng.cmd(&["run", "--bundle", s(&bundle), &id]);
    (o, bundle)
}

/// `image umount DIR`: nothing mounted under DIR afterwards and the container's writes (a file
/// named `marker`) are gone from the bundle and the data root (the upper dir was removed).
#[track_caller]
fn umount_clean(eng: &Eng, bundle: &Path, marker: &str) {
    eng.image(&["umount", s(bundle)]).ok();
    let m = mounts_under(bundle);
    assert!(m.is_empty(), "image umount left mounts: {m:?}");
    for root in [bundle, eng.data.as_path()] {
        let left = find_named(root, marker);
        assert!(left.is_empty(), "image umount left the container's upper dir: {left:?}");
    }
    let upper: Vec<PathBuf> = find_named(bundle, "upper").into_iter().chain(find_named(bundle, "work")).collect();
    assert!(upper.is_empty(), "image umount left overlay dirs in the bundle: {upper:?}");
}

#[track_caller]
fn assert_contains(hay: &str, needles: &[&str], what: &str) {
    for n in needles {
        assert!(hay.contains(n), "{what}: {n:?} missing in:\n{hay}");
    }
}

/// Non-zero exit with exactly one non-empty stderr line (any wording).
#[track_caller]
fn one_line_failure(o: &Out) {
    o.one_line_error(&[""]);
}

/// A repo tag like docker shows it: RepoTags may be normalised (docker.io/...).
fn has_tag(insp: &Value, short: &str) -> bool {
    insp["RepoTags"]
        .as_array()
        .map(|a| a.iter().any(|t| t.as_str().is_some_and(|t| t == short || t.ends_with(&format!("/{short}")))))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// load

#[test]
fn image_load_docker_archive_and_run() {
    let ctx = Ctx::new("img-docker-load");
    let eng = Eng::new(&ctx);
    let tar = busybox_layer_tar(&ctx, "docker-archive");
    let archive = ctx.dir.join("saved.tar");
    let spec = ImageSpec::new(&[
        "sh",
        "-c",
        "echo docker-archive-cmd; cat /etc/image-marker /etc/berth-fixture; touch /upper-marker-dsave",
    ]);
    let cfg = docker_save_archive(&ctx, &archive, &tar, &["berth-test/saved:v1"], &spec);
    eng.image(&["load", "-i", s(&archive)]).ok();
    let ls = eng.image(&["ls"]);
    ls.ok();
    assert_contains(&ls.stdout, &["berth-test/saved", "v1", &cfg[7..19]], "image ls");
    let insp = eng.inspect("berth-test/saved:v1");
    assert_eq!(insp["Id"], json!(cfg), "inspect Id must be the config digest: {insp:#}");
    assert_eq!(insp["Config"]["Cmd"], json!(spec.cmd), "inspect Config.Cmd: {insp:#}");
    assert!(has_tag(&insp, "berth-test/saved:v1"), "inspect RepoTags: {insp:#}");
    assert_eq!(eng.ids(), vec![cfg[7..19].to_string()], "image ls -q");

    // The image's own Cmd runs from the overlay bundle.
    let (o, bundle) = mount_and_run(&eng, "berth-test/saved:v1", |_| {});
    o.ok();
    assert_eq!(o.stdout, format!("docker-archive-cmd\ndocker-archive\n{FIXTURE_OUT}\n"), "{o}");
    umount_clean(&eng, &bundle, "upper-marker-dsave");
}

#[test]
fn image_load_docker_archive_gzip() {
    let ctx = Ctx::new("img-docker-gz");
    let eng = Eng::new(&ctx);
    let tar = busybox_layer_tar(&ctx, "gz");
    let archive = ctx.dir.join("saved.tar");
    let cfg = docker_save_archive(&ctx, &archive, &tar, &["berth-test/gz:latest"], &ImageSpec::new(&["sh"]));
    tool(std::process::Command::new("gzip").arg("-n").arg(&archive));
    let gz = ctx.dir.join("saved.tar.gz");
    eng.image(&["load", "-i", s(&gz)]).ok();
    assert_eq!(eng.inspect("berth-test/gz")["Id"], json!(cfg));
}

#[test]
fn image_load_oci_layout_dir_and_tar() {
    let ctx = Ctx::new("img-oci-load");
    let spec = ImageSpec::new(&["sh", "-c", "echo oci-layout-cmd"]);
    let name = "localhost/berth-test/oci:v2";
    let (lay, _m, cfg) = busybox_oci_layout(&ctx, &ctx.tempdir("layout"), "v2", Some(name), &spec);

    // From the directory.
    let eng = Eng::new(&ctx);
    eng.image(&["load", "-i", s(&lay.dir)]).ok();
    let ls = eng.image(&["ls"]);
    ls.ok();
    assert_contains(&ls.stdout, &["localhost/berth-test/oci", "v2"], "image ls");
    let insp = eng.inspect(name);
    assert_eq!(insp["Id"], json!(cfg.digest), "{insp:#}");
    assert_eq!(insp["Config"]["Cmd"], json!(spec.cmd), "{insp:#}");
    assert_eq!(insp["Architecture"], json!(host_arch()), "{insp:#}");
    // Run it with args set in config.json.
    let (o, bundle) = mount_and_run(&eng, name, |c| {
        c["process"]["args"] = json!(["sh", "-c", "cat /etc/image-marker; echo x > /upper-marker-oci"]);
    });
    o.ok();
    assert_eq!(o.stdout, "v2\n", "{o}");
    umount_clean(&eng, &bundle, "upper-marker-oci");

    // From a tar of the layout, into another data root: same image.
    let tarp = ctx.dir.join("layout.tar");
    lay.to_tar(&tarp);
    let eng2 = Eng::new(&ctx);
    eng2.image(&["load", "-i", s(&tarp)]).ok();
    assert_eq!(eng2.inspect(name)["Id"], json!(cfg.digest));
    assert_eq!(eng2.ids(), vec![cfg.hex()[..12].to_string()]);
}

/// `image unpack` makes a flat bundle (rootfs copy + config.json from the image) that runs.
#[test]
fn image_unpack_flat_bundle_runs() {
    let ctx = Ctx::new("img-unpack");
    let eng = Eng::new(&ctx);
    let spec = ImageSpec::new(&["sh", "-c", "echo unpacked; cat /etc/image-marker"]);
    let name = "localhost/berth-test/unpack:v1";
    let (lay, _, _) = busybox_oci_layout(&ctx, &ctx.tempdir("layout"), "v1", Some(name), &spec);
    eng.image(&["load", "-i", s(&lay.dir)]).ok();
    let dir = ctx.dir.join("flat");
    eng.image(&["unpack", name, s(&dir)]).ok();
    assert!(mounts_under(&dir).is_empty(), "unpack must not mount anything: {:?}", mounts_under(&dir));
    let md = fs::metadata(dir.join("rootfs/bin/busybox")).expect("rootfs/bin/busybox");
    assert!(md.len() > 100_000);
    let cfgp = dir.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&fs::read(&cfgp).unwrap()).unwrap();
    assert_eq!(cfg["process"]["args"], json!(spec.cmd), "config.json args from the image Cmd");
    let id = ctx.id("flat");
    cfg["linux"]["cgroupsPath"] = json!(format!("/berth/{id}"));
    cfg["process"]["terminal"] = json!(false);
    fs::write(&cfgp, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let o = eng.cmd(&["run", "--bundle", s(&dir), &id]);
    o.ok();
    assert_eq!(o.stdout, "unpacked\nv1\n", "{o}");
}

// ---------------------------------------------------------------------------------------------
// pull

/// A plain registry with a busybox image pushed as berth/busybox:v1: (registry, manifest, config).
pub fn registry_with_busybox(ctx: &Ctx, opts: RegistryOpts) -> (Registry, Desc, Desc) {
    let reg = Registry::start(ctx, opts);
    let (lay, m, c) =
        busybox_oci_layout(ctx, &ctx.tempdir("layout"), "v1", None, &ImageSpec::new(&["sh", "-c", "echo pulled"]));
    reg.push(&lay.dir, "v1", "berth/busybox:v1", false);
    (reg, m, c)
}

#[test]
fn image_pull_by_tag_and_digest() {
    let ctx = Ctx::new("img-pull");
    let (reg, m, c) = registry_with_busybox(&ctx, RegistryOpts::default());
    let by_tag = reg.reference("berth/busybox:v1");
    let eng = Eng::new(&ctx);
    eng.image(&["pull", "--insecure", &by_tag]).ok();
    let insp = eng.inspect(&by_tag);
    assert_eq!(insp["Id"], json!(c.digest), "{insp:#}");
    let ls = eng.image(&["ls", "--digests"]);
    ls.ok();
    assert_contains(&ls.stdout, &[&format!("{}/berth/busybox", reg.host), "v1"], "image ls");
    // skopeo pushes the layout's manifest unchanged: its digest is the one to pull by.
    let manifest_digest = m.digest.clone();
    assert!(insp["RepoDigests"].to_string().contains(&manifest_digest), "inspect RepoDigests: {insp:#}");

    // By digest, into a fresh store.
    let eng2 = Eng::new(&ctx);
    let by_digest = format!("{}/berth/busybox@{manifest_digest}", reg.host);
    eng2.image(&["pull", "--insecure", &by_digest]).ok();
    assert_eq!(eng2.inspect(&by_digest)["Id"], json!(c.digest));
    assert_eq!(eng2.ids(), vec![c.hex()[..12].to_string()]);
    // The pulled image runs.
    let (o, bundle) = mount_and_run(&eng2, &by_digest, |_| {});
    o.ok();
    assert_eq!(o.stdout, "pulled\n", "{o}");
    umount_clean(&eng2, &bundle, "no-such-marker-xyz");
}

#[test]
fn image_pull_twice_fetches_no_blobs() {
    let ctx = Ctx::new("img-pull-twice");
    let (reg, _m, c) = registry_with_busybox(&ctx, RegistryOpts::default());
    let r = reg.reference("berth/busybox:v1");
    let eng = Eng::new(&ctx);
    let before = reg.blob_gets();
    eng.image(&["pull", "--insecure", &r]).ok();
    let first = reg.blob_gets();
    assert!(first >= before + 2, "first pull must GET the config and layer blobs ({before} → {first})");
    let snap = eng.store_snapshot();
    let o = eng.image(&["pull", "--insecure", &r]);
    o.ok();
    let second = reg.blob_gets();
    assert_eq!(second, first, "second pull fetched blobs again:\n{}", reg.access_lines().join("\n"));
    eng.assert_store_unchanged(&snap, "second pull");
    let out = format!("{}{}", o.stdout, o.stderr).to_lowercase();
    assert!(out.contains("up to date") || out.contains("exists"), "second pull must say the image is up to date: {o}");
    assert_eq!(eng.ids(), vec![c.hex()[..12].to_string()]);
}

#[test]
fn image_pull_multiarch_picks_platform() {
    let ctx = Ctx::new("img-multiarch");
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let (lay, _idx, per) = multiarch_oci_layout(&ctx, &ctx.tempdir("layout"), "multi");
    reg.push(&lay.dir, "multi", "berth/multi:v1", true);
    let r = reg.reference("berth/multi:v1");
    let cfg_of = |arch: &str| per.iter().find(|(a, _, _)| a == arch).unwrap().2.digest.clone();
    let other = if host_arch() == "arm64" { "amd64" } else { "arm64" };

    let eng = Eng::new(&ctx);
    eng.image(&["pull", "--insecure", &r]).ok();
    let insp = eng.inspect(&r);
    assert_eq!(insp["Id"], json!(cfg_of(host_arch())), "default pull must pick the host platform: {insp:#}");
    assert_eq!(insp["Architecture"], json!(host_arch()), "{insp:#}");

    let eng2 = Eng::new(&ctx);
    eng2.image(&["pull", "--insecure", "--platform", &format!("linux/{other}"), &r]).ok();
    let insp = eng2.inspect(&r);
    assert_eq!(insp["Id"], json!(cfg_of(other)), "--platform linux/{other}: {insp:#}");
    assert_eq!(insp["Architecture"], json!(other));

    let eng3 = Eng::new(&ctx);
    let snap = eng3.store_snapshot();
    let o = eng3.image(&["pull", "--insecure", "--platform", "linux/s390x", &r]);
    o.one_line_error(&["s390x"]);
    assert_contains(&o.stderr, &["amd64", "arm64"], "the error must name the available platforms");
    eng3.assert_store_unchanged(&snap, "pull of a missing platform");
}

/// One https registry on loopback with its own test CA: no CA given (the error names --tls-ca),
/// a wrong CA, --tls-ca, the CA as a system CA (SSL_CERT_FILE), and --insecure.
#[test]
fn image_pull_tls_ca() {
    let ctx = Ctx::new("img-tls");
    let (reg, _m, c) = registry_with_busybox(&ctx, RegistryOpts { tls: true, ..Default::default() });
    let r = reg.reference("berth/busybox:v1");
    let eng = Eng::new(&ctx);
    let snap = eng.store_snapshot();
    // No --tls-ca, no --insecure: berth notices the server speaks https and says its
    // certificate is not trusted, naming --tls-ca (not the server's "400 ... HTTPS server"
    // answer to plain http).
    let o = eng.image(&["pull", &r]);
    o.one_line_error(&["--tls-ca"]);
    let err = o.stderr.to_lowercase();
    assert!(
        err.contains("tls") && err.contains("certificate"),
        "the error must say it is a tls certificate problem: {o}"
    );
    assert!(!err.contains("400"), "the error must not be the server's answer to plain http: {o}");
    assert!(o.stderr.contains(&reg.host), "the error must name the registry {}: {o}", reg.host);
    eng.assert_store_unchanged(&snap, "pull from an untrusted https registry");
    // A wrong CA (another test CA): refused.
    let other = ctx.tempdir("other-ca");
    tool(
        std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=other-ca",
                "-keyout",
            ])
            .arg(other.join("k.pem"))
            .arg("-out")
            .arg(other.join("ca.pem")),
    );
    let o = eng.image(&["pull", "--tls-ca", s(&other.join("ca.pem")), &r]);
    o.one_line_error(&["tls", "certificate", "x509", "issuer"]);
    eng.assert_store_unchanged(&snap, "pull with the wrong CA");
    eng.image(&["pull", "--tls-ca", s(reg.ca.as_ref().unwrap()), &r]).ok();
    assert_eq!(eng.inspect(&r)["Id"], json!(c.digest));
    // With the test CA trusted as a system CA (SSL_CERT_FILE), the plain command pulls over https.
    let eng_sys = Eng::new(&ctx);
    let mut cmd = eng_sys.command(&["image", "pull", &r]);
    cmd.env("SSL_CERT_FILE", reg.ca.as_ref().unwrap());
    ctx.exec_cmd(cmd, IMAGE_TIMEOUT).ok();
    assert_eq!(eng_sys.inspect(&r)["Id"], json!(c.digest));
    let lines = reg.access_lines();
    assert!(
        lines.iter().any(|l| l.contains("/blobs/") && l.contains(" 200 ")),
        "no blob served over https:\n{}",
        lines.join("\n")
    );
    // --insecure skips verification.
    let eng2 = Eng::new(&ctx);
    eng2.image(&["pull", "--insecure", &r]).ok();
    assert_eq!(eng2.inspect(&r)["Id"], json!(c.digest));
}

#[test]
fn image_pull_corrupt_layer_digest_mismatch() {
    let ctx = Ctx::new("img-pull-corrupt");
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let (lay, m, c) =
        busybox_oci_layout(&ctx, &ctx.tempdir("layout"), "v1", None, &ImageSpec::new(&["sh", "-c", "echo pulled"]));
    reg.push(&lay.dir, "v1", "berth/busybox:v1", false);
    let r = reg.reference("berth/busybox:v1");
    // The layer blob as the registry stores it: flip one byte in the middle (same size, so
    // the registry still serves it with the descriptor's length).
    let manifest: Value = serde_json::from_slice(&fs::read(lay.blob_path(&m.digest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let hexd = layer.trim_start_matches("sha256:");
    let data = reg.dir.join(format!("storage/docker/registry/v2/blobs/sha256/{}/{hexd}/data", &hexd[..2]));
    let good = fs::read(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x5a;
    fs::write(&data, &bad).unwrap();

    let eng = Eng::new(&ctx);
    let o = eng.image(&["pull", &r]);
    // The layer is unpacked while it downloads; whatever the unpack made of the bad bytes,
    // the error is the digest mismatch, and nothing of the layer is kept.
    o.one_line_error(&["digest mismatch"]);
    assert!(o.stderr.contains(&hexd[..12]), "the error must name the layer blob: {o}");
    assert!(eng.ids().is_empty(), "a failed pull recorded an image");
    let snaps = dir_entries_sorted(&eng.data.join("image/snapshots"));
    assert!(snaps.is_empty(), "a failed pull left snapshots: {snaps:?}");
    let tmp = dir_entries_sorted(&eng.data.join("image/tmp"));
    assert!(tmp.is_empty(), "a failed pull left files in image/tmp: {tmp:?}");
    assert!(!eng.blobs().iter().any(|b| b.contains(hexd)), "the bad layer blob was kept: {:?}", eng.blobs());

    // Repaired at the registry: the same store pulls it.
    fs::write(&data, &good).unwrap();
    eng.image(&["pull", &r]).ok();
    assert_eq!(eng.inspect(&r)["Id"], json!(c.digest));
    let (o, bundle) = mount_and_run(&eng, &r, |_| {});
    o.ok();
    assert_eq!(o.stdout, "pulled\n", "{o}");
    umount_clean(&eng, &bundle, "no-such-marker-xyz");
}

#[test]
fn image_pull_killed_midway_store_consistent() {
    let ctx = Ctx::new("img-pull-kill");
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let name = "berth/debian:kill";
    let (lay, _m, cfg) = debian_oci_layout(&ctx, &ctx.tempdir("layout"), "kill", None, &ImageSpec::new(&["/bin/bash"]));
    reg.push(&lay.dir, "kill", name, false);
    let r = reg.reference(name);
    let eng = Eng::new(&ctx);
    // SIGKILL the pull at different points (connecting, downloading and unpacking, committing);
    // after each, what the store holds is complete: every snapshot has its done marker and
    // every blob its digest. tmp/ leftovers are garbage, cleared by the next command.
    for delay_ms in [50u64, 250, 500, 800] {
        let bg = eng.spawn_image(&["pull", "-q", &r]);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        // SAFETY: kill(2) of our own child's pid (its process group leader).
        unsafe { libc::kill(bg.pid(), libc::SIGKILL) };
        let o = bg.wait(IMAGE_TIMEOUT);
        let snaps = eng.data.join("image/snapshots");
        for s in dir_entries_sorted(&snaps) {
            assert!(
                snaps.join(&s).join("done").is_file(),
                "after a kill at {delay_ms} ms: snapshot {s} without its done marker ({o})"
            );
        }
        let blobs = eng.data.join("image/blobs/sha256");
        for b in dir_entries_sorted(&blobs) {
            let (d, _) = sha256_file(&blobs.join(&b));
            assert_eq!(d, b, "after a kill at {delay_ms} ms: blob {b} does not match its name");
        }
        let ids = eng.ids();
        assert!(ids.is_empty() || ids == vec![cfg.hex()[..12].to_string()], "after a kill at {delay_ms} ms: {ids:?}");
        let tmp = dir_entries_sorted(&eng.data.join("image/tmp"));
        assert!(tmp.is_empty(), "the next command did not clear image/tmp after a kill at {delay_ms} ms: {tmp:?}");
    }
    eng.image(&["pull", "-q", &r]).ok();
    assert_eq!(eng.inspect(&r)["Id"], json!(cfg.digest));
    // The pulled image is whole: its flat unpack matches one from the layout.
    let mine = ctx.dir.join("pulled-unpack");
    eng.image(&["unpack", &r, s(&mine)]).ok();
    let eng2 = Eng::new(&ctx);
    eng2.image(&["load", "-i", s(&lay.dir)]).ok();
    let theirs = ctx.dir.join("loaded-unpack");
    eng2.image(&["unpack", &cfg.digest, s(&theirs)]).ok();
    let diff = tree_diff("pulled", &walk_tree(&mine.join("rootfs")), "loaded", &walk_tree(&theirs.join("rootfs")));
    assert!(
        diff.is_empty(),
        "pulled image differs from the loaded one:\n{}",
        diff.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn image_pull_basic_auth_authfile() {
    let ctx = Ctx::new("img-basic");
    let creds = ("alice".to_string(), "s3cret-pw".to_string());
    let (reg, _m, c) =
        registry_with_busybox(&ctx, RegistryOpts { basic_auth: Some(creds.clone()), ..Default::default() });
    let r = reg.reference("berth/busybox:v1");
    let eng = Eng::new(&ctx);
    let snap = eng.store_snapshot();

    // No credentials, then a wrong password: one line naming the registry and the 401.
    let o = eng.image(&["pull", "--insecure", &r]);
    o.one_line_error(&["401", "unauthorized"]);
    let bad = ctx.dir.join("bad-auth.json");
    write_authfile(&bad, &[(&reg.host, "alice", "wrong")]);
    let o = eng.image(&["pull", "--insecure", "--authfile", s(&bad), &r]);
    o.one_line_error(&["401"]);
    assert!(o.stderr.contains(&reg.host), "the error must name the registry {}: {o}", reg.host);
    assert!(o.stderr.contains(s(&bad)), "the error must name the auth file the refused credentials came from: {o}");
    eng.assert_store_unchanged(&snap, "failed authenticated pulls");

    let good = ctx.dir.join("auth.json");
    write_authfile(&good, &[(&reg.host, "alice", "s3cret-pw")]);
    eng.image(&["pull", "--insecure", "--authfile", s(&good), &r]).ok();
    assert_eq!(eng.inspect(&r)["Id"], json!(c.digest));
}

#[test]
fn image_pull_bearer_token() {
    let ctx = Ctx::new("img-bearer");
    let (reg, _m, c) = registry_with_busybox(&ctx, RegistryOpts::default());
    let proxy = TokenProxy::start(&reg, Some(("bob".into(), "tok-pw".into())));
    let r = proxy.reference("berth/busybox:v1");
    let auth = ctx.dir.join("auth.json");
    write_authfile(&auth, &[(&proxy.host, "bob", "tok-pw")]);
    let eng = Eng::new(&ctx);
    let o = eng.image(&["pull", "--insecure", "--authfile", s(&auth), &r]);
    let seen = proxy.seen().join("\n");
    assert!(o.code == 0, "pull through the bearer front failed: {o}\nfront saw:\n{seen}");
    assert_eq!(eng.inspect(&r)["Id"], json!(c.digest));
    assert!(
        proxy.seen().iter().any(|l| l.contains("/token?") && l.contains("repository%3Aberth%2Fbusybox%3Apull")
            || l.contains("/token?") && l.contains("repository:berth/busybox:pull")),
        "no token request for repository:berth/busybox:pull:\n{seen}"
    );
    assert!(
        proxy.seen().iter().any(|l| l.contains("/token") && l.ends_with("[basic-ok]")),
        "token request without the credentials:\n{seen}"
    );
    assert!(
        proxy.seen().iter().any(|l| l.contains("/blobs/") && l.ends_with("[bearer-ok]")),
        "no blob fetched with the token:\n{seen}"
    );

    // Wrong credentials for the token: fails, one line.
    let bad = ctx.dir.join("bad.json");
    write_authfile(&bad, &[(&proxy.host, "bob", "nope")]);
    let eng2 = Eng::new(&ctx);
    eng2.image(&["pull", "--insecure", "--authfile", s(&bad), &r]).one_line_error(&["401", "unauthorized", "token"]);
}

#[test]
fn image_pull_missing_tag_404() {
    let ctx = Ctx::new("img-404");
    let (reg, _m, _c) = registry_with_busybox(&ctx, RegistryOpts::default());
    let eng = Eng::new(&ctx);
    let snap = eng.store_snapshot();
    let o = eng.image(&["pull", "--insecure", &reg.reference("berth/busybox:nope")]);
    o.one_line_error(&["404", "not found", "manifest unknown"]);
    assert!(o.stderr.contains("nope"), "the error must name the missing tag: {o}");
    eng.assert_store_unchanged(&snap, "pull of a missing tag");
    let o = eng.image(&["pull", "--insecure", &reg.reference("berth/missing-repo:v1")]);
    o.one_line_error(&["404", "not found", "unknown"]);
    eng.assert_store_unchanged(&snap, "pull of a missing repository");
}

#[test]
fn image_pull_concurrent_same_ref() {
    let ctx = Ctx::new("img-concurrent");
    let (reg, _m, c) = registry_with_busybox(&ctx, RegistryOpts::default());
    let r = reg.reference("berth/busybox:v1");
    let eng = Eng::new(&ctx);
    let a = eng.spawn_image(&["pull", "--insecure", &r]);
    let b = eng.spawn_image(&["pull", "--insecure", &r]);
    let (oa, ob) = (a.wait(IMAGE_TIMEOUT), b.wait(IMAGE_TIMEOUT));
    oa.ok();
    ob.ok();
    assert_eq!(eng.ids(), vec![c.hex()[..12].to_string()], "one image after two parallel pulls");
    let tmp = eng.data.join("image/tmp");
    assert!(dir_entries_sorted(&tmp).is_empty(), "image/tmp not empty: {:?}", dir_entries_sorted(&tmp));
    assert_eq!(eng.inspect(&r)["Id"], json!(c.digest));
    // The store is consistent: a flat unpack works.
    eng.image(&["unpack", &r, s(&ctx.dir.join("flat"))]).ok();
}

// ---------------------------------------------------------------------------------------------
// rm / tag / prune

fn load_saved(ctx: &Ctx, eng: &Eng, layer: &Path, tag: &str, cmd: &str) -> String {
    let archive = ctx.dir.join(format!("saved-{}.tar", ctx.id("a")));
    let cfg = docker_save_archive(ctx, &archive, layer, &[tag], &ImageSpec::new(&["sh", "-c", cmd]));
    eng.image(&["load", "-i", s(&archive)]).ok();
    cfg
}

#[test]
fn image_rm_refused_while_mounted() {
    let ctx = Ctx::new("img-rm-inuse");
    let eng = Eng::new(&ctx);
    let layer = busybox_layer_tar(&ctx, "rm");
    let cfg = load_saved(&ctx, &eng, &layer, "berth-test/rm:v1", "true");
    let bundle = ctx.dir.join("mnt");
    eng.image(&["mount", "berth-test/rm:v1", s(&bundle)]).ok();
    let o = eng.image(&["rm", "berth-test/rm:v1"]);
    o.one_line_error(&["in use", "used", "using", "mounted"]);
    assert_eq!(eng.inspect("berth-test/rm:v1")["Id"], json!(cfg), "image must stay after a refused rm");
    assert!(!mounts_under(&bundle).is_empty(), "refused rm must not touch the mount");
    umount_clean(&eng, &bundle, "no-such-marker-xyz");
    eng.image(&["rm", "berth-test/rm:v1"]).ok();
    assert!(eng.ids().is_empty(), "rm after umount");
    eng.image(&["inspect", "berth-test/rm:v1"]).one_line_error(&["rm:v1", "no such", "not found"]);

    // -f while mounted: the name goes; the mount keeps working until umount.
    load_saved(&ctx, &eng, &layer, "berth-test/rm:v2", "true");
    let b2 = ctx.dir.join("mnt2");
    eng.image(&["mount", "berth-test/rm:v2", s(&b2)]).ok();
    eng.image(&["rm", "-f", "berth-test/rm:v2"]).ok();
    assert!(!eng.image(&["ls"]).stdout.contains("berth-test/rm"), "rm -f must remove the name");
    assert!(b2.join("rootfs/bin/busybox").exists(), "rm -f must not break a mounted rootfs");
    umount_clean(&eng, &b2, "no-such-marker-xyz");
}

#[test]
fn image_tag_and_rm_name() {
    let ctx = Ctx::new("img-tag");
    let eng = Eng::new(&ctx);
    let layer = busybox_layer_tar(&ctx, "tag");
    let cfg = load_saved(&ctx, &eng, &layer, "berth-test/tag:v1", "true");
    eng.image(&["tag", "berth-test/tag:v1", "localhost:5000/other/name:t2"]).ok();
    let ls = eng.image(&["ls"]);
    ls.ok();
    assert_contains(&ls.stdout, &["berth-test/tag", "localhost:5000/other/name", "t2"], "image ls after tag");
    assert_eq!(eng.inspect("localhost:5000/other/name:t2")["Id"], json!(cfg));
    assert_eq!(eng.ids().len(), 1, "one image, two names: ls -q shows it once");
    let blobs = eng.blobs();
    eng.image(&["rm", "localhost:5000/other/name:t2"]).ok();
    assert_eq!(eng.inspect("berth-test/tag:v1")["Id"], json!(cfg), "the other name stays");
    assert_eq!(eng.blobs(), blobs, "removing one of two names must keep every blob");
    eng.image(&["inspect", "localhost:5000/other/name:t2"]).fails();
    eng.image(&["tag", "berth-test/nope:v1", "x:y"]).one_line_error(&["nope", "no such", "not found"]);
}

#[test]
fn image_prune_dangling_and_all() {
    let ctx = Ctx::new("img-prune");
    let eng = Eng::new(&ctx);
    let layer = busybox_layer_tar(&ctx, "prune");
    let a = load_saved(&ctx, &eng, &layer, "berth-test/p:v1", "echo A");
    let b = load_saved(&ctx, &eng, &layer, "berth-test/p:v1", "echo B");
    assert_ne!(a, b);
    assert_eq!(eng.inspect("berth-test/p:v1")["Id"], json!(b), "the second load takes the name");
    let blob = |d: &str| eng.data.join("image/blobs/sha256").join(&d[7..]);
    assert!(blob(&a).exists(), "the dangling image keeps its config blob until prune");
    eng.image(&["prune"]).ok();
    let ids = eng.ids();
    assert_eq!(ids, vec![b[7..19].to_string()], "prune removes the dangling image only");
    assert!(!blob(&a).exists(), "prune must delete the dangling config blob");
    assert!(blob(&b).exists());

    // prune -a keeps what is in use (mounted), then removes everything.
    let bundle = ctx.dir.join("mnt");
    eng.image(&["mount", "berth-test/p:v1", s(&bundle)]).ok();
    eng.image(&["prune", "-a"]).ok();
    assert_eq!(eng.ids(), vec![b[7..19].to_string()], "prune -a must keep a mounted image");
    umount_clean(&eng, &bundle, "no-such-marker-xyz");
    eng.image(&["prune", "-a"]).ok();
    assert!(eng.ids().is_empty(), "prune -a");
    assert!(eng.blobs().is_empty(), "blobs left after prune -a: {:?}", eng.blobs());
    let snaps = dir_entries_sorted(&eng.data.join("image/snapshots"));
    assert!(snaps.is_empty(), "snapshots left after prune -a: {snaps:?}");
}

// ---------------------------------------------------------------------------------------------
// bad input leaves the store as it was

/// A store with one good image in it (so every file the store makes exists) and its snapshot.
fn store_with_one_image<'a>(ctx: &'a Ctx) -> (Eng<'a>, (Vec<String>, Vec<u8>)) {
    let eng = Eng::new(ctx);
    let layer = busybox_layer_tar(ctx, "good");
    load_saved(ctx, &eng, &layer, "berth-test/good:v1", "true");
    let snap = eng.store_snapshot();
    (eng, snap)
}

#[test]
fn image_load_truncated_gzip_store_unchanged() {
    let ctx = Ctx::new("img-trunc");
    let (eng, snap) = store_with_one_image(&ctx);
    let layer = busybox_layer_tar(&ctx, "trunc");
    let archive = ctx.dir.join("t.tar");
    docker_save_archive(&ctx, &archive, &layer, &["berth-test/trunc:v1"], &ImageSpec::new(&["sh"]));
    tool(std::process::Command::new("gzip").arg("-n").arg(&archive));
    let gz = ctx.dir.join("t.tar.gz");
    let data = fs::read(&gz).unwrap();
    fs::write(&gz, &data[..data.len() * 2 / 3]).unwrap();
    one_line_failure(&eng.image(&["load", "-i", s(&gz)]));
    eng.assert_store_unchanged(&snap, "load of a truncated archive");

    // A truncated gzip layer inside an OCI layout (blob and digest agree with the cut bytes).
    let lay = Layout::create(&ctx.tempdir("layout"));
    let full = lay.add_layer(&layer, true);
    let bytes = fs::read(lay.blob_path(&full.desc.digest)).unwrap();
    let cut = lay.add_blob(OCI_LAYER_GZIP, &bytes[..bytes.len() / 2]);
    let (m, _) = lay.add_image(&[Layer { desc: cut, diff_id: full.diff_id.clone() }], &ImageSpec::new(&["sh"]));
    lay.tag(&m, "v1", Some("localhost/berth-test/cut:v1"));
    one_line_failure(&eng.image(&["load", "-i", s(&lay.dir)]));
    eng.assert_store_unchanged(&snap, "load of a truncated layer");
}

#[test]
fn image_load_digest_mismatch_store_unchanged() {
    let ctx = Ctx::new("img-digest");
    let (eng, snap) = store_with_one_image(&ctx);
    let layer = busybox_layer_tar(&ctx, "digest");

    // A flipped byte in an uncompressed layer (tar still parses).
    let lay = Layout::create(&ctx.tempdir("layout"));
    let l = lay.add_layer(&layer, false);
    let (m, _) = lay.add_image(std::slice::from_ref(&l), &ImageSpec::new(&["sh"]));
    lay.tag(&m, "v1", Some("localhost/berth-test/flip:v1"));
    lay.corrupt_blob(&l.desc.digest, |b| {
        let i = b.windows(19).position(|w| w == b"berth-itest-rootfs\n").expect("marker in layer");
        b[i] ^= 0x20;
    });
    let o = eng.image(&["load", "-i", s(&lay.dir)]);
    o.one_line_error(&["digest", "mismatch"]);
    assert!(o.stderr.contains(&l.desc.hex()[..12]), "the error must name the blob: {o}");
    eng.assert_store_unchanged(&snap, "load of a layer with a flipped byte");

    // A changed config blob (still valid JSON).
    let lay = Layout::create(&ctx.tempdir("layout"));
    let l = lay.add_layer(&layer, true);
    let (m, c) = lay.add_image(&[l], &ImageSpec::new(&["sh", "-c", "echo abc"]));
    lay.tag(&m, "v1", Some("localhost/berth-test/cfg:v1"));
    lay.corrupt_blob(&c.digest, |b| {
        let i = b.windows(8).position(|w| w == b"echo abc").unwrap();
        b[i + 5] = b'x';
    });
    let o = eng.image(&["load", "-i", s(&lay.dir)]);
    o.one_line_error(&["digest", "mismatch"]);
    assert!(o.stderr.contains(&c.hex()[..12]), "the error must name the blob: {o}");
    eng.assert_store_unchanged(&snap, "load of a changed config");
}

#[test]
fn image_load_unknown_media_type_store_unchanged() {
    let ctx = Ctx::new("img-mediatype");
    let (eng, snap) = store_with_one_image(&ctx);
    let layer = busybox_layer_tar(&ctx, "mt");
    let lay = Layout::create(&ctx.tempdir("layout"));
    let mut l = lay.add_layer(&layer, true);
    l.desc.media_type = "application/vnd.berth.test.unknown".into();
    let (m, _) = lay.add_image(&[l], &ImageSpec::new(&["sh"]));
    lay.tag(&m, "v1", Some("localhost/berth-test/mt:v1"));
    eng.image(&["load", "-i", s(&lay.dir)]).one_line_error(&["application/vnd.berth.test.unknown"]);
    eng.assert_store_unchanged(&snap, "load with an unknown layer media type");
}

#[test]
fn image_load_layer_escape_rejected() {
    let ctx = Ctx::new("img-escape");
    let (eng, snap) = store_with_one_image(&ctx);
    let uniq = format!("{}-{}", std::process::id(), ctx.id("e"));
    let outside = Path::new(TMP_BASE).join(format!("evil-{uniq}"));
    let outside_dir = ctx.tempdir("outside");
    let load_layer = |name: &str, entries: Value| -> Out {
        let tarp = ctx.dir.join(format!("{name}.tar"));
        python_tar(&tarp, &entries);
        let lay = Layout::create(&ctx.tempdir("layout"));
        let l = lay.add_layer(&tarp, true);
        let (m, _) = lay.add_image(&[l], &ImageSpec::new(&["sh"]));
        lay.tag(&m, "v1", Some(&format!("localhost/berth-test/{name}:v1")));
        eng.image(&["load", "-i", s(&lay.dir)])
    };

    // ../ escape: refused, naming the entry.
    let rel = format!("{}{}", "../".repeat(12), outside.to_str().unwrap().trim_start_matches('/'));
    let o = load_layer("dotdot", json!([{"name": "ok-file", "data": "fine\n"}, {"name": rel, "data": "pwned\n"}]));
    o.one_line_error(&[&format!("evil-{uniq}")]);
    assert!(!outside.exists(), "{} was created outside the layer", outside.display());
    assert!(
        find_named(&eng.data, "evil-").is_empty(),
        "the entry was written inside the store: {:?}",
        find_named(&eng.data, "evil-")
    );
    eng.assert_store_unchanged(&snap, "load of a ../ layer");

    // Through a symlink that points outside: refused or kept inside, never written outside.
    let o = load_layer(
        "symlink",
        json!([{"name": "sub", "type": "symlink", "link": outside_dir.to_str().unwrap()},
               {"name": "sub/pwned", "data": "pwned\n"},
               {"name": "rel", "type": "symlink", "link": "../../../../../../../../../../../.."},
               {"name": "rel/tmp/pwned-rel", "data": "pwned\n"}]),
    );
    assert!(!outside_dir.join("pwned").exists(), "a layer wrote through a symlink to {}: {o}", outside_dir.display());
    assert!(!Path::new("/tmp/pwned-rel").exists(), "a layer wrote through a relative symlink to /tmp: {o}");
    if o.code != 0 {
        o.one_line_error(&["sub", "rel", "symlink", "leaves", "outside"]);
        eng.assert_store_unchanged(&snap, "load of a symlink-escape layer");
    }

    // A hard link to a host file: refused or linked inside, never to the host's file.
    let o = load_layer(
        "hardlink",
        json!([{"name": "hl", "type": "hardlink", "link": "../../../../../../../../../../etc/passwd"}]),
    );
    let host = fs::metadata("/etc/passwd").unwrap();
    let linked: Vec<PathBuf> = find_named(&eng.data, "hl")
        .into_iter()
        .filter(|p| {
            fs::metadata(p)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m) == std::os::unix::fs::MetadataExt::ino(&host))
                .unwrap_or(false)
        })
        .collect();
    assert!(linked.is_empty(), "a layer hard-linked the host's /etc/passwd: {linked:?} {o}");
    o.one_line_error(&["hl", "passwd", "leaves", "outside", "link"]);
    eng.assert_store_unchanged(&snap, "load of a hard-link escape layer");
}

// ---------------------------------------------------------------------------------------------
// Debian: multi-layer image, compared with umoci; run

#[test]
fn image_unpack_debian_matches_umoci() {
    let ctx = Ctx::new("img-debian-cmp");
    let eng = Eng::new(&ctx);
    let name = "localhost/berth-test/debian:layered";
    let (lay, _m, cfg) =
        debian_oci_layout(&ctx, &ctx.tempdir("layout"), "layered", Some(name), &ImageSpec::new(&["/bin/bash"]));
    eng.image(&["load", "-i", s(&lay.dir)]).ok();
    assert_eq!(eng.inspect(name)["Id"], json!(cfg.digest));
    let mine = ctx.dir.join("berth-unpack");
    eng.image(&["unpack", name, s(&mine)]).ok();
    let theirs = ctx.dir.join("umoci-unpack");
    tool(
        std::process::Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:layered", lay.dir.display()))
            .arg(&theirs),
    );

    let a = walk_tree(&mine.join("rootfs"));
    let b = walk_tree(&theirs.join("rootfs"));
    let diff = tree_diff("berth", &a, "umoci", &b);
    assert!(
        diff.is_empty(),
        "berth image unpack differs from umoci unpack ({} differences):\n{}",
        diff.len(),
        diff.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );

    // And the layer's intent, checked directly.
    let r = mine.join("rootfs");
    assert!(fs::symlink_metadata(r.join("etc/issue.net")).is_err(), "whiteout of a file");
    assert!(fs::symlink_metadata(r.join("usr/share/doc")).is_err(), "whiteout of a directory");
    assert_eq!(dir_entries_sorted(&r.join("etc/apt/apt.conf.d")), vec!["99berth"], "opaque directory");
    assert_eq!(fs::read_to_string(r.join("etc/debian_version")).unwrap(), "berth-layer2\n");
    assert!(fs::symlink_metadata(r.join("var/opt")).unwrap().is_file(), "a directory replaced by a file");
    let wh: Vec<&String> = a.0.keys().filter(|p| p.contains(".wh.")).collect();
    assert!(wh.is_empty(), "whiteout files left in the tree: {wh:?}");
    assert!(
        a.1.contains(&vec!["berth/file".to_string(), "berth/hardlink1".into(), "berth/hardlink2".into()]),
        "hard links: {:?}",
        a.1
    );
    let x = &a.0["berth/xattr"];
    assert_eq!(x.xattrs.get("user.berth").map(|v| v.as_slice()), Some(&b"hello"[..]), "user xattr");
    assert_eq!((a.0["berth/owned"].uid, a.0["berth/owned"].gid), (1000, 1000));
    assert_eq!(a.0["berth/setuid"].mode, 0o4755);
    assert_eq!(a.0["berth/sticky"].mode, 0o1777);
    assert_eq!(a.0["berth/fifo"].kind, 'p');
    assert_eq!(a.0["berth/symlink"].content, "file");
}

#[test]
fn image_run_debian_layered() {
    let ctx = Ctx::new("img-debian-run");
    let eng = Eng::new(&ctx);
    let name = "localhost/berth-test/debian:run";
    let spec = ImageSpec::new(&["/bin/bash", "-c", "echo $BASH_VERSION"]);
    let (lay, _m, _cfg) = debian_oci_layout(&ctx, &ctx.tempdir("layout"), "run", Some(name), &spec);
    eng.image(&["load", "-i", s(&lay.dir)]).ok();
    let script = "cat /etc/debian_version; dpkg-query -W -f='${Package}\\n' dpkg; ls /etc/apt/apt.conf.d; \
                  test -e /etc/issue.net || echo no-issue-net; stat -c %u:%g:%a /berth/owned; cat /berth/hardlink2; \
                  getfattr --version >/dev/null 2>&1; echo changed > /etc/debian_version; touch /upper-marker-debian; echo done";
    let (o, bundle) = mount_and_run(&eng, name, |c| {
        c["process"]["args"] = json!(["/bin/bash", "-c", script]);
    });
    o.ok();
    assert_eq!(o.stdout, "berth-layer2\ndpkg\n99berth\nno-issue-net\n1000:1000:600\nhello hardlinks\ndone\n", "{o}");
    // The container's writes went to the upper dir, not into the image's layers.
    umount_clean(&eng, &bundle, "upper-marker-debian");
    let dir = ctx.dir.join("after");
    eng.image(&["unpack", name, s(&dir)]).ok();
    assert_eq!(
        fs::read_to_string(dir.join("rootfs/etc/debian_version")).unwrap(),
        "berth-layer2\n",
        "a container write reached the image"
    );
}

/// The image store's crash points (src/faults/: each side of the renames that publish a
/// blob, a snapshot and the index): `image load` and `image pull` killed with SIGKILL at each
/// one, as a power loss would stop them. Afterwards `image check` (every blob re-hashed, every
/// image's blobs and snapshots present and complete) finds no problem, the same command then
/// succeeds, and `rmi` + `image prune` leave no blob or snapshot. Then the check must fail:
/// a blob with a flipped byte and a snapshot without its completion marker, each named.
#[test]
fn image_crash_at_each_store_point_then_check() {
    let ctx = Ctx::new("img-crash");
    if !crate::crash::hooks_honoured(&ctx) {
        eprintln!("SKIPPED: the binary under test ignores BERTH_CRASH_AT (release build)");
        return;
    }
    let points = [
        "image.blob.synced",
        "image.blob.renamed",
        "image.snapshot.synced",
        "image.snapshot.renamed",
        "image.index.tmp-synced",
        "image.index.renamed",
    ];
    let check_clean = |eng: &Eng, what: &str| {
        let o = eng.image(&["check"]);
        assert_eq!(o.code, 0, "{what}: image check must find no problem: {o}");
        assert!(o.stdout.contains(" 0 problem(s)"), "{what}: {o}");
    };
    let tar = busybox_layer_tar(&ctx, "crash");
    let archive = ctx.dir.join("saved.tar");
    docker_save_archive(&ctx, &archive, &tar, &["berth-test/crash:v1"], &ImageSpec::new(&["sh"]));
    let (reg, _m, _c) = registry_with_busybox(&ctx, RegistryOpts::default());
    let by_tag = reg.reference("berth/busybox:v1");
    for point in points {
        for (verb, args) in [("load", vec!["load", "-i", s(&archive)]), ("pull", vec!["pull", "--insecure", &by_tag])] {
            let eng = Eng::new(&ctx);
            let what = format!("{verb} killed at {point}");
            let mut v = vec!["image"];
            v.extend_from_slice(&args);
            let mut c = eng.command(&v);
            c.env("BERTH_CRASH_AT", point);
            let o = ctx.exec_cmd(c, IMAGE_TIMEOUT);
            assert_eq!(o.code, 128 + 9, "{what}: berth should have killed itself there: {o}");
            check_clean(&eng, &what);
            eng.image(&args).ok();
            check_clean(&eng, &format!("{what}, then again"));
            let name = if verb == "load" { "berth-test/crash:v1" } else { by_tag.as_str() };
            eng.image(&["rm", name]).ok();
            eng.image(&["prune", "-a"]).ok();
            let o = eng.image(&["check"]);
            assert!(o.stdout.contains("0 blobs re-hashed, 0 snapshots, 0 images"), "{what}: after rm and prune: {o}");
        }
    }

    // Corruption is found and named.
    let eng = Eng::new(&ctx);
    eng.image(&["load", "-i", s(&archive)]).ok();
    check_clean(&eng, "fresh load");
    let blobs = eng.data.join("image/blobs/sha256");
    let victim = fs::read_dir(&blobs).unwrap().flatten().map(|e| e.path()).max_by_key(|p| p.metadata().unwrap().len());
    let victim = victim.unwrap();
    let mut data = fs::read(&victim).unwrap();
    data[100] ^= 0x20;
    fs::write(&victim, &data).unwrap();
    let snap = fs::read_dir(eng.data.join("image/snapshots")).unwrap().flatten().next().unwrap().path();
    fs::remove_file(snap.join("done")).unwrap();
    let o = eng.image(&["check"]);
    assert_ne!(o.code, 0, "{o}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(o.stdout.contains(&format!("corrupt blob sha256:{name}")), "{o}");
    assert!(o.stdout.contains(&format!("incomplete snapshot {}", snap.display())), "{o}");
    one_line_failure(&o);
}

/// 20 parallel pulls into one store of two images that share their base layer (half pull
/// `v1` = base, half `v2` = base + one layer): every pull succeeds, the store holds both
/// images, one snapshot per layer chain, and `image check` finds no problem.
#[test]
fn image_pull_20_parallel_overlapping() {
    let ctx = Ctx::new("img-pull-20");
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let lay = Layout::create(&ctx.tempdir("layout"));
    let base_tar = busybox_layer_tar(&ctx, "base");
    let base = lay.add_layer(&base_tar, true);
    let extra_dir = ctx.tempdir("extra");
    fs::create_dir_all(extra_dir.join("etc")).unwrap();
    fs::write(extra_dir.join("etc/extra-marker"), "extra\n").unwrap();
    let extra_tar = ctx.dir.join("extra.tar");
    tar_dir(&extra_dir, &extra_tar);
    let extra = lay.add_layer(&extra_tar, true);
    let (m1, _) = lay.add_image(std::slice::from_ref(&base), &ImageSpec::new(&["sh"]));
    let (m2, _) = lay.add_image(&[base, extra], &ImageSpec::new(&["sh"]));
    lay.tag(&m1, "v1", None);
    reg.push(&lay.dir, "v1", "berth/overlap:v1", false);
    lay.tag(&m2, "v2", None);
    reg.push(&lay.dir, "v2", "berth/overlap:v2", false);
    let eng = Eng::new(&ctx);
    let refs = [reg.reference("berth/overlap:v1"), reg.reference("berth/overlap:v2")];
    let jobs: Vec<Bg> = (0..20).map(|i| eng.spawn_image(&["pull", "--insecure", &refs[i % 2]])).collect();
    for (i, j) in jobs.into_iter().enumerate() {
        let o = j.wait(IMAGE_TIMEOUT);
        assert_eq!(o.code, 0, "pull {i}: {o}");
    }
    assert_eq!(eng.ids().len(), 2, "two images");
    let o = eng.image(&["check"]);
    o.ok();
    assert!(o.stdout.contains("2 snapshots, 2 images: 0 problem(s)"), "{o}");
}
