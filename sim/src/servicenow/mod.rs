//! The ServiceNow emulator: the Table API (`/api/now/table/{table}`), the
//! Batch and Attachment APIs pysnc uses, OAuth (`/oauth_token.do`), and a
//! business-rule style JSON notification on every incident insert, update
//! and delete.

pub mod oauth;
pub mod push;
pub mod query;
pub mod tables;
pub mod update_sets;

use super::credentials::*;
use super::faults::Fault;
use super::store::Record;
use super::Emulator;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tables::{Kind, Table};
use tower::ServiceExt;

pub const EMULATOR: &str = "servicenow";
const DEFAULT_LIMIT: usize = 10_000;

type Ctx = State<Arc<Emulator>>;

fn failure(status: StatusCode, message: &str, detail: Option<&str>) -> Response {
    (status, Json(json!({ "error": { "message": message, "detail": detail }, "status": "failure" }))).into_response()
}

pub fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::RateLimited { retry_after } => {
            let mut r = failure(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit exceeded",
                Some("The rate limit for this user has been exceeded. Try again later."),
            );
            r.headers_mut().insert("Retry-After", HeaderValue::from(retry_after));
            r
        }
        Fault::ServerError => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            Some("The instance is temporarily unavailable"),
        ),
    }
}

fn sys_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn text(v: &str) -> Value {
    Value::String(v.to_string())
}

pub fn seed(e: &Emulator) -> anyhow::Result<()> {
    if e.store.count(EMULATOR, "sys_user") > 0 {
        return Ok(());
    }
    let t = tables::now();
    let put = |table: &str, fields: &[(&str, &str)]| -> anyhow::Result<String> {
        let id = sys_id();
        let mut r = Record::new();
        r.insert("sys_id".into(), text(&id));
        for (k, v) in fields {
            r.insert(k.to_string(), text(v));
        }
        for (k, v) in [
            ("sys_created_on", t.as_str()),
            ("sys_updated_on", &t),
            ("sys_created_by", "system"),
            ("sys_updated_by", "system"),
            ("sys_mod_count", "0"),
            ("sys_class_name", table),
        ] {
            r.insert(k.into(), text(v));
        }
        e.store.put(EMULATOR, table, &id, r)?;
        Ok(id)
    };
    put(
        "sys_user",
        &[
            ("user_name", SN_USERNAME),
            ("name", "Seam Integration"),
            ("first_name", "Seam"),
            ("last_name", "Integration"),
            ("email", "seam@servicenow.example"),
            ("active", "true"),
        ],
    )?;
    put(
        "sys_user",
        &[
            ("user_name", "beth.anglin"),
            ("name", "Beth Anglin"),
            ("first_name", "Beth"),
            ("last_name", "Anglin"),
            ("email", "beth.anglin@example.com"),
            ("active", "true"),
        ],
    )?;
    put(
        "sys_user",
        &[
            ("user_name", "david.loo"),
            ("name", "David Loo"),
            ("first_name", "David"),
            ("last_name", "Loo"),
            ("email", "david.loo@example.com"),
            ("active", "true"),
        ],
    )?;
    put(
        "sys_user",
        &[
            ("user_name", SN_ADMIN_USERNAME),
            ("name", "System Administrator"),
            ("first_name", "System"),
            ("last_name", "Administrator"),
            ("email", "admin@servicenow.example"),
            ("active", "true"),
        ],
    )?;
    put("sys_user_group", &[("name", "Service Desk"), ("description", "First line")])?;
    // Set up as the docs ask for the client credentials grant (Washington DC and later).
    put(
        "sys_properties",
        &[
            ("name", oauth::CLIENT_CREDENTIALS_PROPERTY),
            ("value", "true"),
            ("type", "true|false"),
            ("description", "Allow the OAuth client credentials grant"),
        ],
    )?;
    put("sys_user_group", &[("name", "Network"), ("description", "Network operations")])?;
    Ok(())
}

pub fn router(emulator: Arc<Emulator>) -> Router {
    let api = Router::new()
        .route("/api/now/table/{table}", get(list).post(insert))
        .route("/api/now/table/{table}/{sys_id}", get(read).put(update).patch(update).delete(delete))
        .route("/api/now/v1/table/{table}", get(list).post(insert))
        .route("/api/now/v1/table/{table}/{sys_id}", get(read).put(update).patch(update).delete(delete))
        .route("/api/now/attachment", get(attachment_list))
        .route("/api/now/v1/attachment", get(attachment_list))
        .route("/api/now/attachment/file", post(attachment_upload))
        .route("/api/now/v1/attachment/file", post(attachment_upload))
        .route("/api/now/attachment/{sys_id}", get(attachment_meta).delete(attachment_delete))
        .route("/api/now/v1/attachment/{sys_id}", get(attachment_meta).delete(attachment_delete))
        .route("/api/now/attachment/{sys_id}/file", get(attachment_file))
        .route("/api/now/v1/attachment/{sys_id}/file", get(attachment_file))
        .merge(update_sets::routes())
        .layer(axum::middleware::from_fn_with_state(emulator.clone(), authenticate))
        .with_state(emulator.clone());
    // The batch API replays each inner request through the same routes.
    let inner = api.clone();
    oauth::router()
        .with_state(emulator)
        .merge(api)
        .route("/api/now/v1/batch", post(move |headers: HeaderMap, body: Bytes| batch(inner.clone(), headers, body)))
}

#[derive(Clone)]
struct User(String);

async fn authenticate(State(e): Ctx, mut request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let Some(user) = oauth::user_of(&e, request.headers()) else {
        let mut r =
            failure(StatusCode::UNAUTHORIZED, "User Not Authenticated", Some("Required to provide Auth information"));
        r.headers_mut().insert("WWW-Authenticate", HeaderValue::from_static("BASIC realm=\"Service-now\""));
        return r;
    };
    request.extensions_mut().insert(User(user));
    next.run(request).await
}

fn table_or_400(name: &str) -> Result<&'static Table, Response> {
    tables::find(name).ok_or_else(|| failure(StatusCode::BAD_REQUEST, &format!("Invalid table {name}"), None))
}

fn no_record() -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "No Record found",
        Some("Record doesn't exist or ACL restricts the record retrieval"),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Display {
    Value,
    Text,
    Both,
}

struct Params {
    display: Display,
    exclude_link: bool,
    fields: Option<Vec<String>>,
}

impl Params {
    fn from(q: &HashMap<String, String>) -> Self {
        Params {
            display: match q.get("sysparm_display_value").map(String::as_str) {
                Some("true") => Display::Text,
                Some("all") => Display::Both,
                _ => Display::Value,
            },
            exclude_link: q.get("sysparm_exclude_reference_link").is_some_and(|v| v == "true"),
            fields: q
                .get("sysparm_fields")
                .filter(|f| !f.is_empty())
                .map(|f| f.split(',').map(|s| s.trim().to_string()).collect()),
        }
    }
}

fn raw<'a>(record: &'a Record, field: &str) -> &'a str {
    record.get(field).and_then(Value::as_str).unwrap_or("")
}

/// The record a reference to `target` names, with its table: `target`'s own, or one that
/// extends it (a `task` reference to an incident).
fn referenced(e: &Emulator, target: &str, id: &str) -> Option<(&'static Table, Record)> {
    tables::family(target).find_map(|t| e.store.get(EMULATOR, t.name, id).map(|r| (t, r)))
}

/// A field's value, following one reference for dotted names (`company.name`).
fn value_of(e: &Emulator, table: &Table, record: &Record, field: &str) -> String {
    match field.split_once('.') {
        None => raw(record, field).to_string(),
        Some((reference, rest)) => match table.column(reference).map(|c| &c.kind) {
            Some(Kind::Reference(target)) => {
                let id = raw(record, reference);
                match referenced(e, target, id) {
                    Some((t, r)) => value_of(e, t, &r, rest),
                    None => String::new(),
                }
            }
            _ => String::new(),
        },
    }
}

/// A table's columns: its own, then those the instance's dictionary adds (the `u_` fields an
/// update set brought), as text fields.
fn columns<'t>(e: &Emulator, table: &'t Table) -> Vec<(String, &'t Kind)> {
    let mut all: Vec<(String, &'t Kind)> = table.columns.iter().map(|c| (c.name.to_string(), &c.kind)).collect();
    for added in custom_columns(e, table.name) {
        if !all.iter().any(|(n, _)| *n == added) {
            all.push((added, &Kind::Text));
        }
    }
    all
}

/// The active dictionary entries of a table that are not among its own columns.
fn custom_columns(e: &Emulator, table: &str) -> Vec<String> {
    let mut names: Vec<String> = e
        .store
        .scan(EMULATOR, "sys_dictionary", |d| {
            raw(d, "name") == table && raw(d, "active") != "false" && !raw(d, "element").is_empty()
        })
        .iter()
        .map(|d| raw(d, "element").to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A column's kind: one of the table's own, or one its dictionary adds.
fn column_kind<'t>(e: &Emulator, table: &'t Table, name: &str) -> Option<&'t Kind> {
    match table.column(name) {
        Some(c) => Some(&c.kind),
        None => custom_columns(e, table.name).iter().any(|c| c == name).then_some(&Kind::Text),
    }
}

/// What the UI would show for a field.
fn display_of(e: &Emulator, table: &Table, record: &Record, field: &str) -> String {
    let value = raw(record, field);
    match table.column(field).map(|c| &c.kind) {
        Some(Kind::Choice(choices)) => {
            choices.iter().find(|(v, _)| *v == value).map(|(_, l)| l.to_string()).unwrap_or_else(|| value.to_string())
        }
        Some(Kind::Reference(target)) if !value.is_empty() => {
            referenced(e, target, value).map(|(t, r)| raw(&r, t.display).to_string()).unwrap_or_default()
        }
        Some(Kind::Journal) => journal_text(e, table.name, raw(record, "sys_id"), field),
        _ => value.to_string(),
    }
}

/// A journal field's entries, newest first.
fn journal_rows(e: &Emulator, table: &str, id: &str, element: &str) -> Vec<Record> {
    let mut entries = e.store.scan(EMULATOR, "sys_journal_field", |j| {
        raw(j, "element_id") == id && raw(j, "name") == table && raw(j, "element") == element
    });
    entries.sort_by(|a, b| {
        raw(b, "sys_created_on").cmp(raw(a, "sys_created_on")).then(raw(b, "sys_mod_seq").cmp(raw(a, "sys_mod_seq")))
    });
    entries
}

/// A journal field's entries' texts, newest first.
fn journal_entries(e: &Emulator, table: &str, id: &str, element: &str) -> Vec<String> {
    journal_rows(e, table, id, element).iter().map(|j| raw(j, "value").to_string()).collect()
}

/// A journal field's history, newest first, as ServiceNow displays it.
fn journal_text(e: &Emulator, table: &str, id: &str, element: &str) -> String {
    let label = if element == "work_notes" { "Work notes" } else { "Additional comments" };
    journal_rows(e, table, id, element)
        .iter()
        .map(|j| {
            format!("{} - {} ({label})\n{}\n\n", raw(j, "sys_created_on"), raw(j, "sys_created_by"), raw(j, "value"))
        })
        .collect()
}

fn render(e: &Emulator, table: &Table, record: &Record, p: &Params) -> Value {
    let mut out = Map::new();
    let names: Vec<String> = match &p.fields {
        Some(f) => f.clone(),
        None => columns(e, table).into_iter().map(|(name, _)| name).collect(),
    };
    for name in names {
        let value = if name.contains('.') { value_of(e, table, record, &name) } else { raw(record, &name).to_string() };
        let kind = table.column(&name).map(|c| &c.kind);
        let link = match kind {
            Some(Kind::Reference(target)) if !value.is_empty() && !p.exclude_link => {
                Some(format!("{}/api/now/table/{target}/{value}", e.base_url))
            }
            _ => None,
        };
        let shown = if name.contains('.') { value.clone() } else { display_of(e, table, record, &name) };
        let rendered = match (p.display, link) {
            (Display::Value, None) => Value::String(value),
            (Display::Value, Some(link)) => json!({ "link": link, "value": value }),
            (Display::Text, None) => Value::String(shown),
            (Display::Text, Some(link)) => json!({ "link": link, "display_value": shown }),
            (Display::Both, None) => json!({ "display_value": shown, "value": value }),
            (Display::Both, Some(link)) => json!({ "display_value": shown, "link": link, "value": value }),
        };
        out.insert(name, rendered);
    }
    Value::Object(out)
}

async fn list(
    State(e): Ctx,
    Path(table): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    let table = or_respond!(table_or_400(&table));
    let encoded = match query::parse(q.get("sysparm_query").map(String::as_str).unwrap_or("")) {
        Ok(eq) => eq,
        Err(why) => return failure(StatusCode::BAD_REQUEST, "Invalid query", Some(&why)),
    };
    let limit = q.get("sysparm_limit").and_then(|v| v.parse::<usize>().ok()).unwrap_or(DEFAULT_LIMIT);
    let offset = q.get("sysparm_offset").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    let params = Params::from(&q);
    let mut rows =
        e.store.scan(EMULATOR, table.name, |r| encoded.matches(|f| value_of(&e, table, r, f), |f| table.numeric(f)));
    rows.sort_by(|a, b| {
        encoded.compare(|f| value_of(&e, table, a, f), |f| value_of(&e, table, b, f), |f| table.numeric(f))
    });
    let total = rows.len();
    let result: Vec<Value> = rows.iter().skip(offset).take(limit).map(|r| render(&e, table, r, &params)).collect();
    let mut response = Json(json!({ "result": result })).into_response();
    let headers = response.headers_mut();
    headers.insert("X-Total-Count", HeaderValue::from(total));
    if q.get("sysparm_suppress_pagination_header").is_none_or(|v| v != "true") && limit > 0 {
        let link = |off: usize, rel: &str| {
            let mut qq = q.clone();
            qq.insert("sysparm_offset".into(), off.to_string());
            qq.insert("sysparm_limit".into(), limit.to_string());
            format!(
                "<{}{}?{}>;rel=\"{rel}\"",
                e.base_url,
                uri.path(),
                serde_urlencoded::to_string(&qq).unwrap_or_default()
            )
        };
        let mut links = vec![link(0, "first")];
        if offset > 0 {
            links.push(link(offset.saturating_sub(limit), "prev"));
        }
        if offset + limit < total {
            links.push(link(offset + limit, "next"));
        }
        links.push(link(total.saturating_sub(1) / limit * limit, "last"));
        if let Ok(v) = HeaderValue::from_str(&links.join(",")) {
            headers.insert("Link", v);
        }
    }
    response
}

async fn read(
    State(e): Ctx,
    Path((table, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let table = or_respond!(table_or_400(&table));
    match e.store.get(EMULATOR, table.name, &id) {
        Some(record) => Json(json!({ "result": render(&e, table, &record, &Params::from(&q)) })).into_response(),
        None => no_record(),
    }
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(failure(
            StatusCode::BAD_REQUEST,
            "Exception while reading request",
            Some("The payload is not valid JSON."),
        )),
    }
}

/// A body value as ServiceNow stores it: text. `{"value": ..}` objects (as pysnc may send) unwrap.
fn as_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("value").map(as_text).unwrap_or_default(),
        other => other.to_string(),
    }
}

struct Written {
    record: Record,
    changed: Vec<String>,
    journal: Vec<(String, String)>,
}

/// Apply a write to a record, with the business rules the platform runs.
fn apply(
    e: &Emulator,
    table: &Table,
    existing: Option<&Record>,
    body: &Map<String, Value>,
    user: &str,
) -> Result<Written, Response> {
    let mut record = existing.cloned().unwrap_or_default();
    let mut journal = Vec::new();
    for (name, value) in body {
        let Some(kind) = column_kind(e, table, name) else { continue }; // unknown fields are ignored, as the platform does
        if name.starts_with("sys_") || name == "number" {
            continue;
        }
        let mut v = as_text(value);
        match kind {
            Kind::Journal => {
                if !v.trim().is_empty() {
                    journal.push((name.clone(), v));
                }
                continue;
            }
            Kind::Reference(target) if !v.is_empty() && referenced(e, target, &v).is_none() => {
                // Display values are accepted for references: "Beth Anglin" → her sys_id.
                let found = tables::family(target).find_map(|t| {
                    e.store.scan(EMULATOR, t.name, |r| raw(r, t.display).eq_ignore_ascii_case(&v)).into_iter().next()
                });
                if let Some(found) = found {
                    v = raw(&found, "sys_id").to_string();
                }
            }
            Kind::Choice(choices) => {
                if let Some((value, _)) =
                    choices.iter().find(|(val, label)| *val != v && label.eq_ignore_ascii_case(&v))
                {
                    v = value.to_string();
                }
            }
            Kind::Bool => v = (v == "true" || v == "1").to_string(),
            _ => {}
        }
        record.insert(name.clone(), Value::String(v));
    }

    let t = tables::now();
    if existing.is_none() {
        let id = body
            .get("sys_id")
            .map(as_text)
            .filter(|s| s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()))
            .unwrap_or_else(sys_id);
        record.insert("sys_id".into(), text(&id));
        record.insert("sys_created_on".into(), text(&t));
        record.insert("sys_created_by".into(), text(user));
        record.insert("sys_mod_count".into(), text("0"));
        record.insert("sys_class_name".into(), text(table.name));
        if let Some(prefix) = table.number_prefix {
            let n = e
                .store
                .next(&format!("sn.number.{}", table.name))
                .map_err(|err| failure(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None))?;
            record.insert("number".into(), text(&format!("{prefix}{:07}", 10_000 + n)));
        }
        for (k, v) in table.defaults {
            if raw(&record, k).is_empty() {
                record.insert(k.to_string(), text(v));
            }
        }
        if table.name == "incident" {
            record.insert("opened_at".into(), text(&t));
            if raw(&record, "opened_by").is_empty() {
                record.insert("opened_by".into(), text(&user_sys_id(e, user)));
            }
        }
    } else {
        let count = raw(&record, "sys_mod_count").parse::<u64>().unwrap_or(0) + 1;
        record.insert("sys_mod_count".into(), text(&count.to_string()));
    }
    record.insert("sys_updated_on".into(), text(&t));
    record.insert("sys_updated_by".into(), text(user));

    if table.name == "incident" {
        incident_rules(e, &mut record, existing, user, &t)?;
    }

    let before = existing.cloned().unwrap_or_default();
    let changed: Vec<String> = table
        .columns
        .iter()
        .map(|c| c.name)
        .filter(|n| !n.starts_with("sys_") && raw(&record, n) != raw(&before, n))
        .map(str::to_string)
        .chain(journal.iter().map(|(el, _)| el.clone()))
        .collect();
    Ok(Written { record, changed, journal })
}

fn user_sys_id(e: &Emulator, user_name: &str) -> String {
    e.store
        .scan(EMULATOR, "sys_user", |r| raw(r, "user_name") == user_name)
        .first()
        .map(|r| raw(r, "sys_id").to_string())
        .unwrap_or_default()
}

/// Priority from the matrix; resolution needs a code and notes (the data policy); timestamps on state changes.
fn incident_rules(
    e: &Emulator,
    record: &mut Record,
    existing: Option<&Record>,
    user: &str,
    t: &str,
) -> Result<(), Response> {
    let p = tables::priority(raw(record, "impact"), raw(record, "urgency"));
    record.insert("priority".into(), text(p));
    let state = raw(record, "state").to_string();
    let old_state = existing.map(|r| raw(r, "state").to_string()).unwrap_or_default();
    if matches!(state.as_str(), "6" | "7") && state != old_state {
        let mut missing = Vec::new();
        if raw(record, "close_code").is_empty() {
            missing.push("Resolution code");
        }
        if raw(record, "close_notes").is_empty() {
            missing.push("Resolution notes");
        }
        if !missing.is_empty() {
            let detail = format!(
                "Data Policy Exception: \n{}",
                missing.iter().map(|m| format!(" {m} is mandatory\n")).collect::<String>()
            );
            return Err(failure(StatusCode::FORBIDDEN, "Operation Failed", Some(&detail)));
        }
    }
    record.insert("active".into(), text(if matches!(state.as_str(), "6" | "7" | "8") { "false" } else { "true" }));
    if state == "6" && old_state != "6" {
        record.insert("resolved_at".into(), text(t));
        record.insert("resolved_by".into(), text(&user_sys_id(e, user)));
    }
    if state == "7" && old_state != "7" {
        record.insert("closed_at".into(), text(t));
    }
    Ok(())
}

/// Store a write, its journal entries and its notification together.
fn commit(e: &Emulator, table: &Table, operation: &str, w: &Written) -> Result<(), Response> {
    let id = raw(&w.record, "sys_id").to_string();
    let mut writes = vec![(table.name.to_string(), id.clone(), w.record.clone())];
    for (n, (element, value)) in w.journal.iter().enumerate() {
        let jid = sys_id();
        let mut j = Record::new();
        for (k, v) in [
            ("sys_id", jid.as_str()),
            ("element_id", &id),
            ("name", table.name),
            ("element", element),
            ("value", value),
            ("sys_created_on", raw(&w.record, "sys_updated_on")),
            ("sys_created_by", raw(&w.record, "sys_updated_by")),
            ("sys_class_name", "sys_journal_field"),
        ] {
            j.insert(k.into(), text(v));
        }
        j.insert("sys_mod_seq".into(), text(&format!("{}-{n:04}", raw(&w.record, "sys_mod_count"))));
        writes.push(("sys_journal_field".into(), jid, j));
    }
    // The record, its journal entries and the push rules' jobs in one transaction.
    let jobs = if w.changed.is_empty() && operation == "update" {
        Vec::new()
    } else {
        push_jobs(e, table, operation, raw(&w.record, "sys_updated_by"), &w.record, None)
    };
    e.store
        .put_all_with(EMULATOR, writes, |db| queue_jobs(db, jobs))
        .map_err(|err| failure(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None))
}

/// Queue push jobs inside the transaction `db` of the write that sets them off.
fn queue_jobs(db: &rusqlite::Connection, jobs: Vec<(crate::notify::Outgoing, String)>) -> anyhow::Result<()> {
    for (outgoing, job) in jobs {
        outgoing.queue_in(db, |_| Ok(job))?;
    }
    Ok(())
}

/// The jobs of the installed push rules a change of `record` by `user` sets off (the rules
/// whose condition holds), each ready to queue in the write's transaction.
fn push_jobs<'a>(
    e: &'a Emulator,
    table: &Table,
    operation: &str,
    user: &str,
    record: &Record,
    deleted: Option<&Record>,
) -> Vec<(crate::notify::Outgoing<'a>, String)> {
    let Some(notifier) = &e.notifier else { return Vec::new() };
    let id = raw(record, "sys_id");
    push::rules(e, table.name, operation)
        .into_iter()
        .filter(|rule| push::condition_holds(e, rule, user))
        .map(|rule| {
            let url =
                oauth::property(e, &format!("{}endpoint", push::property_prefix(&rule.tenant))).unwrap_or_default();
            (
                notifier.outgoing_to(id, &url, crate::notify::Format::Json),
                push::job(&rule, table.name, id, operation, deleted),
            )
        })
        .collect()
}

/// What follows a delete, in one transaction of its own: the `sys_audit_delete` row
/// (a record of a platform table, `sys_…`, is not audited) and the push jobs.
fn after_delete(e: &Emulator, table: &Table, record: &Record, user: &str) {
    let jobs = push_jobs(e, table, "delete", user, record, Some(record));
    let mut writes = Vec::new();
    if !table.name.starts_with("sys_") {
        let id = sys_id();
        let mut audit = Record::new();
        let now = tables::now();
        for (k, v) in [
            ("sys_id", id.as_str()),
            ("tablename", table.name),
            ("documentkey", raw(record, "sys_id")),
            ("display_value", &display_of(e, table, record, table.display)),
            ("payload", &deleted_payload(table, record)),
            ("sys_created_on", &now),
            ("sys_created_by", user),
            ("sys_updated_on", &now),
            ("sys_updated_by", user),
            ("sys_mod_count", "0"),
            ("sys_class_name", "sys_audit_delete"),
        ] {
            audit.insert(k.into(), text(v));
        }
        writes.push(("sys_audit_delete".to_string(), id, audit));
    }
    if writes.is_empty() && jobs.is_empty() {
        return;
    }
    if let Err(err) = e.store.put_all_with(EMULATOR, writes, |db| queue_jobs(db, jobs)) {
        tracing::error!("recording a ServiceNow delete: {err:#}");
    }
}

/// The deleted record as `sys_audit_delete.payload` holds it: an XML document with one element per field.
fn deleted_payload(table: &Table, record: &Record) -> String {
    let mut xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><record_update table=\"{0}\"><{0}>", table.name);
    for (name, value) in record.iter().filter(|(k, _)| !k.starts_with('_')) {
        let value = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
        xml.push_str(&format!("<{name}>{}</{name}>", quick_xml::escape::escape(value.as_str())));
    }
    xml.push_str(&format!("</{0}></record_update>", table.name));
    xml
}

async fn insert(
    State(e): Ctx,
    Path(table): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    axum::Extension(User(user)): axum::Extension<User>,
    body: Bytes,
) -> Response {
    let _write = e.write_lock();
    let table = or_respond!(table_or_400(&table));
    let body = or_respond!(parse_body(&body));
    let written =
        or_respond!(apply(&e, table, None, &body, &user).and_then(|w| commit(&e, table, "insert", &w).map(|()| w)));
    (StatusCode::CREATED, Json(json!({ "result": render(&e, table, &written.record, &Params::from(&q)) })))
        .into_response()
}

async fn update(
    State(e): Ctx,
    Path((table, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    axum::Extension(User(user)): axum::Extension<User>,
    body: Bytes,
) -> Response {
    let _write = e.write_lock();
    let table = or_respond!(table_or_400(&table));
    let Some(existing) = e.store.get(EMULATOR, table.name, &id) else { return no_record() };
    let body = or_respond!(parse_body(&body));
    let written = or_respond!(apply(&e, table, Some(&existing), &body, &user));
    // A write that changes nothing is not an update: no mod count, no notification.
    let result = if written.changed.is_empty() {
        existing
    } else {
        if let Err(r) = commit(&e, table, "update", &written) {
            return r;
        }
        written.record
    };
    Json(json!({ "result": render(&e, table, &result, &Params::from(&q)) })).into_response()
}

async fn delete(
    State(e): Ctx,
    Path((table, id)): Path<(String, String)>,
    axum::Extension(User(user)): axum::Extension<User>,
) -> Response {
    let _write = e.write_lock();
    let table = or_respond!(table_or_400(&table));
    match e.store.delete(EMULATOR, table.name, &id) {
        Ok(Some(record)) => {
            after_delete(&e, table, &record, &user);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => no_record(),
        Err(err) => failure(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None),
    }
}

fn attachment_json(e: &Emulator, r: &Record) -> Value {
    let mut out: Map<String, Value> =
        r.iter().filter(|(k, _)| k.as_str() != "_data").map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert("download_link".into(), json!(format!("{}/api/now/attachment/{}/file", e.base_url, raw(r, "sys_id"))));
    Value::Object(out)
}

async fn attachment_upload(
    State(e): Ctx,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    axum::Extension(User(user)): axum::Extension<User>,
    body: Bytes,
) -> Response {
    let (Some(file_name), Some(table_name), Some(table_sys_id)) =
        (q.get("file_name"), q.get("table_name"), q.get("table_sys_id"))
    else {
        return failure(
            StatusCode::BAD_REQUEST,
            "Missing required parameter",
            Some("file_name, table_name and table_sys_id are required"),
        );
    };
    if e.store.get(EMULATOR, table_name, table_sys_id).is_none() {
        return failure(
            StatusCode::BAD_REQUEST,
            "Invalid table or record",
            Some(&format!("{table_name} {table_sys_id} does not exist")),
        );
    }
    let id = sys_id();
    let t = tables::now();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream");
    let mut r = Record::new();
    for (k, v) in [
        ("sys_id", id.as_str()),
        ("file_name", file_name),
        ("table_name", table_name),
        ("table_sys_id", table_sys_id),
        ("content_type", content_type),
        ("size_bytes", &body.len().to_string()),
        ("sys_created_on", &t),
        ("sys_updated_on", &t),
        ("sys_created_by", &user),
        ("sys_updated_by", &user),
        ("sys_mod_count", "0"),
    ] {
        r.insert(k.into(), text(v));
    }
    r.insert("_data".into(), text(&base64::engine::general_purpose::STANDARD.encode(&body)));
    if let Err(err) = e.store.put(EMULATOR, "sys_attachment", &id, r.clone()) {
        return failure(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None);
    }
    let location = format!("{}/api/now/attachment/{id}", e.base_url);
    (StatusCode::CREATED, [("Location", location)], Json(json!({ "result": attachment_json(&e, &r) }))).into_response()
}

async fn attachment_list(State(e): Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let table = tables::find("sys_attachment").expect("sys_attachment is a known table");
    let encoded = match query::parse(q.get("sysparm_query").map(String::as_str).unwrap_or("")) {
        Ok(eq) => eq,
        Err(why) => return failure(StatusCode::BAD_REQUEST, "Invalid query", Some(&why)),
    };
    let rows = e
        .store
        .scan(EMULATOR, "sys_attachment", |r| encoded.matches(|f| value_of(&e, table, r, f), |f| table.numeric(f)));
    let mut response =
        Json(json!({ "result": rows.iter().map(|r| attachment_json(&e, r)).collect::<Vec<_>>() })).into_response();
    response.headers_mut().insert("X-Total-Count", HeaderValue::from(rows.len()));
    response
}

async fn attachment_meta(State(e): Ctx, Path(id): Path<String>) -> Response {
    match e.store.get(EMULATOR, "sys_attachment", &id) {
        Some(r) => Json(json!({ "result": attachment_json(&e, &r) })).into_response(),
        None => no_record(),
    }
}

async fn attachment_file(State(e): Ctx, Path(id): Path<String>) -> Response {
    let Some(r) = e.store.get(EMULATOR, "sys_attachment", &id) else { return no_record() };
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw(&r, "_data")).unwrap_or_default();
    ([("Content-Type", raw(&r, "content_type").to_string())], bytes).into_response()
}

async fn attachment_delete(State(e): Ctx, Path(id): Path<String>) -> Response {
    match e.store.delete(EMULATOR, "sys_attachment", &id) {
        Ok(Some(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(None) => no_record(),
        Err(err) => failure(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None),
    }
}

#[derive(serde::Deserialize)]
struct BatchRequest {
    batch_request_id: Value,
    rest_requests: Vec<InnerRequest>,
}

#[derive(serde::Deserialize)]
struct InnerRequest {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct NameValue {
    name: String,
    value: String,
}

/// `/api/now/v1/batch`: run each inner request (base64 bodies) and report each result.
async fn batch(inner: Router, headers: HeaderMap, body: Bytes) -> Response {
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(err) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "Exception while reading request",
                Some(&format!("not a batch request: {err}")),
            )
        }
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut serviced = Vec::new();
    let mut unserviced = Vec::new();
    for r in request.rest_requests {
        let Ok(method) = Method::from_bytes(r.method.as_bytes()) else {
            unserviced.push(json!({ "id": r.id }));
            continue;
        };
        let mut builder = axum::http::Request::builder().method(method).uri(&r.url);
        for h in &r.headers {
            builder = builder.header(&h.name, &h.value);
        }
        // The batch's own credentials apply to every inner request.
        if let Some(auth) = headers.get("authorization") {
            builder = builder.header("authorization", auth);
        }
        let inner_body = r.body.as_deref().map(|b| b64.decode(b).unwrap_or_default()).unwrap_or_default();
        let Ok(req) = builder.body(axum::body::Body::from(inner_body)) else {
            unserviced.push(json!({ "id": r.id }));
            continue;
        };
        let started = std::time::Instant::now();
        let response = match inner.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        let status = response.status();
        let response_headers: Vec<NameValue> = response
            .headers()
            .iter()
            .map(|(k, v)| NameValue { name: k.to_string(), value: v.to_str().unwrap_or_default().to_string() })
            .collect();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap_or_default();
        serviced.push(json!({
            "id": r.id,
            "status_code": status.as_u16(),
            "status_text": status.canonical_reason().unwrap_or(""),
            "headers": response_headers,
            "body": b64.encode(&bytes),
            "execution_time": started.elapsed().as_millis() as u64,
        }));
    }
    Json(json!({
        "batch_request_id": request.batch_request_id.as_str().map(str::to_string).unwrap_or_else(|| request.batch_request_id.to_string()),
        "serviced_requests": serviced,
        "unserviced_requests": unserviced,
    }))
    .into_response()
}
