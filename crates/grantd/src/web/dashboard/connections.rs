//! Dashboard connections: the overview (counts, connections needing attention, credential expiry
//! warnings, recent auth events and webhook deliveries), the searchable list with
//! each connection's status, and the detail page with its actions — refresh now, copy a reconnect
//! link (a new reconnect session), a test call that lists the user's drives through the proxy,
//! delete, open the File Picker for the connection (its selection is shown), and the change feed's panel (per watched drive: last and next run, push or polling,
//! counts, last error) with its resync button.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};
use serde_json::Value;

use super::auth::Admin;
use super::error::{AdminPost, PageError};
use super::layout::{csrf_field, page};
use crate::connections::sessions::SessionRequest;
use crate::connections::sync::SyncPanel;
use crate::edge::AppState;
use crate::model::{
    ConfigKey, Connection, ConnectionFilter, ConnectionId, FailureKind, PickerEntry, PickerMode,
    PickerOptions, ProviderConfigKey,
};
use crate::proxy::{self, request::Options};

/// What the dashboard says about a connection, derived from its auth failure and
/// `connection_config.sharepointTokenStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Healthy,
    /// The last refresh failed transiently; grantd keeps retrying.
    Refreshing,
    MustReconnect,
    /// The app registration is wrong (e.g. expired client secret); users cannot fix it.
    Misconfigured,
    SharePointMissing,
}

impl Status {
    pub fn of(c: &Connection) -> Status {
        if let Some(f) = &c.auth_failure {
            return match f.kind {
                FailureKind::Reconnect => Status::MustReconnect,
                FailureKind::Misconfigured => Status::Misconfigured,
                FailureKind::Transient => Status::Refreshing,
            };
        }
        match sharepoint_status(c) {
            // Not requested (no Sites.Read.All) is a choice, not a fault.
            Some(s) if s != "ok" && !s.starts_with("not_requested") => Status::SharePointMissing,
            _ => Status::Healthy,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Refreshing => "refreshing",
            Status::MustReconnect => "must reconnect",
            Status::Misconfigured => "app misconfigured",
            Status::SharePointMissing => "SharePoint token missing",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Status::Healthy => "status s-healthy",
            Status::Refreshing => "status s-refreshing",
            Status::MustReconnect => "status s-reconnect",
            Status::Misconfigured => "status s-misconfigured",
            Status::SharePointMissing => "status s-sharepoint",
        }
    }

    pub fn badge(self) -> Markup {
        html! { span class=(self.class()) data-status=(self.label()) { (self.label()) } }
    }
}

fn sharepoint_status(c: &Connection) -> Option<&str> {
    c.connection_config
        .get(ConfigKey::SharepointTokenStatus.as_str())
        .and_then(Value::as_str)
}

fn when(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC")) } },
        None => html! { span.muted { "never" } },
    }
}

fn end_user(c: &Connection) -> String {
    c.end_user
        .as_ref()
        .map(|u| match (&u.email, &u.display_name) {
            (Some(e), _) => format!("{} ({e})", u.id),
            (None, Some(d)) => format!("{} ({d})", u.id),
            _ => u.id.clone(),
        })
        .unwrap_or_default()
}

fn detail_href(c: &Connection) -> String {
    format!(
        "/dashboard/connections/{}/{}",
        c.provider_config_key,
        urlencode(c.connection_id.as_str())
    )
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn overview(State(st): State<AppState>, admin: Admin) -> Result<Response, PageError> {
    let integrations = st.core.list_integrations().await?;
    let conns = st
        .core
        .list_connections(&ConnectionFilter::default())
        .await?;
    let outbox = st.core.recent_webhooks(super::events::RECENT).await?;
    let count = |s: Status| conns.iter().filter(|c| Status::of(c) == s).count();
    let mut failures: Vec<&Connection> =
        conns.iter().filter(|c| c.auth_failure.is_some()).collect();
    failures.sort_by_key(|c| std::cmp::Reverse(c.auth_failure.as_ref().map(|f| f.at)));
    let now = st.core.clock.now();
    let webhooks_configured = st.core.config.lifecycle.webhook_url.is_some();
    Ok(Html(
        page(
            "Overview",
            Some(&admin.csrf),
            html! {
                h1 { "Overview" }
                div.row {
                    @for s in [Status::Healthy, Status::Refreshing, Status::MustReconnect, Status::Misconfigured, Status::SharePointMissing] {
                        div.card { (s.badge()) " " strong { (count(s)) } }
                    }
                }
                p { (conns.len()) (if conns.len() == 1 { " connection" } else { " connections" }) " across " (integrations.len()) (if integrations.len() == 1 { " integration. " } else { " integrations. " }) a href="/dashboard/connections" { "All connections" } }
                @for i in integrations.iter().filter(|i| super::expiry::needs_attention(i, now)) {
                    div data-integration=(i.unique_key.as_str()) {
                        "Integration " a href=(format!("/dashboard/integrations/{}", i.unique_key)) { (i.unique_key.as_str()) } ": "
                        (super::expiry::note(i, now))
                    }
                }
                @if !failures.is_empty() {
                    h2 #attention { "Connections needing attention" }
                    table aria-labelledby="attention" {
                        thead { tr { th scope="col" { "Since" } th scope="col" { "Connection" } th scope="col" { "Status" } th scope="col" { "Cause" } } }
                        tbody {
                            @for c in failures.iter().take(20) {
                                @let f = c.auth_failure.as_ref().expect("filtered on auth_failure");
                                tr {
                                    td { (when(Some(f.at))) }
                                    td { a href=(detail_href(c)) { (c.connection_id.as_str()) } }
                                    td { (Status::of(c).badge()) }
                                    td { @if let Some(code) = f.aadsts { code { "AADSTS" (code) } " " } (f.description) }
                                }
                            }
                        }
                    }
                }
                (super::events::auth_events(&outbox, webhooks_configured))
                (super::events::deliveries(&outbox))
            },
        )
        .into_string(),
    )
    .into_response())
}

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    integration: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    admin: Admin,
    Query(q): Query<ListQuery>,
) -> Response {
    let search = q.q.clone().filter(|s| !s.trim().is_empty());
    let filter = ConnectionFilter {
        search: search.as_ref().map(|s| s.trim().to_owned()),
        integration_keys: q
            .integration
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        limit: 500,
        ..Default::default()
    };
    let conns = match st.core.list_connections(&filter).await {
        Ok(c) => c,
        Err(e) => return PageError::from(e).into_response(),
    };
    let wanted = q.status.as_deref().filter(|s| !s.is_empty());
    let shown: Vec<&Connection> = conns
        .iter()
        .filter(|c| wanted.is_none_or(|w| Status::of(c).label() == w))
        .collect();
    Html(
        page(
            "Connections",
            Some(&admin.csrf),
            html! {
                h1 { "Connections" }
                form.row method="get" action="/dashboard/connections" role="search" {
                    label for="q" { "Search" }
                    input #q type="search" name="q" value=(search.unwrap_or_default()) placeholder="connection id, end user id, email or name";
                    label for="status" { "Status" }
                    select #status name="status" {
                        option value="" { "any" }
                        @for s in [Status::Healthy, Status::Refreshing, Status::MustReconnect, Status::Misconfigured, Status::SharePointMissing] {
                            option value=(s.label()) selected[wanted == Some(s.label())] { (s.label()) }
                        }
                    }
                    @if let Some(i) = &q.integration { input type="hidden" name="integration" value=(i); }
                    button type="submit" { "Search" }
                }
                @if shown.is_empty() {
                    p { "No connections match." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Connection" } th scope="col" { "Integration" } th scope="col" { "End user" } th scope="col" { "Status" } th scope="col" { "Last refresh" } th scope="col" { "Token expires" } th scope="col" { "Problem" } } }
                        tbody {
                            @for c in &shown {
                                tr data-connection-id=(c.connection_id.as_str()) {
                                    td { a href=(detail_href(c)) { (c.connection_id.as_str()) } }
                                    td { (c.provider_config_key.as_str()) }
                                    td { (end_user(c)) }
                                    td { (Status::of(c).badge()) }
                                    td { (when(c.last_refreshed_at)) }
                                    td { (when(c.credentials.expires_at)) }
                                    td { (problem(c)) }
                                }
                            }
                        }
                    }
                }
            },
        )
        .into_string(),
    )
    .into_response()
}

fn problem(c: &Connection) -> Markup {
    html! {
        @if let Some(f) = &c.auth_failure {
            @if let Some(code) = f.aadsts { code { "AADSTS" (code) } " " }
            (f.description)
        } @else if let Some(s) = sharepoint_status(c).filter(|s| *s != "ok") {
            (s)
        }
    }
}

async fn load(st: &AppState, key: &str, id: &str) -> Result<Connection, PageError> {
    let not_found = || {
        PageError::NotFound(
            "There is no such connection.",
            "/dashboard/connections",
            "Back to connections",
        )
    };
    let key = ProviderConfigKey::parse(key).map_err(|_| not_found())?;
    let cid = ConnectionId::parse(id).map_err(|_| not_found())?;
    st.core
        .get_connection(&key, &cid)
        .await?
        .ok_or_else(not_found)
}

/// The result of an action, shown above the connection's details.
enum Notice {
    None,
    Ok(Markup),
    Error(Markup),
}

async fn detail(st: &AppState, admin: &Admin, c: &Connection, notice: Notice) -> Response {
    let base = detail_href(c);
    let status = Status::of(c);
    let feed = match st
        .core
        .sync_panel(&c.provider_config_key, &c.connection_id)
        .await
    {
        Ok(p) => sync_panel(p.as_ref(), &base, &admin.csrf),
        Err(e) => html! { p.error { "The change feed's state could not be read: " (e) } },
    };
    Html(
        page(
            &format!("Connection {}", c.connection_id),
            Some(&admin.csrf),
            html! {
                h1 { "Connection " code { (c.connection_id.as_str()) } " " (status.badge()) }
                @match notice {
                    Notice::None => {},
                    Notice::Ok(m) => div.ok role="status" { (m) },
                    Notice::Error(m) => div.error role="alert" { (m) },
                }
                dl.card {
                    dt { "Integration" } dd { a href=(format!("/dashboard/integrations/{}", c.provider_config_key)) { (c.provider_config_key.as_str()) } }
                    dt { "End user" } dd { (end_user(c)) }
                    dt { "Status" } dd { (status.label()) }
                    dt { "Created" } dd { (when(Some(c.created_at))) }
                    dt { "Last refresh" } dd { (when(c.last_refreshed_at)) }
                    dt { "Token expires" } dd { (when(c.credentials.expires_at)) }
                    dt { "SharePoint token" } dd { (sharepoint_status(c).unwrap_or("—")) }
                    @if let Some(f) = &c.auth_failure {
                        dt { "Error" } dd {
                            @if let Some(code) = f.aadsts { code { "AADSTS" (code) } " " }
                            @if let Some(e) = &f.error { code { (e) } " " }
                            (f.description) " (" (when(Some(f.at))) ")"
                        }
                    }
                }
                div.row {
                    form method="post" action=(format!("{base}/refresh")) { (csrf_field(&admin.csrf)) button type="submit" { "Refresh now" } }
                    form method="post" action=(format!("{base}/reconnect-link")) { (csrf_field(&admin.csrf)) button.secondary type="submit" { "Copy reconnect link" } }
                    form method="post" action=(format!("{base}/test-call")) { (csrf_field(&admin.csrf)) button.secondary type="submit" { "Test call: list drives" } }
                    form method="post" action=(format!("{base}/picker")) target="_blank" { (csrf_field(&admin.csrf)) button.secondary #open-picker type="submit" { "Open picker" } }
                    form method="post" action=(format!("{base}/delete")) { (csrf_field(&admin.csrf)) button.danger type="submit" { "Delete" } }
                }
                (selection(c))
                (feed)
            },
        )
        .into_string(),
    )
    .into_response()
}

/// The change feed of a connection: per watched drive the last and next run, push or polling,
/// the last run's counts and error, and the resync button.
fn sync_panel(p: Option<&SyncPanel>, base: &str, csrf: &str) -> Markup {
    html! {
        section #sync aria-labelledby="sync-title" {
            h2 #sync-title { "Change feed" }
            @match p {
                None => p.muted { "Not watched. The first " code { "POST /sync/trigger" } " for this connection starts it." },
                Some(p) => {
                    p { "Sync " code { (p.sync_name) } ", model " code { (p.model) } ": "
                        strong data-records=(p.records) { (p.records) } (if p.records == 1 { " record" } else { " records" }) "." }
                    table {
                        thead { tr { th scope="col" { "Drive" } th scope="col" { "State" } th scope="col" { "Changes" } th scope="col" { "Last run" } th scope="col" { "Next run" } th scope="col" { "Last run's counts" } th scope="col" { "Last error" } } }
                        tbody {
                            @for d in &p.drives {
                                @let state = if d.drive.paused { "paused" } else if d.running { "running" } else if d.drive.last_error.is_some() { "failed" } else if d.drive.last_run_at.is_none() { "waiting" } else { "in sync" };
                                tr data-drive=(d.drive.drive_key) {
                                    td { code { (d.drive.drive_key) } }
                                    td data-state=(state) { (state) }
                                    td data-push=(if d.push { "push" } else if d.push_stale { "stale" } else { "polling" }) {
                                        @if d.push { "push healthy (subscription until " (when(d.drive.subscription_expires_at)) ")" }
                                        @else if d.push_stale { "polling: change notifications stopped arriving (since " (when(d.drive.push_stale_since)) ")" }
                                        @else { "polling" }
                                    }
                                    td { (when(d.drive.last_run_at)) }
                                    td { @match d.next_run { Some(t) => (when(Some(t))), None => span.muted { "paused" } } }
                                    td { (d.drive.last_added) " added, " (d.drive.last_updated) " updated, " (d.drive.last_deleted) " deleted" }
                                    td data-error=(d.drive.last_error.as_deref().unwrap_or("")) { (d.drive.last_error.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                    form method="post" action=(format!("{base}/resync")) {
                        (csrf_field(csrf))
                        button.secondary type="submit" { "Resync" }
                        " " span.muted { "Enumerates the drives again; only what changed or vanished is reported." }
                    }
                }
            }
        }
    }
}

pub async fn resync(
    State(st): State<AppState>,
    Path((key, id)): Path<(String, String)>,
    AdminPost(admin): AdminPost,
) -> Result<Response, PageError> {
    let c = load(&st, &key, &id).await?;
    let notice = match st
        .core
        .trigger_sync(&c.provider_config_key, &c.connection_id, true)
        .await
    {
        Ok(()) => Notice::Ok(html! { "Full resync started." }),
        Err(crate::connections::Error::Invalid(msg)) => {
            Notice::Error(html! { "Resync not started: " (msg) })
        }
        Err(e) => return Err(e.into()),
    };
    Ok(detail(&st, &admin, &c, notice).await)
}

pub async fn show(
    State(st): State<AppState>,
    admin: Admin,
    Path((key, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let c = load(&st, &key, &id).await?;
    Ok(detail(&st, &admin, &c, Notice::None).await)
}

pub async fn refresh(
    State(st): State<AppState>,
    Path((key, id)): Path<(String, String)>,
    AdminPost(admin): AdminPost,
) -> Result<Response, PageError> {
    let c = load(&st, &key, &id).await?;
    let notice = match st.core.fresh_connection(c, true).await {
        Ok(_) => Notice::Ok(html! { "Refreshed." }),
        Err(crate::connections::Error::Refresh(c)) => Notice::Error(html! {
            "Refresh failed: " @if let Some(code) = c.aadsts { code { "AADSTS" (code) } " " } (c.cause)
        }),
        Err(e) => return Err(e.into()),
    };
    let c = load(&st, &key, &id).await?;
    Ok(detail(&st, &admin, &c, notice).await)
}

pub async fn reconnect_link(
    State(st): State<AppState>,
    Path((key, id)): Path<(String, String)>,
    AdminPost(admin): AdminPost,
) -> Result<Response, PageError> {
    let c = load(&st, &key, &id).await?;
    let req = SessionRequest {
        end_user: c.end_user.clone(),
        allowed_integrations: Some(vec![c.provider_config_key.to_string()]),
        tags: c.tags.clone(),
        webhook_url_override: c.webhook_url_override.clone(),
        reconnect: Some((c.provider_config_key.clone(), c.connection_id.clone())),
        ..Default::default()
    };
    let (token, _) = st.core.create_connect_session(req).await?;
    let link = st.core.connect_link(&token);
    // The copy button is an enhancement: without JavaScript the link is still selectable.
    let notice = Notice::Ok(html! {
        label for="reconnect-link" { "Reconnect link (valid " (st.core.config.connect_session_ttl.as_secs() / 60) " minutes); send it to the user:" }
        input #reconnect-link type="text" readonly value=(link);
        button.secondary type="button" onclick="navigator.clipboard.writeText(document.getElementById('reconnect-link').value).then(function(){document.getElementById('copied').textContent='Copied.'})" { "Copy" }
        span #copied role="status" {}
        script { (PreEscaped("document.getElementById('reconnect-link').select();")) }
    });
    Ok(detail(&st, &admin, &c, notice).await)
}

/// The selection stored in the connection's metadata (Nango's shape, as the picker writes it).
fn selection(c: &Connection) -> Markup {
    let drives: Vec<&str> = c.metadata["drives"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let picked: Vec<(&str, Vec<&str>)> = c.metadata["pickedFiles"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    let d = e["driveId"].as_str()?;
                    let ids = e["fileIds"]
                        .as_array()?
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    Some((d, ids))
                })
                .collect()
        })
        .unwrap_or_default();
    html! {
        section #selection {
            h2 { "Selection" }
            @if drives.is_empty() && picked.is_empty() {
                p.muted { "Nothing picked yet: the change feed watches the user's own drive. "
                    "Open the picker to choose files and folders (saved in the metadata as "
                    code { "pickedFiles" } ")." }
            } @else {
                @if !drives.is_empty() {
                    p { "Whole drives: " @for d in &drives { code { (d) } " " } }
                }
                table {
                    thead { tr { th { "Drive" } th { "Picked item ids" } } }
                    tbody {
                        @for (d, ids) in &picked {
                            tr data-drive=(d) {
                                td { code { (d) } }
                                td { @for i in ids { code.picked-item { (i) } " " } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Opens the File Picker for the connection (a picker session for the dashboard's own origin,
/// saving the selection into the metadata).
pub async fn open_picker(
    State(st): State<AppState>,
    Path((key, id)): Path<(String, String)>,
    AdminPost(admin): AdminPost,
) -> Result<Response, PageError> {
    let c = load(&st, &key, &id).await?;
    let options = PickerOptions {
        entry: PickerEntry::OneDrive,
        mode: PickerMode::All,
        multi_select: true,
        filters: Vec::new(),
        save_selection: true,
        origin: st.core.config.public_url.origin().ascii_serialization(),
    };
    match st
        .core
        .create_picker_session(&c.provider_config_key, &c.connection_id, options)
        .await
    {
        Ok((token, _, _)) => Ok(Redirect::to(&st.core.picker_link(&token)).into_response()),
        Err(e) => {
            let notice =
                Notice::Error(html! { "The picker could not be opened: " (e.to_string()) });
            Ok(detail(&st, &admin, &c, notice).await)
        }
    }
}

pub async fn test_call(
    State(st): State<AppState>,
    Path((key, id)): Path<(String, String)>,
    AdminPost(admin): AdminPost,
) -> Result<Response, PageError> {
    let c = load(&st, &key, &id).await?;
    let opts = Options::plain(c.provider_config_key.clone(), c.connection_id.clone());
    let call = proxy::Call {
        opts: &opts,
        method: Method::GET,
        path: "/v1.0/me/drives",
        query: None,
        headers: &HeaderMap::new(),
        body: Body::empty(),
    };
    let resp = match proxy::forward(&st, call).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let notice = if status.is_success() {
        let drives = json["value"].as_array().cloned().unwrap_or_default();
        Notice::Ok(html! {
            p { "GET /proxy/v1.0/me/drives answered " (status.as_u16()) " with " (drives.len()) " drive(s):" }
            ul #drives {
                @for d in &drives {
                    li { (d["name"].as_str().unwrap_or("(unnamed)")) " — " (d["driveType"].as_str().unwrap_or("")) " " code { (d["id"].as_str().unwrap_or("")) } }
                }
            }
        })
    } else {
        // Shown to the signed-in admin only, never logged: the error message, not the whole body.
        let msg = json["error"]["message"]
            .as_str()
            .or(json["error"]["code"].as_str())
            .unwrap_or("the call failed");
        Notice::Error(html! { "GET /proxy/v1.0/me/drives answered " (status.as_u16()) ": " (msg) })
    };
    let c = load(&st, &key, &id).await?;
    Ok(detail(&st, &admin, &c, notice).await)
}

pub async fn delete(
    State(st): State<AppState>,
    Path((key, id)): Path<(String, String)>,
    AdminPost(_): AdminPost,
) -> Result<Response, PageError> {
    let c = load(&st, &key, &id).await?;
    st.core
        .delete_connection(&c.provider_config_key, &c.connection_id)
        .await?;
    Ok(Redirect::to("/dashboard/connections").into_response())
}
