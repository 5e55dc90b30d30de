//! The admin dashboard under `/dashboard`, server-rendered with maud and usable without
//! JavaScript: sign-in (`auth`), integrations with the Entra setup guide (`integrations`),
//! connections with their status and actions (`connections`), the overview's auth events and
//! webhook deliveries (`events`), credential expiry badges (`expiry`). Every POST carries a CSRF
//! token.

pub mod auth;
pub mod connections;
pub mod error;
pub mod events;
pub mod expiry;
pub mod integrations;
pub mod layout;

use axum::Router;
use axum::routing::{get, post};

use crate::edge::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(connections::overview))
        .route("/dashboard/login", get(auth::login_page).post(auth::login))
        .route("/dashboard/logout", post(auth::logout))
        .route(
            "/dashboard/integrations",
            get(integrations::list).post(integrations::create),
        )
        .route("/dashboard/integrations/new", get(integrations::new_form))
        .route(
            "/dashboard/integrations/{key}",
            get(integrations::show).post(integrations::update),
        )
        .route(
            "/dashboard/integrations/{key}/delete",
            post(integrations::delete),
        )
        .route("/dashboard/connections", get(connections::list))
        .route("/dashboard/connections/{key}/{id}", get(connections::show))
        .route(
            "/dashboard/connections/{key}/{id}/refresh",
            post(connections::refresh),
        )
        .route(
            "/dashboard/connections/{key}/{id}/reconnect-link",
            post(connections::reconnect_link),
        )
        .route(
            "/dashboard/connections/{key}/{id}/picker",
            post(connections::open_picker),
        )
        .route(
            "/dashboard/connections/{key}/{id}/test-call",
            post(connections::test_call),
        )
        .route(
            "/dashboard/connections/{key}/{id}/resync",
            post(connections::resync),
        )
        .route(
            "/dashboard/connections/{key}/{id}/delete",
            post(connections::delete),
        )
}
