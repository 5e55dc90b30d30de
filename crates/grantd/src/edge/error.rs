//! `ApiError`: every failure the JSON API answers with, rendered in Nango's envelope
//! `{"error":{"code","message","errors"?,"payload"?}}`. Domain errors map here in one exhaustive
//! `match`, so a new variant forces a decision. 5xx bodies say nothing internal; the detail is
//! logged with the request.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::connections::Error as CoreError;
use crate::connections::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Option<String>,
    /// Validation issues: `{code, message, path[]}`.
    pub errors: Option<Vec<grantd_api::ValidationIssue>>,
    pub payload: Option<Value>,
    /// Seconds for a `Retry-After` header (503s the caller should simply retry).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: Some(message.into()),
            errors: None,
            payload: None,
            retry_after: None,
        }
    }

    /// Only a code, as Nango sends for some errors (e.g. `unknown_connection` on DELETE).
    pub fn code_only(status: StatusCode, code: &'static str) -> Self {
        Self {
            status,
            code,
            message: None,
            errors: None,
            payload: None,
            retry_after: None,
        }
    }

    /// 400 `invalid_body` (or another validation code) with one issue at `path`.
    pub fn validation(code: &'static str, path: &[&str], message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: Some(message.clone()),
            errors: Some(vec![grantd_api::ValidationIssue {
                code: "custom".into(),
                message,
                path: path.iter().map(|p| (*p).to_owned()).collect(),
            }]),
            payload: None,
            retry_after: None,
        }
    }

    pub fn auth(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code,
            message: Some(message.into()),
            errors: None,
            payload: Some(json!({})),
            retry_after: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "An internal error occurred; see grantd's logs.",
        )
    }

    /// 503 `database_unavailable`: the database cannot be reached (restarting, failing over,
    /// out of connections). Nothing was changed; the request can be retried as it is.
    pub fn database_unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "grantd's database is unavailable; retry shortly.",
        );
        e.retry_after = Some(1);
        e
    }

    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let wrong_credential = matches!(
            self.code,
            "unknown_account"
                | "invalid_secret_key_format"
                | "unknown_connect_session_token"
                | "invalid_connect_session_token_format"
        );
        let body = grantd_api::ErrorResponse {
            error: grantd_api::ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
                errors: self.errors,
                payload: self.payload,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if wrong_credential {
            // Counted by the throttle (`edge::gate`).
            r.extensions_mut().insert(super::throttle::WrongCredential);
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                ApiError::validation("invalid_body", &[what], format!("{what} already exists"))
            }
            StoreError::Refused(why) => ApiError::validation("invalid_body", &[], why),
            StoreError::MissingConnection(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_connection",
                format!("Connection {id} does not exist"),
            ),
            StoreError::Database(_) if e.is_unavailable() => {
                tracing::warn!(error = %crate::edge::error_chain(&e), "database unavailable");
                ApiError::database_unavailable()
            }
            StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Crypto(_)
            | StoreError::Corrupt(_)
            | StoreError::UnsupportedUrl => {
                tracing::error!(error = %crate::edge::error_chain(&e), "store failure");
                ApiError::internal()
            }
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Store(s) => s.into(),
            CoreError::UnknownIntegration(k) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_provider_config",
                format!(
                    "There is no integration with the key {k:?}; create it with POST /integrations."
                ),
            ),
            CoreError::UnknownProvider(p) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_provider",
                format!("Provider {p:?} is not in the catalog."),
            ),
            CoreError::UnknownConnection => ApiError::not_found("Failed to find connection"),
            CoreError::Invalid(m) => ApiError::validation("invalid_body", &[], m),
            CoreError::Refresh(c) => refresh_failed(StatusCode::BAD_REQUEST, &c),
            // Nango answers unforced reads during the backoff after a failed refresh with 424.
            CoreError::RefreshBackoff(c) => refresh_failed(StatusCode::FAILED_DEPENDENCY, &c),
        }
    }
}

/// `invalid_credentials` with the classified cause in `payload.auth_error`.
fn refresh_failed(status: StatusCode, c: &crate::microsoft::Classified) -> ApiError {
    ApiError::new(
        status,
        "invalid_credentials",
        format!(
            "The connection's credentials could not be refreshed: {}",
            c.cause
        ),
    )
    .with_payload(json!({
        "auth_error": grantd_api::RefreshFailure {
            kind: c.class.as_str().to_owned(),
            aadsts: c.aadsts,
            error: c.error.clone(),
            description: c.cause.clone(),
        }
    }))
}

impl ApiError {
    /// The proxy's answer when fresh credentials cannot be had (nango-api.md §7.2): 424
    /// `connection_refresh_backoff` during a refresh backoff, else 400 `server_error` "Failed to
    /// get connection credentials"; 503 `database_unavailable` when grantd's own database is
    /// unreachable (nothing is wrong with the connection).
    pub fn proxy_credentials(e: CoreError) -> ApiError {
        match e {
            CoreError::Store(s) if s.is_unavailable() => ApiError::database_unavailable(),
            CoreError::RefreshBackoff(c) => ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                "connection_refresh_backoff",
                format!(
                    "Failed to get connection credentials: refreshing is backing off after a failed attempt. {}",
                    c.cause
                ),
            ),
            other => ApiError::new(
                StatusCode::BAD_REQUEST,
                "server_error",
                format!("Failed to get connection credentials: '{other}'"),
            ),
        }
    }
}

impl From<crate::connections::picker::PickerError> for ApiError {
    fn from(e: crate::connections::picker::PickerError) -> Self {
        use crate::connections::picker::PickerError as P;
        match e {
            P::UnknownSession => ApiError::auth(
                "unknown_picker_session_token",
                "The picker session token is unknown or expired.",
            ),
            P::UnknownConnection => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_connection",
                "There is no such connection for this integration.",
            ),
            P::NotSupported(m) => ApiError::new(StatusCode::BAD_REQUEST, "picker_not_supported", m),
            P::Invalid(m) => ApiError::validation("invalid_body", &[], m),
            P::ForeignResource => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_resource",
                "The resource is not a host of this connection's drives; no token is issued for it.",
            ),
            P::SessionUsed => ApiError::new(
                StatusCode::CONFLICT,
                "picker_session_used",
                "This picker session was already used for a pick (a session accepts one pick); \
                 create a new picker session to pick again.",
            ),
            P::NotReady(p) => ApiError::new(StatusCode::CONFLICT, p.code, p.message)
                .with_payload(json!({"reconnect": p.reconnect})),
            P::Token(c) => refresh_failed(StatusCode::BAD_REQUEST, &c),
            P::Core(c) => c.into(),
        }
    }
}
