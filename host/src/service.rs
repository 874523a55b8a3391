//! The engine as one service: per tenant its packs, connections, processor,
//! catch-up poller (or Pub/Sub subscriber), alerter and reconciler; the intake and
//! admin listeners; the journal's upkeep; and the shutdown. `seam serve` and
//! `seam demo` start it the same way, through [`start_engine`].

use crate::admin::metrics::{Metrics, TenantLabel};
use crate::admin::Admin;
use crate::config::Config;
use crate::engine::alerts::Alerter;
use crate::engine::dispatcher::Dispatcher;
use crate::engine::poller::Poller;
use crate::engine::processor::{Processor, Retrying};
use crate::engine::reconcile::Reconciler;
use crate::intake::salesforce::pubsub as salesforce_events;
use crate::intake::{self, Intake};
use crate::listener::Bound;
use crate::packs::{Registry, TrustedKeys};
use crate::runtime::Runtime;
use crate::store::Journal;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The running engine: per tenant a processor and a poller, and the intake server.
pub struct Engine {
    pub journal: Arc<Journal>,
    pub processors: HashMap<String, Arc<Processor>>,
    /// Where intake and the admin listener answer (`http(s)://address`).
    pub intake_url: String,
    pub admin_url: String,
    pub registry: Arc<Registry>,
    /// Hot loading from `packs_dir` lasts as long as this.
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
    let runtime = Runtime::new(config.runtime())?;
    let trusted = TrustedKeys::read(&config.trusted_keys)?;
    let store = config.journal.parent().map(|d| d.join("packs")).unwrap_or_else(|| PathBuf::from("packs"));
    let mut registry = Registry::new(runtime, trusted, store, journal.clone())?;
    let metrics = Arc::new(Metrics::new());
    let mut tenants = HashMap::new();
    let mut processors = HashMap::new();
    for (name, t) in &config.tenants {
        let bytes = crate::packs::read_pack(&t.pack)?;
        let workflows = t.workflows.iter().map(|w| crate::packs::read_pack(w)).collect::<Result<Vec<_>>>()?;
        if let Some(limits) = &t.pack_limits {
            registry.limit_tenant(name, limits.runtime());
        }
        let started = registry
            .add_tenant(name, &bytes, &workflows, &crate::packs::pack_name(&t.pack), t.ownership.clone())
            .await
            .with_context(|| format!("loading the packs of tenant {name}"))?;
        let pack = started.mapping.load();
        tracing::info!(tenant = %name, pack = %pack.manifest.id(), sha256 = %pack.hash, signer = ?pack.signer, "pack loaded");
        for w in started.workflows.load().iter() {
            tracing::info!(tenant = %name, workflow = %w.manifest.id(), sha256 = %w.hash, signer = ?w.signer, "workflow loaded");
        }
        let mut systems =
            crate::engine::apply::Systems::for_tenant(name, t).await.with_context(|| format!("tenant {name}"))?;
        let pubsub = t.events == crate::config::intake::Source::Pubsub;
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
    let watcher = match &config.packs_dir {
        Some(dir) => Some(crate::admin::watch::start(dir, registry.clone(), config.tenants.keys().cloned().collect())?),
        None => None,
    };
    let admin = Arc::new(Admin {
        registry: registry.clone(),
        journal: journal.clone(),
        metrics: metrics.clone(),
        tokens: crate::admin::access::Tokens::of(config)?,
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
async fn prune_every(journal: Arc<Journal>, retention: crate::config::retention::Retention) {
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

/// Until SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_stop() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
