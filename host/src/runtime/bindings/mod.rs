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

    /// Which version `component` was built against, read from its `seam:sync/mapper@X` export.
    pub fn of(engine: &Engine, component: &Component) -> Result<Self> {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
        let Some(export) = exports.iter().find(|name| name.starts_with("seam:sync/mapper")) else {
            bail!(
                "the component exports no seam:sync/mapper interface (it exports: {}); \
                 build it with seam-guest and `export_mapper!`",
                if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
            );
        };
        let version = export.split_once('@').map(|(_, v)| v).unwrap_or("unversioned");
        match Self::parse(version) {
            Some(v) => Ok(v),
            None => bail!(
                "the component targets seam:sync@{version}, but this host serves seam:sync@{}; \
                 rebuild the pack against a seam-guest for one of those versions",
                Self::SUPPORTED.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seam:sync@{}", self.as_str())
    }
}
