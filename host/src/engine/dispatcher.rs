//! Runs a tenant's journal through its processor, many records at once and
//! each record's events in order.
//!
//! The journal decides what may run ([`Journal::claim`]): an event waits while
//! an earlier event of its record, or of its linked partner, is pending or in
//! flight. Everything else runs concurrently, up to `concurrency` events, so
//! one slow record does not hold up the others, and writes that are pending
//! together reach the connectors together (and share a batch). A record's
//! updates that wait together are claimed as one event (coalesced): one pack
//! call, one write, one outcome.
//!
//! [`Journal::claim`]: crate::store::Journal::claim

use super::processor::{Processed, Processor};
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How long an idle dispatcher sleeps before looking again (for retries coming
/// due; new events wake it at once).
const IDLE_CHECK: Duration = Duration::from_millis(50);
/// After a scan of the journal came up short (the rest of what is pending waits
/// behind events in flight), new arrivals trigger another scan at most this
/// often; a finished event triggers one at once. Scanning on every arrival in a
/// burst would hold the journal for nothing.
const RESCAN: Duration = Duration::from_millis(10);

pub struct Dispatcher {
    pub processor: Arc<Processor>,
    /// Events in flight at once.
    pub concurrency: usize,
}

impl Dispatcher {
    pub fn new(processor: Arc<Processor>, concurrency: usize) -> Self {
        Dispatcher { processor, concurrency: concurrency.max(1) }
    }

    /// Process until nothing is due and nothing is in flight; what happened to each event, in completion order.
    pub async fn drain(&self) -> Result<Vec<Processed>> {
        self.run(true).await
    }

    /// Process forever.
    pub async fn run_forever(&self) {
        loop {
            if let Err(e) = self.run(false).await {
                tracing::error!(tenant = %self.processor.tenant, "the journal failed: {e:#}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn run(&self, until_idle: bool) -> Result<Vec<Processed>> {
        let p = &self.processor;
        let mut tasks: JoinSet<(i64, Result<Processed>)> = JoinSet::new();
        let mut flight = InFlight::default();
        loop {
            // Events that finished while the last claim was reading the journal (it runs off
            // the workers, so they keep going meanwhile) free their records before the next
            // claim: it then fills every free slot at once, and their writes meet in one batch.
            while let Some(finished) = tasks.try_join_next() {
                let (id, result) = finished?;
                if flight.finish(id, result, until_idle, &p.tenant)? {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            // Claim when there is room for a worthwhile batch: rescanning for one free slot at a time costs more than it gains.
            let free = self.concurrency - tasks.len();
            let held_off = flight.short_at.is_some_and(|t| t.elapsed() < RESCAN);
            if (tasks.is_empty() || free >= (self.concurrency / 4).max(1)) && !held_off {
                let claimed = p.claim(&flight.touched, free).await?;
                flight.short_at = (claimed.len() < free).then(Instant::now);
                for (due, touches, known) in claimed {
                    let id = due.entry.id;
                    flight.touched.extend(touches.iter().cloned());
                    flight.busy.insert(id, touches);
                    let p = p.clone();
                    tasks.spawn(async move { (id, p.process_claimed(due, known).await) });
                }
            }
            if tasks.is_empty() {
                if until_idle {
                    return Ok(flight.done);
                }
                tokio::select! {
                    _ = p.journal.arrivals() => {}
                    _ = tokio::time::sleep(IDLE_CHECK) => {}
                }
                continue;
            }
            let room = tasks.len() < self.concurrency;
            tokio::select! {
                finished = tasks.join_next() => {
                    let Some(finished) = finished else { continue };
                    let (id, result) = finished?;
                    if flight.finish(id, result, until_idle, &p.tenant)? {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                _ = p.journal.arrivals(), if room && !held_off => {}
                _ = tokio::time::sleep(RESCAN), if room && held_off => {}
            }
        }
    }
}

/// The dispatcher's view of the events in flight.
#[derive(Default)]
struct InFlight {
    /// Each event's records.
    busy: HashMap<i64, Vec<String>>,
    /// The records the events in flight touch (disjoint: claim runs nothing that shares one).
    touched: HashSet<String>,
    /// What finished (kept only when running until idle).
    done: Vec<Processed>,
    /// When the last scan came up short, and no event has finished since.
    short_at: Option<Instant>,
}

impl InFlight {
    /// An event's task is done: its records are free. `Ok(true)`: its outcome could not be
    /// recorded, and the dispatcher pauses before claiming again.
    fn finish(&mut self, id: i64, result: Result<Processed>, until_idle: bool, tenant: &str) -> Result<bool> {
        for record in self.busy.remove(&id).into_iter().flatten() {
            self.touched.remove(&record);
        }
        self.short_at = None;
        match result {
            Ok(processed) if until_idle => self.done.push(processed),
            Ok(_) => {}
            Err(e) if until_idle => return Err(e.context(format!("event {id}"))),
            // The event stays pending and is claimed again, after a pause so a broken journal is not hammered.
            Err(e) => {
                tracing::error!(tenant = %tenant, event = id, "recording the outcome failed: {e:#}; trying again in 1 s");
                return Ok(true);
            }
        }
        Ok(false)
    }
}
