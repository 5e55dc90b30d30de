//! The `/v1.0/...` entry point and the dispatcher shared with SharePoint's `/_api/v2.0/...`:
//! counts the request, authenticates, parses the route, checks permissions, and answers users,
//! drives and sites (items are in `items.rs`).

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

use super::auth::{self, SITES_READ, USER_READ_OTHERS, USER_READ_SELF};
use super::drives::Model;
use super::error::{GraphError, request_ids};
use super::json::{self, Render};
use super::path::{self, DriveRef, Route, SiteRef};
use super::seed::provision_user;
use crate::directory::Directory;
use crate::state::AppState;
use crate::tokens::AccessClaims;

/// Which API a request came through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiScope {
    Graph,
    /// SharePoint's v2.0 drive API on this host: only drives on the host are visible.
    SharePoint {
        host: String,
    },
}

/// Per-request context for the dispatcher.
pub struct ApiCtx {
    pub scope: ApiScope,
    /// `http://host:port` as the client reached the emulator.
    pub origin: String,
    /// `{origin}/v1.0` or `{origin}/_sharepoint/{host}/_api/v2.0`.
    pub api_base: String,
    /// The still-encoded resource path after the API base (no leading slash).
    pub raw_path: String,
    /// Query parameters; keys lower-cased.
    pub query: HashMap<String, String>,
    pub method: Method,
    pub headers: HeaderMap,
}

impl ApiCtx {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// `$top` as a page size.
    pub fn top(&self) -> Result<Option<usize>, GraphError> {
        match self.q("$top") {
            None => Ok(None),
            Some(t) => match t.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(GraphError::invalid_request(format!(
                    "Invalid $top value '{t}'."
                ))),
            },
        }
    }

    pub fn render<'a>(
        &'a self,
        signer: &'a crate::files::UrlSigner,
        state: &AppState,
    ) -> Render<'a> {
        Render {
            origin: &self.origin,
            api_base: &self.api_base,
            now: state.clock.now(),
            signer,
        }
    }
}

/// The origin clients reach the emulator at, for absolute links: `public_base_url` when set,
/// else the request's scheme (`x-forwarded-proto` over TLS) and authority.
pub fn origin(state: &AppState, uri: &Uri, headers: &HeaderMap) -> String {
    match &state.settings.public_base_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => crate::identity::request_origin(uri, headers),
    }
}

/// Query string → map with lower-cased keys (`$skipToken` = `$skiptoken`).
pub fn parse_query(uri: &Uri) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(uri.query().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// `/v1.0/{*rest}` for every method.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1.0/{*rest}", any(graph_entry))
        .layer(axum::middleware::from_fn(request_ids))
}

async fn graph_entry(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw = parts
        .uri
        .path()
        .strip_prefix("/v1.0/")
        .unwrap_or("")
        .to_owned();
    let parsed = path::parse(&raw);
    let template = match &parsed {
        Ok((_, t)) => format!("/v1.0/{t}"),
        Err(_) => "/v1.0/{unknown}".to_owned(),
    };
    state.counters.graph(parts.method.as_str(), &template);
    let origin = origin(&state, &parts.uri, &parts.headers);
    let ctx = ApiCtx {
        scope: ApiScope::Graph,
        api_base: format!("{origin}/v1.0"),
        origin,
        raw_path: raw,
        query: parse_query(&parts.uri),
        method: parts.method,
        headers: parts.headers,
    };
    let result = async {
        let claims = auth::authenticate_graph(&state, &ctx.headers)?;
        let (route, _) = parsed?;
        dispatch(&state, &ctx, &claims, route, body).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Answers an authenticated request (Graph or SharePoint v2.0).
pub async fn dispatch(
    state: &AppState,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    route: Route,
    body: Body,
) -> Result<Response, GraphError> {
    let get_only = !matches!(route, Route::Item { .. });
    if get_only && ctx.method != Method::GET && ctx.method != Method::HEAD {
        return Err(GraphError::method_not_allowed());
    }
    let select = ctx.q("$select");
    match route {
        Route::Me => {
            auth::require_delegated(claims)?;
            auth::require(claims, USER_READ_SELF)?;
            let dir = state.directory.read().expect("directory lock poisoned");
            let user = dir
                .users
                .get(&claims.oid)
                .ok_or_else(GraphError::item_not_found)?;
            let v = json::with_context(
                json::user_json(user),
                format!("{}/$metadata#users/$entity", ctx.api_base),
            );
            Ok(ok_json(json::select(v, select)))
        }
        Route::User(id) => {
            let dir = state.directory.read().expect("directory lock poisoned");
            let user = dir
                .user(&id)
                .filter(|u| u.tenant_id == claims.tid)
                .ok_or_else(|| user_not_found(&id))?;
            let own = !claims.is_app_only() && user.id == claims.oid;
            auth::require(
                claims,
                if own {
                    USER_READ_SELF
                } else {
                    USER_READ_OTHERS
                },
            )?;
            let v = json::with_context(
                json::user_json(user),
                format!("{}/$metadata#users/$entity", ctx.api_base),
            );
            Ok(ok_json(json::select(v, select)))
        }
        Route::Drive(dref) => {
            let dir = state.directory.read().expect("directory lock poisoned");
            let mut model = state.drives.lock();
            let id = resolve_drive(&mut model, &dir, ctx, claims, &dref, false)?;
            let drive = model.drive(&id).ok_or_else(GraphError::item_not_found)?;
            let v = json::with_context(
                json::drive_json(drive),
                format!("{}/$metadata#drives/$entity", ctx.api_base),
            );
            Ok(ok_json(json::select(v, select)))
        }
        Route::Drives(owner) => {
            let dir = state.directory.read().expect("directory lock poisoned");
            let mut model = state.drives.lock();
            let ids = list_drives(&mut model, &dir, ctx, claims, &owner)?;
            let value: Vec<Value> = ids
                .iter()
                .filter_map(|id| model.drive(id))
                .map(|d| json::select(json::drive_json(d), select))
                .collect();
            Ok(ok_json(json!({
                "@odata.context": format!("{}/$metadata#drives", ctx.api_base),
                "value": value,
            })))
        }
        Route::Site(site) => {
            auth::require(claims, SITES_READ)?;
            let model = state.drives.lock();
            let s = find_site(&model, ctx, claims, &site)?;
            let v = json::with_context(
                json::site_json(s),
                format!("{}/$metadata#sites/$entity", ctx.api_base),
            );
            Ok(ok_json(json::select(v, select)))
        }
        Route::DriveList(dref, list) => super::extra::drive_list(state, ctx, claims, &dref, list),
        Route::Item {
            drive,
            base,
            path,
            op,
        } => super::items::handle(state, ctx, claims, &drive, base, path, op, body).await,
    }
}

pub fn ok_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn user_not_found(id: &str) -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn find_site<'m>(
    model: &'m Model,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    site: &SiteRef,
) -> Result<&'m crate::graph::drives::Site, GraphError> {
    let s = match site {
        SiteRef::Root => match &ctx.scope {
            ApiScope::SharePoint { host } => model.site(host),
            ApiScope::Graph => model.root_site_of(&claims.tid),
        },
        SiteRef::Key(k) => model.site(k),
    };
    s.filter(|s| s.tenant_id == claims.tid)
        .ok_or_else(GraphError::item_not_found)
}

/// The host part of a drive's web URL.
fn drive_host(d: &crate::graph::drives::Drive) -> &str {
    d.web_url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or("")
}

/// Resolves a single drive reference and checks the caller may use it.
pub fn resolve_drive(
    model: &mut Model,
    dir: &Directory,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    dref: &DriveRef,
    write: bool,
) -> Result<String, GraphError> {
    let id = match dref {
        DriveRef::Me => {
            auth::require_delegated(claims)?;
            let user = dir
                .users
                .get(&claims.oid)
                .ok_or_else(GraphError::item_not_found)?;
            provision_user(model, dir, user)
        }
        DriveRef::User(u) => {
            let user = dir
                .user(u)
                .filter(|x| x.tenant_id == claims.tid)
                .ok_or_else(|| user_not_found(u))?;
            provision_user(model, dir, user)
        }
        DriveRef::Id(id) => model
            .drive(id)
            .ok_or_else(GraphError::item_not_found)?
            .id
            .clone(),
        DriveRef::Site(site) => {
            auth::require(
                claims,
                SITES_READ
                    .iter()
                    .chain(auth::FILES_READ)
                    .copied()
                    .collect::<Vec<_>>()
                    .as_slice(),
            )?;
            let s = find_site(model, ctx, claims, site)?;
            s.drive_ids
                .first()
                .cloned()
                .ok_or_else(GraphError::item_not_found)?
        }
        DriveRef::Default => return Err(GraphError::bad_segment("drives")),
    };
    let drive = model.drive(&id).ok_or_else(GraphError::item_not_found)?;
    if let ApiScope::SharePoint { host } = &ctx.scope {
        if !drive_host(drive).eq_ignore_ascii_case(host) {
            return Err(GraphError::item_not_found());
        }
    }
    auth::check_drive(claims, drive, write)?;
    Ok(id)
}

fn list_drives(
    model: &mut Model,
    dir: &Directory,
    ctx: &ApiCtx,
    claims: &AccessClaims,
    owner: &DriveRef,
) -> Result<Vec<String>, GraphError> {
    match owner {
        DriveRef::Me | DriveRef::User(_) => {
            Ok(vec![resolve_drive(model, dir, ctx, claims, owner, false)?])
        }
        DriveRef::Site(site) => {
            auth::require(
                claims,
                SITES_READ
                    .iter()
                    .chain(auth::FILES_READ)
                    .copied()
                    .collect::<Vec<_>>()
                    .as_slice(),
            )?;
            let ids = find_site(model, ctx, claims, site)?.drive_ids.clone();
            for id in &ids {
                let d = model.drive(id).ok_or_else(GraphError::item_not_found)?;
                auth::check_drive(claims, d, false)?;
            }
            Ok(ids)
        }
        DriveRef::Default => match &ctx.scope {
            // SharePoint: the drives on this host (the caller's own OneDrive on a -my host).
            ApiScope::SharePoint { host } => {
                let host = host.clone();
                let mine = if claims.is_app_only() {
                    None
                } else {
                    dir.users
                        .get(&claims.oid)
                        .map(|u| provision_user(model, dir, u))
                };
                let ids: Vec<String> = model
                    .drives
                    .values()
                    .filter(|d| drive_host(d).eq_ignore_ascii_case(&host))
                    .filter(|d| auth::check_drive(claims, d, false).is_ok())
                    .filter(|d| {
                        d.owner_user.is_none()
                            || mine.as_deref() == Some(d.id.as_str())
                            || claims.is_app_only()
                    })
                    .map(|d| d.id.clone())
                    .collect();
                Ok(ids)
            }
            // Graph `/drives`: the tenant root site's libraries.
            ApiScope::Graph => list_drives(model, dir, ctx, claims, &DriveRef::Site(SiteRef::Root)),
        },
        DriveRef::Id(_) => Err(GraphError::bad_segment("drives")),
    }
}
