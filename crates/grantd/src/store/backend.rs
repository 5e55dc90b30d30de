//! The seam between `Store` and a database: the `Backend` trait and the plain rows it reads and
//! writes. Rows carry sealed bytes and JSON text; sealing, opening and (de)serialising happen in
//! `Store`, so each backend file holds only SQL and column mapping. No SQL here.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Error;
use crate::crypto::Sealed;

/// Name of the conflicting thing in `Error::Conflict`, per table.
pub(super) const INTEGRATION: &str = "integration";
pub(super) const CONNECT_SESSION: &str = "connect session";
pub(super) const OAUTH_FLOW: &str = "oauth flow";
pub(super) const CONNECTION: &str = "connection";
pub(super) const RENAME_REFUSED: &str =
    "an integration with connections cannot change its unique key";

/// The maximum page size, used when a filter's limit is 0.
pub(super) const DEFAULT_LIST_LIMIT: i64 = 10_000;

/// Maps a sqlx error: a unique violation becomes `Error::Conflict(what)`, anything else
/// `Error::Database`.
pub(super) fn db_error(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| match e.as_database_error() {
        Some(d) if d.is_unique_violation() => Error::Conflict(what),
        _ => Error::Database(e),
    }
}

/// An integration row as stored.
#[derive(Debug)]
pub(super) struct IntegrationRow {
    pub id: i64,
    pub unique_key: String,
    pub provider: String,
    pub display_name: Option<String>,
    pub client_id: String,
    pub client_secret: Sealed,
    /// JSON array of strings.
    pub scopes: String,
    pub forward_webhooks: bool,
    /// JSON object of strings.
    pub integration_config: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The values written when creating or replacing an integration.
#[derive(Debug)]
pub(super) struct IntegrationWrite {
    pub unique_key: String,
    pub provider: String,
    pub display_name: Option<String>,
    pub client_id: String,
    pub client_secret: Sealed,
    pub scopes: String,
    pub forward_webhooks: bool,
    pub integration_config: String,
    /// `created_at` on insert, `updated_at` always.
    pub at: DateTime<Utc>,
}

/// A connect session row; `id` and `created_at` are ignored on insert.
#[derive(Debug)]
pub(super) struct SessionRow {
    pub id: i64,
    pub token_hash: String,
    pub end_user: Option<String>,
    pub organization: Option<String>,
    pub allowed_integrations: Option<String>,
    pub integrations_config_defaults: String,
    pub reconnect_provider_config_key: Option<String>,
    pub reconnect_connection_id: Option<String>,
    pub tags: String,
    pub webhook_url_override: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// An OAuth flow row.
#[derive(Debug)]
pub(super) struct FlowRow {
    pub state: String,
    pub provider_config_key: String,
    pub connection_id: String,
    pub connect_session_id: Option<i64>,
    pub ws_client_id: Option<String>,
    pub code_verifier: Sealed,
    pub connection_config: String,
    pub redirect_uri: String,
    pub kind: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A connection row as read (live or not: readers filter on `deleted_at`).
#[derive(Debug)]
pub(super) struct ConnectionRow {
    pub id: i64,
    pub connection_id: String,
    pub provider_config_key: String,
    pub provider: String,
    pub credentials: Sealed,
    pub connection_config: String,
    pub metadata: String,
    pub end_user: Option<String>,
    pub tags: String,
    pub webhook_url_override: Option<String>,
    pub auth_failure: Option<String>,
    pub version: i64,
    pub last_fetched_at: Option<DateTime<Utc>>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The end-user columns of a connection: the JSON and the values extracted for filtering.
#[derive(Debug)]
pub(super) struct EndUserColumns {
    pub json: Option<String>,
    pub id: Option<String>,
    pub organization_id: Option<String>,
    /// Lowercased connection id and end user id/email/display name, separated by `\u{1f}`.
    pub search_text: String,
}

/// The values `upsert_connection` writes.
#[derive(Debug)]
pub(super) struct ConnectionWrite {
    pub connection_id: String,
    pub provider_config_key: String,
    pub provider: String,
    pub credentials: Sealed,
    /// Copy of `credentials.expires_at`.
    pub expires_at: Option<DateTime<Utc>>,
    pub connection_config: String,
    /// `None` keeps the stored metadata on overwrite; `{}` on insert.
    pub metadata: Option<String>,
    pub end_user: EndUserColumns,
    pub tags: String,
    /// `None` keeps the stored override on overwrite.
    pub webhook_url_override: Option<String>,
    pub at: DateTime<Utc>,
}

/// The values `patch_connection` writes; `None` keeps a column.
#[derive(Debug)]
pub(super) struct PatchWrite {
    pub end_user: Option<EndUserColumns>,
    pub tags: Option<String>,
    pub webhook_url_override: Option<Option<String>>,
    pub at: DateTime<Utc>,
}

/// A normalised `ConnectionFilter`.
#[derive(Debug)]
pub(super) struct ListQuery {
    pub connection_id: Option<String>,
    /// Already lowercased.
    pub search: Option<String>,
    pub end_user_id: Option<String>,
    pub end_user_organization_id: Option<String>,
    pub integration_keys: Vec<String>,
    pub tags: Vec<(String, String)>,
    /// The tags as a JSON object (for backends that match JSON containment).
    pub tags_json: String,
    pub limit: i64,
    pub offset: i64,
}

/// The new metadata for a connection: `patch` replaces `stored`, or is shallow-merged into it.
pub(super) fn merged_metadata(stored: &str, patch: &Value, merge: bool) -> Result<String, Error> {
    if !merge {
        return Ok(patch.to_string());
    }
    let mut base = match serde_json::from_str::<Value>(stored) {
        Ok(Value::Object(m)) => m,
        Ok(_) => serde_json::Map::new(),
        Err(_) => return Err(Error::Corrupt("connection metadata is not JSON".into())),
    };
    match patch {
        Value::Object(p) => {
            for (k, v) in p {
                base.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(base).to_string())
        }
        other => Ok(other.to_string()),
    }
}

/// One database. Each method is one statement or one transaction.
#[async_trait]
pub(super) trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    /// Certificate credentials and expiry state of integrations.
    fn app_credentials(&self) -> &dyn super::app_credentials::AppCredentialBackend;
    /// The token-lifecycle half (refresh lock, claiming, webhook outbox).
    fn lifecycle(&self) -> &dyn super::lifecycle::LifecycleBackend;
    /// Key rotation: re-sealing values under the current key.
    fn rekey(&self) -> &dyn super::rekey::RekeyBackend;
    /// Coalesced `last_fetched_at` writes.
    fn touch(&self) -> &dyn super::touch::TouchBackend;
    /// The dashboard's read-only view of the webhook outbox.
    fn outbox_view(&self) -> &dyn super::outbox_view::OutboxViewBackend;
    async fn ping(&self) -> Result<(), Error>;

    async fn insert_integration(&self, w: &IntegrationWrite) -> Result<IntegrationRow, Error>;
    async fn get_integration(&self, key: &str) -> Result<Option<IntegrationRow>, Error>;
    async fn list_integrations(&self) -> Result<Vec<IntegrationRow>, Error>;
    /// One transaction: `None` if `key` is missing, `Refused` when renaming with live
    /// connections, `Conflict` when the new key is taken.
    async fn update_integration(
        &self,
        key: &str,
        w: &IntegrationWrite,
    ) -> Result<Option<IntegrationRow>, Error>;
    /// One transaction: deletes the integration, soft-deletes its live connections.
    async fn delete_integration(&self, key: &str, at: DateTime<Utc>) -> Result<bool, Error>;

    async fn insert_connect_session(&self, row: &SessionRow) -> Result<SessionRow, Error>;
    async fn get_connect_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>, Error>;
    async fn get_connect_session_by_id(&self, id: i64) -> Result<Option<SessionRow>, Error>;
    async fn delete_connect_session(&self, token_hash: &str) -> Result<bool, Error>;

    async fn insert_oauth_flow(&self, row: &FlowRow) -> Result<(), Error>;
    async fn take_oauth_flow(&self, state: &str) -> Result<Option<FlowRow>, Error>;
    /// Deletes sessions and flows that expired before `before`; returns how many rows went.
    async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, Error>;

    /// One transaction; returns the row and whether it was inserted.
    async fn upsert_connection(&self, w: &ConnectionWrite) -> Result<(ConnectionRow, bool), Error>;
    async fn get_connection(
        &self,
        key: &str,
        connection_id: &str,
    ) -> Result<Option<ConnectionRow>, Error>;
    async fn get_connection_by_id(&self, id: i64) -> Result<Option<ConnectionRow>, Error>;
    async fn list_connections(&self, q: &ListQuery) -> Result<Vec<ConnectionRow>, Error>;
    async fn delete_connection(
        &self,
        key: &str,
        connection_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, Error>;
    /// One transaction, all or nothing (`MissingConnection` names the first missing id).
    async fn set_metadata(
        &self,
        key: &str,
        connection_ids: &[&str],
        metadata: &Value,
        merge: bool,
        at: DateTime<Utc>,
    ) -> Result<(), Error>;
    async fn patch_connection(
        &self,
        key: &str,
        connection_id: &str,
        patch: &PatchWrite,
    ) -> Result<bool, Error>;
    async fn save_refreshed(
        &self,
        id: i64,
        expected_version: i64,
        credentials: &Sealed,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<Option<ConnectionRow>, Error>;
    async fn set_auth_failure(
        &self,
        id: i64,
        failure: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), Error>;
    async fn count_connections(&self) -> Result<u64, Error>;
}
