//! Catch-up polling: notifications can be lost (dropped, misconfigured, an
//! endpoint down for longer than the sender retries). The poller reads what
//! changed since its watermark (Case.SystemModstamp, incident.sys_updated_on,
//! and the incidents' deletes in `sys_audit_delete.sys_created_on`) and
//! journals it like a notification.
//!
//! Pages are read by keyset, `(timestamp, id)`: the watermark is the last
//! record read, and the next page starts after it. A bulk load that stamps a
//! thousand records in one second is read page by page, not the same first
//! page forever.
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
use crate::connectors::salesforce::soql;
use crate::connectors::servicenow::Query;
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
pub const SERVICENOW_INCIDENT_DELETES: &str = "servicenow.incident.deleted";
/// Set while a catch-up poll of Cases is owed (a change event stream's gap): the debt outlives a
/// failed poll and a crash, and is paid by [`Poller::pay_cases`].
pub const SALESFORCE_CASES_OWED: &str = "salesforce.Case.owed";

pub struct Poller {
    pub tenant: String,
    pub journal: Arc<Journal>,
    pub systems: Arc<Systems>,
    /// Whether each pass reads Cases too. Not when Salesforce's changes come over the Pub/Sub
    /// API, whose replay ids leave nothing to catch up on but gaps ([`Poller::owe_cases`]).
    pub poll_salesforce: bool,
    /// One reader of the Case watermark at a time: the periodic pass and each topic's gap
    /// recovery would otherwise move it under each other.
    cases: tokio::sync::Mutex<()>,
    /// Set once the instance has refused seam a read of `sys_audit_delete` (said once in the log).
    deletes_refused: std::sync::atomic::AtomicBool,
}

/// A watermark: the stamp of the last record read, and its id (`stamp|id`). A stamp alone
/// (a first start, a gap to read) reads from the first record of that stamp on.
struct Mark<'a> {
    stamp: &'a str,
    id: Option<&'a str>,
}

impl<'a> Mark<'a> {
    fn parse(text: &'a str) -> Mark<'a> {
        match text.split_once('|') {
            Some((stamp, id)) => Mark { stamp, id: Some(id) },
            None => Mark { stamp: text, id: None },
        }
    }

    fn encode(&self) -> String {
        match self.id {
            Some(id) => format!("{}|{id}", self.stamp),
            None => self.stamp.to_string(),
        }
    }
}

/// What one pass found.
#[derive(Debug, Default, PartialEq)]
pub struct Polled {
    pub read: usize,
    /// Changes the journal did not have yet.
    pub new: usize,
}

impl Poller {
    pub fn new(tenant: &str, journal: Arc<Journal>, systems: Arc<Systems>, poll_salesforce: bool) -> Poller {
        Poller {
            tenant: tenant.into(),
            journal,
            systems,
            poll_salesforce,
            cases: Default::default(),
            deletes_refused: Default::default(),
        }
    }

    pub async fn poll_once(&self) -> Result<Polled> {
        let mut polled = Polled::default();
        let cases = if self.poll_salesforce {
            let _cases = self.cases.lock().await;
            self.poll_cases().await?
        } else {
            (0, 0)
        };
        for (read, new) in [cases, self.poll_incidents().await?, self.poll_incident_deletes().await?] {
            polled.read += read;
            polled.new += new;
        }
        Ok(polled)
    }

    /// Owe a catch-up poll of Cases: those changed since `since_ms` (epoch milliseconds), or with
    /// `None` those changed since the watermark (set now if it is not yet). Stored before it
    /// returns, so the stream may move on: the debt stands until [`Poller::pay_cases`] has read
    /// it all.
    pub async fn owe_cases(&self, since_ms: Option<i64>) -> Result<()> {
        let _cases = self.cases.lock().await;
        self.begin_cases().await?;
        let current = self.watermark(SALESFORCE_CASES).await?;
        // Never forward: a later watermark would skip part of the gap. A stamp alone reads
        // from the first record of that stamp.
        let lowered = since_ms
            .map(|ms| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .unwrap_or(chrono::DateTime::UNIX_EPOCH)
                    .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
                    .to_string()
            })
            .filter(|mark| current.as_deref().is_none_or(|c| Mark::parse(c).stamp >= mark.as_str()));
        let from = lowered.or(current).unwrap_or_default();
        self.journal
            .set_watermarks(&self.tenant, &[(SALESFORCE_CASES, &from), (SALESFORCE_CASES_OWED, &from)], &[])
            .await
    }

    /// Pay an owed catch-up poll of Cases, page by page. `None` when nothing was owed; else how
    /// many changes were new to the journal. On failure the debt stands, to be paid later.
    pub async fn pay_cases(&self) -> Result<Option<usize>> {
        let _cases = self.cases.lock().await;
        if self.watermark(SALESFORCE_CASES_OWED).await?.is_none() {
            return Ok(None);
        }
        let mut new = 0;
        loop {
            let before = self.watermark(SALESFORCE_CASES).await?;
            let (read, fresh) = self.poll_cases().await?;
            new += fresh;
            // A short page is the last. Keyset pages always move the watermark; one that did not
            // (a system that ignored the keyset) would be read again forever.
            if read < PAGE || self.watermark(SALESFORCE_CASES).await? == before {
                break;
            }
        }
        self.journal.clear_watermark(&self.tenant, SALESFORCE_CASES_OWED).await?;
        Ok(Some(new))
    }

    /// A source's watermark, read off the tokio workers.
    async fn watermark(&self, source: &str) -> Result<Option<String>> {
        let (tenant, source) = (self.tenant.clone(), source.to_string());
        self.journal.run(move |j| j.watermark(&tenant, &source)).await
    }

    /// A first start: the watermark is set at `at`, and nothing before it is read.
    async fn start_at(&self, source: &str, at: &str) -> Result<(usize, usize)> {
        self.journal.set_watermark(&self.tenant, source, at).await?;
        tracing::info!(tenant = %self.tenant, "first start: catch-up polling of {source} begins at {at}; what changed before is history, not synced (`seam backfill` brings it)");
        Ok((0, 0))
    }

    async fn journal(
        &self,
        source: &str,
        mark: Option<String>,
        events: Vec<(String, Change)>,
    ) -> Result<(usize, usize)> {
        let read = events.len();
        // The page and the watermark past it in one transaction: a crash between them can no longer read the page again.
        let recorded = match mark {
            Some(mark) => self.journal.record_all_up_to(&self.tenant, events, source, &mark).await?,
            None => self.journal.record_all(&self.tenant, events).await?,
        };
        Ok((read, recorded.iter().filter(|r| r.is_new()).count()))
    }

    /// A first start of Case polling: the watermark just past the newest Case there is (what is
    /// there now is history). Does nothing when the watermark is set.
    async fn begin_cases(&self) -> Result<()> {
        if self.watermark(SALESFORCE_CASES).await?.is_some() {
            return Ok(());
        }
        // The newest change there is, one millisecond on: what is there now is history.
        // With no Case at all there is no history, and every Case to come is new: the
        // watermark starts at the epoch (this machine's clock says nothing of the org's).
        let newest = self
            .systems
            .salesforce
            .query("SELECT SystemModstamp FROM Case ORDER BY SystemModstamp DESC LIMIT 1")
            .await?;
        let at = newest
            .first()
            .and_then(|r| r.get("SystemModstamp").and_then(Value::as_str))
            .and_then(|s| {
                chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
                    .ok()
                    .map(|t| t.with_timezone(&chrono::Utc))
            })
            .map_or(chrono::DateTime::UNIX_EPOCH, |t| t + chrono::Duration::milliseconds(1));
        self.start_at(SALESFORCE_CASES, &at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()).await?;
        Ok(())
    }

    async fn poll_cases(&self) -> Result<(usize, usize)> {
        let sf = &self.systems.salesforce;
        let Some(since) = self.watermark(SALESFORCE_CASES).await? else {
            return self.begin_cases().await.map(|()| (0, 0));
        };
        let since = Mark::parse(&since);
        let t = since.stamp.replace("+0000", "Z");
        let filter = match since.id {
            // After the last record read: later stamps, and later ids of its stamp.
            Some(id) => format!("SystemModstamp > {t} OR (SystemModstamp = {t} AND Id > {})", soql::literal(id)),
            // A stamp alone (a first start, a gap): from its first record on.
            None => format!("SystemModstamp >= {t}"),
        };
        // One query brings the records whole (FIELDS(ALL) allows 200 rows, our page).
        let rows = sf
            .query(&format!("SELECT FIELDS(ALL) FROM Case WHERE {filter} ORDER BY SystemModstamp, Id LIMIT {PAGE}"))
            .await?;
        let mut events = Vec::new();
        let mut mark = None;
        for mut record in rows {
            record.remove("attributes");
            let (Some(id), Some(stamp)) = (
                record.get("Id").and_then(Value::as_str).map(str::to_string),
                record.get("SystemModstamp").and_then(Value::as_str).map(str::to_string),
            ) else {
                continue;
            };
            let created = record.get("CreatedDate") == record.get("LastModifiedDate");
            let key = normalize::salesforce_version_key(&id, &stamp).unwrap_or_else(|| format!("sf-poll:{id}:{stamp}"));
            let kind = if created { ChangeKind::Created } else { ChangeKind::Updated };
            events.push((key.clone(), normalize::salesforce(&key, kind, "Case", &record, None)));
            mark = Some(Mark { stamp: &stamp, id: Some(&id) }.encode());
        }
        self.journal(SALESFORCE_CASES, mark, events).await
    }

    /// A first start's watermarks, set before seam says it is ready: what changes from then on
    /// is caught up even when seam stops before its first poll (a Pub/Sub subscription with
    /// no stored position catches up from the Case watermark). Does nothing on a restart.
    pub async fn begin(&self) -> Result<()> {
        {
            let _cases = self.cases.lock().await;
            self.begin_cases().await?;
        }
        if self.watermark(SERVICENOW_INCIDENTS).await?.is_none() {
            self.begin_servicenow(SERVICENOW_INCIDENTS, "incident", Query::new(), "sys_updated_on").await?;
        }
        if self.watermark(SERVICENOW_INCIDENT_DELETES).await?.is_none() {
            // An instance that hides its audit of deletes is told of by the first poll.
            if let Err(e) = self
                .begin_servicenow(
                    SERVICENOW_INCIDENT_DELETES,
                    "sys_audit_delete",
                    Query::new().eq("tablename", "incident")?,
                    "sys_created_on",
                )
                .await
            {
                tracing::debug!(tenant = %self.tenant, "incident deletes: no first watermark yet: {e:#}");
            }
        }
        Ok(())
    }

    /// A ServiceNow source's first start: its watermark just past the newest row of `table`
    /// matching `base`. `stamp` counts whole seconds, so the newest row's second is history and
    /// the next one is not; with no row at all, every row to come is new.
    async fn begin_servicenow(&self, source: &str, table: &str, base: Query, stamp: &str) -> Result<()> {
        let newest = self.systems.servicenow.query(table, &base.order_by_desc(stamp)?, 1).await?;
        let at = newest
            .first()
            .map(|r| normalize::text_field(r, stamp))
            .and_then(|s| chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc()))
            .map_or(chrono::DateTime::UNIX_EPOCH, |t| t + chrono::Duration::seconds(1));
        self.start_at(source, &at.format("%Y-%m-%d %H:%M:%S").to_string()).await?;
        Ok(())
    }

    /// A ServiceNow source's next page: the rows of `table` matching `base`, after the watermark
    /// `source` by keyset on (`stamp`, sys_id). A first start sets the watermark instead, and
    /// reads nothing (see [`Poller::begin_servicenow`]).
    async fn servicenow_page(
        &self,
        source: &str,
        table: &str,
        base: Query,
        stamp: &str,
    ) -> Result<Option<Vec<serde_json::Map<String, Value>>>> {
        let Some(since) = self.watermark(source).await? else {
            self.begin_servicenow(source, table, base, stamp).await?;
            return Ok(None);
        };
        let since = Mark::parse(&since);
        let query = match since.id {
            // After the last row read: later stamps, and later sys_ids of its stamp.
            Some(id) => {
                base.clone().above(stamp, since.stamp)?.or_else(base.eq(stamp, since.stamp)?.above("sys_id", id)?)
            }
            None => base.at_least(stamp, since.stamp)?,
        };
        Ok(Some(
            self.systems
                .servicenow
                .query_with_display(table, &query.order_by(stamp)?.order_by("sys_id")?, PAGE)
                .await?,
        ))
    }

    async fn poll_incidents(&self) -> Result<(usize, usize)> {
        let Some(rows) = self.servicenow_page(SERVICENOW_INCIDENTS, "incident", Query::new(), "sys_updated_on").await?
        else {
            return Ok((0, 0));
        };
        let mut events = Vec::new();
        let mut mark = None;
        for mut row in rows {
            let (id, count, updated) = (
                normalize::text_field(&row, "sys_id"),
                normalize::text_field(&row, "sys_mod_count"),
                normalize::text_field(&row, "sys_updated_on"),
            );
            // Journals read back empty; a poll cannot know what was appended.
            row.remove("work_notes");
            row.remove("comments");
            let operation = if count == "0" { "insert" } else { "update" };
            let key = format!("sn:{id}:{count}:{operation}");
            let kind = if count == "0" { ChangeKind::Created } else { ChangeKind::Updated };
            events.push((key.clone(), normalize::servicenow(&key, kind, "incident", &row, None)));
            mark = Some(Mark { stamp: &updated, id: Some(&id) }.encode());
        }
        self.journal(SERVICENOW_INCIDENTS, mark, events).await
    }

    /// Incidents deleted since the watermark, from the platform's record of deletes
    /// (`sys_audit_delete`), for delete notifications that never arrived. Each is journaled
    /// under the key its notification has (`sn:{sys_id}:{sys_mod_count}:delete`, the count
    /// read from the deleted record's XML), so the two are one event. An instance that does
    /// not let seam read the table is told of once, and the rest of the poll goes on.
    async fn poll_incident_deletes(&self) -> Result<(usize, usize)> {
        use std::sync::atomic::Ordering;
        if self.deletes_refused.load(Ordering::Relaxed) {
            return Ok((0, 0));
        }
        let rows = match self
            .servicenow_page(
                SERVICENOW_INCIDENT_DELETES,
                "sys_audit_delete",
                Query::new().eq("tablename", "incident")?,
                "sys_created_on",
            )
            .await
        {
            Ok(Some(rows)) => rows,
            Ok(None) => return Ok((0, 0)),
            Err(e)
                if matches!(
                    e.downcast_ref::<crate::connectors::ConnectorError>(),
                    Some(crate::connectors::ConnectorError::Refused { status: 401 | 403, .. })
                ) =>
            {
                self.deletes_refused.store(true, Ordering::Relaxed);
                tracing::warn!(tenant = %self.tenant, "incident deletes are not caught up: the instance refuses seam a read of sys_audit_delete ({e}); give the integration user's role read access to it (docs/real-orgs.md)");
                return Ok((0, 0));
            }
            Err(e) => return Err(e),
        };
        let mut events = Vec::new();
        let mut mark = None;
        for row in rows {
            let (audit_id, id, deleted_at) = (
                normalize::text_field(&row, "sys_id"),
                normalize::text_field(&row, "documentkey"),
                normalize::text_field(&row, "sys_created_on"),
            );
            let key = match xml_element(&normalize::text_field(&row, "payload"), "sys_mod_count") {
                Some(count) => format!("sn:{id}:{count}:delete"),
                None => format!("sn-deleted:{audit_id}"),
            };
            let record = serde_json::Map::from_iter([("sys_id".to_string(), Value::String(id.clone()))]);
            events.push((key.clone(), normalize::servicenow(&key, ChangeKind::Deleted, "incident", &record, None)));
            mark = Some(Mark { stamp: &deleted_at, id: Some(&audit_id) }.encode());
        }
        self.journal(SERVICENOW_INCIDENT_DELETES, mark, events).await
    }
}

/// The text of the first `<name>` element of an XML document, when it holds only digits
/// (all the poller reads: a record's sys_mod_count).
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let text = &xml[start..start + xml[start..].find('<')?];
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::xml_element;

    #[test]
    fn a_deleted_records_mod_count_is_read_from_its_payload() {
        let payload = r#"<?xml version="1.0" encoding="UTF-8"?><record_update table="incident"><incident><number>INC0010001</number><sys_mod_count>4</sys_mod_count></incident></record_update>"#;
        assert_eq!(xml_element(payload, "sys_mod_count").as_deref(), Some("4"));
        assert_eq!(xml_element(payload, "sys_id"), None);
        assert_eq!(xml_element("<sys_mod_count>4 OR 1</sys_mod_count>", "sys_mod_count"), None, "only digits");
        assert_eq!(xml_element("<sys_mod_count>", "sys_mod_count"), None, "cut short");
    }
}
