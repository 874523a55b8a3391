//! `seam:sync/log`: guest log lines go to the host's tracing, tagged with the pack.

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

/// `log` has not changed since 0.1.0; each version's generated trait gets the same body.
macro_rules! log_host {
    ($version:ident) => {
        impl crate::runtime::bindings::$version::seam::sync::log::Host for PluginState {
            async fn log(
                &mut self,
                level: crate::runtime::bindings::$version::seam::sync::log::Level,
                message: String,
            ) -> wasmtime::Result<()> {
                use crate::runtime::bindings::$version::seam::sync::log::Level as Wit;
                let level = match level {
                    Wit::Debug => Level::Debug,
                    Wit::Info => Level::Info,
                    Wit::Warn => Level::Warn,
                    Wit::Error => Level::Error,
                };
                emit(self, level, &message);
                Ok(())
            }
        }
    };
}
log_host!(v0_1_0);
log_host!(v0_2_0);
