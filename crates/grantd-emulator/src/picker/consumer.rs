//! The consumer File Picker of personal Microsoft accounts and the consumer OneDrive API it
//! browses, on their production hostnames below `/_sharepoint/` (the URL template clients use
//! for every Microsoft file host): `https://onedrive.live.com/picker` (the picker page, form POST
//! with `access_token`, Microsoft's consumer samples `javascript-basic-consumer` and
//! `sdk-domevents`) and `https://api.onedrive.com/v1.0/…` (the drive API the consumer picker
//! calls, OneDrive/onedrive-api-docs#1788).
//!
//! Both accept only a personal account's token for the consumer OneDrive API (`OneDrive.Read`,
//! `OneDrive.ReadOnly` or `OneDrive.ReadWrite` from the `consumers` authority). Anything else —
//! a Graph token, a SharePoint token, a work account's token — gets the 401 the consumer API
//! answers a token without `onedrive.read*` (`{"error":{"code":"unauthenticated","message":"Must
//! be authenticated to use '/drive' syntax."}}`, #1788); the picker page shows it in its error
//! page rather than rendering an empty picker.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use serde_json::json;

use crate::directory::MSA_TENANT_ID;
use crate::graph::routes::{ApiCtx, ApiScope, dispatch, origin, parse_query};
use crate::state::AppState;
use crate::tokens::{Audience, BearerError};

/// The consumer picker's host (`https://onedrive.live.com/picker`).
pub const PICKER_HOST: &str = "onedrive.live.com";
/// The consumer OneDrive API's host (`https://api.onedrive.com/v1.0`).
pub const API_HOST: &str = "api.onedrive.com";

const UNAUTHENTICATED: &str = "Must be authenticated to use '/drive' syntax.";

/// Whether `host` is one of the consumer hosts this module serves.
pub fn serves(host: &str) -> bool {
    host == PICKER_HOST || host == API_HOST
}

/// The consumer API's 401 for a token it will not take.
fn unauthenticated() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {"code": "unauthenticated", "message": UNAUTHENTICATED}})),
    )
        .into_response()
}

/// The picker page's refusal of a form token that is not a consumer OneDrive token.
pub fn refused(e: &BearerError) -> Response {
    let why = match e {
        BearerError::Missing => "no access_token in the form".to_owned(),
        BearerError::Invalid => "the access_token is not a personal account's token".to_owned(),
        BearerError::Expired => "the access_token has expired".to_owned(),
        BearerError::WrongAudience(aud) => format!(
            "the access_token is for {aud}, not for OneDrive (personal): ask the consumers \
             authority for OneDrive.ReadWrite or OneDrive.Read"
        ),
    };
    super::error_page(
        StatusCode::UNAUTHORIZED,
        &format!("unauthenticated: {UNAUTHENTICATED} ({why})"),
    )
}

/// `/_sharepoint/{onedrive.live.com|api.onedrive.com}/{rest}`.
pub async fn entry(state: &AppState, host: &str, rest: &str, parts: Parts, body: Body) -> Response {
    if host == PICKER_HOST {
        if rest.eq_ignore_ascii_case("picker") {
            return super::consumer_page(state, &parts, body).await;
        }
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    }
    let Some(raw) = rest.strip_prefix("v1.0/") else {
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    };
    let claims =
        match crate::tokens::validate_bearer(state, &parts.headers, &Audience::OneDriveConsumer) {
            Ok(c) if c.tid == MSA_TENANT_ID && !c.is_app_only() => c,
            _ => return unauthenticated(),
        };
    let origin = origin(state, &parts.uri, &parts.headers);
    let ctx = ApiCtx {
        scope: ApiScope::Graph,
        api_base: format!("{origin}/_sharepoint/{API_HOST}/v1.0"),
        origin,
        raw_path: raw.to_owned(),
        query: parse_query(&parts.uri),
        method: parts.method,
        headers: parts.headers,
    };
    let result = async {
        let (route, _) = crate::graph::path::parse(raw)?;
        dispatch(state, &ctx, &claims, route, body).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
