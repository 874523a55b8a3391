//! `seam pack run|bench|test` run and measure packs without a running host;
//! `seam pack list|install|rollback` manage the packs of a running one.

use crate::model::{Change, ChangeKind, Field, RecordRef, System};
use crate::runtime::{CacheOutcome, Grants, NoRecords, RecordSource, Runtime, RuntimeConfig, StaticRecords};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum RunCommand {
    /// Map one change (JSON) with a pack and print the actions (JSON).
    #[command(
        after_help = "Example:\n  jq .change plugins/case-incident/fixtures/01-new-case-opens-an-incident.json > change.json\n  seam pack run case-incident-1.0.0.seampack --change change.json"
    )]
    Run(RunArgs),
    /// Measure a pack: compile, cached load, instantiate, and per-call time for a 10-field event.
    #[command(after_help = "Example:\n  seam pack bench case-incident-1.0.0.seampack --calls 20000")]
    Bench(BenchArgs),
    /// Run a pack's JSON fixtures (change in → expected actions) without a running host.
    #[command(
        after_help = "Example:\n  seam pack test case-incident-1.0.0.seampack --fixtures plugins/case-incident/fixtures"
    )]
    Test(TestArgs),
    /// The packs each tenant of a running `seam serve` runs, with their history.
    #[command(after_help = "Example:\n  seam pack list --config .seam/seam.json")]
    List(AdminArgs),
    /// Hot-load a pack for a tenant of a running `seam serve`.
    #[command(after_help = "Example:\n  seam pack install acme case-incident-1.1.0.seampack --config seam.json")]
    Install {
        tenant: String,
        pack: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Go back to the version of a pack a tenant ran before the current one
    /// (the mapping pack, or with --pack a workflow; a workflow with no earlier version is removed).
    #[command(
        after_help = "Examples:\n  seam pack rollback acme --config seam.json                      # the mapping pack\n  seam pack rollback acme --pack sev1-bridge --config seam.json   # a workflow"
    )]
    Rollback {
        tenant: String,
        /// The workflow to roll back, by name; default: the mapping pack.
        #[arg(long)]
        pack: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the running host is: its configuration names the admin listener and the operator token.
#[derive(Args)]
pub struct AdminArgs {
    /// The running host's configuration (`seam serve --sim` writes STATE/seam.json).
    #[arg(long, default_value = ".seam/seam.json")]
    pub config: PathBuf,
}

impl AdminArgs {
    async fn call(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<serde_json::Value> {
        let config: crate::config::Config = crate::files::read_json(&self.config, "configuration")?;
        let token = config.admin.operator_token()?.with_context(|| {
            format!("{} has no admin.operator_token for the command line to use", self.config.display())
        })?;
        let url = format!("{}/admin{path}", config.admin.url());
        // The admin listener's own certificate is trusted besides the system's (it is often self-made).
        let response = crate::connectors::tls::http_client(config.admin.tls_cert.as_deref())?
            .build()?
            .request(method, &url)
            .bearer_auth(crate::secrets::ExposeSecret::expose_secret(&token))
            .body(body)
            .send()
            .await
            .with_context(|| format!("calling {url}: is `seam serve` running with {}?", self.config.display()))?;
        let status = response.status();
        let body: serde_json::Value =
            response.json().await.with_context(|| format!("reading the answer from {url}"))?;
        if !status.is_success() {
            anyhow::bail!("{}", body["error"].as_str().unwrap_or(&body.to_string()));
        }
        Ok(body)
    }
}

#[derive(Args)]
pub struct TestArgs {
    /// The pack (.seampack) or a plain component (.wasm).
    pub pack: PathBuf,
    /// A directory of fixtures (*.json): `{"change": ..., "expect": [...]}` or `{"change": ..., "expect_error": "..."}`.
    #[arg(long)]
    pub fixtures: PathBuf,
}

#[derive(Args)]
pub struct RunArgs {
    /// The pack (.seampack) or a plain component (.wasm).
    pub pack: PathBuf,
    /// A JSON file holding the change to map (a `seam::model::Change`, as a fixture's `change` is).
    #[arg(long)]
    pub change: PathBuf,
    /// A JSON file of the records lookups may read: `{"records": [{"system", "object", "id", "fields": {...}}]}`.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// A JSON file of what the pack may look up: `[{"system", "object", "fields": [...]}]`; default: the manifest's lookups.
    #[arg(long)]
    pub grants: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchArgs {
    pub pack: PathBuf,
    /// Calls to time.
    #[arg(long, default_value_t = 5000)]
    pub calls: u32,
}

pub async fn run(cmd: RunCommand) -> Result<()> {
    match cmd {
        RunCommand::Run(args) => run_one(args).await,
        RunCommand::Bench(args) => bench(args).await,
        RunCommand::Test(args) => test(args).await,
        RunCommand::List(admin) => {
            let tenants: Vec<crate::packs::registry::TenantPacks> =
                serde_json::from_value(admin.call(reqwest::Method::GET, "/packs", vec![]).await?)?;
            for t in tenants {
                println!("{}: {} (sha256 {})", t.tenant, t.active, &t.hash[..t.hash.len().min(16)]);
                for w in &t.workflows {
                    println!("  workflow {} (sha256 {})", w.id, &w.hash[..w.hash.len().min(16)]);
                }
                println!("  history:");
                for r in t.history {
                    let when = chrono::DateTime::from_timestamp_millis(r.at_ms)
                        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                    let signer = r.signer.map(|k| format!(", signed by {k}")).unwrap_or_default();
                    println!(
                        "    {when}  {:<9} {}@{}  from {}{signer}{}",
                        r.slot,
                        r.name,
                        r.version,
                        r.source,
                        if r.rolled_back { "  (rolled back)" } else { "" }
                    );
                }
            }
            Ok(())
        }
        RunCommand::Install { tenant, pack, admin } => {
            let bytes = std::fs::read(&pack).with_context(|| format!("reading {}", pack.display()))?;
            let answer = admin.call(reqwest::Method::POST, &format!("/tenants/{tenant}/packs"), bytes).await?;
            println!("{tenant} now runs {}", answer["active"].as_str().unwrap_or_default());
            Ok(())
        }
        RunCommand::Rollback { tenant, pack, admin } => {
            let query = pack.map(|p| format!("?pack={p}")).unwrap_or_default();
            let answer =
                admin.call(reqwest::Method::POST, &format!("/tenants/{tenant}/packs/rollback{query}"), vec![]).await?;
            println!("{tenant} now runs {}", answer["active"].as_str().unwrap_or_default());
            Ok(())
        }
    }
}

async fn test(args: TestArgs) -> Result<()> {
    use crate::packs::fixtures;
    let wasm = crate::packs::read_pack(&args.pack)?;
    let fixtures = fixtures::read_dir(&args.fixtures)?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let pack = crate::packs::load(&runtime, &wasm, &crate::packs::pack_name(&args.pack), &Default::default()).await?;
    println!("{}: {} fixture(s) from {}", pack.manifest.id(), fixtures.len(), args.fixtures.display());
    let mut failed = 0;
    for (file, fixture) in &fixtures {
        let outcome = fixtures::run(&pack.linked, file, fixture).await;
        match &outcome.failure {
            None => println!("  ok    {}", outcome.name),
            Some(why) => {
                failed += 1;
                println!(
                    "  FAIL  {} ({})\n{}",
                    outcome.name,
                    file.display(),
                    why.lines().map(|l| format!("        {l}")).collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} fixture(s) failed", fixtures.len());
    }
    println!("all {} passed", fixtures.len());
    Ok(())
}

async fn run_one(args: RunArgs) -> Result<()> {
    let wasm = crate::packs::read_pack(&args.pack)?;
    let change: Change = crate::files::read_json(&args.change, "change")?;
    let grants: Option<Grants> = args.grants.as_deref().map(|p| crate::files::read_json(p, "grants")).transpose()?;
    let records: Arc<dyn RecordSource> = match &args.records {
        Some(p) => Arc::new(crate::files::read_json::<StaticRecords>(p, "records")?),
        None => Arc::new(NoRecords),
    };
    let runtime = Runtime::new(RuntimeConfig::default())?;
    // A pack brings its own grants (its manifest's lookups); --grants replaces them.
    let linked = match grants {
        Some(grants) => runtime.load(&crate::packs::pack_name(&args.pack), "local", &wasm, grants).await?,
        None => {
            crate::packs::load(&runtime, &wasm, &crate::packs::pack_name(&args.pack), &Default::default()).await?.linked
        }
    };
    let actions = linked.run(&change, records).await?;
    println!("{}", serde_json::to_string_pretty(&actions)?);
    Ok(())
}

/// Ten fields of a Case, as benchmarks send them.
pub fn ten_case_fields(n: u64, priority: &str) -> Vec<Field> {
    vec![
        Field::new("Subject", format!("Checkout API returns 502 (#{n})").as_str()),
        Field::new("Description", "Since 09:12 UTC every third checkout call fails with 502 from the payment gateway."),
        Field::new("Priority", priority),
        Field::new("Status", "New"),
        Field::new("Origin", "Web"),
        Field::new("Type", "Problem"),
        Field::new("Reason", "Performance"),
        Field::new("SuppliedEmail", "ops@acme.example"),
        Field::new("SuppliedName", "Acme Operations"),
        Field::new("AccountId", "001000000000001AAA"),
    ]
}

/// A Case update touching ten fields: the per-call figure the foundation issue asks for.
pub fn ten_field_case_change(n: u64) -> Change {
    let fields = ten_case_fields(n, "High");
    Change {
        event_id: format!("bench-{n}"),
        kind: ChangeKind::Updated,
        source: RecordRef { system: System::Salesforce, object: "Case".into(), id: "500000000000001AAA".into() },
        changed: fields.clone(),
        snapshot: fields,
        origin_user: "005000000000001AAA".into(),
        linked: Some(RecordRef {
            system: System::Servicenow,
            object: "incident".into(),
            id: "0123456789abcdef0123456789abcdef".into(),
        }),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

async fn bench(args: BenchArgs) -> Result<()> {
    let wasm = crate::packs::read_pack(&args.pack)?;
    let name = crate::packs::pack_name(&args.pack);
    let cache_dir = tempdir()?;
    println!("pack {} ({} bytes)", args.pack.display(), wasm.len());

    // Cold compile, then a fresh runtime loading the same bytes from the disk cache.
    let config = RuntimeConfig { cache_dir: Some(cache_dir.clone()), ..RuntimeConfig::default() };
    let cold = Runtime::new(config.clone())?;
    let started = Instant::now();
    let linked = cold.load(&name, "bench", &wasm, Grants::default()).await?;
    let compile = match linked.load_outcome() {
        CacheOutcome::Compiled(d) => d,
        other => anyhow::bail!("expected a cold compile, got {other:?}"),
    };
    println!("compile (Cranelift, cold)      {:>12}   load total {}", ms(compile), ms(started.elapsed()));
    let warm = Runtime::new(config.clone())?;
    let started = Instant::now();
    let linked = warm.load(&name, "bench", &wasm, Grants::default()).await?;
    println!("load from disk cache           {:>12}   ({:?})", ms(started.elapsed()), linked.load_outcome());
    // A runtime that gives every call a fresh instance, to time instantiation.
    let fresh = Runtime::new(RuntimeConfig { calls_per_instance: 1, ..config })?;
    let fresh = fresh.load(&name, "bench", &wasm, Grants::default()).await?;
    std::fs::remove_dir_all(&cache_dir).ok();

    // 0.2.0 packs export the batch form; the bench sends one change per call, as the engine does.
    let export = linked.api().export(linked.world());
    let (_, fresh_timings) = timed_calls(&fresh, args.calls.min(1000)).await?;
    let (wall, warm_timings) = timed_calls(&linked, args.calls).await?;
    let mut instantiate: Vec<Duration> = fresh_timings.iter().map(|t| t.instantiate).collect();
    let mut fresh_total: Vec<Duration> = fresh_timings.iter().map(|t| t.instantiate + t.call).collect();
    let mut call: Vec<Duration> = warm_timings.iter().map(|t| t.call).collect();
    let (one, both) = (format!("{export}, warm instance"), format!("fresh instance + {export}"));
    for (label, samples) in [
        ("instantiate (fresh instance)", &mut instantiate),
        (one.as_str(), &mut call),
        (both.as_str(), &mut fresh_total),
    ] {
        samples.sort();
        let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!("{label:<30} p50 {:>10}   p99 {:>10}", us(p(0.5)), us(p(0.99)));
    }
    println!(
        "{} calls in {} on one task, warm instance: {:.0} events/s",
        args.calls,
        ms(wall),
        args.calls as f64 / wall.as_secs_f64()
    );
    Ok(())
}

/// `calls` calls with a 10-field Case change each, after a warm-up; their timings and the wall time.
async fn timed_calls(
    linked: &crate::runtime::LinkedPack,
    calls: u32,
) -> Result<(Duration, Vec<crate::runtime::CallTiming>)> {
    let records: Arc<dyn RecordSource> = Arc::new(NoRecords);
    // Warm up: page in the pool slots and code.
    for n in 0..50 {
        linked.run(&ten_field_case_change(n), records.clone()).await?;
    }
    let mut timings = Vec::with_capacity(calls as usize);
    let started = Instant::now();
    for n in 0..calls as u64 {
        let (result, timing) = linked.run_timed(&ten_field_case_change(n), records.clone()).await;
        let actions = result.context("the bench call failed")?;
        // A mapping must carry the change across; for most workflows it is not a trigger, and
        // that no-op path is what they run on nearly every change.
        anyhow::ensure!(
            !actions.is_empty() || linked.world() == crate::runtime::World::Workflow,
            "the mapping pack returned no actions for a 10-field Case change"
        );
        timings.push(timing);
    }
    Ok((started.elapsed(), timings))
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("seam-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
