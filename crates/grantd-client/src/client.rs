//! [`GrantdClient`] and its builder, and the transport every API group uses: the secret key as
//! a bearer token, JSON in and out, error answers read into [`Error`], and retries of idempotent
//! calls on 429, 502, 503, 504 and connection failures, waiting what the server's `Retry-After`
//! says (else an exponential backoff), within a cap.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{self, Error};

/// The client's default `User-Agent`.
pub const USER_AGENT: &str = concat!("grantd-client-rust/", env!("CARGO_PKG_VERSION"));

/// An async client for one grantd instance. Cheap to clone (the connection pool is shared).
///
/// Calls are grouped as on the API: integrations and providers, connect sessions, connections
/// (credentials, metadata), records and syncs, and [`proxy`](GrantdClient::proxy).
#[derive(Clone)]
pub struct GrantdClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) secret_key: SecretString,
    pub(crate) retry: RetryPolicy,
}

impl fmt::Debug for GrantdClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantdClient")
            .field("base", &self.inner.base.as_str())
            .field("secret_key", &"***")
            .field("retry", &self.inner.retry)
            .finish()
    }
}

/// When and how long idempotent calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further attempts after the first (0 turns retries off).
    pub max_retries: u32,
    /// The first backoff when the server does not say how long to wait; doubled per attempt.
    pub initial_backoff: Duration,
    /// The longest wait between attempts. An answer whose `Retry-After` asks for more is
    /// returned to the caller instead (as an error carrying `retry_after`).
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(250),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Default::default()
        }
    }

    /// How long to wait before retry number `attempt` (0-based) after an answer with
    /// `status` and `retry_after`, or `None` when the call must not be retried.
    pub(crate) fn wait(
        &self,
        attempt: u32,
        status: Option<StatusCode>,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempt >= self.max_retries {
            return None;
        }
        if let Some(s) = status {
            let retryable = matches!(s.as_u16(), 429 | 502 | 503 | 504);
            if !retryable {
                return None;
            }
        }
        let wait = match retry_after {
            Some(d) => d,
            None => self
                .initial_backoff
                .saturating_mul(1u32 << attempt.min(16))
                .min(self.max_wait),
        };
        (wait <= self.max_wait).then_some(wait)
    }
}

/// Configures a [`GrantdClient`]: timeouts, user agent, retries, or your own `reqwest::Client`.
#[must_use]
pub struct GrantdClientBuilder {
    url: String,
    secret_key: SecretString,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    user_agent: String,
    retry: RetryPolicy,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for GrantdClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantdClientBuilder")
            .field("url", &self.url)
            .field("secret_key", &"***")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("user_agent", &self.user_agent)
            .field("retry", &self.retry)
            .finish()
    }
}

impl GrantdClientBuilder {
    /// A whole-request timeout (none by default, so long proxied downloads are not cut; the
    /// connect timeout still applies). It also bounds reading a streamed body.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long to wait for the TCP and TLS handshake (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` header (default `grantd-client-rust/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Retries of idempotent calls (default: 2 retries, honouring `Retry-After` up to 30 s).
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Shorthand for the number of retries in the [`RetryPolicy`].
    pub fn max_retries(mut self, n: u32) -> Self {
        self.retry.max_retries = n;
        self
    }

    /// Uses this `reqwest::Client` (its own timeouts, proxy, TLS roots…); `timeout`,
    /// `connect_timeout` and `user_agent` are then ignored.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    pub fn build(self) -> Result<GrantdClient, Error> {
        let mut base = Url::parse(self.url.trim_end_matches('/'))
            .map_err(|e| Error::InvalidInput(format!("grantd URL {:?}: {e}", self.url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::InvalidInput(format!(
                "grantd URL {:?} must be http(s)",
                self.url
            )));
        }
        // Paths are appended to the base, so it ends with exactly one '/'.
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        if self.secret_key.expose_secret().trim().is_empty() {
            return Err(Error::InvalidInput("the secret key is empty".into()));
        }
        let http = match self.http {
            Some(c) => c,
            None => {
                let mut b = reqwest::Client::builder()
                    .user_agent(self.user_agent)
                    .connect_timeout(self.connect_timeout)
                    // grantd's redirects (a proxied 302 to a download URL) go to the caller.
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(t) = self.timeout {
                    b = b.timeout(t);
                }
                b.build()?
            }
        };
        Ok(GrantdClient {
            inner: Arc::new(Inner {
                http,
                base,
                secret_key: self.secret_key,
                retry: self.retry,
            }),
        })
    }
}

impl GrantdClient {
    /// A client for the grantd at `url` (e.g. `http://localhost:3003`) with its secret key,
    /// and the default settings.
    pub fn new(url: impl AsRef<str>, secret_key: impl Into<String>) -> Result<Self, Error> {
        Self::builder(url, secret_key).build()
    }

    pub fn builder(url: impl AsRef<str>, secret_key: impl Into<String>) -> GrantdClientBuilder {
        GrantdClientBuilder {
            url: url.as_ref().to_owned(),
            secret_key: SecretString::from(secret_key.into()),
            timeout: None,
            connect_timeout: Duration::from_secs(10),
            user_agent: USER_AGENT.to_owned(),
            retry: RetryPolicy::default(),
            http: None,
        }
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// `base + path` where `segments` are percent-encoded path segments.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        {
            let mut s = url
                .path_segments_mut()
                .expect("the base URL was checked to be a base");
            s.pop_if_empty();
            s.extend(segments);
        }
        url
    }

    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.inner
            .http
            .request(method, url)
            .bearer_auth(self.inner.secret_key.expose_secret())
    }

    /// Sends a JSON API call and decodes a success answer as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        what: &'static str,
        method: Method,
        url: Url,
        query: Option<&(dyn ErasedQuery + Sync)>,
        body: Option<&(dyn erased_json::Body + Sync)>,
    ) -> Result<T, Error> {
        self.call_with(what, method, url, &HeaderMap::new(), query, body)
            .await
    }

    /// [`call`](Self::call) with extra headers (the records' `Connection-Id`…).
    pub(crate) async fn call_with<T: DeserializeOwned>(
        &self,
        what: &'static str,
        method: Method,
        url: Url,
        headers: &HeaderMap,
        query: Option<&(dyn ErasedQuery + Sync)>,
        body: Option<&(dyn erased_json::Body + Sync)>,
    ) -> Result<T, Error> {
        let bytes = self.call_raw(method, url, headers, query, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode { what, source })
    }

    /// Sends a JSON API call; returns a success answer's body.
    pub(crate) async fn call_raw(
        &self,
        method: Method,
        url: Url,
        headers: &HeaderMap,
        query: Option<&(dyn ErasedQuery + Sync)>,
        body: Option<&(dyn erased_json::Body + Sync)>,
    ) -> Result<bytes::Bytes, Error> {
        let body = body
            .map(|b| b.to_json().map_err(Error::Serialize))
            .transpose()?;
        let idempotent = is_idempotent(&method);
        let mut attempt = 0;
        loop {
            let mut req = self
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(q) = query {
                req = q.apply(req);
            }
            if let Some(b) = &body {
                req = req
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let err = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp.bytes().await?),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(resp.headers());
                    let body = resp.bytes().await.unwrap_or_default();
                    error::from_body(status, retry_after, &body)
                }
                Err(e) => Error::Transport(e),
            };
            match self.retry_wait(idempotent, attempt, &err) {
                Some(wait) => {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err(err),
            }
        }
    }

    /// The wait before retrying after `err`, or `None`.
    pub(crate) fn retry_wait(
        &self,
        idempotent: bool,
        attempt: u32,
        err: &Error,
    ) -> Option<Duration> {
        if !idempotent {
            return None;
        }
        match err {
            Error::Transport(e) if e.is_connect() || e.is_timeout() => {
                self.inner.retry.wait(attempt, None, None)
            }
            Error::Api(_) | Error::UnexpectedStatus { .. } => {
                self.inner
                    .retry
                    .wait(attempt, err.status(), err.retry_after())
            }
            _ => None,
        }
    }
}

/// GET, HEAD, PUT, DELETE and OPTIONS may be repeated without changing the outcome.
pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// `Retry-After` as seconds or an HTTP date (a date in the past is no wait).
pub(crate) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// A query string, type-erased so `call` is not generic over it.
pub(crate) trait ErasedQuery {
    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder;
}

impl<T: Serialize> ErasedQuery for T {
    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.query(self)
    }
}

pub(crate) mod erased_json {
    use serde::Serialize;

    /// A JSON body, type-erased so `call` is not generic over it.
    pub trait Body {
        fn to_json(&self) -> Result<bytes::Bytes, serde_json::Error>;
    }

    impl<T: Serialize> Body for T {
        fn to_json(&self) -> Result<bytes::Bytes, serde_json::Error> {
            serde_json::to_vec(self).map(Into::into)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_keeps_a_path_prefix_and_encodes_segments() {
        let c = GrantdClient::new("https://example.com/grantd/", "k").unwrap();
        assert_eq!(
            c.url(&["connections", "a b/c"]).as_str(),
            "https://example.com/grantd/connections/a%20b%2Fc"
        );
        let c = GrantdClient::new("http://localhost:3003", "k").unwrap();
        assert_eq!(
            c.url(&["integrations"]).as_str(),
            "http://localhost:3003/integrations"
        );
    }

    #[test]
    fn bad_urls_and_empty_keys_are_refused() {
        assert!(GrantdClient::new("ftp://x", "k").is_err());
        assert!(GrantdClient::new("not a url", "k").is_err());
        assert!(GrantdClient::new("http://x", " ").is_err());
    }

    #[test]
    fn debug_hides_the_secret_key() {
        let c = GrantdClient::new("http://x", "3f2c6c1e-sekrit").unwrap();
        assert!(!format!("{c:?}").contains("sekrit"));
        let b = GrantdClient::builder("http://x", "3f2c6c1e-sekrit");
        assert!(!format!("{b:?}").contains("sekrit"));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        h.insert(header::RETRY_AFTER, later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn retry_policy_honours_retry_after_within_the_cap() {
        let p = RetryPolicy::default();
        let s429 = Some(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            p.wait(0, s429, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        // Longer than the cap: give the answer back rather than sleep for minutes.
        assert_eq!(p.wait(0, s429, Some(Duration::from_secs(600))), None);
        // Backoff doubles without Retry-After.
        assert_eq!(
            p.wait(1, Some(StatusCode::SERVICE_UNAVAILABLE), None),
            Some(Duration::from_millis(500))
        );
        // Not retryable, or out of attempts.
        assert_eq!(p.wait(0, Some(StatusCode::BAD_REQUEST), None), None);
        assert_eq!(
            p.wait(0, Some(StatusCode::INTERNAL_SERVER_ERROR), None),
            None
        );
        assert_eq!(p.wait(2, s429, None), None);
        assert_eq!(RetryPolicy::none().wait(0, s429, None), None);
    }
}
