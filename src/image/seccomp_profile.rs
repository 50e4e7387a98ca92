//! Seccomp profiles for containers made from images: berth's docker-like default profile,
//! and docker-format profile files (`names`, `archMap`, `includes`/`excludes`) turned into the
//! runtime-spec `linux.seccomp` object for the capability set the container ends up with.
//!
//! The default denies with EPERM everything not listed. Left out: syscalls that reach
//! host-global state (modules, kexec, reboot, swap, clock setting, accounting, quotas, keyrings),
//! namespace and mount management, tracing/cross-process memory access, NUMA policy, obsolete
//! or unsafe ABIs (uselib, vm86, _sysctl, ustat, sysfs, nfsservctl), io_uring, bpf and
//! perf_event_open. Most of these come back when the matching capability is granted.

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("seccomp profile {}: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("seccomp profile {}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
}

/// Syscalls every container may make, whatever its capabilities (names unknown to the
/// architecture or to libseccomp are skipped by the loader).
const ALLOW: &str = "
    read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 lseek _llseek
    open openat openat2 creat close close_range dup dup2 dup3 fcntl fcntl64 flock
    fsync fdatasync sync syncfs sync_file_range sync_file_range2 arm_sync_file_range
    truncate truncate64 ftruncate ftruncate64 fallocate fadvise64 fadvise64_64 arm_fadvise64_64
    readahead sendfile sendfile64 splice tee vmsplice copy_file_range cachestat
    stat stat64 lstat lstat64 fstat fstat64 newfstatat fstatat64 statx statfs statfs64
    fstatfs fstatfs64 statmount listmount access faccessat faccessat2
    chmod fchmod fchmodat fchmodat2 chown chown32 fchown fchown32 lchown lchown32 fchownat
    utime utimes utimensat utimensat_time64 futimesat umask
    link linkat symlink symlinkat unlink unlinkat rename renameat renameat2
    mkdir mkdirat rmdir mknod mknodat readlink readlinkat getdents getdents64 getcwd chdir fchdir
    getxattr lgetxattr fgetxattr getxattrat setxattr lsetxattr fsetxattr setxattrat
    listxattr llistxattr flistxattr listxattrat removexattr lremovexattr fremovexattr removexattrat
    brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2 munlock mlockall
    munlockall remap_file_pages membarrier memfd_create memfd_secret pkey_alloc pkey_free
    pkey_mprotect map_shadow_stack mseal
    execve execveat exit exit_group fork vfork wait4 waitid waitpid kill tkill tgkill
    getpid getppid gettid getpgid setpgid getpgrp getsid setsid getpriority setpriority prctl
    prlimit64 getrlimit setrlimit ugetrlimit getrusage times set_tid_address set_robust_list
    get_robust_list rseq restart_syscall pidfd_open pidfd_send_signal process_mrelease
    sched_yield sched_getaffinity sched_setaffinity sched_getattr sched_setattr sched_getparam
    sched_setparam sched_getscheduler sched_setscheduler sched_get_priority_max
    sched_get_priority_min sched_rr_get_interval sched_rr_get_interval_time64 getcpu
    ioprio_get ioprio_set seccomp capget capset set_thread_area get_thread_area uname sysinfo
    getrandom landlock_create_ruleset landlock_add_rule landlock_restrict_self uretprobe
    getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 getresuid getresuid32
    getresgid getresgid32 getgroups getgroups32 setuid setuid32 setgid setgid32 setreuid
    setreuid32 setregid setregid32 setresuid setresuid32 setresgid setresgid32 setfsuid
    setfsuid32 setfsgid setfsgid32 setgroups setgroups32
    rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo signal sigaction sigpending
    sigsuspend sigaltstack signalfd signalfd4 sigprocmask sigreturn pause alarm
    time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
    clock_nanosleep clock_nanosleep_time64 nanosleep getitimer setitimer timer_create
    timer_delete timer_gettime timer_gettime64 timer_settime timer_settime64 timer_getoverrun
    timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 adjtimex
    poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64 epoll_create
    epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait epoll_pwait2
    eventfd eventfd2 inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
    futex futex_time64 futex_waitv futex_wait futex_wake futex_requeue
    io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
    socket socketpair bind connect listen accept accept4 getsockname getpeername getsockopt
    setsockopt sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg recvmmsg_time64 send recv
    shutdown socketcall ioctl pipe pipe2
    ipc msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl
    shmget shmat shmdt shmctl mq_open mq_unlink mq_timedsend mq_timedsend_time64
    mq_timedreceive mq_timedreceive_time64 mq_notify mq_getsetattr
";

/// Syscalls granted by one capability (any listed capability is enough).
const BY_CAP: &[(&[&str], &str)] = &[
    (
        &["CAP_SYS_ADMIN"],
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick \
        lookup_dcookie mount mount_setattr move_mount name_to_handle_at open_tree open_tree_attr \
        perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare",
    ),
    (&["CAP_DAC_READ_SEARCH"], "open_by_handle_at name_to_handle_at"),
    (&["CAP_SYS_BOOT"], "reboot"),
    (&["CAP_SYS_CHROOT"], "chroot"),
    (&["CAP_SYS_MODULE"], "init_module finit_module delete_module"),
    (&["CAP_SYS_PACCT"], "acct"),
    (&["CAP_SYS_PTRACE"], "ptrace kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev userfaultfd"),
    (&["CAP_SYS_RAWIO"], "iopl ioperm"),
    (&["CAP_SYS_TIME"], "settimeofday stime clock_settime clock_settime64 clock_adjtime clock_adjtime64"),
    (&["CAP_SYS_TTY_CONFIG"], "vhangup"),
    (&["CAP_SYS_NICE"], "get_mempolicy mbind set_mempolicy set_mempolicy_home_node move_pages"),
    (&["CAP_SYSLOG"], "syslog"),
    (&["CAP_BPF"], "bpf"),
    (&["CAP_PERFMON"], "perf_event_open"),
];

/// personality(2) values allowed without restriction: PER_LINUX, PER_LINUX32, UNAME26
/// variants and the 0xffffffff query.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The namespace flags of clone(2): CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
pub const CLONE_NS_MASK: u64 = 0x7E02_0000;

/// The seccomp architectures of this host: native first, then the compat ABIs it runs.
pub fn host_arches() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "x86" => &["SCMP_ARCH_X86"],
        "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "arm" => &["SCMP_ARCH_ARM"],
        "riscv64" => &["SCMP_ARCH_RISCV64"],
        "s390x" => &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "powerpc64" if cfg!(target_endian = "little") => &["SCMP_ARCH_PPC64LE"],
        "powerpc64" => &["SCMP_ARCH_PPC64", "SCMP_ARCH_PPC"],
        "loongarch64" => &["SCMP_ARCH_LOONGARCH64"],
        _ => &[],
    }
}

/// Names docker profiles use for this host's arch in includes/excludes.arches.
fn host_arch_names() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["amd64", "x86_64", "SCMP_ARCH_X86_64"],
        "x86" => &["386", "x86", "SCMP_ARCH_X86"],
        "aarch64" => &["arm64", "aarch64", "SCMP_ARCH_AARCH64"],
        "arm" => &["arm", "SCMP_ARCH_ARM"],
        "riscv64" => &["riscv64", "SCMP_ARCH_RISCV64"],
        "s390x" => &["s390x", "SCMP_ARCH_S390X"],
        "powerpc64" => &["ppc64le", "ppc64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_PPC64"],
        "loongarch64" => &["loong64", "loongarch64", "SCMP_ARCH_LOONGARCH64"],
        _ => &[],
    }
}

fn has(caps: &[String], c: &str) -> bool {
    caps.iter().any(|x| x == c)
}

fn names(list: &str) -> Vec<Value> {
    list.split_whitespace().map(|s| Value::String(s.to_string())).collect()
}

fn allow(list: Vec<Value>) -> Value {
    json!({"names": list, "action": "SCMP_ACT_ALLOW"})
}

/// The default profile for a container whose final (bounding) capability set is `caps`
/// (`CAP_*` names), in runtime-spec form.
pub fn default_profile(caps: &[String]) -> Value {
    let arch = std::env::consts::ARCH;
    let mut rules = vec![allow(names(ALLOW))];
    // One rule per value: the conditions of one rule are ANDed.
    for v in PERSONALITIES {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}));
    }
    match arch {
        "x86_64" | "x86" => rules.push(allow(names("arch_prctl modify_ldt"))),
        "aarch64" | "arm" => rules.push(allow(names("breakpoint cacheflush set_tls"))),
        "s390x" => rules.push(allow(names("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"))),
        "riscv64" => rules.push(allow(names("riscv_flush_icache riscv_hwprobe"))),
        _ => {}
    }
    let mut granted: Vec<Value> = Vec::new();
    for (need, list) in BY_CAP {
        if need.iter().any(|c| has(caps, c)) {
            for n in names(list) {
                if !granted.contains(&n) {
                    granted.push(n);
                }
            }
        }
    }
    if !granted.is_empty() {
        rules.push(allow(granted));
    }
    if !has(caps, "CAP_SYS_ADMIN") {
        // clone is fine as long as it makes no namespace; s390 passes the flags second.
        let idx = if arch == "s390x" { 1 } else { 0 };
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": idx, "value": CLONE_NS_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        // clone3 passes its flags in memory, which seccomp cannot see: ENOSYS makes glibc
        // fall back to clone.
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": host_arches(),
        "syscalls": rules,
    })
}

/// Read a profile file (runtime-spec `linux.seccomp` object or docker's profile format) and
/// convert it for a container with capability set `caps`.
pub fn load_profile(path: &Path, caps: &[String]) -> Result<Value, ProfileError> {
    let text = std::fs::read(path).map_err(|err| ProfileError::Read { path: path.to_path_buf(), err })?;
    let v: Value = serde_json::from_slice(&text)
        .map_err(|e| ProfileError::Invalid { path: path.to_path_buf(), msg: e.to_string() })?;
    convert_profile(&v, caps).map_err(|msg| ProfileError::Invalid { path: path.to_path_buf(), msg })
}

/// Kernel (major, minor) from uname, for `minKernel` conditions.
fn kernel_version() -> (u64, u64) {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (0, 0);
    }
    // SAFETY: the kernel NUL-terminates release.
    let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned();
    parse_kernel(&rel).unwrap_or((0, 0))
}

fn parse_kernel(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let maj = it.next()?.parse().ok()?;
    let min = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((maj, min))
}

/// Does a docker `includes`/`excludes` object match? `include` = all present conditions hold
/// (caps: every cap present); exclude = any condition holds (caps: any cap present).
fn filter_matches(f: Option<&Value>, caps: &[String], include: bool) -> Result<bool, String> {
    let Some(f) = f else { return Ok(include) };
    let Some(o) = f.as_object() else { return Err("includes/excludes must be objects".into()) };
    let strs = |k: &str| -> Result<Vec<String>, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => {
                a.iter().map(|x| x.as_str().map(String::from).ok_or_else(|| format!("{k} must hold strings"))).collect()
            }
            _ => Err(format!("{k} must be an array")),
        }
    };
    let fcaps = strs("caps")?;
    let arches = strs("arches")?;
    let min_kernel = match o.get("minKernel") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_kernel(s).ok_or_else(|| format!("bad minKernel {s:?}"))?),
        _ => return Err("minKernel must be a string".into()),
    };
    let arch_hit = arches.iter().any(|a| host_arch_names().contains(&a.as_str()));
    let kernel_ok = min_kernel.map(|k| kernel_version() >= k);
    if include {
        Ok(fcaps.iter().all(|c| has(caps, c)) && (arches.is_empty() || arch_hit) && kernel_ok.unwrap_or(true))
    } else {
        Ok((!fcaps.is_empty() && fcaps.iter().any(|c| has(caps, c)))
            || arch_hit
            // excludes.minKernel: rule is dropped on kernels at least this new.
            || kernel_ok == Some(true))
    }
}

/// Convert a profile in docker's format (or already in runtime-spec form, which is a subset)
/// to the runtime-spec object: archMap → architectures of this host, rules filtered by their
/// includes/excludes against `caps`, `name` → `names`, comments dropped.
pub fn convert_profile(v: &Value, caps: &[String]) -> Result<Value, String> {
    let o = v.as_object().ok_or("not a JSON object")?;
    let default = o.get("defaultAction").ok_or("defaultAction is missing")?;
    let mut out = Map::new();
    out.insert("defaultAction".into(), default.clone());
    for k in ["defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"] {
        if let Some(x) = o.get(k).filter(|x| !x.is_null()) {
            out.insert(k.into(), x.clone());
        }
    }
    let mut arches: Vec<Value> = Vec::new();
    match o.get("archMap") {
        Some(Value::Array(m)) if !m.is_empty() => {
            let native = host_arches().first().copied().unwrap_or("");
            for e in m {
                if e.get("architecture").and_then(Value::as_str) == Some(native) {
                    arches.push(Value::String(native.into()));
                    if let Some(Value::Array(sub)) = e.get("subArchitectures") {
                        arches.extend(sub.iter().cloned());
                    }
                }
            }
        }
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            if let Some(a) = o.get("architectures").filter(|x| !x.is_null()) {
                arches = a.as_array().ok_or("architectures must be an array")?.clone();
            }
        }
        Some(_) => return Err("archMap must be an array".into()),
    }
    if !arches.is_empty() {
        out.insert("architectures".into(), Value::Array(arches));
    }
    let mut rules = Vec::new();
    let list = match o.get("syscalls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("syscalls must be an array".into()),
    };
    for (i, r) in list.iter().enumerate() {
        let ro = r.as_object().ok_or_else(|| format!("syscalls[{i}] is not an object"))?;
        let ctx = |e: String| format!("syscalls[{i}]: {e}");
        if !filter_matches(ro.get("includes"), caps, true).map_err(ctx)?
            || filter_matches(ro.get("excludes"), caps, false).map_err(ctx)?
        {
            continue;
        }
        let mut names: Vec<Value> = match ro.get("names") {
            Some(Value::Array(a)) => a.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(format!("syscalls[{i}].names must be an array")),
        };
        if let Some(n) = ro.get("name").filter(|x| !x.is_null()) {
            names.push(n.clone());
        }
        if names.is_empty() {
            continue;
        }
        let mut rule = Map::new();
        rule.insert("names".into(), Value::Array(names));
        rule.insert(
            "action".into(),
            ro.get("action").cloned().ok_or_else(|| format!("syscalls[{i}].action is missing"))?,
        );
        for k in ["errnoRet", "args"] {
            if let Some(x) = ro.get(k).filter(|x| !x.is_null()) {
                rule.insert(k.into(), x.clone());
            }
        }
        rules.push(Value::Object(rule));
    }
    out.insert("syscalls".into(), Value::Array(rules));
    let out = Value::Object(out);
    // What goes into config.json must be a seccomp section the runtime reads (known actions,
    // operators, flags and architectures; numbers in range): refused here, naming the file,
    // rather than by the runtime once the container is being created.
    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(out.clone()).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    fn allowed(p: &Value, name: &str) -> Vec<Value> {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == name))
            .cloned()
            .collect()
    }

    const BLOCKED: &str = "acct add_key bpf clock_adjtime clock_settime create_module delete_module \
        finit_module get_kernel_syms get_mempolicy init_module ioperm iopl kcmp kexec_file_load \
        kexec_load keyctl lookup_dcookie mbind mount move_pages name_to_handle_at nfsservctl \
        open_by_handle_at perf_event_open pivot_root process_vm_readv process_vm_writev ptrace \
        query_module quotactl reboot request_key set_mempolicy setns settimeofday stime swapon \
        swapoff sysfs _sysctl umount umount2 unshare uselib userfaultfd ustat vm86 vm86old \
        io_uring_setup io_uring_enter chroot sethostname";

    /// Found by the coverage-guided fuzzer (fuzz/fuzz_targets/seccomp_profile.rs): a rule's
    /// unknown action was passed through to config.json.
    #[test]
    fn a_profile_the_runtime_cannot_read_is_refused() {
        let c = caps(&["CAP_SYS_ADMIN"]);
        let p = |rule: Value| json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule]});
        let bad = convert_profile(&p(json!({"names": ["mount"], "action": "PCSM_ACT_ALLOW"})), &c).unwrap_err();
        assert!(bad.contains("unknown variant `PCSM_ACT_ALLOW`"), "{bad}");
        let op = json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "EQ"}]});
        assert!(convert_profile(&p(op), &c).is_err());
        assert!(convert_profile(&json!({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": -1}), &c).is_err());
        assert!(convert_profile(&json!({"defaultAction": "SCMP_ACT_NOPE"}), &c).is_err());
        // A rule left out for the capabilities is not checked, like docker.
        let skipped = json!({"names": ["mount"], "action": "NOPE", "includes": {"caps": ["CAP_SYSLOG"]}});
        assert!(convert_profile(&p(skipped), &c).is_ok());
        assert!(convert_profile(&p(json!({"names": ["read"], "action": "SCMP_ACT_ALLOW"})), &c).is_ok());
    }

    #[test]
    fn default_blocks_dangerous() {
        let p = default_profile(&caps(&["CAP_CHOWN", "CAP_KILL"]));
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        for n in BLOCKED.split_whitespace() {
            assert!(allowed(&p, n).is_empty(), "{n} must not be allowed");
        }
        // Each name appears in the plain allow list once.
        let mut seen = std::collections::HashSet::new();
        for n in ALLOW.split_whitespace() {
            assert!(seen.insert(n), "{n} twice");
        }
        let clone = allowed(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["args"][0]["value"], 0x7E02_0000u64);
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        let c3 = allowed(&p, "clone3");
        assert_eq!((c3[0]["action"].as_str(), c3[0]["errnoRet"].as_u64()), (Some("SCMP_ACT_ERRNO"), Some(38)));
        assert_eq!(allowed(&p, "personality").len(), PERSONALITIES.len());
        assert_eq!(allowed(&p, "read").len(), 1);
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(p["architectures"], json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
        }
        // It parses as a runtime-spec seccomp object.
        let _: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
    }

    #[test]
    fn caps_grant() {
        let p = default_profile(&caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_CHROOT"]));
        for n in
            ["mount", "umount2", "unshare", "setns", "clone3", "ptrace", "process_vm_readv", "chroot", "sethostname"]
        {
            assert!(!allowed(&p, n).is_empty(), "{n} must be allowed");
        }
        // SYS_ADMIN: clone unrestricted, clone3 allowed (no ENOSYS rule).
        let clone = allowed(&p, "clone");
        assert!(clone.len() == 1 && clone[0].get("args").is_none());
        assert!(allowed(&p, "clone3").iter().all(|r| r["action"] == "SCMP_ACT_ALLOW"));
        let p = default_profile(&caps(&["CAP_SYS_TIME"]));
        assert!(!allowed(&p, "settimeofday").is_empty());
        assert!(allowed(&p, "mount").is_empty());
    }

    #[test]
    fn docker_format() {
        let d = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "x"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32", "x86"]}},
                {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"name": "old", "action": "SCMP_ACT_ALLOW"}
            ]
        });
        let p = convert_profile(&d, &caps(&["CAP_KILL"])).unwrap();
        let names: Vec<String> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()))
            .collect();
        let native = std::env::consts::ARCH == "x86_64";
        assert!(names.contains(&"clone".to_string()) && !names.contains(&"mount".to_string()));
        assert!(!names.contains(&"s390_only".to_string()) && names.contains(&"old".to_string()));
        assert!(names.contains(&"ptrace".to_string()));
        assert!(p["syscalls"][0].get("comment").is_none());
        if native {
            assert!(names.contains(&"arch_prctl".to_string()));
            assert_eq!(p["architectures"], json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
        }
        let p = convert_profile(&d, &caps(&["CAP_SYS_ADMIN"])).unwrap();
        let s = p.to_string();
        assert!(s.contains("\"mount\"") && !s.contains("2114060288"));
        let _: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
        // The runtime-spec form passes through unchanged in substance.
        let spec = default_profile(&caps(&[]));
        assert_eq!(convert_profile(&spec, &[]).unwrap(), spec);
        assert!(convert_profile(&json!({"syscalls": []}), &[]).unwrap_err().contains("defaultAction"));
        assert!(convert_profile(&json!([1]), &[]).is_err());
        assert_eq!(parse_kernel("6.18.0-rc1"), Some((6, 18)));
    }
}
