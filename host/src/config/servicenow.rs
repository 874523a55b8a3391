//! `tenants.NAME.servicenow`: how seam reaches one ServiceNow instance, and the
//! mistakes its settings show before any login (see `connectors::servicenow::auth`).

use crate::secrets::Secret;
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// How seam reaches one ServiceNow instance.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// `https://<instance>.service-now.com`
    pub instance_url: String,
    pub auth: Auth,
    /// The user seam's writes are made as, whose changes the business rule does not send back
    /// (seam's own echoes). Default: the username of the basic or password flow; the client
    /// credentials flow needs it named (the OAuth Application User of the client's entity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_user: Option<String>,
}

/// How seam logs in to the instance: `flow` names the way, and the rest what it needs.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "flow", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// HTTP Basic with the integration user's password (needs the `snc_basic_auth_api_access`
    /// role, or a web-service-only user, where basic auth is restricted).
    Basic { username: String, password: Secret },
    /// OAuth 2.0 password grant, through an OAuth API endpoint (System OAuth → Application Registry).
    OauthPassword { client_id: String, client_secret: Secret, username: String, password: Secret },
    /// OAuth 2.0 client credentials: the entity's OAuth Application User acts, and the instance
    /// needs `glide.oauth.inbound.client.credential.grant_type.enabled` = true.
    ClientCredentials { client_id: String, client_secret: Secret },
}

impl Auth {
    pub fn flow(&self) -> &'static str {
        match self {
            Auth::Basic { .. } => "basic",
            Auth::OauthPassword { .. } => "oauth_password",
            Auth::ClientCredentials { .. } => "client_credentials",
        }
    }
}

impl Credentials {
    /// Mistakes the configuration shows without asking the instance.
    pub fn check(&self, what: &str) -> anyhow::Result<()> {
        if !self.instance_url.starts_with("https://") {
            bail!(
                "{what}.instance_url must be an https:// URL (https://<instance>.service-now.com); got {:?}",
                self.instance_url
            );
        }
        if self.integration_user().is_none() {
            bail!("{what}: with the client credentials flow, name the OAuth Application User as integration_user, so its changes are not sent back to seam");
        }
        Ok(())
    }

    /// The user seam acts as, when known.
    pub fn integration_user(&self) -> Option<&str> {
        self.integration_user.as_deref().or(match &self.auth {
            Auth::Basic { username, .. } | Auth::OauthPassword { username, .. } => Some(username.as_str()),
            Auth::ClientCredentials { .. } => None,
        })
    }

    pub fn base(&self) -> &str {
        self.instance_url.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_need_the_integration_user_named() {
        let c: Credentials = serde_json::from_str(r#"{"instance_url": "https://acme.service-now.com", "auth": {"flow": "client_credentials", "client_id": "a", "client_secret": {"env": "X"}}}"#).unwrap();
        assert!(c.check("tenants.t.servicenow").unwrap_err().to_string().contains("integration_user"));
        let c: Credentials = serde_json::from_str(
            r#"{"instance_url": "https://acme.service-now.com", "auth": {"flow": "client_credentials", "client_id": "a", "client_secret": "b"}, "integration_user": "seam.integration"}"#,
        )
        .unwrap();
        c.check("x").unwrap();
        assert_eq!(c.integration_user(), Some("seam.integration"));
        let c: Credentials = serde_json::from_str(r#"{"instance_url": "https://acme.service-now.com/", "auth": {"flow": "basic", "username": "seam", "password": "p"}}"#).unwrap();
        assert_eq!((c.integration_user(), c.base()), (Some("seam"), "https://acme.service-now.com"));
        let c: Credentials = serde_json::from_str(r#"{"instance_url": "http://acme.service-now.com", "auth": {"flow": "basic", "username": "seam", "password": "p"}}"#).unwrap();
        assert!(c.check("x").unwrap_err().to_string().contains("https://"));
    }
}
