//! `seam serve`: the engine as one process (see [`crate::service`]).
//!
//! Configuration is a JSON file (`--config`). With `--sim`, the emulators
//! start in the same process and the configuration for one tenant, `demo`,
//! is written for them (to `STATE/seam.json`, to read or copy).

use crate::config::intake::Source;
use crate::config::Config;
use crate::secrets::Secret;
use crate::service::start_engine;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

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
    pub salesforce_events: Source,
}

pub async fn run(args: ServeArgs) -> Result<()> {
    #[cfg(feature = "sim")]
    let (sim, config) = if args.sim {
        let (sim, config) = super::simulated::sim_config(
            &args.state,
            &args.pack,
            &args.workflows,
            args.ports.as_deref(),
            args.salesforce_events,
        )
        .await?;
        super::sim::print_banner(&sim);
        (Some(sim), config)
    } else {
        let path = args.config.as_ref().expect("clap requires --config without --sim");
        (None, Config::load(path)?)
    };
    #[cfg(not(feature = "sim"))]
    let config = match &args.config {
        Some(path) if !args.sim => Config::load(path)?,
        _ => anyhow::bail!("this seam was built without the emulators (--no-default-features): serve a --config"),
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
    println!("admin API on {}/admin ({token_at}; `seam pack list|install|rollback`)", engine.admin_url);
    println!("dashboard: {}/dashboard (it asks for the token)", engine.admin_url);
    println!("metrics: {}/metrics", engine.admin_url);
    if config.allow_unsigned && config.trusted_keys.is_empty() {
        println!("allow_unsigned: packs load without a signature check (set trusted_keys for real data)");
    }
    if let Some(dir) = &config.packs_dir {
        println!("hot-loading packs written to {}/<tenant>/", dir.display());
    }
    if args.sim {
        println!("configuration written to {}", args.state.join("seam.json").display());
    }
    crate::service::wait_for_stop().await;
    let _ = stop_tx.send(());
    #[cfg(feature = "sim")]
    if let Some(sim) = sim {
        sim.shutdown();
    }
    Ok(())
}
