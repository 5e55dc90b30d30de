//! Test helpers: spawn an emulator on an ephemeral port, build authorize URLs, run the sign-in
//! flow with the headless browser, call the token endpoint and peek into JWTs.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use grantd_emulator::browser::{Browser, Consent, Outcome};
use grantd_emulator::control::Control;
use grantd_emulator::seed::*;
use grantd_emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::Value;
use sha2::Digest as _;

pub const REDIRECT: &str = "http://localhost:3003/oauth/callback";

pub struct Emu {
    pub handle: EmulatorHandle,
    pub http: reqwest::Client,
    pub control: Control,
}

pub async fn spawn() -> Emu {
    spawn_with(EmulatorConfig::default()).await
}

pub async fn spawn_with(mut config: EmulatorConfig) -> Emu {
    config.large_file_size = 1 << 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = grantd_emulator::spawn(config, listener)
        .await
        .expect("spawn emulator");
    let control = handle.control();
    Emu {
        handle,
        http: reqwest::Client::new(),
        control,
    }
}

pub fn pkce() -> (String, String) {
    let verifier = format!("v{}", uuid::Uuid::new_v4().simple()).repeat(2);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

impl Emu {
    pub fn base(&self) -> &str {
        &self.handle.base_url
    }

    pub fn authorize_url(&self, tenant: &str, extra: &[(&str, &str)]) -> String {
        let mut u = url::Url::parse(&format!("{}/{tenant}/oauth2/v2.0/authorize", self.base()))
            .expect("url");
        {
            let mut q = u.query_pairs_mut();
            let has = |k: &str| extra.iter().any(|(n, _)| *n == k);
            for (k, v) in [
                ("client_id", DEV_CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                (
                    "scope",
                    "openid profile offline_access User.Read Files.Read",
                ),
                ("state", "st-123"),
            ] {
                if !has(k) {
                    q.append_pair(k, v);
                }
            }
            for (k, v) in extra {
                if !v.is_empty() {
                    q.append_pair(k, v);
                }
            }
        }
        u.to_string()
    }

    /// Signs `upn` in (accepting consent) and returns (code, verifier).
    pub async fn code_for(&self, tenant: &str, upn: &str, scope: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let url = self.authorize_url(
            tenant,
            &[
                ("scope", scope),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("nonce", "n-1"),
            ],
        );
        let out = Browser::new()
            .authorize(&url, Some((upn, PASSWORD)), Consent::Accept)
            .await
            .expect("flow");
        let code = out.code().unwrap_or_else(|| panic!("no code: {out:?}"));
        (code, verifier)
    }

    pub async fn token(&self, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base()))
            .form(form)
            .send()
            .await
            .expect("token request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("json body"))
    }

    pub async fn redeem(&self, tenant: &str, code: &str, verifier: &str) -> (u16, Value) {
        self.token(
            tenant,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", DEV_CLIENT_ID),
                ("client_secret", DEV_CLIENT_SECRET),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// A full sign-in + redemption; returns the token response.
    pub async fn tokens_for(&self, upn: &str, scope: &str) -> Value {
        let (code, verifier) = self.code_for("common", upn, scope).await;
        let (status, body) = self.redeem("common", &code, &verifier).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn refresh(&self, tenant: &str, rt: &str, scope: Option<&str>) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", DEV_CLIENT_ID),
            ("client_secret", DEV_CLIENT_SECRET),
            ("refresh_token", rt),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.token(tenant, &form).await
    }
}

/// The claims of a JWT, unverified.
pub fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("jwt payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

pub fn header(jwt: &str) -> Value {
    let part = jwt.split('.').next().expect("jwt header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

/// Asserts a Microsoft token-endpoint error body.
pub fn assert_aad(status: u16, body: &Value, want_status: u16, error: &str, code: u64) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"][0], code, "{body}");
    let d = body["error_description"].as_str().expect("description");
    assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
    assert!(
        d.contains("\r\nTrace ID: ")
            && d.contains("\r\nCorrelation ID: ")
            && d.contains("\r\nTimestamp: "),
        "{d}"
    );
    assert!(
        body["trace_id"].is_string()
            && body["correlation_id"].is_string()
            && body["timestamp"].is_string()
    );
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
}

pub fn outcome_params(o: &Outcome) -> std::collections::HashMap<String, String> {
    o.params()
}
