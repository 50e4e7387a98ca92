use super::*;
use serde_json::json;

fn spec(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("test profile parses")
}

fn err(v: Value) -> String {
    match prepare(&spec(v)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn actions_map_with_errno_defaults() {
    use LinuxSeccompAction::*;
    assert_eq!(action(ScmpActErrno, None, None).unwrap(), ScmpAction::Errno(libc::EPERM));
    assert_eq!(action(ScmpActErrno, Some(38), None).unwrap(), ScmpAction::Errno(38));
    assert_eq!(action(ScmpActTrace, None, None).unwrap(), ScmpAction::Trace(libc::EPERM as u16));
    assert_eq!(action(ScmpActTrace, Some(7), None).unwrap(), ScmpAction::Trace(7));
    assert_eq!(action(ScmpActKill, None, None).unwrap(), ScmpAction::KillThread);
    assert_eq!(action(ScmpActKillThread, None, None).unwrap(), ScmpAction::KillThread);
    assert_eq!(action(ScmpActKillProcess, None, None).unwrap(), ScmpAction::KillProcess);
    assert_eq!(action(ScmpActTrap, None, None).unwrap(), ScmpAction::Trap);
    assert_eq!(action(ScmpActLog, None, None).unwrap(), ScmpAction::Log);
    assert_eq!(action(ScmpActAllow, Some(5), None).unwrap(), ScmpAction::Allow);
    assert_eq!(action(ScmpActNotify, None, None).unwrap(), ScmpAction::Notify);
    let e = action(ScmpActErrno, Some(70000), Some(2)).unwrap_err();
    assert_eq!(e.to_string(), "seccomp: syscalls[2].errnoRet 70000 out of range (0-65535)");
}

#[test]
fn check_json_one_line_errors() {
    let base =
        || json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]});
    assert!(check_json(&base()).is_ok());

    let mut v = base();
    v["syscalls"][0]["action"] = json!("SCMP_ACT_FOO");
    assert_eq!(check_json(&v).unwrap_err().to_string(), r#"seccomp: unknown action "SCMP_ACT_FOO""#);
    // and oci-spec itself refuses it, which is why check_json exists
    assert!(serde_json::from_value::<LinuxSeccomp>(v).is_err());

    let mut v = base();
    v["defaultAction"] = json!("SCMP_ACT_BAR");
    assert_eq!(check_json(&v).unwrap_err().to_string(), r#"seccomp: unknown action "SCMP_ACT_BAR""#);

    let mut v = base();
    v["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_PDP11"]);
    assert_eq!(check_json(&v).unwrap_err().to_string(), r#"seccomp: unknown architecture "SCMP_ARCH_PDP11""#);

    let mut v = base();
    v["flags"] = json!(["SECCOMP_FILTER_FLAG_NOPE"]);
    assert_eq!(check_json(&v).unwrap_err().to_string(), r#"seccomp: unknown flag "SECCOMP_FILTER_FLAG_NOPE""#);

    let mut v = base();
    v["syscalls"][0]["args"] =
        json!([{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "SCMP_CMP_XX"}]);
    assert_eq!(check_json(&v).unwrap_err().to_string(), r#"seccomp: unknown operator "SCMP_CMP_XX""#);

    let v = json!({"syscalls": []});
    assert_eq!(check_json(&v).unwrap_err().to_string(), "seccomp: defaultAction is missing");

    let mut v = base();
    v["syscalls"][0]["names"] = json!("mkdir");
    assert!(check_json(&v).unwrap_err().to_string().starts_with("seccomp: "));
}

#[test]
fn all_spec_names_are_accepted() {
    let v = json!({
        "defaultAction": "SCMP_ACT_KILL",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_AARCH64", "SCMP_ARCH_NATIVE"],
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["a"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["a"], "action": "SCMP_ACT_TRAP"},
            {"names": ["a"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["a"], "action": "SCMP_ACT_TRACE"},
            {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["a"], "action": "SCMP_ACT_LOG"},
            {"names": ["a"], "action": "SCMP_ACT_NOTIFY", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_NE"}, {"index": 1, "value": 1, "op": "SCMP_CMP_LT"},
                {"index": 2, "value": 1, "op": "SCMP_CMP_LE"}, {"index": 3, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 4, "value": 1, "op": "SCMP_CMP_GE"}, {"index": 5, "value": 1, "op": "SCMP_CMP_GT"},
                {"index": 0, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    });
    check_json(&v).unwrap();
    spec(v);
}

#[test]
fn unknown_syscalls_are_skipped_and_listed() {
    let p = prepare(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "no_such_call", "write", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["other_bogus"], "action": "SCMP_ACT_KILL"}
        ]
    })))
    .unwrap();
    assert_eq!(p.unknown_syscalls(), ["no_such_call", "other_bogus"]);
    assert!(!p.uses_notify());
    assert!(p.instructions() > 4);
}

#[test]
fn rule_equal_to_default_is_skipped() {
    let only_default = prepare(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
    let p = prepare(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    })))
    .unwrap();
    assert_eq!(p.instructions(), only_default.instructions());
    // a different errno is a different action: kept
    let q = prepare(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
    assert!(q.instructions() > p.instructions());
}

#[test]
fn same_arg_index_twice_is_split() {
    let args =
        json!([{"index": 1, "value": 448, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 457, "op": "SCMP_CMP_EQ"}]);
    let s = spec(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": args}]}));
    let a = s.syscalls().as_ref().unwrap()[0].args().clone().unwrap();
    assert!(has_duplicate_index(&a));
    let c = conditions(&a, 0).unwrap();
    assert_eq!(groups(&c, true).len(), 2);
    assert_eq!(groups(&c, false).len(), 1);
    prepare(&s).unwrap();

    let distinct = json!([{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 0}]);
    let s = spec(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": distinct}]}));
    assert!(!has_duplicate_index(s.syscalls().as_ref().unwrap()[0].args().as_ref().unwrap()));
    prepare(&s).unwrap();
}

#[test]
fn bad_input_errors() {
    assert_eq!(
        err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})),
        "seccomp: syscalls[0].args[0].index 6 out of range (0-5)"
    );
    assert_eq!(
        err(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536})),
        "seccomp: defaultErrnoRet 65536 out of range (0-65535)"
    );
    assert_eq!(
        err(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})
        ),
        "seccomp: listenerPath is not set"
    );
    assert_eq!(
        err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"})),
        "seccomp: SCMP_ACT_NOTIFY cannot be used as default action"
    );
    assert_eq!(
        err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
            "syscalls": [{"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]})),
        "seccomp: SCMP_ACT_NOTIFY cannot be used for the write syscall"
    );
    assert_eq!(
        err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent/agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})),
        "seccomp: failed to connect with seccomp agent specified in the seccomp profile: \
         dial unix /nonexistent/agent.sock: connect: no such file or directory"
    );
    assert_eq!(
        err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/etc/hostname",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})),
        "seccomp: failed to connect with seccomp agent specified in the seccomp profile: \
         dial unix /etc/hostname: connect: connection refused"
    );
    // a listenerPath without NOTIFY is not looked at
    prepare(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent"}))).unwrap();
}

#[test]
fn architectures() {
    let p = prepare(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_NATIVE"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})))
    .unwrap();
    let native = prepare(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})))
    .unwrap();
    assert!(p.instructions() > native.instructions());
    // newer arches: accepted or refused with a clear message, depending on libseccomp
    match prepare(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_LOONGARCH64"]}))) {
        Ok(_) => {}
        Err(e) => assert!(
            e.to_string().starts_with("seccomp: architecture SCMP_ARCH_LOONGARCH64 is not supported by libseccomp 2."),
            "{e}"
        ),
    }
}

#[test]
fn flag_sets() {
    use LinuxSeccompFilterFlag::*;
    assert_eq!(filter_flags(&[], false), (0, 0));
    assert_eq!(filter_flags(&[], true), (FLAG_NEW_LISTENER, FLAG_NEW_LISTENER));
    assert_eq!(filter_flags(&[SeccompFilterFlagTsync, SeccompFilterFlagLog], false), (3, 3));
    let all = [SeccompFilterFlagTsync, SeccompFilterFlagWaitKillableRecv];
    let f = FLAG_TSYNC | FLAG_WAIT_KILLABLE_RECV | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH;
    assert_eq!(filter_flags(&all, false), (FLAG_TSYNC, f));
    assert_eq!(filter_flags(&all, true), (f, f));
    assert_eq!(
        filter_flags(&[SeccompFilterFlagWaitKillableRecv], false),
        (0, FLAG_WAIT_KILLABLE_RECV | FLAG_NEW_LISTENER)
    );
    assert!(check_flags(f).is_ok());
    assert!(!kernel_accepts(1 << 20));
    assert!(check_flags(1 << 20).is_err());
    assert!(kernel_accepts(FLAG_TSYNC));
}

#[test]
fn process_state() {
    let st = json!({"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 42, "bundle": "/b"});
    let v: Value = serde_json::from_slice(&process_state_json("1.2.0", 42, st.clone(), Some("meta"))).unwrap();
    assert_eq!(v["ociVersion"], "1.2.0");
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert_eq!(v["pid"], 42);
    assert_eq!(v["metadata"], "meta");
    assert_eq!(v["state"]["id"], "c1");
    assert_eq!(v["state"]["status"], "creating");
    let v: Value = serde_json::from_slice(&process_state_json("1.2.0", 42, st, None)).unwrap();
    assert!(v.get("metadata").is_none());
}

#[test]
fn listener_not_connectable_names_path() {
    let dir = std::env::temp_dir().join(format!("berth-seccomp-test-{}", std::process::id()));
    let path = dir.join("none.sock");
    let fd = std::fs::File::open("/dev/null").unwrap();
    let e = send_to_listener(&path, std::os::fd::AsFd::as_fd(&fd), b"{}").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "seccomp: failed to connect with seccomp agent specified in the seccomp profile: dial unix {}: connect: \
             no such file or directory",
            path.display()
        )
    );
}

#[test]
fn os_err_is_plain() {
    assert_eq!(OsErr(libc::EPERM).to_string(), "Operation not permitted");
}

fn bytes(p: &Prepared) -> Vec<u8> {
    let mut b = Vec::new();
    bpf_to_bytes(&p.prog, &mut b);
    b
}

#[test]
fn cache_miss_hit_and_bad_entries() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("berth-seccomp-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = spec(json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [{"names": ["read", "write", "nope_call"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                      "args": [{"index": 1, "value": 448, "op": "SCMP_CMP_EQ"}]}]}));
    let miss = prepare_cached(&s, &dir).unwrap();
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let hit = prepare_cached(&s, &dir).unwrap();
    assert_eq!(bytes(&miss), bytes(&hit));
    assert_eq!(hit.unknown_syscalls(), ["nope_call"]);
    // same semantics as the uncached (linear) program, different layout is fine; sizes sane
    assert!(hit.instructions() > 0 && prepare(&s).unwrap().instructions() > 0);

    // a different profile does not hit the entry
    let s2 =
        spec(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}));
    assert_ne!(bytes(&prepare_cached(&s2, &dir).unwrap()), bytes(&hit));

    // a corrupted entry is ignored and rewritten
    std::fs::write(&entries[0], b"garbage").unwrap();
    assert_eq!(bytes(&prepare_cached(&s, &dir).unwrap()), bytes(&miss));
    assert!(std::fs::read(&entries[0]).unwrap().starts_with(b"berth-seccomp-cache"));

    // a group/other-writable entry is not trusted
    let mut tampered = std::fs::read(&entries[0]).unwrap();
    let n = tampered.len();
    tampered[n - 4] ^= 0xff; // change the last instruction's k
    std::fs::write(&entries[0], &tampered).unwrap();
    std::fs::set_permissions(&entries[0], std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(bytes(&prepare_cached(&s, &dir).unwrap()), bytes(&miss));

    // a cache dir others could swap (its parent writable by others, not sticky) is not used
    let open_parent = dir.join("open");
    std::fs::create_dir(&open_parent).unwrap();
    std::fs::set_permissions(&open_parent, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(prepare_cached(&s, &open_parent.join("c")).is_ok());
    assert_eq!(std::fs::read_dir(open_parent.join("c")).map(|d| d.count()).unwrap_or(0), 0);

    // an unusable cache dir is not an error
    assert!(prepare_cached(&s, std::path::Path::new("/proc/berth-no-such/dir")).is_ok());
    // bad input still fails
    let bad = spec(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}));
    assert!(prepare_cached(&bad, &dir).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Loads `p` in a forked child (with no_new_privs) and returns the errno of syscall `nr`
/// (0 when it succeeded).
fn errno_in_child(p: &Prepared, nr: libc::c_long) -> i32 {
    // SAFETY: the child only makes raw syscalls (prctl, seccomp, the probe) and _exit: no
    // allocation or lock after fork in this multi-threaded test process.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if p.load().is_err() {
                libc::_exit(200);
            }
            // Arguments that make every probed syscall fail fast if it reaches the kernel.
            let r = libc::syscall(nr, -1 as libc::c_long, 0 as libc::c_long, 0 as libc::c_long, -1 as libc::c_long);
            let e = if r < 0 { *libc::__errno_location() } else { 0 };
            libc::_exit(e.min(199));
        }
        let mut st = 0;
        assert_eq!(libc::waitpid(pid, &mut st, 0), pid);
        assert!(libc::WIFEXITED(st), "child status {st:#x}");
        let code = libc::WEXITSTATUS(st);
        assert_ne!(code, 200, "the filter did not load");
        code
    }
}

/// A syscall newer than every one the profile names returns ENOSYS (clone3, faccessat2); an
/// older one left out gets the default errno; no stub when the default allows or is ENOSYS.
#[test]
fn enosys_stub_for_newer_syscalls() {
    let names = json!(["exit", "exit_group", "getpid", "pidfd_open"]);
    let p = prepare(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    assert_eq!(errno_in_child(&p, libc::SYS_faccessat2), libc::ENOSYS);
    assert_eq!(errno_in_child(&p, libc::SYS_clone3), libc::ENOSYS);
    assert_eq!(errno_in_child(&p, libc::SYS_acct), libc::EPERM);
    assert_eq!(errno_in_child(&p, libc::SYS_getpid), 0);

    // defaultErrnoRet applies below the newest named syscall only.
    let p = prepare(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13,
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    assert_eq!(errno_in_child(&p, libc::SYS_openat2), libc::ENOSYS);
    assert_eq!(errno_in_child(&p, libc::SYS_acct), libc::EACCES);

    // A rule of any action counts as naming the syscall: faccessat2 named (KILL is not what
    // the probe gets: the rule is ERRNO 5), so everything up to it is the default.
    let p = prepare(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"},
                     {"names": ["faccessat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]
    })))
    .unwrap();
    assert_eq!(errno_in_child(&p, libc::SYS_faccessat2), 5);
    assert_eq!(errno_in_child(&p, libc::SYS_clone3), libc::EPERM);
    assert_eq!(errno_in_child(&p, libc::SYS_epoll_pwait2), libc::ENOSYS);

    // No stub: the default allows, or is ENOSYS already.
    for v in [
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]}),
        json!({"defaultAction": "SCMP_ACT_LOG", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]}),
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
               "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}),
    ] {
        assert!(enosys::stub(&spec(v.clone()), ScmpArch::native()).is_empty(), "{v}");
    }
    let killing = spec(json!({"defaultAction": "SCMP_ACT_KILL_PROCESS",
                              "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}));
    assert!(!enosys::stub(&killing, ScmpArch::native()).is_empty());
}
