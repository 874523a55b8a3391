//! Read-only views of the journal for the people running seam: why a field
//! changed (with the event behind it and what happened to that event), each
//! link's sync state, the backlog, and the counts `/metrics` reports.

use super::journal::{decode, Journal};
use super::status::EventStatus;
use crate::model::{latest_fields, Change, RecordRef, Value};
use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// One change of a field, and the event that caused it.
#[derive(Clone, Debug, Serialize)]
pub struct FieldChange {
    pub at_ms: i64,
    pub field: String,
    pub tenant: String,
    pub old: Option<Value>,
    pub new: Value,
    /// `sync`, `workflow`, `revert: owned by the other system`, `reconcile: ...`.
    pub reason: String,
    /// The pack and version that made the write.
    pub pack: String,
    pub event: Option<EventStory>,
}

/// An event as an operator asks about it: where it came from and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct EventStory {
    pub id: i64,
    pub key: String,
    /// The record whose change it announced.
    pub record: RecordRef,
    /// Who made that change in the source system.
    pub origin_user: String,
    pub kind: String,
    /// What the change set, `Priority = "Critical"`.
    pub changed: Vec<String>,
    pub received_at_ms: i64,
    pub status: EventStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Dead-lettered, re-driven: (at_ms, what, detail), oldest first.
    pub history: Vec<(i64, String, String)>,
    /// Later updates of the record that waited and were carried across with
    /// this one (their keys, oldest first); `changed` has the latest value of each field.
    pub merged: Vec<String>,
}

/// A Case ⇄ Incident link and how its sync stands.
#[derive(Clone, Debug, Serialize)]
pub struct LinkState {
    pub tenant: String,
    pub case_id: String,
    pub incident_id: String,
    pub linked_at_ms: i64,
    /// The latest write seam made to either record.
    pub last_sync_ms: Option<i64>,
    pub pending: u64,
    pub dead: u64,
    /// `in sync`, `syncing` (events pending) or `failed` (dead letters).
    pub state: &'static str,
}

/// Events waiting to be processed.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Backlog {
    pub pending: u64,
    pub dead: u64,
    /// How long the oldest pending event has waited.
    pub oldest_age_ms: Option<i64>,
}

/// An audit row as read: at, field, tenant, event key, pack, old, new, reason.
type AuditRead = (i64, String, String, String, String, Option<String>, String, String);

impl Journal {
    /// Every recorded change of `field` on `record`, newest first, each with its event's story.
    /// All tenants when `tenant` is None (a record id belongs to one org anyway).
    pub fn why(&self, tenant: Option<&str>, record: &RecordRef, field: &str) -> Result<Vec<FieldChange>> {
        self.changes(tenant, record, Some(field), usize::MAX >> 1)
    }

    /// The record's audit trail, every field, newest first (at most `limit` rows).
    pub fn record_trail(&self, tenant: Option<&str>, record: &RecordRef, limit: usize) -> Result<Vec<FieldChange>> {
        self.changes(tenant, record, None, limit)
    }

    fn changes(
        &self,
        tenant: Option<&str>,
        record: &RecordRef,
        field: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FieldChange>> {
        let rows: Vec<AuditRead> = {
            let db = self.writer();
            let mut stmt = db.prepare(
                "SELECT at_ms, field, tenant, event_key, plugin, old_value, new_value, reason FROM audit
                 WHERE (?1 IS NULL OR tenant = ?1) AND system = ?2 AND object = ?3 AND record_id = ?4 AND (?5 IS NULL OR field = ?5)
                 ORDER BY id DESC LIMIT ?6",
            )?;
            let rows = stmt.query_map(
                params![tenant, record.system.to_string(), record.object, record.id, field, limit as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
            )?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        rows.into_iter()
            .map(|(at_ms, field, tenant, key, pack, old, new, reason)| {
                let event = self.event_story(&tenant, &key)?;
                Ok(FieldChange {
                    at_ms,
                    field,
                    old: old.as_deref().map(decode),
                    new: decode(&new),
                    reason,
                    pack,
                    event,
                    tenant,
                })
            })
            .collect()
    }

    /// One event's story by its key.
    pub fn event_story(&self, tenant: &str, key: &str) -> Result<Option<EventStory>> {
        let db = self.writer();
        let row = db
            .query_row(
                "SELECT id, system, object, record_id, change, received_at_ms, status, attempts, last_error, news FROM events WHERE tenant = ?1 AND event_key = ?2",
                params![tenant, key],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, EventStatus>(6)?,
                        r.get::<_, u32>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, Option<String>>(9)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, system, object, record_id, change, received_at_ms, status, attempts, last_error, news)) = row
        else {
            return Ok(None);
        };
        // A notification may carry the whole record; once processed, the journal knows which fields were news.
        let news: Option<Vec<String>> = news.and_then(|n| serde_json::from_str(&n).ok());
        let mut stmt = db.prepare("SELECT at_ms, what, detail FROM event_history WHERE event_id = ?1 ORDER BY id")?;
        let history =
            stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
        let mut stmt = db.prepare("SELECT event_key, change FROM events WHERE merged_into = ?1 ORDER BY id")?;
        let merged: Vec<(String, String)> =
            stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        // Each field at its latest value across the event and those merged into it.
        let changes: Vec<Change> = std::iter::once(&change)
            .chain(merged.iter().map(|(_, c)| c))
            .filter_map(|c| super::stored_change::decode(c).ok())
            .collect();
        let fields = latest_fields(changes.iter().map(|c| &c.changed));
        let first = changes.first();
        Ok(Some(EventStory {
            id,
            key: key.to_string(),
            record: RecordRef { system: system.parse()?, object, id: record_id },
            origin_user: first.map(|c| c.origin_user.clone()).unwrap_or_default(),
            kind: first
                .and_then(|c| serde_json::to_value(c.kind).ok())
                .and_then(|k| k.as_str().map(str::to_string))
                .unwrap_or_default(),
            changed: fields
                .iter()
                .filter(|f| !f.name.ends_with(".display") && news.as_ref().is_none_or(|n| n.contains(&f.name)))
                .map(|f| format!("{} = {}", f.name, serde_json::to_string(&f.value).unwrap_or_default()))
                .collect(),
            received_at_ms,
            status,
            attempts,
            last_error,
            history,
            merged: merged.into_iter().map(|(key, _)| key).collect(),
        }))
    }

    /// Events about `record` that have not gone through: pending or dead-lettered.
    pub fn unfinished(&self, tenant: Option<&str>, record: &RecordRef) -> Result<Vec<EventStory>> {
        let keys: Vec<(String, String)> = {
            let db = self.writer();
            let mut stmt = db.prepare(
                // One part per status, each over its partial index (open events only; named,
                // or the planner, without statistics, would scan every event in id order).
                "SELECT id, tenant, event_key FROM events INDEXED BY events_waiting_by_record WHERE status = 'pending' AND (?1 IS NULL OR tenant = ?1) AND system = ?2 AND object = ?3 AND record_id = ?4
                 UNION ALL
                 SELECT id, tenant, event_key FROM events INDEXED BY events_dead WHERE status = 'dead' AND (?1 IS NULL OR tenant = ?1) AND system = ?2 AND object = ?3 AND record_id = ?4
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![tenant, record.system.to_string(), record.object, record.id], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        keys.iter().filter_map(|(t, k)| self.event_story(t, k).transpose()).collect()
    }

    /// Every link of `tenant` as reconciliation walks them, by Case id.
    pub fn reconcile_targets(&self, tenant: &str) -> Result<Vec<ReconcileTarget>> {
        let db = self.writer();
        let mut stmt = db.prepare(
            "SELECT l.case_id, l.incident_id, l.case_stamp, l.incident_stamp,
                EXISTS (SELECT 1 FROM events e WHERE e.tenant = l.tenant AND e.status = 'pending'
                    AND (e.record_id IN (l.case_id, l.incident_id) OR e.linked_id IN (l.case_id, l.incident_id)))
             FROM links l WHERE l.tenant = ?1 ORDER BY l.case_id",
        )?;
        let rows = stmt.query_map(params![tenant], |r| {
            let stamps = match (r.get::<_, Option<String>>(2)?, r.get::<_, Option<String>>(3)?) {
                (Some(case), Some(incident)) => Some((case, incident)),
                _ => None,
            };
            Ok(ReconcileTarget { case_id: r.get(0)?, incident_id: r.get(1)?, stamps, waiting: r.get(4)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remember the stamps at which reconciliation found pairs in sync: (Case id, Case stamp, incident stamp).
    pub async fn set_reconciled(&self, tenant: &str, pairs: Vec<(String, String, String)>) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let tenant = tenant.to_string();
        self.write_grouped(move |db| {
            for (case_id, case_stamp, incident_stamp) in &pairs {
                db.prepare_cached(
                    "UPDATE links SET case_stamp = ?3, incident_stamp = ?4 WHERE tenant = ?1 AND case_id = ?2",
                )?
                .execute(params![tenant, case_id, case_stamp, incident_stamp])?;
            }
            Ok(())
        })
        .await
    }

    /// Links, newest first, with their sync state.
    pub fn link_states(&self, tenant: &str, limit: usize) -> Result<Vec<LinkState>> {
        let db = self.writer();
        let mut stmt = db.prepare(
            "SELECT l.case_id, l.incident_id, l.created_at_ms,
                -- Each side by the audit's (tenant, system, object, record_id) index.
                MAX(COALESCE((SELECT MAX(a.at_ms) FROM audit a WHERE a.tenant = l.tenant AND a.system = 'salesforce' AND a.object = 'Case' AND a.record_id = l.case_id), 0),
                    COALESCE((SELECT MAX(a.at_ms) FROM audit a WHERE a.tenant = l.tenant AND a.system = 'servicenow' AND a.object = 'incident' AND a.record_id = l.incident_id), 0)),
                (SELECT COUNT(*) FROM events e WHERE e.tenant = l.tenant AND e.status = 'pending'
                    AND (e.record_id IN (l.case_id, l.incident_id) OR e.linked_id IN (l.case_id, l.incident_id))),
                (SELECT COUNT(*) FROM events e INDEXED BY events_dead WHERE e.tenant = l.tenant AND e.status = 'dead'
                    AND (e.record_id IN (l.case_id, l.incident_id) OR e.linked_id IN (l.case_id, l.incident_id)))
             FROM links l WHERE l.tenant = ?1 ORDER BY l.created_at_ms DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![tenant, limit as i64], |r| {
            let (pending, dead): (i64, i64) = (r.get(4)?, r.get(5)?);
            let last_sync: i64 = r.get(3)?;
            Ok(LinkState {
                tenant: tenant.to_string(),
                case_id: r.get(0)?,
                incident_id: r.get(1)?,
                linked_at_ms: r.get(2)?,
                last_sync_ms: (last_sync > 0).then_some(last_sync),
                pending: pending as u64,
                dead: dead as u64,
                state: if dead > 0 {
                    "failed"
                } else if pending > 0 {
                    "syncing"
                } else {
                    "in sync"
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn backlog(&self, tenant: &str) -> Result<Backlog> {
        let db = self.writer();
        let (pending, oldest): (i64, Option<i64>) = db.query_row(
            "SELECT COUNT(*), MIN(received_at_ms) FROM events INDEXED BY events_waiting_by_record WHERE tenant = ?1 AND status = 'pending'",
            params![tenant],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        drop(db);
        let dead = self.status_count(tenant, EventStatus::Dead)?;
        let now = chrono::Utc::now().timestamp_millis();
        Ok(Backlog { pending: pending as u64, dead, oldest_age_ms: oldest.map(|t| (now - t).max(0)) })
    }

    /// Events received per source system, ever (the journal keeps them all).
    pub fn received_by_system(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        let db = self.writer();
        let mut stmt =
            db.prepare("SELECT system, COUNT(*) FROM events WHERE tenant = ?1 GROUP BY system ORDER BY system")?;
        let rows = stmt.query_map(params![tenant], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// A linked pair as reconciliation sees it.
#[derive(Clone, Debug)]
pub struct ReconcileTarget {
    pub case_id: String,
    pub incident_id: String,
    /// (Case SystemModstamp, incident sys_updated_on) when last found in sync.
    pub stamps: Option<(String, String)>,
    /// Events of the pair still waiting: left to the engine.
    pub waiting: bool,
}
