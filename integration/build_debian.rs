//! Builds over a real Debian base: the debootstrap'd bookworm image with gcc and libc6-dev
//! (`common::images::debian_gcc_layout`, made once per machine) compiles a C program in one
//! stage and a busybox stage receives the static binary; build args, cache mounts, the cache
//! after a source edit, `buildah bud --layers` of the same Dockerfile compared, the result run,
//! pushed to a registry on 127.0.0.1 and pulled back on a fresh data root.

use crate::build::{build, config_of, context, engine, nothing_left, run_in, s, tree, BASE};
use crate::common::images::*;
use crate::common::registry::*;
use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// Dependencies first (a header, checked by the compiler in its own step), then the source:
/// editing the source keeps the dependency step cached. Each RUN counts its runs in a cache
/// mount and records the count in the image.
const DOCKERFILE: &str = "\
ARG GREETING=hello
FROM localhost/berth-test/debian-gcc:bookworm AS compile
ARG GREETING
WORKDIR /src
COPY greeting.h ./
RUN --mount=type=cache,target=/cache echo deps >> /cache/deps && wc -l < /cache/deps > /deps-runs && gcc -fsyntax-only -x c greeting.h
COPY hello.c ./
RUN --mount=type=cache,target=/build echo run >> /build/runs && gcc -O2 -DGREETING=$GREETING -c -o /build/hello.o hello.c && gcc -static -o /hello /build/hello.o && wc -l < /build/runs > /build-runs
FROM localhost/berth-build/bb:v1
COPY --from=compile /hello /usr/local/bin/hello
COPY --from=compile /deps-runs /build-runs /etc/
CMD [\"hello\"]
";

const HEADER: &str = "#define STR2(x) #x\n#define STR(x) STR2(x)\n";

fn source(words: &str) -> String {
    format!(
        "#include <stdio.h>\n#include \"greeting.h\"\nint main(void) {{ printf(\"%s {words}, gcc %s\\n\", STR(GREETING), __VERSION__); return 0; }}\n"
    )
}

/// buildah with storage of its own (overlay) under `dir`, and its temporary dir there too:
/// buildah keeps `RUN --mount=type=cache` dirs in `$TMPDIR/buildah-cache`, otherwise shared by
/// every build on the host.
struct Buildah {
    dir: PathBuf,
}

impl Buildah {
    fn command(&self) -> Command {
        let tmp = self.dir.join("tmp");
        mkdir(&tmp, 0o755);
        let mut c = Command::new("buildah");
        c.args([
            "--root",
            s(&self.dir.join("root")),
            "--runroot",
            s(&self.dir.join("run")),
            "--storage-driver",
            "overlay",
        ])
        .env("TMPDIR", &tmp);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let mut c = self.command();
        c.args(args);
        let o = c.output().unwrap_or_else(|e| panic!("buildah: {e} (apt-get install -y buildah)"));
        assert!(o.status.success(), "buildah {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.command().args(["rm", "--all"]).output();
        for m in mounts_under(&self.dir).into_iter().rev() {
            let _ = nix::mount::umount2(std::path::Path::new(&m), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn build_debian_gcc_multistage_buildah_and_ship() {
    let ctx = Ctx::new("build-debian");
    let debian = debian_gcc_layout();
    let (eng, bb_layout) = engine(&ctx);
    eng.image(&["load", "-i", s(&debian)]).ok();
    // The base runs: its compiler's version is what the program will print.
    let gcc = run_in(&eng, DEBIAN_GCC_NAME, &["gcc", "-dumpfullversion"]).trim().to_string();
    assert!(!gcc.is_empty() && gcc.chars().all(|c| c.is_ascii_digit() || c == '.'), "gcc version: {gcc:?}");

    let dir = context(&ctx, &[("greeting.h", HEADER), ("hello.c", &source("from berth")), ("Dockerfile", DOCKERFILE)]);
    let first = build(&eng, &["--network", "none", "--build-arg", "GREETING=hi", "-t", "gcc:1", s(&dir)]);
    first.ok();
    assert_eq!(first.stderr.matches("CACHED").count(), 0, "{first}");
    // The static binary runs in the busybox image, which has no C library.
    assert_eq!(run_in(&eng, "gcc:1", &[]), format!("hi from berth, gcc {gcc}\n"));
    assert_eq!(run_in(&eng, "gcc:1", &["cat", "/etc/deps-runs", "/etc/build-runs"]), "1\n1\n");
    assert_eq!(run_in(&eng, "gcc:1", &["sh", "-c", "ls /lib* /usr/lib 2>&1 | grep -c libc.so || true"]), "0\n");

    // buildah bud --layers of the same Dockerfile over the same two bases: the same config and
    // file tree.
    let ba = Buildah { dir: ctx.tempdir("buildah") };
    let pulled = ba.run(&["pull", "-q", &format!("oci:{}:v1", s(&bb_layout))]);
    ba.run(&["tag", pulled.trim(), BASE]);
    let pulled = ba.run(&["pull", "-q", &format!("oci:{}:{DEBIAN_GCC_TAG}", s(&debian))]);
    ba.run(&["tag", pulled.trim(), DEBIAN_GCC_NAME]);
    ba.run(&[
        "bud",
        "--layers",
        "--runtime",
        "/usr/sbin/runc",
        "--network",
        "host",
        "--build-arg",
        "GREETING=hi",
        "-t",
        "gcc:1",
        "-f",
        s(&dir.join("Dockerfile")),
        s(&dir),
    ]);
    let bcfg: Value = serde_json::from_str(&ba.run(&["inspect", "--type", "image", "gcc:1"])).unwrap();
    let bc = &bcfg["OCIv1"]["config"];
    let ours = config_of(&eng, "gcc:1");
    let oc = &ours["config"];
    for k in ["Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts"] {
        assert_eq!(oc[k], bc[k], "config {k}: berth {} buildah {}", oc[k], bc[k]);
    }
    let trees = |image: &str| {
        let ours_root = ctx.dir.join(format!("ours-{image}"));
        eng.image(&["unpack", image, s(&ours_root)]).ok();
        let cont = ba.run(&["from", "--pull-never", image]).trim().to_string();
        let mnt = PathBuf::from(ba.run(&["mount", &cont]).trim());
        let (a, b) = (tree(&ours_root.join("rootfs")), tree(&mnt));
        ba.run(&["umount", &cont]);
        ba.run(&["rm", &cont]);
        let _ = fs::remove_dir_all(&ours_root);
        // buildah leaves in its RUN layers the mount points it made for a RUN where the base
        // had none (here /etc/hosts: empty); docker's builder does not, nor does berth.
        let buildah_only = ["etc/hostname", "etc/hosts", "etc/resolv.conf", "run"];
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let diffs: Vec<String> = keys
            .into_iter()
            .filter(|k| !buildah_only.contains(&k.as_str()) || a.contains_key(*k))
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| format!("{k}: berth {:?} buildah {:?}", a.get(k), b.get(k)))
            .collect();
        assert!(diffs.is_empty(), "{image}: file trees differ:\n{}", diffs.join("\n"));
        a
    };
    let a = trees("gcc:1");
    assert!(a.contains_key("usr/local/bin/hello"), "{a:?}");
    // The compile stage too: the whole Debian tree with the RUNs' changes (both from cache).
    let target = ["--target", "compile", "--build-arg", "GREETING=hi", "-t", "gcc-compile:1"];
    build(&eng, &[&["--network", "none"][..], &target[..], &[s(&dir)]].concat()).ok();
    let df = dir.join("Dockerfile");
    ba.run(
        &[
            &["bud", "--layers", "--runtime", "/usr/sbin/runc", "--network", "host"][..],
            &target[..],
            &["-f", s(&df), s(&dir)],
        ]
        .concat(),
    );
    let a = trees("gcc-compile:1");
    assert!(a.contains_key("usr/bin/gcc") && a.contains_key("hello") && a.contains_key("src/hello.c"), "{}", a.len());

    // The source edited: the dependency steps come from the cache, the compile step runs
    // again and finds its cache mount as the first build left it.
    fs::write(dir.join("hello.c"), source("again from berth")).unwrap();
    let edit = build(&eng, &["--network", "none", "--build-arg", "GREETING=hi", "-t", "gcc:2", s(&dir)]);
    edit.ok();
    // WORKDIR, COPY greeting.h and the dependency RUN; not the COPY of the source, the compile,
    // nor the final stage's two COPY --from.
    assert_eq!(edit.stderr.matches("CACHED").count(), 3, "{edit}");
    assert_eq!(run_in(&eng, "gcc:2", &[]), format!("hi again from berth, gcc {gcc}\n"));
    assert_eq!(
        run_in(&eng, "gcc:2", &["cat", "/etc/deps-runs", "/etc/build-runs"]),
        "1\n2\n",
        "the dependency step ran again, or the cache mount lost its content"
    );

    // Pushed to a registry on 127.0.0.1, pulled back on a fresh data root: the same image,
    // the same tree, the same output.
    let reg = Registry::start(&ctx, RegistryOpts::default());
    let r = reg.reference("berth-test/gcc-hello:2");
    eng.image(&["tag", "gcc:2", &r]).ok();
    let o = eng.image(&["push", &r]);
    o.ok();
    let digest = eng.inspect(&r)["RepoDigests"]
        .as_array()
        .and_then(|a| a.iter().find_map(|d| d.as_str()?.split_once('@').map(|x| x.1.to_string())))
        .unwrap_or_else(|| panic!("no repo digest after the push: {o}"));
    assert!(o.stdout.contains(&format!("2: digest: {digest}")), "{o}");
    let eng2 = Eng::new(&ctx);
    eng2.image(&["pull", &r]).ok();
    assert_eq!(eng2.inspect(&r)["Id"], eng.inspect("gcc:2")["Id"]);
    assert_eq!(eng2.inspect(&r)["RepoDigests"], json!([format!("{}@{digest}", reg.reference("berth-test/gcc-hello"))]));
    let back = ctx.dir.join("back");
    eng2.image(&["unpack", &r, s(&back)]).ok();
    let pushed = ctx.dir.join("pushed");
    eng.image(&["unpack", "gcc:2", s(&pushed)]).ok();
    assert_eq!(tree(&pushed.join("rootfs")), tree(&back.join("rootfs")));
    assert_eq!(run_in(&eng2, &r, &[]), format!("hi again from berth, gcc {gcc}\n"));
    nothing_left(&eng);
}
