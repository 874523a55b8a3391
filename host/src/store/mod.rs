//! seam's own durable state, in SQLite (WAL): the journal of received
//! events. (Links, shadow, outbox, audit and dead letters join it as the
//! engine grows.)

pub mod journal;

pub use journal::{Journal, Recorded};
