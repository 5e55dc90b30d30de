//! Nango's published `@nangohq/node` SDK against grantd: connects adele through the browser flow
//! (the SDK cannot fill Microsoft's sign-in form), then runs `tests/sdk/nango_node.mjs`, which
//! drives integrations, connect sessions, connections, tokens, metadata, the proxy and the
//! change feed (`listRecords`, `syncStatus`, `triggerSync`, `pauseSync`, `startSync`) through
//! the SDK and asserts what comes back. Without `node` or `tests/sdk/node_modules` (`npm ci` in
//! `tests/sdk`) it prints `SKIPPED: …`; `GRANTD_TEST_NO_SKIP=1` makes that a failure.

use std::path::PathBuf;
use std::process::Stdio;

use grantd_emulator::seed;

use grantd::config::LifecycleConfig;

use crate::feed;
use crate::support::app::{Opts, SECRET, TestApp};
use crate::support::webhook_receiver::Receiver;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk")
}

/// `Some(reason)` when the Node side cannot run here.
fn missing_prerequisite() -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("node is not installed".into());
    }
    if !sdk_dir().join("node_modules/@nangohq/node").is_dir() {
        return Some("tests/sdk/node_modules is missing (run `npm ci` in tests/sdk)".into());
    }
    None
}

#[tokio::test]
async fn nango_node_sdk_works_against_grantd() {
    if let Some(why) = missing_prerequisite() {
        let reason = format!("SKIPPED: {why} (@nangohq/node SDK test)");
        if std::env::var("GRANTD_TEST_NO_SKIP").is_ok_and(|v| v == "1") {
            panic!("{reason}, and GRANTD_TEST_NO_SKIP=1");
        }
        println!("{reason}");
        return;
    }
    let rx = Receiver::spawn().await;
    let app = TestApp::spawn_with(Opts {
        lifecycle: Some(LifecycleConfig {
            webhook_url: Some(url::Url::parse(&rx.url).unwrap()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("SQLite runs");
    app.create_integration("one-drive", "User.Read,Files.ReadWrite.All,Sites.Read.All")
        .await;
    let id = app
        .connect("one-drive", "sdk-end-user", seed::ADELE_UPN)
        .await;
    // The change feed's initial sync, finished before the SDK lists the records.
    let items = feed::drive_walk(&app, &id).await.len() as u64;
    feed::trigger(&app, &id, serde_json::json!({})).await;
    rx.wait_until(|g| feed::total(&feed::sync_hooks(g), 0, "added") >= items)
        .await;

    // One 503 for the SDK's POST to this path: without `Retries` it must come back as is.
    app.emu
        .control()
        .add_fault(&grantd_emulator::faults::FaultSpec {
            path_prefix: Some("/v1.0/me/drive/root:/sdk-no-retry".into()),
            status: Some(503),
            count: Some(1),
            retry_after: Some(0),
            ..grantd_emulator::faults::FaultSpec::new(grantd_emulator::faults::FaultScope::Graph)
        })
        .await
        .unwrap();

    let out = tokio::process::Command::new("node")
        .arg("nango_node.mjs")
        .current_dir(sdk_dir())
        .env("GRANTD_URL", &app.url)
        .env("GRANTD_SECRET_KEY", SECRET)
        .env("GRANTD_INTEGRATION", "one-drive")
        .env("GRANTD_CONNECTION_ID", &id)
        .env("GRANTD_END_USER_ID", "sdk-end-user")
        .env("GRANTD_CLIENT_ID", seed::DEV_CLIENT_ID)
        .env("GRANTD_CLIENT_SECRET", seed::DEV_CLIENT_SECRET)
        .env("GRANTD_RECORD_COUNT", items.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the SDK script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
}
