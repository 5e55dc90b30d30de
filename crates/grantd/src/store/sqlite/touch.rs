//! SQLite SQL for coalesced `last_fetched_at` writes (`store::touch`): one `UPDATE … FROM
//! json_each(?)` per batch.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SqliteBackend, ts};
use crate::store::Error;
use crate::store::touch::TouchBackend;

#[async_trait]
impl TouchBackend for SqliteBackend {
    async fn touch_many(&self, touches: &[(i64, DateTime<Utc>)]) -> Result<(), Error> {
        if touches.is_empty() {
            return Ok(());
        }
        // `[[id, "2025-01-31T12:00:00.000000Z"], …]`: stored timestamps are fixed-width UTC
        // text, so comparing them as text orders them in time.
        let batch = serde_json::Value::Array(
            touches
                .iter()
                .map(|(id, at)| serde_json::json!([id, ts(*at)]))
                .collect(),
        )
        .to_string();
        sqlx::query(
            "UPDATE connections SET last_fetched_at = t.at \
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS at FROM json_each(?)) AS t \
             WHERE connections.id = t.id \
               AND (connections.last_fetched_at IS NULL OR connections.last_fetched_at < t.at)",
        )
        .bind(batch)
        .execute(&self.pool)
        .await
        .map_err(Error::Database)?;
        Ok(())
    }
}
