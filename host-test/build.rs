//! Builds the misp-enrich component and embeds it in the host binary.
//!
//! The component is the root crate compiled for `wasm32-wasip2`. It is built
//! by a nested cargo with its own `--target-dir`: the outer cargo holds the
//! lock on its target directory for the whole build, so sharing it would
//! deadlock. `MISP_ENRICH_COMPONENT` may name a prebuilt `.wasm` instead.
//!
//! A failed component build does not fail the host build: the host can still
//! load a component from `--component`, and its tests report the missing
//! component themselves. The failure is shown as a cargo warning.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    println!("cargo:rerun-if-env-changed=MISP_ENRICH_COMPONENT");
    for input in ["src", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }

    let wasm = match env::var_os("MISP_ENRICH_COMPONENT") {
        Some(prebuilt) => Ok(PathBuf::from(prebuilt)),
        None => build_component(&workspace),
    };
    let wasm = wasm.unwrap_or_else(|reason| {
        println!("cargo:warning=no component embedded: {reason}");
        let empty = out_dir.join("no-component.wasm");
        std::fs::write(&empty, b"").unwrap();
        empty
    });
    println!("cargo:rustc-env=MISP_ENRICH_COMPONENT_WASM={}", wasm.display());
}

fn build_component(workspace: &Path) -> Result<PathBuf, String> {
    // Next to the outer target directory when one is set, so a developer's
    // CARGO_TARGET_DIR keeps everything in one place.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("component");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", "misp-enrich"])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build (coverage, sanitizers) would break
        // or bloat the wasm build; the component has its own profile.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|err| format!("cannot run cargo: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(6).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        return Err(format!("component build failed: {}", last.join(" | ")));
    }
    let wasm = target_dir.join("wasm32-wasip2/release/misp_enrich.wasm");
    if !wasm.is_file() {
        return Err(format!("{} was not produced", wasm.display()));
    }
    Ok(wasm)
}
