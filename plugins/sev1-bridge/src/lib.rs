//! sev1-bridge: a sev-1 on a high-value account, handled in one event.
//!
//! A Case that becomes Critical, or an incident raised in ServiceNow that
//! becomes priority 1, on an account worth protecting: the incident is opened
//! (the mapping pack usually has already; the host then keeps that one), the
//! account owner gets a Task in Salesforce, and a Slack channel is created
//! with links to the records. It fires on the transition into sev-1, so one
//! episode gives one Task and one bridge however often the record changes.

use seam_guest::*;

struct Sev1Bridge;

/// What makes an account high-value. Either is enough.
const MIN_ANNUAL_REVENUE: f64 = 10_000_000.0;
const HIGH_VALUE_TIERS: &[&str] = &["Platinum", "Gold"];

const ACCOUNT_FIELDS: &[&str] = &["Name", "AnnualRevenue", "Tier__c", "OwnerId"];

struct Account {
    id: String,
    name: String,
    owner: Option<String>,
    revenue: Option<f64>,
    tier: Option<String>,
}

impl Account {
    fn from_fields(id: String, fields: &[Field]) -> Account {
        let text =
            |name: &str| value_of(fields, name).and_then(Value::as_text).filter(|s| !s.is_empty()).map(str::to_string);
        Account {
            name: text("Name").unwrap_or_else(|| id.clone()),
            owner: text("OwnerId"),
            revenue: value_of(fields, "AnnualRevenue").and_then(Value::as_number),
            tier: text("Tier__c"),
            id,
        }
    }

    fn high_value(&self) -> bool {
        self.revenue.is_some_and(|r| r >= MIN_ANNUAL_REVENUE)
            || self.tier.as_deref().is_some_and(|t| HIGH_VALUE_TIERS.contains(&t))
    }

    /// "Acme Corporation (Gold, revenue 50.0M)"
    fn describe(&self) -> String {
        let mut why = Vec::new();
        if let Some(tier) = &self.tier {
            why.push(tier.clone());
        }
        if let Some(revenue) = self.revenue {
            why.push(format!("revenue {:.1}M", revenue / 1e6));
        }
        if why.is_empty() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, why.join(", "))
        }
    }
}

/// Did this change move the record into `value` (a new record with it, or the field changed to it)?
fn became(change: &Change, name: &str, value: &str) -> bool {
    let is = |v: Option<&Value>| v.and_then(Value::as_text).is_some_and(|t| t.trim().eq_ignore_ascii_case(value));
    match change.kind {
        ChangeKind::Created => is(change.get(name)),
        ChangeKind::Updated => is(change.changed_value(name)),
        ChangeKind::Deleted => false,
    }
}

fn lookup_failed(what: &str, e: LookupError) -> String {
    match e {
        // Retried by the host; this message is only seen if it keeps failing.
        LookupError::Unavailable(why) => format!("{what}: unavailable: {why}"),
        LookupError::NotGranted(why) => format!("{what}: {why} (add it to pack.json's lookups)"),
        LookupError::NotFound => format!("{what}: not found"),
    }
}

/// A Slack channel name: lower-case letters, digits and dashes, at most 80 characters.
fn channel_name(raw: &str) -> String {
    let name: String =
        raw.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    name.chars().take(80).collect()
}

fn case_sev1(change: &Change) -> Result<Vec<Action>, String> {
    if !became(change, "Priority", "Critical") {
        return Ok(vec![]);
    }
    let Some(account_id) = change.text("AccountId").filter(|id| !id.is_empty()) else {
        log::info("a Critical Case with no Account: not a high-value sev-1");
        return Ok(vec![]);
    };
    let account_ref = RecordRef { system: System::Salesforce, object: "Account".into(), id: account_id.to_string() };
    let account = match lookup(&account_ref, ACCOUNT_FIELDS) {
        Ok(fields) => Account::from_fields(account_id.to_string(), &fields),
        Err(LookupError::NotFound) => return Ok(vec![]),
        Err(e) => return Err(lookup_failed("reading the Case's Account", e)),
    };
    if !account.high_value() {
        log::debug(&format!("sev-1 on {}: below the high-value bar", account.describe()));
        return Ok(vec![]);
    }

    let subject = change.text("Subject").unwrap_or("(no subject)");
    let case_number = change.text("CaseNumber").unwrap_or(&change.source.id);
    let mut actions = Vec::new();
    if change.linked.is_none() {
        // Kept only if the mapping pack has not opened one already: a Case has one incident.
        actions.push(Action::create_linked(
            System::Servicenow,
            "incident",
            [field("short_description", subject), field("impact", "1"), field("urgency", "1")],
        ));
    }
    actions.push(account_task(
        &account,
        &format!("Sev-1 on {}: {subject}", account.name),
        change.source.id.clone(),
        &format!(
        "Case {case_number} is Critical.\nCase: {{{{source.url}}}}\nIncident {{{{linked.number}}}}: {{{{linked.url}}}}"
    ),
    ));
    actions.push(Action::slack(
        channel_name(&format!("sev1-case-{case_number}")),
        true,
        format!(
            ":rotating_light: Sev-1 on {}: {subject}\n• Salesforce Case {case_number}: {{{{source.url}}}}\n• ServiceNow incident {{{{linked.number}}}}: {{{{linked.url}}}}\n• Account team Task: {{{{created.url}}}}",
            account.describe()
        ),
    ));
    Ok(actions)
}

fn incident_sev1(change: &Change) -> Result<Vec<Action>, String> {
    // A linked incident's priority follows its Case, where the Case path fires.
    if change.linked.is_some() || !became(change, "priority", "1") {
        return Ok(vec![]);
    }
    let Some(company) = change.text("company").filter(|c| !c.is_empty()) else {
        return Ok(vec![]);
    };
    let company_ref = RecordRef { system: System::Servicenow, object: "core_company".into(), id: company.to_string() };
    let key = match lookup(&company_ref, &["u_sf_external_id"]) {
        Ok(fields) => {
            value_of(&fields, "u_sf_external_id").and_then(Value::as_text).filter(|k| !k.is_empty()).map(str::to_string)
        }
        Err(LookupError::NotFound) => None,
        Err(e) => return Err(lookup_failed("reading the incident's company", e)),
    };
    let Some(key) = key else {
        log::info("a priority-1 incident whose company has no Salesforce key: not a high-value sev-1");
        return Ok(vec![]);
    };
    let account = match find(System::Salesforce, "Account", "External_Id__c", &key, ACCOUNT_FIELDS) {
        Ok(Some((record, fields))) => Account::from_fields(record.id, &fields),
        Ok(None) => return Ok(vec![]),
        Err(e) => return Err(lookup_failed(&format!("finding the Account with External_Id__c {key}"), e)),
    };
    if !account.high_value() {
        return Ok(vec![]);
    }
    let number = change.text("number").unwrap_or(&change.source.id);
    let summary = change.text("short_description").unwrap_or("(no description)");
    Ok(vec![
        account_task(&account, &format!("Sev-1 on {}: {summary}", account.name), account.id.clone(), &format!(
            "ServiceNow incident {number} is priority 1.\nIncident: {{{{source.url}}}}"
        )),
        Action::slack(
            channel_name(&format!("sev1-{number}")),
            true,
            format!(
                ":rotating_light: Sev-1 on {}: {summary}\n• ServiceNow incident {number}: {{{{source.url}}}}\n• Account team Task: {{{{created.url}}}}",
                account.describe()
            ),
        ),
    ])
}

/// A Task for the account's owner, on `what` (the Case, or the Account).
fn account_task(account: &Account, subject: &str, what: String, description: &str) -> Action {
    let mut fields = vec![
        field("Subject", subject.chars().take(255).collect::<String>()),
        field("Priority", "High"),
        field("Status", "Not Started"),
        field("WhatId", what),
        field("Description", description),
    ];
    if let Some(owner) = &account.owner {
        fields.push(field("OwnerId", owner));
    }
    Action::create(System::Salesforce, "Task", fields)
}

impl Workflow for Sev1Bridge {
    fn on_change(change: &Change) -> Result<Vec<Action>, String> {
        if change.is(System::Salesforce, "Case") {
            case_sev1(change)
        } else if change.is(System::Servicenow, "incident") {
            incident_sev1(change)
        } else {
            Ok(vec![])
        }
    }
}

export_workflow!(Sev1Bridge);
