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

use crate::transience::Transience;
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

impl Transience for ConnectorError {
    /// Still unavailable after every retry; a refusal or an unsendable request is not.
    fn is_transient(&self) -> bool {
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
                    let retry_after = retry_after(response.headers());
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

/// The wait a response asks for in its `Retry-After` header, in whole seconds. (The header's
/// other form, an HTTP date, is not read: the backoff's own wait stands.)
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    #[test]
    fn the_default_policy_is_six_attempts_from_100ms_up_to_10s() {
        let policy = RetryPolicy::default();
        assert_eq!(
            (policy.attempts, policy.base, policy.max),
            (6, Duration::from_millis(100), Duration::from_secs(10))
        );
    }

    #[test]
    fn backoff_is_full_jitter_under_a_ceiling_that_doubles_up_to_max() {
        let policy = RetryPolicy::default();
        let ceilings_ms = [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000];
        for (attempt, &ceiling) in ceilings_ms.iter().enumerate() {
            let ceiling = Duration::from_millis(ceiling);
            let waits: Vec<Duration> = (0..500).map(|_| policy.delay(attempt as u32, None)).collect();
            assert!(
                waits.iter().all(|&w| w <= ceiling),
                "attempt {attempt}: {:?} over {ceiling:?}",
                waits.iter().max()
            );
            // Full jitter: spread over the whole range, not bunched near the ceiling (or at zero).
            assert!(waits.iter().any(|&w| w < ceiling / 4), "attempt {attempt}: nothing low");
            assert!(waits.iter().any(|&w| w > ceiling * 3 / 4), "attempt {attempt}: nothing high");
        }
    }

    #[test]
    fn the_doubling_stops_at_2_to_the_16_and_never_overflows() {
        // A max too high to matter: the ceiling is base·2^min(attempt, 16).
        let policy = RetryPolicy { attempts: 100, base: Duration::from_nanos(1), max: Duration::from_secs(3600) };
        for attempt in [16, 17, 40, u32::MAX] {
            let waits: Vec<Duration> = (0..500).map(|_| policy.delay(attempt, None)).collect();
            assert!(
                waits.iter().all(|&w| w <= Duration::from_nanos(65_536)),
                "attempt {attempt}: {:?}",
                waits.iter().max()
            );
            assert!(waits.iter().any(|&w| w > Duration::from_nanos(32_768)), "attempt {attempt}");
        }
        // A base so large that base·2^16 overflows saturates, and max still caps it.
        let huge = RetryPolicy { attempts: 3, base: Duration::MAX / 2, max: Duration::from_millis(10) };
        assert!(huge.delay(u32::MAX, None) <= Duration::from_millis(10));
    }

    #[test]
    fn retry_after_is_a_floor_under_the_backoff() {
        let policy = RetryPolicy::default();
        // Asked for more than the backoff would wait: exactly what was asked, even past max.
        assert_eq!(policy.delay(0, Some(Duration::from_secs(5))), Duration::from_secs(5));
        assert_eq!(policy.delay(9, Some(Duration::from_secs(60))), Duration::from_secs(60));
        // Asked for less: at least that, and the jittered backoff when it is longer.
        let waits: Vec<Duration> = (0..500).map(|_| policy.delay(3, Some(Duration::from_millis(50)))).collect();
        assert!(waits.iter().all(|&w| (Duration::from_millis(50)..=Duration::from_millis(800)).contains(&w)));
        assert!(waits.iter().any(|&w| w > Duration::from_millis(400)), "the backoff still applies above the floor");
        assert!(waits.iter().any(|&w| w == Duration::from_millis(50)), "the floor applies when the jitter is below it");
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        let header = |value: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("Retry-After", value.parse().unwrap());
            retry_after(&headers)
        };
        assert_eq!(header("120"), Some(Duration::from_secs(120)));
        assert_eq!(header(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(header("0"), Some(Duration::ZERO));
        // Not understood, so not honoured: the backoff's wait stands.
        assert_eq!(header("Wed, 21 Oct 2099 07:28:00 GMT"), None, "the HTTP-date form is not read");
        assert_eq!(header("1.5"), None);
        assert_eq!(header("-1"), None);
        assert_eq!(header(""), None);
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
    }

    /// What the test server answers to its nth request (once the script runs out: 200 "ok").
    #[derive(Clone)]
    enum Reply {
        Status(u16, &'static str),
        /// A status with a `Retry-After` header.
        After(u16, &'static str),
        /// An answer too late for the client's timeout.
        Stall,
    }

    /// A server on 127.0.0.1 answering each request with the next reply; its URL, and how
    /// many requests it has had.
    async fn serve(script: Vec<Reply>) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let (script, counter) = (Arc::new(script), hits.clone());
        let app = axum::Router::new().fallback(move || {
            let (script, counter) = (script.clone(), counter.clone());
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let code = |c: u16| axum::http::StatusCode::from_u16(c).unwrap();
                match script.get(n).cloned() {
                    None => (code(200), "ok").into_response(),
                    Some(Reply::Status(status, body)) => (code(status), body).into_response(),
                    Some(Reply::After(status, after)) => {
                        (code(status), [("retry-after", after)], "wait").into_response()
                    }
                    Some(Reply::Stall) => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        (code(200), "late").into_response()
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, hits)
    }

    /// Three attempts, waits of a few milliseconds.
    fn http() -> Http {
        let policy = RetryPolicy { attempts: 3, base: Duration::from_millis(1), max: Duration::from_millis(5) };
        Http::new("test", None, policy).unwrap()
    }

    async fn post(http: &Http, url: &str, repeat: Repeat) -> Result<Response> {
        http.send_as(|c| c.post(url).timeout(Duration::from_millis(300)).body("{}"), repeat).await
    }

    const MAYBE_APPLIED: &str = " (the request may have been applied; it is not sent again blindly)";

    #[tokio::test]
    async fn a_503_with_retry_after_is_sent_again_after_the_wait_asked_for() {
        let (url, hits) = serve(vec![Reply::After(503, "1")]).await;
        let http = http();
        let start = Instant::now();
        let response = post(&http, &url, Repeat::Safe).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(start.elapsed() >= Duration::from_secs(1), "waited {:?}", start.elapsed());
        assert_eq!((hits.load(Ordering::SeqCst), http.calls()), (2, 2));

        // Without the header, the backoff alone (a few milliseconds here).
        let (url, hits) = serve(vec![Reply::Status(503, "busy")]).await;
        let start = Instant::now();
        post(&http, &url, Repeat::Safe).await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(1), "waited {:?}", start.elapsed());
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_sent_again_after_the_wait_even_when_not_safe_to_repeat() {
        let (url, hits) = serve(vec![Reply::After(429, "1")]).await;
        let start = Instant::now();
        let response = post(&http(), &url, Repeat::OnlyIfUnsent).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(start.elapsed() >= Duration::from_secs(1), "waited {:?}", start.elapsed());
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn server_errors_are_sent_again_until_the_attempts_run_out() {
        for (status, text) in
            [(500, "500 Internal Server Error"), (502, "502 Bad Gateway"), (429, "429 Too Many Requests")]
        {
            let (url, hits) = serve(vec![Reply::Status(status, "boom"); 5]).await;
            let http = http();
            let error = post(&http, &url, Repeat::Safe).await.unwrap_err();
            assert!(error.is_transient());
            match error {
                ConnectorError::Unavailable { system, attempts, message } => {
                    assert_eq!((system, attempts, message.as_str()), ("test", 3, format!("{text}: boom").as_str()));
                }
                other => panic!("{status}: {other:?}"),
            }
            assert_eq!((hits.load(Ordering::SeqCst), http.calls()), (3, 3), "{status}: the attempt cap");
        }
    }

    #[tokio::test]
    async fn a_server_error_then_a_success_is_the_success() {
        for status in [500, 502, 503, 504] {
            let (url, hits) = serve(vec![Reply::Status(status, "boom"), Reply::Status(status, "boom")]).await;
            let response = post(&http(), &url, Repeat::Safe).await.unwrap();
            assert_eq!((response.status().as_u16(), response.text().await.unwrap().as_str()), (200, "ok"));
            assert_eq!(hits.load(Ordering::SeqCst), 3, "{status}");
        }
    }

    #[tokio::test]
    async fn client_errors_other_than_429_are_answered_at_once_not_retried() {
        for status in [400, 401, 404, 405, 409, 422] {
            let (url, hits) = serve(vec![Reply::Status(status, "no")]).await;
            let http = http();
            let response = post(&http, &url, Repeat::Safe).await.unwrap();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!((hits.load(Ordering::SeqCst), http.calls()), (1, 1), "{status}");
        }
    }

    #[tokio::test]
    async fn a_403_is_refused_unless_it_is_salesforces_request_limit() {
        let (url, hits) = serve(vec![Reply::Status(403, "insufficient access")]).await;
        match post(&http(), &url, Repeat::Safe).await.unwrap_err() {
            ConnectorError::Refused { system, status, message } => {
                assert_eq!((system, status, message.as_str()), ("test", 403, "insufficient access"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let limit = r#"[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"TotalRequests Limit exceeded."}]"#;
        let (url, hits) = serve(vec![Reply::Status(403, limit)]).await;
        assert_eq!(post(&http(), &url, Repeat::OnlyIfUnsent).await.unwrap().status(), 200);
        assert_eq!(hits.load(Ordering::SeqCst), 2, "turned away, so sent again even when not safe to repeat");

        let (url, _) = serve(vec![Reply::Status(403, limit); 3]).await;
        match post(&http(), &url, Repeat::Safe).await.unwrap_err() {
            ConnectorError::Unavailable { attempts: 3, message, .. } => {
                assert_eq!(message, format!("403 REQUEST_LIMIT_EXCEEDED: {limit}"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_request_not_safe_to_repeat_is_not_sent_again_after_a_failure_that_may_have_applied_it() {
        for (status, text) in
            [(500, "500 Internal Server Error"), (502, "502 Bad Gateway"), (504, "504 Gateway Timeout")]
        {
            let (url, hits) = serve(vec![Reply::Status(status, "boom")]).await;
            match post(&http(), &url, Repeat::OnlyIfUnsent).await.unwrap_err() {
                ConnectorError::Unavailable { system, attempts, message } => {
                    assert_eq!((system, attempts), ("test", 1));
                    assert_eq!(message, format!("{text}: boom{MAYBE_APPLIED}"));
                }
                other => panic!("{status}: {other:?}"),
            }
            assert_eq!(hits.load(Ordering::SeqCst), 1, "{status}: sent once");
        }
        // Turned away first (sent again), then a failure that may have applied it: two attempts, no third.
        let (url, hits) = serve(vec![Reply::Status(503, "busy"), Reply::Status(502, "boom")]).await;
        match post(&http(), &url, Repeat::OnlyIfUnsent).await.unwrap_err() {
            ConnectorError::Unavailable { attempts, message, .. } => {
                assert_eq!((attempts, message), (2, format!("502 Bad Gateway: boom{MAYBE_APPLIED}")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_turned_away_request_is_sent_again_even_when_not_safe_to_repeat() {
        for status in [429, 503] {
            let (url, hits) = serve(vec![Reply::Status(status, "busy"), Reply::Status(status, "busy")]).await;
            assert_eq!(post(&http(), &url, Repeat::OnlyIfUnsent).await.unwrap().status(), 200);
            assert_eq!(hits.load(Ordering::SeqCst), 3, "{status}");
        }
    }

    #[tokio::test]
    async fn a_timeout_is_retried_only_when_the_request_is_safe_to_repeat() {
        let (url, hits) = serve(vec![Reply::Stall]).await;
        let response = post(&http(), &url, Repeat::Safe).await.unwrap();
        assert_eq!(response.text().await.unwrap(), "ok");
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        let (url, hits) = serve(vec![Reply::Stall]).await;
        match post(&http(), &url, Repeat::OnlyIfUnsent).await.unwrap_err() {
            ConnectorError::Unavailable { attempts, message, .. } => {
                assert_eq!(attempts, 1);
                assert!(message.ends_with(MAYBE_APPLIED), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the server may have acted on it: not sent again");
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_up_to_the_cap_even_when_not_safe_to_repeat() {
        // A port with nothing listening on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/");
        let http = http();
        match post(&http, &url, Repeat::OnlyIfUnsent).await.unwrap_err() {
            ConnectorError::Unavailable { system, attempts, message } => {
                assert_eq!((system, attempts), ("test", 3));
                assert!(message.contains("Connection refused"), "{message}");
                assert!(!message.contains("may have been applied"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((http.calls(), http.reads()), (3, 0));
    }

    #[tokio::test]
    async fn reads_are_counted_apart_from_the_calls() {
        let (url, _) = serve(vec![Reply::Status(503, "busy")]).await;
        let http = http();
        http.send(|c| c.get(&url)).await.unwrap();
        http.send(|c| c.delete(&url)).await.unwrap();
        assert_eq!((http.calls(), http.reads()), (3, 2), "a GET retried once, then a DELETE");
    }
}
