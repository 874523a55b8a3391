//! The WebAssembly component runtime that runs rule packs.
//!
//! One [`Runtime`] per process: a Wasmtime engine with the pooling allocator,
//! epoch interruption, and one linker that serves every supported
//! `seam:sync` version. A [`Plugin`] is a compiled pack, pre-linked
//! (`InstancePre`), ready to instantiate.
//!
//! Every call gets a fresh instance in a fresh store: packs are pure
//! functions, so no state can leak between events or tenants, and a pack
//! that traps, loops or eats memory only ever kills its own call. Calls run
//! asynchronously and yield to the executor at every epoch tick, so a
//! runaway guest holds a Tokio worker for one tick at a time, never longer,
//! and is stopped once its time budget is spent.

pub mod bindings;
pub mod cache;
pub mod error;
pub mod imports;
pub mod state;

pub use bindings::{ApiVersion, World};
pub use cache::CacheOutcome;
pub use error::PluginError;
pub use imports::lookup::{Grant, Grants, LookupFailure, NoRecords, RecordSource, StaticRecord, StaticRecords};

use crate::model::{Action, Change};
use anyhow::{Context, Result};
use bindings::v0_1_0;
use cache::ComponentCache;
use state::PluginState;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};

/// How often the engine's epoch advances: the slice after which a running
/// guest yields to the executor and its deadline is checked.
const EPOCH_TICK: Duration = Duration::from_millis(2);
/// Extra time past the budget before a call stuck in a host import is abandoned.
const HOST_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Instances that may run at once (pooling allocator slots). Calls beyond
    /// this wait for a slot rather than fail.
    pub concurrent_calls: u32,
    /// Of those, how many one loaded pack (one tenant's) may hold, so a tenant
    /// whose pack loops until its budget cannot take every slot from the others.
    pub calls_per_pack: u32,
    /// Linear memory one call may use.
    pub memory_limit: usize,
    /// Wall-clock time one call (instantiate + map) may take.
    pub call_budget: Duration,
    /// Where compiled components are kept across restarts; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            concurrent_calls: 64,
            calls_per_pack: 16,
            memory_limit: 64 << 20,
            call_budget: Duration::from_secs(2),
            cache_dir: None,
        }
    }
}

/// Identifies a pack in logs, errors and audit rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginMeta {
    pub name: String,
    pub version: String,
    /// SHA-256 of the component bytes.
    pub sha256: String,
}

impl fmt::Display for PluginMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: ComponentCache,
    config: RuntimeConfig,
    slots: Semaphore,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let engine = Engine::new(&engine_config(&config)).map_err(anyhow::Error::from).context("configuring the WebAssembly engine")?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from).context("adding WASI to the linker")?;
        v0_1_0::Mapping::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("adding seam:sync@0.1.0 to the linker")?;

        let cache = ComponentCache::new(&engine, config.cache_dir.clone())?;
        let slots = Semaphore::new(config.concurrent_calls as usize);
        Ok(Runtime { inner: Arc::new(RuntimeInner { engine, linker, cache, config, slots }) })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Compile (or fetch from the cache), check the API version and pre-link a pack.
    pub async fn load(&self, name: &str, version: &str, wasm: &[u8], grants: Grants) -> Result<Plugin> {
        let sha256 = cache::sha256_hex(wasm);
        let meta = Arc::new(PluginMeta { name: name.to_string(), version: version.to_string(), sha256: sha256.clone() });
        let inner = &self.inner;
        let (component, outcome) = inner
            .cache
            .get_or_compile(&inner.engine, &sha256, wasm)
            .await
            .with_context(|| format!("loading pack {meta}: is it a WebAssembly component built for wasm32-wasip2?"))?;
        let (world, api) = ApiVersion::of(&inner.engine, &component).with_context(|| format!("loading pack {meta}"))?;
        let pre = inner.linker.instantiate_pre(&component).map_err(anyhow::Error::from).with_context(|| {
            format!(
                "linking pack {meta}: it imports something seam does not provide \
                 (packs may import seam:sync/log, seam:sync/lookup and WASI, with no files or network)"
            )
        })?;
        let pre = match (world, api) {
            (World::Mapping, ApiVersion::V0_1_0) => PluginPre::MappingV0_1_0(v0_1_0::MappingPre::new(pre).map_err(anyhow::Error::from).with_context(|| format!("pack {meta}"))?),
            (World::Workflow, ApiVersion::V0_1_0) => {
                PluginPre::WorkflowV0_1_0(v0_1_0::workflow::WorkflowPre::new(pre).map_err(anyhow::Error::from).with_context(|| format!("pack {meta}"))?)
            }
        };
        let own_slots = Arc::new(Semaphore::new(self.inner.config.calls_per_pack.clamp(1, self.inner.config.concurrent_calls.max(1)) as usize));
        Ok(Plugin { meta, world, api, pre, grants: Arc::new(grants), runtime: self.clone(), loaded: outcome, own_slots })
    }

    fn new_store(&self, state: PluginState) -> Store<PluginState> {
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.memory);
        let deadline = Instant::now() + self.inner.config.call_budget;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let slots = config.concurrent_calls.max(1);
    // A Rust wasm32-wasip2 component is one main module plus a few small shim
    // modules (one memory, a handful of tables); leave room for larger packs.
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_core_instances_per_component(16)
        .max_memory_size(config.memory_limit);

    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

/// Advance the epoch forever (until the engine is dropped), so deadlines fire.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("seam-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        })
        .expect("spawning the epoch thread");
}

enum PluginPre {
    MappingV0_1_0(v0_1_0::MappingPre<PluginState>),
    WorkflowV0_1_0(v0_1_0::workflow::WorkflowPre<PluginState>),
}

/// A loaded, pre-linked pack.
pub struct Plugin {
    meta: Arc<PluginMeta>,
    world: World,
    api: ApiVersion,
    pre: PluginPre,
    grants: Arc<Grants>,
    runtime: Runtime,
    loaded: CacheOutcome,
    /// This pack's share of the runtime's slots.
    own_slots: Arc<Semaphore>,
}

/// Where one call's time went.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallTiming {
    pub instantiate: Duration,
    pub call: Duration,
    /// Peak linear memory the call grew to, in bytes.
    pub peak_memory: usize,
}

impl Plugin {
    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }
    pub fn api(&self) -> ApiVersion {
        self.api
    }
    pub fn world(&self) -> World {
        self.world
    }
    pub fn grants(&self) -> &Grants {
        &self.grants
    }
    /// How this pack's compiled code was obtained.
    pub fn load_outcome(&self) -> CacheOutcome {
        self.loaded
    }

    /// Run the pack on one change: a mapping's `map-change`, a workflow's `on-change`.
    pub async fn run(&self, change: &Change, records: Arc<dyn RecordSource>) -> Result<Vec<Action>, PluginError> {
        self.run_timed(change, records).await.0
    }

    /// [`Plugin::run`], also reporting where the time went.
    pub async fn run_timed(&self, change: &Change, records: Arc<dyn RecordSource>) -> (Result<Vec<Action>, PluginError>, CallTiming) {
        let runtime = &self.runtime.inner;
        let _share = self.own_slots.acquire().await.expect("the pack's semaphore is never closed");
        let _slot = runtime.slots.acquire().await.expect("the slot semaphore is never closed");
        let state = PluginState::new(self.meta.clone(), self.grants.clone(), records, runtime.config.memory_limit);
        let mut store = self.runtime.new_store(state);
        let mut timing = CallTiming::default();

        let started = Instant::now();
        let run = async {
            let result = match &self.pre {
                PluginPre::MappingV0_1_0(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    timing.instantiate = started.elapsed();
                    instance.seam_sync_mapper().call_map_change(&mut store, &v0_1_0::types::Change::from(change)).await?
                }
                PluginPre::WorkflowV0_1_0(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    timing.instantiate = started.elapsed();
                    instance.seam_sync_automation().call_on_change(&mut store, &v0_1_0::types::Change::from(change)).await?
                }
            };
            Ok::<_, wasmtime::Error>(result.map(|actions| actions.into_iter().map(Action::from).collect()))
        };
        let outcome = tokio::time::timeout(runtime.config.call_budget + HOST_GRACE, run).await;
        timing.call = started.elapsed().saturating_sub(timing.instantiate);
        timing.peak_memory = store.data().memory.peak;
        (self.classify(outcome, store.data()), timing)
    }

    fn classify(
        &self,
        outcome: Result<wasmtime::Result<Result<Vec<Action>, String>>, tokio::time::error::Elapsed>,
        state: &PluginState,
    ) -> Result<Vec<Action>, PluginError> {
        let plugin = self.meta.to_string();
        let budget = self.runtime.inner.config.call_budget;
        let failure = match outcome {
            Ok(Ok(Ok(actions))) => return Ok(actions),
            Ok(Ok(Err(message))) => PluginError::Rejected { plugin: plugin.clone(), message },
            Err(_elapsed) => PluginError::Timeout { plugin: plugin.clone(), budget },
            Ok(Err(_)) if state.timed_out => PluginError::Timeout { plugin: plugin.clone(), budget },
            Ok(Err(_)) if state.memory.refused.is_some() => PluginError::OutOfMemory {
                plugin: plugin.clone(),
                limit: state.memory.limit,
                wanted: state.memory.refused.unwrap_or_default(),
            },
            Ok(Err(e)) => {
                let trap = e.downcast_ref::<Trap>().map(|t| t.to_string()).unwrap_or_else(|| format!("{e:#}"));
                let stderr = state.stderr_text();
                tracing::debug!(plugin = %plugin, "trap detail: {e:?}");
                let message = if stderr.is_empty() { trap } else { format!("{stderr} ({trap})") };
                PluginError::Trap { plugin: plugin.clone(), message }
            }
        };
        // A pack that failed after a lookup could not reach its system gets another chance.
        match (&failure, &state.lookup_unavailable) {
            (PluginError::Rejected { .. } | PluginError::Trap { .. }, Some(why)) => {
                Err(PluginError::LookupUnavailable { plugin, message: why.clone() })
            }
            _ => Err(failure),
        }
    }
}
