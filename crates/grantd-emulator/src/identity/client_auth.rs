//! Client authentication at the token endpoint: `client_secret_post`, `client_secret_basic` and
//! `private_key_jwt` (RS256/PS256 assertions signed by a certificate registered on the app and
//! named by its `x5t#S256` or `x5t` thumbprint), with Microsoft's AADSTS errors.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use sha1::Digest as _;

use super::errors::AadError;
use crate::directory::App;
use crate::state::AppState;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client proved itself; maps to the `appidacr` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    None,
    Secret,
    Certificate,
}

impl ClientAuthMethod {
    pub fn appidacr(self) -> &'static str {
        match self {
            ClientAuthMethod::None => "0",
            ClientAuthMethod::Secret => "1",
            ClientAuthMethod::Certificate => "2",
        }
    }
}

/// The client id of a token request: body `client_id`, or the user part of HTTP Basic.
pub fn client_id_of(form: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    form.get("client_id")
        .filter(|c| !c.is_empty())
        .cloned()
        .or_else(|| basic_credentials(headers).map(|(id, _)| id))
}

/// `Authorization: Basic base64(urlenc(id):urlenc(secret))`.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// Authenticates the client of a token request.
pub fn authenticate(
    state: &AppState,
    app: &App,
    form: &HashMap<String, String>,
    headers: &HeaderMap,
    origin: &str,
) -> Result<ClientAuthMethod, AadError> {
    let assertion = form.get("client_assertion").filter(|a| !a.is_empty());
    let secret = form
        .get("client_secret")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| basic_credentials(headers).map(|(_, s)| s))
        .filter(|s| !s.is_empty());
    if app.public_client {
        if assertion.is_some() || secret.is_some() {
            return Err(AadError::new(
                "invalid_client",
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
            ));
        }
        return Ok(ClientAuthMethod::None);
    }
    if let Some(a) = assertion {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return Err(AadError::new(
                "invalid_request",
                90055,
                format!("The client_assertion_type must be '{JWT_BEARER}'."),
            )
            .status(http::StatusCode::BAD_REQUEST));
        }
        verify_assertion(state, app, a, origin)?;
        return Ok(ClientAuthMethod::Certificate);
    }
    let Some(secret) = secret else {
        return Err(AadError::new(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    let now = state.clock.unix();
    let matching: Vec<_> = app.secrets.iter().filter(|s| s.value == secret).collect();
    if matching.is_empty() {
        return Err(AadError::new(
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                app.client_id
            ),
        ));
    }
    if matching
        .iter()
        .all(|s| s.expires_at.is_some_and(|e| e <= now))
    {
        return Err(AadError::new(
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                app.client_id
            ),
        ));
    }
    Ok(ClientAuthMethod::Secret)
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: String,
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
}

fn key_not_found(app: &App, thumbprint_hex: &str) -> AadError {
    AadError::new(
        "invalid_client",
        700027,
        format!(
            "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint_hex}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine the corresponding service endpoint and https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build a query request URL, such as 'https://graph.microsoft.com/beta/applications/{}']",
            app.client_id, app.client_id
        ),
    )
}

fn verify_assertion(
    state: &AppState,
    app: &App,
    assertion: &str,
    origin: &str,
) -> Result<(), AadError> {
    let malformed = || {
        AadError::new(
            "invalid_client",
            50012,
            "Client assertion is malformed or could not be parsed.",
        )
    };
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| malformed())?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
        return Err(AadError::new(
            "invalid_client",
            5002738,
            format!(
                "Invalid JWT token. '{:?}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256, HS256'",
                header.alg
            ),
        ));
    }
    let certs: Vec<Vec<u8>> = app
        .certificates
        .iter()
        .filter_map(|p| pem_to_der(p))
        .collect();
    let (found, thumb_hex) = if let Some(t) = &header.x5t_s256 {
        let sent = decode_thumbprint(t);
        (
            certs
                .iter()
                .find(|c| sent.as_deref() == Some(sha2::Sha256::digest(c).as_slice())),
            thumbprint_text(t, sent.as_deref()),
        )
    } else if let Some(t) = &header.x5t {
        let sent = decode_thumbprint(t);
        (
            certs
                .iter()
                .find(|c| sent.as_deref() == Some(sha1::Sha1::digest(c).as_slice())),
            thumbprint_text(t, sent.as_deref()),
        )
    } else {
        return Err(AadError::new(
            "invalid_client",
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found. The assertion has neither an 'x5t#S256' nor an 'x5t' header.]",
        ));
    };
    let cert = found.ok_or_else(|| key_not_found(app, &thumb_hex))?;
    let key = cert_public_key(cert).ok_or_else(malformed)?;
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => AadError::new("invalid_client", 700027, format!("Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{thumb_hex}', Found key 'Start=01/01/2024 00:00:00, End=01/01/2099 00:00:00']")),
            _ => malformed(),
        })?
        .claims;
    if claims.iss != app.client_id || claims.sub != app.client_id {
        return Err(AadError::new(
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
        ));
    }
    let auds: Vec<String> = match &claims.aud {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let origin = origin.trim_end_matches('/');
    let aud_ok = auds.iter().any(|a| {
        a.starts_with(&format!("{origin}/"))
            && (a.ends_with("/oauth2/v2.0/token")
                || a.ends_with("/oauth2/token")
                || a.ends_with("/v2.0"))
    });
    if !aud_ok {
        return Err(AadError::new(
            "invalid_client",
            700027,
            format!(
                "Client assertion failed signature validation. [Reason - The audience '{}' of the client assertion does not match the token endpoint.]",
                auds.join(",")
            ),
        ));
    }
    let now = state.clock.unix();
    let skew = 300;
    let (Some(exp), nbf) = (claims.exp, claims.nbf.unwrap_or(0)) else {
        return Err(malformed());
    };
    if now > exp + skew || now + skew < nbf {
        return Err(AadError::new(
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
                fmt_time(now),
                fmt_time(nbf),
                fmt_time(exp)
            ),
        ));
    }
    Ok(())
}

/// The bytes of an `x5t` / `x5t#S256` header: base64url, with or without `=` padding (MSAL for
/// Python pads; Entra accepts both).
fn decode_thumbprint(t: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')).ok()
}

/// How 700027 names the thumbprint the client sent: upper-case hex of its bytes, or the header
/// value itself when it is not base64url.
fn thumbprint_text(sent: &str, bytes: Option<&[u8]>) -> String {
    match bytes {
        Some(b) => hex::encode_upper(b),
        None => sent.to_owned(),
    }
}

fn fmt_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S.0000000Z").to_string())
        .unwrap_or_default()
}

/// PEM (`-----BEGIN CERTIFICATE-----`) or bare base64 → DER.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let b64: String = match pem.find(BEGIN) {
        Some(start) => {
            let rest = &pem[start + BEGIN.len()..];
            let end = rest.find("-----END CERTIFICATE-----")?;
            rest[..end].split_whitespace().collect()
        }
        None => pem.split_whitespace().collect(),
    };
    STANDARD.decode(b64).ok()
}

/// One DER TLV: (tag, content, whole element, rest).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn tlv(b: &[u8]) -> Option<Tlv<'_>> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((tag, &b[hdr..end], &b[..end], &b[end..]))
}

/// The RSA public key of an X.509 certificate (its SubjectPublicKeyInfo).
pub fn cert_public_key(der: &[u8]) -> Option<DecodingKey> {
    let (_, cert, _, _) = tlv(der)?;
    let (_, tbs, _, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, _, r) = tlv(rest)?;
    if tag == 0xA0 {
        rest = r; // explicit version
    }
    // serial, signature algorithm, issuer, validity, subject
    for _ in 0..5 {
        rest = tlv(rest)?.3;
    }
    let (_, _, spki, _) = tlv(rest)?;
    let key = rsa::RsaPublicKey::from_public_key_der(spki).ok()?;
    DecodingKey::from_rsa_components(
        &URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        &URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    )
    .ok()
}
