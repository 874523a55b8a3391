//! Salesforce record ids: a 3-character key prefix naming the object, 12
//! more characters, and a 3-character suffix that encodes which of the first
//! 15 are upper case (so the 18-character form survives case-insensitive systems).

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The `n`th id for a key prefix, in 18-character form.
pub fn make(prefix: &str, n: u64) -> String {
    let mut digits = Vec::new();
    let mut v = n;
    while v > 0 || digits.is_empty() {
        digits.push(BASE62[(v % 62) as usize]);
        v /= 62;
    }
    while digits.len() < 6 {
        digits.push(b'0');
    }
    digits.reverse();
    let id15 = format!("{prefix}5g0000{}", String::from_utf8(digits).unwrap());
    to18(&id15).expect("a generated id is well formed")
}

fn suffix(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits =
                chunk.iter().enumerate().fold(0usize, |acc, (i, c)| acc | (usize::from(c.is_ascii_uppercase()) << i));
            SUFFIX[bits] as char
        })
        .collect()
}

fn to18(id15: &str) -> Option<String> {
    (id15.len() == 15 && id15.bytes().all(|c| c.is_ascii_alphanumeric())).then(|| format!("{id15}{}", suffix(id15)))
}

/// The canonical 18-character form of a 15- or 18-character id, if well formed.
pub fn normalize(id: &str) -> Option<String> {
    match id.len() {
        15 => to18(id),
        18 => {
            let full = to18(&id[..15])?;
            full.eq_ignore_ascii_case(id).then_some(full)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_get_their_known_suffix() {
        // Ids as Salesforce itself prints them.
        assert_eq!(normalize("001D000000IqhSL").unwrap(), "001D000000IqhSLIAZ");
        assert_eq!(normalize("5005000000AbCdE").unwrap(), "5005000000AbCdEAAV");
        assert_eq!(normalize("001D000000IqhSLIAZ").unwrap(), "001D000000IqhSLIAZ");
        assert!(normalize("001D000000IqhSLXXX").is_none());
        assert!(normalize("short").is_none());
    }

    #[test]
    fn generated_ids_are_distinct_and_valid() {
        let a = make("500", 1);
        let b = make("500", 2);
        assert_ne!(a, b);
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("500"));
        assert_eq!(normalize(&a).unwrap(), a);
        assert_eq!(normalize(&a[..15]).unwrap(), a);
    }
}
