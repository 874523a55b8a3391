//! A mapping pack for seam:sync@0.1.0, generated straight from that version's
//! frozen WIT (today's seam-guest builds 0.2.0 packs): the Case's Subject
//! becomes the linked incident's short_description, and a Case without a
//! Subject is refused.

wit_bindgen::generate!({
    path: "../../../wit/since_v0.1.0",
    world: "mapping",
});

use exports::seam::sync::mapper::Guest;
use seam::sync::types::{Action, Change, Field, Target, Update, Value};

struct Legacy;

impl Guest for Legacy {
    fn map_change(change: Change) -> Result<Vec<Action>, String> {
        let subject = change.snapshot.iter().find(|f| f.name == "Subject").map(|f| f.value.clone());
        match subject {
            Some(Value::Text(subject)) => Ok(vec![Action::Update(Update {
                target: Target::Linked,
                fields: vec![Field { name: "short_description".into(), value: Value::Text(subject) }],
            })]),
            _ => Err(format!("{} has no Subject", change.source.id)),
        }
    }
}

export!(Legacy);
