//! Fault injection, per emulator: rate limiting, server errors, latency, lost
//! responses and dropped notifications and Pub/Sub streams, set by `seam sim --fault`
//! or `PUT /__admin/faults`.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability (0..1) that an API request is refused as rate-limited.
    pub rate_limit: f64,
    /// Refuse the next N API requests as rate-limited (deterministic, for tests).
    pub rate_limit_next: u32,
    /// Probability (0..1) that an API request fails with 503.
    pub server_error: f64,
    /// Fail the next N API requests with 503.
    pub server_error_next: u32,
    /// Added to every API request, in milliseconds.
    pub latency_ms: u64,
    /// Probability (0..1) that a change notification is never sent.
    pub drop_notifications: f64,
    /// Never send the next N change notifications.
    pub drop_notifications_next: u32,
    /// Probability (0..1) that a write (any request but a GET) is carried out and its
    /// connection then cut before the response: the client cannot tell whether it happened.
    pub drop_responses: f64,
    /// Carry out the next N writes and cut each one's connection before the response.
    pub drop_responses_next: u32,
    /// Seconds a rate-limited client is told to wait.
    pub retry_after_secs: u64,
    /// Probability (0..1) that a Pub/Sub subscription is cut (UNAVAILABLE) instead of sending its next batch.
    pub drop_streams: f64,
    /// Cut the next N Pub/Sub subscriptions that have a batch to send.
    pub drop_streams_next: u32,
    /// Publish the next N change events as gap events (`GAP_UPDATE`, header only), as
    /// Salesforce does when it cannot build an event: subscribers must read the records.
    pub gap_events_next: u32,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_limit: 0.0,
            rate_limit_next: 0,
            server_error: 0.0,
            server_error_next: 0,
            latency_ms: 0,
            drop_notifications: 0.0,
            drop_notifications_next: 0,
            drop_responses: 0.0,
            drop_responses_next: 0,
            retry_after_secs: 1,
            drop_streams: 0.0,
            drop_streams_next: 0,
            gap_events_next: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    RateLimited { retry_after: u64 },
    ServerError,
}

#[derive(Default)]
pub struct FaultSwitch {
    faults: Mutex<Faults>,
}

fn roll(p: f64) -> bool {
    p > 0.0 && rand::random::<f64>() < p
}

impl FaultSwitch {
    pub fn get(&self) -> Faults {
        self.faults.lock().unwrap().clone()
    }

    pub fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    pub fn latency(&self) -> Option<Duration> {
        let ms = self.faults.lock().unwrap().latency_ms;
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Decide this API request's fate.
    pub fn request(&self) -> Option<Fault> {
        let mut f = self.faults.lock().unwrap();
        let retry_after = f.retry_after_secs;
        if f.rate_limit_next > 0 {
            f.rate_limit_next -= 1;
            return Some(Fault::RateLimited { retry_after });
        }
        if f.server_error_next > 0 {
            f.server_error_next -= 1;
            return Some(Fault::ServerError);
        }
        if roll(f.rate_limit) {
            return Some(Fault::RateLimited { retry_after });
        }
        roll(f.server_error).then_some(Fault::ServerError)
    }

    /// Should this change notification be dropped?
    pub fn drop_notification(&self) -> bool {
        self.decide(|f| (&mut f.drop_notifications_next, f.drop_notifications))
    }

    /// Should this write's response be lost after the write is made?
    pub fn drop_response(&self) -> bool {
        self.decide(|f| (&mut f.drop_responses_next, f.drop_responses))
    }

    /// Should this change event be published as a gap event?
    pub fn gap_event(&self) -> bool {
        self.decide(|f| (&mut f.gap_events_next, 0.0))
    }

    /// Should this subscription be cut instead of sending its batch?
    pub fn drop_stream(&self) -> bool {
        self.decide(|f| (&mut f.drop_streams_next, f.drop_streams))
    }

    /// A fault with a deterministic count (`…_next`, used up first) and a probability.
    fn decide(&self, fault: impl FnOnce(&mut Faults) -> (&mut u32, f64)) -> bool {
        let mut f = self.faults.lock().unwrap();
        let (next, probability) = fault(&mut f);
        if *next > 0 {
            *next -= 1;
            return true;
        }
        roll(probability)
    }
}

/// Parse `--fault salesforce.rate_limit=0.2` style settings onto `faults`.
pub fn apply_setting(faults: &mut Faults, key: &str, value: &str) -> anyhow::Result<()> {
    let mut json = serde_json::to_value(&*faults)?;
    // The known names are the fields of `Faults`, so the message cannot fall behind them.
    let known = json.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let slot = json.get_mut(key).ok_or_else(|| anyhow::anyhow!("unknown fault {key:?}; known: {known}"))?;
    *slot = serde_json::from_str(value).map_err(|_| anyhow::anyhow!("fault {key} needs a number, got {value:?}"))?;
    *faults = serde_json::from_value(json).map_err(|e| anyhow::anyhow!("fault {key}={value}: {e}"))?;
    Ok(())
}
