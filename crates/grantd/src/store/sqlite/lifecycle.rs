//! SQLite SQL for the token lifecycle. One process owns a SQLite database and the in-process
//! single flight serialises refreshes, so the refresh "lock" is a compare-and-swap on `version`;
//! claiming uses leases (SQLite serialises writers, so one `UPDATE … RETURNING` is atomic).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::{CONNECTION_COLS, SqliteBackend, connection_row, get, get_ts_opt, ts, ts_opt};
use crate::store::Error;
use crate::store::lifecycle::*;

mod idle;
mod misconfigured;

struct SqliteRefreshTx {
    pool: SqlitePool,
    id: i64,
    version: i64,
}

#[async_trait]
impl RefreshTx for SqliteRefreshTx {
    async fn save(
        self: Box<Self>,
        w: &RefreshedWrite,
    ) -> Result<Option<crate::store::backend::ConnectionRow>, Error> {
        let sql = format!(
            "UPDATE connections SET credentials = ?, credentials_key_id = ?, expires_at = ?, \
             connection_config = ?, auth_failure = NULL, refresh_failures = 0, \
             refresh_retry_at = NULL, refresh_lease_until = NULL, last_refreshed_at = ?, \
             updated_at = ?, version = version + 1 \
             WHERE id = ? AND version = ? AND deleted_at IS NULL RETURNING {CONNECTION_COLS}"
        );
        sqlx::query(&sql)
            .bind(&w.credentials.bytes)
            .bind(&w.credentials.key_id)
            .bind(ts_opt(w.expires_at))
            .bind(&w.connection_config)
            .bind(ts(w.at))
            .bind(ts(w.at))
            .bind(self.id)
            .bind(self.version)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| connection_row(&r))
            .transpose()
    }

    async fn fail(self: Box<Self>, w: &FailureWrite) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        sqlx::query(
            "UPDATE connections SET auth_failure = COALESCE(?, auth_failure), \
             refresh_failures = refresh_failures + 1, refresh_retry_at = ?, \
             refresh_lease_until = NULL, updated_at = ? WHERE id = ? AND version = ?",
        )
        .bind(&w.auth_failure)
        .bind(ts_opt(w.retry_at))
        .bind(ts(w.at))
        .bind(self.id)
        .bind(self.version)
        .execute(&mut *tx)
        .await
        .map_err(Error::Database)?;
        if let Some((url, body)) = &w.webhook {
            sqlx::query(
                "INSERT INTO webhook_outbox (url, body, next_attempt_at, created_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(url)
            .bind(body)
            .bind(ts(w.at))
            .bind(ts(w.at))
            .execute(&mut *tx)
            .await
            .map_err(Error::Database)?;
        }
        tx.commit().await.map_err(Error::Database)?;
        Ok(())
    }
}

fn retry_state(r: &sqlx::sqlite::SqliteRow) -> Result<RetryState, Error> {
    Ok(RetryState {
        failures: get(r, "refresh_failures")?,
        retry_at: get_ts_opt(r, "refresh_retry_at")?,
    })
}

#[async_trait]
impl LifecycleBackend for SqliteBackend {
    async fn lock_for_refresh(
        &self,
        id: i64,
    ) -> Result<Option<(Box<dyn RefreshTx>, LockedRow)>, Error> {
        let sql = format!(
            "SELECT {CONNECTION_COLS}, refresh_failures, refresh_retry_at FROM connections \
             WHERE id = ? AND deleted_at IS NULL"
        );
        let Some(r) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
        else {
            return Ok(None);
        };
        let row = connection_row(&r)?;
        let retry = retry_state(&r)?;
        let version = row.version;
        Ok(Some((
            Box::new(SqliteRefreshTx {
                pool: self.pool.clone(),
                id,
                version,
            }),
            LockedRow { row, retry },
        )))
    }

    async fn retry_state(&self, id: i64) -> Result<Option<RetryState>, Error> {
        sqlx::query("SELECT refresh_failures, refresh_retry_at FROM connections WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| retry_state(&r))
            .transpose()
    }

    async fn claim_due_refreshes(&self, q: &ClaimQuery) -> Result<Vec<i64>, Error> {
        let now = ts(q.now);
        let rows = sqlx::query(
            "UPDATE connections SET refresh_lease_until = ? WHERE id IN ( \
               SELECT id FROM connections \
               WHERE deleted_at IS NULL AND auth_failure IS NULL \
                 AND (refresh_lease_until IS NULL OR refresh_lease_until <= ?) \
                 AND (refresh_retry_at IS NULL OR refresh_retry_at <= ?) \
                 AND (COALESCE(last_refreshed_at, created_at) <= ? \
                      OR (? IS NOT NULL AND expires_at <= ?)) \
               ORDER BY COALESCE(last_refreshed_at, created_at), id LIMIT ?) \
             RETURNING id",
        )
        .bind(ts(q.lease_until))
        .bind(&now)
        .bind(&now)
        .bind(ts(q.idle_before))
        .bind(ts_opt(q.expiring_before))
        .bind(ts_opt(q.expiring_before))
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::Database)?;
        rows.iter().map(|r| get(r, "id")).collect()
    }

    async fn enqueue_webhook(&self, url: &str, body: &str, at: DateTime<Utc>) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO webhook_outbox (url, body, next_attempt_at, created_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(url)
        .bind(body)
        .bind(ts(at))
        .bind(ts(at))
        .execute(&self.pool)
        .await
        .map_err(Error::Database)?;
        Ok(())
    }

    async fn claim_webhooks(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, Error> {
        let now = ts(now);
        let rows = sqlx::query(
            "UPDATE webhook_outbox SET lease_until = ? WHERE id IN ( \
               SELECT id FROM webhook_outbox \
               WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= ? \
                 AND (lease_until IS NULL OR lease_until <= ?) \
               ORDER BY id LIMIT ?) \
             RETURNING id, url, body, attempts",
        )
        .bind(ts(lease_until))
        .bind(&now)
        .bind(&now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::Database)?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: get(r, "id")?,
                    url: get(r, "url")?,
                    body: get(r, "body")?,
                    attempts: get(r, "attempts")?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    async fn webhook_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error> {
        sqlx::query(
            "UPDATE webhook_outbox SET delivered_at = ?, attempts = attempts + 1, \
             lease_until = NULL WHERE id = ?",
        )
        .bind(ts(at))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(Error::Database)?;
        Ok(())
    }

    async fn webhook_failed(
        &self,
        id: i64,
        next_attempt_at: Option<DateTime<Utc>>,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let next = ts_opt(next_attempt_at);
        sqlx::query(
            "UPDATE webhook_outbox SET attempts = attempts + 1, lease_until = NULL, \
             last_error = ?, next_attempt_at = COALESCE(?, next_attempt_at), \
             abandoned_at = CASE WHEN ? IS NULL THEN ? ELSE NULL END WHERE id = ?",
        )
        .bind(error)
        .bind(&next)
        .bind(&next)
        .bind(ts(at))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(Error::Database)?;
        Ok(())
    }

    async fn clear_misconfigured(
        &self,
        provider_config_key: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<i64>, Error> {
        misconfigured::clear(&self.pool, provider_config_key, at).await
    }

    async fn restart_idle_clock(
        &self,
        id: i64,
        version: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        idle::restart(&self.pool, id, version, at).await
    }

    async fn webhook_counts(&self) -> Result<(u64, u64, u64), Error> {
        let r = sqlx::query(
            "SELECT COALESCE(SUM(delivered_at IS NULL AND abandoned_at IS NULL), 0) AS p, \
             COALESCE(SUM(delivered_at IS NOT NULL), 0) AS d, \
             COALESCE(SUM(abandoned_at IS NOT NULL), 0) AS a FROM webhook_outbox",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(Error::Database)?;
        let n = |c: &str| -> Result<u64, Error> { Ok(get::<i64>(&r, c)?.max(0) as u64) };
        Ok((n("p")?, n("d")?, n("a")?))
    }
}
