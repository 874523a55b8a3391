//! History on purpose: a first start syncs none, and a backfill brings the
//! Cases changed since a date, page by page, resumes where it stopped, and
//! stops while the org's daily API allowance still has the reserve left.

use seam::engine::backfill::{parse_since, Backfill, Pause};
use seam::engine::dispatcher::Dispatcher;
use seam::engine::poller::Poller;
use seam::sim::faults::Faults;
use seam_tests::{engine_on_sim, seampack, settle, CASE_INCIDENT};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_brings_history_page_by_page_resumes_and_keeps_the_api_reserve() {
    let (sim, engine, _config) = engine_on_sim("backfill", seampack(CASE_INCIDENT, "case-incident", None), &[]).await;
    let people = sim.systems(seam::connectors::RetryPolicy::default()).await.unwrap();
    let seam_systems = Arc::new(sim.seam_systems(seam::connectors::RetryPolicy::default()).await.unwrap());
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);

    // History: Cases made before seam was set up, which no notification announced.
    sim.salesforce.faults.set(Faults { drop_notifications: 1.0, ..Faults::default() });
    for n in 0..450 {
        let priority = if n % 3 == 0 { "High" } else { "Low" };
        people.salesforce.create("Case", &obj(json!({ "Subject": format!("history {n}"), "Priority": priority }))).await.unwrap();
    }
    sim.salesforce.faults.set(Faults::default());
    let poller = Poller { tenant: "demo".into(), journal: engine.journal.clone(), systems: seam_systems.clone() };
    assert_eq!(poller.poll_once().await.unwrap().read, 0, "a first start syncs no history");
    settle(&sim, &engine).await;
    assert_eq!(engine.journal.count("demo").unwrap(), 0);

    // Only the High ones, first: 150 of them.
    let high = Backfill::new("demo", engine.journal.clone(), seam_systems.clone(), since, Some("Priority = 'High'".into()));
    let plan = high.plan().await.unwrap();
    assert_eq!((plan.done, plan.left), (0, 150), "{plan:?}");
    assert!(plan.salesforce_calls >= 150 && plan.servicenow_calls >= 150, "{plan:?}");
    assert!(plan.api_usage.is_some_and(|(used, allowance)| used > 0 && allowance > used), "{plan:?}");
    while let Ok((read, new)) = high.next_page(0.1).await.unwrap() {
        assert_eq!(read, new);
    }
    settle(&sim, &engine).await;
    let linked = people.salesforce.count("SELECT COUNT() FROM Case WHERE ServiceNow_Incident__c != null").await.unwrap();
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
    sim.salesforce.api_limit.store(seam::sim::salesforce::DAILY_API_LIMIT, std::sync::atomic::Ordering::Relaxed);
    job.plan().await.unwrap();
    assert_eq!(job.next_page(0.1).await.unwrap().map(|(read, _)| read), Ok(50));
    assert_eq!(job.next_page(0.1).await.unwrap(), Err(Pause::Finished));
    Dispatcher::new(engine.processors["demo"].clone(), 64).drain().await.unwrap();
    settle(&sim, &engine).await;
    assert_eq!(people.salesforce.count("SELECT COUNT() FROM Case WHERE ServiceNow_Incident__c = null").await.unwrap(), 0, "every Case has its incident");
    let incidents = people.servicenow.query("incident", "correlation_idISNOTEMPTY", 1000).await.unwrap();
    assert_eq!(incidents.len(), 450, "one each: the High Cases, read again after seam linked them, were not carried twice");
    let resumed_total = all().plan().await.unwrap();
    assert_eq!(resumed_total.left, 0, "the span ends where the first run began, and seam's writes to the Cases moved them past it: {resumed_total:?}");
    assert_eq!(engine.journal.status_count("demo", "dead").unwrap(), 0);

    // A condition Salesforce refuses is named before anything starts.
    let bad = Backfill::new("demo", engine.journal.clone(), seam_systems, parse_since("2026-01-01").unwrap(), Some("Priority = ".into()));
    let err = bad.plan().await.unwrap_err().to_string();
    assert!(err.contains("MALFORMED_QUERY") && err.contains("--where"), "{err}");
    sim.shutdown();
}
