//! Governance on the emulators: drift repaired by reconciliation (and
//! audited), `/metrics`, and backlog alerts once per episode.

use seam::cli::simulated::Simulated;
use seam::config::alerts::AlertConfig;
use seam::connectors::RetryPolicy;
use seam::engine::alerts::{Alert, Alerter};
use seam::engine::reconcile::Reconciler;
use seam::model::{Change, ChangeKind, RecordRef, System, Value};
use seam::store::{EventStatus, Journal};
use seam_sim::faults::Faults;
use seam_sim::Sim;
use seam_tests::{engine_on_sim, seampack, settle, CASE_INCIDENT};
use serde_json::{json, Map};
use std::sync::Arc;

fn obj(v: serde_json::Value) -> Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap()
}

fn state(name: &str) -> std::path::PathBuf {
    seam_tests::scratch_dir(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_repairs_drift_from_the_owner_audits_it_and_metrics_tell() {
    let (sim, engine, _) = engine_on_sim("reconcile", seampack(CASE_INCIDENT, "case-incident", None), &[]).await;
    let admin_url = engine.admin_url.clone();
    let people = sim.systems(RetryPolicy::default()).await.unwrap();
    let (sf, sn) = (&people.salesforce, &people.servicenow);
    let mut cases = Vec::new();
    for n in 0..3 {
        cases.push(
            sf.create("Case", &obj(json!({ "Subject": format!("Case {n}"), "Priority": "High" }))).await.unwrap(),
        );
    }
    settle(&sim, &engine).await;
    let incident_of =
        |case: Map<String, serde_json::Value>| case["ServiceNow_Incident__c"].as_str().unwrap().to_string();
    let incident0 = incident_of(sf.get("Case", &cases[0]).await.unwrap());

    // Drift no notification announced: an incident summary edited in ServiceNow
    // (Salesforce owns it), and a Case Status edited in Salesforce (ServiceNow owns it).
    sim.servicenow.faults.set(Faults { drop_notifications_next: 1, ..Faults::default() });
    sn.update("incident", &incident0, &obj(json!({ "short_description": "edited by hand" }))).await.unwrap();
    sim.salesforce.faults.set(Faults { drop_notifications_next: 1, ..Faults::default() });
    sf.update("Case", &cases[1], &obj(json!({ "Status": "Escalated" }))).await.unwrap();
    settle(&sim, &engine).await;

    let reconciler = Reconciler {
        tenant: "demo".into(),
        journal: engine.journal.clone(),
        systems: Arc::new(sim.seam_systems(RetryPolicy::default()).await.unwrap()),
        mapping: engine.processors["demo"].active.clone(),
    };
    let progress = std::sync::Mutex::new(Vec::new());
    let dry = reconciler.run(false, |done, total| progress.lock().unwrap().push((done, total))).await.unwrap();
    assert_eq!((dry.pairs, dry.in_sync, dry.drifted, dry.skipped), (3, 1, 2, 0), "{dry:?}");
    assert_eq!(progress.lock().unwrap().last(), Some(&(3, 3)), "progress reaches the end");
    assert!(dry.drifts.iter().all(|d| !d.repaired));
    let summary = dry.drifts.iter().find(|d| d.field == "short_description").expect("the summary drift");
    assert_eq!(
        (summary.found.clone(), summary.expected.clone(), summary.owner),
        (Some(Value::Text("edited by hand".into())), Value::Text("Case 0".into()), System::Salesforce)
    );
    assert_eq!(
        sn.get("incident", &incident0).await.unwrap()["short_description"]["value"],
        "edited by hand",
        "a dry run changes nothing"
    );

    let repaired = reconciler.run(true, |_, _| {}).await.unwrap();
    assert_eq!(repaired.drifted, 2);
    assert!(repaired.drifts.iter().all(|d| d.repaired), "{repaired:?}");
    settle(&sim, &engine).await;
    assert_eq!(sn.get("incident", &incident0).await.unwrap()["short_description"]["value"], "Case 0");
    assert_eq!(
        sf.get("Case", &cases[1]).await.unwrap()["Status"],
        "New",
        "the Status mirrors the incident's state again"
    );
    let calls = || reconciler.systems.salesforce.http().calls() + reconciler.systems.servicenow.http().calls();
    let before = calls();
    let again = reconciler.run(true, |_, _| {}).await.unwrap();
    assert_eq!((again.in_sync, again.drifted), (3, 0), "{again:?}");
    assert_eq!(again.unchanged, 1, "the pair no one touched is not mapped again: {again:?}");
    assert_eq!(calls() - before, 2, "the three pairs are read in one call per system");
    let quiet = reconciler.run(true, |_, _| {}).await.unwrap();
    assert_eq!((quiet.in_sync, quiet.unchanged), (3, 3), "nothing changed since: {quiet:?}");
    let p = &engine.processors["demo"].counters;
    assert_eq!(p.reverts.get(), 0, "the repairs' echoes were recognised, not reverted");
    assert_eq!(engine.journal.status_count("demo", EventStatus::Dead).unwrap(), 0);

    // The audit says why the summary changed back.
    let why = engine
        .journal
        .why(
            Some("demo"),
            &RecordRef { system: System::Servicenow, object: "incident".into(), id: incident0.clone() },
            "short_description",
        )
        .unwrap();
    assert!(why[0].reason.starts_with("reconcile"), "{why:?}");
    assert_eq!(
        (why[0].old.clone(), why[0].new.clone()),
        (Some(Value::Text("edited by hand".into())), Value::Text("Case 0".into()))
    );

    // /metrics reports what happened, in the Prometheus text format.
    let text = reqwest::get(format!("{admin_url}/metrics")).await.unwrap().text().await.unwrap();
    for needle in [
        "seam_events_received_total{tenant=\"demo\",system=\"salesforce\"}",
        "seam_events_synced_total{tenant=\"demo\"}",
        "seam_echoes_suppressed_total{tenant=\"demo\"}",
        "seam_violations_reverted_total{tenant=\"demo\"} 0",
        "seam_pack_call_seconds_bucket{",
        "pack=\"case-incident@1.0.0\"",
        "seam_backlog_events{tenant=\"demo\"} 0",
        "seam_backlog_age_seconds{tenant=\"demo\"} 0",
        "seam_dead_letters{tenant=\"demo\"} 0",
        "seam_pack_info{tenant=\"demo\",slot=\"mapping\",pack=\"case-incident@1.0.0\"",
        "# EOF",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
    let synced: f64 = text
        .lines()
        .find(|l| l.starts_with("seam_events_synced_total{tenant=\"demo\"}"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(synced >= 3.0, "{synced}");
    // Scraped without a token, so it names tenants and packs, never a record.
    for case in &cases {
        let incident = incident_of(sf.get("Case", case).await.unwrap());
        for id in [case.as_str(), &case[..15], incident.as_str()] {
            assert!(!text.contains(id), "/metrics names the record {id}:\n{text}");
        }
    }
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_alert_goes_out_once_per_episode_and_the_recovery_is_said() {
    let dir = state("alerts");
    let sim = Sim::start(seam_sim::SimConfig::new(dir.join("sim"))).await.unwrap();
    let journal = Arc::new(Journal::open(&dir.join("journal.db")).unwrap());
    let systems = Arc::new(sim.seam_systems(RetryPolicy::default()).await.unwrap());
    let config = AlertConfig {
        backlog_events: 3,
        dead_letters: 2,
        slack_channel: "ops-alerts".into(),
        ..AlertConfig::default()
    };
    let alerter = Alerter {
        tenant: "acme".into(),
        journal: journal.clone(),
        systems: systems.clone(),
        config,
        sent: Default::default(),
        dashboard: Some("http://seam/dashboard".into()),
    };
    let change = |n: usize| Change {
        event_id: format!("e{n}"),
        kind: ChangeKind::Updated,
        source: RecordRef { system: System::Salesforce, object: "Case".into(), id: format!("5005g00000000{n:02}AAA") },
        changed: vec![],
        snapshot: vec![],
        origin_user: "jane".into(),
        linked: None,
    };
    let recorded = journal.record_all("acme", (0..4).map(|n| (format!("k{n}"), change(n))).collect()).await.unwrap();
    let ids: Vec<i64> = recorded.iter().map(|r| r.id()).collect();

    assert!(
        matches!(alerter.check().await.unwrap(), Some(Alert::Raised(t)) if t.contains("4 events waiting (threshold 3)") && t.contains("http://seam/dashboard"))
    );
    // More of the same episode: no second alert.
    journal.dead_letter(ids[0], &[], "refused").await.unwrap();
    journal.dead_letter(ids[1], &[], "refused").await.unwrap();
    assert_eq!(alerter.check().await.unwrap(), None);
    assert_eq!(alerter.check().await.unwrap(), None);
    // A restarted host remembers the episode.
    let restarted = Alerter {
        sent: Default::default(),
        dashboard: None,
        config: alerter.config.clone(),
        tenant: "acme".into(),
        journal: journal.clone(),
        systems: systems.clone(),
    };
    assert_eq!(restarted.check().await.unwrap(), None);
    // Still above half a threshold: not over yet.
    journal.redrive(Some(&[ids[0]]), "test").unwrap();
    assert_eq!(alerter.check().await.unwrap(), None, "3 waiting and 1 dead letter is above half of 3 and 2");
    for id in [ids[0], ids[2], ids[3]] {
        journal.finish("acme", id, &[], "k", "p", EventStatus::Done, Default::default()).await.unwrap();
    }
    journal.redrive(Some(&[ids[1]]), "test").unwrap();
    journal.finish("acme", ids[1], &[], "k1", "p", EventStatus::Done, Default::default()).await.unwrap();
    assert!(matches!(alerter.check().await.unwrap(), Some(Alert::Cleared(_))));
    assert_eq!(alerter.check().await.unwrap(), None);
    // A new episode alerts again.
    for n in 10..12 {
        let r = journal.record_all("acme", vec![(format!("k{n}"), change(n))]).await.unwrap();
        journal.dead_letter(r[0].id(), &[], "refused").await.unwrap();
    }
    assert!(
        matches!(alerter.check().await.unwrap(), Some(Alert::Raised(t)) if t.contains("2 in the dead-letter queue"))
    );
    assert_eq!(alerter.sent.get(), 3);

    let slack = systems.slack.as_ref().unwrap();
    let (_, channel) = slack.channels().await.unwrap().into_iter().find(|(n, _)| n == "ops-alerts").unwrap();
    let messages = slack.history(&channel).await.unwrap();
    assert_eq!(messages.len(), 3, "raised, cleared, raised: {messages:?}");
    assert!(messages[1].contains("back to normal"));
    sim.shutdown();
}

/// Group commit: concurrent writes share transactions, each lands whole, and
/// one that fails is undone alone while the rest of its group commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_writes_commit_together_and_a_failing_one_fails_alone() {
    let dir = state("group-commit");
    let journal = Arc::new(Journal::open(&dir.join("journal.db")).unwrap());
    let change = |n: usize| Change {
        event_id: format!("e{n}"),
        kind: ChangeKind::Updated,
        source: RecordRef { system: System::Salesforce, object: "Case".into(), id: format!("500{n:015}") },
        changed: vec![seam::model::Field { name: "Subject".into(), value: Value::Text(format!("s{n}")) }],
        snapshot: vec![],
        origin_user: "jane".into(),
        linked: None,
    };
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..200 {
        let journal = journal.clone();
        let events = vec![(format!("k{n}"), change(n))];
        writers.spawn(async move {
            if n % 50 == 7 {
                // Stores its event, then fails (one of them by panicking): the event must not stay behind.
                journal
                    .write_grouped(move |db| {
                        db.execute("INSERT INTO events (tenant, event_key, system, object, record_id, change, received_at_ms) VALUES ('acme', ?1, 'salesforce', 'Case', 'x', '{}', 0)", [format!("bad{n}")])?;
                        if n == 107 {
                            panic!("a bug in a journal write");
                        }
                        anyhow::bail!("refused on purpose")
                    })
                    .await
                    .map(|()| 0)
            } else {
                journal.record_all("acme", events).await.map(|r| r.len())
            }
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(result) = writers.join_next().await {
        match result.unwrap() {
            Ok(1) => ok += 1,
            Ok(n) => panic!("recorded {n} events for one"),
            Err(e) => {
                assert!(
                    format!("{e:#}").contains("refused on purpose")
                        || format!("{e:#}").contains("the journal write panicked"),
                    "{e:#}"
                );
                failed += 1;
            }
        }
    }
    assert_eq!((ok, failed), (196, 4));
    // The group commit carries on after a write that panicked.
    journal.record_all("acme", vec![("k-after".into(), change(999))]).await.unwrap();
    let entries = journal.entries("acme").unwrap();
    assert_eq!(entries.len(), 197, "the failed writes left nothing, the others all landed");
    assert!(entries.iter().all(|e| e.event_key.starts_with('k')));
    // Values read back as they were written, by JSON type.
    let e = entries.iter().find(|e| e.event_key == "k3").unwrap();
    assert_eq!(e.change.changed[0].value, Value::Text("s3".into()));
    for v in [
        Value::Null,
        Value::Bool(true),
        Value::Number(2.5),
        Value::Number(3.0),
        Value::Text("3".into()),
        Value::Text("".into()),
    ] {
        let back: Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }
}

/// A journal written before the shadow was keyed alone and before the events'
/// indexes held only open events: opened now, it keeps every shadow value and
/// open event, its shadow becomes a WITHOUT ROWID table, and the old indexes go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_from_before_keeps_its_shadow_and_open_events_under_the_new_layout() {
    let dir = state("old-journal-layout");
    let path = dir.join("journal.db");
    let change = serde_json::to_string(&Change {
        event_id: "e1".into(),
        kind: ChangeKind::Updated,
        source: RecordRef { system: System::Salesforce, object: "Case".into(), id: "500A".into() },
        changed: vec![seam::model::Field { name: "Subject".into(), value: Value::Text("new".into()) }],
        snapshot: vec![],
        origin_user: "jane".into(),
        linked: None,
    })
    .unwrap();
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE events (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, event_key TEXT NOT NULL,
                 system TEXT NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL, change TEXT NOT NULL,
                 received_at_ms INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
                 attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                 progress INTEGER NOT NULL DEFAULT 0, progress_linked TEXT, linked_id TEXT,
                 UNIQUE (tenant, event_key));
             CREATE INDEX events_by_record ON events (tenant, system, object, record_id, id);
             CREATE INDEX events_pending ON events (status, id);
             CREATE TABLE shadow (
                 tenant TEXT NOT NULL, system TEXT NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL,
                 field TEXT NOT NULL, value TEXT NOT NULL,
                 PRIMARY KEY (tenant, system, object, record_id, field));
             INSERT INTO shadow VALUES ('acme', 'salesforce', 'Case', '500A', 'Subject', '\"old\"');
             INSERT INTO shadow VALUES ('acme', 'salesforce', 'Case', '500A', 'Priority', '\"High\"');",
        )
        .unwrap();
        for (key, status) in [("k-done", "done"), ("k-dead", "dead"), ("k-pending", "pending")] {
            old.execute(
                "INSERT INTO events (tenant, event_key, system, object, record_id, change, received_at_ms, status) VALUES ('acme', ?1, 'salesforce', 'Case', '500A', ?2, 0, ?3)",
                rusqlite::params![key, change, status],
            )
            .unwrap();
        }
    }
    let journal = std::sync::Arc::new(Journal::open(&path).unwrap());
    let case = RecordRef { system: System::Salesforce, object: "Case".into(), id: "500A".into() };
    let shadow = journal.shadow("acme", &case).unwrap();
    assert_eq!(shadow.len(), 2, "{shadow:?}");
    assert_eq!(shadow["Subject"], Value::Text("old".into()));
    assert_eq!(
        (
            journal.status_count("acme", EventStatus::Pending).unwrap(),
            journal.status_count("acme", EventStatus::Dead).unwrap()
        ),
        (1, 1)
    );
    assert_eq!(journal.dead_letters(Some("acme")).unwrap().len(), 1);
    let claimed = seam::engine::dispatcher::claim(&journal, "acme", &Default::default(), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|(due, _)| due.entry.event_key.as_str()).collect::<Vec<_>>(), ["k-pending"]);
    let db = rusqlite::Connection::open(&path).unwrap();
    let shadow_sql: String =
        db.query_row("SELECT sql FROM sqlite_master WHERE name = 'shadow'", [], |r| r.get(0)).unwrap();
    assert!(shadow_sql.contains("WITHOUT ROWID"), "{shadow_sql}");
    let old_indexes: i64 = db
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name IN ('events_pending', 'events_by_record')", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(old_indexes, 0);
    // Opening it again changes nothing.
    drop(journal);
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.shadow("acme", &case).unwrap().len(), 2);
}
