//! Records as the systems return them → the host's [`Change`].
//!
//! Links are read from the records themselves (DESIGN: "rebuildable from
//! the systems"): a Case names its incident in `ServiceNow_Incident__c`, an
//! incident names its Case in `correlation_id`. ServiceNow reference and
//! choice fields also appear as `<field>.display` with their display value.

use crate::model::{Change, ChangeKind, Field, RecordRef, System, Value};
use serde_json::{Map, Value as Json};

/// The Case field holding the linked incident's sys_id.
pub const CASE_INCIDENT_FIELD: &str = "ServiceNow_Incident__c";
/// The incident field holding the linked Case's id.
pub const INCIDENT_CASE_FIELD: &str = "correlation_id";
/// The Case field holding the linked incident's number.
pub const CASE_INCIDENT_NUMBER_FIELD: &str = "ServiceNow_Number__c";
/// The Account field holding the customer's stable key.
pub const ACCOUNT_KEY_FIELD: &str = "External_Id__c";
/// The ServiceNow company field holding the same key.
pub const COMPANY_KEY_FIELD: &str = "u_sf_external_id";
/// The External ID field of a record a pack creates in Salesforce (a Task, say), holding
/// the action's idempotency key: seam creates it by upsert on this key, so a retried
/// create finds the record instead of making a second. On Activity, so Tasks and Events have it.
pub const CREATE_KEY_FIELD: &str = "Seam_Key__c";

pub fn value(json: &Json) -> Option<Value> {
    match json {
        Json::Null => Some(Value::Null),
        Json::Bool(b) => Some(Value::Bool(*b)),
        Json::Number(n) => n.as_f64().map(Value::Number),
        Json::String(s) => Some(Value::Text(s.clone())),
        _ => None,
    }
}

pub fn json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
        Value::Text(s) => Json::String(s.clone()),
    }
}

fn pick(snapshot: &[Field], changed: Option<&[&str]>) -> Vec<Field> {
    match changed {
        Some(names) => snapshot.iter().filter(|f| names.contains(&f.name.as_str())).cloned().collect(),
        None => snapshot.iter().filter(|f| f.value != Value::Null).cloned().collect(),
    }
}

/// A field's text in a record as the systems return it: plain, or ServiceNow's
/// `{"value", "display_value"}` (read with display values); "" when absent or not text.
pub fn text_field(record: &Map<String, Json>, field: &str) -> String {
    record.get(field).and_then(|v| v.get("value").or(Some(v))).and_then(Json::as_str).unwrap_or_default().to_string()
}

/// A Salesforce record (REST JSON) as a change; `changed` = None means every set field.
/// The journal key of one version of a Salesforce record, the same whichever
/// channel brings it (an Outbound Message writes `SystemModstamp` as
/// `…000Z`, the REST API as `…000+0000`), so a change that a notification and
/// a catch-up poll both bring is journaled once. That matters when it fails:
/// a second copy would be news again and fail again, a second dead letter.
/// `None` when the stamp is not a timestamp.
pub fn salesforce_version_key(id: &str, stamp: &str) -> Option<String> {
    let at = chrono::DateTime::parse_from_rfc3339(stamp)
        .or_else(|_| chrono::DateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()?;
    Some(format!("sf:{id}:{}", at.timestamp_millis()))
}

pub fn salesforce(
    event_id: &str,
    kind: ChangeKind,
    object: &str,
    record: &Map<String, Json>,
    changed: Option<&[&str]>,
) -> Change {
    let snapshot: Vec<Field> = record
        .iter()
        .filter(|(k, _)| k.as_str() != "attributes")
        .filter_map(|(k, v)| value(v).map(|v| Field { name: k.clone(), value: v }))
        .collect();
    let text = |name: &str| record.get(name).and_then(Json::as_str).filter(|s| !s.is_empty());
    let linked = (object == "Case").then(|| text(CASE_INCIDENT_FIELD)).flatten().map(|id| RecordRef {
        system: System::Servicenow,
        object: "incident".into(),
        id: id.into(),
    });
    Change {
        event_id: event_id.to_string(),
        kind,
        source: RecordRef {
            system: System::Salesforce,
            object: object.to_string(),
            id: text("Id").unwrap_or_default().to_string(),
        },
        changed: pick(&snapshot, changed),
        snapshot,
        origin_user: text("LastModifiedById").unwrap_or_default().to_string(),
        linked,
    }
}

/// A ServiceNow record, plain or `sysparm_display_value=all` form, as a change.
pub fn servicenow(
    event_id: &str,
    kind: ChangeKind,
    table: &str,
    record: &Map<String, Json>,
    changed: Option<&[&str]>,
) -> Change {
    let mut snapshot = Vec::new();
    for (name, v) in record {
        match v {
            Json::Object(pair) => {
                let raw = pair.get("value").and_then(Json::as_str).unwrap_or_default();
                snapshot.push(Field::new(name.clone(), raw));
                let shown = pair.get("display_value").and_then(Json::as_str).unwrap_or_default();
                if shown != raw && !shown.is_empty() {
                    snapshot.push(Field::new(format!("{name}.display"), shown));
                }
            }
            other => {
                if let Some(v) = value(other) {
                    snapshot.push(Field { name: name.clone(), value: v });
                }
            }
        }
    }
    let text = |name: &str| {
        snapshot
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.value.as_text())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    // correlation_id holds the Case id when the incident came from Salesforce.
    let linked = text(INCIDENT_CASE_FIELD).filter(|id| id.starts_with("500")).map(|id| RecordRef {
        system: System::Salesforce,
        object: "Case".into(),
        id,
    });
    let changed =
        changed.map(|names| names.iter().flat_map(|n| [n.to_string(), format!("{n}.display")]).collect::<Vec<_>>());
    let changed_refs: Option<Vec<&str>> = changed.as_ref().map(|v| v.iter().map(String::as_str).collect());
    Change {
        event_id: event_id.to_string(),
        kind,
        source: RecordRef {
            system: System::Servicenow,
            object: table.to_string(),
            id: text("sys_id").unwrap_or_default(),
        },
        changed: pick(&snapshot, changed_refs.as_deref()),
        origin_user: text("sys_updated_by").unwrap_or_default(),
        linked,
        snapshot,
    }
}

#[cfg(test)]
mod version_key_tests {
    use super::salesforce_version_key;

    #[test]
    fn both_channels_spell_one_version_the_same_key() {
        let om = salesforce_version_key("500000000000001AAA", "2024-05-01T10:05:00.000Z");
        let rest = salesforce_version_key("500000000000001AAA", "2024-05-01T10:05:00.000+0000");
        assert_eq!(om, rest);
        assert_eq!(om.as_deref(), Some("sf:500000000000001AAA:1714557900000"));
        assert_ne!(om, salesforce_version_key("500000000000001AAA", "2024-05-01T10:05:00.001Z"));
        assert_eq!(salesforce_version_key("500000000000001AAA", "yesterday"), None);
    }
}
