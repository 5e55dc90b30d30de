//! Reads and plain writes of connections for the edges (the API's list, delete, patch, metadata
//! and import; the dashboard's views), plus the store's health and the batched `last_fetched_at`
//! writer that `server` runs. No rule beyond the store's own applies to these; they are here so
//! that the edges reach the store only through `Core`.

use serde_json::Value;

use super::{ConnectionPatch, Core, Error, OutboxEntry};
use crate::model::{Connection, ConnectionFilter, ConnectionId, NewConnection, ProviderConfigKey};

impl Core {
    pub async fn list_connections(
        &self,
        filter: &ConnectionFilter,
    ) -> Result<Vec<Connection>, Error> {
        Ok(self.store.list_connections(filter).await?)
    }

    pub async fn get_connection(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
    ) -> Result<Option<Connection>, Error> {
        Ok(self.store.get_connection(key, id).await?)
    }

    /// The connection as the cache holds it (for error payloads; no refresh).
    pub async fn cached_connection(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
    ) -> Result<Option<Connection>, Error> {
        Ok(self.store.cached_connection(key, id).await?)
    }

    /// Soft-deletes the connection; `false` when it did not exist.
    pub async fn delete_connection(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
    ) -> Result<bool, Error> {
        Ok(self.store.delete_connection(key, id).await?)
    }

    /// End user, tags, webhook override; `false` when the connection does not exist.
    pub async fn patch_connection(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
        patch: ConnectionPatch,
    ) -> Result<bool, Error> {
        Ok(self.store.patch_connection(key, id, patch).await?)
    }

    /// Sets (or merges into) the metadata of every listed connection, all or none.
    pub async fn set_metadata(
        &self,
        key: &ProviderConfigKey,
        ids: &[ConnectionId],
        metadata: &Value,
        merge: bool,
    ) -> Result<(), Error> {
        self.store.set_metadata(key, ids, metadata, merge).await?;
        for id in ids {
            // The metadata is stored; a selection the feed cannot read is reported on the
            // next sync call rather than refusing the metadata.
            if let Err(e) = self.sync_metadata_changed(key, id).await {
                tracing::warn!(
                    connection.id = id.as_str(),
                    "sync watch set not updated: {e}"
                );
            }
        }
        Ok(())
    }

    /// Stores a connection whose credentials the caller brought (Nango's import); `true` when it
    /// was created rather than replaced.
    pub async fn import_connection(&self, new: NewConnection) -> Result<(Connection, bool), Error> {
        Ok(self.store.upsert_connection(new).await?)
    }

    /// The latest webhooks in the outbox, newest first, for the dashboard.
    pub async fn recent_webhooks(&self, limit: u32) -> Result<Vec<OutboxEntry>, Error> {
        Ok(self.store.recent_webhooks(limit).await?)
    }

    /// Tells the other instances (PostgreSQL) the outcome of a flow whose WebSocket is not held
    /// here; `false` when there are none to tell.
    pub async fn announce_ws_outcome(&self, payload: &str) -> Result<bool, Error> {
        Ok(self.store.announce_ws_outcome(payload).await?)
    }

    /// Outcomes other instances announced for WebSockets (`{"id", "frame"}` JSON).
    pub fn ws_outcomes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.store.ws_outcomes()
    }

    /// Resolves when a webhook may have been queued since the last call (here or, on
    /// PostgreSQL, by another instance); `jobs::outbox` then delivers at once.
    pub async fn webhook_queued(&self) {
        self.store.webhook_wakeup().await
    }

    /// One pass of webhook delivery from the outbox (`jobs::outbox` runs it when woken and on a
    /// timer).
    pub async fn deliver_due_webhooks(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::webhooks::DeliveryRun, Error> {
        Ok(crate::webhooks::deliver_due(&self.store, &self.http, &self.config, now).await?)
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<(), Error> {
        Ok(self.store.ping().await?)
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.store.backend_name()
    }

    /// Starts the task that writes noted `last_fetched_at` values in batches.
    pub fn spawn_fetched_flusher(&self) -> tokio::task::JoinHandle<()> {
        self.store.spawn_fetched_flusher()
    }

    /// Writes the pending `last_fetched_at` values now (at shutdown).
    pub async fn flush_fetched(&self) -> Result<usize, Error> {
        Ok(self.store.flush_fetched().await?)
    }
}
