//! File picker persistence (migrations `0012_picker_sessions`, `0016_picker_pick_once`): picker
//! sessions by token hash, and a session's one pick committed in one transaction — the session
//! stamped `picked_at`, the connection's metadata updated (when asked) and the `picker` webhook
//! in the outbox. Statements are written once (see `db.rs`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::db::{Begin, Jsonb, Ts, fetch, on_pool};
use super::{Error, Store, from_json, micros, now, to_json};
use crate::model::{ConnectionId, PickerOptions, PickerSession, ProviderConfigKey};

#[derive(Debug, sqlx::FromRow)]
struct PickerRow {
    id: i64,
    provider_config_key: String,
    connection_id: String,
    options: String,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    picked_at: Option<DateTime<Utc>>,
}

const COLS: &str =
    "id, provider_config_key, connection_id, options, expires_at, created_at, picked_at";

const INSERT_WEBHOOK: &str = "INSERT INTO webhook_outbox (url, body, next_attempt_at, created_at) \
     VALUES ($1, $2, $3, $3)";

fn session(r: PickerRow) -> Result<PickerSession, Error> {
    let corrupt = |what: &str| Error::Corrupt(format!("picker session {what}"));
    Ok(PickerSession {
        id: r.id,
        provider_config_key: ProviderConfigKey::parse(&r.provider_config_key)
            .map_err(|_| corrupt("integration key"))?,
        connection_id: ConnectionId::parse(&r.connection_id)
            .map_err(|_| corrupt("connection id"))?,
        options: from_json(&r.options, "picker session options")?,
        expires_at: r.expires_at,
        created_at: r.created_at,
        picked_at: r.picked_at,
    })
}

impl Store {
    /// Stores a picker session under the SHA-256 of its token.
    pub async fn create_picker_session(
        &self,
        token_hash: &str,
        key: &ProviderConfigKey,
        connection_id: &ConnectionId,
        options: &PickerOptions,
        expires_at: DateTime<Utc>,
    ) -> Result<PickerSession, Error> {
        let sql = format!(
            "INSERT INTO picker_sessions (token_hash, provider_config_key, connection_id, \
             options, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLS}"
        );
        let row = fetch!(
            &self.db,
            fetch_one::<PickerRow>(
                &sql,
                token_hash,
                key.as_str(),
                connection_id.as_str(),
                to_json(options),
                Ts(micros(expires_at)),
                Ts(now()),
            )
        )?;
        session(row)
    }

    /// The session whose token hashes to `token_hash`, if it has not expired at `now`.
    pub async fn get_picker_session(
        &self,
        token_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<PickerSession>, Error> {
        let sql =
            format!("SELECT {COLS} FROM picker_sessions WHERE token_hash = $1 AND expires_at > $2");
        fetch!(
            &self.db,
            fetch_optional::<PickerRow>(&sql, token_hash, Ts(micros(at)))
        )?
        .map(session)
        .transpose()
    }

    /// Commits the one pick of session `session_id`: the session is stamped `picked_at`,
    /// `update` maps the connection's stored metadata to the new metadata (`None`: leave it), and
    /// the webhook (url, body), when given, is queued — one transaction. Returns the metadata as
    /// stored afterwards; `Ok(None)` when the session was already used (nothing written);
    /// `Error::MissingConnection` if the connection is gone (nothing written).
    pub async fn record_pick(
        &self,
        session_id: i64,
        key: &ProviderConfigKey,
        connection_id: &ConnectionId,
        update: &(dyn Fn(&Value) -> Option<Value> + Sync),
        webhook: Option<(String, String)>,
        at: DateTime<Utc>,
    ) -> Result<Option<Value>, Error> {
        let select = format!(
            "SELECT id, metadata FROM connections \
             WHERE provider_config_key = $1 AND connection_id = $2 AND deleted_at IS NULL{}",
            self.db.for_update()
        );
        let at = Ts(micros(at));
        let queued = webhook.is_some();
        let stored = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let claimed = sqlx::query(
                "UPDATE picker_sessions SET picked_at = $1 WHERE id = $2 AND picked_at IS NULL",
            )
            .bind(at)
            .bind(session_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::Database)?
            .rows_affected();
            if claimed == 0 {
                return Ok(None);
            }
            let row: Option<(i64, Jsonb)> = sqlx::query_as(&select)
                .bind(key.as_str())
                .bind(connection_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::Database)?;
            let Some((id, metadata)) = row else {
                return Err(Error::MissingConnection(connection_id.to_string()));
            };
            let current: Value = serde_json::from_str(&metadata)
                .map_err(|_| Error::Corrupt("connection metadata is not JSON".into()))?;
            let stored = match update(&current) {
                Some(new) => {
                    sqlx::query(
                        "UPDATE connections SET metadata = $1, updated_at = $2 WHERE id = $3",
                    )
                    .bind(Jsonb(new.to_string()))
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::Database)?;
                    new
                }
                None => current,
            };
            if let Some((url, body)) = &webhook {
                sqlx::query(INSERT_WEBHOOK)
                    .bind(url)
                    .bind(body)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::Database)?;
            }
            tx.commit().await.map_err(Error::Database)?;
            Ok(Some(stored))
        })?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        self.cache
            .forget_connection(key.as_str(), connection_id.as_str());
        if queued {
            self.webhook_queued().await;
        }
        Ok(Some(stored))
    }
}
