//! The sync engine end to end on the emulators: notifications → intake →
//! journal → processor → writes, with echo suppression and ownership.

use arc_swap::ArcSwap;
use seam::cli::simulated::Simulated;
use seam::connectors::RetryPolicy;
use seam::engine::apply::Systems;
use seam::engine::dispatcher::{claim, Dispatcher};
use seam::engine::ownership::Ownership;
use seam::engine::processor::{Processor, Retrying};
use seam::model::{RecordRef, System, Value};
use seam::packs::ActivePack;
use seam::runtime::{Grants, Runtime, RuntimeConfig};
use seam::store::{EventStatus, Journal};
use seam_sim::Sim;
use seam_tests::{pack_bytes, rig, Rig, CASE_INCIDENT, TENANT};
use serde_json::{json, Map};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn obj(v: serde_json::Value) -> Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap()
}

struct Harness {
    sim: Sim,
    journal: Arc<Journal>,
    journal_path: std::path::PathBuf,
    processor: Arc<Processor>,
    /// seam's connections (the processor's).
    systems: Arc<Systems>,
    /// The people's: their changes are the ones the systems notify.
    people: Arc<Systems>,
}

async fn harness(name: &str) -> Harness {
    harness_with(name, Ownership::default()).await
}

async fn harness_with(name: &str, ownership: Ownership) -> Harness {
    harness_retrying(name, ownership, Retrying::default()).await
}

async fn harness_retrying(name: &str, ownership: Ownership, retrying: Retrying) -> Harness {
    let Rig { sim, journal, journal_path, counters, .. } = rig(&format!("engine-{name}"), 1 << 20).await;
    let policy = RetryPolicy { attempts: 4, base: Duration::from_millis(20), max: Duration::from_millis(200) };
    let systems = Arc::new(sim.seam_systems(policy.clone()).await.unwrap());
    let people = Arc::new(sim.systems(policy).await.unwrap());
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let linked = runtime.load("case-incident", "1.0.0", &pack_bytes(CASE_INCIDENT), Grants::default()).await.unwrap();
    let active = Arc::new(ArcSwap::from_pointee(ActivePack::of(linked, ownership)));
    let processor = Arc::new(Processor {
        tenant: TENANT.into(),
        journal: journal.clone(),
        systems: systems.clone(),
        active,
        workflows: Default::default(),
        counters,
        retrying,
    });
    Harness { sim, journal, journal_path, processor, systems, people }
}

impl Harness {
    /// Deliver and process until the emulators have nothing left to send and the journal nothing left to do.
    async fn settle(&self) {
        let started = Instant::now();
        let mut quiet_since = Instant::now();
        let mut last = (u64::MAX, u64::MAX);
        loop {
            assert!(started.elapsed() < Duration::from_secs(20), "the engine did not settle");
            Dispatcher::new(self.processor.clone(), 16).drain().await.unwrap();
            // Undelivered notifications, and journal events waiting for a retry.
            let pending = self.sim.salesforce.notifier.as_ref().unwrap().stats().pending
                + self.sim.servicenow.notifier.as_ref().unwrap().stats().pending
                + self.journal.status_count(TENANT, EventStatus::Pending).unwrap();
            let now = (self.journal.count(TENANT).unwrap(), pending);
            if now != last || pending > 0 {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() > Duration::from_millis(300) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn writes(&self) -> u64 {
        self.processor.counters.writes.get()
    }
}

#[tokio::test]
async fn the_whole_story_with_echo_suppression_and_ownership() {
    let h = harness("story").await;
    let (sf, sn) = (&h.people.salesforce, &h.people.servicenow);
    let account =
        sf.create("Account", &obj(json!({ "Name": "Acme Corporation", "External_Id__c": "ACME-001" }))).await.unwrap();
    let company = sn
        .insert("core_company", &obj(json!({ "name": "ACME Corp (EMEA)", "u_sf_external_id": "ACME-001" })))
        .await
        .unwrap();
    h.settle().await;
    assert_eq!(h.writes(), 0, "an Account alone is not carried anywhere");

    // A customer raises a Case: an incident opens, correlated both ways, customer matched by key.
    let case = sf
        .create(
            "Case",
            &obj(json!({ "Subject": "Checkout API returns 502", "Priority": "High", "AccountId": account })),
        )
        .await
        .unwrap();
    h.settle().await;
    let case_now = sf.get("Case", &case).await.unwrap();
    let incident = case_now["ServiceNow_Incident__c"].as_str().expect("the Case names its incident").to_string();
    let inc = sn.get("incident", &incident).await.unwrap();
    assert_eq!(inc["correlation_id"]["value"], case.as_str());
    assert_eq!(inc["company"]["value"], company["sys_id"]);
    assert_eq!(inc["short_description"]["value"], "Checkout API returns 502");
    assert_eq!(inc["priority"]["value"], "2");
    let writes_after_open = h.writes();
    assert_eq!(writes_after_open, 2, "create the incident, stamp the Case");

    // One human change → exactly one cross-system write, which ServiceNow's push rule does not send back.
    let journaled = h.journal.count(TENANT).unwrap();
    sf.update("Case", &case, &obj(json!({ "Priority": "Critical" }))).await.unwrap();
    h.settle().await;
    assert_eq!(h.writes() - writes_after_open, 1);
    assert_eq!(
        h.journal.count(TENANT).unwrap() - journaled,
        1,
        "the Case's change alone: seam's write to the incident is not notified"
    );
    assert_eq!(sn.get("incident", &incident).await.unwrap()["priority"]["value"], "1");

    // ServiceNow's side flows back: state, assignee, resolution.
    let before = h.writes();
    sn.update("incident", &incident, &obj(json!({ "state": "2", "assigned_to": "Beth Anglin" }))).await.unwrap();
    h.settle().await;
    assert_eq!(h.writes() - before, 2, "update the Case, add one comment");
    let case_now = sf.get("Case", &case).await.unwrap();
    assert_eq!(
        (case_now["Status"].as_str(), case_now["ServiceNow_Assignee__c"].as_str()),
        (Some("Working"), Some("Beth Anglin"))
    );
    sn.update(
        "incident",
        &incident,
        &obj(
            json!({ "state": "6", "close_code": "Solved (Permanently)", "close_notes": "Rolled back gateway config." }),
        ),
    )
    .await
    .unwrap();
    h.settle().await;
    assert_eq!(sf.get("Case", &case).await.unwrap()["Status"], "Closed");
    let comments: Vec<String> = sf
        .query(&format!("SELECT CommentBody FROM CaseComment WHERE ParentId = '{case}'"))
        .await
        .unwrap()
        .iter()
        .map(|c| c["CommentBody"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(comments.len(), 2, "{comments:?}");
    assert!(comments[1].contains("Rolled back gateway config."));

    // A person edits the read-only mirror of the incident state on the Case: it is put back.
    let before = h.writes();
    sf.update("Case", &case, &obj(json!({ "Status": "New" }))).await.unwrap();
    h.settle().await;
    assert_eq!(sf.get("Case", &case).await.unwrap()["Status"], "Closed");
    assert_eq!(h.processor.counters.reverts.get(), 1);
    assert_eq!(h.writes() - before, 1, "only the revert; nothing reached ServiceNow");
    assert_eq!(sn.get("incident", &incident).await.unwrap()["state"]["value"], "6");

    // Why did the incident's urgency change? The audit answers; impact was sent twice but changed once, and says so.
    let incident_ref = RecordRef { system: System::Servicenow, object: "incident".into(), id: incident.clone() };
    let audit = h.journal.audit_of(TENANT, &incident_ref, "urgency").unwrap();
    let values: Vec<(&str, Option<Value>, Value)> =
        audit.iter().map(|a| (a.pack.as_str(), a.old.clone(), a.new.clone())).collect();
    assert_eq!(
        values,
        vec![
            ("case-incident@1.0.0", None, Value::from("2")),
            ("case-incident@1.0.0", Some(Value::from("2")), Value::from("1"))
        ]
    );
    assert_eq!(
        h.journal.audit_of(TENANT, &incident_ref, "impact").unwrap().len(),
        1,
        "High → Critical leaves impact at 1: no row"
    );
    let revert = h
        .journal
        .audit_of(TENANT, &RecordRef { system: System::Salesforce, object: "Case".into(), id: case.clone() }, "Status")
        .unwrap();
    assert!(revert.last().unwrap().reason.starts_with("revert"), "{revert:?}");
    assert_eq!(h.journal.status_count(TENANT, EventStatus::Dead).unwrap(), 0);
    h.sim.shutdown();
}

#[tokio::test]
async fn a_system_that_fails_for_a_while_converges_through_retries() {
    let h = harness("flaky").await;
    let sf = &h.people.salesforce;
    // More failures than one call's retries can absorb: the event goes back to the journal and is retried later.
    h.sim.servicenow.faults.set(seam_sim::faults::Faults {
        server_error_next: 6,
        retry_after_secs: 0,
        ..Default::default()
    });
    h.sim.salesforce.faults.set(seam_sim::faults::Faults {
        rate_limit_next: 2,
        retry_after_secs: 0,
        ..Default::default()
    });
    let case = sf.create("Case", &obj(json!({ "Subject": "flaky", "Priority": "Low" }))).await.unwrap();
    h.settle().await;
    assert!(h.processor.counters.retries.get() >= 1, "at least one journal-level retry");
    let incident =
        sf.get("Case", &case).await.unwrap()["ServiceNow_Incident__c"].as_str().expect("linked in the end").to_string();
    // Exactly one incident, despite the retries.
    let all = h
        .people
        .servicenow
        .query("incident", &seam::connectors::servicenow::Query::new().eq("correlation_id", &case).unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["sys_id"], incident.as_str());
    assert_eq!(h.journal.status_count(TENANT, EventStatus::Dead).unwrap(), 0);
    h.sim.shutdown();
}

#[tokio::test]
async fn a_forbidden_write_is_dead_lettered_and_re_driven_once_fixed() {
    // An ownership map that says ServiceNow owns impact and urgency: the pack may not write them.
    let mut strict = Ownership::default();
    strict.mirrors[0].fields.retain(|f| f != "impact" && f != "urgency");
    let h = harness_with("dlq", strict).await;
    let sf = &h.people.salesforce;
    let case = sf.create("Case", &obj(json!({ "Subject": "dead letter", "Priority": "High" }))).await.unwrap();
    h.settle().await;
    let letters = h.journal.dead_letters(Some(TENANT)).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].record.id, case);
    assert!(letters[0].error.contains("servicenow incident.impact, which servicenow owns"), "{}", letters[0].error);
    assert!(sf.get("Case", &case).await.unwrap()["ServiceNow_Incident__c"].is_null(), "nothing was written");

    // Fix the ownership map (swap in the pack with the right one), re-drive: the same event goes through.
    let current = h.processor.active.load_full();
    let fixed = ActivePack {
        manifest: current.manifest.clone(),
        linked: current.linked.clone(),
        ownership: Ownership::default(),
        hash: current.hash.clone(),
        signer: None,
    };
    h.processor.active.store(Arc::new(fixed));
    assert_eq!(h.journal.redrive(None, "test").unwrap(), 1);
    Dispatcher::new(h.processor.clone(), 1).drain().await.unwrap();
    assert!(sf.get("Case", &case).await.unwrap()["ServiceNow_Incident__c"].is_string());
    assert!(h.journal.dead_letters(Some(TENANT)).unwrap().is_empty());
    assert!(h.journal.redrive(Some(&[letters[0].id]), "test").is_err(), "no longer a dead letter");
    h.sim.shutdown();
}

#[tokio::test]
async fn catch_up_polling_recovers_notifications_that_never_arrived() {
    use seam::engine::poller::Poller;
    let h = harness("poll").await;
    let poller = Poller::new(TENANT, h.journal.clone(), h.systems.clone(), true);
    let (sf, sn) = (&h.people.salesforce, &h.people.servicenow);
    assert_eq!(poller.poll_once().await.unwrap().read, 0, "a first start reads nothing: it sets the watermarks");

    // Salesforce never announces this Case.
    h.sim.salesforce.faults.set(seam_sim::faults::Faults { drop_notifications_next: 1, ..Default::default() });
    let case = sf.create("Case", &obj(json!({ "Subject": "lost notification", "Priority": "Medium" }))).await.unwrap();
    h.settle().await;
    assert_eq!(h.journal.count(TENANT).unwrap(), 0, "nothing arrived");
    assert!(poller.poll_once().await.unwrap().new >= 1);
    h.settle().await;
    let incident =
        sf.get("Case", &case).await.unwrap()["ServiceNow_Incident__c"].as_str().expect("caught up").to_string();

    // ServiceNow never announces the resolution.
    h.sim.servicenow.faults.set(seam_sim::faults::Faults { drop_notifications_next: 1, ..Default::default() });
    sn.update("incident", &incident, &obj(json!({ "state": "2" }))).await.unwrap();
    h.settle().await;
    assert_eq!(sf.get("Case", &case).await.unwrap()["Status"], "New", "not carried across yet");
    let writes = h.writes();
    poller.poll_once().await.unwrap();
    h.settle().await;
    assert_eq!(sf.get("Case", &case).await.unwrap()["Status"], "Working");
    assert_eq!(h.writes() - writes, 1, "one write for the missed change, none for what polling re-read");

    // Nothing new: a second pass adds nothing to do.
    let before = h.writes();
    let again = poller.poll_once().await.unwrap();
    h.settle().await;
    assert_eq!(h.writes(), before, "{again:?}");
    h.sim.shutdown();
}

#[tokio::test]
async fn a_first_start_syncs_no_history_and_catches_up_from_then_on() {
    use seam::engine::poller::{Poller, SALESFORCE_CASES, SERVICENOW_INCIDENTS};
    let h = harness("first-start").await;
    let (sf, sn) = (&h.people.salesforce, &h.people.servicenow);
    // Years of Cases and incidents, made before seam was there (nothing announced them).
    h.sim.salesforce.faults.set(seam_sim::faults::Faults { drop_notifications: 1.0, ..Default::default() });
    h.sim.servicenow.faults.set(seam_sim::faults::Faults { drop_notifications: 1.0, ..Default::default() });
    for n in 0..5 {
        sf.create("Case", &obj(json!({ "Subject": format!("old Case {n}"), "Priority": "Low" }))).await.unwrap();
        sn.insert("incident", &obj(json!({ "short_description": format!("old incident {n}") }))).await.unwrap();
    }
    h.sim.salesforce.faults.set(Default::default());
    h.sim.servicenow.faults.set(Default::default());

    let poller = Poller::new(TENANT, h.journal.clone(), h.systems.clone(), true);
    let first = poller.poll_once().await.unwrap();
    h.settle().await;
    assert_eq!((first.read, h.journal.count(TENANT).unwrap(), h.writes()), (0, 0, 0), "history is not synced");
    let mark = h.journal.watermark(TENANT, SALESFORCE_CASES).unwrap().expect("the Case watermark is set");
    let newest = sf.query("SELECT SystemModstamp FROM Case ORDER BY SystemModstamp DESC LIMIT 1").await.unwrap()[0]
        ["SystemModstamp"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(mark > newest, "the watermark is past the newest Case: {mark} > {newest}");
    assert!(h.journal.watermark(TENANT, SERVICENOW_INCIDENTS).unwrap().is_some());

    // From then on, a Case whose notification is lost is caught up.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    h.sim.salesforce.faults.set(seam_sim::faults::Faults { drop_notifications_next: 1, ..Default::default() });
    let case =
        sf.create("Case", &obj(json!({ "Subject": "new after the first start", "Priority": "High" }))).await.unwrap();
    h.settle().await;
    let polled = poller.poll_once().await.unwrap();
    h.settle().await;
    assert_eq!(polled.new, 1, "{polled:?}");
    assert!(sf.get("Case", &case).await.unwrap()["ServiceNow_Incident__c"].is_string(), "the new Case is synced");
    let incidents = h
        .people
        .servicenow
        .query("incident", &seam::connectors::servicenow::Query::literal("correlation_idISNOTEMPTY"), 100)
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "and only it: the old Cases have no incidents");
    h.sim.shutdown();
}

#[tokio::test]
async fn a_change_that_failed_is_not_brought_back_by_the_catch_up_poll() {
    use seam::engine::poller::Poller;
    let h = harness("poll-dead").await;
    let poller = Poller::new(TENANT, h.journal.clone(), h.systems.clone(), true);
    let sf = &h.people.salesforce;
    let case = sf.create("Case", &obj(json!({ "Subject": "about to break", "Priority": "Low" }))).await.unwrap();
    h.settle().await;
    poller.poll_once().await.unwrap();
    h.settle().await;
    let incident = sf.get("Case", &case).await.unwrap()["ServiceNow_Incident__c"].as_str().expect("linked").to_string();

    // The incident is deleted behind seam's back: the Case's next change cannot be carried across.
    let emulator = &h.sim.servicenow;
    emulator.store.delete(emulator.name, "incident", &incident).unwrap().expect("the incident existed");
    sf.update("Case", &case, &obj(json!({ "Subject": "broken, edited" }))).await.unwrap();
    h.settle().await;
    assert_eq!(h.journal.status_count(TENANT, EventStatus::Dead).unwrap(), 1);
    // The poll reads the same version of the Case the notification brought: one event, one dead letter.
    let events = h.journal.count(TENANT).unwrap();
    poller.poll_once().await.unwrap();
    h.settle().await;
    assert_eq!(h.journal.count(TENANT).unwrap(), events, "the poll journaled a change the notification had brought");
    assert_eq!(h.journal.status_count(TENANT, EventStatus::Dead).unwrap(), 1, "one failed change, one dead letter");
    h.sim.shutdown();
}

#[tokio::test]
async fn a_burst_runs_in_parallel_keeps_each_records_order_and_shares_batched_writes() {
    const N: usize = 150;
    let h = harness("burst").await;
    // The people editing records use their own connection, so the engine's calls can be counted alone.
    let people = Arc::new(h.sim.systems(RetryPolicy::default()).await.unwrap());
    let all_cases = |priority: &'static str, cases: Option<Arc<Vec<String>>>| {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..N {
            let (people, cases) = (people.clone(), cases.clone());
            set.spawn(async move {
                match cases {
                    None => people
                        .salesforce
                        .create("Case", &obj(json!({ "Subject": format!("burst {i}"), "Priority": priority })))
                        .await
                        .unwrap(),
                    Some(cases) => {
                        people
                            .salesforce
                            .update("Case", &cases[i], &obj(json!({ "Priority": priority })))
                            .await
                            .unwrap();
                        cases[i].clone()
                    }
                }
            });
        }
        set.join_all()
    };
    let cases = Arc::new(all_cases("Low", None).await);
    h.settle().await;
    let opened = h.writes();
    assert_eq!(opened, 2 * N as u64, "one incident and one stamp per Case");
    let (sf_calls, sn_calls) = (h.systems.salesforce.http().calls(), h.systems.servicenow.http().calls());
    assert!(sf_calls < N as u64 / 2, "{N} Case stamps shared Salesforce calls: {sf_calls}");

    // Four priority changes per Case, back to back, with no time for the engine in between
    // (the ones that wait together are carried across as one write, at the latest value).
    for priority in ["Medium", "Low", "Critical", "High"] {
        all_cases(priority, Some(cases.clone())).await;
    }
    h.settle().await;
    let updates = h.writes() - opened;
    let sn_update_calls = h.systems.servicenow.http().calls() - sn_calls;
    assert!(updates >= N as u64 && updates <= 4 * N as u64, "{updates}");
    assert!(sn_update_calls * 4 < updates, "{updates} incident updates in {sn_update_calls} ServiceNow calls: batched");

    // Every Case has exactly one incident, and it ends on the last priority (High: impact 1, urgency 2).
    let incidents = people
        .servicenow
        .query("incident", &seam::connectors::servicenow::Query::literal("correlation_idSTARTSWITH500"), 10 * N)
        .await
        .unwrap();
    assert_eq!(incidents.len(), N);
    for case in cases.iter() {
        let mine: Vec<_> = incidents.iter().filter(|i| i["correlation_id"] == case.as_str()).collect();
        assert_eq!(mine.len(), 1, "Case {case}");
        assert_eq!(
            (mine[0]["impact"].as_str(), mine[0]["urgency"].as_str()),
            (Some("1"), Some("2")),
            "Case {case} ended out of order"
        );
    }
    assert_eq!(h.journal.status_count(TENANT, EventStatus::Dead).unwrap(), 0);
    assert_eq!(h.processor.counters.reverts.get(), 0, "no echo was mistaken for a person's edit");
    eprintln!(
        "{N} Cases: {} Salesforce and {} ServiceNow calls to open; {updates} incident updates in {sn_update_calls} ServiceNow calls",
        sf_calls,
        sn_calls
    );
    h.sim.shutdown();
}

#[tokio::test]
async fn a_notification_older_than_seams_own_write_is_not_taken_for_a_persons_edit() {
    use seam::engine::normalize;
    use seam::model::ChangeKind;
    let h = harness("stale").await;
    let (sf, sn) = (&h.people.salesforce, &h.people.servicenow);
    let case = sf.create("Case", &obj(json!({ "Subject": "stale", "Priority": "Low" }))).await.unwrap();
    h.settle().await;
    let stale_record = sf.get("Case", &case).await.unwrap();
    let incident = stale_record["ServiceNow_Incident__c"].as_str().unwrap().to_string();

    // seam writes Status=Working onto the Case; that write's own notification is still on its way (here: lost).
    h.sim.salesforce.faults.set(seam_sim::faults::Faults { drop_notifications_next: 1, ..Default::default() });
    sn.update("incident", &incident, &obj(json!({ "state": "2" }))).await.unwrap();
    h.settle().await;
    assert_eq!(sf.get("Case", &case).await.unwrap()["Status"], "Working");

    // A notification sent before that write arrives now: Status still "New" in it, and a Subject edit.
    let mut older = stale_record.clone();
    older.insert("Subject".into(), json!("stale, edited before seam's write"));
    let change = normalize::salesforce("late-1", ChangeKind::Updated, "Case", &older, None);
    h.journal.record_all(TENANT, vec![("late-1".to_string(), change)]).await.unwrap();
    h.settle().await;
    assert_eq!(h.processor.counters.reverts.get(), 0, "the old Status is stale, not a violation");
    assert_eq!(sf.get("Case", &case).await.unwrap()["Status"], "Working");
    assert_eq!(
        sn.get("incident", &incident).await.unwrap()["short_description"]["value"],
        "stale, edited before seam's write",
        "the real edit in it still carries across"
    );
    h.sim.shutdown();
}

/// A new Case (Subject "first", Priority Low), synced: its incident is open and linked.
async fn synced_case(h: &Harness) -> String {
    let case =
        h.people.salesforce.create("Case", &obj(json!({ "Subject": "first", "Priority": "Low" }))).await.unwrap();
    h.settle().await;
    case
}

/// The incident a synced Case names.
async fn incident_of(h: &Harness, case: &str) -> String {
    h.people.salesforce.get("Case", case).await.unwrap()["ServiceNow_Incident__c"]
        .as_str()
        .expect("the Case names its incident")
        .to_string()
}

/// Updates of one Case that wait together: `edits` as (Subject, Priority), journaled at once.
async fn journal_case_updates(h: &Harness, case: &str, prefix: &str, edits: &[(&str, &str)]) -> Vec<i64> {
    use seam::engine::normalize;
    use seam::model::ChangeKind;
    let record = h.people.salesforce.get("Case", case).await.unwrap();
    let events = edits
        .iter()
        .enumerate()
        .map(|(i, (subject, priority))| {
            let mut r = record.clone();
            r.insert("Subject".into(), json!(subject));
            r.insert("Priority".into(), json!(priority));
            let key = format!("{prefix}-{i}");
            let change = normalize::salesforce(&key, ChangeKind::Updated, "Case", &r, Some(&["Subject", "Priority"]));
            (key, change)
        })
        .collect();
    h.journal.record_all(TENANT, events).await.unwrap().into_iter().map(|r| r.id()).collect()
}

#[tokio::test]
async fn a_records_waiting_updates_are_carried_across_in_one_write() {
    let h = harness("coalesce").await;
    let sn = &h.systems.servicenow;
    let case = synced_case(&h).await;
    let incident = incident_of(&h, &case).await;
    let (writes, calls) = (h.writes(), sn.http().calls());

    // Three edits wait while the engine is busy: the Subject moves on twice, the Priority goes up and back.
    let ids = journal_case_updates(&h, &case, "wait", &[("second", "Low"), ("third", "High"), ("fourth", "Low")]).await;
    let claimed = claim(&h.journal, TENANT, &Default::default(), 16).await.unwrap();
    assert_eq!(claimed.len(), 1, "one record, one claim");
    assert_eq!((claimed[0].0.entry.id, claimed[0].0.merged_ids()), (ids[0], ids[1..].to_vec()));
    h.processor.process_due(claimed.into_iter().next().unwrap().0).await.unwrap();

    assert_eq!(h.writes() - writes, 1, "one write carries the three edits");
    assert_eq!(sn.http().calls() - calls, 1, "in one ServiceNow call");
    let inc = sn.get("incident", &incident).await.unwrap();
    assert_eq!(inc["short_description"]["value"], "fourth", "the latest Subject");
    assert_eq!(
        (inc["impact"]["value"].as_str(), inc["urgency"]["value"].as_str()),
        (Some("2"), Some("3")),
        "Priority went up and back: untouched"
    );
    let record = RecordRef { system: System::Servicenow, object: "incident".into(), id: incident.clone() };
    let audit = h.journal.audit_of(TENANT, &record, "short_description").unwrap();
    assert_eq!(
        audit.last().map(|a| (a.event_key.as_str(), a.new.clone())),
        Some(("wait-0", Value::Text("fourth".into()))),
        "audited under the first event"
    );
    assert!(h.journal.audit_of(TENANT, &record, "urgency").unwrap().iter().all(|a| a.event_key != "wait-0"));
    assert!(
        h.journal
            .entries(TENANT)
            .unwrap()
            .iter()
            .filter(|e| ids.contains(&e.id))
            .all(|e| e.status == EventStatus::Done),
        "all three closed together"
    );
    // `seam audit` tells what the write carried.
    let story = h.journal.event_story(TENANT, "wait-0").unwrap().unwrap();
    assert_eq!(story.merged, vec!["wait-1", "wait-2"]);
    assert_eq!(
        story.changed,
        vec![r#"Subject = "fourth""#],
        "news at its latest value; the Priority that came back is not news"
    );
    assert_eq!(
        h.processor.counters.processed.get() as usize,
        h.journal.entries(TENANT).unwrap().iter().filter(|e| e.status != EventStatus::Pending).count()
    );

    // The write's echo comes back and is recognised; nothing more is written.
    h.settle().await;
    assert_eq!(h.writes() - writes, 1);
    assert_eq!(h.processor.counters.reverts.get(), 0);
    h.sim.shutdown();
}

#[tokio::test]
async fn after_a_crash_a_coalesced_group_is_claimed_again_as_it_was() {
    let h = harness("coalesce-crash").await;
    let case = synced_case(&h).await;
    let ids = journal_case_updates(&h, &case, "cut", &[("a", "Low"), ("b", "Low")]).await;
    let first = claim(&h.journal, TENANT, &Default::default(), 16).await.unwrap();
    assert_eq!(first[0].0.merged_ids(), vec![ids[1]]);

    // The host dies mid-way; another edit arrives; the journal is opened again.
    let later = journal_case_updates(&h, &case, "after", &[("c", "Low")]).await;
    let journal = std::sync::Arc::new(Journal::open(&h.journal_path).unwrap());
    let again = claim(&journal, TENANT, &Default::default(), 16).await.unwrap();
    assert_eq!(again.len(), 1, "the later edit waits behind the group it did not join");
    let (due, _) = &again[0];
    assert_eq!(
        (due.entry.id, due.merged_ids(), due.attempts),
        (ids[0], vec![ids[1]], 1),
        "the same group: its progress counts the same actions"
    );
    assert!(!due.merged_ids().contains(&later[0]));
    h.sim.shutdown();
}

#[tokio::test]
async fn a_coalesced_group_is_dead_lettered_and_re_driven_together() {
    let h = harness("coalesce-dlq").await;
    let case = synced_case(&h).await;
    let ids = journal_case_updates(&h, &case, "dlq", &[("a", "Low"), ("b", "Low"), ("c", "Low")]).await;
    let claimed = claim(&h.journal, TENANT, &Default::default(), 16).await.unwrap();
    let due = &claimed[0].0;
    h.journal.dead_letter(due.entry.id, &due.merged_ids(), "refused").await.unwrap();
    let dead: Vec<i64> = h.journal.dead_letters(Some(TENANT)).unwrap().iter().map(|d| d.id).collect();
    assert_eq!(dead, ids, "the group waits in the queue together");

    // Re-driving the first re-drives the ones merged into it, and they are claimed as the same group.
    assert_eq!(h.journal.redrive(Some(&[ids[0]]), "test").unwrap(), 1);
    assert!(h.journal.dead_letters(Some(TENANT)).unwrap().is_empty());
    let again = claim(&h.journal, TENANT, &Default::default(), 16).await.unwrap();
    assert_eq!((again.len(), again[0].0.entry.id, again[0].0.merged_ids()), (1, ids[0], ids[1..].to_vec()));
    h.processor.process_due(again.into_iter().next().unwrap().0).await.unwrap();
    let inc = incident_of(&h, &case).await;
    assert_eq!(h.people.servicenow.get("incident", &inc).await.unwrap()["short_description"]["value"], "c");
    h.sim.shutdown();
}

#[tokio::test]
async fn seams_own_write_coming_back_is_settled_at_intake_unless_an_earlier_event_of_its_record_waits() {
    use seam::engine::echoes::settled_echo;
    use seam::engine::normalize;
    use seam::model::ChangeKind;
    use seam::store::journal::Outcome;
    use seam::store::Recorded;
    let h = harness("echo-at-intake").await;
    let (sf, sn) = (&h.people.salesforce, &h.people.servicenow);
    let case = synced_case(&h).await;
    let incident = incident_of(&h, &case).await;
    let record = RecordRef { system: System::Salesforce, object: "Case".into(), id: case.clone() };
    let attempts = |id: i64| -> i64 {
        let db = rusqlite::Connection::open(&h.journal_path).unwrap();
        db.query_row("SELECT attempts FROM events WHERE id = ?1", [id], |r| r.get(0)).unwrap()
    };

    // A person moves the incident and seam writes the Case; that write's Outbound
    // Message (held back here until the write's outcome is in the journal, as it
    // mostly is in a busy sync) is settled as it is journaled: an echo, never claimed.
    h.sim.salesforce.faults.set(seam_sim::faults::Faults { drop_notifications_next: 1, ..Default::default() });
    sn.update("incident", &incident, &obj(json!({ "state": "2" }))).await.unwrap();
    h.settle().await;
    let expected = h.journal.expected_echoes(TENANT, &record).unwrap();
    let fields: Vec<&str> = expected.iter().map(|(_, field, _)| field.as_str()).collect();
    assert!(fields.contains(&"Status"), "seam expects its write back: {fields:?}");
    let written = sf.get("Case", &case).await.unwrap();
    assert_eq!(written["Status"], "Working");
    let notification = normalize::salesforce("sf-echo", ChangeKind::Updated, "Case", &written, Some(&fields));
    let recorded =
        h.journal.record_settling_echoes(TENANT, vec![("sf-echo".into(), notification)], settled_echo).await.unwrap();
    let [Recorded::Echo(id)] = recorded[..] else { panic!("settled as an echo: {recorded:?}") };
    let echo = h.journal.entries(TENANT).unwrap().into_iter().find(|e| e.id == id).unwrap();
    assert_eq!((echo.status.as_str(), attempts(id)), ("echo", 0), "stored as an echo, never claimed");
    let left = h.journal.expected_echoes(TENANT, &record).unwrap();
    assert!(
        left.iter().all(|(_, field, _)| field != "Status"),
        "the expected echo is consumed: {expected:?} -> {left:?}"
    );
    assert_eq!(h.journal.status_count(TENANT, EventStatus::Pending).unwrap(), 0, "nothing queued");

    // seam has written a Case Status whose echo is on its way, and a person's
    // Subject change to the same Case, sent before it, still waits. The echo is
    // held behind that event (the processor takes them in order), though on its
    // own it would have been settled.
    let now = sf.get("Case", &case).await.unwrap();
    let written = Outcome {
        expect: vec![(record.clone(), "Status".into(), Value::Text("On Hold".into()))],
        ..Outcome::default()
    };
    h.journal.record_outcome(TENANT, "seam-write", "test", written).await.unwrap();
    let mut person = now.clone();
    person.insert("Subject".into(), json!("third"));
    h.journal
        .record_all(
            TENANT,
            vec![(
                "person-1".into(),
                normalize::salesforce("person-1", ChangeKind::Updated, "Case", &person, Some(&["Subject"])),
            )],
        )
        .await
        .unwrap();
    // Its notification shows the record after both: the person's Subject, seam's Status.
    let mut ours = person.clone();
    ours.insert("Status".into(), json!("On Hold"));
    let change = normalize::salesforce("echo-1", ChangeKind::Updated, "Case", &ours, Some(&["Status"]));
    let shadow = h.journal.shadow(TENANT, &record).unwrap();
    let alone =
        settled_echo(&change, &|_: &[&str]| Ok(shadow.clone()), &h.journal.expected_echoes(TENANT, &record).unwrap())
            .unwrap();
    assert!(alone.is_some(), "on its own, the change is nothing but seam's echo");
    let recorded =
        h.journal.record_settling_echoes(TENANT, vec![("echo-1".into(), change)], settled_echo).await.unwrap();
    assert!(
        matches!(recorded[..], [Recorded::New(_)]),
        "queued behind the waiting event, not settled ahead of it: {recorded:?}"
    );

    h.settle().await;
    assert_eq!(
        sn.get("incident", &incident).await.unwrap()["short_description"]["value"],
        "third",
        "the person's edit carried across"
    );
    assert!(h.journal.expected_echoes(TENANT, &record).unwrap().iter().all(|(_, field, _)| field != "Status"));
    assert_eq!(
        h.processor.counters.reverts.get(),
        0,
        "the echo, processed after the person's edit, was not taken for a person's edit of a mirrored field"
    );
    h.sim.shutdown();
}

/// The dead letters that are identity conflicts, and the audit's word on `record`'s link field.
fn conflicts(h: &Harness, record: &RecordRef, field: &str) -> (usize, Vec<String>) {
    let letters = h
        .journal
        .dead_letters(Some(TENANT))
        .unwrap()
        .into_iter()
        .filter(|l| l.error.starts_with("identity conflict") && l.record == *record)
        .count();
    let audit = h
        .journal
        .audit_of(TENANT, record, field)
        .unwrap()
        .into_iter()
        .map(|a| a.reason)
        .filter(|r| r.starts_with("identity conflict"))
        .collect();
    (letters, audit)
}

#[tokio::test]
async fn an_incident_that_names_a_linked_case_takes_nothing_over() {
    let h = harness("hijack-from-servicenow").await;
    let case = synced_case(&h).await;
    let status = h.people.salesforce.get("Case", &case).await.unwrap()["Status"].clone();
    let writes = h.writes();
    // A ServiceNow user opens an incident that claims the Case, and resolves it with text for the customer.
    let rogue = h.people.servicenow.insert("incident", &obj(json!({ "short_description": "mine now", "correlation_id": case, "state": "6", "close_code": "Solved (Permanently)", "close_notes": "ATTACKER TEXT" }))).await.unwrap();
    let rogue = RecordRef {
        system: System::Servicenow,
        object: "incident".into(),
        id: rogue["sys_id"].as_str().unwrap().into(),
    };
    h.settle().await;
    assert_eq!(h.writes(), writes, "nothing was written across");
    assert_eq!(h.people.salesforce.get("Case", &case).await.unwrap()["Status"], status);
    let comments = h
        .people
        .salesforce
        .query(&format!("SELECT CommentBody FROM CaseComment WHERE ParentId = '{case}'"))
        .await
        .unwrap();
    assert!(
        comments.iter().all(|c| !c["CommentBody"].as_str().unwrap_or_default().contains("ATTACKER")),
        "{comments:?}"
    );
    let (letters, audit) = conflicts(&h, &rogue, "correlation_id");
    assert_eq!((letters, audit.len()), (1, 1), "the conflict is dead-lettered and audited: {audit:?}");
    assert!(audit[0].contains("but seam linked"), "{audit:?}");
    assert_eq!(h.processor.counters.identity_conflicts.get(), 1);
    h.sim.shutdown();
}

#[tokio::test]
async fn a_case_that_names_another_customers_incident_takes_nothing_over() {
    let h = harness("hijack-from-salesforce").await;
    let victim = synced_case(&h).await;
    let incident = incident_of(&h, &victim).await;
    let before = h.people.servicenow.get("incident", &incident).await.unwrap();
    let writes = h.writes();
    let rogue = h.people.salesforce.create("Case", &obj(json!({ "Subject": "overwritten", "Description": "ATTACKER TEXT", "Priority": "High", "ServiceNow_Incident__c": incident }))).await.unwrap();
    h.settle().await;
    assert_eq!(h.writes(), writes, "nothing was written across, not even a new incident");
    let after = h.people.servicenow.get("incident", &incident).await.unwrap();
    for field in ["short_description", "description", "impact", "urgency", "correlation_id"] {
        assert_eq!(after[field], before[field], "{field} of the victim's incident");
    }
    let rogue = RecordRef { system: System::Salesforce, object: "Case".into(), id: rogue };
    let (letters, audit) = conflicts(&h, &rogue, "ServiceNow_Incident__c");
    assert_eq!((letters, audit.len()), (1, 1), "{audit:?}");
    h.sim.shutdown();
}

#[tokio::test]
async fn an_edit_of_the_link_field_is_put_back_and_the_rest_goes_to_the_real_partner() {
    let h = harness("hijack-by-edit").await;
    let (mine, other) = (synced_case(&h).await, synced_case(&h).await);
    let (my_incident, other_incident) = (incident_of(&h, &mine).await, incident_of(&h, &other).await);
    let theirs = h.people.servicenow.get("incident", &other_incident).await.unwrap()["short_description"].clone();
    h.people
        .salesforce
        .update("Case", &mine, &obj(json!({ "ServiceNow_Incident__c": other_incident, "Subject": "moved" })))
        .await
        .unwrap();
    h.settle().await;
    assert_eq!(h.people.servicenow.get("incident", &my_incident).await.unwrap()["short_description"]["value"], "moved");
    assert_eq!(
        h.people.servicenow.get("incident", &other_incident).await.unwrap()["short_description"],
        theirs,
        "the other incident is untouched"
    );
    assert_eq!(incident_of(&h, &mine).await, my_incident, "the link field was put back");
    h.sim.shutdown();
}

#[tokio::test]
async fn an_operator_links_a_conflicting_pair_and_its_event_goes_through() {
    let h = harness("operator-link").await;
    // An incident a person opened in ServiceNow, and a Case that names it: the incident does not name the Case.
    let incident =
        h.people.servicenow.insert("incident", &obj(json!({ "short_description": "opened by hand" }))).await.unwrap()
            ["sys_id"]
            .as_str()
            .unwrap()
            .to_string();
    h.settle().await;
    let writes = h.writes();
    let case = h
        .people
        .salesforce
        .create(
            "Case",
            &obj(json!({ "Subject": "the same outage", "Priority": "High", "ServiceNow_Incident__c": incident })),
        )
        .await
        .unwrap();
    h.settle().await;
    assert_eq!(h.writes(), writes);
    let case_ref = RecordRef { system: System::Salesforce, object: "Case".into(), id: case.clone() };
    assert_eq!(conflicts(&h, &case_ref, "ServiceNow_Incident__c").0, 1);

    // The operator looks, and links them: both link fields are written, and the conflict is re-driven.
    seam::engine::identity::link_by_operator(&h.journal, TENANT, &h.systems, &case, &incident, "operator test")
        .await
        .unwrap();
    assert_eq!(h.journal.link_of(TENANT, &case_ref).unwrap(), Some(incident.clone()));
    assert_eq!(h.people.servicenow.get("incident", &incident).await.unwrap()["correlation_id"]["value"], case.as_str());
    let again = seam::engine::identity::link_by_operator(
        &h.journal,
        TENANT,
        &h.systems,
        &case,
        &"f".repeat(32),
        "operator test",
    )
    .await
    .unwrap_err();
    assert!(again.to_string().contains("is linked with"), "{again}");
    let dead: Vec<i64> = h.journal.dead_letters(Some(TENANT)).unwrap().iter().map(|d| d.id).collect();
    h.journal.redrive(Some(&dead), "test").unwrap();
    h.settle().await;
    assert_eq!(
        h.people.servicenow.get("incident", &incident).await.unwrap()["short_description"]["value"],
        "the same outage"
    );
    assert!(h.journal.dead_letters(Some(TENANT)).unwrap().is_empty());
    let audit = h
        .journal
        .audit_of(
            TENANT,
            &RecordRef { system: System::Servicenow, object: "incident".into(), id: incident },
            "correlation_id",
        )
        .unwrap();
    assert!(
        audit.iter().any(|a| a.reason == "linked by operator test"),
        "{:?}",
        audit.iter().map(|a| &a.reason).collect::<Vec<_>>()
    );
    h.sim.shutdown();
}

#[tokio::test]
async fn a_pair_whose_records_name_each_other_is_linked_when_the_journal_does_not_know_it() {
    let h = harness("rebuild").await;
    // A pair made before this journal: the records name each other, the journal has no link.
    // The org sends nothing meanwhile, and ServiceNow's push rule skips the integration user's writes.
    h.sim.salesforce.notifier.as_ref().unwrap().set_target(None).unwrap();
    let case =
        h.people.salesforce.create("Case", &obj(json!({ "Subject": "before seam", "Priority": "Low" }))).await.unwrap();
    let incident = h
        .systems
        .servicenow
        .insert("incident", &obj(json!({ "short_description": "before seam", "correlation_id": case })))
        .await
        .unwrap()["sys_id"]
        .as_str()
        .unwrap()
        .to_string();
    h.people.salesforce.update("Case", &case, &obj(json!({ "ServiceNow_Incident__c": incident }))).await.unwrap();
    journal_case_updates(&h, &case, "rebuild", &[("after the rebuild", "Low")]).await;
    h.settle().await;
    assert_eq!(
        h.people.servicenow.get("incident", &incident).await.unwrap()["short_description"]["value"],
        "after the rebuild"
    );
    let case_ref = RecordRef { system: System::Salesforce, object: "Case".into(), id: case };
    assert_eq!(h.journal.link_of(TENANT, &case_ref).unwrap(), Some(incident));
    assert!(h.journal.dead_letters(Some(TENANT)).unwrap().is_empty());
    h.sim.shutdown();
}

#[tokio::test]
async fn a_bulk_load_stamped_in_one_second_is_polled_page_by_page() {
    use seam::engine::poller::Poller;
    const N: usize = 1000;
    let h = harness("bulk-load").await;
    // Only the poller brings these: the org sends nothing, and the integration user's incidents are not pushed.
    h.sim.salesforce.notifier.as_ref().unwrap().set_target(None).unwrap();
    let case =
        h.people.salesforce.create("Case", &obj(json!({ "Subject": "template", "Priority": "Low" }))).await.unwrap();
    let incident =
        h.systems.servicenow.insert("incident", &obj(json!({ "short_description": "template" }))).await.unwrap()
            ["sys_id"]
            .as_str()
            .unwrap()
            .to_string();
    let poller = Poller::new(TENANT, h.journal.clone(), h.systems.clone(), true);
    poller.poll_once().await.unwrap();
    assert_eq!(h.journal.count(TENANT).unwrap(), 0, "a first start reads no history");

    // A bulk load: N Cases and N incidents, each side all stamped in one second.
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    let (sf_stamp, sn_stamp) =
        (later.format("%Y-%m-%dT%H:%M:%S.000+0000").to_string(), later.format("%Y-%m-%d %H:%M:%S").to_string());
    let (sf_store, sn_store) = (&h.sim.salesforce.store, &h.sim.servicenow.store);
    let case_template = sf_store.get("salesforce", "Case", &case).unwrap();
    let incident_template = sn_store.get("servicenow", "incident", &incident).unwrap();
    for n in 0..N {
        let id = format!("500{n:012}BLK");
        let mut c = case_template.clone();
        c.insert("Id".into(), json!(id));
        for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            c.insert(f.into(), json!(sf_stamp));
        }
        sf_store.put("salesforce", "Case", &id, c).unwrap();
        let sys_id = format!("{n:032x}");
        let mut i = incident_template.clone();
        i.insert("sys_id".into(), json!(sys_id));
        i.insert("sys_updated_on".into(), json!(sn_stamp));
        i.insert("number".into(), json!(format!("INC9{n:06}")));
        sn_store.put("servicenow", "incident", &sys_id, i).unwrap();
    }

    // Each pass reads a page of each: five pages each, then nothing.
    let mut passes = Vec::new();
    loop {
        let polled = poller.poll_once().await.unwrap();
        passes.push((polled.read, polled.new));
        if polled.read == 0 || passes.len() > 8 {
            break;
        }
    }
    assert_eq!(
        passes,
        vec![(400, 400); 5].into_iter().chain([(0, 0)]).collect::<Vec<_>>(),
        "pages of 200 per system, each new"
    );
    assert_eq!(h.journal.count(TENANT).unwrap(), 2 * N as u64);

    // A gap's catch-up reads the whole stamp again in one call, page after page, and stops.
    poller.owe_cases(Some(later.timestamp_millis())).await.unwrap();
    assert_eq!(poller.pay_cases().await.unwrap(), Some(0), "every Case read again, none new");
    h.sim.shutdown();
}

#[tokio::test]
async fn record_text_cannot_widen_a_query_or_leave_its_url_path() {
    use seam::runtime::{LookupFailure, RecordSource};
    let h = harness("injection").await;
    let (sf, sn) = (&h.people.salesforce, &h.people.servicenow);
    // Another customer's company, and an Account whose external id tries to match every company.
    sn.insert("core_company", &obj(json!({ "name": "Victim Corp", "u_sf_external_id": "VICTIM-1" }))).await.unwrap();
    let account = sf
        .create("Account", &obj(json!({ "Name": "Mallory", "External_Id__c": "X^NQsys_idISNOTEMPTY" })))
        .await
        .unwrap();
    let case = sf
        .create("Case", &obj(json!({ "Subject": "attach me anywhere", "Priority": "Low", "AccountId": account })))
        .await
        .unwrap();
    h.settle().await;
    let incident = incident_of(&h, &case).await;
    assert_eq!(
        sn.get("incident", &incident).await.unwrap()["company"]["value"],
        "",
        "no company matched the injected key"
    );

    // A pack's find with the same value finds nothing; with a quote, SOQL finds nothing either.
    let found = h
        .systems
        .find(System::Servicenow, "core_company", "u_sf_external_id", "X^NQsys_idISNOTEMPTY", &["name".into()])
        .await
        .unwrap();
    assert!(found.is_none(), "{found:?}");
    let found = h
        .systems
        .find(System::Salesforce, "Account", "External_Id__c", "' OR Name != '", &["Name".into()])
        .await
        .unwrap();
    assert!(found.is_none(), "{found:?}");
    // An id that climbs out of its object's path reads nothing, and says why.
    let climb = RecordRef { system: System::Salesforce, object: "Case".into(), id: format!("../Account/{account}") };
    assert!(
        matches!(h.systems.get(&climb, &["Name".into()]).await, Err(LookupFailure::NotGranted(why)) if why.contains("not a Salesforce record id"))
    );
    let climb = RecordRef { system: System::Servicenow, object: "incident".into(), id: "../sys_user".into() };
    assert!(
        matches!(h.systems.get(&climb, &["name".into()]).await, Err(LookupFailure::NotGranted(why)) if why.contains("sys_id"))
    );
    h.sim.shutdown();
}

/// ServiceNow is down for 30 minutes, played on the journal's clock in seconds: the new Case
/// that needs it waits, retried with backoff, and gets its incident once the instance is back,
/// while an incident change that needs only Salesforce goes through during the outage. A Case
/// whose outage outlasts the retry window (an hour here) is dead-lettered, saying for how long.
#[tokio::test]
async fn an_outage_is_waited_out_for_the_retry_window_without_holding_up_other_records() {
    let h = harness_retrying("outage", Ownership::default(), Retrying::for_hours(1)).await;
    let (sf, sn) = (&h.people.salesforce, &h.people.servicenow);
    let clock = &h.journal.clock;
    let drain = || async { Dispatcher::new(h.processor.clone(), 16).drain().await.unwrap() };
    // Deliveries still on their way from the emulators reach intake (in real time).
    let delivered = || async {
        let started = Instant::now();
        while h.sim.salesforce.notifier.as_ref().unwrap().stats().pending
            + h.sim.servicenow.notifier.as_ref().unwrap().stats().pending
            > 0
        {
            assert!(started.elapsed() < Duration::from_secs(10), "notifications stuck");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let case_a = sf.create("Case", &obj(json!({ "Subject": "before the outage", "Priority": "Low" }))).await.unwrap();
    h.settle().await;
    let incident_a = sf.get("Case", &case_a).await.unwrap()["ServiceNow_Incident__c"].as_str().unwrap().to_string();

    // An engineer picks incident A up just as the instance goes down.
    sn.update("incident", &incident_a, &obj(json!({ "state": "2" }))).await.unwrap();
    h.sim.servicenow.faults.set(seam_sim::faults::Faults {
        server_error: 1.0,
        retry_after_secs: 0,
        ..Default::default()
    });
    let case_b = sf.create("Case", &obj(json!({ "Subject": "during the outage", "Priority": "High" }))).await.unwrap();
    delivered().await;
    drain().await;
    assert_eq!(
        sf.get("Case", &case_a).await.unwrap()["Status"],
        "Working",
        "A's change needs only Salesforce: not held up"
    );
    for _ in 0..6 {
        clock.advance(Duration::from_secs(5 * 60));
        drain().await;
        assert_eq!(h.journal.status_count(TENANT, EventStatus::Dead).unwrap(), 0, "30 minutes into a 1-hour window");
    }
    let retries = h.processor.counters.retries.get();
    assert!((3..=30).contains(&retries), "backoff spaces the retries: {retries} in 30 minutes");
    assert!(sf.get("Case", &case_b).await.unwrap()["ServiceNow_Incident__c"].is_null());

    // The instance is back: within the longest backoff (10 minutes), B gets its incident.
    h.sim.servicenow.faults.set(Default::default());
    clock.advance(Duration::from_secs(10 * 60));
    drain().await;
    assert!(
        sf.get("Case", &case_b).await.unwrap()["ServiceNow_Incident__c"].is_string(),
        "B is linked after the outage"
    );

    // Down again, for longer than the window.
    h.sim.servicenow.faults.set(seam_sim::faults::Faults {
        server_error: 1.0,
        retry_after_secs: 0,
        ..Default::default()
    });
    let case_c = sf.create("Case", &obj(json!({ "Subject": "a long outage", "Priority": "High" }))).await.unwrap();
    delivered().await;
    drain().await;
    for _ in 0..7 {
        clock.advance(Duration::from_secs(10 * 60));
        drain().await;
    }
    clock.advance(Duration::from_secs(10 * 60));
    drain().await;
    let letters = h.journal.dead_letters(Some(TENANT)).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].record.id, case_c);
    assert!(letters[0].error.starts_with("gave up after 1h"), "{}", letters[0].error);
    h.sim.servicenow.faults.set(Default::default());
    h.sim.shutdown();
}
