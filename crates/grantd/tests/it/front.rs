//! The front door (`grantd::front`): `/proxy/{*path}` and `GET /connections/{id}` are
//! dispatched without the router, and must answer exactly as the router did. Checked against
//! routes that still go through the router with the same handler (`GET /connection/{id}`, the
//! `HEAD` forms), for every extractor failure; plus the metrics' route labels (counted once),
//! the paths the router keeps (404, 405), wrong-key throttling by the connection's address, and
//! the 5xx error log at the default level.

use reqwest::Method;
use serde_json::Value;

use crate::support::app::{SECRET, TestApp};

const KEY: &str = "one-drive";
const SCOPES: &str = "User.Read,Files.ReadWrite.All";

async fn connected() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    app.create_integration(KEY, SCOPES).await;
    let id = app
        .connect(KEY, "user-1", grantd_emulator::seed::ADELE_UPN)
        .await;
    (app, id)
}

/// Status, the headers that matter to a client, and the JSON body without the one field that
/// changes from call to call (`last_fetched_at`).
async fn answer(r: reqwest::RequestBuilder) -> (u16, Option<String>, Option<String>, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (ct, www) = (header("content-type"), header("www-authenticate"));
    let text = r.text().await.unwrap();
    let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if let Some(o) = body.as_object_mut() {
        o.remove("last_fetched_at");
    }
    (status, ct, www, body)
}

/// One metrics line's count (0 when absent).
async fn count(app: &TestApp, line: &str) -> u64 {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn connection_fetch_answers_as_the_routed_form_does() {
    let (app, id) = connected().await;
    let enc: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
    let wrong_uuid = uuid::Uuid::new_v4().to_string();
    // (bearer, id as sent, query): every extractor failure in its order, then successes.
    let cases: Vec<(Option<&str>, &str, String)> = vec![
        (None, &id, format!("provider_config_key={KEY}")),
        (Some(""), &id, format!("provider_config_key={KEY}")),
        (
            Some("not-a-uuid"),
            &id,
            format!("provider_config_key={KEY}"),
        ),
        (Some(&wrong_uuid), &id, format!("provider_config_key={KEY}")),
        // A wrong key is refused before the query is read.
        (Some("not-a-uuid"), &id, "force_refresh=maybe".into()),
        (Some(SECRET), &id, String::new()),
        (Some(SECRET), &id, "provider_config_key=".into()),
        (
            Some(SECRET),
            &id,
            format!("provider_config_key={KEY}&force_refresh=maybe"),
        ),
        (
            Some(SECRET),
            &id,
            format!("provider_config_key={KEY}&unknown=1"),
        ),
        (
            Some(SECRET),
            &id,
            format!("provider_config_key={KEY}&provider_config_key=x"),
        ),
        (Some(SECRET), &id, "provider_config_key=no%20such".into()),
        (
            Some(SECRET),
            "no-such-connection",
            format!("provider_config_key={KEY}"),
        ),
        (Some(SECRET), "a%20b", format!("provider_config_key={KEY}")),
        (Some(SECRET), &id, format!("provider_config_key={KEY}")),
        (
            Some(SECRET),
            &enc,
            format!("provider_config_key={KEY}&refresh_token=true"),
        ),
    ];
    for (bearer, id, query) in &cases {
        let get = |path: &str| {
            let r = app.http.get(format!("{}{path}/{id}?{query}", app.url));
            match bearer {
                Some(b) => r.header("authorization", format!("Bearer {b}")),
                None => r,
            }
        };
        let direct = answer(get("/connections")).await;
        let routed = answer(get("/connection")).await;
        assert_eq!(direct, routed, "{bearer:?} {id} {query}");
    }
    // The success is a success, and the encoded id is the same connection.
    let (status, _, _, body) =
        answer(app.get(&format!("/connections/{enc}?provider_config_key={KEY}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connection_id"], id.as_str());

    // HEAD still goes through the router: the GET's head, no body.
    let get = app
        .get(&format!("/connections/{id}?provider_config_key={KEY}"))
        .send()
        .await
        .unwrap();
    let head = app
        .http
        .head(format!(
            "{}/connections/{id}?provider_config_key={KEY}",
            app.url
        ))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), get.status());
    assert_eq!(
        head.headers()["content-type"],
        get.headers()["content-type"]
    );
    assert_eq!(
        head.headers()["content-length"],
        get.headers()["content-length"]
    );
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn paths_and_methods_the_router_keeps() {
    let (app, id) = connected().await;
    let send = |m: Method, path: &str| {
        app.http
            .request(m, format!("{}{path}", app.url))
            .bearer_auth(SECRET)
            .header("Provider-Config-Key", KEY)
            .header("Connection-Id", &id)
            .send()
    };
    // The static route beside `{id}`: its GET is 405 with the allowed methods.
    let r = send(Method::GET, "/connections/metadata").await.unwrap();
    assert_eq!(r.status(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("POST") && allow.contains("PATCH"), "{allow}");
    // Not `{id}` (empty, two segments) and not `{*path}` (empty): the router's 404 envelope.
    for path in ["/connections/", "/connections/a/b", "/proxy/"] {
        let r = send(Method::GET, path).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], "Route not found", "{path}");
    }
    // `/connections/{id}`'s other methods go to their handlers through the router.
    let r = send(Method::PUT, &format!("/connections/{id}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // The proxy with any method but HEAD is dispatched directly; HEAD and `/proxy` itself go
    // through the router and reach the same handler.
    let get = send(Method::GET, "/proxy/v1.0/me").await.unwrap();
    assert_eq!(get.status(), 200);
    let head = send(Method::HEAD, "/proxy/v1.0/me").await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    let odd = Method::from_bytes(b"PROPFIND").unwrap();
    let a = answer(
        app.http
            .request(odd.clone(), format!("{}/proxy/v1.0/me", app.url))
            .bearer_auth(SECRET),
    )
    .await;
    let b = answer(
        app.http
            .request(odd, format!("{}/proxy", app.url))
            .bearer_auth(SECRET),
    )
    .await;
    assert_eq!(
        a, b,
        "a missing Connection-Id, answered by the handler both ways"
    );
    assert_eq!(a.0, 400, "{a:?}");
}

#[tokio::test]
async fn proxy_extractor_failures_answer_as_before() {
    let (app, id) = connected().await;
    let wrong = uuid::Uuid::new_v4().to_string();
    for (bearer, code) in [
        (None, "missing_auth_header"),
        (Some(""), "malformed_auth_header"),
        // The server reads "Bearer " as "Bearer" (trailing whitespace is not part of a value).
        (Some("Bearer "), "invalid_secret_key_format"),
        (Some("Bearer guess"), "invalid_secret_key_format"),
        (Some(wrong.as_str()), "unknown_account"),
    ] {
        for path in ["/proxy/v1.0/me", "/proxy"] {
            let mut r = app
                .http
                .post(format!("{}{path}", app.url))
                .header("Provider-Config-Key", KEY)
                .header("Connection-Id", &id);
            if let Some(b) = bearer {
                r = r.header("authorization", b);
            }
            let (status, _, _, body) = answer(r).await;
            assert_eq!(status, 401, "{path} {bearer:?}: {body}");
            assert_eq!(body["error"]["code"], code, "{path} {bearer:?}: {body}");
        }
    }
}

#[tokio::test]
async fn metrics_keep_the_route_labels_and_count_once() {
    let (app, id) = connected().await;
    // A method no other test sends unauthenticated, so the counts are this test's alone; it is
    // labelled `other` (clients choose methods: one series each would grow without bound).
    let odd = Method::from_bytes(b"REPORT").unwrap();
    let proxy_401 =
        "grantd_http_requests_total{route=\"/proxy/{*path}\",method=\"other\",status=\"401\"}";
    let before = count(&app, proxy_401).await;
    for _ in 0..3 {
        let r = app
            .http
            .request(odd.clone(), format!("{}/proxy/v1.0/me", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(count(&app, proxy_401).await - before, 3);
    let text = app.metrics_text().await;
    assert!(!text.contains("method=\"REPORT\""), "{text}");

    for (path, line) in [
        (
            format!("/connections/{id}?provider_config_key={KEY}"),
            "grantd_http_requests_total{route=\"/connections/{id}\",method=\"GET\",status=\"200\"}",
        ),
        (
            format!("/connections/{id}?provider_config_key={KEY}&force_refresh=maybe"),
            "grantd_http_requests_total{route=\"/connections/{id}\",method=\"GET\",status=\"400\"}",
        ),
        (
            "/proxy/v1.0/me".to_owned(),
            "grantd_http_requests_total{route=\"/proxy/{*path}\",method=\"GET\",status=\"200\"}",
        ),
    ] {
        let before = count(&app, line).await;
        app.http
            .get(format!("{}{path}", app.url))
            .bearer_auth(SECRET)
            .header("Provider-Config-Key", KEY)
            .header("Connection-Id", &id)
            .send()
            .await
            .unwrap();
        // Other tests in this binary may count too: at least this one request.
        assert!(count(&app, line).await > before, "{line}");
    }
    let text = app.metrics_text().await;
    for needle in [
        "grantd_http_request_duration_seconds_count{route=\"/connections/{id}\"}",
        "grantd_http_request_duration_seconds_count{route=\"/proxy/{*path}\"}",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
}

/// The gate sees each connection's address without the request carrying it: wrong keys on the
/// directly dispatched routes are throttled for that address only.
#[tokio::test]
async fn wrong_keys_on_the_hot_routes_are_throttled_by_address() {
    let app = TestApp::spawn_configured(Default::default(), |c| {
        c.limits.auth_base_delay = std::time::Duration::from_secs(60);
    })
    .await
    .unwrap();
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let attacker = from("127.0.0.7");
    let mut statuses = vec![];
    for i in 0..12 {
        let path = if i % 2 == 0 {
            "/proxy/v1.0/me".to_owned()
        } else {
            format!("/connections/c{i}?provider_config_key={KEY}")
        };
        let r = attacker
            .get(format!("{}{path}", app.url))
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..6], [401; 6]);
    assert_eq!(statuses[6..], [429; 6]);
    let r = from("127.0.0.8")
        .get(format!("{}/proxy/v1.0/me", app.url))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "another address has its own budget");
}
