//! `limits`: what each listener allows a client (connections, read timeouts,
//! intake's rate per tenant).

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// What each listener allows a client.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Connections open at once, per listener; one more is closed as it arrives.
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: u64,
    /// Seconds a client has to send a request's whole body, from its first byte.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_seconds: u64,
    /// Notifications per second each tenant's intake takes, on average; more are answered
    /// 429 with `Retry-After` (the business rule and Outbound Messages send again, and the
    /// catch-up poll brings what is still missing).
    #[serde(default = "default_intake_rate")]
    pub intake_per_second: f64,
    /// How many notifications a tenant may send at once above that rate (a bulk change).
    #[serde(default = "default_intake_burst")]
    pub intake_burst: u32,
}

fn default_connections() -> usize {
    1024
}
fn default_header_timeout() -> u64 {
    10
}
fn default_body_timeout() -> u64 {
    30
}
fn default_intake_rate() -> f64 {
    200.0
}
fn default_intake_burst() -> u32 {
    2000
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_connections(),
            header_timeout_seconds: default_header_timeout(),
            body_timeout_seconds: default_body_timeout(),
            intake_per_second: default_intake_rate(),
            intake_burst: default_intake_burst(),
        }
    }
}

impl Limits {
    pub fn check(&self) -> Result<()> {
        anyhow::ensure!(self.max_connections > 0, "limits.max_connections must be at least 1");
        anyhow::ensure!(
            self.header_timeout_seconds > 0 && self.body_timeout_seconds > 0,
            "limits: the header and body timeouts must be at least 1 second"
        );
        anyhow::ensure!(
            self.intake_per_second > 0.0 && self.intake_burst > 0,
            "limits: intake_per_second and intake_burst must be above 0"
        );
        Ok(())
    }
}
