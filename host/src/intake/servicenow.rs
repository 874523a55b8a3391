//! ServiceNow business-rule notifications (JSON).

use crate::engine::normalize;
use crate::model::{Change, ChangeKind, Field};
use serde_json::{json, Map, Value};

/// `{"event_id", "table", "sys_id", "operation", "changed", "current", "display_values", "journal"}` → a change.
pub fn parse(body: &[u8]) -> Result<(String, Change), String> {
    let n: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let text = |k: &str| n.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| format!("the notification has no {k}"));
    let (event_id, table, sys_id) = (text("event_id")?, text("table")?, text("sys_id")?);
    let kind = match text("operation")? {
        "insert" => ChangeKind::Created,
        "update" => ChangeKind::Updated,
        "delete" => ChangeKind::Deleted,
        other => return Err(format!("unknown operation {other:?}; expected insert, update or delete")),
    };
    let current = n.get("current").and_then(Value::as_object).ok_or("the notification has no current record")?;
    if current.get("sys_id").and_then(Value::as_str) != Some(sys_id) {
        return Err("current.sys_id does not match sys_id".into());
    }
    let displays = n.get("display_values").and_then(Value::as_object).cloned().unwrap_or_default();
    // The same shape the Table API gives with sysparm_display_value=all, so one normalizer serves both.
    let record: Map<String, Value> = current
        .iter()
        .map(|(k, v)| match displays.get(k) {
            Some(d) => (k.clone(), json!({ "value": v, "display_value": d })),
            None => (k.clone(), v.clone()),
        })
        .collect();
    let changed: Vec<&str> = n.get("changed").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let key = format!("sn:{event_id}");
    let mut change = normalize::servicenow(&key, kind, table, &record, (kind == ChangeKind::Updated).then_some(changed.as_slice()));
    // Journal fields read back empty; the text written is in `journal`.
    for entry in n.get("journal").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(element), Some(value)) = (entry.get("element").and_then(Value::as_str), entry.get("value").and_then(Value::as_str)) {
            change.changed.retain(|f| f.name != element);
            change.changed.push(Field::new(element, value));
        }
    }
    Ok((key, change))
}
