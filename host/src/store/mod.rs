//! seam's own durable state, in SQLite (WAL): the journal of received
//! events with their progress, the shadow of last-synced values, links,
//! audit, dead letters and pack history (`journal`, its statuses and audit
//! reasons in `status`, each event's change in
//! the compact form of `stored_change`), and the read-only views operators
//! use (`views`: why a field changed, link states, backlog).

pub mod blocking;
pub mod clock;
pub mod journal;
pub mod retention;
pub mod status;
mod stored_change;
pub mod views;

pub use journal::{Journal, Recorded};
pub use status::{AuditReason, EventStatus};
