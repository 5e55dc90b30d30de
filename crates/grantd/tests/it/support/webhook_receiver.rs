//! A tiny webhook receiver for tests: an axum server on an ephemeral port that records every
//! POST (headers and exact body bytes) and can be switched "down" (answering 503) to exercise
//! retries. `verify` checks grantd's two Nango signatures.
#![allow(dead_code)] // shared by several test modules; each uses a part

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
    /// When the receiver got it.
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("webhook body is JSON")
    }
    pub fn delivery_id(&self) -> String {
        self.headers["x-grantd-delivery-id"]
            .to_str()
            .unwrap()
            .to_owned()
    }
}

struct Inner {
    down: AtomicBool,
    /// Accepted deliveries (2xx answered).
    received: Mutex<Vec<Received>>,
    /// Requests refused while down.
    refused: Mutex<usize>,
    /// Bumped on every accepted delivery, so tests wait on it instead of sleeping.
    arrivals: tokio::sync::watch::Sender<usize>,
    /// Runs (on a blocking thread) before the n-th accepted delivery (0-based) is answered.
    before_answer: Mutex<Option<BeforeAnswer>>,
}

type BeforeAnswer = Arc<dyn Fn(usize) + Send + Sync>;

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Inner>,
}

async fn hook(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if inner.down.load(Ordering::SeqCst) {
        *inner.refused.lock().unwrap() += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let n = inner.received.lock().unwrap().len();
    let before = inner.before_answer.lock().unwrap().clone();
    if let Some(f) = before {
        tokio::task::spawn_blocking(move || f(n)).await.unwrap();
    }
    inner.received.lock().unwrap().push(Received {
        headers,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
        at: std::time::Instant::now(),
    });
    inner.arrivals.send_modify(|n| *n += 1);
    StatusCode::OK
}

impl Receiver {
    pub async fn spawn() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
        let inner = Arc::new(Inner {
            down: AtomicBool::new(false),
            received: Mutex::default(),
            refused: Mutex::default(),
            arrivals: tokio::sync::watch::channel(0).0,
            before_answer: Mutex::default(),
        });
        let app = Router::new()
            .route("/webhooks", post(hook))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, inner }
    }

    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Runs `f(n)` before answering the n-th (0-based) accepted delivery, e.g. to crash the
    /// database while grantd waits for the answer.
    pub fn before_answer(&self, f: impl Fn(usize) + Send + Sync + 'static) {
        *self.inner.before_answer.lock().unwrap() = Some(Arc::new(f));
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// How many deliveries were accepted so far (no copy of them).
    pub fn count(&self) -> usize {
        *self.inner.arrivals.borrow()
    }

    /// The accepted deliveries from the `from`-th on (a copy of only those).
    pub fn received_from(&self, from: usize) -> Vec<Received> {
        let got = self.inner.received.lock().unwrap();
        got.get(from..)
            .map(<[Received]>::to_vec)
            .unwrap_or_default()
    }

    /// Waits until more than `n` deliveries were accepted (woken by each arrival, no copies:
    /// for runs that receive tens of thousands). Returns the count.
    pub async fn wait_beyond(&self, n: usize) -> usize {
        let mut arrivals = self.inner.arrivals.subscribe();
        loop {
            let now = *arrivals.borrow_and_update();
            if now > n {
                return now;
            }
            arrivals.changed().await.expect("receiver alive");
        }
    }

    /// Waits until `done` holds for the deliveries received so far (woken by each arrival; a
    /// minute without it is a failure, not a timing assertion) and returns them.
    pub async fn wait_until(&self, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let mut arrivals = self.inner.arrivals.subscribe();
        loop {
            arrivals.borrow_and_update();
            let got = self.received();
            if done(&got) {
                return got;
            }
            tokio::time::timeout(std::time::Duration::from_secs(60), arrivals.changed())
                .await
                .expect("the awaited webhooks arrive")
                .expect("receiver alive");
        }
    }

    /// Waits until `n` deliveries were accepted (panics after `limit`: a readiness signal, not
    /// a timing).
    pub async fn wait_for(&self, n: usize, limit: std::time::Duration) -> Vec<Received> {
        tokio::time::timeout(limit, self.wait_until(|got| got.len() >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} webhook(s) did not arrive within {limit:?}"))
    }

    pub fn refused(&self) -> usize {
        *self.inner.refused.lock().unwrap()
    }
}

/// Checks `X-Nango-Hmac-Sha256` (HMAC-SHA256 over the exact body) and the legacy
/// `X-Nango-Signature` (SHA-256 of key ‖ body, which Nango's node client recomputes over
/// `JSON.stringify(JSON.parse(body))`, so the body must be canonical).
pub fn verify(key: &str, r: &Received) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(r.body.as_bytes());
    let hmac_ok = r.headers["x-nango-hmac-sha256"].to_str().unwrap()
        == hex::encode(mac.finalize().into_bytes());
    let mut sha = Sha256::new();
    sha.update(key.as_bytes());
    sha.update(r.body.as_bytes());
    let legacy_ok = r.headers["x-nango-signature"].to_str().unwrap() == hex::encode(sha.finalize());
    let reserialized = serde_json::to_string(&r.json()).unwrap() == r.body;
    hmac_ok && legacy_ok && reserialized
}
