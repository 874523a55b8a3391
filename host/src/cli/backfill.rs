//! `seam backfill`: bring in the Cases changed since a date, which a first
//! start does not sync. Says how many and what it will cost first, asks, shows
//! progress, stops cleanly on Ctrl-C or near the org's daily API limit, and
//! resumes where it stopped when run again.

use crate::config::Config;
use crate::engine::backfill::{self, Backfill, Pause};
use crate::store::Journal;
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BackfillArgs {
    /// The engine's configuration.
    #[arg(long, default_value = ".seam/seam.json")]
    pub config: PathBuf,
    /// The tenant whose Cases to bring in.
    #[arg(long)]
    pub tenant: String,
    /// Cases changed since: a date (2026-11-01, midnight UTC) or a time (2026-11-01T09:00:00Z).
    #[arg(long)]
    pub since: String,
    /// Only Cases that also match this SOQL condition, e.g. "Status != 'Closed'".
    #[arg(long = "where")]
    pub condition: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// The share of the org's daily API allowance to leave unused: stop when only that is left.
    #[arg(long, default_value = "10%")]
    pub reserve: String,
    /// Cases waiting in the backlog before the next page is read (the running engine works them off).
    #[arg(long, default_value_t = 400)]
    pub window: u64,
}

/// How a backfill run ended.
enum Ended {
    Finished,
    Interrupted,
    /// The org's API reserve was reached.
    Budget,
}

pub async fn run(args: BackfillArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let tenant = config
        .tenants
        .get(&args.tenant)
        .with_context(|| format!("no tenant {:?} in {}", args.tenant, args.config.display()))?;
    let since = backfill::parse_since(&args.since)?;
    let reserve = backfill::parse_reserve(&args.reserve)?;
    let journal = Arc::new(Journal::open(&config.journal)?);
    let systems = Arc::new(
        crate::engine::apply::Systems::for_tenant(&args.tenant, tenant)
            .await
            .with_context(|| format!("tenant {}", args.tenant))?,
    );
    let job = Backfill::new(&args.tenant, journal, systems, since, args.condition.clone());

    let plan = job.plan().await?;
    let left = plan.left;
    println!(
        "{} Case(s) changed since {}{}.",
        plan.done + left,
        args.since,
        args.condition.as_deref().map(|c| format!(" where {c}")).unwrap_or_default()
    );
    if plan.done > 0 {
        println!("An earlier run brought in {}; {left} are left.", plan.done);
    }
    if left == 0 {
        println!("Nothing to do.");
        return Ok(());
    }
    println!(
        "Carrying them across takes about {} Salesforce and {} ServiceNow API calls (fewer when writes share batches).",
        plan.salesforce_calls, plan.servicenow_calls
    );
    if let Some((used, allowance)) = plan.api_usage {
        println!(
            "The org has used {used} of its {allowance} API requests today; the backfill stops while {:.0}% ({}) are still left.",
            reserve * 100.0,
            (allowance as f64 * reserve) as u64
        );
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("not asking on a non-interactive input: add --yes to go ahead");
        }
        print!("Bring in {left} Case(s)? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            println!("Nothing was done.");
            return Ok(());
        }
    }

    let bar = ProgressBar::new(plan.done + left);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} Cases journaled, {msg} [{elapsed_precise}, {eta} left]")
            .expect("a valid template"),
    );
    bar.set_position(plan.done);
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let mut idle_since = Instant::now();
    let mut last_backlog = u64::MAX;
    let outcome = loop {
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            break Ended::Interrupted;
        }
        // Room in the backlog first: the running engine sets the pace.
        let backlog = job.backlog().await?;
        bar.set_message(format!("{backlog} waiting to be carried across"));
        if backlog >= args.window {
            if backlog < last_backlog {
                idle_since = Instant::now();
            } else if idle_since.elapsed() > Duration::from_secs(60) {
                bar.println(format!(
                    "The backlog has not moved for a minute: is `seam serve` running for tenant {}?",
                    args.tenant
                ));
                idle_since = Instant::now();
            }
            last_backlog = backlog;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        match job.next_page(reserve).await? {
            Ok((read, _new)) => bar.inc(read as u64),
            Err(Pause::Finished) => break Ended::Finished,
            Err(Pause::Budget(used, allowance)) => {
                bar.println(format!("The org has used {used} of its {allowance} API requests today, leaving the reserve; stopping here."));
                break Ended::Budget;
            }
        }
    };
    bar.finish_and_clear();
    let done = job.plan().await?.done;
    match outcome {
        Ended::Finished => {
            println!("All {} Case(s) are journaled; `seam serve` carries them across ({} still waiting now).", done, job.backlog().await?);
            Ok(())
        }
        Ended::Interrupted => {
            println!("Interrupted after {done} Case(s). Run the same command again to go on from there.");
            Ok(())
        }
        Ended::Budget => bail!("stopped after {done} Case(s) to keep the org's API reserve; run the same command again once the daily limit resets"),
    }
}
