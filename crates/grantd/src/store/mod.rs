//! Persistence. `Store` is a cheap-to-clone handle with domain methods; callers never see a pool,
//! a backend or SQL. Inside, a backend per database (`sqlite.rs`, `postgres.rs`) owns the SQL.
//! Secret fields (client secrets, credentials, PKCE verifiers) are sealed with `crypto::Cipher`
//! on the way in and opened on the way out, so they are encrypted at rest and plain in memory.
//!
//! Every operation that must be atomic is one method owning its transaction.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::crypto::Cipher;
use crate::model::{
    ConnectSession, Connection, ConnectionFilter, ConnectionId, Credentials, EndUser, Integration,
    NewConnectSession, NewConnection, NewIntegration, OAuthFlow, ProviderConfigKey, Tags,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("stored data could not be decrypted")]
    Crypto(#[source] crate::crypto::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL (use sqlite://… or postgres://…)")]
    UnsupportedUrl,
    /// A unique constraint failed, e.g. an integration key already taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The change is not allowed in the current state, e.g. renaming an integration that has
    /// connections.
    #[error("{0}")]
    Refused(&'static str),
    /// A connection named in a multi-connection write does not exist (nothing was written).
    #[error("connection {0} does not exist")]
    MissingConnection(String),
}

/// Which fields `patch_connection` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPatch {
    pub end_user: Option<EndUser>,
    pub tags: Option<Tags>,
    /// `Some(None)` clears the override.
    pub webhook_url_override: Option<Option<String>>,
}

#[derive(Clone)]
pub struct Store {
    cipher: Cipher,
    // backend handle: added by the store implementation
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

#[allow(unused_variables)]
impl Store {
    /// Connects (`sqlite://path?mode=rwc`, `sqlite::memory:`, `postgres://…`) and applies
    /// pending migrations.
    pub async fn connect(url: &str, cipher: Cipher) -> Result<Store, Error> {
        todo!()
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        todo!()
    }

    /// Readiness: a trivial query.
    pub async fn ping(&self) -> Result<(), Error> {
        todo!()
    }

    // ---- integrations ----

    /// `Error::Conflict("integration")` when the key is taken.
    pub async fn create_integration(&self, new: NewIntegration) -> Result<Integration, Error> {
        todo!()
    }
    pub async fn get_integration(&self, key: &ProviderConfigKey) -> Result<Option<Integration>, Error> {
        todo!()
    }
    /// Ordered by creation time, oldest first.
    pub async fn list_integrations(&self) -> Result<Vec<Integration>, Error> {
        todo!()
    }
    /// Replaces every field of the integration `key` with `new` (which may carry a new key).
    /// `Ok(None)` if `key` does not exist; `Error::Conflict` if the new key is taken;
    /// `Error::Refused` when renaming an integration that has connections.
    pub async fn update_integration(
        &self,
        key: &ProviderConfigKey,
        new: NewIntegration,
    ) -> Result<Option<Integration>, Error> {
        todo!()
    }
    /// Deletes the integration and soft-deletes its connections. `false` if it did not exist.
    pub async fn delete_integration(&self, key: &ProviderConfigKey) -> Result<bool, Error> {
        todo!()
    }

    // ---- connect sessions ----

    pub async fn create_connect_session(&self, new: NewConnectSession) -> Result<ConnectSession, Error> {
        todo!()
    }
    /// The session whose token hashes to `token_hash`, if it exists and has not expired at `now`.
    pub async fn get_connect_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ConnectSession>, Error> {
        todo!()
    }
    pub async fn get_connect_session_by_id(&self, id: i64) -> Result<Option<ConnectSession>, Error> {
        todo!()
    }
    pub async fn delete_connect_session(&self, token_hash: &str) -> Result<bool, Error> {
        todo!()
    }

    // ---- OAuth flows in flight ----

    pub async fn put_oauth_flow(&self, flow: OAuthFlow) -> Result<(), Error> {
        todo!()
    }
    /// Reads and deletes the flow in one step (single use). Expired flows are returned too: the
    /// caller decides, so it can say "expired" rather than "unknown".
    pub async fn take_oauth_flow(&self, state: &str) -> Result<Option<OAuthFlow>, Error> {
        todo!()
    }

    // ---- connections ----

    /// Creates the connection, or overwrites credentials/config/end user/tags of the live one with
    /// the same (key, connection id) — clearing its auth failure and bumping its version.
    /// Returns the stored connection and whether it was created.
    pub async fn upsert_connection(&self, new: NewConnection) -> Result<(Connection, bool), Error> {
        todo!()
    }
    pub async fn get_connection(
        &self,
        key: &ProviderConfigKey,
        connection_id: &ConnectionId,
    ) -> Result<Option<Connection>, Error> {
        todo!()
    }
    pub async fn get_connection_by_id(&self, id: i64) -> Result<Option<Connection>, Error> {
        todo!()
    }
    /// Newest first (created_at desc, id desc); deleted connections excluded.
    pub async fn list_connections(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>, Error> {
        todo!()
    }
    /// Soft delete. `false` if there was no live connection.
    pub async fn delete_connection(
        &self,
        key: &ProviderConfigKey,
        connection_id: &ConnectionId,
    ) -> Result<bool, Error> {
        todo!()
    }
    /// Replaces (`merge == false`) or shallow-merges the metadata of every listed connection,
    /// atomically: if one is missing, `Error::MissingConnection` and nothing is written.
    pub async fn set_metadata(
        &self,
        key: &ProviderConfigKey,
        connection_ids: &[ConnectionId],
        metadata: &Value,
        merge: bool,
    ) -> Result<(), Error> {
        todo!()
    }
    /// `false` if there was no live connection.
    pub async fn patch_connection(
        &self,
        key: &ProviderConfigKey,
        connection_id: &ConnectionId,
        patch: ConnectionPatch,
    ) -> Result<bool, Error> {
        todo!()
    }
    pub async fn touch_last_fetched(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error> {
        todo!()
    }
    /// Writes refreshed credentials if the connection is still at `expected_version` (compare and
    /// swap), clears its auth failure, sets `last_refreshed_at`, bumps the version and returns the
    /// new connection. `Ok(None)` when the version moved (someone else wrote first) or the
    /// connection is gone.
    pub async fn save_refreshed(
        &self,
        id: i64,
        expected_version: i64,
        credentials: &Credentials,
        at: DateTime<Utc>,
    ) -> Result<Option<Connection>, Error> {
        todo!()
    }
    /// Records (or clears with `None`) why the connection's credentials stopped working.
    pub async fn set_auth_failure(
        &self,
        id: i64,
        failure: Option<&crate::model::AuthFailure>,
    ) -> Result<(), Error> {
        todo!()
    }
    /// Count of live connections (benchmarks, dashboard).
    pub async fn count_connections(&self) -> Result<u64, Error> {
        todo!()
    }
}
