//! The container process: args, env, cwd, user, umask, rlimits, noNewPrivileges, oomScoreAdj,
//! capabilities, terminal, --preserve-fds.

use crate::common::*;
use serde_json::json;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::Duration;

#[test]
fn process_args_env_cwd() {
    let ctx = Ctx::new("argsenv");
    let mut b = ctx.bundle();
    fs::create_dir_all(b.rootfs.join("work/dir")).unwrap();
    b.args(&["sh", "-c", "echo \"$0|$1|$FOO|$EMPTY|\"; pwd", "arg zero", "arg one"]);
    b.env("FOO=bar baz");
    b.env("EMPTY=");
    b.set("/process/cwd", json!("/work/dir"));
    let id = ctx.id("a");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.lines(), ["arg zero|arg one|bar baz||", "/work/dir"], "{o}");
}

/// The process gets exactly process.env: nothing from the runtime's own environment.
#[test]
fn process_env_is_exactly_config() {
    let ctx = Ctx::new("envexact");
    let mut b = ctx.bundle();
    b.set("/process/env", json!(["PATH=/bin:/usr/bin", "ONLY=this"]));
    b.args(&["env"]);
    let id = ctx.id("e");
    b.write_config(&id);
    ctx.track(&id);
    let mut c = ctx.command(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    c.env("BERTH_ITEST_LEAK", "leaked");
    let o = ctx.exec_cmd(c, TIMEOUT);
    o.ok();
    let mut got = o.lines();
    got.sort();
    // runc adds HOME when the config has none (from the user's passwd entry).
    got.retain(|l| !l.starts_with("HOME="));
    assert_eq!(got, ["ONLY=this", "PATH=/bin:/usr/bin"], "{o}");
}

#[test]
fn process_args_path_lookup() {
    let ctx = Ctx::new("pathlookup");
    let mut b = ctx.bundle();
    b.write_file("opt/tools/mytool", "#!/bin/sh\necho mytool-ran \"$@\"\n", 0o755);
    b.set("/process/env", json!(["PATH=/opt/tools:/bin"]));
    b.args(&["mytool", "x"]);
    let id = ctx.id("pl");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout, "mytool-ran x\n", "{o}");
}

#[test]
fn process_user_uid_gid_additional_gids() {
    let ctx = Ctx::new("user");
    let mut b = ctx.bundle();
    b.set("/process/user", json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}));
    b.sh("id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status");
    let id = ctx.id("u");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = o.lines();
    assert_eq!(&l[..2], ["1000", "1000"], "{o}");
    let st = o.stdout.clone();
    assert_eq!(norm(&status_field(&st, "Uid").unwrap()), ["1000 1000 1000 1000"], "{o}");
    assert_eq!(norm(&status_field(&st, "Gid").unwrap()), ["1000 1000 1000 1000"], "{o}");
    let mut groups: Vec<u32> =
        status_field(&st, "Groups").unwrap().split_whitespace().map(|g| g.parse().unwrap()).collect();
    groups.sort();
    assert_eq!(groups, [10, 20], "{o}");
}

#[test]
fn process_root_has_no_supplementary_groups() {
    let ctx = Ctx::new("rootgroups");
    let o = ctx.run_sh("grep '^Groups:' /proc/self/status");
    o.ok();
    assert_eq!(status_field(&o.stdout, "Groups").unwrap(), "", "{o}");
}

#[test]
fn process_umask() {
    let ctx = Ctx::new("umask");
    let mut b = ctx.bundle();
    b.set("/process/user/umask", json!(0o077));
    b.sh("umask");
    let id = ctx.id("um");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout.trim(), "0077", "{o}");
}

#[test]
fn process_rlimits() {
    let ctx = Ctx::new("rlimits");
    let mut b = ctx.bundle();
    b.set(
        "/process/rlimits",
        json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}, {"type": "RLIMIT_NPROC", "soft": 777, "hard": 888}]),
    );
    b.sh("ulimit -n; grep -E '^Max (open files|processes)' /proc/self/limits");
    let id = ctx.id("rl");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = norm(&o.stdout);
    assert_eq!(l[0], "123", "{o}");
    assert!(l.iter().any(|x| x == "Max processes 777 888 processes"), "{o}");
    assert!(l.iter().any(|x| x == "Max open files 123 456 files"), "{o}");
}

fn nnp(value: bool) -> String {
    let ctx = Ctx::new("nnp");
    let mut b = ctx.bundle();
    b.set("/process/noNewPrivileges", json!(value));
    b.sh("grep '^NoNewPrivs:' /proc/self/status");
    let id = ctx.id("nnp");
    let o = ctx.run(&mut b, &id);
    o.ok();
    status_field(&o.stdout, "NoNewPrivs").unwrap()
}

#[test]
fn process_no_new_privileges_set() {
    assert_eq!(nnp(true), "1");
}

#[test]
fn process_no_new_privileges_unset() {
    assert_eq!(nnp(false), "0");
}

#[test]
fn process_oom_score_adj() {
    let ctx = Ctx::new("oom");
    let mut b = ctx.bundle();
    b.set("/process/oomScoreAdj", json!(523));
    b.sh("cat /proc/self/oom_score_adj");
    let id = ctx.id("oom");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout.trim(), "523", "{o}");
}

fn cap_status(o: &Out) -> [u64; 5] {
    let f =
        |k: &str| u64::from_str_radix(&status_field(&o.stdout, k).unwrap_or_else(|| panic!("{k}: {o}")), 16).unwrap();
    [f("CapInh"), f("CapPrm"), f("CapEff"), f("CapBnd"), f("CapAmb")]
}

/// Root with one coherent set in every list: all five sets equal it.
#[test]
fn process_capabilities_root() {
    let ctx = Ctx::new("capsroot");
    let set = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"];
    let mut b = ctx.bundle();
    b.set(
        "/process/capabilities",
        json!({"bounding": set, "effective": set, "permitted": set, "inheritable": set, "ambient": set}),
    );
    b.sh("grep ^Cap /proc/self/status");
    let id = ctx.id("cr");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let m = cap_mask(&set);
    assert_eq!(cap_status(&o), [m, m, m, m, m], "{o}");
}

/// A non-root user: after execve the permitted and effective sets are the ambient set, while
/// the inheritable and bounding sets are the config's.
#[test]
fn process_capabilities_nonroot_ambient() {
    let ctx = Ctx::new("capsuser");
    let bounding = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"];
    let inheritable = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let permitted = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let ambient = ["CAP_NET_BIND_SERVICE"];
    let mut b = ctx.bundle();
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.set(
        "/process/capabilities",
        json!({"bounding": bounding, "effective": permitted, "permitted": permitted, "inheritable": inheritable, "ambient": ambient}),
    );
    b.set("/process/noNewPrivileges", json!(false));
    b.sh("grep ^Cap /proc/self/status");
    let id = ctx.id("cu");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let amb = cap_mask(&ambient);
    assert_eq!(cap_status(&o), [cap_mask(&inheritable), amb, amb, cap_mask(&bounding), amb], "{o}");
}

/// The runc-spec default: no inheritable set, so the ambient set cannot be raised.
#[test]
fn process_capabilities_default_config() {
    let ctx = Ctx::new("capsdefault");
    let o = ctx.run_sh("grep ^Cap /proc/self/status");
    o.ok();
    let m = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let [inh, prm, eff, bnd, _amb] = cap_status(&o);
    assert_eq!([inh, prm, eff, bnd], [0, m, m, m], "{o}");
}

/// A capability outside the bounding set cannot be used: chown as root without CAP_CHOWN fails.
#[test]
fn process_capability_dropped_is_enforced() {
    let ctx = Ctx::new("capenforced");
    let mut b = ctx.bundle();
    b.writable_root();
    b.sh("touch /tmp/f; chown 1000 /tmp/f 2>/dev/null; echo rc=$?");
    let id = ctx.id("ce");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout.trim(), "rc=1", "{o}");
}

#[test]
fn process_terminal_console_socket() {
    let ctx = Ctx::new("terminal");
    let sock = ConsoleSocket::new(&ctx);
    let mut b = ctx.bundle();
    b.set("/process/terminal", json!(true));
    b.sh("tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty; stat -c %t /dev/console; echo done");
    let id = ctx.id("tty");
    b.write_config(&id);
    ctx.track(&id);
    ctx.cmd(&["create", "--bundle", b.dir.to_str().unwrap(), "--console-socket", sock.path.to_str().unwrap(), &id])
        .ok();
    let master = sock.recv_master(Duration::from_secs(10));
    ctx.start(&id).ok();
    let out = read_pty(&master, Duration::from_secs(10));
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    assert!(lines[0].starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(lines[1], "all-tty", "{out:?}");
    assert_eq!(lines[2], "88", "/dev/console must be the pty (major 136 = 0x88): {out:?}");
    assert_eq!(lines[3], "done", "{out:?}");
}

#[test]
fn process_terminal_run_detached_console_socket() {
    let ctx = Ctx::new("terminald");
    let sock = ConsoleSocket::new(&ctx);
    let mut b = ctx.bundle();
    b.set("/process/terminal", json!(true));
    b.sh("read line; echo got:$line");
    let id = ctx.id("ttyd");
    b.write_config(&id);
    ctx.track(&id);
    ctx.cmd(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), "--console-socket", sock.path.to_str().unwrap(), &id])
        .ok();
    let master = sock.recv_master(Duration::from_secs(10));
    nix::unistd::write(&master, b"hello-pty\n").unwrap();
    let out = read_pty(&master, Duration::from_secs(10));
    assert!(out.contains("got:hello-pty"), "{out:?}");
}

#[test]
fn process_terminal_without_console_socket_fails() {
    let ctx = Ctx::new("termnosock");
    let mut b = ctx.bundle();
    b.set("/process/terminal", json!(true));
    let id = ctx.id("tns");
    let snap = ctx.snapshot(&b);
    let o = ctx.create(&mut b, &id);
    o.one_line_error(&["console", "tty", "terminal"]);
    ctx.assert_nothing_left(&snap, &b, &id);
}

/// --preserve-fds 1 passes fd 3 into the container; nothing above it.
#[test]
fn process_preserve_fds() {
    let ctx = Ctx::new("preservefds");
    let f = ctx.dir.join("passed.txt");
    fs::write(&f, "through-fd-3\n").unwrap();
    let file = fs::File::open(&f).unwrap();
    let extra = fs::File::open("/dev/null").unwrap();
    let mut b = ctx.bundle();
    b.sh("cat <&3; ls /proc/self/fd");
    let id = ctx.id("pf");
    b.write_config(&id);
    ctx.track(&id);
    let mut c = ctx.command(&["run", "--preserve-fds", "1", "--bundle", b.dir.to_str().unwrap(), &id]);
    // Move both above 100 first so that dup2 onto 3 and 4 cannot clobber either source.
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on fds we own; the copies are closed at the end of the test.
    let (src, src2) = unsafe {
        (
            libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100),
            libc::fcntl(extra.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100),
        )
    };
    assert!(src >= 100 && src2 >= 100);
    // SAFETY: between fork and exec only async-signal-safe dup2 calls: fd 3 is the file
    // (CLOEXEC cleared by dup2), fd 4 is an extra fd that must NOT be passed.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(src, 3) < 0 || libc::dup2(src2, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = ctx.exec_cmd(c, TIMEOUT);
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], "through-fd-3", "{o}");
    let fds: Vec<u32> = l[1..].iter().flat_map(|x| x.split_whitespace()).map(|x| x.parse().unwrap()).collect();
    // 0, 1, 2, the preserved 3, and ls's own directory fd (4).
    assert_eq!(fds, [0, 1, 2, 3, 4], "{o}");
    // SAFETY: closes the two copies made above.
    unsafe {
        libc::close(src);
        libc::close(src2);
    }
}

/// The container's process starts with SIGPIPE at its default (as under runc): the runtime's
/// own setting (Rust's runtime ignores SIGPIPE, and an ignored signal stays ignored across
/// execve) must not leak, or `yes | head` never ends. For `run` and for `exec`.
#[test]
fn process_sigpipe_default_run_and_exec() {
    let ctx = Ctx::new("sigpipe");
    let script = "grep SigIgn /proc/self/status; yes | head -c 10 >/dev/null; echo ended";
    let check = |o: &Out, what: &str| {
        o.ok();
        let mask = o.stdout.lines().next().and_then(|l| l.strip_prefix("SigIgn:")).map(str::trim).unwrap_or("");
        let mask = u64::from_str_radix(mask, 16).unwrap_or_else(|_| panic!("{what}: no SigIgn line: {o}"));
        assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{what}: SIGPIPE is ignored in the container: {o}");
        assert!(o.stdout.ends_with("ended\n"), "{what}: {o}");
    };
    let mut b = ctx.bundle();
    b.sh(script);
    check(&ctx.run(&mut b, &ctx.id("run")), "run");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("exec");
    ctx.run_detached(&mut b, &id);
    check(&ctx.cmd(&["exec", &id, "sh", "-c", script]), "exec");
    ctx.delete_force(&id);
}
