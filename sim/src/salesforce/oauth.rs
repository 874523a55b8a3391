//! The org's OAuth endpoints: `/services/oauth2/token` (JWT bearer, client
//! credentials, username-password), `/services/oauth2/userinfo` and the
//! identity URL, with Salesforce's refusals.
//!
//! Salesforce serves logins on two kinds of host: `login.salesforce.com`
//! (`test.` for sandboxes), and the org's own My Domain, which is also where
//! its API lives. The client credentials flow is refused on the first. The
//! emulator is both on one port: under the name `localhost` it is the login
//! host, under `127.0.0.1` (its `instance_url`) the org's My Domain.
//!
//! Emulator controls, beside `/__admin/faults`:
//! - `GET|PUT /__admin/connected-app`: the app's consumer key and the certificate
//!   uploaded for the JWT bearer flow (`{"certificate": "-----BEGIN CERTIFICATE-----…"}`);
//!   GET also counts the logins served per flow;
//! - `GET|PUT /__admin/org`: `{"block_username_password": true}`, as orgs created since
//!   Summer '23 have it; `{"daily_api_requests": 5000}`, the org's daily API allowance;
//! - `DELETE /__admin/sessions`: end every session, as an admin does in Session Management.

use super::connected_app::{self, Refusal};
use super::{integration_user, ORG_ID};
use crate::credentials::*;
use crate::Emulator;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The host name under which the emulator plays `login.salesforce.com`.
pub const LOGIN_HOST: &str = "localhost";
/// The users the connected app is pre-authorized for (Permitted Users: admin approved).
const PRE_AUTHORIZED: [&str; 2] = [SF_USERNAME, SF_PERSON_USERNAME];

/// The setting holding the certificate (PEM) the connected app verifies JWT assertions with.
pub const CERTIFICATE_SETTING: &str = "sf.app.certificate";
const BLOCK_UNPW_SETTING: &str = "sf.org.block_username_password";

type Ctx = State<Arc<Emulator>>;

/// The login host's URL for an emulator serving at `base_url` (`https://127.0.0.1:PORT`).
pub fn login_url(base_url: &str) -> String {
    base_url.replacen("127.0.0.1", LOGIN_HOST, 1)
}

pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/oauth2/userinfo", get(userinfo).post(userinfo))
        .route("/id/{org}/{user}", get(identity))
        .route("/__admin/connected-app", get(get_app).put(put_app))
        .route("/__admin/org", get(get_org).put(put_org))
        .route("/__admin/sessions", axum::routing::delete(end_sessions))
}

/// A new session (access token) for `user_id`.
pub fn new_session(e: &Emulator, user_id: &str) -> String {
    let token = format!("{ORG_ID}!{}", hex::encode(rand::random::<[u8; 24]>()));
    let _ = e.store.set_setting(&format!("sf.session.{token}"), user_id);
    token
}

fn refuse(refusal: Refusal) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("Cache-Control", "no-cache,must-revalidate,max-age=0,no-store,private")],
        Json(refusal.body()),
    )
        .into_response()
}

/// The host name a request was sent to, without its port: HTTP/2's `:authority`
/// (in the URI), else HTTP/1.1's `Host` header.
fn requested_host(uri: &axum::http::Uri, headers: &HeaderMap) -> String {
    let host = uri
        .host()
        .map(str::to_string)
        .or_else(|| headers.get("host").and_then(|v| v.to_str().ok()).map(str::to_string))
        .unwrap_or_default();
    let host = host.as_str();
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host.to_ascii_lowercase()
}

/// `client_id` and `client_secret` from the form, or from `Authorization: Basic` (simple-salesforce's way).
fn client_of(form: &HashMap<String, String>, headers: &HeaderMap) -> (Option<String>, Option<String>) {
    if let Some((id, secret)) = crate::basic_credentials(headers) {
        return (Some(id), Some(secret));
    }
    (form.get("client_id").cloned(), form.get("client_secret").cloned())
}

/// The user record with this username, if active.
fn user_by_name(e: &Emulator, username: &str) -> Option<serde_json::Map<String, Value>> {
    e.store
        .scan(super::EMULATOR, "User", |u| {
            u.get("Username").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(username))
        })
        .into_iter()
        .find(|u| u.get("IsActive") == Some(&Value::Bool(true)))
}

async fn token(State(e): Ctx, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    let form_encoded = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return refuse(Refusal("unsupported_grant_type", "grant type not supported"));
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let (client_id, client_secret) = client_of(&form, &headers);
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    let login = login_url(&e.base_url);
    let (user_id, flow) = match grant {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let assertion = form.get("assertion").map(String::as_str).unwrap_or("");
            let certificate = e.store.setting(CERTIFICATE_SETTING).unwrap_or_default();
            // A production org: login.salesforce.com, or the org's own My Domain.
            let audiences = [connected_app::LOGIN_AUDIENCE.to_string(), e.base_url.clone()];
            let username = match connected_app::verify_assertion(
                assertion,
                &certificate,
                SF_CLIENT_ID,
                &audiences,
                chrono::Utc::now().timestamp(),
            ) {
                Ok(u) => u,
                Err(refusal) => return refuse(refusal),
            };
            // The app is for admin-approved users: the integration user, and Jane's profile.
            match user_by_name(&e, &username) {
                Some(user) if PRE_AUTHORIZED.iter().any(|u| username.eq_ignore_ascii_case(u)) => {
                    (user["Id"].as_str().unwrap_or_default().to_string(), "jwt")
                }
                _ => return refuse(Refusal("invalid_grant", "user hasn't approved this consumer")),
            }
        }
        "client_credentials" => {
            if client_id.as_deref() != Some(SF_CLIENT_ID) {
                return refuse(Refusal("invalid_client_id", "client identifier invalid"));
            }
            if client_secret.as_deref() != Some(SF_CLIENT_SECRET) {
                return refuse(Refusal("invalid_client", "invalid client credentials"));
            }
            if requested_host(&uri, &headers) == LOGIN_HOST {
                return refuse(Refusal("invalid_grant", "request not supported on this domain"));
            }
            // The app's Run As user.
            (integration_user(), "client_credentials")
        }
        "password" => {
            if client_id.as_deref() != Some(SF_CLIENT_ID) {
                return refuse(Refusal("invalid_client_id", "client identifier invalid"));
            }
            if client_secret.as_deref() != Some(SF_CLIENT_SECRET) {
                return refuse(Refusal("invalid_client", "invalid client credentials"));
            }
            // An org that blocks the flow says no more than a wrong password would.
            let blocked = e.store.setting(BLOCK_UNPW_SETTING).as_deref() == Some("true");
            let password = form.get("password").cloned().unwrap_or_default();
            let username = form.get("username").cloned().unwrap_or_default();
            let good_password = if username.eq_ignore_ascii_case(SF_USERNAME) {
                password == SF_PASSWORD || password == format!("{SF_PASSWORD}{SF_SECURITY_TOKEN}")
            } else {
                username.eq_ignore_ascii_case(SF_PERSON_USERNAME) && password == SF_PERSON_PASSWORD
            };
            let user = user_by_name(&e, &username).filter(|_| good_password && !blocked);
            let Some(user) = user else { return refuse(Refusal("invalid_grant", "authentication failure")) };
            (user["Id"].as_str().unwrap_or_default().to_string(), "password")
        }
        _ => return refuse(Refusal("unsupported_grant_type", "grant type not supported")),
    };
    let _ = e.store.next(&format!("sf.oauth.{flow}"));
    let token = new_session(&e, &user_id);
    let id = format!("{login}/id/{ORG_ID}/{user_id}");
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    // HMAC-SHA256 of id + issued_at with the client secret, as Salesforce signs its answers.
    let signature = {
        use hmac::{Hmac, Mac};
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(SF_CLIENT_SECRET.as_bytes()).expect("HMAC takes any key length");
        mac.update(format!("{id}{issued_at}").as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    let mut body = json!({ "access_token": token, "instance_url": e.base_url, "id": id, "token_type": "Bearer" });
    match flow {
        "jwt" => body["scope"] = json!("api"),
        "client_credentials" => {
            body["scope"] = json!("api");
            body["signature"] = json!(signature);
            body["token_format"] = json!("opaque");
            body["issued_at"] = json!(issued_at);
        }
        _ => {
            body["signature"] = json!(signature);
            body["issued_at"] = json!(issued_at);
        }
    }
    Json(body).into_response()
}

/// The OpenID Connect user info of a session: who seam logged in as, and which org.
async fn userinfo(State(e): Ctx, headers: HeaderMap) -> Response {
    let Some(user_id) = super::session_user(&e, &headers) else { return super::invalid_session() };
    let Some(user) = e.store.get(super::EMULATOR, "User", &user_id) else { return super::invalid_session() };
    let login = login_url(&e.base_url);
    Json(json!({
        "sub": format!("{login}/id/{ORG_ID}/{user_id}"),
        "user_id": user_id,
        "organization_id": ORG_ID,
        "preferred_username": user["Username"],
        "nickname": user["Username"].as_str().and_then(|u| u.split('@').next()),
        "name": user["Name"],
        "email": user["Email"],
        "email_verified": true,
        "zoneinfo": "GMT",
        "active": user["IsActive"],
        "user_type": "STANDARD",
    }))
    .into_response()
}

/// The identity URL of a token response (`id`).
async fn identity(
    State(e): Ctx,
    axum::extract::Path((org, user_id)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if super::session_user(&e, &headers).is_none() {
        return super::invalid_session();
    }
    let Some(user) = e.store.get(super::EMULATOR, "User", &user_id).filter(|_| org == ORG_ID) else {
        return (StatusCode::NOT_FOUND, "Bad_Id").into_response();
    };
    Json(json!({
        "id": format!("{}/id/{ORG_ID}/{user_id}", login_url(&e.base_url)),
        "user_id": user_id,
        "organization_id": ORG_ID,
        "username": user["Username"],
        "display_name": user["Name"],
        "email": user["Email"],
        "active": user["IsActive"],
        "user_type": "STANDARD",
    }))
    .into_response()
}

/// The login flows the token endpoint serves, as counted in `GET /__admin/connected-app`.
const FLOWS: [&str; 3] = ["jwt", "client_credentials", "password"];

async fn get_app(State(e): Ctx) -> Json<Value> {
    let logins: serde_json::Map<String, Value> =
        FLOWS.iter().map(|f| (f.to_string(), json!(e.store.counter(&format!("sf.oauth.{f}"))))).collect();
    Json(json!({ "consumer_key": SF_CLIENT_ID, "certificate": e.store.setting(CERTIFICATE_SETTING), "logins": logins }))
}

async fn put_app(State(e): Ctx, body: Bytes) -> Response {
    let certificate =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["certificate"].as_str().map(str::to_string));
    match certificate {
        Some(pem) if x509_parser::pem::parse_x509_pem(pem.as_bytes()).is_ok_and(|(_, p)| p.parse_x509().is_ok()) => match e.store.set_setting(CERTIFICATE_SETTING, &pem) {
            Ok(()) => get_app(State(e)).await.into_response(),
            Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        },
        _ => (StatusCode::BAD_REQUEST, Json(json!({ "error": "expected {\"certificate\": \"-----BEGIN CERTIFICATE-----…\"} holding one X.509 certificate" }))).into_response(),
    }
}

async fn get_org(State(e): Ctx) -> Json<Value> {
    Json(json!({
        "organization_id": ORG_ID,
        "block_username_password": e.store.setting(BLOCK_UNPW_SETTING).as_deref() == Some("true"),
        "daily_api_requests": e.api_limit.load(std::sync::atomic::Ordering::Relaxed),
        "api_requests_today": e.requests(),
    }))
}

async fn put_org(State(e): Ctx, body: Bytes) -> Response {
    let settings = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let (block, limit) = (
        settings.get("block_username_password").map(Value::as_bool),
        settings.get("daily_api_requests").map(Value::as_u64),
    );
    if settings.as_object().is_none_or(|o| o.is_empty()) || matches!(block, Some(None)) || matches!(limit, Some(None)) {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "expected {\"block_username_password\": true|false, \"daily_api_requests\": n}, either or both" }))).into_response();
    }
    if let Some(Some(block)) = block {
        if let Err(err) = e.store.set_setting(BLOCK_UNPW_SETTING, if block { "true" } else { "false" }) {
            return (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response();
        }
    }
    if let Some(Some(limit)) = limit {
        e.api_limit.store(limit, std::sync::atomic::Ordering::Relaxed);
    }
    get_org(State(e)).await.into_response()
}

async fn end_sessions(State(e): Ctx) -> Response {
    match e.store.delete_settings("sf.session.") {
        Ok(n) => Json(json!({ "ended": n })).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}
