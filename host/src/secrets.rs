//! Secrets in the configuration: passwords, client secrets, private keys,
//! tokens, the intake's shared keys.
//!
//! Each one is written in `seam.json` as the value itself, or as where to
//! read it: `{"env": "NAME"}` (an environment variable) or `{"file": "path"}`
//! (a file, trailing newline dropped). `seam init` writes references, so the
//! file can be shared and checked in without the secrets.
//!
//! Read values are [`SecretString`]s: their `Debug` prints a placeholder, so
//! a secret never reaches a log line or an error through formatting. A file
//! that other users can read is named in a warning.

use anyhow::{bail, Context, Result};
pub use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// A new secret for seam to make (intake tokens, HMAC keys, admin tokens): 32 random bytes, in hex.
pub fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A secret as the configuration gives it.
#[derive(Clone)]
pub enum Secret {
    /// The value, written in the configuration itself.
    Value(SecretString),
    /// An environment variable holding it.
    Env(String),
    /// A file holding it.
    File(PathBuf),
}

impl Secret {
    pub fn env(name: impl Into<String>) -> Self {
        Secret::Env(name.into())
    }

    pub fn file(path: impl Into<PathBuf>) -> Self {
        Secret::File(path.into())
    }

    pub fn value(value: impl Into<String>) -> Self {
        Secret::Value(SecretString::from(value.into()))
    }

    /// Read the secret. `what` names it in errors and warnings, as the
    /// configuration does (`tenants.acme.salesforce.auth.client_secret`).
    pub fn resolve(&self, what: &str) -> Result<SecretString> {
        let value = match self {
            Secret::Value(v) => return Ok(v.clone()),
            Secret::Env(name) => match std::env::var(name) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => bail!(
                    "{what} is read from the environment variable {name}, which is not set: export it, or name another"
                ),
                Err(std::env::VarError::NotUnicode(_)) => {
                    bail!("{what}: the environment variable {name} is not valid UTF-8")
                }
            },
            Secret::File(path) => {
                warn_if_shared(path, what);
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{what} is read from {}, which cannot be read", path.display()))?;
                text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_string()
            }
        };
        if value.is_empty() {
            bail!("{what} is empty ({}); put the secret there", self.describe());
        }
        Ok(SecretString::from(value))
    }

    /// Where the secret comes from, never the secret: `env SF_SECRET`, `file /etc/seam/key`, `a value in the configuration`.
    pub fn describe(&self) -> String {
        match self {
            Secret::Value(_) => "a value in the configuration".into(),
            Secret::Env(name) => format!("the environment variable {name}"),
            Secret::File(path) => format!("the file {}", path.display()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::Env(name) => write!(f, "Secret(env {name})"),
            Secret::File(path) => write!(f, "Secret(file {})", path.display()),
        }
    }
}

/// Warn, once per file, when a secret file can be read by users other than its owner.
fn warn_if_shared(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        let Ok(meta) = std::fs::metadata(path) else { return };
        let mode = meta.permissions().mode();
        if mode & 0o077 == 0 {
            return;
        }
        let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
        if warned.iter().any(|p| p == path) {
            return;
        }
        warned.push(path.to_path_buf());
        tracing::warn!(
            "{what} is read from {}, which other users can read (mode {:o}): chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    #[cfg(not(unix))]
    let _ = (path, what);
}

/// Write `secret` to `path` readable by its owner only (0600 on Unix), for
/// `seam init` and the emulators' configuration.
pub fn write_secret_file(path: &Path, secret: &str) -> Result<()> {
    crate::files::write_private(path, secret.as_bytes())
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            // Written back only where the configuration already held it.
            Secret::Value(v) => serializer.serialize_str(v.expose_secret()),
            Secret::Env(name) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("env", name)?;
                map.end()
            }
            Secret::File(path) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("file", path)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct SecretVisitor;
        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a secret: the value as a string, {"env": "VARIABLE"} or {"file": "path"}"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Secret, E> {
                Ok(Secret::value(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Secret, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        r#"an empty object is not a secret; write {"env": "VARIABLE"} or {"file": "path"}"#,
                    ));
                };
                let secret = match key.as_str() {
                    "env" => Secret::Env(map.next_value()?),
                    "file" => Secret::File(map.next_value()?),
                    other => {
                        return Err(de::Error::custom(format!(
                            r#"unknown secret source {other:?}; write {{"env": "VARIABLE"}} or {{"file": "path"}}"#
                        )))
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        r#"a secret names one source, env or file; {extra:?} is one too many"#
                    )));
                }
                Ok(secret)
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A secret: the value itself, {\"env\": \"VARIABLE\"} or {\"file\": \"path\"}.",
            "oneOf": [
                { "type": "string" },
                { "type": "object", "properties": { "env": { "type": "string" } }, "required": ["env"], "additionalProperties": false },
                { "type": "object", "properties": { "file": { "type": "string" } }, "required": ["file"], "additionalProperties": false }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_reads_back_and_debug_never_shows_a_value() {
        let parsed: Vec<Secret> =
            serde_json::from_str(r#"["hunter2", {"env": "SEAM_TEST_SECRET_A"}, {"file": "/nonexistent/seam-secret"}]"#)
                .unwrap();
        assert!(matches!(&parsed[0], Secret::Value(v) if v.expose_secret() == "hunter2"));
        assert!(matches!(&parsed[1], Secret::Env(n) if n == "SEAM_TEST_SECRET_A"));
        assert!(matches!(&parsed[2], Secret::File(p) if p == Path::new("/nonexistent/seam-secret")));
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            r#"["hunter2",{"env":"SEAM_TEST_SECRET_A"},{"file":"/nonexistent/seam-secret"}]"#
        );
        let resolved = parsed[0].resolve("x").unwrap();
        assert!(!format!("{resolved:?}").contains("hunter2"));
    }

    #[test]
    fn a_bad_reference_says_what_to_write() {
        for (text, expect) in [
            (r#"{}"#, "empty object"),
            (r#"{"vault": "x"}"#, "unknown secret source \"vault\""),
            (r#"{"env": "A", "file": "b"}"#, "one too many"),
            (r#"42"#, r#"{"env": "VARIABLE"}"#),
        ] {
            let err = serde_json::from_str::<Secret>(text).unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn a_missing_variable_or_file_is_named_with_the_fix() {
        let err = Secret::env("SEAM_TEST_SURELY_UNSET_VARIABLE")
            .resolve("tenants.t.servicenow.auth.password")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tenants.t.servicenow.auth.password")
                && err.contains("SEAM_TEST_SURELY_UNSET_VARIABLE")
                && err.contains("export"),
            "{err}"
        );
        let err = format!("{:#}", Secret::file("/nonexistent/seam-secret").resolve("intake key").unwrap_err());
        assert!(err.contains("/nonexistent/seam-secret") && err.contains("intake key"), "{err}");
    }

    #[test]
    fn a_secret_file_is_written_private_and_read_without_its_newline() {
        let dir = std::env::temp_dir().join(format!("seam-secrets-{}", std::process::id()));
        let path = dir.join("s");
        write_secret_file(&path, "s3cret\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(Secret::file(&path).resolve("s").unwrap().expose_secret(), "s3cret");
        write_secret_file(&path, "\n").unwrap();
        assert!(Secret::file(&path).resolve("s").unwrap_err().to_string().contains("is empty"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
