//! Paths of the packs `build.rs` compiled for these tests.

include!(concat!(env!("OUT_DIR"), "/packs.rs"));

/// The bytes of a pack built by `build.rs`.
pub fn pack_bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path} (built by tests/build.rs): {e}"))
}

use seam::cli::simulated::Simulated;
use seam::config::intake::TenantIntake;
use seam::intake::{self, Intake};
use seam::store::{EventStatus, Journal};
use seam_sim::notify::NotifyTarget;
use seam_sim::{salesforce::ORG_ID, Sim, SimConfig};
use std::collections::HashMap;
use std::sync::Arc;

/// The tenant the rig serves, and the secrets its notifications carry.
pub const TENANT: &str = "acme";
pub const OM_TOKEN: &str = "om-token";
pub const SN_SECRET: &str = "sn-secret";

/// A journal, seam's intake on loopback, and the emulators pushing their notifications to it.
pub struct Rig {
    pub sim: Sim,
    pub journal: Arc<Journal>,
    /// Where the journal is, to open it again as a restarted host would.
    pub journal_path: std::path::PathBuf,
    /// `http://127.0.0.1:PORT` of the intake.
    pub base: String,
    /// The counters intake keeps for tenant `demo` (echoes it settles): a processor's, shared.
    pub counters: seam::engine::processor::Counters,
}

/// A fresh, empty `seam-test-{name}-{pid}` in the system's temp directory. A
/// test's directory stays after it for a look at what went wrong; the ones
/// earlier runs left for `name`, by processes no longer running, are removed
/// here, so runs do not fill the disk.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let tmp = std::env::temp_dir();
    let prefix = format!("seam-test-{name}-");
    // Process liveness from /proc; where there is none, old directories stay.
    if std::path::Path::new("/proc/self").exists() {
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let file_name = entry.file_name();
            let Some(pid) =
                file_name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|rest| rest.parse::<u32>().ok())
            else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tmp.join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

pub async fn rig(name: &str, max_body: usize) -> Rig {
    let dir = scratch_dir(name);
    let journal_path = dir.join("journal.db");
    let journal = Arc::new(Journal::open(&journal_path).unwrap());
    let tenant = TenantIntake {
        salesforce_org_id: ORG_ID.into(),
        salesforce_token: seam::secrets::Secret::value(OM_TOKEN),
        servicenow_secret: seam::secrets::Secret::value(SN_SECRET),
    }
    .keys(TENANT)
    .unwrap();
    let counters = seam::engine::processor::Counters::default();
    let intake = Arc::new(Intake::new(
        journal.clone(),
        HashMap::from([(TENANT.to_string(), tenant)]),
        HashMap::from([(TENANT.to_string(), counters.clone())]),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, intake::router(intake, max_body)).await.unwrap() });
    let mut config = SimConfig::new(dir.join("sim"));
    config.notify = vec![(
        "salesforce".into(),
        NotifyTarget {
            url: format!("{base}/intake/{TENANT}/salesforce/outbound?token={OM_TOKEN}"),
            secret: None,
            format: None,
        },
    )];
    let sim = Sim::start(config).await.unwrap();
    // The instance sends through seam's push rule, as its admin installs it.
    sim.install_push_rule(TENANT, &format!("{base}/intake/{TENANT}/servicenow"), SN_SECRET).unwrap();
    Rig { sim, journal, journal_path, base, counters }
}

/// `component` (a path from `build.rs`) as a pack, with `plugins/<pack>/pack.json` as its
/// manifest, at `version` when given.
pub fn seampack(component: &str, pack: &str, version: Option<&str>) -> Vec<u8> {
    seampack_with(component, pack, |manifest| {
        if let Some(v) = version {
            manifest.version = v.into();
        }
    })
}

/// [`seampack`] with the manifest changed by `edit` first (another name, say).
pub fn seampack_with(component: &str, pack: &str, edit: impl FnOnce(&mut seam::packs::Manifest)) -> Vec<u8> {
    let path = format!("{}/../plugins/{pack}/pack.json", env!("CARGO_MANIFEST_DIR"));
    let mut manifest = seam::packs::Manifest::parse(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut manifest);
    seam::packs::artifact::build(&pack_bytes(component), &manifest).unwrap()
}

/// The engine serving tenant `demo` on freshly started emulators, with `mapping` and
/// `workflows` (pack bytes) written into a fresh state directory named after `name`.
pub async fn engine_on_sim(
    name: &str,
    mapping: Vec<u8>,
    workflows: &[Vec<u8>],
) -> (Sim, seam::service::Engine, seam::config::Config) {
    engine_on_sim_with(name, mapping, workflows, |_| {}).await
}

/// [`engine_on_sim`], with the configuration adjusted by `tweak` before the engine starts.
pub async fn engine_on_sim_with(
    name: &str,
    mapping: Vec<u8>,
    workflows: &[Vec<u8>],
    tweak: impl FnOnce(&mut seam::config::Config),
) -> (Sim, seam::service::Engine, seam::config::Config) {
    engine_on_sim_events(name, mapping, workflows, seam::config::intake::Source::OutboundMessages, tweak).await
}

/// [`engine_on_sim_with`], with the org's changes coming as `events` say.
pub async fn engine_on_sim_events(
    name: &str,
    mapping: Vec<u8>,
    workflows: &[Vec<u8>],
    events: seam::config::intake::Source,
    tweak: impl FnOnce(&mut seam::config::Config),
) -> (Sim, seam::service::Engine, seam::config::Config) {
    let state = scratch_dir(name);
    let mapping_path = state.join("mapping.seampack");
    std::fs::write(&mapping_path, mapping).unwrap();
    let workflow_paths: Vec<std::path::PathBuf> = workflows
        .iter()
        .enumerate()
        .map(|(n, bytes)| {
            let path = state.join(format!("workflow-{n}.seampack"));
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect();
    let (sim, mut config) =
        seam::cli::simulated::sim_config(&state, &mapping_path, &workflow_paths, None, events).await.unwrap();
    // Tests reconcile when they mean to, not on a timer.
    config.reconcile_minutes = 0;
    tweak(&mut config);
    let engine = seam::service::start_engine(&config, std::future::pending()).await.unwrap();
    (sim, engine, config)
}

/// Wait until the emulators have nothing left to send and `demo`'s journal nothing left to do.
pub async fn settle(sim: &Sim, engine: &seam::service::Engine) {
    settle_within(sim, engine, std::time::Duration::from_secs(30)).await;
}

/// The emulator's bus position a tenant's Pub/Sub subscription to `topic` has stored (`None` before any).
pub fn stored_replay(journal: &Journal, tenant: &str, topic: &str) -> Option<u64> {
    let position = journal.watermark(tenant, &seam::intake::salesforce::pubsub::position_source(topic)).unwrap()?;
    // The emulator's replay ids are 8 bytes, big-endian: here in hex, before the '@'.
    Some(position.split('@').next().and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0))
}

/// Case change events the org published that `demo`'s Pub/Sub subscription has not stored (0 without one).
fn unread_case_events(sim: &Sim, stored: Option<u64>) -> u64 {
    let Some(stored) = stored else { return 0 };
    sim.salesforce.change_events.as_ref().unwrap().newest("/data/CaseChangeEvent").saturating_sub(stored)
}

/// [`settle`] with a time bound; returns when the quiet began (five empty looks, 50 ms apart).
pub async fn settle_within(
    sim: &Sim,
    engine: &seam::service::Engine,
    limit: std::time::Duration,
) -> std::time::Instant {
    let started = std::time::Instant::now();
    let mut quiet_since: Option<(std::time::Instant, u32)> = None;
    loop {
        // Read as serving code reads, off the tokio workers (see `blocking::serving_keeps_sqlite_off_the_tokio_workers`).
        let (waiting, stored) = engine
            .journal
            .run(|j| {
                Ok((j.status_count("demo", EventStatus::Pending)?, stored_replay(j, "demo", "/data/CaseChangeEvent")))
            })
            .await
            .unwrap();
        let pending = waiting
            + sim.salesforce.notifier.as_ref().unwrap().pending()
            + sim.servicenow.notifier.as_ref().unwrap().pending()
            + unread_case_events(sim, stored);
        quiet_since = match (pending, quiet_since) {
            (0, Some((at, looks))) if looks + 1 >= 5 => return at,
            (0, Some((at, looks))) => Some((at, looks + 1)),
            (0, None) => Some((std::time::Instant::now(), 1)),
            _ => None,
        };
        assert!(started.elapsed() < limit, "not settled after {limit:?}: {pending} pending");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
