//! Intake: the HTTP endpoints the systems push change notifications to.
//!
//! Each request is authenticated, parsed and normalized to [`Change`]s, and
//! written to the journal in one transaction before it is acknowledged, so
//! an acknowledged notification is never lost and a redelivered one is
//! stored once. Bad, unsigned, oversized or malformed input gets a 4xx that
//! says why, and nothing is stored.
//!
//! | route | source | authenticated by |
//! |---|---|---|
//! | `POST /intake/{tenant}/salesforce/outbound` | Outbound Messages (SOAP) | OrganizationId + `?token=` in the configured URL (Salesforce cannot sign them) |
//! | `POST /intake/{tenant}/servicenow` | seam's push business rule (JSON, `servicenow/notification.json`) | `X-Seam-Signature: sha256=HMAC(timestamp.body)`, signed within 5 minutes (`X-Seam-Timestamp`) |
//! | `GET /intake/healthz` | probes (`seam doctor`) | nothing: it says only that intake answers |
//!
//! A signature's HMAC-SHA256 may be written in hex or in Base64 (ServiceNow's
//! `GlideCertificateEncryption.generateMac` gives Base64).

pub mod salesforce;
pub mod servicenow;

use crate::config::intake::TenantIntake;
use crate::engine::processor::Counters;
use crate::model::Change;
use crate::secrets::{ExposeSecret, SecretString};
use crate::store::{Journal, Recorded};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest notification accepted. Salesforce sends at most 100 records per Outbound Message.
pub const DEFAULT_MAX_BODY: usize = 4 << 20;

impl TenantIntake {
    /// Read the secrets (`tenant` names them in errors).
    pub fn keys(&self, tenant: &str) -> anyhow::Result<IntakeKeys> {
        let what = |k: &str| format!("tenants.{tenant}.intake.{k}");
        Ok(IntakeKeys {
            salesforce_org_id: self.salesforce_org_id.clone(),
            salesforce_token: self.salesforce_token.resolve(&what("salesforce_token"))?,
            servicenow_secret: self.servicenow_secret.resolve(&what("servicenow_secret"))?,
        })
    }
}

/// [`TenantIntake`] with its secrets read.
#[derive(Clone, Debug)]
pub struct IntakeKeys {
    pub salesforce_org_id: String,
    pub salesforce_token: SecretString,
    pub servicenow_secret: SecretString,
}

pub struct Intake {
    pub journal: Arc<Journal>,
    pub tenants: HashMap<String, IntakeKeys>,
    /// Each tenant's processor counters: an echo settled here counts as processed, and as an echo.
    pub counters: HashMap<String, Counters>,
    /// Now, in Unix seconds: what a notification's signing time is checked against.
    pub clock: fn() -> i64,
    /// Each tenant's notifications per second (`limits.intake_per_second`, `intake_burst`).
    rate: crate::listener::RateLimiter,
    /// Seconds a sender has to send a notification's body.
    body_timeout_seconds: u64,
}

/// The system clock, in Unix seconds.
pub fn system_clock() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A rejected notification: the status and the reason, sent back as is.
#[derive(Debug)]
pub struct Rejection(pub StatusCode, pub String);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        tracing::warn!(status = %self.0, "intake refused a notification: {}", self.1);
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn reject(status: StatusCode, why: impl Into<String>) -> Rejection {
    Rejection(status, why.into())
}

/// What `GET /intake/healthz` answers: a liveness probe, and `seam doctor`'s check that the
/// systems can reach intake at the public URL.
pub const HEALTH: &str = r#"{"service":"seam intake","ok":true}"#;

/// Intake's routes, and `GET /intake/healthz`.
pub fn health_router() -> Router {
    Router::new()
        .route("/intake/healthz", axum::routing::get(|| async { ([("Content-Type", "application/json")], HEALTH) }))
}

pub fn router(intake: Arc<Intake>, max_body: usize) -> Router {
    let routes = Router::new()
        .route("/intake/{tenant}/salesforce/outbound", post(salesforce_outbound))
        .route("/intake/{tenant}/servicenow", post(servicenow_notification));
    // The rate limit first: a tenant over it is answered before its body is read.
    let notifications = crate::listener::bodies_within(routes, intake.body_timeout_seconds, max_body)
        .route_layer(axum::middleware::from_fn_with_state(intake.clone(), within_rate))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(intake);
    health_router().merge(notifications)
}

/// 429 with `Retry-After` for a tenant past its rate. Unknown tenants share one budget, so
/// inventing names does not buy more.
async fn within_rate(
    State(intake): State<Arc<Intake>>,
    Path(tenant): Path<String>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let key = if intake.tenants.contains_key(&tenant) { tenant.as_str() } else { "" };
    match intake.rate.take(key) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            tracing::warn!(tenant = %tenant, "intake: over the tenant's rate; answered 429");
            let mut response = reject(
                StatusCode::TOO_MANY_REQUESTS,
                format!("over this tenant's intake rate; send again in {seconds} s"),
            )
            .into_response();
            response.headers_mut().insert("retry-after", seconds.into());
            response
        }
    }
}

/// The keys checked for a tenant that is not configured: random, so nothing matches them, and
/// an unknown tenant gets the answer a wrong key gets (tenant names cannot be probed).
static DECOY: std::sync::LazyLock<IntakeKeys> = std::sync::LazyLock::new(|| {
    let random = || SecretString::from(crate::secrets::random_secret());
    IntakeKeys { salesforce_org_id: String::new(), salesforce_token: random(), servicenow_secret: random() }
});

impl Intake {
    pub fn new(
        journal: Arc<Journal>,
        tenants: HashMap<String, IntakeKeys>,
        counters: HashMap<String, Counters>,
    ) -> Intake {
        let limits = crate::config::limits::Limits::default();
        Intake {
            journal,
            tenants,
            counters,
            clock: system_clock,
            rate: crate::listener::RateLimiter::new(limits.intake_per_second, limits.intake_burst),
            body_timeout_seconds: limits.body_timeout_seconds,
        }
    }

    /// Apply the configuration's limits: the rate each tenant may send at, and the body deadline.
    pub fn limit(&mut self, limits: &crate::config::limits::Limits) {
        self.rate = crate::listener::RateLimiter::new(limits.intake_per_second, limits.intake_burst);
        self.body_timeout_seconds = limits.body_timeout_seconds;
    }

    fn tenant(&self, name: &str) -> &IntakeKeys {
        self.tenants.get(name).unwrap_or_else(|| {
            tracing::warn!(
                tenant = name,
                "intake: a notification for a tenant that is not configured (answered as a wrong key)"
            );
            &DECOY
        })
    }

    /// Journal the changes; the caller acknowledges only after this returns Ok.
    /// Seam's own writes coming back are settled as echoes in the same write
    /// (most notifications in a busy sync are), so they never queue.
    async fn record(&self, tenant: &str, events: Vec<(String, Change)>) -> Result<(usize, usize), Rejection> {
        let recorded =
            self.journal.record_settling_echoes(tenant, events, crate::engine::echoes::settled_echo).await.map_err(
                |e| {
                    reject(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("the journal could not store the notification, send it again: {e:#}"),
                    )
                },
            )?;
        let echoes = recorded.iter().filter(|r| matches!(r, Recorded::Echo(_))).count() as u64;
        if let Some(c) = self.counters.get(tenant).filter(|_| echoes > 0) {
            c.processed.inc_by(echoes);
            c.echoes.inc_by(echoes);
        }
        let new = recorded.iter().filter(|r| r.is_new()).count();
        Ok((new, recorded.len() - new))
    }
}

/// Check `X-Seam-Timestamp` and `X-Seam-Signature: sha256=<hex or Base64>` against the body, in
/// constant time, then that the notification was signed within [`servicenow::MAX_AGE_SECONDS`] of `now`.
fn verify_signature(headers: &HeaderMap, secret: &str, body: &[u8], now: i64) -> Result<(), Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let encoded = header(servicenow::SIGNATURE_HEADER)
        .ok_or_else(|| reject(StatusCode::UNAUTHORIZED, "unsigned: the X-Seam-Signature header is missing"))?
        .strip_prefix("sha256=")
        .ok_or_else(|| reject(StatusCode::UNAUTHORIZED, "X-Seam-Signature must be sha256=<hex or Base64 HMAC>"))?;
    let timestamp: i64 = header(servicenow::TIMESTAMP_HEADER).and_then(|t| t.trim().parse().ok()).ok_or_else(|| {
        reject(StatusCode::UNAUTHORIZED, "X-Seam-Timestamp (Unix seconds, signed with the body) is missing or not a number; the business rule predates it: generate and install the update set again (`seam servicenow update-set`)")
    })?;
    // 32 bytes: 64 hex digits, or 44 Base64 characters.
    let signature = if encoded.len() == 64 {
        hex::decode(encoded).ok()
    } else {
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).ok()
    }
    .ok_or_else(|| reject(StatusCode::UNAUTHORIZED, "X-Seam-Signature is neither hex nor Base64"))?;
    if !subtle_eq(&signature, &servicenow::mac(secret, timestamp, body)) {
        return Err(reject(
            StatusCode::UNAUTHORIZED,
            "X-Seam-Signature does not match the timestamp and body; check the shared secret",
        ));
    }
    let age = now - timestamp;
    if age.abs() > servicenow::MAX_AGE_SECONDS {
        return Err(reject(
            StatusCode::UNAUTHORIZED,
            format!("the notification was signed {age} s from intake's clock, more than the {} s allowed: a replayed notification is refused (if it is not a replay, check the instance's and seam's clocks)", servicenow::MAX_AGE_SECONDS),
        ));
    }
    Ok(())
}

async fn salesforce_outbound(
    State(intake): State<Arc<Intake>>,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let result = async {
        let config = intake.tenant(&tenant);
        let token_ok =
            q.get("token").is_some_and(|t| subtle_eq(t.as_bytes(), config.salesforce_token.expose_secret().as_bytes()));
        if !token_ok {
            return Err(reject(StatusCode::UNAUTHORIZED, "the Outbound Message URL must carry the tenant's ?token="));
        }
        let message = salesforce::parse_outbound(&body).map_err(|why| reject(StatusCode::BAD_REQUEST, why))?;
        if message.organization_id != config.salesforce_org_id {
            return Err(reject(
                StatusCode::FORBIDDEN,
                format!(
                    "Outbound Message from org {}, but tenant {tenant} is org {}",
                    message.organization_id, config.salesforce_org_id
                ),
            ));
        }
        intake.record(&tenant, message.changes).await
    }
    .await;
    match result {
        // Ack only now: the changes are in the journal.
        Ok(_) => ([("Content-Type", "text/xml; charset=utf-8")], salesforce::ACK).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

fn accepted((new, duplicates): (usize, usize)) -> Response {
    (StatusCode::ACCEPTED, Json(json!({ "accepted": new, "duplicates": duplicates }))).into_response()
}

async fn servicenow_notification(
    State(intake): State<Arc<Intake>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let config = intake.tenant(&tenant);
        verify_signature(&headers, config.servicenow_secret.expose_secret(), &body, (intake.clock)())?;
        let change = servicenow::parse(&body).map_err(|why| reject(StatusCode::BAD_REQUEST, why))?;
        intake.record(&tenant, vec![change]).await
    }
    .await;
    result.map_or_else(IntoResponse::into_response, accepted)
}

/// Constant-time equality for secrets.
pub(crate) fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_signatures_verify_and_a_changed_byte_does_not() {
        for example in servicenow::Contract::load().examples {
            let mut headers = HeaderMap::new();
            headers.insert("x-seam-signature", example.signature.parse().unwrap());
            headers.insert("x-seam-timestamp", example.sent_at.to_string().parse().unwrap());
            let now = example.sent_at + 2;
            verify_signature(&headers, &example.secret, example.body.as_bytes(), now)
                .unwrap_or_else(|r| panic!("{}: {}", example.name, r.1));
            let mut tampered = example.body.clone().into_bytes();
            tampered[10] ^= 1;
            assert_eq!(
                verify_signature(&headers, &example.secret, &tampered, now).unwrap_err().0,
                StatusCode::UNAUTHORIZED
            );
            assert_eq!(
                verify_signature(&headers, "another key", example.body.as_bytes(), now).unwrap_err().0,
                StatusCode::UNAUTHORIZED
            );
            // The timestamp is under the MAC: moving it forward to pass the window breaks the signature.
            headers.insert("x-seam-timestamp", (example.sent_at + 1).to_string().parse().unwrap());
            assert!(verify_signature(&headers, &example.secret, example.body.as_bytes(), now)
                .unwrap_err()
                .1
                .contains("does not match"));
        }
    }

    #[test]
    fn a_notification_signed_more_than_five_minutes_from_now_is_refused() {
        let body = br#"{"event_id":"x"}"#;
        let signed_at = 1_796_116_000;
        let mut headers = HeaderMap::new();
        for (name, value) in servicenow::signed_headers("k", signed_at, body) {
            headers.insert(axum::http::HeaderName::try_from(name).unwrap(), value.parse().unwrap());
        }
        verify_signature(&headers, "k", body, signed_at + servicenow::MAX_AGE_SECONDS).unwrap();
        verify_signature(&headers, "k", body, signed_at - servicenow::MAX_AGE_SECONDS).unwrap();
        for now in [signed_at + servicenow::MAX_AGE_SECONDS + 1, signed_at - servicenow::MAX_AGE_SECONDS - 1] {
            let refused = verify_signature(&headers, "k", body, now).unwrap_err();
            assert_eq!(refused.0, StatusCode::UNAUTHORIZED);
            assert!(refused.1.contains("replayed"), "{}", refused.1);
        }
        headers.remove("x-seam-timestamp");
        assert!(verify_signature(&headers, "k", body, signed_at).unwrap_err().1.contains("X-Seam-Timestamp"));
    }

    #[test]
    fn hex_signatures_still_verify() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-seam-signature",
            format!("sha256={}", hex::encode(servicenow::mac("k", 7, b"body"))).parse().unwrap(),
        );
        headers.insert("x-seam-timestamp", "7".parse().unwrap());
        verify_signature(&headers, "k", b"body", 7).unwrap();
    }
}
