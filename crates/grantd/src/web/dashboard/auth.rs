//! Dashboard sign-in: the login form (the secret key, or `GRANTD_ADMIN_USER` +
//! `GRANTD_ADMIN_PASSWORD`), the signed session cookie (HttpOnly, SameSite=Strict, 12 hours) and
//! the CSRF token every dashboard form carries. The login form itself is protected by a
//! double-submit cookie: the page sets `grantd_login_csrf` (random, HttpOnly, SameSite=Strict)
//! and carries the same value in a hidden field; a POST without both, equal, is refused (403), so
//! another site cannot sign a browser into this dashboard (login CSRF). Stateless: the cookie is
//! `{expires}.{nonce}.{hmac}` under a key derived from the secret key, so every instance behind a
//! load balancer accepts it and rotating the secret key signs everyone out.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::layout;
use crate::edge::AppState;

pub const COOKIE: &str = "grantd_dashboard";
/// The login form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "grantd_login_csrf";
const SESSION_SECS: i64 = 12 * 3600;

fn signing_key(st: &AppState) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"grantd dashboard session v1\0");
    h.update(st.core.config.secret_key.expose_secret().as_bytes());
    h.finalize().into()
}

fn mac(st: &AppState, purpose: &str, msg: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(&signing_key(st)).expect("HMAC takes any key");
    m.update(purpose.as_bytes());
    m.update(b"\0");
    m.update(msg.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A fresh session cookie value valid until `now + 12h`.
fn new_session(st: &AppState) -> String {
    let expires = st.core.clock.now().timestamp() + SESSION_SECS;
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let body = format!("{expires}.{}", hex::encode(nonce));
    let sig = mac(st, "session", &body);
    format!("{body}.{sig}")
}

fn valid_session(st: &AppState, value: &str) -> bool {
    let Some((body, sig)) = value.rsplit_once('.') else {
        return false;
    };
    if !ct_eq(&mac(st, "session", body), sig) {
        return false;
    }
    body.split_once('.')
        .and_then(|(exp, _)| exp.parse::<i64>().ok())
        .is_some_and(|exp| exp > st.core.clock.now().timestamp())
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

/// A signed-in dashboard user. Carries the CSRF token for the forms it renders.
pub struct Admin {
    pub csrf: String,
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
        match cookie_value(&parts.headers) {
            Some(v) if valid_session(st, &v) => Ok(Admin {
                csrf: mac(st, "csrf", &v),
            }),
            _ => Err(Redirect::to("/dashboard/login").into_response()),
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
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let double_submitted = named_cookie(&headers, LOGIN_CSRF_COOKIE)
        .is_some_and(|c| !c.is_empty() && ct_eq(&c, &f.csrf));
    if !double_submitted {
        tracing::info!("dashboard sign-in refused: missing or wrong login CSRF token");
        return forbidden_form("/dashboard/login");
    }
    let cfg = &st.core.config;
    let by_key = f.username.trim().is_empty() && cfg.secret_key.ct_eq(f.password.trim());
    let by_admin = cfg
        .admin
        .as_ref()
        .is_some_and(|a| ct_eq(&a.user, f.username.trim()) && a.password.ct_eq(&f.password));
    if !(by_key || by_admin) {
        tracing::info!("dashboard sign-in refused");
        return login_response(
            &st,
            StatusCode::UNAUTHORIZED,
            Some(
                "Those credentials are not valid. Use the secret key (leave the user name empty) or the admin user name and password.",
            ),
        );
    }
    let secure = secure_attr(&st);
    let cookie = format!(
        "{COOKIE}={}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{secure}",
        new_session(&st)
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

pub async fn logout(admin: Admin, axum::Form(f): axum::Form<CsrfForm>) -> Response {
    if let Err(r) = admin.check_csrf(&f.csrf) {
        return *r;
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
