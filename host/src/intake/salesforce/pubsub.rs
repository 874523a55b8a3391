//! Salesforce's changes as Change Data Capture events over the Pub/Sub API:
//! one subscription per topic (`/data/CaseChangeEvent`, the change events of
//! every other object the tenant's pack mirrors, and a platform event channel
//! if the configuration names one).
//!
//! - **Exactly once.** Each batch is journaled in one transaction with the
//!   replay id it reached, so a restart resumes right after what was stored:
//!   nothing is lost and nothing is stored twice. A keepalive's replay id is
//!   stored too.
//! - **Bounded.** The server owes at most [`MAX_REQUESTED`] events (it counts
//!   no more), and one batch is held while it is journaled (more are asked for
//!   as a batch arrives, so the next is on its way meanwhile): a slow engine
//!   slows the stream instead of filling memory.
//! - **Echo-free.** seam's own writes carry `Sforce-Call-Options:
//!   client=seam-<tenant>`, which their events report in `changeOrigin`; they
//!   are dropped here, at the source.
//! - **Gaps.** A stored replay id Salesforce no longer keeps (72 hours, or
//!   `…replayid.corrupted`) cannot be resumed: the subscription starts again
//!   at the tip and a catch-up poll reads what changed since the last stored
//!   commit. `GAP_*` events (the platform could not build the event) are read
//!   back through REST; `GAP_OVERFLOW` is polled. The poll is owed in the
//!   journal before the stream moves on: a poll that fails is tried again,
//!   and one a crash interrupted is paid after the restart.
//! - Connections that fail are retried with exponential backoff and jitter.

use crate::config::intake::PubSubSettings;
use crate::connectors::salesforce::pubsub::proto::{
    pub_sub_client::PubSubClient, FetchRequest, FetchResponse, ReplayPreset, SchemaRequest,
};
use crate::connectors::salesforce::pubsub::{self, event, CallMetadata, MAX_REQUESTED};
use crate::engine::apply::Systems;
use crate::engine::normalize;
use crate::engine::poller::Poller;
use crate::engine::processor::Counters;
use crate::model::{Change, ChangeKind};
use crate::store::Journal;
use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// How long Salesforce keeps events: a stored position older than this cannot be resumed.
pub const RETENTION: Duration = Duration::from_secs(72 * 3600);

/// The topics a tenant follows: Case's change events, those of every other object its pack mirrors, and the platform event channel.
pub fn topics(mirrored: impl IntoIterator<Item = String>, platform_event: Option<&str>) -> Vec<String> {
    let mut topics = vec![pubsub::change_event_topic("Case")];
    for object in mirrored {
        let topic = pubsub::change_event_topic(&object);
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    topics.extend(platform_event.map(str::to_string));
    topics
}

/// A subscription's stored position: the replay id reached, and the newest commit time seen (for gap recovery).
#[derive(Clone, Debug, PartialEq)]
pub struct Position {
    pub replay_id: Vec<u8>,
    /// Milliseconds since the epoch; 0 before any event.
    pub commit_ms: i64,
}

impl Position {
    fn parse(text: &str) -> Option<Position> {
        let (replay, at) = text.split_once('@')?;
        Some(Position { replay_id: hex::decode(replay).ok()?, commit_ms: at.parse().ok()? })
    }

    fn encode(&self) -> String {
        format!("{}@{}", hex::encode(&self.replay_id), self.commit_ms)
    }
}

/// The journal's name for a topic's position.
pub fn position_source(topic: &str) -> String {
    format!("pubsub:{topic}")
}

pub struct Subscriber {
    pub tenant: String,
    pub journal: Arc<Journal>,
    pub systems: Arc<Systems>,
    /// Reads what a gap left out.
    pub poller: Arc<Poller>,
    pub counters: Counters,
    /// The org's id (`tenantid`).
    pub org_id: String,
    pub channel: tonic::transport::Channel,
    schemas: Mutex<HashMap<String, Arc<apache_avro::Schema>>>,
}

/// What a batch's events turn into.
struct Batch {
    changes: Vec<(String, Change)>,
    /// seam's own writes, dropped.
    echoes: u64,
    /// A `GAP_OVERFLOW`: what changed since then must be polled.
    overflow_since: Option<i64>,
    newest_commit: i64,
}

impl Subscriber {
    #[allow(clippy::too_many_arguments, reason = "one stream's dependencies, each named at the one call")]
    pub fn new(
        tenant: &str,
        journal: Arc<Journal>,
        systems: Arc<Systems>,
        poller: Arc<Poller>,
        counters: Counters,
        org_id: &str,
        settings: &PubSubSettings,
        ca_pem: Option<&std::path::Path>,
    ) -> Result<Subscriber> {
        let channel =
            pubsub::channel(&settings.url, ca_pem).with_context(|| format!("tenant {tenant}: the Pub/Sub endpoint"))?;
        Ok(Subscriber {
            tenant: tenant.into(),
            journal,
            systems,
            poller,
            counters,
            org_id: org_id.into(),
            channel,
            schemas: Default::default(),
        })
    }

    /// Follow every topic until the process ends (or the tasks are aborted).
    pub fn start(self: &Arc<Self>, topics: Vec<String>) -> Vec<tokio::task::JoinHandle<()>> {
        topics
            .into_iter()
            .map(|topic| {
                let me = self.clone();
                tokio::spawn(async move { me.follow(topic).await })
            })
            .collect()
    }

    async fn follow(self: Arc<Self>, topic: String) {
        let mut failures = 0u32;
        loop {
            match self.subscribe(&topic).await {
                Ok(()) => failures = 0,
                // Start again at the tip at once; the owed poll covers what lies between.
                Err(Interrupted::Gap) => continue,
                Err(Interrupted::Failed(e)) => {
                    failures += 1;
                    tracing::warn!(tenant = %self.tenant, topic, "the Pub/Sub subscription stopped, reconnecting: {e:#}");
                }
            }
            tokio::time::sleep(backoff(failures)).await;
        }
    }

    /// One Subscribe call, until it ends.
    async fn subscribe(&self, topic: &str) -> Result<(), Interrupted> {
        let source = position_source(topic);
        let (tenant, at) = (self.tenant.clone(), source.clone());
        let stored = self
            .journal
            .run(move |j| j.watermark(&tenant, &at))
            .await
            .map_err(Interrupted::Failed)?
            .and_then(|p| Position::parse(&p));
        let mut position = stored.clone().unwrap_or(Position { replay_id: vec![], commit_ms: 0 });
        // Too old to resume: Salesforce no longer has what followed it.
        if let Some(p) = &stored {
            let age = chrono::Utc::now().timestamp_millis() - p.commit_ms;
            if p.commit_ms > 0 && age > RETENTION.as_millis() as i64 {
                return Err(self.gap(topic, p, "it is older than the 72 hours Salesforce keeps events").await);
            }
        }
        let session = self.systems.salesforce.session().await.map_err(|e| Interrupted::Failed(e.into()))?;
        let metadata = CallMetadata {
            access_token: session.access.clone(),
            instance_url: session.instance_url.clone().unwrap_or_default(),
            tenant_id: self.org_id.clone(),
        };
        // A first start of the Case topic: Cases changed from now on are news, and a poll
        // covers those changed before the subscription stands.
        if stored.is_none() && topic == pubsub::change_event_topic("Case") {
            self.poller.owe_cases(None).await.map_err(Interrupted::Failed)?;
        }
        let (preset, replay_id) = match &stored {
            Some(p) if !p.replay_id.is_empty() => (ReplayPreset::Custom, p.replay_id.clone()),
            // A first start: what happened before is history (`seam backfill` brings it).
            _ => (ReplayPreset::Latest, vec![]),
        };
        let (requests, outgoing) = tokio::sync::mpsc::channel(4);
        let first = FetchRequest {
            topic_name: topic.to_string(),
            replay_preset: preset as i32,
            replay_id,
            num_requested: MAX_REQUESTED,
            auth_refresh: String::new(),
        };
        requests.send(first).await.map_err(|_| Interrupted::Failed(anyhow!("the request stream closed")))?;
        let mut client = PubSubClient::new(self.channel.clone()).max_decoding_message_size(64 << 20);
        let call =
            client.subscribe(metadata.request(ReceiverStream::new(outgoing)).map_err(Interrupted::Failed)?).await;
        let mut stream = match call {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(self.refused(topic, status, stored.as_ref(), &session).await),
        };
        tracing::info!(tenant = %self.tenant, topic, resume = stored.is_some(), "subscribed to Salesforce change events");
        // A poll owed (a gap, a first start, or one that failed before) is paid once the
        // subscription stands, so nothing falls between the poll and the stream.
        let mut debt = Debt { owed: true, ..Default::default() };
        self.pay(topic, &mut debt).await;
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return Ok(()),
                Err(status) => return Err(self.refused(topic, status, stored.as_ref(), &session).await),
            };
            // Ask for more before storing this batch, so the next one is on its way while the journal
            // commits; what is held stays bounded: this batch, and at most the limit owed.
            let pending = response.pending_num_requested;
            if pending <= MAX_REQUESTED / 2 {
                let more = FetchRequest { num_requested: MAX_REQUESTED - pending, ..Default::default() };
                if requests.send(more).await.is_err() {
                    return Ok(());
                }
            }
            let batch = self.read(topic, &response, &metadata).await.map_err(Interrupted::Failed)?;
            // The replay id reached: the last event's, or what a keepalive reports.
            position.replay_id = response
                .events
                .last()
                .map(|e| e.replay_id.clone())
                .filter(|r| !r.is_empty())
                .unwrap_or(response.latest_replay_id.clone());
            position.commit_ms = position.commit_ms.max(batch.newest_commit);
            if !position.replay_id.is_empty() {
                self.journal
                    .record_up_to(
                        &self.tenant,
                        batch.changes,
                        crate::engine::echoes::settled_echo,
                        &source,
                        &position.encode(),
                    )
                    .await
                    .map_err(Interrupted::Failed)?;
            }
            if batch.echoes > 0 {
                self.counters.processed.inc_by(batch.echoes);
                self.counters.echoes.inc_by(batch.echoes);
            }
            if let Some(since) = batch.overflow_since {
                self.poller.owe_cases(Some(since)).await.map_err(Interrupted::Failed)?;
                debt = Debt { owed: true, ..Default::default() };
            }
            // Keepalives come at least every few minutes, so a poll that failed is tried again.
            self.pay(topic, &mut debt).await;
        }
    }

    /// Why a call failed, and what to do: a gap to recover, or a reconnect.
    async fn refused(
        &self,
        topic: &str,
        status: tonic::Status,
        stored: Option<&Position>,
        session: &Arc<crate::connectors::token::Token>,
    ) -> Interrupted {
        let code = pubsub::error_code(&status).unwrap_or_default().to_string();
        if code.contains("replayid.corrupted") || code.contains("replayid.validation.failed") {
            if let Some(p) = stored {
                return self.gap(topic, p, &format!("Salesforce refused it ({code})")).await;
            }
        }
        if status.code() == tonic::Code::Unauthenticated {
            self.systems.salesforce.session_refused(session);
        }
        Interrupted::Failed(anyhow!(
            "{} {}: {}",
            status.code(),
            if code.is_empty() { "" } else { &code },
            status.message()
        ))
    }

    /// A stored position that cannot be resumed: owe a poll from its commit time, count the gap,
    /// and forget the position. The debt is stored first: a crash in between resumes at the
    /// position again, and finds the same gap.
    async fn gap(&self, topic: &str, position: &Position, why: &str) -> Interrupted {
        self.counters.stream_gaps.inc();
        let since = chrono::DateTime::from_timestamp_millis(position.commit_ms).filter(|_| position.commit_ms > 0);
        let from = since.map(|t| t.to_rfc3339()).unwrap_or_else(|| "the last catch-up poll".into());
        tracing::warn!(tenant = %self.tenant, topic, "cannot resume the Pub/Sub subscription at its stored replay id: {why}. Subscribing at the tip; a catch-up poll reads what changed since {from}");
        // A position that never saw a commit (only keepalives) has no time of its own: never the
        // epoch, which would bring the org's whole history; the Case watermark says where to read.
        if let Err(e) = self.poller.owe_cases(since.map(|_| position.commit_ms)).await {
            return Interrupted::Failed(e.context("storing the catch-up poll a Pub/Sub gap needs"));
        }
        if let Err(e) = self.journal.clear_watermark(&self.tenant, &position_source(topic)).await {
            return Interrupted::Failed(e);
        }
        Interrupted::Gap
    }

    /// Pay the owed catch-up poll, if any, and if a failed one is due for another try.
    async fn pay(&self, topic: &str, debt: &mut Debt) {
        if !debt.owed || debt.retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
            return;
        }
        match self.poller.pay_cases().await {
            Ok(None) => *debt = Debt::default(),
            Ok(Some(n)) => {
                *debt = Debt::default();
                tracing::info!(tenant = %self.tenant, topic, "the catch-up poll journaled {n} change(s) the stream did not bring");
            }
            Err(e) => {
                self.counters.catch_up_failures.inc();
                debt.failures += 1;
                let wait = backoff(debt.failures);
                debt.retry_at = Some(tokio::time::Instant::now() + wait);
                tracing::error!(tenant = %self.tenant, topic, "the catch-up poll for a Pub/Sub gap failed; it stays owed and is tried again in {wait:?}: {e:#}");
            }
        }
    }

    /// A batch's events as changes: one per record id; seam's own dropped; gaps read back.
    async fn read(&self, topic: &str, response: &FetchResponse, metadata: &CallMetadata) -> Result<Batch> {
        // seam's own writes: made through the connection the processor writes with.
        let client = self.systems.salesforce.client_id().to_string();
        let mut batch = Batch { changes: Vec::new(), echoes: 0, overflow_since: None, newest_commit: 0 };
        for consumer_event in &response.events {
            let Some(e) = &consumer_event.event else { continue };
            let replay = hex::encode(&consumer_event.replay_id);
            let schema = self.schema(&e.schema_id, metadata).await?;
            let decoded = match event::decode(&schema, &e.payload) {
                Ok(d) => d,
                Err(why) => {
                    // It will not decode better next time: skip it, loudly, rather than stall the stream.
                    tracing::error!(tenant = %self.tenant, topic, replay, "skipping an event that does not decode: {why}");
                    continue;
                }
            };
            let Some(header) = &decoded.header else {
                // A platform event: a new record of its own kind, for the packs.
                let object = topic.rsplit('/').next().unwrap_or(topic);
                let mut fields = decoded.fields.clone();
                fields.insert("Id".into(), Value::String(e.id.clone()));
                let key = format!("sf-pe:{replay}");
                batch
                    .changes
                    .push((key.clone(), normalize::salesforce(&key, ChangeKind::Created, object, &fields, None)));
                continue;
            };
            batch.newest_commit = batch.newest_commit.max(header.commit_timestamp);
            if decoded.made_by_client(&client) {
                batch.echoes += header.record_ids.len() as u64;
                continue;
            }
            match header.change_type.as_str() {
                "CREATE" | "UNDELETE" | "UPDATE" | "DELETE" => batch.changes.extend(changes(&decoded, header, &replay)),
                "GAP_OVERFLOW" => {
                    batch.overflow_since =
                        Some(batch.overflow_since.unwrap_or(i64::MAX).min(header.commit_timestamp.saturating_sub(1000)))
                }
                // A gap naming a key prefix (`500*`, every record of the object) is read as an overflow is.
                gap if gap.starts_with("GAP_") && header.record_ids.iter().any(|id| id.contains('*')) => {
                    batch.overflow_since = Some(
                        batch.overflow_since.unwrap_or(i64::MAX).min(header.commit_timestamp.saturating_sub(1000)),
                    );
                }
                gap if gap.starts_with("GAP_") => {
                    for id in &header.record_ids {
                        batch.changes.extend(self.read_back(topic, &header.entity_name, id, &replay).await?);
                    }
                }
                other => {
                    tracing::warn!(tenant = %self.tenant, topic, replay, "skipping a change event of unknown type {other}")
                }
            }
        }
        Ok(batch)
    }

    /// A record the platform could not describe in its event (`GAP_*`), as it is now.
    /// `None` when the org refuses the read: retrying the batch would be refused again, and
    /// the topic would stall behind it, so the record is skipped, loudly (reconcile finds its drift).
    async fn read_back(&self, topic: &str, object: &str, id: &str, replay: &str) -> Result<Option<(String, Change)>> {
        let key = format!("sf-cdc:{replay}:{id}");
        match self.systems.salesforce.get(object, id).await {
            Ok(mut record) => {
                record.remove("attributes");
                Ok(Some((key.clone(), normalize::salesforce(&key, ChangeKind::Updated, object, &record, None))))
            }
            Err(crate::connectors::ConnectorError::Refused { status: 404, .. }) => {
                let fields = serde_json::Map::from_iter([("Id".to_string(), Value::String(id.into()))]);
                Ok(Some((key.clone(), normalize::salesforce(&key, ChangeKind::Deleted, object, &fields, None))))
            }
            Err(
                e @ (crate::connectors::ConnectorError::Refused { .. }
                | crate::connectors::ConnectorError::Invalid { .. }),
            ) => {
                tracing::error!(tenant = %self.tenant, topic, replay, "skipping {object} {id}, which a gap event named: the org refused to read it back ({e}); check the integration user's access to {object}");
                Ok(None)
            }
            Err(e) => Err(anyhow!("reading back {object} {id} after a gap event: {e}")),
        }
    }

    /// A schema by id, fetched once.
    async fn schema(&self, id: &str, metadata: &CallMetadata) -> Result<Arc<apache_avro::Schema>> {
        if let Some(s) = self.schemas.lock().unwrap().get(id) {
            return Ok(s.clone());
        }
        let mut client = PubSubClient::new(self.channel.clone());
        let info = client
            .get_schema(metadata.request(SchemaRequest { schema_id: id.to_string() })?)
            .await
            .map_err(|s| anyhow!("GetSchema {id}: {} {}", s.code(), s.message()))?
            .into_inner();
        let schema = Arc::new(
            apache_avro::Schema::parse_str(&info.schema_json)
                .with_context(|| format!("the schema {id} is not an Avro schema"))?,
        );
        self.schemas.lock().unwrap().insert(id.to_string(), schema.clone());
        Ok(schema)
    }
}

/// Why a subscription ended.
enum Interrupted {
    /// Its stored position cannot be resumed: start at the tip (a poll is owed for what lies between).
    Gap,
    Failed(anyhow::Error),
}

/// A subscription's view of the owed catch-up poll (the journal holds the debt itself).
#[derive(Default)]
struct Debt {
    /// Whether one may be owed: the journal is asked only then, not at every batch.
    owed: bool,
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
}

/// The changes one event stands for: one per record it names.
pub fn changes(decoded: &event::Event, header: &event::Header, replay: &str) -> Vec<(String, Change)> {
    let kind = match header.change_type.as_str() {
        "CREATE" | "UNDELETE" => ChangeKind::Created,
        "DELETE" => ChangeKind::Deleted,
        _ => ChangeKind::Updated,
    };
    let changed: Option<Vec<&str>> =
        (kind == ChangeKind::Updated).then(|| header.changed_fields.iter().map(String::as_str).collect());
    header
        .record_ids
        .iter()
        .map(|id| {
            let mut fields = decoded.fields.clone();
            for nulled in &header.nulled_fields {
                fields.insert(nulled.clone(), Value::Null);
            }
            fields.insert("Id".into(), Value::String(id.clone()));
            fields.insert("LastModifiedById".into(), Value::String(header.commit_user.clone()));
            // The record's version, which change events leave out: the echo filter knows an event
            // older than what a poll or a read-back already brought by it.
            if let Some(stamp) = fields
                .get("LastModifiedDate")
                .cloned()
                .or_else(|| event::format_datetime(header.commit_timestamp).map(Value::String))
            {
                fields.entry("SystemModstamp").or_insert(stamp);
            }
            // Keyed by the event: modification stamps count whole seconds on a real org, and two
            // transactions in one second are two events, each with changes of its own. The same
            // change read again by a poll is journaled too, and is no news against the shadow.
            let key = format!("sf-cdc:{replay}:{id}");
            let mut change = normalize::salesforce(&key, kind, &header.entity_name, &fields, changed.as_deref());
            change.origin_user = header.commit_user.clone();
            (key, change)
        })
        .collect()
}

/// 1 s doubling to a minute, each wait somewhere between half and all of it.
fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::from_millis(100);
    }
    let full = Duration::from_secs(1 << failures.min(6)).min(Duration::from_secs(60));
    full.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}
