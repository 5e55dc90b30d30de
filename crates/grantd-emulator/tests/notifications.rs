//! Change notifications over real HTTP: a small axum receiver stands in for the subscriber. It
//! answers the validation handshake and forwards every notification to a channel the test waits
//! on (generous timeouts, no sleeps). Covers Graph's subscription rules, a user edit made through
//! the control API producing one notification, renewal, lifecycle events (reauthorization before
//! expiry and after a revoke, removal at expiry, `missed` after a dropped notification), retries
//! after an injected 503, and the counters.

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use grantd_emulator::EmulatorConfig;
use grantd_emulator::actions::UserAction;
use grantd_emulator::faults::{FaultScope, FaultSpec};
use grantd_emulator::seed::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const RW: &str = "openid profile offline_access User.Read Files.ReadWrite.All Sites.Read.All";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone)]
struct Receiver {
    changes: mpsc::UnboundedSender<Value>,
    lifecycle: mpsc::UnboundedSender<Value>,
}

#[derive(serde::Deserialize)]
struct Validation {
    #[serde(rename = "validationToken")]
    validation_token: Option<String>,
}

fn handshake_or(q: &Validation, body: &[u8], tx: &mpsc::UnboundedSender<Value>) -> Response {
    if let Some(token) = &q.validation_token {
        return (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "text/plain")],
            token.clone(),
        )
            .into_response();
    }
    let v: Value = serde_json::from_slice(body).expect("notification JSON");
    let _ = tx.send(v);
    StatusCode::ACCEPTED.into_response()
}

async fn hook(
    State(r): State<Receiver>,
    Query(q): Query<Validation>,
    body: axum::body::Bytes,
) -> Response {
    handshake_or(&q, &body, &r.changes)
}

async fn lifecycle(
    State(r): State<Receiver>,
    Query(q): Query<Validation>,
    body: axum::body::Bytes,
) -> Response {
    handshake_or(&q, &body, &r.lifecycle)
}

/// Answers the handshake with the wrong body.
async fn bad_echo(Query(_): Query<Validation>) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "text/plain")],
        "not the token",
    )
        .into_response()
}

struct Hooks {
    base: String,
    changes: mpsc::UnboundedReceiver<Value>,
    lifecycle: mpsc::UnboundedReceiver<Value>,
}

async fn receiver() -> Hooks {
    let (ctx, crx) = mpsc::unbounded_channel();
    let (ltx, lrx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/lifecycle", post(lifecycle))
        .route("/bad", post(bad_echo))
        .with_state(Receiver {
            changes: ctx,
            lifecycle: ltx,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("receiver");
    });
    Hooks {
        base,
        changes: crx,
        lifecycle: lrx,
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a notification within the timeout")
        .expect("channel open")
}

/// The next lifecycle notification with `event` (others are skipped).
async fn next_event(rx: &mut mpsc::UnboundedReceiver<Value>, event: &str) -> Value {
    loop {
        let v = next(rx).await;
        if v["value"][0]["lifecycleEvent"] == event {
            return v["value"][0].clone();
        }
    }
}

async fn graph(
    emu: &Emu,
    method: Method,
    t: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = emu
        .http
        .request(method, format!("{}/v1.0{path}", emu.base()))
        .bearer_auth(t);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("graph request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn big_name() -> &'static str {
    grantd_emulator::graph::BIG_FILE
}

async fn now(emu: &Emu) -> DateTime<Utc> {
    let c = emu.control.clock().await.expect("clock");
    DateTime::parse_from_rfc3339(&c.now_rfc3339)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn spawn_fast() -> Emu {
    let emu = spawn_with(EmulatorConfig {
        notification_delay_ms: Some(50),
        // Tokens outlive the clock jumps below.
        access_token_lifetime: Some(10 * 86_400),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = emu.control.notification_settings().await.expect("settings");
    assert_eq!(s.batch_delay_ms, 50);
    s.retry_base_ms = 20;
    emu.control
        .set_notification_settings(&s)
        .await
        .expect("set settings");
    emu
}

#[tokio::test]
async fn subscription_rules_and_validation_handshake() {
    let emu = spawn_fast().await;
    let hooks = receiver().await;
    let t = emu.tokens_for(ADELE_UPN, RW).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let in_a_day = at(now(&emu).await + TimeDelta::days(1));
    let sub = |resource: &str, change: &str, url: &str, exp: &str| {
        json!({
            "changeType": change,
            "notificationUrl": url,
            "resource": resource,
            "expirationDateTime": exp,
            "clientState": "s3cret",
        })
    };
    let hook = format!("{}/hook", hooks.base);
    let post = |body: Value| {
        let (emu, t) = (&emu, &t);
        async move { graph(emu, Method::POST, t, "/subscriptions", Some(body)).await }
    };
    // Only `updated` on drives.
    let (st, b) = post(sub("/me/drive/root", "created", &hook, &in_a_day)).await;
    assert_eq!(st, 400, "{b}");
    // Longer than 42,300 minutes.
    let too_long = at(now(&emu).await + TimeDelta::minutes(42_300 + 5));
    let (st, b) = post(sub("/me/drive/root", "updated", &hook, &too_long)).await;
    assert_eq!(st, 400, "{b}");
    // https required except for loopback hosts.
    let (st, b) = post(sub(
        "/me/drive/root",
        "updated",
        "http://example.com/hook",
        &in_a_day,
    ))
    .await;
    assert_eq!(st, 400, "{b}");
    // Business drives: only the root.
    let (st, b) = post(sub(
        "/me/drive/root:/Documents",
        "updated",
        &hook,
        &in_a_day,
    ))
    .await;
    assert_eq!(st, 400, "{b}");
    // A wrong echo fails the handshake.
    let (st, b) = post(sub(
        "/me/drive/root",
        "updated",
        &format!("{}/bad", hooks.base),
        &in_a_day,
    ))
    .await;
    assert_eq!(st, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("validation"),
        "{b}"
    );
    // Read-only delegated token → 403; app-only without Files.ReadWrite.All → 403. Megan: a token
    // carries every scope its user consented to, and Adele consented to Files.ReadWrite.All above.
    let ro = emu
        .tokens_for(MEGAN_UPN, "openid User.Read Files.Read")
        .await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (st, b) = graph(
        &emu,
        Method::POST,
        &ro,
        "/subscriptions",
        Some(sub("/me/drive/root", "updated", &hook, &in_a_day)),
    )
    .await;
    assert_eq!(st, 403, "{b}");
    emu.control
        .grant_admin_consent(CONTOSO_TENANT_ID, DEV_CLIENT_ID)
        .await
        .expect("consent");
    let (s, app) = emu
        .token(
            CONTOSO_TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", DEV_CLIENT_ID),
                ("client_secret", DEV_CLIENT_SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{app}");
    let (st, b) = graph(
        &emu,
        Method::POST,
        app["access_token"].as_str().expect("app token"),
        "/subscriptions",
        Some(sub(
            &format!("/users/{ADELE_ID}/drive/root"),
            "updated",
            &hook,
            &in_a_day,
        )),
    )
    .await;
    assert_eq!(st, 403, "{b}");

    // The three resource spellings work.
    let drive_id = graph(&emu, Method::GET, &t, "/me/drive", None).await.1["id"]
        .as_str()
        .expect("drive id")
        .to_owned();
    for resource in [
        "/me/drive/root".to_owned(),
        format!("/drives/{drive_id}/root"),
        format!("users/{ADELE_UPN}/drive/root"),
    ] {
        let (st, b) = post(sub(&resource, "updated", &hook, &in_a_day)).await;
        assert_eq!(st, 201, "{resource}: {b}");
        assert_eq!(b["resource"], resource.as_str());
        assert_eq!(b["changeType"], "updated");
        assert_eq!(b["clientState"], "s3cret");
        assert_eq!(b["applicationId"], DEV_CLIENT_ID);
        assert_eq!(b["creatorId"], ADELE_ID);
    }
    // Personal OneDrive: any folder, never a file.
    let sam = emu
        .tokens_for(SAM_UPN, "openid offline_access User.Read Files.ReadWrite")
        .await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let folder = graph(&emu, Method::GET, &sam, "/me/drive/root/children", None)
        .await
        .1["value"]
        .as_array()
        .expect("children")
        .iter()
        .find(|i| i["folder"].is_object())
        .expect("a seeded folder")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (st, b) = graph(
        &emu,
        Method::POST,
        &sam,
        "/subscriptions",
        Some(sub(
            &format!("/me/drive/items/{folder}"),
            "updated",
            &hook,
            &in_a_day,
        )),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = graph(
        &emu,
        Method::POST,
        &sam,
        "/subscriptions",
        Some(sub(
            &format!("/me/drive/root:/{}", big_name()),
            "updated",
            &hook,
            &in_a_day,
        )),
    )
    .await;
    assert_eq!(st, 400, "{b}");
    // Adele does not see Sam's subscription.
    let (st, list) = graph(&emu, Method::GET, &t, "/subscriptions", None).await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["value"].as_array().expect("value").len(), 3);
    assert_eq!(emu.control.subscriptions().await.expect("subs").len(), 4);
}

#[tokio::test]
async fn subscription_round_trip() {
    let emu = spawn_fast().await;
    let mut hooks = receiver().await;
    let t = emu.tokens_for(ADELE_UPN, RW).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let expires = now(&emu).await + TimeDelta::days(1);
    let (st, sub) = graph(
        &emu,
        Method::POST,
        &t,
        "/subscriptions",
        Some(json!({
            "changeType": "updated",
            "notificationUrl": format!("{}/hook", hooks.base),
            "lifecycleNotificationUrl": format!("{}/lifecycle", hooks.base),
            "resource": "/me/drive/root",
            "expirationDateTime": at(expires),
            "clientState": "s3cret",
        })),
    )
    .await;
    assert_eq!(st, 201, "{sub}");
    let id = sub["id"].as_str().expect("id").to_owned();

    // Several edits in one go → one notification with Graph's body.
    let edits = emu
        .control
        .random_edits(ADELE_UPN, 5, 42)
        .await
        .expect("random edits");
    assert!(!edits.actions.is_empty());
    let n = next(&mut hooks.changes).await;
    let value = n["value"].as_array().expect("value");
    assert_eq!(value.len(), 1, "{n}");
    let v = &value[0];
    assert_eq!(v["subscriptionId"], id.as_str());
    assert_eq!(v["changeType"], "updated");
    assert_eq!(v["clientState"], "s3cret");
    assert_eq!(v["resource"], "/me/drive/root");
    assert_eq!(v["tenantId"], CONTOSO_TENANT_ID);
    assert!(v["subscriptionExpirationDateTime"].is_string());

    // A single web-UI edit → the next notification; exactly two change deliveries so far.
    let r = emu
        .control
        .user_action(
            ADELE_UPN,
            &UserAction::CreateFile {
                path: "Notes/today.txt".into(),
                content: "hello".into(),
            },
        )
        .await
        .expect("user action");
    assert_eq!(r.path, "Notes/today.txt");
    let n = next(&mut hooks.changes).await;
    assert_eq!(n["value"][0]["subscriptionId"], id.as_str());
    let changes: Vec<_> = emu
        .control
        .deliveries_after(2)
        .await
        .expect("deliveries")
        .into_iter()
        .filter(|d| d.kind == "change")
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.iter().all(|d| d.outcome == "delivered"));
    // A delta after the notification sees the edit.
    let (st, page) = graph(
        &emu,
        Method::GET,
        &t,
        "/me/drive/root:/Notes/today.txt",
        None,
    )
    .await;
    assert_eq!(st, 200, "{page}");

    // An injected 503 is retried; the notification still arrives.
    emu.control
        .add_fault(&FaultSpec {
            status: Some(503),
            count: Some(1),
            ..FaultSpec::new(FaultScope::Notifications)
        })
        .await
        .expect("fault");
    emu.control
        .user_action(
            ADELE_UPN,
            &UserAction::Delete {
                path: "Notes/today.txt".into(),
            },
        )
        .await
        .expect("delete");
    next(&mut hooks.changes).await;
    // Recorded so far: 2 delivered, 1 retrying (503), 1 delivered.
    let log = emu.control.deliveries_after(4).await.expect("deliveries");
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(
        log.iter()
            .any(|d| d.outcome == "retrying" && d.status == Some(503)),
        "{log:?}"
    );

    // A dropped notification is counted and answered with a `missed` lifecycle event.
    let before = emu.control.notification_counters().await.expect("counters");
    emu.control
        .add_fault(&FaultSpec {
            down: true,
            count: Some(1),
            path_prefix: Some(format!("{}/hook", hooks.base)),
            ..FaultSpec::new(FaultScope::Notifications)
        })
        .await
        .expect("fault");
    emu.control
        .user_action(
            ADELE_UPN,
            &UserAction::CreateFolder {
                path: "Dropped".into(),
            },
        )
        .await
        .expect("create folder");
    let missed = next_event(&mut hooks.lifecycle, "missed").await;
    assert_eq!(missed["subscriptionId"], id.as_str());
    assert_eq!(missed["clientState"], "s3cret");
    // Recorded: the dropped one and the lifecycle POST.
    let log = emu.control.deliveries_after(6).await.expect("deliveries");
    assert_eq!(log[4].outcome, "dropped", "{log:?}");
    assert_eq!(log[5].kind, "missed", "{log:?}");
    let after = emu.control.notification_counters().await.expect("counters");
    assert_eq!(after.dropped, before.dropped + 1);
    assert_eq!(
        after.delivered,
        before.delivered + 1,
        "only the lifecycle POST"
    );
    assert!(after.sent >= 4 && after.delivered >= 4, "{after:?}");
    assert!(after.failed >= 1, "{after:?}");

    // Renew: beyond the maximum → 400; two days → 200.
    let (st, b) = graph(
        &emu,
        Method::PATCH,
        &t,
        &format!("/subscriptions/{id}"),
        Some(json!({"expirationDateTime": at(now(&emu).await + TimeDelta::days(40))})),
    )
    .await;
    assert_eq!(st, 400, "{b}");
    let renewed_to = now(&emu).await + TimeDelta::days(2);
    let (st, b) = graph(
        &emu,
        Method::PATCH,
        &t,
        &format!("/subscriptions/{id}"),
        Some(json!({"expirationDateTime": at(renewed_to)})),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let (_, got) = graph(&emu, Method::GET, &t, &format!("/subscriptions/{id}"), None).await;
    assert_eq!(got["expirationDateTime"], b["expirationDateTime"]);

    // Near expiry on the emulator clock → reauthorizationRequired.
    emu.control
        .advance_clock(2 * 86_400 - 30 * 60)
        .await
        .expect("advance");
    let reauth = next_event(&mut hooks.lifecycle, "reauthorizationRequired").await;
    assert_eq!(reauth["subscriptionId"], id.as_str());

    // Past expiry → removed (subscriptionRemoved), gone from Graph and the control API.
    emu.control.advance_clock(3600).await.expect("advance");
    let removed = next_event(&mut hooks.lifecycle, "subscriptionRemoved").await;
    assert_eq!(removed["subscriptionId"], id.as_str());
    let (st, _) = graph(&emu, Method::GET, &t, &format!("/subscriptions/{id}"), None).await;
    assert_eq!(st, 404);
    assert!(emu.control.subscriptions().await.expect("subs").is_empty());
}

#[tokio::test]
async fn revoking_the_creator_asks_for_reauthorization_and_delete_stops_delivery() {
    let emu = spawn_fast().await;
    let mut hooks = receiver().await;
    let t = emu.tokens_for(MEGAN_UPN, RW).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (st, sub) = graph(
        &emu,
        Method::POST,
        &t,
        "/subscriptions",
        Some(json!({
            "changeType": "updated",
            "notificationUrl": format!("{}/hook", hooks.base),
            "lifecycleNotificationUrl": format!("{}/lifecycle", hooks.base),
            "resource": "/me/drive/root",
            "expirationDateTime": at(now(&emu).await + TimeDelta::days(3)),
        })),
    )
    .await;
    assert_eq!(st, 201, "{sub}");
    let id = sub["id"].as_str().expect("id").to_owned();
    emu.control.revoke_user(MEGAN_UPN).await.expect("revoke");
    let reauth = next_event(&mut hooks.lifecycle, "reauthorizationRequired").await;
    assert_eq!(reauth["subscriptionId"], id.as_str());
    assert!(reauth["clientState"].is_null());

    // The control API can trigger lifecycle events directly too.
    assert!(
        emu.control
            .send_lifecycle(&id, "missed")
            .await
            .expect("missed")
    );
    next_event(&mut hooks.lifecycle, "missed").await;

    // DELETE by the client: gone, nothing more is sent for it.
    let (st, _) = graph(
        &emu,
        Method::DELETE,
        &t,
        &format!("/subscriptions/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    assert!(emu.control.subscriptions().await.expect("subs").is_empty());
    let (st, _) = graph(&emu, Method::GET, &t, &format!("/subscriptions/{id}"), None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn app_only_subscription_with_files_read_write_all() {
    use grantd_emulator::control::NewApp;
    use grantd_emulator::directory::ClientSecret;
    let emu = spawn_fast().await;
    let mut hooks = receiver().await;
    let mut app = NewApp::new("sync daemon");
    app.home_tenant = Some("contoso".into());
    app.application_permissions = vec!["Files.ReadWrite.All".into()];
    app.secrets = vec![ClientSecret {
        value: "daemon-secret".into(),
        expires_at: None,
    }];
    let app = emu.control.register_app(&app).await.expect("app");
    emu.control
        .grant_admin_consent(CONTOSO_TENANT_ID, &app.client_id)
        .await
        .expect("consent");
    let (s, tok) = emu
        .token(
            CONTOSO_TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &app.client_id),
                ("client_secret", "daemon-secret"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{tok}");
    let t = tok["access_token"].as_str().expect("token").to_owned();
    let (st, b) = graph(
        &emu,
        Method::POST,
        &t,
        "/subscriptions",
        Some(json!({
            "changeType": "updated",
            "notificationUrl": format!("{}/hook", hooks.base),
            "resource": format!("/users/{ADELE_ID}/drive/root"),
            "expirationDateTime": at(now(&emu).await + TimeDelta::hours(6)),
        })),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["applicationId"], app.client_id.as_str());
    emu.control
        .user_action(
            ADELE_UPN,
            &UserAction::CreateFile {
                path: "from-web.txt".into(),
                content: "x".into(),
            },
        )
        .await
        .expect("edit");
    let n = next(&mut hooks.changes).await;
    assert_eq!(n["value"][0]["subscriptionId"], b["id"]);
    assert!(n["value"][0]["clientState"].is_null());
    // The app lists its subscription.
    let (_, list) = graph(&emu, Method::GET, &t, "/subscriptions", None).await;
    assert_eq!(list["value"].as_array().expect("value").len(), 1);
}
