//! The connect flow end to end over real HTTP: integration → connect session → /oauth/connect →
//! the emulator's sign-in and consent pages → /oauth/callback → a connection whose Graph token
//! works, on SQLite and PostgreSQL; the SharePoint token; refresh; the failure pages.

use grantd_emulator::browser::{Browser, Consent};
use grantd_emulator::seed;
use serde_json::Value;

use crate::support::app::{Opts, TestApp};
use crate::support::db::DbKind;

const SCOPES: &str = "User.Read,Files.ReadWrite.All,Sites.Read.All";

async fn full_flow(kind: DbKind) {
    let Some(app) = TestApp::spawn_with(Opts {
        db: kind,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    app.create_integration("one-drive", SCOPES).await;
    let id = app.connect("one-drive", "user-1", seed::ADELE_UPN).await;

    let (status, conn) = app.connection("one-drive", &id, "").await;
    assert_eq!(status, 200, "{conn}");
    assert_eq!(conn["provider"], "one-drive");
    assert_eq!(conn["credentials"]["type"], "OAUTH2");
    assert!(
        conn["credentials"].get("refresh_token").is_none(),
        "refresh token hidden by default"
    );
    assert_eq!(
        conn["connection_config"]["tenantId"],
        seed::CONTOSO_TENANT_ID
    );
    assert_eq!(
        conn["connection_config"]["userPrincipalName"],
        seed::ADELE_UPN
    );
    assert_eq!(conn["end_user"]["id"], "user-1");

    // The Graph token works against Graph itself.
    let token = conn["credentials"]["access_token"].as_str().unwrap();
    let me: Value = app
        .http
        .get(format!("{}/v1.0/me", app.emu.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["userPrincipalName"], seed::ADELE_UPN, "{me}");

    // And through the proxy.
    let r = app
        .proxy(reqwest::Method::GET, "/v1.0/me/drives", "one-drive", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let drives: Value = r.json().await.unwrap();
    assert_eq!(drives["value"][0]["driveType"], "business", "{drives}");

    // The SharePoint token: for the discovered host, accepted by SharePoint, Graph token refused there.
    let sp = &conn["connection_config"]["sharepointAccessToken"];
    assert_eq!(
        sp["resource"],
        format!("https://{}", seed::CONTOSO_SHAREPOINT_HOST),
        "{conn}"
    );
    let sp_token = sp["access_token"].as_str().unwrap();
    let web = format!(
        "{}/_sharepoint/{}/_api/web",
        app.emu.base_url,
        seed::CONTOSO_SHAREPOINT_HOST
    );
    let ok = app
        .http
        .get(&web)
        .bearer_auth(sp_token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = app.http.get(&web).bearer_auth(token).send().await.unwrap();
    assert_eq!(refused.status(), 401);

    // A forced refresh gives new tokens (Graph and SharePoint), and the refresh token on request.
    let (status, again) = app
        .connection("one-drive", &id, "&force_refresh=true&refresh_token=true")
        .await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(
        again["credentials"]["access_token"],
        conn["credentials"]["access_token"]
    );
    assert!(again["credentials"]["refresh_token"].is_string());
    assert_ne!(
        again["connection_config"]["sharepointAccessToken"]["access_token"],
        sp["access_token"]
    );
    assert!(again["last_refreshed_at"].is_string());
}

#[tokio::test]
async fn connect_flow_on_sqlite() {
    full_flow(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn connect_flow_on_postgres() {
    full_flow(DbKind::Postgres).await;
}

#[tokio::test]
async fn no_sharepoint_token_without_sites_read_all() {
    let app = TestApp::spawn().await;
    app.create_integration("od", "User.Read,Files.Read").await;
    let id = app.connect("od", "u", seed::ADELE_UPN).await;
    let (_, conn) = app.connection("od", &id, "").await;
    assert!(
        conn["connection_config"]
            .get("sharepointAccessToken")
            .is_none()
    );
    let status = conn["connection_config"]["sharepointTokenStatus"]
        .as_str()
        .unwrap();
    assert!(status.contains("Sites.Read.All"), "{status}");
}

#[tokio::test]
async fn reconnect_session_keeps_the_connection_id() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let id = app.connect("one-drive", "u", seed::ADELE_UPN).await;
    let r = app
        .post(
            "/connect/sessions/reconnect",
            &serde_json::json!({"connection_id": id, "integration_id": "one-drive"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let authorize = app.start_connect("one-drive", &token, "").await;
    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::ADELE_UPN, seed::PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 200);
    assert!(html.contains("Reconnected"), "{html}");
    assert_eq!(app.connection_ids("u").await, vec![id]);
}

#[tokio::test]
async fn callback_state_is_single_use_and_checked() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let token = app.session("u", &["one-drive"]).await;
    let authorize = app.start_connect("one-drive", &token, "").await;
    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::ADELE_UPN, seed::PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let (status, _) = app.deliver(&outcome).await;
    assert_eq!(status, 200);
    // Replayed: the state was consumed.
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 400);
    assert!(html.contains("already used"), "{html}");
    // Forged.
    let r = app
        .http
        .get(format!("{}/oauth/callback?code=abc&state=forged", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Missing.
    let r = app
        .http
        .get(format!("{}/oauth/callback?code=abc", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn cancelled_consent_says_so() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let token = app.session("u", &["one-drive"]).await;
    let authorize = app.start_connect("one-drive", &token, "").await;
    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::ADELE_UPN, seed::PASSWORD)),
            Consent::Cancel,
        )
        .await
        .unwrap();
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 400);
    assert!(html.contains("cancelled"), "{html}");
    assert!(html.contains("AADSTS65004"), "{html}");
    assert!(app.connection_ids("u").await.is_empty());
}

#[tokio::test]
async fn personal_account_refused_by_a_work_only_integration() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let token = app.session("u", &["one-drive"]).await;
    let authorize = app.start_connect("one-drive", &token, "").await;
    // Microsoft shows this on its own page (the account is refused before any redirect).
    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::SAM_UPN, seed::PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    assert_eq!(outcome.aadsts(), Some(500200), "{outcome:?}");
}

#[tokio::test]
async fn connect_start_checks_the_session() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    app.create_integration("other", SCOPES).await;
    let get = |q: String| {
        let http = app.http.clone();
        let url = format!("{}/oauth/connect/one-drive?{q}", app.url);
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, body) = get(String::new()).await;
    assert_eq!(s, 401, "{body}");
    let (s, body) = get("connect_session_token=nango_connect_session_bad".into()).await;
    assert_eq!(s, 401);
    assert!(body.contains("invalid_connect_session_token_format"));
    let (s, body) = get(format!(
        "connect_session_token=nango_connect_session_{}",
        "0".repeat(64)
    ))
    .await;
    assert_eq!(s, 401);
    assert!(body.contains("unknown_connect_session_token"));
    let only_other = app.session("u", &["other"]).await;
    let (s, body) = get(format!("connect_session_token={only_other}")).await;
    assert_eq!(s, 400);
    assert!(body.contains("integration_not_allowed"));
    let token = app.session("u", &["one-drive"]).await;
    let (s, body) = get(format!("connect_session_token={token}&connection_id=x")).await;
    assert_eq!(s, 400, "{body}");
}

#[tokio::test]
async fn authorize_redirect_carries_state_and_pkce() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let token = app.session("u", &["one-drive"]).await;
    let authorize = app
        .start_connect(
            "one-drive",
            &token,
            "&authorization_params[login_hint]=adele%40contoso.onmicrosoft.com",
        )
        .await;
    let url = url::Url::parse(&authorize).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(
        url.path()
            .starts_with("/organizations/oauth2/v2.0/authorize")
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 32);
    assert_eq!(q["login_hint"], seed::ADELE_UPN);
    assert_eq!(q["redirect_uri"], format!("{}/oauth/callback", app.url));
    assert!(q["scope"].split(' ').any(|s| s == "offline_access"));
}

/// Issue 14, item 13: a successful connect ends the connect session. A second flow with the same
/// token is refused as Nango refuses an unknown or expired one (401
/// `unknown_connect_session_token`, no WebSocket message), and so is reading the session.
#[tokio::test]
async fn a_successful_connect_ends_the_session() {
    let app = TestApp::spawn().await;
    app.create_integration("od", "User.Read,Files.Read").await;
    let token = app.session("u", &["od"]).await;
    // Two flows started before the success: the token is good until a connect succeeds.
    let first = app.start_connect("od", &token, "").await;
    let second = app.start_connect("od", &token, "").await;
    let outcome = Browser::new()
        .authorize(
            &first,
            Some((seed::ADELE_UPN, seed::PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 200, "{html}");

    let r = app
        .http
        .get(format!(
            "{}/oauth/connect/od?connect_session_token={token}&ws_client_id=w1",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("unknown_connect_session_token"), "{body}");
    let r = app
        .http
        .get(format!("{}/connect/session", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A flow the session started before it ended still completes (its state is single-use).
    let outcome = Browser::new()
        .authorize(
            &second,
            Some((seed::ADELE_UPN, seed::PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 200, "{html}");
}
