//! Runs a tenant's journal through its processor, many records at once and
//! each record's events in order.
//!
//! [`claim`] decides what may run: an event waits while an earlier event of
//! its record, or of its linked partner, is pending or in flight. Everything
//! else runs concurrently, up to `concurrency` events, so one slow record does
//! not hold up the others, and writes that are pending together reach the
//! connectors together (and share a batch). A record's updates that wait
//! together are claimed as one event (coalesced): one pack call, one write,
//! one outcome. The journal only reads and stores; these decisions are made here.

use super::processor::{Known, Processed, Processor};
use crate::store::journal::{Due, Pending, Scan};
use crate::store::Journal;
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Most events one claim folds into one (a record's pending updates).
const MAX_MERGED: usize = 63;

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
                let claimed = claim_reading(&p.journal, &p.tenant, &flight.touched, free, Known::read).await?;
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

/// Claim up to `limit` events that may run now, oldest first.
///
/// Per-record order: an event runs only when no earlier pending event and
/// nothing in `busy` (the records events in flight touch) shares a record
/// with it. An event touches its own record and its partner (named in the
/// change, or in the link table), so a Case's events and its incident's
/// events, seam's own echoes included, never overtake each other (but for
/// coalescing).
///
/// Coalescing: the record's later pending updates fold into a claimed
/// update (`Due::merged`, at most 63), passing events of its partner but
/// not of its own record. The group is recorded (`merged_into`) with the
/// attempt, and a retry claims the same group again.
/// Returns each event with the records it touches.
pub async fn claim(
    journal: &Arc<Journal>,
    tenant: &str,
    busy: &HashSet<String>,
    limit: usize,
) -> Result<Vec<(Due, Vec<String>)>> {
    Ok(claim_reading(journal, tenant, busy, limit, |_, _| Ok(()))
        .await?
        .into_iter()
        .map(|(due, touches, ())| (due, touches))
        .collect())
}

/// [`claim`], and for each event claimed what `read` finds in the journal, in the same
/// trip off the tokio workers (the processor's view of the event's records: they are the
/// event's alone until it finishes, so it holds until then).
pub async fn claim_reading<K: Send + 'static>(
    journal: &Arc<Journal>,
    tenant: &str,
    busy: &HashSet<String>,
    limit: usize,
    read: impl Fn(&Journal, &Due) -> Result<K> + Send + 'static,
) -> Result<Vec<(Due, Vec<String>, K)>> {
    let (tenant, busy) = (tenant.to_string(), busy.clone());
    let claimed = journal
        .run(move |j| {
            choose(j, &tenant, &busy, limit)?
                .into_iter()
                .map(|c| {
                    let due = j.load_due(c.id, &c.merged)?;
                    let known = read(j, &due)?;
                    Ok((due, c.touches, known))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
    journal.count_attempts(claimed.iter().map(|(due, ..)| (due.entry.id, due.merged_ids())).collect()).await?;
    Ok(claimed)
}

/// One claimed event, and what it folds in, while the scan is building it.
struct Claimed {
    id: i64,
    touches: Vec<String>,
    /// Fresh updates may join (not when a retry resumes it: its group is fixed).
    takes_fresh: bool,
    merged: Vec<i64>,
}

/// The events [`claim`] takes, from one scan of the pending ones. The scan reads the last
/// commit: every finished event's outcome is in it (an event leaves `busy` only once its
/// outcome is committed).
fn choose(journal: &Journal, tenant: &str, busy: &HashSet<String>, limit: usize) -> Result<Vec<Claimed>> {
    let now = journal.clock.now_ms();
    // Records an earlier pending event of the scan touches: with `busy`, what holds an event back.
    let mut blocked: HashSet<String> = HashSet::new();
    let mut chosen: Vec<Claimed> = Vec::new();
    // Record → the claimed event its next pending updates may still fold into.
    let mut open: HashMap<String, usize> = HashMap::new();
    journal.scan_pending(tenant, |row: &Pending<'_>, partners| {
        let full = chosen.len() >= limit;
        if full && open.is_empty() {
            return Ok(Scan::Stop);
        }
        // Past the limit, the scan only looks for updates to fold in.
        if full && !open.contains_key(row.record) {
            return Ok(Scan::Next);
        }
        let mut touches = vec![row.record.to_string()];
        match row.linked {
            Some(l) => touches.push(l.to_string()),
            // The change does not name its partner (a new Case, say): the link table may.
            None => touches.extend(partners.of(row.record)?.iter().cloned()),
        }
        touches.sort();
        touches.dedup();
        let fresh_update = row.attempts == 0 && row.merged_into.is_none() && row.kind == Some("updated");
        // Coalescing: a pending update of a record an event claimed now
        // already runs for folds into it. It may pass events of the partner
        // record (they run after the whole group, and seam's writes for the
        // group are expected as echoes before they run), never one of its own record.
        if let Some(&at) = open.get(row.record) {
            let into = &mut chosen[at];
            let joins = match row.merged_into {
                // A retry folds in what its first attempt did, no more and no less.
                Some(lead) => lead == into.id,
                None => into.takes_fresh && fresh_update && into.touches == touches && into.merged.len() < MAX_MERGED,
            };
            if joins {
                into.merged.push(row.id);
                return Ok(Scan::Next);
            }
            open.remove(row.record);
        }
        let free = touches.iter().all(|t| !busy.contains(t) && !blocked.contains(t));
        blocked.extend(touches.iter().cloned());
        if free && row.next_at_ms <= now && chosen.len() < limit {
            open.insert(row.record.to_string(), chosen.len());
            chosen.push(Claimed { id: row.id, touches, takes_fresh: fresh_update, merged: Vec::new() });
        }
        Ok(Scan::Next)
    })?;
    Ok(chosen)
}
