//! Small pieces of XML reading shared by the emulators' SOAP and update-set parsers.

use quick_xml::events::{BytesRef, BytesText};

/// The text of a text event.
pub fn text(t: &BytesText) -> Result<String, String> {
    t.decode().map(|s| s.into_owned()).map_err(|e| format!("undecodable XML text: {e}"))
}

/// What an entity or character reference (`&amp;`, `&#233;`) stands for;
/// quick-xml reports them as events of their own.
pub fn reference(r: &BytesRef) -> Result<String, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(|e| e.to_string())?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_string)
        .ok_or_else(|| format!("unknown XML entity &{name};"))
}
