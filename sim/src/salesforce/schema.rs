//! The objects the Salesforce emulator knows, their fields, and the
//! validation the real API applies on create and update: unknown fields,
//! read-only fields, types, lengths, restricted picklists, references,
//! required fields.

use super::ids;
use crate::store::{Record, Store};
use serde_json::{json, Value};
use std::sync::OnceLock;

#[derive(Clone, Debug)]
pub enum FieldType {
    Id,
    Text(usize),
    TextArea(usize),
    Picklist {
        values: &'static [&'static str],
        restricted: bool,
    },
    Reference(&'static [&'static str]),
    Number,
    Boolean,
    DateTime,
    Date,
    Email,
    AutoNumber,
    /// Binary content, sent as Base64 (or as a multipart part) and read back from its own
    /// resource (`…/sobjects/ContentVersion/{id}/VersionData`), never inline.
    Base64,
}

#[derive(Clone, Debug)]
pub struct FieldDef {
    pub name: &'static str,
    pub ty: FieldType,
    pub writable: bool,
    pub required: bool,
    pub external_id: bool,
    pub default: Option<&'static str>,
    /// Set when the record is created, never changed after (`FirstPublishLocationId`).
    pub create_only: bool,
}

#[derive(Debug)]
pub struct ObjectDef {
    pub name: &'static str,
    pub prefix: &'static str,
    pub fields: Vec<FieldDef>,
    /// Changes to this object send Outbound Messages / change events.
    pub notifies: bool,
}

/// A Salesforce API error, as the REST API reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct SfError {
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl SfError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        SfError { code, message: message.into(), fields: vec![] }
    }
    pub fn on(code: &'static str, message: impl Into<String>, field: &str) -> Self {
        SfError { code, message: message.into(), fields: vec![field.to_string()] }
    }
    /// `{"message", "errorCode", "fields"}` as in single-record responses.
    pub fn rest_json(&self) -> Value {
        json!({ "message": self.message, "errorCode": self.code, "fields": self.fields })
    }
    /// `{"statusCode", "message", "fields"}` as in sObject Collections results.
    pub fn collection_json(&self) -> Value {
        json!({ "statusCode": self.code, "message": self.message, "fields": self.fields })
    }
}

fn f(name: &'static str, ty: FieldType) -> FieldDef {
    FieldDef { name, ty, writable: true, required: false, external_id: false, default: None, create_only: false }
}
fn create_only(def: FieldDef) -> FieldDef {
    FieldDef { create_only: true, ..def }
}
fn ro(name: &'static str, ty: FieldType) -> FieldDef {
    FieldDef { writable: false, ..f(name, ty) }
}
fn req(name: &'static str, ty: FieldType) -> FieldDef {
    FieldDef { required: true, ..f(name, ty) }
}
fn pick(name: &'static str, values: &'static [&'static str], default: Option<&'static str>) -> FieldDef {
    FieldDef { default, ..f(name, FieldType::Picklist { values, restricted: true }) }
}

const USER: &[&str] = &["User"];

fn system_fields(owned: bool) -> Vec<FieldDef> {
    let mut v = vec![
        ro("Id", FieldType::Id),
        ro("IsDeleted", FieldType::Boolean),
        ro("CreatedDate", FieldType::DateTime),
        ro("CreatedById", FieldType::Reference(USER)),
        ro("LastModifiedDate", FieldType::DateTime),
        ro("LastModifiedById", FieldType::Reference(USER)),
        ro("SystemModstamp", FieldType::DateTime),
    ];
    if owned {
        v.push(f("OwnerId", FieldType::Reference(USER)));
    }
    v
}

fn objects() -> &'static [ObjectDef] {
    static OBJECTS: OnceLock<Vec<ObjectDef>> = OnceLock::new();
    OBJECTS.get_or_init(|| {
        let with = |owned: bool, rest: Vec<FieldDef>| {
            let mut v = system_fields(owned);
            v.extend(rest);
            v
        };
        vec![
            ObjectDef {
                name: "Account",
                prefix: "001",
                notifies: true,
                fields: with(
                    true,
                    vec![
                        req("Name", FieldType::Text(255)),
                        f("AccountNumber", FieldType::Text(40)),
                        f(
                            "Type",
                            FieldType::Picklist {
                                values: &["Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"],
                                restricted: false,
                            },
                        ),
                        f("Industry", FieldType::Picklist { values: &[], restricted: false }),
                        f("AnnualRevenue", FieldType::Number),
                        f("Phone", FieldType::Text(40)),
                        f("Website", FieldType::Text(255)),
                        pick("Tier__c", &["Platinum", "Gold", "Silver", "Bronze"], None),
                        FieldDef { external_id: true, ..f("External_Id__c", FieldType::Text(64)) },
                    ],
                ),
            },
            ObjectDef {
                name: "Contact",
                prefix: "003",
                notifies: false,
                fields: with(
                    true,
                    vec![
                        f("FirstName", FieldType::Text(40)),
                        req("LastName", FieldType::Text(80)),
                        f("Email", FieldType::Email),
                        f("Phone", FieldType::Text(40)),
                        f("Title", FieldType::Text(128)),
                        f("AccountId", FieldType::Reference(&["Account"])),
                    ],
                ),
            },
            ObjectDef {
                name: "Case",
                prefix: "500",
                notifies: true,
                fields: with(
                    true,
                    vec![
                        ro("CaseNumber", FieldType::AutoNumber),
                        f("Subject", FieldType::Text(255)),
                        f("Description", FieldType::TextArea(32000)),
                        pick("Status", &["New", "Working", "Escalated", "On Hold", "Closed"], Some("New")),
                        pick("Priority", &["Critical", "High", "Medium", "Low"], Some("Medium")),
                        pick("Origin", &["Phone", "Email", "Web"], None),
                        f(
                            "Type",
                            FieldType::Picklist {
                                values: &["Problem", "Question", "Feature Request"],
                                restricted: false,
                            },
                        ),
                        f("Reason", FieldType::Picklist { values: &[], restricted: false }),
                        f("AccountId", FieldType::Reference(&["Account"])),
                        f("ContactId", FieldType::Reference(&["Contact"])),
                        f("AssetId", FieldType::Reference(&["Asset"])),
                        f("EntitlementId", FieldType::Reference(&["Entitlement"])),
                        f("SuppliedName", FieldType::Text(80)),
                        f("SuppliedEmail", FieldType::Email),
                        f("IsEscalated", FieldType::Boolean),
                        ro("IsClosed", FieldType::Boolean),
                        ro("ClosedDate", FieldType::DateTime),
                        // Mirrors of the linked incident, owned by ServiceNow.
                        f("ServiceNow_Incident__c", FieldType::Text(32)),
                        f("ServiceNow_Number__c", FieldType::Text(40)),
                        f("ServiceNow_Assignee__c", FieldType::Text(255)),
                    ],
                ),
            },
            // What a customer owns: a stable key on it (a custom External ID) matches a CMDB item.
            ObjectDef {
                name: "Asset",
                prefix: "02i",
                notifies: false,
                fields: with(
                    true,
                    vec![
                        req("Name", FieldType::Text(255)),
                        f("SerialNumber", FieldType::Text(80)),
                        f("AccountId", FieldType::Reference(&["Account"])),
                        f("ContactId", FieldType::Reference(&["Contact"])),
                        f("InstallDate", FieldType::Date),
                        FieldDef { external_id: true, ..f("External_Id__c", FieldType::Text(64)) },
                    ],
                ),
            },
            // A service contract with a customer, and the support it entitles them to.
            ObjectDef {
                name: "ServiceContract",
                prefix: "810",
                notifies: false,
                fields: with(
                    true,
                    vec![
                        req("Name", FieldType::Text(80)),
                        ro("ContractNumber", FieldType::AutoNumber),
                        f("AccountId", FieldType::Reference(&["Account"])),
                        f("StartDate", FieldType::Date),
                        f("EndDate", FieldType::Date),
                        // Months.
                        f("Term", FieldType::Number),
                    ],
                ),
            },
            ObjectDef {
                name: "Entitlement",
                prefix: "550",
                notifies: false,
                fields: with(
                    false,
                    vec![
                        req("Name", FieldType::Text(255)),
                        req("AccountId", FieldType::Reference(&["Account"])),
                        f("AssetId", FieldType::Reference(&["Asset"])),
                        f("ServiceContractId", FieldType::Reference(&["ServiceContract"])),
                        f("Type", FieldType::Picklist { values: &["Phone Support", "Web Support"], restricted: false }),
                        f("StartDate", FieldType::Date),
                        f("EndDate", FieldType::Date),
                    ],
                ),
            },
            // Files: each version of a file is a ContentVersion, its document the ContentDocument,
            // and each record it is shared with a ContentDocumentLink.
            ObjectDef {
                name: "ContentVersion",
                prefix: "068",
                notifies: false,
                fields: with(
                    true,
                    vec![
                        f("Title", FieldType::Text(255)),
                        create_only(req("PathOnClient", FieldType::Text(500))),
                        create_only(req("VersionData", FieldType::Base64)),
                        f("Description", FieldType::TextArea(1000)),
                        create_only(f("ReasonForChange", FieldType::Text(1000))),
                        // The record the new file is shared with; only on a document's first version.
                        create_only(f("FirstPublishLocationId", FieldType::Reference(&["Account", "Case", "User"]))),
                        // Set: a new version of that document.
                        create_only(f("ContentDocumentId", FieldType::Reference(&["ContentDocument"]))),
                        ro("Checksum", FieldType::Text(50)),
                        ro("ContentSize", FieldType::Number),
                        ro("FileExtension", FieldType::Text(40)),
                        ro("FileType", FieldType::Text(20)),
                        ro("IsLatest", FieldType::Boolean),
                        ro("VersionNumber", FieldType::Text(20)),
                    ],
                ),
            },
            ObjectDef {
                name: "ContentDocument",
                prefix: "069",
                notifies: false,
                fields: with(
                    true,
                    vec![
                        ro("Title", FieldType::Text(255)),
                        ro("LatestPublishedVersionId", FieldType::Reference(&["ContentVersion"])),
                        ro("FileExtension", FieldType::Text(40)),
                        ro("FileType", FieldType::Text(20)),
                        ro("ContentSize", FieldType::Number),
                    ],
                ),
            },
            ObjectDef {
                name: "ContentDocumentLink",
                prefix: "06A",
                notifies: false,
                fields: vec![
                    ro("Id", FieldType::Id),
                    ro("IsDeleted", FieldType::Boolean),
                    ro("SystemModstamp", FieldType::DateTime),
                    create_only(req("ContentDocumentId", FieldType::Reference(&["ContentDocument"]))),
                    create_only(req("LinkedEntityId", FieldType::Reference(&["Account", "Case", "User"]))),
                    pick("ShareType", &["V", "C", "I"], Some("V")),
                    pick("Visibility", &["AllUsers", "InternalUsers", "SharedUsers"], Some("AllUsers")),
                ],
            },
            ObjectDef {
                name: "CaseComment",
                prefix: "00a",
                notifies: false,
                fields: with(
                    false,
                    vec![
                        req("ParentId", FieldType::Reference(&["Case"])),
                        req("CommentBody", FieldType::TextArea(4000)),
                        f("IsPublished", FieldType::Boolean),
                    ],
                ),
            },
            ObjectDef {
                name: "Task",
                prefix: "00T",
                notifies: false,
                fields: with(
                    true,
                    vec![
                        f("Subject", FieldType::Text(255)),
                        f("Description", FieldType::TextArea(32000)),
                        pick(
                            "Status",
                            &["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"],
                            Some("Not Started"),
                        ),
                        pick("Priority", &["High", "Normal", "Low"], Some("Normal")),
                        f("ActivityDate", FieldType::Date),
                        f("WhatId", FieldType::Reference(&["Account", "Case"])),
                        f("WhoId", FieldType::Reference(&["Contact"])),
                        // A custom Activity field, as `seam salesforce metadata` defines it: External ID, not unique.
                        FieldDef { external_id: true, ..f("Seam_Key__c", FieldType::Text(32)) },
                    ],
                ),
            },
            ObjectDef {
                name: "User",
                prefix: "005",
                notifies: false,
                fields: with(
                    false,
                    vec![
                        req("Username", FieldType::Text(80)),
                        f("Name", FieldType::Text(121)),
                        f("Email", FieldType::Email),
                        f("IsActive", FieldType::Boolean),
                    ],
                ),
            },
        ]
    })
}

pub fn object(name: &str) -> Option<&'static ObjectDef> {
    objects().iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

pub fn object_by_prefix(id: &str) -> Option<&'static ObjectDef> {
    objects().iter().find(|o| id.starts_with(o.prefix))
}

pub fn all() -> &'static [ObjectDef] {
    objects()
}

impl ObjectDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The reference field behind a relationship name: `Account` → `AccountId`, `Foo__r` → `Foo__c`.
    pub fn relationship(&self, name: &str) -> Option<&FieldDef> {
        let field = if let Some(base) = name.strip_suffix("__r").or_else(|| name.strip_suffix("__R")) {
            format!("{base}__c")
        } else {
            format!("{name}Id")
        };
        self.field(&field).filter(|f| matches!(f.ty, FieldType::Reference(_)))
    }

    pub fn type_error(&self) -> SfError {
        SfError::new("INVALID_TYPE", format!("sObject type '{}' is not supported.", self.name))
    }
}

pub fn unknown_object(name: &str) -> SfError {
    SfError::new(
        "NOT_FOUND",
        format!("The requested resource does not exist: sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name."),
    )
}

/// Check and normalize the fields of a create (`existing` = None) or an
/// update. Returns the values to store, with canonical field names.
pub fn validate(
    obj: &ObjectDef,
    input: &serde_json::Map<String, Value>,
    existing: Option<&Record>,
    store: &Store,
) -> Result<Record, SfError> {
    let mut out = Record::new();
    for (name, value) in input {
        if name == "attributes" {
            continue;
        }
        let Some(def) = obj.field(name) else {
            return Err(SfError::on(
                "INVALID_FIELD",
                format!("No such column '{name}' on sobject of type {}", obj.name),
                name,
            ));
        };
        if !def.writable || (def.create_only && existing.is_some()) {
            return Err(SfError::on(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!("Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", def.name),
                def.name,
            ));
        }
        out.insert(def.name.to_string(), check_value(def, value, store)?);
    }
    if existing.is_none() {
        for def in &obj.fields {
            if let (Some(default), false) = (def.default, out.contains_key(def.name)) {
                out.insert(def.name.to_string(), Value::String(default.into()));
            }
        }
    }
    let missing: Vec<&str> = obj
        .fields
        .iter()
        .filter(|d| d.required)
        .filter(|d| {
            let now = out.get(d.name).or_else(|| existing.and_then(|e| e.get(d.name)));
            now.is_none_or(|v| v.is_null() || v.as_str() == Some(""))
        })
        .map(|d| d.name)
        .collect();
    if !missing.is_empty() {
        return Err(SfError {
            code: "REQUIRED_FIELD_MISSING",
            message: format!("Required fields are missing: [{}]", missing.join(", ")),
            fields: missing.iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok(out)
}

fn check_value(def: &FieldDef, value: &Value, store: &Store) -> Result<Value, SfError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let text = || -> Result<String, SfError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(SfError::on(
                "JSON_PARSER_ERROR",
                format!("Cannot deserialize instance of string from {} value for field {}", kind(value), def.name),
                def.name,
            )),
        }
    };
    Ok(match &def.ty {
        FieldType::Text(max) | FieldType::TextArea(max) => {
            let s = text()?;
            if s.chars().count() > *max {
                return Err(SfError::on(
                    "STRING_TOO_LONG",
                    format!(
                        "{}: data value too large: {} (max length={max})",
                        def.name,
                        s.chars().take(40).collect::<String>()
                    ),
                    def.name,
                ));
            }
            Value::String(s)
        }
        FieldType::Email => {
            let s = text()?;
            let looks_like_email =
                s.split_once('@').is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
            if !s.is_empty() && !looks_like_email {
                return Err(SfError::on(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address: {s}", def.name),
                    def.name,
                ));
            }
            Value::String(s)
        }
        FieldType::Picklist { values, restricted } => {
            let s = text()?;
            if *restricted && !s.is_empty() {
                match values.iter().find(|v| v.eq_ignore_ascii_case(&s)) {
                    Some(v) => return Ok(Value::String(v.to_string())),
                    None => {
                        return Err(SfError::on(
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            format!("{}: bad value for restricted picklist field: {s}", def.name),
                            def.name,
                        ));
                    }
                }
            }
            Value::String(s)
        }
        FieldType::Reference(targets) => {
            let s = text()?;
            if s.is_empty() {
                return Ok(Value::Null);
            }
            let id = ids::normalize(&s).ok_or_else(|| {
                SfError::on("MALFORMED_ID", format!("{}: id value of incorrect type: {s}", def.name), def.name)
            })?;
            let target = object_by_prefix(&id).filter(|o| targets.contains(&o.name)).ok_or_else(|| {
                SfError::on(
                    "FIELD_INTEGRITY_EXCEPTION",
                    format!("{}: id value of incorrect type: {s}", def.name),
                    def.name,
                )
            })?;
            if store.get(super::EMULATOR, target.name, &id).is_none() {
                return Err(SfError::on(
                    "INVALID_CROSS_REFERENCE_KEY",
                    format!("invalid cross reference id: {s}"),
                    def.name,
                ));
            }
            Value::String(id)
        }
        FieldType::Number => match value {
            Value::Number(n) => Value::Number(n.clone()),
            Value::String(s) if s.trim().parse::<f64>().is_ok() => json!(s.trim().parse::<f64>().unwrap()),
            _ => {
                return Err(SfError::on(
                    "JSON_PARSER_ERROR",
                    format!(
                        "Cannot deserialize instance of double from {} value {value} for field {}",
                        kind(value),
                        def.name
                    ),
                    def.name,
                ))
            }
        },
        FieldType::Boolean => match value {
            Value::Bool(b) => Value::Bool(*b),
            Value::String(s) if s == "true" || s == "false" => Value::Bool(s == "true"),
            _ => {
                return Err(SfError::on(
                    "JSON_PARSER_ERROR",
                    format!(
                        "Cannot deserialize instance of boolean from {} value {value} for field {}",
                        kind(value),
                        def.name
                    ),
                    def.name,
                ))
            }
        },
        FieldType::DateTime | FieldType::Date => {
            let s = text()?;
            let ok = if matches!(def.ty, FieldType::Date) {
                chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").is_ok()
            } else {
                parse_datetime(&s).is_some()
            };
            if !ok {
                return Err(SfError::on(
                    "JSON_PARSER_ERROR",
                    format!("Cannot deserialize instance of date from VALUE_STRING value {s} for field {}", def.name),
                    def.name,
                ));
            }
            Value::String(s)
        }
        FieldType::Base64 => {
            use base64::Engine as _;
            let s = text()?;
            if base64::engine::general_purpose::STANDARD.decode(s.trim()).is_err() {
                return Err(SfError::on(
                    "JSON_PARSER_ERROR",
                    format!("Cannot deserialize instance of base64 from VALUE_STRING value for field {}", def.name),
                    def.name,
                ));
            }
            Value::String(s.trim().to_string())
        }
        FieldType::Id | FieldType::AutoNumber => {
            unreachable!("read-only fields are rejected before their values are checked")
        }
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
        Value::String(_) => "VALUE_STRING",
        Value::Number(_) => "VALUE_NUMBER",
        Value::Bool(_) => "VALUE_TRUE",
        Value::Null => "VALUE_NULL",
    }
}

/// Salesforce's datetime format: `2024-05-01T10:20:30.000+0000`.
pub fn format_datetime(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Accepts what clients send and what SOQL literals look like.
pub fn parse_datetime(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").map(|t| t.with_timezone(&Utc)).ok())
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc()).ok())
}
