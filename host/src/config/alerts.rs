//! `alerts`: when to tell a person about a tenant's backlog or dead letters
//! (see `engine::alerts`).

use serde::{Deserialize, Serialize};

/// Thresholds, each passed once per episode, and where alerts go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Events waiting.
    pub backlog_events: u64,
    /// Seconds the oldest waiting event has waited.
    pub backlog_age_seconds: u64,
    /// Events in the dead-letter queue.
    pub dead_letters: u64,
    /// The Slack channel alerts go to (created if missing); the log gets them too.
    pub slack_channel: String,
    /// Seconds between checks.
    pub check_seconds: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            backlog_events: 1000,
            backlog_age_seconds: 300,
            dead_letters: 1,
            slack_channel: "seam-alerts".into(),
            check_seconds: 15,
        }
    }
}
