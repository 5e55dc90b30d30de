//! `Core::credentials`: the connection with credentials valid for at least the margin, with its
//! integration and provider — the one use case behind both `GET /connections/{id}` and the proxy.
//! Hot path: integration and connection come from the store's cache (`store::cache`), shared not
//! copied, and no database work happens while the token is fresh.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Core, Error};
use crate::catalog::Provider;
use crate::model::{Connection, ConnectionId, Integration, ProviderConfigKey};

/// How to read the credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct CredentialsOpts {
    /// Refresh even if the token is still fresh (`force_refresh=true`).
    pub force_refresh: bool,
    /// Record `last_fetched_at` (batched in memory, `store::touch`): the app read the
    /// credentials. The proxy uses them itself and does not count as a fetch.
    pub note_fetched: bool,
}

/// What `credentials` found: all shared with the cache.
pub struct Fresh<'a> {
    pub integration: Arc<Integration>,
    pub provider: &'a Provider,
    pub connection: Arc<Connection>,
    /// The `last_fetched_at` noted, when `note_fetched` was asked.
    pub fetched_at: Option<DateTime<Utc>>,
}

impl Core {
    /// The integration `key` and its connection `id`, refreshed when due (or forced).
    /// `Error::UnknownIntegration` / `Error::UnknownConnection` when either is missing;
    /// refresh failures as `Error::Refresh` / `Error::RefreshBackoff`.
    pub async fn credentials(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
        opts: CredentialsOpts,
    ) -> Result<Fresh<'_>, Error> {
        let (integration, provider) = self.integration_cached(key).await?;
        let conn = self
            .store
            .cached_connection_shared(key, id)
            .await?
            .ok_or(Error::UnknownConnection)?;
        let connection = self.fresh_connection_hot(conn, opts.force_refresh).await?;
        let fetched_at = opts.note_fetched.then(|| self.clock.now());
        if let Some(at) = fetched_at {
            self.store.note_fetched(connection.id, at);
        }
        Ok(Fresh {
            integration,
            provider,
            connection,
            fetched_at,
        })
    }
}
