//! `seam servicenow`: what a ServiceNow admin installs for a tenant.

use crate::secrets::Secret;
use crate::setup::servicenow::{update_set, PushSetup};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ServiceNowCommand {
    /// Write the update set an admin imports (Retrieved Update Sets → Import Update Set from
    /// XML → Preview → Commit): the push business rule, its properties, core_company's key field.
    UpdateSet(UpdateSetArgs),
}

#[derive(Args)]
pub struct UpdateSetArgs {
    /// The configuration: the tenant's intake secret, integration user and public_url come from it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The tenant the rule sends for.
    #[arg(long)]
    pub tenant: String,
    /// Where to write the file (it holds the intake secret: keep it private, delete it once committed).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Without --config: where the rule posts (`https://seam.example.com/intake/<tenant>/servicenow`).
    #[arg(long, conflicts_with = "config")]
    pub endpoint: Option<String>,
    /// Without --config: a file holding the intake's ServiceNow secret.
    #[arg(long, conflicts_with = "config")]
    pub secret_file: Option<PathBuf>,
    /// Without --config: the environment variable holding the intake's ServiceNow secret.
    #[arg(long, conflicts_with_all = ["config", "secret_file"])]
    pub secret_env: Option<String>,
    /// Without --config: the user seam writes as (its changes are not sent back).
    #[arg(long, conflicts_with = "config")]
    pub integration_user: Option<String>,
}

pub fn run(command: ServiceNowCommand) -> Result<()> {
    match command {
        ServiceNowCommand::UpdateSet(args) => write_update_set(args),
    }
}

/// The push rule's setup for `tenant` as the configuration describes it.
pub fn push_setup(config: &crate::config::Config, tenant: &str) -> Result<PushSetup> {
    let t = config.tenants.get(tenant).with_context(|| {
        format!(
            "no tenant {tenant:?} in the configuration; it has {}",
            config.tenants.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let integration_user = t
        .servicenow
        .integration_user()
        .context("the tenant's servicenow section names no integration_user")?
        .to_string();
    Ok(PushSetup {
        tenant: tenant.to_string(),
        endpoint: format!("{}/intake/{tenant}/servicenow", config.public_base()),
        secret: t.intake.servicenow_secret.resolve(&format!("tenants.{tenant}.intake.servicenow_secret"))?,
        integration_user,
    })
}

fn write_update_set(args: UpdateSetArgs) -> Result<()> {
    crate::config::check_tenant_name(&args.tenant)?;
    let setup = match &args.config {
        Some(path) => {
            let config = crate::config::Config::load(path)?;
            if config.public_url.is_none() {
                eprintln!(
                    "note: {} has no public_url; the rule will post to {}, which the instance must be able to reach",
                    path.display(),
                    config.intake_url()
                );
            }
            push_setup(&config, &args.tenant)?
        }
        None => {
            let missing: Vec<&str> = [
                ("--endpoint", args.endpoint.is_none()),
                ("--secret-file or --secret-env", args.secret_file.is_none() && args.secret_env.is_none()),
                ("--integration-user", args.integration_user.is_none()),
            ]
            .into_iter()
            .filter_map(|(flag, missing)| missing.then_some(flag))
            .collect();
            if !missing.is_empty() {
                bail!("give --config, or all of --endpoint, --secret-file (or --secret-env) and --integration-user; missing: {}", missing.join(", "));
            }
            let endpoint = args.endpoint.clone().unwrap_or_default();
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                bail!("--endpoint must be an http(s):// URL; got {endpoint:?}");
            }
            let secret = match (&args.secret_file, &args.secret_env) {
                (Some(file), _) => Secret::file(file),
                (None, Some(var)) => Secret::env(var),
                (None, None) => unreachable!("checked above"),
            };
            PushSetup {
                tenant: args.tenant.clone(),
                endpoint,
                secret: secret.resolve("the intake's ServiceNow secret")?,
                integration_user: args.integration_user.clone().unwrap_or_default(),
            }
        }
    };
    let xml = update_set(&setup, chrono::Utc::now());
    crate::secrets::write_secret_file(&args.output, &xml)?;
    println!(
        "wrote {} (update set for tenant {}: the push rule on incident, sending to {})",
        args.output.display(),
        setup.tenant,
        setup.endpoint
    );
    println!(
        "import it: System Update Sets → Retrieved Update Sets → Import Update Set from XML, then Preview and Commit."
    );
    println!("it holds the intake secret: delete the file once the update set is committed.");
    Ok(())
}
