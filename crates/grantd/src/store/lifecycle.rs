//! Token lifecycle persistence: the cross-instance refresh lock (`RefreshLock`), proactive-refresh
//! claiming with leases, and the webhook outbox, with their SQL (written once, see `db.rs`).
//!
//! The refresh lock is the one place the databases behave differently on purpose (`RowLock`):
//! on PostgreSQL `lock_for_refresh` opens a transaction and locks the connection row
//! (`SELECT … FOR UPDATE`) until the lock is saved, failed or dropped, so instances sharing a
//! database refresh one connection one at a time; the new credentials are committed before the
//! lock returns them. On SQLite (one process) the in-process lock of `connections::refresh`
//! already serialises refreshes, so the lock is a compare-and-swap on `version` and holds no
//! transaction across the token call. The writes themselves are the same statements on both.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Postgres, SqlitePool, Transaction};

use super::db::{Begin, Claim, Db, Jsonb, Ts, execute, fetch};
use super::queries::connection_cols;
use super::rows::ConnectionRow;
use super::{Error, Store, micros, to_json};
use crate::crypto::Sealed;
use crate::model::{AuthFailure, Connection, Credentials};

/// Transient-failure state of a connection's refreshes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryState {
    /// Consecutive failed refreshes (reset by a success or a reconnect).
    pub failures: i32,
    /// No refresh before this time (backoff), unless forced.
    pub retry_at: Option<DateTime<Utc>>,
}

/// The rows a lock reads: the connection and its retry state.
#[derive(sqlx::FromRow)]
struct LockedRow {
    #[sqlx(flatten)]
    row: ConnectionRow,
    refresh_failures: i32,
    refresh_retry_at: Option<DateTime<Utc>>,
}

/// The values written by a successful refresh.
struct RefreshedWrite {
    pub credentials: Sealed,
    pub expires_at: Option<DateTime<Utc>>,
    /// JSON object.
    pub connection_config: String,
    pub at: DateTime<Utc>,
}

/// The values written by a failed refresh.
struct FailureWrite {
    /// Terminal: the JSON `AuthFailure` to record (stops refreshes until a reconnect).
    pub auth_failure: Option<String>,
    /// Transient: when the next attempt may run.
    pub retry_at: Option<DateTime<Utc>>,
    /// A webhook to enqueue in the same transaction.
    pub webhook: Option<(String, String)>,
    pub at: DateTime<Utc>,
}

/// One undelivered webhook.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxItem {
    pub id: i64,
    pub url: String,
    /// The exact JSON body that is signed and sent.
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// What a `RefreshLock` holds between reading the connection and writing the outcome.
enum RowLock {
    /// SQLite: nothing but the version read; the write is a compare-and-swap on it.
    Sqlite(SqlitePool),
    /// PostgreSQL: the open transaction holding `SELECT … FOR UPDATE` on the row.
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` in the lock's transaction (SQLite: a short one opened now; PostgreSQL: the one
/// holding the row lock) and commits it when the body succeeds.
macro_rules! in_lock_tx {
    ($lock:expr, |$tx:ident| $body:expr) => {
        match $lock {
            RowLock::Sqlite(pool) => {
                let mut $tx = pool.begin_write().await?;
                let out = $body;
                $tx.commit().await.map_err(Error::Database)?;
                out
            }
            RowLock::Postgres(mut $tx) => {
                let out = $body;
                $tx.commit().await.map_err(Error::Database)?;
                out
            }
        }
    };
}

/// A connection locked for refreshing: its current (re-read) state, and the lock.
pub struct RefreshLock {
    lock: RowLock,
    store: Store,
    pub connection: Connection,
    pub retry: RetryState,
}

/// Why a refresh failed, as recorded by `RefreshLock::fail`.
#[derive(Debug, Clone)]
pub enum RefreshFailure {
    /// Retry after `retry_at`; the connection is not marked broken.
    Transient { retry_at: DateTime<Utc> },
    /// The grant is dead or the app is misconfigured: record it, stop refreshing until a
    /// reconnect, and enqueue `webhook` (url, body) atomically with it.
    Terminal {
        failure: AuthFailure,
        webhook: Option<(String, String)>,
    },
}

impl std::fmt::Debug for RefreshLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshLock")
            .field("connection", &self.connection.id)
            .field("version", &self.connection.version)
            .finish_non_exhaustive()
    }
}

impl RefreshLock {
    /// Commits the refreshed credentials and connection config (clearing the auth failure, retry
    /// state and lease), then releases the lock. `Ok(None)` if the connection changed under a
    /// CAS-only lock (SQLite: a reconnect wrote first).
    pub async fn save(
        self,
        credentials: &Credentials,
        connection_config: &Value,
        at: DateTime<Utc>,
    ) -> Result<Option<Connection>, Error> {
        let w = RefreshedWrite {
            credentials: self.store.seal_credentials(credentials)?,
            expires_at: credentials.expires_at.map(micros),
            connection_config: to_json(connection_config),
            at: micros(at),
        };
        let (store, id) = (self.store, self.connection.id);
        let saved = save(self.lock, id, self.connection.version, &w).await;
        // After the commit, so no reader caches the old row (store::cache).
        store.cache.forget_connection_id(id);
        saved?.map(|r| store.connection(r)).transpose()
    }

    /// Records the failure and releases the lock.
    pub async fn fail(self, failure: RefreshFailure, at: DateTime<Utc>) -> Result<(), Error> {
        let w = match failure {
            RefreshFailure::Transient { retry_at } => FailureWrite {
                auth_failure: None,
                retry_at: Some(micros(retry_at)),
                webhook: None,
                at: micros(at),
            },
            RefreshFailure::Terminal { failure, webhook } => FailureWrite {
                auth_failure: Some(to_json(&failure)),
                retry_at: None,
                webhook,
                at: micros(at),
            },
        };
        let id = self.connection.id;
        let queued = w.webhook.is_some();
        let result = fail(self.lock, id, self.connection.version, &w).await;
        self.store.cache.forget_connection_id(id);
        if queued && result.is_ok() {
            self.store.webhook_queued().await;
        }
        result
    }
}

const SAVE_REFRESHED: &str = concat!(
    "UPDATE connections SET credentials = $1, credentials_key_id = $2, expires_at = $3, \
     connection_config = $4, auth_failure = NULL, refresh_failures = 0, \
     refresh_retry_at = NULL, refresh_lease_until = NULL, last_refreshed_at = $5, \
     updated_at = $5, version = version + 1 \
     WHERE id = $6 AND version = $7 AND deleted_at IS NULL RETURNING ",
    connection_cols!()
);

const INSERT_WEBHOOK: &str = "INSERT INTO webhook_outbox (url, body, next_attempt_at, created_at) \
     VALUES ($1, $2, $3, $3)";

async fn save(
    lock: RowLock,
    id: i64,
    version: i64,
    w: &RefreshedWrite,
) -> Result<Option<ConnectionRow>, Error> {
    let row = in_lock_tx!(lock, |tx| {
        sqlx::query_as::<_, ConnectionRow>(SAVE_REFRESHED)
            .bind(&w.credentials.bytes)
            .bind(&w.credentials.key_id)
            .bind(Ts::opt(w.expires_at))
            .bind(Jsonb(&w.connection_config))
            .bind(Ts(w.at))
            .bind(id)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::Database)?
    });
    Ok(row)
}

async fn fail(lock: RowLock, id: i64, version: i64, w: &FailureWrite) -> Result<(), Error> {
    in_lock_tx!(lock, |tx| {
        sqlx::query(
            "UPDATE connections SET auth_failure = COALESCE($1, auth_failure), \
             refresh_failures = refresh_failures + 1, refresh_retry_at = $2, \
             refresh_lease_until = NULL, updated_at = $3 WHERE id = $4 AND version = $5",
        )
        .bind(w.auth_failure.as_deref().map(Jsonb))
        .bind(Ts::opt(w.retry_at))
        .bind(Ts(w.at))
        .bind(id)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(Error::Database)?;
        if let Some((url, body)) = &w.webhook {
            sqlx::query(INSERT_WEBHOOK)
                .bind(url)
                .bind(body)
                .bind(Ts(w.at))
                .execute(&mut *tx)
                .await
                .map_err(Error::Database)?;
        }
    });
    Ok(())
}

const LOCK_SELECT: &str = concat!(
    "SELECT ",
    connection_cols!(),
    ", refresh_failures, refresh_retry_at FROM connections WHERE id = $1 AND deleted_at IS NULL"
);

impl Store {
    /// Locks the live connection `id` for a refresh and re-reads it. `None` if it is gone. On
    /// PostgreSQL this waits for another instance's refresh of the same connection to commit.
    pub async fn lock_for_refresh(&self, id: i64) -> Result<Option<RefreshLock>, Error> {
        let (lock, locked) = match &*self.db {
            Db::Sqlite(pool) => {
                let locked = sqlx::query_as::<_, LockedRow>(LOCK_SELECT)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(Error::Database)?;
                (RowLock::Sqlite(pool.clone()), locked)
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin_write().await?;
                let sql = format!("{LOCK_SELECT} FOR UPDATE");
                let locked = sqlx::query_as::<_, LockedRow>(&sql)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Error::Database)?;
                (RowLock::Postgres(tx), locked)
            }
        };
        let Some(locked) = locked else {
            return Ok(None);
        };
        Ok(Some(RefreshLock {
            lock,
            store: self.clone(),
            connection: self.connection(locked.row)?,
            retry: RetryState {
                failures: locked.refresh_failures,
                retry_at: locked.refresh_retry_at,
            },
        }))
    }

    /// Commits a second result of a refresh already saved at `version` (the SharePoint token and
    /// the refresh token that call rotated), only if nobody wrote the connection since. `None` if
    /// another writer moved it.
    pub async fn save_refreshed_if_unchanged(
        &self,
        id: i64,
        version: i64,
        credentials: &Credentials,
        connection_config: &Value,
        at: DateTime<Utc>,
    ) -> Result<Option<Connection>, Error> {
        let w = RefreshedWrite {
            credentials: self.seal_credentials(credentials)?,
            expires_at: credentials.expires_at.map(micros),
            connection_config: to_json(connection_config),
            at: micros(at),
        };
        let lock = match &*self.db {
            Db::Sqlite(pool) => RowLock::Sqlite(pool.clone()),
            Db::Postgres(pool) => RowLock::Postgres(pool.begin_write().await?),
        };
        let saved = save(lock, id, version, &w).await;
        self.cache.forget_connection_id(id);
        saved?.map(|r| self.connection(r)).transpose()
    }

    /// The connection's transient-failure state (without locking).
    pub async fn retry_state(&self, id: i64) -> Result<Option<RetryState>, Error> {
        let row: Option<(i32, Option<DateTime<Utc>>)> = fetch!(
            &self.db,
            fetch_optional::<_>(
                "SELECT refresh_failures, refresh_retry_at FROM connections WHERE id = $1",
                id,
            )
        )?;
        Ok(row.map(|(failures, retry_at)| RetryState { failures, retry_at }))
    }

    /// Leases up to `limit` connections due for a proactive refresh at `now`: live, not failed,
    /// not backing off, not leased, and either expiring before `expiring_before` or with a
    /// refresh token last used before `idle_before`. The lease lasts until `lease_until`; a
    /// successful refresh clears it. Instances sharing a PostgreSQL database never get the same
    /// connection (`FOR UPDATE SKIP LOCKED` plus the lease).
    pub async fn claim_due_refreshes(
        &self,
        now: DateTime<Utc>,
        expiring_before: Option<DateTime<Utc>>,
        idle_before: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<i64>, Error> {
        let sql = self.db.claim_sql(Claim {
            table: "connections",
            lease: "refresh_lease_until",
            filter: "deleted_at IS NULL AND auth_failure IS NULL \
                AND (refresh_lease_until IS NULL OR refresh_lease_until <= $2) \
                AND (refresh_retry_at IS NULL OR refresh_retry_at <= $2) \
                AND (COALESCE(last_refreshed_at, created_at) <= $3 \
                     OR ($4 IS NOT NULL AND expires_at <= $4))",
            order: "COALESCE(last_refreshed_at, created_at), id",
            limit: "$5",
            returning: "id",
        });
        fetch!(
            &self.db,
            scalar fetch_all::<_>(
                &sql,
                Ts(micros(lease_until)),
                Ts(micros(now)),
                Ts(micros(idle_before)),
                Ts::opt(expiring_before.map(micros)),
                i64::from(limit),
            )
        )
    }

    /// Queues a webhook for delivery (due at `at`).
    pub async fn enqueue_webhook(
        &self,
        url: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        execute!(&self.db, INSERT_WEBHOOK, url, body, Ts(micros(at)))?;
        self.webhook_queued().await;
        Ok(())
    }

    /// After a commit that queued a webhook: wakes this instance's outbox runner and, on
    /// PostgreSQL, every other instance's (`NOTIFY grantd_outbox`, heard by `cache::listen`).
    /// Best effort: the runner's timer still finds the row if a wake-up is lost.
    pub(super) async fn webhook_queued(&self) {
        self.cache.outbox_wake.notify_one();
        if let Err(e) = self.db.announce_webhook().await {
            tracing::warn!(error = %e, "could not announce a queued webhook to other instances");
        }
    }

    /// Hands a WebSocket outcome to the instance holding the socket (PostgreSQL `NOTIFY`);
    /// `Ok(false)` when there is no other instance to tell (SQLite).
    pub async fn announce_ws_outcome(&self, payload: &str) -> Result<bool, Error> {
        self.db
            .announce_ws_outcome(payload)
            .await
            .map_err(Error::Database)
    }

    /// WebSocket outcomes announced by any instance, as `{"id", "frame"}` JSON.
    pub fn ws_outcomes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.cache.ws_outcomes.subscribe()
    }

    /// Resolves when a webhook may have been queued (by this instance or, on PostgreSQL, another)
    /// since the last call: the outbox runner waits on it between passes.
    pub async fn webhook_wakeup(&self) {
        self.cache.outbox_wake.notified().await;
    }

    /// Leases up to `limit` webhooks due at `now` until `lease_until`, oldest first.
    pub async fn claim_due_webhooks(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, Error> {
        let sql = self.db.claim_sql(Claim {
            table: "webhook_outbox",
            lease: "lease_until",
            filter: "delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= $2 \
                AND (lease_until IS NULL OR lease_until <= $2)",
            order: "id",
            limit: "$3",
            returning: "id, url, body, attempts",
        });
        let mut items: Vec<OutboxItem> = fetch!(
            &self.db,
            fetch_all::<_>(
                &sql,
                Ts(micros(lease_until)),
                Ts(micros(now)),
                i64::from(limit),
            )
        )?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    pub async fn webhook_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error> {
        execute!(
            &self.db,
            "UPDATE webhook_outbox SET delivered_at = $1, attempts = attempts + 1, \
             lease_until = NULL WHERE id = $2",
            Ts(micros(at)),
            id,
        )?;
        Ok(())
    }

    /// Records a failed attempt; retried at `next_attempt_at`, or abandoned when `None`.
    pub async fn webhook_failed(
        &self,
        id: i64,
        next_attempt_at: Option<DateTime<Utc>>,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        execute!(
            &self.db,
            "UPDATE webhook_outbox SET attempts = attempts + 1, lease_until = NULL, \
             last_error = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
             abandoned_at = CASE WHEN $2 IS NULL THEN $3 ELSE NULL END WHERE id = $4",
            error,
            Ts::opt(next_attempt_at.map(micros)),
            Ts(micros(at)),
            id,
        )?;
        Ok(())
    }

    /// Clears the `misconfigured` auth failures (and retry state) of the live connections of
    /// integration `provider_config_key`, e.g. after its client secret was replaced, so their
    /// next read refreshes again. `reconnect` failures stay: only the user can fix those.
    /// Returns how many connections were cleared.
    pub async fn clear_misconfigured(
        &self,
        provider_config_key: &str,
        at: DateTime<Utc>,
    ) -> Result<usize, Error> {
        let ids: Vec<i64> = fetch!(
            &self.db,
            scalar fetch_all::<_>(
                "UPDATE connections SET auth_failure = NULL, refresh_failures = 0, \
                 refresh_retry_at = NULL, updated_at = $1, version = version + 1 \
                 WHERE provider_config_key = $2 AND deleted_at IS NULL \
                 AND auth_failure ->> 'kind' = 'misconfigured' \
                 RETURNING id",
                Ts(micros(at)),
                provider_config_key,
            )
        )?;
        for id in &ids {
            self.cache.forget_connection_id(*id);
        }
        Ok(ids.len())
    }

    /// Restarts the idle clock of connection `id` (at `version`, as just written by a
    /// reconnect): its `last_refreshed_at` becomes `at`, since the reconnect issued a new token
    /// pair, so the proactive job's idle period counts from it. `false` if the connection moved
    /// on meanwhile (e.g. a refresh, which sets the time itself).
    pub async fn restart_idle_clock(
        &self,
        id: i64,
        version: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let done = execute!(
            &self.db,
            "UPDATE connections SET last_refreshed_at = $1 \
             WHERE id = $2 AND version = $3 AND deleted_at IS NULL",
            Ts(micros(at)),
            id,
            version,
        )
        .map(|n| n == 1);
        self.cache.forget_connection_id(id);
        done
    }

    /// (pending, delivered, abandoned) webhook counts.
    pub async fn webhook_counts(&self) -> Result<(u64, u64, u64), Error> {
        let (p, d, a): (i64, i64, i64) = fetch!(
            &self.db,
            fetch_one::<_>(
                "SELECT COUNT(CASE WHEN delivered_at IS NULL AND abandoned_at IS NULL THEN 1 END), \
                 COUNT(delivered_at), COUNT(abandoned_at) FROM webhook_outbox",
            )
        )?;
        let n = |v: i64| v.max(0) as u64;
        Ok((n(p), n(d), n(a)))
    }
}
