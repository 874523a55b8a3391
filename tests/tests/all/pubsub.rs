//! Salesforce's changes over the Pub/Sub API, end to end on the emulators:
//! the org's change events → the subscriber → journal → processor → writes.
//! The org sends no Outbound Messages here; ServiceNow still pushes.

use arc_swap::ArcSwap;
use seam::cli::simulated::Simulated;
use seam::config::intake::PubSubSettings;
use seam::connectors::RetryPolicy;
use seam::engine::apply::Systems;
use seam::engine::dispatcher::Dispatcher;
use seam::engine::ownership::Ownership;
use seam::engine::poller::Poller;
use seam::engine::processor::Processor;
use seam::intake::salesforce::pubsub::{self as events, Subscriber};
use seam::packs::ActivePack;
use seam::runtime::{Grants, Runtime, RuntimeConfig};
use seam::store::{EventStatus, Journal};
use seam_sim::salesforce::change_events::BusSettings;
use seam_sim::Sim;
use seam_tests::{pack_bytes, rig, Rig, CASE_INCIDENT, TENANT};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

struct Harness {
    sim: Sim,
    journal: Arc<Journal>,
    processor: Arc<Processor>,
    systems: Arc<Systems>,
    /// The people's connections: their changes are the ones seam syncs.
    people: Arc<Systems>,
    poller: Arc<Poller>,
}

async fn harness(name: &str) -> Harness {
    let Rig { sim, journal, counters, .. } = rig(&format!("pubsub-{name}"), 1 << 20).await;
    // The org publishes change events and sends no Outbound Messages.
    sim.salesforce.notifier.as_ref().unwrap().set_target(None).unwrap();
    // Keepalives soon, so a subscription's stored position passes other objects' events quickly.
    sim.salesforce
        .change_events
        .as_ref()
        .unwrap()
        .set_settings(BusSettings { keepalive_seconds: 0.2, ..Default::default() })
        .unwrap();
    let policy = RetryPolicy { attempts: 4, base: Duration::from_millis(20), max: Duration::from_millis(200) };
    let mut systems = sim.seam_systems(policy.clone()).await.unwrap();
    systems.salesforce_echoes = false;
    let systems = Arc::new(systems);
    let people = Arc::new(sim.systems(policy).await.unwrap());
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let linked = runtime.load("case-incident", "1.0.0", &pack_bytes(CASE_INCIDENT), Grants::default()).await.unwrap();
    let active = Arc::new(ArcSwap::from_pointee(ActivePack::of(linked, Ownership::default())));
    let processor = Arc::new(Processor {
        tenant: TENANT.into(),
        journal: journal.clone(),
        systems: systems.clone(),
        active,
        workflows: Default::default(),
        counters,
        retrying: Default::default(),
    });
    let poller = Arc::new(Poller::new(TENANT, journal.clone(), systems.clone(), false));
    Harness { sim, journal, processor, systems, people, poller }
}

impl Harness {
    fn subscriber(&self) -> Arc<Subscriber> {
        let settings = PubSubSettings { url: self.sim.pubsub_url.clone(), platform_event: None };
        let org = seam_sim::salesforce::ORG_ID;
        Arc::new(
            Subscriber::new(
                TENANT,
                self.journal.clone(),
                self.systems.clone(),
                self.poller.clone(),
                self.processor.counters.clone(),
                org,
                &settings,
                Some(&self.sim.ca_pem),
            )
            .unwrap(),
        )
    }

    /// Subscribe to Case's change events; the tasks stop when the handles are aborted.
    fn subscribe(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.subscriber().start(events::topics([], None))
    }

    /// seam stops: the subscription's tasks are cancelled, and gone when this returns.
    async fn stop(subscription: Vec<tokio::task::JoinHandle<()>>) {
        subscription.iter().for_each(|t| t.abort());
        for task in subscription {
            let _ = task.await;
        }
    }

    /// Until the first subscription stands: its catch-up poll of what came before is done, and
    /// its first keepalive stored a position. A Case made earlier would come by the poll too.
    async fn subscribed(&self) {
        let started = Instant::now();
        while seam_tests::stored_replay(&self.journal, TENANT, "/data/CaseChangeEvent").is_none()
            || self.journal.watermark(TENANT, seam::engine::poller::SALESFORCE_CASES_OWED).unwrap().is_some()
        {
            assert!(started.elapsed() < Duration::from_secs(10), "the subscription did not stand");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A Case synced over a subscription, which then stops; while seam is down, a Case titled
    /// `subject` is made and the org lets its event expire. Returns that Case.
    async fn down_past_retention(&self, subject: &str) -> String {
        let subscription = self.subscribe();
        self.subscribed().await;
        let sf = &self.people.salesforce;
        sf.create("Case", &obj(json!({ "Subject": "seen" }))).await.unwrap();
        self.settle().await;
        Self::stop(subscription).await;
        let bus = self.sim.salesforce.change_events.as_ref().unwrap();
        let missed = sf.create("Case", &obj(json!({ "Subject": subject }))).await.unwrap();
        bus.set_settings(BusSettings { retention_seconds: 0.1, keepalive_seconds: 0.2 }).unwrap();
        // The org's retention job runs until the event is 0.1 s old, and gone.
        let started = Instant::now();
        while bus.purge().map(|_| bus.horizon()).unwrap() < bus.tip() {
            assert!(started.elapsed() < Duration::from_secs(5), "the org kept its events past their retention");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bus.set_settings(BusSettings { keepalive_seconds: 0.2, ..Default::default() }).unwrap();
        missed
    }

    /// The bus position the Case subscription has stored.
    fn stored(&self) -> u64 {
        seam_tests::stored_replay(&self.journal, TENANT, "/data/CaseChangeEvent").unwrap_or(0)
    }

    /// Until the subscription has stored everything the org published, ServiceNow has sent
    /// everything, and the journal has nothing left to do.
    async fn settle(&self) {
        let started = Instant::now();
        let mut quiet_since = Instant::now();
        let bus = self.sim.salesforce.change_events.as_ref().unwrap();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not settled: stored {} of {}",
                self.stored(),
                bus.tip()
            );
            Dispatcher::new(self.processor.clone(), 16).drain().await.unwrap();
            let busy = self.stored() < bus.tip()
                || self.sim.servicenow.notifier.as_ref().unwrap().stats().pending > 0
                || self.journal.status_count(TENANT, EventStatus::Pending).unwrap() > 0;
            if busy {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() > Duration::from_millis(300) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn incident_of(&self, case: &str) -> Option<String> {
        self.people.salesforce.get("Case", case).await.unwrap()["ServiceNow_Incident__c"].as_str().map(str::to_string)
    }

    fn salesforce_events(&self) -> usize {
        self.journal
            .received_by_system(TENANT)
            .unwrap()
            .into_iter()
            .filter(|(s, _)| s == "salesforce")
            .map(|(_, n)| n as usize)
            .sum()
    }
}

#[tokio::test]
async fn cases_sync_over_pubsub_and_seams_own_writes_are_dropped_at_the_source() {
    let h = harness("sync").await;
    let _subscription = h.subscribe();
    h.subscribed().await;
    let sf = &h.people.salesforce;
    let case = sf.create("Case", &obj(json!({ "Subject": "Checkout down", "Priority": "High" }))).await.unwrap();
    h.settle().await;
    let incident = h.incident_of(&case).await.expect("the Case got its incident");
    // seam wrote the link back to the Case; that write's event names seam's client and is dropped.
    assert_eq!(
        h.salesforce_events(),
        1,
        "only Jane's change is journaled: {:?}",
        h.journal
            .entries(TENANT)
            .unwrap()
            .iter()
            .map(|e| (
                e.event_key.clone(),
                e.change.source.object.clone(),
                e.change.origin_user.clone(),
                e.change.changed.iter().map(|f| f.name.clone()).collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>()
    );
    assert!(h.processor.counters.echoes.get() >= 1, "seam's own write was counted as an echo");

    sf.update("Case", &case, &obj(json!({ "Priority": "Critical" }))).await.unwrap();
    h.settle().await;
    let urgency = h.people.servicenow.get("incident", &incident).await.unwrap()["urgency"]["value"].clone();
    assert_eq!(urgency, "1", "the update came over the stream");
    assert_eq!(h.salesforce_events(), 2);
    assert!(h.journal.dead_letters(Some(TENANT)).unwrap().is_empty());
    h.sim.shutdown();
}

#[tokio::test]
async fn one_event_for_several_records_is_one_change_each() {
    let h = harness("multi").await;
    let _subscription = h.subscribe();
    h.subscribed().await;
    let sf = &h.people.salesforce;
    let mut cases = Vec::new();
    for n in 0..3 {
        cases.push(
            sf.create("Case", &obj(json!({ "Subject": format!("batch {n}"), "Priority": "Low" }))).await.unwrap(),
        );
    }
    h.settle().await;
    // seam's link stamps on the three are events of their own: all published before the count starts.
    let started = std::time::Instant::now();
    for case in &cases {
        while h.incident_of(case).await.is_none() {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "{case} was not linked");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let before = h.sim.salesforce.change_events.as_ref().unwrap().tip();
    // One collection call changes the three alike: Salesforce publishes one event naming all three.
    let session = sf.session().await.unwrap();
    let http = seam::connectors::tls::http_client(Some(&h.sim.ca_pem)).unwrap().build().unwrap();
    use seam::secrets::ExposeSecret;
    let records: Vec<Value> =
        cases.iter().map(|id| json!({ "attributes": { "type": "Case" }, "Id": id, "Priority": "High" })).collect();
    let url = format!("{}/services/data/v59.0/composite/sobjects", session.instance_url.clone().unwrap());
    let response = http
        .patch(url)
        .bearer_auth(session.access.expose_secret())
        .json(&json!({ "allOrNone": true, "records": records }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    h.settle().await;
    assert_eq!(h.sim.salesforce.change_events.as_ref().unwrap().tip(), before + 1, "one event");
    for case in &cases {
        let incident = h.incident_of(case).await.expect("linked");
        assert_eq!(
            h.people.servicenow.get("incident", &incident).await.unwrap()["urgency"]["value"],
            "2",
            "each record's change was carried across"
        );
    }
    h.sim.shutdown();
}

#[tokio::test]
async fn a_restart_resumes_after_the_stored_replay_id_exactly_once() {
    let h = harness("restart").await;
    let subscription = h.subscribe();
    h.subscribed().await;
    let sf = &h.people.salesforce;
    let first = sf.create("Case", &obj(json!({ "Subject": "before the crash" }))).await.unwrap();
    h.settle().await;
    Harness::stop(subscription).await;

    // While seam is down: a new Case, and a change to the first.
    let second = sf.create("Case", &obj(json!({ "Subject": "while seam was down" }))).await.unwrap();
    sf.update("Case", &first, &obj(json!({ "Subject": "edited while seam was down" }))).await.unwrap();
    let _again = h.subscribe();
    h.settle().await;
    assert!(h.incident_of(&second).await.is_some(), "the Case made during the downtime was synced");
    let incident = h.incident_of(&first).await.unwrap();
    assert_eq!(
        h.people.servicenow.get("incident", &incident).await.unwrap()["short_description"]["value"],
        "edited while seam was down"
    );
    assert_eq!(h.salesforce_events(), 3, "three changes, each journaled once");
    let incidents = h
        .people
        .servicenow
        .query("incident", &seam::connectors::servicenow::Query::literal("correlation_idISNOTEMPTY"), 100)
        .await
        .unwrap();
    assert_eq!(incidents.len(), 2, "no Case got a second incident");
    h.sim.shutdown();
}

#[tokio::test]
async fn a_replay_id_past_retention_is_a_gap_a_catch_up_poll_covers() {
    let h = harness("gap").await;
    let missed = h.down_past_retention("its event expired").await;
    let sf = &h.people.salesforce;

    let _again = h.subscribe();
    h.settle().await;
    assert_eq!(h.processor.counters.stream_gaps.get(), 1, "the gap was counted");
    assert!(h.incident_of(&missed).await.is_some(), "the catch-up poll brought the Case whose event had expired");
    // And the new subscription, at the tip, goes on.
    let after = sf.create("Case", &obj(json!({ "Subject": "after the gap" }))).await.unwrap();
    h.settle().await;
    assert!(h.incident_of(&after).await.is_some());
    assert_eq!(
        h.people
            .servicenow
            .query("incident", &seam::connectors::servicenow::Query::literal("correlation_idISNOTEMPTY"), 100)
            .await
            .unwrap()
            .len(),
        3
    );
    h.sim.shutdown();
}

#[tokio::test]
async fn gap_events_are_read_back_through_rest() {
    let h = harness("gap-events").await;
    let _subscription = h.subscribe();
    h.subscribed().await;
    let sf = &h.people.salesforce;
    let case = sf.create("Case", &obj(json!({ "Subject": "gap me", "Priority": "Low" }))).await.unwrap();
    h.settle().await;
    let incident = h.incident_of(&case).await.unwrap();
    // The platform cannot build the next event: it publishes GAP_UPDATE, the header alone.
    h.sim.salesforce.faults.set(seam_sim::faults::Faults { gap_events_next: 1, ..Default::default() });
    sf.update("Case", &case, &obj(json!({ "Priority": "Critical" }))).await.unwrap();
    h.settle().await;
    assert_eq!(
        h.people.servicenow.get("incident", &incident).await.unwrap()["urgency"]["value"],
        "1",
        "the record was read back and its change carried across"
    );
    h.sim.shutdown();
}

#[tokio::test]
async fn a_gap_whose_catch_up_poll_fails_stays_owed_across_a_restart() {
    use seam::engine::poller::SALESFORCE_CASES_OWED;
    let h = harness("gap-owed").await;
    let missed = h.down_past_retention("its event expired, and the first poll failed").await;
    let bus = h.sim.salesforce.change_events.as_ref().unwrap();
    // When seam comes back, the org's REST API fails.
    h.sim.salesforce.faults.set(seam_sim::faults::Faults { server_error: 1.0, ..Default::default() });
    let failing = h.subscribe();
    // The new subscription stands at the tip, and its keepalives store its position; the
    // catch-up poll fails (after the connector's own retries), and stays owed.
    let started = Instant::now();
    while h.processor.counters.stream_gaps.get() == 0
        || h.stored() < bus.tip()
        || h.processor.counters.catch_up_failures.get() == 0
    {
        assert!(started.elapsed() < Duration::from_secs(10), "the gap was not found, or its poll did not fail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        h.journal.watermark(TENANT, SALESFORCE_CASES_OWED).unwrap().is_some(),
        "the failed catch-up poll is still owed"
    );
    Harness::stop(failing).await;

    // After a restart, with the org answering again, the debt is paid.
    h.sim.salesforce.faults.set(Default::default());
    let _again = h.subscribe();
    let started = Instant::now();
    while h.journal.watermark(TENANT, SALESFORCE_CASES_OWED).unwrap().is_some() {
        assert!(started.elapsed() < Duration::from_secs(10), "the owed poll was not paid");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.settle().await;
    assert!(h.incident_of(&missed).await.is_some(), "the owed poll brought the Case whose event had expired");
    assert_eq!(h.processor.counters.stream_gaps.get(), 1, "one gap, counted once");
    assert_eq!(
        h.people
            .servicenow
            .query("incident", &seam::connectors::servicenow::Query::literal("correlation_idISNOTEMPTY"), 100)
            .await
            .unwrap()
            .len(),
        2
    );
    h.sim.shutdown();
}
