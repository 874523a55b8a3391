//! Salesforce REST API client: OAuth login, sObject reads and writes, SOQL.
//!
//! Creates and updates go through sObject Collections (`/composite/sobjects`,
//! up to 200 records per call): writes queued while others are in flight
//! share one call (see [`super::batch`]).

use super::batch::Batcher;
use super::{ConnectorError, Http, Result, RetryPolicy};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// sObject Collections take at most 200 records per request.
pub const COLLECTION_LIMIT: usize = 200;
/// Collection requests in flight at once per connection.
const PARALLEL_WRITES: usize = 2;

pub const API_VERSION: &str = "59.0";

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub login_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    /// Password with the security token appended.
    pub password: String,
}

pub struct Salesforce {
    api: Arc<Api>,
    creates: Batcher<(String, Map<String, Value>), String>,
    updates: Batcher<(String, String, Map<String, Value>), ()>,
}

/// The session and the calls; shared with the batchers.
struct Api {
    http: Http,
    credentials: Credentials,
    session: RwLock<Session>,
}

#[derive(Clone, Default)]
struct Session {
    token: String,
    instance_url: String,
}

impl Salesforce {
    pub async fn connect(credentials: Credentials, ca_pem: Option<&Path>, policy: RetryPolicy) -> anyhow::Result<Self> {
        let api = Arc::new(Api { http: Http::new("salesforce", ca_pem, policy)?, credentials, session: RwLock::new(Session::default()) });
        api.login().await?;
        let creates = {
            let api = api.clone();
            Batcher::new("salesforce", COLLECTION_LIMIT, PARALLEL_WRITES, move |batch: Vec<(String, Map<String, Value>)>| {
                let api = api.clone();
                async move {
                    let records = batch.into_iter().map(|(object, fields)| record(&object, None, fields)).collect();
                    let results = api.collection(reqwest::Method::POST, records).await;
                    results.into_iter().map(|r| r.map(|ok| ok["id"].as_str().unwrap_or_default().to_string())).collect()
                }
            })
        };
        let updates = {
            let api = api.clone();
            Batcher::new("salesforce", COLLECTION_LIMIT, PARALLEL_WRITES, move |batch: Vec<(String, String, Map<String, Value>)>| {
                let api = api.clone();
                async move {
                    let records = batch.into_iter().map(|(object, id, fields)| record(&object, Some(id), fields)).collect();
                    api.collection(reqwest::Method::PATCH, records).await.into_iter().map(|r| r.map(drop)).collect()
                }
            })
        };
        Ok(Salesforce { api, creates, updates })
    }

    pub fn http(&self) -> &Http {
        &self.api.http
    }

    pub fn instance_url(&self) -> String {
        self.api.session.read().unwrap().instance_url.clone()
    }

    /// Create a record; returns its id.
    pub async fn create(&self, object: &str, fields: &Map<String, Value>) -> Result<String> {
        self.creates.submit((object.to_string(), fields.clone())).await
    }

    pub async fn update(&self, object: &str, id: &str, fields: &Map<String, Value>) -> Result<()> {
        self.updates.submit((object.to_string(), id.to_string(), fields.clone())).await
    }

    pub async fn get(&self, object: &str, id: &str) -> Result<Map<String, Value>> {
        let api = &self.api;
        let response = api.call(reqwest::Method::GET, &format!("sobjects/{object}/{id}"), None).await?;
        let body = api.http.json(response).await?;
        Ok(body.as_object().cloned().unwrap_or_default())
    }

    /// Every row of a SOQL query, following `nextRecordsUrl`.
    pub async fn query(&self, soql: &str) -> Result<Vec<Map<String, Value>>> {
        let api = &self.api;
        let mut path = format!("query?{}", serde_urlencoded::to_string([("q", soql)]).unwrap_or_default());
        let mut rows = Vec::new();
        loop {
            let response = api.call(reqwest::Method::GET, &path, None).await?;
            let body = api.http.json(response).await?;
            rows.extend(body["records"].as_array().into_iter().flatten().filter_map(|r| r.as_object().cloned()));
            match body["nextRecordsUrl"].as_str() {
                Some(next) if body["done"] == json!(false) => path = next.to_string(),
                _ => return Ok(rows),
            }
        }
    }
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
    async fn login(&self) -> Result<()> {
        let c = &self.credentials;
        let form = [
            ("grant_type", "password"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
            ("username", c.username.as_str()),
            ("password", c.password.as_str()),
        ];
        let url = format!("{}/services/oauth2/token", c.login_url.trim_end_matches('/'));
        let response = self.http.send(|client| client.post(&url).form(&form)).await?;
        let body = self.http.json(response).await?;
        let (Some(token), Some(instance)) = (body["access_token"].as_str(), body["instance_url"].as_str()) else {
            return Err(ConnectorError::Refused { system: "salesforce", status: 200, message: format!("the token response has no access_token/instance_url: {body}") });
        };
        *self.session.write().unwrap() = Session { token: token.to_string(), instance_url: instance.to_string() };
        Ok(())
    }

    /// Send a REST call under `/services/data/vXX.X/`, logging in again once if the session expired.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<reqwest::Response> {
        for fresh_login in [false, true] {
            let session = self.session.read().unwrap().clone();
            let url = if path.starts_with("/services/") { format!("{}{path}", session.instance_url) } else { format!("{}/services/data/v{API_VERSION}/{path}", session.instance_url) };
            let response = self
                .http
                .send(|client| {
                    let request = client.request(method.clone(), &url).bearer_auth(&session.token);
                    match body {
                        Some(b) => request.json(b),
                        None => request,
                    }
                })
                .await?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && !fresh_login {
                self.login().await?;
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
        let results = match self.call(method, "composite/sobjects", Some(&body)).await {
            Ok(response) => self.http.json(response).await,
            Err(e) => Err(e),
        };
        let results = match results {
            Ok(Value::Array(results)) if results.len() == n => results,
            Ok(other) => {
                let e = ConnectorError::Unavailable { system: "salesforce", attempts: 1, message: format!("a collection of {n} answered with {}", super::truncate(&other.to_string())) };
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
                let message = errors.iter().map(|e| format!("{}: {}", e["statusCode"].as_str().unwrap_or("UNKNOWN_ERROR"), e["message"].as_str().unwrap_or_default())).collect::<Vec<_>>().join("; ");
                Err(ConnectorError::Refused { system: "salesforce", status: 400, message })
            })
            .collect()
    }
}
