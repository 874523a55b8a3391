//! The emulated org's connected app: its consumer key and secret, the
//! certificate an admin uploaded for the JWT bearer flow, and the checks
//! Salesforce makes of each OAuth flow, refused with Salesforce's own error
//! bodies (`{"error", "error_description"}`, 400).
//!
//! On first start the emulator makes the key pair an admin would have made
//! (`openssl req -x509 -newkey rsa:2048 …`): the private key and the
//! certificate are written to the state directory, and the certificate is the
//! one the app holds. `PUT /__admin/connected-app` uploads another.

use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The audience a production org accepts besides its own My Domain.
pub const LOGIN_AUDIENCE: &str = "https://login.salesforce.com";
/// How late an assertion may arrive past its `exp` (clock skew between the two machines).
const SKEW_SECONDS: i64 = 30;

/// The files of the app's key pair, in the state directory.
pub struct KeyFiles {
    /// The private key (PKCS#8 PEM): what the integration's operator keeps.
    pub private_key: PathBuf,
    /// The certificate (PEM) uploaded to the app.
    pub certificate: PathBuf,
}

/// Make the app's key pair once; later starts keep it.
pub fn ensure_key_pair(dir: &Path) -> Result<KeyFiles> {
    let files = KeyFiles { private_key: dir.join("connected-app.key"), certificate: dir.join("connected-app.crt") };
    if files.private_key.exists() && files.certificate.exists() {
        return Ok(files);
    }
    let (key_pem, cert_pem) = new_key_pair("seam integration").context("making the connected app's key pair")?;
    crate::files::write_private(&files.private_key, key_pem.as_bytes())?;
    std::fs::write(&files.certificate, cert_pem).with_context(|| format!("writing {}", files.certificate.display()))?;
    Ok(files)
}

/// A 2048-bit RSA private key (PKCS#8 PEM) and a self-signed certificate for it (PEM),
/// as an operator makes them for a connected app.
pub fn new_key_pair(common_name: &str) -> Result<(String, String)> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).context("generating an RSA key")?;
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).context("encoding the RSA key")?.to_string();
    let pair = rcgen::KeyPair::from_pem(&pem).context("loading the RSA key for signing")?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    let cert = params.self_signed(&pair).context("signing the certificate")?;
    Ok((pem, cert.pem()))
}

/// A refused login: `error` and `error_description` as Salesforce words them.
#[derive(Debug, PartialEq)]
pub struct Refusal(pub &'static str, pub &'static str);

impl Refusal {
    pub fn body(&self) -> Value {
        serde_json::json!({ "error": self.0, "error_description": self.1 })
    }
}

/// Check a JWT bearer assertion against the app's certificate. Returns the username it logs in.
/// `consumer_key`: the app's; `audiences`: what this org accepts as `aud`.
pub fn verify_assertion(
    assertion: &str,
    certificate_pem: &str,
    consumer_key: &str,
    audiences: &[String],
    now: i64,
) -> Result<String, Refusal> {
    use jsonwebtoken::{Algorithm, Validation};
    let invalid = Refusal("invalid_grant", "invalid assertion");
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| Refusal("invalid_grant", "invalid assertion"))?;
    if header.alg != Algorithm::RS256 {
        return Err(invalid);
    }
    // The claims first, as Salesforce names the app before it checks the signature
    // against the app's certificate.
    let claims: Value = jsonwebtoken::dangerous::insecure_decode::<Value>(assertion)
        .map_err(|_| Refusal("invalid_grant", "invalid assertion"))?
        .claims;
    if claims["iss"].as_str() != Some(consumer_key) {
        return Err(Refusal("invalid_client_id", "client identifier invalid"));
    }
    let key = public_key(certificate_pem).ok_or(Refusal("invalid_grant", "invalid assertion"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    // exp, aud and sub are checked below, with Salesforce's words for each.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .map_err(|_| Refusal("invalid_grant", "invalid assertion"))?;
    let aud_ok = match &claims["aud"] {
        Value::String(a) => audiences.iter().any(|ok| ok == a.trim_end_matches('/')),
        Value::Array(all) => {
            all.iter().filter_map(Value::as_str).any(|a| audiences.iter().any(|ok| ok == a.trim_end_matches('/')))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(Refusal("invalid_grant", "audience is invalid"));
    }
    // A number or a numeric string (simple-salesforce and Salesforce's own example send a string).
    let exp = match &claims["exp"] {
        Value::Number(n) => n.as_f64().map(|f| f as i64),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    // Salesforce CLI sends exp in milliseconds; no upper bound is enforced.
    if exp.is_none_or(|exp| exp + SKEW_SECONDS < now) {
        return Err(Refusal("invalid_grant", "expired authorization code"));
    }
    // `prn` is the older name of `sub`, and wins when both are given.
    claims["prn"]
        .as_str()
        .or(claims["sub"].as_str())
        .map(str::to_string)
        .ok_or(Refusal("invalid_grant", "invalid assertion"))
}

/// The RSA public key of a certificate (PEM).
fn public_key(certificate_pem: &str) -> Option<jsonwebtoken::DecodingKey> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(jsonwebtoken::DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sign(key_pem: &str, claims: Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).unwrap()
    }

    #[test]
    fn each_flaw_of_an_assertion_gets_salesforces_words() {
        let (key, cert) = new_key_pair("test").unwrap();
        let (other_key, _) = new_key_pair("other").unwrap();
        let now = 1_800_000_000;
        let auds = vec![LOGIN_AUDIENCE.to_string(), "https://127.0.0.1:1".to_string()];
        let claims =
            |iss: &str, aud: &str, exp: Value| json!({ "iss": iss, "sub": "seam@acme", "aud": aud, "exp": exp });
        let check = |token: &str| verify_assertion(token, &cert, "ck", &auds, now);
        assert_eq!(check(&sign(&key, claims("ck", LOGIN_AUDIENCE, json!(now + 120)))), Ok("seam@acme".to_string()));
        assert_eq!(
            check(&sign(&key, claims("ck", "https://127.0.0.1:1/", json!((now + 120).to_string())))),
            Ok("seam@acme".to_string())
        );
        assert_eq!(
            check(&sign(&other_key, claims("ck", LOGIN_AUDIENCE, json!(now + 120)))),
            Err(Refusal("invalid_grant", "invalid assertion"))
        );
        assert_eq!(
            check(&sign(&key, claims("nope", LOGIN_AUDIENCE, json!(now + 120)))),
            Err(Refusal("invalid_client_id", "client identifier invalid"))
        );
        assert_eq!(
            check(&sign(&key, claims("ck", "https://test.salesforce.com", json!(now + 120)))),
            Err(Refusal("invalid_grant", "audience is invalid"))
        );
        assert_eq!(
            check(&sign(&key, claims("ck", LOGIN_AUDIENCE, json!(now - 600)))),
            Err(Refusal("invalid_grant", "expired authorization code"))
        );
        assert_eq!(check("not-a-jwt"), Err(Refusal("invalid_grant", "invalid assertion")));
    }
}
