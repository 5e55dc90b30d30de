//! Read-only view of the webhook outbox for the dashboard: the most recent rows, newest first,
//! with their delivery state. `OutboxViewBackend` is the backend seam; its SQL lives in
//! `sqlite/outbox_view.rs` and `postgres/outbox_view.rs`. Writing the outbox stays in
//! `lifecycle.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Error, Store};

/// One outbox row as the dashboard shows it. `body` is the exact signed JSON (an auth event or a
/// `credentials_expiry` warning): ids, end-user fields and error descriptions, never tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[async_trait]
pub(super) trait OutboxViewBackend: Send + Sync {
    /// The `limit` most recent outbox rows, newest first.
    async fn recent_webhooks(&self, limit: i64) -> Result<Vec<OutboxEntry>, Error>;
}

impl Store {
    /// The `limit` most recently queued webhooks (delivered, pending or abandoned), newest first.
    pub async fn recent_webhooks(&self, limit: u32) -> Result<Vec<OutboxEntry>, Error> {
        self.backend
            .outbox_view()
            .recent_webhooks(i64::from(limit))
            .await
    }
}
