//! Host side of the `seam:sync` imports: one file per WIT interface.

pub mod log;
pub mod lookup;

use super::bindings::{v0_1_0, v0_2_0};
use super::state::PackState;

// `types` only declares types; the generated trait has nothing to implement.
impl v0_1_0::seam::sync::types::Host for PackState {}
impl v0_2_0::seam::sync::types::Host for PackState {}
