//! A change event read from its Avro datum: the header, and the body's fields
//! named and valued as the REST API names and values them, so that a pack sees
//! the same record whichever way it came.
//!
//! What Salesforce's schemas look like (change events of standard and custom
//! objects): a record `<Object>ChangeEvent` whose field 0 is `ChangeEventHeader`;
//! every body field a union with null; dates and times as epoch milliseconds in a
//! `long`, told apart by the field's `doc` (`Data:DateTime`, `CreatedDate:DateTime`,
//! `Data:DateOnly`); compound fields (addresses, a person's name) as nested records.
//! The record id is only in the header's `recordIds`.

use super::bitmap;
use apache_avro::schema::Schema;
use apache_avro::types::Value as Avro;
use serde_json::{Map, Value};

/// `ChangeEventHeader`, with its bitmaps expanded to field names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    pub entity_name: String,
    pub record_ids: Vec<String>,
    /// `CREATE`, `UPDATE`, `DELETE`, `UNDELETE`, `GAP_CREATE`, …, `GAP_OVERFLOW`.
    pub change_type: String,
    /// Who made the change: `com/salesforce/api/rest/59.0;client=seam-acme` for an API call with `Sforce-Call-Options`.
    pub change_origin: String,
    pub transaction_key: String,
    pub sequence_number: i32,
    pub commit_timestamp: i64,
    pub commit_number: i64,
    pub commit_user: String,
    pub changed_fields: Vec<String>,
    pub nulled_fields: Vec<String>,
    pub diff_fields: Vec<String>,
}

/// One decoded event: a change event has a header; a platform event has only fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub header: Option<Header>,
    /// The body's non-null fields, by their REST names.
    pub fields: Map<String, Value>,
}

impl Event {
    /// Whether the change was made by the API client `client` (the `client=` of its `Sforce-Call-Options`).
    pub fn made_by_client(&self, client: &str) -> bool {
        self.header.as_ref().is_some_and(|h| {
            h.change_origin.split([';', ',']).map(str::trim).any(|part| part.strip_prefix("client=") == Some(client))
        })
    }
}

/// Decode `payload`, one Avro datum written in `schema`.
pub fn decode(schema: &Schema, payload: &[u8]) -> Result<Event, String> {
    let datum = apache_avro::from_avro_datum(schema, &mut &payload[..], None)
        .map_err(|e| format!("the payload is not a datum of its schema: {e}"))?;
    let Avro::Record(values) = datum else { return Err("the payload is not a record".into()) };
    let Schema::Record(record) = schema else { return Err("the event schema is not a record".into()) };
    let mut event = Event::default();
    for ((name, value), field) in values.iter().zip(&record.fields) {
        if name == "ChangeEventHeader" {
            event.header = Some(header(schema, value)?);
            continue;
        }
        let doc = field.doc.as_deref().unwrap_or_default();
        match unwrap_union(value) {
            Avro::Null => {}
            Avro::Record(parts) => {
                for (part, value) in parts {
                    if let Some(v) = json(unwrap_union(value), "") {
                        event.fields.insert(rest_name(name, part), v);
                    }
                }
            }
            other => {
                if let Some(v) = json(other, doc) {
                    event.fields.insert(name.clone(), v);
                }
            }
        }
    }
    Ok(event)
}

fn header(schema: &Schema, value: &Avro) -> Result<Header, String> {
    let Avro::Record(parts) = value else { return Err("ChangeEventHeader is not a record".into()) };
    let mut h = Header::default();
    let names = |v: &Avro| -> Result<Vec<String>, String> {
        let list: Vec<String> = strings(v);
        let expanded = bitmap::field_names(schema, &list)?;
        Ok(expanded
            .into_iter()
            .map(|n| match n.split_once('.') {
                Some((parent, part)) => rest_name(parent, part),
                None => n,
            })
            .collect())
    };
    for (name, v) in parts {
        match (name.as_str(), v) {
            ("entityName", Avro::String(s)) => h.entity_name = s.clone(),
            ("recordIds", v) => h.record_ids = strings(v),
            ("changeType", Avro::Enum(_, s)) | ("changeType", Avro::String(s)) => h.change_type = s.clone(),
            ("changeOrigin", Avro::String(s)) => h.change_origin = s.clone(),
            ("transactionKey", Avro::String(s)) => h.transaction_key = s.clone(),
            ("sequenceNumber", Avro::Int(n)) => h.sequence_number = *n,
            ("commitTimestamp", Avro::Long(n)) => h.commit_timestamp = *n,
            ("commitNumber", Avro::Long(n)) => h.commit_number = *n,
            ("commitUser", Avro::String(s)) => h.commit_user = s.clone(),
            ("changedFields", v) => h.changed_fields = names(v)?,
            ("nulledFields", v) => h.nulled_fields = names(v)?,
            ("diffFields", v) => h.diff_fields = names(v)?,
            _ => {}
        }
    }
    if h.entity_name.is_empty() || h.change_type.is_empty() {
        return Err("ChangeEventHeader lacks entityName or changeType".into());
    }
    Ok(h)
}

fn strings(v: &Avro) -> Vec<String> {
    match unwrap_union(v) {
        Avro::Array(items) => items
            .iter()
            .filter_map(|i| match unwrap_union(i) {
                Avro::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn unwrap_union(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => inner,
        other => other,
    }
}

/// The REST name of a compound field's part: `BillingAddress.City` → `BillingCity`,
/// `Name.FirstName` → `FirstName`; other compounds keep `Parent.Part`.
pub fn rest_name(parent: &str, part: &str) -> String {
    if parent == "Name" {
        return part.to_string();
    }
    match parent.strip_suffix("Address") {
        Some(prefix) if !prefix.is_empty() && !prefix.ends_with("__") => format!("{prefix}{part}"),
        _ => format!("{parent}.{part}"),
    }
}

/// A body value as REST gives it: epoch milliseconds of a date or date-time field as text.
fn json(v: &Avro, doc: &str) -> Option<Value> {
    Some(match v {
        Avro::Null => return None,
        Avro::Boolean(b) => Value::Bool(*b),
        Avro::Int(n) => Value::from(*n),
        Avro::Long(ms) if doc.ends_with("DateTime") => Value::String(format_datetime(*ms)?),
        Avro::Long(ms) if doc.contains("DateOnly") || doc.contains("Birthday") => {
            Value::String(chrono::DateTime::from_timestamp_millis(*ms)?.format("%Y-%m-%d").to_string())
        }
        Avro::Long(n) => Value::from(*n),
        Avro::Float(x) => Value::from(*x as f64),
        Avro::Double(x) => Value::from(*x),
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s.clone()),
        Avro::Array(items) => Value::Array(items.iter().filter_map(|i| json(unwrap_union(i), "")).collect()),
        _ => return None,
    })
}

/// `2024-05-01T10:05:00.000+0000`, as the REST API writes date-times.
pub fn format_datetime(ms: i64) -> Option<String> {
    Some(chrono::DateTime::from_timestamp_millis(ms)?.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
}
