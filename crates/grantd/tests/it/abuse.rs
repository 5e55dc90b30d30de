//! Abuse tests over real HTTP for the hardening findings (issue 14): `authorization_params`
//! overrides, … Each asserts a clear 4xx and that the service keeps answering.

use grantd::clock::Clock;
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

/// `webhook_url_override` must be an http(s) URL without credentials wherever it is accepted.
#[tokio::test]
async fn webhook_urls_are_validated_where_accepted() {
    let app = TestApp::spawn().await;
    app.create_integration("files", "User.Read").await;
    let id = app
        .connect("files", "u", grantd_emulator::seed::ADELE_UPN)
        .await;
    for bad in [
        "file:///etc/passwd",
        "not a url",
        "https://user:pw@hooks.example/x",
        "gopher://hooks.example/",
    ] {
        let r = app
            .post(
                "/connect/sessions",
                &json!({"end_user": {"id": "v"}, "webhook_url_override": bad}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "session {bad}");
        let r = app
            .post(
                "/connect/sessions/reconnect",
                &json!({"connection_id": id, "integration_id": "files", "webhook_url_override": bad}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "reconnect {bad}");
        let r = app
            .http
            .patch(format!(
                "{}/connections/{id}?provider_config_key=files",
                app.url
            ))
            .bearer_auth(crate::support::app::SECRET)
            .json(&json!({"webhook_url_override": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "patch {bad}");
        let r = app
            .post(
                "/connections",
                &json!({"provider_config_key": "files", "connection_id": "imp",
                        "webhook_url_override": bad,
                        "credentials": {"type": "OAUTH2", "access_token": "x"}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "import {bad}");
    }
    assert!(healthy(&app).await);
}

/// Webhooks go through the SSRF guard: a loopback receiver gets nothing unless
/// `GRANTD_WEBHOOK_ALLOW_PRIVATE` is set, and the refusal is final (not retried).
#[tokio::test]
async fn webhooks_to_private_addresses_are_refused_unless_allowed() {
    use crate::support::webhook_receiver::Receiver;
    let rx = Receiver::spawn().await;
    let to = url::Url::parse(&rx.url).unwrap();
    let app = TestApp::spawn_configured(crate::support::app::Opts::default(), |c| {
        c.lifecycle.webhook_url = Some(to);
        c.lifecycle.webhook_allow_private = false;
    })
    .await
    .unwrap();
    app.create_integration("files", "User.Read").await;
    app.connect("files", "u", grantd_emulator::seed::ADELE_UPN)
        .await;
    let run = grantd::jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!((run.delivered, run.rejected), (0, 1), "{run:?}");
    assert!(
        rx.received().is_empty(),
        "nothing reached the loopback receiver"
    );
    assert!(healthy(&app).await);
}

/// Every route the OpenAPI document lists, with a NUL byte and invalid UTF-8 in the path, the
/// query and the JSON body: a 4xx, never a 5xx, the same on SQLite and PostgreSQL (PostgreSQL used
/// to answer 500: it refuses NUL in text).
async fn nul_and_invalid_utf8_on_every_route(kind: crate::support::db::DbKind) {
    let Some(app) = TestApp::spawn_with(crate::support::app::Opts {
        db: kind,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    app.create_integration("files", "User.Read").await;
    let id = app
        .connect("files", "u", grantd_emulator::seed::ADELE_UPN)
        .await;
    let doc = grantd::web::openapi::document(&app.url);
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let clean = path
                .replace("{key}", "files")
                .replace("{id}", &id)
                .replace("{provider}", "microsoft")
                .replace("{path}", "v1.0/me")
                .replace("{file}", "one-drive.svg");
            let bad_path = path
                .replace("{key}", "fi%00les")
                .replace("{id}", "a%00b")
                .replace("{provider}", "mi%ffcrosoft")
                .replace("{path}", "v1.0/%00")
                .replace("{file}", "one%00drive.svg");
            let q = "provider_config_key=files&connection_id=";
            let cases: Vec<(String, Option<Vec<u8>>)> = vec![
                (format!("{clean}?{q}%00&state=%00&ws_client_id=%00"), None),
                (format!("{clean}?{q}%ff%fe&state=%c3%28"), None),
                (format!("{bad_path}?{q}{id}"), None),
                (
                    format!("{clean}?{q}{id}"),
                    Some(br#"{"end_user":{"id":"a\u0000"},"connection_id":"\u0000","provider_config_key":"files","display_name":"\u0000","metadata":{"k":"\u0000"}}"#.to_vec()),
                ),
                (format!("{clean}?{q}{id}"), Some(b"{\"a\":\"\xff\xfe\"}".to_vec())),
                (format!("{clean}?{q}{id}"), Some(b"[]".to_vec())),
            ];
            let has_path_param = path.contains('{');
            for (target, body) in cases {
                if body.is_some()
                    && !matches!(
                        method,
                        reqwest::Method::POST | reqwest::Method::PATCH | reqwest::Method::PUT
                    )
                {
                    continue;
                }
                if target.starts_with(&bad_path) && !has_path_param {
                    continue;
                }
                let mut rb = app
                    .http
                    .request(method.clone(), format!("{}{target}", app.url))
                    .bearer_auth(crate::support::app::SECRET)
                    .header("Connection-Id", &id)
                    .header("Provider-Config-Key", "files");
                if let Some(b) = &body {
                    rb = rb
                        .header("content-type", "application/json")
                        .body(b.clone());
                }
                let r = rb.send().await.unwrap();
                let status = r.status().as_u16();
                let what = format!(
                    "{method} {target} body={:?}",
                    body.as_deref().map(String::from_utf8_lossy)
                );
                assert!(
                    status < 500,
                    "{what}: {status} {}",
                    r.text().await.unwrap_or_default()
                );
                let bad_uri = body.is_none();
                if bad_uri && !(path == "/" && method == reqwest::Method::GET) {
                    assert_eq!(status, 400, "{what}");
                }
                // Write routes with a JSON body refuse NUL, invalid UTF-8 and non-objects.
                if body.is_some() && path.starts_with("/connect")
                    || path.starts_with("/integrations") && body.is_some()
                {
                    assert!((400..500).contains(&status), "{what}: {status}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "{checked} requests");
    assert!(healthy(&app).await);
}

#[tokio::test]
async fn nul_and_invalid_utf8_are_4xx_on_every_route_on_sqlite() {
    nul_and_invalid_utf8_on_every_route(crate::support::db::DbKind::SqliteFile).await;
}

#[tokio::test]
async fn nul_and_invalid_utf8_are_4xx_on_every_route_on_postgres() {
    nul_and_invalid_utf8_on_every_route(crate::support::db::DbKind::Postgres).await;
}

/// `PATCH` bodies that are not objects are refused (`[]` used to be a 200); a body over the limit
/// is a 413, not a 400, with `Connection: close`.
#[tokio::test]
async fn patch_bodies_must_be_objects_and_oversized_bodies_are_413() {
    let app = TestApp::spawn().await;
    app.create_integration("files", "User.Read").await;
    let id = app
        .connect("files", "u", grantd_emulator::seed::ADELE_UPN)
        .await;
    for (path, body) in [
        (format!("/connections/{id}?provider_config_key=files"), "[]"),
        ("/integrations/files".to_owned(), "[]"),
        ("/integrations/files".to_owned(), "\"x\""),
        ("/integrations/files".to_owned(), "1"),
    ] {
        let r = app
            .http
            .patch(format!("{}{path}", app.url))
            .bearer_auth(crate::support::app::SECRET)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "PATCH {path} {body}");
    }
    let big = format!("{{\"end_user\":{{\"id\":\"{}\"}}}}", "a".repeat(3 << 20));
    let r = app
        .http
        .post(format!("{}/connect/sessions", app.url))
        .bearer_auth(crate::support::app::SECRET)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The unread rest of the body ends the connection, and the answer says so: a keep-alive
    // client must not send its next request on it (it did, now and then: a broken pipe).
    assert_eq!(r.headers()["connection"], "close");
    assert!(healthy(&app).await);
}

/// An answer given before the request's body was read (a wrong key, a bad header, a body over
/// the limit) ends the connection, since the rest of the body is never read, and says so with
/// `Connection: close`; an answer to a body read whole keeps the connection.
#[tokio::test]
async fn answers_that_leave_a_body_unread_say_connection_close() {
    let app = TestApp::spawn().await;
    let big = format!("{{\"end_user\":{{\"id\":\"{}\"}}}}", "a".repeat(1 << 20));
    let send = |method: reqwest::Method, path: &str, key: &str, body: String| {
        app.http
            .request(method, format!("{}{path}", app.url))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let early = [
        (reqwest::Method::POST, "/connect/sessions", "wrong-key", 401),
        (
            reqwest::Method::POST,
            "/proxy/v1.0/me/drive/items",
            crate::support::app::SECRET,
            400,
        ),
    ];
    for (method, path, key, status) in early {
        let r = send(method.clone(), path, key, big.clone()).await.unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        assert_eq!(r.headers()["connection"], "close", "{method} {path}");
        assert!(healthy(&app).await);
    }
    let r = send(
        reqwest::Method::POST,
        "/connect/sessions",
        crate::support::app::SECRET,
        r#"{"end_user":{"id":"u-1"}}"#.into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers().get("connection"), None);
}

/// `/metrics` needs the secret key or `GRANTD_METRICS_TOKEN`; it used to answer anyone.
#[tokio::test]
async fn metrics_need_a_credential() {
    let app = TestApp::spawn_configured(crate::support::app::Opts::default(), |c| {
        c.metrics_token = Some(grantd::model::ApiKey::new("scraper-token-0123456789"));
    })
    .await
    .unwrap();
    let get = |token: Option<&str>| {
        let rb = app.http.get(format!("{}/metrics", app.url));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    };
    assert_eq!(get(None).send().await.unwrap().status(), 401);
    assert_eq!(get(Some("wrong")).send().await.unwrap().status(), 401);
    for ok in ["scraper-token-0123456789", crate::support::app::SECRET] {
        let r = get(Some(ok)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("grantd_http_requests_total")
        );
    }
}

/// The WebSocket hub needs no credential, so it is bounded: an inbound message over a few KiB
/// closes the socket (it used to be buffered, ~64 MiB per socket), and one address cannot hold
/// more than `MAX_SOCKETS_PER_ADDR` sockets; `/health` keeps answering.
#[tokio::test]
async fn websocket_floods_are_bounded() {
    use futures::{SinkExt, StreamExt};
    use grantd::edge::ws_limits::{
        MAX_INBOUND_BYTES, MAX_SOCKETS_PER_ADDR, MAX_UNCLAIMED_PER_ADDR,
    };
    use tokio_tungstenite::tungstenite::Message;
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", "User.Read").await;
    let token = app.session("u", &["one-drive"]).await;
    let url = format!("{}/", app.url.replacen("http://", "ws://", 1));
    // Opens a socket and returns it with its ws_client_id.
    let open = || async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let ack = ws.next().await.unwrap().unwrap();
        let ack: Value = serde_json::from_str(ack.to_text().unwrap()).unwrap();
        let id = ack["ws_client_id"].as_str().unwrap().to_owned();
        (ws, id)
    };
    let refused = || async {
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
            other => panic!("expected a 503 refusal, got {:?}", other.map(|_| ())),
        }
    };

    let (mut ws, _) = open().await;
    let big = "x".repeat(MAX_INBOUND_BYTES * 16);
    let _ = ws.send(Message::Text(big.into())).await;
    // The server ends the socket: a close frame, an error or the end of the stream.
    match ws.next().await {
        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {}
        Some(Ok(m)) => panic!("unexpected frame {m:?}"),
    }
    drop(ws);
    // The place of a closed socket frees once its task has ended.
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await {
            let ack: Value =
                serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
            held.push((ws, ack["ws_client_id"].as_str().unwrap().to_owned()));
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(held.len(), 1);

    // Sockets no flow has claimed: a handful per address.
    while held.len() < MAX_UNCLAIMED_PER_ADDR {
        held.push(open().await);
    }
    refused().await;
    assert!(healthy(&app).await);
    // A real flow claims one: its place among the unclaimed frees at once.
    app.start_connect("one-drive", &token, &format!("&ws_client_id={}", held[0].1))
        .await;
    held.push(open().await);
    refused().await;
    // Claimed sockets count against the larger per-address bound.
    let mut claimed = 1;
    while held.len() < MAX_SOCKETS_PER_ADDR {
        let id = held[claimed].1.clone();
        app.start_connect("one-drive", &token, &format!("&ws_client_id={id}"))
            .await;
        claimed += 1;
        held.push(open().await);
    }
    refused().await;
    assert!(healthy(&app).await);
    // Closing one frees its place.
    let (mut one, _) = held.pop().unwrap();
    one.close(None).await.unwrap();
    while one.next().await.is_some() {}
    drop(one);
    let mut opened = None;
    for _ in 0..100 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await {
            opened = Some(ws);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(opened.is_some(), "a place frees when a socket closes");
}

/// Reads from `s` until the server closes it; `false` if it is still open after a minute (a
/// guard against hanging the run, not a timing assertion).
async fn closed_by_server(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read_to_end)
        .await
        .is_ok()
}

/// Idle connections and slowloris heads are closed after the header-read timeout (they used to
/// stay open for ever), and connections over the cap get a 503 instead of exhausting descriptors.
#[tokio::test]
async fn idle_slow_and_excess_connections_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_configured(crate::support::app::Opts::default(), |c| {
        c.limits.header_read_timeout = std::time::Duration::from_secs(1);
    })
    .await
    .unwrap();
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut idle).await,
        "an idle connection is closed"
    );
    assert!(
        closed_by_server(&mut slow).await,
        "a slowloris head is closed"
    );
    assert!(healthy(&app).await);

    const CAP: usize = 4;
    let app = TestApp::spawn_configured(crate::support::app::Opts::default(), |c| {
        c.limits.max_connections = CAP;
    })
    .await
    .unwrap();
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // A complete request proves the connection was accepted and holds a place.
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    let mut over = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut answer = Vec::new();
    over.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // A place frees when a connection closes, and the service answers again.
    drop(held.pop());
    let mut ok = false;
    for _ in 0..200 {
        if healthy(&app).await {
            ok = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ok, "/health answers once a connection closed");
}

/// The SQLite file (end-user PII and metadata in clear) is created 0600, not 0644, and its WAL
/// and shared-memory files too.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    app.create_integration("files", "User.Read").await;
    let path = grantd::sqlite_file::path_of(&app.state.core.config.database_url).unwrap();
    for suffix in ["", "-wal"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{p:?} is {mode:o}");
    }
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address reaches the server).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The login form's token and its double-submit cookie (one pair serves any number of posts).
async fn login_token(http: &reqwest::Client, app: &TestApp) -> (String, String) {
    let r = http
        .get(format!("{}/dashboard/login", app.url))
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| {
            v.to_str()
                .ok()?
                .split(';')
                .next()?
                .strip_prefix("grantd_login_csrf=")
        })
        .next()
        .unwrap()
        .to_owned();
    let html = r.text().await.unwrap();
    let at = html.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    (html[at..].split('"').next().unwrap().to_owned(), cookie)
}

async fn sign_in_from(
    http: &reqwest::Client,
    app: &TestApp,
    (token, cookie): &(String, String),
    user: &str,
    password: &str,
) -> reqwest::Response {
    http.post(format!("{}/dashboard/login", app.url))
        .header("cookie", format!("grantd_login_csrf={cookie}"))
        .form(&[("username", user), ("password", password), ("csrf", token)])
        .send()
        .await
        .unwrap()
}

/// `Retry-After` of a 429, checked to be within the one-minute cap.
fn retry_after(r: &reqwest::Response) -> u64 {
    assert_eq!(r.status(), 429);
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    secs
}

/// grantd with an admin login and a first throttling delay of a minute (the cap), so a block
/// outlasts the test however slow the machine; the clock is moved past it.
async fn spawn_throttled() -> TestApp {
    TestApp::spawn_configured(Default::default(), |c| {
        c.admin = Some(grantd::config::AdminLogin {
            user: "ops".into(),
            password: grantd::model::ApiKey::new("the right password"),
        });
        c.limits.auth_base_delay = std::time::Duration::from_secs(60);
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn sign_in_is_throttled_by_address_without_locking_the_admin_out() {
    let app = spawn_throttled().await;
    let attacker = client_from("127.0.0.1");
    let form = login_token(&attacker, &app).await;
    let mut statuses = vec![];
    for _ in 0..50 {
        let r = sign_in_from(&attacker, &app, &form, "ops", "guess").await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after(&r);
            assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
        }
    }
    // Five free failures, the sixth starts a block: everything after is refused unchecked.
    assert_eq!(statuses[..6], [401; 6]);
    assert_eq!(statuses[6..], [429; 44]);
    // Even the right password from that address waits for the block to end.
    let r = sign_in_from(&attacker, &app, &form, "ops", "the right password").await;
    retry_after(&r);
    assert!(healthy(&app).await);

    // The admin elsewhere is not held back: the account saw only the six checked failures.
    let admin = client_from("127.0.0.2");
    let admin_form = login_token(&admin, &app).await;
    let r = sign_in_from(&admin, &app, &admin_form, "ops", "the right password").await;
    assert_eq!(r.status(), 303);
    // The block ends within the cap, and the right password then clears the address.
    app.clock.advance(61);
    let r = sign_in_from(&attacker, &app, &form, "ops", "the right password").await;
    assert_eq!(r.status(), 303);
    let r = sign_in_from(&attacker, &app, &form, "ops", "guess").await;
    assert_eq!(
        r.status(),
        401,
        "a successful sign-in reset the address's count"
    );
}

#[tokio::test]
async fn an_account_under_a_distributed_guess_stays_open_to_addresses_that_signed_in() {
    let app = spawn_throttled().await;
    // The admin signed in from .2 earlier today.
    let admin = client_from("127.0.0.2");
    let admin_form = login_token(&admin, &app).await;
    let r = sign_in_from(&admin, &app, &admin_form, "ops", "the right password").await;
    assert_eq!(r.status(), 303);
    // Twenty-one addresses, one guess each: the account's budget (4 × 5) runs out.
    for i in 10..31 {
        let bot = client_from(&format!("127.0.1.{i}"));
        let form = login_token(&bot, &app).await;
        let r = sign_in_from(&bot, &app, &form, "admin", "guess").await;
        assert_eq!(r.status(), 401);
    }
    let fresh = client_from("127.0.2.1");
    let form = login_token(&fresh, &app).await;
    retry_after(&sign_in_from(&fresh, &app, &form, "ops", "the right password").await);
    // The secret key is another account; the admin's usual address still gets in.
    assert_eq!(
        sign_in_from(&fresh, &app, &form, "", SECRET_KEY)
            .await
            .status(),
        303
    );
    let r = sign_in_from(&admin, &app, &admin_form, "ops", "the right password").await;
    assert_eq!(r.status(), 303);
}

const SECRET_KEY: &str = crate::support::app::SECRET;

#[tokio::test]
async fn wrong_api_keys_are_throttled_by_address() {
    let app = spawn_throttled().await;
    let attacker = client_from("127.0.0.1");
    let mut statuses = vec![];
    for i in 0..50 {
        // Wrong keys of both shapes Nango tells apart.
        let key = if i % 2 == 0 {
            uuid::Uuid::new_v4().to_string()
        } else {
            format!("guess-{i}")
        };
        let r = attacker
            .get(format!("{}/connections", app.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after(&r);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
        }
    }
    assert_eq!(statuses[..6], [401; 6]);
    assert_eq!(statuses[6..], [429; 44]);
    // The right key from the same address, requests without a credential, and other clients
    // keep being answered.
    let r = attacker
        .get(format!("{}/connections", app.url))
        .bearer_auth(SECRET_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = attacker
        .get(format!("{}/health", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let other = client_from("127.0.0.3");
    let r = other
        .get(format!("{}/connections", app.url))
        .bearer_auth(uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "another address has its own budget");
    assert!(healthy(&app).await);
    // Within the cap the address may try again.
    app.clock.advance(61);
    let r = attacker
        .get(format!("{}/connections", app.url))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
