//! ServiceNow Table API client; Basic or OAuth ([`auth`]).
//!
//! Inserts and updates go through the Batch API (`/api/now/v1/batch`): writes
//! queued while others are in flight share one call (see [`super::batch`]).
//! Updates share calls with updates, and inserts and journal appends with their
//! own kind: a failed call of updates is simply sent again, one that may have
//! inserted or appended is not (see [`Repeat::OnlyIfUnsent`]).

pub mod auth;
pub mod query;

use super::batch::Batcher;
use super::{ConnectorError, Http, Repeat, Result, RetryPolicy};
use crate::secrets::ExposeSecret;
use base64::Engine as _;
use reqwest::RequestBuilder;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

use crate::config::servicenow::Credentials;
pub use query::{Query, QueryError};

/// Inner requests per Batch API call.
pub const BATCH_LIMIT: usize = 200;
/// Batch calls in flight at once per connection.
const PARALLEL_WRITES: usize = 2;

pub struct ServiceNow {
    api: Arc<Api>,
    /// Updates: safe to repeat.
    updates: Batcher<Write, Map<String, Value>>,
    /// Inserts and journal appends: each applied twice makes a second record or entry.
    additions: Batcher<Write, Map<String, Value>>,
}

struct Api {
    http: Http,
    base: String,
    access: auth::Access,
}

/// One Table API write: POST to a table, or PATCH a record.
struct Write {
    table: String,
    id: Option<String>,
    fields: Map<String, Value>,
}

impl ServiceNow {
    /// The instance's client; with OAuth, call [`ServiceNow::authenticate`] to log in before the first call.
    pub fn new(
        credentials: &Credentials,
        tenant: &str,
        ca_pem: Option<&Path>,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        let http = Http::new("servicenow", ca_pem, policy)?;
        let access = auth::Access::new(credentials, http.clone(), &format!("tenants.{tenant}.servicenow"))?;
        let api = Arc::new(Api { http, base: credentials.base().to_string(), access });
        let batcher = |repeat: Repeat| {
            let api = api.clone();
            Batcher::new("servicenow", BATCH_LIMIT, PARALLEL_WRITES, move |batch: Vec<Write>| {
                let api = api.clone();
                async move { api.batch(batch, repeat).await }
            })
        };
        let (updates, additions) = (batcher(Repeat::Safe), batcher(Repeat::OnlyIfUnsent));
        Ok(ServiceNow { api, updates, additions })
    }

    pub fn http(&self) -> &Http {
        &self.api.http
    }

    pub fn instance_url(&self) -> &str {
        self.api.instance_url()
    }

    /// Get a token now (OAuth), so a refused login shows at start rather than on the first write.
    pub async fn authenticate(&self) -> Result<()> {
        if let auth::Access::OAuth(tokens) = &self.api.access {
            tokens.get().await?;
        }
        Ok(())
    }

    /// Insert a record; returns it as stored.
    pub async fn insert(&self, table: &str, fields: &Map<String, Value>) -> Result<Map<String, Value>> {
        checked(table, None)?;
        self.additions.submit(Write { table: table.into(), id: None, fields: fields.clone() }).await
    }

    /// Update a record; returns it as stored. Not for journal fields: see [`ServiceNow::append`].
    pub async fn update(&self, table: &str, id: &str, fields: &Map<String, Value>) -> Result<Map<String, Value>> {
        checked(table, Some(id))?;
        self.updates.submit(Write { table: table.into(), id: Some(id.into()), fields: fields.clone() }).await
    }

    /// Append to a record's journal fields (`comments`, `work_notes`: a PATCH that adds an
    /// entry rather than setting a value, so it is not repeated blindly); returns the record.
    pub async fn append(&self, table: &str, id: &str, entries: &Map<String, Value>) -> Result<Map<String, Value>> {
        checked(table, Some(id))?;
        self.additions.submit(Write { table: table.into(), id: Some(id.into()), fields: entries.clone() }).await
    }

    /// Delete a record; `false` when it was gone already, which a repeated delete finds. Safe to repeat.
    pub async fn delete(&self, table: &str, id: &str) -> Result<bool> {
        checked(table, Some(id))?;
        let url = self.api.url(table, Some(id));
        let response = self.api.send(|client| client.delete(&url), Repeat::Safe).await?;
        self.api.http.deleted(response).await
    }

    /// A record with `{"value", "display_value"}` per field.
    pub async fn get(&self, table: &str, id: &str) -> Result<Map<String, Value>> {
        checked(table, Some(id))?;
        let api = &self.api;
        let url = api.url(table, Some(id));
        let params = [("sysparm_display_value", "all"), ("sysparm_exclude_reference_link", "true")];
        let response = api.send(|client| client.get(&url).query(&params), Repeat::Safe).await?;
        Ok(api.result(response).await?.as_object().cloned().unwrap_or_default())
    }

    /// Records matching an encoded query, plain values.
    pub async fn query(&self, table: &str, query: &Query, limit: usize) -> Result<Vec<Map<String, Value>>> {
        self.query_as(table, query, limit, "false").await
    }

    /// Records matching an encoded query, each field as `{"value", "display_value"}`.
    pub async fn query_with_display(
        &self,
        table: &str,
        query: &Query,
        limit: usize,
    ) -> Result<Vec<Map<String, Value>>> {
        self.query_as(table, query, limit, "all").await
    }

    async fn query_as(
        &self,
        table: &str,
        query: &Query,
        limit: usize,
        display: &str,
    ) -> Result<Vec<Map<String, Value>>> {
        checked(table, None)?;
        let api = &self.api;
        let url = api.url(table, None);
        let limit = limit.to_string();
        let params = [
            ("sysparm_query", query.as_str()),
            ("sysparm_limit", limit.as_str()),
            ("sysparm_exclude_reference_link", "true"),
            ("sysparm_display_value", display),
        ];
        let response = api.send(|client| client.get(&url).query(&params), Repeat::Safe).await?;
        let rows = api.result(response).await?;
        Ok(rows.as_array().into_iter().flatten().filter_map(|r| r.as_object().cloned()).collect())
    }
}

/// A table name and sys_id, checked before they go into a URL path: a pack's lookup of
/// `../sys_user` reads nothing.
fn checked(table: &str, id: Option<&str>) -> Result<()> {
    let invalid = |message: String| ConnectorError::Invalid { system: "servicenow", message };
    query::checked_table(table).map_err(|e| invalid(e.to_string()))?;
    match id {
        Some(id) if !is_sys_id(id) => Err(invalid(format!("{id:?} is not a ServiceNow sys_id (32 hex digits)"))),
        _ => Ok(()),
    }
}

pub fn is_sys_id(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// Text for a journal field (comments, work notes) with its `[code]` tags broken. ServiceNow
/// escapes HTML in a journal entry, but renders what stands between `[code]` and `[/code]` as
/// HTML while `glide.ui.security.allow_codetag` is true, its default. A word joiner (U+2060,
/// invisible) after the bracket keeps the tag from matching, so text from another system
/// shows as typed and cannot put markup in front of the agents reading the incident.
pub fn journal_text(text: &str) -> String {
    const JOINER: char = '\u{2060}';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('[') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let name = rest.strip_prefix('/').unwrap_or(rest);
        if name.get(..4).is_some_and(|n| n.eq_ignore_ascii_case("code")) {
            out.push(JOINER);
        }
    }
    out.push_str(rest);
    out
}

impl Api {
    fn instance_url(&self) -> &str {
        &self.base
    }

    /// Send with the instance's credentials, retrying what is transient; a 401 to an OAuth
    /// token gets one new token and one more try.
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        repeat: Repeat,
    ) -> Result<reqwest::Response> {
        match &self.access {
            auth::Access::Basic { username, password } => {
                self.http
                    .send_as(|client| build(client).basic_auth(username, Some(password.expose_secret())), repeat)
                    .await
            }
            auth::Access::OAuth(tokens) => {
                for fresh in [false, true] {
                    let token = tokens.get().await?;
                    let response = self
                        .http
                        .send_as(|client| build(client).bearer_auth(token.access.expose_secret()), repeat)
                        .await?;
                    if response.status() == reqwest::StatusCode::UNAUTHORIZED && !fresh {
                        tracing::info!("ServiceNow refused the access token; getting a new one");
                        tokens.invalidate(&token);
                        continue;
                    }
                    return Ok(response);
                }
                unreachable!("the loop returns on its second pass")
            }
        }
    }

    fn path(table: &str, id: Option<&str>) -> String {
        match id {
            Some(id) => format!("/api/now/table/{table}/{id}"),
            None => format!("/api/now/table/{table}"),
        }
    }

    fn url(&self, table: &str, id: Option<&str>) -> String {
        format!("{}{}", self.instance_url(), Self::path(table, id))
    }

    async fn result(&self, response: reqwest::Response) -> Result<Value> {
        Ok(self.http.json(response).await?["result"].take())
    }

    /// One Batch API call carrying every write; one result per write, in order.
    async fn batch(&self, writes: Vec<Write>, repeat: Repeat) -> Vec<Result<Map<String, Value>>> {
        let n = writes.len();
        let b64 = base64::engine::general_purpose::STANDARD;
        let requests: Vec<Value> = writes
            .iter()
            .enumerate()
            .map(|(i, w)| {
                json!({
                    "id": i.to_string(),
                    "method": if w.id.is_some() { "PATCH" } else { "POST" },
                    "url": Self::path(&w.table, w.id.as_deref()),
                    "headers": [{ "name": "Content-Type", "value": "application/json" }, { "name": "Accept", "value": "application/json" }],
                    "body": b64.encode(serde_json::to_vec(&w.fields).unwrap_or_default()),
                })
            })
            .collect();
        let body = json!({ "batch_request_id": "seam", "rest_requests": requests });
        let url = format!("{}/api/now/v1/batch", self.instance_url());
        let answer = match self.send(|client| client.post(&url).json(&body), repeat).await {
            Ok(response) => self.http.json(response).await,
            Err(e) => Err(e),
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return vec![Err(e); n],
        };
        let mut results: Vec<Result<Map<String, Value>>> = vec![
            Err(ConnectorError::Unavailable {
                system: "servicenow",
                attempts: 1,
                message: "the Batch API did not service this request".into()
            });
            n
        ];
        for served in answer["serviced_requests"].as_array().into_iter().flatten() {
            let Some(i) = served["id"].as_str().and_then(|i| i.parse::<usize>().ok()).filter(|i| *i < n) else {
                continue;
            };
            let status = served["status_code"].as_u64().unwrap_or(0) as u16;
            let bytes = served["body"].as_str().and_then(|b| b64.decode(b).ok()).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            results[i] = if (200..300).contains(&status) {
                Ok(serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|mut v| v["result"].take().as_object().cloned())
                    .unwrap_or_default())
            } else if status == 429 || status >= 500 {
                Err(ConnectorError::Unavailable {
                    system: "servicenow",
                    attempts: 1,
                    message: format!("{status}: {}", super::truncate(&text)),
                })
            } else {
                Err(ConnectorError::Refused { system: "servicenow", status, message: super::truncate(&text) })
            };
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::journal_text;

    #[test]
    fn code_tags_in_journal_text_are_broken_and_the_rest_is_as_typed() {
        let attack = "see [code]<img src=x onerror=alert(1)>[/code] and [CODE]x[/Code]";
        let safe = journal_text(attack);
        assert!(
            !safe.to_ascii_lowercase().contains("[code]") && !safe.to_ascii_lowercase().contains("[/code]"),
            "{safe}"
        );
        assert_eq!(safe.replace('\u{2060}', ""), attack, "only the invisible joiner is added");
        for plain in ["", "[", "a [link] here", "[cod", "array[0] = 1", "ends with ["] {
            assert_eq!(journal_text(plain), plain);
        }
    }
}
