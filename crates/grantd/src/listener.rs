//! The accept loop: a connection cap with graceful refusal, a header-read timeout (which also
//! closes idle keep-alive connections: hyper runs it whenever it waits for a request head), and
//! the soft open-file limit raised to the hard one at start. Without them ~1,000 idle sockets
//! from one unauthenticated client exhausted the descriptors, and slowloris connections stayed
//! open for ever.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use crate::config::Limits;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force after.
#[cfg(unix)]
pub fn raise_fd_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
        Some(lim.rlim_cur as u64)
    }
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> Option<u64> {
    None
}

/// The answer to a connection over the cap, written before closing it.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 63\r\nretry-after: 1\r\nconnection: close\r\n\r\n{\"error\":{\"code\":\"overloaded\",\"message\":\"Too many connections\"}}";

/// Serves on `listener` within `limits` until `shutdown` resolves, then lets open connections
/// finish their requests. `per_peer` makes each connection's service from the client's address
/// (which the service keeps, so no request carries it in its extensions unless it needs to).
pub async fn serve<M, S, B>(
    listener: TcpListener,
    per_peer: M,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    M: Fn(SocketAddr) -> S,
    S: tower::Service<Request<Incoming>, Response = axum::http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = axum::body::Bytes, Error = axum::Error> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    accept_loop(listener, per_peer, limits, slots, shutdown).await
}

/// `serve`'s loop, with the connection cap (`slots`) given: shared by every serving thread.
async fn accept_loop<M, S, B>(
    listener: TcpListener,
    per_peer: M,
    limits: &Limits,
    slots: Arc<Semaphore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    M: Fn(SocketAddr) -> S,
    S: tower::Service<Request<Incoming>, Response = axum::http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = axum::body::Bytes, Error = axum::Error> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors: back off briefly instead of spinning.
                    tracing::warn!("accept error: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                "connection from {addr} refused: {} connections open",
                limits.max_connections
            );
            tokio::spawn(async move {
                let mut stream = stream;
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(REFUSAL)).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let first_byte = limits.header_read_timeout;
        let svc = per_peer(addr);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            // The version sniffing waits for the first byte before hyper's own header timer
            // starts: a connection that never sends one is closed here.
            // (`readable()` may wake spuriously; `peek` waits for a byte or the end.)
            let mut one = [0u8; 1];
            match tokio::time::timeout(first_byte, stream.peek(&mut one)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(svc),
            );
            let _ = watcher.watch(conn.into_owned()).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// `serve` on `threads` threads of their own (`runtime::Flavor::PerCore`), each a
/// single-threaded runtime from `shape` that accepts from the same listening socket (its
/// descriptor duplicated: the kernel hands each new connection to one of them) and serves with
/// its own service from `make` (so each thread's state, its upstream connection pool, stays
/// on it). The connection cap is shared.
///
/// Resolves once `shutdown` has resolved and every thread has let its open connections finish.
/// The threads then keep their runtimes running, idle, until the returned `Parked` is dropped:
/// what was registered with them (the socket of a database connection opened while answering a
/// request, now in the pool) keeps working for as long as the caller keeps them.
pub async fn serve_per_core<F, M, S, B>(
    listener: TcpListener,
    threads: usize,
    shape: &crate::runtime::Shape,
    make: F,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Parked>
where
    F: Fn() -> M,
    M: Fn(SocketAddr) -> S + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = axum::http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = axum::body::Bytes, Error = axum::Error> + Send + 'static,
{
    let listener = listener.into_std()?;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Dropping either sender (an early return below) stops, then releases, every thread.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (release, released) = tokio::sync::watch::channel(());
    let parked = Parked { _release: release };
    let mut finished = Vec::with_capacity(threads);
    for i in 0..threads.max(1) {
        let runtime = shape.serving_runtime()?;
        let listener = listener.try_clone()?;
        let per_peer = make();
        let (limits, slots) = (limits.clone(), slots.clone());
        let (mut stopped, mut released) = (stopped.clone(), released.clone());
        let (done, finish) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
        finished.push(finish);
        std::thread::Builder::new()
            .name(format!("grantd-serve-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let served = match TcpListener::from_std(listener) {
                        Ok(l) => {
                            let stop = async move {
                                let _ = stopped.wait_for(|s| *s).await;
                            };
                            accept_loop(l, per_peer, &limits, slots, stop).await
                        }
                        Err(e) => Err(e),
                    };
                    let _ = done.send(served);
                    // Ends when `Parked` is dropped (the sender with it).
                    let _ = released.wait_for(|()| false).await;
                });
            })?;
    }
    drop(listener);
    shutdown.await;
    let _ = stop.send(true);
    let mut result = Ok(());
    for finish in finished {
        let served = finish
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("a serving thread panicked")));
        if let (Err(e), Ok(())) = (served, &result) {
            result = Err(e);
        }
    }
    result.map(|()| parked)
}

/// Serving threads that have finished serving and idle until this is dropped (`serve_per_core`).
pub struct Parked {
    // Dropped: each thread's `released` ends its wait, and with it the thread.
    _release: tokio::sync::watch::Sender<()>,
}
