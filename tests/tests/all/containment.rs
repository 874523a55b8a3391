//! A pack that traps, loops, eats memory or pokes at the sandbox only ever
//! fails its own call; the host keeps serving.

use seam::model::{Action, Change, ChangeKind, Field, JournalKind, RecordRef, System, Target, Value};
use seam::runtime::{
    CacheOutcome, Grant, Grants, LinkedPack, NoRecords, PackError, RecordSource, Runtime, RuntimeConfig, StaticRecord,
    StaticRecords,
};
use seam::transience::Transience;
use seam_tests::{pack_bytes, CASE_INCIDENT, FUTURE_API, MISBEHAVE};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config() -> RuntimeConfig {
    RuntimeConfig { call_budget: Duration::from_millis(300), memory_limit: 16 << 20, ..RuntimeConfig::default() }
}

async fn misbehave(runtime: &Runtime, grants: Grants) -> LinkedPack {
    runtime.load("misbehave", "test", &pack_bytes(MISBEHAVE), grants).await.unwrap()
}

fn ask(mode: &str, extra: &[(&str, &str)]) -> Change {
    let mut fields = vec![Field::new("mode", mode)];
    fields.extend(extra.iter().map(|(k, v)| Field::new(*k, *v)));
    Change {
        event_id: format!("ask-{mode}"),
        kind: ChangeKind::Updated,
        source: RecordRef { system: System::Salesforce, object: "Case".into(), id: "500000000000001AAA".into() },
        changed: fields.clone(),
        snapshot: fields,
        origin_user: "tester".into(),
        linked: Some(RecordRef { system: System::Servicenow, object: "incident".into(), id: "0".repeat(32) }),
    }
}

fn none() -> Arc<dyn RecordSource> {
    Arc::new(NoRecords)
}

/// The pack still answers a well-behaved call correctly.
async fn still_serving(linked: &LinkedPack) {
    let actions =
        linked.run(&ask("echo", &[("Subject", "hello")]), none()).await.expect("a normal call after a failure");
    assert_eq!(
        actions,
        vec![Action::Update {
            target: Target::Linked,
            fields: vec![Field::new("mode", "echo"), Field::new("Subject", "hello")]
        }]
    );
}

fn only_note(actions: &[Action]) -> &str {
    match actions {
        [Action::AppendJournal { kind: JournalKind::WorkNote, text, .. }] => text,
        other => panic!("expected one work note, got {other:?}"),
    }
}

/// The note a `time-and-chance` call answers: what the pack read of its clock and randomness.
async fn time_and_chance(linked: &LinkedPack, change: &Change) -> String {
    match linked.run(change, none()).await.unwrap().as_slice() {
        [Action::AppendJournal { text, .. }] => text.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_replayed_event_sees_the_same_clock_and_randomness_and_another_event_its_own() {
    let runtime = Runtime::new(config()).unwrap();
    let linked = misbehave(&runtime, Grants::default()).await;
    // Committed at 2026-12-01T09:12:00Z, as Salesforce stamps it.
    let change = ask("time-and-chance", &[("SystemModstamp", "2026-12-01T09:12:00.000+0000")]);
    let first = time_and_chance(&linked, &change).await;
    assert!(first.starts_with("now 1796116320000 "), "the clock reads the commit time: {first}");
    // The same event again, later, on a warm instance and on a fresh one: the same answer.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(time_and_chance(&linked, &change).await, first);
    let fresh = misbehave(&Runtime::new(config()).unwrap(), Grants::default()).await;
    assert_eq!(time_and_chance(&fresh, &change).await, first, "another instance, the same answer");
    // Another event: its own time (ServiceNow's stamp) and its own draws.
    let mut other = ask("time-and-chance", &[("sys_updated_on", "2026-12-01 09:13:00")]);
    other.source = RecordRef { system: System::Servicenow, object: "incident".into(), id: "a".repeat(32) };
    other.event_id = "another".into();
    let second = time_and_chance(&linked, &other).await;
    assert!(second.starts_with("now 1796116380000 "), "{second}");
    assert_ne!(second.rsplit(' ').next(), first.rsplit(' ').next(), "another event draws other bytes");
    // A replay under `run_at` (the processor's fallback, when the change names no time).
    let bare = ask("time-and-chance", &[]);
    match linked.run_at(&bare, 42_000, none()).await.unwrap().as_slice() {
        [Action::AppendJournal { text, .. }] => assert!(text.starts_with("now 42000 "), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_change_that_traps_fails_its_whole_batch_and_the_rest_answer_alone() {
    let runtime = Runtime::new(config()).unwrap();
    let linked = misbehave(&runtime, Grants::default()).await;
    let batch = [ask("echo", &[]), ask("panic", &[]), ask("reject", &[])];
    match linked.run_batch(&batch, none()).await {
        Err(PackError::Trap { message, .. }) => {
            assert!(message.contains("misbehave was asked to panic"), "{message}")
        }
        other => panic!("a trap fails the whole call, got {other:?}"),
    }
    // Run alone, the others answer as they would have.
    assert!(linked.run(&batch[0], none()).await.is_ok());
    assert!(matches!(linked.run(&batch[2], none()).await, Err(PackError::Rejected { .. })));
    still_serving(&linked).await;
}

#[tokio::test]
async fn a_panicking_pack_traps_with_its_panic_message() {
    let runtime = Runtime::new(config()).unwrap();
    let linked = misbehave(&runtime, Grants::default()).await;
    match linked.run(&ask("panic", &[]), none()).await {
        Err(e @ PackError::Trap { .. }) => {
            let text = e.to_string();
            assert!(text.contains("misbehave was asked to panic"), "{text}");
            assert!(text.contains("misbehave@test"), "{text}");
            assert!(!e.is_transient());
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    still_serving(&linked).await;
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_budget() {
    let runtime = Runtime::new(config()).unwrap();
    let linked = misbehave(&runtime, Grants::default()).await;
    let started = Instant::now();
    let result = linked.run(&ask("loop", &[]), none()).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(PackError::Timeout { budget, .. }) if budget == Duration::from_millis(300)),
        "{result:?}"
    );
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "stopped after {took:?}");
    still_serving(&linked).await;
}

/// One worker thread: if the looping guest held it, nothing else could run.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_looping_pack_does_not_hold_the_executor() {
    let runtime = Runtime::new(RuntimeConfig { call_budget: Duration::from_secs(3), ..config() }).unwrap();
    let linked = Arc::new(misbehave(&runtime, Grants::default()).await);
    let looping = tokio::spawn({
        let linked = linked.clone();
        async move { linked.run(&ask("loop", &[]), none()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    for _ in 0..20 {
        still_serving(&linked).await;
    }
    let took = started.elapsed();
    assert!(!looping.is_finished(), "the loop should still be running");
    assert!(took < Duration::from_secs(1), "20 calls beside a looping guest took {took:?}");
    assert!(matches!(looping.await.unwrap(), Err(PackError::Timeout { .. })));
}

#[tokio::test]
async fn a_memory_hog_is_stopped_at_its_limit() {
    let runtime = Runtime::new(config()).unwrap();
    let linked = misbehave(&runtime, Grants::default()).await;
    match linked.run(&ask("oom", &[]), none()).await {
        Err(e @ PackError::OutOfMemory { limit, wanted, .. }) => {
            assert_eq!(limit, 16 << 20);
            assert!(wanted > limit, "{e}");
        }
        other => panic!("expected out-of-memory, got {other:?}"),
    }
    still_serving(&linked).await;
}

#[tokio::test]
async fn unbounded_recursion_traps_on_stack_overflow() {
    let runtime = Runtime::new(config()).unwrap();
    let linked = misbehave(&runtime, Grants::default()).await;
    match linked.run(&ask("recurse", &[]), none()).await {
        Err(PackError::Trap { message, .. }) => assert!(message.contains("stack"), "{message}"),
        other => panic!("expected a stack-overflow trap, got {other:?}"),
    }
    still_serving(&linked).await;
}

#[tokio::test]
async fn a_rejection_is_permanent_and_carries_the_reason() {
    let runtime = Runtime::new(config()).unwrap();
    let linked = misbehave(&runtime, Grants::default()).await;
    match linked.run(&ask("reject", &[]), none()).await {
        Err(e @ PackError::Rejected { .. }) => {
            assert!(e.to_string().contains("rejected on purpose"));
            assert!(!e.is_transient());
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn packs_have_no_filesystem_and_no_network() {
    let runtime = Runtime::new(config()).unwrap();
    let linked = misbehave(&runtime, Grants::default()).await;
    let actions = linked.run(&ask("read-file", &[]), none()).await.unwrap();
    assert!(only_note(&actions).starts_with("file error"), "{actions:?}");

    // A real listener on loopback that the guest must not reach.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let actions = linked.run(&ask("connect", &[("port", &port)]), none()).await.unwrap();
    assert!(only_note(&actions).starts_with("network error"), "{actions:?}");
}

#[tokio::test]
async fn a_log_flood_is_cut_off_and_the_call_completes() {
    let runtime = Runtime::new(config()).unwrap();
    let linked = misbehave(&runtime, Grants::default()).await;
    let actions = linked.run(&ask("log-flood", &[]), none()).await.unwrap();
    assert_eq!(only_note(&actions), "flooded");
}

fn account_records() -> Arc<dyn RecordSource> {
    Arc::new(StaticRecords {
        records: vec![StaticRecord {
            record: RecordRef { system: System::Salesforce, object: "Account".into(), id: "001000000000001AAA".into() },
            fields: [("Name".to_string(), Value::from("Acme")), ("AnnualRevenue".to_string(), Value::Number(5e7))]
                .into(),
        }],
    })
}

#[tokio::test]
async fn lookups_read_only_what_the_pack_was_granted() {
    let runtime = Runtime::new(config()).unwrap();
    let grants = Grants(vec![Grant {
        system: System::Salesforce,
        object: "Account".into(),
        fields: vec!["AnnualRevenue".into()],
    }]);
    let linked = misbehave(&runtime, grants).await;
    let id = ("id", "001000000000001AAA");

    let actions = linked.run(&ask("lookup", &[id, ("fields", "AnnualRevenue")]), account_records()).await.unwrap();
    assert_eq!(
        actions,
        vec![Action::Update {
            target: Target::Linked,
            fields: vec![Field { name: "AnnualRevenue".into(), value: Value::Number(5e7) }]
        }]
    );

    let actions = linked.run(&ask("lookup", &[id, ("fields", "AnnualRevenue,Name")]), account_records()).await.unwrap();
    assert_eq!(only_note(&actions), "not granted: the pack may not read Name of salesforce Account");

    let actions = linked.run(&ask("lookup", &[id, ("object", "Contact")]), account_records()).await.unwrap();
    assert_eq!(only_note(&actions), "not granted: the pack has no grant to read salesforce Contact");

    let actions = linked
        .run(&ask("lookup", &[("id", "001000000000002AAA"), ("fields", "AnnualRevenue")]), account_records())
        .await
        .unwrap();
    assert_eq!(only_note(&actions), "not found");
}

#[tokio::test]
async fn an_unreachable_lookup_makes_the_failure_transient() {
    let runtime = Runtime::new(config()).unwrap();
    let grants = Grants(vec![Grant { system: System::Salesforce, object: "Account".into(), fields: vec!["*".into()] }]);
    let linked = misbehave(&runtime, grants).await;
    match linked.run(&ask("lookup", &[("id", "001000000000001AAA")]), none()).await {
        Err(e @ PackError::LookupUnavailable { .. }) => assert!(e.is_transient(), "{e}"),
        other => panic!("expected a transient lookup failure, got {other:?}"),
    }
}

async fn count(linked: &LinkedPack) -> String {
    only_note(&linked.run(&ask("count", &[]), none()).await.unwrap()).to_string()
}

#[tokio::test]
async fn a_warm_instance_serves_only_its_own_pack_and_never_after_a_failure() {
    let runtime = Runtime::new(RuntimeConfig { calls_per_instance: 3, ..config() }).unwrap();
    let (tenant_a, tenant_b) =
        (misbehave(&runtime, Grants::default()).await, misbehave(&runtime, Grants::default()).await);
    // The guest's static counter shows which instance answered.
    assert_eq!(count(&tenant_a).await, "call 1");
    assert_eq!(count(&tenant_a).await, "call 2");
    assert_eq!(count(&tenant_b).await, "call 1", "another tenant's pack, same bytes, must get its own instance");
    assert_eq!(count(&tenant_a).await, "call 3");
    assert_eq!(count(&tenant_a).await, "call 1", "an instance is replaced after calls_per_instance calls");
    // A refusal is a normal return: the instance carries on.
    assert!(matches!(tenant_a.run(&ask("reject", &[]), none()).await, Err(PackError::Rejected { .. })));
    assert_eq!(count(&tenant_a).await, "call 2");
    // A trap throws the instance away.
    assert!(matches!(tenant_a.run(&ask("panic", &[]), none()).await, Err(PackError::Trap { .. })));
    assert_eq!(count(&tenant_a).await, "call 1", "an instance that trapped must not serve again");

    let fresh = Runtime::new(RuntimeConfig { calls_per_instance: 1, ..config() }).unwrap();
    let linked = misbehave(&fresh, Grants::default()).await;
    assert_eq!(count(&linked).await, "call 1");
    assert_eq!(count(&linked).await, "call 1", "calls_per_instance 1 gives every call a fresh instance");
}

#[tokio::test]
async fn more_calls_than_pool_slots_wait_instead_of_failing() {
    let runtime = Runtime::new(RuntimeConfig { concurrent_calls: 2, ..config() }).unwrap();
    let linked = Arc::new(misbehave(&runtime, Grants::default()).await);
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let linked = linked.clone();
            tokio::spawn(async move { linked.run(&ask("echo", &[("n", "1")]), none()).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_pack_for_an_unserved_api_version_is_refused() {
    let runtime = Runtime::new(config()).unwrap();
    let err = runtime
        .load("future-api", "9.0.0", &pack_bytes(FUTURE_API), Grants::default())
        .await
        .err()
        .expect("must be refused");
    let text = format!("{err:#}");
    assert!(text.contains("seam:sync@9.0.0") && text.contains("this host serves seam:sync@0.1.0, 0.2.0"), "{text}");
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused_clearly() {
    let runtime = Runtime::new(config()).unwrap();
    let err =
        runtime.load("junk", "0", b"definitely not wasm", Grants::default()).await.err().expect("must be refused");
    let text = format!("{err:#}");
    assert!(text.contains("loading pack junk@0") && text.contains("wasm32-wasip2"), "{text}");
}

#[tokio::test]
async fn compiled_packs_are_cached_by_hash_on_disk_and_in_memory() {
    let dir = std::env::temp_dir().join(format!("seam-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = RuntimeConfig { cache_dir: Some(dir.clone()), ..config() };
    let wasm = pack_bytes(CASE_INCIDENT);

    let first = Runtime::new(config.clone()).unwrap();
    let a = first.load("case-incident", "1", &wasm, Grants::default()).await.unwrap();
    assert!(matches!(a.load_outcome(), CacheOutcome::Compiled(_)), "{:?}", a.load_outcome());
    let b = first.load("case-incident", "1", &wasm, Grants::default()).await.unwrap();
    assert_eq!(b.load_outcome(), CacheOutcome::Memory);

    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].file_name().unwrap().to_string_lossy().starts_with(&a.meta().sha256));

    // A restarted host loads it from disk; a corrupted entry is recompiled, not trusted.
    let second = Runtime::new(config.clone()).unwrap();
    let c = second.load("case-incident", "1", &wasm, Grants::default()).await.unwrap();
    assert!(matches!(c.load_outcome(), CacheOutcome::Disk(_)), "{:?}", c.load_outcome());
    std::fs::write(&entries[0], b"garbage").unwrap();
    let third = Runtime::new(config).unwrap();
    let d = third.load("case-incident", "1", &wasm, Grants::default()).await.unwrap();
    assert!(matches!(d.load_outcome(), CacheOutcome::Compiled(_)), "{:?}", d.load_outcome());
    assert!(d.run(&ask("echo", &[]), none()).await.is_ok());
    std::fs::remove_dir_all(&dir).ok();
}

/// Two tenants share one runtime. Tenant A's pack loops on every event; tenant
/// B's events must not wait behind A's for the pool's slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_runaway_pack_does_not_slow_another_tenant() {
    // As many looping calls as the pool has slots: without a per-pack share they would hold
    // every slot for their whole budget, and the healthy tenant's calls would wait it out.
    let runtime = Runtime::new(RuntimeConfig {
        concurrent_calls: 8,
        calls_per_pack: 2,
        call_budget: Duration::from_secs(10),
        ..config()
    })
    .unwrap();
    let runaway = Arc::new(misbehave(&runtime, Grants::default()).await);
    let healthy = Arc::new(misbehave(&runtime, Grants::default()).await);
    let looping: Vec<_> = (0..8)
        .map(|_| {
            let p = runaway.clone();
            tokio::spawn(async move { p.run(&ask("loop", &[]), none()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let p = healthy.clone();
            tokio::spawn(async move { p.run(&ask("echo", &[("n", "1")]), none()).await })
        })
        .collect();
    for call in calls {
        let done = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the healthy tenant waited behind the runaway one");
        assert_eq!(done.unwrap().unwrap().len(), 1);
    }
    assert!(
        looping.iter().all(|l| !l.is_finished()),
        "the runaway calls were still running while the healthy ones were served"
    );
    // Dropping a call mid-loop is how a shutdown ends it.
    for l in looping {
        l.abort();
    }
}

/// A tenant's own limits (`pack_limits`) replace the runtime's, within what its pool reserves.
#[tokio::test]
async fn a_packs_own_limits_replace_the_runtimes_within_its_pool() {
    use seam::runtime::PackLimits;
    let runtime = Runtime::new(config()).unwrap();
    let tighter = PackLimits { call_budget: Duration::from_millis(150), memory_limit: 8 << 20 };
    let linked = misbehave(&runtime, Grants::default()).await.with_limits(tighter).unwrap();
    assert_eq!(linked.limits(), tighter);
    let started = Instant::now();
    let result = linked.run(&ask("loop", &[]), none()).await;
    assert!(
        matches!(result, Err(PackError::Timeout { budget, .. }) if budget == Duration::from_millis(150)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(300), "stopped after {:?}", started.elapsed());
    match linked.run(&ask("oom", &[]), none()).await {
        Err(PackError::OutOfMemory { limit, .. }) => assert_eq!(limit, 8 << 20),
        other => panic!("expected out-of-memory at 8 MiB, got {other:?}"),
    }
    still_serving(&linked).await;
    // More memory than each pool slot holds is refused when the limits are set, not at a call.
    let wider = PackLimits { call_budget: Duration::from_secs(1), memory_limit: 32 << 20 };
    let refused = misbehave(&runtime, Grants::default()).await.with_limits(wider).err().map(|e| e.to_string());
    assert!(refused.as_deref().is_some_and(|e| e.contains("32 MiB") && e.contains("16 MiB")), "{refused:?}");
}
