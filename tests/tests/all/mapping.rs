//! The default Case ⇄ Incident pack, run through the host.

use seam::model::{Action, Change, ChangeKind, Field, JournalKind, RecordRef, System, Target, Value};
use seam::runtime::{ApiVersion, Grants, LinkedPack, NoRecords, PackError, Runtime, RuntimeConfig};
use seam_tests::{pack_bytes, API_V0_1_0, CASE_INCIDENT};
use std::sync::Arc;

async fn pack() -> LinkedPack {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    runtime.load("case-incident", "test", &pack_bytes(CASE_INCIDENT), Grants::default()).await.unwrap()
}

fn case() -> RecordRef {
    RecordRef { system: System::Salesforce, object: "Case".into(), id: "5005g00000ABCDeAAF".into() }
}
fn incident() -> RecordRef {
    RecordRef { system: System::Servicenow, object: "incident".into(), id: "9d385017c611228701d22104cc95c371".into() }
}

fn change(
    kind: ChangeKind,
    source: RecordRef,
    linked: Option<RecordRef>,
    changed: &[(&str, &str)],
    rest: &[(&str, &str)],
) -> Change {
    let changed: Vec<Field> = changed.iter().map(|(k, v)| Field::new(*k, *v)).collect();
    let mut snapshot: Vec<Field> = rest.iter().map(|(k, v)| Field::new(*k, *v)).collect();
    snapshot.extend(changed.iter().cloned());
    Change { event_id: "e1".into(), kind, source, changed, snapshot, origin_user: "someone".into(), linked }
}

async fn map(change: &Change) -> Result<Vec<Action>, PackError> {
    pack().await.run(change, Arc::new(NoRecords)).await
}

fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
    pairs.iter().map(|(k, v)| Field::new(*k, *v)).collect()
}

#[tokio::test]
async fn new_case_opens_a_linked_incident_with_summary_and_priority() {
    let c = change(
        ChangeKind::Created,
        case(),
        None,
        &[
            ("Subject", "Checkout API returns 502"),
            ("Description", "Fails since 09:12"),
            ("Priority", "High"),
            ("Origin", "Web"),
        ],
        &[("CaseNumber", "00001026")],
    );
    let actions = map(&c).await.unwrap();
    assert_eq!(
        actions,
        vec![Action::Create {
            system: System::Servicenow,
            object: "incident".into(),
            fields: fields(&[
                ("short_description", "Checkout API returns 502"),
                ("description", "Fails since 09:12"),
                ("impact", "1"),
                ("urgency", "2"),
            ]),
            link_to_source: true,
        }]
    );
}

#[tokio::test]
async fn case_update_writes_only_the_changed_mapped_fields() {
    let c =
        change(ChangeKind::Updated, case(), Some(incident()), &[("Priority", "Critical")], &[("Subject", "unchanged")]);
    assert_eq!(
        map(&c).await.unwrap(),
        vec![Action::Update { target: Target::Linked, fields: fields(&[("impact", "1"), ("urgency", "1")]) }]
    );

    let c = change(
        ChangeKind::Updated,
        case(),
        Some(incident()),
        &[("Subject", "Now: all checkouts fail")],
        &[("Priority", "Low")],
    );
    assert_eq!(
        map(&c).await.unwrap(),
        vec![Action::Update {
            target: Target::Linked,
            fields: fields(&[("short_description", "Now: all checkouts fail")])
        }]
    );

    // A change to a field the mapping does not carry produces nothing.
    let c = change(ChangeKind::Updated, case(), Some(incident()), &[("Origin", "Phone")], &[]);
    assert_eq!(map(&c).await.unwrap(), vec![]);
}

#[tokio::test]
async fn priority_matrix_covers_every_customer_priority() {
    for (priority, impact, urgency) in
        [("Critical", "1", "1"), ("High", "1", "2"), ("Medium", "2", "2"), ("Low", "2", "3")]
    {
        let c = change(ChangeKind::Updated, case(), Some(incident()), &[("Priority", priority)], &[]);
        assert_eq!(
            map(&c).await.unwrap(),
            vec![Action::Update {
                target: Target::Linked,
                fields: fields(&[("impact", impact), ("urgency", urgency)])
            }],
            "priority {priority}"
        );
    }
}

#[tokio::test]
async fn unknown_priority_is_rejected_with_a_reason() {
    let c = change(ChangeKind::Updated, case(), Some(incident()), &[("Priority", "Urgent!!")], &[]);
    match map(&c).await {
        Err(PackError::Rejected { message, pack }) => {
            assert!(message.contains("Urgent!!") && message.contains("Critical, High, Medium or Low"), "{message}");
            assert_eq!(pack, "case-incident@test");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn incident_state_assignee_and_resolution_flow_back_to_the_case() {
    let c = change(
        ChangeKind::Updated,
        incident(),
        Some(case()),
        &[("state", "2"), ("assigned_to", "Beth Anglin")],
        &[("number", "INC0010001")],
    );
    assert_eq!(
        map(&c).await.unwrap(),
        vec![
            Action::Update {
                target: Target::Linked,
                fields: fields(&[("Status", "Working"), ("ServiceNow_Assignee__c", "Beth Anglin")])
            },
            Action::AppendJournal {
                target: Target::Linked,
                kind: JournalKind::Comment,
                text: "INC0010001 is assigned to Beth Anglin.".into()
            },
        ]
    );

    let c = change(
        ChangeKind::Updated,
        incident(),
        Some(case()),
        &[("state", "6"), ("close_notes", "Rolled back gateway config.")],
        &[("number", "INC0010001")],
    );
    assert_eq!(
        map(&c).await.unwrap(),
        vec![
            Action::Update { target: Target::Linked, fields: fields(&[("Status", "Closed")]) },
            Action::AppendJournal {
                target: Target::Linked,
                kind: JournalKind::Comment,
                text: "Resolution (INC0010001): Rolled back gateway config.".into()
            },
        ]
    );
}

#[tokio::test]
async fn the_assignee_is_carried_by_name_when_the_display_value_is_known() {
    let mut c = change(
        ChangeKind::Updated,
        incident(),
        Some(case()),
        &[("assigned_to", "681ccaf9c0a8016400b98a06818d57c7")],
        &[("number", "INC0010002")],
    );
    c.snapshot.push(Field::new("assigned_to.display", "Beth Anglin"));
    assert_eq!(
        map(&c).await.unwrap(),
        vec![
            Action::Update { target: Target::Linked, fields: fields(&[("ServiceNow_Assignee__c", "Beth Anglin")]) },
            Action::AppendJournal {
                target: Target::Linked,
                kind: JournalKind::Comment,
                text: "INC0010002 is assigned to Beth Anglin.".into()
            },
        ]
    );
}

#[tokio::test]
async fn incident_fields_the_case_does_not_mirror_are_not_written() {
    // Work notes and short_description changes on the incident stay in ServiceNow.
    let c = change(
        ChangeKind::Updated,
        incident(),
        Some(case()),
        &[("work_notes", "checked logs"), ("short_description", "x")],
        &[],
    );
    assert_eq!(map(&c).await.unwrap(), vec![]);
    // An incident opened in ServiceNow with no Case has nowhere to go.
    let c = change(ChangeKind::Created, incident(), None, &[("state", "1")], &[]);
    assert_eq!(map(&c).await.unwrap(), vec![]);
}

#[tokio::test]
async fn deleted_case_leaves_a_work_note_on_the_incident() {
    let c = change(ChangeKind::Deleted, case(), Some(incident()), &[], &[]);
    let actions = map(&c).await.unwrap();
    assert!(
        matches!(&actions[..], [Action::AppendJournal { target: Target::Linked, kind: JournalKind::WorkNote, text }] if text.contains("deleted")),
        "{actions:?}"
    );
}

#[tokio::test]
async fn cleared_field_is_carried_as_null() {
    let mut c = change(ChangeKind::Updated, case(), Some(incident()), &[], &[]);
    c.changed = vec![Field { name: "Description".into(), value: Value::Null }];
    c.snapshot = c.changed.clone();
    assert_eq!(
        map(&c).await.unwrap(),
        vec![Action::Update {
            target: Target::Linked,
            fields: vec![Field { name: "description".into(), value: Value::Null }]
        }]
    );
}

#[tokio::test]
async fn a_batch_gets_one_answer_per_change_in_order_and_a_refusal_stays_with_its_change() {
    let pack = pack().await;
    assert_eq!(pack.api(), ApiVersion::LATEST, "seam-guest builds the newest seam:sync");
    let subject = |s: &str| change(ChangeKind::Updated, case(), Some(incident()), &[("Subject", s)], &[]);
    let unmappable = change(ChangeKind::Updated, case(), Some(incident()), &[("Priority", "Whenever")], &[]);
    let worked = change(ChangeKind::Updated, incident(), Some(case()), &[("state", "2")], &[("number", "INC0010001")]);
    let batch = [subject("First"), unmappable, subject("Third (ünïcode)"), worked];

    let answers = pack.run_batch(&batch, Arc::new(NoRecords)).await.expect("no change in the batch traps the pack");
    assert_eq!(answers.len(), batch.len());
    // Each answer is what the change gets on a call of its own.
    for (c, answer) in batch.iter().zip(&answers) {
        let alone = map(c).await;
        match (answer, &alone) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(PackError::Rejected { message: a, .. }), Err(PackError::Rejected { message: b, .. })) => {
                assert_eq!(a, b)
            }
            other => panic!("batched and alone disagree: {other:?}"),
        }
    }
    assert!(
        matches!(&answers[1], Err(PackError::Rejected { message, .. }) if message.contains("Whenever")),
        "{:?}",
        answers[1]
    );
    let Ok(third) = &answers[2] else { panic!("{:?}", answers[2]) };
    assert_eq!(
        third,
        &vec![Action::Update { target: Target::Linked, fields: fields(&[("short_description", "Third (ünïcode)")]) }]
    );
    assert!(pack.run_batch([], Arc::new(NoRecords)).await.unwrap().is_empty(), "an empty batch is an empty answer");
}

#[tokio::test]
async fn a_pack_built_for_seam_sync_0_1_0_still_runs_one_change_per_call() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let legacy = runtime.load("legacy", "0.1.0", &pack_bytes(API_V0_1_0), Grants::default()).await.unwrap();
    assert_eq!(legacy.api(), seam::runtime::bindings::v0_1_0::VERSION);
    let subject = change(ChangeKind::Updated, case(), Some(incident()), &[("Subject", "Router down")], &[]);
    let expected =
        vec![Action::Update { target: Target::Linked, fields: fields(&[("short_description", "Router down")]) }];
    assert_eq!(legacy.run(&subject, Arc::new(NoRecords)).await.unwrap(), expected);

    // A batch to a 0.1.0 pack is one call per change, answered in order.
    let nameless = change(ChangeKind::Updated, case(), Some(incident()), &[("Priority", "High")], &[]);
    let answers = legacy.run_batch([&subject, &nameless, &subject], Arc::new(NoRecords)).await.unwrap();
    assert_eq!(answers[0].as_ref().unwrap(), &expected);
    assert!(
        matches!(&answers[1], Err(PackError::Rejected { message, .. }) if message.contains("has no Subject")),
        "{:?}",
        answers[1]
    );
    assert_eq!(answers[2].as_ref().unwrap(), &expected);
}
