//! `AppState`: what every handler is given — the use cases (`Core`), the WebSocket hub, the
//! proxy's outbound client with its SSRF guard, and the authentication throttle. Built by `server` (wiring), which opens the store.
//!
//! One `Arc`: axum clones the state for every request several times (each `from_fn_with_state`
//! middleware, the handler service, every `State` extractor), so a clone is one reference-count
//! increment rather than one per field (the proxy's client alone holds several).

use std::sync::Arc;

use super::WsHub;
use crate::connections::Core;

#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

pub struct AppStateInner {
    pub core: Core,
    pub ws: Arc<WsHub>,
    /// Outbound client for proxied calls (no redirects followed).
    pub proxy_http: crate::outbound::ProxyClient,
    /// Which hosts proxied calls and redirects may reach (SSRF guard).
    pub guard: crate::outbound::Guard,
    /// Failed sign-ins and wrong API keys, by address and account (`throttle`).
    pub throttle: Arc<super::throttle::Throttle>,
}

impl AppState {
    pub fn new(inner: AppStateInner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}
