//! `/proxy/{path}`: forwards a call to the provider's API (Graph for the Microsoft providers) with
//! the connection's fresh access token injected. Bodies stream both ways and are never buffered
//! whole. Throttling (429/503 with `Retry-After`) and 5xx are retried for requests that can be
//! replayed (no body) within a total deadline; a 401 triggers one forced refresh and one retry.
//! Nothing is retried once the response has started streaming to the caller.
//!
//! `Grantd-Resource: sharepoint` sends the call to the connection's SharePoint host with the
//! SharePoint token instead.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;

use crate::api::ApiError;
use crate::model::{ConnectionId, ProviderConfigKey};
use crate::server::AppState;

/// Headers that describe one hop and are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Builds the outbound client for proxied calls: pooled, no automatic redirects (the caller sees
/// Graph's 302s and the Authorization header never follows to another host).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()
        .expect("static client configuration is valid")
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn invalid_header(name: &str, msg: &str) -> ApiError {
    ApiError::validation("invalid_headers", &[name], msg)
}

/// Exponential backoff with full jitter: 0.5 s × 2^attempt, capped at 10 s.
fn backoff(attempt: u32) -> Duration {
    let cap = (500u64 << attempt.min(5)).min(10_000);
    Duration::from_millis(rand::thread_rng().gen_range(cap / 2..=cap))
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

pub async fn handle(
    State(st): State<AppState>,
    _: crate::api::SecretKey,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let cid = header_str(h, "connection-id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid_header("connection-id", "The Connection-Id header is required"))
        .and_then(|s| {
            ConnectionId::parse(s).map_err(|e| invalid_header("connection-id", &e.to_string()))
        })?;
    let key = header_str(h, "provider-config-key")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            invalid_header(
                "provider-config-key",
                "The Provider-Config-Key header is required",
            )
        })
        .and_then(|s| {
            ProviderConfigKey::parse(s)
                .map_err(|e| invalid_header("provider-config-key", &e.to_string()))
        })?;
    let retries: u32 = match header_str(h, "retries").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s
            .parse()
            .map_err(|_| invalid_header("retries", "Retries must be a whole number"))?,
    };
    let retry_on: Vec<u16> = match header_str(h, "retry-on").filter(|s| !s.is_empty()) {
        None => vec![],
        Some(s) => s
            .split(',')
            .map(|x| x.trim().parse::<u16>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                invalid_header("retry-on", "Retry-On must be comma-separated status codes")
            })?,
    };
    let sharepoint =
        header_str(h, "grantd-resource").is_some_and(|v| v.eq_ignore_ascii_case("sharepoint"));

    let (_, provider) = st.core.integration(&key).await.map_err(|e| match e {
        crate::connections::Error::UnknownIntegration(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_provider_config",
            format!("Integration {key} does not exist"),
        ),
        other => other.into(),
    })?;
    let conn = st
        .core
        .store
        .get_connection(&key, &cid)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "server_error",
                "Failed to get connection",
            )
        })?;
    let mut conn = st.core.fresh_connection(conn, false).await.map_err(|e| {
        let msg = e.to_string();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "server_error",
            format!("Failed to get connection credentials: '{msg}'"),
        )
    })?;

    // Target base URL.
    let base = match header_str(h, "base-url-override").filter(|s| !s.is_empty()) {
        Some(o) => {
            let url = url::Url::parse(o).map_err(|_| {
                invalid_header(
                    "base-url-override",
                    "Base-Url-Override must be an absolute URL",
                )
            })?;
            let host = url.host_str().unwrap_or("").to_ascii_lowercase();
            let own = url::Url::parse(&provider.proxy_base_url(&st.core.config.microsoft))
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
            if own.as_deref() != Some(host.as_str())
                && !st.core.config.proxy_allowed_hosts.contains(&host)
            {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "base_url_override_not_allowed",
                    format!("Base-Url-Override to {host} is not allowed"),
                ));
            }
            o.trim_end_matches('/').to_owned()
        }
        None if sharepoint => {
            let sp = conn.credentials.sharepoint.as_ref().ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "missing_sharepoint_token",
                    "This connection has no SharePoint token; reauthorize with Sites.Read.All",
                )
            })?;
            st.core.config.microsoft.sharepoint_base(&sp.host)
        }
        None => provider.proxy_base_url(&st.core.config.microsoft),
    };
    let path = parts.uri.path().strip_prefix("/proxy").unwrap_or("");
    if path
        .split('/')
        .any(|seg| seg == ".." || seg.eq_ignore_ascii_case("%2e%2e"))
    {
        return Err(ApiError::validation(
            "invalid_uri_params",
            &["path"],
            "The path may not contain '..' segments",
        ));
    }
    let mut target = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    if let Some(q) = parts.uri.query() {
        target.push('?');
        target.push_str(q);
    }

    // Headers sent upstream: Nango-Proxy-* (prefix removed) and the content headers.
    let mut out = reqwest::header::HeaderMap::new();
    for (name, value) in h {
        let n = name.as_str();
        if let Some(stripped) = n.strip_prefix("nango-proxy-") {
            if HOP_BY_HOP.contains(&stripped) || stripped == "authorization" {
                continue;
            }
            if let Ok(hn) = HeaderName::from_bytes(stripped.as_bytes()) {
                out.insert(hn, value.clone());
            }
        } else if matches!(
            n,
            "content-type"
                | "content-range"
                | "if-match"
                | "if-none-match"
                | "range"
                | "accept"
                | "prefer"
                | "client-request-id"
        ) {
            out.insert(name.clone(), value.clone());
        }
    }
    if let Some(len) = h.get(header::CONTENT_LENGTH) {
        out.insert(header::CONTENT_LENGTH, len.clone());
    }

    let method = parts.method.clone();
    let has_body = h.get(header::CONTENT_LENGTH).is_some_and(|v| v != "0")
        || h.get(header::TRANSFER_ENCODING).is_some();
    let idempotent = matches!(
        method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::PUT
    );
    let replayable = !has_body;
    let deadline = Instant::now() + st.core.config.proxy_deadline;
    let mut body = Some(body);
    let mut refreshed = false;
    let mut attempt: u32 = 0;
    loop {
        let token = if sharepoint {
            conn.credentials
                .sharepoint
                .as_ref()
                .map(|s| s.access_token.expose_secret().to_owned())
                .unwrap_or_default()
        } else {
            conn.credentials.access_token.expose_secret().to_owned()
        };
        let mut rb = st
            .proxy_http
            .request(method.clone(), &target)
            .headers(out.clone())
            .bearer_auth(token);
        if let Some(b) = body.take() {
            if has_body {
                rb = rb.body(reqwest::Body::wrap_stream(b.into_data_stream()));
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let result = rb
            .timeout(remaining.max(Duration::from_millis(1)))
            .send()
            .await;
        let can_retry = replayable && Instant::now() < deadline;
        match result {
            Err(e) => {
                let retry_allowed =
                    can_retry && (idempotent || retries > attempt) && attempt < retries.max(3);
                if retry_allowed && (e.is_connect() || e.is_timeout() || e.is_request()) {
                    attempt += 1;
                    tokio::time::sleep(
                        backoff(attempt).min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    continue;
                }
                tracing::warn!(connection.id = %cid, "proxy upstream failed: {}", crate::api::error_chain(&e));
                let status = if e.is_timeout() {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return Ok((
                    status,
                    axum::Json(serde_json::json!({"message": "The upstream API could not be reached", "code": if e.is_timeout() {"timeout"} else {"upstream_unreachable"}, "status": status.as_u16(), "method": method.as_str()})),
                )
                    .into_response());
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                if status == 401 && !refreshed && can_retry && !sharepoint {
                    refreshed = true;
                    if let Ok(c) = st.core.fresh_connection(conn.clone(), true).await {
                        conn = c;
                        continue;
                    }
                }
                let throttled = status == 429 || status == 503;
                let server_err = status >= 500;
                let asked = retry_on.contains(&status);
                let budget = if retries > 0 {
                    retries
                } else if throttled || (server_err && idempotent) {
                    3
                } else {
                    0
                };
                if can_retry
                    && attempt < budget
                    && (throttled || (server_err && (idempotent || retries > 0)) || asked)
                {
                    let wait = retry_after(resp.headers()).unwrap_or_else(|| backoff(attempt + 1));
                    if Instant::now() + wait < deadline {
                        attempt += 1;
                        tracing::debug!(connection.id = %cid, status, attempt, "retrying proxied call after {wait:?}");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
                return Ok(stream_back(resp));
            }
        }
    }
}

fn stream_back(resp: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}
