//! The docker-style engine commands `berth container ...` and `berth volume ...`.
//!
//! A container is a directory under `<data-root>/containers/<id>/` (see [`store`]) holding its
//! record, its bundle (config.json built from the image at every start, rootfs = overlay of
//! the image's snapshots with a per-container upper dir) and the files of its shim (state,
//! json-file log, attach socket). `start` mounts the rootfs, attaches the network, writes
//! config.json and spawns the detached shim, which runs the container through the runtime
//! (runtime id = the container id, state under `--root`) and, once the container is gone for
//! good, runs `berth container cleanup ID`: network detach, rootfs unmount, removal for --rm.
//!
//! Locking: changes to a container's mounts/network/dir happen under its `lock` file; nobody
//! holds that lock while waiting for a shim to exit (the shim's clean-up needs it).

pub(crate) mod adapt;
pub mod cli;
pub(crate) mod commit;
pub(crate) mod copy;
pub mod events;
pub mod init;
mod logopts;
pub(crate) mod manage;
pub(crate) mod ops;
pub(crate) mod opts;
pub(crate) mod resources;
pub(crate) mod run;
mod runtimes;
pub(crate) mod show;
pub(crate) mod store;
pub mod system;
pub(crate) mod volume;

use std::path::{Path, PathBuf};

pub use cli::{ContainerCmd, VolumeCmd};

/// Global settings of the engine commands.
pub struct Engine {
    /// Engine data (`--data-root`).
    pub data_root: PathBuf,
    /// The runtime's state root (`--root`).
    pub root: PathBuf,
    /// This binary (runtime for the shim, clean-up command, `--init`).
    pub exe: PathBuf,
    pub systemd_cgroup: bool,
    pub debug: bool,
}

impl Engine {
    pub fn new(data_root: &Path, root: &Path, systemd_cgroup: bool, debug: bool) -> Engine {
        let exe = std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
            }
        };
        Engine { data_root: abs(data_root), root: abs(root), exe, systemd_cgroup, debug }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad input (flags, names, specifications).
    #[error("{0}")]
    Invalid(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// A path that is not in a container's filesystem (`cp`).
    #[error("{0}")]
    NoSuchPath(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{op} {}: {err}", path.display())]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
    #[error("{0}")]
    Image(String),
    #[error("{0}")]
    Network(String),
    #[error("{0}")]
    Bundle(String),
    /// The container could not be started (code: 125, 126 not executable, 127 not found).
    #[error("{msg}")]
    Start { msg: String, code: i32 },
    #[error("{0}")]
    Runtime(String),
    #[error("{0}")]
    Msg(String),
}

impl EngineError {
    /// docker's exit code: the container's 126/127 when its command could not be run, else
    /// 125 (an error of the engine itself).
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Start { code, .. } => *code,
            _ => 125,
        }
    }
}

/// Steps to undo, run in reverse order on drop unless disarmed.
pub(crate) struct Undo<'a> {
    steps: Vec<Box<dyn FnOnce() + 'a>>,
}

impl<'a> Undo<'a> {
    pub fn new() -> Undo<'a> {
        Undo { steps: Vec::new() }
    }

    pub fn push(&mut self, f: impl FnOnce() + 'a) {
        self.steps.push(Box::new(f));
    }

    /// Everything went well: keep what was made.
    pub fn disarm(mut self) {
        self.steps.clear();
    }

    /// Undo now.
    pub fn run(mut self) {
        self.unwind();
    }

    fn unwind(&mut self) {
        while let Some(f) = self.steps.pop() {
            f();
        }
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        self.unwind();
    }
}

/// `berth container ...`; returns the exit code (errors for the caller to print).
pub fn container_command(e: &Engine, cmd: ContainerCmd) -> Result<i32, EngineError> {
    ops::dispatch(e, cmd)
}

/// `berth network connect NETWORK CONTAINER`
pub fn network_connect(
    e: &Engine,
    network: &str,
    container: &str,
    aliases: &[String],
    ip: Option<&str>,
) -> Result<(), EngineError> {
    ops::network_connect(e, &store::Containers::new(&e.data_root), network, container, aliases, ip)
}

/// `berth network disconnect NETWORK CONTAINER`
pub fn network_disconnect(e: &Engine, network: &str, container: &str) -> Result<(), EngineError> {
    ops::network_disconnect(e, &store::Containers::new(&e.data_root), network, container)
}

/// `berth volume ...`
pub fn volume_command(e: &Engine, cmd: VolumeCmd) -> Result<i32, EngineError> {
    volume::command(e, cmd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn undo_runs_in_reverse_unless_disarmed() {
        let log = RefCell::new(Vec::new());
        {
            let mut u = Undo::new();
            u.push(|| log.borrow_mut().push(1));
            u.push(|| log.borrow_mut().push(2));
        }
        assert_eq!(*log.borrow(), vec![2, 1]);
        log.borrow_mut().clear();
        let mut u = Undo::new();
        u.push(|| log.borrow_mut().push(1));
        u.disarm();
        assert!(log.borrow().is_empty());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(EngineError::Invalid("x".into()).exit_code(), 125);
        assert_eq!(EngineError::Start { msg: "x".into(), code: 127 }.exit_code(), 127);
    }
}
