//! The field bitmaps of a change event's header (`changedFields`, `nulledFields`,
//! `diffFields`), expanded to field names.
//!
//! Salesforce's rule (Pub/Sub API guide, "Event Deserialization Considerations"):
//! the first element, `0x…`, is a bitmap over the event schema's top-level fields,
//! read as one hexadecimal number whose bit i (bit 0 the least significant) stands
//! for the schema's field i. An element `<pos>-0x…` is the same over the fields of
//! the compound field at top-level position `<pos>` (a record, maybe inside a union
//! with null), whose names come out as `Parent.Child`.

use apache_avro::schema::{RecordSchema, Schema};
use std::collections::HashMap;

/// The field names an event's bitmap list stands for, in schema order.
pub fn field_names(schema: &Schema, bitmaps: &[String]) -> Result<Vec<String>, String> {
    let Schema::Record(record) = schema else { return Err("the event schema is not a record".into()) };
    // A compound type is spelled out once and named after that (`ShippingAddress`: `["null","Address"]`).
    let mut named = HashMap::new();
    collect_records(schema, &mut named);
    let mut names = Vec::new();
    for (i, bitmap) in bitmaps.iter().enumerate() {
        match bitmap.split_once('-') {
            None if i == 0 => names.extend(
                set_bits(bitmap)?
                    .into_iter()
                    .map(|bit| field_at(record, bit, bitmap))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => return Err(format!("bitmap {bitmap:?}: only the first element may cover the top-level fields")),
            Some((position, nested)) => {
                let position: usize =
                    position.parse().map_err(|_| format!("bitmap {bitmap:?}: {position:?} is not a field position"))?;
                let parent = record
                    .fields
                    .get(position)
                    .ok_or_else(|| format!("bitmap {bitmap:?}: the schema has no field {position}"))?;
                let compound = record_of(&parent.schema, &named)
                    .ok_or_else(|| format!("bitmap {bitmap:?}: field {} is not a compound field", parent.name))?;
                for bit in set_bits(nested)? {
                    names.push(format!("{}.{}", parent.name, field_at(compound, bit, bitmap)?));
                }
            }
        }
    }
    Ok(names)
}

fn field_at(record: &RecordSchema, bit: usize, bitmap: &str) -> Result<String, String> {
    record
        .fields
        .get(bit)
        .map(|f| f.name.clone())
        .ok_or_else(|| format!("bitmap {bitmap:?} sets bit {bit}, but the schema has {} fields", record.fields.len()))
}

/// The record a field's schema is, through a union with null (or with string, as
/// switchable compound fields are shaped), or the record it names.
fn record_of<'a>(schema: &'a Schema, named: &HashMap<String, &'a RecordSchema>) -> Option<&'a RecordSchema> {
    match schema {
        Schema::Record(record) => Some(record),
        Schema::Ref { name } => named.get(&name.name).copied(),
        Schema::Union(union) => union.variants().iter().find_map(|v| record_of(v, named)),
        _ => None,
    }
}

fn collect_records<'a>(schema: &'a Schema, named: &mut HashMap<String, &'a RecordSchema>) {
    match schema {
        Schema::Record(record) => {
            named.insert(record.name.name.clone(), record);
            record.fields.iter().for_each(|f| collect_records(&f.schema, named));
        }
        Schema::Union(union) => union.variants().iter().for_each(|v| collect_records(v, named)),
        _ => {}
    }
}

/// The positions of the set bits of `0x…`, least significant first.
fn set_bits(hex: &str) -> Result<Vec<usize>, String> {
    let digits = hex
        .strip_prefix("0x")
        .or_else(|| hex.strip_prefix("0X"))
        .ok_or_else(|| format!("bitmap {hex:?} does not start with 0x"))?;
    let mut bits = Vec::new();
    // The last digit holds bits 0-3, the one before it 4-7, and so on.
    for (place, digit) in digits.chars().rev().enumerate() {
        let nibble = digit.to_digit(16).ok_or_else(|| format!("bitmap {hex:?} is not hexadecimal"))?;
        bits.extend((0..4).filter(|b| nibble & (1 << b) != 0).map(|b| place * 4 + b));
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_count_from_the_least_significant_of_the_whole_number() {
        // The example of Salesforce's deserialization guide.
        assert_eq!(set_bits("0x650004E0").unwrap(), vec![5, 6, 7, 10, 24, 26, 29, 30]);
        assert_eq!(set_bits("0x10").unwrap(), vec![4]);
        assert_eq!(set_bits("0x6").unwrap(), vec![1, 2]);
        assert!(set_bits("650004E0").is_err());
        assert!(set_bits("0xZZ").is_err());
    }

    #[test]
    fn names_top_level_and_compound_fields() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"AccountChangeEvent","fields":[
                {"name":"ChangeEventHeader","type":"string"},
                {"name":"Name","type":["null","string"],"default":null},
                {"name":"BillingAddress","type":["null",{"type":"record","name":"Address","fields":[
                    {"name":"Street","type":["null","string"],"default":null},
                    {"name":"City","type":["null","string"],"default":null}]}],"default":null},
                {"name":"Phone","type":["null","string"],"default":null},
                {"name":"ShippingAddress","type":["null","Address"],"default":null}]}"#,
        )
        .unwrap();
        let names = field_names(&schema, &["0xA".into(), "2-0x2".into(), "4-0x1".into()]).unwrap();
        assert_eq!(names, vec!["Name", "Phone", "BillingAddress.City", "ShippingAddress.Street"]);
        assert!(field_names(&schema, &["0x20".into()]).unwrap_err().contains("5 fields"));
        assert!(field_names(&schema, &["0x1".into(), "1-0x1".into()]).unwrap_err().contains("not a compound field"));
        assert!(field_names(&schema, &[]).unwrap().is_empty());
    }
}
