//! `seam:sync@0.2.0`: generated bindings, conversions to the host model, the
//! packing of changes into a `change-batch`, and the version's host side. A
//! call takes the whole batch, packed.

use super::{to_model, Answer, ApiVersion, PackInstance};
use crate::model;
use crate::runtime::records::BoxFuture;
use crate::runtime::state::PackState;
use wasmtime::Store;

pub const VERSION: ApiVersion = ApiVersion("0.2.0");

wasmtime::component::bindgen!({
    path: "../wit/since_v0.2.0",
    world: "seam:sync/mapping@0.2.0",
    // `lookup` may call out to Salesforce or ServiceNow, so imports are async;
    // trappable lets a host error stop the guest instead of lying to it.
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::seam::sync::types;

/// World `workflow`: the same imports and types, exporting `automation`.
pub mod workflow {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.2.0",
        world: "seam:sync/workflow@0.2.0",
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

/// Changes packed into one batch: their strings go onto the batch's one text
/// and their fields onto its one word list, so lowering the batch into the
/// guest takes three allocations there, however many changes and fields it carries.
pub fn pack(changes: &[&model::Change]) -> types::ChangeBatch {
    let n = changes.len().max(1);
    // Sized for a change of a few dozen fields, so packing rarely grows them.
    let mut batch = types::ChangeBatch {
        text: String::with_capacity(n * 2048),
        fields: Vec::with_capacity(n * 256),
        changes: Vec::with_capacity(n),
    };
    for change in changes {
        let packed = Packer(&mut batch).change(change);
        batch.changes.push(packed);
    }
    batch
}

/// Words per field in `change-batch.fields`: name span, value tag, two value words.
const FIELD_WORDS: usize = 5;

struct Packer<'a>(&'a mut types::ChangeBatch);

impl Packer<'_> {
    fn change(&mut self, c: &model::Change) -> types::PackedChange {
        types::PackedChange {
            event_id: self.span(&c.event_id),
            kind: c.kind.into(),
            source: self.record(&c.source),
            changed: self.fields(&c.changed),
            snapshot: self.fields(&c.snapshot),
            origin_user: self.span(&c.origin_user),
            linked: c.linked.as_ref().map(|r| self.record(r)),
        }
    }

    // Offsets are u32 as the WIT has them: a batch is bounded by the guest's
    // memory limit (64 MiB by default), far below 4 GiB.
    fn span(&mut self, s: &str) -> types::Span {
        let start = self.0.text.len() as u32;
        self.0.text.push_str(s);
        types::Span { start, len: s.len() as u32 }
    }

    fn record(&mut self, r: &model::RecordRef) -> types::PackedRef {
        types::PackedRef { system: r.system.into(), object: self.span(&r.object), id: self.span(&r.id) }
    }

    fn fields(&mut self, fields: &[model::Field]) -> types::FieldRange {
        let start = (self.0.fields.len() / FIELD_WORDS) as u32;
        for f in fields {
            let name = self.span(&f.name);
            let (tag, a, b) = match &f.value {
                model::Value::Null => (0, 0, 0),
                model::Value::Text(s) => {
                    let span = self.span(s);
                    (1, span.start, span.len)
                }
                model::Value::Number(n) => (2, n.to_bits() as u32, (n.to_bits() >> 32) as u32),
                model::Value::Bool(b) => (3, *b as u32, 0),
            };
            self.0.fields.extend_from_slice(&[name.start, name.len, tag, a, b]);
        }
        types::FieldRange { start, len: fields.len() as u32 }
    }
}

super::sync_api!(mapping: "map-changes", workflow: "on-changes");

/// The whole batch, packed, in one call.
macro_rules! one_batch_per_call {
    ($instance:ty, $interface:ident, $call:ident) => {
        impl PackInstance for $instance {
            fn run<'a>(
                &'a self,
                store: &'a mut Store<PackState>,
                changes: &'a [&'a model::Change],
            ) -> BoxFuture<'a, wasmtime::Result<Vec<Answer>>> {
                Box::pin(async move { Ok(to_model(self.$interface().$call(store, &pack(changes)).await?)) })
            }
        }
    };
}
one_batch_per_call!(Mapping, seam_sync_mapper, call_map_changes);
one_batch_per_call!(workflow::Workflow, seam_sync_automation, call_on_changes);
