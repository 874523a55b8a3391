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
