//! Fresh databases for tests. `TestDb::new(DbKind::…)` gives a database nobody else uses and
//! removes it when dropped: a SQLite file in its own temp directory, an in-memory SQLite URL, or
//! a PostgreSQL database created from `TEST_DATABASE_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`) as `grantd_test_<random>` and dropped afterwards.
//!
//! Without `TEST_DATABASE_URL`, the PostgreSQL variant prints
//! `SKIPPED: TEST_DATABASE_URL not set (<what>)` and returns `None`, so the test passes; with
//! `GRANTD_TEST_NO_SKIP=1` (CI) it panics instead.
#![allow(dead_code)] // shared by several test modules; each uses a part

use std::path::PathBuf;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// `sqlite::memory:`: every `Store::connect` to the URL gets its own empty database.
    SqliteMemory,
    /// A SQLite file in a fresh temp directory.
    SqliteFile,
    /// A fresh PostgreSQL database (needs `TEST_DATABASE_URL`).
    Postgres,
}

impl DbKind {
    pub fn is_postgres(self) -> bool {
        self == DbKind::Postgres
    }
    /// Whether reconnecting to the URL reaches the same data (not so for `:memory:`).
    pub fn is_persistent(self) -> bool {
        self != DbKind::SqliteMemory
    }
}

enum Cleanup {
    None,
    Dir(PathBuf),
    PgDatabase { admin_url: String, name: String },
}

/// A database for one test; removed on drop.
pub struct TestDb {
    kind: DbKind,
    url: String,
    cleanup: Cleanup,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .finish()
    }
}

/// `None` (after printing why) when the kind is unavailable here; see the module doc.
pub async fn fresh_database(kind: DbKind, what: &str) -> Option<TestDb> {
    TestDb::new(kind, what).await
}

impl TestDb {
    /// A fresh database of `kind`. `what` names the caller in the skip message.
    pub async fn new(kind: DbKind, what: &str) -> Option<TestDb> {
        match kind {
            DbKind::SqliteMemory => Some(TestDb::sqlite_memory()),
            DbKind::SqliteFile => Some(TestDb::sqlite_file()),
            DbKind::Postgres => TestDb::postgres(what).await,
        }
    }

    pub fn sqlite_memory() -> TestDb {
        TestDb {
            kind: DbKind::SqliteMemory,
            url: "sqlite::memory:".into(),
            cleanup: Cleanup::None,
        }
    }

    pub fn sqlite_file() -> TestDb {
        let dir =
            std::env::temp_dir().join(format!("grantd-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.join("grantd.db").display());
        TestDb {
            kind: DbKind::SqliteFile,
            url,
            cleanup: Cleanup::Dir(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` when `TEST_DATABASE_URL` is unset (panics instead
    /// when `GRANTD_TEST_NO_SKIP=1`).
    pub async fn postgres(what: &str) -> Option<TestDb> {
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(u) if !u.trim().is_empty() => u,
            _ => {
                let reason = format!("SKIPPED: TEST_DATABASE_URL not set ({what})");
                if std::env::var("GRANTD_TEST_NO_SKIP").is_ok_and(|v| v == "1") {
                    panic!("{reason}, and GRANTD_TEST_NO_SKIP=1");
                }
                println!("{reason}");
                return None;
            }
        };
        let name = format!("grantd_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to TEST_DATABASE_URL: {e}"));
        // CREATE DATABASE copies template1 and fails if another session is copying it at the
        // same moment; parallel tests retry.
        let mut attempt = 0;
        loop {
            match sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut admin)
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    eprintln!("CREATE DATABASE {name} failed ({e}); retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("CREATE DATABASE {name}: {e}"),
            }
        }
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        Some(TestDb {
            kind: DbKind::Postgres,
            url: url.to_string(),
            cleanup: Cleanup::PgDatabase { admin_url, name },
        })
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The URL to give `Store::connect` (or `GRANTD_DATABASE_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory holding the SQLite file (and its `-wal`/`-shm`), for file-level checks.
    pub fn sqlite_dir(&self) -> Option<&std::path::Path> {
        match &self.cleanup {
            Cleanup::Dir(d) => Some(d),
            _ => None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.cleanup, Cleanup::None) {
            Cleanup::None => {}
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::PgDatabase { admin_url, name } => {
                // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            if let Err(e) = sqlx::query(&sql).execute(&mut admin).await {
                                eprintln!("could not drop test database {name}: {e}");
                            }
                            let _ = admin.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}
