//! ServiceNow Table API client (basic auth).

use super::{Http, Result, RetryPolicy};
use serde_json::{Map, Value};
use std::path::Path;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub instance_url: String,
    pub username: String,
    pub password: String,
}

pub struct ServiceNow {
    http: Http,
    credentials: Credentials,
}

impl ServiceNow {
    pub fn new(credentials: Credentials, ca_pem: Option<&Path>, policy: RetryPolicy) -> anyhow::Result<Self> {
        Ok(ServiceNow { http: Http::new("servicenow", ca_pem, policy)?, credentials })
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    pub fn instance_url(&self) -> &str {
        self.credentials.instance_url.trim_end_matches('/')
    }

    fn url(&self, table: &str, id: Option<&str>) -> String {
        match id {
            Some(id) => format!("{}/api/now/table/{table}/{id}", self.instance_url()),
            None => format!("{}/api/now/table/{table}", self.instance_url()),
        }
    }

    async fn result(&self, response: reqwest::Response) -> Result<Value> {
        Ok(self.http.json(response).await?["result"].take())
    }

    pub async fn insert(&self, table: &str, fields: &Map<String, Value>) -> Result<Map<String, Value>> {
        let (url, c) = (self.url(table, None), &self.credentials);
        let response = self.http.send(|client| client.post(&url).basic_auth(&c.username, Some(&c.password)).json(fields)).await?;
        Ok(self.result(response).await?.as_object().cloned().unwrap_or_default())
    }

    pub async fn update(&self, table: &str, id: &str, fields: &Map<String, Value>) -> Result<Map<String, Value>> {
        let (url, c) = (self.url(table, Some(id)), &self.credentials);
        let response = self.http.send(|client| client.patch(&url).basic_auth(&c.username, Some(&c.password)).json(fields)).await?;
        Ok(self.result(response).await?.as_object().cloned().unwrap_or_default())
    }

    /// A record with `{"value", "display_value"}` per field.
    pub async fn get(&self, table: &str, id: &str) -> Result<Map<String, Value>> {
        let (url, c) = (self.url(table, Some(id)), &self.credentials);
        let params = [("sysparm_display_value", "all"), ("sysparm_exclude_reference_link", "true")];
        let response = self.http.send(|client| client.get(&url).basic_auth(&c.username, Some(&c.password)).query(&params)).await?;
        Ok(self.result(response).await?.as_object().cloned().unwrap_or_default())
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
        let (url, c) = (self.url(table, None), &self.credentials);
        let limit = limit.to_string();
        let params = [("sysparm_query", encoded), ("sysparm_limit", limit.as_str()), ("sysparm_exclude_reference_link", "true"), ("sysparm_display_value", display)];
        let response = self.http.send(|client| client.get(&url).basic_auth(&c.username, Some(&c.password)).query(&params)).await?;
        let rows = self.result(response).await?;
        Ok(rows.as_array().into_iter().flatten().filter_map(|r| r.as_object().cloned()).collect())
    }
}
