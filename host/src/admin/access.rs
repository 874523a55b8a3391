//! Who may call the admin API. Each token is for one tenant or for all of
//! them, with a scope: `read` sees the tenant's packs, backlog, links, dead
//! letters and audit trails; `operate` also installs and rolls back packs and
//! re-drives dead letters. One optional operator token is `operate` on every
//! tenant. A presented token is compared with every configured one in
//! constant time, and is never logged.

use crate::config::admin::TenantTokens;
use crate::config::Config;
use crate::secrets::{ExposeSecret, Secret, SecretString};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Operate,
}

/// What the caller presenting a token may do.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// The tenant the token is for; None: every tenant (the operator token).
    pub tenant: Option<String>,
    pub scope: Scope,
}

impl Grant {
    /// Whether the token shows this tenant at all.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    /// Allow `scope` on `tenant`, or say why not (403).
    pub fn allow(&self, tenant: &str, scope: Scope) -> Result<(), Response> {
        if !self.sees(tenant) {
            return Err(super::error(StatusCode::FORBIDDEN, format!("this token is not for tenant {tenant}")));
        }
        if self.scope < scope {
            return Err(super::error(StatusCode::FORBIDDEN, format!("this token may read {tenant}, not operate it (installing, rolling back and re-driving need an operate token)")));
        }
        Ok(())
    }
}

/// Every configured token, read, with what it grants.
pub struct Tokens {
    entries: Vec<(SecretString, Grant)>,
}

impl Tokens {
    /// Every admin token the configuration gives, read, with what each grants.
    pub fn of(config: &Config) -> anyhow::Result<Tokens> {
        Tokens::read(
            config.admin.operator_token.as_ref(),
            config.tenants.iter().map(|(name, t)| (name, &t.admin_tokens)),
        )
    }

    /// Read the operator token and each tenant's tokens. Two settings with the same value are
    /// refused: a token must say unambiguously what it grants.
    pub fn read<'a>(
        operator: Option<&Secret>,
        tenants: impl IntoIterator<Item = (&'a String, &'a TenantTokens)>,
    ) -> anyhow::Result<Tokens> {
        let mut entries = Vec::new();
        if let Some(secret) = operator {
            entries.push((secret.resolve("admin.operator_token")?, Grant { tenant: None, scope: Scope::Operate }));
        }
        for (tenant, tokens) in tenants {
            for (scope, secret) in [(Scope::Read, &tokens.read), (Scope::Operate, &tokens.operate)] {
                if let Some(secret) = secret {
                    let what = format!(
                        "tenants.{tenant}.admin_tokens.{}",
                        if scope == Scope::Read { "read" } else { "operate" }
                    );
                    entries.push((secret.resolve(&what)?, Grant { tenant: Some(tenant.clone()), scope }));
                }
            }
        }
        for (i, (token, _)) in entries.iter().enumerate() {
            anyhow::ensure!(
                token.expose_secret().len() >= 16,
                "an admin token is shorter than 16 characters; use a long random one (`openssl rand -hex 32`)"
            );
            anyhow::ensure!(
                !entries[..i].iter().any(|(other, _)| other.expose_secret() == token.expose_secret()),
                "two admin token settings hold the same token; give each its own, so a token says what it grants"
            );
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What `presented` grants. Every configured token is compared, in constant time, so the
    /// answer's timing says nothing about which one came close.
    pub fn grant(&self, presented: &str) -> Option<Grant> {
        let mut found = None;
        for (token, grant) in &self.entries {
            if crate::intake::subtle_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
                found = Some(grant.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let acme = TenantTokens {
            read: Some(Secret::value("acme-read-0123456789")),
            operate: Some(Secret::value("acme-operate-0123456789")),
        };
        let globex = TenantTokens { read: Some(Secret::value("globex-read-0123456789")), operate: None };
        let names = ["acme".to_string(), "globex".to_string()];
        Tokens::read(Some(&Secret::value("operator-0123456789")), [(&names[0], &acme), (&names[1], &globex)]).unwrap()
    }

    #[test]
    fn each_token_grants_its_tenant_and_scope_and_nothing_more() {
        let tokens = tokens();
        let read = tokens.grant("acme-read-0123456789").unwrap();
        assert!(read.allow("acme", Scope::Read).is_ok());
        assert_eq!(read.allow("acme", Scope::Operate).unwrap_err().status(), StatusCode::FORBIDDEN);
        assert_eq!(read.allow("globex", Scope::Read).unwrap_err().status(), StatusCode::FORBIDDEN);
        let operate = tokens.grant("acme-operate-0123456789").unwrap();
        assert!(operate.allow("acme", Scope::Operate).is_ok() && operate.allow("globex", Scope::Read).is_err());
        let operator = tokens.grant("operator-0123456789").unwrap();
        assert!(operator.allow("acme", Scope::Operate).is_ok() && operator.allow("globex", Scope::Operate).is_ok());
        assert_eq!(tokens.grant("acme-read-012345678"), None, "a prefix is not the token");
        assert_eq!(tokens.grant(""), None);
    }

    #[test]
    fn a_token_used_twice_or_too_short_is_refused() {
        let name = "acme".to_string();
        let same = TenantTokens {
            read: Some(Secret::value("same-token-0123456789")),
            operate: Some(Secret::value("same-token-0123456789")),
        };
        assert!(Tokens::read(None, [(&name, &same)]).err().unwrap().to_string().contains("same token"));
        let short = TenantTokens { read: Some(Secret::value("short")), operate: None };
        assert!(Tokens::read(None, [(&name, &short)]).err().unwrap().to_string().contains("16 characters"));
    }
}
