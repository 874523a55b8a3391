//! The end-to-end tests, one module per area, in one binary: each test binary links
//! wasmtime, and on two cores one link instead of eighteen saves minutes.
//! Run one area with `cargo test --release -p seam-tests --test all engine::`.

mod admin;
mod auth;
mod backfill;
mod blocking;
mod connectors;
mod containment;
mod deletes;
mod engine;
mod governance;
mod hot_swap;
mod intake;
mod mapping;
mod packs;
mod pubsub;
mod push_rule;
mod retention;
mod tls;
mod workflow;
