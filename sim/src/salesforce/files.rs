//! Files, as Salesforce keeps them: each version of a file is a `ContentVersion`,
//! the file itself a `ContentDocument`, and each record it is shared with a
//! `ContentDocumentLink`.
//!
//! Inserting a version is where the platform does the work:
//! - it computes the version's `Checksum` (MD5), `ContentSize`, `FileExtension`,
//!   `FileType` and `VersionNumber`;
//! - a first version makes its document, and is shared with its
//!   `FirstPublishLocationId` (one link, `V`, `AllUsers`);
//! - a version naming a `ContentDocumentId` becomes that document's latest.
//!
//! The content is read back from `…/sobjects/ContentVersion/{id}/VersionData`,
//! never inline.

use super::schema::{FieldType, ObjectDef, SfError};
use super::{new_record, Emulator, EMULATOR};
use base64::Engine as _;
use md5::Digest as _;
use serde_json::{json, Map, Value};

/// A record to store alongside: (object, id, record).
pub type Also = (String, String, Map<String, Value>);

/// What inserting the version `id` (validated) derives on it, and the other records it writes.
pub fn on_insert(
    e: &Emulator,
    id: &str,
    version: &mut Map<String, Value>,
    user: &str,
    at: &str,
) -> Result<Vec<Also>, SfError> {
    let text = |v: &Map<String, Value>, f: &str| v.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
    let content = content(version, "VersionData")
        .ok_or_else(|| SfError::on("JSON_PARSER_ERROR", "VersionData is not Base64", "VersionData"))?;
    let path = text(version, "PathOnClient");
    let extension = path.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).filter(|ext| !ext.is_empty());
    if text(version, "Title").is_empty() {
        let stem = path.rsplit(['/', '\\']).next().unwrap_or(&path);
        let stem = stem.rsplit_once('.').map_or(stem, |(stem, _)| stem);
        version.insert("Title".into(), json!(stem));
    }
    version.insert("Checksum".into(), json!(hex::encode(md5::Md5::digest(&content))));
    version.insert("ContentSize".into(), json!(content.len()));
    version.insert("FileExtension".into(), json!(extension));
    version.insert("FileType".into(), json!(file_type(extension.as_deref())));
    version.insert("IsLatest".into(), json!(true));

    let mut also = Vec::new();
    let document_id = text(version, "ContentDocumentId");
    let (document_id, mut document, number) = if document_id.is_empty() {
        let (document_id, document) = new_record(e, object("ContentDocument")?, Map::new(), user, at)?;
        version.insert("ContentDocumentId".into(), json!(document_id));
        let shared_with = text(version, "FirstPublishLocationId");
        if !shared_with.is_empty() {
            let fields = json!({
                "ContentDocumentId": document_id, "LinkedEntityId": shared_with,
                "ShareType": "V", "Visibility": "AllUsers",
            });
            let link_object = object("ContentDocumentLink")?;
            let (link_id, link) =
                new_record(e, link_object, fields.as_object().cloned().unwrap_or_default(), user, at)?;
            also.push((link_object.name.to_string(), link_id, link));
        }
        (document_id, document, 1)
    } else {
        if !text(version, "FirstPublishLocationId").is_empty() {
            return Err(SfError::on(
                "FIELD_INTEGRITY_EXCEPTION",
                "FirstPublishLocationId can be set only on a document's first version",
                "FirstPublishLocationId",
            ));
        }
        let document = e.store.get(EMULATOR, "ContentDocument", &document_id).ok_or_else(|| {
            SfError::on("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", "ContentDocumentId")
        })?;
        // The document's earlier versions are no longer its latest.
        let earlier = e.store.scan(EMULATOR, "ContentVersion", |v| text(v, "ContentDocumentId") == document_id);
        let number = earlier.len() + 1;
        for mut v in earlier.into_iter().filter(|v| v.get("IsLatest") == Some(&json!(true))) {
            v.insert("IsLatest".into(), json!(false));
            also.push(("ContentVersion".to_string(), text(&v, "Id"), v));
        }
        (document_id, document, number)
    };
    version.insert("VersionNumber".into(), json!(number.to_string()));
    for f in ["Title", "FileExtension", "FileType", "ContentSize"] {
        document.insert(f.into(), version.get(f).cloned().unwrap_or(Value::Null));
    }
    document.insert("LatestPublishedVersionId".into(), json!(id));
    document.insert("LastModifiedDate".into(), json!(at));
    document.insert("SystemModstamp".into(), json!(at));
    also.push(("ContentDocument".to_string(), document_id, document));
    Ok(also)
}

/// The definition of an object the files code writes.
fn object(name: &str) -> Result<&'static ObjectDef, SfError> {
    super::schema::object(name).ok_or_else(|| SfError::new("UNKNOWN_EXCEPTION", format!("the emulator has no {name}")))
}

/// The platform's file type for an extension (`pdf` → `PDF`); `UNKNOWN` when it has none.
fn file_type(extension: Option<&str>) -> &'static str {
    match extension {
        Some("txt" | "log") => "TEXT",
        Some("csv") => "CSV",
        Some("pdf") => "PDF",
        Some("png") => "PNG",
        Some("jpg" | "jpeg") => "JPG",
        Some("gif") => "GIF",
        Some("zip") => "ZIP",
        Some("json") => "JSON",
        Some("xml") => "XML",
        Some("html" | "htm") => "HTML",
        Some("doc") => "WORD",
        Some("docx") => "WORD_X",
        Some("xls") => "EXCEL",
        Some("xlsx") => "EXCEL_X",
        _ => "UNKNOWN",
    }
}

/// How a binary field reads in a record: the path of its content, not the content.
pub fn shown(obj: &ObjectDef, field: &str, record: &Map<String, Value>) -> Option<Value> {
    let def = obj.field(field)?;
    if !matches!(def.ty, FieldType::Base64) {
        return None;
    }
    let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
    let has = record.get(def.name).is_some_and(|v| !v.is_null());
    Some(if has { json!(format!("{}/{}", super::sobject_url(obj.name, id), def.name)) } else { Value::Null })
}

/// A binary field's content, as `GET …/sobjects/{object}/{id}/{field}` returns it.
pub fn content(record: &Map<String, Value>, field: &str) -> Option<Vec<u8>> {
    let data = record.get(field)?.as_str()?;
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// ContentDocumentLink is only read for a given document or record, as Salesforce insists.
pub fn check_link_query(obj: &ObjectDef, filter: Option<&super::soql::Cond>) -> Result<(), SfError> {
    use super::soql::{Cond, Op};
    fn names_one(c: &Cond) -> bool {
        match c {
            Cond::Cmp { field, op: Op::Eq, .. } | Cond::In { field, negated: false, .. } => {
                field.eq_ignore_ascii_case("ContentDocumentId") || field.eq_ignore_ascii_case("LinkedEntityId")
            }
            Cond::And(a, b) => names_one(a) || names_one(b),
            _ => false,
        }
    }
    if obj.name != "ContentDocumentLink" || filter.is_some_and(names_one) {
        return Ok(());
    }
    Err(SfError::new(
        "MALFORMED_QUERY",
        "Implementation restriction: ContentDocumentLink requires a filter by a single Id on ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using the IN operator.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(soql: &str) -> Result<(), SfError> {
        let q = super::super::soql::parse(soql).unwrap();
        check_link_query(q.object, q.filter.as_ref())
    }

    #[test]
    fn links_are_read_only_for_a_named_document_or_record() {
        assert!(check("SELECT Id FROM ContentDocumentLink WHERE LinkedEntityId = '500000000000001AAA'").is_ok());
        assert!(check(
            "SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId IN ('069000000000001AAA') AND ShareType = 'V'"
        )
        .is_ok());
        for unfiltered in [
            "SELECT Id FROM ContentDocumentLink",
            "SELECT Id FROM ContentDocumentLink WHERE ShareType = 'V'",
            "SELECT Id FROM ContentDocumentLink WHERE LinkedEntityId = '500000000000001AAA' OR ShareType = 'V'",
            "SELECT Id FROM ContentDocumentLink WHERE LinkedEntityId != '500000000000001AAA'",
        ] {
            assert_eq!(check(unfiltered).unwrap_err().code, "MALFORMED_QUERY", "{unfiltered}");
        }
        assert!(check("SELECT Id FROM Case").is_ok(), "other objects need no filter");
    }

    #[test]
    fn file_types_follow_the_extension() {
        assert_eq!((file_type(Some("pdf")), file_type(Some("log")), file_type(None)), ("PDF", "TEXT", "UNKNOWN"));
    }
}
