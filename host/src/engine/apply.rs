//! Carry a pack's actions into the systems, in order.
//!
//! Besides the writes themselves this is where the host keeps its promises
//! about links and identity: a linked create writes the correlation into
//! both records, and the customer is matched on the stable key
//! (Account.External_Id__c ⇄ core_company.u_sf_external_id), never a name.

use super::normalize::{
    self, ACCOUNT_KEY_FIELD, CASE_INCIDENT_FIELD, CASE_INCIDENT_NUMBER_FIELD, COMPANY_KEY_FIELD, CREATE_KEY_FIELD,
    INCIDENT_CASE_FIELD,
};
use crate::config::{salesforce, servicenow, slack};
use crate::connectors::salesforce::{soql, Salesforce};
use crate::connectors::servicenow::{Query, ServiceNow};
use crate::connectors::slack::Slack;
use crate::connectors::{ConnectorError, RetryPolicy};
use crate::model::{Action, Carried, Change, ChangeKind, Field, JournalKind, RecordRef, System, Target, Value};
use crate::runtime::records::BoxFuture;
use crate::transience::Transience;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The tenant's connections.
pub struct Systems {
    pub salesforce: Salesforce,
    pub servicenow: ServiceNow,
    pub slack: Option<Slack>,
    /// Whether seam's own Salesforce writes come back as changes to expect as echoes:
    /// Outbound Messages bring them; the Pub/Sub subscriber drops them at the source
    /// (their `changeOrigin` names seam's client), so none would come.
    pub salesforce_echoes: bool,
}

/// One write made in a system, for the audit trail.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Write {
    pub record: RecordRef,
    pub operation: &'static str,
    /// What seam sent.
    pub fields: Vec<Field>,
    /// What the record is now known to hold: after a create, the whole record
    /// when the system returns it (ServiceNow does), its defaults included;
    /// after an update, the fields sent, as the system stored them. This feeds
    /// the shadow, so the write's own echo is recognised. An update's response
    /// also shows other fields, but a person may have changed those a moment
    /// before: taking them as synced would swallow that person's change when
    /// its notification arrives.
    pub observed: Vec<Field>,
    /// Which of the actions made it (its index), so each write is credited to the pack that asked for it.
    pub action: usize,
}

impl Write {
    fn sent(record: RecordRef, operation: &'static str, body: &Map<String, Json>) -> Self {
        let fields = to_fields(body);
        Write { record, operation, observed: fields.clone(), fields, action: 0 }
    }
    fn returned(
        record: RecordRef,
        operation: &'static str,
        body: &Map<String, Json>,
        result: &Map<String, Json>,
    ) -> Self {
        let mut observed = to_fields(result);
        if operation != "create" {
            observed.retain(|f| body.contains_key(&f.name));
        }
        Write { record, operation, fields: to_fields(body), observed, action: 0 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error("action {0} needs a linked record, and {1} has none")]
    NoLink(String, RecordRef),
    #[error("{0}")]
    Unsupported(String),
    /// Progress could not be recorded; the event is retried (creates are found, not repeated).
    #[error("recording progress: {0}")]
    Progress(String),
}

impl From<crate::connectors::servicenow::QueryError> for ApplyError {
    fn from(e: crate::connectors::servicenow::QueryError) -> Self {
        ApplyError::Connector(e.into())
    }
}

impl Transience for ApplyError {
    fn is_transient(&self) -> bool {
        match self {
            ApplyError::Connector(e) => e.is_transient(),
            ApplyError::Progress(_) => true,
            ApplyError::NoLink(..) | ApplyError::Unsupported(_) => false,
        }
    }
}

/// Whether the actions were tried before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// A first attempt: nothing has been tried.
    Start,
    /// An earlier attempt stopped part way. The actions whose keys it recorded as done
    /// (`Carried::done`) are skipped; any other may have happened with its record lost
    /// (a crash, or a response that never came), so a create looks for its record by key
    /// and an append or post for its text before it is made.
    Retry,
}

/// Each action's idempotency key: a hash of the event and the action as the pack asked for
/// it (its placeholders unexpanded), and which repeat of that same action it is. A retry
/// recomputes the actions with whichever pack version is active then, and the keys of those
/// that were already carried out match, wherever they now stand in the list.
pub fn action_keys(event: &str, actions: &[Action]) -> Vec<String> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    actions
        .iter()
        .map(|action| {
            let text = serde_json::to_string(action).unwrap_or_default();
            let repeat = seen.entry(text.clone()).or_default();
            let mut hash = Sha256::new();
            for part in [event.as_bytes(), text.as_bytes(), &repeat.to_le_bytes()] {
                hash.update((part.len() as u64).to_le_bytes());
                hash.update(part);
            }
            *repeat += 1;
            hex::encode(&hash.finalize()[..16])
        })
        .collect()
}

/// For [`Systems::apply_resuming`] when nothing is to be kept of each action's progress.
pub fn no_progress<'d>(_: usize, _: Carried, _: Vec<Write>) -> BoxFuture<'d, anyhow::Result<()>> {
    Box::pin(async { Ok(()) })
}

/// What carrying out the actions did.
#[derive(Debug)]
pub struct Applied {
    pub writes: Vec<Write>,
    /// The source's partner once the actions ran: the one the change named, or the one a linked create made.
    pub linked: Option<RecordRef>,
}

/// What the placeholders in action text can refer to.
struct Context<'a> {
    change: &'a Change,
    linked: Option<RecordRef>,
    linked_number: Option<String>,
    /// The record the latest create made (a Task, say), for `{{created.url}}`.
    created: Option<RecordRef>,
    /// The keys of the actions carried out.
    done: std::collections::BTreeSet<String>,
}

impl Context<'_> {
    fn carried(&self) -> Carried {
        Carried {
            linked: self.linked.clone(),
            linked_number: self.linked_number.clone(),
            created: self.created.clone(),
            done: self.done.clone(),
        }
    }
}

impl Systems {
    /// Log in where needed and build the connections for one tenant.
    /// Log in to a configured tenant's systems.
    pub async fn for_tenant(tenant: &str, config: &crate::config::TenantConfig) -> anyhow::Result<Systems> {
        let slack = config.slack.as_ref();
        Systems::connect(
            tenant,
            &config.salesforce,
            &config.servicenow,
            slack,
            config.ca_pem.as_deref(),
            RetryPolicy::default(),
        )
        .await
    }

    pub async fn connect(
        tenant: &str,
        salesforce: &salesforce::Credentials,
        servicenow: &servicenow::Credentials,
        slack: Option<&slack::Credentials>,
        ca_pem: Option<&std::path::Path>,
        policy: RetryPolicy,
    ) -> anyhow::Result<Systems> {
        use anyhow::Context;
        let sf = Salesforce::connect(salesforce, tenant, ca_pem, policy.clone())
            .await
            .with_context(|| format!("logging in to Salesforce at {}", salesforce.login_url))?;
        let sn = ServiceNow::new(servicenow, tenant, ca_pem, policy.clone())?;
        sn.authenticate()
            .await
            .with_context(|| format!("authenticating to ServiceNow at {}", servicenow.instance_url))?;
        let slack = slack.map(|c| Slack::new(c, tenant, ca_pem, policy)).transpose()?;
        Ok(Systems { salesforce: sf, servicenow: sn, slack, salesforce_echoes: true })
    }

    /// Whether `system` sends seam's own writes back as changes. seam's ServiceNow push
    /// rule skips the integration user's changes at the source, so an echo expected from
    /// ServiceNow would never come, and meanwhile every other value of that field would
    /// read as stale; a catch-up poll that reads seam's write back finds it in the shadow.
    pub fn echoes_come_back(&self, system: System) -> bool {
        system == System::Salesforce && self.salesforce_echoes
    }

    /// A link a person can open.
    pub fn url(&self, record: &RecordRef) -> String {
        match record.system {
            System::Salesforce => {
                format!("{}/lightning/r/{}/{}/view", self.salesforce.instance_url(), record.object, record.id)
            }
            System::Servicenow => format!(
                "{}/nav_to.do?uri={}.do%3Fsys_id%3D{}",
                self.servicenow.instance_url(),
                record.object,
                record.id
            ),
            System::Slack => record.id.clone(),
        }
    }

    fn expand(&self, text: &str, ctx: &Context) -> String {
        if !text.contains("{{") {
            return text.to_string();
        }
        let mut out = text
            .replace("{{source.id}}", &ctx.change.source.id)
            .replace("{{source.url}}", &self.url(&ctx.change.source));
        if let Some(linked) = &ctx.linked {
            out = out.replace("{{linked.id}}", &linked.id).replace("{{linked.url}}", &self.url(linked));
        }
        if let Some(created) = &ctx.created {
            out = out.replace("{{created.id}}", &created.id).replace("{{created.url}}", &self.url(created));
        }
        out.replace("{{linked.number}}", ctx.linked_number.as_deref().unwrap_or(""))
    }

    fn fields_json(&self, fields: &[Field], ctx: &Context) -> Map<String, Json> {
        fields
            .iter()
            .map(|f| {
                let value = match &f.value {
                    Value::Text(s) => Json::String(self.expand(s, ctx)),
                    other => normalize::json(other),
                };
                (f.name.clone(), value)
            })
            .collect()
    }

    fn target(&self, target: &Target, ctx: &Context, action: &str) -> Result<RecordRef, ApplyError> {
        match target {
            Target::Source => Ok(ctx.change.source.clone()),
            Target::Explicit(r) => Ok(r.clone()),
            Target::Linked => {
                ctx.linked.clone().ok_or_else(|| ApplyError::NoLink(action.to_string(), ctx.change.source.clone()))
            }
        }
    }

    /// Update a record; public so the engine can restore a field a person changed on the side that does not own it.
    pub async fn update(&self, record: RecordRef, fields: &Map<String, Json>) -> Result<Write, ApplyError> {
        match record.system {
            System::Salesforce => {
                self.salesforce.update(&record.object, &record.id, fields).await?;
                Ok(Write::sent(record, "update", fields))
            }
            System::Servicenow => {
                let result = self.servicenow.update(&record.object, &record.id, fields).await?;
                Ok(Write::returned(record, "update", fields, &result))
            }
            System::Slack => Err(ApplyError::Unsupported("Slack messages cannot be updated".into())),
        }
    }

    /// Delete a record; `false` when it was gone already.
    pub async fn delete(&self, record: &RecordRef) -> Result<bool, ApplyError> {
        match record.system {
            System::Salesforce => Ok(self.salesforce.delete(&record.object, &record.id).await?),
            System::Servicenow => Ok(self.servicenow.delete(&record.object, &record.id).await?),
            System::Slack => Err(ApplyError::Unsupported("seam does not delete Slack messages".into())),
        }
    }

    /// Run `actions` for `change`; returns every write made, in order.
    pub async fn apply(&self, change: &Change, actions: &[Action]) -> Result<Vec<Write>, ApplyError> {
        Ok(self
            .apply_resuming(&change.event_id, change, actions, Resume::Start, Carried::default(), no_progress)
            .await?
            .writes)
    }

    /// Run the actions not yet done, awaiting `done(n, carried, writes)` after each one
    /// (n = the actions through this one; `carried.done` with its key added; the writes
    /// it made) so the caller can persist progress, and what the writes leave, together,
    /// and resume after a failure instead of repeating what already happened.
    /// `event`: what the action keys are made from (see [`action_keys`]).
    /// `carried`: what the earlier attempt's actions left (the partner it created, the keys
    /// of the actions it carried out), so the same actions resolve the same way; a linked
    /// create is a no-op once there is a partner.
    pub async fn apply_resuming<'d>(
        &self,
        event: &str,
        change: &Change,
        actions: &[Action],
        resume: Resume,
        carried: Carried,
        mut done: impl FnMut(usize, Carried, Vec<Write>) -> BoxFuture<'d, anyhow::Result<()>>,
    ) -> Result<Applied, ApplyError> {
        let linked = carried.linked.or_else(|| change.linked.clone());
        let linked_number =
            carried.linked_number.or_else(|| linked.as_ref().and_then(|_| known_partner_number(change)));
        let mut ctx = Context { change, linked, linked_number, created: carried.created, done: carried.done };
        let mut writes = Vec::new();
        let retry = resume == Resume::Retry;
        for (n, (action, key)) in actions.iter().zip(action_keys(event, actions)).enumerate() {
            if ctx.done.contains(&key) {
                continue;
            }
            // On a retry, an action not recorded as done may still have happened (a crash
            // between the write and the record of it, or a response lost on the way back).
            // Updates and linked creates are safe to repeat, and a create by key finds its
            // record; an append or a post is looked for first.
            if retry {
                let already = match action {
                    Action::AppendJournal { target, kind, text } => {
                        let record = self.target(target, &ctx, "append-journal")?;
                        self.appended(&record, *kind, &journal_text(&record, self.expand(text, &ctx))).await?
                    }
                    Action::PostSlack { channel, create_channel, text } => {
                        self.posted(
                            channel,
                            *create_channel,
                            &crate::connectors::slack::escape(&self.expand(text, &ctx)),
                        )
                        .await?
                    }
                    _ => false,
                };
                if already {
                    tracing::info!(source = %change.source, "resuming: action {n} already happened before the last attempt stopped; not repeating it");
                    ctx.done.insert(key);
                    done(n + 1, ctx.carried(), Vec::new()).await.map_err(|e| ApplyError::Progress(format!("{e:#}")))?;
                    continue;
                }
            }
            let before = writes.len();
            match action {
                Action::Update { target, fields } => {
                    let record = self.target(target, &ctx, "update")?;
                    let body = self.fields_json(fields, &ctx);
                    writes.push(self.update(record, &body).await?);
                }
                Action::Delete { target } => {
                    let record = self.target(target, &ctx, "delete")?;
                    // Gone already (a retry, or someone else deleted it): nothing to write.
                    if self.delete(&record).await? {
                        writes.push(Write::sent(record, "delete", &Map::new()));
                    }
                }
                Action::AppendJournal { target, kind, text } => {
                    let record = self.target(target, &ctx, "append-journal")?;
                    let text = journal_text(&record, self.expand(text, &ctx));
                    writes.push(self.journal(&record, *kind, &text).await?);
                }
                Action::Create { link_to_source: true, system, object, .. } if ctx.linked.is_some() => {
                    // A record has one partner. A second pack (or a second action)
                    // opening one is satisfied by the partner that exists.
                    tracing::debug!(source = %change.source, "{system} {object} not created: the source is already linked to {}", ctx.linked.as_ref().unwrap());
                }
                Action::Create { system, object, fields, link_to_source } => {
                    let body = self.fields_json(fields, &ctx);
                    // A record announced as just created, on a first attempt, cannot have a partner yet: skip the search.
                    let surely_new = change.kind == ChangeKind::Created && !retry;
                    let (created, number, mut made) =
                        self.create(change, (*system, object), body, *link_to_source, surely_new, &key).await?;
                    if *link_to_source {
                        ctx.linked = Some(created.clone());
                        ctx.linked_number = number;
                    }
                    ctx.created = Some(created);
                    writes.append(&mut made);
                }
                Action::PostSlack { channel, create_channel, text } => {
                    let slack = self.slack.as_ref().ok_or_else(|| {
                        ApplyError::Unsupported("the pack posts to Slack, but no Slack connection is configured".into())
                    })?;
                    let channel_id =
                        if *create_channel { slack.ensure_channel(channel).await? } else { channel.clone() };
                    let text = crate::connectors::slack::escape(&self.expand(text, &ctx));
                    let ts = slack.post(&channel_id, &text).await?;
                    let record =
                        RecordRef { system: System::Slack, object: "message".into(), id: format!("{channel_id}/{ts}") };
                    writes.push(Write::sent(
                        record,
                        "post",
                        &Map::from_iter([("text".to_string(), Json::String(text))]),
                    ));
                }
            }
            for w in &mut writes[before..] {
                w.action = n;
            }
            ctx.done.insert(key);
            done(n + 1, ctx.carried(), writes[before..].to_vec())
                .await
                .map_err(|e| ApplyError::Progress(format!("{e:#}")))?;
        }
        Ok(Applied { writes, linked: ctx.linked })
    }

    /// Whether `text` (as [`journal_text`] writes it) is already among the latest entries of the record's journal.
    async fn appended(&self, record: &RecordRef, kind: JournalKind, text: &str) -> Result<bool, ApplyError> {
        match record.system {
            System::Servicenow => {
                let element = if kind == JournalKind::WorkNote { "work_notes" } else { "comments" };
                let query = Query::new()
                    .eq("element_id", &record.id)?
                    .eq("element", element)?
                    .order_by_desc("sys_created_on")?;
                let rows = self.servicenow.query("sys_journal_field", &query, 20).await?;
                Ok(rows.iter().any(|r| r.get("value").and_then(Json::as_str) == Some(text)))
            }
            System::Salesforce => {
                let soql = format!(
                    "SELECT Id, CommentBody FROM CaseComment WHERE ParentId = {} ORDER BY CreatedDate DESC LIMIT 20",
                    soql::literal(&record.id)
                );
                let rows = self.salesforce.query(&soql).await?;
                Ok(rows.iter().any(|r| r.get("CommentBody").and_then(Json::as_str) == Some(text)))
            }
            System::Slack => Ok(false),
        }
    }

    /// Whether `text` is already among the channel's latest messages.
    async fn posted(&self, channel: &str, created: bool, text: &str) -> Result<bool, ApplyError> {
        let Some(slack) = &self.slack else { return Ok(false) };
        let id = if created {
            match slack.channels().await?.into_iter().find(|(name, _)| name == channel) {
                Some((_, id)) => id,
                None => return Ok(false),
            }
        } else {
            channel.to_string()
        };
        Ok(slack.history(&id).await?.iter().any(|t| t == text))
    }

    async fn journal(&self, record: &RecordRef, kind: JournalKind, text: &str) -> Result<Write, ApplyError> {
        match record.system {
            System::Servicenow => {
                let element = if kind == JournalKind::WorkNote { "work_notes" } else { "comments" };
                let body = Map::from_iter([(element.to_string(), Json::String(text.to_string()))]);
                let result = self.servicenow.append(&record.object, &record.id, &body).await?;
                // The journal field reads back empty; what seam appended is what its echo will carry.
                let mut write = Write::returned(record.clone(), "journal", &body, &result);
                write.observed.retain(|f| f.name != element);
                write.observed.push(Field::new(element, text));
                Ok(write)
            }
            System::Salesforce if record.object == "Case" => {
                let body = Map::from_iter([
                    ("ParentId".to_string(), Json::String(record.id.clone())),
                    ("CommentBody".to_string(), Json::String(text.to_string())),
                    ("IsPublished".to_string(), Json::Bool(kind == JournalKind::Comment)),
                ]);
                let id = self.salesforce.create("CaseComment", &body).await?;
                Ok(Write::sent(
                    RecordRef { system: System::Salesforce, object: "CaseComment".into(), id },
                    "create",
                    &body,
                ))
            }
            _ => Err(ApplyError::Unsupported(format!("{} has no journal seam can append to", record))),
        }
    }

    /// Create a record; for a linked create, stamp the correlation into both records and match the customer.
    /// Made so a retry finds what an earlier attempt created: a linked record by its link
    /// field (unless `surely_new`), any other Salesforce record by upsert on `key`.
    async fn create(
        &self,
        change: &Change,
        (system, object): (System, &str),
        mut body: Map<String, Json>,
        link: bool,
        surely_new: bool,
        key: &str,
    ) -> Result<(RecordRef, Option<String>, Vec<Write>), ApplyError> {
        let source = &change.source;
        let mut writes = Vec::new();
        match (system, link, source.system) {
            (System::Servicenow, true, System::Salesforce) => {
                body.insert(INCIDENT_CASE_FIELD.into(), Json::String(source.id.clone()));
                body.insert("correlation_display".into(), Json::String(format!("Salesforce {}", source.object)));
                if let Some(company) = self.company_for_case(change).await? {
                    body.entry("company").or_insert(Json::String(company));
                }
                // Find before create: a retry after a crash must not open a second incident.
                let existing = if surely_new { None } else { self.servicenow.query(object, &Query::new().eq(INCIDENT_CASE_FIELD, &source.id)?, 1).await?.into_iter().next() };
                let created = match existing {
                    Some(found) => found,
                    None => {
                        let created = self.servicenow.insert(object, &body).await?;
                        writes.push(Write::returned(RecordRef { system, object: object.into(), id: String::new() }, "create", &body, &created));
                        created
                    }
                };
                let id = created.get("sys_id").and_then(Json::as_str).unwrap_or_default().to_string();
                let number = created.get("number").and_then(Json::as_str).map(str::to_string);
                let record = RecordRef { system, object: object.into(), id: id.clone() };
                if let Some(w) = writes.last_mut().filter(|w| w.operation == "create" && w.record.id.is_empty()) {
                    w.record = record.clone();
                }
                let back = Map::from_iter([
                    (CASE_INCIDENT_FIELD.to_string(), Json::String(id)),
                    (CASE_INCIDENT_NUMBER_FIELD.to_string(), number.clone().map_or(Json::Null, Json::String)),
                ]);
                writes.push(self.update(source.clone(), &back).await?);
                Ok((record, number, writes))
            }
            (System::Salesforce, true, System::Servicenow) => {
                body.insert(CASE_INCIDENT_FIELD.into(), Json::String(source.id.clone()));
                if let Some(number) = change.snapshot.iter().find(|f| f.name == "number").and_then(|f| f.value.as_text()) {
                    body.insert(CASE_INCIDENT_NUMBER_FIELD.into(), Json::String(number.to_string()));
                }
                if let Some(account) = self.account_for_incident(change).await? {
                    body.entry("AccountId").or_insert(Json::String(account));
                }
                // Find before create: a retry after a crash must not open a second Case.
                let soql = format!("SELECT Id FROM {} WHERE {CASE_INCIDENT_FIELD} = {} LIMIT 1", soql::name(object).map_err(|e| ApplyError::Unsupported(e.to_string()))?, soql::literal(&source.id));
                let existing = if surely_new { None } else { self.salesforce.query(&soql).await?.first().and_then(|r| r.get("Id")).and_then(Json::as_str).map(str::to_string) };
                let id = match existing {
                    Some(id) => id,
                    None => {
                        let id = self.salesforce.create(object, &body).await?;
                        writes.push(Write::sent(RecordRef { system, object: object.into(), id: id.clone() }, "create", &body));
                        id
                    }
                };
                let record = RecordRef { system, object: object.into(), id: id.clone() };
                let back = Map::from_iter([(INCIDENT_CASE_FIELD.to_string(), Json::String(id)), ("correlation_display".to_string(), Json::String(format!("Salesforce {object}")))]);
                writes.push(self.update(source.clone(), &back).await?);
                Ok((record, None, writes))
            }
            (_, true, _) => Err(ApplyError::Unsupported(format!("seam links Salesforce records with ServiceNow records; cannot link {source} to a new {system} {object}"))),
            (System::Salesforce, false, _) => {
                let id = self.salesforce.upsert(object, CREATE_KEY_FIELD, key, &body).await.map_err(|e| match e {
                    ConnectorError::Refused { status: 400 | 404, message, .. } if message.contains(CREATE_KEY_FIELD) => ApplyError::Unsupported(format!(
                        "creating a Salesforce {object} needs its External ID field {CREATE_KEY_FIELD}, which keeps a retried create from making a second record; \
                         `seam salesforce metadata` adds it to Activity (Tasks and Events); add it to {object} the same way ({message})"
                    )),
                    e => e.into(),
                })?;
                let record = RecordRef { system, object: object.into(), id };
                body.insert(CREATE_KEY_FIELD.into(), Json::String(key.to_string()));
                writes.push(Write::sent(record.clone(), "create", &body));
                Ok((record, None, writes))
            }
            (System::Servicenow, false, _) => {
                let created = self.servicenow.insert(object, &body).await?;
                let record = RecordRef { system, object: object.into(), id: created.get("sys_id").and_then(Json::as_str).unwrap_or_default().into() };
                writes.push(Write::returned(record.clone(), "create", &body, &created));
                Ok((record, created.get("number").and_then(Json::as_str).map(str::to_string), writes))
            }
            (System::Slack, false, _) => Err(ApplyError::Unsupported("create Slack channels with post-slack and create-channel".into())),
        }
    }

    /// The ServiceNow company of the Case's Account, matched on the stable external id.
    async fn company_for_case(&self, change: &Change) -> Result<Option<String>, ApplyError> {
        let Some(account_id) = change
            .snapshot
            .iter()
            .find(|f| f.name == "AccountId")
            .and_then(|f| f.value.as_text())
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        let account = self.salesforce.get("Account", account_id).await?;
        let Some(key) = account.get(ACCOUNT_KEY_FIELD).and_then(Json::as_str).filter(|s| !s.is_empty()) else {
            tracing::warn!(
                account = account_id,
                "the Case's Account has no {ACCOUNT_KEY_FIELD}; the incident gets no company"
            );
            return Ok(None);
        };
        let companies = self.servicenow.query("core_company", &Query::new().eq(COMPANY_KEY_FIELD, key)?, 2).await?;
        match companies.as_slice() {
            [one] => Ok(one.get("sys_id").and_then(Json::as_str).map(str::to_string)),
            [] => {
                tracing::warn!(
                    external_id = key,
                    "no ServiceNow company has this {COMPANY_KEY_FIELD}; the incident gets no company"
                );
                Ok(None)
            }
            _ => Err(ApplyError::Unsupported(format!(
                "more than one ServiceNow company has {COMPANY_KEY_FIELD}={key}; fix the duplicates"
            ))),
        }
    }

    /// The Salesforce Account of the incident's company, matched on the stable external id.
    async fn account_for_incident(&self, change: &Change) -> Result<Option<String>, ApplyError> {
        let Some(company) = change
            .snapshot
            .iter()
            .find(|f| f.name == "company")
            .and_then(|f| f.value.as_text())
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        let rows = self.servicenow.query("core_company", &Query::new().eq("sys_id", company)?, 1).await?;
        let Some(key) =
            rows.first().and_then(|r| r.get(COMPANY_KEY_FIELD)).and_then(Json::as_str).filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        let accounts = self
            .salesforce
            .query(&format!("SELECT Id FROM Account WHERE {ACCOUNT_KEY_FIELD} = {}", soql::literal(key)))
            .await?;
        Ok(accounts.first().and_then(|a| a.get("Id")).and_then(Json::as_str).map(str::to_string))
    }
}

/// The partner's number when the change carries it: a Case's `ServiceNow_Number__c`.
fn known_partner_number(change: &Change) -> Option<String> {
    let field = match change.source.system {
        System::Salesforce => CASE_INCIDENT_NUMBER_FIELD,
        _ => return None,
    };
    change
        .snapshot
        .iter()
        .find(|f| f.name == field)
        .and_then(|f| f.value.as_text())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn to_fields(body: &Map<String, Json>) -> Vec<Field> {
    body.iter().filter_map(|(k, v)| normalize::value(v).map(|v| Field { name: k.clone(), value: v })).collect()
}

/// Journal text as it is written to `record`'s system: for ServiceNow with its `[code]` tags
/// broken (see [`servicenow::journal_text`]); Salesforce shows a CaseComment as plain text.
fn journal_text(record: &RecordRef, text: String) -> String {
    match record.system {
        System::Servicenow => crate::connectors::servicenow::journal_text(&text),
        _ => text,
    }
}
