//! Error paths of the API and the connect flow, and Nango wire details: expired and re-used
//! state, a re-used authorization code, the AADSTS failures users meet (each ending on a page
//! that says what to do, or on Microsoft's own page), Nango's 401 codes, unknown integrations and
//! connections, malformed bodies and query strings (each a 4xx in Nango's error envelope, never a
//! 500), connect session routes, deprecated `/connection` routes and import.

use grantd_emulator::browser::{Browser, Consent, Outcome};
use grantd_emulator::control::NewApp;
use grantd_emulator::seed;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::app::{SECRET, TestApp};

const SCOPES: &str = "User.Read,Files.ReadWrite.All";

/// Asserts Nango's error envelope: `{"error":{"code": code, …}}` with `status`.
async fn expect_error(r: reqwest::Response, status: u16, code: &str) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "expected {status} {code}, got {got}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(v["error"]["code"], code, "{v}");
    v
}

fn secret(value: &str) -> grantd_emulator::directory::ClientSecret {
    grantd_emulator::directory::ClientSecret {
        value: value.into(),
        expires_at: None,
    }
}

fn adele() -> Option<(&'static str, &'static str)> {
    Some((seed::ADELE_UPN, seed::PASSWORD))
}

/// The `state` of an authorize URL grantd redirected to.
fn state_of(authorize: &str) -> String {
    url::Url::parse(authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state in the authorize URL")
}

/// `GET /oauth/callback?{query}` → (status, html).
async fn callback(app: &TestApp, query: &[(&str, &str)]) -> (u16, String) {
    let r = app
        .http
        .get(format!("{}/oauth/callback", app.url))
        .query(query)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Creates a `one-drive` integration on an arbitrary app; `tenant` pins the authority.
async fn integration_on(
    app: &TestApp,
    key: &str,
    client_id: &str,
    secret: &str,
    scopes: &str,
    tenant: Option<&str>,
) {
    let mut body = json!({
        "provider": "one-drive",
        "unique_key": key,
        "credentials": {"type": "OAUTH2", "client_id": client_id, "client_secret": secret, "scopes": scopes},
    });
    if let Some(t) = tenant {
        body["integration_config"] = json!({ "tenant": t });
    }
    let r = app.post("/integrations", &body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn expired_state_ends_on_a_page_and_is_consumed() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let token = app.session("u", &["one-drive"]).await;
    let authorize = app.start_connect("one-drive", &token, "").await;
    let outcome = Browser::new()
        .authorize(&authorize, adele(), Consent::Accept)
        .await
        .unwrap();
    // The user took longer than the flow's lifetime (15 min) to come back.
    app.clock.advance(16 * 60);
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("expired"), "{html}");
    assert!(html.contains("state_err"), "{html}");
    // Expired flows are gone, not usable later.
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 400);
    assert!(html.contains("already used"), "{html}");
    assert!(app.connection_ids("u").await.is_empty());
}

#[tokio::test]
async fn a_reused_code_with_a_fresh_state_is_refused() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let token = app.session("u", &["one-drive"]).await;
    let authorize = app.start_connect("one-drive", &token, "").await;
    let outcome = Browser::new()
        .authorize(&authorize, adele(), Consent::Accept)
        .await
        .unwrap();
    let code = outcome.code().expect("a code");
    let (status, _) = app.deliver(&outcome).await;
    assert_eq!(status, 200);
    // An attacker (or a double submit) replays the code with a state of their own: Microsoft
    // answers AADSTS54005 and grantd says so, storing nothing.
    // (A successful connect ended the first session: the attacker holds a session of their own.)
    let other = app.session("u", &["one-drive"]).await;
    let fresh = state_of(&app.start_connect("one-drive", &other, "").await);
    let (status, html) = callback(&app, &[("code", &code), ("state", &fresh)]).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("already redeemed"), "{html}");
    assert!(html.contains("token_err"), "{html}");
    assert!(!html.contains(&code), "the code is not echoed");
    assert_eq!(app.connection_ids("u").await.len(), 1);
}

#[tokio::test]
async fn consent_required_reaches_a_page() {
    let app = TestApp::spawn().await;
    app.create_integration("basic", "User.Read").await;
    app.create_integration("files", "User.Read,Files.Read")
        .await;
    let token = app.session("u", &["basic", "files"]).await;
    let browser = Browser::new();
    let first = browser
        .authorize(
            &app.start_connect("basic", &token, "").await,
            adele(),
            Consent::Accept,
        )
        .await
        .unwrap();
    assert_eq!(app.deliver(&first).await.0, 200);
    // Signed in, but never consented to Files.Read: a silent request comes back consent_required.
    // (The success above ended the first session: a new one.)
    let token = app.session("u", &["basic", "files"]).await;
    let authorize = app
        .start_connect("files", &token, "&authorization_params[prompt]=none")
        .await;
    let outcome = browser
        .authorize(&authorize, None, Consent::Accept)
        .await
        .unwrap();
    assert_eq!(outcome.aadsts(), Some(65001), "{outcome:?}");
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("AADSTS65001"), "{html}");
    assert!(html.contains("consent"), "{html}");
    assert!(html.contains("callback_err"), "{html}");
}

#[tokio::test]
async fn an_invalid_scope_reaches_a_page() {
    let app = TestApp::spawn().await;
    app.create_integration("bogus", "User.Read,Bogus.Scope")
        .await;
    let token = app.session("u", &["bogus"]).await;
    let authorize = app.start_connect("bogus", &token, "").await;
    let outcome = Browser::new()
        .authorize(&authorize, adele(), Consent::Accept)
        .await
        .unwrap();
    let code = outcome.aadsts().expect("an AADSTS error");
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains(&format!("AADSTS{code}")), "{html}");
}

/// Failures Microsoft shows on its own page (the redirect cannot be trusted or the account is
/// refused before any redirect): grantd stores nothing. When such an error does come back to the
/// callback, grantd's page says in plain words what happened.
#[tokio::test]
async fn refusals_shown_by_microsoft_and_their_callback_pages() {
    let app = TestApp::spawn().await;
    let ctl = app.emu.control();
    app.create_integration("one-drive", SCOPES).await;

    // A single-tenant app of contoso, and one whose redirect URIs lack grantd's callback.
    let mut single = NewApp::new("contoso only");
    single.home_tenant = Some("contoso".into());
    single.sign_in_audience = grantd_emulator::directory::SignInAudience::AzureADMyOrg;
    single.redirect_uris = vec!["http://127.0.0.1/oauth/callback".into()];
    single.delegated_permissions = vec!["User.Read".into(), "offline_access".into()];
    single.secrets = vec![secret("single-secret")];
    let single = ctl.register_app(&single).await.unwrap();
    let secret_single = "single-secret";
    let mut elsewhere = NewApp::new("elsewhere");
    elsewhere.redirect_uris = vec!["https://app.example/oauth/callback".into()];
    elsewhere.secrets = vec![secret("elsewhere-secret")];
    let elsewhere = ctl.register_app(&elsewhere).await.unwrap();
    let elsewhere_secret = "elsewhere-secret";
    integration_on(
        &app,
        "single-org",
        &single.client_id,
        secret_single,
        "User.Read",
        None,
    )
    .await;
    integration_on(
        &app,
        "single-fabrikam",
        &single.client_id,
        secret_single,
        "User.Read",
        Some(seed::FABRIKAM_DOMAIN),
    )
    .await;
    integration_on(
        &app,
        "wrong-redirect",
        &elsewhere.client_id,
        elsewhere_secret,
        "User.Read",
        None,
    )
    .await;
    integration_on(
        &app,
        "in-fabrikam",
        seed::DEV_CLIENT_ID,
        seed::DEV_CLIENT_SECRET,
        "User.Read",
        Some(seed::FABRIKAM_DOMAIN),
    )
    .await;

    let token = app
        .session(
            "u",
            &[
                "one-drive",
                "single-org",
                "single-fabrikam",
                "wrong-redirect",
                "in-fabrikam",
            ],
        )
        .await;
    // (integration, user, AADSTS on Microsoft's page, words grantd's page must contain)
    let cases: [(&str, &str, &[u32], &str); 5] = [
        (
            "one-drive",
            seed::SAM_UPN,
            &[500200],
            "account is not allowed",
        ),
        (
            "in-fabrikam",
            seed::ADELE_UPN,
            &[50020],
            "not part of the organization",
        ),
        ("single-org", seed::ADELE_UPN, &[50194], "Microsoft refused"),
        ("single-fabrikam", seed::DIEGO_UPN, &[700016, 50020], ""),
        (
            "wrong-redirect",
            seed::ADELE_UPN,
            &[50011],
            "Microsoft refused",
        ),
    ];
    for (key, upn, codes, words) in cases {
        let authorize = app.start_connect(key, &token, "").await;
        let outcome = Browser::new()
            .authorize(&authorize, Some((upn, seed::PASSWORD)), Consent::Accept)
            .await
            .unwrap();
        let code = match &outcome {
            Outcome::ErrorPage { code, .. } => code.expect("an AADSTS code"),
            other => panic!("{key}/{upn}: expected Microsoft's error page, got {other:?}"),
        };
        assert!(codes.contains(&code), "{key}/{upn}: AADSTS{code}");
        // The same error, delivered to the callback (as Microsoft does for some of them).
        let state = state_of(&authorize);
        let desc = format!("AADSTS{code}: refused.\r\nTrace ID: x");
        let (status, html) = callback(
            &app,
            &[
                ("error", "access_denied"),
                ("error_description", &desc),
                ("state", &state),
            ],
        )
        .await;
        assert_eq!(status, 400, "{key}: {html}");
        assert!(html.contains(&format!("AADSTS{code}")), "{key}: {html}");
        assert!(html.contains(words), "{key}: {html}");
        assert!(html.contains("What to do"), "{key}: {html}");
    }
    assert!(app.connection_ids("u").await.is_empty());
}

#[tokio::test]
async fn bad_api_keys_get_nangos_401_codes() {
    // Many wrong keys from one address: raise the throttle's budget (abuse.rs tests it).
    let app = TestApp::spawn_configured(Default::default(), |c| {
        c.limits.auth_free_failures = 1000;
    })
    .await
    .unwrap();
    let url = |p: &str| format!("{}{p}", app.url);
    for path in ["/integrations", "/connections", "/providers"] {
        let r = app.http.get(url(path)).send().await.unwrap();
        let v = expect_error(r, 401, "missing_auth_header").await;
        assert_eq!(v["error"]["payload"], json!({}), "{v}");
        let r = app
            .http
            .get(url(path))
            .header("authorization", "")
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "malformed_auth_header").await;
        let r = app
            .http
            .get(url(path))
            .bearer_auth("not-a-uuid")
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "invalid_secret_key_format").await;
        let r = app
            .http
            .get(url(path))
            .bearer_auth("6f1d1c5e-0b4e-4c61-9d3a-2f7a8b9c0d1e")
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "unknown_account").await;
    }
    let r = app
        .http
        .get(url("/proxy/v1.0/me"))
        .bearer_auth("6f1d1c5e-0b4e-4c61-9d3a-2f7a8b9c0d1e")
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unknown_account").await;
    // Session-token routes.
    let r = app
        .http
        .get(url("/connect/session"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "invalid_connect_session_token_format").await;
    let unknown = format!("nango_connect_session_{}", "a".repeat(64));
    for path in ["/connect/session", "/integrations"] {
        let r = app
            .http
            .get(url(path))
            .bearer_auth(&unknown)
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "unknown_connect_session_token").await;
    }
    // A session token is not a secret key.
    app.create_integration("one-drive", SCOPES).await;
    let token = app.session("u", &["one-drive"]).await;
    let r = app
        .http
        .get(url("/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "invalid_secret_key_format").await;
}

#[tokio::test]
async fn unknown_integrations_and_connections() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let id = app.connect("one-drive", "u", seed::ADELE_UPN).await;

    let r = app.get("/integrations/nope").send().await.unwrap();
    expect_error(r, 404, "not_found").await;
    let r = app
        .http
        .patch(format!("{}/integrations/nope", app.url))
        .bearer_auth(SECRET)
        .json(&json!({"display_name": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
    let r = app.delete("/integrations/nope").send().await.unwrap();
    expect_error(r, 404, "not_found").await;

    let (s, v) = app.connection("nope", &id, "").await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (400, &json!("unknown_provider_config"))
    );
    let (s, v) = app.connection("one-drive", "nope", "").await;
    assert_eq!((s, &v["error"]["code"]), (404, &json!("not_found")), "{v}");
    let r = app
        .delete("/connections/nope?provider_config_key=one-drive")
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 400, "unknown_connection").await;
    assert_eq!(v, json!({"error": {"code": "unknown_connection"}}));
    let r = app
        .http
        .patch(format!(
            "{}/connections/nope?provider_config_key=one-drive",
            app.url
        ))
        .bearer_auth(SECRET)
        .json(&json!({"tags": {"a": "b"}}))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
    let r = app
        .post(
            "/connections/metadata",
            &json!({"connection_id": [id, "nope"], "provider_config_key": "one-drive", "metadata": {"a": 1}}),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "unknown_connection").await;
    let (_, conn) = app.connection("one-drive", &id, "").await;
    assert!(
        conn["metadata"].get("a").is_none(),
        "nothing written: {conn}"
    );

    let r = app
        .proxy(Method::GET, "/v1.0/me", "nope", &id)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "unknown_provider_config").await;
    let r = app
        .proxy(Method::GET, "/v1.0/me", "one-drive", "nope")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "server_error").await;

    let r = app
        .post(
            "/connections",
            &json!({"provider_config_key": "nope", "credentials": {"type": "OAUTH2", "access_token": "t"}}),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
    let r = app
        .post(
            "/connect/sessions",
            &json!({"end_user": {"id": "u"}, "allowed_integrations": ["one-drive", "nope"]}),
        )
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 400, "invalid_body").await;
    assert_eq!(
        v["error"]["errors"][0]["path"],
        json!(["allowed_integrations", "1"])
    );
    let r = app
        .post(
            "/connect/sessions/reconnect",
            &json!({"connection_id": "nope", "integration_id": "one-drive"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_body").await;
}

#[tokio::test]
async fn malformed_bodies_are_4xx_with_nangos_codes() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let routes: [(Method, &str); 7] = [
        (Method::POST, "/integrations"),
        (Method::PATCH, "/integrations/one-drive"),
        (Method::POST, "/connect/sessions"),
        (Method::POST, "/connect/sessions/reconnect"),
        (Method::POST, "/connections"),
        (Method::POST, "/connections/metadata"),
        (Method::PATCH, "/connections/metadata"),
    ];
    for (method, path) in routes {
        let req = || {
            app.http
                .request(method.clone(), format!("{}{path}", app.url))
                .bearer_auth(SECRET)
        };
        let r = req()
            .header("content-type", "application/json")
            .body("{\"provider\": ")
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "invalid_json").await;
        let r = req()
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        expect_error(r, 415, "invalid_content_type").await;
        let r = req().json(&json!({"surprise": true})).send().await.unwrap();
        let v = expect_error(r, 400, "invalid_body").await;
        assert!(v["error"]["errors"].is_array(), "{path}: {v}");
        let r = req().json(&json!([1, 2])).send().await.unwrap();
        expect_error(r, 400, "invalid_body").await;
    }
    // Wrong types and bad values.
    let bad: [(&str, Value); 7] = [
        (
            "/integrations",
            json!({"provider": "one-drive", "unique_key": 5}),
        ),
        (
            "/integrations",
            json!({"provider": "nope", "unique_key": "k", "credentials": {"type": "OAUTH2", "client_id": "c", "client_secret": "s"}}),
        ),
        (
            "/integrations",
            json!({"provider": "one-drive", "unique_key": "k"}),
        ),
        (
            "/integrations",
            json!({"provider": "one-drive", "unique_key": "bad/key", "credentials": {"type": "OAUTH2", "client_id": "c", "client_secret": "s"}}),
        ),
        ("/connect/sessions", json!({"end_user": {"id": 7}})),
        (
            "/connect/sessions",
            json!({"end_user": {"id": "u", "email": "nope"}}),
        ),
        (
            "/connections",
            json!({"provider_config_key": "one-drive", "credentials": {"type": "API_KEY", "access_token": "t"}}),
        ),
    ];
    for (path, body) in bad {
        let r = app.post(path, &body).send().await.unwrap();
        expect_error(r, 400, "invalid_body").await;
    }
    // An empty body reads as `{}`: the missing fields are named.
    let r = app
        .http
        .post(format!("{}/integrations", app.url))
        .bearer_auth(SECRET)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 400, "invalid_body").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("provider"),
        "{v}"
    );
}

#[tokio::test]
async fn bad_query_params_are_invalid_query_params() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let id = app.connect("one-drive", "u", seed::ADELE_UPN).await;
    let paths = [
        "/connections?bogus=1".to_owned(),
        "/connections?limit=0".into(),
        "/connections?limit=ten".into(),
        "/connections?page=-1".into(),
        format!("/connections/{id}"),
        format!("/connections/{id}?provider_config_key=one-drive&bogus=1"),
        format!("/connections/{id}?provider_config_key=one-drive&force_refresh=maybe"),
        format!("/connections/{id}?provider_config_key=one-drive&refresh_token=2"),
        "/integrations?bogus=1".into(),
        "/integrations/one-drive?include=secrets".into(),
        "/integrations/one-drive?bogus=1".into(),
        "/providers?bogus=1".into(),
    ];
    for p in &paths {
        let r = app.get(p).send().await.unwrap();
        let v = expect_error(r, 400, "invalid_query_params").await;
        assert!(v["error"]["errors"].is_array(), "{p}: {v}");
    }
    let r = app
        .delete(&format!("/connections/{id}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_query_params").await;
    // Node always sends all four flags, and the booleans are lenient.
    let (s, v) = app
        .connection(
            "one-drive",
            &id,
            "&force_refresh=false&refresh_token=0&refresh_github_app_jwt_token=no",
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let token = app.session("u2", &["one-drive"]).await;
    let r = app
        .http
        .get(format!("{}/connect/session?x=1", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_query_params").await;
}

#[tokio::test]
async fn connect_session_routes() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    app.create_integration("other", SCOPES).await;
    let r = app
        .post(
            "/connect/sessions",
            &json!({
                "end_user": {"id": "u1", "email": "u1@example.com", "display_name": "U One"},
                "organization": {"id": "o1", "display_name": "Org"},
                "allowed_integrations": ["one-drive"],
                "integrations_config_defaults": {"one-drive": {"connection_config": {"x": "y"}}},
            }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let data = r.json::<Value>().await.unwrap()["data"].clone();
    let token = data["token"].as_str().unwrap().to_owned();
    assert!(data["expires_at"].is_string());
    assert!(data["connect_link"].as_str().unwrap().ends_with(&token));

    let get = |t: String| app.with_bearer(Method::GET, "/connect/session", &t).send();
    let r = get(token.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let d = &v["data"];
    assert_eq!(d["endUser"]["id"], "u1", "{v}");
    assert_eq!(d["endUser"]["email"], "u1@example.com", "{v}");
    assert!(
        d["connectUISettings"]["theme"]["light"]["primary"].is_string(),
        "{v}"
    );
    assert_eq!(d["allowed_integrations"], json!(["one-drive"]));
    assert!(
        d["integrations_config_defaults"]["one-drive"].is_object(),
        "{v}"
    );
    assert!(d.get("isReconnecting").is_none());

    // A session token lists only the integrations it allows.
    let r = app
        .with_bearer(Method::GET, "/integrations", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    let keys: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["unique_key"].clone())
        .collect();
    assert_eq!(keys, vec![json!("one-drive")]);
    assert!(list["data"][0].get("credentials").is_none());
    // …and one integration (Nango's session-token routes), but nothing else.
    let r = app
        .with_bearer(Method::GET, "/integrations/one-drive", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .with_bearer(Method::GET, "/connections", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = app
        .with_bearer(Method::DELETE, "/connect/session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = get(token.clone()).await.unwrap();
    expect_error(r, 401, "unknown_connect_session_token").await;

    // Sessions expire after 30 minutes.
    let t2 = app.session("u2", &["one-drive"]).await;
    app.clock.advance(31 * 60);
    let r = get(t2).await.unwrap();
    expect_error(r, 401, "unknown_connect_session_token").await;
}

#[tokio::test]
async fn connection_shapes_import_and_deprecated_routes() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", SCOPES).await;
    let id = app.connect("one-drive", "u", seed::ADELE_UPN).await;

    let (_, c) = app.connection("one-drive", &id, "").await;
    for f in [
        "id",
        "connection_id",
        "provider_config_key",
        "provider",
        "errors",
        "end_user",
        "metadata",
        "tags",
        "connection_config",
        "webhook_url_override",
        "created_at",
        "updated_at",
        "last_fetched_at",
        "credentials",
    ] {
        assert!(c.get(f).is_some(), "GET /connections/{{id}} lacks {f}: {c}");
    }
    assert!(c.get("created").is_none());
    assert!(c["id"].is_number());
    assert_eq!(c["errors"], json!([]));
    assert_eq!(c["tags"]["end_user_id"], "u", "{c}");
    let creds = &c["credentials"];
    assert_eq!(creds["type"], "OAUTH2");
    assert!(creds["expires_at"].is_string() && creds["raw"].is_object());

    let list: Value = app
        .get("/connections")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = &list["connections"][0];
    for f in [
        "id",
        "connection_id",
        "provider_config_key",
        "provider",
        "created",
        "metadata",
        "tags",
        "errors",
        "end_user",
    ] {
        assert!(item.get(f).is_some(), "list item lacks {f}: {item}");
    }
    assert!(item.get("credentials").is_none());

    // Import: 201 with the full connection.
    let r = app
        .post(
            "/connections",
            &json!({"provider_config_key": "one-drive", "connection_id": "imported", "metadata": {"m": 1},
                    "credentials": {"type": "OAUTH2", "access_token": "at-imported", "refresh_token": "rt-imported", "expires_at": "2030-01-01T00:00:00Z"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["connection_id"], "imported");
    assert_eq!(v["credentials"]["access_token"], "at-imported");
    assert_eq!(v["metadata"], json!({"m": 1}));

    // Deprecated forms.
    let dep: Value = app
        .get(&format!("/connection/{id}?provider_config_key=one-drive"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dep["connection_id"], id.as_str());
    let dep_list: Value = app
        .get("/connection")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dep_list["connections"].as_array().unwrap().len(), 2);
    let r = app
        .post(
            &format!("/connection/{id}/metadata?provider_config_key=one-drive"),
            &json!({"a": 1, "b": 2}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"a": 1, "b": 2}));
    let r = app
        .http
        .patch(format!("{}/connection/{id}/metadata", app.url))
        .bearer_auth(SECRET)
        .header("Provider-Config-Key", "one-drive")
        .json(&json!({"b": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .http
        .patch(format!("{}/connection/metadata", app.url))
        .bearer_auth(SECRET)
        .json(
            &json!({"connection_id": id, "provider_config_key": "one-drive", "metadata": {"c": 4}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, c) = app.connection("one-drive", &id, "").await;
    assert_eq!(c["metadata"], json!({"a": 1, "b": 3, "c": 4}));
    let r = app
        .post(
            "/connection/nope/metadata?provider_config_key=one-drive",
            &json!({"a": 1}),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "unknown_connection").await;
    let r = app
        .post(
            "/connection",
            &json!({"provider_config_key": "one-drive", "connection_id": "flat", "access_token": "at-flat", "expires_in": 3600}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["connection_id"], "flat");
    let r = app
        .post(
            "/connection",
            &json!({"provider_config_key": "one-drive", "access_token": "at-flat"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "missing_expires_at").await;
    let r = app
        .delete("/connection/flat?provider_config_key=one-drive")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    let (s, _) = app.connection("one-drive", "flat", "").await;
    assert_eq!(s, 404);

    // include=credentials returns the client credentials; without it they stay hidden.
    let v: Value = app
        .get("/integrations/one-drive?include=credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["data"]["credentials"]["client_secret"],
        seed::DEV_CLIENT_SECRET
    );
    assert_eq!(v["data"]["credentials"]["scopes"], SCOPES);
    let v: Value = app
        .get("/integrations/one-drive?include=webhook&include=credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["data"]["credentials"].is_object() && v["data"]["webhook_url"].is_null());
    let v: Value = app
        .get("/integrations/one-drive")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["data"].get("credentials").is_none(), "{v}");
}

#[tokio::test]
async fn unknown_routes_answer_nangos_404_envelope() {
    let app = TestApp::spawn().await;
    for path in ["/no/such/route", "/connections-typo", "/v1/whatever?x=1"] {
        let r = app.get(path).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let r = app
        .http
        .post(format!("{}/nothing-here", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}
