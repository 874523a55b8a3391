//! Bindings for each `seam:sync` version this host serves.
//!
//! Like Zed's extension host, the host reads which API version a component
//! exports and picks the matching bindings; each version converts to the
//! host's own [`crate::model`] types. A new WIT version gets a sibling module
//! (built from a frozen copy of its WIT) and a new [`ApiVersion`] arm.

pub mod v0_1_0;

use anyhow::{bail, Result};
use std::fmt;
use wasmtime::component::Component;
use wasmtime::Engine;

/// The `seam:sync` API versions this host can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    V0_1_0,
}

impl ApiVersion {
    pub const SUPPORTED: &'static [ApiVersion] = &[ApiVersion::V0_1_0];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V0_1_0 => "0.1.0",
        }
    }

    fn parse(version: &str) -> Option<Self> {
        Self::SUPPORTED.iter().copied().find(|v| v.as_str() == version)
    }

    /// Which world and version `component` implements, read from its
    /// `seam:sync/mapper@X` or `seam:sync/automation@X` export.
    pub fn of(engine: &Engine, component: &Component) -> Result<(World, Self)> {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
        let found = exports.iter().find_map(|name| World::ALL.iter().find(|w| name.starts_with(w.export())).map(|w| (*w, *name)));
        let Some((world, export)) = found else {
            bail!(
                "the component exports neither seam:sync/mapper nor seam:sync/automation (it exports: {}); \
                 build it with seam-guest and `export_mapper!` or `export_workflow!`",
                if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
            );
        };
        let version = export.split_once('@').map(|(_, v)| v).unwrap_or("unversioned");
        match Self::parse(version) {
            Some(v) => Ok((world, v)),
            None => bail!(
                "the component targets seam:sync@{version}, but this host serves seam:sync@{}; \
                 rebuild the pack against a seam-guest for one of those versions",
                Self::SUPPORTED.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// What kind of pack a component is, by the world it implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// Exports `mapper`: carries a record's changes to its partner. One per tenant.
    Mapping,
    /// Exports `automation`: reacts to changes across systems. Any number per tenant.
    Workflow,
}

impl World {
    pub const ALL: &'static [World] = &[World::Mapping, World::Workflow];

    pub fn as_str(self) -> &'static str {
        match self {
            World::Mapping => "mapping",
            World::Workflow => "workflow",
        }
    }

    pub fn parse(name: &str) -> Option<World> {
        Self::ALL.iter().copied().find(|w| w.as_str() == name)
    }

    /// The interface a component of this world exports.
    fn export(self) -> &'static str {
        match self {
            World::Mapping => "seam:sync/mapper@",
            World::Workflow => "seam:sync/automation@",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seam:sync@{}", self.as_str())
    }
}
