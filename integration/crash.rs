//! Crash safety of the runtime: `berth` killed with SIGKILL at each named crash point of
//! create, start, exec and delete (`BERTH_CRASH_AT`, honoured by debug builds only, see
//! src/faults/), then `delete -f` must leave nothing: no state dir, no cgroup, no mount, no
//! process. The engine's and the image store's points are in container.rs and image.rs.

use crate::common::*;
use std::process::Command;

/// Whether the binary under test honours the fault hooks: `cli.start` kills it with SIGKILL.
pub fn hooks_honoured(ctx: &Ctx) -> bool {
    let mut c = ctx.command_noroot(&["--version"]);
    c.env("BERTH_CRASH_AT", "cli.start");
    ctx.exec_cmd(c, TIMEOUT).code == 128 + 9
}

/// `berth --root ROOT args...` with `BERTH_CRASH_AT=point`: asserts it died by SIGKILL there.
#[track_caller]
fn crash(ctx: &Ctx, point: &str, args: &[&str]) {
    let mut c: Command = ctx.command(args);
    c.env("BERTH_CRASH_AT", point);
    let o = ctx.exec_cmd(c, TIMEOUT);
    assert_eq!(o.code, 128 + 9, "{point}: berth should have killed itself there: {o}");
}

#[test]
fn crash_runtime_at_every_point_then_delete_force_leaves_nothing() {
    let ctx = Ctx::new("crash-runtime");
    if !hooks_honoured(&ctx) {
        eprintln!("SKIPPED: the binary under test ignores BERTH_CRASH_AT (release build or runc)");
        return;
    }
    // create, killed at each of its points.
    for point in ["runtime.create.state-dir", "runtime.create.init-spawned", "runtime.create.state-saved"] {
        let mut b = ctx.bundle();
        b.args(&["sleep", "1000"]);
        let id = ctx.id("create");
        let snap = ctx.snapshot(&b);
        b.write_config(&id);
        crash(&ctx, point, &["create", "--bundle", b.dir.to_str().unwrap(), &id]);
        let o = ctx.delete_force(&id);
        assert_eq!(o.code, 0, "{point}: delete -f after the crash: {o}");
        ctx.assert_nothing_left(&snap, &b, &id);
        // The id is free again.
        ctx.create(&mut b, &id).ok();
        ctx.delete_force(&id);
        ctx.assert_nothing_left(&snap, &b, &id);
    }
    // start, killed before it released the init: the container stays created, can start.
    {
        let mut b = ctx.bundle();
        b.args(&["sleep", "1000"]);
        let id = ctx.id("start");
        let snap = ctx.snapshot(&b);
        ctx.create(&mut b, &id).ok();
        crash(&ctx, "runtime.start.before-exec-fifo", &["start", &id]);
        assert_eq!(ctx.status(&id).as_deref(), Some("created"));
        ctx.start(&id).ok();
        assert_eq!(ctx.status(&id).as_deref(), Some("running"));
        ctx.delete_force(&id);
        ctx.assert_nothing_left(&snap, &b, &id);
    }
    // exec, killed once its process exists: the container runs on, delete -f takes both.
    {
        let mut b = ctx.bundle();
        b.args(&["sleep", "1000"]);
        let id = ctx.id("exec");
        let snap = ctx.snapshot(&b);
        ctx.run_detached(&mut b, &id);
        crash(&ctx, "runtime.exec.spawned", &["exec", &id, "sleep", "999"]);
        assert_eq!(ctx.status(&id).as_deref(), Some("running"));
        ctx.cmd(&["exec", &id, "true"]).ok();
        ctx.delete_force(&id).ok();
        ctx.assert_nothing_left(&snap, &b, &id);
    }
    // delete, killed after killing the processes and after removing the cgroup.
    for point in ["runtime.delete.killed", "runtime.delete.cgroup-removed"] {
        let mut b = ctx.bundle();
        b.args(&["sleep", "1000"]);
        let id = ctx.id("delete");
        let snap = ctx.snapshot(&b);
        ctx.run_detached(&mut b, &id);
        crash(&ctx, point, &["delete", "-f", &id]);
        let o = ctx.delete_force(&id);
        assert_eq!(o.code, 0, "{point}: delete -f after the crash: {o}");
        ctx.assert_nothing_left(&snap, &b, &id);
    }
}
