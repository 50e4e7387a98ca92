//! `state`, `list` and `--pid-file`.

use crate::common::*;
use serde_json::Value;
use std::fs;
use std::time::Duration;

fn canon(p: &std::path::Path) -> String {
    fs::canonicalize(p).unwrap().to_string_lossy().into_owned()
}

#[test]
fn state_created_fields() {
    let ctx = Ctx::new("statecreated");
    let mut b = ctx.bundle();
    b.args(&["sleep", "100"]);
    let id = ctx.id("st");
    ctx.create(&mut b, &id).ok();
    let s = ctx.state(&id);
    assert_eq!(s["id"], id.as_str(), "{s}");
    assert_eq!(s["status"], "created", "{s}");
    let pid = s["pid"].as_i64().expect("pid");
    assert!(pid > 0, "{s}");
    assert!(pid_alive(pid as i32), "pid {pid} of a created container must be alive");
    assert_eq!(s["bundle"].as_str().unwrap(), canon(&b.dir), "{s}");
    assert!(s["ociVersion"].as_str().unwrap().starts_with("1."), "{s}");
}

#[test]
fn state_running_then_stopped() {
    let ctx = Ctx::new("staterun");
    let mut b = ctx.bundle();
    b.sh("while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 0");
    b.writable_root();
    let id = ctx.id("st");
    ctx.create(&mut b, &id).ok();
    ctx.start(&id).ok();
    assert_eq!(ctx.state(&id)["status"], "running");
    fs::write(b.rootfs.join("tmp/go"), "").unwrap();
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    // A stopped container still has its state until delete.
    let s = ctx.state(&id);
    assert_eq!(s["id"], id.as_str());
    ctx.delete(&id).ok();
}

#[test]
fn state_missing_container_fails_as_runc() {
    let ctx = Ctx::new("statemissing");
    let id = ctx.id("nosuch");
    let o = ctx.cmd(&["state", &id]);
    o.one_line_error(&["not exist", "no such", "not found"]);
    // runc's words exactly, which do not name the id.
    let want = if is_runc() { "msg=\"container does not exist\"" } else { "berth: container does not exist" };
    assert!(o.stderr.trim_end().ends_with(want), "{o}");
    assert!(o.stdout.trim().is_empty(), "{o}");
}

/// A container whose init died (killed from the host, not through the runtime) reads as stopped.
#[test]
fn state_dead_pid_reads_stopped() {
    let ctx = Ctx::new("statedead");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("dead");
    ctx.run_detached(&mut b, &id);
    let pid = ctx.pid(&id);
    assert_eq!(ctx.state(&id)["status"], "running");
    // SAFETY: kill(2) of the container's init, which this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    ctx.delete(&id).ok();
    assert!(ctx.status(&id).is_none());
}

/// Same for a created (never started) container whose init was killed.
#[test]
fn state_dead_created_reads_stopped() {
    let ctx = Ctx::new("statedeadcreated");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("dead");
    ctx.create(&mut b, &id).ok();
    let pid = ctx.pid(&id);
    // SAFETY: kill(2) of the container's init, which this test created.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    ctx.wait_status(&id, "stopped", Duration::from_secs(10));
    ctx.delete(&id).ok();
}

#[test]
fn state_pid_file_written_by_create() {
    let ctx = Ctx::new("pidfile");
    let mut b = ctx.bundle();
    b.args(&["sleep", "100"]);
    let id = ctx.id("pf");
    b.write_config(&id);
    ctx.track(&id);
    let pf = ctx.dir.join("container.pid");
    ctx.cmd(&["create", "--bundle", b.dir.to_str().unwrap(), "--pid-file", pf.to_str().unwrap(), &id]).ok();
    let text = fs::read_to_string(&pf).expect("pid file");
    let pid: i32 = text.trim().parse().unwrap_or_else(|_| panic!("pid file content {text:?}"));
    assert_eq!(pid, ctx.pid(&id));
}

#[test]
fn state_pid_file_written_by_run_detached() {
    let ctx = Ctx::new("pidfilerun");
    let mut b = ctx.bundle();
    b.args(&["sleep", "100"]);
    let id = ctx.id("pf");
    b.write_config(&id);
    ctx.track(&id);
    let pf = ctx.dir.join("sub").join("c.pid");
    fs::create_dir_all(pf.parent().unwrap()).unwrap();
    ctx.cmd(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), "--pid-file", pf.to_str().unwrap(), &id]).ok();
    let pid: i32 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    assert_eq!(pid, ctx.pid(&id));
    assert!(pid_alive(pid));
}

fn two_containers(ctx: &Ctx) -> (String, String, Bundle, Bundle) {
    let mut b1 = ctx.bundle();
    b1.args(&["sleep", "100"]);
    let mut b2 = ctx.bundle();
    b2.args(&["sleep", "100"]);
    let a = ctx.id("la");
    let c = ctx.id("lb");
    ctx.create(&mut b1, &a).ok();
    ctx.run_detached(&mut b2, &c);
    (a, c, b1, b2)
}

#[test]
fn state_list_json() {
    let ctx = Ctx::new("listjson");
    let (a, c, b1, _b2) = two_containers(&ctx);
    let o = ctx.cmd(&["list", "-f", "json"]);
    o.ok();
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {o}"));
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 2, "{o}");
    let ea = arr.iter().find(|e| e["id"] == a.as_str()).expect("first container listed");
    let ec = arr.iter().find(|e| e["id"] == c.as_str()).expect("second container listed");
    assert_eq!(ea["status"], "created");
    assert_eq!(ec["status"], "running");
    assert_eq!(ea["bundle"].as_str().unwrap(), canon(&b1.dir));
    assert_eq!(ea["pid"].as_i64().unwrap() as i32, ctx.pid(&a));
}

#[test]
fn state_list_table() {
    let ctx = Ctx::new("listtable");
    let (a, c, b1, _b2) = two_containers(&ctx);
    let o = ctx.cmd(&["list"]);
    o.ok();
    let lines = o.lines();
    assert_eq!(lines.len(), 3, "header and two rows: {o}");
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(&head[..4], ["ID", "PID", "STATUS", "BUNDLE"], "{o}");
    let row = lines.iter().find(|l| l.split_whitespace().next() == Some(a.as_str())).expect("row for first");
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(f[1].parse::<i32>().unwrap(), ctx.pid(&a), "{o}");
    assert_eq!(f[2], "created", "{o}");
    assert_eq!(f[3], canon(&b1.dir), "{o}");
    let row = lines.iter().find(|l| l.split_whitespace().next() == Some(c.as_str())).expect("row for second");
    assert_eq!(row.split_whitespace().nth(2), Some("running"), "{o}");
}

#[test]
fn state_list_quiet() {
    let ctx = Ctx::new("listquiet");
    let (a, c, _b1, _b2) = two_containers(&ctx);
    let o = ctx.cmd(&["list", "-q"]);
    o.ok();
    let mut got = o.lines();
    got.sort();
    let mut want = vec![a, c];
    want.sort();
    assert_eq!(got, want, "{o}");
}

#[test]
fn state_list_empty_root() {
    let ctx = Ctx::new("listempty");
    let o = ctx.cmd(&["list", "-f", "json"]);
    o.ok();
    let t = o.stdout.trim();
    // An empty list is `[]` (runc prints `null`, also accepted: no containers either way).
    assert!(t == "[]" || t == "null", "{o}");
}

/// Go's text/tabwriter as runc's `list` uses it (minwidth 12, padding 3, ' '): every cell but
/// the last padded to its column's widest cell + 3, at least 12.
fn go_tabwriter(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> =
        (0..rows[0].len() - 1).map(|c| rows.iter().map(|r| r[c].chars().count() + 3).max().unwrap().max(12)).collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            out.push_str(cell);
            if i < widths.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// `list`, `list -q` and `list --format json` print exactly runc's fields and layout (runc
/// 1.1.5 observed on the same containers: tabwriter columns, RFC 3339 times without trailing
/// zeros, JSON keys in runc's order, `null` for no containers).
#[test]
fn state_list_layout_as_runc() {
    let ctx = Ctx::new("listlayout");
    let o = ctx.cmd(&["list"]);
    o.ok();
    assert_eq!(
        o.stdout,
        go_tabwriter(&[["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from).to_vec()])
    );
    let o = ctx.cmd(&["list", "--format", "json"]);
    o.ok();
    assert_eq!(o.stdout, "null\n", "runc prints null for no containers");
    ctx.cmd(&["list", "-q"]).ok();

    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let run = ctx.id("a");
    ctx.run_detached(&mut b, &run);
    let mut b2 = ctx.bundle();
    b2.args(&["true"]);
    let stopped = ctx.id("b-longer-id");
    ctx.run_detached(&mut b2, &stopped);
    ctx.wait_status(&stopped, "stopped", Duration::from_secs(10));

    let mut ids = vec![run.clone(), stopped.clone()];
    ids.sort();
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from).to_vec()];
    for id in &ids {
        let s = ctx.state(id);
        let created = s["created"].as_str().unwrap().to_string();
        rows.push(vec![
            id.clone(),
            if s["status"] == "stopped" { "0".into() } else { s["pid"].to_string() },
            s["status"].as_str().unwrap().to_string(),
            s["bundle"].as_str().unwrap().to_string(),
            created,
            "root".into(),
        ]);
    }
    let o = ctx.cmd(&["list"]);
    o.ok();
    assert_eq!(o.stdout, go_tabwriter(&rows), "{o}");
    for r in &rows[1..] {
        // Go's RFC3339Nano: no trailing zeros in the fraction.
        assert!(r[4].ends_with('Z') && !r[4].ends_with("0Z") && !r[4].ends_with(".Z"), "{}", r[4]);
    }

    let o = ctx.cmd(&["list", "-q"]);
    o.ok();
    assert_eq!(o.lines(), ids);

    let o = ctx.cmd(&["list", "--format", "json"]);
    o.ok();
    assert_eq!(o.stdout.matches('\n').count(), 1, "one line: {o}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2, "{o}");
    for (e, id) in arr.iter().zip(&ids) {
        let s = ctx.state(id);
        assert_eq!(e["id"], id.as_str());
        for k in ["ociVersion", "status", "bundle", "rootfs", "created"] {
            assert_eq!(e[k], s[k], "{k}: {o}");
        }
        // As runc: list names the owner of the state dir; state leaves it empty for root.
        assert_eq!(e["owner"], "root", "{o}");
        assert_eq!(e["pid"], if e["status"] == "stopped" { Value::from(0) } else { s["pid"].clone() });
        let bundle = if *id == run { &b } else { &b2 };
        assert_eq!(e["rootfs"].as_str().unwrap(), canon(&bundle.rootfs), "{o}");
    }
    // runc's field order (its containerState struct); no annotations when there are none.
    let first = &o.stdout[..o.stdout.find('}').unwrap()];
    let pos: Vec<usize> =
        ["\"ociVersion\"", "\"id\"", "\"pid\"", "\"status\"", "\"bundle\"", "\"rootfs\"", "\"created\"", "\"owner\""]
            .iter()
            .map(|k| first.find(k).unwrap_or_else(|| panic!("{k} missing: {o}")))
            .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "keys out of runc's order: {o}");
    assert!(!first.contains("annotations"), "{o}");
}
