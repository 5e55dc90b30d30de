//! SQLite SQL clearing the `misconfigured` auth failures of one integration's connections (after
//! its app credentials were updated), so their next read tries to refresh again.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::super::{get, ts};
use crate::store::Error;

/// Clears the failures; returns the ids of the connections cleared.
pub(super) async fn clear(
    pool: &SqlitePool,
    provider_config_key: &str,
    at: DateTime<Utc>,
) -> Result<Vec<i64>, Error> {
    let rows = sqlx::query(
        "UPDATE connections SET auth_failure = NULL, refresh_failures = 0, \
         refresh_retry_at = NULL, updated_at = ?, version = version + 1 \
         WHERE provider_config_key = ? AND deleted_at IS NULL AND auth_failure IS NOT NULL \
           AND json_extract(auth_failure, '$.kind') = 'misconfigured' \
         RETURNING id",
    )
    .bind(ts(at))
    .bind(provider_config_key)
    .fetch_all(pool)
    .await
    .map_err(Error::Database)?;
    rows.iter().map(|r| get(r, "id")).collect()
}
