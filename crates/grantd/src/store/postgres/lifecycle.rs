//! PostgreSQL SQL for the token lifecycle: the refresh row lock (a transaction holding
//! `SELECT … FOR UPDATE` across the token call), lease-based claiming with `FOR UPDATE SKIP
//! LOCKED`, and the webhook outbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::{CONNECTION_COLS, PgBackend, connection_row, get};
use crate::store::Error;
use crate::store::lifecycle::*;

mod idle;
mod misconfigured;

struct PgRefreshTx {
    tx: Transaction<'static, Postgres>,
    id: i64,
    version: i64,
}

#[async_trait]
impl RefreshTx for PgRefreshTx {
    async fn save(
        mut self: Box<Self>,
        w: &RefreshedWrite,
    ) -> Result<Option<crate::store::backend::ConnectionRow>, Error> {
        let sql = format!(
            "UPDATE connections SET credentials = $1, credentials_key_id = $2, expires_at = $3, \
             connection_config = $4::jsonb, auth_failure = NULL, refresh_failures = 0, \
             refresh_retry_at = NULL, refresh_lease_until = NULL, last_refreshed_at = $5, \
             updated_at = $5, version = version + 1 \
             WHERE id = $6 AND version = $7 AND deleted_at IS NULL RETURNING {CONNECTION_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(&w.credentials.bytes)
            .bind(&w.credentials.key_id)
            .bind(w.expires_at)
            .bind(&w.connection_config)
            .bind(w.at)
            .bind(self.id)
            .bind(self.version)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(Error::Database)?
            .map(|r| connection_row(&r))
            .transpose()?;
        self.tx.commit().await.map_err(Error::Database)?;
        Ok(row)
    }

    async fn fail(mut self: Box<Self>, w: &FailureWrite) -> Result<(), Error> {
        sqlx::query(
            "UPDATE connections SET auth_failure = COALESCE($1::jsonb, auth_failure), \
             refresh_failures = refresh_failures + 1, refresh_retry_at = $2, \
             refresh_lease_until = NULL, updated_at = $3 WHERE id = $4",
        )
        .bind(&w.auth_failure)
        .bind(w.retry_at)
        .bind(w.at)
        .bind(self.id)
        .execute(&mut *self.tx)
        .await
        .map_err(Error::Database)?;
        if let Some((url, body)) = &w.webhook {
            sqlx::query(
                "INSERT INTO webhook_outbox (url, body, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, $3)",
            )
            .bind(url)
            .bind(body)
            .bind(w.at)
            .execute(&mut *self.tx)
            .await
            .map_err(Error::Database)?;
        }
        self.tx.commit().await.map_err(Error::Database)?;
        Ok(())
    }
}

fn retry_state(r: &sqlx::postgres::PgRow) -> Result<RetryState, Error> {
    Ok(RetryState {
        failures: get(r, "refresh_failures")?,
        retry_at: get(r, "refresh_retry_at")?,
    })
}

#[async_trait]
impl LifecycleBackend for PgBackend {
    async fn lock_for_refresh(
        &self,
        id: i64,
    ) -> Result<Option<(Box<dyn RefreshTx>, LockedRow)>, Error> {
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        let sql = format!(
            "SELECT {CONNECTION_COLS}, refresh_failures, refresh_retry_at FROM connections \
             WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
        );
        let Some(r) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::Database)?
        else {
            return Ok(None);
        };
        let row = connection_row(&r)?;
        let retry = retry_state(&r)?;
        let version = row.version;
        Ok(Some((
            Box::new(PgRefreshTx { tx, id, version }),
            LockedRow { row, retry },
        )))
    }

    async fn retry_state(&self, id: i64) -> Result<Option<RetryState>, Error> {
        sqlx::query("SELECT refresh_failures, refresh_retry_at FROM connections WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::Database)?
            .map(|r| retry_state(&r))
            .transpose()
    }

    async fn claim_due_refreshes(&self, q: &ClaimQuery) -> Result<Vec<i64>, Error> {
        let rows = sqlx::query(
            "UPDATE connections SET refresh_lease_until = $1 WHERE id IN ( \
               SELECT id FROM connections \
               WHERE deleted_at IS NULL AND auth_failure IS NULL \
                 AND (refresh_lease_until IS NULL OR refresh_lease_until <= $2) \
                 AND (refresh_retry_at IS NULL OR refresh_retry_at <= $2) \
                 AND (COALESCE(last_refreshed_at, created_at) <= $3 \
                      OR ($4::timestamptz IS NOT NULL AND expires_at <= $4)) \
               ORDER BY COALESCE(last_refreshed_at, created_at), id \
               LIMIT $5 FOR UPDATE SKIP LOCKED) \
             RETURNING id",
        )
        .bind(q.lease_until)
        .bind(q.now)
        .bind(q.idle_before)
        .bind(q.expiring_before)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::Database)?;
        rows.iter().map(|r| get(r, "id")).collect()
    }

    async fn enqueue_webhook(&self, url: &str, body: &str, at: DateTime<Utc>) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO webhook_outbox (url, body, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $3)",
        )
        .bind(url)
        .bind(body)
        .bind(at)
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
        let rows = sqlx::query(
            "UPDATE webhook_outbox SET lease_until = $1 WHERE id IN ( \
               SELECT id FROM webhook_outbox \
               WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= $2 \
                 AND (lease_until IS NULL OR lease_until <= $2) \
               ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, url, body, attempts",
        )
        .bind(lease_until)
        .bind(now)
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
            "UPDATE webhook_outbox SET delivered_at = $1, attempts = attempts + 1, \
             lease_until = NULL WHERE id = $2",
        )
        .bind(at)
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
        sqlx::query(
            "UPDATE webhook_outbox SET attempts = attempts + 1, lease_until = NULL, \
             last_error = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
             abandoned_at = CASE WHEN $2::timestamptz IS NULL THEN $3 ELSE NULL END \
             WHERE id = $4",
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(at)
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
            "SELECT COUNT(*) FILTER (WHERE delivered_at IS NULL AND abandoned_at IS NULL) AS p, \
             COUNT(*) FILTER (WHERE delivered_at IS NOT NULL) AS d, \
             COUNT(*) FILTER (WHERE abandoned_at IS NOT NULL) AS a FROM webhook_outbox",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(Error::Database)?;
        let n = |c: &str| -> Result<u64, Error> { Ok(get::<i64>(&r, c)?.max(0) as u64) };
        Ok((n("p")?, n("d")?, n("a")?))
    }
}
