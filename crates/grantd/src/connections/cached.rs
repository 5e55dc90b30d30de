//! Hot-path lookups through the store's cache (`store::cache`): the integration with its
//! provider, for callers that need only the provider and client settings (the proxy,
//! `GET /connections/{id}`). Connections come from `Store::cached_connection` and then
//! `Core::fresh_connection`, which does no database work while the token is fresh.

use super::{Core, Error};
use crate::catalog::Provider;
use crate::model::{Integration, ProviderConfigKey};

impl Core {
    /// Like `Core::integration`, from the cache when present.
    pub async fn integration_cached(
        &self,
        key: &ProviderConfigKey,
    ) -> Result<(Integration, Provider), Error> {
        let integration = self
            .store
            .cached_integration(key)
            .await?
            .ok_or_else(|| Error::UnknownIntegration(key.to_string()))?;
        let provider = self
            .catalog
            .get(&integration.provider)
            .cloned()
            .ok_or_else(|| Error::UnknownProvider(integration.provider.clone()))?;
        Ok((integration, provider))
    }
}
