//! Process-wide metrics in Prometheus text format, served at `GET /metrics`.
//!
//! Like Prometheus' default registry these are process globals, so any module records with a
//! plain function call (`metrics::refresh(RefreshOutcome::Ok)`, `metrics::proxy_retry("throttled")`)
//! and nothing has to be threaded through. Several servers in one process (tests) share them:
//! assert on differences, never on absolute values.
//!
//! Recording is lock-free once a label set exists (a read lock plus an atomic add); label values
//! must come from small fixed sets (route templates, status codes, causes), never from input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

/// Latency buckets in seconds: 100 µs to 30 s.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

/// A counter family keyed by label values.
struct Counters {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    /// Each label set's counter is allocated once and never freed (label sets come from small
    /// fixed sets, so they are few), so a hot caller can keep a `&'static` to it (`Handle`)
    /// instead of finding it again on every call.
    values: RwLock<BTreeMap<Vec<String>, &'static AtomicU64>>,
}

impl Counters {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            values: RwLock::new(BTreeMap::new()),
        }
    }

    fn add(&self, label_values: &[&str], n: u64) {
        self.series(label_values).fetch_add(n, Ordering::Relaxed);
    }

    /// The counter of one label set, created at zero on first use.
    fn series(&self, label_values: &[&str]) -> &'static AtomicU64 {
        {
            let map = self.values.read().expect("metrics lock poisoned");
            if let Some(c) = lookup(&map, label_values) {
                return c;
            }
        }
        let mut map = self.values.write().expect("metrics lock poisoned");
        map.entry(label_values.iter().map(|s| (*s).to_owned()).collect())
            .or_insert_with(|| Box::leak(Box::new(AtomicU64::new(0))))
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        let map = self.values.read().expect("metrics lock poisoned");
        for (values, c) in map.iter() {
            let _ = writeln!(
                out,
                "{}{} {}",
                self.name,
                label_text(self.labels, values, None),
                c.load(Ordering::Relaxed)
            );
        }
    }
}

fn lookup<V: Copy>(map: &BTreeMap<Vec<String>, V>, label_values: &[&str]) -> Option<V> {
    // BTreeMap<Vec<String>> cannot be queried by &[&str] directly; label sets are tiny, and the
    // number of distinct sets small, so a scan of the range is cheap.
    map.iter().find_map(|(k, v)| {
        (k.len() == label_values.len() && k.iter().zip(label_values).all(|(a, b)| a == b))
            .then_some(*v)
    })
}

/// One counter series, found once: for call sites that record the same label set on every
/// request (cache lookups), where finding the series again cost ~170 instructions a call.
struct Handle {
    labels: &'static [&'static str],
    series: std::sync::OnceLock<&'static AtomicU64>,
}

impl Handle {
    const fn new(labels: &'static [&'static str]) -> Handle {
        Handle {
            labels,
            series: std::sync::OnceLock::new(),
        }
    }

    fn add(&self, family: &Counters, n: u64) {
        self.series
            .get_or_init(|| family.series(self.labels))
            .fetch_add(n, Ordering::Relaxed);
    }
}

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// A histogram family keyed by label values.
struct Histograms {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    /// Allocated once per label set and never freed, like `Counters`' series.
    values: RwLock<BTreeMap<Vec<String>, &'static Histogram>>,
}

impl Histograms {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            values: RwLock::new(BTreeMap::new()),
        }
    }

    fn observe(&self, label_values: &[&str], d: Duration) {
        self.series(label_values).observe(d);
    }

    /// The histogram of one label set, created empty on first use.
    fn series(&self, label_values: &[&str]) -> &'static Histogram {
        {
            let map = self.values.read().expect("metrics lock poisoned");
            if let Some(h) = lookup(&map, label_values) {
                return h;
            }
        }
        let mut map = self.values.write().expect("metrics lock poisoned");
        map.entry(label_values.iter().map(|s| (*s).to_owned()).collect())
            .or_insert_with(|| Box::leak(Box::new(Histogram::new())))
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        let map = self.values.read().expect("metrics lock poisoned");
        for (values, h) in map.iter() {
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{}_bucket{} {cumulative}",
                    self.name,
                    label_text(self.labels, values, Some(&le.to_string()))
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let labels = label_text(self.labels, values, None);
            let _ = writeln!(
                out,
                "{}_bucket{} {count}",
                self.name,
                label_text(self.labels, values, Some("+Inf"))
            );
            let _ = writeln!(
                out,
                "{}_sum{labels} {}",
                self.name,
                h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(out, "{}_count{labels} {count}", self.name);
        }
    }
}

fn label_text(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

static HTTP_REQUESTS: Counters = Counters::new(
    "grantd_http_requests_total",
    "HTTP requests served, by route template, method and status.",
    &["route", "method", "status"],
);
static HTTP_DURATION: LazyLock<Histograms> = LazyLock::new(|| {
    Histograms::new(
        "grantd_http_request_duration_seconds",
        "Time to the response head, by route template.",
        &["route"],
    )
});
static PROXY_UPSTREAM: Counters = Counters::new(
    "grantd_proxy_upstream_responses_total",
    "Responses received from upstream APIs by the proxy (every attempt), by status; 0 = no response.",
    &["status"],
);
static PROXY_UPSTREAM_DURATION: LazyLock<Histograms> = LazyLock::new(|| {
    Histograms::new(
        "grantd_proxy_upstream_duration_seconds",
        "Time from sending a proxied request upstream to its response head (every attempt).",
        &[],
    )
});
static PROXY_RETRIES: Counters = Counters::new(
    "grantd_proxy_retries_total",
    "Proxied calls retried, by reason (throttled, server_error, network, unauthorized, retry_on).",
    &["reason"],
);
static PROXY_REFUSED: Counters = Counters::new(
    "grantd_proxy_refused_total",
    "Proxied calls refused before reaching upstream, by reason.",
    &["reason"],
);
static REFRESHES: Counters = Counters::new(
    "grantd_refreshes_total",
    "Credential refreshes, by outcome (ok, failed).",
    &["outcome"],
);
static REFRESH_FAILURES: Counters = Counters::new(
    "grantd_refresh_failures_total",
    "Failed credential refreshes, by cause (reconnect, transient, misconfigured, …).",
    &["cause"],
);
static TOKEN_CACHE: Counters = Counters::new(
    "grantd_token_cache_total",
    "Connection and integration cache lookups, by result (hit, miss) and kind.",
    &["kind", "result"],
);

static SYNC_RUNS: Counters = Counters::new(
    "grantd_sync_runs_total",
    "Change-feed delta runs, by outcome (ok, failed).",
    &["outcome"],
);
static SYNC_RECORDS: Counters = Counters::new(
    "grantd_sync_records_total",
    "Change-feed record changes committed, by action (added, updated, deleted).",
    &["action"],
);
static SYNC_NOTIFICATIONS: Counters = Counters::new(
    "grantd_sync_notifications_total",
    "Graph change and lifecycle notifications received, by result (accepted, rejected).",
    &["result"],
);
static SYNC_SUBSCRIPTIONS: Counters = Counters::new(
    "grantd_sync_subscription_calls_total",
    "Graph subscription creations and renewals, by outcome (created, renewed, failed).",
    &["outcome"],
);

static SYNC_LAG: LazyLock<Histograms> = LazyLock::new(|| {
    Histograms::new(
        "grantd_sync_change_lag_seconds",
        "Change feed: from an item's change at Microsoft (its lastModifiedDateTime) to the commit \
         that queues its sync webhook (sent at once), per changed item of incremental runs.",
        &[],
    )
});

static THROTTLE_WAIT: LazyLock<Histograms> = LazyLock::new(|| {
    Histograms::new(
        "grantd_throttle_wait_seconds",
        "Time calls to Microsoft waited for a throttled tenant (window or pacing), by priority \
         (interactive, background).",
        &["priority"],
    )
});
static THROTTLE_SHED: Counters = Counters::new(
    "grantd_throttle_shed_total",
    "Calls to Microsoft not sent because their tenant is throttled beyond what the caller may \
     wait, by priority (interactive: answered 429 with Retry-After; background: run later).",
    &["priority"],
);
static THROTTLE_SIGNALS: Counters = Counters::new(
    "grantd_throttle_signals_total",
    "Throttling signals received from Microsoft, by kind (retry_after: a 429/503 window; \
     ratelimit: RateLimit-* headers near the limit; notice: a window another instance announced).",
    &["kind"],
);
/// Tenants throttled now, per `connections::throttle` instance (several in one test process):
/// a function per instance, summed when rendered.
static THROTTLED_TENANTS: RwLock<Vec<std::sync::Weak<dyn Fn() -> u64 + Send + Sync>>> =
    RwLock::new(Vec::new());

/// Records a wait for a throttled tenant.
pub fn throttle_wait(priority: &'static str, d: Duration) {
    THROTTLE_WAIT.observe(&[priority], d);
}

/// Records a call shed because its tenant is throttled.
pub fn throttle_shed(priority: &'static str) {
    THROTTLE_SHED.add(&[priority], 1);
}

/// Records a throttling signal (`retry_after`, `ratelimit`, `notice`).
pub fn throttle_signal(kind: &'static str) {
    THROTTLE_SIGNALS.add(&[kind], 1);
}

/// Registers a source of the gauge `grantd_throttled_tenants` (dropped sources are skipped).
pub fn throttled_tenants_source(f: std::sync::Weak<dyn Fn() -> u64 + Send + Sync>) {
    let mut v = THROTTLED_TENANTS.write().expect("metrics lock poisoned");
    v.retain(|w| w.strong_count() > 0);
    v.push(f);
}

fn render_throttle(out: &mut String) {
    THROTTLE_WAIT.render(out);
    THROTTLE_SHED.render(out);
    THROTTLE_SIGNALS.render(out);
    let name = "grantd_throttled_tenants";
    let _ = writeln!(
        out,
        "# HELP {name} Tenants Microsoft is throttling now (a Retry-After window in force)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let n: u64 = THROTTLED_TENANTS
        .read()
        .expect("metrics lock poisoned")
        .iter()
        .filter_map(|w| w.upgrade())
        .map(|f| f())
        .sum();
    let _ = writeln!(out, "{name} {n}");
}

/// Watched drives by subscription state (active, expired, none), set by the sync schedule.
static SYNC_SUBSCRIPTION_STATES: RwLock<[u64; 3]> = RwLock::new([0; 3]);

/// Records one changed item's lag from its change at Microsoft to its committed batch.
pub fn sync_lag(d: Duration) {
    SYNC_LAG.observe(&[], d);
}

/// Sets the gauge `grantd_sync_subscriptions{state}`: watched drives with a live Graph
/// subscription (push), with an expired one, and with none (polling).
pub fn sync_subscription_states(active: u64, expired: u64, none: u64) {
    *SYNC_SUBSCRIPTION_STATES
        .write()
        .expect("metrics lock poisoned") = [active, expired, none];
}

fn render_sync_subscription_states(out: &mut String) {
    let name = "grantd_sync_subscriptions";
    let _ = writeln!(
        out,
        "# HELP {name} Watched drives by Graph subscription state (active = push, expired, none = polling)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let v = *SYNC_SUBSCRIPTION_STATES
        .read()
        .expect("metrics lock poisoned");
    for (state, n) in ["active", "expired", "none"].iter().zip(v) {
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {n}");
    }
}

/// Records the end of a change-feed run.
pub fn sync_run(ok: bool) {
    SYNC_RUNS.add(&[if ok { "ok" } else { "failed" }], 1);
}

/// Records a committed batch's changes.
pub fn sync_records(added: u64, updated: u64, deleted: u64) {
    for (action, n) in [("added", added), ("updated", updated), ("deleted", deleted)] {
        if n > 0 {
            SYNC_RECORDS.add(&[action], n);
        }
    }
}

pub fn sync_notification(accepted: bool) {
    SYNC_NOTIFICATIONS.add(&[if accepted { "accepted" } else { "rejected" }], 1);
}

/// `outcome`: `created`, `renewed` or `failed`.
pub fn sync_subscription(outcome: &'static str) {
    SYNC_SUBSCRIPTIONS.add(&[outcome], 1);
}

/// How a refresh ended.
#[derive(Debug, Clone, Copy)]
pub enum RefreshOutcome<'a> {
    Ok,
    /// Failed; `cause` is a stable word such as the classification (`reconnect`, `transient`,
    /// `misconfigured`).
    Failed {
        cause: &'a str,
    },
}

/// Records a refresh (called by the refresh code).
pub fn refresh(outcome: RefreshOutcome<'_>) {
    match outcome {
        RefreshOutcome::Ok => REFRESHES.add(&["ok"], 1),
        RefreshOutcome::Failed { cause } => {
            REFRESHES.add(&["failed"], 1);
            REFRESH_FAILURES.add(&[cause], 1);
        }
    }
}

/// Records one served HTTP request. `route` is the matched route template, never the raw path.
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    HTTP_REQUESTS.add(&[route, method_label(method), status_str(status)], 1);
    HTTP_DURATION.observe(&[route], elapsed);
}

/// A route template whose duration histogram is found once (the routes `front` dispatches).
pub struct Route {
    template: &'static str,
    duration: std::sync::OnceLock<&'static Histogram>,
}

impl Route {
    pub const fn new(template: &'static str) -> Route {
        Route {
            template,
            duration: std::sync::OnceLock::new(),
        }
    }

    /// `http_request` for this route.
    pub fn request(&self, method: &str, status: u16, elapsed: Duration) {
        HTTP_REQUESTS.add(
            &[self.template, method_label(method), status_str(status)],
            1,
        );
        self.duration
            .get_or_init(|| HTTP_DURATION.series(&[self.template]))
            .observe(elapsed);
    }
}

/// Records one upstream attempt of the proxy; `status` 0 means no response (network error).
pub fn proxy_upstream(status: u16, elapsed: Duration) {
    PROXY_UPSTREAM.add(&[status_str(status)], 1);
    PROXY_UPSTREAM_DURATION.observe(&[], elapsed);
}

pub fn proxy_retry(reason: &'static str) {
    PROXY_RETRIES.add(&[reason], 1);
}

pub fn proxy_refused(reason: &'static str) {
    PROXY_REFUSED.add(&[reason], 1);
}

/// Records a cache lookup: `kind` is `connection` or `integration`.
pub fn cache_lookup(kind: &'static str, hit: bool) {
    // Two lookups on every proxied call and credential fetch: their series are found once.
    static SERIES: [Handle; 4] = [
        Handle::new(&["connection", "hit"]),
        Handle::new(&["connection", "miss"]),
        Handle::new(&["integration", "hit"]),
        Handle::new(&["integration", "miss"]),
    ];
    let at = match kind {
        "connection" => 0,
        "integration" => 2,
        _ => return TOKEN_CACHE.add(&[kind, if hit { "hit" } else { "miss" }], 1),
    };
    SERIES[at + usize::from(!hit)].add(&TOKEN_CACHE, 1);
}

/// The method as a label value: the client picks it (`/proxy` takes any), so anything but the
/// standard methods is `other` — one series per invented method would grow the registry
/// without bound (series are never freed).
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// Status codes as static strings, so recording allocates nothing for the usual ones.
fn status_str(status: u16) -> &'static str {
    const KNOWN: &[(u16, &str)] = &[
        (0, "0"),
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (206, "206"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (409, "409"),
        (413, "413"),
        (414, "414"),
        (416, "416"),
        (424, "424"),
        (429, "429"),
        (431, "431"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    KNOWN
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, t)| *t)
        .unwrap_or(match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        })
}

/// The whole registry in Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let mut out = String::with_capacity(8192);
    HTTP_REQUESTS.render(&mut out);
    HTTP_DURATION.render(&mut out);
    PROXY_UPSTREAM.render(&mut out);
    PROXY_UPSTREAM_DURATION.render(&mut out);
    PROXY_RETRIES.render(&mut out);
    PROXY_REFUSED.render(&mut out);
    REFRESHES.render(&mut out);
    REFRESH_FAILURES.render(&mut out);
    TOKEN_CACHE.render(&mut out);
    SYNC_RUNS.render(&mut out);
    SYNC_RECORDS.render(&mut out);
    SYNC_NOTIFICATIONS.render(&mut out);
    SYNC_SUBSCRIPTIONS.render(&mut out);
    SYNC_LAG.render(&mut out);
    render_sync_subscription_states(&mut out);
    render_throttle(&mut out);
    render_credentials_expiry(&mut out);
    out
}

/// `GET /metrics`.
pub async fn handler() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
}

/// Records every routed request's route, method, status and time to the response head (a
/// `route_layer`: only matched routes). A tower layer with a concrete future rather than a
/// `from_fn` middleware, which would box a service and two futures per request.
#[derive(Clone, Copy)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;
    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S> tower::Service<axum::extract::Request> for Track<S>
where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response>,
    S::Future: Unpin,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> TrackFuture<S::Future> {
        // `MatchedPath` is a shared string: cloning it allocates nothing.
        let route = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .cloned();
        let method = req.method().clone();
        TrackFuture {
            fut: self.inner.call(req),
            route,
            method,
            start: std::time::Instant::now(),
        }
    }
}

pub struct TrackFuture<F> {
    fut: F,
    route: Option<axum::extract::MatchedPath>,
    method: axum::http::Method,
    start: std::time::Instant,
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<axum::response::Response, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        // Every field is `Unpin` (`F` by the bound).
        let this = self.get_mut();
        let out = std::task::ready!(std::pin::Pin::new(&mut this.fut).poll(cx));
        if let Ok(resp) = &out {
            http_request(
                this.route.as_ref().map_or("unmatched", |r| r.as_str()),
                this.method.as_str(),
                resp.status().as_u16(),
                this.start.elapsed(),
            );
        }
        std::task::Poll::Ready(out)
    }
}

// ---------------------------------------------------------------------------------------------
// App credentials expiry (issue 7), recorded by `connections::credential_expiry`. Label values:
// integration keys (admin-controlled, one series per integration with a known expiry) and fixed
// sets (`client_secret` / `certificate`; stages `30`, `14`, `3`, `expired`).

static CREDENTIALS_EXPIRY_WARNINGS: Counters = Counters::new(
    "grantd_credentials_expiry_warnings_total",
    "App credential expiry warnings given, by stage (30, 14, 3 days ahead; expired).",
    &["stage"],
);

/// Days left per integration: key → (credential kind, days, fractional).
static CREDENTIALS_EXPIRY_DAYS: RwLock<BTreeMap<String, (&'static str, f64)>> =
    RwLock::new(BTreeMap::new());

/// Sets the gauge `grantd_integration_credentials_expiry_days` for one integration: days until
/// its `credential` (`client_secret` / `certificate`) expires, negative once expired; `None`
/// removes the integration's series (no known expiry).
pub fn credentials_expiry_days(integration: &str, value: Option<(&'static str, f64)>) {
    let mut map = CREDENTIALS_EXPIRY_DAYS
        .write()
        .expect("metrics lock poisoned");
    match value {
        Some(v) => {
            map.insert(integration.to_owned(), v);
        }
        None => {
            map.remove(integration);
        }
    }
}

/// Records one expiry warning given; `stage` is 30, 14, 3, or 0 (expired).
pub fn credentials_expiry_warning(stage: i32) {
    let stage = match stage {
        0 => "expired",
        3 => "3",
        14 => "14",
        30 => "30",
        _ => "other",
    };
    CREDENTIALS_EXPIRY_WARNINGS.add(&[stage], 1);
}

fn render_credentials_expiry(out: &mut String) {
    CREDENTIALS_EXPIRY_WARNINGS.render(out);
    let name = "grantd_integration_credentials_expiry_days";
    let _ = writeln!(
        out,
        "# HELP {name} Days until the integration's client secret or certificate expires (negative once expired)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let map = CREDENTIALS_EXPIRY_DAYS
        .read()
        .expect("metrics lock poisoned");
    for (key, (credential, days)) in map.iter() {
        let labels = label_text(
            &["integration", "credential"],
            &[key.clone(), (*credential).to_owned()],
            None,
        );
        let _ = writeln!(out, "{name}{labels} {days:.3}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        static C: Counters = Counters::new("t_total", "help", &["a"]);
        C.add(&["x\"y"], 2);
        C.add(&["x\"y"], 1);
        let mut out = String::new();
        C.render(&mut out);
        assert!(out.contains("t_total{a=\"x\\\"y\"} 3"), "{out}");

        let h = Histograms::new("t_seconds", "help", &["r"]);
        h.observe(&["/p"], Duration::from_micros(300));
        h.observe(&["/p"], Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out);
        assert!(
            out.contains("t_seconds_bucket{r=\"/p\",le=\"0.0005\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("t_seconds_bucket{r=\"/p\",le=\"+Inf\"} 2"),
            "{out}"
        );
        assert!(out.contains("t_seconds_count{r=\"/p\"} 2"), "{out}");
    }

    #[test]
    fn refresh_failures_by_cause() {
        refresh(RefreshOutcome::Failed { cause: "reconnect" });
        let out = render();
        assert!(out.contains("grantd_refresh_failures_total{cause=\"reconnect\"}"));
        assert!(out.contains("grantd_refreshes_total{outcome=\"failed\"}"));
    }
}
