//! ServiceNow encoded queries: `a=1^b!=2^ORc=3^NQd>4^ORDERBYe^ORDERBYDESCf`.
//!
//! `^` is AND, `^OR` is OR with the condition before it, `^NQ` starts a new
//! query OR-ed with the previous ones. Operators follow the field name
//! directly: `=`, `!=`, `>`, `>=`, `<`, `<=`, `LIKE`, `NOTLIKE`, `STARTSWITH`,
//! `ENDSWITH`, `IN`, `NOT IN`, `ISEMPTY`, `ISNOTEMPTY`. A numeric column's
//! values compare as numbers (when both sides are numbers), any other as
//! text: a sys_id of digits alone still sorts among the others. A value's own `^`
//! is written `^^`.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    NotLike,
    StartsWith,
    EndsWith,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
}

/// OR of groups; each group an AND of clauses; each clause an OR of conditions.
#[derive(Debug, Clone, Default)]
pub struct EncodedQuery {
    pub groups: Vec<Vec<Vec<Condition>>>,
    pub order: Vec<(String, bool)>,
}

// Longest first, so `!=` wins over `=` and `NOT IN` over `IN`.
const OPS: &[(&str, Op)] = &[
    ("ISNOTEMPTY", Op::IsNotEmpty),
    ("ISEMPTY", Op::IsEmpty),
    ("STARTSWITH", Op::StartsWith),
    ("ENDSWITH", Op::EndsWith),
    ("NOTLIKE", Op::NotLike),
    ("NOT IN", Op::NotIn),
    ("LIKE", Op::Like),
    ("!=", Op::Ne),
    (">=", Op::Ge),
    ("<=", Op::Le),
    ("IN", Op::In),
    ("=", Op::Eq),
    (">", Op::Gt),
    ("<", Op::Lt),
];

fn condition(text: &str) -> Result<Condition, String> {
    // The field name is lower-case letters, digits, `_` and `.`; the operator starts right after it.
    let end = text
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let (field, rest) = text.split_at(end);
    if field.is_empty() {
        return Err(format!("no field name in condition {text:?}"));
    }
    let (op_text, op) = OPS
        .iter()
        .find(|(t, _)| rest.starts_with(t))
        .ok_or_else(|| format!("unknown operator in condition {text:?}"))?;
    Ok(Condition { field: field.to_string(), op: *op, value: rest[op_text.len()..].to_string() })
}

/// The terms between single `^`s; `^^` is a `^` inside a term (ServiceNow's
/// `escapeQueryTermSeparator`), read left to right.
fn terms(q: &str) -> Vec<String> {
    let mut terms = vec![String::new()];
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '^' if chars.peek() == Some(&'^') => {
                chars.next();
                terms.last_mut().unwrap().push('^');
            }
            '^' => terms.push(String::new()),
            c => terms.last_mut().unwrap().push(c),
        }
    }
    terms
}

pub fn parse(q: &str) -> Result<EncodedQuery, String> {
    let mut query = EncodedQuery::default();
    // `NQ` opening a term starts a new group.
    let mut groups: Vec<Vec<String>> = vec![Vec::new()];
    for term in terms(q) {
        match term.strip_prefix("NQ") {
            Some(rest) => groups.push(vec![rest.to_string()]),
            None => groups.last_mut().unwrap().push(term),
        }
    }
    for group_terms in groups {
        let mut group: Vec<Vec<Condition>> = Vec::new();
        for part in group_terms.iter().filter(|p| !p.is_empty()) {
            if let Some(field) = part.strip_prefix("ORDERBYDESC") {
                query.order.push((field.to_string(), true));
            } else if let Some(field) = part.strip_prefix("ORDERBY") {
                query.order.push((field.to_string(), false));
            } else if let Some(cond) = part.strip_prefix("OR").filter(|_| !group.is_empty()) {
                group.last_mut().unwrap().push(condition(cond)?);
            } else {
                group.push(vec![condition(part)?]);
            }
        }
        if !group.is_empty() {
            query.groups.push(group);
        }
    }
    Ok(query)
}

fn cmp(a: &str, b: &str, numeric: bool) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if numeric => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.cmp(b),
    }
}

impl Condition {
    /// `value` is the record's value for the field ("" when empty); `numeric`: whether its column holds numbers.
    pub fn holds(&self, value: &str, numeric: bool) -> bool {
        let cmp = |a: &str, b: &str| cmp(a, b, numeric);
        let (v, lv, want) = (value, value.to_lowercase(), self.value.to_lowercase());
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Gt => !v.is_empty() && cmp(v, &self.value) == Ordering::Greater,
            Op::Ge => !v.is_empty() && cmp(v, &self.value) != Ordering::Less,
            Op::Lt => !v.is_empty() && cmp(v, &self.value) == Ordering::Less,
            Op::Le => !v.is_empty() && cmp(v, &self.value) != Ordering::Greater,
            Op::Like => lv.contains(&want),
            Op::NotLike => !lv.contains(&want),
            Op::StartsWith => lv.starts_with(&want),
            Op::EndsWith => lv.ends_with(&want),
            Op::In => self.value.split(',').any(|x| x == v),
            Op::NotIn => !self.value.split(',').any(|x| x == v),
            Op::IsEmpty => v.is_empty(),
            Op::IsNotEmpty => !v.is_empty(),
        }
    }
}

impl EncodedQuery {
    /// `numeric`: whether a field's column holds numbers.
    pub fn matches(&self, value_of: impl Fn(&str) -> String, numeric: impl Fn(&str) -> bool) -> bool {
        self.groups.is_empty()
            || self.groups.iter().any(|group| {
                group.iter().all(|clause| clause.iter().any(|c| c.holds(&value_of(&c.field), numeric(&c.field))))
            })
    }

    pub fn compare(
        &self,
        a: impl Fn(&str) -> String,
        b: impl Fn(&str) -> String,
        numeric: impl Fn(&str) -> bool,
    ) -> Ordering {
        for (field, desc) in &self.order {
            let o = cmp(&a(field), &b(field), numeric(field));
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn rec(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn holds(q: &str, r: &HashMap<String, String>) -> bool {
        parse(q).unwrap().matches(|f| r.get(f).cloned().unwrap_or_default(), |_| true)
    }

    #[test]
    fn and_or_nq_and_operators() {
        let r = rec(&[("state", "2"), ("priority", "1"), ("short_description", "Checkout FAILS"), ("assigned_to", "")]);
        assert!(holds("state=2^priority=1", &r));
        assert!(!holds("state=1^priority=1", &r));
        assert!(holds("state=1^ORstate=2", &r));
        assert!(holds("state=1^NQpriority<=2", &r));
        assert!(holds("short_descriptionLIKEcheckout", &r));
        assert!(holds("short_descriptionSTARTSWITHcheck^short_descriptionNOTLIKEworks", &r));
        assert!(holds("stateIN1,2,3", &r));
        assert!(holds("stateNOT IN1,3", &r));
        assert!(holds("assigned_toISEMPTY^short_descriptionISNOTEMPTY", &r));
        assert!(holds("state!=6", &r));
        assert!(holds("priority<10", &r), "numeric, not text, comparison");
        assert!(holds("", &r));
    }

    #[test]
    fn a_doubled_caret_is_a_caret_in_the_value() {
        let r = rec(&[("u_key", "X^NQsys_idISNOTEMPTY"), ("sys_id", "1")]);
        assert!(holds("u_key=X^^NQsys_idISNOTEMPTY", &r));
        assert!(
            !holds("u_key=X^^NQsys_idISNOTEMPTY", &rec(&[("u_key", "Y"), ("sys_id", "1")])),
            "no second query group"
        );
        assert!(holds("u_key=a^^^sys_id=1", &rec(&[("u_key", "a^"), ("sys_id", "1")])), "`^^` then a separator");
    }

    #[test]
    fn order_by_and_errors() {
        let q = parse("active=true^ORDERBYDESCsys_updated_on^ORDERBYnumber").unwrap();
        assert_eq!(q.order, vec![("sys_updated_on".to_string(), true), ("number".to_string(), false)]);
        assert!(parse("=x").is_err());
        assert!(parse("state~2").is_err());
    }
}
