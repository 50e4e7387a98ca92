//! `berth image build`: Dockerfiles built with berth's own runtime on busybox-static images
//! made in the test; results run with `berth container run`, compared with `buildah bud
//! --layers` of the same Dockerfile (config and file tree), and the bad inputs of a build.

use crate::common::images::*;
use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub(crate) const BASE: &str = "localhost/berth-build/bb:v1";

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An engine with the busybox base image loaded as BASE; returns it and the OCI layout dir.
pub(crate) fn engine(ctx: &Ctx) -> (Eng<'_>, PathBuf) {
    let eng = Eng::new(ctx);
    let dir = ctx.tempdir("layout");
    busybox_oci_layout(ctx, &dir, "v1", Some(BASE), &ImageSpec::new(&["sh"]));
    eng.image(&["load", "-i", s(&dir)]).ok();
    (eng, dir)
}

/// `network prune` when dropped: the default network's bridge, made by the builds' RUNs, goes.
struct NetPrune<'a>(&'a Eng<'a>);

impl Drop for NetPrune<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd(&["network", "prune"]);
    }
}

/// A build context dir with these files (path, content).
pub(crate) fn context(ctx: &Ctx, files: &[(&str, &str)]) -> PathBuf {
    let d = ctx.tempdir("ctx");
    for (p, c) in files {
        let f = d.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, c).unwrap();
    }
    d
}

pub(crate) fn build(eng: &Eng, args: &[&str]) -> Out {
    let mut v = vec!["build"];
    v.extend_from_slice(args);
    eng.image(&v)
}

/// `container run --rm --network none IMAGE ARGS...` stdout.
#[track_caller]
pub(crate) fn run_in(eng: &Eng, image: &str, args: &[&str]) -> String {
    let mut v = vec!["container", "run", "--rm", "--network", "none", image];
    v.extend_from_slice(args);
    let o = eng.cmd(&v);
    o.ok();
    o.stdout
}

/// The image's config blob (history, created) from the store.
#[track_caller]
pub(crate) fn config_of(eng: &Eng, r: &str) -> Value {
    let id = eng.inspect(r)["Id"].as_str().unwrap().to_string();
    let p = eng.data.join("image/blobs/sha256").join(id.trim_start_matches("sha256:"));
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn history(cfg: &Value) -> Vec<String> {
    cfg["History"]
        .as_array()
        .or_else(|| cfg["history"].as_array())
        .map(|a| a.iter().map(|h| h["created_by"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

/// Nothing of a build left behind: no mounts under the data root, no scratch dirs, no
/// runtime state.
#[track_caller]
pub(crate) fn nothing_left(eng: &Eng) {
    let m = mounts_under(&eng.data);
    assert!(m.is_empty(), "the build left mounts: {m:?}");
    let tmp = eng.data.join("builder/tmp");
    let left = dir_entries_sorted(&tmp);
    assert!(left.is_empty(), "the build left scratch dirs in {}: {left:?}", tmp.display());
    let state: Vec<String> =
        dir_entries_sorted(&eng.ctx.root).into_iter().filter(|n| n.starts_with("berth-build-")).collect();
    assert!(state.is_empty(), "the build left runtime state: {state:?}");
}

#[test]
fn build_instructions_config_history_and_run() {
    let ctx = Ctx::new("build-basic");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let dir = context(
        &ctx,
        &[
            ("a.txt", "hello\n"),
            ("sub/f", "sub\n"),
            (
                "Dockerfile",
                "# syntax=docker/dockerfile:1\n\
                 FROM localhost/berth-build/bb:v1\n\
                 ARG GREETING=hi\n\
                 ENV A=1 B=\"two words\" \\\n    C=${GREETING:-none}\n\
                 LABEL org.example.k=\"v w\"\n\
                 WORKDIR /app\n\
                 COPY a.txt .\n\
                 COPY sub /app/sub/\n\
                 COPY --chmod=600 a.txt /app/private\n\
                 RUN echo \"$GREETING $A $B $C\" > out && rm /bin/true && mkdir -p /x/y\n\
                 RUN ip -o -4 addr show | grep -v ' lo ' | wc -l > /ifaces && grep -c nameserver /etc/resolv.conf > /ns\n\
                 USER 1000:1000\n\
                 EXPOSE 80 53/udp\n\
                 VOLUME /data\n\
                 STOPSIGNAL SIGQUIT\n\
                 HEALTHCHECK --interval=5s --retries=2 CMD test -e /app/out\n\
                 ONBUILD USER 0\n\
                 ONBUILD RUN echo triggered > /onbuild\n\
                 MAINTAINER someone\n\
                 ENTRYPOINT [\"/bin/sh\", \"-c\"]\n\
                 CMD [\"cat /app/out /app/a.txt /app/sub/f; id -u\"]\n",
            ),
        ],
    );
    build(&eng, &["-t", "built:1", "--label", "from-cli=yes", s(&dir)]).ok();
    let img = eng.inspect("built:1");
    let c = &img["Config"];
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["StopSignal"], "SIGQUIT");
    let env: Vec<&str> = c["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"A=1") && env.contains(&"B=two words") && env.contains(&"C=hi"), "{env:?}");
    assert!(env.iter().all(|e| !e.starts_with("GREETING=")), "ARG leaked into Env: {env:?}");
    assert_eq!(c["Labels"]["org.example.k"], "v w");
    assert_eq!(c["Labels"]["from-cli"], "yes");
    let ports: Vec<&String> = c["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(ports, ["53/udp", "80/tcp"]);
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    let raw = config_of(&eng, "built:1");
    assert_eq!(
        raw["config"]["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "test -e /app/out"], "Interval": 5_000_000_000u64, "Retries": 2})
    );
    assert_eq!(raw["config"]["OnBuild"], serde_json::json!(["USER 0", "RUN echo triggered > /onbuild"]));
    assert_eq!(raw["author"], "someone");
    // The base layer plus WORKDIR, three COPYs and two RUNs.
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 7, "{img}");
    let h = history(&config_of(&eng, "built:1"));
    for want in [
        "ARG GREETING=hi",
        "ENV A=1 B=two words C=hi",
        "WORKDIR /app",
        "COPY a.txt . # buildkit",
        "COPY --chmod=600 a.txt /app/private # buildkit",
        "RUN |1 GREETING=hi /bin/sh -c echo \"$GREETING $A $B $C\" > out && rm /bin/true && mkdir -p /x/y # buildkit",
        "EXPOSE [53/udp 80/tcp]",
        "ENTRYPOINT [\"/bin/sh\" \"-c\"]",
    ] {
        assert!(h.iter().any(|x| x == want), "history lacks {want:?}: {h:#?}");
    }
    // Step images are kept for the cache but hidden, as docker's intermediate images.
    let ls = eng.image(&["ls"]);
    ls.ok();
    assert!(!ls.stdout.contains("<none>") && ls.stdout.contains("built"), "{ls}");
    let all = eng.image(&["ls", "-a"]);
    all.ok();
    assert!(all.stdout.matches("<none>").count() >= 4, "{all}");
    let out = run_in(&eng, "built:1", &[]);
    assert_eq!(out, "hi 1 two words hi\nhello\nsub\n1000\n");
    assert_eq!(run_in(&eng, "built:1", &["stat -c %a /app/private; test -e /bin/true || echo gone"]), "600\ngone\n");
    // RUN was on the default bridge network (an interface besides lo) with its DNS.
    assert_eq!(run_in(&eng, "built:1", &["cat /ifaces /ns"]), "1\n1\n");
    // A child image: the ONBUILD trigger runs first, SHELL changes RUN's shell, the trigger
    // is not inherited further.
    let child =
        context(&ctx, &[("Dockerfile", "FROM built:1\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo \"$0 $-\" > /shell\n")]);
    build(&eng, &["-t", "child:1", s(&child)]).ok();
    assert_eq!(run_in(&eng, "child:1", &["cat /onbuild"]), "triggered\n");
    assert!(run_in(&eng, "child:1", &["cat /shell"]).contains('e'), "SHELL [\"/bin/sh\", \"-ec\"] not used");
    assert!(config_of(&eng, "child:1")["config"].get("OnBuild").is_none());
    nothing_left(&eng);
}

#[test]
fn build_multistage_target_and_build_args() {
    let ctx = Ctx::new("build-stages");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let dir = context(
        &ctx,
        &[(
            "Dockerfile",
            "ARG BASE=localhost/berth-build/bb:v1\n\
             FROM ${BASE} AS base\n\
             RUN echo base > /base\n\
             FROM base AS never\n\
             RUN echo this stage is not needed; exit 1\n\
             FROM base AS builder\n\
             ARG VERSION=1\n\
             RUN echo \"v$VERSION\" > /version\n\
             FROM localhost/berth-build/bb:v1\n\
             COPY --from=builder /version /from-builder\n\
             COPY --from=0 /base /from-base\n\
             CMD [\"cat\", \"/from-builder\", \"/from-base\"]\n",
        )],
    );
    let o = build(&eng, &["-t", "multi:1", "--build-arg", "VERSION=2", s(&dir)]);
    o.ok();
    assert!(!o.stderr.contains("not needed"), "a stage the target does not need ran: {o}");
    assert_eq!(run_in(&eng, "multi:1", &[]), "v2\nbase\n");
    build(&eng, &["-t", "multi:builder", "--target", "builder", s(&dir)]).ok();
    assert_eq!(run_in(&eng, "multi:builder", &["cat", "/version", "/base", "/etc/image-marker"]), "v1\nbase\nv1\n");
    // --build-arg changing the base version of a FROM: another base, the steps on it rerun.
    let l2 = ctx.tempdir("layout2");
    busybox_oci_layout(&ctx, &l2, "v2", Some("localhost/berth-build/bb:v2"), &ImageSpec::new(&["sh"]));
    eng.image(&["load", "-i", s(&l2)]).ok();
    let o = build(
        &eng,
        &["-t", "multi:v2", "--target", "builder", "--build-arg", "BASE=localhost/berth-build/bb:v2", s(&dir)],
    );
    o.ok();
    assert_eq!(o.stderr.matches("CACHED").count(), 0, "{o}");
    assert_eq!(run_in(&eng, "multi:v2", &["cat", "/etc/image-marker"]), "v2\n");
    build(&eng, &["-q", "--target", "nosuchstage", s(&dir)]).one_line_error(&["nosuchstage"]);
    nothing_left(&eng);
}

#[test]
fn build_cache_reuses_steps_before_the_changed_file() {
    let ctx = Ctx::new("build-cache");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let dir = context(
        &ctx,
        &[
            ("deps.txt", "dep 1\n"),
            ("src.txt", "src 1\n"),
            (
                "Dockerfile",
                "FROM localhost/berth-build/bb:v1\n\
                 COPY deps.txt /deps.txt\n\
                 RUN cat /proc/sys/kernel/random/uuid > /stamp-deps\n\
                 COPY src.txt /src.txt\n\
                 RUN cat /proc/sys/kernel/random/uuid > /stamp-src\n",
            ),
        ],
    );
    let stamps = |t: &str| run_in(&eng, t, &["cat", "/stamp-deps", "/stamp-src"]);
    let first = build(&eng, &["-t", "c:1", s(&dir)]);
    first.ok();
    assert_eq!(first.stderr.matches("CACHED").count(), 0, "{first}");
    let s1 = stamps("c:1");
    // Nothing changed: every step cached, the same image. A touched file (new mtime, same
    // content) does not break the cache.
    let t = fs::File::options().append(true).open(dir.join("deps.txt")).unwrap();
    t.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
    let again = build(&eng, &["-t", "c:2", s(&dir)]);
    again.ok();
    assert_eq!(again.stderr.matches("CACHED").count(), 4, "{again}");
    assert_eq!(eng.inspect("c:1")["Id"], eng.inspect("c:2")["Id"]);
    // One source file edited: the steps before its COPY are reused, the rest run again.
    fs::write(dir.join("src.txt"), "src 2\n").unwrap();
    let edit = build(&eng, &["-t", "c:3", s(&dir)]);
    edit.ok();
    assert_eq!(edit.stderr.matches("CACHED").count(), 2, "{edit}");
    let s3 = stamps("c:3");
    let (a1, b1) = s1.split_once('\n').unwrap();
    let (a3, b3) = s3.split_once('\n').unwrap();
    assert_eq!(a1, a3, "the RUN before the changed COPY ran again");
    assert_ne!(b1, b3, "the RUN after the changed COPY was reused");
    assert_eq!(run_in(&eng, "c:3", &["cat", "/src.txt"]), "src 2\n");
    // --no-cache runs everything.
    let nc = build(&eng, &["--no-cache", "-t", "c:4", s(&dir)]);
    nc.ok();
    assert_eq!(nc.stderr.matches("CACHED").count(), 0, "{nc}");
    assert_ne!(stamps("c:4").split_once('\n').unwrap().0, a1);
    nothing_left(&eng);
}

#[test]
fn build_cache_mounts_heredocs_and_secrets() {
    let ctx = Ctx::new("build-mounts");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let secret = ctx.dir.join("token");
    fs::write(&secret, "s3cr3t").unwrap();
    let dir = context(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/berth-build/bb:v1\n\
             RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /runs\n\
             RUN --mount=type=secret,id=token cat /run/secrets/token > /secret-copy-len && wc -c < /run/secrets/token > /secret-len && rm /secret-copy-len\n\
             RUN <<EOF\n\
             echo one > /heredoc\n\
             echo two >> /heredoc\n\
             EOF\n\
             COPY <<-EOT /etc/greeting\n\
             \thello $HOSTNAME_UNSET-x\n\
             \t\"q\" '$HOSTNAME_UNSET'\n\
             \tEOT\n\
             RUN cat <<EOF > /inline\n\
             inline text\n\
             EOF\n",
        )],
    );
    let sec = format!("id=token,src={}", s(&secret));
    build(&eng, &["--no-cache", "--secret", &sec, "-t", "m:1", s(&dir)]).ok();
    build(&eng, &["--no-cache", "--secret", &sec, "-t", "m:2", s(&dir)]).ok();
    assert_eq!(run_in(&eng, "m:1", &["cat", "/runs"]).trim(), "1");
    assert_eq!(run_in(&eng, "m:2", &["cat", "/runs"]).trim(), "2", "the cache mount did not keep its content");
    assert_eq!(run_in(&eng, "m:2", &["sh", "-c", "test -e /cache/log && echo in-image || echo absent"]), "absent\n");
    assert_eq!(run_in(&eng, "m:2", &["cat", "/secret-len"]).trim(), "6");
    assert_eq!(
        run_in(&eng, "m:2", &["sh", "-c", "test -e /run/secrets/token && echo leaked || echo absent"]),
        "absent\n"
    );
    assert_eq!(
        run_in(&eng, "m:2", &["cat", "/heredoc", "/etc/greeting", "/inline"]),
        "one\ntwo\nhello -x\n\"q\" ''\ninline text\n"
    );
    // A required secret that is not given.
    let d2 = context(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/berth-build/bb:v1\nRUN --mount=type=secret,id=nope,required cat /run/secrets/nope\n",
        )],
    );
    build(&eng, &["-q", s(&d2)]).one_line_error(&["secret nope"]);
    nothing_left(&eng);
}

#[test]
fn build_dockerignore_and_context_escapes() {
    let ctx = Ctx::new("build-ignore");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let dir = context(
        &ctx,
        &[
            ("keep/a", "a"),
            ("keep/b.log", "b"),
            ("keep/important.log", "i"),
            ("secret.env", "x"),
            ("node_modules/m/index.js", "m"),
            (".dockerignore", "# comment\n**/*.log\n!keep/important.log\nsecret.env\nnode_modules\n"),
            ("Dockerfile", "FROM localhost/berth-build/bb:v1\nCOPY . /ctx/\n"),
            ("docker/Special.Dockerfile", "FROM localhost/berth-build/bb:v1\nCOPY . /ctx/\n"),
            ("docker/Special.Dockerfile.dockerignore", "*\n!keep/a\n"),
        ],
    );
    // <Dockerfile>.dockerignore next to the Dockerfile wins over the context's.
    build(&eng, &["-t", "ig:special", "-f", s(&dir.join("docker/Special.Dockerfile")), s(&dir)]).ok();
    assert_eq!(run_in(&eng, "ig:special", &["find", "/ctx", "-type", "f"]), "/ctx/keep/a\n");
    build(&eng, &["-t", "ig:1", s(&dir)]).ok();
    let files = run_in(&eng, "ig:1", &["find", "/ctx", "-type", "f"]);
    let mut got: Vec<&str> = files.lines().collect();
    got.sort();
    assert_eq!(
        got,
        [
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/docker/Special.Dockerfile",
            "/ctx/docker/Special.Dockerfile.dockerignore",
            "/ctx/keep/a",
            "/ctx/keep/important.log"
        ]
    );

    // Sources outside the context: through `..`, through a symlink, missing, excluded.
    let outside = ctx.dir.join("outside.txt");
    fs::write(&outside, "outside").unwrap();
    let bad = context(&ctx, &[("ok", "ok")]);
    std::os::unix::fs::symlink(&outside, bad.join("link-out")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", bad.join("rel-out")).unwrap();
    fs::write(bad.join(".dockerignore"), "ok\n").unwrap();
    let before = eng.store_snapshot();
    for (src, words) in [
        ("../outside.txt", &["../outside.txt", "outside the build context"][..]),
        ("link-out", &["link-out"][..]),
        ("rel-out", &["rel-out"][..]),
        ("missing.txt", &["missing.txt"][..]),
        ("ok", &["ok", "dockerignore"][..]),
    ] {
        fs::write(bad.join("Dockerfile"), format!("FROM localhost/berth-build/bb:v1\nRUN echo step\nCOPY {src} /x\n"))
            .unwrap();
        let o = build(&eng, &["-q", "--no-cache", s(&bad)]);
        o.one_line_error(words);
        assert!(o.stderr.contains("Dockerfile:3"), "the error must name the file and line: {o}");
        nothing_left(&eng);
    }
    let after = eng.store_snapshot();
    // The default network's files (made by the first RUN, as docker's default bridge) stay.
    let added: Vec<&String> = after
        .0
        .iter()
        .filter(|p| !before.0.contains(p) && !p.contains("builder/") && !p.contains(" network"))
        .collect();
    // The RUN before the failing COPY may be committed (it succeeded); nothing else is.
    assert!(
        added.iter().all(|p| p.contains("image/blobs") || p.contains("image/snapshots") || p.contains("image/index")),
        "{added:?}"
    );
}

#[test]
fn build_bad_input_is_named_and_leaves_nothing() {
    let ctx = Ctx::new("build-bad");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let cases: &[(&str, &[&str])] = &[
        ("FROM localhost/berth-build/bb:v1\nFROBNICATE x\n", &["Dockerfile:2", "unknown instruction: FROBNICATE"]),
        ("FROM localhost/berth-build/bb:v1\nRUN <<EOF\necho never closed\n", &["line 2", "unterminated heredoc"]),
        ("# escape=x\nFROM scratch\n", &["invalid escape token"]),
        ("RUN echo before from\n", &["before the first FROM"]),
        ("FROM localhost/berth-build/bb:v1\nCMD [\"a\", 1]\n", &["must be comprised of strings"]),
        ("FROM localhost/berth-build/bb:v1\nCOPY --bogus=1 a b\n", &["unknown flag: --bogus"]),
        ("FROM localhost/berth-build/bb:v1\nEXPOSE 99999\n", &["invalid port"]),
        ("FROM --platform=linux/s390x localhost/berth-build/bb:v1\n", &["s390x"]),
        ("FROM localhost/berth-build/bb:v1\nENV A=${B:?needs-B}\n", &["needs-B"]),
    ];
    let before = eng.store_snapshot();
    for (df, words) in cases {
        let dir = context(&ctx, &[("Dockerfile", df)]);
        build(&eng, &["-q", s(&dir)]).one_line_error(words);
    }
    eng.assert_store_unchanged(&before, "bad Dockerfiles");
    // A failing RUN: its exit code and the step, exit 1, nothing left behind.
    let dir =
        context(&ctx, &[("Dockerfile", "FROM localhost/berth-build/bb:v1\nRUN echo ok\nRUN echo failing; exit 3\n")]);
    let o = build(&eng, &["-q", s(&dir)]);
    o.one_line_error(&["exit code: 3"]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("Dockerfile:3") && o.stderr.contains("RUN echo failing; exit 3"), "{o}");
    nothing_left(&eng);
    // Killed mid-RUN: the build stops, its container, mounts and scratch dirs are gone.
    let dir = context(&ctx, &[("Dockerfile", "FROM localhost/berth-build/bb:v1\nRUN sleep 30\n")]);
    let bg = eng.spawn_image(&["build", "-q", s(&dir)]);
    let t0 = std::time::Instant::now();
    while !find_named(&eng.data.join("builder/tmp"), "bundle").iter().any(|p| p.join("config.json").exists()) {
        assert!(t0.elapsed().as_secs() < 60, "the RUN did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SIGINT to the build process the test started.
    let _ = Command::new("kill").args(["-INT", &bg.pid().to_string()]).status();
    let o = bg.wait(std::time::Duration::from_secs(60));
    o.fails();
    assert!(o.elapsed.as_secs() < 25, "the build did not stop at the signal: {o}");
    nothing_left(&eng);
    // Killed outright (SIGKILL) mid-RUN: the next build removes its container, network
    // sandbox, mounts and scratch dir.
    let bg = eng.spawn_image(&["build", "-q", "--no-cache", s(&dir)]);
    let t0 = std::time::Instant::now();
    while !find_named(&eng.data.join("builder/tmp"), "bundle").iter().any(|p| p.join("config.json").exists()) {
        assert!(t0.elapsed().as_secs() < 60, "the RUN did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = Command::new("kill").args(["-KILL", &bg.pid().to_string()]).status();
    bg.wait(std::time::Duration::from_secs(30)).fails();
    let ok = context(&ctx, &[("Dockerfile", "FROM localhost/berth-build/bb:v1\nRUN true\n")]);
    build(&eng, &["-q", s(&ok)]).ok();
    nothing_left(&eng);
}

#[test]
fn build_source_date_epoch_gives_the_same_digest() {
    let ctx = Ctx::new("build-epoch");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let dir = context(
        &ctx,
        &[
            ("f", "content\n"),
            ("Dockerfile", "FROM localhost/berth-build/bb:v1\nCOPY f /f\nRUN echo made > /made && mkdir /d\nENV X=1\n"),
        ],
    );
    let iid1 = ctx.dir.join("iid1");
    let iid2 = ctx.dir.join("iid2");
    build(&eng, &["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000", "--iidfile", s(&iid1), s(&dir)]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build(&eng, &["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000", "--iidfile", s(&iid2), s(&dir)]).ok();
    let (a, b) = (fs::read_to_string(&iid1).unwrap(), fs::read_to_string(&iid2).unwrap());
    assert!(a.starts_with("sha256:") && a.len() == 71, "iidfile: {a:?}");
    assert_eq!(a, b, "the same Dockerfile and context with SOURCE_DATE_EPOCH gave two digests");
    let cfg = config_of(&eng, &a);
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
    // Without it the times differ, and so does the digest.
    let iid3 = ctx.dir.join("iid3");
    build(&eng, &["--no-cache", "--iidfile", s(&iid3), s(&dir)]).ok();
    assert_ne!(fs::read_to_string(&iid3).unwrap(), a);
}

/// The extended attributes of a path (not following a symlink), sorted: "name=hex(value)".
fn xattrs(p: &Path) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: valid C string and buffer of the given length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names[..n as usize].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 4096];
        // SAFETY: valid C strings and buffer of the given length.
        let k = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        let val: String = v[..k.max(0) as usize].iter().map(|b| format!("{b:02x}")).collect();
        out.push(format!("{}={val}", String::from_utf8_lossy(name)));
    }
    out.sort();
    out
}

/// (type, mode, uid, gid, size, content or link target, xattrs) of every path under `root`.
pub(crate) fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("l {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                stack.push(p.clone());
                "d".to_string()
            } else if ft.is_file() {
                format!("f {}", sha256_bytes(&fs::read(&p).unwrap()))
            } else {
                format!("other {:o}", m.mode())
            };
            out.insert(
                rel,
                format!("{what} {:o} {}:{} {:?}", m.permissions().mode() & 0o7777, m.uid(), m.gid(), xattrs(&p)),
            );
        }
    }
    out
}

#[test]
fn build_matches_buildah_bud() {
    if Command::new("buildah").arg("--version").stdout(Stdio::null()).status().is_err() {
        panic!("buildah is not installed (apt-get install -y buildah)");
    }
    let ctx = Ctx::new("build-buildah");
    let (eng, layout) = engine(&ctx);
    let _np = NetPrune(&eng);
    let dir = context(
        &ctx,
        &[
            ("app/main.sh", "#!/bin/sh\necho main\n"),
            ("app/lib/x.txt", "x\n"),
            ("conf", "c=1\n"),
            (
                "Dockerfile",
                "FROM localhost/berth-build/bb:v1 AS build\n\
                 RUN mkdir -p /out && echo built > /out/artifact && ln -s artifact /out/link\n\
                 FROM localhost/berth-build/bb:v1\n\
                 ARG V=1\n\
                 ENV APP=/srv/app V=$V\n\
                 WORKDIR /srv/app\n\
                 COPY app/ ./\n\
                 COPY --chown=1000:1000 conf /etc/app.conf\n\
                 COPY --from=build /out /opt/out\n\
                 RUN chmod 755 main.sh && rm -f /bin/true && mkdir -p /var/empty && echo v$V > /srv/version\n\
                 USER 1000\n\
                 EXPOSE 8080\n\
                 LABEL k=v\n\
                 ENTRYPOINT [\"./main.sh\"]\n\
                 CMD [\"--flag\"]\n",
            ),
        ],
    );
    // An extended attribute on a context file (COPY keeps it, as buildah's COPY does).
    {
        use std::os::unix::ffi::OsStrExt;
        let f = std::ffi::CString::new(dir.join("app/lib/x.txt").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C strings and a 5-byte value.
        let r = unsafe { libc::setxattr(f.as_ptr(), c"user.berth-test".as_ptr(), b"value".as_ptr().cast(), 5, 0) };
        assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
    }
    build(&eng, &["-t", "cmp:1", s(&dir)]).ok();
    // buildah with its own storage, the same base from the same OCI layout.
    let bs = ctx.tempdir("buildah");
    let ba = |args: &[&str]| -> String {
        let mut c = Command::new("buildah");
        c.args(["--root", s(&bs.join("root")), "--runroot", s(&bs.join("run")), "--storage-driver", "vfs"]).args(args);
        let o = c.output().unwrap();
        assert!(o.status.success(), "buildah {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let loc = format!("oci:{}:v1", s(&layout));
    let pulled = ba(&["pull", "-q", &loc]);
    ba(&["tag", pulled.trim(), BASE]);
    ba(&[
        "bud",
        "--layers",
        "--runtime",
        "/usr/sbin/runc",
        "--network",
        "host",
        "-t",
        "cmp:1",
        "-f",
        s(&dir.join("Dockerfile")),
        s(&dir),
    ]);
    let bcfg: Value = serde_json::from_str(&ba(&["inspect", "--type", "image", "cmp:1"])).unwrap();
    let bc = &bcfg["OCIv1"]["config"];
    let ours = config_of(&eng, "cmp:1");
    let oc = &ours["config"];
    for k in ["Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts"] {
        assert_eq!(oc[k], bc[k], "config {k}: berth {} buildah {}", oc[k], bc[k]);
    }
    assert_eq!(oc["Labels"]["k"], bc["Labels"]["k"]);
    // The file trees.
    let ours_root = ctx.dir.join("ours");
    eng.image(&["unpack", "cmp:1", s(&ours_root)]).ok();
    let cont = ba(&["from", "--pull-never", "cmp:1"]).trim().to_string();
    let mnt = PathBuf::from(ba(&["mount", &cont]).trim());
    let a = tree(&ours_root.join("rootfs"));
    let b = tree(&mnt);
    ba(&["umount", &cont]);
    ba(&["rm", &cont]);
    // buildah leaves the mount points it made for a RUN (empty /etc/hosts, /etc/hostname,
    // /etc/resolv.conf, and /run) in the layer; docker's builder does not, nor does berth.
    let buildah_only = ["etc/hostname", "etc/hosts", "etc/resolv.conf", "run"];
    for k in buildah_only {
        assert!(!a.contains_key(k), "berth left the mount point {k} in the image");
    }
    let keys: std::collections::BTreeSet<&String> =
        a.keys().chain(b.keys()).filter(|k| !buildah_only.contains(&k.as_str())).collect();
    let mut diffs = Vec::new();
    for k in keys {
        if a.get(k) != b.get(k) {
            diffs.push(format!("{k}: berth {:?} buildah {:?}", a.get(k), b.get(k)));
        }
    }
    assert!(diffs.is_empty(), "file trees differ:\n{}", diffs.join("\n"));
    assert!(a.contains_key("opt/out/link") && a.contains_key("srv/app/lib/x.txt") && !a.contains_key("bin/true"));
    assert!(a["srv/app/lib/x.txt"].contains("user.berth-test"), "COPY dropped the xattr: {}", a["srv/app/lib/x.txt"]);
    let _ = Command::new("rm").arg("-rf").arg(&bs).status();
}

#[test]
fn build_stdin_context_add_tar_quiet_and_prune() {
    let ctx = Ctx::new("build-stdin");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    // A context as a tar on stdin, holding a tar that ADD unpacks.
    let inner_src = context(&ctx, &[("pkg/bin/tool", "#!/bin/sh\necho tool\n"), ("pkg/README", "r\n")]);
    let dir = context(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/berth-build/bb:v1\nADD pkg.tar.gz /opt/\nADD plain.txt /opt/plain\nCOPY --chown=12:34 plain.txt /owned\n",
        )],
    );
    fs::write(dir.join("plain.txt"), "plain\n").unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&inner_src)
        .args(["-czf"])
        .arg(dir.join("pkg.tar.gz"))
        .arg("pkg")
        .status()
        .unwrap();
    assert!(st.success());
    let ctx_tar = ctx.dir.join("ctx.tar");
    tar_dir(&dir, &ctx_tar);
    let mut c = eng.command(&["image", "build", "-q", "-t", "stdin:1", "-"]);
    c.stdin(fs::File::open(&ctx_tar).unwrap());
    let o = ctx.exec_cmd(c, IMAGE_TIMEOUT);
    o.ok();
    let id = eng.inspect("stdin:1")["Id"].as_str().unwrap().to_string();
    assert_eq!(o.stdout.trim(), id, "-q prints the image id alone: {o}");
    assert_eq!(o.stderr.trim(), "", "-q prints no progress: {o}");
    assert_eq!(run_in(&eng, "stdin:1", &["cat", "/opt/pkg/README", "/opt/plain"]), "r\nplain\n");
    assert_eq!(run_in(&eng, "stdin:1", &["stat", "-c", "%u:%g", "/owned"]), "12:34\n");
    // The Dockerfile on stdin, the context a directory.
    let mut c = eng.command(&["image", "build", "-q", "-t", "stdin:2", "-f", "-", s(&dir)]);
    c.stdin(
        fs::File::open({
            let p = ctx.dir.join("df");
            fs::write(&p, "FROM localhost/berth-build/bb:v1\nCOPY plain.txt /from-stdin-df\n").unwrap();
            p
        })
        .unwrap(),
    );
    ctx.exec_cmd(c, IMAGE_TIMEOUT).ok();
    assert_eq!(run_in(&eng, "stdin:2", &["cat", "/from-stdin-df"]), "plain\n");
    // system df counts the cached steps as the build cache; builder prune: the cache is gone,
    // the next build runs every step, named images stay.
    let cache_row = |eng: &Eng<'_>| {
        let o = eng.cmd(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]);
        o.ok();
        o.lines().into_iter().find(|l| l.starts_with("Build Cache=")).unwrap_or_default()
    };
    let before = cache_row(&eng);
    assert!(before != "Build Cache=0" && !before.is_empty(), "cached steps counted: {before}");
    let o = eng.cmd(&["builder", "prune", "-f"]);
    o.ok();
    assert!(o.stdout.contains("Total reclaimed space"), "{o}");
    assert_eq!(cache_row(&eng), "Build Cache=0");
    let again = build(&eng, &["-t", "stdin:3", "-f", s(&dir.join("Dockerfile")), s(&dir)]);
    again.ok();
    assert_eq!(again.stderr.matches("CACHED").count(), 0, "{again}");
    eng.inspect("stdin:1");
    nothing_left(&eng);
}

#[test]
fn build_add_url_with_checksum() {
    let ctx = Ctx::new("build-add-url");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let www = ctx.tempdir("www");
    fs::write(www.join("payload.txt"), "downloaded\n").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory", s(&www)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/payload.txt");
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed().as_secs() < 20, "http.server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sum = format!("sha256:{}", sha256_bytes(b"downloaded\n"));
    let dir = context(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM localhost/berth-build/bb:v1\nADD --checksum={sum} {url} /dl/\nADD {url} /renamed\n"),
        )],
    );
    let o = build(&eng, &["-t", "url:1", s(&dir)]);
    let bad = context(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM localhost/berth-build/bb:v1\nADD --checksum=sha256:{} {url} /x\n", "0".repeat(64)),
        )],
    );
    let b = build(&eng, &["-q", s(&bad)]);
    let missing = context(&ctx, &[("Dockerfile", &format!("FROM localhost/berth-build/bb:v1\nADD {url}.nope /x\n"))]);
    let m = build(&eng, &["-q", s(&missing)]);
    let _ = server.kill();
    let _ = server.wait();
    o.ok();
    assert_eq!(run_in(&eng, "url:1", &["cat", "/dl/payload.txt", "/renamed"]), "downloaded\ndownloaded\n");
    assert_eq!(run_in(&eng, "url:1", &["stat", "-c", "%a", "/renamed"]), "600\n");
    b.one_line_error(&["checksum mismatch"]);
    m.one_line_error(&["404"]);
    nothing_left(&eng);
}

/// Stages that do not depend on each other run at the same time: each waits (up to 20 s) for
/// the other's marker in a shared cache mount, which only works when both run at once.
#[test]
fn build_independent_stages_run_in_parallel() {
    let ctx = Ctx::new("build-parallel");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/r touch /r/{me} && i=0; while [ ! -e /r/{other} ]; do i=$((i+1)); [ $i -gt 200 ] && exit 7; sleep 0.1; done; echo {me} > /{me}\n"
        )
    };
    let df = format!(
        "FROM localhost/berth-build/bb:v1 AS one\n{}FROM localhost/berth-build/bb:v1 AS two\n{}FROM localhost/berth-build/bb:v1\nCOPY --from=one /one /one\nCOPY --from=two /two /two\n",
        wait("one", "two"),
        wait("two", "one")
    );
    let dir = context(&ctx, &[("Dockerfile", &df)]);
    build(&eng, &["-t", "par:1", s(&dir)]).ok();
    assert_eq!(run_in(&eng, "par:1", &["cat", "/one", "/two"]), "one\ntwo\n");
    nothing_left(&eng);
}

/// RUN --mount=type=bind: the source's content is part of the step's cache key, and `rw`
/// writes are discarded (the context is never written).
#[test]
fn build_bind_mounts_key_the_cache_and_discard_writes() {
    let ctx = Ctx::new("build-bind");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let dir = context(
        &ctx,
        &[
            ("data/v", "1\n"),
            (
                "Dockerfile",
                "FROM localhost/berth-build/bb:v1\n\
                 RUN --mount=type=bind,source=data,target=/m cat /m/v > /seen\n\
                 RUN --mount=type=bind,target=/ctx,rw touch /ctx/written-by-run && ls /ctx > /listing\n",
            ),
        ],
    );
    build(&eng, &["-t", "bind:1", s(&dir)]).ok();
    assert_eq!(run_in(&eng, "bind:1", &["cat", "/seen"]), "1\n");
    assert!(run_in(&eng, "bind:1", &["cat", "/listing"]).contains("written-by-run"));
    assert!(!dir.join("written-by-run").exists(), "a rw bind mount wrote into the context");
    fs::write(dir.join("data/v"), "2\n").unwrap();
    let o = build(&eng, &["-t", "bind:2", s(&dir)]);
    o.ok();
    assert_eq!(run_in(&eng, "bind:2", &["cat", "/seen"]), "2\n", "a changed bind source reused the cache: {o}");
    nothing_left(&eng);
}

/// `sharing=locked` cache mounts: parallel stages use the cache one at a time (each holds a
/// directory in it for a second; at the same time the second `mkdir` would fail).
#[test]
fn build_locked_cache_mount_serialises_parallel_stages() {
    let ctx = Ctx::new("build-locked");
    let (eng, _) = engine(&ctx);
    let _np = NetPrune(&eng);
    let step = |me: &str| {
        format!(
            "FROM localhost/berth-build/bb:v1 AS {me}\nRUN --mount=type=cache,id=shared,target=/c,sharing=locked mkdir /c/busy && sleep 1 && rmdir /c/busy && echo {me} > /{me}\n"
        )
    };
    let df = format!(
        "{}{}FROM localhost/berth-build/bb:v1\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        step("a"),
        step("b")
    );
    let dir = context(&ctx, &[("Dockerfile", &df)]);
    build(&eng, &["-t", "locked:1", s(&dir)]).ok();
    assert_eq!(run_in(&eng, "locked:1", &["cat", "/a", "/b"]), "a\nb\n");
    nothing_left(&eng);
}

/// `COPY --parents` (dockerfile 1.7 labs, docker's rules): each source keeps its path below
/// the context under the destination directory, or its path below a `/./` pivot; a directory
/// source keeps its own name; a destination that is not a directory is refused in one line.
#[test]
fn build_copy_parents() {
    let ctx = Ctx::new("build-parents");
    let eng = Eng::new(&ctx);
    let files = [
        ("x/a.txt", "xa\n"),
        ("y/a.txt", "ya\n"),
        ("x/sub/b.txt", "xb\n"),
        ("p/q/r.txt", "r\n"),
        (
            "Dockerfile",
            "# syntax=docker/dockerfile:1.7-labs\nFROM scratch\nCOPY --parents ./x/a.txt y/*.txt /out/\n\
             COPY --parents x/sub /dirs/\nCOPY --parents ./p/./q/r.txt /pivot/\nCOPY x/a.txt /plain/\n",
        ),
    ];
    let d = context(&ctx, &files);
    build(&eng, &["-q", "-t", "localhost/berth-test/parents:v1", s(&d)]).ok();
    let out = ctx.dir.join("parents-flat");
    eng.image(&["unpack", "localhost/berth-test/parents:v1", s(&out)]).ok();
    let r = out.join("rootfs");
    let got: Vec<String> = walk_tree(&r).0.keys().cloned().collect();
    let want = [
        "dirs",
        "dirs/x",
        "dirs/x/sub",
        "dirs/x/sub/b.txt",
        "out",
        "out/x",
        "out/x/a.txt",
        "out/y",
        "out/y/a.txt",
        "pivot",
        "pivot/q",
        "pivot/q/r.txt",
        "plain",
        "plain/a.txt",
    ];
    assert_eq!(got, want, "the tree --parents made");
    assert_eq!(fs::read_to_string(r.join("out/y/a.txt")).unwrap(), "ya\n");
    assert_eq!(fs::read_to_string(r.join("dirs/x/sub/b.txt")).unwrap(), "xb\n");
    // The destination must be a directory.
    let bad = context(&ctx, &[("a.txt", "a\n"), ("Dockerfile", "FROM scratch\nCOPY --parents a.txt /file\n")]);
    let before = eng.store_snapshot();
    build(&eng, &["-q", s(&bad)]).one_line_error(&["Dockerfile:2", "--parents", "directory"]);
    eng.assert_store_unchanged(&before, "refused COPY --parents");
}

/// A foreground `ssh-agent -D -a SOCK`, killed by pid when dropped.
struct Agent {
    child: std::process::Child,
    sock: PathBuf,
}

impl Agent {
    fn start(ctx: &Ctx, name: &str) -> Agent {
        let sock = ctx.dir.join(format!("{name}.sock"));
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client)");
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(sock.exists(), "ssh-agent made no socket at {}", sock.display());
        Agent { child, sock }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // By the pid this test spawned.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A static program that asks the agent at $SSH_AUTH_SOCK for its identities (the agent
/// protocol's REQUEST_IDENTITIES) and prints their count and comments.
fn agent_query_helper(ctx: &Ctx, out: &Path) {
    let src = ctx.dir.join("agentq.c");
    fs::write(
        &src,
        r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
static int rd(int s, unsigned char *b, size_t n) {
    size_t got = 0;
    while (got < n) { ssize_t r = read(s, b + got, n - got); if (r <= 0) return -1; got += r; }
    return 0;
}
static unsigned u32(const unsigned char *p) { return (p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
int main(void) {
    const char *path = getenv("SSH_AUTH_SOCK");
    if (!path) { printf("no SSH_AUTH_SOCK\n"); return 1; }
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }
    unsigned char req[5] = {0, 0, 0, 1, 11};
    if (write(s, req, 5) != 5) { perror("write"); return 1; }
    unsigned char h[4];
    if (rd(s, h, 4)) { printf("short answer\n"); return 1; }
    unsigned n = u32(h);
    unsigned char *b = malloc(n);
    if (!b || rd(s, b, n) || b[0] != 12) { printf("bad answer\n"); return 1; }
    unsigned keys = u32(b + 1), off = 5;
    printf("keys %u\n", keys);
    for (unsigned i = 0; i < keys; i++) {
        off += 4 + u32(b + off);
        unsigned cl = u32(b + off);
        printf("%.*s\n", (int)cl, (char *)b + off + 4);
        off += 4 + cl;
    }
    return 0;
}
"#,
    )
    .unwrap();
    tool(Command::new("gcc").args(["-static", "-O2", "-o"]).arg(out).arg(&src));
}

#[test]
fn build_ssh_mount_forwards_the_agent() {
    let ctx = Ctx::new("build-ssh");
    let (eng, _) = engine(&ctx);
    let key = ctx.dir.join("id_test");
    tool(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "berth-ssh-test-key", "-f"]).arg(&key),
    );
    let agent = Agent::start(&ctx, "agent");
    tool(Command::new("ssh-add").arg(&key).env("SSH_AUTH_SOCK", &agent.sock));
    let empty = Agent::start(&ctx, "empty");
    let dir = context(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/berth-build/bb:v1\n\
             RUN --mount=type=ssh --mount=type=bind,source=agentq,target=/agentq /agentq > /keys && echo \"$SSH_AUTH_SOCK\" > /sock && ls -ln \"$SSH_AUTH_SOCK\" | cut -c1-10 > /sockmode\n\
             RUN --mount=type=ssh,id=work,target=/tmp/a.sock,uid=1000,gid=1001,mode=0660 --mount=type=bind,source=agentq,target=/agentq stat -c '%u %g %a' /tmp/a.sock > /st2 && echo \"$SSH_AUTH_SOCK\" > /sock2 && /agentq > /keys2\n\
             RUN --mount=type=ssh,id=absent echo \"${SSH_AUTH_SOCK:-unset}\" > /sock3\n\
             RUN --mount=type=ssh,id=keyed --mount=type=bind,source=agentq,target=/agentq /agentq > /keys4\n",
        )],
    );
    // `--ssh keyed=KEYFILE`: an agent of the build's own holding that key.
    let keyed = format!("keyed={}", s(&key));
    agent_query_helper(&ctx, &dir.join("agentq"));
    // `--ssh default` takes $SSH_AUTH_SOCK; `work` names a socket.
    let work = format!("work={}", s(&empty.sock));
    let mut c2 = eng.command(&[
        "image",
        "build",
        "--network",
        "none",
        "--ssh",
        "default",
        "--ssh",
        &work,
        "--ssh",
        &keyed,
        "-q",
        "-t",
        "ssh:1",
        s(&dir),
    ]);
    c2.env("SSH_AUTH_SOCK", &agent.sock);
    let o = ctx.exec_cmd(c2, std::time::Duration::from_secs(120));
    o.ok();
    assert_eq!(run_in(&eng, "ssh:1", &["cat", "/keys"]), "keys 1\nberth-ssh-test-key\n");
    assert_eq!(run_in(&eng, "ssh:1", &["cat", "/sock"]), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(run_in(&eng, "ssh:1", &["cat", "/sockmode"]), "srw-------\n");
    assert_eq!(run_in(&eng, "ssh:1", &["cat", "/st2"]), "1000 1001 660\n");
    assert_eq!(run_in(&eng, "ssh:1", &["cat", "/sock2"]), "/tmp/a.sock\n");
    assert_eq!(run_in(&eng, "ssh:1", &["cat", "/keys2"]), "keys 0\n", "id=work must reach the second agent");
    assert_eq!(run_in(&eng, "ssh:1", &["cat", "/keys4"]), "keys 1\nberth-ssh-test-key\n", "the key file's agent");
    // An optional mount of an id not given: no socket, no SSH_AUTH_SOCK.
    assert_eq!(run_in(&eng, "ssh:1", &["cat", "/sock3"]), "unset\n");
    assert_eq!(
        run_in(
            &eng,
            "ssh:1",
            &["sh", "-c", "ls -a /run/buildkit /tmp/a.sock 2>&1; test -e /run/buildkit && echo left || echo absent"]
        )
        .lines()
        .last(),
        Some("absent"),
        "the ssh mount's socket must not be in the layer"
    );
    // The agent is not in the cache key: another agent gives every step from the cache.
    let id1 = eng.inspect("ssh:1")["Id"].as_str().unwrap().to_string();
    let mut c3 = eng.command(&[
        "image",
        "build",
        "--network",
        "none",
        "--ssh",
        &format!("default={}", s(&empty.sock)),
        "--ssh",
        &work,
        "--ssh",
        &keyed,
        "-q",
        "-t",
        "ssh:2",
        s(&dir),
    ]);
    c3.env_remove("SSH_AUTH_SOCK");
    ctx.exec_cmd(c3, std::time::Duration::from_secs(120)).ok();
    assert_eq!(eng.inspect("ssh:2")["Id"].as_str().unwrap(), id1);
    // A required mount whose id is not given: one line naming the id, nothing left.
    let d2 = context(
        &ctx,
        &[("Dockerfile", "FROM localhost/berth-build/bb:v1\nRUN --mount=type=ssh,id=deploykey,required=true true\n")],
    );
    build(&eng, &["--network", "none", "-q", s(&d2)]).one_line_error(&["deploykey"]);
    // `--ssh default` without SSH_AUTH_SOCK, and a socket that is not one.
    let mut c4 = eng.command(&["image", "build", "--ssh", "default", "-q", s(&d2)]);
    c4.env_remove("SSH_AUTH_SOCK");
    ctx.exec_cmd(c4, std::time::Duration::from_secs(60)).one_line_error(&["SSH_AUTH_SOCK"]);
    build(&eng, &["--ssh", &format!("default={}", s(&ctx.dir)), "-q", s(&d2)]).one_line_error(&["not a socket"]);
    // A key with a passphrase: nothing can ask for it.
    let locked = ctx.dir.join("id_locked");
    tool(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "secret-pass", "-f"]).arg(&locked));
    build(&eng, &["--ssh", &format!("deploykey={}", s(&locked)), "-q", s(&d2)]).one_line_error(&["ssh-add"]);
    // No agent of the build's own is left running.
    let data = eng.data.to_string_lossy().into_owned();
    let agents = || -> Vec<String> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.starts_with("ssh-agent") && c.contains(&data))
            .collect()
    };
    assert!(agents().is_empty(), "agents left: {:?}", agents());
    // A build killed outright (SIGKILL) mid-RUN leaves its agent: the next build ends it.
    let d3 = context(&ctx, &[("Dockerfile", "FROM localhost/berth-build/bb:v1\nRUN --mount=type=ssh,id=k sleep 30\n")]);
    let mut bg = ctx.spawn_cmd(eng.command(&[
        "image",
        "build",
        "--network",
        "none",
        "--ssh",
        &format!("k={}", s(&key)),
        "-q",
        s(&d3),
    ]));
    let t0 = std::time::Instant::now();
    let running = || dir_entries_sorted(&ctx.root).iter().any(|n| n.starts_with("berth-build-"));
    while !running() || agents().is_empty() {
        assert!(t0.elapsed().as_secs() < 60 && !bg.exited(), "the build did not reach its RUN");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: a signal to the pid of the build this test spawned.
    unsafe { libc::kill(bg.pid(), libc::SIGKILL) };
    let _ = bg.wait(std::time::Duration::from_secs(10));
    assert_eq!(agents().len(), 1, "the killed build's agent runs on");
    build(&eng, &["--network", "none", "-q", s(&d2)]).one_line_error(&["deploykey"]);
    let t0 = std::time::Instant::now();
    while !agents().is_empty() && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(agents().is_empty(), "the next build did not end the agent: {:?}", agents());
    nothing_left(&eng);
}

/// `git daemon` serving the bare repositories under `base` on 127.0.0.1, killed by pid when
/// dropped.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("git")
            .args(["daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", s(base)))
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        let d = GitDaemon { child, port };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return d;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("git daemon did not listen on 127.0.0.1:{port}");
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `git -C dir args...` (an identity of the test's own), its stdout trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    tool(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=berth", "-c", "user.email=berth@test", "-c", "init.defaultBranch=main"])
            .args(args),
    )
    .trim()
    .to_string()
}

#[test]
fn build_add_git_repository() {
    let ctx = Ctx::new("build-git");
    let (eng, _) = engine(&ctx);
    // A work tree pushed to a bare repository: main (two commits, tag v1 on the first) and a
    // branch `feature` with a subdir.
    let base = ctx.tempdir("repos");
    let bare = base.join("proj.git");
    tool(Command::new("git").args(["init", "-q", "--bare", "-b", "main"]).arg(&bare));
    let wt = ctx.tempdir("wt");
    git(&wt, &["init", "-q", "-b", "main"]);
    fs::create_dir_all(wt.join("sub")).unwrap();
    fs::write(wt.join("a.txt"), "one\n").unwrap();
    fs::write(wt.join("sub/b.txt"), "b\n").unwrap();
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "one"]);
    let first = git(&wt, &["rev-parse", "HEAD"]);
    git(&wt, &["tag", "v1"]);
    fs::write(wt.join("a.txt"), "two\n").unwrap();
    git(&wt, &["commit", "-q", "-am", "two"]);
    git(&wt, &["checkout", "-q", "-b", "feature"]);
    fs::write(wt.join("sub/c.txt"), "feature\n").unwrap();
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "feature"]);
    git(&wt, &["checkout", "-q", "main"]);
    git(&wt, &["push", "-q", s(&bare), "main", "feature", "v1"]);
    let d = GitDaemon::start(&base);
    let url = format!("git://127.0.0.1:{}/proj.git", d.port);
    let dir = context(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM localhost/berth-build/bb:v1\n\
                 ADD {url} /src\n\
                 ADD {url}#v1 /v1\n\
                 ADD {url}#feature:sub /feat\n\
                 ADD --keep-git-dir=true {url}#{first} /kept\n"
            ),
        )],
    );
    build(&eng, &["-q", "-t", "g:1", s(&dir)]).ok();
    let show = |img: &str| {
        run_in(
            &eng,
            img,
            &[
                "sh",
                "-c",
                "cat /src/a.txt /src/sub/b.txt /v1/a.txt; ls /feat; cat /kept/a.txt; \
                 test -e /src/.git && echo src-git; test -e /kept/.git/HEAD && echo kept-git; test -e /src/sub/c.txt && echo c; true",
            ],
        )
    };
    assert_eq!(show("g:1"), "two\nb\none\nb.txt\nc.txt\none\nkept-git\n");
    // Nothing changed: the same image from the cache.
    let id1 = eng.inspect("g:1")["Id"].as_str().unwrap().to_string();
    build(&eng, &["-q", "-t", "g:2", s(&dir)]).ok();
    assert_eq!(eng.inspect("g:2")["Id"].as_str().unwrap(), id1);
    // A new commit on main: the key follows the resolved commit.
    fs::write(wt.join("a.txt"), "three\n").unwrap();
    git(&wt, &["commit", "-q", "-am", "three"]);
    git(&wt, &["push", "-q", s(&bare), "main"]);
    build(&eng, &["-q", "-t", "g:3", s(&dir)]).ok();
    assert_ne!(eng.inspect("g:3")["Id"].as_str().unwrap(), id1);
    assert!(show("g:3").starts_with("three\n"), "{}", show("g:3"));
    // Over http (git's dumb http protocol: the bare repository served as files by python's
    // http.server on 127.0.0.1): an http URL ending in .git is a repository, not a download.
    git(&bare, &["update-server-info"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut web = ctx.spawn_cmd({
        let mut c = Command::new("python3");
        c.args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory", s(&base)]);
        c
    });
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed().as_secs() < 20 && !web.exited(), "http.server did not listen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dh = context(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM localhost/berth-build/bb:v1\nADD http://127.0.0.1:{port}/proj.git#v1:sub /h\n"),
        )],
    );
    build(&eng, &["-q", "-t", "g:http", s(&dh)]).ok();
    assert_eq!(run_in(&eng, "g:http", &["sh", "-c", "ls -A /h; cat /h/b.txt"]), "b.txt\nb\n");
    // SAFETY: a signal to the pid of the server this test spawned.
    unsafe { libc::kill(web.pid(), libc::SIGTERM) };
    let _ = web.wait(std::time::Duration::from_secs(10));
    // A ref that is not there: one line naming it, the store unchanged, nothing left.
    let d2 = context(&ctx, &[("Dockerfile", &format!("FROM localhost/berth-build/bb:v1\nADD {url}#nope /x\n"))]);
    let before = dir_entries_sorted(&eng.data.join("image/blobs/sha256"));
    build(&eng, &["-q", s(&d2)]).one_line_error(&["\"nope\""]);
    assert_eq!(dir_entries_sorted(&eng.data.join("image/blobs/sha256")), before);
    nothing_left(&eng);
}

#[test]
fn build_progress_tty_redraws_in_place() {
    let ctx = Ctx::new("build-tty");
    let (eng, _) = engine(&ctx);
    let dir = context(
        &ctx,
        &[
            ("a.txt", "a\n"),
            (
                "Dockerfile",
                "FROM localhost/berth-build/bb:v1\n\
                 COPY a.txt /a.txt\n\
                 RUN for i in 1 2 3 4 5 6 7 8 9 10; do echo out-line-$i; sleep 0.1; done\n\
                 ENV X=1\n",
            ),
        ],
    );
    let iid = ctx.dir.join("iid");
    // `image build --progress tty ARGS` on a terminal of `size` (script(1) gives it a pty),
    // then the shell line `after`: everything the terminal showed.
    let on_tty = |size: &str, args: &str, after: &str| {
        let line = format!(
            "stty {size}; {} --root {} --data-root {} image build --network none --progress tty {args}{after}",
            ctx.bin.display(),
            ctx.root.display(),
            eng.data.display(),
        );
        tool(Command::new("script").args(["-qec", &line, "/dev/null"]))
    };
    let tty = on_tty("cols 200 rows 50", &format!("--iidfile {} {}", s(&iid), s(&dir)), "");
    let id = fs::read_to_string(&iid).unwrap();
    assert!(id.starts_with("sha256:"), "{id:?}");
    assert!(tty.contains("\x1b[J") && tty.contains("A\r\x1b[J"), "no redraw in place: {tty:?}");
    assert!(tty.contains("[+] Building ") && tty.contains("FINISHED"), "no header: {tty:?}");
    // The running RUN step with the last lines of its output, then finished with its time.
    assert!(tty.contains(" => => # out-line-"), "no output of the running step: {tty:?}");
    let last_frame = tty.rsplit("\x1b[J").next().unwrap().replace('\r', "");
    assert!(!last_frame.contains(" => => # "), "a finished step keeps no output lines: {last_frame}");
    assert!(
        last_frame.lines().any(|l| l.starts_with(" => [stage-0 3/4] RUN for i in") && l.ends_with('s')),
        "the finished RUN with its time: {last_frame}"
    );
    assert_eq!(
        last_frame.lines().rfind(|l| !l.trim().is_empty()),
        Some(format!(" => => writing image {id} done").as_str()),
        "{last_frame}"
    );
    // A small terminal: every line cut to its width, the frame no taller than it, the
    // header kept.
    let tty = on_tty("cols 60 rows 5", s(&dir), "").replace('\r', "");
    let last_frame = tty.rsplit("\x1b[J").next().unwrap();
    let lines: Vec<&str> = last_frame.lines().collect();
    assert!(lines.len() <= 4 && lines[0].starts_with("[+] Building "), "{last_frame}");
    assert!(lines.iter().all(|l| l.chars().count() < 60), "{last_frame}");
    // A failing step: shown ERROR in the last frame, the build's error line after it.
    let bad = context(&ctx, &[("Dockerfile", "FROM localhost/berth-build/bb:v1\nRUN echo failing-step; exit 3\n")]);
    let tty = on_tty("cols 200 rows 50", s(&bad), "; echo rc=$?").replace('\r', "");
    let last_frame = tty.rsplit("\x1b[J").next().unwrap();
    let lines: Vec<&str> = last_frame.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.iter().any(|l| l.starts_with(" => ERROR [stage-0 2/2] RUN echo failing-step")), "{last_frame}");
    assert_eq!(lines[lines.len() - 1], "rc=1", "{last_frame}");
    assert!(lines[lines.len() - 2].contains("exit code: 3"), "{last_frame}");
    // Not a terminal: plain lines, `auto` and `tty` alike.
    for p in ["auto", "tty"] {
        let o = build(&eng, &["--network", "none", "--progress", p, s(&dir)]);
        o.ok();
        assert!(!o.stderr.contains('\x1b'), "escapes without a terminal: {o}");
        assert!(o.stderr.contains("#3 CACHED") && o.stderr.contains(&format!("writing image {id} done")), "{o}");
    }
    nothing_left(&eng);
}
