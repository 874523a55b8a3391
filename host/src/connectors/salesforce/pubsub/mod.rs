//! Salesforce's Pub/Sub API as seam's subscriber speaks it: the wire contract
//! (`eventbus.v1`, the client generated from `proto/` at the workspace's top),
//! the connection with its call metadata, and the decoding of change events
//! from their Avro datums. The subscriber is `intake::salesforce::pubsub`; the
//! emulator (`seam-sim`) builds its server from the same contract.

pub mod bitmap;
pub mod event;

/// The generated messages and client of `eventbus.v1`.
#[allow(clippy::all)]
pub mod proto {
    tonic::include_proto!("eventbus.v1");
}

use anyhow::{Context, Result};
/// The Avro schema type events are decoded with.
pub use apache_avro::Schema;
use std::path::Path;
use std::time::Duration;

/// Salesforce's Pub/Sub endpoint.
pub const DEFAULT_URL: &str = "https://api.pubsub.salesforce.com:7443";
/// The most events a subscription may have requested and not yet received.
pub const MAX_REQUESTED: i32 = 100;

/// The channel of a standard or custom object's change events: `Case` → `/data/CaseChangeEvent`,
/// `Ticket__c` → `/data/Ticket__ChangeEvent`.
pub fn change_event_topic(object: &str) -> String {
    match object.strip_suffix("__c") {
        Some(custom) => format!("/data/{custom}__ChangeEvent"),
        None => format!("/data/{object}ChangeEvent"),
    }
}

/// The `error-code` trailer Salesforce puts on a failed call, e.g.
/// `sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted`.
pub fn error_code(status: &tonic::Status) -> Option<&str> {
    status.metadata().get("error-code").and_then(|v| v.to_str().ok())
}

/// Who a call is for: every call carries the session, the org's My Domain URL and its id.
#[derive(Clone)]
pub struct CallMetadata {
    pub access_token: crate::secrets::SecretString,
    pub instance_url: String,
    pub tenant_id: String,
}

impl CallMetadata {
    /// `message` with `accesstoken`, `instanceurl` and `tenantid` set.
    pub fn request<T>(&self, message: T) -> Result<tonic::Request<T>> {
        use crate::secrets::ExposeSecret;
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(
            "accesstoken",
            self.access_token.expose_secret().parse().context("the access token is not a valid header value")?,
        );
        metadata
            .insert("instanceurl", self.instance_url.parse().context("the instance URL is not a valid header value")?);
        metadata.insert("tenantid", self.tenant_id.parse().context("the org id is not a valid header value")?);
        Ok(request)
    }
}

/// A channel to the Pub/Sub endpoint `url` (`https://host:port`) over TLS, trusting what
/// every other connection of seam trusts (the system's roots and `ca_pem`).
pub fn channel(url: &str, ca_pem: Option<&Path>) -> Result<tonic::transport::Channel> {
    // gRPC is HTTP/2 only: the connector offers `h2` in ALPN.
    let tls = crate::connectors::tls::client_config(ca_pem)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http2().build();
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .with_context(|| format!("the Pub/Sub URL {url:?} is not a URL"))?
        .connect_timeout(Duration::from_secs(15))
        .http2_keep_alive_interval(Duration::from_secs(60))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_with_connector_lazy(connector))
}
