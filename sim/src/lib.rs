//! Local emulators of the Salesforce REST API, the ServiceNow Table API and
//! the Slack Web API, faithful enough that simple-salesforce, pysnc and
//! slack-sdk work against them unchanged. They serve HTTPS on loopback, keep
//! their state in SQLite, push change notifications the way the real systems
//! do, and inject faults on request.
//!
//! Every emulator also answers `/__admin/faults` (GET/PUT), `/__admin/notify`
//! (GET/PUT/DELETE) and `/__admin/stats` (GET). They listen on loopback only.

// Handlers build their error responses early and return them whole; the
// size of `Response` in an `Err` costs nothing that matters here.
#![allow(clippy::result_large_err)]

/// `?` for handlers whose helpers fail with a ready-made error response.
macro_rules! or_respond {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(response) => return response,
        }
    };
}

pub mod faults;
mod files;
pub mod notify;
pub mod salesforce;
pub mod servicenow;
pub mod slack;
pub mod store;
pub mod tls;
mod xml;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use faults::{Fault, FaultSwitch, Faults};
use notify::{Notifier, NotifyTarget};
use serde_json::json;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use store::Store;

/// Credentials the emulators accept (they are printed by `seam sim` and written to `sim.json`).
pub mod credentials {
    pub const SF_USERNAME: &str = "integration@seam.example";
    pub const SF_PASSWORD: &str = "seam-password";
    pub const SF_SECURITY_TOKEN: &str = "SEAMTOKEN";
    pub const SF_CLIENT_ID: &str = "seam-client";
    pub const SF_CLIENT_SECRET: &str = "seam-secret";
    pub const SN_USERNAME: &str = "seam.integration";
    pub const SN_PASSWORD: &str = "seam-password";
    /// The OAuth API endpoint registered for seam (System OAuth → Application Registry).
    pub const SN_CLIENT_ID: &str = "seam-servicenow-client";
    pub const SN_CLIENT_SECRET: &str = "seam-servicenow-secret";
    /// An instance administrator (imports update sets).
    pub const SN_ADMIN_USERNAME: &str = "admin";
    pub const SN_ADMIN_PASSWORD: &str = "admin-password";
    pub const SLACK_TOKEN: &str = "xoxb-seam-simulator";
    /// The people who work the records (an agent in Salesforce, an engineer in ServiceNow):
    /// their changes are the ones seam syncs.
    pub const SF_PERSON_USERNAME: &str = "jane.agent@acme.example";
    pub const SF_PERSON_PASSWORD: &str = "jane-password";
    pub const SN_PERSON_USERNAME: &str = "beth.anglin";
    pub const SN_PERSON_PASSWORD: &str = "beth-password";
}

/// What one emulator's handlers share.
pub struct Emulator {
    pub name: &'static str,
    pub store: Arc<Store>,
    pub faults: Arc<FaultSwitch>,
    pub notifier: Option<Arc<Notifier>>,
    /// `https://127.0.0.1:PORT`
    pub base_url: String,
    /// API requests served (admin calls and injected faults excluded).
    pub requests: AtomicU64,
    /// The daily API allowance the system reports (Salesforce's `Sforce-Limit-Info`, `/limits`).
    pub api_limit: AtomicU64,
    /// Fields an admin has deleted from the org's schema, as `Object.Field` (Salesforce:
    /// `PUT /__admin/schema`): describe leaves them out, reads and writes refuse them.
    pub removed_fields: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Salesforce's change event bus, which its Pub/Sub API serves.
    pub change_events: Option<Arc<salesforce::change_events::Bus>>,
    fault_response: fn(Fault) -> Response,
    /// Writes happen one at a time, as the real systems serialize a record's
    /// updates: two updates read, change and commit the record in turn, never
    /// both from the same version (which would give both one mod count).
    writes: std::sync::Mutex<()>,
}

impl Emulator {
    /// Held from reading the record to committing the write and queueing its notification.
    pub fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub state_dir: PathBuf,
    pub salesforce_port: u16,
    pub servicenow_port: u16,
    pub slack_port: u16,
    /// Salesforce's Pub/Sub API (gRPC).
    pub pubsub_port: u16,
    pub faults: Vec<(String, Faults)>,
    pub notify: Vec<(String, NotifyTarget)>,
}

impl SimConfig {
    pub fn new(state_dir: PathBuf) -> Self {
        SimConfig {
            state_dir,
            salesforce_port: 0,
            servicenow_port: 0,
            slack_port: 0,
            pubsub_port: 0,
            faults: vec![],
            notify: vec![],
        }
    }
}

/// The running simulator.
pub struct Sim {
    pub salesforce: Arc<Emulator>,
    pub servicenow: Arc<Emulator>,
    pub slack: Arc<Emulator>,
    /// Salesforce's Pub/Sub API: `https://127.0.0.1:PORT`.
    pub pubsub_url: String,
    pub ca_pem: PathBuf,
    pub info_file: PathBuf,
    /// The connected app's key pair: the private key an operator would keep, the certificate the app holds.
    pub connected_app: salesforce::connected_app::KeyFiles,
    handles: Vec<axum_server::Handle>,
}

impl Sim {
    pub async fn start(config: SimConfig) -> Result<Sim> {
        let dir = &config.state_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the simulator state directory {}", dir.display()))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls_files = tls::ensure(dir).context("preparing the simulator's TLS certificate")?;
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls_files.cert_pem, &tls_files.key_pem)
            .await
            .context("loading the simulator's TLS certificate")?;
        let ca_pem = std::fs::read(&tls_files.ca_pem)?;
        let store = Arc::new(Store::open(&dir.join("sim.db"))?);

        let bind = |port: u16, name: &str| -> Result<(TcpListener, String)> {
            let listener = TcpListener::bind(("127.0.0.1", port))
                .with_context(|| format!("binding the {name} emulator to 127.0.0.1:{port}"))?;
            listener.set_nonblocking(true)?;
            let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
            Ok((listener, url))
        };
        let (sf_listener, sf_url) = bind(config.salesforce_port, "Salesforce")?;
        let (sn_listener, sn_url) = bind(config.servicenow_port, "ServiceNow")?;
        let (slack_listener, slack_url) = bind(config.slack_port, "Slack")?;
        let (pubsub_listener, pubsub_url) = bind(config.pubsub_port, "Salesforce Pub/Sub")?;
        let bus = Arc::new(salesforce::change_events::Bus::open(store.clone())?);

        let faults_for = |name: &str| {
            let switch = Arc::new(FaultSwitch::default());
            if let Some((_, f)) = config.faults.iter().find(|(n, _)| n == name) {
                switch.set(f.clone());
            }
            switch
        };
        let sf_faults = faults_for(salesforce::EMULATOR);
        let sn_faults = faults_for(servicenow::EMULATOR);
        let sf_notifier = Arc::new(Notifier::new(
            salesforce::EMULATOR,
            store.clone(),
            sf_faults.clone(),
            Some(notify::SoapSender {
                organization_id: salesforce::ORG_ID.into(),
                partner_url: format!("{sf_url}/services/Soap/u/{}/{}", salesforce::API_VERSION, salesforce::ORG_ID),
            }),
            &ca_pem,
        )?);
        // ServiceNow sends what its business rules send: nothing until seam's update set is committed.
        let sn_notifier = Arc::new(Notifier::scripted(
            servicenow::EMULATOR,
            store.clone(),
            sn_faults.clone(),
            &ca_pem,
            servicenow::push::ATTEMPTS,
        )?);
        for (name, target) in &config.notify {
            match name.as_str() {
                salesforce::EMULATOR => sf_notifier.set_target(Some(target))?,
                servicenow::EMULATOR => sn_notifier.set_target(Some(target))?,
                other => anyhow::bail!("{other} sends no notifications; only salesforce and servicenow do"),
            }
        }

        let make = |name, base_url: &String, faults, notifier, change_events, fault_response| {
            Arc::new(Emulator {
                name,
                store: store.clone(),
                faults,
                notifier,
                base_url: base_url.clone(),
                requests: AtomicU64::new(0),
                api_limit: AtomicU64::new(salesforce::DAILY_API_LIMIT),
                removed_fields: Default::default(),
                change_events,
                fault_response,
                writes: Default::default(),
            })
        };
        let sf = make(
            salesforce::EMULATOR,
            &sf_url,
            sf_faults,
            Some(sf_notifier.clone()),
            Some(bus.clone()),
            salesforce::fault_response as fn(Fault) -> Response,
        );
        let sn = make(
            servicenow::EMULATOR,
            &sn_url,
            sn_faults,
            Some(sn_notifier.clone()),
            None,
            servicenow::fault_response as fn(Fault) -> Response,
        );
        let sl = make(
            slack::EMULATOR,
            &slack_url,
            faults_for(slack::EMULATOR),
            None,
            None,
            slack::fault_response as fn(Fault) -> Response,
        );

        // A rule's job reads the instance when it runs; the emulator outlives its notifier's jobs.
        let instance = Arc::downgrade(&sn);
        sn_notifier.set_runner(Box::new(move |job| match instance.upgrade() {
            Some(e) => {
                servicenow::push::run(&e, job).map(|r| notify::Request { url: r.url, body: r.body, headers: r.headers })
            }
            None => Err("the instance stopped".into()),
        }));
        salesforce::seed(&sf)?;
        servicenow::seed(&sn)?;
        slack::seed(&sl)?;
        // The key pair an admin made for the connected app, and the certificate uploaded to it.
        let connected_app = salesforce::connected_app::ensure_key_pair(dir)?;
        if sf.store.setting(salesforce::oauth::CERTIFICATE_SETTING).is_none() {
            let certificate = std::fs::read_to_string(&connected_app.certificate)
                .with_context(|| format!("reading {}", connected_app.certificate.display()))?;
            sf.store.set_setting(salesforce::oauth::CERTIFICATE_SETTING, &certificate)?;
        }

        tokio::spawn(sf_notifier.run());
        tokio::spawn(sn_notifier.run());

        let mut handles = Vec::new();
        for (listener, emulator, router) in [
            (sf_listener, sf.clone(), salesforce::router(sf.clone())),
            (sn_listener, sn.clone(), servicenow::router(sn.clone())),
            (slack_listener, sl.clone(), slack::router(sl.clone())),
        ] {
            let app = router
                .merge(admin_router(emulator.clone()))
                .layer(axum::middleware::from_fn_with_state(emulator.clone(), fault_layer));
            let handle = axum_server::Handle::new();
            let server = axum_server::from_tcp_rustls(listener, tls.clone()).handle(handle.clone());
            let name = emulator.name;
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service_with_connect_info::<SocketAddr>()).await {
                    tracing::error!("the {name} emulator stopped: {e}");
                }
            });
            handles.push(handle);
        }

        // The Pub/Sub API on its own port, as Salesforce serves it on its own host.
        {
            let service = salesforce::pubsub::Service { emulator: sf.clone(), bus };
            let app =
                tonic::service::Routes::new(salesforce::pubsub::proto::pub_sub_server::PubSubServer::new(service))
                    .into_axum_router();
            let handle = axum_server::Handle::new();
            let server = axum_server::from_tcp_rustls(pubsub_listener, tls.clone()).handle(handle.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!("the Salesforce Pub/Sub emulator stopped: {e}");
                }
            });
            handles.push(handle);
        }

        let info_file = dir.join("sim.json");
        let sim = Sim {
            salesforce: sf,
            servicenow: sn,
            slack: sl,
            pubsub_url,
            ca_pem: tls_files.ca_pem,
            info_file,
            connected_app,
            handles,
        };
        let info = serde_json::to_string_pretty(&sim.info())?;
        // It holds the emulators' credentials.
        crate::files::write_private(&sim.info_file, info.as_bytes())?;
        Ok(sim)
    }

    /// URLs, CA file and credentials, as written to `sim.json`.
    pub fn info(&self) -> serde_json::Value {
        use credentials::*;
        json!({
            "ca_pem": self.ca_pem,
            "salesforce": {
                "url": self.salesforce.base_url,
                "login_url": salesforce::oauth::login_url(&self.salesforce.base_url),
                "api_version": salesforce::API_VERSION,
                "username": SF_USERNAME, "password": SF_PASSWORD, "security_token": SF_SECURITY_TOKEN,
                "client_id": SF_CLIENT_ID, "client_secret": SF_CLIENT_SECRET,
                "private_key": self.connected_app.private_key, "certificate": self.connected_app.certificate,
                "organization_id": salesforce::ORG_ID,
                "pubsub_url": self.pubsub_url,
            },
            "servicenow": {
                "url": self.servicenow.base_url, "username": SN_USERNAME, "password": SN_PASSWORD,
                "client_id": SN_CLIENT_ID, "client_secret": SN_CLIENT_SECRET,
                "admin_username": SN_ADMIN_USERNAME, "admin_password": SN_ADMIN_PASSWORD,
            },
            "slack": { "url": format!("{}/api/", self.slack.base_url), "token": SLACK_TOKEN, "webhook": format!("{}{}", self.slack.base_url, slack::DEMO_WEBHOOK) },
        })
    }

    /// Import an update set into the ServiceNow emulator, preview it and commit it, as the
    /// instance's admin does (the same steps `POST /sys_upload.do` and the CI/CD API take).
    /// Returns how many records it installed.
    pub fn install_update_set(&self, xml: &str) -> Result<usize> {
        use servicenow::update_sets;
        let admin = credentials::SN_ADMIN_USERNAME;
        let id = update_sets::load(&self.servicenow, xml, admin)
            .map_err(|why| anyhow::anyhow!("importing the update set: {why}"))?;
        let problems = update_sets::preview(&self.servicenow, &id)
            .map_err(|why| anyhow::anyhow!("previewing the update set: {why}"))?;
        anyhow::ensure!(problems.is_empty(), "the update set's preview found problems: {}", problems.join("; "));
        let _write = self.servicenow.write_lock();
        update_sets::commit(&self.servicenow, &id, admin)
            .map_err(|why| anyhow::anyhow!("committing the update set: {why}"))
    }

    pub fn shutdown(&self) {
        for handle in &self.handles {
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(2)));
        }
    }
}

async fn fault_layer(State(emulator): State<Arc<Emulator>>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/__admin") {
        return next.run(request).await;
    }
    if let Some(delay) = emulator.faults.latency() {
        tokio::time::sleep(delay).await;
    }
    if let Some(fault) = emulator.faults.request() {
        tracing::debug!(emulator = emulator.name, path = %request.uri().path(), "fault injection: {fault:?}");
        return (emulator.fault_response)(fault);
    }
    emulator.requests.fetch_add(1, Ordering::Relaxed);
    let write = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    if write && emulator.faults.drop_response() {
        tracing::debug!(emulator = emulator.name, "fault injection: the write was made and its response is lost");
        return lost(response);
    }
    response
}

/// A response whose connection is cut before it arrives, as when a proxy or the network
/// fails after the server acted: the body fails before its first byte, and the server
/// closes the connection without finishing the message.
fn lost(response: Response) -> Response {
    struct Cut;
    impl http_body::Body for Cut {
        type Data = axum::body::Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            std::task::Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault injection: response lost",
            ))))
        }
    }
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, axum::body::Body::new(Cut))
}

/// The user and password of an `Authorization: Basic` header.
pub fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let encoded = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let pair = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

fn admin_router(emulator: Arc<Emulator>) -> Router {
    Router::new()
        .route(
            "/__admin/faults",
            get(|State(e): State<Arc<Emulator>>| async move { Json(e.faults.get()) }).put(
                |State(e): State<Arc<Emulator>>, body: axum::body::Bytes| async move {
                    match serde_json::from_slice::<Faults>(&body) {
                        Ok(f) => {
                            e.faults.set(f.clone());
                            Json(f).into_response()
                        }
                        Err(err) => bad_request(format!("not a fault setting: {err}")),
                    }
                },
            ),
        )
        .route(
            "/__admin/notify",
            get(|State(e): State<Arc<Emulator>>| async move { Json(e.notifier.as_ref().and_then(|n| n.target())) })
                .put(|State(e): State<Arc<Emulator>>, body: axum::body::Bytes| async move {
                    let Some(notifier) = &e.notifier else {
                        return bad_request(format!("{} sends no notifications", e.name));
                    };
                    match serde_json::from_slice::<NotifyTarget>(&body) {
                        Ok(t) if t.url.starts_with("http://") || t.url.starts_with("https://") => {
                            match notifier.set_target(Some(&t)) {
                                Ok(()) => Json(t).into_response(),
                                Err(err) => bad_request(err.to_string()),
                            }
                        }
                        Ok(t) => bad_request(format!("notification url must be http(s)://, got {:?}", t.url)),
                        Err(err) => bad_request(format!(
                            "expected {{\"url\": ..., \"secret\": ..., \"format\": \"soap\"|\"json\"}}: {err}"
                        )),
                    }
                })
                .delete(|State(e): State<Arc<Emulator>>| async move {
                    if let Some(n) = &e.notifier {
                        let _ = n.set_target(None);
                    }
                    StatusCode::NO_CONTENT
                }),
        )
        .route(
            "/__admin/stats",
            get(|State(e): State<Arc<Emulator>>| async move {
                Json(json!({
                    "emulator": e.name,
                    "requests": e.requests(),
                    "notifications": e.notifier.as_ref().map(|n| n.stats()),
                }))
            }),
        )
        .with_state(emulator)
}
