//! Host side of the `seam:sync` imports: one file per WIT interface.

pub mod log;
pub mod lookup;

use super::bindings::{v0_1_0, v0_2_0};
use super::state::PluginState;

// `types` only declares types; the generated trait has nothing to implement.
impl v0_1_0::seam::sync::types::Host for PluginState {}
impl v0_2_0::seam::sync::types::Host for PluginState {}
