//! The engine killed (SIGKILL at the named crash points of src/faults/, debug builds only) in
//! the middle of `image build`, `container commit` and `image push`: afterwards `image check`
//! finds no problem, the same command then succeeds (no record lost, no stale cache entry
//! trusted), and `builder prune` / `container rm -f` / `image rm` / `image prune -a` leave no
//! blob, snapshot, image, mount or scratch dir.

use crate::common::images::*;
use crate::common::registry::*;
use crate::common::*;
use std::fs;
use std::path::Path;

const BASE: &str = "localhost/berth-crash/bb:v1";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A fresh engine with the busybox base image loaded as BASE.
fn engine<'a>(ctx: &'a Ctx) -> Eng<'a> {
    let eng = Eng::new(ctx);
    let dir = ctx.tempdir("layout");
    busybox_oci_layout(ctx, &dir, "v1", Some(BASE), &ImageSpec::new(&["sh"]));
    eng.image(&["load", "-i", s(&dir)]).ok();
    eng
}

/// `image ARGS...` with `BERTH_CRASH_AT=point`: asserts berth killed itself there.
#[track_caller]
fn crash_image(eng: &Eng, point: &str, args: &[&str]) {
    let mut v = vec!["image"];
    v.extend_from_slice(args);
    let mut c = eng.command(&v);
    c.env("BERTH_CRASH_AT", point);
    let o = eng.ctx.exec_cmd(c, IMAGE_TIMEOUT);
    assert_eq!(o.code, 128 + 9, "{point}: berth should have killed itself there: {o}");
}

#[track_caller]
fn check_clean(eng: &Eng, what: &str) {
    let o = eng.image(&["check"]);
    assert_eq!(o.code, 0, "{what}: image check must find no problem: {o}");
    assert!(o.stdout.contains(" 0 problem(s)"), "{what}: {o}");
}

/// After every name, container and cache entry is removed and the store pruned: nothing left.
#[track_caller]
fn store_empty(eng: &Eng, what: &str) {
    eng.cmd(&["builder", "prune", "-f"]).ok();
    eng.image(&["prune", "-a", "-f"]).ok();
    let o = eng.image(&["check"]);
    assert!(o.stdout.contains("0 blobs re-hashed, 0 snapshots, 0 images"), "{what}: after rm and prune: {o}");
    assert!(o.stdout.contains(" 0 problem(s)"), "{what}: {o}");
    let m = mounts_under(&eng.data);
    assert!(m.is_empty(), "{what}: mounts left under the data root: {m:?}");
    for d in ["builder/tmp", "image/tmp"] {
        let left = dir_entries_sorted(&eng.data.join(d));
        assert!(left.is_empty(), "{what}: left in {d}: {left:?}");
    }
    let state: Vec<String> =
        dir_entries_sorted(&eng.ctx.root).into_iter().filter(|n| n.starts_with("berth-build-")).collect();
    assert!(state.is_empty(), "{what}: runtime state left: {state:?}");
}

/// A build killed after a step's layer is in the store but before its image and cache
/// record, after its image but before the cache record, and between two sources of a COPY
/// (one copied into the step's upper dir): the store checks clean, the rebuild succeeds
/// with the right content, and prune leaves nothing.
#[test]
fn crash_points_of_image_build() {
    let ctx = Ctx::new("crash-build");
    if !crate::crash::hooks_honoured(&ctx) {
        eprintln!("SKIPPED: the binary under test ignores BERTH_CRASH_AT (release build)");
        return;
    }
    let cdir = ctx.tempdir("ctx");
    fs::write(cdir.join("a"), "aaa").unwrap();
    fs::write(cdir.join("b"), "bbb").unwrap();
    fs::write(cdir.join("Dockerfile"), format!("FROM {BASE}\nRUN echo ran > /r\nCOPY a b /dst/\n")).unwrap();
    for point in ["build.step.layer-written", "build.step.image-saved", "build.copy.mid"] {
        let eng = engine(&ctx);
        crash_image(&eng, point, &["build", "-q", "--network", "none", "-t", "crashed:v1", s(&cdir)]);
        check_clean(&eng, point);
        let o = eng.image(&["build", "-q", "--network", "none", "-t", "crashed:v1", s(&cdir)]);
        o.ok();
        check_clean(&eng, &format!("{point}, then built again"));
        let o =
            eng.cmd(&["container", "run", "--rm", "--network", "none", "crashed:v1", "cat", "/r", "/dst/a", "/dst/b"]);
        o.ok();
        assert_eq!(o.stdout, "ran\naaabbb", "{point}: the rebuilt image's files");
        // A second build is served from the cache the crash did not corrupt.
        let again = eng.image(&["build", "-q", "--network", "none", "-t", "crashed:v2", s(&cdir)]);
        again.ok();
        assert_eq!(again.stdout, o_id(&eng, "crashed:v1"), "{point}: the cached rebuild gives the same image");
        eng.image(&["rm", "crashed:v1", "crashed:v2", BASE]).ok();
        store_empty(&eng, point);
    }
}

fn o_id(eng: &Eng, r: &str) -> String {
    format!("{}\n", eng.inspect(r)["Id"].as_str().unwrap_or_default())
}

/// `container commit` killed after the layer is stored and after the manifest is written
/// (before the index names it), and `image push` killed between the blob uploads and the
/// manifest put: the store checks clean, commit and push then succeed, and removing the
/// container and the images leaves nothing.
#[test]
fn crash_points_of_commit_and_push() {
    let ctx = Ctx::new("crash-commit");
    if !crate::crash::hooks_honoured(&ctx) {
        eprintln!("SKIPPED: the binary under test ignores BERTH_CRASH_AT (release build)");
        return;
    }
    for point in ["image.commit.layer-stored", "image.commit.manifest-written"] {
        let eng = engine(&ctx);
        let name = format!("crash-commit-{}", point.rsplit('.').next().unwrap());
        let o = eng.cmd(&["container", "run", "--name", &name, "--network", "none", BASE, "sh", "-c", "echo c > /c"]);
        o.ok();
        let mut c = eng.command(&["container", "commit", &name, "committed:v1"]);
        c.env("BERTH_CRASH_AT", point);
        let o = ctx.exec_cmd(c, IMAGE_TIMEOUT);
        assert_eq!(o.code, 128 + 9, "{point}: berth should have killed itself there: {o}");
        check_clean(&eng, point);
        eng.cmd(&["container", "commit", &name, "committed:v1"]).ok();
        check_clean(&eng, &format!("{point}, then committed again"));
        let o = eng.cmd(&["container", "run", "--rm", "--network", "none", "committed:v1", "cat", "/c"]);
        o.ok();
        assert_eq!(o.stdout, "c\n", "{point}");
        eng.cmd(&["container", "rm", "-f", &name]).ok();
        eng.image(&["rm", "committed:v1", BASE]).ok();
        store_empty(&eng, point);
    }

    let reg = Registry::start(&ctx, RegistryOpts::default());
    let eng = engine(&ctx);
    let target = reg.reference("crash/pushed:v1");
    eng.image(&["tag", BASE, &target]).ok();
    crash_image(&eng, "image.push.blobs-uploaded", &["push", &target]);
    check_clean(&eng, "image.push.blobs-uploaded");
    // The registry has the blobs but no manifest under the tag.
    let o = Eng::new(&ctx).image(&["pull", &target]);
    assert_ne!(o.code, 0, "the tag must not exist in the registry before the manifest put: {o}");
    let o = eng.image(&["push", &target]);
    o.ok();
    let fresh = Eng::new(&ctx);
    fresh.image(&["pull", &target]).ok();
    assert_eq!(fresh.inspect(&target)["Id"], eng.inspect(&target)["Id"], "the pushed image pulls back the same");
    check_clean(&eng, "image.push.blobs-uploaded, then pushed again");
    eng.image(&["rm", &target, BASE]).ok();
    store_empty(&eng, "push");
}
