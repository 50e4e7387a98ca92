//! The docker-style engine commands: `berth container ...` and `berth volume ...`,
//! with images loaded from a docker-save archive of the harness's busybox rootfs. Every test
//! has its own --data-root and --root. Covered: attached runs and exit codes (125/126/127),
//! -d + logs, -i from a pipe, --rm leaving nothing, names, stop (stop signal, timeout),
//! restart policy, volumes (named, anonymous, bind :ro), exec, inspect / ls formats, --init,
//! the CLI or the shim being killed, and a published port reached from the host.
//! All berth-only.

use crate::common::images::{sha256_bytes, sha256_file, tar_dir, tool};
use crate::common::*;
use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A docker-save archive (manifest.json, <config>.json, <layer>/layer.tar) of one image.
fn save_archive(ctx: &Ctx, out: &Path, layer_tar: &Path, repo_tag: &str, config: &Value) {
    let d = ctx.tempdir("save");
    let (lhex, _) = sha256_file(layer_tar);
    mkdir(&d.join(&lhex), 0o755);
    fs::copy(layer_tar, d.join(&lhex).join("layer.tar")).unwrap();
    let mut cfg = config.clone();
    cfg["rootfs"] = json!({"type": "layers", "diff_ids": [format!("sha256:{lhex}")]});
    let data = serde_json::to_vec(&cfg).unwrap();
    let chex = sha256_bytes(&data);
    fs::write(d.join(format!("{chex}.json")), &data).unwrap();
    let manifest =
        json!([{"Config": format!("{chex}.json"), "RepoTags": [repo_tag], "Layers": [format!("{lhex}/layer.tar")]}]);
    fs::write(d.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let tmp = out.with_extension(format!("{}.tmp", std::process::id()));
    tool(
        Command::new("tar")
            .arg("-C")
            .arg(&d)
            .arg("-cf")
            .arg(&tmp)
            .arg(&lhex)
            .arg(format!("{chex}.json"))
            .arg("manifest.json"),
    );
    fs::rename(&tmp, out).unwrap();
    let _ = fs::remove_dir_all(&d);
}

/// The test images, built once per test process: `busybox` (Cmd sh) and `berth-test/extra`
/// (a VOLUME /data, EXPOSE 80, STOPSIGNAL SIGUSR1, a label).
pub fn archives() -> &'static (PathBuf, PathBuf) {
    static A: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    A.get_or_init(|| {
        let ctx = Ctx::new("engine-images");
        // The harness's rootfs with its own copy of busybox: the shared one is hard-linked by
        // every bundle of the parallel tests (its ctime changes while tar reads it).
        let b = ctx.bundle();
        let bb = b.rootfs.join("bin/busybox");
        let data = fs::read(&bb).unwrap();
        fs::remove_file(&bb).unwrap();
        fs::write(&bb, data).unwrap();
        fs::set_permissions(&bb, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let layer = ctx.dir.join("engine-layer.tar");
        tar_dir(&b.rootfs, &layer);
        let base = json!({
            "architecture": images_arch(), "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        });
        let a = Path::new(TMP_BASE).join("engine-busybox.tar");
        save_archive(&ctx, &a, &layer, "busybox:latest", &base);
        let mut extra = base.clone();
        extra["config"]["Volumes"] = json!({"/data": {}});
        extra["config"]["ExposedPorts"] = json!({"80/tcp": {}});
        extra["config"]["StopSignal"] = json!("SIGUSR1");
        extra["config"]["Labels"] = json!({"org.example.kind": "extra"});
        let b = Path::new(TMP_BASE).join("engine-extra.tar");
        save_archive(&ctx, &b, &layer, "berth-test/extra:latest", &extra);
        (a, b)
    })
}

fn images_arch() -> &'static str {
    crate::common::images::host_arch()
}

/// One test's engine: its Ctx (--root), --data-root and the busybox image loaded.
/// Dropping it force-removes every container and volume it made.
pub(crate) struct Eng {
    pub(crate) data: PathBuf,
    pub(crate) ctx: Ctx,
}

impl Eng {
    pub(crate) fn new(name: &str) -> Eng {
        let ctx = Ctx::new(name);
        let data = ctx.tempdir("data");
        let e = Eng { data, ctx };
        let (a, _) = archives();
        e.cmd(&["image", "load", "-i", a.to_str().unwrap()]).ok();
        e
    }

    pub(crate) fn load_extra(&self) {
        let (_, b) = archives();
        self.cmd(&["image", "load", "-i", b.to_str().unwrap()]).ok();
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = self.ctx.command(&["--data-root", self.data.to_str().unwrap()]);
        c.args(args);
        c
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Out {
        self.ctx.exec_cmd(self.command(args), Duration::from_secs(60))
    }

    /// `container ARGS...`
    pub(crate) fn c(&self, args: &[&str]) -> Out {
        let mut v = vec!["container"];
        v.extend_from_slice(args);
        self.cmd(&v)
    }

    pub(crate) fn spawn_c(&self, args: &[&str]) -> Bg {
        let mut v = vec!["container"];
        v.extend_from_slice(args);
        self.ctx.spawn_cmd(self.command(&v))
    }

    /// `container run -d ARGS...`: the 64-hex id.
    #[track_caller]
    pub(crate) fn run_d(&self, args: &[&str]) -> String {
        let mut v = vec!["run", "-d"];
        v.extend_from_slice(args);
        let o = self.c(&v);
        o.ok();
        let id = o.stdout.trim().to_string();
        assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "run -d prints the 64-hex id: {o}");
        id
    }

    #[track_caller]
    pub(crate) fn inspect(&self, key: &str) -> Value {
        let o = self.c(&["inspect", key]);
        o.ok();
        let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("inspect is not JSON ({e}): {o}"));
        v[0].clone()
    }

    pub(crate) fn status(&self, key: &str) -> String {
        let o = self.c(&["inspect", "-f", "{{.State.Status}}", key]);
        o.stdout.trim().to_string()
    }

    #[track_caller]
    pub(crate) fn wait_status(&self, key: &str, want: &str, timeout: Duration) {
        let mut last = String::new();
        let ok = wait_until(timeout, || {
            last = self.status(key);
            last == want
        });
        assert!(ok, "container {key} did not become {want} in {timeout:?} (last: {last:?})");
    }

    pub(crate) fn container_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.data.join("containers"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "names")
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// What a container may leave behind, each as a problem description.
    pub(crate) fn leftovers(&self, id: &str) -> Vec<String> {
        let mut p = Vec::new();
        let dir = self.data.join("containers").join(id);
        if dir.exists() {
            p.push(format!("container dir {} exists", dir.display()));
        }
        for m in mounts_under(&self.data).into_iter().filter(|m| m.contains(id)) {
            p.push(format!("mount {m}"));
        }
        let netns = Path::new("/run/berth/netns").join(id);
        if netns.exists() {
            p.push(format!("netns {}", netns.display()));
        }
        let att = self.data.join("network/attachments").join(format!("{id}.json"));
        if att.exists() {
            p.push(format!("network attachment {}", att.display()));
        }
        if self.ctx.root.join(id).exists() {
            p.push(format!("runtime state {}", self.ctx.root.join(id).display()));
        }
        for cg in cgroup_dirs(id, None) {
            if cg.exists() {
                p.push(format!("cgroup {}", cg.display()));
            }
        }
        if self.data.join("image/uses").join(id).exists() {
            p.push("image use record".into());
        }
        for (pid, what) in procs_in(&self.data) {
            p.push(format!("process {pid} has its {what} in the data root"));
        }
        for pid in procs_with_arg(id) {
            p.push(format!("process {pid} has the id in its command line"));
        }
        if let Some(owner) = fs::read_dir(self.data.join("containers/names"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .find(|e| fs::read_to_string(e.path()).unwrap_or_default().trim() == id)
        {
            p.push(format!("name claim {}", owner.path().display()));
        }
        p
    }

    /// Asserts (waiting a little for clean-ups in flight) that nothing of `id` is left.
    #[track_caller]
    pub(crate) fn assert_gone(&self, id: &str) {
        let mut last = Vec::new();
        let ok = wait_until(Duration::from_secs(5), || {
            last = self.leftovers(id);
            last.is_empty()
        });
        assert!(ok, "left behind by container {id}:\n{}", last.join("\n"));
    }
}

impl Drop for Eng {
    fn drop(&mut self) {
        let o = self.c(&["ls", "-aq", "--no-trunc"]);
        for id in o.lines() {
            let _ = self.c(&["rm", "-f", "-v", id.trim()]);
        }
        let _ = self.cmd(&["volume", "prune", "-a"]);
        let _ = self.cmd(&["network", "prune"]);
    }
}

/// Processes (not zombies) whose command line contains `needle` (e.g. a shim's --id).
fn procs_with_arg(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me || proc_state(pid) == Some('Z') {
            continue;
        }
        let cl = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cl).contains(needle) {
            v.push(pid);
        }
    }
    v
}

/// A pipe whose read end carries `data` then EOF.
fn pipe_with(data: &[u8]) -> OwnedFd {
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut f = fs::File::from(w);
    f.write_all(data).unwrap();
    drop(f);
    r
}

#[track_caller]
pub(crate) fn assert_one_line(o: &Out, code: i32, words: &[&str]) {
    assert_eq!(o.code, code, "exit code: {o}");
    o.one_line_error(words);
}

// ---------------------------------------------------------------------------------------------

#[test]
fn run_attached_exit_code_and_output() {
    let e = Eng::new("eng-attached");
    let o = e.c(&["run", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.code, 3, "the container's exit code: {o}");
    assert_eq!(o.stdout, "out\n", "{o}");
    assert_eq!(o.stderr, "err\n", "{o}");
    let o = e.c(&["run", "--network", "none", "busybox", "true"]);
    o.ok();
    let o = e.c(&["ls", "-a", "-q"]);
    assert_eq!(o.lines().len(), 2, "two exited containers: {o}");
}

#[test]
fn run_detached_then_logs() {
    let e = Eng::new("eng-logs");
    let id = e.run_d(&[
        "--network",
        "none",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two >&2; sleep 0.2; echo three; sleep 100",
    ]);
    let ok = wait_until(Duration::from_secs(5), || e.c(&["logs", "talker"]).stdout.contains("three"));
    assert!(ok, "logs show the output");
    let o = e.c(&["logs", "talker"]);
    assert_eq!(o.stdout, "one\nthree\n", "{o}");
    assert_eq!(o.stderr, "two\n", "{o}");
    let o = e.c(&["logs", "--tail", "1", &id[..12]]);
    assert_eq!(o.stdout, "three\n", "{o}");
    let o = e.c(&["logs", "-t", &id]);
    let first = o.stdout.lines().next().unwrap_or("").to_string();
    assert!(first.len() > 20 && first.ends_with(" one") && first.contains('T'), "timestamps: {o}");
    let o = e.c(&["ls"]);
    o.ok();
    assert!(o.stdout.lines().any(|l| l.starts_with(&id[..12]) && l.contains("Up ") && l.ends_with("talker")), "{o}");
    // Follow stops when the container exits.
    let f = e.spawn_c(&["logs", "-f", "talker"]);
    std::thread::sleep(Duration::from_millis(300));
    e.c(&["stop", "-t", "0", "talker"]).ok();
    let o = f.wait(Duration::from_secs(15));
    assert_eq!(o.code, 0, "logs -f ends with the container: {o}");
    assert!(o.stdout.contains("three"), "{o}");
}

#[test]
fn stdin_from_a_pipe() {
    let e = Eng::new("eng-stdin");
    let mut c =
        e.command(&["container", "run", "-i", "--rm", "--network", "none", "busybox", "sh", "-c", "cat; echo done"]);
    c.stdin(Stdio::from(pipe_with(b"hello\nworld\n")));
    let o = e.ctx.exec_cmd(c, Duration::from_secs(30));
    o.ok();
    assert_eq!(o.stdout, "hello\nworld\ndone\n", "{o}");
    // Without -i the container gets no stdin (EOF at once).
    let mut c = e.command(&["container", "run", "--rm", "--network", "none", "busybox", "sh", "-c", "cat; echo done"]);
    c.stdin(Stdio::from(pipe_with(b"ignored\n")));
    let o = e.ctx.exec_cmd(c, Duration::from_secs(30));
    assert_eq!(o.stdout, "done\n", "{o}");
}

#[test]
fn rm_flag_leaves_nothing() {
    let e = Eng::new("eng-rm");
    // The default bridge network: a netns, a veth, an attachment record.
    let o = e.c(&[
        "run",
        "--rm",
        "--name",
        "gone",
        "-v",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "ip addr show eth0 | grep -c 'inet ' ; cat /proc/self/cgroup | head -1",
    ]);
    o.ok();
    assert!(o.stdout.starts_with("1\n"), "the container had an address: {o}");
    assert!(e.container_dirs().is_empty(), "no container dir after --rm: {:?}", e.container_dirs());
    assert!(e.c(&["ls", "-aq"]).stdout.is_empty());
    let o = e.cmd(&["volume", "ls", "-q"]);
    assert!(o.stdout.trim().is_empty(), "--rm removes anonymous volumes: {o}");
    // A detached --rm container goes once it exits.
    let id = e.run_d(&["--rm", "--network", "none", "busybox", "sh", "-c", "sleep 0.3"]);
    e.assert_gone(&id);
    // The name can be used again at once.
    e.c(&["run", "--rm", "--name", "gone", "--network", "none", "busybox", "true"]).ok();
    let o = e.c(&["run", "--rm", "--name", "gone", "--network", "none", "busybox", "true"]);
    o.ok();
    let left: Vec<String> = e
        .leftovers(&"0".repeat(64))
        .into_iter()
        .filter(|l| l.starts_with("mount") || l.starts_with("process"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn names_are_unique_and_generated() {
    let e = Eng::new("eng-names");
    let id = e.run_d(&["--network", "none", "--name", "web", "busybox", "sleep", "100"]);
    let before = e.container_dirs();
    let o = e.c(&["run", "--network", "none", "--name", "web", "busybox", "true"]);
    assert_one_line(&o, 125, &["already in use"]);
    let o = e.c(&["create", "--name", "web", "busybox"]);
    assert_one_line(&o, 125, &["already in use"]);
    assert_eq!(e.container_dirs(), before, "a refused name makes nothing");
    let o = e.c(&["run", "--name", "bad name", "busybox", "true"]);
    assert_one_line(&o, 125, &["invalid container name"]);
    // Generated names: adjective_noun, unique.
    let a = e.run_d(&["--network", "none", "busybox", "sleep", "100"]);
    let n = e.inspect(&a)["Name"].as_str().unwrap().to_string();
    assert!(n.starts_with('/') && n.contains('_'), "generated name {n:?}");
    // Ids: the 64 hex digits, 12 of them, or any unique prefix; names with or without '/'.
    for key in [id.as_str(), &id[..12], &id[..5], "web", "/web"] {
        assert_eq!(e.inspect(key)["Id"], json!(id), "lookup by {key}");
    }
    let o = e.c(&["inspect", "nosuchcontainer"]);
    assert_one_line(&o, 125, &["no such container"]);
    // After rm the name is free again.
    e.c(&["rm", "-f", "web"]).ok();
    e.assert_gone(&id);
    e.run_d(&["--network", "none", "--name", "web", "busybox", "sleep", "100"]);
}

#[test]
fn not_found_and_not_executable() {
    let e = Eng::new("eng-execerr");
    let before = e.container_dirs();
    let o = e.c(&["run", "--network", "none", "busybox", "nonexistent-cmd"]);
    assert_one_line(&o, 127, &["not found"]);
    let o = e.c(&["run", "--network", "none", "busybox", "/etc/passwd"]);
    assert_one_line(&o, 126, &["permission denied", "not executable", "exec format"]);
    let o = e.c(&["run", "-d", "--network", "none", "busybox", "/nonexistent"]);
    assert_one_line(&o, 127, &["no such file", "not found"]);
    // A bridge network too: its netns and addresses are given back.
    let o = e.c(&["run", "busybox", "nonexistent-cmd"]);
    assert_one_line(&o, 127, &["not found"]);
    assert_eq!(e.container_dirs(), before, "a run that could not start leaves no container");
    let leftovers = e.leftovers(&"0".repeat(64));
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        fs::read_dir(e.data.join("network/attachments")).map(|d| d.count()).unwrap_or(0) == 0,
        "no attachment left"
    );
    assert!(
        fs::read_dir(&e.ctx.root)
            .map(|d| d.filter_map(|x| x.ok()).filter(|x| x.file_name().len() == 64).count())
            .unwrap_or(0)
            == 0
    );
}

#[test]
fn bad_input_is_125_and_makes_nothing() {
    let e = Eng::new("eng-badinput");
    let before = e.container_dirs();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["run", "--pull", "never", "nosuchimage", "true"], vec!["unable to find image"]),
        (vec!["run", "-v", "rel/path:/x", "busybox", "true"], vec!["volume"]),
        (vec!["run", "-v", "/tmp:relative", "busybox", "true"], vec!["volume"]),
        (vec!["run", "-v", "/tmp:/x:bogus", "busybox", "true"], vec!["volume", "mode"]),
        (vec!["run", "-p", "99999:80", "busybox", "true"], vec!["port"]),
        (vec!["run", "-p", "80/sctpx", "busybox", "true"], vec!["port", "protocol"]),
        (vec!["run", "--memory", "lots", "busybox", "true"], vec!["memory"]),
        (vec!["run", "--restart", "sometimes", "busybox", "true"], vec!["restart"]),
        (vec!["run", "--rm", "--restart", "always", "busybox", "true"], vec!["restart"]),
        (vec!["run", "--security-opt", "seccomp=/nonexistent.json", "busybox", "true"], vec!["seccomp"]),
        (vec!["run", "--cap-add", "NOT_A_CAP", "--network", "none", "busybox", "true"], vec!["capability"]),
        (vec!["run", "-w", "relative", "busybox", "true"], vec!["working directory"]),
        (vec!["run", "--stop-signal", "SIGNOPE", "busybox", "true"], vec!["signal"]),
        (vec!["run", "--network", "none", "-p", "80", "busybox", "true"], vec!["port"]),
        (vec!["run", "--network", "nosuchnet", "busybox", "true"], vec!["network", "nosuchnet"]),
        (vec!["rm", "nosuchcontainer"], vec!["no such container"]),
        (vec!["stop", "nosuchcontainer"], vec!["no such container"]),
    ];
    for (args, words) in cases {
        let o = e.c(&args);
        assert_one_line(&o, 125, &words);
        assert_eq!(e.container_dirs(), before, "{args:?} made nothing");
        let left = e.leftovers(&"0".repeat(64));
        assert!(left.is_empty(), "{args:?}: {left:?}");
    }
    // A bad flag: clap's usage message, docker's 125.
    let o = e.c(&["run", "--no-such-flag", "busybox", "true"]);
    assert_eq!(o.code, 125, "{o}");
    let o = e.cmd(&["volume", "rm", "nosuchvolume"]);
    assert_one_line(&o, 125, &["no such volume"]);
    let o = e.cmd(&["volume", "inspect", "nosuchvolume"]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("no such volume"), "{o}");
    assert!(fs::read_dir(e.data.join("volumes")).map(|d| d.count()).unwrap_or(0) == 0, "no volume made");
}

#[test]
fn stop_uses_the_stop_signal_then_the_timeout() {
    let e = Eng::new("eng-stop");
    // A trap on the stop signal: stop returns as soon as the container exits.
    e.run_d(&[
        "--network",
        "none",
        "--name",
        "polite",
        "--stop-signal",
        "SIGUSR1",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 9' USR1; echo ready; while :; do sleep 0.1; done",
    ]);
    assert!(wait_until(Duration::from_secs(5), || e.c(&["logs", "polite"]).stdout.contains("ready")));
    let t = Instant::now();
    let o = e.c(&["stop", "polite"]);
    o.ok();
    assert_eq!(o.stdout, "polite\n");
    assert!(t.elapsed() < Duration::from_secs(5), "stop waited {:?}", t.elapsed());
    let v = e.inspect("polite");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 9, "{v}");
    assert!(e.c(&["logs", "polite"]).stdout.contains("got-usr1"));
    // The image's STOPSIGNAL is the default.
    e.load_extra();
    e.run_d(&[
        "--network",
        "none",
        "--name",
        "imgsig",
        "berth-test/extra",
        "sh",
        "-c",
        "trap 'exit 4' USR1; while :; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    e.c(&["stop", "imgsig"]).ok();
    assert_eq!(e.inspect("imgsig")["State"]["ExitCode"], 4);
    // sleep as pid 1 ignores SIGTERM: SIGKILL after -t seconds.
    e.run_d(&["--network", "none", "--name", "stubborn", "busybox", "sleep", "1000"]);
    let t = Instant::now();
    e.c(&["stop", "-t", "1", "stubborn"]).ok();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(8), "stop -t 1 took {took:?}");
    assert_eq!(e.inspect("stubborn")["State"]["ExitCode"], 137);
    let o = e.c(&["ls", "-a"]);
    assert!(o.stdout.lines().any(|l| l.contains("Exited (137)") && l.ends_with("stubborn")), "{o}");
    // Stopped containers start again and keep their writable layer.
    e.run_d(&["--network", "none", "--name", "again", "busybox", "sh", "-c", "echo run >> /count; sleep 1000"]);
    std::thread::sleep(Duration::from_millis(200));
    e.c(&["stop", "-t", "0", "again"]).ok();
    e.c(&["start", "again"]).ok();
    e.wait_status("again", "running", Duration::from_secs(5));
    let o = e.c(&["exec", "again", "cat", "/count"]);
    assert_eq!(o.stdout, "run\nrun\n", "{o}");
    e.c(&["restart", "-t", "0", "again"]).ok();
    e.wait_status("again", "running", Duration::from_secs(5));
    e.c(&["kill", "again"]).ok();
    e.wait_status("again", "exited", Duration::from_secs(5));
    assert_eq!(e.inspect("again")["State"]["ExitCode"], 137);
    assert!(mounts_under(&e.data).is_empty(), "a stopped container has no mount: {:?}", mounts_under(&e.data));
}

#[test]
fn restart_on_failure() {
    let e = Eng::new("eng-restart");
    let id = e.run_d(&[
        "--network",
        "none",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo attempt; exit 5",
    ]);
    let o = e.c(&["wait", "flaky"]);
    o.ok();
    assert_eq!(o.stdout, "5\n", "wait prints the exit code: {o}");
    let v = e.inspect(&id);
    assert_eq!(v["RestartCount"], 2, "{v}");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["HostConfig"]["RestartPolicy"], json!({"Name": "on-failure", "MaximumRetryCount": 2}));
    assert_eq!(e.c(&["logs", "flaky"]).stdout, "attempt\nattempt\nattempt\n");
    // A success is not restarted; stop prevents restarts of `always`.
    e.run_d(&["--network", "none", "--name", "ok", "--restart", "on-failure", "busybox", "true"]);
    assert_eq!(e.c(&["wait", "ok"]).stdout, "0\n");
    assert_eq!(e.inspect("ok")["RestartCount"], 0);
    e.run_d(&["--network", "none", "--name", "forever", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2"]);
    assert!(wait_until(Duration::from_secs(10), || e.inspect("forever")["RestartCount"].as_u64().unwrap_or(0) >= 1));
    e.c(&["stop", "-t", "1", "forever"]).ok();
    e.wait_status("forever", "exited", Duration::from_secs(10));
    let n = e.inspect("forever")["RestartCount"].clone();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(e.inspect("forever")["RestartCount"], n, "no restart after stop");
}

#[test]
fn volumes_named_anonymous_and_binds() {
    let e = Eng::new("eng-volumes");
    let v = |args: &[&str]| {
        let mut a = vec!["volume"];
        a.extend_from_slice(args);
        e.cmd(&a)
    };
    assert_eq!(v(&["create", "data1"]).stdout, "data1\n");
    let o = v(&["ls"]);
    assert!(
        o.stdout.starts_with("DRIVER") && o.stdout.lines().any(|l| l.starts_with("local") && l.ends_with("data1")),
        "{o}"
    );
    let info: Value = serde_json::from_str(&v(&["inspect", "data1"]).stdout).unwrap();
    let mp = PathBuf::from(info[0]["Mountpoint"].as_str().unwrap());
    assert_eq!(mp, e.data.join("volumes/data1/_data"));
    assert_eq!(info[0]["Driver"], "local");
    // -v NAME:/dest writes into the volume; a missing volume is created.
    e.c(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data1:/d",
        "-v",
        "auto1:/e",
        "busybox",
        "sh",
        "-c",
        "echo v1 > /d/f; echo v2 > /e/g",
    ])
    .ok();
    assert_eq!(read(mp.join("f")), "v1\n");
    assert_eq!(read(e.data.join("volumes/auto1/_data/g")), "v2\n");
    // Read-only: named and bind mounts.
    let host = e.ctx.tempdir("bind");
    fs::write(host.join("hostfile"), "from-host\n").unwrap();
    let spec = format!("{}:/h:ro", host.display());
    let o = e.c(&["run", "--rm", "--network", "none", "-v", &spec, "-v", "data1:/d:ro", "busybox", "sh", "-c",
        "cat /h/hostfile /d/f; touch /h/x 2>/dev/null && echo h-writable; touch /d/x 2>/dev/null && echo d-writable; true"]);
    o.ok();
    assert_eq!(o.stdout, "from-host\nv1\n", "{o}");
    // A writable bind mount; -v creates a missing host dir.
    let newdir = host.join("made/by/run");
    let spec = format!("{}:/w", newdir.display());
    e.c(&["run", "--rm", "--network", "none", "-v", &spec, "busybox", "sh", "-c", "echo w > /w/out"]).ok();
    assert_eq!(read(newdir.join("out")), "w\n");
    // A volume in use is not removed.
    let id = e.run_d(&["--network", "none", "-v", "data1:/d", "busybox", "sleep", "100"]);
    let o = v(&["rm", "data1"]);
    assert_one_line(&o, 125, &["in use"]);
    e.c(&["rm", "-f", &id]).ok();
    assert_eq!(v(&["rm", "data1"]).stdout, "data1\n");
    assert!(!e.data.join("volumes/data1").exists());
    // Anonymous volumes (-v /dest and the image's VOLUME): kept by rm, removed by rm -v.
    e.load_extra();
    let id = e.run_d(&[
        "--network",
        "none",
        "-v",
        "/anon",
        "berth-test/extra",
        "sh",
        "-c",
        "echo a > /anon/a; echo b > /data/b",
    ]);
    e.c(&["wait", &id]).ok();
    let mounts = e.inspect(&id)["Mounts"].clone();
    let names: Vec<String> =
        mounts.as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 2, "{mounts}");
    for n in &names {
        assert_eq!(n.len(), 64, "anonymous volume names are 64 hex: {n}");
    }
    e.c(&["rm", &id]).ok();
    for n in &names {
        assert!(e.data.join("volumes").join(n).exists(), "rm keeps anonymous volumes");
    }
    let id = e.run_d(&["--network", "none", "berth-test/extra", "true"]);
    e.c(&["wait", &id]).ok();
    let n = e.inspect(&id)["Mounts"][0]["Name"].as_str().unwrap().to_string();
    e.c(&["rm", "-v", &id]).ok();
    assert!(!e.data.join("volumes").join(&n).exists(), "rm -v removes anonymous volumes");
    let o = v(&["ls", "-q"]);
    assert_eq!(o.lines().len(), 3, "auto1 and the two kept anonymous volumes: {o}");
}

#[test]
fn exec_in_a_running_container() {
    let e = Eng::new("eng-exec");
    e.run_d(&["--network", "none", "--name", "box", "-e", "FROM_RUN=1", "busybox", "sleep", "1000"]);
    let o = e.c(&["exec", "box", "sh", "-c", "echo $FROM_RUN $$; exit 4"]);
    assert_eq!(o.code, 4, "{o}");
    assert!(o.stdout.starts_with("1 "), "exec inherits the container's env: {o}");
    let o = e.c(&["exec", "-u", "user", "-w", "/tmp", "-e", "X=y", "box", "sh", "-c", "id -u; pwd; echo $X"]);
    assert_eq!(o.stdout, "1000\n/tmp\ny\n", "{o}");
    let o = e.c(&["exec", "-u", "1000:1000", "box", "id", "-g"]);
    assert_eq!(o.stdout, "1000\n", "{o}");
    let mut c = e.command(&["container", "exec", "-i", "box", "cat"]);
    c.stdin(Stdio::from(pipe_with(b"piped\n")));
    let o = e.ctx.exec_cmd(c, Duration::from_secs(20));
    assert_eq!(o.stdout, "piped\n", "{o}");
    e.c(&["exec", "-d", "box", "sh", "-c", "sleep 0.2; echo bg > /tmp/bg"]).ok();
    assert!(wait_until(Duration::from_secs(5), || e.c(&["exec", "box", "cat", "/tmp/bg"]).stdout == "bg\n"));
    let o = e.c(&["exec", "box", "nonexistent-cmd"]);
    assert_one_line(&o, 127, &["not found"]);
    let o = e.c(&["top", "box"]);
    o.ok();
    assert!(o.stdout.starts_with("UID") && o.stdout.contains("sleep 1000"), "{o}");
    let o = e.c(&["stats", "--no-stream", "box"]);
    o.ok();
    assert!(o.stdout.starts_with("CONTAINER ID") && o.stdout.contains("box"), "{o}");
    e.c(&["stop", "-t", "0", "box"]).ok();
    let o = e.c(&["exec", "box", "true"]);
    assert_one_line(&o, 125, &["not running"]);
}

#[test]
fn inspect_and_ls_formats() {
    let e = Eng::new("eng-inspect");
    let id = e.run_d(&[
        "--network",
        "none",
        "--name",
        "shown",
        "-l",
        "k=v",
        "-e",
        "A=b",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--hostname",
        "hosty",
        "--read-only",
        "--cap-drop",
        "NET_RAW",
        "busybox",
        "sh",
        "-c",
        "hostname; sleep 1000",
    ]);
    let done = e.run_d(&["--network", "none", "--name", "done", "busybox", "sh", "-c", "exit 2"]);
    e.c(&["wait", "done"]).ok();
    let v = e.inspect("shown");
    assert_eq!(v["Id"], json!(id));
    assert_eq!(v["Name"], "/shown");
    assert_eq!(v["Path"], "sh");
    assert_eq!(v["Args"], json!(["-c", "hostname; sleep 1000"]));
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["State"]["Running"], true);
    assert!(v["State"]["Pid"].as_i64().unwrap() > 0);
    assert!(v["Image"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(v["Config"]["Labels"]["k"], "v");
    assert_eq!(v["Config"]["Hostname"], "hosty");
    assert_eq!(v["Config"]["Image"], "busybox");
    assert_eq!(v["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(v["HostConfig"]["PidsLimit"], 50);
    assert_eq!(v["HostConfig"]["ReadonlyRootfs"], true);
    assert_eq!(v["HostConfig"]["CapDrop"], json!(["NET_RAW"]));
    assert!(v["Config"]["Env"].as_array().unwrap().contains(&json!("A=b")));
    assert_eq!(e.c(&["logs", "shown"]).stdout, "hosty\n");
    let o = e.c(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "done", "shown"]);
    assert_eq!(o.stdout, "exited 2\nrunning 0\n", "{o}");
    // ls: running only, -a all, -q ids, --format json.
    let o = e.c(&["ls"]);
    assert_eq!(o.lines().len(), 2, "header + the running one: {o}");
    assert!(o.stdout.starts_with("CONTAINER ID"));
    let o = e.c(&["ls", "-a"]);
    assert!(
        o.stdout.lines().any(|l| l.starts_with(&done[..12]) && l.contains("Exited (2) ") && l.contains(" ago")),
        "{o}"
    );
    let o = e.c(&["ls", "-a", "-q"]);
    let mut ids = o.lines();
    ids.sort();
    let mut want = vec![id[..12].to_string(), done[..12].to_string()];
    want.sort();
    assert_eq!(ids, want);
    let o = e.c(&["ls", "-a", "--format", "json"]);
    let rows: Vec<Value> = o.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{o}");
    let d = rows.iter().find(|r| r["Names"] == "done").unwrap();
    assert_eq!(d["State"], "exited");
    assert_eq!(d["ID"], json!(done[..12]));
    assert_eq!(d["Image"], "busybox");
    let o = e.c(&["ls", "-a", "--filter", "status=exited", "-q", "--no-trunc"]);
    assert_eq!(o.stdout, format!("{done}\n"));
    let o = e.c(&["prune"]);
    o.ok();
    assert!(o.stdout.contains(&done), "{o}");
    assert_eq!(e.c(&["ls", "-aq"]).lines(), vec![id[..12].to_string()], "prune removed the exited one");
}

#[test]
fn init_reaps_and_forwards_signals() {
    let e = Eng::new("eng-init");
    let o = e.c(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; exit 3",
    ]);
    assert_eq!(o.code, 3, "{o}");
    assert!(o.stdout.starts_with("/sbin/berth-init -- sh -c"), "{o}");
    // sleep under the init: SIGTERM reaches it, no wait for the timeout.
    e.run_d(&["--network", "none", "--init", "--name", "i1", "busybox", "sleep", "1000"]);
    let t = Instant::now();
    e.c(&["stop", "i1"]).ok();
    assert!(t.elapsed() < Duration::from_secs(5), "stop took {:?}", t.elapsed());
    assert_eq!(e.inspect("i1")["State"]["ExitCode"], 143);
    // The command killed by a signal: 128 + N, as docker reports it (without the init, a
    // pid 1 cannot be killed from inside).
    let o = e.c(&["run", "--rm", "--init", "--network", "none", "busybox", "sh", "-c", "kill -9 $$"]);
    assert_eq!(o.code, 137, "{o}");
    // Orphans are reaped: no zombie stays behind.
    e.run_d(&["--network", "none", "--init", "--name", "z1", "busybox", "sh", "-c", "(sleep 0.1 &) ; sleep 1000"]);
    std::thread::sleep(Duration::from_millis(600));
    let o = e.c(&["exec", "z1", "sh", "-c", "grep -l '^State:.*Z' /proc/[0-9]*/status || true"]);
    assert_eq!(o.stdout, "", "zombies in the container: {o}");
}

#[test]
fn killed_cli_or_shim_leaks_nothing() {
    let e = Eng::new("eng-kills");
    // The CLI killed at different points of `run -d`.
    for (i, ms) in [5u64, 15, 30, 60, 100, 200].iter().enumerate() {
        let name = format!("k{i}");
        let mut bg =
            e.spawn_c(&["run", "-d", "--name", &name, "--network", "none", "-v", "/anon", "busybox", "sleep", "1000"]);
        std::thread::sleep(Duration::from_millis(*ms));
        // SAFETY: kill(2) of the test's own child.
        unsafe { libc::kill(bg.pid(), libc::SIGKILL) };
        while !bg.exited() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let o = e.c(&["ls", "-aq", "--no-trunc"]);
    o.ok();
    let ids = o.lines();
    for id in &ids {
        let o = e.c(&["rm", "-f", "-v", id]);
        assert_eq!(o.code, 0, "a half-made container is removable: {o}");
        e.assert_gone(id);
    }
    // Directories of creations killed before their record was in place: prune sweeps them.
    e.c(&["prune"]).ok();
    assert!(e.container_dirs().is_empty(), "{:?}", e.container_dirs());
    // The shim killed: the container runs on, ls tells, rm -f cleans up.
    let id = e.run_d(&["--network", "none", "--name", "orphan", "busybox", "sleep", "1000"]);
    let st: Value = serde_json::from_str(&read(e.data.join("containers").join(&id).join("shim.json"))).unwrap();
    let shim = st["shim_pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) of the shim the test just started.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(shim) || proc_state(shim) == Some('Z')));
    let o = e.c(&["ls"]);
    assert!(o.stdout.lines().any(|l| l.ends_with("orphan") && l.contains("Up ")), "still running: {o}");
    assert_eq!(e.status("orphan"), "running");
    let o = e.c(&["rm", "-f", "orphan"]);
    o.ok();
    e.assert_gone(&id);
    // Same with stop: the stopped container is cleaned up and can start again.
    let id = e.run_d(&["--network", "none", "--name", "orphan2", "busybox", "sleep", "1000"]);
    let st: Value = serde_json::from_str(&read(e.data.join("containers").join(&id).join("shim.json"))).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(st["shim_pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    e.c(&["stop", "-t", "0", "orphan2"]).ok();
    assert_eq!(e.status("orphan2"), "exited");
    assert!(mounts_under(&e.data).is_empty());
    e.c(&["start", "orphan2"]).ok();
    e.wait_status("orphan2", "running", Duration::from_secs(5));
    e.c(&["rm", "-f", "orphan2"]).ok();
    e.assert_gone(&id);
}

#[test]
fn published_port_reaches_a_web_server() {
    let e = Eng::new("eng-web");
    // A network of its own: the default bridge is shared by every data root of the parallel
    // tests, each with its own address allocation.
    let subnet = format!("10.213.{}.0/24", std::process::id() % 250);
    if e.cmd(&["network", "create", "--subnet", &subnet, "webnet"]).code != 0 {
        e.cmd(&["network", "create", "webnet"]).ok();
    }
    let port = crate::common::registry::free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = e.run_d(&[
        "--name",
        "web",
        "--network",
        "webnet",
        "-p",
        &publish,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let mut body = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        if s.write_all(b"GET /berth-fixture HTTP/1.0\r\nHost: x\r\n\r\n").is_err() {
            return false;
        }
        body.clear();
        s.read_to_string(&mut body).is_ok() && body.contains(FIXTURE_MARK.trim())
    });
    assert!(ok, "GET via the published port: {body:?}");
    assert!(body.starts_with("HTTP/1.") && body.contains(" 200 "), "{body}");
    let o = e.c(&["ls"]);
    assert!(o.stdout.contains(&format!("127.0.0.1:{port}->80/tcp")), "{o}");
    let v = e.inspect("web");
    assert_eq!(v["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"], json!(port.to_string()));
    assert!(!v["NetworkSettings"]["IPAddress"].as_str().unwrap().is_empty());
    e.c(&["rm", "-f", "web"]).ok();
    e.assert_gone(&id);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "the port is closed after rm"
    );
    e.cmd(&["network", "rm", "webnet"]).ok();
}

#[test]
fn create_start_attach_and_run_flags() {
    let e = Eng::new("eng-create");
    let o = e.c(&[
        "create",
        "--name",
        "later",
        "--network",
        "none",
        "-i",
        "busybox",
        "sh",
        "-c",
        "read l; echo got:$l; exit 2",
    ]);
    o.ok();
    let id = o.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{o}");
    let o = e.c(&["ls", "-a"]);
    assert!(o.stdout.lines().any(|l| l.starts_with(&id[..12]) && l.contains("Created")), "{o}");
    let mut c = e.command(&["container", "start", "-a", "-i", "later"]);
    c.stdin(Stdio::from(pipe_with(b"x\n")));
    let o = e.ctx.exec_cmd(c, Duration::from_secs(30));
    assert_eq!(o.code, 2, "start -a returns the container's code: {o}");
    assert_eq!(o.stdout, "got:x\n", "{o}");
    // attach to a running container's stdio.
    e.run_d(&[
        "--name",
        "echoer",
        "--network",
        "none",
        "-i",
        "busybox",
        "sh",
        "-c",
        "while read l; do echo re:$l; done; exit 5",
    ]);
    let mut c = e.command(&["container", "attach", "echoer"]);
    c.stdin(Stdio::from(pipe_with(b"a\nb\n")));
    let o = e.ctx.exec_cmd(c, Duration::from_secs(30));
    assert_eq!(o.code, 5, "{o}");
    assert_eq!(o.stdout, "re:a\nre:b\n", "{o}");
    // A few run flags end to end.
    let o = e.c(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "--entrypoint",
        "sh",
        "busybox",
        "-c",
        "touch /x 2>/dev/null && echo root-writable; touch /scratch/y && echo tmpfs-ok",
    ]);
    assert_eq!(o.stdout, "tmpfs-ok\n", "{o}");
    let o = e.c(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--hostname",
        "hh",
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "10.9.9.9",
        "-w",
        "/made",
        "-u",
        "user",
        "--env-file",
        "/dev/null",
        "-e",
        "K=v",
        "busybox",
        "sh",
        "-c",
        "hostname; grep db /etc/hosts; grep nameserver /etc/resolv.conf; pwd; id -u; echo $K",
    ]);
    assert_eq!(o.stdout, "hh\n10.1.2.3\tdb\nnameserver 10.9.9.9\n/made\n1000\nv\n", "{o}");
    let o = e.c(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        "--cap-drop",
        "ALL",
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status; cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null",
    ]);
    assert!(o.stdout.contains("CapEff:\t0000000000000000") && o.stdout.contains("20"), "{o}");
}

/// `image import` (docker import): a directory or a (gzip) tar on stdin becomes a one-layer
/// image whose config comes from --change lines; it runs, and bad input changes nothing.
/// `network prune` removes the default network's bridge once no container uses it.
#[test]
fn image_import_runs_and_prune_removes_the_idle_bridge() {
    let e = Eng::new("eng-import");
    let rootfs = e.ctx.bundle().rootfs.clone();
    fs::create_dir_all(rootfs.join("www")).unwrap();
    fs::write(rootfs.join("www/index.html"), "imported page\n").unwrap();
    let o = e.cmd(&[
        "image",
        "import",
        "-c",
        r#"CMD ["sh", "-c", "echo $GREETING from $(pwd)"]"#,
        "-c",
        "ENV GREETING=hello",
        "-c",
        "WORKDIR /www",
        "-c",
        "EXPOSE 80",
        "-c",
        "LABEL org.x=imported",
        "-m",
        "made by a test",
        rootfs.to_str().unwrap(),
        "imported:dir",
    ]);
    o.ok();
    assert!(o.stdout.trim().starts_with("sha256:") && o.stdout.trim().len() == 71, "{o}");
    let v: Value = serde_json::from_str(&e.cmd(&["image", "inspect", "imported:dir"]).stdout).unwrap();
    let cfg = &v[0]["Config"];
    assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}}), "{v}");
    assert_eq!(cfg["Labels"]["org.x"], "imported", "{v}");
    let o = e.c(&["run", "--rm", "--network", "none", "imported:dir"]);
    o.ok();
    assert_eq!(o.stdout, "hello from /www\n");

    // A gzip tar on stdin, run on the default bridge.
    let tgz = e.ctx.dir.join("rootfs.tar.gz");
    tool(Command::new("tar").arg("-C").arg(&rootfs).arg("-czf").arg(&tgz).arg("."));
    let mut c = e.command(&["image", "import", "-", "imported:tgz"]);
    c.stdin(fs::File::open(&tgz).unwrap());
    e.ctx.exec_cmd(c, Duration::from_secs(60)).ok();
    let o = e.c(&["run", "--rm", "imported:tgz", "cat", "/www/index.html"]);
    o.ok();
    assert_eq!(o.stdout, "imported page\n");
    let net: Value = serde_json::from_str(&e.cmd(&["network", "inspect", "bridge"]).stdout).unwrap();
    let bridge = net[0]["Bridge"].as_str().unwrap().to_string();
    assert!(Path::new("/sys/class/net").join(&bridge).exists(), "bridge {bridge} is kept while the network exists");
    let subnet = net[0]["Config"]["berth"]["subnet"].as_str().unwrap().to_string();
    let nat = || tool(Command::new("iptables").args(["-w", "-t", "nat", "-S", "POSTROUTING"]));
    let masq = |rules: &str| rules.lines().filter(|l| l.contains(&subnet) && l.contains("MASQUERADE")).count();
    assert_eq!(masq(&nat()), 1, "one masquerade rule for the default network: {}", nat());
    e.cmd(&["network", "prune"]).ok();
    assert!(!Path::new("/sys/class/net").join(&bridge).exists(), "network prune leaves the idle bridge {bridge}");
    assert_eq!(masq(&nat()), 0, "network prune leaves the masquerade rule: {}", nat());

    // Bad input: one line, the store as it was.
    let before = tree_digest(&e.data.join("image"));
    for (args, want) in [
        (vec!["image", "import", "-c", "RUN true", rootfs.to_str().unwrap(), "x:y"], "RUN true"),
        (vec!["image", "import", "/etc/hostname", "x:y"], "not a tar"),
        (vec!["image", "import", "/nonexistent", "x:y"], "/nonexistent"),
        (vec!["image", "import", rootfs.to_str().unwrap(), "Bad:Name"], "Bad:Name"),
    ] {
        let o = e.cmd(&args);
        assert!(o.code != 0 && o.stderr.lines().count() == 1 && o.stderr.contains(want), "{args:?}: {o}");
    }
    assert_eq!(tree_digest(&e.data.join("image")), before, "a failed import changed the store");
}

/// Paths, sizes and modes of everything under `dir` (locks and empty tmp/ aside).
fn tree_digest(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in fs::read_dir(&d).unwrap().flatten() {
            let p = ent.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if rel.ends_with(".lock") || rel == "tmp" {
                continue;
            }
            out.push(format!("{rel} {} {:o}", m.len(), std::os::unix::fs::PermissionsExt::mode(&m.permissions())));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// An attached run forwards SIGTERM to the container; with --sig-proxy=false the CLI takes the
/// signal itself (it dies, as docker's) and the container goes on.
#[test]
fn sig_proxy_forwards_or_not() {
    let e = Eng::new("eng-sigproxy");
    for (proxy, name) in [("true", "proxied"), ("false", "unproxied")] {
        let script = "trap 'echo got-term; exit 3' TERM; echo ready; i=0; while [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; echo finished";
        let bg = e.spawn_c(&[
            "run",
            "--network",
            "none",
            "--name",
            name,
            &format!("--sig-proxy={proxy}"),
            "busybox",
            "sh",
            "-c",
            script,
        ]);
        assert!(
            wait_until(Duration::from_secs(10), || e.c(&["logs", name]).stdout.contains("ready")),
            "{name} never started"
        );
        // SAFETY: kill(2) of the CLI this test started.
        unsafe { libc::kill(bg.pid(), libc::SIGTERM) };
        let o = bg.wait(Duration::from_secs(20));
        e.wait_status(name, "exited", Duration::from_secs(10));
        let logs = e.c(&["logs", name]).stdout;
        if proxy == "true" {
            assert_eq!(o.code, 3, "the CLI exits with the container's code: {o}");
            assert!(logs.contains("got-term") && !logs.contains("finished"), "{logs}");
        } else {
            assert_eq!(o.code, 128 + libc::SIGTERM, "the CLI dies of the signal: {o}");
            assert!(!logs.contains("got-term") && logs.contains("finished"), "{logs}");
        }
    }
}

/// Traffic leaving the default network for another interface is masqueraded by the network's
/// one MASQUERADE rule: a peer namespace the test makes (on a /30 with no route back to the
/// containers' subnet) answers only because the source is rewritten to the host's address.
#[test]
fn outbound_traffic_is_masqueraded() {
    let e = Eng::new("eng-masq");
    let n = std::process::id() % 10000;
    let (ns, host_if, peer_if) = (format!("bmq{n}"), format!("bmqh{n}"), format!("bmqp{n}"));
    let (host_ip, peer_ip) = ("198.18.9.1", "198.18.9.2");
    let sh = |c: &str| tool(Command::new("sh").arg("-c").arg(c));
    struct Peer(String, String);
    impl Drop for Peer {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            let _ = Command::new("ip").args(["link", "del", &self.1]).status();
        }
    }
    let _peer = Peer(ns.clone(), host_if.clone());
    sh(&format!(
        "ip netns add {ns} && ip link add {host_if} type veth peer name {peer_if} && ip link set {peer_if} netns {ns} && \
         ip addr add {host_ip}/30 dev {host_if} && ip link set {host_if} up && \
         ip netns exec {ns} ip addr add {peer_ip}/30 dev {peer_if} && ip netns exec {ns} ip link set {peer_if} up && \
         ip netns exec {ns} ip link set lo up"
    ));
    // A one-shot TCP server in the peer namespace, answering with the client's address.
    let srv = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "busybox",
            "nc",
            "-l",
            "-p",
            "8000",
            "-e",
            "sh",
            "-c",
            "echo from-peer $NCAT_REMOTE_ADDR",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _srv = Kill(srv);
    std::thread::sleep(Duration::from_millis(200));
    let o = e.c(&["run", "--rm", "busybox", "sh", "-c", &format!("echo hi | nc -w 3 {peer_ip} 8000")]);
    o.ok();
    assert!(o.stdout.contains("from-peer"), "the peer answered the container: {o}");
}

/// `container ARGS...` with `BERTH_CRASH_AT=point`: asserts berth killed itself there.
#[track_caller]
fn crash_c(e: &Eng, point: &str, args: &[&str]) {
    let mut v = vec!["container"];
    v.extend_from_slice(args);
    let mut c = e.command(&v);
    c.env("BERTH_CRASH_AT", point);
    let o = e.ctx.exec_cmd(c, Duration::from_secs(60));
    assert_eq!(o.code, 128 + 9, "{point}: berth should have killed itself there: {o}");
}

/// The engine killed (SIGKILL, at the named crash points of src/faults/) during `run -d` and
/// `rm -f`: the container's record is never lost (`ls -a` lists it from the first point on),
/// `rm -f` removes everything (record, name, runtime state, cgroup, mount, netns, attachment,
/// image use, processes) and the name is free again.
#[test]
fn crash_points_of_run_and_rm_leave_nothing() {
    let e = Eng::new("eng-crash");
    if !crate::crash::hooks_honoured(&e.ctx) {
        eprintln!("SKIPPED: the binary under test ignores BERTH_CRASH_AT (release build)");
        return;
    }
    let points = [
        "engine.create.record-written",
        "engine.create.name-claimed",
        "engine.start.rootfs-mounted",
        "network.attach.recorded",
        "network.attach.cni-added",
        "engine.start.network-attached",
        "engine.start.shim-spawned",
    ];
    for (i, point) in points.iter().enumerate() {
        let name = format!("crash{i}");
        crash_c(&e, point, &["run", "-d", "--name", &name, "-v", "/anon", "busybox", "sleep", "1000"]);
        let o = e.c(&["ls", "-aq", "--no-trunc", "--filter", &format!("name={name}")]);
        let ids = o.lines();
        assert_eq!(ids.len(), 1, "{point}: the record of {name} is listed: {o}");
        let o = e.c(&["rm", "-f", "-v", &name]);
        assert_eq!(o.code, 0, "{point}: rm -f after the crash: {o}");
        e.assert_gone(ids[0].trim());
        let ipam: Vec<String> = fs::read_dir(e.data.join("network/ipam"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| fs::read_dir(d.path()).into_iter().flatten().flatten())
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
            .collect();
        assert!(ipam.is_empty(), "{point}: IPAM reservations left: {ipam:?}");
        e.c(&["run", "--rm", "--name", &name, "busybox", "true"]).ok();
    }
    // The shim killed once the container exited: before its clean-up, after recording the exit.
    for (point, rm) in [("shim.before-cleanup", false), ("shim.before-cleanup", true), ("shim.exit-recorded", false)] {
        let mut args =
            vec!["container", "run", "-d", "--name", "crash-shim", "-v", "/anon", "busybox", "sh", "-c", "exit 3"];
        if rm {
            args.insert(3, "--rm");
        }
        let mut c = e.command(&args);
        c.env("BERTH_CRASH_AT", point);
        let o = e.ctx.exec_cmd(c, Duration::from_secs(60));
        o.ok();
        let id = o.stdout.trim().to_string();
        let shim_gone = wait_until(Duration::from_secs(20), || procs_with_arg(&id).is_empty());
        assert!(shim_gone, "{point}: the shim killed itself");
        let o = e.c(&["ls", "-aq", "--no-trunc"]);
        assert!(o.stdout.contains(&id), "{point} (--rm {rm}): the record is kept: {o}");
        let shim_state = fs::read_to_string(e.data.join("containers").join(&id).join("shim.json")).unwrap_or_default();
        eprintln!("{point} (--rm {rm}): status {}, shim.json {shim_state}", e.status(&id));
        if point == "shim.before-cleanup" {
            assert!(
                !shim_state.contains("\"exited\""),
                "{point}: the shim died before recording the exit: {shim_state}"
            );
        }
        if point == "shim.exit-recorded" {
            assert_eq!(e.status(&id), "exited");
            let o = e.c(&["inspect", "-f", "{{.State.ExitCode}}", &id]);
            assert_eq!(o.stdout.trim(), "3", "{o}");
        }
        let o = e.c(&["rm", "-f", "-v", &id]);
        assert_eq!(o.code, 0, "{point}: rm -f after the shim died: {o}");
        e.assert_gone(&id);
    }
    let id = e.run_d(&["--name", "crash-rm", "busybox", "sleep", "1000"]);
    crash_c(&e, "engine.rm.torn-down", &["rm", "-f", "crash-rm"]);
    let o = e.c(&["rm", "-f", "crash-rm"]);
    assert_eq!(o.code, 0, "rm -f after the crash: {o}");
    e.assert_gone(&id);
    e.cmd(&["network", "prune"]).ok();
    assert!(e.container_dirs().is_empty(), "{:?}", e.container_dirs());
}

/// `network connect` killed after recording the new attachment (before the CNI ADD) and
/// after the ADD (before the DNS record): the container keeps running and is listed,
/// `rm -f` removes everything (veths, IPAM reservations, DNS records, state), and the
/// network is then removable.
#[test]
fn crash_points_of_network_connect_leave_nothing() {
    let e = Eng::new("eng-crash-conn");
    if !crate::crash::hooks_honoured(&e.ctx) {
        eprintln!("SKIPPED: the binary under test ignores BERTH_CRASH_AT (release build)");
        return;
    }
    let subnet = format!("10.214.{}.0/24", std::process::id() % 250);
    e.cmd(&["network", "create", "--subnet", &subnet, "cnet"]).ok();
    for (i, point) in ["network.connect.recorded", "network.connect.cni-added"].iter().enumerate() {
        let name = format!("conn{i}");
        let id = e.run_d(&["--name", &name, "busybox", "sleep", "1000"]);
        let mut c = e.command(&["network", "connect", "--alias", "al", "cnet", &name]);
        c.env("BERTH_CRASH_AT", point);
        let o = e.ctx.exec_cmd(c, Duration::from_secs(60));
        assert_eq!(o.code, 128 + 9, "{point}: berth should have killed itself there: {o}");
        assert_eq!(e.status(&id), "running", "{point}: the container runs on");
        let ipam = || -> Vec<String> {
            fs::read_dir(e.data.join("network/ipam/cnet"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                .collect()
        };
        if *point == "network.connect.cni-added" {
            assert_eq!(ipam().len(), 1, "{point}: the ADD reserved an address on cnet");
        }
        let o = e.c(&["rm", "-f", &name]);
        assert_eq!(o.code, 0, "{point}: rm -f after the crash: {o}");
        e.assert_gone(&id);
        assert!(ipam().is_empty(), "{point}: IPAM reservations left on cnet: {:?}", ipam());
        let dns = fs::read_to_string(e.data.join("network/cnet/hosts")).unwrap_or_default();
        assert!(!dns.contains(&id[..12]), "{point}: DNS record left: {dns}");
    }
    let o = e.cmd(&["network", "rm", "cnet"]);
    assert_eq!(o.code, 0, "the network is removable after the crashes: {o}");
    e.cmd(&["network", "prune"]).ok();
}
