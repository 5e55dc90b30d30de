//! Persistence. `Store` is a cheap-to-clone handle with domain methods; callers never see a pool
//! or SQL. Secret fields (client secrets, credentials, PKCE verifiers) are sealed with
//! `crypto::Cipher` on the way in and opened on the way out, so they are encrypted at rest and
//! plain in memory. Every operation that must be atomic is one method owning its transaction.
//!
//! Every statement is written once for SQLite and PostgreSQL (`db.rs` explains how). Where to put
//! things:
//! - a new table or column: a new migration template in `migrations/` (see `migrations.rs`), its
//!   row type in `rows.rs`;
//! - a new query: a `Db` method in `queries.rs` (integrations, sessions, flows, connections), or
//!   next to its feature's `Store` methods (`lifecycle.rs`, `app_credentials.rs`, `rekey.rs`,
//!   `touch.rs`, `outbox_view.rs`), then a `Store` method here that seals/opens and forgets cache
//!   entries;
//! - something the two databases must do differently: one small method on `Db` in `db.rs` (like
//!   `for_update`, `claim_sql`), never a second copy of the query.

mod app_credentials;
pub mod cache;
mod dashboard_sessions;
mod db;
pub mod lifecycle;
mod migrations;
pub mod outbox_view;
mod picker;
mod queries;
pub mod rekey;
mod rows;
pub mod sync;
mod throttle;
mod touch;

pub use lifecycle::{OutboxItem, RefreshFailure, RefreshLock, RetryState};
pub use outbox_view::OutboxEntry;
pub use sync::{PageCounts, RecordChange, RecordRow, RecordsQuery, SyncDrive, SyncPage};

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use self::db::Db;
use self::rows::{
    ConnectionRow, ConnectionWrite, DEFAULT_LIST_LIMIT, EndUserColumns, FlowRow, IntegrationRow,
    IntegrationWrite, ListQuery, PatchWrite, SessionRow,
};
use crate::crypto::{Cipher, Sealed};
use crate::model::{
    AuthFailure, ClientSecret, CodeVerifier, ConnectSession, Connection, ConnectionFilter,
    ConnectionId, Credentials, EndUser, Integration, NewConnectSession, NewConnection,
    NewIntegration, OAuthFlow, ProviderConfigKey, Tags,
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

impl Error {
    /// Whether the database could not be reached or dropped the connection (a restart, a
    /// failover, no free connection), as opposed to refusing the statement: retrying the same
    /// request later can succeed, and nothing was changed by this one.
    pub fn is_unavailable(&self) -> bool {
        let Error::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE class 08 (connection exception), 57P01–57P03 (shutting down, crashed,
            // starting up), 53300 (too many connections).
            sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300")
            }),
            _ => false,
        }
    }
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
    db: Arc<Db>,
    /// Read-through cache for the hot paths; writes below forget what they change.
    cache: Arc<cache::Cache>,
    /// `last_fetched_at` values not yet written (`touch.rs`).
    touches: Arc<touch::Touches>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.db.name())
            .finish_non_exhaustive()
    }
}

// Seal contexts: bound as associated data, so a ciphertext opens only in its own column.
const CTX_CLIENT_SECRET: &str = "client_secret";
const CTX_CREDENTIALS: &str = "credentials";
const CTX_CODE_VERIFIER: &str = "code_verifier";

/// Separates the fields of a connection's `search_text`.
const SEARCH_SEP: char = '\u{1f}';

/// Both databases keep microseconds; truncating up front makes what a write returns equal what a
/// later read returns.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    // Serialising plain data (maps, strings, `Value`) into a String cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// Parses stored JSON. The error names the column, never the content (it may be sensitive).
fn from_json<T: DeserializeOwned>(s: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(s)
        .map_err(|_| Error::Corrupt(format!("{what} is not valid JSON of the expected shape")))
}

fn from_json_opt<T: DeserializeOwned>(s: Option<&str>, what: &str) -> Result<Option<T>, Error> {
    s.map(|s| from_json(s, what)).transpose()
}

fn key(s: &str) -> Result<ProviderConfigKey, Error> {
    ProviderConfigKey::parse(s)
        .map_err(|_| Error::Corrupt("stored provider config key is invalid".into()))
}

fn connection_id(s: &str) -> Result<ConnectionId, Error> {
    ConnectionId::parse(s).map_err(|_| Error::Corrupt("stored connection id is invalid".into()))
}

/// The columns extracted from a connection's end user, for filtering and search.
fn end_user_columns(connection_id: &ConnectionId, end_user: Option<&EndUser>) -> EndUserColumns {
    let mut search = connection_id.as_str().to_lowercase();
    if let Some(eu) = end_user {
        for part in [Some(&eu.id), eu.email.as_ref(), eu.display_name.as_ref()]
            .into_iter()
            .flatten()
        {
            search.push(SEARCH_SEP);
            search.push_str(&part.to_lowercase());
        }
    }
    EndUserColumns {
        json: end_user.map(to_json),
        id: end_user.map(|e| e.id.clone()),
        organization_id: end_user
            .and_then(|e| e.organization.as_ref())
            .map(|o| o.id.clone()),
        search_text: search,
    }
}

impl Store {
    /// Connects (`sqlite://path?mode=rwc`, `sqlite:path`, `sqlite::memory:`, `postgres://…`) and
    /// applies pending migrations. A SQLite file and its directory are created if missing; an
    /// in-memory SQLite database lives as long as the `Store` (one connection, never recycled).
    pub async fn connect(url: &str, cipher: Cipher) -> Result<Store, Error> {
        let db = Db::connect(url).await?;
        let cache = Arc::new(cache::Cache::default());
        if let Db::Postgres(_) = db {
            // The LISTEN/NOTIFY seam: other instances' writes reach this cache (`cache.rs`).
            cache::listen(url.to_owned(), &cache);
        }
        Ok(Store {
            cipher,
            db: Arc::new(db),
            cache,
            touches: Arc::default(),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.db.name()
    }

    /// Readiness: a trivial query.
    pub async fn ping(&self) -> Result<(), Error> {
        self.db.ping().await
    }

    fn seal(&self, context: &str, plaintext: &[u8]) -> Sealed {
        self.cipher.seal(context, plaintext)
    }

    fn open(&self, context: &str, sealed: &Sealed) -> Result<Vec<u8>, Error> {
        self.cipher.open(context, sealed).map_err(Error::Crypto)
    }

    fn open_string(&self, context: &'static str, sealed: &Sealed) -> Result<String, Error> {
        String::from_utf8(self.open(context, sealed)?)
            .map_err(|_| Error::Corrupt(format!("decrypted {context} is not UTF-8")))
    }

    // ---- integrations ----

    fn integration_write(&self, new: &NewIntegration) -> IntegrationWrite {
        IntegrationWrite {
            unique_key: new.unique_key.as_str().to_owned(),
            provider: new.provider.clone(),
            display_name: new.display_name.clone(),
            client_id: new.client_id.clone(),
            client_secret: self.seal(
                CTX_CLIENT_SECRET,
                new.client_secret.expose_secret().as_bytes(),
            ),
            scopes: to_json(&new.scopes),
            forward_webhooks: new.forward_webhooks,
            integration_config: to_json(&new.integration_config),
            at: now(),
        }
    }

    fn integration(&self, r: IntegrationRow) -> Result<Integration, Error> {
        Ok(Integration {
            id: r.id,
            unique_key: key(&r.unique_key)?,
            provider: r.provider,
            display_name: r.display_name,
            client_id: r.client_id,
            client_secret: ClientSecret::new(self.open_string(
                CTX_CLIENT_SECRET,
                &Sealed {
                    key_id: r.client_secret_key_id,
                    bytes: r.client_secret,
                },
            )?),
            scopes: from_json(&r.scopes, "integration scopes")?,
            forward_webhooks: r.forward_webhooks,
            integration_config: from_json(&r.integration_config, "integration config")?,
            app_credential: Default::default(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    /// `Error::Conflict("integration")` when the key is taken.
    pub async fn create_integration(&self, new: NewIntegration) -> Result<Integration, Error> {
        let row = self
            .db
            .insert_integration(&self.integration_write(&new))
            .await?;
        self.with_app_credential(self.integration(row)?).await
    }
    pub async fn get_integration(
        &self,
        key: &ProviderConfigKey,
    ) -> Result<Option<Integration>, Error> {
        match self.db.get_integration(key.as_str()).await? {
            Some(r) => Ok(Some(self.with_app_credential(self.integration(r)?).await?)),
            None => Ok(None),
        }
    }
    /// Ordered by creation time, oldest first.
    pub async fn list_integrations(&self) -> Result<Vec<Integration>, Error> {
        let list = self
            .db
            .list_integrations()
            .await?
            .into_iter()
            .map(|r| self.integration(r))
            .collect::<Result<Vec<_>, _>>()?;
        self.with_app_credentials(list).await
    }
    /// Replaces every field of the integration `key` with `new` (which may carry a new key).
    /// `Ok(None)` if `key` does not exist; `Error::Conflict` if the new key is taken;
    /// `Error::Refused` when renaming an integration that has connections.
    pub async fn update_integration(
        &self,
        key: &ProviderConfigKey,
        new: NewIntegration,
    ) -> Result<Option<Integration>, Error> {
        let updated = self
            .db
            .update_integration(key.as_str(), &self.integration_write(&new))
            .await;
        self.cache.forget_integration(key.as_str());
        match updated? {
            Some(r) => Ok(Some(self.with_app_credential(self.integration(r)?).await?)),
            None => Ok(None),
        }
    }
    /// Deletes the integration and soft-deletes its connections. `false` if it did not exist.
    pub async fn delete_integration(&self, key: &ProviderConfigKey) -> Result<bool, Error> {
        let deleted = self.db.delete_integration(key.as_str(), now()).await;
        self.cache.forget_integration(key.as_str());
        deleted
    }

    // ---- connect sessions ----

    fn session(&self, r: SessionRow) -> Result<ConnectSession, Error> {
        let reconnect = match (&r.reconnect_provider_config_key, &r.reconnect_connection_id) {
            (Some(k), Some(c)) => Some((key(k)?, connection_id(c)?)),
            _ => None,
        };
        Ok(ConnectSession {
            id: r.id,
            end_user: from_json_opt(r.end_user.as_deref(), "session end user")?,
            organization: from_json_opt(r.organization.as_deref(), "session organization")?,
            allowed_integrations: from_json_opt(
                r.allowed_integrations.as_deref(),
                "session allowed integrations",
            )?,
            integrations_config_defaults: from_json(
                &r.integrations_config_defaults,
                "session config defaults",
            )?,
            reconnect,
            tags: from_json(&r.tags, "session tags")?,
            webhook_url_override: r.webhook_url_override,
            overrides: from_json_opt(r.overrides.as_deref(), "session overrides")?
                .unwrap_or(Value::Null),
            expires_at: r.expires_at,
            created_at: r.created_at,
        })
    }

    pub async fn create_connect_session(
        &self,
        new: NewConnectSession,
    ) -> Result<ConnectSession, Error> {
        let row = SessionRow {
            id: 0,
            token_hash: new.token_hash,
            end_user: new.end_user.as_ref().map(to_json),
            organization: new.organization.as_ref().map(to_json),
            allowed_integrations: new.allowed_integrations.as_ref().map(to_json),
            integrations_config_defaults: to_json(&new.integrations_config_defaults),
            reconnect_provider_config_key: new
                .reconnect
                .as_ref()
                .map(|(k, _)| k.as_str().to_owned()),
            reconnect_connection_id: new.reconnect.as_ref().map(|(_, c)| c.as_str().to_owned()),
            tags: to_json(&new.tags),
            webhook_url_override: new.webhook_url_override,
            expires_at: micros(new.expires_at),
            created_at: now(),
            overrides: (!new.overrides.is_null()).then(|| to_json(&new.overrides)),
        };
        let row = self.db.insert_connect_session(&row).await?;
        self.session(row)
    }
    /// The session whose token hashes to `token_hash`, if it exists and has not expired at `now`.
    pub async fn get_connect_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ConnectSession>, Error> {
        self.db
            .get_connect_session(token_hash, micros(now))
            .await?
            .map(|r| self.session(r))
            .transpose()
    }
    /// By id, expired or not.
    pub async fn get_connect_session_by_id(
        &self,
        id: i64,
    ) -> Result<Option<ConnectSession>, Error> {
        self.db
            .get_connect_session_by_id(id)
            .await?
            .map(|r| self.session(r))
            .transpose()
    }
    /// Ends a connect session now (its token is then unknown, as an expired one); the row stays
    /// for flows it already started. `false` if it had already ended.
    pub async fn end_connect_session(&self, id: i64, at: DateTime<Utc>) -> Result<bool, Error> {
        self.db.end_connect_session(id, at).await
    }
    pub async fn delete_connect_session(&self, token_hash: &str) -> Result<bool, Error> {
        self.db.delete_connect_session(token_hash).await
    }

    // ---- OAuth flows in flight ----

    /// `Error::Conflict("oauth flow")` if the state is already in use.
    pub async fn put_oauth_flow(&self, flow: OAuthFlow) -> Result<(), Error> {
        let sealed = self.seal(
            CTX_CODE_VERIFIER,
            flow.code_verifier.expose_secret().as_bytes(),
        );
        let row = FlowRow {
            code_verifier: sealed.bytes,
            code_verifier_key_id: sealed.key_id,
            state: flow.state,
            provider_config_key: flow.provider_config_key.as_str().to_owned(),
            connection_id: flow.connection_id.as_str().to_owned(),
            connect_session_id: flow.connect_session_id,
            ws_client_id: flow.ws_client_id,
            connection_config: to_json(&flow.connection_config),
            redirect_uri: flow.redirect_uri,
            kind: flow.kind,
            expires_at: micros(flow.expires_at),
            created_at: micros(flow.created_at),
        };
        self.db.insert_oauth_flow(&row).await
    }
    /// Reads and deletes the flow in one step (single use). Expired flows are returned too: the
    /// caller decides, so it can say "expired" rather than "unknown".
    pub async fn take_oauth_flow(&self, state: &str) -> Result<Option<OAuthFlow>, Error> {
        let Some(r) = self.db.take_oauth_flow(state).await? else {
            return Ok(None);
        };
        Ok(Some(OAuthFlow {
            code_verifier: CodeVerifier::new(self.open_string(
                CTX_CODE_VERIFIER,
                &Sealed {
                    key_id: r.code_verifier_key_id,
                    bytes: r.code_verifier,
                },
            )?),
            state: r.state,
            provider_config_key: key(&r.provider_config_key)?,
            connection_id: connection_id(&r.connection_id)?,
            connect_session_id: r.connect_session_id,
            ws_client_id: r.ws_client_id,
            connection_config: from_json(&r.connection_config, "flow connection config")?,
            redirect_uri: r.redirect_uri,
            kind: r.kind,
            expires_at: r.expires_at,
            created_at: r.created_at,
        }))
    }
    /// Whether an OAuth flow in flight was started with this `ws_client_id` (a WebSocket held
    /// by one instance is claimed by a flow another instance started).
    pub async fn ws_client_has_flow(&self, ws_client_id: &str) -> Result<bool, Error> {
        self.db.ws_client_has_flow(ws_client_id).await
    }
    /// Housekeeping (added by the store): deletes connect sessions, OAuth flows and dashboard
    /// sessions whose `expires_at` is before `before`. Returns the number of rows deleted.
    pub async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        self.db.purge_expired(micros(before)).await
    }

    // ---- connections ----

    fn seal_credentials(&self, credentials: &Credentials) -> Result<Sealed, Error> {
        // Not `to_json`: a failure here must not silently store "null".
        let bytes = serde_json::to_vec(credentials)
            .map_err(|_| Error::Corrupt("credentials could not be serialised".into()))?;
        Ok(self.seal(CTX_CREDENTIALS, &bytes))
    }

    fn connection(&self, r: ConnectionRow) -> Result<Connection, Error> {
        let sealed = Sealed {
            key_id: r.credentials_key_id,
            bytes: r.credentials,
        };
        let plain = self.open(CTX_CREDENTIALS, &sealed)?;
        // The serde error could quote a token: say only that the shape is wrong.
        let credentials: Credentials = serde_json::from_slice(&plain).map_err(|_| {
            Error::Corrupt("decrypted credentials are not valid credentials JSON".into())
        })?;
        let mut c = Connection {
            id: r.id,
            connection_id: connection_id(&r.connection_id)?,
            provider_config_key: key(&r.provider_config_key)?,
            provider: r.provider,
            credentials,
            connection_config: from_json(&r.connection_config, "connection config")?,
            metadata: from_json(&r.metadata, "connection metadata")?,
            end_user: from_json_opt(r.end_user.as_deref(), "connection end user")?,
            tags: from_json(&r.tags, "connection tags")?,
            webhook_url_override: r.webhook_url_override,
            auth_failure: from_json_opt(r.auth_failure.as_deref(), "connection auth failure")?,
            version: r.version,
            last_fetched_at: r.last_fetched_at,
            last_refreshed_at: r.last_refreshed_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        };
        self.overlay_fetched(&mut c);
        Ok(c)
    }

    /// Creates the connection, or overwrites credentials/config/end user/tags of the live one with
    /// the same (key, connection id) — clearing its auth failure and bumping its version.
    /// `new.metadata == None` and `new.webhook_url_override == None` keep the stored values.
    /// Returns the stored connection and whether it was created.
    pub async fn upsert_connection(&self, new: NewConnection) -> Result<(Connection, bool), Error> {
        let write = ConnectionWrite {
            credentials: self.seal_credentials(&new.credentials)?,
            expires_at: new.credentials.expires_at.map(micros),
            end_user: end_user_columns(&new.connection_id, new.end_user.as_ref()),
            connection_id: new.connection_id.as_str().to_owned(),
            provider_config_key: new.provider_config_key.as_str().to_owned(),
            provider: new.provider,
            connection_config: to_json(&new.connection_config),
            metadata: new.metadata.as_ref().map(to_json),
            tags: to_json(&new.tags),
            webhook_url_override: new.webhook_url_override,
            at: now(),
        };
        // Two concurrent first writes of the same id race on the partial unique index (Postgres
        // only; SQLite serialises writers): the loser retries and takes the update path.
        let mut attempt = 0;
        let (row, created) = loop {
            match self.db.upsert_connection(&write).await {
                Err(Error::Conflict(_)) if attempt < 3 => attempt += 1,
                other => {
                    self.cache
                        .forget_connection(&write.provider_config_key, &write.connection_id);
                    break other?;
                }
            }
        };
        Ok((self.connection(row)?, created))
    }
    pub async fn get_connection(
        &self,
        key: &ProviderConfigKey,
        connection_id: &ConnectionId,
    ) -> Result<Option<Connection>, Error> {
        self.db
            .get_connection(key.as_str(), connection_id.as_str())
            .await?
            .map(|r| self.connection(r))
            .transpose()
    }
    /// A live connection by internal id.
    pub async fn get_connection_by_id(&self, id: i64) -> Result<Option<Connection>, Error> {
        self.db
            .get_connection_by_id(id)
            .await?
            .map(|r| self.connection(r))
            .transpose()
    }
    /// Newest first (created_at desc, id desc); deleted connections excluded.
    pub async fn list_connections(
        &self,
        filter: &ConnectionFilter,
    ) -> Result<Vec<Connection>, Error> {
        let q = ListQuery {
            connection_id: filter.connection_id.clone(),
            search: filter.search.as_ref().map(|s| s.to_lowercase()),
            end_user_id: filter.end_user_id.clone(),
            end_user_organization_id: filter.end_user_organization_id.clone(),
            integration_keys: filter.integration_keys.clone(),
            tags: filter
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tags_json: to_json(&filter.tags),
            limit: if filter.limit == 0 {
                DEFAULT_LIST_LIMIT
            } else {
                i64::from(filter.limit)
            },
            offset: i64::try_from(filter.offset).unwrap_or(i64::MAX),
        };
        self.db
            .list_connections(&q)
            .await?
            .into_iter()
            .map(|r| self.connection(r))
            .collect()
    }
    /// Soft delete. `false` if there was no live connection.
    pub async fn delete_connection(
        &self,
        key: &ProviderConfigKey,
        connection_id: &ConnectionId,
    ) -> Result<bool, Error> {
        let deleted = self
            .db
            .delete_connection(key.as_str(), connection_id.as_str(), now())
            .await;
        self.cache
            .forget_connection(key.as_str(), connection_id.as_str());
        deleted
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
        let ids: Vec<&str> = connection_ids.iter().map(|c| c.as_str()).collect();
        let result = self
            .db
            .set_metadata(key.as_str(), &ids, metadata, merge, now())
            .await;
        for id in &ids {
            self.cache.forget_connection(key.as_str(), id);
        }
        result
    }
    /// `false` if there was no live connection.
    pub async fn patch_connection(
        &self,
        key: &ProviderConfigKey,
        connection_id: &ConnectionId,
        patch: ConnectionPatch,
    ) -> Result<bool, Error> {
        let write = PatchWrite {
            end_user: patch
                .end_user
                .as_ref()
                .map(|eu| end_user_columns(connection_id, Some(eu))),
            tags: patch.tags.as_ref().map(to_json),
            webhook_url_override: patch.webhook_url_override,
            at: now(),
        };
        let patched = self
            .db
            .patch_connection(key.as_str(), connection_id.as_str(), &write)
            .await;
        self.cache
            .forget_connection(key.as_str(), connection_id.as_str());
        patched
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
        let sealed = self.seal_credentials(credentials)?;
        let expires_at = credentials.expires_at.map(micros);
        let saved = self
            .db
            .save_refreshed(id, expected_version, &sealed, expires_at, micros(at))
            .await;
        self.cache.forget_connection_id(id);
        saved?.map(|r| self.connection(r)).transpose()
    }
    /// Records (or clears with `None`) why the connection's credentials stopped working.
    pub async fn set_auth_failure(
        &self,
        id: i64,
        failure: Option<&AuthFailure>,
    ) -> Result<(), Error> {
        let json = failure.map(to_json);
        let result = self.db.set_auth_failure(id, json.as_deref(), now()).await;
        self.cache.forget_connection_id(id);
        result
    }
    /// Count of live connections (benchmarks, dashboard).
    pub async fn count_connections(&self) -> Result<u64, Error> {
        self.db.count_connections().await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_text_is_lowercased_and_separated() {
        use crate::model::{ConnectionId, EndUser};
        let cid = ConnectionId::parse("Conn-1").expect("valid id");
        let eu = EndUser {
            id: "U1".into(),
            email: Some("Ève@Example.com".into()),
            display_name: None,
            tags: None,
            organization: None,
        };
        let cols = super::end_user_columns(&cid, Some(&eu));
        assert_eq!(cols.search_text, "conn-1\u{1f}u1\u{1f}ève@example.com");
        assert_eq!(cols.id.as_deref(), Some("U1"));
    }

    #[test]
    fn metadata_merge_is_shallow() {
        let stored = r#"{"a":{"x":1},"b":2}"#;
        let patch = serde_json::json!({"a": {"y": 2}, "c": 3});
        let merged = super::rows::merged_metadata(stored, &patch, true).expect("merges");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&merged).expect("json"),
            serde_json::json!({"a": {"y": 2}, "b": 2, "c": 3})
        );
        let replaced = super::rows::merged_metadata(stored, &patch, false).expect("replaces");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&replaced).expect("json"),
            patch
        );
    }
}
