//! Clients for the systems seam writes to: the Salesforce REST API, the
//! ServiceNow Table API and the Slack Web API.
//!
//! Every call goes through [`Http::send`], which retries what is worth
//! retrying (429, 5xx, Salesforce's REQUEST_LIMIT_EXCEEDED, connection
//! errors) with exponential backoff and jitter, honouring `Retry-After`, and
//! reports the rest as permanent with the system's own error text.
//!
//! A request that is not safe to repeat (a create, a journal append, a chat
//! message) is sent as [`Repeat::OnlyIfUnsent`]: it is sent again only when the
//! failure shows the system did not act on it. Otherwise the caller learns
//! that it may have been applied, and finds the record by its key before it
//! tries again (see `engine::apply`).

pub mod batch;
pub mod salesforce;
pub mod servicenow;
pub mod slack;
pub mod tls;
pub mod token;

use reqwest::{RequestBuilder, Response, StatusCode};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ConnectorError {
    /// Still failing after every retry; trying again later may work.
    #[error("{system} unavailable after {attempts} attempts: {message}")]
    Unavailable { system: &'static str, attempts: u32, message: String },
    /// The system refused the request; repeating it will not help.
    #[error("{system} refused the request ({status}): {message}")]
    Refused { system: &'static str, status: u16, message: String },
    /// Not sent: a name, id or query value that cannot be what it claims to be
    /// (`../Account` as an id, a value an encoded query cannot carry).
    #[error("not sent to {system}: {message}")]
    Invalid { system: &'static str, message: String },
}

impl ConnectorError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectorError::Unavailable { .. })
    }
}

pub type Result<T> = std::result::Result<T, ConnectorError>;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 6, base: Duration::from_millis(100), max: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// Full jitter: a random wait up to base·2ⁿ (capped), and never less than
    /// the server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.base.saturating_mul(1 << attempt.min(16)).min(self.max);
        let jittered = ceiling.mul_f64(rand::random::<f64>());
        retry_after.map_or(jittered, |asked| asked.max(jittered))
    }
}

/// An HTTP client for one system, with its retry policy and a call counter.
#[derive(Clone)]
pub struct Http {
    pub system: &'static str,
    client: reqwest::Client,
    policy: RetryPolicy,
    calls: Arc<AtomicU64>,
    /// Of those, reads (GET).
    reads: Arc<AtomicU64>,
}

impl Http {
    /// `ca_pem`: a CA to trust on top of the system's roots (see [`tls`]).
    pub fn new(system: &'static str, ca_pem: Option<&Path>, policy: RetryPolicy) -> anyhow::Result<Self> {
        let client = tls::http_client(ca_pem)?.timeout(Duration::from_secs(30)).build()?;
        Ok(Http { system, client, policy, calls: Arc::new(AtomicU64::new(0)), reads: Arc::new(AtomicU64::new(0)) })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// API calls sent so far, retries included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Of [`Http::calls`], the reads (GET): queries, record reads, describes.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Send, retrying transient failures. `build` makes a fresh request per attempt.
    /// Returns the first response that is not a transient failure.
    pub async fn send(&self, build: impl Fn(&reqwest::Client) -> RequestBuilder) -> Result<Response> {
        self.send_as(build, Repeat::Safe).await
    }

    /// [`Http::send`], with the failures after which the request is sent again limited by
    /// `repeat` (see [`Repeat::OnlyIfUnsent`]).
    pub(crate) async fn send_as(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        repeat: Repeat,
    ) -> Result<Response> {
        let mut last = String::new();
        for attempt in 0..self.policy.attempts {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let request = build(&self.client);
            if request.try_clone().and_then(|r| r.build().ok()).is_some_and(|r| r.method() == reqwest::Method::GET) {
                self.reads.fetch_add(1, Ordering::Relaxed);
            }
            let retry_after = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        last = format!("{status}: {}", truncate(&response.text().await.unwrap_or_default()));
                        // 429 and 503 turn a request away before it is handled; a 500, 502 or
                        // 504 can come from a gateway or a timeout after the write was made.
                        let turned_away =
                            matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE);
                        if !turned_away && repeat == Repeat::OnlyIfUnsent {
                            return Err(self.maybe_applied(attempt, &last));
                        }
                        retry_after
                    } else if status == StatusCode::FORBIDDEN {
                        // Salesforce says "over the limit" with a 403 and an error code.
                        let body = response.text().await.unwrap_or_default();
                        if !body.contains("REQUEST_LIMIT_EXCEEDED") {
                            return Err(ConnectorError::Refused {
                                system: self.system,
                                status: 403,
                                message: truncate(&body),
                            });
                        }
                        last = format!("403 REQUEST_LIMIT_EXCEEDED: {}", truncate(&body));
                        retry_after
                    } else {
                        return Ok(response);
                    }
                }
                Err(e) => {
                    last = error_chain(&e);
                    if !e.is_connect() && repeat == Repeat::OnlyIfUnsent {
                        return Err(self.maybe_applied(attempt, &last));
                    }
                    None
                }
            };
            if attempt + 1 < self.policy.attempts {
                let wait = self.policy.delay(attempt, retry_after);
                tracing::debug!(system = self.system, attempt, ?wait, "retrying: {last}");
                tokio::time::sleep(wait).await;
            }
        }
        Err(ConnectorError::Unavailable { system: self.system, attempts: self.policy.attempts, message: last })
    }

    fn maybe_applied(&self, attempt: u32, failure: &str) -> ConnectorError {
        ConnectorError::Unavailable {
            system: self.system,
            attempts: attempt + 1,
            message: format!("{failure} (the request may have been applied; it is not sent again blindly)"),
        }
    }

    /// The answer to a delete: `false` when the record was gone already (404), which a
    /// repeated delete finds; else it must be a success.
    pub async fn deleted(&self, response: Response) -> Result<bool> {
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.expect_success(response).await?;
        Ok(true)
    }

    /// A response that must be a success, else a permanent error with the body.
    pub async fn expect_success(&self, response: Response) -> Result<Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(ConnectorError::Refused { system: self.system, status: status.as_u16(), message: truncate(&body) })
    }

    pub async fn json(&self, response: Response) -> Result<serde_json::Value> {
        let response = self.expect_success(response).await?;
        response.json().await.map_err(|e| ConnectorError::Unavailable {
            system: self.system,
            attempts: 1,
            message: format!("unreadable response: {e}"),
        })
    }
}

/// Whether a request may be sent again after a failure that could have come after the system acted on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Reads, updates, upserts: applying one twice leaves what applying it once does.
    Safe,
    /// Creates, appends, posts: sent again only when the system surely did not act on
    /// it: the connection was never made, or it was turned away (429, 503, Salesforce's
    /// REQUEST_LIMIT_EXCEEDED). A timeout, a dropped connection, a 500, 502 or 504 may
    /// come after the write was made, so it is a [`ConnectorError::Unavailable`] saying
    /// so, and the caller looks for the record before it sends again.
    OnlyIfUnsent,
}

/// An error with its causes: reqwest's own text ("error sending request") hides the
/// part an operator needs ("invalid peer certificate: UnknownIssuer", "Connection refused").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// One segment of a URL path, percent-encoded: whatever it holds, it stays one segment.
pub fn path_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn truncate(s: &str) -> String {
    if s.len() <= 500 {
        return s.to_string();
    }
    let mut end = 500;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
