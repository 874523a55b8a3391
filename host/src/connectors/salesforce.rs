//! Salesforce REST API client: OAuth login, sObject reads and writes, SOQL.

use super::{ConnectorError, Http, Result, RetryPolicy};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::RwLock;

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
        let sf = Salesforce { http: Http::new("salesforce", ca_pem, policy)?, credentials, session: RwLock::new(Session::default()) };
        sf.login().await?;
        Ok(sf)
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    pub fn instance_url(&self) -> String {
        self.session.read().unwrap().instance_url.clone()
    }

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

    pub async fn create(&self, object: &str, fields: &Map<String, Value>) -> Result<String> {
        let response = self.call(reqwest::Method::POST, &format!("sobjects/{object}/"), Some(&Value::Object(fields.clone()))).await?;
        let body = self.http.json(response).await?;
        Ok(body["id"].as_str().unwrap_or_default().to_string())
    }

    pub async fn update(&self, object: &str, id: &str, fields: &Map<String, Value>) -> Result<()> {
        let response = self.call(reqwest::Method::PATCH, &format!("sobjects/{object}/{id}"), Some(&Value::Object(fields.clone()))).await?;
        self.http.expect_success(response).await.map(drop)
    }

    pub async fn get(&self, object: &str, id: &str) -> Result<Map<String, Value>> {
        let response = self.call(reqwest::Method::GET, &format!("sobjects/{object}/{id}"), None).await?;
        let body = self.http.json(response).await?;
        Ok(body.as_object().cloned().unwrap_or_default())
    }

    /// Every row of a SOQL query, following `nextRecordsUrl`.
    pub async fn query(&self, soql: &str) -> Result<Vec<Map<String, Value>>> {
        let mut path = format!("query?{}", serde_urlencoded::to_string([("q", soql)]).unwrap_or_default());
        let mut rows = Vec::new();
        loop {
            let response = self.call(reqwest::Method::GET, &path, None).await?;
            let body = self.http.json(response).await?;
            rows.extend(body["records"].as_array().into_iter().flatten().filter_map(|r| r.as_object().cloned()));
            match body["nextRecordsUrl"].as_str() {
                Some(next) if body["done"] == json!(false) => path = next.to_string(),
                _ => return Ok(rows),
            }
        }
    }
}
