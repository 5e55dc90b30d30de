//! The proxy's hook into the per-tenant throttle (`connections::throttle`): ask before sending,
//! report the answer after. A call its tenant's window would hold longer than
//! `GRANTD_THROTTLE_MAX_WAIT_SECS` (or past the call's deadline) is not sent: the caller gets a
//! 429 in Nango's error envelope (`tenant_throttled`) with the `Retry-After` left. Also the
//! integration's `User-Agent` decoration (Microsoft's throttling guidance).

use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::connections::throttle::Throttled;
use crate::edge::{ApiError, AppState};
use crate::throttle::Priority;

/// Waits out the tenant's throttling, within the configured maximum and the call's deadline.
pub async fn admit(st: &AppState, tenant: &str, deadline: Instant) -> Result<(), Throttled> {
    let budget = st
        .core
        .config
        .throttle_max_wait
        .min(deadline.saturating_duration_since(Instant::now()));
    st.core
        .throttle_admit(tenant, Priority::Interactive, budget)
        .await
}

/// Reports an upstream answer (429/503 `Retry-After`, `RateLimit-*` headers).
pub async fn observe(st: &AppState, tenant: &str, status: u16, headers: &HeaderMap) {
    st.core.throttle_observe(tenant, status, headers).await;
}

/// Microsoft's traffic decoration: the integration's `user_agent` as `User-Agent`, unless the
/// caller sent one (`Nango-Proxy-User-Agent`).
pub async fn decorate(
    st: &AppState,
    key: &crate::model::ProviderConfigKey,
    headers: &mut HeaderMap,
) {
    if !headers.contains_key(header::USER_AGENT)
        && let Some(ua) = st.core.user_agent(key).await
    {
        headers.insert(header::USER_AGENT, ua);
    }
}

/// The answer to a call shed because its tenant is throttled.
pub fn shed(t: Throttled) -> Response {
    let secs = t.retry_after_secs();
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "tenant_throttled",
        format!(
            "Microsoft is throttling this connection's tenant; no request was sent. Retry after {secs} s"
        ),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}
