//! SQLite SQL for the dashboard's read-only outbox view (`store::outbox_view`).

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;

use super::{SqliteBackend, get, get_ts, get_ts_opt};
use crate::store::Error;
use crate::store::outbox_view::{OutboxEntry, OutboxViewBackend};

fn entry(r: &SqliteRow) -> Result<OutboxEntry, Error> {
    Ok(OutboxEntry {
        id: get(r, "id")?,
        url: get(r, "url")?,
        body: get(r, "body")?,
        attempts: get(r, "attempts")?,
        next_attempt_at: get_ts(r, "next_attempt_at")?,
        last_error: get(r, "last_error")?,
        created_at: get_ts(r, "created_at")?,
        delivered_at: get_ts_opt(r, "delivered_at")?,
        abandoned_at: get_ts_opt(r, "abandoned_at")?,
    })
}

#[async_trait]
impl OutboxViewBackend for SqliteBackend {
    async fn recent_webhooks(&self, limit: i64) -> Result<Vec<OutboxEntry>, Error> {
        sqlx::query(
            "SELECT id, url, body, attempts, next_attempt_at, last_error, created_at, \
             delivered_at, abandoned_at FROM webhook_outbox ORDER BY id DESC LIMIT ?",
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
