//! Pieces of SOQL that come from data: string literals, escaped by
//! Salesforce's rules (SOQL guide, "Quoted String Escape Sequences"), and
//! object and field names, checked before they reach a query or a URL.
//!
//! In a literal, `'` and `\` must be escaped; `"`, newline, carriage return,
//! tab, backspace and form feed have escapes of their own, and `_` and `%`
//! are escaped only in a `LIKE` pattern, where they are wildcards. Any other
//! backslash is an error to Salesforce, so none is ever written.

/// A name that could not be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is not a Salesforce object or field name (a letter, then letters, digits and _, as in Case or External_Id__c)")]
    Name(String),
    #[error("{0:?} is not a Salesforce record id (15 or 18 letters and digits)")]
    Id(String),
}

/// `value` as a quoted SOQL string literal: `O'Brien` → `'O\'Brien'`.
pub fn literal(value: &str) -> String {
    quote(value, false)
}

/// `value` as a quoted literal for `LIKE`, matched as written: `100%` → `'100\%'`.
/// Add wildcards around the result's contents yourself (`like_literal` never does).
pub fn like_literal(value: &str) -> String {
    quote(value, true)
}

fn quote(value: &str, like: bool) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '_' if like => out.push_str("\\_"),
            '%' if like => out.push_str("\\%"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// An object or field name, checked: `^[A-Za-z][A-Za-z0-9_]*$` (custom names end `__c`, relationships `__r`).
pub fn name(name: &str) -> Result<&str, NameError> {
    let mut chars = name.chars();
    let ok =
        chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(NameError::Name(name.into()))
    }
}

/// A record id, checked before it goes into a URL path or a query: 15 or 18 letters and digits.
pub fn id(id: &str) -> Result<&str, NameError> {
    if matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(NameError::Id(id.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Salesforce's reading of a literal: the inverse of `quote`, refusing what Salesforce refuses.
    fn unquote(text: &str, like: bool) -> Option<String> {
        let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(match chars.next()? {
                    '\'' => '\'',
                    '"' => '"',
                    '\\' => '\\',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    '_' if like => '_',
                    '%' if like => '%',
                    'u' => char::from_u32(u32::from_str_radix(&chars.by_ref().take(4).collect::<String>(), 16).ok()?)?,
                    _ => return None,
                }),
                // An unescaped quote would end the literal early.
                '\'' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    #[test]
    fn salesforces_escapes() {
        assert_eq!(literal("O'Brien"), r"'O\'Brien'");
        assert_eq!(literal(r"a\' OR Name != '"), r"'a\\\' OR Name != \''");
        assert_eq!(literal("two\nlines\t\"q\""), r#"'two\nlines\t\"q\"'"#);
        assert_eq!(like_literal("100%_off"), r"'100\%\_off'");
        assert_eq!(literal("100%_off"), "'100%_off'", "wildcards are plain outside LIKE");
    }

    #[test]
    fn names_and_ids() {
        assert_eq!(name("External_Id__c"), Ok("External_Id__c"));
        for bad in ["", "1Case", "Case WHERE", "Name'--", "../Account", "Case.Id"] {
            assert!(name(bad).is_err(), "{bad}");
        }
        assert!(id("500000000000001AAA").is_ok() && id("500000000000001").is_ok());
        for bad in ["", "500000000000001AA", "../Account/001000000000001", "500000000000001AA%"] {
            assert!(id(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Any text at all comes back whole, and never ends the literal early.
        #[test]
        fn any_text_round_trips(value in any::<String>(), like in any::<bool>()) {
            let quoted = quote(&value, like);
            prop_assert_eq!(unquote(&quoted, like), Some(value));
        }
    }
}
