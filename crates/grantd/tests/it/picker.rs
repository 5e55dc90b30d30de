//! The hosted File Picker's server side over real HTTP against the emulator: picker sessions
//! (secret key, unknown / wrong connection, options, expiry through the injected clock), the page
//! (CSP, the form to the emulator's SharePoint host, no token in it), `/picker/token` (a token
//! for exactly the host asked, the connection's own hosts only, grantd's origin only), `/picker/
//! picked` (Nango's selection shape in the metadata, the signed `picker` webhook), and a
//! connection without `Sites.Read.All` (a clear problem and a reconnect path). The real-browser
//! scenario is in `browser.rs`.

use base64::Engine;
use grantd::clock::Clock;
use grantd::config::LifecycleConfig;
use grantd_emulator::seed;
use serde_json::{Value, json};

use crate::support::app::{Opts, SECRET, TestApp};
use crate::support::db::DbKind;
use crate::support::webhook_receiver::{Receiver, verify};

const KEY: &str = "one-drive";
const SIGNING_KEY: &str = "whsec-picker-key";
/// What a work account's picker needs (SharePoint tokens).
const SITES_SCOPES: &str = "offline_access,User.Read,Files.Read.All,Sites.Read.All";

async fn app(kind: DbKind) -> Option<(TestApp, Receiver)> {
    let rx = Receiver::spawn().await;
    let app = TestApp::spawn_with(Opts {
        db: kind,
        lifecycle: Some(LifecycleConfig {
            webhook_url: Some(url::Url::parse(&rx.url).unwrap()),
            webhook_signing_key: Some(SIGNING_KEY.to_owned().into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await?;
    Some((app, rx))
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn aud(jwt: &str) -> String {
    claims(jwt)["aud"].as_str().unwrap_or_default().to_owned()
}

/// Sends `r`; its status and JSON body.
async fn answer(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

/// The `data.token` of a session or token answer.
fn data_token(v: &Value) -> String {
    v["data"]["token"].as_str().unwrap().to_owned()
}

async fn create(app: &TestApp, body: &Value) -> (u16, Value) {
    answer(app.post("/picker/sessions", body)).await
}

/// A picker session for `body` (201); its token.
async fn new_session(app: &TestApp, body: &Value) -> String {
    let (s, v) = create(app, body).await;
    assert_eq!(s, 201, "{v}");
    data_token(&v)
}

/// `GET /picker?session_token=…`: the picker page.
async fn picker_page(app: &TestApp, session: &str) -> reqwest::Response {
    app.http
        .get(format!("{}/picker?session_token={session}", app.url))
        .send()
        .await
        .unwrap()
}

fn session_body(id: &str, extra: Value) -> Value {
    let mut options = json!({"origin": "https://app.example.com", "mode": "all", "multi_select": true, "save_selection": true});
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    json!({"connection_id": id, "provider_config_key": KEY, "options": options})
}

/// `POST /picker/token` as the picker page sends it (grantd's own origin).
async fn token(app: &TestApp, session: &str, resource: &str) -> (u16, Value) {
    answer(app.picker_page_post("/picker/token", session, &json!({"resource": resource}))).await
}

/// `POST /picker/picked` as the picker page sends it.
async fn picked(app: &TestApp, session: &str, items: &Value) -> (u16, Value) {
    answer(app.picker_page_post("/picker/picked", session, &json!({"items": items}))).await
}

async fn sessions_tokens_and_picks(kind: DbKind) {
    let Some((app, rx)) = app(kind).await else {
        return;
    };
    app.create_integration(KEY, SITES_SCOPES).await;
    app.create_integration("other", SITES_SCOPES).await;
    let id = app.connect(KEY, "user-1", seed::ADELE_UPN).await;

    // Secret key only.
    let r = app
        .http
        .post(format!("{}/picker/sessions", app.url))
        .json(&session_body(&id, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, v) = answer(
        app.with_bearer(
            reqwest::Method::POST,
            "/picker/sessions",
            "0c6e9a4e-7f1b-4c7e-9d55-3a8f7b2e1c90",
        )
        .json(&session_body(&id, json!({}))),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "unknown_account", "{v}");

    // Unknown connection, a connection of another integration, an unknown integration.
    let (s, v) = create(&app, &session_body("no-such-connection", json!({}))).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("unknown_connection")),
        "{v}"
    );
    let mut wrong = session_body(&id, json!({}));
    wrong["provider_config_key"] = json!("other");
    let (s, v) = create(&app, &wrong).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("unknown_connection")),
        "{v}"
    );
    wrong["provider_config_key"] = json!("nope");
    let (s, v) = create(&app, &wrong).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "unknown_provider_config", "{v}");

    // Options are validated: the origin is required, a site must be on the tenant's host.
    let mut no_origin = session_body(&id, json!({}));
    no_origin["options"]
        .as_object_mut()
        .unwrap()
        .remove("origin");
    let (s, v) = create(&app, &no_origin).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{v}"
    );
    for bad in [
        json!({"origin": "https://app.example.com/page"}),
        json!({"mode": "everything"}),
        json!({"filters": ["docx"]}),
        json!({"entry": "sharePoint"}),
        json!({"entry": "sharePoint", "site_url": "https://fabrikam.sharepoint.com/sites/x"}),
        json!({"unknown": true}),
    ] {
        let (s, v) = create(&app, &session_body(&id, bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "invalid_body", "{bad}: {v}");
    }

    // A session: token, the page URL, expiry, ready.
    let (s, v) = create(&app, &session_body(&id, json!({}))).await;
    assert_eq!(s, 201, "{v}");
    let session = data_token(&v);
    assert!(session.starts_with("grantd_picker_session_"), "{v}");
    assert_eq!(
        v["data"]["url"],
        format!("{}/picker?session_token={session}", app.url)
    );
    assert_eq!(v["data"]["ready"], true, "{v}");
    assert!(v["data"]["expires_at"].is_string(), "{v}");

    // The page: strict CSP, framed only by the app's origin, the form to the emulator's
    // OneDrive host, and no token in it.
    let r = picker_page(&app, &session).await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let emu_origin = url::Url::parse(&app.emu.base_url)
        .unwrap()
        .origin()
        .ascii_serialization();
    assert!(
        csp.contains("frame-ancestors https://app.example.com"),
        "{csp}"
    );
    assert!(csp.contains(&format!("form-action {emu_origin}")), "{csp}");
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(
        html.contains(
            "/_sharepoint/contoso-my.sharepoint.com/_layouts/15/FilePicker.aspx?filePicker="
        ),
        "{html}"
    );
    assert!(!html.contains("eyJ"), "no JWT in the page");

    // Tokens: for exactly the host asked, each accepted by that host only.
    let my = format!("https://{}", seed::CONTOSO_MY_HOST);
    let root = format!("https://{}", seed::CONTOSO_SHAREPOINT_HOST);
    let (s, v) = token(&app, &session, &my).await;
    assert_eq!(s, 200, "{v}");
    let my_token = data_token(&v);
    assert_eq!(aud(&my_token), my);
    let (s, v) = token(&app, &session, &format!("{root}/")).await;
    assert_eq!(s, 200, "{v}");
    let root_token = data_token(&v);
    assert_eq!(aud(&root_token), root);
    let sp = |host: &str, t: &str| {
        app.http
            .get(format!("{}/_sharepoint/{host}/_api/web", app.emu.base_url))
            .bearer_auth(t)
            .send()
    };
    assert_eq!(
        sp(seed::CONTOSO_MY_HOST, &my_token).await.unwrap().status(),
        200
    );
    assert_eq!(
        sp(seed::CONTOSO_SHAREPOINT_HOST, &root_token)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        sp(seed::CONTOSO_SHAREPOINT_HOST, &my_token)
            .await
            .unwrap()
            .status(),
        401
    );
    // Asked again: the cached token.
    let (_, v) = token(&app, &session, &my).await;
    assert_eq!(v["data"]["token"], my_token.as_str());

    // Another tenant's host, an attacker's host, odd forms: refused.
    for foreign in [
        format!("https://{}", seed::FABRIKAM_MY_HOST),
        "https://evil.example.com".to_owned(),
        format!("http://{}", seed::CONTOSO_MY_HOST),
        format!("{my}/sites/x"),
        format!("{my}:444"),
        "https://graph.microsoft.com".to_owned(),
    ] {
        let (s, v) = token(&app, &session, &foreign).await;
        assert_eq!(s, 403, "{foreign}: {v}");
        assert_eq!(v["error"]["code"], "forbidden_resource", "{v}");
    }
    // Only grantd's own page may ask (a browser always sends Origin).
    let r = app
        .with_bearer(reqwest::Method::POST, "/picker/token", &session)
        .header("Origin", "https://app.example.com")
        .json(&json!({"resource": my}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The secret key or a connect session is not a picker session.
    let (s, v) = token(&app, SECRET, &my).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unknown_picker_session_token"))
    );

    // Two files and a folder of adele's drive, as the picker sends them.
    let children = app
        .proxy_json("/v1.0/me/drive/root/children", KEY, &id)
        .await;
    let list = children["value"].as_array().unwrap().clone();
    let folder = list
        .iter()
        .find(|i| i.get("folder").is_some())
        .unwrap()
        .clone();
    let mut files: Vec<Value> = list
        .iter()
        .filter(|i| i.get("file").is_some())
        .cloned()
        .collect();
    if files.len() < 2 {
        let inside = app
            .proxy_json(
                &format!(
                    "/v1.0/me/drive/items/{}/children",
                    folder["id"].as_str().unwrap()
                ),
                KEY,
                &id,
            )
            .await;
        files.extend(
            inside["value"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i.get("file").is_some())
                .cloned(),
        );
    }
    files.truncate(2);
    assert_eq!(files.len(), 2, "{children}");
    let drive_id = folder["parentReference"]["driveId"]
        .as_str()
        .unwrap()
        .to_owned();
    let items: Vec<Value> = files
        .iter()
        .chain(std::iter::once(&folder))
        .map(|i| {
            json!({"id": i["id"], "name": i["name"], "size": i["size"], "folder": i.get("folder"),
                   "file": i.get("file"), "webUrl": i["webUrl"],
                   "parentReference": {"driveId": drive_id, "id": "root"},
                   "@sharePoint.endpoint": format!("{my}/_api/v2.0")})
        })
        .collect();
    let (s, v) = picked(&app, &session, &json!(items)).await;
    assert_eq!(s, 200, "{v}");
    let got = v["data"]["items"].as_array().unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["kind"], "folder");
    assert_eq!(got[0]["kind"], "file");
    assert_eq!(got[0]["driveId"], drive_id.as_str());
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();

    // The metadata holds Nango's selection shape, as the change feed reads it.
    let (_, c) = app.connection(KEY, &id, "").await;
    assert_eq!(
        c["metadata"],
        json!({"drives": [], "pickedFiles": [{"driveId": drive_id, "fileIds": ids}]}),
        "{c}"
    );
    // The change feed reads that selection: a run enumerates the picked items (the folder with
    // its subtree) as OneDriveFileSelection records.
    let r = app
        .post(
            "/sync/trigger",
            &json!({"syncs": ["user-files-selection"], "provider_config_key": KEY, "connection_id": id}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    rx.wait_until(|r| {
        r.iter()
            .any(|w| w.json()["type"] == "sync" && w.json()["model"] == "OneDriveFileSelection")
    })
    .await;
    let mut record_ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .get(&format!(
                "/records?model=OneDriveFileSelection&limit=100&cursor={cursor}"
            ))
            .header("Connection-Id", &id)
            .header("Provider-Config-Key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for rec in page["records"].as_array().unwrap() {
            record_ids.push(rec["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    for picked_id in &ids {
        assert!(
            record_ids.iter().any(|r| r == picked_id),
            "{picked_id} in {record_ids:?}"
        );
    }

    // The signed webhook (queued with the pick; the outbox runner delivers it).
    grantd::jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    let got = rx
        .wait_until(|r| r.iter().any(|w| w.json()["type"] == "picker"))
        .await;
    let hook = got.iter().find(|w| w.json()["type"] == "picker").unwrap();
    assert!(verify(SIGNING_KEY, hook));
    let body = hook.json();
    assert_eq!(body["operation"], "picked");
    assert_eq!(body["connectionId"], id.as_str());
    assert_eq!(body["providerConfigKey"], KEY);
    assert_eq!(body["selectionSaved"], true);
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    assert!(!hook.body.contains("eyJ"), "no token in the webhook");

    // A session accepts one pick: replaying it (or asking it for tokens, or opening its page)
    // is refused with a clear 409, and nothing is written.
    let (s, v) = picked(&app, &session, &json!([items[0]])).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("picker_session_used")),
        "{v}"
    );
    let (s, v) = token(&app, &session, &my).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("picker_session_used")),
        "{v}"
    );
    let r = picker_page(&app, &session).await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("already used"));
    let hooks = |r: &[crate::support::webhook_receiver::Received]| {
        r.iter().filter(|w| w.json()["type"] == "picker").count()
    };
    grantd::jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!(hooks(&rx.received()), 1, "the replay queued no webhook");

    // A new session's pick adds to the selection; items are validated (and a refused pick does
    // not use the session up).
    let second = new_session(&app, &session_body(&id, json!({}))).await;
    for bad in [
        json!([]),
        json!([{"id": "x"}]),
        json!("x"),
        json!([{"id": "../..", "parentReference": {"driveId": "b"}}]),
    ] {
        let (s, v) = picked(&app, &second, &bad).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let (s, v) = picked(&app, &second, &json!([items[0]])).await;
    assert_eq!(s, 200, "{v}");
    let (_, c) = app.connection(KEY, &id, "").await;
    assert_eq!(
        c["metadata"]["pickedFiles"][0]["fileIds"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Without save_selection the metadata stays as it is.
    let plain = new_session(&app, &session_body(&id, json!({"save_selection": false}))).await;
    let before = app.connection(KEY, &id, "").await.1["metadata"].clone();
    let (s, _) = picked(&app, &plain, &json!([items[1]])).await;
    assert_eq!(s, 200);
    assert_eq!(app.connection(KEY, &id, "").await.1["metadata"], before);

    // Expiry (the injected clock): the token, the page and picks refuse the session.
    app.clock.advance(31 * 60);
    let (s, v) = token(&app, &session, &my).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unknown_picker_session_token")),
        "{v}"
    );
    let (s, _) = picked(&app, &session, &json!(items)).await;
    assert_eq!(s, 401);
    let r = picker_page(&app, &session).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn sqlite_sessions_tokens_and_picks() {
    sessions_tokens_and_picks(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn postgres_sessions_tokens_and_picks() {
    sessions_tokens_and_picks(DbKind::Postgres).await;
}

#[tokio::test]
async fn without_sites_read_all_the_picker_says_so_and_offers_a_reconnect() {
    let Some((app, _rx)) = app(DbKind::SqliteFile).await else {
        return;
    };
    app.create_integration(KEY, "offline_access,User.Read,Files.Read.All")
        .await;
    let id = app.connect(KEY, "user-2", seed::ADELE_UPN).await;

    // The integration does not ask for Sites.Read.All: reconnecting alone would not help.
    let (s, v) = create(&app, &session_body(&id, json!({}))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["ready"], false, "{v}");
    assert_eq!(
        v["data"]["problem"]["code"], "missing_sites_read_all",
        "{v}"
    );
    assert!(v["data"]["problem"].get("reconnect_link").is_none(), "{v}");
    let session = data_token(&v);
    let r = picker_page(&app, &session).await;
    assert_eq!(r.status(), 409);
    let html = r.text().await.unwrap();
    assert!(html.contains("Sites.Read.All"), "{html}");
    assert!(!html.contains("FilePicker.aspx"), "{html}");
    let (s, v) = token(
        &app,
        &session,
        &format!("https://{}", seed::CONTOSO_MY_HOST),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("missing_sites_read_all")),
        "{v}"
    );

    // Once the integration asks for it, the answer is a reconnect link (hosted Connect UI).
    let r = app
        .patch(
            &format!("/integrations/{KEY}"),
            &json!({"credentials": {"type": "OAUTH2", "client_id": seed::DEV_CLIENT_ID,
            "client_secret": seed::DEV_CLIENT_SECRET, "scopes": SITES_SCOPES}}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let (s, v) = create(&app, &session_body(&id, json!({}))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["data"]["problem"]["code"], "missing_sharepoint_token",
        "{v}"
    );
    let link = v["data"]["problem"]["reconnect_link"].as_str().unwrap();
    assert!(
        link.starts_with(&format!(
            "{}/connect?session_token=nango_connect_session_",
            app.url
        )),
        "{link}"
    );
    let session = data_token(&v);
    let html = picker_page(&app, &session).await.text().await.unwrap();
    assert!(html.contains("Reconnect your account"), "{html}");
    assert!(
        html.contains("/connect?session_token=nango_connect_session_"),
        "{html}"
    );
    // The reconnect link opens the Connect UI for this connection's integration.
    let start = html.find("/connect?session_token=").unwrap();
    let end = start + html[start..].find('"').unwrap();
    let r = app
        .http
        .get(format!(
            "{}{}",
            app.url,
            &html[start..end].replace("&amp;", "&")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains(&format!("/oauth/connect/{KEY}"))
    );
}

/// POSTs the consumer picker's form to the emulator with `access_token`.
async fn consumer_form(app: &TestApp, action: &str, access_token: &str) -> (u16, String) {
    let r = app
        .http
        .post(action)
        .form(&[("access_token", access_token)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A personal account's connection opens Microsoft's consumer picker: the page posts the form to
/// `onedrive.live.com/picker` (the emulator's), `/picker/token` answers with a consumer OneDrive
/// token (what the consumer picker and its API accept; a Graph or SharePoint token is refused
/// there as Microsoft refuses it), and the pick is recorded once.
#[tokio::test]
async fn a_personal_connection_opens_the_consumer_picker() {
    let Some((app, rx)) = app(DbKind::SqliteFile).await else {
        return;
    };
    const PERSONAL: &str = "personal";
    app.create_provider_integration(
        "one-drive-personal",
        PERSONAL,
        "offline_access,User.Read,Files.Read",
    )
    .await;
    app.create_integration(KEY, SITES_SCOPES).await;
    let id = app.connect(PERSONAL, "user-p", seed::SAM_UPN).await;
    let body = |extra: Value| {
        let mut b = session_body(&id, extra);
        b["provider_config_key"] = json!(PERSONAL);
        b
    };
    // No SharePoint sites for personal accounts.
    let (s, v) = create(
        &app,
        &body(json!({"entry": "sharePoint", "site_url": "https://contoso.sharepoint.com/sites/x"})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{v}"
    );
    let (s, v) = create(&app, &body(json!({}))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["ready"], true, "{v}");
    let session = data_token(&v);

    // The page: the form goes to the consumer picker, no token in it.
    let r = picker_page(&app, &session).await;
    assert_eq!(r.status(), 200);
    let emu_origin = url::Url::parse(&app.emu.base_url)
        .unwrap()
        .origin()
        .ascii_serialization();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains(&format!("form-action {emu_origin}")), "{csp}");
    let html = r.text().await.unwrap();
    let marker = "/_sharepoint/onedrive.live.com/picker?filePicker=";
    assert!(html.contains(marker), "{html}");
    assert!(!html.contains("FilePicker.aspx"), "{html}");
    assert!(!html.contains("eyJ"), "no JWT in the page");
    let start = html.find(&format!("{}{marker}", app.emu.base_url)).unwrap();
    let end = start + html[start..].find('"').unwrap();
    let action = html[start..end].replace("&amp;", "&");

    // The consumer token: personal account, consumer OneDrive API, read-only (Files.Read only).
    let (s, v) = token(&app, &session, "https://api.onedrive.com").await;
    assert_eq!(s, 200, "{v}");
    let consumer = data_token(&v);
    let c = claims(&consumer);
    assert_eq!(c["aud"], "https://api.onedrive.com", "{c}");
    assert_eq!(c["tid"], seed::CONSUMERS_TENANT_ID, "{c}");
    assert_eq!(c["scp"], "OneDrive.ReadOnly", "{c}");
    // Whatever resource the consumer picker names, the same token; a non-https one is refused.
    let (_, v) = token(&app, &session, "https://onedrive.live.com/picker").await;
    assert_eq!(v["data"]["token"], consumer.as_str());
    let (s, v) = token(&app, &session, "http://api.onedrive.com").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("forbidden_resource")),
        "{v}"
    );

    // The consumer picker and its API take that token, and refuse the connection's Graph token
    // and a work account's SharePoint token the way the consumer API refuses them.
    let (_, conn) = app.connection(PERSONAL, &id, "").await;
    let graph_token = conn["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, html) = consumer_form(&app, &action, &consumer).await;
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("picker-config"), "{html}");
    let (s, html) = consumer_form(&app, &action, &graph_token).await;
    assert_eq!(s, 401, "{html}");
    assert!(html.contains("Must be authenticated"), "{html}");
    let api = |t: &str| {
        app.http
            .get(format!(
                "{}/_sharepoint/api.onedrive.com/v1.0/me/drive/root/children",
                app.emu.base_url
            ))
            .bearer_auth(t.to_owned())
            .send()
    };
    let r = api(&consumer).await.unwrap();
    assert_eq!(r.status(), 200);
    let children: Value = r.json().await.unwrap();
    let r = api(&graph_token).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthenticated", "{v}");
    let work = app.connect(KEY, "user-w", seed::ADELE_UPN).await;
    let work_session = new_session(&app, &session_body(&work, json!({}))).await;
    let (_, v) = token(
        &app,
        &work_session,
        &format!("https://{}", seed::CONTOSO_MY_HOST),
    )
    .await;
    let sp_token = data_token(&v);
    let (s, _) = consumer_form(&app, &action, &sp_token).await;
    assert_eq!(s, 401);

    // A pick of the personal drive's items, recorded once.
    let items: Vec<Value> = children["value"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|i| {
            json!({"id": i["id"], "name": i["name"], "folder": i.get("folder"),
                        "file": i.get("file"), "parentReference": i["parentReference"]})
        })
        .collect();
    assert_eq!(items.len(), 2, "{children}");
    let (s, v) = picked(&app, &session, &json!(items)).await;
    assert_eq!(s, 200, "{v}");
    let drive_id = items[0]["parentReference"]["driveId"].as_str().unwrap();
    let (_, c) = app.connection(PERSONAL, &id, "").await;
    assert_eq!(c["metadata"]["pickedFiles"][0]["driveId"], drive_id, "{c}");
    let (s, v) = picked(&app, &session, &json!(items)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("picker_session_used")),
        "{v}"
    );
    drop(rx);
}

/// Minting a picker token redeems the connection's refresh token; the refresh token that call
/// returns is stored like a refresh's (compare-and-swap), so a strictly rotating provider keeps
/// the connection working — for a SharePoint host and for the consumer picker alike.
#[tokio::test]
async fn sqlite_a_picker_mint_stores_the_rotated_refresh_token() {
    a_picker_mint_stores_the_rotated_refresh_token(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn postgres_a_picker_mint_stores_the_rotated_refresh_token() {
    a_picker_mint_stores_the_rotated_refresh_token(DbKind::Postgres).await;
}

async fn a_picker_mint_stores_the_rotated_refresh_token(kind: DbKind) {
    let Some((app, _rx)) = app(kind).await else {
        return;
    };
    app.create_integration(KEY, SITES_SCOPES).await;
    app.create_provider_integration(
        "one-drive-personal",
        "personal",
        "offline_access,User.Read,Files.ReadWrite",
    )
    .await;
    let work = app.connect(KEY, "user-w", seed::ADELE_UPN).await;
    let personal = app.connect("personal", "user-p", seed::SAM_UPN).await;
    app.emu.control().set_strict_rotation(true).await.unwrap();

    for (key, id, resource) in [
        (KEY, &work, format!("https://{}", seed::CONTOSO_MY_HOST)),
        ("personal", &personal, "https://api.onedrive.com".to_owned()),
    ] {
        let (_, before) = app.connection(key, id, "&refresh_token=true").await;
        let mut body = session_body(id, json!({}));
        body["provider_config_key"] = json!(key);
        let session = new_session(&app, &body).await;
        let (s, v) = token(&app, &session, &resource).await;
        assert_eq!(s, 200, "{key}: {v}");
        if key == "personal" {
            assert_eq!(
                claims(v["data"]["token"].as_str().unwrap())["scp"],
                "OneDrive.ReadWrite"
            );
        }
        // The mint's rotated refresh token is the stored one…
        let (_, after) = app.connection(key, id, "&refresh_token=true").await;
        assert_ne!(
            after["credentials"]["refresh_token"], before["credentials"]["refresh_token"],
            "{key}: the rotated refresh token is stored"
        );
        // …so the connection still refreshes under strict rotation.
        let (s, v) = app.connection(key, id, "&force_refresh=true").await;
        assert_eq!(s, 200, "{key}: {v}");
    }
}

#[tokio::test]
async fn the_sdk_script_is_served() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(format!("{}/picker/sdk.js", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(r.text().await.unwrap().contains("grantdPicker"));
    // A page without a token says so.
    let r = app
        .http
        .get(format!("{}/picker", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
