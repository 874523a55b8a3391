//! Host side of the `seam:sync` imports: one file per WIT interface. The
//! logic is version-neutral; each version's bindings module
//! (`runtime/bindings/v0_x_0.rs`) expands the macros here to implement its
//! generated traits. `types` only declares types: its trait is empty.

pub mod log;
pub mod lookup;
