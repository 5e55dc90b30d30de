//! `grantd-client` against a live grantd and emulator, one call of every method: integrations
//! and providers, connect sessions (the browser flow then runs on the client's session),
//! connections (credentials, forced refresh, import, patch, metadata, delete), the proxy with
//! streamed bodies both ways and the client's `Retry-After` retries, records as a cursor-paged
//! `Stream` and the sync commands, File Picker sessions, and webhooks verified by `VerifiedWebhook` (axum) and by
//! `WebhookVerifier` over plain `http` types. Errors are checked by their Nango code.

mod readme;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use grantd::config::LifecycleConfig;
use grantd_client::types::{
    AuthOperation, CreateConnectSession, CreateIntegration, CreatePickerSession, Credentials,
    EndUserInput, ImportConnection, ImportCredentials, IntegrationCredentialsInput, LastAction,
    ListConnectionsQuery, OneDriveFile, PatchConnection, PickerOptionsInput, ReconnectSession,
    RecordsQuery, UpdateIntegration, Webhook,
};
use grantd_client::{
    Error, ErrorCode, GetConnection, GrantdClient, Include, RetryPolicy, VerifiedWebhook,
    WebhookVerifier,
};
use grantd_emulator::browser::{Browser, Consent};
use grantd_emulator::faults::{FaultScope, FaultSpec};
use grantd_emulator::seed;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::support::app::{Opts, SECRET, TestApp};
use crate::support::webhook_receiver::Receiver;

const KEY: &str = "one-drive";
const SIGNING_KEY: &str = "whsec-client-key";

fn client(app: &TestApp) -> GrantdClient {
    GrantdClient::new(&app.url, SECRET).unwrap()
}

fn code(e: &Error) -> ErrorCode {
    e.code()
        .cloned()
        .unwrap_or_else(|| panic!("not an API error: {e:?}"))
}

#[derive(Clone)]
struct HookState {
    verifier: WebhookVerifier,
    tx: mpsc::UnboundedSender<Webhook>,
}

impl axum::extract::FromRef<HookState> for WebhookVerifier {
    fn from_ref(s: &HookState) -> WebhookVerifier {
        s.verifier.clone()
    }
}

async fn on_hook(
    axum::extract::State(s): axum::extract::State<HookState>,
    VerifiedWebhook(hook): VerifiedWebhook,
) {
    let _ = s.tx.send(hook);
}

/// An axum app that accepts only verified webhooks (`VerifiedWebhook`) and hands them over.
async fn axum_receiver() -> (String, mpsc::UnboundedReceiver<Webhook>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(on_hook))
        .with_state(HookState {
            verifier: WebhookVerifier::new(SIGNING_KEY),
            tx,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

async fn app_with_webhooks(url: &str) -> TestApp {
    TestApp::spawn_with(Opts {
        lifecycle: Some(LifecycleConfig {
            webhook_url: Some(url::Url::parse(url).unwrap()),
            webhook_signing_key: Some(SIGNING_KEY.to_owned().into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("SQLite runs")
}

/// The Connect flow of a user, on a session the client created.
async fn connect_through_client(app: &TestApp, grantd: &GrantdClient, end_user: &str) -> String {
    let session = grantd
        .create_connect_session(&CreateConnectSession {
            end_user: Some(EndUserInput {
                id: end_user.into(),
                email: Some("adele@example.com".into()),
                ..Default::default()
            }),
            allowed_integrations: Some(vec![KEY.into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        session.token.starts_with("nango_connect_session_"),
        "{}",
        session.token
    );
    assert!(session.connect_link.contains(&session.token));
    let authorize = app.start_connect(KEY, &session.token, "").await;
    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::ADELE_UPN, seed::PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let (status, html) = app.deliver(&outcome).await;
    assert_eq!(status, 200, "callback: {html}");
    let list = grantd
        .list_connections(&ListConnectionsQuery {
            end_user_id: Some(end_user.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    list[0].connection_id.clone()
}

#[tokio::test]
async fn integrations_providers_sessions_and_connections() {
    let (hook_url, mut hooks) = axum_receiver().await;
    let app = app_with_webhooks(&hook_url).await;
    let grantd = client(&app);

    // Integrations.
    let created = grantd
        .create_integration(&CreateIntegration {
            provider: KEY.into(),
            unique_key: KEY.into(),
            credentials: Some(IntegrationCredentialsInput {
                kind: "OAUTH2".into(),
                client_id: seed::DEV_CLIENT_ID.into(),
                client_secret: Some(seed::DEV_CLIENT_SECRET.into()),
                scopes: Some("User.Read,Files.ReadWrite.All".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.unique_key, KEY);
    assert!(created.credentials.is_none());
    let e = grantd
        .create_integration(&CreateIntegration {
            provider: "no-such-provider".into(),
            unique_key: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidBody);
    assert_eq!(e.status(), Some(http::StatusCode::BAD_REQUEST));
    let with_creds = grantd
        .get_integration(KEY, Include::Credentials)
        .await
        .unwrap();
    assert_eq!(
        with_creds.credentials.unwrap().client_id,
        seed::DEV_CLIENT_ID
    );
    let updated = grantd
        .update_integration(
            KEY,
            &UpdateIntegration {
                display_name: Some("Files".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.display_name.as_deref(), Some("Files"));
    let all = grantd.list_integrations().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|i| i.unique_key.as_str())
            .collect::<Vec<_>>(),
        [KEY]
    );
    let e = grantd
        .get_integration("missing", Include::None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);

    // Providers.
    let providers = grantd.list_providers(None).await.unwrap();
    assert!(providers.iter().any(|p| p.name == "one-drive-app"));
    let found = grantd.list_providers(Some("one-drive")).await.unwrap();
    assert!(!found.is_empty() && found.iter().all(|p| p.name.contains("one-drive")));
    assert_eq!(grantd.get_provider(KEY).await.unwrap().auth_mode, "OAUTH2");
    let e = grantd.get_provider("nope").await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);

    // A connect session made by the client, then the user's browser flow.
    let id = connect_through_client(&app, &grantd, "user-1").await;
    // The extractor takes a body signed the way grantd signs (grantd's own signer).
    let body = format!(
        r#"{{"authMode":"OAUTH2","connectionId":"{id}","environment":"prod","from":"nango","operation":"creation","providerConfigKey":"{KEY}","provider":"one-drive","success":true,"type":"auth"}}"#
    );
    let (hmac, _) = grantd::webhooks::signatures(SIGNING_KEY, &body);
    let r = reqwest::Client::new()
        .post(&hook_url)
        .header("x-nango-hmac-sha256", hmac)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(status, 200, "{}", r.text().await.unwrap());
    let hook = hooks.try_recv().expect("the handler got the webhook");
    match hook {
        Webhook::Auth(a) => {
            assert_eq!(a.operation, AuthOperation::Creation);
            assert!(a.success);
            assert_eq!(a.connection_id, id);
        }
        other => panic!("expected an auth webhook, got {other:?}"),
    }

    // Credentials, refresh, access token.
    let c = grantd.get_connection(KEY, &id).await.unwrap();
    let Some(Credentials::OAuth2(creds)) = c.credentials else {
        panic!("OAuth2 credentials");
    };
    assert!(!creds.access_token.is_empty());
    assert_eq!(creds.refresh_token, None, "only when asked");
    let with_refresh = grantd
        .get_connection_with(KEY, &id, GetConnection::default().refresh_token(true))
        .await
        .unwrap();
    let Some(Credentials::OAuth2(with_refresh)) = with_refresh.credentials else {
        panic!("OAuth2 credentials");
    };
    assert!(with_refresh.refresh_token.is_some());
    let before = refreshes(&app).await;
    let refreshed = grantd.refresh_connection(KEY, &id).await.unwrap();
    assert_eq!(
        refreshes(&app).await,
        before + 1,
        "forced refresh reached Microsoft"
    );
    let new_token = refreshed.credentials.unwrap().access_token().to_owned();
    assert_ne!(new_token, creds.access_token);
    assert_eq!(grantd.access_token(KEY, &id).await.unwrap(), new_token);
    let e = grantd.get_connection(KEY, "nobody").await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
    let e = grantd.get_connection("missing", &id).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::UnknownProviderConfig);

    // Metadata: replace, then merge.
    grantd
        .set_metadata(KEY, &[&id], &json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    grantd
        .update_metadata(KEY, &[&id], &json!({"b": 3, "c": 4}))
        .await
        .unwrap();
    let c = grantd.get_connection(KEY, &id).await.unwrap();
    assert_eq!(c.metadata, Some(json!({"a": 1, "b": 3, "c": 4})));
    let e = grantd
        .set_metadata(KEY, &[&id, "nobody"], &json!({}))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::UnknownConnection);

    // Patch.
    grantd
        .patch_connection(
            KEY,
            &id,
            &PatchConnection {
                tags: Some([("team".to_owned(), "blue".to_owned())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let c = grantd.get_connection(KEY, &id).await.unwrap();
    assert_eq!(c.tags.get("team").map(String::as_str), Some("blue"));

    // A reconnect session for it.
    let again = grantd
        .create_reconnect_session(&ReconnectSession {
            connection_id: id.clone(),
            integration_id: KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(again.token.starts_with("nango_connect_session_"));
    let e = grantd
        .create_reconnect_session(&ReconnectSession {
            connection_id: "nobody".into(),
            integration_id: KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidBody);

    // Import, then delete.
    let imported = grantd
        .import_connection(&ImportConnection {
            provider_config_key: KEY.into(),
            connection_id: Some("imported-1".into()),
            metadata: None,
            connection_config: None,
            webhook_url_override: None,
            end_user: None,
            tags: None,
            credentials: ImportCredentials {
                kind: "OAUTH2".into(),
                access_token: "imported-access-token".into(),
                ..Default::default()
            },
        })
        .await
        .unwrap();
    assert_eq!(imported.connection_id, "imported-1");
    assert_eq!(
        grantd.access_token(KEY, "imported-1").await.unwrap(),
        "imported-access-token"
    );
    grantd.delete_connection(KEY, "imported-1").await.unwrap();
    let e = grantd.get_connection(KEY, "imported-1").await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
    let e = grantd
        .delete_connection(KEY, "imported-1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::UnknownConnection);
    assert_eq!(e.api().unwrap().message, None, "Nango sends only the code");

    // Bad keys are typed errors, and the key never shows in them.
    let wrong = GrantdClient::new(&app.url, "00000000-0000-4000-8000-000000000000").unwrap();
    let e = wrong.list_integrations().await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::UnknownAccount);
    assert_eq!(e.status(), Some(http::StatusCode::UNAUTHORIZED));
    let e = GrantdClient::new(&app.url, "not-a-uuid")
        .unwrap()
        .list_integrations()
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidSecretKeyFormat);
    assert!(!e.to_string().contains("not-a-uuid"), "{e}");

    // A webhook that is not grantd's is refused by the extractor before the handler.
    let http = reqwest::Client::new();
    let body = r#"{"from":"nango","type":"auth"}"#;
    let r = http.post(&hook_url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&hook_url)
        .header("x-nango-hmac-sha256", "00".repeat(32))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    grantd.delete_integration(KEY).await.unwrap();
    assert!(grantd.list_integrations().await.unwrap().is_empty());
    let e = grantd.delete_integration(KEY).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
    assert!(
        hooks.try_recv().is_err(),
        "refused webhooks never reached the handler"
    );
}

async fn refreshes(app: &TestApp) -> u64 {
    let c = app.emu.control().counters().await.unwrap();
    c.token_requests.get("refresh_token").copied().unwrap_or(0)
}

#[tokio::test]
async fn proxy_streams_both_ways_and_retries_after_retry_after() {
    let app = TestApp::spawn().await;
    app.create_integration(KEY, "User.Read,Files.ReadWrite.All")
        .await;
    let id = app.connect(KEY, "user-1", seed::ADELE_UPN).await;
    let grantd = client(&app);
    let proxy = grantd.proxy(KEY, &id);

    let drives: Value = proxy
        .get("/v1.0/me/drives")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!drives["value"].as_array().unwrap().is_empty());

    // Upload from an AsyncRead (streamed: chunked, not buffered), 3 MiB of known bytes.
    let content: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let up = proxy
        .put("/v1.0/me/drive/root:/client-upload.bin:/content")
        .header("content-type", "application/octet-stream")
        .body_reader(std::io::Cursor::new(content.clone()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .await
        .unwrap();
    assert!(up.status().is_success(), "{}", up.status());
    let item: Value = up.json().await.unwrap();
    assert_eq!(item["size"].as_u64(), Some(content.len() as u64));

    // Download as a Stream of Bytes (following Graph's redirect to the download URL)...
    let path = "/v1.0/me/drive/root:/client-upload.bin:/content";
    let r = proxy.get(path).follow_redirects(true).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut chunks = 0;
    let mut got = Vec::new();
    let mut s = std::pin::pin!(r.bytes_stream());
    while let Some(chunk) = s.next().await {
        got.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert_eq!(got, content);
    assert!(chunks > 1, "the body arrived in pieces ({chunks})");
    // ... and as an AsyncRead; a plain GET passes the redirect back.
    let mut got = Vec::new();
    proxy
        .get(path)
        .follow_redirects(true)
        .send()
        .await
        .unwrap()
        .into_async_read()
        .read_to_end(&mut got)
        .await
        .unwrap();
    assert_eq!(got, content);
    assert_eq!(proxy.get(path).send().await.unwrap().status(), 302);

    // Upload from a Stream with a Content-Length.
    let parts: Vec<Result<bytes::Bytes, std::io::Error>> = content
        .chunks(64 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let r = proxy
        .put("/v1.0/me/drive/root:/client-stream.bin:/content")
        .body_stream(futures::stream::iter(parts))
        .content_length(content.len() as u64)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // Upstream errors keep Graph's code; grantd's own errors keep Nango's.
    let e = proxy
        .get("/v1.0/me/drive/root:/no-such-file.txt")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(http::StatusCode::NOT_FOUND));
    assert_eq!(code(&e), ErrorCode::Other("itemNotFound".into()));
    let e = grantd
        .proxy("missing", &id)
        .get("/v1.0/me")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::UnknownProviderConfig);
    let e = proxy.get("/v1.0/me").retries(99).send().await.unwrap();
    assert_eq!(e.status(), 400);
    let e = e.error_for_status().await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidHeaders);
    assert_eq!(e.api().unwrap().errors[0].path, ["retries"]);

    // Throttled with Retry-After: 0 and grantd told not to retry: the client retries (GET).
    let throttle = |count| FaultSpec {
        path_prefix: Some("/v1.0/me".into()),
        status: Some(429),
        count: Some(count),
        retry_after: Some(0),
        ..FaultSpec::new(FaultScope::Graph)
    };
    let ctl = app.emu.control();
    ctl.add_fault(&throttle(2)).await.unwrap();
    let r = proxy.get("/v1.0/me").retries(0).send().await.unwrap();
    assert_eq!(r.status(), 200, "two 429s, then served");
    assert!(
        ctl.faults().await.unwrap().is_empty(),
        "both throttles were used"
    );
    // Without client retries the 429 comes back with its Retry-After.
    let once = GrantdClient::builder(&app.url, SECRET)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    ctl.add_fault(&throttle(1)).await.unwrap();
    let r = once
        .proxy(KEY, &id)
        .get("/v1.0/me")
        .retries(0)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.retry_after(), Some(Duration::ZERO));
    // A POST is not idempotent: not retried.
    ctl.add_fault(&FaultSpec {
        path_prefix: Some("/v1.0/me/drive/root/children".into()),
        ..throttle(1)
    })
    .await
    .unwrap();
    let r = proxy
        .post("/v1.0/me/drive/root/children")
        .json(&json!({"name": "made-by-client", "folder": {}}))
        .retries(0)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn records_stream_sync_commands_and_plain_http_webhooks() {
    let rx = Receiver::spawn().await;
    let app = app_with_webhooks(&rx.url).await;
    app.create_integration(KEY, "User.Read,Files.ReadWrite.All")
        .await;
    let id = app.connect(KEY, "user-1", seed::ADELE_UPN).await;
    let grantd = client(&app);
    let verifier = WebhookVerifier::new(SIGNING_KEY);
    let n = crate::feed::drive_walk(&app, &id).await.len() as u64;

    grantd
        .trigger_sync(KEY, Some(&id), &["user-files"], false)
        .await
        .unwrap();
    // Every webhook verified and parsed from plain `http` types, until the whole drive is in.
    let parse = |r: &crate::support::webhook_receiver::Received| -> Webhook {
        let mut req = http::Request::new(r.body.clone().into_bytes());
        *req.headers_mut() = r.headers.clone();
        verifier
            .verify_request(&req)
            .expect("grantd's webhooks verify")
    };
    let got = rx
        .wait_until(|got| {
            got.iter()
                .filter_map(|r| match parse(r) {
                    Webhook::Sync(s) => s.response_results.map(|x| x.added),
                    _ => None,
                })
                .sum::<u64>()
                >= n
        })
        .await;
    assert!(matches!(parse(&got[0]), Webhook::Auth(a) if a.operation == AuthOperation::Creation));
    // A changed body fails verification.
    let mut tampered = http::Request::new(got[0].body.replace("nango", "other").into_bytes());
    *tampered.headers_mut() = got[0].headers.clone();
    assert!(verifier.verify_request::<_, Value>(&tampered).is_err());

    // Records: one page, then the whole feed as a Stream (small pages: the cursor is followed).
    let q = RecordsQuery {
        model: "OneDriveFile".into(),
        limit: Some(3),
        ..Default::default()
    };
    let page = grantd
        .list_records::<OneDriveFile>(KEY, &id, &q)
        .await
        .unwrap();
    assert_eq!(page.records.len(), 3);
    assert!(page.next_cursor.is_some());
    let all: Vec<_> = grantd
        .records::<OneDriveFile>(KEY, &id, q.clone())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len() as u64, n);
    assert!(
        all.iter()
            .all(|r| r.nango_metadata.last_action == LastAction::Added)
    );
    let ids: std::collections::BTreeSet<_> = all.iter().map(|r| r.data.id.clone()).collect();
    assert_eq!(ids.len() as u64, n, "no record twice across pages");
    // Resuming from the last cursor yields nothing new.
    let rest: Vec<_> = grantd
        .records::<Value>(
            KEY,
            &id,
            RecordsQuery {
                cursor: Some(all.last().unwrap().nango_metadata.cursor.clone()),
                ..q.clone()
            },
        )
        .try_collect()
        .await
        .unwrap();
    assert!(rest.is_empty());
    let e = grantd
        .list_records::<Value>(
            KEY,
            &id,
            &RecordsQuery {
                model: "lowercase".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidQueryParams);

    // Sync status, pause, start.
    let s = grantd.sync_status(KEY, &id, &["user-files"]).await.unwrap();
    assert_eq!(s[0].name, "user-files");
    assert_eq!(s[0].record_count.get("OneDriveFile"), Some(&n));
    grantd
        .pause_sync(KEY, Some(&id), &["user-files"])
        .await
        .unwrap();
    let s = grantd.sync_status(KEY, &id, &["user-files"]).await.unwrap();
    assert_eq!(s[0].status, "PAUSED");
    grantd
        .start_sync(KEY, Some(&id), &["user-files"])
        .await
        .unwrap();
    let s = grantd.sync_status(KEY, &id, &["user-files"]).await.unwrap();
    assert_ne!(s[0].status, "PAUSED");
    let e = grantd
        .trigger_sync(KEY, Some(&id), &["no-such-sync"], false)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidBody);
    let e = grantd
        .sync_status(KEY, "nobody", &["user-files"])
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidBody);
}

#[tokio::test]
async fn readme_example_is_the_one_that_runs() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let block = readme
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a rust block");
    let source = include_str!("client/readme.rs");
    let code: String = source
        .lines()
        .skip_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        block.trim(),
        code.trim(),
        "README.md shows tests/it/client/readme.rs"
    );

    let app = TestApp::spawn().await;
    app.create_integration(KEY, "User.Read,Files.ReadWrite.All")
        .await;
    app.connect(KEY, "user-1", seed::ADELE_UPN).await;
    let drives = readme::print_drives(&app.url, SECRET).await.unwrap();
    assert!(drives >= 1);
}

/// `create_picker_session`: a session whose page opens; a connection without a SharePoint token
/// gets one that says why; refusals carry Nango's codes.
#[tokio::test]
async fn picker_sessions() {
    let app = TestApp::spawn().await;
    app.create_integration(
        KEY,
        "offline_access,User.Read,Files.Read.All,Sites.Read.All",
    )
    .await;
    app.create_integration("plain", "offline_access,User.Read,Files.Read.All")
        .await;
    // The plain connection first: the emulator remembers the user's consent to the app, so after
    // a consent that includes Sites.Read.All every later token would carry it.
    let plain = app.connect("plain", "user-2", seed::ADELE_UPN).await;
    let id = app.connect(KEY, "user-1", seed::ADELE_UPN).await;
    let grantd = client(&app);
    let body = |key: &str, id: &str| CreatePickerSession {
        connection_id: id.into(),
        provider_config_key: key.into(),
        options: PickerOptionsInput {
            origin: Some("https://app.example.com".into()),
            multi_select: Some(true),
            ..Default::default()
        },
    };

    let s = grantd.create_picker_session(&body(KEY, &id)).await.unwrap();
    assert!(s.ready && s.problem.is_none(), "{s:?}");
    assert!(s.token.starts_with("grantd_picker_session_"), "{s:?}");
    assert_eq!(
        s.url,
        format!("{}/picker?session_token={}", app.url, s.token)
    );
    let page = app.http.get(&s.url).send().await.unwrap();
    assert_eq!(page.status(), 200);

    let s = grantd
        .create_picker_session(&body("plain", &plain))
        .await
        .unwrap();
    // The integration does not ask for Sites.Read.All: the problem says so (reconnecting alone
    // would not help, so no reconnect link).
    let problem = s.problem.expect("a problem without Sites.Read.All");
    assert!(!s.ready);
    assert_eq!(problem.code, "missing_sites_read_all", "{problem:?}");
    assert!(problem.reconnect_link.is_none(), "{problem:?}");
    assert!(!problem.message.is_empty());

    let e = grantd
        .create_picker_session(&body(KEY, "no-such-connection"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::UnknownConnection);
    let mut no_origin = body(KEY, &id);
    no_origin.options.origin = None;
    let e = grantd.create_picker_session(&no_origin).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidBody);
}
