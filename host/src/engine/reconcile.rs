//! Reconciliation: compare every linked Case ⇄ Incident pair as the systems
//! hold them now, and repair drift by the ownership rules. A mirrored field
//! should hold what the tenant's mapping pack makes of its owner's record;
//! where it does not (a lost notification, a write made while seam was
//! down, an edit no notification announced), the owner's value is written
//! to the mirror and audited as `reconcile`. Pairs with events still
//! waiting are skipped: their drift is being carried across as we speak.

use super::accounting::account_for;
use super::apply::Systems;
use super::normalize;
use crate::connectors::salesforce::soql;
use crate::connectors::servicenow::Query;
use crate::model::{Action, ChangeKind, Field, RecordRef, System, Target, Value};
use crate::packs::ActivePack;
use crate::runtime::RecordSource;
use crate::store::journal::Outcome;
use crate::store::views::ReconcileTarget;
use crate::store::{AuditReason, Journal};
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
    /// Found in sync, `unchanged` included.
    pub in_sync: usize,
    /// In sync at the last check, and neither record changed since (the same SystemModstamp
    /// and sys_updated_on): not mapped or compared again.
    pub unchanged: usize,
    pub drifted: usize,
    /// Pairs with events still waiting: left to the engine.
    pub skipped: usize,
    pub drifts: Vec<Drift>,
    /// (Case id, what went wrong) for pairs that could not be checked.
    pub failed: Vec<(String, String)>,
}

/// Pairs read per batch: one SOQL query (`FIELDS(ALL)` allows 200 rows) and one Table API
/// query each, so a pass costs two API calls per 200 pairs.
const BATCH: usize = 200;

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
        let tenant = self.tenant.clone();
        let targets = self.journal.run(move |j| j.reconcile_targets(&tenant)).await?;
        let total = targets.len();
        let mut report = Report { pairs: total, ..Report::default() };
        let pack = self.mapping.load_full();
        let mut done = 0;
        let (waiting, ready): (Vec<_>, Vec<_>) = targets.into_iter().partition(|t| t.waiting);
        for _ in &waiting {
            report.skipped += 1;
            done += 1;
            progress(done, total);
        }
        for batch in ready.chunks(BATCH) {
            let (cases, incidents) = match self.read_batch(batch).await {
                Ok(read) => read,
                Err(e) => {
                    let why = format!("{e:#}");
                    report.failed.extend(batch.iter().map(|t| (t.case_id.clone(), why.clone())));
                    done += batch.len();
                    progress(done, total);
                    continue;
                }
            };
            let mut in_sync_now = Vec::new();
            for t in batch {
                let checked = match (cases.get(&t.case_id), incidents.get(&t.incident_id)) {
                    (Some(case), Some(incident)) => {
                        let stamps = (
                            normalize::text_field(case, "SystemModstamp"),
                            normalize::text_field(incident, "sys_updated_on"),
                        );
                        if t.stamps.as_ref() == Some(&stamps) {
                            report.in_sync += 1;
                            report.unchanged += 1;
                            Ok(None)
                        } else {
                            self.pair(&pack, t, case, incident, repair).await.map(|drifts| Some((drifts, stamps)))
                        }
                    }
                    (None, _) => Err(anyhow::anyhow!(
                        "Case {} is not there (deleted, or the integration user cannot see it)",
                        t.case_id
                    )),
                    (_, None) => Err(anyhow::anyhow!(
                        "incident {} is not there (deleted, or the integration user cannot see it)",
                        t.incident_id
                    )),
                };
                match checked {
                    Ok(None) => {}
                    Ok(Some((drifts, (case_stamp, incident_stamp)))) if drifts.is_empty() => {
                        report.in_sync += 1;
                        in_sync_now.push((t.case_id.clone(), case_stamp, incident_stamp));
                    }
                    Ok(Some((drifts, _))) => {
                        report.drifted += 1;
                        report.drifts.extend(drifts);
                    }
                    Err(e) => report.failed.push((t.case_id.clone(), format!("{e:#}"))),
                }
                done += 1;
                progress(done, total);
            }
            self.journal.set_reconciled(&self.tenant, in_sync_now).await?;
        }
        Ok(report)
    }

    /// A batch's Cases and incidents, each by its id, in one call per system.
    async fn read_batch(
        &self,
        batch: &[ReconcileTarget],
    ) -> Result<(HashMap<String, Map<String, Json>>, HashMap<String, Map<String, Json>>)> {
        let case_ids: Vec<String> = batch.iter().map(|t| soql::literal(&t.case_id)).collect();
        let soql = format!("SELECT FIELDS(ALL) FROM Case WHERE Id IN ({}) LIMIT {BATCH}", case_ids.join(", "));
        let cases = self.systems.salesforce.query(&soql).await.context("reading a batch of Cases")?;
        let incident_ids: Vec<&str> = batch.iter().map(|t| t.incident_id.as_str()).collect();
        let incidents = self
            .systems
            .servicenow
            .query_with_display("incident", &Query::new().one_of("sys_id", &incident_ids)?, BATCH)
            .await
            .context("reading a batch of incidents")?;
        let cases = cases.into_iter().map(|mut c| {
            c.remove("attributes");
            (normalize::text_field(&c, "Id"), c)
        });
        let incidents = incidents.into_iter().map(|i| (normalize::text_field(&i, "sys_id"), i));
        Ok((cases.collect(), incidents.collect()))
    }

    async fn pair(
        &self,
        pack: &ActivePack,
        target: &ReconcileTarget,
        case: &Map<String, Json>,
        incident: &Map<String, Json>,
        repair: bool,
    ) -> Result<Vec<Drift>> {
        let case_ref = RecordRef { system: System::Salesforce, object: "Case".into(), id: target.case_id.clone() };
        let incident_ref =
            RecordRef { system: System::Servicenow, object: "incident".into(), id: target.incident_id.clone() };
        // Each record as if every field had just changed: what the pack makes of it is what its partner should hold.
        let mut case_change = normalize::salesforce("reconcile", ChangeKind::Updated, "Case", case, None);
        case_change.linked = Some(incident_ref.clone());
        let mut incident_change = normalize::servicenow("reconcile", ChangeKind::Updated, "incident", incident, None);
        incident_change.linked = Some(case_ref.clone());
        // Both sides in one call to the pack.
        let records: Arc<dyn RecordSource> = self.systems.clone();
        let answers = pack
            .linked
            .run_batch([&case_change, &incident_change], records)
            .await
            .with_context(|| format!("running {} on {case_ref} and {incident_ref}", pack.manifest.id()))?;
        let mut drifts = Vec::new();
        for ((owner_change, mirror, mirror_fields), answer) in [
            (&case_change, &incident_ref, &incident_change.snapshot),
            (&incident_change, &case_ref, &case_change.snapshot),
        ]
        .into_iter()
        .zip(answers)
        {
            let actions =
                answer.with_context(|| format!("running {} on {}", pack.manifest.id(), owner_change.source))?;
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
                        drifts.push(Drift {
                            record: mirror.clone(),
                            field: f.name.clone(),
                            found: found.cloned(),
                            expected: f.value.clone(),
                            owner,
                            repaired: false,
                        });
                        wrong.push(f.clone());
                    }
                }
            }
            if repair && !wrong.is_empty() {
                let found: HashMap<String, Value> = drifts
                    .iter()
                    .filter(|d| &d.record == mirror)
                    .map(|d| (d.field.clone(), d.found.clone().unwrap_or(Value::Null)))
                    .collect();
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
    async fn repair(
        &self,
        pack: &ActivePack,
        mirror: &RecordRef,
        fields: &[Field],
        found: &HashMap<String, Value>,
    ) -> Result<()> {
        let body: Map<String, Json> = fields.iter().map(|f| (f.name.clone(), normalize::json(&f.value))).collect();
        let write = self.systems.update(mirror.clone(), &body).await.with_context(|| format!("repairing {mirror}"))?;
        let mut out = Outcome::default();
        account_for(
            &write,
            Some(found),
            None,
            AuditReason::Reconcile,
            self.systems.echoes_come_back(write.record.system),
            &mut out,
        );
        let key = format!("reconcile:{}", chrono::Utc::now().timestamp_millis());
        self.journal.record_outcome(&self.tenant, &key, &pack.manifest.id(), out).await?;
        tracing::info!(tenant = %self.tenant, record = %mirror, fields = ?fields.iter().map(|f| &f.name).collect::<Vec<_>>(), "reconcile repaired drift");
        Ok(())
    }
}
