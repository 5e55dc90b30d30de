//! The outgoing side of `/proxy`: the request body (buffered when small enough to replay,
//! otherwise streamed with a size limit), sending one attempt, following redirects when asked
//! (never sending the Authorization header to another host, every hop through the SSRF guard),
//! and streaming the upstream response back with hop-by-hop headers dropped.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use url::Url;

use super::request::{MAX_BODY_BYTES, Options, REPLAYABLE_BODY_BYTES};
use crate::edge::ApiError;
use crate::outbound::{
    Guard, IdleTimeout, ProxyBody, ProxyClient, ProxyError, ProxyResponse, is_refused,
};

/// Most redirects followed for one call.
const MAX_REDIRECTS: usize = 5;
/// Headers kept on a redirect to another host when the caller did not ask to forward its own.
const KEPT_ACROSS_HOSTS: &[&str] = &["range", "if-range", "if-none-match", "if-match", "accept"];

/// The body to send upstream.
pub enum UpBody {
    None,
    /// Small enough to hold, so the request can be replayed.
    Buffered(Bytes),
    /// Streamed once; taken by the first attempt.
    Stream(Option<Body>),
}

impl UpBody {
    /// Buffers bodies up to `REPLAYABLE_BODY_BYTES` with a known length; streams the rest.
    pub async fn prepare(opts: &Options, body: Body) -> Result<UpBody, ApiError> {
        if !opts.has_body {
            return Ok(UpBody::None);
        }
        match opts.content_length {
            Some(n) if n <= REPLAYABLE_BODY_BYTES => {
                let limit = usize::try_from(n).unwrap_or(usize::MAX);
                let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
                    ApiError::validation(
                        "invalid_body",
                        &[],
                        "The request body does not match its Content-Length",
                    )
                })?;
                Ok(UpBody::Buffered(bytes))
            }
            _ => Ok(UpBody::Stream(Some(body))),
        }
    }

    /// The bytes to resend on a 307/308 redirect (buffered bodies only).
    pub fn replay(&self) -> Option<Bytes> {
        match self {
            UpBody::Buffered(b) => Some(b.clone()),
            _ => None,
        }
    }

    pub fn replayable(&self) -> bool {
        !matches!(self, UpBody::Stream(_))
    }

    /// The body of the next attempt (a streamed body only once: empty after).
    fn take(&mut self) -> ProxyBody {
        match self {
            UpBody::None => ProxyBody::Empty,
            UpBody::Buffered(b) => ProxyBody::Full(Some(b.clone())),
            UpBody::Stream(s) => s
                .take()
                .map_or(ProxyBody::Empty, |b| ProxyBody::Stream(b, MAX_BODY_BYTES)),
        }
    }
}

/// Why one attempt got no response.
pub enum SendError {
    Timeout,
    Refused,
    Network(ProxyError),
}

static ANY: HeaderValue = HeaderValue::from_static("*/*");

/// Sends one attempt — the one point where a proxied request leaves for the upstream. `deadline`
/// bounds the wait for the response head (replayable calls); a streamed upload waits at most
/// the client's read timeout for it instead, since it may be large.
pub async fn send(
    client: &ProxyClient,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    token: Option<&HeaderValue>,
    body: &mut UpBody,
    deadline: Option<Instant>,
) -> Result<ProxyResponse, SendError> {
    let mut req = http::Request::new(body.take());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri.clone();
    let h = req.headers_mut();
    *h = headers.clone();
    if let Some(t) = token {
        h.insert(header::AUTHORIZATION, t.clone());
    }
    if !h.contains_key(header::ACCEPT) {
        h.insert(header::ACCEPT, ANY.clone());
    }
    let wait = match deadline {
        Some(d) => d.saturating_duration_since(Instant::now()),
        None => ProxyClient::READ_TIMEOUT,
    };
    match tokio::time::timeout(wait, client.send(req)).await {
        Err(_) => Err(SendError::Timeout),
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) if is_refused(&e) => Err(SendError::Refused),
        Ok(Err(e)) if timed_out(&e) => Err(SendError::Timeout),
        Ok(Err(e)) => Err(SendError::Network(e)),
    }
}

/// Whether a client error was a timeout (connecting).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Headers that describe a request body (the Fetch standard's list plus the framing headers).
const BODY_HEADERS: &[HeaderName] = &[
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LOCATION,
];

/// The next hop of a redirect: 307/308 keep the method and resend the (replayable) body;
/// 301/302/303 become a GET (HEAD stays HEAD) without a body or any header describing one.
/// Framing is re-derived for the hop: `Content-Length` from the body actually sent, never a
/// stale one (an upstream would wait for a body that never comes).
fn next_hop(
    status: u16,
    method: &Method,
    body: Option<&Bytes>,
    headers: &mut HeaderMap,
) -> (Method, UpBody) {
    let keep = matches!(status, 307 | 308);
    let method = if keep || *method == Method::HEAD {
        method.clone()
    } else {
        Method::GET
    };
    let body = match body {
        Some(b) if keep => UpBody::Buffered(b.clone()),
        _ => UpBody::None,
    };
    headers.remove(header::TRANSFER_ENCODING);
    match &body {
        UpBody::Buffered(b) => {
            headers.insert(header::CONTENT_LENGTH, b.len().into());
        }
        _ if keep => {
            headers.remove(header::CONTENT_LENGTH);
        }
        _ => {
            for h in BODY_HEADERS {
                headers.remove(h);
            }
        }
    }
    (method, body)
}

/// Follows `resp`'s redirects (replayable requests only: `body` is none or buffered). The token
/// goes only to the original origin; the caller's headers go to other origins only with
/// `Forward-Headers-On-Redirect: true`.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    client: &ProxyClient,
    guard: &Guard,
    opts: &Options,
    mut method: Method,
    origin: &Url,
    headers: &HeaderMap,
    token: Option<&HeaderValue>,
    mut resp: ProxyResponse,
    deadline: Instant,
    body: Option<Bytes>,
) -> Result<ProxyResponse, Response> {
    let mut current = origin.clone();
    for _ in 0..MAX_REDIRECTS {
        let status = resp.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(resp);
        }
        let Some(location) = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(resp);
        };
        let invalid = || refused("The upstream redirected to an invalid URL").into_response();
        let next = current.join(location).map_err(|_| invalid())?;
        let next_uri = Uri::try_from(next.as_str()).map_err(|_| invalid())?;
        if let Err(e) = guard.check(&next).await {
            crate::metrics::proxy_refused("redirect");
            tracing::warn!(reason = %e, "refused to follow a proxied redirect");
            return Err(refused(&format!("Refused to follow the redirect: {e}")).into_response());
        }
        let same_origin = next.origin() == origin.origin();
        let mut hop_headers = if same_origin || opts.forward_headers_on_redirect {
            headers.clone()
        } else {
            let mut h = HeaderMap::new();
            for (n, v) in headers {
                if KEPT_ACROSS_HOSTS.contains(&n.as_str()) {
                    h.append(n.clone(), v.clone());
                }
            }
            h
        };
        let (hop_method, mut hop_body) = next_hop(status, &method, body.as_ref(), &mut hop_headers);
        method = hop_method;
        resp = match send(
            client,
            &method,
            &next_uri,
            &hop_headers,
            token.filter(|_| same_origin),
            &mut hop_body,
            Some(deadline),
        )
        .await
        {
            Ok(r) => r,
            Err(SendError::Refused) => {
                crate::metrics::proxy_refused("redirect");
                return Err(
                    refused("Refused to follow the redirect to a non-public address")
                        .into_response(),
                );
            }
            Err(SendError::Timeout) => return Err(no_response(&method, true)),
            Err(SendError::Network(_)) => return Err(no_response(&method, false)),
        };
        crate::metrics::proxy_upstream(resp.status().as_u16(), Duration::ZERO);
        current = next;
    }
    Ok(resp)
}

fn refused(msg: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "redirect_not_allowed",
        msg.to_owned(),
    )
}

/// Nango's answer when no upstream response came: `{message, code, status, method}`.
pub fn no_response(method: &Method, timeout: bool) -> Response {
    let status = if timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    (
        status,
        axum::Json(grantd_api::proxy::ProxyFailure {
            message: if timeout {
                "The upstream API did not answer in time"
            } else {
                "The upstream API could not be reached"
            }
            .into(),
            code: if timeout {
                "timeout"
            } else {
                "upstream_unreachable"
            }
            .into(),
            status: status.as_u16(),
            method: method.as_str().to_owned(),
        }),
    )
        .into_response()
}

/// Response headers `stream_back` drops: `HOP_BY_HOP` but `Content-Length` (the body keeps its
/// length), as names built once.
static DROPPED: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

/// The upstream response, streamed: status and headers as they came (minus hop-by-hop and the
/// headers its `Connection` names), body chunk by chunk. The header map and the body are moved
/// over as they are (hyper and axum share the `http` types), not rebuilt.
pub fn stream_back(resp: ProxyResponse) -> Response {
    let (mut parts, body) = resp.into_parts();
    drop_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(IdleTimeout::new(body)))
}

/// Removes the hop-by-hop headers and those the `Connection` header names. Response headers are
/// few: one pass over them finds which of `DROPPED` are there (comparing names, no hashing), and
/// only those are removed.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; DROPPED.len()];
    for name in headers.keys() {
        if let Some(i) = DROPPED.iter().position(|d| d == name) {
            present[i] = true;
        }
    }
    // `DROPPED[0]` is `Connection`. Usually it names nothing beyond `keep-alive`: then removing
    // what `present` found is all, without collecting names.
    if present[0] {
        let names_more = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter(|v| !v.as_bytes().eq_ignore_ascii_case(b"keep-alive"))
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|t| !t.is_empty() && !DROPPED.iter().any(|d| t.eq_ignore_ascii_case(d.as_str())));
        if names_more {
            let named: Vec<HeaderName> = headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
                .collect();
            for name in named {
                headers.remove(name);
            }
        }
    }
    for (name, there) in DROPPED.iter().zip(present) {
        if there {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::HOP_BY_HOP;
    use super::*;

    #[test]
    fn dropped_response_headers_are_the_hop_by_hop_ones_but_content_length() {
        let dropped: Vec<&str> = DROPPED.iter().map(HeaderName::as_str).collect();
        let want: Vec<&str> = HOP_BY_HOP
            .iter()
            .copied()
            .filter(|h| *h != "content-length")
            .collect();
        assert_eq!(dropped, want);
    }

    #[test]
    fn stream_back_drops_hop_by_hop_and_connection_named_headers() {
        let resp = |conn: &str| {
            let mut b = http::Response::builder()
                .header("content-length", "2")
                .header("keep-alive", "timeout=5")
                .header("transfer-encoding", "chunked")
                .header("x-private", "1")
                .header("close", "odd")
                .header("x-kept", "1");
            if !conn.is_empty() {
                b = b.header("connection", conn);
            }
            b.body(()).unwrap()
        };
        let kept = |conn: &str| {
            let (parts, ()) = resp(conn).into_parts();
            let mut headers = parts.headers;
            super::drop_hop_by_hop(&mut headers);
            let mut names: Vec<String> = headers.keys().map(|n| n.to_string()).collect();
            names.sort();
            names
        };
        assert_eq!(kept(""), ["close", "content-length", "x-kept", "x-private"]);
        assert_eq!(
            kept("keep-alive"),
            ["close", "content-length", "x-kept", "x-private"]
        );
        assert_eq!(kept("close"), ["content-length", "x-kept", "x-private"]);
        assert_eq!(
            kept("Keep-Alive, X-Private"),
            ["close", "content-length", "x-kept"]
        );
        assert_eq!(kept("content-length"), ["close", "x-kept", "x-private"]);
    }
}
