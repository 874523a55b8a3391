//! `docs/configuration.md`, written from the configuration types themselves: their
//! JSON Schema (schemars reads the serde attributes and the doc comments) walked into
//! one table per object. A test keeps the page equal to what this writes.

use serde_json::{Map, Value};

/// The JSON Schema of `seam.json`.
pub fn schema() -> Value {
    schemars::schema_for!(super::Config).to_value()
}

/// The configuration reference, as Markdown.
pub fn markdown() -> String {
    let schema = schema();
    let defs = schema.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut out = String::from(
        "# Configuration reference: `seam.json`\n\n\
         `seam serve`, `seam doctor` and the other commands read one JSON file (`--config`).\n\
         `seam init` writes one for a real org and instance; `seam serve --sim` writes one for the\n\
         emulators to `STATE/seam.json`. A key seam does not know is refused by name, and every\n\
         problem that shows without calling out is reported before anything starts.\n\n\
         A **secret** is written as the value itself, `{\"env\": \"VARIABLE\"}` or `{\"file\": \"path\"}`;\n\
         configurations seam writes use the last two.\n\n\
         This page is generated from the configuration types (`host/src/config/`):\n\
         `SEAM_WRITE_DOCS=1 cargo test --release -p seam --lib config::reference` rewrites it.\n",
    );
    let mut sections = Vec::new();
    section(&schema, "", None, &defs, &mut sections);
    for (title, intro, rows) in sections {
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\n## {}\n\n",
            if title.is_empty() { "Top level".to_string() } else { format!("`{title}`") }
        ));
        if let Some(intro) = intro {
            out.push_str(&format!("{}\n\n", cell(&intro)));
        }
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        for row in rows {
            out.push_str(&row);
            out.push('\n');
        }
    }
    out
}

/// (the object's path, what it is when that needs saying, one row per key)
type Sections = Vec<(String, Option<String>, Vec<String>)>;

/// One table for the object at `path`, then one for each object inside it.
fn section(node: &Value, path: &str, intro: Option<String>, defs: &Map<String, Value>, out: &mut Sections) {
    let node = resolve(node, defs);
    let Some(properties) = node.get("properties").and_then(Value::as_object) else { return };
    let required: Vec<&str> =
        node.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let index = out.len();
    out.push((path.to_string(), intro, Vec::new()));
    for (key, property) in properties {
        let target = resolve(property, defs);
        let default = match property.get("default").or_else(|| target.get("default")) {
            Some(Value::Null) | None if required.contains(&key.as_str()) => "required".to_string(),
            Some(Value::Null) | None => "none".to_string(),
            Some(value) => format!("`{value}`"),
        };
        let kind = type_of(property, defs);
        // A secret's own description is the page's introduction; say it once, there.
        let meaning =
            description(property).or_else(|| description(target).filter(|_| kind != "secret")).unwrap_or_default();
        out[index].2.push(format!("| `{key}` | {kind} | {default} | {} |", cell(&meaning)));
        let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        nested(property, &child, defs, out);
    }
}

/// The objects inside a property: a struct, a map's values, a tagged choice's variants.
fn nested(property: &Value, path: &str, defs: &Map<String, Value>, out: &mut Sections) {
    let target = resolve(property, defs);
    if let Some(inner) = non_null(target) {
        return nested(inner, path, defs, out);
    }
    if target.get("properties").is_some() {
        return section(target, path, None, defs, out);
    }
    if let Some(values) = target.get("additionalProperties").filter(|v| v.is_object()) {
        return nested(values, &format!("{path}.NAME"), defs, out);
    }
    if let Some(items) = target.get("items").filter(|_| target.get("type").and_then(Value::as_str) == Some("array")) {
        return nested(items, &format!("{path}[]"), defs, out);
    }
    for variant in target.get("oneOf").and_then(Value::as_array).into_iter().flatten() {
        let variant = resolve(variant, defs);
        let tag = variant
            .get("properties")
            .and_then(Value::as_object)
            .and_then(|p| p.iter().find_map(|(k, v)| v.get("const").map(|c| format!("{k} = {c}"))));
        if let Some(tag) = tag {
            section(variant, &format!("{path} ({tag})"), description(variant), defs, out);
        }
    }
}

/// `T` of an `Option<T>`: `anyOf: [T, null]`.
fn non_null(node: &Value) -> Option<&Value> {
    let choices = node.get("anyOf")?.as_array()?;
    let mut others = choices.iter().filter(|c| c.get("type").and_then(Value::as_str) != Some("null"));
    let first = others.next()?;
    others.next().is_none().then_some(first)
}

fn resolve<'a>(node: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => defs.get(name).map(|d| resolve(d, defs)).unwrap_or(node),
        None => node,
    }
}

fn type_of(node: &Value, defs: &Map<String, Value>) -> String {
    if let Some(inner) = non_null(node) {
        return type_of(inner, defs);
    }
    if let Some(name) = node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        if name == "Secret" {
            return "secret".into();
        }
        return type_of(resolve(node, defs), defs);
    }
    if let Some(value) = node.get("const") {
        return format!("`{value}`");
    }
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        return values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ");
    }
    if let Some(choices) = node.get("oneOf").and_then(Value::as_array) {
        let consts: Vec<String> = choices.iter().filter_map(|c| c.get("const")).map(|v| format!("`{v}`")).collect();
        if consts.len() == choices.len() {
            return consts.join(", ");
        }
        return "one of the choices below".into();
    }
    let kind = match node.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => {
            ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect::<Vec<_>>().join(" or ")
        }
        _ => "any".into(),
    };
    match kind.as_str() {
        "array" => format!("list of {}", node.get("items").map(|i| type_of(i, defs)).unwrap_or_else(|| "any".into())),
        "object" if node.get("additionalProperties").is_some_and(Value::is_object) => "map of name to object".into(),
        _ => kind,
    }
}

fn description(node: &Value) -> Option<String> {
    node.get("description").and_then(Value::as_str).map(str::to_string)
}

/// A doc comment in one table cell: its lines joined, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    /// docs/configuration.md is what the configuration types say; with SEAM_WRITE_DOCS set,
    /// the test writes it instead.
    #[test]
    fn the_configuration_reference_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let written = super::markdown();
        if std::env::var_os("SEAM_WRITE_DOCS").is_some() {
            std::fs::write(&path, &written).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == written,
            "docs/configuration.md is not what the configuration types say; run \
             `SEAM_WRITE_DOCS=1 cargo test --release -p seam --lib config::reference` and commit it"
        );
    }

    /// Every key the page names parses: the walk follows the schema, not a list of its own.
    #[test]
    fn the_reference_covers_tenants_and_their_credentials() {
        let page = super::markdown();
        for key in [
            "`tenants.NAME`",
            "`tenants.NAME.salesforce.auth (flow = \"jwt_bearer\")`",
            "`pack_limits`",
            "`intake_burst`",
            "`packs_dir`",
        ] {
            assert!(page.contains(key), "{key} is missing from the reference");
        }
    }
}
