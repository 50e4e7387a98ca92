//! Integration tests for berth's runtime core: they drive the real binary as root against the
//! real kernel. See integration/README.md for what each file covers and how to run it.

mod common;

mod apparmor;
mod badinput;
mod breakouts;
mod build;
mod build_debian;
mod cgroups;
mod cgroups_v2;
mod cli;
mod container;
mod container_cli;
pub mod crash;
mod crash_engine;
mod exec;
mod fulldisk;
mod hooks;
mod image;
mod layers;
mod lifecycle;
mod namespaces;
pub mod network;
mod network6;
mod process;
mod rootfs;
mod rootless;
mod rootless_engine;
mod seccomp;
mod security;
mod shim;
mod ship;
pub mod soak;
mod state;
mod syslog;
mod tty;
