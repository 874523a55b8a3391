//! `seam reconcile`: compare every linked pair of a tenant (or all tenants)
//! as the systems hold them now, repair drift from the owning side, and say
//! what changed. `seam serve` runs the same pass on a schedule.

use crate::config::Config;
use crate::engine::reconcile::{Reconciler, Report};
use crate::packs::{Registry, TrustedKeys};
use crate::runtime::Runtime;
use crate::store::Journal;
use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct ReconcileArgs {
    /// The engine's configuration (`seam serve --sim` writes STATE/seam.json).
    #[arg(long, default_value = ".seam/seam.json")]
    pub config: PathBuf,
    /// Only this tenant; default: every tenant in the configuration.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Report drift without repairing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: ReconcileArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let journal = Arc::new(Journal::open(&config.journal)?);
    let runtime = Runtime::new(config.runtime())?;
    let store = config.journal.parent().map(|d| d.join("packs")).unwrap_or_else(|| PathBuf::from("packs"));
    let mut registry = Registry::new(runtime, TrustedKeys::read(&config.trusted_keys)?, store, journal.clone())?;
    let tenants: Vec<String> = match &args.tenant {
        Some(t) if config.tenants.contains_key(t) => vec![t.clone()],
        Some(t) => bail!(
            "no tenant {t:?} in {} (tenants: {})",
            args.config.display(),
            config.tenants.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        None => {
            let mut all: Vec<String> = config.tenants.keys().cloned().collect();
            all.sort();
            all
        }
    };
    let mut reports = Vec::new();
    let mut failed = false;
    for name in tenants {
        let t = &config.tenants[&name];
        let bytes = crate::packs::read_pack(&t.pack)?;
        let workflows = t.workflows.iter().map(|w| crate::packs::read_pack(w)).collect::<Result<Vec<_>>>()?;
        if let Some(limits) = &t.pack_limits {
            registry.limit_tenant(&name, limits.runtime());
        }
        // The pack the tenant runs now (hot-loaded or rolled back since the configuration was written).
        let started = registry
            .add_tenant(&name, &bytes, &workflows, &crate::packs::pack_name(&t.pack), t.ownership.clone())
            .await
            .with_context(|| format!("loading the packs of tenant {name}"))?;
        let systems = Arc::new(
            crate::engine::apply::Systems::for_tenant(&name, t).await.with_context(|| format!("tenant {name}"))?,
        );
        let reconciler = Reconciler {
            tenant: name.clone(),
            journal: journal.clone(),
            systems,
            mapping: Arc::new(ArcSwap::new(started.mapping.load_full())),
        };

        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} pairs {elapsed}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("reconciling {name}"));
        let report = reconciler
            .run(!args.dry_run, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await?;
        bar.finish_and_clear();
        failed |= !report.failed.is_empty();
        if !args.json {
            print_report(&name, &report, args.dry_run);
        }
        reports.push((name, report));
    }
    if args.json {
        let json: serde_json::Map<String, serde_json::Value> =
            reports.into_iter().map(|(t, r)| (t, serde_json::to_value(r).unwrap_or_default())).collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    if failed {
        bail!("some pairs could not be checked (see above); run again once the systems answer");
    }
    Ok(())
}

fn print_report(tenant: &str, r: &Report, dry_run: bool) {
    println!(
        "{tenant}: {} linked pair(s): {} in sync ({} unchanged since the last check), {} drifted, {} skipped (events still waiting), {} could not be checked",
        r.pairs,
        r.in_sync,
        r.unchanged,
        r.drifted,
        r.skipped,
        r.failed.len()
    );
    for d in &r.drifts {
        let found = d.found.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "—".into());
        let verb = if d.repaired {
            "repaired"
        } else if dry_run {
            "would repair"
        } else {
            "NOT repaired"
        };
        println!("  {verb}: {} {}: {found} → {} ({} owns it)", d.record, d.field, d.expected, d.owner);
    }
    for (case, why) in &r.failed {
        println!("  could not check Case {case}: {why}");
    }
}
