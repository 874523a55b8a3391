//! The update set a ServiceNow admin imports for one tenant (System Update
//! Sets → Retrieved Update Sets → Import Update Set from XML → Preview →
//! Commit). It holds:
//!
//! - the async business rule `seam push (<tenant>)` on incident (insert,
//!   update, delete), which posts each change to intake as
//!   `intake/servicenow/notification.json` describes, signed with HMAC-SHA256
//!   through `GlideCertificateEncryption.generateMac`; its condition skips the
//!   integration user's changes (seam's own writes);
//! - the system properties `seam.<tenant>.endpoint`, `.secret` and
//!   `.integration_user` it reads;
//! - the field `u_sf_external_id` on core_company (the customer key shared
//!   with Salesforce), with its label.
//!
//! The file is laid out as the platform's "Export to XML" writes one: an
//! `<unload>` of one `sys_remote_update_set` and one `sys_update_xml` per
//! record, each record's `<record_update>` escaped in its `<payload>`, fields
//! in alphabetical order. Record sys_ids are derived from the tenant, so a
//! newer file updates what an older one installed instead of adding a second
//! rule; the update set's own sys_id is new each time.

use crate::engine::normalize::COMPANY_KEY_FIELD;
use crate::secrets::{ExposeSecret, SecretString};
use quick_xml::escape::escape;
use sha2::{Digest, Sha256};

/// The table whose changes the rule sends.
pub const PUSH_TABLE: &str = "incident";
/// The first line of the rule's script: how the rule is recognised (the emulator runs it by this).
pub const SCRIPT_MARKER: &str = "// seam:push-rule v2 tenant=";
const SCRIPT_TEMPLATE: &str = include_str!("servicenow/push_rule.js");
/// The company field's length: the Salesforce key field is Text(64).
const COMPANY_KEY_LENGTH: u32 = 64;

/// What the rule needs to know for one tenant.
pub struct PushSetup {
    pub tenant: String,
    /// Where intake takes the tenant's notifications: `https://seam.example.com/intake/<tenant>/servicenow`.
    pub endpoint: String,
    pub secret: SecretString,
    /// The user whose changes are seam's own.
    pub integration_user: String,
}

/// `seam push (<tenant>)`
pub fn rule_name(tenant: &str) -> String {
    format!("seam push ({tenant})")
}

/// `seam.<tenant>.`: the rule's system properties start with it.
pub fn property_prefix(tenant: &str) -> String {
    format!("seam.{tenant}.")
}

/// The rule's script for `tenant`.
pub fn script(tenant: &str) -> String {
    SCRIPT_TEMPLATE.replace("{{TENANT}}", tenant).replace("{{PREFIX}}", &property_prefix(tenant))
}

/// The rule's condition: not the integration user's own change. Conditions are checked when
/// the change is made, in the session that made it, before the async job is queued.
pub fn condition(tenant: &str) -> String {
    format!("gs.getUserName() != gs.getProperty('{}integration_user')", property_prefix(tenant))
}

/// A sys_id that stays the same for the same tenant and record, generation after generation.
fn stable_id(tenant: &str, what: &str) -> String {
    hex::encode(&Sha256::digest(format!("seam/{tenant}/{what}").as_bytes())[..16])
}

/// One field of a record: `<name>value</name>`, `<name/>` when empty, optionally with attributes.
struct Field<'a> {
    name: &'a str,
    value: String,
    attributes: Vec<(&'a str, String)>,
    cdata: bool,
}

fn f<'a>(name: &'a str, value: impl Into<String>) -> Field<'a> {
    Field { name, value: value.into(), attributes: vec![], cdata: false }
}

/// A reference field, written as the platform writes one: `<name display_value="…">sys_id</name>`.
fn reference<'a>(name: &'a str, value: impl Into<String>, display: impl Into<String>) -> Field<'a> {
    Field { name, value: value.into(), attributes: vec![("display_value", display.into())], cdata: false }
}

fn write_fields(out: &mut String, mut fields: Vec<Field>) {
    fields.sort_by(|a, b| a.name.cmp(b.name));
    for field in fields {
        out.push('<');
        out.push_str(field.name);
        for (k, v) in &field.attributes {
            out.push_str(&format!(" {k}=\"{}\"", escape(v.as_str())));
        }
        if field.value.is_empty() {
            out.push_str("/>");
            continue;
        }
        out.push('>');
        if field.cdata {
            out.push_str("<![CDATA[");
            out.push_str(&field.value);
            out.push_str("]]>");
        } else {
            out.push_str(&escape(field.value.as_str()));
        }
        out.push_str(&format!("</{}>", field.name));
    }
}

/// The fields every record of the set carries: who made it, when, in which scope.
fn system_fields<'a>(table: &'a str, sys_id: &str, name: &str, at: &str) -> Vec<Field<'a>> {
    vec![
        f("sys_class_name", table),
        f("sys_created_by", "admin"),
        f("sys_created_on", at),
        f("sys_id", sys_id),
        f("sys_mod_count", "0"),
        f("sys_name", name),
        reference("sys_package", "global", "Global"),
        f("sys_policy", ""),
        reference("sys_scope", "global", "Global"),
        f("sys_update_name", format!("{table}_{sys_id}")),
        f("sys_updated_by", "admin"),
        f("sys_updated_on", at),
    ]
}

/// One record to install: its `sys_update_xml` entry's name, type, table and target, and its payload.
struct Update {
    name: String,
    kind: &'static str,
    table: String,
    target: String,
    payload: String,
}

fn business_rule(setup: &PushSetup, at: &str) -> Update {
    let id = stable_id(&setup.tenant, "sys_script/push");
    let name = rule_name(&setup.tenant);
    let mut fields = system_fields("sys_script", &id, &name, at);
    fields.extend([
        f("abort_action", "false"),
        f("access", "package_private"),
        f("action_delete", "true"),
        f("action_insert", "true"),
        f("action_query", "false"),
        f("action_update", "true"),
        f("active", "true"),
        f("add_message", "false"),
        f("advanced", "true"),
        f("change_fields", "false"),
        f("client_callable", "false"),
        f("collection", PUSH_TABLE),
        f("condition", condition(&setup.tenant)),
        f("description", format!("Sends every {PUSH_TABLE} change to seam (tenant {}), signed; skips the integration user's changes. Generated by seam.", setup.tenant)),
        f("execute_function", "false"),
        f("filter_condition", ""),
        f("is_rest", "false"),
        f("message", ""),
        f("name", name.clone()),
        f("order", "100"),
        f("priority", "100"),
        f("role_conditions", ""),
        Field { cdata: true, ..f("script", script(&setup.tenant)) },
        f("template", ""),
        f("when", "async"),
    ]);
    let mut payload = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><record_update sys_domain="global" table="sys_script"><sys_script action="INSERT_OR_UPDATE">"#,
    );
    write_fields(&mut payload, fields);
    payload.push_str("</sys_script></record_update>");
    Update { name: format!("sys_script_{id}"), kind: "Business Rule", table: PUSH_TABLE.into(), target: name, payload }
}

fn property(tenant: &str, key: &str, value: &str, description: &str, at: &str) -> Update {
    let name = format!("{}{key}", property_prefix(tenant));
    let id = stable_id(tenant, &format!("sys_properties/{key}"));
    let mut fields = system_fields("sys_properties", &id, &name, at);
    fields.extend([
        f("choices", ""),
        f("description", description),
        f("ignore_cache", "false"),
        f("is_private", "false"),
        f("name", name.clone()),
        f("read_roles", ""),
        f("suffix", ""),
        f("type", "string"),
        f("value", value),
        f("write_roles", ""),
    ]);
    let mut payload = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><record_update table="sys_properties"><sys_properties action="INSERT_OR_UPDATE">"#,
    );
    write_fields(&mut payload, fields);
    payload.push_str("</sys_properties></record_update>");
    Update {
        name: format!("sys_properties_{id}"),
        kind: "System Property",
        table: String::new(),
        target: name,
        payload,
    }
}

/// The customer key on core_company: the dictionary entry and its English label.
fn company_key(tenant: &str, at: &str) -> [Update; 2] {
    let (table, element, label) = ("core_company", COMPANY_KEY_FIELD, "SF External ID");
    let id = stable_id(tenant, &format!("sys_dictionary/{table}/{element}"));
    let mut fields = system_fields("sys_dictionary", &id, label, at);
    fields.retain(|f| f.name != "sys_update_name");
    fields.extend([
        f("active", "true"),
        f("array", "false"),
        f("attributes", ""),
        f("audit", "false"),
        f("column_label", label),
        f(
            "comments",
            "The customer's key, the same as the Salesforce Account's External_Id__c; seam matches customers on it.",
        ),
        f("display", "false"),
        f("element", element),
        reference("internal_type", "string", "String"),
        f("mandatory", "false"),
        f("max_length", COMPANY_KEY_LENGTH.to_string()),
        f("name", table),
        f("primary", "false"),
        f("read_only", "false"),
        f("reference", ""),
        f("sys_update_name", format!("sys_dictionary_{table}_{element}")),
        f("unique", "false"),
        f("virtual", "false"),
    ]);
    let mut dictionary = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><record_update><sys_dictionary action="INSERT_OR_UPDATE" element="{element}" table="{table}">"#
    );
    write_fields(&mut dictionary, fields);
    dictionary.push_str("</sys_dictionary></record_update>");

    let doc_id = stable_id(tenant, &format!("sys_documentation/{table}/{element}/en"));
    let mut fields = system_fields("sys_documentation", &doc_id, label, at);
    fields.retain(|f| f.name != "sys_update_name");
    fields.extend([
        f("element", element),
        f("help", ""),
        f("hint", ""),
        f("label", label),
        f("language", "en"),
        f("name", table),
        f("plural", "SF External IDs"),
        f("sys_update_name", format!("sys_documentation_{table}_{element}_en")),
        f("url", ""),
        f("url_target", ""),
    ]);
    let mut documentation = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><record_update><sys_documentation element="{element}" label="{label}" language="en" table="{table}"><sys_documentation action="INSERT_OR_UPDATE">"#
    );
    write_fields(&mut documentation, fields);
    documentation.push_str("</sys_documentation></sys_documentation></record_update>");
    let target = format!("Company.{label}");
    [
        Update {
            name: format!("sys_dictionary_{table}_{element}"),
            kind: "Dictionary",
            table: table.into(),
            target: target.clone(),
            payload: dictionary,
        },
        Update {
            name: format!("sys_documentation_{table}_{element}_en"),
            kind: "Field Label",
            table: table.into(),
            target,
            payload: documentation,
        },
    ]
}

/// The update set for `setup`, as an XML file to import; `at` stamps it (UTC).
pub fn update_set(setup: &PushSetup, at: chrono::DateTime<chrono::Utc>) -> String {
    let stamp = at.format("%Y-%m-%d %H:%M:%S").to_string();
    let set_id = hex::encode(rand::random::<[u8; 16]>());
    let set_name = format!("seam {} {}", setup.tenant, at.format("%Y-%m-%d %H:%M"));
    let tenant = setup.tenant.as_str();
    let mut updates = vec![
        business_rule(setup, &stamp),
        property(
            tenant,
            "endpoint",
            &setup.endpoint,
            "seam: where the push rule sends changes (intake, over HTTPS).",
            &stamp,
        ),
        property(
            tenant,
            "secret",
            setup.secret.expose_secret(),
            "seam: the key the push rule signs changes with (HMAC-SHA256). Keep it secret.",
            &stamp,
        ),
        property(
            tenant,
            "integration_user",
            &setup.integration_user,
            "seam: the user seam writes as; the push rule skips its changes.",
            &stamp,
        ),
    ];
    updates.extend(company_key(tenant, &stamp));

    let mut out = format!(r#"<?xml version="1.0" encoding="UTF-8"?><unload unload_date="{stamp}">"#);
    out.push('\n');
    out.push_str(r#"<sys_remote_update_set action="INSERT_OR_UPDATE">"#);
    write_fields(
        &mut out,
        vec![
            reference("application", "global", "Global"),
            f("application_name", "Global"),
            f("application_scope", "global"),
            f("application_version", ""),
            f("collisions", ""),
            f("commit_date", ""),
            f("deleted", ""),
            f("description", format!("seam for tenant {tenant}: the push business rule on {PUSH_TABLE}, its system properties, and core_company.{COMPANY_KEY_FIELD}.")),
            f("inserted", ""),
            f("name", set_name.clone()),
            f("origin_sys_id", ""),
            reference("parent", "", ""),
            f("release_date", ""),
            reference("remote_base_update_set", "", ""),
            f("remote_parent_id", ""),
            f("remote_sys_id", set_id.clone()),
            f("state", "loaded"),
            f("summary", ""),
            f("sys_class_name", "sys_remote_update_set"),
            f("sys_created_by", "admin"),
            f("sys_created_on", stamp.clone()),
            f("sys_id", set_id.clone()),
            f("sys_mod_count", "0"),
            f("sys_updated_by", "admin"),
            f("sys_updated_on", stamp.clone()),
            reference("update_set", "", ""),
            reference("update_source", "", ""),
            f("updated", ""),
        ],
    );
    out.push_str("</sys_remote_update_set>\n");
    for update in updates {
        let entry_id = stable_id(tenant, &format!("sys_update_xml/{}/{set_id}", update.name));
        out.push_str(r#"<sys_update_xml action="INSERT_OR_UPDATE">"#);
        // A payload holding a CDATA section (a script) is escaped as text; the others are CDATA, as exports have them.
        let payload = if update.payload.contains("<![CDATA[") {
            Field { name: "payload", value: update.payload, attributes: vec![], cdata: false }
        } else {
            Field { name: "payload", value: update.payload, attributes: vec![], cdata: true }
        };
        write_fields(
            &mut out,
            vec![
                f("action", "INSERT_OR_UPDATE"),
                reference("application", "global", "Global"),
                f("category", "customer"),
                f("comments", ""),
                f("name", update.name),
                payload,
                reference("remote_update_set", set_id.clone(), set_name.clone()),
                f("replace_on_upgrade", "false"),
                f("sys_created_by", "admin"),
                f("sys_created_on", stamp.clone()),
                f("sys_id", entry_id),
                f("sys_mod_count", "0"),
                f("sys_updated_by", "admin"),
                f("sys_updated_on", stamp.clone()),
                f("table", update.table),
                f("target_name", update.target),
                f("type", update.kind),
                f("update_domain", "global"),
                reference("update_set", "", ""),
                f("view", ""),
            ],
        );
        out.push_str("</sys_update_xml>\n");
    }
    out.push_str("</unload>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> PushSetup {
        PushSetup {
            tenant: "acme".into(),
            endpoint: "https://seam.example.com/intake/acme/servicenow".into(),
            secret: SecretString::from("s3cret & <more>"),
            integration_user: "seam.integration".into(),
        }
    }

    #[test]
    fn the_script_names_its_tenant_and_properties() {
        let s = script("acme");
        assert!(s.starts_with(&format!("{SCRIPT_MARKER}acme\n")), "{}", &s[..80]);
        assert!(s.contains("var prefix = 'seam.acme.';") && !s.contains("{{"));
        assert_eq!(condition("acme"), "gs.getUserName() != gs.getProperty('seam.acme.integration_user')");
    }

    #[test]
    fn the_file_is_well_formed_and_a_second_generation_installs_over_the_first() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let xml = update_set(&setup(), at);
        // Well-formed from end to end, payloads included.
        let mut reader = quick_xml::Reader::from_str(&xml);
        let mut payloads = Vec::new();
        let mut in_payload = false;
        let mut text = String::new();
        loop {
            match reader.read_event().unwrap() {
                quick_xml::events::Event::Start(e) if e.name().as_ref() == b"payload" => {
                    in_payload = true;
                    text.clear();
                }
                quick_xml::events::Event::Text(t) if in_payload => text.push_str(&crate::xml::text(&t).unwrap()),
                quick_xml::events::Event::GeneralRef(r) if in_payload => {
                    text.push_str(&crate::xml::reference(&r).unwrap())
                }
                quick_xml::events::Event::CData(c) if in_payload => text.push_str(std::str::from_utf8(&c).unwrap()),
                quick_xml::events::Event::End(e) if e.name().as_ref() == b"payload" => {
                    in_payload = false;
                    payloads.push(text.clone());
                }
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(payloads.len(), 6);
        for payload in &payloads {
            let mut inner = quick_xml::Reader::from_str(payload);
            while !matches!(
                inner.read_event().unwrap_or_else(|e| panic!("{e}: {payload}")),
                quick_xml::events::Event::Eof
            ) {}
        }
        assert!(payloads[0].contains("<when>async</when>") && payloads[0].contains(SCRIPT_MARKER));
        assert!(payloads.iter().any(|p| p.contains("<value>s3cret &amp; &lt;more&gt;</value>")));
        assert!(payloads.iter().any(|p| p.contains(
            r#"<sys_dictionary action="INSERT_OR_UPDATE" element="u_sf_external_id" table="core_company">"#
        )));
        // The records keep their sys_ids; the update set is a new one.
        let again = update_set(&setup(), at);
        let ids = |x: &str| x.match_indices("<sys_id>").map(|(i, _)| x[i + 8..i + 40].to_string()).collect::<Vec<_>>();
        assert_ne!(ids(&xml)[0], ids(&again)[0], "the update set's own sys_id is new");
        let rule = |x: &str| x.split("sys_script_").nth(1).map(|s| s[..32].to_string());
        assert_eq!(rule(&xml), rule(&again));
    }
}
