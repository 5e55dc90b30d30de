//! Dashboard sign-in: the login form (the secret key, or `GRANTD_ADMIN_USER` +
//! `GRANTD_ADMIN_PASSWORD`), the signed session cookie (HttpOnly, SameSite=Strict, 12 hours) and
//! the CSRF token every dashboard form carries. The login form itself is protected by a
//! double-submit cookie: the page sets `grantd_login_csrf` (random, HttpOnly, SameSite=Strict)
//! and carries the same value in a hidden field; a POST without both, equal, is refused (403), so
//! another site cannot sign a browser into this dashboard (login CSRF). Sessions are server-side
//! (`connections::dashboard_sessions`): the cookie is a random id whose hash is stored, so
//! signing out ends the session at once on every instance, and changing the secret key or the
//! admin login ends every session. Sign-in attempts are throttled (`edge::throttle`).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::layout;
use crate::edge::AppState;
use crate::edge::throttle::{Account, Scope, retry_after_secs};
use crate::edge::ws_limits::client_addr;

pub const COOKIE: &str = "grantd_dashboard";
/// The login form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "grantd_login_csrf";
use crate::connections::dashboard_sessions::DASHBOARD_SESSION_SECS as SESSION_SECS;

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    named_cookie(headers, COOKIE)
}

fn named_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn secure_attr(st: &AppState) -> &'static str {
    if st.core.config.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    }
}

/// A login page response with a fresh double-submit token in its form and cookie.
fn login_response(st: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let mut token = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut token);
    let token = hex::encode(token);
    let cookie = format!(
        "{LOGIN_CSRF_COOKIE}={token}; Path=/dashboard/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        secure_attr(st)
    );
    let mut r = (
        status,
        Html(layout::login(st.core.config.admin.is_some(), error, &token).into_string()),
    )
        .into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    r
}

fn forbidden_form(again: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            layout::page(
                "Form expired",
                None,
                maud::html! {
                    p.error role="alert" { "This form has expired or did not come from this dashboard. Go back, reload the page and try again." }
                    p { a href=(again) { "Try again" } }
                },
            )
            .into_string(),
        ),
    )
        .into_response()
}

/// 429 with `Retry-After`: the sign-in form again, saying when to retry.
fn too_many_attempts(st: &AppState, retry_after: u64) -> Response {
    let msg = format!(
        "Too many failed sign-ins. Try again in {retry_after} second{}.",
        if retry_after == 1 { "" } else { "s" }
    );
    let mut r = login_response(st, StatusCode::TOO_MANY_REQUESTS, Some(&msg));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    r
}

/// A signed-in dashboard user. Carries the CSRF token for the forms it renders.
pub struct Admin {
    pub csrf: String,
    /// The session id (cookie value), to end it on sign-out.
    session: String,
}

impl Admin {
    /// Checks a submitted CSRF token.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), Box<Response>> {
        if ct_eq(&self.csrf, submitted) {
            Ok(())
        } else {
            Err(Box::new(forbidden_form("/dashboard")))
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let Some(id) = cookie_value(&parts.headers) else {
            return Err(Redirect::to("/dashboard/login").into_response());
        };
        match st.core.dashboard_session_valid(&id).await {
            Ok(true) => Ok(Admin {
                csrf: st.core.dashboard_mac("csrf", &id),
                session: id,
            }),
            Ok(false) => Err(Redirect::to("/dashboard/login").into_response()),
            Err(e) => Err(super::error::PageError::from(e).into_response()),
        }
    }
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

pub async fn login_page(State(st): State<AppState>) -> Response {
    login_response(&st, StatusCode::OK, None)
}

pub async fn login(
    State(st): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let double_submitted = named_cookie(&headers, LOGIN_CSRF_COOKIE)
        .is_some_and(|c| !c.is_empty() && ct_eq(&c, &f.csrf));
    if !double_submitted {
        tracing::info!("dashboard sign-in refused: missing or wrong login CSRF token");
        return forbidden_form("/dashboard/login");
    }
    let addr = client_addr(&ext);
    let account = if f.username.trim().is_empty() {
        Account::SecretKey
    } else {
        Account::Admin
    };
    let now = st.core.clock.now();
    if let Some(until) = st.throttle.sign_in_blocked(addr, account, now) {
        tracing::info!("dashboard sign-in throttled");
        return too_many_attempts(&st, retry_after_secs(until, now));
    }
    let cfg = &st.core.config;
    let by_key = f.username.trim().is_empty() && cfg.secret_key.ct_eq(f.password.trim());
    let by_admin = cfg
        .admin
        .as_ref()
        .is_some_and(|a| ct_eq(&a.user, f.username.trim()) && a.password.ct_eq(&f.password));
    if !(by_key || by_admin) {
        tracing::info!("dashboard sign-in refused");
        st.throttle.failed(Scope::SignIn, addr, Some(account), now);
        return login_response(
            &st,
            StatusCode::UNAUTHORIZED,
            Some(
                "Those credentials are not valid. Use the secret key (leave the user name empty) or the admin user name and password.",
            ),
        );
    }
    st.throttle.signed_in(addr, account);
    let session = match st.core.start_dashboard_session().await {
        Ok(id) => id,
        Err(e) => return super::error::PageError::from(e).into_response(),
    };
    let secure = secure_attr(&st);
    let cookie = format!(
        "{COOKIE}={session}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{secure}"
    );
    let mut r = Redirect::to("/dashboard").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    // The login token is single-use.
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "grantd_login_csrf=; Path=/dashboard/login; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(
    State(st): State<AppState>,
    admin: Admin,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = admin.check_csrf(&f.csrf) {
        return *r;
    }
    if let Err(e) = st.core.end_dashboard_session(&admin.session).await {
        return super::error::PageError::from(e).into_response();
    }
    let mut r = Redirect::to("/dashboard/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "grantd_dashboard=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}
