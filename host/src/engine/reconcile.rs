//! Reconciliation: compare every linked Case ⇄ Incident pair as the systems
//! hold them now, and repair drift by the ownership rules. A mirrored field
//! should hold what the tenant's mapping pack makes of its owner's record;
//! where it does not (a lost notification, a write made while seam was
//! down, an edit no notification announced), the owner's value is written
//! to the mirror and audited as `reconcile`. Pairs with events still
//! waiting are skipped: their drift is being carried across as we speak.

use super::apply::Systems;
use super::normalize;
use super::processor::account_for;
use crate::model::{Action, ChangeKind, Field, RecordRef, System, Target, Value};
use crate::packs::ActivePack;
use crate::runtime::RecordSource;
use crate::store::journal::Outcome;
use crate::store::Journal;
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Reconciler {
    pub tenant: String,
    pub journal: Arc<Journal>,
    pub systems: Arc<Systems>,
    pub mapping: Arc<ArcSwap<ActivePack>>,
}

/// One mirrored field that did not hold what its owner says.
#[derive(Clone, Debug, Serialize)]
pub struct Drift {
    pub record: RecordRef,
    pub field: String,
    pub found: Option<Value>,
    pub expected: Value,
    /// The system whose record the expected value comes from.
    pub owner: System,
    pub repaired: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub pairs: usize,
    pub in_sync: usize,
    pub drifted: usize,
    /// Pairs with events still waiting: left to the engine.
    pub skipped: usize,
    pub drifts: Vec<Drift>,
    /// (Case id, what went wrong) for pairs that could not be checked.
    pub failed: Vec<(String, String)>,
}

/// Equal as the systems mean it: a missing value, null and "" are the same; 1 and "1" are the same.
fn same(found: Option<&Value>, expected: &Value) -> bool {
    fn text(v: Option<&Value>) -> String {
        match v {
            None | Some(Value::Null) => String::new(),
            Some(Value::Text(s)) => s.trim().to_string(),
            Some(Value::Number(n)) if n.fract() == 0.0 => format!("{}", *n as i64),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
        }
    }
    text(found) == text(Some(expected))
}

impl Reconciler {
    /// Check every link; with `repair`, write the owner's values where they drifted.
    /// `progress(done, total)` is called after each pair.
    pub async fn run(&self, repair: bool, progress: impl Fn(usize, usize)) -> Result<Report> {
        let states = self.journal.link_states(&self.tenant, usize::MAX >> 1)?;
        let mut report = Report { pairs: states.len(), ..Report::default() };
        let pack = self.mapping.load_full();
        for (n, link) in states.iter().enumerate() {
            if link.pending > 0 {
                report.skipped += 1;
            } else {
                match self.pair(&pack, &link.case_id, &link.incident_id, repair).await {
                    Ok(drifts) if drifts.is_empty() => report.in_sync += 1,
                    Ok(drifts) => {
                        report.drifted += 1;
                        report.drifts.extend(drifts);
                    }
                    Err(e) => report.failed.push((link.case_id.clone(), format!("{e:#}"))),
                }
            }
            progress(n + 1, states.len());
        }
        Ok(report)
    }

    async fn pair(&self, pack: &ActivePack, case_id: &str, incident_id: &str, repair: bool) -> Result<Vec<Drift>> {
        let case_ref = RecordRef { system: System::Salesforce, object: "Case".into(), id: case_id.into() };
        let incident_ref = RecordRef { system: System::Servicenow, object: "incident".into(), id: incident_id.into() };
        let case = self.systems.salesforce.get("Case", case_id).await.with_context(|| format!("reading {case_ref}"))?;
        let incident = self.systems.servicenow.get("incident", incident_id).await.with_context(|| format!("reading {incident_ref}"))?;
        // Each record as if every field had just changed: what the pack makes of it is what its partner should hold.
        let mut case_change = normalize::salesforce("reconcile", ChangeKind::Updated, "Case", &case, None);
        case_change.linked = Some(incident_ref.clone());
        let mut incident_change = normalize::servicenow("reconcile", ChangeKind::Updated, "incident", &incident, None);
        incident_change.linked = Some(case_ref.clone());

        // Both sides in one call to the pack.
        let records: Arc<dyn RecordSource> = self.systems.clone();
        let answers = pack.plugin.run_batch([&case_change, &incident_change], records).await.with_context(|| format!("running {} on {case_ref} and {incident_ref}", pack.manifest.id()))?;
        let mut drifts = Vec::new();
        for ((owner_change, mirror, mirror_fields), answer) in [(&case_change, &incident_ref, &incident_change.snapshot), (&incident_change, &case_ref, &case_change.snapshot)].into_iter().zip(answers) {
            let actions = answer.with_context(|| format!("running {} on {}", pack.manifest.id(), owner_change.source))?;
            let owner = owner_change.source.system;
            let mut wrong: Vec<Field> = Vec::new();
            for action in &actions {
                // Only state: journal entries, creates and Slack posts are events, not drift.
                let Action::Update { target: Target::Linked, fields } = action else { continue };
                for f in fields {
                    // Only what the owner owns: the mirror's own fields are its to change.
                    if pack.ownership.owner(mirror.system, &mirror.object, &f.name) != owner {
                        continue;
                    }
                    let found = mirror_fields.iter().find(|m| m.name == f.name).map(|m| &m.value);
                    if !same(found, &f.value) && !wrong.iter().any(|w| w.name == f.name) {
                        drifts.push(Drift { record: mirror.clone(), field: f.name.clone(), found: found.cloned(), expected: f.value.clone(), owner, repaired: false });
                        wrong.push(f.clone());
                    }
                }
            }
            if repair && !wrong.is_empty() {
                let found: HashMap<String, Value> = drifts.iter().filter(|d| &d.record == mirror).map(|d| (d.field.clone(), d.found.clone().unwrap_or(Value::Null))).collect();
                self.repair(pack, mirror, &wrong, &found).await?;
                for d in drifts.iter_mut().filter(|d| &d.record == mirror) {
                    d.repaired = true;
                }
            }
        }
        Ok(drifts)
    }

    /// Write the owner's values to the mirror and account for it like any sync.
    /// `found`: what the mirror held, so the audit shows the drift undone.
    async fn repair(&self, pack: &ActivePack, mirror: &RecordRef, fields: &[Field], found: &HashMap<String, Value>) -> Result<()> {
        let body: Map<String, Json> = fields.iter().map(|f| (f.name.clone(), normalize::json(&f.value))).collect();
        let write = self.systems.update(mirror.clone(), &body).await.with_context(|| format!("repairing {mirror}"))?;
        let mut out = Outcome::default();
        account_for(&write, Some(found), None, "reconcile: drift repaired from the owner", self.systems.echoes_come_back(write.record.system), &mut out);
        let key = format!("reconcile:{}", chrono::Utc::now().timestamp_millis());
        self.journal.record_outcome(&self.tenant, &key, &pack.manifest.id(), &out)?;
        tracing::info!(tenant = %self.tenant, record = %mirror, fields = ?fields.iter().map(|f| &f.name).collect::<Vec<_>>(), "reconcile repaired drift");
        Ok(())
    }
}
