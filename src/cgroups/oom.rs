//! OOM notifications for `events`.
//!
//! v1: an eventfd registered through cgroup.event_control on memory.oom_control.
//! v2: inotify on memory.events (the oom_kill counter) and cgroup.events ("populated").
//!
//! `OomWatcher` is a file descriptor: poll it for readability, or call `wait` to block.

use super::util;
use super::CgroupError;
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomEvent {
    /// The cgroup hit its memory limit (v1) / a process was OOM-killed (v2).
    Oom,
    /// The cgroup was removed or has no processes left: no more events will come.
    Gone,
}

#[derive(Debug)]
enum Kind {
    V1 { _oom_control: File },
    V2 { mem_wd: i32, cg_wd: i32, last_kills: u64, gone: bool },
}

#[derive(Debug)]
pub struct OomWatcher {
    dir: PathBuf,
    fd: OwnedFd,
    kind: Kind,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl Fn(Errno) -> CgroupError + 'a {
    move |errno| CgroupError::Io { op, path: path.to_path_buf(), errno }
}

impl OomWatcher {
    pub(crate) fn v1(dir: &Path) -> Result<OomWatcher, CgroupError> {
        let ctl = dir.join("memory.oom_control");
        let f = File::open(&ctl).map_err(|e| io("open", &ctl)(util::errno_of(&e)))?;
        // SAFETY: eventfd has no memory-safety preconditions.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io("eventfd for", dir)(Errno::last()));
        }
        // SAFETY: efd is a new descriptor owned by nobody else.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        util::write(dir, "cgroup.event_control", &format!("{} {}", efd.as_raw_fd(), f.as_raw_fd()))?;
        Ok(OomWatcher { dir: dir.to_path_buf(), fd: efd, kind: Kind::V1 { _oom_control: f } })
    }

    pub(crate) fn v2(dir: &Path) -> Result<OomWatcher, CgroupError> {
        // SAFETY: inotify_init1 has no memory-safety preconditions.
        let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if ifd < 0 {
            return Err(io("inotify_init for", dir)(Errno::last()));
        }
        // SAFETY: ifd is a new descriptor owned by nobody else.
        let ifd = unsafe { OwnedFd::from_raw_fd(ifd) };
        let watch = |file: &str| -> Result<i32, CgroupError> {
            let p = dir.join(file);
            let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
                .map_err(|_| io("inotify_add_watch", &p)(Errno::EINVAL))?;
            // SAFETY: valid descriptor and NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
            if wd < 0 {
                return Err(io("inotify_add_watch", &p)(Errno::last()));
            }
            Ok(wd)
        };
        let mem_wd = watch("memory.events")?;
        let cg_wd = watch("cgroup.events")?;
        let last_kills = kills_v2(dir);
        Ok(OomWatcher { dir: dir.to_path_buf(), fd: ifd, kind: Kind::V2 { mem_wd, cg_wd, last_kills, gone: false } })
    }

    /// Block until the next OOM event, or until the cgroup goes away.
    pub fn wait(&mut self) -> Result<OomEvent, CgroupError> {
        match &mut self.kind {
            Kind::V1 { .. } => {
                let mut buf = [0u8; 8];
                read_retry(self.fd.as_raw_fd(), &mut buf).map_err(io("read eventfd of", &self.dir))?;
                // The kernel also signals the eventfd when the cgroup is removed.
                if !util::exists(&self.dir.join("cgroup.event_control")) {
                    return Ok(OomEvent::Gone);
                }
                Ok(OomEvent::Oom)
            }
            Kind::V2 { .. } => loop {
                if let Some(ev) = self.v2_pending() {
                    return Ok(ev);
                }
                self.v2_read()?;
            },
        }
    }

    /// Like `wait`, but gives up after `timeout`: None when no event came in time (activity
    /// that was not an OOM, such as a memory.events "max" counter, counts as none).
    pub fn poll_event(&mut self, timeout: std::time::Duration) -> Result<Option<OomEvent>, CgroupError> {
        if let Some(ev) = self.v2_pending() {
            return Ok(Some(ev));
        }
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            return match Errno::last() {
                Errno::EINTR => Ok(None),
                e => Err(io("poll oom notifications of", &self.dir)(e)),
            };
        }
        if r == 0 {
            return Ok(None);
        }
        match self.kind {
            // Readable: this read does not block.
            Kind::V1 { .. } => self.wait().map(Some),
            Kind::V2 { .. } => {
                self.v2_read()?;
                Ok(self.v2_pending())
            }
        }
    }

    /// v2: an OOM kill not reported yet, else the end of the cgroup once seen. Kernfs notifies
    /// from a work queue, so events of different files come in any order: an OOM kill is
    /// reported before the end.
    fn v2_pending(&mut self) -> Option<OomEvent> {
        let Kind::V2 { last_kills, gone, .. } = &mut self.kind else { return None };
        let kills = kills_v2(&self.dir);
        if kills > *last_kills {
            *last_kills = kills;
            return Some(OomEvent::Oom);
        }
        gone.then_some(OomEvent::Gone)
    }

    /// v2: one (blocking) read of the inotify descriptor; notes the end of the cgroup.
    fn v2_read(&mut self) -> Result<(), CgroupError> {
        let Kind::V2 { mem_wd, cg_wd, gone, .. } = &mut self.kind else { return Ok(()) };
        let mut buf = [0u8; 4096];
        let n = read_retry(self.fd.as_raw_fd(), &mut buf).map_err(io("read inotify of", &self.dir))?;
        let mut off = 0;
        let hdr = std::mem::size_of::<libc::inotify_event>();
        while off + hdr <= n {
            // SAFETY: the kernel wrote a whole inotify_event header at `off` (checked against
            // n); read_unaligned copes with the byte buffer.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off) as *const libc::inotify_event) };
            off += hdr + ev.len as usize;
            if ev.mask & libc::IN_IGNORED != 0 {
                *gone = true;
            } else if ev.wd == *cg_wd && ev.wd != *mem_wd {
                let populated = util::read_opt(&self.dir, "cgroup.events")
                    .ok()
                    .flatten()
                    .and_then(|s| util::value_by_key(&s, "populated"));
                if populated.unwrap_or(0) == 0 {
                    *gone = true;
                }
            }
        }
        Ok(())
    }
}

fn kills_v2(dir: &Path) -> u64 {
    util::read_opt(dir, "memory.events").ok().flatten().and_then(|s| util::value_by_key(&s, "oom_kill")).unwrap_or(0)
}

fn read_retry(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

impl AsRawFd for OomWatcher {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
