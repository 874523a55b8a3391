//! The connectors and the action applier against the emulators, in process:
//! retries that converge, refusals that do not retry, links and identity.

use seam::connectors::{ConnectorError, RetryPolicy};
use seam::engine::apply::{ApplyError, Resume, Systems};
use seam::engine::normalize;
use seam::model::{Action, ChangeKind, Field, JournalKind, RecordRef, System, Target};
use seam::sim::faults::Faults;
use seam::sim::{Sim, SimConfig};
use serde_json::{json, Map, Value};
use std::time::Duration;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn quick() -> RetryPolicy {
    RetryPolicy { attempts: 5, base: Duration::from_millis(5), max: Duration::from_millis(50) }
}

/// The emulators with seam's update set installed (the company key field), and seam's connections to them.
async fn start(name: &str) -> (Sim, Systems) {
    let dir = seam_tests::scratch_dir(&format!("connectors-{name}"));
    let sim = Sim::start(SimConfig::new(dir)).await.unwrap();
    // Nothing listens at the rule's endpoint; seam's own writes are not sent there anyway.
    sim.install_push_rule("sim", "http://127.0.0.1:9/intake/sim/servicenow", "unused").unwrap();
    let systems = sim.seam_systems(quick()).await.unwrap();
    (sim, systems)
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_until_they_clear() {
    let (sim, systems) = start("retry").await;
    sim.salesforce.faults.set(Faults { rate_limit_next: 2, retry_after_secs: 0, ..Faults::default() });
    sim.servicenow.faults.set(Faults { rate_limit_next: 1, server_error_next: 1, ..Faults::default() });
    let sf_before = systems.salesforce.http().calls();
    let id = systems.salesforce.create("Case", &obj(json!({ "Subject": "retried" }))).await.unwrap();
    assert_eq!(systems.salesforce.http().calls() - sf_before, 3, "two REQUEST_LIMIT_EXCEEDED refusals, then success");
    assert_eq!(systems.salesforce.get("Case", &id).await.unwrap()["Subject"], "retried");

    let sn_before = systems.servicenow.http().calls();
    let inc = systems.servicenow.insert("incident", &obj(json!({ "short_description": "retried" }))).await.unwrap();
    assert_eq!(systems.servicenow.http().calls() - sn_before, 3, "a 429 and a 503, then success");
    assert!(inc["number"].as_str().unwrap().starts_with("INC"));
    sim.shutdown();
}

#[tokio::test]
async fn a_system_that_stays_down_is_reported_unavailable_and_transient() {
    let (sim, systems) = start("down").await;
    sim.servicenow.faults.set(Faults { server_error: 1.0, ..Faults::default() });
    let err = systems.servicenow.insert("incident", &obj(json!({ "short_description": "x" }))).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unavailable { attempts: 5, .. }), "{err}");
    assert!(err.is_transient());
    sim.shutdown();
}

#[tokio::test]
async fn a_refusal_is_permanent_carries_the_systems_words_and_is_not_retried() {
    let (sim, systems) = start("refused").await;
    let before = systems.salesforce.http().calls();
    let err = systems.salesforce.create("Case", &obj(json!({ "Priority": "Whenever" }))).await.unwrap_err();
    assert_eq!(systems.salesforce.http().calls() - before, 1);
    assert!(!err.is_transient());
    assert!(err.to_string().contains("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"), "{err}");

    let inc = systems.servicenow.insert("incident", &obj(json!({ "short_description": "x" }))).await.unwrap();
    let id = inc["sys_id"].as_str().unwrap();
    let err = systems.servicenow.update("incident", id, &obj(json!({ "state": "6" }))).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Refused { status: 403, .. }) && err.to_string().contains("Data Policy Exception"), "{err}");
    sim.shutdown();
}

#[tokio::test]
async fn a_linked_create_correlates_both_records_and_matches_the_customer_by_key() {
    let (sim, systems) = start("link").await;
    let (sf, sn) = (&systems.salesforce, &systems.servicenow);
    let account = sf.create("Account", &obj(json!({ "Name": "Acme Corporation", "External_Id__c": "ACME-001" }))).await.unwrap();
    // Same display name, different key: must not be picked.
    sn.insert("core_company", &obj(json!({ "name": "Acme Corporation", "u_sf_external_id": "OTHER-9" }))).await.unwrap();
    let company = sn.insert("core_company", &obj(json!({ "name": "ACME Corp (EMEA)", "u_sf_external_id": "ACME-001" }))).await.unwrap();
    let case = sf.create("Case", &obj(json!({ "Subject": "Checkout fails", "AccountId": account }))).await.unwrap();
    let change = normalize::salesforce("e1", ChangeKind::Created, "Case", &sf.get("Case", &case).await.unwrap(), None);
    assert!(change.linked.is_none());

    let actions = vec![
        Action::Create { system: System::Servicenow, object: "incident".into(), fields: vec![Field::new("short_description", "Checkout fails")], link_to_source: true },
        Action::PostSlack { channel: "acme-sev1".into(), create_channel: true, text: "{{linked.number}}: {{linked.url}} for {{source.url}}".into() },
    ];
    let writes = systems.apply(&change, &actions).await.unwrap();
    assert_eq!(writes.len(), 3, "{writes:?}");

    let case_now = sf.get("Case", &case).await.unwrap();
    let incident_id = case_now[normalize::CASE_INCIDENT_FIELD].as_str().unwrap().to_string();
    let incident = sn.get("incident", &incident_id).await.unwrap();
    assert_eq!(incident["correlation_id"]["value"], case.as_str());
    assert_eq!(incident["company"]["value"], company["sys_id"]);
    assert_eq!(case_now[normalize::CASE_INCIDENT_NUMBER_FIELD], incident["number"]["value"]);

    // The records alone rebuild the link, both ways.
    let back = normalize::servicenow("e2", ChangeKind::Updated, "incident", &incident, Some(&["state"]));
    assert_eq!(back.linked.as_ref().map(|l| l.id.as_str()), Some(case.as_str()));
    let forth = normalize::salesforce("e3", ChangeKind::Updated, "Case", &case_now, Some(&["Subject"]));
    assert_eq!(forth.linked.as_ref().map(|l| l.id.as_str()), Some(incident_id.as_str()));

    let text = writes[2].fields[0].value.as_text().unwrap();
    let number = incident["number"]["value"].as_str().unwrap();
    assert!(text.starts_with(&format!("{number}: ")) && text.contains(&incident_id) && text.contains(&case), "placeholders filled: {text}");
    sim.shutdown();
}

#[tokio::test]
async fn an_update_of_the_linked_record_without_a_link_is_an_error_not_a_guess() {
    let (sim, systems) = start("nolink").await;
    let case = systems.salesforce.create("Case", &obj(json!({ "Subject": "alone" }))).await.unwrap();
    let change = normalize::salesforce("e1", ChangeKind::Updated, "Case", &systems.salesforce.get("Case", &case).await.unwrap(), Some(&["Subject"]));
    let err = systems.apply(&change, &[Action::Update { target: Target::Linked, fields: vec![Field::new("short_description", "x")] }]).await.unwrap_err();
    assert!(matches!(err, ApplyError::NoLink(..)) && !err.is_transient(), "{err}");
    sim.shutdown();
}

#[tokio::test]
async fn repeating_a_linked_create_finds_the_first_record_instead_of_making_another() {
    let (sim, systems) = start("idempotent").await;
    let (sf, sn) = (&systems.salesforce, &systems.servicenow);
    let case = sf.create("Case", &obj(json!({ "Subject": "once" }))).await.unwrap();
    let change = normalize::salesforce("e1", ChangeKind::Created, "Case", &sf.get("Case", &case).await.unwrap(), None);
    let create = [Action::Create { system: System::Servicenow, object: "incident".into(), fields: vec![Field::new("short_description", "once")], link_to_source: true }];
    // As if the first attempt's progress was lost in a crash: the same action runs again, as a resumed attempt.
    let first = systems.apply(&change, &create).await.unwrap();
    let second = systems.apply_resuming(&change, &create, Resume::After(0), Default::default(), |_, _, _| Ok(())).await.unwrap().writes;
    assert_eq!(first.iter().filter(|w| w.operation == "create").count(), 1);
    assert_eq!(second.iter().filter(|w| w.operation == "create").count(), 0, "{second:?}");
    let incidents = sn.query("incident", &seam::connectors::servicenow::Query::new().eq("correlation_id", &case).unwrap(), 10).await.unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(sf.get("Case", &case).await.unwrap()[normalize::CASE_INCIDENT_FIELD], incidents[0]["sys_id"]);
    sim.shutdown();
}

#[tokio::test]
async fn a_resumed_attempt_does_not_append_a_journal_entry_twice() {
    let (sim, systems) = start("append-once").await;
    let (sf, sn) = (&systems.salesforce, &systems.servicenow);
    let case = sf.create("Case", &obj(json!({ "Subject": "comments" }))).await.unwrap();
    let incident = sn.insert("incident", &obj(json!({ "short_description": "notes", "correlation_id": case }))).await.unwrap()["sys_id"].as_str().unwrap().to_string();
    let change = normalize::salesforce("e1", ChangeKind::Updated, "Case", &sf.get("Case", &case).await.unwrap(), Some(&["Subject"]));
    let mut change = change;
    change.linked = Some(RecordRef { system: System::Servicenow, object: "incident".into(), id: incident.clone() });
    let appends = [
        Action::AppendJournal { target: Target::Source, kind: JournalKind::Comment, text: "Engineer assigned".into() },
        Action::AppendJournal { target: Target::Linked, kind: JournalKind::WorkNote, text: "Customer told".into() },
    ];
    // The first attempt appended both, then crashed before recording it: a resumed attempt finds them and adds nothing.
    systems.apply(&change, &appends).await.unwrap();
    let resumed = systems.apply_resuming(&change, &appends[..1], Resume::After(0), Default::default(), |_, _, _| Ok(())).await.unwrap();
    let resumed_linked = systems.apply_resuming(&change, &appends, Resume::After(1), Default::default(), |_, _, _| Ok(())).await.unwrap();
    assert!(resumed.writes.is_empty() && resumed_linked.writes.is_empty(), "{:?} {:?}", resumed.writes, resumed_linked.writes);
    let comments = sf.query(&format!("SELECT Id FROM CaseComment WHERE ParentId = '{case}'")).await.unwrap();
    assert_eq!(comments.len(), 1);
    let notes = sn.query("sys_journal_field", &seam::connectors::servicenow::Query::new().eq("element_id", &incident).unwrap().eq("element", "work_notes").unwrap(), 10).await.unwrap();
    assert_eq!(notes.len(), 1);
    // A fresh attempt is not second-guessed: the same text again is a new entry.
    systems.apply(&change, &appends[..1]).await.unwrap();
    assert_eq!(sf.query(&format!("SELECT Id FROM CaseComment WHERE ParentId = '{case}'")).await.unwrap().len(), 2);
    sim.shutdown();
}

#[tokio::test]
async fn seams_salesforce_writes_carry_its_client_id_which_change_events_report_as_their_origin() {
    let (sim, systems) = start("call-options").await;
    let id = systems.salesforce.create("Case", &obj(json!({ "Subject": "written by seam" }))).await.unwrap();
    // The org's change event of that write, read off its event bus and decoded as a subscriber does.
    let bus = sim.salesforce.change_events.as_ref().unwrap();
    let stored = bus.read("/data/CaseChangeEvent", 0, bus.tip(), 10).unwrap().pop().expect("the create published a change event");
    let schema = apache_avro_schema(&bus.schema_json(&stored.schema_id).unwrap());
    let event = seam::connectors::salesforce::pubsub::event::decode(&schema, &stored.payload).unwrap();
    let header = event.header.as_ref().unwrap();
    assert_eq!(header.record_ids, vec![id]);
    assert_eq!(header.change_origin, format!("com/salesforce/api/rest/59.0;client={}", systems.salesforce.client_id()));
    assert!(event.made_by_client(systems.salesforce.client_id()) && !event.made_by_client("someone-else"));
    sim.shutdown();
}

fn apache_avro_schema(json: &str) -> seam::connectors::salesforce::pubsub::Schema {
    seam::connectors::salesforce::pubsub::Schema::parse_str(json).unwrap()
}
