//! Token minting and validation: RS256 JWTs (access tokens in Microsoft's v1 shape for Graph and
//! SharePoint, v2 id_tokens), the signing key and its JWKS, and bearer validation for resources.

use serde::{Deserialize, Serialize};

/// The Graph resource's application id, used as `aud` in Graph v1 access tokens.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Which resource a bearer token must be for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Microsoft Graph (`00000003-0000-0000-c000-000000000000` or `https://graph.microsoft.com`).
    Graph,
    /// A SharePoint host, e.g. `contoso.sharepoint.com` (aud `https://contoso.sharepoint.com`).
    SharePoint(String),
    /// The consumer OneDrive API of personal accounts (`OneDrive.*` scopes; aud
    /// `https://api.onedrive.com` in the emulator).
    OneDriveConsumer,
}

/// The validated claims of an access token, as resources need them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub aud: String,
    pub iss: String,
    pub tid: String,
    /// Object id of the user (delegated) or of the app's service principal (app-only).
    pub oid: String,
    /// The client application's id.
    pub appid: String,
    /// Delegated scopes (space separated in the JWT); empty for app-only tokens.
    #[serde(default)]
    pub scp: Option<String>,
    /// Application permissions; present on app-only tokens.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub upn: Option<String>,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
}

impl AccessClaims {
    pub fn scopes(&self) -> Vec<&str> {
        self.scp
            .as_deref()
            .map(|s| s.split(' ').collect())
            .unwrap_or_default()
    }
    pub fn is_app_only(&self) -> bool {
        self.scp.is_none()
    }
    /// True when the token grants any of `needed` as a delegated scope or an app role.
    pub fn has_any(&self, needed: &[&str]) -> bool {
        let scopes = self.scopes();
        let roles = self.roles.as_deref().unwrap_or_default();
        needed.iter().any(|n| {
            scopes.iter().any(|s| s.eq_ignore_ascii_case(n))
                || roles.iter().any(|r| r.eq_ignore_ascii_case(n))
        })
    }
}

/// Why a bearer token was refused; resources render this as their own error JSON.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BearerError {
    #[error("no bearer token")]
    Missing,
    #[error("access token validation failure")]
    Invalid,
    #[error("access token has expired or is not yet valid")]
    Expired,
    #[error("invalid audience {0}")]
    WrongAudience(String),
}

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use sha1::Digest as _;

use crate::directory::{App, User};
use crate::state::AppState;

/// The emulator's token-signing key with its self-signed certificate (published in the JWKS).
pub struct SigningKey {
    /// Key id: as at Microsoft, equal to the certificate's SHA-1 thumbprint (`x5t`).
    pub kid: String,
    pub x5t: String,
    /// Base64url modulus and exponent for the JWKS.
    pub n: String,
    pub e: String,
    /// Base64 (standard) DER certificate for the JWKS `x5c`.
    pub x5c: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// One 2048-bit RSA key per process (generation is slow; tests spawn many emulators).
pub fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("generating the emulator signing key"))
}

impl SigningKey {
    fn generate() -> anyhow::Result<SigningKey> {
        let mut rng = rand::thread_rng();
        let key = RsaPrivateKey::new(&mut rng, 2048)?;
        let pkcs1 = key.to_pkcs1_der()?;
        let pkcs8 = key.to_pkcs8_der()?;
        let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
            &rcgen::PKCS_RSA_SHA256,
        )?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "accounts.accesscontrol.windows.net",
        );
        let cert = params.self_signed(&kp)?;
        let der = cert.der().to_vec();
        let x5t = URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der));
        let public = key.to_public_key();
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        Ok(SigningKey {
            kid: x5t.clone(),
            x5t,
            decoding: DecodingKey::from_rsa_components(&n, &e)?,
            n,
            e,
            x5c: STANDARD.encode(&der),
            encoding: EncodingKey::from_rsa_der(pkcs1.as_bytes()),
        })
    }

    /// Signs claims as an RS256 JWT with `kid` and `x5t` headers.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.kid.clone());
        header.x5t = Some(self.x5t.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("RS256 signing cannot fail")
    }

    /// The JWKS entry; `issuer` is the v2 issuer template for this key.
    pub fn jwk(&self, issuer: &str) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.x5t,
            "n": self.n,
            "e": self.e,
            "x5c": [self.x5c],
            "cloud_instance_name": "microsoftonline.com",
            "issuer": issuer,
        })
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// A GUID-shaped id derived from `parts` (stable across restarts), e.g. pairwise `sub` values
/// and service principal object ids.
pub fn derived_guid(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        sha2::Digest::update(&mut h, p.as_bytes());
        sha2::Digest::update(&mut h, [0u8]);
    }
    let b = sha2::Digest::finalize(h);
    uuid::Builder::from_random_bytes(b[..16].try_into().expect("16 bytes"))
        .into_uuid()
        .to_string()
}

/// A pairwise subject as Microsoft makes them (43 base64url characters).
pub fn pairwise_sub(user_id: &str, client_id: &str) -> String {
    let mut h = sha2::Sha256::new();
    sha2::Digest::update(&mut h, format!("sub|{user_id}|{client_id}").as_bytes());
    URL_SAFE_NO_PAD.encode(sha2::Digest::finalize(h))
}

/// The v1 issuer used in Graph and SharePoint access tokens.
pub fn v1_issuer(tid: &str) -> String {
    format!("https://sts.windows.net/{tid}/")
}

/// Claims of an access token in Microsoft's v1 shape (Graph, SharePoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct V1AccessToken {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub aio: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    pub app_displayname: String,
    pub appid: String,
    pub appidacr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    pub idp: Option<String>,
    pub idtyp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub oid: String,
    pub rh: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    pub sub: String,
    pub tid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    pub uti: String,
    pub ver: String,
}

/// What to put in an access token.
pub struct AccessTokenSpec<'a> {
    pub aud: String,
    pub tid: String,
    /// `None` for app-only tokens.
    pub user: Option<&'a User>,
    pub app: &'a App,
    /// Delegated scopes (already formatted, space separated); `None` for app-only tokens.
    pub scp: Option<String>,
    /// App roles for app-only tokens (`None` = no `roles` claim).
    pub roles: Option<Vec<String>>,
    /// `1` secret, `2` certificate, `0` public client.
    pub appidacr: &'static str,
    pub now: i64,
    pub lifetime: i64,
}

fn random_opaque(len: usize) -> String {
    use rand::RngCore as _;
    let mut b = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Mints a v1-shaped access token.
pub fn mint_access_token(spec: AccessTokenSpec<'_>) -> String {
    let key = signing_key();
    let app_only = spec.user.is_none();
    let (oid, sub) = match spec.user {
        Some(u) => (u.id.clone(), pairwise_sub(&u.id, &spec.app.client_id)),
        None => {
            let sp = service_principal_id(&spec.app.client_id, &spec.tid);
            (sp.clone(), sp)
        }
    };
    let personal = spec
        .user
        .is_some_and(|u| u.kind == crate::directory::AccountKind::Personal);
    let claims = V1AccessToken {
        aud: spec.aud,
        iss: v1_issuer(&spec.tid),
        iat: spec.now,
        nbf: spec.now,
        exp: spec.now + spec.lifetime,
        aio: random_opaque(24),
        amr: (!app_only).then(|| vec!["pwd".to_owned()]),
        app_displayname: spec.app.display_name.clone(),
        appid: spec.app.client_id.clone(),
        appidacr: spec.appidacr.to_owned(),
        family_name: spec.user.map(|u| u.surname.clone()),
        given_name: spec.user.map(|u| u.given_name.clone()),
        idp: if personal {
            Some("live.com".to_owned())
        } else {
            Some(v1_issuer(&spec.tid))
        },
        idtyp: if app_only { "app" } else { "user" }.to_owned(),
        name: spec.user.map(|u| u.display_name.clone()),
        oid,
        rh: format!("0.{}.", random_opaque(12)),
        scp: spec.scp,
        roles: spec.roles,
        sub,
        tid: spec.tid,
        unique_name: spec.user.map(|u| u.upn.clone()),
        upn: spec.user.filter(|_| !personal).map(|u| u.upn.clone()),
        uti: random_opaque(16),
        ver: "1.0".to_owned(),
    };
    key.sign(&claims)
}

/// The object id of an app's service principal in a tenant (stable).
pub fn service_principal_id(client_id: &str, tid: &str) -> String {
    derived_guid(&["sp", client_id, tid])
}

/// Claims of a v2 id_token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdToken {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub oid: String,
    pub preferred_username: String,
    pub rh: String,
    pub sid: String,
    pub sub: String,
    pub tid: String,
    pub uti: String,
    pub ver: String,
}

/// Mints a v2 id_token; `login_origin` is the emulator's own origin (stands in for
/// `https://login.microsoftonline.com`).
pub fn mint_id_token(
    login_origin: &str,
    user: &User,
    client_id: &str,
    nonce: Option<String>,
    sid: &str,
    now: i64,
    email: bool,
) -> String {
    let claims = IdToken {
        aud: client_id.to_owned(),
        iss: format!("{login_origin}/{}/v2.0", user.tenant_id),
        iat: now,
        nbf: now,
        exp: now + 3600,
        email: email.then(|| user.upn.clone()),
        idp: (user.kind == crate::directory::AccountKind::Personal)
            .then(|| format!("{login_origin}/{}/v2.0", crate::directory::MSA_TENANT_ID)),
        name: user.display_name.clone(),
        nonce,
        oid: user.id.clone(),
        preferred_username: user.upn.clone(),
        rh: format!("0.{}.", random_opaque(12)),
        sid: sid.to_owned(),
        sub: pairwise_sub(&user.id, client_id),
        tid: user.tenant_id.clone(),
        uti: random_opaque(16),
        ver: "2.0".to_owned(),
    };
    signing_key().sign(&claims)
}

impl Audience {
    /// True when the `aud` claim names this resource.
    pub fn accepts(&self, aud: &str) -> bool {
        match self {
            Audience::Graph => {
                aud == GRAPH_APP_ID
                    || aud.eq_ignore_ascii_case("https://graph.microsoft.com")
                    || aud.eq_ignore_ascii_case("https://graph.microsoft.com/")
            }
            Audience::SharePoint(host) => {
                let a = aud.trim_end_matches('/').to_ascii_lowercase();
                a == format!("https://{}", host.to_ascii_lowercase())
            }
            Audience::OneDriveConsumer => aud
                .trim_end_matches('/')
                .eq_ignore_ascii_case(crate::identity::scopes::ONEDRIVE_CONSUMER_AUDIENCE),
        }
    }
}

/// Decodes and verifies a JWT signed by the emulator key (no time or audience checks).
pub fn decode_unverified_time<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<T>(token, signing_key().decoding_key(), &v)
        .ok()
        .map(|d| d.claims)
}

/// Validates an `Authorization: Bearer` access token for a resource: signature against the
/// emulator key, `nbf`/`exp` against the emulator clock, `iss` shape and audience.
pub fn validate_bearer(
    state: &AppState,
    headers: &http::HeaderMap,
    aud: &Audience,
) -> Result<AccessClaims, BearerError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(BearerError::Missing)?
        .to_str()
        .map_err(|_| BearerError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(BearerError::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(BearerError::Missing);
    }
    validate_access_token(state, token, aud)
}

/// Validates an access token given without its header (e.g. the `access_token` form field of
/// SharePoint's `FilePicker.aspx`): the same checks as [`validate_bearer`].
pub fn validate_access_token(
    state: &AppState,
    token: &str,
    aud: &Audience,
) -> Result<AccessClaims, BearerError> {
    let claims: AccessClaims = decode_unverified_time(token).ok_or(BearerError::Invalid)?;
    if claims.iss != v1_issuer(&claims.tid) {
        return Err(BearerError::Invalid);
    }
    let now = state.clock.unix();
    if now < claims.nbf || now >= claims.exp {
        return Err(BearerError::Expired);
    }
    if !aud.accepts(&claims.aud) {
        return Err(BearerError::WrongAudience(claims.aud));
    }
    Ok(claims)
}
