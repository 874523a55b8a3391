//! `seam:sync/log`: guest log lines go to the host's tracing, tagged with the pack.

use crate::runtime::state::PackState;

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

pub(crate) fn emit(state: &mut PackState, level: Level, message: &str) {
    state.log_lines += 1;
    if state.log_lines > MAX_LINES_PER_CALL {
        if state.log_lines == MAX_LINES_PER_CALL + 1 {
            tracing::warn!(target: "seam::pack", pack = %state.pack, "more than {MAX_LINES_PER_CALL} log lines in one call; dropping the rest");
        }
        return;
    }
    let mut end = message.len().min(MAX_LINE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message[..end];
    let pack = &state.pack;
    match level {
        Level::Debug => tracing::debug!(target: "seam::pack", %pack, "{message}"),
        Level::Info => tracing::info!(target: "seam::pack", %pack, "{message}"),
        Level::Warn => tracing::warn!(target: "seam::pack", %pack, "{message}"),
        Level::Error => tracing::error!(target: "seam::pack", %pack, "{message}"),
    }
}

/// `log` has not changed since 0.1.0: each version's module expands this to
/// implement its generated trait with the same body.
macro_rules! log_host {
    () => {
        impl self::seam::sync::log::Host for crate::runtime::state::PackState {
            async fn log(&mut self, level: self::seam::sync::log::Level, message: String) -> wasmtime::Result<()> {
                use self::seam::sync::log::Level as Wit;
                use crate::runtime::imports::log::{emit, Level};
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
pub(crate) use log_host;
