//! The checks every request passes before routing: a request target with NUL or invalid UTF-8
//! is a 400 (`validate::uri_problem`), and an address blocked for wrong API keys gets a 429
//! unless it presents the secret key (`throttle`); answers marked `WrongCredential` count
//! against the address.
//!
//! Two plain functions the server's front door (`front`) calls around dispatching, with the
//! client address it keeps per connection: no tower layer, no future of its own, nothing put
//! into the request's extensions.

use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::throttle::{Scope, WrongCredential, retry_after_secs, too_many_attempts};
use super::{ApiError, AppState};

/// What `after` needs from `before`.
pub struct Passed {
    addr: Option<IpAddr>,
}

/// The checks before dispatching: `Err` is the answer to send instead.
// The `Err` is a whole `Response`, handed straight back to hyper: boxing it would only add an
// allocation to every refusal.
#[allow(clippy::result_large_err)]
pub fn before(state: &AppState, addr: Option<IpAddr>, req: &Request) -> Result<Passed, Response> {
    if let Some(msg) = crate::validate::uri_problem(req.uri()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", msg).into_response());
    }
    // The clock is read only when some address is throttled: reading it (`Utc::now`, ~400
    // instructions) on every request was most of the gate's cost.
    let blocked = (!state.throttle.is_empty())
        .then(|| {
            let now = state.core.clock.now();
            Some((state.throttle.blocked_addr(Scope::ApiKey, addr, now)?, now))
        })
        .flatten();
    if let Some((until, now)) = blocked {
        // Blocked: any credential but the secret key (or the metrics token) is refused
        // unread; requests without one (`/health`, the OAuth callback, pages) go through.
        let config = &state.core.config;
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
                return Err(too_many_attempts(retry_after_secs(until, now)));
            }
        }
    }
    Ok(Passed { addr })
}

/// After the answer: a wrong credential counts against the address (at the time of the answer).
pub fn after(state: &AppState, passed: Passed, r: &Response) {
    if r.extensions().get::<WrongCredential>().is_some() {
        let now = state.core.clock.now();
        state.throttle.failed(Scope::ApiKey, passed.addr, None, now);
    }
}
