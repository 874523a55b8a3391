//! The host's own vocabulary for changes and actions.
//!
//! Every `seam:sync` WIT version converts to and from these types, so the
//! engine, journal and connectors never depend on one `seam:sync` version.
//! They are also the JSON form used by `seam pack run` and test fixtures.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Salesforce,
    Servicenow,
    Slack,
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Salesforce => "salesforce",
            System::Servicenow => "servicenow",
            System::Slack => "slack",
        })
    }
}

impl std::str::FromStr for System {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "salesforce" | "sf" | "sfdc" => Ok(System::Salesforce),
            "servicenow" | "snow" | "sn" => Ok(System::Servicenow),
            "slack" => Ok(System::Slack),
            other => anyhow::bail!("unknown system {other:?}: expected salesforce, servicenow or slack"),
        }
    }
}

/// A field value. JSON `null`, strings, numbers and booleans map one to one.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
}

/// By the JSON type, directly. (`untagged` would buffer each value and try the
/// variants in turn, building an error for each miss: the journal reads
/// thousands of values a second.)
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("null, a boolean, a number or a string")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
                Ok(Value::Number(n as f64))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
                Ok(Value::Number(n as f64))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
                Ok(Value::Number(n))
            }
            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(Value::Text(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Value, E> {
                Ok(Value::Text(s))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Value {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub value: Value,
}

/// Each field once, at its value in the last list that has it (a record's
/// coalesced changes, oldest first, read as one).
pub fn latest_fields<'a>(lists: impl IntoIterator<Item = &'a Vec<Field>>) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for f in lists.into_iter().flatten() {
        match out.iter_mut().find(|g| g.name == f.name) {
            Some(g) => g.value = f.value.clone(),
            None => out.push(f.clone()),
        }
    }
    out
}

impl Field {
    pub fn new(name: impl Into<String>, value: impl Into<Value>) -> Self {
        Field { name: name.into(), value: value.into() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordRef {
    pub system: System,
    pub object: String,
    pub id: String,
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.system, self.object, self.id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// What happened to one record, normalized from whatever notification carried it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub event_id: String,
    pub kind: ChangeKind,
    pub source: RecordRef,
    #[serde(default)]
    pub changed: Vec<Field>,
    #[serde(default)]
    pub snapshot: Vec<Field>,
    #[serde(default)]
    pub origin_user: String,
    #[serde(default)]
    pub linked: Option<RecordRef>,
}

impl Change {
    /// When the source system committed the change, in Unix milliseconds, as its record says:
    /// Salesforce's `SystemModstamp` (else `LastModifiedDate`), ServiceNow's `sys_updated_on`
    /// (UTC). These are the systems' own audit fields, on every object and table.
    pub fn committed_at_ms(&self) -> Option<i64> {
        let names: &[&str] = match self.source.system {
            System::Salesforce => &["SystemModstamp", "LastModifiedDate"],
            System::Servicenow => &["sys_updated_on"],
            System::Slack => &[],
        };
        let at = |name: &str| match &self.changed.iter().chain(&self.snapshot).find(|f| f.name == name)?.value {
            Value::Text(text) => parse_system_time(text),
            // Change events carry datetimes as Avro longs: milliseconds.
            Value::Number(ms) => Some(*ms as i64),
            _ => None,
        };
        names.iter().find_map(|name| at(name))
    }
}

/// `2026-12-01T09:12:00.000+0000`, `2026-12-01T09:12:00Z` (Salesforce) or `2026-12-01 09:12:00`
/// (ServiceNow, UTC) → Unix milliseconds.
fn parse_system_time(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc().timestamp_millis())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "record")]
pub enum Target {
    Linked,
    Source,
    Explicit(RecordRef),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JournalKind {
    WorkNote,
    Comment,
}

/// What an event's later actions refer to, kept with its progress so a
/// resumed attempt fills `{{linked.*}}` and `{{created.*}}` as the first did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    /// The source's partner: the one the change named, or the one a linked create made.
    pub linked: Option<RecordRef>,
    pub linked_number: Option<String>,
    /// The record the latest create made.
    pub created: Option<RecordRef>,
    /// The idempotency keys of the actions carried out so far (see `engine::apply::action_keys`):
    /// a retry skips these, whichever pack version asks for them again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub done: std::collections::BTreeSet<String>,
}

/// What a pack asks the host to do. Serialized as `{"update": {...}}` etc.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Update {
        target: Target,
        fields: Vec<Field>,
    },
    AppendJournal {
        target: Target,
        kind: JournalKind,
        text: String,
    },
    Create {
        system: System,
        object: String,
        fields: Vec<Field>,
        link_to_source: bool,
    },
    PostSlack {
        channel: String,
        create_channel: bool,
        text: String,
    },
    /// Delete a record. Not a pack's to ask for: the host adds it when a pack's delete
    /// policy says a deleted record's partner goes too (see `packs::manifest::Deletes`).
    Delete {
        target: Target,
    },
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Linked => f.write_str("linked record"),
            Target::Source => f.write_str("source record"),
            Target::Explicit(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |fields: &[Field]| {
            fields.iter().map(|x| format!("{} = {}", x.name, x.value)).collect::<Vec<_>>().join(", ")
        };
        match self {
            Action::Update { target, fields } => write!(f, "update {target}: {}", list(fields)),
            Action::AppendJournal { target, kind, text } => write!(f, "append {kind:?} to {target}: {text:?}"),
            Action::Create { system, object, fields, link_to_source } => {
                write!(
                    f,
                    "create {system} {object}{}: {}",
                    if *link_to_source { " (linked)" } else { "" },
                    list(fields)
                )
            }
            Action::PostSlack { channel, create_channel, text } => {
                write!(f, "post to Slack #{channel}{}: {text:?}", if *create_channel { " (create)" } else { "" })
            }
            Action::Delete { target } => write!(f, "delete {target}"),
        }
    }
}
