//! The Slack emulator: the Web API methods seam uses (`chat.postMessage`,
//! `conversations.create`, plus `conversations.list/history/info` and
//! `auth.test` to look around) and incoming webhooks. Errors are Slack's:
//! HTTP 200 with `{"ok": false, "error": "..."}`.

use super::credentials::SLACK_TOKEN;
use super::faults::Fault;
use super::store::Record;
use super::Emulator;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const EMULATOR: &str = "slack";
pub const TEAM_ID: &str = "TSEAM0001";
const BOT_USER: &str = "USEAMBOT01";
/// The incoming webhook seeded for `#seam-alerts`.
pub const DEMO_WEBHOOK: &str = "/services/TSEAM0001/BSEAM0001/seam-alerts-webhook";

type Ctx = State<Arc<Emulator>>;

pub fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::RateLimited { retry_after } => {
            let mut r =
                (StatusCode::TOO_MANY_REQUESTS, Json(json!({ "ok": false, "error": "ratelimited" }))).into_response();
            r.headers_mut().insert("Retry-After", HeaderValue::from(retry_after));
            r
        }
        Fault::ServerError => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ok": false, "error": "service_unavailable" })))
                .into_response()
        }
    }
}

fn ok(mut body: Value) -> Response {
    body["ok"] = json!(true);
    Json(body).into_response()
}

fn fail(error: &str) -> Response {
    Json(json!({ "ok": false, "error": error })).into_response()
}

fn channel_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let tail: String = (0..10).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect();
    format!("C{tail}")
}

fn new_channel(e: &Emulator, name: &str, private: bool) -> anyhow::Result<Record> {
    let id = channel_id();
    let created = chrono::Utc::now().timestamp();
    let channel = json!({
        "id": id, "name": name, "is_channel": !private, "is_group": private, "is_private": private,
        "is_archived": false, "is_general": name == "general", "created": created, "creator": BOT_USER,
        "is_member": true, "num_members": 1,
        "topic": { "value": "", "creator": "", "last_set": 0 }, "purpose": { "value": "", "creator": "", "last_set": 0 },
    });
    let record = channel.as_object().unwrap().clone();
    e.store.put(EMULATOR, "channel", &id, record.clone())?;
    Ok(record)
}

pub fn seed(e: &Emulator) -> anyhow::Result<()> {
    if e.store.count(EMULATOR, "channel") > 0 {
        return Ok(());
    }
    new_channel(e, "general", false)?;
    let alerts = new_channel(e, "seam-alerts", false)?;
    e.store.set_setting(&format!("slack.webhook.{DEMO_WEBHOOK}"), alerts["id"].as_str().unwrap_or_default())?;
    Ok(())
}

pub fn router(emulator: Arc<Emulator>) -> Router {
    Router::new()
        .route("/api/{method}", post(web_api).get(web_api))
        .route("/services/{team}/{bot}/{secret}", post(webhook))
        .with_state(emulator)
}

/// Arguments from a form body, a JSON body, or the query string.
fn arguments(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Map<String, Value> {
    let mut args = Map::new();
    if let Some(q) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
        args.extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(m)) = serde_json::from_slice(body) {
            args.extend(m);
        }
    } else {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        args.extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
    }
    args
}

fn arg<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn find_channel(e: &Emulator, id_or_name: &str) -> Option<Record> {
    let name = id_or_name.trim_start_matches('#');
    e.store.get(EMULATOR, "channel", name).or_else(|| {
        e.store.scan(EMULATOR, "channel", |c| c.get("name").and_then(Value::as_str) == Some(name)).into_iter().next()
    })
}

fn next_ts(e: &Emulator) -> anyhow::Result<String> {
    let n = e.store.next("slack.ts")?;
    Ok(format!("{}.{:06}", chrono::Utc::now().timestamp(), n % 1_000_000))
}

fn post_message(e: &Emulator, channel: &Record, text: &str, extra: &Map<String, Value>) -> anyhow::Result<Value> {
    let ts = next_ts(e)?;
    let mut message = json!({ "type": "message", "user": BOT_USER, "text": text, "ts": ts, "channel": channel["id"] });
    for key in ["blocks", "attachments", "thread_ts"] {
        if let Some(v) = extra.get(key) {
            message[key] = v.clone();
        }
    }
    e.store.put(
        EMULATOR,
        "message",
        &format!("{}:{ts}", channel["id"].as_str().unwrap_or_default()),
        message.as_object().unwrap().clone(),
    )?;
    Ok(message)
}

async fn web_api(
    State(e): Ctx,
    Path(method): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    let args = arguments(&headers, uri.query(), &body);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| arg(&args, "token").map(str::to_string));
    match token.as_deref() {
        None => return fail("not_authed"),
        Some(t) if t != SLACK_TOKEN => return fail("invalid_auth"),
        Some(_) => {}
    }
    let internal = |err: anyhow::Error| {
        tracing::error!("slack emulator: {err:#}");
        fail("internal_error")
    };
    match method.as_str() {
        "auth.test" => ok(
            json!({ "url": format!("{}/", e.base_url), "team": "seam", "user": "seam-bot", "team_id": TEAM_ID, "user_id": BOT_USER, "bot_id": "BSEAMBOT01" }),
        ),
        "chat.postMessage" => {
            let Some(channel) = arg(&args, "channel") else { return fail("channel_not_found") };
            let Some(channel) = find_channel(&e, channel) else { return fail("channel_not_found") };
            if channel.get("is_archived").and_then(Value::as_bool) == Some(true) {
                return fail("is_archived");
            }
            let text = arg(&args, "text").unwrap_or("");
            if text.is_empty() && !args.contains_key("blocks") && !args.contains_key("attachments") {
                return fail("no_text");
            }
            match post_message(&e, &channel, text, &args) {
                Ok(message) => ok(json!({ "channel": channel["id"], "ts": message["ts"], "message": message })),
                Err(err) => internal(err),
            }
        }
        "conversations.create" => {
            let Some(name) = arg(&args, "name") else { return fail("invalid_name_required") };
            if name.len() > 80 {
                return fail("invalid_name_maxlength");
            }
            if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
                return fail("invalid_name_specials");
            }
            if find_channel(&e, name).is_some() {
                return fail("name_taken");
            }
            let private =
                matches!(args.get("is_private"), Some(Value::Bool(true))) || arg(&args, "is_private") == Some("true");
            match new_channel(&e, name, private) {
                Ok(channel) => ok(json!({ "channel": channel })),
                Err(err) => internal(err),
            }
        }
        "conversations.info" => match arg(&args, "channel").and_then(|c| find_channel(&e, c)) {
            Some(channel) => ok(json!({ "channel": channel })),
            None => fail("channel_not_found"),
        },
        "conversations.list" => {
            let channels = e.store.scan(EMULATOR, "channel", |_| true);
            ok(json!({ "channels": channels, "response_metadata": { "next_cursor": "" } }))
        }
        "conversations.history" => {
            let Some(channel) = arg(&args, "channel").and_then(|c| find_channel(&e, c)) else {
                return fail("channel_not_found");
            };
            let id = channel["id"].as_str().unwrap_or_default().to_string();
            let mut messages =
                e.store.scan(EMULATOR, "message", |m| m.get("channel").and_then(Value::as_str) == Some(id.as_str()));
            messages.sort_by(|a, b| b["ts"].as_str().cmp(&a["ts"].as_str()));
            ok(json!({ "messages": messages, "has_more": false }))
        }
        _ => fail("unknown_method"),
    }
}

/// Incoming webhooks answer in plain text: `ok`, or an error word with a 4xx.
async fn webhook(
    State(e): Ctx,
    Path((team, bot, secret)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let plain =
        |status: StatusCode, text: &'static str| (status, [("Content-Type", "text/plain")], text).into_response();
    let Some(channel_id) = e.store.setting(&format!("slack.webhook./services/{team}/{bot}/{secret}")) else {
        return plain(StatusCode::NOT_FOUND, "no_service");
    };
    let args = arguments(&headers, None, &body);
    let args = match (args.is_empty(), serde_json::from_slice::<Value>(&body)) {
        (true, Ok(Value::Object(m))) => m,
        (true, _) => return plain(StatusCode::BAD_REQUEST, "invalid_payload"),
        _ => args,
    };
    let text = arg(&args, "text").unwrap_or("");
    if text.is_empty() && !args.contains_key("blocks") {
        return plain(StatusCode::BAD_REQUEST, "no_text");
    }
    let Some(channel) = e.store.get(EMULATOR, "channel", &channel_id) else {
        return plain(StatusCode::NOT_FOUND, "channel_not_found");
    };
    match post_message(&e, &channel, text, &args) {
        Ok(_) => plain(StatusCode::OK, "ok"),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
    }
}
