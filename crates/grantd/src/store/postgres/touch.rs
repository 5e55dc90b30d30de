//! PostgreSQL SQL for coalesced `last_fetched_at` writes (`store::touch`): one `UPDATE … FROM
//! UNNEST` per batch. The cache-notify trigger ignores this column, so no notifications follow.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PgBackend;
use crate::store::Error;
use crate::store::touch::TouchBackend;

#[async_trait]
impl TouchBackend for PgBackend {
    async fn touch_many(&self, touches: &[(i64, DateTime<Utc>)]) -> Result<(), Error> {
        if touches.is_empty() {
            return Ok(());
        }
        let (ids, ats): (Vec<i64>, Vec<DateTime<Utc>>) = touches.iter().copied().unzip();
        // Instances flushing overlapping rows at once may deadlock; PostgreSQL then fails one
        // flush, whose values stay pending for the next (`store::touch`).
        sqlx::query(
            "UPDATE connections AS c SET last_fetched_at = t.at \
             FROM UNNEST($1::bigint[], $2::timestamptz[]) AS t(id, at) \
             WHERE c.id = t.id AND (c.last_fetched_at IS NULL OR c.last_fetched_at < t.at)",
        )
        .bind(ids)
        .bind(ats)
        .execute(&self.pool)
        .await
        .map_err(Error::Database)?;
        Ok(())
    }
}
