#!/usr/bin/env python3
"""Start-up benchmark of berth against its peers (runc, crun).

Measures, interleaved round-robin in one run:
  lifecycle  create -> start -> wait for the container process to exit -> delete
  run        `run` attached (the runtime exits with the container's code)
  limits     the lifecycle again with memory/cpu/pids limits in the config
  exec       `exec ID true` (attached) into one long-running container per runtime
  seccomp    the lifecycle again with a docker-like seccomp profile, set against the
             plain lifecycle's create of the same runtime ("seccomp cost at create")
plus two reference lines: the "kernel floor" (unshare + chroot + /bin/true)
and, when crun has to be wrapped, the wrapper's own no-op cost.

Python 3 standard library only. Must run as root. See bench/README.md.
"""

import argparse
import ctypes
import json
import os
import platform
import random
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
UNIFIED = "/sys/fs/cgroup/unified"
CRUN_WRAP_SCRIPT = 'umount %s && exec "$0" "$@"' % UNIFIED
PR_SET_CHILD_SUBREAPER = 36
LIMITS = {
    "memory": {"limit": 256 * 1024 * 1024},
    "cpu": {"quota": 50000, "period": 100000},
    "pids": {"limit": 100},
}
SECTION_TITLES = {
    "lifecycle": "lifecycle: create -> start -> exit (pidfd) -> delete",
    "run": "run (attached, exits with the container's code)",
    "limits": "lifecycle with limits (memory 256M, cpu 50000/100000, pids 100)",
    "exec": "exec ID true (attached) into a running container",
    "seccomp": "lifecycle with a docker-like seccomp profile",
}
DEFAULT_SECTIONS = "lifecycle,run,limits,exec,seccomp"
# wrapped invocations of the runtime per measured operation (for crun's wrapper subtraction)
CALLS = {"lifecycle": 3, "run": 1, "limits": 3, "exec": 1, "seccomp": 3}
PHASES = ("create", "start+wait", "delete")
# sections that are a lifecycle (create/start/delete phases), with the config variant each uses
LIFECYCLE_VARIANT = {"lifecycle": "plain", "limits": "limits", "seccomp": "seccomp"}
# letter in the container id per section (fresh id per iteration)
ID_CODE = {"lifecycle": "l", "run": "r", "limits": "m", "exec": "e", "seccomp": "s"}
EXEC_ARGS = ["sleep", "100000"]           # the long-running container that exec enters

# seccomp section: one ALLOW rule over these names, every other syscall fails with EPERM
# (defaultAction SCMP_ACT_ERRNO). Each is allowed by docker's default profile, most of them
# unconditionally; the list covers what static busybox `true`/`sh` and the runtimes' own init
# code need after the filter is loaded. `personality` is left out on purpose: the seccomp probe
# runs `linux32 true` (personality(2), no capability needed) and expects it to be refused, which
# proves the runtime really loaded the filter. All names are known to libseccomp 2.5.
SECCOMP_ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
SECCOMP_NAMES = """
accept accept4 access alarm bind brk capget capset chdir chmod chown clock_getres clock_gettime
clock_nanosleep clone clone3 close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait eventfd eventfd2 execve
execveat exit exit_group faccessat faccessat2 fadvise64 fallocate fchdir fchmod fchmodat fchown
fchownat fcntl fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstatfs fsync
ftruncate futex futimesat get_robust_list getcpu getcwd getdents getdents64 getegid geteuid getgid
getgroups getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresuid getrlimit getrusage getsid getsockname getsockopt gettid gettimeofday getuid getxattr
inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents
io_pgetevents io_setup io_submit ioctl ioprio_get ioprio_set kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lgetxattr link linkat listen listxattr
llistxattr lremovexattr lseek lsetxattr lstat madvise membarrier memfd_create mincore mkdir mkdirat
mknod mknodat mlock mlock2 mlockall mmap mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedsend mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap nanosleep
newfstatat open openat openat2 pause pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll prctl pread64 preadv preadv2 prlimit64 process_mrelease
pselect6 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recvfrom recvmmsg
recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_tgsigqueueinfo sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr
sched_getparam sched_getscheduler sched_rr_get_interval sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop sendfile
sendmmsg sendmsg sendto set_robust_list set_tid_address setfsgid setfsuid setgid setgroups
setitimer setpgid setpriority setregid setresgid setresuid setreuid setrlimit setsid setsockopt
setuid setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 socket socketpair
splice stat statfs statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
timer_create timer_delete timer_getoverrun timer_gettime timer_settime timerfd_create
timerfd_gettime timerfd_settime times tkill truncate umask uname unlink unlinkat utime utimensat
utimes vfork vmsplice wait4 waitid write writev arch_prctl get_thread_area set_thread_area
_llseek _newselect chown32 fchown32 fcntl64 fstat64 fstatat64 fstatfs64 ftruncate64 getegid32
geteuid32 getgid32 getgroups32 getresgid32 getresuid32 getuid32 lchown32 lstat64 mmap2 recv send
sendfile64 setfsgid32 setfsuid32 setgid32 setgroups32 setregid32 setresgid32 setresuid32 setreuid32
setuid32 sigreturn socketcall stat64 statfs64 truncate64 ugetrlimit waitpid ipc
""".split()
# what static busybox `true` runs from execve to exit (strace -f of busybox 1.35 true)
SECCOMP_NEEDED = {"execve", "readlink", "brk", "mprotect", "prctl", "arch_prctl", "prlimit64",
                  "getrandom", "getuid", "set_tid_address", "set_robust_list", "rseq", "exit_group"}

# pid of the runtime command currently being waited for (so cleanup can finish it on Ctrl-C)
INFLIGHT = [None]


class OpError(Exception):
    """one measured operation failed; message says which step and what the runtime printed."""


def die(msg):
    print("bench: " + msg, file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- host facts

def mountinfo():
    """[(mount point, fs type)] of this process's mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            mnt = pre.split()[4].replace("\\040", " ")
            out.append((mnt, post.split()[0]))
    return out


def cgroup_mounts():
    return [m for m, t in mountinfo() if t in ("cgroup", "cgroup2") and m.startswith("/sys/fs/cgroup")]


def cgroup_mode():
    mi = dict(mountinfo())
    top = mi.get("/sys/fs/cgroup")
    if top == "cgroup2":
        return "v2"
    if mi.get(UNIFIED) == "cgroup2":
        return "hybrid"
    return "v1"


def fs_type(path):
    """fs type of the mount holding path (longest mount-point prefix)."""
    path = os.path.realpath(path)
    best, typ = "", None
    for m, t in mountinfo():
        if (path == m or path.startswith(m.rstrip("/") + "/")) and len(m) >= len(best):
            best, typ = m, t
    return typ


def tmpfs_dir():
    """/run or /dev/shm when it is an exec-able tmpfs, else None (the system temp dir)."""
    for d in ("/run", "/dev/shm"):
        try:
            if fs_type(d) == "tmpfs" and not os.statvfs(d).f_flag & os.ST_NOEXEC and os.access(d, os.W_OK):
                return d
        except OSError:
            pass
    return None


def is_static_elf(path):
    """True when the ELF file at path has no PT_INTERP program header."""
    with open(path, "rb") as f:
        hdr = f.read(64)
        if hdr[:4] != b"\x7fELF" or hdr[4] != 2:
            return False
        phoff = int.from_bytes(hdr[32:40], "little")
        phentsize = int.from_bytes(hdr[54:56], "little")
        phnum = int.from_bytes(hdr[56:58], "little")
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    return all(int.from_bytes(ph[i * phentsize:i * phentsize + 4], "little") != 3 for i in range(phnum))


def first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=ENV)
        lines = (r.stdout or r.stderr).strip().splitlines()
        return lines[0] if r.returncode == 0 and lines else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def set_subreaper():
    """Orphaned container processes get re-parented to us, so we can reap them (as a shim would)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("bench: warning: prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(ctypes.get_errno()))


def reap_orphans():
    """Reap every exited child; only called when no timed command is in flight."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# ---------------------------------------------------------------- bundle

def fallback_spec():
    """A minimal OCI config used only when `runc spec` is not available."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
            "env": ["PATH=" + ENV["PATH"], "TERM=xterm"],
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def make_bundle(tmp, busybox, runc, proc_args):
    bundle = os.path.join(tmp, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2(busybox, os.path.join(rootfs, "bin", "busybox"))
    applets = {"true", "sh"}
    try:
        r = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=10)
        applets.update(a for a in r.stdout.split() if "/" not in a)
    except (OSError, subprocess.SubprocessError):
        pass
    applets.discard("busybox")
    for a in sorted(applets):
        os.symlink("busybox", os.path.join(rootfs, "bin", a))
    if runc and os.access(runc, os.X_OK):
        r = subprocess.run([runc, "spec", "--bundle", bundle], capture_output=True, text=True, env=ENV)
        if r.returncode != 0:
            die("runc spec --bundle %s: %s" % (bundle, r.stderr.strip()))
        with open(os.path.join(bundle, "config.json")) as f:
            spec = json.load(f)
        spec_source = "runc spec"
    else:
        spec = fallback_spec()
        spec_source = "built-in minimal spec (runc not found)"
    spec["process"]["args"] = proc_args
    spec["process"]["terminal"] = False
    spec["root"]["readonly"] = False
    return bundle, rootfs, spec, spec_source


def seccomp_profile():
    """linux.seccomp of the seccomp section (see SECCOMP_NAMES)."""
    missing = SECCOMP_NEEDED - set(SECCOMP_NAMES)
    if missing:
        die("internal: SECCOMP_NAMES lacks %s" % ", ".join(sorted(missing)))
    return {"defaultAction": "SCMP_ACT_ERRNO", "architectures": list(SECCOMP_ARCHES),
            "syscalls": [{"names": list(SECCOMP_NAMES), "action": "SCMP_ACT_ALLOW"}]}


class Bundle:
    """One bundle shared by all runtimes; config.json is rewritten (untimed) before each
    operation to give every container its own cgroupsPath under our private prefix.
    Config variants: plain, limits (LIMITS added), seccomp (seccomp_profile() added)."""

    def __init__(self, path, rootfs, spec, prefix):
        self.path = path
        self.rootfs = rootfs
        self.prefix = prefix
        limited = json.loads(json.dumps(spec))
        limited["linux"].setdefault("resources", {}).update(json.loads(json.dumps(LIMITS)))
        filtered = json.loads(json.dumps(spec))
        filtered["linux"]["seccomp"] = seccomp_profile()
        self.specs = {"plain": spec, "limits": limited, "seccomp": filtered}
        self._cfg = os.path.join(path, "config.json")

    def write(self, cid, variant, args=None):
        spec = self.specs[variant]
        spec["linux"]["cgroupsPath"] = "/%s/%s" % (self.prefix, cid)
        saved = spec["process"]["args"]
        if args:
            spec["process"]["args"] = args
        try:
            with open(self._cfg, "w") as f:
                json.dump(spec, f, indent=1)
        finally:
            spec["process"]["args"] = saved


# ---------------------------------------------------------------- processes

class Log:
    """Per-runtime output file: truncated before each command, read back on failure."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def reset(self):
        os.ftruncate(self.fd, 0)

    def tail(self, n=600):
        try:
            with open(self.path, errors="replace") as f:
                s = f.read().strip()
        except OSError:
            return ""
        return ("..." + s[-n:]) if len(s) > n else s


DEVNULL_FD = [None]


def spawn(argv, log):
    """Run argv to completion. Returns (exit code, ru_maxrss KiB, elapsed ms).
    posix_spawn + wait4 for every runtime alike; the child gets its own process group
    so a terminal Ctrl-C reaches only us (cleanup then finishes the child's work)."""
    log.reset()
    fa = [(os.POSIX_SPAWN_DUP2, DEVNULL_FD[0], 0), (os.POSIX_SPAWN_DUP2, log.fd, 1),
          (os.POSIX_SPAWN_DUP2, log.fd, 2)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, ENV, file_actions=fa, setpgroup=0)
    INFLIGHT[0] = pid
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    INFLIGHT[0] = None
    return os.waitstatus_to_exitcode(status), ru.ru_maxrss, (t1 - t0) / 1e6


def quiet(argv, timeout=20):
    """Untimed helper command (cleanup, version queries)."""
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, env=ENV, start_new_session=True)
        return r.returncode, (r.stdout + r.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return -1, str(e)


# ---------------------------------------------------------------- runtimes

class Runtime:
    def __init__(self, name, binary, tmp, wrap=None):
        self.name = name
        self.binary = binary
        self.wrap = wrap                  # argv prefix or None
        self.cmd = (wrap or []) + [binary]
        self.root = os.path.join(tmp, "root-" + name)
        os.makedirs(self.root)
        self.work = os.path.join(tmp, "work-" + name)
        os.makedirs(self.work)
        self.log = Log(os.path.join(self.work, "out.log"))
        self.version = first_line([binary, "--version"])
        self.sections = []                # sections still measured
        self.samples = {}                 # section -> [ms]
        self.phases = {}                  # section -> {phase: [ms]}
        self.rss = {}                     # "create"/"run" -> max KiB
        self.fail = {}                    # section -> count
        self.consec = {}                  # section -> consecutive failures
        self.notes = []
        self.leaked_cgroups = 0
        self.left_state = 0
        self.live = set()                 # ids that may still exist in the runtime's state
        self.launcher = None              # RssLauncher during the RSS pass
        self.last_exit = None
        self.create_at = {}               # section -> {iteration: create ms} (seccomp cost, paired)
        self.exec_id = None               # the long-running container of the exec section
        self.exec_pid = None
        self.exec_pidfd = None

    def how(self):
        if self.wrap:
            return "%s (wrapped: %s %s ...)" % (self.binary, " ".join(self.wrap[:-2]),
                                                 shlex.quote(self.wrap[-2]))
        return "%s (direct)" % self.binary

    def argv(self, *args):
        return self.cmd + ["--root", self.root] + list(args)

    def note_rss(self, key, kib):
        self.rss[key] = max(self.rss.get(key, 0), kib)

    def fail_msg(self, step, rc):
        out = self.log.tail()
        return "%s exited %s%s" % (step, rc, (": " + out) if out else " (no output)")

    # -- measured operations ------------------------------------------------

    def timed(self, argv, rss_key=None):
        """spawn(); in the RSS pass (self.launcher set) create/run go through the small launcher."""
        if self.launcher and rss_key:
            rc, _, t = spawn(self.launcher.wrap(argv), self.log)
            kib = self.launcher.read()
            if kib is not None:
                self.note_rss(rss_key, kib)
            return rc, t
        rc, _, t = spawn(argv, self.log)
        return rc, t

    def measure(self, bundle, sec, cid, a):
        """One measured operation of section sec; returns (total ms, phases or None)."""
        if sec == "run":
            return self.run(bundle, cid, a.expect_exit, a.timeout)
        if sec == "exec":
            return self.exec(0)
        return self.lifecycle(bundle, cid, LIFECYCLE_VARIANT[sec], a.timeout)

    def read_pidfile(self, pidfile, step):
        """pid from the --pid-file the runtime wrote, and a pidfd on it."""
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
        except FileNotFoundError:
            out = self.log.tail()
            raise OpError("%s exited 0 but wrote no --pid-file%s" % (step, (": " + out) if out else ""))
        except (OSError, ValueError) as e:
            raise OpError("%s wrote an unusable --pid-file %s: %s" % (step, pidfile, e))
        os.unlink(pidfile)
        try:
            return pid, os.pidfd_open(pid)
        except OSError as e:
            raise OpError("pidfd_open(%d) after %s: %s" % (pid, step, e))

    def lifecycle(self, bundle, cid, variant, timeout, args=None):
        """create -> start -> container exit -> delete; returns (total ms, (create, start+wait, delete))."""
        bundle.write(cid, variant, args)
        pidfile = os.path.join(self.work, cid + ".pid")
        self.live.add(cid)
        self.last_exit = None
        rc, t_create = self.timed(self.argv("create", "--bundle", bundle.path, "--pid-file", pidfile, cid),
                                  "create" if variant == "plain" else "create-" + variant)
        if rc != 0:
            raise OpError(self.fail_msg("create", rc))
        pid, pfd = self.read_pidfile(pidfile, "create")
        plain = variant == "plain"
        if self.launcher and plain:
            self.created_rss(pid, cid)
        try:
            poller = select.poll()
            poller.register(pfd, select.POLLIN)
            t0 = time.perf_counter_ns()
            rc, _ = self.timed(self.argv("start", cid), "start" if plain else None)
            if rc != 0:
                raise OpError(self.fail_msg("start", rc))
            if not poller.poll(int(timeout * 1000)):
                try:
                    signal.pidfd_send_signal(pfd, signal.SIGKILL)
                except OSError:
                    pass
                raise OpError("container process %d did not exit within %ss after start" % (pid, timeout))
            try:  # we are its subreaper: reap it now so `delete` never sees a zombie
                st = os.waitid(os.P_PIDFD, pfd, os.WEXITED | os.WNOHANG)
                if st is not None:
                    self.last_exit = st.si_status if st.si_code == os.CLD_EXITED else 128 + st.si_status
            except ChildProcessError:
                pass                      # not re-parented to us (a runtime keeps a parent around)
            t_start = (time.perf_counter_ns() - t0) / 1e6
        finally:
            os.close(pfd)
        rc, t_delete = self.timed(self.argv("delete", cid), "delete" if plain else None)
        if rc != 0:
            raise OpError(self.fail_msg("delete", rc))
        self.live.discard(cid)
        return t_create + t_start + t_delete, (t_create, t_start, t_delete)

    def created_rss(self, pid, cid):
        """RSS pass only: the container's init waiting in `created` (VmRSS once it sleeps), and
        the peak RSS of `state` and `kill ID 0` on it."""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "S":
                        break
            except OSError:
                break
            time.sleep(0.005)
        time.sleep(0.05)
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.note_rss("init waiting", int(line.split()[1]))
        except OSError:
            pass
        for key, argv in (("state", self.argv("state", cid)), ("kill 0", self.argv("kill", cid, "0"))):
            rc, _ = self.timed(argv, key)
            note = "RSS pass: %s exited %d" % (key, rc)
            if rc != 0 and note not in self.notes:
                self.notes.append(note)

    def run(self, bundle, cid, expect, _timeout, args=None):
        """attached run; the runtime must exit with the container's code."""
        bundle.write(cid, "plain", args)
        self.live.add(cid)
        rc, t = self.timed(self.argv("run", "--bundle", bundle.path, cid), "run")
        if rc != expect:
            raise OpError(self.fail_msg("run", rc) + " (expected %d)" % expect)
        if os.path.exists(os.path.join(self.root, cid)):
            self.left_state += 1          # runc/crun remove the state of an attached run themselves
        else:
            self.live.discard(cid)
        return t, None

    def start_exec_container(self, bundle, timeout):
        """Untimed: `run -d` the long-running container that the exec section enters."""
        cid = "%s-exec" % self.name
        bundle.write(cid, "plain", EXEC_ARGS)
        pidfile = os.path.join(self.work, cid + ".pid")
        self.live.add(cid)
        self.exec_id = cid
        # the container inherits the log file as stdout/stderr (a pipe would never see EOF)
        rc, _, _ = spawn(self.argv("run", "-d", "--bundle", bundle.path, "--pid-file", pidfile, cid), self.log)
        if rc != 0:
            raise OpError(self.fail_msg("run -d", rc))
        self.exec_pid, self.exec_pidfd = self.read_pidfile(pidfile, "run -d")
        if select.select([self.exec_pidfd], [], [], 0.05)[0]:
            raise OpError("run -d: container process %d (%s) exited at once: %s"
                          % (self.exec_pid, " ".join(EXEC_ARGS), self.log.tail()))

    def stop_exec_container(self):
        """Untimed: delete -f the exec section's container; returns (rc, output) or None."""
        if self.exec_id is None:
            return None
        r = self.force_delete(self.exec_id)
        if self.exec_pidfd is not None:
            os.close(self.exec_pidfd)
        self.exec_id = self.exec_pid = self.exec_pidfd = None
        return r

    def exec(self, expect, args=("true",)):
        """attached `exec ID ARGS` into the running container; must exit with expect."""
        if self.exec_id is None:
            raise OpError("no running container to exec into")
        rc, t = self.timed(self.argv("exec", self.exec_id, *args), "exec")
        if rc != expect:
            gone = ""
            if self.exec_pidfd is not None and select.select([self.exec_pidfd], [], [], 0)[0]:
                gone = " (the container process %d has exited)" % self.exec_pid
            raise OpError(self.fail_msg("exec", rc) + " (expected %d)%s" % (expect, gone))
        return t, None

    def probe(self, bundle, sec, timeout):
        """Prove the container really ran (a stub that exits 0 must not pass): the process writes
        a marker into the rootfs and exits 7. For seccomp it also runs `linux32 true`, which the
        profile must refuse (personality(2) is not allowed): else it exits 9."""
        cid = "%s-probe-%s" % (self.name, sec)
        marker = os.path.join(bundle.rootfs, "tmp", "probe-" + cid)
        script = "echo ok > /tmp/probe-%s; " % cid
        if sec == "seccomp":
            script += "linux32 true 2>/dev/null && exit 9; "
        args = ["sh", "-c", script + "exit 7"]
        if sec == "run":
            self.run(bundle, cid, 7, timeout, args=args)
        elif sec == "exec":
            self.exec(7, args)
        else:
            self.lifecycle(bundle, cid, LIFECYCLE_VARIANT[sec], timeout, args=args)
            if self.last_exit == 9 and sec == "seccomp":
                raise OpError("the seccomp profile was not applied: personality(2) (linux32 true) succeeded")
            if self.last_exit not in (None, 7):
                raise OpError("probe container exited %s, expected 7" % self.last_exit)
        if not os.path.exists(marker):
            raise OpError("the container process never ran: probe %s was not written into the rootfs" % marker)
        os.unlink(marker)

    def force_delete(self, cid):
        rc, out = quiet(self.argv("delete", "-f", cid))
        if rc == 0 or not os.path.exists(os.path.join(self.root, cid)):
            self.live.discard(cid)
        return rc, out


class RssLauncher:
    """Peak RSS needs a small parent: a child of this Python process starts with Python's
    ~15 MiB high-water mark (exec keeps the larger of the old and new image's peak), so
    ru_maxrss from our own wait4 would only show Python. GNU time (or busybox time) is the
    parent instead; it reports ru_maxrss from its wait4 of the runtime (%M, KiB)."""

    def __init__(self, tmp, busybox):
        self.file = os.path.join(tmp, "rss.out")
        gnu = shutil.which("time", path=ENV["PATH"])
        if gnu and "GNU" in first_line([gnu, "--version"]):
            self.prefix = [gnu, "-f", "%M", "-o", self.file]
            self.desc = "GNU time (%s -f %%M)" % gnu
        else:
            self.prefix = [busybox, "time", "-f", "%M", "-o", self.file]
            self.desc = "busybox time (%s time -f %%M; has a higher own floor)" % busybox

    def wrap(self, argv):
        return self.prefix + argv

    def read(self):
        try:
            with open(self.file) as f:
                lines = f.read().split()
            return int(lines[-1])
        except (OSError, ValueError, IndexError):
            return None


class Reference:
    """A reference command measured alongside the runtimes (not a runtime)."""

    def __init__(self, name, argv, desc, tmp):
        self.name = name
        self.argv = argv
        self.desc = desc
        self.samples = []
        self.rss = 0
        self.fail = 0
        self.log = Log(os.path.join(tmp, "ref-%s.log" % name))

    def measure(self, launcher=None):
        argv = launcher.wrap(self.argv) if launcher else self.argv
        rc, _, t = spawn(argv, self.log)
        if rc != 0:
            raise OpError("%s exited %s: %s" % (" ".join(self.argv), rc, self.log.tail()))
        if launcher:
            kib = launcher.read()
            if kib is not None:
                self.rss = max(self.rss, kib)
        return t


# ---------------------------------------------------------------- cleanup of cgroups

def rm_cgroup_tree(path):
    """rmdir a cgroup directory bottom-up, killing any process left inside (ours only: path
    is always under our own /<prefix> at a hierarchy's root)."""
    if "process_api" in path or not os.path.isdir(path):
        return True
    ok = True
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            ok = rm_cgroup_tree(entry.path) and ok
    for attempt in range(50):
        try:
            os.rmdir(path)
            return ok
        except FileNotFoundError:
            return ok
        except OSError:
            try:
                with open(os.path.join(path, "cgroup.procs")) as f:
                    for p in f.read().split():
                        try:
                            os.kill(int(p), signal.SIGKILL)
                        except (OSError, ValueError):
                            pass
            except OSError:
                pass
            reap_orphans()
            time.sleep(0.02)
    print("bench: warning: could not remove cgroup %s" % path)
    return False


def leaked_cgroup(mounts, prefix, cid):
    """Remove (and report) a container cgroup the runtime left after delete/run."""
    leaked = False
    for m in mounts:
        p = os.path.join(m, prefix, cid)
        if os.path.isdir(p):
            leaked = True
            rm_cgroup_tree(p)
    return leaked


# ---------------------------------------------------------------- statistics and output

def stats(xs):
    if not xs:
        return None
    if len(xs) == 1:
        q = [xs[0]] * 9
    else:
        q = statistics.quantiles(xs, n=10, method="inclusive")
    return {"median": statistics.median(xs), "p10": q[0], "p90": q[8], "n": len(xs),
            "mean": statistics.fmean(xs), "min": min(xs), "max": max(xs)}


def shifted(st, by):
    if st is None:
        return None
    return {k: (v - by if k not in ("n",) else v) for k, v in st.items()}


def fmt(x, w=8, d=2):
    return ("%*.*f" % (w, d, x)) if x is not None else " " * (w - 1) + "-"


def ratio(a, b):
    return (a / b) if (a is not None and b) else None


def build_results(runtimes, refs, sections, wrap_ms):
    res = {}
    for sec in sections:
        rows = []
        for rt in runtimes:
            st = stats(rt.samples.get(sec, []))
            if st is None:
                continue
            ph = {p: stats(v) for p, v in rt.phases.get(sec, {}).items()}
            row = {"runtime": rt.name, "variant": "raw" if rt.wrap else "direct", "stats": st,
                   "phases": ph, "failures": rt.fail.get(sec, 0)}
            rows.append(row)
            if rt.wrap and wrap_ms is not None:
                k = CALLS[sec]
                rows.append({"runtime": rt.name, "variant": "minus wrapper x%d" % k,
                             "stats": shifted(st, k * wrap_ms),
                             "phases": {p: shifted(s, wrap_ms) for p, s in ph.items()},
                             "failures": rt.fail.get(sec, 0)})
        med = {}
        for r in rows:
            med.setdefault(r["runtime"], r["stats"]["median"])  # first row of each = raw/direct
            if r["variant"].startswith("minus"):
                med[r["runtime"] + "-adj"] = r["stats"]["median"]
        runc_m = med.get("runc")
        crun_adj = med.get("crun-adj", med.get("crun"))
        crun_raw = med.get("crun")
        for r in rows:
            m = r["stats"]["median"]
            r["x_runc"] = ratio(m, runc_m)
            r["x_crun"] = ratio(m, crun_adj)
            r["x_crun_raw"] = ratio(m, crun_raw)
        res[sec] = rows
    if "seccomp" in sections:
        res["seccomp_cost"] = seccomp_cost(runtimes)
    res["reference"] = [{"name": r.name, "desc": r.desc, "stats": stats(r.samples),
                         "rss_kib": r.rss, "failures": r.fail} for r in refs]
    return res


def seccomp_cost(runtimes):
    """Per runtime: median create with and without the profile (same run) and the difference;
    also the median of the per-iteration differences (pairs measured in the same iteration)."""
    out = []
    for rt in runtimes:
        plain = rt.create_at.get("lifecycle", {})
        filt = rt.create_at.get("seccomp", {})
        if not plain or not filt:
            continue
        m_plain = statistics.median(plain.values())
        m_filt = statistics.median(filt.values())
        paired = [filt[i] - plain[i] for i in filt if i in plain]
        out.append({"runtime": rt.name, "create_plain_median": m_plain, "create_seccomp_median": m_filt,
                    "cost_ms": m_filt - m_plain, "n_plain": len(plain), "n_seccomp": len(filt),
                    "paired_median_ms": statistics.median(paired) if paired else None,
                    "paired_n": len(paired)})
    return out


def print_seccomp_cost(rows):
    print()
    print("  seccomp cost at create  [ms; median create with the profile - without it (lifecycle section),"
          " same runtime, same run]")
    if not rows:
        print("    (needs the lifecycle and seccomp sections of the same runtime)")
        return
    print("    %-22s %10s %10s %8s %8s" % ("runtime", "without", "with", "cost", "paired"))
    for r in rows:
        print("    %-22s %s %s %s %s" % (r["runtime"], fmt(r["create_plain_median"], 10),
                                      fmt(r["create_seccomp_median"], 10), fmt(r["cost_ms"]),
                                      fmt(r["paired_median_ms"])))
    print("    paired = median of the per-iteration differences; a wrapper's cost (crun) is in both and"
          " cancels out")
    b = next((r for r in rows if r["runtime"] == "berth"), None)
    if b:
        print("    target: berth's cost under 2 ms: %s (%.2f ms)" % ("met" if b["cost_ms"] < 2 else "NOT met",
                                                                  b["cost_ms"]))


def print_results(results, runtimes, sections, iters_done, wrap_calls_note, rss_note, launcher_floor):
    for sec in sections:
        rows = results.get(sec, [])
        print()
        print("== %s  [ms, %d iterations] ==" % (SECTION_TITLES[sec], iters_done))
        if not rows:
            print("  (no runtime measured)")
            continue
        hdr = "  %-24s %8s %8s %8s %7s %7s %9s" % ("runtime", "median", "p10", "p90", "x runc", "x crun",
                                                   "x crun-raw")
        if sec in LIFECYCLE_VARIANT:
            hdr += "  |%8s %10s %8s" % ("create", "start+wait", "delete")
        print(hdr + "  fails")
        for r in rows:
            label = r["runtime"] + ("" if r["variant"] == "direct" else " (%s)" % r["variant"])
            st = r["stats"]
            line = "  %-24s %s %s %s %s %s %s" % (
                label, fmt(st["median"]), fmt(st["p10"]), fmt(st["p90"]),
                fmt(r["x_runc"], 7), fmt(r["x_crun"], 7), fmt(r["x_crun_raw"], 9))
            if sec in LIFECYCLE_VARIANT:
                ph = r["phases"]
                line += "  |%s %s %s" % (fmt(ph["create"]["median"] if ph.get("create") else None),
                                        fmt(ph["start+wait"]["median"] if ph.get("start+wait") else None, 10),
                                        fmt(ph["delete"]["median"] if ph.get("delete") else None))
            print(line + "  %5d" % r["failures"])
        if sec == "seccomp":
            print_seccomp_cost(results.get("seccomp_cost", []))
    refs = results.get("reference", [])
    if refs:
        print()
        print("== reference  [ms] ==")
        print("  %-24s %8s %8s %8s  %s" % ("", "median", "p10", "p90", "command"))
        for r in refs:
            st = r["stats"]
            if st is None:
                continue
            print("  %-24s %s %s %s  %s" % (r["name"], fmt(st["median"]), fmt(st["p10"]), fmt(st["p90"]),
                                           r["desc"]))
        if wrap_calls_note:
            print("  " + wrap_calls_note)
    print()
    print("== peak RSS of the runtime process (ru_maxrss via wait4, max over iterations)  [MiB] ==")
    if rss_note:
        print("  " + rss_note)
    if launcher_floor:
        print("  launcher's own floor (it running static busybox true): %.2f MiB; figures at that level are"
              " the floor, not the runtime" % (launcher_floor / 1024))
    keys = [k for k, s in (("create", "lifecycle"), ("start", "lifecycle"), ("state", "lifecycle"),
                           ("kill 0", "lifecycle"), ("delete", "lifecycle"), ("init waiting", "lifecycle"),
                           ("create-limits", "limits"), ("run", "run"), ("exec", "exec"),
                           ("create-seccomp", "seccomp")) if s in sections]
    print("  %-24s" % "runtime" + "".join("%13s" % k for k in keys))
    for rt in runtimes:
        if not rt.rss:
            continue
        print("  %-24s" % rt.name + "".join(fmt(rt.rss[k] / 1024 if k in rt.rss else None, 13)
                                          for k in keys))
    by_name = {rt.name: rt.rss for rt in runtimes if rt.rss}
    if "berth" in by_name:
        for peer in ("crun", "runc"):
            if peer in by_name:
                print("  %-24s" % ("x " + peer + " (berth/" + peer + ")") + "".join(
                    fmt(ratio(by_name["berth"].get(k), by_name[peer].get(k)), 13) for k in keys))
    for r in refs:
        if r["rss_kib"]:
            print("  %-24s%15s  (reference command)" % (r["name"], "%.2f" % (r["rss_kib"] / 1024)))
    notes = []
    for rt in runtimes:
        if rt.leaked_cgroups:
            notes.append("%s left %d container cgroup(s) after delete/run (removed by the harness, untimed)"
                         % (rt.name, rt.leaked_cgroups))
        if rt.left_state:
            notes.append("%s left its state after %d attached run(s) (removed with delete -f, untimed)"
                         % (rt.name, rt.left_state))
        notes.extend("%s: %s" % (rt.name, n) for n in rt.notes)
    if notes:
        print()
        for n in notes:
            print("note: " + n)


# ---------------------------------------------------------------- main

def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    tgt = os.environ.get("CARGO_TARGET_DIR") or os.path.join(repo, "target")
    ap = argparse.ArgumentParser(description="benchmark berth against runc and crun (run as root)")
    ap.add_argument("--runtimes", default="berth,runc,crun",
                    help="comma list of berth,runc,crun (default: all)")
    ap.add_argument("--iterations", "-n", type=int, default=200, help="measured iterations (default 200)")
    ap.add_argument("--warmup", type=int, default=3, help="unrecorded iterations after the check (default 3)")
    ap.add_argument("--sections", default=DEFAULT_SECTIONS,
                    help="comma list of %s (default: all); seccomp adds lifecycle, which it is "
                         "compared against" % DEFAULT_SECTIONS.replace(",", ", "))
    ap.add_argument("--with-limits", action="store_true",
                    help="make sure the limits section (lifecycle with memory/cpu/pids limits) is measured")
    ap.add_argument("--bundle-args", default="true",
                    help="the container process, shell-quoted (default: true); all busybox applets exist")
    ap.add_argument("--expect-exit", type=int, default=0, help="exit code `run` must return (default 0)")
    ap.add_argument("--rss-iterations", type=int, default=10,
                    help="untimed iterations of the peak-RSS pass (default 10)")
    ap.add_argument("--json", metavar="FILE", help="write machine-readable results to FILE")
    ap.add_argument("--berth", default=os.environ.get("BERTH") or os.path.join(tgt, "x86_64-unknown-linux-gnu", "release", "berth"),
                    help="berth binary (default: $BERTH, else $CARGO_TARGET_DIR or <repo>/target, "
                         "then /x86_64-unknown-linux-gnu/release/berth)")
    ap.add_argument("--runc", default=os.environ.get("RUNC") or shutil.which("runc", path=ENV["PATH"]))
    ap.add_argument("--crun", default=os.environ.get("CRUN") or shutil.which("crun", path=ENV["PATH"]))
    ap.add_argument("--busybox", default=os.environ.get("BUSYBOX") or "/bin/busybox",
                    help="static busybox for the rootfs (default /bin/busybox)")
    ap.add_argument("--crun-wrap", choices=("auto", "always", "never"), default="auto",
                    help="run crun in a private mount ns with %s unmounted (auto: on a hybrid host)" % UNIFIED)
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds to wait for the container process to exit (default 10)")
    ap.add_argument("--tmpdir", help="where the temp dir (bundle, --root dirs) goes (default: /run or /dev/shm if tmpfs)")
    ap.add_argument("--order", choices=("shuffle", "rotate"), default="shuffle",
                    help="order of the operations in an iteration: a fresh random order each iteration "
                         "(default), or the same order rotated by one")
    ap.add_argument("--seed", type=int, default=1, help="seed of --order shuffle (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (for debugging)")
    a = ap.parse_args()
    a.runtimes = [r.strip() for r in a.runtimes.split(",") if r.strip()]
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    for r in a.runtimes:
        if r not in ("berth", "runc", "crun"):
            ap.error("unknown runtime %r (berth, runc, crun)" % r)
    for s in a.sections:
        if s not in SECTION_TITLES:
            ap.error("unknown section %r (%s)" % (s, DEFAULT_SECTIONS.replace(",", ", ")))
    a.sections = list(dict.fromkeys(a.sections))
    if a.with_limits and "limits" not in a.sections:
        a.sections.append("limits")
    a.added = None
    if "seccomp" in a.sections and "lifecycle" not in a.sections:
        a.sections.insert(a.sections.index("seccomp"), "lifecycle")
        a.added = "lifecycle (the seccomp section is compared against it)"
    a.proc_args = shlex.split(a.bundle_args)
    if not a.proc_args:
        ap.error("--bundle-args is empty")
    if a.iterations < 1:
        ap.error("--iterations must be >= 1")
    return a


def on_term(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    a = parse_args()
    if os.geteuid() != 0:
        die("must run as root (runtimes create namespaces and cgroups)")
    for tool in ("unshare", "chroot"):
        if not shutil.which(tool, path=ENV["PATH"]):
            die("%s not found (util-linux / coreutils)" % tool)
    if not os.path.exists(a.busybox):
        die("busybox not found at %s (apt-get install -y busybox-static)" % a.busybox)
    if not is_static_elf(a.busybox):
        die("%s is not a static ELF (apt-get install -y busybox-static)" % a.busybox)

    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    set_subreaper()
    DEVNULL_FD[0] = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    base = a.tmpdir or tmpfs_dir()        # state on tmpfs, as runc's and crun's default roots are
    tmp = tempfile.mkdtemp(prefix="berth-bench-", dir=base)
    prefix = "berth-bench-%d" % os.getpid()
    mode = cgroup_mode()
    runtimes, refs = [], []
    skipped = []
    iters_done = 0
    rss_note, launcher_floor = None, None
    interrupted = False
    wrap_ms = None
    load0 = os.getloadavg()
    try:
        bundle_path, rootfs, spec, spec_source = make_bundle(tmp, a.busybox, a.runc, a.proc_args)
        bundle = Bundle(bundle_path, rootfs, spec, prefix)
        mounts = cgroup_mounts()
        unshare = shutil.which("unshare", path=ENV["PATH"])
        chroot = shutil.which("chroot", path=ENV["PATH"])
        true_bin = shutil.which("true", path=ENV["PATH"])
        crun_wrapped = a.crun_wrap == "always" or (a.crun_wrap == "auto" and mode == "hybrid")
        wrap = [unshare, "-m", "--propagation", "private", "sh", "-c", CRUN_WRAP_SCRIPT]

        for name in a.runtimes:
            binary = {"berth": a.berth, "runc": a.runc, "crun": a.crun}[name]
            if not binary or not os.access(binary, os.X_OK):
                skipped.append("skip %s: binary not found (%s)" % (name, binary or "not on PATH"))
                continue
            runtimes.append(Runtime(name, os.path.abspath(binary), tmp,
                                    wrap=list(wrap) if (name == "crun" and crun_wrapped) else None))

        floor = Reference("kernel floor", [unshare, "-m", "-p", "-n", "-i", "-u", "-f", chroot, rootfs, "/bin/true"],
                          "unshare -m -p -n -i -u -f chroot ROOTFS /bin/true", tmp)
        refs.append(floor)
        if any(rt.wrap for rt in runtimes):
            refs.append(Reference("crun wrapper no-op", wrap + [true_bin],
                                  "unshare -m --propagation private sh -c %s %s"
                                  % (shlex.quote(CRUN_WRAP_SCRIPT), true_bin), tmp))

        # header
        print("berth bench: %s, kernel %s, %d CPUs, cgroup %s, python %s, load average %.2f %.2f %.2f" % (
            time.strftime("%Y-%m-%d %H:%M:%S"), platform.release(), os.cpu_count() or 0, mode,
            platform.python_version(), *load0))
        print("bundle: %s; rootfs = static busybox %s; config from %s; args %s; terminal false; "
              "root writable; cgroupsPath /%s/<id>" % (bundle_path, a.busybox, spec_source,
                                                        json.dumps(a.proc_args), prefix))
        order = ("order shuffled each iteration, seed %d" % a.seed if a.order == "shuffle"
                 else "order rotated each iteration")
        print("method: one run, round-robin per iteration (%s); every command "
              "via posix_spawn + wait4; pid from --pid-file after create; exit seen via pidfd_open + poll "
              "(harness is child subreaper and reaps it); fresh id per iteration; --root per runtime in %s"
              % (order, tmp))
        print("sections: %s" % ", ".join(a.sections) + ("; added %s" % a.added if a.added else ""))
        if "exec" in a.sections:
            print("exec: per runtime one container started untimed with `run -d` (args %s, its own id and "
                  "cgroupsPath), then `exec ID true` attached per iteration (must exit 0); delete -f at the end"
                  % json.dumps(EXEC_ARGS))
        if "seccomp" in a.sections:
            print("seccomp: the lifecycle with linux.seccomp = defaultAction SCMP_ACT_ERRNO, one SCMP_ACT_ALLOW"
                  " rule of %d syscall names (docker-allowed; personality left out), arches %s; the same"
                  " profile every iteration; a runtime's lifecycle and seccomp operations run back to back,"
                  " in alternating order" % (len(SECCOMP_NAMES), ", ".join(x[10:] for x in SECCOMP_ARCHES)))
        for rt in runtimes:
            print("peer %-6s %s; %s" % (rt.name + ":", rt.version, rt.how()))
        if any(rt.wrap for rt in runtimes):
            print("       crun 1.8 refuses a hybrid cgroup host, so each crun invocation runs in a private mount"
                  " namespace with the cgroup2 mount hidden; its figures are shown raw and minus the median"
                  " cost of that wrapper (x3 for a lifecycle, x1 for run and exec)")
        for s in skipped:
            print(s)

        # check each runtime and section once; a failure skips it with the error
        for rt in list(runtimes):
            for sec in a.sections:
                cid = "%s-check-%s" % (rt.name, sec)
                try:
                    if sec == "exec":
                        rt.start_exec_container(bundle, a.timeout)
                    rt.probe(bundle, sec, a.timeout)
                    rt.measure(bundle, sec, cid, a)
                    rt.sections.append(sec)
                except OpError as e:
                    print("skip %s for %s: first run failed: %s" % (rt.name, sec, e))
                    rt.force_delete(cid)
                    rt.force_delete("%s-probe-%s" % (rt.name, sec))
                    if sec == "exec":
                        rt.stop_exec_container()
                        after_op(rt, mounts, prefix, "%s-exec" % rt.name)
                after_op(rt, mounts, prefix, cid)
                after_op(rt, mounts, prefix, "%s-probe-%s" % (rt.name, sec))
            if not rt.sections:
                print("skip %s: no section works" % rt.name)
                runtimes.remove(rt)
                rt.stop_exec_container()
        for ref in list(refs):
            try:
                ref.measure()
            except OpError as e:
                print("skip reference %s: %s" % (ref.name, e))
                refs.remove(ref)
        if not runtimes:
            print("bench: no runtime could be measured")
            return 1
        print()

        units = make_units(runtimes, refs, a.sections)
        rng = random.Random(a.seed)
        total = a.warmup + a.iterations
        tty = sys.stderr.isatty()
        for it in range(total):
            record = it >= a.warmup
            for obj, sec in schedule(units, it, a.order, rng):
                if isinstance(obj, Reference):
                    try:
                        t = obj.measure()
                        if record:
                            obj.samples.append(t)
                    except OpError:
                        obj.fail += 1
                    continue
                rt = obj
                if sec not in rt.sections:
                    continue
                cid = "%s-%s%d" % (rt.name, ID_CODE[sec], it)
                try:
                    t, ph = rt.measure(bundle, sec, cid, a)
                    rt.consec[sec] = 0
                    if record:
                        rt.samples.setdefault(sec, []).append(t)
                        if ph:
                            d = rt.phases.setdefault(sec, {p: [] for p in PHASES})
                            for p, v in zip(PHASES, ph):
                                d[p].append(v)
                            rt.create_at.setdefault(sec, {})[it] = ph[0]
                except OpError as e:
                    rt.fail[sec] = rt.fail.get(sec, 0) + 1
                    rt.consec[sec] = rt.consec.get(sec, 0) + 1
                    if sec != "exec":     # exec's container stays for the next iteration
                        rt.force_delete(cid)
                    if rt.consec[sec] >= 3:
                        rt.sections.remove(sec)
                        msg = "dropped from %s after 3 failures in a row: %s" % (sec, e)
                        rt.notes.append(msg)
                        print("bench: %s %s" % (rt.name, msg), file=sys.stderr)
                if sec != "exec":
                    after_op(rt, mounts, prefix, cid)
            reap_orphans()
            if record:
                iters_done += 1
            if tty:
                print("\r  iteration %d/%d%s" % (it + 1, total, " (warm-up)" if not record else ""),
                      end="", file=sys.stderr, flush=True)
        if tty:
            print("\r" + " " * 40 + "\r", end="", file=sys.stderr)

        # peak RSS: a separate, untimed pass with create/run launched through a small parent
        launcher = RssLauncher(tmp, a.busybox)
        rss_note = "%d untimed iteration(s) after the timed ones; create, run and exec launched through %s" % (
            min(a.rss_iterations, a.iterations), launcher.desc)
        try:
            Reference("launcher floor", [a.busybox, "true"], "", tmp).measure(launcher)
            launcher_floor = launcher.read()
        except OpError:
            launcher_floor = None
        for it in range(min(a.rss_iterations, a.iterations)):
            for rt in runtimes:
                rt.launcher = launcher
                try:
                    for sec in list(rt.sections):
                        cid = "%s-rss-%s%d" % (rt.name, ID_CODE[sec], it)
                        try:
                            rt.measure(bundle, sec, cid, a)
                        except OpError as e:
                            if sec != "exec":
                                rt.force_delete(cid)
                            if it == 0:
                                rt.notes.append("RSS pass, %s: %s" % (sec, e))
                        if sec != "exec":
                            after_op(rt, mounts, prefix, cid)
                finally:
                    rt.launcher = None
            for ref in refs:
                try:
                    ref.measure(launcher)
                except OpError:
                    pass
            reap_orphans()
        # the exec section's containers (on Ctrl-C, cleanup() deletes them with the rest)
        for rt in runtimes:
            cid = rt.exec_id
            r = rt.stop_exec_container()
            if r is None:
                continue
            if r[0] != 0:
                rt.notes.append("delete -f %s exited %d: %s" % (cid, r[0], r[1]))
            after_op(rt, mounts, prefix, cid)
        reap_orphans()
    except KeyboardInterrupt:
        interrupted = True
        print("\nbench: interrupted after %d measured iteration(s); cleaning up" % iters_done, file=sys.stderr)
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        cleanup(tmp, prefix, runtimes, a.keep)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})

    wrap_ref = next((r for r in refs if r.name == "crun wrapper no-op"), None)
    if wrap_ref and wrap_ref.samples:
        wrap_ms = statistics.median(wrap_ref.samples)
    results = build_results(runtimes, refs, a.sections, wrap_ms)
    note = None
    if wrap_ms is not None:
        note = ("crun (minus wrapper xN) = crun raw - N x %.2f ms (wrapper no-op median); "
                "x crun uses that figure, x crun-raw the raw one" % wrap_ms)
    load1 = os.getloadavg()
    if iters_done:
        print_results(results, runtimes, a.sections, iters_done, note, rss_note, launcher_floor)
        print("\nload average at the end: %.2f %.2f %.2f (1, 5, 15 min; %d CPUs): other work on the host"
              " spreads the figures" % (*load1, os.cpu_count() or 0))
    if a.json:
        doc = {
            "meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kernel": platform.release(),
                     "cpus": os.cpu_count(), "cgroup_mode": mode,
                     "loadavg_start": list(load0), "loadavg_end": list(load1), "iterations": iters_done,
                     "order": a.order, "seed": a.seed if a.order == "shuffle" else None,
                     "warmup": a.warmup, "interrupted": interrupted, "bundle_args": a.proc_args,
                     "sections": a.sections, "limits": LIMITS, "wrapper_median_ms": wrap_ms,
                     "exec_container_args": EXEC_ARGS,
                     "seccomp_profile": seccomp_profile() if "seccomp" in a.sections else None,
                     "rss_method": rss_note, "rss_launcher_floor_kib": launcher_floor,
                     "skipped": skipped,
                     "peers": {rt.name: {"binary": rt.binary, "version": rt.version, "how": rt.how()}
                               for rt in runtimes}},
            "results": results,
            "rss_kib": {rt.name: rt.rss for rt in runtimes},
            "samples_ms": {rt.name: rt.samples for rt in runtimes},
            "phase_samples_ms": {rt.name: rt.phases for rt in runtimes},
            "reference_samples_ms": {r.name: r.samples for r in refs},
            "notes": {rt.name: rt.notes for rt in runtimes},
        }
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
        print("\nwrote %s" % a.json)
    return 130 if interrupted else 0


def make_units(runtimes, refs, sections):
    """What one iteration runs, as units kept together: one operation each, except a runtime's
    lifecycle and seccomp, which run back to back so that the seccomp cost compares two creates
    made under the same conditions."""
    units = []
    for sec in sections:
        for rt in runtimes:
            if sec not in rt.sections or (sec == "seccomp" and "lifecycle" in rt.sections):
                continue
            if sec == "lifecycle" and "seccomp" in rt.sections:
                units.append([(rt, "lifecycle"), (rt, "seccomp")])
            else:
                units.append([(rt, sec)])
    return units + [[(ref, None)] for ref in refs]


def schedule(units, it, order, rng):
    """Iteration it's operations: every unit once, units in a fresh random order (shuffle) or
    rotated by one (rotate); the order inside a unit alternates between iterations.
    Why shuffle: an operation is slowed by what ran just before it (e.g. a delete's cgroup
    teardown finishes asynchronously in the kernel); rotation keeps each operation's
    predecessor fixed, which biases one runtime against another."""
    if order == "rotate":
        k = it % len(units)
        seq = units[k:] + units[:k]
    else:
        seq = list(units)
        rng.shuffle(seq)
    return [op for u in seq for op in (u if it % 2 == 0 else u[::-1])]


def after_op(rt, mounts, prefix, cid):
    """Untimed: clear whatever the operation left (state of a run, container cgroup)."""
    if cid in rt.live and os.path.exists(os.path.join(rt.root, cid)):
        rt.force_delete(cid)
    if leaked_cgroup(mounts, prefix, cid):
        rt.leaked_cgroups += 1


def cleanup(tmp, prefix, runtimes, keep):
    # 1. the command we were waiting for when interrupted: let it finish, else kill its group
    pid = INFLIGHT[0]
    if pid:
        deadline = time.monotonic() + 10
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                deadline = time.monotonic() + 5
            time.sleep(0.02)
        INFLIGHT[0] = None
    # 2. every container a runtime may still know about
    for rt in runtimes:
        names = set(rt.live)
        try:   # only our ids: a runtime may keep other things in its root (berth: ~seccomp cache)
            names.update(e.name for e in os.scandir(rt.root)
                         if e.is_dir() and e.name.startswith(rt.name + "-"))
        except OSError:
            pass
        for cid in sorted(names):
            rc, out = rt.force_delete(cid)
            if rc != 0 and os.path.exists(os.path.join(rt.root, cid)):
                print("bench: warning: %s delete -f %s: %s" % (rt.name, cid, out))
    # 3. cgroups under our private prefix in every hierarchy (kills anything left inside)
    for m in cgroup_mounts():
        rm_cgroup_tree(os.path.join(m, prefix))
    # 4. zombies re-parented to us
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            p, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if p == 0:
            time.sleep(0.02)
    # 5. the temp dir, but never through a mount point left inside it
    if keep:
        print("bench: kept %s" % tmp, file=sys.stderr)
        return
    stuck = [m for m, _ in mountinfo() if m == tmp or m.startswith(tmp + "/")]
    for m in sorted(stuck, key=len, reverse=True):
        quiet(["umount", "-l", m])
    if [m for m, _ in mountinfo() if m == tmp or m.startswith(tmp + "/")]:
        print("bench: warning: mounts remain under %s; not removing it" % tmp, file=sys.stderr)
        return
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
