//! Microsoft's Node libraries, unmodified, against the emulator over HTTPS: `@azure/msal-node`
//! (`tests/emulator-sdk/msal_node.mjs`) and `@microsoft/microsoft-graph-client`
//! (`tests/emulator-sdk/graph_client.mjs`). The CA is trusted through `NODE_EXTRA_CA_CERTS`.
//! Without `node` or `tests/emulator-sdk/node_modules` (`npm ci` there) the tests print
//! `SKIPPED: …`; `GRANTD_TEST_NO_SKIP=1` makes that a failure.
//!
//! Two tests need drive-write behaviour of issue 11 that lands separately and fail naming it
//! until then: `graph_sdk_large_file_upload_task` (upload URLs on another origin than Graph,
//! item 10) and `graph_sdk_delta_sees_rename_and_move` (`PATCH /items/{id}`, item 5).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use grantd_emulator::EmulatorConfig;
use grantd_emulator::control::NewApp;
use grantd_emulator::seed::*;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use sha2::Digest as _;

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/emulator-sdk")
}

/// Why the Node tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not installed".into());
    }
    for pkg in ["@azure/msal-node", "@microsoft/microsoft-graph-client"] {
        if !sdk_dir().join("node_modules").join(pkg).is_dir() {
            return Some(format!(
                "tests/emulator-sdk/node_modules/{pkg} is missing (run `npm ci` in tests/emulator-sdk)"
            ));
        }
    }
    None
}

/// True when the test should go on; prints SKIPPED (or panics under GRANTD_TEST_NO_SKIP=1).
fn available(what: &str) -> bool {
    let Some(why) = missing() else { return true };
    let reason = format!("SKIPPED: {why} ({what})");
    if std::env::var("GRANTD_TEST_NO_SKIP").is_ok_and(|v| v == "1") {
        panic!("{reason}, and GRANTD_TEST_NO_SKIP=1");
    }
    println!("{reason}");
    false
}

struct Tls {
    emu: Emu,
    ca_path: PathBuf,
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_path);
    }
}

async fn spawn_tls() -> Tls {
    let ca_path = std::env::temp_dir().join(format!(
        "grantd-emulator-node-ca-{}.pem",
        uuid::Uuid::new_v4()
    ));
    let emu = spawn_with(EmulatorConfig {
        tls: true,
        ca_pem_path: Some(ca_path.clone()),
        ..EmulatorConfig::default()
    })
    .await;
    Tls { emu, ca_path }
}

/// Runs `node {script} {args…}` (space separated) in tests/emulator-sdk with `env`; asserts it printed `ok_line`.
async fn run_node(tls: &Tls, script: &str, env: &[(&str, String)], ok_line: &str) {
    let mut cmd = tokio::process::Command::new("node");
    cmd.args(script.split(' '))
        .current_dir(sdk_dir())
        .env("NODE_EXTRA_CA_CERTS", &tls.ca_path)
        .env(
            "EMU_HTTPS",
            tls.emu.handle.https_url.clone().expect("https"),
        )
        .env("EMU_CONTROL", format!("{}/_emulator", tls.emu.base()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(ok_line),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[tokio::test]
async fn msal_node_drives_the_emulator_over_https() {
    if !available("@azure/msal-node test") {
        return;
    }
    let tls = spawn_tls().await;
    let emu = &tls.emu;
    // Client credentials in contoso with the dev app (home tenant fabrikam) need admin consent.
    emu.control
        .grant_admin_consent("contoso", DEV_CLIENT_ID)
        .await
        .unwrap();
    // A certificate app for the private_key_jwt part.
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pkcs8 = key.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8.as_bytes().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let cert = rcgen::CertificateParams::new(vec!["msal-node-test".to_owned()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let mut app = NewApp::new("msal-node cert app");
    app.home_tenant = Some("contoso".into());
    app.certificates = vec![cert.pem()];
    app.application_permissions = vec!["Files.Read.All".into()];
    let app = emu.control.register_app(&app).await.unwrap();
    emu.control
        .grant_admin_consent("contoso", &app.client_id)
        .await
        .unwrap();
    let key_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let der = cert.der().to_vec();
    run_node(
        &tls,
        "msal_node.mjs",
        &[
            ("EMU_TENANT", "contoso".into()),
            ("EMU_CLIENT_ID", DEV_CLIENT_ID.into()),
            ("EMU_CLIENT_SECRET", DEV_CLIENT_SECRET.into()),
            ("EMU_USER", ADELE_UPN.into()),
            ("EMU_PASSWORD", PASSWORD.into()),
            (
                "EMU_REDIRECT",
                "http://localhost:8400/oauth/callback".into(),
            ),
            ("EMU_CERT_CLIENT_ID", app.client_id.clone()),
            ("EMU_CERT_KEY_PEM", key_pem),
            (
                "EMU_CERT_SHA1_HEX",
                hex::encode_upper(<sha1::Sha1 as sha1::Digest>::digest(&der)),
            ),
            (
                "EMU_CERT_SHA256_HEX",
                hex::encode_upper(sha2::Sha256::digest(&der)),
            ),
        ],
        "MSAL NODE OK",
    )
    .await;
    let c = emu.control.counters().await.unwrap();
    assert!(c.token_requests["authorization_code"] >= 1, "{c:?}");
    // Two forced refreshes that worked, one refused after the revocation.
    assert!(c.token_requests["refresh_token"] >= 3, "{c:?}");
    assert!(c.token_requests["client_credentials"] >= 3, "{c:?}");
}

/// A Graph token for Adele (read-write), over plain HTTP: tokens do not depend on the origin.
async fn graph_token(emu: &Emu) -> String {
    emu.tokens_for(
        ADELE_UPN,
        "openid profile offline_access User.Read Files.ReadWrite.All",
    )
    .await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

#[tokio::test]
async fn graph_sdk_pages_deltas_and_retries() {
    if !available("@microsoft/microsoft-graph-client test") {
        return;
    }
    let tls = spawn_tls().await;
    let token = graph_token(&tls.emu).await;
    run_node(
        &tls,
        "graph_client.mjs core",
        &[("EMU_TOKEN", token)],
        "GRAPH CORE OK",
    )
    .await;
}

/// Rename and move through `PATCH /me/drive/items/{id}` seen by a delta round. Written against
/// Graph's documented PATCH shape: until the emulator has that route, this fails naming it.
/// OneDriveLargeFileUploadTask of 25 MB with its default configuration. Needs upload URLs on
/// another origin than Graph (as production's are), or the SDK sends its token there.
#[tokio::test]
async fn graph_sdk_large_file_upload_task() {
    if !available("@microsoft/microsoft-graph-client test") {
        return;
    }
    let tls = spawn_tls().await;
    let token = graph_token(&tls.emu).await;
    run_node(
        &tls,
        "graph_client.mjs upload",
        &[("EMU_TOKEN", token)],
        "GRAPH UPLOAD OK",
    )
    .await;
}

#[tokio::test]
async fn graph_sdk_delta_sees_rename_and_move() {
    if !available("@microsoft/microsoft-graph-client test") {
        return;
    }
    let tls = spawn_tls().await;
    let token = graph_token(&tls.emu).await;
    run_node(
        &tls,
        "graph_client.mjs rename-move",
        &[("EMU_TOKEN", token)],
        "GRAPH RENAME MOVE OK",
    )
    .await;
}
