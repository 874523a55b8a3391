//! Update sets, imported as an instance admin imports them:
//!
//! 1. upload the XML file: `POST /sys_upload.do` (multipart: `sysparm_target=sys_remote_update_set`,
//!    the file as `attachFile`), which the "Import Update Set from XML" page posts. The set is
//!    a retrieved update set in state `loaded`; its `sys_update_xml` records hold the payloads.
//! 2. preview it: `POST /api/sn_cicd/update_set/preview/{sys_id}` (the CI/CD API), which finds
//!    what cannot be committed;
//! 3. commit it: `POST /api/sn_cicd/update_set/commit/{sys_id}`, which writes each payload's record.
//!
//! The CI/CD calls answer with a progress record (`GET /api/sn_cicd/progress/{id}`). Each step
//! needs the admin role.

use super::{raw, sys_id, tables, text, Emulator, User, EMULATOR};
use crate::store::Record;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{json, Value};
use std::sync::Arc;

type Ctx = State<Arc<Emulator>>;

/// Who may import and commit update sets.
const ADMIN_ROLE_HOLDERS: &[&str] = &[crate::credentials::SN_ADMIN_USERNAME];

pub fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/sys_upload.do", post(upload))
        .route("/api/sn_cicd/update_set/preview/{id}", post(preview_call))
        .route("/api/sn_cicd/update_set/commit/{id}", post(commit_call))
        .route("/api/sn_cicd/progress/{id}", get(progress_call))
}

fn failure(status: StatusCode, message: &str, detail: &str) -> Response {
    super::failure(status, message, Some(detail))
}

fn forbidden() -> Response {
    failure(
        StatusCode::FORBIDDEN,
        "User Not Authorized",
        "The user isn't an admin or doesn't have the sn_cicd.sys_ci_automation role",
    )
}

/// One element of the file: its fields as text (a reference's value, not its display value).
fn read_fields(reader: &mut Reader<&[u8]>, end: &[u8]) -> Result<Record, String> {
    let mut record = Record::new();
    let mut current: Option<String> = None;
    let mut value = String::new();
    loop {
        match reader.read_event().map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))? {
            Event::Start(e) if current.is_none() => {
                current = Some(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                value.clear();
            }
            Event::Empty(e) if current.is_none() => {
                record.insert(String::from_utf8_lossy(e.name().as_ref()).into_owned(), text(""));
            }
            Event::Text(t) if current.is_some() => value.push_str(&crate::xml::text(&t)?),
            Event::GeneralRef(r) if current.is_some() => value.push_str(&crate::xml::reference(&r)?),
            Event::CData(c) if current.is_some() => value.push_str(&String::from_utf8_lossy(&c)),
            Event::End(e) if current.as_deref().is_some_and(|c| c.as_bytes() == e.name().as_ref()) => {
                record.insert(current.take().unwrap_or_default(), text(&value));
            }
            Event::End(e) if e.name().as_ref() == end => return Ok(record),
            Event::Eof => return Err(format!("the file ends inside <{}>", String::from_utf8_lossy(end))),
            _ => {}
        }
    }
}

/// Read an update set file: its `sys_remote_update_set` and its `sys_update_xml` records.
pub fn parse(xml: &str) -> Result<(Record, Vec<Record>), String> {
    let mut reader = Reader::from_str(xml);
    let (mut set, mut updates) = (None, Vec::new());
    let mut saw_unload = false;
    loop {
        match reader.read_event().map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))? {
            Event::Start(e) if e.name().as_ref() == b"unload" => saw_unload = true,
            Event::Start(e) if e.name().as_ref() == b"sys_remote_update_set" => {
                set = Some(read_fields(&mut reader, b"sys_remote_update_set")?)
            }
            Event::Start(e) if e.name().as_ref() == b"sys_update_xml" => {
                updates.push(read_fields(&mut reader, b"sys_update_xml")?)
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_unload {
        return Err("not an update set: the file has no <unload> element (export one with Export to XML)".into());
    }
    let set = set.ok_or("the file holds no sys_remote_update_set: export an update set, not a list of records")?;
    let id = raw(&set, "sys_id").to_string();
    if id.len() != 32 {
        return Err("the update set has no sys_id".into());
    }
    if let Some(stray) = updates.iter().find(|u| raw(u, "remote_update_set") != id) {
        return Err(format!("the update {} belongs to another update set", raw(stray, "name")));
    }
    Ok((set, updates))
}

/// The records an update set file would install, as (table, record), in the file's order.
pub fn records(xml: &str) -> Result<Vec<(String, Record)>, String> {
    let (_, updates) = parse(xml)?;
    updates
        .iter()
        .map(|u| {
            install_of(raw(u, "payload"))
                .map(|i| (i.table, i.fields))
                .map_err(|why| format!("{}: {why}", raw(u, "name")))
        })
        .collect()
}

/// Store an uploaded update set as a retrieved one, `loaded`. Returns its sys_id.
pub fn load(e: &Emulator, xml: &str, user: &str) -> Result<String, String> {
    let (mut set, updates) = parse(xml)?;
    let id = raw(&set, "sys_id").to_string();
    let now = tables::now();
    set.insert("state".into(), text("loaded"));
    for (k, v) in
        [("sys_updated_on", now.as_str()), ("sys_updated_by", user), ("sys_class_name", "sys_remote_update_set")]
    {
        set.insert(k.into(), text(v));
    }
    let mut writes = vec![("sys_remote_update_set".to_string(), id.clone(), set)];
    for mut update in updates {
        let update_id = raw(&update, "sys_id").to_string();
        let update_id = if update_id.len() == 32 { update_id } else { sys_id() };
        update.insert("sys_id".into(), text(&update_id));
        update.insert("sys_class_name".into(), text("sys_update_xml"));
        writes.push(("sys_update_xml".to_string(), update_id, update));
    }
    e.store.put_all_with(EMULATOR, writes, |_| Ok(())).map_err(|err| err.to_string())?;
    Ok(id)
}

/// One record a payload installs: the table, its sys_id, the action and the fields.
struct Install {
    table: String,
    action: String,
    fields: Record,
}

/// The record inside a payload's `<record_update>` (`<sys_script action="INSERT_OR_UPDATE">…`; a field
/// label nests its record once more, `<sys_documentation …><sys_documentation action=…>`).
fn install_of(payload: &str) -> Result<Install, String> {
    let mut reader = Reader::from_str(payload);
    let action_of = |e: &BytesStart| {
        e.attributes()
            .flatten()
            .find(|a| a.key.as_ref() == b"action")
            .and_then(|a| a.unescape_value().ok())
            .map(|v| v.into_owned())
    };
    loop {
        match reader.read_event().map_err(|e| format!("malformed payload: {e}"))? {
            Event::Start(e) if e.name().as_ref() != b"record_update" => {
                if let Some(action) = action_of(&e) {
                    let table = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let end = e.name().as_ref().to_vec();
                    let fields = read_fields(&mut reader, &end)?;
                    return Ok(Install { table, action, fields });
                }
            }
            Event::Empty(e) => {
                if let Some(action) = action_of(&e) {
                    return Ok(Install {
                        table: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                        action,
                        fields: Record::new(),
                    });
                }
            }
            Event::Eof => return Err("the payload holds no record".into()),
            _ => {}
        }
    }
}

/// A progress record, as the CI/CD API answers.
fn progress(e: &Emulator, id: &str, status: &str, label: &str, message: &str, detail: &str) -> Value {
    let body = json!({
        "links": { "progress": { "id": id, "url": format!("{}/api/sn_cicd/progress/{id}", e.base_url) } },
        "status": status,
        "status_label": label,
        "status_message": message,
        "status_detail": detail,
        "error": if status == "3" { message } else { "" },
        "percent_complete": if status == "2" || status == "3" { 100 } else { 0 },
    });
    let _ = e.store.set_setting(&format!("sn.cicd.progress.{id}"), &body.to_string());
    body
}

/// Preview: every payload must name a table the instance has.
pub fn preview(e: &Emulator, set_id: &str) -> Result<Vec<String>, String> {
    let mut set = e
        .store
        .get(EMULATOR, "sys_remote_update_set", set_id)
        .ok_or_else(|| format!("no retrieved update set {set_id}"))?;
    let mut problems = Vec::new();
    for update in e.store.scan(EMULATOR, "sys_update_xml", |u| raw(u, "remote_update_set") == set_id) {
        match install_of(raw(&update, "payload")) {
            Ok(install) if tables::find(&install.table).is_some() => {}
            Ok(install) => {
                problems.push(format!("{}: the instance has no table {}", raw(&update, "name"), install.table))
            }
            Err(why) => problems.push(format!("{}: {why}", raw(&update, "name"))),
        }
    }
    set.insert("state".into(), text("previewed"));
    e.store.put(EMULATOR, "sys_remote_update_set", set_id, set).map_err(|err| err.to_string())?;
    Ok(problems)
}

/// Commit: write each payload's record into its table, in one transaction. Returns how many.
pub fn commit(e: &Emulator, set_id: &str, user: &str) -> Result<usize, String> {
    let mut set = e
        .store
        .get(EMULATOR, "sys_remote_update_set", set_id)
        .ok_or_else(|| format!("no retrieved update set {set_id}"))?;
    if raw(&set, "state") == "committed" {
        return Err("the update set is committed already".into());
    }
    let now = tables::now();
    let mut writes = Vec::new();
    for update in e.store.scan(EMULATOR, "sys_update_xml", |u| raw(u, "remote_update_set") == set_id) {
        let install = install_of(raw(&update, "payload")).map_err(|why| format!("{}: {why}", raw(&update, "name")))?;
        let table = tables::find(&install.table)
            .ok_or_else(|| format!("{}: the instance has no table {}", raw(&update, "name"), install.table))?;
        if install.action != "INSERT_OR_UPDATE" {
            return Err(format!(
                "{}: the emulator commits INSERT_OR_UPDATE only, not {}",
                raw(&update, "name"),
                install.action
            ));
        }
        let id = raw(&install.fields, "sys_id").to_string();
        let id = if id.len() == 32 { id } else { sys_id() };
        let existing = e.store.get(EMULATOR, table.name, &id);
        let mut record = existing.clone().unwrap_or_default();
        for (k, v) in install.fields {
            record.insert(k, v);
        }
        let count = existing.map(|r| raw(&r, "sys_mod_count").parse::<u64>().unwrap_or(0) + 1).unwrap_or(0);
        for (k, v) in [
            ("sys_id", id.as_str()),
            ("sys_updated_on", &now),
            ("sys_updated_by", user),
            ("sys_mod_count", &count.to_string()),
            ("sys_class_name", table.name),
        ] {
            record.insert(k.into(), text(v));
        }
        writes.push((table.name.to_string(), id, record));
    }
    let installed = writes.len();
    set.insert("state".into(), text("committed"));
    set.insert("commit_date".into(), text(&now));
    writes.push(("sys_remote_update_set".into(), set_id.to_string(), set));
    e.store.put_all_with(EMULATOR, writes, |_| Ok(())).map_err(|err| err.to_string())?;
    Ok(installed)
}

async fn upload(State(e): Ctx, axum::Extension(User(user)): axum::Extension<User>, mut form: Multipart) -> Response {
    // The upload is read whole before it is refused: a client still sending it would see the connection cut.
    let (mut target, mut file) = (None, None);
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let Ok(bytes) = field.bytes().await else {
                    return failure(StatusCode::BAD_REQUEST, "Invalid upload", "the multipart body could not be read");
                };
                match name.as_str() {
                    "sysparm_target" => target = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "attachFile" => file = Some(bytes),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(err) => return failure(StatusCode::BAD_REQUEST, "Invalid upload", &err.to_string()),
        }
    }
    if !ADMIN_ROLE_HOLDERS.contains(&user.as_str()) {
        return forbidden();
    }
    if target.as_deref() != Some("sys_remote_update_set") {
        return failure(StatusCode::BAD_REQUEST, "Invalid upload", "sysparm_target must be sys_remote_update_set");
    }
    let Some(file) = file else {
        return failure(StatusCode::BAD_REQUEST, "Invalid upload", "the file goes in the attachFile field");
    };
    let Ok(xml) = std::str::from_utf8(&file) else {
        return failure(StatusCode::BAD_REQUEST, "Invalid upload", "the file is not UTF-8 XML");
    };
    match load(&e, xml, &user) {
        // The page goes back to the set it made.
        Ok(id) => (StatusCode::FOUND, [("Location", format!("/sys_remote_update_set.do?sys_id={id}"))]).into_response(),
        Err(why) => failure(StatusCode::BAD_REQUEST, "Invalid update set", &why),
    }
}

async fn preview_call(
    State(e): Ctx,
    axum::Extension(User(user)): axum::Extension<User>,
    Path(id): Path<String>,
) -> Response {
    if !ADMIN_ROLE_HOLDERS.contains(&user.as_str()) {
        return forbidden();
    }
    let progress_id = sys_id();
    match preview(&e, &id) {
        Ok(problems) if problems.is_empty() => Json(json!({ "result": progress(&e, &progress_id, "2", "Successful", "This operation succeeded", "Preview found no problems") })).into_response(),
        Ok(problems) => Json(json!({ "result": progress(&e, &progress_id, "3", "Failed", "Preview found problems", &problems.join("; ")) })).into_response(),
        Err(why) => failure(StatusCode::NOT_FOUND, "Not found", &why),
    }
}

async fn commit_call(
    State(e): Ctx,
    axum::Extension(User(user)): axum::Extension<User>,
    Path(id): Path<String>,
) -> Response {
    if !ADMIN_ROLE_HOLDERS.contains(&user.as_str()) {
        return forbidden();
    }
    if e.store.get(EMULATOR, "sys_remote_update_set", &id).is_none() {
        return failure(StatusCode::NOT_FOUND, "Not found", &format!("no retrieved update set {id}"));
    }
    let progress_id = sys_id();
    let _write = e.write_lock();
    match commit(&e, &id, &user) {
        Ok(n) => Json(json!({ "result": progress(&e, &progress_id, "2", "Successful", "This operation succeeded", &format!("Committed {n} record(s)")) })).into_response(),
        Err(why) => Json(json!({ "result": progress(&e, &progress_id, "3", "Failed", &why, &why) })).into_response(),
    }
}

async fn progress_call(State(e): Ctx, Path(id): Path<String>) -> Response {
    match e.store.setting(&format!("sn.cicd.progress.{id}")).and_then(|s| serde_json::from_str::<Value>(&s).ok()) {
        Some(p) => Json(json!({ "result": p })).into_response(),
        None => failure(StatusCode::NOT_FOUND, "Not found", &format!("no progress record {id}")),
    }
}
