//! `tenants.NAME.slack`: how workflow packs reach Slack.

use crate::secrets::Secret;

/// A Slack app's bot token, and the Web API it calls.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Ends in `/api/`, as slack-sdk's `base_url` does: `https://slack.com/api/`.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// A bot token, `xoxb-…`.
    pub token: Secret,
}

fn default_api_url() -> String {
    "https://slack.com/api/".into()
}
