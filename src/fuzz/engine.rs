//! Fuzz targets of the engine (image references, manifests and indexes, layer tars unpacked
//! for real, pax records, registry auth challenges, CNI results, docker seccomp profiles), run by the mutation fuzzer
//! of mutator.rs as the binary's unit tests: `cargo test --bin berth fuzz_` (CI: 2 s per
//! target; `make fuzz`: `BERTH_FUZZ_SECS` each).

use crate::fuzz_mutator::{outcome, run};
use crate::image::reference::Reference;
use crate::image::types::{Index, Manifest};
use std::path::PathBuf;

#[test]
fn fuzz_image_reference() {
    let seeds: Vec<Vec<u8>> = [
        "busybox",
        "library/busybox:1.36",
        "127.0.0.1:5000/a/b/c:tag",
        "ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "localhost/x:y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "[::1]:5000/img",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let dict: &[&[u8]] = &[b":", b"@sha256:", b"/", b"[::1]", b"localhost", b"docker.io/", b"library/", b"__", b"-"];
    run("image-reference", &seeds, dict, |d| {
        let s = String::from_utf8_lossy(d);
        let r = Reference::parse(&s);
        if let Ok(r) = &r {
            // What a reference prints parses back to the same reference.
            let again = Reference::parse(&r.to_string());
            assert!(
                again.as_ref().is_ok_and(|a| a.to_string() == r.to_string()),
                "{s:?} printed as {} does not parse back the same: {:?}",
                r,
                again.map(|a| a.to_string())
            );
        }
        outcome(&r)
    });
}

#[test]
fn fuzz_manifest_and_index() {
    let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": 7},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": 9},
                   {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d, "size": 1}]
    });
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 7,
                       "platform": {"architecture": "amd64", "os": "linux"}},
                      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 7,
                       "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}]
    });
    let seeds = vec![serde_json::to_vec(&manifest).unwrap_or_default(), serde_json::to_vec(&index).unwrap_or_default()];
    let dict: &[&[u8]] = &[b"\"digest\":", b"sha256:", b"sha512:", b"\"size\":", b"+zstd", b"\"platform\":{}"];
    let host = crate::image::types::host_platform();
    run("manifest-index", &seeds, dict, |data| {
        let m = serde_json::from_slice::<Manifest>(data);
        if let Ok(m) = &m {
            for l in &m.layers {
                let _ = crate::image::types::layer_compression(&l.media_type);
            }
        }
        let i = serde_json::from_slice::<Index>(data);
        let sel = i.as_ref().ok().map(|i| crate::image::pull::select_manifest(i, &host).is_ok());
        format!("{} / {} / {sel:?}", outcome(&m), outcome(&i))
    });
}

/// A tar of `entries`: (name, kind, link target or content).
fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let body: &[u8] = if *kind == tar::EntryType::Regular { data.as_bytes() } else { b"" };
        h.set_size(body.len() as u64);
        let r = if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.set_link_name_literal(data).and_then(|_| {
                h.set_path(name)?;
                h.set_cksum();
                b.append(&h, body)
            })
        } else {
            b.append_data(&mut h, name, body)
        };
        let _ = r;
    }
    b.into_inner().unwrap_or_default()
}

/// Layer tars unpacked for real (as root: owners, devices, xattrs) into `P/root`; whatever
/// the tar holds, nothing may appear in `P` beside `root` (no escape through `..`, a symlink
/// or a hardlink), and the unpack either succeeds or fails with an error.
#[test]
fn fuzz_layer_tar_unpack() {
    if unsafe_euid() != 0 {
        eprintln!("SKIPPED: unpacking layers needs root");
        return;
    }
    let parent: PathBuf = std::env::temp_dir().join(format!("berth-fuzz-unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&parent);
    let root = parent.join("root");
    let p = parent.to_string_lossy().into_owned();
    use tar::EntryType as T;
    let seeds = vec![
        tar_of(&[
            ("etc/", T::Directory, ""),
            ("etc/hostname", T::Regular, "box\n"),
            ("bin/sh", T::Symlink, "busybox"),
            ("bin/link", T::Link, "etc/hostname"),
            ("etc/.wh.gone", T::Regular, ""),
            ("var/.wh..wh..opq", T::Regular, ""),
        ]),
        tar_of(&[("../escaped", T::Regular, "x")]),
        tar_of(&[("evil", T::Symlink, &p), ("evil/escaped", T::Regular, "x")]),
        tar_of(&[("rel", T::Symlink, "../.."), ("rel/escaped", T::Regular, "x")]),
        tar_of(&[("hard", T::Link, "../escaped"), ("hard2", T::Link, "/etc/passwd")]),
        tar_of(&[("c", T::Link, &format!("{p}-canary")), ("c", T::Regular, "x")]),
        tar_of(&[("d/", T::Directory, ""), ("d", T::Symlink, "/"), ("d/escaped", T::Regular, "x")]),
    ];
    let dict: &[&[u8]] = &[b"../", b".wh.", b".wh..wh..opq", b"ustar\x0000", b"ustar  \x00", p.as_bytes()];
    // A canary outside the root that seeds link to and write through (not the host's
    // /etc/passwd: other users of the machine may change it meanwhile; of that, only its single
    // link is checked).
    use std::os::unix::fs::MetadataExt;
    let canary = format!("{p}-canary");
    let content = b"the unpack must not reach this file\n";
    let _ = std::fs::write(&canary, content);
    let links = |f: &str| std::fs::symlink_metadata(f).map(|m| (m.nlink(), m.file_type().is_file())).ok();
    run("layer-tar-unpack", &seeds, dict, |data| {
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::create_dir_all(&root);
        let r = crate::image::unpack::unpack_layer(data, &root, crate::image::unpack::WhiteoutMode::Overlay);
        let beside: Vec<String> = std::fs::read_dir(&parent)
            .map(|rd| {
                rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != "root").collect()
            })
            .unwrap_or_default();
        assert!(beside.is_empty(), "the unpack wrote outside its root: {beside:?}");
        assert!(
            std::fs::read(&canary).ok().as_deref() == Some(&content[..]),
            "the canary outside the root was written"
        );
        assert_eq!(links(&canary), Some((1, true)), "the canary outside the root was linked or replaced");
        assert_eq!(links("/etc/passwd"), Some((1, true)), "the host's /etc/passwd was linked or replaced");
        outcome(&r)
    });
    let _ = std::fs::remove_dir_all(&parent);
    let _ = std::fs::remove_file(&canary);
}

fn unsafe_euid() -> u32 {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

#[test]
fn fuzz_pax_records() {
    let seeds: Vec<Vec<u8>> = vec![
        b"30 mtime=1700000000.123456789\n".to_vec(),
        b"20 path=a/b/c/d.txt\n27 SCHILY.xattr.user.k=v\n".to_vec(),
        b"24 GNU.sparse.major=1\n24 GNU.sparse.minor=0\n".to_vec(),
    ];
    run("pax-records", &seeds, &[b"mtime=", b"-1.5", b"path=", b"LIBARCHIVE.xattr."], |d| {
        let mut out = Vec::new();
        let r = crate::image::tarread::parse_pax(d, &mut out);
        for (k, v) in &out {
            if k == b"mtime" {
                let _ = crate::image::tarread::pax_time(v);
            }
        }
        outcome(&r.map_err(|e| e.to_string()))
    });
}

#[test]
fn fuzz_registry_auth_challenge() {
    let seeds: Vec<Vec<u8>> = [
        "Bearer realm=\"https://auth.example/token\",service=\"registry\",scope=\"repository:a/b:pull\"",
        "Basic realm=\"Registry Realm\"",
        "bearer realm=x, service=\"a,b\", error=\"insufficient_scope\"",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    run("registry-auth-challenge", &seeds, &[b"=\"", b"\\\"", b",", b"realm", b"Bearer "], |d| {
        format!("{}", crate::image::registry::parse_challenge(&String::from_utf8_lossy(d)).is_some())
    });
}

#[test]
fn fuzz_cni_result() {
    let seed = serde_json::json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "br-x", "mac": "aa:bb:cc:dd:ee:ff"},
                       {"name": "eth0", "mac": "02:42:ac:11:00:02", "sandbox": "/run/berth/netns/c"}],
        "ips": [{"interface": 1, "address": "10.88.0.2/16", "gateway": "10.88.0.1"},
                {"interface": 1, "address": "fd00::2/64"}],
        "dns": {}
    });
    let seeds = vec![serde_json::to_vec(&seed).unwrap_or_default()];
    run("cni-result", &seeds, &[b"\"interface\":", b"/33", b"\"sandbox\":"], |d| {
        let v: Result<serde_json::Value, _> = serde_json::from_slice(d);
        match &v {
            Ok(v) => format!("{}", crate::network::interface_of("n", "eth0", "/run/berth/netns/c", v).is_some()),
            Err(_) => outcome(&v),
        }
    });
}

/// docker's seccomp profile format converted to the runtime's (`--security-opt seccomp=FILE`):
/// whatever the file holds, a result or an error, never a panic.
#[test]
fn fuzz_docker_seccomp_profile() {
    let caps = vec!["CAP_SYS_ADMIN".to_string(), "CAP_NET_ADMIN".to_string()];
    let seeds = vec![serde_json::to_vec(&crate::image::seccomp_profile::default_profile(&caps)).unwrap_or_default()];
    let dict: &[&[u8]] = &[
        b"\"includes\":{\"caps\":[\"CAP_SYS_ADMIN\"]}",
        b"\"excludes\":{\"arches\":[\"s390x\"]}",
        b"\"archMap\":[]",
        b"\"minKernel\":\"4.8\"",
        b"\"action\":\"SCMP_ACT_NOTIFY\"",
    ];
    run("docker-seccomp-profile", &seeds, dict, |d| match serde_json::from_slice::<serde_json::Value>(d) {
        Ok(v) => outcome(&crate::image::seccomp_profile::convert_profile(&v, &caps)),
        Err(e) => outcome::<(), _>(&Err(e)),
    });
}
