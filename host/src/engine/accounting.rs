//! What a write leaves in the journal: the audit rows for the values it changed,
//! the shadow of what the record now holds, and the echoes to expect back. The
//! processor accounts for a pack's writes this way, and `seam link` for its own.

use super::apply::Write;
use crate::model::{RecordRef, Value};
use crate::store::journal::{AuditRow, Outcome};
use crate::store::{AuditReason, Journal};
use anyhow::Result;
use std::collections::HashMap;
use std::sync::Arc;

/// The shadows of `records` (the "before" [`account_for`] compares writes with), in one trip to the journal.
pub(crate) async fn shadows_of(
    journal: &Arc<Journal>,
    tenant: &str,
    records: Vec<RecordRef>,
) -> Result<Vec<HashMap<String, Value>>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let tenant = tenant.to_string();
    journal.run(move |j| records.iter().map(|r| j.shadow(&tenant, r)).collect()).await
}

/// What a write leaves in the journal: audit rows for the values it changed
/// (`before`: the target's shadow), the shadow of what the record now holds,
/// and the echoes to expect back (when the system sends seam's writes back: `echoes_come_back`).
pub(crate) fn account_for(
    w: &Write,
    before: Option<&HashMap<String, Value>>,
    pack: Option<String>,
    reason: AuditReason,
    echoes_come_back: bool,
    out: &mut Outcome,
) {
    for f in &w.fields {
        let old = before.and_then(|b| b.get(&f.name)).cloned();
        // Sent along but unchanged (impact stays 1 when urgency moves): no change to explain.
        if old.as_ref() == Some(&f.value) {
            continue;
        }
        out.audit.push(AuditRow {
            record: w.record.clone(),
            field: f.name.clone(),
            old,
            new: f.value.clone(),
            reason: reason.clone(),
            pack: pack.clone(),
        });
    }
    // What the record holds now; a value the shadow has already is not written again
    // (a ServiceNow create returns all 30-odd fields of the new incident).
    for f in w.observed.iter().filter(|f| before.and_then(|b| b.get(&f.name)) != Some(&f.value)) {
        out.shadow.push((w.record.clone(), f.name.clone(), f.value.clone()));
    }
    if echoes_come_back {
        out.expect.extend(w.fields.iter().map(|f| (w.record.clone(), f.name.clone(), f.value.clone())));
    }
}
