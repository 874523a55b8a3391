//! Reading and writing the pack container: top-level custom sections appended
//! to a component.

use super::manifest::Manifest;
use super::signing::{KeyPair, Signature};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

pub const MANIFEST_SECTION: &str = "seam-manifest";
pub const SIGNATURE_SECTION: &str = "seam-signature";

/// A pack read from bytes.
#[derive(Clone, Debug)]
pub struct Pack {
    pub manifest: Manifest,
    /// Everything the signature covers: the component with its manifest section.
    pub signed: Vec<u8>,
    pub signature: Option<Signature>,
    /// The component alone, without seam's sections: what is compiled, so
    /// packs that differ only in manifest or signature (one per tenant, say)
    /// share one compiled copy.
    pub component: Vec<u8>,
}

/// One top-level section of a component or module binary.
struct Section<'a> {
    id: u8,
    /// The custom section's name, for id 0.
    name: Option<&'a str>,
    payload: &'a [u8],
    start: usize,
    end: usize,
}

const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

fn leb_u32(bytes: &[u8], at: &mut usize) -> Result<u32> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at).context("truncated: a length runs past the end")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).context("a length does not fit 32 bits");
        }
    }
    bail!("a length is longer than 5 bytes")
}

fn put_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn sections(bytes: &[u8]) -> Result<Vec<Section<'_>>> {
    if bytes.len() < 8 || bytes[..4] != COMPONENT_PREAMBLE[..4] {
        bail!("not a WebAssembly binary (no \\0asm header)");
    }
    if bytes[4..8] != COMPONENT_PREAMBLE[4..8] {
        bail!("a core WebAssembly module, not a component: build the pack for wasm32-wasip2");
    }
    let mut at = 8;
    let mut out = Vec::new();
    while at < bytes.len() {
        let start = at;
        let id = bytes[at];
        at += 1;
        let size = leb_u32(bytes, &mut at)? as usize;
        let end =
            at.checked_add(size).filter(|e| *e <= bytes.len()).context("truncated: a section runs past the end")?;
        let (name, payload) = if id == 0 {
            let mut p = at;
            let len = leb_u32(bytes, &mut p)? as usize;
            let name_end =
                p.checked_add(len).filter(|e| *e <= end).context("a custom section's name runs past the section")?;
            let name = std::str::from_utf8(&bytes[p..name_end]).context("a custom section's name is not UTF-8")?;
            (Some(name), &bytes[name_end..end])
        } else {
            (None, &bytes[at..end])
        };
        out.push(Section { id, name, payload, start, end });
        at = end;
    }
    Ok(out)
}

fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_leb(&mut body, name.len() as u32);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = vec![0u8];
    put_leb(&mut out, body.len() as u32);
    out.extend(body);
    out
}

/// The hash a pack is known by ([`Pack::hash`]); for bytes that are not a pack, their SHA-256.
pub fn content_hash(bytes: &[u8]) -> String {
    Pack::open(bytes).map(|p| p.hash()).unwrap_or_else(|_| hex::encode(Sha256::digest(bytes)))
}

/// A component with no manifest (as cargo builds it), not a pack.
pub fn is_plain_component(bytes: &[u8]) -> bool {
    sections(bytes).is_ok_and(|s| !s.iter().any(|x| x.name == Some(MANIFEST_SECTION)))
}

/// A component plus its manifest: an unsigned pack.
pub fn build(component: &[u8], manifest: &Manifest) -> Result<Vec<u8>> {
    manifest.validate()?;
    if sections(component)?.iter().any(|s| s.name == Some(MANIFEST_SECTION)) {
        bail!("this component already carries a manifest; build from the plain component (target/wasm32-wasip2/...)");
    }
    let mut out = component.to_vec();
    out.extend(custom_section(MANIFEST_SECTION, &serde_json::to_vec_pretty(manifest)?));
    Ok(out)
}

/// Sign a pack (replacing any earlier signature).
pub fn sign(pack: &[u8], key: &KeyPair) -> Result<Vec<u8>> {
    let opened = Pack::open(pack)?;
    let signature = key.sign(&opened.signed);
    let mut out = opened.signed;
    out.extend(custom_section(SIGNATURE_SECTION, &serde_json::to_vec(&signature)?));
    Ok(out)
}

impl Pack {
    /// Read a pack: exactly one manifest; a signature, if any, last.
    pub fn open(bytes: &[u8]) -> Result<Pack> {
        let sections = sections(bytes)?;
        let manifests: Vec<&Section> = sections.iter().filter(|s| s.name == Some(MANIFEST_SECTION)).collect();
        let manifest = match manifests.as_slice() {
            [one] => Manifest::parse(one.payload).context("reading the pack's manifest")?,
            [] => bail!("no manifest: this is a plain component, not a pack (make one with `seam pack build`)"),
            _ => bail!("more than one manifest section: the pack was built twice"),
        };
        let signatures: Vec<(usize, &Section)> =
            sections.iter().enumerate().filter(|(_, s)| s.name == Some(SIGNATURE_SECTION)).collect();
        let (signed, signature) = match signatures.as_slice() {
            [] => (bytes.to_vec(), None),
            [(i, s)] if *i == sections.len() - 1 => {
                let signature: Signature =
                    serde_json::from_slice(s.payload).context("the signature section is unreadable")?;
                (bytes[..s.start].to_vec(), Some(signature))
            }
            [_] => bail!("the signature is not the last section: something was appended after signing"),
            _ => bail!("more than one signature section"),
        };
        if !sections.iter().any(|s| s.id != 0) {
            bail!("the pack has no component in it, only custom sections");
        }
        let mut component = COMPONENT_PREAMBLE.to_vec();
        for s in sections.iter().filter(|s| !matches!(s.name, Some(MANIFEST_SECTION | SIGNATURE_SECTION))) {
            component.extend_from_slice(&bytes[s.start..s.end]);
        }
        Ok(Pack { manifest, signed, signature, component })
    }

    /// The content hash (SHA-256, hex) of what was signed: component and manifest.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(&self.signed))
    }
}
