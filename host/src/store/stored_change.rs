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

    /// One field of each value type, including text that JSON must escape.
    fn every_value() -> Vec<Field> {
        vec![
            Field { name: "Reason".into(), value: Value::Null },
            Field { name: "IsEscalated".into(), value: Value::Bool(true) },
            Field { name: "IsClosed".into(), value: Value::Bool(false) },
            Field { name: "Count".into(), value: Value::Number(3.0) },
            Field { name: "Amount".into(), value: Value::Number(-1234.5) },
            Field { name: "Ratio".into(), value: Value::Number(0.001) },
            Field { name: "Big".into(), value: Value::Number(9_007_199_254_740_992.0) },
            Field::new("Subject", "line one\nline \"two\" \\ tab\t ünïcode ✓ 😀"),
            Field::new("Empty", ""),
        ]
    }

    #[test]
    fn every_kind_system_and_value_type_reads_back_linked_or_not() {
        let systems = [System::Salesforce, System::Servicenow, System::Slack];
        for kind in [ChangeKind::Created, ChangeKind::Updated, ChangeKind::Deleted] {
            for (n, &system) in systems.iter().enumerate() {
                for linked in [None, Some(systems[(n + 1) % systems.len()])] {
                    let snapshot = every_value();
                    // Every field changed: half as the snapshot holds it, half at another value.
                    let changed: Vec<Field> = snapshot
                        .iter()
                        .enumerate()
                        .map(|(i, f)| if i % 2 == 0 { f.clone() } else { Field::new(f.name.clone(), "other") })
                        .collect();
                    let c = Change {
                        event_id: format!("{system}:{kind:?}:{linked:?}"),
                        kind,
                        source: RecordRef { system, object: "Case".into(), id: "500xx0000001".into() },
                        changed,
                        snapshot,
                        origin_user: "0055g0000000001AAA".into(),
                        linked: linked.map(|system| RecordRef { system, object: "incident".into(), id: "abc".into() }),
                    };
                    let text = encode(&c);
                    assert!(text.starts_with(PREFIX), "{text}");
                    assert_eq!(decode(&text).unwrap(), c, "{text}");
                }
            }
        }
    }

    #[test]
    fn the_stored_form_is_exactly_the_compact_one() {
        // Rows in the journal outlive the build that wrote them: the form must not drift.
        let c = Change {
            event_id: "sn:abc:2:delete".into(),
            kind: ChangeKind::Deleted,
            source: RecordRef { system: System::Servicenow, object: "incident".into(), id: "abc".into() },
            changed: vec![Field::new("state", "7"), Field { name: "active".into(), value: Value::Bool(false) }],
            snapshot: vec![Field { name: "active".into(), value: Value::Bool(false) }, Field::new("state", "6")],
            origin_user: String::new(),
            linked: None,
        };
        let text = r#"{"v":2,"id":"sn:abc:2:delete","kind":"deleted","source":["servicenow","incident","abc"],"snapshot":[["active",false],["state","6"]],"changed":[2,0],"other":[["state","7"]]}"#;
        assert_eq!(encode(&c), text);
        assert_eq!(decode(text).unwrap(), c);

        let linked = Change {
            origin_user: "005".into(),
            linked: Some(RecordRef { system: System::Salesforce, object: "Case".into(), id: "500".into() }),
            kind: ChangeKind::Created,
            changed: vec![],
            snapshot: vec![Field { name: "n".into(), value: Value::Number(1.5) }, Field::new("x", Value::Null)],
            ..c
        };
        let text = r#"{"v":2,"id":"sn:abc:2:delete","kind":"created","source":["servicenow","incident","abc"],"snapshot":[["n",1.5],["x",null]],"changed":[],"user":"005","linked":["salesforce","Case","500"]}"#;
        assert_eq!(encode(&linked), text);
        assert_eq!(decode(text).unwrap(), linked);
    }

    #[test]
    fn a_changed_field_repeated_or_matching_a_repeated_snapshot_name_reads_back() {
        let snapshot = vec![Field::new("A", "1"), Field::new("A", "2"), Field::new("B", "1")];
        let c = change(
            vec![Field::new("A", "2"), Field::new("A", "2"), Field::new("A", "3"), Field::new("A", "3")],
            snapshot,
            "",
            false,
        );
        let text = encode(&c);
        assert!(text.contains(r#""changed":[1,1,3,4]"#), "{text}");
        assert_eq!(decode(&text).unwrap(), c);
    }

    #[test]
    fn a_stored_change_naming_a_field_it_lacks_is_an_error_not_a_panic() {
        let bad = r#"{"v":2,"id":"e","kind":"updated","source":["salesforce","Case","1"],"snapshot":[],"changed":[3]}"#;
        let err = decode(bad).unwrap_err();
        assert!(format!("{err:#}").contains("field 3"), "{err:#}");
    }

    mod roundtrip {
        use super::super::{decode, encode};
        use crate::model::{Change, ChangeKind, Field, RecordRef, System, Value};
        use proptest::prelude::*;

        fn system() -> impl Strategy<Value = System> {
            prop_oneof![Just(System::Salesforce), Just(System::Servicenow), Just(System::Slack)]
        }

        fn record() -> impl Strategy<Value = RecordRef> {
            (system(), "[A-Za-z_]{1,8}", "\\PC{0,12}").prop_map(|(system, object, id)| RecordRef { system, object, id })
        }

        /// Numbers as the systems send them (integers and short decimals): serde_json, built
        /// without `float_roundtrip`, may read a 17-digit double back one unit off.
        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                (any::<i32>(), 0..4u32).prop_map(|(n, places)| Value::Number(f64::from(n) / 10f64.powi(places as i32))),
                "\\PC{0,16}".prop_map(Value::Text),
            ]
        }

        /// Few names, so that changed fields often repeat a snapshot's name (at its value or another).
        fn field() -> impl Strategy<Value = Field> {
            ("[abc]", value()).prop_map(|(name, value)| Field { name, value })
        }

        fn change() -> impl Strategy<Value = Change> {
            let kind = prop_oneof![Just(ChangeKind::Created), Just(ChangeKind::Updated), Just(ChangeKind::Deleted)];
            let snapshot = proptest::collection::vec(field(), 0..6);
            (
                snapshot,
                proptest::collection::vec(field(), 0..4),
                proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            )
                .prop_flat_map(move |(snapshot, fresh, picks)| {
                    // The changed fields: some taken from the snapshot as it holds them, some not.
                    let mut changed: Vec<Field> = if snapshot.is_empty() {
                        vec![]
                    } else {
                        picks.iter().map(|i| i.get(&snapshot).clone()).collect()
                    };
                    changed.extend(fresh);
                    (
                        kind.clone(),
                        "\\PC{0,20}",
                        record(),
                        Just(snapshot),
                        Just(changed).prop_shuffle(),
                        "\\PC{0,10}",
                        proptest::option::of(record()),
                    )
                })
                .prop_map(|(kind, event_id, source, snapshot, changed, origin_user, linked)| Change {
                    event_id,
                    kind,
                    source,
                    changed,
                    snapshot,
                    origin_user,
                    linked,
                })
        }

        proptest! {
            #[test]
            fn any_change_reads_back_as_it_was_written(c in change()) {
                let text = encode(&c);
                prop_assert!(text.starts_with(super::super::PREFIX), "{}", text);
                prop_assert_eq!(decode(&text).unwrap(), c);
            }
        }
    }
}
