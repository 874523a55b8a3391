//! Rule pack artifacts: build, sign, verify, and what the host refuses.

use seam::packs::artifact::{self, MANIFEST_SECTION};
use seam::packs::signing::{KeyPair, TrustedKeys};
use seam::packs::{self, Manifest, Pack};
use seam::runtime::{Runtime, RuntimeConfig};
use seam_tests::{pack_bytes, CASE_INCIDENT, SEV1_BRIDGE};

fn manifest() -> Manifest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/case-incident/pack.json");
    Manifest::parse(&std::fs::read(path).unwrap()).unwrap()
}

fn trust(key: &KeyPair) -> TrustedKeys {
    TrustedKeys(vec![key.public()])
}

#[tokio::test]
async fn a_signed_pack_loads_with_its_manifest_and_is_still_a_component() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let isv = KeyPair::generate();
    let signed = artifact::sign(&artifact::build(&pack_bytes(CASE_INCIDENT), &manifest()).unwrap(), &isv).unwrap();
    let loaded = packs::load(&runtime, &signed, "ignored", &trust(&isv)).await.unwrap();
    assert_eq!(loaded.manifest.id(), "case-incident@1.0.0");
    assert_eq!(loaded.linked.meta().to_string(), "case-incident@1.0.0", "the audit names the manifest's version");
    assert!(loaded.signer.is_some());
    assert!(loaded
        .manifest
        .ownership
        .as_ref()
        .unwrap()
        .mirrors
        .iter()
        .any(|m| m.fields.contains(&"impact".to_string())));
    // Re-signing replaces the signature; the signed content, and so the hash, stays.
    let again = artifact::sign(&signed, &isv).unwrap();
    assert_eq!(Pack::open(&again).unwrap().hash(), loaded.hash);
}

#[tokio::test]
async fn with_a_trusted_key_the_host_refuses_unsigned_tampered_and_foreign_packs() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let (isv, stranger) = (KeyPair::generate(), KeyPair::generate());
    let unsigned = artifact::build(&pack_bytes(CASE_INCIDENT), &manifest()).unwrap();
    let refuse = |bytes: Vec<u8>, expect: &'static str| {
        let runtime = &runtime;
        let keys = trust(&isv);
        async move {
            let err = packs::load(runtime, &bytes, "case-incident", &keys).await.err().expect("must be refused");
            assert!(format!("{err:#}").contains(expect), "{err:#}");
        }
    };
    refuse(unsigned.clone(), "unsigned").await;
    refuse(pack_bytes(CASE_INCIDENT), "plain component").await;
    refuse(artifact::sign(&unsigned, &stranger).unwrap(), "does not trust").await;

    // One byte changed in the manifest after signing.
    let signed = artifact::sign(&unsigned, &isv).unwrap();
    let mut tampered = signed.clone();
    let at = tampered.windows(7).position(|w| w == b"\"1.0.0\"").unwrap();
    tampered[at + 5] = b'1';
    refuse(tampered, "changed after signing").await;
    // Something appended after the signature.
    let mut appended = signed.clone();
    appended.extend_from_slice(&[0, 3, 2, b'x', b'y']);
    refuse(appended, "not the last section").await;

    // Without trusted keys, development components and unsigned packs load.
    let open = TrustedKeys::default();
    assert!(packs::load(&runtime, &pack_bytes(CASE_INCIDENT), "case-incident", &open).await.is_ok());
    assert!(packs::load(&runtime, &unsigned, "case-incident", &open).await.is_ok());
}

#[tokio::test]
async fn a_manifest_that_does_not_match_its_component_is_refused_whole() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let component = pack_bytes(CASE_INCIDENT);
    let mut wrong_world = manifest();
    wrong_world.world = "seam:sync/mapping@0.1.0".into();
    let err = packs::load(&runtime, &artifact::build(&component, &wrong_world).unwrap(), "x", &TrustedKeys::default())
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("implements seam:sync/mapping@0.2.0"), "{err:#}");

    // A mapping that calls itself a workflow, and a workflow that calls itself a mapping.
    let mut wrong_kind = manifest();
    wrong_kind.world = "seam:sync/workflow@0.2.0".into();
    // The ownership map is the mapping's to give; a workflow manifest with one is refused.
    assert!(format!("{:#}", wrong_kind.validate().unwrap_err()).contains("a workflow pack has no ownership map"));
    wrong_kind.ownership = None;
    // So is the delete policy.
    assert!(format!("{:#}", wrong_kind.validate().unwrap_err()).contains("a workflow pack has no delete policy"));
    wrong_kind.deletes = None;
    let err = packs::load(&runtime, &artifact::build(&component, &wrong_kind).unwrap(), "x", &TrustedKeys::default())
        .await
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains(
            "the manifest says seam:sync/workflow@0.2.0, but the component implements seam:sync/mapping@0.2.0"
        ),
        "{err:#}"
    );
    let err = packs::load(
        &runtime,
        &artifact::build(&pack_bytes(SEV1_BRIDGE), &manifest()).unwrap(),
        "x",
        &TrustedKeys::default(),
    )
    .await
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("implements seam:sync/workflow@0.2.0"), "{err:#}");
    let mut unknown = manifest();
    unknown.world = "seam:sync/reports@0.1.0".into();
    assert!(format!("{:#}", unknown.validate().unwrap_err()).contains("the worlds mapping and workflow"));

    for (field, bad) in [("name", "Case Incident"), ("version", "one"), ("world", "mapping")] {
        let mut m = manifest();
        match field {
            "name" => m.name = bad.into(),
            "version" => m.version = bad.into(),
            _ => m.world = bad.into(),
        }
        let err = artifact::build(&component, &m).unwrap_err();
        assert!(format!("{err:#}").contains(bad), "{field}: {err:#}");
    }
    let built = artifact::build(&component, &manifest()).unwrap();
    assert!(format!("{:#}", artifact::build(&built, &manifest()).unwrap_err()).contains("already carries a manifest"));
    assert!(format!("{:#}", Pack::open(&built[..built.len() - 10]).unwrap_err()).contains("truncated"));
    assert_eq!(built.windows(MANIFEST_SECTION.len()).filter(|w| *w == MANIFEST_SECTION.as_bytes()).count(), 1);
}

#[tokio::test]
async fn the_default_packs_fixtures_pass_and_a_wrong_expectation_fails_with_both_sides() {
    use seam::packs::fixtures;
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let pack =
        packs::load(&runtime, &pack_bytes(CASE_INCIDENT), "case-incident", &TrustedKeys::default()).await.unwrap();
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/case-incident/fixtures"));
    let all = fixtures::read_dir(dir).unwrap();
    assert!(all.len() >= 5);
    for (file, fixture) in &all {
        let outcome = fixtures::run(&pack.linked, file, fixture).await;
        assert!(outcome.failure.is_none(), "{}: {:?}", outcome.name, outcome.failure);
    }
    // The same change with a wrong expectation fails and shows what came out.
    let (file, mut fixture) = all.into_iter().find(|(_, f)| f.expect.is_some()).unwrap();
    fixture.expect.as_mut().unwrap().clear();
    let failure = fixtures::run(&pack.linked, &file, &fixture).await.failure.expect("must fail");
    assert!(failure.contains("expected actions:\n[]") && failure.contains("got:"), "{failure}");
}
