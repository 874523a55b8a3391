//! How a plugin call can fail, in terms an operator can act on.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The pack looked at the change and refused it.
    #[error("plugin {plugin} rejected the change: {message}")]
    Rejected { plugin: String, message: String },

    #[error("plugin {plugin} ran past its {budget:?} time budget and was stopped; fix the pack (an endless loop?) or raise the budget")]
    Timeout { plugin: String, budget: Duration },

    #[error(
        "plugin {plugin} tried to grow its memory to {wanted} bytes, past its {limit}-byte limit, and was stopped"
    )]
    OutOfMemory { plugin: String, limit: usize, wanted: usize },

    #[error("plugin {plugin} trapped: {message}")]
    Trap { plugin: String, message: String },

    /// A lookup could not reach its system; retrying the event later may succeed.
    #[error("plugin {plugin} could not read a record it needs: {message}")]
    LookupUnavailable { plugin: String, message: String },
}

impl PluginError {
    /// Worth retrying as is. Everything else is permanent: dead-letter it and
    /// re-drive after the pack or the data is fixed.
    pub fn is_transient(&self) -> bool {
        matches!(self, PluginError::LookupUnavailable { .. })
    }
}
