//! What one plugin call's `Store` holds: a sandboxed WASI context, the
//! memory cap, the pack's grants, and the call's bookkeeping.

use super::imports::lookup::{Grants, RecordSource};
use super::PluginMeta;
use std::sync::Arc;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Keeps what a guest panics with, so a trap can say why.
const STDERR_CAPTURE: usize = 16 * 1024;

pub struct PluginState {
    pub(crate) plugin: Arc<PluginMeta>,
    pub(crate) grants: Arc<Grants>,
    pub(crate) records: Arc<dyn RecordSource>,
    pub(crate) memory: MemoryCap,
    /// Set by the epoch callback when the call's time budget ran out.
    pub(crate) timed_out: bool,
    /// Set when a lookup could not reach its system: the event is retried, not dead-lettered.
    pub(crate) lookup_unavailable: Option<String>,
    pub(crate) log_lines: u32,
    stderr: MemoryOutputPipe,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl PluginState {
    pub(crate) fn new(plugin: Arc<PluginMeta>, grants: Arc<Grants>, records: Arc<dyn RecordSource>, memory_limit: usize) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        // No preopened directories, no environment, no arguments; sockets stay at
        // their default (every address denied, TCP/UDP/name lookup off).
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        PluginState {
            plugin,
            grants,
            records,
            memory: MemoryCap::new(memory_limit),
            timed_out: false,
            lookup_unavailable: None,
            log_lines: 0,
            stderr,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// What the guest wrote to stderr (a Rust panic message, usually).
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).trim().to_string()
    }
}

impl WasiView for PluginState {
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
