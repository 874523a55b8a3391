//! `seam:sync@0.1.0`: generated bindings and conversions to the host model.

use crate::model;

wasmtime::component::bindgen!({
    path: "../wit/since_v0.1.0",
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
        path: "../wit/since_v0.1.0",
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

super::model_conversions!();

fn fields_in(fields: &[model::Field]) -> Vec<types::Field> {
    fields.iter().map(Into::into).collect()
}

impl From<&model::Change> for types::Change {
    fn from(c: &model::Change) -> Self {
        types::Change {
            event_id: c.event_id.clone(),
            kind: c.kind.into(),
            source: (&c.source).into(),
            changed: fields_in(&c.changed),
            snapshot: fields_in(&c.snapshot),
            origin_user: c.origin_user.clone(),
            linked: c.linked.as_ref().map(Into::into),
        }
    }
}
