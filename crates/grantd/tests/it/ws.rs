//! The WebSocket protocol `@nangohq/frontend` speaks: connect to `/`, receive `connection_ack`
//! with a `ws_client_id`, start the flow with it, and receive exactly one `success` (with the new
//! connection id) or `error` frame (`error_type`, `error_desc`) when the flow ends.

use std::time::Duration;

use futures::StreamExt;
use grantd_emulator::browser::{Browser, Consent};
use grantd_emulator::seed;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::TestApp;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the SDK's WebSocket and returns it with the acknowledged `ws_client_id`.
async fn open(app: &TestApp) -> (Socket, String) {
    let url = format!("{}/", app.url.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket upgrade at /");
    let ack = next_frame(&mut ws).await.expect("connection_ack");
    assert_eq!(ack["message_type"], "connection_ack", "{ack}");
    let id = ack["ws_client_id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    (ws, id)
}

/// The next text frame as JSON; `None` when the server closed the socket. The timeout only keeps
/// a broken server from hanging the test run.
async fn next_frame(ws: &mut Socket) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a frame or a close within a minute");
        match msg {
            Some(Ok(Message::Text(t))) => {
                return Some(serde_json::from_str(t.as_str()).expect("JSON frame"));
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn success_frame_carries_the_new_connection() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", "User.Read,Files.Read")
        .await;
    let (mut ws, ws_id) = open(&app).await;
    let (mut other, other_id) = open(&app).await;
    assert_ne!(ws_id, other_id);

    let token = app.session("u", &["one-drive"]).await;
    let authorize = app
        .start_connect("one-drive", &token, &format!("&ws_client_id={ws_id}"))
        .await;
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

    let frame = next_frame(&mut ws).await.expect("a success frame");
    assert_eq!(frame["message_type"], "success", "{frame}");
    assert_eq!(frame["provider_config_key"], "one-drive");
    assert_eq!(frame["is_pending"], false);
    let ids = app.connection_ids("u").await;
    assert_eq!(frame["connection_id"], ids[0].as_str(), "{frame}");
    // Exactly one final frame, then the server forgets the id and closes.
    assert!(next_frame(&mut ws).await.is_none());

    // The other client heard nothing and is still open: its own flow still reaches it. (Megan
    // has not consented yet, so she sees the consent page and cancels.)
    // (The success above ended the session: the other client's flow has its own.)
    let token = app.session("u", &["one-drive"]).await;
    let authorize = app
        .start_connect("one-drive", &token, &format!("&ws_client_id={other_id}"))
        .await;
    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::MEGAN_UPN, seed::PASSWORD)),
            Consent::Cancel,
        )
        .await
        .unwrap();
    let (status, _) = app.deliver(&outcome).await;
    assert_eq!(status, 400);
    let frame = next_frame(&mut other).await.expect("an error frame");
    assert_eq!(frame["message_type"], "error", "{frame}");
    assert_eq!(frame["error_type"], "callback_err");
    let desc = frame["error_desc"].as_str().unwrap();
    assert!(desc.contains("cancelled"), "{desc}");
    assert!(desc.contains("AADSTS65004"), "{desc}");
    assert_eq!(frame["provider_config_key"], "one-drive");
}

#[tokio::test]
async fn error_frame_when_the_flow_cannot_start() {
    let app = TestApp::spawn().await;
    app.create_integration("gone", "User.Read").await;
    let token = app.session("u", &["gone"]).await;
    let r = app.delete("/integrations/gone").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (mut ws, ws_id) = open(&app).await;
    let r = app
        .http
        .get(format!(
            "{}/oauth/connect/gone?connect_session_token={token}&ws_client_id={ws_id}",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("does not exist"), "{html}");
    let frame = next_frame(&mut ws).await.expect("an error frame");
    assert_eq!(frame["message_type"], "error", "{frame}");
    assert_eq!(frame["error_type"], "provider_config_err", "{frame}");
}

#[tokio::test]
async fn a_plain_get_of_the_root_is_not_a_websocket() {
    let app = TestApp::spawn().await;
    let r = app.http.get(format!("{}/", app.url)).send().await.unwrap();
    assert!(r.status().is_redirection() || r.status().is_success());
}

/// Two instances on one PostgreSQL: the WebSocket is held by A, Microsoft's redirect lands on
/// B (as behind a round-robin balancer); B hands the outcome over (`NOTIFY grantd_ws`) and A's
/// socket gets the success frame.
#[tokio::test]
async fn the_outcome_reaches_a_socket_held_by_another_instance_on_postgres() {
    let Some(app) = TestApp::spawn_with(crate::support::app::Opts {
        db: crate::support::db::DbKind::Postgres,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    app.create_integration("one-drive", "User.Read,Files.Read")
        .await;
    // Instance B: same database and config, its own listener and hub.
    let b = grantd::server::AppState::build(app.state.core.config.clone(), None)
        .await
        .unwrap();
    let store = b.core.store();
    let mut events = store.cache_events();
    while !store.cache_live() {
        tokio::time::timeout(Duration::from_secs(10), events.changed())
            .await
            .expect("B's listener connects")
            .unwrap();
    }
    let a_store = app.state.core.store();
    let mut a_events = a_store.cache_events();
    while !a_store.cache_live() {
        tokio::time::timeout(Duration::from_secs(10), a_events.changed())
            .await
            .expect("A's listener connects")
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(grantd::server::start(b, listener, async move {
        let _ = stopped.await;
    }));

    let (mut ws, ws_id) = open(&app).await;
    let token = app.session("u", &["one-drive"]).await;
    let authorize = app
        .start_connect("one-drive", &token, &format!("&ws_client_id={ws_id}"))
        .await;
    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::ADELE_UPN, seed::PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    let grantd_emulator::browser::Outcome::Redirect(callback) = outcome else {
        panic!("expected a redirect to grantd, got {outcome:?}");
    };
    // The callback goes to B instead of A.
    let on_b = callback.as_str().replacen(&app.url, &b_url, 1);
    assert_ne!(on_b, callback.as_str());
    let r = app.http.get(on_b).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let frame = next_frame(&mut ws)
        .await
        .expect("a success frame via instance B");
    assert_eq!(frame["message_type"], "success", "{frame}");
    let ids = app.connection_ids("u").await;
    assert_eq!(frame["connection_id"], ids[0].as_str(), "{frame}");
    let _ = stop.send(());
}

/// grantd with short WebSocket deadlines (`GRANTD_WS_CLAIM_SECS`, `GRANTD_WS_IDLE_SECS`).
async fn spawn_with_ws_limits(
    db: crate::support::db::DbKind,
    claim: u64,
    idle: u64,
) -> Option<TestApp> {
    TestApp::spawn_configured(
        crate::support::app::Opts {
            db,
            ..Default::default()
        },
        |c| {
            c.limits.ws_claim_timeout = Duration::from_secs(claim);
            c.limits.ws_idle_timeout = Duration::from_secs(idle);
        },
    )
    .await
}

/// Waits until the server closes `ws` without sending a frame (the guard in `next_frame` keeps
/// a broken server from hanging the run).
async fn closed_without_frame(ws: &mut Socket) {
    assert_eq!(next_frame(ws).await, None, "closed without a frame");
}

#[tokio::test]
async fn a_socket_no_flow_claims_is_closed_at_the_claim_deadline_a_claimed_one_lives_on() {
    let app = spawn_with_ws_limits(crate::support::db::DbKind::SqliteFile, 1, 3600)
        .await
        .unwrap();
    app.create_integration("one-drive", "User.Read,Files.Read")
        .await;
    let (mut claimed, claimed_id) = open(&app).await;
    let token = app.session("u", &["one-drive"]).await;
    let authorize = app
        .start_connect("one-drive", &token, &format!("&ws_client_id={claimed_id}"))
        .await;
    // Opened after the claimed one, never claimed: closed at its deadline, so the claimed
    // socket's deadline has passed too when this returns.
    let (mut unclaimed, _) = open(&app).await;
    closed_without_frame(&mut unclaimed).await;

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
    let frame = next_frame(&mut claimed)
        .await
        .expect("the claimed socket outlived the claim deadline");
    assert_eq!(frame["message_type"], "success", "{frame}");
}

#[tokio::test]
async fn a_claimed_socket_whose_flow_does_not_end_is_closed_when_idle() {
    let app = spawn_with_ws_limits(crate::support::db::DbKind::SqliteFile, 3600, 1)
        .await
        .unwrap();
    app.create_integration("one-drive", "User.Read").await;
    let (mut ws, id) = open(&app).await;
    let token = app.session("u", &["one-drive"]).await;
    app.start_connect("one-drive", &token, &format!("&ws_client_id={id}"))
        .await;
    // The user never comes back from Microsoft.
    closed_without_frame(&mut ws).await;
}

/// Two instances on one PostgreSQL: the socket is held by A, the flow starts on B (no sticky
/// sessions). At A's claim deadline A finds B's flow in the database and keeps the socket, which
/// then gets the success frame.
#[tokio::test]
async fn a_flow_started_on_another_instance_claims_the_socket_on_postgres() {
    let Some(app) = spawn_with_ws_limits(crate::support::db::DbKind::Postgres, 1, 3600).await
    else {
        return;
    };
    app.create_integration("one-drive", "User.Read,Files.Read")
        .await;
    let b = grantd::server::AppState::build(app.state.core.config.clone(), None)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(grantd::server::start(b, listener, async move {
        let _ = stopped.await;
    }));

    let (mut ws, ws_id) = open(&app).await;
    let token = app.session("u", &["one-drive"]).await;
    let r = app
        .http
        .get(format!(
            "{b_url}/oauth/connect/one-drive?connect_session_token={token}&ws_client_id={ws_id}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the flow starts on B");
    let authorize = r.headers()["location"].to_str().unwrap().to_owned();
    // A later, unclaimed socket on A closes at its deadline: A's first socket's deadline (and
    // its database check) came first.
    let (mut unclaimed, _) = open(&app).await;
    closed_without_frame(&mut unclaimed).await;

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
    let frame = next_frame(&mut ws)
        .await
        .expect("the socket claimed from B is still open");
    assert_eq!(frame["message_type"], "success", "{frame}");
    let _ = stop.send(());
}
