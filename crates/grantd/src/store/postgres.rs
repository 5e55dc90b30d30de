//! The PostgreSQL backend. Timestamps are TIMESTAMPTZ; the connection JSON that queries look into
//! (metadata, tags, end user…) is JSONB, bound as text with a cast and read back as text; other
//! JSON is text. Transactions that read then write lock the rows they read (`FOR UPDATE`).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

mod app_credentials;
mod lifecycle;
mod outbox_view;
mod rekey;
mod touch;

use super::Error;
use super::backend::*;
use crate::crypto::Sealed;

pub(super) struct PgBackend {
    pool: PgPool,
}

/// Connects with a pool of 10 and migrates.
pub(super) async fn connect(url: &str) -> Result<PgBackend, Error> {
    let options = PgConnectOptions::from_str(url).map_err(|_| Error::UnsupportedUrl)?;
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(Error::Database)?;
    sqlx::migrate!("src/store/migrations/postgres")
        .run(&pool)
        .await
        .map_err(Error::Migrate)?;
    Ok(PgBackend { pool })
}

fn get<'r, T>(row: &'r PgRow, col: &str) -> Result<T, Error>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(col)
        .map_err(|e| Error::Corrupt(format!("column {col}: {e}")))
}

const INTEGRATION_COLS: &str = "id, unique_key, provider, display_name, client_id, client_secret, \
     client_secret_key_id, scopes, forward_webhooks, integration_config, created_at, updated_at";

fn integration_row(r: &PgRow) -> Result<IntegrationRow, Error> {
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
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
    })
}

const SESSION_COLS: &str = "id, token_hash, end_user, organization, allowed_integrations, \
     integrations_config_defaults, reconnect_provider_config_key, reconnect_connection_id, tags, \
     webhook_url_override, expires_at, created_at";

fn session_row(r: &PgRow) -> Result<SessionRow, Error> {
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
        expires_at: get(r, "expires_at")?,
        created_at: get(r, "created_at")?,
    })
}

const FLOW_COLS: &str = "state, provider_config_key, connection_id, connect_session_id, ws_client_id, \
     code_verifier, code_verifier_key_id, connection_config, redirect_uri, kind, expires_at, created_at";

fn flow_row(r: &PgRow) -> Result<FlowRow, Error> {
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
        expires_at: get(r, "expires_at")?,
        created_at: get(r, "created_at")?,
    })
}

const CONNECTION_COLS: &str = "id, connection_id, provider_config_key, provider, credentials, \
     credentials_key_id, connection_config::text AS connection_config, metadata::text AS metadata, \
     end_user::text AS end_user, tags::text AS tags, webhook_url_override, \
     auth_failure::text AS auth_failure, version, last_fetched_at, last_refreshed_at, created_at, \
     updated_at";

fn connection_row(r: &PgRow) -> Result<ConnectionRow, Error> {
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
        last_fetched_at: get(r, "last_fetched_at")?,
        last_refreshed_at: get(r, "last_refreshed_at")?,
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
    })
}

#[async_trait]
impl Backend for PgBackend {
    fn name(&self) -> &'static str {
        "postgres"
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {INTEGRATION_COLS}"
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
            .bind(w.at)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error(INTEGRATION))?;
        integration_row(&row)
    }

    async fn get_integration(&self, key: &str) -> Result<Option<IntegrationRow>, Error> {
        let sql = format!("SELECT {INTEGRATION_COLS} FROM integrations WHERE unique_key = $1");
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
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM integrations WHERE unique_key = $1 FOR UPDATE")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::Database)?;
        let Some(id) = id else { return Ok(None) };
        if w.unique_key != key {
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM connections WHERE provider_config_key = $1 AND deleted_at IS NULL",
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
            "UPDATE integrations SET unique_key = $1, provider = $2, display_name = $3, client_id = $4, \
             client_secret = $5, client_secret_key_id = $6, scopes = $7, forward_webhooks = $8, \
             integration_config = $9, updated_at = $10 WHERE id = $11 RETURNING {INTEGRATION_COLS}"
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
            .bind(w.at)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(INTEGRATION))?;
        let row = integration_row(&row)?;
        tx.commit().await.map_err(Error::Database)?;
        Ok(Some(row))
    }

    async fn delete_integration(&self, key: &str, at: DateTime<Utc>) -> Result<bool, Error> {
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        let deleted = sqlx::query("DELETE FROM integrations WHERE unique_key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(Error::Database)?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE connections SET deleted_at = $1, updated_at = $1 \
             WHERE provider_config_key = $2 AND deleted_at IS NULL",
        )
        .bind(at)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {SESSION_COLS}"
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
            .bind(s.expires_at)
            .bind(s.created_at)
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
            "SELECT {SESSION_COLS} FROM connect_sessions WHERE token_hash = $1 AND expires_at > $2"
        );
        sqlx::query(&sql)
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| session_row(&r))
            .transpose()
    }

    async fn get_connect_session_by_id(&self, id: i64) -> Result<Option<SessionRow>, Error> {
        let sql = format!("SELECT {SESSION_COLS} FROM connect_sessions WHERE id = $1");
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| session_row(&r))
            .transpose()
    }

    async fn delete_connect_session(&self, token_hash: &str) -> Result<bool, Error> {
        let n = sqlx::query("DELETE FROM connect_sessions WHERE token_hash = $1")
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
             expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        .bind(f.expires_at)
        .bind(f.created_at)
        .execute(&self.pool)
        .await
        .map_err(db_error(OAUTH_FLOW))?;
        Ok(())
    }

    async fn take_oauth_flow(&self, state: &str) -> Result<Option<FlowRow>, Error> {
        let sql = format!("DELETE FROM oauth_flows WHERE state = $1 RETURNING {FLOW_COLS}");
        sqlx::query(&sql)
            .bind(state)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| flow_row(&r))
            .transpose()
    }

    async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        let mut n = 0;
        for sql in [
            "DELETE FROM connect_sessions WHERE expires_at < $1",
            "DELETE FROM oauth_flows WHERE expires_at < $1",
        ] {
            n += sqlx::query(sql)
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(Error::Database)?
                .rows_affected();
        }
        tx.commit().await.map_err(Error::Database)?;
        Ok(n)
    }

    async fn upsert_connection(&self, w: &ConnectionWrite) -> Result<(ConnectionRow, bool), Error> {
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM connections \
             WHERE provider_config_key = $1 AND connection_id = $2 AND deleted_at IS NULL FOR UPDATE",
        )
        .bind(&w.provider_config_key)
        .bind(&w.connection_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::Database)?;
        let (row, created) = match existing {
            Some(id) => {
                let sql = format!(
                    "UPDATE connections SET provider = $1, credentials = $2, credentials_key_id = $3, \
                     expires_at = $4, connection_config = $5::jsonb, \
                     metadata = COALESCE($6::jsonb, metadata), end_user = $7::jsonb, end_user_id = $8, \
                     end_user_organization_id = $9, search_text = $10, tags = $11::jsonb, \
                     webhook_url_override = COALESCE($12, webhook_url_override), \
                     auth_failure = NULL, refresh_failures = 0, refresh_retry_at = NULL, \
                     refresh_lease_until = NULL, version = version + 1, updated_at = $13 \
                     WHERE id = $14 RETURNING {CONNECTION_COLS}"
                );
                let row = sqlx::query(&sql)
                    .bind(&w.provider)
                    .bind(&w.credentials.bytes)
                    .bind(&w.credentials.key_id)
                    .bind(w.expires_at)
                    .bind(&w.connection_config)
                    .bind(&w.metadata)
                    .bind(&w.end_user.json)
                    .bind(&w.end_user.id)
                    .bind(&w.end_user.organization_id)
                    .bind(&w.end_user.search_text)
                    .bind(&w.tags)
                    .bind(&w.webhook_url_override)
                    .bind(w.at)
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, COALESCE($8::jsonb, '{{}}'::jsonb), \
                     $9::jsonb, $10, $11, $12, $13::jsonb, $14, 1, $15, $15) \
                     RETURNING {CONNECTION_COLS}"
                );
                let row = sqlx::query(&sql)
                    .bind(&w.connection_id)
                    .bind(&w.provider_config_key)
                    .bind(&w.provider)
                    .bind(&w.credentials.bytes)
                    .bind(&w.credentials.key_id)
                    .bind(w.expires_at)
                    .bind(&w.connection_config)
                    .bind(&w.metadata)
                    .bind(&w.end_user.json)
                    .bind(&w.end_user.id)
                    .bind(&w.end_user.organization_id)
                    .bind(&w.end_user.search_text)
                    .bind(&w.tags)
                    .bind(&w.webhook_url_override)
                    .bind(w.at)
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
             WHERE provider_config_key = $1 AND connection_id = $2 AND deleted_at IS NULL"
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
            "SELECT {CONNECTION_COLS} FROM connections WHERE id = $1 AND deleted_at IS NULL"
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
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {CONNECTION_COLS} FROM connections WHERE deleted_at IS NULL"
        ));
        if let Some(v) = &q.connection_id {
            qb.push(" AND connection_id = ").push_bind(v.clone());
        }
        if let Some(v) = &q.search {
            qb.push(" AND strpos(search_text, ")
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
            qb.push(" AND provider_config_key = ANY(")
                .push_bind(q.integration_keys.clone())
                .push(")");
        }
        if !q.tags.is_empty() {
            qb.push(" AND tags @> ")
                .push_bind(q.tags_json.clone())
                .push("::jsonb");
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
            "UPDATE connections SET deleted_at = $1, updated_at = $1 \
             WHERE provider_config_key = $2 AND connection_id = $3 AND deleted_at IS NULL",
        )
        .bind(at)
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
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        for cid in connection_ids {
            let row = sqlx::query(
                "SELECT id, metadata::text AS metadata FROM connections \
                 WHERE provider_config_key = $1 AND connection_id = $2 AND deleted_at IS NULL \
                 FOR UPDATE",
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
            sqlx::query(
                "UPDATE connections SET metadata = $1::jsonb, updated_at = $2 WHERE id = $3",
            )
            .bind(new)
            .bind(at)
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
               end_user = CASE WHEN $1 THEN $2::jsonb ELSE end_user END, \
               end_user_id = CASE WHEN $1 THEN $3 ELSE end_user_id END, \
               end_user_organization_id = CASE WHEN $1 THEN $4 ELSE end_user_organization_id END, \
               search_text = CASE WHEN $1 THEN $5 ELSE search_text END, \
               tags = COALESCE($6::jsonb, tags), \
               webhook_url_override = CASE WHEN $7 THEN $8 ELSE webhook_url_override END, \
               updated_at = $9 \
             WHERE provider_config_key = $10 AND connection_id = $11 AND deleted_at IS NULL",
        )
        .bind(eu.is_some())
        .bind(eu.and_then(|e| e.json.clone()))
        .bind(eu.and_then(|e| e.id.clone()))
        .bind(eu.and_then(|e| e.organization_id.clone()))
        .bind(eu.map(|e| e.search_text.clone()))
        .bind(&p.tags)
        .bind(p.webhook_url_override.is_some())
        .bind(p.webhook_url_override.clone().flatten())
        .bind(p.at)
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
            "UPDATE connections SET credentials = $1, credentials_key_id = $2, expires_at = $3, \
             auth_failure = NULL, last_refreshed_at = $4, updated_at = $4, version = version + 1 \
             WHERE id = $5 AND version = $6 AND deleted_at IS NULL RETURNING {CONNECTION_COLS}"
        );
        sqlx::query(&sql)
            .bind(&credentials.bytes)
            .bind(&credentials.key_id)
            .bind(expires_at)
            .bind(at)
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
        sqlx::query(
            "UPDATE connections SET auth_failure = $1::jsonb, updated_at = $2 WHERE id = $3",
        )
        .bind(failure)
        .bind(at)
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
