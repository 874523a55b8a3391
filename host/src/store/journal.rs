//! The journal: every change notification seam accepted, stored before it is
//! acknowledged. The event key is unique, so a notification delivered twice
//! is stored, and processed, once.

use crate::model::Change;
use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

pub struct Journal {
    db: Mutex<Connection>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Stored now, with this journal id.
    New(i64),
    /// Already in the journal (a redelivery); nothing stored.
    Duplicate(i64),
}

/// One journaled event.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub tenant: String,
    pub event_key: String,
    pub change: Change,
    pub status: String,
}

impl Journal {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = Connection::open(path).with_context(|| format!("opening the journal {}", path.display()))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS events (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 tenant TEXT NOT NULL,
                 event_key TEXT NOT NULL,
                 system TEXT NOT NULL,
                 object TEXT NOT NULL,
                 record_id TEXT NOT NULL,
                 change TEXT NOT NULL,
                 received_at_ms INTEGER NOT NULL,
                 status TEXT NOT NULL DEFAULT 'pending',
                 attempts INTEGER NOT NULL DEFAULT 0,
                 last_error TEXT,
                 UNIQUE (tenant, event_key));
             CREATE INDEX IF NOT EXISTS events_by_record ON events (tenant, system, object, record_id, id);
             CREATE INDEX IF NOT EXISTS events_pending ON events (status, id);",
        )
        .context("creating the journal schema")?;
        Ok(Journal { db: Mutex::new(db) })
    }

    /// Store every change of one delivery in one transaction: all of them or none.
    pub fn record_all(&self, tenant: &str, events: &[(String, Change)]) -> Result<Vec<Recorded>> {
        let mut db = self.db.lock().unwrap();
        let tx = db.transaction()?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut out = Vec::with_capacity(events.len());
        for (key, change) in events {
            let existing: Option<i64> = tx
                .query_row("SELECT id FROM events WHERE tenant = ?1 AND event_key = ?2", params![tenant, key], |r| r.get(0))
                .optional()?;
            if let Some(id) = existing {
                out.push(Recorded::Duplicate(id));
                continue;
            }
            tx.execute(
                "INSERT INTO events (tenant, event_key, system, object, record_id, change, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![tenant, key, change.source.system.to_string(), change.source.object, change.source.id, serde_json::to_string(change)?, now],
            )?;
            out.push(Recorded::New(tx.last_insert_rowid()));
        }
        tx.commit().context("committing the journal")?;
        Ok(out)
    }

    pub fn count(&self, tenant: &str) -> Result<u64> {
        let db = self.db.lock().unwrap();
        Ok(db.query_row("SELECT COUNT(*) FROM events WHERE tenant = ?1", params![tenant], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Events in the order they were received.
    pub fn entries(&self, tenant: &str) -> Result<Vec<Entry>> {
        let db = self.db.lock().unwrap();
        let mut stmt = db.prepare("SELECT id, tenant, event_key, change, status FROM events WHERE tenant = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![tenant], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?))
        })?;
        rows.map(|row| {
            let (id, tenant, event_key, change, status) = row?;
            let change = serde_json::from_str(&change).with_context(|| format!("journal event {id} is unreadable"))?;
            Ok(Entry { id, tenant, event_key, change, status })
        })
        .collect()
    }
}
