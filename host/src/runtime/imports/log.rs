//! `seam:sync/log`: guest log lines go to the host's tracing, tagged with the pack.

use crate::runtime::bindings::v0_1_0::seam::sync::log as v0_1_0;
use crate::runtime::state::PluginState;

/// A pack that logs more than this in one call is cut off (the call goes on).
pub const MAX_LINES_PER_CALL: u32 = 200;
/// Longer lines are truncated.
pub const MAX_LINE_BYTES: usize = 4096;

#[derive(Clone, Copy, Debug)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

pub(crate) fn emit(state: &mut PluginState, level: Level, message: &str) {
    state.log_lines += 1;
    if state.log_lines > MAX_LINES_PER_CALL {
        if state.log_lines == MAX_LINES_PER_CALL + 1 {
            tracing::warn!(target: "seam::plugin", plugin = %state.plugin, "more than {MAX_LINES_PER_CALL} log lines in one call; dropping the rest");
        }
        return;
    }
    let mut end = message.len().min(MAX_LINE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message[..end];
    let plugin = &state.plugin;
    match level {
        Level::Debug => tracing::debug!(target: "seam::plugin", %plugin, "{message}"),
        Level::Info => tracing::info!(target: "seam::plugin", %plugin, "{message}"),
        Level::Warn => tracing::warn!(target: "seam::plugin", %plugin, "{message}"),
        Level::Error => tracing::error!(target: "seam::plugin", %plugin, "{message}"),
    }
}

impl v0_1_0::Host for PluginState {
    async fn log(&mut self, level: v0_1_0::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            v0_1_0::Level::Debug => Level::Debug,
            v0_1_0::Level::Info => Level::Info,
            v0_1_0::Level::Warn => Level::Warn,
            v0_1_0::Level::Error => Level::Error,
        };
        emit(self, level, &message);
        Ok(())
    }
}
