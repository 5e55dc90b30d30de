//! `AppState`: what every handler is given — the use cases (`Core`), the WebSocket hub, the
//! proxy's outbound client with its SSRF guard, and the authentication throttle. Built by `server` (wiring), which opens the store.

use std::sync::Arc;

use super::WsHub;
use crate::connections::Core;

#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    pub ws: Arc<WsHub>,
    /// Outbound client for proxied calls (no redirects followed).
    pub proxy_http: crate::outbound::ProxyClient,
    /// Which hosts proxied calls and redirects may reach (SSRF guard).
    pub guard: crate::outbound::Guard,
    /// Failed sign-ins and wrong API keys, by address and account (`throttle`).
    pub throttle: Arc<super::throttle::Throttle>,
}
