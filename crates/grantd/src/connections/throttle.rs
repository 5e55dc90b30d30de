//! One throttle budget per tenant, across instances: every call grantd sends to Microsoft for a
//! connection (the proxy, the change feed's delta and subscription calls, SharePoint host
//! discovery) asks `throttle_admit` first and reports the answer to `throttle_observe` after.
//!
//! - A 429 (or a 503 with `Retry-After`) throttles the connection's tenant (`tenant_key`) for the
//!   `Retry-After` window: this instance stops at once, the window is written to the
//!   `tenant_throttle` table and announced with `NOTIFY grantd_throttle` (PostgreSQL), so every
//!   other instance stops as soon as its listener hears it (`follow_throttle`).
//! - `RateLimit-*` headers near the limit pace interactive calls and hold background ones
//!   (`crate::throttle`).
//! - A caller waits within its budget or is shed with the time left (`Throttled`): the proxy
//!   answers 429 with `Retry-After`, background work tries again later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::{Core, Error};
use crate::metrics;
use crate::model::{ConfigKey, Connection};
use crate::throttle::{self, Priority, Verdict};

/// Background work (change feed, host discovery) waits at most this long for a throttled tenant
/// before giving the run up for later.
pub const BACKGROUND_MAX_WAIT: Duration = Duration::from_secs(60);

/// The call was not sent: its tenant is throttled for `retry_after` more, longer than the caller
/// may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl Throttled {
    /// `Retry-After` in whole seconds, rounded up (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let s = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 || s == 0 {
            s + 1
        } else {
            s
        }
    }
}

impl From<Throttled> for Error {
    fn from(t: Throttled) -> Error {
        Error::Invalid(format!(
            "Microsoft is throttling this tenant; trying again in {} s",
            t.retry_after_secs()
        ))
    }
}

/// The throttle state a `Core` keeps (one per instance).
pub struct TenantThrottle {
    pub(super) state: Arc<throttle::Throttle>,
    /// Bumped whenever a window is learnt (own answer or another instance's notice).
    events: tokio::sync::watch::Sender<u64>,
    /// Keeps this instance's source of the `grantd_throttled_tenants` gauge registered.
    gauge: std::sync::OnceLock<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

impl Default for TenantThrottle {
    fn default() -> Self {
        TenantThrottle {
            state: Arc::default(),
            events: tokio::sync::watch::Sender::new(0),
            gauge: std::sync::OnceLock::new(),
        }
    }
}

/// The `integration_config` key of Microsoft's recommended traffic decoration, sent as
/// `User-Agent` on the integration's Graph calls (`ISV|Company|App/Version`).
pub const USER_AGENT_KEY: &str = "user_agent";

/// Whether `ua` may be sent as a `User-Agent` value: 1–256 visible ASCII characters or spaces.
pub fn valid_user_agent(ua: &str) -> bool {
    !ua.trim().is_empty() && ua.len() <= 256 && ua.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The tenant a connection's calls count against: its `tenantId` (the token's `tid`); personal
/// accounts all share the consumers tenant, so each of them (and a connection without a tenant)
/// is its own budget, `connection:<id>`. Borrowed from the connection: the key string is built
/// only when the throttle state has to be consulted (`Tenant::key`), which the proxy's hot path
/// skips while no tenant is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenant<'a> {
    /// A work or school tenant id, as the connection stores it.
    Id(&'a str),
    /// A connection that is its own budget (personal account, or no tenant known).
    Connection(i64),
}

impl Tenant<'_> {
    /// The key the throttle state and the `tenant_throttle` table use.
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        match *self {
            Tenant::Id(t) if t.bytes().any(|b| b.is_ascii_uppercase()) => {
                t.to_ascii_lowercase().into()
            }
            Tenant::Id(t) => t.into(),
            Tenant::Connection(id) => format!("connection:{id}").into(),
        }
    }
}

/// The tenant `conn`'s calls count against (see `Tenant`).
pub fn tenant(conn: &Connection) -> Tenant<'_> {
    match conn
        .connection_config
        .get(ConfigKey::TenantId.as_str())
        .and_then(Value::as_str)
    {
        Some(t) if !t.is_empty() && t != crate::microsoft::MSA_TENANT_ID => Tenant::Id(t),
        _ => Tenant::Connection(conn.id),
    }
}

/// `tenant(conn)`'s key, owned.
pub fn tenant_key(conn: &Connection) -> String {
    tenant(conn).key().into_owned()
}

/// Whether an answer carries anything for the throttle to learn (`Core::throttle_observe`):
/// a status of 300 or more, or `RateLimit-*` headers. Cheap enough for every proxied answer.
pub fn carries_signal(status: u16, headers: &HeaderMap) -> bool {
    static REMAINING: axum::http::HeaderName =
        axum::http::HeaderName::from_static("ratelimit-remaining");
    status >= 300 || headers.contains_key(&REMAINING)
}

impl Core {
    /// The integration's `User-Agent` decoration, when it has one.
    pub async fn user_agent(
        &self,
        key: &crate::model::ProviderConfigKey,
    ) -> Option<axum::http::HeaderValue> {
        let integration = self.store.cached_integration(key).await.ok()??;
        let ua = integration.integration_config.get(USER_AGENT_KEY)?;
        axum::http::HeaderValue::from_str(ua).ok()
    }

    /// True while no tenant is throttled or paced on this instance: calls may go without asking.
    pub fn throttle_quiet(&self) -> bool {
        self.throttle.state.quiet()
    }

    /// Waits until a call to `tenant` may be sent, for at most `budget`; `Err` (shed) when the
    /// tenant stays throttled longer.
    pub async fn throttle_admit(
        &self,
        tenant: &str,
        priority: Priority,
        budget: Duration,
    ) -> Result<(), Throttled> {
        let started = Instant::now();
        let mut waited = false;
        let result = loop {
            let left = budget.saturating_sub(started.elapsed());
            match self
                .throttle
                .state
                .decide(tenant, priority, self.clock.now(), left)
            {
                Verdict::Go => break Ok(()),
                Verdict::Wait(d) => {
                    waited = true;
                    tokio::time::sleep(d).await;
                }
                Verdict::Paced(d) => {
                    waited = true;
                    tokio::time::sleep(d).await;
                    break Ok(());
                }
                Verdict::Shed(d) => {
                    metrics::throttle_shed(priority.label());
                    break Err(Throttled { retry_after: d });
                }
            }
        };
        if waited {
            metrics::throttle_wait(priority.label(), started.elapsed());
        }
        result
    }

    /// Learns from Microsoft's answer to a call for `tenant`: a 429/503 with `Retry-After`
    /// throttles the tenant on every instance; `RateLimit-*` headers near the limit slow this
    /// instance's calls down. Returns the window when the answer opened one.
    pub async fn throttle_observe(
        &self,
        tenant: &str,
        status: u16,
        headers: &HeaderMap,
    ) -> Option<Duration> {
        if !carries_signal(status, headers) {
            return None; // the hot path: nothing to learn
        }
        let now = self.clock.now();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let retry_after = header("retry-after").and_then(|v| throttle::retry_after(v, now));
        if let Some(window) = throttle::window(status, retry_after) {
            metrics::throttle_signal("retry_after");
            let until = now + TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX);
            self.learn(tenant, until);
            match self.store.throttle_tenant(tenant, until, now).await {
                Ok(stored) => self.learn(tenant, stored),
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not share a throttled tenant with other instances"
                ),
            }
            tracing::info!(
                tenant,
                status,
                retry_after_secs = window.as_secs(),
                "Microsoft is throttling a tenant"
            );
            return Some(window);
        }
        if let Some(rl) = throttle::parse_rate_limit(header)
            && self.throttle.state.rate_limit(tenant, rl, now)
        {
            metrics::throttle_signal("ratelimit");
            self.throttle.events.send_modify(|n| *n += 1);
        }
        None
    }

    /// The end of `tenant`'s throttling window as this instance knows it.
    pub fn tenant_throttled_until(&self, tenant: &str) -> Option<DateTime<Utc>> {
        self.throttle.state.blocked_until(tenant, self.clock.now())
    }

    /// Changes whenever this instance learns a throttling window (tests wait on it).
    pub fn throttle_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.throttle.events.subscribe()
    }

    fn learn(&self, tenant: &str, until: DateTime<Utc>) {
        if self.throttle.state.block(tenant, until) {
            self.throttle.events.send_modify(|n| *n += 1);
        }
    }

    /// Reads the windows in force from the database, then follows other instances' notices
    /// (PostgreSQL `NOTIFY grantd_throttle`; read again whenever the listener reconnects) for as
    /// long as this `Core` lives. Called once by the wiring.
    pub async fn follow_throttle(&self) -> Result<(), Error> {
        let state = Arc::downgrade(&self.throttle.state);
        let clock = self.clock.clone();
        let gauge: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(move || {
            state
                .upgrade()
                .map_or(0, |s| s.throttled_now(clock.now()) as u64)
        });
        metrics::throttled_tenants_source(Arc::downgrade(&gauge));
        let _ = self.throttle.gauge.set(gauge);

        let mut notices = self.store.throttle_notices();
        self.reload_throttle().await?;
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let notice = notices.recv().await;
                let Some(inner) = weak.upgrade() else { return };
                let core = Core(inner);
                match notice {
                    Ok(p) if !p.is_empty() => core.apply_notice(&p),
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if let Err(e) = core.reload_throttle().await {
                            tracing::warn!(error = %e, "could not read throttled tenants");
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(())
    }

    async fn reload_throttle(&self) -> Result<(), Error> {
        for (tenant, until) in self.store.throttled_tenants(self.clock.now()).await? {
            self.learn(&tenant, until);
        }
        Ok(())
    }

    /// SharePoint host discovery (`GET /v1.0/sites/root`) within the tenant's throttle budget
    /// (the tenant named by `config`'s `tenantId`; unthrottled when there is none yet).
    pub(super) async fn discover_sharepoint_host(
        &self,
        config: &serde_json::Map<String, Value>,
        token: &crate::model::AccessToken,
    ) -> Result<String, crate::microsoft::sharepoint::Error> {
        use crate::microsoft::sharepoint;
        let tenant = config
            .get(ConfigKey::TenantId.as_str())
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && *t != crate::microsoft::MSA_TENANT_ID)
            .map(str::to_ascii_lowercase);
        if let Some(t) = &tenant
            && let Err(th) = self
                .throttle_admit(t, Priority::Background, self.config.throttle_max_wait)
                .await
        {
            return Err(sharepoint::Error::Throttled(th.retry_after_secs()));
        }
        let found =
            sharepoint::discover_host(&self.http, self.config.microsoft.graph_url.as_str(), token)
                .await;
        if let (
            Some(t),
            Err(sharepoint::Error::Graph {
                status, headers, ..
            }),
        ) = (&tenant, &found)
        {
            self.throttle_observe(t, *status, headers).await;
        }
        found
    }

    /// `<tenant>|<RFC 3339 end>` from another instance (or this one's own, already applied).
    fn apply_notice(&self, payload: &str) {
        let Some((tenant, until)) = payload.rsplit_once('|') else {
            return;
        };
        let Ok(until) = DateTime::parse_from_rfc3339(until) else {
            return;
        };
        if self.throttle.state.block(tenant, until.with_timezone(&Utc)) {
            metrics::throttle_signal("notice");
            self.throttle.events.send_modify(|n| *n += 1);
        }
    }
}
