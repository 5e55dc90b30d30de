//! Graph change notifications for drives: `/v1.0/subscriptions` (POST, GET, PATCH to renew,
//! DELETE) with Graph's rules for drive resources and the validation handshake, delivery of
//! change notifications (batched, retried with bounded backoff), lifecycle notifications
//! (`reauthorizationRequired`, `subscriptionRemoved`, `missed`), and the control routes that
//! inspect and steer all of it (subscriptions, deliveries, settings, lifecycle triggers).
//!
//! Changes reach the dispatcher through [`crate::graph::Drives`]' change sink: every lock of the
//! drive model that moved a drive's sequence number reports the drive id, whoever wrote (Graph
//! clients, SharePoint clients, the control API acting as a user). The first change of a
//! subscription starts a batch timer (`batch_delay_ms`); changes until it fires ride along, and
//! one notification per subscription goes out, as Graph batches. Expiry is judged on the
//! emulator clock; a sweeper (every second, and at once when the clock moves or a user is
//! revoked) sends lifecycle events and removes expired subscriptions.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::graph::drives::DriveType;
use crate::graph::error::{GraphError, request_ids};
use crate::graph::path::{self, ItemBase, ItemOp, Route};
use crate::graph::routes::{ApiCtx, ApiScope, origin, resolve_drive};
use crate::state::AppState;
use crate::tokens::AccessClaims;

/// Longest lifetime Graph allows for a driveItem subscription (minutes).
pub const MAX_LIFETIME_MINUTES: i64 = 42_300;
/// How long the notification endpoint has to answer the validation request.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries kept for `GET /_emulator/notifications/deliveries`.
const DELIVERY_LOG: usize = 1000;

/// Run-time knobs (`GET`/`PUT /_emulator/notifications/settings`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotificationSettings {
    /// Changes within this window after the first one go out as one notification.
    pub batch_delay_ms: u64,
    /// First retry delay after a 5xx / 429 / timeout; doubles per attempt.
    pub retry_base_ms: u64,
    /// Attempts per notification before it is given up (`missed` lifecycle event).
    pub max_attempts: u32,
    /// Per-attempt timeout for deliveries.
    pub timeout_ms: u64,
    /// `reauthorizationRequired` goes out this long before expiry (emulator clock).
    pub reauthorize_before_secs: i64,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            batch_delay_ms: 3000,
            retry_base_ms: 1000,
            max_attempts: 4,
            timeout_ms: 10_000,
            reauthorize_before_secs: 3600,
        }
    }
}

/// A subscription as the emulator keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    /// As the client gave it.
    pub resource: String,
    pub drive_id: String,
    pub tenant_id: String,
    pub application_id: String,
    /// The user (delegated) or the app's service principal (app-only).
    pub creator_id: String,
    /// Set for delegated subscriptions: whose grant keeps it alive.
    pub creator_user: Option<String>,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub client_state: Option<String>,
    pub expiration: DateTime<Utc>,
    /// The creator's revocation generation when last (re)authorized.
    pub generation: u64,
    /// `reauthorizationRequired` already sent for the current expiry / generation.
    pub reauthorization_sent: bool,
    /// A batch timer is running.
    #[serde(skip)]
    pending: bool,
}

/// One delivery attempt (or a decision not to send).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub subscription_id: String,
    /// `change` or the lifecycle event name.
    pub kind: String,
    pub url: String,
    pub attempt: u32,
    /// `delivered`, `retrying`, `failed` or `dropped`.
    pub outcome: String,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
    /// RFC 3339 on the emulator clock.
    pub at: String,
    /// The body that was (or would have been) sent.
    pub body: Value,
}

/// Notification counters (also in `GET /_emulator/counters` under `notifications`).
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotificationCounters {
    /// HTTP POSTs made to notification or lifecycle URLs (retries included).
    pub sent: u64,
    /// POSTs answered 2xx.
    pub delivered: u64,
    /// Attempts that failed (non-2xx, timeout, connection error, injected status).
    pub failed: u64,
    /// Notifications given up after `max_attempts` or on a non-retryable answer.
    pub given_up: u64,
    /// Notifications dropped by a `notifications` fault (`down`).
    pub dropped: u64,
    /// Lifecycle notifications among `sent`.
    pub lifecycle_sent: u64,
}

#[derive(Debug, Default)]
struct Inner {
    subs: BTreeMap<String, Subscription>,
    deliveries: Vec<Delivery>,
    /// Deliveries recorded since start (the log keeps the last [`DELIVERY_LOG`]).
    recorded: usize,
    settings: NotificationSettings,
    counters: NotificationCounters,
}

/// The subscriptions and the dispatcher's shared state.
#[derive(Debug, Default)]
pub struct Notifier {
    inner: Mutex<Inner>,
    /// Wakes the lifecycle sweeper (clock moved, user revoked).
    pub wake: Notify,
    /// Signalled after every recorded delivery (for waiting control requests).
    recorded: Notify,
}

impl Notifier {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("notifier lock poisoned")
    }

    pub fn settings(&self) -> NotificationSettings {
        self.lock().settings
    }

    pub fn set_settings(&self, s: NotificationSettings) {
        self.lock().settings = s;
    }

    pub fn set_batch_delay_ms(&self, ms: u64) {
        self.lock().settings.batch_delay_ms = ms;
    }

    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.lock().subs.values().cloned().collect()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    pub fn counters(&self) -> NotificationCounters {
        self.lock().counters
    }

    /// Drops subscriptions, deliveries and counters; keeps the settings.
    pub fn reset(&self) {
        let mut g = self.lock();
        g.subs.clear();
        g.deliveries.clear();
        g.recorded = 0;
        g.counters = NotificationCounters::default();
    }

    pub fn reset_counters(&self) {
        self.lock().counters = NotificationCounters::default();
    }

    fn record(&self, d: Delivery) {
        let mut g = self.lock();
        if g.deliveries.len() >= DELIVERY_LOG {
            g.deliveries.remove(0);
        }
        g.deliveries.push(d);
        g.recorded += 1;
        drop(g);
        self.recorded.notify_waiters();
    }

    /// The delivery log once at least `n` deliveries were recorded since start or reset (or
    /// after `timeout`, whatever was recorded): a readiness signal for tests, no polling.
    pub async fn deliveries_after(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.recorded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().recorded >= n {
                return self.deliveries();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.deliveries();
            }
        }
    }
}

/// Starts the dispatcher (changes → batched notifications) and the lifecycle sweeper.
pub fn start(
    state: AppState,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    state.drives.set_change_sink(tx);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Some(drive_id) = rx.recv() => on_change(&state, &drive_id),
                _ = state.notifier.wake.notified() => sweep(&state),
                _ = tick.tick() => sweep(&state),
            }
        }
    })
}

fn on_change(state: &AppState, drive_id: &str) {
    let now = state.clock.now();
    let (start, delay): (Vec<String>, u64) = {
        let mut g = state.notifier.lock();
        let delay = g.settings.batch_delay_ms;
        let ids = g
            .subs
            .values_mut()
            .filter(|s| s.drive_id == drive_id && s.expiration > now && !s.pending)
            .map(|s| {
                s.pending = true;
                s.id.clone()
            })
            .collect();
        (ids, delay)
    };
    for id in start {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let sub = {
                let mut g = state.notifier.lock();
                match g.subs.get_mut(&id) {
                    Some(s) => {
                        s.pending = false;
                        Some(s.clone())
                    }
                    None => None,
                }
            };
            let Some(sub) = sub.filter(|s| s.expiration > state.clock.now()) else {
                return;
            };
            let body = json!({"value": [{
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": rfc3339(sub.expiration),
                "changeType": sub.change_type,
                "resource": sub.resource,
                "clientState": sub.client_state,
                "tenantId": sub.tenant_id,
            }]});
            let delivered = deliver(&state, &sub, "change", &sub.notification_url, body).await;
            if !delivered {
                send_lifecycle(&state, &sub, "missed").await;
            }
        });
    }
}

/// Graph's spelling: seven fractional digits and `Z`.
fn rfc3339(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// Sends a lifecycle event to the subscription's lifecycle URL (if it has one).
pub async fn send_lifecycle(state: &AppState, sub: &Subscription, event: &str) -> bool {
    let Some(url) = sub.lifecycle_notification_url.clone() else {
        return false;
    };
    let body = json!({"value": [{
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": rfc3339(sub.expiration),
        "tenantId": sub.tenant_id,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    }]});
    deliver(state, sub, event, &url, body).await
}

/// POSTs `body` to `url` with retries; true when a 2xx came back.
async fn deliver(state: &AppState, sub: &Subscription, kind: &str, url: &str, body: Value) -> bool {
    let settings = state.notifier.settings();
    let lifecycle = kind != "change";
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.timeout_ms.max(1)))
        .build()
        .unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let entry = |outcome: &str, status: Option<u16>, error: Option<String>| Delivery {
            subscription_id: sub.id.clone(),
            kind: kind.to_owned(),
            url: url.to_owned(),
            attempt,
            outcome: outcome.to_owned(),
            status,
            error,
            at: state.clock.now().to_rfc3339(),
            body: body.clone(),
        };
        let fault = state.faults.take_notification(url);
        if let Some(ms) = fault.as_ref().and_then(|f| f.latency_ms) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if fault.as_ref().is_some_and(|f| f.down) {
            state.notifier.lock().counters.dropped += 1;
            state
                .notifier
                .record(entry("dropped", None, Some("dropped by a fault".into())));
            return false;
        }
        let result: Result<u16, String> = match fault.as_ref().and_then(|f| f.status) {
            // An injected status stands for the receiver's answer: nothing goes out.
            Some(st) => Ok(st),
            None => {
                {
                    let mut g = state.notifier.lock();
                    g.counters.sent += 1;
                    if lifecycle {
                        g.counters.lifecycle_sent += 1;
                    }
                }
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| {
                        if e.is_timeout() {
                            "timeout".to_owned()
                        } else {
                            "connection error".to_owned()
                        }
                    })
            }
        };
        let retryable = match result {
            Ok(st) if (200..300).contains(&st) => {
                state.notifier.lock().counters.delivered += 1;
                state.notifier.record(entry("delivered", Some(st), None));
                return true;
            }
            Ok(st) => st >= 500 || st == 429,
            Err(_) => true,
        };
        state.notifier.lock().counters.failed += 1;
        let (status, error) = match &result {
            Ok(st) => (Some(*st), None),
            Err(e) => (None, Some(e.clone())),
        };
        if !retryable || attempt >= settings.max_attempts {
            state.notifier.lock().counters.given_up += 1;
            state.notifier.record(entry("failed", status, error));
            return false;
        }
        state.notifier.record(entry("retrying", status, error));
        let backoff = settings
            .retry_base_ms
            .saturating_mul(1 << (attempt - 1).min(16));
        tokio::time::sleep(Duration::from_millis(backoff)).await;
    }
}

/// Lifecycle duties on the emulator clock: `reauthorizationRequired` before expiry and after the
/// creator's grant was revoked; expired subscriptions are removed (`subscriptionRemoved`).
fn sweep(state: &AppState) {
    let now = state.clock.now();
    let generations: BTreeMap<String, u64> = {
        let g = state.grants();
        g.user_generation.clone().into_iter().collect()
    };
    let mut events: Vec<(Subscription, &'static str)> = Vec::new();
    {
        let mut g = state.notifier.lock();
        let window = TimeDelta::seconds(g.settings.reauthorize_before_secs);
        let expired: Vec<String> = g
            .subs
            .values()
            .filter(|s| s.expiration <= now)
            .map(|s| s.id.clone())
            .collect();
        for id in expired {
            if let Some(s) = g.subs.remove(&id) {
                events.push((s, "subscriptionRemoved"));
            }
        }
        for s in g.subs.values_mut() {
            let current = s
                .creator_user
                .as_ref()
                .and_then(|u| generations.get(u).copied())
                .unwrap_or(0);
            let revoked = s.creator_user.is_some() && current != s.generation;
            let near = s.expiration - now <= window;
            if (revoked || near) && !s.reauthorization_sent {
                s.reauthorization_sent = true;
                events.push((s.clone(), "reauthorizationRequired"));
            }
        }
    }
    for (sub, event) in events {
        let state = state.clone();
        tokio::spawn(async move {
            send_lifecycle(&state, &sub, event).await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Graph routes

/// `/v1.0/subscriptions[/{id}]` and the control routes under `/_emulator/`.
pub fn router() -> Router<AppState> {
    let graph = Router::new()
        .route("/v1.0/subscriptions", get(graph_list).post(graph_create))
        .route(
            "/v1.0/subscriptions/{id}",
            get(graph_get).patch(graph_renew).delete(graph_delete),
        )
        .layer(axum::middleware::from_fn(request_ids));
    let control = Router::new()
        .route(
            "/_emulator/subscriptions",
            get(|State(s): State<AppState>| async move { Json(s.notifier.subscriptions()) }),
        )
        .route(
            "/_emulator/subscriptions/{id}",
            axum::routing::delete(control_remove),
        )
        .route(
            "/_emulator/subscriptions/{id}/lifecycle",
            post(control_lifecycle),
        )
        .route(
            "/_emulator/notifications/deliveries",
            get(control_deliveries),
        )
        .route(
            "/_emulator/notifications/settings",
            get(|State(s): State<AppState>| async move { Json(s.notifier.settings()) })
                .put(put_settings),
        );
    graph.merge(control)
}

fn not_found() -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        "The object was not found.",
    )
}

fn validation_error(message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
}

fn sub_json(api_base: &str, s: &Subscription) -> Value {
    json!({
        "@odata.context": format!("{api_base}/$metadata#subscriptions/$entity"),
        "id": s.id,
        "resource": s.resource,
        "applicationId": s.application_id,
        "changeType": s.change_type,
        "clientState": s.client_state,
        "notificationUrl": s.notification_url,
        "notificationQueryOptions": null,
        "lifecycleNotificationUrl": s.lifecycle_notification_url,
        "expirationDateTime": rfc3339(s.expiration),
        "creatorId": s.creator_id,
        "includeResourceData": null,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationUrlAppId": null,
    })
}

/// Authenticates and counts a `/v1.0/subscriptions…` request.
fn begin(
    state: &AppState,
    method: &Method,
    template: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(AccessClaims, String), GraphError> {
    state.counters.graph(method.as_str(), template);
    let claims = crate::graph::auth::authenticate_graph(state, headers)?;
    Ok((claims, format!("{}/v1.0", origin(state, uri, headers))))
}

/// Whether the caller may see/modify `s`: same app; delegated callers only their own.
fn visible(claims: &AccessClaims, s: &Subscription) -> bool {
    s.application_id == claims.appid
        && s.tenant_id == claims.tid
        && (claims.is_app_only() || s.creator_user.as_deref() == Some(claims.oid.as_str()))
}

async fn read_body(body: Body) -> Result<Value, GraphError> {
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| GraphError::invalid_request("The request body is too large."))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| GraphError::invalid_request(format!("Invalid JSON body: {e}")))
}

/// Graph requires https; the emulator also takes plain http to loopback hosts.
fn check_url(field: &str, raw: &str) -> Result<(), GraphError> {
    let u = url::Url::parse(raw)
        .map_err(|_| validation_error(format!("The {field} is not a valid absolute URL.")))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(validation_error(format!(
            "The {field} must be an https URL (plain http is accepted for loopback hosts only)."
        ))),
    }
}

fn parse_expiration(v: &Value, now: DateTime<Utc>) -> Result<DateTime<Utc>, GraphError> {
    let raw = v
        .get("expirationDateTime")
        .and_then(Value::as_str)
        .ok_or_else(|| validation_error("expirationDateTime is required."))?;
    let t = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| validation_error(format!("Invalid expirationDateTime '{raw}'.")))?
        .with_timezone(&Utc);
    if t <= now {
        return Err(validation_error(
            "Subscription expiration must be in the future.",
        ));
    }
    if t > now + TimeDelta::minutes(MAX_LIFETIME_MINUTES) {
        return Err(validation_error(format!(
            "Subscription expiration can only be {MAX_LIFETIME_MINUTES} minutes in the future."
        )));
    }
    Ok(t)
}

/// The validation handshake: `POST {url}?validationToken=…` must answer 200 `text/plain` with
/// the token within 10 s.
async fn validate_endpoint(url: &str) -> Result<(), GraphError> {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let mut u = url::Url::parse(url).map_err(|_| validation_error("Invalid notification URL."))?;
    u.query_pairs_mut().append_pair("validationToken", &token);
    let failed = || {
        validation_error(
            "Subscription validation request failed. Notification endpoint must respond with \
             200 OK to validation request.",
        )
    };
    let client = reqwest::Client::builder()
        .timeout(VALIDATION_TIMEOUT)
        .build()
        .map_err(|_| failed())?;
    let resp = client
        .post(u)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body("")
        .send()
        .await
        .map_err(|_| failed())?;
    let text_plain = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/plain")
        });
    if resp.status() != StatusCode::OK || !text_plain {
        return Err(failed());
    }
    let body = resp.text().await.map_err(|_| failed())?;
    if body != token {
        return Err(validation_error(
            "Subscription validation request failed. Response must exactly match \
             validationToken query parameter.",
        ));
    }
    Ok(())
}

/// Resolves a drive resource (`/me/drive/root`, `/drives/{id}/root`, `/users/{id}/drive/root`,
/// folders on personal drives) to a drive id, with Graph's rules and permissions.
fn resolve_resource(
    state: &AppState,
    claims: &AccessClaims,
    origin: &str,
    resource: &str,
) -> Result<String, GraphError> {
    let raw = resource.trim_start_matches('/');
    let unsupported = || {
        validation_error(format!(
            "Resource '{resource}' is not supported for change notifications on drives."
        ))
    };
    let (route, _) = path::parse(raw).map_err(|_| unsupported())?;
    let Route::Item {
        drive,
        base,
        path,
        op: ItemOp::Item,
    } = route
    else {
        return Err(unsupported());
    };
    let ctx = ApiCtx {
        scope: ApiScope::Graph,
        origin: origin.to_owned(),
        api_base: format!("{origin}/v1.0"),
        raw_path: raw.to_owned(),
        query: Default::default(),
        method: Method::POST,
        headers: HeaderMap::new(),
    };
    let dir = state.directory.read().expect("directory lock poisoned");
    let mut model = state.drives.lock();
    let drive_id = resolve_drive(&mut model, &dir, &ctx, claims, &drive, false)?;
    let d = model
        .drive(&drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let base_id = match &base {
        ItemBase::Root => d.root_id.clone(),
        ItemBase::Id(id) => d
            .item(id)
            .ok_or_else(GraphError::item_not_found)?
            .id
            .clone(),
        // Subscriptions name a drive root or (personal drives) a folder by id or path.
        ItemBase::AppRoot => return Err(unsupported()),
    };
    let target = d
        .resolve_path(&base_id, &path)
        .ok_or_else(GraphError::item_not_found)?;
    let personal = d.drive_type == DriveType::Personal;
    if target.id != d.root_id {
        if !personal {
            return Err(validation_error(
                "Only the root of a OneDrive for Business or SharePoint drive can be subscribed to.",
            ));
        }
        if !target.is_folder() {
            return Err(validation_error(
                "Subscriptions are supported on folders only, not on files.",
            ));
        }
    }
    // Personal OneDrive: delegated Files.ReadWrite; business: Files.ReadWrite.All (delegated or
    // application).
    let needed: &[&str] = if personal {
        if claims.is_app_only() {
            return Err(GraphError::new(
                StatusCode::FORBIDDEN,
                "ExtensionError",
                "Application permissions are not supported for personal OneDrive subscriptions.",
            ));
        }
        &["Files.ReadWrite", "Files.ReadWrite.All"]
    } else {
        &["Files.ReadWrite.All"]
    };
    if !claims.has_any(needed) {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "ExtensionError",
            "Operation: Create; Exception: [Status Code: Forbidden; Reason: Insufficient \
             privileges to subscribe to this resource.]",
        ));
    }
    Ok(drive_id)
}

async fn graph_create(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    create(&state, &uri, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn create(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, GraphError> {
    let (claims, api_base) = begin(state, &Method::POST, "/v1.0/subscriptions", uri, headers)?;
    let v = read_body(body).await?;
    let change_type = v
        .get("changeType")
        .and_then(Value::as_str)
        .ok_or_else(|| validation_error("changeType is required."))?;
    if change_type != "updated" {
        return Err(validation_error(format!(
            "ChangeType '{change_type}' is not supported for drive resources; only 'updated' is."
        )));
    }
    let resource = v
        .get("resource")
        .and_then(Value::as_str)
        .ok_or_else(|| validation_error("resource is required."))?
        .to_owned();
    let notification_url = v
        .get("notificationUrl")
        .and_then(Value::as_str)
        .ok_or_else(|| validation_error("notificationUrl is required."))?
        .to_owned();
    check_url("notificationUrl", &notification_url)?;
    let lifecycle_url = match v.get("lifecycleNotificationUrl") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => {
            check_url("lifecycleNotificationUrl", u)?;
            Some(u.clone())
        }
        Some(_) => {
            return Err(validation_error(
                "lifecycleNotificationUrl must be a string.",
            ));
        }
    };
    let client_state = match v.get("clientState") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if c.chars().count() <= 128 => Some(c.clone()),
        Some(Value::String(_)) => {
            return Err(validation_error(
                "clientState must be at most 128 characters.",
            ));
        }
        Some(_) => return Err(validation_error("clientState must be a string.")),
    };
    let now = state.clock.now();
    let expiration = parse_expiration(&v, now)?;
    let origin = api_base.trim_end_matches("/v1.0").to_owned();
    let drive_id = resolve_resource(state, &claims, &origin, &resource)?;
    validate_endpoint(&notification_url).await?;
    if let Some(u) = &lifecycle_url {
        validate_endpoint(u).await?;
    }
    let creator_user = (!claims.is_app_only()).then(|| claims.oid.clone());
    let generation = creator_user
        .as_ref()
        .map_or(0, |u| state.grants().generation(u));
    let sub = Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        resource,
        drive_id,
        tenant_id: claims.tid.clone(),
        application_id: claims.appid.clone(),
        creator_id: claims.oid.clone(),
        creator_user,
        change_type: change_type.to_owned(),
        notification_url,
        lifecycle_notification_url: lifecycle_url,
        client_state,
        expiration,
        generation,
        reauthorization_sent: false,
        pending: false,
    };
    state
        .notifier
        .lock()
        .subs
        .insert(sub.id.clone(), sub.clone());
    Ok((StatusCode::CREATED, Json(sub_json(&api_base, &sub))).into_response())
}

async fn graph_list(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let r = (|| {
        let (claims, api_base) =
            begin(&state, &Method::GET, "/v1.0/subscriptions", &uri, &headers)?;
        let value: Vec<Value> = state
            .notifier
            .subscriptions()
            .iter()
            .filter(|s| visible(&claims, s))
            .map(|s| {
                let mut v = sub_json(&api_base, s);
                v.as_object_mut().map(|o| o.remove("@odata.context"));
                v
            })
            .collect();
        Ok::<_, GraphError>(
            Json(json!({
                "@odata.context": format!("{api_base}/$metadata#subscriptions"),
                "value": value,
            }))
            .into_response(),
        )
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

fn find_visible(
    state: &AppState,
    claims: &AccessClaims,
    id: &str,
) -> Result<Subscription, GraphError> {
    state
        .notifier
        .lock()
        .subs
        .get(id)
        .filter(|s| visible(claims, s))
        .cloned()
        .ok_or_else(not_found)
}

async fn graph_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = (|| {
        let (claims, api_base) = begin(
            &state,
            &Method::GET,
            "/v1.0/subscriptions/{id}",
            &uri,
            &headers,
        )?;
        let s = find_visible(&state, &claims, &id)?;
        Ok::<_, GraphError>(Json(sub_json(&api_base, &s)).into_response())
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn graph_renew(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = async {
        let (claims, api_base) = begin(
            &state,
            &Method::PATCH,
            "/v1.0/subscriptions/{id}",
            &uri,
            &headers,
        )?;
        find_visible(&state, &claims, &id)?;
        let v = read_body(body).await?;
        let expiration = parse_expiration(&v, state.clock.now())?;
        let generation = if claims.is_app_only() {
            0
        } else {
            state.grants().generation(&claims.oid)
        };
        let mut g = state.notifier.lock();
        let s = g.subs.get_mut(&id).ok_or_else(not_found)?;
        s.expiration = expiration;
        s.generation = generation;
        s.reauthorization_sent = false;
        Ok::<_, GraphError>(Json(sub_json(&api_base, s)).into_response())
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn graph_delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = (|| {
        let (claims, _) = begin(
            &state,
            &Method::DELETE,
            "/v1.0/subscriptions/{id}",
            &uri,
            &headers,
        )?;
        find_visible(&state, &claims, &id)?;
        state.notifier.lock().subs.remove(&id);
        Ok::<_, GraphError>(StatusCode::NO_CONTENT.into_response())
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

// ---------------------------------------------------------------------------------------------
// Control routes

fn control_err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// Removes a subscription as Microsoft would, sending `subscriptionRemoved`.
async fn control_remove(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(sub) = state.notifier.lock().subs.remove(&id) else {
        return control_err(StatusCode::NOT_FOUND, format!("no subscription {id}"));
    };
    send_lifecycle(&state, &sub, "subscriptionRemoved").await;
    StatusCode::NO_CONTENT.into_response()
}

/// `?min=N`: wait (up to 30 s) until N deliveries were recorded.
#[derive(Debug, Deserialize)]
struct DeliveriesQuery {
    min: Option<usize>,
}

async fn control_deliveries(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<DeliveriesQuery>,
) -> Json<Vec<Delivery>> {
    match q.min {
        Some(n) => Json(
            state
                .notifier
                .deliveries_after(n, Duration::from_secs(30))
                .await,
        ),
        None => Json(state.notifier.deliveries()),
    }
}

/// A lifecycle event to send now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LifecycleTrigger {
    /// `reauthorizationRequired`, `subscriptionRemoved` (also removes it) or `missed`.
    pub event: String,
}

async fn control_lifecycle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(b): Json<LifecycleTrigger>,
) -> Response {
    let event = match b.event.as_str() {
        "reauthorizationRequired" => "reauthorizationRequired",
        "subscriptionRemoved" => "subscriptionRemoved",
        "missed" => "missed",
        other => {
            return control_err(
                StatusCode::BAD_REQUEST,
                format!("unknown lifecycle event {other}"),
            );
        }
    };
    let sub = {
        let mut g = state.notifier.lock();
        if event == "subscriptionRemoved" {
            g.subs.remove(&id)
        } else {
            g.subs.get(&id).cloned()
        }
    };
    let Some(sub) = sub else {
        return control_err(StatusCode::NOT_FOUND, format!("no subscription {id}"));
    };
    if sub.lifecycle_notification_url.is_none() {
        return control_err(
            StatusCode::BAD_REQUEST,
            "the subscription has no lifecycleNotificationUrl",
        );
    }
    let delivered = send_lifecycle(&state, &sub, event).await;
    Json(json!({ "delivered": delivered })).into_response()
}

async fn put_settings(
    State(state): State<AppState>,
    Json(b): Json<NotificationSettings>,
) -> Response {
    if b.max_attempts == 0 || b.timeout_ms == 0 {
        return control_err(
            StatusCode::BAD_REQUEST,
            "max_attempts and timeout_ms must be positive",
        );
    }
    state.notifier.set_settings(b);
    Json(b).into_response()
}
