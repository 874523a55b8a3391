//! `seam dlq list|redrive`: see what failed for good, and send it through again once fixed.

use crate::store::Journal;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct DlqArgs {
    /// The engine's journal.
    #[arg(long, default_value = ".seam/journal.db", global = true)]
    pub journal: PathBuf,
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    #[command(after_help = "Example:\n  seam dlq list --journal .seam/journal.db --tenant acme")]
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue dead letters again: by id, or all of them.
    #[command(after_help = "Examples:\n  seam dlq redrive 41 42\n  seam dlq redrive --all")]
    Redrive {
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
}

pub fn run(args: DlqArgs) -> Result<()> {
    if !args.journal.exists() {
        bail!("no journal at {}: pass --journal with the path of the engine's journal.db", args.journal.display());
    }
    let journal = Journal::open(&args.journal)?;
    match args.command {
        DlqCommand::List { tenant, json } => {
            let letters = journal.dead_letters(tenant.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else if letters.is_empty() {
                println!("the dead-letter queue is empty");
            } else {
                println!("{:>6}  {:<10}  {:<44}  {:>8}  error", "id", "tenant", "record", "attempts");
                for l in letters {
                    println!(
                        "{:>6}  {:<10}  {:<44}  {:>8}  {}",
                        l.id,
                        l.tenant,
                        l.record.to_string(),
                        l.attempts,
                        l.error
                    );
                }
            }
        }
        DlqCommand::Redrive { ids, all } => {
            let n = match (all, ids.is_empty()) {
                (true, true) => journal.redrive(None, "cli")?,
                (false, false) => journal.redrive(Some(&ids), "cli")?,
                (true, false) => bail!("give event ids or --all, not both"),
                (false, true) => bail!("give the ids to re-drive (see `seam dlq list`), or --all"),
            };
            println!("re-queued {n} event(s); the engine picks them up on its next pass");
        }
    }
    Ok(())
}
