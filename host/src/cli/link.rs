//! `seam link`: an operator declares a Case and an incident partners. seam
//! makes links itself (its own creates); this is the one other way, for an
//! identity conflict a person has looked into, or a pair made before seam.

use crate::config::Config;
use crate::engine::identity;
use crate::store::Journal;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct LinkArgs {
    /// The engine's configuration (`seam serve --sim` writes STATE/seam.json).
    #[arg(long, default_value = ".seam/seam.json")]
    pub config: PathBuf,
    /// The tenant whose records these are.
    #[arg(long)]
    pub tenant: String,
    /// The Salesforce Case id (15 or 18 characters).
    pub case: String,
    /// The ServiceNow incident sys_id (32 hex digits).
    pub incident: String,
}

pub async fn run(args: LinkArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let Some(tenant) = config.tenants.get(&args.tenant) else {
        bail!(
            "no tenant {:?} in {} (tenants: {})",
            args.tenant,
            args.config.display(),
            config.tenants.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    };
    let journal = std::sync::Arc::new(Journal::open(&config.journal)?);
    let systems = crate::engine::apply::Systems::for_tenant(&args.tenant, tenant)
        .await
        .with_context(|| format!("tenant {}", args.tenant))?;
    let by = std::env::var("USER").map(|u| format!("operator {u}")).unwrap_or_else(|_| "an operator".into());
    identity::link_by_operator(&journal, &args.tenant, &systems, &args.case, &args.incident, &by).await?;
    println!("linked Case {} with incident {}; each record's link field now names the other", args.case, args.incident);
    // The identity conflicts either record raised can go through now.
    let conflicts: Vec<i64> = journal
        .dead_letters(Some(&args.tenant))?
        .into_iter()
        .filter(|l| {
            (l.record.id == args.case || l.record.id == args.incident) && l.error.starts_with("identity conflict")
        })
        .map(|l| l.id)
        .collect();
    if !conflicts.is_empty() {
        journal.redrive(Some(&conflicts), &by)?;
        println!(
            "re-queued {} identity-conflict dead letter(s) of these records; the engine picks them up on its next pass",
            conflicts.len()
        );
    }
    Ok(())
}
