//! Catch-up polling: notifications can be lost (dropped, misconfigured, an
//! endpoint down for longer than the sender retries). The poller reads what
//! changed since its watermark (Case.SystemModstamp, incident.sys_updated_on)
//! and journals it like a notification.
//!
//! Duplicates cost nothing: a poll uses the notification's own event key
//! (ServiceNow: `sys_id:mod_count:operation`; Salesforce: record id and
//! SystemModstamp, `normalize::salesforce_version_key`), so the journal drops
//! what a notification already brought.
//!
//! A tenant's first start sets the watermarks at "now", just past the newest
//! record each system has: an org with years of Cases does not get an
//! incident for each. History comes only when asked for (`seam backfill`).

use super::apply::Systems;
use super::normalize;
use crate::model::{Change, ChangeKind};
use crate::store::Journal;
use anyhow::Result;
use serde_json::Value;
use std::sync::Arc;

/// Records read per source per pass.
const PAGE: usize = 200;
/// The watermarks' names in the journal.
pub const SALESFORCE_CASES: &str = "salesforce.Case";
pub const SERVICENOW_INCIDENTS: &str = "servicenow.incident";

pub struct Poller {
    pub tenant: String,
    pub journal: Arc<Journal>,
    pub systems: Arc<Systems>,
    /// Whether each pass reads Cases too. Not when Salesforce's changes come over the Pub/Sub
    /// API, whose replay ids leave nothing to catch up on but gaps ([`Poller::catch_up_cases_since`]).
    pub poll_salesforce: bool,
}

/// What one pass found.
#[derive(Debug, Default, PartialEq)]
pub struct Polled {
    pub read: usize,
    /// Changes the journal did not have yet.
    pub new: usize,
}

impl Poller {
    pub async fn poll_once(&self) -> Result<Polled> {
        let mut polled = Polled::default();
        let cases = if self.poll_salesforce { self.poll_cases().await? } else { (0, 0) };
        for (read, new) in [cases, self.poll_incidents().await?] {
            polled.read += read;
            polled.new += new;
        }
        Ok(polled)
    }

    /// Read every Case changed since `since_ms` (epoch milliseconds), page by page: what a
    /// change event stream could not replay. Returns how many changes were new to the journal.
    pub async fn catch_up_cases_since(&self, since_ms: i64) -> Result<usize> {
        let since = chrono::DateTime::from_timestamp_millis(since_ms).unwrap_or(chrono::DateTime::UNIX_EPOCH);
        let mark = since.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
        // Never forward: a later watermark would skip part of the gap.
        let current = self.journal.watermark(&self.tenant, SALESFORCE_CASES)?;
        if current.as_deref().is_none_or(|c| c > mark.as_str()) {
            self.journal.set_watermark(&self.tenant, SALESFORCE_CASES, &mark)?;
        }
        self.catch_up_cases().await
    }

    /// Read every Case changed since the watermark, page by page; how many changes were new.
    pub async fn catch_up_cases(&self) -> Result<usize> {
        let mut new = 0;
        loop {
            let before = self.journal.watermark(&self.tenant, SALESFORCE_CASES)?;
            let (read, fresh) = self.poll_cases().await?;
            new += fresh;
            // A short page is the last; a full one that did not move the watermark (a page of
            // Cases all stamped in one millisecond) would be read again forever.
            if read < PAGE || self.journal.watermark(&self.tenant, SALESFORCE_CASES)? == before {
                return Ok(new);
            }
        }
    }

    /// A first start: the watermark is set at `at`, and nothing before it is read.
    fn start_at(&self, source: &str, at: &str) -> Result<(usize, usize)> {
        self.journal.set_watermark(&self.tenant, source, at)?;
        tracing::info!(tenant = %self.tenant, "first start: catch-up polling of {source} begins at {at}; what changed before is history, not synced (`seam backfill` brings it)");
        Ok((0, 0))
    }

    async fn journal(&self, source: &str, mark: Option<String>, events: Vec<(String, Change)>) -> Result<(usize, usize)> {
        let read = events.len();
        let new = self.journal.record_all(&self.tenant, events).await?.iter().filter(|r| r.is_new()).count();
        if let Some(mark) = mark {
            self.journal.set_watermark(&self.tenant, source, &mark)?;
        }
        Ok((read, new))
    }

    /// A first start of Case polling: the watermark just past the newest Case there is (what is
    /// there now is history). Does nothing when the watermark is set.
    pub async fn begin_cases(&self) -> Result<()> {
        if self.journal.watermark(&self.tenant, SALESFORCE_CASES)?.is_some() {
            return Ok(());
        }
        // The newest change there is, one millisecond on: what is there now is history.
        // With no Case at all there is no history, and every Case to come is new: the
        // watermark starts at the epoch (this machine's clock says nothing of the org's).
        let newest = self.systems.salesforce.query("SELECT SystemModstamp FROM Case ORDER BY SystemModstamp DESC LIMIT 1").await?;
        let at = newest
            .first()
            .and_then(|r| r.get("SystemModstamp").and_then(Value::as_str))
            .and_then(|s| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").ok().map(|t| t.with_timezone(&chrono::Utc)))
            .map_or(chrono::DateTime::UNIX_EPOCH, |t| t + chrono::Duration::milliseconds(1));
        self.start_at(SALESFORCE_CASES, &at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())?;
        Ok(())
    }

    async fn poll_cases(&self) -> Result<(usize, usize)> {
        let sf = &self.systems.salesforce;
        let since = self.journal.watermark(&self.tenant, SALESFORCE_CASES)?;
        if since.is_none() {
            return self.begin_cases().await.map(|()| (0, 0));
        }
        // `>=`: records sharing the watermark's millisecond are read again and dropped as duplicates.
        let filter = since.as_deref().map(|t| format!(" WHERE SystemModstamp >= {}", t.replace("+0000", "Z"))).unwrap_or_default();
        // One query brings the records whole (FIELDS(ALL) allows 200 rows, our page).
        let rows = sf.query(&format!("SELECT FIELDS(ALL) FROM Case{filter} ORDER BY SystemModstamp LIMIT {PAGE}")).await?;
        let mut events = Vec::new();
        let mut mark = None;
        for mut record in rows {
            record.remove("attributes");
            let (Some(id), Some(stamp)) = (record.get("Id").and_then(Value::as_str).map(str::to_string), record.get("SystemModstamp").and_then(Value::as_str).map(str::to_string)) else { continue };
            let created = record.get("CreatedDate") == record.get("LastModifiedDate");
            let key = normalize::salesforce_version_key(&id, &stamp).unwrap_or_else(|| format!("sf-poll:{id}:{stamp}"));
            let kind = if created { ChangeKind::Created } else { ChangeKind::Updated };
            events.push((key.clone(), normalize::salesforce(&key, kind, "Case", &record, None)));
            mark = Some(stamp);
        }
        self.journal(SALESFORCE_CASES, mark, events).await
    }

    async fn poll_incidents(&self) -> Result<(usize, usize)> {
        let sn = &self.systems.servicenow;
        let since = self.journal.watermark(&self.tenant, SERVICENOW_INCIDENTS)?;
        if since.is_none() {
            // sys_updated_on counts whole seconds: the newest change's second is history, the next one is not.
            // With no incident at all, every incident to come is new (see the Cases above).
            let newest = sn.query("incident", "ORDERBYDESCsys_updated_on", 1).await?;
            let at = newest
                .first()
                .and_then(|r| r.get("sys_updated_on").and_then(Value::as_str))
                .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc()))
                .map_or(chrono::DateTime::UNIX_EPOCH, |t| t + chrono::Duration::seconds(1));
            return self.start_at(SERVICENOW_INCIDENTS, &at.format("%Y-%m-%d %H:%M:%S").to_string());
        }
        let filter = since.map(|t| format!("sys_updated_on>={t}^")).unwrap_or_default();
        let rows = sn.query_with_display("incident", &format!("{filter}ORDERBYsys_updated_on"), PAGE).await?;
        let mut events = Vec::new();
        let mut mark = None;
        for mut row in rows {
            let value = |r: &serde_json::Map<String, Value>, f: &str| r.get(f).and_then(|v| v.get("value").or(Some(v))).and_then(Value::as_str).unwrap_or_default().to_string();
            let (id, count, updated) = (value(&row, "sys_id"), value(&row, "sys_mod_count"), value(&row, "sys_updated_on"));
            // Journals read back empty; a poll cannot know what was appended.
            row.remove("work_notes");
            row.remove("comments");
            let operation = if count == "0" { "insert" } else { "update" };
            let key = format!("sn:{id}:{count}:{operation}");
            let kind = if count == "0" { ChangeKind::Created } else { ChangeKind::Updated };
            events.push((key.clone(), normalize::servicenow(&key, kind, "incident", &row, None)));
            mark = Some(updated);
        }
        self.journal(SERVICENOW_INCIDENTS, mark, events).await
    }
}
