//! SharePoint REST of every tenant host (`{tenant}.sharepoint.com` and `{tenant}-my.sharepoint.com`)
//! under `/_sharepoint/{host}/...`, since those hostnames cannot resolve here: a client maps
//! `https://{host}/X` to `{emulator}/_sharepoint/{host}/X`.
//!
//! Only tokens whose `aud` is `https://{host}` are accepted; anything else (a Graph token, a token
//! for the other host) gets SharePoint's 401 with `WWW-Authenticate: Bearer realm="<tid>",
//! client_id="00000003-0000-0ff1-ce00-000000000000",…` and `x-ms-diagnostics`. Served:
//! `/_api/web`, `/_api/web/currentuser`, the OneDrive v2.0 drive API `/_api/v2.0/...`
//! (`drives`, `drive`, `me/drive`, `drives/{id}/root/children`, items, content, delta… through
//! the Graph dispatcher, limited to drives on that host), and the File Picker v8 page
//! `/_layouts/15/FilePicker.aspx` (`crate::picker`). Unknown hosts answer 404. The consumer
//! picker's hosts (`onedrive.live.com`, `api.onedrive.com`) are handed to
//! `crate::picker::consumer`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};

use crate::directory::Tenant;
use crate::graph::error::request_ids;
use crate::graph::json::time;
use crate::graph::routes::{ApiCtx, ApiScope, dispatch, origin, parse_query};
use crate::graph::{drives::guid_from, path, seed::seed_time};
use crate::state::AppState;
use crate::tokens::{AccessClaims, Audience, BearerError};

/// SharePoint Online's application id (the `client_id` in its 401 challenge).
pub const SHAREPOINT_APP_ID: &str = "00000003-0000-0ff1-ce00-000000000000";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/_sharepoint/{host}/{*rest}", any(entry))
        .layer(axum::middleware::from_fn(request_ids))
}

/// The 401 SharePoint sends for a token it will not take.
pub fn challenge(tenant: &Tenant, e: &BearerError) -> Response {
    let (diagnostics, description) = match e {
        BearerError::Missing => (None, "Unsupported security token.".to_owned()),
        BearerError::Invalid => (
            Some(
                r#"3000006;reason="Token contains invalid signature.";category="invalid_client""#
                    .to_owned(),
            ),
            "Invalid JWT token. The token signature could not be validated.".to_owned(),
        ),
        // [?] the exact diagnostics code for expiry is not pinned down in the reference.
        BearerError::Expired => (
            Some(r#"3000007;reason="Token expired.";category="invalid_client""#.to_owned()),
            "Invalid JWT token. The token is expired.".to_owned(),
        ),
        BearerError::WrongAudience(aud) => (
            Some(format!(
                r#"3000003;reason="Invalid audience Uri '{aud}'.";category="invalid_client""#
            )),
            format!("Invalid audience Uri '{aud}'."),
        ),
    };
    let www = format!(
        r#"Bearer realm="{}",client_id="{SHAREPOINT_APP_ID}",trusted_issuers="00000001-0000-0000-c000-000000000000@*,D3776938-3DBA-481F-A652-4BEDFCAB7CD8@*,https://sts.windows.net/*/,https://login.microsoftonline.com/*/v2.0,{SHAREPOINT_APP_ID}@90140122-8516-11e1-8eff-49304924019b",authorization_uri="https://login.windows.net/common/oauth2/authorize""#,
        tenant.id
    );
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error_description": description})),
    )
        .into_response();
    let h = resp.headers_mut();
    if let Ok(v) = www.parse() {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    if let Some(d) = diagnostics.and_then(|d| d.parse().ok()) {
        h.insert("x-ms-diagnostics", d);
    }
    resp
}

/// SharePoint's own error shape for `/_api` (not the v2.0 drive API).
fn sp_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        json!({"odata.error": {"code": code, "message": {"lang": "en-US", "value": message}}});
    (status, axum::Json(body)).into_response()
}

fn web_json(tenant: &Tenant, host: &str, my_host: bool, verbose: bool) -> Value {
    let (title, template) = if my_host {
        ("", "SPSMSITEHOST")
    } else {
        ("Communication site", "SITEPAGEPUBLISHING")
    };
    let mut web = json!({
        "Created": time(seed_time()).trim_end_matches('Z'),
        "Description": "",
        "Id": guid_from(&format!("web:{}:{host}", tenant.id)),
        "Language": 1033,
        "LastItemModifiedDate": time(seed_time()),
        "ServerRelativeUrl": "/",
        "Title": title,
        "Url": format!("https://{host}"),
        "WebTemplate": template,
    });
    if verbose {
        web["__metadata"] = json!({"id": format!("https://{host}/_api/Web"), "uri": format!("https://{host}/_api/Web"), "type": "SP.Web"});
        json!({ "d": web })
    } else {
        let obj = web.as_object_mut().expect("object");
        obj.insert(
            "odata.metadata".into(),
            json!(format!(
                "https://{host}/_api/$metadata#SP.ApiData.Webs/@Element"
            )),
        );
        obj.insert("odata.type".into(), json!("SP.Web"));
        obj.insert("odata.id".into(), json!(format!("https://{host}/_api/Web")));
        web
    }
}

fn current_user_json(state: &AppState, claims: &AccessClaims, verbose: bool) -> Option<Value> {
    let dir = state.directory.read().expect("directory lock poisoned");
    let u = dir.users.get(&claims.oid)?;
    let user = json!({
        "Id": 10,
        "LoginName": format!("i:0#.f|membership|{}", u.upn),
        "Title": u.display_name,
        "Email": u.upn,
        "UserPrincipalName": u.upn,
        "IsSiteAdmin": u.admin,
    });
    Some(if verbose { json!({ "d": user }) } else { user })
}

/// The counter key of a SharePoint request: `rest` is the path after `/_sharepoint/{host}/`.
fn route_template(
    parsed: &Option<Result<(path::Route, String), crate::graph::error::GraphError>>,
    rest: &str,
) -> String {
    match (parsed, rest) {
        (Some(Ok((_, t))), _) => format!("/_api/v2.0/{t}"),
        (Some(Err(_)), _) => "/_api/v2.0/{unknown}".into(),
        (None, r) if r.eq_ignore_ascii_case("_api/web") => "/_api/web".into(),
        (None, r) if r.eq_ignore_ascii_case("_api/web/currentuser") => {
            "/_api/web/currentuser".into()
        }
        (None, r) if r.eq_ignore_ascii_case(crate::picker::PATH) => {
            format!("/{}", crate::picker::PATH)
        }
        (None, _) => "/{unknown}".into(),
    }
}

/// Host and counter key of a `/_sharepoint/{host}/…` path (for requests a fault answered).
pub fn counter_key(full_path: &str) -> Option<(String, String)> {
    let after = full_path.strip_prefix("/_sharepoint/")?;
    let (host, rest) = after.split_once('/').unwrap_or((after, ""));
    let rest = rest.trim_end_matches('/');
    let parsed = rest.strip_prefix("_api/v2.0/").map(path::parse);
    Some((host.to_ascii_lowercase(), route_template(&parsed, rest)))
}

async fn entry(
    State(state): State<AppState>,
    Path((host, _)): Path<(String, String)>,
    req: Request,
) -> Response {
    let host = host.to_ascii_lowercase();
    let (parts, body) = req.into_parts();
    let prefix = format!("/_sharepoint/{host}/");
    let full = parts.uri.path();
    let rest = full
        .get(prefix.len()..)
        .filter(|_| full.to_ascii_lowercase().starts_with(&prefix))
        .unwrap_or("")
        .trim_end_matches('/')
        .to_owned();
    let parsed = rest.strip_prefix("_api/v2.0/").map(path::parse);
    let route = route_template(&parsed, &rest);
    state
        .counters
        .sharepoint(parts.method.as_str(), &host, &route);
    if crate::picker::consumer::serves(&host) {
        return crate::picker::consumer::entry(&state, &host, &rest, parts, body).await;
    }
    let tenant = state
        .directory
        .read()
        .expect("directory lock poisoned")
        .tenant_by_sharepoint_host(&host)
        .cloned();
    let Some(tenant) = tenant else {
        return (
            StatusCode::NOT_FOUND,
            format!("No SharePoint host named {host} in the emulator."),
        )
            .into_response();
    };
    if route == format!("/{}", crate::picker::PATH) {
        return crate::picker::page(&state, &tenant, &host, &parts, body).await;
    }
    let claims = match crate::tokens::validate_bearer(
        &state,
        &parts.headers,
        &Audience::SharePoint(host.clone()),
    ) {
        Ok(c) if c.tid == tenant.id => c,
        Ok(_) => return challenge(&tenant, &BearerError::Invalid),
        Err(e) => return challenge(&tenant, &e),
    };
    let verbose = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("odata=verbose"));
    match route.as_str() {
        "/_api/web" | "/_api/web/currentuser" if parts.method != Method::GET => sp_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
            "The HTTP method is not allowed.",
        ),
        "/_api/web" => {
            let my = host == tenant.my_host;
            (
                StatusCode::OK,
                axum::Json(web_json(&tenant, &host, my, verbose)),
            )
                .into_response()
        }
        "/_api/web/currentuser" => match current_user_json(&state, &claims, verbose) {
            Some(v) => (StatusCode::OK, axum::Json(v)).into_response(),
            None => sp_error(
                StatusCode::NOT_FOUND,
                "-2146232832, Microsoft.SharePoint.SPException",
                "User cannot be found.",
            ),
        },
        _ => match parsed {
            Some(parsed) => {
                v2(
                    &state,
                    &host,
                    &rest,
                    parts.method,
                    parts.headers,
                    &parts.uri,
                    parsed,
                    claims,
                    body,
                )
                .await
            }
            None => sp_error(
                StatusCode::NOT_FOUND,
                "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
                "The expression is not valid.",
            ),
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn v2(
    state: &AppState,
    host: &str,
    rest: &str,
    method: Method,
    headers: HeaderMap,
    uri: &http::Uri,
    parsed: Result<(path::Route, String), crate::graph::error::GraphError>,
    claims: AccessClaims,
    body: Body,
) -> Response {
    let origin = origin(state, uri, &headers);
    let ctx = ApiCtx {
        scope: ApiScope::SharePoint {
            host: host.to_owned(),
        },
        api_base: format!("{origin}/_sharepoint/{host}/_api/v2.0"),
        origin,
        raw_path: rest.trim_start_matches("_api/v2.0/").to_owned(),
        query: parse_query(uri),
        method,
        headers,
    };
    let result = async {
        let (route, _) = parsed?;
        dispatch(state, &ctx, &claims, route, body).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
