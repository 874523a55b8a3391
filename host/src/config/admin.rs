//! `admin` and `tenants.NAME.admin_tokens`: where the admin API, the dashboard
//! and `/metrics` listen, and the tokens that may call the API (see `admin::access`).

use crate::secrets::Secret;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the admin API, the dashboard and `/metrics` listen, and who may call the API.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Loopback by default: reach it from the host, or through a tunnel or proxy you control.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// The admin listener's TLS certificate chain (PEM), with `tls_key`; absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// A token that operates every tenant (a secret: a value, `{"env": …}` or `{"file": …}`).
    /// Tenants' own tokens are `tenants.NAME.admin_tokens`. With none at all, the API is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_token: Option<Secret>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:8788".into()
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings { listen: default_admin_listen(), tls_cert: None, tls_key: None, operator_token: None }
    }
}

impl AdminSettings {
    /// The operator token, read.
    pub fn operator_token(&self) -> Result<Option<crate::secrets::SecretString>> {
        self.operator_token.as_ref().map(|t| t.resolve("admin.operator_token")).transpose()
    }

    /// `https://` or `http://` and the admin listener's address.
    pub fn url(&self) -> String {
        crate::listener::url(self.tls_cert.is_some(), &self.listen)
    }
}

/// A tenant's own admin tokens, as the configuration gives them (`tenants.NAME.admin_tokens`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantTokens {
    /// Reads this tenant's dashboard, packs and audit trails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Secret>,
    /// Reads, and installs and rolls back this tenant's packs and re-drives its dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operate: Option<Secret>,
}
