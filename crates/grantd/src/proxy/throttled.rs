//! The proxy's hook into the per-tenant throttle (`connections::throttle`): ask before sending,
//! report the answer after. A call its tenant's window would hold longer than
//! `GRANTD_THROTTLE_MAX_WAIT_SECS` (or past the call's deadline) is not sent: the caller gets a
//! 429 in Nango's error envelope (`tenant_throttled`) with the `Retry-After` left. Also the
//! integration's `User-Agent` decoration (Microsoft's throttling guidance).

use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::connections::throttle::{Tenant, Throttled, USER_AGENT_KEY, carries_signal};
use crate::edge::{ApiError, AppState};
use crate::model::Integration;
use crate::throttle::Priority;

/// Waits out the tenant's throttling, within the configured maximum and the call's deadline.
/// While no tenant is throttled (nearly always) this is one atomic load: the tenant's key is not
/// even built. The waiting itself is boxed, so its future does not enlarge (and get copied
/// with) every proxied call's.
pub async fn admit(st: &AppState, tenant: Tenant<'_>, deadline: Instant) -> Result<(), Throttled> {
    if st.core.throttle_quiet() {
        return Ok(());
    }
    let budget = st
        .core
        .config
        .throttle_max_wait
        .min(deadline.saturating_duration_since(Instant::now()));
    let key = tenant.key();
    Box::pin(st.core.throttle_admit(&key, Priority::Interactive, budget)).await
}

/// Reports an upstream answer (429/503 `Retry-After`, `RateLimit-*` headers); a plain success
/// costs a status comparison and one header lookup. Reporting (a database write) is boxed: its
/// future would otherwise be part of, and copied with, every proxied call's.
pub async fn observe(st: &AppState, tenant: Tenant<'_>, status: u16, headers: &HeaderMap) {
    if carries_signal(status, headers) {
        let key = tenant.key();
        Box::pin(st.core.throttle_observe(&key, status, headers)).await;
    }
}

/// Microsoft's traffic decoration: the integration's `user_agent` as `User-Agent`, unless the
/// caller sent one (`Nango-Proxy-User-Agent`). The integration is the one `Core::credentials`
/// already found for the call: no second lookup.
pub fn decorate(integration: &Integration, headers: &mut HeaderMap) {
    if headers.contains_key(header::USER_AGENT) {
        return;
    }
    if let Some(ua) = integration
        .integration_config
        .get(USER_AGENT_KEY)
        .and_then(|ua| HeaderValue::from_str(ua).ok())
    {
        headers.insert(header::USER_AGENT, ua);
    }
}

/// The answer to a call shed because its tenant is throttled: 429 `tenant_throttled` with the
/// time left as `Retry-After` (set by `ApiError`, like every other error that carries one).
pub fn shed(t: Throttled) -> Response {
    let secs = t.retry_after_secs();
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "tenant_throttled",
        format!(
            "Microsoft is throttling this connection's tenant; no request was sent. Retry after {secs} s"
        ),
    );
    e.retry_after = Some(u32::try_from(secs).unwrap_or(u32::MAX));
    e.into_response()
}
