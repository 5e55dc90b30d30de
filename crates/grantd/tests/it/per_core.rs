//! Serving threads (`runtime::Flavor::PerCore`, the default shape): requests are answered by
//! single-threaded runtimes of their own, each accepting from the same socket with its own
//! upstream pool, while background work stays on the caller's runtime. Checked over HTTP:
//! - many connections at once, proxied calls and credential fetches, all answered right;
//! - stopping lets a call in flight finish, refuses new connections, writes `last_fetched_at`,
//!   and leaves the store usable: database connections opened while answering requests (on a
//!   serving thread's runtime) do not break the ones that outlive those threads (PostgreSQL:
//!   each connection's socket belongs to the runtime that opened it);
//! - `GRANTD_RUNTIME` and `GRANTD_WORKER_THREADS` are read and checked.

use std::sync::Arc;

use grantd::runtime::{Flavor, Shape};
use grantd_emulator::faults::{FaultScope, FaultSpec};
use grantd_emulator::seed;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::app::{Opts, SECRET, TestApp};
use crate::support::db::DbKind;

const KEY: &str = "one-drive";

async fn app(kind: DbKind, threads: usize) -> Option<(TestApp, String)> {
    let app = TestApp::spawn_configured(
        Opts {
            db: kind,
            ..Default::default()
        },
        |c| c.runtime = Shape::per_core(threads),
    )
    .await?;
    app.create_integration(KEY, "User.Read,Files.ReadWrite.All")
        .await;
    let id = app.connect(KEY, "user-1", seed::ADELE_UPN).await;
    Some((app, id))
}

async fn many_connections_at_once(kind: DbKind) {
    let Some((app, id)) = app(kind, 3).await else {
        return;
    };
    let app = Arc::new(app);
    let drives = app.proxy_json("/v1.0/me/drives", KEY, &id).await;
    let calls: Vec<_> = (0..48)
        .map(|i| {
            let (app, id, drives) = (app.clone(), id.clone(), drives.clone());
            tokio::spawn(async move {
                // A client of its own: a connection of its own.
                let http = reqwest::Client::new();
                for _ in 0..5 {
                    if i % 2 == 0 {
                        let r = http
                            .get(format!("{}/proxy/v1.0/me/drives", app.url))
                            .bearer_auth(SECRET)
                            .header("Provider-Config-Key", KEY)
                            .header("Connection-Id", &id)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        assert_eq!(r.json::<serde_json::Value>().await.unwrap(), drives);
                    } else {
                        let r = http
                            .get(format!(
                                "{}/connections/{id}?provider_config_key={KEY}",
                                app.url
                            ))
                            .bearer_auth(SECRET)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        let c: serde_json::Value = r.json().await.unwrap();
                        assert_eq!(c["connection_id"], id.as_str());
                        assert!(c["credentials"]["access_token"].is_string());
                    }
                }
            })
        })
        .collect();
    for c in calls {
        c.await.unwrap();
    }
}

#[tokio::test]
async fn many_connections_at_once_sqlite() {
    many_connections_at_once(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn many_connections_at_once_postgres() {
    many_connections_at_once(DbKind::Postgres).await;
}

async fn stopping(kind: DbKind) {
    let Some((app, id)) = app(kind, 2).await else {
        return;
    };
    // A second server on the same state, which this test stops.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(grantd::server::start(
        app.state.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();

    // Requests that read the database at once, on both threads: the store opens connections
    // there (on PostgreSQL, sockets registered with those threads' runtimes).
    let lists: Vec<_> = (0..64)
        .map(|_| {
            let (http, url) = (reqwest::Client::new(), url.clone());
            tokio::spawn(async move {
                let r = http
                    .get(format!("{url}/connections?endUserId=user-1"))
                    .bearer_auth(SECRET)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            })
        })
        .collect();
    for l in lists {
        l.await.unwrap();
    }
    let conn: serde_json::Value = http
        .get(format!("{url}/connections/{id}?provider_config_key={KEY}"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fetched = conn["last_fetched_at"].as_str().unwrap().to_owned();

    // A proxied call the emulator holds for a while, in flight when the server is told to stop.
    let ctl = app.emu.control();
    ctl.add_fault(&FaultSpec {
        latency_ms: Some(400),
        count: Some(1),
        path_prefix: Some("/v1.0/me/drive/root".into()),
        ..FaultSpec::new(FaultScope::Graph)
    })
    .await
    .unwrap();
    let before = tenant_requests(&app).await;
    let slow = {
        let (http, url, id) = (http.clone(), url.clone(), id.clone());
        tokio::spawn(async move {
            http.get(format!("{url}/proxy/v1.0/me/drive/root"))
                .bearer_auth(SECRET)
                .header("Provider-Config-Key", KEY)
                .header("Connection-Id", &id)
                .send()
                .await
                .unwrap()
        })
    };
    // Readiness: the emulator has the call (counted before its latency).
    while tenant_requests(&app).await == before {
        tokio::task::yield_now().await;
    }
    stop.send(()).unwrap();
    let r = slow.await.unwrap();
    assert_eq!(r.status(), 200, "the call in flight is answered");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["name"], "root");
    server.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a stopped server accepts no connection"
    );

    // Written at shutdown, and every pooled database connection still works: more queries at
    // once than the pool holds.
    let core = &app.state.core;
    let stored = core
        .store()
        .get_connection(
            &grantd::model::ProviderConfigKey::parse(KEY).unwrap(),
            &grantd::model::ConnectionId::parse(&id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored
            .last_fetched_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        Some(
            chrono::DateTime::parse_from_rfc3339(&fetched)
                .unwrap()
                .to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    );
    for _ in 0..3 {
        let reads: Vec<_> = (0..32)
            .map(|_| {
                let core = core.clone();
                tokio::spawn(async move { core.ping().await })
            })
            .collect();
        for r in reads {
            r.await
                .unwrap()
                .expect("the store answers after the serving threads ended");
        }
    }
    // And the first server (same store) still answers.
    let (status, _) = app.connection(KEY, &id, "").await;
    assert_eq!(status, 200);
}

async fn tenant_requests(app: &TestApp) -> u64 {
    let c = app.emu.control().counters().await.unwrap();
    c.tenant_requests.values().sum()
}

#[tokio::test]
async fn stopping_finishes_calls_in_flight_and_keeps_the_store_sqlite() {
    stopping(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn stopping_finishes_calls_in_flight_and_keeps_the_store_postgres() {
    stopping(DbKind::Postgres).await;
}

/// The mechanism under the tests above, on its own: every answer comes from a serving thread
/// (never the caller's runtime), a stop refuses new connections, and the parked threads end
/// when `Parked` is dropped. The service answers with the name of the thread it ran on.
#[tokio::test]
async fn every_answer_comes_from_a_serving_thread() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let make = || {
        |_peer| {
            tower::service_fn(|_req| async {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                Ok::<_, std::convert::Infallible>(axum::http::Response::new(
                    axum::body::Body::from(name),
                ))
            })
        }
    };
    let server = tokio::spawn(async move {
        grantd::listener::serve_per_core(
            listener,
            2,
            &Shape::per_core(2),
            make,
            &grantd::config::Limits::default(),
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });
    let calls: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                // A client of its own: a connection of its own.
                let http = reqwest::Client::new();
                let mut names = Vec::new();
                for _ in 0..4 {
                    let r = http.get(format!("http://{addr}/")).send().await.unwrap();
                    names.push(r.text().await.unwrap());
                }
                names
            })
        })
        .collect();
    let mut names = std::collections::BTreeSet::new();
    for c in calls {
        names.extend(c.await.unwrap());
    }
    assert!(
        names.iter().all(|n| n.starts_with("grantd-serve-")),
        "answered on {names:?}"
    );
    stop.send(()).unwrap();
    let parked = server.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    drop(parked);
}

#[test]
fn runtime_variables_are_read_and_checked() {
    let read = |vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut problems = Vec::new();
        let shape = Shape::from_vars(
            &|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            &mut problems,
        );
        (shape, problems)
    };
    let (d, problems) = read(&[]);
    assert!(problems.is_empty());
    assert_eq!(d.flavor, Flavor::PerCore);
    assert_eq!(
        d.serve_threads(),
        std::thread::available_parallelism().unwrap().get()
    );
    let (s, _) = read(&[
        ("GRANTD_RUNTIME", "per_core"),
        ("GRANTD_WORKER_THREADS", "3"),
    ]);
    assert_eq!(s.serve_threads(), 3);
    let (s, _) = read(&[
        ("GRANTD_RUNTIME", "multi_thread"),
        ("GRANTD_WORKER_THREADS", "3"),
    ]);
    assert_eq!((s.flavor, s.serve_threads()), (Flavor::MultiThread, 0));
    let (s, _) = read(&[("GRANTD_RUNTIME", "current_thread")]);
    assert_eq!((s.flavor, s.serve_threads()), (Flavor::CurrentThread, 0));
    let (_, problems) = read(&[
        ("GRANTD_RUNTIME", "fast"),
        ("GRANTD_WORKER_THREADS", "0"),
        ("GRANTD_EVENT_INTERVAL", "many"),
    ]);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("per_core"), "{problems:?}");
}

/// The binary reads them before anything else: `config check` shows the shape, and a wrong
/// value stops it with the variable named.
#[tokio::test]
async fn the_binary_reports_its_runtime_shape() {
    use crate::cli::grantd_env;
    let key = grantd::crypto::Cipher::generate_key();
    let base = [
        ("GRANTD_SECRET_KEY", SECRET),
        ("GRANTD_ENCRYPTION_KEY", key.as_str()),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        env
    };
    let o = grantd_env(
        &with(&[
            ("GRANTD_RUNTIME", "per_core"),
            ("GRANTD_WORKER_THREADS", "3"),
        ]),
        &["config", "check"],
    )
    .await;
    assert!(
        crate::cli::ok(&o).contains("runtime = per_core (3 serving threads)\n"),
        "{}",
        o.stdout
    );
    let o = grantd_env(
        &with(&[("GRANTD_RUNTIME", "multi_thread")]),
        &["config", "check"],
    )
    .await;
    assert!(
        crate::cli::ok(&o).contains("runtime = multi_thread ("),
        "{}",
        o.stdout
    );
    let o = grantd_env(&with(&[("GRANTD_RUNTIME", "fast")]), &["config", "check"]).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("GRANTD_RUNTIME: \"fast\" must be per_core"),
        "{}",
        o.stderr
    );
}
