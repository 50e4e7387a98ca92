//! Test harness: busybox bundle fixtures, a runtime runner with timeouts, leftover checks and a
//! console-socket receiver. Every test makes one `Ctx`; dropping it deletes every container the
//! test made, unmounts what is left under its temp dir and removes the dir.
#![allow(dead_code)]

pub mod images;
pub mod registry;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Base of every temp dir the suite makes.
pub const TMP_BASE: &str = "/tmp/berth-itest";
/// Default time limit for one runtime command.
pub const TIMEOUT: Duration = Duration::from_secs(30);

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// The binary under test

/// BERTH_BIN if set, else the berth binary cargo built.
pub fn bin() -> PathBuf {
    match std::env::var_os("BERTH_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_berth")),
    }
}

/// True when the binary under test is runc (BERTH_BIN=/usr/sbin/runc): tests that check
/// berth-only behaviour, or behaviour where runc deviates from the spec, skip or relax on it.
pub fn is_runc() -> bool {
    static R: OnceLock<bool> = OnceLock::new();
    *R.get_or_init(|| {
        let name = bin().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.contains("runc") {
            return true;
        }
        match Command::new(bin()).arg("--version").stdin(Stdio::null()).output() {
            Ok(o) => String::from_utf8_lossy(&o.stdout).starts_with("runc"),
            Err(_) => false,
        }
    })
}

/// Prints a skip note (visible with --nocapture) and returns true when running against runc.
pub fn skip_on_runc(why: &str) -> bool {
    if is_runc() {
        eprintln!("SKIPPED on runc: {why}");
        return true;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Busybox

struct BusyboxTemplate {
    path: PathBuf,
    applets: Vec<String>,
}

fn busybox_template() -> &'static BusyboxTemplate {
    static T: OnceLock<BusyboxTemplate> = OnceLock::new();
    T.get_or_init(|| {
        let src = Path::new("/bin/busybox");
        let data = fs::read(src).unwrap_or_else(|e| panic!("/bin/busybox: {e} (apt-get install -y busybox-static)"));
        assert!(elf_is_static(&data), "/bin/busybox is dynamically linked: install Debian's busybox-static");
        fs::create_dir_all(TMP_BASE).unwrap();
        fs::set_permissions(TMP_BASE, fs::Permissions::from_mode(0o755)).unwrap();
        // One shared copy (rootfs busyboxes are hard links to it); replaced atomically when
        // it differs from /bin/busybox.
        let path = Path::new(TMP_BASE).join("busybox");
        if fs::read(&path).ok().as_deref() != Some(&data[..]) {
            let tmp = Path::new(TMP_BASE).join(format!("busybox.{}.tmp", std::process::id()));
            fs::write(&tmp, &data).unwrap();
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
            fs::rename(&tmp, &path).unwrap();
        }
        let out = Command::new(src).arg("--list-full").output().expect("busybox --list-full");
        let applets = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.contains(".."))
            .collect();
        BusyboxTemplate { path, applets }
    })
}

/// True when a 64-bit little-endian ELF has no PT_INTERP program header.
fn elf_is_static(d: &[u8]) -> bool {
    if d.len() < 64 || &d[0..4] != b"\x7fELF" || d[4] != 2 || d[5] != 1 {
        return false;
    }
    let u16le = |o: usize| u16::from_le_bytes([d[o], d[o + 1]]) as usize;
    let u64le = |o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64le(0x20), u16le(0x36), u16le(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 > d.len() || u32::from_le_bytes(d[o..o + 4].try_into().unwrap()) != 3
    })
}

// ---------------------------------------------------------------------------------------------
// Bundle fixture

/// A busybox bundle: `dir/config.json` (written by `write_config`) and `dir/rootfs`.
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub config: Value,
    /// cgroupsPath is set to /berth/<id> at write time unless the test set its own.
    cg_auto: bool,
}

/// The `runc spec` defaults (runc 1.1.5), with terminal off and a test hostname.
pub fn default_config() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth-test",
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
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n";
pub const GROUP: &str = "root:x:0:\nwheel:x:10:\nuucp:x:20:\nuser:x:1000:\n";
/// Content of /etc/berth-fixture in every rootfs: lets a test tell the rootfs from the host.
pub const FIXTURE_MARK: &str = "berth-itest-rootfs\n";

impl Bundle {
    fn new(dir: PathBuf) -> Bundle {
        let rootfs = dir.join("rootfs");
        mkdir(&rootfs, 0o755);
        for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root", "home/user", "var"] {
            mkdir(&rootfs.join(d), 0o755);
        }
        mkdir(&rootfs.join("tmp"), 0o1777);
        let t = busybox_template();
        let bb = rootfs.join("bin/busybox");
        if fs::hard_link(&t.path, &bb).is_err() {
            fs::copy(&t.path, &bb).unwrap();
        }
        for a in &t.applets {
            let p = rootfs.join(a.trim_start_matches('/'));
            if p == bb || p.symlink_metadata().is_ok() {
                continue;
            }
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            symlink("/bin/busybox", &p).unwrap();
        }
        fs::write(rootfs.join("etc/passwd"), PASSWD).unwrap();
        fs::write(rootfs.join("etc/group"), GROUP).unwrap();
        fs::write(rootfs.join("etc/berth-fixture"), FIXTURE_MARK).unwrap();
        Bundle { dir, rootfs, config: default_config(), cg_auto: true }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Sets a value at a JSON pointer ("/process/cwd"), creating intermediate objects.
    pub fn set(&mut self, ptr: &str, v: Value) -> &mut Self {
        if ptr == "/linux/cgroupsPath" {
            self.cg_auto = false;
        }
        let mut cur = &mut self.config;
        let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
        for (i, p) in parts.iter().enumerate() {
            if i == parts.len() - 1 {
                match cur {
                    Value::Array(a) => {
                        let idx: usize = p.parse().expect("array index");
                        a[idx] = v;
                    }
                    _ => {
                        if !cur.is_object() {
                            *cur = json!({});
                        }
                        cur.as_object_mut().unwrap().insert(p.to_string(), v);
                    }
                }
                return self;
            }
            cur = match cur {
                Value::Array(a) => &mut a[p.parse::<usize>().expect("array index")],
                _ => {
                    if !cur.is_object() {
                        *cur = json!({});
                    }
                    cur.as_object_mut().unwrap().entry(p.to_string()).or_insert_with(|| json!({}))
                }
            };
        }
        self
    }

    pub fn get(&self, ptr: &str) -> Option<&Value> {
        self.config.pointer(ptr)
    }

    /// Removes the value at a JSON pointer, if there.
    pub fn remove(&mut self, ptr: &str) -> &mut Self {
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        if let Some(obj) = self.config.pointer_mut(if parent.is_empty() { "" } else { parent }) {
            if let Some(o) = obj.as_object_mut() {
                o.remove(key);
            }
        }
        self
    }

    pub fn args(&mut self, a: &[&str]) -> &mut Self {
        self.set("/process/args", json!(a))
    }

    /// process.args = ["sh", "-c", script]
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    pub fn env(&mut self, kv: &str) -> &mut Self {
        let env = self.config.pointer_mut("/process/env").unwrap().as_array_mut().unwrap();
        env.push(json!(kv));
        self
    }

    pub fn mount(&mut self, m: Value) -> &mut Self {
        self.config["mounts"].as_array_mut().unwrap().push(m);
        self
    }

    pub fn remove_mount(&mut self, dest: &str) -> &mut Self {
        self.config["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != dest);
        self
    }

    pub fn ns_add(&mut self, typ: &str, path: Option<&str>) -> &mut Self {
        self.ns_remove(typ);
        let mut n = json!({"type": typ});
        if let Some(p) = path {
            n["path"] = json!(p);
        }
        self.config["linux"]["namespaces"].as_array_mut().unwrap().push(n);
        self
    }

    pub fn ns_remove(&mut self, typ: &str) -> &mut Self {
        self.config["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != typ);
        self
    }

    /// Appends a hook of `kind` (createRuntime, createContainer, startContainer, poststart, poststop).
    pub fn hook(&mut self, kind: &str, h: Value) -> &mut Self {
        let hooks = self.config.as_object_mut().unwrap().entry("hooks").or_insert_with(|| json!({}));
        hooks.as_object_mut().unwrap().entry(kind).or_insert_with(|| json!([]));
        hooks[kind].as_array_mut().unwrap().push(h);
        self
    }

    pub fn writable_root(&mut self) -> &mut Self {
        self.set("/root/readonly", json!(false))
    }

    pub fn cgroups_path(&self) -> Option<String> {
        self.get("/linux/cgroupsPath").and_then(|v| v.as_str()).map(str::to_string)
    }

    /// Writes a file inside the rootfs (path relative to it), creating parent dirs.
    pub fn write_file(&self, rel: &str, content: &str, mode: u32) -> PathBuf {
        let p = self.rootfs.join(rel.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// Writes config.json. Unless the test set linux.cgroupsPath, it becomes /berth/<id>: the
    /// suite never leaves it unset (runc would then nest the cgroup under the caller's own).
    pub fn write_config(&mut self, id: &str) {
        if self.cg_auto {
            let cg = if id.is_empty() || id.contains('/') || id.contains("..") {
                format!("/berth/itest-{}-{}", std::process::id(), next())
            } else {
                format!("/berth/{id}")
            };
            self.config["linux"]["cgroupsPath"] = json!(cg);
        }
        fs::write(self.config_path(), serde_json::to_vec_pretty(&self.config).unwrap()).unwrap();
    }
}

pub fn mkdir(p: &Path, mode: u32) {
    fs::create_dir_all(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Running commands

/// The result of one command.
pub struct Out {
    pub cmdline: String,
    /// Exit code, 128+signal when killed by a signal, -1 on timeout.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub stdout_path: PathBuf,
    pub elapsed: Duration,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exit {}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            if self.timed_out { " (TIMED OUT, killed)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

impl Out {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(!self.timed_out && self.code == 0, "expected success: {self}");
        self
    }

    #[track_caller]
    pub fn fails(&self) -> &Self {
        assert!(!self.timed_out, "timed out: {self}");
        assert!(self.code != 0, "expected failure: {self}");
        self
    }

    /// Non-zero exit and stderr is exactly one non-empty line that contains (case-insensitive)
    /// at least one of `words`.
    #[track_caller]
    pub fn one_line_error(&self, words: &[&str]) -> &Self {
        self.fails();
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "stderr must be one line: {self}");
        let l = lines[0].to_lowercase();
        assert!(
            words.iter().any(|w| l.contains(&w.to_lowercase())),
            "stderr must name the problem (one of {words:?}): {self}"
        );
        self
    }

    /// The stdout file read again now (a created container writes its output there later).
    pub fn stdout_now(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn lines(&self) -> Vec<String> {
        self.stdout.lines().map(str::to_string).collect()
    }
}

/// A command running in the background.
pub struct Bg {
    child: Option<Child>,
    cmdline: String,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

impl Bg {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    /// Waits up to `timeout`; on timeout kills the command's process group.
    pub fn wait(mut self, timeout: Duration) -> Out {
        let mut child = self.child.take().unwrap();
        let deadline = self.started + timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) => {}
                Err(_) => break None,
            }
            if Instant::now() >= deadline {
                timed_out = true;
                kill_group(child.id() as i32);
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let code = if timed_out {
            -1
        } else {
            match status {
                Some(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
                None => -1,
            }
        };
        Out {
            cmdline: self.cmdline.clone(),
            code,
            stdout: fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
            timed_out,
            stdout_path: self.out.clone(),
            elapsed: self.started.elapsed(),
        }
    }

    /// True once the command has exited (it is then reaped by `wait`).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                kill_group(c.id() as i32);
            }
            let _ = c.wait();
        }
    }
}

fn kill_group(pid: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group this test created for
    // its own child (process_group(0)); no memory is involved.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

// ---------------------------------------------------------------------------------------------
// Per-test context

/// One test's world: a temp dir, a `--root` state dir, the ids it made.
pub struct Ctx {
    pub name: String,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub bin: PathBuf,
    ids: Mutex<Vec<String>>,
    n: AtomicU64,
    extra_children: Mutex<Vec<Child>>,
    /// BERTH_CACHE_DIR for every command, when the test asked for its own (see `private_cache`).
    cache: Option<PathBuf>,
}

impl Ctx {
    pub fn new(name: &str) -> Ctx {
        let _ = busybox_template();
        let dir = Path::new(TMP_BASE).join(format!("{}-{}-{}", std::process::id(), next(), name));
        mkdir(&dir, 0o755);
        let root = dir.join("state");
        mkdir(&root, 0o700);
        mkdir(&dir.join("out"), 0o755);
        Ctx {
            name: name.to_string(),
            dir,
            root,
            bin: bin(),
            ids: Mutex::new(Vec::new()),
            n: AtomicU64::new(0),
            extra_children: Mutex::new(Vec::new()),
            cache: None,
        }
    }

    fn seq(&self) -> u64 {
        self.n.fetch_add(1, Ordering::SeqCst)
    }

    /// A unique container id, registered for cleanup.
    pub fn id(&self, tag: &str) -> String {
        let id = format!("bt{}-{}-{}", std::process::id(), next(), tag);
        self.track(&id);
        id
    }

    /// Registers an id (made elsewhere) for cleanup.
    pub fn track(&self, id: &str) {
        self.ids.lock().unwrap().push(id.to_string());
    }

    pub fn bundle(&self) -> Bundle {
        Bundle::new(self.dir.join(format!("bundle{}", self.seq())))
    }

    /// A fresh temp dir inside the test's dir.
    pub fn tempdir(&self, tag: &str) -> PathBuf {
        let p = self.dir.join(format!("{tag}{}", self.seq()));
        mkdir(&p, 0o755);
        p
    }

    /// Copies the binary under test into the test dir and uses the copy from now on.
    pub fn use_private_bin_copy(&mut self) -> PathBuf {
        let d = self.tempdir("bin");
        let p = d.join(self.bin.file_name().unwrap());
        fs::copy(&self.bin, &p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        self.bin = p.clone();
        p
    }

    /// Gives this test's commands their own berth scratch dir (BERTH_CACHE_DIR: the seccomp
    /// program cache and console sockets, kept outside --root) and returns it.
    pub fn private_cache(&mut self) -> PathBuf {
        let d = self.dir.join("cache");
        self.cache = Some(d.clone());
        d
    }

    /// `BIN --root ROOT args...`, stdin from /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.command_noroot(&[]);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    /// `BIN args...` without --root (for spec, features, --version).
    pub fn command_noroot(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).stdin(Stdio::null());
        if let Some(d) = &self.cache {
            c.env("BERTH_CACHE_DIR", d);
        }
        c
    }

    /// Starts a command in the background in its own process group, stdout and stderr to files.
    pub fn spawn_cmd(&self, mut c: Command) -> Bg {
        let k = self.seq();
        let out = self.dir.join(format!("out/{k}.stdout"));
        let err = self.dir.join(format!("out/{k}.stderr"));
        c.stdout(fs::File::create(&out).unwrap()).stderr(fs::File::create(&err).unwrap());
        c.process_group(0);
        let cmdline = format!(
            "{} {}",
            c.get_program().to_string_lossy(),
            c.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
        );
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
        Bg { child: Some(child), cmdline, out, err, started: Instant::now() }
    }

    pub fn exec_cmd(&self, c: Command, timeout: Duration) -> Out {
        self.spawn_cmd(c).wait(timeout)
    }

    /// Runs `BIN --root ROOT args...` with the default timeout.
    pub fn cmd(&self, args: &[&str]) -> Out {
        self.exec_cmd(self.command(args), TIMEOUT)
    }

    pub fn spawn(&self, args: &[&str]) -> Bg {
        self.spawn_cmd(self.command(args))
    }

    /// Writes the config and runs the container attached: `run --bundle DIR ID`.
    pub fn run(&self, b: &mut Bundle, id: &str) -> Out {
        b.write_config(id);
        self.track(id);
        self.cmd(&["run", "--bundle", b.dir.to_str().unwrap(), id])
    }

    /// A fresh bundle running `sh -c script` attached; returns its output.
    pub fn run_sh(&self, script: &str) -> Out {
        let mut b = self.bundle();
        b.sh(script);
        let id = self.id("sh");
        self.run(&mut b, &id)
    }

    /// `run -d`; asserts success.
    pub fn run_detached(&self, b: &mut Bundle, id: &str) -> Out {
        b.write_config(id);
        self.track(id);
        let o = self.cmd(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]);
        o.ok();
        o
    }

    /// Writes the config and runs `create --bundle DIR ID` (not asserted).
    pub fn create(&self, b: &mut Bundle, id: &str) -> Out {
        b.write_config(id);
        self.track(id);
        self.cmd(&["create", "--bundle", b.dir.to_str().unwrap(), id])
    }

    pub fn start(&self, id: &str) -> Out {
        self.cmd(&["start", id])
    }

    pub fn kill(&self, id: &str, sig: &str) -> Out {
        self.cmd(&["kill", id, sig])
    }

    pub fn delete(&self, id: &str) -> Out {
        self.cmd(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Out {
        self.cmd(&["delete", "-f", id])
    }

    /// `state ID` parsed; panics when it fails.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let o = self.cmd(&["state", id]);
        o.ok();
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("state is not JSON ({e}): {o}"))
    }

    /// The status from `state`, None when `state` fails.
    pub fn status(&self, id: &str) -> Option<String> {
        let o = self.cmd(&["state", id]);
        if o.code != 0 {
            return None;
        }
        let v: Value = serde_json::from_str(&o.stdout).ok()?;
        v["status"].as_str().map(str::to_string)
    }

    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) {
        let mut last = None;
        let ok = wait_until(timeout, || {
            last = self.status(id);
            last.as_deref() == Some(want)
        });
        assert!(ok, "container {id} did not reach status {want} in {timeout:?}; last: {last:?}");
    }

    /// The container's pid from `state`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        self.state(id)["pid"].as_i64().expect("state.pid") as i32
    }

    /// Keeps a helper child (e.g. `unshare ... sleep`) to kill at the end of the test.
    pub fn keep_child(&self, c: Child) {
        self.extra_children.lock().unwrap().push(c);
    }

    // ---- leftovers ----------------------------------------------------------------------

    /// What to compare after a failing command.
    pub fn snapshot(&self, b: &Bundle) -> Snapshot {
        Snapshot {
            mounts: mounts_under(&b.dir),
            root_entries: dir_entries(&self.root),
            dir_entries: dir_entries(&self.dir),
        }
    }

    /// Asserts the failed command for `id` with bundle `b` left nothing behind: no state dir,
    /// no new mount under the bundle, no cgroup dir, no process with cwd/root in the bundle.
    #[track_caller]
    pub fn assert_nothing_left(&self, snap: &Snapshot, b: &Bundle, id: &str) {
        let mut problems = Vec::new();
        // Give processes of the failed command a moment to finish dying.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            problems.clear();
            if dir_entries(&self.root) != snap.root_entries {
                problems.push(format!(
                    "--root {} changed: before {:?}, after {:?}",
                    self.root.display(),
                    snap.root_entries,
                    dir_entries(&self.root)
                ));
            }
            if valid_name(id) && self.root.join(id).exists() {
                problems.push(format!("state dir {} exists", self.root.join(id).display()));
            }
            if dir_entries(&self.dir) != snap.dir_entries {
                problems.push(format!(
                    "test dir {} changed: before {:?}, after {:?}",
                    self.dir.display(),
                    snap.dir_entries,
                    dir_entries(&self.dir)
                ));
            }
            let m = mounts_under(&b.dir);
            if m != snap.mounts {
                problems.push(format!("mounts under bundle: before {:?}, after {:?}", snap.mounts, m));
            }
            for cg in cgroup_dirs(id, b.cgroups_path().as_deref()) {
                if cg.exists() {
                    problems.push(format!("cgroup dir {} exists", cg.display()));
                }
            }
            for (pid, what) in procs_in(&b.dir) {
                problems.push(format!("process {pid} has {what} in the bundle"));
            }
            for pid in procs_in_cgroup(id, b.cgroups_path().as_deref()) {
                problems.push(format!("process {pid} is in the container's cgroup"));
            }
            if problems.is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(problems.is_empty(), "left behind after a failed command for id {id:?}:\n{}", problems.join("\n"));
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let ids: Vec<String> = std::mem::take(&mut *self.ids.lock().unwrap());
        for id in &ids {
            if id.is_empty() {
                continue;
            }
            let mut c = Command::new(&self.bin);
            c.arg("--root").arg(&self.root).args(["delete", "-f", id]).stdin(Stdio::null());
            c.stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
            if let Ok(child) = c.spawn() {
                let bg = Bg {
                    child: Some(child),
                    cmdline: String::new(),
                    out: PathBuf::new(),
                    err: PathBuf::new(),
                    started: Instant::now(),
                };
                let _ = bg.wait(Duration::from_secs(20));
            }
        }
        for mut c in std::mem::take(&mut *self.extra_children.lock().unwrap()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Kill what is left of this test's containers: processes with their cwd or root in our
        // dir, or in the cgroup of one of our ids (a pivoted init reads as "/ (deleted)").
        let mut left: Vec<i32> = procs_in(&self.dir).into_iter().map(|(p, _)| p).collect();
        for id in &ids {
            left.extend(procs_in_cgroup(id, None));
        }
        for pid in left {
            // SAFETY: kill(2) of a process found running inside this test's own temp dir.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        wait_until(Duration::from_secs(3), || ids.iter().all(|id| procs_in_cgroup(id, None).is_empty()));
        for id in &ids {
            for cg in cgroup_dirs(id, None) {
                let _ = fs::remove_dir(cg);
            }
            for cg in cgroup_dirs(id, Some(&format!("/berth/{id}"))) {
                let _ = fs::remove_dir(cg);
            }
        }
        // Unmount leftovers, deepest first; remove the dir only when nothing is mounted in it.
        for _ in 0..3 {
            let mut m = mounts_under(&self.dir);
            if m.is_empty() {
                break;
            }
            m.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in m {
                let _ = nix::mount::umount2(Path::new(&p), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        if mounts_under(&self.dir).is_empty() {
            if std::env::var_os("BERTH_ITEST_KEEP").is_none() {
                let _ = fs::remove_dir_all(&self.dir);
            }
        } else {
            eprintln!("{}: mounts left under {}, not removing it", self.name, self.dir.display());
        }
    }
}

pub struct Snapshot {
    mounts: Vec<String>,
    root_entries: BTreeSet<String>,
    dir_entries: BTreeSet<String>,
}

fn valid_name(id: &str) -> bool {
    !id.is_empty() && !id.contains('/') && id != "." && id != ".."
}

fn dir_entries(p: &Path) -> BTreeSet<String> {
    match fs::read_dir(p) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Cgroup dirs a container `id` may have: /sys/fs/cgroup/{*/,}berth/<id> and the cgroupsPath.
/// Only exact paths are looked at (nothing is listed below /sys/fs/cgroup/<controller>).
pub fn cgroup_dirs(id: &str, cgroups_path: Option<&str>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut bases = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                bases.push(e.path());
            }
        }
    }
    for b in bases {
        if valid_name(id) {
            v.push(b.join("berth").join(id));
        }
        if let Some(cg) = cgroups_path {
            let rel = cg.trim_start_matches('/');
            if cg.starts_with('/') && !rel.is_empty() && !rel.contains("..") {
                v.push(b.join(rel));
            }
        }
    }
    v
}

/// Mount points (from /proc/self/mountinfo) at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    let mut v: Vec<String> =
        mountinfo().into_iter().map(|m| m.mount_point).filter(|p| p == &d || p.starts_with(&format!("{d}/"))).collect();
    v.sort();
    v
}

/// One line of a mountinfo file.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub root: String,
    pub mount_point: String,
    pub options: String,
    pub optional: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    let mut v = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else { continue };
        if f.len() < sep + 3 || sep < 6 {
            continue;
        }
        v.push(MountInfo {
            root: unescape(f[3]),
            mount_point: unescape(f[4]),
            options: f[5].to_string(),
            optional: f[6..sep].join(" "),
            fstype: f[sep + 1].to_string(),
            source: unescape(f[sep + 2]),
            super_options: f.get(sep + 3).unwrap_or(&"").to_string(),
        });
    }
    v
}

pub fn mountinfo() -> Vec<MountInfo> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push(((b[i + 1] - b'0') << 6) | ((b[i + 2] - b'0') << 3) | (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Processes whose cwd or root is at or below `dir`: (pid, "cwd"/"root").
pub fn procs_in(dir: &Path) -> Vec<(i32, String)> {
    let d = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else { return v };
    for e in rd.filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me {
            continue;
        }
        for what in ["cwd", "root"] {
            if let Ok(t) = fs::read_link(format!("/proc/{pid}/{what}")) {
                let t = t.to_string_lossy().into_owned();
                if (t == d || t.starts_with(&format!("{d}/"))) && !is_zombie(pid) {
                    v.push((pid, what.to_string()));
                }
            }
        }
    }
    v
}

/// Live processes whose cgroup (in any hierarchy) is /berth/<id> or `cgroups_path`, or below.
pub fn procs_in_cgroup(id: &str, cgroups_path: Option<&str>) -> Vec<i32> {
    let mut paths = Vec::new();
    if valid_name(id) {
        paths.push(format!("/berth/{id}"));
    }
    if let Some(p) = cgroups_path {
        if p.starts_with('/') && p.len() > 1 {
            paths.push(p.to_string());
        }
    }
    let mut v = Vec::new();
    if paths.is_empty() {
        return v;
    }
    let Ok(rd) = fs::read_dir("/proc") else { return v };
    for e in rd.filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cg = read(format!("/proc/{pid}/cgroup"));
        let hit = cg.lines().any(|l| {
            let path = l.splitn(3, ':').nth(2).unwrap_or("");
            paths.iter().any(|p| path == p || path.starts_with(&format!("{p}/")))
        });
        if hit && !is_zombie(pid) {
            v.push(pid);
        }
    }
    v
}

fn is_zombie(pid: i32) -> bool {
    proc_state(pid) == Some('Z')
}

/// The state letter of /proc/PID/stat, None when gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Alive and not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(c) if c != 'Z' && c != 'X')
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a file to exist (e.g. a marker a container writes).
pub fn wait_file(p: &Path, timeout: Duration) -> bool {
    wait_until(timeout, || p.exists())
}

/// A field of /proc/PID/status-like text ("CapEff" → "0000000020000420").
pub fn status_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(&format!("{key}:")).map(|v| v.trim().to_string()))
}

/// Namespace link of this process, e.g. "net:[4026531840]".
pub fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}")).unwrap().to_string_lossy().into_owned()
}

/// Capability bit mask of a list of "CAP_X" names.
pub fn cap_mask(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| {
            let c: caps::Capability = n.parse().unwrap_or_else(|_| panic!("unknown capability {n}"));
            c.bitmask()
        })
        .fold(0, |a, b| a | b)
}

/// Whitespace-normalized lines.
pub fn norm(s: &str) -> Vec<String> {
    s.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|l| !l.is_empty()).collect()
}

// ---------------------------------------------------------------------------------------------
// Console socket

/// A unix socket that receives the pty master over SCM_RIGHTS (`--console-socket`).
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new(ctx: &Ctx) -> ConsoleSocket {
        let path = ctx.dir.join(format!("console{}.sock", ctx.seq()));
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        ConsoleSocket { path, listener }
    }

    /// Accepts one connection and receives one fd; panics after `timeout`.
    pub fn recv_master(&self, timeout: Duration) -> OwnedFd {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection on the console socket in {timeout:?}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept on console socket: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .expect("recvmsg on console socket");
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    for &other in &fds[1..] {
                        // SAFETY: extra fds received are owned by us and closed here.
                        unsafe { libc::close(other) };
                    }
                    // SAFETY: the kernel just installed this fd in our table; we own it.
                    return unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                }
            }
        }
        panic!("no fd received on the console socket");
    }
}

/// Reads a pty master until EOF/EIO (every slave closed) or `timeout`.
pub fn read_pty(master: &OwnedFd, timeout: Duration) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ms = left.as_millis().min(1000) as u16;
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(master, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(_) => break, // EIO: the slave side is closed
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a whole file, "" when missing.
pub fn read(p: impl AsRef<Path>) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}
