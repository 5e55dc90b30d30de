//! `last_fetched_at` is written in batches, not on every `GET /connections/{id}`: the response
//! carries the time of the call, another instance (a second `Store` on the same database) sees
//! it after a flush, and stopping the server writes what is pending. SQLite and PostgreSQL.

use grantd::crypto::Cipher;
use grantd::model::{ConnectionId, ProviderConfigKey};
use grantd::store::Store;
use grantd_emulator::seed;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::app::{Opts, SECRET, TestApp};
use crate::support::db::DbKind;

async fn app(kind: DbKind) -> Option<(TestApp, String)> {
    let app = TestApp::spawn_with(Opts {
        db: kind,
        ..Default::default()
    })
    .await?;
    app.create_integration("one-drive", "User.Read,Files.ReadWrite.All")
        .await;
    let id = app.connect("one-drive", "user-1", seed::ADELE_UPN).await;
    Some((app, id))
}

/// Another grantd instance's view: a fresh `Store` on the same database, reading the row.
async fn stored_last_fetched(app: &TestApp, id: &str) -> Option<String> {
    let cipher = Cipher::new(app.state.core.config.encryption_key.expose_secret(), &[])
        .expect("the test key is valid");
    let other = Store::connect(app.db.url(), cipher)
        .await
        .expect("second store connects");
    last_fetched(&other, id).await
}

/// `last_fetched_at` as `store` reads it, at the API's precision (milliseconds).
async fn last_fetched(store: &Store, id: &str) -> Option<String> {
    let conn = store
        .get_connection(
            &ProviderConfigKey::parse("one-drive").unwrap(),
            &ConnectionId::parse(id).unwrap(),
        )
        .await
        .unwrap()
        .expect("connection exists");
    conn.last_fetched_at
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// The `last_fetched_at` of a `GET /connections/{id}` response, normalised.
fn fetched_at(conn: &serde_json::Value) -> String {
    let s = conn["last_fetched_at"]
        .as_str()
        .unwrap_or_else(|| panic!("last_fetched_at set: {conn}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .to_utc()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

async fn written_by_a_flush(kind: DbKind) {
    let Some((app, id)) = app(kind).await else {
        return;
    };
    let (status, first) = app.connection("one-drive", &id, "").await;
    assert_eq!(status, 200, "{first}");
    app.clock.advance(90);
    let (_, second) = app.connection("one-drive", &id, "").await;
    let (t1, t2) = (fetched_at(&first), fetched_at(&second));
    assert!(
        t2 > t1,
        "each response carries the time of its call: {t1} then {t2}"
    );

    // This instance's reads show the latest value, written or not.
    assert_eq!(
        last_fetched(app.state.core.store(), &id).await.as_deref(),
        Some(&*t2)
    );

    app.state.core.store().flush_fetched().await.unwrap();
    assert_eq!(stored_last_fetched(&app, &id).await.as_deref(), Some(&*t2));

    // A later flush never moves the stored value back: an older pending value is ignored.
    app.state.core.store().note_fetched(
        second["id"].as_i64().unwrap(),
        app.state.core.clock.now() - chrono::TimeDelta::hours(1),
    );
    app.state.core.store().flush_fetched().await.unwrap();
    assert_eq!(stored_last_fetched(&app, &id).await.as_deref(), Some(&*t2));
}

#[tokio::test]
async fn last_fetched_at_written_by_a_flush_sqlite() {
    written_by_a_flush(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn last_fetched_at_written_by_a_flush_postgres() {
    written_by_a_flush(DbKind::Postgres).await;
}

async fn written_at_shutdown(kind: DbKind) {
    let Some((app, id)) = app(kind).await else {
        return;
    };
    // A second server on the same state (same store), which this test stops.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(grantd::server::start(
        app.state.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let conn: serde_json::Value = app
        .http
        .get(format!(
            "{url}/connections/{id}?provider_config_key=one-drive"
        ))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = fetched_at(&conn);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(stored_last_fetched(&app, &id).await.as_deref(), Some(&*t));
}

#[tokio::test]
async fn last_fetched_at_written_at_shutdown_sqlite() {
    written_at_shutdown(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn last_fetched_at_written_at_shutdown_postgres() {
    written_at_shutdown(DbKind::Postgres).await;
}
