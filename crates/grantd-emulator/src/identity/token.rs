//! `POST /{tenant}/oauth2/v2.0/token`: authorization_code (single use, 10-minute life,
//! redirect_uri + PKCE verified, tenant-bound), refresh_token (rotation; old tokens stay valid
//! unless strict rotation is on; revocation, 90-day inactivity, MFA, consent, other resources such
//! as SharePoint), and client_credentials (`/.default`, app roles after admin consent).

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, Method};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::client_auth::{self, ClientAuthMethod};
use super::errors::{self, AadError};
use super::scopes::{self, Resource, Scope};
use super::{Authority, Origin, correlation, random_token};
use crate::directory::{AccountKind, App, User};
use crate::state::{AppState, RefreshGrant};
use crate::tokens::{self, AccessTokenSpec};

pub async fn token(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    origin: Origin,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&state, &tenant, &origin, &method, &headers, &body) {
        Ok(v) => {
            let mut resp = Json(v).into_response();
            errors::no_store(&mut resp);
            if let Ok(v) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
                resp.headers_mut().insert("x-ms-request-id", v);
            }
            resp
        }
        Err(e) => e.json_response(&state, correlation(&headers).as_deref()),
    }
}

/// `client_info` as MSAL expects it: base64url of `{"uid":oid,"utid":tid}`.
pub fn client_info(user: &User) -> String {
    let j = json!({ "uid": user.id, "utid": user.tenant_id }).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(j)
}

struct Ctx<'a> {
    state: &'a AppState,
    origin: &'a Origin,
    authority: Authority,
    app: App,
    form: HashMap<String, String>,
    auth: ClientAuthMethod,
}

fn handle(
    state: &AppState,
    tenant: &str,
    origin: &Origin,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, AadError> {
    if method != Method::POST {
        return Err(AadError::new(
            "invalid_request",
            900561,
            format!("The endpoint only accepts POST requests. Received a {method} request."),
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
        AadError::new(
            "invalid_request",
            900144,
            "The request body must be application/x-www-form-urlencoded.",
        )
    })?;
    let mut form: HashMap<String, String> = HashMap::new();
    for (k, v) in pairs {
        form.entry(k).or_insert(v);
    }
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let client_id = client_auth::client_id_of(&form, headers);
    state
        .counters
        .token(&grant, client_id.as_deref().unwrap_or(""));
    if grant.is_empty() {
        return Err(errors::missing_param("grant_type"));
    }
    let client_id = client_id.ok_or_else(|| errors::missing_param("client_id"))?;
    let (authority, app) = {
        let dir = state.dir();
        let authority = Authority::resolve(&dir, tenant)?;
        let app = dir
            .apps
            .get(&client_id)
            .cloned()
            .ok_or_else(|| errors::app_not_found(&client_id, &authority.label()))?;
        (authority, app)
    };
    if !matches!(
        grant.as_str(),
        "authorization_code" | "refresh_token" | "client_credentials"
    ) {
        return Err(AadError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    if grant != "client_credentials" {
        authority.check_app(&app)?;
    }
    let auth = client_auth::authenticate(state, &app, &form, headers, &origin.0)?;
    let cx = Ctx {
        state,
        origin,
        authority,
        app,
        form,
        auth,
    };
    match grant.as_str() {
        "authorization_code" => authorization_code(&cx),
        "refresh_token" => refresh_token(&cx),
        _ => client_credentials(&cx),
    }
}

fn pkce_ok(challenge: &str, method: Option<&str>, verifier: &str) -> bool {
    match method {
        Some("S256") => {
            let d = sha2::Sha256::digest(verifier.as_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d) == challenge
        }
        _ => verifier == challenge,
    }
}

fn authorization_code(cx: &Ctx<'_>) -> Result<Value, AadError> {
    let code = cx
        .form
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| errors::missing_param("code"))?;
    let redirect_uri = cx
        .form
        .get("redirect_uri")
        .ok_or_else(|| errors::missing_param("redirect_uri"))?;
    let now = cx.state.clock.unix();
    let grant = {
        let mut g = cx.state.grants();
        let grant = g.codes.get_mut(code).ok_or_else(errors::malformed_grant)?;
        if grant.client_id != cx.app.client_id {
            return Err(AadError::new(
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed. The code was issued to a different client.",
            ));
        }
        if grant.redeemed {
            return Err(AadError::new(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            ));
        }
        if now - grant.issued_at > cx.state.settings.code_lifetime as i64 {
            return Err(AadError::new(
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            ));
        }
        if &grant.redirect_uri != redirect_uri {
            return Err(AadError::new(
                "invalid_grant",
                50011,
                format!(
                    "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI used to obtain the authorization code."
                ),
            ));
        }
        if let Some(ch) = &grant.code_challenge {
            let verifier = cx
                .form
                .get("code_verifier")
                .map(String::as_str)
                .unwrap_or("");
            if !pkce_ok(ch, grant.code_challenge_method.as_deref(), verifier) {
                return Err(AadError::new(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                ));
            }
        }
        grant.clone()
    };
    let user = cx
        .state
        .dir()
        .users
        .get(&grant.user_id)
        .cloned()
        .ok_or_else(errors::malformed_grant)?;
    let code_tenant_ok = match &cx.authority {
        Authority::Tenant(t) => t.id == user.tenant_id,
        Authority::Organizations => user.kind == AccountKind::Work,
        Authority::Consumers => user.kind == AccountKind::Personal,
        Authority::Common => true,
    };
    if !code_tenant_ok {
        return Err(AadError::new(
            "invalid_grant",
            700005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        ));
    }
    if let Some(g) = cx.state.grants().codes.get_mut(code) {
        g.redeemed = true;
    }
    let requested = cx
        .form
        .get("scope")
        .map(|s| scopes::split(s))
        .unwrap_or_else(|| grant.scopes.clone());
    let offline = grant.scopes.iter().any(|s| s == "offline_access");
    let openid = grant.scopes.iter().any(|s| s == "openid");
    let rt = RefreshGrant {
        client_id: cx.app.client_id.clone(),
        user_id: user.id.clone(),
        scopes: grant.scopes.clone(),
        session_id: grant.session_id.clone(),
        issued_at: now,
        last_used: now,
        redeemed: false,
        generation: cx.state.grants().generation(&user.id),
        mfa_done: grant.mfa_done,
    };
    issue_delegated(
        cx,
        &user,
        &requested,
        openid,
        grant.nonce.clone(),
        offline.then_some(rt),
    )
}

fn refresh_token(cx: &Ctx<'_>) -> Result<Value, AadError> {
    let token = cx
        .form
        .get("refresh_token")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| errors::missing_param("refresh_token"))?;
    let now = cx.state.clock.unix();
    let rt = {
        let g = cx.state.grants();
        let rt = g
            .refresh_tokens
            .get(token)
            .cloned()
            .ok_or_else(errors::malformed_grant)?;
        if rt.client_id != cx.app.client_id {
            return Err(AadError::new("invalid_grant", 70000, "Provided grant is invalid or malformed. The refresh token was issued to a different client.").suberror("client_mismatch"));
        }
        if rt.generation < g.generation(&rt.user_id) {
            let revoked = g.revoked_at.get(&rt.user_id).copied().unwrap_or(now);
            return Err(AadError::new(
                "invalid_grant",
                50173,
                format!(
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{}'.",
                    iso(rt.issued_at),
                    iso(revoked)
                ),
            )
            // MSAL keys on it: `bad_token` drops the refresh token and surfaces as
            // InteractionRequiredAuthError.
            .suberror("bad_token"));
        }
        if now - rt.last_used > cx.state.settings.refresh_token_inactivity as i64 {
            let d = cx.state.settings.refresh_token_inactivity / 86400;
            return Err(AadError::new("invalid_grant", 700082, format!("The refresh token has expired due to inactivity. The token was issued on {} and was inactive for {d}.00:00:00.", iso(rt.issued_at))).suberror("bad_token"));
        }
        if g.strict_rotation && rt.redeemed {
            return Err(AadError::new(
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed. The refresh token was already redeemed (emulator strict rotation mode).",
            ));
        }
        rt
    };
    let user = cx
        .state
        .dir()
        .users
        .get(&rt.user_id)
        .cloned()
        .ok_or_else(errors::malformed_grant)?;
    {
        let dir = cx.state.dir();
        cx.authority
            .check_user(&dir, &cx.app, &user)
            .map_err(|mut e| {
                e.error = "invalid_grant";
                e
            })?;
    }
    let requested = cx
        .form
        .get("scope")
        .map(|s| scopes::split(s))
        .unwrap_or_else(|| rt.scopes.clone());
    let openid = requested.iter().any(|s| s == "openid");
    let new_rt = RefreshGrant {
        issued_at: now,
        last_used: now,
        redeemed: false,
        ..rt.clone()
    };
    let value = issue_delegated(cx, &user, &requested, openid, None, Some(new_rt))?;
    if let Some(old) = cx.state.grants().refresh_tokens.get_mut(token) {
        old.redeemed = true;
        old.last_used = now;
    }
    Ok(value)
}

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.6f0Z").to_string())
        .unwrap_or_default()
}

/// Mints a delegated access token (+ id_token, + refresh token) after scope/consent/MFA checks.
fn issue_delegated(
    cx: &Ctx<'_>,
    user: &User,
    requested: &[String],
    openid: bool,
    nonce: Option<String>,
    rt: Option<RefreshGrant>,
) -> Result<Value, AadError> {
    let state = cx.state;
    let consented: BTreeSet<String> = {
        let g = state.grants();
        let mut c = g
            .consents
            .get(&(user.id.clone(), cx.app.client_id.clone()))
            .cloned()
            .unwrap_or_default();
        if let Some(rt) = &rt {
            c.extend(rt.scopes.iter().cloned());
        }
        c
    };
    let granted = scopes::resolve_delegated(&state.dir(), user, &cx.app, requested, &consented)?;
    if let Some(rt) = &rt {
        let mfa = state.grants().mfa_required.contains(&user.id);
        if mfa && !rt.mfa_done {
            return Err(errors::mfa_required(&granted.resource.audience()));
        }
    }
    let now = state.clock.unix();
    let lifetime = state.access_token_lifetime();
    let access_token = tokens::mint_access_token(AccessTokenSpec {
        aud: granted.resource.audience(),
        tid: user.tenant_id.clone(),
        user: Some(user),
        app: &cx.app,
        scp: Some(granted.scp.clone()),
        roles: None,
        appidacr: cx.auth.appidacr(),
        now,
        lifetime,
    });
    let mut body = json!({
        "token_type": "Bearer",
        "scope": granted.response_scope,
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    if let Some(rt) = rt {
        let value = format!("1.A{}", random_token(180));
        let session = rt.session_id.clone();
        state.grants().refresh_tokens.insert(value.clone(), rt);
        body["refresh_token"] = Value::from(value);
        if openid || granted.openid {
            body["id_token"] = Value::from(tokens::mint_id_token(
                &cx.origin.0,
                user,
                &cx.app.client_id,
                nonce,
                &session,
                now,
                granted.email,
            ));
        }
    } else if openid || granted.openid {
        let sid = uuid::Uuid::new_v4().to_string();
        body["id_token"] = Value::from(tokens::mint_id_token(
            &cx.origin.0,
            user,
            &cx.app.client_id,
            nonce,
            &sid,
            now,
            granted.email,
        ));
    }
    if cx.form.get("client_info").is_some_and(|v| v == "1") {
        body["client_info"] = Value::from(client_info(user));
    }
    Ok(body)
}

fn client_credentials(cx: &Ctx<'_>) -> Result<Value, AadError> {
    let Authority::Tenant(tenant) = &cx.authority else {
        return Err(AadError::new(
            "invalid_request",
            50059,
            "No tenant-identifying information found in either the request or implied by any provided credentials.",
        ));
    };
    let raw = cx
        .form
        .get("scope")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| errors::missing_param("scope"))?;
    let list = scopes::split(raw);
    if list.len() != 1 {
        return Err(errors::invalid_scope(raw));
    }
    let resource = match scopes::parse(&list[0])? {
        Scope::Resource(r, name) if name == ".default" => r,
        Scope::Resource(..) => {
            return Err(AadError::new(
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {raw} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            ));
        }
        Scope::Oidc(_) => return Err(errors::invalid_scope(raw)),
    };
    let consent = cx
        .state
        .grants()
        .admin_consents
        .get(&(tenant.id.clone(), cx.app.client_id.clone()))
        .cloned();
    if consent.is_none() && tenant.id != cx.app.home_tenant_id {
        return Err(AadError::new(
            "invalid_client",
            7000229,
            format!(
                "The client application {} is missing service principal in the tenant {}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119",
                cx.app.client_id, tenant.id
            ),
        ));
    }
    let roles: Vec<String> = consent.map(|c| c.roles).unwrap_or_default();
    let (aud, roles) = match &resource {
        Resource::Graph => (scopes::GRAPH_URI.to_owned(), roles),
        Resource::SharePoint(host) => {
            if cx
                .state
                .dir()
                .tenant_by_sharepoint_host(host)
                .is_none_or(|t| t.id != tenant.id)
            {
                return Err(errors::resource_not_found(
                    &format!("https://{host}"),
                    &tenant.name,
                ));
            }
            let r = roles
                .into_iter()
                .filter(|r| r.starts_with("Sites."))
                .collect();
            (format!("https://{host}"), r)
        }
        Resource::OneDriveConsumer => {
            return Err(errors::resource_not_found(
                scopes::ONEDRIVE_CONSUMER_AUDIENCE,
                &tenant.name,
            ));
        }
        Resource::Other(uri) => return Err(errors::resource_not_found(uri, &tenant.name)),
    };
    let now = cx.state.clock.unix();
    let lifetime = cx.state.access_token_lifetime();
    let access_token = tokens::mint_access_token(AccessTokenSpec {
        aud,
        tid: tenant.id.clone(),
        user: None,
        app: &cx.app,
        scp: None,
        roles: (!roles.is_empty()).then_some(roles),
        appidacr: cx.auth.appidacr(),
        now,
        lifetime,
    });
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    }))
}
