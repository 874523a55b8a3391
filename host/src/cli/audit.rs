//! `seam audit why SYSTEM OBJECT ID FIELD`: every change seam made to a field,
//! newest first, with the event behind it (who changed what in which system)
//! and that event's fate (dead-lettered, re-driven), from the journal.

use crate::model::{RecordRef, System};
use crate::store::views::{EventStory, FieldChange};
use crate::store::{EventStatus, Journal};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct AuditArgs {
    /// The engine's journal.
    #[arg(long, default_value = ".seam/journal.db", global = true)]
    pub journal: PathBuf,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Why did this field change? `seam audit why servicenow incident SYS_ID urgency`
    Why {
        /// salesforce, servicenow or slack.
        system: String,
        /// `Case`, `incident`, `Task`...
        object: String,
        id: String,
        field: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// "salesforce Case 500… updated by jane at …; done after 1 attempt; dead-lettered …: …; re-driven … by dashboard"
pub fn describe_event(e: &EventStory) -> Vec<String> {
    let by = if e.origin_user.is_empty() { String::new() } else { format!(" by {}", e.origin_user) };
    let attempts = match e.attempts {
        0 | 1 => String::new(),
        n => format!(" after {n} attempts"),
    };
    let what = match e.changed.len() {
        0 => String::new(),
        1..=4 => format!(": {}", e.changed.join(", ")),
        n => format!(": {}, and {} more", e.changed[..3].join(", "), n - 3),
    };
    let mut lines = vec![
        format!("{} {}{by}{what}", e.record, e.kind),
        format!("received {} (event {}, {}{attempts})", when(e.received_at_ms), e.key, e.status),
    ];
    if !e.merged.is_empty() {
        lines.push(format!(
            "carried across with {} later update(s) of the record that waited for it: {}",
            e.merged.len(),
            e.merged.join(", ")
        ));
    }
    for (at, what, detail) in &e.history {
        lines.push(format!("{what} {}: {detail}", when(*at)));
    }
    if !e.status.is_settled() {
        if let Some(error) = &e.last_error {
            lines.push(format!("last error: {error}"));
        }
    }
    lines
}

pub fn run(args: AuditArgs) -> Result<()> {
    if !args.journal.exists() {
        bail!("no journal at {}: pass --journal with the path of the engine's journal.db", args.journal.display());
    }
    let journal = Journal::open(&args.journal)?;
    match args.command {
        AuditCommand::Why { system, object, id, field, tenant, json } => {
            let system: System = system.parse()?;
            let record = RecordRef { system, object, id };
            let changes = journal.why(tenant.as_deref(), &record, &field)?;
            let open = journal.unfinished(tenant.as_deref(), &record)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "record": record, "field": field, "changes": changes, "unfinished": open })
                    )?
                );
                return Ok(());
            }
            print_why(&record, &field, &changes, &open);
        }
    }
    Ok(())
}

fn print_why(record: &RecordRef, field: &str, changes: &[FieldChange], open: &[EventStory]) {
    if changes.is_empty() {
        println!("seam has not changed {record} {field} (no audit rows; check the system, object, id and field name, and --journal)");
    } else {
        println!("{record} {field}: {} change(s) by seam, newest first", changes.len());
    }
    for c in changes {
        let old = c.old.as_ref().map(|o| o.to_string()).unwrap_or_else(|| "—".into());
        println!("\n{}  {old} → {}  ({}, {}, tenant {})", when(c.at_ms), c.new, c.reason, c.pack, c.tenant);
        match &c.event {
            Some(e) => {
                for (n, line) in describe_event(e).into_iter().enumerate() {
                    println!("    {}{line}", if n == 0 { "because: " } else { "         " });
                }
            }
            None => println!("    the event behind it is no longer in the journal"),
        }
    }
    if !open.is_empty() {
        println!("\nnot carried across yet ({}):", open.len());
        for e in open {
            for (n, line) in describe_event(e).into_iter().enumerate() {
                println!("    {}{line}", if n == 0 { "" } else { "    " });
            }
            if e.status == EventStatus::Dead {
                println!("        re-drive it with `seam dlq redrive {}` once the cause is fixed", e.id);
            }
        }
    }
}
