//! The WebAssembly component runtime that runs rule packs.
//!
//! One [`Runtime`] per process: a Wasmtime engine with the pooling allocator,
//! epoch interruption, and one linker that serves every supported
//! `seam:sync` version. A [`LinkedPack`] is a compiled pack, pre-linked
//! (`InstancePre`), ready to instantiate.
//!
//! Instances belong to one loaded pack (one tenant's), so no state can pass
//! between tenants. A fresh instance costs more than the mapping itself
//! (about 20 µs, mostly resetting its memory), so an instance that returned
//! normally is kept warm and serves the same pack's next call, up to
//! `calls_per_instance` calls; one that trapped, ran out of time or memory
//! is thrown away, so a failing pack only ever kills its own call. Calls run
//! asynchronously and yield to the executor at every epoch tick, so a
//! runaway guest holds a Tokio worker for one tick at a time, never longer,
//! and is stopped once its time budget is spent.

pub mod bindings;
pub mod cache;
mod determinism;
pub mod error;
pub mod imports;
pub mod records;
pub mod state;

pub use bindings::{ApiVersion, World};
pub use cache::CacheOutcome;
pub use error::PackError;
pub use records::{Grant, Grants, LookupFailure, NoRecords, RecordSource, StaticRecord, StaticRecords};

use crate::model::{Action, Change};
use anyhow::{Context, Result};
use bindings::{PackInstance, PreparedPack, VERSIONS};
use cache::ComponentCache;
use state::PackState;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};

/// How often the engine's epoch advances: the slice after which a running
/// guest yields to the executor and its deadline is checked.
const EPOCH_TICK: Duration = Duration::from_millis(2);
/// Extra time past the budget before a call stuck in a host import is abandoned.
const HOST_GRACE: Duration = Duration::from_secs(5);
/// A warm instance unused this long gives its pool slot back.
const WARM_IDLE: Duration = Duration::from_secs(5);

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
    /// Calls one instance serves (same pack, same tenant) before it is
    /// replaced; 1 gives every call a fresh instance.
    pub calls_per_instance: u32,
    /// Warm instances kept between calls across all packs: pool slots beyond
    /// `concurrent_calls`. First come, first kept; one unused for 5 s gives its slot back.
    pub warm_instances: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            concurrent_calls: 64,
            calls_per_pack: 16,
            memory_limit: 64 << 20,
            call_budget: Duration::from_secs(2),
            cache_dir: None,
            calls_per_instance: 1000,
            warm_instances: 64,
        }
    }
}

/// What one pack's calls may use. The runtime's configuration gives the default; a
/// tenant's configuration may set its own, within the runtime's pool (`memory_limit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackLimits {
    /// Wall-clock time one call (instantiate + run) may take.
    pub call_budget: Duration,
    /// Linear memory one call may grow to.
    pub memory_limit: usize,
}

/// Identifies a pack in logs, errors and audit rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackMeta {
    pub name: String,
    pub version: String,
    /// SHA-256 of the component bytes.
    pub sha256: String,
}

impl fmt::Display for PackMeta {
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
    linker: Linker<PackState>,
    cache: ComponentCache,
    config: RuntimeConfig,
    slots: Semaphore,
    /// One permit per warm instance kept between calls.
    warm: Arc<Semaphore>,
    /// Every loaded pack's warm instances, for the sweeper.
    warm_lists: Mutex<Vec<Weak<WarmList>>>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let engine = Engine::new(&engine_config(&config))
            .map_err(anyhow::Error::from)
            .context("configuring the WebAssembly engine")?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("adding WASI to the linker")?;
        for api in VERSIONS {
            api.add_to_linker(&mut linker)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("adding {} to the linker", api.version()))?;
        }

        let cache = ComponentCache::new(&engine, config.cache_dir.clone())?;
        let slots = Semaphore::new(config.concurrent_calls as usize);
        let warm = Arc::new(Semaphore::new(config.warm_instances as usize));
        let inner =
            Arc::new(RuntimeInner { engine, linker, cache, config, slots, warm, warm_lists: Mutex::new(Vec::new()) });
        spawn_warm_sweeper(Arc::downgrade(&inner));
        Ok(Runtime { inner })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Compile (or fetch from the cache), check the API version and pre-link a pack.
    pub async fn load(&self, name: &str, version: &str, wasm: &[u8], grants: Grants) -> Result<LinkedPack> {
        let sha256 = cache::sha256_hex(wasm);
        let meta = Arc::new(PackMeta { name: name.to_string(), version: version.to_string(), sha256: sha256.clone() });
        let inner = &self.inner;
        let (component, outcome) =
            inner.cache.get_or_compile(&inner.engine, &sha256, wasm).await.with_context(|| {
                format!("loading pack {meta}: is it a WebAssembly component built for wasm32-wasip2?")
            })?;
        let (world, api) = ApiVersion::of(&inner.engine, &component).with_context(|| format!("loading pack {meta}"))?;
        let pre = inner.linker.instantiate_pre(&component).map_err(anyhow::Error::from).with_context(|| {
            format!(
                "linking pack {meta}: it imports something seam does not provide \
                 (packs may import seam:sync/log, seam:sync/lookup and WASI, with no files or network)"
            )
        })?;
        let pre = api.api().prepare(world, pre).map_err(anyhow::Error::from).with_context(|| format!("pack {meta}"))?;
        let own_slots = Arc::new(Semaphore::new(
            self.inner.config.calls_per_pack.clamp(1, self.inner.config.concurrent_calls.max(1)) as usize,
        ));
        let warm = Arc::new(WarmList::default());
        self.inner.warm_lists.lock().expect("warm list registry").push(Arc::downgrade(&warm));
        Ok(LinkedPack {
            meta,
            world,
            api,
            pre,
            grants: Arc::new(grants),
            runtime: self.clone(),
            loaded: outcome,
            limits: PackLimits {
                call_budget: self.inner.config.call_budget,
                memory_limit: self.inner.config.memory_limit,
            },
            own_slots,
            warm,
        })
    }

    fn new_store(&self, state: PackState) -> Store<PackState> {
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.memory);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= ctx.data().deadline {
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
    let slots = slots + config.warm_instances;
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_core_instances_per_component(16)
        .max_memory_size(config.memory_limit)
        // Each call runs on a fiber stack from the pool; keeping its top pages
        // mapped saves a page fault per page touched on every call.
        .async_stack_keep_resident(128 << 10);

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
            #[allow(clippy::disallowed_methods, reason = "the epoch thread is its own")]
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        })
        .expect("spawning the epoch thread");
}

/// Give back the pool slots of warm instances nobody has used for a while,
/// so a tenant that went quiet does not keep them from the busy ones.
fn spawn_warm_sweeper(runtime: Weak<RuntimeInner>) {
    std::thread::Builder::new()
        .name("seam-warm-sweeper".into())
        .spawn(move || loop {
            #[allow(clippy::disallowed_methods, reason = "the sweeper thread is its own")]
            std::thread::sleep(WARM_IDLE / 5);
            let Some(runtime) = runtime.upgrade() else { break };
            let lists: Vec<Arc<WarmList>> = {
                let mut lists = runtime.warm_lists.lock().expect("warm list registry");
                lists.retain(|l| l.strong_count() > 0);
                lists.iter().filter_map(Weak::upgrade).collect()
            };
            for list in lists {
                let stale: Vec<Warm> = {
                    let mut idle = list.idle.lock().expect("warm instances");
                    let (stale, fresh) =
                        std::mem::take(&mut *idle).into_iter().partition(|w| w.last_used.elapsed() >= WARM_IDLE);
                    *idle = fresh;
                    stale
                };
                drop(stale);
            }
        })
        .expect("spawning the warm-instance sweeper");
}

/// A pack's instances kept between calls.
#[derive(Default)]
struct WarmList {
    idle: Mutex<Vec<Warm>>,
}

/// An instance that returned normally, with its store, kept for the next call.
struct Warm {
    store: Store<PackState>,
    exports: Box<dyn PackInstance>,
    calls: u32,
    last_used: Instant,
    permit: OwnedSemaphorePermit,
}

/// A loaded, pre-linked pack.
pub struct LinkedPack {
    meta: Arc<PackMeta>,
    world: World,
    api: ApiVersion,
    pre: Box<dyn PreparedPack>,
    grants: Arc<Grants>,
    runtime: Runtime,
    loaded: CacheOutcome,
    limits: PackLimits,
    /// This pack's share of the runtime's slots.
    own_slots: Arc<Semaphore>,
    warm: Arc<WarmList>,
}

/// Where one call's time went.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallTiming {
    pub instantiate: Duration,
    pub call: Duration,
    /// Peak linear memory the call grew to, in bytes.
    pub peak_memory: usize,
}

impl LinkedPack {
    pub fn meta(&self) -> &PackMeta {
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
    pub fn limits(&self) -> PackLimits {
        self.limits
    }

    /// The same pack with its own limits. Memory cannot exceed what the runtime's pool
    /// reserves for each instance (`RuntimeConfig::memory_limit`).
    pub fn with_limits(mut self, limits: PackLimits) -> Result<LinkedPack> {
        let pool = self.runtime.inner.config.memory_limit;
        anyhow::ensure!(
            limits.memory_limit <= pool,
            "pack {}: a memory limit of {} MiB is more than the {} MiB the runtime reserves for each pack instance",
            self.meta,
            limits.memory_limit >> 20,
            pool >> 20
        );
        anyhow::ensure!(!limits.call_budget.is_zero(), "pack {}: a time budget of 0 lets no call run", self.meta);
        // Warm instances were made under the old limits.
        self.warm.idle.lock().expect("warm instances").clear();
        self.limits = limits;
        Ok(self)
    }

    /// Run the pack on one change: a mapping's `map-change`, a workflow's `on-change`. The
    /// pack's clocks read the change's commit time ([`Change::committed_at_ms`], else the
    /// epoch); [`LinkedPack::run_at`] gives another.
    pub async fn run(&self, change: &Change, records: Arc<dyn RecordSource>) -> Result<Vec<Action>, PackError> {
        self.run_at(change, change.committed_at_ms().unwrap_or(0), records).await
    }

    /// [`LinkedPack::run`] with the pack's clocks at `at_ms` (Unix milliseconds).
    pub async fn run_at(
        &self,
        change: &Change,
        at_ms: i64,
        records: Arc<dyn RecordSource>,
    ) -> Result<Vec<Action>, PackError> {
        self.run_timed_at(change, at_ms, records).await.0
    }

    /// [`LinkedPack::run`], also reporting where the time went.
    pub async fn run_timed(
        &self,
        change: &Change,
        records: Arc<dyn RecordSource>,
    ) -> (Result<Vec<Action>, PackError>, CallTiming) {
        self.run_timed_at(change, change.committed_at_ms().unwrap_or(0), records).await
    }

    async fn run_timed_at(
        &self,
        change: &Change,
        at_ms: i64,
        records: Arc<dyn RecordSource>,
    ) -> (Result<Vec<Action>, PackError>, CallTiming) {
        let (outcome, timing) = self.call(&[change], (at_ms, &change.event_id), records).await;
        (outcome.and_then(|mut answers| answers.pop().expect("one answer per change")), timing)
    }

    /// Run the pack on several changes in one call: one packed batch for a
    /// `seam:sync@0.2.0` pack, one call per change on the same instance for
    /// 0.1.0. The changes share the call's budget. If the guest traps, runs
    /// out of time or memory, the whole batch fails with that error (run the
    /// changes alone to find the one that did it); otherwise each change gets
    /// its own answer, in order. Lookups are the call's: when one could not
    /// reach its system, every refusal in the batch is made transient. The call's clocks and
    /// seed are the first change's.
    pub async fn run_batch<'a>(
        &self,
        changes: impl IntoIterator<Item = &'a Change>,
        records: Arc<dyn RecordSource>,
    ) -> Result<Vec<Result<Vec<Action>, PackError>>, PackError> {
        let changes: Vec<&Change> = changes.into_iter().collect();
        let (at_ms, event_id) =
            changes.first().map(|c| (c.committed_at_ms().unwrap_or(0), c.event_id.clone())).unwrap_or_default();
        self.call(&changes, (at_ms, &event_id), records).await.0
    }

    /// One call, on a warm instance when there is one, its clocks and seed at `(at_ms, event_id)`.
    async fn call(
        &self,
        changes: &[&Change],
        (at_ms, event_id): (i64, &str),
        records: Arc<dyn RecordSource>,
    ) -> (Result<Vec<Result<Vec<Action>, PackError>>, PackError>, CallTiming) {
        let runtime = &self.runtime.inner;
        let _share = self.own_slots.acquire().await.expect("the pack's semaphore is never closed");
        let _slot = runtime.slots.acquire().await.expect("the slot semaphore is never closed");
        let warm = self.warm.idle.lock().expect("warm instances").pop();
        let (mut store, exports, calls, permit) = match warm {
            Some(w) => (w.store, Some(w.exports), w.calls, Some(w.permit)),
            None => {
                let state = PackState::new(self.meta.clone(), self.grants.clone(), self.limits.memory_limit);
                (self.runtime.new_store(state), None, 0, None)
            }
        };
        store.data_mut().begin_call(records, Instant::now() + self.limits.call_budget, at_ms, event_id);
        store.set_epoch_deadline(1);
        let mut timing = CallTiming::default();

        let started = Instant::now();
        let run = async {
            let exports = match exports {
                Some(exports) => exports,
                None => self.pre.instantiate(&mut store).await?,
            };
            timing.instantiate = started.elapsed();
            let answers = exports.run(&mut store, changes).await?;
            if answers.len() != changes.len() {
                wasmtime::bail!(
                    "the pack answered {} changes of a batch of {}; a pack must answer every change once",
                    answers.len(),
                    changes.len()
                );
            }
            Ok::<_, wasmtime::Error>((exports, answers))
        };
        let outcome = tokio::time::timeout(self.limits.call_budget + HOST_GRACE, run).await;
        timing.call = started.elapsed().saturating_sub(timing.instantiate);
        timing.peak_memory = store.data().memory.peak;
        let failure = match outcome {
            // The guest returned (with actions or a refusal): its instance is sound and may serve again.
            Ok(Ok((exports, answers))) => {
                let answers = answers
                    .into_iter()
                    .map(|answer| answer.map_err(|message| self.refused(message, store.data())))
                    .collect();
                self.keep_warm(store, exports, calls + 1, permit);
                return (Ok(answers), timing);
            }
            Ok(Err(e)) => Some(e),
            Err(_elapsed) => None,
        };
        (Err(self.failed(failure, store.data())), timing)
    }

    /// Park an instance for this pack's next call, unless it has served its
    /// share of calls or every warm slot is taken.
    fn keep_warm(
        &self,
        mut store: Store<PackState>,
        exports: Box<dyn PackInstance>,
        calls: u32,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        if calls >= self.runtime.inner.config.calls_per_instance {
            return;
        }
        let Some(permit) = permit.or_else(|| self.runtime.inner.warm.clone().try_acquire_owned().ok()) else { return };
        store.data_mut().end_call();
        self.warm.idle.lock().expect("warm instances").push(Warm {
            store,
            exports,
            calls,
            last_used: Instant::now(),
            permit,
        });
    }

    /// The pack refused a change (`err`).
    fn refused(&self, message: String, state: &PackState) -> PackError {
        self.blame_lookup(PackError::Rejected { pack: self.meta.to_string(), message }, state)
    }

    /// The call failed: trapped (`Some`), or ran past its budget and grace (`None`).
    fn failed(&self, error: Option<wasmtime::Error>, state: &PackState) -> PackError {
        let pack = self.meta.to_string();
        let budget = self.limits.call_budget;
        let failure = match error {
            None => PackError::Timeout { pack, budget },
            Some(_) if state.timed_out => PackError::Timeout { pack, budget },
            Some(_) if state.memory.refused.is_some() => PackError::OutOfMemory {
                pack,
                limit: state.memory.limit,
                wanted: state.memory.refused.unwrap_or_default(),
            },
            Some(e) => {
                let trap = e.downcast_ref::<Trap>().map(|t| t.to_string()).unwrap_or_else(|| format!("{e:#}"));
                let stderr = state.stderr_text();
                tracing::debug!(pack = %pack, "trap detail: {e:?}");
                let message = if stderr.is_empty() { trap } else { format!("{stderr} ({trap})") };
                PackError::Trap { pack, message }
            }
        };
        self.blame_lookup(failure, state)
    }

    /// A pack that failed after a lookup could not reach its system gets another chance.
    fn blame_lookup(&self, failure: PackError, state: &PackState) -> PackError {
        match (&failure, &state.lookup_unavailable) {
            (PackError::Rejected { .. } | PackError::Trap { .. }, Some(why)) => {
                PackError::LookupUnavailable { pack: self.meta.to_string(), message: why.clone() }
            }
            _ => failure,
        }
    }
}
