//! The emulators serve HTTPS, as the real systems do: simple-salesforce and
//! pysnc refuse plain http. A CA and a 127.0.0.1/localhost certificate are
//! generated on first start and kept in the state directory, so clients
//! that trust `ca.pem` keep trusting a restarted simulator.

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use std::path::{Path, PathBuf};

pub struct TlsFiles {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

pub fn ensure(dir: &Path) -> Result<TlsFiles> {
    let files =
        TlsFiles { ca_pem: dir.join("ca.pem"), cert_pem: dir.join("server.pem"), key_pem: dir.join("server.key") };
    if files.ca_pem.exists() && files.cert_pem.exists() && files.key_pem.exists() {
        return Ok(files);
    }
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "seam simulator CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate().context("generating the server key")?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    leaf.distinguished_name.push(DnType::CommonName, "seam simulator");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;

    std::fs::write(&files.ca_pem, ca_cert.pem())?;
    std::fs::write(&files.cert_pem, cert.pem())?;
    crate::files::write_private(&files.key_pem, key.serialize_pem().as_bytes())?;
    Ok(files)
}
