//! The org's Pub/Sub API (`eventbus.v1.PubSub`) over TLS on its own port, as
//! `api.pubsub.salesforce.com:7443` serves it: `GetTopic`, `GetSchema` and
//! `Subscribe` on the change event bus ([`super::change_events`]).
//!
//! Every call must carry the metadata Salesforce asks for: `accesstoken` (a
//! session of the org), `instanceurl` (its My Domain URL) and `tenantid` (its
//! id). Failures are answered with the gRPC status and the `error-code`
//! trailer Salesforce uses (`…service.auth.error`, `…replayid.corrupted`).
//!
//! A subscription sends no more events than it was asked for
//! (`num_requested`, at most 100 owed), in batches as they come, and an empty
//! keepalive carrying the newest replay id when it owes events and has had
//! none to send for the keepalive period.

use super::change_events::{change_event_topic, Bus, ALL_CHANGE_EVENTS};
use crate::Emulator;
use proto::pub_sub_server::PubSub;
use std::sync::Arc;
use std::time::Duration;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};

/// The server side of `eventbus.v1`, generated from `proto/` at the workspace's top.
#[allow(clippy::all)]
pub mod proto {
    tonic::include_proto!("eventbus.v1");
}

/// The most events a subscription may have requested and not yet received.
const MAX_REQUESTED: i32 = 100;

const AUTH_ERROR: &str = "sfdc.platform.eventbus.grpc.service.auth.error";
const REPLAY_CORRUPTED: &str = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted";
const REPLAY_VALIDATION: &str = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed";
const TOPIC_NOT_FOUND: &str = "sfdc.platform.eventbus.grpc.topic.not.found";
const TOPIC_MISMATCH: &str = "sfdc.platform.eventbus.grpc.subscription.fetch.topic.mismatch";
const SCHEMA_VALIDATION: &str = "sfdc.platform.eventbus.grpc.schema.validation.failed";

pub struct Service {
    pub emulator: Arc<Emulator>,
    pub bus: Arc<Bus>,
}

/// A failed call as Salesforce reports it: the message ends with the call's rpc id, and
/// the trailers carry `error-code` and `rpc-id`.
fn failure(code: Code, error_code: &str, message: &str) -> Status {
    let rpc = rpc_id();
    let mut metadata = MetadataMap::new();
    metadata.insert("error-code", error_code.parse().expect("error codes are ASCII"));
    metadata.insert("rpc-id", rpc.parse().expect("rpc ids are ASCII"));
    Status::with_metadata(code, format!("{message} rpcId: {rpc}"), metadata)
}

fn rpc_id() -> String {
    super::change_events::uuid_like()
}

/// Replay ids are opaque to clients; here, the bus position as 8 bytes, big-endian.
pub fn replay_bytes(replay: u64) -> Vec<u8> {
    replay.to_be_bytes().to_vec()
}

fn replay_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl Service {
    /// The user whose session the call carries, once the org and its URL match.
    fn authenticate(&self, metadata: &MetadataMap) -> Result<String, Status> {
        let header =
            |name: &str| metadata.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
        let refused = || {
            failure(
                Code::Unauthenticated,
                AUTH_ERROR,
                "An authentication exception occurred. Provide valid authentication via metadata headers.",
            )
        };
        let (Some(token), Some(instance), Some(tenant)) =
            (header("accesstoken"), header("instanceurl"), header("tenantid"))
        else {
            return Err(refused());
        };
        if tenant != super::ORG_ID || instance.trim_end_matches('/') != self.emulator.base_url {
            return Err(refused());
        }
        self.emulator.store.setting(&format!("sf.session.{token}")).ok_or_else(refused)
    }

    /// The topic's object, if it is a change event channel of an object with change events on.
    fn topic_exists(&self, topic: &str) -> Result<Option<&'static super::schema::ObjectDef>, Status> {
        if topic.is_empty() {
            return Err(failure(
                Code::InvalidArgument,
                "sfdc.platform.eventbus.grpc.topic.validation.empty",
                "The topic name can't be blank.",
            ));
        }
        if topic == ALL_CHANGE_EVENTS {
            return Ok(None);
        }
        let object = super::schema::all().iter().find(|o| o.notifies && change_event_topic(o.name) == topic);
        match object {
            Some(o) => Ok(Some(o)),
            None => Err(failure(
                Code::NotFound,
                TOPIC_NOT_FOUND,
                &format!("The topic information for org CORE/prod/{} and topic {topic} not found. Ensure the topic name is correct and that the topic exists.", super::ORG_ID),
            )),
        }
    }

    fn removed(&self) -> Vec<String> {
        self.emulator.removed_fields.read().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

#[tonic::async_trait]
impl PubSub for Service {
    type SubscribeStream = ReceiverStream<Result<proto::FetchResponse, Status>>;
    type PublishStreamStream = ReceiverStream<Result<proto::PublishResponse, Status>>;
    type ManagedSubscribeStream = ReceiverStream<Result<proto::ManagedFetchResponse, Status>>;

    async fn get_topic(&self, request: Request<proto::TopicRequest>) -> Result<Response<proto::TopicInfo>, Status> {
        self.authenticate(request.metadata())?;
        let topic = request.into_inner().topic_name;
        let schema_id = match self.topic_exists(&topic)? {
            Some(object) => {
                self.bus.schema(object, &self.removed()).map_err(|e| Status::internal(format!("{e:#}")))?.id.clone()
            }
            None => String::new(),
        };
        Ok(Response::new(proto::TopicInfo {
            topic_name: topic,
            tenant_guid: super::ORG_ID.into(),
            can_publish: false,
            can_subscribe: true,
            schema_id,
            rpc_id: rpc_id(),
        }))
    }

    async fn get_schema(&self, request: Request<proto::SchemaRequest>) -> Result<Response<proto::SchemaInfo>, Status> {
        self.authenticate(request.metadata())?;
        let id = request.into_inner().schema_id;
        if id.trim().is_empty() {
            return Err(failure(
                Code::InvalidArgument,
                SCHEMA_VALIDATION,
                "Schema validation failed. The schema ID can't be blank.",
            ));
        }
        match self.bus.schema_json(&id) {
            Some(schema_json) => Ok(Response::new(proto::SchemaInfo { schema_json, schema_id: id, rpc_id: rpc_id() })),
            None => Err(failure(
                Code::NotFound,
                "sfdc.platform.eventbus.grpc.schema.not.found",
                &format!("The schema {id} was not found."),
            )),
        }
    }

    async fn subscribe(
        &self,
        request: Request<Streaming<proto::FetchRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.authenticate(request.metadata())?;
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before its first FetchRequest"))?;
        let topic = first.topic_name.clone();
        self.topic_exists(&topic)?;
        if let Err(e) = self.bus.purge() {
            tracing::error!("purging old change events: {e:#}");
        }
        let horizon = self.bus.horizon();
        let tip = self.bus.tip();
        let position = match proto::ReplayPreset::try_from(first.replay_preset).unwrap_or(proto::ReplayPreset::Latest) {
            proto::ReplayPreset::Latest => tip,
            proto::ReplayPreset::Earliest => horizon,
            proto::ReplayPreset::Custom if first.replay_id.is_empty() => {
                return Err(failure(Code::InvalidArgument, REPLAY_VALIDATION, "The Replay ID validation failed. A CUSTOM replay preset needs a replay ID."));
            }
            proto::ReplayPreset::Custom => match replay_of(&first.replay_id) {
                Some(replay) if replay >= horizon && replay <= tip => replay,
                _ => {
                    return Err(failure(
                        Code::InvalidArgument,
                        REPLAY_CORRUPTED,
                        "The Replay ID validation failed. Ensure that the Replay ID is valid and is within the retention window.",
                    ))
                }
            },
        };
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let subscription =
            Subscription { bus: self.bus.clone(), emulator: self.emulator.clone(), topic, position, owed: 0, tx };
        tokio::spawn(subscription.run(first.num_requested, inbound));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn publish(&self, _: Request<proto::PublishRequest>) -> Result<Response<proto::PublishResponse>, Status> {
        Err(Status::unimplemented("the emulated org publishes change events only; Publish is not emulated"))
    }

    async fn publish_stream(
        &self,
        _: Request<Streaming<proto::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        Err(Status::unimplemented("the emulated org publishes change events only; PublishStream is not emulated"))
    }

    async fn managed_subscribe(
        &self,
        _: Request<Streaming<proto::ManagedFetchRequest>>,
    ) -> Result<Response<Self::ManagedSubscribeStream>, Status> {
        Err(Status::unimplemented("ManagedSubscribe (beta) is not emulated; use Subscribe"))
    }
}

struct Subscription {
    bus: Arc<Bus>,
    emulator: Arc<Emulator>,
    topic: String,
    /// The last replay id this subscription has read past (events of other topics included).
    position: u64,
    /// Events requested and not yet sent.
    owed: i32,
    tx: tokio::sync::mpsc::Sender<Result<proto::FetchResponse, Status>>,
}

impl Subscription {
    fn ask(&mut self, n: i32) {
        self.owed = (self.owed + n.max(0)).min(MAX_REQUESTED);
    }

    async fn run(mut self, first: i32, mut inbound: Streaming<proto::FetchRequest>) {
        self.ask(first);
        let mut tip = self.bus.watch();
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            match self.deliver().await {
                Ok(true) => quiet_since = tokio::time::Instant::now(),
                Ok(false) => {}
                Err(status) => {
                    let _ = self.tx.send(Err(status)).await;
                    return;
                }
            }
            let keepalive = Duration::from_secs_f64(self.bus.settings().keepalive_seconds.max(0.05));
            tokio::select! {
                request = inbound.message() => match request {
                    Ok(Some(r)) if !r.topic_name.is_empty() && r.topic_name != self.topic => {
                        let _ = self.tx.send(Err(failure(Code::InvalidArgument, TOPIC_MISMATCH, "The topic name in a FetchRequest must match the subscription's topic."))).await;
                        return;
                    }
                    Ok(Some(r)) => self.ask(r.num_requested),
                    // The client went away.
                    Ok(None) | Err(_) => return,
                },
                changed = tip.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(quiet_since + keepalive) => {
                    if self.owed > 0 {
                        let keepalive = proto::FetchResponse { events: vec![], latest_replay_id: replay_bytes(self.position), rpc_id: rpc_id(), pending_num_requested: self.owed };
                        if self.tx.send(Ok(keepalive)).await.is_err() {
                            return;
                        }
                    }
                    quiet_since = tokio::time::Instant::now();
                }
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Send what is owed and there; whether anything was sent.
    async fn deliver(&mut self) -> Result<bool, Status> {
        let mut sent = false;
        while self.owed > 0 {
            let through = self.bus.tip();
            let events = self
                .bus
                .read(&self.topic, self.position, through, self.owed as usize)
                .map_err(|e| Status::internal(format!("{e:#}")))?;
            if events.is_empty() {
                self.position = self.position.max(through);
                break;
            }
            if self.emulator.faults.drop_stream() {
                return Err(Status::unavailable("RST_STREAM closed stream. HTTP/2 error code: CANCEL"));
            }
            self.position = events.last().map_or(self.position, |e| e.replay);
            self.owed -= events.len() as i32;
            let events = events
                .into_iter()
                .map(|e| proto::ConsumerEvent {
                    event: Some(proto::ProducerEvent {
                        id: e.id,
                        schema_id: e.schema_id,
                        payload: e.payload,
                        headers: vec![],
                    }),
                    replay_id: replay_bytes(e.replay),
                })
                .collect();
            let response = proto::FetchResponse {
                events,
                latest_replay_id: replay_bytes(self.position),
                rpc_id: rpc_id(),
                pending_num_requested: self.owed,
            };
            if self.tx.send(Ok(response)).await.is_err() {
                return Ok(sent);
            }
            sent = true;
        }
        Ok(sent)
    }
}
