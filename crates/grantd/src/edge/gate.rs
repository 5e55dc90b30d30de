//! The checks every request passes before routing, as one tower service around the router:
//! a request target with NUL or invalid UTF-8 is a 400 (`validate::uri_problem`), and an address
//! blocked for wrong API keys gets a 429 unless it presents the secret key (`throttle`); answers
//! marked `WrongCredential` count against the address.
//!
//! One service with a concrete future, wrapped once around the whole router, rather than axum
//! middleware (`from_fn`) layered onto every route: each such layer clones its part of the stack,
//! boxes a service and two futures and moves the request apart and back on every request.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tower::{Layer, Service};

use super::throttle::{Scope, WrongCredential, retry_after_secs, too_many_attempts};
use super::{ApiError, AppState};

/// `Gate` around a service.
#[derive(Clone)]
pub struct GateLayer {
    state: AppState,
}

impl GateLayer {
    pub fn new(state: AppState) -> GateLayer {
        GateLayer { state }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Gate<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> GateFuture<S::Future> {
        if let Some(msg) = crate::validate::uri_problem(req.uri()) {
            return GateFuture::answered(
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", msg).into_response(),
            );
        }
        let addr = super::ws_limits::client_addr(req.extensions());
        let now = self.state.core.clock.now();
        if let Some(until) = self.state.throttle.blocked_addr(Scope::ApiKey, addr, now) {
            // Blocked: any credential but the secret key (or the metrics token) is refused
            // unread; requests without one (`/health`, the OAuth callback, pages) go through.
            let config = &self.state.core.config;
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or(""))
                .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
            if let Some(token) = presented {
                let right = config.secret_key.ct_eq(token)
                    || config
                        .metrics_token
                        .as_ref()
                        .is_some_and(|m| m.ct_eq(token));
                if !right {
                    return GateFuture::answered(too_many_attempts(retry_after_secs(until, now)));
                }
            }
        }
        GateFuture(Inner::Called {
            fut: self.inner.call(req),
            state: self.state.clone(),
            addr,
            now,
        })
    }
}

/// The response of `Gate`: the router's, or the gate's own answer.
pub struct GateFuture<F>(Inner<F>);

enum Inner<F> {
    Called {
        fut: F,
        state: AppState,
        addr: Option<IpAddr>,
        now: DateTime<Utc>,
    },
    Answered(Option<Response>),
}

impl<F> GateFuture<F> {
    fn answered(r: Response) -> Self {
        GateFuture(Inner::Answered(Some(r)))
    }
}

impl<F> Future for GateFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is `Unpin` (`F` by the bound), so the future may be reached mutably.
        match &mut self.get_mut().0 {
            Inner::Called {
                fut,
                state,
                addr,
                now,
            } => {
                let r = std::task::ready!(Pin::new(fut).poll(cx))?;
                if r.extensions().get::<WrongCredential>().is_some() {
                    state.throttle.failed(Scope::ApiKey, *addr, None, *now);
                }
                Poll::Ready(Ok(r))
            }
            Inner::Answered(r) => Poll::Ready(Ok(r.take().expect("polled after completion"))),
        }
    }
}
