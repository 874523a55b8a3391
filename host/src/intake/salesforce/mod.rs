//! Salesforce's changes: Outbound Messages (SOAP) posted to intake, parsed here, and
//! Change Data Capture events over the Pub/Sub API, subscribed to in [`pubsub`].

pub mod pubsub;

use crate::engine::normalize;
use crate::model::{Change, ChangeKind};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};

/// The acknowledgement Salesforce waits for; without it, it sends the message again.
pub const ACK: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#;

/// Salesforce sends at most 100 notifications in one message; more is not Salesforce.
pub const MAX_NOTIFICATIONS: usize = 100;
/// An Outbound Message nests about six deep; far deeper is an attack on the parser.
const MAX_DEPTH: usize = 32;

pub struct OutboundMessage {
    pub organization_id: String,
    /// (event key, change) per `<Notification>`.
    pub changes: Vec<(String, Change)>,
}

fn attribute(e: &BytesStart, local: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local.as_bytes())
        .and_then(|a| a.unescape_value().ok())
        .map(|v| v.into_owned())
}

/// An Outbound Message field value: SOAP carries text; booleans are the one type worth restoring.
fn field_value(text: String) -> Value {
    match text.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(text),
    }
}

#[derive(Default)]
struct Notification {
    id: String,
    object: String,
    fields: Map<String, Value>,
}

pub fn parse_outbound(body: &[u8]) -> Result<OutboundMessage, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the Outbound Message is not UTF-8".to_string())?;
    let mut reader = Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut organization_id = None;
    let mut notifications: Vec<Notification> = Vec::new();
    let mut buffer = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed Outbound Message at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if path.len() >= MAX_DEPTH {
                    return Err(format!(
                        "the Outbound Message nests deeper than {MAX_DEPTH} elements; Salesforce's nest about six"
                    ));
                }
                match name.as_str() {
                    "Notification" if notifications.len() == MAX_NOTIFICATIONS => {
                        return Err(format!("the Outbound Message carries more than {MAX_NOTIFICATIONS} Notifications, which Salesforce never sends"));
                    }
                    "Notification" => notifications.push(Notification::default()),
                    "sObject" => {
                        let ty = attribute(&e, "type").ok_or("an sObject has no xsi:type")?;
                        let current = notifications.last_mut().ok_or("an sObject outside a Notification")?;
                        current.object = ty.rsplit(':').next().unwrap_or_default().to_string();
                    }
                    _ => {}
                }
                path.push(name);
                buffer.clear();
            }
            // `<sf:Field xsi:nil="true"/>` inside an sObject is an explicit null.
            Event::Empty(e) if path.last().map(String::as_str) == Some("sObject") => {
                if let Some(n) = notifications.last_mut() {
                    n.fields.insert(String::from_utf8_lossy(e.local_name().as_ref()).into_owned(), Value::Null);
                }
            }
            Event::Text(t) => buffer.push_str(&crate::xml::text(&t)?),
            Event::GeneralRef(r) => buffer.push_str(&crate::xml::reference(&r)?),
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let parent = path.last().map(String::as_str);
                match (parent, name.as_str()) {
                    (Some("notifications"), "OrganizationId") => organization_id = Some(buffer.trim().to_string()),
                    (Some("Notification"), "Id") => {
                        if let Some(n) = notifications.last_mut() {
                            n.id = buffer.trim().to_string();
                        }
                    }
                    (Some("sObject"), field) => {
                        if let Some(n) = notifications.last_mut() {
                            n.fields.insert(field.to_string(), field_value(std::mem::take(&mut buffer)));
                        }
                    }
                    _ => {}
                }
                buffer.clear();
            }
            // Entity definitions are how XML bombs and external entities start; SOAP has none.
            Event::DocType(_) => {
                return Err(
                    "the Outbound Message has a DOCTYPE, which SOAP forbids (entity definitions are refused)".into()
                )
            }
            // A message cut short would otherwise be read as the Notifications before the cut.
            Event::Eof if !path.is_empty() => {
                return Err(format!(
                    "the Outbound Message ends inside <{}>: it was cut short; nothing of it is stored",
                    path.join("><")
                ))
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let organization_id = organization_id.ok_or("not an Outbound Message: no OrganizationId")?;
    if notifications.is_empty() {
        return Err("the Outbound Message carries no Notification".into());
    }
    let mut changes = Vec::new();
    for n in notifications {
        if n.id.is_empty() || n.object.is_empty() || !n.fields.contains_key("Id") {
            return Err("a Notification lacks its Id, its sObject type or the record Id".into());
        }
        // An Outbound Message carries the whole record, not what changed; the engine diffs it against the shadow.
        let created =
            n.fields.get("CreatedDate").is_some() && n.fields.get("CreatedDate") == n.fields.get("LastModifiedDate");
        let kind = if created { ChangeKind::Created } else { ChangeKind::Updated };
        // Keyed by record version, as the catch-up poller keys what it reads; a
        // message without SystemModstamp is keyed by its notification id.
        let id = n.fields.get("Id").and_then(Value::as_str).unwrap_or_default();
        let version = n
            .fields
            .get("SystemModstamp")
            .and_then(Value::as_str)
            .and_then(|stamp| normalize::salesforce_version_key(id, stamp));
        let key = version.unwrap_or_else(|| format!("sf-om:{}", n.id));
        changes.push((key.clone(), normalize::salesforce(&key, kind, &n.object, &n.fields, None)));
    }
    Ok(OutboundMessage { organization_id, changes })
}

#[cfg(test)]
mod fuzz {
    //! Property tests over the Outbound Message parser: it never panics, a message it
    //! accepts is read whole, and a cut-off one is refused (never stored in part).
    use super::*;
    use proptest::prelude::*;
    use seam_sim::salesforce::soap::{notification, outbound_message};

    fn message(subjects: &[String]) -> String {
        let notifications: Vec<String> = subjects
            .iter()
            .enumerate()
            .map(|(i, subject)| {
                let record = serde_json::json!({ "Id": format!("500{i:015}"), "Subject": subject, "SystemModstamp": "2026-12-02T10:00:00.000Z" });
                notification(&format!("04l{i:015}"), "Case", record.as_object().unwrap())
            })
            .collect();
        outbound_message(
            "00D000000000001AAA",
            "https://x.example",
            &notifications.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_outbound(&bytes);
        }

        #[test]
        fn any_text_in_any_number_of_notifications_is_read_whole(subjects in proptest::collection::vec("\\PC{0,40}", 1..8)) {
            let parsed = parse_outbound(message(&subjects).as_bytes()).unwrap();
            prop_assert_eq!(parsed.changes.len(), subjects.len());
            for ((_, change), subject) in parsed.changes.iter().zip(&subjects) {
                let got = change.snapshot.iter().find(|f| f.name == "Subject").and_then(|f| f.value.as_text()).unwrap_or_default();
                prop_assert_eq!(got, subject.as_str());
            }
        }

        #[test]
        fn a_message_cut_short_is_refused(subjects in proptest::collection::vec("[a-z &<>]{0,12}", 1..5), cut in 0.0f64..1.0) {
            let whole = message(&subjects);
            let end = whole.trim_end().len();
            let at = ((end as f64) * cut) as usize;
            prop_assume!(whole.is_char_boundary(at) && at < end);
            prop_assert!(parse_outbound(&whole.as_bytes()[..at]).is_err(), "accepted {} of {} bytes", at, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value as V;

    #[test]
    fn reads_nulls_entities_and_ids_of_an_outbound_message() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00D000000000001AAA</OrganizationId>
   <ActionId>04k000000000001AAA</ActionId>
   <Notification>
    <Id>04l000000000001AAA</Id>
    <sObject xsi:type="sf:Case" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>500000000000001AAA</sf:Id>
     <sf:Subject>Checkout &amp; payments &lt;down&gt;</sf:Subject>
     <sf:Description xsi:nil="true"/>
     <sf:IsClosed>false</sf:IsClosed>
     <sf:CreatedDate>2024-05-01T10:00:00.000Z</sf:CreatedDate>
     <sf:LastModifiedDate>2024-05-01T10:05:00.000Z</sf:LastModifiedDate>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#;
        let m = parse_outbound(body.as_bytes()).unwrap();
        assert_eq!(m.organization_id, "00D000000000001AAA");
        let (key, change) = &m.changes[0];
        assert_eq!(key, "sf-om:04l000000000001AAA");
        assert_eq!(change.source.id, "500000000000001AAA");
        assert_eq!(change.kind, ChangeKind::Updated);
        let get = |n: &str| change.snapshot.iter().find(|f| f.name == n).map(|f| f.value.clone());
        assert_eq!(get("Subject"), Some(V::from("Checkout & payments <down>")));
        assert_eq!(get("Description"), Some(V::Null));
        assert_eq!(get("IsClosed"), Some(V::Bool(false)));
        assert!(parse_outbound(b"<notifications/>").is_err());
    }
}
