//! `seam:sync/lookup`: capability-scoped reads of records in either system.
//!
//! A pack reads only the objects and fields its grants name; the host does the
//! I/O through the call's [`RecordSource`](crate::runtime::RecordSource).

use crate::model::{Field, RecordRef, System};
use crate::runtime::records::{Found, LookupFailure};
use crate::runtime::state::PackState;

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

/// `lookup` has not changed since 0.1.0: each version's module expands this to
/// implement its generated trait with the same body.
macro_rules! lookup_host {
    () => {
        mod lookup_host {
            use super::seam::sync::lookup as wit;
            use crate::runtime::imports::lookup::{find, get};
            use crate::runtime::records::LookupFailure;
            use crate::runtime::state::PackState;

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
pub(crate) use lookup_host;
