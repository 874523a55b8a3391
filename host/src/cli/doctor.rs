//! `seam doctor`: check that each tenant can run against its real systems,
//! and say what to do about what cannot (see `setup::doctor`).

use crate::config::Config;
use crate::setup::doctor::{self, Outcome};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct DoctorArgs {
    /// The configuration to check.
    #[arg(long, default_value = "seam.json")]
    pub config: PathBuf,
    /// Only this tenant; default: every tenant.
    #[arg(long)]
    pub tenant: Option<String>,
}

pub async fn run(args: DoctorArgs) -> Result<()> {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            println!("✗ configuration: {e:#}");
            bail!("the configuration {} cannot be used; fix it and run seam doctor again", args.config.display());
        }
    };
    println!("✓ configuration: {} ({} tenant(s))", args.config.display(), config.tenants.len());
    let mut names: Vec<&String> = config.tenants.keys().collect();
    names.sort();
    if let Some(only) = &args.tenant {
        if !config.tenants.contains_key(only) {
            bail!(
                "no tenant {only:?} in {}; it has {}",
                args.config.display(),
                names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        names.retain(|n| *n == only);
    }
    let mut failed = 0;
    for name in names {
        println!("\ntenant {name}");
        for check in doctor::tenant(&config, name, &config.tenants[name]).await {
            match &check.outcome {
                Outcome::Pass(detail) => println!("  ✓ {}: {detail}", check.name),
                Outcome::Fail(what, next) => {
                    failed += 1;
                    println!("  ✗ {}: {what}\n      next: {next}", check.name);
                }
                Outcome::Skipped(why) => println!("  – {}: not checked ({why})", check.name),
            }
        }
    }
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    println!("\nall checks passed");
    Ok(())
}
