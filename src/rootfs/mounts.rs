//! The mounts of the spec (before pivot), and the read-only / masking steps (after pivot).

use super::options::{self, MountOptions, ATIME_FLAGS, LOCKED_FLAGS};
use super::resolve::{self, Create};
use super::sys::{self, FdPath};
use super::{cstring, Prep, RootfsError};
use crate::cgroups::MountInfo;
use nix::errno::Errno;
use oci_spec::runtime::{Mount, Spec};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bind,
    Proc,
    Sysfs,
    Tmpfs,
    Cgroup,
    Other,
}

/// Flags a fresh mount of a filesystem can take (everything but the bind / remount / move /
/// propagation ones).
const FS_FLAGS_MASK: libc::c_ulong = !(libc::MS_BIND
    | libc::MS_REC
    | libc::MS_MOVE
    | libc::MS_SHARED
    | libc::MS_PRIVATE
    | libc::MS_SLAVE
    | libc::MS_UNBINDABLE);

const CGROUP_DEFAULT_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// Files under /proc that may be covered (the ones lxcfs emulates).
const PROC_ALLOWED: [&[u8]; 10] = [
    b"proc/cpuinfo",
    b"proc/diskstats",
    b"proc/meminfo",
    b"proc/stat",
    b"proc/swaps",
    b"proc/uptime",
    b"proc/loadavg",
    b"proc/slabinfo",
    b"proc/sys/kernel/ns_last_pid",
    b"proc/sys/crypto/fips_enabled",
];

/// Mount one entry of spec.mounts. Returns true when it is a bind mount onto /dev.
pub(crate) fn mount_one(p: &Prep, m: &Mount, src_fd: Option<RawFd>) -> Result<bool, RootfsError> {
    let opts = options::parse(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = resolve::clean(m.destination().as_os_str().as_bytes()).ok_or_else(|| {
        RootfsError::Other(format!("mount destination {} contains a NUL byte", m.destination().display()))
    })?;
    if dest.to_bytes().is_empty() {
        return Err(RootfsError::Other(format!(
            "mount of {} onto the container's / ({}) is not supported",
            typ,
            m.destination().display()
        )));
    }
    if opts.idmap || m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(RootfsError::Other(format!("idmapped mount on {} is not supported", p.host(&dest))));
    }
    let mut flags = opts.flags;
    match typ {
        "bind" if flags & libc::MS_BIND == 0 => flags |= libc::MS_BIND,
        "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
        _ => {}
    }
    let kind = if flags & libc::MS_BIND != 0 {
        Kind::Bind
    } else {
        match typ {
            "proc" => Kind::Proc,
            "sysfs" => Kind::Sysfs,
            "tmpfs" => Kind::Tmpfs,
            "cgroup" => Kind::Cgroup,
            _ => Kind::Other,
        }
    };
    let source = match m.source() {
        Some(s) => Some(cstring(s.as_os_str().as_bytes(), "mount source")?),
        None => None,
    };
    match kind {
        Kind::Bind => {
            let src =
                source.ok_or_else(|| RootfsError::Other(format!("bind mount on {} has no source", p.host(&dest))))?;
            mount_bind(p, &dest, &src, src_fd, flags, &opts)?;
            Ok(dest.to_bytes() == b"dev")
        }
        Kind::Cgroup => {
            mount_cgroup(p, &dest, flags, &opts)?;
            Ok(false)
        }
        _ => {
            let fstype = cstring(typ.as_bytes(), "mount type")?;
            let src = match source {
                Some(s) => s,
                None => fstype.clone(),
            };
            mount_fs(p, &dest, &src, &fstype, kind, flags, &opts)?;
            Ok(false)
        }
    }
}

/// Open the destination, creating it (directory) when missing. proc and sysfs refuse any
/// symlink on the way. Returns the descriptor and whether it existed.
fn open_dest(p: &Prep, dest: &CStr, kind: Kind, create: Create) -> Result<(OwnedFd, bool), RootfsError> {
    let strict = matches!(kind, Kind::Proc | Kind::Sysfs);
    if crate::faults::weakened("mount-dest-in-root") {
        // A path lookup from the host's root: symlinks in the rootfs may lead out of it.
        if let Ok(Ok(fd)) = CString::new(p.host(dest)).map(|c| sys::open_path(&c, libc::O_PATH)) {
            return Ok((fd, true));
        }
    }
    let r = match resolve::open(p.root.as_raw_fd(), dest, strict) {
        Ok(fd) => Ok((fd, true)),
        Err(Errno::ENOENT) => resolve::create(p.root.as_raw_fd(), dest, strict, create).map(|fd| (fd, false)),
        Err(e) => Err(e),
    };
    let r = r.and_then(|(fd, existed)| {
        if strict && existed && sys::fstat(fd.as_raw_fd())?.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        Ok((fd, existed))
    });
    r.map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR if strict => RootfsError::Other(format!(
            "{} must be mounted on a real directory inside the rootfs: {} is or goes through a symlink or a non-directory",
            if kind == Kind::Proc { "proc" } else { "sysfs" },
            p.host(dest)
        )),
        Errno::ENOENT | Errno::EACCES | Errno::EPERM if in_procfs(p, dest) => inside_proc(p, dest),
        e => RootfsError::sys(e, format!("open mount point {}", p.host(dest))),
    })
}

/// A mount point that could not be created. Inside a mounted procfs nothing can be created:
/// say so the way runc does (a missing file would read as "command not found" to engines
/// that map ENOENT messages to exit status 127).
fn create_failed(p: &Prep, dest: &CStr, e: Errno) -> RootfsError {
    if matches!(e, Errno::ENOENT | Errno::EACCES | Errno::EPERM) && in_procfs(p, dest) {
        return inside_proc(p, dest);
    }
    RootfsError::sys(e, format!("create mount point {}", p.host(dest)))
}

fn inside_proc(p: &Prep, dest: &CStr) -> RootfsError {
    RootfsError::Other(format!("{:?} cannot be mounted because it is inside /proc", p.host(dest)))
}

/// Whether the deepest existing ancestor of `dest` (relative to the rootfs) is on a procfs.
fn in_procfs(p: &Prep, dest: &CStr) -> bool {
    let mut d = dest.to_bytes();
    while let Some(i) = d.iter().rposition(|&b| b == b'/') {
        d = &d[..i];
        let Ok(c) = CString::new(d) else { return false };
        if let Ok(fd) = resolve::open(p.root.as_raw_fd(), &c, false) {
            return sys::fstatfs(fd.as_raw_fd()).is_ok_and(|st| st.f_type == libc::PROC_SUPER_MAGIC);
        }
    }
    false
}

/// Re-open the destination after something was mounted on it: the new descriptor is on the
/// new mount (the old one still points at the covered directory).
fn reopen(p: &Prep, dest: &CStr, kind: Kind) -> Result<OwnedFd, RootfsError> {
    let strict = matches!(kind, Kind::Proc | Kind::Sysfs);
    resolve::open(p.root.as_raw_fd(), dest, strict)
        .map_err(|e| RootfsError::sys(e, format!("re-open mount point {}", p.host(dest))))
}

/// runc's rules for /proc: only procfs goes onto /proc itself, and nothing goes inside a
/// mounted procfs except the few files lxcfs emulates. Checked on the resolved target.
fn check_proc(p: &Prep, dest: &CStr, kind: Kind, target: &OwnedFd, src: Option<&CStr>) -> Result<(), RootfsError> {
    if crate::faults::weakened("proc-mount-check") {
        return Ok(());
    }
    let d = dest.to_bytes();
    if d == b"proc" {
        let ok = match (kind, src) {
            (Kind::Proc, _) => true,
            (Kind::Bind, Some(s)) => sys::open_path(s, libc::O_PATH)
                .and_then(|fd| sys::fstatfs(fd.as_raw_fd()))
                .is_ok_and(|st| st.f_type == libc::PROC_SUPER_MAGIC),
            _ => false,
        };
        if !ok {
            return Err(RootfsError::Other(format!(
                "{:?} cannot be mounted because it is not of type proc",
                p.host(dest)
            )));
        }
        return Ok(());
    }
    let st = sys::fstatfs(target.as_raw_fd()).map_err(|e| RootfsError::sys(e, format!("statfs {}", p.host(dest))))?;
    if st.f_type == libc::PROC_SUPER_MAGIC && !PROC_ALLOWED.contains(&d) {
        return Err(RootfsError::Other(format!("{:?} cannot be mounted because it is inside /proc", p.host(dest))));
    }
    Ok(())
}

/// Propagation changes and recursive attributes on a freshly mounted `fd`.
fn post_ops(p: &Prep, dest: &CStr, fd: RawFd, opts: &MountOptions) -> Result<(), RootfsError> {
    let target = FdPath::raw(fd);
    for &prop in &opts.propagation {
        sys::mount(None, target.as_cstr(), None, prop, None)
            .map_err(|e| RootfsError::sys(e, format!("set propagation {prop:#x} on {}", p.host(dest))))?;
    }
    if opts.rec_set != 0 || opts.rec_clr != 0 {
        sys::mount_setattr(fd, true, opts.rec_set, opts.rec_clr)
            .map_err(|e| RootfsError::sys(e, format!("mount_setattr {}", p.host(dest))))?;
    }
    Ok(())
}

fn needs_post(opts: &MountOptions) -> bool {
    !opts.propagation.is_empty() || opts.rec_set != 0 || opts.rec_clr != 0
}

/// MS_BIND|MS_REMOUNT with `flags` on the mount `fd`. As runc: first exactly the asked flags;
/// if the kernel refuses (flags locked in a user namespace), again with the mount's current
/// lockable flags kept, unless the caller explicitly cleared one of them.
fn bind_remount(
    fd: RawFd,
    flags: libc::c_ulong,
    cleared: libc::c_ulong,
    what: &dyn Fn() -> String,
) -> Result<(), RootfsError> {
    let target = FdPath::raw(fd);
    let f = (flags & !libc::MS_REC) | libc::MS_BIND | libc::MS_REMOUNT;
    let first = match sys::mount(None, target.as_cstr(), None, f, None) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let cur = sys::fstatvfs_flags(fd).map_err(|e| RootfsError::sys(e, format!("statvfs {}", what())))?;
    let cur = options::statfs_to_ms(cur);
    if cur & cleared & LOCKED_FLAGS != 0 {
        return Err(RootfsError::sys(
            first,
            format!("remount {}: cannot clear locked flags {:#x}", what(), cur & cleared & LOCKED_FLAGS),
        ));
    }
    if f & ATIME_FLAGS != 0 && f & ATIME_FLAGS != cur & ATIME_FLAGS {
        return Err(RootfsError::sys(
            first,
            format!("remount {}: cannot change locked atime flags {:#x}", what(), cur & ATIME_FLAGS),
        ));
    }
    sys::mount(None, target.as_cstr(), None, f | (cur & LOCKED_FLAGS), None)
        .map_err(|e| RootfsError::sys(e, format!("remount {} with flags {:#x}", what(), f | (cur & LOCKED_FLAGS))))
}

fn mount_bind(
    p: &Prep,
    dest: &CStr,
    src: &CStr,
    src_fd: Option<RawFd>,
    flags: libc::c_ulong,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    let target = match resolve::open(p.root.as_raw_fd(), dest, false) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            // The mount point follows the source: a directory, or an empty file.
            let st = match (sys::stat(src), src_fd) {
                (Err(Errno::EACCES), Some(fd)) => sys::fstat(fd),
                (r, _) => r,
            }
            .map_err(|e| RootfsError::sys(e, format!("bind mount source {}", src.to_string_lossy())))?;
            let create = if st.st_mode & libc::S_IFMT == libc::S_IFDIR { Create::Dir } else { Create::File };
            resolve::create(p.root.as_raw_fd(), dest, false, create).map_err(|e| create_failed(p, dest, e))?
        }
        Err(e) => return Err(RootfsError::sys(e, format!("open mount point {}", p.host(dest)))),
    };
    check_proc(p, dest, Kind::Bind, &target, Some(src))?;
    let what = || format!("{} on {}", src.to_string_lossy(), p.host(dest));
    // With "remount", this changes the flags of what is already mounted there.
    let first =
        if flags & libc::MS_REMOUNT != 0 { flags | libc::MS_BIND } else { flags & (libc::MS_BIND | libc::MS_REC) };
    let t = FdPath::new(&target);
    match (sys::mount(Some(src), t.as_cstr(), None, first, None), src_fd) {
        // Out of the mapped root's reach: attach the copy the runtime made.
        (Err(Errno::EACCES), Some(fd)) if flags & libc::MS_REMOUNT == 0 => sys::move_mount_to(fd, t.as_cstr()),
        (r, _) => r,
    }
    .map_err(|e| RootfsError::sys(e, format!("bind mount {}", what())))?;
    let remount = flags & libc::MS_REMOUNT == 0
        && (flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT) != 0 || opts.cleared != 0);
    if !remount && !needs_post(opts) {
        return Ok(());
    }
    let fd = reopen(p, dest, Kind::Bind)?;
    if remount {
        bind_remount(fd.as_raw_fd(), flags, opts.cleared, &what)?;
    }
    post_ops(p, dest, fd.as_raw_fd(), opts)
}

#[allow(clippy::too_many_arguments)]
fn mount_fs(
    p: &Prep,
    dest: &CStr,
    src: &CStr,
    fstype: &CStr,
    kind: Kind,
    flags: libc::c_ulong,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    let (target, existed) = open_dest(p, dest, kind, Create::Dir)?;
    if kind != Kind::Proc || dest.to_bytes() != b"proc" {
        check_proc(p, dest, kind, &target, None)?;
    }
    let mut mflags = flags & FS_FLAGS_MASK;
    // tmpfs and /dev stay writable until finalize: files are created in them first.
    if kind == Kind::Tmpfs || dest.to_bytes() == b"dev" {
        mflags &= !libc::MS_RDONLY;
    }
    let mut data = std::borrow::Cow::Borrowed(opts.data.as_str());
    if kind == Kind::Tmpfs && existed && !has_mode(&opts.data) {
        // Keep the mode of the directory the tmpfs covers.
        let st = sys::fstat(target.as_raw_fd()).map_err(|e| RootfsError::sys(e, format!("stat {}", p.host(dest))))?;
        let mode = format!("mode={:o}", st.st_mode & 0o7777);
        data = if opts.data.is_empty() { mode.into() } else { format!("{mode},{}", opts.data).into() };
    }
    if let Some(label) = p.ctx.mount_label.as_deref() {
        if matches!(kind, Kind::Tmpfs | Kind::Other) && fstype.to_bytes() != b"mqueue" {
            data = with_context(&data, label).into();
        }
    }
    let cdata = if data.is_empty() { None } else { Some(cstring(data.as_bytes(), "mount data")?) };
    let what = || format!("{} on {}", fstype.to_string_lossy(), p.host(dest));
    match sys::mount(Some(src), FdPath::new(&target).as_cstr(), Some(fstype), mflags, cdata.as_deref()) {
        Ok(()) => {}
        // sysfs cannot be mounted from a user namespace that does not own the network
        // namespace: show the host's /sys instead (read-only if asked).
        Err(Errno::EPERM) if kind == Kind::Sysfs && p.ctx.userns => {
            sys::mount(Some(c"/sys"), FdPath::new(&target).as_cstr(), None, libc::MS_BIND | libc::MS_REC, None)
                .map_err(|e| RootfsError::sys(e, format!("bind mount /sys on {}", p.host(dest))))?;
            let fd = reopen(p, dest, kind)?;
            bind_remount(fd.as_raw_fd(), mflags, opts.cleared, &what)?;
            // The host's submounts of /sys (cgroups, ...) came along: restrict them as well.
            let rec = attrs_of(mflags);
            if rec != 0 {
                match sys::mount_setattr(fd.as_raw_fd(), true, rec, 0) {
                    Ok(()) | Err(Errno::ENOSYS) => {}
                    Err(e) => return Err(RootfsError::sys(e, format!("mount_setattr {}", p.host(dest)))),
                }
            }
            return post_ops(p, dest, fd.as_raw_fd(), opts);
        }
        Err(e) => return Err(RootfsError::sys(e, format!("mount {}", what()))),
    }
    if !opts.copyup && !needs_post(opts) {
        return Ok(());
    }
    let fd = reopen(p, dest, kind)?;
    if opts.copyup && kind == Kind::Tmpfs && existed {
        copy_tree(target.as_raw_fd(), fd.as_raw_fd())
            .map_err(|e| RootfsError::sys(e, format!("tmpcopyup into {}", p.host(dest))))?;
    }
    post_ops(p, dest, fd.as_raw_fd(), opts)
}

/// Inode number of the initial cgroup namespace (PROC_CGROUP_INIT_INO, fixed by the kernel).
const CGROUP_INIT_INO: u64 = 0xEFFF_FFFB;

fn in_init_cgroupns() -> bool {
    // Unknown (no /proc/self/ns): assume the initial one, the safe side.
    #[allow(clippy::unnecessary_cast)] // ino_t is not u64 everywhere
    sys::stat(c"/proc/self/ns/cgroup").map_or(true, |st| st.st_ino as u64 == CGROUP_INIT_INO)
}

/// The host's cgroup2 mount point: `host_dir` minus our own cgroup path ("0::/a/b" in
/// /proc/self/cgroup; the init joined the container's cgroup already). `host_dir` itself when
/// that does not match.
fn cgroup2_root(host_dir: &std::path::Path) -> std::path::PathBuf {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let rel = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("");
    strip_cgroup_suffix(host_dir, rel)
}

fn strip_cgroup_suffix(host_dir: &std::path::Path, rel: &str) -> std::path::PathBuf {
    let rel = rel.trim().trim_matches('/');
    if rel.is_empty() {
        return host_dir.to_path_buf();
    }
    let h = host_dir.as_os_str().as_bytes();
    let h = h.strip_suffix(b"/").unwrap_or(h);
    match h.strip_suffix(rel.as_bytes()) {
        Some(root) if root.ends_with(b"/") && root.len() > 1 => {
            std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&root[..root.len() - 1]))
        }
        _ => host_dir.to_path_buf(),
    }
}

/// MOUNT_ATTR_* equivalents of the restricting MS_* flags.
fn attrs_of(flags: libc::c_ulong) -> u64 {
    let mut a = 0;
    for (ms, attr) in [
        (libc::MS_RDONLY, options::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, options::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, options::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, options::MOUNT_ATTR_NOEXEC),
    ] {
        if flags & ms != 0 {
            a |= attr;
        }
    }
    a
}

/// Mount data with an SELinux `context="LABEL"` option added.
fn with_context(data: &str, label: &str) -> String {
    if data.is_empty() {
        format!("context=\"{label}\"")
    } else {
        format!("{data},context=\"{label}\"")
    }
}

fn has_mode(data: &str) -> bool {
    data.split(',').any(|o| o.starts_with("mode="))
}

fn mount_cgroup(p: &Prep, dest: &CStr, flags: libc::c_ulong, opts: &MountOptions) -> Result<(), RootfsError> {
    let (target, _) = open_dest(p, dest, Kind::Cgroup, Create::Dir)?;
    check_proc(p, dest, Kind::Cgroup, &target, None)?;
    let mflags = flags & FS_FLAGS_MASK;
    match &p.ctx.cgroup {
        MountInfo::V2 { host_dir } => {
            let bind = |src: &std::path::Path| -> Result<(), RootfsError> {
                let csrc = cstring(src.as_os_str().as_bytes(), "cgroup path")?;
                let what = || format!("{} on {}", src.display(), p.host(dest));
                sys::mount(Some(&csrc), FdPath::new(&target).as_cstr(), None, libc::MS_BIND | libc::MS_REC, None)
                    .map_err(|e| RootfsError::sys(e, format!("bind mount {}", what())))?;
                let fd = reopen(p, dest, Kind::Cgroup)?;
                bind_remount(fd.as_raw_fd(), mflags, opts.cleared, &what)?;
                post_ops(p, dest, fd.as_raw_fd(), opts)
            };
            // A fresh cgroup2 mount made from the initial cgroup namespace re-applies its
            // options (nsdelegate, memory_recursiveprot, ...) to the host's hierarchy: bind
            // the host's cgroup2 root instead (same view as a fresh mount there).
            if in_init_cgroupns() {
                return bind(&cgroup2_root(host_dir));
            }
            let data = if opts.data.is_empty() { None } else { Some(cstring(opts.data.as_bytes(), "mount data")?) };
            // The superblock is shared: asking for it read-only fails (EBUSY) where it is
            // writable; read-only is a per-mount flag set right after.
            let r = sys::mount(
                Some(c"cgroup2"),
                FdPath::new(&target).as_cstr(),
                Some(c"cgroup2"),
                mflags & !libc::MS_RDONLY,
                data.as_deref(),
            );
            match r {
                Ok(()) => {
                    if needs_post(opts) || mflags & libc::MS_RDONLY != 0 {
                        let fd = reopen(p, dest, Kind::Cgroup)?;
                        if mflags & libc::MS_RDONLY != 0 {
                            let what = || format!("cgroup2 on {}", p.host(dest));
                            bind_remount(fd.as_raw_fd(), mflags, opts.cleared, &what)?;
                        }
                        post_ops(p, dest, fd.as_raw_fd(), opts)?;
                    }
                    Ok(())
                }
                // A user namespace without its own cgroup namespace cannot mount cgroup2:
                // bind the container's cgroup directory instead.
                Err(Errno::EPERM) | Err(Errno::EBUSY) => bind(host_dir),
                Err(e) => Err(RootfsError::sys(e, format!("mount cgroup2 on {}", p.host(dest)))),
            }
        }
        MountInfo::V1 { hierarchies } => {
            sys::mount(
                Some(c"tmpfs"),
                FdPath::new(&target).as_cstr(),
                Some(c"tmpfs"),
                CGROUP_DEFAULT_FLAGS,
                Some(c"mode=755"),
            )
            .map_err(|e| RootfsError::sys(e, format!("mount tmpfs on {}", p.host(dest))))?;
            let tfd = reopen(p, dest, Kind::Cgroup)?;
            let t = tfd.as_raw_fd();
            for &prop in &opts.propagation {
                sys::mount(None, FdPath::raw(t).as_cstr(), None, prop, None)
                    .map_err(|e| RootfsError::sys(e, format!("set propagation {prop:#x} on {}", p.host(dest))))?;
            }
            let sub_flags = CGROUP_DEFAULT_FLAGS | mflags;
            for (dir, _, host_dir) in hierarchies {
                let what = || format!("{} on {}/{}", host_dir.display(), p.host(dest), dir);
                if dir.is_empty() || dir.contains('/') || dir == "." || dir == ".." {
                    return Err(RootfsError::Other(format!("invalid cgroup hierarchy directory name {dir:?}")));
                }
                let name = cstring(dir.as_bytes(), "cgroup directory")?;
                match sys::mkdirat(t, &name, 0o755) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(RootfsError::sys(e, format!("mkdir {}/{}", p.host(dest), dir))),
                }
                let open_sub = || {
                    sys::openat(t, &name, libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY, 0)
                        .map_err(|e| RootfsError::sys(e, format!("open {}/{}", p.host(dest), dir)))
                };
                let sub = open_sub()?;
                let src = cstring(host_dir.as_os_str().as_bytes(), "cgroup path")?;
                sys::mount(Some(&src), FdPath::new(&sub).as_cstr(), None, libc::MS_BIND | libc::MS_REC, None)
                    .map_err(|e| RootfsError::sys(e, format!("bind mount {}", what())))?;
                let sub = open_sub()?;
                bind_remount(sub.as_raw_fd(), sub_flags, opts.cleared, &what)?;
                post_ops(p, dest, sub.as_raw_fd(), opts)?;
                // "cpu" -> "cpu,cpuacct", "cpuacct" -> "cpu,cpuacct".
                if dir.contains(',') {
                    for part in dir.split(',').filter(|s| !s.is_empty()) {
                        let link = cstring(part.as_bytes(), "cgroup directory")?;
                        match sys::symlinkat(&name, t, &link) {
                            Ok(()) | Err(Errno::EEXIST) => {}
                            Err(e) => {
                                return Err(RootfsError::sys(
                                    e,
                                    format!("symlink {}/{} -> {}", p.host(dest), part, dir),
                                ))
                            }
                        }
                    }
                }
            }
            if flags & libc::MS_RDONLY != 0 {
                let what = || format!("tmpfs on {}", p.host(dest));
                bind_remount(t, CGROUP_DEFAULT_FLAGS | libc::MS_RDONLY, 0, &what)?;
            }
            Ok(())
        }
    }
}

/// Copy the content of directory `src` (any descriptor on it) into directory `dst`:
/// files, directories, symlinks, device nodes and fifos, with modes and owners.
fn copy_tree(src: RawFd, dst: RawFd) -> Result<(), Errno> {
    let rd = sys::openat(src, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let st = sys::fstat(rd.as_raw_fd())?;
    let _ = sys::fchownat(dst, c"", st.st_uid, st.st_gid, libc::AT_EMPTY_PATH);
    let mut dir = nix::dir::Dir::from_fd(rd)?;
    let dfd = dir.as_raw_fd();
    let mut entries: Vec<CString> = Vec::new();
    for e in dir.iter() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            entries.push(n.to_owned());
        }
    }
    for name in &entries {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: valid dirfd, name and out-pointer.
        if unsafe { libc::fstatat(dfd, name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) } < 0 {
            return Err(Errno::last());
        }
        // SAFETY: fstatat succeeded.
        let st = unsafe { st.assume_init() };
        let mode = st.st_mode & 0o7777;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                sys::mkdirat(dst, name, mode)?;
                let s = sys::openat(dfd, name, libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY, 0)?;
                let d = sys::openat(dst, name, libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY, 0)?;
                copy_tree(s.as_raw_fd(), d.as_raw_fd())?;
            }
            libc::S_IFREG => {
                let s = sys::openat(dfd, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
                let d = sys::openat(dst, name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, mode)?;
                let mut s = std::fs::File::from(s);
                let mut d = std::fs::File::from(d);
                std::io::copy(&mut s, &mut d).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
            }
            libc::S_IFLNK => {
                let mut buf = [0u8; 4096];
                let t = sys::readlinkat(dfd, name, &mut buf)?;
                let t = CString::new(t).map_err(|_| Errno::EINVAL)?;
                sys::symlinkat(&t, dst, name)?;
            }
            _ => sys::mknodat(dst, name, st.st_mode, st.st_rdev)?,
        }
        sys::fchownat(dst, name, st.st_uid, st.st_gid, libc::AT_SYMLINK_NOFOLLOW)?;
    }
    Ok(())
}

/// finalize: the tmpfs mounts and /dev that asked for "ro" were mounted rw; remount them ro.
pub(crate) fn remount_deferred_ro(spec: &Spec) -> Result<(), RootfsError> {
    let Some(mounts) = spec.mounts() else { return Ok(()) };
    for m in mounts {
        let Some(o) = m.options() else { continue };
        if !o.iter().any(|s| s == "ro") {
            continue;
        }
        let opts = options::parse(o);
        if opts.flags & libc::MS_RDONLY == 0 || opts.is_bind() || m.typ().as_deref() == Some("cgroup") {
            continue;
        }
        let dest = match resolve::clean(m.destination().as_os_str().as_bytes()) {
            Some(d) => d,
            None => continue,
        };
        if m.typ().as_deref() != Some("tmpfs") && dest.to_bytes() != b"dev" {
            continue;
        }
        let mut abs = Vec::with_capacity(dest.to_bytes().len() + 2);
        abs.push(b'/');
        abs.extend_from_slice(dest.to_bytes());
        let abs = cstring(&abs, "mount destination")?;
        let f = (opts.flags & FS_FLAGS_MASK & !libc::MS_REMOUNT) | libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        sys::mount(None, &abs, None, f, None)
            .map_err(|e| RootfsError::sys(e, format!("remount {} read-only", abs.to_string_lossy())))?;
    }
    Ok(())
}

/// Bind-remount `path` (a mount point) read-only, keeping its lockable flags.
pub(crate) fn remount_ro(path: &CStr) -> Result<(), RootfsError> {
    let cur =
        sys::statvfs_flags(path).map_err(|e| RootfsError::sys(e, format!("statvfs {}", path.to_string_lossy())))?;
    let f = (options::statfs_to_ms(cur) & LOCKED_FLAGS) | libc::MS_RDONLY | libc::MS_BIND | libc::MS_REMOUNT;
    sys::mount(None, path, None, f, None)
        .map_err(|e| RootfsError::sys(e, format!("remount {} read-only", path.to_string_lossy())))
}

/// linux.readonlyPaths entry: bind onto itself, then read-only. Missing paths are skipped.
pub(crate) fn readonly_path(path: &str) -> Result<(), RootfsError> {
    let c = cstring(path.as_bytes(), "readonly path")?;
    match sys::mount(Some(&c), &c, None, libc::MS_BIND | libc::MS_REC, None) {
        Ok(()) => remount_ro(&c),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(RootfsError::sys(e, format!("bind mount {path} onto itself"))),
    }
}

/// linux.maskedPaths: /dev/null over files, a read-only empty tmpfs over directories (one
/// tmpfs, bound again for the next directories). Missing paths are skipped.
pub(crate) fn mask_paths(paths: &[String]) -> Result<(), RootfsError> {
    let mut devnull: Option<OwnedFd> = None;
    let mut mask: Option<OwnedFd> = None;
    for path in paths {
        let c = cstring(path.as_bytes(), "masked path")?;
        let fd = match sys::open_path(&c, libc::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(RootfsError::sys(e, format!("open masked path {path}"))),
        };
        let st = sys::fstat(fd.as_raw_fd()).map_err(|e| RootfsError::sys(e, format!("stat {path}")))?;
        let target = FdPath::new(&fd);
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            if let Some(m) = &mask {
                if sys::mount(Some(FdPath::new(m).as_cstr()), target.as_cstr(), None, libc::MS_BIND, None).is_ok() {
                    continue;
                }
            }
            let mut r = sys::mount(
                Some(c"tmpfs"),
                target.as_cstr(),
                Some(c"tmpfs"),
                libc::MS_RDONLY,
                Some(c"nr_blocks=1,nr_inodes=1"),
            );
            if r == Err(Errno::EINVAL) {
                // Some kernels want at least two inodes.
                r = sys::mount(
                    Some(c"tmpfs"),
                    target.as_cstr(),
                    Some(c"tmpfs"),
                    libc::MS_RDONLY,
                    Some(c"nr_blocks=1,nr_inodes=2"),
                );
            }
            r.map_err(|e| RootfsError::sys(e, format!("mask directory {path}")))?;
            if mask.is_none() {
                mask = sys::open_path(&c, libc::O_PATH | libc::O_DIRECTORY).ok();
            }
        } else {
            if devnull.is_none() {
                let d = sys::open_path(c"/dev/null", libc::O_PATH)
                    .map_err(|e| RootfsError::sys(e, "open /dev/null to mask paths".into()))?;
                let st = sys::fstat(d.as_raw_fd()).map_err(|e| RootfsError::sys(e, "stat /dev/null".into()))?;
                let weak = crate::faults::weakened("masked-devnull-check");
                if !weak && (st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3)) {
                    return Err(RootfsError::Other("/dev/null is not the null device: cannot mask paths".into()));
                }
                devnull = Some(d);
            }
            if let Some(d) = &devnull {
                sys::mount(Some(FdPath::new(d).as_cstr()), target.as_cstr(), None, libc::MS_BIND, None)
                    .map_err(|e| RootfsError::sys(e, format!("mask file {path}")))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn selinux_context_option() {
        assert_eq!(
            super::with_context("", "system_u:object_r:container_file_t:s0"),
            "context=\"system_u:object_r:container_file_t:s0\""
        );
        assert_eq!(super::with_context("size=64k", "l"), "size=64k,context=\"l\"");
    }

    use super::*;

    #[test]
    fn mode_detection() {
        assert!(has_mode("size=1k,mode=755"));
        assert!(!has_mode("size=1k"));
        assert!(!has_mode(""));
        assert!(!has_mode("nomode=1"));
    }

    #[test]
    fn cgroup2_root_from_own_path() {
        use std::path::{Path, PathBuf};
        let t = |h: &str, r: &str| strip_cgroup_suffix(Path::new(h), r);
        assert_eq!(t("/sys/fs/cgroup/system.slice/c1", "/system.slice/c1"), PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(t("/sys/fs/cgroup/system.slice/c1/", "/system.slice/c1\n"), PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(t("/sys/fs/cgroup", "/"), PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(t("/sys/fs/cgroup/other", "/system.slice/c1"), PathBuf::from("/sys/fs/cgroup/other"));
        assert_eq!(t("/sys/fs/cgroup/xc1", "c1"), PathBuf::from("/sys/fs/cgroup/xc1"));
    }

    #[test]
    fn attrs() {
        use super::options::*;
        assert_eq!(attrs_of(0), 0);
        assert_eq!(
            attrs_of(libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME),
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC
        );
    }
}
