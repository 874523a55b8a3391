//! Answers a pack's lookups from the tenant's own systems.
//!
//! The runtime has already checked the pack's grants; this only reads. A
//! record that does not exist is `not-found`; anything else that goes wrong
//! is `unavailable`, which the processor treats as transient and retries.

use super::apply::Systems;
use super::normalize;
use crate::connectors::ConnectorError;
use crate::model::{ChangeKind, Field, RecordRef, System, Value};
use crate::runtime::imports::lookup::BoxFuture;
use crate::runtime::{LookupFailure, RecordSource};

impl RecordSource for Systems {
    fn get<'a>(&'a self, record: &'a RecordRef, fields: &'a [String]) -> BoxFuture<'a, Result<Vec<Field>, LookupFailure>> {
        Box::pin(async move {
            let found = match record.system {
                System::Salesforce => self.salesforce.get(&record.object, &record.id).await.map(|r| normalize::salesforce("lookup", ChangeKind::Updated, &record.object, &r, None).snapshot),
                System::Servicenow => self.servicenow.get(&record.object, &record.id).await.map(|r| normalize::servicenow("lookup", ChangeKind::Updated, &record.object, &r, None).snapshot),
                System::Slack => return Err(LookupFailure::NotFound),
            };
            let snapshot = found.map_err(|e| match e {
                ConnectorError::Refused { status: 404, .. } => LookupFailure::NotFound,
                other => LookupFailure::Unavailable(other.to_string()),
            })?;
            let wanted = |name: &str| fields.iter().any(|f| f == "*" || f == name || format!("{f}.display") == name);
            let mut out: Vec<Field> = snapshot.into_iter().filter(|f| wanted(&f.name)).collect();
            // A field the record does not have reads as null, as with fixtures.
            for name in fields.iter().filter(|f| f.as_str() != "*") {
                if !out.iter().any(|f| &f.name == name) {
                    out.push(Field { name: name.clone(), value: Value::Null });
                }
            }
            Ok(out)
        })
    }
}
