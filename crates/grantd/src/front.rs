//! The front door: what every request goes through before its handler, as one `async fn` per
//! request (`serve`) instead of a stack of tower layers around axum's router.
//!
//! 1. **Tracing** — the `request` span (debug level, target `grantd::server`) and tower-http's
//!    `TraceLayer` events. At the default level none of them is enabled: then only the
//!    `TraceLayer`'s one visible behaviour is kept, its `ERROR response failed` event for a 5xx
//!    answer (same target, fields and text). As soon as the span or any of tower-http's debug
//!    events is enabled, the request goes through tower-http's own `TraceLayer`, as before.
//! 2. **The gate** (`edge::gate`): request-target check and wrong-API-key throttling, with the
//!    client address this connection's service holds (`per_peer`).
//! 3. **Dispatch**: the two hot routes — `/proxy/{*path}` (any method but `HEAD`) and
//!    `GET /connections/{id}` — go straight to their handlers with the same extractor checks in
//!    the same order, recorded in the metrics under the same route labels; everything else
//!    (including those paths' `HEAD`, `/connections/metadata`, paths that do not match) goes to
//!    the router, which also answers 404/405, with the client address in the request's
//!    extensions (`ConnectInfo`, read by `edge::ws_limits::client_addr`).
//!
//! Why: the tower stack (trace → gate → router → per-route metrics layer → handler) cost ~11k
//! instructions per proxied request in nested futures, boxed route services and handler
//! futures, the matched path and URL parameters in the request's extensions, and the traced
//! response body (bench/RESULTS.md, branch `lean`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, ServiceExt};

use crate::edge::{AppState, SecretKey};

/// The route labels of the directly dispatched routes (as the router's `MatchedPath` has them).
static PROXY_ROUTE: crate::metrics::Route = crate::metrics::Route::new("/proxy/{*path}");
static CONNECTION_ROUTE: crate::metrics::Route = crate::metrics::Route::new("/connections/{id}");

struct Shared {
    state: AppState,
    router: Router,
}

/// The server's service, made once; `per_peer` gives each connection its own.
#[derive(Clone)]
pub struct Front(Arc<Shared>);

impl Front {
    pub fn new(state: AppState, router: Router) -> Front {
        Front(Arc::new(Shared { state, router }))
    }

    /// The service for one connection from `peer`.
    pub fn per_peer(
        self,
        peer: SocketAddr,
    ) -> impl tower::Service<
        axum::http::Request<hyper::body::Incoming>,
        Response = Response,
        Error = Infallible,
        Future = impl Future<Output = Result<Response, Infallible>> + Send + 'static,
    > + Clone
    + Send
    + 'static {
        let shared = self.0;
        tower::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
            let (parts, body) = req.into_parts();
            let (body, ended) = Tracked::wrap(body);
            let answer = serve(
                Arc::clone(&shared),
                Some(peer),
                Request::from_parts(parts, body),
            );
            async move {
                let mut r = answer.await?;
                if ended.is_some_and(|e| !e.load(Ordering::Acquire)) {
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok(r)
            }
        })
    }
}

/// A request body that notes when it has been read to its end. An answer given before that (an
/// error found in the headers, a body over the limit, an upstream that answered early) leaves
/// the rest unread, and hyper then closes the connection after the answer: the answer says
/// `Connection: close` so that a keep-alive client does not send its next request into the
/// closing socket (it did, now and then, as a broken pipe: tests/it/abuse.rs).
struct Tracked {
    inner: hyper::body::Incoming,
    ended: Arc<AtomicBool>,
}

impl Tracked {
    /// The body, and its flag unless it is empty (a `GET`'s: nothing to track, nothing to
    /// allocate).
    fn wrap(inner: hyper::body::Incoming) -> (Body, Option<Arc<AtomicBool>>) {
        if http_body::Body::is_end_stream(&inner) {
            return (Body::new(inner), None);
        }
        let ended = Arc::new(AtomicBool::new(false));
        let body = Tracked {
            inner,
            ended: ended.clone(),
        };
        (Body::new(body), Some(ended))
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Readers that know the length (hyper's client, forwarding an upload) stop on this
        // instead of polling for the end.
        let end = self.inner.is_end_stream();
        if end {
            self.ended.store(true, Ordering::Release);
        }
        end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One request, start to answer.
async fn serve(
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    req: Request,
) -> Result<Response, Infallible> {
    // Only method and path: query strings may carry codes or session tokens. At debug level:
    // formatting its fields cost ~6k instructions per request at the default `info`, where
    // nothing reads them; `GRANTD_LOG=info,grantd::server=debug` turns it on.
    let span = tracing::debug_span!(
        target: "grantd::server",
        "request",
        method = %req.method(),
        path = %req.uri().path()
    );
    if span.is_disabled() && !tower_http_events() {
        let start = Instant::now();
        let r = gated(&shared, peer, start, req).await;
        if r.status().is_server_error() {
            failed(r.status(), start.elapsed());
        }
        return Ok(r);
    }
    // Traced: tower-http's layer itself, with the span made above.
    let mut span = Some(span);
    let traced = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(move |_: &Request| span.take().unwrap_or_else(tracing::Span::none))
        .layer(tower::service_fn(|req: Request| {
            let shared = &shared;
            async move { Ok::<_, Infallible>(gated(shared, peer, Instant::now(), req).await) }
        }));
    let r = traced.oneshot(req).await?;
    Ok(r.map(Body::new))
}

/// Whether any of the events tower-http's `TraceLayer` emits below `ERROR` would be recorded
/// (all are at `DEBUG`, under these targets). At the default level the global maximum level
/// answers each check at once.
fn tower_http_events() -> bool {
    tracing::enabled!(target: "tower_http::trace::on_request", tracing::Level::DEBUG)
        || tracing::enabled!(target: "tower_http::trace::on_response", tracing::Level::DEBUG)
        || tracing::enabled!(target: "tower_http::trace::on_eos", tracing::Level::DEBUG)
}

/// tower-http's `DefaultOnFailure` for a 5xx answer, to the letter: the same target (so
/// `tower_http=…` filters still govern it), level, message and fields.
#[cold]
fn failed(status: StatusCode, latency: Duration) {
    let classification = tower_http::classify::ServerErrorsFailureClass::StatusCode(status);
    tracing::error!(
        target: "tower_http::trace::on_failure",
        classification = %classification,
        latency = %format_args!("{} ms", latency.as_millis()),
        "response failed"
    );
}

/// The gate around dispatching.
async fn gated(
    shared: &Shared,
    peer: Option<SocketAddr>,
    start: Instant,
    req: Request,
) -> Response {
    let st = &shared.state;
    let passed = match crate::edge::gate::before(st, peer.map(|p| p.ip()), &req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let r = dispatch(shared, peer, start, req).await;
    crate::edge::gate::after(st, passed, &r);
    r
}

/// Which handler a request goes to without the router.
enum Hot {
    Proxy,
    /// The percent-decoded `{id}`.
    Connection(String),
}

fn hot(method: &Method, path: &str) -> Option<Hot> {
    if let Some(rest) = path.strip_prefix("/proxy/") {
        // `{*path}` matches one character or more; `HEAD` goes through the router, which sends
        // the head of the `GET` answer without its body.
        return (!rest.is_empty() && *method != Method::HEAD).then_some(Hot::Proxy);
    }
    let id = path.strip_prefix("/connections/")?;
    // One non-empty segment, and not the static route `/connections/metadata` (the router
    // answers its GET with 405). Decoded as axum's `Path` does; not UTF-8 (the gate refuses
    // that first anyway) is left to the router.
    if *method != Method::GET || id.is_empty() || id.contains('/') || id == "metadata" {
        return None;
    }
    let id = if id.contains('%') {
        String::from_utf8(crate::validate::percent_decoded(id)).ok()?
    } else {
        id.to_owned()
    };
    Some(Hot::Connection(id))
}

async fn dispatch(
    shared: &Shared,
    peer: Option<SocketAddr>,
    start: Instant,
    mut req: Request,
) -> Response {
    let st = &shared.state;
    let (route, method, r) = match hot(req.method(), req.uri().path()) {
        Some(Hot::Proxy) => {
            let method = req.method().clone();
            (&PROXY_ROUTE, method, proxy(st, req).await)
        }
        Some(Hot::Connection(id)) => (
            &CONNECTION_ROUTE,
            Method::GET,
            connection(st, id, req).await,
        ),
        None => {
            if let Some(peer) = peer {
                req.extensions_mut().insert(ConnectInfo(peer));
            }
            return match shared.router.clone().oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
        }
    };
    // As `metrics::TrackLayer` records the routed requests (the time counts from the gate).
    route.request(method.as_str(), r.status().as_u16(), start.elapsed());
    r
}

/// `/proxy/{*path}`: `proxy::handle`'s extractors, `State` and `SecretKey`.
async fn proxy(st: &AppState, req: Request) -> Response {
    let key = match SecretKey::check(req.headers(), st) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    crate::proxy::handle(State(st.clone()), key, req)
        .await
        .into_response()
}

/// `GET /connections/{id}`: `api::connections::show`'s extractors in their order — `State`,
/// `SecretKey`, `Path` (decoded by `hot`), then the `Uri`, whose query `show` reads itself —
/// and the body dropped unread, as axum does.
async fn connection(st: &AppState, id: String, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let key = match SecretKey::check(&parts.headers, st) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    drop(body);
    crate::api::connections::show(State(st.clone()), key, Path(id), parts.uri)
        .await
        .into_response()
}
