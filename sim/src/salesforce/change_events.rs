//! Change Data Capture: the org's event bus, as the Pub/Sub API serves it.
//!
//! Every write to an object with change events on (Case, Account) appends an
//! event in the same SQLite transaction as the write, so a write that lands is
//! never without its event and the replay ids follow commit order. Events are
//! Avro datums in the object's change event schema, shaped as Salesforce shapes
//! it (`ChangeEventHeader` first, every body field a union with null, dates as
//! epoch milliseconds, no `Id`: the ids are in `recordIds`), with the header's
//! field lists as hex bitmaps over the schema's field positions.
//!
//! One write of one object that changes several records the same way in one
//! transaction (a collection call) is one event naming all of them, as on the
//! platform. Events are kept for the retention window (72 hours, settable for
//! tests with `PUT /__admin/pubsub`); a replay id from before it is refused.

use super::schema::{FieldType, ObjectDef};
use crate::store::Store;
use anyhow::{Context, Result};
use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use base64::Engine as _;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long Salesforce keeps change events.
pub const RETENTION: Duration = Duration::from_secs(72 * 3600);
/// At most this long without a response while events are owed: then an empty keepalive.
pub const KEEPALIVE: Duration = Duration::from_secs(270);
/// The standard channel that carries every selected object's change events.
pub const ALL_CHANGE_EVENTS: &str = "/data/ChangeEvents";

const HEADER_SCHEMA: &str = r#"{"type":"record","name":"ChangeEventHeader","fields":[
{"name":"entityName","type":"string"},
{"name":"recordIds","type":{"type":"array","items":"string"}},
{"name":"changeType","type":{"type":"enum","name":"ChangeType","symbols":["CREATE","UPDATE","DELETE","UNDELETE","GAP_CREATE","GAP_UPDATE","GAP_DELETE","GAP_UNDELETE","GAP_OVERFLOW","SNAPSHOT"]}},
{"name":"changeOrigin","type":"string"},
{"name":"transactionKey","type":"string"},
{"name":"sequenceNumber","type":"int"},
{"name":"commitTimestamp","type":"long"},
{"name":"commitNumber","type":"long"},
{"name":"commitUser","type":"string"},
{"name":"nulledFields","type":{"type":"array","items":"string"}},
{"name":"diffFields","type":{"type":"array","items":"string"}},
{"name":"changedFields","type":{"type":"array","items":"string"}}]}"#;

const CHANGE_TYPES: [&str; 10] = [
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
    "SNAPSHOT",
];

/// An object's change event schema as it stands (an admin may delete fields).
pub struct EventSchema {
    pub id: String,
    pub json: String,
    pub schema: Schema,
    /// The body fields, in schema order (position = index + 1; the header is 0).
    pub fields: Vec<(&'static str, FieldType)>,
}

/// The bus's settings, which tests shorten.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusSettings {
    pub retention_seconds: f64,
    pub keepalive_seconds: f64,
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings { retention_seconds: RETENTION.as_secs_f64(), keepalive_seconds: KEEPALIVE.as_secs_f64() }
    }
}

/// A stored event as a subscription reads it.
pub struct StoredEvent {
    pub replay: u64,
    pub id: String,
    pub schema_id: String,
    pub payload: Vec<u8>,
}

/// What one write did to one record, for its event.
pub struct Written<'a> {
    pub obj: &'static ObjectDef,
    pub change: &'static str,
    pub id: &'a str,
    pub record: &'a Map<String, Value>,
    pub before: Option<&'a Map<String, Value>>,
}

type SchemaKey = (String, Vec<String>);
/// One change event: its object, change type, schema and body, and the records it covers.
type EventGroup<'w> = (&'static ObjectDef, &'static str, Arc<EventSchema>, Body, Vec<&'w str>);

pub struct Bus {
    store: Arc<Store>,
    /// The newest replay id; subscriptions wait on it.
    tip: tokio::sync::watch::Sender<u64>,
    /// By object and the fields removed from it.
    schemas: Mutex<HashMap<SchemaKey, Arc<EventSchema>>>,
    settings: Mutex<BusSettings>,
}

const SETTINGS: &str = "sf.pubsub.settings";

impl Bus {
    pub fn open(store: Arc<Store>) -> Result<Bus> {
        store
            .with_db(|db| {
                db.execute_batch(
                    "CREATE TABLE IF NOT EXISTS change_events (
                         replay INTEGER PRIMARY KEY, topic TEXT NOT NULL, event_id TEXT NOT NULL,
                         schema_id TEXT NOT NULL, payload BLOB NOT NULL, at_ms INTEGER NOT NULL);
                     CREATE INDEX IF NOT EXISTS change_events_by_topic ON change_events (topic, replay);
                     CREATE TABLE IF NOT EXISTS event_schemas (schema_id TEXT PRIMARY KEY, json TEXT NOT NULL);",
                )
            })
            .context("creating the change event bus")?;
        let tip = store.with_db(|db| {
            db.query_row("SELECT COALESCE(MAX(replay), 0) FROM change_events", [], |r| r.get::<_, i64>(0))
        })? as u64;
        let tip = tip.max(store.counter("sf.pubsub.replay"));
        let settings = store.setting(SETTINGS).and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        Ok(Bus {
            store,
            tip: tokio::sync::watch::channel(tip).0,
            schemas: Default::default(),
            settings: Mutex::new(settings),
        })
    }

    pub fn settings(&self) -> BusSettings {
        *self.settings.lock().unwrap()
    }

    pub fn set_settings(&self, settings: BusSettings) -> Result<()> {
        self.store.set_setting(SETTINGS, &serde_json::to_string(&settings)?)?;
        *self.settings.lock().unwrap() = settings;
        self.purge()?;
        Ok(())
    }

    /// Waits for new events.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tip.subscribe()
    }

    pub fn tip(&self) -> u64 {
        *self.tip.borrow()
    }

    /// Called after the transaction that appended events committed.
    pub fn committed(&self) {
        let tip = self.store.counter("sf.pubsub.replay");
        self.tip.send_if_modified(|t| {
            let moved = *t != tip;
            *t = tip;
            moved
        });
    }

    /// The change event schema of `obj` without the fields in `removed` (`Object.Field`).
    pub fn schema(&self, obj: &'static ObjectDef, removed: &[String]) -> Result<Arc<EventSchema>> {
        let mine: Vec<String> =
            removed.iter().filter(|r| r.split_once('.').is_some_and(|(o, _)| o == obj.name)).cloned().collect();
        let key = (obj.name.to_string(), mine);
        if let Some(s) = self.schemas.lock().unwrap().get(&key) {
            return Ok(s.clone());
        }
        let fields: Vec<(&'static str, FieldType)> = obj
            .fields
            .iter()
            // No Id (the ids are in the header), and no fields change events leave out.
            .filter(|f| {
                !matches!(f.name, "Id" | "IsDeleted" | "SystemModstamp")
                    && !key.1.contains(&format!("{}.{}", obj.name, f.name))
            })
            .map(|f| (f.name, f.ty.clone()))
            .collect();
        let header: Value = serde_json::from_str(HEADER_SCHEMA).expect("the header schema is JSON");
        let mut avro_fields =
            vec![json!({ "name": "ChangeEventHeader", "type": header, "doc": "Data:ComplexValueType" })];
        for (name, ty) in &fields {
            let (avro, doc) = avro_type(name, ty);
            avro_fields.push(json!({ "name": name, "type": ["null", avro], "doc": doc, "default": null }));
        }
        let json = json!({ "type": "record", "name": format!("{}ChangeEvent", obj.name.trim_end_matches("__c")), "namespace": "com.sforce.eventbus", "fields": avro_fields }).to_string();
        // Salesforce's schema ids are fingerprints of the schema.
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(json.as_bytes())[..16]);
        let schema = Schema::parse_str(&json).with_context(|| format!("the change event schema of {}", obj.name))?;
        // Stored with the first event written in it (`append_in`): this may run inside a write's transaction.
        let parsed = Arc::new(EventSchema { id, json, schema, fields });
        self.schemas.lock().unwrap().insert(key, parsed.clone());
        Ok(parsed)
    }

    /// A schema by id, as `GetSchema` answers it: a current one, or one that events were written in.
    pub fn schema_json(&self, id: &str) -> Option<String> {
        if let Some(current) = self.schemas.lock().unwrap().values().find(|s| s.id == id) {
            return Some(current.json.clone());
        }
        self.store
            .with_db(|db| {
                db.query_row("SELECT json FROM event_schemas WHERE schema_id = ?1", params![id], |r| r.get(0))
                    .optional()
            })
            .ok()
            .flatten()
    }

    /// Append the events of one transaction's writes (inside it: `db` is the write's transaction).
    /// Records of one object changed the same way share one event.
    /// With `gap`, the events are gap events: `GAP_<type>`, the header alone.
    pub fn append_in(
        &self,
        db: &Connection,
        writes: &[Written],
        commit_user: &str,
        change_origin: &str,
        removed: &[String],
        gap: bool,
    ) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let commit_number = crate::store::next_in(db, "sf.pubsub.commit")?;
        let transaction_key = uuid_like();
        let now = chrono::Utc::now().timestamp_millis();
        // (object, change type, schema, body) → the records it covers, in write order.
        let mut grouped: Vec<EventGroup> = Vec::new();
        for w in writes.iter().filter(|w| w.obj.notifies) {
            let schema = self.schema(w.obj, removed)?;
            let (change, body) = match gap {
                false => (w.change, body(&schema, w)),
                true => (
                    gap_type(w.change),
                    Body {
                        values: vec![Avro::Union(0, Box::new(Avro::Null)); schema.fields.len()],
                        changed: vec![],
                        nulled: vec![],
                    },
                ),
            };
            match grouped.iter_mut().find(|(obj, c, _, b, _)| obj.name == w.obj.name && *c == change && *b == body) {
                Some(group) => group.4.push(w.id),
                None => grouped.push((w.obj, change, schema, body, vec![w.id])),
            }
        }
        for (sequence, (obj, change, schema, body, ids)) in grouped.into_iter().enumerate() {
            let header = Avro::Record(vec![
                ("entityName".into(), Avro::String(obj.name.into())),
                ("recordIds".into(), Avro::Array(ids.iter().map(|id| Avro::String(id.to_string())).collect())),
                (
                    "changeType".into(),
                    Avro::Enum(CHANGE_TYPES.iter().position(|c| *c == change).unwrap_or(0) as u32, change.into()),
                ),
                ("changeOrigin".into(), Avro::String(change_origin.into())),
                ("transactionKey".into(), Avro::String(transaction_key.clone())),
                ("sequenceNumber".into(), Avro::Int(sequence as i32 + 1)),
                ("commitTimestamp".into(), Avro::Long(now)),
                ("commitNumber".into(), Avro::Long(commit_number as i64)),
                ("commitUser".into(), Avro::String(commit_user.into())),
                ("nulledFields".into(), bitmaps(&body.nulled)),
                ("diffFields".into(), Avro::Array(vec![])),
                ("changedFields".into(), bitmaps(&body.changed)),
            ]);
            let mut record = vec![("ChangeEventHeader".to_string(), header)];
            record.extend(schema.fields.iter().zip(body.values).map(|((name, _), v)| (name.to_string(), v)));
            let payload = apache_avro::to_avro_datum(&schema.schema, Avro::Record(record))
                .with_context(|| format!("encoding a {} change event", obj.name))?;
            db.prepare_cached("INSERT OR IGNORE INTO event_schemas (schema_id, json) VALUES (?1, ?2)")?
                .execute(params![schema.id, schema.json])?;
            let replay = crate::store::next_in(db, "sf.pubsub.replay")?;
            db.prepare_cached("INSERT INTO change_events (replay, topic, event_id, schema_id, payload, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
                .execute(params![replay as i64, change_event_topic(obj.name), uuid_like(), schema.id, payload, now])?;
        }
        Ok(())
    }

    /// Up to `limit` events of `topic` after `after`, up to `through`.
    pub fn read(&self, topic: &str, after: u64, through: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let all = topic == ALL_CHANGE_EVENTS;
        self.store.with_db(|db| {
            let sql = if all {
                "SELECT replay, event_id, schema_id, payload FROM change_events WHERE replay > ?2 AND replay <= ?3 AND ?1 = ?1 ORDER BY replay LIMIT ?4"
            } else {
                "SELECT replay, event_id, schema_id, payload FROM change_events WHERE topic = ?1 AND replay > ?2 AND replay <= ?3 ORDER BY replay LIMIT ?4"
            };
            let mut stmt = db.prepare_cached(sql)?;
            let rows = stmt.query_map(params![topic, after as i64, through as i64, limit as i64], |r| {
                Ok(StoredEvent { replay: r.get::<_, i64>(0)? as u64, id: r.get(1)?, schema_id: r.get(2)?, payload: r.get(3)? })
            })?;
            rows.collect()
        })
    }

    /// The newest replay id of `topic` (0 if it has none).
    pub fn newest(&self, topic: &str) -> u64 {
        self.store
            .with_db(|db| {
                db.query_row(
                    "SELECT COALESCE(MAX(replay), 0) FROM change_events WHERE topic = ?1",
                    params![topic],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap_or(0) as u64
    }

    /// The replay id before the oldest event kept: a subscription may resume after it, not before.
    pub fn horizon(&self) -> u64 {
        self.store.counter("sf.pubsub.purged")
    }

    /// Drop events older than the retention window.
    pub fn purge(&self) -> Result<usize> {
        let cutoff = chrono::Utc::now().timestamp_millis() - (self.settings().retention_seconds * 1000.0) as i64;
        self.store.with_db(|db| {
            let newest_gone: Option<i64> = db.query_row("SELECT MAX(replay) FROM change_events WHERE at_ms < ?1", params![cutoff], |r| r.get(0))?;
            let Some(newest_gone) = newest_gone else { return Ok(0) };
            let n = db.execute("DELETE FROM change_events WHERE replay <= ?1", params![newest_gone])?;
            db.execute(
                "INSERT INTO counters (name, value) VALUES ('sf.pubsub.purged', ?1) ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
                params![newest_gone],
            )?;
            Ok(n)
        })
    }

    /// Events kept, and the oldest and newest replay ids.
    pub fn stats(&self) -> Value {
        let (count, oldest) = self
            .store
            .with_db(|db| {
                db.query_row("SELECT COUNT(*), MIN(replay) FROM change_events", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                })
            })
            .unwrap_or((0, None));
        json!({ "events": count, "oldest_replay": oldest, "newest_replay": self.tip(), "settings": self.settings() })
    }
}

fn gap_type(change: &str) -> &'static str {
    match change {
        "CREATE" => "GAP_CREATE",
        "DELETE" => "GAP_DELETE",
        "UNDELETE" => "GAP_UNDELETE",
        _ => "GAP_UPDATE",
    }
}

/// An event body: a value per schema field (null where unchanged), and the changed and nulled positions.
#[derive(PartialEq)]
struct Body {
    values: Vec<Avro>,
    changed: Vec<usize>,
    nulled: Vec<usize>,
}

/// CREATE and UNDELETE carry the whole record; UPDATE the fields that changed, with
/// `changedFields` naming them (`nulledFields` those now empty); DELETE only the header.
fn body(schema: &EventSchema, w: &Written) -> Body {
    let mut b = Body { values: Vec::with_capacity(schema.fields.len()), changed: vec![], nulled: vec![] };
    for (i, (name, ty)) in schema.fields.iter().enumerate() {
        let now = w.record.get(*name).unwrap_or(&Value::Null);
        let value = match (w.change, w.before) {
            ("DELETE", _) => &Value::Null,
            ("UPDATE", Some(before)) if before.get(*name).unwrap_or(&Value::Null) == now => &Value::Null,
            ("UPDATE", _) => {
                b.changed.push(i + 1);
                if now.is_null() {
                    b.nulled.push(i + 1);
                }
                now
            }
            _ => now,
        };
        b.values.push(avro_value(value, ty));
    }
    b
}

/// The Avro type of a field and its `doc`, as Salesforce's schemas tag them.
fn avro_type(name: &str, ty: &FieldType) -> (&'static str, String) {
    let (avro, tag) = match ty {
        FieldType::Boolean => ("boolean", "Data:Boolean"),
        FieldType::Number => ("double", "Data:Double"),
        FieldType::DateTime if name == "CreatedDate" => return ("long", "CreatedDate:DateTime".into()),
        FieldType::DateTime => ("long", "Data:DateTime"),
        FieldType::Date => ("long", "Data:DateOnly"),
        FieldType::Reference(_) | FieldType::Id => ("string", "ForeignKey:EntityId"),
        FieldType::Picklist { .. } => ("string", "Data:DynamicEnum"),
        FieldType::TextArea(_) => ("string", "Data:StringPlusClob"),
        FieldType::Email => ("string", "Data:Email"),
        FieldType::AutoNumber => ("string", "Data:AutoNumber"),
        FieldType::Base64 => ("string", "Data:Base64"),
        FieldType::Text(_) => ("string", "Data:Text"),
    };
    (avro, tag.to_string())
}

/// A record's JSON value as the union `["null", T]` of its field.
fn avro_value(v: &Value, ty: &FieldType) -> Avro {
    let inner = match (v, ty) {
        (Value::Null, _) => return Avro::Union(0, Box::new(Avro::Null)),
        (Value::Bool(b), _) => Avro::Boolean(*b),
        (Value::Number(n), _) => Avro::Double(n.as_f64().unwrap_or_default()),
        (Value::String(s), FieldType::DateTime) => match super::schema::parse_datetime(s) {
            Some(t) => Avro::Long(t.timestamp_millis()),
            None => return Avro::Union(0, Box::new(Avro::Null)),
        },
        (Value::String(s), FieldType::Date) => match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            Ok(d) => Avro::Long(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or_default()),
            Err(_) => return Avro::Union(0, Box::new(Avro::Null)),
        },
        (Value::String(s), FieldType::Boolean) => Avro::Boolean(s == "true"),
        (Value::String(s), FieldType::Number) => Avro::Double(s.parse().unwrap_or_default()),
        (Value::String(s), _) => Avro::String(s.clone()),
        (other, _) => Avro::String(other.to_string()),
    };
    Avro::Union(1, Box::new(inner))
}

/// `["0x…"]`: bit i set for schema position i (least significant first); empty when none.
fn bitmaps(positions: &[usize]) -> Avro {
    let Some(&top) = positions.iter().max() else { return Avro::Array(vec![]) };
    let mut nibbles = vec![0u8; top / 4 + 1];
    for &p in positions {
        nibbles[p / 4] |= 1 << (p % 4);
    }
    let hex: String =
        nibbles.iter().rev().map(|n| char::from_digit(u32::from(*n), 16).unwrap().to_ascii_uppercase()).collect();
    Avro::Array(vec![Avro::String(format!("0x{hex}"))])
}

/// A random 128-bit id in the 8-4-4-4-12 form Salesforce uses for event ids, transaction keys and rpc ids.
pub(crate) fn uuid_like() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// The channel of a standard or custom object's change events: `Case` → `/data/CaseChangeEvent`,
/// `Ticket__c` → `/data/Ticket__ChangeEvent`.
pub fn change_event_topic(object: &str) -> String {
    match object.strip_suffix("__c") {
        Some(custom) => format!("/data/{custom}__ChangeEvent"),
        None => format!("/data/{object}ChangeEvent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_read_back_as_the_positions_they_were_made_from() {
        let Avro::Array(items) = bitmaps(&[5, 6, 7, 10, 24, 26, 29, 30]) else { panic!() };
        assert_eq!(items, vec![Avro::String("0x650004E0".into())]);
        assert_eq!(bitmaps(&[]), Avro::Array(vec![]));
    }
}
