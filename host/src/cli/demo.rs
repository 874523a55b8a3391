//! `seam demo`: the Case ⇄ Incident story on the embedded emulators, through
//! the real engine. People edit records through the systems' APIs; the
//! emulators push notifications to seam's intake; the engine journals them,
//! drops its own echoes, enforces ownership, runs the pack and writes across.
//! Each step prints what seam wrote, from its audit trail.

use super::simulated::{sim_config, Simulated};
use crate::connectors::salesforce::soql;
use crate::connectors::RetryPolicy;
use crate::engine::apply::Systems;
use crate::service::{start_engine, Engine};
use crate::store::EventStatus;
use anyhow::{Context, Result};
use clap::Args;
use seam_sim::Sim;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TENANT: &str = "demo";

#[derive(Args)]
pub struct DemoArgs {
    /// The mapping pack to run.
    #[arg(long, default_value = "target/case-incident.seampack")]
    pub pack: PathBuf,
    /// The workflow pack to run beside it (the sev-1 bridge).
    #[arg(long, default_value = "target/sev1-bridge.seampack")]
    pub workflow: PathBuf,
    /// Where the emulators and the journal keep their state (a fresh temporary directory by default).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// How the emulated org's changes reach seam.
    #[arg(long, value_enum, default_value = "pubsub")]
    pub salesforce_events: crate::config::intake::Source,
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

struct Demo {
    sim: Sim,
    engine: Engine,
    people: Systems,
    audited: i64,
}

impl Demo {
    /// Wait until every notification is delivered and every event processed, then print seam's writes.
    async fn settle(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut quiet = 0;
        while quiet < 5 {
            let pending = self.sim.salesforce.notifier.as_ref().map_or(0, |n| n.stats().pending)
                + self.sim.servicenow.notifier.as_ref().map_or(0, |n| n.stats().pending)
                + self.engine.journal.run(|j| j.status_count(TENANT, EventStatus::Pending)).await?;
            quiet = if pending == 0 { quiet + 1 } else { 0 };
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the engine did not settle within 30 s (see SEAM_LOG=debug)"
            );
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let after = self.audited;
        let (rows, dead) = self
            .engine
            .journal
            .run(move |j| Ok((j.audit_after(TENANT, after)?, j.status_count(TENANT, EventStatus::Dead)?)))
            .await?;
        if rows.is_empty() {
            println!("    seam wrote nothing");
        }
        for (id, record, field, entry) in rows {
            let old = entry.old.map(|o| o.to_string()).unwrap_or_else(|| "—".into());
            println!(
                "    ✓ {} {} {}.{field}: {old} → {}   ({}, {})",
                record.system,
                record.object,
                short(&record.id),
                entry.new,
                entry.reason,
                entry.pack
            );
            self.audited = id;
        }
        anyhow::ensure!(dead == 0, "{dead} event(s) were dead-lettered; see `seam dlq list`");
        println!();
        Ok(())
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(10)]
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let temporary = args.state.is_none();
    let state = args.state.unwrap_or_else(|| std::env::temp_dir().join(format!("seam-demo-{}", std::process::id())));
    crate::packs::read_pack(&args.pack)?;
    crate::packs::read_pack(&args.workflow)?;
    let (sim, config) =
        sim_config(&state, &args.pack, std::slice::from_ref(&args.workflow), None, args.salesforce_events).await?;
    println!("Emulators (state in {}):", state.display());
    super::sim::print_banner(&sim);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = start_engine(&config, async move {
        let _ = stop_rx.await;
    })
    .await?;
    match args.salesforce_events {
        crate::config::intake::Source::Pubsub => println!(
            "seam subscribes to the org's change events at {}; ServiceNow's push rule posts to seam's intake on {}\n",
            sim.pubsub_url, engine.intake_url
        ),
        crate::config::intake::Source::OutboundMessages => {
            println!("seam intake on {}; the emulators push their notifications there\n", engine.intake_url)
        }
    }
    let people = sim.systems(RetryPolicy::default()).await?;
    let mut demo = Demo { sim, engine, people, audited: 0 };

    println!("▶ The customer exists in both systems under one stable key, ACME-001 (the names differ)");
    let account = demo.people.salesforce.create("Account", &obj(json!({ "Name": "Acme Corporation", "External_Id__c": "ACME-001", "AnnualRevenue": 5.0e7, "Tier__c": "Gold" }))).await?;
    demo.people
        .servicenow
        .insert(
            "core_company",
            &obj(json!({ "name": "ACME Corp (EMEA)", "u_sf_external_id": "ACME-001", "customer": "true" })),
        )
        .await?;
    demo.settle().await?;

    println!("▶ Jane raises a Case in Salesforce");
    let case = demo
        .people
        .salesforce
        .create("Case", &obj(json!({ "Subject": "Checkout API returns 502", "Description": "Every third checkout call fails since 09:12 UTC.", "Priority": "High", "Origin": "Web", "AccountId": account })))
        .await?;
    demo.settle().await?;
    let incident = demo.people.salesforce.get("Case", &case).await?["ServiceNow_Incident__c"]
        .as_str()
        .context("the Case was not linked to an incident")?
        .to_string();

    println!("▶ Jane raises the customer priority to Critical: a sev-1 on a Gold account. The mapping writes urgency (its echo is dropped);");
    println!("  the sev1-bridge workflow gives the account owner a Task and opens a Slack bridge, in the same event");
    demo.people.salesforce.update("Case", &case, &obj(json!({ "Priority": "Critical" }))).await?;
    demo.settle().await?;

    println!("▶ Beth picks the incident up in ServiceNow");
    demo.people.servicenow.update("incident", &incident, &obj(json!({ "state": "2", "assigned_to": "Beth Anglin", "work_notes": "Gateway 4.2.1 rolled out at 09:10." }))).await?;
    demo.settle().await?;

    println!("▶ Beth resolves it");
    demo.people
        .servicenow
        .update("incident", &incident, &obj(json!({ "state": "6", "close_code": "Solved (Permanently)", "close_notes": "Rolled back gateway config 4.2.1." })))
        .await?;
    demo.settle().await?;

    println!("▶ Jane reopens the Case by hand, but its Status mirrors the incident, which ServiceNow owns");
    demo.people.salesforce.update("Case", &case, &obj(json!({ "Status": "New" }))).await?;
    demo.settle().await?;

    let (sf, sn) = (&demo.people.salesforce, &demo.people.servicenow);
    let case_now = sf.get("Case", &case).await?;
    let inc_now = sn.get("incident", &incident).await?;
    let v = |r: &Map<String, Value>, f: &str| {
        r.get(f).map(|x| x.get("display_value").unwrap_or(x).to_string()).unwrap_or_default()
    };
    println!("Where things stand, read back from the emulators:");
    println!(
        "  Case {} {case}: Status={} Priority={} Incident={} Assignee={}",
        v(&case_now, "CaseNumber"),
        v(&case_now, "Status"),
        v(&case_now, "Priority"),
        v(&case_now, "ServiceNow_Number__c"),
        v(&case_now, "ServiceNow_Assignee__c")
    );
    println!(
        "  Incident {} {incident}: state={} priority={} company={} correlation_id={}",
        v(&inc_now, "number"),
        v(&inc_now, "state"),
        v(&inc_now, "priority"),
        v(&inc_now, "company"),
        v(&inc_now, "correlation_id")
    );
    for comment in
        sf.query(&format!("SELECT CommentBody FROM CaseComment WHERE ParentId = {}", soql::literal(&case))).await?
    {
        println!("  Case comment: {}", comment["CommentBody"]);
    }
    for task in sf
        .query(&format!("SELECT Subject, Priority, OwnerId FROM Task WHERE WhatId = {}", soql::literal(&case)))
        .await?
    {
        println!(
            "  Task for the account team: {} (Priority {}, owner {})",
            task["Subject"], task["Priority"], task["OwnerId"]
        );
    }
    if let Some(slack) = &demo.people.slack {
        for channel in slack.channels().await? {
            for text in slack.history(&channel.1).await? {
                println!("  Slack #{}:\n    {}", channel.0, text.replace('\n', "\n    "));
            }
        }
    }
    // The question an auditor asks months later, answered from the journal (`seam audit why`).
    let record = crate::model::RecordRef {
        system: crate::model::System::Servicenow,
        object: "incident".into(),
        id: incident.clone(),
    };
    let (urgency, journaled) =
        demo.engine.journal.run(move |j| Ok((j.why(Some(TENANT), &record, "urgency")?, j.count(TENANT)?))).await?;
    println!(
        "\nWhy is the incident's urgency {}? (`seam audit why servicenow incident {incident} urgency`)",
        urgency.first().map(|c| c.new.to_string()).unwrap_or_default()
    );
    for change in &urgency {
        let old = change.old.as_ref().map(|o| o.to_string()).unwrap_or_else(|| "—".into());
        println!("  {old} → {} by {}, because:", change.new, change.pack);
        for line in change.event.as_ref().map(super::audit::describe_event).unwrap_or_default() {
            println!("      {line}");
        }
    }
    let c = &demo.engine.processors[TENANT].counters;
    println!(
        "\nseam: {} events journaled, {} echoes dropped, {} writes, {} reverted, {} dead letters; {} API calls to Salesforce and {} to ServiceNow made by the people above.",
        journaled,
        c.echoes.get(),
        c.writes.get(),
        c.reverts.get(),
        c.dead_letters.get(),
        sf.http().calls(),
        sn.http().calls(),
    );
    let _ = stop_tx.send(());
    demo.sim.shutdown();
    if temporary {
        let _ = std::fs::remove_dir_all(&state);
    }
    Ok(())
}
