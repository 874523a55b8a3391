//! The Salesforce metadata a tenant's org needs, as SFDX source that
//! `sf project deploy start` takes:
//!
//! - the custom fields seam reads and writes: on Case the incident link and
//!   number and every field the tenant's packs mirror there; on Account the
//!   customer key (External ID, unique); on Activity (Tasks and Events) the
//!   key seam creates records by, so a retried create finds its record;
//! - Change Data Capture for Case and Account (`PlatformEventChannelMember`s
//!   of the standard `ChangeEvents` channel);
//! - the permission set `Seam_Integration` for the integration user: API
//!   access, Cases and Accounts (View All Records, which change events ask
//!   for), Tasks, and every field above;
//! - optionally, an Outbound Message on Case to intake, and the record-triggered
//!   flow that sends it (new workflow rules are retired).
//!
//! Each file's elements are in the order of the Metadata API's schema (a
//! deploy refuses any other order); the tests check it.

use crate::engine::normalize::{ACCOUNT_KEY_FIELD, CASE_INCIDENT_FIELD, CASE_INCIDENT_NUMBER_FIELD, CREATE_KEY_FIELD};
use crate::engine::ownership::Ownership;
use crate::model::System;
use anyhow::{Context, Result};
use quick_xml::escape::escape;
use std::path::{Path, PathBuf};

/// The API version of the source (PlatformEventChannelMember needs 47.0 or later).
pub const API_VERSION: &str = "59.0";
/// The permission set's API name.
pub const PERMISSION_SET: &str = "Seam_Integration";
const NAMESPACE: &str = "http://soap.sforce.com/2006/04/metadata";
/// Where the metadata goes inside the project.
const SOURCE_DIR: &str = "force-app/main/default";

/// A custom Text field.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomField {
    pub object: String,
    /// The API name, `…__c`.
    pub name: String,
    pub length: u32,
    /// External ID, case-insensitive: a key seam matches on.
    pub key: bool,
    /// No two records may hold the same value (Activity fields cannot be unique).
    pub unique: bool,
    pub description: String,
}

impl CustomField {
    /// `ServiceNow_Assignee__c` → `ServiceNow Assignee`.
    pub fn label(&self) -> String {
        self.name.trim_end_matches("__c").replace('_', " ")
    }
}

/// The Outbound Message to intake.
pub struct Outbound {
    /// The tenant's intake URL for Outbound Messages, with its `?token=`.
    pub endpoint: String,
    /// The username the message is sent as (it must exist in the org).
    pub integration_user: String,
    pub tenant: String,
}

/// What to write for one tenant.
pub struct Metadata {
    pub fields: Vec<CustomField>,
    pub outbound: Option<Outbound>,
}

/// Case fields an Outbound Message carries besides the custom ones: what the packs and the engine read.
const CASE_FIELDS: &[&str] = &[
    "Id",
    "CaseNumber",
    "Subject",
    "Description",
    "Priority",
    "Status",
    "Origin",
    "Type",
    "Reason",
    "AccountId",
    "ContactId",
    "OwnerId",
    "IsClosed",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
];

impl Metadata {
    /// The fields seam needs given the tenant's ownership map: the link fields, the customer
    /// key, and each custom field the Salesforce side mirrors.
    pub fn for_ownership(ownership: &Ownership, outbound: Option<Outbound>) -> Metadata {
        let field = |object: &str, name: &str, length: u32, key: bool, description: &str| CustomField {
            object: object.into(),
            name: name.into(),
            length,
            key,
            unique: key,
            description: description.into(),
        };
        let mut fields = vec![
            field("Case", CASE_INCIDENT_FIELD, 32, false, "The sys_id of the linked ServiceNow incident. seam writes it; do not edit."),
            field("Case", CASE_INCIDENT_NUMBER_FIELD, 40, false, "The number of the linked ServiceNow incident. seam writes it; do not edit."),
            field("Account", ACCOUNT_KEY_FIELD, 64, true, "The customer's stable key, the same as the ServiceNow company's u_sf_external_id; seam matches customers on it."),
            CustomField {
                unique: false,
                ..field("Activity", CREATE_KEY_FIELD, 32, true, "The key seam creates this Task by, so a retried create finds it instead of making another. seam writes it; do not edit.")
            },
        ];
        for mirror in ownership.mirrors.iter().filter(|m| m.system == System::Salesforce) {
            for name in mirror.fields.iter().filter(|f| f.ends_with("__c")) {
                if !fields.iter().any(|f| f.object == mirror.object && &f.name == name) {
                    fields.push(field(
                        &mirror.object,
                        name,
                        255,
                        false,
                        "Mirrors the linked ServiceNow record; ServiceNow owns it and seam writes it.",
                    ));
                }
            }
        }
        Metadata { fields, outbound }
    }

    /// Write the project into `dir`: `sfdx-project.json` (unless one is there) and the
    /// metadata under `force-app/main/default`. Returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let project = dir.join("sfdx-project.json");
        if !project.exists() {
            let json = serde_json::json!({ "packageDirectories": [{ "path": "force-app", "default": true }], "namespace": "", "sourceApiVersion": API_VERSION });
            write(&project, &serde_json::to_string_pretty(&json)?, &mut written)?;
        }
        let base = dir.join(SOURCE_DIR);
        for f in &self.fields {
            write(
                &base.join(format!("objects/{}/fields/{}.field-meta.xml", f.object, f.name)),
                &custom_field(f),
                &mut written,
            )?;
        }
        for entity in ["Case", "Account"] {
            write(
                &base.join(format!(
                    "platformEventChannelMembers/ChangeEvents_{entity}ChangeEvent.platformEventChannelMember-meta.xml"
                )),
                &channel_member(entity),
                &mut written,
            )?;
        }
        write(
            &base.join(format!("permissionsets/{PERMISSION_SET}.permissionset-meta.xml")),
            &permission_set(&self.fields),
            &mut written,
        )?;
        if let Some(outbound) = &self.outbound {
            let name = outbound_name(&outbound.tenant);
            // The endpoint holds the intake token: readable by its owner only.
            let workflow = base.join("workflows/Case.workflow-meta.xml");
            write(&workflow, &outbound_message(outbound, &self.fields), &mut written)?;
            restrict(&workflow)?;
            write(&base.join(format!("flows/{name}_Flow.flow-meta.xml")), &flow(&name), &mut written)?;
        }
        Ok(written)
    }
}

/// The Outbound Message's API name for `tenant` (letters, digits and single underscores).
pub fn outbound_name(tenant: &str) -> String {
    let cleaned: String = tenant.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let mut name = format!("Seam_{cleaned}");
    while name.contains("__") {
        name = name.replace("__", "_");
    }
    name.trim_end_matches('_').to_string()
}

fn write(path: &Path, text: &str, written: &mut Vec<PathBuf>) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    written.push(path.to_path_buf());
    Ok(())
}

fn restrict(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    Ok(())
}

/// An XML element of the Metadata API: either a value, or nested elements.
enum Node {
    Text(&'static str, String),
    Parent(&'static str, Vec<Node>),
}

fn t(name: &'static str, value: impl ToString) -> Node {
    Node::Text(name, value.to_string())
}

fn render(out: &mut String, nodes: &[Node], depth: usize) {
    let pad = "    ".repeat(depth);
    for node in nodes {
        match node {
            Node::Text(name, value) => out.push_str(&format!("{pad}<{name}>{}</{name}>\n", escape(value.as_str()))),
            Node::Parent(name, children) => {
                out.push_str(&format!("{pad}<{name}>\n"));
                render(out, children, depth + 1);
                out.push_str(&format!("{pad}</{name}>\n"));
            }
        }
    }
}

fn document(root: &str, nodes: &[Node]) -> String {
    let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"{NAMESPACE}\">\n");
    render(&mut out, nodes, 1);
    out.push_str(&format!("</{root}>\n"));
    out
}

/// CustomField, in the schema's order: fullName, caseSensitive, description, externalId,
/// inlineHelpText, label, length, required, trackHistory, type, unique.
fn custom_field(f: &CustomField) -> String {
    let mut nodes = vec![t("fullName", &f.name)];
    if f.key {
        nodes.push(t("caseSensitive", false));
    }
    nodes.extend([
        t("description", &f.description),
        t("externalId", f.key),
        t("inlineHelpText", "Maintained by the seam integration."),
        t("label", f.label()),
        t("length", f.length),
        t("required", false),
        t("trackHistory", false),
        t("type", "Text"),
        t("unique", f.unique),
    ]);
    document("CustomField", &nodes)
}

fn channel_member(entity: &str) -> String {
    document(
        "PlatformEventChannelMember",
        &[t("eventChannel", "ChangeEvents"), t("selectedEntity", format!("{entity}ChangeEvent"))],
    )
}

/// PermissionSet, in the schema's order: description, fieldPermissions, hasActivationRequired,
/// label, objectPermissions, userPermissions.
fn permission_set(fields: &[CustomField]) -> String {
    let mut nodes = vec![t("description", "For seam's integration user: API access, Cases and Accounts (View All Records, as change events need), Tasks, and seam's fields.")];
    let mut names: Vec<String> = fields.iter().map(|f| format!("{}.{}", f.object, f.name)).collect();
    names.sort();
    for name in names {
        nodes.push(Node::Parent("fieldPermissions", vec![t("editable", true), t("field", name), t("readable", true)]));
    }
    nodes.push(t("hasActivationRequired", false));
    nodes.push(t("label", "Seam Integration"));
    // (object, create, edit, view all): seam reads Accounts, opens and edits Cases, workflows open Tasks.
    for (object, create, edit, view_all) in
        [("Account", false, false, true), ("Case", true, true, true), ("Task", true, true, false)]
    {
        nodes.push(Node::Parent(
            "objectPermissions",
            vec![
                t("allowCreate", create),
                t("allowDelete", false),
                t("allowEdit", edit),
                t("allowRead", true),
                t("modifyAllRecords", false),
                t("object", object),
                t("viewAllRecords", view_all),
            ],
        ));
    }
    nodes.push(Node::Parent("userPermissions", vec![t("enabled", true), t("name", "ApiEnabled")]));
    document("PermissionSet", &nodes)
}

/// Workflow with one WorkflowOutboundMessage (fullName, apiVersion, description, endpointUrl,
/// fields, includeSessionId, integrationUser, name, protected). Session ids in Outbound
/// Messages are retired, so intake authenticates the message by its org and the URL's token.
fn outbound_message(o: &Outbound, fields: &[CustomField]) -> String {
    let mut message = vec![
        t("fullName", outbound_name(&o.tenant)),
        t("apiVersion", API_VERSION),
        t("description", format!("Sends each Case change to seam (tenant {}).", o.tenant)),
        t("endpointUrl", &o.endpoint),
    ];
    let mut case_fields: Vec<String> = CASE_FIELDS.iter().map(|s| s.to_string()).collect();
    case_fields.extend(fields.iter().filter(|f| f.object == "Case").map(|f| f.name.clone()));
    message.extend(case_fields.into_iter().map(|f| t("fields", f)));
    message.extend([
        t("includeSessionId", false),
        t("integrationUser", &o.integration_user),
        t("name", format!("seam {}", o.tenant)),
        t("protected", false),
    ]);
    document("Workflow", &[Node::Parent("outboundMessages", message)])
}

/// A record-triggered flow (after save, on create and update) that sends the Outbound Message.
fn flow(name: &str) -> String {
    let action = format!("Send_{name}");
    document(
        "Flow",
        &[
            Node::Parent(
                "actionCalls",
                vec![
                    t("name", &action),
                    t("label", format!("Send {name}")),
                    t("locationX", 176),
                    t("locationY", 323),
                    t("actionName", format!("Case.{name}")),
                    t("actionType", "outboundMessage"),
                    t("flowTransactionModel", "CurrentTransaction"),
                ],
            ),
            t("apiVersion", API_VERSION),
            t("label", format!("{name} Case Outbound")),
            t("processType", "AutoLaunchedFlow"),
            Node::Parent(
                "start",
                vec![
                    t("locationX", 50),
                    t("locationY", 0),
                    Node::Parent("connector", vec![t("targetReference", &action)]),
                    t("object", "Case"),
                    t("recordTriggerType", "CreateAndUpdate"),
                    t("triggerType", "RecordAfterSave"),
                ],
            ),
            t("status", "Active"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;

    /// The schema's order of each type's elements (WSDL `xsd:sequence`), for the elements written.
    const ORDER: &[(&str, &[&str])] = &[
        (
            "CustomField",
            &[
                "fullName",
                "caseSensitive",
                "description",
                "externalId",
                "inlineHelpText",
                "label",
                "length",
                "required",
                "trackHistory",
                "type",
                "unique",
            ],
        ),
        ("PlatformEventChannelMember", &["eventChannel", "selectedEntity"]),
        (
            "PermissionSet",
            &[
                "description",
                "fieldPermissions",
                "hasActivationRequired",
                "label",
                "objectPermissions",
                "userPermissions",
            ],
        ),
        ("fieldPermissions", &["editable", "field", "readable"]),
        (
            "objectPermissions",
            &["allowCreate", "allowDelete", "allowEdit", "allowRead", "modifyAllRecords", "object", "viewAllRecords"],
        ),
        ("userPermissions", &["enabled", "name"]),
        ("Workflow", &["outboundMessages"]),
        (
            "outboundMessages",
            &[
                "fullName",
                "apiVersion",
                "description",
                "endpointUrl",
                "fields",
                "includeSessionId",
                "integrationUser",
                "name",
                "protected",
            ],
        ),
        ("Flow", &["actionCalls", "apiVersion", "label", "processType", "start", "status"]),
        (
            "actionCalls",
            &["name", "label", "locationX", "locationY", "actionName", "actionType", "flowTransactionModel"],
        ),
        ("start", &["locationX", "locationY", "connector", "object", "recordTriggerType", "triggerType"]),
        ("connector", &["targetReference"]),
    ];

    /// Parse a file and check each element's children come in the schema's order.
    fn check_order(xml: &str) {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<(String, usize)> = Vec::new();
        loop {
            match reader.read_event().unwrap_or_else(|e| panic!("{e}: {xml}")) {
                Event::Start(e) => {
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    if stack.is_empty() {
                        let ns = e
                            .attributes()
                            .flatten()
                            .find(|a| a.key.as_ref() == b"xmlns")
                            .map(|a| String::from_utf8_lossy(&a.value).into_owned());
                        assert_eq!(ns.as_deref(), Some(NAMESPACE), "{name}");
                    }
                    if let Some((parent, last)) = stack.last_mut() {
                        if let Some((_, order)) = ORDER.iter().find(|(p, _)| p == parent) {
                            let at = order
                                .iter()
                                .position(|o| *o == name)
                                .unwrap_or_else(|| panic!("{parent} has no element {name} in the schema"));
                            assert!(at >= *last, "{parent}: {name} comes before {}", order[*last]);
                            *last = at;
                        }
                    }
                    stack.push((name, 0));
                }
                Event::End(_) => {
                    stack.pop();
                }
                Event::Eof => break,
                _ => {}
            }
        }
    }

    #[test]
    fn every_file_is_well_formed_in_the_schemas_order() {
        let dir = std::env::temp_dir().join(format!("seam-sfdx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let outbound = Outbound {
            endpoint: "https://seam.example.com/intake/acme-eu/salesforce/outbound?token=a&b".into(),
            integration_user: "seam@acme.example".into(),
            tenant: "acme-eu".into(),
        };
        let metadata = Metadata::for_ownership(&Ownership::default(), Some(outbound));
        let names: Vec<String> = metadata.fields.iter().map(|f| format!("{}.{}", f.object, f.name)).collect();
        assert_eq!(
            names,
            [
                "Case.ServiceNow_Incident__c",
                "Case.ServiceNow_Number__c",
                "Account.External_Id__c",
                "Activity.Seam_Key__c",
                "Case.ServiceNow_Assignee__c"
            ]
        );
        let written = metadata.write(&dir).unwrap();
        assert_eq!(written.len(), 1 + 5 + 2 + 1 + 2);
        for path in written.iter().filter(|p| p.extension().is_some_and(|e| e == "xml")) {
            check_order(&std::fs::read_to_string(path).unwrap());
        }
        let workflow =
            std::fs::read_to_string(dir.join("force-app/main/default/workflows/Case.workflow-meta.xml")).unwrap();
        assert!(
            workflow.contains("<fullName>Seam_acme_eu</fullName>") && workflow.contains("?token=a&amp;b"),
            "{workflow}"
        );
        let key = std::fs::read_to_string(
            dir.join("force-app/main/default/objects/Account/fields/External_Id__c.field-meta.xml"),
        )
        .unwrap();
        assert!(key.contains("<externalId>true</externalId>") && key.contains("<unique>true</unique>"));
        let create_key = std::fs::read_to_string(
            dir.join("force-app/main/default/objects/Activity/fields/Seam_Key__c.field-meta.xml"),
        )
        .unwrap();
        assert!(
            create_key.contains("<externalId>true</externalId>") && create_key.contains("<unique>false</unique>"),
            "{create_key}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn outbound_names_are_api_names() {
        assert_eq!(outbound_name("acme"), "Seam_acme");
        assert_eq!(outbound_name("acme--eu_"), "Seam_acme_eu");
    }
}
