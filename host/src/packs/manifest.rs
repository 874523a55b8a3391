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

#[cfg(test)]
mod tests {
    use super::{DeletePolicy, Deletes, Manifest};
    use crate::engine::ownership::{Mirror, Ownership};
    use crate::model::System;
    use crate::runtime::{Grants, World};
    use serde_json::json;

    fn parse(manifest: serde_json::Value) -> anyhow::Result<Manifest> {
        Manifest::parse(manifest.to_string().as_bytes())
    }

    /// The error's whole chain, as an operator reads it.
    fn refusal(manifest: serde_json::Value) -> String {
        format!("{:#}", parse(manifest).expect_err("the manifest is refused"))
    }

    fn minimal() -> serde_json::Value {
        json!({ "name": "case-incident", "version": "1.2.0", "world": "seam:sync/mapping@0.1.0" })
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut manifest = minimal();
        manifest[key] = value;
        manifest
    }

    #[test]
    fn a_manifest_with_every_field_parses_into_each() {
        let manifest = parse(json!({
            "name": "case-incident-2",
            "version": "1.2.0-beta.1",
            "world": "seam:sync/mapping@0.1.0",
            "description": "Cases to incidents",
            "ownership": { "mirrors": [{ "system": "servicenow", "object": "incident", "fields": ["short_description"] }] },
            "deletes": { "salesforce": "close", "servicenow": "delete" },
            "lookups": [{ "system": "salesforce", "object": "Account", "fields": ["Name", "Tier__c"] }],
        }))
        .unwrap();
        assert_eq!(manifest.name, "case-incident-2");
        assert_eq!(manifest.version, "1.2.0-beta.1");
        assert_eq!(manifest.world, "seam:sync/mapping@0.1.0");
        assert_eq!(manifest.description, "Cases to incidents");
        assert_eq!(
            manifest.ownership,
            Some(Ownership {
                mirrors: vec![Mirror {
                    system: System::Servicenow,
                    object: "incident".into(),
                    fields: vec!["short_description".into()],
                }]
            })
        );
        let deletes = manifest.deletes.clone().expect("deletes");
        assert_eq!(deletes, Deletes { salesforce: DeletePolicy::Close, servicenow: DeletePolicy::Delete });
        assert_eq!(deletes.policy(System::Salesforce), DeletePolicy::Close);
        assert_eq!(deletes.policy(System::Servicenow), DeletePolicy::Delete);
        assert_eq!(manifest.lookups.0.len(), 1);
        let grant = &manifest.lookups.0[0];
        assert_eq!((grant.system, grant.object.as_str()), (System::Salesforce, "Account"));
        assert_eq!(grant.fields, ["Name", "Tier__c"]);
        let (world, version) = manifest.world_version().unwrap();
        assert_eq!((world, version), (World::Mapping, semver::Version::new(0, 1, 0)));
        assert_eq!(manifest.kind(), World::Mapping);
        assert_eq!(manifest.id(), "case-incident-2@1.2.0-beta.1");
        // And it writes out to a manifest that reads back the same.
        assert_eq!(Manifest::parse(&serde_json::to_vec(&manifest).unwrap()).unwrap(), manifest);
    }

    #[test]
    fn a_minimal_manifest_takes_the_defaults() {
        let manifest = parse(minimal()).unwrap();
        assert_eq!(manifest.description, "");
        assert_eq!(manifest.ownership, None);
        assert_eq!(manifest.deletes, None);
        assert_eq!(manifest.lookups, Grants::default());
        // Deletes named for one side only: the other unlinks.
        let half = parse(with("deletes", json!({ "servicenow": "close" }))).unwrap().deletes.unwrap();
        assert_eq!((half.salesforce, half.servicenow), (DeletePolicy::Unlink, DeletePolicy::Close));
        let workflow = parse(with("world", json!("seam:sync/workflow@0.2.1"))).unwrap();
        assert_eq!(workflow.kind(), World::Workflow);
        assert_eq!(workflow.world_version().unwrap().1, semver::Version::new(0, 2, 1));
    }

    #[test]
    fn unknown_keys_are_refused_by_name_at_every_level() {
        let top = refusal(with("colour", json!("blue")));
        assert!(top.contains("the manifest is not valid JSON of the expected shape"), "{top}");
        assert!(top.contains("unknown field `colour`"), "{top}");
        let deletes = refusal(with("deletes", json!({ "slack": "unlink" })));
        assert!(deletes.contains("unknown field `slack`"), "{deletes}");
        let ownership = refusal(with("ownership", json!({ "mirrors": [], "owner": "salesforce" })));
        assert!(ownership.contains("unknown field `owner`"), "{ownership}");
        let mirror = refusal(with(
            "ownership",
            json!({ "mirrors": [{ "system": "servicenow", "object": "incident", "fields": [], "field": "x" }] }),
        ));
        assert!(mirror.contains("unknown field `field`"), "{mirror}");
    }

    #[test]
    fn a_bad_world_is_refused_saying_what_is_wrong_with_it() {
        let cases = [
            ("sync/mapping@0.1.0", "world \"sync/mapping@0.1.0\" must be `seam:sync/<world>@<version>`"),
            ("seam:sync/mapping", "world \"seam:sync/mapping\" has no `@<version>`"),
            (
                "seam:sync/mapper@0.1.0",
                "world \"seam:sync/mapper@0.1.0\": seam:sync has the worlds mapping and workflow, not \"mapper\"",
            ),
            ("seam:sync/mapping@0.1", "world \"seam:sync/mapping@0.1\": \"0.1\" is not a version"),
            ("", "world \"\" must be `seam:sync/<world>@<version>`"),
        ];
        for (world, expected) in cases {
            let error = refusal(with("world", json!(world)));
            assert!(error.starts_with(expected), "{world:?}: {error}");
        }
    }

    #[test]
    fn a_bad_version_or_name_is_refused_by_name() {
        for version in ["1.2", "v1.2.0", "", "1.2.0.0", "01.2.0"] {
            let error = refusal(with("version", json!(version)));
            assert!(
                error.starts_with(&format!("pack version {version:?} is not a semantic version like 1.2.0")),
                "{version:?}: {error}"
            );
        }
        for name in ["", "Case-Incident", "case_incident", "case incident", "cäse"] {
            let error = refusal(with("name", json!(name)));
            assert_eq!(error, format!("pack name {name:?} must be lower-case letters, digits and dashes"));
        }
        let error = refusal(with("version", json!(1)));
        assert!(error.contains("invalid type: integer `1`, expected a string"), "{error}");
        let error = refusal(json!({ "name": "x", "world": "seam:sync/mapping@0.1.0" }));
        assert!(error.contains("missing field `version`"), "{error}");
    }

    #[test]
    fn a_bad_system_name_is_refused_naming_the_systems_there_are() {
        let expected = "unknown variant `jira`, expected one of `salesforce`, `servicenow`, `slack`";
        let ownership = refusal(with(
            "ownership",
            json!({ "mirrors": [{ "system": "jira", "object": "issue", "fields": ["summary"] }] }),
        ));
        assert!(ownership.contains(expected), "{ownership}");
        let lookups = refusal(with("lookups", json!([{ "system": "jira", "object": "issue", "fields": ["*"] }])));
        assert!(lookups.contains(expected), "{lookups}");
        // The manifest spells systems in lower case, as seam.json does.
        let capital = refusal(with(
            "ownership",
            json!({ "mirrors": [{ "system": "Salesforce", "object": "Case", "fields": ["Status"] }] }),
        ));
        assert!(capital.contains("unknown variant `Salesforce`"), "{capital}");
        let policy = refusal(with("deletes", json!({ "salesforce": "archive" })));
        assert!(policy.contains("unknown variant `archive`, expected one of `unlink`, `close`, `delete`"), "{policy}");
    }

    #[test]
    fn a_workflow_pack_may_not_say_who_owns_fields_or_what_deletes_do() {
        let workflow = |key: &str, value: serde_json::Value| {
            let mut manifest = with("world", json!("seam:sync/workflow@0.1.0"));
            manifest[key] = value;
            refusal(manifest)
        };
        let ownership = workflow("ownership", json!({ "mirrors": [] }));
        assert!(ownership.starts_with("a workflow pack has no ownership map"), "{ownership}");
        let deletes = workflow("deletes", json!({}));
        assert!(deletes.starts_with("a workflow pack has no delete policy"), "{deletes}");
        // A mapping pack may say both.
        let mut mapping = with("ownership", json!({ "mirrors": [] }));
        mapping["deletes"] = json!({});
        assert!(parse(mapping).is_ok());
    }

    #[test]
    fn delete_policies_are_named_as_the_manifest_spells_them() {
        for policy in [DeletePolicy::Unlink, DeletePolicy::Close, DeletePolicy::Delete] {
            assert_eq!(serde_json::to_value(policy).unwrap(), json!(policy.name()));
        }
        assert_eq!(
            [DeletePolicy::Unlink, DeletePolicy::Close, DeletePolicy::Delete].map(DeletePolicy::name),
            ["unlink", "close", "delete"]
        );
    }
}
