//! ed25519 signatures over packs, and the keys a host trusts.
//!
//! Keys are files of hex: a secret key file holds the 32-byte seed, a public
//! key file the 32-byte verifying key. A key is named by the first 16 hex
//! digits of its public key, which the signature carries so the host can say
//! which key signed and which it expected.

use anyhow::{bail, Context, Result};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// First 16 hex digits of the signer's public key.
    pub key_id: String,
    /// ed25519 signature, hex.
    pub signature: String,
}

pub struct KeyPair {
    key: SigningKey,
}

pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())[..16].to_string()
}

impl KeyPair {
    pub fn generate() -> KeyPair {
        let seed: [u8; 32] = rand::random();
        KeyPair { key: SigningKey::from_bytes(&seed) }
    }

    pub fn read(path: &Path) -> Result<KeyPair> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the signing key {}", path.display()))?;
        let seed: [u8; 32] = hex::decode(text.trim()).ok().and_then(|b| b.try_into().ok()).with_context(|| {
            format!("{} is not a seam signing key (64 hex digits); make one with `seam pack keygen`", path.display())
        })?;
        Ok(KeyPair { key: SigningKey::from_bytes(&seed) })
    }

    /// Write the secret key (mode 600 on Unix) and `<path>.pub`.
    pub fn write(&self, path: &Path) -> Result<()> {
        if path.exists() {
            bail!("{} exists; not overwriting a key", path.display());
        }
        crate::files::write_private(path, (hex::encode(self.key.to_bytes()) + "\n").as_bytes())?;
        let public = public_path(path);
        std::fs::write(&public, hex::encode(self.key.verifying_key().as_bytes()) + "\n")
            .with_context(|| format!("writing {}", public.display()))?;
        Ok(())
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature {
            key_id: key_id(&self.key.verifying_key()),
            signature: hex::encode(self.key.sign(message).to_bytes()),
        }
    }
}

pub fn public_path(secret: &Path) -> std::path::PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

/// The public keys a host accepts packs from. Empty: signatures are not required.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys(pub Vec<VerifyingKey>);

impl TrustedKeys {
    pub fn parse_hex(hex_key: &str) -> Result<VerifyingKey> {
        let bytes: [u8; 32] = hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("a public key is 64 hex digits")?;
        VerifyingKey::from_bytes(&bytes).context("not a valid ed25519 public key")
    }

    /// Read public key files.
    pub fn read(paths: &[impl AsRef<Path>]) -> Result<TrustedKeys> {
        paths
            .iter()
            .map(|p| {
                let p = p.as_ref();
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("reading trusted key {}", p.display()))?;
                Self::parse_hex(&text).with_context(|| format!("trusted key {}", p.display()))
            })
            .collect::<Result<_>>()
            .map(TrustedKeys)
    }

    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// Check a pack's signature. With no trusted keys, an unsigned pack passes
    /// (and a signed one is still checked against nothing: it passes too).
    pub fn check(&self, signed: &[u8], signature: Option<&Signature>) -> Result<Option<String>> {
        if !self.required() {
            return Ok(None);
        }
        let Some(signature) = signature else {
            bail!("the pack is unsigned, and this host only loads packs signed by a trusted key (sign it with `seam pack sign`)");
        };
        let Some(key) = self.0.iter().find(|k| key_id(k) == signature.key_id) else {
            let trusted = self.0.iter().map(key_id).collect::<Vec<_>>().join(", ");
            bail!(
                "the pack is signed by key {}, which this host does not trust (trusted: {trusted})",
                signature.key_id
            );
        };
        let bytes: [u8; 64] = hex::decode(&signature.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("the signature is not 64 bytes of hex")?;
        key.verify(signed, &ed25519_dalek::Signature::from_bytes(&bytes)).map_err(|_| {
            anyhow::anyhow!(
                "the signature does not match the pack: it was changed after signing by key {}",
                signature.key_id
            )
        })?;
        Ok(Some(signature.key_id.clone()))
    }
}
