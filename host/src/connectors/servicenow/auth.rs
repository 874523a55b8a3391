//! Authenticating to ServiceNow: Basic, the OAuth 2.0 password grant (with
//! its refresh token), or the OAuth client credentials grant (Washington DC
//! and later).
//!
//! OAuth tokens come from `POST {instance}/oauth_token.do` (form-encoded: the
//! instance refuses JSON) and last `expires_in` seconds (1,800 by default);
//! seam renews them a little before that, from the refresh token when it has
//! one, and at once when a call is answered 401.

use crate::config::servicenow::{Auth, Credentials};
use crate::connectors::token::{Login, Token, Tokens};
use crate::connectors::{ConnectorError, Http, Result};
use crate::secrets::{ExposeSecret, SecretString};
use crate::transience::Transience;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How each call proves who it is: a Basic header, or a token from [`InstanceLogin`].
pub enum Access {
    Basic { username: String, password: SecretString },
    // Boxed: a token cache is six times the size of a Basic login.
    OAuth(Box<Tokens<InstanceLogin>>),
}

impl Access {
    pub fn new(credentials: &Credentials, http: Http, what: &str) -> anyhow::Result<Self> {
        credentials.check(what)?;
        let token_url = format!("{}/oauth_token.do", credentials.base());
        Ok(match &credentials.auth {
            Auth::Basic { username, password } => Access::Basic {
                username: username.clone(),
                password: password.resolve(&format!("{what}.auth.password"))?,
            },
            Auth::OauthPassword { client_id, client_secret, username, password } => {
                Access::OAuth(Box::new(Tokens::new(InstanceLogin {
                    http,
                    token_url,
                    client_id: client_id.clone(),
                    client_secret: client_secret.resolve(&format!("{what}.auth.client_secret"))?,
                    user: Some((username.clone(), password.resolve(&format!("{what}.auth.password"))?)),
                })))
            }
            Auth::ClientCredentials { client_id, client_secret } => {
                Access::OAuth(Box::new(Tokens::new(InstanceLogin {
                    http,
                    token_url,
                    client_id: client_id.clone(),
                    client_secret: client_secret.resolve(&format!("{what}.auth.client_secret"))?,
                    user: None,
                })))
            }
        })
    }
}

/// Gets tokens from `oauth_token.do`.
pub struct InstanceLogin {
    http: Http,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    /// The password grant's user; `None`: client credentials.
    user: Option<(String, SecretString)>,
}

impl InstanceLogin {
    async fn request(&self, form: &[(&str, &str)], grant: &str) -> Result<Token> {
        let response = self.http.send(|client| client.post(&self.token_url).form(form)).await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let access = body["access_token"].as_str().filter(|_| status.is_success());
        let Some(access) = access else {
            let error = body["error"].as_str().unwrap_or("unknown");
            let description = body["error_description"].as_str().unwrap_or("no description");
            return Err(ConnectorError::Refused {
                system: "servicenow",
                status: status.as_u16(),
                message: self.explain(grant, status.as_u16(), error, description),
            });
        };
        let lifetime = body["expires_in"]
            .as_u64()
            .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(1800);
        Ok(Token {
            access: SecretString::from(access.to_string()),
            expires_at: Some(Instant::now() + Duration::from_secs(lifetime)),
            refresh: body["refresh_token"].as_str().map(|r| SecretString::from(r.to_string())),
            instance_url: None,
        })
    }

    /// ServiceNow answers every refused grant alike (401 `server_error` / `access_denied`),
    /// so the fix names what this grant depends on.
    fn explain(&self, grant: &str, status: u16, error: &str, description: &str) -> String {
        let fix = match (grant, &self.user) {
            ("refresh_token", _) => "the refresh token was refused; seam logs in with the password next".to_string(),
            ("password", Some((username, _))) => format!(
                "check client_id and client_secret (System OAuth → Application Registry), and the password of {username}; the user must be active \
                 and allowed to log in"
            ),
            _ => "check client_id and client_secret (System OAuth → Application Registry), that the entity names an OAuth Application User, and \
                  that the system property glide.oauth.inbound.client.credential.grant_type.enabled is true"
                .to_string(),
        };
        format!(
            "ServiceNow refused the OAuth {grant} grant at {} ({status} {error}: {description}): {fix}",
            self.token_url
        )
    }
}

impl Login for InstanceLogin {
    async fn login(&self, previous: Option<&Token>) -> Result<Token> {
        let secret = self.client_secret.expose_secret();
        if let Some(refresh) = previous.and_then(|p| p.refresh.as_ref()) {
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", secret),
                ("refresh_token", refresh.expose_secret()),
            ];
            match self.request(&form, "refresh_token").await {
                Ok(mut token) => {
                    // The instance may answer a refresh without repeating the refresh token.
                    token.refresh = token.refresh.or_else(|| Some(refresh.clone()));
                    return Ok(token);
                }
                Err(e) if !e.is_transient() => tracing::info!("{e}"),
                Err(e) => return Err(e),
            }
        }
        match &self.user {
            Some((username, password)) => {
                let form = [
                    ("grant_type", "password"),
                    ("client_id", self.client_id.as_str()),
                    ("client_secret", secret),
                    ("username", username),
                    ("password", password.expose_secret()),
                ];
                self.request(&form, "password").await
            }
            None => {
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", self.client_id.as_str()),
                    ("client_secret", secret),
                ];
                self.request(&form, "client_credentials").await
            }
        }
    }
}
