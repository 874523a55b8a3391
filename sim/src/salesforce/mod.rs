//! The Salesforce emulator: OAuth and SOAP login, the REST API's sObject
//! endpoints, SOQL queries, sObject Collections, limits, and Outbound
//! Messages on Case and Account changes.

pub mod change_events;
pub mod connected_app;
pub mod files;
pub mod ids;
pub mod oauth;
pub mod pubsub;
pub mod schema;
pub mod soap;
pub mod soql;

use super::credentials::*;
use super::faults::Fault;
use super::Emulator;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use schema::{ObjectDef, SfError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub const EMULATOR: &str = "salesforce";
pub const API_VERSION: &str = "59.0";
pub const ORG_ID: &str = "00D5g000004SEAMEAW";
/// Daily API request allowance reported in `Sforce-Limit-Info` and `/limits`, unless
/// `PUT /__admin/org {"daily_api_requests": n}` sets another.
pub const DAILY_API_LIMIT: u64 = 15_000_000;
const QUERY_BATCH: usize = 2000;
const COLLECTION_MAX: usize = 200;

type Ctx = State<Arc<Emulator>>;

pub fn fault_response(fault: Fault) -> Response {
    match fault {
        // Salesforce refuses over-limit requests with 403 REQUEST_LIMIT_EXCEEDED.
        Fault::RateLimited { retry_after } => {
            let mut r = errors(
                StatusCode::FORBIDDEN,
                &[SfError::new("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")],
            );
            r.headers_mut().insert("Retry-After", HeaderValue::from(retry_after));
            r
        }
        Fault::ServerError => errors(
            StatusCode::SERVICE_UNAVAILABLE,
            &[SfError::new("SERVER_UNAVAILABLE", "Server temporarily unavailable. Please try again later.")],
        ),
    }
}

fn errors(status: StatusCode, errs: &[SfError]) -> Response {
    (status, Json(Value::Array(errs.iter().map(SfError::rest_json).collect()))).into_response()
}

fn error(status: StatusCode, e: SfError) -> Response {
    errors(status, &[e])
}

fn now() -> String {
    schema::format_datetime(chrono::Utc::now())
}

fn sobject_url(object: &str, id: &str) -> String {
    format!("/services/data/v{API_VERSION}/sobjects/{object}/{id}")
}

pub fn seed(emulator: &Emulator) -> anyhow::Result<()> {
    let store = &emulator.store;
    if store.get(EMULATOR, "User", &integration_user()).is_some() {
        return Ok(());
    }
    for (n, username, name) in [
        (1, SF_USERNAME, "Seam Integration"),
        (2, SF_PERSON_USERNAME, "Jane Agent"),
        (3, "pat.partner@acme.example", "Pat Partner"),
    ] {
        let id = ids::make("005", n);
        store.next("sf.id.005")?;
        let mut r = Map::new();
        r.insert("Id".into(), json!(id));
        r.insert("Username".into(), json!(username));
        r.insert("Name".into(), json!(name));
        r.insert("Email".into(), json!(username));
        r.insert("IsActive".into(), json!(true));
        r.insert("IsDeleted".into(), json!(false));
        let t = now();
        for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            r.insert(f.into(), json!(t));
        }
        r.insert("CreatedById".into(), json!(ids::make("005", 1)));
        r.insert("LastModifiedById".into(), json!(ids::make("005", 1)));
        store.put(EMULATOR, "User", &id, r)?;
    }
    Ok(())
}

pub(crate) fn integration_user() -> String {
    ids::make("005", 1)
}

pub fn router(emulator: Arc<Emulator>) -> Router {
    let data = Router::new()
        .route("/", get(resources))
        .route("/sobjects", get(describe_global))
        .route("/sobjects/", get(describe_global))
        .route("/sobjects/{object}", get(describe_object).post(create))
        .route("/sobjects/{object}/", get(describe_object).post(create))
        .route("/sobjects/{object}/describe", get(describe_object))
        .route("/sobjects/{object}/describe/", get(describe_object))
        .route("/sobjects/{object}/{id}", get(read).patch(update).delete(delete))
        .route("/sobjects/{object}/{field}/{value}", get(read_by_external_id).patch(upsert))
        .route("/query", get(query))
        .route("/query/", get(query))
        .route("/queryAll", get(query))
        .route("/queryAll/", get(query))
        .route("/query/{cursor}", get(query_more))
        .route("/composite/sobjects", post(collection_create).patch(collection_update).delete(collection_delete))
        .route("/limits", get(limits))
        .route("/limits/", get(limits))
        .layer(axum::middleware::from_fn_with_state(emulator.clone(), authenticate));
    Router::new()
        .merge(oauth::router())
        .route("/__admin/schema", get(get_schema).put(put_schema))
        .route("/__admin/pubsub", get(get_pubsub).put(put_pubsub))
        .route("/services/Soap/u/{version}", post(soap_login))
        // Salesforce's Pub/Sub samples post to `/services/Soap/u/57.0/`.
        .route("/services/Soap/u/{version}/", post(soap_login))
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .nest("/services/data/{version}", data)
        .with_state(emulator)
}

/// Every REST call needs a session from `/services/oauth2/token` or SOAP login,
/// and answers with `Sforce-Limit-Info`.
async fn authenticate(
    State(e): Ctx,
    Path(params): Path<HashMap<String, String>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let version = params.get("version").map(String::as_str).unwrap_or("");
    if !version.starts_with('v') || version[1..].parse::<f64>().is_err() {
        return error(StatusCode::NOT_FOUND, SfError::new("NOT_FOUND", "The requested resource does not exist"));
    }
    let Some(user) = session_user(&e, request.headers()) else { return invalid_session() };
    let client = call_client(request.headers());
    request.extensions_mut().insert(Caller { user, client });
    let mut response = next.run(request).await;
    let usage = format!("api-usage={}/{}", e.requests(), e.api_limit.load(std::sync::atomic::Ordering::Relaxed));
    response.headers_mut().insert("Sforce-Limit-Info", HeaderValue::from_str(&usage).unwrap());
    response
}

/// The user of the session a request's `Authorization: Bearer|OAuth <token>` names.
fn session_user(e: &Emulator, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("OAuth ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())?;
    e.store.setting(&format!("sf.session.{token}"))
}

/// What Salesforce answers a call whose session expired or was revoked.
fn invalid_session() -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, SfError::new("INVALID_SESSION_ID", "Session expired or invalid"));
    r.headers_mut().insert("WWW-Authenticate", HeaderValue::from_static("Token"));
    r
}

/// Who is calling: the session's user, and the `client=` of its `Sforce-Call-Options`
/// (which the org's change events report in `changeOrigin`).
#[derive(Clone)]
struct Caller {
    user: String,
    client: Option<String>,
}

impl Caller {
    /// `com/salesforce/api/rest/59.0;client=<id>`, as a change event's header has it.
    fn change_origin(&self) -> String {
        match &self.client {
            Some(client) => format!("com/salesforce/api/rest/{API_VERSION};client={client}"),
            None => format!("com/salesforce/api/rest/{API_VERSION}"),
        }
    }
}

/// The `client` of a `Sforce-Call-Options` header (`client=seam-acme; defaultNamespace=x`; older docs separate with commas).
fn call_client(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("sforce-call-options")?.to_str().ok()?;
    value
        .split([';', ','])
        .map(str::trim)
        .find_map(|part| part.strip_prefix("client="))
        .map(str::to_string)
        .filter(|c| !c.is_empty())
}

async fn soap_login(State(e): Ctx, Path(version): Path<String>, body: String) -> Response {
    let xml = |status: StatusCode, body: String| {
        (status, [("Content-Type", "text/xml; charset=utf-8")], body).into_response()
    };
    match soap::parse_login(&body) {
        Ok((username, password))
            if username == SF_USERNAME
                && (password == format!("{SF_PASSWORD}{SF_SECURITY_TOKEN}") || password == SF_PASSWORD) =>
        {
            let session = oauth::new_session(&e, &integration_user());
            let server_url = format!("{}/services/Soap/u/{version}/{ORG_ID}", e.base_url);
            xml(StatusCode::OK, soap::login_response(&session, &server_url, &integration_user(), ORG_ID, &username))
        }
        Ok(_) => xml(StatusCode::INTERNAL_SERVER_ERROR, soap::login_fault()),
        Err(why) => xml(StatusCode::BAD_REQUEST, format!("<error>{}</error>", quick_xml::escape::escape(why.as_str()))),
    }
}

async fn versions() -> Json<Value> {
    Json(json!([{ "label": "Winter '24", "url": format!("/services/data/v{API_VERSION}"), "version": API_VERSION }]))
}

async fn resources() -> Json<Value> {
    let base = format!("/services/data/v{API_VERSION}");
    Json(json!({
        "sobjects": format!("{base}/sobjects"),
        "query": format!("{base}/query"),
        "queryAll": format!("{base}/queryAll"),
        "composite": format!("{base}/composite"),
        "limits": format!("{base}/limits"),
    }))
}

async fn describe_global() -> Json<Value> {
    let objects: Vec<Value> = schema::all()
        .iter()
        .map(|o| json!({ "name": o.name, "keyPrefix": o.prefix, "createable": o.name != "User", "updateable": o.name != "User", "queryable": true }))
        .collect();
    Json(json!({ "encoding": "UTF-8", "maxBatchSize": COLLECTION_MAX, "sobjects": objects }))
}

fn object_or_404(name: &str) -> Result<&'static ObjectDef, Response> {
    schema::object(name).ok_or_else(|| error(StatusCode::NOT_FOUND, schema::unknown_object(name)))
}

async fn describe_object(State(e): Ctx, Path(params): Path<HashMap<String, String>>) -> Response {
    let obj = or_respond!(object_or_404(&params["object"]));
    let fields: Vec<Value> = obj
        .fields
        .iter()
        .filter(|f| !removed(&e, obj, f.name))
        .map(|f| {
            let (ty, picklist, refs): (&str, &[&str], &[&str]) = match &f.ty {
                schema::FieldType::Id => ("id", &[], &[]),
                schema::FieldType::Text(_) => ("string", &[], &[]),
                schema::FieldType::TextArea(_) => ("textarea", &[], &[]),
                schema::FieldType::Picklist { values, .. } => ("picklist", values, &[]),
                schema::FieldType::Reference(to) => ("reference", &[], to),
                schema::FieldType::Number => ("double", &[], &[]),
                schema::FieldType::Boolean => ("boolean", &[], &[]),
                schema::FieldType::DateTime => ("datetime", &[], &[]),
                schema::FieldType::Date => ("date", &[], &[]),
                schema::FieldType::Email => ("email", &[], &[]),
                schema::FieldType::AutoNumber => ("string", &[], &[]),
                schema::FieldType::Base64 => ("base64", &[], &[]),
            };
            json!({
                "name": f.name, "type": ty, "createable": f.writable, "updateable": f.writable && !f.create_only,
                "nillable": !f.required, "externalId": f.external_id,
                "picklistValues": picklist.iter().map(|v| json!({"value": v, "label": v, "active": true})).collect::<Vec<_>>(),
                "referenceTo": refs,
            })
        })
        .collect();
    Json(json!({ "name": obj.name, "keyPrefix": obj.prefix, "fields": fields })).into_response()
}

/// A stored record as the REST API returns it, optionally only some fields.
fn render(e: &Emulator, obj: &ObjectDef, record: &Map<String, Value>, fields: Option<&[String]>) -> Value {
    let mut out = Map::new();
    let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
    out.insert("attributes".into(), json!({ "type": obj.name, "url": sobject_url(obj.name, id) }));
    match fields {
        Some(list) => {
            for name in list {
                if let Some(def) = obj.field(name) {
                    out.insert(def.name.to_string(), field_value(obj, def.name, record));
                }
            }
        }
        None => {
            for def in obj.fields.iter().filter(|d| !removed(e, obj, d.name)) {
                out.insert(def.name.to_string(), field_value(obj, def.name, record));
            }
        }
    }
    Value::Object(out)
}

/// A field as a read shows it: a binary field as the path of its content.
fn field_value(obj: &ObjectDef, field: &str, record: &Map<String, Value>) -> Value {
    files::shown(obj, field, record).unwrap_or_else(|| record.get(field).cloned().unwrap_or(Value::Null))
}

/// Whether an admin deleted this field (`PUT /__admin/schema`).
fn removed(e: &Emulator, obj: &ObjectDef, field: &str) -> bool {
    let removed = e.removed_fields.read().unwrap_or_else(|p| p.into_inner());
    !removed.is_empty() && removed.contains(&format!("{}.{field}", obj.name))
}

/// Refuse a write or a query naming a deleted field, as Salesforce refuses an unknown one.
fn refuse_removed<'a>(e: &Emulator, obj: &ObjectDef, mut fields: impl Iterator<Item = &'a str>) -> Result<(), SfError> {
    match fields.find(|f| removed(e, obj, f)) {
        Some(f) => {
            Err(SfError::on("INVALID_FIELD", format!("No such column '{f}' on sobject of type {}", obj.name), f))
        }
        None => Ok(()),
    }
}

/// A new record of `obj` with `values`: its id minted, its system fields stamped (`user`
/// creates it at `at`, and owns it when the object has owners and `values` name none).
fn new_record(
    e: &Emulator,
    obj: &ObjectDef,
    values: Map<String, Value>,
    user: &str,
    at: &str,
) -> Result<(String, Map<String, Value>), SfError> {
    let n = e.store.next(&format!("sf.id.{}", obj.prefix)).map_err(internal)?;
    let id = ids::make(obj.prefix, n);
    let mut record = Map::new();
    for def in &obj.fields {
        record.insert(def.name.to_string(), Value::Null);
    }
    record.extend(values);
    record.insert("Id".into(), json!(id));
    record.insert("IsDeleted".into(), json!(false));
    for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
        record.insert(f.into(), json!(at));
    }
    record.insert("CreatedById".into(), json!(user));
    record.insert("LastModifiedById".into(), json!(user));
    if obj.field("OwnerId").is_some() && record.get("OwnerId").is_none_or(Value::is_null) {
        record.insert("OwnerId".into(), json!(user));
    }
    Ok((id, record))
}

/// Validate and prepare a new record (not yet stored).
/// `at`: the transaction's time, which every record of one request shares (a collection's
/// records are changed alike, and one change event names them all).
fn prepare_create(
    e: &Emulator,
    obj: &'static ObjectDef,
    input: &Map<String, Value>,
    user: &str,
    at: &str,
) -> Result<(String, Map<String, Value>), SfError> {
    if obj.name == "User" {
        return Err(SfError::new("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "Users are read-only in the emulator"));
    }
    refuse_removed(e, obj, input.keys().map(String::as_str))?;
    let values = schema::validate(obj, input, None, &e.store)?;
    let (id, mut record) = new_record(e, obj, values, user, at)?;
    // Auto-numbers (CaseNumber, ContractNumber) count per field, shown as eight digits.
    for def in obj.fields.iter().filter(|d| matches!(d.ty, schema::FieldType::AutoNumber)) {
        let number = e.store.next(&format!("sf.{}", def.name.to_ascii_lowercase())).map_err(internal)?;
        record.insert(def.name.into(), json!(format!("{:08}", 1000 + number)));
    }
    derive(obj, &mut record, None);
    check_unique(e, obj, &record)?;
    Ok((id, record))
}

/// Validate and prepare an update of `existing`.
/// `at`: the transaction's time (see [`prepare_create`]).
fn prepare_update(
    e: &Emulator,
    obj: &'static ObjectDef,
    existing: &Map<String, Value>,
    input: &Map<String, Value>,
    user: &str,
    at: &str,
) -> Result<Map<String, Value>, SfError> {
    if obj.name == "User" {
        return Err(SfError::new("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "Users are read-only in the emulator"));
    }
    refuse_removed(e, obj, input.keys().map(String::as_str))?;
    let values = schema::validate(obj, input, Some(existing), &e.store)?;
    let mut record = existing.clone();
    record.extend(values);
    let t = at;
    record.insert("LastModifiedDate".into(), json!(t));
    record.insert("SystemModstamp".into(), json!(t));
    record.insert("LastModifiedById".into(), json!(user));
    derive(obj, &mut record, Some(existing));
    check_unique(e, obj, &record)?;
    Ok(record)
}

/// Formula-like fields Salesforce maintains itself.
fn derive(obj: &ObjectDef, record: &mut Map<String, Value>, before: Option<&Map<String, Value>>) {
    if obj.name == "Case" {
        let closed = record.get("Status").and_then(Value::as_str) == Some("Closed");
        let was_closed = before.and_then(|b| b.get("IsClosed")).and_then(Value::as_bool).unwrap_or(false);
        record.insert("IsClosed".into(), json!(closed));
        if closed && !was_closed {
            record.insert("ClosedDate".into(), json!(now()));
        } else if !closed {
            record.insert("ClosedDate".into(), Value::Null);
        }
    }
}

fn check_unique(e: &Emulator, obj: &ObjectDef, record: &Map<String, Value>) -> Result<(), SfError> {
    let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
    for def in obj.fields.iter().filter(|d| d.external_id) {
        let Some(value) = record.get(def.name).and_then(Value::as_str) else { continue };
        let clash = e.store.scan(EMULATOR, obj.name, |r| {
            r.get(def.name).and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(value))
                && r.get("Id").and_then(Value::as_str) != Some(id)
        });
        if let Some(other) = clash.first() {
            let other_id = other.get("Id").and_then(Value::as_str).unwrap_or_default();
            return Err(SfError::on(
                "DUPLICATE_VALUE",
                format!("duplicate value found: {} duplicates value on record with id: {other_id}", def.name),
                def.name,
            ));
        }
    }
    Ok(())
}

fn internal(e: anyhow::Error) -> SfError {
    SfError::new("UNKNOWN_EXCEPTION", format!("An unexpected error occurred: {e:#}"))
}

#[derive(Clone, Copy, PartialEq)]
enum ChangeType {
    Create,
    Update,
    Delete,
}

impl ChangeType {
    /// As a change event's header names it.
    fn as_str(self) -> &'static str {
        match self {
            ChangeType::Create => "CREATE",
            ChangeType::Update => "UPDATE",
            ChangeType::Delete => "DELETE",
        }
    }
}

/// Append the change events of one transaction's writes, inside it (`db`).
fn publish_in(
    e: &Emulator,
    db: &rusqlite::Connection,
    written: &[change_events::Written],
    caller: &Caller,
) -> anyhow::Result<()> {
    let Some(bus) = &e.change_events else { return Ok(()) };
    let removed: Vec<String> = e.removed_fields.read().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
    let gap = !written.is_empty() && e.faults.gap_event();
    bus.append_in(db, written, &caller.user, &caller.change_origin(), &removed, gap)
}

fn written<'a>(
    obj: &'static ObjectDef,
    change: ChangeType,
    id: &'a str,
    record: &'a Map<String, Value>,
    before: Option<&'a Map<String, Value>>,
) -> change_events::Written<'a> {
    change_events::Written { obj, change: change.as_str(), id, record, before }
}

/// After the transaction that appended change events committed: wake the subscriptions.
fn published(e: &Emulator) {
    if let Some(bus) = &e.change_events {
        bus.committed();
    }
}

/// The Outbound Message a change of `record` sends to the configured target, if any
/// (creates and updates: Salesforce sends none for a delete).
fn outgoing<'a>(
    e: &'a Emulator,
    obj: &ObjectDef,
    change: ChangeType,
    record: &Map<String, Value>,
) -> Option<super::notify::Outgoing<'a>> {
    let notifier = e.notifier.as_ref()?;
    if !obj.notifies || change == ChangeType::Delete {
        return None;
    }
    notifier.outgoing(record.get("Id").and_then(Value::as_str).unwrap_or_default())
}

/// Queue a change's notification inside the transaction `db` of the write that made it, numbered there.
fn queue_in(
    db: &rusqlite::Connection,
    outgoing: super::notify::Outgoing,
    obj: &ObjectDef,
    record: &Map<String, Value>,
) -> anyhow::Result<()> {
    let sequence = crate::store::next_in(db, "sf.notification")?;
    outgoing.queue_in(db, |_| Ok(soap::notification(&ids::make("04l", sequence), obj.name, record)))
}

/// Store one written record and queue its notification in one transaction: as on
/// the real platform, a write that lands never lacks its notification.
fn store_notifying(
    e: &Emulator,
    obj: &'static ObjectDef,
    change: ChangeType,
    id: &str,
    record: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
    caller: &Caller,
) -> anyhow::Result<()> {
    store_notifying_with(e, obj, change, id, record, before, caller, Vec::new())
}

/// [`store_notifying`], with the records the platform writes along with it (a new file's document).
#[allow(clippy::too_many_arguments)]
fn store_notifying_with(
    e: &Emulator,
    obj: &'static ObjectDef,
    change: ChangeType,
    id: &str,
    record: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
    caller: &Caller,
    also: Vec<files::Also>,
) -> anyhow::Result<()> {
    let outgoing = outgoing(e, obj, change, record);
    let mut records = vec![(obj.name.to_string(), id.to_string(), record.clone())];
    records.extend(also);
    e.store.put_all_with(EMULATOR, records, |db| {
        if let Some(o) = outgoing {
            queue_in(db, o, obj, record)?;
        }
        publish_in(e, db, &[written(obj, change, id, record, before)], caller)
    })?;
    published(e);
    Ok(())
}

/// Deletes' change events, after the deletes (their own transaction); Outbound Messages report no deletes.
fn notify_deleted(e: &Emulator, deleted: &[(&'static ObjectDef, String, Map<String, Value>)], caller: &Caller) {
    let stored = e.store.put_all_with(EMULATOR, Vec::new(), |db| {
        let writes: Vec<_> =
            deleted.iter().map(|(obj, id, record)| written(obj, ChangeType::Delete, id, record, None)).collect();
        publish_in(e, db, &writes, caller)
    });
    match stored {
        Ok(()) => published(e),
        Err(err) => tracing::error!("publishing change events of deletes: {err:#}"),
    }
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, SfError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(SfError::new("JSON_PARSER_ERROR", "The request body must be a JSON object")),
        Err(e) => Err(SfError::new("JSON_PARSER_ERROR", format!("Unexpected character: {e}"))),
    }
}

fn status_for(e: &SfError) -> StatusCode {
    match e.code {
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "UNKNOWN_EXCEPTION" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn create(
    State(e): Ctx,
    Path(params): Path<HashMap<String, String>>,
    axum::Extension(caller): axum::Extension<Caller>,
    request: axum::extract::Request,
) -> Response {
    let obj = or_respond!(object_or_404(&params["object"]));
    let input = read_input(obj, request).await;
    let _write = e.write_lock();
    let at = now();
    let result = input.and_then(|input| {
        let (id, mut record) = prepare_create(&e, obj, &input, &caller.user, &at)?;
        let also = if obj.name == "ContentVersion" {
            files::on_insert(&e, &id, &mut record, &caller.user, &at)?
        } else {
            vec![]
        };
        Ok((id, record, also))
    });
    match result {
        Ok((id, record, also)) => {
            if let Err(err) = store_notifying_with(&e, obj, ChangeType::Create, &id, &record, None, &caller, also) {
                return error(StatusCode::INTERNAL_SERVER_ERROR, internal(err));
            }
            (StatusCode::CREATED, Json(json!({ "id": id, "success": true, "errors": [] }))).into_response()
        }
        Err(err) => error(status_for(&err), err),
    }
}

/// A create's fields: a JSON body, or `multipart/form-data` with the fields as a JSON part
/// and a binary field (`VersionData`) as a part of that name with a filename.
async fn read_input(obj: &ObjectDef, request: axum::extract::Request) -> Result<Map<String, Value>, SfError> {
    use axum::extract::FromRequest;
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !multipart {
        let body = axum::body::Bytes::from_request(request, &())
            .await
            .map_err(|err| SfError::new("JSON_PARSER_ERROR", err.to_string()))?;
        return parse_body(&body);
    }
    let bad = |why: String| SfError::new("INVALID_MULTIPART_REQUEST", why);
    let mut parts = axum::extract::Multipart::from_request(request, &()).await.map_err(|err| bad(err.to_string()))?;
    let (mut input, mut binary) = (None, Vec::new());
    while let Some(part) = parts.next_field().await.map_err(|err| bad(err.to_string()))? {
        let name = part.name().unwrap_or_default().to_string();
        let is_binary = obj.field(&name).is_some_and(|d| matches!(d.ty, schema::FieldType::Base64));
        if is_binary && part.file_name().is_none() {
            return Err(bad(format!("the {name} part needs a filename in its Content-Disposition")));
        }
        let bytes = part.bytes().await.map_err(|err| bad(err.to_string()))?;
        if is_binary {
            use base64::Engine as _;
            binary.push((name, base64::engine::general_purpose::STANDARD.encode(&bytes)));
        } else if input.is_none() {
            input = Some(parse_body(&bytes)?);
        }
    }
    let mut input = input.ok_or_else(|| bad("no JSON part with the record's fields".into()))?;
    for (name, data) in binary {
        input.insert(name, Value::String(data));
    }
    Ok(input)
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, SfError::new("NOT_FOUND", "The requested resource does not exist"))
}

/// Resolve a 15/18-character id of this object to its stored record.
fn find(e: &Emulator, obj: &ObjectDef, raw_id: &str) -> Result<(String, Map<String, Value>), Response> {
    let id = ids::normalize(raw_id).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            SfError::new("MALFORMED_ID", format!("{} ID: id value of incorrect type: {raw_id}", obj.name)),
        )
    })?;
    e.store.get(EMULATOR, obj.name, &id).map(|r| (id, r)).ok_or_else(not_found)
}

async fn read(
    State(e): Ctx,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let obj = or_respond!(object_or_404(&params["object"]));
    let (_, record) = or_respond!(find(&e, obj, &params["id"]));
    let fields: Option<Vec<String>> = q.get("fields").map(|f| f.split(',').map(|s| s.trim().to_string()).collect());
    if let Some(list) = &fields {
        if let Some(bad) = list.iter().find(|f| obj.field(f).is_none()) {
            return error(
                StatusCode::BAD_REQUEST,
                SfError::new("INVALID_FIELD", format!("No such column '{bad}' on sobject of type {}", obj.name)),
            );
        }
    }
    Json(render(&e, obj, &record, fields.as_deref())).into_response()
}

async fn update(
    State(e): Ctx,
    Path(params): Path<HashMap<String, String>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let _write = e.write_lock();
    let at = now();
    let obj = or_respond!(object_or_404(&params["object"]));
    let (id, existing) = or_respond!(find(&e, obj, &params["id"]));
    match parse_body(&body).and_then(|input| prepare_update(&e, obj, &existing, &input, &caller.user, &at)) {
        Ok(record) => {
            if let Err(err) = store_notifying(&e, obj, ChangeType::Update, &id, &record, Some(&existing), &caller) {
                return error(StatusCode::INTERNAL_SERVER_ERROR, internal(err));
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => error(status_for(&err), err),
    }
}

async fn delete(
    State(e): Ctx,
    Path(params): Path<HashMap<String, String>>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Response {
    let _write = e.write_lock();
    let obj = or_respond!(object_or_404(&params["object"]));
    let (id, record) = or_respond!(find(&e, obj, &params["id"]));
    match e.store.delete(EMULATOR, obj.name, &id) {
        Ok(_) => {
            notify_deleted(&e, &[(obj, id, record)], &caller);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, internal(err)),
    }
}

fn external_id_field<'a>(obj: &'a ObjectDef, field: &str) -> Result<&'a schema::FieldDef, Response> {
    obj.field(field).filter(|d| d.external_id || d.name == "Id").ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            SfError::new(
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {field}"),
            ),
        )
    })
}

async fn read_by_external_id(State(e): Ctx, Path(params): Path<HashMap<String, String>>) -> Response {
    let obj = or_respond!(object_or_404(&params["object"]));
    // `…/ContentVersion/{id}/VersionData`: a binary field's content.
    if obj.field(&params["value"]).is_some_and(|d| matches!(d.ty, schema::FieldType::Base64)) {
        let (_, record) = or_respond!(find(&e, obj, &params["field"]));
        return match files::content(&record, &params["value"]) {
            Some(bytes) => ([(axum::http::header::CONTENT_TYPE, "application/octetstream")], bytes).into_response(),
            None => not_found(),
        };
    }
    let def = or_respond!(external_id_field(obj, &params["field"]));
    let value = &params["value"];
    let found = e.store.scan(EMULATOR, obj.name, |r| {
        r.get(def.name).and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(value))
    });
    match found.as_slice() {
        [] => not_found(),
        [one] => Json(render(&e, obj, one, None)).into_response(),
        many => (
            StatusCode::MULTIPLE_CHOICES,
            Json(json!(many
                .iter()
                .map(|r| sobject_url(obj.name, r["Id"].as_str().unwrap_or_default()))
                .collect::<Vec<_>>())),
        )
            .into_response(),
    }
}

async fn upsert(
    State(e): Ctx,
    Path(params): Path<HashMap<String, String>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let _write = e.write_lock();
    let at = now();
    let obj = or_respond!(object_or_404(&params["object"]));
    let def = or_respond!(external_id_field(obj, &params["field"]));
    let value = params["value"].clone();
    let mut input = match parse_body(&body) {
        Ok(m) => m,
        Err(err) => return error(StatusCode::BAD_REQUEST, err),
    };
    let found = e.store.scan(EMULATOR, obj.name, |r| {
        r.get(def.name).and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(&value))
    });
    match found.as_slice() {
        [] => {
            input.insert(def.name.to_string(), json!(value));
            match prepare_create(&e, obj, &input, &caller.user, &at) {
                Ok((id, record)) => {
                    if let Err(err) = store_notifying(&e, obj, ChangeType::Create, &id, &record, None, &caller) {
                        return error(StatusCode::INTERNAL_SERVER_ERROR, internal(err));
                    }
                    (StatusCode::CREATED, Json(json!({ "id": id, "success": true, "errors": [], "created": true })))
                        .into_response()
                }
                Err(err) => error(status_for(&err), err),
            }
        }
        [existing] => {
            let id = existing["Id"].as_str().unwrap_or_default().to_string();
            match prepare_update(&e, obj, existing, &input, &caller.user, &at) {
                Ok(record) => {
                    if let Err(err) =
                        store_notifying(&e, obj, ChangeType::Update, &id, &record, Some(existing), &caller)
                    {
                        return error(StatusCode::INTERNAL_SERVER_ERROR, internal(err));
                    }
                    (StatusCode::OK, Json(json!({ "id": id, "success": true, "errors": [], "created": false })))
                        .into_response()
                }
                Err(err) => error(status_for(&err), err),
            }
        }
        many => (
            StatusCode::MULTIPLE_CHOICES,
            Json(json!(many
                .iter()
                .map(|r| sobject_url(obj.name, r["Id"].as_str().unwrap_or_default()))
                .collect::<Vec<_>>())),
        )
            .into_response(),
    }
}

/// Cursor id → (batch size, rows not yet returned).
type Cursors = Mutex<HashMap<String, (usize, Vec<Value>)>>;

/// Remaining rows of queries answered in batches.
fn cursors() -> &'static Cursors {
    static CURSORS: OnceLock<Cursors> = OnceLock::new();
    CURSORS.get_or_init(Default::default)
}

fn page(total: usize, mut rows: Vec<Value>, batch: usize) -> Value {
    if rows.len() <= batch {
        return json!({ "totalSize": total, "done": true, "records": rows });
    }
    let rest = rows.split_off(batch);
    let cursor = format!("01g5g0000{}", hex::encode(rand::random::<[u8; 5]>()));
    let next = format!("/services/data/v{API_VERSION}/query/{cursor}-{batch}");
    cursors().lock().unwrap().insert(cursor, (batch, rest));
    json!({ "totalSize": total, "done": false, "nextRecordsUrl": next, "records": rows })
}

async fn query(State(e): Ctx, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let Some(soql) = q.get("q") else {
        return error(StatusCode::BAD_REQUEST, SfError::new("MALFORMED_QUERY", "A query string has to be specified"));
    };
    let batch = headers
        .get("Sforce-Query-Options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("batchSize="))
        .and_then(|n| n.parse::<usize>().ok())
        .map(|n| n.clamp(200, QUERY_BATCH))
        .unwrap_or(QUERY_BATCH);
    match run_query(&e, soql) {
        Ok((total, rows)) => Json(page(total, rows, batch)).into_response(),
        Err(err) => error(StatusCode::BAD_REQUEST, err),
    }
}

async fn query_more(Path(params): Path<HashMap<String, String>>) -> Response {
    let cursor = params["cursor"].split('-').next().unwrap_or_default().to_string();
    let Some((batch, rows)) = cursors().lock().unwrap().remove(&cursor) else {
        return error(StatusCode::BAD_REQUEST, SfError::new("INVALID_QUERY_LOCATOR", "invalid query locator"));
    };
    let total = rows.len();
    let mut body = page(total, rows, batch);
    // totalSize stays the size of the whole result; the cursor only knows what is left.
    body["totalSize"] = json!(total);
    Json(body).into_response()
}

/// Run a SOQL query; returns the total count and the rendered rows.
fn run_query(e: &Emulator, soql: &str) -> Result<(usize, Vec<Value>), SfError> {
    let q = soql::parse(soql)?;
    let obj = q.object;
    refuse_removed(e, obj, q.fields_read().into_iter())?;
    files::check_link_query(obj, q.filter.as_ref())?;
    // Relationships the query walks (`Account.Name`, `Entitlement.ServiceContract.Name`):
    // attach the parent records, and theirs.
    let paths: Vec<&str> = q.fields_read().into_iter().filter(|f| f.contains('.')).collect();
    let mut rows = e.store.scan(EMULATOR, obj.name, |_| true);
    for row in rows.iter_mut() {
        attach_parents(e, obj, row, &paths);
    }
    let mut rows: Vec<Map<String, Value>> =
        rows.into_iter().filter(|r| q.filter.as_ref().is_none_or(|c| soql::matches(c, r))).collect();
    if q.count {
        return Ok((rows.len(), vec![]));
    }
    rows.sort_by(|a, b| soql::order(&q.order, a, b));
    let total_before_limit = rows.len();
    let rows: Vec<Map<String, Value>> = rows.into_iter().skip(q.offset).take(q.limit.unwrap_or(usize::MAX)).collect();
    let total = rows.len().min(total_before_limit);
    let rendered = rows.iter().map(|r| project(obj, r, &q.fields)).collect();
    Ok((total, rendered))
}

/// Put each parent a path walks into `row` under its relationship name, rendered, with the
/// parents its own paths walk (`Entitlement` → `ServiceContract`); a missing parent is null.
fn attach_parents(e: &Emulator, obj: &ObjectDef, row: &mut Map<String, Value>, paths: &[&str]) {
    let mut rels: Vec<&str> = paths.iter().filter_map(|p| p.split_once('.')).map(|(rel, _)| rel).collect();
    rels.sort();
    rels.dedup();
    for rel in rels {
        let parent = obj
            .relationship(rel)
            .and_then(|def| row.get(def.name).and_then(Value::as_str).map(str::to_string))
            .and_then(|pid| {
                schema::object_by_prefix(&pid)
                    .and_then(|pobj| e.store.get(EMULATOR, pobj.name, &pid).map(|p| (pobj, p)))
            });
        let rendered = parent.map(|(pobj, p)| {
            let mut shown = render(e, pobj, &p, None);
            let deeper: Vec<&str> = paths
                .iter()
                .filter_map(|p| p.split_once('.'))
                .filter(|(r, rest)| *r == rel && rest.contains('.'))
                .map(|(_, rest)| rest)
                .collect();
            if let Value::Object(map) = &mut shown {
                attach_parents(e, pobj, map, &deeper);
            }
            shown
        });
        row.insert(rel.to_string(), rendered.unwrap_or(Value::Null));
    }
}

fn project(obj: &ObjectDef, record: &Map<String, Value>, fields: &[String]) -> Value {
    let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    out.insert("attributes".into(), json!({ "type": obj.name, "url": sobject_url(obj.name, id) }));
    for field in fields {
        project_path(obj, record, field, &mut out);
    }
    Value::Object(out)
}

/// One selected field into `out`: a parent's field (`Entitlement.ServiceContract.Name`) nests
/// under each relationship, with that parent's `attributes`; a missing parent is null.
fn project_path(obj: &ObjectDef, record: &Map<String, Value>, path: &str, out: &mut Map<String, Value>) {
    match path.split_once('.') {
        None => {
            out.insert(path.to_string(), field_value(obj, path, record));
        }
        Some((rel, inner)) => {
            let parent = record.get(rel).and_then(Value::as_object);
            let parent_obj = parent
                .and_then(|p| p.get("attributes"))
                .and_then(|a| a.get("type"))
                .and_then(Value::as_str)
                .and_then(schema::object);
            let slot = out.entry(rel.to_string()).or_insert(Value::Null);
            if let (Some(parent), Some(parent_obj)) = (parent, parent_obj) {
                if slot.is_null() {
                    *slot = json!({ "attributes": parent.get("attributes").cloned().unwrap_or(Value::Null) });
                }
                if let Value::Object(nested) = slot {
                    project_path(parent_obj, parent, inner, nested);
                }
            }
        }
    }
}

async fn limits(State(e): Ctx) -> Json<Value> {
    let used = e.requests();
    let limit = e.api_limit.load(std::sync::atomic::Ordering::Relaxed);
    Json(json!({
        "DailyApiRequests": { "Max": limit, "Remaining": limit.saturating_sub(used) },
        "DataStorageMB": { "Max": 1024, "Remaining": 1024 },
        "DailyAsyncApexExecutions": { "Max": 250000, "Remaining": 250000 },
    }))
}

#[derive(serde::Deserialize)]
struct CollectionBody {
    #[serde(rename = "allOrNone", default)]
    all_or_none: bool,
    records: Vec<Value>,
}

fn collection_result(id: Option<&str>, outcome: &Result<(), SfError>) -> Value {
    match outcome {
        Ok(()) => json!({ "id": id, "success": true, "errors": [] }),
        Err(e) => json!({ "id": id, "success": false, "errors": [e.collection_json()] }),
    }
}

fn rolled_back() -> SfError {
    SfError::new(
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "Record rolled back because not all records were valid and the request was using AllOrNone header",
    )
}

fn parse_collection(body: &[u8]) -> Result<CollectionBody, Response> {
    let parsed: CollectionBody = serde_json::from_slice(body).map_err(|err| {
        error(
            StatusCode::BAD_REQUEST,
            SfError::new("JSON_PARSER_ERROR", format!("expected {{\"allOrNone\": bool, \"records\": [...]}}: {err}")),
        )
    })?;
    if parsed.records.len() > COLLECTION_MAX {
        return Err(error(
            StatusCode::BAD_REQUEST,
            SfError::new(
                "EXCEEDED_ID_LIMIT",
                format!("record limit reached. cannot submit more than {COLLECTION_MAX} records into this call"),
            ),
        ));
    }
    Ok(parsed)
}

fn record_type(record: &Value) -> Result<&'static ObjectDef, SfError> {
    let name = record
        .pointer("/attributes/type")
        .and_then(Value::as_str)
        .ok_or_else(|| SfError::new("INVALID_TYPE", "Must specify a type in attributes"))?;
    schema::object(name).ok_or_else(|| SfError::new("INVALID_TYPE", format!("sObject type '{name}' is not supported.")))
}

/// One collection record ready to store.
struct PreparedWrite {
    obj: &'static ObjectDef,
    id: String,
    record: Map<String, Value>,
    /// The stored record an update replaces; `None` for a create.
    before: Option<Map<String, Value>>,
}

/// A record ready to store, or why it cannot be (with its id when known).
type Prepared = Result<PreparedWrite, (Option<String>, SfError)>;

/// Apply prepared writes: all or none if asked, otherwise the good ones.
fn finish_collection(e: &Emulator, all_or_none: bool, prepared: Vec<Prepared>, caller: &Caller) -> Response {
    let rolled_back_all = all_or_none && prepared.iter().any(Result::is_err);
    let mut results = Vec::new();
    let mut writes = Vec::new();
    for p in &prepared {
        match p {
            Ok(w) if !rolled_back_all => {
                writes.push((w.obj.name.to_string(), w.id.clone(), w.record.clone()));
                results.push(collection_result(Some(&w.id), &Ok(())));
            }
            // Rolled back: an update names its record, a create has none.
            Ok(w) => results.push(collection_result(w.before.as_ref().map(|_| w.id.as_str()), &Err(rolled_back()))),
            Err((id, err)) => results.push(collection_result(id.as_deref(), &Err(err.clone()))),
        }
    }
    // The records and their notifications in one transaction.
    let notifying: Vec<_> = if rolled_back_all { Vec::new() } else { prepared.iter().flatten().collect() };
    let change = |w: &PreparedWrite| if w.before.is_some() { ChangeType::Update } else { ChangeType::Create };
    let outgoing: Vec<_> = notifying.iter().map(|w| outgoing(e, w.obj, change(w), &w.record)).collect();
    let stored = e.store.put_all_with(EMULATOR, writes, |db| {
        for (w, o) in notifying.iter().zip(outgoing) {
            if let Some(o) = o {
                queue_in(db, o, w.obj, &w.record)?;
            }
        }
        let events: Vec<_> =
            notifying.iter().map(|w| written(w.obj, change(w), &w.id, &w.record, w.before.as_ref())).collect();
        publish_in(e, db, &events, caller)
    });
    if let Err(err) = stored {
        return error(StatusCode::INTERNAL_SERVER_ERROR, internal(err));
    }
    published(e);
    Json(Value::Array(results)).into_response()
}

async fn collection_create(
    State(e): Ctx,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let _write = e.write_lock();
    let at = now();
    let parsed = or_respond!(parse_collection(&body));
    let prepared = parsed
        .records
        .iter()
        .map(|record| {
            let obj = record_type(record).map_err(|err| (None, err))?;
            let input = record.as_object().cloned().unwrap_or_default();
            if input.contains_key("Id") {
                return Err((None, SfError::new("INVALID_FIELD", "cannot specify Id in an insert call")));
            }
            // The emulator makes a file's document and link on the single-record insert only.
            if obj.name == "ContentVersion" {
                let why = "the emulator inserts ContentVersion one at a time: POST /sobjects/ContentVersion";
                return Err((None, SfError::new("INVALID_TYPE", why)));
            }
            let (id, record) = prepare_create(&e, obj, &input, &caller.user, &at).map_err(|err| (None, err))?;
            Ok(PreparedWrite { obj, id, record, before: None })
        })
        .collect();
    finish_collection(&e, parsed.all_or_none, prepared, &caller)
}

async fn collection_update(
    State(e): Ctx,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let _write = e.write_lock();
    let at = now();
    let parsed = or_respond!(parse_collection(&body));
    let prepared = parsed
        .records
        .iter()
        .map(|record| {
            let obj = record_type(record).map_err(|err| (None, err))?;
            let mut input = record.as_object().cloned().unwrap_or_default();
            let raw_id = input
                .remove("Id")
                .and_then(|v| v.as_str().map(str::to_string))
                .ok_or_else(|| (None, SfError::new("MISSING_ARGUMENT", "Id not specified in an update call")))?;
            let id = ids::normalize(&raw_id)
                .ok_or_else(|| (Some(raw_id.clone()), SfError::new("MALFORMED_ID", format!("invalid id: {raw_id}"))))?;
            let existing = e
                .store
                .get(EMULATOR, obj.name, &id)
                .ok_or_else(|| (Some(id.clone()), SfError::new("ENTITY_IS_DELETED", "entity is deleted")))?;
            let record =
                prepare_update(&e, obj, &existing, &input, &caller.user, &at).map_err(|err| (Some(id.clone()), err))?;
            Ok(PreparedWrite { obj, id, record, before: Some(existing) })
        })
        .collect();
    finish_collection(&e, parsed.all_or_none, prepared, &caller)
}

async fn collection_delete(
    State(e): Ctx,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let _write = e.write_lock();
    let Some(list) = q.get("ids") else {
        return error(StatusCode::BAD_REQUEST, SfError::new("MISSING_ARGUMENT", "ids parameter required"));
    };
    let all_or_none = q.get("allOrNone").is_some_and(|v| v == "true");
    let targets: Vec<(String, Option<(&'static ObjectDef, String)>)> = list
        .split(',')
        .map(|raw| {
            let found = ids::normalize(raw.trim()).and_then(|id| {
                schema::object_by_prefix(&id).filter(|o| e.store.get(EMULATOR, o.name, &id).is_some()).map(|o| (o, id))
            });
            (raw.trim().to_string(), found)
        })
        .collect();
    if targets.len() > COLLECTION_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            SfError::new(
                "EXCEEDED_ID_LIMIT",
                format!("record limit reached. cannot submit more than {COLLECTION_MAX} records into this call"),
            ),
        );
    }
    let any_missing = targets.iter().any(|(_, t)| t.is_none());
    let mut results = Vec::new();
    let mut deleted = Vec::new();
    for (raw, target) in &targets {
        match target {
            Some((obj, id)) if !(all_or_none && any_missing) => {
                match e.store.delete(EMULATOR, obj.name, id) {
                    Ok(Some(record)) => deleted.push((*obj, id.clone(), record)),
                    Ok(None) => {}
                    Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, internal(err)),
                }
                results.push(json!({ "id": id, "success": true, "errors": [] }));
            }
            Some((_, id)) => results.push(json!({ "id": id, "success": false, "errors": [rolled_back().collection_json()] })),
            None => results.push(json!({ "id": raw, "success": false, "errors": [SfError::new("ENTITY_IS_DELETED", "entity is deleted").collection_json()] })),
        }
    }
    notify_deleted(&e, &deleted, &caller);
    Json(Value::Array(results)).into_response()
}

/// `GET /__admin/pubsub`: the change event bus (events kept, oldest and newest replay ids, settings).
async fn get_pubsub(State(e): Ctx) -> Response {
    match &e.change_events {
        Some(bus) => Json(bus.stats()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `PUT /__admin/pubsub {"retention_seconds": 5, "keepalive_seconds": 1}`: shorten the
/// retention window (events older are dropped at once) or the keepalive period, for tests.
async fn put_pubsub(State(e): Ctx, body: axum::body::Bytes) -> Response {
    let Some(bus) = &e.change_events else { return StatusCode::NOT_FOUND.into_response() };
    let settings: change_events::BusSettings = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(err) => return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("expected {{\"retention_seconds\": n, \"keepalive_seconds\": n}}: {err}") })),
        )
            .into_response(),
    };
    if !(settings.retention_seconds > 0.0 && settings.keepalive_seconds > 0.0) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "retention_seconds and keepalive_seconds must be positive" })),
        )
            .into_response();
    }
    match bus.set_settings(settings) {
        Ok(()) => Json(bus.stats()).into_response(),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, internal(err)),
    }
}

/// `GET /__admin/schema`: the fields an admin has deleted.
async fn get_schema(State(e): Ctx) -> Json<Value> {
    let mut removed: Vec<String> = e.removed_fields.read().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
    removed.sort();
    Json(json!({ "removed": removed }))
}

/// `PUT /__admin/schema {"removed": ["Case.ServiceNow_Number__c"]}`: delete fields from the org's
/// schema (an empty list puts them all back), as an admin deletes a custom field.
async fn put_schema(State(e): Ctx, body: axum::body::Bytes) -> Response {
    let Some(list) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["removed"].as_array().cloned()) else {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "expected {\"removed\": [\"Object.Field\", ...]}" })))
            .into_response();
    };
    let mut fields = std::collections::HashSet::new();
    for item in list {
        let name = item.as_str().unwrap_or_default();
        let known = name.split_once('.').and_then(|(o, f)| schema::object(o).and_then(|obj| obj.field(f)));
        if known.is_none() {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("{name:?} is no field of the emulated org (Object.Field)") })),
            )
                .into_response();
        }
        fields.insert(name.to_string());
    }
    *e.removed_fields.write().unwrap_or_else(|p| p.into_inner()) = fields;
    get_schema(State(e)).await.into_response()
}
