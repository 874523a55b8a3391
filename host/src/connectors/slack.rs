//! Slack Web API client: create (or reuse) a channel, post to it.

use super::{ConnectorError, Http, Repeat, Result, RetryPolicy};
use crate::config::slack::Credentials;
use crate::secrets::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::path::Path;

/// Text as Slack's mrkdwn carries it literally: `&`, `<` and `>` are its control characters
/// (`<!channel>`, `<@U123>`, `<url|label>`), written `&amp;`, `&lt;`, `&gt;`. Record text that
/// reaches Slack goes through here, so a Case's Subject cannot ping a channel or forge a link;
/// Slack still links the plain URLs in it.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub struct Slack {
    http: Http,
    base_url: String,
    token: SecretString,
}

impl Slack {
    pub fn new(
        credentials: &Credentials,
        tenant: &str,
        ca_pem: Option<&Path>,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        Ok(Slack {
            http: Http::new("slack", ca_pem, policy)?,
            base_url: format!("{}/", credentials.api_url.trim_end_matches('/')),
            token: credentials.token.resolve(&format!("tenants.{tenant}.slack.token"))?,
        })
    }

    /// `auth.test`: who the token belongs to (team and bot user), or why it is refused.
    pub async fn auth_test(&self) -> Result<Value> {
        self.call("auth.test", json!({})).await
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    async fn call(&self, method: &str, body: Value) -> Result<Value> {
        self.call_as(method, body, Repeat::Safe).await
    }

    /// `repeat`: a message posted twice shows twice (see [`Repeat::OnlyIfUnsent`]).
    async fn call_as(&self, method: &str, body: Value, repeat: Repeat) -> Result<Value> {
        let url = format!("{}{method}", self.base_url);
        let response = self
            .http
            .send_as(|client| client.post(&url).bearer_auth(self.token.expose_secret()).json(&body), repeat)
            .await?;
        let body = self.http.json(response).await?;
        if body["ok"] == json!(true) {
            Ok(body)
        } else {
            Err(ConnectorError::Refused {
                system: "slack",
                status: 200,
                message: body["error"].as_str().unwrap_or("unknown error").to_string(),
            })
        }
    }

    /// The id of channel `name`, creating it if it does not exist yet.
    pub async fn ensure_channel(&self, name: &str) -> Result<String> {
        match self.call("conversations.create", json!({ "name": name })).await {
            Ok(body) => Ok(body["channel"]["id"].as_str().unwrap_or_default().to_string()),
            Err(ConnectorError::Refused { message, .. }) if message == "name_taken" => {
                let body = self.call("conversations.list", json!({})).await?;
                body["channels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["name"] == json!(name))
                    .and_then(|c| c["id"].as_str().map(str::to_string))
                    .ok_or(ConnectorError::Refused {
                        system: "slack",
                        status: 200,
                        message: format!("channel {name} is taken but not listed"),
                    })
            }
            Err(e) => Err(e),
        }
    }

    /// Every channel, as (name, id).
    pub async fn channels(&self) -> Result<Vec<(String, String)>> {
        let body = self.call("conversations.list", json!({})).await?;
        Ok(body["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["id"].as_str()?.to_string())))
            .collect())
    }

    /// The texts of a channel's latest messages, newest first.
    pub async fn history(&self, channel: &str) -> Result<Vec<String>> {
        let body = self.call("conversations.history", json!({ "channel": channel, "limit": 50 })).await?;
        Ok(body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect())
    }

    /// Post `text`; returns the message timestamp.
    pub async fn post(&self, channel: &str, text: &str) -> Result<String> {
        let body =
            self.call_as("chat.postMessage", json!({ "channel": channel, "text": text }), Repeat::OnlyIfUnsent).await?;
        Ok(body["ts"].as_str().unwrap_or_default().to_string())
    }
}
