//! Prometheus `/metrics` (OpenMetrics text). Processors count into the
//! families here as they go; what the journal and the registry know (events
//! received, backlog and its age, dead letters waiting, packs loaded) is read
//! at scrape time, so it is right after a restart too.

use crate::engine::processor::{latency_histogram, Counters, PackLatency};
use crate::packs::Registry as Packs;
use crate::store::Journal;
use anyhow::Result;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub tenant: String,
    pub system: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PackSlotLabels {
    pub tenant: String,
    /// `mapping`, or the workflow's name.
    pub slot: String,
    pub pack: String,
    pub sha256: String,
}

pub struct Metrics {
    registry: Registry,
    received: Family<SourceLabels, Counter>,
    processed: Family<TenantLabel, Counter>,
    synced: Family<TenantLabel, Counter>,
    echoes: Family<TenantLabel, Counter>,
    writes: Family<TenantLabel, Counter>,
    reverts: Family<TenantLabel, Counter>,
    retries: Family<TenantLabel, Counter>,
    dead_lettered: Family<TenantLabel, Counter>,
    stream_gaps: Family<TenantLabel, Counter>,
    catch_up_failures: Family<TenantLabel, Counter>,
    identity_conflicts: Family<TenantLabel, Counter>,
    pack_seconds: PackLatency,
    /// Backlog alerts sent (see `engine::alerts`).
    pub alerts: Family<TenantLabel, Counter>,
    backlog: Family<TenantLabel, Gauge>,
    backlog_age: Family<TenantLabel, Gauge<f64, AtomicU64>>,
    dead_letters: Family<TenantLabel, Gauge>,
    packs: Family<PackSlotLabels, Gauge>,
    /// Journal calls made on a tokio worker thread (see `store::blocking`); zero when all is well.
    journal_on_workers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("seam");
        let m = Metrics {
            received: Family::default(),
            processed: Family::default(),
            synced: Family::default(),
            echoes: Family::default(),
            writes: Family::default(),
            reverts: Family::default(),
            retries: Family::default(),
            dead_lettered: Family::default(),
            stream_gaps: Family::default(),
            catch_up_failures: Family::default(),
            identity_conflicts: Family::default(),
            pack_seconds: Family::new_with_constructor(latency_histogram),
            alerts: Family::default(),
            backlog: Family::default(),
            backlog_age: Family::default(),
            dead_letters: Family::default(),
            packs: Family::default(),
            journal_on_workers: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_received",
            "Events journaled from notifications and catch-up polls, by source system",
            m.received.clone(),
        );
        registry.register("events_processed", "Events the engine finished with (any outcome)", m.processed.clone());
        registry.register("events_synced", "Events carried across to the other system", m.synced.clone());
        registry.register(
            "echoes_suppressed",
            "Events that were seam's own writes coming back, or changed nothing",
            m.echoes.clone(),
        );
        registry.register(
            "writes",
            "Writes made in the systems (updates, creates, journal entries, Slack posts, reverts)",
            m.writes.clone(),
        );
        registry.register("violations_reverted", "Edits of a field the other system owns, put back", m.reverts.clone());
        registry.register("retries", "Transient failures scheduled for another attempt", m.retries.clone());
        registry.register("events_dead_lettered", "Events sent to the dead-letter queue", m.dead_lettered.clone());
        registry.register("pubsub_gaps", "Pub/Sub subscriptions that could not resume where they stopped (replay id past retention): a catch-up poll covered the gap", m.stream_gaps.clone());
        registry.register(
            "pubsub_catch_up_failures",
            "Catch-up polls for a Pub/Sub gap that failed: each stays owed, and is tried again with backoff",
            m.catch_up_failures.clone(),
        );
        registry.register("identity_conflicts", "Records that named a partner which did not name them back: dead-lettered with nothing written across (see `seam link`)", m.identity_conflicts.clone());
        registry.register_with_unit(
            "pack_call",
            "Time of one pack call (instantiate + run), by pack",
            prometheus_client::registry::Unit::Seconds,
            m.pack_seconds.clone(),
        );
        registry.register("backlog_alerts", "Backlog or dead-letter alerts sent to people", m.alerts.clone());
        registry.register("backlog_events", "Events waiting to be processed", m.backlog.clone());
        registry.register_with_unit(
            "backlog_age",
            "How long the oldest waiting event has waited",
            prometheus_client::registry::Unit::Seconds,
            m.backlog_age.clone(),
        );
        registry.register("dead_letters", "Events in the dead-letter queue now", m.dead_letters.clone());
        registry.register("pack_info", "The packs each tenant runs (1 per active pack)", m.packs.clone());
        registry.register("journal_calls_on_workers", "Journal (SQLite) calls made on a tokio worker thread, where they hold up other tasks; anything above zero is a defect to report", m.journal_on_workers.clone());
        Metrics { registry, ..m }
    }

    /// A tenant's processor counters, reported here.
    pub fn counters(&self, tenant: &str) -> Counters {
        let t = TenantLabel { tenant: tenant.to_string() };
        Counters {
            processed: self.processed.get_or_create_owned(&t),
            synced: self.synced.get_or_create_owned(&t),
            echoes: self.echoes.get_or_create_owned(&t),
            writes: self.writes.get_or_create_owned(&t),
            reverts: self.reverts.get_or_create_owned(&t),
            retries: self.retries.get_or_create_owned(&t),
            dead_letters: self.dead_lettered.get_or_create_owned(&t),
            stream_gaps: self.stream_gaps.get_or_create_owned(&t),
            catch_up_failures: self.catch_up_failures.get_or_create_owned(&t),
            identity_conflicts: self.identity_conflicts.get_or_create_owned(&t),
            pack_seconds: self.pack_seconds.clone(),
        }
    }

    /// Bring the journal- and registry-derived figures up to date, then encode everything.
    pub fn render(&self, journal: &Journal, packs: &Packs) -> Result<String> {
        self.packs.clear();
        for t in packs.list()? {
            let label = TenantLabel { tenant: t.tenant.clone() };
            // The journal keeps every event, so its count only grows: the counter follows it.
            for (system, total) in journal.received_by_system(&t.tenant)? {
                let counter = self.received.get_or_create(&SourceLabels { tenant: t.tenant.clone(), system });
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            let backlog = journal.backlog(&t.tenant)?;
            self.backlog.get_or_create(&label).set(backlog.pending as i64);
            self.backlog_age.get_or_create(&label).set(backlog.oldest_age_ms.unwrap_or(0) as f64 / 1000.0);
            self.dead_letters.get_or_create(&label).set(backlog.dead as i64);
            let slots = std::iter::once(("mapping".to_string(), t.active.clone(), t.hash.clone()))
                .chain(t.workflows.iter().map(|w| (w.name.clone(), w.id.clone(), w.hash.clone())));
            for (slot, pack, sha256) in slots {
                self.packs.get_or_create(&PackSlotLabels { tenant: t.tenant.clone(), slot, pack, sha256 }).set(1);
            }
        }
        self.journal_on_workers.inc_by(journal.calls_on_workers().saturating_sub(self.journal_on_workers.get()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
