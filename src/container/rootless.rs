//! Running as an unprivileged user, as runc does: the `--rootless` decision (runc's
//! `shouldUseRootlessCgroupManager`), the default `--root` for a non-root caller
//! (`$XDG_RUNTIME_DIR/berth`, runc's `shouldHonorXDGRuntimeDir`) and runc's checks of a config
//! run by a non-root euid (its `rootlessEUIDCheck`).

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::PathBuf;

/// The effective uid of the caller.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective gid of the caller.
pub fn egid() -> u32 {
    // SAFETY: getegid cannot fail.
    unsafe { libc::getegid() }
}

/// True when the caller is in a user namespace other than the initial one (its uid_map is not
/// the identity map of all 2^32 ids), as moby's `userns.RunningInUserNS`.
pub fn running_in_userns() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(s) => s.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

/// `--rootless` as runc reads it: "auto" or empty is `None`, else Go's `strconv.ParseBool`.
pub fn parse_bool_or_auto(s: &str) -> Result<Option<bool>, String> {
    if s.is_empty() || s.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Some(true)),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Some(false)),
        _ => Err(format!("unknown --rootless {s:?} (true, false or auto)")),
    }
}

/// Whether cgroups are handled as for an unprivileged user (runc's
/// `shouldUseRootlessCgroupManager`): `--rootless` when given; else true for a non-root euid,
/// false for root in the initial user namespace, and for root inside a user namespace true
/// unless the systemd driver is asked for (berth cannot ask systemd who owns it: it assumes root,
/// as runc does when it cannot tell).
pub fn use_rootless_cgroups(flag: Option<bool>, systemd_cgroup: bool) -> bool {
    if let Some(b) = flag {
        return b;
    }
    if euid() != 0 {
        return true;
    }
    if !running_in_userns() {
        return false;
    }
    !systemd_cgroup
}

/// The default `--root`: `$XDG_RUNTIME_DIR/berth` for a non-root caller (and for root in a user
/// namespace whose $USER is not "root"), else /run/berth. The bool says XDG_RUNTIME_DIR was used.
pub fn default_root() -> (PathBuf, bool) {
    let honor = if euid() != 0 {
        true
    } else if !running_in_userns() {
        false
    } else {
        std::env::var("USER").map_or(true, |u| u != "root")
    };
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(x) if honor => (PathBuf::from(x).join("berth"), true),
        _ => (PathBuf::from("/run/berth"), false),
    }
}

/// Makes the default root in XDG_RUNTIME_DIR (0700 with the sticky bit, which keeps it from
/// being pruned, as the XDG specification says and runc does).
pub fn prepare_xdg_root(root: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(|e| {
        format!("the path in $XDG_RUNTIME_DIR must be writable by the user: mkdir {}: {e}", root.display())
    })?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o1700)).map_err(|e| {
        format!("you should check permission of the path in $XDG_RUNTIME_DIR: chmod {}: {e}", root.display())
    })
}

/// runc refuses additional groups for a non-root caller (it cannot set them), for the init and
/// for `exec` alike.
pub fn check_process(p: &oci_spec::runtime::Process) -> Result<(), String> {
    if euid() != 0 && p.user().additional_gids().as_ref().is_some_and(|g| !g.is_empty()) {
        return Err("cannot set any additional groups in a rootless container".into());
    }
    Ok(())
}

/// runc's `rootlessEUIDCheck`, for a caller whose euid is not 0: a user namespace is needed,
/// with mappings unless one is joined, and uid=/gid= mount options must name mapped ids.
pub fn check_config(spec: &Spec) -> Result<(), String> {
    let linux = spec.linux().as_ref();
    let userns = linux
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| ns.iter().find(|n| n.typ() == LinuxNamespaceType::User));
    if let Some(p) = spec.process() {
        check_process(p)?;
    }
    let Some(userns) = userns else {
        return Err("rootless container requires user namespaces".into());
    };
    let uid_maps = linux.and_then(|l| l.uid_mappings().clone()).unwrap_or_default();
    let gid_maps = linux.and_then(|l| l.gid_mappings().clone()).unwrap_or_default();
    if userns.path().is_none() {
        if uid_maps.is_empty() {
            return Err("rootless containers requires at least one UID mapping".into());
        }
        if gid_maps.is_empty() {
            return Err("rootless containers requires at least one GID mapping".into());
        }
    }
    let mapped = |maps: &[oci_spec::runtime::LinuxIdMapping], id: u64| {
        maps.iter().any(|m| id >= u64::from(m.container_id()) && id < u64::from(m.container_id()) + u64::from(m.size()))
    };
    for m in spec.mounts().iter().flatten() {
        for opt in m.options().iter().flatten() {
            for (prefix, what, maps) in [("uid=", "uid", &uid_maps), ("gid=", "gid", &gid_maps)] {
                let Some(v) = opt.strip_prefix(prefix) else { continue };
                // Unknown values are left to the kernel, as runc does.
                let Ok(id) = v.parse::<u64>() else { continue };
                let why = if maps.is_empty() {
                    format!("user namespaces enabled, but no {what} mappings found")
                } else if !mapped(maps, id) {
                    format!("user namespaces enabled, but no mapping found for {what} {id}")
                } else {
                    continue;
                };
                return Err(format!("cannot specify {opt} mount option for rootless container: {why}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bool_or_auto() {
        assert_eq!(parse_bool_or_auto("auto"), Ok(None));
        assert_eq!(parse_bool_or_auto("AUTO"), Ok(None));
        assert_eq!(parse_bool_or_auto(""), Ok(None));
        assert_eq!(parse_bool_or_auto("true"), Ok(Some(true)));
        assert_eq!(parse_bool_or_auto("1"), Ok(Some(true)));
        assert_eq!(parse_bool_or_auto("F"), Ok(Some(false)));
        assert!(parse_bool_or_auto("yes").is_err());
    }

    #[test]
    fn flag_wins() {
        assert!(use_rootless_cgroups(Some(true), false));
        assert!(!use_rootless_cgroups(Some(false), false));
    }

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn euid_checks() {
        let no_userns = spec(r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"}]}}"#);
        assert_eq!(check_config(&no_userns).unwrap_err(), "rootless container requires user namespaces");
        let no_maps = spec(r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"user"}]}}"#);
        assert_eq!(check_config(&no_maps).unwrap_err(), "rootless containers requires at least one UID mapping");
        let joined =
            spec(r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"user","path":"/proc/1/ns/user"}]}}"#);
        assert!(check_config(&joined).is_ok());
        let ok = r#"{"ociVersion":"1.0.2","mounts":[{"destination":"/dev/pts","type":"devpts","options":["gid=G"]}],
            "linux":{"namespaces":[{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":1000,"size":1}],
            "gidMappings":[{"containerID":0,"hostID":1000,"size":1}]}}"#;
        assert!(check_config(&spec(&ok.replace("gid=G", "gid=0"))).is_ok());
        assert!(check_config(&spec(&ok.replace("gid=G", "gid=x"))).is_ok());
        assert_eq!(
            check_config(&spec(&ok.replace("gid=G", "gid=5"))).unwrap_err(),
            "cannot specify gid=5 mount option for rootless container: \
             user namespaces enabled, but no mapping found for gid 5"
        );
    }
}
