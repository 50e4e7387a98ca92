//! The command line outside the container lifecycle: --version, spec, features.

use crate::common::*;
use serde_json::Value;
use std::fs;

fn is_uint(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// berth-only: runc prints "runc version 1.1.5+ds1" then "commit: ...".
#[test]
fn cli_version_format() {
    if skip_on_runc("version format is berth's own") {
        return;
    }
    let ctx = Ctx::new("version");
    let o = ctx.exec_cmd(ctx.command_noroot(&["--version"]), TIMEOUT);
    o.ok();
    let lines = o.lines();
    assert!(lines.len() >= 2, "{o}");
    let w: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(w.len(), 3, "first line must be `berth version X.Y.Z`: {o}");
    assert_eq!((w[0], w[1]), ("berth", "version"), "{o}");
    let v: Vec<&str> = w[2].split('.').collect();
    assert!(v.len() == 3 && v.iter().all(|p| is_uint(p)), "version must be X.Y.Z: {o}");
    assert_eq!(w[2], env!("CARGO_PKG_VERSION"), "version must be the crate's: {o}");
    let spec = lines[1].strip_prefix("spec: ").unwrap_or_else(|| panic!("second line must be `spec: 1.x`: {o}"));
    let s: Vec<&str> = spec.split('.').collect();
    assert!(s.len() >= 2 && s[0] == "1" && is_uint(s[1]), "spec version must be 1.x: {o}");
}

fn load_spec(path: &std::path::Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // It must be a valid runtime spec (oci-spec's own model parses it)...
    let _: oci_spec::runtime::Spec =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("config.json is not a valid spec ({e}):\n{text}"));
    serde_json::from_str(&text).unwrap()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn ns_types(c: &Value) -> Vec<String> {
    c["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn cli_spec_writes_default_config() {
    let ctx = Ctx::new("spec");
    let dir = ctx.tempdir("specdir");
    ctx.exec_cmd(ctx.command_noroot(&["spec", "-b", dir.to_str().unwrap()]), TIMEOUT).ok();
    let c = load_spec(&dir.join("config.json"));
    assert!(c["ociVersion"].as_str().unwrap().starts_with("1."), "{c}");
    assert_eq!(strs(&c["process"]["args"]), ["sh"]);
    assert_eq!(c["process"]["cwd"], "/");
    assert_eq!(c["root"]["path"], "rootfs");
    let dests: Vec<String> =
        c["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap().to_string()).collect();
    for d in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"] {
        assert!(dests.iter().any(|x| x == d), "mount {d} missing: {dests:?}");
    }
    let ns = ns_types(&c);
    for t in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.iter().any(|x| x == t), "namespace {t} missing: {ns:?}");
    }
    assert!(!ns.iter().any(|x| x == "user"), "no user namespace by default: {ns:?}");
    assert!(strs(&c["linux"]["maskedPaths"]).iter().any(|p| p == "/proc/kcore"));
    assert!(strs(&c["linux"]["readonlyPaths"]).iter().any(|p| p == "/proc/sys"));
    assert!(strs(&c["process"]["capabilities"]["bounding"]).iter().any(|p| p == "CAP_KILL"));
}

#[test]
fn cli_spec_default_dir_is_cwd() {
    let ctx = Ctx::new("speccwd");
    let dir = ctx.tempdir("specdir");
    let mut cmd = ctx.command_noroot(&["spec"]);
    cmd.current_dir(&dir);
    ctx.exec_cmd(cmd, TIMEOUT).ok();
    load_spec(&dir.join("config.json"));
}

#[test]
fn cli_spec_rootless() {
    let ctx = Ctx::new("specrootless");
    let dir = ctx.tempdir("specdir");
    ctx.exec_cmd(ctx.command_noroot(&["spec", "--rootless", "-b", dir.to_str().unwrap()]), TIMEOUT).ok();
    let c = load_spec(&dir.join("config.json"));
    let ns = ns_types(&c);
    assert!(ns.iter().any(|x| x == "user"), "rootless spec needs a user namespace: {ns:?}");
    assert!(!ns.iter().any(|x| x == "network"), "rootless spec has no network namespace: {ns:?}");
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let um = &c["linux"]["uidMappings"][0];
    let gm = &c["linux"]["gidMappings"][0];
    assert_eq!(
        (um["containerID"].as_u64(), um["hostID"].as_u64(), um["size"].as_u64()),
        (Some(0), Some(uid as u64), Some(1)),
        "{c}"
    );
    assert_eq!(
        (gm["containerID"].as_u64(), gm["hostID"].as_u64(), gm["size"].as_u64()),
        (Some(0), Some(gid as u64), Some(1)),
        "{c}"
    );
    // No sysfs mount (needs a network namespace of the user namespace): /sys is a bind.
    for m in c["mounts"].as_array().unwrap() {
        if m["destination"] == "/sys" {
            assert!(strs(&m["options"]).iter().any(|o| o == "rbind" || o == "bind"), "{m}");
        }
    }
}

#[test]
fn cli_spec_refuses_to_overwrite() {
    let ctx = Ctx::new("specexists");
    let dir = ctx.tempdir("specdir");
    fs::write(dir.join("config.json"), "mine").unwrap();
    let o = ctx.exec_cmd(ctx.command_noroot(&["spec", "-b", dir.to_str().unwrap()]), TIMEOUT);
    o.one_line_error(&["exist"]);
    assert_eq!(fs::read_to_string(dir.join("config.json")).unwrap(), "mine");
}

/// The config `spec` writes runs as it is (after only terminal off, args and cgroupsPath).
#[test]
fn cli_spec_output_runs() {
    let ctx = Ctx::new("specruns");
    let mut b = ctx.bundle();
    ctx.exec_cmd(ctx.command_noroot(&["spec", "-b", b.dir.to_str().unwrap()]), TIMEOUT).ok();
    b.config = load_spec(&b.config_path());
    b.set("/process/terminal", serde_json::json!(false));
    b.sh("echo ran-from-spec; hostname");
    let id = ctx.id("spec");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.lines()[0], "ran-from-spec", "{o}");
}

#[test]
fn cli_features_json() {
    let ctx = Ctx::new("features");
    let o = ctx.exec_cmd(ctx.command_noroot(&["features"]), TIMEOUT);
    o.ok();
    let f: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("features is not JSON ({e}): {o}"));
    let min = f["ociVersionMin"].as_str().expect("ociVersionMin");
    let max = f["ociVersionMax"].as_str().expect("ociVersionMax");
    assert!(min.starts_with("1.0"), "{min}");
    assert!(max.starts_with("1."), "{max}");
    if !is_runc() {
        // The newest runtime-spec release (v1.3.0), in features, spec and --version alike.
        assert_eq!(max, "1.3.0");
        let v = ctx.exec_cmd(ctx.command_noroot(&["--version"]), TIMEOUT);
        assert!(v.stdout.contains("\nspec: 1.3.0\n"), "{v}");
        let dir = ctx.tempdir("spec");
        ctx.exec_cmd(ctx.command_noroot(&["spec", "-b", dir.to_str().unwrap()]), TIMEOUT).ok();
        assert_eq!(load_spec(&dir.join("config.json"))["ociVersion"], "1.3.0");
        assert_eq!(f["linux"]["netDevices"]["enabled"], false, "{o}");
        assert_eq!(f["linux"]["intelRdt"]["enabled"], false, "{o}");
        assert!(f["linux"].get("memoryPolicy").is_none(), "memoryPolicy is not applied: {o}");
    }
    let hooks = strs(&f["hooks"]);
    for h in ["createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        assert!(hooks.iter().any(|x| x == h), "hook {h} missing: {hooks:?}");
    }
    let mo = strs(&f["mountOptions"]);
    for m in ["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "rro", "rprivate", "rshared", "rslave"] {
        assert!(mo.iter().any(|x| x == m), "mount option {m} missing: {mo:?}");
    }
    let ns = strs(&f["linux"]["namespaces"]);
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.iter().any(|x| x == n), "namespace {n} missing: {ns:?}");
    }
    // berth-only: runc 1.1.5 has no time namespace.
    if !is_runc() {
        assert!(ns.iter().any(|x| x == "time"), "namespace time missing: {ns:?}");
    }
    let caps = strs(&f["linux"]["capabilities"]);
    for c in ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"] {
        assert!(caps.iter().any(|x| x == c), "capability {c} missing: {caps:?}");
    }
}

/// The program name as help prints it ("berth", or "runc" when testing runc).
fn prog() -> String {
    if is_runc() {
        "runc".into()
    } else {
        "berth".into()
    }
}

/// The runtime commands' help has urfave/cli's layout (NAME, USAGE, OPTIONS aligned by a
/// tabwriter, a "   " line closing OPTIONS), exit 0, for `CMD --help`, `CMD -h`, `help CMD`
/// and `h CMD`. Where berth has exactly runc's options, the text is runc's own, byte for byte
/// (compared live with /usr/sbin/runc when it is installed).
#[test]
fn cli_help_layout_as_runc() {
    let ctx = Ctx::new("help");
    let p = prog();
    let cmds = [
        "create", "start", "run", "state", "kill", "delete", "list", "spec", "features", "exec", "pause", "resume",
        "ps", "events", "update",
    ];
    for c in cmds {
        let o = ctx.exec_cmd(ctx.command_noroot(&[c, "--help"]), TIMEOUT);
        o.ok();
        assert!(o.stderr.is_empty(), "{o}");
        let t = &o.stdout;
        assert!(t.starts_with(&format!("NAME:\n   {p} {c} - ")), "{o}");
        assert!(t.contains(&format!("\n\nUSAGE:\n   {p} {c} ")), "{o}");
        if let Some(i) = t.find("\nOPTIONS:\n") {
            assert!(t.ends_with("\n   \n"), "OPTIONS ends with urfave's \"   \" line: {o}");
            // Each run of option lines has its texts in one column: flags padded to the widest + 2.
            let body = &t[i + 10..];
            let lines: Vec<&str> = body.lines().filter(|l| l.starts_with("   --")).collect();
            assert!(!lines.is_empty(), "{o}");
            let col = |l: &str| l[3..].find("  ").map(|k| k + 3 + l[3 + k..].chars().take_while(|&c| c == ' ').count());
            if c != "update" {
                let cols: Vec<_> = lines.iter().map(|l| col(l)).collect();
                assert!(cols.windows(2).all(|w| w[0] == w[1]), "{c}: misaligned options {cols:?}: {o}");
            }
        } else {
            assert!(t.ends_with('\n') && !t.ends_with("\n\n\n"), "{o}");
        }
        for alt in [vec![c, "-h"], vec!["help", c], vec!["h", c]] {
            let a = ctx.exec_cmd(ctx.command_noroot(&alt), TIMEOUT);
            a.ok();
            assert_eq!(a.stdout, o.stdout, "{alt:?}");
        }
        // Global options before the command change nothing.
        let g = ctx.cmd(&["--debug", c, "--help"]);
        g.ok();
        assert_eq!(g.stdout, o.stdout);
    }
    // runc 1.1.5's own text where the options are the same.
    let runc = std::path::Path::new("/usr/sbin/runc");
    if runc.exists() {
        for c in ["create", "start", "state", "kill", "delete", "list", "pause", "resume", "ps", "events"] {
            let r = std::process::Command::new(runc).args([c, "--help"]).output().unwrap();
            let want = String::from_utf8_lossy(&r.stdout).replace("runc", &p);
            let o = ctx.exec_cmd(ctx.command_noroot(&[c, "--help"]), TIMEOUT);
            assert_eq!(o.stdout, want, "{c} --help differs from runc's");
        }
    }
    // The whole program's help: runc's sections, every runtime command listed.
    for args in [vec!["--help"], vec!["-h"], vec!["help"], vec![]] {
        let o = ctx.exec_cmd(ctx.command_noroot(&args), TIMEOUT);
        o.ok();
        let t = &o.stdout;
        assert!(t.starts_with(&format!("NAME:\n   {p} - ")), "{args:?}: {o}");
        for s in ["\nUSAGE:\n", "\nCOMMANDS:\n", "\nGLOBAL OPTIONS:\n", "\n   --root value ", "\n   help, h "] {
            assert!(t.contains(s), "{args:?} lacks {s:?}: {o}");
        }
        for c in cmds {
            assert!(t.contains(&format!("\n   {c} ")) || t.contains(&format!("\n   {c}, ")), "{c} not listed: {o}");
        }
    }
}

/// An unknown command (or help topic) fails as runc's does: exit 3, one line naming it; a
/// usage error of a runtime command exits 1 with one line.
#[test]
fn cli_unknown_command_and_usage_errors() {
    let ctx = Ctx::new("unknowncmd");
    for args in [vec!["no-such-command"], vec!["no-such-command", "--help"], vec!["help", "no-such-command"]] {
        let o = ctx.exec_cmd(ctx.command_noroot(&args), TIMEOUT);
        o.one_line_error(&["No help topic for 'no-such-command'"]);
        assert_eq!(o.code, 3, "{o}");
        assert!(o.stdout.is_empty(), "{o}");
    }
    // runc's usage error: "Incorrect Usage" (naming a bad flag) and the command's whole help
    // on stdout, one line on stderr naming the problem, exit 1.
    let cases: &[(&[&str], &str, &str)] = &[
        (&["kill"], "Incorrect Usage.\n\n", "\"kill\" requires a minimum of 1 argument(s)"),
        (&["kill", "a", "b", "c"], "Incorrect Usage.\n\n", "\"kill\" requires a maximum of 2 argument(s)"),
        (&["state", "a", "b"], "Incorrect Usage.\n\n", "\"state\" requires exactly 1 argument(s)"),
        (&["list", "x"], "Incorrect Usage.\n\n", "\"list\" requires exactly 0 argument(s)"),
        (&["exec"], "Incorrect Usage.\n\n", "\"exec\" requires a minimum of 1 argument(s)"),
        // Options end at the first argument: a flag after the id is one more argument.
        (&["create", "x", "--bogus"], "Incorrect Usage.\n\n", "\"create\" requires exactly 1 argument(s)"),
        (
            &["kill", "--no-such-flag", "x"],
            "Incorrect Usage: flag provided but not defined: -no-such-flag\n\n",
            "flag provided but not defined: -no-such-flag",
        ),
        (
            &["delete", "--bogus=1", "x"],
            "Incorrect Usage: flag provided but not defined: -bogus\n\n",
            "flag provided but not defined: -bogus",
        ),
        (
            &["create", "--bundle"],
            "Incorrect Usage: flag needs an argument: -bundle\n\n",
            "flag needs an argument: -bundle",
        ),
    ];
    let runc = std::path::Path::new("/usr/sbin/runc");
    for (args, head, msg) in cases {
        let o = ctx.cmd(args);
        assert_eq!(o.code, 1, "runc's code for a usage error: {o}");
        let help = ctx.exec_cmd(ctx.command_noroot(&[args[0], "--help"]), TIMEOUT);
        help.ok();
        assert_eq!(o.stdout, format!("{head}{}", help.stdout), "{args:?}");
        // runc's logrus line quotes the message, escaping its quotes.
        o.one_line_error(&[msg, &msg.replace('"', "\\\"")]);
        // Byte for byte what runc prints, for the commands whose help is runc's own.
        if runc.exists() && ["kill", "state", "list", "delete", "create"].contains(&args[0]) {
            let dir = ctx.dir.join("runc-root");
            let r = std::process::Command::new(runc).arg("--root").arg(&dir).args(*args).output().unwrap();
            assert_eq!(r.status.code(), Some(1), "{args:?}");
            assert_eq!(o.stdout, String::from_utf8_lossy(&r.stdout).replace("runc", &prog()), "{args:?}");
        }
    }
    // A bad global option: "Incorrect Usage." with the error, then the program's help.
    for (args, msg) in
        [(vec!["--bogus"], "flag provided but not defined: -bogus"), (vec!["--root"], "flag needs an argument: -root")]
    {
        let o = ctx.exec_cmd(ctx.command_noroot(&args), TIMEOUT);
        assert_eq!(o.code, 1, "{o}");
        let help = ctx.exec_cmd(ctx.command_noroot(&["--help"]), TIMEOUT);
        assert_eq!(o.stdout, format!("Incorrect Usage. {msg}\n\n{}", help.stdout), "{args:?}");
        o.one_line_error(&[msg]);
    }
}

/// berth-only: the engine commands keep their docker-style help (clap's).
#[test]
fn cli_engine_help_stays_docker_style() {
    if skip_on_runc("engine commands are berth's") {
        return;
    }
    let ctx = Ctx::new("enginehelp");
    for c in ["image", "container", "volume", "network"] {
        let o = ctx.exec_cmd(ctx.command_noroot(&[c, "--help"]), TIMEOUT);
        o.ok();
        assert!(!o.stdout.starts_with("NAME:"), "{o}");
        assert!(o.stdout.contains("Usage:"), "{o}");
    }
}

/// Listing and streaming commands whose reader has gone (`berth list | head -1`) end quietly:
/// status 0 or death by SIGPIPE (141 in a shell), never a panic or an error line.
#[test]
fn cli_closed_pipe_is_quiet() {
    let ctx = Ctx::new("epipe");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("p");
    ctx.run_detached(&mut b, &id);
    let data = ctx.tempdir("data");
    let data = data.to_str().unwrap();
    let mut cases: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["list", "--format", "json"],
        vec!["list", "-q"],
        vec!["state", &id],
        vec!["ps", &id],
        vec!["ps", "--format", "json", &id],
        vec!["events", "--stats", &id],
        vec!["events", "--interval", "100ms", &id],
        vec!["features"],
        vec!["--help"],
        vec!["kill", "--help"],
        vec!["--version"],
    ];
    if !is_runc() {
        for c in [["image", "ls"], ["container", "ls"], ["network", "ls"], ["volume", "ls"], ["image", "--help"]] {
            cases.push(vec!["--data-root", data, c[0], c[1]]);
        }
    }
    for args in cases {
        let (r, w) = std::io::pipe().unwrap();
        drop(r);
        let mut c = ctx.command(&args);
        c.stdout(w).stderr(std::process::Stdio::piped());
        let child = c.spawn().unwrap();
        let pid = child.id() as i32;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(20));
            // SAFETY: kill(2) of the child this test spawned, if it is still there.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        let o = child.wait_with_output().unwrap();
        drop(killer);
        use std::os::unix::process::ExitStatusExt;
        let quiet = o.status.code() == Some(0) || o.status.signal() == Some(libc::SIGPIPE);
        assert!(quiet, "{args:?}: {:?}, stderr {}", o.status, String::from_utf8_lossy(&o.stderr));
        assert!(o.stderr.is_empty(), "{args:?}: stderr {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// `--debug` writes runc-style debug lines for create, start, run, exec, kill and delete: text
/// (`time="..." level=debug msg="..."`) on stderr, or JSON lines in `--log` with
/// `--log-format json`; without --debug there are none.
#[test]
fn cli_debug_lines() {
    if skip_on_runc("the messages are berth's own") {
        return;
    }
    let ctx = Ctx::new("debug");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("d");
    b.write_config(&id);
    let bundle = b.dir.to_str().unwrap().to_string();
    let text_line = |l: &str| l.starts_with("time=\"") && l.contains("\" level=debug msg=\"") && l.ends_with('"');
    let o = ctx.cmd(&["--debug", "create", "--bundle", &bundle, &id]);
    o.ok();
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(lines.len() >= 3 && lines.iter().all(|l| text_line(l)), "{o}");
    assert!(lines[0].contains(&format!("create container {id}")), "{o}");
    assert!(lines.last().unwrap().contains(&format!("container {id} created")), "{o}");
    for args in [vec!["start", &id], vec!["exec", &id, "true"], vec!["kill", &id, "KILL"]] {
        let mut a = vec!["--debug"];
        a.extend(&args);
        let o = ctx.cmd(&a);
        o.ok();
        assert!(!o.stderr.is_empty() && o.stderr.lines().all(text_line), "{o}");
    }
    ctx.wait_status(&id, "stopped", std::time::Duration::from_secs(10));
    let log = ctx.dir.join("debug.json");
    let log_s = log.to_str().unwrap();
    let o = ctx.cmd(&["--debug", "--log", log_s, "--log-format", "json", "delete", &id]);
    o.ok();
    assert!(o.stderr.is_empty(), "debug lines go to --log: {o}");
    let text = fs::read_to_string(&log).unwrap();
    let msgs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(msgs.len() >= 2, "{text}");
    for m in &msgs {
        assert_eq!(m["level"], "debug", "{text}");
        assert!(m["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{text}");
    }
    assert!(msgs[0]["msg"].as_str().unwrap().contains(&format!("delete container {id}")), "{text}");
    // Off: nothing.
    let id2 = ctx.id("quiet");
    b.write_config(&id2);
    let o = ctx.cmd(&["run", "-d", "--bundle", &bundle, &id2]);
    o.ok();
    assert!(o.stderr.is_empty(), "{o}");
    let o = ctx.cmd(&["--debug", "delete", "--force", &id2]);
    o.ok();
    assert!(o.stderr.lines().any(|l| l.contains("level=debug") && l.contains("force: true")), "{o}");
}
