//! HTTPS and the MSAL fidelity test: spawns the emulator with TLS, checks a rustls client trusts
//! the generated CA, then runs `tests/msal/msal_flow.py` (Microsoft's `msal` for Python) against
//! it. Without `msal` installed the MSAL part prints SKIPPED, unless `GRANTD_TEST_NO_SKIP=1`.

mod common;

use common::*;
use grantd_emulator::EmulatorConfig;
use grantd_emulator::seed::*;

async fn spawn_tls() -> (Emu, std::path::PathBuf) {
    let ca_path =
        std::env::temp_dir().join(format!("grantd-emulator-ca-{}.pem", uuid::Uuid::new_v4()));
    let emu = spawn_with(EmulatorConfig {
        tls: true,
        ca_pem_path: Some(ca_path.clone()),
        ..EmulatorConfig::default()
    })
    .await;
    (emu, ca_path)
}

#[tokio::test]
async fn https_listener_serves_with_the_generated_ca() {
    let (emu, ca_path) = spawn_tls().await;
    let https = emu.handle.https_url.clone().expect("https url");
    assert!(https.starts_with("https://127.0.0.1:"));
    let pem = std::fs::read_to_string(&ca_path).expect("CA written");
    assert_eq!(Some(pem.clone()), emu.handle.ca_pem);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let url = https.replace("127.0.0.1", host);
        let doc: serde_json::Value = client
            .get(format!(
                "{url}/contoso/v2.0/.well-known/openid-configuration"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            doc["issuer"],
            format!("{url}/{CONTOSO_TENANT_ID}/v2.0"),
            "issuer follows the https origin"
        );
    }
    // Untrusted without the CA.
    assert!(
        reqwest::get(format!("{https}/common/discovery/v2.0/keys"))
            .await
            .is_err()
    );
    // Plain HTTP stays available.
    assert_eq!(
        reqwest::get(format!("{}/common/discovery/v2.0/keys", emu.base()))
            .await
            .unwrap()
            .status(),
        200
    );
    // The headless browser works over HTTPS too.
    let b = grantd_emulator::browser::Browser::with_ca(&pem).unwrap();
    let url = emu.authorize_url("common", &[]).replace(emu.base(), &https);
    let out = b
        .authorize(
            &url,
            Some((ADELE_UPN, PASSWORD)),
            grantd_emulator::browser::Consent::Accept,
        )
        .await
        .unwrap();
    assert!(out.code().is_some(), "{out:?}");
    let _ = std::fs::remove_file(ca_path);
}

fn msal_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import msal, requests, jwt"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn msal_python_drives_the_emulator_over_https() {
    if !msal_available() {
        if std::env::var("GRANTD_TEST_NO_SKIP").as_deref() == Ok("1") {
            panic!("msal not installed (pip install msal) and GRANTD_TEST_NO_SKIP=1");
        }
        println!("SKIPPED: msal not installed (pip install msal)");
        return;
    }
    let (emu, ca_path) = spawn_tls().await;
    emu.control
        .grant_admin_consent("contoso", DEV_CLIENT_ID)
        .await
        .unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/msal/msal_flow.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["--base", emu.handle.https_url.as_deref().unwrap()])
        .args(["--tenant", "contoso"])
        .args([
            "--client-id",
            DEV_CLIENT_ID,
            "--client-secret",
            DEV_CLIENT_SECRET,
        ])
        .args(["--user", ADELE_UPN, "--password", PASSWORD])
        .args(["--redirect-uri", "http://localhost:8400/oauth/callback"])
        .env("REQUESTS_CA_BUNDLE", &ca_path)
        .env("SSL_CERT_FILE", &ca_path)
        .output()
        .await
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    let _ = std::fs::remove_file(&ca_path);
    assert!(
        out.status.success() && stdout.contains("MSAL OK"),
        "msal_flow.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let counters = emu.control.counters().await.unwrap();
    assert!(counters.token_requests["authorization_code"] >= 1);
    assert!(counters.token_requests["refresh_token"] >= 2);
    assert!(counters.token_requests["client_credentials"] >= 2);
}
