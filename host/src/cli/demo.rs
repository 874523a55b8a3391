//! `seam demo`: the Case ⇄ Incident story on the embedded emulators, no
//! credentials needed. People edit records through the real APIs; each
//! change is read back, mapped by the default pack, and carried across.

use crate::connectors::RetryPolicy;
use crate::engine::apply::Systems;
use crate::engine::normalize;
use crate::model::{Change, ChangeKind};
use crate::runtime::{Grants, NoRecords, Plugin, Runtime, RuntimeConfig};
use crate::sim::{Sim, SimConfig};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct DemoArgs {
    /// The mapping pack to run.
    #[arg(long, default_value = "target/wasm32-wasip2/plugin/case_incident.wasm")]
    pub pack: PathBuf,
    /// Where the emulators keep their state (a fresh temporary directory by default).
    #[arg(long)]
    pub state: Option<PathBuf>,
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

struct Demo {
    systems: Systems,
    plugin: Plugin,
    step: u32,
}

impl Demo {
    /// Map one change with the pack and carry the actions across.
    async fn sync(&mut self, change: Change) -> Result<()> {
        self.step += 1;
        let (result, timing) = self.plugin.map_timed(&change, Arc::new(NoRecords)).await;
        let actions = result?;
        println!("    pack {} → {} action(s) in {:.0} µs", self.plugin.meta(), actions.len(), (timing.instantiate + timing.call).as_secs_f64() * 1e6);
        for action in &actions {
            println!("      {action}");
        }
        let writes = self.systems.apply(&change, &actions).await.context("carrying the actions across")?;
        for write in writes {
            let fields: Vec<String> = write.fields.iter().map(|f| format!("{}={}", f.name, f.value)).collect();
            println!("    ✓ {} {} {}: {}", write.operation, write.record.system, write.record.object, fields.join(", "));
        }
        println!();
        Ok(())
    }

    async fn case_changed(&mut self, id: &str, kind: ChangeKind, changed: Option<&[&str]>) -> Result<()> {
        let record = self.systems.salesforce.get("Case", id).await?;
        let change = normalize::salesforce(&format!("demo-{}", self.step), kind, "Case", &record, changed);
        self.sync(change).await
    }

    async fn incident_changed(&mut self, id: &str, changed: &[&str]) -> Result<()> {
        let record = self.systems.servicenow.get("incident", id).await?;
        let change = normalize::servicenow(&format!("demo-{}", self.step), ChangeKind::Updated, "incident", &record, Some(changed));
        self.sync(change).await
    }
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let wasm = super::read_pack(&args.pack)?;
    let temporary = args.state.is_none();
    let state = args.state.unwrap_or_else(|| std::env::temp_dir().join(format!("seam-demo-{}", std::process::id())));
    let sim = Sim::start(SimConfig::new(state.clone())).await?;
    println!("Emulators (state in {}):", state.display());
    super::sim::print_banner(&sim);

    let systems = sim.systems(RetryPolicy::default()).await?;

    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = runtime.load(&super::pack_name(&args.pack), "demo", &wasm, Grants::default()).await?;
    println!("\nLoaded pack {} ({}, {:?})\n", plugin.meta(), plugin.api(), plugin.load_outcome());
    let mut demo = Demo { systems, plugin, step: 0 };
    let (sf, sn) = (&demo.systems.salesforce, &demo.systems.servicenow);

    println!("▶ The customer exists in both systems under one stable key, ACME-001");
    let account = sf.create("Account", &obj(json!({ "Name": "Acme Corporation", "External_Id__c": "ACME-001", "AnnualRevenue": 5.0e7, "Tier__c": "Gold" }))).await?;
    sn.insert("core_company", &obj(json!({ "name": "ACME Corp (EMEA)", "u_sf_external_id": "ACME-001", "customer": "true" }))).await?;
    println!("    Salesforce Account {account}; ServiceNow company 'ACME Corp (EMEA)' (a different name: matching is by key)\n");

    println!("▶ Jane raises a Case in Salesforce");
    let case = sf
        .create("Case", &obj(json!({ "Subject": "Checkout API returns 502", "Description": "Every third checkout call fails since 09:12 UTC.", "Priority": "High", "Origin": "Web", "AccountId": account })))
        .await?;
    demo.case_changed(&case, ChangeKind::Created, None).await?;
    let incident = demo.systems.salesforce.get("Case", &case).await?[normalize::CASE_INCIDENT_FIELD].as_str().unwrap_or_default().to_string();

    println!("▶ Jane raises the customer priority to Critical");
    demo.systems.salesforce.update("Case", &case, &obj(json!({ "Priority": "Critical" }))).await?;
    demo.case_changed(&case, ChangeKind::Updated, Some(&["Priority"])).await?;

    println!("▶ Beth picks the incident up in ServiceNow");
    demo.systems.servicenow.update("incident", &incident, &obj(json!({ "state": "2", "assigned_to": "Beth Anglin", "work_notes": "Gateway 4.2.1 rolled out at 09:10." }))).await?;
    demo.incident_changed(&incident, &["state", "assigned_to", "work_notes"]).await?;

    println!("▶ Beth resolves it");
    demo.systems
        .servicenow
        .update("incident", &incident, &obj(json!({ "state": "6", "close_code": "Solved (Permanently)", "close_notes": "Rolled back gateway config 4.2.1." })))
        .await?;
    demo.incident_changed(&incident, &["state", "close_code", "close_notes"]).await?;

    let (sf, sn) = (&demo.systems.salesforce, &demo.systems.servicenow);
    let case_now = sf.get("Case", &case).await?;
    let inc_now = sn.get("incident", &incident).await?;
    let v = |r: &Map<String, Value>, f: &str| r.get(f).map(|x| x.get("display_value").unwrap_or(x).to_string()).unwrap_or_default();
    println!("Where things stand, read back from the emulators:");
    println!("  Case {} {}: Status={} Priority={} Incident={} Assignee={}", v(&case_now, "CaseNumber"), case, v(&case_now, "Status"), v(&case_now, "Priority"), v(&case_now, "ServiceNow_Number__c"), v(&case_now, "ServiceNow_Assignee__c"));
    println!("  Incident {} {}: state={} priority={} company={} correlation_id={}", v(&inc_now, "number"), incident, v(&inc_now, "state"), v(&inc_now, "priority"), v(&inc_now, "company"), v(&inc_now, "correlation_id"));
    for comment in sf.query(&format!("SELECT CommentBody, IsPublished FROM CaseComment WHERE ParentId = '{case}'")).await? {
        println!("  Case comment: {}", comment["CommentBody"]);
    }
    println!(
        "\nAPI calls made by seam and the demo's people: Salesforce {}, ServiceNow {}.",
        sf.http().calls(),
        sn.http().calls()
    );
    println!("(Webhook intake, the durable journal and echo suppression arrive with the sync engine.)");
    sim.shutdown();
    if temporary {
        let _ = std::fs::remove_dir_all(&state);
    }
    Ok(())
}
