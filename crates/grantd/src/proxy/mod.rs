//! `/proxy/{path}`: forwards a call to the provider's API (Graph for the Microsoft providers) with
//! the connection's fresh access token injected, wire-compatible with Nango's proxy.
//!
//! - `request`: the caller's headers → `Options`, size limits, the path check, upstream headers.
//! - `retry`: when to try again — only when the caller asked (`Retries`, `Retry-On`), as Nango;
//!   429/503 `Retry-After`, 5xx and network backoff with jitter.
//! - `upstream`: the body, one attempt, redirects, streaming the answer back.
//!
//! The hot path does no database work while the cached token is fresh (`Store::cached_*`). Bodies
//! stream both ways and are never buffered whole (except small ones, so they can be replayed).
//! A 401 triggers one forced refresh and one retry. Nothing is retried once the response has
//! started streaming to the caller. `Grantd-Resource: sharepoint` calls the connection's
//! SharePoint host with the SharePoint token; `Grantd-Follow-Redirects: true` follows redirects
//! (Graph's `…/content` 302) instead of passing them through; `Grantd-Pre-Authenticated: true`
//! calls a URL that carries its own authorization (an upload session's `uploadUrl`, through
//! `Base-Url-Override`) without the Authorization header.

pub mod request;
pub mod retry;
pub mod throttled;
pub mod upstream;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use url::Url;

use self::request::Options;
use self::retry::{Decision, Policy};
use self::upstream::{SendError, UpBody};
use crate::catalog::Provider;
use crate::connections::{CredentialsOpts, Error as CoreError};
use crate::edge::ApiError;
use crate::edge::AppState;
use crate::metrics;
use crate::model::Connection;

/// Builds the outbound client for proxied calls (see `outbound`).
pub fn client(guard: &crate::outbound::Guard) -> crate::outbound::ProxyClient {
    crate::outbound::ProxyClient::new(guard)
}

/// `/proxy/{path}`, the HTTP door: the caller's headers and path, checked, then `forward`.
pub async fn handle(
    State(st): State<AppState>,
    _: crate::edge::SecretKey,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let opts = Options::parse(&parts).inspect_err(|_| metrics::proxy_refused("invalid_request"))?;
    let path = request::checked_path(parts.uri.path().strip_prefix("/proxy").unwrap_or(""))
        .inspect_err(|_| metrics::proxy_refused("path"))?;
    let call = Call {
        opts: &opts,
        method: parts.method.clone(),
        path,
        query: parts.uri.query(),
        headers: &parts.headers,
        body,
    };
    forward(&st, call).await
}

/// One proxied call, as `handle` parsed it or as another edge builds it (the dashboard's
/// test call).
pub struct Call<'a> {
    pub opts: &'a Options,
    pub method: Method,
    /// The path under the provider's base URL, already checked (`request::checked_path`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The caller's headers (`Nango-Proxy-*` ones are forwarded).
    pub headers: &'a HeaderMap,
    pub body: Body,
}

/// The proxy's use case: fresh credentials (`Core::credentials`), the target URL, the attempts
/// with retries, redirects when asked, and the answer streamed back.
pub async fn forward(st: &AppState, call: Call<'_>) -> Result<Response, ApiError> {
    let opts = call.opts;
    let fresh = st
        .core
        .credentials(&opts.key, &opts.connection_id, CredentialsOpts::default())
        .await
        .map_err(|e| credentials_error(e, opts))?;
    let (provider, conn) = (fresh.provider, fresh.connection);
    // The tenant is borrowed from the connection as found (a refresh does not change it).
    let found = Arc::clone(&conn);
    let tenant = crate::connections::throttle::tenant(&found);

    let target = target_url(st, opts, provider, &conn, call.path, call.query).await?;
    let uri = Uri::try_from(target.as_str()).map_err(|_| invalid_path())?;
    let mut headers = upstream_headers(call.headers, opts);
    throttled::decorate(&fresh.integration, &mut headers);
    let mut body = UpBody::prepare(opts, call.body).await?;
    let policy = Policy::new(opts.retries, opts.retry_on.clone(), body.replayable());
    let deadline = Instant::now() + st.core.config.proxy_deadline;
    let attempt = Attempt {
        st,
        opts,
        method: &call.method,
        target: &uri,
        headers: &headers,
        policy: &policy,
        deadline,
        tenant,
    };
    let (resp, conn) = match attempt.send_with_retries(conn, &mut body).await? {
        Sent::Upstream(resp, conn) => (resp, conn),
        Sent::Answered(r) => return Ok(r),
    };

    let resp = if opts.follow_redirects && policy.replayable && resp.status().is_redirection() {
        let token = token(opts, &conn)?;
        match Box::pin(upstream::follow(
            &st.proxy_http,
            &st.guard,
            opts,
            call.method,
            &target,
            &headers,
            token.as_ref(),
            resp,
            deadline,
            body.replay(),
        ))
        .await
        {
            Ok(r) => r,
            Err(refused) => return Ok(refused),
        }
    } else {
        resp
    };
    Ok(upstream::stream_back(resp))
}

/// What the attempts ended with.
enum Sent {
    /// The upstream answered (with the connection as last refreshed).
    Upstream(crate::outbound::ProxyResponse, Arc<Connection>),
    /// No upstream answer to pass on: grantd answers itself (timeout, network failure).
    Answered(Response),
}

/// What every attempt of one call shares.
struct Attempt<'a> {
    st: &'a AppState,
    opts: &'a Options,
    method: &'a Method,
    target: &'a Uri,
    headers: &'a HeaderMap,
    policy: &'a Policy,
    deadline: Instant,
    /// The tenant whose throttle budget the call spends (`connections::throttle`).
    tenant: crate::connections::throttle::Tenant<'a>,
}

impl Attempt<'_> {
    /// Sends until an answer is final: retries as the policy allows within the deadline, and
    /// one forced refresh after a 401.
    async fn send_with_retries(
        &self,
        mut conn: Arc<Connection>,
        body: &mut UpBody,
    ) -> Result<Sent, ApiError> {
        let (opts, policy) = (self.opts, self.policy);
        let mut refreshed = false;
        let mut attempt: u32 = 0;
        loop {
            let token = token(opts, &conn)?;
            if let Err(t) = throttled::admit(self.st, self.tenant, self.deadline).await {
                return Ok(Sent::Answered(throttled::shed(t)));
            }
            let started = Instant::now();
            let sent = upstream::send(
                &self.st.proxy_http,
                self.method,
                self.target,
                self.headers,
                token.as_ref(),
                body,
                policy.replayable.then_some(self.deadline),
            )
            .await;
            let decision = match &sent {
                Err(SendError::Refused) => {
                    metrics::proxy_refused("address");
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "base_url_override_not_allowed",
                        "The target host resolves to a non-public address",
                    ));
                }
                Err(SendError::Timeout) => {
                    metrics::proxy_upstream(0, started.elapsed());
                    return Ok(Sent::Answered(upstream::no_response(self.method, true)));
                }
                Err(SendError::Network(e)) => {
                    metrics::proxy_upstream(0, started.elapsed());
                    tracing::warn!(connection.id = %opts.connection_id, "proxy upstream failed: {}", crate::edge::error_chain(e));
                    policy.on_network_error(attempt)
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    metrics::proxy_upstream(status, started.elapsed());
                    throttled::observe(self.st, self.tenant, status, r.headers()).await;
                    if status == 401 && !refreshed && policy.replayable && token.is_some() {
                        refreshed = true;
                        // A token revoked or expired early: refresh once, then try again.
                        // Boxed: a rare path whose large future should not weigh on every call.
                        let stale = Connection::clone(&conn);
                        if let Ok(c) = Box::pin(self.st.core.fresh_connection(stale, true)).await {
                            conn = Arc::new(c);
                            metrics::proxy_retry("unauthorized");
                            continue;
                        }
                    }
                    let wait = retry::retry_after(r.headers(), chrono::Utc::now());
                    policy.on_status(attempt, status, wait)
                }
            };
            match decision {
                Decision::Retry(wait, reason) if Instant::now() + wait < self.deadline => {
                    attempt += 1;
                    metrics::proxy_retry(reason);
                    tracing::debug!(connection.id = %opts.connection_id, attempt, "retrying proxied call after {wait:?} ({reason})");
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    return Ok(match sent {
                        Ok(r) => Sent::Upstream(r, conn),
                        Err(_) => Sent::Answered(upstream::no_response(self.method, false)),
                    });
                }
            }
        }
    }
}

/// `Core::credentials` failures in Nango's proxy wording.
fn credentials_error(e: CoreError, opts: &Options) -> ApiError {
    match e {
        CoreError::UnknownIntegration(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_provider_config",
            format!("Integration {} does not exist", opts.key),
        ),
        CoreError::UnknownConnection => ApiError::new(
            StatusCode::BAD_REQUEST,
            "server_error",
            "Failed to get connection",
        ),
        e @ CoreError::Store(_) => e.into(),
        refresh => ApiError::proxy_credentials(refresh),
    }
}

/// The `Authorization` header to send (marked sensitive): none for pre-authenticated URLs.
fn token(opts: &Options, conn: &Connection) -> Result<Option<HeaderValue>, ApiError> {
    let secret = if opts.pre_authenticated {
        return Ok(None);
    } else if opts.sharepoint {
        conn.credentials
            .sharepoint
            .as_ref()
            .map(|s| s.access_token.expose_secret())
            .ok_or_else(missing_sharepoint)?
    } else {
        conn.credentials.access_token.expose_secret()
    };
    let mut v = HeaderValue::try_from(format!("Bearer {secret}")).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "invalid_credentials",
            "The connection's access token cannot be sent in a header",
        )
    })?;
    v.set_sensitive(true);
    Ok(Some(v))
}

fn missing_sharepoint() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "missing_sharepoint_token",
        "This connection has no SharePoint token; reauthorize with Sites.Read.All",
    )
}

fn upstream_headers(incoming: &HeaderMap, opts: &Options) -> HeaderMap {
    let mut out = request::upstream_headers(incoming);
    // A streamed body keeps its declared length (Graph upload sessions require it).
    if let Some(n) = opts.content_length.filter(|_| opts.has_body) {
        out.insert(axum::http::header::CONTENT_LENGTH, n.into());
    }
    out
}

/// base (override, SharePoint, or the provider's) + `/` + path + `?` + query, verified to stay
/// under the base after URL normalisation and, for hosts grantd does not trust, to resolve to
/// public addresses only.
async fn target_url(
    st: &AppState,
    opts: &Options,
    provider: &Provider,
    conn: &Connection,
    path: &str,
    query: Option<&str>,
) -> Result<Url, ApiError> {
    let own = provider.proxy_base_url(&st.core.config.microsoft);
    let base = match &opts.base_url_override {
        Some(o) => {
            let own_url = Url::parse(&own).ok();
            let allowed = &st.core.config.proxy_allowed_hosts;
            let bearing = !opts.pre_authenticated;
            if let Err(msg) =
                crate::outbound::override_allowed(o, own_url.as_ref(), allowed, bearing)
            {
                metrics::proxy_refused("base_url_override");
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "base_url_override_not_allowed",
                    msg,
                ));
            }
            o.as_str().to_owned()
        }
        None if opts.sharepoint => {
            let sp = conn
                .credentials
                .sharepoint
                .as_ref()
                .ok_or_else(missing_sharepoint)?;
            st.core.config.microsoft.sharepoint_base(&sp.host)
        }
        None => own,
    };
    let base = base.trim_end_matches('/');
    let mut raw = format!("{base}/{}", path.trim_start_matches('/'));
    if let Some(q) = query {
        raw.push('?');
        raw.push_str(q);
    }
    let url = Url::parse(&raw).map_err(|_| invalid_path())?;
    if !stays_under(&url, base).ok_or_else(invalid_path)? {
        return Err(invalid_path());
    }
    if let Err(e) = st.guard.check(&url).await {
        metrics::proxy_refused("address");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "base_url_override_not_allowed",
            format!("The target is not allowed: {e}"),
        ));
    }
    Ok(url)
}

fn invalid_path() -> ApiError {
    metrics::proxy_refused("path");
    ApiError::validation(
        "invalid_uri_params",
        &["path"],
        "The path does not form a valid URL under the base URL",
    )
}

/// Whether `url` has the origin of `base` and a path under its path; `None` when `base` is not a
/// valid URL. Bases are few (one per provider, SharePoint host or override), so each thread keeps
/// the last ones parsed: parsing a URL is a noticeable part of a proxied call.
fn stays_under(url: &Url, base: &str) -> Option<bool> {
    thread_local! {
        static PARSED: std::cell::RefCell<Vec<(String, Url)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    const KEPT: usize = 8;
    PARSED.with_borrow_mut(|parsed| {
        let i = match parsed.iter().position(|(b, _)| b == base) {
            Some(i) => i,
            None => {
                let u = Url::parse(base).ok()?;
                if parsed.len() == KEPT {
                    parsed.remove(0);
                }
                parsed.push((base.to_owned(), u));
                parsed.len() - 1
            }
        };
        let b = &parsed[i].1;
        // The tuple origin, compared field by field (`Url::origin` allocates).
        Some(
            url.scheme() == b.scheme()
                && url.host() == b.host()
                && url.port_or_known_default() == b.port_or_known_default()
                && url.path().starts_with(b.path().trim_end_matches('/')),
        )
    })
}
