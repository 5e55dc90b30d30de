//! Hot-path lookups through the store's cache (`store::cache`): the integration with its
//! provider, for callers that need only the provider and client settings (the proxy,
//! `GET /connections/{id}`). Connections come from `Store::cached_connection` and then
//! `Core::fresh_connection`, which does no database work while the token is fresh.

use std::sync::Arc;

use super::{Core, Error};
use crate::catalog::Provider;
use crate::model::{Connection, Integration, ProviderConfigKey};

impl Core {
    /// Like `Core::integration`, from the cache when present; shared, not copied (the hot paths
    /// only read them).
    pub async fn integration_cached(
        &self,
        key: &ProviderConfigKey,
    ) -> Result<(Arc<Integration>, &Provider), Error> {
        let integration = self
            .store
            .cached_integration(key)
            .await?
            .ok_or_else(|| Error::UnknownIntegration(key.to_string()))?;
        let provider = self
            .catalog
            .get(&integration.provider)
            .ok_or_else(|| Error::UnknownProvider(integration.provider.clone()))?;
        Ok((integration, provider))
    }

    /// `fresh_connection` for the hot paths (the proxy, `GET /connections/{id}`). While the
    /// token is fresh — nearly always — the connection comes straight back; only a refresh goes
    /// through `fresh_connection`, boxed. Its future is large (the refresh with its HTTP and
    /// database calls, ~10 KB) and would otherwise be part of every caller's future, which the
    /// server copies on every request.
    ///
    /// The freshness test is `needs_refresh`, the same one `fresh_connection` applies first.
    pub async fn fresh_connection_hot(
        &self,
        conn: Arc<Connection>,
        force: bool,
    ) -> Result<Arc<Connection>, Error> {
        if !force && !self.needs_refresh(&conn) {
            return Ok(conn);
        }
        Box::pin(self.fresh_connection(Connection::clone(&conn), force))
            .await
            .map(Arc::new)
    }
}
