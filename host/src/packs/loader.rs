//! From bytes to a runnable pack: open the container, check the signature
//! against the host's trusted keys, compile, and check that the component
//! implements the world version its manifest declares. Any failure refuses
//! the whole pack; nothing is half-loaded.

use super::artifact;
use super::signing::TrustedKeys;
use super::{Manifest, Pack};
use crate::runtime::{Grants, LinkedPack, Runtime};
use anyhow::{bail, Context, Result};

/// A pack ready to run.
pub struct LoadedPack {
    pub manifest: Manifest,
    pub linked: LinkedPack,
    /// SHA-256 of the signed content (component + manifest).
    pub hash: String,
    /// The trusted key that signed it, when keys are configured.
    pub signer: Option<String>,
}

/// Load a pack, or a plain component for development (refused when trusted keys are configured).
pub async fn load(runtime: &Runtime, bytes: &[u8], fallback_name: &str, trusted: &TrustedKeys) -> Result<LoadedPack> {
    let pack = match Pack::open(bytes) {
        Ok(pack) => pack,
        Err(e) if artifact::is_plain_component(bytes) => {
            if trusted.required() {
                bail!("{fallback_name} is a plain component, not a signed pack, and this host only loads packs signed by a trusted key (`seam pack build`, then `seam pack sign`)");
            }
            tracing::debug!("{fallback_name}: loading a plain component ({e})");
            let linked = runtime.load(fallback_name, "0.0.0-dev", bytes, Grants::default()).await?;
            let manifest = Manifest::describing(&linked);
            let hash = artifact::content_hash(bytes);
            return Ok(LoadedPack { manifest, linked, hash, signer: None });
        }
        Err(e) => return Err(e),
    };
    let signer =
        trusted.check(&pack.signed, pack.signature.as_ref()).with_context(|| format!("pack {}", pack.manifest.id()))?;
    let (world, declared) = pack.manifest.world_version()?;
    let m = &pack.manifest;
    let linked = runtime
        .load(&m.name, &m.version, &pack.component, m.lookups.clone())
        .await
        .with_context(|| format!("pack {}", m.id()))?;
    if linked.api().as_str() != declared.to_string() || linked.world() != world {
        bail!(
            "pack {}: the manifest says {}, but the component implements seam:sync/{}@{}",
            m.id(),
            m.world,
            linked.world(),
            linked.api().as_str()
        );
    }
    Ok(LoadedPack { hash: pack.hash(), manifest: pack.manifest, linked, signer })
}
