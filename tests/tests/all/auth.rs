//! Logging in to real orgs, tried against the emulators, which check each
//! flow as Salesforce and ServiceNow do: the JWT bearer flow verified by the
//! signature against the app's certificate, client credentials only on the
//! My Domain, form-encoded token calls, refresh before expiry, one new login
//! when a session is revoked. Each refusal reaches the operator with the fix.

use seam::cli::simulated::Simulated;
use seam::config::{salesforce, servicenow};
use seam::connectors::salesforce::Salesforce;
use seam::connectors::servicenow::ServiceNow;
use seam::connectors::RetryPolicy;
use seam::secrets::Secret;
use seam_sim::credentials::*;
use seam_sim::{Sim, SimConfig};
use serde_json::{json, Value};
use std::time::Duration;

fn quick() -> RetryPolicy {
    RetryPolicy { attempts: 3, base: Duration::from_millis(5), max: Duration::from_millis(50) }
}

async fn start(name: &str) -> Sim {
    Sim::start(SimConfig::new(seam_tests::scratch_dir(&format!("auth-{name}")))).await.unwrap()
}

/// A client of the emulators' own controls (`/__admin/...`).
async fn admin(sim: &Sim, method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let client = seam::connectors::tls::http_client(Some(&sim.ca_pem)).unwrap().build().unwrap();
    let mut request = client.request(method, &url);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.json().await.unwrap_or(Value::Null)
}

fn jwt(sim: &Sim, key: Secret, username: &str, audience: Option<&str>) -> salesforce::Credentials {
    let mut c = sim.salesforce_credentials();
    c.auth = salesforce::Auth::JwtBearer {
        consumer_key: SF_CLIENT_ID.into(),
        username: username.into(),
        private_key: key,
        audience: audience.map(str::to_string),
    };
    c
}

async fn sf_error(credentials: &salesforce::Credentials, sim: &Sim) -> String {
    match Salesforce::connect(credentials, "acme", Some(&sim.ca_pem), quick()).await {
        Ok(_) => panic!("the login was accepted"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn the_jwt_bearer_flow_logs_in_with_the_apps_key_and_each_flaw_is_named_with_its_fix() {
    let sim = start("jwt").await;
    let key = Secret::file(&sim.connected_app.private_key);
    let sf = Salesforce::connect(&jwt(&sim, key.clone(), SF_USERNAME, None), "acme", Some(&sim.ca_pem), quick())
        .await
        .unwrap();
    // The login host (localhost) hands out the org's My Domain (127.0.0.1) as the API host.
    assert_eq!(sf.instance_url(), sim.salesforce.base_url);
    let who = sf.get_path("/services/oauth2/userinfo").await.unwrap();
    assert_eq!(
        (who["organization_id"].as_str(), who["preferred_username"].as_str()),
        (Some(seam_sim::salesforce::ORG_ID), Some(SF_USERNAME))
    );

    // A key whose certificate is not the app's.
    let dir = seam_tests::scratch_dir("auth-jwt-other-key");
    let (other_key, _) = seam_sim::salesforce::connected_app::new_key_pair("someone else").unwrap();
    let other = dir.join("other.key");
    seam::secrets::write_secret_file(&other, &other_key).unwrap();
    let err = sf_error(&jwt(&sim, Secret::file(&other), SF_USERNAME, None), &sim).await;
    assert!(
        err.contains("invalid assertion") && err.contains(&other.display().to_string()) && err.contains("upload"),
        "{err}"
    );

    // A user who is not pre-authorized for the app.
    let err = sf_error(&jwt(&sim, key.clone(), "pat.partner@acme.example", None), &sim).await;
    assert!(err.contains("user hasn't approved this consumer") && err.contains("pre-authorized"), "{err}");

    // The sandbox audience against a production org.
    let err = sf_error(&jwt(&sim, key.clone(), SF_USERNAME, Some("https://test.salesforce.com")), &sim).await;
    assert!(err.contains("audience is invalid") && err.contains("auth.audience"), "{err}");

    // A consumer key the org does not know.
    let mut unknown = jwt(&sim, key.clone(), SF_USERNAME, None);
    if let salesforce::Auth::JwtBearer { consumer_key, .. } = &mut unknown.auth {
        *consumer_key = "3MVG-not-an-app".into();
    }
    let err = sf_error(&unknown, &sim).await;
    assert!(err.contains("client identifier invalid") && err.contains("Consumer Details"), "{err}");

    // Not a key at all: refused before any call, naming the file.
    let garbage = dir.join("garbage.key");
    seam::secrets::write_secret_file(&garbage, "not a key").unwrap();
    let err = sf_error(&jwt(&sim, Secret::file(&garbage), SF_USERNAME, None), &sim).await;
    assert!(err.contains("not an RSA private key") && err.contains(&garbage.display().to_string()), "{err}");
    sim.shutdown();
}

#[tokio::test]
async fn an_expired_assertion_is_refused_as_salesforce_refuses_it() {
    let sim = start("expired").await;
    let pem = std::fs::read(&sim.connected_app.private_key).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let claims = json!({ "iss": SF_CLIENT_ID, "sub": SF_USERNAME, "aud": "https://login.salesforce.com", "exp": chrono::Utc::now().timestamp() - 600 });
    let assertion =
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).unwrap();
    let client = seam::connectors::tls::http_client(Some(&sim.ca_pem)).unwrap().build().unwrap();
    let login = seam_sim::salesforce::oauth::login_url(&sim.salesforce.base_url);
    let response = client
        .post(format!("{login}/services/oauth2/token"))
        .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "error": "invalid_grant", "error_description": "expired authorization code" })
    );
    // A JSON body is not a token request.
    let response = client
        .post(format!("{login}/services/oauth2/token"))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
    sim.shutdown();
}

#[tokio::test]
async fn client_credentials_work_on_the_my_domain_and_are_refused_on_the_login_host() {
    let sim = start("cc").await;
    let cc = |login_url: &str| salesforce::Credentials {
        login_url: login_url.into(),
        auth: salesforce::Auth::ClientCredentials {
            client_id: SF_CLIENT_ID.into(),
            client_secret: Secret::value(SF_CLIENT_SECRET),
        },
        session_minutes: 120,
    };
    let sf = Salesforce::connect(&cc(&sim.salesforce.base_url), "acme", Some(&sim.ca_pem), quick()).await.unwrap();
    assert!(sf.query("SELECT Id FROM User").await.unwrap().len() >= 2);
    let err = sf_error(&cc(&seam_sim::salesforce::oauth::login_url(&sim.salesforce.base_url)), &sim).await;
    assert!(err.contains("request not supported on this domain") && err.contains("my.salesforce.com"), "{err}");
    // login.salesforce.com itself is refused before any call.
    let err = sf_error(&cc("https://login.salesforce.com"), &sim).await;
    assert!(err.contains("only on the org's My Domain"), "{err}");
    let mut wrong = cc(&sim.salesforce.base_url);
    wrong.auth = salesforce::Auth::ClientCredentials {
        client_id: SF_CLIENT_ID.into(),
        client_secret: Secret::value("not-the-secret"),
    };
    let err = sf_error(&wrong, &sim).await;
    assert!(err.contains("invalid client credentials") && err.contains("client secret"), "{err}");
    sim.shutdown();
}

#[tokio::test]
async fn the_username_password_flow_still_works_where_the_org_allows_it_and_says_why_not_where_it_does_not() {
    let sim = start("password").await;
    let password = salesforce::Credentials {
        login_url: seam_sim::salesforce::oauth::login_url(&sim.salesforce.base_url),
        auth: salesforce::Auth::Password {
            client_id: SF_CLIENT_ID.into(),
            client_secret: Secret::value(SF_CLIENT_SECRET),
            username: SF_USERNAME.into(),
            password: Secret::value(format!("{SF_PASSWORD}{SF_SECURITY_TOKEN}")),
        },
        session_minutes: 120,
    };
    Salesforce::connect(&password, "acme", Some(&sim.ca_pem), quick()).await.unwrap();
    admin(
        &sim,
        reqwest::Method::PUT,
        format!("{}/__admin/org", sim.salesforce.base_url),
        Some(json!({ "block_username_password": true })),
    )
    .await;
    let err = sf_error(&password, &sim).await;
    assert!(err.contains("authentication failure") && err.contains("jwt_bearer"), "{err}");
    sim.shutdown();
}

#[tokio::test]
async fn a_revoked_salesforce_session_is_replaced_by_one_new_login_and_the_call_goes_through() {
    let sim = start("revoked").await;
    let sf = Salesforce::connect(&sim.salesforce_credentials(), "acme", Some(&sim.ca_pem), quick()).await.unwrap();
    let logins = |v: Value| v["logins"]["jwt"].as_u64().unwrap();
    let app = format!("{}/__admin/connected-app", sim.salesforce.base_url);
    assert_eq!(logins(admin(&sim, reqwest::Method::GET, app.clone(), None).await), 1);
    let ended =
        admin(&sim, reqwest::Method::DELETE, format!("{}/__admin/sessions", sim.salesforce.base_url), None).await;
    assert_eq!(ended["ended"], 1);
    // Sixteen calls at once, all with the revoked session: one new login between them.
    let bodies: Vec<serde_json::Map<String, Value>> = (0..16)
        .map(|i| serde_json::from_value(json!({ "Subject": format!("after revocation {i}") })).unwrap())
        .collect();
    let calls: Vec<_> = bodies.iter().map(|body| sf.create("Case", body)).collect();
    for created in futures::future::join_all(calls).await {
        created.unwrap();
    }
    assert_eq!(logins(admin(&sim, reqwest::Method::GET, app, None).await), 2);
    sim.shutdown();
}

fn sn_oauth(sim: &Sim, auth: servicenow::Auth) -> servicenow::Credentials {
    servicenow::Credentials {
        instance_url: sim.servicenow.base_url.clone(),
        auth,
        integration_user: Some(SN_USERNAME.into()),
    }
}

#[tokio::test]
async fn servicenow_tokens_are_renewed_before_they_expire_and_replaced_when_revoked() {
    let sim = start("sn-oauth").await;
    let oauth = format!("{}/__admin/oauth", sim.servicenow.base_url);
    // A token that lives 122 s (the instance says 121, a second short, as ServiceNow does) is
    // within two minutes of expiry a second after it is issued.
    admin(&sim, reqwest::Method::PUT, oauth.clone(), Some(json!({ "access_token_lifespan": 122 }))).await;
    let sn = ServiceNow::new(&sim.servicenow_credentials(), "acme", Some(&sim.ca_pem), quick()).unwrap();
    sn.authenticate().await.unwrap();
    sn.query("sys_user", &seam::connectors::servicenow::Query::literal("active=true"), 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sn.query("sys_user", &seam::connectors::servicenow::Query::literal("active=true"), 10).await.unwrap();
    let grants = admin(&sim, reqwest::Method::GET, oauth.clone(), None).await["grants"].clone();
    assert_eq!((grants["password"].as_u64(), grants["refresh_token"].as_u64()), (Some(1), Some(1)), "{grants}");

    // Every token revoked: the next call is refused once, logs in with the password again, and succeeds.
    admin(&sim, reqwest::Method::PUT, oauth.clone(), Some(json!({ "access_token_lifespan": 1800 }))).await;
    sn.query("sys_user", &seam::connectors::servicenow::Query::literal("active=true"), 10).await.unwrap();
    admin(&sim, reqwest::Method::DELETE, format!("{}/__admin/sessions", sim.servicenow.base_url), None).await;
    assert_eq!(
        sn.query("sys_user", &seam::connectors::servicenow::Query::new().eq("user_name", SN_USERNAME).unwrap(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let grants = admin(&sim, reqwest::Method::GET, oauth, None).await["grants"].clone();
    assert_eq!(grants["password"].as_u64(), Some(2), "{grants}");
    sim.shutdown();
}

#[tokio::test]
async fn servicenow_client_credentials_need_the_property_and_basic_still_works() {
    let sim = start("sn-cc").await;
    let cc = sn_oauth(
        &sim,
        servicenow::Auth::ClientCredentials {
            client_id: SN_CLIENT_ID.into(),
            client_secret: Secret::value(SN_CLIENT_SECRET),
        },
    );
    let sn = ServiceNow::new(&cc, "acme", Some(&sim.ca_pem), quick()).unwrap();
    sn.authenticate().await.unwrap();
    let created = sn
        .insert("incident", &serde_json::from_value(json!({ "short_description": "as the application user" })).unwrap())
        .await
        .unwrap();
    assert_eq!(created["sys_created_by"], SN_USERNAME);

    // The instance's admin switches the grant off.
    let admin_sn = ServiceNow::new(
        &sn_oauth(
            &sim,
            servicenow::Auth::Basic { username: SN_ADMIN_USERNAME.into(), password: Secret::value(SN_ADMIN_PASSWORD) },
        ),
        "acme",
        Some(&sim.ca_pem),
        quick(),
    )
    .unwrap();
    let property = &admin_sn
        .query(
            "sys_properties",
            &seam::connectors::servicenow::Query::new()
                .eq("name", seam_sim::servicenow::oauth::CLIENT_CREDENTIALS_PROPERTY)
                .unwrap(),
            1,
        )
        .await
        .unwrap()[0];
    admin_sn
        .update(
            "sys_properties",
            property["sys_id"].as_str().unwrap(),
            &serde_json::from_value(json!({ "value": "false" })).unwrap(),
        )
        .await
        .unwrap();
    let err =
        ServiceNow::new(&cc, "acme", Some(&sim.ca_pem), quick()).unwrap().authenticate().await.unwrap_err().to_string();
    assert!(
        err.contains("access_denied") && err.contains("glide.oauth.inbound.client.credential.grant_type.enabled"),
        "{err}"
    );

    // A wrong password for the password grant names the user to check.
    let wrong = sn_oauth(
        &sim,
        servicenow::Auth::OauthPassword {
            client_id: SN_CLIENT_ID.into(),
            client_secret: Secret::value(SN_CLIENT_SECRET),
            username: SN_USERNAME.into(),
            password: Secret::value("nope"),
        },
    );
    let err = ServiceNow::new(&wrong, "acme", Some(&sim.ca_pem), quick())
        .unwrap()
        .authenticate()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("401") && err.contains(SN_USERNAME), "{err}");
    sim.shutdown();
}

#[tokio::test]
async fn secrets_come_from_the_environment_and_a_missing_one_is_named() {
    let sim = start("env").await;
    let mut c = sim.servicenow_credentials();
    std::env::set_var("SEAM_AUTH_TEST_SN_PASSWORD", SN_PASSWORD);
    c.auth =
        servicenow::Auth::Basic { username: SN_USERNAME.into(), password: Secret::env("SEAM_AUTH_TEST_SN_PASSWORD") };
    let sn = ServiceNow::new(&c, "acme", Some(&sim.ca_pem), quick()).unwrap();
    assert_eq!(
        sn.query("sys_user", &seam::connectors::servicenow::Query::new().eq("user_name", SN_USERNAME).unwrap(), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    c.auth = servicenow::Auth::Basic { username: SN_USERNAME.into(), password: Secret::env("SEAM_AUTH_TEST_UNSET") };
    let err = ServiceNow::new(&c, "acme", Some(&sim.ca_pem), quick()).err().unwrap().to_string();
    assert!(err.contains("tenants.acme.servicenow.auth.password") && err.contains("SEAM_AUTH_TEST_UNSET"), "{err}");
    sim.shutdown();
}
