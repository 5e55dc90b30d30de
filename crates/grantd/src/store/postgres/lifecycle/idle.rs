//! PostgreSQL SQL restarting a connection's idle clock (the proactive job counts idleness from
//! `last_refreshed_at`, else `created_at`) when a reconnect has just issued new tokens.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::store::Error;

/// Sets `last_refreshed_at` of connection `id` at `version`; `false` if it has moved on.
pub(super) async fn restart(
    pool: &PgPool,
    id: i64,
    version: i64,
    at: DateTime<Utc>,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE connections SET last_refreshed_at = $1 \
         WHERE id = $2 AND version = $3 AND deleted_at IS NULL",
    )
    .bind(at)
    .bind(id)
    .bind(version)
    .execute(pool)
    .await
    .map_err(Error::Database)?;
    Ok(done.rows_affected() == 1)
}
