//! The admin listener under attack: a caller without the token must not get to
//! send (or make seam read) a body.

use seam::cli::serve::{sim_config, start_engine};
use seam_tests::{seampack, CASE_INCIDENT};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_admin_token_is_refused_before_any_body_is_read() {
    let state = seam_tests::scratch_dir("admin-auth");
    let pack = state.join("case-incident.seampack");
    std::fs::write(&pack, seampack(CASE_INCIDENT, "case-incident", None)).unwrap();
    let (sim, config) = sim_config(&state, &pack, &[], None, seam::intake::salesforce::pubsub::Source::OutboundMessages).await.unwrap();
    let _engine = start_engine(&config, std::future::pending()).await.unwrap();

    // A 60 MiB pack upload announced with `Expect: 100-continue`, and a wrong token: the answer
    // comes at once, and it is not `100 Continue`.
    let mut stream = tokio::net::TcpStream::connect(&config.listen).await.unwrap();
    let head = format!(
        "POST /admin/tenants/demo/packs HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer guess\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        config.listen,
        60 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.expect("an answer without the body").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("admin token"), "{answer}");

    // With the token, the same route reads its body (a bad pack is refused by what it holds).
    let token = seam::secrets::ExposeSecret::expose_secret(&config.admin_token().unwrap().unwrap()).to_string();
    let r = reqwest::Client::new().post(format!("http://{}/admin/tenants/demo/packs", config.listen)).bearer_auth(token).body("not a pack").send().await.unwrap();
    assert_eq!(r.status(), 422, "{}", r.text().await.unwrap());
    sim.shutdown();
}

#[tokio::test]
async fn a_configuration_with_no_key_to_trust_is_refused_unless_it_allows_unsigned_packs() {
    let state = seam_tests::scratch_dir("trust");
    let pack = state.join("case-incident.seampack");
    std::fs::write(&pack, seampack(CASE_INCIDENT, "case-incident", None)).unwrap();
    let (sim, mut config) = sim_config(&state, &pack, &[], None, seam::intake::salesforce::pubsub::Source::OutboundMessages).await.unwrap();
    assert!(config.allow_unsigned, "the emulators' configuration allows the unsigned packs this checkout builds");
    config.check().unwrap();
    config.allow_unsigned = false;
    let refused = config.check().unwrap_err().to_string();
    assert!(refused.contains("trusted_keys") && refused.contains("allow_unsigned"), "{refused}");
    let refused = start_engine(&config, std::future::pending()).await.err().expect("the engine does not start").to_string();
    assert!(refused.contains("trusted_keys"), "{refused}");
    sim.shutdown();
}
