//! Root filesystem: mounts, propagation, readonly root, masked/readonly paths, devices,
//! sysctl, --no-pivot.

use crate::common::*;
use serde_json::json;
use std::fs;
use std::time::Duration;

fn inside_mounts(out: &str) -> Vec<MountInfo> {
    parse_mountinfo(out)
}

fn find<'a>(m: &'a [MountInfo], dest: &str) -> &'a MountInfo {
    // The last mount on a path is the visible one.
    m.iter()
        .rev()
        .find(|x| x.mount_point == dest)
        .unwrap_or_else(|| panic!("no mount on {dest}: {:#?}", m.iter().map(|x| &x.mount_point).collect::<Vec<_>>()))
}

fn opts(s: &str) -> Vec<&str> {
    s.split(',').collect()
}

#[test]
fn rootfs_default_mount_types() {
    let ctx = Ctx::new("mounttypes");
    let o = ctx.run_sh("cat /proc/self/mountinfo");
    o.ok();
    let m = inside_mounts(&o.stdout);
    for (dest, fstype) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        assert_eq!(find(&m, dest).fstype, fstype, "{dest}: {o}");
    }
    let root = find(&m, "/");
    assert!(opts(&root.options).contains(&"ro"), "root.readonly: {o}");
    assert!(opts(&find(&m, "/sys").options).contains(&"ro"), "{o}");
    let shm = find(&m, "/dev/shm");
    for f in ["nosuid", "nodev", "noexec"] {
        assert!(opts(&shm.options).contains(&f), "/dev/shm {f}: {o}");
    }
    assert!(opts(&find(&m, "/dev").super_options).contains(&"size=65536k"), "{o}");
    let pts = find(&m, "/dev/pts");
    assert!(opts(&pts.super_options).contains(&"gid=5"), "{o}");
    assert!(opts(&pts.super_options).contains(&"ptmxmode=666"), "{o}");
    // cgroup: a cgroup2 mount, or (v1/hybrid host) a tmpfs with one cgroup mount per hierarchy.
    let cg = find(&m, "/sys/fs/cgroup");
    assert!(cg.fstype == "cgroup2" || cg.fstype == "tmpfs", "{o}");
    if cg.fstype == "tmpfs"
        && mountinfo().iter().any(|x| x.mount_point == "/sys/fs/cgroup/memory" && x.fstype == "cgroup")
    {
        let mem = find(&m, "/sys/fs/cgroup/memory");
        assert_eq!(mem.fstype, "cgroup", "{o}");
        assert!(opts(&mem.options).contains(&"ro"), "{o}");
    }
}

#[test]
fn rootfs_bind_mount_rw() {
    let ctx = Ctx::new("bindrw");
    let d = ctx.tempdir("host");
    fs::write(d.join("hello"), "from-host\n").unwrap();
    let mut b = ctx.bundle();
    b.mount(json!({"destination": "/data", "type": "bind", "source": d, "options": ["rbind", "rw"]}));
    b.sh("cat /data/hello; echo from-container > /data/new");
    let id = ctx.id("b");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout, "from-host\n");
    assert_eq!(read(d.join("new")), "from-container\n");
}

#[test]
fn rootfs_bind_mount_ro() {
    let ctx = Ctx::new("bindro");
    let d = ctx.tempdir("host");
    fs::write(d.join("hello"), "from-host\n").unwrap();
    let mut b = ctx.bundle();
    b.mount(json!({"destination": "/data", "type": "bind", "source": d, "options": ["bind", "ro"]}));
    b.sh("cat /data/hello; echo x > /data/new; echo rc=$?; grep ' /data ' /proc/self/mountinfo");
    let id = ctx.id("b");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], "from-host", "{o}");
    assert_eq!(l[1], "rc=1", "{o}");
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    assert!(!d.join("new").exists());
    let m = inside_mounts(&l[2]);
    assert!(opts(&m[0].options).contains(&"ro"), "{o}");
}

#[test]
fn rootfs_bind_file() {
    let ctx = Ctx::new("bindfile");
    let d = ctx.tempdir("host");
    fs::write(d.join("injected.conf"), "key=value\n").unwrap();
    let mut b = ctx.bundle();
    b.mount(json!({"destination": "/etc/injected.conf", "type": "bind", "source": d.join("injected.conf"), "options": ["bind", "ro"]}));
    b.sh("cat /etc/injected.conf");
    let id = ctx.id("bf");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout, "key=value\n");
}

#[test]
fn rootfs_tmpfs_size_and_mode() {
    let ctx = Ctx::new("tmpfsopts");
    let mut b = ctx.bundle();
    // The destination does not exist in the rootfs: the runtime creates it.
    b.mount(json!({"destination": "/made/by/runtime", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=0711"]}));
    b.sh("stat -c %a /made/by/runtime; grep ' /made/by/runtime ' /proc/self/mountinfo; \
         dd if=/dev/zero of=/made/by/runtime/f bs=1024 count=2048 2>/dev/null; echo rc=$?");
    let id = ctx.id("t");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], "711", "{o}");
    let m = inside_mounts(&l[1]);
    assert_eq!(m[0].fstype, "tmpfs", "{o}");
    assert!(opts(&m[0].super_options).contains(&"size=1024k"), "{o}");
    assert_ne!(l[2], "rc=0", "writing 2 MiB into a 1 MiB tmpfs must fail: {o}");
    assert!(!b.rootfs.join("made/by/runtime").join("f").exists());
}

#[test]
fn rootfs_mount_option_noexec() {
    let ctx = Ctx::new("noexec");
    let mut b = ctx.bundle();
    b.mount(json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["noexec"]}));
    b.mount(json!({"destination": "/y", "type": "tmpfs", "source": "tmpfs", "options": ["exec"]}));
    b.sh("cp /bin/busybox /x/true; cp /bin/busybox /y/true; /y/true; echo y=$?; /x/true; echo x=$?");
    let id = ctx.id("ne");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.lines(), ["y=0", "x=126"], "{o}");
}

/// A destination without a leading slash is taken relative to the container's /.
#[test]
fn rootfs_relative_destination() {
    let ctx = Ctx::new("reldest");
    let mut b = ctx.bundle();
    b.mount(json!({"destination": "rel/dir", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}));
    b.sh("grep ' /rel/dir ' /proc/self/mountinfo | wc -l");
    let id = ctx.id("r");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout.trim(), "1", "{o}");
}

#[test]
fn rootfs_mount_propagation_options() {
    let ctx = Ctx::new("propagation");
    let d1 = ctx.tempdir("shared");
    let d2 = ctx.tempdir("private");
    let mut b = ctx.bundle();
    b.mount(json!({"destination": "/shared", "type": "bind", "source": d1, "options": ["rbind", "rshared"]}));
    b.mount(json!({"destination": "/private", "type": "bind", "source": d2, "options": ["rbind", "rprivate"]}));
    b.sh("cat /proc/self/mountinfo");
    let id = ctx.id("p");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let m = inside_mounts(&o.stdout);
    assert!(find(&m, "/shared").optional.contains("shared:"), "{o}");
    assert!(!find(&m, "/private").optional.contains("shared:"), "{o}");
    assert!(!find(&m, "/private").optional.contains("master:"), "{o}");
}

#[test]
fn rootfs_rootfs_propagation_private() {
    let ctx = Ctx::new("rootprop");
    let mut b = ctx.bundle();
    b.set("/linux/rootfsPropagation", json!("private"));
    b.sh("awk '$5 == \"/\"' /proc/self/mountinfo");
    let id = ctx.id("rp");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let m = inside_mounts(&o.stdout);
    assert_eq!(m.len(), 1, "{o}");
    assert!(!m[0].optional.contains("shared:") && !m[0].optional.contains("master:"), "{o}");
}

/// rro: a recursive bind whose submounts are read-only too (mount_setattr AT_RECURSIVE).
#[test]
fn rootfs_rro_recursive_readonly() {
    let ctx = Ctx::new("rro");
    let d = ctx.tempdir("host");
    let sub = d.join("sub");
    fs::create_dir(&sub).unwrap();
    nix::mount::mount(Some("tmpfs"), &sub, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=64k"))
        .expect("mount tmpfs for the rro test");
    let mut b = ctx.bundle();
    b.mount(json!({"destination": "/r", "type": "bind", "source": d, "options": ["rbind", "rro"]}));
    b.sh("touch /r/top 2>/dev/null; echo top=$?; touch /r/sub/x 2>/dev/null; echo sub=$?; grep ' /r/sub ' /proc/self/mountinfo");
    let id = ctx.id("rro");
    let o = ctx.run(&mut b, &id);
    o.ok();
    let l = o.lines();
    assert_eq!(&l[..2], ["top=1", "sub=1"], "{o}");
    let m = inside_mounts(&l[2]);
    assert!(opts(&m[0].options).contains(&"ro"), "{o}");
    assert!(!sub.join("x").exists());
}

#[test]
fn rootfs_root_readonly() {
    let ctx = Ctx::new("rootro");
    let o = ctx.run_sh("touch /x; echo rc=$?; touch /tmp/y; echo tmp=$?");
    o.ok();
    assert_eq!(o.lines(), ["rc=1", "tmp=1"], "{o}");
    assert!(o.stderr.contains("Read-only file system"), "{o}");
}

#[test]
fn rootfs_root_writable() {
    let ctx = Ctx::new("rootrw");
    let mut b = ctx.bundle();
    b.writable_root();
    b.sh("echo made > /made-inside");
    let id = ctx.id("rw");
    ctx.run(&mut b, &id).ok();
    assert_eq!(read(b.rootfs.join("made-inside")), "made\n");
}

#[test]
fn rootfs_masked_paths() {
    let ctx = Ctx::new("masked");
    let mut b = ctx.bundle();
    b.write_file("secret.txt", "topsecret\n", 0o644);
    b.write_file("secretdir/inner", "also secret\n", 0o644);
    let masked = b.config["linux"]["maskedPaths"].as_array_mut().unwrap();
    masked.push(json!("/secret.txt"));
    masked.push(json!("/secretdir"));
    b.sh("wc -c < /secret.txt; ls -A /secretdir | wc -l; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; \
         cat /etc/berth-fixture");
    let id = ctx.id("m");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert!(
        fs::read_dir("/sys/firmware").map(|mut d| d.next().is_some()).unwrap_or(false),
        "host /sys/firmware is empty: test is void"
    );
    assert!(!read("/proc/timer_list").is_empty(), "host /proc/timer_list is empty: test is void");
    assert_eq!(o.lines(), ["0", "0", "0", "0", FIXTURE_MARK.trim()], "{o}");
    // The host files are untouched.
    assert_eq!(read(b.rootfs.join("secret.txt")), "topsecret\n");
}

#[test]
fn rootfs_readonly_paths() {
    let ctx = Ctx::new("ropaths");
    let mut b = ctx.bundle();
    b.writable_root();
    fs::create_dir(b.rootfs.join("rodir")).unwrap();
    b.config["linux"]["readonlyPaths"].as_array_mut().unwrap().push(json!("/rodir"));
    b.sh("touch /rodir/x 2>/dev/null; echo rodir=$?; touch /other; echo other=$?; \
         echo 1 > /proc/sys/kernel/domainname 2>/dev/null; echo procsys=$?");
    let id = ctx.id("ro");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.lines(), ["rodir=1", "other=0", "procsys=1"], "{o}");
}

#[test]
fn rootfs_default_devices() {
    let ctx = Ctx::new("devices");
    let o = ctx.run_sh(
        "for d in null zero full random urandom tty; do echo $d $(stat -c '%F %t %T %a' /dev/$d); done; \
         head -c 5 /dev/zero | wc -c; echo x > /dev/null; echo null=$?; echo x > /dev/full; echo full=$?",
    );
    o.ok();
    let l = o.lines();
    let want =
        [("null", "1 3"), ("zero", "1 5"), ("full", "1 7"), ("random", "1 8"), ("urandom", "1 9"), ("tty", "5 0")];
    for (i, (name, mm)) in want.iter().enumerate() {
        assert_eq!(l[i], format!("{name} character special file {mm} 666"), "{o}");
    }
    assert_eq!(&l[6..], ["5", "null=0", "full=1"], "{o}");
}

#[test]
fn rootfs_dev_symlinks() {
    let ctx = Ctx::new("devlinks");
    let o = ctx.run_sh("for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done");
    o.ok();
    assert_eq!(
        o.lines(),
        [
            "fd=/proc/self/fd",
            "stdin=/proc/self/fd/0",
            "stdout=/proc/self/fd/1",
            "stderr=/proc/self/fd/2",
            "ptmx=pts/ptmx"
        ],
        "{o}"
    );
}

#[test]
fn rootfs_custom_device_node() {
    let ctx = Ctx::new("customdev");
    let mut b = ctx.bundle();
    b.set(
        "/linux/devices",
        json!([{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 0, "gid": 20}]),
    );
    b.config["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
    b.sh("stat -c '%F %t %T %a %u %g' /dev/mydev; echo hi > /dev/mydev; echo rc=$?");
    let id = ctx.id("cd");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.lines(), ["character special file 1 3 640 0 20", "rc=0"], "{o}");
}

#[test]
fn rootfs_sysctl_in_net_namespace() {
    let ctx = Ctx::new("sysctl");
    let host_before = read("/proc/sys/net/ipv4/ip_forward");
    let want = if host_before.trim() == "1" { "0" } else { "1" };
    let mut b = ctx.bundle();
    b.set("/linux/sysctl", json!({"net.ipv4.ip_forward": want}));
    b.sh("cat /proc/sys/net/ipv4/ip_forward");
    let id = ctx.id("sc");
    let o = ctx.run(&mut b, &id);
    o.ok();
    assert_eq!(o.stdout.trim(), want, "{o}");
    assert_eq!(read("/proc/sys/net/ipv4/ip_forward"), host_before, "the host's value changed");
}

#[test]
fn rootfs_no_pivot() {
    let ctx = Ctx::new("nopivot");
    let mut b = ctx.bundle();
    b.sh("cat /etc/berth-fixture; ls -d /work 2>/dev/null | wc -l; echo $$");
    let id = ctx.id("np");
    b.write_config(&id);
    ctx.track(&id);
    let o = ctx.cmd(&["run", "--no-pivot", "--bundle", b.dir.to_str().unwrap(), &id]);
    o.ok();
    assert!(std::path::Path::new("/work").exists());
    assert_eq!(o.lines(), [FIXTURE_MARK.trim(), "0", "1"], "{o}");
}

/// The mounts made for a container are in its own mount namespace: none shows on the host.
#[test]
fn rootfs_mounts_not_visible_on_host() {
    let ctx = Ctx::new("hostmounts");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("hm");
    let before = mounts_under(&b.dir);
    ctx.run_detached(&mut b, &id);
    assert_eq!(mounts_under(&b.dir), before);
    ctx.delete_force(&id).ok();
    assert!(wait_until(Duration::from_secs(3), || mounts_under(&b.dir) == before));
}

/// With --no-pivot the host's own /proc and /sys stay in the container's mount namespace under
/// the moved rootfs; in a new user namespace they must not let the container mount a procfs or
/// sysfs that its config does not give it (pivot_root gets rid of them; runc too).
#[test]
fn rootfs_no_pivot_userns_no_host_proc() {
    if skip_on_runc("runc 1.1.5 needs a procfs in the container (it closes fds through /proc/self/fd)") {
        return;
    }
    let ctx = Ctx::new("nopivotuserns");
    // (--no-pivot, the config mounts /proc and /sys): what mounting procfs and sysfs gives must
    // not depend on --no-pivot. Without its own there is none to mount; with its own /proc the
    // container may mount procfs (its sysfs is read-only, so a read-write one is refused).
    let mut seen = Vec::new();
    for (no_pivot, own) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut b = ctx.bundle();
        b.ns_add("user", None);
        b.set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
        b.set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
        let caps = json!(["CAP_SYS_ADMIN"]);
        b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
        if !own {
            b.remove_mount("/proc");
            b.remove_mount("/sys");
            b.remove_mount("/sys/fs/cgroup");
            b.remove("/linux/maskedPaths");
            b.remove("/linux/readonlyPaths");
        }
        b.sh("mount -t proc proc /tmp && echo proc=ok || echo proc=fail; mount -t sysfs sysfs /tmp && echo sysfs=ok || echo sysfs=fail");
        let id = ctx.id("np");
        b.write_config(&id);
        ctx.track(&id);
        let dir = b.dir.to_str().unwrap().to_string();
        let mut args = vec!["run"];
        if no_pivot {
            args.push("--no-pivot");
        }
        args.extend(["--bundle", &dir, &id]);
        let o = ctx.cmd(&args);
        o.ok();
        if !own {
            assert_eq!(o.lines(), ["proc=fail", "sysfs=fail"], "no_pivot={no_pivot}: {o}");
        } else {
            assert_eq!(o.lines()[0], "proc=ok", "no_pivot={no_pivot}: {o}");
        }
        seen.push(o.lines());
    }
    assert_eq!(seen[2], seen[3], "--no-pivot changes what a container with its own /proc and /sys can mount");
}

/// The same cover when the init makes its mount namespace itself: in a user namespace joined
/// by path, or in one it creates after joining a network namespace by path.
#[test]
fn rootfs_no_pivot_late_userns_no_host_proc() {
    if skip_on_runc("runc 1.1.5 needs a procfs in the container (it closes fds through /proc/self/fd)") {
        return;
    }
    let ctx = Ctx::new("nopivotlate");
    // Holders of the namespaces to join: a user namespace mapped as the containers' would be,
    // and a network namespace.
    let user = ctx.spawn_cmd({
        let mut c = std::process::Command::new("unshare");
        c.args(["--user", "sleep", "300"]);
        c
    });
    let net = ctx.spawn_cmd({
        let mut c = std::process::Command::new("unshare");
        c.args(["--net", "sleep", "300"]);
        c
    });
    let (upid, npid) = (user.pid(), net.pid());
    // unshare execs sleep once its namespaces are made; root maps the user namespace.
    let slept = |p: i32| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep");
    assert!(wait_until(Duration::from_secs(5), || slept(upid) && slept(npid)));
    for f in ["uid_map", "gid_map"] {
        fs::write(format!("/proc/{upid}/{f}"), "0 100000 65536\n").unwrap();
    }
    for (case, own) in
        [("joined-user", false), ("joined-user", true), ("user-after-net", false), ("user-after-net", true)]
    {
        let mut b = ctx.bundle();
        if case == "joined-user" {
            b.ns_add("user", Some(&format!("/proc/{upid}/ns/user")));
        } else {
            b.ns_add("network", Some(&format!("/proc/{npid}/ns/net")));
            b.ns_add("user", None);
            b.set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
            b.set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
        }
        let caps = json!(["CAP_SYS_ADMIN"]);
        b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
        if !own {
            b.remove_mount("/proc");
            b.remove_mount("/sys");
            b.remove_mount("/sys/fs/cgroup");
            b.remove("/linux/maskedPaths");
            b.remove("/linux/readonlyPaths");
        }
        b.sh("mount -t proc proc /tmp && echo proc=ok || echo proc=fail; mount -t sysfs sysfs /tmp && echo sysfs=ok || echo sysfs=fail");
        let id = ctx.id("late");
        b.write_config(&id);
        ctx.track(&id);
        let dir = b.dir.to_str().unwrap().to_string();
        let o = ctx.cmd(&["run", "--no-pivot", "--bundle", &dir, &id]);
        o.ok();
        if own {
            assert_eq!(o.lines()[0], "proc=ok", "{case}: {o}");
        } else {
            assert_eq!(o.lines(), ["proc=fail", "sysfs=fail"], "{case}: the host's procfs or sysfs is mountable: {o}");
        }
    }
    drop((user, net));
}
