//! Builds the packs the tests run (the way wasmtime's test-programs crate
//! does): a nested `cargo build --target wasm32-wasip2` into OUT_DIR, then
//! `packs.rs` with a constant holding each component's path.

use std::path::PathBuf;
use std::process::Command;

/// (package, constant) for every pack the tests load.
const PACKS: &[(&str, &str)] = &[
    ("case-incident", "CASE_INCIDENT"),
    ("sev1-bridge", "SEV1_BRIDGE"),
    ("misbehave", "MISBEHAVE"),
    ("future-api", "FUTURE_API"),
    ("api-v0-1-0", "API_V0_1_0"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = out.join("wasm");

    for watched in ["wit", "guest-sdk", "plugins", "tests/plugins"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "pack"])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags are for the host, not for wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    for (package, _) in PACKS {
        cmd.args(["-p", package]);
    }
    let output = cmd.output().expect("running cargo to build the test packs");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            "\nThe wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2` (scripts/test does)."
        } else {
            ""
        };
        panic!("building the test packs for wasm32-wasip2 failed:\n{stderr}{hint}");
    }

    let mut consts = String::new();
    for (package, name) in PACKS {
        let wasm = target_dir.join("wasm32-wasip2/pack").join(format!("{}.wasm", package.replace('-', "_")));
        assert!(wasm.exists(), "cargo built {package} but {} is missing", wasm.display());
        consts.push_str(&format!("pub const {name}: &str = {:?};\n", wasm.display().to_string()));
    }
    std::fs::write(out.join("packs.rs"), consts).unwrap();
}
