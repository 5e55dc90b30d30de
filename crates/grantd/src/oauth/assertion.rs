//! Certificate credentials: reading an X.509 certificate (thumbprint, notAfter, RSA key), checking
//! that a private key matches it, and signing the client assertion (`private_key_jwt`, RFC 7523)
//! that replaces the client secret at the token endpoint.
//!
//! The assertion: header `alg` PS256 (or RS256), `typ` JWT, `x5t#S256` = base64url SHA-256 of the
//! certificate's DER; claims `aud` = the token endpoint URL, `iss` = `sub` = client id, a fresh
//! `jti`, `nbf` = `iat` = now, `exp` = now + 10 minutes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::{Digest, Sha256};
use x509_cert::der::{DecodePem, Encode};

use crate::model::{AssertionAlg, ClientCertificate, PrivateKeyPem};

/// The `client_assertion_type` for a JWT assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid; Microsoft recommends at most 10 minutes.
const LIFETIME_SECS: i64 = 600;

const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("client_certificate is not a PEM X.509 certificate")]
    NotACertificate,
    #[error("client_certificate must hold an RSA key (Microsoft accepts RSA certificates)")]
    NotRsa,
    #[error("private_key is not a PEM RSA private key (PKCS#1 or PKCS#8)")]
    BadPrivateKey,
    #[error("private_key does not belong to client_certificate")]
    KeyMismatch,
    #[error("the client assertion could not be signed")]
    Sign,
}

/// What grantd needs from a certificate.
#[derive(Debug, Clone)]
pub struct ParsedCertificate {
    pub thumbprint_s256: String,
    pub not_after: DateTime<Utc>,
    /// The RSA public key (PKCS#1 DER), to check the private key against.
    rsa_public_key: Vec<u8>,
}

pub fn parse_certificate(pem: &str) -> Result<ParsedCertificate, Error> {
    let cert = x509_cert::Certificate::from_pem(pem.trim().as_bytes())
        .map_err(|_| Error::NotACertificate)?;
    let der = cert.to_der().map_err(|_| Error::NotACertificate)?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid.to_string() != RSA_ENCRYPTION_OID {
        return Err(Error::NotRsa);
    }
    let not_after = cert.tbs_certificate.validity.not_after.to_unix_duration();
    let not_after = DateTime::<Utc>::from_timestamp(
        i64::try_from(not_after.as_secs()).map_err(|_| Error::NotACertificate)?,
        0,
    )
    .ok_or(Error::NotACertificate)?;
    Ok(ParsedCertificate {
        thumbprint_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
        not_after,
        rsa_public_key: spki.subject_public_key.raw_bytes().to_vec(),
    })
}

/// Parses the certificate and checks that `private_key` is its key (by signing and verifying a
/// probe), so a mismatched pair is refused when the integration is saved, not at the first token
/// request.
pub fn client_certificate(
    certificate_pem: &str,
    private_key: PrivateKeyPem,
    alg: AssertionAlg,
) -> Result<ClientCertificate, Error> {
    let parsed = parse_certificate(certificate_pem)?;
    let key = EncodingKey::from_rsa_pem(private_key.expose_secret().trim().as_bytes())
        .map_err(|_| Error::BadPrivateKey)?;
    let probe = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &serde_json::json!({ "probe": true }),
        &key,
    )
    .map_err(|_| Error::BadPrivateKey)?;
    let mut v = Validation::new(Algorithm::RS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    jsonwebtoken::decode::<serde_json::Value>(
        &probe,
        &DecodingKey::from_rsa_der(&parsed.rsa_public_key),
        &v,
    )
    .map_err(|_| Error::KeyMismatch)?;
    Ok(ClientCertificate {
        certificate_pem: certificate_pem.trim().to_owned(),
        thumbprint_s256: parsed.thumbprint_s256,
        not_after: parsed.not_after,
        private_key,
        alg,
    })
}

/// A signed client assertion for one token request.
pub fn sign(
    cert: &ClientCertificate,
    client_id: &str,
    token_url: &str,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let key = EncodingKey::from_rsa_pem(cert.private_key.expose_secret().trim().as_bytes())
        .map_err(|_| Error::BadPrivateKey)?;
    let mut header = Header::new(match cert.alg {
        AssertionAlg::PS256 => Algorithm::PS256,
        AssertionAlg::RS256 => Algorithm::RS256,
    });
    header.x5t_s256 = Some(cert.thumbprint_s256.clone());
    let now = now.timestamp();
    let claims = serde_json::json!({
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + LIFETIME_SECS,
    });
    jsonwebtoken::encode(&header, &claims, &key).map_err(|_| Error::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_clear_error() {
        assert!(matches!(
            parse_certificate("not a cert"),
            Err(Error::NotACertificate)
        ));
        let e = Error::BadPrivateKey.to_string();
        assert!(e.contains("private_key"), "{e}");
    }
}
