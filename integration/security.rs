//! Known container-breakout classes: symlinked mount destinations, /proc as a symlink, fd
//! leaks. The CVEs with a weakened round (CVE-2019-5736, CVE-2024-21626 and the others) are in
//! breakouts.rs.

use crate::common::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

/// No fd other than 0, 1, 2 reaches the container process (seen from the host).
#[test]
fn security_no_leaked_fds_host_view() {
    let ctx = Ctx::new("fdshost");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("fd");
    ctx.run_detached(&mut b, &id);
    let pid = ctx.pid(&id);
    assert!(wait_until(Duration::from_secs(5), || read(format!("/proc/{pid}/comm")).trim() == "sleep"));
    let mut fds: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    fds.sort();
    let targets: Vec<String> =
        fds.iter().map(|f| format!("{f} -> {:?}", fs::read_link(format!("/proc/{pid}/fd/{f}")).ok())).collect();
    assert_eq!(fds, [0, 1, 2], "{targets:?}");
}

fn only_stdio_and_ls(out: &str) {
    let fds: Vec<u32> = out.split_whitespace().map(|x| x.parse().unwrap_or(999)).collect();
    // 0, 1, 2 and the directory fd `ls` itself opened.
    assert_eq!(fds, [0, 1, 2, 3], "fds in the container: {out}");
}

#[test]
fn security_no_leaked_fds_run() {
    let ctx = Ctx::new("fdsrun");
    let o = ctx.run_sh("ls /proc/self/fd");
    o.ok();
    only_stdio_and_ls(&o.stdout);
}

#[test]
fn security_no_leaked_fds_create_start() {
    let ctx = Ctx::new("fdscreate");
    let mut b = ctx.bundle();
    b.args(&["ls", "/proc/self/fd"]);
    let id = ctx.id("fd");
    let o = ctx.create(&mut b, &id);
    o.ok();
    ctx.start(&id).ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    only_stdio_and_ls(&o.stdout_now());
}

/// rootfs/evil is a symlink to a host dir: a mount on /evil must land inside the rootfs (or be
/// refused), never on the host dir. A createContainer hook (in the container's mount namespace,
/// before pivot_root) looks at the host path.
#[test]
fn security_mount_destination_symlink_to_host() {
    let ctx = Ctx::new("symlinkdest");
    let host = ctx.tempdir("hostdir");
    fs::write(host.join("marker"), "host-marker\n").unwrap();
    let mut b = ctx.bundle();
    symlink(&host, b.rootfs.join("evil")).unwrap();
    b.mount(json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}));
    let seen = ctx.dir.join("seen");
    b.hook(
        "createContainer",
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!(
            "grep -c ' {h} ' /proc/self/mountinfo > {s}.count; ls {h} > {s}.ls", h = host.display(), s = seen.display())]}),
    );
    b.args(&["sleep", "1000"]);
    let id = ctx.id("sym");
    let snap = ctx.snapshot(&b);
    let host_before = mounts_under(&host);
    let o = ctx.create(&mut b, &id);
    assert!(mounts_under(&host) == host_before, "a mount appeared on the host dir");
    assert_eq!(read(host.join("marker")), "host-marker\n");
    if o.code != 0 {
        ctx.assert_nothing_left(&snap, &b, &id);
        return;
    }
    assert_eq!(
        read(format!("{}.count", seen.display())).trim(),
        "0",
        "tmpfs was mounted on the host path in the container's mount namespace"
    );
    assert_eq!(read(format!("{}.ls", seen.display())).trim(), "marker", "the host dir was hidden by a mount");
}

/// /proc in the rootfs is a symlink: create must fail (mounting proc through it would put it
/// elsewhere, CVE-2019-19921 / CVE-2023-28642 class).
#[test]
fn security_proc_symlink_fails_create() {
    let ctx = Ctx::new("procsymlink");
    let mut b = ctx.bundle();
    fs::remove_dir(b.rootfs.join("proc")).unwrap();
    fs::create_dir(b.rootfs.join("fakeproc")).unwrap();
    symlink("fakeproc", b.rootfs.join("proc")).unwrap();
    b.args(&["true"]);
    let id = ctx.id("ps");
    let snap = ctx.snapshot(&b);
    let o = ctx.create(&mut b, &id);
    o.one_line_error(&["proc", "symlink"]);
    ctx.assert_nothing_left(&snap, &b, &id);
}

/// The container cannot see the runtime's state dir or the bundle's config through /proc/1/root
/// tricks: its / is the rootfs (the marker file) and the host's / is not reachable by `..`.
#[test]
fn security_root_is_rootfs() {
    let ctx = Ctx::new("rootisrootfs");
    let o = ctx.run_sh(
        "cat /etc/berth-fixture; cd -P /../../..; stat -c %d:%i . /; ls /proc/1/root/ | grep -c '^work$'; true",
    );
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], FIXTURE_MARK.trim(), "{o}");
    assert_eq!(l[1], l[2], "{o}");
    assert_eq!(l[3], "0", "{o}");
}
