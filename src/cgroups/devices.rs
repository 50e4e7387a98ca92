//! Device access rules: v1 devices.allow/deny, v2 an eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup with raw bpf(2) calls.
//!
//! Rules are evaluated like the v1 kernel does: a rule of type 'a' with wildcard numbers and
//! full access resets everything (deny-all or allow-all); later rules are exceptions, and the
//! last matching rule wins. An allow rule matches a request whose access is a subset of the
//! rule's; a deny rule matches a request that asks for any of the rule's accesses.

use super::util;
use super::CgroupError;
use nix::errno::Errno;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevKind {
    All,
    Block,
    Char,
}

/// One device rule: `major`/`minor` `None` are wildcards, `access` is a mask of m=1 r=2 w=4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DevKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

const fn allow_c(major: Option<u32>, minor: Option<u32>, access: u8) -> DeviceRule {
    DeviceRule { allow: true, kind: DevKind::Char, major, minor, access }
}

/// The rules runc appends to every container's list (so they cannot be overridden): mknod of
/// any device, /dev/null, random, full, tty, zero, urandom, pts/*, ptmx and net/tun.
pub const DEFAULT_ALLOWED_DEVICES: &[DeviceRule] = &[
    allow_c(None, None, ACC_MKNOD),
    DeviceRule { allow: true, kind: DevKind::Block, major: None, minor: None, access: ACC_MKNOD },
    allow_c(Some(1), Some(3), ACC_ALL),
    allow_c(Some(1), Some(8), ACC_ALL),
    allow_c(Some(1), Some(7), ACC_ALL),
    allow_c(Some(5), Some(0), ACC_ALL),
    allow_c(Some(1), Some(5), ACC_ALL),
    allow_c(Some(1), Some(9), ACC_ALL),
    allow_c(Some(136), None, ACC_ALL),
    allow_c(Some(5), Some(2), ACC_ALL),
    allow_c(Some(10), Some(200), ACC_ALL),
];

impl DeviceRule {
    /// The v1 devices.allow/deny line, e.g. "c 1:3 rwm" (kind All gives "a").
    pub fn v1_line(&self, kind: char) -> String {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let mut acc = String::with_capacity(3);
        if self.access & ACC_READ != 0 {
            acc.push('r');
        }
        if self.access & ACC_WRITE != 0 {
            acc.push('w');
        }
        if self.access & ACC_MKNOD != 0 {
            acc.push('m');
        }
        format!("{kind} {}:{} {acc}", num(self.major), num(self.minor))
    }

    fn is_reset(&self) -> bool {
        self.kind == DevKind::All && self.major.is_none() && self.minor.is_none() && self.access == ACC_ALL
    }
}

/// The compiled rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleSet {
    /// A reset rule was present: the state does not depend on the cgroup's current rules.
    pub reset: bool,
    /// What an unmatched access gets.
    pub default_allow: bool,
    /// Exceptions after the last reset, in spec order.
    pub rules: Vec<DeviceRule>,
}

impl RuleSet {
    /// Nothing to do on a fresh cgroup (which allows everything).
    pub fn allows_everything(&self) -> bool {
        self.default_allow && self.rules.iter().all(|r| r.allow)
    }
}

fn parse_rule(d: &LinuxDeviceCgroup) -> Result<DeviceRule, CgroupError> {
    let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => DevKind::All,
        LinuxDeviceType::B => DevKind::Block,
        LinuxDeviceType::C => DevKind::Char,
        t => return Err(CgroupError::Invalid(format!("invalid cgroup device rule type {:?}", t.as_str()))),
    };
    let num = |n: Option<i64>, what: &str| -> Result<Option<u32>, CgroupError> {
        match n {
            None => Ok(None),
            Some(n) if n < 0 => Ok(None),
            Some(n) => {
                u32::try_from(n).map(Some).map_err(|_| CgroupError::Invalid(format!("invalid device {what} {n}")))
            }
        }
    };
    let mut access = 0;
    let a = d.access().as_deref().unwrap_or("");
    // Other letters are ignored, as runc does (its own tests use "rwa"); a string with none
    // of r, w, m is refused.
    for c in a.chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        };
    }
    if access == 0 && !a.is_empty() {
        return Err(CgroupError::Invalid(format!("invalid device access {a:?}")));
    }
    if access == 0 {
        access = ACC_ALL; // the spec's default
    }
    Ok(DeviceRule { allow: d.allow(), kind, major: num(d.major(), "major")?, minor: num(d.minor(), "minor")?, access })
}

/// The spec's rules followed by [`DEFAULT_ALLOWED_DEVICES`].
pub(crate) fn compile(spec: &[LinuxDeviceCgroup]) -> Result<RuleSet, CgroupError> {
    let mut set = RuleSet { reset: false, default_allow: true, rules: Vec::new() };
    let parsed = spec.iter().map(parse_rule).collect::<Result<Vec<_>, _>>()?;
    for r in parsed.iter().chain(DEFAULT_ALLOWED_DEVICES.iter()) {
        if r.is_reset() {
            set.reset = true;
            set.default_allow = r.allow;
            set.rules.clear();
        } else {
            set.rules.push(*r);
        }
    }
    Ok(set)
}

// ---------------------------------------------------------------------------------------------
// v1

/// The kernel's v1 state of a devices cgroup, as devices.list shows it: a default and a set of
/// exceptions (kind 'b' or 'c', major, minor: `None` is `*`) with their access masks. The
/// kernel merges an exception with an existing one of the same device by or-ing the accesses,
/// and an exception of the default's side takes accesses away from it; this does the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1State {
    pub default_allow: bool,
    pub exceptions: std::collections::BTreeMap<(char, Option<u32>, Option<u32>), u8>,
}

impl V1State {
    /// Parse devices.list: "a *:* rwm" is allow-all (whose deny exceptions the kernel does not
    /// list); otherwise the default is deny and every line is an allowed device.
    pub fn from_list(list: &str) -> V1State {
        let mut st = V1State { default_allow: false, exceptions: Default::default() };
        for line in list.lines() {
            let mut f = line.split_whitespace();
            let (Some(kind), Some(nums), Some(acc)) = (f.next(), f.next(), f.next()) else { continue };
            let Some((maj, min)) = nums.split_once(':') else { continue };
            let num = |n: &str| n.parse::<u32>().ok();
            let access = acc.chars().fold(0, |a, c| {
                a | match c {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    _ => 0,
                }
            });
            match kind {
                "a" => {
                    st.default_allow = true;
                    st.exceptions.clear();
                }
                "b" | "c" => {
                    let k = if kind == "b" { 'b' } else { 'c' };
                    *st.exceptions.entry((k, num(maj), num(min))).or_insert(0) |= access;
                }
                _ => {}
            }
        }
        st
    }

    /// Is this allow-all by default (devices.list cannot tell its deny exceptions)?
    pub fn is_blacklist(&self) -> bool {
        self.default_allow
    }

    fn apply_one(&mut self, allow: bool, kind: char, r: &DeviceRule) {
        let key = (kind, r.major, r.minor);
        if allow == self.default_allow {
            if let Some(acc) = self.exceptions.get_mut(&key) {
                *acc &= !r.access;
                if *acc == 0 {
                    self.exceptions.remove(&key);
                }
            }
        } else {
            *self.exceptions.entry(key).or_insert(0) |= r.access;
        }
    }

    /// The state after writing `set` onto this one.
    pub fn after(&self, set: &RuleSet) -> V1State {
        let mut st = if set.reset {
            V1State { default_allow: set.default_allow, exceptions: Default::default() }
        } else {
            self.clone()
        };
        for r in &set.rules {
            match r.kind {
                DevKind::Block => st.apply_one(r.allow, 'b', r),
                DevKind::Char => st.apply_one(r.allow, 'c', r),
                DevKind::All => {
                    st.apply_one(r.allow, 'b', r);
                    st.apply_one(r.allow, 'c', r);
                }
            }
        }
        st
    }

    /// The writes (allow?, devices.allow/deny line) that take the cgroup from this state to
    /// `target` with no moment in between where a device both states allow is denied (or one
    /// both deny is allowed), as runc's devices emulator does: a reset ("a") only when the
    /// default changes or this state is allow-all (whose deny exceptions are unknown), then
    /// the accesses to take away, then the ones to add.
    pub fn transition(&self, target: &V1State) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        let empty = Default::default();
        let old = if self.is_blacklist() || self.default_allow != target.default_allow {
            out.push((target.default_allow, "a".to_string()));
            &empty
        } else {
            &self.exceptions
        };
        let line = |&(kind, major, minor): &(char, Option<u32>, Option<u32>), access: u8| {
            DeviceRule { allow: true, kind: DevKind::All, major, minor, access }.v1_line(kind)
        };
        for (key, &acc) in old.iter() {
            let dropped = acc & !target.exceptions.get(key).copied().unwrap_or(0);
            if dropped != 0 {
                out.push((target.default_allow, line(key, dropped)));
            }
        }
        for (key, &acc) in &target.exceptions {
            let gained = acc & !old.get(key).copied().unwrap_or(0);
            if gained != 0 {
                out.push((!target.default_allow, line(key, gained)));
            }
        }
        out
    }
}

pub(crate) fn apply_v1(dir: &Path, set: &RuleSet, fresh: bool) -> Result<(), CgroupError> {
    if fresh && !set.reset && set.rules.iter().all(|r| r.allow) {
        return Ok(()); // allow rules on an allow-all cgroup change nothing
    }
    let mut allow: Option<util::Writer> = None;
    let mut deny: Option<util::Writer> = None;
    let mut put = |is_allow: bool, line: &str| -> Result<(), CgroupError> {
        let (slot, file) = if is_allow { (&mut allow, "devices.allow") } else { (&mut deny, "devices.deny") };
        if slot.is_none() {
            *slot = Some(util::Writer::open(dir, file, line)?);
        }
        match slot {
            Some(w) => w.write(line),
            None => Ok(()),
        }
    };
    if set.reset {
        // An existing cgroup with the same default: go from its rules to the target ones
        // without passing through deny-all (or allow-all), so a running container keeps every
        // device both rule sets allow. A new cgroup (it allows everything) or a change of the
        // default needs the reset; the rules then follow in the order the config lists them,
        // as the runtime spec asks.
        let current = if fresh { None } else { Some(V1State::from_list(&util::read(dir, "devices.list")?)) };
        match current {
            Some(cur) if !cur.is_blacklist() && cur.default_allow == set.default_allow => {
                for (allow, line) in cur.transition(&cur.after(set)) {
                    put(allow, &line)?;
                }
                return Ok(());
            }
            _ => put(set.default_allow, "a")?,
        }
    }
    for r in &set.rules {
        if fresh && !set.reset && r.allow {
            continue;
        }
        match r.kind {
            DevKind::Block => put(r.allow, &r.v1_line('b'))?,
            DevKind::Char => put(r.allow, &r.v1_line('c'))?,
            // "a" would reset the whole list in v1: spell it as both kinds.
            DevKind::All => {
                put(r.allow, &r.v1_line('b'))?;
                put(r.allow, &r.v1_line('c'))?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// v2: eBPF program

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;

/// Build the program. Context (struct bpf_cgroup_dev_ctx) in r1: u32 access_type
/// (type in the low 16 bits, access in the high), u32 major, u32 minor. Returns 1 to allow.
pub(crate) fn program(set: &RuleSet) -> Vec<Insn> {
    let mut p = vec![
        ins(LDX_W, 2, 1, 0, 0),
        ins(AND32_K, 2, 0, 0, 0xffff), // r2 = device type
        ins(LDX_W, 3, 1, 0, 0),
        ins(RSH32_K, 3, 0, 0, 16), // r3 = requested access
        ins(LDX_W, 4, 1, 4, 0),    // r4 = major
        ins(LDX_W, 5, 1, 8, 0),    // r5 = minor
    ];
    // Last matching rule wins: test them from the last to the first.
    // Leading exceptions equal to the default change nothing.
    let skip = set.rules.iter().take_while(|r| r.allow == set.default_allow).count();
    for r in set.rules[skip..].iter().rev() {
        // Each conditional jump has a placeholder offset of -1 meaning "to the next block".
        let mut b: Vec<Insn> = Vec::with_capacity(8);
        match r.kind {
            DevKind::Block => b.push(ins(JNE_K, 2, 0, -1, DEVCG_DEV_BLOCK)),
            DevKind::Char => b.push(ins(JNE_K, 2, 0, -1, DEVCG_DEV_CHAR)),
            DevKind::All => {}
        }
        if r.access != ACC_ALL {
            b.push(ins(MOV32_X, 1, 3, 0, 0));
            if r.allow {
                // allow only if the request asks for nothing outside the rule
                b.push(ins(AND32_K, 1, 0, 0, i32::from(!r.access & ACC_ALL)));
                b.push(ins(JNE_K, 1, 0, -1, 0));
            } else {
                // deny if the request asks for any of the rule's accesses
                b.push(ins(AND32_K, 1, 0, 0, i32::from(r.access)));
                b.push(ins(JEQ_K, 1, 0, -1, 0));
            }
        }
        if let Some(m) = r.major {
            b.push(ins(JNE_K, 4, 0, -1, m as i32));
        }
        if let Some(m) = r.minor {
            b.push(ins(JNE_K, 5, 0, -1, m as i32));
        }
        b.push(ins(MOV32_K, 0, 0, 0, i32::from(r.allow)));
        b.push(ins(EXIT, 0, 0, 0, 0));
        let len = b.len();
        for (i, insn) in b.iter_mut().enumerate() {
            if (insn.code == JNE_K || insn.code == JEQ_K) && insn.off == -1 {
                insn.off = (len - i - 1) as i16;
            }
        }
        p.extend(b);
    }
    p.push(ins(MOV32_K, 0, 0, 0, i32::from(set.default_allow)));
    p.push(ins(EXIT, 0, 0, 0, 0));
    p
}

/// Run the program on a request, as the kernel would (for tests).
#[cfg(test)]
pub(crate) fn interpret(p: &[Insn], kind: i32, access: u8, major: u32, minor: u32) -> u32 {
    let ctx = [(u32::from(access) << 16) | kind as u32, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = p[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        pc += 1;
        match i.code {
            LDX_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
            AND32_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
            RSH32_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
            MOV32_K => r[dst] = i.imm as u32 as u64,
            MOV32_X => r[dst] = r[src] as u32 as u64,
            JNE_K => {
                if r[dst] != i.imm as i64 as u64 {
                    pc = (pc as i64 + i64::from(i.off)) as usize
                }
            }
            JEQ_K => {
                if r[dst] == i.imm as i64 as u64 {
                    pc = (pc as i64 + i64::from(i.off)) as usize
                }
            }
            EXIT => return r[0] as u32,
            c => panic!("bad opcode {c:#x}"),
        }
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with a typed attribute block.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<libc::c_long, Errno> {
    loop {
        // SAFETY: `attr` points to a properly sized, initialised #[repr(C)] bpf_attr prefix
        // that lives for the whole call; the kernel reads (and for QUERY writes) only within
        // the size we pass.
        let r =
            unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T as *mut libc::c_void, std::mem::size_of::<T>()) };
        if r >= 0 {
            return Ok(r);
        }
        let e = Errno::last();
        if e != Errno::EINTR && !(e == Errno::EAGAIN && cmd == BPF_PROG_LOAD) {
            return Err(e);
        }
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn load(insns: &[Insn], path: &Path) -> Result<OwnedFd, CgroupError> {
    let license = b"Apache\0";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"berth_dev");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: 0,
    };
    let err = |errno, log: String| CgroupError::Bpf { op: "prog load", path: path.to_path_buf(), errno, log };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(owned(fd)),
        Err(Errno::EPERM) => {
            // Kernels before 5.11 charge programs to RLIMIT_MEMLOCK: raise it for this one
            // load only, so that the container does not inherit a changed limit.
            let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: plain getrlimit/setrlimit calls on valid rlimit structs.
            let got = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old) } == 0;
            let inf = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
            // SAFETY: as above.
            if got && unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) } == 0 {
                let r = bpf(BPF_PROG_LOAD, &mut attr);
                // SAFETY: as above.
                unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &old) };
                if let Ok(fd) = r {
                    return Ok(owned(fd));
                }
            }
        }
        Err(_) => {}
    }
    // Load again with the verifier log to explain the failure.
    let mut log = vec![0u8; 64 * 1024];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let n = log.iter().position(|&b| b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..n]).trim().to_string();
            Err(err(e, if text.is_empty() { String::new() } else { format!(": {text}") }))
        }
    }
}

/// Programs attached directly to the cgroup (not inherited ones).
fn attached(dir: &OwnedFd, path: &Path) -> Result<Vec<OwnedFd>, CgroupError> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        _pad: 0,
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|errno| CgroupError::Bpf {
        op: "prog query",
        path: path.to_path_buf(),
        errno,
        log: String::new(),
    })?;
    let n = (attr.prog_cnt as usize).min(ids.len());
    let mut out = Vec::with_capacity(n);
    for &id in &ids[..n] {
        let mut a = IdAttr { id, next_id: 0, open_flags: 0 };
        match bpf(BPF_PROG_GET_FD_BY_ID, &mut a) {
            Ok(fd) => out.push(owned(fd)),
            Err(Errno::ENOENT) => {} // detached meanwhile
            Err(errno) => {
                return Err(CgroupError::Bpf {
                    op: "prog get fd by id",
                    path: path.to_path_buf(),
                    errno,
                    log: String::new(),
                })
            }
        }
    }
    Ok(out)
}

fn attach_cmd(cmd: libc::c_long, dir: &OwnedFd, prog: &OwnedFd, flags: u32) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: 0,
    };
    bpf(cmd, &mut attr).map(|_| ())
}

/// Install the rule set on the v2 cgroup `dir`: attach the new program, then detach the
/// programs attached before (so there is no window without a filter).
pub(crate) fn apply_v2(dir: &Path, set: &RuleSet, fresh: bool) -> Result<(), CgroupError> {
    if fresh && set.allows_everything() {
        return Ok(());
    }
    let f = std::fs::OpenOptions::new().read(true).custom_flags_dir().open(dir).map_err(|e| CgroupError::Io {
        op: "open",
        path: dir.to_path_buf(),
        errno: util::errno_of(&e),
    })?;
    let dfd: OwnedFd = f.into();
    let old = if fresh { Vec::new() } else { attached(&dfd, dir)? };
    if !set.allows_everything() {
        let prog = load(&program(set), dir)?;
        attach_cmd(BPF_PROG_ATTACH, &dfd, &prog, BPF_F_ALLOW_MULTI).map_err(|errno| CgroupError::Bpf {
            op: "prog attach",
            path: dir.to_path_buf(),
            errno,
            log: String::new(),
        })?;
    }
    for o in &old {
        attach_cmd(BPF_PROG_DETACH, &dfd, o, 0).map_err(|errno| CgroupError::Bpf {
            op: "prog detach",
            path: dir.to_path_buf(),
            errno,
            log: String::new(),
        })?;
    }
    Ok(())
}

trait DirFlags {
    fn custom_flags_dir(&mut self) -> &mut Self;
}
impl DirFlags for std::fs::OpenOptions {
    fn custom_flags_dir(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_DIRECTORY | libc::O_CLOEXEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    const C: i32 = DEVCG_DEV_CHAR;
    const B: i32 = DEVCG_DEV_BLOCK;
    const R: u8 = ACC_READ;
    const W: u8 = ACC_WRITE;
    const M: u8 = ACC_MKNOD;

    #[test]
    fn compile_typical() {
        let s = compile(&spec(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":4,"minor":1,"access":"rw"}]"#,
        ))
        .unwrap();
        assert!(s.reset && !s.default_allow);
        assert_eq!(s.rules.len(), 1 + DEFAULT_ALLOWED_DEVICES.len());
        assert_eq!(s.rules[0].v1_line('c'), "c 4:1 rw");
        assert_eq!(DEFAULT_ALLOWED_DEVICES[8].v1_line('c'), "c 136:* rwm");
        let none = compile(&[]).unwrap();
        assert!(!none.reset && none.allows_everything());
        assert!(compile(&spec(r#"[{"allow":true,"type":"p"}]"#)).is_err());
        // runc's tests use "rwa": letters other than r, w, m are ignored; none of them is refused.
        let s = compile(&spec(r#"[{"allow":true,"type":"c","major":4,"minor":1,"access":"rwa"}]"#)).unwrap();
        assert_eq!(s.rules[0].v1_line('c'), "c 4:1 rw");
        assert!(compile(&spec(r#"[{"allow":true,"type":"c","access":"xa"}]"#)).is_err());
    }

    #[test]
    fn bpf_program_semantics() {
        let s = compile(&spec(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":4,"minor":1,"access":"r"},
                {"allow":true,"type":"b","major":8,"access":"rw"},
                {"allow":false,"type":"b","major":8,"minor":3,"access":"w"}]"#,
        ))
        .unwrap();
        let p = program(&s);
        let run = |k, a, ma, mi| interpret(&p, k, a, ma, mi);
        assert_eq!(run(C, R | W, 1, 3), 1); // /dev/null (default list)
        assert_eq!(run(C, R, 1, 11), 0); // /dev/kmsg: denied
        assert_eq!(run(C, M, 250, 0), 1); // mknod of any char device
        assert_eq!(run(B, M, 7, 0), 1);
        assert_eq!(run(C, R, 4, 1), 1);
        assert_eq!(run(C, R | W, 4, 1), 0); // w not granted
        assert_eq!(run(C, R, 136, 7), 1); // pts
        assert_eq!(run(B, R | W, 8, 0), 1);
        assert_eq!(run(B, R, 8, 3), 1);
        assert_eq!(run(B, W, 8, 3), 0); // later deny wins
        assert_eq!(run(B, R | W, 8, 3), 0);
        assert_eq!(run(B, R, 9, 0), 0);
    }

    #[test]
    fn bpf_blacklist() {
        let s = compile(&spec(
            r#"[{"allow":true,"access":"rwm"},{"allow":false,"type":"c","major":1,"minor":11,"access":"rwm"}]"#,
        ))
        .unwrap();
        assert!(s.default_allow && !s.allows_everything());
        let p = program(&s);
        assert_eq!(interpret(&p, C, R, 1, 11), 0);
        assert_eq!(interpret(&p, C, R, 1, 12), 1);
        assert_eq!(interpret(&p, B, R | W, 8, 0), 1);
        // No reset at all: allow-all base.
        let s = compile(&spec(r#"[{"allow":false,"type":"c","major":1,"minor":11}]"#)).unwrap();
        let p = program(&s);
        assert_eq!(interpret(&p, C, W, 1, 11), 0);
        assert_eq!(interpret(&p, C, W, 1, 12), 1);
    }

    fn lines(t: &[(bool, String)]) -> Vec<String> {
        t.iter().map(|(a, l)| format!("{} {l}", if *a { "allow" } else { "deny" })).collect()
    }

    #[test]
    fn v1_transition_has_no_window() {
        let a = compile(&spec(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":7,"minor":0,"access":"rw"}]"#,
        ))
        .unwrap();
        let b = compile(&spec(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":7,"minor":1,"access":"r"},
                {"allow":true,"type":"c","major":7,"minor":0,"access":"r"}]"#,
        ))
        .unwrap();
        // A fresh cgroup (allow-all): one reset, then the allowed devices.
        let fresh = V1State::from_list("a *:* rwm\n");
        assert!(fresh.is_blacklist());
        let t = fresh.transition(&fresh.after(&a));
        assert_eq!(t[0], (false, "a".to_string()));
        assert!(t[1..].iter().all(|(allow, _)| *allow), "{t:?}");
        assert!(lines(&t).contains(&"allow c 7:0 rw".to_string()), "{t:?}");
        assert!(lines(&t).contains(&"allow c 1:3 rwm".to_string()), "{t:?}");

        // Rules A in place (as devices.list shows them) going to B: no reset, only the
        // difference: write taken from 7:0, 7:1 added, the defaults untouched.
        let list = "c 7:0 rw\nc *:* m\nb *:* m\nc 1:3 rwm\nc 1:8 rwm\nc 1:7 rwm\nc 5:0 rwm\nc 1:5 rwm\n\
                    c 1:9 rwm\nc 136:* rwm\nc 5:2 rwm\nc 10:200 rwm\n";
        let cur = V1State::from_list(list);
        assert_eq!(cur, fresh.after(&a), "devices.list parses to the state the rules give");
        let target = cur.after(&b);
        assert_eq!(lines(&cur.transition(&target)), ["deny c 7:0 w", "allow c 7:1 r"]);
        // And back.
        assert_eq!(lines(&target.transition(&cur.after(&a))), ["deny c 7:1 r", "allow c 7:0 w"]);
        // The same rules again: nothing to write.
        assert!(cur.transition(&cur.after(&a)).is_empty());

        // Going to allow-all with deny exceptions changes the default: a reset is needed.
        let deny =
            compile(&spec(r#"[{"allow":true,"access":"rwm"},{"allow":false,"type":"b","major":8,"access":"w"}]"#))
                .unwrap();
        let t = cur.transition(&cur.after(&deny));
        assert_eq!(lines(&t), ["allow a", "deny b 8:* w"]);
    }

    #[test]
    fn v1_lines_for_all_kind() {
        let r = DeviceRule { allow: false, kind: DevKind::All, major: Some(1), minor: None, access: R };
        assert_eq!(r.v1_line('b'), "b 1:* r");
    }
}
