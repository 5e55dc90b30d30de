//! `/proxy`'s connection pool (`outbound::pool`), against a raw TCP upstream that counts the
//! connections it accepts and logs each request head: sequential calls reuse one keep-alive
//! connection (bodies of known length and chunked), the request target is origin-form with a
//! `Host` header, an idle connection the upstream closed is replaced, and a response dropped
//! before its end does not put its busy connection back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grantd_emulator::seed;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::app::{Opts, TestApp};

const KEY: &str = "one-drive";
const SCOPES: &str = "User.Read,Files.ReadWrite.All";

/// A test upstream speaking HTTP/1.1 by hand, so that what reaches it (connections, request
/// heads) is seen as sent. Paths:
/// - `/x`: `{"ok":true}` with `Content-Length`;
/// - `/chunked`: the same body, chunked;
/// - `/close-after`: `/x`, then the connection is closed 100 ms later (an idle keep-alive
///   connection closed by the server, without `Connection: close`);
/// - `/big`: announces 64 MiB and sends it slowly, until the reader goes away.
struct Upstream {
    url: String,
    port: u16,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (a, h) = (Arc::clone(&accepted), Arc::clone(&heads));
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s, Arc::clone(&h)));
            }
        });
        Upstream {
            url: format!("http://127.0.0.1:{port}"),
            port,
            accepted,
            heads,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

const BODY: &[u8] = b"{\"ok\":true}";

async fn serve(mut s: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        // One request head (the proxied calls here are GETs without a body).
        let head = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).into_owned();
                buf.drain(..i + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        heads.lock().unwrap().push(head.clone());
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        let path = path.split('?').next().unwrap_or("");
        let plain = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            BODY.len()
        );
        match path {
            "/x" | "/close-after" => {
                let mut r = plain.into_bytes();
                r.extend_from_slice(BODY);
                if s.write_all(&r).await.is_err() {
                    return;
                }
                if path == "/close-after" {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = s.shutdown().await;
                    return;
                }
            }
            "/chunked" => {
                let mut r = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                for part in [&BODY[..5], &BODY[5..]] {
                    r.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    r.extend_from_slice(part);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
                if s.write_all(&r).await.is_err() {
                    return;
                }
            }
            "/big" => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 67108864\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'a'; 64 * 1024];
                for _ in 0..1024 {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            _ => {
                let _ = s
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        }
    }
}

/// A grantd whose proxy may call `up` (an allowed origin) with a connection's token.
async fn connected_to(up: &Upstream) -> (TestApp, String) {
    let allowed = up.url.clone();
    let app = TestApp::spawn_configured(Opts::default(), |c| c.proxy_allowed_hosts.push(allowed))
        .await
        .expect("SQLite runs");
    app.create_integration(KEY, SCOPES).await;
    let id = app.connect(KEY, "user-1", seed::ADELE_UPN).await;
    (app, id)
}

async fn call(app: &TestApp, id: &str, up: &Upstream, path: &str) -> (u16, bytes::Bytes) {
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        app.proxy(Method::GET, path, KEY, id)
            .header("Base-Url-Override", &up.url)
            .send(),
    )
    .await
    .expect("the proxied call answers in time")
    .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap())
}

#[tokio::test]
async fn sequential_calls_share_one_keep_alive_connection() {
    let up = Upstream::start().await;
    let (app, id) = connected_to(&up).await;
    for i in 0..10 {
        let path = if i % 2 == 0 { "/x" } else { "/chunked" };
        let (status, body) = call(&app, &id, &up, &format!("{path}?i={i}")).await;
        assert_eq!(status, 200, "call {i}");
        assert_eq!(&body[..], BODY, "call {i}");
    }
    assert_eq!(up.accepted(), 1, "10 sequential calls, one connection");
    // The request target is origin-form, with the URI's authority as `Host`.
    let heads = up.heads();
    assert_eq!(heads.len(), 10);
    for (i, head) in heads.iter().enumerate() {
        let mut lines = head.lines();
        let path = if i % 2 == 0 { "/x" } else { "/chunked" };
        assert_eq!(lines.next(), Some(&*format!("GET {path}?i={i} HTTP/1.1")));
        let hosts: Vec<&str> = lines
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.trim())
            .collect();
        assert_eq!(hosts, [format!("127.0.0.1:{}", up.port)], "{head}");
    }
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_replaced() {
    let up = Upstream::start().await;
    let (app, id) = connected_to(&up).await;
    let (status, _) = call(&app, &id, &up, "/close-after").await;
    assert_eq!(status, 200);
    // The upstream closes the pooled connection while it is idle.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..3 {
        let (status, body) = call(&app, &id, &up, "/x").await;
        assert_eq!(status, 200);
        assert_eq!(&body[..], BODY);
    }
    assert_eq!(up.accepted(), 2, "one new connection, then reused");
}

#[tokio::test]
async fn a_response_dropped_before_its_end_does_not_return_its_connection() {
    let up = Upstream::start().await;
    let (app, id) = connected_to(&up).await;
    let mut r = app
        .proxy(Method::GET, "/big", KEY, &id)
        .header("Base-Url-Override", &up.url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    // The busy connection is not reused: the next call gets a new one and its own answer.
    let (status, body) = call(&app, &id, &up, "/x").await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], BODY);
    assert_eq!(up.accepted(), 2);
    let (status, _) = call(&app, &id, &up, "/x").await;
    assert_eq!(status, 200);
    assert_eq!(up.accepted(), 2, "the new connection is reused");
}
