//! Paths of the packs `build.rs` compiled for these tests.

include!(concat!(env!("OUT_DIR"), "/packs.rs"));

/// The bytes of a pack built by `build.rs`.
pub fn pack_bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path} (built by tests/build.rs): {e}"))
}

use seam::intake::{self, Intake, TenantIntake};
use seam::sim::notify::NotifyTarget;
use seam::sim::{salesforce::ORG_ID, Sim, SimConfig};
use seam::store::Journal;
use std::collections::HashMap;
use std::sync::Arc;

/// The tenant the rig serves, and the secrets its notifications carry.
pub const TENANT: &str = "acme";
pub const OM_TOKEN: &str = "om-token";
pub const SF_SECRET: &str = "sf-secret";
pub const SN_SECRET: &str = "sn-secret";

/// A journal, seam's intake on loopback, and the emulators pushing their notifications to it.
pub struct Rig {
    pub sim: Sim,
    pub journal: Arc<Journal>,
    /// `http://127.0.0.1:PORT` of the intake.
    pub base: String,
}

pub async fn rig(name: &str, max_body: usize) -> Rig {
    let dir = std::env::temp_dir().join(format!("seam-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let journal = Arc::new(Journal::open(&dir.join("journal.db")).unwrap());
    let tenant = TenantIntake {
        salesforce_org_id: ORG_ID.into(),
        salesforce_token: OM_TOKEN.into(),
        salesforce_secret: SF_SECRET.into(),
        servicenow_secret: SN_SECRET.into(),
    };
    let intake = Arc::new(Intake { journal: journal.clone(), tenants: HashMap::from([(TENANT.to_string(), tenant)]) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, intake::router(intake, max_body)).await.unwrap() });
    let mut config = SimConfig::new(dir.join("sim"));
    config.notify = vec![
        ("salesforce".into(), NotifyTarget { url: format!("{base}/intake/{TENANT}/salesforce/outbound?token={OM_TOKEN}"), secret: None, format: None }),
        ("servicenow".into(), NotifyTarget { url: format!("{base}/intake/{TENANT}/servicenow"), secret: Some(SN_SECRET.into()), format: None }),
    ];
    Rig { sim: Sim::start(config).await.unwrap(), journal, base }
}
