//! A full disk: the engine's data root on a small tmpfs that fills during `image load` and
//! `image pull`, a
//! container's log writing and a volume write. Each gives one clear line (or, for the log, a
//! container that ends and is reported) and leaves the image store (`image check`) and every
//! container record intact; once space is freed everything works again.

use crate::common::images::{docker_save_archive, tar_dir, ImageSpec, Layout};
use crate::common::registry::{Registry, RegistryOpts};
use crate::common::*;
use crate::soak::Engine;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A tmpfs of `size` at `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn new(dir: &Path, size: &str) -> Tmpfs {
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&o.stderr));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn check_clean(e: &Engine, what: &str) {
    let o = e.cmd(&["image", "check"]);
    assert_eq!(o.code, 0, "{what}: image check: {o}");
    assert!(o.stdout.contains(" 0 problem(s)"), "{what}: {o}");
}

#[test]
fn full_disk_during_load_logs_and_volume_writes() {
    let ctx = Ctx::new("fulldisk");
    let data = ctx.tempdir("small");
    let _fs = Tmpfs::new(&data, "12m");
    // The busybox image fits (about 2 MB of blob and 2 MB of snapshot).
    let e = Engine::with_data(&ctx, data.clone());
    check_clean(&e, "after the first load");

    // A 16 MB layer of random bytes cannot fit: one line, the store as it was.
    let b = ctx.bundle();
    let mut big = vec![0u8; 16 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    fs::write(b.rootfs.join("big"), &big).unwrap();
    drop(big);
    let layer = ctx.dir.join("big-layer.tar");
    tar_dir(&b.rootfs, &layer);
    let archive = ctx.dir.join("big.tar");
    docker_save_archive(&ctx, &archive, &layer, &["berth-test/big:v1"], &ImageSpec::new(&["sh"]));
    let ls_before = e.cmd(&["image", "ls", "-q"]).stdout;
    let o = e.cmd(&["image", "load", "-i", archive.to_str().unwrap()]);
    o.one_line_error(&["no space left on device"]);
    check_clean(&e, "after the failed load");
    assert_eq!(e.cmd(&["image", "ls", "-q"]).stdout, ls_before, "the image list is unchanged");
    let tmp = data.join("image/tmp");
    assert_eq!(fs::read_dir(&tmp).map(|r| r.count()).unwrap_or(0), 0, "nothing staged is left in {}", tmp.display());

    // The same layer pulled from a registry: one line, the store as it was.
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let lay = Layout::create(&ctx.tempdir("layout"));
    let l = lay.add_layer(&layer, false);
    let (m, _) = lay.add_image(std::slice::from_ref(&l), &ImageSpec::new(&["sh"]));
    lay.tag(&m, "v1", None);
    reg.push(&lay.dir, "v1", "berth/big:v1", false);
    let o = e.cmd(&["image", "pull", "--insecure", &reg.reference("berth/big:v1")]);
    o.one_line_error(&["no space left on device"]);
    check_clean(&e, "after the failed pull");
    assert_eq!(e.cmd(&["image", "ls", "-q"]).stdout, ls_before, "the image list is unchanged after the pull");
    assert_eq!(fs::read_dir(&tmp).map(|r| r.count()).unwrap_or(0), 0, "nothing staged is left after the pull");

    // A container whose log fills the disk: it still ends, its record and logs stay readable,
    // and rm removes it.
    let id = {
        let o = e.cmd(&[
            "container",
            "run",
            "-d",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo first-line; yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 6000000; echo done",
        ]);
        o.ok();
        o.stdout.trim().to_string()
    };
    let exited = wait_until(Duration::from_secs(120), || {
        e.cmd(&["container", "inspect", "-f", "{{.State.Status}}", &id]).stdout.trim() == "exited"
    });
    assert!(exited, "the container ends although its log cannot be written");
    let o = e.cmd(&["container", "logs", &id]);
    assert!(
        o.stdout.starts_with("first-line\n"),
        "the log written before the disk filled is readable: {}",
        &o.stdout[..o.stdout.len().min(200)]
    );
    let o = e.cmd(&["container", "inspect", &id]);
    o.ok();
    check_clean(&e, "after the log filled the disk");
    e.cmd(&["container", "rm", "-f", &id]).ok();

    // A volume write that fills the disk fails inside the container (ENOSPC there), nothing else.
    let o = e.cmd(&[
        "container",
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "fill:/fill",
        "busybox",
        "sh",
        "-c",
        "head -c 40000000 /dev/zero > /fill/x; echo rc=$?",
    ]);
    assert!(o.stdout.contains("rc=1"), "the write fails in the container: {o}");
    check_clean(&e, "after the volume filled the disk");
    e.cmd(&["volume", "rm", "fill"]).ok();

    // Space back: the big image loads and the store checks clean.
    let o = e.cmd(&["container", "run", "--rm", "--network", "none", "busybox", "echo", "still-works"]);
    o.ok();
    assert_eq!(o.stdout, "still-works\n");
}

/// `size` bytes no compressor can shrink.
fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; size];
    let mut x = seed;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    v
}

/// A build step whose layer does not fit and a commit whose layer does not fit: one line
/// naming the full disk, the store checks clean, nothing staged or mounted is left, the
/// steps cached before stay cached, and the container committed runs on untouched.
#[test]
fn full_disk_during_build_and_commit() {
    let ctx = Ctx::new("fulldisk-build");
    let data = ctx.tempdir("small");
    let _fs = Tmpfs::new(&data, "12m");
    let e = Engine::with_data(&ctx, data.clone());
    check_clean(&e, "after the first load");
    let ls_before = e.cmd(&["image", "ls", "-q"]).stdout;

    // A 5 MB file fits in the step's upper dir; its layer (5 MB more) does not.
    let cdir = ctx.tempdir("ctx");
    fs::write(cdir.join("big"), random_bytes(5 << 20, 0x51ab)).unwrap();
    fs::write(cdir.join("Dockerfile"), "FROM busybox\nRUN echo cached > /c\nCOPY big /big\n").unwrap();
    let o = e.cmd(&["image", "build", "-q", "--network", "none", "-t", "toobig:v1", cdir.to_str().unwrap()]);
    o.one_line_error(&["write layer", "space left on device"]);
    check_clean(&e, "after the failed build");
    // The data root itself is the tmpfs; nothing may be mounted below it.
    let m: Vec<String> = mounts_under(&data).into_iter().filter(|p| Path::new(p) != data).collect();
    assert!(m.is_empty(), "the failed build left mounts: {m:?}");
    for d in ["builder/tmp", "image/tmp"] {
        let left = fs::read_dir(data.join(d)).map(|r| r.count()).unwrap_or(0);
        assert_eq!(left, 0, "the failed build left {left} entries in {d}");
    }
    assert!(e.cmd(&["image", "inspect", "toobig:v1"]).code != 0, "no image is named after a failed build");
    // The step before the failing one is cached and still usable.
    fs::write(cdir.join("Dockerfile"), "FROM busybox\nRUN echo cached > /c\n").unwrap();
    let o = e.cmd(&["image", "build", "--network", "none", "-t", "small:v1", cdir.to_str().unwrap()]);
    o.ok();
    assert!(o.stderr.contains("CACHED") || o.stdout.contains("CACHED"), "the RUN step comes from the cache: {o}");
    check_clean(&e, "after the cached build");
    e.cmd(&["image", "rm", "small:v1"]).ok();
    e.cmd(&["builder", "prune", "-f"]).ok();
    e.cmd(&["image", "prune", "-f"]).ok();

    // A container that wrote 5 MB into its root: its commit does not fit.
    let o = e.cmd(&[
        "container",
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "fill-commit",
        "busybox",
        "sh",
        "-c",
        "head -c 5000000 /dev/urandom > /big && sleep 1000",
    ]);
    o.ok();
    let id = o.stdout.trim().to_string();
    let written = wait_until(Duration::from_secs(30), || {
        e.cmd(&["container", "exec", &id, "sh", "-c", "test $(wc -c < /big) = 5000000"]).code == 0
    });
    assert!(written, "the container wrote its file");
    let o = e.cmd(&["container", "commit", &id, "committed:v1"]);
    o.one_line_error(&["space left on device"]);
    check_clean(&e, "after the failed commit");
    assert_eq!(e.cmd(&["image", "ls", "-q"]).stdout, ls_before, "the image list is unchanged after the commit");
    let left = fs::read_dir(data.join("image/tmp")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(left, 0, "the failed commit left {left} entries staged");
    let o = e.cmd(&["container", "exec", &id, "echo", "runs-on"]);
    o.ok();
    assert_eq!(o.stdout, "runs-on\n");
    e.cmd(&["container", "rm", "-f", &id]).ok();
    check_clean(&e, "after rm");
}
