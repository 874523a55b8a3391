//! Processes one journaled event (the dispatcher decides which, and keeps
//! each record's events in order):
//!
//! echo filter (shadow) → ownership gate (revert + audit) → mapping pack, then
//! each workflow pack → action check → apply (resumable) → shadow, audit, links
//! and status committed together.
//!
//! Transient failures (a system unavailable, a lookup that could not be
//! made) are retried with backoff; permanent ones (a pack that traps or
//! refuses, a write the system rejects, an action the ownership map forbids)
//! go to the dead-letter queue.

use super::accounting::{account_for, shadows_of};
use super::apply::{ApplyError, Resume, Systems};
use super::echoes;
use super::identity::{self, Refusal};
use super::normalize;
use super::ownership;
use crate::connectors::RetryPolicy;
use crate::model::{latest_fields, Action, Carried, Change, ChangeKind, Field, RecordRef, System, Target, Value};
use crate::packs::manifest::DeletePolicy;
use crate::packs::ActivePack;
use crate::runtime::{PackError, RecordSource};
use crate::store::journal::{AuditRow, Due, Outcome};
use crate::store::{AuditReason, EventStatus, Journal};
use crate::transience::Transience;
use anyhow::Result;
use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What happened to one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Processed {
    /// Nothing new: seam's own write coming back, or a no-op.
    Echo,
    /// Carried across; the number of writes made.
    Synced {
        writes: usize,
        reverted: usize,
    },
    Retry(String),
    DeadLetter(String),
}

/// What a tenant's processor counts. Prometheus counters: `/metrics` reports
/// the same handles (see `admin::metrics`); standalone ones count all the same.
#[derive(Clone, Debug)]
pub struct Counters {
    pub processed: Counter,
    /// Events carried across (at least one write or revert).
    pub synced: Counter,
    pub echoes: Counter,
    pub writes: Counter,
    pub reverts: Counter,
    pub retries: Counter,
    pub dead_letters: Counter,
    /// Times a Pub/Sub subscription could not resume where it stopped (its replay id was
    /// past the retention window) and a catch-up poll covered the gap.
    pub stream_gaps: Counter,
    /// Catch-up polls for a gap that failed; the poll stays owed and is tried again.
    pub catch_up_failures: Counter,
    /// Records that named a partner which did not name them back (see `identity`).
    pub identity_conflicts: Counter,
    /// Seconds per pack call, by tenant and pack.
    pub pack_seconds: PackLatency,
}

/// Pack call latency, labelled by tenant and `name@version`.
pub type PackLatency = Family<PackLabels, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PackLabels {
    pub tenant: String,
    pub pack: String,
}

/// 25 µs to about 3 s: a pack call is tens of microseconds unless it looks records up.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_025, 2.0, 18))
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            processed: Counter::default(),
            synced: Counter::default(),
            echoes: Counter::default(),
            writes: Counter::default(),
            reverts: Counter::default(),
            retries: Counter::default(),
            dead_letters: Counter::default(),
            stream_gaps: Counter::default(),
            catch_up_failures: Counter::default(),
            identity_conflicts: Counter::default(),
            pack_seconds: Family::new_with_constructor(latency_histogram),
        }
    }
}

pub struct Processor {
    pub tenant: String,
    pub journal: Arc<Journal>,
    pub systems: Arc<Systems>,
    /// The tenant's mapping pack, swapped atomically on a hot load; each event keeps the one it started with.
    pub active: Arc<ArcSwap<ActivePack>>,
    /// The tenant's workflow packs, run after the mapping on every change, in this order.
    pub workflows: Workflows,
    pub counters: Counters,
    /// How long, and how often, an event is retried through an outage.
    pub retrying: Retrying,
}

/// A transient failure (a system down, rate-limited, timing out) is retried from the journal
/// with capped exponential backoff and jitter until it has failed for `window`; then the event
/// goes to the dead-letter queue. A waiting event holds nothing up: its record's later events
/// wait behind it, other records and tenants go on.
#[derive(Clone, Debug)]
pub struct Retrying {
    /// From the first failure (24 hours by default).
    pub window: Duration,
    /// The wait before each retry: up to base·2ⁿ, capped at `max` (`attempts` is not used).
    pub backoff: RetryPolicy,
}

impl Default for Retrying {
    fn default() -> Self {
        Retrying::for_hours(24)
    }
}

impl Retrying {
    /// Retries for `hours` from the first failure, at most 10 minutes apart.
    pub fn for_hours(hours: u64) -> Retrying {
        Retrying {
            window: Duration::from_secs(hours * 3600),
            backoff: RetryPolicy { attempts: 0, base: Duration::from_secs(1), max: Duration::from_secs(600) },
        }
    }
}

/// A tenant's workflow packs, swapped as a whole.
pub type Workflows = Arc<ArcSwap<Vec<Arc<ActivePack>>>>;

impl Processor {
    /// Process an event claimed with `engine::dispatcher::claim` (what the journal knows of its record read now).
    pub async fn process_due(&self, due: Due) -> Result<Processed> {
        let (known, due) = self.journal.run(move |j| Ok((Known::read(j, &due)?, due))).await?;
        self.process_claimed(due, known).await
    }

    /// Process an event claimed with `engine::dispatcher::claim_reading` and record the outcome. An
    /// error means the outcome could not be recorded; the event is still pending.
    pub async fn process_claimed(&self, due: Due, known: Known) -> Result<Processed> {
        let (entry, attempts) = (&due.entry, due.attempts);
        let resume = if attempts == 0 { Resume::Start } else { Resume::Retry };
        let pack = self.active.load_full();
        let workflows = self.workflows.load_full();
        let changes: Vec<&Change> =
            std::iter::once(&entry.change).chain(due.merged.iter().map(|e| &e.change)).collect();
        let merged = due.merged_ids();
        // The packs' clock when the change names no commit time: when the latest of them was stored.
        let received_at_ms = due.merged.last().unwrap_or(entry).received_at_ms;
        let outcome = self
            .process(
                &pack,
                &workflows,
                &changes,
                (&entry.event_key, entry.id, received_at_ms),
                resume,
                due.carried.clone(),
                known,
            )
            .await;
        let pack_id = pack.linked.meta().to_string();
        let result = match outcome {
            Ok((processed, out)) => {
                let status = if processed == Processed::Echo { EventStatus::Echo } else { EventStatus::Done };
                self.journal.finish(&self.tenant, entry.id, &merged, &entry.event_key, &pack_id, status, out).await?;
                processed
            }
            Err(Failure::Conflict { why, audit }) => {
                let why = format!("identity conflict: {why}; nothing was written across. If the two records are partners, link them with `seam link`, then re-drive this event");
                self.journal
                    .dead_letter_audited(
                        entry.id,
                        &merged,
                        &why,
                        Some((self.tenant.clone(), entry.event_key.clone(), vec![audit])),
                    )
                    .await?;
                tracing::warn!(tenant = %self.tenant, event = %entry.event_key, "dead-lettered: {why}");
                self.counters.identity_conflicts.inc();
                Processed::DeadLetter(why)
            }
            Err(failure) if failure.is_transient() && self.failing_for(&due) < self.retrying.window => {
                let why = failure.to_string();
                self.journal.retry_later(entry.id, &why, self.retrying.backoff.delay(attempts, None)).await?;
                Processed::Retry(why)
            }
            Err(failure) => {
                let why = if failure.is_transient() {
                    format!(
                        "gave up after {} of failures ({} attempts): {failure}",
                        hours_minutes(self.failing_for(&due)),
                        attempts + 1
                    )
                } else {
                    failure.to_string()
                };
                self.journal.dead_letter(entry.id, &merged, &why).await?;
                tracing::warn!(tenant = %self.tenant, event = %entry.event_key, "dead-lettered: {why}");
                Processed::DeadLetter(why)
            }
        };
        // Events merged into this one count as processed (and as echoes or synced) with it.
        let events = changes.len() as u64;
        let c = &self.counters;
        c.processed.inc_by(events);
        match &result {
            Processed::Echo => c.echoes.inc_by(events),
            Processed::Synced { writes, reverted } => {
                c.synced.inc_by(events);
                c.reverts.inc_by(*reverted as u64);
                c.writes.inc_by(*writes as u64)
            }
            Processed::Retry(_) => c.retries.inc(),
            Processed::DeadLetter(_) => c.dead_letters.inc(),
        };
        Ok(result)
    }

    /// `changes`: one event's change, or a record's pending updates coalesced
    /// (oldest first): each is filtered for echoes and staleness in turn, and
    /// what is news in any of them, at its latest value, is carried across once.
    #[allow(clippy::too_many_arguments)]
    async fn process(
        &self,
        pack: &ActivePack,
        workflows: &[Arc<ActivePack>],
        changes: &[&Change],
        (key, id, received_at_ms): (&str, i64, i64),
        resume: Resume,
        carried: Carried,
        known: Known,
    ) -> Result<(Processed, Outcome), Failure> {
        // Actions an earlier attempt carried out: not an echo, whatever the filter says now.
        let progress = carried.done.len();
        let mut change = (*changes.last().expect("an event has a change")).clone();
        if changes.len() > 1 {
            // The record as its latest notification has it; fields only an earlier one carried, from that one.
            change.snapshot = latest_fields(changes.iter().map(|c| &c.snapshot));
            change.changed = latest_fields(changes.iter().map(|c| &c.changed));
        }
        let source = change.source.clone();
        // The partner is the one seam linked. What the record's link field names is only a
        // claim, taken when the partner names it back (see `identity`); a person's edit of the
        // field is put back by the ownership gate below, and never read.
        // A deleted record's claim is not weighed: it can no longer be read back, and
        // only a link seam made has a partner to unlink.
        let claimed = change.linked.take().filter(|_| change.kind != ChangeKind::Deleted);
        let Known { partner, shadow, partner_shadow, expected } = known;
        change.linked = partner.clone();
        let mut adopted = None;
        if let (None, Some(claimed)) = (&change.linked, claimed) {
            match identity::check_claim(&self.journal, &self.tenant, &self.systems, &source, &claimed).await {
                Ok(()) => {
                    change.linked = Some(claimed.clone());
                    adopted = Some(claimed);
                }
                Err(Refusal::Conflict(why)) => {
                    return Err(Failure::Conflict { audit: identity::conflict_audit(&source, &claimed, &why), why })
                }
                Err(Refusal::Unavailable(why)) => return Err(Failure::ClaimUnchecked(why)),
            }
        }
        // The packs see the change as the first attempt did, so they ask for the same
        // actions (a pack swapped in meanwhile may ask for others: what was done is known
        // by key, not by place); what those actions made (the partner a linked create
        // opened) comes back through `carried`.
        let mut out = Outcome::default();
        if let Some(partner) = &adopted {
            out.links.push(case_and_incident(&source, partner));
        }
        // A Salesforce change event carries only the changed fields; the pack
        // still sees the rest of the record as last synced.
        if change.kind == ChangeKind::Updated {
            let missing: Vec<Field> = shadow
                .iter()
                .filter(|(name, _)| !change.snapshot.iter().any(|f| &f.name == *name))
                .map(|(name, value)| Field { name: name.clone(), value: value.clone() })
                .collect();
            change.snapshot.extend(missing);
        }

        // Echo filter (see `echoes::news`).
        let news = echoes::news(&source, changes, &shadow, &expected, &mut out);
        if news.is_empty() && change.kind != ChangeKind::Deleted && progress == 0 {
            return Ok((Processed::Echo, out));
        }
        out.news = news.iter().map(|f| f.name.clone()).collect();

        // Ownership gate: a person changed a field the other side owns → put it back.
        let (violations, allowed): (Vec<Field>, Vec<Field>) = news
            .into_iter()
            .partition(|f| pack.ownership.owner(source.system, &source.object, &f.name) != source.system);
        let mut reverted = 0;
        let restorable: Map<String, Json> = violations
            .iter()
            .filter_map(|f| shadow.get(&f.name).map(|v| (f.name.clone(), normalize::json(v))))
            .collect();
        if !restorable.is_empty() && progress == 0 {
            let put_back = self.systems.update(source.clone(), &restorable).await?;
            if self.systems.echoes_come_back(source.system) {
                out.expect.extend(put_back.fields.into_iter().map(|f| (source.clone(), f.name, f.value)));
            }
            for f in violations.iter().filter(|f| restorable.contains_key(&f.name)) {
                reverted += 1;
                out.audit.push(AuditRow {
                    record: source.clone(),
                    field: f.name.clone(),
                    old: Some(f.value.clone()),
                    new: shadow[&f.name].clone(),
                    reason: AuditReason::Revert,
                    pack: None,
                });
            }
        }
        // A mirrored field seam has never synced (a new Case's default Status) has
        // nothing to restore: its value becomes the baseline, so it is not news again.
        let baseline = violations.iter().filter(|f| !restorable.contains_key(&f.name));
        for f in allowed.iter().chain(baseline) {
            out.shadow.push((source.clone(), f.name.clone(), f.value.clone()));
        }
        let displays: Vec<Field> = change
            .changed
            .iter()
            .filter(|d| d.name.strip_suffix(".display").is_some_and(|raw| allowed.iter().any(|f| f.name == raw)))
            .cloned()
            .collect();
        change.changed = allowed.into_iter().chain(displays).collect();
        if change.changed.iter().all(|f| f.name.ends_with(".display")) && change.kind != ChangeKind::Deleted {
            return Ok((Processed::Synced { writes: reverted, reverted }, out));
        }

        // The mapping pack, then each workflow, all on the same change. Their
        // actions run as one list, so a workflow's `{{linked.url}}` can name the
        // record the mapping opens. `by[i]` is the pack behind action i (None: the mapping).
        let records: Arc<dyn RecordSource> = self.systems.clone();
        // Every pack sees the same time for this change, whenever it runs (see `runtime::determinism`).
        let at_ms = change.committed_at_ms().unwrap_or(received_at_ms);
        let mut actions = Vec::new();
        let mut by: Vec<Option<String>> = Vec::new();
        for (n, p) in std::iter::once(pack).chain(workflows.iter().map(|w| w.as_ref())).enumerate() {
            let started = std::time::Instant::now();
            let ran = p.linked.run_at(&change, at_ms, records.clone()).await;
            let labels = PackLabels { tenant: self.tenant.clone(), pack: p.manifest.id() };
            self.counters.pack_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            let asked = ran?;
            // The tenant's ownership map (the mapping's) binds every pack.
            check(&pack.ownership, p, &change, &asked).map_err(Failure::Forbidden)?;
            let label = (n > 0).then(|| p.manifest.id());
            by.extend(std::iter::repeat_n(label, asked.len()));
            actions.extend(asked);
        }

        // A deleted record's partner: the packs have mapped the delete (a note, or closing
        // it); the mapping pack's delete policy says what becomes of the partner, and the
        // link goes either way. The host's own actions run last, under the same keys.
        let mut unlinked = None;
        if change.kind == ChangeKind::Deleted {
            if let Some(partner) = change.linked.clone() {
                let policy = pack.manifest.deletes.clone().unwrap_or_default().policy(source.system);
                let updates_partner =
                    actions.iter().any(|a| matches!(a, Action::Update { target: Target::Linked, .. }));
                if policy == DeletePolicy::Close && !updates_partner {
                    return Err(Failure::Forbidden(format!(
                        "{source} was deleted and pack {}'s delete policy for {} is close, but the packs asked for no update of {partner}; \
                         map the delete to the update that closes it, or set \"deletes\" to unlink",
                        pack.manifest.id(),
                        source.system
                    )));
                }
                actions.push(match policy {
                    DeletePolicy::Delete => Action::Delete { target: Target::Linked },
                    DeletePolicy::Unlink | DeletePolicy::Close => {
                        Action::Update { target: Target::Linked, fields: identity::cleared_link(partner.system) }
                    }
                });
                by.push(None);
                unlinked = Some((partner, policy));
            }
        }

        // Carry it across. After each action its progress is recorded in one
        // transaction with what its writes leave (audit, shadow, echoes to
        // expect): an attempt cut short by a crash must not leave the next one
        // blind to its own writes, or their echoes would read as people's edits.
        // The last action, when it is an update, is recorded with the event's
        // outcome instead: one transaction (and one disk sync) fewer, and after a
        // crash in between, an update is safe to repeat.
        let pack_id = pack.linked.meta().to_string();
        let last_is_update = matches!(actions.last(), Some(Action::Update { .. }));
        let last_step = std::sync::Mutex::new(Outcome::default());
        // Each write's "before" comes from the shadows as committed: the source's and its
        // partner's read above, brought up to date with what each step commits; a record
        // first written now (a Task, the partner a create opened) is read when it is.
        let committed: std::sync::Mutex<HashMap<RecordRef, HashMap<String, Value>>> = std::sync::Mutex::new(
            HashMap::from_iter([(source.clone(), shadow)].into_iter().chain(partner.zip(partner_shadow))),
        );
        let (journal, tenant, systems, by, pack_id, last_step_slot, committed, count) =
            (&self.journal, &self.tenant, &self.systems, &by, &pack_id, &last_step, &committed, actions.len());
        let applied = self
            .systems
            .apply_resuming(key, &change, &actions, resume, carried, move |n, carried, writes| {
                Box::pin(async move {
                    let unread: Vec<RecordRef> = {
                        let known = committed.lock().unwrap();
                        let mut unread: Vec<RecordRef> =
                            writes.iter().map(|w| w.record.clone()).filter(|r| !known.contains_key(r)).collect();
                        unread.dedup();
                        unread
                    };
                    let read = shadows_of(journal, tenant, unread.clone()).await?;
                    let step = {
                        let mut known = committed.lock().unwrap();
                        known.extend(unread.into_iter().zip(read));
                        let mut step = Outcome::default();
                        for w in &writes {
                            let pack = by.get(w.action).cloned().flatten();
                            let reason = if pack.is_some() { AuditReason::Workflow } else { AuditReason::Sync };
                            account_for(
                                w,
                                known.get(&w.record),
                                pack,
                                reason,
                                systems.echoes_come_back(w.record.system),
                                &mut step,
                            );
                        }
                        for (record, field, value) in &step.shadow {
                            known.entry(record.clone()).or_default().insert(field.clone(), value.clone());
                        }
                        step
                    };
                    if n == count && last_is_update {
                        *last_step_slot.lock().unwrap() = step;
                        return Ok(());
                    }
                    journal.set_progress(tenant, id, key, pack_id, &carried, step).await
                })
            })
            .await?;
        let last_step = last_step.into_inner().unwrap();
        out.audit.extend(last_step.audit);
        out.shadow.extend(last_step.shadow);
        out.expect.extend(last_step.expect);
        let writes = applied.writes;
        match unlinked {
            Some((partner, policy)) => {
                out.audit.push(AuditRow {
                    record: partner.clone(),
                    field: identity::link_field(partner.system).to_string(),
                    old: Some(Value::Text(source.id.clone())),
                    new: Value::Null,
                    reason: AuditReason::PartnerOfDeleted {
                        source: source.clone(),
                        deleted_with_it: policy == DeletePolicy::Delete,
                        policy: policy.name(),
                    },
                    pack: None,
                });
                out.unlinks.push(case_and_incident(&source, &partner));
            }
            None => {
                if let Some(partner) =
                    applied.linked.as_ref().filter(|p| p.system != System::Slack && p.system != source.system)
                {
                    out.links.push(case_and_incident(&source, partner));
                }
            }
        }
        tracing::info!(tenant = %self.tenant, event = key, writes = writes.len(), "synced {}", source);
        Ok((Processed::Synced { writes: writes.len() + reverted, reverted }, out))
    }

    /// How long `due` has been failing (nothing before its first failure).
    fn failing_for(&self, due: &Due) -> Duration {
        let now = self.journal.clock.now_ms();
        Duration::from_millis(due.failing_since_ms.map_or(0, |since| (now - since).max(0) as u64))
    }
}

/// What the journal knows of an event's record when it is claimed: its partner (the one
/// seam linked), its shadow and its partner's, and the echoes of seam's writes to expect.
/// No other event of the record or its partner runs until this one finishes, so it holds.
pub struct Known {
    partner: Option<RecordRef>,
    shadow: HashMap<String, Value>,
    partner_shadow: Option<HashMap<String, Value>>,
    expected: Vec<(i64, String, Value)>,
}

impl Known {
    pub(crate) fn read(journal: &Journal, due: &Due) -> Result<Known> {
        let (tenant, record) = (&due.entry.tenant, &due.entry.change.source);
        let partner = journal.link_of(tenant, record)?.map(|id| partner_of(record, id));
        let partner_shadow = partner.as_ref().map(|p| journal.shadow(tenant, p)).transpose()?;
        Ok(Known {
            partner,
            shadow: journal.shadow(tenant, record)?,
            partner_shadow,
            expected: journal.expected_echoes(tenant, record)?,
        })
    }
}

/// The record the journal's link names as `source`'s partner.
fn partner_of(source: &RecordRef, id: String) -> RecordRef {
    match source.system {
        System::Salesforce => RecordRef { system: System::Servicenow, object: "incident".into(), id },
        _ => RecordRef { system: System::Salesforce, object: "Case".into(), id },
    }
}

/// `1h 05m`, `0h 30m`: a retry window as the dead-letter message gives it.
fn hours_minutes(d: Duration) -> String {
    let minutes = d.as_secs() / 60;
    format!("{}h {:02}m", minutes / 60, minutes % 60)
}

/// A link as the journal keeps it: (Case id, incident sys_id).
fn case_and_incident(source: &RecordRef, partner: &RecordRef) -> (String, String) {
    match source.system {
        System::Salesforce => (source.id.clone(), partner.id.clone()),
        _ => (partner.id.clone(), source.id.clone()),
    }
}

/// A pack may only write, on a linked record, fields the target system does not own.
fn check(
    ownership: &ownership::Ownership,
    pack: &ActivePack,
    change: &Change,
    actions: &[Action],
) -> std::result::Result<(), String> {
    for action in actions {
        let (system, object, fields) = match action {
            Action::Update { target: Target::Linked, fields } => match &change.linked {
                Some(l) => (l.system, l.object.as_str(), fields),
                None => continue,
            },
            Action::Create { system, object, fields, link_to_source: true } => (*system, object.as_str(), fields),
            _ => continue,
        };
        if let Some(f) = fields.iter().find(|f| identity::is_link_field(system, &f.name)) {
            return Err(format!("pack {} tried to write {system} {object}.{}, the link field; links are seam's alone (its linked creates, and `seam link`)", pack.linked.meta(), f.name));
        }
        if let Some(f) = fields.iter().find(|f| ownership.owner(system, object, &f.name) == system) {
            return Err(format!(
                "pack {} tried to write {system} {object}.{}, which {system} owns; a pack may only write mirrored fields",
                pack.linked.meta(),
                f.name
            ));
        }
    }
    Ok(())
}

/// Why an event was not carried across, with the error kept whole: whether it is
/// retried or dead-lettered is the error's own answer ([`Transience`]).
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// A write, or putting a field back, failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A pack trapped, refused, ran past its limits, or could not read a record.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The packs asked for what the ownership map or the delete policy forbids.
    #[error("{0}")]
    Forbidden(String),
    /// The record names a partner that could not be read to check the claim.
    #[error("{0}")]
    ClaimUnchecked(String),
    /// The record names a partner that does not name it back: nothing is written, and the refusal is audited.
    #[error("{why}")]
    Conflict { why: String, audit: AuditRow },
}

impl Transience for Failure {
    fn is_transient(&self) -> bool {
        match self {
            Failure::Apply(e) => e.is_transient(),
            Failure::Pack(e) => e.is_transient(),
            Failure::ClaimUnchecked(_) => true,
            Failure::Forbidden(_) | Failure::Conflict { .. } => false,
        }
    }
}
