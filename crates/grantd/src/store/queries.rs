//! The SQL of integrations, connect sessions, OAuth flows and connections, written once for
//! both databases (`db.rs` says how): each method is one statement or one transaction, and maps
//! plain rows (`rows.rs`) in and out. Other tables' SQL sits beside its `Store` methods
//! (`lifecycle.rs`, `app_credentials.rs`, `rekey.rs`, `touch.rs`, `outbox_view.rs`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::QueryBuilder;

use super::Error;
use super::db::{Begin, Db, Jsonb, TagFilter, Ts, execute, fetch, on_pool};
use super::rows::*;

/// The columns of `IntegrationRow`.
macro_rules! integration_cols {
    () => {
        "id, unique_key, provider, display_name, client_id, client_secret, client_secret_key_id, \
         scopes, forward_webhooks, integration_config, created_at, updated_at"
    };
}

/// The columns of `SessionRow`.
macro_rules! session_cols {
    () => {
        "id, token_hash, end_user, organization, allowed_integrations, \
         integrations_config_defaults, reconnect_provider_config_key, reconnect_connection_id, \
         tags, webhook_url_override, expires_at, created_at, overrides"
    };
}

/// The columns of `FlowRow`.
macro_rules! flow_cols {
    () => {
        "state, provider_config_key, connection_id, connect_session_id, ws_client_id, \
         code_verifier, code_verifier_key_id, connection_config, redirect_uri, kind, expires_at, \
         created_at"
    };
}

/// The columns of `ConnectionRow`.
macro_rules! connection_cols {
    () => {
        "id, connection_id, provider_config_key, provider, credentials, credentials_key_id, \
         connection_config, metadata, end_user, tags, webhook_url_override, auth_failure, version, \
         last_fetched_at, last_refreshed_at, created_at, updated_at"
    };
}
pub(super) use connection_cols;

/// `search` as a `LIKE` pattern matching it anywhere, with `!` escaping `%`, `_` and itself (not
/// `\`, whose meaning in a PostgreSQL literal depends on `standard_conforming_strings`).
fn contains_pattern(search: &str) -> String {
    let mut p = String::with_capacity(search.len() + 2);
    p.push('%');
    for c in search.chars() {
        if matches!(c, '!' | '%' | '_') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Db {
    /// Readiness: a trivial query.
    pub(super) async fn ping(&self) -> Result<(), Error> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(Error::Database)?;
        Ok(())
    }

    // ---- integrations ----

    pub(super) async fn insert_integration(
        &self,
        w: &IntegrationWrite,
    ) -> Result<IntegrationRow, Error> {
        const SQL: &str = concat!(
            "INSERT INTO integrations (unique_key, provider, display_name, client_id, \
             client_secret, client_secret_key_id, scopes, forward_webhooks, integration_config, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING ",
            integration_cols!()
        );
        fetch!(
            self,
            fetch_one::<IntegrationRow>(
                SQL,
                &w.unique_key,
                &w.provider,
                &w.display_name,
                &w.client_id,
                &w.client_secret.bytes,
                &w.client_secret.key_id,
                &w.scopes,
                w.forward_webhooks,
                &w.integration_config,
                Ts(w.at),
            ) => db_error(INTEGRATION)
        )
    }

    pub(super) async fn get_integration(&self, key: &str) -> Result<Option<IntegrationRow>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            integration_cols!(),
            " FROM integrations WHERE unique_key = $1"
        );
        fetch!(self, fetch_optional::<IntegrationRow>(SQL, key))
    }

    pub(super) async fn list_integrations(&self) -> Result<Vec<IntegrationRow>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            integration_cols!(),
            " FROM integrations ORDER BY created_at, id"
        );
        fetch!(self, fetch_all::<IntegrationRow>(SQL))
    }

    /// One transaction: `None` if `key` is missing, `Refused` when renaming with live
    /// connections, `Conflict` when the new key is taken.
    pub(super) async fn update_integration(
        &self,
        key: &str,
        w: &IntegrationWrite,
    ) -> Result<Option<IntegrationRow>, Error> {
        const UPDATE: &str = concat!(
            "UPDATE integrations SET unique_key = $1, provider = $2, display_name = $3, \
             client_id = $4, client_secret = $5, client_secret_key_id = $6, scopes = $7, \
             forward_webhooks = $8, integration_config = $9, updated_at = $10 \
             WHERE id = $11 RETURNING ",
            integration_cols!()
        );
        let select = format!(
            "SELECT id FROM integrations WHERE unique_key = $1{}",
            self.for_update()
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let id: Option<i64> = sqlx::query_scalar(&select)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::Database)?;
            let Some(id) = id else { return Ok(None) };
            if w.unique_key != key {
                let live: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM connections \
                     WHERE provider_config_key = $1 AND deleted_at IS NULL",
                )
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .map_err(Error::Database)?;
                if live > 0 {
                    return Err(Error::Refused(RENAME_REFUSED));
                }
            }
            let row = sqlx::query_as::<_, IntegrationRow>(UPDATE)
                .bind(&w.unique_key)
                .bind(&w.provider)
                .bind(&w.display_name)
                .bind(&w.client_id)
                .bind(&w.client_secret.bytes)
                .bind(&w.client_secret.key_id)
                .bind(&w.scopes)
                .bind(w.forward_webhooks)
                .bind(&w.integration_config)
                .bind(Ts(w.at))
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error(INTEGRATION))?;
            tx.commit().await.map_err(Error::Database)?;
            Ok(Some(row))
        })
    }

    /// One transaction: deletes the integration, soft-deletes its live connections.
    pub(super) async fn delete_integration(
        &self,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
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
            .bind(Ts(at))
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(Error::Database)?;
            tx.commit().await.map_err(Error::Database)?;
            Ok(true)
        })
    }

    // ---- connect sessions ----

    pub(super) async fn insert_connect_session(&self, s: &SessionRow) -> Result<SessionRow, Error> {
        const SQL: &str = concat!(
            "INSERT INTO connect_sessions (token_hash, end_user, organization, \
             allowed_integrations, integrations_config_defaults, reconnect_provider_config_key, \
             reconnect_connection_id, tags, webhook_url_override, expires_at, created_at, \
             overrides) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING ",
            session_cols!()
        );
        fetch!(
            self,
            fetch_one::<SessionRow>(
                SQL,
                &s.token_hash,
                &s.end_user,
                &s.organization,
                &s.allowed_integrations,
                &s.integrations_config_defaults,
                &s.reconnect_provider_config_key,
                &s.reconnect_connection_id,
                &s.tags,
                &s.webhook_url_override,
                Ts(s.expires_at),
                Ts(s.created_at),
                &s.overrides,
            ) => db_error(CONNECT_SESSION)
        )
    }

    pub(super) async fn get_connect_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            session_cols!(),
            " FROM connect_sessions WHERE token_hash = $1 AND expires_at > $2"
        );
        fetch!(self, fetch_optional::<SessionRow>(SQL, token_hash, Ts(now)))
    }

    pub(super) async fn get_connect_session_by_id(
        &self,
        id: i64,
    ) -> Result<Option<SessionRow>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            session_cols!(),
            " FROM connect_sessions WHERE id = $1"
        );
        fetch!(self, fetch_optional::<SessionRow>(SQL, id))
    }

    pub(super) async fn end_connect_session(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let done = execute!(
            self,
            "UPDATE connect_sessions SET expires_at = $2 WHERE id = $1 AND expires_at > $2",
            id,
            Ts(at),
        )?;
        Ok(done > 0)
    }

    pub(super) async fn delete_connect_session(&self, token_hash: &str) -> Result<bool, Error> {
        let done = execute!(
            self,
            "DELETE FROM connect_sessions WHERE token_hash = $1",
            token_hash,
        )?;
        Ok(done > 0)
    }

    // ---- OAuth flows ----

    pub(super) async fn insert_oauth_flow(&self, f: &FlowRow) -> Result<(), Error> {
        execute!(
            self,
            "INSERT INTO oauth_flows (state, provider_config_key, connection_id, \
             connect_session_id, ws_client_id, code_verifier, code_verifier_key_id, \
             connection_config, redirect_uri, kind, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &f.state,
            &f.provider_config_key,
            &f.connection_id,
            f.connect_session_id,
            &f.ws_client_id,
            &f.code_verifier,
            &f.code_verifier_key_id,
            &f.connection_config,
            &f.redirect_uri,
            &f.kind,
            Ts(f.expires_at),
            Ts(f.created_at) => db_error(OAUTH_FLOW)
        )?;
        Ok(())
    }

    pub(super) async fn take_oauth_flow(&self, state: &str) -> Result<Option<FlowRow>, Error> {
        const SQL: &str = concat!(
            "DELETE FROM oauth_flows WHERE state = $1 RETURNING ",
            flow_cols!()
        );
        fetch!(self, fetch_optional::<FlowRow>(SQL, state))
    }

    pub(super) async fn ws_client_has_flow(&self, ws_client_id: &str) -> Result<bool, Error> {
        let n = fetch!(
            self,
            scalar fetch_one::<i64>(
                "SELECT COUNT(*) FROM oauth_flows WHERE ws_client_id = $1",
                ws_client_id,
            )
        )?;
        Ok(n > 0)
    }

    /// Deletes connect sessions, flows and dashboard sessions that expired before `before`;
    /// returns how many rows went.
    /// Deletes connect and picker sessions and flows that expired before `before`; returns how many rows went.
    pub(super) async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut n = 0;
            for sql in [
                "DELETE FROM connect_sessions WHERE expires_at < $1",
                "DELETE FROM oauth_flows WHERE expires_at < $1",
                "DELETE FROM dashboard_sessions WHERE expires_at < $1",
                "DELETE FROM picker_sessions WHERE expires_at < $1",
            ] {
                n += sqlx::query(sql)
                    .bind(Ts(before))
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::Database)?
                    .rows_affected();
            }
            tx.commit().await.map_err(Error::Database)?;
            Ok(n)
        })
    }

    // ---- connections ----

    /// One transaction; returns the row and whether it was inserted.
    pub(super) async fn upsert_connection(
        &self,
        w: &ConnectionWrite,
    ) -> Result<(ConnectionRow, bool), Error> {
        // Both statements number the written values alike, so they are bound once.
        const UPDATE: &str = concat!(
            "UPDATE connections SET provider = $3, credentials = $4, credentials_key_id = $5, \
             expires_at = $6, connection_config = $7, metadata = COALESCE($8, metadata), \
             end_user = $9, end_user_id = $10, end_user_organization_id = $11, search_text = $12, \
             tags = $13, webhook_url_override = COALESCE($14, webhook_url_override), \
             auth_failure = NULL, refresh_failures = 0, refresh_retry_at = NULL, \
             refresh_lease_until = NULL, version = version + 1, updated_at = $15 \
             WHERE id = $16 AND provider_config_key = $1 AND connection_id = $2 RETURNING ",
            connection_cols!()
        );
        const INSERT: &str = concat!(
            "INSERT INTO connections (provider_config_key, connection_id, provider, credentials, \
             credentials_key_id, expires_at, connection_config, metadata, end_user, end_user_id, \
             end_user_organization_id, search_text, tags, webhook_url_override, version, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, '{}'), $9, $10, $11, $12, $13, $14, \
             1, $15, $15) RETURNING ",
            connection_cols!()
        );
        let select = format!(
            "SELECT id FROM connections \
             WHERE provider_config_key = $1 AND connection_id = $2 AND deleted_at IS NULL{}",
            self.for_update()
        );
        let eu = &w.end_user;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let existing: Option<i64> = sqlx::query_scalar(&select)
                .bind(&w.provider_config_key)
                .bind(&w.connection_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::Database)?;
            let mut query = sqlx::query_as::<_, ConnectionRow>(match existing {
                Some(_) => UPDATE,
                None => INSERT,
            })
            .bind(&w.provider_config_key)
            .bind(&w.connection_id)
            .bind(&w.provider)
            .bind(&w.credentials.bytes)
            .bind(&w.credentials.key_id)
            .bind(Ts::opt(w.expires_at))
            .bind(Jsonb(&w.connection_config))
            .bind(w.metadata.as_deref().map(Jsonb))
            .bind(eu.json.as_deref().map(Jsonb))
            .bind(&eu.id)
            .bind(&eu.organization_id)
            .bind(&eu.search_text)
            .bind(Jsonb(&w.tags))
            .bind(&w.webhook_url_override)
            .bind(Ts(w.at));
            if let Some(id) = existing {
                query = query.bind(id);
            }
            let row = query
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error(CONNECTION))?;
            tx.commit().await.map_err(Error::Database)?;
            Ok((row, existing.is_none()))
        })
    }

    pub(super) async fn get_connection(
        &self,
        key: &str,
        connection_id: &str,
    ) -> Result<Option<ConnectionRow>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            connection_cols!(),
            " FROM connections \
             WHERE provider_config_key = $1 AND connection_id = $2 AND deleted_at IS NULL"
        );
        fetch!(
            self,
            fetch_optional::<ConnectionRow>(SQL, key, connection_id,)
        )
    }

    pub(super) async fn get_connection_by_id(
        &self,
        id: i64,
    ) -> Result<Option<ConnectionRow>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            connection_cols!(),
            " FROM connections WHERE id = $1 AND deleted_at IS NULL"
        );
        fetch!(self, fetch_optional::<ConnectionRow>(SQL, id))
    }

    pub(super) async fn list_connections(
        &self,
        q: &ListQuery,
    ) -> Result<Vec<ConnectionRow>, Error> {
        on_pool!(self, |pool| {
            let mut qb = QueryBuilder::new(concat!(
                "SELECT ",
                connection_cols!(),
                " FROM connections WHERE deleted_at IS NULL"
            ));
            if let Some(v) = &q.connection_id {
                qb.push(" AND connection_id = ").push_bind(v.clone());
            }
            if let Some(v) = &q.search {
                qb.push(" AND search_text LIKE ")
                    .push_bind(contains_pattern(v))
                    .push(" ESCAPE '!'");
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
            qb.push_tags(&q.tags, &q.tags_json);
            qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(q.limit)
                .push(" OFFSET ")
                .push_bind(q.offset);
            qb.build_query_as::<ConnectionRow>().fetch_all(pool).await
        })
        .map_err(Error::Database)
    }

    pub(super) async fn delete_connection(
        &self,
        key: &str,
        connection_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let n = execute!(
            self,
            "UPDATE connections SET deleted_at = $1, updated_at = $1 \
             WHERE provider_config_key = $2 AND connection_id = $3 AND deleted_at IS NULL",
            Ts(at),
            key,
            connection_id,
        )?;
        Ok(n > 0)
    }

    /// One transaction, all or nothing (`MissingConnection` names the first missing id).
    pub(super) async fn set_metadata(
        &self,
        key: &str,
        connection_ids: &[&str],
        metadata: &Value,
        merge: bool,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let select = format!(
            "SELECT id, metadata FROM connections \
             WHERE provider_config_key = $1 AND connection_id = $2 AND deleted_at IS NULL{}",
            self.for_update()
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            for cid in connection_ids {
                let row: Option<(i64, Jsonb)> = sqlx::query_as(&select)
                    .bind(key)
                    .bind(cid)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Error::Database)?;
                // Dropping `tx` without commit rolls back what earlier iterations wrote.
                let Some((id, stored)) = row else {
                    return Err(Error::MissingConnection((*cid).to_owned()));
                };
                let new = merged_metadata(&stored, metadata, merge)?;
                sqlx::query("UPDATE connections SET metadata = $1, updated_at = $2 WHERE id = $3")
                    .bind(Jsonb(new))
                    .bind(Ts(at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::Database)?;
            }
            tx.commit().await.map_err(Error::Database)
        })
    }

    pub(super) async fn patch_connection(
        &self,
        key: &str,
        connection_id: &str,
        p: &PatchWrite,
    ) -> Result<bool, Error> {
        let eu = p.end_user.as_ref();
        let n = execute!(
            self,
            "UPDATE connections SET \
             end_user = CASE WHEN $1 THEN $2 ELSE end_user END, \
             end_user_id = CASE WHEN $1 THEN $3 ELSE end_user_id END, \
             end_user_organization_id = CASE WHEN $1 THEN $4 ELSE end_user_organization_id END, \
             search_text = CASE WHEN $1 THEN $5 ELSE search_text END, \
             tags = COALESCE($6, tags), \
             webhook_url_override = CASE WHEN $7 THEN $8 ELSE webhook_url_override END, \
             updated_at = $9 \
             WHERE provider_config_key = $10 AND connection_id = $11 AND deleted_at IS NULL",
            eu.is_some(),
            eu.and_then(|e| e.json.as_deref()).map(Jsonb),
            eu.and_then(|e| e.id.as_deref()),
            eu.and_then(|e| e.organization_id.as_deref()),
            eu.map(|e| e.search_text.as_str()),
            p.tags.as_deref().map(Jsonb),
            p.webhook_url_override.is_some(),
            p.webhook_url_override.as_ref().and_then(|o| o.as_deref()),
            Ts(p.at),
            key,
            connection_id,
        )?;
        Ok(n > 0)
    }

    pub(super) async fn save_refreshed(
        &self,
        id: i64,
        expected_version: i64,
        credentials: &crate::crypto::Sealed,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<Option<ConnectionRow>, Error> {
        const SQL: &str = concat!(
            "UPDATE connections SET credentials = $1, credentials_key_id = $2, expires_at = $3, \
             auth_failure = NULL, last_refreshed_at = $4, updated_at = $4, version = version + 1 \
             WHERE id = $5 AND version = $6 AND deleted_at IS NULL RETURNING ",
            connection_cols!()
        );
        fetch!(
            self,
            fetch_optional::<ConnectionRow>(
                SQL,
                &credentials.bytes,
                &credentials.key_id,
                Ts::opt(expires_at),
                Ts(at),
                id,
                expected_version,
            )
        )
    }

    pub(super) async fn set_auth_failure(
        &self,
        id: i64,
        failure: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        execute!(
            self,
            "UPDATE connections SET auth_failure = $1, updated_at = $2 WHERE id = $3",
            failure.map(Jsonb),
            Ts(at),
            id,
        )?;
        Ok(())
    }

    pub(super) async fn count_connections(&self) -> Result<u64, Error> {
        let n: i64 = fetch!(
            self,
            scalar fetch_one::<_>(
                "SELECT COUNT(*) FROM connections WHERE deleted_at IS NULL",
            )
        )?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_patterns_escape_like_wildcards() {
        assert_eq!(super::contains_pattern("a_b%c!\\"), "%a!_b!%c!!\\%");
        assert_eq!(super::contains_pattern(""), "%%");
    }
}
