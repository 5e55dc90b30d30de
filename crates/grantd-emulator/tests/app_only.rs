//! Application permissions over real HTTP: admin consent (admin, non-admin, cancel),
//! client_credentials tokens with `roles`, and certificate credentials (`private_key_jwt`).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use grantd_emulator::browser::{Browser, Consent, Outcome};
use grantd_emulator::control::NewApp;
use grantd_emulator::seed::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use sha1::Digest as _;

const GRAPH_DEFAULT: &str = "https://graph.microsoft.com/.default";

fn cc_form(secret: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", DEV_CLIENT_ID),
        ("client_secret", secret),
        ("scope", GRAPH_DEFAULT),
    ]
}

fn admin_consent_url(emu: &Emu, path: &str, scope: Option<&str>) -> String {
    let mut u = url::Url::parse(&format!("{}/{path}", emu.base())).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", DEV_CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "ac-1");
    if let Some(s) = scope {
        u.query_pairs_mut().append_pair("scope", s);
    }
    u.to_string()
}

#[tokio::test]
async fn client_credentials_needs_admin_consent_and_carries_roles() {
    let emu = spawn().await;
    // contoso is not the app's home tenant and has not consented: no service principal.
    let (s, b) = emu.token("contoso", &cc_form(DEV_CLIENT_SECRET)).await;
    assert_aad(s, &b, 401, "invalid_client", 7000229);
    // Only a tenant-specific authority works.
    let (s, b) = emu.token("common", &cc_form(DEV_CLIENT_SECRET)).await;
    assert_aad(s, &b, 400, "invalid_request", 50059);
    // In the home tenant without admin consent: a token without roles.
    let (s, b) = emu.token("fabrikam", &cc_form(DEV_CLIENT_SECRET)).await;
    assert_eq!(s, 200, "{b}");
    assert!(claims(b["access_token"].as_str().unwrap())["roles"].is_null());

    // Megan consents for contoso through the v2 endpoint.
    let out = Browser::new()
        .authorize(
            &admin_consent_url(&emu, "organizations/v2.0/adminconsent", Some(GRAPH_DEFAULT)),
            Some((MEGAN_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let p = out.params();
    assert_eq!(
        p.get("admin_consent").map(String::as_str),
        Some("True"),
        "{out:?}"
    );
    assert_eq!(p["tenant"], CONTOSO_TENANT_ID);
    assert_eq!(p["state"], "ac-1");
    assert_eq!(p["scope"], GRAPH_DEFAULT);

    let (s, b) = emu
        .token(CONTOSO_TENANT_ID, &cc_form(DEV_CLIENT_SECRET))
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b.get("refresh_token").is_none() && b.get("id_token").is_none() && b.get("scope").is_none(),
        "{b}"
    );
    let c = claims(b["access_token"].as_str().unwrap());
    assert_eq!(c["idtyp"], "app");
    assert_eq!(c["tid"], CONTOSO_TENANT_ID);
    assert_eq!(c["aud"], "https://graph.microsoft.com");
    assert!(c["scp"].is_null() && c["upn"].is_null());
    let mut roles: Vec<String> = serde_json::from_value(c["roles"].clone()).unwrap();
    roles.sort();
    assert_eq!(
        roles,
        vec!["Files.Read.All", "Sites.Read.All", "User.Read.All"]
    );
    assert_eq!(c["oid"], c["sub"]);

    // Scope rules.
    let (s, b) = emu
        .token(
            "contoso",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", DEV_CLIENT_ID),
                ("client_secret", DEV_CLIENT_SECRET),
                ("scope", "User.Read"),
            ],
        )
        .await;
    assert_aad(s, &b, 400, "invalid_scope", 1002012);
    let (s, b) = emu
        .token(
            "contoso",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", DEV_CLIENT_ID),
                ("client_secret", DEV_CLIENT_SECRET),
                (
                    "scope",
                    "https://graph.microsoft.com/.default https://contoso.sharepoint.com/.default",
                ),
            ],
        )
        .await;
    assert_aad(s, &b, 400, "invalid_scope", 70011);
    let (s, b) = emu
        .token(
            "contoso",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", DEV_CLIENT_ID),
                ("client_secret", DEV_CLIENT_SECRET),
                ("scope", "https://contoso.sharepoint.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        claims(b["access_token"].as_str().unwrap())["aud"],
        "https://contoso.sharepoint.com"
    );
    assert_eq!(emu.control.admin_consents().await.unwrap().len(), 1);
}

#[tokio::test]
async fn admin_consent_v1_refusals_and_cancel() {
    let emu = spawn().await;
    // Adele is not an admin: "need admin approval", then back to the app with access_denied.
    let out = Browser::new()
        .authorize(
            &admin_consent_url(&emu, "contoso/adminconsent", None),
            Some((ADELE_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    assert_eq!(out.error().as_deref(), Some("access_denied"), "{out:?}");
    assert_eq!(out.aadsts(), Some(90094));
    assert_eq!(out.params()["state"], "ac-1");
    // Megan cancels.
    let out = Browser::new()
        .authorize(
            &admin_consent_url(&emu, "contoso/adminconsent", None),
            Some((MEGAN_UPN, PASSWORD)),
            Consent::Cancel,
        )
        .await
        .unwrap();
    assert_eq!(out.error().as_deref(), Some("access_denied"), "{out:?}");
    assert_eq!(out.aadsts(), Some(65004));
    assert!(emu.control.admin_consents().await.unwrap().is_empty());
    // Diego (fabrikam admin) on contoso's endpoint: not in that tenant.
    let out = Browser::new()
        .authorize(
            &admin_consent_url(&emu, "contoso/adminconsent", None),
            Some((DIEGO_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            Outcome::ErrorPage {
                code: Some(50020),
                ..
            }
        ),
        "{out:?}"
    );
    // Megan accepts on the v1 endpoint: no scope in the answer.
    let out = Browser::new()
        .authorize(
            &admin_consent_url(&emu, "common/adminconsent", None),
            Some((MEGAN_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let p = out.params();
    assert_eq!(
        p.get("admin_consent").map(String::as_str),
        Some("True"),
        "{out:?}"
    );
    assert_eq!(p["tenant"], CONTOSO_TENANT_ID);
    assert!(!p.contains_key("scope"));
    assert_eq!(emu.control.admin_consents().await.unwrap().len(), 1);
    // Reset forgets it.
    emu.control.reset().await.unwrap();
    assert!(emu.control.admin_consents().await.unwrap().is_empty());
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

fn assertion(
    cert: &TestCert,
    client_id: &str,
    aud: &str,
    alg: Algorithm,
    sha256: bool,
    now: i64,
) -> String {
    let mut h = Header::new(alg);
    if sha256 {
        h.x5t_s256 =
            Some(URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(&cert.der)));
    } else {
        h.x5t = Some(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&cert.der)));
    }
    let claims = serde_json::json!({ "aud": aud, "iss": client_id, "sub": client_id, "jti": uuid::Uuid::new_v4().to_string(), "nbf": now, "iat": now, "exp": now + 600 });
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_der(&cert.pkcs1)).unwrap()
}

#[tokio::test]
async fn private_key_jwt_with_registered_and_wrong_certificates() {
    let emu = spawn().await;
    let good = make_cert();
    let wrong = make_cert();
    let mut app = NewApp::new("cert app");
    app.home_tenant = Some("contoso".into());
    app.sign_in_audience = grantd_emulator::directory::SignInAudience::AzureADMultipleOrgs;
    app.certificates = vec![good.pem.clone()];
    app.application_permissions = vec!["Files.Read.All".into()];
    let app = emu.control.register_app(&app).await.unwrap();
    emu.control
        .grant_admin_consent("contoso", &app.client_id)
        .await
        .unwrap();
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
                    ("scope", GRAPH_DEFAULT),
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
    for (alg, s256) in [
        (Algorithm::RS256, true),
        (Algorithm::PS256, true),
        (Algorithm::RS256, false),
        (Algorithm::PS256, false),
    ] {
        let (s, b) = call(assertion(&good, &app.client_id, &aud, alg, s256, now)).await;
        assert_eq!(s, 200, "{alg:?} s256={s256}: {b}");
        let c = claims(b["access_token"].as_str().unwrap());
        assert_eq!(c["appidacr"], "2");
        assert_eq!(c["roles"], serde_json::json!(["Files.Read.All"]));
    }
    let (s, b) = call(assertion(
        &wrong,
        &app.client_id,
        &aud,
        Algorithm::RS256,
        true,
        now,
    ))
    .await;
    assert_aad(s, &b, 401, "invalid_client", 700027);
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("The key was not found"),
        "{b}"
    );
    // A forged signature with the good cert's thumbprint.
    let mut forged = assertion(&wrong, &app.client_id, &aud, Algorithm::RS256, true, now);
    let good_header = assertion(&good, &app.client_id, &aud, Algorithm::RS256, true, now);
    forged = format!(
        "{}.{}",
        good_header.split('.').next().unwrap(),
        forged.split_once('.').unwrap().1
    );
    let (s, b) = call(forged).await;
    assert_aad(s, &b, 401, "invalid_client", 700027);
    // Wrong audience, wrong issuer, expired.
    let (s, b) = call(assertion(
        &good,
        &app.client_id,
        "https://elsewhere.example/token",
        Algorithm::RS256,
        true,
        now,
    ))
    .await;
    assert_aad(s, &b, 401, "invalid_client", 700027);
    let (s, b) = call(assertion(
        &good,
        DEV_CLIENT_ID,
        &aud,
        Algorithm::RS256,
        true,
        now,
    ))
    .await;
    assert_aad(s, &b, 401, "invalid_client", 700021);
    let (s, b) = call(assertion(
        &good,
        &app.client_id,
        &aud,
        Algorithm::RS256,
        true,
        now - 3600,
    ))
    .await;
    assert_aad(s, &b, 401, "invalid_client", 700024);
    // Adding the second certificate at run time makes it valid.
    emu.control
        .add_certificate(&app.client_id, &wrong.pem)
        .await
        .unwrap();
    let (s, b) = call(assertion(
        &wrong,
        &app.client_id,
        &aud,
        Algorithm::PS256,
        true,
        now,
    ))
    .await;
    assert_eq!(s, 200, "{b}");
}
