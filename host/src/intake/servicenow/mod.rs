//! ServiceNow notifications: what seam's push business rule sends
//! (`notification.json` beside this file defines the body and the signature,
//! with worked examples).
//!
//! An async business rule reads the record when its job runs and has no
//! previous version, so a notification carries the record whole, as it is
//! then; the engine's echo filter finds what is news by comparing it with
//! what seam last synced. Journal fields come as their latest entry's text.

use crate::engine::normalize;
use crate::model::{Change, ChangeKind, Field};
use serde_json::{json, Map, Value};

/// The contract: the body's shape, the signature, and worked examples.
pub const CONTRACT: &str = include_str!("notification.json");

/// When the rule signed the notification, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Seam-Timestamp";
/// `sha256=` and the MAC of the timestamp and the body ([`signature`]).
pub const SIGNATURE_HEADER: &str = "X-Seam-Signature";
/// How far a notification's signing time may be from intake's clock, either way. Older is
/// refused as a replay: someone who captured a signed notification cannot send it again later.
pub const MAX_AGE_SECONDS: i64 = 300;

/// `sha256=` and the Base64 HMAC-SHA256 of `{timestamp}.{body}`, keyed with the secret's UTF-8
/// bytes (`GlideCertificateEncryption.generateMac(GlideStringUtil.base64Encode(secret), "HmacSHA256", …)`).
/// The timestamp is inside the MAC, so it cannot be moved without the key.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    format!("sha256={}", base64::engine::general_purpose::STANDARD.encode(mac(secret, timestamp, body)))
}

/// The raw HMAC-SHA256 of `{timestamp}.{body}`.
pub fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The two headers a signed notification carries, signed at `timestamp`.
pub fn signed_headers(secret: &str, timestamp: i64, body: &[u8]) -> [(String, String); 2] {
    [
        (TIMESTAMP_HEADER.to_string(), timestamp.to_string()),
        (SIGNATURE_HEADER.to_string(), signature(secret, timestamp, body)),
    ]
}

/// `{"event_id", "table", "sys_id", "operation", "current", "display_values", "journal", …}` → (event key, change).
pub fn parse(body: &[u8]) -> Result<(String, Change), String> {
    let n: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let text = |k: &str| {
        n.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| format!("the notification has no {k}"))
    };
    let (event_id, table, sys_id) = (text("event_id")?, text("table")?, text("sys_id")?);
    let kind = match text("operation")? {
        "insert" => ChangeKind::Created,
        "update" => ChangeKind::Updated,
        "delete" => ChangeKind::Deleted,
        other => return Err(format!("unknown operation {other:?}; expected insert, update or delete")),
    };
    let current = n.get("current").and_then(Value::as_object).ok_or("the notification has no current record")?;
    if current.get("sys_id").and_then(Value::as_str) != Some(sys_id) {
        return Err("current.sys_id does not match sys_id".into());
    }
    let displays = n.get("display_values").and_then(Value::as_object).cloned().unwrap_or_default();
    // The same shape the Table API gives with sysparm_display_value=all, so one normalizer serves both.
    let record: Map<String, Value> = current
        .iter()
        .map(|(k, v)| match displays.get(k) {
            Some(d) => (k.clone(), json!({ "value": v, "display_value": d })),
            None => (k.clone(), v.clone()),
        })
        .collect();
    let key = format!("sn:{event_id}");
    // The record whole: every field is in the change, and the echo filter keeps what is news.
    let mut change = normalize::servicenow(&key, kind, table, &record, None);
    // Journal fields read back empty; their latest entries come apart.
    for (element, value) in n.get("journal").and_then(Value::as_object).into_iter().flatten() {
        let Some(value) = value.as_str().filter(|v| !v.is_empty()) else { continue };
        for list in [&mut change.snapshot, &mut change.changed] {
            list.retain(|f| &f.name != element);
            list.push(Field::new(element.clone(), value));
        }
    }
    Ok((key, change))
}

/// The contract's worked examples, for the tests of each party.
#[derive(serde::Deserialize)]
pub struct Contract {
    pub signature_header: String,
    pub timestamp_header: String,
    pub examples: Vec<Example>,
}

/// One record as the platform's `current` holds it, and the request the rule sends for it.
#[derive(serde::Deserialize)]
pub struct Example {
    pub name: String,
    pub table: String,
    pub operation: String,
    pub secret: String,
    pub elements: Vec<Element>,
    /// When the rule sends it (Unix seconds): the `X-Seam-Timestamp` header.
    pub sent_at: i64,
    /// The request body, byte for byte.
    pub body: String,
    /// `sha256=<Base64 HMAC-SHA256 of "{sent_at}.{body}">`.
    pub signature: String,
}

/// One field of `current`: its internal type, value and display value, or a journal's entries.
#[derive(serde::Deserialize)]
pub struct Element {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub display: Option<String>,
    #[serde(default)]
    pub journal: Option<String>,
}

impl Contract {
    pub fn load() -> Contract {
        serde_json::from_str(CONTRACT).expect("notification.json is the contract's own file and parses")
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        /// Each of the contract's examples, cut anywhere, is refused: never read in part.
        #[test]
        fn a_notification_cut_short_is_refused(example in 0usize..4, cut in 0.0f64..1.0) {
            let examples = Contract::load().examples;
            let body = examples[example % examples.len()].body.trim_end().to_string();
            let at = ((body.len() as f64) * cut) as usize;
            prop_assume!(body.is_char_boundary(at) && at < body.len());
            prop_assert!(parse(&body.as_bytes()[..at]).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value as V;

    #[test]
    fn each_example_of_the_contract_reads_as_the_change_it_describes() {
        let contract = Contract::load();
        assert_eq!(contract.signature_header, "X-Seam-Signature");
        for example in &contract.examples {
            let (key, change) = parse(example.body.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", example.name));
            let sys_id = example.elements.iter().find(|e| e.name == "sys_id").and_then(|e| e.value.clone()).unwrap();
            let count =
                example.elements.iter().find(|e| e.name == "sys_mod_count").and_then(|e| e.value.clone()).unwrap();
            assert_eq!(key, format!("sn:{sys_id}:{count}:{}", example.operation), "{}", example.name);
            assert_eq!(
                (change.source.id.as_str(), change.source.object.as_str()),
                (sys_id.as_str(), example.table.as_str())
            );
            let get = |name: &str| change.snapshot.iter().find(|f| f.name == name).map(|f| f.value.clone());
            for element in &example.elements {
                match element.kind.as_str() {
                    "journal_list" => assert_eq!(get(&element.name), None),
                    "journal" | "journal_input" => {
                        let entry = element.journal.clone().unwrap_or_default();
                        let text = entry
                            .split_once('\n')
                            .map(|(_, t)| t.trim_end_matches('\n').to_string())
                            .unwrap_or_default();
                        assert_eq!(
                            get(&element.name),
                            (!text.is_empty()).then(|| V::from(text.as_str())),
                            "{}: {}",
                            example.name,
                            element.name
                        );
                    }
                    _ => {
                        let value = element.value.clone().unwrap_or_default();
                        assert_eq!(
                            get(&element.name),
                            Some(V::from(value.as_str())),
                            "{}: {}",
                            example.name,
                            element.name
                        );
                        if let Some(shown) = element.display.as_ref().filter(|d| !d.is_empty() && **d != value) {
                            assert_eq!(get(&format!("{}.display", element.name)), Some(V::from(shown.as_str())));
                        }
                    }
                }
            }
            assert_eq!(
                change.origin_user,
                example.elements.iter().find(|e| e.name == "sys_updated_by").and_then(|e| e.value.clone()).unwrap()
            );
        }
        let update = parse(contract.examples[1].body.as_bytes()).unwrap().1;
        assert_eq!(update.linked.map(|l| l.id), Some("5005g00000ABCDeAAF".to_string()));
        assert!(update
            .changed
            .iter()
            .any(|f| f.name == "work_notes" && f.value == V::from("Gateway pool \\ restarted; watching.")));
    }

    #[test]
    fn a_body_that_is_not_the_contracts_says_what_is_missing() {
        assert!(parse(b"[]").unwrap_err().contains("no event_id"));
        let e = parse(br#"{"event_id":"a:0:insert","table":"incident","sys_id":"a","operation":"upsert","current":{"sys_id":"a"}}"#).unwrap_err();
        assert!(e.contains("unknown operation"), "{e}");
        let e = parse(br#"{"event_id":"a:0:insert","table":"incident","sys_id":"a","operation":"insert","current":{"sys_id":"b"}}"#).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
    }
}
