//! Control API and fault injection over real HTTP.

mod common;

use common::*;
use grantd_emulator::faults::{FaultScope, FaultSpec};
use grantd_emulator::seed::*;

fn cc() -> Vec<(&'static str, &'static str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", DEV_CLIENT_ID),
        ("client_secret", DEV_CLIENT_SECRET),
        ("scope", "https://graph.microsoft.com/.default"),
    ]
}

#[tokio::test]
async fn token_faults_for_the_next_n_requests_with_retry_after() {
    let emu = spawn().await;
    emu.control
        .add_fault(&FaultSpec {
            status: Some(503),
            retry_after: Some(7),
            count: Some(2),
            ..FaultSpec::new(FaultScope::Token)
        })
        .await
        .unwrap();
    for _ in 0..2 {
        let resp = emu
            .http
            .post(format!("{}/fabrikam/oauth2/v2.0/token", emu.base()))
            .form(&cc())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "7");
        let b: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(b["error"], "temporarily_unavailable");
    }
    let (s, b) = emu.token("fabrikam", &cc()).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        emu.control.faults().await.unwrap().is_empty(),
        "count-limited rule removed"
    );
    // Requests answered by a fault are counted too: two faulted, one served.
    assert_eq!(
        emu.control.counters().await.unwrap().token_requests["client_credentials"],
        3
    );
}

#[tokio::test]
async fn graph_429_with_path_prefix_and_down_and_clear() {
    let emu = spawn().await;
    emu.control
        .add_fault(&FaultSpec {
            status: Some(429),
            retry_after: Some(3),
            path_prefix: Some("/v1.0/me".into()),
            ..FaultSpec::new(FaultScope::Graph)
        })
        .await
        .unwrap();
    let resp = emu
        .http
        .get(format!("{}/v1.0/me/drive", emu.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    let b: serde_json::Value = resp.json().await.unwrap();
    // A drive path: throttled the way the drive API does it.
    assert_eq!(b["error"]["code"], "activityLimitReached");
    assert_eq!(b["error"]["innerError"]["code"], "throttledRequest");
    // Not under the prefix: reaches Graph (401 without a token), and the token endpoint is untouched.
    let resp = emu
        .http
        .get(format!("{}/v1.0/drives/x", emu.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(emu.token("fabrikam", &cc()).await.0, 200);
    emu.control.clear_faults().await.unwrap();
    assert_eq!(
        emu.http
            .get(format!("{}/v1.0/me/drive", emu.base()))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // "down": the connection is dropped, the client sees a transport error.
    emu.control
        .add_fault(&FaultSpec {
            down: true,
            count: Some(1),
            ..FaultSpec::new(FaultScope::Token)
        })
        .await
        .unwrap();
    let r = async {
        emu.http
            .post(format!("{}/fabrikam/oauth2/v2.0/token", emu.base()))
            .form(&cc())
            .send()
            .await?
            .bytes()
            .await
    };
    assert!(r.await.is_err(), "down must not yield a complete response");
    assert_eq!(emu.token("fabrikam", &cc()).await.0, 200);
    // Percentages: 0% never fires, 100% always does.
    emu.control
        .add_fault(&FaultSpec {
            status: Some(500),
            percent: Some(0),
            ..FaultSpec::new(FaultScope::All)
        })
        .await
        .unwrap();
    assert_eq!(emu.token("fabrikam", &cc()).await.0, 200);
    emu.control.clear_faults().await.unwrap();
    emu.control
        .add_fault(&FaultSpec {
            status: Some(500),
            percent: Some(100),
            ..FaultSpec::new(FaultScope::All)
        })
        .await
        .unwrap();
    assert_eq!(emu.token("fabrikam", &cc()).await.0, 500);
    // The control API itself is never faulted.
    emu.control.clear_faults().await.unwrap();
}

#[tokio::test]
async fn clock_counters_apps_and_reset() {
    let emu = spawn().await;
    let t0 = emu.control.clock().await.unwrap().now;
    let t1 = emu.control.advance_clock(86400).await.unwrap().now;
    assert!(t1 - t0 >= 86400 && t1 - t0 < 86460);
    emu.token("fabrikam", &cc()).await;
    assert_eq!(
        emu.control
            .counters()
            .await
            .unwrap()
            .token_requests_by_client[DEV_CLIENT_ID],
        1
    );
    emu.control.reset_counters().await.unwrap();
    assert!(
        emu.control
            .counters()
            .await
            .unwrap()
            .token_requests
            .is_empty()
    );
    let mut app = grantd_emulator::control::NewApp::new("runtime app");
    app.secrets = vec![grantd_emulator::directory::ClientSecret {
        value: "rt~secret".into(),
        expires_at: None,
    }];
    let app = emu.control.register_app(&app).await.unwrap();
    assert_eq!(
        emu.control.app(&app.client_id).await.unwrap().display_name,
        "runtime app"
    );
    let (s, b) = emu
        .token(
            "contoso",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &app.client_id),
                ("client_secret", "rt~secret"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 200, "home tenant: {b}");
    assert!(
        emu.control
            .register_app(&grantd_emulator::control::NewApp {
                client_id: Some(app.client_id.clone()),
                ..grantd_emulator::control::NewApp::new("dup")
            })
            .await
            .is_err()
    );
    emu.control.set_strict_rotation(true).await.unwrap();
    emu.control.reset().await.unwrap();
    assert!(
        emu.control.app(&app.client_id).await.is_err(),
        "reset drops run-time apps"
    );
    let after = emu.control.clock().await.unwrap().now;
    assert!(after < t1, "reset rewinds the clock");
    assert!(emu.control.revoke_user("nobody@nowhere").await.is_err());
}
