//! How the journal stores an event's change: compact JSON, not [`Change`]'s
//! public form (which `seam pack run` and the fixtures use, and which stays
//! as it is).
//!
//! A notification often carries the whole record, and its changed fields
//! repeat values the snapshot holds: a Salesforce Case event is 2.2 KB in the
//! public form. Every event row is written to the WAL when it is stored and
//! again when it is finished, so the journal writes about half as much when
//! the snapshot is `[name, value]` pairs and a changed field that matches
//! the snapshot is its index there.
//!
//! Rows written before this form (the public JSON) still read back.

use crate::model::{Change, ChangeKind, Field, RecordRef, System, Value};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The stored form; `S`/`V` borrow when writing and own when reading.
#[derive(Serialize, Deserialize)]
struct Stored<S, V> {
    /// The form's version: always first, so a reader tells the forms apart by the prefix.
    v: u8,
    id: S,
    kind: ChangeKind,
    source: (System, S, S),
    snapshot: Vec<(S, V)>,
    /// The changed fields in order: `i` below the snapshot's length is
    /// `snapshot[i]`; above it, `other[i - snapshot.len()]`.
    changed: Vec<usize>,
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    other: Vec<(S, V)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    linked: Option<(System, S, S)>,
}

const VERSION: u8 = 2;
const PREFIX: &str = "{\"v\":2,";

pub fn encode(change: &Change) -> String {
    let mut other = Vec::new();
    let changed = change
        .changed
        .iter()
        .map(|f| match change.snapshot.iter().position(|s| s.name == f.name && s.value == f.value) {
            Some(i) => i,
            None => {
                other.push((f.name.as_str(), &f.value));
                change.snapshot.len() + other.len() - 1
            }
        })
        .collect();
    let stored: Stored<&str, &Value> = Stored {
        v: VERSION,
        id: &change.event_id,
        kind: change.kind,
        source: (change.source.system, &change.source.object, &change.source.id),
        snapshot: change.snapshot.iter().map(|f| (f.name.as_str(), &f.value)).collect(),
        changed,
        other,
        user: Some(change.origin_user.as_str()).filter(|u| !u.is_empty()),
        linked: change.linked.as_ref().map(|r| (r.system, r.object.as_str(), r.id.as_str())),
    };
    serde_json::to_string(&stored).expect("a change always serializes")
}

pub fn decode(text: &str) -> Result<Change> {
    if !text.starts_with(PREFIX) {
        return serde_json::from_str(text).context("reading a change stored in its public form");
    }
    let s: Stored<String, Value> = serde_json::from_str(text).context("reading a stored change")?;
    let field = |(name, value): &(String, Value)| Field { name: name.clone(), value: value.clone() };
    let changed = s
        .changed
        .iter()
        .map(|&i| {
            s.snapshot
                .get(i)
                .or_else(|| s.other.get(i.wrapping_sub(s.snapshot.len())))
                .map(field)
                .with_context(|| format!("a stored change names field {i}, which it does not hold"))
        })
        .collect::<Result<Vec<_>>>()?;
    let record = |(system, object, id): (System, String, String)| RecordRef { system, object, id };
    Ok(Change {
        event_id: s.id,
        kind: s.kind,
        source: record(s.source),
        changed,
        snapshot: s.snapshot.into_iter().map(|(name, value)| Field { name, value }).collect(),
        origin_user: s.user.unwrap_or_default(),
        linked: s.linked.map(record),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(changed: Vec<Field>, snapshot: Vec<Field>, user: &str, linked: bool) -> Change {
        Change {
            event_id: "sf:500:1".into(),
            kind: ChangeKind::Updated,
            source: RecordRef { system: System::Salesforce, object: "Case".into(), id: "500".into() },
            changed,
            snapshot,
            origin_user: user.into(),
            linked: linked.then(|| RecordRef {
                system: System::Servicenow,
                object: "incident".into(),
                id: "abc".into(),
            }),
        }
    }

    #[test]
    fn every_change_reads_back_as_it_was_written() {
        let snapshot = vec![
            Field::new("Priority", "High"),
            Field { name: "Reason".into(), value: Value::Null },
            Field { name: "IsClosed".into(), value: Value::Bool(false) },
            Field { name: "Amount".into(), value: Value::Number(12.5) },
        ];
        let cases = [
            // Changed fields that are in the snapshot, in another order than the snapshot's.
            change(
                vec![Field { name: "IsClosed".into(), value: Value::Bool(false) }, Field::new("Priority", "High")],
                snapshot.clone(),
                "005",
                true,
            ),
            // A changed value the snapshot does not hold (or holds at another value), and one it lacks.
            change(
                vec![Field::new("Priority", "Low"), Field::new("Subject", "new \"quoted\" ünïcode")],
                snapshot.clone(),
                "",
                false,
            ),
            // No snapshot at all; nothing changed.
            change(vec![Field::new("Subject", "x")], vec![], "u", false),
            change(vec![], vec![], "", true),
        ];
        for c in cases {
            let text = encode(&c);
            assert!(text.starts_with(PREFIX), "{text}");
            assert_eq!(decode(&text).unwrap(), c, "{text}");
        }
    }

    #[test]
    fn a_whole_record_event_is_stored_in_about_half_the_space() {
        let snapshot: Vec<Field> = (0..26)
            .map(|i| {
                Field::new(
                    format!("Field{i}__c"),
                    if i % 3 == 0 { Value::Null } else { Value::Text(format!("value {i}")) },
                )
            })
            .collect();
        let c = change(snapshot[..15].to_vec(), snapshot, "0055g0000000001AAA", true);
        let (public, stored) = (serde_json::to_string(&c).unwrap(), encode(&c));
        assert!(stored.len() * 10 < public.len() * 6, "stored {} bytes, public {}", stored.len(), public.len());
    }

    #[test]
    fn a_change_stored_in_the_public_form_still_reads_back() {
        let c = change(vec![Field::new("Priority", "Low")], vec![Field::new("Priority", "Low")], "005", true);
        assert_eq!(decode(&serde_json::to_string(&c).unwrap()).unwrap(), c);
    }

    #[test]
    fn a_stored_change_naming_a_field_it_lacks_is_an_error_not_a_panic() {
        let bad = r#"{"v":2,"id":"e","kind":"updated","source":["salesforce","Case","1"],"snapshot":[],"changed":[3]}"#;
        let err = decode(bad).unwrap_err();
        assert!(format!("{err:#}").contains("field 3"), "{err:#}");
    }
}
