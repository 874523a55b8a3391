//! `seam pack`: everything done with a pack, from its key pair to its rollback.

pub mod artifact;
pub mod run;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum PackCommand {
    #[command(flatten)]
    Artifact(artifact::ArtifactCommand),
    #[command(flatten)]
    Run(run::RunCommand),
}

pub async fn run(cmd: PackCommand) -> Result<()> {
    match cmd {
        PackCommand::Artifact(cmd) => artifact::run(cmd).await,
        PackCommand::Run(cmd) => run::run(cmd).await,
    }
}
