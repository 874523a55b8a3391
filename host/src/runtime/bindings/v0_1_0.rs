//! `seam:sync@0.1.0`: generated bindings and conversions to the host model.

use crate::model;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "seam:sync/mapping@0.1.0",
    // `lookup` may call out to Salesforce or ServiceNow, so imports are async;
    // trappable lets a host error stop the guest instead of lying to it.
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::seam::sync::types;

/// World `workflow`: the same imports and types, exporting `automation`.
pub mod workflow {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "seam:sync/workflow@0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
        // One set of types and one implementation of the imports serves both worlds.
        with: {
            "seam:sync/types": super::seam::sync::types,
            "seam:sync/log": super::seam::sync::log,
            "seam:sync/lookup": super::seam::sync::lookup,
        },
    });
}

impl From<types::System> for model::System {
    fn from(s: types::System) -> Self {
        match s {
            types::System::Salesforce => model::System::Salesforce,
            types::System::Servicenow => model::System::Servicenow,
            types::System::Slack => model::System::Slack,
        }
    }
}

impl From<model::System> for types::System {
    fn from(s: model::System) -> Self {
        match s {
            model::System::Salesforce => types::System::Salesforce,
            model::System::Servicenow => types::System::Servicenow,
            model::System::Slack => types::System::Slack,
        }
    }
}

impl From<types::Value> for model::Value {
    fn from(v: types::Value) -> Self {
        match v {
            types::Value::Null => model::Value::Null,
            types::Value::Text(s) => model::Value::Text(s),
            types::Value::Number(n) => model::Value::Number(n),
            types::Value::Boolean(b) => model::Value::Bool(b),
        }
    }
}

impl From<&model::Value> for types::Value {
    fn from(v: &model::Value) -> Self {
        match v {
            model::Value::Null => types::Value::Null,
            model::Value::Text(s) => types::Value::Text(s.clone()),
            model::Value::Number(n) => types::Value::Number(*n),
            model::Value::Bool(b) => types::Value::Boolean(*b),
        }
    }
}

impl From<types::Field> for model::Field {
    fn from(f: types::Field) -> Self {
        model::Field { name: f.name, value: f.value.into() }
    }
}

impl From<&model::Field> for types::Field {
    fn from(f: &model::Field) -> Self {
        types::Field { name: f.name.clone(), value: (&f.value).into() }
    }
}

impl From<types::RecordRef> for model::RecordRef {
    fn from(r: types::RecordRef) -> Self {
        model::RecordRef { system: r.system.into(), object: r.object, id: r.id }
    }
}

impl From<&model::RecordRef> for types::RecordRef {
    fn from(r: &model::RecordRef) -> Self {
        types::RecordRef { system: r.system.into(), object: r.object.clone(), id: r.id.clone() }
    }
}

fn fields_in(fields: &[model::Field]) -> Vec<types::Field> {
    fields.iter().map(Into::into).collect()
}

fn fields_out(fields: Vec<types::Field>) -> Vec<model::Field> {
    fields.into_iter().map(Into::into).collect()
}

impl From<&model::Change> for types::Change {
    fn from(c: &model::Change) -> Self {
        types::Change {
            event_id: c.event_id.clone(),
            kind: match c.kind {
                model::ChangeKind::Created => types::ChangeKind::Created,
                model::ChangeKind::Updated => types::ChangeKind::Updated,
                model::ChangeKind::Deleted => types::ChangeKind::Deleted,
            },
            source: (&c.source).into(),
            changed: fields_in(&c.changed),
            snapshot: fields_in(&c.snapshot),
            origin_user: c.origin_user.clone(),
            linked: c.linked.as_ref().map(Into::into),
        }
    }
}

impl From<types::Target> for model::Target {
    fn from(t: types::Target) -> Self {
        match t {
            types::Target::Linked => model::Target::Linked,
            types::Target::Source => model::Target::Source,
            types::Target::Explicit(r) => model::Target::Explicit(r.into()),
        }
    }
}

impl From<types::Action> for model::Action {
    fn from(a: types::Action) -> Self {
        match a {
            types::Action::Update(u) => model::Action::Update { target: u.target.into(), fields: fields_out(u.fields) },
            types::Action::AppendJournal(j) => model::Action::AppendJournal {
                target: j.target.into(),
                kind: match j.kind {
                    types::JournalKind::WorkNote => model::JournalKind::WorkNote,
                    types::JournalKind::Comment => model::JournalKind::Comment,
                },
                text: j.text,
            },
            types::Action::Create(c) => model::Action::Create {
                system: c.system.into(),
                object: c.object,
                fields: fields_out(c.fields),
                link_to_source: c.link_to_source,
            },
            types::Action::PostSlack(p) => {
                model::Action::PostSlack { channel: p.channel, create_channel: p.create_channel, text: p.text }
            }
        }
    }
}
