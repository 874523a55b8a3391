//! The default Case ⇄ Incident mapping.
//!
//! Salesforce owns what describes the relationship (summary, customer
//! priority); ServiceNow owns what describes the work (state, assignee,
//! resolution). So a Case writes the incident's summary and priority, and an
//! incident writes the Case's status, assignee mirror and comments.

use seam_guest::*;

/// Public so the mapping benchmark (tests/benches/mapping.rs) can run the same code natively.
pub struct CaseIncident;

/// Case fields that carry across, and the incident fields they become.
const CASE_TO_INCIDENT: &[(&str, &str)] = &[("Subject", "short_description"), ("Description", "description")];

/// Customer priority → (impact, urgency). With ServiceNow's default matrix
/// these give P1 Critical, P2 High, P3 Moderate and P4 Low.
fn impact_urgency(priority: &str) -> Option<(&'static str, &'static str)> {
    match priority.trim().to_ascii_lowercase().as_str() {
        "critical" => Some(("1", "1")),
        "high" => Some(("1", "2")),
        "medium" => Some(("2", "2")),
        "low" => Some(("2", "3")),
        _ => None,
    }
}

/// Incident state → Case Status.
fn case_status(state: &str) -> Option<&'static str> {
    match state.trim() {
        "1" => Some("New"),
        "2" => Some("Working"),
        "3" => Some("On Hold"),
        "6" | "7" | "8" => Some("Closed"),
        _ => None,
    }
}

fn case_to_incident(change: &Change) -> Result<Vec<Action>, String> {
    // A new Case, or one that predates its link, gets an incident with everything; a closed
    // one (the Case of an incident that was deleted, say) gets none.
    let unlinked = change.linked.is_none();
    let creating = unlinked && change.kind != ChangeKind::Deleted && change.text("Status") != Some("Closed");
    let touched = |name: &str| creating || change.changed(name);

    let mut fields = Vec::new();
    for (case_field, incident_field) in CASE_TO_INCIDENT {
        if touched(case_field) {
            fields.push(field(*incident_field, change.get(case_field).cloned().unwrap_or(Value::Null)));
        }
    }
    if touched("Priority") {
        if let Some(priority) = change.text("Priority") {
            let (impact, urgency) = impact_urgency(priority).ok_or_else(|| {
                format!(
                    "Case Priority {priority:?} has no incident impact/urgency; expected Critical, High, Medium or Low"
                )
            })?;
            fields.push(field("impact", impact));
            fields.push(field("urgency", urgency));
        }
    }

    Ok(match change.kind {
        // The manifest's delete policy for Salesforce is unlink: the incident stays, with a note.
        ChangeKind::Deleted if change.linked.is_some() => {
            vec![Action::work_note_linked(
                "The Salesforce Case linked to this incident was deleted; seam no longer syncs this incident.",
            )]
        }
        ChangeKind::Deleted => vec![],
        _ if creating => vec![Action::create_linked(System::Servicenow, "incident", fields)],
        _ if unlinked || fields.is_empty() => vec![],
        _ => vec![Action::update_linked(fields)],
    })
}

fn incident_to_case(change: &Change) -> Result<Vec<Action>, String> {
    // An incident opened in ServiceNow directly has no Case to write to.
    if change.linked.is_none() {
        return Ok(vec![]);
    }
    let number = change.text("number").unwrap_or("the incident");
    // The manifest's delete policy for ServiceNow is close: the incident was where the work
    // happened, so its Case closes (with a note for the agents, not the customer), and the
    // host unlinks it. A catch-up poll knows a deleted incident by its sys_id alone.
    if change.kind == ChangeKind::Deleted {
        let what = change.text("number").map_or_else(
            || "The ServiceNow incident linked to this Case".to_string(),
            |n| format!("{n}, linked to this Case,"),
        );
        return Ok(vec![
            Action::update_linked([field("Status", "Closed")]),
            Action::work_note_linked(format!(
                "{what} was deleted in ServiceNow; the Case is closed and no longer synced."
            )),
        ]);
    }
    let mut fields = Vec::new();
    let mut actions = Vec::new();

    if let Some(state) = change.changed_value("state").and_then(Value::as_text) {
        let status = case_status(state).ok_or_else(|| format!("incident state {state:?} has no Case Status"))?;
        fields.push(field("Status", status));
        if state == "8" {
            actions.push(Action::comment_linked(format!("{number} was canceled in ServiceNow.")));
        }
    }
    if let Some(assignee) = change.changed_value("assigned_to") {
        // The name, not the sys_id, when the host has the display value.
        let assignee = change.get("assigned_to.display").unwrap_or(assignee);
        fields.push(field("ServiceNow_Assignee__c", assignee.clone()));
        if let Some(name) = assignee.as_text().filter(|n| !n.is_empty()) {
            actions.push(Action::comment_linked(format!("{number} is assigned to {name}.")));
        }
    }
    if let Some(notes) = change.changed_value("close_notes").and_then(Value::as_text).filter(|n| !n.is_empty()) {
        actions.push(Action::comment_linked(format!("Resolution ({number}): {notes}")));
    }

    if !fields.is_empty() {
        actions.insert(0, Action::update_linked(fields));
    }
    Ok(actions)
}

impl Mapper for CaseIncident {
    fn map(change: &Change) -> Result<Vec<Action>, String> {
        if change.is(System::Salesforce, "Case") {
            case_to_incident(change)
        } else if change.is(System::Servicenow, "incident") {
            incident_to_case(change)
        } else {
            log::debug(&format!("case-incident ignores {:?} {}", change.source.system, change.source.object));
            Ok(vec![])
        }
    }
}

export_mapper!(CaseIncident);
