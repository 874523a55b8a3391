//! The SOQL subset the emulator answers:
//! `SELECT f, Parent.f | COUNT() FROM Object [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]`
//! with `=, !=, <>, <, <=, >, >=, LIKE, IN (...), NOT IN (...)`, `AND`, `OR`,
//! `NOT` and parentheses. String comparisons are case-insensitive, as in Salesforce.

use super::schema::{self, ObjectDef, SfError};
use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
    DateTime(chrono::DateTime<chrono::Utc>),
}

#[derive(Debug, Clone)]
pub enum Cond {
    Cmp { field: String, op: Op, value: Literal },
    In { field: String, values: Vec<Literal>, negated: bool },
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub field: String,
    pub descending: bool,
    pub nulls_last: bool,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub object: &'static ObjectDef,
    /// Empty for `COUNT()`.
    pub fields: Vec<String>,
    pub count: bool,
    pub filter: Option<Cond>,
    pub order: Vec<Order>,
    pub limit: Option<usize>,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

fn malformed(msg: impl Into<String>) -> SfError {
    SfError::new("MALFORMED_QUERY", msg.into())
}

fn tokenize(q: &str) -> Result<Vec<Tok>, SfError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(malformed("unterminated string literal")),
                    Some('\\') => {
                        let esc = chars.get(i + 1).ok_or_else(|| malformed("unterminated escape"))?;
                        s.push(match esc {
                            'n' => '\n',
                            't' => '\t',
                            other => *other,
                        });
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | ':' | '-' | '+')) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            match word.parse::<f64>() {
                Ok(n) if !word.contains('T') => out.push(Tok::Num(n)),
                _ => out.push(Tok::Word(word)), // a datetime or date literal
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("!="),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(sym) = sym {
                out.push(Tok::Sym(sym));
                i += 2;
                continue;
            }
            out.push(Tok::Sym(match c {
                '=' => "=",
                '<' => "<",
                '>' => ">",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                other => return Err(malformed(format!("unexpected character '{other}'"))),
            }));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_keyword(&mut self, kw: &str) -> Result<(), SfError> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(malformed(format!("expecting '{kw}', found '{}'", self.describe())))
        }
    }
    fn sym(&mut self, s: &str) -> bool {
        if self.peek()
            == Some(&Tok::Sym(match s {
                "(" => "(",
                ")" => ")",
                "," => ",",
                _ => return false,
            }))
        {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn describe(&self) -> String {
        match self.peek() {
            None => "end of query".into(),
            Some(Tok::Word(w)) => w.clone(),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Num(n)) => n.to_string(),
            Some(Tok::Sym(s)) => s.to_string(),
        }
    }
    fn word(&mut self) -> Result<String, SfError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            _ => {
                self.pos -= 1;
                Err(malformed(format!("unexpected token: '{}'", self.describe())))
            }
        }
    }
    fn literal(&mut self) -> Result<Literal, SfError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Text(s)),
            Some(Tok::Num(n)) => Ok(Literal::Number(n)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(Literal::Null),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            Some(Tok::Word(w)) => {
                if let Some(t) = schema::parse_datetime(&w) {
                    Ok(Literal::DateTime(t))
                } else if chrono::NaiveDate::parse_from_str(&w, "%Y-%m-%d").is_ok() {
                    Ok(Literal::Text(w))
                } else {
                    Err(malformed(format!("unexpected token: '{w}'")))
                }
            }
            _ => {
                self.pos -= 1;
                Err(malformed(format!("expecting a value, found '{}'", self.describe())))
            }
        }
    }
    fn cond(&mut self) -> Result<Cond, SfError> {
        let mut left = self.conj()?;
        while self.keyword("OR") {
            left = Cond::Or(Box::new(left), Box::new(self.conj()?));
        }
        Ok(left)
    }
    fn conj(&mut self) -> Result<Cond, SfError> {
        let mut left = self.unary()?;
        while self.keyword("AND") {
            left = Cond::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Cond, SfError> {
        if self.keyword("NOT") {
            return Ok(Cond::Not(Box::new(self.unary()?)));
        }
        if self.sym("(") {
            let c = self.cond()?;
            if !self.sym(")") {
                return Err(malformed(format!("expecting ')', found '{}'", self.describe())));
            }
            return Ok(c);
        }
        let field = self.word()?;
        let negated_in = self.keyword("NOT");
        if self.keyword("IN") {
            if !self.sym("(") {
                return Err(malformed("expecting '(' after IN"));
            }
            let mut values = vec![self.literal()?];
            while self.sym(",") {
                values.push(self.literal()?);
            }
            if !self.sym(")") {
                return Err(malformed("expecting ')' to close IN"));
            }
            return Ok(Cond::In { field, values, negated: negated_in });
        }
        if negated_in {
            return Err(malformed("expecting IN after NOT"));
        }
        let op = if self.keyword("LIKE") {
            Op::Like
        } else {
            match self.next() {
                Some(Tok::Sym("=")) => Op::Eq,
                Some(Tok::Sym("!=")) => Op::Ne,
                Some(Tok::Sym("<")) => Op::Lt,
                Some(Tok::Sym("<=")) => Op::Le,
                Some(Tok::Sym(">")) => Op::Gt,
                Some(Tok::Sym(">=")) => Op::Ge,
                _ => {
                    self.pos -= 1;
                    return Err(malformed(format!("expecting an operator after {field}, found '{}'", self.describe())));
                }
            }
        };
        Ok(Cond::Cmp { field, op, value: self.literal()? })
    }
}

/// Child-to-parent relationships a field path may walk (`Entitlement.ServiceContract.Account.Name`),
/// as Salesforce allows in SOQL.
const MAX_RELATIONSHIP_DEPTH: usize = 5;

/// Check that `path` (`Subject`, `Account.Name`, `Entitlement.ServiceContract.Name`) exists on
/// `obj`; return it in canonical case.
pub fn resolve_field(obj: &ObjectDef, path: &str) -> Result<String, SfError> {
    if path.matches('.').count() > MAX_RELATIONSHIP_DEPTH {
        return Err(SfError::new(
            "MALFORMED_QUERY",
            format!("{path}: SOQL statements cannot query more than {MAX_RELATIONSHIP_DEPTH} levels of relationships"),
        ));
    }
    resolve_path(obj, path).ok_or_else(|| {
        SfError::new("INVALID_FIELD", format!("No such column '{path}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.", obj.name))
    })
}

fn resolve_path(obj: &ObjectDef, path: &str) -> Option<String> {
    match path.split_once('.') {
        None => obj.field(path).map(|f| f.name.to_string()),
        Some((rel, rest)) => {
            let reference = obj.relationship(rel)?;
            let schema::FieldType::Reference(targets) = &reference.ty else { return None };
            let inner = resolve_path(schema::object(targets[0])?, rest)?;
            let rel_name = reference
                .name
                .strip_suffix("Id")
                .map(str::to_string)
                .unwrap_or_else(|| reference.name.replace("__c", "__r"));
            Some(format!("{rel_name}.{inner}"))
        }
    }
}

pub fn parse(q: &str) -> Result<Query, SfError> {
    let mut p = Parser { toks: tokenize(q)?, pos: 0 };
    p.expect_keyword("SELECT")?;
    let mut raw_fields = Vec::new();
    let mut count = false;
    let mut all_fields = false;
    loop {
        let w = p.word()?;
        if w.eq_ignore_ascii_case("COUNT") && p.sym("(") {
            if !p.sym(")") {
                return Err(malformed("only COUNT() is supported"));
            }
            count = true;
        } else if w.eq_ignore_ascii_case("FIELDS") && p.sym("(") {
            let which = p.word()?;
            if !which.eq_ignore_ascii_case("ALL") || !p.sym(")") {
                return Err(malformed("only FIELDS(ALL) is supported"));
            }
            all_fields = true;
        } else {
            raw_fields.push(w);
        }
        if !p.sym(",") {
            break;
        }
    }
    p.expect_keyword("FROM")?;
    let name = p.word()?;
    let object = schema::object(&name).ok_or_else(|| SfError::new("INVALID_TYPE", format!("sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name.")))?;
    let mut fields = raw_fields.iter().map(|f| resolve_field(object, f)).collect::<Result<Vec<_>, _>>()?;
    if all_fields {
        for f in &object.fields {
            if !fields.iter().any(|x| x == f.name) {
                fields.push(f.name.to_string());
            }
        }
    }
    let filter = if p.keyword("WHERE") { Some(p.cond()?) } else { None };
    let mut order = Vec::new();
    if p.keyword("ORDER") {
        p.expect_keyword("BY")?;
        loop {
            let field = resolve_field(object, &p.word()?)?;
            let descending = if p.keyword("DESC") {
                true
            } else {
                p.keyword("ASC");
                false
            };
            let mut nulls_last = descending;
            if p.keyword("NULLS") {
                nulls_last = if p.keyword("LAST") {
                    true
                } else {
                    p.expect_keyword("FIRST")?;
                    false
                };
            }
            order.push(Order { field, descending, nulls_last });
            if !p.sym(",") {
                break;
            }
        }
    }
    let mut limit = None;
    let mut offset = 0;
    loop {
        if p.keyword("LIMIT") {
            limit = Some(match p.next() {
                Some(Tok::Num(n)) if n >= 0.0 => n as usize,
                _ => return Err(malformed("LIMIT needs a non-negative integer")),
            });
        } else if p.keyword("OFFSET") {
            offset = match p.next() {
                Some(Tok::Num(n)) if n >= 0.0 => n as usize,
                _ => return Err(malformed("OFFSET needs a non-negative integer")),
            };
        } else {
            break;
        }
    }
    if p.peek().is_some() {
        return Err(malformed(format!("unexpected token: '{}'", p.describe())));
    }
    if let Some(cond) = &filter {
        check_fields(object, cond)?;
    }
    if fields.is_empty() && !count {
        return Err(malformed("SELECT needs at least one field"));
    }
    // As in Salesforce: FIELDS(ALL) reads at most 200 rows at a time.
    if all_fields && limit.is_none_or(|l| l > 200) {
        return Err(malformed("The SOQL FIELDS function must have a LIMIT of at most 200"));
    }
    Ok(Query { object, fields, count, filter, order, limit, offset })
}

impl Query {
    /// Every field the query reads: selected, filtered on, ordered by.
    pub fn fields_read(&self) -> Vec<&str> {
        fn walk<'a>(cond: &'a Cond, out: &mut Vec<&'a str>) {
            match cond {
                Cond::Cmp { field, .. } | Cond::In { field, .. } => out.push(field),
                Cond::And(a, b) | Cond::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Cond::Not(c) => walk(c, out),
            }
        }
        let mut out: Vec<&str> =
            self.fields.iter().chain(self.order.iter().map(|o| &o.field)).map(String::as_str).collect();
        if let Some(cond) = &self.filter {
            walk(cond, &mut out);
        }
        out
    }
}

fn check_fields(obj: &ObjectDef, cond: &Cond) -> Result<(), SfError> {
    match cond {
        Cond::Cmp { field, .. } | Cond::In { field, .. } => resolve_field(obj, field).map(|_| ()),
        Cond::And(a, b) | Cond::Or(a, b) => check_fields(obj, a).and(check_fields(obj, b)),
        Cond::Not(c) => check_fields(obj, c),
    }
}

/// Read a (possibly dotted) field of a record; `parent` resolves a reference id to its record.
pub fn value_of<'a>(record: &'a serde_json::Map<String, Value>, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        None => record.iter().find(|(k, _)| k.eq_ignore_ascii_case(path)).map(|(_, v)| v),
        Some((rel, rest)) => match record.iter().find(|(k, _)| k.eq_ignore_ascii_case(rel)).map(|(_, v)| v) {
            Some(Value::Object(parent)) => value_of(parent, rest),
            _ => None,
        },
    }
}

fn compare(value: Option<&Value>, lit: &Literal) -> Option<Ordering> {
    let value = value.filter(|v| !v.is_null());
    match (value, lit) {
        (None, Literal::Null) => Some(Ordering::Equal),
        (None, _) | (Some(_), Literal::Null) => None,
        (Some(Value::Number(n)), Literal::Number(m)) => n.as_f64()?.partial_cmp(m),
        (Some(Value::Bool(b)), Literal::Bool(c)) => Some(b.cmp(c)),
        (Some(Value::String(s)), Literal::DateTime(t)) => schema::parse_datetime(s).map(|v| v.cmp(t)),
        (Some(Value::String(s)), Literal::Text(t)) => Some(s.to_lowercase().cmp(&t.to_lowercase())),
        (Some(Value::String(s)), Literal::Number(m)) => s.parse::<f64>().ok()?.partial_cmp(m),
        _ => None,
    }
}

fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('%', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some(('_', rest)) => !v.is_empty() && go(&v[1..], rest),
            Some((c, rest)) => v.first().is_some_and(|x| x == c) && go(&v[1..], rest),
        }
    }
    let v: Vec<char> = value.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    go(&v, &p)
}

pub fn matches(cond: &Cond, record: &serde_json::Map<String, Value>) -> bool {
    match cond {
        Cond::And(a, b) => matches(a, record) && matches(b, record),
        Cond::Or(a, b) => matches(a, record) || matches(b, record),
        Cond::Not(c) => !matches(c, record),
        Cond::In { field, values, negated } => {
            let v = value_of(record, field);
            values.iter().any(|lit| compare(v, lit) == Some(Ordering::Equal)) != *negated
        }
        Cond::Cmp { field, op, value } => {
            let v = value_of(record, field);
            match op {
                Op::Like => match (v.and_then(Value::as_str), value) {
                    (Some(s), Literal::Text(p)) => like(s, p),
                    _ => false,
                },
                Op::Ne => compare(v, value) != Some(Ordering::Equal),
                _ => compare(v, value).is_some_and(|o| match op {
                    Op::Eq => o == Ordering::Equal,
                    Op::Lt => o == Ordering::Less,
                    Op::Le => o != Ordering::Greater,
                    Op::Gt => o == Ordering::Greater,
                    Op::Ge => o != Ordering::Less,
                    Op::Ne | Op::Like => unreachable!(),
                }),
            }
        }
    }
}

/// Order two records by the query's ORDER BY.
pub fn order(order: &[Order], a: &serde_json::Map<String, Value>, b: &serde_json::Map<String, Value>) -> Ordering {
    for o in order {
        let (x, y) = (value_of(a, &o.field).filter(|v| !v.is_null()), value_of(b, &o.field).filter(|v| !v.is_null()));
        let ord = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => {
                if o.nulls_last {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (Some(_), None) => {
                if o.nulls_last {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (Some(x), Some(y)) => {
                let base = match (x, y) {
                    (Value::Number(m), Value::Number(n)) => {
                        m.as_f64().partial_cmp(&n.as_f64()).unwrap_or(Ordering::Equal)
                    }
                    (Value::String(s), Value::String(t)) => s.to_lowercase().cmp(&t.to_lowercase()),
                    (Value::Bool(s), Value::Bool(t)) => s.cmp(t),
                    _ => Ordering::Equal,
                };
                if o.descending {
                    base.reverse()
                } else {
                    base
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn paths_walk_parents_up_to_five_relationships() {
        let case = schema::object("Case").unwrap();
        assert_eq!(
            resolve_field(case, "entitlement.servicecontract.account.name").unwrap(),
            "Entitlement.ServiceContract.Account.Name",
            "canonical case at every level"
        );
        assert_eq!(resolve_field(case, "Entitlement.Nope").unwrap_err().code, "INVALID_FIELD");
        assert_eq!(resolve_field(case, "Subject.Name").unwrap_err().code, "INVALID_FIELD", "not a reference");
        let six = "Account.Owner.Owner.Owner.Owner.Owner.Name";
        assert_eq!(resolve_field(case, six).unwrap_err().code, "MALFORMED_QUERY");
    }

    #[test]
    fn parses_the_usual_shapes() {
        let q = parse("SELECT Id, Subject, Account.Name FROM Case WHERE Status != 'Closed' AND (Priority = 'High' OR Priority IN ('Critical')) ORDER BY CreatedDate DESC LIMIT 10 OFFSET 5").unwrap();
        assert_eq!(q.object.name, "Case");
        assert_eq!(q.fields, vec!["Id", "Subject", "Account.Name"]);
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.offset, 5);
        assert!(q.order[0].descending);
        assert!(parse("select count() from account").unwrap().count);
        let all = parse("SELECT FIELDS(ALL) FROM Case ORDER BY SystemModstamp LIMIT 200").unwrap();
        assert!(all.fields.iter().any(|f| f == "Subject") && all.fields.iter().any(|f| f == "SystemModstamp"));
        assert_eq!(parse("SELECT FIELDS(ALL) FROM Case").unwrap_err().code, "MALFORMED_QUERY");
    }

    #[test]
    fn reports_errors_like_salesforce() {
        assert_eq!(parse("SELECT Nope FROM Case").unwrap_err().code, "INVALID_FIELD");
        assert_eq!(parse("SELECT Id FROM Nope").unwrap_err().code, "INVALID_TYPE");
        assert_eq!(parse("SELECT Id FROM Case WHERE").unwrap_err().code, "MALFORMED_QUERY");
        assert_eq!(parse("SELECT Id FROM Case WHERE Subject = 'x").unwrap_err().code, "MALFORMED_QUERY");
    }

    #[test]
    fn evaluates_case_insensitively_with_like_in_and_dates() {
        let r = rec(
            json!({"Subject": "Checkout FAILS", "Priority": "High", "AnnualRevenue": 5.0e7, "SystemModstamp": "2024-05-01T10:00:00.000+0000", "Account": {"Name": "Acme"}}),
        );
        let m = |w: &str| matches(&parse(&format!("SELECT Id FROM Case WHERE {w}")).unwrap().filter.unwrap(), &r);
        assert!(m("Subject = 'checkout fails'"));
        assert!(m("Subject LIKE '%fail%'"));
        assert!(!m("Subject LIKE 'fail%'"));
        assert!(m("Priority IN ('Low', 'high')"));
        assert!(m("Priority NOT IN ('Low')"));
        assert!(m("SystemModstamp > 2024-04-30T00:00:00Z"));
        assert!(!m("SystemModstamp > 2024-05-01T10:00:00Z"));
        assert!(m("Account.Name = 'ACME'"));
        assert!(m("NOT Subject = null"));
        assert!(m("Origin = null"));
    }
}
