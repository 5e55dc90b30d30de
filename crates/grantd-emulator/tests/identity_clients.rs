//! Identity behaviour Microsoft's own clients key on, over real HTTP: 50173 carries
//! `suberror: bad_token`, tokens carry every consented scope of the resource (on a tenant path
//! and on `/common` alike), padded base64url certificate thumbprints, and 50076's claims challenge.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use common::*;
use grantd_emulator::control::NewApp;
use grantd_emulator::seed::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use sha1::Digest as _;

/// The resource permissions in `scp` (Entra also lists the OIDC scopes there).
fn scp_set(jwt: &str) -> Vec<String> {
    let mut v: Vec<String> = claims(jwt)["scp"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !["openid", "profile", "email"].contains(s))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn words(s: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = s
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn revoked_grant_is_bad_token() {
    let emu = spawn().await;
    let rt = emu
        .tokens_for(ADELE_UPN, "openid offline_access User.Read")
        .await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    emu.control.revoke_user(ADELE_UPN).await.unwrap();
    let (s, b) = emu.refresh("common", &rt, None).await;
    assert_aad(s, &b, 400, "invalid_grant", 50173);
    assert_eq!(b["suberror"], "bad_token", "{b}");
}

#[tokio::test]
async fn tokens_carry_every_consented_scope_of_the_resource() {
    let emu = spawn().await;
    let first = emu
        .tokens_for(
            ADELE_UPN,
            "openid offline_access User.Read Files.ReadWrite.All",
        )
        .await;
    let rt = first["refresh_token"].as_str().unwrap().to_owned();
    let want = vec!["Files.ReadWrite.All".to_owned(), "User.Read".to_owned()];
    // A refresh asking for less still gets everything consented, on /common and a tenant path.
    let mut seen = Vec::new();
    for tenant in ["common", "contoso", CONTOSO_TENANT_ID, "organizations"] {
        let (s, b) = emu.refresh(tenant, &rt, Some("User.Read")).await;
        assert_eq!(s, 200, "{tenant}: {b}");
        assert_eq!(
            scp_set(b["access_token"].as_str().unwrap()),
            want,
            "{tenant}"
        );
        assert_eq!(words(&b["scope"]), want, "{tenant}: {b}");
        seen.push(b["scope"].clone());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    // A later sign-in asking for one scope: the remembered consent still covers both.
    let second = emu
        .tokens_for(ADELE_UPN, "openid offline_access User.Read")
        .await;
    assert_eq!(scp_set(second["access_token"].as_str().unwrap()), want);
    let mut resp = words(&second["scope"]);
    resp.retain(|w| w != "openid");
    assert_eq!(resp, want, "{second}");
    // Asking for something never consented is still refused.
    let (s, b) = emu.refresh("common", &rt, Some("Mail.Read")).await;
    assert_aad(s, &b, 400, "invalid_grant", 65001);
}

#[tokio::test]
async fn mfa_required_carries_a_claims_challenge() {
    let emu = spawn().await;
    let rt = emu
        .tokens_for(ADELE_UPN, "openid offline_access User.Read")
        .await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    emu.control.set_mfa_required(ADELE_UPN, true).await.unwrap();
    let (s, b) = emu.refresh("contoso", &rt, None).await;
    assert_aad(s, &b, 400, "invalid_grant", 50076);
    assert_eq!(b["suberror"], "basic_action");
    let challenge: serde_json::Value =
        serde_json::from_str(b["claims"].as_str().expect("claims is a JSON string")).unwrap();
    let pol = &challenge["access_token"]["capolids"];
    assert_eq!(pol["essential"], true, "{challenge}");
    let ids = pol["values"].as_array().unwrap();
    assert_eq!(ids.len(), 1);
    assert!(uuid::Uuid::parse_str(ids[0].as_str().unwrap()).is_ok());
    // Other errors carry no claims.
    let (_, b) = emu.refresh("common", "garbage", None).await;
    assert!(b.get("claims").is_none(), "{b}");
}

struct TestCert {
    pem: String,
    der: Vec<u8>,
    pkcs1: Vec<u8>,
}

fn make_cert() -> TestCert {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pkcs8 = key.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8.as_bytes().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let cert = rcgen::CertificateParams::new(vec!["grantd-test".to_owned()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    TestCert {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        pkcs1: key.to_pkcs1_der().unwrap().as_bytes().to_vec(),
    }
}

/// An assertion whose header carries exactly the given `x5t` / `x5t#S256` strings.
fn assertion_with(
    cert: &TestCert,
    client_id: &str,
    aud: &str,
    x5t: Option<String>,
    s256: Option<String>,
    now: i64,
) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.x5t = x5t;
    h.x5t_s256 = s256;
    let claims = serde_json::json!({ "aud": aud, "iss": client_id, "sub": client_id, "jti": uuid::Uuid::new_v4().to_string(), "nbf": now, "iat": now, "exp": now + 600 });
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_der(&cert.pkcs1)).unwrap()
}

#[tokio::test]
async fn padded_thumbprints_are_accepted_and_700027_names_the_one_sent() {
    let emu = spawn().await;
    let good = make_cert();
    let wrong = make_cert();
    let mut app = NewApp::new("padded thumbprints");
    app.home_tenant = Some("contoso".into());
    app.certificates = vec![good.pem.clone()];
    app.application_permissions = vec!["Files.Read.All".into()];
    let app = emu.control.register_app(&app).await.unwrap();
    let aud = format!("{}/contoso/oauth2/v2.0/token", emu.base());
    let now = emu.control.clock().await.unwrap().now;
    let call = |a: String| {
        let client_id = app.client_id.clone();
        let emu = &emu;
        async move {
            emu.token(
                "contoso",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &client_id),
                    ("scope", "https://graph.microsoft.com/.default"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &a),
                ],
            )
            .await
        }
    };
    let sha1_of = |c: &TestCert| sha1::Sha1::digest(&c.der).to_vec();
    let sha256_of = |c: &TestCert| <sha2::Sha256 as sha2::Digest>::digest(&c.der).to_vec();
    // SHA-1 is 20 bytes and SHA-256 32: both encode with `=` padding.
    for (x5t, s256) in [
        (Some(URL_SAFE.encode(sha1_of(&good))), None),
        (None, Some(URL_SAFE.encode(sha256_of(&good)))),
        (Some(URL_SAFE_NO_PAD.encode(sha1_of(&good))), None),
    ] {
        assert!(x5t.as_deref().or(s256.as_deref()).is_some());
        let (s, b) = call(assertion_with(
            &good,
            &app.client_id,
            &aud,
            x5t.clone(),
            s256.clone(),
            now,
        ))
        .await;
        assert_eq!(s, 200, "x5t={x5t:?} s256={s256:?}: {b}");
    }
    assert!(URL_SAFE.encode(sha1_of(&good)).ends_with('='));
    // An unknown key: the message names the thumbprint that was sent (padded or not).
    for padded in [true, false] {
        let bytes = sha256_of(&wrong);
        let sent = if padded {
            URL_SAFE.encode(&bytes)
        } else {
            URL_SAFE_NO_PAD.encode(&bytes)
        };
        let (s, b) = call(assertion_with(
            &wrong,
            &app.client_id,
            &aud,
            None,
            Some(sent),
            now,
        ))
        .await;
        assert_aad(s, &b, 401, "invalid_client", 700027);
        let d = b["error_description"].as_str().unwrap();
        assert!(
            d.contains(&format!(
                "Thumbprint of key used by client: '{}'",
                hex::encode_upper(&bytes)
            )),
            "{d}"
        );
    }
    // A thumbprint that is not base64url at all is echoed as sent.
    let (s, b) = call(assertion_with(
        &wrong,
        &app.client_id,
        &aud,
        Some("not*base64".into()),
        None,
        now,
    ))
    .await;
    assert_aad(s, &b, 401, "invalid_client", 700027);
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("'not*base64'"),
        "{b}"
    );
}
