//! Admin consent: `/{tenant}/adminconsent` (v1 style) and `/{tenant}/v2.0/adminconsent`. An admin
//! of a tenant signs in, sees the app's application permissions, and accepting records a
//! tenant-wide consent (what client_credentials tokens' `roles` come from). The callback gets
//! `admin_consent=True&tenant=…&state=…` (+ `scope` on v2); a non-admin sees "Need admin approval"
//! and returns with `error=access_denied` (AADSTS90094); Cancel returns AADSTS65004.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::authorize::{
    AuthRequest, RequestKind, ResponseMode, deliver, store_pending, validate_client,
};
use super::errors::{self, AadError};
use super::{Authority, pages, scopes};
use crate::directory::{App, User};
use crate::state::{AdminConsent, AppState};

pub async fn adminconsent_v1(
    state: State<AppState>,
    tenant: Path<String>,
    q: Query<HashMap<String, String>>,
) -> Response {
    start(state, tenant, q, false)
}

pub async fn adminconsent_v2(
    state: State<AppState>,
    tenant: Path<String>,
    q: Query<HashMap<String, String>>,
) -> Response {
    start(state, tenant, q, true)
}

fn start(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    v2: bool,
) -> Response {
    let (_authority, app, redirect_uri) = match validate_client(&state, &tenant, &q) {
        Ok(v) => v,
        Err(page) => return *page,
    };
    let raw_scope = q.get("scope").cloned().unwrap_or_default();
    let req = AuthRequest {
        kind: RequestKind::AdminConsent { v2 },
        tenant_segment: tenant.clone(),
        client_id: app.client_id.clone(),
        redirect_uri,
        response_mode: ResponseMode::Query,
        scopes: Vec::new(),
        raw_scope: raw_scope.clone(),
        state: q.get("state").cloned(),
        nonce: None,
        code_challenge: None,
        code_challenge_method: None,
        prompt: None,
        login_hint: q.get("login_hint").cloned(),
        client_info: false,
    };
    if v2 && raw_scope.trim().is_empty() {
        let p = errors::missing_param("scope").redirect_params(&state, req.state.as_deref());
        return deliver(&req.redirect_uri, req.response_mode, &p);
    }
    let login_hint = req.login_hint.clone();
    let ctx = store_pending(&state, req);
    pages::sign_in(
        &tenant,
        &ctx,
        &app.display_name,
        login_hint.as_deref(),
        None,
    )
}

/// After sign-in: a refused account gets an error page; a non-admin the "need admin approval"
/// page; an admin the admin consent page.
pub fn after_sign_in(
    state: &AppState,
    ctx: &str,
    req: &AuthRequest,
    app: &App,
    user: &User,
    check: Result<(), AadError>,
) -> Response {
    if let Err(e) = check {
        state.grants().pending.remove(ctx);
        return pages::error(state, &e);
    }
    if !user.admin {
        let msg = format!(
            "AADSTS90094: The grant requires admin permission. {} needs permission to access resources in your organization that only an admin can grant.",
            app.display_name
        );
        return pages::need_admin(&req.tenant_segment, ctx, &app.display_name, &user.upn, &msg);
    }
    let mut perms: Vec<String> = app
        .application_permissions
        .iter()
        .map(|p| format!("{} (application permission)", scopes::describe(p)))
        .collect();
    if perms.is_empty() {
        perms.push("Sign in and read user profile (User.Read)".to_owned());
    }
    pages::consent(
        &req.tenant_segment,
        ctx,
        &app.display_name,
        &user.upn,
        &perms,
        true,
    )
}

/// The admin's (or the non-admin's) answer.
pub fn on_consent(state: &AppState, req: &AuthRequest, user_id: &str, accept: bool) -> Response {
    let Some(user) = state.dir().users.get(user_id).cloned() else {
        return pages::error(state, &errors::malformed_grant());
    };
    let Some(app) = state.dir().apps.get(&req.client_id).cloned() else {
        return pages::error(
            state,
            &errors::app_not_found(&req.client_id, &req.tenant_segment),
        );
    };
    if !user.admin {
        let e = AadError::new(
            "access_denied",
            90094,
            "The grant requires admin permission.",
        );
        return deliver(
            &req.redirect_uri,
            req.response_mode,
            &e.redirect_params(state, req.state.as_deref()),
        );
    }
    if !accept {
        let e = AadError::new(
            "access_denied",
            65004,
            "User declined to consent to access the app.",
        );
        let mut p = e.redirect_params(state, req.state.as_deref());
        p.insert(1, ("error_subcode".to_owned(), "cancel".to_owned()));
        return deliver(&req.redirect_uri, req.response_mode, &p);
    }
    let tenant_id = match Authority::resolve(&state.dir(), &req.tenant_segment) {
        Ok(Authority::Tenant(t)) => t.id,
        _ => user.tenant_id.clone(),
    };
    state.grants().admin_consents.insert(
        (tenant_id.clone(), app.client_id.clone()),
        AdminConsent {
            tenant_id: tenant_id.clone(),
            client_id: app.client_id.clone(),
            roles: app.application_permissions.clone(),
            granted_at: state.clock.unix(),
        },
    );
    let mut p = vec![
        ("admin_consent".to_owned(), "True".to_owned()),
        ("tenant".to_owned(), tenant_id),
    ];
    if let RequestKind::AdminConsent { v2: true } = req.kind {
        p.push(("scope".to_owned(), req.raw_scope.clone()));
    }
    if let Some(s) = &req.state {
        p.push(("state".to_owned(), s.clone()));
    }
    deliver(&req.redirect_uri, req.response_mode, &p)
}
