//! `GET /connections/{id}` serves a body rendered once per connection version, with only
//! `last_fetched_at` written per call (`api::fetch_body`). Every answer here is compared byte for
//! byte with the body rendered the plain way — `api::connections::fetch_value` through
//! serde_json — for the connection the server holds and the answer's own `last_fetched_at`:
//! with and without `connection_config`, metadata and raw token response, with and without
//! `refresh_token=true`, before and after refreshes (forced and expiry-driven), metadata writes
//! (POST and PATCH, current and deprecated routes), a connection patch, and across a delete
//! (404) and a new connection under the same id.

use grantd::api::connections::fetch_value;
use grantd::connections::CredentialsOpts;
use grantd::model::{ConnectionId, ProviderConfigKey};
use grantd_emulator::seed;
use serde_json::{Value, json};

use crate::support::app::TestApp;

/// `GET /connections/{id}` answered 200 and identical to the plain rendering; its JSON.
async fn fetch_checked(app: &TestApp, key: &str, id: &str, query: &str) -> Value {
    let r = app
        .get(&format!(
            "/connections/{id}?provider_config_key={key}{query}"
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    let served = r.bytes().await.unwrap().to_vec();
    let served = String::from_utf8(served).unwrap();
    assert_eq!(status, 200, "{served}");
    assert_eq!(content_type, "application/json");
    let v: Value = serde_json::from_str(&served).unwrap();
    let last_fetched_at = v["last_fetched_at"].as_str().unwrap().to_owned();
    let with_rt = query.contains("refresh_token=true");
    // The version the server holds now (the one it answered with: nothing wrote in between).
    let fresh = app
        .state
        .core
        .credentials(
            &ProviderConfigKey::parse(key).unwrap(),
            &ConnectionId::parse(id).unwrap(),
            CredentialsOpts::default(),
        )
        .await
        .unwrap();
    let plain = serde_json::to_string(&fetch_value(
        &fresh.connection,
        &fresh.integration,
        fresh.provider,
        with_rt,
        Some(last_fetched_at),
    ))
    .unwrap();
    assert_eq!(served, plain, "{key}/{id}{query}");
    v
}

/// Fetches twice (the second is served from the kept body), a second apart: both identical to
/// the plain rendering, and differing only in `last_fetched_at`.
async fn fetch_twice(app: &TestApp, key: &str, id: &str, query: &str) -> Value {
    let first = fetch_checked(app, key, id, query).await;
    app.clock.advance(1);
    let mut second = fetch_checked(app, key, id, query).await;
    assert_ne!(first["last_fetched_at"], second["last_fetched_at"]);
    second["last_fetched_at"] = first["last_fetched_at"].clone();
    assert_eq!(first, second);
    first
}

async fn import(app: &TestApp, body: Value) {
    let r = app.post("/connections", &body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

const QUERIES: [&str; 5] = [
    "",
    "&refresh_token=true",
    "&refresh_token=false&force_refresh=false",
    "&refresh_github_app_jwt_token=true",
    "&refresh_token=true",
];

#[tokio::test]
async fn connections_fetch_serves_the_plain_rendering_of_imported_connections() {
    let app = TestApp::spawn().await;
    app.create_integration("od", "offline_access,User.Read")
        .await;
    // Nothing but a token: no connection_config, no metadata, an empty raw response.
    import(
        &app,
        json!({"provider_config_key": "od", "connection_id": "bare",
               "credentials": {"type": "OAUTH2", "access_token": "tok-bare", "raw": {}}}),
    )
    .await;
    // Everything, with strings that need escaping and refresh tokens at several depths.
    import(
        &app,
        json!({
            "provider_config_key": "od",
            "connection_id": "full",
            "credentials": {
                "type": "OAUTH2", "access_token": "tok-full\"é", "refresh_token": "rt-full",
                "expires_at": "2099-01-01T00:00:00.123Z",
                "raw": {"access_token": "tok-full\"é", "refresh_token": "rt-full", "scope": "a b\n",
                        "nested": {"refreshToken": "rt-2", "list": [{"Refresh-Token": "rt-3"}, 1.5, null]}},
            },
            "connection_config": {"tenantId": seed::CONTOSO_TENANT_ID, "refresh_token": "rt-4",
                                  "deep": {"refresh_token": "rt-5", "k\"": "\u{1}"},
                                  "sharepointTokenStatus": "ok"},
            "metadata": {"drives": ["a", "b"], "note": "line\nbreak ✓", "n": -0.5},
            "end_user": {"id": "eu-1", "email": "eu@example.com", "display_name": "E U", "tags": {"team": "x"}},
            "tags": {"Plan": "pro"},
        }),
    )
    .await;
    // Only a token without raw: grantd builds the raw response itself.
    import(
        &app,
        json!({"provider_config_key": "od", "connection_id": "no-raw",
               "credentials": {"type": "OAUTH2", "access_token": "tok-3", "expires_at": "2099-01-01T00:00:00Z"}}),
    )
    .await;
    for id in ["bare", "full", "no-raw"] {
        for q in QUERIES {
            fetch_twice(&app, "od", id, q).await;
        }
    }
    let full = fetch_checked(&app, "od", "full", "").await;
    assert!(!full.to_string().contains("rt-"), "{full}");
    let with = fetch_checked(&app, "od", "full", "&refresh_token=true").await;
    for rt in ["rt-full", "rt-2", "rt-3", "rt-4", "rt-5"] {
        assert!(with.to_string().contains(rt), "{rt}: {with}");
    }

    // Metadata: replaced (POST), merged (PATCH), on the current and the deprecated routes.
    let writes = [
        (
            reqwest::Method::POST,
            "/connections/metadata",
            json!({"provider_config_key": "od", "connection_id": "full", "metadata": {"only": 1}}),
        ),
        (
            reqwest::Method::PATCH,
            "/connections/metadata",
            json!({"provider_config_key": "od", "connection_id": ["full", "bare"], "metadata": {"more": "x\"y"}}),
        ),
        (
            reqwest::Method::POST,
            "/connection/full/metadata?provider_config_key=od",
            json!({"replaced": true}),
        ),
        (
            reqwest::Method::PATCH,
            "/connection/full/metadata?provider_config_key=od",
            json!({"merged": [1, 2]}),
        ),
    ];
    let mut expected = json!({});
    for (method, path, body) in writes {
        let r = app
            .http
            .request(method.clone(), format!("{}{path}", app.url))
            .bearer_auth(crate::support::app::SECRET)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{method} {path}: {}", r.status());
        let m = body.get("metadata").cloned().unwrap_or(body);
        if method == reqwest::Method::POST {
            expected = m;
        } else {
            for (k, v) in m.as_object().unwrap() {
                expected[k] = v.clone();
            }
        }
        for q in QUERIES {
            let v = fetch_twice(&app, "od", "full", q).await;
            assert_eq!(v["metadata"], expected, "{method} {path}");
        }
    }
    let bare = fetch_twice(&app, "od", "bare", "").await;
    assert_eq!(bare["metadata"], json!({"more": "x\"y"}));

    // A patch of the connection (tags, end user).
    let r = app
        .patch(
            "/connections/full?provider_config_key=od",
            &json!({"tags": {"plan": "free"}, "end_user": {"id": "eu-2"}}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let v = fetch_twice(&app, "od", "full", "").await;
    assert_eq!(v["tags"], json!({"plan": "free"}), "{v}");

    // Deleted: 404, also for the calls that had a kept body; a new connection under the same
    // id is served as itself, not as the old one.
    let r = app
        .delete("/connections/full?provider_config_key=od")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for q in QUERIES {
        let (status, body) = app.connection("od", "full", q).await;
        assert_eq!(status, 404, "{body}");
    }
    import(
        &app,
        json!({"provider_config_key": "od", "connection_id": "full",
               "credentials": {"type": "OAUTH2", "access_token": "tok-new", "raw": {"x": 1}}}),
    )
    .await;
    for q in QUERIES {
        let v = fetch_twice(&app, "od", "full", q).await;
        assert_eq!(v["credentials"]["access_token"], "tok-new");
        assert_eq!(v["metadata"], json!({}));
    }
    // Bad options are still refused on every call.
    let (status, _) = app.connection("od", "bare", "&force_refresh=maybe").await;
    assert_eq!(status, 400);
    let (status, _) = app.connection("other", "bare", "").await;
    assert_ne!(status, 200);
}

#[tokio::test]
async fn connections_fetch_serves_the_plain_rendering_across_refreshes() {
    let app = TestApp::spawn().await;
    app.create_integration(
        "od",
        "offline_access,User.Read,Files.Read.All,Sites.Read.All",
    )
    .await;
    let id = app.connect("od", "u", seed::ADELE_UPN).await;
    let mut tokens = vec![];
    let v = fetch_twice(&app, "od", &id, "").await;
    assert!(
        v["connection_config"]["sharepointAccessToken"].is_object(),
        "{v}"
    );
    tokens.push(v["credentials"]["access_token"].clone());
    fetch_twice(&app, "od", &id, "&refresh_token=true").await;

    // Forced: the answer is the refreshed connection, and so are the next ones.
    let forced = fetch_checked(&app, "od", &id, "&force_refresh=true").await;
    tokens.push(forced["credentials"]["access_token"].clone());
    for q in QUERIES {
        let v = fetch_twice(&app, "od", &id, q).await;
        assert_eq!(v["credentials"]["access_token"], *tokens.last().unwrap());
    }

    // Expiry-driven: once the token is within the margin (15 min) of its expiry (Entra's, and
    // the emulator's, last 60–90 min), the call refreshes.
    app.clock.advance(2 * 3600);
    let due = fetch_checked(&app, "od", &id, "").await;
    tokens.push(due["credentials"]["access_token"].clone());
    for q in QUERIES {
        let v = fetch_twice(&app, "od", &id, q).await;
        assert_eq!(v["credentials"]["access_token"], *tokens.last().unwrap());
        assert_eq!(v["last_refreshed_at"], due["last_refreshed_at"]);
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "three different tokens: {tokens:?}");
}

#[tokio::test]
async fn connections_fetch_serves_the_plain_rendering_of_app_only_connections() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/integrations",
            &json!({"provider": "one-drive-app", "unique_key": "od-app",
                    "credentials": {"type": "OAUTH2_CC", "client_id": seed::DEV_CLIENT_ID,
                                    "client_secret": seed::DEV_CLIENT_SECRET}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    app.emu
        .control()
        .grant_admin_consent("contoso", seed::DEV_CLIENT_ID)
        .await
        .unwrap();
    import(
        &app,
        json!({"provider_config_key": "od-app", "connection_id": "backup",
               "connection_config": {"tenantId": seed::CONTOSO_TENANT_ID},
               "metadata": {"m": 1}}),
    )
    .await;
    for q in QUERIES {
        let v = fetch_twice(&app, "od-app", "backup", q).await;
        assert_eq!(v["credentials"]["type"], "OAUTH2_CC", "{v}");
        assert_eq!(v["credentials"]["client_id"], seed::DEV_CLIENT_ID, "{v}");
    }
    let before = fetch_checked(&app, "od-app", "backup", "").await;
    let forced = fetch_checked(&app, "od-app", "backup", "&force_refresh=true").await;
    assert_ne!(
        before["credentials"]["token"],
        forced["credentials"]["token"]
    );
    let v = fetch_twice(&app, "od-app", "backup", "").await;
    assert_eq!(v["credentials"]["token"], forced["credentials"]["token"]);
}
