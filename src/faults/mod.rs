//! Fault injection for the robustness tests (integration/breakouts.rs, integration/crash.rs):
//! named crash points and switches that weaken one protection. Both are read from the
//! environment only in debug builds (or with the `faults` cargo feature); a release build
//! compiles them to nothing, so no environment can make an installed berth crash or drop a
//! check.
//!
//! - `BERTH_CRASH_AT=<point>[,<point>...]`: the process kills itself with SIGKILL when it reaches
//!   a named point (the points are listed in [`POINTS`]), as a power loss or `kill -9` would.
//! - `BERTH_WEAKEN=<protection>[,...]`: turns off one named protection, so a test can show the
//!   attack it stops succeeding before it shows berth refusing it (see [`PROTECTIONS`]).

/// Every crash point, in the order a command reaches them. `cli.start` is reached by every
/// command first (tests use it to tell whether a binary honours the hooks).
pub const POINTS: &[&str] = &[
    "cli.start",
    // The runtime (runc's commands).
    "runtime.create.state-dir",
    "runtime.create.init-spawned",
    "runtime.create.state-saved",
    "runtime.start.before-exec-fifo",
    "runtime.delete.killed",
    "runtime.delete.cgroup-removed",
    "runtime.exec.spawned",
    // The engine's containers (`container create|start|run|rm`).
    "engine.create.record-written",
    "engine.create.name-claimed",
    "engine.start.rootfs-mounted",
    // The network layer, inside `engine.start`: the attachment recorded (write-ahead), then
    // the CNI plugins' ADD done.
    "network.attach.recorded",
    "network.attach.cni-added",
    "engine.start.network-attached",
    "engine.start.shim-spawned",
    "engine.rm.torn-down",
    // The per-container shim, once the container has exited: before its clean-up (network,
    // rootfs, --rm) and after recording the exit.
    "shim.before-cleanup",
    "shim.exit-recorded",
    // The image store (pull, load): each side of each publishing rename.
    "image.blob.synced",
    "image.blob.renamed",
    "image.snapshot.synced",
    "image.snapshot.renamed",
    "image.index.tmp-synced",
    "image.index.renamed",
    // `image build`: a step's layer in the store before its image and cache record; its image
    // saved before the cache record; a COPY with one source copied and the next not.
    "build.step.layer-written",
    "build.step.image-saved",
    "build.copy.mid",
    // `container commit`: the layer and its snapshot stored; the manifest written before the
    // index names it.
    "image.commit.layer-stored",
    "image.commit.manifest-written",
    // `image push`: every blob uploaded, the manifest not yet put.
    "image.push.blobs-uploaded",
    // `network connect`: the attachment recorded (write-ahead), then the CNI ADD done.
    "network.connect.recorded",
    "network.connect.cni-added",
];

/// Every protection a debug build can be told to drop, with the attack it stops.
pub const PROTECTIONS: &[(&str, &str)] = &[
    ("masked-devnull-check", "CVE-2025-31133: a masked path covered by whatever /dev/null points to"),
    ("console-pty-fd", "CVE-2025-52565: /dev/console bound from /dev/pts/N, a path the container can replace"),
    ("proc-mount-check", "CVE-2019-16884, CVE-2023-27561: a non-procfs mounted on or inside /proc"),
    ("mount-dest-in-root", "CVE-2021-30465: a mount destination resolved through a symlink out of the rootfs"),
    ("sysctl-procfs-check", "CVE-2025-52881: a write meant for /proc/sys redirected by a mount"),
    ("build-upper-beneath", "a RUN step's symlink in its upper dir redirecting the builder's clean-up to the host"),
    ("unpack-link-beneath", "a layer or build-context tar hardlink whose target is a host file"),
    ("exe-readonly", "CVE-2019-5736: the runtime's re-executed binary reopened for writing through /proc/PID/exe"),
    ("init-host-dirfd", "CVE-2024-21626: a host directory fd left open in the init (runc's leaked cgroup handle)"),
    ("cwd-check", "CVE-2024-21626: process.cwd /proc/self/fd/N reaching a leaked host directory"),
    ("build-context-beneath", "a COPY/ADD source leading out of the build context through `..` or a symlink"),
];

fn listed(var: &str, name: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v.split(',').any(|p| p.trim() == name))
}

/// Kill this process with SIGKILL if `BERTH_CRASH_AT` names `point` (debug builds only).
#[inline]
pub fn crash_point(point: &str) {
    if cfg!(any(debug_assertions, feature = "faults")) && listed("BERTH_CRASH_AT", point) {
        debug_assert!(POINTS.contains(&point), "crash point {point} is not listed in POINTS");
        // SAFETY: kill(2) with our own pid and a constant signal.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        // SIGKILL to ourselves is delivered before kill returns; never go on regardless.
        loop {
            // SAFETY: pause(2) takes no arguments.
            unsafe { libc::pause() };
        }
    }
}

/// Whether `BERTH_WEAKEN` turns `protection` off (debug builds only; always false in release).
#[inline]
pub fn weakened(protection: &str) -> bool {
    cfg!(any(debug_assertions, feature = "faults")) && listed("BERTH_WEAKEN", protection)
}

/// Whether this build honours the hooks at all.
pub const ENABLED: bool = cfg!(any(debug_assertions, feature = "faults"));

/// `BERTH_WEAKEN=...` and `BERTH_CRASH_AT=...` as environment entries for the runtime's
/// re-executed init (whose environment is otherwise only its boot channel); empty in release.
pub(crate) fn inherited_env() -> Vec<std::ffi::CString> {
    if !ENABLED {
        return Vec::new();
    }
    ["BERTH_WEAKEN", "BERTH_CRASH_AT"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().and_then(|v| std::ffi::CString::new(format!("{k}={v}")).ok()))
        .collect()
}
