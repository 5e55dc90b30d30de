//! Extractors and helpers every HTTP edge shares: the backend secret key (`SecretKey`, Nango's
//! 401 codes), strict JSON bodies and query strings answering Nango's 400/415 codes, and
//! `error_chain` for logs.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};

/// The caller presented the backend secret key.
pub struct SecretKey;

/// Reads the bearer value of `Authorization`, answering Nango's 401 codes.
pub fn bearer(parts: &Parts) -> Result<String, ApiError> {
    bearer_str(&parts.headers).map(str::to_owned)
}

/// `bearer` without the copy.
pub fn bearer_str(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::auth(
                "missing_auth_header",
                "Authentication failed. The request is missing the Authorization header.",
            )
        })?
        .to_str()
        .map_err(|_| {
            ApiError::auth(
                "malformed_auth_header",
                "Authentication failed. The Authorization header is malformed.",
            )
        })?;
    let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    if token.is_empty() {
        return Err(ApiError::auth(
            "malformed_auth_header",
            "Authentication failed. The Authorization header is malformed.",
        ));
    }
    Ok(token)
}

impl SecretKey {
    /// The extractor's check on its own, for the routes the server dispatches without the
    /// router (`front`): the same answers, by the same code.
    pub fn check(headers: &HeaderMap, state: &AppState) -> Result<SecretKey, ApiError> {
        let token = bearer_str(headers)?;
        if state.core.config.secret_key.ct_eq(token) {
            Ok(SecretKey)
        } else {
            Err(wrong_secret_key(token))
        }
    }
}

impl FromRequestParts<AppState> for SecretKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        SecretKey::check(&parts.headers, state)
    }
}

/// Who called a route that takes either credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    SecretKey,
    /// A live connect-session token (what the Connect UI and `@nangohq/frontend` hold).
    Session,
}

/// The caller presented the secret key or a live connect-session token (Nango's session-token
/// routes: `GET /providers`, `GET /integrations/{key}`, `GET /connect/session`).
pub struct SecretOrSession(pub Caller);

impl FromRequestParts<AppState> for SecretOrSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if state.core.config.secret_key.ct_eq(&token) {
            return Ok(SecretOrSession(Caller::SecretKey));
        }
        if !crate::connections::sessions::is_well_formed(&token) {
            return Err(wrong_secret_key(&token));
        }
        match state.core.connect_session(&token).await {
            Ok(Some(_)) => Ok(SecretOrSession(Caller::Session)),
            Ok(None) => Err(ApiError::auth(
                "unknown_connect_session_token",
                "Authentication failed. The connect session token is unknown or expired.",
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// Nango's 401 for a bearer value that is not the secret key: `invalid_secret_key_format` when it
/// is not even a UUID v4 (Nango's key format), else `unknown_account`. The configured key itself
/// is accepted whatever its format (checked before this).
pub fn wrong_secret_key(token: &str) -> ApiError {
    let is_uuid_v4 = uuid::Uuid::try_parse(token).is_ok_and(|u| u.get_version_num() == 4);
    if is_uuid_v4 {
        ApiError::auth(
            "unknown_account",
            "Authentication failed. The provided secret key is invalid.",
        )
    } else {
        ApiError::auth(
            "invalid_secret_key_format",
            "Authentication failed. The provided secret key is not a UUID v4.",
        )
    }
}

/// Refuses any query string, for the routes Nango declares without query parameters.
pub fn no_query(parts: &Parts) -> Result<(), ApiError> {
    match parts.uri.query().filter(|q| !q.is_empty()) {
        None => Ok(()),
        Some(q) => {
            let names: Vec<String> = serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let first = names.first().cloned().unwrap_or_default();
            Err(ApiError::validation(
                "invalid_query_params",
                &[first.as_str()],
                format!(
                    "This route takes no query parameters (got {})",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// A JSON body parsed strictly; failures answer Nango's 400/415 codes instead of axum's text.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(ct) = &ct {
            if !ct.to_ascii_lowercase().starts_with("application/json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "invalid_content_type",
                    format!("Content-Type must be application/json, not {ct}"),
                ));
            }
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                // Over the size limit is 413, as the status says; other read failures 400.
                let status = match e.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                ApiError::new(
                    status,
                    "invalid_body",
                    format!("Could not read the body: {e}"),
                )
            })?;
        // An empty body reads as `{}` (as Express does), so missing fields say which.
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            axum::body::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("The body is not valid JSON: {e}"),
            )
        })?;
        // Every body is an object (a struct would also deserialize from an array), and no text
        // holds NUL (PostgreSQL refuses it, SQLite keeps it): 400 on every backend.
        if !value.is_object() {
            return Err(ApiError::validation(
                "invalid_body",
                &[],
                "The body must be a JSON object",
            ));
        }
        if crate::validate::json_has_nul(&value) {
            return Err(ApiError::validation(
                "invalid_body",
                &[],
                "The body contains a NUL character (\\u0000)",
            ));
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| ApiError::validation("invalid_body", &[], e.to_string()))
    }
}

/// A query string parsed into `T`; failures answer 400 `invalid_query_params`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::parse(parts.uri.query())
    }
}

impl<T: DeserializeOwned> Query<T> {
    /// The extractor's parse on its own (for `front`'s direct dispatch).
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        serde_urlencoded::from_str(query.unwrap_or(""))
            .map(Query)
            .map_err(|e| ApiError::validation("invalid_query_params", &[], e.to_string()))
    }
}

/// Lenient boolean for query flags: true/false, 1/0, yes/no, on/off.
pub fn parse_bool(v: Option<&str>) -> Result<bool, ApiError> {
    match v.map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("false") | Some("0") | Some("no") | Some("off") => Ok(false),
        Some("true") | Some("1") | Some("yes") | Some("on") => Ok(true),
        Some(other) => Err(ApiError::validation(
            "invalid_query_params",
            &[],
            format!("{other:?} is not a boolean"),
        )),
    }
}

/// An error with its sources, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A `webhook_url_override` from a request body: empty means none; anything else must pass
/// `webhook_url`, or the request is a 400 naming the field.
pub fn webhook_url_override(v: Option<String>) -> Result<Option<String>, ApiError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => match crate::validate::webhook_url(&s) {
            Ok(_) => Ok(Some(s)),
            Err(msg) => Err(ApiError::validation(
                "invalid_body",
                &["webhook_url_override"],
                msg,
            )),
        },
    }
}
