//! `seam demo`: the Case ⇄ Incident story, told through the default pack.

use crate::model::{Change, ChangeKind, Field, RecordRef, System};
use crate::runtime::{Grants, NoRecords, RecordSource, Runtime, RuntimeConfig};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct DemoArgs {
    /// The mapping pack to run.
    #[arg(long, default_value = "target/wasm32-wasip2/plugin/case_incident.wasm")]
    pub pack: PathBuf,
}

fn case() -> RecordRef {
    RecordRef { system: System::Salesforce, object: "Case".into(), id: "5005g00000ABCDeAAF".into() }
}
fn incident() -> RecordRef {
    RecordRef { system: System::Servicenow, object: "incident".into(), id: "9d385017c611228701d22104cc95c371".into() }
}

fn change(n: u32, source: RecordRef, kind: ChangeKind, changed: Vec<Field>, rest: Vec<Field>, user: &str) -> Change {
    let linked = match source.system {
        System::Salesforce if n > 1 => Some(incident()),
        System::Servicenow => Some(case()),
        _ => None,
    };
    let mut snapshot = rest;
    snapshot.extend(changed.iter().cloned());
    Change { event_id: format!("demo-{n}"), kind, source, changed, snapshot, origin_user: user.into(), linked }
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let wasm = super::read_pack(&args.pack)?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = runtime.load(&super::pack_name(&args.pack), "demo", &wasm, Grants::default()).await?;
    println!("loaded {} ({}, {:?}, sha256 {}…)\n", plugin.meta(), plugin.api(), plugin.load_outcome(), &plugin.meta().sha256[..12]);

    let f = |name: &str, value: &str| Field::new(name, value);
    let case_base = || vec![f("CaseNumber", "00001026"), f("Status", "New"), f("AccountId", "0015g00000XYZ12AAB")];
    let inc_base = || vec![f("number", "INC0010001"), f("correlation_id", case().id.as_str())];
    let story = [
        ("A customer raises a Case in Salesforce", change(
            1, case(), ChangeKind::Created,
            vec![f("Subject", "Checkout API returns 502"), f("Description", "Every third checkout call fails since 09:12 UTC."), f("Priority", "High")],
            case_base(), "jane.agent@acme.example")),
        ("The agent raises the customer priority", change(
            2, case(), ChangeKind::Updated, vec![f("Priority", "Critical")],
            case_base(), "jane.agent@acme.example")),
        ("ServiceNow picks the incident up", change(
            3, incident(), ChangeKind::Updated, vec![f("state", "2"), f("assigned_to", "Beth Anglin")],
            inc_base(), "beth.anglin")),
        ("ServiceNow resolves it", change(
            4, incident(), ChangeKind::Updated, vec![f("state", "6"), f("close_notes", "Rolled back gateway config 4.2.1.")],
            inc_base(), "beth.anglin")),
    ];

    let records: Arc<dyn RecordSource> = Arc::new(NoRecords);
    for (title, change) in story {
        let (result, timing) = plugin.map_timed(&change, records.clone()).await;
        println!("▶ {title}: {} {} {:?}", change.source.system, change.source.object, change.kind);
        for field in &change.changed {
            println!("    {} = {}", field.name, field.value);
        }
        for action in result? {
            println!("  → {action}");
        }
        println!("    ({:.0} µs instantiate, {:.0} µs map)\n", timing.instantiate.as_secs_f64() * 1e6, timing.call.as_secs_f64() * 1e6);
    }
    println!("The emulated Salesforce / ServiceNow round trip arrives with the emulators and the sync engine.");
    Ok(())
}
