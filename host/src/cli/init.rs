//! `seam init`: write a tenant's configuration for a real org and instance,
//! from flags, or from answers where a flag is missing and a person is at the
//! terminal. Secrets are written as references, never as values: the
//! passwords and client secrets people hold come from environment variables
//! (`SEAM_<TENANT>_…`), the private key from its file, and the secrets seam
//! makes itself (the intake's keys, the admin token) go to files readable by
//! their owner only. The file is written whole, or not at all.

use crate::config::intake::{PubSubSettings, TenantIntake};
use crate::config::{check_tenant_name, Config, TenantConfig};
use crate::config::{salesforce, servicenow, slack};
use crate::secrets::{write_secret_file, Secret};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SalesforceFlow {
    /// A connected app with a certificate; seam signs with the private key (recommended).
    JwtBearer,
    /// An app with the client credentials flow and a Run As user (needs the My Domain URL).
    ClientCredentials,
    /// Legacy: the integration user's password and security token.
    Password,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ServiceNowFlow {
    Basic,
    OauthPassword,
    ClientCredentials,
}

#[derive(Args)]
pub struct InitArgs {
    /// The configuration to write; a tenant is added to it when it exists.
    #[arg(long, default_value = "seam.json")]
    pub config: PathBuf,
    /// The tenant's name (letters, digits, '-' and '_').
    #[arg(long)]
    pub tenant: Option<String>,
    /// Replace the tenant when the configuration has it already.
    #[arg(long)]
    pub force: bool,

    /// The org's My Domain (https://<domain>.my.salesforce.com), or https://login.salesforce.com.
    #[arg(long)]
    pub salesforce_login_url: Option<String>,
    #[arg(long, value_enum, default_value = "jwt-bearer")]
    pub salesforce_flow: SalesforceFlow,
    /// The app's consumer key.
    #[arg(long)]
    pub salesforce_client_id: Option<String>,
    /// The integration user's username (JWT bearer, password).
    #[arg(long)]
    pub salesforce_username: Option<String>,
    /// The private key file whose certificate the app holds (JWT bearer).
    #[arg(long)]
    pub salesforce_private_key: Option<PathBuf>,
    /// The org's id (Setup → Company Information); without it, seam logs in to read it.
    #[arg(long)]
    pub salesforce_org_id: Option<String>,
    /// How Salesforce's changes reach seam: Change Data Capture over the Pub/Sub API, or Outbound Messages posted to intake.
    #[arg(long, value_enum, default_value = "pubsub")]
    pub salesforce_events: crate::config::intake::Source,
    /// The Pub/Sub API endpoint (Salesforce's, unless a proxy or the emulator stands in).
    #[arg(long, default_value = crate::connectors::salesforce::pubsub::DEFAULT_URL)]
    pub pubsub_url: String,

    /// https://<instance>.service-now.com
    #[arg(long)]
    pub servicenow_url: Option<String>,
    #[arg(long, value_enum, default_value = "oauth-password")]
    pub servicenow_flow: ServiceNowFlow,
    /// The integration user's user name (basic, OAuth password).
    #[arg(long)]
    pub servicenow_username: Option<String>,
    /// The OAuth client id (Application Registry).
    #[arg(long)]
    pub servicenow_client_id: Option<String>,
    /// The OAuth Application User (client credentials).
    #[arg(long)]
    pub servicenow_integration_user: Option<String>,

    /// Post to Slack too (its bot token comes from SEAM_<TENANT>_SLACK_TOKEN).
    #[arg(long)]
    pub slack: bool,
    /// Slack's Web API base URL.
    #[arg(long, default_value = "https://slack.com/api/", requires = "slack")]
    pub slack_api_url: String,

    /// Where the systems reach intake from outside (https://seam.example.com).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Where intake listens (a new configuration only).
    #[arg(long, default_value = "0.0.0.0:8787")]
    pub listen: String,
    /// Where the admin API, the dashboard and /metrics listen (a new configuration only).
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub admin_listen: String,
    /// The journal (a new configuration only; default: journal.db beside the configuration).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// The mapping pack.
    #[arg(long, default_value = "target/case-incident.seampack")]
    pub pack: PathBuf,
    /// Workflow packs (repeatable).
    #[arg(long = "workflow")]
    pub workflows: Vec<PathBuf>,
    /// The public key of a pack signer to trust (`seam pack keygen` makes KEY and KEY.pub; repeatable).
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<PathBuf>,
    /// Load unsigned packs (development only; without it, seam needs --trusted-key).
    #[arg(long)]
    pub allow_unsigned: bool,
    /// A CA to trust besides the system's (a proxy that re-signs traffic).
    #[arg(long)]
    pub ca_pem: Option<PathBuf>,
    /// Where the secrets seam makes go (default: secrets/ beside the configuration).
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
}

/// Asks for what a flag did not give, when someone is at the terminal.
struct Asker {
    interactive: bool,
    missing: Vec<String>,
}

impl Asker {
    fn value(&mut self, given: &Option<String>, flag: &str, question: &str) -> Result<String> {
        if let Some(v) = given.as_ref().filter(|v| !v.trim().is_empty()) {
            return Ok(v.trim().to_string());
        }
        if !self.interactive {
            self.missing.push(flag.to_string());
            return Ok(String::new());
        }
        print!("{question}: ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let answer = line.trim().to_string();
        if answer.is_empty() {
            self.missing.push(flag.to_string());
        }
        Ok(answer)
    }
}

/// `SEAM_<TENANT>_<WHAT>`: where a person's secret is read from.
fn env_name(tenant: &str, what: &str) -> String {
    format!("SEAM_{}_{what}", tenant.to_ascii_uppercase().replace('-', "_"))
}

pub async fn run(args: InitArgs) -> Result<()> {
    let mut ask = Asker { interactive: std::io::stdin().is_terminal(), missing: Vec::new() };
    let tenant = ask.value(&args.tenant, "--tenant", "Tenant name (letters, digits, - and _)")?;
    let login_url = ask.value(
        &args.salesforce_login_url,
        "--salesforce-login-url",
        "Salesforce My Domain URL (https://<domain>.my.salesforce.com)",
    )?;
    let client_id = ask.value(&args.salesforce_client_id, "--salesforce-client-id", "Salesforce app consumer key")?;
    let sf_username = match args.salesforce_flow {
        SalesforceFlow::ClientCredentials => String::new(),
        _ => ask.value(&args.salesforce_username, "--salesforce-username", "Salesforce integration user's username")?,
    };
    let private_key = match args.salesforce_flow {
        SalesforceFlow::JwtBearer => ask.value(
            &args.salesforce_private_key.as_ref().map(|p| p.display().to_string()),
            "--salesforce-private-key",
            "Private key file (PEM) whose certificate the app holds",
        )?,
        _ => String::new(),
    };
    let sn_url = ask.value(
        &args.servicenow_url,
        "--servicenow-url",
        "ServiceNow instance URL (https://<instance>.service-now.com)",
    )?;
    let sn_username = match args.servicenow_flow {
        ServiceNowFlow::ClientCredentials => String::new(),
        _ => {
            ask.value(&args.servicenow_username, "--servicenow-username", "ServiceNow integration user's user name")?
        }
    };
    let sn_client_id = match args.servicenow_flow {
        ServiceNowFlow::Basic => String::new(),
        _ => ask.value(&args.servicenow_client_id, "--servicenow-client-id", "ServiceNow OAuth client id")?,
    };
    let sn_integration_user = match args.servicenow_flow {
        ServiceNowFlow::ClientCredentials => Some(ask.value(
            &args.servicenow_integration_user,
            "--servicenow-integration-user",
            "ServiceNow OAuth Application User",
        )?),
        _ => args.servicenow_integration_user.clone(),
    };
    if !ask.missing.is_empty() {
        bail!("missing: {} (give them as flags, or run seam init at a terminal to be asked)", ask.missing.join(", "));
    }
    check_tenant_name(&tenant)?;

    // The existing configuration, or a new one; nothing is written until all is checked.
    let dir = args
        .config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let existing = args.config.exists();
    let mut config = if existing {
        Config::load(&args.config).with_context(|| {
            format!("{} exists but cannot be read; fix it, or init into another file", args.config.display())
        })?
    } else {
        // The configuration's own defaults for what is not given.
        let journal = args.journal.clone().unwrap_or_else(|| dir.join("journal.db"));
        serde_json::from_value::<Config>(serde_json::json!({ "listen": args.listen, "admin": { "listen": args.admin_listen }, "journal": journal, "tenants": {} })).context("a new configuration")?
    };
    if config.tenants.contains_key(&tenant) && !args.force {
        bail!("{} already has a tenant {tenant}: add --force to replace it", args.config.display());
    }
    for key in &args.trusted_keys {
        let key = std::path::absolute(key).unwrap_or_else(|_| key.clone());
        if !config.trusted_keys.contains(&key) {
            config.trusted_keys.push(key);
        }
    }
    config.allow_unsigned |= args.allow_unsigned;
    config.check_trust()?;
    // A key that does not read, or a pack it did not sign, is found now rather than at `seam serve`.
    let trusted = crate::packs::TrustedKeys::read(&config.trusted_keys)?;
    for pack in std::iter::once(&args.pack).chain(&args.workflows).filter(|_| trusted.required()) {
        let bytes = crate::packs::read_pack(pack)?;
        let opened = crate::packs::Pack::open(&bytes).with_context(|| {
            format!("{}: seam loads only signed packs here (`seam pack build`, then `seam pack sign`)", pack.display())
        })?;
        trusted.check(&opened.signed, opened.signature.as_ref()).with_context(|| format!("{}", pack.display()))?;
    }
    if let Some(url) = &args.public_url {
        config.public_url = Some(url.trim_end_matches('/').to_string());
    }
    let secrets_dir = args.secrets_dir.clone().unwrap_or_else(|| dir.join("secrets"));
    let mut made: Vec<(PathBuf, String)> = Vec::new();
    let mut make = |name: &str| {
        let path = secrets_dir.join(&tenant).join(name);
        made.push((path.clone(), crate::secrets::random_secret()));
        Secret::file(path)
    };
    let salesforce = salesforce::Credentials {
        login_url: login_url.trim_end_matches('/').to_string(),
        auth: match args.salesforce_flow {
            SalesforceFlow::JwtBearer => salesforce::Auth::JwtBearer {
                consumer_key: client_id,
                username: sf_username,
                private_key: Secret::file(
                    std::path::absolute(&private_key).unwrap_or_else(|_| PathBuf::from(&private_key)),
                ),
                audience: None,
            },
            SalesforceFlow::ClientCredentials => salesforce::Auth::ClientCredentials {
                client_id,
                client_secret: Secret::env(env_name(&tenant, "SALESFORCE_CLIENT_SECRET")),
            },
            SalesforceFlow::Password => salesforce::Auth::Password {
                client_id,
                client_secret: Secret::env(env_name(&tenant, "SALESFORCE_CLIENT_SECRET")),
                username: sf_username,
                password: Secret::env(env_name(&tenant, "SALESFORCE_PASSWORD")),
            },
        },
        session_minutes: 120,
    };
    let servicenow = servicenow::Credentials {
        instance_url: sn_url.trim_end_matches('/').to_string(),
        auth: match args.servicenow_flow {
            ServiceNowFlow::Basic => servicenow::Auth::Basic {
                username: sn_username,
                password: Secret::env(env_name(&tenant, "SERVICENOW_PASSWORD")),
            },
            ServiceNowFlow::OauthPassword => servicenow::Auth::OauthPassword {
                client_id: sn_client_id,
                client_secret: Secret::env(env_name(&tenant, "SERVICENOW_CLIENT_SECRET")),
                username: sn_username,
                password: Secret::env(env_name(&tenant, "SERVICENOW_PASSWORD")),
            },
            ServiceNowFlow::ClientCredentials => servicenow::Auth::ClientCredentials {
                client_id: sn_client_id,
                client_secret: Secret::env(env_name(&tenant, "SERVICENOW_CLIENT_SECRET")),
            },
        },
        integration_user: sn_integration_user.filter(|u| !u.is_empty()),
    };
    salesforce.check(&format!("tenants.{tenant}.salesforce"))?;
    servicenow.check(&format!("tenants.{tenant}.servicenow"))?;

    let org_id = match &args.salesforce_org_id {
        Some(id) => id.clone(),
        None => {
            let sf = crate::connectors::salesforce::Salesforce::connect(&salesforce, &tenant, args.ca_pem.as_deref(), crate::connectors::RetryPolicy { attempts: 2, ..Default::default() })
                .await
                .context("reading the org's id needs a login: give --salesforce-org-id (Setup → Company Information), or fix the login")?;
            let who = sf
                .get_path("/services/oauth2/userinfo")
                .await
                .context("reading the org's id (give --salesforce-org-id)")?;
            who["organization_id"].as_str().context("the org did not say its id; give --salesforce-org-id")?.to_string()
        }
    };
    let intake = TenantIntake {
        salesforce_org_id: org_id,
        salesforce_token: make("outbound-token"),
        servicenow_secret: make("servicenow-secret"),
    };
    if config.admin.operator_token.is_none() {
        let path = secrets_dir.join("admin-token");
        made.push((path.clone(), crate::secrets::random_secret()));
        config.admin.operator_token = Some(Secret::file(path));
    }
    let tenant_config = TenantConfig {
        pack: std::path::absolute(&args.pack).unwrap_or_else(|_| args.pack.clone()),
        workflows: args.workflows.iter().map(|w| std::path::absolute(w).unwrap_or_else(|_| w.clone())).collect(),
        ca_pem: args.ca_pem.clone(),
        salesforce,
        servicenow,
        slack: args.slack.then(|| slack::Credentials {
            api_url: args.slack_api_url.clone(),
            token: Secret::env(env_name(&tenant, "SLACK_TOKEN")),
        }),
        intake,
        events: args.salesforce_events,
        pubsub: PubSubSettings { url: args.pubsub_url.clone(), platform_event: None },
        ownership: None,
        admin_tokens: Default::default(),
        pack_limits: None,
    };
    config.tenants.insert(tenant.clone(), tenant_config);
    config.check()?;

    // Checked: the secrets seam made, then the configuration, whole.
    for (path, value) in &made {
        write_secret_file(path, value)?;
    }
    crate::files::write_private(&args.config, serde_json::to_string_pretty(&config)?.as_bytes())?;
    println!("{} {} (tenant {tenant})", if existing { "updated" } else { "wrote" }, args.config.display());
    let t = &config.tenants[&tenant];
    let mut people_secrets: Vec<String> = Vec::new();
    for (_, secret) in crate::setup::doctor::tenant_secrets(&tenant, t) {
        if let Secret::Env(name) = secret {
            if !people_secrets.contains(&name) {
                people_secrets.push(name);
            }
        }
    }
    if !people_secrets.is_empty() {
        println!("\nseam reads these from the environment; set them where seam runs:");
        for name in &people_secrets {
            println!("  export {name}=…");
        }
    }
    println!("the secrets seam made are in {} (readable by you only)", secrets_dir.display());
    let config_path = args.config.display();
    println!("\nnext:");
    println!("  seam salesforce metadata --config {config_path} --tenant {tenant} --outbound-message -o salesforce-{tenant}   # then: sf project deploy start");
    println!("  seam servicenow update-set --config {config_path} --tenant {tenant} -o seam-{tenant}.xml                       # then: import, preview, commit");
    println!("  seam doctor --config {config_path} --tenant {tenant}");
    println!("  seam serve --config {config_path}");
    if config.public_url.is_none() {
        println!("(no --public-url yet: the systems must reach intake over HTTPS; set public_url in {config_path})");
    }
    Ok(())
}
