//! The sync engine: from journaled changes to writes in the other system.
//!
//! `processor` works through the journal (echo filter, ownership gate, pack,
//! action check, apply); `apply` carries actions into the systems; `normalize`
//! turns the systems' records into changes; `ownership` says who owns which
//! field; `poller` catches up on notifications that never arrived.

pub mod apply;
pub mod normalize;
pub mod ownership;
pub mod poller;
pub mod processor;
