//! The sync engine: from journaled changes to writes in the other system.
//!
//! `dispatcher` runs the journal through the processor, records in parallel
//! and each record in order; `processor` handles one event (echo filter,
//! ownership gate, pack, action check, apply); `echoes` tells news from seam's
//! own writes coming back (for the processor, and for intake, which settles
//! pure echoes as it journals them); `apply` carries actions into the systems; `normalize`
//! turns the systems' records into changes; `ownership` says who owns which
//! field; `poller` catches up on notifications that never arrived; `alerts`
//! tells a person when the backlog or the dead letters pass a threshold;
//! `reconcile` compares linked pairs and repairs drift; `backfill` brings
//! history in when asked (a first start syncs none); `identity` decides
//! which records are partners (a record's link field is only a claim).

mod accounting;
pub mod alerts;
pub mod apply;
pub mod backfill;
pub mod dispatcher;
pub mod echoes;
pub mod identity;
mod lookup;
pub mod normalize;
pub mod ownership;
pub mod poller;
pub mod processor;
pub mod reconcile;
