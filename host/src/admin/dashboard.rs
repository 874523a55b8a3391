//! The operator's dashboard: one page (`/dashboard`, no build step) and the
//! JSON it reads (`/admin/api/...`, the admin token as bearer). Per tenant:
//! packs and versions, backlog, links with their sync state, dead letters
//! with a re-drive button, and the audit trail of any record.

use super::access::{Grant, Scope};
use super::{blocking, error, Admin};
use crate::model::{RecordRef, System};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const PAGE: &str = include_str!("dashboard.html");
/// Links shown per tenant, newest first.
const LINKS_SHOWN: usize = 200;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Everything the page shows at once, for each tenant the token sees.
pub async fn overview(State(admin): State<Arc<Admin>>, Extension(grant): Extension<Grant>) -> Response {
    let result = blocking(move || {
        let mut tenants = Vec::new();
        for packs in admin.registry.list()?.into_iter().filter(|p| grant.sees(&p.tenant)) {
            let t = packs.tenant.clone();
            tenants.push(json!({
                "tenant": t,
                "packs": packs,
                "backlog": admin.journal.backlog(&t)?,
                "links": admin.journal.link_states(&t, LINKS_SHOWN)?,
                "dead_letters": admin.journal.dead_letters(Some(&t))?,
            }));
        }
        Ok(json!({ "tenants": tenants, "now_ms": chrono::Utc::now().timestamp_millis() }))
    })
    .await;
    result.map_or_else(|response| response, |body| Json(body).into_response())
}

#[derive(Deserialize)]
pub struct TrailQuery {
    tenant: Option<String>,
    system: String,
    object: String,
    id: String,
    field: Option<String>,
}

/// A record's audit trail (every field, or one), each change with the event behind it.
/// A token for one tenant reads that tenant's trails alone.
pub async fn trail(
    State(admin): State<Arc<Admin>>,
    Extension(grant): Extension<Grant>,
    Query(mut q): Query<TrailQuery>,
) -> Response {
    if let Some(own) = &grant.tenant {
        if let Err(refused) = grant.allow(q.tenant.get_or_insert_with(|| own.clone()), Scope::Read) {
            return refused;
        }
    }
    let system: System = match q.system.parse() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let record = RecordRef { system, object: q.object, id: q.id };
    let field = q.field.filter(|f| !f.is_empty());
    let journal = admin.journal.clone();
    let result = blocking(move || {
        let changes = match &field {
            Some(f) => journal.why(q.tenant.as_deref(), &record, f)?,
            None => journal.record_trail(q.tenant.as_deref(), &record, 500)?,
        };
        let unfinished = journal.unfinished(q.tenant.as_deref(), &record)?;
        Ok(json!({ "record": record, "field": field, "changes": changes, "unfinished": unfinished }))
    })
    .await;
    result.map_or_else(|response| response, |body| Json(body).into_response())
}

/// Send one dead letter through again; its history notes it was the dashboard.
pub async fn redrive(
    State(admin): State<Arc<Admin>>,
    Extension(grant): Extension<Grant>,
    Path(id): Path<i64>,
) -> Response {
    let journal = admin.journal.clone();
    let tenant = match blocking(move || journal.event_tenant(id)).await {
        // Another tenant's event is answered as none: its ids say nothing to this token.
        Ok(Some(tenant)) if grant.sees(&tenant) => tenant,
        Ok(_) => return error(StatusCode::NOT_FOUND, format!("there is no event {id}")),
        Err(response) => return response,
    };
    if let Err(refused) = grant.allow(&tenant, Scope::Operate) {
        return refused;
    }
    match admin.journal.run(move |j| j.redrive(Some(&[id]), "dashboard")).await {
        Ok(n) => Json(json!({ "redriven": n })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, format!("{e:#}")),
    }
}
