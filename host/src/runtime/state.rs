//! What one pack call's `Store` holds: a sandboxed WASI context, the
//! memory cap, the pack's grants, and the call's bookkeeping.

use super::records::{Grants, NoRecords, RecordSource};
use super::PackMeta;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Keeps what a guest panics with, so a trap can say why.
const STDERR_CAPTURE: usize = 16 * 1024;

pub struct PackState {
    pub(crate) pack: Arc<PackMeta>,
    pub(crate) grants: Arc<Grants>,
    pub(crate) records: Arc<dyn RecordSource>,
    pub(crate) memory: MemoryCap,
    /// When the current call's time budget runs out.
    pub(crate) deadline: Instant,
    /// Set by the epoch callback when the call's time budget ran out.
    pub(crate) timed_out: bool,
    /// Set when a lookup could not reach its system: the event is retried, not dead-lettered.
    pub(crate) lookup_unavailable: Option<String>,
    pub(crate) log_lines: u32,
    stderr: MemoryOutputPipe,
    /// The time and the seed of the call's event, which the guest's clocks and randomness read.
    moment: super::determinism::Moment,
    /// How much of stderr earlier calls on this instance wrote.
    stderr_seen: usize,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl PackState {
    pub(crate) fn new(pack: Arc<PackMeta>, grants: Arc<Grants>, memory_limit: usize) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        // No preopened directories, no environment, no arguments; sockets stay at
        // their default (every address denied, TCP/UDP/name lookup off). The clocks read the
        // event's commit time and randomness comes from the event's id: a replay maps the same.
        let moment = super::determinism::Moment::default();
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .wall_clock(moment.wall_clock())
            .monotonic_clock(moment.monotonic_clock())
            .secure_random(moment.random())
            .insecure_random(moment.random())
            .insecure_random_seed(0)
            .build();
        PackState {
            pack,
            grants,
            records: Arc::new(NoRecords),
            memory: MemoryCap::new(memory_limit),
            deadline: Instant::now(),
            timed_out: false,
            lookup_unavailable: None,
            log_lines: 0,
            stderr,
            moment,
            stderr_seen: 0,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Start a call for the event `event_id`, committed at `at_ms`: its records, its deadline,
    /// its clock and seed, and clean bookkeeping.
    pub(crate) fn begin_call(&mut self, records: Arc<dyn RecordSource>, deadline: Instant, at_ms: i64, event_id: &str) {
        self.moment.set(at_ms, event_id);
        self.records = records;
        self.deadline = deadline;
        self.timed_out = false;
        self.lookup_unavailable = None;
        self.log_lines = 0;
        self.memory.refused = None;
        self.memory.peak = 0;
        self.stderr_seen = self.stderr.contents().len();
    }

    /// The call is over and the instance waits for the next: let go of the
    /// tenant's connections.
    pub(crate) fn end_call(&mut self) {
        self.records = Arc::new(NoRecords);
    }

    /// What the guest wrote to stderr during this call (a Rust panic message, usually).
    pub(crate) fn stderr_text(&self) -> String {
        let all = self.stderr.contents();
        String::from_utf8_lossy(&all[self.stderr_seen.min(all.len())..]).trim().to_string()
    }
}

impl WasiView for PackState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// [`StoreLimits`] plus a record of the growth it refused, so an
/// out-of-memory abort can be told apart from any other trap.
pub(crate) struct MemoryCap {
    limits: StoreLimits,
    pub(crate) limit: usize,
    pub(crate) refused: Option<usize>,
    pub(crate) peak: usize,
}

impl MemoryCap {
    fn new(limit: usize) -> Self {
        MemoryCap { limits: StoreLimitsBuilder::new().memory_size(limit).build(), limit, refused: None, peak: 0 }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak = self.peak.max(desired);
        } else {
            self.refused = Some(desired);
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }
    fn tables(&self) -> usize {
        self.limits.tables()
    }
    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
