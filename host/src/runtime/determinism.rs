//! What a pack sees of time and chance. A call's clocks read the event's
//! commit time, and its "random" bytes are drawn from the event's id, so an
//! event replayed (after a crash, a re-drive, a rebuild) gives the same
//! actions as the first time. Nothing a pack computes depends on when seam
//! happened to run it.

use rand_core::TryRng;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The instant and the seed of the call in progress, shared by the WASI context's clocks and
/// generators (one instance serves many calls, each with its own event).
#[derive(Clone, Default)]
pub(crate) struct Moment {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Since the Unix epoch.
    at: Duration,
    seed: [u8; 32],
    /// Blocks of the byte stream handed out so far this call.
    drawn: u64,
    /// What is left of the current block.
    pending: Vec<u8>,
}

impl Moment {
    /// Start a call for the event `event_id`, committed at `at_ms`.
    pub(crate) fn set(&self, at_ms: i64, event_id: &str) {
        let mut inner = self.inner.lock().expect("the moment");
        inner.at = Duration::from_millis(at_ms.max(0) as u64);
        inner.seed = Sha256::digest(event_id.as_bytes()).into();
        inner.drawn = 0;
        inner.pending.clear();
    }

    fn at(&self) -> Duration {
        self.inner.lock().expect("the moment").at
    }

    /// The next bytes of SHA-256(seed ‖ block number), block after block.
    fn fill(&self, out: &mut [u8]) {
        let mut inner = self.inner.lock().expect("the moment");
        for byte in out {
            if inner.pending.is_empty() {
                let block = Sha256::new().chain_update(inner.seed).chain_update(inner.drawn.to_le_bytes()).finalize();
                inner.drawn += 1;
                inner.pending = block.iter().rev().copied().collect();
            }
            *byte = inner.pending.pop().expect("a block was just drawn");
        }
    }

    pub(crate) fn wall_clock(&self) -> impl HostWallClock + 'static {
        EventClock(self.clone())
    }
    pub(crate) fn monotonic_clock(&self) -> impl HostMonotonicClock + 'static {
        EventClock(self.clone())
    }
    pub(crate) fn random(&self) -> EventBytes {
        EventBytes(self.clone())
    }
}

/// `wasi:clocks`: both clocks stand still at the event's commit time for the whole call.
struct EventClock(Moment);

impl HostWallClock for EventClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0.at()
    }
}

impl HostMonotonicClock for EventClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0.at().as_nanos() as u64
    }
}

/// `wasi:random`: bytes that depend on the event alone. Not secret, and not meant to be: a
/// pack has no business making keys.
pub(crate) struct EventBytes(Moment);

impl TryRng for EventBytes {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_event_draws_the_same_bytes_and_another_event_others() {
        let moment = Moment::default();
        let draw = |event: &str| {
            moment.set(1_796_116_320_000, event);
            let mut bytes = [0u8; 100];
            moment.random().try_fill_bytes(&mut bytes).unwrap();
            bytes
        };
        let first = draw("sn:abc:1:update");
        assert_eq!(first, draw("sn:abc:1:update"));
        assert_ne!(first, draw("sn:abc:2:update"));
        assert_ne!(first[..32], first[32..64], "blocks differ");
        assert_eq!(moment.wall_clock().now(), Duration::from_millis(1_796_116_320_000));
    }
}
