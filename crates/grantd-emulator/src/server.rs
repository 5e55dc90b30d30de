//! Starting and stopping an emulator: [`EmulatorConfig`], [`spawn`] on a listener (plus an HTTPS
//! listener when TLS is on) and the [`EmulatorHandle`] tests hold. Assembles the routers of every
//! part and the fault-injection middleware.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::seed::Seed;
use crate::state::{AppState, Settings};

/// How to run an emulator. `Default` is what `grantd emulator` runs.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Seed data; `None` = the built-in seed ([`Seed::default`]).
    pub seed: Option<Seed>,
    /// Size of the generated large file in every drive (default 1 GiB).
    pub large_file_size: u64,
    /// `None`: random 3600–5399 s per token, like Microsoft; `Some(n)`: always `n` seconds.
    pub access_token_lifetime: Option<u64>,
    /// Refresh token inactivity window (default 90 days).
    pub refresh_token_inactivity: u64,
    /// Authorization code lifetime (default 600 s).
    pub code_lifetime: u64,
    /// Also serve HTTPS on a second listener.
    pub tls: bool,
    /// Address of the HTTPS listener; `None` = the HTTP listener's IP with an ephemeral port.
    pub https_addr: Option<SocketAddr>,
    /// Where to write the CA certificate (PEM) clients should trust.
    pub ca_pem_path: Option<PathBuf>,
    /// Origin to use in issuers and endpoint URLs instead of the request's.
    pub public_base_url: Option<String>,
    /// Batching delay of change notifications in ms (`None` = 3000, a few seconds like Graph).
    pub notification_delay_ms: Option<u64>,
    /// Mint upload-session and copy-monitor URLs on Graph's origin instead of the other loopback
    /// name (production's live on another host; default `false`). For clients that cannot reach
    /// a second loopback name, e.g. behind an SSRF guard that only trusts Graph's host.
    pub same_origin_upload_urls: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            seed: None,
            large_file_size: 1 << 30,
            access_token_lifetime: None,
            refresh_token_inactivity: 90 * 24 * 3600,
            code_lifetime: 600,
            tls: false,
            https_addr: None,
            ca_pem_path: None,
            public_base_url: None,
            notification_delay_ms: None,
            same_origin_upload_urls: false,
        }
    }
}

/// A running emulator. Dropping it stops the servers (gracefully); [`EmulatorHandle::shutdown`]
/// also waits for them.
pub struct EmulatorHandle {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// `https://127.0.0.1:PORT` when TLS is on.
    pub https_url: Option<String>,
    /// The CA certificate (PEM) clients must trust for `https_url`.
    pub ca_pem: Option<String>,
    /// Where the CA PEM was written, if configured.
    pub ca_pem_path: Option<PathBuf>,
    /// The emulator's state, for in-process inspection.
    pub state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    https: Option<axum_server::Handle>,
}

impl EmulatorHandle {
    /// A control API client for this emulator.
    pub fn control(&self) -> crate::control::Control {
        crate::control::Control::new(&self.base_url)
    }

    /// Identity authority URL for a tenant segment, e.g. `http://127.0.0.1:P/common`.
    pub fn authority(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.base_url)
    }

    /// Stops accepting, lets in-flight requests finish, waits for the servers.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.https.take() {
            h.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        }
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.https.take() {
            h.graceful_shutdown(Some(std::time::Duration::from_secs(1)));
        }
    }
}

/// The whole emulator as one router (without the per-listener scheme marker).
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::identity::router())
        .merge(crate::control::router())
        .merge(crate::graph::router())
        .merge(crate::files::router())
        .merge(crate::graph::write::router())
        .merge(crate::notify::router())
        .merge(crate::actions::router())
        .merge(crate::sharepoint::router())
        .merge(crate::graph::extra::router())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::faults::middleware,
        ))
        .layer(middleware::from_fn(echo_client_request_id))
        .with_state(state)
}

/// Sets the scheme absolute URLs use, as `x-forwarded-proto`: `https` for requests that arrived
/// over TLS; on the plain listener, what a TLS-terminating proxy in front said
/// (`X-Forwarded-Proto`, else RFC 7239 `Forwarded: proto=…`, first hop only), else nothing.
async fn mark_scheme(https: bool, mut req: Request, next: Next) -> Response {
    let h = req.headers_mut();
    let proto = if https {
        Some("https")
    } else {
        forwarded_proto(h)
    };
    match proto {
        Some(p) => {
            h.insert("x-forwarded-proto", http::HeaderValue::from_static(p));
        }
        None => {
            h.remove("x-forwarded-proto");
        }
    }
    next.run(req).await
}

/// The client-facing scheme a proxy reported, if it is `http` or `https`.
pub fn forwarded_proto(h: &http::HeaderMap) -> Option<&'static str> {
    let pick = |v: &str| match v.trim().trim_matches('"').to_ascii_lowercase().as_str() {
        "https" => Some("https"),
        "http" => Some("http"),
        _ => None,
    };
    if let Some(v) = h.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        return pick(v.split(',').next().unwrap_or(""));
    }
    let fwd = h.get(http::header::FORWARDED)?.to_str().ok()?;
    let first_hop = fwd.split(',').next()?;
    first_hop.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("proto")
            .then(|| pick(v))
            .flatten()
    })
}

/// Echoes the client's `client-request-id` on every response that does not carry one yet
/// (faults, identity endpoints, downloads), as Microsoft's front ends do.
async fn echo_client_request_id(req: Request, next: Next) -> Response {
    let id = req.headers().get("client-request-id").cloned();
    let mut resp = next.run(req).await;
    if let Some(id) = id {
        resp.headers_mut().entry("client-request-id").or_insert(id);
    }
    resp
}

/// Starts an emulator on `listener` (and on an HTTPS listener when `config.tls`).
pub async fn spawn(
    config: EmulatorConfig,
    listener: TcpListener,
) -> anyhow::Result<EmulatorHandle> {
    let addr = listener.local_addr()?;
    let seed = config.seed.clone().unwrap_or_default();
    let settings = Settings {
        access_token_lifetime: config.access_token_lifetime,
        refresh_token_inactivity: config.refresh_token_inactivity,
        code_lifetime: config.code_lifetime,
        public_base_url: config.public_base_url.clone(),
        large_file_size: config.large_file_size,
        same_origin_upload_urls: config.same_origin_upload_urls,
    };
    // Generating the signing key takes a moment: do it off the async runtime, before serving.
    tokio::task::spawn_blocking(crate::tokens::signing_key).await?;
    let state = AppState::new(settings, seed)?;
    let app = router(state.clone());
    let (stop, mut stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    if let Some(ms) = config.notification_delay_ms {
        state.notifier.set_batch_delay_ms(ms);
    }
    tasks.push(crate::notify::start(state.clone(), stop_rx.clone()));

    let http_app = app
        .clone()
        .layer(middleware::from_fn(|r, n| mark_scheme(false, r, n)));
    tasks.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(
            listener,
            http_app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        {
            tracing::error!(error = %e, "emulator http server failed");
        }
    }));

    let mut https_url = None;
    let mut ca_pem = None;
    let mut https = None;
    if config.tls {
        let material = crate::tls::generate().context("generating the TLS certificate")?;
        let https_addr = config.https_addr.unwrap_or(SocketAddr::new(addr.ip(), 0));
        let std_listener = std::net::TcpListener::bind(https_addr)
            .with_context(|| format!("binding the HTTPS listener on {https_addr}"))?;
        std_listener.set_nonblocking(true)?;
        let https_port = std_listener.local_addr()?.port();
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(material.server_config()?);
        let handle = axum_server::Handle::new();
        let https_app = app.layer(middleware::from_fn(|r, n| mark_scheme(true, r, n)));
        let server = axum_server::from_tcp_rustls(std_listener, rustls).handle(handle.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server
                .serve(https_app.into_make_service_with_connect_info::<SocketAddr>())
                .await
            {
                tracing::error!(error = %e, "emulator https server failed");
            }
        }));
        if let Some(path) = &config.ca_pem_path {
            std::fs::write(path, &material.ca_pem)
                .with_context(|| format!("writing the CA certificate to {}", path.display()))?;
        }
        https_url = Some(format!("https://{}", host_port(addr.ip(), https_port)));
        ca_pem = Some(material.ca_pem);
        https = Some(handle);
    }
    Ok(EmulatorHandle {
        base_url: format!("http://{}", host_port(addr.ip(), addr.port())),
        https_url,
        ca_pem,
        ca_pem_path: config.ca_pem_path.filter(|_| config.tls),
        state,
        stop,
        tasks,
        https,
    })
}

fn host_port(ip: std::net::IpAddr, port: u16) -> String {
    let ip = if ip.is_unspecified() {
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        ip
    };
    SocketAddr::new(ip, port).to_string()
}
