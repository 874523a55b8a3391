//! Retention: what the journal forgets, so it stays bounded under steady
//! traffic. Settled events (synced, or echoes settled at intake) go after a
//! week by default, audit rows after 90 days; an event's history goes with
//! it. Open work is never pruned: pending events and dead letters stay until
//! they are settled, and so does their history. Links, the shadow of what was
//! last synced and the watermarks are state, not history, and stay.

use super::status::EventStatus;
use super::Journal;
use crate::config::retention::Retention;
use anyhow::Result;
use rusqlite::params;
use serde::Serialize;

impl Retention {
    fn cutoff(now_ms: i64, days: f64) -> i64 {
        now_ms - (days * 86_400_000.0) as i64
    }
}

/// What a prune removed, or with `dry_run` would remove.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub events: u64,
    pub audit_rows: u64,
    pub history_rows: u64,
}

/// Rows deleted per transaction: the writer is held briefly, and intake's commits go between.
const CHUNK: usize = 5_000;

impl Journal {
    /// Forget what `retention` says is old at `now_ms`. With `dry_run`, count it and change nothing.
    /// Runs in chunks, oldest first; call it off the async workers (it is plain SQLite work).
    pub fn prune(&self, retention: &Retention, now_ms: i64, dry_run: bool) -> Result<Pruned> {
        let settled_before = Retention::cutoff(now_ms, retention.settled_event_days);
        let audit_before = Retention::cutoff(now_ms, retention.audit_days);
        let mut pruned = Pruned::default();

        // Settled events, oldest first. Ids grow with arrival, so the walk stops at the first
        // event received after the cutoff; open ones on the way are stepped over.
        let mut after = 0i64;
        loop {
            let mut db = self.writer();
            let rows: Vec<(i64, EventStatus, i64)> = db
                .prepare_cached("SELECT id, status, received_at_ms FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?
                .query_map(params![after, CHUNK as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let reached_end = rows.len() < CHUNK || rows.iter().any(|(_, _, at)| *at >= settled_before);
            let old: Vec<i64> = rows
                .iter()
                .take_while(|(_, _, at)| *at < settled_before)
                .filter(|(_, status, _)| status.is_settled())
                .map(|(id, _, _)| *id)
                .collect();
            after = rows.last().map(|r| r.0).unwrap_or(after);
            let tx = db.transaction()?;
            for id in &old {
                pruned.history_rows += if dry_run {
                    tx.prepare_cached("SELECT COUNT(*) FROM event_history WHERE event_id = ?1")?
                        .query_row(params![id], |r| r.get::<_, i64>(0))? as u64
                } else {
                    let history = tx
                        .prepare_cached("DELETE FROM event_history WHERE event_id = ?1")?
                        .execute(params![id])? as u64;
                    tx.prepare_cached("DELETE FROM events WHERE id = ?1")?.execute(params![id])?;
                    history
                };
            }
            tx.commit()?;
            pruned.events += old.len() as u64;
            if reached_end {
                break;
            }
        }

        // Audit rows, oldest first (ids grow with time).
        let mut after = 0i64;
        loop {
            let mut db = self.writer();
            let old: Vec<i64> = db
                .prepare_cached("SELECT id FROM audit WHERE id > ?1 AND at_ms < ?2 ORDER BY id LIMIT ?3")?
                .query_map(params![after, audit_before, CHUNK as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            after = old.last().copied().unwrap_or(after);
            if !dry_run {
                let tx = db.transaction()?;
                for id in &old {
                    tx.prepare_cached("DELETE FROM audit WHERE id = ?1")?.execute(params![id])?;
                }
                tx.commit()?;
            }
            pruned.audit_rows += old.len() as u64;
            if old.len() < CHUNK {
                break;
            }
        }

        // History older than the audit's horizon, of events no longer open (a dead letter's story stays while it waits).
        let db = self.writer();
        // (Rows of the settled events above are counted there already, in a dry run.)
        let kept = "SELECT id FROM events WHERE status IN ('pending', 'dead') OR (status IN ('done', 'echo') AND received_at_ms < ?2)";
        pruned.history_rows += if dry_run {
            db.query_row(
                &format!("SELECT COUNT(*) FROM event_history WHERE at_ms < ?1 AND event_id NOT IN ({kept})"),
                params![audit_before, settled_before],
                |r| r.get::<_, i64>(0),
            )? as u64
        } else {
            db.execute(
                &format!("DELETE FROM event_history WHERE at_ms < ?1 AND event_id NOT IN ({kept})"),
                params![audit_before, settled_before],
            )? as u64
        };
        Ok(pruned)
    }
}
