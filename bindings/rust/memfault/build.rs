// SPDX-License-Identifier: MIT
//! `cargo:rustc-link-arg` reaches only the crate that emits it: give this
//! crate's test binaries, examples and doctests the rpath memfault-sys found.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MEMFAULT_LIBDIR");
    if let Ok(dirs) = std::env::var("DEP_MEMFAULT_LIBDIR") {
        for dir in std::env::split_paths(&dirs) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
}
