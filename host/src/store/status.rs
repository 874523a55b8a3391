//! The journal's two closed vocabularies: where an event stands, and why an
//! audited field changed. The database keeps their text (`events.status`,
//! `audit.reason`); the code names them by variant.

use crate::model::RecordRef;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use std::fmt;

/// Where a journaled event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Waiting to be processed, or to be retried.
    Pending,
    /// Carried across (or nothing needed doing).
    Done,
    /// seam's own write coming back: nothing to carry.
    Echo,
    /// Failed for good; waits in the dead-letter queue to be re-driven.
    Dead,
}

impl EventStatus {
    pub const ALL: [EventStatus; 4] = [EventStatus::Pending, EventStatus::Done, EventStatus::Echo, EventStatus::Dead];

    /// As the journal's `status` column spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Done => "done",
            EventStatus::Echo => "echo",
            EventStatus::Dead => "dead",
        }
    }

    /// Processed, and nothing more will happen to it: retention may prune it.
    pub fn is_settled(self) -> bool {
        matches!(self, EventStatus::Done | EventStatus::Echo)
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventStatus::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            format!(
                "{s:?} is not an event status (one of pending, done, echo, dead); is the journal from a newer seam?"
            )
        })
    }
}

impl ToSql for EventStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for EventStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

/// Why an audited field changed: the audit row's `reason`, as `seam audit why` shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum AuditReason {
    /// The mapping pack carried a change across.
    Sync,
    /// A workflow pack's action (the row names the pack).
    Workflow,
    /// A person changed a field the other system owns; seam put the synced value back.
    Revert,
    /// An operator linked two records with `seam link`; `by` names them.
    Linked { by: String },
    /// Reconcile found the mirror drifted from its owner and repaired it.
    Reconcile,
    /// `source` was deleted, and the delete policy (as the manifest spells it)
    /// either deleted its partner with it or unlinked it.
    PartnerOfDeleted { source: RecordRef, deleted_with_it: bool, policy: &'static str },
    /// The record names a partner that does not name it back; nothing was written.
    IdentityConflict { why: String },
}

impl fmt::Display for AuditReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditReason::Sync => f.write_str("sync"),
            AuditReason::Workflow => f.write_str("workflow"),
            AuditReason::Revert => f.write_str("revert: owned by the other system"),
            AuditReason::Linked { by } => write!(f, "linked by {by}"),
            AuditReason::Reconcile => f.write_str("reconcile: drift repaired from the owner"),
            AuditReason::PartnerOfDeleted { source, deleted_with_it, policy } => {
                let what = if *deleted_with_it { "deleted with it" } else { "unlinked" };
                write!(f, "{source} was deleted: its partner is {what} (deletes: {policy})")
            }
            AuditReason::IdentityConflict { why } => write!(f, "identity conflict: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_back_as_it_was_written() {
        #[allow(clippy::disallowed_methods, reason = "a scratch database to round-trip the column type")]
        let db = rusqlite::Connection::open_in_memory().unwrap();
        for status in EventStatus::ALL {
            let read: EventStatus = db.query_row("SELECT ?1", [status], |r| r.get(0)).unwrap();
            assert_eq!(read, status);
        }
        let unknown = db.query_row("SELECT 'parked'", [], |r| r.get::<_, EventStatus>(0)).unwrap_err();
        assert!(unknown.to_string().contains("\"parked\" is not an event status"), "{unknown}");
    }

    #[test]
    fn reasons_read_as_the_audit_has_always_shown_them() {
        let case = RecordRef { system: crate::model::System::Salesforce, object: "Case".into(), id: "500A".into() };
        let deleted = AuditReason::PartnerOfDeleted { source: case, deleted_with_it: false, policy: "close" };
        assert_eq!(deleted.to_string(), "salesforce Case 500A was deleted: its partner is unlinked (deletes: close)");
        assert_eq!(AuditReason::Linked { by: "ops".into() }.to_string(), "linked by ops");
        assert_eq!(AuditReason::IdentityConflict { why: "x".into() }.to_string(), "identity conflict: x");
    }
}
