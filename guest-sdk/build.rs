//! Writes the macros that generate a pack's export bindings in the pack's own
//! crate. Each world (mapping, workflow) embeds a description of itself in the
//! component, and a component must export everything the worlds it carries
//! describe; so this crate generates only the shared world (`host`: types and
//! imports), and `export_mapper!`/`export_workflow!` generate their world
//! where they are used. `wit_bindgen::generate!` resolves paths from the
//! crate that calls it, hence the absolute path to this crate's WIT.

use std::path::PathBuf;

/// The `seam:sync` version packs built with this SDK implement.
const API: &str = "0.2.0";

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    // A published crate carries its own copy; in the seam workspace the WIT is
    // beside it, one directory per version. The SDK builds packs for the latest.
    let wit = [dir.join("wit"), dir.join(format!("../wit/since_v{API}"))]
        .into_iter()
        .find(|p| p.is_dir())
        .expect("seam-guest needs the seam:sync WIT in ./wit or ../wit/since_vX.Y.Z");
    let wit = wit.canonicalize().unwrap();
    println!("cargo:rerun-if-changed={}", wit.display());

    let mut out = String::new();
    for name in ["mapping", "workflow"] {
        let world = format!("seam:sync/{name}@{API}");
        out.push_str(&format!(
            r#"
#[doc(hidden)]
#[macro_export]
macro_rules! __seam_{name}_world {{
    () => {{
        $crate::__wit_bindgen::generate!({{
            path: {path:?},
            world: {world:?},
            runtime_path: "::seam_guest::__wit_bindgen::rt",
            with: {{
                "seam:sync/types@{API}": ::seam_guest::bindings::seam::sync::types,
                "seam:sync/log@{API}": ::seam_guest::bindings::seam::sync::log,
                "seam:sync/lookup@{API}": ::seam_guest::bindings::seam::sync::lookup,
            }},
        }});
    }};
}}
"#,
            path = wit.display().to_string(),
        ));
    }
    let target = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("worlds.rs");
    std::fs::write(target, out).unwrap();
}
