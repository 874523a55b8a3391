//! What a pack says about itself: name, version, the `seam:sync` world it
//! implements, the fields it mirrors (ownership), what becomes of a deleted
//! record's partner (deletes) and what it may look up.

use crate::engine::ownership::Ownership;
use crate::model::System;
use crate::runtime::{Grants, World};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Lower-case letters, digits and dashes: `case-incident`.
    pub name: String,
    /// Semantic version: `1.2.0`.
    pub version: String,
    /// The world the component implements, with its version: `seam:sync/mapping@0.1.0`.
    pub world: String,
    #[serde(default)]
    pub description: String,
    /// Which fields each side mirrors; the host enforces it for every pack of the tenant.
    /// Absent: the default Case ⇄ Incident map. Mapping packs only.
    #[serde(default)]
    pub ownership: Option<Ownership>,
    /// What becomes of a record's partner when the record is deleted. Absent: both sides
    /// unlink. Mapping packs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<Deletes>,
    /// What the pack may read through `lookup`.
    #[serde(default)]
    pub lookups: Grants,
}

/// The delete policy, by the system in which the record was deleted:
/// `{"salesforce": "unlink", "servicenow": "close"}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deletes {
    /// When a Case is deleted: what becomes of its incident.
    #[serde(default)]
    pub salesforce: DeletePolicy,
    /// When an incident is deleted: what becomes of its Case.
    #[serde(default)]
    pub servicenow: DeletePolicy,
}

impl Deletes {
    pub fn policy(&self, deleted_in: System) -> DeletePolicy {
        match deleted_in {
            System::Salesforce => self.salesforce,
            _ => self.servicenow,
        }
    }
}

/// What becomes of the partner of a deleted record. In every case the pack first maps the
/// delete like any change (a note on the partner, say), and the link goes: the partner's link
/// fields are cleared, or the partner is deleted with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletePolicy {
    /// The partner stays as it is, no longer synced.
    #[default]
    Unlink,
    /// The pack's actions close the partner (they must update it), and it is unlinked.
    Close,
    /// The partner is deleted too.
    Delete,
}

impl DeletePolicy {
    /// As the manifest spells it.
    pub fn name(self) -> &'static str {
        match self {
            DeletePolicy::Unlink => "unlink",
            DeletePolicy::Close => "close",
            DeletePolicy::Delete => "delete",
        }
    }
}

impl Manifest {
    pub fn parse(json: &[u8]) -> Result<Manifest> {
        let manifest: Manifest =
            serde_json::from_slice(json).context("the manifest is not valid JSON of the expected shape")?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            bail!("pack name {:?} must be lower-case letters, digits and dashes", self.name);
        }
        semver::Version::parse(&self.version)
            .with_context(|| format!("pack version {:?} is not a semantic version like 1.2.0", self.version))?;
        let (world, _) = self.world_version()?;
        if world == World::Workflow && self.ownership.is_some() {
            bail!("a workflow pack has no ownership map: the tenant's mapping pack (or its configuration) says which side owns each field; remove `ownership` from the manifest");
        }
        if world == World::Workflow && self.deletes.is_some() {
            bail!("a workflow pack has no delete policy: the tenant's mapping pack says what becomes of a deleted record's partner; remove `deletes` from the manifest");
        }
        Ok(())
    }

    /// `seam:sync/mapping@0.1.0` → (mapping, 0.1.0).
    pub fn world_version(&self) -> Result<(World, semver::Version)> {
        let rest = self
            .world
            .strip_prefix("seam:sync/")
            .with_context(|| format!("world {:?} must be `seam:sync/<world>@<version>`", self.world))?;
        let (name, version) =
            rest.split_once('@').with_context(|| format!("world {:?} has no `@<version>`", self.world))?;
        let world = World::parse(name).with_context(|| {
            format!("world {:?}: seam:sync has the worlds mapping and workflow, not {name:?}", self.world)
        })?;
        let version = semver::Version::parse(version)
            .with_context(|| format!("world {:?}: {version:?} is not a version", self.world))?;
        Ok((world, version))
    }

    /// Mapping or workflow (a manifest is validated when parsed, so this is known).
    pub fn kind(&self) -> World {
        self.world_version().map(|(w, _)| w).unwrap_or(World::Mapping)
    }

    /// What a component loaded without a manifest is taken to be: its load name and
    /// version, the world version it exports, the grants it was loaded with.
    pub fn describing(linked: &crate::runtime::LinkedPack) -> Manifest {
        let meta = linked.meta();
        Manifest {
            name: meta.name.clone(),
            version: meta.version.clone(),
            world: format!("seam:sync/{}@{}", linked.world(), linked.api().as_str()),
            description: String::new(),
            ownership: None,
            deletes: None,
            lookups: linked.grants().clone(),
        }
    }

    /// `name@version`, as the audit trail records it.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

#[cfg(test)]
mod fuzz {
    use super::Manifest;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a pack's author (or a tampered pack) puts in the manifest section, parsing
        /// answers with a manifest or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = Manifest::parse(&bytes);
        }

        #[test]
        fn arbitrary_fields_never_panic(name in "\\PC{0,20}", version in "\\PC{0,12}", world in "\\PC{0,40}") {
            let json = serde_json::json!({ "name": name, "version": version, "world": world, "lookups": {} });
            let _ = Manifest::parse(json.to_string().as_bytes());
        }
    }
}
