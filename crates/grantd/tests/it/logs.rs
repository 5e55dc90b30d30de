//! No secret reaches the logs: captures every log event at TRACE (all targets except the
//! emulator's own) during connect → forced refresh → proxy → refresh on expiry → a failed refresh
//! → GET with `refresh_token=true`, then looks for every token, code, client secret, session
//! token, PKCE verifier, API key and the encryption key involved.
//!
//! Also: at the default level a 5xx answer is still logged as tower-http's `TraceLayer` logged it
//! (`grantd::front` keeps that event when the layer is not in use).
//!
//! Capture: a global subscriber, installed once for the test binary, records only events emitted
//! on a thread that switched capture on, up to that thread's level, into that thread's buffer.
//! (A scoped `set_default` subscriber misses callsites whose interest other test threads cached
//! first.) The tests run on tokio's `current_thread` runtime and serve requests on it
//! (`Shape::inline()`, not the default serving threads), so grantd's server tasks (spawned by
//! `TestApp`) run on the test's thread and are captured. `log` records are bridged into
//! `tracing` by the global subscriber too.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use grantd_emulator::browser::{Browser, Consent};
use grantd_emulator::seed;
use reqwest::Method;
use serde_json::Value;
use tracing::Level;
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::DynFilterFn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::support::app::{SECRET, TestApp};

/// grantd serving on the test's own thread (see the module's comment).
async fn inline_app() -> TestApp {
    TestApp::spawn_configured(Default::default(), |c| {
        c.runtime = grantd::runtime::Shape::inline()
    })
    .await
    .expect("SQLite is always available")
}

/// A shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A `MakeWriter` appending to the capturing thread's buffer.
struct ThreadSink;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ThreadSink {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        SINK.with(|s| s.borrow().clone()).unwrap_or_default()
    }
}

thread_local! {
    /// The most verbose level captured on this thread; `None`: capture off.
    static CAPTURING: Cell<Option<Level>> = const { Cell::new(None) };
    static SINK: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Captures this thread's events up to `level` into a new buffer, returned.
fn capture(level: Level) -> Captured {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(ThreadSink)
            .with_ansi(false)
            // Spans' fields are printed with every event inside them.
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            // Decided per event (never cached per callsite): other threads hit the same
            // callsites with capture off.
            .with_filter(
                DynFilterFn::new(|m, _| {
                    CAPTURING
                        .with(Cell::get)
                        .is_some_and(|max| *m.level() <= max)
                        && !m.target().starts_with("grantd_emulator")
                })
                .with_callsite_filter(|_| Interest::sometimes()),
            );
        tracing_subscriber::registry()
            .with(layer)
            .try_init()
            .expect("no other global subscriber in the test binary");
    });
    let buf = Captured::default();
    SINK.with(|s| *s.borrow_mut() = Some(buf.clone()));
    CAPTURING.with(|c| c.set(Some(level)));
    buf
}

/// Adds the string values found at `keys` (anywhere in `v`) to `out`.
fn collect_strings(v: &Value, keys: &[&str], out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let (true, Some(s)) = (keys.contains(&k.as_str()), x.as_str()) {
                    out.push((k.clone(), s.to_owned()));
                }
                collect_strings(x, keys, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, keys, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_appears_in_logs_at_any_level() {
    let logs = capture(Level::TRACE);
    let mut secrets: Vec<(String, String)> = vec![
        ("api key".into(), SECRET.into()),
        ("client secret".into(), seed::DEV_CLIENT_SECRET.into()),
    ];

    let app = inline_app().await;
    secrets.push((
        "encryption key".into(),
        secrecy::ExposeSecret::expose_secret(&app.state.core.config.encryption_key).to_owned(),
    ));
    app.create_integration("one-drive", "User.Read,Files.ReadWrite.All,Sites.Read.All")
        .await;
    let token = app.session("u", &["one-drive"]).await;
    secrets.push(("session token".into(), token.clone()));
    let authorize = app.start_connect("one-drive", &token, "").await;

    // The PKCE verifier lives only in grantd's store: read the flow and put it back.
    let state = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let flow = app
        .state
        .core
        .store()
        .take_oauth_flow(&state)
        .await
        .unwrap()
        .expect("the flow is stored");
    secrets.push((
        "PKCE verifier".into(),
        flow.code_verifier.expose_secret().to_owned(),
    ));
    app.state.core.store().put_oauth_flow(flow).await.unwrap();

    let outcome = Browser::new()
        .authorize(
            &authorize,
            Some((seed::ADELE_UPN, seed::PASSWORD)),
            Consent::Accept,
        )
        .await
        .unwrap();
    secrets.push(("authorization code".into(), outcome.code().unwrap()));
    let (status, _) = app.deliver(&outcome).await;
    assert_eq!(status, 200);
    let id = app.connection_ids("u").await.pop().unwrap();

    let token_keys = ["access_token", "refresh_token", "id_token"];
    let (_, first) = app
        .connection("one-drive", &id, "&refresh_token=true")
        .await;
    collect_strings(&first, &token_keys, &mut secrets);

    // A forced refresh, then the proxy.
    let (status, forced) = app
        .connection("one-drive", &id, "&force_refresh=true&refresh_token=true")
        .await;
    assert_eq!(status, 200, "{forced}");
    collect_strings(&forced, &token_keys, &mut secrets);
    let r = app
        .proxy(Method::GET, "/v1.0/me/drives", "one-drive", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Expiry: the proxy refreshes on its own.
    app.clock.advance(2 * 3600);
    app.emu.control().advance_clock(2 * 3600).await.unwrap();
    let r = app
        .proxy(Method::GET, "/v1.0/me", "one-drive", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, after) = app
        .connection("one-drive", &id, "&refresh_token=true")
        .await;
    assert_eq!(status, 200, "{after}");
    collect_strings(&after, &token_keys, &mut secrets);

    // A refresh Microsoft refuses (the user's sessions were revoked): the failure is logged.
    app.emu
        .control()
        .revoke_user(seed::ADELE_UPN)
        .await
        .unwrap();
    app.clock.advance(2 * 3600);
    app.emu.control().advance_clock(2 * 3600).await.unwrap();
    let (status, failed) = app.connection("one-drive", &id, "").await;
    assert!((400..500).contains(&status), "{status} {failed}");

    drop(app);
    CAPTURING.with(|c| c.set(None));
    let text = logs.text();
    if let Ok(path) = std::env::var("GRANTD_TEST_LOGS_OUT") {
        std::fs::write(path, &text).unwrap();
    }
    // The capture saw grantd's own events from each step, inside their request spans.
    for expected in [
        "grantd::connections::flow",
        "path=/oauth/callback",
        "refreshed connection",
        "refresh failed",
        "path=/proxy/v1.0/me/drives",
        "tower_http::trace",
    ] {
        assert!(
            text.contains(expected),
            "no {expected:?} in the logs:\n{text}"
        );
    }
    secrets.retain(|(_, s)| s.len() >= 8);
    secrets.sort();
    secrets.dedup();
    assert!(
        secrets.iter().filter(|(k, _)| k == "access_token").count() >= 3,
        "{:?}",
        secrets.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    assert!(secrets.iter().any(|(k, _)| k == "refresh_token"));
    let leaks: Vec<&str> = secrets
        .iter()
        .filter(|(_, s)| text.contains(s.as_str()))
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(leaks.is_empty(), "secrets found in the logs: {leaks:?}");
}

/// At the default level (`info`) the request span and tower-http's debug events are off, so
/// `grantd::front` serves without tower-http's `TraceLayer`; a 5xx answer is still logged with
/// that layer's event, word for word: target, level, message, fields and their order.
#[tokio::test(flavor = "current_thread")]
async fn a_5xx_answer_is_logged_at_the_default_level() {
    let logs = capture(Level::INFO);
    let app = inline_app().await;
    app.create_integration("one-drive", "User.Read").await;
    let id = app.connect("one-drive", "u", seed::ADELE_UPN).await;
    app.emu
        .control()
        .add_fault(&grantd_emulator::faults::FaultSpec {
            status: Some(500),
            count: Some(1),
            ..grantd_emulator::faults::FaultSpec::new(grantd_emulator::faults::FaultScope::Graph)
        })
        .await
        .unwrap();
    let r = app
        .proxy(Method::GET, "/v1.0/me", "one-drive", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = app
        .proxy(Method::GET, "/v1.0/me", "one-drive", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(app);
    CAPTURING.with(|c| c.set(None));
    let text = logs.text();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("response failed"))
        .collect();
    assert_eq!(failed.len(), 1, "one 5xx, one line:\n{text}");
    let line = failed[0];
    let at = line
        .find(" ERROR tower_http::trace::on_failure: response failed classification=Status code: 500 Internal Server Error latency=")
        .unwrap_or_else(|| panic!("{line}"));
    let latency = &line[at..].rsplit("latency=").next().unwrap();
    let ms = latency
        .strip_suffix(" ms")
        .unwrap_or_else(|| panic!("{line}"));
    ms.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
    assert!(
        !text.contains("request{"),
        "the request span is off at info:\n{text}"
    );
    assert!(!text.contains("processing request"), "{text}");
}
