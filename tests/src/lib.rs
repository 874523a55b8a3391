//! Paths of the packs `build.rs` compiled for these tests.

include!(concat!(env!("OUT_DIR"), "/packs.rs"));

/// The bytes of a pack built by `build.rs`.
pub fn pack_bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path} (built by tests/build.rs): {e}"))
}
