//! The Nango-compatible JSON API: integrations, providers, connect sessions and connections.
//! Handlers are thin: extract and validate → call a `connections::Core` use case → render.
//! Invariant: nothing here touches SQL or names a Microsoft host.

pub mod app_only;
pub mod connections;
pub mod fetch_body;
pub mod integrations;
pub mod json_out;
pub mod picker;
pub mod render;
pub mod sessions;
pub mod sync;

use axum::Router;
use axum::routing::{get, post};

use crate::edge::AppState;
use crate::edge::{
    ApiError, JsonBody, Query, SecretKey, bearer, no_query, parse_bool, wrong_secret_key,
};

/// The routes a connect-session token may call from a browser (as with Nango), behind CORS.
fn session_token_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/integrations/{key}",
            get(integrations::show)
                .patch(integrations::update)
                .delete(integrations::delete),
        )
        .route("/providers", get(integrations::providers))
        .route(
            "/connect/session",
            get(sessions::show).delete(sessions::delete),
        )
        .layer(axum::middleware::from_fn(crate::edge::cors::cors))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/integrations",
            get(integrations::list).post(integrations::create),
        )
        .merge(session_token_routes())
        .route("/providers/{provider}", get(integrations::provider))
        .route("/connect/sessions", post(sessions::create))
        .route("/connect/sessions/reconnect", post(sessions::reconnect))
        .route("/picker/sessions", post(picker::create))
        .route(
            "/connections",
            get(connections::list).post(connections::import),
        )
        .route(
            "/connection",
            get(connections::list).post(connections::import_flat),
        )
        .route(
            "/connections/metadata",
            post(connections::set_metadata).patch(connections::update_metadata),
        )
        .route(
            "/connection/metadata",
            post(connections::set_metadata).patch(connections::update_metadata),
        )
        .route(
            "/connections/{id}",
            get(connections::show)
                .delete(connections::delete)
                .patch(connections::patch),
        )
        .route(
            "/connection/{id}",
            get(connections::show).delete(connections::delete),
        )
        .route("/records", get(sync::records))
        .route("/records/", get(sync::records))
        .route("/sync/trigger", post(sync::trigger))
        .route("/sync/status", get(sync::status))
        .route("/sync/pause", post(sync::pause))
        .route("/sync/start", post(sync::start))
        .route("/sync/notifications", post(sync::notifications))
        .route("/sync/lifecycle", post(sync::lifecycle))
        .route(
            "/connection/{id}/metadata",
            post(connections::set_metadata_deprecated)
                .patch(connections::update_metadata_deprecated),
        )
}
