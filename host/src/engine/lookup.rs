//! Answers a pack's lookups from the tenant's own systems.
//!
//! The runtime has already checked the pack's grants; this only reads. A
//! record that does not exist is `not-found`; anything else that goes wrong
//! is `unavailable`, which the processor treats as transient and retries.

use super::apply::Systems;
use super::normalize;
use crate::connectors::salesforce::soql;
use crate::connectors::servicenow::{Query, QueryError};
use crate::connectors::ConnectorError;
use crate::model::{ChangeKind, Field, RecordRef, System, Value};
use crate::runtime::records::{BoxFuture, Found};
use crate::runtime::{LookupFailure, RecordSource};

impl RecordSource for Systems {
    fn get<'a>(
        &'a self,
        record: &'a RecordRef,
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Field>, LookupFailure>> {
        Box::pin(async move {
            let found =
                match record.system {
                    System::Salesforce => self.salesforce.get(&record.object, &record.id).await.map(|r| {
                        normalize::salesforce("lookup", ChangeKind::Updated, &record.object, &r, None).snapshot
                    }),
                    System::Servicenow => self.servicenow.get(&record.object, &record.id).await.map(|r| {
                        normalize::servicenow("lookup", ChangeKind::Updated, &record.object, &r, None).snapshot
                    }),
                    System::Slack => return Err(LookupFailure::NotFound),
                };
            let snapshot = found.map_err(|e| match e {
                ConnectorError::Refused { status: 404, .. } => LookupFailure::NotFound,
                other => failure(other),
            })?;
            Ok(pick(snapshot, fields))
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
            let row = match system {
                System::Salesforce => {
                    let (object, key) = soql::name(object)
                        .and_then(|o| Ok((o, soql::name(key)?)))
                        .map_err(|e| LookupFailure::NotGranted(e.to_string()))?;
                    let soql = format!("SELECT Id FROM {object} WHERE {key} = {} LIMIT 1", soql::literal(value));
                    let ids = self.salesforce.query(&soql).await.map_err(failure)?;
                    match ids.first().and_then(|r| r.get("Id")).and_then(|v| v.as_str()) {
                        // The whole record, so `fields` are read the way `get` reads them.
                        Some(id) => Some(normalize::salesforce(
                            "lookup",
                            ChangeKind::Updated,
                            object,
                            &self.salesforce.get(object, id).await.map_err(failure)?,
                            None,
                        )),
                        None => None,
                    }
                }
                System::Servicenow => {
                    let query = match Query::new().eq(key, value) {
                        Ok(q) => q,
                        // No record is found by an empty key.
                        Err(QueryError::Empty { .. }) => return Ok(None),
                        Err(e) => return Err(LookupFailure::NotGranted(e.to_string())),
                    };
                    let rows = self.servicenow.query(object, &query, 1).await.map_err(failure)?;
                    rows.first().map(|r| normalize::servicenow("lookup", ChangeKind::Updated, object, r, None))
                }
                System::Slack => None,
            };
            Ok(row.map(|change| (change.source, pick(change.snapshot, fields))))
        })
    }
}

/// A connector's failure as the pack sees it: a request seam would not send (a name or id
/// that is not one) is not granted; anything else may pass, and the event is retried.
fn failure(e: ConnectorError) -> LookupFailure {
    match e {
        ConnectorError::Invalid { message, .. } => LookupFailure::NotGranted(message),
        other => LookupFailure::Unavailable(other.to_string()),
    }
}

/// The fields asked for (`*` = all, a reference brings its `.display`); one the record does not have reads as null, as with fixtures.
fn pick(snapshot: Vec<Field>, fields: &[String]) -> Vec<Field> {
    let wanted = |name: &str| fields.iter().any(|f| f == "*" || f == name || format!("{f}.display") == name);
    let mut out: Vec<Field> = snapshot.into_iter().filter(|f| wanted(&f.name)).collect();
    for name in fields.iter().filter(|f| f.as_str() != "*") {
        if !out.iter().any(|f| &f.name == name) {
            out.push(Field { name: name.clone(), value: Value::Null });
        }
    }
    out
}
