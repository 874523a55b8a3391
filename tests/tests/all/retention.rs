//! The journal forgets what retention says is old, and nothing still open:
//! settled events after their days, audit rows after theirs, a dead letter
//! never while it waits. `seam journal prune --dry-run` says what would go.

use seam::cli::simulated::Simulated;
use seam::config::retention::Retention;
use seam::connectors::RetryPolicy;
use seam::model::{RecordRef, System};
use seam::store::retention::Pruned;
use seam::store::EventStatus;
use seam_tests::{engine_on_sim, seampack, settle, CASE_INCIDENT};
use serde_json::json;

const DAY_MS: i64 = 86_400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_events_and_old_audit_rows_go_and_open_work_stays() {
    let (sim, engine, mut config) =
        engine_on_sim("retention", seampack(CASE_INCIDENT, "case-incident", None), &[]).await;
    let people = sim.systems(RetryPolicy::default()).await.unwrap();
    let sf = &people.salesforce;
    let obj = |v: serde_json::Value| v.as_object().unwrap().clone();
    let mut cases = Vec::new();
    for n in 0..3 {
        cases.push(
            sf.create("Case", &obj(json!({ "Subject": format!("Retained {n}"), "Priority": "High" }))).await.unwrap(),
        );
    }
    settle(&sim, &engine).await;
    // One Case whose incident is gone: its next change is a dead letter, open work.
    let doomed = sf.get("Case", &cases[2]).await.unwrap()["ServiceNow_Incident__c"].as_str().unwrap().to_string();
    let emulator = &sim.servicenow;
    emulator.store.delete(emulator.name, "incident", &doomed).unwrap().expect("the incident existed");
    sf.update("Case", &cases[2], &obj(json!({ "Subject": "Retained 2, edited" }))).await.unwrap();
    let journal = engine.journal.clone();
    let started = std::time::Instant::now();
    while journal.status_count("demo", EventStatus::Dead).unwrap() == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the dead letter");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    settle(&sim, &engine).await;
    let total = journal.count("demo").unwrap();
    let settled = journal.status_count("demo", EventStatus::Done).unwrap()
        + journal.status_count("demo", EventStatus::Echo).unwrap();
    assert!(settled > 0 && total > settled);
    let case0 = RecordRef { system: System::Salesforce, object: "Case".into(), id: cases[0].clone() };
    let incident0 = sf.get("Case", &cases[0]).await.unwrap()["ServiceNow_Incident__c"].as_str().unwrap().to_string();
    let audit_of = |id: &str| {
        journal
            .record_trail(
                Some("demo"),
                &RecordRef { system: System::Servicenow, object: "incident".into(), id: id.into() },
                100,
            )
            .unwrap()
            .len()
    };
    assert!(audit_of(&incident0) > 0);

    let retention = Retention::default();
    let now = chrono::Utc::now().timestamp_millis();
    // Today nothing is old.
    assert_eq!(journal.prune(&retention, now, false).unwrap(), Pruned::default());

    // Eight days on: a dry run counts the settled events and deletes nothing.
    let later = now + 8 * DAY_MS;
    let would = journal.prune(&retention, later, true).unwrap();
    assert_eq!((would.events, would.audit_rows), (settled, 0), "{would:?}");
    assert_eq!(journal.count("demo").unwrap(), total, "a dry run deletes nothing");
    let done = journal.prune(&retention, later, false).unwrap();
    assert_eq!(done, would, "the prune removes what the dry run said");
    assert_eq!(journal.count("demo").unwrap(), total - settled, "the settled events are gone");
    assert_eq!(journal.status_count("demo", EventStatus::Dead).unwrap(), 1, "the dead letter stays while it waits");
    let dead = journal.dead_letters(Some("demo")).unwrap();
    assert!(journal.event_story("demo", &dead[0].event_key).unwrap().is_some(), "with its story");
    assert!(audit_of(&incident0) > 0, "audit rows are kept longer than events");
    assert_eq!(
        journal.link_of("demo", &case0).unwrap().as_deref(),
        Some(incident0.as_str()),
        "links are state, not history"
    );

    // Ninety-one days on: the audit rows go too; the dead letter still stays.
    let much_later = now + 91 * DAY_MS;
    let aged = journal.prune(&retention, much_later, false).unwrap();
    assert!(aged.audit_rows > 0 && aged.events == 0, "{aged:?}");
    assert_eq!(audit_of(&incident0), 0);
    assert_eq!(journal.status_count("demo", EventStatus::Dead).unwrap(), 1);

    // The configuration's retention is checked with the rest of it.
    config.retention = Retention { settled_event_days: 3.0, ..Retention::default() };
    config.check().unwrap();
    assert!(
        Retention { settled_event_days: 1.0, ..Retention::default() }.check().is_err(),
        "shorter than the systems' redelivery"
    );
    sim.shutdown();
}
