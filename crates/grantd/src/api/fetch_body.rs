//! The body of `GET /connections/{id}` (the credential fetch an app makes before every Graph
//! call), rendered once per connection version and served again with only `last_fetched_at`
//! written per call.
//!
//! Everything else in the body is a function of the connection, the integration (the client id
//! of app-only credentials), two provider flags and the `refresh_token` option. The store's cache
//! hands out one `Arc<Connection>` per version and replaces it on every write (refresh, reconnect,
//! metadata, patch, delete; on PostgreSQL also on other instances' writes; and at least every
//! `store::cache::TTL`), and a refresh returns a new one, so the `Arc`'s identity *is* the version.
//! What varies per call — the options' validation, the provider_config_key check, the
//! expiry-driven and forced refresh, `last_fetched_at` — happens on every call before this (in
//! `connections::show` and `Core::credentials`) or is written in here.
//!
//! Bound: each worker thread keeps `SLOTS` bodies, one slot per connection id modulo `SLOTS`
//! (a colliding connection replaces the body), so memory is at most threads × `SLOTS` × body size
//! (~2–5 KB each with a Microsoft token) whatever the number of connections.
//! Entries hold `Weak` references: they keep the `Arc`'s allocation (so its address cannot be
//! reused by another connection while an entry names it) but not the connection's contents.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::connections::fetch_value;
use super::{json_out, render};
use crate::connections::Fresh;
use crate::model::{Connection, Integration};

/// Bodies kept per worker thread.
const SLOTS: usize = 32;

/// The field written per call.
const PER_CALL: &str = "last_fetched_at";

/// A body rendered without `last_fetched_at`'s value: `body[..at]`, the value, `body[at..]`.
struct Rendered {
    conn: Weak<Connection>,
    integration: Weak<Integration>,
    /// What else the body depends on: the `refresh_token` option and the provider's flags.
    opts: (bool, bool, bool),
    body: Box<[u8]>,
    at: usize,
}

thread_local! {
    static KEPT: RefCell<[Option<Rendered>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

/// `200` with the connection of `fresh` as `GET /connections/{id}` answers it.
pub fn respond(fresh: &Fresh<'_>, with_rt: bool, now: &DateTime<Utc>) -> Response {
    match body(fresh, with_rt, now) {
        Ok(b) => render::json_bytes(StatusCode::OK, b),
        // Only a `Serialize` impl that fails could get here; the wire types have none.
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            super::ApiError::internal().into_response()
        }
    }
}

/// The body's bytes: those of `fetch_value(…, Some(ts(now)))` written by `json_out`.
pub fn body(
    fresh: &Fresh<'_>,
    with_rt: bool,
    now: &DateTime<Utc>,
) -> Result<Vec<u8>, json_out::Error> {
    let (conn, integration) = (&fresh.connection, &fresh.integration);
    let opts = (
        with_rt,
        fresh.provider.sharepoint_token,
        fresh.provider.is_app_only(),
    );
    let slot = conn.id.rem_euclid(SLOTS as i64) as usize;
    let served = KEPT.with_borrow(|kept| {
        let r = kept[slot].as_ref()?;
        // Same address while `r` holds a `Weak` to it: the same allocation, the same version.
        let same = std::ptr::eq(r.conn.as_ptr(), Arc::as_ptr(conn))
            && std::ptr::eq(r.integration.as_ptr(), Arc::as_ptr(integration))
            && r.opts == opts;
        same.then(|| with_time(&r.body, r.at, now))
    });
    if let Some(b) = served {
        return Ok(b);
    }
    let template = fetch_value(conn, integration, fresh.provider, with_rt, None);
    // Sized for the usual body (a Microsoft access token and its raw token response).
    let (mut body, marked) = json_out::to_vec_marking(&template, 8192, PER_CALL)?;
    let Some(at) = marked else {
        // Not reachable with `wire::Connection` (the field is there); render the plain way.
        let v = fetch_value(
            conn,
            integration,
            fresh.provider,
            with_rt,
            Some(render::ts(now)),
        );
        return json_out::to_vec_with_capacity(&v, 8192);
    };
    body.drain(at.clone());
    let r = Rendered {
        conn: Arc::downgrade(conn),
        integration: Arc::downgrade(integration),
        opts,
        body: body.into_boxed_slice(),
        at: at.start,
    };
    let b = with_time(&r.body, r.at, now);
    KEPT.with_borrow_mut(|kept| kept[slot] = Some(r));
    Ok(b)
}

/// `body` with `"now"` (as `render::ts` writes it, a JSON string) at `at`.
fn with_time(body: &[u8], at: usize, now: &DateTime<Utc>) -> Vec<u8> {
    let (head, tail) = body.split_at(at);
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(head);
    match render::ts_fixed(now) {
        Some(b) => json_out::write_str(&mut out, std::str::from_utf8(&b).expect("ASCII")),
        None => json_out::write_str(&mut out, &render::ts(now)),
    }
    out.extend_from_slice(tail);
    out
}
