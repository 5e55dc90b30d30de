//! Token lifecycle persistence: the cross-instance refresh lock (`RefreshLock`), proactive-refresh
//! claiming with leases, and the webhook outbox. `LifecycleBackend` is the backend seam; its SQL
//! lives next to each backend (`sqlite/lifecycle.rs`, `postgres/lifecycle.rs`).
//!
//! On PostgreSQL `lock_for_refresh` opens a transaction and locks the connection row
//! (`SELECT … FOR UPDATE`) until the lock is saved, failed or dropped, so instances sharing a
//! database refresh one connection one at a time; the new credentials are committed before the
//! lock returns them. On SQLite (one process) the in-process lock of `connections::refresh`
//! already serialises refreshes, so the lock is a compare-and-swap on `version`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::backend::ConnectionRow;
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
pub(super) struct LockedRow {
    pub row: ConnectionRow,
    pub retry: RetryState,
}

/// The values written by a successful refresh.
pub(super) struct RefreshedWrite {
    pub credentials: Sealed,
    pub expires_at: Option<DateTime<Utc>>,
    /// JSON object.
    pub connection_config: String,
    pub at: DateTime<Utc>,
}

/// The values written by a failed refresh.
pub(super) struct FailureWrite {
    /// Terminal: the JSON `AuthFailure` to record (stops refreshes until a reconnect).
    pub auth_failure: Option<String>,
    /// Transient: when the next attempt may run.
    pub retry_at: Option<DateTime<Utc>>,
    /// A webhook to enqueue in the same transaction.
    pub webhook: Option<(String, String)>,
    pub at: DateTime<Utc>,
}

/// The query behind `claim_due_refreshes`.
pub(super) struct ClaimQuery {
    pub now: DateTime<Utc>,
    /// Claim connections whose access token expires before this (proactive refresh), if set.
    pub expiring_before: Option<DateTime<Utc>>,
    /// Claim connections whose refresh token was last used before this (idle refresh).
    pub idle_before: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub limit: i64,
}

/// One undelivered webhook.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub url: String,
    /// The exact JSON body that is signed and sent.
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// A row lock (or CAS guard) held across one refresh. Dropping it releases the lock without
/// writing anything.
#[async_trait]
pub(super) trait RefreshTx: Send {
    /// Writes the refreshed credentials (CAS on the locked version) and releases the lock.
    async fn save(self: Box<Self>, w: &RefreshedWrite) -> Result<Option<ConnectionRow>, Error>;
    /// Records a failure (and enqueues its webhook) and releases the lock.
    async fn fail(self: Box<Self>, w: &FailureWrite) -> Result<(), Error>;
}

#[async_trait]
pub(super) trait LifecycleBackend: Send + Sync {
    async fn lock_for_refresh(
        &self,
        id: i64,
    ) -> Result<Option<(Box<dyn RefreshTx>, LockedRow)>, Error>;
    async fn retry_state(&self, id: i64) -> Result<Option<RetryState>, Error>;
    /// Leases up to `limit` due connections (skipping ones leased or locked elsewhere); returns
    /// their ids.
    async fn claim_due_refreshes(&self, q: &ClaimQuery) -> Result<Vec<i64>, Error>;
    async fn enqueue_webhook(&self, url: &str, body: &str, at: DateTime<Utc>) -> Result<(), Error>;
    async fn claim_webhooks(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, Error>;
    async fn webhook_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error>;
    /// `next_attempt_at == None` abandons the webhook.
    async fn webhook_failed(
        &self,
        id: i64,
        next_attempt_at: Option<DateTime<Utc>>,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error>;
    /// Counts of (pending, delivered, abandoned) webhooks.
    async fn webhook_counts(&self) -> Result<(u64, u64, u64), Error>;
    /// Sets `last_refreshed_at` of connection `id` if still at `version`.
    async fn restart_idle_clock(
        &self,
        id: i64,
        version: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, Error>;
    /// Clears `misconfigured` auth failures of the integration's live connections; their ids.
    async fn clear_misconfigured(
        &self,
        provider_config_key: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<i64>, Error>;
}

/// A connection locked for refreshing: its current (re-read) state, and the lock.
pub struct RefreshLock {
    tx: Box<dyn RefreshTx>,
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
        let store = self.store;
        let saved = self.tx.save(&w).await;
        // After the commit, so no reader caches the old row (store::cache).
        store.cache.forget_connection_id(self.connection.id);
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
        let result = self.tx.fail(&w).await;
        self.store.cache.forget_connection_id(self.connection.id);
        result
    }
}

impl Store {
    /// Locks the live connection `id` for a refresh and re-reads it. `None` if it is gone. On
    /// PostgreSQL this waits for another instance's refresh of the same connection to commit.
    pub async fn lock_for_refresh(&self, id: i64) -> Result<Option<RefreshLock>, Error> {
        let Some((tx, locked)) = self.backend.lifecycle().lock_for_refresh(id).await? else {
            return Ok(None);
        };
        Ok(Some(RefreshLock {
            tx,
            store: self.clone(),
            connection: self.connection(locked.row)?,
            retry: locked.retry,
        }))
    }

    /// The connection's transient-failure state (without locking).
    pub async fn retry_state(&self, id: i64) -> Result<Option<RetryState>, Error> {
        self.backend.lifecycle().retry_state(id).await
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
        self.backend
            .lifecycle()
            .claim_due_refreshes(&ClaimQuery {
                now: micros(now),
                expiring_before: expiring_before.map(micros),
                idle_before: micros(idle_before),
                lease_until: micros(lease_until),
                limit: i64::from(limit),
            })
            .await
    }

    /// Queues a webhook for delivery (due at `at`).
    pub async fn enqueue_webhook(
        &self,
        url: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.backend
            .lifecycle()
            .enqueue_webhook(url, body, micros(at))
            .await
    }

    /// Leases up to `limit` webhooks due at `now` until `lease_until`, oldest first.
    pub async fn claim_due_webhooks(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, Error> {
        self.backend
            .lifecycle()
            .claim_webhooks(micros(now), micros(lease_until), i64::from(limit))
            .await
    }

    pub async fn webhook_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error> {
        self.backend
            .lifecycle()
            .webhook_delivered(id, micros(at))
            .await
    }

    /// Records a failed attempt; retried at `next_attempt_at`, or abandoned when `None`.
    pub async fn webhook_failed(
        &self,
        id: i64,
        next_attempt_at: Option<DateTime<Utc>>,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.backend
            .lifecycle()
            .webhook_failed(id, next_attempt_at.map(micros), error, micros(at))
            .await
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
        let ids = self
            .backend
            .lifecycle()
            .clear_misconfigured(provider_config_key, micros(at))
            .await?;
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
        let done = self
            .backend
            .lifecycle()
            .restart_idle_clock(id, version, micros(at))
            .await?;
        self.cache.forget_connection_id(id);
        Ok(done)
    }

    /// (pending, delivered, abandoned) webhook counts.
    pub async fn webhook_counts(&self) -> Result<(u64, u64, u64), Error> {
        self.backend.lifecycle().webhook_counts().await
    }
}
