//! PostgreSQL SQL for the dashboard's read-only outbox view (`store::outbox_view`).

use async_trait::async_trait;
use sqlx::postgres::PgRow;

use super::{PgBackend, get};
use crate::store::Error;
use crate::store::outbox_view::{OutboxEntry, OutboxViewBackend};

fn entry(r: &PgRow) -> Result<OutboxEntry, Error> {
    Ok(OutboxEntry {
        id: get(r, "id")?,
        url: get(r, "url")?,
        body: get(r, "body")?,
        attempts: get(r, "attempts")?,
        next_attempt_at: get(r, "next_attempt_at")?,
        last_error: get(r, "last_error")?,
        created_at: get(r, "created_at")?,
        delivered_at: get(r, "delivered_at")?,
        abandoned_at: get(r, "abandoned_at")?,
    })
}

#[async_trait]
impl OutboxViewBackend for PgBackend {
    async fn recent_webhooks(&self, limit: i64) -> Result<Vec<OutboxEntry>, Error> {
        sqlx::query(
            "SELECT id, url, body, attempts, next_attempt_at, last_error, created_at, \
             delivered_at, abandoned_at FROM webhook_outbox ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::Database)?
        .iter()
        .map(entry)
        .collect()
    }
}
