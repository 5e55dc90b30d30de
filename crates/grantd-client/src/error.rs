//! The client's errors: [`Error`] for everything a call can fail with, and [`ApiError`] for an
//! answer in Nango's error envelope `{"error":{"code","message","errors","payload"}}`, whose
//! `code` is also offered as the [`ErrorCode`] enum so callers branch on a variant, not a string.
//!
//! No variant carries a response body that could hold a secret: a body that does not parse is
//! reported by its status and size only.

use std::fmt;
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

/// Everything a [`GrantdClient`](crate::GrantdClient) call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// grantd answered with an error in Nango's envelope.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// A non-success answer that is not Nango's envelope (e.g. a proxied upstream error, or a
    /// load balancer's page). The body is left out: it may hold anything.
    #[error("unexpected HTTP {status} from grantd ({body_len} byte body)")]
    UnexpectedStatus {
        status: StatusCode,
        body_len: usize,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, TLS failure, timeout, interrupted body…
    #[error("request to grantd failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// A success answer whose JSON does not have the expected shape.
    #[error("grantd's answer to {what} could not be decoded: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The base URL, a path or a header value given to the client is not usable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A request body could not be serialised.
    #[error("request body could not be serialised: {0}")]
    Serialize(#[source] serde_json::Error),
}

impl Error {
    /// The Nango error, when grantd answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The error code, when grantd answered with Nango's envelope.
    pub fn code(&self) -> Option<&ErrorCode> {
        self.api().map(|e| &e.code)
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api(e) => Some(e.status),
            Error::UnexpectedStatus { status, .. } => Some(*status),
            Error::Transport(e) => e.status(),
            _ => None,
        }
    }

    /// The `Retry-After` the server advertised with this answer, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(e) => e.retry_after,
            Error::UnexpectedStatus { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An error answer in Nango's envelope.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ApiError {
    pub status: StatusCode,
    /// `error.code`.
    pub code: ErrorCode,
    /// `error.message`, when the server sent one (some errors carry only a code).
    pub message: Option<String>,
    /// `error.errors`: validation issues, each with the path of the offending field.
    pub errors: Vec<Issue>,
    /// `error.payload`, as sent (e.g. `auth_error` on `invalid_credentials`).
    pub payload: Option<Value>,
    /// `Retry-After` on the answer (429, 503).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grantd answered {} {}", self.status.as_u16(), self.code)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        for i in &self.errors {
            write!(f, "; {}: {}", i.path.join("."), i.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// One validation issue of `error.errors`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Issue {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// The field, e.g. `["end_user", "id"]` (numbers as strings).
    #[serde(default, deserialize_with = "path_segments")]
    pub path: Vec<String>,
}

fn path_segments<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<Value>::deserialize(d)?;
    Ok(v.into_iter()
        .map(|s| match s {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect())
}

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// Nango's `error.code` values grantd answers with; any other code is kept in `Other`.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this version of the client does not name.
            Other(String),
        }

        impl ErrorCode {
            /// The code as it is on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                    ErrorCode::Other(s) => s,
                }
            }

            /// Parses a wire code; unknown codes become `Other`.
            pub fn parse(s: &str) -> ErrorCode {
                match s {
                    $($text => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_owned()),
                }
            }
        }
    };
}

codes! {
    /// 400: the JSON body is invalid or has unknown fields.
    InvalidBody = "invalid_body",
    /// 400: a query parameter is invalid or unknown.
    InvalidQueryParams = "invalid_query_params",
    /// 400: a path parameter is invalid.
    InvalidUriParams = "invalid_uri_params",
    /// 400: a header is invalid (e.g. the proxy's `Connection-Id`).
    InvalidHeaders = "invalid_headers",
    /// 400: the body is not JSON.
    InvalidJson = "invalid_json",
    /// 415: a JSON route got another `Content-Type`.
    InvalidContentType = "invalid_content_type",
    /// 401: no `Authorization` header.
    MissingAuthHeader = "missing_auth_header",
    /// 401: the `Authorization` header is not `Bearer <key>`.
    MalformedAuthHeader = "malformed_auth_header",
    /// 401: the secret key is not a UUID.
    InvalidSecretKeyFormat = "invalid_secret_key_format",
    /// 401: the secret key is not grantd's.
    UnknownAccount = "unknown_account",
    /// 401: a connect session token is malformed.
    InvalidConnectSessionTokenFormat = "invalid_connect_session_token_format",
    /// 401: a connect session token is unknown or expired.
    UnknownConnectSessionToken = "unknown_connect_session_token",
    /// 403: not allowed with these credentials.
    Forbidden = "forbidden",
    /// 403: `include` without a secret key.
    InvalidPermissions = "invalid_permissions",
    /// 404: the thing asked for does not exist.
    NotFound = "not_found",
    /// 400 (404 on the proxy): there is no integration with this key.
    UnknownProviderConfig = "unknown_provider_config",
    /// 400: the provider is not in the catalog.
    UnknownProvider = "unknown_provider",
    /// 400/404: the connection does not exist.
    UnknownConnection = "unknown_connection",
    /// 400: no provider config key given.
    MissingProviderConfigKey = "missing_provider_config_key",
    /// 400/424: the connection's credentials could not be refreshed; the user must reconnect
    /// or the app registration must be fixed (see `payload.auth_error`).
    InvalidCredentials = "invalid_credentials",
    /// 424: the proxy refuses while refreshing backs off after a failure.
    ConnectionRefreshBackoff = "connection_refresh_backoff",
    /// 400: the proxy's `Base-Url-Override` is not allowed.
    BaseUrlOverrideNotAllowed = "base_url_override_not_allowed",
    /// 429: rate limited; see `retry_after`.
    TooManyRequest = "too_many_request",
    /// 503: grantd refused the connection (too many open).
    Overloaded = "overloaded",
    /// 500, or the proxy's "Failed to get connection".
    ServerError = "server_error",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: Body,
}

#[derive(Deserialize)]
struct Body {
    code: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<Issue>,
    #[serde(default)]
    payload: Option<Value>,
}

/// Reads Nango's error envelope from an error answer's body; anything else is
/// [`Error::UnexpectedStatus`].
pub(crate) fn from_body(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Error {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error: b }) => Error::Api(Box::new(ApiError {
            status,
            code: ErrorCode::parse(&b.code),
            message: b.message,
            errors: b.errors,
            payload: b.payload,
            retry_after,
        })),
        Err(_) => Error::UnexpectedStatus {
            status,
            body_len: body.len(),
            retry_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_with_issues_parses_into_a_code() {
        let body = br#"{"error":{"code":"invalid_body","message":"bad","errors":[{"code":"custom","message":"Integration does not exist","path":["allowed_integrations",0]}]}}"#;
        let e = from_body(StatusCode::BAD_REQUEST, None, body);
        let api = e.api().expect("an API error");
        assert_eq!(api.code, ErrorCode::InvalidBody);
        assert_eq!(api.errors[0].path, ["allowed_integrations", "0"]);
        assert!(e.to_string().contains("allowed_integrations.0"), "{e}");
    }

    #[test]
    fn code_only_and_unknown_codes() {
        let e = from_body(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"error":{"code":"unknown_connection"}}"#,
        );
        assert_eq!(e.code(), Some(&ErrorCode::UnknownConnection));
        assert_eq!(e.api().unwrap().message, None);
        let e = from_body(
            StatusCode::PAYMENT_REQUIRED,
            None,
            br#"{"error":{"code":"plan_limit"}}"#,
        );
        assert_eq!(e.code(), Some(&ErrorCode::Other("plan_limit".into())));
        assert_eq!(e.code().unwrap().as_str(), "plan_limit");
    }

    #[test]
    fn other_bodies_are_not_echoed() {
        let e = from_body(
            StatusCode::BAD_GATEWAY,
            Some(Duration::from_secs(3)),
            b"<html>secret-looking</html>",
        );
        assert!(matches!(e, Error::UnexpectedStatus { body_len: 27, .. }));
        assert!(!e.to_string().contains("secret"));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }
}
