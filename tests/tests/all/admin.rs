//! The listeners under attack: the admin API apart from intake and on
//! loopback, tokens scoped to a tenant and a use, a caller without a token
//! never getting to send (or make seam read) a body, and slow, greedy or
//! flooding clients on intake.

use seam::cli::simulated::sim_config;
use seam::config::Config;
use seam::secrets::Secret;
use seam::service::start_engine;
use seam_tests::{seampack, CASE_INCIDENT};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The emulators and a configuration for them, with the case-incident pack.
async fn on_sim(name: &str) -> (seam_sim::Sim, Config, std::path::PathBuf) {
    let state = seam_tests::scratch_dir(name);
    let pack = state.join("case-incident.seampack");
    std::fs::write(&pack, seampack(CASE_INCIDENT, "case-incident", None)).unwrap();
    let (sim, config) =
        sim_config(&state, &pack, &[], None, seam::config::intake::Source::OutboundMessages).await.unwrap();
    (sim, config, state)
}

/// Send raw bytes, then read what comes back within `wait`: the text, or "" when the server closed.
async fn raw(stream: &mut tokio::net::TcpStream, wait: Duration) -> String {
    let mut answer = vec![0u8; 4096];
    match tokio::time::timeout(wait, stream.read(&mut answer)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&answer[..n]).to_string(),
        Ok(Err(_)) => String::new(),
        Err(_) => "(no answer)".to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_admin_token_is_refused_before_any_body_is_read() {
    let (sim, config, _) = on_sim("admin-auth").await;
    let _engine = start_engine(&config, std::future::pending()).await.unwrap();

    // A 60 MiB pack upload announced with `Expect: 100-continue`, and a wrong token: the answer
    // comes at once, and it is not `100 Continue`.
    let mut stream = tokio::net::TcpStream::connect(&config.admin.listen).await.unwrap();
    let head = format!(
        "POST /admin/tenants/demo/packs HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer guess\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        config.admin.listen,
        60 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("admin token"), "{answer}");

    // With the token, the same route reads its body (a bad pack is refused by what it holds).
    let token =
        seam::secrets::ExposeSecret::expose_secret(&config.admin.operator_token().unwrap().unwrap()).to_string();
    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/tenants/demo/packs", config.admin.listen))
        .bearer_auth(token)
        .body("not a pack")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "{}", r.text().await.unwrap());
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_has_its_own_loopback_listener_and_each_token_its_tenant_and_scope() {
    let (sim, mut config, _) = on_sim("admin-scopes").await;
    let (read, operate) = ("demo-read-token-0123456789", "demo-operate-token-0123456789");
    let tenant = config.tenants.get_mut("demo").unwrap();
    tenant.admin_tokens.read = Some(Secret::value(read));
    tenant.admin_tokens.operate = Some(Secret::value(operate));
    let operator =
        seam::secrets::ExposeSecret::expose_secret(&config.admin.operator_token().unwrap().unwrap()).to_string();
    let engine = start_engine(&config, std::future::pending()).await.unwrap();
    assert!(engine.admin_url.starts_with("http://127.0.0.1:"), "loopback: {}", engine.admin_url);
    assert_eq!(
        seam::config::admin::AdminSettings::default().listen,
        "127.0.0.1:8788",
        "loopback unless configured otherwise"
    );

    // Intake, which faces the internet, serves none of it.
    let http = reqwest::Client::new();
    for path in ["/admin/packs", "/admin/api/overview", "/dashboard", "/metrics"] {
        let r = http.get(format!("{}{path}", engine.intake_url)).bearer_auth(&operator).send().await.unwrap();
        assert_eq!(r.status(), 404, "intake answers {path}");
    }
    assert_eq!(http.get(format!("{}/dashboard", engine.admin_url)).send().await.unwrap().status(), 200);

    let admin = engine.admin_url.clone();
    let call = |method: reqwest::Method, path: &str, token: &str| {
        http.request(method, format!("{admin}{path}")).bearer_auth(token).body("not a pack").send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    use reqwest::Method;
    // Reading: each token sees its tenant.
    for token in [read, operate, &operator] {
        let packs: serde_json::Value = call(Method::GET, "/admin/packs", token).await.unwrap().json().await.unwrap();
        assert_eq!(packs[0]["tenant"], "demo", "{packs}");
        let overview: serde_json::Value =
            call(Method::GET, "/admin/api/overview", token).await.unwrap().json().await.unwrap();
        assert_eq!(overview["tenants"].as_array().unwrap().len(), 1);
    }
    // Another tenant's trail is not for a tenant's token.
    let trail = "/admin/api/trail?tenant=globex&system=salesforce&object=Case&id=500000000000001AAA";
    assert_eq!(status(call(Method::GET, trail, read).await.unwrap()), 403);
    assert_eq!(status(call(Method::GET, trail, &operator).await.unwrap()), 200);
    // Operating: the read token is refused before anything is read or changed; the others reach the handler.
    let refused = call(Method::POST, "/admin/tenants/demo/packs", read).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("operate token"));
    assert_eq!(status(call(Method::POST, "/admin/tenants/demo/packs/rollback", read).await.unwrap()), 403);
    for token in [operate, &operator] {
        assert_eq!(
            status(call(Method::POST, "/admin/tenants/demo/packs", token).await.unwrap()),
            422,
            "a bad pack, refused by what it holds"
        );
    }
    assert_eq!(
        status(call(Method::POST, "/admin/tenants/globex/packs", operate).await.unwrap()),
        403,
        "not this token's tenant"
    );
    assert_eq!(status(call(Method::POST, "/admin/api/dead-letters/999999/redrive", operate).await.unwrap()), 404);
    assert_eq!(
        status(call(Method::GET, "/admin/packs", "demo-read-token-012345678").await.unwrap()),
        401,
        "a prefix is not the token"
    );
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_greedy_and_flooding_clients_cannot_hold_intake() {
    let (sim, mut config, _) = on_sim("intake-limits").await;
    config.limits = seam::config::limits::Limits {
        max_connections: 4,
        header_timeout_seconds: 1,
        body_timeout_seconds: 1,
        intake_per_second: 0.2,
        intake_burst: 5,
    };
    let engine = start_engine(&config, std::future::pending()).await.unwrap();
    let connect = || tokio::net::TcpStream::connect(&config.listen);
    let healthy = || async {
        reqwest::get(format!("{}/intake/healthz", engine.intake_url)).await.map(|r| r.status().as_u16()).unwrap_or(0)
    };

    // Headers trickling in: the connection is closed once their time is up.
    let mut slow_head = connect().await.unwrap();
    slow_head.write_all(b"POST /intake/demo/servicenow HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let answer = raw(&mut slow_head, Duration::from_secs(5)).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "slow headers: {answer:?}");

    // A body that never finishes: 408, within its deadline.
    let mut slow_body = connect().await.unwrap();
    slow_body
        .write_all(b"POST /intake/demo/servicenow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"event_id\":")
        .await
        .unwrap();
    let answer = raw(&mut slow_body, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "slow body: {answer:?}");
    drop((slow_head, slow_body));

    // Connections past the cap are closed as they arrive; a freed slot takes the next one.
    // The slow connections' slots come free as the server finishes closing them.
    let mut held = Vec::new();
    let started = std::time::Instant::now();
    while held.len() < 4 {
        let mut c = connect().await.unwrap();
        let _ = c.write_all(b"GET /intake/healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        if raw(&mut c, Duration::from_secs(2)).await.starts_with("HTTP/1.1 200") {
            held.push(c);
        } else {
            assert!(started.elapsed() < Duration::from_secs(5), "{} of 4 slots free", held.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut one_more = connect().await.unwrap();
    let _ = one_more.write_all(b"GET /intake/healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw(&mut one_more, Duration::from_secs(2)).await, "", "the fifth connection is closed");
    drop(held);
    let started = std::time::Instant::now();
    while healthy().await != 200 {
        assert!(started.elapsed() < Duration::from_secs(5), "a freed slot serves again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A flood: past the tenant's burst, 429 with Retry-After, before a body is read; nothing journaled.
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..8 {
        let r = http.post(format!("{}/intake/demo/servicenow", engine.intake_url)).body("{}").send().await.unwrap();
        answers.push((
            r.status().as_u16(),
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string),
        ));
    }
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!limited.is_empty() && answers.iter().all(|(s, _)| *s == 401 || *s == 429), "{answers:?}");
    assert!(
        limited.iter().all(|(_, after)| after.as_deref().and_then(|a| a.parse::<u64>().ok()).is_some_and(|a| a >= 1)),
        "{answers:?}"
    );
    assert_eq!(answers.last().unwrap().0, 429, "{answers:?}");
    assert_eq!(engine.journal.count("demo").unwrap(), 0);
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_serve_tls_with_the_configured_certificate() {
    let (sim, mut config, state) = on_sim("listener-tls").await;
    // The emulators' certificate (127.0.0.1, signed by their CA) serves as seam's own here.
    let (cert, key, ca) = (state.join("sim/server.pem"), state.join("sim/server.key"), state.join("sim/ca.pem"));
    (config.tls_cert, config.tls_key) = (Some(cert.clone()), Some(key.clone()));
    (config.admin.tls_cert, config.admin.tls_key) = (Some(cert), Some(key));
    config.check().unwrap();
    let engine = start_engine(&config, std::future::pending()).await.unwrap();
    assert!(engine.intake_url.starts_with("https://") && engine.admin_url.starts_with("https://"));
    let https = seam::connectors::tls::http_client(Some(&ca)).unwrap().build().unwrap();
    let r = https.get(format!("{}/intake/healthz", engine.intake_url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(https.get(format!("{}/dashboard", engine.admin_url)).send().await.unwrap().status(), 200);
    // Plain HTTP to a TLS listener gets no answer a client would take.
    assert!(!reqwest::get(format!("http://{}/intake/healthz", config.listen))
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false));
    // Half a pair is refused, naming both settings.
    config.admin.tls_key = None;
    let refused = config.check().unwrap_err();
    assert!(format!("{refused:#}").contains("admin.tls_cert and admin.tls_key"), "{refused:#}");
    sim.shutdown();
}

#[tokio::test]
async fn a_configuration_with_no_key_to_trust_is_refused_unless_it_allows_unsigned_packs() {
    let state = seam_tests::scratch_dir("trust");
    let pack = state.join("case-incident.seampack");
    std::fs::write(&pack, seampack(CASE_INCIDENT, "case-incident", None)).unwrap();
    let (sim, mut config) =
        sim_config(&state, &pack, &[], None, seam::config::intake::Source::OutboundMessages).await.unwrap();
    assert!(config.allow_unsigned, "the emulators' configuration allows the unsigned packs this checkout builds");
    config.check().unwrap();
    config.allow_unsigned = false;
    let refused = config.check().unwrap_err().to_string();
    assert!(refused.contains("trusted_keys") && refused.contains("allow_unsigned"), "{refused}");
    let refused =
        start_engine(&config, std::future::pending()).await.err().expect("the engine does not start").to_string();
    assert!(refused.contains("trusted_keys"), "{refused}");
    sim.shutdown();
}
