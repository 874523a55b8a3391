//! Who is linked with whom. A link is made only by seam: by its own linked
//! create, by an operator (`seam link`), or when both records already name
//! each other and neither is linked elsewhere (a journal rebuilt on orgs that
//! seam synced before). A record's link field is only a claim: a Case that
//! names another customer's incident, or an incident that names a Case, takes
//! nothing over. A claim that is not returned is an identity conflict; the
//! event goes to the dead-letter queue with nothing written across.

use super::accounting::{account_for, shadows_of};
use super::apply::{Systems, Write};
pub use super::normalize::INCIDENT_CASE_FIELD;
use super::normalize::{CASE_INCIDENT_FIELD, CASE_INCIDENT_NUMBER_FIELD};
use crate::model::{RecordRef, System, Value};
use crate::runtime::{LookupFailure, RecordSource};
use crate::store::journal::{AuditRow, Outcome};
use crate::store::{AuditReason, Journal};
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value as Json};
use std::sync::Arc;

/// The field in which a record of `system` names its partner.
pub fn link_field(system: System) -> &'static str {
    match system {
        System::Salesforce => CASE_INCIDENT_FIELD,
        _ => INCIDENT_CASE_FIELD,
    }
}

/// The values that clear a record's link to its partner (the link field, and the partner's
/// number or name beside it), as a field list for an update.
pub fn cleared_link(system: System) -> Vec<crate::model::Field> {
    let (fields, empty) = match system {
        System::Salesforce => (&[CASE_INCIDENT_FIELD, CASE_INCIDENT_NUMBER_FIELD][..], Value::Null),
        // ServiceNow keeps an empty string, not a null.
        _ => (&[INCIDENT_CASE_FIELD, "correlation_display"][..], Value::Text(String::new())),
    };
    fields.iter().map(|f| crate::model::Field { name: f.to_string(), value: empty.clone() }).collect()
}

/// Whether a pack may write `field`: link fields are seam's alone, on both sides.
pub fn is_link_field(system: System, field: &str) -> bool {
    field == link_field(system)
}

/// Why a record's claim to a partner was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// The claim is not returned, or the partner is linked elsewhere.
    Conflict(String),
    /// The partner could not be read now; try again later.
    Unavailable(String),
}

/// Check a claim by `source` (unlinked in the journal) to the partner `claimed`: taken only
/// when `claimed` is not linked elsewhere and names `source` back.
pub async fn check_claim(
    journal: &Arc<Journal>,
    tenant: &str,
    systems: &Systems,
    source: &RecordRef,
    claimed: &RecordRef,
) -> Result<(), Refusal> {
    let (t, c) = (tenant.to_string(), claimed.clone());
    if let Some(other) =
        journal.run(move |j| j.link_of(&t, &c)).await.map_err(|e| Refusal::Unavailable(format!("{e:#}")))?
    {
        return Err(Refusal::Conflict(format!(
            "{source} names {claimed} as its partner, but seam linked {claimed} with {other}"
        )));
    }
    let field = link_field(claimed.system);
    let back = match systems.get(claimed, &[field.to_string()]).await {
        Ok(fields) => fields
            .into_iter()
            .find(|f| f.name == field)
            .and_then(|f| f.value.as_text().map(str::to_string))
            .unwrap_or_default(),
        Err(LookupFailure::NotFound) => {
            return Err(Refusal::Conflict(format!(
                "{source} names {claimed} as its partner, and there is no such record"
            )))
        }
        Err(e) => return Err(Refusal::Unavailable(format!("reading {claimed} to check {source}'s claim to it: {e}"))),
    };
    if back != source.id {
        let names = if back.is_empty() { "no partner".to_string() } else { back };
        return Err(Refusal::Conflict(format!("{source} names {claimed} as its partner, but {claimed} names {names}")));
    }
    Ok(())
}

/// The audit row of a refused claim.
pub fn conflict_audit(source: &RecordRef, claimed: &RecordRef, why: &str) -> AuditRow {
    AuditRow {
        record: source.clone(),
        field: link_field(source.system).to_string(),
        old: None,
        new: Value::Text(claimed.id.clone()),
        reason: AuditReason::IdentityConflict { why: why.to_string() },
        pack: None,
    }
}

/// `seam link`: an operator links a Case and an incident. Neither may be linked elsewhere;
/// both records are read (they must exist), their link fields are written to name each
/// other, and the link is recorded with audit rows naming `by`.
pub async fn link_by_operator(
    journal: &Arc<Journal>,
    tenant: &str,
    systems: &Systems,
    case_id: &str,
    incident_id: &str,
    by: &str,
) -> Result<()> {
    let case = RecordRef { system: System::Salesforce, object: "Case".into(), id: case_id.into() };
    let incident = RecordRef { system: System::Servicenow, object: "incident".into(), id: incident_id.into() };
    let (t, c, i) = (tenant.to_string(), case.clone(), incident.clone());
    let (case_link, incident_link) = journal.run(move |j| Ok((j.link_of(&t, &c)?, j.link_of(&t, &i)?))).await?;
    for (record, partner, link) in [(&case, &incident, case_link), (&incident, &case, incident_link)] {
        match link {
            Some(other) if other == partner.id => bail!("{case} and {incident} are linked already"),
            Some(other) => bail!("{record} is linked with {other}; a record has one partner"),
            None => {}
        }
    }
    let read = |r: RecordRef| async move {
        match systems.get(&r, &["number".to_string()]).await {
            Ok(fields) => Ok(fields),
            Err(LookupFailure::NotFound) => bail!("there is no {r}: check the id"),
            Err(e) => bail!("reading {r}: {e}"),
        }
    };
    read(case.clone()).await?;
    let number = read(incident.clone())
        .await?
        .into_iter()
        .find(|f| f.name == "number")
        .and_then(|f| f.value.as_text().map(str::to_string));
    let case_back = Map::from_iter([
        (CASE_INCIDENT_FIELD.to_string(), Json::String(incident.id.clone())),
        (CASE_INCIDENT_NUMBER_FIELD.to_string(), number.map_or(Json::Null, Json::String)),
    ]);
    let incident_back = Map::from_iter([
        (INCIDENT_CASE_FIELD.to_string(), Json::String(case.id.clone())),
        ("correlation_display".to_string(), Json::String("Salesforce Case".into())),
    ]);
    let mut out = Outcome::default();
    let mut writes: Vec<Write> = Vec::new();
    writes
        .push(systems.update(case.clone(), &case_back).await.with_context(|| format!("writing the link into {case}"))?);
    writes.push(
        systems
            .update(incident.clone(), &incident_back)
            .await
            .with_context(|| format!("writing the link into {incident}"))?,
    );
    for (w, before) in
        writes.iter().zip(shadows_of(journal, tenant, writes.iter().map(|w| w.record.clone()).collect()).await?)
    {
        account_for(
            w,
            Some(&before),
            None,
            AuditReason::Linked { by: by.to_string() },
            systems.echoes_come_back(w.record.system),
            &mut out,
        );
    }
    out.links.push((case.id.clone(), incident.id.clone()));
    journal.record_outcome(tenant, &format!("link:{}:{}", case.id, incident.id), "seam link", out).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::normalize;

    #[test]
    fn link_fields_are_the_ones_normalize_reads() {
        // normalize reads the claim from these fields; the two must never drift apart.
        let case = normalize::salesforce(
            "k",
            crate::model::ChangeKind::Created,
            "Case",
            &Map::from_iter([
                ("Id".into(), Json::from("500000000000001AAA")),
                (link_field(System::Salesforce).into(), Json::from("a".repeat(32))),
            ]),
            None,
        );
        assert_eq!(case.linked.map(|l| l.id), Some("a".repeat(32)));
        let incident = normalize::servicenow(
            "k",
            crate::model::ChangeKind::Created,
            "incident",
            &Map::from_iter([
                ("sys_id".into(), Json::from("b".repeat(32))),
                (link_field(System::Servicenow).into(), Json::from("500000000000001AAA")),
            ]),
            None,
        );
        assert_eq!(incident.linked.map(|l| l.id).as_deref(), Some("500000000000001AAA"));
        assert!(
            is_link_field(System::Servicenow, "correlation_id")
                && !is_link_field(System::Servicenow, "short_description")
        );
    }
}
