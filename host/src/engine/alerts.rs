//! Backlog alerts: when a tenant's backlog, its age or its dead letters pass
//! a threshold, tell a person (a Slack message and a log line), once per
//! episode. The episode ends when things are well below the thresholds again
//! (half, so a backlog hovering at the line does not alert on every check),
//! and that is said too. Whether an episode is open is kept in the journal,
//! so a restart in the middle of one does not alert again.

use super::apply::Systems;
use crate::config::alerts::AlertConfig;
use crate::store::views::Backlog;
use crate::store::Journal;
use anyhow::Result;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;

/// What one check did.
#[derive(Clone, Debug, PartialEq)]
pub enum Alert {
    /// A threshold was passed and nobody had been told yet.
    Raised(String),
    /// Back to normal after an alert.
    Cleared(String),
}

pub struct Alerter {
    pub tenant: String,
    pub journal: Arc<Journal>,
    pub systems: Arc<Systems>,
    pub config: AlertConfig,
    /// Counts alerts sent (`seam_backlog_alerts_total`).
    pub sent: Counter,
    /// Where people look: the dashboard's address, named in the message.
    pub dashboard: Option<String>,
}

const EPISODE: &str = "alert-episode";

fn age(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Alerter {
    /// Which thresholds `b` passes, in words; empty when none.
    fn breaches(&self, b: &Backlog, scale: f64) -> Vec<String> {
        let c = &self.config;
        let over = |value: u64, limit: u64| limit > 0 && value as f64 >= limit as f64 * scale;
        let mut out = Vec::new();
        if over(b.pending, c.backlog_events) {
            out.push(format!("{} events waiting (threshold {})", b.pending, c.backlog_events));
        }
        let age_ms = b.oldest_age_ms.unwrap_or(0);
        if over(age_ms as u64, c.backlog_age_seconds * 1000) {
            out.push(format!(
                "the oldest has waited {} (threshold {})",
                age(age_ms),
                age(c.backlog_age_seconds as i64 * 1000)
            ));
        }
        if over(b.dead, c.dead_letters) {
            out.push(format!("{} in the dead-letter queue (threshold {})", b.dead, c.dead_letters));
        }
        out
    }

    /// Check once; alert or clear when the episode starts or ends.
    pub async fn check(&self) -> Result<Option<Alert>> {
        let tenant = self.tenant.clone();
        let (backlog, episode) =
            self.journal.run(move |j| Ok((j.backlog(&tenant)?, j.watermark(&tenant, EPISODE)?))).await?;
        let open = episode.is_some_and(|v| v == "open");
        let alert = if !open {
            let breaches = self.breaches(&backlog, 1.0);
            if breaches.is_empty() {
                return Ok(None);
            }
            let look = self.dashboard.as_ref().map(|d| format!(" Dashboard: {d}.")).unwrap_or_default();
            Alert::Raised(format!(
                ":warning: seam, tenant {}: {}.{look} Dead letters: `seam dlq list`, then `seam dlq redrive` once the cause is fixed.",
                self.tenant,
                breaches.join("; ")
            ))
        } else {
            if !self.breaches(&backlog, 0.5).is_empty() {
                return Ok(None);
            }
            Alert::Cleared(format!(
                ":white_check_mark: seam, tenant {}: back to normal ({} waiting, {} dead letters).",
                self.tenant, backlog.pending, backlog.dead
            ))
        };
        let (text, state) = match &alert {
            Alert::Raised(t) => {
                tracing::warn!(tenant = %self.tenant, "ALERT {t}");
                (t, "open")
            }
            Alert::Cleared(t) => {
                tracing::info!(tenant = %self.tenant, "{t}");
                (t, "closed")
            }
        };
        // Say it first, then note it said it: a failed post is tried again on the next check.
        if let Some(slack) = &self.systems.slack {
            let channel = slack.ensure_channel(&self.config.slack_channel).await?;
            slack.post(&channel, text).await?;
        }
        self.journal.set_watermark(&self.tenant, EPISODE, state).await?;
        self.sent.inc();
        Ok(Some(alert))
    }

    pub async fn run_forever(self) {
        let every = Duration::from_secs(self.config.check_seconds.max(1));
        loop {
            if let Err(e) = self.check().await {
                tracing::warn!(tenant = %self.tenant, "backlog alert check failed (tried again in {every:?}): {e:#}");
            }
            tokio::time::sleep(every).await;
        }
    }
}
