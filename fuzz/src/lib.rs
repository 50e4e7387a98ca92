//! The harness of berth's coverage-guided fuzz targets (fuzz_targets/*.rs, one libFuzzer
//! binary each). Each function here is one target's body: it feeds the input to berth's real
//! code and checks what must hold whatever the input (a panic or a failed check is a crash).
//!
//! The runtime's code is reached through the library (`berth::fuzz`, compiled with
//! `--cfg fuzzing`). The engine's parsers live in the binary crate, which cannot be linked, so
//! their source files are compiled here as they are, under the same module paths (`#[path]`
//! below): only files that need nothing else of the binary can be, and that is what makes
//! them fuzzable. The modules' own items stay `pub(crate)`, so the harness lives in this
//! crate and the targets only call it.

#![allow(dead_code, unused_imports, clippy::all)]

#[path = "../../src/image"]
pub mod image {
    pub mod chunks;
    pub mod digest;
    pub mod reference;
    pub mod registry;
    pub mod seccomp_profile;
    pub mod tarread;
    pub mod types;
    pub mod unpack;
}

#[path = "../../src/builder"]
pub mod builder {
    pub mod ignore;
    pub mod parser;
    pub mod shell;
}

#[path = "../../src/network"]
pub mod network {
    pub mod cni_result;
}

/// `userns-remap` is never set up in a fuzz target, so the unpacker shifts no owner. The real
/// module (src/remap/) needs the rest of the binary; this stands in for its two calls.
pub mod remap {
    pub struct IdMap;
    impl IdMap {
        pub fn uid(&self, id: u32) -> Option<u32> {
            Some(id)
        }
        pub fn gid(&self, id: u32) -> Option<u32> {
            Some(id)
        }
    }
    pub fn active() -> Option<&'static IdMap> {
        None
    }
}

use std::path::PathBuf;

/// config.json parsed and validated as `create` does before touching the host (refusals, the
/// namespace plan, sysctls, capabilities, the seccomp program compiled and read back).
pub fn config_json(data: &[u8]) {
    let _ = berth::fuzz::config_target(data);
}

/// A docker seccomp profile (`--security-opt seccomp=FILE`) converted to the runtime's format,
/// then compiled to BPF by the runtime (and the compiled program read back from the cache
/// format). The first byte picks the capabilities the profile's conditions see.
pub fn seccomp_profile(data: &[u8]) {
    let Some((&sel, json)) = data.split_first() else { return };
    let all = ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_BOOT", "CAP_SYSLOG"];
    let caps: Vec<String> =
        all.iter().enumerate().filter(|(i, _)| sel & (1 << i) != 0).map(|(_, c)| c.to_string()).collect();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else { return };
    let Ok(converted) = image::seccomp_profile::convert_profile(&v, &caps) else { return };
    // What convert_profile makes is what the engine puts into config.json: it must be a
    // seccomp section the runtime reads.
    let sec: oci_spec::runtime::LinuxSeccomp = match serde_json::from_value(converted.clone()) {
        Ok(s) => s,
        Err(e) => panic!("a converted profile is not an OCI seccomp section ({e}): {converted}"),
    };
    let _ = berth::fuzz::seccomp_target(&sec);
    let _ = berth::fuzz::seccomp_cache_target(json);
}

/// Image references: what parses prints back to a reference that parses to the same.
pub fn image_reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = image::reference::Reference::parse(s) {
        let printed = r.to_string();
        let again = image::reference::Reference::parse(&printed);
        assert!(
            again.as_ref().is_ok_and(|a| a.to_string() == printed),
            "{s:?} printed as {printed:?} does not parse back the same: {:?}",
            again.map(|a| a.to_string())
        );
    }
}

/// Image manifests and indexes as a registry or an archive serves them, with the layers'
/// compression read from their media types.
pub fn manifest_index(data: &[u8]) {
    if let Ok(m) = serde_json::from_slice::<image::types::Manifest>(data) {
        for l in &m.layers {
            let _ = image::types::layer_compression(&l.media_type);
        }
        let _ = serde_json::to_vec(&m);
    }
    if let Ok(i) = serde_json::from_slice::<image::types::Index>(data) {
        let _ = serde_json::to_vec(&i);
    }
    let _ = serde_json::from_slice::<image::types::ImageConfig>(data);
}

/// Layer tars (plain, gzip or zstd) unpacked for real into `P/root` (as root: owners, devices,
/// xattrs, whiteouts). The first byte picks the whiteout mode. Whatever the tar holds, nothing
/// may appear in `P` beside `root` (no escape through `..`, a symlink or a hardlink), and the
/// canary file outside (CANARY, which the seeds link to and write through) keeps its content
/// and its single link. (Not the host's /etc/passwd: other users of the machine change it.)
pub fn layer_unpack(data: &[u8]) {
    use std::os::unix::fs::MetadataExt;
    const CANARY: &str = "/tmp/berth-fuzz-canary";
    const CONTENT: &[u8] = b"the unpack must not reach this file\n";
    let Some((&sel, tar)) = data.split_first() else { return };
    if std::fs::read(CANARY).ok().as_deref() != Some(CONTENT) {
        std::fs::write(CANARY, CONTENT).expect("the canary file");
    }
    let parent: PathBuf = std::env::temp_dir().join(format!("berth-fuzz-unpack-{}", std::process::id()));
    let root = parent.join("root");
    let _ = std::fs::remove_dir_all(&parent);
    std::fs::create_dir_all(&root).expect("the unpack root");
    let mode = if sel & 1 == 0 { image::unpack::WhiteoutMode::Overlay } else { image::unpack::WhiteoutMode::Apply };
    let _ = image::unpack::unpack_layer(tar, &root, mode);
    let beside: Vec<String> = std::fs::read_dir(&parent)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != "root").collect())
        .unwrap_or_default();
    assert!(beside.is_empty(), "the unpack wrote outside its root: {beside:?}");
    assert!(std::fs::read(CANARY).ok().as_deref() == Some(CONTENT), "the canary outside the root was written");
    let links = |p: &str| std::fs::symlink_metadata(p).map(|m| (m.nlink(), m.file_type().is_file())).ok();
    assert_eq!(links(CANARY), Some((1, true)), "the canary outside the root was linked or replaced");
    assert_eq!(links("/etc/passwd"), Some((1, true)), "the host's /etc/passwd was linked or replaced");
    let _ = std::fs::remove_dir_all(&parent);
    // The tar reader's pax records on their own too (they are what names and times come from).
    let mut out = Vec::new();
    if image::tarread::parse_pax(tar, &mut out).is_ok() {
        for (k, v) in &out {
            if k == b"mtime" {
                let _ = image::tarread::pax_time(v);
            }
        }
    }
}

/// Dockerfiles: the parser, every instruction's command, and the word and heredoc parsers.
pub fn dockerfile(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(df) = builder::parser::parse(&s) {
        for n in &df.nodes {
            let _ = n.cmd();
        }
        for l in s.lines().take(16) {
            let _ = builder::parser::parse_words(l, df.escape);
        }
        for w in s.split_whitespace().filter(|w| w.starts_with("<<")) {
            let _ = builder::parser::parse_heredoc(w);
        }
    }
}

/// The builder's word expansion (ARG, ENV and the instructions' `$VAR`, `${VAR:-x}`,
/// `${VAR#pat}` ...). The first byte picks the escape character and the lexer's modes.
pub fn word_expansion(data: &[u8]) {
    let Some((&mode, word)) = data.split_first() else { return };
    let word = String::from_utf8_lossy(word);
    let env: Vec<(String, String)> =
        vec![("A".into(), "a/b.c/d.e".into()), ("B".into(), "two words".into()), ("E".into(), String::new())];
    let mut lex = builder::shell::Lex::new(if mode & 1 == 0 { '\\' } else { '`' });
    lex.raw_quotes = mode & 2 != 0;
    lex.skip_unset = mode & 4 != 0;
    lex.skip_quotes = mode & 8 != 0;
    let _ = lex.process_word(&word, &env);
    let _ = lex.process_words(&word, &env);
}

/// `.dockerignore`: the file, then a NUL, then paths to match (one a line) against it and
/// against each of its patterns.
pub fn dockerignore(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let (file, paths) = s.split_once('\0').unwrap_or((&s, ""));
    let Ok(ig) = builder::ignore::Ignore::parse(".dockerignore", file) else { return };
    for p in paths.lines().take(8) {
        let _ = (ig.excluded(p), ig.may_include_below(p));
        for pat in file.lines().take(8) {
            let _ = builder::ignore::glob(pat, p);
        }
    }
}

/// A CNI plugin chain's result read for the container's interface.
pub fn cni_result(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Some(i) = network::cni_result::interface_of("n", "eth0", "/run/berth/netns/c", &v) {
            // What berth records of the interface reads back the same.
            let json = serde_json::to_vec(&i).expect("an interface serializes");
            let back: network::cni_result::Interface = serde_json::from_slice(&json).expect("an interface reads back");
            assert_eq!(back, i);
        }
    }
}

/// Registry auth headers: a `WWW-Authenticate` challenge, and the base64 of a Basic
/// credential (docker's config.json `auth`).
pub fn registry_auth(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let _ = image::registry::parse_challenge(&s);
    let _ = image::registry::base64_decode(&s);
}
