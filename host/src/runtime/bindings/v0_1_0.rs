//! `seam:sync@0.1.0`: generated bindings, conversions to the host model, and
//! the version's host side. A call takes one change; a batch is one call per
//! change, on the same instance.

use super::{prepared_pack, to_model, Answer, ApiVersion, PackInstance, PreparedPack, SyncApi, World};
use crate::model;
use crate::runtime::records::BoxFuture;
use crate::runtime::state::PackState;
use wasmtime::component::{HasSelf, InstancePre, Linker};
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

pub(crate) struct Api;

impl SyncApi for Api {
    fn version(&self) -> ApiVersion {
        VERSION
    }

    fn add_to_linker(&self, linker: &mut Linker<PackState>) -> wasmtime::Result<()> {
        // Both worlds import the same interfaces; the mapping world's adds them all.
        Mapping::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
    }

    fn prepare(&self, world: World, pre: InstancePre<PackState>) -> wasmtime::Result<Box<dyn PreparedPack>> {
        Ok(match world {
            World::Mapping => Box::new(MappingPre::new(pre)?),
            World::Workflow => Box::new(workflow::WorkflowPre::new(pre)?),
        })
    }

    fn export(&self, world: World) -> &'static str {
        match world {
            World::Mapping => "map-change",
            World::Workflow => "on-change",
        }
    }
}

prepared_pack!(MappingPre<PackState>);
prepared_pack!(workflow::WorkflowPre<PackState>);

impl PackInstance for Mapping {
    fn run<'a>(
        &'a self,
        store: &'a mut Store<PackState>,
        changes: &'a [&'a model::Change],
    ) -> BoxFuture<'a, wasmtime::Result<Vec<Answer>>> {
        Box::pin(async move {
            let mut answers = Vec::with_capacity(changes.len());
            for &change in changes {
                answers.push(self.seam_sync_mapper().call_map_change(&mut *store, &change.into()).await?);
            }
            Ok(to_model(answers))
        })
    }
}

impl PackInstance for workflow::Workflow {
    fn run<'a>(
        &'a self,
        store: &'a mut Store<PackState>,
        changes: &'a [&'a model::Change],
    ) -> BoxFuture<'a, wasmtime::Result<Vec<Answer>>> {
        Box::pin(async move {
            let mut answers = Vec::with_capacity(changes.len());
            for &change in changes {
                answers.push(self.seam_sync_automation().call_on_change(&mut *store, &change.into()).await?);
            }
            Ok(to_model(answers))
        })
    }
}

// The imports: `types` declares types only; `log` and `lookup` as every version serves them.
impl types::Host for PackState {}
crate::runtime::imports::log::log_host!();
crate::runtime::imports::lookup::lookup_host!();
