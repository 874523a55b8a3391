//! Change notifications pushed to the engine the way the real systems push
//! them: Salesforce Outbound Messages (SOAP, retried until `<Ack>true</Ack>`,
//! up to 100 per message), and the posts of ServiceNow business rules (seam's
//! push rule, once its update set is committed: see `servicenow::push`).
//!
//! Every notification is a row in SQLite before anything is sent, across
//! simulator restarts too. Outbound Messages are retried with exponential
//! backoff until the receiver acknowledges them, and go one envelope at a
//! time, in order. Business-rule posts go several at once, as ServiceNow's
//! async rules do, but one record's posts still go in order: its next waits
//! for the last. A rule's job is run when it is sent (an async rule reads the
//! record then), and gives up after the attempts its script makes.

use super::faults::FaultSwitch;
use super::store::Store;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Where notifications go, and in which form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    pub url: String,
    /// HMAC-SHA256 key for the `X-Seam-Signature` header.
    #[serde(default)]
    pub secret: Option<String>,
    /// `soap` (Salesforce Outbound Messages, Salesforce's default) or `json`
    /// (Salesforce change events; ServiceNow's only form).
    #[serde(default)]
    pub format: Option<Format>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Outbound Message: payloads are `<Notification>` elements, up to 100 per SOAP envelope, acknowledged with `<Ack>true</Ack>`.
    Soap,
    /// One JSON object per request, acknowledged by any 2xx.
    Json,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Soap => "soap",
            Format::Json => "json",
        }
    }
    fn parse(s: &str) -> Format {
        if s == "soap" {
            Format::Soap
        } else {
            Format::Json
        }
    }
}

/// What an Outbound Message envelope says about its sender.
pub struct SoapSender {
    pub organization_id: String,
    pub partner_url: String,
}

/// Runs a queued job when it is sent: the request to make, or why nothing is sent.
pub type Runner = Box<dyn Fn(&str) -> Result<Request, String> + Send + Sync>;

/// A request a job makes.
pub struct Request {
    pub url: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

pub struct Notifier {
    emulator: &'static str,
    store: Arc<Store>,
    faults: Arc<FaultSwitch>,
    /// The form used when a target names none.
    default_format: Format,
    soap: Option<SoapSender>,
    client: reqwest::Client,
    wake: tokio::sync::Notify,
    /// The stored target, read once: every change asks for it.
    target: std::sync::Mutex<Option<Option<NotifyTarget>>>,
    /// Turns a queued job into its request when it is sent (ServiceNow's business rules).
    runner: std::sync::OnceLock<Runner>,
    /// Attempts before a notification is given up (`None`: until acknowledged).
    attempts: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NotifyStats {
    pub pending: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// Given up after every attempt, or never sent because the job had nothing to send.
    pub abandoned: u64,
    pub failed_attempts: u64,
    pub last_error: Option<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// JSON notifications in flight at once (each for a different record), as
/// ServiceNow's pool of async business-rule workers sends them.
const PARALLEL_POSTS: usize = 32;

/// 100 ms, doubling, at most 10 s between attempts; with a runner (a business rule's
/// script), one second more after each failed attempt, as the script sleeps.
fn backoff(attempts: u32, scripted: bool) -> Duration {
    if scripted {
        return Duration::from_secs(u64::from(attempts) + 1);
    }
    Duration::from_millis((100u64 << attempts.min(7)).min(10_000))
}

impl Notifier {
    /// Notifications that are retried until acknowledged (Outbound Messages).
    pub fn new(
        emulator: &'static str,
        store: Arc<Store>,
        faults: Arc<FaultSwitch>,
        soap: Option<SoapSender>,
        ca_pem: &[u8],
    ) -> anyhow::Result<Self> {
        Self::with_attempts(emulator, store, faults, soap, ca_pem, None)
    }

    /// Jobs run by [`Notifier::set_runner`] when sent, given up after `attempts`.
    pub fn scripted(
        emulator: &'static str,
        store: Arc<Store>,
        faults: Arc<FaultSwitch>,
        ca_pem: &[u8],
        attempts: u32,
    ) -> anyhow::Result<Self> {
        Self::with_attempts(emulator, store, faults, None, ca_pem, Some(attempts))
    }

    fn with_attempts(
        emulator: &'static str,
        store: Arc<Store>,
        faults: Arc<FaultSwitch>,
        soap: Option<SoapSender>,
        ca_pem: &[u8],
        attempts: Option<u32>,
    ) -> anyhow::Result<Self> {
        // The emulators play Salesforce and ServiceNow calling out: they are not seam's connectors.
        #[allow(clippy::disallowed_methods, reason = "an emulator's own outbound client")]
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
        // The engine's intake may itself sit behind this simulator's certificate.
        if let Ok(ca) = reqwest::Certificate::from_pem(ca_pem) {
            client = client.add_root_certificate(ca);
        }
        let default_format = if soap.is_some() { Format::Soap } else { Format::Json };
        Ok(Notifier {
            emulator,
            store,
            faults,
            default_format,
            soap,
            client: client.build()?,
            wake: tokio::sync::Notify::new(),
            target: Default::default(),
            runner: Default::default(),
            attempts,
        })
    }

    /// How a queued job becomes a request when it is sent.
    pub fn set_runner(&self, runner: Runner) {
        let _ = self.runner.set(runner);
    }

    fn setting_key(&self) -> String {
        format!("notify.{}", self.emulator)
    }

    pub fn target(&self) -> Option<NotifyTarget> {
        let mut cached = self.target.lock().unwrap();
        cached
            .get_or_insert_with(|| self.store.setting(&self.setting_key()).and_then(|s| serde_json::from_str(&s).ok()))
            .clone()
    }

    /// The form notifications take now: the target's choice, else the emulator's default.
    pub fn format(&self) -> Option<Format> {
        self.target().map(|t| t.format.unwrap_or(self.default_format))
    }

    pub fn set_target(&self, target: Option<&NotifyTarget>) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.attempts.is_none(),
            "{} sends what its business rules send: import seam's update set (`seam servicenow update-set`) to install the push rule",
            self.emulator
        );
        match target.and_then(|t| t.format) {
            Some(Format::Soap) => anyhow::ensure!(self.soap.is_some(), "{} cannot send SOAP notifications; use format json", self.emulator),
            // An org pushes Outbound Messages; its change events are pulled from its Pub/Sub API.
            Some(Format::Json) => anyhow::ensure!(self.soap.is_none(), "{} pushes Outbound Messages (SOAP) only: its change events are served by its Pub/Sub API (pubsub_url in sim.json)", self.emulator),
            None => {}
        }
        let value = match target {
            Some(t) => serde_json::to_string(t)?,
            None => "null".to_string(),
        };
        self.store.set_setting(&self.setting_key(), &value)?;
        *self.target.lock().unwrap() = Some(target.cloned());
        self.wake.notify_one();
        Ok(())
    }

    /// A notification about `record`, to queue in the transaction of the write
    /// that causes it ([`Outgoing::queue_in`]), so the two land together or not
    /// at all, as on the real systems. None: no target is configured.
    /// Made before that transaction opens (the target is read through the store).
    pub fn outgoing(&self, record: &str) -> Option<Outgoing<'_>> {
        let target = self.target()?;
        let format = target.format.unwrap_or(self.default_format);
        Some(self.outgoing_to(record, &target.url, format))
    }

    /// A notification about `record` to `url` (a business rule's endpoint), whatever the target.
    pub fn outgoing_to(&self, record: &str, url: &str, format: Format) -> Outgoing<'_> {
        Outgoing {
            notifier: self,
            url: url.to_string(),
            format,
            record: record.to_string(),
            dropped: self.faults.drop_notification(),
        }
    }
}

/// See [`Notifier::outgoing`].
pub struct Outgoing<'a> {
    notifier: &'a Notifier,
    url: String,
    format: Format,
    record: String,
    /// A fault drops it: counted, never sent.
    dropped: bool,
}

impl Outgoing<'_> {
    pub fn format(&self) -> Format {
        self.format
    }

    /// Queue it inside the caller's transaction, `payload` built there in its form.
    pub fn queue_in(
        self,
        db: &Connection,
        payload: impl FnOnce(Format) -> anyhow::Result<String>,
    ) -> anyhow::Result<()> {
        let n = self.notifier;
        if self.dropped {
            super::store::next_in(db, &format!("notify.{}.dropped", n.emulator))?;
            tracing::info!(emulator = n.emulator, "fault injection: dropped a change notification");
            return Ok(());
        }
        db.prepare_cached(
            "INSERT INTO notifications (emulator, url, format, payload, record) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![n.emulator, self.url, self.format.as_str(), payload(self.format)?, self.record])?;
        // The delivery loop reads the queue under the store's lock, so it sees this row once the transaction commits.
        n.wake.notify_one();
        Ok(())
    }
}

impl Notifier {
    /// Notifications not yet delivered: what waiting for a quiet system polls (cheap,
    /// from the waiting index; [`Notifier::stats`] reads the whole history).
    pub fn pending(&self) -> u64 {
        self.store
            .with_db(|db| {
                db.prepare_cached("SELECT COUNT(*) FROM notifications INDEXED BY notifications_waiting WHERE delivered_at_ms IS NULL AND emulator = ?1")?
                    .query_row(params![self.emulator], |r| r.get::<_, i64>(0))
            })
            .unwrap_or(0) as u64
    }

    pub fn stats(&self) -> NotifyStats {
        let (pending, delivered, failed, last_error) = self
            .store
            .with_db(|db| {
                db.query_row(
                    "SELECT COALESCE(SUM(delivered_at_ms IS NULL), 0), COALESCE(SUM(delivered_at_ms IS NOT NULL AND last_error IS NULL), 0), COALESCE(SUM(attempts), 0),
                            (SELECT last_error FROM notifications WHERE emulator = ?1 AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
                     FROM notifications WHERE emulator = ?1",
                    params![self.emulator],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<String>>(3)?)),
                )
            })
            .unwrap_or((0, 0, 0, None));
        NotifyStats {
            pending: pending as u64,
            delivered: delivered as u64,
            dropped: self.store.counter(&format!("notify.{}.dropped", self.emulator)),
            abandoned: self.store.counter(&format!("notify.{}.abandoned", self.emulator)),
            failed_attempts: failed as u64,
            last_error,
        }
    }

    /// Deliver forever: the oldest pending notifications first, in order.
    ///
    /// A window of posts stays in flight: as each is acknowledged, the next
    /// due ones take its place (a round that waited for its slowest post
    /// would let one slow answer hold up every record).
    pub async fn run(self: Arc<Self>) {
        let mut sending = tokio::task::JoinSet::new();
        // Records (and, for notifications that name none, rows) with a post in flight.
        let mut busy = InFlight::default();
        loop {
            let room = PARALLEL_POSTS - sending.len();
            // Refill in handfuls: reading the queue for every single free slot costs more than it gains.
            let refill = sending.is_empty() || (room >= PARALLEL_POSTS / 4 && !busy.envelope);
            let mut wait = None;
            if refill {
                match self.next_batches(room, &busy) {
                    Ok(Due::Ready(batches)) => {
                        for batch in batches {
                            busy.add(&batch);
                            let me = self.clone();
                            sending.spawn(async move {
                                let result = me.send(&batch).await;
                                (batch, result)
                            });
                        }
                    }
                    Ok(Due::Wait(ms)) => wait = Some(Duration::from_millis(ms)),
                    Ok(Due::Nothing) => wait = Some(Duration::from_secs(5)),
                    Err(e) => {
                        tracing::error!(emulator = self.emulator, "reading the notification queue: {e:#}");
                        wait = Some(Duration::from_secs(1));
                    }
                }
            }
            if sending.is_empty() {
                let _ = tokio::time::timeout(wait.unwrap_or(Duration::from_secs(5)), self.wake.notified()).await;
                continue;
            }
            tokio::select! {
                sent = sending.join_next() => {
                    let Some(Ok(first)) = sent else { continue };
                    // Posts answered meanwhile are recorded with it, in one transaction.
                    let mut answered = vec![first];
                    while let Some(Ok(next)) = sending.try_join_next() {
                        answered.push(next);
                    }
                    self.record_deliveries(&answered);
                    for (batch, _) in &answered {
                        busy.remove(batch);
                    }
                }
                _ = self.wake.notified(), if refill => {}
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
            }
        }
    }

    fn record_deliveries(&self, answered: &[(Ready, Result<(), Failed>)]) {
        let recorded = self.store.with_db(|db| {
            let tx = db.unchecked_transaction()?;
            for (batch, result) in answered {
                for (id, _) in &batch.rows {
                    match result {
                        Ok(()) => tx.prepare_cached("UPDATE notifications SET delivered_at_ms = ?2, last_error = NULL WHERE id = ?1")?.execute(params![id, now_ms()])?,
                        // The last attempt, or nothing to send: given up, kept with its error.
                        Err(e) if e.gave_up || self.attempts.is_some_and(|n| batch.attempts + 1 >= n) => {
                            super::store::next_in(&tx, &format!("notify.{}.abandoned", self.emulator)).map_err(|err| rusqlite::Error::ToSqlConversionFailure(err.into()))?;
                            tx.prepare_cached("UPDATE notifications SET attempts = attempts + 1, delivered_at_ms = ?2, last_error = ?3 WHERE id = ?1")?
                                .execute(params![id, now_ms(), format!("gave up: {}", e.message)])?
                        }
                        Err(e) => tx
                            .prepare_cached("UPDATE notifications SET attempts = attempts + 1, next_at_ms = ?2, last_error = ?3 WHERE id = ?1")?
                            .execute(params![id, now_ms() + backoff(batch.attempts, self.runner.get().is_some()).as_millis() as i64, e.message])?,
                    };
                }
            }
            tx.commit()
        });
        if let Err(e) = recorded {
            tracing::error!(emulator = self.emulator, "recording deliveries: {e:#}");
        }
        for (_, result) in answered {
            if let Err(e) = result {
                tracing::debug!(emulator = self.emulator, "notification not acknowledged: {}", e.message);
            }
        }
    }

    /// What to send now, with `room` posts free: one Outbound Message of up to
    /// 100, in order, when nothing else is in flight; or up to `room` JSON posts,
    /// each the oldest undelivered one of a record with nothing in flight.
    fn next_batches(&self, room: usize, busy: &InFlight) -> anyhow::Result<Due> {
        // Nothing more may go until a post in flight is answered.
        if room == 0 || busy.envelope {
            return Ok(Due::Ready(Vec::new()));
        }
        // The head of the queue waiting out a backoff does not hold up other records' posts.
        let mut head_wait = None;
        if busy.is_empty() {
            match self.next_batch()? {
                None => return Ok(Due::Nothing),
                Some(Batch::Wait(ms)) => head_wait = Some(ms),
                Some(Batch::Ready(ready)) if ready.format != Format::Json => return Ok(Due::Ready(vec![ready])),
                Some(Batch::Ready(_)) => {}
            }
        }
        let now = now_ms();
        // Ids first, payloads only for the chosen: a burst leaves thousands queued.
        let (chosen, soonest) = self.store.with_db(|db| {
            let mut stmt = db.prepare_cached(
                "SELECT id, url, record, attempts, next_at_ms FROM notifications INDEXED BY notifications_waiting
                 WHERE emulator = ?1 AND delivered_at_ms IS NULL AND format = 'json' ORDER BY id LIMIT 2000",
            )?;
            let rows = stmt.query_map(params![self.emulator], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            let mut seen = std::collections::HashSet::new();
            let mut chosen = Vec::new();
            let mut soonest: Option<i64> = None;
            for row in rows {
                let (id, url, record, attempts, next_at) = row?;
                // Only a record's oldest undelivered notification may go; later ones wait for it.
                let first_of_record = if record.is_empty() {
                    !busy.rows.contains(&id)
                } else {
                    seen.insert(record.clone()) && !busy.records.contains(&record)
                };
                if !first_of_record {
                    continue;
                }
                if next_at > now {
                    soonest = Some(soonest.map_or(next_at, |s| s.min(next_at)));
                    continue;
                }
                chosen.push((id, url, record, attempts));
                if chosen.len() == room {
                    break;
                }
            }
            Ok((chosen, soonest))
        })?;
        if chosen.is_empty() {
            return Ok(match soonest {
                Some(at) => Due::Wait(((at - now).max(1) as u64).min(head_wait.unwrap_or(u64::MAX))),
                None if head_wait.is_some() => Due::Wait(head_wait.unwrap_or_default()),
                None if busy.is_empty() => Due::Nothing,
                None => Due::Ready(Vec::new()),
            });
        }
        let batches = self.store.with_db(|db| {
            let mut payload = db.prepare_cached("SELECT payload FROM notifications WHERE id = ?1")?;
            chosen
                .into_iter()
                .map(|(id, url, record, attempts)| {
                    let body: String = payload.query_row(params![id], |r| r.get(0))?;
                    Ok(Ready { url, format: Format::Json, attempts, record, rows: vec![(id, body)] })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(Due::Ready(batches))
    }

    fn next_batch(&self) -> anyhow::Result<Option<Batch>> {
        let head = self.store.with_db(|db| {
            db.query_row(
                "SELECT url, format, attempts, next_at_ms FROM notifications INDEXED BY notifications_waiting WHERE emulator = ?1 AND delivered_at_ms IS NULL ORDER BY id LIMIT 1",
                params![self.emulator],
                |r| Ok((r.get::<_, String>(0)?, Format::parse(&r.get::<_, String>(1)?), r.get::<_, u32>(2)?, r.get::<_, i64>(3)?)),
            )
            .map(Some)
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
        })?;
        let Some((url, format, attempts, next_at)) = head else { return Ok(None) };
        let wait = next_at - now_ms();
        if wait > 0 {
            return Ok(Some(Batch::Wait(wait as u64)));
        }
        // Salesforce packs up to 100 notifications into one Outbound Message; JSON goes one by one.
        // (The limit is a literal: SQLite re-prepares a statement whose LIMIT is a parameter each time it is bound.)
        macro_rules! waiting_up_to {
            ($limit:literal) => {
                concat!("SELECT id, payload FROM notifications INDEXED BY notifications_waiting WHERE emulator = ?1 AND delivered_at_ms IS NULL AND url = ?2 AND format = ?3 ORDER BY id LIMIT ", $limit)
            };
        }
        let sql = match format {
            Format::Soap => waiting_up_to!(100),
            Format::Json => waiting_up_to!(1),
        };
        let rows = self.store.with_db(|db| {
            let mut stmt = db.prepare_cached(sql)?;
            let rows = stmt.query_map(params![self.emulator, url, format.as_str()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(Some(Batch::Ready(Ready { url, format, attempts, record: String::new(), rows })))
    }

    async fn send(&self, batch: &Ready) -> Result<(), Failed> {
        if let Some(runner) = self.runner.get() {
            return self.run_job(runner, batch).await;
        }
        let target = self.target();
        let secret = target.as_ref().filter(|t| t.url == batch.url).and_then(|t| t.secret.clone());
        let payloads: Vec<&str> = batch.rows.iter().map(|r| r.1.as_str()).collect();
        let (content_type, body) = match (batch.format, &self.soap) {
            (Format::Soap, Some(sender)) => (
                "text/xml; charset=utf-8",
                super::salesforce::soap::outbound_message(&sender.organization_id, &sender.partner_url, &payloads),
            ),
            _ => ("application/json", payloads.join("")),
        };
        let mut request = self.client.post(&batch.url).header("Content-Type", content_type);
        if let Some(secret) = secret {
            for (name, value) in sign(&secret, body.as_bytes()) {
                request = request.header(name, value);
            }
        }
        if batch.format == Format::Soap {
            request = request.header("SOAPAction", "\"\"");
        }
        // The URL may carry the receiver's token (`?token=`): errors name the host and path only.
        let shown = redacted(&batch.url);
        let response =
            request.body(body).send().await.map_err(|e| Failed::retry(format!("POST {shown}: {}", e.without_url())))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let acked = match batch.format {
            Format::Soap => status.is_success() && text.to_ascii_lowercase().contains("<ack>true</ack>"),
            Format::Json => status.is_success(),
        };
        if acked {
            Ok(())
        } else {
            Err(Failed::retry(format!("{shown} answered {status}: {}", text.chars().take(300).collect::<String>())))
        }
    }

    /// A business rule's job: run now (it reads the record as it is now) and post what it makes.
    async fn run_job(&self, runner: &Runner, batch: &Ready) -> Result<(), Failed> {
        let job = batch.rows.first().map(|r| r.1.as_str()).unwrap_or_default();
        let request = runner(job).map_err(|why| {
            tracing::warn!(emulator = self.emulator, "a business rule sent nothing: {why}");
            Failed { message: why, gave_up: true }
        })?;
        let mut post = self.client.post(&request.url);
        for (name, value) in &request.headers {
            post = post.header(name, value);
        }
        let shown = redacted(&request.url);
        let response = post
            .body(request.body)
            .send()
            .await
            .map_err(|e| Failed::retry(format!("POST {shown}: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let message = format!("{shown} answered {status}: {}", text.chars().take(300).collect::<String>());
        // As the script does: a refusal other than 408 or 429 is not tried again.
        let gave_up = status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(Failed { message, gave_up })
    }
}

/// Why a post was not acknowledged, and whether it is given up now.
struct Failed {
    message: String,
    gave_up: bool,
}

impl Failed {
    fn retry(message: String) -> Self {
        Failed { message, gave_up: false }
    }
}

/// A URL without its query (which may hold a token) for logs and errors.
fn redacted(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// The headers that sign `body` now, as seam's push rule signs (`X-Seam-Timestamp`, `X-Seam-Signature`).
pub fn sign(secret: &str, body: &[u8]) -> [(String, String); 2] {
    crate::servicenow::push::signed_headers(secret, chrono::Utc::now().timestamp(), body)
}

enum Batch {
    Ready(Ready),
    Wait(u64),
}

enum Due {
    Ready(Vec<Ready>),
    Wait(u64),
    Nothing,
}

struct Ready {
    url: String,
    format: Format,
    attempts: u32,
    /// The record a JSON post is about (empty for an envelope, or a row that names none).
    record: String,
    rows: Vec<(i64, String)>,
}

/// What the notifier has in flight.
#[derive(Default)]
struct InFlight {
    /// An Outbound Message envelope: it goes alone, in order.
    envelope: bool,
    records: std::collections::HashSet<String>,
    rows: std::collections::HashSet<i64>,
}

impl InFlight {
    fn is_empty(&self) -> bool {
        !self.envelope && self.records.is_empty() && self.rows.is_empty()
    }
    fn add(&mut self, batch: &Ready) {
        match batch.format {
            Format::Soap => self.envelope = true,
            Format::Json if batch.record.is_empty() => self.rows.extend(batch.rows.iter().map(|r| r.0)),
            Format::Json => {
                self.records.insert(batch.record.clone());
            }
        }
    }
    fn remove(&mut self, batch: &Ready) {
        match batch.format {
            Format::Soap => self.envelope = false,
            Format::Json if batch.record.is_empty() => batch.rows.iter().for_each(|r| {
                self.rows.remove(&r.0);
            }),
            Format::Json => {
                self.records.remove(&batch.record);
            }
        }
    }
}
