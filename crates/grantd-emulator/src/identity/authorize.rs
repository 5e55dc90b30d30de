//! `GET /{tenant}/oauth2/v2.0/authorize` and the forms behind it: `POST /{tenant}/login` (the
//! sign-in page) and `POST /{tenant}/consent` (consent page). Validates the client and redirect URI
//! (error page when they cannot be trusted), then signs in, asks consent (remembered per
//! user + app + scope), issues a single-use code and delivers it per `response_mode`.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;

use super::errors::{self, AadError};
use super::{Authority, Origin, pages, random_token, redirect_uri_matches, scopes};
use crate::directory::{AccountKind, App, User};
use crate::state::{AppState, CodeGrant, Pending, Session};

/// The session cookie (Microsoft's is also called `ESTSAUTH`).
pub const SESSION_COOKIE: &str = "ESTSAUTH";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Authorize,
    /// `/{tenant}/adminconsent` (`v2: false`) or `/{tenant}/v2.0/adminconsent`.
    AdminConsent {
        v2: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

/// A validated authorize (or admin-consent) request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub kind: RequestKind,
    pub tenant_segment: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    /// Canonical scopes, `.default` expanded (what consent is recorded for).
    pub scopes: Vec<String>,
    /// The `scope` parameter as sent.
    pub raw_scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub login_hint: Option<String>,
    pub client_info: bool,
}

/// Sends parameters to the client per response mode (302 with query or fragment, or a form_post
/// page). A redirect URI without a path gets a trailing `/`, as at Microsoft.
pub fn deliver(redirect_uri: &str, mode: ResponseMode, params: &[(String, String)]) -> Response {
    match mode {
        ResponseMode::FormPost => pages::form_post(redirect_uri, params),
        ResponseMode::Query | ResponseMode::Fragment => {
            let Ok(mut url) = url::Url::parse(redirect_uri) else {
                return (http::StatusCode::BAD_REQUEST, "bad redirect_uri").into_response();
            };
            let encoded = serde_urlencoded::to_string(params).unwrap_or_default();
            if mode == ResponseMode::Fragment {
                url.set_fragment(Some(&encoded));
            } else {
                url.query_pairs_mut().extend_pairs(params);
            }
            let mut resp = Redirect::to(url.as_str()).into_response();
            *resp.status_mut() = http::StatusCode::FOUND;
            errors::no_store(&mut resp);
            resp
        }
    }
}

/// An error sent to the client's redirect URI.
pub fn redirect_error(state: &AppState, req: &AuthRequest, err: &AadError) -> Response {
    deliver(
        &req.redirect_uri,
        req.response_mode,
        &err.redirect_params(state, req.state.as_deref()),
    )
}

/// The checks that decide between an error page and a redirect: tenant, client, redirect URI,
/// app audience vs authority. Returns the app and the redirect URI to use.
pub fn validate_client(
    state: &AppState,
    tenant: &str,
    q: &HashMap<String, String>,
) -> Result<(Authority, App, String), Box<Response>> {
    let dir = state.dir();
    let page = |e: AadError| Box::new(pages::error(state, &e));
    let authority = Authority::resolve(&dir, tenant).map_err(page)?;
    let client_id = q
        .get("client_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| page(errors::missing_param("client_id")))?;
    let app = dir
        .apps
        .get(client_id)
        .cloned()
        .ok_or_else(|| page(errors::app_not_found(client_id, &authority.label())))?;
    let redirect_uri = match q.get("redirect_uri") {
        Some(r) => {
            if !app
                .redirect_uris
                .iter()
                .any(|reg| redirect_uri_matches(reg, r))
            {
                return Err(page(errors::redirect_mismatch(r, &app.client_id)));
            }
            r.clone()
        }
        None => app
            .redirect_uris
            .first()
            .cloned()
            .ok_or_else(|| page(errors::missing_param("redirect_uri")))?,
    };
    authority.check_app(&app).map_err(page)?;
    Ok((authority, app, redirect_uri))
}

pub fn session_id_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The live session of this browser, if any (sessions die when the user is revoked).
pub fn current_session(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let sid = session_id_from(headers)?;
    let g = state.grants();
    let s = g.sessions.get(&sid)?.clone();
    (s.generation == g.generation(&s.user_id)).then_some((sid, s))
}

pub async fn authorize(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    origin: Origin,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (_authority, app, redirect_uri) = match validate_client(&state, &tenant, &q) {
        Ok(v) => v,
        Err(page) => return *page,
    };
    let response_mode = match q.get("response_mode").map(String::as_str) {
        None | Some("query") => ResponseMode::Query,
        Some("fragment") => ResponseMode::Fragment,
        Some("form_post") => ResponseMode::FormPost,
        Some(other) => {
            let req = bare_request(&tenant, &app, &redirect_uri, ResponseMode::Query, &q);
            let e = AadError::new(
                "invalid_request",
                70007,
                format!(
                    "'{other}' is not a supported value for response_mode. Valid values are query, fragment, form_post."
                ),
            );
            return redirect_error(&state, &req, &e);
        }
    };
    let mut req = bare_request(&tenant, &app, &redirect_uri, response_mode, &q);
    match q.get("response_type").map(String::as_str) {
        None | Some("") => {
            return redirect_error(&state, &req, &errors::missing_param("response_type"));
        }
        Some("code") => {}
        Some(other) => {
            let e = AadError::new(
                "unsupported_response_type",
                700054,
                format!("response_type '{other}' is not enabled for the application."),
            );
            return redirect_error(&state, &req, &e);
        }
    }
    let raw_scope = q.get("scope").cloned().unwrap_or_default();
    if raw_scope.trim().is_empty() {
        return redirect_error(&state, &req, &errors::missing_param("scope"));
    }
    match scopes::expand_for_consent(&state.dir(), &app, &scopes::split(&raw_scope)) {
        Ok(s) => req.scopes = s,
        Err(e) => return redirect_error(&state, &req, &e),
    }
    req.raw_scope = raw_scope;
    if let Some(ch) = &req.code_challenge {
        let method = req
            .code_challenge_method
            .get_or_insert_with(|| "plain".to_owned());
        if method != "S256" && method != "plain" {
            let e = AadError::new(
                "invalid_request",
                501491,
                "Invalid code_challenge_method. Supported values are 'S256' and 'plain'.",
            );
            return redirect_error(&state, &req, &e);
        }
        if !(43..=128).contains(&ch.len()) {
            let e = AadError::new(
                "invalid_request",
                501491,
                "Invalid size of Code_Challenge parameter.",
            );
            return redirect_error(&state, &req, &e);
        }
    }
    if let Some(p) = &req.prompt
        && !matches!(
            p.as_str(),
            "none" | "login" | "consent" | "select_account" | "admin_consent" | "create"
        )
    {
        let e = AadError::new(
            "invalid_request",
            90023,
            format!("Unsupported 'prompt' value '{p}'."),
        );
        return redirect_error(&state, &req, &e);
    }
    let session = current_session(&state, &headers);
    let prompt = req.prompt.clone();
    if prompt.as_deref() == Some("none") {
        return silent(&state, &origin, req, session);
    }
    let ctx = store_pending(&state, req.clone());
    let reuse_session = !matches!(prompt.as_deref(), Some("login" | "select_account"));
    if let (true, Some((sid, s))) = (reuse_session, session) {
        let hint_ok = req.login_hint.as_deref().is_none_or(|h| {
            state
                .dir()
                .users
                .get(&s.user_id)
                .is_some_and(|u| u.upn.eq_ignore_ascii_case(h))
        });
        let mfa_ok = s.mfa_done || !state.grants().mfa_required.contains(&s.user_id);
        if hint_ok && mfa_ok {
            return after_sign_in(&state, &origin, &ctx, &s.user_id, &sid);
        }
    }
    pages::sign_in(
        &tenant,
        &ctx,
        &app.display_name,
        req.login_hint.as_deref(),
        None,
    )
}

fn bare_request(
    tenant: &str,
    app: &App,
    redirect_uri: &str,
    response_mode: ResponseMode,
    q: &HashMap<String, String>,
) -> AuthRequest {
    AuthRequest {
        kind: RequestKind::Authorize,
        tenant_segment: tenant.to_owned(),
        client_id: app.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        response_mode,
        scopes: Vec::new(),
        raw_scope: String::new(),
        state: q.get("state").cloned(),
        nonce: q.get("nonce").cloned(),
        code_challenge: q.get("code_challenge").cloned(),
        code_challenge_method: q.get("code_challenge_method").cloned(),
        prompt: q.get("prompt").map(|p| p.to_ascii_lowercase()),
        login_hint: q.get("login_hint").cloned(),
        client_info: q.get("client_info").is_some_and(|v| v == "1"),
    }
}

pub fn store_pending(state: &AppState, request: AuthRequest) -> String {
    let ctx = random_token(24);
    let now = state.clock.unix();
    let mut g = state.grants();
    // Forget abandoned sign-ins after an hour so the map stays small.
    g.pending.retain(|_, p| now - p.created_at < 3600);
    g.pending.insert(
        ctx.clone(),
        Pending {
            request,
            user_id: None,
            created_at: now,
        },
    );
    ctx
}

/// `prompt=none`: no UI; errors go back to the client.
fn silent(
    state: &AppState,
    origin: &Origin,
    req: AuthRequest,
    session: Option<(String, Session)>,
) -> Response {
    let Some((sid, s)) = session else {
        let e = AadError::new(
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in. The cookies used to represent the user's session were not sent in the request to Azure AD. This can happen if the user is using Internet Explorer or Edge, and the web app sending the silent sign-in request is in different IE security zone than the Azure AD endpoint (login.microsoftonline.com).",
        );
        return redirect_error(state, &req, &e);
    };
    let Some(user) = state.dir().users.get(&s.user_id).cloned() else {
        return redirect_error(
            state,
            &req,
            &AadError::new(
                "login_required",
                50058,
                "A silent sign-in request was sent but no user is signed in.",
            ),
        );
    };
    if let Some(h) = &req.login_hint
        && !user.upn.eq_ignore_ascii_case(h)
    {
        let e = AadError::new(
            "login_required",
            50058,
            "A silent sign-in request was sent but the user signed in does not match the login_hint.",
        );
        return redirect_error(state, &req, &e);
    }
    let app = state.dir().apps.get(&req.client_id).cloned();
    let Some(app) = app else {
        return pages::error(
            state,
            &errors::app_not_found(&req.client_id, &req.tenant_segment),
        );
    };
    let check = {
        let dir = state.dir();
        Authority::resolve(&dir, &req.tenant_segment).and_then(|a| a.check_user(&dir, &app, &user))
    };
    if let Err(mut e) = check {
        e.error = "interaction_required";
        return redirect_error(state, &req, &e);
    }
    if state.grants().mfa_required.contains(&user.id) && !s.mfa_done {
        let mut e = errors::mfa_required(crate::tokens::GRAPH_APP_ID);
        e.error = "interaction_required";
        return redirect_error(state, &req, &e);
    }
    if needs_consent(state, &user, &req) {
        let e = AadError::new(
            "consent_required",
            65001,
            format!(
                "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an interactive authorization request for this user and resource.",
                app.client_id, app.display_name
            ),
        );
        return redirect_error(state, &req, &e);
    }
    issue_code(state, origin, &req, &user, &sid)
}

fn needs_consent(state: &AppState, user: &User, req: &AuthRequest) -> bool {
    let g = state.grants();
    let consented = g.consents.get(&(user.id.clone(), req.client_id.clone()));
    !req.scopes
        .iter()
        .all(|s| consented.is_some_and(|c| c.iter().any(|x| x.eq_ignore_ascii_case(s))))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub ctx: String,
    #[serde(default)]
    pub login: String,
    #[serde(default)]
    pub passwd: String,
}

fn expired_request(state: &AppState) -> Response {
    pages::error(
        state,
        &AadError::new(
            "invalid_request",
            90014,
            "The sign-in request expired or is unknown. Start the sign-in again from the application.",
        ),
    )
}

pub async fn login(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    origin: Origin,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(pending) = state.grants().pending.get(&f.ctx).cloned() else {
        return expired_request(&state);
    };
    let app_name = state
        .dir()
        .apps
        .get(&pending.request.client_id)
        .map(|a| a.display_name.clone())
        .unwrap_or_default();
    let user = state.dir().user_by_upn(f.login.trim()).cloned();
    let Some(user) = user else {
        let msg = "AADSTS50034: We couldn't find an account with that username.";
        return pages::sign_in(&tenant, &f.ctx, &app_name, Some(&f.login), Some(msg));
    };
    if user.password != f.passwd {
        let msg = "AADSTS50126: Your account or password is incorrect.";
        return pages::sign_in(&tenant, &f.ctx, &app_name, Some(&f.login), Some(msg));
    }
    let sid = uuid::Uuid::new_v4().to_string();
    {
        let mut g = state.grants();
        let generation = g.generation(&user.id);
        // MFA is "performed" at sign-in when the user requires it at that moment.
        let mfa_done = g.mfa_required.contains(&user.id);
        g.sessions.insert(
            sid.clone(),
            Session {
                user_id: user.id.clone(),
                auth_time: state.clock.unix(),
                mfa_done,
                generation,
            },
        );
    }
    let mut resp = after_sign_in(&state, &origin, &f.ctx, &user.id, &sid);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The user is known (fresh sign-in or existing session): check account rules, then consent.
fn after_sign_in(
    state: &AppState,
    origin: &Origin,
    ctx: &str,
    user_id: &str,
    sid: &str,
) -> Response {
    let pending = {
        let mut g = state.grants();
        let Some(p) = g.pending.get_mut(ctx) else {
            drop(g);
            return expired_request(state);
        };
        p.user_id = Some(user_id.to_owned());
        p.clone()
    };
    let req = pending.request;
    let (user, app) = {
        let dir = state.dir();
        (
            dir.users.get(user_id).cloned(),
            dir.apps.get(&req.client_id).cloned(),
        )
    };
    let (Some(user), Some(app)) = (user, app) else {
        return expired_request(state);
    };
    let check = {
        let dir = state.dir();
        Authority::resolve(&dir, &req.tenant_segment).and_then(|a| a.check_user(&dir, &app, &user))
    };
    if let RequestKind::AdminConsent { .. } = req.kind {
        return super::adminconsent::after_sign_in(state, ctx, &req, &app, &user, check);
    }
    if let Err(e) = check {
        return pages::error(state, &e);
    }
    if req.prompt.as_deref() == Some("consent") || needs_consent(state, &user, &req) {
        let perms: Vec<String> = req.scopes.iter().map(|s| scopes::describe(s)).collect();
        return pages::consent(
            &req.tenant_segment,
            ctx,
            &app.display_name,
            &user.upn,
            &perms,
            false,
        );
    }
    state.grants().pending.remove(ctx);
    issue_code(state, origin, &req, &user, sid)
}

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    pub ctx: String,
    #[serde(default)]
    pub action: String,
}

pub async fn consent(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    Form(f): Form<ConsentForm>,
) -> Response {
    let Some(pending) = state.grants().pending.remove(&f.ctx) else {
        return expired_request(&state);
    };
    let Some(user_id) = pending.user_id.clone() else {
        return expired_request(&state);
    };
    let req = pending.request;
    let accept = f.action == "accept";
    if let RequestKind::AdminConsent { .. } = req.kind {
        return super::adminconsent::on_consent(&state, &req, &user_id, accept);
    }
    if !accept {
        let e = AadError::new(
            "access_denied",
            65004,
            "User declined to consent to access the app.",
        );
        let mut params = e.redirect_params(&state, req.state.as_deref());
        params.retain(|(k, _)| k != "error_subcode");
        params.insert(1, ("error_subcode".to_owned(), "cancel".to_owned()));
        return deliver(&req.redirect_uri, req.response_mode, &params);
    }
    {
        let mut g = state.grants();
        let set = g
            .consents
            .entry((user_id.clone(), req.client_id.clone()))
            .or_default();
        set.extend(req.scopes.iter().cloned());
    }
    let Some(user) = state.dir().users.get(&user_id).cloned() else {
        return expired_request(&state);
    };
    let sid = current_session(&state, &headers)
        .map(|(sid, _)| sid)
        .unwrap_or_default();
    issue_code(&state, &origin, &req, &user, &sid)
}

/// Issues a code and sends it to the client.
pub fn issue_code(
    state: &AppState,
    _origin: &Origin,
    req: &AuthRequest,
    user: &User,
    sid: &str,
) -> Response {
    let prefix = if user.kind == AccountKind::Personal {
        "M.C5"
    } else {
        "1.A"
    };
    let code = format!("{prefix}{}", random_token(96));
    let mfa_done = state.grants().sessions.get(sid).is_some_and(|s| s.mfa_done);
    let session_id = if sid.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        sid.to_owned()
    };
    state.grants().codes.insert(
        code.clone(),
        CodeGrant {
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            user_id: user.id.clone(),
            authority: req.tenant_segment.to_ascii_lowercase(),
            scopes: req.scopes.clone(),
            code_challenge: req.code_challenge.clone(),
            code_challenge_method: req.code_challenge_method.clone(),
            nonce: req.nonce.clone(),
            session_id: session_id.clone(),
            issued_at: state.clock.unix(),
            redeemed: false,
            client_info: req.client_info,
            mfa_done,
        },
    );
    let mut params = vec![("code".to_owned(), code)];
    if req.client_info {
        params.push(("client_info".to_owned(), super::token::client_info(user)));
    }
    if let Some(s) = &req.state {
        params.push(("state".to_owned(), s.clone()));
    }
    params.push(("session_state".to_owned(), session_id));
    deliver(&req.redirect_uri, req.response_mode, &params)
}
