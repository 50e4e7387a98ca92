//! `exec`: every runc exec flag, and what the exec'd process shares with the container
//! (namespaces, cgroup, rlimits, seccomp); exit codes; stopped and paused containers.

use crate::common::*;
use serde_json::json;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

/// A running container (`sleep`) with a writable rootfs; `setup` adjusts the bundle first.
fn running(ctx: &Ctx, setup: impl FnOnce(&mut Bundle)) -> (Bundle, String) {
    let mut b = ctx.bundle();
    b.writable_root();
    b.args(&["sleep", "100000"]);
    setup(&mut b);
    let id = ctx.id("ex");
    ctx.run_detached(&mut b, &id);
    (b, id)
}

/// `exec ID sh -c SCRIPT` with extra flags before the id.
fn exec_sh(ctx: &Ctx, flags: &[&str], id: &str, script: &str) -> Out {
    let mut a = vec!["exec"];
    a.extend_from_slice(flags);
    a.extend_from_slice(&[id, "sh", "-c", script]);
    ctx.cmd(&a)
}

/// The pid inside a pidfd, from /proc/self/fdinfo.
fn pidfd_pid(fd: &OwnedFd) -> Option<i32> {
    let info = read(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()));
    status_field(&info, "Pid").and_then(|p| p.parse().ok())
}

#[test]
fn exec_output_and_exit_codes() {
    let ctx = Ctx::new("exexit");
    let (_b, id) = running(&ctx, |_| {});
    let o = exec_sh(&ctx, &[], &id, "echo out; echo err >&2; exit 42");
    assert_eq!(o.code, 42, "{o}");
    assert_eq!(o.stdout, "out\n", "{o}");
    assert!(o.stderr.contains("err"), "{o}");
    let o = exec_sh(&ctx, &[], &id, "true");
    o.ok();
    // Killed by a signal: 128 + signal, as for run.
    let o = exec_sh(&ctx, &[], &id, "kill -9 $$");
    assert_eq!(o.code, 137, "{o}");
    // The container keeps running.
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));
}

/// Arguments are passed as they are (no shell), including ones that look like flags.
#[test]
fn exec_args_verbatim() {
    let ctx = Ctx::new("exargs");
    let (_b, id) = running(&ctx, |_| {});
    let o = ctx.cmd(&["exec", &id, "echo", "-n", "a b", "--help", "-t"]);
    o.ok();
    assert_eq!(o.stdout, "a b --help -t", "{o}");
}

/// -p process.json: args, env, cwd and user all come from the file.
#[test]
fn exec_process_json() {
    let ctx = Ctx::new("exprocjson");
    let (_b, id) = running(&ctx, |_| {});
    let p = ctx.dir.join("process.json");
    let proc_json = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [20]},
        "args": ["sh", "-c", "echo $A; pwd; id -u; id -g; grep ^Groups: /proc/self/status"],
        "env": ["A=from-json", "PATH=/bin:/usr/bin"],
        "cwd": "/etc",
        "noNewPrivileges": true
    });
    fs::write(&p, serde_json::to_vec(&proc_json).unwrap()).unwrap();
    let o = ctx.cmd(&["exec", "-p", p.to_str().unwrap(), &id]);
    o.ok();
    let l = o.lines();
    assert_eq!(&l[..4], ["from-json", "/etc", "1000", "1000"], "{o}");
    assert_eq!(status_field(&o.stdout, "Groups").as_deref(), Some("20"), "{o}");
    // --process as the long name, plus a bad file.
    let o = ctx.cmd(&["exec", "--process", ctx.dir.join("missing.json").to_str().unwrap(), &id]);
    o.one_line_error(&["missing.json"]);
}

/// --cwd, -e (added and overriding), -u uid:gid, -u uid alone, -g.
#[test]
fn exec_cwd_env_user_groups() {
    let ctx = Ctx::new("excwdenv");
    let (_b, id) = running(&ctx, |b| {
        b.env("KEEP=kept");
        b.env("OVER=config");
    });
    let o = exec_sh(&ctx, &["--cwd", "/tmp", "-e", "NEW=new", "-e", "OVER=flag"], &id, "pwd; echo $NEW $OVER $KEEP");
    o.ok();
    assert_eq!(o.lines(), ["/tmp", "new flag kept"], "{o}");
    let o = exec_sh(&ctx, &["--env", "NEW=long"], &id, "echo $NEW");
    o.ok();
    assert_eq!(o.stdout, "long\n", "{o}");
    let o = exec_sh(
        &ctx,
        &["-u", "1000:1000", "-g", "10", "-g", "20"],
        &id,
        "id -u; id -g; grep ^Groups: /proc/self/status",
    );
    o.ok();
    assert_eq!(&o.lines()[..2], ["1000", "1000"], "{o}");
    let mut groups: Vec<String> =
        status_field(&o.stdout, "Groups").unwrap().split_whitespace().map(String::from).collect();
    groups.sort();
    assert_eq!(groups, ["10", "20"], "{o}");
    // A uid alone keeps the config's gid (0).
    let o = exec_sh(&ctx, &["--user", "1000"], &id, "id -u; id -g");
    o.ok();
    assert_eq!(o.lines(), ["1000", "0"], "{o}");
    // A non-numeric user is refused in one line.
    let o = exec_sh(&ctx, &["-u", "nobody"], &id, "true");
    o.one_line_error(&["nobody", "user", "uid"]);
}

/// -d with --pid-file: exec returns at once, the pid file names the running process, which is
/// in the container's pid namespace.
#[test]
fn exec_detach_pid_file() {
    let ctx = Ctx::new("exdetach");
    let (b, id) = running(&ctx, |_| {});
    let pf = ctx.dir.join("exec.pid");
    let o = ctx.cmd(&[
        "exec",
        "-d",
        "--pid-file",
        pf.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "sleep 1; echo done > /tmp/detached",
    ]);
    o.ok();
    assert!(o.elapsed < Duration::from_millis(900), "exec -d waited for the process: {:?}", o.elapsed);
    let pid: i32 = read(&pf).trim().parse().unwrap_or_else(|_| panic!("pid file: {:?}", read(&pf)));
    assert!(pid_alive(pid), "exec'd pid {pid} is not running");
    let init = ctx.pid(&id);
    let ns = |p: i32| fs::read_link(format!("/proc/{p}/ns/pid")).unwrap();
    assert_eq!(ns(pid), ns(init));
    assert!(wait_file(&b.rootfs.join("tmp/detached"), Duration::from_secs(10)));
}

/// --pidfd-socket: a pidfd of the exec'd process arrives on the socket.
#[test]
fn exec_pidfd_socket() {
    if skip_on_runc("runc 1.1 has no --pidfd-socket") {
        return;
    }
    let ctx = Ctx::new("expidfd");
    let (_b, id) = running(&ctx, |_| {});
    let sock = ConsoleSocket::new(&ctx);
    let pf = ctx.dir.join("exec.pid");
    let o = ctx.cmd(&[
        "exec",
        "-d",
        "--pid-file",
        pf.to_str().unwrap(),
        "--pidfd-socket",
        sock.path.to_str().unwrap(),
        &id,
        "sleep",
        "2",
    ]);
    o.ok();
    let fd = sock.recv_master(Duration::from_secs(10));
    let pid: i32 = read(&pf).trim().parse().unwrap();
    assert_eq!(pidfd_pid(&fd), Some(pid), "fdinfo: {}", read(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())));
    // The pidfd becomes readable when the process exits.
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, 10_000) };
    assert_eq!(r, 1, "pidfd did not signal the exit");
}

/// --no-new-privs sets NoNewPrivs for the exec'd process only.
#[test]
fn exec_no_new_privs() {
    let ctx = Ctx::new("exnnp");
    let (_b, id) = running(&ctx, |b| {
        b.set("/process/noNewPrivileges", json!(false));
    });
    let o = exec_sh(&ctx, &[], &id, "grep ^NoNewPrivs: /proc/self/status");
    o.ok();
    assert_eq!(status_field(&o.stdout, "NoNewPrivs").as_deref(), Some("0"), "{o}");
    let o = exec_sh(&ctx, &["--no-new-privs"], &id, "grep ^NoNewPrivs: /proc/self/status");
    o.ok();
    assert_eq!(status_field(&o.stdout, "NoNewPrivs").as_deref(), Some("1"), "{o}");
}

/// -c / --cap adds a capability to the exec'd process (effective, permitted and bounding).
#[test]
fn exec_cap() {
    let ctx = Ctx::new("excap");
    let (_b, id) = running(&ctx, |_| {});
    // runc's parser refuses the short and long form of one flag in the same command.
    let o = exec_sh(
        &ctx,
        &["--cap", "CAP_SYS_ADMIN", "--cap", "CAP_NET_RAW"],
        &id,
        "grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status",
    );
    o.ok();
    let want = cap_mask(&["CAP_SYS_ADMIN", "CAP_NET_RAW"]);
    for k in ["CapEff", "CapPrm", "CapBnd"] {
        let v = u64::from_str_radix(&status_field(&o.stdout, k).unwrap(), 16).unwrap();
        assert_eq!(v & want, want, "{k} {v:x}: {o}");
    }
    let o = exec_sh(&ctx, &["-c", "CAP_SYS_ADMIN"], &id, "grep ^CapEff: /proc/self/status");
    o.ok();
    let v = u64::from_str_radix(&status_field(&o.stdout, "CapEff").unwrap(), 16).unwrap();
    assert_ne!(v & cap_mask(&["CAP_SYS_ADMIN"]), 0, "-c: {o}");
    // Without it, the config's set only.
    let o = exec_sh(&ctx, &[], &id, "grep ^CapEff: /proc/self/status");
    let v = u64::from_str_radix(&status_field(&o.stdout, "CapEff").unwrap(), 16).unwrap();
    assert_eq!(v, cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]), "{o}");
    // An unknown capability: berth refuses it (runc 1.1 only warns and runs the process).
    if !is_runc() {
        let o = exec_sh(&ctx, &["--cap", "CAP_FLY"], &id, "true");
        o.one_line_error(&["CAP_FLY", "capabilit"]);
    }
}

/// --preserve-fds 1: the test's fd 3 is readable inside; fd 4 is not passed.
#[test]
fn exec_preserve_fds() {
    let ctx = Ctx::new("expreserve");
    let (_b, id) = running(&ctx, |_| {});
    let f = ctx.dir.join("passed.txt");
    fs::write(&f, "through-exec-fd-3\n").unwrap();
    let file = fs::File::open(&f).unwrap();
    let extra = fs::File::open("/dev/null").unwrap();
    let mut c = ctx.command(&["exec", "--preserve-fds", "1", &id, "sh", "-c", "cat <&3; ls /proc/self/fd"]);
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on fds we own; the copies are closed below.
    let (src, src2) = unsafe {
        (
            libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100),
            libc::fcntl(extra.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100),
        )
    };
    assert!(src >= 100 && src2 >= 100);
    // SAFETY: only async-signal-safe dup2 between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(src, 3) < 0 || libc::dup2(src2, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = ctx.exec_cmd(c, TIMEOUT);
    // SAFETY: closes the two copies made above.
    unsafe {
        libc::close(src);
        libc::close(src2);
    }
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], "through-exec-fd-3", "{o}");
    let fds: Vec<u32> = l[1..].iter().flat_map(|x| x.split_whitespace()).map(|x| x.parse().unwrap()).collect();
    assert_eq!(fds, [0, 1, 2, 3, 4], "{o}");
}

/// The container's cgroup dirs that exist on this host (one per hierarchy).
fn container_cgroup_dirs(b: &Bundle, id: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> =
        cgroup_dirs(id, b.cgroups_path().as_deref()).into_iter().filter(|p| p.join("cgroup.procs").exists()).collect();
    v.sort();
    v.dedup();
    v
}

/// mkdir a usable sub-cgroup (a v1 cpuset child starts with no cpus or mems: copy them).
fn make_sub_cgroup(parent: &Path, name: &str) {
    let d = parent.join(name);
    fs::create_dir(&d).unwrap();
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if d.join(f).exists() {
            fs::write(d.join(f), read(parent.join(f)).trim()).unwrap();
        }
    }
}

/// --cgroup SUB runs the process in an existing sub-cgroup of the container (every
/// hierarchy); --cgroup CTRL:SUB only for that controller (v1); a missing one fails cleanly.
#[test]
fn exec_cgroup_sub() {
    let ctx = Ctx::new("excgroup");
    let (b, id) = running(&ctx, |_| {});
    let dirs = container_cgroup_dirs(&b, &id);
    assert!(!dirs.is_empty());
    for d in &dirs {
        make_sub_cgroup(d, "sub");
    }
    let cg = b.cgroups_path().unwrap();
    let o = ctx.cmd(&["exec", "--cgroup", "sub", &id, "cat", "/proc/self/cgroup"]);
    o.ok();
    for l in o.lines() {
        // "0::/..." (cgroup2) and "N:ctrl:/..." (v1); the named systemd hierarchy too.
        let path = l.splitn(3, ':').nth(2).unwrap_or("");
        if path == "/" || l.contains(":rdma:") || l.contains(":misc:") {
            continue;
        }
        assert_eq!(path, format!("{cg}/sub"), "line {l:?}: {o}");
    }
    let v1_memory = dirs.iter().any(|d| d.starts_with("/sys/fs/cgroup/memory"));
    if v1_memory {
        make_sub_cgroup(&Path::new("/sys/fs/cgroup/memory").join(cg.trim_start_matches('/')), "msub");
        let o = ctx.cmd(&["exec", "--cgroup", "memory:msub", &id, "cat", "/proc/self/cgroup"]);
        o.ok();
        for l in o.lines() {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            if ctrl == "memory" {
                assert_eq!(path, format!("{cg}/msub"), "{o}");
            } else if path != "/" && !ctrl.is_empty() && ctrl != "rdma" && ctrl != "misc" {
                assert_eq!(path, cg, "line {l:?}: {o}");
            }
        }
    }
    let before = ctx.cmd(&["ps", &id]).stdout;
    let o = ctx.cmd(&["exec", "--cgroup", "nosuchsub", &id, "true"]);
    o.fails();
    if !is_runc() {
        o.one_line_error(&["nosuchsub"]);
    }
    // Escaping the container's cgroup is refused.
    let o = ctx.cmd(&["exec", "--cgroup", "../../escape", &id, "true"]);
    o.fails();
    assert_eq!(ctx.cmd(&["ps", &id]).stdout.lines().count(), before.lines().count(), "a failed exec left a process");
}

// ---------------------------------------------------------------------------------------------
// What the exec'd process shares with the container

/// The exec'd process is in every namespace of the init: from inside (/proc/self/ns vs
/// /proc/1/ns) and from the host (/proc/PID/ns of both), with a cgroup namespace too.
#[test]
fn exec_joins_every_namespace() {
    let ctx = Ctx::new("exns");
    let (_b, id) = running(&ctx, |b| {
        b.ns_add("cgroup", None);
    });
    let script = "for n in cgroup ipc mnt net pid uts user time; do \
                  if [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ]; then echo same:$n; else echo diff:$n; fi; done";
    let o = exec_sh(&ctx, &[], &id, script);
    o.ok();
    assert_eq!(
        o.lines(),
        ["same:cgroup", "same:ipc", "same:mnt", "same:net", "same:pid", "same:uts", "same:user", "same:time"],
        "{o}"
    );
    // From the host: a detached exec'd process against the init, for all namespace files.
    let pf = ctx.dir.join("ns.pid");
    ctx.cmd(&["exec", "-d", "--pid-file", pf.to_str().unwrap(), &id, "sleep", "30"]).ok();
    let pid: i32 = read(&pf).trim().parse().unwrap();
    let init = ctx.pid(&id);
    for n in ["cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "uts", "user", "time", "time_for_children"] {
        let a = fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        let b = fs::read_link(format!("/proc/{init}/ns/{n}")).unwrap();
        assert_eq!(a, b, "namespace {n}");
    }
    // The container's namespaces are not the host's.
    for n in ["cgroup", "ipc", "mnt", "net", "pid", "uts"] {
        assert_ne!(
            fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap().to_string_lossy(),
            host_ns(n),
            "namespace {n}"
        );
    }
}

/// The exec'd process is in the container's cgroup (same /proc/PID/cgroup as the init).
#[test]
fn exec_joins_container_cgroup() {
    let ctx = Ctx::new("excg");
    let (_b, id) = running(&ctx, |_| {});
    let init = ctx.pid(&id);
    let pf = ctx.dir.join("cg.pid");
    ctx.cmd(&["exec", "-d", "--pid-file", pf.to_str().unwrap(), &id, "sleep", "30"]).ok();
    let pid: i32 = read(&pf).trim().parse().unwrap();
    assert_eq!(read(format!("/proc/{pid}/cgroup")), read(format!("/proc/{init}/cgroup")));
    // And from inside: the same as pid 1.
    let o = exec_sh(&ctx, &[], &id, "cat /proc/self/cgroup; echo ---; cat /proc/1/cgroup");
    o.ok();
    let (a, b) = o.stdout.split_once("---\n").unwrap();
    assert_eq!(a, b, "{o}");
}

/// Rlimits, seccomp, no_new_privs and capabilities of the config apply to exec'd processes.
#[test]
fn exec_gets_rlimits_and_seccomp() {
    let ctx = Ctx::new("exrlsec");
    let (_b, id) = running(&ctx, |b| {
        b.set("/process/rlimits", json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]));
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}),
        );
    });
    let o = exec_sh(
        &ctx,
        &[],
        &id,
        "ulimit -n; ulimit -Hn; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/x 2>&1; echo rc=$?",
    );
    o.ok();
    let l = o.lines();
    assert_eq!(&l[..2], ["123", "456"], "{o}");
    assert_eq!(status_field(&o.stdout, "Seccomp").as_deref(), Some("2"), "{o}");
    assert_eq!(status_field(&o.stdout, "NoNewPrivs").as_deref(), Some("1"), "{o}");
    assert!(o.stdout.contains("Function not implemented") && o.stdout.contains("rc=1"), "{o}");
}

/// In a container with a SCMP_ACT_NOTIFY rule the exec'd process's notify fd goes to the agent
/// too, which decides its syscalls.
#[test]
fn exec_seccomp_notify() {
    let ctx = Ctx::new("exnotify");
    let agent = crate::seccomp::Agent::start(&ctx);
    let (_b, id) = running(&ctx, |b| {
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": agent.path, "listenerMetadata": "exec-test",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
    });
    let o = exec_sh(&ctx, &[], &id, "mkdir /tmp/deny-exec 2>&1; mkdir /tmp/ok-exec && echo made");
    o.ok();
    assert_eq!(o.lines(), ["mkdir: can't create directory '/tmp/deny-exec': Permission denied", "made"], "{o}");
    ctx.delete_force(&id).ok();
    let log = agent.finish(Duration::from_secs(10));
    assert_eq!(log.states.len(), 2, "one fd for the init, one for the exec: {log:?}");
    assert!(log.states.iter().all(|s| s["metadata"] == "exec-test" && s["state"]["id"] == json!(id)), "{log:?}");
}

// ---------------------------------------------------------------------------------------------
// Terminal, state checks, LSM flags

/// -t -d with --console-socket (runc requires -d with a console socket): the pty master
/// arrives on the socket; commands written to it run in the exec'd shell.
#[test]
fn exec_tty_console_socket() {
    let ctx = Ctx::new("extty");
    let (_b, id) = running(&ctx, |_| {});
    let sock = ConsoleSocket::new(&ctx);
    let o = ctx.cmd(&["exec", "-t", "-d", "--console-socket", sock.path.to_str().unwrap(), &id, "sh"]);
    o.ok();
    let master = sock.recv_master(Duration::from_secs(10));
    nix::unistd::write(&master, b"echo $((6*7))-ok; tty; [ -t 0 ] && echo stdin-tty; exit 5\n").unwrap();
    let out = read_pty(&master, Duration::from_secs(10));
    assert!(out.contains("42-ok"), "{out:?}");
    assert!(out.contains("stdin-tty"), "{out:?}");
    assert!(out.lines().any(|l| l.trim_end().starts_with("/dev/pts/")), "{out:?}");
}

/// berth also takes a console socket for an attached exec (runc refuses it): exec then
/// returns the shell's exit code.
#[test]
fn exec_tty_console_socket_attached() {
    if skip_on_runc("runc refuses --console-socket without --detach") {
        return;
    }
    let ctx = Ctx::new("exttya");
    let (_b, id) = running(&ctx, |_| {});
    let sock = ConsoleSocket::new(&ctx);
    let bg = ctx.spawn(&["exec", "-t", "--console-socket", sock.path.to_str().unwrap(), &id, "sh"]);
    let master = sock.recv_master(Duration::from_secs(10));
    nix::unistd::write(&master, b"echo $((6*7))-ok; exit 5\n").unwrap();
    let out = read_pty(&master, Duration::from_secs(10));
    let o = bg.wait(TIMEOUT);
    assert_eq!(o.code, 5, "{o}\npty: {out:?}");
    assert!(out.contains("42-ok"), "{out:?}");
}

/// exec -t -d without a console socket has nowhere to put the terminal: a clear error.
#[test]
fn exec_tty_detached_needs_console_socket() {
    let ctx = Ctx::new("exttyd");
    let (_b, id) = running(&ctx, |_| {});
    let o = ctx.cmd(&["exec", "-t", "-d", &id, "true"]);
    o.fails();
    if !is_runc() {
        o.one_line_error(&["console"]);
    }
}

#[test]
fn exec_stopped_container_fails() {
    let ctx = Ctx::new("exstopped");
    let mut b = ctx.bundle();
    b.args(&["true"]);
    let id = ctx.id("st");
    ctx.create(&mut b, &id).ok();
    ctx.start(&id).ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    let o = ctx.cmd(&["exec", &id, "true"]);
    o.fails();
    if !is_runc() {
        o.one_line_error(&["stopped", "not running"]);
    }
    let o = ctx.cmd(&["exec", "no-such-container-xyz", "true"]);
    o.fails();
    // runc's words (without the id), berth and runc alike.
    o.one_line_error(&["exec failed: container does not exist"]);
}

/// A paused container refuses exec unless --ignore-paused; with it the process runs once the
/// container is resumed (it is frozen with the rest until then, as with runc).
#[test]
fn exec_paused_container() {
    let ctx = Ctx::new("expaused");
    let (b, id) = running(&ctx, |_| {});
    ctx.cmd(&["pause", &id]).ok();
    let o = ctx.cmd(&["exec", &id, "true"]);
    o.fails();
    if !is_runc() {
        o.one_line_error(&["paused"]);
    }
    let bg = ctx.spawn(&["exec", "--ignore-paused", &id, "sh", "-c", "echo ran > /tmp/after-resume"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!b.rootfs.join("tmp/after-resume").exists(), "ran while paused");
    ctx.cmd(&["resume", &id]).ok();
    let o = bg.wait(TIMEOUT);
    o.ok();
    assert_eq!(read(b.rootfs.join("tmp/after-resume")), "ran\n");
}

/// --apparmor / --process-label on a host without that LSM: a clear error, the container
/// goes on, no process is left from the failed exec.
#[test]
fn exec_lsm_flags_without_lsm() {
    let enabled = read("/sys/module/apparmor/parameters/enabled").trim() == "Y";
    if enabled || Path::new("/sys/fs/selinux/enforce").exists() {
        eprintln!("SKIPPED: this host has an LSM enabled");
        return;
    }
    let ctx = Ctx::new("exlsm");
    let (_b, id) = running(&ctx, |_| {});
    let before = ctx.cmd(&["ps", &id]).stdout.lines().count();
    let o = ctx.cmd(&["exec", "--apparmor", "some-profile", &id, "true"]);
    eprintln!("--apparmor: code {} {}", o.code, o.stderr.trim());
    if !is_runc() {
        o.one_line_error(&["apparmor"]);
    }
    let o = ctx.cmd(&["exec", "--process-label", "system_u:system_r:container_t:s0", &id, "true"]);
    eprintln!("--process-label: code {} {}", o.code, o.stderr.trim());
    if !is_runc() {
        o.one_line_error(&["selinux"]);
    }
    assert_eq!(ctx.status(&id).as_deref(), Some("running"));
    assert_eq!(ctx.cmd(&["ps", &id]).stdout.lines().count(), before, "a failed exec left a process");
}

/// As runc: exec exits with the process's own code, and 255 (one line, "exec failed: ...") for
/// every failure of its own: no such container, a stopped one, a binary not found, a pid file
/// it cannot write.
#[test]
fn exec_exit_codes_as_runc() {
    let ctx = Ctx::new("excodes");
    let (_b, id) = running(&ctx, |_| {});
    let o = ctx.cmd(&["exec", &id, "sh", "-c", "exit 7"]);
    assert_eq!(o.code, 7, "{o}");
    let o = ctx.cmd(&["exec", &id, "sh", "-c", "kill -9 $$"]);
    assert_eq!(o.code, 137, "{o}");
    let missing = ctx.id("missing");
    let pid_file = ctx.dir.join("no-such-dir/pid");
    let pid_file = pid_file.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["exec", &missing, "true"], &["does not exist"]),
        (vec!["exec", &id, "no-such-binary-xyz"], &["no-such-binary-xyz"]),
        (vec!["exec", "--pid-file", pid_file, &id, "true"], &["no-such-dir"]),
    ];
    for (args, words) in cases {
        let o = ctx.cmd(&args);
        o.one_line_error(words);
        assert_eq!(o.code, 255, "{o}");
        assert!(o.stderr.contains("exec failed: "), "{o}");
    }
    let mut b = ctx.bundle();
    b.args(&["true"]);
    let st = ctx.id("stopped");
    ctx.run_detached(&mut b, &st);
    ctx.wait_status(&st, "stopped", Duration::from_secs(10));
    let o = ctx.cmd(&["exec", &st, "true"]);
    o.one_line_error(&["cannot exec in a stopped container"]);
    assert_eq!(o.code, 255, "{o}");
}

// ---------------------------------------------------------------------------------------------
// cwd and users

/// A rootfs directory only root may enter (0700, root-owned) with a file in it.
fn root_only_dir(b: &Bundle) {
    b.write_file("/secret/f", "x", 0o644);
    fs::set_permissions(b.rootfs.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
}

/// A cwd only root can enter, for a non-root process: the runtime changes into it while still
/// privileged (as runc does), so the process starts there although it cannot list it.
#[test]
fn exec_cwd_only_root_can_enter() {
    let ctx = Ctx::new("execcwdroot");
    let script = "pwd; ls . >/dev/null 2>&1 || echo cannot-list; id -u";
    // create/start of a container whose process is user 1000 in /secret.
    let mut b = ctx.bundle();
    b.writable_root();
    root_only_dir(&b);
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.set("/process/cwd", json!("/secret"));
    b.sh(script);
    let id = ctx.id("cr");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.lines(), ["/secret", "cannot-list", "1000"], "{o}");

    // exec --user 1000 --cwd /secret into a root container.
    let (_b, id) = running(&ctx, |b| root_only_dir(b));
    let o = ctx.cmd(&["exec", "--user", "1000:1000", "--cwd", "/secret", &id, "sh", "-c", script]);
    o.ok();
    assert_eq!(o.lines(), ["/secret", "cannot-list", "1000"], "{o}");
    // A cwd that does not exist still fails, with one line naming it.
    ctx.cmd(&["exec", "--user", "1000", "--cwd", "/no-such-dir", &id, "true"]).one_line_error(&["/no-such-dir"]);
}

/// `exec --user` (and a non-root container process) never changes the owner of what the
/// caller passed as stdio: a host file as stdout, the host's /dev/null as stdin.
#[test]
fn exec_user_leaves_stdio_owners_alone() {
    if skip_on_runc("runc 1.1 chowns a stdio file (not /dev/null) to the process's user") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let ctx = Ctx::new("execstdio");
    let null_before = fs::metadata("/dev/null").unwrap();
    let (_b, id) = running(&ctx, |_| {});
    let out = ctx.dir.join("exec-out.txt");
    fs::write(&out, "").unwrap();
    let mut c = ctx.command(&["exec", "--user", "1000:1000", &id, "sh", "-c", "echo written; id -u"]);
    c.stdout(fs::File::create(&out).unwrap()).stdin(fs::File::open("/dev/null").unwrap());
    let st = c.status().unwrap();
    assert!(st.success(), "{st:?}");
    assert_eq!(read(&out), "written\n1000\n");
    let m = fs::metadata(&out).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "exec --user changed the owner of its stdout file");
    let n = fs::metadata("/dev/null").unwrap();
    assert_eq!((n.uid(), n.gid(), n.mode()), (null_before.uid(), null_before.gid(), null_before.mode()));

    // The same for a container whose process is user 1000 (attached run).
    let mut b = ctx.bundle();
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.sh("echo run-written");
    let id = ctx.id("ru");
    b.write_config(&id);
    let out2 = ctx.dir.join("run-out.txt");
    let mut c = ctx.command(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    c.stdout(fs::File::create(&out2).unwrap()).stdin(fs::File::open("/dev/null").unwrap());
    assert!(c.status().unwrap().success());
    assert_eq!(read(&out2), "run-written\n");
    let m = fs::metadata(&out2).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "run changed the owner of its stdout file");
    let n = fs::metadata("/dev/null").unwrap();
    assert_eq!((n.uid(), n.gid(), n.mode()), (null_before.uid(), null_before.gid(), null_before.mode()));
}
