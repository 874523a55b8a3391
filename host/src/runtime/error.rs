//! How a pack call can fail, in terms an operator can act on.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The pack looked at the change and refused it.
    #[error("pack {pack} rejected the change: {message}")]
    Rejected { pack: String, message: String },

    #[error("pack {pack} ran past its {budget:?} time budget and was stopped; fix the pack (an endless loop?) or raise the tenant's pack_limits.time_budget_ms")]
    Timeout { pack: String, budget: Duration },

    #[error("pack {pack} tried to grow its memory to {wanted} bytes, past its {limit}-byte limit, and was stopped; fix the pack or raise the tenant's pack_limits.memory_mib")]
    OutOfMemory { pack: String, limit: usize, wanted: usize },

    #[error("pack {pack} trapped: {message}")]
    Trap { pack: String, message: String },

    /// A lookup could not reach its system; retrying the event later may succeed.
    #[error("pack {pack} could not read a record it needs: {message}")]
    LookupUnavailable { pack: String, message: String },
}

impl crate::transience::Transience for PackError {
    /// Only a lookup that could not reach its system. Everything else is
    /// permanent: dead-letter it and re-drive after the pack or the data is fixed.
    fn is_transient(&self) -> bool {
        matches!(self, PackError::LookupUnavailable { .. })
    }
}
