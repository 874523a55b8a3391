//! `retention`: how long the journal keeps history (see `store::retention`).

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// How long the journal keeps history (`retention` in the configuration).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Days a settled event is kept (its change, and what became of it).
    #[serde(default = "default_settled_days")]
    pub settled_event_days: f64,
    /// Days an audit row (one field's change, with the pack and event behind it) is kept.
    #[serde(default = "default_audit_days")]
    pub audit_days: f64,
    /// Minutes between background prunes in `seam serve`; 0: only `seam journal prune`.
    #[serde(default = "default_every")]
    pub every_minutes: f64,
}

fn default_settled_days() -> f64 {
    7.0
}
fn default_audit_days() -> f64 {
    90.0
}
fn default_every() -> f64 {
    60.0
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            settled_event_days: default_settled_days(),
            audit_days: default_audit_days(),
            every_minutes: default_every(),
        }
    }
}

impl Retention {
    pub fn check(&self) -> Result<()> {
        // Salesforce retries an Outbound Message for 24 hours and keeps change events for 72:
        // a redelivery of a pruned event would be stored as new.
        anyhow::ensure!(self.settled_event_days >= 3.0, "retention.settled_event_days must be at least 3: the systems redeliver for up to 72 hours, and a forgotten event would be taken again");
        anyhow::ensure!(
            self.audit_days > 0.0 && self.every_minutes >= 0.0,
            "retention: audit_days must be above 0 and every_minutes 0 or more"
        );
        Ok(())
    }
}
