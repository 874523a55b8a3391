//! The configuration file, `seam.json`: every key `seam serve` and the other
//! commands read, with its default and its check, one file per section. Unknown
//! keys are refused, so a misspelt setting is an error that names it, not a
//! default silently taken. The modules that act on a section take its type from here.

pub mod admin;
pub mod alerts;
pub mod intake;
pub mod limits;
pub mod reference;
pub mod retention;
pub mod salesforce;
pub mod servicenow;
pub mod slack;

use crate::engine::ownership::Ownership;
use admin::{AdminSettings, TenantTokens};
use alerts::AlertConfig;
use intake::{PubSubSettings, Source, TenantIntake};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where intake listens, e.g. `0.0.0.0:8787`: the one listener that faces the systems.
    pub listen: String,
    /// Intake's TLS certificate chain (PEM), with `tls_key`; absent: plain HTTP, for TLS ended in front of seam.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The admin listener: the API, the dashboard and `/metrics`.
    #[serde(default)]
    pub admin: AdminSettings,
    /// Connection caps, read timeouts and intake rate limits.
    #[serde(default)]
    pub limits: limits::Limits,
    /// The journal: a SQLite file, made on first start (its directory too). The pack store
    /// (`packs/`) lives beside it.
    pub journal: PathBuf,
    /// How long the journal keeps settled events and audit rows (`seam journal prune`).
    #[serde(default)]
    pub retention: retention::Retention,
    /// Seconds between catch-up polls.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// Hours an event is retried through an outage (5xx, 429, timeouts, refused
    /// connections), from its first failure, before it goes to the dead-letter queue.
    #[serde(default = "default_retry_hours")]
    pub retry_hours: u64,
    /// Events processed at once per tenant (each record's events stay in order).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Each tenant by name (letters, digits, `-` and `_`): one Salesforce org and one
    /// ServiceNow instance kept in step, with their own packs, secrets and tokens.
    pub tenants: HashMap<String, TenantConfig>,
    /// Public key files (`seam pack keygen`): only packs signed by one of them load.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// With no `trusted_keys`, load unsigned packs anyway (development: `seam serve --sim` and
    /// the demo set it, and say so). Without it, seam refuses to start with no key to trust.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unsigned: bool,
    /// Where the systems reach intake from outside (`https://seam.example.com`): the URLs the
    /// generated business rule and Outbound Message post to. Absent: `http(s)://{listen}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// A directory with one sub-directory per tenant; a `.seampack` written there is hot-loaded.
    /// (`plugins_dir`, its old name, is read too.)
    #[serde(default, alias = "plugins_dir")]
    pub packs_dir: Option<PathBuf>,
    /// When to tell a person about the backlog or dead letters (thresholds, Slack channel).
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Minutes between reconciliation passes over every linked pair (`seam reconcile`); 0: never.
    #[serde(default = "default_reconcile")]
    pub reconcile_minutes: u64,
}

pub fn default_retry_hours() -> u64 {
    24
}

pub fn default_reconcile() -> u64 {
    60
}

fn default_poll() -> u64 {
    30
}

/// Events wait mostly on the systems' answers, not on the CPU: in a burst,
/// throughput is about the events in flight over one event's latency, and the
/// more are in flight, the more writes share a collection call.
pub fn default_concurrency() -> usize {
    256
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The mapping pack (`.seampack`, from `seam pack build`) or, without trusted keys, a plain component.
    pub pack: PathBuf,
    /// Workflow packs, run after the mapping on every change, in this order.
    #[serde(default)]
    pub workflows: Vec<PathBuf>,
    /// A CA certificate to trust besides the system's (the emulators' `ca.pem`).
    #[serde(default)]
    pub ca_pem: Option<PathBuf>,
    pub salesforce: salesforce::Credentials,
    pub servicenow: servicenow::Credentials,
    /// How workflow packs reach Slack (their Slack actions fail without it).
    #[serde(default)]
    pub slack: Option<slack::Credentials>,
    pub intake: TenantIntake,
    /// Where Salesforce's changes come from: `pubsub` (Change Data Capture over the Pub/Sub API)
    /// or `outbound_messages` (posted to intake).
    #[serde(default)]
    pub events: Source,
    /// The Pub/Sub endpoint and an optional platform event channel, for `"events": "pubsub"`.
    #[serde(default)]
    pub pubsub: PubSubSettings,
    /// Which fields each side mirrors (and so may not be edited there). Absent: the pack's manifest says, else the Case ⇄ Incident default.
    #[serde(default)]
    pub ownership: Option<Ownership>,
    /// Admin API tokens for this tenant alone: `read`, and `operate` (install, roll back, re-drive).
    #[serde(default)]
    pub admin_tokens: TenantTokens,
    /// What one call of this tenant's packs may use; absent: 2 s and 64 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_limits: Option<PackLimits>,
}

/// A tenant's own limits for its packs' calls. A pack past its time budget is stopped and
/// its event retried; one past its memory is stopped the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackLimits {
    /// Wall-clock milliseconds one call (instantiate and run) may take: 1 to 60,000. Default 2,000.
    #[serde(default = "default_time_budget_ms")]
    pub time_budget_ms: u64,
    /// Linear memory one call may grow to, in MiB: 1 to 1,024. Default 64.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
}

fn default_time_budget_ms() -> u64 {
    2_000
}

fn default_memory_mib() -> u64 {
    64
}

impl PackLimits {
    fn check(&self, tenant: &str) -> Result<()> {
        if !(1..=60_000).contains(&self.time_budget_ms) {
            anyhow::bail!(
                "tenants.{tenant}.pack_limits.time_budget_ms is {}: give 1 to 60000 (milliseconds)",
                self.time_budget_ms
            );
        }
        if !(1..=1024).contains(&self.memory_mib) {
            anyhow::bail!("tenants.{tenant}.pack_limits.memory_mib is {}: give 1 to 1024 (MiB)", self.memory_mib);
        }
        Ok(())
    }

    pub fn runtime(&self) -> crate::runtime::PackLimits {
        crate::runtime::PackLimits {
            call_budget: std::time::Duration::from_millis(self.time_budget_ms),
            memory_limit: (self.memory_mib as usize) << 20,
        }
    }
}

impl TenantConfig {
    /// Which fields each side mirrors: the configuration's map, else the mapping pack's, else the default.
    pub fn ownership(&self) -> Result<Ownership> {
        if let Some(o) = &self.ownership {
            return Ok(o.clone());
        }
        let bytes = crate::packs::read_pack(&self.pack)?;
        if crate::packs::artifact::is_plain_component(&bytes) {
            return Ok(Ownership::default());
        }
        let pack = crate::packs::artifact::Pack::open(&bytes)
            .with_context(|| format!("reading the pack {}", self.pack.display()))?;
        Ok(pack.manifest.ownership.unwrap_or_default())
    }
}

impl Config {
    /// Read and check a configuration file: every mistake that shows without calling
    /// out is reported here, naming the setting, before anything starts.
    pub fn load(path: &std::path::Path) -> Result<Config> {
        let config: Config = crate::files::read_json(path, "configuration")?;
        config.check().with_context(|| format!("checking the configuration {}", path.display()))?;
        Ok(config)
    }

    pub fn check(&self) -> Result<()> {
        if self.tenants.is_empty() {
            anyhow::bail!("no tenants are configured; `seam init` writes one");
        }
        for (name, t) in &self.tenants {
            check_tenant_name(name)?;
            t.salesforce.check(&format!("tenants.{name}.salesforce"))?;
            t.servicenow.check(&format!("tenants.{name}.servicenow"))?;
            if let Some(limits) = &t.pack_limits {
                limits.check(name)?;
            }
        }
        self.check_trust()?;
        crate::listener::tls_files(&self.tls_cert, &self.tls_key, "")?;
        crate::listener::tls_files(&self.admin.tls_cert, &self.admin.tls_key, "admin.")?;
        self.limits.check()?;
        self.retention.check()?;
        if self.listen == self.admin.listen {
            anyhow::bail!("listen and admin.listen are both {}: intake and the admin API need their own listeners (the admin one on loopback, or behind a proxy you control)", self.listen);
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                anyhow::bail!("public_url must be an http(s):// URL where the systems reach intake; got {url:?}");
            }
        }
        Ok(())
    }

    /// Packs must be signed by a trusted key, unless the configuration says otherwise.
    pub fn check_trust(&self) -> Result<()> {
        if self.trusted_keys.is_empty() && !self.allow_unsigned {
            anyhow::bail!(
                "no trusted_keys: seam loads only packs signed by a key it trusts. List the signers' public keys in \
                 trusted_keys (`seam pack keygen`, then `seam pack sign` each pack; `seam init --trusted-key`), or set \
                 \"allow_unsigned\": true to run unsigned packs (development only)"
            );
        }
        Ok(())
    }

    /// The base URL the systems post notifications to.
    pub fn public_base(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| self.intake_url()).trim_end_matches('/').to_string()
    }

    /// `https://` or `http://` and intake's listen address.
    pub fn intake_url(&self) -> String {
        crate::listener::url(self.tls_cert.is_some(), &self.listen)
    }

    /// The pack runtime for these tenants: its pool reserves for each instance the most memory
    /// any tenant's packs may use.
    pub fn runtime(&self) -> crate::runtime::RuntimeConfig {
        let mut runtime = crate::runtime::RuntimeConfig::default();
        let most = self.tenants.values().filter_map(|t| t.pack_limits).map(|l| l.runtime().memory_limit).max();
        runtime.memory_limit = runtime.memory_limit.max(most.unwrap_or(0));
        runtime
    }
}

/// Tenant names go into URLs (`/intake/{tenant}/…`), ServiceNow property names and
/// Salesforce's `Sforce-Call-Options` (`client=seam-{tenant}`): letters, digits, `-` and `_`.
pub fn check_tenant_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        anyhow::bail!("tenant name {name:?}: use 1 to 40 letters, digits, '-' or '_', starting with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Config;
    use serde_json::{json, Value};

    fn valid() -> Value {
        json!({
            "listen": "127.0.0.1:8787",
            "journal": "journal.db",
            "allow_unsigned": true,
            "tenants": { "acme": {
                "pack": "case-incident.seampack",
                "salesforce": { "login_url": "https://acme.my.salesforce.com",
                                "auth": { "flow": "client_credentials", "client_id": "id", "client_secret": { "env": "SF_SECRET" } } },
                "servicenow": { "instance_url": "https://acme.service-now.com",
                                "auth": { "flow": "basic", "username": "seam", "password": { "env": "SN_PASSWORD" } } },
                "intake": { "salesforce_org_id": "00D000000000001AAA", "salesforce_token": { "env": "T" }, "servicenow_secret": { "env": "S" } },
                "ownership": { "mirrors": [ { "system": "servicenow", "object": "incident", "fields": ["short_description"] } ] },
                "pubsub": {}
            } },
            "admin": {}, "limits": {}, "retention": {}, "alerts": {}
        })
    }

    /// A misspelt key anywhere in seam.json is refused by name, not taken as a default.
    #[test]
    fn an_unknown_key_is_refused_wherever_it_is() {
        serde_json::from_value::<Config>(valid()).expect("the base configuration parses");
        let places: &[&[&str]] = &[
            &[],
            &["admin"],
            &["limits"],
            &["retention"],
            &["alerts"],
            &["tenants", "acme"],
            &["tenants", "acme", "salesforce"],
            &["tenants", "acme", "salesforce", "auth"],
            &["tenants", "acme", "servicenow"],
            &["tenants", "acme", "servicenow", "auth"],
            &["tenants", "acme", "intake"],
            &["tenants", "acme", "pubsub"],
            &["tenants", "acme", "ownership"],
        ];
        for path in places {
            let mut config = valid();
            let mut at = &mut config;
            for key in *path {
                at = &mut at[*key];
            }
            at["pool_size_typo"] = json!(1);
            let error = serde_json::from_value::<Config>(config).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("unknown field `pool_size_typo`"), "at {path:?}: {error:?}");
        }
    }

    /// The hot-load directory's old key still reads.
    #[test]
    fn plugins_dir_is_read_as_packs_dir() {
        let mut config = valid();
        config["plugins_dir"] = json!("drop");
        let config = serde_json::from_value::<Config>(config).unwrap();
        assert_eq!(config.packs_dir, Some("drop".into()));
    }

    /// A tenant's pack limits are checked by name, and the runtime's pool grows to hold the largest.
    #[test]
    fn pack_limits_are_checked_and_size_the_pool() {
        let with = |limits: Value| {
            let mut config = valid();
            config["tenants"]["acme"]["pack_limits"] = limits;
            serde_json::from_value::<Config>(config).unwrap()
        };
        let config = with(json!({ "memory_mib": 200 }));
        config.check().unwrap();
        assert_eq!(config.runtime().memory_limit, 200 << 20);
        assert_eq!(config.tenants["acme"].pack_limits.unwrap().time_budget_ms, 2_000);
        // Less than the default never shrinks the pool under the other tenants.
        assert_eq!(with(json!({ "memory_mib": 8 })).runtime().memory_limit, 64 << 20);
        let refused = with(json!({ "time_budget_ms": 0 })).check().unwrap_err().to_string();
        assert!(refused.contains("tenants.acme.pack_limits.time_budget_ms is 0"), "{refused}");
        let refused = with(json!({ "memory_mib": 4096 })).check().unwrap_err().to_string();
        assert!(refused.contains("tenants.acme.pack_limits.memory_mib is 4096"), "{refused}");
    }
}
