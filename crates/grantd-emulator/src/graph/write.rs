//! Item writes beyond uploads: `PATCH …/items/{id}` (rename, move by `parentReference.id` or
//! `.path`, `fileSystemInfo`, `description`, conflict rules, `If-Match` → 412) and
//! `POST …/items/{id}/copy` (202 + `Location` of a monitor URL at `/_monitor/{id}`, which reports
//! progress and then the new item's `resourceId`, as Graph's long-running actions do).
//!
//! Also [`other_origin`]: pre-authenticated URLs (upload sessions, copy monitors) live on a
//! different origin from Graph in production (SharePoint / 1drv hosts); the emulator mints them on
//! the other loopback name (`127.0.0.1` ↔ `localhost`), which its TLS certificate covers.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use http::{StatusCode, header};
use serde_json::{Value, json};

use super::drives::{Conflict, ItemMeta};
use super::error::{GraphError, request_ids};
use super::items::{actor, etag_matches, item_context, precondition_failed, read_json};
use super::json;
use super::path::{DriveRef, decode};
use super::routes::{ApiCtx, ok_json, resolve_drive};
use crate::state::AppState;
use crate::tokens::AccessClaims;

/// A copy started by `POST …/copy`.
#[derive(Debug, Clone)]
pub struct CopyJob {
    /// The new item (the copy is made at once; the monitor reveals it after one progress poll).
    pub resource_id: String,
    pub drive_id: String,
    pub polls: u32,
}

/// The same origin on the other loopback name: `http://127.0.0.1:P` ↔ `http://localhost:P`
/// (`[::1]` → `localhost`). Other hosts stay as they are.
pub fn other_origin(origin: &str) -> String {
    let Ok(mut u) = url::Url::parse(origin) else {
        return origin.to_owned();
    };
    let swapped = match u.host_str() {
        Some("127.0.0.1") | Some("[::1]") => "localhost",
        Some("localhost") => "127.0.0.1",
        _ => return origin.to_owned(),
    };
    if u.set_host(Some(swapped)).is_err() {
        return origin.to_owned();
    }
    u.as_str().trim_end_matches('/').to_owned()
}

/// Where pre-authenticated URLs (upload sessions, copy monitors) are minted for a request that
/// reached the emulator at `origin`.
pub fn upload_origin(state: &AppState, origin: &str) -> String {
    if state.settings.same_origin_upload_urls {
        origin.to_owned()
    } else {
        other_origin(origin)
    }
}

/// `/_monitor/{id}` (no `Authorization`, like Graph's monitor URLs).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/_monitor/{id}", get(monitor))
        .layer(axum::middleware::from_fn(request_ids))
}

fn parse_time(v: &Value, field: &str) -> Result<Option<DateTime<Utc>>, GraphError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                GraphError::invalid_request(format!("Invalid value for fileSystemInfo.{field}."))
            }),
        Some(_) => Err(GraphError::invalid_request(format!(
            "Invalid value for fileSystemInfo.{field}."
        ))),
    }
}

/// `fileSystemInfo` and `description` of a request body (a driveItem).
pub fn meta_of(v: &Value) -> Result<ItemMeta, GraphError> {
    let mut meta = ItemMeta::default();
    if let Some(fsi) = v.get("fileSystemInfo").filter(|f| !f.is_null()) {
        if !fsi.is_object() {
            return Err(GraphError::invalid_request(
                "fileSystemInfo must be an object.",
            ));
        }
        meta.fs_created = parse_time(fsi, "createdDateTime")?;
        meta.fs_modified = parse_time(fsi, "lastModifiedDateTime")?;
    }
    match v.get("description") {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) => meta.description = Some(d.clone()),
        Some(_) => return Err(GraphError::invalid_request("description must be a string.")),
    }
    Ok(meta)
}

fn conflict_of(ctx: &ApiCtx, v: &Value) -> Result<Conflict, GraphError> {
    Conflict::parse(
        v.get("@microsoft.graph.conflictBehavior")
            .and_then(Value::as_str)
            .or(ctx.q("@microsoft.graph.conflictbehavior")),
        Conflict::Fail,
    )
}

/// The folder a `parentReference` names: `(drive id, folder id)`. `id` wins over `path`
/// (`/drive/root:/a/b`, `/drives/{id}/root:/a/b`); `driveId` alone means that drive's root.
fn parent_target(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    own_drive: &str,
    pr: &Value,
) -> Result<(String, String), GraphError> {
    if !pr.is_object() {
        return Err(GraphError::invalid_request(
            "parentReference must be an object.",
        ));
    }
    let drive_id = match pr.get("driveId").and_then(Value::as_str) {
        Some(d) if !d.eq_ignore_ascii_case(own_drive) => {
            let dir = state.directory.read().expect("directory lock poisoned");
            let mut model = state.drives.lock();
            resolve_drive(
                &mut model,
                &dir,
                ctx,
                claims,
                &DriveRef::Id(d.to_owned()),
                true,
            )?
        }
        _ => own_drive.to_owned(),
    };
    let model = state.drives.lock();
    let drive = model
        .drive(&drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let folder = if let Some(id) = pr.get("id").and_then(Value::as_str) {
        drive.item(id).ok_or_else(GraphError::item_not_found)?
    } else if let Some(p) = pr.get("path").and_then(Value::as_str) {
        let rest = p
            .split_once("root:")
            .map(|(_, r)| r)
            .ok_or_else(|| GraphError::invalid_request("Invalid parentReference.path."))?;
        let segs: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        drive
            .resolve_path(&drive.root_id, &segs)
            .ok_or_else(GraphError::item_not_found)?
    } else {
        drive.root()
    };
    if !folder.is_folder() {
        return Err(GraphError::invalid_request(
            "The parent item is not a folder.",
        ));
    }
    Ok((drive.id.clone(), folder.id.clone()))
}

/// `PATCH …/items/{id}`.
pub async fn patch_item(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    drive_id: &str,
    base_id: &str,
    path: &[String],
    body: Body,
) -> Result<Response, GraphError> {
    let v = read_json(body).await?;
    if !v.is_object() {
        return Err(GraphError::invalid_request("The body must be a driveItem."));
    }
    let conflict = conflict_of(ctx, &v)?;
    let meta = meta_of(&v)?;
    let name = match v.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return Err(GraphError::invalid_request("name must be a string.")),
    };
    let parent = match v.get("parentReference").filter(|p| !p.is_null()) {
        None => None,
        Some(pr) => {
            let (d, folder) = parent_target(state, ctx, claims, drive_id, pr)?;
            if d != drive_id {
                return Err(GraphError::invalid_request(
                    "Moving items between drives is not supported; copy the item instead.",
                ));
            }
            Some(folder)
        }
    };
    let by = actor(state, claims);
    let now = state.clock.now();
    let id = {
        let mut model = state.drives.lock();
        let drive = model
            .drive_mut(drive_id)
            .ok_or_else(GraphError::item_not_found)?;
        let item = drive
            .resolve_path(base_id, path)
            .ok_or_else(GraphError::item_not_found)?;
        if let Some(im) = ctx
            .headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            && !etag_matches(im, drive, item)
        {
            return Err(precondition_failed());
        }
        let id = item.id.clone();
        if item.parent.is_none() && name.is_none() && parent.is_none() {
            drive.set_meta(&id, meta);
        } else {
            drive.update_item(
                &id,
                name.as_deref(),
                parent.as_deref(),
                meta,
                conflict,
                now,
                &by,
            )?;
        }
        id
    };
    let model = state.drives.lock();
    let drive = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let item = drive.item(&id).ok_or_else(GraphError::item_not_found)?;
    let signer = model.signer.clone();
    let out = json::item_json(&ctx.render(&signer, state), drive, item, false);
    Ok(ok_json(json::with_context(
        out,
        item_context(ctx, drive_id),
    )))
}

/// `POST …/items/{id}/copy`: copies at once and answers 202 with the monitor URL.
pub async fn copy_item(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    drive_id: &str,
    base_id: &str,
    path: &[String],
    body: Body,
) -> Result<Response, GraphError> {
    let v = read_json(body).await?;
    let conflict = conflict_of(ctx, &v)?;
    let name = match v.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => {
            super::drives::validate_name(n)?;
            Some(n.clone())
        }
        Some(_) => return Err(GraphError::invalid_request("name must be a string.")),
    };
    let target = match v.get("parentReference").filter(|p| !p.is_null()) {
        Some(pr) => Some(parent_target(state, ctx, claims, drive_id, pr)?),
        None => None,
    };
    let by = actor(state, claims);
    let now = state.clock.now();
    let mut model = state.drives.lock();
    let (snapshot, src_name, src_parent) = {
        let drive = model
            .drive(drive_id)
            .ok_or_else(GraphError::item_not_found)?;
        let item = drive
            .resolve_path(base_id, path)
            .ok_or_else(GraphError::item_not_found)?;
        let Some(parent) = item.parent.clone() else {
            return Err(GraphError::invalid_request(
                "The root of a drive cannot be copied.",
            ));
        };
        if let Some((d, folder)) = &target
            && d == drive_id
            && drive.is_within(folder, &item.id)
        {
            return Err(GraphError::invalid_request(
                "An item cannot be copied into itself or one of its descendants.",
            ));
        }
        (drive.snapshot(&item.id), item.name.clone(), parent)
    };
    let (dest_drive, dest_parent) = target.unwrap_or((drive_id.to_owned(), src_parent));
    let name = name.unwrap_or(src_name);
    let dest = model
        .drive_mut(&dest_drive)
        .ok_or_else(GraphError::item_not_found)?;
    let new_id = dest.paste(&dest_parent, &name, snapshot, conflict, now, &by)?;
    let job_id = uuid::Uuid::new_v4().simple().to_string();
    model.copy_jobs.insert(
        job_id.clone(),
        CopyJob {
            resource_id: new_id,
            drive_id: dest_drive,
            polls: 0,
        },
    );
    let location = format!("{}/_monitor/{job_id}", upload_origin(state, &ctx.origin));
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)]).into_response())
}

/// `GET /_monitor/{id}`: `inProgress` on the first poll, then `completed` with `resourceId`.
async fn monitor(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    state.counters.graph("GET", "/_monitor/{id}");
    let mut model = state.drives.lock();
    let Some(job) = model.copy_jobs.get_mut(&id) else {
        return GraphError::item_not_found().into_response();
    };
    job.polls += 1;
    let body = if job.polls == 1 {
        json!({
            "operation": "ItemCopy",
            "percentageComplete": 50.0,
            "status": "inProgress",
        })
    } else {
        json!({
            "operation": "ItemCopy",
            "percentageComplete": 100.0,
            "resourceId": job.resource_id,
            "status": "completed",
        })
    };
    ok_json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_origin_swaps_loopback_names() {
        assert_eq!(
            other_origin("http://127.0.0.1:4100"),
            "http://localhost:4100"
        );
        assert_eq!(
            other_origin("https://localhost:4443"),
            "https://127.0.0.1:4443"
        );
        assert_eq!(other_origin("http://[::1]:8080"), "http://localhost:8080");
        assert_eq!(
            other_origin("https://emu.example.com"),
            "https://emu.example.com"
        );
    }
}
