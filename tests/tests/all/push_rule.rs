//! The business rule seam ships for ServiceNow, run under Node with a shim of
//! the platform's APIs, sends exactly the requests the notification contract
//! (`host/src/intake/servicenow/notification.json`) describes, skips the
//! integration user's changes, and intake takes what it sends.

use seam::config::intake::TenantIntake;
use seam::intake::servicenow::{signature, Contract};
use seam::intake::{self, Intake};
use seam::secrets::Secret;
use seam::setup::servicenow::{property_prefix, update_set, PushSetup};
use seam::store::Journal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[tokio::test]
async fn the_generated_rule_sends_the_contracts_requests_and_intake_takes_them() {
    let dir = seam_tests::scratch_dir("push-rule");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let setup = PushSetup {
        tenant: "acme".into(),
        endpoint: "https://seam.example.com/intake/acme/servicenow".into(),
        secret: "unused".to_string().into(),
        integration_user: "seam.integration".into(),
    };
    let xml = update_set(&setup, chrono::Utc::now());

    // The rule as the instance reads it from the file.
    let records = seam_sim::servicenow::update_sets::records(&xml).unwrap();
    let (_, rule) =
        records.iter().find(|(table, _)| table == "sys_script").expect("the update set holds a business rule");
    let field = |name: &str| rule[name].as_str().unwrap().to_string();
    assert_eq!(
        (field("collection").as_str(), field("when").as_str(), field("active").as_str()),
        ("incident", "async", "true")
    );
    for action in ["action_insert", "action_update", "action_delete"] {
        assert_eq!(field(action), "true", "{action}");
    }
    let rule_file = dir.join("rule.json");
    std::fs::write(&rule_file, json!({ "script": field("script"), "condition": field("condition"), "prefix": property_prefix("acme"), "endpoint": setup.endpoint }).to_string()).unwrap();

    let output = std::process::Command::new("node")
        .arg(root.join("tests/servicenow/run-rule.mjs"))
        .arg(&rule_file)
        .arg(root.join("host/src/intake/servicenow/notification.json"))
        .output()
        .unwrap_or_else(|e| panic!("running node (Node.js 18 or later runs the business rule's test): {e}"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let runs: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    // Intake, with one tenant per example (each signs with its own key).
    let contract = Contract::load();
    assert_eq!(runs.len(), contract.examples.len());
    let journal = Arc::new(Journal::open(&dir.join("journal.db")).unwrap());
    let tenants: HashMap<String, _> = contract
        .examples
        .iter()
        .enumerate()
        .map(|(i, ex)| {
            let keys = TenantIntake {
                salesforce_org_id: "00D".into(),
                salesforce_token: Secret::value("t"),
                servicenow_secret: Secret::value(ex.secret.clone()),
            }
            .keys("x")
            .unwrap();
            (format!("ex{i}"), keys)
        })
        .collect();
    // The contract's examples were signed at fixed times; intake's clock reads a moment later.
    let mut intake = Intake::new(journal.clone(), tenants, HashMap::new());
    intake.clock = || Contract::load().examples.iter().map(|e| e.sent_at).max().unwrap_or_default() + 1;
    let intake = Arc::new(intake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, intake::router(intake, intake::DEFAULT_MAX_BODY)).await.unwrap() });
    let client = reqwest::Client::new();

    for (i, (run, example)) in runs.iter().zip(&contract.examples).enumerate() {
        assert_eq!(run["name"], example.name.as_str());
        assert_eq!(
            run["condition"],
            json!({ "person": true, "integration_user": false }),
            "{}: the condition skips the integration user alone",
            example.name
        );
        assert_eq!(run["log"], json!([]), "{}: the script complained", example.name);
        let sent = run["sent"].as_array().unwrap();
        assert_eq!(sent.len(), 1, "{}: one request", example.name);
        let request = &sent[0];
        assert_eq!(
            (request["endpoint"].as_str(), request["method"].as_str()),
            (Some(setup.endpoint.as_str()), Some("post"))
        );
        assert_eq!(request["headers"]["Content-Type"], "application/json");
        assert_eq!(request["headers"]["X-Seam-Timestamp"], example.sent_at.to_string().as_str(), "{}", example.name);
        assert_eq!(request["headers"]["X-Seam-Signature"], example.signature.as_str(), "{}", example.name);
        assert_eq!(request["body"].as_str(), Some(example.body.as_str()), "{}: the body, byte for byte", example.name);

        // The request as the instance sends it, to intake.
        let mut post =
            client.post(format!("{base}/intake/ex{i}/servicenow")).body(request["body"].as_str().unwrap().to_string());
        for (name, value) in request["headers"].as_object().unwrap() {
            post = post.header(name, value.as_str().unwrap());
        }
        let answer = post.send().await.unwrap();
        assert_eq!(answer.status(), 202, "{}", example.name);
        assert_eq!(answer.json::<Value>().await.unwrap(), json!({ "accepted": 1, "duplicates": 0 }));
        let entries = journal.entries(&format!("ex{i}")).unwrap();
        let sys_id = example.elements.iter().find(|e| e.name == "sys_id").and_then(|e| e.value.clone()).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(
            entries[0].event_key.starts_with(&format!("sn:{sys_id}:"))
                && entries[0].event_key.ends_with(&example.operation)
        );
    }
}

/// The ServiceNow emulator runs seam's rule as the script does (it has no JavaScript engine):
/// for the contract's records it sends the contract's bytes, signed as the contract says.
#[test]
fn the_emulated_rule_sends_the_contracts_bytes_for_the_contracts_records() {
    for example in Contract::load().examples {
        let mut fields = BTreeMap::new();
        let mut displays = BTreeMap::new();
        let mut journal = BTreeMap::new();
        for el in &example.elements {
            match el.kind.as_str() {
                "journal_list" => {}
                "journal" | "journal_input" => {
                    let entry = el.journal.clone().unwrap_or_default();
                    if let Some((_, text)) = entry.split_once('\n') {
                        let text = text.trim_end_matches('\n');
                        if !text.is_empty() {
                            journal.insert(el.name.clone(), text.to_string());
                        }
                    }
                }
                _ => {
                    let value = el.value.clone().unwrap_or_default();
                    if let Some(shown) = el.display.clone().filter(|d| !d.is_empty() && *d != value) {
                        displays.insert(el.name.clone(), shown);
                    }
                    fields.insert(el.name.clone(), value);
                }
            }
        }
        let sent = seam_sim::servicenow::push::body(&example.table, &example.operation, &fields, &displays, &journal);
        assert_eq!(sent, example.body, "{}", example.name);
        assert_eq!(signature(&example.secret, example.sent_at, sent.as_bytes()), example.signature, "{}", example.name);
    }
}

/// The emulator knows seam's rule by the first line of its script, and its properties by their prefix.
#[test]
fn the_emulator_recognises_the_rule_seam_ships() {
    assert_eq!(seam_sim::servicenow::push::SCRIPT_MARKER, seam::setup::servicenow::SCRIPT_MARKER);
    assert_eq!(seam_sim::servicenow::push::property_prefix("acme"), property_prefix("acme"));
    let body = b"{\"table\":\"incident\"}";
    let signed = seam_sim::servicenow::push::signed_headers("s3cret", 1_700_000_000, body);
    assert_eq!(signed, seam::intake::servicenow::signed_headers("s3cret", 1_700_000_000, body));
}
