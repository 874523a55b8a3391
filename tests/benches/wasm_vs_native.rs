//! Mapping throughput: the default mapping (`plugins/case-incident`) run as a
//! WASM pack by the host's runtime, against the same Rust source linked
//! natively, on the same events, in one run.
//!
//! Both sides start from the host's `model::Change` and end with the host's
//! `model::Action`s, as the engine needs them: the native side converts to and
//! from the guest SDK's types (what compiling the mapping into the host would
//! cost), the WASM side copies across the component boundary. Every event's
//! actions must come out the same on both sides.
//!
//! The WASM side runs three ways: one change per call on a warm instance (how
//! the engine calls a pack today), batches of 32 changes per call
//! (`LinkedPack::run_batch`; seam:sync@0.2.0 packs take a batch in one call), and
//! a fresh instance per call.
//!
//! `cargo bench -p seam-tests --bench wasm_vs_native [-- EVENTS]`

use seam::model::{self, Change, ChangeKind, Field, RecordRef, System};

/// The pack's own source, compiled for this machine. (Its crate is a cdylib
/// for wasm32; a native cdylib cannot carry the component export names.)
#[path = "../../plugins/case-incident/src/lib.rs"]
#[allow(dead_code)]
mod case_incident;
use seam::runtime::{LinkedPack, NoRecords, RecordSource, Runtime, RuntimeConfig};
use seam_tests::{pack_bytes, CASE_INCIDENT};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Changes per call in the batched run.
const BATCH: usize = 32;
/// Turns each side takes.
const ROUNDS: usize = 5;

fn main() {
    let events: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(run(events));
}

async fn run(events: usize) {
    let changes: Vec<Change> = (0..events).map(sample_change).collect();
    println!("mapping bench: {} events (Case updates, new Cases, incident updates), one task each side", changes.len());

    let wasm = pack_bytes(CASE_INCIDENT);
    let warm_runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let warm = load(&warm_runtime, &wasm).await;
    let fresh_runtime = Runtime::new(RuntimeConfig { calls_per_instance: 1, ..RuntimeConfig::default() }).unwrap();
    let fresh = load(&fresh_runtime, &wasm).await;
    let records: Arc<dyn RecordSource> = Arc::new(NoRecords);
    println!("pack {} implements {}", warm.meta(), warm.api());

    // This machine's speed drifts between runs of a few hundred milliseconds
    // (a shared VM), so the sides take turns, round after round, and each
    // ratio is of the medians.
    let (mut native, mut single, mut batched) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        println!("round {round} of {ROUNDS}");
        let n = measure("native (same source, linked in)", &changes, |c| async move { native_map(c) }).await;
        let w = measure("wasm, warm instance, 1 per call", &changes, |c| {
            let (p, r) = (&warm, records.clone());
            async move { p.run(c, r).await.map_err(|e| e.to_string()) }
        })
        .await;
        let b =
            measure_batched(&format!("wasm, warm instance, {BATCH} per call"), &changes, &warm, records.clone()).await;
        for (label, m) in [("warm, 1 per call", &w), ("warm, batched", &b)] {
            assert_eq!(
                m.outputs, n.outputs,
                "the WASM pack ({label}) and the native build disagree on some event's actions"
            );
        }
        native.push(n.rate);
        single.push(w.rate);
        batched.push(b.rate);
    }
    let fresh = measure("wasm, fresh instance per call", &changes, |c| {
        let (p, r) = (&fresh, records.clone());
        async move { p.run(c, r).await.map_err(|e| e.to_string()) }
    })
    .await;
    let native_outputs: Vec<_> = changes.iter().map(native_map).collect();
    assert_eq!(
        fresh.outputs, native_outputs,
        "the WASM pack (fresh instances) and the native build disagree on some event's actions"
    );
    println!("all {} events gave the same actions natively and in WASM, every round", changes.len());

    let native = median(native);
    println!(
        "median events/s: native {native:.0}, wasm batched {:.0}, wasm 1 per call {:.0}, wasm fresh {:.0}",
        median(batched.clone()),
        median(single.clone()),
        fresh.rate
    );
    println!(
        "ratio wasm/native: batched {:.2}x, warm 1 per call {:.2}x, fresh {:.2}x   (target >= 0.5x)",
        median(batched) / native,
        median(single) / native,
        fresh.rate / native
    );
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

async fn load(runtime: &Runtime, wasm: &[u8]) -> LinkedPack {
    runtime.load("case-incident", "bench", wasm, Default::default()).await.expect("loading the case-incident pack")
}

struct Measured {
    rate: f64,
    outputs: Vec<Result<Vec<model::Action>, String>>,
}

async fn measure<'a, F, Fut>(label: &str, changes: &'a [Change], mut map: F) -> Measured
where
    F: FnMut(&'a Change) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<model::Action>, String>>,
{
    // Warm up caches, pool slots and code, then time every event.
    for c in changes.iter().take(200) {
        let _ = map(c).await;
    }
    let mut times = Vec::with_capacity(changes.len());
    let mut outputs = Vec::with_capacity(changes.len());
    let started = Instant::now();
    for c in changes {
        let t = Instant::now();
        outputs.push(map(c).await);
        times.push(t.elapsed());
    }
    report(label, changes.len(), started.elapsed(), times, outputs)
}

/// [`measure`] for batches: each change's time is its batch's time divided by the batch's size.
async fn measure_batched(
    label: &str,
    changes: &[Change],
    linked: &LinkedPack,
    records: Arc<dyn RecordSource>,
) -> Measured {
    async fn run(
        linked: &LinkedPack,
        chunk: &[Change],
        records: &Arc<dyn RecordSource>,
    ) -> Vec<Result<Vec<model::Action>, String>> {
        let answers =
            linked.run_batch(chunk, records.clone()).await.expect("a batch of well-formed changes must not trap");
        answers.into_iter().map(|a| a.map_err(|e| e.to_string())).collect()
    }
    for chunk in changes[..200.min(changes.len())].chunks(BATCH) {
        run(linked, chunk, &records).await;
    }
    let mut times = Vec::with_capacity(changes.len());
    let mut outputs = Vec::with_capacity(changes.len());
    let started = Instant::now();
    for chunk in changes.chunks(BATCH) {
        let t = Instant::now();
        outputs.extend(run(linked, chunk, &records).await);
        times.extend(std::iter::repeat_n(t.elapsed() / chunk.len() as u32, chunk.len()));
    }
    report(label, changes.len(), started.elapsed(), times, outputs)
}

fn report(
    label: &str,
    events: usize,
    wall: Duration,
    mut times: Vec<Duration>,
    outputs: Vec<Result<Vec<model::Action>, String>>,
) -> Measured {
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    let rate = events as f64 / wall.as_secs_f64();
    println!("  {label:<34} {rate:>10.0} events/s   p50 {:>7}   p99 {:>7}", us(p(0.5)), us(p(0.99)));
    Measured { rate, outputs }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Four kinds of event in turn: a 10-field Case update, a new Case, an incident
/// worked in ServiceNow, an incident resolved.
fn sample_change(n: usize) -> Change {
    let case = RecordRef { system: System::Salesforce, object: "Case".into(), id: format!("500{n:015}") };
    let incident = RecordRef { system: System::Servicenow, object: "incident".into(), id: format!("{n:032x}") };
    let priority = ["Critical", "High", "Medium", "Low"][n % 4];
    let case_fields = || seam::cli::pack::run::ten_case_fields(n as u64, priority);
    let incident_fields = |state: &str| {
        vec![
            Field::new("number", format!("INC{n:07}").as_str()),
            Field::new("state", state),
            Field::new("assigned_to", "5137153cc611227c000bbd1bd8cd2005"),
            Field::new("assigned_to.display", "Fred Luddy"),
            Field::new("close_notes", if state == "6" { "Gateway pool resized." } else { "" }),
            Field::new("short_description", format!("Checkout API returns 502 (#{n})").as_str()),
            Field::new("impact", "1"),
            Field::new("urgency", "2"),
        ]
    };
    let (kind, source, linked, changed, snapshot) = match n % 4 {
        0 => (ChangeKind::Updated, case, Some(incident), case_fields(), case_fields()),
        1 => (ChangeKind::Created, case, None, case_fields(), case_fields()),
        2 => {
            let all = incident_fields("2");
            (ChangeKind::Updated, incident, Some(case), vec![all[1].clone(), all[2].clone()], all)
        }
        _ => {
            let all = incident_fields("6");
            (ChangeKind::Updated, incident, Some(case), vec![all[1].clone(), all[4].clone()], all)
        }
    };
    Change {
        event_id: format!("bench-{n}"),
        kind,
        source,
        changed,
        snapshot,
        origin_user: "005000000000001AAA".into(),
        linked,
    }
}

/// The mapping compiled natively, with the conversions the host would need.
fn native_map(change: &Change) -> Result<Vec<model::Action>, String> {
    use seam_guest::Mapper;
    let actions = case_incident::CaseIncident::map(&to_guest::change(change))?;
    Ok(actions.into_iter().map(from_guest::action).collect())
}

mod to_guest {
    use seam::model;
    use seam_guest as g;

    pub fn system(s: model::System) -> g::System {
        match s {
            model::System::Salesforce => g::System::Salesforce,
            model::System::Servicenow => g::System::Servicenow,
            model::System::Slack => g::System::Slack,
        }
    }
    fn value(v: &model::Value) -> g::Value {
        match v {
            model::Value::Null => g::Value::Null,
            model::Value::Text(s) => g::Value::Text(s.clone()),
            model::Value::Number(n) => g::Value::Number(*n),
            model::Value::Bool(b) => g::Value::Boolean(*b),
        }
    }
    fn fields(f: &[model::Field]) -> Vec<g::Field> {
        f.iter().map(|f| g::Field { name: f.name.clone(), value: value(&f.value) }).collect()
    }
    fn record(r: &model::RecordRef) -> g::RecordRef {
        g::RecordRef { system: system(r.system), object: r.object.clone(), id: r.id.clone() }
    }
    pub fn change(c: &model::Change) -> g::Change {
        g::Change {
            event_id: c.event_id.clone(),
            kind: match c.kind {
                model::ChangeKind::Created => g::ChangeKind::Created,
                model::ChangeKind::Updated => g::ChangeKind::Updated,
                model::ChangeKind::Deleted => g::ChangeKind::Deleted,
            },
            source: record(&c.source),
            changed: fields(&c.changed),
            snapshot: fields(&c.snapshot),
            origin_user: c.origin_user.clone(),
            linked: c.linked.as_ref().map(record),
        }
    }
}

mod from_guest {
    use seam::model;
    use seam_guest as g;

    fn system(s: g::System) -> model::System {
        match s {
            g::System::Salesforce => model::System::Salesforce,
            g::System::Servicenow => model::System::Servicenow,
            g::System::Slack => model::System::Slack,
        }
    }
    fn value(v: g::Value) -> model::Value {
        match v {
            g::Value::Null => model::Value::Null,
            g::Value::Text(s) => model::Value::Text(s),
            g::Value::Number(n) => model::Value::Number(n),
            g::Value::Boolean(b) => model::Value::Bool(b),
        }
    }
    fn fields(f: Vec<g::Field>) -> Vec<model::Field> {
        f.into_iter().map(|f| model::Field { name: f.name, value: value(f.value) }).collect()
    }
    fn target(t: g::Target) -> model::Target {
        match t {
            g::Target::Linked => model::Target::Linked,
            g::Target::Source => model::Target::Source,
            g::Target::Explicit(r) => {
                model::Target::Explicit(model::RecordRef { system: system(r.system), object: r.object, id: r.id })
            }
        }
    }
    pub fn action(a: g::Action) -> model::Action {
        match a {
            g::Action::Update(u) => model::Action::Update { target: target(u.target), fields: fields(u.fields) },
            g::Action::AppendJournal(j) => model::Action::AppendJournal {
                target: target(j.target),
                kind: match j.kind {
                    g::JournalKind::WorkNote => model::JournalKind::WorkNote,
                    g::JournalKind::Comment => model::JournalKind::Comment,
                },
                text: j.text,
            },
            g::Action::Create(c) => model::Action::Create {
                system: system(c.system),
                object: c.object,
                fields: fields(c.fields),
                link_to_source: c.link_to_source,
            },
            g::Action::PostSlack(p) => {
                model::Action::PostSlack { channel: p.channel, create_channel: p.create_channel, text: p.text }
            }
        }
    }
}
