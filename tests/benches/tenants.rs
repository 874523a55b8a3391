//! Scale: many tenants, each with its own packs, loaded in one host.
//!
//! Every tenant gets its own mapping pack (its own name and manifest, the
//! default mapping's code) through the pack registry, as `seam serve` loads
//! them; every fourth tenant also runs the sev1-bridge workflow. Prints the
//! resident memory the tenants add, how long loading took, and what a
//! tenant's first call (a fresh instance) and later calls (warm) cost.
//!
//! `cargo bench -p seam-tests --bench tenants [-- TENANTS]`

use seam::packs::{Registry, TrustedKeys};
use seam::runtime::{NoRecords, RecordSource, Runtime, RuntimeConfig};
use seam::store::Journal;
use seam_tests::{seampack_with, CASE_INCIDENT, SEV1_BRIDGE};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let tenants: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(tenants));
}

/// Resident memory of this process, from /proc (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// A pack of `component` under its own name.
fn pack(component: &str, linked: &str, name: String) -> Vec<u8> {
    seampack_with(component, linked, |manifest| manifest.name = name)
}

async fn run(tenants: usize) {
    let state = std::env::temp_dir().join(format!("seam-bench-tenants-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let journal = Arc::new(Journal::open(&state.join("journal.db")).unwrap());
    println!("tenants bench: {tenants} tenants, each with its own mapping pack; every 4th also a workflow");

    let before = rss_bytes();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut registry = Registry::new(runtime, TrustedKeys::default(), state.join("packs"), journal).unwrap();
    let after_runtime = rss_bytes();

    let mut plugins = Vec::with_capacity(tenants);
    let started = Instant::now();
    let mut packs_loaded = 0;
    for t in 0..tenants {
        let tenant = format!("tenant-{t:04}");
        let mapping = pack(CASE_INCIDENT, "case-incident", format!("mapping-{tenant}"));
        let workflows = if t % 4 == 0 { vec![pack(SEV1_BRIDGE, "sev1-bridge", "sev1-bridge".into())] } else { vec![] };
        packs_loaded += 1 + workflows.len();
        let started = registry.add_tenant(&tenant, &mapping, &workflows, "mapping", None).await.unwrap();
        plugins.push(started.mapping.load_full().linked.clone());
        if t > 0 && t % 250 == 0 {
            println!("  {t} tenants loaded, {} resident", mib(rss_bytes()));
        }
    }
    let load = started.elapsed();
    let after_load = rss_bytes();

    let records: Arc<dyn RecordSource> = Arc::new(NoRecords);
    let change = seam::cli::pack::run::ten_field_case_change(1);
    let (mut instantiate, mut first, mut second) =
        (Vec::with_capacity(tenants), Vec::with_capacity(tenants), Vec::with_capacity(tenants));
    let started = Instant::now();
    for linked in &plugins {
        let (result, timing) = linked.run_timed(&change, records.clone()).await;
        result.unwrap();
        instantiate.push(timing.instantiate);
        first.push(timing.instantiate + timing.call);
        let (result, timing) = linked.run_timed(&change, records.clone()).await;
        result.unwrap();
        second.push(timing.instantiate + timing.call);
    }
    let calls = started.elapsed();
    let after_calls = rss_bytes();

    let p = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * q) as usize]
    };
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    println!(
        "resident: {} at start, {} with the runtime, {} with {tenants} tenants loaded, {} after every tenant ran",
        mib(before),
        mib(after_runtime),
        mib(after_load),
        mib(after_calls)
    );
    println!(
        "per tenant: {:.1} KiB resident after loading, {:.1} KiB after running (compiled code is shared by component hash)",
        (after_load - after_runtime) as f64 / 1024.0 / tenants as f64,
        after_calls.saturating_sub(after_runtime) as f64 / 1024.0 / tenants as f64
    );
    println!("loading {packs_loaded} packs (verify, compile or cache hit, link, journal history): {:.2} s, {:.2} ms per tenant", load.as_secs_f64(), load.as_secs_f64() * 1e3 / tenants as f64);
    println!(
        "first call per tenant: instantiate p50 {}  p99 {}; whole call p50 {}  p99 {}",
        us(p(&mut instantiate, 0.5)),
        us(p(&mut instantiate, 0.99)),
        us(p(&mut first, 0.5)),
        us(p(&mut first, 0.99))
    );
    println!(
        "second call: p50 {}  p99 {} (warm for the first {} tenants, which hold the warm slots; the rest instantiate again)",
        us(p(&mut second, 0.5)),
        us(p(&mut second, 0.99)),
        RuntimeConfig::default().warm_instances
    );
    println!("{} calls in {:.2} s", 2 * tenants, calls.as_secs_f64());
    let _ = std::fs::remove_dir_all(&state);
}
