//! Fuzz targets of the runtime (config.json parsing and validation, seccomp compilation, the
//! compiled-filter cache format), run by the mutation fuzzer of mutator.rs as unit tests:
//! `cargo test --lib fuzz_` (CI: 2 s per target; `make fuzz`: `BERTH_FUZZ_SECS` each). The
//! engine's targets (images, registries, CNI) are in the binary's tests (src/fuzz/engine.rs).
//!
//! Built with `--cfg fuzzing` (the coverage-guided libFuzzer targets of fuzz/), this module is
//! also the library's door for them: [`config_target`] and [`seccomp_target`] reach the
//! runtime's private modules, and nothing else is exported.

#[cfg(test)]
pub(crate) mod mutator;

#[cfg(test)]
use mutator::{outcome, run};
use std::path::Path;

/// Outside the mutation fuzzer (which is guided by these descriptions) a result is only
/// "ok" or "error": libFuzzer is guided by coverage.
#[cfg(not(test))]
fn outcome<T, E>(r: &Result<T, E>) -> String {
    if r.is_ok() { "ok" } else { "error" }.into()
}

#[cfg(test)]
const JSON_DICT: &[&[u8]] = &[
    b"\"linux\":{",
    b"\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\"}]}",
    b"\"namespaces\":[{\"type\":\"user\"},{\"type\":\"pid\",\"path\":\"/proc/1/ns/pid\"}]",
    b"\"sysctl\":{\"net.ipv4.ip_forward\":\"1\",\"kernel.domainname\":\"x\"}",
    b"\"capabilities\":{\"bounding\":[\"CAP_SYS_ADMIN\",\"CAP_NOPE\"]}",
    b"\"uidMappings\":[{\"containerID\":0,\"hostID\":1000,\"size\":65536}]",
    b"\"args\":[\"SCMP_CMP_MASKED_EQ\"]",
    b"\"index\":",
    b"\"op\":\"SCMP_CMP_GT\",\"value\":",
    b"\"architectures\":[\"SCMP_ARCH_X86_64\",\"SCMP_ARCH_AARCH64\"]",
    b"\"flags\":[\"SECCOMP_FILTER_FLAG_LOG\"]",
    b"\"errnoRet\":",
    b"\"listenerPath\":\"/x\"",
    b"\"timeOffsets\":{\"monotonic\":{\"secs\":1}}",
    b"\"intelRdt\":{}",
    b"\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"hard\":1,\"soft\":2}]",
];

/// What the runtime does with a config before touching the host: parse, the refusals of
/// unsupported fields, the namespace plan, sysctls, capabilities and the seccomp program.
pub fn config_target(data: &[u8]) -> String {
    let spec = match crate::container::parse_config(data, Path::new("config.json")) {
        Ok(s) => s,
        Err(e) => return format!("parse: {}", outcome::<(), _>(&Err(e))),
    };
    if let Err(e) = crate::container::refuse_unsupported(&spec) {
        return format!("refused: {}", outcome::<(), _>(&Err(e)));
    }
    let linux = spec.linux().as_ref();
    let plan = match crate::namespaces::Plan::from_linux(linux) {
        Ok(p) => p,
        Err(e) => return format!("namespaces: {}", outcome::<(), _>(&Err(e))),
    };
    if let Err(e) = crate::namespaces::check_sysctls(linux, &plan) {
        return format!("sysctls: {}", outcome::<(), _>(&Err(e)));
    }
    if let Some(p) = spec.process() {
        if let Err(e) = crate::capabilities::Masks::from_spec(p.capabilities().as_ref()) {
            return format!("caps: {}", outcome::<(), _>(&Err(e)));
        }
    }
    if let Some(s) = linux.and_then(|l| l.seccomp().as_ref()) {
        return format!("seccomp: {}", seccomp_target(s));
    }
    "ok".into()
}

/// A seccomp profile compiled to the BPF program the container's init loads, as `create` does
/// (through the program cache, in a private directory removed after each input): the program
/// read back from the cache and from the init's boot format must be the one compiled.
pub fn seccomp_target(s: &oci_spec::runtime::LinuxSeccomp) -> String {
    let parent = std::env::temp_dir().join(format!("berth-fuzz-seccomp-{}", std::process::id()));
    let dir = parent.join("cache");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(&parent);
    let first = crate::seccomp::prepare_cached(s, &dir);
    let out = match &first {
        Ok(p) => {
            let bytes = p.to_bytes();
            let again = crate::seccomp::prepare_cached(s, &dir).map(|c| c.to_bytes());
            assert!(again.as_ref().is_ok_and(|b| *b == bytes), "the cached program differs from the compiled one");
            let back = crate::seccomp::Prepared::from_bytes(&bytes).map(|b| b.to_bytes());
            assert!(back.as_ref().is_ok_and(|b| *b == bytes), "a compiled filter does not read back the same");
            format!("ok {}", p.uses_notify())
        }
        Err(e) => outcome::<(), _>(&Err(e)),
    };
    let _ = std::fs::remove_dir_all(&parent);
    out
}

/// The seccomp cache file (`Prepared::to_bytes`) read back: refused or taken, never a panic.
pub fn seccomp_cache_target(data: &[u8]) -> String {
    outcome(&crate::seccomp::Prepared::from_bytes(data).map(|p| p.uses_notify()))
}

#[cfg(test)]
fn default_config() -> Vec<u8> {
    serde_json::to_vec_pretty(&crate::default_spec(false)).unwrap_or_default()
}

#[cfg(test)]
#[test]
fn fuzz_config_json_parse_and_validate() {
    let mut with_seccomp: serde_json::Value = serde_json::from_slice(&default_config()).unwrap_or_default();
    with_seccomp["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
    });
    with_seccomp["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
    let seeds = vec![default_config(), serde_json::to_vec(&with_seccomp).unwrap_or_default()];
    let st = run("config.json", &seeds, JSON_DICT, config_target);
    assert!(st.outcomes > 3, "the fuzzer reached only {} outcomes", st.outcomes);
}

/// The seccomp cache file (`Prepared::to_bytes`) read back: a corrupt or hostile cache entry
/// must be refused, never trusted.
#[cfg(test)]
#[test]
fn fuzz_seccomp_cache_format() {
    let sec: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
    }))
    .unwrap_or_default();
    let seeds: Vec<Vec<u8>> = crate::seccomp::prepare(&sec).map(|p| vec![p.to_bytes()]).unwrap_or_default();
    assert!(!seeds.is_empty());
    run("seccomp-cache", &seeds, &[], |d| outcome(&crate::seccomp::Prepared::from_bytes(d).map(|p| p.instructions())));
}
