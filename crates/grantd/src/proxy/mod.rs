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
/// Each thread keeps the last few it built, by connection as cached (`Arc` identity: a refresh
/// makes a new `Connection`, so a refreshed token is never answered from here) and resource:
/// a Microsoft access token is 1–2.5 KB, and formatting and validating it as a header value on
/// every call cost more than the lookup.
fn token(opts: &Options, conn: &Arc<Connection>) -> Result<Option<HeaderValue>, ApiError> {
    /// Headers kept per thread.
    const KEPT: usize = 8;
    thread_local! {
        static BUILT: std::cell::RefCell<Vec<(Arc<Connection>, bool, HeaderValue)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    if opts.pre_authenticated {
        return Ok(None);
    }
    let sp = opts.sharepoint;
    let kept = BUILT.with_borrow(|built| {
        built
            .iter()
            .find(|(c, s, _)| *s == sp && Arc::ptr_eq(c, conn))
            .map(|(_, _, v)| v.clone())
    });
    if kept.is_some() {
        return Ok(kept);
    }
    let v = bearer(opts, conn)?;
    BUILT.with_borrow_mut(|built| {
        if built.len() == KEPT {
            built.remove(0);
        }
        built.push((Arc::clone(conn), sp, v.clone()));
    });
    Ok(Some(v))
}

/// `Bearer <access token>` of the resource the call is for, as a sensitive header value.
fn bearer(opts: &Options, conn: &Connection) -> Result<HeaderValue, ApiError> {
    let secret = if opts.sharepoint {
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
    Ok(v)
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
    let hosts = &st.core.config.microsoft;
    let url = match &opts.base_url_override {
        Some(o) => {
            let own_url = Url::parse(&provider.proxy_base_url(hosts)).ok();
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
            under(o.as_str(), path, query)?
        }
        None if opts.sharepoint => {
            let sp = conn
                .credentials
                .sharepoint
                .as_ref()
                .ok_or_else(missing_sharepoint)?;
            under(&hosts.sharepoint_base(&sp.host), path, query)?
        }
        None => with_own_base(provider, hosts, |base| under(base, path, query))?,
    };
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

/// `base` + `/` + `path` + `?` + `query`, parsed, refused unless it stays under `base` (same
/// origin, path under the base's path).
///
/// Bases are few (one per provider, SharePoint host or override), so each thread keeps the last
/// ones parsed, and the path and query are parsed relative to the base (`./path?query` against
/// `base/`): the result is the URL the whole string would parse to, without parsing the scheme
/// and host again (the host's IDNA processing was most of a URL parse, on every proxied call).
/// A base with a query or fragment is joined as a string and parsed whole, as before.
fn under(base: &str, path: &str, query: Option<&str>) -> Result<Url, ApiError> {
    /// A base as given, parsed, and as a directory (`base/`) to resolve paths against.
    struct Parsed {
        given: String,
        url: Url,
        dir: Option<Url>,
    }
    const KEPT: usize = 8;
    thread_local! {
        static PARSED: std::cell::RefCell<Vec<Parsed>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    let joined = |sep: &str| {
        let mut s = String::with_capacity(base.len() + path.len() + 3 + query.map_or(0, str::len));
        s.push_str(sep);
        s.push_str(path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        s
    };
    PARSED.with_borrow_mut(|parsed| {
        let i = match parsed.iter().position(|p| p.given == base) {
            Some(i) => i,
            None => {
                let url = Url::parse(base).map_err(|_| invalid_path())?;
                let dir = (url.query().is_none()
                    && url.fragment().is_none()
                    && matches!(url.scheme(), "http" | "https"))
                .then(|| Url::parse(&format!("{base}/")).ok())
                .flatten();
                if parsed.len() == KEPT {
                    parsed.remove(0);
                }
                parsed.push(Parsed {
                    given: base.to_owned(),
                    url,
                    dir,
                });
                parsed.len() - 1
            }
        };
        let b = &parsed[i];
        let url = match &b.dir {
            Some(dir) => Url::options().base_url(Some(dir)).parse(&joined("./")),
            None => Url::parse(&(base.to_owned() + &joined("/"))),
        }
        .map_err(|_| invalid_path())?;
        // The tuple origin, compared field by field (`Url::origin` allocates).
        let stays = url.scheme() == b.url.scheme()
            && url.host() == b.url.host()
            && url.port_or_known_default() == b.url.port_or_known_default()
            && url.path().starts_with(b.url.path().trim_end_matches('/'));
        if stays { Ok(url) } else { Err(invalid_path()) }
    })
}

/// Runs `f` with the provider's own base URL (`Provider::proxy_base_url`). Each thread keeps the
/// last ones filled in, by template and hosts (compared, not assumed: tests run several servers
/// in one process): filling the template in is three string replacements per call.
fn with_own_base<T>(
    provider: &Provider,
    hosts: &crate::config::MicrosoftHosts,
    f: impl FnOnce(&str) -> T,
) -> T {
    /// (template, login host, Graph host, filled in)
    type Filled = (String, String, String, String);
    const KEPT: usize = 8;
    thread_local! {
        static FILLED: std::cell::RefCell<Vec<Filled>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let (login, graph) = (hosts.login_url.as_str(), hosts.graph_url.as_str());
    FILLED.with_borrow_mut(|filled| {
        let i = match filled
            .iter()
            .position(|(t, l, g, _)| *t == provider.proxy_base_url && l == login && g == graph)
        {
            Some(i) => i,
            None => {
                if filled.len() == KEPT {
                    filled.remove(0);
                }
                filled.push((
                    provider.proxy_base_url.clone(),
                    login.to_owned(),
                    graph.to_owned(),
                    provider.proxy_base_url(hosts),
                ));
                filled.len() - 1
            }
        };
        f(&filled[i].3)
    })
}

fn invalid_path() -> ApiError {
    metrics::proxy_refused("path");
    ApiError::validation(
        "invalid_uri_params",
        &["path"],
        "The path does not form a valid URL under the base URL",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relative parse gives the URL the whole string parses to, and refuses what escapes.
    #[test]
    fn paths_resolve_under_the_base_as_the_whole_url_would() {
        let bases = [
            "http://127.0.0.1:4100",
            "https://graph.microsoft.com/",
            "http://127.0.0.1:4100/_sharepoint/contoso.sharepoint.com",
            "https://contoso.sharepoint.com/sites/x/",
            "https://user:pw@example.com:8443/api",
            "https://example.com/api?x=1",
            "https://bücher.example/v",
        ];
        let paths = [
            "/v1.0/me",
            "",
            "/",
            "/v1.0/me/drive/root:/a b.txt:/content",
            "/v1.0/x%20y/%2F",
            "/a:b",
            "//evil.com/x",
            "/\\evil.com/x",
            "/@evil.com",
            "/v1.0/ü/\"<>`{}|^",
            "/v1.0//x",
            "/v1.0/me\\drive",
        ];
        let queries = [
            None,
            Some(""),
            Some("a=1&b=%20"),
            Some("$filter=name eq 'x'&$select=id,name"),
            Some("x=#frag"),
        ];
        for base in bases {
            for path in paths {
                for query in queries {
                    let b = base.trim_end_matches('/');
                    let mut whole = format!("{b}/{}", path.trim_start_matches('/'));
                    if let Some(q) = query {
                        whole.push('?');
                        whole.push_str(q);
                    }
                    let want = Url::parse(&whole).ok().filter(|u| {
                        let bu = Url::parse(b).unwrap();
                        u.scheme() == bu.scheme()
                            && u.host() == bu.host()
                            && u.port_or_known_default() == bu.port_or_known_default()
                            && u.path().starts_with(bu.path().trim_end_matches('/'))
                    });
                    let got = under(base, path, query).ok();
                    assert_eq!(got, want, "{base} + {path} + {query:?}");
                }
            }
        }
    }
}
