//! The `seam` command line.

pub mod audit;
pub mod backfill;
pub mod demo;
pub mod dlq;
pub mod doctor;
pub mod init;
pub mod journal;
pub mod link;
pub mod pack;
pub mod plugin;
pub mod reconcile;
pub mod salesforce;
pub mod serve;
pub mod servicenow;
pub mod sim;

use anyhow::{Context, Result};
use std::path::Path;

/// Read a pack's component bytes, saying how to get them when they are missing.
pub fn read_pack(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "reading pack {}: build the component with `cargo build --target wasm32-wasip2 --profile plugin -p <pack>` \
             (after `rustup target add wasm32-wasip2`), then `seam pack build` it with its manifest (./scripts/demo does both)",
            path.display()
        )
    })
}

/// A plain component's name from its file name: `case_incident.wasm` → `case-incident`.
pub fn pack_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).unwrap_or_else(|| "pack".into())
}

/// Read and parse a JSON file, naming the file in every error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {what} {}", path.display()))
}
