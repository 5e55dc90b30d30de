//! The SQLite backend. Timestamps are fixed-width RFC 3339 UTC text with microseconds, so text
//! order is time order; JSON is text. Transactions that read then write start with
//! `BEGIN IMMEDIATE`, taking the write lock up front so two writers never deadlock on upgrade.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

mod app_credentials;
mod lifecycle;
mod outbox_view;
mod rekey;
mod touch;

use super::Error;
use super::backend::*;
use crate::crypto::Sealed;

pub(super) struct SqliteBackend {
    pool: SqlitePool,
}

/// Opens (creating the file and its directory if needed) and migrates.
pub(super) async fn connect(url: &str) -> Result<SqliteBackend, Error> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|_| Error::UnsupportedUrl)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let pool = if in_memory {
        // An in-memory database lives as long as its connection: keep exactly one, forever.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(Error::Database)?
    } else {
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
            }
        }
        SqlitePoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(Error::Database)?
    };
    sqlx::migrate!("src/store/migrations/sqlite")
        .run(&pool)
        .await
        .map_err(Error::Migrate)?;
    Ok(SqliteBackend { pool })
}

/// The stored form of a timestamp: `2025-01-31T12:00:00.000000Z`.
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn ts_opt(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts)
}

fn get<'r, T>(row: &'r SqliteRow, col: &str) -> Result<T, Error>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(col)
        .map_err(|e| Error::Corrupt(format!("column {col}: {e}")))
}

fn parse_ts(s: &str, col: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Error::Corrupt(format!("column {col} is not a timestamp")))
}

fn get_ts(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>, Error> {
    let s: String = get(row, col)?;
    parse_ts(&s, col)
}

fn get_ts_opt(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>, Error> {
    let s: Option<String> = get(row, col)?;
    s.map(|s| parse_ts(&s, col)).transpose()
}

const INTEGRATION_COLS: &str = "id, unique_key, provider, display_name, client_id, client_secret, \
     client_secret_key_id, scopes, forward_webhooks, integration_config, created_at, updated_at";

fn integration_row(r: &SqliteRow) -> Result<IntegrationRow, Error> {
    Ok(IntegrationRow {
        id: get(r, "id")?,
        unique_key: get(r, "unique_key")?,
        provider: get(r, "provider")?,
        display_name: get(r, "display_name")?,
        client_id: get(r, "client_id")?,
        client_secret: Sealed {
            key_id: get(r, "client_secret_key_id")?,
            bytes: get(r, "client_secret")?,
        },
        scopes: get(r, "scopes")?,
        forward_webhooks: get(r, "forward_webhooks")?,
        integration_config: get(r, "integration_config")?,
        created_at: get_ts(r, "created_at")?,
        updated_at: get_ts(r, "updated_at")?,
    })
}

const SESSION_COLS: &str = "id, token_hash, end_user, organization, allowed_integrations, \
     integrations_config_defaults, reconnect_provider_config_key, reconnect_connection_id, tags, \
     webhook_url_override, expires_at, created_at";

fn session_row(r: &SqliteRow) -> Result<SessionRow, Error> {
    Ok(SessionRow {
        id: get(r, "id")?,
        token_hash: get(r, "token_hash")?,
        end_user: get(r, "end_user")?,
        organization: get(r, "organization")?,
        allowed_integrations: get(r, "allowed_integrations")?,
        integrations_config_defaults: get(r, "integrations_config_defaults")?,
        reconnect_provider_config_key: get(r, "reconnect_provider_config_key")?,
        reconnect_connection_id: get(r, "reconnect_connection_id")?,
        tags: get(r, "tags")?,
        webhook_url_override: get(r, "webhook_url_override")?,
        expires_at: get_ts(r, "expires_at")?,
        created_at: get_ts(r, "created_at")?,
    })
}

const FLOW_COLS: &str = "state, provider_config_key, connection_id, connect_session_id, ws_client_id, \
     code_verifier, code_verifier_key_id, connection_config, redirect_uri, kind, expires_at, created_at";

fn flow_row(r: &SqliteRow) -> Result<FlowRow, Error> {
    Ok(FlowRow {
        state: get(r, "state")?,
        provider_config_key: get(r, "provider_config_key")?,
        connection_id: get(r, "connection_id")?,
        connect_session_id: get(r, "connect_session_id")?,
        ws_client_id: get(r, "ws_client_id")?,
        code_verifier: Sealed {
            key_id: get(r, "code_verifier_key_id")?,
            bytes: get(r, "code_verifier")?,
        },
        connection_config: get(r, "connection_config")?,
        redirect_uri: get(r, "redirect_uri")?,
        kind: get(r, "kind")?,
        expires_at: get_ts(r, "expires_at")?,
        created_at: get_ts(r, "created_at")?,
    })
}

const CONNECTION_COLS: &str = "id, connection_id, provider_config_key, provider, credentials, \
     credentials_key_id, connection_config, metadata, end_user, tags, webhook_url_override, \
     auth_failure, version, last_fetched_at, last_refreshed_at, created_at, updated_at";

fn connection_row(r: &SqliteRow) -> Result<ConnectionRow, Error> {
    Ok(ConnectionRow {
        id: get(r, "id")?,
        connection_id: get(r, "connection_id")?,
        provider_config_key: get(r, "provider_config_key")?,
        provider: get(r, "provider")?,
        credentials: Sealed {
            key_id: get(r, "credentials_key_id")?,
            bytes: get(r, "credentials")?,
        },
        connection_config: get(r, "connection_config")?,
        metadata: get(r, "metadata")?,
        end_user: get(r, "end_user")?,
        tags: get(r, "tags")?,
        webhook_url_override: get(r, "webhook_url_override")?,
        auth_failure: get(r, "auth_failure")?,
        version: get(r, "version")?,
        last_fetched_at: get_ts_opt(r, "last_fetched_at")?,
        last_refreshed_at: get_ts_opt(r, "last_refreshed_at")?,
        created_at: get_ts(r, "created_at")?,
        updated_at: get_ts(r, "updated_at")?,
    })
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn lifecycle(&self) -> &dyn super::lifecycle::LifecycleBackend {
        self
    }

    fn rekey(&self) -> &dyn super::rekey::RekeyBackend {
        self
    }

    fn touch(&self) -> &dyn super::touch::TouchBackend {
        self
    }

    fn outbox_view(&self) -> &dyn super::outbox_view::OutboxViewBackend {
        self
    }

    fn app_credentials(&self) -> &dyn super::app_credentials::AppCredentialBackend {
        self
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(Error::Database)?;
        Ok(())
    }

    async fn insert_integration(&self, w: &IntegrationWrite) -> Result<IntegrationRow, Error> {
        let sql = format!(
            "INSERT INTO integrations (unique_key, provider, display_name, client_id, client_secret, \
             client_secret_key_id, scopes, forward_webhooks, integration_config, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {INTEGRATION_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(&w.unique_key)
            .bind(&w.provider)
            .bind(&w.display_name)
            .bind(&w.client_id)
            .bind(&w.client_secret.bytes)
            .bind(&w.client_secret.key_id)
            .bind(&w.scopes)
            .bind(w.forward_webhooks)
            .bind(&w.integration_config)
            .bind(ts(w.at))
            .bind(ts(w.at))
            .fetch_one(&self.pool)
            .await
            .map_err(db_error(INTEGRATION))?;
        integration_row(&row)
    }

    async fn get_integration(&self, key: &str) -> Result<Option<IntegrationRow>, Error> {
        let sql = format!("SELECT {INTEGRATION_COLS} FROM integrations WHERE unique_key = ?");
        sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| integration_row(&r))
            .transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<IntegrationRow>, Error> {
        let sql = format!("SELECT {INTEGRATION_COLS} FROM integrations ORDER BY created_at, id");
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::Database)?
            .iter()
            .map(integration_row)
            .collect()
    }

    async fn update_integration(
        &self,
        key: &str,
        w: &IntegrationWrite,
    ) -> Result<Option<IntegrationRow>, Error> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::Database)?;
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM integrations WHERE unique_key = ?")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::Database)?;
        let Some(id) = id else { return Ok(None) };
        if w.unique_key != key {
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM connections WHERE provider_config_key = ? AND deleted_at IS NULL",
            )
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::Database)?;
            if live > 0 {
                return Err(Error::Refused(RENAME_REFUSED));
            }
        }
        let sql = format!(
            "UPDATE integrations SET unique_key = ?, provider = ?, display_name = ?, client_id = ?, \
             client_secret = ?, client_secret_key_id = ?, scopes = ?, forward_webhooks = ?, \
             integration_config = ?, updated_at = ? WHERE id = ? RETURNING {INTEGRATION_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(&w.unique_key)
            .bind(&w.provider)
            .bind(&w.display_name)
            .bind(&w.client_id)
            .bind(&w.client_secret.bytes)
            .bind(&w.client_secret.key_id)
            .bind(&w.scopes)
            .bind(w.forward_webhooks)
            .bind(&w.integration_config)
            .bind(ts(w.at))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(INTEGRATION))?;
        let row = integration_row(&row)?;
        tx.commit().await.map_err(Error::Database)?;
        Ok(Some(row))
    }

    async fn delete_integration(&self, key: &str, at: DateTime<Utc>) -> Result<bool, Error> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::Database)?;
        let deleted = sqlx::query("DELETE FROM integrations WHERE unique_key = ?")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(Error::Database)?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE connections SET deleted_at = ?, updated_at = ? \
             WHERE provider_config_key = ? AND deleted_at IS NULL",
        )
        .bind(ts(at))
        .bind(ts(at))
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(Error::Database)?;
        tx.commit().await.map_err(Error::Database)?;
        Ok(true)
    }

    async fn insert_connect_session(&self, s: &SessionRow) -> Result<SessionRow, Error> {
        let sql = format!(
            "INSERT INTO connect_sessions (token_hash, end_user, organization, allowed_integrations, \
             integrations_config_defaults, reconnect_provider_config_key, reconnect_connection_id, \
             tags, webhook_url_override, expires_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {SESSION_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(&s.token_hash)
            .bind(&s.end_user)
            .bind(&s.organization)
            .bind(&s.allowed_integrations)
            .bind(&s.integrations_config_defaults)
            .bind(&s.reconnect_provider_config_key)
            .bind(&s.reconnect_connection_id)
            .bind(&s.tags)
            .bind(&s.webhook_url_override)
            .bind(ts(s.expires_at))
            .bind(ts(s.created_at))
            .fetch_one(&self.pool)
            .await
            .map_err(db_error(CONNECT_SESSION))?;
        session_row(&row)
    }

    async fn get_connect_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>, Error> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM connect_sessions WHERE token_hash = ? AND expires_at > ?"
        );
        sqlx::query(&sql)
            .bind(token_hash)
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| session_row(&r))
            .transpose()
    }

    async fn get_connect_session_by_id(&self, id: i64) -> Result<Option<SessionRow>, Error> {
        let sql = format!("SELECT {SESSION_COLS} FROM connect_sessions WHERE id = ?");
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| session_row(&r))
            .transpose()
    }

    async fn delete_connect_session(&self, token_hash: &str) -> Result<bool, Error> {
        let n = sqlx::query("DELETE FROM connect_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(Error::Database)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn insert_oauth_flow(&self, f: &FlowRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO oauth_flows (state, provider_config_key, connection_id, connect_session_id, \
             ws_client_id, code_verifier, code_verifier_key_id, connection_config, redirect_uri, kind, \
             expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&f.state)
        .bind(&f.provider_config_key)
        .bind(&f.connection_id)
        .bind(f.connect_session_id)
        .bind(&f.ws_client_id)
        .bind(&f.code_verifier.bytes)
        .bind(&f.code_verifier.key_id)
        .bind(&f.connection_config)
        .bind(&f.redirect_uri)
        .bind(&f.kind)
        .bind(ts(f.expires_at))
        .bind(ts(f.created_at))
        .execute(&self.pool)
        .await
        .map_err(db_error(OAUTH_FLOW))?;
        Ok(())
    }

    async fn take_oauth_flow(&self, state: &str) -> Result<Option<FlowRow>, Error> {
        let sql = format!("DELETE FROM oauth_flows WHERE state = ? RETURNING {FLOW_COLS}");
        sqlx::query(&sql)
            .bind(state)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| flow_row(&r))
            .transpose()
    }

    async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::Database)?;
        let mut n = 0;
        for sql in [
            "DELETE FROM connect_sessions WHERE expires_at < ?",
            "DELETE FROM oauth_flows WHERE expires_at < ?",
        ] {
            n += sqlx::query(sql)
                .bind(ts(before))
                .execute(&mut *tx)
                .await
                .map_err(Error::Database)?
                .rows_affected();
        }
        tx.commit().await.map_err(Error::Database)?;
        Ok(n)
    }

    async fn upsert_connection(&self, w: &ConnectionWrite) -> Result<(ConnectionRow, bool), Error> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::Database)?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM connections \
             WHERE provider_config_key = ? AND connection_id = ? AND deleted_at IS NULL",
        )
        .bind(&w.provider_config_key)
        .bind(&w.connection_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::Database)?;
        let (row, created) = match existing {
            Some(id) => {
                let sql = format!(
                    "UPDATE connections SET provider = ?, credentials = ?, credentials_key_id = ?, \
                     expires_at = ?, connection_config = ?, metadata = COALESCE(?, metadata), \
                     end_user = ?, end_user_id = ?, end_user_organization_id = ?, search_text = ?, \
                     tags = ?, webhook_url_override = COALESCE(?, webhook_url_override), \
                     auth_failure = NULL, refresh_failures = 0, refresh_retry_at = NULL, \
                     refresh_lease_until = NULL, version = version + 1, updated_at = ? \
                     WHERE id = ? RETURNING {CONNECTION_COLS}"
                );
                let row = sqlx::query(&sql)
                    .bind(&w.provider)
                    .bind(&w.credentials.bytes)
                    .bind(&w.credentials.key_id)
                    .bind(ts_opt(w.expires_at))
                    .bind(&w.connection_config)
                    .bind(&w.metadata)
                    .bind(&w.end_user.json)
                    .bind(&w.end_user.id)
                    .bind(&w.end_user.organization_id)
                    .bind(&w.end_user.search_text)
                    .bind(&w.tags)
                    .bind(&w.webhook_url_override)
                    .bind(ts(w.at))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error(CONNECTION))?;
                (row, false)
            }
            None => {
                let sql = format!(
                    "INSERT INTO connections (connection_id, provider_config_key, provider, credentials, \
                     credentials_key_id, expires_at, connection_config, metadata, end_user, end_user_id, \
                     end_user_organization_id, search_text, tags, webhook_url_override, version, \
                     created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, COALESCE(?, '{{}}'), ?, ?, ?, ?, ?, ?, 1, ?, ?) \
                     RETURNING {CONNECTION_COLS}"
                );
                let row = sqlx::query(&sql)
                    .bind(&w.connection_id)
                    .bind(&w.provider_config_key)
                    .bind(&w.provider)
                    .bind(&w.credentials.bytes)
                    .bind(&w.credentials.key_id)
                    .bind(ts_opt(w.expires_at))
                    .bind(&w.connection_config)
                    .bind(&w.metadata)
                    .bind(&w.end_user.json)
                    .bind(&w.end_user.id)
                    .bind(&w.end_user.organization_id)
                    .bind(&w.end_user.search_text)
                    .bind(&w.tags)
                    .bind(&w.webhook_url_override)
                    .bind(ts(w.at))
                    .bind(ts(w.at))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error(CONNECTION))?;
                (row, true)
            }
        };
        let row = connection_row(&row)?;
        tx.commit().await.map_err(Error::Database)?;
        Ok((row, created))
    }

    async fn get_connection(
        &self,
        key: &str,
        connection_id: &str,
    ) -> Result<Option<ConnectionRow>, Error> {
        let sql = format!(
            "SELECT {CONNECTION_COLS} FROM connections \
             WHERE provider_config_key = ? AND connection_id = ? AND deleted_at IS NULL"
        );
        sqlx::query(&sql)
            .bind(key)
            .bind(connection_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| connection_row(&r))
            .transpose()
    }

    async fn get_connection_by_id(&self, id: i64) -> Result<Option<ConnectionRow>, Error> {
        let sql = format!(
            "SELECT {CONNECTION_COLS} FROM connections WHERE id = ? AND deleted_at IS NULL"
        );
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| connection_row(&r))
            .transpose()
    }

    async fn list_connections(&self, q: &ListQuery) -> Result<Vec<ConnectionRow>, Error> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {CONNECTION_COLS} FROM connections WHERE deleted_at IS NULL"
        ));
        if let Some(v) = &q.connection_id {
            qb.push(" AND connection_id = ").push_bind(v.clone());
        }
        if let Some(v) = &q.search {
            qb.push(" AND instr(search_text, ")
                .push_bind(v.clone())
                .push(") > 0");
        }
        if let Some(v) = &q.end_user_id {
            qb.push(" AND end_user_id = ").push_bind(v.clone());
        }
        if let Some(v) = &q.end_user_organization_id {
            qb.push(" AND end_user_organization_id = ")
                .push_bind(v.clone());
        }
        if !q.integration_keys.is_empty() {
            qb.push(" AND provider_config_key IN (");
            let mut keys = qb.separated(", ");
            for k in &q.integration_keys {
                keys.push_bind(k.clone());
            }
            qb.push(")");
        }
        for (k, v) in &q.tags {
            qb.push(" AND EXISTS (SELECT 1 FROM json_each(connections.tags) AS t WHERE t.key = ")
                .push_bind(k.clone())
                .push(" AND t.type = 'text' AND t.value = ")
                .push_bind(v.clone())
                .push(")");
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(q.limit)
            .push(" OFFSET ")
            .push_bind(q.offset);
        qb.build()
            .fetch_all(&self.pool)
            .await
            .map_err(Error::Database)?
            .iter()
            .map(connection_row)
            .collect()
    }

    async fn delete_connection(
        &self,
        key: &str,
        connection_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let n = sqlx::query(
            "UPDATE connections SET deleted_at = ?, updated_at = ? \
             WHERE provider_config_key = ? AND connection_id = ? AND deleted_at IS NULL",
        )
        .bind(ts(at))
        .bind(ts(at))
        .bind(key)
        .bind(connection_id)
        .execute(&self.pool)
        .await
        .map_err(Error::Database)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn set_metadata(
        &self,
        key: &str,
        connection_ids: &[&str],
        metadata: &Value,
        merge: bool,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::Database)?;
        for cid in connection_ids {
            let row = sqlx::query(
                "SELECT id, metadata FROM connections \
                 WHERE provider_config_key = ? AND connection_id = ? AND deleted_at IS NULL",
            )
            .bind(key)
            .bind(cid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::Database)?;
            // Dropping `tx` without commit rolls back what earlier iterations wrote.
            let Some(row) = row else {
                return Err(Error::MissingConnection((*cid).to_owned()));
            };
            let id: i64 = get(&row, "id")?;
            let stored: String = get(&row, "metadata")?;
            let new = merged_metadata(&stored, metadata, merge)?;
            sqlx::query("UPDATE connections SET metadata = ?, updated_at = ? WHERE id = ?")
                .bind(new)
                .bind(ts(at))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(Error::Database)?;
        }
        tx.commit().await.map_err(Error::Database)?;
        Ok(())
    }

    async fn patch_connection(
        &self,
        key: &str,
        connection_id: &str,
        p: &PatchWrite,
    ) -> Result<bool, Error> {
        let eu = p.end_user.as_ref();
        let n = sqlx::query(
            "UPDATE connections SET \
               end_user = CASE WHEN ? THEN ? ELSE end_user END, \
               end_user_id = CASE WHEN ? THEN ? ELSE end_user_id END, \
               end_user_organization_id = CASE WHEN ? THEN ? ELSE end_user_organization_id END, \
               search_text = CASE WHEN ? THEN ? ELSE search_text END, \
               tags = COALESCE(?, tags), \
               webhook_url_override = CASE WHEN ? THEN ? ELSE webhook_url_override END, \
               updated_at = ? \
             WHERE provider_config_key = ? AND connection_id = ? AND deleted_at IS NULL",
        )
        .bind(eu.is_some())
        .bind(eu.and_then(|e| e.json.clone()))
        .bind(eu.is_some())
        .bind(eu.and_then(|e| e.id.clone()))
        .bind(eu.is_some())
        .bind(eu.and_then(|e| e.organization_id.clone()))
        .bind(eu.is_some())
        .bind(eu.map(|e| e.search_text.clone()))
        .bind(&p.tags)
        .bind(p.webhook_url_override.is_some())
        .bind(p.webhook_url_override.clone().flatten())
        .bind(ts(p.at))
        .bind(key)
        .bind(connection_id)
        .execute(&self.pool)
        .await
        .map_err(Error::Database)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn save_refreshed(
        &self,
        id: i64,
        expected_version: i64,
        credentials: &Sealed,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<Option<ConnectionRow>, Error> {
        let sql = format!(
            "UPDATE connections SET credentials = ?, credentials_key_id = ?, expires_at = ?, \
             auth_failure = NULL, last_refreshed_at = ?, updated_at = ?, version = version + 1 \
             WHERE id = ? AND version = ? AND deleted_at IS NULL RETURNING {CONNECTION_COLS}"
        );
        sqlx::query(&sql)
            .bind(&credentials.bytes)
            .bind(&credentials.key_id)
            .bind(ts_opt(expires_at))
            .bind(ts(at))
            .bind(ts(at))
            .bind(id)
            .bind(expected_version)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| connection_row(&r))
            .transpose()
    }

    async fn set_auth_failure(
        &self,
        id: i64,
        failure: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE connections SET auth_failure = ?, updated_at = ? WHERE id = ?")
            .bind(failure)
            .bind(ts(at))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(Error::Database)?;
        Ok(())
    }

    async fn count_connections(&self) -> Result<u64, Error> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM connections WHERE deleted_at IS NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(Error::Database)?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let a = Utc
            .with_ymd_and_hms(2025, 1, 2, 3, 4, 5)
            .single()
            .expect("valid date");
        assert_eq!(ts(a), "2025-01-02T03:04:05.000000Z");
        let b = a + chrono::Duration::microseconds(1_500);
        assert_eq!(ts(b), "2025-01-02T03:04:05.001500Z");
        assert!(ts(a) < ts(b));
        assert_eq!(parse_ts(&ts(b), "x").ok(), Some(b));
    }
}
