//! Outbound HTTP for proxied calls and webhooks: the pooled clients and the SSRF guard.
//!
//! Hosts grantd is configured to talk to (the Microsoft login, Graph and SharePoint hosts — the
//! emulator on loopback in dev and tests) are trusted. Every other host — a `Base-Url-Override`
//! extra, a redirect target — must resolve only to public addresses: loopback, private,
//! link-local (169.254.0.0/16, the cloud metadata service), CGNAT, multicast and unspecified
//! addresses are refused. The check runs before a request is built (so the caller gets a clear
//! 4xx) and again inside the client's DNS resolver (so DNS rebinding between the two finds
//! nothing).

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::config::Config;

mod pool;

pub use pool::{ProxyError, UpstreamBody};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} resolves to a non-public address")]
    NonPublic(String),
    #[error("{0} could not be resolved")]
    Unresolvable(String),
    #[error("only http and https URLs can be called")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
}

/// Whether an address is reachable on the public internet (not loopback, private, link-local,
/// shared, documentation, benchmarking, reserved, multicast or unspecified). IPv6 forms that
/// carry an IPv4 address (mapped `::ffff:a.b.c.d`, translated `::ffff:0:a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) are judged by the IPv4 address they carry;
/// deprecated or tunnelling forms (IPv4-compatible `::a.b.c.d`, Teredo, site-local, local-use
/// NAT64) are never public.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: std::net::Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240)
}

fn is_public_v6(v6: std::net::Ipv6Addr) -> bool {
    let s = v6.segments();
    let embedded = |hi: u16, lo: u16| {
        std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
    };
    // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (SIIT translated).
    if s[..5] == [0; 5] && s[5] == 0xffff || s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // 6to4 2002::/16: the IPv4 address is the next 32 bits.
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    !(s[..6] == [0; 6] // ::/96: unspecified, loopback, IPv4-compatible (deprecated)
        || v6.is_multicast()
        || (s[0] == 0x64 && s[1] == 0xff9b) // 64:ff9b:1::/48, local-use NAT64
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // 100::/64, discard-only
        || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23: Teredo, benchmarking, ORCHID
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] & 0xfff0) == 0x3ff0 // 3fff::/20, documentation
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0) // site-local (deprecated)
}

/// The origins grantd trusts without address checks, and their host names (for the resolver).
#[derive(Debug, Clone, Default)]
pub struct Guard {
    trusted: Arc<HashSet<String>>,
    trusted_origins: Arc<HashSet<(String, String, u16)>>,
}

/// A URL's origin as (scheme, host, port); `None` for URLs without a host or known port.
pub fn origin_of(url: &Url) -> Option<(String, String, u16)> {
    Some((
        url.scheme().to_owned(),
        normalise(url.host_str()?),
        url.port_or_known_default()?,
    ))
}

/// Whether two URLs have the same origin (scheme, host, port).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    match (origin_of(a), origin_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Whether a `Base-Url-Override` may be used: the provider's own origin (scheme, host and port,
/// not the host alone), or a host in `GRANTD_PROXY_ALLOWED_HOSTS`. A call that carries the
/// connection's token never goes out in clear text to a host other than the provider's own.
pub fn override_allowed(
    over: &Url,
    own: Option<&Url>,
    allowed_hosts: &[String],
    token_bearing: bool,
) -> Result<(), String> {
    if own.is_some_and(|own| same_origin(over, own)) {
        return Ok(());
    }
    // An entry written as an origin names the scheme itself: exactly that origin is allowed.
    let origin_listed = allowed_hosts.iter().any(|entry| {
        entry.contains("://") && Url::parse(entry).is_ok_and(|u| same_origin(over, &u))
    });
    if origin_listed {
        return Ok(());
    }
    let host = normalise(over.host_str().unwrap_or(""));
    if !allowed_hosts.iter().any(|entry| normalise(entry) == host) {
        let origin = over.origin().ascii_serialization();
        return Err(format!("Base-Url-Override to {origin} is not allowed"));
    }
    if token_bearing && over.scheme() != "https" {
        return Err(format!(
            "Base-Url-Override to {host} must use https: the call carries the connection's token"
        ));
    }
    Ok(())
}

impl Guard {
    /// Trusts the configured Microsoft origins.
    pub fn from_config(config: &Config) -> Guard {
        let m = &config.microsoft;
        let mut urls = vec![m.login_url.clone(), m.graph_url.clone()];
        if !m.sharepoint_url_template.contains("://{host}") {
            if let Ok(u) = Url::parse(&m.sharepoint_url_template.replace("{host}", "x")) {
                urls.push(u);
            }
        }
        // `GRANTD_PROXY_ALLOWED_HOSTS` entries given as an origin (`http://10.0.0.5:8080`) are
        // trusted as the operator's own services; plain host names must stay public.
        urls.extend(
            config
                .proxy_allowed_hosts
                .iter()
                .filter(|e| e.contains("://"))
                .filter_map(|e| Url::parse(e).ok()),
        );
        Guard::trusting(&urls)
    }

    /// Trusts the origins of `urls`.
    pub fn trusting(urls: &[Url]) -> Guard {
        let trusted_origins: HashSet<_> = urls.iter().filter_map(origin_of).collect();
        let trusted = trusted_origins.iter().map(|o| o.1.clone()).collect();
        Guard {
            trusted: Arc::new(trusted),
            trusted_origins: Arc::new(trusted_origins),
        }
    }

    /// Whether a host name is one of the trusted origins' (the resolver's question: by then
    /// `check` has compared the whole origin).
    pub fn is_trusted(&self, host: &str) -> bool {
        self.trusted.contains(&normalise(host))
    }

    /// Whether `url`'s origin is a trusted one, compared in place (the origins are few; building
    /// `origin_of`'s owned strings on every proxied call cost more than the comparison).
    fn trusts_origin(&self, url: &Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.trusted_origins
            .iter()
            .any(|(s, h, p)| *p == port && s == url.scheme() && h.eq_ignore_ascii_case(host))
    }

    /// Refuses a URL whose origin (scheme, host and port) is not trusted and whose host is, or
    /// resolves to, a non-public address.
    pub async fn check(&self, url: &Url) -> Result<(), Error> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Scheme);
        }
        let host = url.host().ok_or(Error::NoHost)?;
        let name = url.host_str().ok_or(Error::NoHost)?;
        if self.trusts_origin(url) {
            return Ok(());
        }
        match host {
            url::Host::Ipv4(ip) if !is_public(IpAddr::V4(ip)) => {
                Err(Error::NonPublic(name.to_owned()))
            }
            url::Host::Ipv6(ip) if !is_public(IpAddr::V6(ip)) => {
                Err(Error::NonPublic(name.to_owned()))
            }
            url::Host::Ipv4(_) | url::Host::Ipv6(_) => Ok(()),
            url::Host::Domain(d) => resolve_public(d).await.map(|_| ()),
        }
    }
}

fn normalise(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

async fn resolve_public(host: &str) -> Result<Vec<SocketAddr>, Error> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| Error::Unresolvable(host.to_owned()))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Unresolvable(host.to_owned()));
    }
    if addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(Error::NonPublic(host.to_owned()));
    }
    Ok(addrs)
}

/// The clients' resolver: trusted names resolve normally, others only to public addresses.
/// A reqwest `Resolve` (webhook client) and a hyper-util resolver service (proxy client).
#[derive(Clone)]
struct CheckedResolver(Guard);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl CheckedResolver {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, BoxError>> + Send>>
    {
        let guard = self.0.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = if guard.is_trusted(&host) {
                tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|e| Box::new(e) as BoxError)?
                    .collect()
            } else {
                resolve_public(&host)
                    .await
                    .map_err(|e| Box::new(e) as BoxError)?
            };
            Ok(addrs.into_iter())
        })
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let fut = self.lookup(name.as_str().to_owned());
        Box::pin(async move { Ok(Box::new(fut.await?) as Addrs) })
    }
}

impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        self.lookup(name.as_str().to_owned())
    }
}

/// Whether a client error was the guard refusing an address (DNS changed after the check).
pub fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The client webhooks are delivered with: no redirects, no forward proxy, and the SSRF guard
/// in its resolver (no trusted origins). `None` when private targets are allowed (local
/// development): the caller's ordinary client is used.
pub fn webhook_client(allow_private: bool) -> Option<&'static reqwest::Client> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if allow_private {
        return None;
    }
    Some(CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(CheckedResolver(Guard::default())))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("static client configuration is valid")
    }))
}

/// Whether a webhook may be delivered to `url`: a valid http(s) URL and, unless private targets
/// are allowed, a public address (IP literals are checked here: they never reach the resolver).
pub async fn check_webhook_target(url: &str, allow_private: bool) -> Result<(), String> {
    let u = crate::validate::webhook_url(url)?;
    if allow_private {
        return Ok(());
    }
    Guard::default().check(&u).await.map_err(|e| e.to_string())
}

/// The proxy's client: hyper's connection API with a pool of our own (`pool`; hyper-util's
/// legacy client cost ~12,900 instructions per call on top of it, reqwest's layer ~34 k before
/// that), connecting through hyper-util's `HttpConnector` with the guarded resolver and
/// hyper-rustls (webpki roots; HTTP/2 by ALPN, HTTP/1.1 otherwise), no automatic redirects (the
/// proxy decides, see `proxy`), no `HTTP(S)_PROXY` forward proxy (it would resolve names itself,
/// out of reach of the guard), connect and idle-read timeouts (`ProxyClient::READ_TIMEOUT`, see
/// `IdleTimeout`). The pool sits behind an `Arc`: `AppState` is cloned for every request.
#[derive(Clone)]
pub struct ProxyClient {
    inner: Arc<pool::Pool>,
}

/// A response from the proxy's client.
pub type ProxyResponse = http::Response<UpstreamBody>;

impl ProxyClient {
    /// How long a response may keep the proxy waiting for its head or its next body chunk.
    pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

    pub fn new(guard: &Guard) -> ProxyClient {
        let mut http = HttpConnector::new_with_resolver(CheckedResolver(guard.clone()));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        ProxyClient::with_tls(http, tls)
    }

    fn with_tls(http: HttpConnector<CheckedResolver>, tls: rustls::ClientConfig) -> ProxyClient {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        ProxyClient {
            inner: Arc::new(pool::Pool::new(https)),
        }
    }

    /// Sends a request; resolves when the response head arrived (the body streams after).
    ///
    /// The future is boxed: it is ~2 KB (the request, hyper's send, the stale-connection
    /// retry), and unboxed it made the proxy handler's future as large, which is moved by
    /// copying when the handler starts (~10k instructions of `memcpy` per call, measured).
    pub fn send(
        &self,
        req: http::Request<ProxyBody>,
    ) -> Pin<Box<impl Future<Output = Result<ProxyResponse, ProxyError>> + Send + '_>> {
        Box::pin(self.inner.send(req))
    }
}

/// The body of a proxied request: none, bytes held (replayable), or the caller's body streamed
/// once with a size limit. An enum rather than a boxed body: no allocation per call.
pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    /// The caller's body, and how many bytes it may still carry.
    Stream(axum::body::Body, u64),
}

#[derive(Debug, thiserror::Error)]
#[error("request body too large")]
pub struct BodyTooLarge;

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(http_body::Frame::data(b)))),
            ProxyBody::Stream(body, left) => {
                match std::task::ready!(Pin::new(body).poll_frame(cx)) {
                    None => Poll::Ready(None),
                    Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
                    Some(Ok(frame)) => {
                        let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                        if n > *left {
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                        }
                        *left -= n;
                        Poll::Ready(Some(Ok(frame)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Stream(body, _) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            ProxyBody::Empty => http_body::SizeHint::with_exact(0),
            ProxyBody::Full(b) => {
                http_body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Stream(body, _) => body.size_hint(),
        }
    }
}

/// A response body that fails when the upstream sends nothing for `ProxyClient::READ_TIMEOUT`.
/// The timer is armed only when a read has to wait (a small response that arrived with its
/// head never arms it) and re-armed, not reallocated, after each chunk.
pub struct IdleTimeout {
    body: UpstreamBody,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?}")]
pub struct ReadTimeout(Duration);

impl IdleTimeout {
    pub fn new(body: UpstreamBody) -> IdleTimeout {
        IdleTimeout {
            body,
            timer: None,
            armed: false,
        }
    }
}

impl http_body::Body for IdleTimeout {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let wait = ProxyClient::READ_TIMEOUT;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
        if !this.armed {
            timer.as_mut().reset(tokio::time::Instant::now() + wait);
            this.armed = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ReadTimeout(wait))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_non_public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in ["20.190.151.68", "40.126.1.1", "2603:1006::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn guard_refuses_untrusted_local_targets() {
        let guard = Guard::trusting(&[Url::parse("http://127.0.0.1:9").unwrap()]);
        assert!(
            guard
                .check(&Url::parse("http://127.0.0.1:9/x").unwrap())
                .await
                .is_ok()
        );
        for u in [
            "http://localhost:9/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:80/",
            "http://10.0.0.1/",
            "file:///etc/passwd",
        ] {
            assert!(guard.check(&Url::parse(u).unwrap()).await.is_err(), "{u}");
        }
    }

    #[test]
    fn embedded_ipv4_forms_are_judged_by_their_ipv4_address() {
        for ip in [
            "::127.0.0.1",        // IPv4-compatible (deprecated)
            "::8.8.8.8",          // IPv4-compatible, even with a public address
            "::ffff:0:127.0.0.1", // SIIT translated
            "::ffff:0:10.0.0.1",
            "2002:7f00:1::",                        // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1",                    // 6to4 of 169.254.169.254
            "2002:c0a8:0101::",                     // 6to4 of 192.168.1.1
            "64:ff9b::127.0.0.1",                   // NAT64 of loopback
            "64:ff9b::a9fe:a9fe",                   // NAT64 of the metadata service
            "64:ff9b:1::1.2.3.4",                   // local-use NAT64
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "2001:2::1",                            // benchmarking
            "100::1",                               // discard-only
            "fec0::1",                              // site-local
            "3fff::1",                              // documentation (RFC 9637)
            "192.0.0.8",
            "192.88.99.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in [
            "2002:0808:0808::1",
            "64:ff9b::8.8.8.8",
            "::ffff:20.190.151.68",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn base_url_override_compares_origins() {
        let own = Url::parse("https://graph.microsoft.com/v1.0").unwrap();
        let ok = |u: &str, allowed: &[&str], bearing: bool| {
            let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
            override_allowed(&Url::parse(u).unwrap(), Some(&own), &allowed, bearing).is_ok()
        };
        assert!(ok("https://graph.microsoft.com", &[], true));
        assert!(ok("https://GRAPH.microsoft.com:443/beta", &[], true));
        assert!(!ok("http://graph.microsoft.com", &[], true));
        assert!(!ok("https://graph.microsoft.com:8443", &[], true));
        assert!(!ok("https://example.com", &[], true));
        assert!(ok("https://example.com", &["example.com"], true));
        // Clear text to an allowed host only without the token.
        assert!(!ok("http://example.com", &["example.com"], true));
        assert!(ok("http://example.com", &["example.com"], false));
        // An origin entry allows exactly that origin.
        assert!(ok(
            "http://10.0.0.5:8080/x",
            &["http://10.0.0.5:8080"],
            false
        ));
        assert!(!ok(
            "http://10.0.0.5:8081/x",
            &["http://10.0.0.5:8080"],
            false
        ));
    }

    #[tokio::test]
    async fn guard_trusts_origins_not_hosts() {
        let guard = Guard::trusting(&[Url::parse("http://127.0.0.1:4100").unwrap()]);
        for u in ["http://127.0.0.1:4100/x", "http://127.0.0.1:4100"] {
            assert!(guard.check(&Url::parse(u).unwrap()).await.is_ok(), "{u}");
        }
        for u in [
            "http://127.0.0.1:5432/",
            "https://127.0.0.1:4100/",
            "http://127.0.0.1/",
        ] {
            assert!(guard.check(&Url::parse(u).unwrap()).await.is_err(), "{u}");
        }
    }
}

/// Property tests: every way of writing an IPv4 address in a URL, and every IPv6 form that
/// carries one, is judged like the IPv4 address itself. `PROPTEST_CASES` raises the case count.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Addresses biased towards the interesting ranges.
    fn v4() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            any::<u32>().prop_map(Ipv4Addr::from),
            (
                prop::sample::select(vec![0u8, 10, 100, 127, 169, 172, 192, 198, 224, 240, 255]),
                any::<[u8; 3]>()
            )
                .prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d)),
        ]
    }

    /// Textual forms of an IPv4 address a URL parser accepts as that address.
    fn spellings(ip: Ipv4Addr) -> Vec<String> {
        let n = u32::from(ip);
        let [a, b, c, d] = ip.octets();
        vec![
            format!("{ip}"),
            format!("{n}"),
            format!("0x{n:x}"),
            format!("0{n:o}"),
            format!("{a}.{}", n & 0x00ff_ffff),
            format!("{a}.{b}.{}", n & 0xffff),
            format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
            format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        ]
    }

    /// IPv6 addresses carrying `ip`, and whether each must follow the IPv4 verdict (`true`) or
    /// is never public (`false`).
    fn carriers(ip: Ipv4Addr) -> Vec<(Ipv6Addr, bool)> {
        let [a, b, c, d] = ip.octets();
        let hi = u16::from_be_bytes([a, b]);
        let lo = u16::from_be_bytes([c, d]);
        vec![
            (ip.to_ipv6_mapped(), true),
            (Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo), true),
            (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo), true),
            (Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1), true),
            (Ipv6Addr::new(0x2002, hi, lo, 0x1234, 0, 0, hi, lo), true),
            (ip.to_ipv6_compatible(), false),
            (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, hi, lo), false),
            (Ipv6Addr::new(0x2001, 0, hi, lo, 0, 0, !hi, !lo), false),
        ]
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
        ))]

        #[test]
        fn every_ipv4_spelling_is_judged_alike(ip in v4()) {
            let guard = Guard::default();
            let want = is_public(IpAddr::V4(ip));
            for host in spellings(ip) {
                let url = Url::parse(&format!("http://{host}/x")).unwrap();
                prop_assert_eq!(url.host(), Some(url::Host::Ipv4(ip)), "{}", host);
                let ok = runtime().block_on(guard.check(&url)).is_ok();
                prop_assert_eq!(ok, want, "{} ({})", host, ip);
            }
        }

        #[test]
        fn every_ipv6_carrier_is_judged_by_its_ipv4(ip in v4()) {
            let guard = Guard::default();
            let want = is_public(IpAddr::V4(ip));
            for (v6, follows) in carriers(ip) {
                let expected = follows && want;
                prop_assert_eq!(is_public(IpAddr::V6(v6)), expected, "{} ({})", v6, ip);
                let url = Url::parse(&format!("http://[{v6}]:8080/x")).unwrap();
                let ok = runtime().block_on(guard.check(&url)).is_ok();
                prop_assert_eq!(ok, expected, "{}", url);
            }
        }

        #[test]
        fn non_public_v6_ranges_stay_non_public(bits in any::<u128>(), range in 0usize..7) {
            let (prefix, len): (u128, u32) = [
                (0, 96),                                  // ::/96
                (0xfc00 << 112, 7),                       // unique local
                (0xfe80 << 112, 10),                      // link-local
                (0xfec0 << 112, 10),                      // site-local
                (0xff00 << 112, 8),                       // multicast
                (0x2001_0db8 << 96, 32),                  // documentation
                (0x2001_0000 << 96, 32),                  // Teredo
            ][range];
            let mask = u128::MAX >> len;
            let ip = Ipv6Addr::from(prefix | (bits & mask));
            prop_assert!(!is_public(IpAddr::V6(ip)), "{}", ip);
        }
    }
}
