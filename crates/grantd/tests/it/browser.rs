//! Real-browser tests: headless Chromium (Debian's `chromium`) driven from Node with
//! `playwright-core` (`tests/browser/run.mjs`) against a live grantd and its emulator. Scenarios:
//! the Connect UI flow through the emulator's sign-in and consent pages, `@nangohq/frontend`'s
//! popup flow resolving with the connection id, a cancelled consent, and the dashboard turning a
//! connection to "must reconnect" after the emulator revokes its user, and the overview listing
//! those auth events and their webhook deliveries; and the popup flow against two instances on
//! one PostgreSQL database behind a proxy, the WebSocket on one and the callback on the other.
//! Screenshots go to
//! `target/browser-screenshots/`.
//!
//! Skips (printing `SKIPPED: …`) when Chromium or the Node packages are missing; with
//! `GRANTD_TEST_NO_SKIP=1` (CI) that is a failure.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grantd_emulator::seed;
use serde_json::{Value, json};

use grantd::clock::Clock;
use grantd::config::LifecycleConfig;

use crate::support::app::{Opts, SECRET, TestApp};
use crate::support::db::DbKind;
use crate::support::webhook_receiver::Receiver;

const UPN: &str = "adele@contoso.onmicrosoft.com";

fn skip(why: &str) {
    if std::env::var("GRANTD_TEST_NO_SKIP").is_ok_and(|v| v == "1") {
        panic!("{why} (GRANTD_TEST_NO_SKIP=1 forbids skipping)");
    }
    eprintln!("SKIPPED: {why}");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether Chromium and the Node packages are installed; when not, the skip is printed (or,
/// under `GRANTD_TEST_NO_SKIP=1`, the test fails).
fn browser_available() -> bool {
    if !Path::new("/usr/bin/chromium").exists() {
        skip("chromium not installed (apt-get install -y chromium chromium-driver)");
        return false;
    }
    if !repo_root()
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        skip("browser test packages not installed (cd tests/browser && npm ci)");
        return false;
    }
    true
}

/// grantd on SQLite whose webhooks go to a receiver.
async fn app_with_webhooks() -> (TestApp, Receiver) {
    let rx = Receiver::spawn().await;
    let app = TestApp::spawn_with(Opts {
        lifecycle: Some(LifecycleConfig {
            webhook_url: Some(url::Url::parse(&rx.url).unwrap()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("SQLite is always available");
    (app, rx)
}

/// Runs one scenario of `tests/browser/run.mjs` and returns its result object.
async fn scenario(app: &TestApp, name: &str, extra: Value) -> Value {
    scenario_at(&app.url, name, extra).await
}

/// Runs one scenario against grantd at `grantd_url` (an instance, or a proxy in front of some).
async fn scenario_at(grantd_url: &str, name: &str, extra: Value) -> Value {
    let root = repo_root();
    let mut cfg = json!({
        "scenario": name,
        "grantdUrl": grantd_url,
        "secretKey": SECRET,
        "upn": UPN,
        "password": seed::PASSWORD,
        "screenshots": root.join("target/browser-screenshots"),
    });
    for (k, v) in extra.as_object().expect("extra is an object") {
        cfg[k] = v.clone();
    }
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/run.mjs"))
        .env("BROWSER_TEST", cfg.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser scenario {name} failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["ok"], true, "{v}");
    v
}

async fn connect_link(app: &TestApp, end_user: &str) -> String {
    let token = app.session(end_user, &["one-drive"]).await;
    format!("{}/connect?session_token={token}", app.url)
}

#[tokio::test]
async fn browser_scenarios() {
    if !browser_available() {
        return;
    }
    // Webhooks go to a receiver, so the overview has auth events and deliveries to show.
    let (app, rx) = app_with_webhooks().await;
    app.create_integration(
        "one-drive",
        "offline_access,User.Read,Files.ReadWrite.All,Sites.Read.All",
    )
    .await;

    // 1. The Connect UI, end to end.
    let r = scenario(
        &app,
        "connect",
        json!({"connectLink": connect_link(&app, "u-connect").await}),
    )
    .await;
    assert!(r["title"].as_str().unwrap().starts_with("Connected"), "{r}");
    let ids = app.connection_ids("u-connect").await;
    assert_eq!(ids.len(), 1);
    let id = ids[0].clone();

    // 2. The dashboard shows it healthy; the test call lists drives; a reconnect link is made.
    let r = scenario(&app, "dashboard-healthy", json!({"connectionId": id})).await;
    assert_eq!(r["status"], "healthy", "{r}");
    assert!(r["drives"].as_u64().unwrap() >= 1, "{r}");
    assert!(
        r["link"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/connect?session_token=", app.url)),
        "{r}"
    );
    assert_eq!(
        r["redirectUri"],
        format!("{}/oauth/callback", app.url),
        "{r}"
    );

    // 3. @nangohq/frontend's popup flow resolves with the new connection's id.
    let token = app.session("u-popup", &["one-drive"]).await;
    // Users who have not consented yet, so the consent page shows (the emulator remembers consent).
    let r = scenario(
        &app,
        "popup",
        json!({"sessionToken": token, "upn": seed::MEGAN_UPN}),
    )
    .await;
    let popup_ids = app.connection_ids("u-popup").await;
    assert_eq!(popup_ids.len(), 1);
    assert_eq!(r["connectionId"], popup_ids[0].as_str(), "{r}");
    assert_eq!(r["providerConfigKey"], "one-drive", "{r}");

    // 4. A cancelled consent says so, and what to do.
    let r = scenario(
        &app,
        "cancel",
        json!({"connectLink": connect_link(&app, "u-cancel").await, "upn": seed::DIEGO_UPN}),
    )
    .await;
    let text = r["text"].as_str().unwrap();
    assert!(text.to_lowercase().contains("cancel"), "{text}");
    assert!(text.contains("What to do"), "{text}");
    assert!(app.connection_ids("u-cancel").await.is_empty());

    // 5. The emulator revokes the user; a forced refresh from the dashboard turns the connection
    //    to "must reconnect", with the AADSTS code.
    app.emu.control().revoke_user(UPN).await.unwrap();
    let r = scenario(&app, "dashboard-revoked", json!({"connectionId": id})).await;
    assert_eq!(r["status"], "must reconnect", "{r}");
    assert!(r["problem"].as_str().unwrap().contains("AADSTS"), "{r}");

    // 6. The overview lists the auth events (newest: the failed refresh) and their deliveries.
    let run = grantd::jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!(run.failed, 0, "{run:?}");
    let r = scenario(&app, "dashboard-overview", json!({})).await;
    assert_eq!(r["newestResult"], "failure", "{r}");
    assert!(
        r["newestEvent"].as_str().unwrap().contains("refresh"),
        "{r}"
    );
    assert!(r["events"].as_u64().unwrap() >= 3, "{r}");
    assert_eq!(r["deliveries"], r["delivered"], "{r}");
    assert_eq!(
        rx.received().len() as u64,
        r["deliveries"].as_u64().unwrap(),
        "{r}"
    );
}

/// `@nangohq/frontend`'s `openConnectUI()` against grantd's Connect UI at `/connect/`: the
/// iframe loads, `ready` / `session_token` are exchanged, the user signs in and consents in the
/// popup, `onEvent` gets `connect` with the connection id, then `close` when the user closes it;
/// localised by the `lang` the SDK passes. Then a user cancelling at Microsoft: `error`.
#[tokio::test]
async fn open_connect_ui_scenarios() {
    if !browser_available() {
        return;
    }
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", "offline_access,User.Read,Files.Read")
        .await;

    let token = app.session("u-ui", &["one-drive"]).await;
    let r = scenario(
        &app,
        "connect-ui-sdk",
        json!({"sessionToken": token, "lang": "de", "action": "accept"}),
    )
    .await;
    let ids = app.connection_ids("u-ui").await;
    assert_eq!(ids.len(), 1, "{r}");
    let events = r["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ready", "connect", "close"], "{r}");
    assert_eq!(events[1]["payload"]["connectionId"], ids[0].as_str(), "{r}");
    assert_eq!(
        events[1]["payload"]["providerConfigKey"], "one-drive",
        "{r}"
    );
    assert_eq!(r["lang"], "de", "{r}");
    assert!(
        r["linkText"].as_str().unwrap().starts_with("Verbinden"),
        "{r}"
    );
    assert_eq!(r["iframeGone"], true, "close removes the iframe: {r}");

    // A reconnect session: the same connection comes back in `connect`.
    let reconnect = app
        .post(
            "/connect/sessions/reconnect",
            &json!({"connection_id": ids[0], "integration_id": "one-drive"}),
        )
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let token = reconnect["data"]["token"].as_str().unwrap().to_owned();
    let r = scenario(
        &app,
        "connect-ui-sdk",
        json!({"sessionToken": token, "lang": "fr", "action": "accept"}),
    )
    .await;
    let events = r["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ready", "connect", "close"], "{r}");
    assert_eq!(events[1]["payload"]["connectionId"], ids[0].as_str(), "{r}");
    assert_eq!(app.connection_ids("u-ui").await, ids, "no new connection");
    assert!(
        r["linkText"].as_str().unwrap().starts_with("Connecter"),
        "{r}"
    );

    let token = app.session("u-ui-cancel", &["one-drive"]).await;
    let r = scenario(
        &app,
        "connect-ui-sdk",
        json!({"sessionToken": token, "lang": "ja", "action": "cancel", "upn": seed::DIEGO_UPN}),
    )
    .await;
    let events = r["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ready", "error", "close"], "{r}");
    assert_eq!(events[1]["payload"]["errorType"], "callback_err", "{r}");
    assert!(
        events[1]["payload"]["errorMessage"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("cancel"),
        "{r}"
    );
    assert_eq!(r["lang"], "ja", "{r}");
    assert!(app.connection_ids("u-ui-cancel").await.is_empty());
}

/// Which instance a proxied connection went to, and what its first request was.
#[derive(Debug, Clone)]
struct Routed {
    backend: char,
    websocket: bool,
    path: String,
}

/// A small TCP proxy in front of two grantd instances, standing in for a load balancer.
///
/// How it routes, honestly: it reads each accepted connection's request head (up to the blank
/// line) before choosing. A WebSocket upgrade (`Upgrade: websocket`) always goes to A and a
/// request for `/oauth/callback` always goes to B, so the test controls the property under test
/// (the socket and the callback on different instances) instead of hoping for it. Every other
/// connection goes to A and B in turn (round-robin per connection). So that a connection is one
/// request, the proxy rewrites each non-upgrade request head to `Connection: close` (the browser
/// cannot reuse a connection routed for an earlier request). The head is otherwise forwarded
/// unchanged, followed by the bytes in both directions.
struct RoundRobin {
    url: String,
    routed: Arc<Mutex<Vec<Routed>>>,
}

impl RoundRobin {
    async fn spawn(listener: tokio::net::TcpListener, a: String, b: String) -> RoundRobin {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routed = Arc::new(Mutex::new(Vec::new()));
        let log = routed.clone();
        tokio::spawn(async move {
            let mut turn = 0usize;
            while let Ok((client, _)) = listener.accept().await {
                let (a, b, log) = (a.clone(), b.clone(), log.clone());
                let this_turn = turn;
                turn += 1;
                tokio::spawn(async move {
                    let _ = Self::forward(client, this_turn, &a, &b, &log).await;
                });
            }
        });
        RoundRobin { url, routed }
    }

    async fn forward(
        mut client: tokio::net::TcpStream,
        turn: usize,
        a: &str,
        b: &str,
        log: &Mutex<Vec<Routed>>,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::with_capacity(4096);
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok(()); // a speculative connection closed unused
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
        let websocket = headers.iter().any(|h| {
            h.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("upgrade")
                    && v.trim().eq_ignore_ascii_case("websocket")
            })
        });
        let backend = if websocket {
            'A'
        } else if path.starts_with("/oauth/callback") {
            'B'
        } else if turn % 2 == 0 {
            'A'
        } else {
            'B'
        };
        let mut out = Vec::with_capacity(buf.len() + 32);
        if websocket {
            out.extend_from_slice(&buf[..end]);
        } else {
            out.extend_from_slice(request_line.as_bytes());
            out.extend_from_slice(b"\r\n");
            for h in headers.iter().filter(|h| {
                !h.split_once(':')
                    .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
            }) {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"Connection: close\r\n\r\n");
        }
        out.extend_from_slice(&buf[end..]);
        log.lock().unwrap().push(Routed {
            backend,
            websocket,
            path,
        });
        let target = if backend == 'A' { a } else { b };
        let mut upstream = tokio::net::TcpStream::connect(target).await?;
        upstream.write_all(&out).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        Ok(())
    }

    fn routed(&self) -> Vec<Routed> {
        self.routed.lock().unwrap().clone()
    }
}

/// Waits until a store's `LISTEN` connection is up, so no `NOTIFY` is missed.
async fn listening(store: &grantd::store::Store) {
    let mut events = store.cache_events();
    while !store.cache_live() {
        tokio::time::timeout(Duration::from_secs(10), events.changed())
            .await
            .expect("the listener connects")
            .unwrap();
    }
}

/// `nango.auth()` in a real browser against two grantd instances on one PostgreSQL database,
/// behind [`RoundRobin`]: `@nangohq/frontend`'s WebSocket is held by A, Microsoft's redirect to
/// `/oauth/callback` lands on B, and the promise still resolves with the new connection's id
/// (B hands the outcome to A with `NOTIFY grantd_ws`). Both instances' public URL is the proxy's.
#[tokio::test]
async fn popup_resolves_across_two_instances_behind_a_round_robin_proxy() {
    if !browser_available() {
        return;
    }
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = url::Url::parse(&format!("http://{}", front.local_addr().unwrap())).unwrap();
    let Some(a) = TestApp::spawn_configured(
        Opts {
            db: DbKind::Postgres,
            ..Default::default()
        },
        |c| c.public_url = public.clone(),
    )
    .await
    else {
        return; // TestDb printed the skip (or failed under GRANTD_TEST_NO_SKIP=1)
    };
    a.create_integration("one-drive", "offline_access,User.Read,Files.Read")
        .await;
    // Instance B: the same database and config (public URL included), its own listener and hub.
    let b = grantd::server::AppState::build(a.state.core.config.clone(), None)
        .await
        .unwrap();
    listening(a.state.core.store()).await;
    listening(b.core.store()).await;
    let b_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = b_listener.local_addr().unwrap().to_string();
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(grantd::server::start(b, b_listener, async move {
        let _ = stopped_b.await;
    }));
    let a_addr = a.url.trim_start_matches("http://").to_owned();
    let proxy = RoundRobin::spawn(front, a_addr, b_addr).await;
    assert_eq!(
        format!("{}/oauth/callback", proxy.url),
        a.state.core.config.callback_url()
    );

    let token = a.session("u-two", &["one-drive"]).await;
    let r = scenario_at(
        &proxy.url,
        "popup",
        json!({"sessionToken": token, "upn": seed::ADELE_UPN}),
    )
    .await;
    let ids = a.connection_ids("u-two").await;
    assert_eq!(ids.len(), 1, "{r}");
    assert_eq!(r["connectionId"], ids[0].as_str(), "{r}");
    assert_eq!(r["providerConfigKey"], "one-drive", "{r}");

    let routed = proxy.routed();
    let sockets: Vec<&Routed> = routed.iter().filter(|r| r.websocket).collect();
    assert!(!sockets.is_empty(), "{routed:?}");
    assert!(sockets.iter().all(|r| r.backend == 'A'), "{routed:?}");
    let callbacks: Vec<&Routed> = routed
        .iter()
        .filter(|r| r.path.starts_with("/oauth/callback"))
        .collect();
    assert_eq!(callbacks.len(), 1, "{routed:?}");
    assert_eq!(callbacks[0].backend, 'B', "{routed:?}");
    let _ = stop_b.send(());
}

/// The hosted File Picker end to end: an app page (its own origin) → grantd's picker page (popup
/// opened by `/picker/sdk.js`) → the emulator's FilePicker.aspx in its frame; adele browses her
/// OneDrive and a SharePoint site (a second host, a second `authenticate`), picks two files and
/// a folder; the app page's promise resolves with them, no token reaches the app page (globals,
/// DOM, storage, messages, network), the `picker` webhook arrives and the metadata holds Nango's
/// selection shape.
#[tokio::test]
async fn picker_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let (app, rx) = app_with_webhooks().await;
    app.create_integration(
        "one-drive",
        "offline_access,User.Read,Files.Read.All,Sites.Read.All",
    )
    .await;
    let id = app.connect("one-drive", "u-picker", UPN).await;

    let r = scenario(&app, "picker", json!({"connectionId": id})).await;
    let picked = picked_as_expected(&r, "Policies");
    assert!(r["appRequests"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(
        r["popupSawToken"], true,
        "the detector sees tokens where they are: {r}"
    );

    // Two drives: adele's OneDrive (the files) and the site's library (the folder).
    assert_eq!(drive_ids(picked).len(), 2, "{r}");
    let (_, c) = app.connection("one-drive", &id, "").await;
    let selection = c["metadata"]["pickedFiles"].as_array().unwrap();
    assert_eq!(c["metadata"]["drives"], json!([]), "{c}");
    assert_eq!(selection.len(), 2, "{c}");
    for item in picked {
        let entry = selection
            .iter()
            .find(|e| e["driveId"] == item["driveId"])
            .unwrap();
        assert!(
            entry["fileIds"].as_array().unwrap().contains(&item["id"]),
            "{c}"
        );
    }
    let hook = picker_webhook(&app, &rx).await;
    assert_eq!(hook["connectionId"], id.as_str());
}

/// The consumer picker end to end: a personal account's connection (`one-drive-personal`, sam)
/// → grantd's picker page → the emulator's `onedrive.live.com/picker` in its frame, speaking the
/// same protocol; sam picks two files and a folder of his personal drive (no sites); the app
/// page's promise resolves with them, no token reaches the app page, every `authenticate` was
/// answered through `/picker/token`, the metadata holds Nango's selection shape and the webhook
/// arrives.
#[tokio::test]
async fn personal_picker_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let (app, rx) = app_with_webhooks().await;
    app.create_provider_integration(
        "one-drive-personal",
        "personal",
        "offline_access,User.Read,Files.Read",
    )
    .await;
    let id = app.connect("personal", "u-personal", seed::SAM_UPN).await;

    let r = scenario(
        &app,
        "picker",
        json!({"connectionId": id, "providerConfigKey": "personal", "personal": true}),
    )
    .await;
    let picked = picked_as_expected(&r, "Photos");
    assert_eq!(r["popupSawToken"], true, "{r}");
    // The form's token and the consumer picker's authenticate, all through /picker/token.
    assert_eq!(
        r["tokenResources"],
        json!(["https://api.onedrive.com", "https://onedrive.live.com"]),
        "{r}"
    );
    assert_eq!(drive_ids(picked).len(), 1, "one personal drive: {r}");
    let (_, c) = app.connection("personal", &id, "").await;
    let selection = c["metadata"]["pickedFiles"].as_array().unwrap();
    assert_eq!(selection.len(), 1, "{c}");
    let ids = selection[0]["fileIds"].as_array().unwrap();
    for item in picked {
        assert!(ids.contains(&item["id"]), "{c}");
    }
    let hook = picker_webhook(&app, &rx).await;
    assert_eq!(hook["providerConfigKey"], "personal");
}

/// The `picker` scenario's outcome: two files and `folder` picked (whatever the order), only a
/// `picked` message and no token in the app page. Returns the picked items.
fn picked_as_expected<'a>(r: &'a Value, folder: &str) -> &'a [Value] {
    let picked = r["picked"].as_array().expect("picked items");
    let mut names: Vec<(&str, &str)> = picked
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["kind"].as_str().unwrap()))
        .collect();
    names.sort();
    let mut expected = vec![
        ("Budget.xlsx", "file"),
        (folder, "folder"),
        ("Report.docx", "file"),
    ];
    expected.sort();
    assert_eq!(names, expected, "{r}");
    assert_eq!(r["messageTypes"], json!(["picked"]), "{r}");
    assert_eq!(r["leaks"], json!([]), "no token in the app page: {r}");
    picked
}

fn drive_ids(picked: &[Value]) -> std::collections::BTreeSet<&str> {
    picked
        .iter()
        .map(|i| i["driveId"].as_str().unwrap())
        .collect()
}

/// Runs the outbox once (its job is not spawned in tests) and returns the `picker` webhook it
/// delivered, after checking it names the three picked items.
async fn picker_webhook(app: &TestApp, rx: &Receiver) -> Value {
    grantd::jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    let got = rx
        .wait_until(|r| r.iter().any(|w| w.json()["type"] == "picker"))
        .await;
    let hook = got.iter().find(|w| w.json()["type"] == "picker").unwrap();
    let body = hook.json();
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    body
}
