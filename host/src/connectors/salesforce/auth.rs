//! Logging in to Salesforce: the OAuth 2.0 JWT bearer flow, the client
//! credentials flow, and the username-password flow (legacy: blocked by
//! default in orgs created since Summer '23, retired on 2027-02-20).
//!
//! Every flow posts a form to `{login_url}/services/oauth2/token` and gets an
//! access token and the org's `instance_url` back; no flow says when the
//! token expires (the org's session timeout decides), so seam logs in again
//! before `session_minutes` have passed, and at once when a call is answered
//! 401 `INVALID_SESSION_ID`. A refusal is explained with the step that fixes it.

use crate::config::salesforce::{Auth, Credentials, LOGIN_URL, TEST_URL};
use crate::connectors::token::{Login, Token};
use crate::connectors::{ConnectorError, Http, Result};
use crate::secrets::{ExposeSecret, SecretString};
use anyhow::Context;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How far ahead a JWT assertion expires: Salesforce asks for at most three minutes.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(170);

/// What a login sends, secrets read and the key parsed, ready for every login.
enum Grant {
    Jwt { consumer_key: String, username: String, audience: String, key: jsonwebtoken::EncodingKey, key_source: String },
    ClientCredentials { client_id: String, secret: SecretString },
    Password { client_id: String, secret: SecretString, username: String, password: SecretString },
}

/// Logs in to one org, for [`crate::connectors::token::Tokens`].
pub struct OrgLogin {
    http: Http,
    token_url: String,
    session: Duration,
    grant: Grant,
}

impl OrgLogin {
    /// Read the secrets and the key; `what` names the section in errors (`tenants.acme.salesforce`).
    pub fn new(credentials: &Credentials, http: Http, what: &str) -> anyhow::Result<Self> {
        credentials.check(what)?;
        let grant = match &credentials.auth {
            Auth::JwtBearer { consumer_key, username, private_key, .. } => {
                let pem = private_key.resolve(&format!("{what}.auth.private_key"))?;
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes()).with_context(|| {
                    format!("{what}.auth.private_key ({}) is not an RSA private key in PEM form (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)", private_key.describe())
                })?;
                Grant::Jwt {
                    consumer_key: consumer_key.clone(),
                    username: username.clone(),
                    audience: credentials.audience(),
                    key,
                    key_source: private_key.describe(),
                }
            }
            Auth::ClientCredentials { client_id, client_secret } => Grant::ClientCredentials {
                client_id: client_id.clone(),
                secret: client_secret.resolve(&format!("{what}.auth.client_secret"))?,
            },
            Auth::Password { client_id, client_secret, username, password } => {
                tracing::warn!(
                    "{what}: the username-password flow is legacy: orgs created since Summer '23 block it by default, and Salesforce \
                     retires it on 2027-02-20; switch auth to jwt_bearer or client_credentials (docs/real-orgs.md)"
                );
                Grant::Password {
                    client_id: client_id.clone(),
                    secret: client_secret.resolve(&format!("{what}.auth.client_secret"))?,
                    username: username.clone(),
                    password: password.resolve(&format!("{what}.auth.password"))?,
                }
            }
        };
        Ok(OrgLogin {
            http,
            token_url: credentials.token_url(),
            session: Duration::from_secs(credentials.session_minutes * 60),
            grant,
        })
    }

    fn form(&self) -> Result<Vec<(&'static str, String)>> {
        Ok(match &self.grant {
            Grant::Jwt { consumer_key, username, audience, key, .. } => {
                let exp = (std::time::SystemTime::now() + ASSERTION_LIFETIME)
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let claims = serde_json::json!({ "iss": consumer_key, "sub": username, "aud": audience, "exp": exp });
                let assertion =
                    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, key)
                        .map_err(|e| ConnectorError::Refused {
                            system: "salesforce",
                            status: 0,
                            message: format!("signing the JWT assertion: {e}"),
                        })?;
                vec![("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()), ("assertion", assertion)]
            }
            Grant::ClientCredentials { client_id, secret } => {
                vec![
                    ("grant_type", "client_credentials".into()),
                    ("client_id", client_id.clone()),
                    ("client_secret", secret.expose_secret().to_string()),
                ]
            }
            Grant::Password { client_id, secret, username, password } => vec![
                ("grant_type", "password".into()),
                ("client_id", client_id.clone()),
                ("client_secret", secret.expose_secret().to_string()),
                ("username", username.clone()),
                ("password", password.expose_secret().to_string()),
            ],
        })
    }

    /// Why Salesforce refused the login, and what fixes it.
    fn explain(&self, error: &str, description: &str) -> String {
        let fix = match (&self.grant, error, description) {
            (_, "invalid_client_id", _) => "the consumer key is not one of this org's apps: copy it from the app's Manage Consumer Details".to_string(),
            (Grant::Jwt { key_source, .. }, "invalid_grant", "invalid assertion") => format!(
                "the assertion's signature does not verify: the certificate uploaded to the app is not the one made from the private key in {key_source}; \
                 upload that key's certificate (docs/real-orgs.md)"
            ),
            (Grant::Jwt { audience, .. }, "invalid_grant", "audience is invalid") => format!(
                "the org does not accept the audience {audience}: use {LOGIN_URL} for production, {TEST_URL} for a sandbox, or set auth.audience"
            ),
            (Grant::Jwt { .. }, "invalid_grant", "expired authorization code") => "the assertion had expired when it arrived: check this machine's clock (NTP)".to_string(),
            (Grant::Jwt { username, .. }, "invalid_grant", "user hasn't approved this consumer") | (Grant::Jwt { username, .. }, "invalid_app_access", _) => format!(
                "{username} is not pre-authorized for the app: set Permitted Users to \"Admin approved users are pre-authorized\" and add the \
                 integration user's profile or permission set to the app"
            ),
            (Grant::Jwt { username, .. }, "invalid_grant", d) if d.contains("user") => format!("check the username {username}: it must be an active user of this org"),
            (Grant::ClientCredentials { .. }, "invalid_grant", "request not supported on this domain") => {
                "the client credentials flow works only on the org's My Domain: set login_url to https://<your-domain>.my.salesforce.com".to_string()
            }
            (Grant::ClientCredentials { .. }, "invalid_grant", "no client credentials user enabled") => {
                "the app has no Run As user: Manage → Edit Policies → Client Credentials Flow → Run As (an API-only user)".to_string()
            }
            (_, "invalid_client", _) => "the client secret does not belong to the consumer key: copy both from the app's Manage Consumer Details".to_string(),
            (Grant::Password { .. }, "invalid_grant", "authentication failure") => {
                "the username or password + security token is wrong, or the org blocks the username-password flow (the default since Summer '23): \
                 switch to jwt_bearer"
                    .to_string()
            }
            (_, "unsupported_grant_type", _) => "the org does not offer this flow: check the app's OAuth policies, or choose another flow".to_string(),
            _ => "see docs/real-orgs.md".to_string(),
        };
        let flow = match &self.grant {
            Grant::Jwt { .. } => "JWT bearer",
            Grant::ClientCredentials { .. } => "client credentials",
            Grant::Password { .. } => "username-password",
        };
        format!("Salesforce refused the {flow} login at {} ({error}: {description}): {fix}", self.token_url)
    }
}

impl Login for OrgLogin {
    async fn login(&self, _previous: Option<&Token>) -> Result<Token> {
        let form = self.form()?;
        let response = self.http.send(|client| client.post(&self.token_url).form(&form)).await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("unknown_error");
            let description = body["error_description"].as_str().unwrap_or("no description");
            return Err(ConnectorError::Refused {
                system: "salesforce",
                status: status.as_u16(),
                message: self.explain(error, description),
            });
        }
        let (Some(access), Some(instance)) = (body["access_token"].as_str(), body["instance_url"].as_str()) else {
            return Err(ConnectorError::Refused {
                system: "salesforce",
                status: status.as_u16(),
                message: format!("{} answered without an access_token and instance_url", self.token_url),
            });
        };
        Ok(Token {
            access: SecretString::from(access.to_string()),
            expires_at: Some(Instant::now() + self.session),
            refresh: None,
            instance_url: Some(instance.trim_end_matches('/').to_string()),
        })
    }
}
