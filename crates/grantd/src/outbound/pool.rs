//! The proxy client's connection pool, on hyper's connection API (`hyper::client::conn`).
//!
//! hyper-util's legacy client cost ~12,900 instructions per proxied call on top of hyper itself:
//! it cloned itself, its connector and its pool handles into every request, hashed the pool key
//! with SipHash three times, boxed its futures and raced a checkout against a connect. Here a
//! call costs one map lookup (foldhash, a `Key` borrowed from the URI: nothing allocated) and a
//! pop from the key's stack of idle connections.
//!
//! - **Keys**: the scheme and the authority (host and port as the URI writes them). Each key
//!   has a `Slot`: a LIFO stack of idle HTTP/1 `SendRequest`s (at most `MAX_IDLE_PER_KEY`) and
//!   at most one HTTP/2 `SendRequest`, shared by every call (replaced when closed). The most
//!   recently used connection is taken first: it is the least likely to have been closed by the
//!   server, and the stack's bottom ages out.
//! - **Returning**: an HTTP/1 connection goes back when its response body has been read to the
//!   end (`UpstreamBody`); a body dropped before its end drops the connection, which hyper then
//!   closes (it is busy: the rest of the body would still arrive on it).
//! - **Expiry**: an idle connection older than `IDLE_TIMEOUT` is not used; checkout drops them
//!   (LIFO: when the top is too old, all below it are too), and a sweep every `SWEEP_EVERY`
//!   (done by the call that finds it due, no timer task) drops expired and closed ones of every
//!   key and forgets keys left empty, so neither connections nor keys accumulate.
//! - **Stale connections**: a pooled connection the server closed meanwhile is skipped when hyper
//!   already knows (`is_closed`, `ready`); when it learns only while sending, `try_send_request`
//!   gives the request back if none of it was written, and the call goes out once more on a
//!   fresh connection (as the legacy client's `retry_canceled_requests` did). A request partly
//!   written is never resent.
//! - **Request form**: HTTP/1 gets the origin-form target (`/path?query`) and a `Host` header when
//!   the caller set none; HTTP/2 the absolute URI (hyper makes `:scheme`/`:authority` of it).

use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;

use super::{CheckedResolver, ProxyBody};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(super) type Connector = HttpsConnector<HttpConnector<CheckedResolver>>;

/// Idle HTTP/1 connections kept per key.
const MAX_IDLE_PER_KEY: usize = 256;
/// How long a connection may sit unused and still be taken.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a call sweeps every key for expired and closed connections.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A failed attempt of the proxy's client. Messages name what failed, never the URL (its query
/// may carry anything) nor headers; the cause is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the request URL has no http or https origin")]
    Target,
    #[error("connecting to the upstream failed")]
    Connect(#[source] BoxError),
    #[error("the upstream connection could not be set up")]
    Handshake(#[source] hyper::Error),
    #[error("the upstream request failed")]
    Send(#[source] hyper::Error),
}

/// A pool key as stored: the scheme and the URI's authority as written (host and port). A
/// scheme's default port written out makes another key than the port left out: a second
/// connection at worst, never a wrong one. The authority is not parsed into host and port on
/// every call (that was ~800 instructions).
#[derive(PartialEq, Eq)]
struct Key {
    https: bool,
    authority: Box<str>,
}

/// A pool key borrowed from a request's URI, to look a `Key` up without allocating.
struct KeyRef<'a> {
    https: bool,
    authority: &'a str,
}

impl<'a> KeyRef<'a> {
    fn of(origin: &'a Origin) -> Result<KeyRef<'a>, ProxyError> {
        let https = match origin.scheme.as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(ProxyError::Target),
        };
        Ok(KeyRef {
            https,
            authority: origin.authority.as_str(),
        })
    }
}

/// The `Host` header for an origin: the host, with the port unless it is the scheme's default
/// (as hyper-util's client wrote it).
fn host_header(https: bool, authority: &Authority) -> Result<HeaderValue, ProxyError> {
    let default = if https { 443 } else { 80 };
    let host = authority.host();
    match authority.port_u16() {
        Some(port) if port != default => {
            HeaderValue::from_maybe_shared(Bytes::from(format!("{host}:{port}")))
        }
        _ => HeaderValue::from_str(host),
    }
    .map_err(|_| ProxyError::Target)
}

// `Key` and `KeyRef` hash alike (hashbrown finds a `Key` by an equivalent `KeyRef`).
impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.https, &*self.authority).hash(h);
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.https, self.authority).hash(h);
    }
}

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, k: &Key) -> bool {
        self.https == k.https && self.authority == &*k.authority
    }
}

/// One key's connections.
struct Slot {
    /// The `Host` header HTTP/1 requests to this key get (cloning it is a reference count).
    host: HeaderValue,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// Idle HTTP/1 connections, the most recently returned last.
    idle: Vec<Idle>,
    /// The key's HTTP/2 connection, and when a call last took it.
    h2: Option<(http2::SendRequest<ProxyBody>, Instant)>,
}

struct Idle {
    tx: http1::SendRequest<ProxyBody>,
    since: Instant,
}

/// A connection taken from a slot.
enum Conn {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // Nothing panics while holding the lock; if something did, the state is still a list
        // of connections, each checked before use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pooled connection that is not known to be closed or expired, if any.
    fn checkout(&self, now: Instant) -> Option<Conn> {
        let mut st = self.lock();
        if let Some((tx, used)) = &mut st.h2 {
            if !tx.is_closed() {
                *used = now;
                return Some(Conn::H2(tx.clone()));
            }
            st.h2 = None;
        }
        while let Some(idle) = st.idle.pop() {
            if now.saturating_duration_since(idle.since) >= IDLE_TIMEOUT {
                // The newest is too old: so is every one below it.
                st.idle.clear();
                return None;
            }
            if !idle.tx.is_closed() {
                return Some(Conn::H1(idle.tx));
            }
        }
        None
    }

    /// Puts an HTTP/1 connection whose response has been read to the end back on the stack.
    fn give_back(&self, tx: http1::SendRequest<ProxyBody>) {
        if tx.is_closed() {
            return;
        }
        let since = Instant::now();
        let mut st = self.lock();
        if st.idle.len() < MAX_IDLE_PER_KEY {
            st.idle.push(Idle { tx, since });
        }
    }

    /// Drops expired and closed connections; whether nothing is left.
    fn sweep(&self, now: Instant) -> bool {
        let mut st = self.lock();
        st.idle
            .retain(|i| now.saturating_duration_since(i.since) < IDLE_TIMEOUT && !i.tx.is_closed());
        if st.h2.as_ref().is_some_and(|(tx, used)| {
            tx.is_closed() || now.saturating_duration_since(*used) >= IDLE_TIMEOUT
        }) {
            st.h2 = None;
        }
        st.idle.is_empty() && st.h2.is_none()
    }
}

struct Slots {
    map: hashbrown::HashMap<Key, Arc<Slot>>,
    next_sweep: Instant,
}

/// The pool and the connector that fills it.
pub(super) struct Pool {
    connector: Connector,
    slots: Mutex<Slots>,
    /// Requests hyper gave back unwritten and the pool sent again (tests look).
    #[cfg(test)]
    resent: std::sync::atomic::AtomicUsize,
}

impl Pool {
    pub(super) fn new(connector: Connector) -> Pool {
        Pool {
            connector,
            slots: Mutex::new(Slots {
                map: hashbrown::HashMap::new(),
                next_sweep: Instant::now() + SWEEP_EVERY,
            }),
            #[cfg(test)]
            resent: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The slot of the request's origin (made on first use); sweeps every key when due.
    fn slot(&self, origin: &Origin, now: Instant) -> Result<Arc<Slot>, ProxyError> {
        let key = KeyRef::of(origin)?;
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if now >= slots.next_sweep {
            slots.next_sweep = now + SWEEP_EVERY;
            // A slot some response still holds (to give its connection back) stays.
            slots
                .map
                .retain(|_, slot| !(slot.sweep(now) && Arc::strong_count(slot) == 1));
        }
        if let Some(slot) = slots.map.get(&key) {
            return Ok(Arc::clone(slot));
        }
        let slot = Arc::new(Slot {
            host: host_header(key.https, &origin.authority)?,
            state: Mutex::new(SlotState::default()),
        });
        let owned = Key {
            https: key.https,
            authority: key.authority.into(),
        };
        slots.map.insert(owned, Arc::clone(&slot));
        Ok(slot)
    }

    /// Sends a request on a pooled connection, or a fresh one; resolves with the response head.
    pub(super) async fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let now = Instant::now();
        let (mut req, origin) = Origin::split(req)?;
        let slot = self.slot(&origin, now)?;
        let mut host_added = false;
        while let Some(conn) = slot.checkout(now) {
            let sent = match conn {
                Conn::H2(tx) => send_h2(tx, req, &origin, host_added).await,
                Conn::H1(mut tx) => {
                    // Not ready yet: the connection is still finishing the previous exchange
                    // (it becomes ready in a moment), or it is closed (an error: take another).
                    if tx.ready().await.is_err() {
                        continue;
                    }
                    send_h1(tx, req, &slot, &mut host_added).await
                }
            };
            match sent {
                Ok(resp) => return Ok(resp),
                // Closed before any of the request was written: the server had closed the
                // idle connection. Once more, on a fresh connection (the other idle ones of
                // this key are likely as stale).
                Err(Unsent::Returned(again, _)) => {
                    #[cfg(test)]
                    self.resent
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    req = again;
                    break;
                }
                Err(Unsent::Failed(e)) => return Err(ProxyError::Send(e)),
                Err(Unsent::Target) => return Err(ProxyError::Target),
            }
        }
        // Boxed: connecting (TLS state, handshakes) would otherwise make every call's future
        // several KB larger, and futures are moved by copying (that cost ~10k instructions).
        let sent = match Box::pin(self.connect(&origin, &slot)).await? {
            Conn::H1(tx) => send_h1(tx, req, &slot, &mut host_added).await,
            Conn::H2(tx) => send_h2(tx, req, &origin, host_added).await,
        };
        sent.map_err(|e| match e {
            Unsent::Returned(_, e) | Unsent::Failed(e) => ProxyError::Send(e),
            Unsent::Target => ProxyError::Target,
        })
    }

    /// A new connection to the origin through the connector (SSRF-checked resolver, TLS with
    /// HTTP/2 offered by ALPN, connect timeout), with hyper's connection task spawned. An HTTP/2
    /// connection becomes the slot's shared one.
    async fn connect(&self, origin: &Origin, slot: &Slot) -> Result<Conn, ProxyError> {
        let dst = Uri::builder()
            .scheme(origin.scheme.clone())
            .authority(origin.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| ProxyError::Target)?;
        let io = tower::ServiceExt::oneshot(self.connector.clone(), dst)
            .await
            .map_err(ProxyError::Connect)?;
        if io.connected().is_negotiated_h2() {
            let (mut tx, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(ProxyError::Handshake)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("proxy upstream connection (HTTP/2) ended: {e}");
                }
            });
            tx.ready().await.map_err(ProxyError::Handshake)?;
            slot.lock().h2 = Some((tx.clone(), Instant::now()));
            Ok(Conn::H2(tx))
        } else {
            let (mut tx, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(ProxyError::Handshake)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("proxy upstream connection (HTTP/1) ended: {e}");
                }
            });
            tx.ready().await.map_err(ProxyError::Handshake)?;
            Ok(Conn::H1(tx))
        }
    }
}

/// A request's scheme and authority, taken out of its URI (which is left origin-form).
struct Origin {
    scheme: Scheme,
    authority: Authority,
}

impl Origin {
    /// Moves the scheme and authority out of the request's URI: no copies.
    fn split(req: Request<ProxyBody>) -> Result<(Request<ProxyBody>, Origin), ProxyError> {
        let (mut parts, body) = req.into_parts();
        let uri = std::mem::take(&mut parts.uri).into_parts();
        let (Some(scheme), Some(authority)) = (uri.scheme, uri.authority) else {
            return Err(ProxyError::Target);
        };
        parts.uri = origin_form(uri.path_and_query);
        Ok((
            Request::from_parts(parts, body),
            Origin { scheme, authority },
        ))
    }
}

fn origin_form(path: Option<PathAndQuery>) -> Uri {
    Uri::from(path.unwrap_or_else(|| PathAndQuery::from_static("/")))
}

/// Why a request got no response on a connection. (The request is not boxed: this is the
/// result of one send, used in place, and boxing would allocate on the rare path for nothing.)
#[allow(clippy::large_enum_variant)]
enum Unsent {
    /// Nothing of it was written (hyper gave it back): it can go out again.
    Returned(Request<ProxyBody>, hyper::Error),
    Failed(hyper::Error),
    /// The URI could not be put back together (it was valid before: not expected).
    Target,
}

/// HTTP/1: the origin-form target as `split` left it, and `Host` unless the caller set one.
async fn send_h1(
    mut tx: http1::SendRequest<ProxyBody>,
    mut req: Request<ProxyBody>,
    slot: &Arc<Slot>,
    host_added: &mut bool,
) -> Result<Response<UpstreamBody>, Unsent> {
    if !*host_added && !req.headers().contains_key(header::HOST) {
        req.headers_mut().insert(header::HOST, slot.host.clone());
        *host_added = true;
    }
    match tx.try_send_request(req).await {
        Ok(resp) => Ok(resp.map(|body| UpstreamBody {
            body,
            back: Some(Back {
                tx,
                slot: Arc::clone(slot),
            }),
        })),
        Err(mut e) => match e.take_message() {
            Some(req) => Err(Unsent::Returned(req, e.into_error())),
            None => Err(Unsent::Failed(e.into_error())),
        },
    }
}

/// HTTP/2: the absolute URI (hyper derives `:scheme` and `:authority` from it), no `Host` of
/// ours (an HTTP/1 attempt before may have added it).
async fn send_h2(
    mut tx: http2::SendRequest<ProxyBody>,
    req: Request<ProxyBody>,
    origin: &Origin,
    host_added: bool,
) -> Result<Response<UpstreamBody>, Unsent> {
    let (mut parts, body) = req.into_parts();
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(origin.scheme.clone());
    uri.authority = Some(origin.authority.clone());
    // The parts of a valid absolute URI make one again.
    parts.uri = Uri::from_parts(uri).map_err(|_| Unsent::Target)?;
    if host_added {
        parts.headers.remove(header::HOST);
    }
    match tx.try_send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => Ok(resp.map(|body| UpstreamBody { body, back: None })),
        Err(mut e) => match e.take_message() {
            Some(mut req) => {
                let path = std::mem::take(req.uri_mut()).into_parts().path_and_query;
                *req.uri_mut() = origin_form(path);
                Err(Unsent::Returned(req, e.into_error()))
            }
            None => Err(Unsent::Failed(e.into_error())),
        },
    }
}

/// An HTTP/1 connection to put back when its response body has been read to the end.
struct Back {
    tx: http1::SendRequest<ProxyBody>,
    slot: Arc<Slot>,
}

/// A response body from the proxy's client: hyper's, plus (HTTP/1) the connection it arrived
/// on, which goes back to the pool once the body has ended — not before (the connection is
/// busy until then), and never when the body is dropped early or fails.
pub struct UpstreamBody {
    body: Incoming,
    back: Option<Back>,
}

impl UpstreamBody {
    fn give_back(&mut self) {
        if let Some(Back { tx, slot }) = self.back.take() {
            slot.give_back(tx);
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            // The end, or the last bytes of a body of known length (a reader may stop here
            // without asking for more: hyper's server does).
            None => this.give_back(),
            Some(Ok(_)) if this.body.is_end_stream() => this.give_back(),
            Some(Ok(_)) => {}
            Some(Err(_)) => this.back = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body with nothing to read (204, `Content-Length: 0`, HEAD) is never polled.
        if self.back.is_some() && self.body.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::mpsc;

    use http_body_util::BodyExt;

    use super::super::{Guard, ProxyClient};
    use super::*;

    fn get(url: &str) -> Request<ProxyBody> {
        let mut req = Request::new(ProxyBody::Empty);
        *req.uri_mut() = Uri::try_from(url).unwrap();
        req
    }

    /// Reads one request head from a blocking socket.
    fn read_head(s: &mut std::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "request head cut short");
            buf.push(byte[0]);
        }
        String::from_utf8(buf).unwrap()
    }

    /// The legacy client's `retry_canceled_requests`, kept: the server closes an idle pooled
    /// connection, and the pool hands the next request to hyper before hyper has seen the
    /// close; hyper gives it back unwritten, and it goes out on a fresh connection.
    ///
    /// The order is arranged on the test's one-thread runtime: the runtime is blocked while the
    /// server writes a byte on a side socket and then closes the pooled connection, so the next
    /// poll of the I/O driver reports both at once, the side socket first: the test's task runs
    /// (and sends) before hyper's connection task reads the end of the stream.
    #[tokio::test]
    async fn a_request_given_back_by_a_stale_connection_goes_out_on_a_fresh_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let side = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let side_addr = side.local_addr().unwrap();
        let (close_tx, close_rx) = mpsc::channel::<()>();
        let (closed_tx, closed_rx) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut signal, _) = side.accept().unwrap();
            let mut heads = vec![];
            let (mut s, _) = l.accept().unwrap();
            heads.push(read_head(&mut s));
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none")
                .unwrap();
            close_rx.recv().unwrap();
            signal.write_all(b"!").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.shutdown(std::net::Shutdown::Both).unwrap();
            drop(s);
            std::thread::sleep(Duration::from_millis(20));
            closed_tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            heads.push(read_head(&mut s));
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo")
                .unwrap();
            heads
        });
        let mut signal = tokio::net::TcpStream::connect(side_addr).await.unwrap();
        let client = ProxyClient::new(&Guard::default());
        let url = format!("http://127.0.0.1:{port}/a?b=1");
        let r = client.send(get(&url)).await.unwrap();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"one");
        // Let hyper's connection task settle into idle, then block the runtime until the
        // server has signalled and closed.
        tokio::task::yield_now().await;
        close_tx.send(()).unwrap();
        closed_rx.recv().unwrap();
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut signal, &mut byte)
            .await
            .unwrap();
        let r = client.send(get(&url)).await.unwrap();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"two");
        assert_eq!(
            client
                .inner
                .resent
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "the request was given back and sent again"
        );
        let heads = server.join().unwrap();
        for head in &heads {
            assert!(head.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{head}");
            assert!(
                head.contains(&format!("host: 127.0.0.1:{port}\r\n")),
                "{head}"
            );
        }
    }

    /// HTTPS with HTTP/2 chosen by ALPN (the emulator's TLS listener): calls share the key's one
    /// HTTP/2 connection, with the absolute URI; nothing goes on the HTTP/1 stack.
    #[tokio::test]
    async fn https_calls_share_one_http2_connection() {
        let emu = grantd_emulator::spawn(
            grantd_emulator::EmulatorConfig {
                tls: true,
                ..Default::default()
            },
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .unwrap();
        let https = emu.https_url.clone().unwrap();
        let ca = emu.ca_pem.clone().unwrap();
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(CheckedResolver(Guard::default()));
        http.enforce_http(false);
        let client = ProxyClient::with_tls(http, tls);
        let url = format!("{https}/_emulator/health");
        for _ in 0..3 {
            let r = client.send(get(&url)).await.unwrap();
            assert_eq!(r.version(), http::Version::HTTP_2);
            assert_eq!(r.status(), 200);
            r.into_body().collect().await.unwrap();
        }
        let slots = client.inner.slots.lock().unwrap();
        assert_eq!(slots.map.len(), 1);
        let slot = slots.map.values().next().unwrap();
        let st = slot.lock();
        assert!(st.h2.as_ref().is_some_and(|(tx, _)| !tx.is_closed()));
        assert!(st.idle.is_empty());
    }

    /// Expired and closed connections go at checkout and in the sweep, and a key left empty is
    /// forgotten.
    #[tokio::test]
    async fn idle_connections_expire_and_empty_keys_are_forgotten() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let client = ProxyClient::new(&Guard::default());
        let url = format!("http://127.0.0.1:{port}/");
        let r = client.send(get(&url)).await.unwrap();
        r.into_body().collect().await.unwrap();
        let pool = &client.inner;
        let slot = Arc::clone(pool.slots.lock().unwrap().map.values().next().unwrap());
        assert_eq!(slot.lock().idle.len(), 1);
        // Not yet expired: taken; long after: dropped, and every one below it.
        let now = Instant::now();
        assert!(slot.checkout(now).is_some());
        let r = client.send(get(&url)).await.unwrap();
        r.into_body().collect().await.unwrap();
        assert_eq!(slot.lock().idle.len(), 1);
        assert!(slot.checkout(now + IDLE_TIMEOUT + SWEEP_EVERY).is_none());
        assert!(slot.lock().idle.is_empty());
        // The sweep (due once `SWEEP_EVERY` has passed) forgets the empty key, unless a
        // response still holds its slot.
        drop(slot);
        let r = client.send(get(&url)).await.unwrap();
        r.into_body().collect().await.unwrap();
        let later = Instant::now() + IDLE_TIMEOUT + SWEEP_EVERY;
        let (_, other) = Origin::split(get("http://other:1/")).unwrap();
        assert!(pool.slot(&other, later).is_ok());
        let slots = pool.slots.lock().unwrap();
        assert_eq!(slots.map.len(), 1, "only the key just looked up is left");
        assert!(slots.map.keys().all(|k| &*k.authority == "other:1"));
    }

    /// Every proxied call's future holds the client's, and futures move by copying: the
    /// client's is a box, and connecting (TLS, handshakes) is boxed inside it so that the
    /// allocation stays small for calls that reuse a connection.
    #[test]
    fn the_send_future_stays_small() {
        let client = ProxyClient::new(&Guard::default());
        let outer = std::mem::size_of_val(&client.send(get("http://127.0.0.1:9/")));
        let inner = std::mem::size_of_val(&client.inner.send(get("http://127.0.0.1:9/")));
        assert!(outer <= 16, "{outer} bytes");
        assert!(inner <= 2048, "{inner} bytes");
    }
}
