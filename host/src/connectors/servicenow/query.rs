//! Encoded queries (`field=value^field2>=value2^ORDERBYfield`), built from
//! parts so that a value can never add a term of its own. Every query seam
//! sends to ServiceNow is a [`Query`]: lookups, catch-up polls, the
//! reconciler, `seam doctor`.
//!
//! `^` joins terms, so a value holding one is written `^^`
//! (`GlideStringUtil.escapeQueryTermSeparator`: `test^Test` → `test^^Test`).
//! Values the syntax cannot carry are refused, never sent: control
//! characters, and the empty value (`field=` matches every record whose field
//! is empty, which is never the one a key names).

use std::fmt;

/// A query that could not be built: the caller's input, with what to do about it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("{0:?} is not a ServiceNow field name (lower-case letters, digits and _, dot-walked with .)")]
    Field(String),
    #[error("{0:?} is not a ServiceNow table name (lower-case letters, digits and _)")]
    Table(String),
    #[error("the value for {field} is empty; an empty value would match every record whose {field} is empty, so seam does not query with it")]
    Empty { field: String },
    #[error("the value for {field} holds a control character ({code:#04x}), which an encoded query cannot carry; fix the value at its source")]
    Control { field: String, code: u32 },
    #[error("a value for {field} holds a comma, which an IN list cannot carry; query it on its own")]
    Comma { field: String },
}

impl From<QueryError> for super::ConnectorError {
    fn from(e: QueryError) -> Self {
        super::ConnectorError::Invalid { system: "servicenow", message: e.to_string() }
    }
}

/// An encoded query, valid by construction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    text: String,
}

impl Query {
    pub fn new() -> Query {
        Query::default()
    }

    /// A query written out in the source (`"correlation_idISNOTEMPTY"`): `'static` text holds no
    /// value from a record, so it needs no escaping. Anything built at run time uses the builder.
    pub fn literal(text: &'static str) -> Query {
        Query { text: text.to_string() }
    }

    /// `field=value`.
    pub fn eq(self, field: &str, value: &str) -> Result<Query, QueryError> {
        self.term(field, "=", value)
    }

    /// `field>=value`.
    pub fn at_least(self, field: &str, value: &str) -> Result<Query, QueryError> {
        self.term(field, ">=", value)
    }

    /// `field>value`.
    pub fn above(self, field: &str, value: &str) -> Result<Query, QueryError> {
        self.term(field, ">", value)
    }

    /// `fieldINa,b,c`: any of `values` (none of which may hold a comma, the list's separator).
    pub fn one_of(self, field: &str, values: &[&str]) -> Result<Query, QueryError> {
        let field = checked_field(field)?;
        let mut list = Vec::with_capacity(values.len());
        for value in values {
            if value.contains(',') {
                return Err(QueryError::Comma { field: field.into() });
            }
            list.push(escape(field, value)?);
        }
        if list.is_empty() {
            return Err(QueryError::Empty { field: field.into() });
        }
        Ok(self.push(format!("{field}IN{}", list.join(","))))
    }

    /// `self^NQother`: records matching either (`^NQ` starts a new query, OR-ed with this one).
    pub fn or_else(mut self, other: Query) -> Query {
        if !other.text.is_empty() {
            self.text.push_str("^NQ");
            self.text.push_str(&other.text);
        }
        self
    }

    /// `fieldSTARTSWITHvalue`.
    pub fn starts_with(self, field: &str, value: &str) -> Result<Query, QueryError> {
        self.term(field, "STARTSWITH", value)
    }

    /// `fieldISNOTEMPTY`.
    pub fn not_empty(self, field: &str) -> Result<Query, QueryError> {
        Ok(self.push(format!("{}ISNOTEMPTY", checked_field(field)?)))
    }

    /// `ORDERBYfield`.
    pub fn order_by(self, field: &str) -> Result<Query, QueryError> {
        Ok(self.push(format!("ORDERBY{}", checked_field(field)?)))
    }

    /// `ORDERBYDESCfield`.
    pub fn order_by_desc(self, field: &str) -> Result<Query, QueryError> {
        Ok(self.push(format!("ORDERBYDESC{}", checked_field(field)?)))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn term(self, field: &str, op: &str, value: &str) -> Result<Query, QueryError> {
        let field = checked_field(field)?;
        let value = escape(field, value)?;
        Ok(self.push(format!("{field}{op}{value}")))
    }

    fn push(mut self, term: String) -> Query {
        if !self.text.is_empty() {
            self.text.push('^');
        }
        self.text.push_str(&term);
        self
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value as an encoded query carries it: `^` doubled; refused when it cannot be carried.
pub fn escape(field: &str, value: &str) -> Result<String, QueryError> {
    if value.is_empty() {
        return Err(QueryError::Empty { field: field.into() });
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(QueryError::Control { field: field.into(), code: c as u32 });
    }
    Ok(value.replace('^', "^^"))
}

/// A field name, dot-walked or not (`company.u_sf_external_id`).
fn checked_field(field: &str) -> Result<&str, QueryError> {
    if field.split('.').all(is_name) {
        Ok(field)
    } else {
        Err(QueryError::Field(field.into()))
    }
}

/// A table name, before it goes into a URL path.
pub fn checked_table(table: &str) -> Result<&str, QueryError> {
    if is_name(table) {
        Ok(table)
    } else {
        Err(QueryError::Table(table.into()))
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_in_list_escapes_each_value_and_refuses_a_comma() {
        assert_eq!(Query::new().one_of("sys_id", &["a1", "b^2"]).unwrap().as_str(), "sys_idINa1,b^^2");
        assert!(matches!(Query::new().one_of("sys_id", &["a,b"]), Err(QueryError::Comma { .. })));
        assert!(matches!(Query::new().one_of("sys_id", &[]), Err(QueryError::Empty { .. })));
    }

    #[test]
    fn a_caret_in_a_value_adds_no_term() {
        let q = Query::new().eq("u_sf_external_id", "X^NQsys_idISNOTEMPTY").unwrap();
        assert_eq!(q.as_str(), "u_sf_external_id=X^^NQsys_idISNOTEMPTY");
        let parsed = seam_sim::servicenow::query::parse(q.as_str()).unwrap();
        assert_eq!(parsed.groups.len(), 1, "one query group, not two");
        assert_eq!(parsed.groups[0][0][0].value, "X^NQsys_idISNOTEMPTY");
    }

    #[test]
    fn values_and_names_it_cannot_carry_are_refused() {
        assert_eq!(Query::new().eq("u_key", ""), Err(QueryError::Empty { field: "u_key".into() }));
        assert!(matches!(Query::new().eq("u_key", "a\nb"), Err(QueryError::Control { .. })));
        assert!(matches!(Query::new().eq("u_key=1^sys_id", "x"), Err(QueryError::Field(_))));
        assert!(matches!(Query::new().order_by("Number"), Err(QueryError::Field(_))));
        assert!(checked_table("../sys_user").is_err());
        assert_eq!(
            Query::new().eq("company.u_sf_external_id", "A").unwrap().order_by("sys_updated_on").unwrap().as_str(),
            "company.u_sf_external_id=A^ORDERBYsys_updated_on"
        );
    }

    proptest! {
        /// Whatever the value, the emulator's parser (which reads `^^` as ServiceNow does) gets back
        /// exactly one condition holding exactly that value.
        #[test]
        fn any_value_round_trips_as_one_condition(value in "[^\\p{Cc}]{1,40}") {
            let q = Query::new().eq("u_key", &value).unwrap().not_empty("sys_id").unwrap();
            let parsed = seam_sim::servicenow::query::parse(q.as_str()).unwrap();
            prop_assert_eq!(parsed.groups.len(), 1);
            prop_assert_eq!(parsed.groups[0].len(), 2);
            prop_assert_eq!(&parsed.groups[0][0][0].value, &value);
        }
    }
}
