//! History on purpose: a first start syncs none, and a backfill brings the
//! Cases changed since a date, page by page, resumes where it stopped, and
//! stops while the org's daily API allowance still has the reserve left.

use seam::cli::simulated::Simulated;
use seam::engine::backfill::{parse_since, Backfill, Pause};
use seam::engine::poller::SALESFORCE_CASES;
use seam::store::EventStatus;
use seam_tests::{seampack, settle, CASE_INCIDENT};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_brings_history_page_by_page_resumes_and_keeps_the_api_reserve() {
    // The emulators first, with history: Cases made before seam is set up (nothing to
    // send their notifications to yet).
    let state = seam_tests::scratch_dir("backfill");
    let pack = state.join("mapping.seampack");
    std::fs::write(&pack, seampack(CASE_INCIDENT, "case-incident", None)).unwrap();
    let (sim, mut config) =
        seam::cli::simulated::sim_config(&state, &pack, &[], None, seam::config::intake::Source::OutboundMessages)
            .await
            .unwrap();
    config.reconcile_minutes = 0;
    let people = sim.systems(seam::connectors::RetryPolicy::default()).await.unwrap();
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    sim.salesforce.faults.set(seam_sim::faults::Faults { drop_notifications: 1.0, ..Default::default() });
    for n in 0..450 {
        let priority = if n % 3 == 0 { "High" } else { "Low" };
        people
            .salesforce
            .create("Case", &obj(json!({ "Subject": format!("history {n}"), "Priority": priority })))
            .await
            .unwrap();
    }
    sim.salesforce.faults.set(Default::default());

    // seam's first start: its catch-up poll begins after the history, and syncs none of it.
    let engine = seam::service::start_engine(&config, std::future::pending()).await.unwrap();
    let seam_systems = Arc::new(sim.seam_systems(seam::connectors::RetryPolicy::default()).await.unwrap());
    let started = std::time::Instant::now();
    while engine.journal.watermark("demo", SALESFORCE_CASES).unwrap().is_none() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the first poll set no watermark");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    settle(&sim, &engine).await;
    assert_eq!(engine.journal.count("demo").unwrap(), 0, "a first start syncs no history");

    // Only the High ones, first: 150 of them.
    let high =
        Backfill::new("demo", engine.journal.clone(), seam_systems.clone(), since, Some("Priority = 'High'".into()));
    let plan = high.plan().await.unwrap();
    assert_eq!((plan.done, plan.left), (0, 150), "{plan:?}");
    assert!(plan.salesforce_calls >= 150 && plan.servicenow_calls >= 150, "{plan:?}");
    assert!(plan.api_usage.is_some_and(|(used, allowance)| used > 0 && allowance > used), "{plan:?}");
    while let Ok((read, new)) = high.next_page(0.1).await.unwrap() {
        assert_eq!(read, new);
    }
    settle(&sim, &engine).await;
    let linked =
        people.salesforce.count("SELECT COUNT() FROM Case WHERE ServiceNow_Incident__c != null").await.unwrap();
    assert_eq!(linked, 150, "each High Case has its incident, and no other");

    // Everything since then: one page, then the run stops (Ctrl-C); a new run goes on from there.
    let all = || Backfill::new("demo", engine.journal.clone(), seam_systems.clone(), since, None);
    assert_eq!(all().next_page(0.1).await.unwrap().map(|(read, _)| read), Ok(200));
    let resumed = all().plan().await.unwrap();
    assert_eq!((resumed.done, resumed.left), (200, 250), "{resumed:?}");
    assert_eq!(all().next_page(0.1).await.unwrap().map(|(read, _)| read), Ok(200));

    // The org's allowance is nearly spent: the backfill stops with the reserve left.
    let used = sim.salesforce.requests();
    sim.salesforce.api_limit.store(used + 20, std::sync::atomic::Ordering::Relaxed);
    let job = all();
    job.plan().await.unwrap(); // an answer that reports the usage
    assert!(matches!(job.next_page(0.1).await.unwrap(), Err(Pause::Budget(_, _))), "stopped at the reserve");
    assert_eq!(job.plan().await.unwrap().done, 400, "nothing journaled past the stop");
    sim.salesforce.api_limit.store(seam_sim::salesforce::DAILY_API_LIMIT, std::sync::atomic::Ordering::Relaxed);
    job.plan().await.unwrap();
    assert_eq!(job.next_page(0.1).await.unwrap().map(|(read, _)| read), Ok(50));
    assert_eq!(job.next_page(0.1).await.unwrap(), Err(Pause::Finished));
    // The engine's own dispatcher carries the pages (a second one beside it would claim
    // the same events: claims are held in the dispatcher, not the journal).
    settle(&sim, &engine).await;
    assert_eq!(
        people.salesforce.count("SELECT COUNT() FROM Case WHERE ServiceNow_Incident__c = null").await.unwrap(),
        0,
        "every Case has its incident"
    );
    let incidents = people
        .servicenow
        .query("incident", &seam::connectors::servicenow::Query::literal("correlation_idISNOTEMPTY"), 1000)
        .await
        .unwrap();
    assert_eq!(
        incidents.len(),
        450,
        "one each: the High Cases, read again after seam linked them, were not carried twice"
    );
    let resumed_total = all().plan().await.unwrap();
    assert_eq!(
        resumed_total.left, 0,
        "the span ends where the first run began, and seam's writes to the Cases moved them past it: {resumed_total:?}"
    );
    assert_eq!(engine.journal.status_count("demo", EventStatus::Dead).unwrap(), 0);

    // A condition Salesforce refuses is named before anything starts.
    let bad = Backfill::new(
        "demo",
        engine.journal.clone(),
        seam_systems,
        parse_since("2026-01-01").unwrap(),
        Some("Priority = ".into()),
    );
    let err = bad.plan().await.unwrap_err().to_string();
    assert!(err.contains("MALFORMED_QUERY") && err.contains("--where"), "{err}");
    sim.shutdown();
}
