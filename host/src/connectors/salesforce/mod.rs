//! Salesforce REST API client: OAuth login ([`auth`]), sObject reads and
//! writes, SOQL.
//!
//! Creates and updates go through sObject Collections (`/composite/sobjects`,
//! up to 200 records per call): writes queued while others are in flight
//! share one call (see [`super::batch`]). Every call carries
//! `Sforce-Call-Options: client=seam-<tenant>`, so the org's change events
//! name seam's own writes (`changeOrigin`).

pub mod auth;
pub mod pubsub;
pub mod soql;

use super::batch::Batcher;
use super::token::{Token, Tokens};
use super::{ConnectorError, Http, Repeat, Result, RetryPolicy};
use crate::secrets::ExposeSecret;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

use crate::config::salesforce::Credentials;

/// sObject Collections take at most 200 records per request.
pub const COLLECTION_LIMIT: usize = 200;
/// Collection requests in flight at once per connection.
const PARALLEL_WRITES: usize = 2;

pub const API_VERSION: &str = "59.0";

pub struct Salesforce {
    api: Arc<Api>,
    creates: Batcher<(String, Map<String, Value>), String>,
    updates: Batcher<(String, String, Map<String, Value>), ()>,
}

/// The session and the calls; shared with the batchers.
struct Api {
    http: Http,
    tokens: Tokens<auth::OrgLogin>,
    /// `Sforce-Call-Options`: `client=seam-<tenant>`.
    call_options: String,
    /// The last `Sforce-Limit-Info` seen: (requests used today, daily allowance).
    usage: std::sync::Mutex<Option<(u64, u64)>>,
}

/// The `client=` value seam's calls carry for `tenant`, as the org's change events report it in `changeOrigin`.
pub fn call_client(tenant: &str) -> String {
    format!("seam-{tenant}")
}

impl Salesforce {
    /// Log in to the org (`tenant` names the tenant in errors and in `Sforce-Call-Options`).
    pub async fn connect(
        credentials: &Credentials,
        tenant: &str,
        ca_pem: Option<&Path>,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        let http = Http::new("salesforce", ca_pem, policy)?;
        let login = auth::OrgLogin::new(credentials, http.clone(), &format!("tenants.{tenant}.salesforce"))?;
        let api = Arc::new(Api {
            http,
            tokens: Tokens::new(login),
            call_options: format!("client={}", call_client(tenant)),
            usage: Default::default(),
        });
        api.tokens.get().await?;
        let creates = {
            let api = api.clone();
            Batcher::new(
                "salesforce",
                COLLECTION_LIMIT,
                PARALLEL_WRITES,
                move |batch: Vec<(String, Map<String, Value>)>| {
                    let api = api.clone();
                    async move {
                        let records = batch.into_iter().map(|(object, fields)| record(&object, None, fields)).collect();
                        let results = api.collection(reqwest::Method::POST, records).await;
                        results
                            .into_iter()
                            .map(|r| r.map(|ok| ok["id"].as_str().unwrap_or_default().to_string()))
                            .collect()
                    }
                },
            )
        };
        let updates = {
            let api = api.clone();
            Batcher::new(
                "salesforce",
                COLLECTION_LIMIT,
                PARALLEL_WRITES,
                move |batch: Vec<(String, String, Map<String, Value>)>| {
                    let api = api.clone();
                    async move {
                        let records =
                            batch.into_iter().map(|(object, id, fields)| record(&object, Some(id), fields)).collect();
                        api.collection(reqwest::Method::PATCH, records).await.into_iter().map(|r| r.map(drop)).collect()
                    }
                },
            )
        };
        Ok(Salesforce { api, creates, updates })
    }

    pub fn http(&self) -> &Http {
        &self.api.http
    }

    /// The `client=` this connection's calls carry in `Sforce-Call-Options`, which the
    /// org's change events report in `changeOrigin`.
    pub fn client_id(&self) -> &str {
        self.api.call_options.strip_prefix("client=").unwrap_or_default()
    }

    /// The session (a current access token, fetched if need be), for calls that are not REST (Pub/Sub).
    pub async fn session(&self) -> Result<Arc<Token>> {
        self.api.tokens.get().await
    }

    /// The org no longer honours `session` (a Pub/Sub call was refused): the next call logs in again.
    pub fn session_refused(&self, session: &Arc<Token>) {
        self.api.tokens.invalidate(session);
    }

    /// The org's API host, as its last login answered.
    pub fn instance_url(&self) -> String {
        self.api.tokens.peek().and_then(|t| t.instance_url.clone()).unwrap_or_default()
    }

    /// A GET of any path on the org (`/services/data`, `sobjects/Case/describe`), with seam's session.
    pub async fn get_path(&self, path: &str) -> Result<Value> {
        let response = self.api.call(reqwest::Method::GET, path, None, Repeat::Safe).await?;
        self.api.http.json(response).await
    }

    /// The org's daily API allowance as its last answer reported it (`Sforce-Limit-Info: api-usage=USED/MAX`).
    pub fn api_usage(&self) -> Option<(u64, u64)> {
        *self.api.usage.lock().unwrap()
    }

    /// Create a record; returns its id.
    pub async fn create(&self, object: &str, fields: &Map<String, Value>) -> Result<String> {
        checked(object, None)?;
        self.creates.submit((object.to_string(), fields.clone())).await
    }

    /// Create or update the one record whose External ID field `key_field` holds `key`
    /// (`PATCH sobjects/{object}/{key_field}/{key}`); returns its id. Safe to repeat: a
    /// second call finds the record the first made. Several records with the key (the
    /// field is not unique) is an error, and nothing is written.
    pub async fn upsert(
        &self,
        object: &str,
        key_field: &str,
        key: &str,
        fields: &Map<String, Value>,
    ) -> Result<String> {
        checked(object, None)?;
        soql::name(key_field).map_err(|e| ConnectorError::Invalid { system: "salesforce", message: e.to_string() })?;
        let path = format!("sobjects/{object}/{key_field}/{}", super::path_segment(key));
        let response =
            self.api.call(reqwest::Method::PATCH, &path, Some(&Value::Object(fields.clone())), Repeat::Safe).await?;
        if response.status() == reqwest::StatusCode::MULTIPLE_CHOICES {
            return Err(ConnectorError::Refused {
                system: "salesforce",
                status: 300,
                message: format!("more than one {object} has {key_field} = {key}; remove the duplicates"),
            });
        }
        let body = self.api.http.json(response).await?;
        body["id"].as_str().map(str::to_string).ok_or_else(|| ConnectorError::Refused {
            system: "salesforce",
            status: 200,
            message: format!("an upsert answered without an id: {}", super::truncate(&body.to_string())),
        })
    }

    pub async fn update(&self, object: &str, id: &str, fields: &Map<String, Value>) -> Result<()> {
        checked(object, Some(id))?;
        self.updates.submit((object.to_string(), id.to_string(), fields.clone())).await
    }

    /// Delete a record; `false` when it was gone already (deleted, or never there), which a
    /// repeated delete finds. Safe to repeat.
    pub async fn delete(&self, object: &str, id: &str) -> Result<bool> {
        checked(object, Some(id))?;
        let response =
            self.api.call(reqwest::Method::DELETE, &format!("sobjects/{object}/{id}"), None, Repeat::Safe).await?;
        self.api.http.deleted(response).await
    }

    pub async fn get(&self, object: &str, id: &str) -> Result<Map<String, Value>> {
        checked(object, Some(id))?;
        let body = self.get_path(&format!("sobjects/{object}/{id}")).await?;
        Ok(body.as_object().cloned().unwrap_or_default())
    }

    /// A `SELECT COUNT() …` query's count.
    pub async fn count(&self, soql: &str) -> Result<u64> {
        let body = self.get_path(&query_path(soql)).await?;
        body["totalSize"].as_u64().ok_or_else(|| ConnectorError::Refused {
            system: "salesforce",
            status: 200,
            message: format!("a COUNT() query answered without totalSize: {}", super::truncate(&body.to_string())),
        })
    }

    /// Every row of a SOQL query, following `nextRecordsUrl`.
    pub async fn query(&self, soql: &str) -> Result<Vec<Map<String, Value>>> {
        let mut path = query_path(soql);
        let mut rows = Vec::new();
        loop {
            let body = self.get_path(&path).await?;
            rows.extend(body["records"].as_array().into_iter().flatten().filter_map(|r| r.as_object().cloned()));
            match body["nextRecordsUrl"].as_str() {
                Some(next) if body["done"] == json!(false) => path = next.to_string(),
                _ => return Ok(rows),
            }
        }
    }
}

/// An object name and record id, checked before they go into a URL path or a request:
/// a pack's lookup of `../Account/…` reads nothing.
fn checked(object: &str, id: Option<&str>) -> Result<()> {
    let invalid = |e: soql::NameError| ConnectorError::Invalid { system: "salesforce", message: e.to_string() };
    soql::name(object).map_err(invalid)?;
    id.map(soql::id).transpose().map_err(invalid)?;
    Ok(())
}

/// The query resource for `soql`.
fn query_path(soql: &str) -> String {
    format!("query?{}", serde_urlencoded::to_string([("q", soql)]).unwrap_or_default())
}

/// One record of a collection request.
fn record(object: &str, id: Option<String>, mut fields: Map<String, Value>) -> Value {
    fields.insert("attributes".into(), json!({ "type": object }));
    if let Some(id) = id {
        fields.insert("Id".into(), Value::String(id));
    }
    Value::Object(fields)
}

impl Api {
    /// Send a REST call under `/services/data/vXX.X/` (or a `/services/...` path as given),
    /// logging in again once if the org says the session is no longer valid.
    /// `repeat`: whether the request is safe to send twice (see [`Repeat::OnlyIfUnsent`]).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        repeat: Repeat,
    ) -> Result<reqwest::Response> {
        for fresh_login in [false, true] {
            let token: Arc<Token> = self.tokens.get().await?;
            let instance = token.instance_url.as_deref().unwrap_or_default();
            let url = if path.starts_with("/services/") {
                format!("{instance}{path}")
            } else {
                format!("{instance}/services/data/v{API_VERSION}/{path}")
            };
            let response = self
                .http
                .send_as(
                    |client| {
                        let request = client
                            .request(method.clone(), &url)
                            .bearer_auth(token.access.expose_secret())
                            .header("Sforce-Call-Options", &self.call_options);
                        match body {
                            Some(b) => request.json(b),
                            None => request,
                        }
                    },
                    repeat,
                )
                .await?;
            if let Some(usage) =
                response.headers().get("sforce-limit-info").and_then(|v| v.to_str().ok()).and_then(parse_api_usage)
            {
                *self.usage.lock().unwrap() = Some(usage);
            }
            // 401 INVALID_SESSION_ID: the session expired or was revoked; one new login, one retry.
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && !fresh_login {
                tracing::info!("Salesforce says the session is no longer valid; logging in again");
                self.tokens.invalidate(&token);
                continue;
            }
            return Ok(response);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// One sObject Collections request (not all-or-none: each record succeeds
    /// or fails on its own); one result per record, in order.
    async fn collection(&self, method: reqwest::Method, records: Vec<Value>) -> Vec<Result<Value>> {
        let n = records.len();
        let body = json!({ "allOrNone": false, "records": records });
        // Creating twice makes two records; updating twice leaves what updating once does.
        let repeat = if method == reqwest::Method::POST { Repeat::OnlyIfUnsent } else { Repeat::Safe };
        let results = match self.call(method, "composite/sobjects", Some(&body), repeat).await {
            Ok(response) => self.http.json(response).await,
            Err(e) => Err(e),
        };
        let results = match results {
            Ok(Value::Array(results)) if results.len() == n => results,
            Ok(other) => {
                let e = ConnectorError::Unavailable {
                    system: "salesforce",
                    attempts: 1,
                    message: format!("a collection of {n} answered with {}", super::truncate(&other.to_string())),
                };
                return vec![Err(e); n];
            }
            Err(e) => return vec![Err(e); n],
        };
        results
            .into_iter()
            .map(|r| {
                if r["success"] == json!(true) {
                    return Ok(r);
                }
                let errors = r["errors"].as_array().cloned().unwrap_or_default();
                let message = errors
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["statusCode"].as_str().unwrap_or("UNKNOWN_ERROR"),
                            e["message"].as_str().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(ConnectorError::Refused { system: "salesforce", status: 400, message })
            })
            .collect()
    }
}

/// `api-usage=USED/MAX` out of a `Sforce-Limit-Info` value (which may carry other parts too).
pub fn parse_api_usage(header: &str) -> Option<(u64, u64)> {
    let part = header.split([';', ',']).map(str::trim).find_map(|p| p.strip_prefix("api-usage="))?;
    let (used, max) = part.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_usage_is_read_from_the_limit_header() {
        assert_eq!(super::parse_api_usage("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(
            super::parse_api_usage("api-usage=25/5000; per-app-api-usage=17/250(appName=sample)"),
            Some((25, 5000))
        );
        assert_eq!(super::parse_api_usage("per-app-api-usage=17/250"), None);
    }
}
