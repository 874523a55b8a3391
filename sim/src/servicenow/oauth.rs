//! The instance's OAuth token endpoint, `/oauth_token.do`, and who a Table
//! API call is: Basic credentials, or a Bearer token that has not expired.
//!
//! Grants: `password` (with a refresh token), `refresh_token`, and
//! `client_credentials`, which the instance refuses unless the system
//! property `glide.oauth.inbound.client.credential.grant_type.enabled` is
//! `true` (it acts as the entity's OAuth Application User, seam.integration).
//! The client may name itself in the form or in `Authorization: Basic` (pysnc
//! does the latter). The instance refuses every bad grant alike: 401
//! `{"error_description":"access_denied","error":"server_error"}`.
//!
//! Emulator controls: `GET|PUT /__admin/oauth` (`{"access_token_lifespan": seconds}`,
//! 1,800 by default; GET also counts the grants served), `DELETE /__admin/sessions`.

use super::{raw, EMULATOR};
use crate::credentials::*;
use crate::Emulator;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The property that switches the client credentials grant on (Washington DC and later).
pub const CLIENT_CREDENTIALS_PROPERTY: &str = "glide.oauth.inbound.client.credential.grant_type.enabled";
const LIFESPAN_SETTING: &str = "sn.oauth.access_token_lifespan";
const DEFAULT_LIFESPAN: u64 = 1800;
const GRANTS: [&str; 3] = ["password", "refresh_token", "client_credentials"];

type Ctx = State<Arc<Emulator>>;

pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/oauth_token.do", post(token))
        .route("/__admin/oauth", get(get_oauth).put(put_oauth))
        .route("/__admin/sessions", axum::routing::delete(end_sessions))
}

fn denied() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({ "error_description": "access_denied", "error": "server_error" })))
        .into_response()
}

/// The users who log in with a password, and theirs.
const PASSWORDS: [(&str, &str); 3] =
    [(SN_USERNAME, SN_PASSWORD), (SN_ADMIN_USERNAME, SN_ADMIN_PASSWORD), (SN_PERSON_USERNAME, SN_PERSON_PASSWORD)];

/// The user a request authenticates as: Basic with a known user's password, or a live Bearer token.
pub fn user_of(e: &Emulator, headers: &HeaderMap) -> Option<String> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if header.starts_with("Basic ") {
        let (user, password) = crate::basic_credentials(headers)?;
        return PASSWORDS.iter().find(|(u, p)| *u == user && *p == password).map(|(u, _)| u.to_string());
    }
    let token = header.strip_prefix("Bearer ")?.trim();
    let stored = e.store.setting(&format!("sn.token.{token}"))?;
    let (user, expires_ms) = stored.split_once('\t')?;
    (expires_ms.parse::<i64>().ok()? > chrono::Utc::now().timestamp_millis()).then(|| user.to_string())
}

fn lifespan(e: &Emulator) -> u64 {
    e.store.setting(LIFESPAN_SETTING).and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_LIFESPAN)
}

/// A system property's value, as `gs.getProperty` reads it.
pub fn property(e: &Emulator, name: &str) -> Option<String> {
    e.store.scan(EMULATOR, "sys_properties", |r| raw(r, "name") == name).first().map(|r| raw(r, "value").to_string())
}

async fn token(State(e): Ctx, headers: HeaderMap, body: Bytes) -> Response {
    let form_encoded = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    // The instance reads only form bodies; JSON fails without saying why.
    if !form_encoded {
        return denied();
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let (client_id, client_secret) = crate::basic_credentials(&headers).unwrap_or_else(|| {
        (form.get("client_id").cloned().unwrap_or_default(), form.get("client_secret").cloned().unwrap_or_default())
    });
    if client_id != SN_CLIENT_ID || client_secret != SN_CLIENT_SECRET {
        return denied();
    }
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    let (user, refresh) = match grant {
        "password" => {
            let (username, password) =
                (form.get("username").cloned().unwrap_or_default(), form.get("password").cloned().unwrap_or_default());
            if !PASSWORDS.iter().any(|(u, p)| *u == username && *p == password) {
                return denied();
            }
            let refresh = hex::encode(rand::random::<[u8; 32]>());
            let _ = e.store.set_setting(&format!("sn.refresh.{refresh}"), &username);
            (username, Some(refresh))
        }
        "refresh_token" => {
            let refresh = form.get("refresh_token").cloned().unwrap_or_default();
            match e.store.setting(&format!("sn.refresh.{refresh}")) {
                // The current refresh token comes back with the new access token.
                Some(user) => (user, Some(refresh)),
                None => return denied(),
            }
        }
        "client_credentials" => {
            if property(&e, CLIENT_CREDENTIALS_PROPERTY).as_deref() != Some("true") {
                return denied();
            }
            (SN_USERNAME.to_string(), None)
        }
        _ => return denied(),
    };
    let _ = e.store.next(&format!("sn.oauth.{grant}"));
    let access = hex::encode(rand::random::<[u8; 32]>());
    let lifespan = lifespan(&e);
    let expires_ms = chrono::Utc::now().timestamp_millis() + (lifespan * 1000) as i64;
    let _ = e.store.set_setting(&format!("sn.token.{access}"), &format!("{user}\t{expires_ms}"));
    let mut answer = json!({ "access_token": access, "scope": "useraccount", "token_type": "Bearer", "expires_in": lifespan.saturating_sub(1) });
    if let Some(refresh) = refresh {
        answer["refresh_token"] = json!(refresh);
    }
    Json(answer).into_response()
}

async fn get_oauth(State(e): Ctx) -> Json<Value> {
    let grants: serde_json::Map<String, Value> =
        GRANTS.iter().map(|g| (g.to_string(), json!(e.store.counter(&format!("sn.oauth.{g}"))))).collect();
    Json(json!({ "access_token_lifespan": lifespan(&e), "grants": grants }))
}

async fn put_oauth(State(e): Ctx, body: Bytes) -> Response {
    let Some(seconds) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["access_token_lifespan"].as_u64())
        .filter(|s| *s > 0)
    else {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "expected {\"access_token_lifespan\": seconds}" })))
            .into_response();
    };
    match e.store.set_setting(LIFESPAN_SETTING, &seconds.to_string()) {
        Ok(()) => get_oauth(State(e)).await.into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn end_sessions(State(e): Ctx) -> Response {
    let ended = e.store.delete_settings("sn.token.").and_then(|a| Ok(a + e.store.delete_settings("sn.refresh.")?));
    match ended {
        Ok(n) => Json(json!({ "ended": n })).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}
