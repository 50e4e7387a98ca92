//! The ENOSYS stub runc prepends to every filter whose default action refuses syscalls: a
//! syscall newer than every syscall the profile names (per architecture) returns ENOSYS instead
//! of the default action. A profile written before a syscall existed cannot name it, and C
//! libraries fall back to the older call only on ENOSYS (glibc and musl from clone3 to clone,
//! faccessat2 to faccessat, openat2 to openat...), never on EPERM.
//!
//! Like runc's (libcontainer/seccomp/patchbpf): the stub is skipped when the default action
//! allows (ALLOW, LOG, TRACE) or is already ERRNO(ENOSYS); the architectures are the profile's
//! plus the native one; every name of every rule counts, whatever its action; an architecture
//! with no named syscall gets no check; on x86_64 the x32 ABI (bit 30 of the number) has its
//! own maximum; on s390/s390x syscall 0 (the multiplexer for unknown numbers) gets ENOSYS too.
//! Syscalls of other architectures go to libseccomp's program unchanged.

use libseccomp::{ScmpArch, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// SECCOMP_RET_ERRNO | ENOSYS.
const RET_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
/// Offsets in struct seccomp_data.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// x32 syscalls are x86_64's with this bit set (__X32_SYSCALL_BIT).
const X32_BIT: u32 = 0x4000_0000;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// The kernel's AUDIT_ARCH_* value a syscall of `a` carries in seccomp_data.arch (x32 is
/// x86_64's). None for architectures runc has no stub for either.
fn audit_arch(a: ScmpArch) -> Option<u32> {
    Some(match a {
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::X8664 | ScmpArch::X32 => AUDIT_ARCH_X86_64,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Aarch64 => 0xC000_00B7,
        ScmpArch::Mips => 0x0000_0008,
        ScmpArch::Mips64 => 0x8000_0008,
        ScmpArch::Mips64N32 => 0xA000_0008,
        ScmpArch::Mipsel => 0x4000_0008,
        ScmpArch::Mipsel64 => 0xC000_0008,
        ScmpArch::Mipsel64N32 => 0xE000_0008,
        ScmpArch::Ppc => 0x0000_0014,
        ScmpArch::Ppc64 => 0x8000_0015,
        ScmpArch::Ppc64Le => 0xC000_0015,
        ScmpArch::S390 => 0x0000_0016,
        ScmpArch::S390X => 0x8000_0016,
        ScmpArch::Riscv64 => 0xC000_00F3,
        ScmpArch::Loongarch64 => 0xC000_0102,
        _ => return None,
    })
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// True when the profile's default action refuses syscalls with something other than ENOSYS.
fn wanted(s: &LinuxSeccomp) -> bool {
    match s.default_action() {
        LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog | LinuxSeccompAction::ScmpActTrace => false,
        LinuxSeccompAction::ScmpActErrno => s.default_errno_ret() != Some(libc::ENOSYS as u32),
        _ => true,
    }
}

/// The largest syscall number the profile names on `arch`, None when it names none there.
fn largest(s: &LinuxSeccomp, arch: ScmpArch) -> Option<u32> {
    let mut max: Option<u32> = None;
    for rule in s.syscalls().iter().flatten() {
        for name in rule.names() {
            let Ok(sys) = ScmpSyscall::from_name_by_arch(name, arch) else { continue };
            // Negative numbers are libseccomp's pseudo-syscalls (absent on this arch).
            if let Ok(nr) = u32::try_from(i32::from(sys)) {
                max = Some(max.map_or(nr, |m| m.max(nr)));
            }
        }
    }
    max
}

/// The stub to put before libseccomp's program (empty when none applies). It ends by falling
/// through to the first instruction after it.
pub(super) fn stub(s: &LinuxSeccomp, native: ScmpArch) -> Vec<libc::sock_filter> {
    if !wanted(s) {
        return Vec::new();
    }
    let mut arches: Vec<ScmpArch> = Vec::new();
    for a in s.architectures().iter().flatten().map(|&a| super::scmp_arch(a)).chain([native]) {
        let a = if a == ScmpArch::Native { native } else { a };
        if !arches.contains(&a) {
            arches.push(a);
        }
    }
    // Per audit arch: (max of the plain ABI, max of x32) on x86_64, (max, None) elsewhere.
    let mut per: Vec<(u32, ScmpArch, Option<u32>, Option<u32>)> = Vec::new();
    for a in arches {
        let (Some(audit), Some(max)) = (audit_arch(a), largest(s, a)) else { continue };
        let slot = match per.iter_mut().find(|p| p.0 == audit) {
            Some(p) => p,
            None => {
                per.push((audit, a, None, None));
                let last = per.len() - 1;
                &mut per[last]
            }
        };
        if a == ScmpArch::X32 {
            slot.3 = Some(max);
        } else {
            slot.1 = a;
            slot.2 = Some(max);
        }
    }
    if per.is_empty() {
        return Vec::new();
    }

    // One section per audit arch; each ends in "ret ENOSYS; ja <filter>" and is entered from
    // a jeq on the arch. Sections are built first, then the dispatch in front of them.
    let mut sections: Vec<(u32, Vec<libc::sock_filter>)> = Vec::new();
    for &(audit, arch, plain, x32) in &per {
        let mut sec = vec![stmt(BPF_LD_W_ABS, OFF_NR)];
        if matches!(arch, ScmpArch::S390 | ScmpArch::S390X) {
            // nr 0 (setup) is what an unknown "large" syscall number arrives as.
            sec.push(jump(BPF_JEQ_K, 0, 0, 1));
            sec.push(stmt(BPF_RET_K, RET_ENOSYS));
        }
        // The checks end at "ret ENOSYS" (distance r from the check) and "ja filter" (r + 1).
        match (audit == AUDIT_ARCH_X86_64, plain, x32) {
            (true, Some(p), Some(x)) => {
                sec.push(jump(BPF_JSET_K, X32_BIT, 1, 0));
                sec.push(jump(BPF_JGT_K, p, 1, 2));
                sec.push(jump(BPF_JGT_K, x, 0, 1));
            }
            (true, Some(p), None) => {
                // x32 calls are not checked: straight to the filter.
                sec.push(jump(BPF_JSET_K, X32_BIT, 2, 0));
                sec.push(jump(BPF_JGT_K, p, 0, 1));
            }
            (true, None, Some(x)) => {
                sec.push(jump(BPF_JSET_K, X32_BIT, 0, 2));
                sec.push(jump(BPF_JGT_K, x, 0, 1));
            }
            (_, Some(p), _) => sec.push(jump(BPF_JGT_K, p, 0, 1)),
            _ => continue,
        }
        sec.push(stmt(BPF_RET_K, RET_ENOSYS));
        sec.push(stmt(BPF_JA, 0)); // patched below
        sections.push((audit, sec));
    }
    let dispatch_len = 1 + sections.len() + 1; // ld arch, one jeq per section, ja filter
    let total = dispatch_len + sections.iter().map(|s| s.1.len()).sum::<usize>();
    let mut prog = Vec::with_capacity(total);
    prog.push(stmt(BPF_LD_W_ABS, OFF_ARCH));
    let mut start = dispatch_len;
    for (i, (audit, sec)) in sections.iter().enumerate() {
        // From jeq i (at index 1 + i) to the section start; sections are a few instructions
        // for at most a few architectures, so this is far below a jump's 255 limit.
        let skip = start - (1 + i) - 1;
        prog.push(jump(BPF_JEQ_K, *audit, u8::try_from(skip).unwrap_or(u8::MAX), 0));
        start += sec.len();
    }
    prog.push(stmt(BPF_JA, (total - dispatch_len) as u32));
    for (_, mut sec) in sections {
        let at = prog.len() + sec.len() - 1;
        if let Some(ja) = sec.last_mut() {
            ja.k = (total - at - 1) as u32;
        }
        prog.extend(sec);
    }
    prog
}
