//! Namespaces: creation, isolation, user/cgroup/time namespaces, joining by path.

use crate::common::*;
use serde_json::json;
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

fn kv(out: &str) -> std::collections::HashMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn ns_pid_init_is_pid1() {
    let ctx = Ctx::new("pid1");
    let o = ctx.run_sh("echo $$; ls /proc | grep -c '^[0-9]'");
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], "1", "{o}");
    // Only sh (pid 1) and the pipeline's processes: a handful, not the host's processes.
    let n: u32 = l[1].parse().unwrap();
    assert!(n <= 4, "the container sees {n} processes: {o}");
}

#[test]
fn ns_no_pid_namespace_shares_host_pids() {
    let ctx = Ctx::new("nopidns");
    let mut b = ctx.bundle();
    b.ns_remove("pid");
    b.sh("echo $$; readlink /proc/self/ns/pid");
    let id = ctx.id("np");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = o.lines();
    assert_ne!(l[0], "1", "{o}");
    assert_eq!(l[1], host_ns("pid"), "{o}");
}

#[test]
fn ns_hostname_and_domainname() {
    let ctx = Ctx::new("uts");
    let mut b = ctx.bundle();
    b.set("/hostname", json!("box-one"));
    b.set("/domainname", json!("example.test"));
    b.sh("hostname; cat /proc/sys/kernel/domainname");
    let id = ctx.id("uts");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.lines()[0], "box-one", "{o}");
    // runc 1.1.5 ignores domainname (added in runc 1.2).
    if !is_runc() {
        assert_eq!(o.lines()[1], "example.test", "{o}");
    }
    // The host's names are untouched.
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "box-one");
}

/// Namespaces in the config differ from the host's; one not in the config is the host's.
#[test]
fn ns_isolation_inodes_differ_from_host() {
    let ctx = Ctx::new("nsiso");
    let mut b = ctx.bundle();
    b.sh("for n in uts ipc net mnt pid cgroup; do echo $n=$(readlink /proc/self/ns/$n); done");
    let id = ctx.id("iso");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let m = kv(&o.stdout);
    for n in ["uts", "ipc", "net", "mnt", "pid"] {
        let inside = m.get(n).unwrap_or_else(|| panic!("{n} missing: {o}"));
        assert!(inside.starts_with(&format!("{n}:[")), "{o}");
        assert_ne!(inside, &host_ns(n), "{n} namespace must be new");
    }
    assert_eq!(m["cgroup"], host_ns("cgroup"), "no cgroup namespace was asked for");
}

#[test]
fn ns_net_has_only_loopback_down() {
    let ctx = Ctx::new("netlo");
    let o = ctx.run_sh("ls /sys/class/net");
    o.ok();
    assert_eq!(o.lines(), ["lo"], "{o}");
}

#[test]
fn ns_ipc_isolated_from_host_shm() {
    let ctx = Ctx::new("ipc");
    // A SysV segment made on the host is not visible inside.
    // SAFETY: shmget with IPC_PRIVATE creates a new segment; no memory is attached.
    let shmid = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(shmid >= 0, "shmget failed");
    let host_lines = read("/proc/sysvipc/shm").lines().count();
    let o = ctx.run_sh("cat /proc/sysvipc/shm | wc -l");
    // SAFETY: removes the segment made above.
    unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) };
    o.ok();
    assert!(host_lines >= 2, "the host sees its segment");
    assert_eq!(o.stdout.trim(), "1", "only the header line: {o}");
}

#[test]
fn ns_user_with_mappings() {
    let ctx = Ctx::new("userns");
    let mut b = ctx.bundle();
    b.ns_add("user", None);
    b.set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    b.set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 200000, "size": 65536}]));
    b.sh("cat /proc/self/uid_map; cat /proc/self/gid_map; id -u; echo ready > /dev/shm/r; sleep 1000");
    let id = ctx.id("user");
    let o = ctx.create(&mut b, &id);
    o.ok();
    ctx.start(&id).ok();
    let pid = ctx.pid(&id);
    assert!(wait_until(Duration::from_secs(10), || o.stdout_now().lines().count() >= 3), "{}", o.stdout_now());
    let out = o.stdout_now();
    let l = norm(&out);
    assert_eq!(l[0], "0 100000 65536", "{out}");
    assert_eq!(l[1], "0 200000 65536", "{out}");
    assert_eq!(l[2], "0", "{out}");
    let st = read(format!("/proc/{pid}/status"));
    assert_eq!(status_field(&st, "Uid").unwrap().split_whitespace().next(), Some("100000"), "{st}");
    assert_eq!(status_field(&st, "Gid").unwrap().split_whitespace().next(), Some("200000"), "{st}");
    assert_ne!(fs::read_link(format!("/proc/{pid}/ns/user")).unwrap().to_str().unwrap(), host_ns("user"));
}

#[test]
fn ns_cgroup_namespace_root() {
    let ctx = Ctx::new("cgns");
    let mut b = ctx.bundle();
    b.ns_add("cgroup", None);
    b.sh("readlink /proc/self/ns/cgroup; cat /proc/self/cgroup");
    let id = ctx.id("cg");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = o.lines();
    assert_ne!(l[0], host_ns("cgroup"), "{o}");
    // Inside its own cgroup namespace the container's cgroups are the roots.
    for line in &l[1..] {
        assert!(line.ends_with(":/"), "cgroup path must be / in a cgroup namespace: {o}");
    }
}

#[test]
fn ns_no_cgroup_namespace_shows_cgroups_path() {
    let ctx = Ctx::new("nocgns");
    let mut b = ctx.bundle();
    b.sh("cat /proc/self/cgroup");
    let id = ctx.id("cg");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let want = format!("/berth/{id}");
    assert!(
        o.lines().iter().any(|l| l.ends_with(&format!(":{want}"))),
        "the container must be in its cgroupsPath {want}: {o}"
    );
}

/// berth-only: runc 1.1.5 has no time namespace support.
#[test]
fn ns_time_offsets() {
    if skip_on_runc("runc 1.1.5 has no time namespace") {
        return;
    }
    let ctx = Ctx::new("timens");
    let mut b = ctx.bundle();
    b.ns_add("time", None);
    b.set(
        "/linux/timeOffsets",
        json!({"monotonic": {"secs": 864000, "nanosecs": 5}, "boottime": {"secs": 1728000, "nanosecs": 0}}),
    );
    b.sh("cat /proc/self/timens_offsets; cut -d' ' -f1 /proc/uptime");
    let id = ctx.id("time");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = norm(&o.stdout);
    assert!(l.iter().any(|x| x == "monotonic 864000 5"), "{o}");
    assert!(l.iter().any(|x| x == "boottime 1728000 0"), "{o}");
    // /proc/uptime follows boottime: at least the offset.
    let up: f64 = l.last().unwrap().parse().unwrap();
    assert!(up >= 1728000.0, "{o}");
}

/// A network namespace bound to a file (`unshare --net=FILE`) is joined by path.
#[test]
fn ns_join_network_by_bind_mounted_path() {
    let ctx = Ctx::new("joinnet");
    let d = ctx.tempdir("ns");
    let nsfile = d.join("netns");
    fs::write(&nsfile, "").unwrap();
    let st = Command::new("unshare")
        .arg(format!("--net={}", nsfile.display()))
        .args(["true"])
        .stdin(Stdio::null())
        .status()
        .expect("unshare");
    assert!(st.success(), "unshare --net=FILE failed");
    let want = {
        use std::os::unix::fs::MetadataExt;
        format!("net:[{}]", fs::metadata(&nsfile).unwrap().ino())
    };
    assert_ne!(want, host_ns("net"));
    let mut b = ctx.bundle();
    b.ns_add("network", Some(nsfile.to_str().unwrap()));
    b.sh("readlink /proc/self/ns/net");
    let id = ctx.id("jn");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout.trim(), want, "{o}");
}

/// Join the uts and net namespaces of a sleeping process through /proc/PID/ns/*.
#[test]
fn ns_join_from_process_ns_path() {
    let ctx = Ctx::new("joinproc");
    let child = Command::new("unshare")
        .args(["--net", "--uts", "sh", "-c", "hostname joined-host; exec sleep 1000"])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare");
    let pid = child.id();
    ctx.keep_child(child);
    let uts = format!("/proc/{pid}/ns/uts");
    let net = format!("/proc/{pid}/ns/net");
    assert!(
        wait_until(Duration::from_secs(5), || read(format!("/proc/{pid}/comm")).trim() == "sleep"),
        "helper did not start"
    );
    let want_net = fs::read_link(&net).unwrap().to_string_lossy().into_owned();
    assert_ne!(want_net, host_ns("net"));
    let mut b = ctx.bundle();
    b.ns_add("network", Some(&net));
    b.ns_add("uts", Some(&uts));
    b.remove("/hostname");
    b.sh("readlink /proc/self/ns/net; hostname");
    let id = ctx.id("jp");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.lines(), [want_net.as_str(), "joined-host"], "{o}");
}

/// A namespace path that is not a namespace file fails create, leaving nothing.
#[test]
fn ns_join_bad_path_fails() {
    let ctx = Ctx::new("joinbad");
    let mut b = ctx.bundle();
    let bogus = ctx.dir.join("not-a-ns");
    fs::write(&bogus, "").unwrap();
    b.ns_add("network", Some(bogus.to_str().unwrap()));
    b.args(&["true"]);
    let id = ctx.id("jb");
    let snap = ctx.snapshot(&b);
    let o = ctx.create(&mut b, &id);
    o.fails();
    assert!(o.stderr.contains("not-a-ns") || o.stderr.to_lowercase().contains("namespace"), "{o}");
    ctx.assert_nothing_left(&snap, &b, &id);
}

/// The same namespace twice in linux.namespaces: refused with runc's message, nothing left.
#[test]
fn namespace_listed_twice() {
    let ctx = Ctx::new("nstwice");
    let mut b = ctx.bundle();
    b.args(&["true"]);
    b.ns_add("uts", None);
    let mut list = b.get("/linux/namespaces").and_then(|v| v.as_array().cloned()).unwrap_or_default();
    list.push(json!({"type": "uts"}));
    b.set("/linux/namespaces", json!(list));
    let id = ctx.id("twice");
    b.write_config(&id);
    let snap = ctx.snapshot(&b);
    let o = ctx.cmd(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    if is_runc() {
        // runc's log line escapes the quotes.
        o.fails();
        assert!(o.stderr.contains("malformed spec file: duplicated ns"), "{o}");
    } else {
        o.one_line_error(&[r#"malformed spec file: duplicated ns {"uts" ""}"#]);
    }
    ctx.assert_nothing_left(&snap, &b, &id);
}

/// A bind source the container's mapped root cannot reach (inside a 0700 directory of the
/// host's root) is mounted all the same: the runtime opens it before the user namespace, as
/// runc does.
#[test]
fn ns_user_bind_source_out_of_reach() {
    use std::os::unix::fs::PermissionsExt;
    let ctx = Ctx::new("userbind");
    let top = ctx.tempdir("private");
    fs::set_permissions(&top, fs::Permissions::from_mode(0o700)).unwrap();
    let src = top.join("shared");
    fs::create_dir(&src).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    let marker = format!("reached-{}", std::process::id());
    fs::write(src.join("f"), &marker).unwrap();
    fs::set_permissions(src.join("f"), fs::Permissions::from_mode(0o644)).unwrap();
    let mut b = ctx.bundle();
    b.ns_add("user", None);
    b.set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    b.set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    b.mount(json!({"destination": "/tmp", "type": "bind", "source": src.to_str().unwrap(), "options": ["rbind"]}));
    b.sh("cat /tmp/f");
    let id = ctx.id("ub");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout.trim(), marker, "{o}");
}
