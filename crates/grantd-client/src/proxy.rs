//! The proxy (`/proxy/…`): a Graph (or SharePoint) call made with a connection's token, which
//! grantd injects. The request body may be bytes, JSON, a `Stream` of `Bytes` or an `AsyncRead`,
//! streamed up as it is produced; the response body is a `Stream` of `Bytes`
//! ([`ProxyResponse::bytes_stream`]) or an `AsyncRead` ([`ProxyResponse::into_async_read`]), so
//! a large download never sits in memory.
//!
//! Options map to the headers grantd's proxy reads: `Connection-Id`, `Provider-Config-Key`,
//! `Retries`, `Retry-On`, `Base-Url-Override`, `Grantd-Resource`, `Grantd-Follow-Redirects`,
//! `Grantd-Pre-Authenticated`, and `Nango-Proxy-<Name>` for headers sent upstream as `<Name>`.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncRead;
use url::Url;

use crate::client::{GrantdClient, is_idempotent, retry_after};
use crate::error::{self, Error};

/// Largest error body [`ProxyResponse::error_for_status`] reads to find an error code.
const MAX_ERROR_BODY: usize = 64 * 1024;

impl GrantdClient {
    /// Calls through the proxy for one connection:
    /// `grantd.proxy("one-drive", &connection_id).get("/v1.0/me/drives").send().await?`.
    pub fn proxy(
        &self,
        provider_config_key: impl Into<String>,
        connection_id: impl Into<String>,
    ) -> Proxy {
        Proxy {
            client: self.clone(),
            key: provider_config_key.into(),
            connection_id: connection_id.into(),
        }
    }
}

/// The proxy for one connection; makes [`ProxyRequest`]s.
#[derive(Debug, Clone)]
pub struct Proxy {
    client: GrantdClient,
    key: String,
    connection_id: String,
}

impl Proxy {
    /// A request for `path` (the provider's path and query, e.g. `/v1.0/me/drive/root/children?$top=10`).
    pub fn request(&self, method: Method, path: &str) -> ProxyRequest {
        let mut headers = HeaderMap::new();
        let mut error = None;
        for (name, value) in [
            ("connection-id", &self.connection_id),
            ("provider-config-key", &self.key),
        ] {
            match HeaderValue::from_str(value) {
                Ok(v) => {
                    headers.insert(HeaderName::from_static(name), v);
                }
                Err(_) => {
                    error = Some(Error::InvalidInput(format!("{name} is not a header value")))
                }
            }
        }
        let url = Url::parse(&format!(
            "{}proxy/{}",
            self.client.inner.base,
            path.trim_start_matches('/')
        ));
        let url = match url {
            Ok(u) => Some(u),
            Err(e) => {
                error.get_or_insert(Error::InvalidInput(format!("proxy path {path:?}: {e}")));
                None
            }
        };
        ProxyRequest {
            client: self.client.clone(),
            method,
            url,
            headers,
            body: ProxyBody::Empty,
            error,
        }
    }

    pub fn get(&self, path: &str) -> ProxyRequest {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> ProxyRequest {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> ProxyRequest {
        self.request(Method::PUT, path)
    }

    pub fn patch(&self, path: &str) -> ProxyRequest {
        self.request(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> ProxyRequest {
        self.request(Method::DELETE, path)
    }
}

enum ProxyBody {
    Empty,
    /// Buffered: can be sent again on a retry.
    Bytes(Bytes),
    /// Streamed: sent once.
    Stream(reqwest::Body),
}

/// One proxied request being built. Nothing is sent until [`send`](ProxyRequest::send).
#[must_use]
pub struct ProxyRequest {
    client: GrantdClient,
    method: Method,
    url: Option<Url>,
    headers: HeaderMap,
    body: ProxyBody,
    /// The first invalid input, reported by `send`.
    error: Option<Error>,
}

impl fmt::Debug for ProxyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyRequest")
            .field("method", &self.method)
            .field("path", &self.url.as_ref().map(Url::path))
            .finish_non_exhaustive()
    }
}

impl ProxyRequest {
    fn set(mut self, name: HeaderName, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(v) => {
                self.headers.insert(name, v);
            }
            Err(_) => {
                self.error.get_or_insert(Error::InvalidInput(format!(
                    "the value of {name} is not a header value"
                )));
            }
        }
        self
    }

    /// A header grantd forwards as it is (`Content-Type`, `Range`, `If-Match`, `Accept`,
    /// `Prefer`…) or reads itself.
    pub fn header(self, name: &str, value: &str) -> Self {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => self.set(n, value),
            Err(_) => self.invalid(format!("{name:?} is not a header name")),
        }
    }

    /// A header for the provider, sent as `Nango-Proxy-<name>` and forwarded as `<name>`.
    pub fn upstream_header(self, name: &str, value: &str) -> Self {
        self.header(&format!("nango-proxy-{name}"), value)
    }

    fn invalid(mut self, msg: String) -> Self {
        self.error.get_or_insert(Error::InvalidInput(msg));
        self
    }

    /// Adds query parameters (encoded the `application/x-www-form-urlencoded` way).
    pub fn query<T: Serialize + ?Sized>(mut self, query: &T) -> Self {
        let Some(url) = self.url.as_mut() else {
            return self;
        };
        let mut pairs = url.query_pairs_mut();
        if let Err(e) = query.serialize(serde_urlencoded::Serializer::new(&mut pairs)) {
            drop(pairs);
            return self.invalid(format!("query: {e}"));
        }
        drop(pairs);
        self
    }

    /// How often grantd retries upstream (`Retries`, at most 10): throttling and 5xx answers
    /// and network errors, honouring the upstream's `Retry-After`.
    pub fn retries(self, n: u32) -> Self {
        self.set(HeaderName::from_static("retries"), &n.to_string())
    }

    /// Further upstream statuses grantd retries (`Retry-On`).
    pub fn retry_on(self, statuses: &[u16]) -> Self {
        let list: Vec<String> = statuses.iter().map(u16::to_string).collect();
        self.set(HeaderName::from_static("retry-on"), &list.join(","))
    }

    /// Another base URL than the provider's (`Base-Url-Override`; only hosts grantd allows).
    pub fn base_url_override(self, base: &str) -> Self {
        self.set(HeaderName::from_static("base-url-override"), base)
    }

    /// Calls the SharePoint REST API with the connection's SharePoint token
    /// (`Grantd-Resource: sharepoint`) instead of Graph.
    pub fn sharepoint(self) -> Self {
        self.set(HeaderName::from_static("grantd-resource"), "sharepoint")
    }

    /// Lets grantd follow upstream redirects (`Grantd-Follow-Redirects`); by default a redirect
    /// (e.g. Graph's 302 to a download URL) comes back to the caller.
    pub fn follow_redirects(self, follow: bool) -> Self {
        self.set(
            HeaderName::from_static("grantd-follow-redirects"),
            if follow { "true" } else { "false" },
        )
    }

    /// The URL carries its own authorization (Graph upload-session URLs): grantd sends no
    /// `Authorization` header (`Grantd-Pre-Authenticated`).
    pub fn pre_authenticated(self) -> Self {
        self.set(HeaderName::from_static("grantd-pre-authenticated"), "true")
    }

    /// A JSON body (and `Content-Type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(b) => {
                self.body = ProxyBody::Bytes(b.into());
                self.set(CONTENT_TYPE, "application/json")
            }
            Err(e) => {
                self.error.get_or_insert(Error::Serialize(e));
                self
            }
        }
    }

    /// A buffered body (set `Content-Type` with [`header`](Self::header)).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = ProxyBody::Bytes(body.into());
        self
    }

    /// A body streamed up as `stream` yields it. Sent with chunked encoding unless
    /// [`content_length`](Self::content_length) is given (Graph's upload sessions want it).
    /// A streamed request is never retried by the client.
    pub fn body_stream<S, E>(mut self, stream: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        self.body = ProxyBody::Stream(reqwest::Body::wrap_stream(stream));
        self
    }

    /// A body read from `reader` and streamed up (e.g. a `tokio::fs::File`).
    pub fn body_reader<R: AsyncRead + Send + 'static>(self, reader: R) -> Self {
        self.body_stream(tokio_util::io::ReaderStream::new(reader))
    }

    /// The streamed body's length, sent as `Content-Length`.
    pub fn content_length(self, len: u64) -> Self {
        self.set(CONTENT_LENGTH, &len.to_string())
    }

    /// Sends the request. Any HTTP status is a response (the upstream's errors pass through);
    /// see [`ProxyResponse::error_for_status`]. Idempotent requests without a streamed body
    /// are retried by the client's [`RetryPolicy`](crate::RetryPolicy) on 429/502/503/504.
    pub async fn send(self) -> Result<ProxyResponse, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let url = self.url.expect("a URL unless an error was recorded");
        let (replayable, mut stream) = match self.body {
            ProxyBody::Empty => (Some(None), None),
            ProxyBody::Bytes(b) => (Some(Some(b)), None),
            ProxyBody::Stream(s) => (None, Some(s)),
        };
        let retry = replayable.is_some() && is_idempotent(&self.method);
        let mut attempt = 0;
        loop {
            let mut req = self
                .client
                .request(self.method.clone(), url.clone())
                .headers(self.headers.clone());
            match (&replayable, stream.take()) {
                (Some(Some(b)), _) => req = req.body(b.clone()),
                (_, Some(s)) => req = req.body(s),
                _ => {}
            }
            let result = req.send().await;
            let policy = &self.client.inner.retry;
            let wait = match &result {
                _ if !retry => None,
                Ok(r) => policy.wait(attempt, Some(r.status()), retry_after(r.headers())),
                Err(e) if e.is_connect() || e.is_timeout() => policy.wait(attempt, None, None),
                Err(_) => None,
            };
            match wait {
                Some(w) => {
                    tokio::time::sleep(w).await;
                    attempt += 1;
                }
                None => {
                    return result
                        .map(|inner| ProxyResponse { inner })
                        .map_err(Error::Transport);
                }
            }
        }
    }
}

/// A proxied answer: the upstream's status, headers and streamed body, or grantd's own error.
#[derive(Debug)]
pub struct ProxyResponse {
    inner: reqwest::Response,
}

impl ProxyResponse {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The body's length when the answer says it.
    pub fn content_length(&self) -> Option<u64> {
        self.inner.content_length()
    }

    /// `Retry-After` on the answer, as a wait.
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(self.inner.headers())
    }

    /// `Ok(self)` for a 2xx or 3xx answer, else the error: grantd's (and Graph's, which use
    /// the same envelope) `{"error":{"code","message"}}` as [`Error::Api`], anything else as
    /// [`Error::UnexpectedStatus`]. Reads at most 64 KiB of an error body.
    pub async fn error_for_status(self) -> Result<Self, Error> {
        let status = self.status();
        if status.is_success() || status.is_redirection() {
            return Ok(self);
        }
        let retry_after = self.retry_after();
        let mut body = Vec::new();
        let mut stream = self.inner.bytes_stream();
        while let Some(chunk) = stream.try_next().await? {
            let room = MAX_ERROR_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == MAX_ERROR_BODY {
                break;
            }
        }
        Err(error::from_body(status, retry_after, &body))
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        Ok(self.inner.bytes().await?)
    }

    /// The whole body as text (decoded per the `Content-Type` charset).
    pub async fn text(self) -> Result<String, Error> {
        Ok(self.inner.text().await?)
    }

    /// A 2xx body decoded as JSON; an error answer is returned as in
    /// [`error_for_status`](Self::error_for_status).
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let bytes = self.error_for_status().await?.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            what: "proxy",
            source,
        })
    }

    /// The body as it arrives.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static {
        self.inner.bytes_stream().map_err(Error::Transport)
    }

    /// The body as an `AsyncRead` (e.g. for `tokio::io::copy` into a file).
    pub fn into_async_read(self) -> impl AsyncRead + Send + Unpin + 'static {
        tokio_util::io::StreamReader::new(self.inner.bytes_stream().map_err(io::Error::other))
    }

    /// The underlying `reqwest::Response`.
    pub fn into_inner(self) -> reqwest::Response {
        self.inner
    }
}
