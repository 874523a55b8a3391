//! The journal: every change notification seam accepted, stored before it is
//! acknowledged. The event key is unique, so a notification delivered twice
//! is stored, and processed, once.

use super::status::{AuditReason, EventStatus};
use super::stored_change;
use crate::model::{Carried, Change, RecordRef, Value};
use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub struct Journal {
    /// The writing connection: shared with the group-commit thread.
    pub(super) db: Arc<Mutex<Connection>>,
    /// A second connection for the processors' point reads (shadow, echoes to
    /// expect, links) and the dispatcher's scan: in WAL mode they read the last
    /// commit without waiting for a write, and its disk sync, to finish.
    reader: Mutex<Connection>,
    /// Woken when new events are stored, so dispatchers need not poll.
    arrived: tokio::sync::Notify,
    /// Writes waiting for [`Journal::write_grouped`]'s next transaction.
    committer: Committer,
    _checkpointer: Checkpointer,
    /// When events fall due and how long they have failed (see [`Clock`]).
    pub clock: super::clock::Clock,
    /// Connections handed out on a tokio worker thread (see [`super::blocking`]).
    on_workers: std::sync::atomic::AtomicU64,
}

/// One queued write: runs inside the group's transaction and answers when
/// committed. It may run twice (see [`commit_group`]), so it only writes to
/// the database.
type Job = Box<dyn FnMut(&Connection) -> Result<Box<dyn std::any::Any + Send>> + Send>;
type Reply = tokio::sync::oneshot::Sender<Result<Box<dyn std::any::Any + Send>, String>>;

/// Group commit on a thread of its own: while one transaction is syncing to
/// disk, the writes that arrive (deliveries, outcomes, claims) queue, and the
/// next transaction stores them all with one sync. The sync never holds up a
/// tokio worker, so the two cores keep processing while it runs.
struct Committer {
    queue: Arc<(Mutex<Committing>, std::sync::Condvar)>,
}

#[derive(Default)]
struct Committing {
    jobs: Vec<(Job, Reply)>,
    /// The journal was dropped: commit what is queued, then stop.
    stop: bool,
}

impl Committer {
    fn start(db: Arc<Mutex<Connection>>) -> Result<Self> {
        let queue: Arc<(Mutex<Committing>, std::sync::Condvar)> = Arc::default();
        let shared = queue.clone();
        std::thread::Builder::new()
            .name("seam-journal-commit".into())
            .spawn(move || {
                let (lock, wake) = &*shared;
                loop {
                    let batch = {
                        let mut committing = lock.lock().unwrap();
                        while committing.jobs.is_empty() && !committing.stop {
                            committing = wake.wait(committing).unwrap();
                        }
                        if committing.jobs.is_empty() {
                            break;
                        }
                        std::mem::take(&mut committing.jobs)
                    };
                    commit_group(&db, batch);
                }
            })
            .context("starting the journal's commit thread")?;
        Ok(Committer { queue })
    }

    fn push(&self, job: Job, reply: Reply) {
        let (lock, wake) = &*self.queue;
        lock.lock().unwrap().jobs.push((job, reply));
        wake.notify_one();
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.queue;
        lock.lock().unwrap().stop = true;
        wake.notify_one();
    }
}

/// One group in one transaction; each job's caller gets its answer once the
/// transaction is committed. A failing job fails alone: the group first runs
/// without savepoints (each one copies every page its job touches), and only
/// when a job fails is the transaction rolled back and the group run again
/// with a savepoint per job.
fn commit_group(db: &Mutex<Connection>, batch: Vec<(Job, Reply)>) {
    let (mut jobs, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
    let mut db = db.lock().unwrap();
    let ran = run_group(&mut db, &mut jobs, false).and_then(|results| match results {
        Some(results) => Ok(results),
        None => run_group(&mut db, &mut jobs, true).map(|r| r.expect("with savepoints, a failing job fails alone")),
    });
    drop(db);
    match ran {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        // The transaction rolled back: every write in it failed.
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(format!("{e:#}")));
            }
        }
    }
}

type JobResult = Result<Box<dyn std::any::Any + Send>, String>;

/// Run every job in one transaction and commit it. Without savepoints, the
/// first failing job rolls the transaction back and the answer is None.
fn run_group(db: &mut Connection, jobs: &mut [Job], savepoints: bool) -> Result<Option<Vec<JobResult>>> {
    let mut tx = db.transaction()?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs.iter_mut() {
        // A write that panics fails alone, like one that errs: the commit thread lives on.
        let mut run = |db: &Connection| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(db)))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the journal write panicked")))
        };
        if !savepoints {
            match run(&tx) {
                Ok(v) => results.push(Ok(v)),
                // Dropping the transaction rolls it back.
                Err(_) => return Ok(None),
            }
            continue;
        }
        let sp = tx.savepoint()?;
        match run(&sp) {
            Ok(v) => {
                sp.commit()?;
                results.push(Ok(v));
            }
            // Dropping the savepoint rolls its writes back.
            Err(e) => results.push(Err(format!("{e:#}"))),
        }
    }
    tx.commit().context("committing the journal")?;
    Ok(Some(results))
}

/// A connection to the journal's file; `purpose` completes the error ("opening the journal x.db{purpose}").
#[allow(clippy::disallowed_methods, reason = "the journal is where seam's SQLite connections are made")]
fn connect(path: &Path, purpose: &str) -> Result<Connection> {
    Connection::open(path).with_context(|| format!("opening the journal {}{purpose}", path.display()))
}

/// Checkpoints the WAL every half second from its own connection; stops when dropped.
struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self> {
        let db = connect(path, " to checkpoint it")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("seam-checkpoint".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    #[allow(
                        clippy::disallowed_methods,
                        reason = "the checkpoint thread is its own, not a tokio worker"
                    )]
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    // PASSIVE: copies what no reader still needs, never blocks a writer.
                    if let Err(e) = db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!("checkpointing the journal: {e}");
                    }
                }
            })
            .context("starting the journal's checkpoint thread")?;
        Ok(Checkpointer { stop })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Stored now, with this journal id, to be processed.
    New(i64),
    /// Stored now and settled at once: nothing but seam's own write coming
    /// back (see [`Journal::record_settling_echoes`]).
    Echo(i64),
    /// Already in the journal (a redelivery); nothing stored.
    Duplicate(i64),
}

impl Recorded {
    /// The event's journal id, new or not.
    pub fn id(self) -> i64 {
        match self {
            Recorded::New(id) | Recorded::Echo(id) | Recorded::Duplicate(id) => id,
        }
    }

    /// Stored by this delivery (not a redelivery).
    pub fn is_new(self) -> bool {
        !matches!(self, Recorded::Duplicate(_))
    }
}

/// Tells whether a change is nothing but seam's own echo, from the change,
/// its record's shadow and the echoes expected back: the outcome that settles
/// it, or None when it may be news (`engine::echoes::settled_echo`).
pub type EchoCheck = fn(&Change, &ShadowFields, &[(i64, String, Value)]) -> Result<Option<Outcome>>;

/// A record's shadow, the named fields only (those it has).
pub type ShadowFields<'a> = dyn Fn(&[&str]) -> Result<HashMap<String, Value>> + 'a;

/// One journaled event.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub tenant: String,
    pub event_key: String,
    pub change: Change,
    pub status: EventStatus,
    /// When intake stored it (Unix milliseconds).
    pub received_at_ms: i64,
}

impl Journal {
    /// Store every change of one delivery: all of them or none, durable when
    /// this returns. Deliveries arriving together share one transaction and one
    /// disk sync (group commit).
    pub async fn record_all(&self, tenant: &str, events: Vec<(String, Change)>) -> Result<Vec<Recorded>> {
        self.record(tenant, events, None).await
    }

    /// As [`Journal::record_all`], and a change `is_echo` finds to be nothing
    /// but seam's own write coming back is settled in the same write (its
    /// expected echoes consumed, stored as an echo) instead of queued. Only
    /// when no earlier event of its record is still waiting: the check then
    /// sees the record as the processor would, and per-record order holds.
    pub async fn record_settling_echoes(
        &self,
        tenant: &str,
        events: Vec<(String, Change)>,
        is_echo: EchoCheck,
    ) -> Result<Vec<Recorded>> {
        self.record(tenant, events, Some(is_echo)).await
    }

    /// As [`Journal::record_settling_echoes`], and a source's position (a stream's replay id) set
    /// in the same transaction: after a crash, the stream resumes exactly after what was stored.
    pub async fn record_up_to(
        &self,
        tenant: &str,
        events: Vec<(String, Change)>,
        is_echo: EchoCheck,
        source: &str,
        position: &str,
    ) -> Result<Vec<Recorded>> {
        self.record_marking(tenant, events, Some(is_echo), Some((source.to_string(), position.to_string()))).await
    }

    /// As [`Journal::record_all`], and a source's position (a poll's watermark, a backfill's
    /// place) set in the same transaction, with the same disk sync.
    pub async fn record_all_up_to(
        &self,
        tenant: &str,
        events: Vec<(String, Change)>,
        source: &str,
        position: &str,
    ) -> Result<Vec<Recorded>> {
        self.record_marking(tenant, events, None, Some((source.to_string(), position.to_string()))).await
    }

    async fn record(
        &self,
        tenant: &str,
        events: Vec<(String, Change)>,
        is_echo: Option<EchoCheck>,
    ) -> Result<Vec<Recorded>> {
        self.record_marking(tenant, events, is_echo, None).await
    }

    async fn record_marking(
        &self,
        tenant: &str,
        events: Vec<(String, Change)>,
        is_echo: Option<EchoCheck>,
        mark: Option<(String, String)>,
    ) -> Result<Vec<Recorded>> {
        let tenant = tenant.to_string();
        let out = self
            .write_grouped(move |db| {
                let out = insert_events(db, &tenant, &events, is_echo)?;
                if let Some((source, position)) = &mark {
                    put_watermark(db, &tenant, source, position)?;
                }
                Ok(out)
            })
            .await?;
        if out.iter().any(|r| matches!(r, Recorded::New(_))) {
            self.arrived.notify_waiters();
        }
        Ok(out)
    }

    /// Run `write` in the journal's next group transaction; returns once it is
    /// committed and synced. Writes queued together share one transaction and
    /// one disk sync; one that fails is undone alone and the others still
    /// commit. `write` may run twice (once more when another write in its group
    /// fails), so it must only write to the database.
    pub async fn write_grouped<T: Send + 'static>(
        &self,
        mut write: impl FnMut(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |db| write(db).map(|v| Box::new(v) as Box<dyn std::any::Any + Send>));
        self.committer.push(job, reply);
        let value = answer
            .await
            .map_err(|_| anyhow::anyhow!("the journal's group commit stopped"))?
            .map_err(anyhow::Error::msg)?;
        Ok(*value.downcast::<T>().expect("a group write answers with its own type"))
    }

    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = connect(path, "")?;
        // `seam dlq`, `seam reconcile` and `seam serve` may share the file: wait out each other's writes.
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        // More statements than rusqlite's default 16 are in steady use; a miss re-parses the SQL.
        db.set_prepared_statement_cache_capacity(128);
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             -- 16 MiB of page cache: the tree tops and the pages a burst touches again
             -- (open events, shadow, expected echoes). Not more: every commit that
             -- split an index page walks the whole cache's hash (pcache1Truncate,
             -- after balance_nonroot parks a page at the lock-byte page number).
             PRAGMA cache_size = -16384;
             -- Savepoints (a group with a failing write runs again with one per write)
             -- and multi-row statements keep undo copies of the pages they touch in a
             -- sub-journal. Kept in memory: by default it spills to a temporary file
             -- past 64 KiB (one large delivery), and every later page copy is then two
             -- pwrite calls.
             PRAGMA temp_store = MEMORY;
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
                 next_at_ms INTEGER NOT NULL DEFAULT 0,
                 last_error TEXT,
                 -- unused: journals before idempotency keys counted the actions done here
                 progress INTEGER NOT NULL DEFAULT 0,
                 -- what those actions left for the later ones (`Carried`: partner, its number,
                 -- last created record, and the keys of the actions done, which a retry skips)
                 progress_linked TEXT,
                 -- the partner record the change names (from its link field), for ordering
                 linked_id TEXT,
                 -- the changed fields that were news (JSON list), for the audit trail
                 news TEXT,
                 UNIQUE (tenant, event_key));
             -- (The shadow: SHADOW_TABLE, created by keyed_shadow.)
             -- Values seam wrote whose notification has not come back yet. A write's
             -- echo can arrive after a later write to the same field (the shadow has
             -- moved on); it is still seam's own, not a person's edit.
             CREATE TABLE IF NOT EXISTS expected_echoes (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL,
                 system TEXT NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL,
                 field TEXT NOT NULL, value TEXT NOT NULL, at_ms INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS expected_by_record ON expected_echoes (tenant, system, object, record_id);
             CREATE INDEX IF NOT EXISTS expected_by_age ON expected_echoes (at_ms);
             -- Every pack a tenant has run, in order; the active one is the newest not rolled back.
             CREATE TABLE IF NOT EXISTS pack_history (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL,
                 name TEXT NOT NULL, version TEXT NOT NULL, hash TEXT NOT NULL, signer TEXT,
                 source TEXT NOT NULL, at_ms INTEGER NOT NULL, rolled_back INTEGER NOT NULL DEFAULT 0,
                 slot TEXT NOT NULL DEFAULT 'mapping');
             CREATE TABLE IF NOT EXISTS links (
                 tenant TEXT NOT NULL, case_id TEXT NOT NULL, incident_id TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
                 PRIMARY KEY (tenant, case_id), UNIQUE (tenant, incident_id));
             CREATE TABLE IF NOT EXISTS audit (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, tenant TEXT NOT NULL,
                 event_key TEXT NOT NULL,
                 -- The pack that wrote (name@version); the column keeps its first name.
                 plugin TEXT NOT NULL,
                 system TEXT NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL,
                 field TEXT NOT NULL, old_value TEXT, new_value TEXT, reason TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS audit_by_record ON audit (tenant, system, object, record_id, field, id);
             -- No question looks audit rows up by event (an event's writes are found
             -- by record); an index on the random event keys cost every commit a
             -- page or more per write.
             DROP INDEX IF EXISTS audit_by_event;
             -- What happened to an event besides its processing: dead-lettered (why), re-driven (by whom).
             -- Six months on, this answers whether a failed message was sent through again.
             CREATE TABLE IF NOT EXISTS event_history (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, event_id INTEGER NOT NULL, at_ms INTEGER NOT NULL,
                 what TEXT NOT NULL, detail TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS event_history_by_event ON event_history (event_id, id);
             -- How far catch-up polling has read each source.
             CREATE TABLE IF NOT EXISTS watermarks (
                 tenant TEXT NOT NULL, source TEXT NOT NULL, value TEXT NOT NULL,
                 PRIMARY KEY (tenant, source));
             -- Intake's question before it settles an echo: is an event of the record still waiting?
             CREATE INDEX IF NOT EXISTS events_waiting_by_record ON events (tenant, record_id) WHERE status = 'pending';
             -- The other indexes on events hold only the events still open (pending or
             -- dead-lettered): an event that is done, or an echo settled at intake, costs
             -- the row and its key alone, and the indexes stay as small as the backlog
             -- (questions about one record's open events scan them).
             DROP INDEX IF EXISTS events_pending;
             DROP INDEX IF EXISTS events_by_record;
             CREATE INDEX IF NOT EXISTS events_dead ON events (id) WHERE status = 'dead';",
        )
        .context("creating the journal schema")?;
        keyed_shadow(&db)?;
        // Journals written before these columns existed.
        add_column(&db, "events", "news", "TEXT")?;
        // Coalescing (see `claim`): the change's kind, so the scan need not parse
        // the change, and the event whose processing took this one along.
        add_column(&db, "events", "kind", "TEXT")?;
        add_column(&db, "events", "merged_into", "INTEGER")?;
        // The records' stamps (SystemModstamp, sys_updated_on) when reconciliation last found the pair in sync.
        add_column(&db, "links", "case_stamp", "TEXT")?;
        add_column(&db, "links", "incident_stamp", "TEXT")?;
        // When the event's transient failures began (its retries give up a window later).
        add_column(&db, "events", "failing_since_ms", "INTEGER")?;
        db.execute_batch(
            "CREATE INDEX IF NOT EXISTS events_by_merged ON events (merged_into) WHERE merged_into IS NOT NULL;
             -- The dispatcher's scan (`claim`) reads this index alone, never the rows (each holds a whole record).
             CREATE INDEX IF NOT EXISTS events_due ON events (tenant, id, record_id, linked_id, next_at_ms, attempts, merged_into, kind) WHERE status = 'pending';",
        )?;
        // Before workflow packs, every pack was the mapping.
        add_column(&db, "pack_history", "slot", "TEXT NOT NULL DEFAULT 'mapping'")?;
        let reader = connect(path, " for reading")?;
        reader.busy_timeout(std::time::Duration::from_secs(10))?;
        reader.set_prepared_statement_cache_capacity(32);
        reader.execute_batch("PRAGMA cache_size = -16384; PRAGMA query_only = 1;")?;
        // Checkpoints (copying the WAL back into the database, with syncs of their
        // own) run on a thread of their own instead of inside whichever commit
        // crosses the WAL's size threshold.
        db.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(path)?;
        let db = Arc::new(Mutex::new(db));
        Ok(Journal {
            committer: Committer::start(db.clone())?,
            db,
            reader: Mutex::new(reader),
            arrived: tokio::sync::Notify::new(),
            _checkpointer: checkpointer,
            clock: Default::default(),
            on_workers: Default::default(),
        })
    }

    /// Run `work` with the journal on the blocking pool: how serving code calls
    /// the journal's synchronous methods without holding up a tokio worker.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Journal) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let journal = self.clone();
        super::blocking::off_worker(move || work(&journal)).await
    }

    /// How many times a connection was handed out on a tokio worker thread; zero
    /// when serving code keeps SQLite (and its disk syncs) off the workers.
    pub fn calls_on_workers(&self) -> u64 {
        self.on_workers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The writing connection, for reads that must see every commit and for
    /// writes outside the group commit (the operators' commands).
    #[track_caller]
    pub(super) fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.check_thread();
        self.db.lock().unwrap()
    }

    /// The reading connection: the last commit, without waiting for a write in progress.
    #[track_caller]
    pub(super) fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.check_thread();
        self.reader.lock().unwrap()
    }

    /// Count a connection handed out on a tokio worker; the first one is logged with the
    /// stack that asked for it (once: a backtrace costs, and one names the defect).
    #[track_caller]
    fn check_thread(&self) {
        if super::blocking::on_worker() && self.on_workers.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
            tracing::warn!(
                at = %std::panic::Location::caller(),
                "a journal call ran on a tokio worker thread, holding up the tasks scheduled there (serving code calls the journal through Journal::run); called from:\n{}",
                std::backtrace::Backtrace::force_capture()
            );
        }
    }

    /// Resolves when events are stored after the call (or redriven).
    pub async fn arrivals(&self) {
        self.arrived.notified().await
    }

    pub fn count(&self, tenant: &str) -> Result<u64> {
        let db = self.writer();
        Ok(db.query_row("SELECT COUNT(*) FROM events WHERE tenant = ?1", params![tenant], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Events in the order they were received.
    pub fn entries(&self, tenant: &str) -> Result<Vec<Entry>> {
        let db = self.writer();
        let mut stmt = db.prepare_cached(
            "SELECT id, tenant, event_key, change, status, received_at_ms FROM events WHERE tenant = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![tenant], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, EventStatus>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (id, tenant, event_key, change, status, received_at_ms) = row?;
            let change = stored_change::decode(&change).with_context(|| format!("journal event {id} is unreadable"))?;
            Ok(Entry { id, tenant, event_key, change, status, received_at_ms })
        })
        .collect()
    }
}

/// One audited write: which field of which record changed, from what to what, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRow {
    pub record: RecordRef,
    pub field: String,
    pub old: Option<Value>,
    pub new: Value,
    pub reason: AuditReason,
    /// The pack whose action made the change, when not the event's mapping pack (a workflow's).
    pub pack: Option<String>,
}

/// What a processed event leaves behind, committed with its status in one transaction.
#[derive(Default, Debug)]
pub struct Outcome {
    /// Field values now known to be in sync, per record.
    pub shadow: Vec<(RecordRef, String, Value)>,
    pub audit: Vec<AuditRow>,
    /// (Case id, incident sys_id)
    pub links: Vec<(String, String)>,
    /// Links that end: one of the pair was deleted. (Case id, incident sys_id)
    pub unlinks: Vec<(String, String)>,
    /// Values written now, whose notifications will come back.
    pub expect: Vec<(RecordRef, String, Value)>,
    /// Expected echoes this event was (ids from [`Journal::expected_echoes`]).
    pub consumed: Vec<i64>,
    /// The fields that were news (not echoes, not unchanged): what the audit says caused the writes.
    pub news: Vec<String>,
}

/// `ALTER TABLE table ADD COLUMN column decl`, unless the column is there already.
fn add_column(db: &Connection, table: &str, column: &str, decl: &str) -> Result<()> {
    let present =
        db.prepare_cached(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?.exists([column])?;
    if !present {
        db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
            .with_context(|| format!("adding {table}.{column}"))?;
    }
    Ok(())
}

/// Last values synced per record field: what seam wrote or already carried across.
/// Keyed by its primary key alone (no rowid): one b-tree to update per value, not two.
const SHADOW_TABLE: &str = "(
    tenant TEXT NOT NULL, system TEXT NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL,
    field TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (tenant, system, object, record_id, field)) WITHOUT ROWID";

/// Create the shadow table; a journal from before it was WITHOUT ROWID has it copied over, in one transaction.
fn keyed_shadow(db: &Connection) -> Result<()> {
    let sql: Option<String> = db
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'shadow'", [], |r| r.get(0))
        .optional()?;
    match sql {
        None => {
            db.execute_batch(&format!("CREATE TABLE shadow {SHADOW_TABLE}")).context("creating the journal's shadow")
        }
        Some(sql) if sql.contains("WITHOUT ROWID") => Ok(()),
        Some(_) => db
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 CREATE TABLE shadow_keyed {SHADOW_TABLE};
                 INSERT INTO shadow_keyed SELECT tenant, system, object, record_id, field, value FROM shadow;
                 DROP TABLE shadow;
                 ALTER TABLE shadow_keyed RENAME TO shadow;
                 COMMIT;"
            ))
            .context("moving the journal's shadow to a WITHOUT ROWID table"),
    }
}

/// Store `events` unless already stored (by event key), inside the caller's
/// transaction; with `is_echo`, settle the ones that are seam's own echoes.
fn insert_events(
    tx: &Connection,
    tenant: &str,
    events: &[(String, Change)],
    is_echo: Option<EchoCheck>,
) -> Result<Vec<Recorded>> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::with_capacity(events.len());
    for (key, change) in events {
        let settled = match is_echo {
            Some(is_echo) if !waiting(tx, tenant, &change.source.id)? => {
                let shadow = |fields: &[&str]| shadow_fields_of(tx, tenant, &change.source, fields);
                is_echo(change, &shadow, &expected_echoes_of(tx, tenant, &change.source)?)?
            }
            _ => None,
        };
        // Stored unless its key is (a redelivery): one lookup of the key, not a read and then an insert.
        let stored = tx.prepare_cached("INSERT INTO events (tenant, event_key, system, object, record_id, change, received_at_ms, linked_id, kind, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (tenant, event_key) DO NOTHING")?.execute(params![
            tenant,
            key,
            change.source.system.to_string(),
            change.source.object,
            change.source.id,
            stored_change::encode(change),
            now,
            change.linked.as_ref().map(|l| l.id.as_str()),
            serde_json::to_value(change.kind)?.as_str(),
            if settled.is_some() { EventStatus::Echo } else { EventStatus::Pending }
        ])?;
        if stored == 0 {
            let id = tx
                .prepare_cached("SELECT id FROM events WHERE tenant = ?1 AND event_key = ?2")?
                .query_row(params![tenant, key], |r| r.get(0))?;
            out.push(Recorded::Duplicate(id));
            continue;
        }
        let id = tx.last_insert_rowid();
        match settled {
            Some(outcome) => {
                commit_outcome(tx, tenant, key, "", &outcome)?;
                out.push(Recorded::Echo(id));
            }
            None => out.push(Recorded::New(id)),
        }
    }
    Ok(out)
}

/// Whether an event of the record is waiting or in flight.
fn waiting(db: &Connection, tenant: &str, record_id: &str) -> Result<bool> {
    Ok(db
        .prepare_cached("SELECT 1 FROM events WHERE tenant = ?1 AND record_id = ?2 AND status = 'pending'")?
        .exists(params![tenant, record_id])?)
}

fn shadow_of(db: &Connection, tenant: &str, record: &RecordRef) -> Result<HashMap<String, Value>> {
    let mut stmt = db.prepare_cached(
        "SELECT field, value FROM shadow WHERE tenant = ?1 AND system = ?2 AND object = ?3 AND record_id = ?4",
    )?;
    // Values are parsed where SQLite holds them, without a copy first (a record has 30-odd).
    let rows = stmt.query_map(params![tenant, record.system.to_string(), record.object, record.id], |r| {
        Ok((r.get::<_, String>(0)?, decode(r.get_ref(1)?.as_str()?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Some fields' shadow: point reads for a few (a ServiceNow notification names
/// one or two of a record's 30-odd), one read of the record's for many (an
/// Outbound Message names every field that has a value).
fn shadow_fields_of(
    db: &Connection,
    tenant: &str,
    record: &RecordRef,
    fields: &[&str],
) -> Result<HashMap<String, Value>> {
    if fields.len() > 4 {
        let mut all = shadow_of(db, tenant, record)?;
        all.retain(|name, _| fields.contains(&name.as_str()));
        return Ok(all);
    }
    let mut stmt = db.prepare_cached(
        "SELECT value FROM shadow WHERE tenant = ?1 AND system = ?2 AND object = ?3 AND record_id = ?4 AND field = ?5",
    )?;
    let system = record.system.to_string();
    let mut out = HashMap::new();
    for field in fields {
        if let Some(value) = stmt
            .query_row(params![tenant, system, record.object, record.id, field], |r| {
                Ok(decode(r.get_ref(0)?.as_str()?))
            })
            .optional()?
        {
            out.insert(field.to_string(), value);
        }
    }
    Ok(out)
}

fn expected_echoes_of(db: &Connection, tenant: &str, record: &RecordRef) -> Result<Vec<(i64, String, Value)>> {
    let mut stmt = db.prepare_cached(
        "SELECT id, field, value FROM expected_echoes WHERE tenant = ?1 AND system = ?2 AND object = ?3 AND record_id = ?4 AND at_ms >= ?5 ORDER BY id",
    )?;
    let since = chrono::Utc::now().timestamp_millis() - ECHO_WAIT_MS;
    let rows = stmt.query_map(params![tenant, record.system.to_string(), record.object, record.id, since], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, decode(r.get_ref(2)?.as_str()?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Shadow, audit, links and expected echoes of one outcome, inside the caller's transaction.
fn commit_outcome(tx: &Connection, tenant: &str, event_key: &str, pack: &str, outcome: &Outcome) -> Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    for (record, field, value) in &outcome.shadow {
        tx.prepare_cached(
            "INSERT INTO shadow (tenant, system, object, record_id, field, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (tenant, system, object, record_id, field) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![
            tenant,
            record.system.to_string(),
            record.object,
            record.id,
            field,
            encode(value)
        ])?;
    }
    for a in &outcome.audit {
        tx.prepare_cached("INSERT INTO audit (at_ms, tenant, event_key, plugin, system, object, record_id, field, old_value, new_value, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")?.execute(params![now, tenant, event_key, a.pack.as_deref().unwrap_or(pack), a.record.system.to_string(), a.record.object, a.record.id, a.field, a.old.as_ref().map(encode), encode(&a.new), a.reason.to_string()])?;
    }
    for (case_id, incident_id) in &outcome.links {
        tx.prepare_cached("INSERT INTO links (tenant, case_id, incident_id, created_at_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")?.execute(params![tenant, case_id, incident_id, now])?;
    }
    for (case_id, incident_id) in &outcome.unlinks {
        tx.prepare_cached("DELETE FROM links WHERE tenant = ?1 AND case_id = ?2 AND incident_id = ?3")?
            .execute(params![tenant, case_id, incident_id])?;
    }
    for (record, field, value) in &outcome.expect {
        tx.prepare_cached("INSERT INTO expected_echoes (tenant, system, object, record_id, field, value, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(params![tenant, record.system.to_string(), record.object, record.id, field, encode(value), now])?;
    }
    for echo in &outcome.consumed {
        tx.prepare_cached("DELETE FROM expected_echoes WHERE id = ?1")?.execute(params![echo])?;
    }
    tx.prepare_cached("DELETE FROM expected_echoes WHERE at_ms < ?1")?.execute(params![now - ECHO_WAIT_MS])?;
    Ok(())
}

/// How long a written value waits for its echo; a notification lost for longer is no longer expected.
const ECHO_WAIT_MS: i64 = 60 * 60 * 1000;

fn encode(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A stored value read back ([`encode`]'s inverse); unreadable as null.
pub(super) fn decode(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

/// An event ready to process, with what earlier attempts left behind.
#[derive(Clone, Debug)]
pub struct Due {
    pub entry: Entry,
    /// Earlier attempts, including any a crash cut short.
    pub attempts: u32,
    /// When its transient failures began ([`Journal::retry_later`]); `None` before the first.
    pub failing_since_ms: Option<i64>,
    /// What the actions an earlier attempt carried out left for the later ones (the partner
    /// it created, say), and their keys.
    pub carried: Carried,
    /// Later updates of the same record processed with this one, in order
    /// (coalesced: one pack call, one write, one outcome for them all).
    pub merged: Vec<Entry>,
}

impl Due {
    /// The journal ids of the events folded into this one.
    pub fn merged_ids(&self) -> Vec<i64> {
        self.merged.iter().map(|e| e.id).collect()
    }
}

/// One pending event as [`Journal::scan_pending`] passes it, read in place.
pub struct Pending<'a> {
    pub id: i64,
    pub record: &'a str,
    /// The partner the change names, when it names one.
    pub linked: Option<&'a str>,
    /// Not to run before then (a retry's backoff).
    pub next_at_ms: i64,
    pub attempts: u32,
    /// The event an earlier attempt folded this one into.
    pub merged_into: Option<i64>,
    /// `created`, `updated` or `deleted`.
    pub kind: Option<&'a str>,
}

/// Whether [`Journal::scan_pending`] goes on.
pub enum Scan {
    Next,
    Stop,
}

/// The link table as a scan asks it: the partners of a record, each record looked up once.
pub struct Partners<'a> {
    tenant: &'a str,
    query: rusqlite::CachedStatement<'a>,
    known: HashMap<String, Vec<String>>,
}

impl Partners<'_> {
    pub fn of(&mut self, record: &str) -> Result<&[String]> {
        if !self.known.contains_key(record) {
            let found = self
                .query
                .query_map(params![self.tenant, record], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            self.known.insert(record.to_string(), found);
        }
        Ok(&self.known[record])
    }
}

/// One row of the audit trail, as `audit_of` returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub event_key: String,
    pub pack: String,
    pub old: Option<Value>,
    pub new: Value,
    pub reason: String,
}

impl Journal {
    /// The pending events of `tenant` in the order they were received, up to 5,000 (how far
    /// past held-back events a claim looks for runnable ones), each shown to `visit` until it
    /// says [`Scan::Stop`]. It reads the last commit on the reading connection, so it does not
    /// wait for, or hold up, writes. Which events run is the dispatcher's decision
    /// (`engine::dispatcher::claim`); the journal only reads.
    pub fn scan_pending(
        &self,
        tenant: &str,
        mut visit: impl FnMut(&Pending<'_>, &mut Partners<'_>) -> Result<Scan>,
    ) -> Result<()> {
        let db = self.reader();
        // A literal limit, not a parameter: SQLite (3.48 on) re-prepares a statement
        // whose LIMIT is a parameter each time it is bound.
        let mut pending = db.prepare_cached(
            "SELECT id, record_id, linked_id, next_at_ms, attempts, merged_into, kind FROM events INDEXED BY events_due
             WHERE tenant = ?1 AND status = 'pending' ORDER BY id LIMIT 5000",
        )?;
        let mut partners = Partners {
            tenant,
            query: db.prepare_cached(
                "SELECT incident_id FROM links WHERE tenant = ?1 AND case_id = ?2 UNION ALL SELECT case_id FROM links WHERE tenant = ?1 AND incident_id = ?2",
            )?,
            known: HashMap::new(),
        };
        let mut rows = pending.query(params![tenant])?;
        // Most rows a busy scan passes are skipped: they are read in place, and
        // only the ones the visitor keeps are copied out.
        while let Some(r) = rows.next()? {
            let row = Pending {
                id: r.get(0)?,
                record: r.get_ref(1)?.as_str()?,
                linked: r.get_ref(2)?.as_str_or_null()?.filter(|l| !l.is_empty()),
                next_at_ms: r.get(3)?,
                attempts: r.get(4)?,
                merged_into: r.get(5)?,
                kind: r.get_ref(6)?.as_str_or_null()?,
            };
            if let Scan::Stop = visit(&row, &mut partners)? {
                break;
            }
        }
        Ok(())
    }

    /// A claimed event as the processor takes it: its entry, what earlier attempts left, and
    /// the events `merged` into it.
    pub fn load_due(&self, id: i64, merged: &[i64]) -> Result<Due> {
        let db = self.reader();
        let mut load = db.prepare_cached("SELECT tenant, event_key, change, status, attempts, progress_linked, received_at_ms, failing_since_ms FROM events WHERE id = ?1")?;
        let mut load = |id: i64| -> Result<(Entry, u32, Carried, Option<i64>)> {
            let (tenant, event_key, change, status, attempts, linked, received_at_ms, failing_since_ms) = load
                .query_row(params![id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, EventStatus>(3)?,
                        r.get::<_, u32>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                    ))
                })?;
            let change = stored_change::decode(&change).with_context(|| format!("journal event {id} is unreadable"))?;
            // Journals from before `Carried` hold the partner alone.
            let carried = linked
                .map(|l| {
                    serde_json::from_str::<Carried>(&l)
                        .or_else(|_| {
                            serde_json::from_str::<RecordRef>(&l)
                                .map(|r| Carried { linked: Some(r), ..Carried::default() })
                        })
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            Ok((Entry { id, tenant, event_key, change, status, received_at_ms }, attempts, carried, failing_since_ms))
        };
        let (entry, attempts, carried, failing_since_ms) = load(id)?;
        let merged = merged.iter().map(|&m| load(m).map(|(e, ..)| e)).collect::<Result<_>>()?;
        Ok(Due { entry, attempts, failing_since_ms, carried, merged })
    }

    /// Count each claimed event's attempt before it starts, and record which events it folds
    /// in: after a crash, `attempts > 0` tells the next attempt that an action not recorded
    /// as done may have half-happened, and `merged_into` that it folds in the same events as before.
    pub async fn count_attempts(&self, claimed: Vec<(i64, Vec<i64>)>) -> Result<()> {
        if claimed.is_empty() {
            return Ok(());
        }
        self.write_grouped(move |db| {
            for (id, merged) in &claimed {
                db.prepare_cached("UPDATE events SET attempts = attempts + 1 WHERE id = ?1")?.execute(params![id])?;
                for m in merged {
                    db.prepare_cached("UPDATE events SET attempts = attempts + 1, merged_into = ?2 WHERE id = ?1")?
                        .execute(params![m, id])?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Record the actions carried out so far (`carried.done`, by key) and what they leave
    /// for the later ones, with what their writes leave, in one transaction.
    pub async fn set_progress(
        &self,
        tenant: &str,
        id: i64,
        event_key: &str,
        pack: &str,
        carried: &Carried,
        writes: Outcome,
    ) -> Result<()> {
        let (tenant, event_key, pack, carried) =
            (tenant.to_string(), event_key.to_string(), pack.to_string(), serde_json::to_string(carried)?);
        self.write_grouped(move |db| {
            db.prepare_cached("UPDATE events SET progress_linked = ?2 WHERE id = ?1")?.execute(params![id, carried])?;
            commit_outcome(db, &tenant, &event_key, &pack, &writes)
        })
        .await
    }

    /// A transient failure: try again after `delay`. The first one starts the event's failing time.
    pub async fn retry_later(&self, id: i64, error: &str, delay: std::time::Duration) -> Result<()> {
        let now = self.clock.now_ms();
        let at = now + delay.as_millis() as i64;
        let error = error.to_string();
        self.write_grouped(move |db| {
            db.prepare_cached("UPDATE events SET next_at_ms = ?2, last_error = ?3, failing_since_ms = COALESCE(failing_since_ms, ?4) WHERE id = ?1")?.execute(params![id, at, error, now])?;
            Ok(())
        })
        .await
    }

    /// A permanent failure: the event, and the events merged into it, wait in
    /// the dead-letter queue (re-driving it re-drives them).
    pub async fn dead_letter(&self, id: i64, merged: &[i64], error: &str) -> Result<()> {
        self.dead_letter_audited(id, merged, error, None).await
    }

    /// As [`Journal::dead_letter`], with audit rows `(tenant, event key, rows)` saying why, in the same transaction.
    pub async fn dead_letter_audited(
        &self,
        id: i64,
        merged: &[i64],
        error: &str,
        audit: Option<(String, String, Vec<AuditRow>)>,
    ) -> Result<()> {
        let error = error.to_string();
        let ids: Vec<i64> = std::iter::once(id).chain(merged.iter().copied()).collect();
        self.write_grouped(move |db| {
            if let Some((tenant, event_key, rows)) = &audit {
                commit_outcome(db, tenant, event_key, "seam", &Outcome { audit: rows.clone(), ..Outcome::default() })?;
            }
            for &id in &ids {
                db.prepare_cached("UPDATE events SET status = 'dead', last_error = ?2 WHERE id = ?1")?
                    .execute(params![id, error])?;
                db.prepare_cached(
                    "INSERT INTO event_history (event_id, at_ms, what, detail) VALUES (?1, ?2, 'dead-lettered', ?3)",
                )?
                .execute(params![id, chrono::Utc::now().timestamp_millis(), error])?;
            }
            Ok(())
        })
        .await
    }

    /// Close an event with everything it changed, atomically (sharing the
    /// transaction, and its disk sync, with whatever else is being written).
    /// The events merged into it (`merged`) close with it; the outcome is recorded under its key.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        &self,
        tenant: &str,
        id: i64,
        merged: &[i64],
        event_key: &str,
        pack: &str,
        status: EventStatus,
        outcome: Outcome,
    ) -> Result<()> {
        let (tenant, event_key, pack) = (tenant.to_string(), event_key.to_string(), pack.to_string());
        let merged = merged.to_vec();
        self.write_grouped(move |db| {
            commit_outcome(db, &tenant, &event_key, &pack, &outcome)?;
            let news = (!outcome.news.is_empty()).then(|| serde_json::to_string(&outcome.news).unwrap_or_default());
            db.prepare_cached("UPDATE events SET status = ?2, last_error = NULL, news = ?3 WHERE id = ?1")?
                .execute(params![id, status, news])?;
            for &m in &merged {
                db.prepare_cached("UPDATE events SET status = ?2, last_error = NULL WHERE id = ?1")?
                    .execute(params![m, status])?;
            }
            Ok(())
        })
        .await
    }

    /// Record writes made outside any event (reconciliation, `seam link`), atomically: shadow, audit, links, expected echoes.
    pub async fn record_outcome(&self, tenant: &str, key: &str, pack: &str, outcome: Outcome) -> Result<()> {
        let (tenant, key, pack) = (tenant.to_string(), key.to_string(), pack.to_string());
        self.write_grouped(move |db| commit_outcome(db, &tenant, &key, &pack, &outcome)).await
    }

    /// The shadow of one record: field → last synced value.
    pub fn shadow(&self, tenant: &str, record: &RecordRef) -> Result<HashMap<String, Value>> {
        shadow_of(&self.reader(), tenant, record)
    }

    /// Values seam wrote to a record whose echoes have not come back: (id, field, value), oldest first.
    pub fn expected_echoes(&self, tenant: &str, record: &RecordRef) -> Result<Vec<(i64, String, Value)>> {
        expected_echoes_of(&self.reader(), tenant, record)
    }

    /// The incident linked to a Case, or the Case linked to an incident, from the local link table.
    pub fn link_of(&self, tenant: &str, record: &RecordRef) -> Result<Option<String>> {
        let db = self.reader();
        let sql = match record.system {
            crate::model::System::Salesforce => "SELECT incident_id FROM links WHERE tenant = ?1 AND case_id = ?2",
            _ => "SELECT case_id FROM links WHERE tenant = ?1 AND incident_id = ?2",
        };
        Ok(db.query_row(sql, params![tenant, record.id], |r| r.get(0)).optional()?)
    }

    /// Audit rows for one field of one record, oldest first.
    pub fn audit_of(&self, tenant: &str, record: &RecordRef, field: &str) -> Result<Vec<AuditEntry>> {
        let db = self.writer();
        let mut stmt = db.prepare_cached(
            "SELECT event_key, plugin, old_value, new_value, reason FROM audit
             WHERE tenant = ?1 AND system = ?2 AND object = ?3 AND record_id = ?4 AND field = ?5 ORDER BY id",
        )?;
        let rows =
            stmt.query_map(params![tenant, record.system.to_string(), record.object, record.id, field], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
        rows.map(|r| {
            let (event_key, pack, old, new, reason) = r?;
            Ok(AuditEntry {
                event_key,
                pack,
                old: old.and_then(|o| serde_json::from_str(&o).ok()),
                new: decode(&new),
                reason,
            })
        })
        .collect()
    }

    /// Count events by status (from the last commit).
    pub fn status_count(&self, tenant: &str, status: EventStatus) -> Result<u64> {
        let db = self.reader();
        let count = |r: &rusqlite::Row| r.get::<_, i64>(0);
        // Pending and dead counts read their partial indexes (named: without statistics the
        // planner would rather search the event-key index by tenant, every event of it).
        let n = match status {
            EventStatus::Pending => db.prepare_cached("SELECT COUNT(*) FROM events INDEXED BY events_waiting_by_record WHERE tenant = ?1 AND status = 'pending'")?.query_row(params![tenant], count)?,
            EventStatus::Dead => db.prepare_cached("SELECT COUNT(*) FROM events INDEXED BY events_dead WHERE tenant = ?1 AND status = 'dead'")?.query_row(params![tenant], count)?,
            settled => db.prepare_cached("SELECT COUNT(*) FROM events WHERE tenant = ?1 AND status = ?2")?.query_row(params![tenant, settled], count)?,
        };
        Ok(n as u64)
    }
}

/// An event that failed for good, waiting to be re-driven.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub tenant: String,
    pub event_key: String,
    pub record: RecordRef,
    pub attempts: u32,
    pub error: String,
    pub received_at_ms: i64,
}

impl Journal {
    /// Dead letters, oldest first; all tenants when `tenant` is None.
    pub fn dead_letters(&self, tenant: Option<&str>) -> Result<Vec<DeadLetter>> {
        let db = self.writer();
        let mut stmt = db.prepare_cached(
            "SELECT id, tenant, event_key, system, object, record_id, attempts, COALESCE(last_error, ''), received_at_ms
             FROM events WHERE status = 'dead' AND (?1 IS NULL OR tenant = ?1) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![tenant], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, u32>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, i64>(8)?,
            ))
        })?;
        rows.map(|r| {
            let (id, tenant, event_key, system, object, record_id, attempts, error, received_at_ms) = r?;
            Ok(DeadLetter {
                id,
                tenant,
                event_key,
                record: RecordRef { system: system.parse()?, object, id: record_id },
                attempts,
                error,
                received_at_ms,
            })
        })
        .collect()
    }

    /// The tenant an event belongs to, if there is such an event.
    pub fn event_tenant(&self, id: i64) -> Result<Option<String>> {
        let db = self.writer();
        Ok(db.query_row("SELECT tenant FROM events WHERE id = ?1", params![id], |r| r.get(0)).optional()?)
    }

    /// Put dead letters back in the queue (all of them when `ids` is None),
    /// noting who did (`by`: `cli`, `dashboard`) in the event's history. Returns how many.
    /// Progress is kept, so actions that already happened are not repeated.
    pub fn redrive(&self, ids: Option<&[i64]>, by: &str) -> Result<usize> {
        let mut db = self.writer();
        let tx = db.transaction()?;
        let ids: Vec<i64> = match ids {
            None => tx
                .prepare("SELECT id FROM events WHERE status = 'dead' ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?,
            Some(ids) => ids.to_vec(),
        };
        let now = chrono::Utc::now().timestamp_millis();
        for id in &ids {
            // Attempts are kept: they tell the processor to resume (not repeat) what an earlier attempt did.
            // A re-driven event gets a whole retry window again.
            let updated = tx.prepare_cached("UPDATE events SET status = 'pending', next_at_ms = 0, failing_since_ms = NULL WHERE status = 'dead' AND id = ?1")?.execute(params![id])?;
            anyhow::ensure!(
                updated == 1,
                "event {id} is not in the dead-letter queue (see `seam dlq list`); nothing was re-driven"
            );
            tx.prepare_cached(
                "INSERT INTO event_history (event_id, at_ms, what, detail) VALUES (?1, ?2, 're-driven', ?3)",
            )?
            .execute(params![id, now, format!("by {by}")])?;
            // The events merged into it go with it: its progress counts their actions too.
            let merged: Vec<i64> = tx
                .prepare_cached("SELECT id FROM events WHERE merged_into = ?1 AND status = 'dead'")?
                .query_map(params![id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for m in merged.iter().filter(|m| !ids.contains(m)) {
                tx.prepare_cached(
                    "UPDATE events SET status = 'pending', next_at_ms = 0, failing_since_ms = NULL WHERE id = ?1",
                )?
                .execute(params![m])?;
                tx.prepare_cached(
                    "INSERT INTO event_history (event_id, at_ms, what, detail) VALUES (?1, ?2, 're-driven', ?3)",
                )?
                .execute(params![m, now, format!("by {by}, with event {id}")])?;
            }
        }
        tx.commit()?;
        let changed = ids.len();
        drop(db);
        if changed > 0 {
            self.arrived.notify_waiters();
        }
        Ok(changed)
    }
}

impl Journal {
    /// How far catch-up polling has read a source (a timestamp in the source's own format).
    pub fn watermark(&self, tenant: &str, source: &str) -> Result<Option<String>> {
        let db = self.writer();
        Ok(db
            .query_row("SELECT value FROM watermarks WHERE tenant = ?1 AND source = ?2", params![tenant, source], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub async fn set_watermark(&self, tenant: &str, source: &str, value: &str) -> Result<()> {
        self.set_watermarks(tenant, &[(source, value)], &[]).await
    }

    pub async fn clear_watermark(&self, tenant: &str, source: &str) -> Result<()> {
        self.set_watermarks(tenant, &[], &[source]).await
    }

    /// Set some watermarks and clear others, all or none.
    pub async fn set_watermarks(&self, tenant: &str, set: &[(&str, &str)], clear: &[&str]) -> Result<()> {
        let tenant = tenant.to_string();
        let set: Vec<(String, String)> = set.iter().map(|(s, v)| (s.to_string(), v.to_string())).collect();
        let clear: Vec<String> = clear.iter().map(|s| s.to_string()).collect();
        self.write_grouped(move |db| {
            for (source, value) in &set {
                put_watermark(db, &tenant, source, value)?;
            }
            for source in &clear {
                db.prepare_cached("DELETE FROM watermarks WHERE tenant = ?1 AND source = ?2")?
                    .execute(params![tenant, source])?;
            }
            Ok(())
        })
        .await
    }
}

fn put_watermark(db: &Connection, tenant: &str, source: &str, value: &str) -> Result<()> {
    db.prepare_cached("INSERT INTO watermarks (tenant, source, value) VALUES (?1, ?2, ?3) ON CONFLICT (tenant, source) DO UPDATE SET value = excluded.value")?.execute(params![tenant, source, value])?;
    Ok(())
}

impl Journal {
    /// Audit rows written after row `after`, oldest first: (row id, record, field, entry).
    pub fn audit_after(&self, tenant: &str, after: i64) -> Result<Vec<(i64, RecordRef, String, AuditEntry)>> {
        let db = self.writer();
        let mut stmt = db.prepare_cached(
            "SELECT id, system, object, record_id, field, event_key, plugin, old_value, new_value, reason FROM audit WHERE tenant = ?1 AND id > ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![tenant, after], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                (r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                r.get::<_, String>(4)?,
                (
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ),
            ))
        })?;
        rows.map(|row| {
            let (id, (system, object, record_id), field, (event_key, pack, old, new, reason)) = row?;
            let record = RecordRef { system: system.parse()?, object, id: record_id };
            let entry = AuditEntry {
                event_key,
                pack,
                old: old.and_then(|o| serde_json::from_str(&o).ok()),
                new: decode(&new),
                reason,
            };
            Ok((id, record, field, entry))
        })
        .collect()
    }
}

/// One pack a tenant has run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PackRecord {
    pub id: i64,
    pub tenant: String,
    pub name: String,
    pub version: String,
    pub hash: String,
    pub signer: Option<String>,
    /// `config`, `admin`, `directory`, `rollback`.
    pub source: String,
    pub at_ms: i64,
    pub rolled_back: bool,
    /// Which of the tenant's packs this row is a version of: `mapping`, or a workflow's name.
    pub slot: String,
}

impl Journal {
    #[allow(clippy::too_many_arguments)]
    pub fn record_pack(
        &self,
        tenant: &str,
        slot: &str,
        name: &str,
        version: &str,
        hash: &str,
        signer: Option<&str>,
        source: &str,
    ) -> Result<()> {
        let db = self.writer();
        db.prepare_cached("INSERT INTO pack_history (tenant, slot, name, version, hash, signer, source, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?.execute(params![tenant, slot, name, version, hash, signer, source, chrono::Utc::now().timestamp_millis()])?;
        Ok(())
    }

    /// A tenant's packs, oldest first.
    pub fn pack_history(&self, tenant: &str) -> Result<Vec<PackRecord>> {
        let db = self.writer();
        let mut stmt = db.prepare_cached("SELECT id, tenant, name, version, hash, signer, source, at_ms, rolled_back, slot FROM pack_history WHERE tenant = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![tenant], |r| {
            Ok(PackRecord {
                id: r.get(0)?,
                tenant: r.get(1)?,
                name: r.get(2)?,
                version: r.get(3)?,
                hash: r.get(4)?,
                signer: r.get(5)?,
                source: r.get(6)?,
                at_ms: r.get(7)?,
                rolled_back: r.get::<_, i64>(8)? != 0,
                slot: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn mark_rolled_back(&self, id: i64) -> Result<()> {
        let db = self.writer();
        db.prepare_cached("UPDATE pack_history SET rolled_back = 1 WHERE id = ?1")?.execute(params![id])?;
        Ok(())
    }
}
