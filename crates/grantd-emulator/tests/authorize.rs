//! Authorize endpoint over real HTTP: sign-in and consent pages, response modes, prompt values,
//! PKCE, error pages vs redirected errors, tenant/account rules.

mod common;

use common::*;
use grantd_emulator::browser::{Browser, Consent, Outcome};
use grantd_emulator::control::NewApp;
use grantd_emulator::directory::SignInAudience;
use grantd_emulator::seed::*;

#[tokio::test]
async fn sign_in_consent_and_code_with_loopback_port_and_state() {
    let emu = spawn().await;
    let b = Browser::new();
    let out = b
        .authorize(
            &emu.authorize_url("common", &[]),
            Some((ADELE_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let Outcome::Redirect(url) = &out else {
        panic!("{out:?}")
    };
    assert_eq!(url.as_str().split('?').next().unwrap(), REDIRECT);
    let p = out.params();
    assert!(p["code"].starts_with("1.A"), "{p:?}");
    assert_eq!(p["state"], "st-123");
    assert!(p.contains_key("session_state"));
}

#[tokio::test]
async fn sign_in_page_has_labelled_fields_and_wrong_password_is_refused() {
    let emu = spawn().await;
    let html = emu
        .http
        .get(emu.authorize_url("common", &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(">Email</label>")
            && html.contains(">Password</label>")
            && html.contains(">Sign in</button>"),
        "{html}"
    );
    let out = Browser::new()
        .authorize(
            &emu.authorize_url("common", &[]),
            Some((ADELE_UPN, "nope")),
            Consent::Accept,
        )
        .await
        .unwrap();
    let Outcome::SignInFailed { message } = out else {
        panic!("{out:?}")
    };
    assert!(message.contains("AADSTS50126"), "{message}");
}

#[tokio::test]
async fn consent_page_lists_permissions_and_is_remembered() {
    let emu = spawn().await;
    let url = emu.authorize_url("common", &[]);
    let out = Browser::new()
        .authorize(&url, Some((ADELE_UPN, PASSWORD)), Consent::Stop)
        .await
        .unwrap();
    let Outcome::ConsentPage { permissions } = out else {
        panic!("{out:?}")
    };
    assert!(
        permissions.iter().any(|p| p.contains("Files.Read")),
        "{permissions:?}"
    );
    // Accept once; a fresh browser then gets no consent page for the same scopes...
    assert!(
        Browser::new()
            .authorize(&url, Some((ADELE_UPN, PASSWORD)), Consent::Accept)
            .await
            .unwrap()
            .code()
            .is_some()
    );
    let again = Browser::new()
        .authorize(&url, Some((ADELE_UPN, PASSWORD)), Consent::Stop)
        .await
        .unwrap();
    assert!(again.code().is_some(), "{again:?}");
    // ...but prompt=consent forces it, and a new scope asks again.
    let forced = Browser::new()
        .authorize(
            &emu.authorize_url("common", &[("prompt", "consent")]),
            Some((ADELE_UPN, PASSWORD)),
            Consent::Stop,
        )
        .await
        .unwrap();
    assert!(matches!(forced, Outcome::ConsentPage { .. }), "{forced:?}");
    let more = Browser::new()
        .authorize(
            &emu.authorize_url("common", &[("scope", "openid Files.ReadWrite")]),
            Some((ADELE_UPN, PASSWORD)),
            Consent::Stop,
        )
        .await
        .unwrap();
    assert!(matches!(more, Outcome::ConsentPage { .. }), "{more:?}");
}

#[tokio::test]
async fn cancel_consent_redirects_access_denied() {
    let emu = spawn().await;
    let out = Browser::new()
        .authorize(
            &emu.authorize_url("common", &[]),
            Some((ADELE_UPN, PASSWORD)),
            Consent::Cancel,
        )
        .await
        .unwrap();
    assert_eq!(out.error().as_deref(), Some("access_denied"));
    assert_eq!(out.aadsts(), Some(65004));
    assert_eq!(out.params()["state"], "st-123");
    let d = &out.params()["error_description"];
    assert!(
        d.contains("\r\nTrace ID: ")
            && d.contains("\r\nCorrelation ID: ")
            && d.contains("\r\nTimestamp: "),
        "{d}"
    );
    assert_eq!(
        out.params()["error_uri"],
        "https://login.microsoftonline.com/error?code=65004"
    );
}

#[tokio::test]
async fn form_post_and_fragment_response_modes() {
    let emu = spawn().await;
    let out = Browser::new()
        .authorize(
            &emu.authorize_url("common", &[("response_mode", "form_post")]),
            Some((ADELE_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let Outcome::FormPost { action, params } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(action, REDIRECT);
    assert!(params.iter().any(|(k, _)| k == "code"));
    assert!(params.iter().any(|(k, v)| k == "state" && v == "st-123"));
    let out = Browser::new()
        .authorize(
            &emu.authorize_url("common", &[("response_mode", "fragment")]),
            Some((ADELE_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let Outcome::Redirect(u) = &out else {
        panic!("{out:?}")
    };
    assert!(u.fragment().unwrap().contains("code="), "{u}");
    let bad = Browser::new()
        .authorize(
            &emu.authorize_url("common", &[("response_mode", "carrier_pigeon")]),
            None,
            Consent::Accept,
        )
        .await
        .unwrap();
    assert_eq!(bad.aadsts(), Some(70007));
}

#[tokio::test]
async fn untrusted_client_or_redirect_gets_an_error_page() {
    let emu = spawn().await;
    let b = Browser::new();
    for (tenant, extra, code) in [
        (
            "common",
            vec![("redirect_uri", "https://evil.example/cb")],
            50011,
        ),
        (
            "common",
            vec![("redirect_uri", "http://localhost:3003/oauth/other")],
            50011,
        ),
        (
            "common",
            vec![("client_id", "11111111-2222-3333-4444-555555555555")],
            700016,
        ),
        ("nowhere.onmicrosoft.com", vec![], 90002),
    ] {
        let out = b
            .authorize(&emu.authorize_url(tenant, &extra), None, Consent::Accept)
            .await
            .unwrap();
        let Outcome::ErrorPage {
            status,
            code: c,
            text,
        } = &out
        else {
            panic!("{out:?}")
        };
        assert_eq!(*c, Some(code), "{text}");
        assert_eq!(*status, 400);
    }
    // 127.0.0.1 with any port matches the registered loopback URI.
    let out = b
        .authorize(
            &emu.authorize_url(
                "common",
                &[("redirect_uri", "http://127.0.0.1:9999/oauth/callback")],
            ),
            Some((ADELE_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    assert!(out.code().is_some(), "{out:?}");
}

#[tokio::test]
async fn redirected_parameter_errors() {
    let emu = spawn().await;
    let b = Browser::new();
    type Case = (Vec<(&'static str, &'static str)>, &'static str, u32);
    let cases: Vec<Case> = vec![
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
            700054,
        ),
        (vec![("scope", "Files.Fly")], "invalid_client", 650053),
        (
            vec![("scope", "https://graph.microsoft.com/.default User.Read")],
            "invalid_scope",
            70011,
        ),
        (
            vec![("scope", "https://api.unknown.example/Read")],
            "invalid_resource",
            500011,
        ),
        (
            vec![
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
            501491,
        ),
    ];
    for (extra, error, code) in cases {
        let out = b
            .authorize(&emu.authorize_url("common", &extra), None, Consent::Accept)
            .await
            .unwrap();
        assert_eq!(out.error().as_deref(), Some(error), "{out:?}");
        assert_eq!(out.aadsts(), Some(code), "{out:?}");
        assert_eq!(out.params()["state"], "st-123");
    }
}

#[tokio::test]
async fn prompt_none_errors_and_silent_success() {
    let emu = spawn().await;
    let b = Browser::new();
    let silent = emu.authorize_url("common", &[("prompt", "none")]);
    let out = b.authorize(&silent, None, Consent::Accept).await.unwrap();
    assert_eq!(out.error().as_deref(), Some("login_required"));
    assert_eq!(out.aadsts(), Some(50058));
    // Signed in with consent for different scopes → consent_required.
    b.authorize(
        &emu.authorize_url("common", &[("scope", "openid User.Read")]),
        Some((ADELE_UPN, PASSWORD)),
        Consent::Accept,
    )
    .await
    .unwrap();
    let out = b.authorize(&silent, None, Consent::Accept).await.unwrap();
    assert_eq!(out.error().as_deref(), Some("consent_required"), "{out:?}");
    assert_eq!(out.aadsts(), Some(65001));
    // Consented → a code without any page.
    let ok = b
        .authorize(
            &emu.authorize_url(
                "common",
                &[("prompt", "none"), ("scope", "openid User.Read")],
            ),
            None,
            Consent::Accept,
        )
        .await
        .unwrap();
    assert!(ok.code().is_some(), "{ok:?}");
    // MFA required after the session started → interaction_required.
    emu.control.set_mfa_required(ADELE_UPN, true).await.unwrap();
    let out = b
        .authorize(
            &emu.authorize_url(
                "common",
                &[("prompt", "none"), ("scope", "openid User.Read")],
            ),
            None,
            Consent::Accept,
        )
        .await
        .unwrap();
    assert_eq!(out.error().as_deref(), Some("interaction_required"));
    assert_eq!(out.aadsts(), Some(50076));
    // Revoking the user kills the session.
    emu.control
        .set_mfa_required(ADELE_UPN, false)
        .await
        .unwrap();
    emu.control.revoke_user(ADELE_UPN).await.unwrap();
    let out = b
        .authorize(
            &emu.authorize_url(
                "common",
                &[("prompt", "none"), ("scope", "openid User.Read")],
            ),
            None,
            Consent::Accept,
        )
        .await
        .unwrap();
    assert_eq!(out.error().as_deref(), Some("login_required"));
}

#[tokio::test]
async fn prompt_login_asks_for_credentials_again() {
    let emu = spawn().await;
    let b = Browser::new();
    b.authorize(
        &emu.authorize_url("common", &[]),
        Some((ADELE_UPN, PASSWORD)),
        Consent::Accept,
    )
    .await
    .unwrap();
    let reuse = b
        .authorize(&emu.authorize_url("common", &[]), None, Consent::Accept)
        .await
        .unwrap();
    assert!(reuse.code().is_some(), "session reused: {reuse:?}");
    let login = b
        .authorize(
            &emu.authorize_url("common", &[("prompt", "login")]),
            None,
            Consent::Accept,
        )
        .await
        .unwrap();
    assert!(matches!(login, Outcome::SignInRequired), "{login:?}");
    let select = b
        .authorize(
            &emu.authorize_url("common", &[("prompt", "select_account")]),
            None,
            Consent::Accept,
        )
        .await
        .unwrap();
    assert!(matches!(select, Outcome::SignInRequired), "{select:?}");
}

#[tokio::test]
async fn tenant_and_account_kind_rules() {
    let emu = spawn().await;
    let cases = [
        ("organizations", SAM_UPN, 500200),
        ("contoso.onmicrosoft.com", DIEGO_UPN, 50020),
        ("consumers", ADELE_UPN, 50020),
    ];
    for (tenant, upn, code) in cases {
        let out = Browser::new()
            .authorize(
                &emu.authorize_url(tenant, &[]),
                Some((upn, PASSWORD)),
                Consent::Accept,
            )
            .await
            .unwrap();
        let Outcome::ErrorPage { code: c, text, .. } = &out else {
            panic!("{tenant} {upn}: {out:?}")
        };
        assert_eq!(*c, Some(code), "{text}");
    }
    // Sam works on common and consumers; adele on her tenant GUID.
    let ok = Browser::new()
        .authorize(
            &emu.authorize_url("consumers", &[]),
            Some((SAM_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    assert!(ok.code().unwrap().starts_with("M.C"), "{ok:?}");
    let ok = Browser::new()
        .authorize(
            &emu.authorize_url(CONTOSO_TENANT_ID, &[]),
            Some((ADELE_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    assert!(ok.code().is_some());
    // A single-tenant app: AADSTS50194 on /common, foreign users refused on its tenant.
    let mut app = NewApp::new("single tenant");
    app.sign_in_audience = SignInAudience::AzureADMyOrg;
    app.redirect_uris = vec!["http://localhost/oauth/callback".into()];
    let app = emu.control.register_app(&app).await.unwrap();
    let out = Browser::new()
        .authorize(
            &emu.authorize_url("common", &[("client_id", &app.client_id)]),
            None,
            Consent::Accept,
        )
        .await
        .unwrap();
    assert_eq!(out.aadsts(), Some(50194), "{out:?}");
    let out = Browser::new()
        .authorize(
            &emu.authorize_url("organizations", &[("client_id", &app.client_id)]),
            None,
            Consent::Accept,
        )
        .await
        .unwrap();
    assert_eq!(out.aadsts(), Some(50194), "{out:?}");
    let ok = Browser::new()
        .authorize(
            &emu.authorize_url("contoso", &[("client_id", &app.client_id)]),
            Some((MEGAN_UPN, PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    assert!(ok.code().is_some(), "{ok:?}");
}
