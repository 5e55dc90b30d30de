//! The dashboard's failures as pages (`PageError`, so handlers use `?`) and the CSRF check as an
//! extractor (`AdminPost`: a signed-in admin whose form carries the right CSRF token).

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::html;

use super::auth::Admin;
use super::layout::page;
use crate::edge::AppState;

/// Why a dashboard request did not get its page.
pub enum PageError {
    /// Failed on our side: logged when it happened; the page says nothing internal.
    Internal,
    /// No such thing: the message and where to go back to (href, label).
    NotFound(&'static str, &'static str, &'static str),
    /// An answer already made (the sign-in redirect, the CSRF refusal).
    Page(Response),
}

impl PageError {
    /// Logs `e` with its sources and answers the generic 500 page.
    pub fn internal(e: &dyn std::error::Error) -> PageError {
        tracing::error!(error = %crate::edge::error_chain(e), "dashboard request failed");
        PageError::Internal
    }
}

impl From<crate::connections::Error> for PageError {
    fn from(e: crate::connections::Error) -> PageError {
        PageError::internal(&e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(
                    page(
                        "Error",
                        None,
                        html! { p.error role="alert" { "Something went wrong on our side; the server log has the details." } },
                    )
                    .into_string(),
                ),
            )
                .into_response(),
            PageError::NotFound(msg, href, label) => (
                StatusCode::NOT_FOUND,
                Html(
                    page(
                        "Not found",
                        None,
                        html! { p.error { (msg) } p { a href=(href) { (label) } } },
                    )
                    .into_string(),
                ),
            )
                .into_response(),
            PageError::Page(r) => r,
        }
    }
}

#[derive(serde::Deserialize)]
struct CsrfOnly {
    csrf: String,
}

/// A POST from the signed-in admin with a valid CSRF token (its form's only field).
pub struct AdminPost(pub Admin);

impl FromRequest<AppState> for AdminPost {
    type Rejection = PageError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let admin = Admin::from_request_parts(&mut parts, st)
            .await
            .map_err(PageError::Page)?;
        let Form(f) = Form::<CsrfOnly>::from_request(Request::from_parts(parts, body), st)
            .await
            .map_err(|e| PageError::Page(e.into_response()))?;
        admin.check_csrf(&f.csrf).map_err(|r| PageError::Page(*r))?;
        Ok(AdminPost(admin))
    }
}
