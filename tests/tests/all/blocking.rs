//! Serving keeps SQLite, and its disk syncs, off the tokio worker threads: a
//! workload through everything `seam serve` runs (intake of both systems'
//! notifications or the Pub/Sub stream, the processors with a workflow, reverts,
//! deletes, retries' bookkeeping, a hot swap and a rollback, the dashboard, the
//! metrics, a reconciliation pass, the background prune) leaves the journal's
//! count of connections handed out on a worker at zero, and `/metrics` says so.

use seam::cli::simulated::Simulated;
use seam::config::intake::Source;
use seam::connectors::RetryPolicy;
use seam::engine::reconcile::Reconciler;
use seam_tests::{engine_on_sim_events, seampack, CASE_INCIDENT, SEV1_BRIDGE};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

async fn serve_a_workload(name: &str, events: Source) {
    let mapping = seampack(CASE_INCIDENT, "case-incident", None);
    let (sim, engine, config) =
        engine_on_sim_events(name, mapping, &[seampack(SEV1_BRIDGE, "sev1-bridge", None)], events, |c| {
            // A prune every 300 ms, so several run during the workload.
            c.retention.every_minutes = 0.005;
        })
        .await;
    let people = sim.systems(RetryPolicy::default()).await.unwrap();
    let (sf, sn) = (&people.salesforce, &people.servicenow);

    let gold = sf.create("Account", &obj(json!({ "Name": "Acme Corporation", "External_Id__c": "ACME-001", "AnnualRevenue": 5.0e7, "Tier__c": "Gold" }))).await.unwrap();
    sn.insert("core_company", &obj(json!({ "name": "ACME Corp (EMEA)", "u_sf_external_id": "ACME-001" })))
        .await
        .unwrap();
    let mut cases = Vec::new();
    for i in 0..12 {
        // Every fourth a sev-1 on the Gold account: the workflow's Task and Slack bridge too.
        let priority = if i % 4 == 0 { "Critical" } else { "Medium" };
        cases.push(
            sf.create(
                "Case",
                &obj(json!({ "Subject": format!("blocking {i}"), "Priority": priority, "AccountId": gold })),
            )
            .await
            .unwrap(),
        );
    }
    let raised = sn
        .insert("incident", &obj(json!({ "short_description": "Raised in ServiceNow", "urgency": "2", "impact": "2" })))
        .await
        .unwrap()["sys_id"]
        .as_str()
        .unwrap()
        .to_string();
    seam_tests::settle(&sim, &engine).await;

    let incident_of =
        |case: Map<String, Value>| case["ServiceNow_Incident__c"].as_str().expect("the Case is linked").to_string();
    let first_incident = incident_of(sf.get("Case", &cases[0]).await.unwrap());
    for case in &cases[..6] {
        sf.update("Case", case, &obj(json!({ "Subject": "blocking, edited", "Priority": "High" }))).await.unwrap();
    }
    // A field ServiceNow owns, edited in Salesforce: put back.
    sf.update("Case", &cases[6], &obj(json!({ "Status": "New" }))).await.unwrap();
    sn.update("incident", &first_incident, &obj(json!({ "state": "2", "assigned_to": "Beth Anglin" }))).await.unwrap();
    assert!(sf.delete("Case", &cases[11]).await.unwrap());
    assert!(sn.delete("incident", &raised).await.unwrap());
    seam_tests::settle(&sim, &engine).await;

    // A hot swap and a rollback through the admin API, the operators' pages, and the metrics.
    let http = reqwest::Client::new();
    let admin = engine.admin_url.clone();
    let token =
        seam::secrets::ExposeSecret::expose_secret(&config.admin.operator_token().unwrap().unwrap()).to_string();
    let next = seampack(CASE_INCIDENT, "case-incident", Some("1.0.1"));
    let swapped =
        http.post(format!("{admin}/admin/tenants/demo/packs")).bearer_auth(&token).body(next).send().await.unwrap();
    assert_eq!(swapped.status(), 200, "{}", swapped.text().await.unwrap());
    sf.update("Case", &cases[7], &obj(json!({ "Subject": "after the swap" }))).await.unwrap();
    seam_tests::settle(&sim, &engine).await;
    let rolled =
        http.post(format!("{admin}/admin/tenants/demo/packs/rollback")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(rolled.status(), 200, "{}", rolled.text().await.unwrap());
    for path in [
        "/admin/packs",
        "/admin/api/overview",
        &format!("/admin/api/trail?tenant=demo&system=salesforce&object=Case&id={}", cases[0]),
    ] {
        let r = http.get(format!("{admin}{path}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }

    let reconciler = Reconciler {
        tenant: "demo".into(),
        journal: engine.journal.clone(),
        systems: Arc::new(sim.seam_systems(RetryPolicy::default()).await.unwrap()),
        mapping: engine.processors["demo"].active.clone(),
    };
    let report = reconciler.run(true, |_, _| {}).await.unwrap();
    assert!(report.pairs >= 10, "{report:?}");
    // The repairs' notifications come back, and are settled as echoes.
    seam_tests::settle(&sim, &engine).await;

    let dead = engine.journal.run(|j| j.dead_letters(Some("demo"))).await.unwrap();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    let metrics = reqwest::get(format!("{admin}/metrics")).await.unwrap().text().await.unwrap();
    assert_eq!(
        engine.journal.calls_on_workers(),
        0,
        "journal calls ran on a tokio worker thread (the log's warning names the first one's place)"
    );
    assert!(metrics.contains("seam_journal_calls_on_workers_total 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_keeps_sqlite_off_the_tokio_workers_with_outbound_messages() {
    serve_a_workload("blocking-om", Source::OutboundMessages).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_keeps_sqlite_off_the_tokio_workers_with_pubsub() {
    serve_a_workload("blocking-pubsub", Source::Pubsub).await;
}
