//! The token lifecycle's finer points over real HTTP against the emulator: Nango's 424 answers
//! during a refresh backoff (reads and the proxy), auth webhooks for `POST /connections` imports,
//! no retries of webhooks a receiver refuses with 3xx/4xx, refresh and credential-expiry metrics
//! at `GET /metrics`, the misconfigured state cleared by new app credentials, and the idle clock
//! reset by a reconnect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::TimeDelta;
use grantd::clock::Clock;
use grantd::config::LifecycleConfig;
use grantd::jobs;
use grantd_emulator::control::NewSecret;
use grantd_emulator::faults::{FaultScope, FaultSpec};
use grantd_emulator::{EmulatorConfig, seed};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::app::{Opts, TestApp};
use crate::support::db::DbKind;
use crate::support::webhook_receiver::Receiver;

const GRAPH_ONLY: &str = "User.Read,Files.Read";
const LIFETIME: i64 = 3600;

fn opts(lifecycle: Option<LifecycleConfig>) -> Opts {
    Opts {
        db: DbKind::SqliteFile,
        emulator: EmulatorConfig {
            large_file_size: 1 << 20,
            access_token_lifetime: Some(LIFETIME as u64),
            ..Default::default()
        },
        lifecycle,
    }
}

fn webhooks_to(url: &str) -> Option<LifecycleConfig> {
    Some(LifecycleConfig {
        webhook_url: Some(url::Url::parse(url).unwrap()),
        ..Default::default()
    })
}

#[tokio::test]
async fn refresh_backoff_answers_424_on_reads_and_the_proxy() {
    let app = TestApp::spawn_with(opts(None)).await.unwrap();
    app.create_integration("od", GRAPH_ONLY).await;
    let id = app.connect("od", "u", seed::ADELE_UPN).await;
    let ctl = app.emu.control();
    ctl.add_fault(&FaultSpec {
        status: Some(503),
        ..FaultSpec::new(FaultScope::Token)
    })
    .await
    .unwrap();

    // The token has expired and the token endpoint is down: the refresh fails (400).
    app.clock.advance(LIFETIME + 60);
    let (status, e) = app.connection("od", &id, "").await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "invalid_credentials", "{e}");
    assert_eq!(e["error"]["payload"]["auth_error"]["type"], "transient");

    // Within the backoff, unforced reads get Nango's 424 with the connection, no new attempt.
    let fired = ctl.faults().await.unwrap()[0].fired;
    let (status, e) = app.connection("od", &id, "").await;
    assert_eq!(status, 424, "{e}");
    assert_eq!(e["error"]["code"], "invalid_credentials", "{e}");
    assert_eq!(
        e["error"]["payload"]["connection"]["connection_id"],
        id.as_str()
    );
    assert!(e["error"]["payload"]["connection"]["credentials"].is_null());
    let r = app
        .proxy(reqwest::Method::GET, "/v1.0/me/drive", "od", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 424);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "connection_refresh_backoff", "{e}");
    assert_eq!(ctl.faults().await.unwrap()[0].fired, fired);

    // A forced read tries again (and fails again: 400, not 424).
    let (status, e) = app.connection("od", &id, "&force_refresh=true").await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(ctl.faults().await.unwrap()[0].fired, fired + 1);

    // The outage ends; after the backoff the next read refreshes.
    ctl.clear_faults().await.unwrap();
    app.clock.advance(120);
    let (status, c) = app.connection("od", &id, "").await;
    assert_eq!(status, 200, "{c}");
    assert!(c["auth_error"].is_null(), "{c}");
    let r = app
        .proxy(reqwest::Method::GET, "/v1.0/me/drive", "od", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn import_body(connection_id: &str, access_token: &str) -> Value {
    json!({
        "provider_config_key": "od",
        "connection_id": connection_id,
        "credentials": {
            "type": "OAUTH2",
            "access_token": access_token,
            "refresh_token": "imported-refresh-token",
            "expires_at": "2030-01-01T00:00:00Z",
        },
        "end_user": {"id": "imp-user"},
    })
}

#[tokio::test]
async fn imports_fire_creation_then_override_webhooks() {
    let rx = Receiver::spawn().await;
    let app = TestApp::spawn_with(opts(webhooks_to(&rx.url)))
        .await
        .unwrap();
    app.create_integration("od", GRAPH_ONLY).await;
    for token in ["first-access-token", "second-access-token"] {
        let r = app
            .post("/connections", &import_body("imported", token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let run = jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!((run.delivered, run.failed), (2, 0), "{run:?}");
    let got: Vec<Value> = rx.received().iter().map(|r| r.json()).collect();
    let ops: Vec<(&str, bool)> = got
        .iter()
        .map(|b| {
            (
                b["operation"].as_str().unwrap(),
                b["success"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(ops, [("creation", true), ("override", true)], "{got:?}");
    for b in &got {
        assert_eq!(b["connectionId"], "imported");
        assert_eq!(b["providerConfigKey"], "od");
        assert_eq!(b["type"], "auth");
        assert_eq!(b["endUser"]["endUserId"], "imp-user");
        assert!(b.get("error").is_none(), "{b}");
        let text = b.to_string();
        assert!(!text.contains("access-token") && !text.contains("imported-refresh"));
    }
}

/// A receiver answering every POST with the current `status`, counting requests.
struct Refusing {
    url: String,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

async fn refusing(status: u16) -> Refusing {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let status = Arc::new(AtomicU16::new(status));
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State((s, h)): State<(Arc<AtomicU16>, Arc<AtomicUsize>)>| async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
                },
            ),
        )
        .with_state((status.clone(), hits.clone()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Refusing { url, status, hits }
}

#[tokio::test]
async fn webhooks_refused_with_3xx_or_4xx_are_not_retried() {
    let rx = refusing(410).await;
    let app = TestApp::spawn_with(opts(webhooks_to(&rx.url)))
        .await
        .unwrap();
    app.create_integration("od", GRAPH_ONLY).await;
    let import = |id: &'static str| {
        let r = app.post("/connections", &import_body(id, "t")).send();
        async move { assert_eq!(r.await.unwrap().status(), 201) }
    };
    import("gone").await;
    let run = jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!(
        (run.delivered, run.failed, run.rejected),
        (0, 0, 1),
        "{run:?}"
    );

    // A redirect (not followed: no Location) is final too; a 5xx is retried.
    rx.status.store(301, Ordering::SeqCst);
    import("moved").await;
    let run = jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!((run.failed, run.rejected), (0, 1), "{run:?}");
    rx.status.store(502, Ordering::SeqCst);
    import("flaky").await;
    let run = jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!((run.failed, run.rejected), (1, 0), "{run:?}");
    assert_eq!(rx.hits.load(Ordering::SeqCst), 3);

    // A day later only the 5xx one is tried again; the refused ones are recorded as failed.
    rx.status.store(200, Ordering::SeqCst);
    let later = app.clock.now() + TimeDelta::days(1);
    let run = jobs::outbox::run_once(&app.state.core, later)
        .await
        .unwrap();
    assert_eq!(
        (run.delivered, run.failed, run.rejected),
        (1, 0, 0),
        "{run:?}"
    );
    assert_eq!(rx.hits.load(Ordering::SeqCst), 4);
    let (pending, delivered, abandoned) = app.state.core.store().webhook_counts().await.unwrap();
    assert_eq!((pending, delivered, abandoned), (0, 1, 2));
}

/// The value of the metric line starting with `series` (name and labels), 0 when absent.
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app
        .http
        .get(format!("{}/metrics", app.url))
        .bearer_auth(crate::support::app::SECRET)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn refreshes_and_credential_expiry_show_in_metrics() {
    let app = TestApp::spawn_with(opts(None)).await.unwrap();
    app.create_integration("od", GRAPH_ONLY).await;
    let adele = app.connect("od", "u1", seed::ADELE_UPN).await;
    let diego = app.connect("od", "u2", seed::DIEGO_UPN).await;
    let ok = r#"grantd_refreshes_total{outcome="ok"}"#;
    let reconnect = r#"grantd_refresh_failures_total{cause="reconnect"}"#;
    // Metrics are process-wide and other tests run alongside: compare lower bounds.
    let (ok0, reconnect0) = (metric(&app, ok).await, metric(&app, reconnect).await);

    // A read refresh, and a revoked user's failed one.
    let (status, _) = app.connection("od", &adele, "&force_refresh=true").await;
    assert_eq!(status, 200);
    app.emu
        .control()
        .revoke_user(seed::DIEGO_UPN)
        .await
        .unwrap();
    let (status, _) = app.connection("od", &diego, "&force_refresh=true").await;
    assert_eq!(status, 400);
    assert!(metric(&app, ok).await >= ok0 + 1.0);
    assert!(metric(&app, reconnect).await >= reconnect0 + 1.0);

    // The proactive job's refreshes count too.
    let ok1 = metric(&app, ok).await;
    app.clock.advance(31 * 86_400);
    let run = jobs::refresh::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!(run.refreshed, 1, "{run:?}");
    assert!(metric(&app, ok).await >= ok1 + 1.0);

    // Credential expiry: days left per integration, and warnings by stage.
    let expires = app.clock.now() + TimeDelta::days(10);
    let r = app
        .post(
            "/integrations",
            &json!({
                "provider": "one-drive",
                "unique_key": "od-metrics-expiry",
                "credentials": {"type": "OAUTH2", "client_id": seed::DEV_CLIENT_ID, "client_secret": seed::DEV_CLIENT_SECRET, "scopes": GRAPH_ONLY, "client_secret_expires_at": expires.to_rfc3339()},
            }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let warned = r#"grantd_credentials_expiry_warnings_total{stage="14"}"#;
    let warned0 = metric(&app, warned).await;
    let core = &app.state.core;
    assert_eq!(
        core.check_credential_expiry(core.clock.now())
            .await
            .unwrap(),
        1
    );
    let days = metric(
        &app,
        r#"grantd_integration_credentials_expiry_days{integration="od-metrics-expiry",credential="client_secret"}"#,
    )
    .await;
    assert!((9.99..=10.0).contains(&days), "{days}");
    assert!(metric(&app, warned).await >= warned0 + 1.0);
}

#[tokio::test]
async fn new_app_credentials_clear_the_misconfigured_state_on_sqlite() {
    new_app_credentials_clear_the_misconfigured_state(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn new_app_credentials_clear_the_misconfigured_state_on_postgres() {
    new_app_credentials_clear_the_misconfigured_state(DbKind::Postgres).await;
}

async fn new_app_credentials_clear_the_misconfigured_state(db: DbKind) {
    let Some(app) = TestApp::spawn_with(Opts { db, ..opts(None) }).await else {
        return; // PostgreSQL not configured (SKIPPED printed; a failure under GRANTD_TEST_NO_SKIP)
    };
    app.create_integration("od", GRAPH_ONLY).await;
    let adele = app.connect("od", "u1", seed::ADELE_UPN).await;
    let diego = app.connect("od", "u2", seed::DIEGO_UPN).await;
    let ctl = app.emu.control();

    // Diego's grant is revoked: only Diego can fix that.
    ctl.revoke_user(seed::DIEGO_UPN).await.unwrap();
    let (status, _) = app.connection("od", &diego, "&force_refresh=true").await;
    assert_eq!(status, 400);

    // The client secret expires: the app is misconfigured (AADSTS7000222), refreshes stop.
    ctl.expire_secret(seed::DEV_CLIENT_ID, None).await.unwrap();
    let (status, e) = app.connection("od", &adele, "&force_refresh=true").await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["payload"]["auth_error"]["type"], "misconfigured");
    assert_eq!(e["error"]["payload"]["auth_error"]["aadsts"], 7000222);
    ctl.reset_counters().await.unwrap();
    let (status, _) = app.connection("od", &adele, "&force_refresh=true").await;
    assert_eq!(status, 400, "recorded: no new attempt");
    let counters = ctl.counters().await.unwrap();
    assert_eq!(counters.token_requests.get("refresh_token"), None);

    // The admin creates a new secret and updates the integration.
    let secret = ctl
        .add_secret(
            seed::DEV_CLIENT_ID,
            &NewSecret {
                value: None,
                expires_at: None,
                expires_in_seconds: None,
            },
        )
        .await
        .unwrap()
        .value;
    let r = app
        .http
        .patch(format!("{}/integrations/od", app.url))
        .bearer_auth(crate::support::app::SECRET)
        .json(&json!({"credentials": {"type": "OAUTH2", "client_id": seed::DEV_CLIENT_ID, "client_secret": secret, "scopes": GRAPH_ONLY}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The misconfigured state is gone; the next read that needs a refresh does it.
    let (status, c) = app.connection("od", &adele, "").await;
    assert_eq!(status, 200, "{c}");
    assert!(c["auth_error"].is_null(), "{c}");
    let before = c["credentials"]["access_token"].clone();
    app.clock.advance(LIFETIME - 60);
    let (status, c) = app.connection("od", &adele, "").await;
    assert_eq!(status, 200, "{c}");
    assert_ne!(c["credentials"]["access_token"], before);
    assert!(c["last_refreshed_at"].is_string());

    // Diego's failure stays until he reconnects.
    let (status, c) = app.connection("od", &diego, "").await;
    assert_eq!(status, 400, "{c}");
    assert_eq!(
        c["error"]["payload"]["auth_error"]["type"], "reconnect",
        "{c}"
    );
}

#[tokio::test]
async fn a_reconnect_restarts_the_idle_clock_on_sqlite() {
    a_reconnect_restarts_the_idle_clock(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn a_reconnect_restarts_the_idle_clock_on_postgres() {
    a_reconnect_restarts_the_idle_clock(DbKind::Postgres).await;
}

async fn a_reconnect_restarts_the_idle_clock(db: DbKind) {
    let Some(app) = TestApp::spawn_with(Opts { db, ..opts(None) }).await else {
        return; // PostgreSQL not configured (SKIPPED printed; a failure under GRANTD_TEST_NO_SKIP)
    };
    app.create_integration("od", GRAPH_ONLY).await;
    let id = app.connect("od", "u", seed::ADELE_UPN).await;
    let core = &app.state.core;
    let day = 86_400;

    // 20 days after the connect the user reconnects: new tokens, and the idle clock restarts.
    app.clock.advance(20 * day);
    crate::lifecycle::reconnect(&app, "od", &id, seed::ADELE_UPN).await;
    let (_, c) = app.connection("od", &id, "").await;
    let token = c["credentials"]["access_token"].clone();

    // 35 days after the connect, 15 after the reconnect: not idle yet.
    app.clock.advance(15 * day);
    let run = jobs::refresh::run_once(core, app.clock.now())
        .await
        .unwrap();
    assert_eq!(
        run.claimed, 0,
        "idle time counts from the reconnect: {run:?}"
    );

    // 31 days after the reconnect: refreshed once.
    app.clock.advance(16 * day);
    let run = jobs::refresh::run_once(core, app.clock.now())
        .await
        .unwrap();
    assert_eq!((run.claimed, run.refreshed), (1, 1), "{run:?}");
    let (status, c) = app.connection("od", &id, "").await;
    assert_eq!(status, 200, "{c}");
    assert_ne!(c["credentials"]["access_token"], token);
}
