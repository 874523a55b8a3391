//! The emulators' state: records as JSON objects, counters and settings,
//! held in memory for fast queries and written through to SQLite so a
//! restarted `seam sim` comes back with everything it had.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

pub type Record = Map<String, Value>;

pub struct Store {
    inner: Mutex<Inner>,
}

struct Inner {
    db: Connection,
    /// (emulator, object) → id → record. BTreeMap keeps ids in creation order
    /// for emulators whose ids grow (Salesforce) and stable otherwise.
    tables: HashMap<(String, String), BTreeMap<String, Record>>,
}

impl Store {
    #[allow(clippy::disallowed_methods, reason = "the emulators keep their own records, apart from seam's journal")]
    pub fn open(path: &Path) -> Result<Self> {
        let db =
            Connection::open(path).with_context(|| format!("opening the simulator database {}", path.display()))?;
        db.set_prepared_statement_cache_capacity(64);
        db.execute_batch(
            "-- One connection, in this process, uses the file: without the shared-memory
             -- index and file locks, each of the emulators' many small writes costs less.
             PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA journal_mode = WAL;
             -- No disk syncs: a write is safe once the OS has it, so a killed or
             -- restarted emulator keeps everything (only a machine crash could lose
             -- some). With NORMAL, the checkpoint a write triggers now and then synced
             -- twice on the tokio worker making the write, holding it up meanwhile.
             PRAGMA synchronous = OFF;
             -- Reads come from the tables in memory; SQLite's cache only needs the pages
             -- writes and the notification queue touch. A large one costs at every commit
             -- that split a page (SQLite then walks the whole cache's hash).
             PRAGMA cache_size = -8192;
             CREATE TABLE IF NOT EXISTS records (
                 emulator TEXT NOT NULL, object TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,
                 PRIMARY KEY (emulator, object, id));
             CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS notifications (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, emulator TEXT NOT NULL, url TEXT NOT NULL, format TEXT NOT NULL,
                 payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL DEFAULT 0,
                 delivered_at_ms INTEGER, last_error TEXT);
             -- Replaced by notifications_waiting (below), which holds the undelivered alone.
             DROP INDEX IF EXISTS notifications_pending;",
        )
        .context("creating the simulator schema")?;
        // Queues written before notifications named their record (for per-record order).
        let has_record = db.prepare("SELECT record FROM notifications LIMIT 0").is_ok();
        if !has_record {
            db.execute_batch("ALTER TABLE notifications ADD COLUMN record TEXT NOT NULL DEFAULT ''")
                .context("adding notifications.record")?;
        }
        // The notifier's scans of what waits read this index alone, never the rows
        // (each holds a whole payload); a delivered notification leaves it.
        db.execute_batch(
            "CREATE INDEX IF NOT EXISTS notifications_waiting ON notifications (emulator, id, format, url, record, attempts, next_at_ms)
             WHERE delivered_at_ms IS NULL",
        )
        .context("indexing the waiting notifications")?;
        let mut tables: HashMap<(String, String), BTreeMap<String, Record>> = HashMap::new();
        {
            let mut stmt = db.prepare("SELECT emulator, object, id, data FROM records")?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })?;
            for row in rows {
                let (emulator, object, id, data) = row?;
                let record: Record =
                    serde_json::from_str(&data).with_context(|| format!("corrupt record {emulator}/{object}/{id}"))?;
                tables.entry((emulator, object)).or_default().insert(id, record);
            }
        }
        Ok(Store { inner: Mutex::new(Inner { db, tables }) })
    }

    pub fn get(&self, emulator: &str, object: &str, id: &str) -> Option<Record> {
        let inner = self.inner.lock().unwrap();
        inner.tables.get(&(emulator.to_string(), object.to_string()))?.get(id).cloned()
    }

    /// Insert or replace a whole record.
    pub fn put(&self, emulator: &str, object: &str, id: &str, record: Record) -> Result<()> {
        self.put_all_with(emulator, vec![(object.to_string(), id.to_string(), record)], |_| Ok(()))
    }

    /// Several puts and what `also` writes (the notifications they cause) in one
    /// transaction: all land or none. `also` must not call back into the store.
    pub fn put_all_with(
        &self,
        emulator: &str,
        records: Vec<(String, String, Record)>,
        also: impl FnOnce(&Connection) -> Result<()>,
    ) -> Result<()> {
        let mut inner = self.inner.lock().unwrap();
        let tx = inner.db.transaction()?;
        for (object, id, record) in &records {
            tx.prepare_cached(
                "INSERT INTO records (emulator, object, id, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (emulator, object, id) DO UPDATE SET data = excluded.data",
            )?
            .execute(params![emulator, object, id, serde_json::to_string(record)?])?;
        }
        also(&tx)?;
        tx.commit()?;
        for (object, id, record) in records {
            inner.tables.entry((emulator.to_string(), object)).or_default().insert(id, record);
        }
        Ok(())
    }

    pub fn delete(&self, emulator: &str, object: &str, id: &str) -> Result<Option<Record>> {
        let mut inner = self.inner.lock().unwrap();
        inner.db.execute(
            "DELETE FROM records WHERE emulator = ?1 AND object = ?2 AND id = ?3",
            params![emulator, object, id],
        )?;
        Ok(inner.tables.get_mut(&(emulator.to_string(), object.to_string())).and_then(|t| t.remove(id)))
    }

    /// Every record of an object that `keep` accepts, cloned out of the lock.
    pub fn scan(&self, emulator: &str, object: &str, mut keep: impl FnMut(&Record) -> bool) -> Vec<Record> {
        let inner = self.inner.lock().unwrap();
        match inner.tables.get(&(emulator.to_string(), object.to_string())) {
            Some(table) => table.values().filter(|r| keep(r)).cloned().collect(),
            None => Vec::new(),
        }
    }

    pub fn count(&self, emulator: &str, object: &str) -> usize {
        let inner = self.inner.lock().unwrap();
        inner.tables.get(&(emulator.to_string(), object.to_string())).map_or(0, |t| t.len())
    }

    /// The next value of a named counter (1, 2, 3, ...), durable.
    pub fn next(&self, counter: &str) -> Result<u64> {
        next_in(&self.inner.lock().unwrap().db, counter)
    }

    pub fn counter(&self, counter: &str) -> u64 {
        let inner = self.inner.lock().unwrap();
        inner
            .db
            .query_row("SELECT value FROM counters WHERE name = ?1", params![counter], |row| row.get::<_, i64>(0))
            .optional()
            .ok()
            .flatten()
            .unwrap_or(0) as u64
    }

    pub fn setting(&self, name: &str) -> Option<String> {
        let inner = self.inner.lock().unwrap();
        inner
            .db
            .query_row("SELECT value FROM settings WHERE name = ?1", params![name], |row| row.get(0))
            .optional()
            .ok()
            .flatten()
    }

    pub fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        let inner = self.inner.lock().unwrap();
        inner.db.execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }

    /// Remove every setting whose name starts with `prefix` (sessions, say); returns how many.
    pub fn delete_settings(&self, prefix: &str) -> Result<usize> {
        let inner = self.inner.lock().unwrap();
        Ok(inner.db.execute("DELETE FROM settings WHERE substr(name, 1, length(?1)) = ?1", params![prefix])?)
    }

    /// Run `f` on the database connection (the notification queue uses it).
    pub fn with_db<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let inner = self.inner.lock().unwrap();
        Ok(f(&inner.db)?)
    }
}

/// [`Store::next`] inside a transaction the caller holds (a write's, numbering its notification).
pub fn next_in(db: &Connection, counter: &str) -> Result<u64> {
    let value: i64 = db
        .prepare_cached("INSERT INTO counters (name, value) VALUES (?1, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value")?
        .query_row(params![counter], |row| row.get(0))?;
    Ok(value as u64)
}
