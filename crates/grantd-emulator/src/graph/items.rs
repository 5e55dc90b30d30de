//! driveItem operations: get, delete, children (paged, `$skiptoken`), create folder, content
//! (302 to the pre-authenticated download URL), simple upload, createUploadSession and delta.
//!
//! Locks are never held across an `.await`: targets are resolved under the lock, bodies are read
//! without it, and the result is committed under the lock again (re-validated by the model).

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::TimeDelta;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

use super::content::SpillFile;
use super::drives::{Conflict, Drive, Identity};
use super::error::GraphError;
use super::json;
use super::path::{DriveRef, ItemBase, ItemOp, decode, encode};
use super::routes::{ApiCtx, ok_json, resolve_drive};
use super::upload::{
    self, SESSION_LIFETIME_SECS, SIMPLE_UPLOAD_LIMIT, UploadSession, UploadTarget,
};
use crate::state::AppState;
use crate::tokens::AccessClaims;

/// Default and largest `$top` for children.
const DEFAULT_PAGE: usize = 200;
const MAX_PAGE: usize = 1000;

/// Who is acting, for createdBy/lastModifiedBy.
pub(super) fn actor(state: &AppState, claims: &AccessClaims) -> Identity {
    let dir = state.directory.read().expect("directory lock poisoned");
    if !claims.is_app_only() {
        if let Some(u) = dir.users.get(&claims.oid) {
            return super::seed::identity_of(u);
        }
    }
    let name = dir
        .apps
        .get(&claims.appid)
        .map(|a| a.display_name.clone())
        .unwrap_or_default();
    Identity {
        id: claims.appid.clone(),
        display_name: name,
        email: None,
    }
}

pub(super) fn item_context(ctx: &ApiCtx, drive_id: &str) -> String {
    format!(
        "{}/$metadata#drives('{}')/items/$entity",
        ctx.api_base,
        encode(drive_id)
    )
}

fn strip_etag(s: &str) -> &str {
    s.trim().trim_start_matches("W/").trim_matches('"')
}

pub(super) fn etag_matches(header_value: &str, drive: &Drive, item: &super::drives::Item) -> bool {
    let etag = json::etag(drive, item);
    let ctag = json::ctag(drive, item);
    etag_list(header_value)
        .iter()
        .any(|v| *v == "*" || *v == strip_etag(&etag) || *v == strip_etag(&ctag))
}

/// The entity tags of an `If-Match` / `If-None-Match` list. Business eTags contain a comma
/// (`"{GUID},3"`), so the list is split on its quotes, not on commas.
fn etag_list(v: &str) -> Vec<&str> {
    let v = v.trim();
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        match after.find('"') {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    if out.is_empty() {
        out.extend(v.split(',').map(strip_etag));
    }
    out
}

/// Resolved drive id and base item id, after permission checks.
fn locate(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    dref: &DriveRef,
    base: &ItemBase,
    write: bool,
) -> Result<(String, String), GraphError> {
    let dir = state.directory.read().expect("directory lock poisoned");
    let mut model = state.drives.lock();
    let drive_id = match resolve_drive(&mut model, &dir, ctx, claims, dref, write) {
        Ok(id) => id,
        // Another user's drive: items shared with the caller (invitations) are reachable.
        Err(e) if e.code == "accessDenied" => {
            super::extra::shared_access(&model, claims, dref, base, write).ok_or(e)?
        }
        Err(e) => return Err(e),
    };
    let drive = model
        .drive(&drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let base_id = match base {
        ItemBase::AppRoot => {
            drop(model);
            drop(dir);
            return Ok((
                drive_id.clone(),
                super::extra::approot(state, claims, &drive_id)?,
            ));
        }
        ItemBase::Root => drive.root_id.clone(),
        ItemBase::Id(id) => drive
            .item(id)
            .ok_or_else(GraphError::item_not_found)?
            .id
            .clone(),
    };
    Ok((drive_id, base_id))
}

#[allow(clippy::too_many_arguments)]
pub async fn handle(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    dref: &DriveRef,
    base: ItemBase,
    path: Vec<String>,
    op: ItemOp,
    body: Body,
) -> Result<Response, GraphError> {
    let m = &ctx.method;
    let write = !(m == Method::GET || m == Method::HEAD);
    if op == ItemOp::Restore {
        // The item is deleted: `locate` (live items only) does not find it.
        return match (m.clone(), &base, path.is_empty()) {
            (Method::POST, ItemBase::Id(id), true) => {
                let (drive_id, _) = locate(state, ctx, claims, dref, &ItemBase::Root, true)?;
                restore_item(state, ctx, claims, &drive_id, id, body).await
            }
            (Method::POST, _, _) => Err(GraphError::invalid_request(
                "Restore addresses a deleted item by its id.",
            )),
            _ => Err(GraphError::method_not_allowed()),
        };
    }
    let (drive_id, base_id) = locate(state, ctx, claims, dref, &base, write)?;
    match (op, m.clone()) {
        (ItemOp::Item, Method::GET | Method::HEAD) => {
            get_item(state, ctx, &drive_id, &base_id, &path)
        }
        (ItemOp::Item, Method::PATCH) => {
            super::write::patch_item(state, ctx, claims, &drive_id, &base_id, &path, body).await
        }
        (ItemOp::Copy, Method::POST) => {
            super::write::copy_item(state, ctx, claims, &drive_id, &base_id, &path, body).await
        }
        (ItemOp::Item, Method::DELETE) => {
            delete_item(state, ctx, claims, &drive_id, &base_id, &path)
        }
        (ItemOp::Children, Method::GET | Method::HEAD) => {
            children(state, ctx, &drive_id, &base_id, &path)
        }
        (ItemOp::Children, Method::POST) => {
            create_folder(state, ctx, claims, &drive_id, &base_id, &path, body).await
        }
        (ItemOp::Content, Method::GET | Method::HEAD) => {
            content_redirect(state, ctx, &drive_id, &base_id, &path)
        }
        (ItemOp::Content, Method::PUT) => {
            simple_upload(state, ctx, claims, &drive_id, &base_id, &path, body).await
        }
        (ItemOp::CreateUploadSession, Method::POST) => {
            create_session(state, ctx, claims, &drive_id, &base_id, &path, body).await
        }
        (ItemOp::Delta, Method::GET | Method::HEAD) => {
            delta(state, ctx, &drive_id, &base_id, &path)
        }
        (ItemOp::Search, Method::GET | Method::HEAD) => {
            super::extra::search(state, ctx, &drive_id, &base_id, &path)
        }
        (ItemOp::Thumbnails, Method::GET | Method::HEAD) => {
            super::extra::thumbnails(state, ctx, &drive_id, &base_id, &path)
        }
        (ItemOp::Permissions, Method::GET | Method::HEAD) => {
            super::extra::permissions(state, ctx, &drive_id, &base_id, &path)
        }
        (ItemOp::Versions, Method::GET | Method::HEAD) => {
            super::extra::versions(state, ctx, &drive_id, &base_id, &path)
        }
        (ItemOp::CreateLink, Method::POST) => {
            let v = read_json(body).await?;
            super::extra::create_link(state, ctx, &drive_id, &base_id, &path, &v)
        }
        (ItemOp::Invite, Method::POST) => {
            let v = read_json(body).await?;
            super::extra::invite(state, ctx, &drive_id, &base_id, &path, &v)
        }
        _ => Err(GraphError::method_not_allowed()),
    }
}

fn get_item(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
) -> Result<Response, GraphError> {
    super::query::check_allowed(ctx, &["$select", "$expand"])?;
    let expand = super::query::expand(ctx, true)?;
    let model = state.drives.lock();
    let drive = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let item = drive
        .resolve_path(base_id, path)
        .ok_or_else(GraphError::item_not_found)?;
    if let Some(inm) = ctx
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if etag_matches(inm, drive, item) {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    let signer = model.signer.clone();
    let r = ctx.render(&signer, state);
    let mut v = json::item_json(&r, drive, item, false);
    if expand.children && item.is_folder() {
        let kids: Vec<Value> = drive
            .children(&item.id)
            .iter()
            .take(DEFAULT_PAGE)
            .map(|c| json::item_json(&r, drive, c, false))
            .collect();
        v["children"] = json!(kids);
    }
    if expand.thumbnails {
        v["thumbnails"] = super::extra::thumbnail_sets(&r, drive, item);
    }
    let v = json::with_context(v, item_context(ctx, drive_id));
    Ok(ok_json(super::query::select_keep_expanded(
        v,
        ctx.q("$select"),
        expand,
    )))
}

fn delete_item(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    drive_id: &str,
    base_id: &str,
    path: &[String],
) -> Result<Response, GraphError> {
    let by = actor(state, claims);
    let now = state.clock.now();
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
    {
        if !etag_matches(im, drive, item) {
            return Err(precondition_failed());
        }
    }
    let id = item.id.clone();
    drive.delete(&id, now, &by)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST …/items/{id}/restore` (`{"parentReference": {"id"}, "name"}`, both optional): the
/// deleted item back out of the recycle bin with what its delete removed (`Drive::restore`),
/// then moved or renamed when asked; 200 with the item. As Graph documents it, only OneDrive
/// personal drives offer it; other drives answer 400 (their users restore in the web UI:
/// `UserAction::Restore`).
async fn restore_item(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    drive_id: &str,
    id: &str,
    body: Body,
) -> Result<Response, GraphError> {
    let v = read_json(body).await?;
    let name = v.get("name").and_then(Value::as_str).map(str::to_owned);
    let parent = v
        .pointer("/parentReference/id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let by = actor(state, claims);
    let now = state.clock.now();
    {
        let mut model = state.drives.lock();
        let drive = model
            .drive_mut(drive_id)
            .ok_or_else(GraphError::item_not_found)?;
        if drive.drive_type != super::drives::DriveType::Personal {
            return Err(GraphError::invalid_request(
                "Restoring items is only available for OneDrive personal.",
            ));
        }
        if drive.items.get(id).is_none_or(|i| !i.deleted) {
            return Err(GraphError::item_not_found());
        }
        drive.restore(id, now, &by)?;
        if name.is_some() || parent.is_some() {
            drive.update_item(
                id,
                name.as_deref(),
                parent.as_deref(),
                Default::default(),
                Conflict::Rename,
                now,
                &by,
            )?;
        }
    }
    created(ctx, state, drive_id, id, false)
}

pub(super) fn precondition_failed() -> GraphError {
    GraphError::new(
        StatusCode::PRECONDITION_FAILED,
        "resourceModified",
        "ETag does not match current item's value",
    )
    .with_inner("entityTagDoesNotMatch")
}

const SKIPTOKEN_PREFIX: &str = "Paged=TRUE&p_SortBehavior=1&p_FileLeafRef=";
/// Skiptokens of listings in another order than by name carry an offset.
const SKIPTOKEN_OFFSET_PREFIX: &str = "Paged=TRUE&p_SortBehavior=1&p_Offset=";

fn encode_skiptoken(last_name: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{SKIPTOKEN_PREFIX}{}", encode(last_name)))
}

/// Where a `$skiptoken` resumes: after a name (name order) or after N items (other orders).
enum Resume {
    AfterName(String),
    Offset(usize),
}

fn decode_skiptoken(t: &str) -> Result<Resume, GraphError> {
    let bad = || GraphError::invalid_request("Invalid $skiptoken.");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    if let Some(n) = raw.strip_prefix(SKIPTOKEN_OFFSET_PREFIX) {
        return n.parse().map(Resume::Offset).map_err(|_| bad());
    }
    let name = raw.strip_prefix(SKIPTOKEN_PREFIX).ok_or_else(bad)?;
    Ok(Resume::AfterName(decode(name).to_lowercase()))
}

fn children(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
) -> Result<Response, GraphError> {
    super::query::check_allowed(
        ctx,
        &[
            "$top",
            "$skiptoken",
            "$select",
            "$orderby",
            "$filter",
            "$expand",
        ],
    )?;
    let top = ctx.top()?.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    let order = super::query::order(ctx)?;
    let filter = super::query::filter(ctx)?;
    let expand = super::query::expand(ctx, false)?;
    let after = ctx.q("$skiptoken").map(decode_skiptoken).transpose()?;
    let model = state.drives.lock();
    let drive = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let folder = drive
        .resolve_path(base_id, path)
        .ok_or_else(GraphError::item_not_found)?;
    let mut all = drive.children(&folder.id);
    if let Some(f) = filter {
        all.retain(|i| f.keeps(i));
    }
    super::query::sort(drive, &mut all, order);
    let rest: Vec<_> = match &after {
        Some(Resume::AfterName(a)) if order == super::query::Order::DEFAULT => all
            .into_iter()
            .filter(|i| i.name.to_lowercase() > *a)
            .collect(),
        Some(Resume::Offset(n)) => all.into_iter().skip(*n).collect(),
        Some(Resume::AfterName(_)) => {
            return Err(GraphError::invalid_request(
                "The $skiptoken does not belong to this $orderby.",
            ));
        }
        None => all,
    };
    let offset = match &after {
        Some(Resume::Offset(n)) => *n,
        _ => 0,
    };
    let more = rest.len() > top;
    let signer = model.signer.clone();
    let r = ctx.render(&signer, state);
    let select = ctx.q("$select");
    let value: Vec<Value> = rest
        .iter()
        .take(top)
        .map(|i| {
            let mut v = json::item_json(&r, drive, i, false);
            if expand.thumbnails {
                v["thumbnails"] = super::extra::thumbnail_sets(&r, drive, i);
            }
            super::query::select_keep_expanded(v, select, expand)
        })
        .collect();
    let mut out = json!({
        "@odata.context": format!("{}/$metadata#drives('{}')/items('{}')/children", ctx.api_base, encode(drive_id), encode(&folder.id)),
        "value": value,
    });
    if more {
        let token = if order == super::query::Order::DEFAULT {
            encode_skiptoken(rest[top - 1].name.as_str())
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{SKIPTOKEN_OFFSET_PREFIX}{}", offset + top))
        };
        let mut q = format!("$top={top}&$skiptoken={token}");
        for key in ["$select", "$orderby", "$filter", "$expand"] {
            if let Some(v) = ctx.q(key) {
                q.push_str(&format!("&{key}={}", encode(v)));
            }
        }
        out["@odata.nextLink"] = json!(format!("{}/{}?{q}", ctx.api_base, ctx.raw_path));
    }
    Ok(ok_json(out))
}

pub(super) async fn read_json(body: Body) -> Result<Value, GraphError> {
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| GraphError::invalid_request("The request body is too large."))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| GraphError::invalid_request(format!("Invalid JSON body: {e}")))
}

pub(super) fn created(
    ctx: &ApiCtx,
    state: &AppState,
    drive_id: &str,
    item_id: &str,
    was_created: bool,
) -> Result<Response, GraphError> {
    let model = state.drives.lock();
    let drive = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let item = drive.item(item_id).ok_or_else(GraphError::item_not_found)?;
    let signer = model.signer.clone();
    let v = json::item_json(&ctx.render(&signer, state), drive, item, false);
    let v = json::with_context(v, item_context(ctx, drive_id));
    let status = if was_created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(v)).into_response())
}

async fn create_folder(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    drive_id: &str,
    base_id: &str,
    path: &[String],
    body: Body,
) -> Result<Response, GraphError> {
    let v = read_json(body).await?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if v.get("folder").is_none() {
        return Err(GraphError::invalid_request(
            "Only folders can be created this way; upload files with PUT …/content.",
        ));
    }
    let conflict = Conflict::parse(
        v.get("@microsoft.graph.conflictBehavior")
            .and_then(Value::as_str)
            .or(ctx.q("@microsoft.graph.conflictbehavior")),
        Conflict::Fail,
    )?;
    let by = actor(state, claims);
    let now = state.clock.now();
    let (id, was_created) = {
        let mut model = state.drives.lock();
        let drive = model
            .drive_mut(drive_id)
            .ok_or_else(GraphError::item_not_found)?;
        let parent = drive
            .resolve_path(base_id, path)
            .ok_or_else(GraphError::item_not_found)?
            .id
            .clone();
        drive.put_item(&parent, &name, None, conflict, now, &by)?
    };
    created(ctx, state, drive_id, &id, was_created)
}

fn content_redirect(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
) -> Result<Response, GraphError> {
    let model = state.drives.lock();
    let drive = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let item = drive
        .resolve_path(base_id, path)
        .ok_or_else(GraphError::item_not_found)?;
    if item.is_folder() {
        return Err(GraphError::item_not_found());
    }
    if let Some(inm) = ctx
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if etag_matches(inm, drive, item) {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    let url = model
        .signer
        .download_url(&ctx.origin, drive_id, item, state.clock.now());
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

/// Where an upload addressed by `base` + `path` goes. With `create_parents`, missing folders on
/// the path are created at commit (simple uploads); otherwise they answer 404.
fn upload_target(
    state: &AppState,
    drive_id: &str,
    base_id: &str,
    path: &[String],
    conflict: Conflict,
    create_parents: bool,
) -> Result<UploadTarget, GraphError> {
    let model = state.drives.lock();
    let drive = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    match path.split_last() {
        None => {
            let item = drive.item(base_id).ok_or_else(GraphError::item_not_found)?;
            if item.is_folder() {
                return Err(GraphError::invalid_request(
                    "Cannot upload content to a folder.",
                ));
            }
            Ok(UploadTarget::Replace {
                item: item.id.clone(),
            })
        }
        Some((name, dirs)) => {
            super::drives::validate_name(name)?;
            for d in dirs {
                super::drives::validate_name(d)?;
            }
            // The deepest existing folder on the path, and what is missing below it.
            let mut parent = drive.item(base_id).ok_or_else(GraphError::item_not_found)?;
            let mut missing = Vec::new();
            for (i, d) in dirs.iter().enumerate() {
                match drive.child_by_name(&parent.id, d) {
                    Some(next) => parent = next,
                    None if create_parents => {
                        missing = dirs[i..].to_vec();
                        break;
                    }
                    None => return Err(GraphError::item_not_found()),
                }
                if !parent.is_folder() {
                    return Err(GraphError::invalid_request(
                        "The parent item is not a folder.",
                    ));
                }
            }
            if !parent.is_folder() {
                return Err(GraphError::invalid_request(
                    "The parent item is not a folder.",
                ));
            }
            if conflict == Conflict::Fail
                && missing.is_empty()
                && drive.child_by_name(&parent.id, name).is_some()
            {
                return Err(GraphError::name_already_exists());
            }
            Ok(UploadTarget::Child {
                parent: parent.id.clone(),
                missing,
                name: name.clone(),
                conflict,
            })
        }
    }
}

async fn simple_upload(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    drive_id: &str,
    base_id: &str,
    path: &[String],
    body: Body,
) -> Result<Response, GraphError> {
    let conflict = Conflict::parse(
        ctx.q("@microsoft.graph.conflictbehavior"),
        Conflict::Replace,
    )?;
    let target = upload_target(state, drive_id, base_id, path, conflict, true)?;
    let declared = ctx
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > SIMPLE_UPLOAD_LIMIT) {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalidRequest",
            "The request body is too large for a simple upload; use an upload session.",
        ));
    }
    let name = path.last().cloned().unwrap_or_default();
    let data = upload::receive_body(body, SIMPLE_UPLOAD_LIMIT, &name).await?;
    let by = actor(state, claims);
    let now = state.clock.now();
    let (id, was_created) = {
        let mut model = state.drives.lock();
        upload::commit(&mut model, drive_id, &target, data, now, &by)?
    };
    created(ctx, state, drive_id, &id, was_created)
}

async fn create_session(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    drive_id: &str,
    base_id: &str,
    path: &[String],
    body: Body,
) -> Result<Response, GraphError> {
    let v = read_json(body).await?;
    let item = v.get("item").cloned().unwrap_or(json!({}));
    if !item.is_object() {
        return Err(GraphError::invalid_request("item must be an object."));
    }
    // No conflictBehavior: an existing file is replaced, as production does (sync clients
    // update files exactly this way); `fail` and `rename` behave as named.
    let conflict = Conflict::parse(
        item.get("@microsoft.graph.conflictBehavior")
            .and_then(Value::as_str)
            .or(ctx.q("@microsoft.graph.conflictbehavior")),
        Conflict::Replace,
    )?;
    let meta = super::write::meta_of(&item)?;
    let target = upload_target(state, drive_id, base_id, path, conflict, false)?;
    let personal = state
        .drives
        .lock()
        .drive(drive_id)
        .is_some_and(|d| d.drive_type == super::drives::DriveType::Personal);
    let total = item.get("fileSize").and_then(Value::as_u64);
    let file = SpillFile::new_path().map_err(|e| {
        GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            format!("storage error: {e}"),
        )
    })?;
    let id = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let expires = state.clock.now() + TimeDelta::seconds(SESSION_LIFETIME_SECS);
    let session = UploadSession {
        id: id.clone(),
        drive_id: drive_id.to_owned(),
        target,
        by: actor(state, claims),
        file: Arc::new(file),
        writer: None,
        total,
        received: 0,
        hasher: super::content::QuickXor::new(),
        expires,
        api_base: ctx.api_base.clone(),
        finished: false,
        meta,
        personal,
    };
    state
        .drives
        .lock()
        .sessions
        .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
    Ok(ok_json(json!({
        "@odata.context": format!("{}/$metadata#microsoft.graph.uploadSession", ctx.api_base),
        "uploadUrl": format!("{}/_upload/{id}", super::write::upload_origin(state, &ctx.origin)),
        "expirationDateTime": json::time(expires),
        "nextExpectedRanges": ["0-"],
    })))
}

fn delta(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
) -> Result<Response, GraphError> {
    super::query::check_allowed(ctx, &["$top", "$select"])?;
    let top = ctx.top()?;
    let mut model = state.drives.lock();
    let signer = model.signer.clone();
    let generation = model.generation;
    let drive = model
        .drive_mut(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let target = drive
        .resolve_path(base_id, path)
        .ok_or_else(GraphError::item_not_found)?;
    if target.id != drive.root_id {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "Delta is only supported on the root of the drive.",
        ));
    }
    let r = ctx.render(&signer, state);
    let link_base = format!("{}/{}", ctx.api_base, ctx.raw_path);
    let generation = generation.wrapping_add(drive.resync_epoch);
    let mut page = super::delta::page(
        &r,
        drive,
        generation,
        ctx.q("token"),
        top,
        &link_base,
        r.now,
    )?;
    if let Some(sel) = ctx.q("$select") {
        if let Some(items) = page.get_mut("value").and_then(Value::as_array_mut) {
            for v in items.iter_mut() {
                *v = json::select(v.take(), Some(sel));
            }
        }
    }
    let page = json::with_context(
        page,
        format!("{}/$metadata#Collection(driveItem)", ctx.api_base),
    );
    Ok(ok_json(page))
}
