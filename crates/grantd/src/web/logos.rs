//! Integration and provider logos at `/images/template-logos/{provider}.svg`, the URLs that
//! `logo` (providers) and `logo_url` (integrations) name. The SVGs are grantd's own simple
//! drawings, bundled in the binary: OneDrive, SharePoint and a Microsoft account for the
//! catalog's providers, a neutral one for providers loaded from `GRANTD_PROVIDERS_FILE`.
//! Public (a browser fetches them from the Connect UI), cacheable, and served with a CSP that
//! forbids scripts.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::edge::{ApiError, AppState};

const ONEDRIVE: &str = include_str!("logos/onedrive.svg");
const SHAREPOINT: &str = include_str!("logos/sharepoint.svg");
const MICROSOFT: &str = include_str!("logos/microsoft.svg");
const GENERIC: &str = include_str!("logos/generic.svg");

/// The drawing for a provider of the catalog.
pub fn svg_for(provider: &str) -> &'static str {
    match provider {
        "one-drive" | "one-drive-personal" | "one-drive-app" => ONEDRIVE,
        "sharepoint-online" => SHAREPOINT,
        "microsoft" | "microsoft-tenant-specific" => MICROSOFT,
        _ => GENERIC,
    }
}

/// `GET /images/template-logos/{provider}.svg`; 404 for a provider the catalog does not know.
pub async fn logo(State(st): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(provider) = file.strip_suffix(".svg") else {
        return ApiError::not_found("Logo not found").into_response();
    };
    if st.core.catalog.get(provider).is_none() {
        return ApiError::not_found("Logo not found").into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        svg_for(provider),
    )
        .into_response()
}
