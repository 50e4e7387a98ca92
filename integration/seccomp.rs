//! linux.seccomp through the real binary: actions and their exit codes / errnos, argument
//! conditions, flags, SCMP_ACT_NOTIFY with a listener agent in the test, bad profiles, and the
//! create-time cost of a large profile.

use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const SOCK_STREAM: u64 = 1;
const EAFNOSUPPORT: u64 = 97;
/// busybox `linux32` calls personality(PER_LINUX32 = 8), `linux64` personality(PER_LINUX = 0).
const PER_LINUX32: u64 = 8;

/// A profile allowing everything but `rules`.
fn allow_all_but(rules: Value) -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})
}

/// A rule on mkdir and mkdirat (busybox mkdir may use either) with `action` (+ extra fields).
fn mkdir_rule(action: &str, extra: Value) -> Value {
    let mut r = json!({"names": ["mkdir", "mkdirat"], "action": action});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            r[k] = v;
        }
    }
    r
}

/// Runs `args` attached with `seccomp` in a writable rootfs.
fn run_with(ctx: &Ctx, seccomp: Value, args: &[&str]) -> Out {
    let mut b = ctx.bundle();
    b.writable_root();
    b.set("/linux/seccomp", seccomp);
    b.args(args);
    let id = ctx.id("sc");
    ctx.run(&mut b, &id)
}

fn run_sh_with(ctx: &Ctx, seccomp: Value, script: &str) -> Out {
    run_with(ctx, seccomp, &["sh", "-c", script])
}

// ---------------------------------------------------------------------------------------------
// Errno actions

#[test]
fn seccomp_errno_ret_exact() {
    let ctx = Ctx::new("scerrnoret");
    let o = run_with(
        &ctx,
        allow_all_but(json!([mkdir_rule("SCMP_ACT_ERRNO", json!({"errnoRet": 38}))])),
        &["mkdir", "/tmp/d"],
    );
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("Function not implemented"), "{o}");
}

#[test]
fn seccomp_errno_default_is_eperm() {
    let ctx = Ctx::new("scerrnodef");
    let o = run_sh_with(
        &ctx,
        allow_all_but(json!([mkdir_rule("SCMP_ACT_ERRNO", json!({}))])),
        "mkdir /tmp/d; echo rc=$?; mkdir -p /tmp; echo after",
    );
    o.ok();
    assert!(o.stderr.contains("Operation not permitted"), "{o}");
    assert_eq!(o.lines(), ["rc=1", "after"], "{o}");
}

/// Syscall names this libseccomp does not know are skipped; the rest of the rule applies.
#[test]
fn seccomp_unknown_syscall_names_skipped() {
    let ctx = Ctx::new("scunknown");
    let rule = json!({"names": ["no_such_syscall_berth", "mkdir", "mkdirat", "another_fake_one"],
                      "action": "SCMP_ACT_ERRNO", "errnoRet": 38});
    let o = run_sh_with(&ctx, allow_all_but(json!([rule])), "mkdir /tmp/d 2>&1; echo rc=$?");
    o.ok();
    assert_eq!(o.lines(), ["mkdir: can't create directory '/tmp/d': Function not implemented", "rc=1"], "{o}");
}

/// What a docker-like profile leaves out of its allow list (plus x86_64's unimplemented ones).
const DOCKER_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "personality",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapon",
    "swapoff",
    "sysfs",
    "_sysctl",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "syslog",
    "afs_syscall",
    "tuxcall",
    "security",
    "vserver",
    "putpmsg",
    "getpmsg",
    "epoll_ctl_old",
    "epoll_wait_old",
];

/// Every x86_64 syscall name libseccomp knows, minus a docker-like deny list (about 300).
fn docker_like_allow_names() -> Vec<String> {
    let mut v = Vec::new();
    for nr in 0..600 {
        let Ok(name) = libseccomp::ScmpSyscall::from(nr).get_name_by_arch(libseccomp::ScmpArch::X8664) else {
            continue;
        };
        if !DOCKER_DENIED.contains(&name.as_str()) && !v.contains(&name) {
            v.push(name);
        }
    }
    v
}

/// defaultAction ERRNO (with defaultErrnoRet) plus a docker-like allow list: busybox sh and its
/// applets work, a syscall left out of the list (personality) gets the default errno.
#[test]
fn seccomp_default_errno_with_allow_list() {
    let ctx = Ctx::new("scallowlist");
    let names = docker_like_allow_names();
    assert!(names.len() > 250, "libseccomp knows only {} names", names.len());
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 95,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    });
    let script = "echo hello; cat /etc/berth-fixture; ls / | grep -c . >/dev/null && echo ls-ok; \
                  mkdir /tmp/d && echo mkdir-ok; (sleep 0; echo subshell-ok) | cat; \
                  linux32 true; echo rc=$?";
    let o = run_sh_with(&ctx, profile, script);
    o.ok();
    assert_eq!(o.lines(), ["hello", FIXTURE_MARK.trim(), "ls-ok", "mkdir-ok", "subshell-ok", "rc=1"], "{o}");
    // EOPNOTSUPP (95) from defaultErrnoRet.
    assert!(o.stderr.contains("Operation not supported"), "{o}");
}

// ---------------------------------------------------------------------------------------------
// Killing and other actions

/// Each of the killing actions on the container's process itself (exit code 128+SIGSYS = 159
/// for an attached run) and on a child of sh (sh reports 159 too).
#[test]
fn seccomp_kill_actions_exit_codes() {
    let ctx = Ctx::new("sckill");
    let mut report = Vec::new();
    for action in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"] {
        let p = allow_all_but(json!([mkdir_rule(action, json!({}))]));
        let direct = run_with(&ctx, p.clone(), &["mkdir", "/tmp/d"]);
        let child = run_sh_with(&ctx, p, "mkdir /tmp/d; echo rc=$?");
        report.push(format!("{action}: direct {}, child {}", direct.code, child.stdout.trim()));
        assert_eq!(direct.code, 159, "{action}: {direct}");
        assert!(!direct.timed_out);
        child.ok();
        assert_eq!(child.stdout.trim(), "rc=159", "{action}: {child}");
    }
    eprintln!("{}", report.join("\n"));
}

/// SCMP_ACT_LOG allows the syscall.
#[test]
fn seccomp_log_allows() {
    let ctx = Ctx::new("sclog");
    let o = run_sh_with(
        &ctx,
        allow_all_but(json!([mkdir_rule("SCMP_ACT_LOG", json!({}))])),
        "mkdir /tmp/d && test -d /tmp/d && echo made",
    );
    o.ok();
    assert_eq!(o.stdout.trim(), "made", "{o}");
}

/// SCMP_ACT_TRACE with no tracer attached: the syscall fails with ENOSYS.
#[test]
fn seccomp_trace_without_tracer_is_enosys() {
    let ctx = Ctx::new("sctrace");
    let o = run_with(&ctx, allow_all_but(json!([mkdir_rule("SCMP_ACT_TRACE", json!({}))])), &["mkdir", "/tmp/d"]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("Function not implemented"), "{o}");
}

// ---------------------------------------------------------------------------------------------
// Argument conditions

/// Every comparison operator on personality's arg0, told apart by `linux32` (arg 8) and
/// `linux64` (arg 0): a denied call reports EAFNOSUPPORT's text.
#[test]
fn seccomp_arg_operators() {
    let ctx = Ctx::new("scargops");
    // (op, value, valueTwo, linux32 denied, linux64 denied)
    let cases: &[(&str, u64, Option<u64>, bool, bool)] = &[
        ("SCMP_CMP_EQ", PER_LINUX32, None, true, false),
        ("SCMP_CMP_NE", 0, None, true, false),
        ("SCMP_CMP_GT", 0, None, true, false),
        ("SCMP_CMP_GE", PER_LINUX32, None, true, false),
        ("SCMP_CMP_LT", PER_LINUX32, None, false, true),
        ("SCMP_CMP_LE", 0, None, false, true),
        ("SCMP_CMP_MASKED_EQ", 0xff, Some(PER_LINUX32), true, false),
        ("SCMP_CMP_MASKED_EQ", 0xff, Some(0), false, true),
    ];
    for &(op, value, two, deny32, deny64) in cases {
        let mut arg = json!({"index": 0, "value": value, "op": op});
        if let Some(t) = two {
            arg["valueTwo"] = json!(t);
        }
        let rule =
            json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": EAFNOSUPPORT, "args": [arg]});
        let o = run_sh_with(&ctx, allow_all_but(json!([rule])), "linux32 true; echo l32=$?; linux64 true; echo l64=$?");
        o.ok();
        let want = [format!("l32={}", deny32 as i32), format!("l64={}", deny64 as i32)];
        assert_eq!(o.lines(), want, "{op} {value} {two:?}: {o}");
        assert_eq!(o.stderr.contains("Address family not supported"), deny32 || deny64, "{op}: {o}");
    }
}

const NC_SCRIPT: &str = "nc -w1 127.0.0.1 1 2>&1; nc -w1 ::1 1 2>&1; logger x 2>&1; echo done";

/// socket(2) denied for AF_INET only (SCMP_CMP_EQ on arg0): IPv6 and unix sockets still work.
#[test]
fn seccomp_arg_socket_family() {
    let ctx = Ctx::new("scsockfam");
    let rule = json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": EAFNOSUPPORT,
                      "args": [{"index": 0, "value": AF_INET, "op": "SCMP_CMP_EQ"}]});
    let o = run_sh_with(&ctx, allow_all_but(json!([rule])), NC_SCRIPT);
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], "nc: socket: Address family not supported by protocol", "{o}");
    // IPv6: the socket is made, connect fails (loopback is down in the new network namespace).
    assert!(l[1].starts_with("nc: can't connect"), "{o}");
    assert_eq!(l.last().map(String::as_str), Some("done"), "{o}");
    assert!(!o.stdout.contains("logger"), "logger (AF_UNIX) must work: {o}");
}

/// Two conditions on different arguments in one rule are ANDed: socket(AF_INET, SOCK_STREAM)
/// is denied, socket(AF_INET, SOCK_RAW) (ping, with CAP_NET_RAW) is not.
#[test]
fn seccomp_arg_several_args_one_rule() {
    let ctx = Ctx::new("scsockand");
    let rule = json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": EAFNOSUPPORT, "args": [
        {"index": 0, "value": AF_INET, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": SOCK_STREAM, "op": "SCMP_CMP_EQ"}
    ]});
    let mut b = ctx.bundle();
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
    b.set("/linux/seccomp", allow_all_but(json!([rule])));
    b.sh("nc -w1 127.0.0.1 1 2>&1; ping -c1 -w1 127.0.0.1 2>&1; echo done");
    let id = ctx.id("and");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], "nc: socket: Address family not supported by protocol", "{o}");
    assert!(
        !o.stdout.contains("ping: socket") && !o.stdout.contains("Address family not supported by protocol\nping"),
        "{o}"
    );
    assert!(o.stdout.contains("PING 127.0.0.1"), "{o}");
    assert!(!o.stdout.contains("are you root"), "ping's raw socket must be allowed: {o}");
}

/// The same argument index twice in one rule: each condition is its own rule (runc's
/// semantics: OR), so both AF_INET and AF_INET6 are denied, AF_UNIX is not.
#[test]
fn seccomp_arg_same_index_twice() {
    let ctx = Ctx::new("scsockor");
    let rule = json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": EAFNOSUPPORT, "args": [
        {"index": 0, "value": AF_INET, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": AF_INET6, "op": "SCMP_CMP_EQ"}
    ]});
    let o = run_sh_with(&ctx, allow_all_but(json!([rule])), NC_SCRIPT);
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], "nc: socket: Address family not supported by protocol", "{o}");
    assert_eq!(l[1], "nc: socket: Address family not supported by protocol", "{o}");
    assert!(!o.stdout.contains("logger"), "logger (AF_UNIX) must work: {o}");
}

// ---------------------------------------------------------------------------------------------
// Flags

/// Each filter flag is accepted and the filter is in force (Seccomp: 2, the rule applies).
#[test]
fn seccomp_flags() {
    if skip_on_runc("runc 1.1 refuses linux.seccomp.flags") {
        return;
    }
    let ctx = Ctx::new("scflags");
    let flag_sets: &[&[&str]] = &[
        &["SECCOMP_FILTER_FLAG_TSYNC"],
        &["SECCOMP_FILTER_FLAG_LOG"],
        &["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        &["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    ];
    for flags in flag_sets {
        let mut p = allow_all_but(json!([mkdir_rule("SCMP_ACT_ERRNO", json!({"errnoRet": 38}))]));
        p["flags"] = json!(flags);
        let o = run_sh_with(&ctx, p, "grep -E '^Seccomp(_filters)?:' /proc/self/status; mkdir /tmp/d 2>&1; echo rc=$?");
        o.ok();
        let st = o.stdout.clone();
        assert_eq!(status_field(&st, "Seccomp").as_deref(), Some("2"), "{flags:?}: {o}");
        assert!(st.contains("Function not implemented") && st.contains("rc=1"), "{flags:?}: {o}");
    }
}

// ---------------------------------------------------------------------------------------------
// SCMP_ACT_NOTIFY

/// What the test's seccomp agent saw.
#[derive(Debug, Default)]
pub struct AgentLog {
    /// The JSON state received with each fd.
    pub states: Vec<Value>,
    /// (pid, syscall nr, path argument, answer) of each notification.
    pub notifications: Vec<(u32, i32, String, String)>,
    pub errors: Vec<String>,
}

/// A seccomp agent: a unix socket listener in the test that receives notify fds (SCM_RIGHTS +
/// the container process state JSON) and answers every notification with raw ioctls:
/// EACCES when the path argument contains "deny", continue otherwise.
pub struct Agent {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<AgentLog>>,
}

impl Agent {
    pub fn start(ctx: &Ctx) -> Agent {
        let dir = ctx.tempdir("agent");
        let path = dir.join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || agent_loop(listener, s));
        Agent { path, stop, thread: Some(thread) }
    }

    /// Lets the agent finish the notify fds it holds (they hang up once every process using
    /// the filter is gone), up to `timeout`, and returns what it saw.
    pub fn finish(mut self, timeout: Duration) -> AgentLog {
        let deadline = Instant::now() + timeout;
        let t = self.thread.take().unwrap();
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::SeqCst);
        t.join().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Receives one message with an fd on a fresh connection: (fd, whole payload until EOF).
fn recv_fd_and_json(stream: std::os::unix::net::UnixStream) -> Result<(OwnedFd, Vec<u8>), String> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::Read;
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let (n, fd) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| format!("recvmsg: {e}"))?;
        let mut fd = None;
        for c in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for (i, &f) in fds.iter().enumerate() {
                    // SAFETY: the kernel installed these fds in our table; we own them.
                    let o = unsafe { OwnedFd::from_raw_fd(f) };
                    if i == 0 && fd.is_none() {
                        fd = Some(o);
                    }
                }
            }
        }
        (msg.bytes, fd)
    };
    let mut data = buf[..n].to_vec();
    let mut s = stream;
    let _ = s.read_to_end(&mut data);
    Ok((fd.ok_or("no fd with the state")?, data))
}

/// Reads a NUL-terminated string at `addr` in process `pid`'s memory.
fn read_string(pid: u32, addr: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(format!("/proc/{pid}/mem")) else { return String::new() };
    let mut b = vec![0u8; 256];
    if f.seek(SeekFrom::Start(addr)).is_err() {
        return String::new();
    }
    let n = f.read(&mut b).unwrap_or(0);
    b.truncate(n);
    if let Some(z) = b.iter().position(|&c| c == 0) {
        b.truncate(z);
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Receives one notification on `fd` and answers it. Returns false when the fd is gone.
fn answer_one(fd: &OwnedFd, log: &mut AgentLog) -> bool {
    // SAFETY: seccomp_notif is plain data; zeroed is its required initial state for RECV.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: ioctl on a seccomp notify fd with a pointer to a correctly sized struct.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        // ENOENT: the target died or the syscall was interrupted before we got it.
        return e.raw_os_error() == Some(libc::ENOENT) || e.raw_os_error() == Some(libc::EINTR);
    }
    let nr = req.data.nr;
    let path_arg = if nr == libc::SYS_mkdirat as i32 { req.data.args[1] } else { req.data.args[0] };
    let path = read_string(req.pid, path_arg);
    let deny = path.contains("deny");
    // SAFETY: seccomp_notif_resp is plain data.
    let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    resp.id = req.id;
    if deny {
        resp.error = -libc::EACCES;
    } else {
        resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
    }
    // SAFETY: ioctl on a seccomp notify fd with a pointer to a correctly sized struct.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    if r < 0 {
        log.errors.push(format!("NOTIF_SEND: {}", std::io::Error::last_os_error()));
    }
    log.notifications.push((req.pid, nr, path, if deny { "EACCES" } else { "continue" }.into()));
    true
}

fn agent_loop(listener: UnixListener, stop: Arc<AtomicBool>) -> AgentLog {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut log = AgentLog::default();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut seen_any = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Done once every fd received has hung up (and at least one came).
        if seen_any && fds.is_empty() {
            break;
        }
        let mut pfds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        for f in &fds {
            pfds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut pfds, PollTimeout::from(50u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                log.errors.push(format!("poll: {e}"));
                break;
            }
        }
        let revents: Vec<PollFlags> = pfds.iter().map(|p| p.revents().unwrap_or(PollFlags::empty())).collect();
        drop(pfds);
        if revents[0].contains(PollFlags::POLLIN) {
            if let Ok((s, _)) = listener.accept() {
                match recv_fd_and_json(s) {
                    Ok((fd, data)) => {
                        match serde_json::from_slice::<Value>(&data) {
                            Ok(v) => log.states.push(v),
                            Err(e) => log
                                .errors
                                .push(format!("state is not JSON ({e}): {:?}", String::from_utf8_lossy(&data))),
                        }
                        fds.push(fd);
                        seen_any = true;
                    }
                    Err(e) => log.errors.push(e),
                }
            }
        }
        let mut gone = Vec::new();
        for (i, ev) in revents[1..].iter().enumerate() {
            if ev.contains(PollFlags::POLLIN) {
                if !answer_one(&fds[i], &mut log) {
                    gone.push(i);
                }
            } else if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            fds.remove(i);
        }
    }
    log
}

fn notify_profile(agent: &Agent, metadata: &str) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": agent.path,
        "listenerMetadata": metadata,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    })
}

/// The agent gets the notify fd and the container process state at create, then decides the
/// container's mkdir calls: EACCES for one path, continue (the real syscall) for another.
#[test]
fn seccomp_notify_listener() {
    let ctx = Ctx::new("scnotify");
    let agent = Agent::start(&ctx);
    let mut b = ctx.bundle();
    b.writable_root();
    b.set("/linux/seccomp", notify_profile(&agent, "meta-data 42"));
    b.sh("mkdir /tmp/deny-me; echo rc1=$?; mkdir /tmp/allowed; echo rc2=$?; ls -d /tmp/allowed /tmp/deny-me 2>&1");
    let id = ctx.id("notify");
    let c = ctx.create(&mut b, &id);
    c.ok();
    let pid = ctx.pid(&id);
    ctx.start(&id).ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(20));
    let log = agent.finish(Duration::from_secs(10));
    let out = c.stdout_now();
    assert!(log.errors.is_empty(), "agent errors: {:?}", log.errors);
    assert_eq!(log.states.len(), 1, "{log:?}");
    let st = &log.states[0];
    assert_eq!(st["ociVersion"], b.config["ociVersion"], "{st}");
    assert_eq!(st["fds"], json!(["seccompFd"]), "{st}");
    assert_eq!(st["pid"], json!(pid), "{st}");
    assert_eq!(st["metadata"], json!("meta-data 42"), "{st}");
    assert_eq!(st["state"]["id"], json!(id), "{st}");
    assert_eq!(st["state"]["pid"], json!(pid), "{st}");
    assert!(["creating", "created"].contains(&st["state"]["status"].as_str().unwrap_or("")), "{st}");
    assert_eq!(st["state"]["bundle"].as_str().map(PathBuf::from), Some(fs::canonicalize(&b.dir).unwrap()), "{st}");
    let decided: Vec<(String, String)> = log.notifications.iter().map(|n| (n.2.clone(), n.3.clone())).collect();
    assert_eq!(
        decided,
        [("/tmp/deny-me".to_string(), "EACCES".to_string()), ("/tmp/allowed".to_string(), "continue".to_string())],
        "{log:?}"
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "rc1=1", "{out}");
    assert_eq!(l[1], "rc2=0", "{out}");
    assert!(out.contains("/tmp/allowed\n"), "{out}");
    assert!(!out.contains("/tmp/deny-me\n"), "{out}");
}

/// An attached run with a notify rule: the agent answers, the run finishes with the exit code.
#[test]
fn seccomp_notify_attached_run() {
    let ctx = Ctx::new("scnotifyrun");
    let agent = Agent::start(&ctx);
    let o = run_sh_with(&ctx, notify_profile(&agent, ""), "mkdir /tmp/deny-x 2>&1; mkdir /tmp/ok && echo made; exit 7");
    let log = agent.finish(Duration::from_secs(10));
    assert_eq!(o.code, 7, "{o}");
    assert_eq!(o.lines(), ["mkdir: can't create directory '/tmp/deny-x': Permission denied", "made"], "{o}");
    assert_eq!(log.notifications.len(), 2, "{log:?}");
}

/// NOTIFY on sendmsg and recvmsg is accepted (runc refuses it only on write): the container
/// starts, the agent answers, the run finishes.
#[test]
fn seccomp_notify_on_sendmsg_recvmsg() {
    let ctx = Ctx::new("scnotifymsg");
    let agent = Agent::start(&ctx);
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": agent.path,
        "syscalls": [{"names": ["mkdir", "mkdirat", "sendmsg", "recvmsg"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let o = run_sh_with(&ctx, profile, "mkdir /tmp/deny-x 2>/dev/null || echo denied; echo done; exit 4");
    let log = agent.finish(Duration::from_secs(10));
    assert!(!o.timed_out, "{o}");
    assert_eq!(o.code, 4, "{o}");
    assert_eq!(o.lines(), ["denied", "done"], "{o}");
    assert!(log.errors.is_empty(), "agent errors: {:?}", log.errors);
}

// ---------------------------------------------------------------------------------------------
// Bad profiles

/// Each bad profile fails create with one line naming the problem, and leaves nothing behind.
#[test]
fn seccomp_bad_profiles() {
    let ctx = Ctx::new("scbad");
    let missing = ctx.dir.join("no-such-agent.sock");
    let not_socket = ctx.dir.join("plain-file");
    fs::write(&not_socket, "").unwrap();
    // A socket file nobody listens on any more: connect is refused only once the init loaded
    // its filter, so this fails in the middle of create.
    let dead = ctx.dir.join("dead-agent.sock");
    drop(UnixListener::bind(&dead).unwrap());
    let cases: Vec<(&str, Value, &[&str])> = vec![
        ("unknown action", allow_all_but(json!([{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}])), &["SCMP_ACT_FOO"]),
        ("unknown default action", json!({"defaultAction": "SCMP_ACT_BAR"}), &["SCMP_ACT_BAR"]),
        (
            "bad arch",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]}),
            &["SCMP_ARCH_PDP11"],
        ),
        (
            "bad op",
            allow_all_but(json!([{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}])),
            &["SCMP_CMP_ALMOST"],
        ),
        (
            "bad flag",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}),
            &["SECCOMP_FILTER_FLAG_FAST"],
        ),
        (
            "arg index 6",
            allow_all_but(json!([{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}])),
            &["index"],
        ),
        (
            "notify without listenerPath",
            allow_all_but(json!([{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}])),
            &["listenerPath is not set"],
        ),
        (
            "listenerPath missing",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": missing,
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            &["failed to connect with seccomp agent", "no-such-agent.sock", "no such file or directory"],
        ),
        (
            "listenerPath not a socket",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": not_socket,
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            &["failed to connect with seccomp agent", "plain-file", "connection refused"],
        ),
        (
            "listener not listening",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": dead,
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            &["failed to connect with seccomp agent", "dead-agent.sock", "connection refused"],
        ),
        (
            "notify as default action",
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": not_socket}),
            &["SCMP_ACT_NOTIFY cannot be used as default action"],
        ),
        (
            "notify on write",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": not_socket,
                   "syscalls": [{"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
            &["SCMP_ACT_NOTIFY cannot be used for the write syscall"],
        ),
    ];
    for (what, profile, words) in cases {
        let mut b = ctx.bundle();
        b.set("/linux/seccomp", profile);
        let id = ctx.id("bad");
        let snap = ctx.snapshot(&b);
        let o = ctx.create(&mut b, &id);
        eprintln!("{what}: {}", o.stderr.trim());
        assert!(!o.timed_out, "{what}: {o}");
        if is_runc() {
            // runc prints its errors as several log lines; only the failure is checked.
            o.fails();
        } else {
            o.one_line_error(words);
        }
        ctx.assert_nothing_left(&snap, &b, &id);
    }
}

// ---------------------------------------------------------------------------------------------
// Cost of a large profile

/// A 300-rule docker-like profile (default ERRNO, three arches).
fn profile_300_rules() -> Value {
    let names = docker_like_allow_names();
    let mut rules: Vec<Value> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if i < 290 {
            rules.push(json!({"names": [n], "action": "SCMP_ACT_ALLOW"}));
        }
    }
    let rest: Vec<&String> = names.iter().skip(290).collect();
    rules.push(json!({"names": rest, "action": "SCMP_ACT_ALLOW"}));
    // Argument rules, as docker has for personality and clone.
    for v in [0u64, 8, 0x20000, 0x20008, 0xffffffff] {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}));
    }
    while rules.len() < 300 {
        rules.push(json!({"names": ["kcmp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}));
    }
    rules.truncate(300);
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules
    })
}

/// Wall time of `create` then `delete` of one container from bundle `b` (create only timed).
fn time_create(ctx: &Ctx, b: &mut Bundle, tag: &str) -> Duration {
    let id = ctx.id(tag);
    b.write_config(&id);
    let mut c = ctx.command(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let t = Instant::now();
    let st = c.status().unwrap();
    let el = t.elapsed();
    assert!(st.success(), "create {id} failed");
    let mut d = ctx.command(&["delete", "-f", &id]);
    d.stdout(Stdio::null()).stderr(Stdio::null());
    assert!(d.status().unwrap().success());
    el
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Create with a 300-rule profile costs little more than without one: berth compiles the
/// profile once and reuses the program cached in berth's scratch dir (BERTH_CACHE_DIR).
#[test]
#[ignore = "timing belongs to make bench (seccomp section), not to a test"]
fn seccomp_300_rules_create_time() {
    let mut ctx = Ctx::new("sc300");
    let cache = ctx.private_cache().join("seccomp");
    let profile = profile_300_rules();
    assert_eq!(profile["syscalls"].as_array().unwrap().len(), 300);
    let mut plain = ctx.bundle();
    plain.args(&["true"]);
    let mut with = ctx.bundle();
    with.args(&["true"]);
    with.set("/linux/seccomp", profile);
    // The profile works: sh runs under it.
    let mut check = ctx.bundle();
    check.set("/linux/seccomp", with.config["linux"]["seccomp"].clone());
    check.sh("echo ok; linux32 true && echo l32");
    let id = ctx.id("chk");
    let o = ctx.run(&mut check, &id);
    o.ok();
    assert_eq!(o.lines(), ["ok", "l32"], "{o}");
    if !is_runc() {
        let n = fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
        assert_eq!(n, 1, "one compiled program cached in {}", cache.display());
    }

    time_create(&ctx, &mut plain, "warm");
    // One create that compiles the profile (cache emptied), for the report.
    let _ = fs::remove_dir_all(&cache);
    let cold = time_create(&ctx, &mut with, "cold");
    eprintln!("create with 300 rules, profile not cached: {:.2} ms", cold.as_secs_f64() * 1e3);
    // Other load on the machine only adds time: up to three rounds, the best one counts.
    let mut best = f64::MAX;
    for round in 0..3 {
        let extra = measure_round(&ctx, &mut plain, &mut with);
        best = best.min(extra);
        if best < 2.0 || is_runc() {
            break;
        }
        eprintln!("round {round}: extra {extra:.2} ms, measuring again");
    }
    if !is_runc() {
        // The target is < 2 ms; the bound leaves room for a loaded 2-core machine.
        assert!(best < 3.0, "300-rule profile adds {best:.2} ms to create");
    }
}

/// 15 creates with and without the profile, interleaved; prints the figures and returns the
/// difference of the minimums in ms.
fn measure_round(ctx: &Ctx, plain: &mut Bundle, with: &mut Bundle) -> f64 {
    let (mut a, mut s) = (Vec::new(), Vec::new());
    for i in 0..15 {
        // Alternate the order so that drift in machine load hits both sides alike.
        if i % 2 == 0 {
            a.push(time_create(ctx, plain, "p"));
            s.push(time_create(ctx, with, "s"));
        } else {
            s.push(time_create(ctx, with, "s"));
            a.push(time_create(ctx, plain, "p"));
        }
    }
    let (mp, ms) = (median(&mut a), median(&mut s));
    let ms_f = |d: Duration| d.as_secs_f64() * 1e3;
    // The minimum is the least disturbed by other load on the machine; the median is printed too.
    let extra_min = ms_f(s[0]) - ms_f(a[0]);
    eprintln!(
        "create wall time, 15 runs each: without seccomp min {:.2} ms median {:.2} ms; with 300 rules min {:.2} ms median {:.2} ms; extra min {:.2} ms median {:.2} ms",
        ms_f(a[0]),
        ms_f(mp),
        ms_f(s[0]),
        ms_f(ms),
        extra_min,
        ms_f(ms) - ms_f(mp)
    );
    extra_min
}

/// The cached program is keyed by the whole profile: a changed profile is compiled anew and
/// takes effect (no stale program).
#[test]
fn seccomp_cache_distinguishes_profiles() {
    if skip_on_runc("berth's seccomp cache") {
        return;
    }
    let mut ctx = Ctx::new("sccache");
    let cache = ctx.private_cache().join("seccomp");
    let a = run_with(
        &ctx,
        allow_all_but(json!([mkdir_rule("SCMP_ACT_ERRNO", json!({"errnoRet": 38}))])),
        &["mkdir", "/tmp/d"],
    );
    assert!(a.stderr.contains("Function not implemented"), "{a}");
    let b = run_with(
        &ctx,
        allow_all_but(json!([mkdir_rule("SCMP_ACT_ERRNO", json!({"errnoRet": 13}))])),
        &["mkdir", "/tmp/d"],
    );
    assert!(b.stderr.contains("Permission denied"), "{b}");
    let again = run_with(
        &ctx,
        allow_all_but(json!([mkdir_rule("SCMP_ACT_ERRNO", json!({"errnoRet": 38}))])),
        &["mkdir", "/tmp/d"],
    );
    assert!(again.stderr.contains("Function not implemented"), "{again}");
    let n = fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 2, "two programs cached in {}", cache.display());
    // The state root holds one directory per container and nothing else (engines list and
    // clean it): the cache lives outside it.
    let mut b = ctx.bundle();
    b.set("/linux/seccomp", allow_all_but(json!([mkdir_rule("SCMP_ACT_ERRNO", json!({"errnoRet": 38}))])));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("kept");
    ctx.run_detached(&mut b, &id);
    ctx.cmd(&["exec", &id, "true"]).ok();
    let names: Vec<String> =
        fs::read_dir(&ctx.root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, [id.as_str()], "only the container's dir under --root");
}

// ---------------------------------------------------------------------------------------------
// The ENOSYS stub

/// A bundle that has the host's /usr (perl and its libraries) mounted read-only, for probing
/// raw syscalls (`perl -e 'syscall(...)'`) that busybox never makes.
fn perl_bundle(ctx: &Ctx) -> Bundle {
    let mut b = ctx.bundle();
    b.writable_root();
    for d in ["/usr", "/lib", "/lib64"] {
        b.mount(json!({"destination": d, "type": "bind", "source": d, "options": ["rbind", "ro"]}));
    }
    b
}

/// Each syscall number of `nrs` called with junk arguments: "NR ERRNO" lines.
const PERL_PROBE: &str = r#"for $n (@ARGV) { $! = 0; syscall($n, -1, 0, 0, 0); printf "%d %d\n", $n, $! + 0 }"#;

/// Syscalls newer than every syscall the profile names return ENOSYS (so C libraries fall back
/// from clone3, openat2, faccessat2), not the default errno; an older syscall left out still
/// gets the default errno; a default that allows gets no stub.
#[test]
fn seccomp_enosys_for_newer_syscalls() {
    if !std::path::Path::new("/usr/bin/perl").exists() {
        eprintln!("seccomp_enosys_for_newer_syscalls: skipped: no /usr/bin/perl");
        return;
    }
    let ctx = Ctx::new("scenosys");
    // The docker-like allow list as a profile written before Linux 5.3 would be: nothing
    // newer than pidfd_open (434).
    let names: Vec<String> = docker_like_allow_names()
        .into_iter()
        .filter(|n| {
            libseccomp::ScmpSyscall::from_name_by_arch(n, libseccomp::ScmpArch::X8664)
                .is_ok_and(|s| (0..=434).contains(&i32::from(s)))
        })
        .collect();
    assert!(names.iter().any(|n| n == "pidfd_open"), "pidfd_open not in the list");
    let probe = ["435", "437", "439", "441", "163"]; // clone3 openat2 faccessat2 epoll_pwait2 acct
    for (errno_ret, want_old) in [(None, 1), (Some(95), 95)] {
        let mut profile = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
        });
        if let Some(e) = errno_ret {
            profile["defaultErrnoRet"] = json!(e);
        }
        let mut b = perl_bundle(&ctx);
        b.set("/linux/seccomp", profile);
        let mut args = vec!["/usr/bin/perl", "-e", PERL_PROBE];
        args.extend_from_slice(&probe);
        b.args(&args);
        let id = ctx.id("en");
        let o = ctx.run(&mut b, &id);
        o.ok();
        let want = ["435 38", "437 38", "439 38", "441 38", &format!("163 {want_old}")];
        assert_eq!(o.lines(), want, "defaultErrnoRet {errno_ret:?}: {o}");
    }

    // defaultAction ALLOW: the kernel answers (EFAULT/EBADF/EINVAL...), never ENOSYS here.
    let mut b = perl_bundle(&ctx);
    b.set("/linux/seccomp", allow_all_but(json!([{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}])));
    b.args(&["/usr/bin/perl", "-e", PERL_PROBE, "439", "163"]);
    let id = ctx.id("al");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = o.lines();
    assert_eq!(l.len(), 2, "{o}");
    assert_ne!(l[0], "439 38", "{o}");
    assert_eq!(l[1], "163 1", "{o}");
}
