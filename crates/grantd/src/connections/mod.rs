//! The use cases: everything the API, the web pages, the proxy and the jobs do, minus HTTP and
//! timers. `Core` holds the store, catalog, config, outbound HTTP client and clock, and is the
//! one door to the store: edges call `Core` methods, never `Store` (a test checks the imports).
//!
//! The use cases, by file (each an `impl Core` block; a new one goes in the file of its noun):
//! - `credentials`: `credentials(key, id, opts)` — fresh credentials for the API and the proxy.
//! - `integrations`: list/get/create/`update_integration` (clears "misconfigured" on new
//!   credentials, restarts expiry warnings)/delete, for the API and the dashboard alike.
//! - `records`: connection reads and plain writes (list, get, delete, patch, metadata, import),
//!   recent webhooks and their delivery, store health, the `last_fetched_at` writer.
//! - `sessions`: connect sessions (create, reconnect, look up by token).
//! - `dashboard_sessions`: dashboard sign-in sessions (start, check, end), held server-side.
//! - `picker`: the hosted File Picker — picker sessions, SharePoint tokens per host for the
//!   picker's `authenticate` commands (only the connection's own hosts), picks stored in Nango's
//!   selection shape with a `picker` webhook.
//! - `flow`: the OAuth connect flow (start → redirect; callback → connection).
//! - `refresh`: fresh credentials on read, single-flight refresh, the SharePoint token.
//! - `due_refresh`: `run_due_refreshes(now)`, the proactive refresh pass (`jobs::refresh`).
//! - `app_only`: admin-consent connections with client-credentials tokens (`OAUTH2_CC`).
//! - `credential_expiry`: client secret and certificate expiry warnings; `app_credentials_updated`.
//! - `cached`: the hot-path integration lookup and `fresh_connection_hot`.
//! - `sync`: the change feed — delta runs of a connection's drive into `OneDriveFile` records
//!   (leased per drive, coalesced triggers, 410 resync with reconciliation), `GET /records`
//!   pages, sync status / trigger / pause / start.
//! - `sync_push`: Graph subscriptions per watched drive (create, renew, recreate), verified
//!   change and lifecycle notifications, and `run_due_syncs` (polling / daily reconciliation).
//! - `throttle`: one throttle budget per tenant across instances — `throttle_admit` before every
//!   call to Microsoft, `throttle_observe` after (429/503 `Retry-After` windows shared through the
//!   `tenant_throttle` table and `NOTIFY`, `RateLimit-*` pacing), `follow_throttle` (wiring).

pub mod app_only;
pub mod cached;
pub mod credential_expiry;
pub mod credentials;
pub mod dashboard_sessions;
pub mod due_refresh;
mod events;
pub mod flow;
pub mod integrations;
pub mod picker;
pub mod records;
pub mod refresh;
pub mod sessions;
pub mod sync;
pub mod sync_push;
pub mod throttle;

/// Types of the store that are part of the use cases' interface (inputs and outputs).
pub use crate::store::{ConnectionPatch, Error as StoreError, OutboxEntry};
pub use credentials::{CredentialsOpts, Fresh};

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
    /// Reached only by the use cases (this module and its files).
    pub(in crate::connections) store: Store,
    pub catalog: Catalog,
    pub config: Config,
    /// Outbound client for token endpoints and Graph discovery calls.
    pub http: reqwest::Client,
    pub clock: SharedClock,
    pub flights: refresh::Flights,
    /// Picker tokens per (connection, host), OneDrive hosts, and their single flights.
    pub picker: picker::PickerState,
    /// Per-tenant throttling (`throttle`).
    pub throttle: throttle::TenantThrottle,
    /// The runtime the core was made on, which runs background work a request starts (a sync
    /// run, webhook deliveries): with `runtime::Flavor::PerCore` that is not the serving thread.
    background: tokio::runtime::Handle,
    /// What must live as long as the core (`hold`): dropped last, after the store.
    held: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send>>>,
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
            picker: Default::default(),
            throttle: Default::default(),
            background: tokio::runtime::Handle::current(),
            held: Default::default(),
        }))
    }

    /// Keeps `thing` until the core is dropped: a stopped server's serving threads, whose
    /// runtimes own the sockets of database connections they opened into the pool (a socket
    /// whose runtime is gone fails every query: "A Tokio 1.x context was found, but it is being
    /// shutdown", seen on PostgreSQL in `tests/it/per_core.rs`).
    pub fn hold(&self, thing: impl Send + 'static) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(thing));
    }

    /// Runs `work` on the background runtime (see `background`).
    pub(crate) fn spawn_background(
        &self,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.background.spawn(work)
    }

    /// The store itself, for tests and the wiring that opens it. Edges never call this: they
    /// call the use cases (the layering test in `tests/it/layers.rs` checks it).
    #[doc(hidden)]
    pub fn store(&self) -> &Store {
        &self.store
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
