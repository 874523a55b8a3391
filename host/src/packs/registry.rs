//! Which pack each tenant runs, and changing it while the host runs.
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
use crate::runtime::{Plugin, Runtime};
use crate::store::journal::PackRecord;
use crate::store::Journal;
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The pack a tenant's events run through.
pub struct ActivePack {
    pub manifest: Manifest,
    pub plugin: Arc<Plugin>,
    pub ownership: Ownership,
    pub hash: String,
    pub signer: Option<String>,
}

impl ActivePack {
    /// `ownership`: the tenant configuration's map, which overrides the manifest's.
    pub fn new(loaded: LoadedPack, ownership: Option<&Ownership>) -> ActivePack {
        let ownership = ownership.cloned().or_else(|| loaded.manifest.ownership.clone()).unwrap_or_default();
        ActivePack { manifest: loaded.manifest, plugin: Arc::new(loaded.plugin), ownership, hash: loaded.hash, signer: loaded.signer }
    }

    /// A pack for tests and tools: a loaded plugin with the default ownership.
    pub fn of(plugin: Plugin, ownership: Ownership) -> ActivePack {
        let (manifest, hash) = (Manifest::describing(&plugin), plugin.meta().sha256.clone());
        ActivePack { manifest, plugin: Arc::new(plugin), ownership, hash, signer: None }
    }
}

struct Tenant {
    active: Arc<ArcSwap<ActivePack>>,
    ownership: Option<Ownership>,
    /// One change of pack at a time per tenant.
    changing: tokio::sync::Mutex<()>,
}

pub struct Registry {
    runtime: Runtime,
    trusted: TrustedKeys,
    store: PathBuf,
    journal: Arc<Journal>,
    tenants: HashMap<String, Tenant>,
}

/// What `seam plugin list` shows for a tenant.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct TenantPacks {
    pub tenant: String,
    pub active: String,
    pub hash: String,
    pub history: Vec<PackRecord>,
}

impl Registry {
    pub fn new(runtime: Runtime, trusted: TrustedKeys, store: PathBuf, journal: Arc<Journal>) -> Result<Registry> {
        std::fs::create_dir_all(&store).with_context(|| format!("creating the pack store {}", store.display()))?;
        Ok(Registry { runtime, trusted, store, journal, tenants: HashMap::new() })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Start a tenant on the pack it last ran, or on `configured` when that is new.
    pub async fn add_tenant(&mut self, tenant: &str, configured: &[u8], fallback_name: &str, ownership: Option<Ownership>) -> Result<Arc<ArcSwap<ActivePack>>> {
        // Only the pack the tenant will run is compiled: the configured one is known by its hash until then.
        let configured_hash = super::artifact::content_hash(configured);
        let history = self.journal.pack_history(tenant)?;
        let known = history.iter().any(|r| r.hash == configured_hash);
        // The configured pack was replaced or rolled back since it last ran: resume where the tenant was.
        let stored = match active_record(&history).filter(|last| known && last.hash != configured_hash) {
            Some(last) => match self.read_stored(&last.hash) {
                Ok(bytes) => Some((bytes, last.hash.clone())),
                Err(e) => {
                    tracing::warn!(tenant, "the pack last active is gone ({e:#}); starting on the configured one");
                    None
                }
            },
            None => None,
        };
        let loaded = match stored {
            Some((bytes, hash)) => super::load(&self.runtime, &bytes, fallback_name, &self.trusted).await.with_context(|| format!("tenant {tenant}: reloading {hash}"))?,
            None => {
                let first = super::load(&self.runtime, configured, fallback_name, &self.trusted).await.with_context(|| format!("tenant {tenant}: the configured pack"))?;
                if !known {
                    self.keep(&first, configured, tenant, "config")?;
                }
                first
            }
        };
        let active = Arc::new(ArcSwap::from_pointee(ActivePack::new(loaded, ownership.as_ref())));
        self.tenants.insert(tenant.to_string(), Tenant { active: active.clone(), ownership, changing: tokio::sync::Mutex::new(()) });
        Ok(active)
    }

    fn tenant(&self, tenant: &str) -> Result<&Tenant> {
        self.tenants.get(tenant).with_context(|| format!("no tenant {tenant:?} (tenants: {})", self.tenants.keys().cloned().collect::<Vec<_>>().join(", ")))
    }

    fn stored_path(&self, hash: &str) -> PathBuf {
        self.store.join(format!("{hash}.seampack"))
    }

    fn read_stored(&self, hash: &str) -> Result<Vec<u8>> {
        let path = self.stored_path(hash);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Store the bytes under their hash and record the pack in the tenant's history.
    fn keep(&self, pack: &LoadedPack, bytes: &[u8], tenant: &str, source: &str) -> Result<()> {
        let path = self.stored_path(&pack.hash);
        if !path.exists() {
            crate::files::write_atomically(&path, bytes)?;
        }
        self.journal.record_pack(tenant, &pack.manifest.name, &pack.manifest.version, &pack.hash, pack.signer.as_deref(), source)
    }

    /// Verify, compile and swap in a new pack. Returns its `name@version`.
    pub async fn install(&self, tenant: &str, bytes: &[u8], source: &str) -> Result<String> {
        let t = self.tenant(tenant)?;
        let _one_at_a_time = t.changing.lock().await;
        let loaded = super::load(&self.runtime, bytes, "pack", &self.trusted).await?;
        let id = loaded.manifest.id();
        if t.active.load().hash == loaded.hash {
            return Ok(format!("{id} (already active)"));
        }
        self.keep(&loaded, bytes, tenant, source)?;
        let previous = t.active.swap(Arc::new(ActivePack::new(loaded, t.ownership.as_ref())));
        tracing::info!(tenant, from = %previous.manifest.id(), to = %id, source, "pack swapped");
        Ok(id)
    }

    /// Go back to the pack active before the current one.
    pub async fn rollback(&self, tenant: &str) -> Result<String> {
        let t = self.tenant(tenant)?;
        let _one_at_a_time = t.changing.lock().await;
        let history = self.journal.pack_history(tenant)?;
        let current = active_record(&history).context("no pack history for this tenant")?;
        let previous = history
            .iter()
            .rev()
            .filter(|r| !r.rolled_back && r.id < current.id && r.hash != current.hash)
            .next()
            .with_context(|| format!("tenant {tenant} has no earlier pack to roll back to (active: {}@{})", current.name, current.version))?;
        let bytes = self.read_stored(&previous.hash)?;
        let loaded = super::load(&self.runtime, &bytes, "pack", &self.trusted).await.with_context(|| format!("reloading {}@{}", previous.name, previous.version))?;
        let id = loaded.manifest.id();
        // Every row after the one returned to is undone, so a second rollback goes further back.
        for r in history.iter().filter(|r| r.id > previous.id && !r.rolled_back) {
            self.journal.mark_rolled_back(r.id)?;
        }
        t.active.store(Arc::new(ActivePack::new(loaded, t.ownership.as_ref())));
        tracing::info!(tenant, to = %id, "pack rolled back");
        Ok(id)
    }

    pub fn list(&self) -> Result<Vec<TenantPacks>> {
        let mut out: Vec<TenantPacks> = self
            .tenants
            .iter()
            .map(|(name, t)| {
                let active = t.active.load();
                Ok(TenantPacks { tenant: name.clone(), active: active.manifest.id(), hash: active.hash.clone(), history: self.journal.pack_history(name)? })
            })
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Ok(out)
    }
}

fn active_record(history: &[PackRecord]) -> Option<&PackRecord> {
    history.iter().rev().find(|r| !r.rolled_back)
}
