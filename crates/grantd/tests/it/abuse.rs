//! Abuse tests over real HTTP for the hardening findings (issue 14): `authorization_params`
//! overrides, … Each asserts a clear 4xx and that the service keeps answering.

use serde_json::{Value, json};

use crate::support::app::TestApp;

/// Whether grantd still answers `/health`.
async fn healthy(app: &TestApp) -> bool {
    app.get("/health")
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// A browser cannot override protocol parameters through `authorization_params[…]`: the code
/// would go to another `redirect_uri`, or unconfigured scopes would be asked for.
#[tokio::test]
async fn authorization_params_cannot_override_protocol_parameters() {
    let app = TestApp::spawn().await;
    app.create_integration("files", "User.Read").await;
    let token = app.session("u", &["files"]).await;
    for name in [
        "redirect_uri",
        "state",
        "client_id",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "response_mode",
        "response_type",
        "nonce",
        "Redirect_Uri",
        "resource",
    ] {
        let r = app
            .http
            .get(format!(
                "{}/oauth/connect/files?connect_session_token={token}&authorization_params[{name}]=http%3A%2F%2F127.0.0.1%3A9%2Fx",
                app.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "invalid_authorization_params",
            "{name}: {body}"
        );
    }
    // Harmless hints pass.
    let url = app
        .start_connect(
            "files",
            &token,
            "&authorization_params[login_hint]=a%40b.example",
        )
        .await;
    assert!(url.contains("login_hint=a%40b.example"), "{url}");

    // A session's defaults cannot replace them either: they are dropped from the authorize URL.
    let r = app
        .post(
            "/connect/sessions",
            &json!({
                "end_user": {"id": "v"},
                "allowed_integrations": ["files"],
                "integrations_config_defaults": {"files": {"authorization_params": {
                    "redirect_uri": "http://127.0.0.1:9/x", "scope": "Mail.Read", "prompt": "login"
                }}}
            }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token: Value = r.json().await.unwrap();
    let url = app
        .start_connect("files", token["data"]["token"].as_str().unwrap(), "")
        .await;
    let url = url::Url::parse(&url).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| {
        pairs
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        get("redirect_uri"),
        vec![format!("{}/oauth/callback", app.url)]
    );
    assert!(!get("scope")[0].contains("Mail.Read"), "{url}");
    assert_eq!(get("scope").len(), 1);
    assert_eq!(get("prompt"), vec!["login".to_owned()]);
    assert!(healthy(&app).await);
}
