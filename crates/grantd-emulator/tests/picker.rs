//! The File Picker v8 page (`/_sharepoint/{host}/_layouts/15/FilePicker.aspx`): the form token
//! is checked as SharePoint checks it (wrong audience, Graph token, expired, missing → 401 with
//! `x-ms-diagnostics`), the options JSON is checked (400 naming the field), a good POST gets the
//! page. Then the page in real headless Chromium (`tests/browser/emulator_picker.mjs`, driven
//! here): a small host page served by this test posts the form into an iframe, answers
//! `authenticate` with tokens minted by the emulator for the requested resource, and receives
//! `pick` after the user browsed her OneDrive and a SharePoint site (a second host, a second
//! `authenticate`). Skips with `SKIPPED: …` when Chromium or the Node packages are missing
//! (`GRANTD_TEST_NO_SKIP=1` makes that a failure).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use common::*;
use grantd_emulator::seed::*;
use http::header;
use serde_json::{Value, json};

const SCOPE: &str = "openid profile offline_access User.Read Files.ReadWrite.All Sites.Read.All";

fn picker_url(emu: &Emu, host: &str, options: &Value) -> String {
    let mut u = url::Url::parse(&format!(
        "{}/_sharepoint/{host}/_layouts/15/FilePicker.aspx",
        emu.base()
    ))
    .expect("url");
    u.query_pairs_mut()
        .append_pair("filePicker", &options.to_string())
        .append_pair("locale", "en-us");
    u.to_string()
}

fn options(origin: &str) -> Value {
    json!({
        "sdk": "8.0",
        "entry": {"oneDrive": {}},
        "authentication": {},
        "messaging": {"origin": origin, "channelId": "chan-42"},
        "typesAndSources": {"mode": "all", "pivots": {"oneDrive": true, "recent": true}},
        "selection": {"mode": "multiple"},
    })
}

/// A SharePoint token for `host` from adele's refresh token.
async fn sp_token(emu: &Emu, rt: &str, host: &str) -> String {
    let (s, b) = emu
        .refresh(
            CONTOSO_TENANT_ID,
            rt,
            Some(&format!("https://{host}/.default")),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["access_token"].as_str().expect("token").to_owned()
}

async fn post(emu: &Emu, url: &str, token: Option<&str>) -> (u16, http::HeaderMap, String) {
    let form: Vec<(&str, &str)> = token.map(|t| ("access_token", t)).into_iter().collect();
    let resp = emu.http.post(url).form(&form).send().await.expect("post");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

#[tokio::test]
async fn the_form_token_must_be_for_the_pickers_host() {
    let emu = spawn().await;
    let tokens = emu.tokens_for(ADELE_UPN, SCOPE).await;
    let graph = tokens["access_token"].as_str().expect("graph").to_owned();
    let rt = tokens["refresh_token"].as_str().expect("rt").to_owned();
    let my = sp_token(&emu, &rt, CONTOSO_MY_HOST).await;
    let root = sp_token(&emu, &rt, CONTOSO_SHAREPOINT_HOST).await;
    let url = picker_url(&emu, CONTOSO_MY_HOST, &options("http://127.0.0.1:3000"));

    // A Graph token and the other host's token: SharePoint's 401 "Invalid audience Uri".
    for (tok, aud) in [
        (graph.as_str(), "00000003-0000-0000-c000-000000000000"),
        (root.as_str(), "https://contoso.sharepoint.com"),
    ] {
        let (status, h, body) = post(&emu, &url, Some(tok)).await;
        assert_eq!(status, 401, "{body}");
        let diag = h["x-ms-diagnostics"].to_str().expect("ascii");
        assert_eq!(
            diag,
            format!(r#"3000003;reason="Invalid audience Uri '{aud}'.";category="invalid_client""#)
        );
        let www = h[header::WWW_AUTHENTICATE].to_str().expect("ascii");
        assert!(
            www.starts_with(&format!(
                r#"Bearer realm="{CONTOSO_TENANT_ID}",client_id="00000003-0000-0ff1-ce00-000000000000""#
            )),
            "{www}"
        );
        let v: Value = serde_json::from_str(&body).expect("json body");
        assert_eq!(
            v["error_description"],
            format!("Invalid audience Uri '{aud}'.")
        );
        assert!(!body.contains(tok));
    }
    // No token at all (SharePoint would need its cookie, which the emulator never sets), GET too.
    let (status, h, _) = post(&emu, &url, None).await;
    assert_eq!(status, 401);
    assert!(h.contains_key(header::WWW_AUTHENTICATE));
    let get = emu.http.get(&url).send().await.expect("get");
    assert_eq!(get.status(), 401);
    // A garbled token.
    let (status, h, _) = post(&emu, &url, Some("not-a-jwt")).await;
    assert_eq!(status, 401);
    assert!(
        h["x-ms-diagnostics"]
            .to_str()
            .unwrap()
            .starts_with("3000006;")
    );

    // The right audience: the page.
    let (status, h, body) = post(&emu, &url, Some(&my)).await;
    assert_eq!(status, 200, "{body}");
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("a nonce in the CSP");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        body.contains(&format!(r#"<script nonce="{nonce}">"#)),
        "{body}"
    );
    assert!(body.contains(r#""channelId":"chan-42""#), "{body}");
    assert!(
        body.contains(r#""origin":"http://127.0.0.1:3000""#),
        "{body}"
    );
    assert!(body.contains(r#"id="picker-select""#) && body.contains(r#"id="picker-cancel""#));
    // The form token is never put into the page: it asks the host for tokens.
    assert!(!body.contains(&my));
    // Each page has its own nonce.
    let (_, h2, _) = post(&emu, &url, Some(&my)).await;
    assert_ne!(
        h2[header::CONTENT_SECURITY_POLICY],
        h[header::CONTENT_SECURITY_POLICY]
    );
    // The root host serves the picker too, with its own token.
    let root_url = picker_url(
        &emu,
        CONTOSO_SHAREPOINT_HOST,
        &options("https://app.example"),
    );
    assert_eq!(post(&emu, &root_url, Some(&root)).await.0, 200);
    // Another tenant's host refuses a contoso token (wrong audience), and unknown hosts are 404.
    let fab = picker_url(&emu, FABRIKAM_MY_HOST, &options("https://app.example"));
    assert_eq!(post(&emu, &fab, Some(&my)).await.0, 401);
    let nowhere = picker_url(
        &emu,
        "nowhere.sharepoint.com",
        &options("https://app.example"),
    );
    assert_eq!(post(&emu, &nowhere, Some(&my)).await.0, 404);

    // Expired (emulator clock): 401 with the expiry diagnostics.
    emu.control.advance_clock(2 * 3600).await.expect("clock");
    let (status, h, _) = post(&emu, &url, Some(&my)).await;
    assert_eq!(status, 401);
    assert!(
        h["x-ms-diagnostics"]
            .to_str()
            .unwrap()
            .starts_with("3000007;")
    );

    let c = emu.control.counters().await.expect("counters");
    assert!(
        c.sharepoint_requests
            .keys()
            .any(|k| k == "POST contoso-my.sharepoint.com /_layouts/15/FilePicker.aspx"),
        "{:?}",
        c.sharepoint_requests
    );
}

#[tokio::test]
async fn bad_options_are_a_400_naming_the_field() {
    let emu = spawn().await;
    let rt = emu.tokens_for(ADELE_UPN, SCOPE).await["refresh_token"]
        .as_str()
        .expect("rt")
        .to_owned();
    let my = sp_token(&emu, &rt, CONTOSO_MY_HOST).await;
    let good = options("https://app.example");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("sdk", json!("7.2"), "sdk"),
        ("messaging", json!({"channelId": "c"}), "messaging.origin"),
        (
            "messaging",
            json!({"origin": "https://app.example/picker", "channelId": "c"}),
            "messaging.origin",
        ),
        (
            "messaging",
            json!({"origin": "https://app.example"}),
            "messaging.channelId",
        ),
        ("authentication", Value::Null, "authentication"),
        ("entry", json!({}), "entry"),
        (
            "typesAndSources",
            json!({"mode": "pictures"}),
            "typesAndSources.mode",
        ),
        ("selection", json!({"mode": "all"}), "selection.mode"),
    ];
    for (field, value, needle) in cases {
        let mut o = good.clone();
        if value.is_null() {
            o.as_object_mut().expect("object").remove(field);
        } else {
            o[field] = value;
        }
        let (status, h, body) = post(&emu, &picker_url(&emu, CONTOSO_MY_HOST, &o), Some(&my)).await;
        assert_eq!(status, 400, "{o}: {body}");
        assert!(
            h[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(body.contains(r#"id="picker-error""#), "{body}");
        assert!(body.contains(needle), "{o}: {body}");
    }
    // Not JSON, and no filePicker at all.
    let raw = format!(
        "{}/_sharepoint/{CONTOSO_MY_HOST}/_layouts/15/FilePicker.aspx?filePicker=%7Bnope",
        emu.base()
    );
    let (status, _, body) = post(&emu, &raw, Some(&my)).await;
    assert_eq!(status, 400);
    assert!(body.contains("not valid JSON"), "{body}");
    let bare = format!(
        "{}/_sharepoint/{CONTOSO_MY_HOST}/_layouts/15/FilePicker.aspx",
        emu.base()
    );
    let (status, _, body) = post(&emu, &bare, Some(&my)).await;
    assert_eq!(status, 400);
    assert!(body.contains("filePicker"), "{body}");
    // The token is checked first, as SharePoint authenticates before it reads the page's options.
    let (status, _, _) = post(&emu, &bare, Some("garbage")).await;
    assert_eq!(status, 401);
}

// ---- the real browser ------------------------------------------------------------------------

fn skip(why: &str) {
    if std::env::var("GRANTD_TEST_NO_SKIP").is_ok_and(|v| v == "1") {
        panic!("{why} (GRANTD_TEST_NO_SKIP=1 forbids skipping)");
    }
    eprintln!("SKIPPED: {why}");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The host app of the browser test: its page, and the token endpoint its page calls for each
/// `authenticate` (minted by the emulator from adele's refresh token).
#[derive(Clone)]
struct Host {
    emu_base: String,
    rt: String,
    /// Which resource each token request named (`form` or `authenticate`).
    requests: Arc<Mutex<Vec<(String, String)>>>,
    /// Answer `authenticate` for this host with the OneDrive host's token (a broken host app).
    wrong_token_for: Option<String>,
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    resource: String,
    why: String,
}

async fn host_token(
    State(h): State<Host>,
    Query(q): Query<TokenQuery>,
) -> axum::response::Response {
    h.requests
        .lock()
        .expect("lock")
        .push((q.why.clone(), q.resource.clone()));
    let mut resource = q.resource.clone();
    if h.wrong_token_for.as_deref() == Some(q.resource.as_str()) && q.why == "authenticate" {
        resource = format!("https://{CONTOSO_MY_HOST}");
    }
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/{CONTOSO_TENANT_ID}/oauth2/v2.0/token",
            h.emu_base
        ))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEV_CLIENT_ID),
            ("client_secret", DEV_CLIENT_SECRET),
            ("refresh_token", h.rt.as_str()),
            ("scope", &format!("{resource}/.default")),
        ])
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => {
            let v: Value = r.json().await.unwrap_or_default();
            axum::Json(json!({"token": v["access_token"]})).into_response()
        }
        Ok(r) => (
            http::StatusCode::BAD_GATEWAY,
            r.text().await.unwrap_or_default(),
        )
            .into_response(),
        Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

const HOST_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>host app</title></head>
<body>
<h1>Host app</h1>
<iframe id="picker-frame" name="picker-frame" width="1000" height="640"></iframe>
<script>
// The host side of the File Picker v8 protocol, as Microsoft's docs show it.
window.__log = []; window.__picked = null; window.__closed = false;
const cfg = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const frame = document.getElementById('picker-frame');
const tokenFor = async (resource, why) => {
  const r = await fetch(`/token?why=${why}&resource=${encodeURIComponent(resource)}`);
  if (!r.ok) throw new Error(await r.text());
  return (await r.json()).token;
};
let port;
window.addEventListener('message', (event) => {
  if (event.source !== frame.contentWindow) return;
  const m = event.data;
  if (m.type === 'initialize' && m.channelId === cfg.options.messaging.channelId) {
    window.__log.push({initialize: event.origin});
    port = event.ports[0];
    port.addEventListener('message', onPort);
    port.start();
    port.postMessage({type: 'activate'});
  }
});
async function onPort(message) {
  const p = message.data;
  if (p.type === 'notification') { window.__log.push({notification: p.data.notification}); return; }
  if (p.type !== 'command') return;
  port.postMessage({type: 'acknowledge', id: p.id});
  const c = p.data;
  window.__log.push({command: c.command, resource: c.resource, type: c.type});
  if (c.command === 'authenticate') {
    try {
      port.postMessage({type: 'result', id: p.id, data: {result: 'token', token: await tokenFor(c.resource, 'authenticate')}});
    } catch (e) {
      port.postMessage({type: 'result', id: p.id, data: {result: 'error', error: {code: 'unableToObtainToken', message: e.message}}});
    }
  } else if (c.command === 'pick') {
    window.__picked = c.items;
    port.postMessage({type: 'result', id: p.id, data: {result: 'success'}});
  } else if (c.command === 'close') {
    window.__closed = true;
    port.postMessage({type: 'result', id: p.id, data: {result: 'success'}});
  } else {
    port.postMessage({type: 'result', id: p.id, data: {result: 'error', error: {code: 'unsupportedCommand', message: c.command}}});
  }
}
(async () => {
  const qs = new URLSearchParams({filePicker: JSON.stringify(cfg.options), locale: 'en-us'});
  const form = document.createElement('form');
  form.method = 'POST';
  form.target = 'picker-frame';
  form.action = `${cfg.baseUrl}/_layouts/15/FilePicker.aspx?${qs}`;
  const input = document.createElement('input');
  input.type = 'hidden'; input.name = 'access_token';
  input.value = await tokenFor(cfg.resource, 'form');
  form.appendChild(input);
  document.body.appendChild(form);
  form.submit();
})();
</script>
</body></html>"#;

async fn spawn_host(h: Host) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route("/", get(|| async { Html(HOST_PAGE) }))
        .route("/token", get(host_token))
        .with_state(h);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("host app serves");
    });
    (url, task)
}

/// Runs one scenario of `tests/browser/emulator_picker.mjs`; returns its result object.
async fn scenario(cfg: Value) -> Value {
    let root = repo_root();
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/emulator_picker.mjs"))
        .env("BROWSER_TEST", cfg.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser scenario failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["ok"], true, "{v}");
    v
}

#[tokio::test]
async fn a_real_browser_picks_from_onedrive_and_a_site() {
    if !Path::new("/usr/bin/chromium").exists() {
        return skip("chromium not installed (apt-get install -y chromium)");
    }
    if !repo_root()
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return skip("browser test packages not installed (cd tests/browser && npm ci)");
    }
    let emu = spawn().await;
    let rt = emu.tokens_for(ADELE_UPN, SCOPE).await["refresh_token"]
        .as_str()
        .expect("rt")
        .to_owned();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (host_url, _task) = spawn_host(Host {
        emu_base: emu.base().to_owned(),
        rt: rt.clone(),
        requests: requests.clone(),
        wrong_token_for: None,
    })
    .await;
    let my_res = format!("https://{CONTOSO_MY_HOST}");
    let root_res = format!("https://{CONTOSO_SHAREPOINT_HOST}");
    let cfg = json!({
        "scenario": "pick",
        "hostUrl": host_url,
        "emulatorUrl": emu.base(),
        "resource": my_res,
        "baseUrl": format!("{}/_sharepoint/{CONTOSO_MY_HOST}", emu.base()),
        "options": options(&host_url),
        "screenshots": repo_root().join("target/browser-screenshots"),
    });
    let r = scenario(cfg).await;

    // The handshake came from the emulator's origin; authenticate named the OneDrive host at
    // start, again after the emulator clock moved past the token's expiry (a 401), and the root
    // host when adele opened Sites.
    let log = r["log"].as_array().expect("log");
    assert_eq!(log[0]["initialize"], emu.base(), "{log:?}");
    let auths: Vec<&str> = log
        .iter()
        .filter(|e| e["command"] == "authenticate")
        .map(|e| e["resource"].as_str().expect("resource"))
        .collect();
    assert_eq!(auths, vec![my_res.as_str(), &my_res, &root_res], "{log:?}");
    assert!(
        log.iter()
            .all(|e| e["command"] != "authenticate" || e["type"] == "SharePoint")
    );
    assert!(
        log.iter().any(|e| e["notification"] == "page-loaded"),
        "{log:?}"
    );
    assert_eq!(
        *requests.lock().unwrap(),
        vec![
            ("form".to_owned(), my_res.clone()),
            ("authenticate".to_owned(), my_res.clone()),
            ("authenticate".to_owned(), my_res.clone()),
            ("authenticate".to_owned(), root_res.clone()),
        ]
    );

    // The picked items: two files from the OneDrive, a folder from the site's library, each
    // with its drive id and the SharePoint endpoint of its host; Graph resolves each of them.
    let picked = r["picked"].as_array().expect("picked items");
    let names: Vec<&str> = picked.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec!["Report.docx", "Budget.xlsx", "Policies"],
        "{picked:?}"
    );
    let graph = emu.tokens_for(ADELE_UPN, SCOPE).await["access_token"]
        .as_str()
        .expect("graph token")
        .to_owned();
    for (item, host, folder) in [
        (&picked[0], CONTOSO_MY_HOST, false),
        (&picked[1], CONTOSO_MY_HOST, false),
        (&picked[2], CONTOSO_SHAREPOINT_HOST, true),
    ] {
        assert_eq!(
            item["@sharePoint.endpoint"],
            format!("https://{host}/_api/v2.0"),
            "{item}"
        );
        assert_eq!(item["folder"].is_object(), folder, "{item}");
        assert_eq!(item["file"].is_object(), !folder, "{item}");
        let drive = item["parentReference"]["driveId"]
            .as_str()
            .expect("driveId");
        let id = item["id"].as_str().expect("id");
        let v: Value = emu
            .http
            .get(format!("{}/v1.0/drives/{drive}/items/{id}", emu.base()))
            .bearer_auth(&graph)
            .send()
            .await
            .expect("graph")
            .json()
            .await
            .expect("json");
        assert_eq!(v["name"], item["name"], "{v}");
        assert_eq!(
            v["parentReference"]["id"], item["parentReference"]["id"],
            "{v}"
        );
    }
    assert_eq!(
        picked[0]["file"]["mimeType"],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    assert_eq!(picked[2]["parentReference"]["driveType"], "documentLibrary");
    // No token is handed to the host other than through authenticate results: the items carry none.
    let text = serde_json::to_string(picked).unwrap();
    assert!(!text.contains("eyJ"), "{text}");
}

#[tokio::test]
async fn a_real_browser_shows_a_wrong_token_for_the_second_host_and_cancels() {
    if !Path::new("/usr/bin/chromium").exists() {
        return skip("chromium not installed (apt-get install -y chromium)");
    }
    if !repo_root()
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return skip("browser test packages not installed (cd tests/browser && npm ci)");
    }
    let emu = spawn().await;
    let rt = emu.tokens_for(ADELE_UPN, SCOPE).await["refresh_token"]
        .as_str()
        .expect("rt")
        .to_owned();
    let root_res = format!("https://{CONTOSO_SHAREPOINT_HOST}");
    let (host_url, _task) = spawn_host(Host {
        emu_base: emu.base().to_owned(),
        rt,
        requests: Arc::new(Mutex::new(Vec::new())),
        wrong_token_for: Some(root_res.clone()),
    })
    .await;
    let mut opts = options(&host_url);
    opts["selection"] = json!({"mode": "single"});
    let r = scenario(json!({
        "scenario": "wrong-second-host",
        "hostUrl": host_url,
        "emulatorUrl": emu.base(),
        "resource": format!("https://{CONTOSO_MY_HOST}"),
        "baseUrl": format!("{}/_sharepoint/{CONTOSO_MY_HOST}", emu.base()),
        "options": opts,
        "screenshots": repo_root().join("target/browser-screenshots"),
    }))
    .await;
    // The OneDrive host's token handed out for the root host: SharePoint refuses it, the picker
    // asks once more, gets the same wrong token, and says what happened.
    let err = r["error"].as_str().expect("error text");
    assert!(
        err.contains("contoso.sharepoint.com answered 401") && err.contains("Invalid audience Uri"),
        "{err}"
    );
    let log = r["log"].as_array().expect("log");
    let root_auths = log
        .iter()
        .filter(|e| e["command"] == "authenticate" && e["resource"] == root_res.as_str())
        .count();
    assert_eq!(root_auths, 2, "{log:?}");
    // Cancel sends close.
    assert_eq!(r["closed"], true, "{r}");
    assert!(log.iter().any(|e| e["command"] == "close"), "{log:?}");
    assert!(r["picked"].is_null(), "{r}");
}

#[tokio::test]
async fn a_real_browser_asks_again_for_a_token_about_to_expire() {
    if !Path::new("/usr/bin/chromium").exists() {
        return skip("chromium not installed (apt-get install -y chromium)");
    }
    if !repo_root()
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return skip("browser test packages not installed (cd tests/browser && npm ci)");
    }
    // Tokens live 250 s, less than the 5 minutes of margin the picker keeps: it asks the host
    // before each listing instead of waiting for SharePoint's 401.
    let emu = spawn_with(grantd_emulator::EmulatorConfig {
        access_token_lifetime: Some(250),
        ..Default::default()
    })
    .await;
    let rt = emu.tokens_for(ADELE_UPN, SCOPE).await["refresh_token"]
        .as_str()
        .expect("rt")
        .to_owned();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (host_url, _task) = spawn_host(Host {
        emu_base: emu.base().to_owned(),
        rt,
        requests: requests.clone(),
        wrong_token_for: None,
    })
    .await;
    let my_res = format!("https://{CONTOSO_MY_HOST}");
    emu.control.reset_counters().await.expect("reset counters");
    let r = scenario(json!({
        "scenario": "near-expiry",
        "hostUrl": host_url,
        "emulatorUrl": emu.base(),
        "resource": my_res,
        "baseUrl": format!("{}/_sharepoint/{CONTOSO_MY_HOST}", emu.base()),
        "options": options(&host_url),
        "screenshots": repo_root().join("target/browser-screenshots"),
    }))
    .await;
    let log = r["log"].as_array().expect("log");
    let auths = log
        .iter()
        .filter(|e| e["command"] == "authenticate" && e["resource"] == my_res.as_str())
        .count();
    // At start, before the root listing, before the Documents listing.
    assert_eq!(auths, 3, "{log:?}");
    // Each listing was one request: none was refused and retried.
    let c = emu.control.counters().await.expect("counters");
    let listings: u64 = c
        .sharepoint_requests
        .iter()
        .filter(|(k, _)| k.starts_with("GET contoso-my.sharepoint.com /_api/v2.0/"))
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(listings, 2, "{:?}", c.sharepoint_requests);
}
