//! `seam:sync@0.1.0`: generated bindings, conversions to the host model, and
//! the version's host side. A call takes one change; a batch is one call per
//! change, on the same instance.

use super::{to_model, Answer, ApiVersion, PackInstance};
use crate::model;
use crate::runtime::records::BoxFuture;
use crate::runtime::state::PackState;
use wasmtime::Store;

pub const VERSION: ApiVersion = ApiVersion("0.1.0");

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

super::sync_api!(mapping: "map-change", workflow: "on-change");

/// One change per call: a batch is a loop of calls on the same instance.
macro_rules! one_change_per_call {
    ($instance:ty, $interface:ident, $call:ident) => {
        impl PackInstance for $instance {
            fn run<'a>(
                &'a self,
                store: &'a mut Store<PackState>,
                changes: &'a [&'a model::Change],
            ) -> BoxFuture<'a, wasmtime::Result<Vec<Answer>>> {
                Box::pin(async move {
                    let mut answers = Vec::with_capacity(changes.len());
                    for &change in changes {
                        answers.push(self.$interface().$call(&mut *store, &change.into()).await?);
                    }
                    Ok(to_model(answers))
                })
            }
        }
    };
}
one_change_per_call!(Mapping, seam_sync_mapper, call_map_change);
one_change_per_call!(workflow::Workflow, seam_sync_automation, call_on_change);
