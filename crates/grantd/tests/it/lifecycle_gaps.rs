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

