//! Nango's error envelope: `{"error":{"code","message"?,"errors"?,"payload"?}}`, and the codes
//! grantd answers with.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every non-2xx JSON answer of the API (the proxy's own failures aside, see
/// [`crate::proxy::ProxyFailure`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable `snake_case` code; see [`codes`].
    pub code: String,
    /// Absent on a few code-only errors (e.g. `unknown_connection` on DELETE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Validation issues (`invalid_body`, `invalid_query_params`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ValidationIssue>>,
    /// Extra context: `{}` on auth failures; `{auth_error, connection}` on `invalid_credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// One validation issue: which field (`path`) and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidationIssue {
    /// `custom` for grantd's checks.
    pub code: String,
    pub message: String,
    /// The field, as path segments (`["credentials", "scopes"]`).
    pub path: Vec<String>,
}

/// The `payload.auth_error` of `invalid_credentials`: why a refresh failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshFailure {
    /// `reconnect` (the user must connect again), `misconfigured` (an operator must act) or
    /// `transient` (retried later).
    #[serde(rename = "type")]
    pub kind: String,
    /// Microsoft's AADSTS code, when there was one.
    #[serde(default)]
    pub aadsts: Option<u32>,
    /// The OAuth `error` value, when there was one.
    #[serde(default)]
    pub error: Option<String>,
    pub description: String,
}

/// The error codes grantd answers with (Nango's, plus a few of grantd's own).
pub mod codes {
    /// The JSON body failed validation (400).
    pub const INVALID_BODY: &str = "invalid_body";
    /// The body is not JSON (400).
    pub const INVALID_JSON: &str = "invalid_json";
    pub const INVALID_QUERY_PARAMS: &str = "invalid_query_params";
    pub const INVALID_URI_PARAMS: &str = "invalid_uri_params";
    pub const INVALID_HEADERS: &str = "invalid_headers";
    /// A `Content-Type` other than `application/json` on a JSON route (415).
    pub const INVALID_CONTENT_TYPE: &str = "invalid_content_type";
    /// No `Authorization` header (401).
    pub const MISSING_AUTH_HEADER: &str = "missing_auth_header";
    pub const MALFORMED_AUTH_HEADER: &str = "malformed_auth_header";
    pub const INVALID_SECRET_KEY_FORMAT: &str = "invalid_secret_key_format";
    /// A well-formed key that is not this server's (401).
    pub const UNKNOWN_ACCOUNT: &str = "unknown_account";
    pub const INVALID_CONNECT_SESSION_TOKEN_FORMAT: &str = "invalid_connect_session_token_format";
    pub const UNKNOWN_CONNECT_SESSION_TOKEN: &str = "unknown_connect_session_token";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    /// The integration (provider config key) does not exist (400; 404 on the proxy).
    pub const UNKNOWN_PROVIDER_CONFIG: &str = "unknown_provider_config";
    pub const UNKNOWN_PROVIDER: &str = "unknown_provider";
    pub const UNKNOWN_CONNECTION: &str = "unknown_connection";
    pub const MISSING_PROVIDER_CONFIG_KEY: &str = "missing_provider_config_key";
    pub const MISSING_CONNECTION: &str = "missing_connection";
    pub const MISSING_ACCESS_TOKEN: &str = "missing_access_token";
    pub const MISSING_EXPIRES_AT: &str = "missing_expires_at";
    /// Refreshing the connection's token failed (400, or 424 during the backoff after a failure).
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    /// The proxy could not get fresh credentials during a refresh backoff (424).
    pub const CONNECTION_REFRESH_BACKOFF: &str = "connection_refresh_backoff";
    /// A 5xx; also the proxy's 400 when the connection is missing (as Nango).
    pub const SERVER_ERROR: &str = "server_error";
    /// Body over the limit (413).
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const HEADERS_TOO_LARGE: &str = "headers_too_large";
    pub const URI_TOO_LONG: &str = "uri_too_long";
    /// Proxy: `Base-Url-Override` is not allowed by the server's policy.
    pub const BASE_URL_OVERRIDE_NOT_ALLOWED: &str = "base_url_override_not_allowed";
    /// Proxy: an upstream redirect the proxy will not follow.
    pub const REDIRECT_NOT_ALLOWED: &str = "redirect_not_allowed";
    /// Proxy: `Grantd-Resource: sharepoint` on a connection without a SharePoint token.
    pub const MISSING_SHAREPOINT_TOKEN: &str = "missing_sharepoint_token";
    pub const INVALID_AUTHORIZATION_PARAMS: &str = "invalid_authorization_params";
    /// Too many WebSocket clients.
    pub const TOO_MANY_SOCKETS: &str = "too_many_sockets";
}
