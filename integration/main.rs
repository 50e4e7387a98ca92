//! Integration tests for berth's runtime core: they drive the real binary as root against the
//! real kernel. See integration/README.md for what each file covers and how to run it.

mod common;

mod apparmor;
mod badinput;
mod cgroups;
mod cgroups_v2;
mod cli;
mod container;
mod exec;
mod hooks;
mod image;
mod layers;
mod lifecycle;
mod namespaces;
mod network;
mod process;
mod rootfs;
mod rootless;
mod rootless_engine;
mod seccomp;
mod security;
mod shim;
mod state;
mod tty;
