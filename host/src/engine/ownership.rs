//! Who owns which field (DESIGN: "if a field describes the relationship,
//! Salesforce owns it; if it describes the work, ServiceNow owns it").
//!
//! Each linked record mirrors some fields of its partner; a mirrored field is
//! owned by the partner's system. A person editing it on the mirror side is a
//! violation (reverted and audited); a pack writing a field the target system
//! owns is refused.

use crate::model::System;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// The system holding the copy.
    pub system: System,
    /// The object holding the copy (`incident`, `Case`).
    pub object: String,
    /// Fields of that object owned by the other system.
    pub fields: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ownership {
    /// The copies: for each, the system and object holding it, and the fields the other system owns.
    pub mirrors: Vec<Mirror>,
}

impl Default for Ownership {
    /// The default Case ⇄ Incident map.
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Ownership {
            mirrors: vec![
                Mirror {
                    system: System::Servicenow,
                    object: "incident".into(),
                    // Case summary, customer priority, customer identity, and the link.
                    fields: strings(&[
                        "short_description",
                        "description",
                        "impact",
                        "urgency",
                        "company",
                        "correlation_id",
                        "correlation_display",
                    ]),
                },
                Mirror {
                    system: System::Salesforce,
                    object: "Case".into(),
                    // Incident technical state and assignee, and the link.
                    fields: strings(&[
                        "Status",
                        "ServiceNow_Assignee__c",
                        "ServiceNow_Incident__c",
                        "ServiceNow_Number__c",
                    ]),
                },
            ],
        }
    }
}

impl Ownership {
    /// The system that owns `field` of `object` in `system`.
    pub fn owner(&self, system: System, object: &str, field: &str) -> System {
        let field = field.strip_suffix(".display").unwrap_or(field);
        let mirrored = self.mirrors.iter().any(|m| {
            m.system == system && m.object.eq_ignore_ascii_case(object) && m.fields.iter().any(|f| f == field)
        });
        match (mirrored, system) {
            (false, s) => s,
            (true, System::Salesforce) => System::Servicenow,
            (true, _) => System::Salesforce,
        }
    }
}

/// Fields the systems maintain themselves: never compared, never synced.
pub fn system_managed(system: System, field: &str) -> bool {
    let field = field.strip_suffix(".display").unwrap_or(field);
    match system {
        System::Salesforce => matches!(
            field,
            "Id" | "IsDeleted"
                | "CreatedDate"
                | "CreatedById"
                | "LastModifiedDate"
                | "LastModifiedById"
                | "SystemModstamp"
                | "CaseNumber"
                | "IsClosed"
                | "ClosedDate"
        ),
        System::Servicenow => {
            field.starts_with("sys_")
                || matches!(
                    field,
                    "number"
                        | "priority"
                        | "active"
                        | "opened_at"
                        | "opened_by"
                        | "resolved_at"
                        | "resolved_by"
                        | "closed_at"
                )
        }
        System::Slack => true,
    }
}
