//! Deletes on either side reach the partner by the mapping pack's delete policy:
//! a deleted incident closes its Case (case-incident: `"servicenow": "close"`), a
//! deleted Case leaves its incident with a note (`"salesforce": "unlink"`), or the
//! partner goes too (`delete`); the link ends either way. A delete notification that
//! never arrived is caught up from ServiceNow's `sys_audit_delete`.

use seam::cli::simulated::Simulated;
use seam::config::intake::Source;
use seam::connectors::servicenow::Query;
use seam::connectors::RetryPolicy;
use seam::engine::apply::Systems;
use seam::engine::normalize::{CASE_INCIDENT_FIELD, INCIDENT_CASE_FIELD};
use seam::model::{RecordRef, System};
use seam::packs::manifest::{DeletePolicy, Deletes};
use seam::store::EventStatus;
use seam_sim::Sim;
use seam_tests::{engine_on_sim_events, seampack_with, settle, CASE_INCIDENT};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// The engine on the emulators, Salesforce's changes over Pub/Sub (Outbound Messages are
/// not sent for deletes), with the case-incident mapping under `deletes` (its own when None).
async fn start(name: &str, deletes: Option<Deletes>) -> (Sim, seam::service::Engine, Systems) {
    let mapping = seampack_with(CASE_INCIDENT, "case-incident", |m| {
        if deletes.is_some() {
            m.deletes = deletes;
        }
    });
    // Catch-up polls when a test runs one: the engine's own, every few seconds, would race it.
    let (sim, engine, _) = engine_on_sim_events(name, mapping, &[], Source::Pubsub, |c| c.poll_seconds = 3600).await;
    let people = sim.systems(RetryPolicy::default()).await.unwrap();
    (sim, engine, people)
}

/// A Case with its incident, settled: (Case id, incident sys_id).
async fn linked_pair(sim: &Sim, engine: &seam::service::Engine, people: &Systems, subject: &str) -> (String, String) {
    let case = people.salesforce.create("Case", &obj(json!({ "Subject": subject, "Priority": "High" }))).await.unwrap();
    settle(sim, engine).await;
    let incident =
        people.salesforce.get("Case", &case).await.unwrap()[CASE_INCIDENT_FIELD].as_str().expect("linked").to_string();
    (case, incident)
}

fn case_ref(id: &str) -> RecordRef {
    RecordRef { system: System::Salesforce, object: "Case".into(), id: id.into() }
}

async fn notes_on(people: &Systems, incident: &str) -> Vec<String> {
    let query = Query::new().eq("element_id", incident).unwrap().eq("element", "work_notes").unwrap();
    people
        .servicenow
        .query("sys_journal_field", &query, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_incident_closes_its_case_which_then_opens_no_other() {
    let (sim, engine, people) = start("deletes-incident", None).await;
    let (case, incident) = linked_pair(&sim, &engine, &people, "Checkout fails").await;
    let number =
        people.salesforce.get("Case", &case).await.unwrap()["ServiceNow_Number__c"].as_str().unwrap().to_string();

    assert!(people.servicenow.delete("incident", &incident).await.unwrap());
    settle(&sim, &engine).await;
    let case_now = people.salesforce.get("Case", &case).await.unwrap();
    assert_eq!(case_now["Status"], "Closed");
    assert!(
        case_now[CASE_INCIDENT_FIELD].is_null() && case_now["ServiceNow_Number__c"].is_null(),
        "the link fields are cleared: {case_now:?}"
    );
    let comments = people
        .salesforce
        .query(&format!("SELECT CommentBody, IsPublished FROM CaseComment WHERE ParentId = '{case}'"))
        .await
        .unwrap();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(
        comments[0]["CommentBody"],
        format!("{number}, linked to this Case, was deleted in ServiceNow; the Case is closed and no longer synced.")
    );
    assert_eq!(comments[0]["IsPublished"], false, "a note for the agents, not the customer");
    assert_eq!(engine.journal.link_of("demo", &case_ref(&case)).unwrap(), None, "the link is gone");
    let audit = engine.journal.audit_of("demo", &case_ref(&case), CASE_INCIDENT_FIELD).unwrap();
    assert!(
        audit.iter().any(|a| a.reason.contains("was deleted: its partner is unlinked (deletes: close)")),
        "{audit:?}"
    );

    // The Case, closed and unlinked, is edited: no new incident.
    people.salesforce.update("Case", &case, &obj(json!({ "Subject": "Checkout fails (duplicate)" }))).await.unwrap();
    settle(&sim, &engine).await;
    let incidents =
        people.servicenow.query("incident", &Query::new().eq(INCIDENT_CASE_FIELD, &case).unwrap(), 10).await.unwrap();
    assert!(incidents.is_empty(), "{incidents:?}");
    assert_eq!(
        engine.journal.status_count("demo", EventStatus::Dead).unwrap(),
        0,
        "{:?}",
        engine.journal.dead_letters(Some("demo"))
    );
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_case_leaves_its_incident_unlinked_with_a_note() {
    let (sim, engine, people) = start("deletes-case", None).await;
    let (case, incident) = linked_pair(&sim, &engine, &people, "Payments down").await;

    assert!(people.salesforce.delete("Case", &case).await.unwrap());
    settle(&sim, &engine).await;
    let incident_now = people.servicenow.get("incident", &incident).await.unwrap();
    assert_eq!(incident_now[INCIDENT_CASE_FIELD]["value"], "", "the incident stays, unlinked: {incident_now:?}");
    assert_eq!(
        notes_on(&people, &incident).await,
        vec!["The Salesforce Case linked to this incident was deleted; seam no longer syncs this incident.".to_string()]
    );
    assert_eq!(engine.journal.link_of("demo", &case_ref(&case)).unwrap(), None);
    // The incident lives on in ServiceNow, on its own.
    people.servicenow.update("incident", &incident, &obj(json!({ "state": "2" }))).await.unwrap();
    settle(&sim, &engine).await;
    assert_eq!(
        engine.journal.status_count("demo", EventStatus::Dead).unwrap(),
        0,
        "{:?}",
        engine.journal.dead_letters(Some("demo"))
    );
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_policy_of_delete_takes_the_partner_too() {
    let (sim, engine, people) =
        start("deletes-delete", Some(Deletes { salesforce: DeletePolicy::Delete, servicenow: DeletePolicy::Close }))
            .await;
    let (case, incident) = linked_pair(&sim, &engine, &people, "Duplicate").await;
    people.salesforce.delete("Case", &case).await.unwrap();
    settle(&sim, &engine).await;
    let err = people.servicenow.get("incident", &incident).await.unwrap_err();
    assert!(err.to_string().contains("404"), "the incident is gone: {err}");
    assert_eq!(engine.journal.link_of("demo", &case_ref(&case)).unwrap(), None);
    let incident_ref = RecordRef { system: System::Servicenow, object: "incident".into(), id: incident.clone() };
    let audit = engine.journal.audit_of("demo", &incident_ref, INCIDENT_CASE_FIELD).unwrap();
    assert!(audit.iter().any(|a| a.reason.contains("its partner is deleted with it (deletes: delete)")), "{audit:?}");
    assert_eq!(
        engine.journal.status_count("demo", EventStatus::Dead).unwrap(),
        0,
        "{:?}",
        engine.journal.dead_letters(Some("demo"))
    );
    sim.shutdown();
}

/// `close` is a promise the pack keeps with an update of the partner; one that makes none
/// is a pack bug, dead-lettered with what to do, and nothing is unlinked half way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_policy_whose_pack_closes_nothing_is_dead_lettered_with_what_to_do() {
    let (sim, engine, people) =
        start("deletes-close", Some(Deletes { salesforce: DeletePolicy::Close, servicenow: DeletePolicy::Close }))
            .await;
    let (case, incident) = linked_pair(&sim, &engine, &people, "Nothing closes it").await;
    people.salesforce.delete("Case", &case).await.unwrap();
    seam_tests::settle_within(&sim, &engine, std::time::Duration::from_secs(30)).await;
    let letters = engine.journal.dead_letters(Some("demo")).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].error.contains("delete policy for salesforce is close, but the packs asked for no update of"),
        "{}",
        letters[0].error
    );
    assert_eq!(
        engine.journal.link_of("demo", &case_ref(&case)).unwrap().as_deref(),
        Some(incident.as_str()),
        "still linked"
    );
    assert!(notes_on(&people, &incident).await.is_empty(), "nothing was written");
    sim.shutdown();
}

/// The instance's delete notification is lost: the catch-up poll reads the delete from
/// `sys_audit_delete`, under the notification's own key, and the Case closes all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_delete_notification_is_caught_up_from_the_audit_of_deletes() {
    let (sim, engine, people) = start("deletes-poll", None).await;
    let (case, incident) = linked_pair(&sim, &engine, &people, "Lost delete").await;
    let seam_systems = std::sync::Arc::new(sim.seam_systems(RetryPolicy::default()).await.unwrap());
    let poller = seam::engine::poller::Poller::new("demo", engine.journal.clone(), seam_systems, false);
    // The first poll of deletes sets its watermark; this one sees none.
    poller.poll_once().await.unwrap();
    assert!(engine.journal.watermark("demo", seam::engine::poller::SERVICENOW_INCIDENT_DELETES).unwrap().is_some());

    sim.servicenow.faults.set(seam_sim::faults::Faults { drop_notifications_next: 1, ..Default::default() });
    // The watermark counts whole seconds: the delete comes in a later one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    people.servicenow.delete("incident", &incident).await.unwrap();
    settle(&sim, &engine).await;
    assert_eq!(people.salesforce.get("Case", &case).await.unwrap()["Status"], "New", "the notification was lost");

    let polled = poller.poll_once().await.unwrap();
    assert_eq!(polled.new, 1, "{polled:?}");
    settle(&sim, &engine).await;
    let case_now = people.salesforce.get("Case", &case).await.unwrap();
    assert_eq!(case_now["Status"], "Closed");
    assert!(case_now[CASE_INCIDENT_FIELD].is_null());
    // Read again, it is the same event.
    assert_eq!(poller.poll_once().await.unwrap().new, 0);
    assert_eq!(
        engine.journal.status_count("demo", EventStatus::Dead).unwrap(),
        0,
        "{:?}",
        engine.journal.dead_letters(Some("demo"))
    );
    sim.shutdown();
}
