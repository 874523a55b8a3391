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
        let from = owed_from(current, since_ms);
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
        let rows = sf.query(&cases_query(&Mark::parse(&since))).await?;
        let (events, mark) = case_changes(rows);
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
        let query = servicenow_query(base, stamp, &Mark::parse(&since))?;
        Ok(Some(self.systems.servicenow.query_with_display(table, &query, PAGE).await?))
    }

    async fn poll_incidents(&self) -> Result<(usize, usize)> {
        let Some(rows) = self.servicenow_page(SERVICENOW_INCIDENTS, "incident", Query::new(), "sys_updated_on").await?
        else {
            return Ok((0, 0));
        };
        let (events, mark) = incident_changes(rows);
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
        let (events, mark) = incident_delete_changes(rows);
        self.journal(SERVICENOW_INCIDENT_DELETES, mark, events).await
    }
}

/// Rows read from a system, each a record's fields by name.
type Rows = Vec<serde_json::Map<String, Value>>;
/// A page's changes by event key, and the watermark past them (`None` when it had no readable row).
type Page = (Vec<(String, Change)>, Option<String>);

/// Where an owed catch-up poll of Cases starts: `since_ms` (epoch milliseconds) as a stamp alone,
/// unless the `current` watermark is before it; else the current watermark, or nothing ("").
fn owed_from(current: Option<String>, since_ms: Option<i64>) -> String {
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
    lowered.or(current).unwrap_or_default()
}

/// The SOQL for the page of Cases after the watermark `since`, by keyset on (SystemModstamp, Id).
fn cases_query(since: &Mark) -> String {
    let t = since.stamp.replace("+0000", "Z");
    let filter = match since.id {
        // After the last record read: later stamps, and later ids of its stamp.
        Some(id) => format!("SystemModstamp > {t} OR (SystemModstamp = {t} AND Id > {})", soql::literal(id)),
        // A stamp alone (a first start, a gap): from its first record on.
        None => format!("SystemModstamp >= {t}"),
    };
    // One query brings the records whole (FIELDS(ALL) allows 200 rows, our page).
    format!("SELECT FIELDS(ALL) FROM Case WHERE {filter} ORDER BY SystemModstamp, Id LIMIT {PAGE}")
}

/// The query for a ServiceNow source's page: the rows matching `base` after the watermark
/// `since`, by keyset on (`stamp`, sys_id).
fn servicenow_query(base: Query, stamp: &str, since: &Mark) -> Result<Query> {
    let query = match since.id {
        // After the last row read: later stamps, and later sys_ids of its stamp.
        Some(id) => base.clone().above(stamp, since.stamp)?.or_else(base.eq(stamp, since.stamp)?.above("sys_id", id)?),
        None => base.at_least(stamp, since.stamp)?,
    };
    Ok(query.order_by(stamp)?.order_by("sys_id")?)
}

/// A page of Cases as changes, and the watermark past the last of them.
fn case_changes(rows: Rows) -> Page {
    let mut events = Vec::new();
    let mut mark = None;
    for record in rows {
        let Some(read) = read_case(record, "sf-poll") else { continue };
        mark = Some(Mark { stamp: &read.stamp, id: Some(&read.id) }.encode());
        events.push((read.key, read.change));
    }
    (events, mark)
}

/// A Case read whole from a query, as the change it is.
pub(super) struct CaseRead {
    pub id: String,
    pub stamp: String,
    pub key: String,
    pub change: Change,
}

/// A queried Case row as its change, keyed by its version (or `{fallback}:{id}:{stamp}` when
/// the stamp is not a date); `None` for a row without an id or a stamp.
pub(super) fn read_case(mut record: serde_json::Map<String, Value>, fallback: &str) -> Option<CaseRead> {
    record.remove("attributes");
    let id = record.get("Id").and_then(Value::as_str)?.to_string();
    let stamp = record.get("SystemModstamp").and_then(Value::as_str)?.to_string();
    let created = record.get("CreatedDate") == record.get("LastModifiedDate");
    let key = normalize::salesforce_version_key(&id, &stamp).unwrap_or_else(|| format!("{fallback}:{id}:{stamp}"));
    let kind = if created { ChangeKind::Created } else { ChangeKind::Updated };
    let change = normalize::salesforce(&key, kind, "Case", &record, None);
    Some(CaseRead { id, stamp, key, change })
}

/// A page of incidents as changes, and the watermark past the last of them.
fn incident_changes(rows: Rows) -> Page {
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
    (events, mark)
}

/// A page of `sys_audit_delete` rows as deletes of incidents, and the watermark past the last
/// of them (the audit row's stamp and sys_id, by which the page was read).
fn incident_delete_changes(rows: Rows) -> Page {
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
    (events, mark)
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
    use super::*;
    use serde_json::json;

    fn rows(values: Vec<Value>) -> Rows {
        values.into_iter().map(|v| v.as_object().unwrap().clone()).collect()
    }

    /// A ServiceNow field as `sysparm_display_value=all` reads it.
    fn shown(value: &str) -> Value {
        json!({ "value": value, "display_value": value })
    }

    #[test]
    fn a_watermark_is_the_stamp_and_id_of_the_last_record_or_a_stamp_alone() {
        let mark = Mark::parse("2024-05-01T10:00:00.000+0000|500xx0000001");
        assert_eq!((mark.stamp, mark.id), ("2024-05-01T10:00:00.000+0000", Some("500xx0000001")));
        assert_eq!(mark.encode(), "2024-05-01T10:00:00.000+0000|500xx0000001");
        let alone = Mark::parse("2024-05-01 10:00:00");
        assert_eq!((alone.stamp, alone.id), ("2024-05-01 10:00:00", None));
        assert_eq!(alone.encode(), "2024-05-01 10:00:00");
        // Only the first bar separates: an id holding one reads back whole.
        let odd = Mark::parse("2024-05-01 10:00:00|a|b");
        assert_eq!((odd.stamp, odd.id), ("2024-05-01 10:00:00", Some("a|b")));
        assert_eq!(odd.encode(), "2024-05-01 10:00:00|a|b");
    }

    #[test]
    fn the_next_page_of_cases_starts_after_the_last_case_read_ties_included() {
        assert_eq!(
            cases_query(&Mark::parse("2024-05-01T10:00:00.000+0000|500xx0000001")),
            "SELECT FIELDS(ALL) FROM Case WHERE SystemModstamp > 2024-05-01T10:00:00.000Z OR \
             (SystemModstamp = 2024-05-01T10:00:00.000Z AND Id > '500xx0000001') ORDER BY SystemModstamp, Id LIMIT 200"
        );
        // A stamp alone (a first start, a gap to read again): that stamp's every record.
        assert_eq!(
            cases_query(&Mark::parse("2024-05-01T10:00:00.000+0000")),
            "SELECT FIELDS(ALL) FROM Case WHERE SystemModstamp >= 2024-05-01T10:00:00.000Z \
             ORDER BY SystemModstamp, Id LIMIT 200"
        );
        // The id is a quoted literal: a watermark cannot widen the query.
        let query = cases_query(&Mark::parse("2024-05-01T10:00:00.000+0000|x' OR Id != '"));
        assert!(query.contains(r"AND Id > 'x\' OR Id != \'')"), "{query}");
    }

    #[test]
    fn the_next_page_of_a_servicenow_source_starts_after_the_last_row_read_ties_included() {
        let incidents = |mark: &str| servicenow_query(Query::new(), "sys_updated_on", &Mark::parse(mark)).unwrap();
        assert_eq!(
            incidents("2024-05-01 10:00:00|0123abcd").as_str(),
            "sys_updated_on>2024-05-01 10:00:00^NQsys_updated_on=2024-05-01 10:00:00^sys_id>0123abcd\
             ^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        assert_eq!(
            incidents("2024-05-01 10:00:00").as_str(),
            "sys_updated_on>=2024-05-01 10:00:00^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        // The base filter holds on both sides of the OR: the deletes of other tables are not read.
        let deletes = Query::new().eq("tablename", "incident").unwrap();
        assert_eq!(
            servicenow_query(deletes, "sys_created_on", &Mark::parse("2024-05-01 10:00:00|a1")).unwrap().as_str(),
            "tablename=incident^sys_created_on>2024-05-01 10:00:00\
             ^NQtablename=incident^sys_created_on=2024-05-01 10:00:00^sys_id>a1^ORDERBYsys_created_on^ORDERBYsys_id"
        );
        // A watermark cannot add a term of its own.
        assert!(incidents("2024-05-01 10:00:00|x^NQactive=true").as_str().contains("sys_id>x^^NQactive=true^ORDERBY"));
        assert!(servicenow_query(Query::new(), "sys_updated_on", &Mark::parse("")).is_err(), "no empty stamp");
    }

    #[test]
    fn a_page_of_cases_moves_the_watermark_to_its_last_case() {
        let (events, mark) = case_changes(rows(vec![
            json!({ "attributes": { "type": "Case" }, "Id": "500A", "SystemModstamp": "2024-05-01T10:00:00.000+0000",
                    "CreatedDate": "2024-05-01T10:00:00.000+0000", "LastModifiedDate": "2024-05-01T10:00:00.000+0000",
                    "Subject": "new" }),
            json!({ "Id": "500B", "SystemModstamp": "2024-05-01T10:00:00.000+0000",
                    "CreatedDate": "2024-04-01T09:00:00.000+0000", "LastModifiedDate": "2024-05-01T10:00:00.000+0000" }),
            // Without an id or a stamp, a row is not read, and does not move the watermark.
            json!({ "SystemModstamp": "2024-05-01T11:00:00.000+0000" }),
            json!({ "Id": "500Z" }),
        ]));
        let keys: Vec<(&str, ChangeKind, &str)> =
            events.iter().map(|(k, c)| (k.as_str(), c.kind, c.source.id.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("sf:500A:1714557600000", ChangeKind::Created, "500A"),
                ("sf:500B:1714557600000", ChangeKind::Updated, "500B")
            ]
        );
        assert_eq!(events[0].1.event_id, "sf:500A:1714557600000");
        assert_eq!(mark.as_deref(), Some("2024-05-01T10:00:00.000+0000|500B"));

        // A stamp that is not a time still reads, under a key of its own.
        let (events, mark) = case_changes(rows(vec![json!({ "Id": "500C", "SystemModstamp": "yesterday" })]));
        assert_eq!(events[0].0, "sf-poll:500C:yesterday");
        assert_eq!(mark.as_deref(), Some("yesterday|500C"));

        // An empty page leaves the watermark where it is.
        let (events, mark) = case_changes(vec![]);
        assert!(events.is_empty());
        assert_eq!(mark, None);
    }

    #[test]
    fn a_page_of_incidents_moves_the_watermark_to_its_last_incident() {
        let (events, mark) = incident_changes(rows(vec![
            json!({ "sys_id": shown("aaa"), "sys_mod_count": shown("0"), "sys_updated_on": shown("2024-05-01 10:00:00"),
                    "work_notes": shown(""), "comments": shown(""), "short_description": shown("new") }),
            json!({ "sys_id": shown("bbb"), "sys_mod_count": shown("3"), "sys_updated_on": shown("2024-05-01 10:00:00") }),
        ]));
        let keys: Vec<(&str, ChangeKind, &str)> =
            events.iter().map(|(k, c)| (k.as_str(), c.kind, c.source.id.as_str())).collect();
        assert_eq!(
            keys,
            [("sn:aaa:0:insert", ChangeKind::Created, "aaa"), ("sn:bbb:3:update", ChangeKind::Updated, "bbb")]
        );
        // Journal fields read back empty from a query: a poll does not carry them.
        let names: Vec<&str> = events[0].1.snapshot.iter().map(|f| f.name.as_str()).collect();
        assert!(!names.contains(&"work_notes") && !names.contains(&"comments"), "{names:?}");
        assert!(names.contains(&"short_description"), "{names:?}");
        assert_eq!(mark.as_deref(), Some("2024-05-01 10:00:00|bbb"));
        assert_eq!(incident_changes(vec![]).1, None);
    }

    #[test]
    fn a_page_of_deletes_is_keyed_as_their_notifications_and_marked_by_the_audit_row() {
        let payload = "<record_update><incident><sys_mod_count>4</sys_mod_count></incident></record_update>";
        let (events, mark) = incident_delete_changes(rows(vec![
            json!({ "sys_id": shown("audit1"), "documentkey": shown("inc1"), "sys_created_on": shown("2024-05-01 10:00:00"),
                    "payload": shown(payload) }),
            json!({ "sys_id": shown("audit2"), "documentkey": shown("inc2"), "sys_created_on": shown("2024-05-01 10:00:01"),
                    "payload": shown("") }),
        ]));
        let keys: Vec<(&str, ChangeKind, &str, &str)> =
            events.iter().map(|(k, c)| (k.as_str(), c.kind, c.source.object.as_str(), c.source.id.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("sn:inc1:4:delete", ChangeKind::Deleted, "incident", "inc1"),
                ("sn-deleted:audit2", ChangeKind::Deleted, "incident", "inc2"),
            ]
        );
        // The pages are read by the audit rows' sys_id, not the incidents'.
        assert_eq!(mark.as_deref(), Some("2024-05-01 10:00:01|audit2"));
    }

    /// Cases stamped `stamp` with ids `ids`, as the org answers a query.
    fn cases(stamp: &str, ids: impl Iterator<Item = String>) -> Vec<(String, String)> {
        ids.map(|id| (stamp.to_string(), id)).collect()
    }

    #[test]
    fn paging_through_a_bulk_load_in_one_second_reads_each_case_once_and_stops_on_a_short_page() {
        let mut org = cases("2024-05-01T09:59:59.000+0000", (0..50).map(|n| format!("500A{n:04}")));
        org.extend(cases("2024-05-01T10:00:00.000+0000", (0..300).map(|n| format!("500B{n:04}"))));
        org.extend(cases("2024-05-01T10:00:01.000+0000", (0..100).map(|n| format!("500C{n:04}"))));
        org.sort();
        // The org answers the query for a watermark: what `cases_query` asks for, in its order.
        let answer = |mark: &Mark| -> Rows {
            let query = cases_query(mark);
            assert!(query.ends_with(&format!("ORDER BY SystemModstamp, Id LIMIT {PAGE}")), "{query}");
            org.iter()
                .filter(|(stamp, id)| match mark.id {
                    Some(after) => (stamp.as_str(), id.as_str()) > (mark.stamp, after),
                    None => stamp.as_str() >= mark.stamp,
                })
                .take(PAGE)
                .map(|(stamp, id)| {
                    json!({ "Id": id, "SystemModstamp": stamp, "CreatedDate": stamp, "LastModifiedDate": stamp })
                        .as_object()
                        .unwrap()
                        .clone()
                })
                .collect()
        };
        let mut watermark = "2024-05-01T09:59:59.000+0000".to_string();
        let (mut read, mut pages) = (Vec::new(), Vec::new());
        loop {
            let (events, mark) = case_changes(answer(&Mark::parse(&watermark)));
            pages.push(events.len());
            read.extend(events.into_iter().map(|(_, c)| c.source.id));
            if let Some(mark) = mark {
                watermark = mark;
            }
            if pages.last() < Some(&PAGE) || pages.len() > 5 {
                break;
            }
        }
        assert_eq!(pages, [200, 200, 50]);
        assert_eq!(read, org.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(), "each Case once, in order");
        assert_eq!(watermark, "2024-05-01T10:00:01.000+0000|500C0099");
    }

    #[test]
    fn an_owed_poll_moves_the_case_watermark_back_never_forward() {
        let current = || Some("2024-05-01T10:00:00.000+0000|500B".to_string());
        let ms = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis();
        // A gap before the watermark: read again from its stamp, the whole stamp.
        assert_eq!(owed_from(current(), Some(ms("2024-05-01T09:00:00.123Z"))), "2024-05-01T09:00:00.123+0000");
        // A gap at the watermark's own stamp: that stamp's records before the last one read are read again.
        assert_eq!(owed_from(current(), Some(ms("2024-05-01T10:00:00Z"))), "2024-05-01T10:00:00.000+0000");
        // A gap after it: the watermark stands, id and all.
        assert_eq!(owed_from(current(), Some(ms("2024-05-01T10:00:00.001Z"))), "2024-05-01T10:00:00.000+0000|500B");
        // Nothing said of the gap: from the watermark.
        assert_eq!(owed_from(current(), None), "2024-05-01T10:00:00.000+0000|500B");
        assert_eq!(owed_from(None, Some(ms("2024-05-01T09:00:00Z"))), "2024-05-01T09:00:00.000+0000");
        assert_eq!(owed_from(None, None), "");
    }

    #[test]
    fn a_deleted_records_mod_count_is_read_from_its_payload() {
        let payload = r#"<?xml version="1.0" encoding="UTF-8"?><record_update table="incident"><incident><number>INC0010001</number><sys_mod_count>4</sys_mod_count></incident></record_update>"#;
        assert_eq!(xml_element(payload, "sys_mod_count").as_deref(), Some("4"));
        assert_eq!(xml_element(payload, "sys_id"), None);
        assert_eq!(xml_element("<sys_mod_count>4 OR 1</sys_mod_count>", "sys_mod_count"), None, "only digits");
        assert_eq!(xml_element("<sys_mod_count>", "sys_mod_count"), None, "cut short");
    }
}
