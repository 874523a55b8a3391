//! What a pack may read and where reads are answered from: the grants a pack's
//! manifest gives it, and the [`RecordSource`] behind them (the tenant's connectors,
//! or records held in memory for fixtures and tools). The `seam:sync/lookup` host
//! (`imports/lookup.rs`) checks the one and asks the other.

use crate::model::{Field, RecordRef, System, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LookupFailure {
    #[error("not granted: {0}")]
    NotGranted(String),
    #[error("record not found")]
    NotFound,
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A record found by a key, with the fields asked for.
pub type Found = Option<(RecordRef, Vec<Field>)>;

/// Where lookups are answered from.
pub trait RecordSource: Send + Sync {
    fn get<'a>(
        &'a self,
        record: &'a RecordRef,
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Field>, LookupFailure>>;
    /// The first `object` record whose `key` field equals `value`.
    fn find<'a>(
        &'a self,
        system: System,
        object: &'a str,
        key: &'a str,
        value: &'a str,
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Found, LookupFailure>>;
}

/// No records anywhere: every lookup is `unavailable`.
pub struct NoRecords;

impl RecordSource for NoRecords {
    fn get<'a>(&'a self, record: &'a RecordRef, _: &'a [String]) -> BoxFuture<'a, Result<Vec<Field>, LookupFailure>> {
        Box::pin(
            async move { Err(LookupFailure::Unavailable(format!("no record source is configured to read {record}"))) },
        )
    }
    fn find<'a>(
        &'a self,
        system: System,
        object: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a [String],
    ) -> BoxFuture<'a, Result<Found, LookupFailure>> {
        Box::pin(async move {
            Err(LookupFailure::Unavailable(format!("no record source is configured to search {system} {object}")))
        })
    }
}

/// Records held in memory: fixtures, the demo, `seam pack run --records`.
#[derive(Default, Clone, Debug, Serialize, Deserialize)]
pub struct StaticRecords {
    pub records: Vec<StaticRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StaticRecord {
    #[serde(flatten)]
    pub record: RecordRef,
    pub fields: HashMap<String, Value>,
}

impl RecordSource for StaticRecords {
    fn get<'a>(
        &'a self,
        record: &'a RecordRef,
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Field>, LookupFailure>> {
        Box::pin(async move {
            let found = self.records.iter().find(|r| &r.record == record).ok_or(LookupFailure::NotFound)?;
            Ok(found.read(fields))
        })
    }
    fn find<'a>(
        &'a self,
        system: System,
        object: &'a str,
        key: &'a str,
        value: &'a str,
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Found, LookupFailure>> {
        Box::pin(async move {
            let wanted = Value::Text(value.to_string());
            Ok(self
                .records
                .iter()
                .find(|r| {
                    r.record.system == system
                        && r.record.object.eq_ignore_ascii_case(object)
                        && r.fields.get(key) == Some(&wanted)
                })
                .map(|r| (r.record.clone(), r.read(fields))))
        })
    }
}

impl StaticRecord {
    /// The fields asked for; one the record does not have reads as null.
    fn read(&self, fields: &[String]) -> Vec<Field> {
        fields
            .iter()
            .map(|name| Field::new(name.clone(), self.fields.get(name).cloned().unwrap_or(Value::Null)))
            .collect()
    }
}

/// One thing a pack may read: an object in a system, and which of its fields (`*` = all).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub system: System,
    pub object: String,
    pub fields: Vec<String>,
}

/// Everything a pack may read. Empty: nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    pub fn check(&self, record: &RecordRef, fields: &[String]) -> Result<(), LookupFailure> {
        self.check_object(record.system, &record.object, fields)
    }

    pub fn check_object(&self, system: System, object: &str, fields: &[String]) -> Result<(), LookupFailure> {
        let record = RecordRef { system, object: object.to_string(), id: String::new() };
        let Some(grant) =
            self.0.iter().find(|g| g.system == record.system && g.object.eq_ignore_ascii_case(&record.object))
        else {
            return Err(LookupFailure::NotGranted(format!(
                "the pack has no grant to read {} {}",
                record.system, record.object
            )));
        };
        if grant.fields.iter().any(|f| f == "*") {
            return Ok(());
        }
        let denied: Vec<&str> = fields.iter().filter(|f| !grant.fields.contains(f)).map(String::as_str).collect();
        if denied.is_empty() {
            Ok(())
        } else {
            Err(LookupFailure::NotGranted(format!(
                "the pack may not read {} of {} {}",
                denied.join(", "),
                record.system,
                record.object
            )))
        }
    }
}
