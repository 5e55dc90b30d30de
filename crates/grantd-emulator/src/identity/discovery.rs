//! OpenID Connect discovery (`/{tenant}/v2.0/.well-known/openid-configuration`), the JWKS
//! (`/{tenant}/discovery/v2.0/keys`), MSAL's instance discovery (`/common/discovery/instance`)
//! and logout. URLs use the emulator's own origin in place of `https://login.microsoftonline.com`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, header};
use serde_json::json;

use super::authorize::{SESSION_COOKIE, session_id_from};
use super::{Authority, Origin, pages};
use crate::directory::MSA_TENANT_ID;
use crate::state::AppState;
use crate::tokens::signing_key;

fn cacheable(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400, private"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

pub async fn openid_configuration(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Origin(o): Origin,
) -> Response {
    let authority = match Authority::resolve(&state.dir(), &tenant) {
        Ok(a) => a,
        Err(e) => return e.json_response(&state, None),
    };
    let (tid, region) = match &authority {
        Authority::Tenant(t) => (t.id.clone(), json!("EU")),
        Authority::Consumers => (MSA_TENANT_ID.to_owned(), json!(null)),
        Authority::Common | Authority::Organizations => ("{tenantid}".to_owned(), json!(null)),
    };
    let t = &tenant;
    let doc = json!({
        "token_endpoint": format!("{o}/{t}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{o}/{t}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{o}/{tid}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{o}/oidc/userinfo"),
        "authorization_endpoint": format!("{o}/{t}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{o}/{t}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{o}/{t}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{o}/{t}/kerberos"),
        "tenant_region_scope": region,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    cacheable(Json(doc).into_response())
}

pub async fn keys(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Origin(o): Origin,
) -> Response {
    let issuer = match Authority::resolve(&state.dir(), &tenant) {
        Ok(Authority::Tenant(t)) => format!("{o}/{}/v2.0", t.id),
        Ok(_) => format!("{o}/{{tenantid}}/v2.0"),
        Err(e) => return e.json_response(&state, None),
    };
    cacheable(Json(json!({ "keys": [signing_key().jwk(&issuer)] })).into_response())
}

/// MSAL's instance discovery: the emulator is its own only alias.
pub async fn instance(
    Path(tenant): Path<String>,
    Origin(o): Origin,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let host = o.split("://").nth(1).unwrap_or(&o).to_owned();
    let auth_tenant = q
        .get("authorization_endpoint")
        .and_then(|e| url::Url::parse(e).ok())
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next().map(str::to_owned))
        })
        .unwrap_or(tenant);
    cacheable(
        Json(json!({
            "tenant_discovery_endpoint": format!("{o}/{auth_tenant}/v2.0/.well-known/openid-configuration"),
            "api-version": "1.1",
            "metadata": [{ "preferred_network": host, "preferred_cache": host, "aliases": [host] }],
        }))
        .into_response(),
    )
}

/// `GET /{tenant}/oauth2/v2.0/logout`: ends the emulator session, then redirects to
/// `post_logout_redirect_uri` if given.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(sid) = session_id_from(&headers) {
        state.grants().sessions.remove(&sid);
    }
    let mut resp = match q.get("post_logout_redirect_uri") {
        Some(u) if url::Url::parse(u).is_ok() => Redirect::to(u).into_response(),
        _ => pages::signed_out(),
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}=; Path=/; Max-Age=0")) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
