//! `AppState`: what every handler is given — the use cases (`Core`), the WebSocket hub, and the
//! proxy's outbound client with its SSRF guard. Built by `server` (wiring), which opens the store.

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
}
