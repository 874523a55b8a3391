//! ServiceNow Table API client (basic auth).
//!
//! Inserts and updates go through the Batch API (`/api/now/v1/batch`): writes
//! queued while others are in flight share one call (see [`super::batch`]).

use super::batch::Batcher;
use super::{ConnectorError, Http, Result, RetryPolicy};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

/// Inner requests per Batch API call.
pub const BATCH_LIMIT: usize = 200;
/// Batch calls in flight at once per connection.
const PARALLEL_WRITES: usize = 2;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub instance_url: String,
    pub username: String,
    pub password: String,
}

pub struct ServiceNow {
    api: Arc<Api>,
    writes: Batcher<Write, Map<String, Value>>,
}

struct Api {
    http: Http,
    credentials: Credentials,
}

/// One Table API write: POST to a table, or PATCH a record.
struct Write {
    table: String,
    id: Option<String>,
    fields: Map<String, Value>,
}

impl ServiceNow {
    pub fn new(credentials: Credentials, ca_pem: Option<&Path>, policy: RetryPolicy) -> anyhow::Result<Self> {
        let api = Arc::new(Api { http: Http::new("servicenow", ca_pem, policy)?, credentials });
        let writes = {
            let api = api.clone();
            Batcher::new("servicenow", BATCH_LIMIT, PARALLEL_WRITES, move |batch: Vec<Write>| {
                let api = api.clone();
                async move { api.batch(batch).await }
            })
        };
        Ok(ServiceNow { api, writes })
    }

    pub fn http(&self) -> &Http {
        &self.api.http
    }

    pub fn instance_url(&self) -> &str {
        self.api.instance_url()
    }

    /// Insert a record; returns it as stored.
    pub async fn insert(&self, table: &str, fields: &Map<String, Value>) -> Result<Map<String, Value>> {
        self.writes.submit(Write { table: table.into(), id: None, fields: fields.clone() }).await
    }

    /// Update a record; returns it as stored.
    pub async fn update(&self, table: &str, id: &str, fields: &Map<String, Value>) -> Result<Map<String, Value>> {
        self.writes.submit(Write { table: table.into(), id: Some(id.into()), fields: fields.clone() }).await
    }

    /// A record with `{"value", "display_value"}` per field.
    pub async fn get(&self, table: &str, id: &str) -> Result<Map<String, Value>> {
        let api = &self.api;
        let (url, c) = (api.url(table, Some(id)), &api.credentials);
        let params = [("sysparm_display_value", "all"), ("sysparm_exclude_reference_link", "true")];
        let response = api.http.send(|client| client.get(&url).basic_auth(&c.username, Some(&c.password)).query(&params)).await?;
        Ok(api.result(response).await?.as_object().cloned().unwrap_or_default())
    }

    /// Records matching an encoded query, plain values.
    pub async fn query(&self, table: &str, encoded: &str, limit: usize) -> Result<Vec<Map<String, Value>>> {
        self.query_as(table, encoded, limit, "false").await
    }

    /// Records matching an encoded query, each field as `{"value", "display_value"}`.
    pub async fn query_with_display(&self, table: &str, encoded: &str, limit: usize) -> Result<Vec<Map<String, Value>>> {
        self.query_as(table, encoded, limit, "all").await
    }

    async fn query_as(&self, table: &str, encoded: &str, limit: usize, display: &str) -> Result<Vec<Map<String, Value>>> {
        let api = &self.api;
        let (url, c) = (api.url(table, None), &api.credentials);
        let limit = limit.to_string();
        let params = [("sysparm_query", encoded), ("sysparm_limit", limit.as_str()), ("sysparm_exclude_reference_link", "true"), ("sysparm_display_value", display)];
        let response = api.http.send(|client| client.get(&url).basic_auth(&c.username, Some(&c.password)).query(&params)).await?;
        let rows = api.result(response).await?;
        Ok(rows.as_array().into_iter().flatten().filter_map(|r| r.as_object().cloned()).collect())
    }
}

impl Api {
    fn instance_url(&self) -> &str {
        self.credentials.instance_url.trim_end_matches('/')
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
    async fn batch(&self, writes: Vec<Write>) -> Vec<Result<Map<String, Value>>> {
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
        let (url, c) = (format!("{}/api/now/v1/batch", self.instance_url()), &self.credentials);
        let answer = match self.http.send(|client| client.post(&url).basic_auth(&c.username, Some(&c.password)).json(&body)).await {
            Ok(response) => self.http.json(response).await,
            Err(e) => Err(e),
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return vec![Err(e); n],
        };
        let mut results: Vec<Result<Map<String, Value>>> =
            vec![Err(ConnectorError::Unavailable { system: "servicenow", attempts: 1, message: "the Batch API did not service this request".into() }); n];
        for served in answer["serviced_requests"].as_array().into_iter().flatten() {
            let Some(i) = served["id"].as_str().and_then(|i| i.parse::<usize>().ok()).filter(|i| *i < n) else { continue };
            let status = served["status_code"].as_u64().unwrap_or(0) as u16;
            let bytes = served["body"].as_str().and_then(|b| b64.decode(b).ok()).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            results[i] = if (200..300).contains(&status) {
                Ok(serde_json::from_slice::<Value>(&bytes).ok().and_then(|mut v| v["result"].take().as_object().cloned()).unwrap_or_default())
            } else if status == 429 || status >= 500 {
                Err(ConnectorError::Unavailable { system: "servicenow", attempts: 1, message: format!("{status}: {}", super::truncate(&text)) })
            } else {
                Err(ConnectorError::Refused { system: "servicenow", status, message: super::truncate(&text) })
            };
        }
        results
    }
}
