//! Use cases over integrations, connect sessions and connections: everything the API and the web
//! pages do, minus HTTP. `Core` holds the store, catalog, config, outbound HTTP client and clock.
//!
//! - `sessions`: connect sessions (create, reconnect, look up by token).
//! - `flow`: the OAuth connect flow (start → redirect; callback → connection).
//! - `refresh`: fresh credentials on read, single-flight refresh, the SharePoint token.
//! - `app_only`: admin-consent connections with client-credentials tokens (`OAUTH2_CC`).

pub mod app_only;
pub mod cached;
pub mod credential_expiry;
mod events;
pub mod flow;
pub mod refresh;
pub mod sessions;

use std::sync::Arc;

use crate::catalog::{Catalog, Provider};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::microsoft::Classified;
use crate::model::{Integration, ProviderConfigKey};
use crate::store::{self, Store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("integration {0:?} does not exist")]
    UnknownIntegration(String),
    #[error("provider {0:?} is not in the catalog")]
    UnknownProvider(String),
    #[error("connection does not exist")]
    UnknownConnection,
    #[error("{0}")]
    Invalid(String),
    /// Refreshing the credentials failed (classified).
    #[error("refreshing the connection's credentials failed: {}", .0.cause)]
    Refresh(Classified),
    /// The token is expired and refreshing is backing off after a failed attempt (Nango's 424).
    #[error("refreshing the connection's credentials is backing off: {}", .0.cause)]
    RefreshBackoff(Classified),
}

/// Shared use-case state. Cheap to clone.
#[derive(Clone)]
pub struct Core(Arc<CoreInner>);

pub struct CoreInner {
    pub store: Store,
    pub catalog: Catalog,
    pub config: Config,
    /// Outbound client for token endpoints and Graph discovery calls.
    pub http: reqwest::Client,
    pub clock: SharedClock,
    pub flights: refresh::Flights,
}

impl std::ops::Deref for Core {
    type Target = CoreInner;
    fn deref(&self) -> &CoreInner {
        &self.0
    }
}

impl Core {
    pub fn new(
        store: Store,
        catalog: Catalog,
        config: Config,
        http: reqwest::Client,
        clock: SharedClock,
    ) -> Self {
        Self(Arc::new(CoreInner {
            store,
            catalog,
            config,
            http,
            clock,
            flights: Default::default(),
        }))
    }

    /// The integration and its provider, or the matching error.
    pub async fn integration(
        &self,
        key: &ProviderConfigKey,
    ) -> Result<(Integration, Provider), Error> {
        let integration = self
            .store
            .get_integration(key)
            .await?
            .ok_or_else(|| Error::UnknownIntegration(key.to_string()))?;
        let provider = self
            .catalog
            .get(&integration.provider)
            .cloned()
            .ok_or_else(|| Error::UnknownProvider(integration.provider.clone()))?;
        Ok((integration, provider))
    }

    /// Scopes to request: the integration's, plus the provider's defaults (e.g. `offline_access`).
    pub fn scopes_for(
        &self,
        integration: &Integration,
        provider: &Provider,
        override_scopes: Option<&str>,
    ) -> Vec<String> {
        let mut scopes: Vec<String> = match override_scopes {
            Some(s) => s
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => integration.scopes.clone(),
        };
        for d in &provider.default_scopes {
            if !scopes.iter().any(|s| s.eq_ignore_ascii_case(d)) {
                scopes.push(d.clone());
            }
        }
        scopes
    }
}
