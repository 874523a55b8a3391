//! Changes prepared for one call into a pack.
//!
//! Crossing into a guest has a fixed cost (entering the instance, arming its
//! deadline, lifting the answer) about as large as the default mapping
//! itself; a batch pays it once for all its changes.

use super::bindings::{v0_1_0, v0_2_0, ApiVersion};
use crate::model::Change;

/// Changes ready for one call, in the form the pack's API version takes.
pub(crate) enum Batch {
    /// 0.1.0 takes one change per call: the call loops over them on one instance.
    V0_1_0(Vec<v0_1_0::types::Change>),
    /// 0.2.0 takes them packed, all in one call.
    V0_2_0(v0_2_0::types::ChangeBatch),
}

impl Batch {
    pub fn of<'a>(api: ApiVersion, changes: impl IntoIterator<Item = &'a Change>) -> Batch {
        let changes = changes.into_iter();
        let n = changes.size_hint().0.max(1);
        let mut batch = match api {
            ApiVersion::V0_1_0 => Batch::V0_1_0(Vec::with_capacity(n)),
            // Sized for a change of a few dozen fields, so packing rarely grows them.
            ApiVersion::V0_2_0 => Batch::V0_2_0(v0_2_0::types::ChangeBatch {
                text: String::with_capacity(n * 2048),
                fields: Vec::with_capacity(n * 256),
                changes: Vec::with_capacity(n),
            }),
        };
        for change in changes {
            batch.push(change);
        }
        batch
    }

    pub fn push(&mut self, change: &Change) {
        match self {
            Batch::V0_1_0(changes) => changes.push(change.into()),
            Batch::V0_2_0(batch) => v0_2_0::push(batch, change),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Batch::V0_1_0(changes) => changes.len(),
            Batch::V0_2_0(batch) => batch.changes.len(),
        }
    }
}
