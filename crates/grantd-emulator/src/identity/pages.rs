//! HTML pages of the identity side: sign-in, consent, "need admin approval", the `form_post`
//! auto-submit page, error pages and the signed-out page. Plain server-rendered forms, so both a
//! browser and `crate::browser` can drive them.

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use super::errors::{AadError, Occurrence};
use crate::state::AppState;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { "body{font-family:Segoe UI,Helvetica,Arial,sans-serif;background:#f2f2f2}main{background:#fff;max-width:440px;margin:60px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}label{display:block;margin-top:12px}input[type=email],input[type=password],input[type=text]{width:100%;padding:6px}button{margin-top:16px;margin-right:8px;padding:6px 20px}.err{color:#e81123}.small{font-size:12px;color:#666;white-space:pre-wrap}" }
            }
            body { main { p { strong { "Microsoft (emulated)" } } (body) } }
        }
    }
}

/// The sign-in page: "Email" and "Password" fields and a "Sign in" button.
pub fn sign_in(
    tenant: &str,
    ctx: &str,
    app_name: &str,
    login_hint: Option<&str>,
    error: Option<&str>,
) -> Response {
    let body = html! {
        h1 { "Sign in" }
        p { "to continue to " (app_name) }
        @if let Some(e) = error { p.err id="error-text" { (e) } }
        form id="signin" method="post" action={ "/" (tenant) "/login" } {
            input type="hidden" name="ctx" value=(ctx);
            label for="login" { "Email" }
            input id="login" name="login" type="email" autocomplete="username" value=[login_hint];
            label for="passwd" { "Password" }
            input id="passwd" name="passwd" type="password" autocomplete="current-password";
            button id="idSIButton9" type="submit" { "Sign in" }
        }
    };
    Html(layout("Sign in to your account", body).into_string()).into_response()
}

/// The consent page listing the requested permissions, with "Accept" and "Cancel".
pub fn consent(
    tenant: &str,
    ctx: &str,
    app_name: &str,
    upn: &str,
    permissions: &[String],
    admin: bool,
) -> Response {
    let body = html! {
        h1 { "Permissions requested" }
        p { (app_name) }
        p.small { (upn) }
        @if admin {
            p { "This app would like to (on behalf of your organization):" }
        } @else {
            p { "This app would like to:" }
        }
        ul id="permissions" {
            @for p in permissions { li { (p) } }
        }
        @if admin {
            p { "If you accept, this app will get access to the specified resources for all users in your organization. No one else will be prompted to review these permissions." }
        }
        form id="consent" method="post" action={ "/" (tenant) "/consent" } {
            input type="hidden" name="ctx" value=(ctx);
            button id="accept" type="submit" name="action" value="accept" { "Accept" }
            button id="cancel" type="submit" name="action" value="cancel" { "Cancel" }
        }
    };
    Html(layout("Permissions requested", body).into_string()).into_response()
}

/// Shown to a non-admin at the admin-consent endpoint; the only way on is back to the app.
pub fn need_admin(tenant: &str, ctx: &str, app_name: &str, upn: &str, message: &str) -> Response {
    let body = html! {
        h1 { "Need admin approval" }
        p { (app_name) " needs permission to access resources in your organization that only an admin can grant. Please ask an admin to grant permission to this app before you can use it." }
        p.small { (upn) }
        p.err id="error-text" data-code="90094" { (message) }
        form id="needadmin" method="post" action={ "/" (tenant) "/consent" } {
            input type="hidden" name="ctx" value=(ctx);
            button id="cancel" type="submit" name="action" value="cancel" { "Return to the application without granting consent" }
        }
    };
    Html(layout("Need admin approval", body).into_string()).into_response()
}

/// `response_mode=form_post`: a page that POSTs the parameters to the redirect URI.
pub fn form_post(action: &str, params: &[(String, String)]) -> Response {
    let page = html! {
        (DOCTYPE)
        html {
            head { title { "Working..." } }
            body {
                form method="POST" name="hiddenform" action=(action) {
                    @for (k, v) in params { input type="hidden" name=(k) value=(v); }
                    noscript { p { "Script is disabled. Click Submit to continue." } input type="submit" value="Submit"; }
                }
                script { (maud::PreEscaped("window.setTimeout(function() {document.forms[0].submit()}, 0);")) }
            }
        }
    };
    let mut resp = Html(page.into_string()).into_response();
    super::errors::no_store(&mut resp);
    resp
}

/// An error shown on the login host because the client or its redirect URI cannot be trusted.
pub fn error(state: &AppState, err: &AadError) -> Response {
    let o = Occurrence::new(state, None);
    let body = html! {
        h1 { "Sorry, but we're having trouble signing you in." }
        div id="error" data-code=(err.code) data-error=(err.error) {
            p { "AADSTS" (err.code) ": " (err.message) }
        }
        p.small { "Request Id: " (o.trace_id) "\nCorrelation Id: " (o.correlation_id) "\nTimestamp: " (o.timestamp) }
    };
    (
        StatusCode::BAD_REQUEST,
        Html(layout("Sign in to your account", body).into_string()),
    )
        .into_response()
}

pub fn signed_out() -> Response {
    Html(layout("Signed out", html! { h1 { "You signed out of your account" } p { "It's a good idea to close all browser windows." } }).into_string()).into_response()
}
