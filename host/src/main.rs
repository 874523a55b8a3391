use clap::{Parser, Subcommand};
use seam::cli;

#[derive(Parser)]
#[command(
    name = "seam",
    version,
    about = "Keeps Salesforce Cases and ServiceNow Incidents truthful in both systems",
    after_help = "Start here:\n  ./scripts/demo                      # the whole story on the emulators\n  seam serve --sim                    # the emulators and the engine, with a dashboard\n  seam init --tenant acme ...         # a real org and instance (see docs/real-orgs.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per run; boxing would only move the bytes")]
enum Command {
    /// Run the Case ⇄ Incident story end to end, no credentials needed.
    #[cfg(feature = "sim")]
    #[command(
        after_help = "Example:\n  seam demo --pack target/case-incident.seampack --workflow target/sev1-bridge.seampack"
    )]
    Demo(cli::demo::DemoArgs),
    /// Run the Salesforce, ServiceNow and Slack emulators on loopback until stopped.
    #[cfg(feature = "sim")]
    #[command(after_help = "Example:\n  seam sim --state .seam/sim --fault servicenow.rate_limit=0.2")]
    Sim(cli::sim::SimArgs),
    /// Run the sync engine: intake, processor and catch-up poller (with --sim, on the emulators).
    #[command(
        after_help = "Examples:\n  seam serve --config seam.json\n  seam serve --sim --state .seam      # the emulators too, one tenant `demo`"
    )]
    Serve(cli::serve::ServeArgs),
    /// The dead-letter queue: events that failed for good.
    #[command(after_help = "Examples:\n  seam dlq list --journal .seam/journal.db\n  seam dlq redrive 41 42")]
    Dlq(cli::dlq::DlqArgs),
    /// The audit trail: why a field changed, and what became of the event behind it.
    #[command(after_help = "Example:\n  seam audit why servicenow incident 9d385017c611228701d22104cc95c371 urgency")]
    Audit(cli::audit::AuditArgs),
    /// Compare every linked pair and repair drift from the side that owns each field.
    #[command(after_help = "Example:\n  seam reconcile --config seam.json --tenant acme --dry-run")]
    Reconcile(cli::reconcile::ReconcileArgs),
    /// Write a tenant's configuration for a real org and instance (secrets as references).
    #[command(
        after_help = "Example:\n  seam init --tenant acme --salesforce-login-url https://acme.my.salesforce.com \\\n    --salesforce-flow jwt-bearer --servicenow-url https://acme.service-now.com --pack case-incident.seampack"
    )]
    Init(cli::init::InitArgs),
    /// Check each tenant against its systems, and say what to fix.
    #[command(after_help = "Example:\n  seam doctor --config seam.json --tenant acme")]
    Doctor(cli::doctor::DoctorArgs),
    /// The journal's upkeep: prune what retention says is old.
    #[command(after_help = "Example:\n  seam journal prune --config seam.json --dry-run")]
    Journal(cli::journal::JournalArgs),
    /// Link a Case and an incident as partners (seam's own creates link; this is the operator's way).
    #[command(after_help = "Example:\n  seam link --tenant acme 5005g00000AbCdEAAZ 9d385017c611228701d22104cc95c371")]
    Link(cli::link::LinkArgs),
    /// Bring in the Cases changed since a date (a first start syncs no history).
    #[command(
        after_help = "Example:\n  seam backfill --tenant acme --since 2026-11-01 --where \"Status != 'Closed'\""
    )]
    Backfill(cli::backfill::BackfillArgs),
    /// Packs (WebAssembly components): make, sign and check them, run and test them, and
    /// install or roll them back on a running seam.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  seam pack build target/wasm32-wasip2/pack/case_incident.wasm --manifest plugins/case-incident/pack.json\n  seam pack test case-incident-1.0.0.seampack --fixtures plugins/case-incident/fixtures\n  seam pack install acme case-incident-1.1.0.seampack --config seam.json"
    )]
    Pack(cli::pack::PackCommand),
    /// The old name of `seam pack`'s run, bench, test, list, install and rollback.
    #[command(subcommand, hide = true)]
    Plugin(cli::pack::PackCommand),
    /// What a Salesforce admin deploys for seam (SFDX source).
    #[command(subcommand)]
    #[command(after_help = "Example:\n  seam salesforce metadata --config seam.json --tenant acme --output sfdx/")]
    Salesforce(cli::salesforce::SalesforceCommand),
    /// What a ServiceNow admin installs for seam (the update set).
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  seam servicenow update-set --config seam.json --tenant acme --output seam-update-set.xml"
    )]
    Servicenow(cli::servicenow::ServiceNowCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo narrates from the audit trail; the engine's own log would drown it.
    let default_filter = match cli.command {
        #[cfg(feature = "sim")]
        Command::Demo(_) => "warn",
        _ => "info,cranelift=warn,wasmtime=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEAM_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("starting the async runtime");
    let result = runtime.block_on(async {
        match cli.command {
            #[cfg(feature = "sim")]
            Command::Demo(args) => cli::demo::run(args).await,
            Command::Pack(cmd) | Command::Plugin(cmd) => cli::pack::run(cmd).await,
            #[cfg(feature = "sim")]
            Command::Sim(args) => cli::sim::run(args).await,
            Command::Dlq(args) => cli::dlq::run(args),
            Command::Journal(args) => cli::journal::run(args),
            Command::Audit(args) => cli::audit::run(args),
            Command::Reconcile(args) => cli::reconcile::run(args).await,
            Command::Backfill(args) => cli::backfill::run(args).await,
            Command::Doctor(args) => cli::doctor::run(args).await,
            Command::Init(args) => cli::init::run(args).await,
            Command::Link(args) => cli::link::run(args).await,
            Command::Serve(args) => cli::serve::run(args).await,
            Command::Servicenow(cmd) => cli::servicenow::run(cmd),
            Command::Salesforce(cmd) => cli::salesforce::run(cmd),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
