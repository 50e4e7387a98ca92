//! Link-time layout of the `berth` binary: the functions the runtime's commands execute come
//! first (link/symbol-order.txt, made by scripts/symbol-order.py), so a short runtime call maps
//! a few dense pages of text instead of pages scattered through the whole binary, and relative
//! relocations are packed (DT_RELR) so start-up reads kilobytes of them, not 300 KiB (see
//! README, design notes). Both need lld: the toolchain's own rust-lld (rustc's default linker
//! on x86_64 Linux) or the system's ld.lld; without either the default linker is used and only
//! memory is lost.

use std::path::{Path, PathBuf};

/// The directory that holds an `ld.lld` for `cc -fuse-ld=lld`: the toolchain's gcc-ld shims
/// first, then the system's.
fn lld_dir() -> Option<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let host = std::env::var("HOST").ok()?;
    if let Ok(out) = std::process::Command::new(rustc).args(["--print", "sysroot"]).output() {
        let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dir = Path::new(&sysroot).join("lib/rustlib").join(&host).join("bin/gcc-ld");
        if dir.join("ld.lld").exists() {
            return Some(dir);
        }
    }
    ["/usr/bin", "/usr/local/bin"].iter().map(PathBuf::from).find(|d| d.join("ld.lld").exists())
}

fn main() {
    println!("cargo:rerun-if-changed=link/symbol-order.txt");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BERTH_LINK_MAP");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let order = Path::new(&dir).join("link/symbol-order.txt");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if !linux {
        return;
    }
    let Some(lld) = lld_dir() else {
        println!("cargo:warning=no ld.lld found: berth is linked without its symbol order and packed relocations (more memory per runtime call)");
        return;
    };
    println!("cargo:rustc-link-arg-bins=-B{}", lld.display());
    println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
    if order.exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    // Relative relocations packed (DT_RELR; glibc 2.36+ applies them in static-pie too).
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    if let Ok(map) = std::env::var("BERTH_LINK_MAP") {
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={map}");
    }
}
