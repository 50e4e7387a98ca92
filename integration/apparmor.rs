//! process.apparmorProfile and `exec --apparmor`. These need a host with AppArmor enabled and
//! apparmor_parser (the VM of ../shared/vm/run-in-vm: see integration/vm/apparmor.sh); on a
//! host without AppArmor only the refusal is checked.

use crate::common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The test profile: everything allowed except reading /etc/berth-fixture and writing below
/// /tmp/aa-denied.
const PROFILE_NAME: &str = "berth-itest";
const PROFILE: &str = r#"
#include <tunables/global>
profile berth-itest flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>
  file,
  network,
  capability,
  mount,
  umount,
  pivot_root,
  signal,
  ptrace,
  unix,
  deny /etc/berth-fixture r,
  deny /tmp/aa-denied/** w,
}
"#;

fn apparmor_enabled() -> bool {
    read("/sys/module/apparmor/parameters/enabled").trim() == "Y"
}

/// Loads the test profile once (apparmor_parser -r); false (with a note) when AppArmor is off.
fn profile_loaded() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        if !apparmor_enabled() {
            eprintln!("SKIPPED: AppArmor is not enabled on this host");
            return false;
        }
        let dir = Path::new(TMP_BASE).join(format!("apparmor-{}", std::process::id()));
        mkdir(&dir, 0o755);
        let f = dir.join("berth-itest.profile");
        std::fs::write(&f, PROFILE).unwrap();
        let o = Command::new("apparmor_parser").arg("-r").arg(&f).output().expect("apparmor_parser");
        assert!(o.status.success(), "apparmor_parser -r: {}", String::from_utf8_lossy(&o.stderr));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(read("/sys/kernel/security/apparmor/profiles").contains(PROFILE_NAME));
        true
    })
}

const CHECK: &str = "cat /proc/self/attr/current; echo; cat /etc/berth-fixture >/dev/null 2>&1 && echo fixture-readable || echo fixture-denied; \
                     mkdir -p /tmp/aa-denied; (echo x > /tmp/aa-denied/f) 2>/dev/null && echo write-ok || echo write-denied; \
                     cat /etc/passwd >/dev/null && echo passwd-ok";

/// The profile is the container process's label, and its rules apply.
#[test]
fn apparmor_profile_applied() {
    if !profile_loaded() {
        return;
    }
    let ctx = Ctx::new("aaprofile");
    let mut b = ctx.bundle();
    b.writable_root();
    b.set("/process/apparmorProfile", json!(PROFILE_NAME));
    b.sh(CHECK);
    let id = ctx.id("aa");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l: Vec<String> =
        o.lines().into_iter().filter(|l| !l.trim().is_empty()).map(|l| l.trim_matches('\0').to_string()).collect();
    assert_eq!(
        l,
        [format!("{PROFILE_NAME} (enforce)"), "fixture-denied".into(), "write-denied".into(), "passwd-ok".into()],
        "{o}"
    );
}

/// Seen from the host: the running init carries the profile.
#[test]
fn apparmor_profile_seen_from_host() {
    if !profile_loaded() {
        return;
    }
    let ctx = Ctx::new("aahost");
    let mut b = ctx.bundle();
    b.set("/process/apparmorProfile", json!(PROFILE_NAME));
    b.args(&["sleep", "1000"]);
    let id = ctx.id("aah");
    ctx.run_detached(&mut b, &id);
    let pid = ctx.pid(&id);
    assert_eq!(
        read(format!("/proc/{pid}/attr/current")).trim_matches(|c| c == '\0' || c == '\n'),
        format!("{PROFILE_NAME} (enforce)")
    );
}

/// `exec --apparmor` confines the exec'd process of an unconfined container; a plain exec in a
/// confined container gets the config's profile.
#[test]
fn apparmor_exec_flag() {
    if !profile_loaded() {
        return;
    }
    let ctx = Ctx::new("aaexec");
    let mut b = ctx.bundle();
    b.writable_root();
    b.args(&["sleep", "100000"]);
    let id = ctx.id("aae");
    ctx.run_detached(&mut b, &id);
    let o = ctx.cmd(&["exec", &id, "cat", "/proc/self/attr/current"]);
    o.ok();
    assert_eq!(o.stdout.trim_matches(|c| c == '\0' || c == '\n'), "unconfined", "{o}");
    let o = ctx.cmd(&["exec", "--apparmor", PROFILE_NAME, &id, "sh", "-c", CHECK]);
    o.ok();
    assert!(o.stdout.contains(&format!("{PROFILE_NAME} (enforce)")), "{o}");
    assert!(o.stdout.contains("fixture-denied") && o.stdout.contains("write-denied"), "{o}");

    let mut c = ctx.bundle();
    c.set("/process/apparmorProfile", json!(PROFILE_NAME));
    c.args(&["sleep", "100000"]);
    let id2 = ctx.id("aae2");
    ctx.run_detached(&mut c, &id2);
    let o = ctx.cmd(&["exec", &id2, "cat", "/proc/self/attr/current"]);
    o.ok();
    assert!(o.stdout.contains(&format!("{PROFILE_NAME} (enforce)")), "{o}");
}

/// A profile that is not loaded: create fails in one line naming it, nothing left behind.
#[test]
fn apparmor_unknown_profile_fails() {
    if !profile_loaded() {
        return;
    }
    let ctx = Ctx::new("aaunknown");
    let mut b = ctx.bundle();
    b.set("/process/apparmorProfile", json!("berth-no-such-profile"));
    let id = ctx.id("aau");
    let snap = ctx.snapshot(&b);
    let o = ctx.create(&mut b, &id);
    eprintln!("unknown profile: {}", o.stderr.trim());
    if is_runc() {
        o.fails();
    } else {
        o.one_line_error(&["berth-no-such-profile"]);
    }
    ctx.assert_nothing_left(&snap, &b, &id);
}

/// Without AppArmor on the host, a profile in the config is refused clearly (not ignored),
/// and nothing is left behind.
#[test]
fn apparmor_profile_without_apparmor_refused() {
    if apparmor_enabled() {
        eprintln!("SKIPPED: AppArmor is enabled on this host");
        return;
    }
    if skip_on_runc("runc reports the kernel's EINVAL") {
        return;
    }
    let ctx = Ctx::new("aaoff");
    let mut b = ctx.bundle();
    b.set("/process/apparmorProfile", json!(PROFILE_NAME));
    let id = ctx.id("aao");
    let snap = ctx.snapshot(&b);
    let o = ctx.create(&mut b, &id);
    o.one_line_error(&["apparmor"]);
    ctx.assert_nothing_left(&snap, &b, &id);
}
