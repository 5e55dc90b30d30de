//! Auth webhooks end to end: events from real flows (creation, override, a failed creation, a
//! refresh failure) queue in the database outbox; the receiver is down for a while (every
//! attempt fails and is rescheduled with backoff), grantd restarts, the receiver comes back, and
//! every event arrives exactly once, with both Nango signatures verifying.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use grantd::clock::Clock;
use grantd::config::LifecycleConfig;
use grantd::jobs;
use grantd::server::AppState;
use grantd_emulator::browser::{Browser, Consent};
use grantd_emulator::seed;
use serde_json::{Value, json};

use crate::support::app::{Opts, TestApp};
use crate::support::db::DbKind;
use crate::support::webhook_receiver::{Receiver, verify};

const KEY: &str = "whsec-test-signing-key";

async fn delivery_survives_downtime_and_restart(kind: DbKind) {
    let rx = Receiver::spawn().await;
    let lifecycle = LifecycleConfig {
        webhook_url: Some(url::Url::parse(&rx.url).unwrap()),
        webhook_signing_key: Some(KEY.to_owned().into()),
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(Opts {
        db: kind,
        lifecycle: Some(lifecycle),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    app.create_integration("od", "User.Read,Files.Read").await;

    // creation / success
    let id = app.connect("od", "u", seed::ADELE_UPN).await;
    // override / success
    let r = app
        .post(
            "/connect/sessions/reconnect",
            &json!({"connection_id": id, "integration_id": "od"}),
        )
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let authorize = app.start_connect("od", &token, "").await;
    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::ADELE_UPN, seed::PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    assert_eq!(app.deliver(&outcome).await.0, 200);
    // creation / failure (consent cancelled)
    let token = app.session("v", &["od"]).await;
    let authorize = app.start_connect("od", &token, "").await;
    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::MEGAN_UPN, seed::PASSWORD)),
            Consent::Cancel,
        )
        .await
        .unwrap();
    assert_eq!(app.deliver(&outcome).await.0, 400);
    // refresh / failure
    app.emu
        .control()
        .revoke_user(seed::ADELE_UPN)
        .await
        .unwrap();
    let (status, _) = app.connection("od", &id, "&force_refresh=true").await;
    assert_eq!(status, 400);

    // The receiver is down: every attempt fails and is rescheduled, nothing is lost.
    rx.set_down(true);
    let run = jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!((run.delivered, run.failed), (0, 4), "{run:?}");
    assert_eq!(rx.refused(), 4);
    // Not due again before the backoff.
    let run = jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!((run.delivered, run.failed), (0, 0), "{run:?}");
    app.clock.advance(40);
    let run = jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!((run.delivered, run.failed), (0, 4), "{run:?}");

    // grantd restarts (a new instance on the same database); the receiver comes back.
    let restarted = AppState::build(app.state.core.config.clone(), Some(app.clock.clone()))
        .await
        .unwrap();
    rx.set_down(false);
    app.clock.advance(70);
    let run = jobs::outbox::run_once(&restarted.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!((run.delivered, run.failed), (4, 0), "{run:?}");
    let again = jobs::outbox::run_once(
        &restarted.core,
        app.clock.now() + chrono::TimeDelta::days(1),
    )
    .await
    .unwrap();
    assert_eq!(again.delivered, 0, "delivered webhooks are not sent again");

    let got = rx.received();
    assert_eq!(got.len(), 4);
    let ids: HashSet<String> = got.iter().map(|r| r.delivery_id()).collect();
    assert_eq!(ids.len(), 4, "no duplicates");
    for r in &got {
        assert!(verify(KEY, r), "signatures verify: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let mut events: Vec<(String, bool)> = got
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["operation"].as_str().unwrap().to_owned(),
                b["success"].as_bool().unwrap(),
            )
        })
        .collect();
    events.sort();
    assert_eq!(
        events,
        vec![
            ("creation".to_owned(), false),
            ("creation".to_owned(), true),
            ("override".to_owned(), true),
            ("refresh".to_owned(), false),
        ]
    );
    let created = got
        .iter()
        .map(|r| r.json())
        .find(|b| b["operation"] == "creation" && b["success"] == true)
        .unwrap();
    assert_eq!(created["connectionId"], id.as_str());
    assert_eq!(created["from"], "nango");
    assert_eq!(created["type"], "auth");
    assert_eq!(created["authMode"], "OAUTH2");
    assert_eq!(created["endUser"]["endUserId"], "u");
    assert!(created.get("error").is_none());
    let failed = got
        .iter()
        .map(|r| r.json())
        .find(|b| b["operation"] == "creation" && b["success"] == false)
        .unwrap();
    assert_eq!(failed["error"]["type"], "invalid_callback", "{failed}");
    assert!(failed.get("tags").is_none(), "{failed}");
}

#[tokio::test]
async fn delivery_survives_downtime_and_restart_on_sqlite() {
    delivery_survives_downtime_and_restart(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn delivery_survives_downtime_and_restart_on_postgres() {
    delivery_survives_downtime_and_restart(DbKind::Postgres).await;
}

/// Webhooks leave right after the commit that queues them, not on the jobs' timer: the timer
/// is set to an hour, so only the wake-up can deliver within the test. On PostgreSQL the
/// callback is handled by one instance and delivery runs only on another (woken by `NOTIFY`).
async fn delivered_right_after_the_callback(kind: DbKind) {
    let rx = Receiver::spawn().await;
    let lifecycle = LifecycleConfig {
        webhook_url: Some(url::Url::parse(&rx.url).unwrap()),
        webhook_signing_key: Some(KEY.to_owned().into()),
        jobs_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(Opts {
        db: kind,
        lifecycle: Some(lifecycle),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    app.create_integration("od", "User.Read").await;
    let runner = if kind.is_postgres() {
        // Instance B runs the jobs; instance A (the app's server) handles the callback.
        let other = AppState::build(app.state.core.config.clone(), Some(app.clock.clone()))
            .await
            .unwrap();
        let store = other.core.store();
        let mut events = store.cache_events();
        while !store.cache_live() {
            tokio::time::timeout(Duration::from_secs(10), events.changed())
                .await
                .expect("the listener connects")
                .unwrap();
        }
        jobs::spawn(other.core.clone())
    } else {
        jobs::spawn(app.state.core.clone())
    };
    for (round, upn) in [seed::ADELE_UPN, seed::MEGAN_UPN].into_iter().enumerate() {
        let token = app.session(&format!("u{round}"), &["od"]).await;
        let authorize = app.start_connect("od", &token, "").await;
        let outcome = Browser::new()
            .authorize(&authorize, Some((upn, seed::PASSWORD)), Consent::Accept)
            .await
            .unwrap();
        let t0 = Instant::now();
        assert_eq!(app.deliver(&outcome).await.0, 200);
        let got = rx.wait_for(round + 1, Duration::from_secs(60)).await;
        let delay = got[round].at.saturating_duration_since(t0);
        println!("webhook {round} arrived {delay:?} after the callback was sent");
        // Generous on purpose (a loaded CI machine): the timer alone would take an hour.
        assert!(delay < Duration::from_secs(2), "delay {delay:?}");
        assert!(verify(KEY, &got[round]));
        assert_eq!(got[round].json()["operation"], "creation");
    }
    runner.abort();
}

#[tokio::test]
async fn delivered_right_after_the_callback_on_sqlite() {
    delivered_right_after_the_callback(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn delivered_right_after_the_callback_by_another_instance_on_postgres() {
    delivered_right_after_the_callback(DbKind::Postgres).await;
}
