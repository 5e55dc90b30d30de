//! The plain rows the store's queries read and write. Rows carry sealed bytes and JSON text;
//! sealing, opening and (de)serialising happen in `Store`, so the query files hold only SQL.
//! Read rows derive `sqlx::FromRow`, which maps columns by name on either database. No SQL here.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Error;
use super::db::Jsonb;
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
#[derive(Debug, sqlx::FromRow)]
pub(super) struct IntegrationRow {
    pub id: i64,
    pub unique_key: String,
    pub provider: String,
    pub display_name: Option<String>,
    pub client_id: String,
    pub client_secret: Vec<u8>,
    pub client_secret_key_id: String,
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

/// A connect session row; `id` is ignored on insert.
#[derive(Debug, sqlx::FromRow)]
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
    /// JSON; NULL when the session has none.
    pub overrides: Option<String>,
}

/// An OAuth flow row.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct FlowRow {
    pub state: String,
    pub provider_config_key: String,
    pub connection_id: String,
    pub connect_session_id: Option<i64>,
    pub ws_client_id: Option<String>,
    pub code_verifier: Vec<u8>,
    pub code_verifier_key_id: String,
    pub connection_config: String,
    pub redirect_uri: String,
    pub kind: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A connection row as read (live or not: readers filter on `deleted_at`).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ConnectionRow {
    pub id: i64,
    pub connection_id: String,
    pub provider_config_key: String,
    pub provider: String,
    pub credentials: Vec<u8>,
    pub credentials_key_id: String,
    pub connection_config: Jsonb,
    pub metadata: Jsonb,
    pub end_user: Option<Jsonb>,
    pub tags: Jsonb,
    pub webhook_url_override: Option<String>,
    pub auth_failure: Option<Jsonb>,
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
    /// The tags as a JSON object (for PostgreSQL's JSONB containment, `db::TagFilter`).
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
