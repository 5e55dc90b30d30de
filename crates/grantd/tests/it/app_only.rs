//! Application permissions over real HTTP against the emulator: admin-consent connections
//! (administrator, non-administrator, declined — on the page and the WebSocket), client-credentials
//! tokens through the proxy (`/users/{upn}/drive` works, `/me` answers 400 as Microsoft does) and
//! renewed on expiry, `POST /connections` with a tenant id, certificate credentials (a right and a
//! wrong certificate), and secret/certificate expiry warnings and the expired-secret state.

use std::time::Duration;

use chrono::TimeDelta;
use futures::StreamExt;
use grantd_emulator::browser::{Browser, Consent};
use grantd_emulator::control::{NewApp, NewSecret};
use grantd_emulator::directory::SignInAudience;
use grantd_emulator::seed;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::{Opts, TestApp};
use crate::support::db::DbKind;

const ADELE_DRIVE: &str = "/v1.0/users/adele@contoso.onmicrosoft.com/drive";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(app: &TestApp) -> (Socket, String) {
    let url = format!("{}/", app.url.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let ack = next_frame(&mut ws).await.expect("connection_ack");
    let id = ack["ws_client_id"].as_str().unwrap().to_owned();
    (ws, id)
}

/// The next text frame; the timeout only keeps a broken server from hanging the run.
async fn next_frame(ws: &mut Socket) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a frame within a minute");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Creates an app-only integration; `credentials` adds to the type and client id.
async fn create_app_integration(app: &TestApp, key: &str, client_id: &str, credentials: Value) {
    let mut creds = json!({"type": "OAUTH2_CC", "client_id": client_id});
    for (k, v) in credentials.as_object().unwrap() {
        creds[k] = v.clone();
    }
    let r = app
        .post(
            "/integrations",
            &json!({"provider": "one-drive-app", "unique_key": key, "credentials": creds}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The admin-consent flow as `upn` answering `consent`; returns (callback status, page).
async fn admin_consent(
    app: &TestApp,
    key: &str,
    end_user: &str,
    upn: &str,
    consent: Consent,
    ws_client_id: Option<&str>,
) -> (u16, String) {
    let token = app.session(end_user, &[key]).await;
    let extra = ws_client_id
        .map(|w| format!("&ws_client_id={w}"))
        .unwrap_or_default();
    let url = app.start_connect(key, &token, &extra).await;
    assert!(
        url.starts_with(&format!(
            "{}/organizations/v2.0/adminconsent?",
            app.emu.base_url
        )),
        "{url}"
    );
    assert!(!url.contains("code_challenge"), "{url}");
    let outcome = Browser::new()
        .authorize(&url, Some((upn, seed::PASSWORD)), consent)
        .await
        .unwrap();
    app.deliver(&outcome).await
}

fn access_token(conn: &Value) -> String {
    conn["credentials"]["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn admin_consent_connection_proxies_with_app_only_tokens() {
    let app = TestApp::spawn().await;
    create_app_integration(
        &app,
        "od-app",
        seed::DEV_CLIENT_ID,
        json!({"client_secret": seed::DEV_CLIENT_SECRET}),
    )
    .await;
    let (mut ws, ws_id) = open_ws(&app).await;
    let (status, page) = admin_consent(
        &app,
        "od-app",
        "org-1",
        seed::MEGAN_UPN,
        Consent::Accept,
        Some(&ws_id),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let frame = next_frame(&mut ws).await.unwrap();
    assert_eq!(frame["message_type"], "success", "{frame}");
    let id = app.connection_ids("org-1").await.pop().unwrap();
    assert_eq!(frame["connection_id"], id.as_str());

    let (s, conn) = app.connection("od-app", &id, "").await;
    assert_eq!(s, 200, "{conn}");
    assert_eq!(
        conn["connection_config"]["tenantId"],
        seed::CONTOSO_TENANT_ID
    );
    let creds = &conn["credentials"];
    assert_eq!(creds["type"], "OAUTH2_CC", "{conn}");
    assert_eq!(creds["client_id"], seed::DEV_CLIENT_ID);
    assert!(creds.get("client_secret").is_none() && creds.get("refresh_token").is_none());
    assert!(!conn.to_string().contains(seed::DEV_CLIENT_SECRET));
    let claims = grantd::microsoft::TokenIdentity::from_jwt(&access_token(&conn)).unwrap();
    assert!(claims.scp.is_none() && claims.upn.is_none());
    assert!(claims.roles.unwrap().contains(&"Files.Read.All".to_owned()));

    // The proxy with the app-only token: adele's drive by UPN, then the drive by id.
    let r = app
        .proxy(reqwest::Method::GET, ADELE_DRIVE, "od-app", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let drive: Value = r.json().await.unwrap();
    assert_eq!(drive["driveType"], "business", "{drive}");
    let drive_id = drive["id"].as_str().unwrap();
    let r = app
        .proxy(
            reqwest::Method::GET,
            &format!("/v1.0/drives/{drive_id}"),
            "od-app",
            &id,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // /me has no meaning without a user: Microsoft (and the emulator) answer 400.
    let r = app
        .proxy(reqwest::Method::GET, "/v1.0/me", "od-app", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // No refresh token: once the token nears expiry, a new client-credentials token is obtained.
    let cc = |c: &grantd_emulator::counters::CounterSnapshot| {
        c.token_requests
            .get("client_credentials")
            .copied()
            .unwrap_or(0)
    };
    let before = cc(&app.emu.control().counters().await.unwrap());
    app.clock.advance(3 * 3600);
    let (s, renewed) = app.connection("od-app", &id, "").await;
    assert_eq!(s, 200, "{renewed}");
    assert_ne!(access_token(&renewed), access_token(&conn));
    assert_eq!(cc(&app.emu.control().counters().await.unwrap()), before + 1);
    let (_, again) = app.connection("od-app", &id, "").await;
    assert_eq!(access_token(&again), access_token(&renewed));
    assert_eq!(
        cc(&app.emu.control().counters().await.unwrap()),
        before + 1,
        "a fresh token is served without a new request"
    );
}

#[tokio::test]
async fn non_admin_and_declined_consent_are_explained() {
    let app = TestApp::spawn().await;
    create_app_integration(
        &app,
        "od-app",
        seed::DEV_CLIENT_ID,
        json!({"client_secret": seed::DEV_CLIENT_SECRET}),
    )
    .await;
    // Adele is not an administrator.
    let (mut ws, ws_id) = open_ws(&app).await;
    let (status, page) = admin_consent(
        &app,
        "od-app",
        "org-1",
        seed::ADELE_UPN,
        Consent::Accept,
        Some(&ws_id),
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("not an administrator"), "{page}");
    let frame = next_frame(&mut ws).await.unwrap();
    assert_eq!(frame["message_type"], "error", "{frame}");
    assert!(
        frame.to_string().contains("not an administrator"),
        "{frame}"
    );

    // Megan declines: the popup's WebSocket hears an error.
    let (mut ws, ws_id) = open_ws(&app).await;
    let (status, page) = admin_consent(
        &app,
        "od-app",
        "org-1",
        seed::MEGAN_UPN,
        Consent::Cancel,
        Some(&ws_id),
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("declined"), "{page}");
    let frame = next_frame(&mut ws).await.unwrap();
    assert_eq!(frame["message_type"], "error", "{frame}");
    assert!(frame.to_string().contains("declined"), "{frame}");
    assert!(app.connection_ids("org-1").await.is_empty());
}

#[tokio::test]
async fn connection_by_tenant_id_for_out_of_band_consent() {
    let app = TestApp::spawn().await;
    create_app_integration(
        &app,
        "od-app",
        seed::DEV_CLIENT_ID,
        json!({"client_secret": seed::DEV_CLIENT_SECRET}),
    )
    .await;
    // Not consented yet: grantd cannot get a token, and says why.
    let body = json!({
        "provider_config_key": "od-app",
        "connection_id": "contoso-backup",
        "connection_config": {"tenantId": seed::CONTOSO_TENANT_ID},
    });
    let r = app.post("/connections", &body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(
        err["error"]["payload"]["auth_error"]["type"], "misconfigured",
        "{err}"
    );
    // The tenant's administrator consents out of band.
    app.emu
        .control()
        .grant_admin_consent("contoso", seed::DEV_CLIENT_ID)
        .await
        .unwrap();
    let r = app.post("/connections", &body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let conn: Value = r.json().await.unwrap();
    assert_eq!(conn["credentials"]["type"], "OAUTH2_CC", "{conn}");
    assert_eq!(
        conn["connection_config"]["tenantId"],
        seed::CONTOSO_TENANT_ID
    );
    let r = app
        .proxy(
            reqwest::Method::GET,
            ADELE_DRIVE,
            "od-app",
            "contoso-backup",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Bad input is a clear 400.
    for bad in [
        json!({"provider_config_key": "od-app", "connection_config": {"tenantId": "common"}}),
        json!({"provider_config_key": "od-app"}),
        json!({"provider_config_key": "od-app", "credentials": {"type": "OAUTH2_CC", "client_id": "other"}, "connection_config": {"tenantId": seed::CONTOSO_TENANT_ID}}),
    ] {
        let r = app.post("/connections", &bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

struct TestCert {
    pem: String,
    key_pem: String,
}

fn make_cert(not_after: Option<time::OffsetDateTime>) -> TestCert {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pkcs8 = key.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8.as_bytes().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["grantd-test".to_owned()]).unwrap();
    if let Some(t) = not_after {
        params.not_after = t;
    }
    let cert = params.self_signed(&kp).unwrap();
    TestCert {
        pem: cert.pem(),
        key_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
    }
}

/// A multi-tenant app registered in fabrikam with `cert` (and a redirect URI for grantd),
/// admin-consented by contoso.
async fn cert_app(app: &TestApp, cert: &TestCert) -> String {
    let mut a = NewApp::new("grantd cert test");
    a.home_tenant = Some("fabrikam".into());
    a.sign_in_audience = SignInAudience::AzureADMultipleOrgs;
    a.certificates = vec![cert.pem.clone()];
    a.application_permissions = vec!["Files.Read.All".into(), "User.Read.All".into()];
    a.redirect_uris = vec!["http://127.0.0.1/oauth/callback".into()];
    let registered = app.emu.control().register_app(&a).await.unwrap();
    registered.client_id
}

#[tokio::test]
async fn certificate_credentials_sign_client_assertions() {
    let app = TestApp::spawn().await;
    let good = make_cert(None);
    let client_id = cert_app(&app, &good).await;
    for (key, alg) in [("od-cert", "PS256"), ("od-cert-rs", "RS256")] {
        create_app_integration(
            &app,
            key,
            &client_id,
            json!({"client_certificate": good.pem, "private_key": good.key_pem, "client_assertion_alg": alg}),
        )
        .await;
    }
    // The private key is never returned; the certificate and its expiry are.
    let r: Value = app
        .get("/integrations/od-cert?include=credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!r.to_string().contains("PRIVATE KEY"), "{r}");
    assert!(
        r["data"]["credentials"]["client_certificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert_eq!(
        r["data"]["credentials_expiry"]["credential"], "certificate",
        "{r}"
    );

    // The whole admin-consent flow with a certificate credential (confirmation = a token).
    let (status, page) = admin_consent(
        &app,
        "od-cert",
        "org-2",
        seed::MEGAN_UPN,
        Consent::Accept,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let id = app.connection_ids("org-2").await.pop().unwrap();
    let r = app
        .proxy(reqwest::Method::GET, ADELE_DRIVE, "od-cert", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // RS256 assertions work too.
    let r = app
        .post(
            "/connections",
            &json!({"provider_config_key": "od-cert-rs", "connection_config": {"tenantId": seed::CONTOSO_TENANT_ID}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // A key that does not belong to the certificate is refused when saving.
    let other = make_cert(None);
    let r = app
        .post(
            "/integrations",
            &json!({"provider": "one-drive-app", "unique_key": "mismatch", "credentials": {"type": "OAUTH2_CC", "client_id": client_id, "client_certificate": good.pem, "private_key": other.key_pem}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(
        err["error"]["errors"][0]["path"],
        json!(["credentials", "private_key"]),
        "{err}"
    );

    // A consistent pair that is not registered on the app: Microsoft refuses (AADSTS700027) and
    // grantd says the app is misconfigured.
    create_app_integration(
        &app,
        "od-wrong",
        &client_id,
        json!({"client_certificate": other.pem, "private_key": other.key_pem}),
    )
    .await;
    let r = app
        .post(
            "/connections",
            &json!({"provider_config_key": "od-wrong", "connection_config": {"tenantId": seed::CONTOSO_TENANT_ID}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    let auth = &err["error"]["payload"]["auth_error"];
    assert_eq!(auth["type"], "misconfigured", "{err}");
    assert_eq!(auth["aadsts"], 700027, "{err}");
    assert!(
        auth["description"]
            .as_str()
            .unwrap()
            .contains("App misconfigured"),
        "{err}"
    );
}

#[tokio::test]
async fn delegated_flow_with_a_certificate_credential() {
    let app = TestApp::spawn().await;
    let cert = make_cert(None);
    let client_id = cert_app(&app, &cert).await;
    let r = app
        .post(
            "/integrations",
            &json!({"provider": "one-drive", "unique_key": "od-user-cert", "credentials": {"type": "OAUTH2", "client_id": client_id, "client_certificate": cert.pem, "private_key": cert.key_pem, "scopes": "User.Read,Files.Read"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Code exchange and refresh both authenticate with assertions.
    let id = app.connect("od-user-cert", "user-c", seed::ADELE_UPN).await;
    let (s, conn) = app
        .connection("od-user-cert", &id, "&force_refresh=true")
        .await;
    assert_eq!(s, 200, "{conn}");
    let r = app
        .proxy(reqwest::Method::GET, "/v1.0/me/drive", "od-user-cert", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn expiry_of(app: &TestApp, key: &str) -> Value {
    let r: Value = app
        .get("/integrations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["unique_key"] == key)
        .unwrap()["credentials_expiry"]
        .clone()
}

#[tokio::test]
async fn expiry_warnings_at_30_14_and_3_days_on_sqlite() {
    expiry_warnings(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn expiry_warnings_at_30_14_and_3_days_on_postgres() {
    expiry_warnings(DbKind::Postgres).await;
}

/// Also exercises the certificate store (sealed key, list, warning CAS) on either database.
async fn expiry_warnings(kind: DbKind) {
    let Some(app) = TestApp::spawn_with(Opts {
        db: kind,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let start = app.state.core.clock.now();
    let secret_expiry = start + TimeDelta::days(40);
    create_app_integration(
        &app,
        "od-app",
        seed::DEV_CLIENT_ID,
        json!({"client_secret": seed::DEV_CLIENT_SECRET, "client_secret_expires_at": secret_expiry.to_rfc3339()}),
    )
    .await;
    let cert_end =
        time::OffsetDateTime::from_unix_timestamp((start + TimeDelta::days(20)).timestamp())
            .unwrap();
    let cert = make_cert(Some(cert_end));
    let client_id = cert_app(&app, &cert).await;
    create_app_integration(
        &app,
        "od-cert",
        &client_id,
        json!({"client_certificate": cert.pem, "private_key": cert.key_pem}),
    )
    .await;
    let core = &app.state.core;

    let e = expiry_of(&app, "od-app").await;
    assert_eq!(
        (e["state"].as_str(), e["days_left"].as_i64()),
        (Some("ok"), Some(39)),
        "{e}"
    );
    let e = expiry_of(&app, "od-cert").await;
    assert_eq!(e["state"], "expiring", "{e}");
    assert_eq!(e["credential"], "certificate");
    // The certificate's 30-day warning was given by that read; nothing else is due.
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        0
    );

    let step = |days: i64| {
        app.clock.advance(days * 86_400);
    };
    step(10); // secret: 30 days left → its first warning; certificate: 10 days → 14-day warning
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        0,
        "once"
    );
    assert_eq!(expiry_of(&app, "od-app").await["state"], "expiring");
    step(1); // 29 days: nothing new
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        0
    );
    step(8); // secret 21 days; certificate 1 day → 3-day warning
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        1
    );
    step(7); // secret 14 days; certificate expired
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        2
    );
    assert_eq!(expiry_of(&app, "od-cert").await["state"], "expired");
    step(11); // secret 3 days
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        1
    );
    step(3); // secret expired
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        1
    );
    // The driven clock also runs with real time, so `now` is past the expiry by however long the
    // test has taken; an hour more makes the count a whole day under way whatever that was.
    app.clock.advance(3600);
    let e = expiry_of(&app, "od-app").await;
    assert_eq!(
        (e["state"].as_str(), e["days_left"].as_i64()),
        (Some("expired"), Some(-1)),
        "{e}"
    );
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn expired_secret_is_misconfigured_and_user_connections_are_unaffected() {
    let Some(app) = TestApp::spawn_with(Opts {
        db: DbKind::SqliteFile,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    // An app with its own secret, consented by contoso, for the app-only integration.
    let mut a = NewApp::new("grantd secret test");
    a.home_tenant = Some("fabrikam".into());
    a.sign_in_audience = SignInAudience::AzureADMultipleOrgs;
    a.application_permissions = vec!["Files.Read.All".into()];
    let control = app.emu.control();
    let client_id = control.register_app(&a).await.unwrap().client_id;
    let secret = control
        .add_secret(
            &client_id,
            &NewSecret {
                value: None,
                expires_at: None,
                expires_in_seconds: None,
            },
        )
        .await
        .unwrap()
        .value;
    control
        .grant_admin_consent("contoso", &client_id)
        .await
        .unwrap();
    create_app_integration(&app, "od-app", &client_id, json!({"client_secret": secret})).await;
    let r = app
        .post(
            "/connections",
            &json!({"provider_config_key": "od-app", "connection_id": "backup", "connection_config": {"tenantId": seed::CONTOSO_TENANT_ID}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A delegated connection of another integration.
    app.create_integration("one-drive", "User.Read,Files.Read")
        .await;
    let user_conn = app.connect("one-drive", "user-1", seed::ADELE_UPN).await;

    control.expire_secret(&client_id, None).await.unwrap();
    let (s, err) = app
        .connection("od-app", "backup", "&force_refresh=true")
        .await;
    assert_eq!(s, 400, "{err}");
    let auth = &err["error"]["payload"]["auth_error"];
    assert_eq!(auth["type"], "misconfigured", "{err}");
    assert_eq!(auth["aadsts"], 7000222);
    assert!(
        auth["description"]
            .as_str()
            .unwrap()
            .contains("App misconfigured: client secret expired"),
        "{err}"
    );
    // The user's connection keeps its own healthy state and still refreshes.
    let (s, user) = app
        .connection("one-drive", &user_conn, "&force_refresh=true")
        .await;
    assert_eq!(s, 200, "{user}");
    assert!(user["auth_error"].is_null(), "{user}");
}
