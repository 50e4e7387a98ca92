//! Known container-breakout classes: CVE-2019-5736 (overwriting the runtime binary through
//! /proc/PID/exe), CVE-2024-21626 (leaked fds as cwd), symlinked mount destinations, /proc as a
//! symlink, fd leaks.

use crate::common::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

/// The attacker of the CVE-2019-5736 tests: a container with CAP_SYS_PTRACE (so it may open
/// any exe in its pid namespace) that owns a pid namespace the victim joins. On /tmp/go1 it opens
/// the first /proc/N/exe that is not its own busybox, read-only, and tries to write to it
/// directly; on /tmp/go2 (the victim has exited, so nothing executes that file any more) it
/// reopens it for writing through /proc/self/fd/3, which is how the real exploit rewrote runc.
const ATTACKER: &str = r#"
while [ ! -e /tmp/go1 ]; do sleep 0.05; done
found=
for p in /proc/[0-9]*; do
  n=${p#/proc/}
  [ "$n" = "$$" ] && continue
  exec 3<"$p/exe" 2>/dev/null || continue
  t=$(readlink /proc/self/fd/3)
  case "$t" in */busybox) exec 3<&-; continue;; esac
  found="$n $t"
  break
done
echo "${found:-none}" > /tmp/opened
if [ -n "$found" ]; then
  (echo pwned >> "$p/exe") 2>/dev/null && echo DIRECT-WROTE >> /tmp/result
fi
echo ready > /tmp/ready
while [ ! -e /tmp/go2 ]; do sleep 0.05; done
if [ -n "$found" ]; then
  (echo pwned >> /proc/self/fd/3) 2>/dev/null && echo FD-WROTE >> /tmp/result
  (echo pwned > /proc/self/fd/3) 2>/dev/null && echo FD-TRUNCATED >> /tmp/result
fi
echo finished >> /tmp/result
sleep 1000
"#;

/// Runs one attack round against `victim` (which joins the attacker's pid namespace). With
/// `victim_running`, the victim is `run -d` before the attacker looks; otherwise it is only
/// created then, and started after the attacker opened its exe. Returns (opened, result).
fn exe_attack(ctx: &Ctx, victim: &mut Bundle, victim_running: bool) -> (String, String) {
    let mut b = ctx.bundle();
    b.writable_root();
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_PTRACE"];
    b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
    b.sh(ATTACKER);
    let idb = ctx.id("attacker");
    ctx.run_detached(&mut b, &idb);
    let pidb = ctx.pid(&idb);

    victim.ns_add("pid", Some(&format!("/proc/{pidb}/ns/pid")));
    let ida = ctx.id("victim");
    if victim_running {
        ctx.run_detached(victim, &ida);
    } else {
        ctx.create(victim, &ida).ok();
    }
    fs::write(b.rootfs.join("tmp/go1"), "").unwrap();
    assert!(wait_file(&b.rootfs.join("tmp/ready"), Duration::from_secs(20)), "attacker did not get ready");
    let opened = read(b.rootfs.join("tmp/opened"));
    if !victim_running {
        let _ = ctx.start(&ida);
    }
    ctx.wait_status(&ida, "stopped", Duration::from_secs(20));
    fs::write(b.rootfs.join("tmp/go2"), "").unwrap();
    let result = b.rootfs.join("tmp/result");
    assert!(wait_until(Duration::from_secs(10), || read(&result).contains("finished")), "attacker did not finish");
    let _ = ctx.delete_force(&idb);
    (opened.trim().to_string(), read(&result))
}

/// CVE-2019-5736. The victim container's init (the runtime binary, waiting in `created`) is
/// opened by the attacker; the victim is then started with the entrypoint `#!/proc/self/exe`
/// (its process runs the runtime binary once more, inside the container) and exits; then the
/// attacker writes through its fd. The test runs a private copy of the binary under test, so a
/// vulnerable runtime damages only the copy. A control round first proves the attack works
/// here against a plain binary on a writable mount.
#[test]
fn security_cve_2019_5736_runtime_exe_not_writable() {
    let mut ctx = Ctx::new("cve20195736");
    let binary = ctx.use_private_bin_copy();
    let before = fs::read(&binary).unwrap();

    // Control: the victim runs its own copy of busybox (as `sleep`) from a writable rootfs.
    let mut control = ctx.bundle();
    control.writable_root();
    fs::copy("/bin/busybox", control.rootfs.join("sleep")).unwrap();
    control.args(&["/sleep", "2"]);
    let (opened, result) = exe_attack(&ctx, &mut control, true);
    assert!(opened.ends_with("/sleep"), "control: attacker opened {opened:?}");
    assert!(result.contains("FD-WROTE"), "control: the attack model does not work on this host: {result:?}");
    assert_ne!(fs::read(control.rootfs.join("sleep")).unwrap(), fs::read("/bin/busybox").unwrap());

    // The real round against the runtime binary.
    let mut a = ctx.bundle();
    a.write_file("evil", "#!/proc/self/exe\n", 0o755);
    a.args(&["/evil"]);
    let (opened, result) = exe_attack(&ctx, &mut a, false);
    eprintln!("attacker opened: {opened}");
    let after = fs::read(&binary).unwrap();
    assert!(after == before, "the runtime binary was modified from inside a container (opened: {opened})");
    assert_eq!(result, "finished\n", "writes to the runtime's exe succeeded (opened: {opened})");
}

/// CVE-2024-21626: process.cwd = /proc/self/fd/N must never leave the process with a working
/// directory outside the container's root. Either the runtime refuses it, or `cd -P ..` from the
/// cwd ends at the container's /.
#[test]
fn security_cve_2024_21626_cwd_proc_self_fd() {
    let ctx = Ctx::new("cve202421626");
    let script =
        "i=0; while [ $i -lt 64 ]; do cd -P .. 2>/dev/null; i=$((i+1)); done; stat -c %d:%i . /; ls -a . | head -50";
    // Control: from a legitimate cwd the walk up ends at the container's /.
    let mut b = ctx.bundle();
    b.set("/process/cwd", json!("/etc"));
    b.sh(script);
    let id = ctx.id("etc");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.lines()[0], o.lines()[1], "{o}");
    for n in 3..=10 {
        let mut b = ctx.bundle();
        b.set("/process/cwd", json!(format!("/proc/self/fd/{n}")));
        b.sh(script);
        let id = ctx.id(&format!("fd{n}"));
        let snap = ctx.snapshot(&b);
        let o = ctx.run(&mut b, &id);
        eprintln!("cwd /proc/self/fd/{n}: exit {} {}", o.code, o.stderr.trim());
        if o.code != 0 {
            assert!(!o.timed_out, "{o}");
            assert!(!o.stdout.contains(':'), "the process ran despite the failure: {o}");
            ctx.assert_nothing_left(&snap, &b, &id);
            continue;
        }
        let l = o.lines();
        assert!(l.len() >= 2, "{o}");
        assert_eq!(l[0], l[1], "cwd /proc/self/fd/{n} reached outside the container's root: {o}");
    }
}

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
