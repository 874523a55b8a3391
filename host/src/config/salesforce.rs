//! `tenants.NAME.salesforce`: how seam reaches one Salesforce org, and the
//! mistakes its settings show before any login (see `connectors::salesforce::auth`).

use crate::secrets::Secret;
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// Production orgs' login host, and the JWT audience for them.
pub const LOGIN_URL: &str = "https://login.salesforce.com";
/// Sandboxes' login host, and the JWT audience for them.
pub const TEST_URL: &str = "https://test.salesforce.com";
/// How seam reaches one Salesforce org.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Where seam asks for tokens: the org's My Domain (`https://acme.my.salesforce.com`),
    /// or `https://login.salesforce.com` (`https://test.salesforce.com` for a sandbox).
    /// The client credentials flow needs the My Domain.
    pub login_url: String,
    pub auth: Auth,
    /// Minutes the org keeps a session (Setup → Session Settings → Timeout Value); seam
    /// logs in again a little before they pass.
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u64,
}

fn default_session_minutes() -> u64 {
    120
}

/// The OAuth flow seam logs in with, and what it needs.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "flow", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// A connected app (or external client app) with a certificate: seam signs an
    /// assertion with the matching private key, as `username`, who must be pre-authorized.
    JwtBearer {
        /// The app's consumer key.
        consumer_key: String,
        /// The integration user's username.
        username: String,
        /// The private key (PEM, PKCS#8 or PKCS#1) whose certificate is uploaded to the app.
        private_key: Secret,
        /// The assertion's `aud`. Default: `https://test.salesforce.com` when the login URL is a
        /// sandbox's, else `https://login.salesforce.com`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// An app with "Enable Client Credentials Flow" and a Run As user; needs the My Domain login URL.
    ClientCredentials { client_id: String, client_secret: Secret },
    /// Legacy: the integration user's password with its security token appended.
    Password { client_id: String, client_secret: Secret, username: String, password: Secret },
}

impl Auth {
    pub fn flow(&self) -> &'static str {
        match self {
            Auth::JwtBearer { .. } => "jwt_bearer",
            Auth::ClientCredentials { .. } => "client_credentials",
            Auth::Password { .. } => "password",
        }
    }
}

/// The host of a URL, lowercased (`https://Acme.my.salesforce.com:443/x` → `acme.my.salesforce.com`).
fn host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or(authority)
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    host.to_ascii_lowercase()
}

impl Credentials {
    /// Mistakes the configuration shows without asking Salesforce. `what` names this
    /// section in errors (`tenants.acme.salesforce`).
    pub fn check(&self, what: &str) -> anyhow::Result<()> {
        if !self.login_url.starts_with("https://") {
            bail!(
                "{what}.login_url must be an https:// URL (your My Domain, or {LOGIN_URL}); got {:?}",
                self.login_url
            );
        }
        let host = host(&self.login_url);
        if let Auth::ClientCredentials { .. } = &self.auth {
            if host == "login.salesforce.com" || host == "test.salesforce.com" {
                bail!(
                    "{what}: the client credentials flow works only on the org's My Domain, not {host}: set login_url to \
                     https://<your-domain>.my.salesforce.com (Setup → My Domain shows it)"
                );
            }
        }
        if self.session_minutes < 5 {
            bail!("{what}.session_minutes is {}; Salesforce sessions last at least 15 minutes", self.session_minutes);
        }
        Ok(())
    }

    /// The JWT assertion's audience: the configured one, else the login host's kind.
    pub fn audience(&self) -> String {
        if let Auth::JwtBearer { audience: Some(a), .. } = &self.auth {
            return a.trim_end_matches('/').to_string();
        }
        let host = host(&self.login_url);
        if host == "test.salesforce.com" || host.ends_with(".sandbox.my.salesforce.com") {
            TEST_URL.to_string()
        } else {
            LOGIN_URL.to_string()
        }
    }

    pub fn token_url(&self) -> String {
        format!("{}/services/oauth2/token", self.login_url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(login_url: &str, auth: Auth) -> Credentials {
        Credentials { login_url: login_url.into(), auth, session_minutes: 120 }
    }

    #[test]
    fn client_credentials_need_the_my_domain() {
        let cc = || Auth::ClientCredentials { client_id: "k".into(), client_secret: Secret::value("s") };
        let err = creds("https://login.salesforce.com", cc()).check("tenants.t.salesforce").unwrap_err().to_string();
        assert!(err.contains("My Domain") && err.contains("tenants.t.salesforce"), "{err}");
        assert!(creds("https://Test.Salesforce.com/", cc()).check("x").is_err());
        creds("https://acme.my.salesforce.com", cc()).check("x").unwrap();
        assert!(creds("http://acme.my.salesforce.com", cc()).check("x").unwrap_err().to_string().contains("https://"));
    }

    #[test]
    fn the_audience_follows_the_login_host_unless_given() {
        let jwt = |audience: Option<&str>| Auth::JwtBearer {
            consumer_key: "k".into(),
            username: "u".into(),
            private_key: Secret::value("-"),
            audience: audience.map(str::to_string),
        };
        assert_eq!(creds("https://acme.my.salesforce.com", jwt(None)).audience(), LOGIN_URL);
        assert_eq!(creds("https://test.salesforce.com", jwt(None)).audience(), TEST_URL);
        assert_eq!(creds("https://acme--dev.sandbox.my.salesforce.com", jwt(None)).audience(), TEST_URL);
        assert_eq!(
            creds("https://login.salesforce.com", jwt(Some("https://acme.my.salesforce.com/"))).audience(),
            "https://acme.my.salesforce.com"
        );
    }

    #[test]
    fn the_configuration_names_each_flow_and_refuses_strays() {
        let parsed: Credentials = serde_json::from_str(
            r#"{"login_url": "https://acme.my.salesforce.com", "auth": {"flow": "jwt_bearer", "consumer_key": "3MVG", "username": "seam@acme", "private_key": {"file": "/etc/seam/sf.key"}}}"#,
        )
        .unwrap();
        assert_eq!(parsed.auth.flow(), "jwt_bearer");
        assert_eq!(parsed.session_minutes, 120);
        let err = serde_json::from_str::<Credentials>(r#"{"login_url": "https://x", "auth": {"flow": "client_credentials", "client_id": "a", "client_secret": "b", "username": "c"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("username"), "{err}");
        let err = serde_json::from_str::<Credentials>(
            r#"{"login_url": "https://x", "auth": {"flow": "saml", "client_id": "a"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("jwt_bearer") && err.contains("client_credentials"), "{err}");
    }

    #[test]
    fn hosts_are_read_from_urls() {
        assert_eq!(host("https://Acme.my.salesforce.com:443/services"), "acme.my.salesforce.com");
        assert_eq!(host("https://localhost:8443"), "localhost");
        assert_eq!(host("https://[::1]:8443/x"), "[::1]");
    }
}
