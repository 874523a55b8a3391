//! `seam pack keygen|build|sign|verify`: make, sign and check pack artifacts.

use crate::packs::artifact;
use crate::packs::signing::{public_path, KeyPair, TrustedKeys};
use crate::packs::{Manifest, Pack};
use crate::runtime::{Runtime, RuntimeConfig};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ArtifactCommand {
    /// Make an ed25519 key pair: KEY (secret, keep it safe) and KEY.pub (give it to hosts).
    #[command(
        after_help = "Example:\n  seam pack keygen keys/acme-signer     # writes keys/acme-signer and keys/acme-signer.pub"
    )]
    Keygen { key: PathBuf },
    /// Put a component and its manifest together into one pack.
    #[command(
        after_help = "Example:\n  seam pack build target/wasm32-wasip2/pack/case_incident.wasm --manifest plugins/case-incident/pack.json"
    )]
    Build(BuildArgs),
    /// Sign a pack with a secret key (in place unless -o is given).
    #[command(after_help = "Example:\n  seam pack sign case-incident-1.0.0.seampack --key keys/acme-signer")]
    Sign(SignArgs),
    /// Check a pack: manifest, world version the host serves, and signature.
    #[command(after_help = "Example:\n  seam pack verify case-incident-1.0.0.seampack --trust keys/acme-signer.pub")]
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct BuildArgs {
    /// The component (.wasm) built for wasm32-wasip2.
    pub component: PathBuf,
    /// The manifest (JSON): name, version, world, ownership, lookups.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Where to write the pack; default NAME-VERSION.seampack beside the manifest.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct SignArgs {
    pub pack: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    pub pack: PathBuf,
    /// Public key file(s) to trust; with none, the signature is reported but not required.
    #[arg(long)]
    pub trust: Vec<PathBuf>,
}

pub async fn run(cmd: ArtifactCommand) -> Result<()> {
    match cmd {
        ArtifactCommand::Keygen { key } => {
            let pair = KeyPair::generate();
            pair.write(&key)?;
            println!("secret key: {} (keep it out of version control)", key.display());
            println!(
                "public key: {} (id {})",
                public_path(&key).display(),
                crate::packs::signing::key_id(&pair.public())
            );
            Ok(())
        }
        ArtifactCommand::Build(args) => {
            let component = crate::packs::read_pack(&args.component)?;
            let manifest: Manifest = crate::files::read_json(&args.manifest, "manifest")?;
            let bytes = artifact::build(&component, &manifest)
                .with_context(|| format!("building a pack from {}", args.component.display()))?;
            check_world(&bytes).await?;
            let out = args.out.unwrap_or_else(|| {
                args.manifest.with_file_name(format!("{}-{}.seampack", manifest.name, manifest.version))
            });
            crate::files::write_atomically(&out, &bytes)?;
            println!("built {} ({}, {} bytes, unsigned)", out.display(), manifest.id(), bytes.len());
            Ok(())
        }
        ArtifactCommand::Sign(args) => {
            let key = KeyPair::read(&args.key)?;
            let bytes = std::fs::read(&args.pack).with_context(|| format!("reading {}", args.pack.display()))?;
            let signed = artifact::sign(&bytes, &key).with_context(|| format!("signing {}", args.pack.display()))?;
            let out = args.out.unwrap_or(args.pack);
            crate::files::write_atomically(&out, &signed)?;
            println!("signed {} with key {}", out.display(), crate::packs::signing::key_id(&key.public()));
            Ok(())
        }
        ArtifactCommand::Verify(args) => {
            let bytes = std::fs::read(&args.pack).with_context(|| format!("reading {}", args.pack.display()))?;
            let pack = Pack::open(&bytes).with_context(|| format!("{} is not a usable pack", args.pack.display()))?;
            check_world(&bytes).await?;
            let trusted = TrustedKeys::read(&args.trust)?;
            let signer = trusted
                .check(&pack.signed, pack.signature.as_ref())
                .with_context(|| format!("{} is refused", args.pack.display()))?;
            println!("{}: {} ({})", args.pack.display(), pack.manifest.id(), pack.manifest.world);
            println!("  sha256 {}", pack.hash());
            match (signer, &pack.signature) {
                (Some(key), _) => println!("  signature: valid, by trusted key {key}"),
                (None, Some(sig)) => println!("  signature: by key {} (not checked: no --trust key given)", sig.key_id),
                (None, None) => println!("  signature: none"),
            }
            Ok(())
        }
    }
}

/// Compile the pack and check its exported API version against the manifest (signature not required here).
async fn check_world(bytes: &[u8]) -> Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    crate::packs::load(&runtime, bytes, "pack", &TrustedKeys::default()).await.map(drop)
}
