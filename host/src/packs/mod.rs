//! Rule packs as one artifact: the component, its manifest and its signature.
//!
//! A pack is a WebAssembly component with two extra custom sections at the
//! top level: `seam-manifest` (JSON, [`Manifest`]) and, last, `seam-signature`
//! (ed25519 over every byte before it). Custom sections do not change what the
//! component does, so a pack is still a component any wasm tool can read, and
//! there is no second file to lose or mismatch.

pub mod artifact;
pub mod fixtures;
pub mod loader;
pub mod manifest;
pub mod registry;
pub mod signing;

pub use artifact::Pack;
pub use loader::{load, LoadedPack};
pub use manifest::Manifest;
pub use registry::{ActivePack, Registry};
pub use signing::{KeyPair, TrustedKeys};

use anyhow::{Context, Result};
use std::path::Path;

/// Read a pack's component bytes, saying how to get them when they are missing.
pub fn read_pack(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "reading pack {}: build the component with `cargo build --target wasm32-wasip2 --profile pack -p <pack>` \
             (after `rustup target add wasm32-wasip2`), then `seam pack build` it with its manifest (./scripts/demo does both)",
            path.display()
        )
    })
}

/// A plain component's name from its file name: `case_incident.wasm` → `case-incident`.
pub fn pack_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).unwrap_or_else(|| "pack".into())
}
