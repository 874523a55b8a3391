//! `seam doctor`'s checks of one tenant, against the systems themselves:
//! every secret readable; the hosts resolve and their certificates are
//! trusted; each login works and is the org the configuration names; the API
//! version is offered; the fields seam needs exist for its user (describe,
//! sys_dictionary); the push business rule is installed, active, and posts to
//! this intake with this secret; incident deletes can be read back
//! (sys_audit_delete); intake answers at its public URL; the Slack
//! token is taken. A check that fails says what to do next; a check that
//! depends on a failed one is skipped.

use super::salesforce::Metadata;
use super::servicenow::{property_prefix, rule_name, PUSH_TABLE, SCRIPT_MARKER};
use crate::config::salesforce::Auth as SfAuth;
use crate::config::servicenow::Auth as SnAuth;
use crate::config::{Config, TenantConfig};
use crate::connectors::salesforce::Salesforce;
use crate::connectors::servicenow::{Query, QueryError, ServiceNow};
use crate::connectors::slack::Slack;
use crate::connectors::{error_chain, RetryPolicy};
use crate::engine::normalize::COMPANY_KEY_FIELD;
use crate::secrets::{ExposeSecret, Secret};
use serde_json::Value;
use std::time::Duration;

/// How one check went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass(String),
    /// What is wrong, and the next step to take.
    Fail(String, String),
    /// Not run: it needs a check that failed.
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
}

impl Check {
    pub fn passed(&self) -> bool {
        !matches!(self.outcome, Outcome::Fail(..))
    }
}

fn pass(name: &str, detail: impl Into<String>) -> Check {
    Check { name: name.into(), outcome: Outcome::Pass(detail.into()) }
}

fn fail(name: &str, what: impl Into<String>, next: impl Into<String>) -> Check {
    Check { name: name.into(), outcome: Outcome::Fail(what.into(), next.into()) }
}

fn skip(name: &str, why: &str) -> Check {
    Check { name: name.into(), outcome: Outcome::Skipped(why.into()) }
}

/// Few, quick retries: a doctor says what is wrong rather than waiting it out.
fn policy() -> RetryPolicy {
    RetryPolicy { attempts: 2, base: Duration::from_millis(200), max: Duration::from_secs(1) }
}

/// Every secret of the tenant, as (setting, secret).
pub fn tenant_secrets(name: &str, t: &TenantConfig) -> Vec<(String, Secret)> {
    let at = |k: &str| format!("tenants.{name}.{k}");
    let mut all = Vec::new();
    match &t.salesforce.auth {
        SfAuth::JwtBearer { private_key, .. } => all.push((at("salesforce.auth.private_key"), private_key.clone())),
        SfAuth::ClientCredentials { client_secret, .. } => {
            all.push((at("salesforce.auth.client_secret"), client_secret.clone()))
        }
        SfAuth::Password { client_secret, password, .. } => {
            all.push((at("salesforce.auth.client_secret"), client_secret.clone()));
            all.push((at("salesforce.auth.password"), password.clone()));
        }
    }
    match &t.servicenow.auth {
        SnAuth::Basic { password, .. } => all.push((at("servicenow.auth.password"), password.clone())),
        SnAuth::OauthPassword { client_secret, password, .. } => {
            all.push((at("servicenow.auth.client_secret"), client_secret.clone()));
            all.push((at("servicenow.auth.password"), password.clone()));
        }
        SnAuth::ClientCredentials { client_secret, .. } => {
            all.push((at("servicenow.auth.client_secret"), client_secret.clone()))
        }
    }
    if let Some(slack) = &t.slack {
        all.push((at("slack.token"), slack.token.clone()));
    }
    all.push((at("intake.salesforce_token"), t.intake.salesforce_token.clone()));
    all.push((at("intake.servicenow_secret"), t.intake.servicenow_secret.clone()));
    all
}

/// Host and port of an http(s) URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let default = if scheme == "https" { 443 } else { 80 };
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            Some((host.trim_matches(['[', ']']).to_string(), port.parse().ok()?))
        }
        _ => Some((authority.trim_matches(['[', ']']).to_string(), default)),
    }
}

/// The checks of tenant `name`.
pub async fn tenant(config: &Config, name: &str, t: &TenantConfig) -> Vec<Check> {
    let mut checks = Vec::new();

    // Secrets.
    let unreadable: Vec<String> = tenant_secrets(name, t)
        .iter()
        .filter_map(|(what, s)| s.resolve(what).err().map(|e| format!("{e:#}")))
        .collect();
    let secrets_ok = unreadable.is_empty();
    checks.push(if secrets_ok {
        pass("secrets", "every secret of the tenant can be read")
    } else {
        fail(
            "secrets",
            unreadable.join("; "),
            "set the environment variables or write the files the configuration names",
        )
    });

    // DNS and TLS, for every host the tenant calls.
    let mut urls =
        vec![("Salesforce login", t.salesforce.login_url.clone()), ("ServiceNow", t.servicenow.instance_url.clone())];
    if let Some(slack) = &t.slack {
        urls.push(("Slack", slack.api_url.clone()));
    }
    let mut unresolved = Vec::new();
    for (label, url) in &urls {
        match host_port(url) {
            Some((host, port)) => {
                if let Err(e) = tokio::net::lookup_host((host.as_str(), port)).await {
                    unresolved.push(format!("{label} host {host}: {e}"));
                }
            }
            None => unresolved.push(format!("{label} URL {url:?} is not an http(s) URL")),
        }
    }
    let dns_ok = unresolved.is_empty();
    checks.push(if dns_ok {
        pass(
            "DNS",
            format!(
                "{} resolve",
                urls.iter().filter_map(|(_, u)| host_port(u).map(|h| h.0)).collect::<Vec<_>>().join(", ")
            ),
        )
    } else {
        fail("DNS", unresolved.join("; "), "check the URLs in the configuration, and this machine's DNS")
    });
    let tls = match crate::connectors::tls::http_client(t.ca_pem.as_deref())
        .and_then(|b| Ok(b.timeout(Duration::from_secs(15)).build()?))
    {
        Ok(client) => {
            let mut problems = Vec::new();
            for (label, url) in urls.iter().filter(|(_, u)| u.starts_with("https://")) {
                if let Err(e) = client.get(url).send().await {
                    problems.push(format!("{label} ({url}): {}", error_chain(&e)));
                }
            }
            if problems.is_empty() {
                pass("TLS", "every certificate is trusted")
            } else {
                fail("TLS", problems.join("; "), "if a proxy re-signs traffic, give its CA as ca_pem (or through SSL_CERT_FILE); otherwise check the URL")
            }
        }
        Err(e) => fail("TLS", format!("{e:#}"), "fix ca_pem, or install the system's CA certificates"),
    };
    let tls_ok = tls.passed();
    checks.push(if dns_ok { tls } else { skip("TLS", "needs DNS") });
    let reachable = secrets_ok && dns_ok && tls_ok;

    // Salesforce.
    let salesforce = if reachable {
        Some(Salesforce::connect(&t.salesforce, name, t.ca_pem.as_deref(), policy()).await)
    } else {
        None
    };
    let sf = match salesforce {
        None => {
            checks.push(skip("Salesforce login", "needs the secrets, DNS and TLS"));
            None
        }
        Some(Err(e)) => {
            checks.push(fail(
                "Salesforce login",
                format!("{e:#}"),
                "see docs/real-orgs.md, step 2 (the app and its certificate or secret)",
            ));
            None
        }
        Some(Ok(sf)) => {
            let who = sf.get_path("/services/oauth2/userinfo").await.unwrap_or(Value::Null);
            let org = who["organization_id"].as_str().unwrap_or_default().to_string();
            let user = who["preferred_username"].as_str().unwrap_or("?");
            if !org.is_empty() && !org.eq_ignore_ascii_case(&t.intake.salesforce_org_id) {
                checks.push(fail(
                    "Salesforce login",
                    format!(
                        "logged in as {user}, to org {org}, but intake.salesforce_org_id is {}",
                        t.intake.salesforce_org_id
                    ),
                    format!("set tenants.{name}.intake.salesforce_org_id to {org}, or log in to the org you meant"),
                ));
            } else {
                checks.push(pass(
                    "Salesforce login",
                    format!("{} as {user}, org {org}, API at {}", t.salesforce.auth.flow(), sf.instance_url()),
                ));
            }
            Some(sf)
        }
    };
    match &sf {
        None => {
            checks.push(skip("Salesforce API version", "needs the Salesforce login"));
            checks.push(skip("Salesforce fields", "needs the Salesforce login"));
        }
        Some(sf) => {
            let version = crate::connectors::salesforce::API_VERSION;
            checks.push(match sf.get_path("/services/data").await {
                Ok(Value::Array(versions)) if versions.iter().any(|v| v["version"].as_str() == Some(version)) => {
                    pass("Salesforce API version", format!("v{version} is offered"))
                }
                Ok(other) => fail(
                    "Salesforce API version",
                    format!(
                        "the org offers {}, not v{version}",
                        other
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v["version"].as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "the org is older than seam's API version; upgrade it or ask for a seam built for it",
                ),
                Err(e) => fail(
                    "Salesforce API version",
                    e.to_string(),
                    "check the org's API access (API Enabled) for the integration user",
                ),
            });
            let wanted = match t.ownership() {
                Ok(ownership) => Metadata::for_ownership(&ownership, None).fields,
                Err(e) => {
                    checks.push(fail("Salesforce fields", format!("{e:#}"), "fix the tenant's pack path"));
                    Vec::new()
                }
            };
            let mut missing = Vec::new();
            let objects: std::collections::BTreeSet<&str> = wanted.iter().map(|f| f.object.as_str()).collect();
            let mut failed = None;
            for object in objects {
                // Activity's fields are Task's and Event's; Activity itself is not an sObject to describe.
                let described = if object == "Activity" { "Task" } else { object };
                match sf.get_path(&format!("sobjects/{described}/describe")).await {
                    Ok(describe) => {
                        let names: Vec<&str> = describe["fields"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|f| f["name"].as_str())
                            .collect();
                        missing.extend(
                            wanted
                                .iter()
                                .filter(|f| f.object == object && !names.contains(&f.name.as_str()))
                                .map(|f| format!("{}.{}", f.object, f.name)),
                        );
                    }
                    Err(e) => failed = Some(format!("describing {object}: {e}")),
                }
            }
            if !wanted.is_empty() {
                checks.push(match (failed, missing.is_empty()) {
                    (Some(e), _) => fail("Salesforce fields", e, "give the integration user read access to Case and Account (the Seam_Integration permission set)"),
                    (None, true) => pass("Salesforce fields", format!("{} exist and the integration user sees them", wanted.iter().map(|f| format!("{}.{}", f.object, f.name)).collect::<Vec<_>>().join(", "))),
                    (None, false) => fail(
                        "Salesforce fields",
                        format!("missing or hidden from the integration user: {}", missing.join(", ")),
                        "deploy `seam salesforce metadata` (sf project deploy start) and assign the Seam_Integration permission set to the integration user",
                    ),
                });
            }
        }
    }

    if t.events == crate::config::intake::Source::Pubsub {
        checks.push(match &sf {
            None => skip("Salesforce change events", "needs the Salesforce login"),
            Some(sf) => change_events(t, sf).await,
        });
    }

    // Intake at its public URL: what Salesforce's Outbound Messages and ServiceNow's rule post to.
    checks.push(intake_reachable(config).await);

    // ServiceNow.
    let sn = if !reachable {
        checks.push(skip("ServiceNow login", "needs the secrets, DNS and TLS"));
        None
    } else {
        match ServiceNow::new(&t.servicenow, name, t.ca_pem.as_deref(), policy()) {
            Err(e) => {
                checks.push(fail("ServiceNow login", format!("{e:#}"), "fix the tenant's servicenow section"));
                None
            }
            Ok(sn) => {
                let user = t.servicenow.integration_user().unwrap_or_default().to_string();
                let login = match sn.authenticate().await {
                    Ok(()) => {
                        query(&sn, "sys_user", Query::new().eq("user_name", &user), 1).await.map(|rows| rows.len())
                    }
                    Err(e) => Err(e),
                };
                match login {
                    Ok(1) => {
                        checks.push(pass("ServiceNow login", format!("{} as {user}", t.servicenow.auth.flow())));
                        Some(sn)
                    }
                    Ok(_) => {
                        checks.push(fail(
                            "ServiceNow login",
                            format!("logged in, but there is no user {user}"),
                            "set servicenow.integration_user to the user seam acts as",
                        ));
                        Some(sn)
                    }
                    Err(e) => {
                        checks.push(fail(
                            "ServiceNow login",
                            e.to_string(),
                            "check the credentials, and that the user may use the REST API (docs/real-orgs.md, step 4)",
                        ));
                        None
                    }
                }
            }
        }
    };
    match &sn {
        None => {
            checks.push(skip("ServiceNow field", "needs the ServiceNow login"));
            checks.push(skip("ServiceNow business rule", "needs the ServiceNow login"));
            checks.push(skip("ServiceNow deletes", "needs the ServiceNow login"));
        }
        Some(sn) => {
            checks.push(
                match query(
                    sn,
                    "sys_dictionary",
                    Query::new()
                        .eq("name", "core_company")
                        .and_then(|q| q.eq("element", COMPANY_KEY_FIELD)?.eq("active", "true")),
                    1,
                )
                .await
                {
                    Ok(rows) if !rows.is_empty() => {
                        pass("ServiceNow field", format!("core_company.{COMPANY_KEY_FIELD} exists"))
                    }
                    Ok(_) => fail(
                        "ServiceNow field",
                        format!("core_company has no field {COMPANY_KEY_FIELD}"),
                        "import and commit the update set of `seam servicenow update-set`",
                    ),
                    Err(e) => fail(
                        "ServiceNow field",
                        format!("reading sys_dictionary: {e}"),
                        "give the integration user read access to sys_dictionary, or check the field by hand",
                    ),
                },
            );
            checks.push(business_rule(config, name, t, sn).await);
            // Catch-up polling reads incident deletes from the platform's audit of deletes.
            checks.push(match query(sn, "sys_audit_delete", Query::new().eq("tablename", "incident"), 1).await {
                Ok(_) => pass("ServiceNow deletes", "sys_audit_delete is readable: a delete whose notification is lost is caught up"),
                Err(e) => fail(
                    "ServiceNow deletes",
                    format!("reading sys_audit_delete: {e}"),
                    "add a read ACL on sys_audit_delete for the integration user's role (docs/real-orgs.md, step 3); without it a lost delete notification is not caught up",
                ),
            });
        }
    }

    // Slack.
    if let Some(credentials) = &t.slack {
        checks.push(if !reachable {
            skip("Slack", "needs the secrets, DNS and TLS")
        } else {
            match Slack::new(credentials, name, t.ca_pem.as_deref(), policy()) {
                Ok(slack) => match slack.auth_test().await {
                    Ok(who) => pass(
                        "Slack",
                        format!(
                            "the token is the bot {} of team {}",
                            who["user"].as_str().unwrap_or("?"),
                            who["team"].as_str().unwrap_or("?")
                        ),
                    ),
                    Err(e) => {
                        fail("Slack", e.to_string(), "give a bot token (xoxb-…) of an app installed in the workspace")
                    }
                },
                Err(e) => fail("Slack", format!("{e:#}"), "fix the tenant's slack section"),
            }
        });
    }
    checks
}

/// A query the doctor builds from configuration, or the reason it cannot be sent.
async fn query(
    sn: &ServiceNow,
    table: &str,
    query: Result<Query, QueryError>,
    limit: usize,
) -> crate::connectors::Result<Vec<serde_json::Map<String, Value>>> {
    sn.query(table, &query?, limit).await
}

/// The push rule: installed, active, sending this tenant's changes to this intake, with this secret.
async fn business_rule(config: &Config, name: &str, t: &TenantConfig, sn: &ServiceNow) -> Check {
    const CHECK: &str = "ServiceNow business rule";
    let again = "generate the update set again (`seam servicenow update-set`), import it and commit it";
    let rule = rule_name(name);
    let rows =
        match query(sn, "sys_script", Query::new().eq("collection", PUSH_TABLE).and_then(|q| q.eq("name", &rule)), 5)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                return fail(
                    CHECK,
                    format!("reading sys_script: {e}"),
                    "give the integration user read access to sys_script, or check the rule by hand",
                )
            }
        };
    let Some(found) = rows.first() else {
        return fail(
            CHECK,
            format!("no business rule \"{rule}\" on {PUSH_TABLE}"),
            format!("import and commit the update set of `seam servicenow update-set --tenant {name}`"),
        );
    };
    let text = |k: &str| found.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    if text("active") != "true" {
        return fail(CHECK, format!("\"{rule}\" is inactive"), "activate it (System Definition → Business Rules)");
    }
    if text("when") != "async" || !text("script").starts_with(&format!("{SCRIPT_MARKER}{name}")) {
        return fail(CHECK, format!("\"{rule}\" is not the rule this seam generates for {name} (an older one signs without the timestamp intake requires)"), again);
    }
    let prefix = property_prefix(name);
    let property = |key: String| async move {
        query(sn, "sys_properties", Query::new().eq("name", &key), 1)
            .await
            .map(|rows| rows.first().and_then(|r| r.get("value")).and_then(Value::as_str).map(str::to_string))
    };
    let endpoint = format!("{}/intake/{name}/servicenow", config.public_base());
    match property(format!("{prefix}endpoint")).await {
        Ok(Some(at)) if at == endpoint => {}
        Ok(Some(at)) => return fail(CHECK, format!("the rule posts to {at}, but this intake takes {endpoint}"), again),
        Ok(None) => return fail(CHECK, format!("the property {prefix}endpoint is missing"), again),
        Err(e) => {
            return fail(
                CHECK,
                format!("reading sys_properties: {e}"),
                "give the integration user read access to sys_properties, or check the properties by hand",
            )
        }
    }
    if let (Ok(Some(secret)), Ok(ours)) =
        (property(format!("{prefix}secret")).await, t.intake.servicenow_secret.resolve("secret"))
    {
        if secret != ours.expose_secret() {
            return fail(
                CHECK,
                format!("the rule signs with another secret than tenants.{name}.intake.servicenow_secret"),
                again,
            );
        }
    }
    if let (Ok(Some(user)), Some(ours)) =
        (property(format!("{prefix}integration_user")).await, t.servicenow.integration_user())
    {
        if user != ours {
            return fail(
                CHECK,
                format!("the rule skips {user}'s changes, but seam writes as {ours}: its own writes would come back"),
                again,
            );
        }
    }
    pass(CHECK, format!("\"{rule}\" is active on {PUSH_TABLE} and posts to {endpoint}"))
}

/// Intake answers `GET /intake/healthz` at the public URL. When nothing listens (seam serve is
/// not running), a listener of the doctor's own answers on the configured address instead.
/// The Pub/Sub API answers with seam's session, and Case's change events are there to subscribe to.
async fn change_events(t: &TenantConfig, sf: &Salesforce) -> Check {
    use crate::connectors::salesforce::pubsub::{self, proto};
    const NAME: &str = "Salesforce change events";
    let url = &t.pubsub.url;
    let unreachable = "check that this machine reaches the Pub/Sub API (outbound TCP 7443; a proxy in pubsub.url)";
    let channel = match pubsub::channel(url, t.ca_pem.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(NAME, format!("{e:#}"), "fix the tenant's pubsub.url"),
    };
    let session = match sf.session().await {
        Ok(s) => s,
        Err(e) => return fail(NAME, e.to_string(), "see the Salesforce login check"),
    };
    let metadata = pubsub::CallMetadata {
        access_token: session.access.clone(),
        instance_url: session.instance_url.clone().unwrap_or_default(),
        tenant_id: t.intake.salesforce_org_id.clone(),
    };
    let topic = pubsub::change_event_topic("Case");
    let request = match metadata.request(proto::TopicRequest { topic_name: topic.clone() }) {
        Ok(r) => r,
        Err(e) => return fail(NAME, format!("{e:#}"), "check the session and intake.salesforce_org_id"),
    };
    let mut client = proto::pub_sub_client::PubSubClient::new(channel);
    match tokio::time::timeout(Duration::from_secs(20), client.get_topic(request)).await {
        Err(_) => fail(NAME, format!("{url} did not answer within 20 s"), unreachable),
        Ok(Ok(info)) if info.get_ref().can_subscribe => pass(NAME, format!("{topic} at {url}: the integration user may subscribe")),
        Ok(Ok(_)) => fail(NAME, format!("the integration user may not subscribe to {topic}"), "assign the Seam_Integration permission set to the integration user (View All on Case)"),
        Ok(Err(status)) => match status.code() {
            tonic::Code::NotFound => fail(NAME, format!("{topic}: {}", status.message()), "select Case for Change Data Capture: deploy `seam salesforce metadata` (step 5), or Setup → Change Data Capture"),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => fail(
                NAME,
                format!("the Pub/Sub API refused seam's session: {}", status.message()),
                "check that intake.salesforce_org_id is the org's id and that the integration user has API Enabled",
            ),
            code => fail(NAME, format!("{url}: {code}: {}", status.message()), unreachable),
        },
    }
}

async fn intake_reachable(config: &Config) -> Check {
    const CHECK: &str = "intake reachable";
    let url = format!("{}/intake/healthz", config.public_base());
    let client =
        match crate::connectors::tls::http_client(None).and_then(|b| Ok(b.timeout(Duration::from_secs(10)).build()?)) {
            Ok(c) => c,
            Err(e) => return fail(CHECK, format!("{e:#}"), "install the system's CA certificates"),
        };
    let probe = |client: reqwest::Client| {
        let url = url.clone();
        async move {
            match client.get(&url).send().await {
                Ok(r) => {
                    let status = r.status();
                    match r.text().await {
                        Ok(text) if status.is_success() && text == crate::intake::HEALTH => Ok(()),
                        _ => Err((false, format!("{url} answered {status}, but not as seam's intake"))),
                    }
                }
                Err(e) => Err((e.is_connect(), format!("{url}: {}", error_chain(&e)))),
            }
        }
    };
    match probe(client.clone()).await {
        Ok(()) => pass(CHECK, format!("{url} answers")),
        Err((true, why)) => {
            // Nothing listens: stand in for seam serve on its address and ask again.
            let listener = match tokio::net::TcpListener::bind(&config.listen).await {
                Ok(l) => l,
                Err(e) => {
                    return fail(
                        CHECK,
                        format!("{why}; and {} cannot be listened on: {e}", config.listen),
                        "start seam serve, or free the listen address",
                    )
                }
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(async move {
                let _ = axum::serve(listener, crate::intake::health_router())
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
            let again = probe(client).await;
            let _ = stop.send(());
            let _ = server.await;
            match again {
                Ok(()) => pass(CHECK, format!("{url} reaches this machine's {} (seam serve is not running; the doctor listened there)", config.listen)),
                Err((_, why)) => fail(CHECK, why, "route public_url to this machine's listen address (a reverse proxy terminating HTTPS, or a port forward)"),
            }
        }
        Err((false, why)) => {
            fail(CHECK, why, "public_url reaches something other than seam's intake: route it to seam's listen address")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_and_ports_are_read_from_urls() {
        assert_eq!(super::host_port("https://acme.my.salesforce.com/x"), Some(("acme.my.salesforce.com".into(), 443)));
        assert_eq!(super::host_port("http://127.0.0.1:8787"), Some(("127.0.0.1".into(), 8787)));
        assert_eq!(super::host_port("https://[::1]:8443/x"), Some(("::1".into(), 8443)));
        assert_eq!(super::host_port("nope"), None);
    }
}
