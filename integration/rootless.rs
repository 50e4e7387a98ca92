//! Rootless: an unprivileged user (`berth-rootless`, made by the test) runs `spec --rootless`,
//! then `run`, `run -d`, `exec`, `ps`, `state`, `list`, `kill`, `delete` with the default
//! `--root` ($XDG_RUNTIME_DIR/berth), and the cgroup rules of runc's rootless manager on this
//! host: no limit asked → no cgroup made; a limit asked → one clear line, nothing left.

use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const USER: &str = "berth-rootless";

/// True when unprivileged users may create user namespaces here (else the tests skip).
fn userns_allowed() -> bool {
    let read = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/kernel/unprivileged_userns_clone").is_some_and(|v| v == "0") {
        return false;
    }
    read("/proc/sys/user/max_user_namespaces").and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n > 0)
}

/// The uid and gid of the test user, made when missing (idempotent; its home is in `home`,
/// which needs not exist: nothing uses it).
fn test_user(home: &Path) -> (u32, u32) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap();
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, USER])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u32>().ok())
    };
    if id("-u").is_none() {
        let o = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", "-d"])
            .arg(home)
            .arg(USER)
            .output()
            .expect("run useradd");
        // A parallel run may have made it meanwhile (exit 9: user exists).
        assert!(o.status.success() || o.status.code() == Some(9), "useradd {USER}: {o:?}");
    }
    (id("-u").expect("uid of the test user"), id("-g").expect("gid of the test user"))
}

/// One rootless test: the user, a copy of the binary it can execute, its XDG_RUNTIME_DIR.
struct Rl {
    ctx: Ctx,
    uid: u32,
    gid: u32,
    xdg: PathBuf,
}

impl Rl {
    /// None (and a note) when this machine does not allow unprivileged user namespaces.
    fn new(name: &str) -> Option<Rl> {
        if !userns_allowed() {
            eprintln!("SKIPPED: unprivileged user namespaces are disabled on this machine");
            return None;
        }
        let mut ctx = Ctx::new(name);
        let (uid, gid) = test_user(&ctx.dir.join("home"));
        // The binary under test may live where the user cannot reach: use a copy in the test dir.
        ctx.use_private_bin_copy();
        let xdg = ctx.tempdir("xdg");
        chown(&xdg, uid, gid);
        fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).unwrap();
        Some(Rl { ctx, uid, gid, xdg })
    }

    /// The state dir berth (or runc) uses by default for this user.
    fn state_root(&self) -> PathBuf {
        self.xdg.join(if is_runc() { "runc" } else { "berth" })
    }

    /// `BIN args...` as the test user, without --root, in `cwd`, with a clean environment.
    fn as_user(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
            .arg(&self.ctx.bin)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("USER", USER)
            .env("HOME", self.ctx.dir.join("home"))
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .stdin(Stdio::null());
        c
    }

    fn cmd(&self, cwd: &Path, args: &[&str]) -> Out {
        self.ctx.exec_cmd(self.as_user(cwd, args), TIMEOUT)
    }

    /// A busybox bundle whose directory the user owns (the rootfs stays root's, readable by
    /// all), with the config `spec --rootless` wrote as that user, running `args`.
    fn bundle(&self, args: &[&str]) -> (Bundle, Value) {
        let b = self.ctx.bundle();
        chown(&b.dir, self.uid, self.gid);
        self.cmd(&b.dir, &["spec", "--rootless"]).ok();
        let cfg_path = b.dir.join("config.json");
        assert_eq!(fs::metadata(&cfg_path).unwrap().uid(), self.uid, "spec --rootless wrote config.json as the user");
        let mut cfg: Value = serde_json::from_str(&fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = json!(false);
        cfg["process"]["args"] = json!(args);
        (b, cfg)
    }

    fn write(&self, b: &Bundle, cfg: &Value) {
        let p = b.dir.join("config.json");
        fs::write(&p, serde_json::to_vec_pretty(cfg).unwrap()).unwrap();
        chown(&p, self.uid, self.gid);
    }

    /// No state dir for `id`, no process left in the bundle, no cgroup dir for `id`.
    #[track_caller]
    fn assert_gone(&self, b: &Bundle, id: &str) {
        assert!(!self.state_root().join(id).exists(), "state dir of {id} left in {}", self.state_root().display());
        let ok = wait_until(Duration::from_secs(3), || procs_in(&b.dir).is_empty());
        assert!(ok, "processes left in {}: {:?}", b.dir.display(), procs_in(&b.dir));
        for d in cgroup_dirs(id, None) {
            assert!(!d.exists(), "cgroup {} left", d.display());
        }
    }
}

impl Drop for Rl {
    fn drop(&mut self) {
        // The containers live in the user's state dir, which the harness does not know.
        if let Ok(rd) = fs::read_dir(self.state_root()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.cmd(&self.ctx.dir, &["delete", "-f", &id]);
            }
        }
    }
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// The v1 lines (`N:controllers:path`) of a /proc/PID/cgroup text, without the cgroup2 line.
fn v1_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().filter(|l| !l.starts_with("0::")).map(str::to_string).collect();
    v.sort();
    v
}

fn cgroup_v2_host() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[test]
fn rootless_spec_and_run() {
    let Some(rl) = Rl::new("rootless_run") else { return };
    let (b, mut cfg) =
        rl.bundle(&["sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; cat /proc/self/cgroup"]);
    // The config runc's `spec --rootless` writes: the caller's own ids mapped to 0 in a user
    // namespace, no network namespace, /sys bind-mounted, no resources.
    let m = |k: &str| cfg["linux"][k].clone();
    assert_eq!(m("uidMappings"), json!([{"containerID": 0, "hostID": rl.uid, "size": 1}]));
    assert_eq!(m("gidMappings"), json!([{"containerID": 0, "hostID": rl.gid, "size": 1}]));
    let ns: Vec<&str> =
        cfg["linux"]["namespaces"].as_array().unwrap().iter().filter_map(|n| n["type"].as_str()).collect();
    assert!(ns.contains(&"user") && !ns.contains(&"network"), "namespaces: {ns:?}");
    assert!(cfg["linux"].get("resources").is_none(), "resources in a rootless spec: {}", cfg["linux"]);
    let sys = cfg["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/sys").unwrap().clone();
    assert_eq!(
        sys,
        json!({"destination": "/sys", "type": "none", "source": "/sys",
                            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    );
    assert!(!cfg.to_string().contains("gid=5"), "no gid= option without that gid mapped: {cfg}");
    cfg["hostname"] = json!("rootless");
    rl.write(&b, &cfg);

    let id = rl.ctx.id("run");
    let o = rl.cmd(&b.dir, &["run", &id]);
    o.ok();
    let lines = o.lines();
    assert_eq!(lines[0], "0", "uid in the container: {o}");
    assert_eq!(lines[1], "0", "gid in the container: {o}");
    let map = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(map(&lines[2]), ["0", &rl.uid.to_string(), "1"], "uid_map: {o}");
    assert_eq!(map(&lines[3]), ["0", &rl.gid.to_string(), "1"], "gid_map: {o}");
    // The default --root for a non-root caller: $XDG_RUNTIME_DIR/berth, 0700 and sticky.
    let st = fs::metadata(rl.state_root()).unwrap_or_else(|e| panic!("{}: {e}", rl.state_root().display()));
    assert_eq!((st.uid(), st.mode() & 0o7777), (rl.uid, 0o1700), "{}", rl.state_root().display());
    if !cgroup_v2_host() {
        // No limit asked and no cgroup the user may write: the container stays in the caller's
        // cgroups (those of this test), none is made.
        let mine = fs::read_to_string("/proc/self/cgroup").unwrap();
        assert_eq!(v1_lines(&lines[4..].join("\n")), v1_lines(&mine), "{o}");
    }
    rl.assert_gone(&b, &id);
}

#[test]
fn rootless_detached_exec_ps_kill_delete() {
    let Some(rl) = Rl::new("rootless_detached") else { return };
    let (b, cfg) = rl.bundle(&["sleep", "300"]);
    rl.write(&b, &cfg);
    let id = rl.ctx.id("d");
    rl.cmd(&b.dir, &["run", "-d", &id]).ok();

    let st: Value = serde_json::from_str(&rl.cmd(&b.dir, &["state", &id]).ok().stdout).unwrap();
    assert_eq!(st["status"], "running");
    let pid = st["pid"].as_i64().unwrap() as i32;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(status_field(&status, "Uid").unwrap().split_whitespace().next(), Some(&*rl.uid.to_string()));
    assert!(rl.state_root().join(&id).is_dir());

    let o = rl.cmd(&b.dir, &["exec", &id, "sh", "-c", "id -u; cat /proc/self/uid_map; echo $$"]);
    o.ok();
    let lines = o.lines();
    assert_eq!(lines[0], "0", "{o}");
    assert_eq!(lines[1].split_whitespace().nth(1), Some(&*rl.uid.to_string()), "{o}");
    // In the container's pid namespace (the init is 1 there).
    let inner: i32 = lines[2].trim().parse().unwrap();
    assert!(inner > 1 && inner < 100, "exec'd pid inside the container: {o}");

    let q = rl.cmd(&b.dir, &["list", "-q"]);
    assert_eq!(q.ok().lines(), std::slice::from_ref(&id));
    let table = rl.cmd(&b.dir, &["list"]);
    let row = table.ok().lines().into_iter().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.split_whitespace().last() == Some(USER), "owner column: {table}");

    if !skip_on_runc("runc ps needs a cgroup, which a rootless v1 container does not have") {
        rl.cmd(&b.dir, &["exec", "-d", &id, "sleep", "301"]).ok();
        let ps = rl.cmd(&b.dir, &["ps", "--format", "json", &id]);
        let pids: Vec<i32> = serde_json::from_str(&ps.ok().stdout).unwrap();
        assert!(pids.contains(&pid) && pids.len() == 2, "ps: {ps}");
        let table = rl.cmd(&b.dir, &["ps", &id]);
        assert!(table.ok().stdout.contains("sleep 301"), "{table}");
    }

    if !cgroup_v2_host() {
        // No cgroup of its own: pause and update fail with runc's words.
        let words = |o: &Out, w: &str| {
            if is_runc() {
                assert!(o.fails().stderr.contains(w), "{o}");
            } else {
                o.one_line_error(&[w]);
            }
        };
        words(&rl.cmd(&b.dir, &["pause", &id]), "cannot toggle freezer: cgroups not configured for container");
        let o = rl.cmd(&b.dir, &["update", "--memory", "100000000", &id]);
        words(&o, "cannot set memory limit: container could not join or create cgroup");
        // events --stats has nothing to read: zeroed stats in the usual shape, as runc prints.
        let o = rl.cmd(&b.dir, &["events", "--stats", &id]);
        let v: Value = serde_json::from_str(o.ok().stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {o}"));
        assert_eq!(v["type"], "stats", "{o}");
        assert_eq!(v["id"], json!(id), "{o}");
        let d = &v["data"];
        // runc's explicit zero fields: Go's omitempty leaves out zero numbers and empty lists
        // but never a struct, so cpu usage/throttling and the four memory entries are there.
        let zero_entry = json!({"limit": 0, "failcnt": 0});
        let want = json!({
            "cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}},
            "cpuset": {
                "cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0, "memory_migrate": 0,
                "memory_spread_page": 0, "memory_spread_slab": 0, "memory_pressure": 0,
                "sched_load_balance": 0, "sched_relax_domain_level": 0
            },
            "memory": {"usage": zero_entry, "swap": zero_entry, "kernel": zero_entry, "kernelTCP": zero_entry},
            "pids": {}, "blkio": {}, "hugetlb": {}, "intel_rdt": {}, "network_interfaces": null
        });
        assert_eq!(d, &want, "{o}");
        // In runc's field order too.
        let text = o.stdout.trim();
        assert!(text.contains(r#""data":{"cpu":{"usage":{"kernel":0,"user":0},"throttling":{}},"cpuset":"#), "{o}");
        assert_eq!(
            serde_json::from_str::<Value>(&rl.cmd(&b.dir, &["state", &id]).stdout).unwrap()["status"],
            "running"
        );
    }

    rl.cmd(&b.dir, &["kill", &id, "KILL"]).ok();
    let stopped = wait_until(Duration::from_secs(5), || {
        serde_json::from_str::<Value>(&rl.cmd(&b.dir, &["state", &id]).stdout).is_ok_and(|v| v["status"] == "stopped")
    });
    assert!(stopped, "container did not stop");
    rl.cmd(&b.dir, &["delete", &id]).ok();
    rl.cmd(&b.dir, &["state", &id]).fails();
    assert!(!pid_alive(pid) || proc_state(pid) == Some('Z'));
    rl.assert_gone(&b, &id);
    assert_eq!(rl.cmd(&b.dir, &["list", "-q"]).ok().stdout, "");
}

#[test]
fn rootless_limit_without_cgroup_fails() {
    let Some(rl) = Rl::new("rootless_limit") else { return };
    let (b, mut cfg) = rl.bundle(&["true"]);
    cfg["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}});
    rl.write(&b, &cfg);
    let id = rl.ctx.id("mem");
    let o = rl.cmd(&b.dir, &["run", &id]);
    if cgroup_v2_host() {
        o.one_line_error(&["rootless needs no limits + no cgrouppath when no permission is granted for cgroups"]);
    } else if is_runc() {
        // runc adds its log prefix and warnings; its words are the same.
        assert!(o.fails().stderr.contains("cannot set memory limit: container could not join or create cgroup"), "{o}");
    } else {
        o.one_line_error(&["cannot set memory limit: container could not join or create cgroup"]);
    }
    rl.assert_gone(&b, &id);

    // An explicit cgroupsPath the user may not create is an error too (runc's rule).
    cfg["linux"]["resources"] = json!(null);
    cfg["linux"]["cgroupsPath"] = json!(format!("/berth/{id}-explicit"));
    rl.write(&b, &cfg);
    let o = rl.cmd(&b.dir, &["run", &id]);
    if is_runc() {
        assert!(o.fails().stderr.contains("permission denied"), "{o}");
    } else {
        o.one_line_error(&["permission denied"]);
    }
    rl.assert_gone(&b, &id);
    for d in cgroup_dirs(&format!("{id}-explicit"), None) {
        assert!(!d.exists(), "cgroup {} left", d.display());
    }
}

/// `spec --rootless` as the user writes what runc's does, byte for byte, but for berth's
/// deliberate differences: its ociVersion, hostname "berth", and no ambient capabilities (as
/// runc's own spec since 1.2). Needs Debian's runc (skipped without it).
#[test]
fn rootless_spec_bytes_match_runc() {
    let runc = Path::new("/usr/sbin/runc");
    if !runc.exists() || is_runc() {
        eprintln!("SKIPPED: needs /usr/sbin/runc to compare with, and berth under test");
        return;
    }
    let Some(rl) = Rl::new("rootless_spec_bytes") else { return };
    let ours = rl.ctx.tempdir("ours");
    let theirs = rl.ctx.tempdir("theirs");
    chown(&ours, rl.uid, rl.gid);
    chown(&theirs, rl.uid, rl.gid);
    rl.cmd(&ours, &["spec", "--rootless"]).ok();
    let mut c2 = Command::new("setpriv");
    c2.args(["--reuid", USER, "--regid", USER, "--init-groups", "--"]).arg(runc).args(["spec", "--rootless"]);
    c2.current_dir(&theirs).env_clear().env("XDG_RUNTIME_DIR", &rl.xdg).stdin(Stdio::null());
    rl.ctx.exec_cmd(c2, TIMEOUT).ok();
    let ours = fs::read_to_string(ours.join("config.json")).unwrap();
    let mut want = fs::read_to_string(theirs.join("config.json")).unwrap();
    let version: Value = serde_json::from_str(&ours).unwrap();
    let runc_version: Value = serde_json::from_str(&want).unwrap();
    want = want
        .replacen(
            &format!("\"ociVersion\": {}", runc_version["ociVersion"]),
            &format!("\"ociVersion\": {}", version["ociVersion"]),
            1,
        )
        .replacen("\"hostname\": \"runc\"", "\"hostname\": \"berth\"", 1);
    if let Some(i) = want.find(",\n\t\t\t\"ambient\": [") {
        let end = i + want[i..].find("\n\t\t\t]").unwrap() + "\n\t\t\t]".len();
        want.replace_range(i..end, "");
    }
    assert_eq!(ours, want, "berth spec --rootless differs from runc's beyond the deliberate differences");
}

/// The user's subordinate id range from /etc/subuid or /etc/subgid, added when missing.
fn sub_range(file: &str) -> (u32, u32) {
    let find = || {
        fs::read_to_string(file).unwrap_or_default().lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == USER)
                .then(|| (f[1].parse().ok(), f[2].parse().ok()))
                .and_then(|(a, b)| Some((a?, b?)))
        })
    };
    if let Some(r) = find() {
        return r;
    }
    let flag = if file.ends_with("subuid") { "--add-subuids" } else { "--add-subgids" };
    let o = Command::new("usermod").args([flag, "300000-365535", USER]).output().expect("run usermod");
    assert!(o.status.success(), "usermod {flag}: {o:?}");
    find().expect("subordinate ids after usermod")
}

/// Mapping more than the caller's own id goes through newuidmap/newgidmap (the uidmap package),
/// within the ranges /etc/subuid and /etc/subgid grant the user, as runc does.
#[test]
fn rootless_newuidmap_for_more_ids() {
    if !Path::new("/usr/bin/newuidmap").exists() {
        eprintln!("SKIPPED: newuidmap is not installed (apt-get install uidmap)");
        return;
    }
    let Some(rl) = Rl::new("rootless_newuidmap") else { return };
    let (su, _) = sub_range("/etc/subuid");
    let (sg, _) = sub_range("/etc/subgid");
    let (b, mut cfg) = rl.bundle(&["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g"]);
    cfg["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": rl.uid, "size": 1}, {"containerID": 1, "hostID": su, "size": 1000}]);
    cfg["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": rl.gid, "size": 1}, {"containerID": 1, "hostID": sg, "size": 1000}]);
    // runc's rule: no additional groups for a non-root caller, one line, nothing left.
    cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10]});
    rl.write(&b, &cfg);
    let id = rl.ctx.id("map");
    let o = rl.cmd(&b.dir, &["run", &id]);
    if is_runc() {
        assert!(o.fails().stderr.contains("cannot set any additional groups in a rootless container"), "{o}");
    } else {
        o.one_line_error(&["cannot set any additional groups in a rootless container"]);
    }
    rl.assert_gone(&b, &id);
    cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    rl.write(&b, &cfg);
    let o = rl.cmd(&b.dir, &["run", &id]);
    o.ok();
    let rows: Vec<Vec<String>> = o.lines().iter().map(|l| l.split_whitespace().map(str::to_string).collect()).collect();
    let row = |c: u32, h: u32, s: u32| vec![c.to_string(), h.to_string(), s.to_string()];
    assert_eq!(rows[0..2], [row(0, rl.uid, 1), row(1, su, 1000)], "uid_map: {o}");
    assert_eq!(rows[2..4], [row(0, rl.gid, 1), row(1, sg, 1000)], "gid_map: {o}");
    assert_eq!(rows[4..6], [["1000"], ["1000"]], "uid and gid in the container: {o}");
    rl.assert_gone(&b, &id);

    if !skip_on_runc("the wording when newuidmap cannot be found is berth's") {
        // Without the helper (not on PATH): one line that says what is needed, nothing left.
        let mut c = rl.as_user(&b.dir, &["run", &id]);
        c.env("PATH", "/nonexistent");
        let o = rl.ctx.exec_cmd(c, TIMEOUT);
        o.one_line_error(&["needs newuidmap (from the uidmap package)"]);
        rl.assert_gone(&b, &id);
    }
}

/// cgroup v2 (the VM: integration/vm/run-v2.sh rootless_v2): a subtree delegated to the user
/// (owned by it, as a systemd user session gets one) with the caller inside it; a relative
/// cgroupsPath goes below the parent of the caller's cgroup, limits apply, delete removes it.
#[test]
fn rootless_v2_delegated_cgroup() {
    if !cgroup_v2_host() {
        eprintln!("SKIPPED: needs a cgroup v2 host (run in the VM: integration/vm/run-v2.sh rootless_v2)");
        return;
    }
    let Some(rl) = Rl::new("rootless_v2") else { return };
    let base = PathBuf::from(format!("/sys/fs/cgroup/berth-it-rl{}", std::process::id()));
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            for d in ["self", "ctr", ""] {
                let _ = fs::remove_dir(self.0.join(d));
            }
        }
    }
    let _rm = Rm(base.clone());
    fs::create_dir(&base).unwrap();
    fs::write(base.join("cgroup.subtree_control"), "+memory +pids").unwrap();
    fs::create_dir(base.join("self")).unwrap();
    // Delegation as systemd does it: the directory and its cgroup.procs, cgroup.threads and
    // cgroup.subtree_control belong to the user.
    for p in [&base, &base.join("self")] {
        chown(p, rl.uid, rl.gid);
        for f in ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] {
            chown(&p.join(f), rl.uid, rl.gid);
        }
    }
    let (b, mut cfg) = rl.bundle(&["sleep", "300"]);
    cfg["linux"]["cgroupsPath"] = json!("ctr");
    cfg["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 50}});
    rl.write(&b, &cfg);
    let id = rl.ctx.id("v2");
    // The caller joins the delegated subtree first (a shell as root, then the user's berth).
    let in_self = |args: &[&str]| {
        let inner = rl.as_user(&b.dir, args);
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("echo $$ > {}/self/cgroup.procs && exec \"$@\"", base.display()))
            .arg("sh")
            .arg(inner.get_program())
            .args(inner.get_args())
            .current_dir(&b.dir)
            .env_clear()
            .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::null());
        rl.ctx.exec_cmd(c, TIMEOUT)
    };
    in_self(&["run", "-d", &id]).ok();
    let ctr = base.join("ctr");
    assert_eq!(fs::read_to_string(ctr.join("memory.max")).unwrap().trim(), "67108864");
    assert_eq!(fs::read_to_string(ctr.join("pids.max")).unwrap().trim(), "50");
    let st: Value = serde_json::from_str(&rl.cmd(&b.dir, &["state", &id]).ok().stdout).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(cg.trim(), format!("0::/{}/ctr", base.file_name().unwrap().to_string_lossy()));
    let ps = rl.cmd(&b.dir, &["ps", "--format", "json", &id]);
    assert!(ps.ok().stdout.contains(&pid.to_string()), "{ps}");
    in_self(&["delete", "-f", &id]).ok();
    assert!(!ctr.exists(), "the container's cgroup is left");
    rl.assert_gone(&b, &id);
}
