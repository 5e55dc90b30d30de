//! The change feed's Nango-compatible routes: `GET /records` (and `/records/`, which
//! `listRecords` calls), `POST /sync/trigger`, `GET /sync/status`, `POST /sync/pause`,
//! `POST /sync/start`. Thin: validate, call `connections::sync`, render.

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use grantd_api as wire;
use grantd_api::SyncRef;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, JsonBody, Query, SecretKey};
use crate::connections::Error as CoreError;
use crate::connections::sync::{
    PushState, RecordsRequest, SELECTION_SYNC_NAME, SYNC_NAME, SyncState,
};
use crate::edge::AppState;
use crate::model::{ConnectionId, ProviderConfigKey};

const MAX_LIMIT: u32 = 10_000;
const DEFAULT_LIMIT: u32 = 100;
const MAX_IDS: usize = 100;

fn invalid(code: &'static str, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(code, &[field], message)
}

fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
}

fn parse_key(s: Option<&str>, code: &'static str) -> Result<ProviderConfigKey, ApiError> {
    let s = s.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_provider_config_key",
            "Provider-Config-Key / provider_config_key is required",
        )
    })?;
    ProviderConfigKey::parse(s).map_err(|e| invalid(code, "provider_config_key", e.to_string()))
}

fn parse_connection(s: Option<&str>, code: &'static str) -> Result<ConnectionId, ApiError> {
    let s = s.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_connection",
            "Connection-Id / connection_id is required",
        )
    })?;
    ConnectionId::parse(s).map_err(|e| invalid(code, "connection_id", e.to_string()))
}

/// The connection a sync request names, or — without one, as Nango allows — every watched
/// connection of the integration.
async fn connections_named(
    st: &AppState,
    key: &ProviderConfigKey,
    named: Option<&str>,
) -> Result<Vec<ConnectionId>, ApiError> {
    match named {
        Some(id) => Ok(vec![parse_connection(Some(id), "invalid_body")?]),
        None => st.core.watched_connections(key).await.map_err(|e| match e {
            CoreError::UnknownIntegration(_) => invalid(
                "invalid_body",
                "provider_config_key",
                "the integration does not exist",
            ),
            other => other.into(),
        }),
    }
}

/// Nango answers an unknown connection on these routes with 400 `unknown_connection`.
fn core_error(e: CoreError) -> ApiError {
    match e {
        CoreError::UnknownConnection => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_connection",
            "Failed to find connection",
        ),
        other => other.into(),
    }
}

fn valid_model(m: &str) -> bool {
    let mut chars = m.chars();
    m.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `GET /records`: headers `Connection-Id`, `Provider-Config-Key`; query `model`, `cursor`,
/// `modified_after` (alias `delta`), `limit` (1–10000, default 100), `filter`
/// (`added,updated,deleted`), `ids` (repeatable, ≤ 100), `variant` (`base` only).
pub async fn records(
    State(st): State<AppState>,
    _: SecretKey,
    headers: HeaderMap,
    parts: Parts,
) -> Result<Response, ApiError> {
    const Q: &str = "invalid_query_params";
    let key = parse_key(
        header_value(&headers, "provider-config-key"),
        "invalid_headers",
    )?;
    let cid = parse_connection(header_value(&headers, "connection-id"), "invalid_headers")?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|e| invalid(Q, "query", e.to_string()))?;
    let mut model = None;
    let mut req = RecordsRequest {
        model: String::new(),
        cursor: None,
        modified_after: None,
        limit: DEFAULT_LIMIT,
        actions: [true; 3],
        ids: Vec::new(),
    };
    for (k, v) in pairs {
        match k.as_str() {
            "model" => model = Some(v),
            "cursor" if v.is_empty() => {}
            "cursor" => {
                let c =
                    v.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
                        invalid(Q, "cursor", "cursor is not a cursor grantd issued")
                    })?;
                req.cursor = Some(c);
            }
            "modified_after" | "delta" if v.is_empty() => {}
            "modified_after" | "delta" => {
                let t = DateTime::parse_from_rfc3339(&v).map_err(|_| {
                    invalid(
                        Q,
                        "modified_after",
                        "modified_after is not an ISO 8601 time",
                    )
                })?;
                req.modified_after = Some(t.with_timezone(&Utc));
            }
            "limit" => {
                req.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| invalid(Q, "limit", "limit must be between 1 and 10000"))?;
            }
            "filter" if v.is_empty() => {}
            "filter" => {
                let mut actions = [false; 3];
                for part in v.split(',') {
                    match part.trim().to_ascii_lowercase().as_str() {
                        "added" => actions[0] = true,
                        "updated" => actions[1] = true,
                        "deleted" => actions[2] = true,
                        _ => {
                            return Err(invalid(
                                Q,
                                "filter",
                                "filter takes added, updated and deleted, comma-separated",
                            ));
                        }
                    }
                }
                req.actions = actions;
            }
            "ids" | "ids[]" => {
                if req.ids.len() >= MAX_IDS {
                    return Err(invalid(Q, "ids", "at most 100 ids"));
                }
                req.ids.push(v);
            }
            "variant" if v.is_empty() || v == "base" => {}
            "variant" => return Err(invalid(Q, "variant", "only the base variant exists")),
            _ => {}
        }
    }
    let model = model.ok_or_else(|| invalid(Q, "model", "model is required"))?;
    if !valid_model(&model) {
        return Err(invalid(Q, "model", "model is not a valid model name"));
    }
    req.model = model;
    let page = st
        .core
        .list_records(&key, &cid, &req)
        .await
        .map_err(core_error)?;
    // The stored record texts are spliced in as they are (no parse per record).
    let mut body = String::with_capacity(64 + page.records.iter().map(String::len).sum::<usize>());
    body.push_str("{\"records\":[");
    for (i, r) in page.records.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r);
    }
    body.push_str("],\"next_cursor\":");
    body.push_str(&json!(page.next_cursor).to_string());
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn check_syncs(syncs: &[SyncRef]) -> Result<(), ApiError> {
    for s in syncs {
        let name = s.name();
        if name != SYNC_NAME && name != SELECTION_SYNC_NAME && name != "*" {
            return Err(invalid(
                "invalid_body",
                "syncs",
                format!("unknown sync {name:?}; grantd runs {SYNC_NAME:?}"),
            ));
        }
    }
    Ok(())
}

/// `POST /sync/trigger`: a delta run now (`opts.reset`, `full_resync` or a `full_refresh*`
/// `sync_mode`: a full resync, reconciling deletions).
pub async fn trigger(
    State(st): State<AppState>,
    _: SecretKey,
    headers: HeaderMap,
    JsonBody(b): JsonBody<wire::TriggerSync>,
) -> Result<Json<wire::Success>, ApiError> {
    check_syncs(&b.syncs)?;
    let key = parse_key(
        b.provider_config_key
            .as_deref()
            .or_else(|| header_value(&headers, "provider-config-key")),
        "invalid_body",
    )?;
    let cids = connections_named(
        &st,
        &key,
        b.connection_id
            .as_deref()
            .or_else(|| header_value(&headers, "connection-id")),
    )
    .await?;
    if b.opts.is_some() && (b.sync_mode.is_some() || b.full_resync.is_some()) {
        return Err(invalid(
            "invalid_body",
            "opts",
            "opts cannot be combined with the deprecated sync_mode / full_resync",
        ));
    }
    let full = match b.sync_mode.as_deref() {
        None | Some("incremental") => false,
        Some("full_refresh") | Some("full_refresh_and_clear_cache") => true,
        Some(_) => {
            return Err(invalid(
                "invalid_body",
                "sync_mode",
                "sync_mode is incremental, full_refresh or full_refresh_and_clear_cache",
            ));
        }
    } || b.full_resync == Some(true)
        || b.opts.as_ref().is_some_and(|o| o.reset || o.empty_cache);
    for cid in &cids {
        st.core
            .trigger_sync(&key, cid, full)
            .await
            .map_err(core_error)?;
    }
    Ok(Json(wire::Success::TRUE))
}

async fn set_paused(
    st: &AppState,
    headers: &HeaderMap,
    b: wire::PauseSync,
    paused: bool,
) -> Result<Json<wire::Success>, ApiError> {
    check_syncs(&b.syncs)?;
    let key = parse_key(
        b.provider_config_key
            .as_deref()
            .or_else(|| header_value(headers, "provider-config-key")),
        "invalid_body",
    )?;
    let cids = connections_named(
        st,
        &key,
        b.connection_id
            .as_deref()
            .or_else(|| header_value(headers, "connection-id")),
    )
    .await?;
    for cid in &cids {
        st.core
            .set_sync_paused(&key, cid, paused)
            .await
            .map_err(core_error)?;
    }
    Ok(Json(wire::Success::TRUE))
}

/// `POST /sync/pause`.
pub async fn pause(
    State(st): State<AppState>,
    _: SecretKey,
    headers: HeaderMap,
    JsonBody(b): JsonBody<wire::PauseSync>,
) -> Result<Json<wire::Success>, ApiError> {
    set_paused(&st, &headers, b, true).await
}

/// `POST /sync/start`: resumes and runs at once.
pub async fn start(
    State(st): State<AppState>,
    _: SecretKey,
    headers: HeaderMap,
    JsonBody(b): JsonBody<wire::PauseSync>,
) -> Result<Json<wire::Success>, ApiError> {
    set_paused(&st, &headers, b, false).await
}

/// `GET /sync/status?syncs=user-files&provider_config_key=…&connection_id=…`.
pub async fn status(
    State(st): State<AppState>,
    _: SecretKey,
    Query(q): Query<wire::SyncStatusQuery>,
) -> Result<Json<wire::SyncStatusResponse>, ApiError> {
    let syncs = q
        .syncs
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("invalid_query_params", "syncs", "syncs is required"))?;
    let names: Vec<SyncRef> = syncs
        .split(',')
        .map(|s| SyncRef::Name(s.trim().to_owned()))
        .collect();
    check_syncs(&names).map_err(|_| {
        invalid(
            "invalid_query_params",
            "syncs",
            format!("unknown sync; grantd runs {SYNC_NAME:?}"),
        )
    })?;
    let key = parse_key(q.provider_config_key.as_deref(), "invalid_query_params")?;
    // Without a connection id: every watched connection of the integration, as Nango's does.
    let cids = match q.connection_id.as_deref() {
        Some(c) => vec![parse_connection(Some(c), "invalid_query_params")?],
        None => connections_named(&st, &key, None).await?,
    };
    let mut syncs = Vec::with_capacity(cids.len());
    for cid in &cids {
        let state = st.core.sync_status(&key, cid).await.map_err(|e| match e {
            CoreError::UnknownConnection => invalid(
                "invalid_body",
                "connection_id",
                "the connection does not exist",
            ),
            other => other.into(),
        })?;
        syncs.push(render_status(&state, cid, st.core.clock.now()));
    }
    Ok(Json(wire::SyncStatusResponse { syncs }))
}

fn render_status(s: &SyncState, cid: &ConnectionId, now: DateTime<Utc>) -> wire::SyncStatus {
    let d = &s.drive;
    let running = d.lease_until.is_some_and(|l| l > now);
    let status = if d.paused {
        "PAUSED"
    } else if running {
        "RUNNING"
    } else if d.last_error.is_some() {
        "ERROR"
    } else {
        "SUCCESS"
    };
    let ts = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    wire::SyncStatus {
        id: d.id.to_string(),
        connection_id: Some(cid.as_str().to_owned()),
        name: s.sync_name.to_owned(),
        variant: "base".into(),
        status: status.into(),
        kind: if d.next_link.is_none() {
            "INITIAL"
        } else {
            "INCREMENTAL"
        }
        .into(),
        finished_at: ts(d.last_success_at),
        next_scheduled_sync_at: None,
        frequency: match s.push {
            PushState::Healthy => "on change notifications".to_owned(),
            PushState::Stale => format!(
                "every {} seconds (polling: change notifications stopped arriving)",
                s.poll_interval.as_secs()
            ),
            PushState::Off => format!("every {} seconds (polling)", s.poll_interval.as_secs()),
        },
        push: Some(s.push.as_str().to_owned()),
        latest_result: [(
            s.model.to_owned(),
            wire::SyncResult {
                added: u64::try_from(d.last_added).unwrap_or(0),
                updated: u64::try_from(d.last_updated).unwrap_or(0),
                deleted: u64::try_from(d.last_deleted).unwrap_or(0),
            },
        )]
        .into(),
        latest_execution_status: if d.last_error.is_some() {
            "failure"
        } else {
            "success"
        }
        .into(),
        record_count: [(s.model.to_owned(), s.records)].into(),
        checkpoint: None,
        error: d.last_error.clone(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ValidationQuery {
    #[serde(rename = "validationToken")]
    validation_token: Option<String>,
}

/// Graph's validation handshake: the decoded token back as `text/plain`, at once.
fn handshake(token: String) -> Result<Response, ApiError> {
    if token.len() > 1024 {
        return Err(invalid(
            "invalid_query_params",
            "validationToken",
            "validationToken is too long",
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token).into_response())
}

#[derive(Debug, Deserialize)]
struct NotificationBatch {
    value: Vec<NotificationItem>,
}

#[derive(Debug, Deserialize)]
struct NotificationItem {
    #[serde(rename = "subscriptionId")]
    subscription_id: String,
    #[serde(rename = "clientState")]
    client_state: Option<String>,
    #[serde(rename = "lifecycleEvent")]
    lifecycle_event: Option<String>,
}

fn batch(body: &[u8]) -> Result<NotificationBatch, ApiError> {
    serde_json::from_slice(body).map_err(|e| invalid("invalid_body", "value", e.to_string()))
}

/// `POST /sync/notifications`: Graph's change notifications (no API key: each is verified by
/// its `clientState`). Answers 202 at once; runs happen in the background.
pub async fn notifications(
    State(st): State<AppState>,
    Query(q): Query<ValidationQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if let Some(token) = q.validation_token {
        return handshake(token);
    }
    for n in batch(&body)?.value {
        let outcome = st
            .core
            .sync_notification(&n.subscription_id, n.client_state.as_deref())
            .await?;
        if outcome == crate::connections::sync_push::Notification::Rejected {
            tracing::warn!(
                "change notification with an unknown subscription or clientState ignored"
            );
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST /sync/lifecycle`: Graph's lifecycle notifications (`reauthorizationRequired`,
/// `subscriptionRemoved`, `missed`), verified like change notifications.
pub async fn lifecycle(
    State(st): State<AppState>,
    Query(q): Query<ValidationQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if let Some(token) = q.validation_token {
        return handshake(token);
    }
    for n in batch(&body)?.value {
        let event = n.lifecycle_event.as_deref().unwrap_or("missed");
        let outcome = st
            .core
            .sync_lifecycle(&n.subscription_id, n.client_state.as_deref(), event)
            .await?;
        if outcome == crate::connections::sync_push::Notification::Rejected {
            tracing::warn!(
                "lifecycle notification with an unknown subscription or clientState ignored"
            );
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}
