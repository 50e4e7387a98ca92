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
