//! Backfill: history brought in on purpose. A first start syncs nothing that
//! was there before (see [`super::poller`]); `seam backfill` reads the Cases
//! changed since a date (and matching a SOQL condition, if given) and
//! journals each as a change, the way the catch-up poll does, for the running
//! engine to carry across.
//!
//! It goes page by page, in SystemModstamp and Id order, and keeps its place
//! in the journal: an interrupted backfill run again with the same date and
//! condition goes on where it stopped. It journals the next page only when
//! the tenant's backlog has room, so the org's API calls are spent at the
//! engine's pace, and it stops while the org's daily API allowance still has
//! the reserve left (`Sforce-Limit-Info`).

use super::apply::Systems;
use crate::store::{EventStatus, Journal};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Cases read per page (FIELDS(ALL) reads at most 200 rows a query).
pub const PAGE: usize = 200;
/// API calls seam makes to carry one Case across, at most: Salesforce reads its Account and
/// stamps the link on the Case; ServiceNow finds the company and inserts the incident.
/// Batched writes make it fewer when many go at once.
pub const SALESFORCE_CALLS_PER_CASE: u64 = 2;
pub const SERVICENOW_CALLS_PER_CASE: u64 = 2;

pub struct Backfill {
    tenant: String,
    journal: Arc<Journal>,
    systems: Arc<Systems>,
    /// Cases changed since then.
    since: chrono::DateTime<chrono::Utc>,
    /// A SOQL condition on Case, ANDed with the date (`Status != 'Closed'`).
    condition: Option<String>,
    /// When this run began: a first run reads the Cases changed up to then (later changes come
    /// through notifications, and seam's own writes to the Cases it brings are not read again).
    started: chrono::DateTime<chrono::Utc>,
}

impl Backfill {
    pub fn new(
        tenant: &str,
        journal: Arc<Journal>,
        systems: Arc<Systems>,
        since: chrono::DateTime<chrono::Utc>,
        condition: Option<String>,
    ) -> Self {
        Backfill { tenant: tenant.to_string(), journal, systems, since, condition, started: chrono::Utc::now() }
    }
}

/// What a backfill would do, before it starts.
#[derive(Debug)]
pub struct Plan {
    /// Cases an earlier run of the same backfill journaled already.
    pub done: u64,
    /// Cases still to journal: those after the place it stopped, in its span.
    pub left: u64,
    pub salesforce_calls: u64,
    pub servicenow_calls: u64,
    /// The org's API requests today (used, allowance), as its last answer reported.
    pub api_usage: Option<(u64, u64)>,
}

/// Where a backfill stands: the last Case journaled, how many so far, and the end of the
/// span it reads (when its first run began).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Place {
    stamp: String,
    id: String,
    done: u64,
    until: String,
}

/// Why a page was not journaled.
#[derive(Debug, PartialEq)]
pub enum Pause {
    /// Every Case is journaled.
    Finished,
    /// The org's allowance is down to the reserve: (used, allowance).
    Budget(u64, u64),
}

/// Parse `--since`: a date (midnight UTC) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .with_context(|| format!("--since {text:?}: give a date (2026-11-01) or a time (2026-11-01T09:00:00Z)"))
}

fn soql_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl Backfill {
    /// The journal key that keeps this backfill's place: one per date and condition.
    fn place_key(&self) -> String {
        let what = format!("{}|{}", soql_time(&self.since), self.condition.as_deref().unwrap_or(""));
        format!("backfill.salesforce.Case.{}", &hex::encode(Sha256::digest(what.as_bytes()))[..16])
    }

    async fn place(&self) -> Result<Option<Place>> {
        let (tenant, key) = (self.tenant.clone(), self.place_key());
        match self.journal.run(move |j| j.watermark(&tenant, &key)).await? {
            Some(text) => Ok(Some(serde_json::from_str(&text).context("reading the backfill's place in the journal")?)),
            None => Ok(None),
        }
    }

    /// The span's end: the first run's start.
    fn until(&self, place: Option<&Place>) -> String {
        place.map(|p| p.until.clone()).filter(|u| !u.is_empty()).unwrap_or_else(|| soql_time(&self.started))
    }

    fn filter(&self, place: Option<&Place>) -> String {
        let mut filter =
            format!("SystemModstamp >= {} AND SystemModstamp <= {}", soql_time(&self.since), self.until(place));
        if let Some(c) = self.condition.as_deref().filter(|c| !c.trim().is_empty()) {
            filter.push_str(&format!(" AND ({c})"));
        }
        filter
    }

    /// Count the Cases and estimate the calls, asking the org (its answer's `Sforce-Limit-Info`
    /// says how much of today's allowance is used). A condition Salesforce refuses is named here.
    pub async fn plan(&self) -> Result<Plan> {
        let sf = &self.systems.salesforce;
        let place = self.place().await?;
        // What is left is counted after the place: the Cases already brought in may have moved
        // out of the span since (seam's own writes to them change their SystemModstamp).
        let soql = format!("SELECT COUNT() FROM Case WHERE {}{}", self.filter(place.as_ref()), after(place.as_ref()));
        let left = sf.count(&soql).await.map_err(|e| {
            anyhow::anyhow!(
                "counting the Cases to backfill: {e}{}",
                if self.condition.is_some() { " (check --where: it is SOQL, ANDed with the date)" } else { "" }
            )
        })?;
        let done = place.map(|p| p.done).unwrap_or(0);
        Ok(Plan {
            done,
            left,
            salesforce_calls: left.div_ceil(PAGE as u64) + left * SALESFORCE_CALLS_PER_CASE,
            servicenow_calls: left * SERVICENOW_CALLS_PER_CASE,
            api_usage: sf.api_usage(),
        })
    }

    /// Journal the next page, unless the org's allowance is down to `reserve` (a fraction of
    /// it). Returns how many Cases it journaled (and how many were new to the journal).
    pub async fn next_page(&self, reserve: f64) -> Result<std::result::Result<(usize, usize), Pause>> {
        let sf = &self.systems.salesforce;
        if let Some((used, allowance)) = sf.api_usage() {
            if used as f64 >= allowance as f64 * (1.0 - reserve) {
                return Ok(Err(Pause::Budget(used, allowance)));
            }
        }
        let stored = self.place().await?;
        let filter = self.filter(stored.as_ref());
        let after = after(stored.as_ref());
        let mut place = stored.unwrap_or_else(|| Place { until: self.until(None), ..Place::default() });
        let soql =
            format!("SELECT FIELDS(ALL) FROM Case WHERE {filter}{after} ORDER BY SystemModstamp, Id LIMIT {PAGE}");
        let rows = sf.query(&soql).await.map_err(|e| anyhow::anyhow!("reading Cases to backfill: {e}"))?;
        if rows.is_empty() {
            return Ok(Err(Pause::Finished));
        }
        let mut events = Vec::new();
        for record in rows {
            let Some(read) = super::poller::read_case(record, "sf-backfill") else { continue };
            events.push((read.key, read.change));
            // SOQL compares datetimes written as …Z.
            place.stamp = chrono::DateTime::parse_from_str(&read.stamp, "%Y-%m-%dT%H:%M:%S%.f%z")
                .map(|t| soql_time(&t.with_timezone(&chrono::Utc)))
                .unwrap_or(read.stamp);
            place.id = read.id;
        }
        let read = events.len();
        place.done += read as u64;
        let new = self
            .journal
            .record_all_up_to(&self.tenant, events, &self.place_key(), &serde_json::to_string(&place)?)
            .await?
            .iter()
            .filter(|r| r.is_new())
            .count();
        Ok(Ok((read, new)))
    }

    /// Events of the tenant still waiting to be carried across (the running engine's backlog).
    pub async fn backlog(&self) -> Result<u64> {
        let tenant = self.tenant.clone();
        self.journal.run(move |j| j.status_count(&tenant, EventStatus::Pending)).await
    }
}

/// The condition for the Cases after `place` in SystemModstamp and Id order (nothing without one).
fn after(place: Option<&Place>) -> String {
    match place.filter(|p| !p.stamp.is_empty()) {
        Some(p) => format!(
            " AND (SystemModstamp > {0} OR (SystemModstamp = {0} AND Id > {1}))",
            p.stamp,
            crate::connectors::salesforce::soql::literal(&p.id)
        ),
        None => String::new(),
    }
}

/// A `--reserve` of `10%` or `0.1`: the fraction of the daily allowance to leave unused.
pub fn parse_reserve(text: &str) -> Result<f64> {
    let value = match text.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.trim().parse::<f64>(),
    }
    .with_context(|| format!("--reserve {text:?}: give a share of the daily allowance, like 10% or 0.1"))?;
    if !(0.0..1.0).contains(&value) {
        bail!("--reserve {text:?}: between 0% and 99%");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_times_and_reserves_are_read_or_named() {
        assert_eq!(soql_time(&parse_since("2026-11-01").unwrap()), "2026-11-01T00:00:00.000Z");
        assert_eq!(soql_time(&parse_since("2026-11-01T09:30:00+01:00").unwrap()), "2026-11-01T08:30:00.000Z");
        assert!(parse_since("last week").unwrap_err().to_string().contains("2026-11-01"));
        assert_eq!(parse_reserve("10%").unwrap(), 0.1);
        assert_eq!(parse_reserve("0.25").unwrap(), 0.25);
        assert!(parse_reserve("150%").is_err() && parse_reserve("lots").is_err());
    }
}
