//! Intake: the emulators push notifications to seam's endpoints; each is
//! authenticated, journaled once, and acknowledged only once stored.

use seam::cli::simulated::Simulated;
use seam::connectors::RetryPolicy;
use seam::model::{ChangeKind, Value};
use seam::store::Journal;
use seam_tests::{rig, Rig, SN_SECRET, TENANT};
use serde_json::{json, Map};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn obj(v: serde_json::Value) -> Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap()
}

async fn setup(name: &str) -> Rig {
    rig(&format!("intake-{name}"), 64 * 1024).await
}

async fn wait_for(journal: &Journal, n: u64) {
    let started = Instant::now();
    while journal.count(TENANT).unwrap() < n {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "expected {n} journal entries, have {}",
            journal.count(TENANT).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The headers that sign a ServiceNow notification now, as the business rule does.
fn sign(secret: &str, body: &[u8]) -> [(String, String); 2] {
    seam_sim::notify::sign(secret, body)
}

/// The same, signed `seconds_ago` seconds ago.
fn sign_at(secret: &str, body: &[u8], seconds_ago: i64) -> [(String, String); 2] {
    seam::intake::servicenow::signed_headers(secret, chrono::Utc::now().timestamp() - seconds_ago, body)
}

#[tokio::test]
async fn notifications_from_both_systems_are_journaled_and_acknowledged() {
    let s = setup("flow").await;
    let systems = s.sim.systems(RetryPolicy::default()).await.unwrap();
    let case = systems
        .salesforce
        .create("Case", &obj(json!({ "Subject": "Checkout fails", "Priority": "High" })))
        .await
        .unwrap();
    wait_for(&s.journal, 1).await;
    systems.salesforce.update("Case", &case, &obj(json!({ "Priority": "Critical" }))).await.unwrap();
    wait_for(&s.journal, 2).await;

    let inc = systems
        .servicenow
        .insert("incident", &obj(json!({ "short_description": "Checkout fails", "correlation_id": case })))
        .await
        .unwrap();
    let inc_id = inc["sys_id"].as_str().unwrap();
    systems
        .servicenow
        .update(
            "incident",
            inc_id,
            &obj(json!({ "state": "2", "assigned_to": "Beth Anglin", "work_notes": "looking" })),
        )
        .await
        .unwrap();
    wait_for(&s.journal, 4).await;

    let entries = s.journal.entries(TENANT).unwrap();
    let (created, updated) = (&entries[0].change, &entries[1].change);
    // Keyed by record version, as the catch-up poll keys the same version.
    let stamp = created
        .snapshot
        .iter()
        .find(|f| f.name == "SystemModstamp")
        .and_then(|f| f.value.as_text().map(str::to_string))
        .expect("the Outbound Message carries SystemModstamp");
    assert_eq!(Some(entries[0].event_key.clone()), seam::engine::normalize::salesforce_version_key(&case, &stamp));
    assert_eq!((created.kind, created.source.id.as_str()), (ChangeKind::Created, case.as_str()));
    assert_eq!(updated.kind, ChangeKind::Updated);
    assert!(updated.snapshot.iter().any(|f| f.name == "Priority" && f.value == Value::from("Critical")));
    assert!(
        updated.snapshot.iter().any(|f| f.name == "IsClosed" && f.value == Value::Bool(false)),
        "SOAP booleans come back as booleans"
    );

    let sn_update = &entries[3].change;
    assert!(entries[3].event_key.starts_with("sn:"));
    assert_eq!(sn_update.linked.as_ref().map(|l| l.id.as_str()), Some(case.as_str()));
    let changed: HashMap<&str, &Value> = sn_update.changed.iter().map(|f| (f.name.as_str(), &f.value)).collect();
    assert_eq!(changed["state"], &Value::from("2"));
    assert_eq!(changed["assigned_to.display"], &Value::from("Beth Anglin"));
    assert_eq!(changed["work_notes"], &Value::from("looking"));

    // Every delivery was acknowledged at the first try: nothing left for the emulators to retry.
    for notifier in [&s.sim.salesforce.notifier, &s.sim.servicenow.notifier] {
        let notifier = notifier.as_ref().unwrap();
        let started = Instant::now();
        while notifier.stats().pending > 0 && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stats = notifier.stats();
        assert_eq!((stats.pending, stats.failed_attempts), (0, 0), "{stats:?}");
    }
    s.sim.shutdown();
}

#[tokio::test]
async fn a_redelivered_notification_is_stored_once() {
    let s = setup("dupes").await;
    let client = reqwest::Client::new();
    let url = format!("{}/intake/{TENANT}/servicenow", s.base);
    let body = seam::intake::servicenow::Contract::load().examples.remove(1).body;
    for expected in [json!({ "accepted": 1, "duplicates": 0 }), json!({ "accepted": 0, "duplicates": 1 })] {
        let mut r = client.post(&url).body(body.clone());
        for (name, value) in sign(SN_SECRET, body.as_bytes()) {
            r = r.header(name, value);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(r.json::<serde_json::Value>().await.unwrap(), expected);
    }
    assert_eq!(s.journal.count(TENANT).unwrap(), 1);
    s.sim.shutdown();
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_nothing_is_stored() {
    let s = setup("rejects").await;
    let client = reqwest::Client::new();
    let sn = format!("{}/intake/{TENANT}/servicenow", s.base);
    let good = json!({ "event_id": "x:0:insert", "table": "incident", "sys_id": "b".repeat(32), "operation": "insert", "current": { "sys_id": "b".repeat(32), "sys_mod_count": "0" }, "display_values": {}, "journal": {} }).to_string();
    let post = |url: String, body: String, signature: Option<[(String, String); 2]>| {
        let client = client.clone();
        async move {
            let mut r = client.post(url).body(body);
            for (name, value) in signature.into_iter().flatten() {
                r = r.header(name, value);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // An Outbound Message of this org: `prolog` before the envelope, `n` Notifications, `subject` as a Case's Subject (raw XML).
    let om = format!("{}/intake/{TENANT}/salesforce/outbound?token=om-token", s.base);
    let outbound = |prolog: &str, n: usize, subject: &str| {
        let notification = |i: usize| {
            format!(
                r#"<Notification><Id>04l{i:015}</Id><sObject xsi:type="sf:Case" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>500{i:015}</sf:Id><sf:Subject>{subject}</sf:Subject></sObject></Notification>"#
            )
        };
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>{prolog}<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>{}</OrganizationId>{}</notifications></soapenv:Body></soapenv:Envelope>"#,
            seam_sim::salesforce::ORG_ID,
            (0..n).map(notification).collect::<String>()
        )
    };
    assert_eq!(
        post(om.clone(), outbound("", 100, "fine"), None).await.0,
        200,
        "100 Notifications are Salesforce's limit, and accepted"
    );
    let accepted = s.journal.count(TENANT).unwrap();
    assert_eq!(accepted, 100);
    let cases = [
        ("unsigned", post(sn.clone(), good.clone(), None).await, 401, "unsigned"),
        (
            "wrong key",
            post(sn.clone(), good.clone(), Some(sign("guess", good.as_bytes()))).await,
            401,
            "does not match",
        ),
        (
            "tampered",
            post(sn.clone(), good.replace("insert", "delete"), Some(sign(SN_SECRET, good.as_bytes()))).await,
            401,
            "does not match",
        ),
        // A notification captured and sent again later; and one dated ahead to outlive the window.
        (
            "replayed",
            post(sn.clone(), good.clone(), Some(sign_at(SN_SECRET, good.as_bytes(), 6 * 60))).await,
            401,
            "replayed",
        ),
        (
            "signed in the future",
            post(sn.clone(), good.clone(), Some(sign_at(SN_SECRET, good.as_bytes(), -6 * 60))).await,
            401,
            "replayed",
        ),
        (
            "timestamp moved",
            {
                let [_, signature] = sign_at(SN_SECRET, good.as_bytes(), 6 * 60);
                post(
                    sn.clone(),
                    good.clone(),
                    Some([("X-Seam-Timestamp".into(), chrono::Utc::now().timestamp().to_string()), signature]),
                )
                .await
            },
            401,
            "does not match",
        ),
        ("not JSON", post(sn.clone(), "{oops".into(), Some(sign(SN_SECRET, b"{oops"))).await, 400, "not JSON"),
        (
            "bad operation",
            {
                let b = good.replace("insert", "merge");
                post(sn.clone(), b.clone(), Some(sign(SN_SECRET, b.as_bytes()))).await
            },
            400,
            "unknown operation",
        ),
        (
            "oversized",
            {
                let b = "x".repeat(100 * 1024);
                post(sn.clone(), b.clone(), Some(sign(SN_SECRET, b.as_bytes()))).await
            },
            413,
            "",
        ),
        // The same answer as a wrong key: tenant names cannot be probed.
        (
            "unknown tenant",
            post(format!("{}/intake/nobody/servicenow", s.base), good.clone(), Some(sign(SN_SECRET, good.as_bytes())))
                .await,
            401,
            "does not match",
        ),
        (
            "unknown tenant, SOAP",
            post(format!("{}/intake/nobody/salesforce/outbound?token=om-token", s.base), "<x/>".into(), None).await,
            401,
            "token",
        ),
        (
            "JSON nested too deep",
            {
                let b = format!("{}{}", "[".repeat(500), "]".repeat(500));
                post(sn.clone(), b.clone(), Some(sign(SN_SECRET, b.as_bytes()))).await
            },
            400,
            "not JSON",
        ),
        (
            "JSON not UTF-8",
            {
                // The event id's first byte is not UTF-8, inside a JSON string.
                let bytes = good
                    .replacen("x:0:insert", "\u{1}:0:insert", 1)
                    .into_bytes()
                    .into_iter()
                    .map(|c| if c == 1 { 0xff } else { c })
                    .collect::<Vec<u8>>();
                let mut r = client.post(sn.clone()).body(bytes.clone());
                for (name, value) in sign(SN_SECRET, &bytes) {
                    r = r.header(name, value);
                }
                let r = r.send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            },
            400,
            "",
        ),
        (
            "SOAP entity bomb",
            post(
                om.clone(),
                outbound(
                    r#"<!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>"#,
                    1,
                    "&b;",
                ),
                None,
            )
            .await,
            400,
            "DOCTYPE",
        ),
        (
            "SOAP external entity",
            post(om.clone(), outbound(r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>"#, 1, "&e;"), None)
                .await,
            400,
            "DOCTYPE",
        ),
        (
            "SOAP nested too deep",
            post(om.clone(), outbound("", 1, &format!("{}{}", "<a>".repeat(100), "</a>".repeat(100))), None).await,
            400,
            "deeper",
        ),
        ("SOAP with 101 Notifications", post(om.clone(), outbound("", 101, "x"), None).await, 400, "more than 100"),
        (
            "SOAP not UTF-8",
            {
                let mut bytes = outbound("", 1, "x").into_bytes();
                bytes.extend_from_slice(&[0xff, 0xfe]);
                let r = client.post(om.clone()).body(bytes).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            },
            400,
            "UTF-8",
        ),
        (
            "SOAP without token",
            post(format!("{}/intake/{TENANT}/salesforce/outbound", s.base), "<x/>".into(), None).await,
            401,
            "token",
        ),
        (
            "SOAP garbage",
            post(format!("{}/intake/{TENANT}/salesforce/outbound?token=om-token", s.base), "<x>".into(), None).await,
            400,
            "cut short",
        ),
        (
            "SOAP from another org",
            {
                let b = seam_sim::salesforce::soap::outbound_message(
                    "00D000000000OTHER",
                    "https://x",
                    &[&seam_sim::salesforce::soap::notification(
                        "04l1",
                        "Case",
                        &obj(json!({ "Id": "500000000000001AAA" })),
                    )],
                );
                post(format!("{}/intake/{TENANT}/salesforce/outbound?token=om-token", s.base), b, None).await
            },
            403,
            "org",
        ),
    ];
    for (what, (status, body), want_status, want_text) in cases {
        assert_eq!(status, want_status, "{what}: {body}");
        assert!(body.contains(want_text), "{what}: {body}");
    }
    assert_eq!(s.journal.count(TENANT).unwrap(), accepted, "nothing more was stored");
    s.sim.shutdown();
}

/// An Outbound Message as Salesforce sends one (pretty-printed, `sf:` prefixes, `xsi:nil`,
/// two Notifications; `tests/fixtures/intake/`), not as seam's emulator builds it: both Cases
/// are journaled whole and the message acknowledged.
#[tokio::test]
async fn an_outbound_message_shaped_as_salesforce_sends_it_is_journaled_whole() {
    let s = setup("fixture").await;
    let body = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/intake/outbound-two-cases.xml"))
        .unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}/intake/{TENANT}/salesforce/outbound?token={}", s.base, seam_tests::OM_TOKEN))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(answer.text().await.unwrap().contains("<Ack>true</Ack>"));
    let entries = s.journal.entries(TENANT).unwrap();
    assert_eq!(entries.len(), 2, "{:?}", entries.iter().map(|e| &e.event_key).collect::<Vec<_>>());
    let field =
        |n: usize, name: &str| entries[n].change.snapshot.iter().find(|f| f.name == name).map(|f| f.value.clone());
    assert_eq!(entries[0].change.source.id, "5005g00000AbCdEAAZ");
    assert_eq!(entries[0].change.kind, ChangeKind::Updated);
    assert_eq!(field(0, "Subject"), Some(Value::from("Checkout API returns 502 & retries <fail>")));
    assert_eq!(field(0, "Description"), Some(Value::Null));
    assert_eq!(field(0, "IsEscalated"), Some(Value::Bool(false)));
    assert_eq!(entries[1].change.source.id, "5005g00000AbCdFAAZ");
    assert_eq!(entries[1].change.kind, ChangeKind::Created);
    assert_eq!(field(1, "Priority"), Some(Value::from("Low")));
    // Delivered again (Salesforce retries until it reads the Ack): nothing more is stored.
    let again = reqwest::Client::new()
        .post(format!("{}/intake/{TENANT}/salesforce/outbound?token={}", s.base, seam_tests::OM_TOKEN))
        .body(std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/intake/outbound-two-cases.xml")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(s.journal.count(TENANT).unwrap(), 2);
    s.sim.shutdown();
}
