//! Fault injection: rules set through `POST /_emulator/faults` that make matching requests fail
//! (429/500/503 with optional `Retry-After`), slow down (added latency) or drop the connection
//! ("down"), for the next N requests or a percentage of them. Applied by [`middleware`] to every
//! route except the control API, and by `crate::notify` to outgoing notifications
//! ([`Faults::take_notification`], scope `notifications`).

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::state::AppState;

/// Which part of the emulator a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultScope {
    /// The token endpoint (`/{tenant}/oauth2/v2.0/token`, also v1 `/oauth2/token`).
    Token,
    /// The authorize endpoint and its sign-in/consent pages.
    Authorize,
    /// Graph (`/v1.0/...`).
    Graph,
    /// SharePoint (`/_sharepoint/...`).
    Sharepoint,
    /// Pre-authenticated downloads (`/_download/...`).
    Download,
    /// Upload sessions (`/_upload/...`).
    Upload,
    /// Everything but the control API (and outgoing notifications).
    All,
    /// Outgoing change and lifecycle notifications: `down` drops one, `status` makes the
    /// attempt fail as if the receiver answered it (retried on 5xx/429), `latency_ms` delays it.
    /// `path_prefix` matches the start of the notification URL.
    Notifications,
}

/// A fault rule as posted to the control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultSpec {
    pub scope: FaultScope,
    /// Only requests whose path starts with this (e.g. `/v1.0/me/drive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// 429, 500 or 503 (any 4xx/5xx is accepted). `None` with `latency_ms` only slows requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` seconds on the error response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Added latency before answering (or before passing the request on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Drop the connection without an HTTP response.
    #[serde(default)]
    pub down: bool,
    /// Apply to the next N matching requests (default: until cleared, or `percent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Apply to this percentage of matching requests (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// Let the first N matching requests through untouched before the rule applies (e.g. only
    /// the second token request of a refresh, the SharePoint one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<u32>,
    /// Only requests whose bearer token names this tenant (`tid`), as Microsoft throttles per
    /// app per tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// With `status` and `retry_after`: once the rule fires, the tenant (or path) stays throttled
    /// for the `Retry-After` window (emulator clock), as Microsoft does: every matching request in
    /// the window gets the same answer with the `Retry-After` left, even past `count`.
    #[serde(default)]
    pub hold: bool,
    /// Adds `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` to the answers of
    /// matching requests (with no `status`, they are answered normally), as SharePoint and
    /// OneDrive do once an app nears its budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitHeaders>,
}

/// The `RateLimit-*` headers a rule adds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RateLimitHeaders {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the budget resets.
    pub reset: u64,
}

impl FaultSpec {
    /// A fault with only a scope; set the other fields with struct update syntax.
    pub fn new(scope: FaultScope) -> FaultSpec {
        FaultSpec {
            scope,
            path_prefix: None,
            status: None,
            retry_after: None,
            latency_ms: None,
            down: false,
            count: None,
            percent: None,
            skip: None,
            tenant: None,
            hold: false,
            rate_limit: None,
        }
    }
}

/// A rule in force, with how often it fired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRule {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Requests the rule has affected so far.
    pub fired: u64,
    /// Matching requests let through so far because of `skip`.
    #[serde(default)]
    pub skipped: u64,
    /// With `hold`: the end of the window the rule holds (unix milliseconds, emulator clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<(u64, Vec<FaultRule>)>,
}

impl Faults {
    pub fn add(&self, spec: FaultSpec) -> FaultRule {
        let mut g = self.inner.lock().expect("faults lock poisoned");
        g.0 += 1;
        let rule = FaultRule {
            id: g.0,
            spec,
            fired: 0,
            skipped: 0,
            held_until_ms: None,
        };
        g.1.push(rule.clone());
        rule
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.inner.lock().expect("faults lock poisoned").1.clone()
    }

    pub fn clear(&self) {
        self.inner.lock().expect("faults lock poisoned").1.clear();
    }

    /// The fault (if any) for the next outgoing notification to `url`; consumes one use.
    pub fn take_notification(&self, url: &str) -> Option<FaultSpec> {
        let mut g = self.inner.lock().expect("faults lock poisoned");
        let rules = &mut g.1;
        let idx = rules.iter().position(|r| {
            r.spec.scope == FaultScope::Notifications
                && r.spec
                    .path_prefix
                    .as_deref()
                    .is_none_or(|p| url.starts_with(p))
                && r.spec.count.is_none_or(|c| r.fired < u64::from(c))
        })?;
        let rule = &mut rules[idx];
        if rule.spec.skip.is_some_and(|n| rule.skipped < u64::from(n)) {
            rule.skipped += 1;
            return None;
        }
        if let Some(p) = rule.spec.percent
            && rand::Rng::gen_range(&mut rand::thread_rng(), 0..100u8) >= p
        {
            return None;
        }
        rule.fired += 1;
        let spec = rule.spec.clone();
        if rule.spec.count.is_some_and(|c| rule.fired >= u64::from(c)) {
            rules.remove(idx);
        }
        Some(spec)
    }

    /// Picks the first rule matching this request and consumes one use of it. `tid` is the
    /// tenant the request's bearer token names; `now_ms` the emulator clock (unix ms).
    fn take(&self, path: &str, tid: Option<&str>, now_ms: i64) -> Option<FaultSpec> {
        let scope = scope_of(path)?;
        let mut g = self.inner.lock().expect("faults lock poisoned");
        let rules = &mut g.1;
        // Rules used up, whose hold window (if any) is over, are gone.
        rules.retain(|r| {
            r.spec.count.is_none_or(|c| r.fired < u64::from(c))
                || r.held_until_ms.is_some_and(|u| u > now_ms)
        });
        let idx = rules.iter().position(|r| {
            (r.spec.scope == FaultScope::All || r.spec.scope == scope)
                && r.spec
                    .path_prefix
                    .as_deref()
                    .is_none_or(|p| path.starts_with(p))
                && r.spec
                    .tenant
                    .as_deref()
                    .is_none_or(|t| tid.is_some_and(|tid| tid.eq_ignore_ascii_case(t)))
                && (r.spec.count.is_none_or(|c| r.fired < u64::from(c))
                    || r.held_until_ms.is_some_and(|u| u > now_ms))
        })?;
        let rule = &mut rules[idx];
        // Inside a hold window: the same answer, with the time left.
        if let Some(until) = rule.held_until_ms.filter(|u| *u > now_ms) {
            rule.fired += 1;
            let mut spec = rule.spec.clone();
            spec.retry_after = Some(((until - now_ms) as u64).div_ceil(1000));
            return Some(spec);
        }
        if rule.spec.skip.is_some_and(|n| rule.skipped < u64::from(n)) {
            rule.skipped += 1;
            return None;
        }
        if let Some(p) = rule.spec.percent
            && rand::Rng::gen_range(&mut rand::thread_rng(), 0..100u8) >= p
        {
            return None;
        }
        rule.fired += 1;
        if rule.spec.hold
            && let Some(secs) = rule.spec.retry_after
        {
            rule.held_until_ms = Some(now_ms + (secs as i64) * 1000);
        }
        let spec = rule.spec.clone();
        if rule.spec.count.is_some_and(|c| rule.fired >= u64::from(c)) && !rule.spec.hold {
            rules.remove(idx);
        }
        Some(spec)
    }
}

/// The tenant (`tid`) a request's bearer token names, read without verifying it (counting and
/// fault matching only; resources verify tokens themselves).
pub fn bearer_tid(headers: &http::HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(Deserialize)]
    struct Claims {
        tid: Option<String>,
    }
    serde_json::from_slice::<Claims>(&bytes).ok()?.tid
}

/// The scope a path belongs to; `None` for the control API (never faulted).
pub fn scope_of(path: &str) -> Option<FaultScope> {
    if path.starts_with("/_emulator") {
        return None;
    }
    Some(if path.starts_with("/v1.0/") || path == "/v1.0" {
        FaultScope::Graph
    } else if path.starts_with("/_sharepoint/") {
        FaultScope::Sharepoint
    } else if path.starts_with("/_download/") {
        FaultScope::Download
    } else if path.starts_with("/_upload/") {
        FaultScope::Upload
    } else if path.ends_with("/oauth2/v2.0/token") || path.ends_with("/oauth2/token") {
        FaultScope::Token
    } else if path.ends_with("/oauth2/v2.0/authorize")
        || path.ends_with("/oauth2/authorize")
        || path.ends_with("/login")
        || path.ends_with("/consent")
    {
        FaultScope::Authorize
    } else {
        FaultScope::All
    })
}

/// Applies the fault plan before the request reaches its handler. A request a fault answers
/// (with a status or by dropping the connection) is still counted, under the same counter key
/// its handler would have used, so tests can assert how often a client retried.
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    // Graph and SharePoint calls count per tenant (the token's `tid`), faulted ones included.
    let tid = match scope_of(&path) {
        Some(FaultScope::Graph | FaultScope::Sharepoint) => bearer_tid(req.headers()),
        _ => None,
    };
    if let Some(t) = &tid {
        state.counters.tenant(t);
    }
    let now_ms = state.clock.now().timestamp_millis();
    let Some(spec) = state.faults.take(&path, tid.as_deref(), now_ms) else {
        return next.run(req).await;
    };
    if let Some(ms) = spec.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = spec.status.and_then(|s| StatusCode::from_u16(s).ok());
    if let Some(t) = &tid
        && (spec.down || status.is_some())
    {
        state.counters.tenant_faulted(t);
    }
    if !spec.down && status.is_none() {
        let mut resp = next.run(req).await;
        if let Some(rl) = spec.rate_limit {
            rate_limit_headers(resp.headers_mut(), rl);
        }
        return resp;
    }
    let client_request_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    count_faulted(&state, req).await;
    match status {
        Some(status) if !spec.down => {
            let mut resp = fault_response(
                &state,
                &path,
                status,
                spec.retry_after,
                client_request_id.as_deref(),
            );
            if let Some(rl) = spec.rate_limit {
                rate_limit_headers(resp.headers_mut(), rl);
            }
            resp
        }
        _ => dropped_connection(),
    }
}

fn rate_limit_headers(h: &mut http::HeaderMap, rl: RateLimitHeaders) {
    h.insert("ratelimit-limit", HeaderValue::from(rl.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(rl.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(rl.reset));
}

/// Counts a request a fault answered, as its handler would have.
async fn count_faulted(state: &AppState, req: Request) {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str();
    let path = parts.uri.path();
    match scope_of(path) {
        Some(FaultScope::Graph) => {
            let raw = path.strip_prefix("/v1.0/").unwrap_or("");
            let template = match crate::graph::path::parse(raw) {
                Ok((_, t)) => format!("/v1.0/{t}"),
                Err(_) => "/v1.0/{unknown}".to_owned(),
            };
            state.counters.graph(method, &template);
            state.counters.faulted(format!("graph {method} {template}"));
        }
        Some(FaultScope::Sharepoint) => {
            if let Some((host, route)) = crate::sharepoint::counter_key(path) {
                state.counters.sharepoint(method, &host, &route);
                state
                    .counters
                    .faulted(format!("sharepoint {method} {host} {route}"));
            }
        }
        Some(FaultScope::Download | FaultScope::Upload) => {
            let route = if path.starts_with("/_download/") {
                "/_download/{token}"
            } else {
                "/_upload/{session}"
            };
            state.counters.graph(method, route);
            state.counters.faulted(format!("graph {method} {route}"));
        }
        Some(FaultScope::Token) => {
            // The form is small; read it to count by grant type and client like the handler.
            let bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
            let mut form = std::collections::HashMap::new();
            for (k, v) in pairs {
                form.entry(k).or_insert(v);
            }
            let grant = form.get("grant_type").cloned().unwrap_or_default();
            let client = crate::identity::client_auth::client_id_of(&form, &parts.headers);
            state
                .counters
                .token(&grant, client.as_deref().unwrap_or(""));
            state.counters.faulted(format!("token {grant}"));
        }
        _ => {}
    }
}

/// Whether a path is on the drive API (Graph drive routes, SharePoint v2.0, the download and
/// upload URLs), where throttling answers `activityLimitReached`.
fn is_drive_path(path: &str) -> bool {
    match scope_of(path) {
        Some(FaultScope::Download | FaultScope::Upload) => true,
        Some(FaultScope::Sharepoint) => path.contains("/_api/v2.0/"),
        Some(FaultScope::Graph) => path.split('/').any(|seg| seg == "drive" || seg == "drives"),
        _ => false,
    }
}

/// A response whose body fails at once: hyper aborts the connection, so the client sees a
/// transport error rather than an HTTP status.
fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "emulator fault: down",
        ))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("1"));
    resp
}

fn fault_response(
    state: &AppState,
    path: &str,
    status: StatusCode,
    retry_after: Option<u64>,
    client_request_id: Option<&str>,
) -> Response {
    let mut resp = match scope_of(path) {
        Some(FaultScope::Token | FaultScope::Authorize) | Some(FaultScope::All) => {
            let (error, code, text) = match status.as_u16() {
                429 => (
                    "temporarily_unavailable",
                    90055,
                    "The service is throttling requests from this tenant. Retry later.",
                ),
                503 => (
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                ),
                _ => (
                    "server_error",
                    90090,
                    "The service encountered an internal error. Please try again.",
                ),
            };
            let err = crate::identity::errors::AadError::new(error, code, text).status(status);
            err.json_response(state, client_request_id)
        }
        _ => {
            let drive = is_drive_path(path);
            // The drive API throttles with `activityLimitReached` (429, and 503 from SharePoint's
            // side) and a nested `throttledRequest` → `quota`.
            let (code, message, inner) = match status.as_u16() {
                429 | 503 if drive => (
                    "activityLimitReached",
                    "The request has been throttled",
                    Some("throttledRequest"),
                ),
                429 => (
                    "TooManyRequests",
                    "Too many requests, retry after the indicated time.",
                    None,
                ),
                503 => (
                    "serviceNotAvailable",
                    "The service is temporarily unavailable. Try again later.",
                    None,
                ),
                500 => (
                    "generalException",
                    "An unspecified error has occurred.",
                    None,
                ),
                _ => ("generalException", "Injected fault.", None),
            };
            let now = state.clock.now();
            let request_id = uuid::Uuid::new_v4().to_string();
            let client_request_id = client_request_id
                .map(str::to_owned)
                .unwrap_or_else(|| request_id.clone());
            let mut inner_error = serde_json::json!({
                "date": now.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": request_id,
                "client-request-id": client_request_id,
            });
            if let Some(c) = inner {
                inner_error["code"] = serde_json::json!(c);
                inner_error["innerError"] = serde_json::json!({"code": "quota"});
            }
            let body = serde_json::json!({
                "error": {"code": code, "message": message, "innerError": inner_error}
            });
            let mut resp = (status, axum::Json(body)).into_response();
            for (name, value) in [
                ("request-id", &request_id),
                ("client-request-id", &client_request_id),
            ] {
                if let Ok(v) = HeaderValue::from_str(value) {
                    resp.headers_mut().insert(name, v);
                }
            }
            resp
        }
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
