//! create / start / run / kill / delete, ids, concurrency.

use crate::common::*;
use std::fs;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn lifecycle_create_start_delete() {
    let ctx = Ctx::new("csd");
    let mut b = ctx.bundle();
    b.writable_root();
    b.sh("echo started > /tmp/started; exec sleep 1000");
    let id = ctx.id("csd");
    let snap = ctx.snapshot(&b);
    ctx.create(&mut b, &id).ok();
    assert_eq!(ctx.state(&id)["status"], "created");
    // The user process must not run before start.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!b.rootfs.join("tmp/started").exists(), "process ran before start");
    ctx.start(&id).ok();
    assert!(wait_file(&b.rootfs.join("tmp/started"), Duration::from_secs(10)), "process did not run after start");
    assert_eq!(ctx.state(&id)["status"], "running");
    let pid = ctx.pid(&id);
    ctx.kill(&id, "KILL").ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    assert!(!pid_alive(pid));
    ctx.delete(&id).ok();
    assert!(ctx.status(&id).is_none(), "state must fail after delete");
    ctx.assert_nothing_left(&snap, &b, &id);
}

#[test]
fn lifecycle_start_runs_to_stopped() {
    let ctx = Ctx::new("tostopped");
    let mut b = ctx.bundle();
    b.sh("exit 0");
    let id = ctx.id("ts");
    ctx.create(&mut b, &id).ok();
    ctx.start(&id).ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    ctx.delete(&id).ok();
}

/// The created container's output goes to the stdio create was given.
#[test]
fn lifecycle_created_container_uses_create_stdio() {
    let ctx = Ctx::new("createstdio");
    let mut b = ctx.bundle();
    b.sh("echo out-line; echo err-line >&2");
    let id = ctx.id("io");
    let o = ctx.create(&mut b, &id);
    o.ok();
    ctx.start(&id).ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    assert!(o.stdout_now().contains("out-line"), "stdout of create: {:?}", o.stdout_now());
}

#[test]
fn lifecycle_start_twice_fails() {
    let ctx = Ctx::new("starttwice");
    let mut b = ctx.bundle();
    b.args(&["sleep", "100"]);
    let id = ctx.id("st2");
    ctx.create(&mut b, &id).ok();
    ctx.start(&id).ok();
    let o = ctx.start(&id);
    o.one_line_error(&["running", "not created", "cannot start", "state"]);
    assert_eq!(ctx.state(&id)["status"], "running");
}

#[test]
fn lifecycle_run_exit_code() {
    let ctx = Ctx::new("exitcode");
    let o = ctx.run_sh("echo hello; exit 3");
    assert_eq!(o.code, 3, "{o}");
    assert_eq!(o.stdout, "hello\n", "{o}");
}

#[test]
fn lifecycle_run_exit_zero_and_stderr() {
    let ctx = Ctx::new("exitzero");
    let o = ctx.run_sh("echo to-err >&2");
    o.ok();
    assert_eq!(o.stderr, "to-err\n", "{o}");
}

#[test]
fn lifecycle_run_killed_by_sigkill_is_137() {
    let ctx = Ctx::new("exit137");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("k9");
    b.write_config(&id);
    let bg = ctx.spawn(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    ctx.wait_status(&id, "running", Duration::from_secs(10));
    ctx.kill(&id, "KILL").ok();
    let o = bg.wait(Duration::from_secs(10));
    assert_eq!(o.code, 137, "{o}");
}

#[test]
fn lifecycle_run_detached() {
    let ctx = Ctx::new("rund");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("d");
    let o = ctx.run_detached(&mut b, &id);
    assert!(o.elapsed < Duration::from_secs(10), "run -d must return at once: {o}");
    let s = ctx.state(&id);
    assert_eq!(s["status"], "running");
    let pid = s["pid"].as_i64().unwrap() as i32;
    assert!(pid_alive(pid));
    // run -d may return just before the init executes the process.
    assert!(
        wait_until(Duration::from_secs(5), || read(format!("/proc/{pid}/comm")).trim() == "sleep"),
        "the container's pid does not run the process: {}",
        read(format!("/proc/{pid}/comm"))
    );
}

/// A process that traps TERM (pid 1 ignores signals it has no handler for).
fn trap_term_bundle(ctx: &Ctx) -> Bundle {
    let mut b = ctx.bundle();
    b.writable_root();
    b.sh("trap 'echo got-term > /tmp/term; exit 0' TERM; echo ready > /tmp/ready; while :; do sleep 0.05; done");
    b
}

fn kill_with(sig: &str) {
    let ctx = Ctx::new("killsig");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("ks");
    ctx.run_detached(&mut b, &id);
    let pid = ctx.pid(&id);
    ctx.kill(&id, sig).ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    assert!(!pid_alive(pid));
}

#[test]
fn lifecycle_kill_by_name_kill() {
    kill_with("KILL");
}

#[test]
fn lifecycle_kill_by_name_sigkill() {
    kill_with("SIGKILL");
}

#[test]
fn lifecycle_kill_by_number_9() {
    kill_with("9");
}

#[test]
fn lifecycle_kill_term_reaches_handler() {
    let ctx = Ctx::new("killterm");
    let mut b = trap_term_bundle(&ctx);
    let id = ctx.id("term");
    ctx.run_detached(&mut b, &id);
    assert!(wait_file(&b.rootfs.join("tmp/ready"), Duration::from_secs(10)));
    ctx.kill(&id, "TERM").ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    assert_eq!(read(b.rootfs.join("tmp/term")), "got-term\n");
}

/// `kill ID` with no signal sends SIGTERM (runc's default).
#[test]
fn lifecycle_kill_default_signal_is_term() {
    let ctx = Ctx::new("killdefault");
    let mut b = trap_term_bundle(&ctx);
    let id = ctx.id("term");
    ctx.run_detached(&mut b, &id);
    assert!(wait_file(&b.rootfs.join("tmp/ready"), Duration::from_secs(10)));
    ctx.cmd(&["kill", &id]).ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    assert_eq!(read(b.rootfs.join("tmp/term")), "got-term\n");
}

#[test]
fn lifecycle_kill_unknown_signal_fails() {
    let ctx = Ctx::new("killbad");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("kb");
    ctx.run_detached(&mut b, &id);
    for sig in ["SIGFOO", "NOPE", "99999"] {
        let o = ctx.kill(&id, sig);
        o.one_line_error(&["signal"]);
    }
    assert_eq!(ctx.state(&id)["status"], "running");
}

/// `kill --all` reaches every process of the container, not only its init (no pid namespace
/// here, so killing init alone would leave the children running).
#[test]
fn lifecycle_kill_all() {
    let ctx = Ctx::new("killall");
    let mut b = ctx.bundle();
    b.writable_root();
    b.ns_remove("pid");
    b.sh("sleep 1001 & echo $! > /tmp/p1; sleep 1002 & echo $! > /tmp/p2; echo $$ > /tmp/p0; wait");
    let id = ctx.id("ka");
    ctx.run_detached(&mut b, &id);
    let mut pids = Vec::new();
    for f in ["p0", "p1", "p2"] {
        let p = b.rootfs.join("tmp").join(f);
        assert!(wait_until(Duration::from_secs(10), || read(&p).ends_with('\n')), "{f} not written");
        pids.push(read(&p).trim().parse::<i32>().unwrap());
    }
    assert!(pids.iter().all(|p| pid_alive(*p)), "{pids:?}");
    ctx.cmd(&["kill", "--all", &id, "KILL"]).ok();
    assert!(
        wait_until(Duration::from_secs(10), || pids.iter().all(|p| !pid_alive(*p))),
        "processes still alive after kill --all: {:?}",
        pids.iter().filter(|p| pid_alive(**p)).collect::<Vec<_>>()
    );
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
}

#[test]
fn lifecycle_delete_force_running() {
    let ctx = Ctx::new("delforce");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("df");
    let snap = ctx.snapshot(&b);
    ctx.run_detached(&mut b, &id);
    let pid = ctx.pid(&id);
    ctx.delete_force(&id).ok();
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(pid)), "init still alive after delete -f");
    assert!(ctx.status(&id).is_none());
    ctx.assert_nothing_left(&snap, &b, &id);
}

#[test]
fn lifecycle_delete_force_created() {
    let ctx = Ctx::new("delforcecreated");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("dfc");
    let snap = ctx.snapshot(&b);
    ctx.create(&mut b, &id).ok();
    let pid = ctx.pid(&id);
    ctx.delete_force(&id).ok();
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(pid)), "init still alive after delete -f");
    ctx.assert_nothing_left(&snap, &b, &id);
}

#[test]
fn lifecycle_delete_running_without_force_fails() {
    let ctx = Ctx::new("delrunning");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("dr");
    ctx.run_detached(&mut b, &id);
    let pid = ctx.pid(&id);
    let o = ctx.delete(&id);
    o.one_line_error(&["running", "not stopped", "force"]);
    assert_eq!(ctx.state(&id)["status"], "running");
    assert!(pid_alive(pid));
}

/// Deleting a *created* container without -f kills and deletes it. The spec says deleting a
/// container that is not stopped MUST fail; runc deviates for created containers (containerd's
/// shim deletes never-started tasks without --force) and berth documents the same deviation
/// (src/container/mod.rs, delete). A running one still needs -f (next test).
#[test]
fn lifecycle_delete_created_without_force_deletes() {
    let ctx = Ctx::new("delcreated");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("dc");
    let snap = ctx.snapshot(&b);
    ctx.create(&mut b, &id).ok();
    let pid = ctx.pid(&id);
    ctx.delete(&id).ok();
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(pid)), "init still alive after delete");
    assert!(ctx.status(&id).is_none());
    ctx.assert_nothing_left(&snap, &b, &id);
}

#[test]
fn lifecycle_delete_stopped_cleans_up() {
    let ctx = Ctx::new("delstopped");
    let mut b = ctx.bundle();
    b.sh("exit 0");
    let id = ctx.id("ds");
    let snap = ctx.snapshot(&b);
    ctx.create(&mut b, &id).ok();
    ctx.start(&id).ok();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    ctx.delete(&id).ok();
    ctx.assert_nothing_left(&snap, &b, &id);
}

#[test]
fn lifecycle_duplicate_id_create_fails() {
    let ctx = Ctx::new("dupid");
    let mut b1 = ctx.bundle();
    b1.args(&["sleep", "1000"]);
    let mut b2 = ctx.bundle();
    b2.args(&["sleep", "1000"]);
    let id = ctx.id("dup");
    ctx.create(&mut b1, &id).ok();
    let s1 = ctx.state(&id);
    let o = ctx.create(&mut b2, &id);
    o.one_line_error(&["exist", "already", "in use"]);
    let s2 = ctx.state(&id);
    assert_eq!(s1["pid"], s2["pid"], "the first container must be untouched");
    assert_eq!(s1["bundle"], s2["bundle"]);
    assert_eq!(s2["status"], "created");
    // Nothing of the second attempt is left (mounts, processes under the second bundle).
    assert!(mounts_under(&b2.dir).is_empty());
    assert!(procs_in(&b2.dir).is_empty());
}

#[test]
fn lifecycle_parallel_50_distinct_creates() {
    let ctx = Arc::new(Ctx::new("par50"));
    let mut jobs = Vec::new();
    let mut ids = Vec::new();
    for i in 0..50 {
        let mut b = ctx.bundle();
        b.args(&["sleep", "1000"]);
        let id = ctx.id(&format!("p{i}"));
        b.write_config(&id);
        jobs.push((ctx.spawn(&["create", "--bundle", b.dir.to_str().unwrap(), &id]), b));
        ids.push(id);
    }
    let outs: Vec<Out> = jobs.into_iter().map(|(j, _b)| j.wait(Duration::from_secs(180))).collect();
    for o in &outs {
        o.ok();
    }
    let l = ctx.cmd(&["list", "-q"]);
    l.ok();
    let mut got = l.lines();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    for id in &ids {
        assert_eq!(ctx.state(id)["status"], "created", "{id}");
    }
}

/// Two creates of one id at once: exactly one wins, the loser fails with one line and leaves the
/// winner intact. Three rounds, to give a race a chance to show.
/// runc deviates: its same-id race can fail both creates ("unable to store init state"), or let
/// the loser remove the winner's state, so on runc the test only requires that at most one
/// succeeds and checks the rest when the winner survived.
#[test]
fn lifecycle_parallel_same_id_one_wins() {
    let ctx = Ctx::new("parsame");
    for _round in 0..3 {
        same_id_round(&ctx);
    }
}

fn same_id_round(ctx: &Ctx) {
    let id = ctx.id("same");
    let mut bundles = Vec::new();
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let mut b = ctx.bundle();
        b.args(&["sleep", "1000"]);
        b.write_config(&id);
        bundles.push(b);
    }
    for b in &bundles {
        jobs.push(ctx.spawn(&["create", "--bundle", b.dir.to_str().unwrap(), &id]));
    }
    let outs: Vec<Out> = jobs.into_iter().map(|j| j.wait(Duration::from_secs(60))).collect();
    let ok = outs.iter().filter(|o| o.code == 0).count();
    if is_runc() && ok == 0 {
        eprintln!("runc: both same-id creates failed");
        return;
    }
    assert_eq!(ok, 1, "exactly one create must succeed:\n{}\n{}", outs[0], outs[1]);
    let loser = outs.iter().find(|o| o.code != 0).unwrap();
    let words = ["exist", "already", "in use", "lock", "busy"];
    if is_runc() {
        // runc deviates: a loser that got as far as the cgroup also tries to remove the
        // (shared) cgroup of the winner and logs a dozen warning lines before its error.
        let last = loser.stderr.lines().last().unwrap_or("").to_lowercase();
        assert!(words.iter().any(|w| last.contains(w)), "{loser}");
    } else {
        loser.one_line_error(&words);
    }
    if is_runc() && ctx.status(&id).is_none() {
        // runc deviates: the loser's clean-up can remove the winner's state dir.
        eprintln!("runc: the loser removed the winner's state");
        return;
    }
    let s = ctx.state(&id);
    assert_eq!(s["status"], "created");
    let winner = outs.iter().position(|o| o.code == 0).unwrap();
    let bundle = fs::canonicalize(&bundles[winner].dir).unwrap();
    assert_eq!(s["bundle"].as_str().unwrap(), bundle.to_str().unwrap());
    // The winner is intact: its cgroup is still there and it starts.
    assert!(cgroup_dirs(&id, None).iter().any(|d| d.exists()), "the winner's cgroup was removed");
    ctx.start(&id).ok();
    assert_eq!(ctx.state(&id)["status"], "running");
    let pid = ctx.pid(&id);
    assert!(read(format!("/proc/{pid}/cgroup")).contains(&format!("/berth/{id}")));
    // The loser's bundle has no process or mount left.
    let lb = &bundles[1 - winner];
    assert!(wait_until(Duration::from_secs(3), || procs_in(&lb.dir).is_empty()), "loser left processes");
    assert!(mounts_under(&lb.dir).is_empty());
    ctx.delete_force(&id).ok();
}

/// A container that exited on its own: `kill` fails with runc's "container not running" (what
/// containerd's shim reads as "already gone"), `kill -a ID 0` and `kill -a ID KILL` succeed,
/// `start` gives runc's words, `ps` lists nothing, as runc 1.1.5 does.
#[test]
fn lifecycle_exited_container_as_runc() {
    let ctx = Ctx::new("exitedrunc");
    let mut b = ctx.bundle();
    b.args(&["true"]);
    let id = ctx.id("ex");
    ctx.run_detached(&mut b, &id);
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    for sig in ["KILL", "TERM", "0"] {
        let o = ctx.kill(&id, sig);
        o.one_line_error(&["container not running"]);
        assert_eq!(o.code, 1, "{o}");
    }
    ctx.cmd(&["kill", "-a", &id, "0"]).ok();
    ctx.cmd(&["kill", "--all", &id, "KILL"]).ok();
    let o = ctx.start(&id);
    o.one_line_error(&["cannot start a container that has stopped"]);
    assert_eq!(o.code, 1, "{o}");
    let o = ctx.cmd(&["ps", &id]);
    o.ok();
    assert_eq!(o.lines().len(), 1, "only ps's header: {o}");
    assert!(o.stdout.contains("PID"), "{o}");
    let o = ctx.cmd(&["ps", "--format", "json", &id]);
    o.ok();
    assert_eq!(o.stdout, "null\n", "{o}");
    ctx.cmd(&["pause", &id]).one_line_error(&["container not running"]);
    ctx.cmd(&["resume", &id]).one_line_error(&["container not paused"]);
    ctx.delete(&id).ok();
    let o = ctx.kill(&id, "KILL");
    o.one_line_error(&["does not exist"]);
}

/// Signal 0 is kill(2)'s existence check: runc passes it on, so `kill ID 0` succeeds on a
/// running container; `start` and `delete` of a running one fail with runc's words.
#[test]
fn lifecycle_running_container_words_as_runc() {
    let ctx = Ctx::new("runningrunc");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("rn");
    ctx.run_detached(&mut b, &id);
    ctx.kill(&id, "0").ok();
    ctx.cmd(&["kill", "-a", &id, "0"]).ok();
    assert_eq!(ctx.state(&id)["status"], "running");
    ctx.start(&id).one_line_error(&["cannot start an already running container"]);
    ctx.delete(&id).one_line_error(&[&format!("cannot delete container {id} that is not stopped: running")]);
    ctx.cmd(&["resume", &id]).one_line_error(&["container not paused"]);
}
