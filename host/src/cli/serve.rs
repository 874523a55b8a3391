//! `seam serve`: the engine as one process. Intake endpoints, and per
//! tenant a processor working through the journal and a catch-up poller.
//!
//! Configuration is a JSON file (`--config`). With `--sim`, the emulators
//! start in the same process and the configuration for one tenant, `demo`,
//! is written for them (to `STATE/seam.json`, to read or copy).

use crate::admin::metrics::{Metrics, TenantLabel};
use crate::admin::Admin;
use crate::connectors::{salesforce, servicenow, slack, RetryPolicy};
use crate::engine::alerts::{AlertConfig, Alerter};
use crate::engine::apply::Systems;
use crate::engine::dispatcher::Dispatcher;
use crate::engine::ownership::Ownership;
use crate::engine::poller::Poller;
use crate::engine::processor::{Processor, Retrying};
use crate::engine::reconcile::Reconciler;
use crate::intake::salesforce::pubsub as salesforce_events;
use crate::intake::{self, Intake, TenantIntake};
use crate::listener::Bound;
use crate::packs::{Registry, TrustedKeys};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::secrets::Secret;
use crate::sim::notify::NotifyTarget;
use crate::sim::{Sim, SimConfig};
use crate::store::Journal;
use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// The configuration file (see `STATE/seam.json` written by `--sim` for its shape).
    #[arg(long, required_unless_present = "sim")]
    pub config: Option<PathBuf>,
    /// Start the emulators too, and serve one tenant, `demo`, against them.
    #[arg(long)]
    pub sim: bool,
    /// With --sim: where the emulators and the journal keep their state.
    #[arg(long, default_value = ".seam")]
    pub state: PathBuf,
    /// With --sim: the mapping pack the `demo` tenant runs.
    #[arg(long, default_value = "target/case-incident.seampack")]
    pub pack: PathBuf,
    /// With --sim: a workflow pack the `demo` tenant runs too (repeat for more).
    #[arg(long = "workflow")]
    pub workflows: Vec<PathBuf>,
    /// With --sim: fixed ports (intake, salesforce, servicenow, slack, Salesforce's Pub/Sub API,
    /// and the admin listener), so a restart comes back where it was.
    #[arg(long, num_args = 4..=6, value_names = ["INTAKE", "SALESFORCE", "SERVICENOW", "SLACK", "PUBSUB", "ADMIN"])]
    pub ports: Option<Vec<u16>>,
    /// With --sim: how the emulated org's changes reach seam.
    #[arg(long, value_enum, default_value = "pubsub")]
    pub salesforce_events: salesforce_events::Source,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where intake listens, e.g. `0.0.0.0:8787`: the one listener that faces the systems.
    pub listen: String,
    /// Intake's TLS certificate chain (PEM), with `tls_key`; absent: plain HTTP, for TLS ended in front of seam.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The admin listener: the API, the dashboard and `/metrics`.
    #[serde(default)]
    pub admin: AdminSettings,
    /// Connection caps, read timeouts and intake rate limits.
    #[serde(default)]
    pub limits: crate::listener::Limits,
    pub journal: PathBuf,
    /// How long the journal keeps settled events and audit rows (`seam journal prune`).
    #[serde(default)]
    pub retention: crate::store::retention::Retention,
    /// Seconds between catch-up polls.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// Hours an event is retried through an outage (5xx, 429, timeouts, refused
    /// connections), from its first failure, before it goes to the dead-letter queue.
    #[serde(default = "default_retry_hours")]
    pub retry_hours: u64,
    /// Events processed at once per tenant (each record's events stay in order).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    pub tenants: HashMap<String, TenantConfig>,
    /// Public key files (`seam pack keygen`): only packs signed by one of them load.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// With no `trusted_keys`, load unsigned packs anyway (development: `seam serve --sim` and
    /// the demo set it, and say so). Without it, seam refuses to start with no key to trust.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unsigned: bool,
    /// Where the systems reach intake from outside (`https://seam.example.com`): the URLs the
    /// generated business rule and Outbound Message post to. Absent: `http(s)://{listen}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// A directory with one sub-directory per tenant; a `.seampack` written there is hot-loaded.
    #[serde(default)]
    pub plugins_dir: Option<PathBuf>,
    /// When to tell a person about the backlog or dead letters (thresholds, Slack channel).
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Minutes between reconciliation passes over every linked pair (`seam reconcile`); 0: never.
    #[serde(default = "default_reconcile")]
    pub reconcile_minutes: u64,
}

fn default_retry_hours() -> u64 {
    24
}

fn default_reconcile() -> u64 {
    60
}

/// Where the admin API, the dashboard and `/metrics` listen, and who may call the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Loopback by default: reach it from the host, or through a tunnel or proxy you control.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// The admin listener's TLS certificate chain (PEM), with `tls_key`; absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// A token that operates every tenant (a secret: a value, `{"env": …}` or `{"file": …}`).
    /// Tenants' own tokens are `tenants.NAME.admin_tokens`. With none at all, the API is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_token: Option<Secret>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:8788".into()
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings { listen: default_admin_listen(), tls_cert: None, tls_key: None, operator_token: None }
    }
}

impl AdminSettings {
    /// The operator token, read.
    pub fn operator_token(&self) -> Result<Option<crate::secrets::SecretString>> {
        self.operator_token.as_ref().map(|t| t.resolve("admin.operator_token")).transpose()
    }

    /// `https://` or `http://` and the admin listener's address.
    pub fn url(&self) -> String {
        crate::listener::url(self.tls_cert.is_some(), &self.listen)
    }
}

fn default_poll() -> u64 {
    30
}

/// Events wait mostly on the systems' answers, not on the CPU: in a burst,
/// throughput is about the events in flight over one event's latency, and the
/// more are in flight, the more writes share a collection call.
fn default_concurrency() -> usize {
    256
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The mapping pack (`.seampack`, from `seam pack build`) or, without trusted keys, a plain component.
    pub pack: PathBuf,
    /// Workflow packs, run after the mapping on every change, in this order.
    #[serde(default)]
    pub workflows: Vec<PathBuf>,
    /// A CA certificate to trust besides the system's (the emulators' `ca.pem`).
    #[serde(default)]
    pub ca_pem: Option<PathBuf>,
    pub salesforce: salesforce::Credentials,
    pub servicenow: servicenow::Credentials,
    #[serde(default)]
    pub slack: Option<slack::Credentials>,
    pub intake: TenantIntake,
    /// Where Salesforce's changes come from: `pubsub` (Change Data Capture over the Pub/Sub API)
    /// or `outbound_messages` (posted to intake).
    #[serde(default)]
    pub events: salesforce_events::Source,
    /// The Pub/Sub endpoint and an optional platform event channel, for `"events": "pubsub"`.
    #[serde(default)]
    pub pubsub: salesforce_events::PubSubSettings,
    /// Which fields each side mirrors (and so may not be edited there). Absent: the pack's manifest says, else the Case ⇄ Incident default.
    #[serde(default)]
    pub ownership: Option<Ownership>,
    /// Admin API tokens for this tenant alone: `read`, and `operate` (install, roll back, re-drive).
    #[serde(default)]
    pub admin_tokens: crate::admin::access::TenantTokens,
}

impl TenantConfig {
    /// Which fields each side mirrors: the configuration's map, else the mapping pack's, else the default.
    pub fn ownership(&self) -> Result<Ownership> {
        if let Some(o) = &self.ownership {
            return Ok(o.clone());
        }
        let bytes = super::read_pack(&self.pack)?;
        if crate::packs::artifact::is_plain_component(&bytes) {
            return Ok(Ownership::default());
        }
        let pack = crate::packs::artifact::Pack::open(&bytes)
            .with_context(|| format!("reading the pack {}", self.pack.display()))?;
        Ok(pack.manifest.ownership.unwrap_or_default())
    }

    /// Log in to the tenant's systems.
    pub async fn connect(&self, tenant: &str) -> Result<Systems> {
        Systems::connect(
            tenant,
            &self.salesforce,
            &self.servicenow,
            self.slack.as_ref(),
            self.ca_pem.as_deref(),
            RetryPolicy::default(),
        )
        .await
    }
}

impl Config {
    /// Read and check a configuration file: every mistake that shows without calling
    /// out is reported here, naming the setting, before anything starts.
    pub fn load(path: &std::path::Path) -> Result<Config> {
        let config: Config = super::read_json(path, "configuration")?;
        config.check().with_context(|| format!("checking the configuration {}", path.display()))?;
        Ok(config)
    }

    pub fn check(&self) -> Result<()> {
        if self.tenants.is_empty() {
            anyhow::bail!("no tenants are configured; `seam init` writes one");
        }
        for (name, t) in &self.tenants {
            check_tenant_name(name)?;
            t.salesforce.check(&format!("tenants.{name}.salesforce"))?;
            t.servicenow.check(&format!("tenants.{name}.servicenow"))?;
        }
        self.check_trust()?;
        crate::listener::tls_files(&self.tls_cert, &self.tls_key, "")?;
        crate::listener::tls_files(&self.admin.tls_cert, &self.admin.tls_key, "admin.")?;
        self.limits.check()?;
        self.retention.check()?;
        if self.listen == self.admin.listen {
            anyhow::bail!("listen and admin.listen are both {}: intake and the admin API need their own listeners (the admin one on loopback, or behind a proxy you control)", self.listen);
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                anyhow::bail!("public_url must be an http(s):// URL where the systems reach intake; got {url:?}");
            }
        }
        Ok(())
    }

    /// Packs must be signed by a trusted key, unless the configuration says otherwise.
    pub fn check_trust(&self) -> Result<()> {
        if self.trusted_keys.is_empty() && !self.allow_unsigned {
            anyhow::bail!(
                "no trusted_keys: seam loads only packs signed by a key it trusts. List the signers' public keys in \
                 trusted_keys (`seam pack keygen`, then `seam pack sign` each pack; `seam init --trusted-key`), or set \
                 \"allow_unsigned\": true to run unsigned packs (development only)"
            );
        }
        Ok(())
    }

    /// The base URL the systems post notifications to.
    pub fn public_base(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| self.intake_url()).trim_end_matches('/').to_string()
    }

    /// `https://` or `http://` and intake's listen address.
    pub fn intake_url(&self) -> String {
        crate::listener::url(self.tls_cert.is_some(), &self.listen)
    }

    /// Every admin token, read, with what each grants.
    pub fn admin_tokens(&self) -> Result<crate::admin::access::Tokens> {
        crate::admin::access::Tokens::read(
            self.admin.operator_token.as_ref(),
            self.tenants.iter().map(|(name, t)| (name, &t.admin_tokens)),
        )
    }
}

/// Tenant names go into URLs (`/intake/{tenant}/…`), ServiceNow property names and
/// Salesforce's `Sforce-Call-Options` (`client=seam-{tenant}`): letters, digits, `-` and `_`.
pub fn check_tenant_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        anyhow::bail!("tenant name {name:?}: use 1 to 40 letters, digits, '-' or '_', starting with a letter or digit");
    }
    Ok(())
}

/// A random secret kept in `dir/name` (0600), made on first use and read after: a restart keeps
/// what the emulators were told, and the configuration names the file, not the value.
fn secret_file(dir: &std::path::Path, name: &str) -> Result<(Secret, String)> {
    let path = dir.join(name);
    let value = match std::fs::read_to_string(&path) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => {
            let v = crate::secrets::random_secret();
            crate::files::write_private(&path, v.as_bytes())?;
            v
        }
    };
    Ok((Secret::file(std::fs::canonicalize(&path).unwrap_or(path)), value))
}

/// A free loopback port, or the one asked for.
fn port_or_free(port: u16) -> Result<u16> {
    Ok(if port == 0 { std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port() } else { port })
}

/// Start the emulators and describe them as a one-tenant configuration, `demo`.
/// `events` says how the org's changes reach seam: over its Pub/Sub API, or as Outbound Messages
/// (the emulated org is then set up to send them to intake).
pub async fn sim_config(
    state: &std::path::Path,
    pack: &std::path::Path,
    workflows: &[PathBuf],
    ports: Option<&[u16]>,
    events: salesforce_events::Source,
) -> Result<(Sim, Config)> {
    let mut ports = ports.map(<[u16]>::to_vec).unwrap_or_default();
    ports.resize(6, 0);
    // Intake's port must be known before the emulators are told where to push.
    let listen = format!("127.0.0.1:{}", port_or_free(ports[0])?);
    // Random per state directory, never printed: the emulators are told them below.
    let secrets = state.join("secrets");
    std::fs::create_dir_all(&secrets).with_context(|| format!("creating {}", secrets.display()))?;
    let (outbound_token, outbound_token_value) = secret_file(&secrets, "outbound-token")?;
    let (servicenow_secret, servicenow_secret_value) = secret_file(&secrets, "servicenow-secret")?;
    let (operator_token, _) = secret_file(&secrets, "admin-token")?;
    let intake_cfg = TenantIntake {
        salesforce_org_id: crate::sim::salesforce::ORG_ID.into(),
        salesforce_token: outbound_token,
        servicenow_secret,
    };
    let mut sim_config = SimConfig::new(state.join("sim"));
    (sim_config.salesforce_port, sim_config.servicenow_port, sim_config.slack_port, sim_config.pubsub_port) =
        (ports[1], ports[2], ports[3], ports[4]);
    if events == salesforce_events::Source::OutboundMessages {
        sim_config.notify = vec![(
            "salesforce".into(),
            NotifyTarget {
                url: format!("http://{listen}/intake/demo/salesforce/outbound?token={outbound_token_value}"),
                secret: None,
                format: None,
            },
        )];
    }
    let sim = Sim::start(sim_config).await?;
    // As the instance's admin would: seam's update set, its push rule sending to this intake.
    sim.install_push_rule("demo", &format!("http://{listen}/intake/demo/servicenow"), &servicenow_secret_value)?;
    let tenant = TenantConfig {
        pack: std::fs::canonicalize(pack).unwrap_or_else(|_| pack.to_path_buf()),
        workflows: workflows.iter().map(|w| std::fs::canonicalize(w).unwrap_or_else(|_| w.clone())).collect(),
        ca_pem: Some(sim.ca_pem.clone()),
        salesforce: sim.salesforce_credentials(),
        servicenow: sim.servicenow_credentials(),
        slack: Some(sim.slack_credentials()),
        intake: intake_cfg,
        events,
        pubsub: salesforce_events::PubSubSettings { url: sim.pubsub_url.clone(), platform_event: None },
        ownership: None,
        admin_tokens: Default::default(),
    };
    let admin = AdminSettings {
        listen: format!("127.0.0.1:{}", port_or_free(ports[5])?),
        operator_token: Some(operator_token),
        ..AdminSettings::default()
    };
    let config = Config {
        listen,
        tls_cert: None,
        tls_key: None,
        admin,
        limits: Default::default(),
        journal: state.join("journal.db"),
        retention: Default::default(),
        poll_seconds: 5,
        retry_hours: default_retry_hours(),
        concurrency: default_concurrency(),
        tenants: HashMap::from([("demo".to_string(), tenant)]),
        trusted_keys: vec![],
        // The emulators run the packs this checkout builds, unsigned (the banner says so).
        allow_unsigned: true,
        public_url: None,
        plugins_dir: Some(state.join("plugins")),
        alerts: AlertConfig::default(),
        reconcile_minutes: default_reconcile(),
    };
    crate::files::write_private(&state.join("seam.json"), serde_json::to_string_pretty(&config)?.as_bytes())?;
    Ok((sim, config))
}

/// The running engine: per tenant a processor and a poller, and the intake server.
pub struct Engine {
    pub journal: Arc<Journal>,
    pub processors: HashMap<String, Arc<Processor>>,
    /// Where intake and the admin listener answer (`http(s)://address`).
    pub intake_url: String,
    pub admin_url: String,
    pub registry: Arc<Registry>,
    /// Hot loading from `plugins_dir` lasts as long as this.
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Load every tenant's pack and connections, then start the processors, pollers and intake.
pub async fn start_engine(
    config: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Engine> {
    config.check_trust()?;
    let path = config.journal.clone();
    let journal = Arc::new(crate::store::blocking::off_worker(move || Journal::open(&path)).await?);
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let trusted = TrustedKeys::read(&config.trusted_keys)?;
    let store = config.journal.parent().map(|d| d.join("packs")).unwrap_or_else(|| PathBuf::from("packs"));
    let mut registry = Registry::new(runtime, trusted, store, journal.clone())?;
    let metrics = Arc::new(Metrics::new());
    let mut tenants = HashMap::new();
    let mut processors = HashMap::new();
    for (name, t) in &config.tenants {
        let bytes = super::read_pack(&t.pack)?;
        let workflows = t.workflows.iter().map(|w| super::read_pack(w)).collect::<Result<Vec<_>>>()?;
        let started = registry
            .add_tenant(name, &bytes, &workflows, &super::pack_name(&t.pack), t.ownership.clone())
            .await
            .with_context(|| format!("loading the packs of tenant {name}"))?;
        let pack = started.mapping.load();
        tracing::info!(tenant = %name, pack = %pack.manifest.id(), sha256 = %pack.hash, signer = ?pack.signer, "pack loaded");
        for w in started.workflows.load().iter() {
            tracing::info!(tenant = %name, workflow = %w.manifest.id(), sha256 = %w.hash, signer = ?w.signer, "workflow loaded");
        }
        let mut systems = t.connect(name).await.with_context(|| format!("tenant {name}"))?;
        let pubsub = t.events == salesforce_events::Source::Pubsub;
        systems.salesforce_echoes = !pubsub;
        let systems = Arc::new(systems);
        tenants.insert(name.clone(), t.intake.keys(name)?);
        let processor = Arc::new(Processor {
            tenant: name.clone(),
            journal: journal.clone(),
            systems: systems.clone(),
            active: started.mapping,
            workflows: started.workflows,
            counters: metrics.counters(name),
            retrying: Retrying::for_hours(config.retry_hours),
        });
        processors.insert(name.clone(), processor.clone());
        let dispatcher = Dispatcher::new(processor.clone(), config.concurrency);
        tokio::spawn(async move { dispatcher.run_forever().await });
        let alerter = Alerter {
            tenant: name.clone(),
            journal: journal.clone(),
            systems: systems.clone(),
            config: config.alerts.clone(),
            sent: metrics.alerts.get_or_create_owned(&TenantLabel { tenant: name.clone() }),
            dashboard: Some(format!("{}/dashboard", config.admin.url())),
        };
        tokio::spawn(alerter.run_forever());
        if config.reconcile_minutes > 0 {
            let reconciler = Reconciler {
                tenant: name.clone(),
                journal: journal.clone(),
                systems: systems.clone(),
                mapping: processor.active.clone(),
            };
            tokio::spawn(reconcile_every(reconciler, Duration::from_secs(config.reconcile_minutes * 60)));
        }
        let poller = Arc::new(Poller::new(name, journal.clone(), systems.clone(), !pubsub));
        // A first start's watermarks before seam says it is ready: a Case made after that is
        // caught up even if seam stops before its first poll or subscription.
        if let Err(e) = poller.begin().await {
            tracing::warn!(tenant = %name, "setting the first catch-up watermarks failed (the first poll tries again): {e:#}");
        }
        if pubsub {
            let mirrored = pack
                .ownership
                .mirrors
                .iter()
                .filter(|m| m.system == crate::model::System::Salesforce)
                .map(|m| m.object.clone());
            let topics = salesforce_events::topics(mirrored, t.pubsub.platform_event.as_deref());
            let subscriber = salesforce_events::Subscriber::new(
                name,
                journal.clone(),
                systems.clone(),
                poller.clone(),
                processor.counters.clone(),
                &t.intake.salesforce_org_id,
                &t.pubsub,
                t.ca_pem.as_deref(),
            )?;
            tracing::info!(tenant = %name, topics = ?topics, url = %t.pubsub.url, "Salesforce changes come over the Pub/Sub API");
            Arc::new(subscriber).start(topics);
        }
        let every = Duration::from_secs(config.poll_seconds.max(1));
        // The first pass at once: on a first start it sets the watermarks at "now" (what changes
        // from then on is caught up, nothing before), on a restart it catches up on the downtime.
        tokio::spawn(async move {
            loop {
                match poller.poll_once().await {
                    Ok(p) if p.new > 0 => {
                        tracing::info!(tenant = %poller.tenant, "catch-up poll found {} change(s) no notification announced", p.new)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(tenant = %poller.tenant, "catch-up poll failed: {e:#}"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }
    if config.retention.every_minutes > 0.0 {
        tokio::spawn(prune_every(journal.clone(), config.retention.clone()));
    }
    let registry = Arc::new(registry);
    let watcher = match &config.plugins_dir {
        Some(dir) => Some(crate::admin::watch::start(dir, registry.clone(), config.tenants.keys().cloned().collect())?),
        None => None,
    };
    let admin = Arc::new(Admin {
        registry: registry.clone(),
        journal: journal.clone(),
        metrics: metrics.clone(),
        tokens: config.admin_tokens()?,
        body_timeout_seconds: config.limits.body_timeout_seconds,
    });
    let mut intake = Intake::new(
        journal.clone(),
        tenants,
        processors.iter().map(|(name, p)| (name.clone(), p.counters.clone())).collect(),
    );
    intake.limit(&config.limits);
    // Both bound before either serves: a taken port fails the start, naming the setting.
    let intake_listener = Bound::bind(
        "intake",
        &config.listen,
        crate::listener::tls_files(&config.tls_cert, &config.tls_key, "")?.as_ref(),
    )
    .await?;
    let admin_listener = Bound::bind(
        "admin",
        &config.admin.listen,
        crate::listener::tls_files(&config.admin.tls_cert, &config.admin.tls_key, "admin.")?.as_ref(),
    )
    .await?;
    let (intake_url, admin_url) = (intake_listener.url(), admin_listener.url());
    let handles = vec![axum_server::Handle::new(), axum_server::Handle::new()];
    intake_listener.serve(
        intake::router(Arc::new(intake), intake::DEFAULT_MAX_BODY),
        &config.limits,
        handles[0].clone(),
    );
    admin_listener.serve(crate::admin::router(admin), &config.limits, handles[1].clone());
    crate::listener::stop_on(shutdown, handles);
    Ok(Engine { journal, processors, intake_url, admin_url, registry, _watcher: watcher })
}

/// Prune the journal on a schedule, on a blocking thread (it is SQLite work, in chunks).
async fn prune_every(journal: Arc<Journal>, retention: crate::store::retention::Retention) {
    let every = Duration::from_secs_f64(retention.every_minutes * 60.0);
    loop {
        tokio::time::sleep(every).await;
        let retention = retention.clone();
        match journal.run(move |j| j.prune(&retention, j.clock.now_ms(), false)).await {
            Ok(p) => tracing::info!(
                events = p.events,
                audit_rows = p.audit_rows,
                history_rows = p.history_rows,
                "journal pruned"
            ),
            Err(e) => tracing::warn!("pruning the journal failed: {e:#}"),
        }
    }
}

/// Reconcile on a schedule; the first pass after one period, so start-up is not slowed.
async fn reconcile_every(reconciler: Reconciler, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match reconciler.run(true, |_, _| {}).await {
            Ok(r) => {
                tracing::info!(tenant = %reconciler.tenant, pairs = r.pairs, in_sync = r.in_sync, unchanged = r.unchanged, repaired = r.drifted, skipped = r.skipped, failed = r.failed.len(), "reconciliation pass")
            }
            Err(e) => tracing::warn!(tenant = %reconciler.tenant, "reconciliation pass failed: {e:#}"),
        }
    }
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let (sim, config) = if args.sim {
        let (sim, config) =
            sim_config(&args.state, &args.pack, &args.workflows, args.ports.as_deref(), args.salesforce_events).await?;
        super::sim::print_banner(&sim);
        (Some(sim), config)
    } else {
        let path = args.config.as_ref().expect("clap requires --config without --sim");
        (None, Config::load(path)?)
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = start_engine(&config, async move {
        let _ = stop_rx.await;
    })
    .await?;
    println!(
        "intake listening on {} for tenant(s) {}",
        engine.intake_url,
        config.tenants.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    // Where the token is, never the token.
    let token_at = match &config.admin.operator_token {
        Some(Secret::File(path)) => format!("the operator token is in {}", path.display()),
        Some(Secret::Env(name)) => format!("the operator token is in ${name}"),
        Some(Secret::Value(_)) => "the operator token is admin.operator_token in the configuration".to_string(),
        None if config.tenants.values().any(|t| t.admin_tokens.read.is_some() || t.admin_tokens.operate.is_some()) => {
            "tenants' tokens are their admin_tokens in the configuration".to_string()
        }
        None => "off: no admin token is configured".to_string(),
    };
    println!("admin API on {}/admin ({token_at}; `seam plugin list|install|rollback`)", engine.admin_url);
    println!("dashboard: {}/dashboard (it asks for the token)", engine.admin_url);
    println!("metrics: {}/metrics", engine.admin_url);
    if config.allow_unsigned && config.trusted_keys.is_empty() {
        println!("allow_unsigned: packs load without a signature check (set trusted_keys for real data)");
    }
    if let Some(dir) = &config.plugins_dir {
        println!("hot-loading packs written to {}/<tenant>/", dir.display());
    }
    if args.sim {
        println!("configuration written to {}", args.state.join("seam.json").display());
    }
    super::sim::wait_for_stop().await;
    let _ = stop_tx.send(());
    if let Some(sim) = sim {
        sim.shutdown();
    }
    Ok(())
}
