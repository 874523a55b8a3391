//! Trust as a real deployment has it: the operating system's store, read
//! with `SSL_CERT_FILE` and `SSL_CERT_DIR` honoured, and a tenant's extra CA
//! on top of it. The store is read once per process, so each case runs in a
//! child process of this test binary with the environment it needs.

use seam::connectors::RetryPolicy;
use seam_sim::{Sim, SimConfig};
use std::process::Command;

/// Set in the child: which case to run, and where the emulators are.
const CASE: &str = "SEAM_TLS_CASE";
const SIM_URL: &str = "SEAM_TLS_SIM_URL";

/// The child's side: a Salesforce connector with no `ca_pem` logs in to the emulator.
#[tokio::test]
async fn child_connects_without_a_configured_ca() {
    let Ok(case) = std::env::var(CASE) else { return }; // run only as a child
    let login_url = std::env::var(SIM_URL).unwrap();
    let sim_state = std::path::PathBuf::from(std::env::var("SEAM_TLS_SIM_STATE").unwrap());
    let credentials = seam::config::salesforce::Credentials {
        login_url,
        auth: seam::config::salesforce::Auth::JwtBearer {
            consumer_key: seam_sim::credentials::SF_CLIENT_ID.into(),
            username: seam_sim::credentials::SF_USERNAME.into(),
            private_key: seam::secrets::Secret::file(sim_state.join("connected-app.key")),
            audience: None,
        },
        session_minutes: 120,
    };
    let policy = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
    let result = seam::connectors::salesforce::Salesforce::connect(&credentials, "tls", None, policy).await;
    match (case.as_str(), result) {
        ("trusted", Ok(_)) => println!("CONNECTED"),
        ("untrusted", Err(e)) => println!("REFUSED: {e:#}"),
        (case, Ok(_)) => panic!("{case}: connected"),
        (case, Err(e)) => panic!("{case}: {e:#}"),
    }
}

fn run_child(sim: &Sim, case: &str, cert_file: Option<&std::path::Path>) -> String {
    // The child test by its full name in this binary (`tls::child_…`: module_path! less the crate).
    let child = concat!(module_path!(), "::child_connects_without_a_configured_ca");
    let child = child.split_once("::").map_or(child, |(_crate, path)| path);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([child, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .env(SIM_URL, seam_sim::salesforce::oauth::login_url(&sim.salesforce.base_url))
        .env("SEAM_TLS_SIM_STATE", sim.ca_pem.parent().unwrap())
        .env_remove("SSL_CERT_DIR");
    match cert_file {
        Some(path) => command.env("SSL_CERT_FILE", path),
        None => command.env_remove("SSL_CERT_FILE"),
    };
    let output = command.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{case}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn the_emulators_ca_given_only_through_ssl_cert_file_is_trusted_and_without_it_nothing_is() {
    if std::env::var(CASE).is_ok() {
        return;
    }
    let sim = Sim::start(SimConfig::new(seam_tests::scratch_dir("tls"))).await.unwrap();
    let text = run_child(&sim, "trusted", Some(&sim.ca_pem));
    assert!(text.contains("CONNECTED"), "{text}");
    // The system's store alone does not know the emulators' CA.
    let text = run_child(&sim, "untrusted", None);
    assert!(text.contains("REFUSED") && text.to_lowercase().contains("certificate"), "{text}");
    sim.shutdown();
}

#[test]
fn a_configured_ca_is_added_to_the_systems_roots_never_in_their_place() {
    if std::env::var(CASE).is_ok() {
        return;
    }
    let dir = seam_tests::scratch_dir("tls-extra");
    let ca = seam_sim::tls::ensure(&dir).unwrap().ca_pem;
    let system = seam::connectors::tls::roots(None).unwrap().len();
    let with_extra = seam::connectors::tls::roots(Some(&ca)).unwrap().len();
    assert_eq!(with_extra, system + 1);
    let err = seam::connectors::tls::roots(Some(&dir.join("missing.pem"))).unwrap_err();
    assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");
    std::fs::write(dir.join("empty.pem"), "nothing here").unwrap();
    let err = seam::connectors::tls::roots(Some(&dir.join("empty.pem"))).unwrap_err();
    assert!(format!("{err:#}").contains("no PEM certificate"), "{err:#}");
}
