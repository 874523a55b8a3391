//! Which packs each tenant runs (one mapping, any number of workflows), and
//! changing them while the host runs.
//!
//! A new pack is opened, verified and compiled before anything changes (a pack
//! that fails any check is refused whole); then the tenant's active pack is
//! swapped in one atomic store. An event already in flight keeps the pack it
//! started with; the next event gets the new one. Every pack a tenant ran is
//! kept (bytes by hash under `STATE/packs/`, history in the journal), so a
//! rollback is a load of bytes already verified once, and a restart comes back
//! on the pack that was active.

use super::signing::TrustedKeys;
use super::{LoadedPack, Manifest};
use crate::engine::ownership::Ownership;
use crate::engine::processor::Workflows;
use crate::runtime::{LinkedPack, PackLimits, Runtime, World};
use crate::store::blocking::off_worker;
use crate::store::journal::PackRecord;
use crate::store::Journal;
use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The pack a tenant's events run through.
pub struct ActivePack {
    pub manifest: Manifest,
    pub linked: Arc<LinkedPack>,
    pub ownership: Ownership,
    pub hash: String,
    pub signer: Option<String>,
}

impl ActivePack {
    /// `ownership`: the tenant configuration's map, which overrides the manifest's.
    pub fn new(loaded: LoadedPack, ownership: Option<&Ownership>) -> ActivePack {
        let ownership = ownership.cloned().or_else(|| loaded.manifest.ownership.clone()).unwrap_or_default();
        ActivePack {
            manifest: loaded.manifest,
            linked: Arc::new(loaded.linked),
            ownership,
            hash: loaded.hash,
            signer: loaded.signer,
        }
    }

    /// A pack for tests and tools: a linked component with the default ownership.
    pub fn of(linked: LinkedPack, ownership: Ownership) -> ActivePack {
        let (manifest, hash) = (Manifest::describing(&linked), linked.meta().sha256.clone());
        ActivePack { manifest, linked: Arc::new(linked), ownership, hash, signer: None }
    }
}

struct Tenant {
    active: Arc<ArcSwap<ActivePack>>,
    workflows: Workflows,
    ownership: Option<Ownership>,
    /// One change of pack at a time per tenant.
    changing: tokio::sync::Mutex<()>,
}

/// The history slot of the mapping pack; a workflow's slot is its name.
pub const MAPPING_SLOT: &str = "mapping";

fn slot_of(manifest: &Manifest) -> String {
    match manifest.kind() {
        World::Mapping => MAPPING_SLOT.to_string(),
        World::Workflow => manifest.name.clone(),
    }
}

pub struct Registry {
    runtime: Runtime,
    trusted: TrustedKeys,
    store: PathBuf,
    journal: Arc<Journal>,
    tenants: HashMap<String, Tenant>,
    /// Tenants' own limits for their packs' calls (`tenants.NAME.pack_limits`), kept
    /// across hot-loads and rollbacks; others run with the runtime's.
    limits: HashMap<String, PackLimits>,
}

/// What `seam pack list` shows for a tenant.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct TenantPacks {
    pub tenant: String,
    /// The mapping pack, `name@version`.
    pub active: String,
    pub hash: String,
    /// The workflow packs, in the order they run.
    #[serde(default)]
    pub workflows: Vec<WorkflowSummary>,
    pub history: Vec<PackRecord>,
}

/// One workflow a tenant runs.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct WorkflowSummary {
    pub name: String,
    /// `name@version`.
    pub id: String,
    pub hash: String,
}

/// The packs a tenant starts with.
pub struct Started {
    pub mapping: Arc<ArcSwap<ActivePack>>,
    pub workflows: Workflows,
}

impl Registry {
    pub fn new(runtime: Runtime, trusted: TrustedKeys, store: PathBuf, journal: Arc<Journal>) -> Result<Registry> {
        std::fs::create_dir_all(&store).with_context(|| format!("creating the pack store {}", store.display()))?;
        Ok(Registry { runtime, trusted, store, journal, tenants: HashMap::new(), limits: HashMap::new() })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Give `tenant`'s packs their own limits, from its next load on (call before `add_tenant`).
    pub fn limit_tenant(&mut self, tenant: &str, limits: PackLimits) {
        self.limits.insert(tenant.to_string(), limits);
    }

    /// Verify, compile and link a pack for `tenant`, with the tenant's limits.
    async fn load_for(&self, tenant: &str, bytes: &[u8], fallback_name: &str) -> Result<LoadedPack> {
        let mut loaded = super::load(&self.runtime, bytes, fallback_name, &self.trusted).await?;
        if let Some(limits) = self.limits.get(tenant) {
            loaded.linked = loaded.linked.with_limits(*limits).with_context(|| format!("tenant {tenant}"))?;
        }
        Ok(loaded)
    }

    /// Start a tenant on the packs it last ran: for each slot (the mapping, each
    /// workflow), the configured pack when it is new, else the one last active,
    /// which may have been hot-loaded or rolled back since. Workflows installed
    /// through the admin API or `packs_dir` come back too.
    pub async fn add_tenant(
        &mut self,
        tenant: &str,
        mapping: &[u8],
        workflows: &[Vec<u8>],
        fallback_name: &str,
        ownership: Option<Ownership>,
    ) -> Result<Started> {
        let history = self.history(tenant).await?;
        let mut configured: Vec<(String, &[u8])> = vec![(MAPPING_SLOT.to_string(), mapping)];
        for (n, bytes) in workflows.iter().enumerate() {
            let pack = super::Pack::open(bytes).with_context(|| format!("tenant {tenant}: workflow pack {}", n + 1))?;
            if pack.manifest.kind() != World::Workflow {
                bail!("tenant {tenant}: {} is a {} pack, configured as a workflow; a tenant's mapping pack goes in `pack`", pack.manifest.id(), pack.manifest.kind());
            }
            configured.push((slot_of(&pack.manifest), bytes));
        }
        let mut slots: Vec<String> = configured.iter().map(|(slot, _)| slot.clone()).collect();
        for r in &history {
            if !slots.contains(&r.slot) && active_record(&history, &r.slot).is_some() {
                slots.push(r.slot.clone());
            }
        }

        let mut mapping_pack = None;
        let mut workflow_packs = Vec::new();
        for slot in slots {
            let bytes = configured.iter().find(|(s, _)| *s == slot).map(|(_, b)| *b);
            let Some(loaded) = self.resume_slot(tenant, &slot, bytes, &history, fallback_name).await? else { continue };
            if slot == MAPPING_SLOT {
                if loaded.linked.world() != World::Mapping {
                    bail!("tenant {tenant}: {} is a {} pack, configured as the mapping (`pack`); list workflow packs under `workflows`", loaded.manifest.id(), loaded.linked.world());
                }
                mapping_pack = Some(ActivePack::new(loaded, ownership.as_ref()));
            } else {
                workflow_packs.push(Arc::new(ActivePack::new(loaded, None)));
            }
        }
        let mapping = Arc::new(ArcSwap::from_pointee(mapping_pack.context("a tenant needs a mapping pack")?));
        let workflows: Workflows = Arc::new(ArcSwap::from_pointee(workflow_packs));
        self.tenants.insert(
            tenant.to_string(),
            Tenant {
                active: mapping.clone(),
                workflows: workflows.clone(),
                ownership,
                changing: tokio::sync::Mutex::new(()),
            },
        );
        Ok(Started { mapping, workflows })
    }

    /// Load what one slot runs at start-up; `None` for a workflow that was removed.
    async fn resume_slot(
        &self,
        tenant: &str,
        slot: &str,
        configured: Option<&[u8]>,
        history: &[PackRecord],
        fallback_name: &str,
    ) -> Result<Option<LoadedPack>> {
        // Only the pack the slot will run is compiled: the configured one is known by its hash until then.
        let configured_hash = configured.map(super::artifact::content_hash);
        let known = configured_hash.as_ref().is_some_and(|h| history.iter().any(|r| r.slot == slot && &r.hash == h));
        let last = active_record(history, slot);
        // Configured but replaced or rolled back since it last ran, or not configured
        // (hot-loaded): resume where the tenant was.
        let resume = match (&configured_hash, last) {
            (None, Some(last)) => Some(last),
            (Some(hash), Some(last)) if known && &last.hash != hash => Some(last),
            _ => None,
        };
        if let Some(last) = resume {
            match self.read_stored(&last.hash).await {
                Ok(bytes) => {
                    let loaded = self.load_for(tenant, &bytes, fallback_name).await.with_context(|| {
                        format!("tenant {tenant}: reloading {}@{} ({})", last.name, last.version, last.hash)
                    })?;
                    return Ok(Some(loaded));
                }
                Err(e) if configured.is_some() => {
                    tracing::warn!(tenant, slot, "the pack last active is gone ({e:#}); starting on the configured one")
                }
                Err(e) => return Err(e.context(format!("tenant {tenant}: the workflow {slot} it last ran"))),
            }
        }
        let Some(bytes) = configured else { return Ok(None) };
        // A configured workflow the operator rolled back (removed) stays removed until it changes.
        if known && last.is_none() && slot != MAPPING_SLOT {
            tracing::info!(tenant, slot, "the configured workflow was removed with a rollback; not starting it");
            return Ok(None);
        }
        let first = self
            .load_for(tenant, bytes, fallback_name)
            .await
            .with_context(|| format!("tenant {tenant}: the configured pack for {slot}"))?;
        if !known {
            self.keep(&first, bytes, tenant, "config").await?;
        }
        Ok(Some(first))
    }

    fn tenant(&self, tenant: &str) -> Result<&Tenant> {
        self.tenants.get(tenant).with_context(|| {
            format!("no tenant {tenant:?} (tenants: {})", self.tenants.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }

    fn stored_path(&self, hash: &str) -> PathBuf {
        self.store.join(format!("{hash}.seampack"))
    }

    async fn read_stored(&self, hash: &str) -> Result<Vec<u8>> {
        let path = self.stored_path(hash);
        off_worker(move || std::fs::read(&path).with_context(|| format!("reading {}", path.display()))).await
    }

    /// The tenant's pack history, read off the tokio workers.
    async fn history(&self, tenant: &str) -> Result<Vec<PackRecord>> {
        let tenant = tenant.to_string();
        self.journal.run(move |j| j.pack_history(&tenant)).await
    }

    /// Store the bytes under their hash (synced to disk) and record the pack in the tenant's
    /// history, off the tokio workers.
    async fn keep(&self, pack: &LoadedPack, bytes: &[u8], tenant: &str, source: &str) -> Result<()> {
        let path = self.stored_path(&pack.hash);
        let m = &pack.manifest;
        let bytes = bytes.to_vec();
        let (tenant, slot, name, version, hash, signer, source) = (
            tenant.to_string(),
            slot_of(m),
            m.name.clone(),
            m.version.clone(),
            pack.hash.clone(),
            pack.signer.clone(),
            source.to_string(),
        );
        self.journal
            .run(move |j| {
                if !path.exists() {
                    crate::files::write_atomically(&path, &bytes)?;
                }
                j.record_pack(&tenant, &slot, &name, &version, &hash, signer.as_deref(), &source)
            })
            .await
    }

    /// Verify, compile and swap in a new pack: the tenant's mapping, or a
    /// workflow (added, or replacing the workflow of the same name). Returns its `name@version`.
    pub async fn install(&self, tenant: &str, bytes: &[u8], source: &str) -> Result<String> {
        let t = self.tenant(tenant)?;
        let _one_at_a_time = t.changing.lock().await;
        let loaded = self.load_for(tenant, bytes, "pack").await?;
        let id = loaded.manifest.id();
        let slot = slot_of(&loaded.manifest);
        let current = if slot == MAPPING_SLOT {
            Some(t.active.load_full())
        } else {
            t.workflows.load().iter().find(|w| slot_of(&w.manifest) == slot).cloned()
        };
        if current.as_ref().is_some_and(|c| c.hash == loaded.hash) {
            return Ok(format!("{id} (already active)"));
        }
        self.keep(&loaded, bytes, tenant, source).await?;
        let from = current.map_or("nothing".to_string(), |c| c.manifest.id());
        self.put(t, &slot, Some(loaded));
        tracing::info!(tenant, slot, from = %from, to = %id, source, "pack swapped");
        Ok(id)
    }

    /// Make `loaded` what `slot` runs (`None`: remove that workflow), in one atomic store.
    fn put(&self, t: &Tenant, slot: &str, loaded: Option<LoadedPack>) {
        if slot == MAPPING_SLOT {
            if let Some(loaded) = loaded {
                t.active.store(Arc::new(ActivePack::new(loaded, t.ownership.as_ref())));
            }
            return;
        }
        let mut workflows: Vec<Arc<ActivePack>> =
            t.workflows.load().iter().filter(|w| slot_of(&w.manifest) != slot).cloned().collect();
        let position = t.workflows.load().iter().position(|w| slot_of(&w.manifest) == slot).unwrap_or(workflows.len());
        if let Some(loaded) = loaded {
            workflows.insert(position.min(workflows.len()), Arc::new(ActivePack::new(loaded, None)));
        }
        t.workflows.store(Arc::new(workflows));
    }

    /// Go back to the version of a pack active before the current one: the
    /// mapping's (`slot` None), or a workflow's by name. A workflow with no
    /// earlier version is removed.
    pub async fn rollback(&self, tenant: &str, slot: Option<&str>) -> Result<String> {
        let t = self.tenant(tenant)?;
        let slot = slot.unwrap_or(MAPPING_SLOT);
        let _one_at_a_time = t.changing.lock().await;
        let history = self.history(tenant).await?;
        let current = active_record(&history, slot)
            .with_context(|| format!("tenant {tenant} runs no pack {slot:?} (see `seam pack list`)"))?;
        let previous = history
            .iter()
            .rev()
            .find(|r| r.slot == slot && !r.rolled_back && r.id < current.id && r.hash != current.hash);
        let (loaded, id) = match previous {
            Some(previous) => {
                let bytes = self.read_stored(&previous.hash).await?;
                let loaded = self
                    .load_for(tenant, &bytes, "pack")
                    .await
                    .with_context(|| format!("reloading {}@{}", previous.name, previous.version))?;
                let id = loaded.manifest.id();
                (Some(loaded), id)
            }
            None if slot != MAPPING_SLOT => (None, format!("no {slot} (removed)")),
            None => bail!(
                "tenant {tenant} has no earlier pack to roll back to (active mapping: {}@{})",
                current.name,
                current.version
            ),
        };
        // Every row after the one returned to is undone, so a second rollback goes further back.
        let returned_to = previous.map_or(0, |p| p.id);
        let undone: Vec<i64> =
            history.iter().filter(|r| r.slot == slot && r.id > returned_to && !r.rolled_back).map(|r| r.id).collect();
        self.journal.run(move |j| undone.iter().try_for_each(|&id| j.mark_rolled_back(id))).await?;
        self.put(t, slot, loaded);
        tracing::info!(tenant, slot, to = %id, "pack rolled back");
        Ok(id)
    }

    /// Every tenant's packs, with their history from the journal (a blocking read).
    pub fn list(&self) -> Result<Vec<TenantPacks>> {
        let mut out: Vec<TenantPacks> = self
            .tenants
            .iter()
            .map(|(name, t)| {
                let active = t.active.load();
                let workflows = t
                    .workflows
                    .load()
                    .iter()
                    .map(|w| WorkflowSummary {
                        name: w.manifest.name.clone(),
                        id: w.manifest.id(),
                        hash: w.hash.clone(),
                    })
                    .collect();
                Ok(TenantPacks {
                    tenant: name.clone(),
                    active: active.manifest.id(),
                    hash: active.hash.clone(),
                    workflows,
                    history: self.journal.pack_history(name)?,
                })
            })
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Ok(out)
    }
}

/// The row a slot runs now: its latest one not rolled back.
fn active_record<'a>(history: &'a [PackRecord], slot: &str) -> Option<&'a PackRecord> {
    history.iter().rev().find(|r| r.slot == slot && !r.rolled_back)
}
