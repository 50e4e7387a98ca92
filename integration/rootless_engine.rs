//! The engine for an ordinary user: users the tests make (`berth-rlengine` with subordinate
//! ranges the test writes, `berth-rlnosub` without any) run `image load` and `container run`
//! with no --root or --data-root: the store under $HOME/.local/share/berth, containers in a
//! user namespace from /etc/subuid and /etc/subgid (newuidmap), overlayfs in that namespace,
//! the default network through slirp4netns with `-p` reachable on 127.0.0.1, and the bad
//! input of this mode (no ranges, a port under 1024, another user's container).
//! All berth-only.

use crate::common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const USER: &str = "berth-rlengine";
const NOSUB_USER: &str = "berth-rlnosub";
/// The test user's subordinate range (written by the test, removed when the last test ends).
const SUB_START: u32 = 420000;
const SUB_COUNT: u32 = 65536;

/// Guards /etc/subuid and /etc/subgid, and counts this process's tests that use each user's
/// ranges: the last one removes them.
static SUBID_LOCK: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
static SERIAL: Mutex<()> = Mutex::new(());

fn id_of(flag: &str, user: &str) -> Option<u32> {
    Command::new("id")
        .args([flag, user])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
}

/// Replaces the user's lines in /etc/subuid and /etc/subgid with `range` (None: no range),
/// leaving every other line as it is.
fn set_subids(user: &str, range: Option<(u32, u32)>) {
    for f in ["/etc/subuid", "/etc/subgid"] {
        let old = fs::read_to_string(f).unwrap_or_default();
        let mut lines: Vec<String> =
            old.lines().filter(|l| l.split(':').next() != Some(user)).map(str::to_string).collect();
        if let Some((s, n)) = range {
            lines.push(format!("{user}:{s}:{n}"));
        }
        let mut text = lines.join("\n");
        text.push('\n');
        let tmp = format!("{f}.berth-itest.{}", std::process::id());
        fs::write(&tmp, text).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(&tmp, f).unwrap();
    }
}

/// The user (made when missing; useradd may give it ranges of its own, replaced here).
fn make_user(user: &'static str, range: Option<(u32, u32)>) -> (u32, u32) {
    let mut users = SUBID_LOCK.lock().unwrap();
    users.push(user);
    if id_of("-u", user).is_none() {
        let o = Command::new("useradd").args(["-M", "-s", "/bin/sh", "-d", "/nonexistent", user]).output().unwrap();
        assert!(o.status.success() || o.status.code() == Some(9), "useradd {user}: {o:?}");
    }
    set_subids(user, range);
    (id_of("-u", user).unwrap(), id_of("-g", user).unwrap())
}

/// One test's user session: HOME, XDG_RUNTIME_DIR and a copy of the binary it can run.
struct User {
    ctx: Ctx,
    name: &'static str,
    uid: u32,
    home: PathBuf,
    xdg: PathBuf,
    /// The tests share the test users and count their helpers (slirp4netns) by uid: one at a
    /// time. Last, so it is released after the session's clean-up.
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// slirp4netns opens /dev/net/tun, which udev makes 0666; some machines (containers, minimal
/// VMs) have it 0600. True when it is usable by an ordinary user (made so if needed).
fn tun_usable() -> bool {
    let p = Path::new("/dev/net/tun");
    match fs::metadata(p) {
        Ok(m) if m.mode() & 0o006 == 0o006 => true,
        Ok(_) => fs::set_permissions(p, fs::Permissions::from_mode(0o666)).is_ok(),
        Err(_) => false,
    }
}

impl User {
    fn new(test: &str, name: &'static str, range: Option<(u32, u32)>) -> Option<User> {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        if Command::new("newuidmap").arg("--help").output().is_err() || !Path::new("/usr/bin/slirp4netns").exists() {
            eprintln!("SKIPPED: needs newuidmap (uidmap) and slirp4netns");
            return None;
        }
        if !tun_usable() {
            eprintln!("SKIPPED: /dev/net/tun missing");
            return None;
        }
        let mut ctx = Ctx::new(test);
        let (uid, gid) = make_user(name, range);
        ctx.use_private_bin_copy();
        let home = ctx.tempdir("home");
        let xdg = ctx.tempdir("xdg");
        for d in [&home, &xdg] {
            chown(d, uid, gid);
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
        }
        Some(User { ctx, name, uid, home, xdg, _serial })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid", self.name, "--regid", self.name, "--init-groups", "--"])
            .arg(&self.ctx.bin)
            .args(args)
            .current_dir(&self.home)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("USER", self.name)
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .stdin(Stdio::null());
        c
    }

    fn cmd(&self, args: &[&str]) -> Out {
        self.ctx.exec_cmd(self.command(args), Duration::from_secs(60))
    }

    fn c(&self, args: &[&str]) -> Out {
        let mut v = vec!["container"];
        v.extend_from_slice(args);
        self.cmd(&v)
    }

    fn load_busybox(&self) {
        let (a, _) = crate::container::archives();
        self.cmd(&["image", "load", "-i", a.to_str().unwrap()]).ok();
    }

    fn data_root(&self) -> PathBuf {
        self.home.join(".local/share/berth")
    }

    /// The process that holds the user's namespaces.
    fn keeper(&self) -> Option<i32> {
        let s = fs::read_to_string(self.xdg.join("berth-engine/keeper.pid")).ok()?;
        s.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let ids = self.c(&["ls", "-aq"]).stdout;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut v = vec!["rm", "-f"];
            v.extend(ids);
            let _ = self.c(&v);
        }
        if let Some(p) = self.keeper() {
            // SAFETY: killing the keeper this test's user made (its pid from the user's dir).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        // The slirp4netns of the user's shared network namespace (user-defined networks).
        let shared = self.xdg.join("berth-engine/netns/user-networks.pid");
        if let Some(p) = fs::read_to_string(shared).ok().and_then(|s| s.split_whitespace().next()?.parse::<i32>().ok())
        {
            // SAFETY: killing the helper this test's user made (its pid from the user's dir).
            unsafe { libc::kill(p, libc::SIGTERM) };
        }
        let mut users = SUBID_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = users.iter().position(|n| *n == self.name) {
            users.remove(i);
        }
        if !users.contains(&self.name) {
            set_subids(self.name, None);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
                let mut r = String::new();
                let _ = s.read_to_string(&mut r);
                if r.contains("200 OK") {
                    return Ok(r);
                }
                last = r;
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

/// An ordinary user loads an image and runs `container run --rm` with no flags for paths:
/// the store is under $HOME/.local/share/berth and owned by the user, the container runs as
/// root of a user namespace mapping the user to 0 and its subordinate range to 1.., and
/// nothing is left afterwards.
#[test]
fn rootless_engine_run_rm_in_user_namespace() {
    let Some(u) = User::new("rle-run", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    let store = u.data_root();
    assert_eq!(fs::metadata(&store).unwrap().uid(), u.uid, "the store is the user's");
    let o = u.c(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map /proc/self/gid_map",
    ]);
    o.ok();
    let lines = o.lines();
    assert_eq!(lines[0], "0", "{o}");
    let maps: Vec<Vec<String>> =
        lines[1..].iter().map(|l| l.split_whitespace().map(str::to_string).collect()).collect();
    let (gid,) = (id_of("-g", USER).unwrap(),);
    let want = |id: u32| {
        vec![
            vec!["0".to_string(), id.to_string(), "1".into()],
            vec!["1".into(), SUB_START.to_string(), SUB_COUNT.to_string()],
        ]
    };
    assert_eq!(maps[..2], want(u.uid)[..], "uid_map: {o}");
    assert_eq!(maps[2..], want(gid)[..], "gid_map: {o}");
    assert!(u.c(&["ls", "-aq"]).ok().stdout.trim().is_empty(), "--rm left a container");
    // Files owned by root in the image are the user's on disk; the runtime's state is in
    // $XDG_RUNTIME_DIR/berth and empty again.
    let snaps = store.join("image/snapshots");
    let bb = fs::read_dir(&snaps).unwrap().flatten().map(|e| e.path().join("fs/bin/busybox")).find(|p| p.exists());
    let bb = bb.unwrap_or_else(|| panic!("no unpacked busybox under {}", snaps.display()));
    assert_eq!(fs::metadata(&bb).unwrap().uid(), u.uid, "{}", bb.display());
    let state = u.xdg.join("berth");
    assert_eq!(fs::read_dir(&state).map(|d| d.count()).unwrap_or(0), 0, "runtime state left in {}", state.display());

    // A detached container's rootfs is an overlayfs mounted in the user's mount namespace.
    let o = u.c(&["run", "-d", "--network", "none", "busybox", "sleep", "300"]);
    let id = o.ok().stdout.trim().to_string();
    let keeper = u.keeper().expect("keeper pid");
    let info = fs::read_to_string(format!("/proc/{keeper}/mountinfo")).unwrap();
    let line = info.lines().find(|l| l.contains(&id) && l.contains("/rootfs ")).unwrap_or_else(|| panic!("{info}"));
    assert!(line.contains(" - overlay "), "not overlayfs: {line}");
    assert!(!fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&id), "the mount is visible on the host");
    u.c(&["rm", "-f", &id]).ok();
}

/// The default network is slirp4netns: the container has 10.0.2.100 and a published port is
/// reached from the host's 127.0.0.1; removing the container stops slirp4netns and frees the
/// port. A host port under net.ipv4.ip_unprivileged_port_start is one line, nothing left.
#[test]
fn rootless_engine_slirp_published_port() {
    let Some(u) = User::new("rle-port", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let o = u.c(&[
        "run",
        "-d",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "hostname > /tmp/h; ip -4 addr show tap0 > /tmp/a; httpd -f -p 80 -h /tmp",
    ]);
    let id = o.ok().stdout.trim().to_string();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let page = http_get(addr, "/h").unwrap_or_else(|e| panic!("GET from the host: {e}"));
    assert!(page.ends_with(&format!("{}\n", &id[..12])), "{page}");
    let a = http_get(addr, "/a").unwrap();
    assert!(a.contains("inet 10.0.2.100/24"), "{a}");
    let ls = u.c(&["ls"]).ok().stdout.clone();
    assert!(ls.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ls}");
    let slirps = || procs_named("slirp4netns", u.uid);
    assert_eq!(slirps().len(), 1, "one slirp4netns for the container");
    u.c(&["rm", "-f", &id]).ok();
    assert!(wait_until(Duration::from_secs(3), || slirps().is_empty()), "slirp4netns left: {:?}", slirps());
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "port {port} still open");

    // A privileged port: one line, no container, no namespace file, no helper.
    let first = fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    if first.trim().parse::<u16>().unwrap() > 80 {
        let o = u.c(&["run", "--rm", "-p", "80:80", "busybox", "true"]);
        o.one_line_error(&["host port 80 is below"]);
        assert!(u.c(&["ls", "-aq"]).ok().stdout.trim().is_empty(), "a container was left");
        let netns = u.xdg.join("berth-engine/netns");
        assert_eq!(fs::read_dir(&netns).map(|d| d.count()).unwrap_or(0), 0, "left in {}", netns.display());
        assert!(slirps().is_empty());
    }
}

/// `--network host` (sysfs becomes a read-only bind of the host's /sys), named volumes and
/// bind mounts (a file the container's root writes is the user's on the host), and limits:
/// on a host without a delegated cgroup v2 subtree, one line and no container.
#[test]
fn rootless_engine_host_network_volumes_limits() {
    let Some(u) = User::new("rle-misc", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    let o = u.c(&["run", "--rm", "--network", "host", "busybox", "sh", "-c", "ls /sys/class/net"]);
    let host_ifs: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(o.ok().lines().iter().all(|l| host_ifs.contains(l)) && o.lines().len() == host_ifs.len(), "{o}");
    u.c(&["run", "--rm", "--network", "none", "-v", "rlvol:/data", "busybox", "sh", "-c", "echo kept > /data/f"]).ok();
    let o = u.c(&["run", "--rm", "--network", "none", "-v", "rlvol:/data", "busybox", "cat", "/data/f"]);
    assert_eq!(o.ok().stdout, "kept\n");
    let bind = u.home.join("bind");
    fs::create_dir(&bind).unwrap();
    chown(&bind, u.uid, id_of("-g", USER).unwrap());
    let spec = format!("{}:/b", bind.display());
    u.c(&["run", "--rm", "--network", "none", "-v", &spec, "busybox", "sh", "-c", "echo x > /b/y"]).ok();
    assert_eq!(fs::metadata(bind.join("y")).unwrap().uid(), u.uid, "written by the container's root: the user's file");
    u.cmd(&["volume", "rm", "rlvol"]).ok();

    let v2 = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "));
    if !v2 {
        let o = u.c(&["run", "--rm", "--network", "none", "--memory", "64m", "busybox", "true"]);
        o.one_line_error(&["--memory: an unprivileged user's limits need a cgroup v2 subtree delegated to the user"]);
        assert_eq!(o.code, 125, "{o}");
        assert!(u.c(&["ls", "-aq"]).ok().stdout.trim().is_empty(), "a container was left");
    }
}

/// `--userns keep-id`: the container has a user namespace of its own where the user keeps its
/// host uid and gid and runs as them; a file it writes to a bind mount is the user's. Refused
/// for root's engine.
#[test]
fn rootless_engine_userns_keep_id() {
    let Some(u) = User::new("rle-keepid", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    let gid = id_of("-g", USER).unwrap();
    let bind = u.home.join("kb");
    fs::create_dir(&bind).unwrap();
    chown(&bind, u.uid, gid);
    let spec = format!("{}:/kb", bind.display());
    for net in ["none", "slirp4netns"] {
        let mut args = vec!["run", "--rm", "--userns", "keep-id", "-v", &spec];
        if net == "none" {
            args.extend(["--network", "none"]);
        }
        args.extend(["busybox", "sh", "-c", "id -u; id -g; touch /kb/$(id -u); grep -c . /proc/self/uid_map"]);
        let o = u.c(&args);
        let lines = o.ok().lines();
        assert_eq!(lines[..2], [u.uid.to_string(), gid.to_string()], "{net}: {o}");
        assert_eq!(lines[2], "3", "{net}: three ranges (below, the user, above): {o}");
        let f = bind.join(u.uid.to_string());
        assert_eq!(fs::metadata(&f).unwrap().uid(), u.uid, "{net}");
        fs::remove_file(&f).unwrap();
    }
    // `-u` still picks the user inside.
    let o = u.c(&["run", "--rm", "--network", "none", "--userns", "keep-id", "-u", "0", "busybox", "id", "-u"]);
    assert_eq!(o.ok().stdout.trim(), "0");
    let o = u.c(&["run", "--rm", "--network", "none", "--userns", "nonsense", "busybox", "true"]);
    o.one_line_error(&["--userns"]);
    assert!(u.c(&["ls", "-aq"]).ok().stdout.trim().is_empty());
    let data = u.ctx.tempdir("rootdata");
    let mut c = u.ctx.command(&["--data-root", data.to_str().unwrap()]);
    c.args(["container", "run", "--rm", "--userns", "keep-id", "busybox", "true"]);
    u.ctx.exec_cmd(c, Duration::from_secs(30)).one_line_error(&["--userns keep-id is for an ordinary user"]);
}

/// Pull from a registry on 127.0.0.1 into the user's store, then run what was pulled.
#[test]
fn rootless_engine_pull_and_run() {
    let Some(u) = User::new("rle-pull", USER, Some((SUB_START, SUB_COUNT))) else { return };
    let (reg, _m, c) = crate::image::registry_with_busybox(&u.ctx, crate::common::registry::RegistryOpts::default());
    let r = reg.reference("berth/busybox:v1");
    u.cmd(&["image", "pull", "--insecure", &r]).ok();
    let o = u.cmd(&["image", "inspect", &r]);
    let v: serde_json::Value = serde_json::from_str(&o.ok().stdout).unwrap();
    assert_eq!(v[0]["Id"], c.digest.as_str(), "{o}");
    let o = u.c(&["run", "--rm", "--network", "none", &r]);
    assert_eq!(o.ok().stdout, "pulled\n");
    assert!(u.data_root().join("image").exists());
}

/// On cgroup v2 with a subtree delegated to the user (as systemd's user@.service: the
/// directory and its cgroup.procs, cgroup.threads, cgroup.subtree_control are the user's, and
/// the user's commands run in a child of it), `--memory` and `--pids-limit` apply: the
/// container's cgroup is under the delegated one with the limits. In the cgroup v2 VM
/// (integration/vm/run-v2.sh).
#[test]
fn rootless_engine_v2_delegated_limits() {
    let v2 = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "));
    if !v2 {
        eprintln!("SKIPPED: needs a cgroup v2 host (run in the VM: integration/vm/run-v2.sh)");
        return;
    }
    let Some(u) = User::new("rle-v2", USER, Some((SUB_START, SUB_COUNT))) else { return };
    let gid = id_of("-g", USER).unwrap();
    let base = PathBuf::from(format!("/sys/fs/cgroup/berth-it-rle{}", std::process::id()));
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            if let Ok(rd) = fs::read_dir(&self.0) {
                for e in rd.flatten().filter(|e| e.path().is_dir()) {
                    let _ = fs::remove_dir(e.path());
                }
            }
            let _ = fs::remove_dir(&self.0);
        }
    }
    let _rm = Rm(base.clone());
    fs::create_dir(&base).unwrap();
    fs::write(base.join("cgroup.subtree_control"), "+memory +pids").unwrap();
    fs::create_dir(base.join("self")).unwrap();
    for p in [&base, &base.join("self")] {
        chown(p, u.uid, gid);
        for f in ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] {
            chown(&p.join(f), u.uid, gid);
        }
    }
    // The user's commands start in base/self (a shell as root moves itself there first).
    let in_self = |args: &[&str]| {
        let inner = u.command(args);
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("echo $$ > {}/self/cgroup.procs && exec \"$@\"", base.display()))
            .arg("sh")
            .arg(inner.get_program())
            .args(inner.get_args())
            .current_dir(&u.home)
            .env_clear()
            .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::null());
        u.ctx.exec_cmd(c, Duration::from_secs(120))
    };
    let (a, _) = crate::container::archives();
    in_self(&["image", "load", "-i", a.to_str().unwrap()]).ok();
    let o = in_self(&[
        "container",
        "run",
        "-d",
        "--network",
        "none",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "busybox",
        "sleep",
        "300",
    ]);
    let id = o.ok().stdout.trim().to_string();
    let insp = in_self(&["container", "inspect", &id]);
    let v: serde_json::Value = serde_json::from_str(&insp.ok().stdout).unwrap();
    let pid = v[0]["State"]["Pid"].as_i64().unwrap();
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = cg.trim().strip_prefix("0::/").unwrap_or_else(|| panic!("{cg}")).to_string();
    let dir = Path::new("/sys/fs/cgroup").join(&rel);
    assert!(
        dir.starts_with(&base) && dir != base.join("self"),
        "the container's cgroup {} is not under the delegated {}",
        dir.display(),
        base.display()
    );
    assert_eq!(fs::read_to_string(dir.join("memory.max")).unwrap().trim(), "67108864");
    assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap().trim(), "50");
    in_self(&["container", "rm", "-f", &id]).ok();
    assert!(wait_until(Duration::from_secs(5), || !dir.exists()), "the container's cgroup is left");
    // The keeper was started in base/self: stop it so the cgroups can go.
    if let Some(p) = u.keeper() {
        // SAFETY: killing the keeper this test's user made.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let procs = base.join("self/cgroup.procs");
    assert!(wait_until(Duration::from_secs(5), || fs::read_to_string(&procs).unwrap_or_default().trim().is_empty()));
}

/// A detached container of the user: logs, exec, stop, inspect and rm all reach it (each a
/// new command joining the user's namespaces), and a new command sees the same overlay.
#[test]
fn rootless_engine_detached_logs_exec_stop() {
    let Some(u) = User::new("rle-detached", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    let o =
        u.c(&["run", "-d", "--name", "rlbox", "busybox", "sh", "-c", "echo hello; echo data > /tmp/f; exec sleep 300"]);
    let id = o.ok().stdout.trim().to_string();
    assert!(wait_until(Duration::from_secs(5), || u.c(&["logs", "rlbox"]).stdout == "hello\n"), "logs");
    let o = u.c(&["exec", "rlbox", "cat", "/tmp/f"]);
    assert_eq!(o.ok().stdout, "data\n");
    u.c(&["stop", "-t", "1", "rlbox"]).ok();
    let o = u.c(&["inspect", "rlbox"]);
    let v: serde_json::Value = serde_json::from_str(&o.ok().stdout).unwrap();
    assert_eq!(v[0]["State"]["Status"], "exited", "{o}");
    assert_eq!(v[0]["Id"], id.as_str());
    // Started again: the container's upper layer kept the file.
    u.c(&["start", "rlbox"]).ok();
    let o = u.c(&["exec", "rlbox", "cat", "/tmp/f"]);
    assert_eq!(o.ok().stdout, "data\n");
    u.c(&["rm", "-f", "rlbox"]).ok();
    assert!(u.c(&["ls", "-aq"]).ok().stdout.trim().is_empty());
}

/// User-defined networks: bridges in the user's shared network namespace (one slirp4netns
/// for it, as podman's rootless netns): containers reach each other by name through berth's
/// DNS, a published port is reached from the host's 127.0.0.1 and closed again at `rm`, and
/// `network rm` removes the network.
#[test]
fn rootless_engine_user_network_names_and_ports() {
    let Some(u) = User::new("rle-net", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    u.cmd(&["network", "create", "rlnet"]).ok();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    u.c(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "rlnet",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "echo from-srv > /tmp/i; httpd -f -p 80 -h /tmp",
    ])
    .ok();
    let o = u.c(&[
        "run",
        "--rm",
        "--network",
        "rlnet",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 50); do wget -q -O- http://srv/i && exit 0; sleep 0.1; done; exit 1",
    ]);
    assert_eq!(o.ok().stdout, "from-srv\n", "by name: {o}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let page = http_get(addr, "/i").unwrap_or_else(|e| panic!("GET from the host: {e}"));
    assert!(page.ends_with("from-srv\n"), "{page}");
    u.c(&["rm", "-f", "srv"]).ok();
    assert!(
        wait_until(Duration::from_secs(3), || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()),
        "port {port} still open"
    );
    u.cmd(&["network", "rm", "rlnet"]).ok();
    assert!(!u.cmd(&["network", "ls"]).ok().stdout.contains("rlnet"));
    // One slirp4netns is left: the shared namespace's, kept with the user's namespaces.
    assert_eq!(procs_named("slirp4netns", u.uid).len(), 1);
}

/// Processes named `name` (comm) whose real uid is `uid` (outside any namespace).
fn procs_named(name: &str, uid: u32) -> Vec<i32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let zombie = status.lines().any(|l| l.starts_with("State:") && l.contains('Z'));
        let ruid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
        if comm.trim() == name && !zombie && ruid == Some(&uid.to_string()) {
            v.push(pid);
        }
    }
    v
}

/// A user without subordinate ranges: one warning naming the files and the fix, and the
/// user's own id mapped to 0, which is enough for an image whose files are all root's.
#[test]
fn rootless_engine_without_subordinate_ids() {
    let Some(u) = User::new("rle-nosub", NOSUB_USER, None) else { return };
    let (a, _) = crate::container::archives();
    let o = u.cmd(&["image", "load", "-i", a.to_str().unwrap()]);
    o.ok();
    let warn: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(warn.len(), 1, "one warning line: {o}");
    for w in ["/etc/subuid", "/etc/subgid", "usermod --add-subuids", NOSUB_USER] {
        assert!(warn[0].contains(w), "the warning names {w}: {o}");
    }
    let o = u.c(&["run", "--rm", "--network", "none", "busybox", "cat", "/proc/self/uid_map"]);
    o.ok();
    let map: Vec<String> = o.stdout.split_whitespace().map(str::to_string).collect();
    assert_eq!(map, ["0".to_string(), u.uid.to_string(), "1".into()], "{o}");
    assert!(o.stderr.trim().is_empty(), "the warning comes once, when the namespace is made: {o}");

    // An image with a file of uid 1000, which only root is mapped for: one line, no image.
    let src = u.ctx.tempdir("src");
    fs::write(src.join("owned"), "x").unwrap();
    let tar = u.ctx.dir.join("owned.tar");
    let t = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["--owner=1000", "--group=1000", "-cf"])
        .arg(&tar)
        .arg("owned")
        .status()
        .unwrap();
    assert!(t.success());
    fs::set_permissions(&tar, fs::Permissions::from_mode(0o644)).unwrap();
    let before = u.cmd(&["image", "ls", "-q"]).ok().stdout.clone();
    let o = u.cmd(&["image", "import", tar.to_str().unwrap(), "owned:1"]);
    o.one_line_error(&["owner 1000:1000 is not mapped"]);
    assert_eq!(u.cmd(&["image", "ls", "-q"]).ok().stdout, before, "an image was left");
}

/// Another user's container (root's, in root's store) is not there for the user: one line,
/// and root's container keeps running.
#[test]
fn rootless_engine_other_users_container() {
    let Some(u) = User::new("rle-other", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    // Root's engine with a store of its own in the test dir.
    let data = u.ctx.tempdir("rootdata");
    let root = |args: &[&str]| {
        let mut c = u.ctx.command(&["--data-root", data.to_str().unwrap()]);
        c.args(args);
        u.ctx.exec_cmd(c, Duration::from_secs(60))
    };
    let (a, _) = crate::container::archives();
    root(&["image", "load", "-i", a.to_str().unwrap()]).ok();
    let id = root(&["container", "run", "-d", "--network", "none", "busybox", "sleep", "300"])
        .ok()
        .stdout
        .trim()
        .to_string();
    for verb in [vec!["stop", id.as_str()], vec!["rm", "-f", id.as_str()], vec!["exec", id.as_str(), "true"]] {
        let o = u.c(&verb);
        o.one_line_error(&["no such container"]);
    }
    // Pointing at root's store does not reach it either.
    let o = u.cmd(&["--data-root", data.to_str().unwrap(), "container", "rm", "-f", &id]);
    o.fails();
    let st = root(&["container", "inspect", "-f", "{{.State.Status}}", &id]);
    assert_eq!(st.ok().stdout.trim(), "running");
    root(&["container", "rm", "-f", &id]).ok();
}

/// The rest of the engine as the user: `image build` of a Dockerfile with a RUN step and a run
/// of the result, `container cp` both ways, `image save` then `image load` into a fresh store
/// of the user's, `image push` to a registry on 127.0.0.1 and a pull of it back, then
/// `system df` and `builder prune`.
#[test]
fn rootless_engine_build_cp_save_push() {
    let Some(u) = User::new("rle-build", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    let cdir = u.ctx.tempdir("bctx");
    fs::write(
        cdir.join("Dockerfile"),
        "FROM busybox\nRUN echo built-by-run > /made && chown 1:1 /made\nCMD cat /made\n",
    )
    .unwrap();
    for p in [&cdir, &cdir.join("Dockerfile")] {
        chown(p, u.uid, id_of("-g", USER).unwrap());
    }
    let o = u.cmd(&["image", "build", "-q", "--network", "none", "-t", "rlbuilt:v1", cdir.to_str().unwrap()]);
    let id = o.ok().stdout.trim().to_string();
    assert!(id.starts_with("sha256:"), "{o}");
    let o = u.c(&["run", "--rm", "--network", "none", "rlbuilt:v1"]);
    assert_eq!(o.ok().stdout, "built-by-run\n");
    let o = u.c(&["run", "--rm", "--network", "none", "rlbuilt:v1", "stat", "-c", "%u:%g", "/made"]);
    assert_eq!(o.ok().stdout, "1:1\n", "a subordinate owner from RUN is kept");

    // container cp both ways, with a stopped container.
    let cid = u.c(&["create", "--network", "none", "rlbuilt:v1"]).ok().stdout.trim().to_string();
    let out = u.home.join("made.out");
    u.c(&["cp", &format!("{cid}:/made"), out.to_str().unwrap()]).ok();
    assert_eq!(fs::read_to_string(&out).unwrap(), "built-by-run\n");
    assert_eq!(fs::metadata(&out).unwrap().uid(), u.uid, "a copy out is the user's");
    let inp = u.home.join("in.txt");
    fs::write(&inp, "copied-in\n").unwrap();
    chown(&inp, u.uid, id_of("-g", USER).unwrap());
    u.c(&["cp", inp.to_str().unwrap(), &format!("{cid}:/in.txt")]).ok();
    let o = u.c(&["start", "-a", &cid]);
    assert_eq!(o.ok().stdout, "built-by-run\n");
    let back = u.home.join("in.back");
    u.c(&["cp", &format!("{cid}:/in.txt"), back.to_str().unwrap()]).ok();
    assert_eq!(fs::read_to_string(&back).unwrap(), "copied-in\n");
    u.c(&["rm", &cid]).ok();

    // image save, then image load into a fresh store of the user's.
    let tar = u.home.join("saved.tar");
    u.cmd(&["image", "save", "-o", tar.to_str().unwrap(), "rlbuilt:v1"]).ok();
    let fresh = u.home.join("fresh-root");
    let fr = fresh.to_str().unwrap();
    u.cmd(&["--data-root", fr, "image", "load", "-i", tar.to_str().unwrap()]).ok();
    let o = u.cmd(&["--data-root", fr, "image", "inspect", "-f", "{{.Id}}", "rlbuilt:v1"]);
    assert_eq!(o.ok().stdout.trim(), id, "{o}");
    let o = u.cmd(&["--data-root", fr, "container", "run", "--rm", "--network", "none", "rlbuilt:v1"]);
    assert_eq!(o.ok().stdout, "built-by-run\n");

    // image push to a registry on 127.0.0.1, then a pull of it into the fresh store.
    let reg = crate::common::registry::Registry::start(&u.ctx, crate::common::registry::RegistryOpts::default());
    let r = reg.reference("berth/rlbuilt:v1");
    u.cmd(&["image", "tag", "rlbuilt:v1", &r]).ok();
    u.cmd(&["image", "push", "--insecure", &r]).ok();
    u.cmd(&["--data-root", fr, "image", "pull", "--insecure", &r]).ok();
    let o = u.cmd(&["--data-root", fr, "container", "run", "--rm", "--network", "none", &r]);
    assert_eq!(o.ok().stdout, "built-by-run\n");

    // system df and builder prune run in the user's store.
    let o = u.cmd(&["system", "df"]);
    let out = o.ok().stdout.clone();
    assert!(out.starts_with("TYPE") && out.contains("Images") && out.contains("Build Cache"), "{o}");
    // `system df` counts no build cache yet: the cache is checked on disk.
    let cache = u.data_root().join("builder/cache");
    let entries = || fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert!(entries() > 0, "the build left no cache in {}", cache.display());
    let o = u.cmd(&["builder", "prune", "-f"]);
    assert!(o.ok().stdout.contains("Total reclaimed space"), "{o}");
    assert_eq!(entries(), 0, "the cache is empty after prune");

    // login and logout write the user's own auth file.
    let o = u.cmd(&["login", "--insecure", "-u", "rl", "-p", "pw", &reg.host]);
    assert_eq!(o.ok().stdout, "Login Succeeded\n");
    let auth = u.home.join(".docker/config.json");
    assert_eq!(fs::metadata(&auth).unwrap().uid(), u.uid, "the auth file is the user's");
    assert!(fs::read_to_string(&auth).unwrap().contains(&reg.host));
    let o = u.cmd(&["logout", &reg.host]);
    assert_eq!(o.ok().stdout, format!("Removing login credentials for {}\n", reg.host));
    assert!(!fs::read_to_string(&auth).unwrap().contains(&reg.host));
}

/// The processes in the user namespace of the test user's keeper (the shims, containers and
/// slirp4netns of this session; not another session's of the same user).
fn session_procs(keeper: i32) -> Vec<i32> {
    let Ok(ns) = fs::read_link(format!("/proc/{keeper}/ns/user")) else { return Vec::new() };
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let zombie = status.lines().any(|l| l.starts_with("State:") && l.contains('Z'));
        if !zombie && fs::read_link(e.path().join("ns/user")).ok().as_ref() == Some(&ns) {
            v.push(pid);
        }
    }
    v
}

/// Runtime and shim state are under $XDG_RUNTIME_DIR (the runtime's in `berth/`, the shims'
/// sockets in `berth-engine/shims/ID/`); the data root keeps the records, shim.json and the
/// log, and no socket or pid file. A reboot-like loss (every process of the session killed,
/// $XDG_RUNTIME_DIR emptied, the records kept) leaves `ls -a` showing the containers exited,
/// `start` working on them, `rm -f` and `system prune` removing them, and `run` working again.
#[test]
fn rootless_engine_runtime_state_after_reboot() {
    let Some(u) = User::new("rle-reboot", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    let run = u.c(&["run", "-d", "--name", "rb-run", "--network", "none", "busybox", "sleep", "300"]);
    let id = run.ok().stdout.trim().to_string();
    let slirp = u.c(&["run", "-d", "--name", "rb-slirp", "busybox", "sleep", "300"]);
    let slirp_id = slirp.ok().stdout.trim().to_string();
    u.c(&["run", "-d", "--name", "rb-exit", "--network", "none", "busybox", "sh", "-c", "exit 3"]).ok();
    let state_of = |name: &str| {
        let o = u.c(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name]);
        o.ok().stdout.trim().to_string()
    };
    assert!(wait_until(Duration::from_secs(10), || state_of("rb-exit") == "exited 3"), "{}", state_of("rb-exit"));
    let sock = u.xdg.join("berth-engine/shims").join(&id).join("attach.sock");
    assert!(fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()), "no {}", sock.display());
    let state = u.xdg.join("berth").join(&id).join("state.json");
    assert!(state.exists(), "no runtime state {}", state.display());
    let dir = u.data_root().join("containers").join(&id);
    assert!(dir.join("shim.json").exists() && dir.join("container.log").exists(), "{}", dir.display());
    for e in fs::read_dir(&dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        assert!(
            !t.is_socket() && !e.file_name().to_string_lossy().ends_with(".pid"),
            "{:?} in the data root",
            e.path()
        );
    }
    // With a terminal: the console socket is in the shim's run dir too.
    let o = u.c(&["run", "--rm", "-t", "--network", "none", "busybox", "tty"]);
    assert!(o.ok().stdout.starts_with("/dev/pts/"), "{o}");
    // The exited container's shim is gone, and so is its run dir.
    let exited = u.c(&["inspect", "--format", "{{.Id}}", "rb-exit"]).ok().stdout.trim().to_string();
    assert!(!u.xdg.join("berth-engine/shims").join(&exited).exists(), "the exited container's shim dir is left");

    // "Reboot": every process of the session gone, $XDG_RUNTIME_DIR emptied.
    let keeper = u.keeper().expect("keeper pid");
    let procs = session_procs(keeper);
    assert!(procs.len() >= 5, "keeper, shims, containers, slirp4netns: {procs:?}");
    for p in &procs {
        // SAFETY: killing processes of this test's user session (in its keeper's user namespace).
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    assert!(wait_until(Duration::from_secs(10), || procs.iter().all(|p| !Path::new(&format!("/proc/{p}")).exists()
        || fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| s.contains("State:\tZ")))));
    for e in fs::read_dir(&u.xdg).unwrap().flatten() {
        fs::remove_dir_all(e.path()).unwrap_or_else(|err| panic!("empty {}: {err}", e.path().display()));
    }

    let o = u.c(&["ls", "-a", "--format", "{{.Names}} {{.State}}"]);
    let mut got = o.ok().lines();
    got.sort();
    assert_eq!(got, ["rb-exit exited", "rb-run exited", "rb-slirp exited"], "{o}");
    assert_eq!(state_of("rb-exit"), "exited 3");
    // Started again: a new keeper, overlay, network namespace and slirp4netns.
    u.c(&["start", "rb-slirp"]).ok();
    assert_eq!(state_of("rb-slirp"), "running 0");
    u.c(&["exec", "rb-slirp", "true"]).ok();
    u.c(&["stop", "-t", "0", "rb-slirp"]).ok();
    u.c(&["rm", "-f", "rb-run"]).ok();
    let o = u.cmd(&["system", "prune", "-f"]);
    o.ok();
    assert!(o.stdout.contains(&slirp_id), "prune: {o}");
    assert!(u.c(&["ls", "-aq"]).ok().stdout.trim().is_empty(), "containers left");
    let left: Vec<_> = fs::read_dir(u.data_root().join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "names")
        .collect();
    assert!(left.is_empty(), "left in the data root: {left:?}");
    // The engine works again (a new keeper, new namespaces).
    let o = u.c(&["run", "--rm", "busybox", "echo", "again"]);
    assert_eq!(o.ok().stdout, "again\n");
}

/// Without $XDG_RUNTIME_DIR, as podman: `$TMPDIR/berth-run-UID` (made 0700) with one warning
/// line; when that path is not the user's, one error line and nothing made.
#[test]
fn rootless_engine_without_xdg_runtime_dir() {
    let Some(u) = User::new("rle-noxdg", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    let tmp = u.ctx.tempdir("tmp");
    chown(&tmp, u.uid, id_of("-g", USER).unwrap());
    let cmd = |args: &[&str]| {
        let mut c = u.command(args);
        c.env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &tmp);
        u.ctx.exec_cmd(c, Duration::from_secs(60))
    };
    let run_dir = tmp.join(format!("berth-run-{}", u.uid));
    let o = cmd(&["container", "run", "--rm", "--network", "none", "busybox", "echo", "ok"]);
    assert_eq!(o.ok().stdout, "ok\n");
    let warn: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(warn.len(), 1, "{o}");
    assert!(warn[0].contains("$XDG_RUNTIME_DIR is not set") && warn[0].contains(&*run_dir.to_string_lossy()), "{o}");
    let m = fs::symlink_metadata(&run_dir).unwrap();
    assert!(m.is_dir() && m.uid() == u.uid && m.mode() & 0o777 == 0o700, "{m:?}");
    let keeper = fs::read_to_string(run_dir.join("berth-engine/keeper.pid")).unwrap();
    let keeper: i32 = keeper.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: killing the keeper this test's command made (its pid from the test's dir).
    unsafe { libc::kill(keeper, libc::SIGKILL) };

    // Another user's directory in its place: refused, nothing made below it.
    fs::remove_dir_all(&run_dir).unwrap();
    fs::create_dir(&run_dir).unwrap();
    fs::set_permissions(&run_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let o = cmd(&["container", "ls"]);
    o.one_line_error(&["$XDG_RUNTIME_DIR is not set", "not a directory of yours"]);
    assert_eq!(o.code, 125, "{o}");
    assert_eq!(fs::read_dir(&run_dir).unwrap().count(), 0, "made in another user's directory");
}

/// `--network pasta` (Debian's passt): the container has the host's address on eth0, a
/// published port is reached from the host's 127.0.0.1, and `rm` stops pasta and closes the
/// port; `default-rootless-network-cmd` in the data root's daemon.json makes it the default.
/// Root's engine refuses it in one line.
#[test]
fn rootless_engine_pasta_published_port() {
    if !Path::new("/usr/bin/pasta").exists() {
        eprintln!("SKIPPED: needs pasta (package passt)");
        return;
    }
    let Some(u) = User::new("rle-pasta", USER, Some((SUB_START, SUB_COUNT))) else { return };
    u.load_busybox();
    // Debian runs passt.avx2 (named so) where the CPU has it; pasta may change to nobody of the user's
    // namespace (a subordinate id).
    let pastas = || {
        let mut v = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let ruid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
            let ruid: u32 = ruid.and_then(|r| r.parse().ok()).unwrap_or(0);
            let ours = ruid == u.uid || (SUB_START..SUB_START + SUB_COUNT).contains(&ruid);
            let named = comm.starts_with("pasta") || comm.starts_with("passt");
            if ours && named && !status.contains("State:\tZ") {
                v.push(pid);
            }
        }
        v
    };
    let before = pastas().len();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let o = u.c(&[
        "run",
        "-d",
        "--network",
        "pasta",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "hostname > /tmp/h; ip -4 addr show eth0 > /tmp/a; httpd -f -p 80 -h /tmp",
    ]);
    let id = o.ok().stdout.trim().to_string();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let page = http_get(addr, "/h").unwrap_or_else(|e| panic!("GET from the host: {e}"));
    assert!(page.ends_with(&format!("{}\n", &id[..12])), "{page}");
    // The host's address on the interface with the default route.
    let route = fs::read_to_string("/proc/net/route").unwrap();
    let dev = route.lines().skip(1).find(|l| l.split_whitespace().nth(1) == Some("00000000"));
    if let Some(dev) = dev.and_then(|l| l.split_whitespace().next()) {
        let host = Command::new("ip").args(["-4", "-o", "addr", "show", "dev", dev]).output().unwrap();
        let host = String::from_utf8_lossy(&host.stdout);
        let want = host.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap().to_string();
        let a = http_get(addr, "/a").unwrap();
        assert!(a.contains(&format!("inet {want}")), "{a} (host: {host})");
        let o = u.c(&["inspect", "--format", "{{.NetworkSettings.IPAddress}}", &id]);
        assert_eq!(o.ok().stdout.trim(), want.split('/').next().unwrap());
    }
    let ls = u.c(&["ls"]).ok().stdout.clone();
    assert!(ls.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ls}");
    assert_eq!(pastas().len(), before + 1, "one pasta for the container");
    assert!(procs_named("slirp4netns", u.uid).is_empty(), "slirp4netns with --network pasta");
    u.c(&["rm", "-f", &id]).ok();
    assert!(wait_until(Duration::from_secs(3), || pastas().len() == before), "pasta left: {:?}", pastas());
    assert!(
        wait_until(Duration::from_secs(3), || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()),
        "port {port} still open"
    );
    let netns = u.xdg.join("berth-engine/netns");
    assert_eq!(fs::read_dir(&netns).map(|d| d.count()).unwrap_or(0), 0, "left in {}", netns.display());

    // The default setting: no --network, pasta's interface.
    fs::write(u.data_root().join("daemon.json"), r#"{"default-rootless-network-cmd": "pasta"}"#).unwrap();
    let o = u.c(&["run", "--rm", "busybox", "sh", "-c", "ls /sys/class/net | grep -v lo"]);
    assert_eq!(o.ok().stdout, "eth0\n", "{o}");
    fs::write(u.data_root().join("daemon.json"), r#"{"default-rootless-network-cmd": "vpnkit"}"#).unwrap();
    let o = u.c(&["run", "--rm", "busybox", "true"]);
    o.one_line_error(&["default-rootless-network-cmd"]);
    assert!(u.c(&["ls", "-aq"]).ok().stdout.trim().is_empty(), "a container was left");
    fs::remove_file(u.data_root().join("daemon.json")).unwrap();
    assert_eq!(pastas().len(), before);

    // Root's engine: one line, no container left.
    let e = crate::container::Eng::new("rle-pasta-root");
    let o = e.c(&["run", "--rm", "--network", "pasta", "busybox", "true"]);
    o.one_line_error(&["ordinary user"]);
    assert!(e.c(&["ls", "-aq"]).ok().stdout.trim().is_empty(), "a container was left");
}
