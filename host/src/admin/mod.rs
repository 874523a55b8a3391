//! The operator's API, on its own listener (loopback unless configured
//! otherwise): packs per tenant (list, hot load, roll back the mapping or a
//! workflow with `?pack=NAME`), the dashboard and its JSON (`dashboard`), and
//! Prometheus `/metrics` (`metrics`). Every API call needs
//! `Authorization: Bearer <token>`, checked before its body is read; a token
//! is for one tenant or all, with a scope (`access`). Without a configured
//! token the API is off. The dashboard page itself (it asks for a token) and
//! `/metrics` (tenants and packs, no record ids) need none.

pub mod access;
pub mod dashboard;
pub mod metrics;
pub mod watch;

use crate::packs::Registry;
use crate::store::Journal;
use access::{Grant, Scope, Tokens};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics::Metrics;
use serde_json::json;
use std::sync::Arc;

/// Packs are components of a few hundred KB; leave room for big ones.
pub const MAX_PACK_BYTES: usize = 64 << 20;

pub struct Admin {
    pub registry: Arc<Registry>,
    pub journal: Arc<Journal>,
    pub metrics: Arc<Metrics>,
    pub tokens: Tokens,
    /// Seconds a caller has to send a request's body (`limits.body_timeout_seconds`).
    pub body_timeout_seconds: u64,
}

pub fn router(admin: Arc<Admin>) -> Router {
    // The token is checked before a handler runs, so before a body is read: a caller
    // without it gets no `100 Continue`, and its upload is never taken in.
    let routes = Router::new()
        .route("/admin/api/overview", get(dashboard::overview))
        .route("/admin/api/trail", get(dashboard::trail))
        .route("/admin/api/dead-letters/{id}/redrive", post(dashboard::redrive))
        .route("/admin/packs", get(list))
        .route("/admin/tenants/{tenant}/packs", post(install))
        .route("/admin/tenants/{tenant}/packs/rollback", post(rollback));
    let guarded = crate::listener::bodies_within(routes, admin.body_timeout_seconds, MAX_PACK_BYTES)
        .route_layer(axum::middleware::from_fn_with_state(admin.clone(), require_token))
        .layer(DefaultBodyLimit::max(MAX_PACK_BYTES));
    Router::new()
        .route("/metrics", get(prometheus))
        .route("/dashboard", get(dashboard::page))
        .merge(guarded)
        .with_state(admin)
}

async fn require_token(
    State(admin): State<Arc<Admin>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorize(&admin, request.headers()) {
        Ok(grant) => {
            request.extensions_mut().insert(grant);
            next.run(request).await
        }
        Err(refused) => refused,
    }
}

pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn authorize(admin: &Admin, headers: &HeaderMap) -> Result<Grant, Response> {
    if admin.tokens.is_empty() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "the admin API is off: set admin.operator_token or a tenant's admin_tokens in the configuration",
        ));
    }
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    admin
        .tokens
        .grant(given)
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "missing or wrong admin token (Authorization: Bearer <token>)"))
}

/// Run journal (SQLite) work off the async workers; a failure becomes a 500 naming it.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(move || crate::store::blocking::may_block(work)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// Prometheus scrapes without a token, as it does everywhere; the figures name tenants and packs, nothing more.
async fn prometheus(State(admin): State<Arc<Admin>>) -> Response {
    match blocking(move || admin.metrics.render(&admin.journal, &admin.registry)).await {
        Ok(text) => {
            ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
        }
        Err(response) => response,
    }
}

async fn list(State(admin): State<Arc<Admin>>, Extension(grant): Extension<Grant>) -> Response {
    match blocking(move || admin.registry.list()).await {
        Ok(packs) => Json(packs.into_iter().filter(|p| grant.sees(&p.tenant)).collect::<Vec<_>>()).into_response(),
        Err(response) => response,
    }
}

async fn install(
    State(admin): State<Arc<Admin>>,
    Extension(grant): Extension<Grant>,
    Path(tenant): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = grant.allow(&tenant, Scope::Operate) {
        return refused;
    }
    match admin.registry.install(&tenant, &body, "admin").await {
        Ok(active) => Json(json!({ "tenant": tenant, "active": active })).into_response(),
        // Nothing changed: the old pack is still active.
        Err(e) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, format!("pack refused, {tenant} keeps its current pack: {e:#}"))
        }
    }
}

#[derive(serde::Deserialize)]
struct RollbackQuery {
    /// A workflow's name; absent: the mapping pack.
    pack: Option<String>,
}

async fn rollback(
    State(admin): State<Arc<Admin>>,
    Extension(grant): Extension<Grant>,
    Path(tenant): Path<String>,
    Query(query): Query<RollbackQuery>,
) -> Response {
    if let Err(refused) = grant.allow(&tenant, Scope::Operate) {
        return refused;
    }
    match admin.registry.rollback(&tenant, query.pack.as_deref()).await {
        Ok(active) => Json(json!({ "tenant": tenant, "active": active })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, format!("{e:#}")),
    }
}
