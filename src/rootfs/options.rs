//! Mount option parsing (fstab-style strings of the OCI spec into MS_* flags, propagation
//! changes, mount_setattr(2) recursive attributes and fs-specific data). Pure logic.

use libc::c_ulong;

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub(crate) const MOUNT_ATTR__ATIME: u64 = 0x0000_0070;
pub(crate) const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub(crate) const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub(crate) const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub(crate) const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
pub(crate) const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// Flags the kernel locks on mounts inherited by a less privileged user namespace
/// (MNT_LOCK_*): a bind remount must keep them.
pub(crate) const LOCKED_FLAGS: c_ulong = libc::MS_RDONLY
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOSUID
    | libc::MS_NOATIME
    | libc::MS_RELATIME
    | libc::MS_STRICTATIME
    | libc::MS_NODIRATIME;
const ATIME_ENUM: c_ulong = libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME;
pub(crate) const ATIME_FLAGS: c_ulong = ATIME_ENUM | libc::MS_NODIRATIME;

/// Everything an OCI mount's `options` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MountOptions {
    /// MS_* flags to set (includes MS_BIND / MS_REC for "bind" / "rbind").
    pub flags: c_ulong,
    /// MS_* flags explicitly cleared ("rw", "suid", "dev", "exec", ...).
    pub cleared: c_ulong,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<c_ulong>,
    /// mount_setattr(2) attributes applied recursively ("rro", "rnosuid", ...).
    pub rec_set: u64,
    pub rec_clr: u64,
    /// "tmpcopyup": copy the covered directory's content into the new tmpfs.
    pub copyup: bool,
    /// "idmap" / "ridmap" was asked for.
    pub idmap: bool,
    /// The remaining options, comma-joined, for the filesystem.
    pub data: String,
}

impl MountOptions {
    pub(crate) fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
}

/// `linux.rootfsPropagation` / propagation options.
pub(crate) fn propagation(s: &str) -> Option<c_ulong> {
    Some(match s {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// (clear?, MS_* flag) of a plain mount flag option.
fn mount_flag(o: &str) -> Option<(bool, c_ulong)> {
    Some(match o {
        "async" => (true, libc::MS_SYNCHRONOUS),
        "atime" => (true, libc::MS_NOATIME),
        "bind" => (false, libc::MS_BIND),
        "defaults" => (false, 0),
        "dev" => (true, libc::MS_NODEV),
        "diratime" => (true, libc::MS_NODIRATIME),
        "dirsync" => (false, libc::MS_DIRSYNC),
        "exec" => (true, libc::MS_NOEXEC),
        "iversion" => (false, libc::MS_I_VERSION),
        "lazytime" => (false, libc::MS_LAZYTIME),
        "loud" => (true, libc::MS_SILENT),
        "mand" => (false, libc::MS_MANDLOCK),
        "noatime" => (false, libc::MS_NOATIME),
        "nodev" => (false, libc::MS_NODEV),
        "nodiratime" => (false, libc::MS_NODIRATIME),
        "noexec" => (false, libc::MS_NOEXEC),
        "noiversion" => (true, libc::MS_I_VERSION),
        "nolazytime" => (true, libc::MS_LAZYTIME),
        "nomand" => (true, libc::MS_MANDLOCK),
        "norelatime" => (true, libc::MS_RELATIME),
        "nostrictatime" => (true, libc::MS_STRICTATIME),
        "nosuid" => (false, libc::MS_NOSUID),
        "nosymfollow" => (false, libc::MS_NOSYMFOLLOW),
        "rbind" => (false, libc::MS_BIND | libc::MS_REC),
        "relatime" => (false, libc::MS_RELATIME),
        "remount" => (false, libc::MS_REMOUNT),
        "ro" => (false, libc::MS_RDONLY),
        "rw" => (true, libc::MS_RDONLY),
        "silent" => (false, libc::MS_SILENT),
        "strictatime" => (false, libc::MS_STRICTATIME),
        "suid" => (true, libc::MS_NOSUID),
        "sync" => (false, libc::MS_SYNCHRONOUS),
        "symfollow" => (true, libc::MS_NOSYMFOLLOW),
        _ => return None,
    })
}

/// (clear?, MOUNT_ATTR_*) of a recursive attribute option.
fn rec_attr(o: &str) -> Option<(bool, u64)> {
    Some(match o {
        "rro" => (false, MOUNT_ATTR_RDONLY),
        "rrw" => (true, MOUNT_ATTR_RDONLY),
        "rnosuid" => (false, MOUNT_ATTR_NOSUID),
        "rsuid" => (true, MOUNT_ATTR_NOSUID),
        "rnodev" => (false, MOUNT_ATTR_NODEV),
        "rdev" => (true, MOUNT_ATTR_NODEV),
        "rnoexec" => (false, MOUNT_ATTR_NOEXEC),
        "rexec" => (true, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (false, MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (true, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (false, MOUNT_ATTR_RELATIME),
        "rnorelatime" => (true, MOUNT_ATTR_RELATIME),
        "rnoatime" => (false, MOUNT_ATTR_NOATIME),
        "ratime" => (true, MOUNT_ATTR_NOATIME),
        "rstrictatime" => (false, MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => (true, MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => (false, MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => (true, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

/// Parse the options of one mount. Unknown options become fs data, in order.
pub(crate) fn parse<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut m = MountOptions::default();
    for o in options {
        let o = o.as_ref();
        if let Some((clear, f)) = mount_flag(o) {
            if clear {
                m.flags &= !f;
                m.cleared |= f;
            } else {
                m.flags |= f;
                m.cleared &= !f;
            }
        } else if let Some(p) = propagation(o) {
            m.propagation.push(p);
        } else if let Some((clear, f)) = rec_attr(o) {
            if clear {
                m.rec_clr |= f;
                m.rec_set &= !f;
            } else {
                m.rec_set |= f;
                m.rec_clr &= !f;
            }
            // The atime setting is a field: it must be cleared as a whole to be set.
            if f & MOUNT_ATTR__ATIME == f {
                m.rec_clr |= MOUNT_ATTR__ATIME;
            }
        } else if o == "tmpcopyup" {
            m.copyup = true;
        } else if o == "idmap" || o == "ridmap" {
            m.idmap = true;
        } else {
            if !m.data.is_empty() {
                m.data.push(',');
            }
            m.data.push_str(o);
        }
    }
    m
}

/// statvfs(2) `f_flag` (ST_*) to the MS_* flags a remount must repeat to keep them.
pub(crate) fn statfs_to_ms(st: c_ulong) -> c_ulong {
    const ST_NOSYMFOLLOW: c_ulong = 0x2000;
    const MAP: [(c_ulong, c_ulong); 10] = [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_MANDLOCK, libc::MS_MANDLOCK),
        (libc::ST_SYNCHRONOUS, libc::MS_SYNCHRONOUS),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
        (ST_NOSYMFOLLOW, libc::MS_NOSYMFOLLOW),
    ];
    let mut f = 0;
    for (s, m) in MAP {
        if st & s != 0 {
            f |= m;
        }
    }
    // strictatime is not reported: it is what a mount is when no other atime mode is.
    if f & ATIME_ENUM == 0 {
        f |= libc::MS_STRICTATIME;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_flags_and_data() {
        let m = parse(&["nosuid", "noexec", "nodev", "mode=755", "size=65536k", "ro"]);
        assert_eq!(m.flags, libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV | libc::MS_RDONLY);
        assert_eq!(m.data, "mode=755,size=65536k");
        assert_eq!(m.cleared, 0);
        assert!(!m.is_bind());
    }

    #[test]
    fn set_then_clear_wins_last() {
        let m = parse(&["ro", "rw"]);
        assert_eq!(m.flags & libc::MS_RDONLY, 0);
        assert_eq!(m.cleared, libc::MS_RDONLY);
        let m = parse(&["rw", "ro"]);
        assert_eq!(m.flags, libc::MS_RDONLY);
        assert_eq!(m.cleared, 0);
        let m = parse(&["suid", "dev", "exec", "async", "atime", "diratime", "nomand", "symfollow"]);
        assert_eq!(m.flags, 0);
        assert_eq!(
            m.cleared,
            libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC
                | libc::MS_SYNCHRONOUS
                | libc::MS_NOATIME
                | libc::MS_NODIRATIME
                | libc::MS_MANDLOCK
                | libc::MS_NOSYMFOLLOW
        );
    }

    #[test]
    fn all_flag_options() {
        let m = parse(&[
            "sync",
            "dirsync",
            "remount",
            "mand",
            "noatime",
            "nodiratime",
            "relatime",
            "strictatime",
            "lazytime",
            "nosymfollow",
            "silent",
            "iversion",
        ]);
        assert_eq!(
            m.flags,
            libc::MS_SYNCHRONOUS
                | libc::MS_DIRSYNC
                | libc::MS_REMOUNT
                | libc::MS_MANDLOCK
                | libc::MS_NOATIME
                | libc::MS_NODIRATIME
                | libc::MS_RELATIME
                | libc::MS_STRICTATIME
                | libc::MS_LAZYTIME
                | libc::MS_NOSYMFOLLOW
                | libc::MS_SILENT
                | libc::MS_I_VERSION
        );
        assert!(m.data.is_empty());
        let m = parse(&["norelatime", "nostrictatime", "nolazytime", "defaults"]);
        assert_eq!(m.flags, 0);
        assert_eq!(m.cleared, libc::MS_RELATIME | libc::MS_STRICTATIME | libc::MS_LAZYTIME);
    }

    #[test]
    fn binds() {
        let m = parse(&["bind"]);
        assert_eq!(m.flags, libc::MS_BIND);
        assert!(m.is_bind());
        let m = parse(&["rbind", "ro"]);
        assert_eq!(m.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
    }

    #[test]
    fn propagation_options_in_order() {
        let m = parse(&[
            "rbind",
            "rprivate",
            "shared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
            "private",
            "rshared",
        ]);
        assert_eq!(
            m.propagation,
            vec![
                libc::MS_PRIVATE | libc::MS_REC,
                libc::MS_SHARED,
                libc::MS_SLAVE,
                libc::MS_SLAVE | libc::MS_REC,
                libc::MS_UNBINDABLE,
                libc::MS_UNBINDABLE | libc::MS_REC,
                libc::MS_PRIVATE,
                libc::MS_SHARED | libc::MS_REC,
            ]
        );
        assert_eq!(propagation("bogus"), None);
        assert_eq!(propagation("rslave"), Some(libc::MS_SLAVE | libc::MS_REC));
    }

    #[test]
    fn recursive_attrs() {
        let m = parse(&["rro", "rnosuid", "rnodev", "rnoexec", "rnodiratime", "rnosymfollow"]);
        assert_eq!(
            m.rec_set,
            MOUNT_ATTR_RDONLY
                | MOUNT_ATTR_NOSUID
                | MOUNT_ATTR_NODEV
                | MOUNT_ATTR_NOEXEC
                | MOUNT_ATTR_NODIRATIME
                | MOUNT_ATTR_NOSYMFOLLOW
        );
        assert_eq!(m.rec_clr, 0);
        let m = parse(&["rro", "rrw", "rsuid", "rdev", "rexec", "rdiratime", "rsymfollow"]);
        assert_eq!(m.rec_set, 0);
        assert_eq!(
            m.rec_clr,
            MOUNT_ATTR_RDONLY
                | MOUNT_ATTR_NOSUID
                | MOUNT_ATTR_NODEV
                | MOUNT_ATTR_NOEXEC
                | MOUNT_ATTR_NODIRATIME
                | MOUNT_ATTR_NOSYMFOLLOW
        );
        // atime values clear the whole atime field.
        let m = parse(&["rnoatime"]);
        assert_eq!((m.rec_set, m.rec_clr), (MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME));
        let m = parse(&["rstrictatime"]);
        assert_eq!((m.rec_set, m.rec_clr), (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME));
        let m = parse(&["rrelatime"]);
        assert_eq!((m.rec_set, m.rec_clr), (0, MOUNT_ATTR__ATIME));
        let m = parse(&["ratime"]);
        assert_eq!(m.rec_clr, MOUNT_ATTR__ATIME);
        let m = parse(&["rnostrictatime", "rnorelatime"]);
        assert_eq!((m.rec_set, m.rec_clr), (0, MOUNT_ATTR__ATIME));
    }

    #[test]
    fn extensions() {
        let m = parse(&["tmpcopyup", "mode=1777"]);
        assert!(m.copyup);
        assert_eq!(m.data, "mode=1777");
        assert!(parse(&["idmap"]).idmap);
        assert!(parse(&["ridmap"]).idmap);
        assert!(!parse(&["ro"]).idmap);
    }

    #[test]
    fn data_keeps_order_and_unknowns() {
        let m = parse(&["lowerdir=/a:/b", "upperdir=/u", "nosuid", "workdir=/w", "xino=off"]);
        assert_eq!(m.data, "lowerdir=/a:/b,upperdir=/u,workdir=/w,xino=off");
        assert_eq!(m.flags, libc::MS_NOSUID);
        let m = parse(&["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]);
        assert_eq!(m.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
        assert_eq!(parse::<&str>(&[]), MountOptions::default());
    }

    #[test]
    fn statfs_flags() {
        assert_eq!(statfs_to_ms(0), libc::MS_STRICTATIME);
        assert_eq!(
            statfs_to_ms(libc::ST_NOSUID | libc::ST_NODEV | libc::ST_RELATIME),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RELATIME
        );
        assert_eq!(
            statfs_to_ms(libc::ST_RDONLY | libc::ST_NOEXEC | libc::ST_NOATIME | 0x2000),
            libc::MS_RDONLY | libc::MS_NOEXEC | libc::MS_NOATIME | libc::MS_NOSYMFOLLOW
        );
        assert_eq!(statfs_to_ms(libc::ST_NODIRATIME), libc::MS_NODIRATIME | libc::MS_STRICTATIME);
    }
}
