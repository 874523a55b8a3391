//! The connectors and the action applier against the emulators, in process:
//! retries that converge, refusals that do not retry, links and identity.

use seam::cli::simulated::Simulated;
use seam::connectors::{ConnectorError, RetryPolicy};
use seam::engine::apply::{no_progress, ApplyError, Resume, Systems};
use seam::engine::normalize;
use seam::model::{Action, ChangeKind, Field, JournalKind, RecordRef, System, Target};
use seam::transience::Transience;
use seam_sim::faults::Faults;
use seam_sim::{Sim, SimConfig};
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
    assert!(
        matches!(err, ConnectorError::Refused { status: 403, .. }) && err.to_string().contains("Data Policy Exception"),
        "{err}"
    );
    sim.shutdown();
}

#[tokio::test]
async fn a_linked_create_correlates_both_records_and_matches_the_customer_by_key() {
    let (sim, systems) = start("link").await;
    let (sf, sn) = (&systems.salesforce, &systems.servicenow);
    let account =
        sf.create("Account", &obj(json!({ "Name": "Acme Corporation", "External_Id__c": "ACME-001" }))).await.unwrap();
    // Same display name, different key: must not be picked.
    sn.insert("core_company", &obj(json!({ "name": "Acme Corporation", "u_sf_external_id": "OTHER-9" })))
        .await
        .unwrap();
    let company = sn
        .insert("core_company", &obj(json!({ "name": "ACME Corp (EMEA)", "u_sf_external_id": "ACME-001" })))
        .await
        .unwrap();
    let case = sf.create("Case", &obj(json!({ "Subject": "Checkout fails", "AccountId": account }))).await.unwrap();
    let change = normalize::salesforce("e1", ChangeKind::Created, "Case", &sf.get("Case", &case).await.unwrap(), None);
    assert!(change.linked.is_none());

    let actions = vec![
        Action::Create {
            system: System::Servicenow,
            object: "incident".into(),
            fields: vec![Field::new("short_description", "Checkout fails")],
            link_to_source: true,
        },
        Action::PostSlack {
            channel: "acme-sev1".into(),
            create_channel: true,
            text: "{{linked.number}}: {{linked.url}} for {{source.url}}".into(),
        },
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
    assert!(
        text.starts_with(&format!("{number}: ")) && text.contains(&incident_id) && text.contains(&case),
        "placeholders filled: {text}"
    );
    sim.shutdown();
}

#[tokio::test]
async fn an_update_of_the_linked_record_without_a_link_is_an_error_not_a_guess() {
    let (sim, systems) = start("nolink").await;
    let case = systems.salesforce.create("Case", &obj(json!({ "Subject": "alone" }))).await.unwrap();
    let change = normalize::salesforce(
        "e1",
        ChangeKind::Updated,
        "Case",
        &systems.salesforce.get("Case", &case).await.unwrap(),
        Some(&["Subject"]),
    );
    let err = systems
        .apply(
            &change,
            &[Action::Update { target: Target::Linked, fields: vec![Field::new("short_description", "x")] }],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::NoLink(..)) && !err.is_transient(), "{err}");
    sim.shutdown();
}

#[tokio::test]
async fn repeating_a_linked_create_finds_the_first_record_instead_of_making_another() {
    let (sim, systems) = start("idempotent").await;
    let (sf, sn) = (&systems.salesforce, &systems.servicenow);
    let case = sf.create("Case", &obj(json!({ "Subject": "once" }))).await.unwrap();
    let change = normalize::salesforce("e1", ChangeKind::Created, "Case", &sf.get("Case", &case).await.unwrap(), None);
    let create = [Action::Create {
        system: System::Servicenow,
        object: "incident".into(),
        fields: vec![Field::new("short_description", "once")],
        link_to_source: true,
    }];
    // As if the first attempt's progress was lost in a crash: the same action runs again, as a resumed attempt.
    let first = systems.apply(&change, &create).await.unwrap();
    let second = systems
        .apply_resuming("e1", &change, &create, Resume::Retry, Default::default(), no_progress)
        .await
        .unwrap()
        .writes;
    assert_eq!(first.iter().filter(|w| w.operation == "create").count(), 1);
    assert_eq!(second.iter().filter(|w| w.operation == "create").count(), 0, "{second:?}");
    let incidents = sn
        .query("incident", &seam::connectors::servicenow::Query::new().eq("correlation_id", &case).unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(sf.get("Case", &case).await.unwrap()[normalize::CASE_INCIDENT_FIELD], incidents[0]["sys_id"]);
    sim.shutdown();
}

#[tokio::test]
async fn a_resumed_attempt_does_not_append_a_journal_entry_twice() {
    let (sim, systems) = start("append-once").await;
    let (sf, sn) = (&systems.salesforce, &systems.servicenow);
    let case = sf.create("Case", &obj(json!({ "Subject": "comments" }))).await.unwrap();
    let incident =
        sn.insert("incident", &obj(json!({ "short_description": "notes", "correlation_id": case }))).await.unwrap()
            ["sys_id"]
            .as_str()
            .unwrap()
            .to_string();
    let change = normalize::salesforce(
        "e1",
        ChangeKind::Updated,
        "Case",
        &sf.get("Case", &case).await.unwrap(),
        Some(&["Subject"]),
    );
    let mut change = change;
    change.linked = Some(RecordRef { system: System::Servicenow, object: "incident".into(), id: incident.clone() });
    let appends = [
        Action::AppendJournal { target: Target::Source, kind: JournalKind::Comment, text: "Engineer assigned".into() },
        Action::AppendJournal { target: Target::Linked, kind: JournalKind::WorkNote, text: "Customer told".into() },
    ];
    // The first attempt appended both, then crashed before recording it: a resumed attempt finds them and adds nothing.
    systems.apply(&change, &appends).await.unwrap();
    let resumed = systems
        .apply_resuming("e1", &change, &appends[..1], Resume::Retry, Default::default(), no_progress)
        .await
        .unwrap();
    let resumed_linked =
        systems.apply_resuming("e1", &change, &appends, Resume::Retry, Default::default(), no_progress).await.unwrap();
    assert!(
        resumed.writes.is_empty() && resumed_linked.writes.is_empty(),
        "{:?} {:?}",
        resumed.writes,
        resumed_linked.writes
    );
    let comments = sf.query(&format!("SELECT Id FROM CaseComment WHERE ParentId = '{case}'")).await.unwrap();
    assert_eq!(comments.len(), 1);
    let notes = sn
        .query(
            "sys_journal_field",
            &seam::connectors::servicenow::Query::new()
                .eq("element_id", &incident)
                .unwrap()
                .eq("element", "work_notes")
                .unwrap(),
            10,
        )
        .await
        .unwrap();
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
    let stored = bus
        .read("/data/CaseChangeEvent", 0, bus.tip(), 10)
        .unwrap()
        .pop()
        .expect("the create published a change event");
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

/// Each kind of write that must not happen twice, carried out by the system with its
/// response lost on the way back (the connection cut after the write): the connector
/// does not send it again blindly, and the retried attempt finds what was made.
#[tokio::test]
async fn a_write_whose_response_is_lost_is_found_by_the_retry_not_made_again() {
    let (sim, systems) = start("lost-response").await;
    let (sf, sn) = (&systems.salesforce, &systems.servicenow);
    let slack = systems.slack.as_ref().unwrap();
    let case = sf.create("Case", &obj(json!({ "Subject": "lost responses" }))).await.unwrap();
    let incident = sn
        .insert("incident", &obj(json!({ "short_description": "lost responses", "correlation_id": case })))
        .await
        .unwrap()["sys_id"]
        .as_str()
        .unwrap()
        .to_string();
    let channel = slack.ensure_channel("lost-responses").await.unwrap();
    let mut change = normalize::salesforce(
        "e-lost",
        ChangeKind::Updated,
        "Case",
        &sf.get("Case", &case).await.unwrap(),
        Some(&["Subject"]),
    );
    change.linked = Some(RecordRef { system: System::Servicenow, object: "incident".into(), id: incident.clone() });

    // The connector alone: one insert reaches the system, and the caller is told it may have been applied.
    sim.servicenow.faults.set(Faults { drop_responses_next: 1, ..Faults::default() });
    let before = sn.http().calls();
    let err = sn.insert("incident", &obj(json!({ "short_description": "sent once" }))).await.unwrap_err();
    assert!(err.is_transient() && err.to_string().contains("may have been applied"), "{err}");
    assert_eq!(sn.http().calls() - before, 1, "not sent again");
    let made = sn
        .query(
            "incident",
            &seam::connectors::servicenow::Query::new().eq("short_description", "sent once").unwrap(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(made.len(), 1, "the system made it once");

    let task = Action::Create {
        system: System::Salesforce,
        object: "Task".into(),
        fields: vec![Field::new("Subject", "Call the customer"), Field::new("WhatId", case.as_str())],
        link_to_source: false,
    };
    let comment =
        Action::AppendJournal { target: Target::Source, kind: JournalKind::Comment, text: "Engineer assigned".into() };
    let note =
        Action::AppendJournal { target: Target::Linked, kind: JournalKind::WorkNote, text: "Customer told".into() };
    let post =
        Action::PostSlack { channel: "lost-responses".into(), create_channel: false, text: "Bridge open".into() };
    let lose_next_write =
        |system: &seam_sim::Emulator| system.faults.set(Faults { drop_responses_next: 1, ..Faults::default() });
    for (action, system) in
        [(&task, &sim.salesforce), (&comment, &sim.salesforce), (&note, &sim.servicenow), (&post, &sim.slack)]
    {
        let actions = std::slice::from_ref(action);
        lose_next_write(system);
        match systems.apply_resuming("e-lost", &change, actions, Resume::Start, Default::default(), no_progress).await {
            // An upsert by key is safe to send again at once: the connector does.
            Ok(_) => assert_eq!(action, &task, "only the create by key may be sent again blindly"),
            Err(err) => {
                assert!(err.is_transient(), "{action}: {err}");
                // The event is retried from the journal: nothing recorded the action as done.
                systems
                    .apply_resuming("e-lost", &change, actions, Resume::Retry, Default::default(), no_progress)
                    .await
                    .unwrap();
            }
        }
    }
    let tasks = sf.query(&format!("SELECT Id, Seam_Key__c FROM Task WHERE WhatId = '{case}'")).await.unwrap();
    assert_eq!(tasks.len(), 1, "one Task: {tasks:?}");
    assert_eq!(tasks[0]["Seam_Key__c"].as_str().map(str::len), Some(32), "made by its key: {tasks:?}");
    assert_eq!(
        sf.query(&format!("SELECT Id FROM CaseComment WHERE ParentId = '{case}'")).await.unwrap().len(),
        1,
        "one comment"
    );
    let notes = sn
        .query(
            "sys_journal_field",
            &seam::connectors::servicenow::Query::new()
                .eq("element_id", &incident)
                .unwrap()
                .eq("element", "work_notes")
                .unwrap(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(notes.len(), 1, "one work note");
    assert_eq!(slack.history(&channel).await.unwrap(), vec!["Bridge open".to_string()], "one message");
    sim.shutdown();
}

/// A pack swapped in while an event waited for its retry asks for other actions, in
/// another order: what the first attempt did is known by key, so the retry does the
/// new pack's new action, skips what is done wherever it now stands, and does the rest.
#[tokio::test]
async fn a_retry_under_a_new_pack_version_skips_what_was_done_by_key_not_by_place() {
    let (sim, systems) = start("resume-swap").await;
    let sf = &systems.salesforce;
    let case = sf.create("Case", &obj(json!({ "Subject": "swap", "Priority": "Low" }))).await.unwrap();
    let change = normalize::salesforce(
        "e-swap",
        ChangeKind::Updated,
        "Case",
        &sf.get("Case", &case).await.unwrap(),
        Some(&["Subject"]),
    );
    let comment =
        Action::AppendJournal { target: Target::Source, kind: JournalKind::Comment, text: "Looking into it".into() };
    let post =
        Action::PostSlack { channel: "swap".into(), create_channel: true, text: "Case {{source.id}} escalated".into() };
    let priority = Action::Update { target: Target::Source, fields: vec![Field::new("Priority", "High")] };

    // Version 1: the comment is made, then Slack fails past every retry.
    sim.slack.faults.set(Faults { server_error_next: 5, retry_after_secs: 0, ..Faults::default() });
    let mut carried = seam::model::Carried::default();
    let err = systems
        .apply_resuming(
            "e-swap",
            &change,
            &[comment.clone(), post.clone()],
            Resume::Start,
            Default::default(),
            |_, done, _| {
                carried = done;
                Box::pin(async { Ok(()) })
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(carried.done.len(), 1, "the comment is recorded as done");

    // Version 2 puts a new action first and the old two in another order.
    let resumed = systems
        .apply_resuming("e-swap", &change, &[priority, post, comment], Resume::Retry, carried, no_progress)
        .await
        .unwrap();
    let operations: Vec<_> = resumed.writes.iter().map(|w| (w.action, w.operation)).collect();
    assert!(!resumed.writes.iter().any(|w| w.operation == "journal"), "the comment is not made again: {operations:?}");
    assert_eq!(sf.get("Case", &case).await.unwrap()["Priority"], "High", "the new action ran");
    assert_eq!(sf.query(&format!("SELECT Id FROM CaseComment WHERE ParentId = '{case}'")).await.unwrap().len(), 1);
    let slack = systems.slack.as_ref().unwrap();
    let channel = slack.ensure_channel("swap").await.unwrap();
    assert_eq!(slack.history(&channel).await.unwrap(), vec![format!("Case {case} escalated")]);
    sim.shutdown();
}
