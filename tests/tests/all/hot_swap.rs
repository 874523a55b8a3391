//! Swapping a tenant's pack while events flow: through the admin API and the
//! packs directory (`packs_dir`), with a rollback and a refused pack along the way.
//! Nothing is lost, nothing is processed twice.

use seam::cli::simulated::sim_config;
use seam::cli::simulated::Simulated;
use seam::connectors::RetryPolicy;
use seam::service::start_engine;
use seam::store::EventStatus;
use seam_tests::{seampack, CASE_INCIDENT};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn pack(version: &str) -> Vec<u8> {
    seampack(CASE_INCIDENT, "case-incident", Some(version))
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_swap_under_load_with_nothing_lost_or_doubled() {
    let state = seam_tests::scratch_dir("hot-swap");
    let first = state.join("case-incident-1.0.0.seampack");
    std::fs::write(&first, pack("1.0.0")).unwrap();
    let (sim, config) =
        sim_config(&state, &first, &[], None, seam::config::intake::Source::OutboundMessages).await.unwrap();
    let engine = start_engine(&config, std::future::pending()).await.unwrap();
    let people = sim.systems(RetryPolicy::default()).await.unwrap();
    let admin = format!("{}/admin", engine.admin_url);
    let token =
        seam::secrets::ExposeSecret::expose_secret(&config.admin.operator_token().unwrap().unwrap()).to_string();
    let http = reqwest::Client::new();
    let post = |path: String, body: Vec<u8>| http.post(format!("{admin}{path}")).bearer_auth(&token).body(body).send();

    // Unauthenticated calls are refused.
    assert_eq!(http.get(format!("{admin}/packs")).send().await.unwrap().status(), 401);

    const ROUNDS: usize = 6;
    const PER_ROUND: usize = 20;
    let mut cases = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..PER_ROUND {
            let id = people
                .salesforce
                .create("Case", &obj(json!({ "Subject": format!("swap {round}.{i}"), "Priority": "Medium" })))
                .await
                .unwrap();
            cases.push(id);
        }
        // A change of pack in the middle of the stream, a different way each round.
        match round {
            0 | 2 => {
                let r = post("/tenants/demo/packs".into(), pack(&format!("1.0.{}", round + 1))).await.unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            }
            1 => {
                // A pack written into packs_dir (atomically: temporary name, then rename).
                let dir = config.packs_dir.as_ref().unwrap().join("demo");
                std::fs::write(dir.join("next.tmp"), pack("1.1.0")).unwrap();
                std::fs::rename(dir.join("next.tmp"), dir.join("case-incident-1.1.0.seampack")).unwrap();
                let waiting = Instant::now();
                while engine.registry.list().unwrap()[0].active != "case-incident@1.1.0" {
                    assert!(waiting.elapsed() < Duration::from_secs(10), "the dropped pack was not loaded");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            3 => {
                let r = post("/tenants/demo/packs/rollback".into(), vec![]).await.unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            }
            4 => {
                // Garbage is refused whole, and the tenant keeps its pack.
                let r = post("/tenants/demo/packs".into(), b"not a pack".to_vec()).await.unwrap();
                assert_eq!(r.status(), 422);
                assert!(r.text().await.unwrap().contains("keeps its current pack"));
            }
            _ => {}
        }
    }

    // Wait for every Case to be linked and the journal to be empty.
    let started = Instant::now();
    loop {
        let pending = engine.journal.status_count("demo", EventStatus::Pending).unwrap();
        let undelivered = sim.salesforce.notifier.as_ref().unwrap().stats().pending
            + sim.servicenow.notifier.as_ref().unwrap().stats().pending;
        if pending == 0 && undelivered == 0 {
            let linked = people
                .salesforce
                .query("SELECT Id FROM Case WHERE ServiceNow_Incident__c != null")
                .await
                .unwrap()
                .len();
            if linked == cases.len() {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not settled: {pending} pending, {undelivered} undelivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Exactly one incident per Case.
    let incidents = people
        .servicenow
        .query("incident", &seam::connectors::servicenow::Query::literal("correlation_idSTARTSWITH500"), 1000)
        .await
        .unwrap();
    assert_eq!(incidents.len(), cases.len());
    let correlated: HashSet<&str> = incidents.iter().filter_map(|i| i["correlation_id"].as_str()).collect();
    assert_eq!(correlated.len(), cases.len(), "one incident each, none doubled");
    assert_eq!(engine.journal.status_count("demo", EventStatus::Dead).unwrap(), 0);

    // The events were served by more than one version, and the history tells the story.
    let audit = engine.journal.audit_after("demo", 0).unwrap();
    let versions: HashSet<&str> = audit.iter().map(|(_, _, _, a)| a.pack.as_str()).collect();
    assert!(versions.len() >= 2, "{versions:?}");
    let list: Value =
        http.get(format!("{admin}/packs")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let history: Vec<(String, String, bool)> = list[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_string(),
                r["source"].as_str().unwrap().to_string(),
                r["rolled_back"].as_bool().unwrap(),
            )
        })
        .collect();
    let expect = |v: &str, s: &str, rb: bool| (v.to_string(), s.to_string(), rb);
    assert_eq!(
        history,
        vec![
            expect("1.0.0", "config", false),
            expect("1.0.1", "admin", false),
            expect("1.1.0", "directory", false),
            expect("1.0.3", "admin", true)
        ],
        "{list}"
    );
    assert_eq!(list[0]["active"], "case-incident@1.1.0", "rolled back from 1.0.3 to 1.1.0");
    eprintln!("{} Cases across {} pack versions: {versions:?}", cases.len(), versions.len());
    sim.shutdown();
}

/// `tenants.NAME.pack_limits` reaches the tenant's packs, the runtime's pool grows to hold
/// its memory, and a hot-loaded version runs under the same limits.
#[tokio::test]
async fn a_tenants_pack_limits_hold_across_a_hot_swap() {
    let limits = seam::config::PackLimits { time_budget_ms: 750, memory_mib: 96 };
    let first = pack("1.0.0");
    let (sim, engine, _) = seam_tests::engine_on_sim_with("pack-limits", first, &[], |config| {
        config.tenants.get_mut("demo").unwrap().pack_limits = Some(limits);
    })
    .await;
    let active = || engine.processors["demo"].active.load_full();
    assert_eq!(active().linked.limits(), limits.runtime());
    assert_eq!(limits.runtime().memory_limit, 96 << 20);
    let newer = pack("1.1.0");
    engine.registry.install("demo", &newer, "test").await.unwrap();
    assert_eq!(active().manifest.version, "1.1.0");
    assert_eq!(active().linked.limits(), limits.runtime());
    sim.shutdown();
}
