//! The sev1-bridge workflow pack beside the case-incident mapping, end to end
//! on the emulators: one event opens the incident, gives the account owner a
//! Task and starts a Slack bridge; a small account, a repeat edit or a linked
//! incident does not fire it; an incident raised in ServiceNow finds its
//! Account by the stable key; rolling the workflow back removes it.

use seam::cli::simulated::Simulated;
use seam::connectors::RetryPolicy;
use seam::engine::apply::Systems;
use seam::service::Engine;
use seam::store::EventStatus;
use seam_sim::Sim;
use seam_tests::{engine_on_sim, seampack, CASE_INCIDENT, SEV1_BRIDGE};
use serde_json::{json, Map, Value};

fn pack(component: &str, name: &str) -> Vec<u8> {
    seampack(component, name, None)
}

/// The mapping and the sev1-bridge workflow, serving `demo` on the emulators.
async fn start(name: &str) -> (Sim, Engine, seam::config::Config) {
    engine_on_sim(name, pack(CASE_INCIDENT, "case-incident"), &[pack(SEV1_BRIDGE, "sev1-bridge")]).await
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// Until the emulators have nothing left to send and the journal nothing left to do, with nothing dead-lettered.
async fn settle(sim: &Sim, engine: &Engine) {
    seam_tests::settle(sim, engine).await;
    assert_eq!(
        engine.journal.status_count("demo", EventStatus::Dead).unwrap(),
        0,
        "dead letters: {:?}",
        engine.journal.dead_letters(Some("demo"))
    );
}

async fn tasks_on(people: &Systems, what: &str) -> Vec<Map<String, Value>> {
    people
        .salesforce
        .query(&format!("SELECT Id, Subject, Priority, OwnerId, Description FROM Task WHERE WhatId = '{what}'"))
        .await
        .unwrap()
}

/// The messages of the Slack channel `name`, or None when there is no such channel.
async fn bridge(people: &Systems, name: &str) -> Option<Vec<String>> {
    let slack = people.slack.as_ref().unwrap();
    let (_, id) = slack.channels().await.unwrap().into_iter().find(|(n, _)| n == name)?;
    Some(slack.history(&id).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sev1_on_a_high_value_account_opens_the_incident_tasks_the_account_team_and_starts_a_bridge() {
    let (sim, engine, config) = start("workflow").await;
    let people = sim.systems(RetryPolicy::default()).await.unwrap();
    let (sf, sn) = (&people.salesforce, &people.servicenow);
    assert_eq!(
        engine.registry.list().unwrap()[0].workflows.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        vec!["sev1-bridge@1.0.0"]
    );

    let gold = sf.create("Account", &obj(json!({ "Name": "Acme Corporation", "External_Id__c": "ACME-001", "AnnualRevenue": 5.0e7, "Tier__c": "Gold" }))).await.unwrap();
    let small = sf.create("Account", &obj(json!({ "Name": "Corner Shop", "External_Id__c": "SHOP-7", "AnnualRevenue": 1.0e6, "Tier__c": "Bronze" }))).await.unwrap();
    let gold_company = sn
        .insert("core_company", &obj(json!({ "name": "ACME Corp (EMEA)", "u_sf_external_id": "ACME-001" })))
        .await
        .unwrap()["sys_id"]
        .as_str()
        .unwrap()
        .to_string();
    let owner = sf.get("Account", &gold).await.unwrap()["OwnerId"].as_str().unwrap().to_string();

    // 1. A new Critical Case on the Gold account: one event, two systems, no human relay.
    let case = sf
        .create(
            "Case",
            &obj(json!({ "Subject": "Checkout API returns 502", "Priority": "Critical", "AccountId": gold })),
        )
        .await
        .unwrap();
    settle(&sim, &engine).await;
    let case_now = sf.get("Case", &case).await.unwrap();
    let incident = case_now["ServiceNow_Incident__c"].as_str().expect("the Case is linked").to_string();
    let number = case_now["ServiceNow_Number__c"].as_str().unwrap().to_string();
    let incidents = sn
        .query("incident", &seam::connectors::servicenow::Query::new().eq("correlation_id", &case).unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "one incident, though both packs asked to open it");
    assert_eq!(incidents[0]["priority"], "1");
    let tasks = tasks_on(&people, &case).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["OwnerId"].as_str(), Some(owner.as_str()), "the Task is the account owner's");
    assert_eq!(tasks[0]["Priority"], "High");
    assert!(tasks[0]["Description"].as_str().unwrap().contains(&number), "{:?}", tasks[0]["Description"]);
    let task = tasks[0]["Id"].as_str().unwrap().to_string();
    let channel = format!("sev1-case-{}", case_now["CaseNumber"].as_str().unwrap());
    let messages = bridge(&people, &channel).await.expect("the bridge channel exists");
    assert_eq!(messages.len(), 1, "{messages:?}");
    for link in
        [format!("/Case/{case}/view"), format!("sys_id%3D{incident}"), number.clone(), format!("/Task/{task}/view")]
    {
        assert!(messages[0].contains(&link), "the bridge message links {link}: {}", messages[0]);
    }
    // The audit credits the workflow's writes to the workflow.
    let audit = engine.journal.audit_after("demo", 0).unwrap();
    assert!(
        audit.iter().any(|(_, r, _, a)| r.object == "Task" && a.pack == "sev1-bridge@1.0.0" && a.reason == "workflow"),
        "{audit:?}"
    );
    assert!(audit.iter().any(|(_, r, _, a)| r.object == "incident" && a.pack == "case-incident@1.0.0"));

    // 2. Still Critical, edited again: the same episode, nothing new.
    sf.update("Case", &case, &obj(json!({ "Subject": "Checkout API returns 502 (EU only)" }))).await.unwrap();
    settle(&sim, &engine).await;
    assert_eq!(tasks_on(&people, &case).await.len(), 1);
    assert_eq!(bridge(&people, &channel).await.unwrap().len(), 1);

    // 3. A Critical Case on a small account is left to the mapping.
    let shop_case = sf
        .create("Case", &obj(json!({ "Subject": "Card reader offline", "Priority": "Critical", "AccountId": small })))
        .await
        .unwrap();
    // 4. A High Case on the Gold account raised to Critical later fires then, with the existing incident.
    // Its Subject tries Slack's mrkdwn: a channel-wide ping and a forged link.
    let later = sf.create("Case", &obj(json!({ "Subject": "Slow search <!channel> & <https://evil.example|log in>", "Priority": "High", "AccountId": gold }))).await.unwrap();
    settle(&sim, &engine).await;
    assert!(tasks_on(&people, &later).await.is_empty(), "High is not a sev-1");
    sf.update("Case", &later, &obj(json!({ "Priority": "Critical" }))).await.unwrap();
    settle(&sim, &engine).await;
    assert!(tasks_on(&people, &shop_case).await.is_empty(), "a small account gets no Task");
    assert!(bridge(
        &people,
        &format!("sev1-case-{}", sf.get("Case", &shop_case).await.unwrap()["CaseNumber"].as_str().unwrap())
    )
    .await
    .is_none());
    assert_eq!(tasks_on(&people, &later).await.len(), 1);
    assert_eq!(
        sn.query("incident", &seam::connectors::servicenow::Query::new().eq("correlation_id", &later).unwrap(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let later_number = sf.get("Case", &later).await.unwrap()["CaseNumber"].as_str().unwrap().to_string();
    let later_bridge =
        bridge(&people, &format!("sev1-case-{later_number}")).await.expect("a bridge for the raised Case");
    let later_incident = sf.get("Case", &later).await.unwrap()["ServiceNow_Number__c"].as_str().unwrap().to_string();
    assert!(later_bridge[0].contains(&later_incident), "the bridge names the existing incident: {}", later_bridge[0]);
    assert!(
        later_bridge[0].contains("Slow search &lt;!channel&gt; &amp; &lt;https://evil.example|log in&gt;"),
        "record text reaches Slack as text: {}",
        later_bridge[0]
    );
    assert!(!later_bridge[0].contains("<!channel>"));

    // 5. A priority-1 incident raised in ServiceNow for the Gold customer: the Account is found by its stable key.
    let raised = sn.insert("incident", &obj(json!({ "short_description": "Payments down in EU", "impact": "1", "urgency": "1", "company": gold_company }))).await.unwrap();
    settle(&sim, &engine).await;
    let account_tasks = tasks_on(&people, &gold).await;
    assert_eq!(account_tasks.len(), 1, "{account_tasks:?}");
    assert!(account_tasks[0]["Subject"].as_str().unwrap().contains("Payments down in EU"));
    let raised_bridge = bridge(&people, &format!("sev1-{}", raised["number"].as_str().unwrap().to_lowercase()))
        .await
        .expect("a bridge for the raised incident");
    assert!(raised_bridge[0].contains(raised["sys_id"].as_str().unwrap()));

    // 6. Rolling the workflow back removes it (it had no earlier version); the mapping carries on.
    let admin = format!("{}/admin", engine.admin_url);
    let token =
        seam::secrets::ExposeSecret::expose_secret(&config.admin.operator_token().unwrap().unwrap()).to_string();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{admin}/tenants/demo/packs/rollback?pack=sev1-bridge"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(engine.registry.list().unwrap()[0].workflows.is_empty());
    let quiet_case = sf
        .create("Case", &obj(json!({ "Subject": "After the rollback", "Priority": "Critical", "AccountId": gold })))
        .await
        .unwrap();
    settle(&sim, &engine).await;
    assert!(sf.get("Case", &quiet_case).await.unwrap()["ServiceNow_Incident__c"].is_string(), "the mapping still runs");
    assert!(tasks_on(&people, &quiet_case).await.is_empty(), "the workflow is gone");

    // 7. Hot-loaded again through the admin API, it is back for the next event.
    let r = http
        .post(format!("{admin}/tenants/demo/packs"))
        .bearer_auth(&token)
        .body(pack(SEV1_BRIDGE, "sev1-bridge"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        engine.registry.list().unwrap()[0].workflows.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        vec!["sev1-bridge@1.0.0"]
    );
    let again = sf
        .create("Case", &obj(json!({ "Subject": "Back again", "Priority": "Critical", "AccountId": gold })))
        .await
        .unwrap();
    settle(&sim, &engine).await;
    assert_eq!(tasks_on(&people, &again).await.len(), 1);
    assert_eq!(engine.registry.list().unwrap()[0].active, "case-incident@1.0.0");
    sim.shutdown();
}

/// Slack fails for longer than the connector retries: the event is retried from the
/// journal and resumes after the incident and the Task, which are not made again, and
/// the bridge message still names both (what the first attempt made is carried over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_resumed_after_a_failure_repeats_nothing_and_still_links_what_it_made() {
    let (sim, engine, _) = start("workflow-resume").await;
    let people = sim.systems(RetryPolicy::default()).await.unwrap();
    let sf = &people.salesforce;
    let gold = sf
        .create("Account", &obj(json!({ "Name": "Acme Corporation", "AnnualRevenue": 5.0e7, "Tier__c": "Gold" })))
        .await
        .unwrap();

    // More failures than one attempt's retries (6): the first attempt gives up, a later one gets through.
    sim.slack.faults.set(seam_sim::faults::Faults { server_error_next: 8, retry_after_secs: 0, ..Default::default() });
    let case = sf
        .create("Case", &obj(json!({ "Subject": "Payments down", "Priority": "Critical", "AccountId": gold })))
        .await
        .unwrap();
    // (Waiting on the journal, not on Slack: a look at Slack now would use up the injected failures.)
    settle(&sim, &engine).await;
    assert!(engine.processors["demo"].counters.retries.get() >= 1, "the event was retried from the journal");

    let case_now = sf.get("Case", &case).await.unwrap();
    let number = case_now["ServiceNow_Number__c"].as_str().unwrap().to_string();
    assert_eq!(
        people
            .servicenow
            .query("incident", &seam::connectors::servicenow::Query::new().eq("correlation_id", &case).unwrap(), 10)
            .await
            .unwrap()
            .len(),
        1,
        "one incident"
    );
    let tasks = tasks_on(&people, &case).await;
    assert_eq!(tasks.len(), 1, "one Task: {tasks:?}");
    let messages = bridge(&people, &format!("sev1-case-{}", case_now["CaseNumber"].as_str().unwrap())).await.unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains(&number), "the incident number survived the retry: {}", messages[0]);
    assert!(
        messages[0].contains(&format!("/Task/{}/view", tasks[0]["Id"].as_str().unwrap())),
        "the Task link survived the retry: {}",
        messages[0]
    );
    assert!(!messages[0].contains("{{"), "no placeholder left unfilled: {}", messages[0]);
    sim.shutdown();
}

/// Each system carries out seam's writes and loses the responses (the connection cut on
/// the way back), so the first attempts end not knowing what happened: the incident,
/// the Task and the bridge message are still made once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_whose_responses_are_lost_after_each_write_makes_every_record_once() {
    let (sim, engine, _) = start("workflow-lost").await;
    let people = sim.systems(RetryPolicy::default()).await.unwrap();
    let sf = &people.salesforce;
    let gold = sf
        .create("Account", &obj(json!({ "Name": "Acme Corporation", "AnnualRevenue": 5.0e7, "Tier__c": "Gold" })))
        .await
        .unwrap();
    let lose = |n| seam_sim::faults::Faults { drop_responses_next: n, ..Default::default() };
    // ServiceNow: the incident insert. Slack: the channel and the message.
    sim.servicenow.faults.set(lose(1));
    sim.slack.faults.set(lose(2));
    let case = sf
        .create("Case", &obj(json!({ "Subject": "Payments down", "Priority": "Critical", "AccountId": gold })))
        .await
        .unwrap();
    // Salesforce: the Case's link stamp and the Task (set after the person's own create).
    sim.salesforce.faults.set(lose(2));
    settle(&sim, &engine).await;
    for emulator in [&sim.servicenow, &sim.slack, &sim.salesforce] {
        assert_eq!(emulator.faults.get().drop_responses_next, 0, "{}: every lost response was used", emulator.name);
    }

    let case_now = sf.get("Case", &case).await.unwrap();
    let incidents = people
        .servicenow
        .query("incident", &seam::connectors::servicenow::Query::new().eq("correlation_id", &case).unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "one incident");
    assert_eq!(case_now["ServiceNow_Incident__c"], incidents[0]["sys_id"]);
    assert_eq!(tasks_on(&people, &case).await.len(), 1, "one Task");
    let messages = bridge(&people, &format!("sev1-case-{}", case_now["CaseNumber"].as_str().unwrap())).await.unwrap();
    assert_eq!(messages.len(), 1, "one message: {messages:?}");
    assert!(engine.processors["demo"].counters.retries.get() >= 1, "the event was retried from the journal");
    sim.shutdown();
}
