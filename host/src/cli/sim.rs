//! `seam sim`: run the Salesforce, ServiceNow and Slack emulators until stopped.

use anyhow::{bail, Context, Result};
use clap::Args;
use seam_sim::faults::{self, Faults};
use seam_sim::notify::NotifyTarget;
use seam_sim::{Sim, SimConfig};
use std::path::PathBuf;

#[derive(Args)]
pub struct SimArgs {
    /// Where the emulators keep their database, certificate and sim.json.
    #[arg(long, default_value = ".seam/sim")]
    pub state: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub salesforce_port: u16,
    #[arg(long, default_value_t = 0)]
    pub servicenow_port: u16,
    #[arg(long, default_value_t = 0)]
    pub slack_port: u16,
    /// Salesforce's Pub/Sub API (gRPC over TLS).
    #[arg(long, default_value_t = 0)]
    pub pubsub_port: u16,
    /// Inject a fault: `salesforce.rate_limit=0.2`, `servicenow.server_error_next=3`,
    /// `slack.latency_ms=200`, `salesforce.drop_notifications=0.1` (repeatable).
    #[arg(long = "fault", value_name = "EMULATOR.KEY=VALUE")]
    pub faults: Vec<String>,
    /// Where Salesforce sends its Outbound Messages:
    /// `salesforce=https://HOST/intake/TENANT/salesforce/outbound?token=TOKEN`.
    /// (ServiceNow sends what its business rules send: import the update set of
    /// `seam servicenow update-set` into the emulator, as on a real instance.)
    #[arg(long = "notify", value_name = "EMULATOR=URL")]
    pub notify: Vec<String>,
}

const EMULATORS: &[&str] = &["salesforce", "servicenow", "slack"];

fn emulator_name(name: &str) -> Result<String> {
    if EMULATORS.contains(&name) {
        Ok(name.to_string())
    } else {
        bail!("unknown emulator {name:?}: expected one of {}", EMULATORS.join(", "))
    }
}

/// Turn the command line into a simulator configuration.
pub fn config(args: &SimArgs) -> Result<SimConfig> {
    let mut config = SimConfig::new(args.state.clone());
    config.salesforce_port = args.salesforce_port;
    config.servicenow_port = args.servicenow_port;
    config.slack_port = args.slack_port;
    config.pubsub_port = args.pubsub_port;
    for setting in &args.faults {
        let (key, value) =
            setting.split_once('=').with_context(|| format!("--fault {setting}: expected EMULATOR.KEY=VALUE"))?;
        let (emulator, key) =
            key.split_once('.').with_context(|| format!("--fault {setting}: expected EMULATOR.KEY=VALUE"))?;
        let emulator = emulator_name(emulator)?;
        let index = match config.faults.iter().position(|(n, _)| *n == emulator) {
            Some(i) => i,
            None => {
                config.faults.push((emulator.clone(), Faults::default()));
                config.faults.len() - 1
            }
        };
        faults::apply_setting(&mut config.faults[index].1, key, value).with_context(|| format!("--fault {setting}"))?;
    }
    for setting in &args.notify {
        let (emulator, url) =
            setting.split_once('=').with_context(|| format!("--notify {setting}: expected EMULATOR=URL"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--notify {setting}: the URL must start with http:// or https://");
        }
        config
            .notify
            .push((emulator_name(emulator)?, NotifyTarget { url: url.to_string(), secret: None, format: None }));
    }
    Ok(config)
}

pub async fn run(args: SimArgs) -> Result<()> {
    let sim = Sim::start(config(&args)?).await?;
    print_banner(&sim);
    crate::service::wait_for_stop().await;
    eprintln!("stopping the emulators");
    sim.shutdown();
    Ok(())
}

pub fn print_banner(sim: &Sim) {
    let info = sim.info();
    // Addresses and user names; passwords and tokens stay in the connection details file (0600).
    let text = |system: &str, key: &str| info[system][key].as_str().unwrap_or("").to_string();
    println!("salesforce  {}   user {}", text("salesforce", "url"), text("salesforce", "username"));
    println!("servicenow  {}   user {}", text("servicenow", "url"), text("servicenow", "username"));
    println!("  pub/sub   {}   (Salesforce's change events: eventbus.v1.PubSub over gRPC)", sim.pubsub_url);
    println!("slack       {}", text("slack", "url"));
    println!("CA certificate: {}   (export REQUESTS_CA_BUNDLE / SSL_CERT_FILE to trust it)", sim.ca_pem.display());
    println!("connection details, passwords and tokens: {}", sim.info_file.display());
}
