//! How seam connects to its emulators: `seam-sim`'s accounts and addresses as the
//! connector credentials a tenant's configuration would hold. The demo, `serve --sim`
//! and the tests reach the emulators through this trait; the library proper never does.

use crate::config::admin::AdminSettings;
use crate::config::alerts::AlertConfig;
use crate::config::intake::{PubSubSettings, Source, TenantIntake};
use crate::config::{self, salesforce, servicenow, slack, Config, TenantConfig};
use crate::connectors::RetryPolicy;
use crate::engine::apply::Systems;
use crate::secrets::Secret;
use anyhow::{Context, Result};
use seam_sim::credentials::*;
use seam_sim::notify::NotifyTarget;
use seam_sim::{Sim, SimConfig};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;

pub trait Simulated {
    /// How a tenant's connectors reach the Salesforce emulator: the JWT bearer flow with the
    /// connected app's key, through the login host.
    fn salesforce_credentials(&self) -> salesforce::Credentials;
    /// How a tenant's connectors reach the ServiceNow emulator: the OAuth password grant.
    fn servicenow_credentials(&self) -> servicenow::Credentials;
    fn slack_credentials(&self) -> slack::Credentials;
    /// Connections as the people who work the records: Jane, an agent, in Salesforce (through
    /// the connected app, which she is approved for) and Beth, an engineer, in ServiceNow
    /// (Basic). Their changes are what the systems notify and seam syncs.
    fn systems(&self, policy: RetryPolicy) -> impl Future<Output = Result<Systems>> + Send;
    /// Connections as seam's integration user, configured the way a tenant's are (tenant `sim`).
    fn seam_systems(&self, policy: RetryPolicy) -> impl Future<Output = Result<Systems>> + Send;
    /// Install seam's update set for `tenant`, its push rule sending to `endpoint` signed with `secret`.
    fn install_push_rule(&self, tenant: &str, endpoint: &str, secret: &str) -> Result<usize>;
}

impl Simulated for Sim {
    fn salesforce_credentials(&self) -> salesforce::Credentials {
        salesforce::Credentials {
            login_url: seam_sim::salesforce::oauth::login_url(&self.salesforce.base_url),
            auth: salesforce::Auth::JwtBearer {
                consumer_key: SF_CLIENT_ID.into(),
                username: SF_USERNAME.into(),
                private_key: Secret::file(&self.connected_app.private_key),
                audience: None,
            },
            session_minutes: 120,
        }
    }

    fn servicenow_credentials(&self) -> servicenow::Credentials {
        servicenow::Credentials {
            instance_url: self.servicenow.base_url.clone(),
            auth: servicenow::Auth::OauthPassword {
                client_id: SN_CLIENT_ID.into(),
                client_secret: Secret::value(SN_CLIENT_SECRET),
                username: SN_USERNAME.into(),
                password: Secret::value(SN_PASSWORD),
            },
            integration_user: None,
        }
    }

    fn slack_credentials(&self) -> slack::Credentials {
        slack::Credentials { api_url: format!("{}/api/", self.slack.base_url), token: Secret::value(SLACK_TOKEN) }
    }

    async fn systems(&self, policy: RetryPolicy) -> Result<Systems> {
        let mut sf = self.salesforce_credentials();
        sf.auth = salesforce::Auth::JwtBearer {
            consumer_key: SF_CLIENT_ID.into(),
            username: SF_PERSON_USERNAME.into(),
            private_key: Secret::file(&self.connected_app.private_key),
            audience: None,
        };
        let sn = servicenow::Credentials {
            instance_url: self.servicenow.base_url.clone(),
            auth: servicenow::Auth::Basic {
                username: SN_PERSON_USERNAME.into(),
                password: Secret::value(SN_PERSON_PASSWORD),
            },
            integration_user: None,
        };
        Systems::connect("people", &sf, &sn, Some(&self.slack_credentials()), Some(&self.ca_pem), policy)
            .await
            .context("connecting to the emulators as their people")
    }

    async fn seam_systems(&self, policy: RetryPolicy) -> Result<Systems> {
        Systems::connect(
            "sim",
            &self.salesforce_credentials(),
            &self.servicenow_credentials(),
            Some(&self.slack_credentials()),
            Some(&self.ca_pem),
            policy,
        )
        .await
        .context("connecting to the emulators")
    }

    fn install_push_rule(&self, tenant: &str, endpoint: &str, secret: &str) -> Result<usize> {
        use crate::setup::servicenow::{update_set, PushSetup};
        let setup = PushSetup {
            tenant: tenant.into(),
            endpoint: endpoint.into(),
            secret: crate::secrets::SecretString::from(secret.to_string()),
            integration_user: SN_USERNAME.into(),
        };
        self.install_update_set(&update_set(&setup, chrono::Utc::now()))
    }
}

/// A random secret kept in `dir/name` (0600), made on first use and read after: a restart keeps
/// what the emulators were told, and the configuration names the file, not the value.
fn secret_file(dir: &std::path::Path, name: &str) -> Result<(Secret, String)> {
    let path = dir.join(name);
    let value = match std::fs::read_to_string(&path) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => {
            let v = crate::secrets::random_secret();
            crate::files::write_private(&path, v.as_bytes())?;
            v
        }
    };
    Ok((Secret::file(std::fs::canonicalize(&path).unwrap_or(path)), value))
}

/// The loopback ports seam picks for its own listeners: below the ephemeral range (Linux's starts
/// at 32768, others' higher). A port is picked here and bound later, once the emulators know it;
/// meanwhile the kernel hands out ephemeral ports (the emulators' `:0` listeners, outgoing
/// connections, other processes' tests), and one of those could take a freed ephemeral port.
const PICKED_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free loopback port, or the one asked for.
fn port_or_free(port: u16) -> Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    for _ in 0..100 {
        let candidate = rand::random_range(PICKED_PORTS);
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "found no free loopback port in {}..{} after 100 tries; name the ports with `seam serve --sim --ports`",
        PICKED_PORTS.start,
        PICKED_PORTS.end
    )
}

/// Start the emulators and describe them as a one-tenant configuration, `demo`.
/// `events` says how the org's changes reach seam: over its Pub/Sub API, or as Outbound Messages
/// (the emulated org is then set up to send them to intake).
pub async fn sim_config(
    state: &std::path::Path,
    pack: &std::path::Path,
    workflows: &[PathBuf],
    ports: Option<&[u16]>,
    events: Source,
) -> Result<(Sim, Config)> {
    let mut ports = ports.map(<[u16]>::to_vec).unwrap_or_default();
    ports.resize(6, 0);
    // Intake's port must be known before the emulators are told where to push.
    let listen = format!("127.0.0.1:{}", port_or_free(ports[0])?);
    // Random per state directory, never printed: the emulators are told them below.
    let secrets = state.join("secrets");
    std::fs::create_dir_all(&secrets).with_context(|| format!("creating {}", secrets.display()))?;
    let (outbound_token, outbound_token_value) = secret_file(&secrets, "outbound-token")?;
    let (servicenow_secret, servicenow_secret_value) = secret_file(&secrets, "servicenow-secret")?;
    let (operator_token, _) = secret_file(&secrets, "admin-token")?;
    let intake_cfg = TenantIntake {
        salesforce_org_id: seam_sim::salesforce::ORG_ID.into(),
        salesforce_token: outbound_token,
        servicenow_secret,
    };
    let mut sim_config = SimConfig::new(state.join("sim"));
    (sim_config.salesforce_port, sim_config.servicenow_port, sim_config.slack_port, sim_config.pubsub_port) =
        (ports[1], ports[2], ports[3], ports[4]);
    if events == Source::OutboundMessages {
        sim_config.notify = vec![(
            "salesforce".into(),
            NotifyTarget {
                url: format!("http://{listen}/intake/demo/salesforce/outbound?token={outbound_token_value}"),
                secret: None,
                format: None,
            },
        )];
    }
    let sim = Sim::start(sim_config).await?;
    // As the instance's admin would: seam's update set, its push rule sending to this intake.
    sim.install_push_rule("demo", &format!("http://{listen}/intake/demo/servicenow"), &servicenow_secret_value)?;
    let tenant = TenantConfig {
        pack: std::fs::canonicalize(pack).unwrap_or_else(|_| pack.to_path_buf()),
        workflows: workflows.iter().map(|w| std::fs::canonicalize(w).unwrap_or_else(|_| w.clone())).collect(),
        ca_pem: Some(sim.ca_pem.clone()),
        salesforce: sim.salesforce_credentials(),
        servicenow: sim.servicenow_credentials(),
        slack: Some(sim.slack_credentials()),
        intake: intake_cfg,
        events,
        pubsub: PubSubSettings { url: sim.pubsub_url.clone(), platform_event: None },
        ownership: None,
        admin_tokens: Default::default(),
        pack_limits: None,
    };
    let admin = AdminSettings {
        listen: format!("127.0.0.1:{}", port_or_free(ports[5])?),
        operator_token: Some(operator_token),
        ..AdminSettings::default()
    };
    let config = Config {
        listen,
        tls_cert: None,
        tls_key: None,
        admin,
        limits: Default::default(),
        journal: state.join("journal.db"),
        retention: Default::default(),
        poll_seconds: 5,
        retry_hours: config::default_retry_hours(),
        concurrency: config::default_concurrency(),
        tenants: HashMap::from([("demo".to_string(), tenant)]),
        trusted_keys: vec![],
        // The emulators run the packs this checkout builds, unsigned (the banner says so).
        allow_unsigned: true,
        public_url: None,
        packs_dir: Some(state.join("hot-load")),
        alerts: AlertConfig::default(),
        reconcile_minutes: config::default_reconcile(),
    };
    crate::files::write_private(&state.join("seam.json"), serde_json::to_string_pretty(&config)?.as_bytes())?;
    Ok((sim, config))
}
