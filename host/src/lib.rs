//! seam keeps a Salesforce Case and a ServiceNow Incident describing the same
//! customer event truthfully in both systems. Per-customer logic runs as
//! sandboxed WebAssembly components (rule packs) implementing `seam:sync`.

pub mod admin;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod engine;
pub mod files;
pub mod intake;
pub mod listener;
pub mod model;
pub mod packs;
pub mod runtime;
pub mod secrets;
pub mod service;
pub mod setup;
pub mod store;
pub mod transience;
pub mod xml;

// Many small short-lived allocations (JSON, records, rows) on a few threads:
// mimalloc's per-thread free lists cost less than glibc's arenas here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
