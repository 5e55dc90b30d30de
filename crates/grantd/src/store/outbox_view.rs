//! Read-only view of the webhook outbox for the dashboard: the most recent rows, newest first,
//! with their delivery state: one query, written once for both databases. Writing the outbox stays
//! in `lifecycle.rs`.

use chrono::{DateTime, Utc};

use super::db::fetch;
use super::{Error, Store};

/// One outbox row as the dashboard shows it. `body` is the exact signed JSON (an auth event or a
/// `credentials_expiry` warning): ids, end-user fields and error descriptions, never tokens.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxEntry {
    pub id: i64,
    pub url: String,
    pub body: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed, e.g. `receiver answered HTTP 500`.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub abandoned_at: Option<DateTime<Utc>>,
}

impl Store {
    /// The `limit` most recently queued webhooks (delivered, pending or abandoned), newest first.
    pub async fn recent_webhooks(&self, limit: u32) -> Result<Vec<OutboxEntry>, Error> {
        fetch!(
            &self.db,
            fetch_all::<_>(
                "SELECT id, url, body, attempts, next_attempt_at, last_error, created_at, \
                 delivered_at, abandoned_at FROM webhook_outbox ORDER BY id DESC LIMIT $1",
                i64::from(limit),
            )
        )
    }
}
