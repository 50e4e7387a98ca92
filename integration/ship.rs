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

/// Push (a monolithic PUT and a PATCH + PUT blob upload), the registry's copy checked with skopeo,
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
        ],
        "push",
    );
    // The 20 MB layer (above 16 MiB) went in one PATCH then a PUT; the busybox layer in one PUT.
    let patches = requests(&reg, "PATCH", "/ship/one/blobs/uploads/");
    assert_eq!(patches.len(), 1, "upload above 16 MiB: PATCH requests: {patches:#?}");
    let puts = requests(&reg, "PUT", "/ship/one/blobs/uploads/");
    assert_eq!(puts.len(), 3, "one closing PUT per blob (2 layers + config): {puts:#?}");

    // What the registry holds is the stored manifest, its plain layer replaced by that
    // layer's gzip blob (docker's push compresses what it stores uncompressed).
    let raw = skopeo_inspect(&reg, "ship/one:v1", true);
    let pushed = format!("sha256:{}", sha256_bytes(raw.as_bytes()));
    assert_contains(&o.stdout, &[&format!("v1: digest: {pushed} size: {}\n", raw.len())], "push");
    let mut want: Value =
        serde_json::from_slice(&fs::read(eng.data.join("image/blobs/sha256").join(m.hex())).unwrap()).unwrap();
    let mut doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["layers"][1]["mediaType"], json!("application/vnd.oci.image.layer.v1.tar+gzip"), "{raw}");
    let gz = doc["layers"][1]["digest"].as_str().unwrap().to_string();
    assert_ne!(gz, layers[1].desc.digest, "{raw}");
    want["layers"][1] = doc["layers"][1].clone();
    doc.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    assert_eq!(doc, want, "pushed manifest: the stored one with the gzip layer");
    let info: Value = serde_json::from_str(&skopeo_inspect(&reg, "ship/one:v1", false)).unwrap();
    assert_eq!(info["Digest"], json!(pushed), "{info:#}");
    assert_eq!(info["Layers"], json!([layers[0].desc.digest.clone(), gz]), "{info:#}");
    let insp = eng.inspect(&one);
    assert!(
        insp["RepoDigests"].as_array().unwrap().contains(&json!(format!("{}@{pushed}", reg.reference("ship/one")))),
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
    assert_contains(&o.stdout, &[&format!("v1: digest: {pushed} ")], "second push");
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
    assert_eq!(info["Digest"], json!(pushed), "{info:#}");

    // On a terminal (script(1) gives it a pty): lines redrawn in place with the bytes sent.
    // (Another registry: nothing there to mount from.)
    let reg2 = Registry::start(&ctx, RegistryOpts::default());
    let three = reg2.reference("ship/three:v1");
    eng.image(&["tag", local, &three]).ok();
    let line = format!(
        "{} --root {} --data-root {} image push {three}",
        ctx.bin.display(),
        ctx.root.display(),
        eng.data.display()
    );
    let tty = tool(Command::new("script").args(["-qec", &line, "/dev/null"]));
    assert!(tty.contains("\x1b[1A") || tty.contains("\x1b[2A"), "no redraw on a terminal: {tty:?}");
    assert!(tty.contains(" MB/") && tty.contains(": Pushed"), "no progress on a terminal: {tty:?}");
}

/// Layers berth made itself (an `image build` COPY and RUN step: plain tars in the store) go
/// gzip-compressed with the gzip media type, as docker pushes them; the image id stays the
/// same. skopeo copies the pushed image (every digest verified) and its layers gunzip to the
/// diff ids; podman (private root) and a private dockerd 20.10 pull it with the same id, and
/// docker runs it. A push the registry refuses keeps no gzip blob. A second push sends nothing and gives the same manifest digest; removing
/// the image removes the gzip blobs with it.
#[test]
fn ship_push_compresses_built_layers() {
    let ctx = Ctx::new("ship-gzip");
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let eng = Eng::new(&ctx);
    let base = "localhost/berth-test/gzbase:v1";
    let lay = ctx.tempdir("layout");
    busybox_oci_layout(&ctx, &lay, "v1", Some(base), &ImageSpec::new(&["sh"]));
    eng.image(&["load", "-i", s(&lay)]).ok();
    let bctx = ctx.tempdir("bctx");
    // Compressible: 1 MB of text.
    let text: String = (0..20_000).map(|i| format!("line {i:08} of the built layer\n")).collect();
    fs::write(bctx.join("data.txt"), &text).unwrap();
    fs::write(
        bctx.join("Dockerfile"),
        format!("FROM {base}\nCOPY data.txt /opt/data.txt\nRUN echo built > /built.txt\n"),
    )
    .unwrap();
    let name = reg.reference("gz/built:v1");
    eng.image(&["build", "-q", "--network", "none", "-t", &name, s(&bctx)]).ok();
    let id = eng.inspect(&name)["Id"].as_str().unwrap().to_string();
    let cfg: Value =
        serde_json::from_slice(&fs::read(eng.data.join("image/blobs/sha256").join(&id[7..])).unwrap()).unwrap();
    let diff_ids: Vec<String> =
        cfg["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
    assert_eq!(diff_ids.len(), 3, "{cfg:#}");

    // Refused by a read-only registry: the gzip blobs made for it are not kept.
    let ro = Registry::start(&ctx, RegistryOpts { readonly: true, ..Default::default() });
    let ro_name = ro.reference("gz/ro:v1");
    eng.image(&["tag", &name, &ro_name]).ok();
    let before = eng.store_snapshot();
    eng.image(&["push", &ro_name]).one_line_error(&["405", "UNSUPPORTED"]);
    eng.assert_store_unchanged(&before, "refused push of a built image");
    eng.image(&["rm", &ro_name]).ok();

    let o = eng.image(&["push", &name]);
    o.ok();
    let raw = skopeo_inspect(&reg, "gz/built:v1", true);
    let digest = format!("sha256:{}", sha256_bytes(raw.as_bytes()));
    assert_contains(&o.stdout, &[&format!("v1: digest: {digest} size: {}\n", raw.len())], "push");
    assert_eq!(o.stdout.matches(": Pushed\n").count(), 3, "{o}");
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["mediaType"], json!("application/vnd.oci.image.manifest.v1+json"), "{raw}");
    assert_eq!(doc["config"]["digest"], json!(id), "{raw}");
    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{raw}");
    for l in layers {
        assert_eq!(l["mediaType"], json!("application/vnd.oci.image.layer.v1.tar+gzip"), "{raw}");
    }
    // The registry's blobs (skopeo verifies each digest as it copies) gunzip to the diff ids;
    // the COPY layer is smaller compressed.
    let out = ctx.dir.join("copied");
    let mut c = Command::new("skopeo");
    c.args(["copy", "--quiet", "--src-tls-verify=false"]).arg(format!("docker://{name}"));
    c.arg(format!("dir:{}", out.display())).env("HOME", &reg.dir).env("TMPDIR", &reg.dir);
    tool(&mut c);
    for (l, want) in layers.iter().zip(&diff_ids) {
        let blob = fs::read(out.join(&l["digest"].as_str().unwrap()[7..])).unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut plain).unwrap();
        assert_eq!(format!("sha256:{}", sha256_bytes(&plain)), *want, "a pushed layer does not gunzip to its diff id");
    }
    let copy_layer = layers[1]["size"].as_u64().unwrap();
    assert!(copy_layer < text.len() as u64 / 4, "the COPY layer was not compressed: {copy_layer} bytes");

    // podman (private root) pulls it: the same id.
    let pd = ctx.tempdir("podman");
    podman(&pd, &["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(podman(&pd, &["image", "inspect", "--format", "{{.Id}}", &name]).trim(), &id[7..]);
    // A private dockerd 20.10 pulls it (127.0.0.0/8 is an insecure registry by default) and runs it.
    let d = crate::layers::Dockerd::start(&ctx);
    let run = |args: &[&str]| {
        let o =
            d.docker(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).output().unwrap();
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    run(&["pull", "-q", &name]);
    assert_eq!(run(&["image", "inspect", "--format", "{{.Id}}", &name]).trim(), id);
    assert!(run(&["image", "inspect", "--format", "{{.RepoDigests}}", &name]).contains(&digest));
    let o = run(&["run", "--rm", "--network", "none", &name, "sh", "-c", "md5sum < /opt/data.txt; cat /built.txt"]);
    let md5 = tool(Command::new("md5sum").arg(bctx.join("data.txt")));
    assert_eq!(o, format!("{}  -\nbuilt\n", md5.split_whitespace().next().unwrap()));
    drop(d);

    // Again: the same gzip blobs, all already there, the same manifest digest.
    let before = requests(&reg, "POST", "/blobs/uploads/").len();
    let o = eng.image(&["push", &name]);
    o.ok();
    assert_eq!(o.stdout.matches(": Layer already exists\n").count(), 3, "{o}");
    assert_contains(&o.stdout, &[&format!("v1: digest: {digest} ")], "second push");
    assert_eq!(requests(&reg, "POST", "/blobs/uploads/").len(), before, "second push started uploads");
    assert!(eng.inspect(&name)["RepoDigests"].to_string().contains(&digest));

    // The gzip blobs are the image's: `image check` clean; gone with it.
    eng.image(&["check"]).ok();
    eng.image(&["rm", &name, base]).ok();
    eng.cmd(&["builder", "prune", "-a", "-f"]).ok();
    eng.image(&["prune", "-a", "-f"]).ok();
    let left = dir_entries_sorted(&eng.data.join("image/blobs/sha256"));
    assert!(left.is_empty(), "blobs left after rm and prune: {left:?}");
}

/// An OCI layout of a two-platform index (a shared gzip layer and a plain-tar layer of each
/// platform's own), tagged `name`. Returns the index and [(arch, config)].
fn two_platform_layout(ctx: &Ctx, dir: &Path, name: &str) -> (Desc, Vec<(String, Desc)>) {
    let lay = Layout::create(dir);
    let shared = lay.add_layer(&busybox_layer_tar(ctx, "two-platforms"), true);
    let other = if host_arch() == "arm64" { "amd64" } else { "arm64" };
    let mut per = Vec::new();
    for arch in [host_arch(), other] {
        let d = ctx.tempdir("plat");
        fs::write(d.join("arch.txt"), format!("{arch}\n")).unwrap();
        let tar = ctx.dir.join(format!("plat-{arch}.tar"));
        tar_dir(&d, &tar);
        let own = lay.add_layer(&tar, false);
        let spec = ImageSpec::new(&["cat", "/arch.txt"]).arch(arch).label("berth.test.arch", arch);
        let (m, c) = lay.add_image(&[shared.clone(), own], &spec);
        per.push((arch.to_string(), m, c));
    }
    let idx = lay.add_index(&per.iter().map(|(a, m, _)| (m, a.as_str())).collect::<Vec<_>>());
    lay.tag(&idx, "multi", Some(name));
    (idx, per.into_iter().map(|(a, _, c)| (a, c)).collect())
}

/// Platforms of an index with the config digest and layer media types of each manifest, read
/// from a registry with skopeo.
fn index_summary(reg: &Registry, repo: &str, raw_index: &str) -> Vec<(String, String, Vec<String>)> {
    let idx: Value = serde_json::from_str(raw_index).unwrap();
    let mut out: Vec<(String, String, Vec<String>)> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let raw = skopeo_inspect(reg, &format!("{repo}@{}", d["digest"].as_str().unwrap()), true);
            assert_eq!(format!("sha256:{}", sha256_bytes(raw.as_bytes())), d["digest"].as_str().unwrap());
            let m: Value = serde_json::from_str(&raw).unwrap();
            let types = m["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap().to_string());
            (
                d["platform"]["architecture"].as_str().unwrap().to_string(),
                m["config"]["digest"].to_string(),
                types.collect(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A multi-platform image loaded from an OCI layout is pushed whole, as docker's containerd
/// image store and `skopeo copy --all` push it: every platform's manifest (its plain layer
/// gzip-compressed) and the index under the tag, the same platforms, configs and layer types
/// as skopeo's copy; a fresh data root pulls either platform back by id. When the layout
/// lacks one platform's blobs, only the host's manifest goes (docker's rule).
#[test]
fn ship_push_multi_platform_index() {
    let ctx = Ctx::new("ship-index");
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let eng = Eng::new(&ctx);
    let name = reg.reference("multi/berth:v1");
    let dir = ctx.tempdir("layout");
    let (idx, per) = two_platform_layout(&ctx, &dir, &name);
    eng.image(&["load", "-i", s(&dir)]).ok();
    let o = eng.image(&["push", &name]);
    o.ok();
    let raw = skopeo_inspect(&reg, "multi/berth:v1", true);
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["mediaType"], json!("application/vnd.oci.image.index.v1+json"), "{raw}");
    assert_contains(
        &o.stdout,
        &[&format!("v1: digest: sha256:{} size: {}\n", sha256_bytes(raw.as_bytes()), raw.len())],
        "push",
    );
    assert_ne!(format!("sha256:{}", sha256_bytes(raw.as_bytes())), idx.digest, "plain layers must be compressed");
    let ours = index_summary(&reg, "multi/berth", &raw);
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip".to_string();
    let mut want: Vec<(String, String, Vec<String>)> =
        per.iter().map(|(a, c)| (a.clone(), json!(c.digest).to_string(), vec![gz.clone(), gz.clone()])).collect();
    want.sort();
    assert_eq!(ours, want, "{raw}");
    // skopeo copy --all of the same layout: the same platforms, configs and layer types.
    let mut c = Command::new("skopeo");
    c.args(["copy", "--all", "--quiet", "--dest-tls-verify=false"]).arg(format!("oci:{}:multi", dir.display()));
    c.arg(format!("docker://{}", reg.reference("multi/skopeo:v1"))).env("HOME", &reg.dir).env("TMPDIR", &reg.dir);
    tool(&mut c);
    let theirs = skopeo_inspect(&reg, "multi/skopeo:v1", true);
    assert_eq!(index_summary(&reg, "multi/skopeo", &theirs), ours, "skopeo's index: {theirs}");
    // Either platform pulls back (config digests: the same image ids).
    for (arch, c) in &per {
        let fresh = Eng::new(&ctx);
        fresh.image(&["pull", "-q", "--platform", &format!("linux/{arch}"), &name]).ok();
        assert_eq!(fresh.inspect(&name)["Id"], json!(c.digest), "{arch}");
    }

    // The layout without the other platform's config: only the host's manifest is pushed.
    let dir2 = ctx.tempdir("layout-partial");
    let partial = reg.reference("multi/partial:v1");
    let (_, per2) = two_platform_layout(&ctx, &dir2, &partial);
    fs::remove_file(dir2.join("blobs/sha256").join(&per2[1].1.digest[7..])).unwrap();
    let eng2 = Eng::new(&ctx);
    eng2.image(&["load", "-i", s(&dir2)]).ok();
    eng2.image(&["push", &partial]).ok();
    let raw = skopeo_inspect(&reg, "multi/partial:v1", true);
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["mediaType"], json!("application/vnd.oci.image.manifest.v1+json"), "{raw}");
    assert_eq!(doc["config"]["digest"], json!(per2[0].1.digest), "the host's manifest: {raw}");
    eng.image(&["check"]).ok();
    eng2.image(&["check"]).ok();
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

    // TLS: refused without the CA (one line naming --tls-ca), pushed with it.
    let tls = Registry::start(&ctx, RegistryOpts { tls: true, ..Default::default() });
    let name = tls.reference("tls/img:v1");
    eng.image(&["tag", local, &name]).ok();
    eng.image(&["push", &name]).one_line_error(&["--tls-ca"]);
    let ca = tls.ca.clone().unwrap();
    eng.image(&["push", "--tls-ca", s(&ca), &name]).ok();
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw"]).arg("--cert-dir").arg(tls.cert_dir.as_ref().unwrap());
    c.arg(format!("docker://{name}")).env("HOME", &tls.dir).env("TMPDIR", &tls.dir);
    assert_eq!(sha256_bytes(tool(&mut c).as_bytes()), m.hex());

    // A docker schema2 image (loaded from a classic docker save archive, its layer a plain
    // tar): pushed as docker schema2 with the layer gzip-compressed.
    let arch = ctx.dir.join("classic.tar");
    let classic = backend.reference("schema2/img:v1");
    docker_save_archive(&ctx, &arch, &bb, &[classic.as_str()], &ImageSpec::new(&["true"]));
    eng.image(&["load", "-i", s(&arch)]).ok();
    let o = eng.image(&["push", &classic]);
    o.ok();
    let raw = skopeo_inspect(&backend, "schema2/img:v1", true);
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["mediaType"], json!("application/vnd.docker.distribution.manifest.v2+json"), "{raw}");
    assert_eq!(doc["layers"][0]["mediaType"], json!("application/vnd.docker.image.rootfs.diff.tar.gzip"), "{raw}");
    assert!(
        o.stdout.contains(&format!("v1: digest: sha256:{} size: {}", sha256_bytes(raw.as_bytes()), raw.len())),
        "{o}"
    );

    // -a: every tag of the repository; -q prints the reference as docker does.
    let repo = backend.reference("all/img");
    for t in ["a", "b"] {
        eng.image(&["tag", local, &format!("{repo}:{t}")]).ok();
    }
    let o = eng.image(&["push", "-a", "-q", &repo]);
    o.ok();
    assert_eq!(o.stdout, format!("{repo}\n"));
    let mut c = Command::new("skopeo");
    c.args(["list-tags", "--tls-verify=false"]).arg(format!("docker://{repo}"));
    c.env("HOME", &backend.dir).env("TMPDIR", &backend.dir);
    let tags: Value = serde_json::from_str(&tool(&mut c)).unwrap();
    let mut got: Vec<&str> = tags["Tags"].as_array().unwrap().iter().filter_map(|t| t.as_str()).collect();
    got.sort();
    assert_eq!(got, ["a", "b"], "{tags}");
    eng.image(&["push", "-a", &format!("{repo}:a")]).one_line_error(&["--all-tags"]);
    eng.image(&["push", &format!("{repo}:nope")]).one_line_error(&["does not exist locally"]);
}

/// An image of two layers (busybox, gzip; a small plain tar) whose config has docker's
/// history: ADD, an empty-layer CMD between, and a RUN with a long command. Loaded into `eng`
/// as `name`; returns (manifest, config).
fn load_history_image(ctx: &Ctx, eng: &Eng, name: &str) -> (Desc, Desc) {
    let lay = Layout::create(&ctx.tempdir("layout"));
    let bb = busybox_layer_tar(ctx, "saved");
    let extra = ctx.tempdir("extra");
    mkdir(&extra.join("opt/app"), 0o755);
    fs::write(extra.join("opt/app/data.txt"), "app data\n".repeat(100)).unwrap();
    let extra_tar = ctx.dir.join("extra.tar");
    tar_dir(&extra, &extra_tar);
    let layers = [lay.add_layer(&bb, true), lay.add_layer(&extra_tar, false)];
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let mut cfg = ImageSpec::new(&["sh", "-c", "cat /opt/app/data.txt"]).config_json(&diff_ids);
    cfg["history"] = json!([
        {"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:4b03b5f551e3fbdf47ec609712007327828f7530cc3455c43bbcdcaf449a75a9 in / "},
        {"created": "2024-01-02T00:00:00Z", "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true},
        {"created": "2024-01-03T00:00:00Z", "created_by": "/bin/sh -c mkdir -p /opt/app && for i in $(seq 100); do echo app data; done > /opt/app/data.txt", "comment": "made by hand"}
    ]);
    let config = lay.add_blob(OCI_CONFIG, &serde_json::to_vec(&cfg).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.json(),
        "layers": layers.iter().map(|l| l.desc.json()).collect::<Vec<_>>()
    });
    let m = lay.add_blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
    lay.tag(&m, "v1", Some(name));
    eng.image(&["load", "-i", s(&lay.dir)]).ok();
    (m, config)
}

/// podman with a private root (vfs: nothing mounted) under `dir`.
fn podman(dir: &Path, args: &[&str]) -> String {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"])
        .args(args)
        .env("TMPDIR", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"));
    tool(&mut c)
}

/// `image save` makes docker's save format: `podman load` (private root) reads it, with the
/// same image id, name and file tree; berth loads it back on a fresh data root; the layers in
/// it are plain tars named by their diff ids, listed in manifest.json, index.json and
/// repositories.
#[test]
fn ship_save_podman_load() {
    let ctx = Ctx::new("ship-save");
    let eng = Eng::new(&ctx);
    let name = "localhost/berth-test/save:v1";
    let (_, c) = load_history_image(&ctx, &eng, name);
    let out = ctx.dir.join("saved.tar");
    eng.image(&["save", "-o", s(&out), name]).ok();

    // The archive's own documents.
    let x = ctx.tempdir("x");
    tool(Command::new("tar").arg("-C").arg(&x).arg("-xf").arg(&out));
    let mj: Value = serde_json::from_slice(&fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let cfg: Value = serde_json::from_slice(&fs::read(x.join(format!("blobs/sha256/{}", c.hex()))).unwrap()).unwrap();
    let diff_ids: Vec<String> =
        cfg["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
    assert_eq!(mj[0]["Config"], json!(format!("blobs/sha256/{}", c.hex())), "{mj:#}");
    assert_eq!(mj[0]["RepoTags"], json!(["localhost/berth-test/save:v1"]), "{mj:#}");
    for (i, d) in diff_ids.iter().enumerate() {
        let p = format!("blobs/sha256/{}", &d[7..]);
        assert_eq!(mj[0]["Layers"][i], json!(p), "{mj:#}");
        assert_eq!(format!("sha256:{}", sha256_file(&x.join(&p)).0), *d, "layer {p} is not its plain tar");
    }
    let repos: Value = serde_json::from_slice(&fs::read(x.join("repositories")).unwrap()).unwrap();
    assert_eq!(repos, json!({"localhost/berth-test/save": {"v1": &diff_ids[1][7..]}}));
    let idx: Value = serde_json::from_slice(&fs::read(x.join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"][0]["annotations"]["io.containerd.image.name"], json!(name), "{idx:#}");
    assert_eq!(idx["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], json!("v1"), "{idx:#}");

    // podman load.
    let pd = ctx.tempdir("podman");
    let o = podman(&pd, &["load", "-i", s(&out)]);
    assert!(o.contains(name), "podman load: {o}");
    let insp: Value = serde_json::from_str(&podman(&pd, &["image", "inspect", name])).unwrap();
    assert_eq!(insp[0]["Id"], json!(c.hex()), "{insp:#}");
    assert_eq!(insp[0]["RootFS"]["Layers"], json!(diff_ids), "{insp:#}");
    let mnt = podman(&pd, &["image", "mount", name]);
    let flat = ctx.dir.join("flat");
    eng.image(&["unpack", name, s(&flat)]).ok();
    let d = tree_diff("berth", &walk_tree(&flat.join("rootfs")), "podman", &walk_tree(Path::new(mnt.trim())));
    podman(&pd, &["image", "unmount", name]);
    assert!(d.is_empty(), "tree differs: {d:#?}");

    // berth loads it back.
    let eng2 = Eng::new(&ctx);
    eng2.image(&["load", "-i", s(&out)]).ok();
    assert_eq!(eng2.inspect(name)["Id"], json!(c.digest));

    // Two images sharing a layer, to standard output: the shared layer written once; both load.
    let second = "localhost/berth-test/save2:v2";
    let lay2 = Layout::create(&ctx.tempdir("layout2"));
    let l = lay2.add_layer(&ctx.dir.join("extra.tar"), false);
    let (m2, c2) = lay2.add_image(&[l], &ImageSpec::new(&["true"]));
    lay2.tag(&m2, "v2", Some(second));
    eng.image(&["load", "-i", s(&lay2.dir)]).ok();
    let so = eng.command(&["image", "save", name, second]).output().unwrap();
    assert!(so.status.success(), "{}", String::from_utf8_lossy(&so.stderr));
    let both = ctx.dir.join("both.tar");
    fs::write(&both, &so.stdout).unwrap();
    let entries = tool(Command::new("tar").arg("-tf").arg(&both));
    let shared = format!("blobs/sha256/{}", &diff_ids[1][7..]);
    assert_eq!(entries.lines().filter(|l| *l == shared).count(), 1, "{entries}");
    let eng3 = Eng::new(&ctx);
    eng3.image(&["load", "-i", s(&both)]).ok();
    assert_eq!(eng3.inspect(name)["Id"], json!(c.digest));
    assert_eq!(eng3.inspect(second)["Id"], json!(c2.digest));

    // A name that is not there: one line, no file.
    let bad = ctx.dir.join("bad.tar");
    eng.image(&["save", "-o", s(&bad), name, "localhost/no/such:v9"]).one_line_error(&["no/such"]);
    assert!(!bad.exists(), "a failed save left {}", bad.display());
    let left: Vec<_> = fs::read_dir(&ctx.dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains("berth-save")), "temporary file left: {left:?}");
}

/// `image save` read by a private dockerd 20.10's `docker load`: same id and name, and the
/// image runs there; docker's `history` (table, template) and `diff` (the same changes made in a
/// docker container and a berth one) print what berth's do; `commit` of those containers gives
/// the same config, history entry and layer entries as `docker commit`; `docker cp` and berth's
/// `container cp` on twin containers give the same trees and the same failures.
#[test]
fn ship_save_docker_load() {
    let ctx = Ctx::new("ship-save-docker");
    let eng = Eng::new(&ctx);
    let name = "localhost/berth-test/dsave:v1";
    let (_, c) = load_history_image(&ctx, &eng, name);
    let out = ctx.dir.join("saved.tar");
    eng.image(&["save", "-o", s(&out), name]).ok();
    let d = crate::layers::Dockerd::start(&ctx);
    let run = |args: &[&str]| {
        let o =
            d.docker(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).output().unwrap();
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let loaded = run(&["load", "-i", s(&out)]);
    assert!(loaded.contains(&format!("Loaded image: {name}")), "{loaded}");
    assert_eq!(run(&["image", "inspect", "--format", "{{.Id}}", name]).trim(), c.digest);
    let o = run(&[
        "run",
        "--rm",
        "--network",
        "none",
        name,
        "sh",
        "-c",
        "head -c 9 /opt/app/data.txt; cat /etc/image-marker",
    ]);
    assert_eq!(o, "app data\nsaved\n");
    let h = run(&["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", name]);
    let ours = eng.image(&["history", "--no-trunc", "--format", "json", name]);
    let ours: Vec<String> = ours
        .lines()
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            format!("{}|{}", v["CreatedBy"].as_str().unwrap(), v["Comment"].as_str().unwrap())
        })
        .collect();
    assert_eq!(h.lines().collect::<Vec<_>>(), ours, "history: docker's rows and berth's");
    // The same template, and the default table, printed alike.
    let t = "table {{.ID}}\t{{.CreatedBy}}\t{{.Comment}}";
    let theirs = run(&["history", "--format", t, name]);
    let o = eng.image(&["history", "--format", t, name]);
    o.ok();
    assert_eq!(o.stdout, theirs);
    let theirs = run(&["history", name]);
    let o = eng.image(&["history", name]);
    o.ok();
    assert_eq!(o.stdout, theirs);

    // container diff: the same changes in a docker container and a berth one, the same lines.
    let _c = Containers(&eng);
    let script = "echo new > /new.txt; echo changed >> /etc/passwd; rm /etc/group; mkdir -p /var/x/y; \
                  echo z > /var/x/y/z; rm -rf /opt/app && mkdir /opt/app && echo n > /opt/app/new; \
                  ln -s /etc/passwd /link; chmod 700 /opt; ln /new.txt /hard; mkfifo /fifo";
    let cname = format!("ship-diff-{}", std::process::id());
    run(&["run", "--name", &cname, "--network", "none", name, "sh", "-c", script]);
    let theirs = run(&["diff", &cname]);
    eng.cmd(&["container", "run", "--name", &cname, "--network", "none", name, "sh", "-c", script]).ok();
    let ours = eng.cmd(&["container", "diff", &cname]);
    ours.ok();
    // docker prints them in no fixed order (a Go map's); berth sorts them.
    let mut t: Vec<&str> = theirs.lines().collect();
    t.sort_by_key(|l| l.get(2..).unwrap_or(""));
    assert_eq!(ours.lines(), t, "container diff: berth's and docker's");

    // commit of those containers: the same config and history entry.
    let args = ["-a", "Ship Test", "-m", "both", "-c", "ENV SHIPPED=yes", "-c", "WORKDIR /opt"];
    let dref = "localhost/berth-test/dcommit:v1";
    run(&[&["commit"][..], &args[..], &[cname.as_str(), dref]].concat());
    let mut bargs = vec!["container", "commit"];
    bargs.extend_from_slice(&args);
    bargs.extend_from_slice(&[cname.as_str(), dref]);
    eng.cmd(&bargs).ok();
    let f = "{{.Author}}|{{json .Config.Cmd}}|{{json .Config.Env}}|{{.Config.WorkingDir}}|{{len .RootFS.Layers}}";
    let theirs = run(&["image", "inspect", "--format", f, dref]);
    let insp = eng.inspect(dref);
    let ours = format!(
        "{}|{}|{}|{}|{}\n",
        insp["Author"].as_str().unwrap_or(""),
        insp["Config"]["Cmd"],
        insp["Config"]["Env"],
        insp["Config"]["WorkingDir"].as_str().unwrap_or(""),
        insp["RootFS"]["Layers"].as_array().map_or(0, |a| a.len())
    );
    assert_eq!(ours, theirs, "commit: berth's image config and docker's");
    let f = "{{.CreatedBy}}|{{.Comment}}";
    let theirs = run(&["history", "--no-trunc", "--format", f, dref]);
    let o = eng.image(&["history", "--no-trunc", "--format", f, dref]);
    o.ok();
    assert_eq!(o.stdout.lines().next(), theirs.lines().next(), "commit: the history entry");

    // The committed layers hold the same entries (whiteouts, opaque marker, files).
    let top_layer_entries = |archive: &Path| -> Vec<String> {
        let x = ctx.tempdir("layer-x");
        tool(Command::new("tar").arg("-C").arg(&x).arg("-xf").arg(archive));
        let mj: Value = serde_json::from_slice(&fs::read(x.join("manifest.json")).unwrap()).unwrap();
        let layers = mj[0]["Layers"].as_array().unwrap();
        let top = x.join(layers[layers.len() - 1].as_str().unwrap());
        // Type and mode, owner, size, name (and link target): all but the times.
        let mut v: Vec<String> = tool(Command::new("tar").args(["--numeric-owner", "-tvf"]).arg(&top))
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let name = f[5..].join(" ");
                let name = name.trim_start_matches("./").replacen("/ ", " ", 1);
                format!("{} {} {} {}", f[0], f[1], f[2], name.trim_end_matches('/'))
            })
            .filter(|l| !l.ends_with(' '))
            .collect();
        v.sort();
        v
    };
    let dtar = ctx.dir.join("docker-commit.tar");
    run(&["save", "-o", s(&dtar), dref]);
    let btar = ctx.dir.join("berth-commit.tar");
    eng.image(&["save", "-o", s(&btar), dref]).ok();
    assert_eq!(top_layer_entries(&btar), top_layer_entries(&dtar), "committed layer: berth's entries and docker's");

    // cp out of a container and into one, docker's rules case by case: the same trees.
    let cpname = format!("ship-dcp-{}", std::process::id());
    let setup = "mkdir -p /data/sub && echo f > /data/f && echo g > /data/sub/g && chmod 640 /data/f && \
                 ln -s ../../../../etc/image-marker /rel && ln -s /data /dlink";
    run(&["run", "--name", &cpname, "--network", "none", name, "sh", "-c", setup]);
    eng.cmd(&["container", "run", "--name", &cpname, "--network", "none", name, "sh", "-c", setup]).ok();
    let hsrc = ctx.tempdir("cp-src");
    fs::create_dir(hsrc.join("tree")).unwrap();
    fs::write(hsrc.join("tree/t"), "t\n").unwrap();
    fs::write(hsrc.join("file"), "file\n").unwrap();
    // (source, destination inside the case's dir, a dir made there first, -L)
    let cases: &[(&str, &str, Option<&str>, bool)] = &[
        ("/data", "new", None, false),
        ("/data", "dir", Some("dir"), false),
        ("/data/.", "dir", Some("dir"), false),
        ("/data/f", "dir/", Some("dir"), false),
        ("/data/f", "renamed", None, false),
        ("/data/f", "missing/", None, false),
        ("/data/f/", "x", None, false),
        ("/data", "dir/data", Some("dir/data"), false),
        ("/rel", "link", None, false),
        ("/rel", "link", None, true),
        ("/rel", "dir", Some("dir"), true),
        ("/dlink", "dl", None, false),
        ("/dlink/", "dl", None, false),
        ("/dlink", "dir", Some("dir"), true),
        ("/nope", "n", None, false),
    ];
    for (i, (src, dst, pre, follow)) in cases.iter().enumerate() {
        let mut trees = Vec::new();
        for who in ["docker", "berth"] {
            let dir = ctx.dir.join(format!("cp-case-{i}-{who}"));
            fs::create_dir(&dir).unwrap();
            if let Some(p) = pre {
                fs::create_dir_all(dir.join(p)).unwrap();
            }
            let l = if *follow { "-L" } else { "-a" };
            let target = format!("{}/{dst}", dir.display());
            let from = format!("{cpname}:{src}");
            if who == "docker" {
                let o = d.docker(&["cp", l, &from, &target]).output().unwrap();
                trees.push((o.status.success(), walk_tree(&dir)));
            } else {
                let o = eng.cmd(&["container", "cp", l, &from, &target]);
                trees.push((o.code == 0, walk_tree(&dir)));
            }
        }
        assert_eq!(trees[0].0, trees[1].0, "cp (-L {follow}) {src} {dst}: docker and berth disagree on success");
        let diff = tree_diff("docker", &trees[0].1, "berth", &trees[1].1);
        assert!(diff.is_empty(), "cp (-L {follow}) {src} {dst}: {diff:#?}");
    }
    // Into the containers, then out again to compare.
    let into: &[(&str, &str)] =
        &[("tree", "/newtree"), ("tree", "/data"), ("file", "/data/sub/"), ("tree/.", "/data/sub")];
    for (src, dst) in into {
        let from = format!("{}/{src}", hsrc.display());
        let to = format!("{cpname}:{dst}");
        assert!(d.docker(&["cp", &from, &to]).status().unwrap().success(), "docker cp {from} {to}");
        eng.cmd(&["container", "cp", &from, &to]).ok();
    }
    // export of the twins: the same entries, but for the mount points each engine makes.
    let listing = |tar: &Path| -> Vec<String> {
        let engine_made = |n: &str| {
            [".dockerenv", "dev", "proc", "sys", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"]
                .iter()
                .any(|m| n == *m || n.starts_with(&format!("{m}/")))
        };
        let mut v: Vec<String> = tool(Command::new("tar").args(["--numeric-owner", "-tvf"]).arg(tar))
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let name = f[5..].join(" ");
                let name = name.trim_start_matches("./").replacen("/ ", " ", 1);
                let name = name.trim_end_matches('/').to_string();
                let path = name.split(" -> ").next().unwrap_or("").split(" link to ").next().unwrap_or("");
                (!path.is_empty() && !engine_made(path)).then(|| format!("{} {} {} {name}", f[0], f[1], f[2]))
            })
            .collect();
        v.sort();
        v
    };
    let (dexp, bexp) = (ctx.dir.join("docker-export.tar"), ctx.dir.join("berth-export.tar"));
    run(&["export", "-o", s(&dexp), &cpname]);
    eng.cmd(&["container", "export", "-o", s(&bexp), &cpname]).ok();
    let (dl, bl) = (listing(&dexp), listing(&bexp));
    let only_d: Vec<&String> = dl.iter().filter(|x| !bl.contains(x)).collect();
    let only_b: Vec<&String> = bl.iter().filter(|x| !dl.contains(x)).collect();
    assert!(only_d.is_empty() && only_b.is_empty(), "export: only docker's {only_d:#?}\nonly berth's {only_b:#?}");

    for path in ["/newtree", "/data"] {
        let (a, b) = (
            ctx.dir.join(format!("back-docker{}", path.replace('/', "-"))),
            ctx.dir.join(format!("back-berth{}", path.replace('/', "-"))),
        );
        assert!(d.docker(&["cp", &format!("{cpname}:{path}"), s(&a)]).status().unwrap().success());
        eng.cmd(&["container", "cp", &format!("{cpname}:{path}"), s(&b)]).ok();
        let diff = tree_diff("docker", &walk_tree(&a), "berth", &walk_tree(&b));
        assert!(diff.is_empty(), "cp into {path}: {diff:#?}");
    }
}

/// `image history`: docker's rows (newest first, the id on the top row, `<missing>` below,
/// empty layers 0B), its 45-character cut, --no-trunc, -q and --format json.
#[test]
fn ship_image_history() {
    let ctx = Ctx::new("ship-history");
    let eng = Eng::new(&ctx);
    let name = "localhost/berth-test/hist:v1";
    let (_, c) = load_history_image(&ctx, &eng, name);
    let o = eng.image(&["history", name]);
    o.ok();
    let lines = o.lines();
    assert_eq!(lines.len(), 4, "{o}");
    let head = &lines[0];
    for col in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(head.contains(col), "{o}");
    }
    let at = |col: &str| head.find(col).unwrap();
    let cell = |l: &str, from: &str, to: Option<&str>| -> String {
        let a = at(from);
        let b = to.map(at).unwrap_or(l.len());
        l.chars().skip(a).take(b - a).collect::<String>().trim().to_string()
    };
    assert_eq!(cell(&lines[1], "IMAGE", Some("CREATED")), &c.hex()[..12]);
    assert_eq!(cell(&lines[2], "IMAGE", Some("CREATED")), "<missing>");
    let by = cell(&lines[1], "CREATED BY", Some("SIZE"));
    assert_eq!(by, "/bin/sh -c mkdir -p /opt/app && for i in $(s…", "{o}");
    assert_eq!(cell(&lines[2], "CREATED BY", Some("SIZE")), "/bin/sh -c #(nop)  CMD [\"sh\"]");
    assert_eq!(cell(&lines[2], "SIZE", Some("COMMENT")), "0B");
    assert_ne!(cell(&lines[1], "SIZE", Some("COMMENT")), "0B");
    assert!(lines[1].trim_end().ends_with("made by hand"), "{o}");
    assert!(cell(&lines[3], "CREATED", Some("CREATED BY")).ends_with(" ago"), "{o}");

    let q = eng.image(&["history", "-q", "--no-trunc", name]);
    q.ok();
    assert_eq!(q.lines(), vec![c.digest.clone(), "<missing>".into(), "<missing>".into()]);
    let j = eng.image(&["history", "--format", "json", "--no-trunc", name]);
    j.ok();
    let rows: Vec<Value> = j.lines().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["ID"], json!(c.digest));
    assert_eq!(rows[0]["Comment"], json!("made by hand"));
    assert!(rows[0]["CreatedBy"].as_str().unwrap().ends_with("> /opt/app/data.txt"), "{j}");
    assert_eq!(rows[2]["CreatedAt"], json!("2024-01-01T00:00:00Z"), "{j}");
    eng.image(&["history", "localhost/no/such:v1"]).one_line_error(&["no/such"]);
}

/// Removes every container of an engine when dropped.
struct Containers<'a>(&'a Eng<'a>);

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        let o = self.0.cmd(&["container", "ls", "-aq", "--no-trunc"]);
        for id in o.lines() {
            let _ = self.0.cmd(&["container", "rm", "-f", "-v", id.trim()]);
        }
    }
}

/// `container cp` into and out of a container's volumes as a private dockerd 20.10 does it
/// (docker resolves the path in the container's mount view): twin containers, each with a
/// named volume at /data, a bind mount at /bind and a read-only volume at /ro; files copied in
/// land in the volume and the bound host directory (seen by the container and on the host),
/// copies out read them (the mount point itself copied as a directory), a copy into the
/// read-only volume is refused by both; a volume's symlink climbing out with `..` resolves in
/// the container, as docker's does, never on the host.
#[test]
fn ship_cp_volumes_like_docker() {
    let ctx = Ctx::new("ship-cpvol");
    let eng = Eng::new(&ctx);
    let _c = Containers(&eng);
    let image = "localhost/berth-test/cpvol:v1";
    let lay = ctx.tempdir("layout");
    busybox_oci_layout(&ctx, &lay, "v1", Some(image), &ImageSpec::new(&["sh"]));
    eng.image(&["load", "-i", s(&lay)]).ok();
    let d = crate::layers::Dockerd::start(&ctx);
    let run = |args: &[&str]| {
        let o =
            d.docker(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).output().unwrap();
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let base = ctx.dir.join("docker-base.tar");
    tar_dir(&ctx.bundle().rootfs, &base);
    run(&["import", s(&base), image]);
    let hsrc = ctx.tempdir("hsrc");
    fs::write(hsrc.join("file"), "a file\n").unwrap();
    fs::create_dir_all(hsrc.join("tree/sub")).unwrap();
    fs::write(hsrc.join("tree/sub/x"), "x\n").unwrap();
    let name = format!("ship-cpvol-{}", std::process::id());
    let mut binds = Vec::new();
    for who in ["docker", "berth"] {
        let bind = ctx.dir.join(format!("bind-{who}"));
        fs::create_dir_all(bind.join("sub")).unwrap();
        fs::write(bind.join("sub/old"), "old\n").unwrap();
        let vols = [format!("{name}-data:/data"), format!("{}:/bind", bind.display()), format!("{name}-ro:/ro:ro")];
        let mut args = vec!["run", "-d", "--name", &name, "--network", "none"];
        for v in &vols {
            args.extend(["-v", v.as_str()]);
        }
        args.extend([image, "sleep", "1000"]);
        if who == "docker" {
            run(&args);
        } else {
            let mut a = vec!["container"];
            a.extend(&args);
            eng.cmd(&a).ok();
        }
        binds.push(bind);
    }
    let cp = |who: &str, a: &str, b: &str| -> bool {
        if who == "docker" {
            d.docker(&["cp", a, b]).status().unwrap().success()
        } else {
            eng.cmd(&["container", "cp", a, b]).code == 0
        }
    };
    let c = |p: &str| format!("{name}:{p}");
    let h = |p: &str| format!("{}/{p}", hsrc.display());
    // In: a file into the volume and into a directory of the bind mount, a tree into the volume.
    for who in ["docker", "berth"] {
        assert!(cp(who, &h("file"), &c("/data/")), "{who}: cp into the volume");
        assert!(cp(who, &h("file"), &c("/bind/sub/")), "{who}: cp into the bind mount");
        assert!(cp(who, &h("tree"), &c("/data/tree")), "{who}: cp a tree into the volume");
        assert!(!cp(who, &h("file"), &c("/ro/")), "{who}: cp into a read-only volume must fail");
    }
    // The container sees them through its mounts; the bound host dirs hold them.
    let script = "cat /data/file /bind/sub/file /data/tree/sub/x; ls /ro | wc -l";
    let theirs = run(&["exec", &name, "sh", "-c", script]);
    let o = eng.cmd(&["container", "exec", &name, "sh", "-c", script]);
    o.ok();
    assert_eq!(o.stdout, theirs);
    assert_eq!(theirs, "a file\na file\nx\n0\n");
    let d_tree = walk_tree(&binds[0]);
    let b_tree = walk_tree(&binds[1]);
    let diff = tree_diff("docker", &d_tree, "berth", &b_tree);
    assert!(diff.is_empty(), "bind mount contents: {diff:#?}");
    assert_eq!(fs::read_to_string(binds[1].join("sub/file")).unwrap(), "a file\n");
    // Out: the volume's mount point (as a directory), a file of it, the bind mount's dir.
    let outs: &[(&str, &str)] = &[("/data", "data"), ("/data/file", "f"), ("/bind/sub", "sub"), ("/bind", "b")];
    for (src, dst) in outs {
        let mut trees = Vec::new();
        for who in ["docker", "berth"] {
            let dir = ctx.dir.join(format!("cpvol-out-{}-{who}", dst));
            fs::create_dir_all(&dir).unwrap();
            let ok = cp(who, &c(src), &format!("{}/{dst}", dir.display()));
            trees.push((ok, walk_tree(&dir)));
        }
        assert!(trees[0].0 && trees[1].0, "cp {src} out: docker {}, berth {}", trees[0].0, trees[1].0);
        let diff = tree_diff("docker", &trees[0].1, "berth", &trees[1].1);
        assert!(diff.is_empty(), "cp {src} out: {diff:#?}");
    }
    assert_eq!(fs::read_to_string(ctx.dir.join("cpvol-out-data-berth/data/tree/sub/x")).unwrap(), "x\n");
    // A symlink in the volume climbing out of it: followed in the container's view, as docker
    // does (to the container's /etc), never to the host's.
    let hostfile = Path::new("/etc/file").exists();
    run(&["exec", &name, "ln", "-s", "/../../../../etc", "/data/out"]);
    eng.cmd(&["container", "exec", &name, "ln", "-s", "/../../../../etc", "/data/out"]).ok();
    for who in ["docker", "berth"] {
        assert!(cp(who, &h("file"), &c("/data/out/")), "{who}: cp through the volume's symlink");
    }
    let theirs = run(&["exec", &name, "cat", "/etc/file"]);
    let o = eng.cmd(&["container", "exec", &name, "cat", "/etc/file"]);
    o.ok();
    assert_eq!(o.stdout, theirs);
    assert_eq!(Path::new("/etc/file").exists(), hostfile, "a copy reached the host's /etc");
    run(&["rm", "-f", "-v", &name]);
    let _ = d.docker(&["volume", "rm", &format!("{name}-data"), &format!("{name}-ro")]).status();
    drop(d);
    eng.cmd(&["container", "rm", "-f", "-v", &name]).ok();
    for v in ["data", "ro"] {
        let _ = eng.cmd(&["volume", "rm", &format!("{name}-{v}")]);
    }
}

/// `container diff` lists docker's A/C/D lines for a container's changes (a file added,
/// one changed, one deleted, a directory replaced, a symlink; the engine's own mount points
/// left out); `container commit` makes an image of them (whiteouts and an opaque directory in
/// its layer, docker's author/comment/history, --change applied) that runs; a running
/// container is committed paused and keeps running.
#[test]
fn ship_commit_and_diff() {
    let ctx = Ctx::new("ship-commit");
    let eng = Eng::new(&ctx);
    let _c = Containers(&eng);
    let base = "localhost/berth-test/base:v1";
    load_history_image(&ctx, &eng, base);
    let name = format!("ship-commit-{}", std::process::id());
    let script = "echo new > /new.txt; echo changed >> /etc/passwd; rm /etc/group; \
                  rm -rf /opt/app && mkdir /opt/app && echo n > /opt/app/new; ln -s /etc/passwd /link";
    eng.cmd(&["container", "run", "--name", &name, "--network", "none", base, "sh", "-c", script]).ok();

    let d = eng.cmd(&["container", "diff", &name]);
    d.ok();
    assert_eq!(
        d.lines(),
        [
            "C /etc",
            "D /etc/group",
            "C /etc/passwd",
            "A /link",
            "A /new.txt",
            "C /opt",
            "C /opt/app",
            "D /opt/app/data.txt",
            "A /opt/app/new"
        ],
        "{d}"
    );

    let o = eng.cmd(&[
        "container",
        "commit",
        "-a",
        "Ship Test <ship@example.com>",
        "-m",
        "committed by the test",
        "-c",
        r#"CMD ["cat", "/new.txt"]"#,
        "-c",
        "ENV SHIPPED=yes",
        &name,
        "localhost/berth-test/committed:v1",
    ]);
    o.ok();
    let id = o.stdout.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "commit prints the image id: {o}");
    let committed = "localhost/berth-test/committed:v1";
    let insp = eng.inspect(committed);
    assert_eq!(insp["Id"], json!(id));
    assert_eq!(insp["Author"], json!("Ship Test <ship@example.com>"), "{insp:#}");
    assert_eq!(insp["Config"]["Cmd"], json!(["cat", "/new.txt"]), "{insp:#}");
    assert!(insp["Config"]["Env"].as_array().unwrap().contains(&json!("SHIPPED=yes")), "{insp:#}");
    assert_eq!(insp["RootFS"]["Layers"].as_array().unwrap().len(), 3, "one layer more than the base: {insp:#}");
    let h = eng.image(&["history", "--format", "json", "--no-trunc", committed]);
    h.ok();
    let top: Value = serde_json::from_str(&h.lines()[0]).unwrap();
    assert_eq!(top["Comment"], json!("committed by the test"), "{h}");
    assert_eq!(top["CreatedBy"], json!(format!("sh -c {script}")), "{h}");

    // The new layer holds the changes with overlay deletions as whiteouts.
    let saved = ctx.dir.join("committed.tar");
    eng.image(&["save", "-o", s(&saved), committed]).ok();
    let x = ctx.tempdir("committed");
    tool(Command::new("tar").arg("-C").arg(&x).arg("-xf").arg(&saved));
    let mj: Value = serde_json::from_slice(&fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let top_layer = x.join(mj[0]["Layers"][2].as_str().unwrap());
    let list = tool(Command::new("tar").arg("-tvf").arg(&top_layer));
    let names: Vec<&str> = list.lines().map(|l| l.split_whitespace().last().unwrap()).collect();
    for want in ["etc/.wh.group", "opt/app/.wh..wh..opq", "opt/app/new", "new.txt", "etc/passwd"] {
        assert!(list.lines().any(|l| l.contains(want)), "layer lacks {want}:\n{list}");
    }
    assert!(list.lines().any(|l| l.starts_with('l') && l.contains("link -> /etc/passwd")), "{list}");
    assert!(
        !names.iter().any(|n| n.starts_with("proc") || n.ends_with("etc/hosts")),
        "mount points in the layer:\n{list}"
    );

    // The image runs, with the changes.
    let o = eng.cmd(&["container", "run", "--rm", "--network", "none", committed]);
    o.ok();
    assert_eq!(o.stdout, "new\n", "{o}");
    let check = "ls /opt/app; test -e /etc/group || echo no-group; readlink /link; tail -n1 /etc/passwd; echo $SHIPPED";
    let o = eng.cmd(&["container", "run", "--rm", "--network", "none", committed, "sh", "-c", check]);
    o.ok();
    assert_eq!(o.stdout, "new\nno-group\n/etc/passwd\nchanged\nyes\n", "{o}");

    // A running container: paused for the commit, running afterwards.
    let run =
        eng.cmd(&["container", "run", "-d", "--network", "none", base, "sh", "-c", "echo live > /live; sleep 60"]);
    run.ok();
    let cid = run.stdout.trim().to_string();
    let mut ok = false;
    for _ in 0..50 {
        if eng.cmd(&["container", "diff", &cid]).stdout.contains("A /live") {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ok, "the running container's change never showed in diff");
    eng.cmd(&["container", "commit", &cid, "localhost/berth-test/live:v1"]).ok();
    let st = eng.cmd(&["container", "inspect", "--format", "{{.State.Status}}", &cid]);
    assert_eq!(st.stdout.trim(), "running", "{st}");
    let o = eng.cmd(&["container", "run", "--rm", "--network", "none", "localhost/berth-test/live:v1", "cat", "/live"]);
    o.ok();
    assert_eq!(o.stdout, "live\n");

    // Bad input: one line, nothing made.
    let before = eng.store_snapshot();
    eng.cmd(&["container", "commit", "no-such-container-x", "x:y"]).one_line_error(&["no-such-container-x"]);
    eng.cmd(&["container", "commit", "-c", "BOGUS x", &name, "x:y"]).one_line_error(&["BOGUS"]);
    eng.cmd(&["container", "commit", &name, "Bad Name!"]).one_line_error(&["Bad Name!"]);
    eng.assert_store_unchanged(&before, "failed commits");
}

/// `tar -tv --numeric-owner` lines of a tar file.
fn tar_list(p: &Path) -> Vec<String> {
    tool(Command::new("tar").args(["--numeric-owner", "-tvf"]).arg(p)).lines().map(str::to_string).collect()
}

/// `container cp` both ways with docker's rules (directory into/as DEST, `SRC/.`, trailing
/// slashes, `-` tar streams, -a, -L), container symlinks (absolute, relative with `..`, on the
/// way and as the last component) resolved inside the container and never reaching the host's
/// files; `container export` of the merged tree.
#[test]
fn ship_cp_and_export() {
    let ctx = Ctx::new("ship-cp");
    let eng = Eng::new(&ctx);
    let _c = Containers(&eng);
    let base = "localhost/berth-test/cp:v1";
    let (lay, _, _) = busybox_oci_layout(&ctx, &ctx.tempdir("layout"), "v1", Some(base), &ImageSpec::new(&["sh"]));
    eng.image(&["load", "-i", s(&lay.dir)]).ok();

    // Host files the container's symlinks point at.
    let host = ctx.tempdir("host");
    fs::write(host.join("secret"), "host secret\n").unwrap();
    let hs = s(&host);
    let name = format!("ship-cp-{}", std::process::id());
    let script = format!(
        "mkdir -p /data/sub && echo f > /data/f && echo g > /data/sub/g && ln -s / /escape-root && \
         ln -s {hs} /evil && ln -s ../../../../../../../etc/image-marker /rel && ln -s {hs}/secret /abs-secret"
    );
    eng.cmd(&["container", "run", "--name", &name, "--network", "none", base, "sh", "-c", &script]).ok();
    let c = |p: &str| format!("{name}:{p}");
    let out = ctx.tempdir("out");
    let o = |p: &str| out.join(p);
    let cp = |a: &str, b: &str| eng.cmd(&["container", "cp", a, b]);

    // Out of the container: a directory as a new path, into an existing dir, its contents.
    cp(&c("/data"), s(&o("new"))).ok();
    assert_eq!(fs::read_to_string(o("new/f")).unwrap(), "f\n");
    assert_eq!(fs::read_to_string(o("new/sub/g")).unwrap(), "g\n");
    fs::create_dir(o("into")).unwrap();
    cp(&c("/data"), s(&o("into"))).ok();
    assert_eq!(fs::read_to_string(o("into/data/f")).unwrap(), "f\n");
    fs::create_dir(o("contents")).unwrap();
    cp(&c("/data/."), s(&o("contents"))).ok();
    assert_eq!(fs::read_to_string(o("contents/f")).unwrap(), "f\n");
    assert!(!o("contents/data").exists());
    // A file: to a new name, into a dir given with a slash; a missing dir with a slash fails.
    cp(&c("/data/f"), s(&o("f-copy"))).ok();
    assert_eq!(fs::read_to_string(o("f-copy")).unwrap(), "f\n");
    cp(&c("/data/f"), &format!("{}/", s(&o("into")))).ok();
    assert_eq!(fs::read_to_string(o("into/f")).unwrap(), "f\n");
    cp(&c("/data/f"), &format!("{}/", s(&o("missing")))).one_line_error(&["missing"]);
    assert!(!o("missing").exists());
    cp(&c("/data/f/"), s(&o("x"))).one_line_error(&["not a directory"]);
    cp(&c("/data"), s(&o("f-copy"))).one_line_error(&["directory"]);
    // Symlinks: copied as links (one climbing out of the destination refused, as docker's
    // "invalid symlink"); -L follows them inside the container.
    cp(&c("/rel"), s(&o("rel"))).one_line_error(&["invalid symlink"]);
    assert!(fs::symlink_metadata(o("rel")).is_err());
    cp(&c("/abs-secret"), s(&o("abs"))).ok();
    assert_eq!(fs::read_link(o("abs")).unwrap(), host.join("secret"));
    let r = eng.cmd(&["container", "cp", "-L", &c("/rel"), s(&o("rel-followed"))]);
    r.ok();
    assert_eq!(fs::read_to_string(o("rel-followed")).unwrap(), "v1\n", "-L must read the container's file");
    // Through a link to the host's path: the container has no such path; nothing of the host's.
    let escape = format!("/escape-root{hs}/secret");
    cp(&c(&escape), s(&o("leak1"))).fails();
    eng.cmd(&["container", "cp", "-L", &c("/abs-secret"), s(&o("leak2"))]).fails();
    cp(&c("/evil/secret"), s(&o("leak3"))).fails();
    for l in ["leak1", "leak2", "leak3"] {
        assert!(!o(l).exists(), "{l}: a host file was copied out through a container symlink");
    }

    // Into the container (stopped: its overlay mounted for the copy).
    let src = ctx.tempdir("src");
    fs::create_dir(src.join("tree")).unwrap();
    fs::write(src.join("tree/t"), "t\n").unwrap();
    std::os::unix::fs::chown(src.join("tree/t"), Some(1234), Some(1234)).unwrap();
    fs::write(src.join("file"), "file\n").unwrap();
    cp(s(&src.join("tree")), &c("/newtree")).ok();
    eng.cmd(&["container", "cp", "-a", s(&src.join("tree")), &c("/kept")]).ok();
    cp(s(&src.join("file")), &c("/data/")).ok();
    // Writes through container symlinks land inside the container, never on the host.
    cp(s(&src.join("file")), &c("/evil/pwned")).fails();
    cp(s(&src.join("file")), &c("/escape-root/abs-write")).ok();
    cp(s(&src.join("file")), &c("/abs-secret")).fails();
    let host_names: Vec<String> = dir_entries_sorted(&host);
    assert_eq!(host_names, ["secret"], "a write reached the host dir");
    assert_eq!(fs::read_to_string(host.join("secret")).unwrap(), "host secret\n");

    // A tar from stdin into a directory, a tar of a directory to stdout.
    let tin = ctx.dir.join("in.tar");
    tool(Command::new("tar").arg("-C").arg(&src).arg("-cf").arg(&tin).arg("file"));
    let st =
        eng.command(&["container", "cp", "-", &c("/data/sub")]).stdin(fs::File::open(&tin).unwrap()).output().unwrap();
    assert!(st.status.success(), "cp - : {}", String::from_utf8_lossy(&st.stderr));
    let so = eng.command(&["container", "cp", &c("/data"), "-"]).output().unwrap();
    assert!(so.status.success(), "cp to - : {}", String::from_utf8_lossy(&so.stderr));
    let tout = ctx.dir.join("out.tar");
    fs::write(&tout, &so.stdout).unwrap();
    let names: Vec<String> = tar_list(&tout).iter().map(|l| l.split_whitespace().last().unwrap().to_string()).collect();
    for want in ["data/f", "data/sub/g", "data/sub/file", "data/file"] {
        assert!(names.iter().any(|n| n == want), "{want} not in the tar on stdout: {names:?}");
    }

    // export: the merged tree, with what cp put there and the owners docker gives.
    let exp = ctx.dir.join("export.tar");
    eng.cmd(&["container", "export", "-o", s(&exp), &name]).ok();
    let list = tar_list(&exp);
    let line =
        |p: &str| list.iter().find(|l| l.ends_with(&format!(" {p}")) || l.contains(&format!(" {p} -> "))).cloned();
    assert!(line("bin/busybox").is_some(), "export lacks the image's files");
    assert!(
        line("newtree/t").unwrap().contains(" 0/0 "),
        "cp into a container: owned by root: {:?}",
        line("newtree/t")
    );
    assert!(line("kept/t").unwrap().contains(" 1234/1234 "), "cp -a keeps the owner: {:?}", line("kept/t"));
    assert!(line("abs-write").is_some(), "a write through /escape-root lands in the container's root");
    assert!(line("escape-root").unwrap().starts_with('l'), "{:?}", line("escape-root"));
    assert!(line("data/file").is_some() && line("data/sub/file").is_some());
    let so = eng.command(&["container", "export", &name]).output().unwrap();
    assert!(so.status.success());
    assert_eq!(so.stdout.len() as u64, fs::metadata(&exp).unwrap().len(), "export to stdout and to a file differ");
    assert!(mounts_under(&eng.data).is_empty(), "cp/export left a mount: {:?}", mounts_under(&eng.data));

    // A running container: copied into its mounted root, seen by its processes.
    let run = eng.cmd(&["container", "run", "-d", "--network", "none", base, "sleep", "60"]);
    run.ok();
    let cid = run.stdout.trim().to_string();
    cp(s(&src.join("file")), &format!("{cid}:/live-file")).ok();
    let x = eng.cmd(&["container", "exec", &cid, "cat", "/live-file"]);
    x.ok();
    assert_eq!(x.stdout, "file\n");
    cp("no-such-ctr-x:/a", s(&o("y"))).one_line_error(&["no-such-ctr-x"]);
    cp(s(&o("y")), s(&o("z"))).one_line_error(&["container"]);
}
