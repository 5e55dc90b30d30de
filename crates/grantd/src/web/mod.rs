//! Browser-facing endpoints: the OAuth connect/callback pair used by `@nangohq/frontend`'s popup and
//! by the hosted Connect UI, the WebSocket that tells the SDK how the flow ended, and the pages
//! (server-rendered with maud, no JavaScript framework), the admin dashboard (`dashboard/`) and
//! the OpenAPI document (`openapi.rs`).

pub mod connect;
pub mod connect_i18n;
pub mod dashboard;
pub mod logos;
pub mod openapi;
pub mod pages;
pub mod ws;

use axum::Router;
use axum::routing::get;

use crate::edge::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(ws::root))
        .route("/oauth/connect/{key}", get(connect::start))
        .route("/oauth/callback", get(connect::callback))
        .route("/connect", get(connect::connect_ui))
        .route("/connect/", get(connect::connect_ui))
        .route("/openapi.json", get(openapi::serve))
        .route("/images/template-logos/{file}", get(logos::logo))
        .merge(dashboard::router())
}
