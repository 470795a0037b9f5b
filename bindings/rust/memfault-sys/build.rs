// SPDX-License-Identifier: MIT
//! Find libmemfault with pkg-config (std only, no build dependencies).
//!
//! - `MEMFAULT_LIB_DIR=<dir>`: link `<dir>/libmemfault.so` without pkg-config.
//! - otherwise `$PKG_CONFIG` (default `pkg-config`) `--libs libmemfault`, which
//!   finds an installed copy, or the uninstalled build tree with
//!   `PKG_CONFIG_PATH=<builddir>/meson-uninstalled`.
//!
//! - `DOCS_RS=1` (docs.rs) or the `docs-only` feature: look nothing up and
//!   link nothing, so that the documentation builds without the C library.
//!
//! Every `-L` directory is also an rpath of this crate's own test binaries and
//! is exported as `DEP_MEMFAULT_LIBDIR` (`cargo:libdir=`) so that dependent
//! crates can add the same rpath (see memfault/build.rs).
use std::env;
use std::process::Command;

fn emit_dir(dir: &str) {
    println!("cargo:rustc-link-search=native={dir}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    println!("cargo:libdir={dir}");
}

fn main() {
    for var in ["DOCS_RS", "MEMFAULT_LIB_DIR", "PKG_CONFIG", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    if env::var_os("DOCS_RS").is_some() || env::var_os("CARGO_FEATURE_DOCS_ONLY").is_some() {
        println!("cargo:warning=memfault-sys: documentation build, libmemfault not linked");
        return;
    }

    if let Ok(dir) = env::var("MEMFAULT_LIB_DIR") {
        emit_dir(&dir);
        println!("cargo:rustc-link-lib=dylib=memfault");
        return;
    }

    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let output = Command::new(&pkg_config)
        .args(["--libs", "libmemfault"])
        .output()
        .unwrap_or_else(|e| panic!("memfault-sys: cannot run {pkg_config}: {e}"));
    if !output.status.success() {
        panic!(
            "memfault-sys: `{pkg_config} --libs libmemfault` failed: {}\n\
             Install libmemfault, set PKG_CONFIG_PATH=<meson builddir>/meson-uninstalled \
             or set MEMFAULT_LIB_DIR=<dir of libmemfault.so>.",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let libs = String::from_utf8(output.stdout).expect("pkg-config output is not UTF-8");
    let mut linked = false;
    for flag in libs.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            emit_dir(dir);
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
            linked |= lib == "memfault";
        }
    }
    if !linked {
        println!("cargo:rustc-link-lib=dylib=memfault");
    }
}
