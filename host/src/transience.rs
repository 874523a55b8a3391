//! Whether a failure is worth retrying as it stands.
//!
//! The processor retries a transient failure with backoff, inside the
//! tenant's retry window, and dead-letters the rest at once. Each error type
//! answers for its own variants, so no caller reads an error's text to tell.

/// Implemented by every error an event's processing can end in: the
/// connectors', the packs' and the apply step's, and the processor's own.
pub trait Transience {
    /// Trying the same thing again later may succeed: a system that is down or
    /// throttling, a lookup that could not be made, progress that could not be
    /// recorded. A refusal, a pack fault or a forbidden write is not: it needs
    /// the pack, the data or the configuration fixed, then a re-drive.
    fn is_transient(&self) -> bool;
}
