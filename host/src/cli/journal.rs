//! `seam journal prune`: forget settled events and old audit rows, as the
//! configuration's `retention` says (`seam serve` does it in the background too).

use crate::config::Config;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    pub command: JournalCommand,
}

#[derive(Subcommand)]
pub enum JournalCommand {
    /// Delete settled events older than retention.settled_event_days and audit rows older than
    /// retention.audit_days; pending events and dead letters stay.
    #[command(after_help = "Example:\n  seam journal prune --config seam.json --dry-run")]
    Prune {
        /// The configuration: its journal and its retention.
        #[arg(long, default_value = ".seam/seam.json")]
        config: PathBuf,
        /// Say what would go, and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(args: JournalArgs) -> Result<()> {
    match args.command {
        JournalCommand::Prune { config, dry_run } => {
            let config = Config::load(&config)?;
            let journal = crate::store::Journal::open(&config.journal)?;
            let r = &config.retention;
            let p = journal.prune(r, chrono::Utc::now().timestamp_millis(), dry_run)?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            println!(
                "{verb} {} settled event(s) older than {} day(s), {} audit row(s) older than {} day(s), and {} event history row(s)",
                p.events, r.settled_event_days, p.audit_rows, r.audit_days, p.history_rows
            );
            Ok(())
        }
    }
}
