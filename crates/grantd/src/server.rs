//! Wiring: `AppState`, the router and its middleware, and `start`, which serves on a listener
//! it is given until the shutdown future resolves (so tests bind port 0 and run servers side by
//! side).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::connections::Core;
use crate::crypto::Cipher;
pub use crate::edge::AppState;
use crate::edge::WsHub;
use crate::edge::state::AppStateInner;
use crate::store::Store;

/// Outbound client for token endpoints and discovery calls.
pub fn token_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("static client configuration is valid")
}

impl AppState {
    /// Opens the store (applying migrations) and builds the state.
    pub async fn build(config: Config, clock: Option<SharedClock>) -> anyhow::Result<Self> {
        let cipher = Cipher::from_config(&config)?;
        crate::sqlite_file::restrict(&config.database_url)?;
        let store = Store::connect(&config.database_url, cipher).await?;
        let catalog = match std::env::var("GRANTD_PROVIDERS_FILE") {
            Ok(path) if !path.is_empty() => {
                Catalog::with_extra(&path, &std::fs::read_to_string(&path)?)?
            }
            _ => Catalog::builtin(),
        };
        let guard = crate::outbound::Guard::from_config(&config);
        let throttle = Arc::new(crate::edge::throttle::Throttle::new(&config.limits));
        let core = Core::new(
            store,
            catalog,
            config,
            token_client(),
            clock.unwrap_or_else(|| Arc::new(SystemClock)),
        );
        // Throttled tenants: the windows in force, then other instances' notices.
        core.follow_throttle().await?;
        Ok(Self::new(AppStateInner {
            core,
            ws: Arc::new(WsHub::default()),
            proxy_http: crate::proxy::client(&guard),
            guard,
            throttle,
        }))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::api::router())
        .merge(crate::web::router())
        .route("/proxy", any(crate::proxy::handle))
        .route("/proxy/{*path}", any(crate::proxy::handle))
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"result": "ok"})) }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_endpoint))
        .route_layer(crate::metrics::TrackLayer)
        // Unknown routes answer in Nango's error envelope, like every other error.
        .fallback(|| async { crate::edge::ApiError::not_found("Route not found") })
        .with_state(state)
}

/// The whole server: `front` (tracing, the gate, the two hot routes dispatched directly) around
/// the router.
pub fn front(state: AppState) -> crate::front::Front {
    crate::front::Front::new(state.clone(), router(state))
}

async fn ready(State(st): State<AppState>) -> impl IntoResponse {
    match st.core.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"result": "ready", "database": st.core.backend_name()})),
        ),
        Err(e) => {
            tracing::error!(error = %crate::edge::error_chain(&e), "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    serde_json::json!({"result": "unavailable", "reason": "database unreachable"}),
                ),
            )
        }
    }
}

/// Serves until `shutdown` resolves, then writes the pending `last_fetched_at` values. With
/// `runtime::Flavor::PerCore` (`config.runtime`) requests are answered on serving threads of
/// their own (`listener::serve_per_core`); once stopped they idle, kept by the core (`Core::hold`)
/// for the database connections they opened, until the core is dropped.
pub async fn start(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let core = state.core.clone();
    let flusher = core.spawn_fetched_flusher();
    let fan_out = spawn_ws_fan_out(&state);
    let limits = state.core.config.limits.clone();
    let shape = state.core.config.runtime;
    let threads = shape.serve_threads();
    let (served, parked) = if threads == 0 {
        let front = front(state);
        let served = crate::listener::serve(
            listener,
            move |peer| front.clone().per_peer(peer),
            &limits,
            shutdown,
        )
        .await;
        (served, None)
    } else {
        // Each serving thread with its own upstream pool (`thread_state`).
        let make = || {
            let front = front(thread_state(&state));
            move |peer| front.clone().per_peer(peer)
        };
        match crate::listener::serve_per_core(listener, threads, &shape, make, &limits, shutdown)
            .await
        {
            Ok(parked) => (Ok(()), Some(parked)),
            Err(e) => (Err(e), None),
        }
    };
    flusher.abort();
    fan_out.abort();
    if let Err(e) = core.flush_fetched().await {
        tracing::error!(error = %crate::edge::error_chain(&e), "could not write last_fetched_at at shutdown");
    }
    if let Some(parked) = parked {
        core.hold(parked);
    }
    served
}

/// The state for one serving thread (`runtime::Flavor::PerCore`): everything shared but the
/// proxy's upstream pool, whose connections' tasks run on the thread that made them.
fn thread_state(state: &AppState) -> AppState {
    AppState::new(AppStateInner {
        core: state.core.clone(),
        ws: state.ws.clone(),
        proxy_http: crate::proxy::client(&state.guard),
        guard: state.guard.clone(),
        throttle: state.throttle.clone(),
    })
}

/// `GET /metrics` behind a credential: the secret key or `GRANTD_METRICS_TOKEN` as a bearer
/// token (per-route counts and refresh failures by cause are not for anyone who can connect).
async fn metrics_endpoint(
    axum::extract::State(st): axum::extract::State<crate::edge::AppState>,
    parts: axum::http::request::Parts,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let token = match crate::edge::bearer(&parts) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let config = &st.core.config;
    let metrics_token = config
        .metrics_token
        .as_ref()
        .is_some_and(|m| m.ct_eq(&token));
    if metrics_token || config.secret_key.ct_eq(&token) {
        crate::metrics::handler().await.into_response()
    } else {
        crate::edge::wrong_secret_key(&token).into_response()
    }
}

/// The popup's outcome across instances: a final WebSocket frame for a socket this instance
/// does not hold is announced to the others (PostgreSQL `NOTIFY grantd_ws`), and frames they
/// announce are delivered to the sockets held here. On SQLite (one instance) nothing travels.
fn spawn_ws_fan_out(state: &AppState) -> tokio::task::JoinHandle<()> {
    let (tx, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<String>();
    state.ws.set_remote(tx);
    let mut incoming = state.core.ws_outcomes();
    let (core, hub) = (state.core.clone(), state.ws.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(payload) = outgoing.recv() => {
                    if let Err(e) = core.announce_ws_outcome(&payload).await {
                        tracing::warn!(error = %crate::edge::error_chain(&e), "could not hand a WebSocket outcome to the other instances");
                    }
                }
                got = incoming.recv() => match got {
                    Ok(payload) => {
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else {
                            continue;
                        };
                        if let Some(id) = v["id"].as_str() {
                            hub.finish_local(id, &v["frame"]);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    })
}
