//! The echo filter: which of a record's changed fields are news, given what
//! seam last synced of it (the shadow) and the values it wrote whose
//! notifications have not come back (expected echoes).
//!
//! The processor runs it on every event; intake runs it too, inside the
//! journal write that stores a notification, so a change that is nothing but
//! seam's own write coming back is settled there and never queued
//! ([`settled_echo`]).

use super::ownership;
use crate::model::{latest_fields, Change, ChangeKind, Field, RecordRef, System, Value};
use crate::store::journal::{Outcome, ShadowFields};
use std::collections::HashMap;

/// The news in `changes` (one event's change, or a record's coalesced
/// updates, oldest first), each field at its latest value. Expected echoes a
/// change was are added to `out.consumed`, record versions seen to `out.shadow`.
///
/// A system announces a record's changes in order, so while a value seam
/// wrote has not come back, the record's notifications are older than that
/// write: the written value in one is seam's own echo (even if a later write
/// moved the shadow on), any other value of that field is stale. Otherwise
/// only values that differ from the last synced one are news. Display values
/// (`assigned_to.display`) follow their field.
///
/// Out of order: a catch-up poll can journal a record as it is now ahead of
/// notifications still on their way for its earlier versions. Once a newer
/// version has been seen, an older one is history, not news (its expected
/// echoes are still consumed).
///
/// Coalesced changes go through both in turn, against what the record held
/// after the one before (`seen`); a field that went somewhere and came back
/// while its updates waited is not news.
pub fn news(
    source: &RecordRef,
    changes: &[&Change],
    shadow: &HashMap<String, Value>,
    expected: &[(i64, String, Value)],
    out: &mut Outcome,
) -> Vec<Field> {
    let mut seen = shadow.clone();
    let mut fresh_per_change: Vec<Vec<Field>> = Vec::with_capacity(changes.len());
    for c in changes {
        let mut fresh: Vec<Field> = if c.kind == ChangeKind::Deleted {
            vec![]
        } else {
            c.changed
                .iter()
                .filter(|f| !f.name.ends_with(".display") && !ownership::system_managed(source.system, &f.name))
                .filter(|f| {
                    let echo = expected
                        .iter()
                        .find(|(id, name, value)| name == &f.name && value == &f.value && !out.consumed.contains(id));
                    match echo {
                        Some((id, ..)) => {
                            out.consumed.push(*id);
                            false
                        }
                        None if expected.iter().any(|(id, name, _)| name == &f.name && !out.consumed.contains(id)) => {
                            false
                        }
                        None => seen.get(&f.name) != Some(&f.value),
                    }
                })
                .cloned()
                .collect()
        };
        if let Some((field, version)) = record_version(c) {
            match seen.get(field) {
                Some(newest) if newer(newest, &version) => fresh.clear(),
                _ => {
                    out.shadow.push((source.clone(), field.to_string(), version.clone()));
                    seen.insert(field.to_string(), version);
                }
            }
        }
        for f in &fresh {
            seen.insert(f.name.clone(), f.value.clone());
        }
        fresh_per_change.push(fresh);
    }
    let mut news = latest_fields(&fresh_per_change);
    news.retain(|f| shadow.get(&f.name) != Some(&f.value));
    news
}

/// Intake's check: when `change`, an update, holds no news, the outcome that
/// settles it as an echo (the expected echoes it consumes, the version it
/// brings). The caller makes sure no earlier event of the record is still
/// waiting, so the filter sees the record as the processor would.
///
/// [`news`] reads the shadow of the changed fields and the version only, so
/// only those are asked for.
pub fn settled_echo(
    change: &Change,
    shadow: &ShadowFields,
    expected: &[(i64, String, Value)],
) -> anyhow::Result<Option<Outcome>> {
    if change.kind != ChangeKind::Updated {
        return Ok(None);
    }
    let mut fields: Vec<&str> = change.changed.iter().map(|f| f.name.as_str()).collect();
    fields.extend(version_field(change.source.system));
    let shadow = shadow(&fields)?;
    let mut out = Outcome::default();
    Ok(news(&change.source, &[change], &shadow, expected, &mut out).is_empty().then_some(out))
}

/// The field that versions a record in its system, and this change's value of it:
/// ServiceNow's `sys_mod_count`, Salesforce's `SystemModstamp`.
fn record_version(change: &Change) -> Option<(&'static str, Value)> {
    let field = version_field(change.source.system)?;
    let value = change.snapshot.iter().find(|f| f.name == field)?.value.clone();
    value.as_text().filter(|v| !v.is_empty())?;
    Some((field, value))
}

fn version_field(system: System) -> Option<&'static str> {
    match system {
        System::Servicenow => Some("sys_mod_count"),
        System::Salesforce => Some("SystemModstamp"),
        System::Slack => None,
    }
}

/// Whether version `seen` is later than `version` (mod counts as numbers,
/// Salesforce's ISO timestamps as text, which orders them).
fn newer(seen: &Value, version: &Value) -> bool {
    let (Some(a), Some(b)) = (seen.as_text(), version.as_text()) else { return false };
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a > b,
        _ => a > b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> RecordRef {
        RecordRef { system: System::Servicenow, object: "incident".into(), id: "inc1".into() }
    }

    /// An incident update that changed `changed`, at record version `mod_count`.
    fn update(changed: &[(&str, &str)], mod_count: &str) -> Change {
        let changed: Vec<Field> = changed.iter().map(|(n, v)| Field::new(*n, *v)).collect();
        let mut snapshot = changed.clone();
        snapshot.push(Field::new("sys_mod_count", mod_count));
        Change {
            event_id: format!("sn:inc1:{mod_count}"),
            kind: ChangeKind::Updated,
            source: incident(),
            changed,
            snapshot,
            origin_user: String::new(),
            linked: None,
        }
    }

    fn shadow(fields: &[(&str, &str)]) -> HashMap<String, Value> {
        fields.iter().map(|(n, v)| (n.to_string(), Value::from(*v))).collect()
    }

    fn names(news: &[Field]) -> Vec<&str> {
        news.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn seams_own_value_coming_back_is_no_news_and_consumes_its_expectation() {
        let mut out = Outcome::default();
        let news = news(
            &incident(),
            &[&update(&[("state", "2")], "4")],
            &shadow(&[("state", "2")]),
            &[(7, "state".into(), "2".into())],
            &mut out,
        );
        assert!(news.is_empty(), "{news:?}");
        assert_eq!(out.consumed, vec![7]);
    }

    #[test]
    fn an_echo_of_an_earlier_write_is_recognised_after_a_later_write_moved_the_shadow_on() {
        // seam wrote state 2, then state 3; the notification of the first write arrives now.
        let expected = [(1, "state".to_string(), Value::from("2")), (2, "state".to_string(), Value::from("3"))];
        let mut out = Outcome::default();
        let first =
            news(&incident(), &[&update(&[("state", "2")], "4")], &shadow(&[("state", "3")]), &expected, &mut out);
        assert!(first.is_empty(), "{first:?}");
        assert_eq!(out.consumed, vec![1], "the first write's echo, not the second's");
    }

    #[test]
    fn a_partial_echo_keeps_the_persons_field_as_news() {
        let mut out = Outcome::default();
        let change = update(&[("state", "2"), ("urgency", "1")], "5");
        let news = news(
            &incident(),
            &[&change],
            &shadow(&[("state", "2"), ("urgency", "3")]),
            &[(3, "state".into(), "2".into())],
            &mut out,
        );
        assert_eq!(names(&news), vec!["urgency"]);
        assert_eq!(out.consumed, vec![3]);
    }

    #[test]
    fn another_value_of_a_field_whose_write_has_not_come_back_is_stale() {
        // The notification is older than seam's write of state 3, which is still on its way.
        let mut out = Outcome::default();
        let news = news(
            &incident(),
            &[&update(&[("state", "1")], "3")],
            &shadow(&[("state", "3")]),
            &[(4, "state".into(), "3".into())],
            &mut out,
        );
        assert!(news.is_empty(), "{news:?}");
        assert!(out.consumed.is_empty(), "the write's own echo is still expected");
    }

    #[test]
    fn without_expectations_only_a_value_unlike_the_shadow_is_news() {
        let mut out = Outcome::default();
        let change = update(&[("state", "2"), ("urgency", "1")], "5");
        let news = news(&incident(), &[&change], &shadow(&[("state", "2"), ("urgency", "3")]), &[], &mut out);
        assert_eq!(names(&news), vec!["urgency"]);
        assert_eq!(
            out.shadow,
            vec![(incident(), "sys_mod_count".to_string(), Value::from("5"))],
            "the version seen is kept"
        );
    }

    #[test]
    fn a_version_older_than_one_seen_is_history() {
        let mut out = Outcome::default();
        let news = news(
            &incident(),
            &[&update(&[("state", "6")], "5")],
            &shadow(&[("state", "2"), ("sys_mod_count", "7")]),
            &[],
            &mut out,
        );
        assert!(news.is_empty(), "{news:?}");
        assert!(out.shadow.is_empty(), "the shadow keeps the newer version");
    }

    #[test]
    fn a_field_that_went_and_came_back_while_its_updates_waited_is_not_news() {
        let (there, back) = (update(&[("state", "3")], "5"), update(&[("state", "2")], "6"));
        let mut out = Outcome::default();
        let news = news(&incident(), &[&there, &back], &shadow(&[("state", "2")]), &[], &mut out);
        assert!(news.is_empty(), "{news:?}");
    }

    #[test]
    fn intake_settles_only_updates_that_hold_no_news() {
        let shadow_of = |fields: &[&str]| -> anyhow::Result<HashMap<String, Value>> {
            let all = shadow(&[("state", "2"), ("sys_mod_count", "3")]);
            Ok(fields.iter().filter_map(|f| all.get(*f).map(|v| (f.to_string(), v.clone()))).collect())
        };
        let echo =
            settled_echo(&update(&[("state", "2")], "4"), &shadow_of, &[(9, "state".into(), "2".into())]).unwrap();
        assert_eq!(echo.map(|o| o.consumed), Some(vec![9]));
        assert!(settled_echo(&update(&[("state", "6")], "4"), &shadow_of, &[]).unwrap().is_none(), "news is queued");
        let mut created = update(&[("state", "2")], "1");
        created.kind = ChangeKind::Created;
        assert!(settled_echo(&created, &shadow_of, &[]).unwrap().is_none(), "a create is never settled at intake");
    }
}
