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
pub mod picker;
pub mod ws;

use axum::Router;
use axum::routing::{get, post};

use crate::edge::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(ws::root))
        .route("/oauth/connect/{key}", get(connect::start))
        .route("/oauth/callback", get(connect::callback))
        .route("/connect", get(connect::connect_ui))
        .route("/connect/", get(connect::connect_ui))
        .route("/picker", get(picker::page_handler))
        .route("/picker/token", post(picker::token))
        .route("/picker/picked", post(picker::picked))
        .route("/picker/sdk.js", get(picker::sdk))
        .route("/openapi.json", get(openapi::serve))
        .route("/images/template-logos/{file}", get(logos::logo))
        .merge(dashboard::router())
}
