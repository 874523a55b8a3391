//! `seam:sync/lookup`: capability-scoped reads of records in either system.
//!
//! A pack reads only the objects and fields its grants name; the host does the
//! I/O through a [`RecordSource`] (the tenant's connectors, or fixtures).

use crate::model::{Field, RecordRef, System, Value};
use crate::runtime::state::PackState;
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

/// Grant check, then the read; an unreachable system is remembered so the call counts as transient.
pub(crate) async fn get(
    state: &mut PackState,
    record: RecordRef,
    fields: Vec<String>,
) -> Result<Vec<Field>, LookupFailure> {
    state.grants.check(&record, &fields)?;
    let result = state.records.get(&record, &fields).await;
    if let Err(LookupFailure::Unavailable(why)) = &result {
        state.lookup_unavailable = Some(why.clone());
    }
    result
}

/// Grant check (the key field included), then the search.
pub(crate) async fn find(
    state: &mut PackState,
    system: System,
    object: String,
    key: String,
    value: String,
    fields: Vec<String>,
) -> Result<Found, LookupFailure> {
    let mut needed = fields.clone();
    needed.push(key.clone());
    state.grants.check_object(system, &object, &needed)?;
    let result = state.records.find(system, &object, &key, &value, &fields).await;
    if let Err(LookupFailure::Unavailable(why)) = &result {
        state.lookup_unavailable = Some(why.clone());
    }
    result
}

/// `lookup` has not changed since 0.1.0; each version's generated trait gets the same body.
macro_rules! lookup_host {
    ($version:ident) => {
        mod $version {
            use super::{find, get, LookupFailure, PackState};
            use crate::runtime::bindings::$version::seam::sync::lookup as wit;

            fn to_wit(failure: LookupFailure) -> wit::LookupError {
                match failure {
                    LookupFailure::NotGranted(why) => wit::LookupError::NotGranted(why),
                    LookupFailure::NotFound => wit::LookupError::NotFound,
                    LookupFailure::Unavailable(why) => wit::LookupError::Unavailable(why),
                }
            }

            impl wit::Host for PackState {
                async fn get(
                    &mut self,
                    record: wit::RecordRef,
                    fields: Vec<String>,
                ) -> wasmtime::Result<Result<Vec<wit::Field>, wit::LookupError>> {
                    Ok(get(self, record.into(), fields)
                        .await
                        .map(|found| found.iter().map(Into::into).collect())
                        .map_err(to_wit))
                }

                async fn find(
                    &mut self,
                    system: wit::System,
                    object: String,
                    key: String,
                    value: String,
                    fields: Vec<String>,
                ) -> wasmtime::Result<Result<Option<(wit::RecordRef, Vec<wit::Field>)>, wit::LookupError>> {
                    let found = find(self, system.into(), object, key, value, fields).await;
                    Ok(found
                        .map(|f| f.map(|(record, fields)| ((&record).into(), fields.iter().map(Into::into).collect())))
                        .map_err(to_wit))
                }
            }
        }
    };
}
lookup_host!(v0_1_0);
lookup_host!(v0_2_0);
