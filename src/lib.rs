//! berth's OCI runtime as a library: what the `berth` command line (runc's commands) and the
//! engine (images, containers with a shim each, networks) use to build, run and remove
//! containers. The kernel work lives in private modules named after each feature
//! (namespaces, cgroups, rootfs, capabilities, seccomp, process); this file is the boundary:
//! everything outside the runtime goes through what it exports.

mod capabilities;
mod cgroups;
mod container;
/// Fuzz targets: the in-crate mutation fuzzer's (tests), and the entry points of the
/// coverage-guided libFuzzer targets of fuzz/ (built with `--cfg fuzzing` only).
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
mod hooks;
mod namespaces;
mod process;
mod rootfs;
mod seccomp;
mod spec_cmd;

/// Crash points and weakened protections for the robustness tests (debug builds only).
pub mod faults;
/// `--log`, `--log-format` and `--debug`: the log file engines read, and RFC 3339 times.
pub mod logging;
/// Sizes as runc's and docker's flags take them (`512m`, `1.5g`, ...).
pub mod units;

/// A new process in a running container (`berth exec`).
pub use container::exec::{exec, exec_spawn, ExecOpts};
/// `berth list`'s table and JSON, as runc prints them.
pub use container::listing;
/// Operations on a container's cgroup and processes.
pub use container::manage::{events, pause, pids, ps, resume, update};
/// Rootless mode as runc's: `--rootless auto|true|false`, the default state root of a non-root
/// caller, and whether cgroups are used the rootless way (skipped when they cannot be written).
pub use container::rootless;
pub use container::rootless::use_rootless_cgroups;
/// Container ids and the process identity the state records.
pub use container::state::{pid_start_time, validate_id, Status};
/// The container lifecycle: create, start, run, state, kill, delete, list.
pub use container::{
    create, delete, kill, list, parse_signal, run, start, state_json, CreateOpts, Created, Error, Globals, ListEntry,
};
/// Gives back the binary's read-only pages and free heap once a long-lived process waits.
pub use process::memory::release_readonly_image;
/// Process file descriptors: signal and wait for one process without pid reuse races.
pub use process::pidfd;
/// The caller's terminal in raw mode while a container's terminal is relayed to it.
pub use process::tty::RawMode;
/// The default `config.json` (`berth spec`) and the runtime-spec features document.
pub use spec_cmd::{default_spec, features, to_runc_json, ALL_CAPS, OCI_VERSION};

use std::path::Path;

/// The environment variable that marks the runtime's re-executed container init.
pub const INIT_ENV: &str = process::INIT_ENV;

/// The container init's entry point after the runtime re-executed itself (`berth init` with
/// [`INIT_ENV`] set to the boot channel's descriptor). Never returns.
pub fn init_main(fd: i32) -> ! {
    process::init::main(fd)
}

/// The saved state of container `id` under the runtime root `root`, when there is one.
fn saved(root: &Path, id: &str) -> Option<container::state::Saved> {
    container::state::ContainerDir::open(root, id).ok()?.load().ok()
}

/// The container's cgroup statistics (the `data` of `berth events --stats`), when it has a
/// cgroup that can be read.
pub fn cgroup_stats(root: &Path, id: &str) -> Option<serde_json::Value> {
    let cg = saved(root, id)?.cgroup?;
    serde_json::to_value(cg.stats().ok()?).ok()
}

/// Whether the kernel's OOM killer killed a process in the container's cgroup. Reads the state
/// file without taking the container's lock (a shim asks this as its container exits, while
/// a `delete` may hold the lock).
pub fn oom_killed(root: &Path, id: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct CgroupOnly {
        cgroup: Option<cgroups::Manager>,
    }
    if validate_id(id).is_err() {
        return false;
    }
    let Ok(data) = std::fs::read(root.join(id).join(container::state::STATE_FILE)) else { return false };
    match serde_json::from_slice::<CgroupOnly>(&data) {
        Ok(CgroupOnly { cgroup: Some(cg) }) => cg.oom_kill_count().is_ok_and(|n| n > 0),
        _ => false,
    }
}
