//! Builds the misp-enrich component and the Fluent Bit module and embeds
//! both in the host binary.
//!
//! Both are the root crate: the component compiled for `wasm32-wasip2`, the
//! module for `wasm32-wasip1`. They are built by a nested cargo with its own
//! `--target-dir`: the outer cargo holds the lock on its target directory for
//! the whole build, so sharing it would deadlock. `MISP_ENRICH_COMPONENT` and
//! `MISP_ENRICH_FLUENT_BIT_MODULE` may name prebuilt `.wasm` files instead.
//!
//! A failed build does not fail the host build: the host can still load a
//! component from `--component`, and the tests report a missing artifact
//! themselves. The failure is shown as a cargo warning.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    for input in ["src", "wit", "Cargo.toml", "Cargo.lock", ".cargo"] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }

    let artifacts = [
        ("MISP_ENRICH_COMPONENT", "wasm32-wasip2", "component", "MISP_ENRICH_COMPONENT_WASM"),
        (
            "MISP_ENRICH_FLUENT_BIT_MODULE",
            "wasm32-wasip1",
            "Fluent Bit module",
            "MISP_ENRICH_FLUENT_BIT_WASM",
        ),
    ];
    for (prebuilt_var, target, what, exposed_var) in artifacts {
        println!("cargo:rerun-if-env-changed={prebuilt_var}");
        let wasm = match env::var_os(prebuilt_var) {
            Some(prebuilt) => Ok(PathBuf::from(prebuilt)),
            None => build_wasm(&workspace, target),
        };
        let wasm = wasm.unwrap_or_else(|reason| {
            println!("cargo:warning=no {what} embedded: {reason}");
            let empty = out_dir.join(format!("no-{target}.wasm"));
            std::fs::write(&empty, b"").unwrap();
            empty
        });
        println!("cargo:rustc-env={exposed_var}={}", wasm.display());
    }
}

/// Builds the root crate for `target` and returns the `.wasm` it made.
fn build_wasm(workspace: &Path, target: &str) -> Result<PathBuf, String> {
    // Next to the outer target directory when one is set, so a developer's
    // CARGO_TARGET_DIR keeps everything in one place. Both wasm targets share
    // this directory, and with it the compiled build dependencies; the two
    // builds run one after the other, so they never wait on its lock.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("component");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", target, "-p", "misp-enrich"])
        // The workspace's .cargo/config.toml sets the module's link flags
        // (exported malloc and free); cargo looks for it from here.
        .current_dir(workspace)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build (coverage, sanitizers) would break
        // or bloat the wasm build; the wasm builds have their own profile.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|err| format!("cannot run cargo: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(6).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        return Err(format!("{target} build failed: {}", last.join(" | ")));
    }
    let wasm = target_dir.join(target).join("release/misp_enrich.wasm");
    if !wasm.is_file() {
        return Err(format!("{} was not produced", wasm.display()));
    }
    Ok(wasm)
}
