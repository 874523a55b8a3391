//! How a tenant's changes reach seam: what intake's notifications must prove
//! (`intake`), and where Salesforce's changes come from (`events`, `pubsub`).

use crate::connectors::salesforce::pubsub as connection;
use crate::secrets::Secret;
use serde::{Deserialize, Serialize};

/// What one tenant's notifications must prove, as the configuration says.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantIntake {
    /// The Salesforce org (its 18-character id, `00D…`) whose Outbound Messages are accepted.
    pub salesforce_org_id: String,
    /// The `token` query parameter the Outbound Message endpoint URL carries.
    pub salesforce_token: Secret,
    /// HMAC key of the ServiceNow business rule's notifications.
    pub servicenow_secret: Secret,
}

/// Where a tenant's Salesforce changes come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Outbound Messages posted to intake (`/intake/{tenant}/salesforce/outbound`).
    #[default]
    OutboundMessages,
    /// Change Data Capture over the Pub/Sub API.
    Pubsub,
}

/// The Pub/Sub connection of a tenant whose `events` are `pubsub`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PubSubSettings {
    /// The Pub/Sub API endpoint.
    #[serde(default = "default_url")]
    pub url: String,
    /// A platform event channel to follow as well (`/event/Sev1_Alert__e`): its events reach the packs as created records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_event: Option<String>,
}

fn default_url() -> String {
    connection::DEFAULT_URL.to_string()
}

impl Default for PubSubSettings {
    fn default() -> Self {
        PubSubSettings { url: default_url(), platform_event: None }
    }
}
