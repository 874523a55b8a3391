//! Bindings for each `seam:sync` version this host serves.
//!
//! Like Zed's extension host, the host reads which API version a component
//! exports and picks the matching bindings. Everything that differs between
//! versions lives in that version's module (`v0_x_0.rs`, built from its frozen
//! WIT in `wit/since_vX.Y.Z/`): the generated bindings, the conversions to the
//! host's [`crate::model`], how changes cross into a call, and the version's
//! implementation of the imports. Each module answers for its version through
//! [`SyncApi`]; the runtime knows only that trait. A new WIT version is a new
//! module and one entry in [`VERSIONS`].

pub mod v0_1_0;
pub mod v0_2_0;

/// The newest version: what seam-guest builds.
pub use v0_2_0 as latest;

use super::records::BoxFuture;
use super::state::PackState;
use crate::model::{Action, Change};
use anyhow::{bail, Result};
use std::fmt;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store};

/// Every version this host serves, oldest first.
pub(crate) const VERSIONS: &[&dyn SyncApi] = &[&v0_1_0::Api, &v0_2_0::Api];

/// One `seam:sync` version's host side.
pub(crate) trait SyncApi: Sync {
    fn version(&self) -> ApiVersion;
    /// Serve this version's imports (`types`, `log`, `lookup`) to packs.
    fn add_to_linker(&self, linker: &mut Linker<PackState>) -> wasmtime::Result<()>;
    /// Pre-link a component of `world` that exports this version.
    fn prepare(&self, world: World, pre: InstancePre<PackState>) -> wasmtime::Result<Box<dyn PreparedPack>>;
    /// The export the engine calls on a pack of `world`.
    fn export(&self, world: World) -> &'static str;
}

/// A pack pre-linked against one version and world, ready to instantiate.
pub(crate) trait PreparedPack: Send + Sync {
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<PackState>,
    ) -> BoxFuture<'a, wasmtime::Result<Box<dyn PackInstance>>>;
}

/// An instantiated pack.
pub(crate) trait PackInstance: Send + Sync {
    /// A mapping's `map-change(s)`, a workflow's `on-change(s)`: one answer per change, in order.
    fn run<'a>(
        &'a self,
        store: &'a mut Store<PackState>,
        changes: &'a [&'a Change],
    ) -> BoxFuture<'a, wasmtime::Result<Vec<Answer>>>;
}

/// What a pack answered for one change: its actions, or its refusal.
pub(crate) type Answer = Result<Vec<Action>, String>;

/// A version's answers as the host's model.
fn to_model<A: Into<Action>>(answers: Vec<Result<Vec<A>, String>>) -> Vec<Answer> {
    answers.into_iter().map(|answer| answer.map(|actions| actions.into_iter().map(Into::into).collect())).collect()
}

/// What every version's module has in the same shape, expanded there: its [`SyncApi`]
/// (`Api`), its generated `…Pre` types as [`PreparedPack`]s, and its imports (`types`
/// declares types only; `log` and `lookup` have the same body in every version so far).
/// A version gives the names of its two exports; how a change crosses (its
/// [`PackInstance`]s) is its own.
macro_rules! sync_api {
    (mapping: $mapping_export:literal, workflow: $workflow_export:literal) => {
        pub(crate) struct Api;

        impl crate::runtime::bindings::SyncApi for Api {
            fn version(&self) -> crate::runtime::bindings::ApiVersion {
                VERSION
            }

            fn add_to_linker(
                &self,
                linker: &mut wasmtime::component::Linker<crate::runtime::state::PackState>,
            ) -> wasmtime::Result<()> {
                // Both worlds import the same interfaces; the mapping world's adds them all.
                Mapping::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)
            }

            fn prepare(
                &self,
                world: crate::runtime::bindings::World,
                pre: wasmtime::component::InstancePre<crate::runtime::state::PackState>,
            ) -> wasmtime::Result<Box<dyn crate::runtime::bindings::PreparedPack>> {
                Ok(match world {
                    crate::runtime::bindings::World::Mapping => Box::new(MappingPre::new(pre)?),
                    crate::runtime::bindings::World::Workflow => Box::new(workflow::WorkflowPre::new(pre)?),
                })
            }

            fn export(&self, world: crate::runtime::bindings::World) -> &'static str {
                match world {
                    crate::runtime::bindings::World::Mapping => $mapping_export,
                    crate::runtime::bindings::World::Workflow => $workflow_export,
                }
            }
        }

        crate::runtime::bindings::prepared_pack!(MappingPre<crate::runtime::state::PackState>);
        crate::runtime::bindings::prepared_pack!(workflow::WorkflowPre<crate::runtime::state::PackState>);

        impl types::Host for crate::runtime::state::PackState {}
        crate::runtime::imports::log::log_host!();
        crate::runtime::imports::lookup::lookup_host!();
    };
}
use sync_api;

/// A generated `…Pre` type, whose `instantiate_async` gives its world's exports, as a [`PreparedPack`].
macro_rules! prepared_pack {
    ($pre:ty) => {
        impl crate::runtime::bindings::PreparedPack for $pre {
            fn instantiate<'a>(
                &'a self,
                store: &'a mut wasmtime::Store<crate::runtime::state::PackState>,
            ) -> crate::runtime::records::BoxFuture<
                'a,
                wasmtime::Result<Box<dyn crate::runtime::bindings::PackInstance>>,
            > {
                Box::pin(async move {
                    let instance = self.instantiate_async(store).await?;
                    Ok(Box::new(instance) as Box<dyn crate::runtime::bindings::PackInstance>)
                })
            }
        }
    };
}
use prepared_pack;

/// A `seam:sync` API version, as a component's export names it (`seam:sync/mapper@0.2.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiVersion(&'static str);

impl ApiVersion {
    /// The newest version this host serves.
    pub const LATEST: ApiVersion = latest::VERSION;

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Every version this host serves, oldest first.
    pub fn supported() -> impl Iterator<Item = ApiVersion> {
        VERSIONS.iter().map(|v| v.version())
    }

    /// This version's bindings.
    pub(crate) fn api(self) -> &'static dyn SyncApi {
        *VERSIONS.iter().find(|v| v.version() == self).expect("an ApiVersion is made only from VERSIONS")
    }

    /// The export the engine calls on a pack of `world`: `map-changes`, `on-change`…
    pub fn export(self, world: World) -> &'static str {
        self.api().export(world)
    }

    /// Which world and version `component` implements, read from its
    /// `seam:sync/mapper@X` or `seam:sync/automation@X` export.
    pub fn of(engine: &Engine, component: &Component) -> Result<(World, Self)> {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
        let found = exports
            .iter()
            .find_map(|name| World::ALL.iter().find(|w| name.starts_with(w.export())).map(|w| (*w, *name)));
        let Some((world, export)) = found else {
            bail!(
                "the component exports neither seam:sync/mapper nor seam:sync/automation (it exports: {}); \
                 build it with seam-guest and `export_mapper!` or `export_workflow!`",
                if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
            );
        };
        let version = export.split_once('@').map(|(_, v)| v).unwrap_or("unversioned");
        match Self::supported().find(|v| v.as_str() == version) {
            Some(v) => Ok((world, v)),
            None => bail!(
                "the component targets seam:sync@{version}, but this host serves seam:sync@{}; \
                 rebuild the pack against a seam-guest for one of those versions",
                Self::supported().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
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

/// The conversions between a version's generated types and the host model
/// that every version so far shares (systems, change kinds, values, fields,
/// records, actions): expanded in each version's module, where `types` is that
/// version's types. Only how a change crosses differs between versions.
macro_rules! model_conversions {
    () => {
        impl From<types::System> for model::System {
            fn from(s: types::System) -> Self {
                match s {
                    types::System::Salesforce => model::System::Salesforce,
                    types::System::Servicenow => model::System::Servicenow,
                    types::System::Slack => model::System::Slack,
                }
            }
        }

        impl From<model::System> for types::System {
            fn from(s: model::System) -> Self {
                match s {
                    model::System::Salesforce => types::System::Salesforce,
                    model::System::Servicenow => types::System::Servicenow,
                    model::System::Slack => types::System::Slack,
                }
            }
        }

        impl From<model::ChangeKind> for types::ChangeKind {
            fn from(k: model::ChangeKind) -> Self {
                match k {
                    model::ChangeKind::Created => types::ChangeKind::Created,
                    model::ChangeKind::Updated => types::ChangeKind::Updated,
                    model::ChangeKind::Deleted => types::ChangeKind::Deleted,
                }
            }
        }

        impl From<types::Value> for model::Value {
            fn from(v: types::Value) -> Self {
                match v {
                    types::Value::Null => model::Value::Null,
                    types::Value::Text(s) => model::Value::Text(s),
                    types::Value::Number(n) => model::Value::Number(n),
                    types::Value::Boolean(b) => model::Value::Bool(b),
                }
            }
        }

        impl From<&model::Value> for types::Value {
            fn from(v: &model::Value) -> Self {
                match v {
                    model::Value::Null => types::Value::Null,
                    model::Value::Text(s) => types::Value::Text(s.clone()),
                    model::Value::Number(n) => types::Value::Number(*n),
                    model::Value::Bool(b) => types::Value::Boolean(*b),
                }
            }
        }

        impl From<types::Field> for model::Field {
            fn from(f: types::Field) -> Self {
                model::Field { name: f.name, value: f.value.into() }
            }
        }

        impl From<&model::Field> for types::Field {
            fn from(f: &model::Field) -> Self {
                types::Field { name: f.name.clone(), value: (&f.value).into() }
            }
        }

        impl From<types::RecordRef> for model::RecordRef {
            fn from(r: types::RecordRef) -> Self {
                model::RecordRef { system: r.system.into(), object: r.object, id: r.id }
            }
        }

        impl From<&model::RecordRef> for types::RecordRef {
            fn from(r: &model::RecordRef) -> Self {
                types::RecordRef { system: r.system.into(), object: r.object.clone(), id: r.id.clone() }
            }
        }

        impl From<types::Target> for model::Target {
            fn from(t: types::Target) -> Self {
                match t {
                    types::Target::Linked => model::Target::Linked,
                    types::Target::Source => model::Target::Source,
                    types::Target::Explicit(r) => model::Target::Explicit(r.into()),
                }
            }
        }

        impl From<types::Action> for model::Action {
            fn from(a: types::Action) -> Self {
                match a {
                    types::Action::Update(u) => {
                        model::Action::Update { target: u.target.into(), fields: fields_out(u.fields) }
                    }
                    types::Action::AppendJournal(j) => model::Action::AppendJournal {
                        target: j.target.into(),
                        kind: match j.kind {
                            types::JournalKind::WorkNote => model::JournalKind::WorkNote,
                            types::JournalKind::Comment => model::JournalKind::Comment,
                        },
                        text: j.text,
                    },
                    types::Action::Create(c) => model::Action::Create {
                        system: c.system.into(),
                        object: c.object,
                        fields: fields_out(c.fields),
                        link_to_source: c.link_to_source,
                    },
                    types::Action::PostSlack(p) => {
                        model::Action::PostSlack { channel: p.channel, create_channel: p.create_channel, text: p.text }
                    }
                }
            }
        }

        fn fields_out(fields: Vec<types::Field>) -> Vec<model::Field> {
            fields.into_iter().map(Into::into).collect()
        }
    };
}
use model_conversions;
