//! seccomp: build a filter from the runtime spec (in the parent, before clone) and load it in
//! the container's init as late as possible.
//!
//! Flow and who does what:
//! 1. Parent, before clone: [`prepare`] (or [`prepare_cached`]) validates `linux.seccomp`,
//!    builds the filter with libseccomp and exports it as a classic BPF program (a
//!    `Vec<sock_filter>`). All bad input fails here, before anything exists on the host. The
//!    libseccomp context is freed again.
//! 2. Init (a copy of the parent's memory, clone without CLONE_VM): [`Prepared::load`] is one
//!    `seccomp(SECCOMP_SET_MODE_FILTER)` syscall on that program: no libseccomp call and no
//!    allocation on the success path.
//!
//! Measured (CPU time, this 2-core machine, docker-like profile: 300 names ALLOW, default
//! ERRNO, arches x86_64+x86+x32): `prepare` ~8.5 ms in a fresh process (libseccomp builds and
//! generates the BPF; 1.3 ms for native arch only); `prepare_cached` hit ~50 us cold, ~16 us
//! warm; `load` 0.3-1.4 ms for the linear program and ~0.3 ms for the cached binary-tree one
//! (kernel time: the kernel pre-evaluates the filter for every syscall number). libseccomp's own
//! `seccomp_load` in the child would cost ~8.7 ms (it generates the BPF at load time).
//! 3. When [`Prepared::uses_notify`], `load` returns the notify fd. The init hands it to the
//!    runtime (e.g. the parent takes it with `pidfd_getfd(2)`, or the init sends it with
//!    SCM_RIGHTS over its sync socket); the runtime then calls [`send_to_listener`] with the
//!    state built by [`process_state_json`]. SCMP_ACT_NOTIFY is refused as the default action
//!    and for `write`, as runc refuses them: the init announces the fd's number with write(2)
//!    and the runtime copies it with pidfd_getfd(2), as runc does.
//!
//! no_new_privs: libseccomp's own NNP handling is off (we never call `seccomp_load`). The kernel
//! accepts a filter only from a thread that has no_new_privs set or holds CAP_SYS_ADMIN in its
//! user namespace. So the init either sets NNP (`process.noNewPrivileges`) before `load`, or
//! calls `load` while it still has CAP_SYS_ADMIN, i.e. before dropping capabilities (then the
//! filter also applies to the remaining set-up syscalls, as in runc).
//!
//! Syscalls newer than every syscall the profile names return ENOSYS, not the default action
//! (runc's ENOSYS stub, see `enosys`), so C libraries fall back to older calls.
//!
//! Unknown syscall names are skipped (as runc does) and listed by
//! [`Prepared::unknown_syscalls`] for debug logging. A rule whose action equals the default
//! action is skipped (libseccomp refuses such rules). A rule naming the same argument index
//! twice is added as one rule per condition (libseccomp refuses it in one rule; runc does the
//! same split).
//!
//! oci-spec already refuses unknown action/arch/flag/op strings when config.json is parsed,
//! with a long serde message; [`check_json`] on the raw `linux.seccomp` value gives the one-line
//! error (`seccomp: unknown action "SCMP_ACT_FOO"`) to show instead.

mod cache;
mod enosys;
mod listener;

pub use listener::{process_state_json, send_to_listener};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

/// Kernel limit on the length of one classic BPF program (BPF_MAXINSNS).
const BPF_MAXINSNS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: unknown action {0:?}")]
    UnknownAction(String),
    #[error("seccomp: unknown architecture {0:?}")]
    UnknownArch(String),
    #[error("seccomp: unknown flag {0:?}")]
    UnknownFlag(String),
    #[error("seccomp: unknown operator {0:?}")]
    UnknownOp(String),
    /// Input that is well-formed JSON but not a usable profile (one line, names the field).
    #[error("seccomp: {0}")]
    Invalid(String),
    #[error("seccomp: architecture {arch} is not supported by libseccomp {version}")]
    UnsupportedArch { arch: String, version: String },
    #[error("seccomp: flag {0} is not supported by this kernel")]
    UnsupportedFlag(&'static str),
    /// A libseccomp call failed; `what` names the call and its subject.
    #[error("seccomp: {what}: {msg}")]
    Libseccomp { what: String, msg: String },
    #[error("seccomp: load filter of {insns} instructions: {err}{hint}")]
    Load { insns: usize, err: OsErr, hint: &'static str },
    #[error("seccomp: {op} listener {}: {err}", path.display())]
    Listener { op: &'static str, path: PathBuf, err: OsErr },
    /// The agent's socket cannot be connected to: runc's wording, with the errno connect(2)
    /// gives (or would give: the check at create is a stat).
    #[error(
        "seccomp: failed to connect with seccomp agent specified in the seccomp profile: dial unix {}: connect: {}",
        path.display(),
        lower(&err.to_string())
    )]
    Agent { path: PathBuf, err: OsErr },
}

/// An errno shown as its plain text ("Operation not permitted"), without Rust's " (os error N)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsErr(pub i32);

impl fmt::Display for OsErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = std::io::Error::from_raw_os_error(self.0).to_string();
        f.write_str(s.split(" (os error").next().unwrap_or(&s))
    }
}

impl OsErr {
    fn last() -> Self {
        OsErr(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    }
}

/// The text with its first letter in lower case (Go's error style, as runc prints errnos).
fn lower(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn lib_err(what: impl Into<String>, e: libseccomp::error::SeccompError) -> SeccompError {
    let msg = e.to_string();
    let mut c = msg.chars();
    let msg = match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => msg,
    };
    SeccompError::Libseccomp { what: what.into(), msg }
}

/// A filter that is built and validated but not yet loaded: a plain BPF program plus the
/// seccomp(2) flags, safe to use in a child created by clone/fork.
#[derive(Debug, Clone)]
pub struct Prepared {
    prog: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    notify: bool,
    unknown: Vec<String>,
}

/// Validate the profile and build the filter. Bad input (errno out of range, bad argument
/// index, NOTIFY misuse, arch or flag unsupported here) fails here, before anything is created
/// on the host. Costs a few ms for a docker-sized profile (libseccomp); see [`prepare_cached`].
#[cfg(test)]
pub fn prepare(s: &LinuxSeccomp) -> Result<Prepared, SeccompError> {
    let (flags, notify) = check_env(s)?;
    let c = compile(s, 1)?;
    Ok(Prepared { prog: c.prog, flags, notify, unknown: c.unknown })
}

/// Like [`prepare`], but reuses the program compiled for a byte-identical profile (same
/// libseccomp version and machine) from `cache_dir`, and stores new ones there. libseccomp's
/// compile of a docker-like profile for 3 arches costs ~10 ms; a cache hit well under 1 ms.
/// Programs built here use libseccomp's binary-tree layout, slower to compile but ~2.5x
/// faster for the kernel to attach in `load` (and fewer BPF steps per syscall).
///
/// `cache_dir` must be private to the runtime (`/run/berth-cache/seccomp`, never under the state
/// root): it is created with mode 0700 and used only while nobody else can write it or swap it;
/// an entry is used only if owned by the current euid and not group/other writable. The full profile is compared on every hit, so a hash collision cannot mix
/// profiles up. Cache read/write problems are not errors: the profile is compiled instead.
/// Listener and flag checks against the host run on every call, hit or miss.
pub fn prepare_cached(s: &LinuxSeccomp, cache_dir: &std::path::Path) -> Result<Prepared, SeccompError> {
    let (flags, notify) = check_env(s)?;
    let c = cache::get_or_compile(s, cache_dir)?;
    Ok(Prepared { prog: c.prog, flags, notify, unknown: c.unknown })
}

/// A compiled program and the names it skipped.
struct Compiled {
    prog: Vec<libc::sock_filter>,
    unknown: Vec<String>,
}

/// The checks run on every prepare, cached or not: NOTIFY rules (not as default, not on
/// `write`, with a listener socket), and the flags must be known to this kernel.
/// Returns (seccomp(2) flags, uses notify).
fn check_env(s: &LinuxSeccomp) -> Result<(libc::c_ulong, bool), SeccompError> {
    // runc's refusals, in its words. The init writes the notify fd's number with write(2)
    // after loading the filter: notifying on write would block it before any agent has the fd.
    let mut notify = false;
    for rule in s.syscalls().iter().flatten() {
        if rule.action() == LinuxSeccompAction::ScmpActNotify {
            notify = true;
            if rule.names().iter().any(|n| n == "write") {
                return Err(SeccompError::Invalid("SCMP_ACT_NOTIFY cannot be used for the write syscall".into()));
            }
        }
    }
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::Invalid("SCMP_ACT_NOTIFY cannot be used as default action".into()));
    }
    if notify {
        check_listener(s)?;
    }
    let (flags, probe) = filter_flags(s.flags().as_deref().unwrap_or(&[]), notify);
    check_flags(probe)?;
    Ok((flags, notify))
}

/// Build the filter with libseccomp (optimize 1: linear, 2: binary tree) and export it.
fn compile(s: &LinuxSeccomp, optimize: u32) -> Result<Compiled, SeccompError> {
    let default = action(s.default_action(), s.default_errno_ret(), None)?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| lib_err("create filter", e))?;
    ctx.set_ctl_nnp(false).map_err(|e| lib_err("unset no_new_privs attribute", e))?;
    if optimize != 1 {
        ctx.set_ctl_optimize(optimize).map_err(|e| lib_err("set optimize attribute", e))?;
    }
    for &a in s.architectures().iter().flatten() {
        add_arch(&mut ctx, a)?;
    }

    let mut unknown = Vec::new();
    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        let act = action(rule.action(), rule.errno_ret(), Some(i))?;
        let args = rule.args().as_deref().unwrap_or(&[]);
        let conds = conditions(args, i)?;
        let split = has_duplicate_index(args);
        if act == default {
            continue;
        }
        for name in rule.names() {
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                if !unknown.contains(name) {
                    unknown.push(name.clone());
                }
                continue;
            };
            for group in groups(&conds, split) {
                ctx.add_rule_conditional(act, sys, group)
                    .map_err(|e| lib_err(format!("add rule for syscall {name:?}"), e))?;
            }
        }
    }
    let mut prog = enosys::stub(s, ScmpArch::native());
    prog.extend(export(&ctx)?);
    if prog.len() > BPF_MAXINSNS {
        return Err(SeccompError::Invalid(format!(
            "filter has {} instructions, the kernel allows {BPF_MAXINSNS}",
            prog.len()
        )));
    }
    Ok(Compiled { prog, unknown })
}

impl Prepared {
    /// Serialize the program for the container's init, which is re-executed and so cannot
    /// inherit this value: `[flags u64][notify u8][insns: code u16, jt u8, jf u8, k u32]...`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + self.prog.len() * 8);
        v.extend_from_slice(&self.flags.to_le_bytes());
        v.push(self.notify as u8);
        for i in &self.prog {
            v.extend_from_slice(&i.code.to_le_bytes());
            v.push(i.jt);
            v.push(i.jf);
            v.extend_from_slice(&i.k.to_le_bytes());
        }
        v
    }

    /// The inverse of [`Prepared::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Prepared, SeccompError> {
        let bad = || SeccompError::Invalid("corrupt filter program from the runtime".into());
        if b.len() < 9 || !(b.len() - 9).is_multiple_of(8) || (b.len() - 9) / 8 > 4096 {
            return Err(bad());
        }
        let mut f = [0u8; 8];
        f.copy_from_slice(&b[..8]);
        let prog = b[9..]
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Prepared { prog, flags: u64::from_le_bytes(f) as libc::c_ulong, notify: b[8] != 0, unknown: Vec::new() })
    }

    /// True when a rule is SCMP_ACT_NOTIFY (`load` then returns the listener fd).
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    /// Syscall names of the profile that this libseccomp does not know (skipped, like runc).
    pub fn unknown_syscalls(&self) -> &[String] {
        &self.unknown
    }

    /// Length of the BPF program in instructions.
    #[cfg(test)]
    pub fn instructions(&self) -> usize {
        self.prog.len()
    }

    /// Load the filter into the calling thread (all threads with SECCOMP_FILTER_FLAG_TSYNC).
    /// Returns the notify fd when `uses_notify`. Does not set no_new_privs itself: the caller
    /// sets it first, or calls this while it still holds CAP_SYS_ADMIN. One syscall, no
    /// allocation unless it fails.
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let prog = libc::sock_fprog {
            // prepare() refused programs longer than BPF_MAXINSNS, so this fits.
            len: self.prog.len() as libc::c_ushort,
            filter: self.prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points to self.prog, alive for the whole call; the kernel only reads
        // (copies) the program. The flags were checked against the kernel in prepare().
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            let err = OsErr::last();
            let hint = if err.0 == libc::EACCES { " (needs no_new_privs or CAP_SYS_ADMIN)" } else { "" };
            return Err(SeccompError::Load { insns: self.prog.len(), err, hint });
        }
        if self.notify {
            // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful call returns a new
            // file descriptor that nothing else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as i32) }));
        }
        if rc > 0 {
            // TSYNC without TSYNC_ESRCH: rc is the thread that could not be synchronized.
            return Err(SeccompError::Invalid(format!(
                "load filter: thread {rc} could not be synchronized (SECCOMP_FILTER_FLAG_TSYNC)"
            )));
        }
        Ok(None)
    }
}

/// Map a spec action to libseccomp's. `errno_ret` defaults to EPERM for ERRNO and TRACE.
fn action(a: LinuxSeccompAction, errno_ret: Option<u32>, rule: Option<usize>) -> Result<ScmpAction, SeccompError> {
    let ret = || -> Result<u16, SeccompError> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(v) => u16::try_from(v).map_err(|_| {
                let field = match rule {
                    None => "defaultErrnoRet".to_string(),
                    Some(i) => format!("syscalls[{i}].errnoRet"),
                };
                SeccompError::Invalid(format!("{field} {v} out of range (0-65535)"))
            }),
        }
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn scmp_arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// The spec's name of a value (e.g. "SCMP_ARCH_X86"), for error messages.
fn spec_name<T: serde::Serialize + fmt::Debug>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => format!("{v:?}"),
    }
}

fn add_arch(ctx: &mut ScmpFilterContext, a: Arch) -> Result<(), SeccompError> {
    // The native arch is in every new context; add_arch treats "already present" as success.
    ctx.add_arch(scmp_arch(a)).map(|_| ()).map_err(|e| {
        if e.errno() == Some(libseccomp::error::SeccompErrno::EINVAL) {
            let version = libseccomp::ScmpVersion::current()
                .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
                .unwrap_or_else(|_| "?".into());
            SeccompError::UnsupportedArch { arch: spec_name(&a), version }
        } else {
            lib_err(format!("add architecture {}", spec_name(&a)), e)
        }
    })
}

/// Translate the argument conditions of rule `i`.
fn conditions(args: &[LinuxSeccompArg], i: usize) -> Result<Vec<ScmpArgCompare>, SeccompError> {
    args.iter()
        .enumerate()
        .map(|(j, a)| {
            if a.index() > 5 {
                return Err(SeccompError::Invalid(format!(
                    "syscalls[{i}].args[{j}].index {} out of range (0-5)",
                    a.index()
                )));
            }
            // MASKED_EQ: value is the mask, valueTwo the datum: (arg & value) == valueTwo.
            let (op, datum) = match a.op() {
                LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
                LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
                LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
                LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
                LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
                LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                    (ScmpCompareOp::MaskedEqual(a.value()), a.value_two().unwrap_or(0))
                }
            };
            Ok(ScmpArgCompare::new(a.index() as u32, op, datum))
        })
        .collect()
}

/// True when an argument index appears more than once in one rule.
fn has_duplicate_index(args: &[LinuxSeccompArg]) -> bool {
    args.iter().enumerate().any(|(k, a)| args[..k].iter().any(|b| b.index() == a.index()))
}

/// The condition sets to add as separate rules: all together (AND) normally, one rule per
/// condition when an index repeats (libseccomp refuses an index twice in one rule).
fn groups(conds: &[ScmpArgCompare], split: bool) -> Vec<&[ScmpArgCompare]> {
    if split {
        conds.chunks(1).collect()
    } else {
        vec![conds]
    }
}

const FLAG_TSYNC: libc::c_ulong = 1;
const FLAG_LOG: libc::c_ulong = 2;
const FLAG_SPEC_ALLOW: libc::c_ulong = 4;
const FLAG_NEW_LISTENER: libc::c_ulong = 8;
const FLAG_TSYNC_ESRCH: libc::c_ulong = 16;
const FLAG_WAIT_KILLABLE_RECV: libc::c_ulong = 32;

/// The seccomp(2) flags for the spec's flags: (flags to load with, flags to check against the
/// kernel). With NOTIFY: NEW_LISTENER, plus TSYNC_ESRCH when TSYNC is asked (the kernel refuses
/// TSYNC+NEW_LISTENER without it). WAIT_KILLABLE_RECV only applies with a listener (the kernel
/// refuses it alone), so without NOTIFY it is only checked, like libseccomp does.
fn filter_flags(spec: &[LinuxSeccompFilterFlag], notify: bool) -> (libc::c_ulong, libc::c_ulong) {
    let mut f = 0;
    for flag in spec {
        f |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
    }
    let with_listener = |f: libc::c_ulong| {
        let esrch = if f & FLAG_TSYNC != 0 { FLAG_TSYNC_ESRCH } else { 0 };
        f | FLAG_NEW_LISTENER | esrch
    };
    if notify {
        return (with_listener(f), with_listener(f));
    }
    if f & FLAG_WAIT_KILLABLE_RECV != 0 {
        return (f & !FLAG_WAIT_KILLABLE_RECV, with_listener(f));
    }
    (f, f)
}

/// Ask the kernel whether it knows `flags` without loading anything: seccomp() with a NULL
/// program fails with EFAULT when the flags are accepted, EINVAL when not.
fn kernel_accepts(flags: libc::c_ulong) -> bool {
    // SAFETY: a NULL program is never dereferenced successfully; the kernel checks the flags,
    // then fails to copy the program with EFAULT. Nothing is installed.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, std::ptr::null::<u8>()) };
    rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// Check the flags against the kernel: one syscall when flags are used, none otherwise; more
/// only to name the unsupported flag.
fn check_flags(probe: libc::c_ulong) -> Result<(), SeccompError> {
    if probe == 0 || kernel_accepts(probe) {
        return Ok(());
    }
    let names: [(libc::c_ulong, &'static str); 5] = [
        (FLAG_TSYNC, "SECCOMP_FILTER_FLAG_TSYNC"),
        (FLAG_LOG, "SECCOMP_FILTER_FLAG_LOG"),
        (FLAG_SPEC_ALLOW, "SECCOMP_FILTER_FLAG_SPEC_ALLOW"),
        (FLAG_WAIT_KILLABLE_RECV, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"),
        (FLAG_TSYNC_ESRCH, "SECCOMP_FILTER_FLAG_TSYNC_ESRCH (TSYNC with SCMP_ACT_NOTIFY)"),
    ];
    for (bit, name) in names {
        let extra = if bit == FLAG_WAIT_KILLABLE_RECV || bit == FLAG_TSYNC_ESRCH {
            FLAG_NEW_LISTENER | if bit == FLAG_TSYNC_ESRCH { FLAG_TSYNC } else { 0 }
        } else {
            0
        };
        if probe & bit != 0 && !kernel_accepts(bit | extra) {
            return Err(SeccompError::UnsupportedFlag(name));
        }
    }
    Err(SeccompError::UnsupportedFlag("SECCOMP_FILTER_FLAG_NEW_LISTENER (SCMP_ACT_NOTIFY)"))
}

/// NOTIFY needs listenerPath, and it must be a unix socket now (one stat, no connect: the
/// agent must not see a spurious connection).
fn check_listener(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    let Some(path) = s.listener_path() else {
        return Err(SeccompError::Invalid("listenerPath is not set".into()));
    };
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(()),
        // connect(2) on a file that is not a socket: ECONNREFUSED.
        Ok(_) => Err(SeccompError::Agent { path: path.clone(), err: OsErr(libc::ECONNREFUSED) }),
        Err(e) => Err(SeccompError::Agent { path: path.clone(), err: OsErr(e.raw_os_error().unwrap_or(libc::EIO)) }),
    }
}

/// Export the filter as BPF. libseccomp 2.5 has no export to memory, so it writes to a memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    // SAFETY: the name is a valid NUL-terminated string; the returned fd is checked below.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(SeccompError::Invalid(format!("memfd_create: {}", OsErr::last())));
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file).map_err(|e| lib_err("export bpf", e))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| SeccompError::Invalid(format!("read exported bpf: {e}")))?;
    let prog = bpf_from_bytes(&bytes)
        .ok_or_else(|| SeccompError::Invalid(format!("exported bpf has a bad size {}", bytes.len())))?;
    if prog.len() > BPF_MAXINSNS {
        return Err(SeccompError::Invalid(format!(
            "filter has {} instructions, the kernel allows {BPF_MAXINSNS}",
            prog.len()
        )));
    }
    Ok(prog)
}

/// Decode a BPF program in the kernel's layout (8 bytes per instruction, native endian).
fn bpf_from_bytes(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// Encode a BPF program in the kernel's layout.
fn bpf_to_bytes(prog: &[libc::sock_filter], out: &mut Vec<u8>) {
    for i in prog {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
}

/// Check the raw `linux.seccomp` JSON value for names oci-spec would refuse (it parses them
/// into enums), and return the one-line error for the first bad one. Call it when parsing
/// config.json failed, to show e.g. `seccomp: unknown action "SCMP_ACT_FOO"` instead of serde's
/// message:
/// `if let Some(s) = raw.pointer("/linux/seccomp") { seccomp::check_json(s)? }`.
pub fn check_json(v: &Value) -> Result<(), SeccompError> {
    fn one<T: DeserializeOwned>(v: &Value, err: fn(String) -> SeccompError) -> Result<(), SeccompError> {
        match serde_json::from_value::<T>(v.clone()) {
            Ok(_) => Ok(()),
            Err(_) => Err(err(match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })),
        }
    }
    fn list(v: &Value, key: &str) -> Result<Vec<Value>, SeccompError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(SeccompError::Invalid(format!("{key} must be an array"))),
        }
    }
    if !v.is_object() {
        return Err(SeccompError::Invalid("linux.seccomp must be an object".into()));
    }
    match v.get("defaultAction") {
        None => return Err(SeccompError::Invalid("defaultAction is missing".into())),
        Some(a) => one::<LinuxSeccompAction>(a, SeccompError::UnknownAction)?,
    }
    for a in list(v, "architectures")? {
        one::<Arch>(&a, SeccompError::UnknownArch)?;
    }
    for f in list(v, "flags")? {
        one::<LinuxSeccompFilterFlag>(&f, SeccompError::UnknownFlag)?;
    }
    for (i, rule) in list(v, "syscalls")?.iter().enumerate() {
        match rule.get("action") {
            None => return Err(SeccompError::Invalid(format!("syscalls[{i}].action is missing"))),
            Some(a) => one::<LinuxSeccompAction>(a, SeccompError::UnknownAction)?,
        }
        for (j, arg) in list(rule, "args")?.iter().enumerate() {
            match arg.get("op") {
                None => return Err(SeccompError::Invalid(format!("syscalls[{i}].args[{j}].op is missing"))),
                Some(op) => one::<LinuxSeccompOperator>(op, SeccompError::UnknownOp)?,
            }
        }
    }
    // Anything else (types, missing names...) is reported as oci-spec's own error.
    serde_json::from_value::<LinuxSeccomp>(v.clone()).map(|_| ()).map_err(|e| SeccompError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests;
