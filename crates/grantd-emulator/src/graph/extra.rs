//! The drive read surface beyond listings: `search(q='…')`, `thumbnails`, `permissions` (list,
//! `createLink`, `invite`), `versions`, `special/approot`, `/drive/sharedWithMe` (with
//! `remoteItem` facets) and `/drive/recent`, plus the placeholder thumbnail images.
//!
//! The emulator keeps no version history and renders no previews: `versions` lists the current
//! version, and thumbnail URLs serve a 1×1 PNG whatever size they name.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use http::{StatusCode, header};
use serde_json::{Value, json};

use super::drives::{Conflict, Drive, DriveType, Identity, Item};
use super::error::GraphError;
use super::json::{self, Render, time};
use super::path::{DriveList, DriveRef, decode, encode};
use super::routes::{ApiCtx, ok_json, resolve_drive};
use crate::state::AppState;
use crate::tokens::AccessClaims;

/// A sharing link or an invitation on an item.
#[derive(Debug, Clone)]
pub struct Permission {
    pub id: String,
    /// `read` or `write`.
    pub role: &'static str,
    /// `view` / `edit` / `embed` and `anonymous` / `organization` / `users`, for links.
    pub link: Option<(String, String)>,
    /// The invited user, for invitations.
    pub granted_to: Option<Identity>,
    pub share_id: String,
    pub created: DateTime<Utc>,
}

/// Thumbnail edge lengths Graph names `small`, `medium` and `large`.
const SIZES: [(&str, u32); 3] = [("small", 96), ("medium", 176), ("large", 800)];

/// A 1×1 transparent PNG.
const PLACEHOLDER_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

/// `/_thumbnails/{drive}/{item}/{size}`: the placeholder image (pre-authenticated, like
/// production's thumbnail URLs).
pub fn router() -> Router<AppState> {
    Router::new().route("/_thumbnails/{drive}/{item}/{size}", get(thumbnail_image))
}

async fn thumbnail_image(Path((_, _, size)): Path<(String, String, String)>) -> Response {
    if !SIZES.iter().any(|(n, _)| *n == size) {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [(header::CONTENT_TYPE, "image/png")],
        Body::from(PLACEHOLDER_PNG),
    )
        .into_response()
}

/// The `thumbnails` collection of an item: one set for files, none for folders.
pub fn thumbnail_sets(r: &Render, d: &Drive, i: &Item) -> Value {
    if i.is_folder() {
        return json!([]);
    }
    let mut set = json!({"id": "0"});
    for (name, edge) in SIZES {
        set[name] = json!({
            "height": edge,
            "width": edge,
            "url": format!("{}/_thumbnails/{}/{}/{name}", r.origin, encode(&d.id), encode(&i.id)),
        });
    }
    json!([set])
}

fn find<'d>(d: &'d Drive, base_id: &str, path: &[String]) -> Result<&'d Item, GraphError> {
    d.resolve_path(base_id, path)
        .ok_or_else(GraphError::item_not_found)
}

pub fn thumbnails(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
) -> Result<Response, GraphError> {
    super::query::check_allowed(ctx, &["$select"])?;
    let model = state.drives.lock();
    let d = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let item = find(d, base_id, path)?;
    let signer = model.signer.clone();
    let r = ctx.render(&signer, state);
    Ok(ok_json(json!({
        "@odata.context": format!("{}/$metadata#drives('{}')/items('{}')/thumbnails", ctx.api_base, encode(drive_id), encode(&item.id)),
        "value": thumbnail_sets(&r, d, item),
    })))
}

/// The text of `search(q='…')` in the raw path (`''` stands for `'`).
fn search_text(raw_path: &str) -> Result<String, GraphError> {
    let bad = || GraphError::invalid_request("Expected search(q='text').");
    let start = raw_path.rfind("/search(").ok_or_else(bad)? + "/search(".len();
    let inner = raw_path[start..].strip_suffix(')').ok_or_else(bad)?;
    let inner = decode(inner);
    let (key, val) = inner.split_once('=').ok_or_else(bad)?;
    if !key.trim().eq_ignore_ascii_case("q") {
        return Err(bad());
    }
    let val = val.trim();
    let val = val
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .ok_or_else(bad)?;
    Ok(val.replace("''", "'"))
}

/// `…/search(q='…')`: items below the base whose name contains every word of the query
/// (case-insensitive), parents before children, paged with `$top` / `$skiptoken`.
pub fn search(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
) -> Result<Response, GraphError> {
    super::query::check_allowed(ctx, &["$top", "$skiptoken", "$select"])?;
    let q = search_text(&ctx.raw_path)?;
    let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
    let top = ctx.top()?.unwrap_or(200).min(1000);
    let skip: usize = match ctx.q("$skiptoken") {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| GraphError::invalid_request("Invalid $skiptoken."))?,
    };
    let model = state.drives.lock();
    let d = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let base = find(d, base_id, path)?;
    let mut hits: Vec<&Item> = Vec::new();
    let mut stack = vec![base.id.clone()];
    while let Some(cur) = stack.pop() {
        for c in d.children(&cur) {
            let name = c.name.to_lowercase();
            if !words.is_empty() && words.iter().all(|w| name.contains(w.as_str())) {
                hits.push(c);
            }
            if c.is_folder() {
                stack.push(c.id.clone());
            }
        }
    }
    hits.sort_by_key(|i| (d.depth(&i.id), i.name.to_lowercase()));
    let signer = model.signer.clone();
    let r = ctx.render(&signer, state);
    let select = ctx.q("$select");
    let value: Vec<Value> = hits
        .iter()
        .skip(skip)
        .take(top)
        .map(|i| {
            let mut v = json::item_json(&r, d, i, false);
            v["searchResult"] = json!({});
            json::select(v, select)
        })
        .collect();
    let mut out = json!({
        "@odata.context": format!("{}/$metadata#Collection(driveItem)", ctx.api_base),
        "value": value,
    });
    if hits.len() > skip + top {
        let mut link = format!(
            "{}/{}?$top={top}&$skiptoken={}",
            ctx.api_base,
            ctx.raw_path,
            skip + top
        );
        if let Some(s) = select {
            link.push_str(&format!("&$select={}", encode(s)));
        }
        out["@odata.nextLink"] = json!(link);
    }
    Ok(ok_json(out))
}

fn identity_json(i: &Identity) -> Value {
    let mut u = json!({"displayName": i.display_name});
    if !i.id.is_empty() {
        u["id"] = json!(i.id);
    }
    if let Some(e) = &i.email {
        u["email"] = json!(e);
    }
    json!({ "user": u })
}

fn permission_json(d: &Drive, p: &Permission) -> Value {
    let mut v = json!({
        "id": p.id,
        "roles": [p.role],
        "shareId": p.share_id,
    });
    if let Some((kind, scope)) = &p.link {
        let web = match d.drive_type {
            DriveType::Personal => format!("https://1drv.ms/u/s!{}", p.share_id),
            _ => format!("{}/:u:/g/{}", d.web_url, p.share_id),
        };
        v["link"] = json!({"type": kind, "scope": scope, "webUrl": web, "preventsDownload": false});
        v["hasPassword"] = json!(false);
    }
    if let Some(g) = &p.granted_to {
        v["grantedToV2"] = identity_json(g);
        v["invitation"] = json!({"signInRequired": true});
    }
    v
}

/// The owner's permission every item has.
fn owner_permission(d: &Drive) -> Value {
    json!({
        "id": "aTowIy5mfG1lbWJlcnNoaXB8b3duZXI",
        "roles": ["owner"],
        "shareId": "owner",
        "grantedToV2": identity_json(&d.owner),
        "grantedTo": identity_json(&d.owner),
    })
}

pub fn permissions(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
) -> Result<Response, GraphError> {
    super::query::check_allowed(ctx, &["$select"])?;
    let model = state.drives.lock();
    let d = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let item = find(d, base_id, path)?;
    let mut value = vec![owner_permission(d)];
    value.extend(
        d.permissions
            .get(&item.id)
            .into_iter()
            .flatten()
            .map(|p| permission_json(d, p)),
    );
    let select = ctx.q("$select");
    let value: Vec<Value> = value.into_iter().map(|v| json::select(v, select)).collect();
    Ok(ok_json(json!({
        "@odata.context": format!("{}/$metadata#drives('{}')/items('{}')/permissions", ctx.api_base, encode(drive_id), encode(&item.id)),
        "value": value,
    })))
}

fn share_id() -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    format!("E{}", &raw[..20])
}

/// `POST …/createLink` `{type, scope?}`: 201 with a new link, 200 with the existing one of the
/// same type and scope (Graph reuses links).
pub fn create_link(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
    body: &Value,
) -> Result<Response, GraphError> {
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::invalid_request("The 'type' of the link is required."))?
        .to_ascii_lowercase();
    let role = match kind.as_str() {
        "view" | "embed" => "read",
        "edit" => "write",
        other => {
            return Err(GraphError::invalid_request(format!(
                "Invalid link type '{other}': use view, edit or embed."
            )));
        }
    };
    let mut model = state.drives.lock();
    let d = model
        .drive_mut(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let default_scope = if d.drive_type == DriveType::Personal {
        "anonymous"
    } else {
        "organization"
    };
    let scope = body
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or(default_scope)
        .to_ascii_lowercase();
    if !matches!(scope.as_str(), "anonymous" | "organization" | "users") {
        return Err(GraphError::invalid_request(format!(
            "Invalid link scope '{scope}': use anonymous, organization or users."
        )));
    }
    if kind == "embed" && d.drive_type != DriveType::Personal {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "notSupported",
            "Embed links are only supported on OneDrive personal.",
        ));
    }
    let item_id = find(d, base_id, path)?.id.clone();
    let now = state.clock.now();
    let list = d.permissions.entry(item_id.clone()).or_default();
    let existing = list
        .iter()
        .find(|p| p.link.as_ref() == Some(&(kind.clone(), scope.clone())))
        .cloned();
    let (perm, status) = match existing {
        Some(p) => (p, StatusCode::OK),
        None => {
            let p = Permission {
                id: uuid::Uuid::new_v4().to_string(),
                role,
                link: Some((kind, scope)),
                granted_to: None,
                share_id: share_id(),
                created: now,
            };
            list.push(p.clone());
            (p, StatusCode::CREATED)
        }
    };
    d.item(&item_id).ok_or_else(GraphError::item_not_found)?;
    let v = json::with_context(
        permission_json(d, &perm),
        format!("{}/$metadata#permission", ctx.api_base),
    );
    Ok((status, axum::Json(v)).into_response())
}

/// `POST …/invite` `{recipients:[{email}], roles:["read"|"write"], requireSignIn, sendInvitation}`:
/// shares the item with users of the tenant (they see it in `sharedWithMe`).
pub fn invite(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
    body: &Value,
) -> Result<Response, GraphError> {
    let emails: Vec<String> = body
        .get("recipients")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("email").and_then(Value::as_str).map(str::to_owned))
        .collect();
    if emails.is_empty() {
        return Err(GraphError::invalid_request(
            "At least one recipient with an email is required.",
        ));
    }
    let role = match body
        .get("roles")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(Value::as_str)
    {
        Some("write") => "write",
        Some("read") | None => "read",
        Some(other) => {
            return Err(GraphError::invalid_request(format!(
                "Invalid role '{other}': use read or write."
            )));
        }
    };
    let dir = state.directory.read().expect("directory lock poisoned");
    let mut model = state.drives.lock();
    let d = model
        .drive_mut(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let mut users = Vec::new();
    for e in &emails {
        let u = dir
            .user(e)
            .filter(|u| u.tenant_id == d.tenant_id)
            .ok_or_else(|| {
                GraphError::invalid_request(format!(
                    "The recipient '{e}' is not a user of this organization."
                ))
            })?;
        users.push(super::seed::identity_of(u));
    }
    let item_id = find(d, base_id, path)?.id.clone();
    let now = state.clock.now();
    let mut made = Vec::new();
    for u in users {
        let p = Permission {
            id: uuid::Uuid::new_v4().to_string(),
            role,
            link: None,
            granted_to: Some(u),
            share_id: share_id(),
            created: now,
        };
        d.permissions
            .entry(item_id.clone())
            .or_default()
            .push(p.clone());
        made.push(p);
    }
    d.item(&item_id).ok_or_else(GraphError::item_not_found)?;
    let value: Vec<Value> = made.iter().map(|p| permission_json(d, p)).collect();
    Ok(ok_json(json!({
        "@odata.context": format!("{}/$metadata#Collection(permission)", ctx.api_base),
        "value": value,
    })))
}

/// `…/versions`: the current version only (the emulator keeps no history).
pub fn versions(
    state: &AppState,
    ctx: &ApiCtx,
    drive_id: &str,
    base_id: &str,
    path: &[String],
) -> Result<Response, GraphError> {
    super::query::check_allowed(ctx, &["$select", "$top"])?;
    let model = state.drives.lock();
    let d = model
        .drive(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let item = find(d, base_id, path)?;
    if item.is_folder() {
        return Err(GraphError::invalid_request(
            "Versions are only available for files.",
        ));
    }
    let id = match d.drive_type {
        DriveType::Personal => "current".to_owned(),
        _ => format!("{}.0", item.content_version.max(1)),
    };
    let v = json!({
        "id": id,
        "lastModifiedDateTime": time(item.modified),
        "size": item.size_of_file(),
        "lastModifiedBy": identity_json(&item.modified_by),
    });
    Ok(ok_json(json!({
        "@odata.context": format!("{}/$metadata#drives('{}')/items('{}')/versions", ctx.api_base, encode(drive_id), encode(&item.id)),
        "value": [json::select(v, ctx.q("$select"))],
    })))
}

/// The id of the calling app's folder, `Apps/{app display name}`, created on first use (as
/// Graph does for `special/approot`).
pub fn approot(
    state: &AppState,
    claims: &AccessClaims,
    drive_id: &str,
) -> Result<String, GraphError> {
    let app_name = {
        let dir = state.directory.read().expect("directory lock poisoned");
        dir.apps
            .get(&claims.appid)
            .map(|a| a.display_name.clone())
            .unwrap_or_else(|| claims.appid.clone())
    };
    let app_name: String = app_name
        .chars()
        .map(|c| if "\"*:<>?/\\|".contains(c) { '_' } else { c })
        .collect();
    let by = Identity::system();
    let now = state.clock.now();
    let mut model = state.drives.lock();
    let d = model
        .drive_mut(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let root = d.root_id.clone();
    let apps = match d.child_by_name(&root, "Apps") {
        Some(a) => a.id.clone(),
        None => d.put_item(&root, "Apps", None, Conflict::Fail, now, &by)?.0,
    };
    Ok(match d.child_by_name(&apps, &app_name) {
        Some(a) => a.id.clone(),
        None => {
            d.put_item(&apps, &app_name, None, Conflict::Fail, now, &by)?
                .0
        }
    })
}

fn remote_item(r: &Render, d: &Drive, i: &Item, shared_at: Option<DateTime<Utc>>) -> Value {
    let full = json::item_json(r, d, i, false);
    let mut remote = json!({
        "id": i.id,
        "name": i.name,
        "size": full["size"],
        "webUrl": full["webUrl"],
        "createdBy": full["createdBy"],
        "lastModifiedBy": full["lastModifiedBy"],
        "createdDateTime": full["createdDateTime"],
        "lastModifiedDateTime": full["lastModifiedDateTime"],
        "fileSystemInfo": full["fileSystemInfo"],
        "parentReference": {"driveId": d.id, "driveType": d.drive_type.as_str(), "id": i.parent},
    });
    for facet in ["file", "folder"] {
        if let Some(f) = full.get(facet) {
            remote[facet] = f.clone();
        }
    }
    if let Some(at) = shared_at {
        remote["shared"] = json!({"owner": identity_json(&d.owner), "sharedDateTime": time(at)});
    }
    json!({
        "id": i.id,
        "name": i.name,
        "size": full["size"],
        "webUrl": full["webUrl"],
        "createdDateTime": full["createdDateTime"],
        "lastModifiedDateTime": full["lastModifiedDateTime"],
        "remoteItem": remote,
    })
}

/// Delegated permissions that reach items other users shared with the caller.
const SHARED_READ: &[&str] = &[
    "Files.Read.All",
    "Files.ReadWrite.All",
    "Sites.Read.All",
    "Sites.ReadWrite.All",
];
const SHARED_WRITE: &[&str] = &["Files.ReadWrite.All", "Sites.ReadWrite.All"];

/// Access to an item of another user's drive through an invitation on it or on an ancestor
/// (how a `remoteItem` from `sharedWithMe` is followed): the drive id when granted.
pub fn shared_access(
    model: &super::drives::Model,
    claims: &AccessClaims,
    dref: &DriveRef,
    base: &super::path::ItemBase,
    write: bool,
) -> Option<String> {
    let (DriveRef::Id(drive_id), super::path::ItemBase::Id(item_id)) = (dref, base) else {
        return None;
    };
    if claims.is_app_only() {
        return None;
    }
    crate::graph::auth::require(claims, if write { SHARED_WRITE } else { SHARED_READ }).ok()?;
    let d = model.drive(drive_id)?;
    if d.tenant_id != claims.tid {
        return None;
    }
    let mut cur = d.item(item_id);
    while let Some(i) = cur {
        let granted = d.permissions.get(&i.id).into_iter().flatten().any(|p| {
            p.granted_to.as_ref().is_some_and(|g| g.id == claims.oid)
                && (!write || p.role == "write")
        });
        if granted {
            return Some(d.id.clone());
        }
        cur = i.parent.as_deref().and_then(|p| d.item(p));
    }
    None
}

/// `/drive/sharedWithMe` and `/drive/recent`.
pub fn drive_list(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    dref: &DriveRef,
    list: DriveList,
) -> Result<Response, GraphError> {
    super::query::check_allowed(ctx, &["$select", "$top"])?;
    crate::graph::auth::require_delegated(claims)?;
    let top = ctx.top()?.unwrap_or(200).min(1000);
    let own_id = {
        let dir = state.directory.read().expect("directory lock poisoned");
        let mut model = state.drives.lock();
        resolve_drive(&mut model, &dir, ctx, claims, dref, false)?
    };
    let model = state.drives.lock();
    let signer = model.signer.clone();
    let r = ctx.render(&signer, state);
    let mut value: Vec<Value> = Vec::new();
    match list {
        DriveList::SharedWithMe => {
            let mut shared: Vec<(DateTime<Utc>, &Drive, &Item)> = Vec::new();
            for d in model.drives.values().filter(|d| d.id != own_id) {
                for (item_id, perms) in &d.permissions {
                    let at = perms
                        .iter()
                        .filter(|p| p.granted_to.as_ref().is_some_and(|g| g.id == claims.oid))
                        .map(|p| p.created)
                        .min();
                    if let (Some(at), Some(i)) = (at, d.item(item_id)) {
                        shared.push((at, d, i));
                    }
                }
            }
            shared.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.name.cmp(&b.2.name)));
            value.extend(
                shared
                    .into_iter()
                    .take(top)
                    .map(|(at, d, i)| remote_item(&r, d, i, Some(at))),
            );
        }
        DriveList::Recent => {
            let d = model
                .drive(&own_id)
                .ok_or_else(GraphError::item_not_found)?;
            let mut files: Vec<&Item> = d
                .items
                .values()
                .filter(|i| !i.deleted && !i.is_folder())
                .collect();
            files.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.name.cmp(&b.name)));
            value.extend(
                files
                    .into_iter()
                    .take(top)
                    .map(|i| remote_item(&r, d, i, None)),
            );
        }
    }
    let select = ctx.q("$select");
    let value: Vec<Value> = value.into_iter().map(|v| json::select(v, select)).collect();
    Ok(ok_json(json!({
        "@odata.context": format!("{}/$metadata#Collection(driveItem)", ctx.api_base),
        "value": value,
    })))
}
