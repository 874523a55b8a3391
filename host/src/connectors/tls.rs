//! Whom seam trusts when it calls out.
//!
//! The operating system's certificate store, read by rustls-native-certs,
//! which honours `SSL_CERT_FILE` and `SSL_CERT_DIR` the way OpenSSL does
//! (either one replaces the platform's store). A tenant may name one more CA
//! (`ca_pem`, for a proxy that re-signs traffic, or the emulators' own CA):
//! it is added on top of the system's roots, never instead of them, so the
//! same tenant still reaches `*.my.salesforce.com`, `*.service-now.com` and
//! `slack.com`.

use anyhow::{bail, Context, Result};
use rustls::RootCertStore;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The system's roots, read once per process: a few hundred certificates
/// parsed on every connection would cost more than it could ever catch.
fn system_roots() -> &'static (Arc<RootCertStore>, Vec<String>) {
    static ROOTS: OnceLock<(Arc<RootCertStore>, Vec<String>)> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(found.certs);
        let mut problems: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        if ignored > 0 {
            problems
                .push(format!("{ignored} certificate(s) in the system store could not be parsed and are not trusted"));
        }
        tracing::debug!(trusted = added, "read the system's root certificates");
        (Arc::new(store), problems)
    })
}

/// The rustls configuration every outgoing connection uses: [`roots`].
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig> {
    let roots = roots(extra_ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The system's roots, plus `extra_ca` (a PEM file of one or more CA certificates) when given.
pub fn roots(extra_ca: Option<&Path>) -> Result<RootCertStore> {
    let (system, problems) = system_roots();
    let mut roots = (**system).clone();
    if let Some(path) = extra_ca {
        let pem =
            std::fs::read(path).with_context(|| format!("reading the CA certificate {} (ca_pem)", path.display()))?;
        let mut added = 0;
        for cert in
            pem_certificates(&pem).with_context(|| format!("reading the CA certificate {} (ca_pem)", path.display()))?
        {
            roots
                .add(cert)
                .with_context(|| format!("the CA certificate in {} is not usable as a trust anchor", path.display()))?;
            added += 1;
        }
        if added == 0 {
            bail!("{} (ca_pem) holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display());
        }
    }
    if roots.is_empty() {
        bail!(
            "no trusted root certificates: the system's store is empty or unreadable ({}); install the ca-certificates package, \
             or point SSL_CERT_FILE at a PEM bundle",
            if problems.is_empty() { "nothing found".to_string() } else { problems.join("; ") }
        );
    }
    if !problems.is_empty() {
        tracing::debug!("reading the system's root certificates: {}", problems.join("; "));
    }
    Ok(roots)
}

/// An HTTP client builder that trusts what [`client_config`] trusts.
#[allow(clippy::disallowed_methods, reason = "the one place clients are built")]
pub fn http_client(extra_ca: Option<&Path>) -> Result<reqwest::ClientBuilder> {
    let mut tls = client_config(extra_ca)?;
    // reqwest negotiates HTTP/2 when the server offers it, as it would with its own TLS setup.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder().use_preconfigured_tls(tls))
}

/// The certificates in a PEM file.
fn pem_certificates(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("not PEM: {e}"))
}
