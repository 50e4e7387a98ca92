//! Bad input: each case fails with a non-zero exit, ONE stderr line naming the problem, and
//! leaves nothing behind (state dir, mounts, cgroups, processes).

use crate::common::*;
use serde_json::json;
use std::fs;
use std::time::Duration;

const MISSING: &[&str] = &["not exist", "no such", "not found"];

/// Runs `create` (and `run`) on a broken bundle and checks the error and the leftovers.
fn create_and_run_fail(ctx: &Ctx, b: &Bundle, words: &[&str]) {
    for cmd in ["create", "run"] {
        let id = ctx.id(cmd);
        let snap = ctx.snapshot(b);
        let o = ctx.cmd(&[cmd, "--bundle", b.dir.to_str().unwrap(), &id]);
        o.one_line_error(words);
        ctx.assert_nothing_left(&snap, b, &id);
        assert!(ctx.status(&id).is_none(), "state must fail after a failed {cmd}");
    }
}

#[test]
fn badinput_missing_config_json() {
    let ctx = Ctx::new("noconfig");
    let b = ctx.bundle();
    assert!(!b.config_path().exists());
    create_and_run_fail(&ctx, &b, &["config.json"]);
}

#[test]
fn badinput_malformed_json() {
    let ctx = Ctx::new("badjson");
    let mut b = ctx.bundle();
    b.write_config("");
    fs::write(b.config_path(), "{ \"ociVersion\": \"1.0.2\", \"process\": { oops").unwrap();
    // runc deviates: "invalid character 'o' looking for ..." does not name config.json.
    // berth names the file, as every berth error names its path.
    let words: &[&str] = if is_runc() { &["invalid character"] } else { &["config.json"] };
    create_and_run_fail(&ctx, &b, words);
}

#[test]
fn badinput_wrong_field_type() {
    let ctx = Ctx::new("badtype");
    let mut b = ctx.bundle();
    b.set("/process/args", json!("x"));
    b.write_config("");
    // runc names the field ("...field Process.process.args of type []string"); berth names the
    // file (and serde's "invalid type").
    let words: &[&str] = if is_runc() { &["args"] } else { &["config.json"] };
    create_and_run_fail(&ctx, &b, words);
}

#[test]
fn badinput_missing_rootfs() {
    let ctx = Ctx::new("norootfs");
    let mut b = ctx.bundle();
    b.set("/root/path", json!("no-such-rootfs"));
    b.write_config("");
    create_and_run_fail(&ctx, &b, &["no-such-rootfs", "rootfs"]);
}

/// `process` is optional at create but REQUIRED at start (spec): `run` fails; `create` either
/// fails (runc) or succeeds and then `start` fails.
#[test]
fn badinput_no_process() {
    let ctx = Ctx::new("noprocess");
    let mut b = ctx.bundle();
    b.remove("/process");
    b.write_config("");
    let id = ctx.id("run");
    let snap = ctx.snapshot(&b);
    let o = ctx.cmd(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    o.one_line_error(&["process"]);
    ctx.assert_nothing_left(&snap, &b, &id);

    let id = ctx.id("create");
    let snap = ctx.snapshot(&b);
    let o = ctx.cmd(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    if o.code != 0 {
        o.one_line_error(&["process"]);
        ctx.assert_nothing_left(&snap, &b, &id);
        return;
    }
    ctx.start(&id).one_line_error(&["process"]);
}

#[test]
fn badinput_nonexistent_executable_run() {
    let ctx = Ctx::new("noexe");
    for (arg, word) in [("/bin/no-such-binary", "no-such-binary"), ("no-such-command", "no-such-command")] {
        let mut b = ctx.bundle();
        b.args(&[arg]);
        let id = ctx.id("ne");
        let snap = ctx.snapshot(&b);
        let o = ctx.run(&mut b, &id);
        o.one_line_error(&[word]);
        // The process never ran: the runtime must not report it as exit 0, and cleans up.
        ctx.assert_nothing_left(&snap, &b, &id);
    }
}

/// create may already fail (runc looks the executable up at create); otherwise start fails.
#[test]
fn badinput_nonexistent_executable_create_start() {
    let ctx = Ctx::new("noexecs");
    let mut b = ctx.bundle();
    b.args(&["/bin/no-such-binary"]);
    let id = ctx.id("ne");
    let snap = ctx.snapshot(&b);
    let o = ctx.create(&mut b, &id);
    if o.code != 0 {
        o.one_line_error(&["no-such-binary"]);
        ctx.assert_nothing_left(&snap, &b, &id);
        return;
    }
    let s = ctx.start(&id);
    s.one_line_error(&["no-such-binary"]);
    assert!(
        wait_until(Duration::from_secs(5), || matches!(ctx.status(&id).as_deref(), None | Some("stopped"))),
        "status after a failed start: {:?}",
        ctx.status(&id)
    );
}

#[test]
fn badinput_cwd_not_a_directory() {
    let ctx = Ctx::new("badcwd");
    let mut b = ctx.bundle();
    b.set("/process/cwd", json!("/etc/passwd"));
    b.args(&["true"]);
    let id = ctx.id("cwd");
    let snap = ctx.snapshot(&b);
    let o = ctx.run(&mut b, &id);
    o.one_line_error(&["/etc/passwd", "cwd", "directory"]);
    ctx.assert_nothing_left(&snap, &b, &id);
}

#[test]
fn badinput_relative_cwd() {
    let ctx = Ctx::new("relcwd");
    let mut b = ctx.bundle();
    b.set("/process/cwd", json!("relative/dir"));
    b.args(&["true"]);
    let id = ctx.id("cwd");
    let snap = ctx.snapshot(&b);
    let o = ctx.run(&mut b, &id);
    o.one_line_error(&["cwd", "absolute", "relative"]);
    ctx.assert_nothing_left(&snap, &b, &id);
}

fn missing_container(verb: &[&str]) {
    let ctx = Ctx::new("missing");
    let id = ctx.id("ghost");
    let mut args: Vec<&str> = verb.to_vec();
    args.insert(1, &id);
    let before = fs::read_dir(&ctx.root).unwrap().count();
    let o = ctx.cmd(&args);
    o.one_line_error(MISSING);
    // runc's words exactly (containerd matches "does not exist"); runc does not name the id.
    let want = if is_runc() { "msg=\"container does not exist\"" } else { "berth: container does not exist" };
    assert!(o.stderr.trim_end().ends_with(want), "{o}");
    assert_eq!(fs::read_dir(&ctx.root).unwrap().count(), before, "nothing may be created under --root");
}

#[test]
fn badinput_start_missing_container() {
    missing_container(&["start"]);
}

#[test]
fn badinput_kill_missing_container() {
    missing_container(&["kill", "KILL"]);
}

#[test]
fn badinput_delete_missing_container() {
    missing_container(&["delete"]);
}

#[test]
fn badinput_state_missing_container() {
    missing_container(&["state"]);
}

#[test]
fn badinput_unknown_signal_names_it() {
    let ctx = Ctx::new("badsig");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("bs");
    ctx.run_detached(&mut b, &id);
    let o = ctx.kill(&id, "SIGWHATEVER");
    o.one_line_error(&["SIGWHATEVER"]);
    assert_eq!(ctx.state(&id)["status"], "running");
}

#[test]
fn badinput_invalid_ids() {
    let ctx = Ctx::new("badids");
    for bad in ["../x", "a/b", "", "x y", ".."] {
        let mut b = ctx.bundle();
        b.args(&["true"]);
        b.write_config(bad);
        for cmd in ["create", "run"] {
            let snap = ctx.snapshot(&b);
            let o = ctx.cmd(&[cmd, "--bundle", b.dir.to_str().unwrap(), bad]);
            o.one_line_error(&["id"]);
            ctx.assert_nothing_left(&snap, &b, bad);
            assert!(!ctx.dir.join("x").exists(), "`../x` escaped --root");
        }
    }
}

#[test]
fn badinput_create_without_id() {
    let ctx = Ctx::new("noid");
    let mut b = ctx.bundle();
    b.write_config("");
    let snap = ctx.snapshot(&b);
    let o = ctx.cmd(&["create", "--bundle", b.dir.to_str().unwrap()]);
    o.fails();
    let e = o.stderr.to_lowercase();
    assert!(e.contains("id") || e.contains("argument"), "{o}");
    ctx.assert_nothing_left(&snap, &b, "x");
}

#[test]
fn badinput_bundle_dir_missing() {
    let ctx = Ctx::new("nobundle");
    let b = ctx.bundle();
    let missing = ctx.dir.join("no-such-bundle");
    let id = ctx.id("nb");
    let snap = ctx.snapshot(&b);
    let o = ctx.cmd(&["create", "--bundle", missing.to_str().unwrap(), &id]);
    o.one_line_error(&["no-such-bundle", "bundle"]);
    ctx.assert_nothing_left(&snap, &b, &id);
}

/// A sysctl the container would set in a namespace it shares with the host (here ipc), or
/// one no namespace covers, is refused before anything is made (runc does the same). The
/// value asked for is the host's own, so a regression could not change the host.
#[test]
fn badinput_sysctl_outside_container_namespaces() {
    let ctx = Ctx::new("sysctlhost");
    for (key, remove, words) in [
        ("kernel.shmmax", Some("ipc"), &["kernel.shmmax", "ipc namespace"][..]),
        ("net.core.somaxconn", Some("network"), &["net.core.somaxconn", "network namespace"][..]),
        ("vm.swappiness", None, &["vm.swappiness", "not in a separate kernel namespace"][..]),
    ] {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let host = fs::read_to_string(&path).unwrap();
        let mut b = ctx.bundle();
        if let Some(ns) = remove {
            b.ns_remove(ns);
        }
        b.set("/linux/sysctl", json!({ key: host.trim() }));
        b.args(&["true"]);
        b.write_config("");
        create_and_run_fail(&ctx, &b, words);
        assert_eq!(fs::read_to_string(&path).unwrap(), host, "{key} changed on the host");
    }
}

/// Nothing can be mounted inside the container's /proc but the files lxcfs emulates; a mount
/// point that does not exist there is refused with runc's reason, not "no such file" (which
/// engines turn into "command not found", exit status 127).
#[test]
fn badinput_mount_inside_proc() {
    let ctx = Ctx::new("procmount");
    for (m, runc_words) in [
        (
            json!({"destination": "/proc/berth-x", "type": "bind", "source": "/etc/hostname", "options": ["bind"]}),
            &["inside /proc"][..],
        ),
        // runc only says "mkdir …/proc/berth-y: no such file or directory" for a tmpfs
        (json!({"destination": "/proc/berth-y", "type": "tmpfs", "source": "tmpfs"}), &["berth-y"][..]),
    ] {
        let mut b = ctx.bundle();
        b.mount(m);
        b.args(&["true"]);
        b.write_config("");
        create_and_run_fail(&ctx, &b, if is_runc() { runc_words } else { &["inside /proc"] });
    }
}

/// A memory limit too low to run anything: when the init is OOM-killed during set-up the
/// error says so (runc: it cannot set the limit), not "sync with container init: connection
/// reset"; when set-up fits and the process is killed, `run` exits 137 like any OOM kill.
#[test]
fn badinput_memory_limit_too_low() {
    let ctx = Ctx::new("memlow");
    let mut b = ctx.bundle();
    b.set("/linux/resources/memory", json!({"limit": 102400}));
    b.args(&["true"]);
    let id = ctx.id("m");
    let snap = ctx.snapshot(&b);
    let o = ctx.run(&mut b, &id);
    if o.code == 137 && o.stderr.trim().is_empty() {
        ctx.delete_force(&id);
        return;
    }
    o.one_line_error(&["memory limit"]);
    ctx.assert_nothing_left(&snap, &b, &id);
}

/// The runtime-spec 1.3.0 fields berth does not apply are refused with one line naming the
/// field, before anything exists, never silently ignored.
#[test]
fn badinput_unsupported_spec_fields() {
    if skip_on_runc("runc 1.1.5 predates these fields and ignores them") {
        return;
    }
    let ctx = Ctx::new("unsupported");
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("/linux/intelRdt", json!({"closID": "c1", "schemata": ["L3:0=f"]}), "linux.intelRdt"),
        ("/linux/netDevices", json!({"eth9": {"name": "eth0"}}), "linux.netDevices"),
        ("/linux/memoryPolicy", json!({"mode": "MPOL_BIND", "nodes": "0"}), "linux.memoryPolicy"),
        ("/process/execCPUAffinity", json!({"initial": "0", "final": "0"}), "process.execCPUAffinity"),
        ("/vm", json!({"hypervisor": {"path": "/x"}, "kernel": {"path": "/k"}}), "vm"),
    ];
    for (ptr, v, word) in cases {
        let mut b = ctx.bundle();
        b.set(ptr, v);
        b.write_config("");
        create_and_run_fail(&ctx, &b, &[&format!("{word} is not supported")]);
    }
    // exec --process with execCPUAffinity too.
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("ex");
    ctx.run_detached(&mut b, &id);
    let p = ctx.dir.join("process.json");
    let proc = json!({"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "execCPUAffinity": {"initial": "0"}});
    fs::write(&p, proc.to_string()).unwrap();
    let o = ctx.cmd(&["exec", "--process", p.to_str().unwrap(), &id]);
    o.one_line_error(&["process.execCPUAffinity is not supported"]);
    assert_eq!(o.code, 255, "{o}");
}

/// Only procfs (or a bind of a procfs) may be mounted onto /proc itself: a tmpfs or a bind of
/// an ordinary directory there is refused with runc's reason (the path quoted, as Go's %q),
/// before the container runs.
#[test]
fn badinput_mount_over_proc_not_proc() {
    let ctx = Ctx::new("overproc");
    let src = ctx.tempdir("src");
    for (m, runc_words) in [
        // runc 1.1.5 mounts the tmpfs, then fails without a procfs (later runc refuses it)
        (json!({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}), &["/proc/self/fd"][..]),
        (
            json!({"destination": "/proc", "type": "bind", "source": src.to_str().unwrap(), "options": ["rbind"]}),
            &["/proc\" cannot be mounted because it is not of type proc"][..],
        ),
    ] {
        let mut b = ctx.bundle();
        b.remove_mount("/proc");
        b.mount(m);
        b.args(&["true"]);
        b.write_config("");
        let words = if is_runc() { runc_words } else { &["/proc\" cannot be mounted because it is not of type proc"] };
        create_and_run_fail(&ctx, &b, words);
    }
}
