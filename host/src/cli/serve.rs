//! `seam serve`: the engine as one process. Intake endpoints, and per
//! tenant a processor working through the journal and a catch-up poller.
//!
//! Configuration is a JSON file (`--config`). With `--sim`, the emulators
//! start in the same process and the configuration for one tenant, `demo`,
//! is written for them (to `STATE/seam.json`, to read or copy).

use crate::connectors::{salesforce, servicenow, slack, RetryPolicy};
use crate::engine::apply::Systems;
use crate::engine::dispatcher::Dispatcher;
use crate::engine::ownership::Ownership;
use crate::engine::poller::Poller;
use crate::admin::metrics::{Metrics, TenantLabel};
use crate::engine::alerts::{AlertConfig, Alerter};
use crate::engine::reconcile::Reconciler;
use crate::engine::processor::Processor;
use crate::intake::salesforce::pubsub as salesforce_events;
use crate::intake::{self, Intake, TenantIntake};
use crate::secrets::Secret;
use crate::admin::Admin;
use crate::packs::{Registry, TrustedKeys};
use crate::runtime::{Runtime, RuntimeConfig};
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
    /// With --sim: fixed ports (intake, salesforce, servicenow, slack, and Salesforce's Pub/Sub API),
    /// so a restart comes back where it was.
    #[arg(long, num_args = 4..=5, value_names = ["INTAKE", "SALESFORCE", "SERVICENOW", "SLACK", "PUBSUB"])]
    pub ports: Option<Vec<u16>>,
    /// With --sim: how the emulated org's changes reach seam.
    #[arg(long, value_enum, default_value = "pubsub")]
    pub salesforce_events: salesforce_events::Source,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where intake listens, e.g. `127.0.0.1:8787`.
    pub listen: String,
    pub journal: PathBuf,
    /// Seconds between catch-up polls.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
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
    /// Bearer token for the admin API (`/admin/...`: list, load and roll back packs) and the
    /// dashboard (a secret: a value, `{"env": …}` or `{"file": …}`); absent: the API is off.
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// Where the systems reach intake from outside (`https://seam.example.com`): the URLs the
    /// generated business rule and Outbound Message post to. Absent: `http://{listen}`.
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

fn default_reconcile() -> u64 {
    60
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
        let pack = crate::packs::artifact::Pack::open(&bytes).with_context(|| format!("reading the pack {}", self.pack.display()))?;
        Ok(pack.manifest.ownership.unwrap_or_default())
    }

    /// Log in to the tenant's systems.
    pub async fn connect(&self, tenant: &str) -> Result<Systems> {
        Systems::connect(tenant, &self.salesforce, &self.servicenow, self.slack.as_ref(), self.ca_pem.as_deref(), RetryPolicy::default()).await
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
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen)).trim_end_matches('/').to_string()
    }

    /// The admin token, read.
    pub fn admin_token(&self) -> Result<Option<crate::secrets::SecretString>> {
        self.admin_token.as_ref().map(|t| t.resolve("admin_token")).transpose()
    }
}

/// Tenant names go into URLs (`/intake/{tenant}/…`), ServiceNow property names and
/// Salesforce's `Sforce-Call-Options` (`client=seam-{tenant}`): letters, digits, `-` and `_`.
pub fn check_tenant_name(name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 40 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        anyhow::bail!("tenant name {name:?}: use 1 to 40 letters, digits, '-' or '_', starting with a letter or digit");
    }
    Ok(())
}

/// The demo tenant's intake secrets (the emulators know them; they guard nothing real).
const DEMO_OUTBOUND_TOKEN: &str = "demo-outbound-token";
const DEMO_SERVICENOW_SECRET: &str = "demo-servicenow-secret";

/// Start the emulators and describe them as a one-tenant configuration, `demo`.
/// `events` says how the org's changes reach seam: over its Pub/Sub API, or as Outbound Messages
/// (the emulated org is then set up to send them to intake).
pub async fn sim_config(state: &std::path::Path, pack: &std::path::Path, workflows: &[PathBuf], ports: Option<&[u16]>, events: salesforce_events::Source) -> Result<(Sim, Config)> {
    let mut ports = ports.map(<[u16]>::to_vec).unwrap_or_default();
    ports.resize(5, 0);
    // Intake's port must be known before the emulators are told where to push.
    let intake_port = if ports[0] == 0 { std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port() } else { ports[0] };
    let listen = format!("127.0.0.1:{intake_port}");
    let intake_cfg = TenantIntake {
        salesforce_org_id: crate::sim::salesforce::ORG_ID.into(),
        salesforce_token: Secret::value(DEMO_OUTBOUND_TOKEN),
        servicenow_secret: Secret::value(DEMO_SERVICENOW_SECRET),
    };
    let mut sim_config = SimConfig::new(state.join("sim"));
    (sim_config.salesforce_port, sim_config.servicenow_port, sim_config.slack_port, sim_config.pubsub_port) = (ports[1], ports[2], ports[3], ports[4]);
    if events == salesforce_events::Source::OutboundMessages {
        sim_config.notify =
            vec![("salesforce".into(), NotifyTarget { url: format!("http://{listen}/intake/demo/salesforce/outbound?token={DEMO_OUTBOUND_TOKEN}"), secret: None, format: None })];
    }
    let sim = Sim::start(sim_config).await?;
    // As the instance's admin would: seam's update set, its push rule sending to this intake.
    sim.install_push_rule("demo", &format!("http://{listen}/intake/demo/servicenow"), DEMO_SERVICENOW_SECRET)?;
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
    };
    let config = Config { listen, journal: state.join("journal.db"), poll_seconds: 5,
        concurrency: default_concurrency(),
        tenants: HashMap::from([("demo".to_string(), tenant)]),
        trusted_keys: vec![],
        // The emulators run the packs this checkout builds, unsigned (the banner says so).
        allow_unsigned: true,
        admin_token: Some(Secret::value(hex::encode(rand::random::<[u8; 16]>()))),
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
    pub listen: String,
    pub registry: Arc<Registry>,
    /// Hot loading from `plugins_dir` lasts as long as this.
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Load every tenant's pack and connections, then start the processors, pollers and intake.
pub async fn start_engine(config: &Config, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<Engine> {
    config.check_trust()?;
    let journal = Arc::new(Journal::open(&config.journal)?);
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
        let started = registry.add_tenant(name, &bytes, &workflows, &super::pack_name(&t.pack), t.ownership.clone()).await.with_context(|| format!("loading the packs of tenant {name}"))?;
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
        let processor = Arc::new(Processor { tenant: name.clone(), journal: journal.clone(), systems: systems.clone(), active: started.mapping, workflows: started.workflows, counters: metrics.counters(name) });
        processors.insert(name.clone(), processor.clone());
        let dispatcher = Dispatcher::new(processor.clone(), config.concurrency);
        tokio::spawn(async move { dispatcher.run_forever().await });
        let alerter = Alerter {
            tenant: name.clone(),
            journal: journal.clone(),
            systems: systems.clone(),
            config: config.alerts.clone(),
            sent: metrics.alerts.get_or_create_owned(&TenantLabel { tenant: name.clone() }),
            dashboard: Some(format!("http://{}/dashboard", config.listen)),
        };
        tokio::spawn(alerter.run_forever());
        if config.reconcile_minutes > 0 {
            let reconciler = Reconciler { tenant: name.clone(), journal: journal.clone(), systems: systems.clone(), mapping: processor.active.clone() };
            tokio::spawn(reconcile_every(reconciler, Duration::from_secs(config.reconcile_minutes * 60)));
        }
        let poller = Arc::new(Poller::new(&name, journal.clone(), systems.clone(), !pubsub));
        if pubsub {
            let mirrored = pack.ownership.mirrors.iter().filter(|m| m.system == crate::model::System::Salesforce).map(|m| m.object.clone());
            let topics = salesforce_events::topics(mirrored, t.pubsub.platform_event.as_deref());
            let subscriber = salesforce_events::Subscriber::new(name, journal.clone(), systems.clone(), poller.clone(), processor.counters.clone(), &t.intake.salesforce_org_id, &t.pubsub, t.ca_pem.as_deref())?;
            tracing::info!(tenant = %name, topics = ?topics, url = %t.pubsub.url, "Salesforce changes come over the Pub/Sub API");
            Arc::new(subscriber).start(topics);
        }
        let every = Duration::from_secs(config.poll_seconds.max(1));
        // The first pass at once: on a first start it sets the watermarks at "now" (what changes
        // from then on is caught up, nothing before), on a restart it catches up on the downtime.
        tokio::spawn(async move {
            loop {
                match poller.poll_once().await {
                    Ok(p) if p.new > 0 => tracing::info!(tenant = %poller.tenant, "catch-up poll found {} change(s) no notification announced", p.new),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(tenant = %poller.tenant, "catch-up poll failed: {e:#}"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }
    let registry = Arc::new(registry);
    let watcher = match &config.plugins_dir {
        Some(dir) => Some(crate::admin::watch::start(dir, registry.clone(), config.tenants.keys().cloned().collect())?),
        None => None,
    };
    let admin = Arc::new(Admin { registry: registry.clone(), journal: journal.clone(), metrics: metrics.clone(), token: config.admin_token()? });
    let intake = Arc::new(Intake::new(journal.clone(), tenants, processors.iter().map(|(name, p)| (name.clone(), p.counters.clone())).collect()));
    let listener = tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("binding intake to {}", config.listen))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, intake::router(intake, intake::DEFAULT_MAX_BODY).merge(crate::admin::router(admin))).with_graceful_shutdown(shutdown).await {
            tracing::error!("intake stopped: {e}");
        }
    });
    Ok(Engine { journal, processors, listen: config.listen.clone(), registry, _watcher: watcher })
}

/// Reconcile on a schedule; the first pass after one period, so start-up is not slowed.
async fn reconcile_every(reconciler: Reconciler, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match reconciler.run(true, |_, _| {}).await {
            Ok(r) => tracing::info!(tenant = %reconciler.tenant, pairs = r.pairs, in_sync = r.in_sync, repaired = r.drifted, skipped = r.skipped, failed = r.failed.len(), "reconciliation pass"),
            Err(e) => tracing::warn!(tenant = %reconciler.tenant, "reconciliation pass failed: {e:#}"),
        }
    }
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let (sim, config) = if args.sim {
        let (sim, config) = sim_config(&args.state, &args.pack, &args.workflows, args.ports.as_deref(), args.salesforce_events).await?;
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
    println!("intake listening on http://{} for tenant(s) {}", engine.listen, config.tenants.keys().cloned().collect::<Vec<_>>().join(", "));
    if let Some(token) = config.admin_token()? {
        println!("admin API on http://{}/admin (bearer admin_token from the configuration; `seam plugin list|install|rollback`)", engine.listen);
        if args.sim {
            // The emulators' throwaway token: the link opens the dashboard as is.
            println!("dashboard: http://{}/dashboard#token={}", engine.listen, crate::secrets::ExposeSecret::expose_secret(&token));
        } else {
            println!("dashboard: http://{}/dashboard (add #token=<admin_token> to the address)", engine.listen);
        }
    }
    println!("metrics: http://{}/metrics", engine.listen);
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
