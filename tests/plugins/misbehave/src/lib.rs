//! Misbehaves as the change's `mode` field asks, so the host's containment can be tested.

use seam_guest::*;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

/// Survives between calls only while the host reuses this instance.
static CALLS: AtomicU32 = AtomicU32::new(0);

struct Misbehave;

fn note(text: String) -> Vec<Action> {
    vec![Action::work_note_linked(text)]
}

impl Mapper for Misbehave {
    fn map(change: &Change) -> Result<Vec<Action>, String> {
        match change.text("mode").unwrap_or("echo") {
            "panic" => panic!("misbehave was asked to panic"),
            "loop" => loop {
                black_box(());
            },
            "oom" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(black_box(vec![7u8; 1 << 20]));
                }
            }
            "recurse" => {
                #[allow(unconditional_recursion)] // the point: overflow the stack
                fn down(n: u64) -> u64 {
                    black_box(down(black_box(n + 1))) + 1
                }
                Ok(note(down(0).to_string()))
            }
            "count" => Ok(note(format!("call {}", CALLS.fetch_add(1, Ordering::Relaxed) + 1))),
            "reject" => Err("the change was rejected on purpose".into()),
            "log-flood" => {
                for n in 0..10_000 {
                    log::info(&format!("line {n}"));
                }
                Ok(note("flooded".into()))
            }
            // What the pack sees of the time and of chance: WASI's wall clock, and 16 bytes of `wasi:random`.
            "time-and-chance" => {
                let since_epoch = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default();
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
                Ok(note(format!(
                    "now {since_epoch} random {}",
                    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                )))
            }
            "read-file" => Ok(note(match std::fs::read_to_string("/etc/hostname") {
                Ok(text) => format!("read a host file: {text}"),
                Err(e) => format!("file error: {e}"),
            })),
            "connect" => {
                let port = change.text("port").unwrap_or("80");
                Ok(note(match std::net::TcpStream::connect(format!("127.0.0.1:{port}")) {
                    Ok(_) => "connected".to_string(),
                    Err(e) => format!("network error: {e}"),
                }))
            }
            "lookup" => {
                let record = RecordRef {
                    system: System::Salesforce,
                    object: change.text("object").unwrap_or("Account").to_string(),
                    id: change.text("id").unwrap_or_default().to_string(),
                };
                let wanted: Vec<&str> = change.text("fields").unwrap_or("Name").split(',').collect();
                match lookup(&record, &wanted) {
                    Ok(fields) => Ok(vec![Action::update_linked(fields)]),
                    Err(LookupError::NotGranted(why)) => Ok(note(format!("not granted: {why}"))),
                    Err(LookupError::NotFound) => Ok(note("not found".into())),
                    Err(LookupError::Unavailable(why)) => Err(format!("lookup unavailable: {why}")),
                }
            }
            _ => Ok(vec![Action::update_linked(change.changed.clone())]),
        }
    }
}

export_mapper!(Misbehave);
