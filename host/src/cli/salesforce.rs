//! `seam salesforce`: what a Salesforce admin deploys for seam.

use crate::engine::ownership::Ownership;
use crate::setup::salesforce::{Metadata, Outbound, PERMISSION_SET};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SalesforceCommand {
    /// Write the SFDX source seam needs in the org (custom fields, Change Data Capture for Case
    /// and Account, the Seam_Integration permission set; optionally the Outbound Message), for
    /// `sf project deploy start`.
    Metadata(MetadataArgs),
}

#[derive(Args)]
pub struct MetadataArgs {
    /// The project folder to write (an existing SFDX project keeps its sfdx-project.json).
    #[arg(short, long)]
    pub output: PathBuf,
    /// The configuration: the tenant's packs say which Case fields seam mirrors.
    #[arg(long, requires = "tenant")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// Also the Outbound Message on Case to this tenant's intake, and the flow that sends it
    /// (needs --config: the intake's public_url and token).
    #[arg(long, requires = "config")]
    pub outbound_message: bool,
    /// The user the Outbound Message is sent as (default: the username of the tenant's login).
    #[arg(long, requires = "outbound_message")]
    pub integration_user: Option<String>,
}

pub fn run(command: SalesforceCommand) -> Result<()> {
    match command {
        SalesforceCommand::Metadata(args) => metadata(args),
    }
}

fn metadata(args: MetadataArgs) -> Result<()> {
    let (ownership, outbound) = match (&args.config, &args.tenant) {
        (Some(path), Some(tenant)) => {
            let config = crate::config::Config::load(path)?;
            let t =
                config.tenants.get(tenant).with_context(|| format!("no tenant {tenant:?} in {}", path.display()))?;
            let outbound = if args.outbound_message {
                let token = t.intake.salesforce_token.resolve(&format!("tenants.{tenant}.intake.salesforce_token"))?;
                let user = match (&args.integration_user, &t.salesforce.auth) {
                    (Some(u), _) => u.clone(),
                    (
                        None,
                        crate::config::salesforce::Auth::JwtBearer { username, .. }
                        | crate::config::salesforce::Auth::Password { username, .. },
                    ) => username.clone(),
                    (None, crate::config::salesforce::Auth::ClientCredentials { .. }) => {
                        bail!("with the client credentials flow, name the Outbound Message's user: --integration-user <the Run As user's username>")
                    }
                };
                if config.public_url.is_none() {
                    eprintln!("note: {} has no public_url; the Outbound Message will go to {}, which Salesforce must be able to reach", path.display(), config.intake_url());
                }
                let endpoint = format!(
                    "{}/intake/{tenant}/salesforce/outbound?token={}",
                    config.public_base(),
                    crate::secrets::ExposeSecret::expose_secret(&token)
                );
                Some(Outbound { endpoint, integration_user: user, tenant: tenant.clone() })
            } else {
                None
            };
            (t.ownership()?, outbound)
        }
        _ => (Ownership::default(), None),
    };
    let metadata = Metadata::for_ownership(&ownership, outbound);
    let written = metadata.write(&args.output)?;
    println!("wrote {} file(s) under {}:", written.len(), args.output.display());
    for f in &metadata.fields {
        println!(
            "  field {}.{} (Text {}{})",
            f.object,
            f.name,
            f.length,
            if f.key { ", External ID, unique" } else { "" }
        );
    }
    println!("  Change Data Capture for Case and Account; permission set {PERMISSION_SET}");
    if metadata.outbound.is_some() {
        println!("  Outbound Message on Case, sent by a record-triggered flow (its URL holds the intake token: keep the folder private)");
    }
    println!("deploy: (cd {} && sf project deploy start --target-org <your org>), then assign {PERMISSION_SET} to the integration user", args.output.display());
    Ok(())
}
