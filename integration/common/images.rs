//! Image fixtures for the image tests: OCI image layouts written by hand (layers made with the
//! `tar` and `gzip` tools, JSON with serde_json, digests with sha2), docker-save archives, a
//! layered Debian image (debootstrap, cached once per machine), crafted layers (python3
//! tarfile), a tree walker to compare unpacked rootfs trees, and `Eng`: berth with the test's
//! own --root and --data-root.

use super::*;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Time limit of one image command (a Debian layer is ~200 MB).
pub const IMAGE_TIMEOUT: Duration = Duration::from_secs(180);

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn sha256_bytes(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// (hex sha256, size) of a file, streamed.
pub fn sha256_file(p: &Path) -> (String, u64) {
    let mut f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    (hex(&h.finalize()), n)
}

/// Runs a tool, panics with its output when it fails; returns stdout.
pub fn tool(c: &mut Command) -> String {
    let o = c.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("spawn {c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// OCI image layout

#[derive(Clone, Debug)]
pub struct Desc {
    pub media_type: String,
    /// "sha256:<hex>"
    pub digest: String,
    pub size: u64,
}

impl Desc {
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
    pub fn json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub desc: Desc,
    /// "sha256:<hex of the uncompressed tar>"
    pub diff_id: String,
}

/// What goes into an image config.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub arch: String,
    pub os: String,
    pub variant: Option<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl ImageSpec {
    pub fn new(cmd: &[&str]) -> ImageSpec {
        ImageSpec {
            arch: host_arch().to_string(),
            os: "linux".into(),
            variant: None,
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            labels: BTreeMap::new(),
        }
    }
    pub fn arch(mut self, a: &str) -> Self {
        self.arch = a.into();
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    /// The image config JSON for these layers.
    pub fn config_json(&self, diff_ids: &[String]) -> Value {
        let mut c = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": self.arch,
            "os": self.os,
            "config": {"Env": self.env, "Cmd": self.cmd, "WorkingDir": "/", "Labels": self.labels},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": diff_ids.iter().map(|d| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("berth-itest layer {d}")})).collect::<Vec<_>>()
        });
        if let Some(v) = &self.variant {
            c["variant"] = json!(v);
        }
        c
    }
}

/// Docker's name of the host architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        a => a,
    }
}

/// An OCI image layout directory written by hand.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn create(dir: &Path) -> Layout {
        mkdir(&dir.join("blobs/sha256"), 0o755);
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        fs::write(dir.join("index.json"), r#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        Layout { dir: dir.to_path_buf() }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    pub fn add_blob(&self, media_type: &str, data: &[u8]) -> Desc {
        let h = sha256_bytes(data);
        fs::write(self.dir.join("blobs/sha256").join(&h), data).unwrap();
        Desc { media_type: media_type.into(), digest: format!("sha256:{h}"), size: data.len() as u64 }
    }

    /// Moves (or copies) a file in as a blob.
    pub fn add_blob_file(&self, media_type: &str, path: &Path) -> Desc {
        let (h, n) = sha256_file(path);
        let dst = self.dir.join("blobs/sha256").join(&h);
        if fs::rename(path, &dst).is_err() {
            fs::copy(path, &dst).unwrap();
        }
        Desc { media_type: media_type.into(), digest: format!("sha256:{h}"), size: n }
    }

    /// A layer from a tar file: gzip-compressed (gzip -n) or as is. The tar stays where it is.
    pub fn add_layer(&self, tar: &Path, compress: bool) -> Layer {
        let (diff, _) = sha256_file(tar);
        let tmp = self.dir.join(format!("layer.{}.tmp", next()));
        if compress {
            let out = File::create(&tmp).unwrap();
            let st = Command::new("gzip").args(["-n", "-c", "-6"]).arg(tar).stdout(out).status().expect("spawn gzip");
            assert!(st.success(), "gzip {}: {st}", tar.display());
        } else {
            fs::copy(tar, &tmp).unwrap();
        }
        let mt = if compress { OCI_LAYER_GZIP } else { OCI_LAYER };
        Layer { desc: self.add_blob_file(mt, &tmp), diff_id: format!("sha256:{diff}") }
    }

    /// A layer from an already gzip-compressed tar whose diff id is known.
    pub fn add_gz_layer(&self, gz: &Path, diff_id: &str) -> Layer {
        let tmp = self.dir.join(format!("layer.{}.tmp", next()));
        fs::copy(gz, &tmp).unwrap();
        Layer { desc: self.add_blob_file(OCI_LAYER_GZIP, &tmp), diff_id: diff_id.into() }
    }

    /// Config + manifest blobs: returns (manifest, config).
    pub fn add_image(&self, layers: &[Layer], spec: &ImageSpec) -> (Desc, Desc) {
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config = self.add_blob(OCI_CONFIG, &serde_json::to_vec(&spec.config_json(&diff_ids)).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.json(),
            "layers": layers.iter().map(|l| l.desc.json()).collect::<Vec<_>>()
        });
        (self.add_blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap()), config)
    }

    /// An image index blob over (manifest, arch) pairs (os linux).
    pub fn add_index(&self, entries: &[(&Desc, &str)]) -> Desc {
        let manifests: Vec<Value> = entries
            .iter()
            .map(|(d, arch)| {
                let mut j = d.json();
                j["platform"] = json!({"architecture": arch, "os": "linux"});
                j
            })
            .collect();
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.add_blob(OCI_INDEX, &serde_json::to_vec(&idx).unwrap())
    }

    /// Names `desc` in index.json: ref.name = `tag` (what umoci and skopeo look up) and, when
    /// given, io.containerd.image.name = `full` (the name `docker load` gives an OCI layout).
    pub fn tag(&self, desc: &Desc, tag: &str, full: Option<&str>) {
        let p = self.dir.join("index.json");
        let mut idx: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        let list = idx["manifests"].as_array_mut().unwrap();
        list.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
        let mut j = desc.json();
        j["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        if let Some(f) = full {
            j["annotations"]["io.containerd.image.name"] = json!(f);
        }
        list.push(j);
        fs::write(&p, serde_json::to_vec(&idx).unwrap()).unwrap();
    }

    /// Replaces a blob's bytes in place (keeps its file name): makes a digest mismatch.
    pub fn corrupt_blob(&self, digest: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let p = self.blob_path(digest);
        let mut b = fs::read(&p).unwrap();
        f(&mut b);
        fs::write(&p, b).unwrap();
    }

    /// The whole layout as one tar file.
    pub fn to_tar(&self, out: &Path) {
        tool(Command::new("tar").arg("-C").arg(&self.dir).arg("-cf").arg(out).args([
            "oci-layout",
            "index.json",
            "blobs",
        ]));
    }
}

/// `tar` of the entries of `src` (names without a leading "./"), numeric owners, user xattrs.
pub fn tar_dir(src: &Path, out: &Path) {
    let mut names: Vec<String> =
        fs::read_dir(src).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    // The bundle's busybox is a hard link to one copy shared by every test: other tests adding
    // and removing links change its ctime while tar reads it, which GNU tar reports as "file
    // changed as we read it" (exit 1) although the content is the same. Only that is tolerated.
    let mut c = Command::new("tar");
    c.args([
        "--numeric-owner",
        "--sort=name",
        "--xattrs",
        "--xattrs-include=user.*",
        "--warning=no-file-changed",
        "-C",
    ])
    .arg(src)
    .arg("-cf")
    .arg(out)
    .arg("--")
    .args(&names);
    let o = c.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("spawn {c:?}: {e}"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() || (o.status.code() == Some(1) && stderr.trim().is_empty()),
        "{c:?} failed ({}):\n{stderr}",
        o.status
    );
}

/// A busybox rootfs (the harness's bundle rootfs, with /etc/image-marker = `marker`) as a tar.
pub fn busybox_layer_tar(ctx: &Ctx, marker: &str) -> PathBuf {
    let b = ctx.bundle();
    b.write_file("etc/image-marker", &format!("{marker}\n"), 0o644);
    let out = ctx.dir.join(format!("busybox-layer{}.tar", next()));
    tar_dir(&b.rootfs, &out);
    let _ = fs::remove_dir_all(&b.dir);
    out
}

/// An OCI layout at `dir` with one busybox image tagged `tag` (and named `full` for loaders).
/// Returns (manifest, config).
pub fn busybox_oci_layout(
    ctx: &Ctx,
    dir: &Path,
    tag: &str,
    full: Option<&str>,
    spec: &ImageSpec,
) -> (Layout, Desc, Desc) {
    let lay = Layout::create(dir);
    let tar = busybox_layer_tar(ctx, tag);
    let layer = lay.add_layer(&tar, true);
    let _ = fs::remove_file(&tar);
    let (m, c) = lay.add_image(&[layer], spec);
    lay.tag(&m, tag, full);
    (lay, m, c)
}

/// A two-platform layout (host arch and the other of amd64/arm64) tagged `tag` on the index.
/// Returns (layout, index, [(arch, manifest, config)]).
pub fn multiarch_oci_layout(ctx: &Ctx, dir: &Path, tag: &str) -> (Layout, Desc, Vec<(String, Desc, Desc)>) {
    let lay = Layout::create(dir);
    let tar = busybox_layer_tar(ctx, "multi");
    let layer = lay.add_layer(&tar, true);
    let mut out = Vec::new();
    for arch in ["amd64", "arm64"] {
        let spec = ImageSpec::new(&["sh", "-c", &format!("echo {arch}")]).arch(arch).label("berth.test.arch", arch);
        let (m, c) = lay.add_image(std::slice::from_ref(&layer), &spec);
        out.push((arch.to_string(), m, c));
    }
    let idx = lay.add_index(&out.iter().map(|(a, m, _)| (m, a.as_str())).collect::<Vec<_>>());
    lay.tag(&idx, tag, None);
    (lay, idx, out)
}

/// A docker-save archive (legacy format: manifest.json last, <config hex>.json,
/// <layer hex>/layer.tar, repositories) of one image made from `layer_tar`. Returns the config
/// digest ("sha256:..").
pub fn docker_save_archive(ctx: &Ctx, out: &Path, layer_tar: &Path, repo_tags: &[&str], spec: &ImageSpec) -> String {
    let d = ctx.tempdir("save");
    let (lhex, _) = sha256_file(layer_tar);
    mkdir(&d.join(&lhex), 0o755);
    fs::copy(layer_tar, d.join(&lhex).join("layer.tar")).unwrap();
    fs::write(d.join(&lhex).join("VERSION"), "1.0").unwrap();
    let cfg = serde_json::to_vec(&spec.config_json(&[format!("sha256:{lhex}")])).unwrap();
    let chex = sha256_bytes(&cfg);
    fs::write(d.join(format!("{chex}.json")), &cfg).unwrap();
    let mut repos = serde_json::Map::new();
    for rt in repo_tags {
        let (r, t) = rt.rsplit_once(':').unwrap();
        repos.entry(r.to_string()).or_insert_with(|| json!({}))[t] = json!(lhex);
    }
    fs::write(d.join("repositories"), serde_json::to_vec(&Value::Object(repos)).unwrap()).unwrap();
    let manifest =
        json!([{"Config": format!("{chex}.json"), "RepoTags": repo_tags, "Layers": [format!("{lhex}/layer.tar")]}]);
    fs::write(d.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    tool(
        Command::new("tar")
            .arg("-C")
            .arg(&d)
            .arg("-cf")
            .arg(out)
            .arg(&lhex)
            .arg(format!("{chex}.json"))
            .args(["repositories", "manifest.json"]),
    );
    let _ = fs::remove_dir_all(&d);
    format!("sha256:{chex}")
}

/// Writes a tar made by python3's tarfile from a list of entries (see the script for the
/// fields): lets tests make layers no tar tool would (whiteouts, `../` names, exact owners).
pub fn python_tar(out: &Path, entries: &Value) {
    const SCRIPT: &str = r#"
import io, json, sys, tarfile
out, spec = sys.argv[1], json.loads(sys.argv[2])
types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "char": tarfile.CHRTYPE}
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for e in spec:
        ti = tarfile.TarInfo(e["name"])
        ti.type = types[e.get("type", "file")]
        ti.mode = e.get("mode", 0o755 if ti.type == tarfile.DIRTYPE else 0o644)
        ti.uid, ti.gid = e.get("uid", 0), e.get("gid", 0)
        ti.uname = ti.gname = ""
        ti.mtime = e.get("mtime", 1700000000)
        ti.linkname = e.get("link", "")
        ti.devmajor, ti.devminor = e.get("major", 0), e.get("minor", 0)
        if "xattrs" in e:
            ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in e["xattrs"].items()}
        data = e.get("data", "").encode()
        if ti.type == tarfile.REGTYPE:
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        else:
            t.addfile(ti)
"#;
    tool(Command::new("python3").arg("-c").arg(SCRIPT).arg(out).arg(entries.to_string()));
}

// ---------------------------------------------------------------------------------------------
// Debian

pub const DEBIAN_CACHE: &str = "/var/cache/berth-tests";

/// The mirror debootstrap reads: `$DEBIAN_MIRROR`, else the one this machine's apt uses
/// (deb.debian.org, /etc/apt/sources.list.d/debian.sources; no apt proxy is configured here).
pub fn debian_mirror() -> String {
    std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// An exclusive flock on DEBIAN_CACHE/`name`, held while the returned file is open.
fn cache_lock(name: &str) -> File {
    let cache = Path::new(DEBIAN_CACHE);
    mkdir(cache, 0o755);
    let lockf = File::create(cache.join(name)).unwrap();
    // SAFETY: flock(2) on an fd this function owns; released when the file is closed.
    let rc = unsafe { libc::flock(lockf.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {DEBIAN_CACHE}/{name}: {}", std::io::Error::last_os_error());
    lockf
}

/// `debootstrap --variant=minbase [--include=...] bookworm` into `build`/root (the .debs kept in
/// DEBIAN_CACHE/debs for the next build), then the rootfs as `build`/rootfs.tar (numeric
/// owners, name order, xattrs) and the root removed. Returns (tar, hex sha256 of the tar).
fn debootstrap_tar(build: &Path, include: &[&str]) -> (PathBuf, String) {
    let root = build.join("root");
    let log = build.join("debootstrap.log");
    let debs = Path::new(DEBIAN_CACHE).join("debs");
    mkdir(&debs, 0o755);
    let mut c = Command::new("debootstrap");
    c.arg("--variant=minbase");
    if !include.is_empty() {
        c.arg(format!("--include={}", include.join(",")));
    }
    c.arg(format!("--cache-dir={}", debs.display())).arg("bookworm").arg(&root).arg(debian_mirror());
    let shown = format!("{c:?}");
    eprintln!("building a Debian test image rootfs: {shown} (once per machine; log {})", log.display());
    let started = Instant::now();
    let st = c
        .stdin(Stdio::null())
        .stdout(File::create(&log).unwrap())
        .stderr(File::create(build.join("debootstrap.err")).unwrap())
        .status();
    if !matches!(st, Ok(s) if s.success()) {
        let tail: Vec<String> = format!("{}{}", read(&log), read(build.join("debootstrap.err")))
            .lines()
            .rev()
            .take(15)
            .map(str::to_string)
            .collect();
        // debootstrap may leave proc/sys mounted in the target on failure.
        for m in mounts_under(&root).into_iter().rev() {
            let _ = nix::mount::umount2(Path::new(&m), nix::mount::MntFlags::MNT_DETACH);
        }
        panic!(
            "Debian test image: {shown} failed ({st:?}); these tests need apt access to the Debian mirror \
             (apt-get install -y debootstrap; DEBIAN_MIRROR=URL for another). Last lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    eprintln!("debootstrap took {:.1} s", started.elapsed().as_secs_f64());
    assert!(mounts_under(&root).is_empty(), "debootstrap left mounts under {}", root.display());
    let tar = build.join("rootfs.tar");
    let mut names: Vec<String> =
        fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    tool(
        Command::new("tar")
            .args(["--numeric-owner", "--sort=name", "--xattrs", "--xattrs-include=*", "-C"])
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("--")
            .args(&names),
    );
    let _ = fs::remove_dir_all(&root);
    let (d, _) = sha256_file(&tar);
    (tar, d)
}

/// `gzip -n -6` of `src` into `dst`.
fn gzip_file(src: &Path, dst: &Path) {
    let st = Command::new("gzip")
        .args(["-n", "-c", "-6"])
        .arg(src)
        .stdout(File::create(dst).unwrap())
        .status()
        .expect("spawn gzip");
    assert!(st.success(), "gzip {}", src.display());
}

/// (tar, tar.gz, diff id) of a debootstrap'd Debian bookworm minbase rootfs, built once per
/// machine under /var/cache/berth-tests (flock'd: parallel tests wait for one build).
pub fn debian_rootfs() -> (PathBuf, PathBuf, String) {
    let cache = Path::new(DEBIAN_CACHE);
    let tar = cache.join("debian-rootfs.tar");
    let gz = cache.join("debian-rootfs.tar.gz");
    let diff = cache.join("debian-rootfs.diffid");
    let lockf = cache_lock("debian.lock");
    if !(tar.exists() && gz.exists() && diff.exists()) {
        let build = cache.join(format!("build.{}", std::process::id()));
        let _ = fs::remove_dir_all(&build);
        mkdir(&build, 0o755);
        let (tmp_tar, d) = debootstrap_tar(&build, &[]);
        let tmp_gz = build.join("rootfs.tar.gz");
        gzip_file(&tmp_tar, &tmp_gz);
        fs::rename(&tmp_tar, &tar).unwrap();
        fs::rename(&tmp_gz, &gz).unwrap();
        fs::write(&diff, format!("sha256:{d}")).unwrap();
        let _ = fs::remove_dir_all(&build);
    }
    let d = fs::read_to_string(&diff).unwrap().trim().to_string();
    drop(lockf);
    (tar, gz, d)
}

/// What the Debian compiler image adds to minbase (`debootstrap --include`): a C compiler and
/// the C library's headers and static archives (`gcc -static` works).
pub const DEBIAN_GCC_INCLUDE: &[&str] = &["gcc", "libc6-dev"];

/// The name the Debian compiler image has in the layout (and so after `image load`).
pub const DEBIAN_GCC_NAME: &str = "localhost/berth-test/debian-gcc:bookworm";

/// The tag of the Debian compiler image in its layout: `oci:DIR:gcc` for buildah and skopeo.
pub const DEBIAN_GCC_TAG: &str = "gcc";

/// An OCI image layout holding the Debian compiler image: one gzip layer, a debootstrap'd
/// bookworm minbase rootfs with DEBIAN_GCC_INCLUDE; config Cmd `bash`, the usual PATH. Built
/// once per machine (debootstrap takes minutes) under /var/cache/berth-tests, keyed by the
/// suite and package list (`debian-gcc-KEY.oci`), under a flock so that parallel tests wait
/// for one build; the .debs are kept there too. Read-only: `image load -i DIR` for berth,
/// `oci:DIR:gcc` for buildah and skopeo.
pub fn debian_gcc_layout() -> PathBuf {
    let key = &sha256_bytes(format!("bookworm minbase {}", DEBIAN_GCC_INCLUDE.join(",")).as_bytes())[..12];
    let cache = Path::new(DEBIAN_CACHE);
    let out = cache.join(format!("debian-gcc-{key}.oci"));
    let lockf = cache_lock("debian-gcc.lock");
    if !out.join("index.json").exists() {
        let build = cache.join(format!("build-gcc.{}", std::process::id()));
        let _ = fs::remove_dir_all(&build);
        mkdir(&build, 0o755);
        let (tar, diff) = debootstrap_tar(&build, DEBIAN_GCC_INCLUDE);
        let lay = Layout::create(&build.join("layout"));
        let gz = build.join("rootfs.tar.gz");
        gzip_file(&tar, &gz);
        let _ = fs::remove_file(&tar);
        let layer = Layer { desc: lay.add_blob_file(OCI_LAYER_GZIP, &gz), diff_id: format!("sha256:{diff}") };
        let (m, _) = lay.add_image(&[layer], &ImageSpec::new(&["bash"]));
        lay.tag(&m, DEBIAN_GCC_TAG, Some(DEBIAN_GCC_NAME));
        let _ = fs::remove_dir_all(&out);
        fs::rename(&lay.dir, &out).unwrap();
        let _ = fs::remove_dir_all(&build);
    }
    drop(lockf);
    out
}

/// The second layer of the Debian test image: whiteouts (a file, a directory), an opaque
/// directory, a changed file, a directory replaced by a file, hard links, symlinks, a fifo, a
/// setuid file, a setgid and a sticky dir, user xattrs, files owned by 1000:1000, a long name.
pub fn debian_layer2_entries() -> Value {
    json!([
        {"name": "etc/.wh.issue.net"},
        {"name": "usr/share/.wh.doc"},
        {"name": "etc/apt/apt.conf.d", "type": "dir", "mode": 0o755},
        {"name": "etc/apt/apt.conf.d/.wh..wh..opq"},
        {"name": "etc/apt/apt.conf.d/99berth", "data": "APT::Berth \"1\";\n"},
        {"name": "etc/debian_version", "data": "berth-layer2\n"},
        {"name": "var/opt", "data": "was a directory\n"},
        {"name": "berth", "type": "dir", "mode": 0o755},
        {"name": "berth/file", "data": "hello hardlinks\n"},
        {"name": "berth/hardlink1", "type": "hardlink", "link": "berth/file"},
        {"name": "berth/hardlink2", "type": "hardlink", "link": "berth/file"},
        {"name": "berth/symlink", "type": "symlink", "link": "file"},
        {"name": "berth/abs-symlink", "type": "symlink", "link": "/etc/os-release"},
        {"name": "berth/dangling", "type": "symlink", "link": "../nowhere/at/all"},
        {"name": "berth/fifo", "type": "fifo", "mode": 0o600},
        {"name": "berth/setuid", "data": "#!/bin/sh\necho setuid\n", "mode": 0o4755},
        {"name": "berth/setgid-dir", "type": "dir", "mode": 0o2775, "gid": 1000},
        {"name": "berth/sticky", "type": "dir", "mode": 0o1777},
        {"name": "berth/xattr", "data": "x\n", "xattrs": {"user.berth": "hello", "user.other": "v2"}},
        {"name": "berth/owned", "data": "mine\n", "uid": 1000, "gid": 1000, "mode": 0o600},
        {"name": "berth/owned-dir", "type": "dir", "mode": 0o700, "uid": 1000, "gid": 1000},
        {"name": "berth/owned-dir/inner", "data": "inner\n", "uid": 1000, "gid": 1000},
        {"name": format!("berth/{}", "l".repeat(150)), "data": "long name\n"},
        {"name": "berth/empty", "data": ""}
    ])
}

/// An OCI layout with the two-layer Debian image, tagged `tag` (and named `full`).
/// Returns (layout, manifest, config).
pub fn debian_oci_layout(
    ctx: &Ctx,
    dir: &Path,
    tag: &str,
    full: Option<&str>,
    spec: &ImageSpec,
) -> (Layout, Desc, Desc) {
    let (_tar, gz, diff) = debian_rootfs();
    let lay = Layout::create(dir);
    let l1 = lay.add_gz_layer(&gz, &diff);
    let t2 = ctx.dir.join(format!("layer2-{}.tar", next()));
    python_tar(&t2, &debian_layer2_entries());
    let l2 = lay.add_layer(&t2, true);
    let (m, c) = lay.add_image(&[l1, l2], spec);
    lay.tag(&m, tag, full);
    (lay, m, c)
}

// ---------------------------------------------------------------------------------------------
// Tree comparison

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// sha256 for files, target for symlinks, "maj:min" for devices.
    pub content: String,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

fn xattrs_of(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else { return m };
    let mut names = vec![0u8; 65536];
    // SAFETY: llistxattr writes at most names.len() bytes into the buffer we own.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr() as *mut libc::c_char, names.len()) };
    if n <= 0 {
        return m;
    }
    for name in names[..n as usize].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let ns = String::from_utf8_lossy(name).into_owned();
        if ns == "security.selinux" {
            continue;
        }
        let Ok(cn) = CString::new(name) else { continue };
        let mut v = vec![0u8; 65536];
        // SAFETY: lgetxattr writes at most v.len() bytes into the buffer we own.
        let k = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr() as *mut libc::c_void, v.len()) };
        if k >= 0 {
            v.truncate(k as usize);
            m.insert(ns, v);
        }
    }
    m
}

/// Every path below `root` (relative, "" excluded) with its type, mode, owner, content and
/// xattrs, plus the hard-link groups (paths sharing an inode, sorted).
pub fn walk_tree(root: &Path) -> (BTreeMap<String, Node>, Vec<Vec<String>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = fs::read_dir(&d).unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display()));
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let (kind, content) = if ft.is_dir() {
                stack.push(p.clone());
                ('d', String::new())
            } else if ft.is_symlink() {
                ('l', fs::read_link(&p).unwrap().to_string_lossy().into_owned())
            } else if ft.is_file() {
                ('f', sha256_file(&p).0)
            } else if ft.is_char_device() {
                ('c', format!("{}:{}", libc::major(md.rdev()), libc::minor(md.rdev())))
            } else if ft.is_block_device() {
                ('b', format!("{}:{}", libc::major(md.rdev()), libc::minor(md.rdev())))
            } else if ft.is_fifo() {
                ('p', String::new())
            } else {
                ('s', String::new())
            };
            if !ft.is_dir() && md.nlink() > 1 {
                inodes.entry((md.dev(), md.ino())).or_default().push(rel.clone());
            }
            let xattrs = xattrs_of(&p);
            out.insert(rel, Node { kind, mode: md.mode() & 0o7777, uid: md.uid(), gid: md.gid(), content, xattrs });
        }
    }
    let mut groups: Vec<Vec<String>> = inodes
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    groups.sort();
    (out, groups)
}

/// Differences between two walked trees, one line each (empty when equal).
pub fn tree_diff(
    a_name: &str,
    a: &(BTreeMap<String, Node>, Vec<Vec<String>>),
    b_name: &str,
    b: &(BTreeMap<String, Node>, Vec<Vec<String>>),
) -> Vec<String> {
    let mut d = Vec::new();
    for (p, na) in &a.0 {
        match b.0.get(p) {
            None => d.push(format!("{p}: only in {a_name}")),
            Some(nb) if nb != na => d.push(format!("{p}: {a_name} {na:?} != {b_name} {nb:?}")),
            _ => {}
        }
    }
    for p in b.0.keys() {
        if !a.0.contains_key(p) {
            d.push(format!("{p}: only in {b_name}"));
        }
    }
    if a.1 != b.1 {
        for g in &a.1 {
            if !b.1.contains(g) {
                d.push(format!("hard-link group {g:?} only in {a_name}"));
            }
        }
        for g in &b.1 {
            if !a.1.contains(g) {
                d.push(format!("hard-link group {g:?} only in {b_name}"));
            }
        }
    }
    d
}

// ---------------------------------------------------------------------------------------------
// berth with the test's own --root and --data-root

pub struct Eng<'a> {
    pub ctx: &'a Ctx,
    pub data: PathBuf,
}

impl<'a> Eng<'a> {
    pub fn new(ctx: &'a Ctx) -> Eng<'a> {
        Eng { ctx, data: ctx.tempdir("data") }
    }

    /// `BIN --root R --data-root D args...`
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.ctx.command(&["--data-root", self.data.to_str().unwrap()]);
        c.args(args);
        c
    }

    pub fn cmd(&self, args: &[&str]) -> Out {
        self.ctx.exec_cmd(self.command(args), IMAGE_TIMEOUT)
    }

    /// `berth image args...`
    pub fn image(&self, args: &[&str]) -> Out {
        let mut v = vec!["image"];
        v.extend_from_slice(args);
        self.cmd(&v)
    }

    pub fn spawn_image(&self, args: &[&str]) -> Bg {
        let mut v = vec!["image"];
        v.extend_from_slice(args);
        self.ctx.spawn_cmd(self.command(&v))
    }

    /// `image inspect REF` → the one object; panics when it fails.
    #[track_caller]
    pub fn inspect(&self, r: &str) -> Value {
        let o = self.image(&["inspect", r]);
        o.ok();
        let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("inspect is not JSON ({e}): {o}"));
        let a = v.as_array().unwrap_or_else(|| panic!("inspect must print a JSON array: {o}"));
        assert_eq!(a.len(), 1, "inspect of one ref: {o}");
        a[0].clone()
    }

    /// `image ls -q` lines.
    #[track_caller]
    pub fn ids(&self) -> Vec<String> {
        let o = self.image(&["ls", "-q"]);
        o.ok();
        o.lines().into_iter().filter(|l| !l.trim().is_empty()).collect()
    }

    /// Every path under the data root (type letter + relative path; image/tmp only when it
    /// has entries) and the bytes of image/index.json.
    pub fn store_snapshot(&self) -> (Vec<String>, Vec<u8>) {
        let mut v = Vec::new();
        let mut stack = vec![self.data.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.filter_map(|e| e.ok()) {
                let p = e.path();
                let rel = p.strip_prefix(&self.data).unwrap().to_string_lossy().into_owned();
                let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    stack.push(p.clone());
                }
                if rel == "image/tmp" && dir_is_empty(&p) {
                    continue;
                }
                v.push(format!("{} {rel}", if is_dir { 'd' } else { '-' }));
            }
        }
        v.sort();
        (v, fs::read(self.data.join("image/index.json")).unwrap_or_default())
    }

    #[track_caller]
    pub fn assert_store_unchanged(&self, before: &(Vec<String>, Vec<u8>), what: &str) {
        let after = self.store_snapshot();
        let added: Vec<&String> = after.0.iter().filter(|p| !before.0.contains(p)).collect();
        let removed: Vec<&String> = before.0.iter().filter(|p| !after.0.contains(p)).collect();
        assert!(
            added.is_empty() && removed.is_empty(),
            "{what}: the data root changed: added {added:?}, removed {removed:?}"
        );
        assert!(
            before.1 == after.1,
            "{what}: image/index.json changed:\nbefore {}\nafter  {}",
            String::from_utf8_lossy(&before.1),
            String::from_utf8_lossy(&after.1)
        );
    }

    /// Blob files in the store.
    pub fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = dir_entries_sorted(&self.data.join("image/blobs/sha256"));
        v.sort();
        v
    }
}

fn dir_is_empty(p: &Path) -> bool {
    fs::read_dir(p).map(|mut r| r.next().is_none()).unwrap_or(true)
}

pub fn dir_entries_sorted(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(p) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Paths below `root` whose file name contains `needle`.
pub fn find_named(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().contains(needle) {
                v.push(e.path());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    v
}
