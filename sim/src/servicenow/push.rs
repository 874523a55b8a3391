//! seam's push business rule, as an instance runs it once an admin has
//! committed seam's update set: the rule is a `sys_script` record (async,
//! on insert, update and delete), and its endpoint, secret and integration
//! user are system properties. Without them nothing is sent, as on a real
//! instance.
//!
//! The emulator runs the rules it recognises as seam's (by the first line
//! of their script) the way the script does, sending what
//! `intake/servicenow/notification.json` describes:
//! - the condition is checked when the change is made: the integration
//!   user's changes are not sent;
//! - the job runs later and reads the record as it is then (an async rule
//!   has no previous version), so a notification carries the record whole;
//! - it tries three times, a second and then two apart, and gives up; the
//!   engine's catch-up poll brings what is lost.

use super::{display_of, journal_entries, raw, tables, Emulator, EMULATOR};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Attempts the rule's script makes before it gives up.
pub const ATTEMPTS: u32 = 3;

/// The first line of seam's rule script, before the tenant's name: how the instance's
/// emulator knows a `sys_script` as seam's. The update set seam ships begins with it.
pub const SCRIPT_MARKER: &str = "// seam:push-rule v2 tenant=";

/// The system properties of a tenant's rule (`endpoint`, `secret`, `integration_user`) begin with this.
pub fn property_prefix(tenant: &str) -> String {
    format!("seam.{tenant}.")
}

/// The headers the script signs a request with at `timestamp` (Unix seconds):
/// `X-Seam-Timestamp`, and `X-Seam-Signature: sha256=<Base64 HMAC-SHA256 of "{timestamp}.{body}">`.
pub fn signed_headers(secret: &str, timestamp: i64, body: &[u8]) -> [(String, String); 2] {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    [
        ("X-Seam-Timestamp".to_string(), timestamp.to_string()),
        ("X-Seam-Signature".to_string(), format!("sha256={signature}")),
    ]
}

/// An installed push rule.
pub struct PushRule {
    pub sys_id: String,
    pub tenant: String,
}

/// The active async rules of seam on `table` that fire on `operation` (`insert`, `update`, `delete`).
pub fn rules(e: &Emulator, table: &str, operation: &str) -> Vec<PushRule> {
    let action = format!("action_{operation}");
    e.store
        .scan(EMULATOR, "sys_script", |r| {
            raw(r, "collection") == table
                && raw(r, "active") == "true"
                && raw(r, "when") == "async"
                && raw(r, &action) == "true"
        })
        .into_iter()
        .filter_map(|r| {
            let tenant = raw(&r, "script").lines().next()?.strip_prefix(SCRIPT_MARKER)?.trim().to_string();
            Some(PushRule { sys_id: raw(&r, "sys_id").to_string(), tenant })
        })
        .collect()
}

/// The rule's condition, for a change made by `user`: not the integration user's own.
pub fn condition_holds(e: &Emulator, rule: &PushRule, user: &str) -> bool {
    super::oauth::property(e, &format!("{}integration_user", property_prefix(&rule.tenant)))
        .is_none_or(|integration| integration != user)
}

/// What a queued run of the rule names: the rule, the record, and (for a delete) the record as it was.
pub fn job(
    rule: &PushRule,
    table: &str,
    sys_id: &str,
    operation: &str,
    deleted: Option<&Map<String, Value>>,
) -> String {
    json!({ "rule": rule.sys_id, "table": table, "sys_id": sys_id, "operation": operation, "deleted": deleted })
        .to_string()
}

/// A request ready to send.
pub struct Request {
    pub url: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// Run a queued job: read the rule, its properties and the record now, and build the request.
/// `Err`: the script sends nothing (the rule or the record is gone, a property is unset).
pub fn run(e: &Emulator, job: &str) -> Result<Request, String> {
    let job: Value = serde_json::from_str(job).map_err(|err| format!("unreadable job: {err}"))?;
    let text = |k: &str| job[k].as_str().unwrap_or_default().to_string();
    let (rule_id, table_name, sys_id, operation) = (text("rule"), text("table"), text("sys_id"), text("operation"));
    let rule = e
        .store
        .get(EMULATOR, "sys_script", &rule_id)
        .filter(|r| raw(r, "active") == "true")
        .ok_or("the push rule is gone or inactive")?;
    let tenant = raw(&rule, "script")
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(SCRIPT_MARKER))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let prefix = property_prefix(&tenant);
    let property = |key: &str| super::oauth::property(e, &format!("{prefix}{key}")).filter(|v| !v.is_empty());
    let (Some(url), Some(secret)) = (property("endpoint"), property("secret")) else {
        return Err(format!("seam: set the system properties {prefix}endpoint and {prefix}secret; nothing was sent"));
    };
    let table = tables::find(&table_name).ok_or_else(|| format!("no table {table_name}"))?;
    // The record as it is when the job runs; a deleted one as it was.
    let record = match job["deleted"].as_object() {
        Some(deleted) => deleted.clone(),
        None => e.store.get(EMULATOR, table.name, &sys_id).ok_or("the record is gone")?,
    };
    let mut fields = BTreeMap::new();
    let mut displays = BTreeMap::new();
    let mut journal = BTreeMap::new();
    for (name, kind) in super::columns(e, table) {
        if matches!(kind, tables::Kind::Journal) {
            if let Some(text) =
                journal_entries(e, table.name, &sys_id, &name).into_iter().next().filter(|t| !t.is_empty())
            {
                journal.insert(name, text);
            }
            continue;
        }
        let value = raw(&record, &name).to_string();
        let shown = display_of(e, table, &record, &name);
        if !shown.is_empty() && shown != value {
            displays.insert(name.clone(), shown);
        }
        fields.insert(name, value);
    }
    let body = body(table.name, &operation, &fields, &displays, &journal);
    // Signed as the rule signs: when the job runs, each attempt anew.
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(signed_headers(&secret, chrono::Utc::now().timestamp(), body.as_bytes()));
    Ok(Request { url, body, headers })
}

/// The body the rule sends (see the contract): keys sorted, values as text.
pub fn body(
    table: &str,
    operation: &str,
    fields: &BTreeMap<String, String>,
    displays: &BTreeMap<String, String>,
    journal: &BTreeMap<String, String>,
) -> String {
    let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
    // serde_json's map keeps its keys sorted, as the rule writes them.
    json!({
        "current": fields,
        "display_values": displays,
        "event_id": format!("{}:{}:{operation}", field("sys_id"), field("sys_mod_count")),
        "journal": journal,
        "operation": operation,
        "sys_id": field("sys_id"),
        "sys_mod_count": field("sys_mod_count"),
        "sys_updated_on": field("sys_updated_on"),
        "table": table,
        "user": field("sys_updated_by"),
    })
    .to_string()
}
