//! CORS for the routes a browser calls with a connect-session token (the Connect UI and
//! `@nangohq/frontend` read providers, an integration and the session, as with Nango): preflights
//! are answered here and every answer allows any origin. That is safe because these routes
//! authenticate with a bearer token, never with cookies, so a page can only use a token it was
//! given.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Middleware: answers `OPTIONS` preflights and adds `Access-Control-Allow-Origin: *`.
pub async fn cors(req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    "GET, POST, PATCH, DELETE, OPTIONS",
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "authorization, content-type, accept, x-nango-source",
                ),
                (header::ACCESS_CONTROL_MAX_AGE, "600"),
            ],
        )
            .into_response();
    }
    let mut r = next.run(req).await;
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}
