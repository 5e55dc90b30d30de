//! Provider-neutral OAuth 2.0: PKCE and state generation, the authorization URL, and the token
//! endpoint calls (code exchange, refresh, client credentials). It knows nothing about
//! Microsoft's error codes: it returns the provider's error body parsed, and `microsoft/`
//! classifies it. `assertion` signs client assertions for certificate credentials.

pub mod assertion;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use rand::RngCore;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{
    AccessToken, AuthCode, ClientCertificate, ClientSecret, CodeVerifier, Integration, RefreshToken,
};

/// A random URL-safe string of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A PKCE verifier (43+ chars of unreserved characters) and its S256 challenge.
pub fn pkce_pair() -> (CodeVerifier, String) {
    let verifier = random_token(48);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (CodeVerifier::new(verifier), challenge)
}

/// Everything the authorize redirect carries.
#[derive(Debug)]
pub struct AuthorizeRequest<'a> {
    pub authorization_url: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    pub scope_separator: &'a str,
    pub state: &'a str,
    /// `None` when the provider disables PKCE.
    pub code_challenge: Option<&'a str>,
    /// Extra parameters (`prompt`, `login_hint`, `domain_hint`, …); later entries win.
    pub extra: &'a [(String, String)],
}

pub fn authorize_url(req: &AuthorizeRequest<'_>) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(req.authorization_url)?;
    let mut params: Vec<(String, String)> = vec![
        ("client_id".into(), req.client_id.into()),
        ("response_type".into(), "code".into()),
        ("redirect_uri".into(), req.redirect_uri.into()),
        ("response_mode".into(), "query".into()),
        ("scope".into(), req.scopes.join(req.scope_separator)),
        ("state".into(), req.state.into()),
    ];
    if let Some(ch) = req.code_challenge {
        params.push(("code_challenge".into(), ch.into()));
        params.push(("code_challenge_method".into(), "S256".into()));
    }
    for (k, v) in req.extra {
        if crate::validate::is_reserved_authorize_param(k) {
            continue;
        }
        params.retain(|(pk, _)| pk != k);
        params.push((k.clone(), v.clone()));
    }
    url.query_pairs_mut().extend_pairs(params);
    Ok(url.into())
}

/// A successful token response.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scope: Option<String>,
    pub token_type: String,
    /// The whole response body as received.
    pub raw: Value,
}

/// The standard OAuth error body, plus Microsoft's extensions (kept verbatim for classification).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u32>,
    #[serde(default)]
    pub suberror: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The provider answered with an OAuth error.
    #[error("token endpoint refused the request: {} (HTTP {status})", body.error)]
    Refused { status: u16, body: OAuthErrorBody },
    /// The provider answered with something that is not a token response or an OAuth error
    /// (5xx pages, proxies…).
    #[error("token endpoint answered HTTP {status} without an OAuth error body")]
    Unexpected {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("token endpoint could not be reached")]
    Network(#[source] reqwest::Error),
    #[error("token response is missing access_token")]
    NoAccessToken,
    /// The client assertion could not be built from the integration's certificate credential.
    #[error("client assertion failed")]
    Assertion(#[source] assertion::Error),
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth<'a> {
    /// `client_secret` in the form body (Microsoft's `client_secret_post`).
    Secret(&'a ClientSecret),
    /// A signed client assertion (`private_key_jwt`) from a certificate and its private key.
    Assertion(&'a ClientCertificate),
}

impl<'a> ClientAuth<'a> {
    /// The integration's certificate when it has one, else its client secret.
    pub fn of(integration: &'a Integration) -> Self {
        match &integration.app_credential.certificate {
            Some(c) => ClientAuth::Assertion(c),
            None => ClientAuth::Secret(&integration.client_secret),
        }
    }
}

/// One token endpoint call. `grant` holds the grant-specific form fields.
pub async fn token_request(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    auth: ClientAuth<'_>,
    grant: Vec<(&'static str, String)>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, TokenError> {
    let mut form: Vec<(&str, String)> = vec![("client_id", client_id.to_owned())];
    match auth {
        ClientAuth::Secret(s) => form.push(("client_secret", s.expose_secret().to_owned())),
        ClientAuth::Assertion(c) => {
            let jwt =
                assertion::sign(c, client_id, token_url, now).map_err(TokenError::Assertion)?;
            form.push(("client_assertion_type", assertion::JWT_BEARER.to_owned()));
            form.push(("client_assertion", jwt));
        }
    }
    form.extend(grant);
    let resp = http
        .post(token_url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(TokenError::Network)?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = resp.bytes().await.map_err(TokenError::Network)?;
    let raw: Option<Value> = serde_json::from_slice(&bytes).ok();
    if !(200..300).contains(&status) {
        return match raw.and_then(|v| serde_json::from_value::<OAuthErrorBody>(v).ok()) {
            Some(body) if !body.error.is_empty() => Err(TokenError::Refused { status, body }),
            _ => Err(TokenError::Unexpected {
                status,
                retry_after,
            }),
        };
    }
    let raw = raw.ok_or(TokenError::Unexpected {
        status,
        retry_after,
    })?;
    parse_token_response(raw, now)
}

fn parse_token_response(raw: Value, now: DateTime<Utc>) -> Result<TokenResponse, TokenError> {
    let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
    let access_token = s("access_token")
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::NoAccessToken)?;
    let expires_in = raw
        .get("expires_in")
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
    let expires_at = match (raw.get("expires_at").and_then(Value::as_str), expires_in) {
        (Some(at), _) => DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        (None, Some(secs)) => Some(now + TimeDelta::seconds(secs)),
        (None, None) => None,
    };
    Ok(TokenResponse {
        access_token: AccessToken::new(access_token),
        refresh_token: s("refresh_token")
            .filter(|t| !t.is_empty())
            .map(RefreshToken::new),
        expires_at,
        scope: s("scope"),
        token_type: s("token_type").unwrap_or_else(|| "Bearer".into()),
        raw,
    })
}

/// The authorization-code grant fields.
pub fn code_grant(
    code: &AuthCode,
    redirect_uri: &str,
    verifier: Option<&CodeVerifier>,
) -> Vec<(&'static str, String)> {
    let mut g = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.expose_secret().to_owned()),
        ("redirect_uri", redirect_uri.to_owned()),
    ];
    if let Some(v) = verifier {
        g.push(("code_verifier", v.expose_secret().to_owned()));
    }
    g
}

/// The refresh-token grant fields; `scope` asks for a token for another resource.
pub fn refresh_grant(
    refresh_token: &RefreshToken,
    scope: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut g = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.expose_secret().to_owned()),
    ];
    if let Some(s) = scope {
        g.push(("scope", s.to_owned()));
    }
    g
}

/// The client-credentials grant fields; `scope` is `{resource}/.default`.
pub fn client_credentials_grant(scope: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".to_owned()),
        ("scope", scope.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_s256_of_verifier() {
        let (v, c) = pkce_pair();
        assert!(v.expose_secret().len() >= 43);
        assert_eq!(
            c,
            URL_SAFE_NO_PAD.encode(Sha256::digest(v.expose_secret().as_bytes()))
        );
    }

    #[test]
    fn authorize_url_has_everything() {
        let scopes = vec!["offline_access".to_string(), "User.Read".to_string()];
        let extra = vec![("prompt".to_string(), "consent".to_string())];
        let u = authorize_url(&AuthorizeRequest {
            authorization_url: "https://login.example/common/oauth2/v2.0/authorize",
            client_id: "cid",
            redirect_uri: "http://localhost:3003/oauth/callback",
            scopes: &scopes,
            scope_separator: " ",
            state: "st",
            code_challenge: Some("ch"),
            extra: &extra,
        })
        .unwrap();
        let parsed = url::Url::parse(&u).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["scope"], "offline_access User.Read");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["redirect_uri"], "http://localhost:3003/oauth/callback");
    }

    #[test]
    fn token_response_parsing() {
        let now = Utc::now();
        let r = parse_token_response(
            serde_json::json!({"access_token":"a","refresh_token":"r","expires_in":3600,"token_type":"Bearer","scope":"User.Read"}),
            now,
        )
        .unwrap();
        assert_eq!(r.expires_at, Some(now + TimeDelta::seconds(3600)));
        assert!(r.refresh_token.is_some());
        assert!(matches!(
            parse_token_response(serde_json::json!({"x":1}), now),
            Err(TokenError::NoAccessToken)
        ));
        let r = parse_token_response(
            serde_json::json!({"access_token":"a","expires_in":"60"}),
            now,
        )
        .unwrap();
        assert_eq!(r.expires_at, Some(now + TimeDelta::seconds(60)));
    }
}
