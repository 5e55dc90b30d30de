//! File Picker v8 on every SharePoint host: `POST /_sharepoint/{host}/_layouts/15/FilePicker.aspx
//! ?filePicker={json}&locale=…` with a form field `access_token`.
//!
//! The form's token must be a user's token whose `aud` is `https://{host}` (anything else gets
//! SharePoint's 401 with `x-ms-diagnostics`, as `sharepoint.rs` answers its REST API); the options
//! are checked by `options.rs` (400 page naming the field). The answer is a self-contained HTML
//! page (`picker.js`, `picker.css`; inline, allowed by a per-response CSP nonce) that speaks the
//! picker's `postMessage` / `MessageChannel` protocol with its opener or parent and browses the
//! user's drives through `/_sharepoint/{host}/_api/v2.0/…` with the tokens the host hands it.
//! The form token itself is not put into the page: like Microsoft's picker, the page asks the
//! host (`authenticate`) for every token it uses.
//!
//! The consumer picker of personal accounts (`https://onedrive.live.com/picker`, reached at
//! `/_sharepoint/onedrive.live.com/picker`; `consumer.rs`) is the same page and protocol over the
//! personal drive: its form token must be a personal account's `OneDrive.*` token (anything else
//! is refused as the consumer OneDrive API refuses it), and it has no sites.

pub mod consumer;
pub mod options;

use axum::body::Body;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::json;

use crate::directory::{MSA_TENANT_ID, Tenant};
use crate::sharepoint::challenge;
use crate::state::AppState;
use crate::tokens::{Audience, BearerError};

const SCRIPT: &str = include_str!("picker.js");
const STYLE: &str = include_str!("picker.css");

/// The path of the picker page below a host, compared case-insensitively as SharePoint does.
pub const PATH: &str = "_layouts/15/FilePicker.aspx";

/// Largest form body accepted (a token and a few fields).
const MAX_FORM: usize = 64 * 1024;

/// Which picker is served: a SharePoint host's `FilePicker.aspx`, or the consumer picker of
/// personal accounts (`https://onedrive.live.com/picker`).
pub enum Host<'a> {
    SharePoint { tenant: &'a Tenant, host: &'a str },
    Consumer,
}

/// Serves `FilePicker.aspx` for `host` of `tenant`.
pub async fn page(
    state: &AppState,
    tenant: &Tenant,
    host: &str,
    parts: &Parts,
    body: Body,
) -> Response {
    serve(state, Host::SharePoint { tenant, host }, parts, body).await
}

/// Serves the consumer picker (`/_sharepoint/onedrive.live.com/picker`).
pub async fn consumer_page(state: &AppState, parts: &Parts, body: Body) -> Response {
    serve(state, Host::Consumer, parts, body).await
}

async fn serve(state: &AppState, at: Host<'_>, parts: &Parts, body: Body) -> Response {
    if parts.method != Method::POST && parts.method != Method::GET {
        return error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "The picker is opened with a form POST (or GET).",
        );
    }
    // GET (or a form without access_token) would rely on the service's session cookie, which the
    // emulator never sets: answered like a request without a token.
    let mut form: Vec<(String, String)> = Vec::new();
    if parts.method == Method::POST {
        let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
            Ok(b) => b,
            Err(_) => {
                return error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The form is larger than the picker accepts.",
                );
            }
        };
        form = match serde_urlencoded::from_bytes(&bytes) {
            Ok(f) => f,
            Err(_) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "The body is not an application/x-www-form-urlencoded form.",
                );
            }
        };
    }
    let token = form
        .iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.trim())
        .filter(|t| !t.is_empty());
    let claims = match &at {
        Host::SharePoint { tenant, host } => {
            let Some(token) = token else {
                return challenge(tenant, &BearerError::Missing);
            };
            match crate::tokens::validate_access_token(
                state,
                token,
                &Audience::SharePoint((*host).to_owned()),
            ) {
                Ok(c) if c.tid == tenant.id => c,
                Ok(_) => return challenge(tenant, &BearerError::Invalid),
                Err(e) => return challenge(tenant, &e),
            }
        }
        Host::Consumer => {
            let claims = token.ok_or(BearerError::Missing).and_then(|t| {
                crate::tokens::validate_access_token(state, t, &Audience::OneDriveConsumer)
            });
            match claims {
                Ok(c) if c.tid == MSA_TENANT_ID => c,
                Ok(_) => return consumer::refused(&BearerError::Invalid),
                Err(e) => return consumer::refused(&e),
            }
        }
    };
    if claims.is_app_only() {
        return error_page(
            StatusCode::FORBIDDEN,
            "The File Picker works with delegated permissions only: the access_token must be a user's token, not an app-only one.",
        );
    }
    let query = crate::graph::routes::parse_query(&parts.uri);
    let consumer = matches!(at, Host::Consumer);
    let opts = match options::parse(query.get("filepicker").map(String::as_str), consumer) {
        Ok(o) => o,
        Err(msg) => return error_page(StatusCode::BAD_REQUEST, &msg),
    };
    let user = {
        let dir = state.directory.read().expect("directory lock poisoned");
        dir.users
            .get(&claims.oid)
            .map(|u| (u.display_name.clone(), u.upn.clone()))
    };
    let (name, upn) =
        user.unwrap_or_else(|| (claims.upn.clone().unwrap_or_default(), String::new()));
    let config = match &at {
        Host::SharePoint { tenant, host } => json!({
            "host": host,
            "myHost": tenant.my_host,
            "rootHost": tenant.sharepoint_host,
            "apiPrefix": "_api/v2.0",
            "authType": "SharePoint",
            "consumer": false,
            "now": state.clock.unix(),
            "user": {"name": name, "upn": upn},
            "options": opts,
        }),
        // The consumer picker browses the personal drive through the consumer OneDrive API
        // (`api.onedrive.com/v1.0`, OneDrive/onedrive-api-docs#1788) with the token the host
        // gives it; there are no sites.
        Host::Consumer => json!({
            "host": consumer::API_HOST,
            "myHost": consumer::API_HOST,
            "rootHost": null,
            "apiPrefix": "v1.0",
            "authType": "Graph",
            "consumer": true,
            "now": state.clock.unix(),
            "user": {"name": name, "upn": upn},
            "options": opts,
        }),
    };
    let nonce = {
        let mut b = [0u8; 18];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
        URL_SAFE_NO_PAD.encode(b)
    };
    let markup = layout(&nonce, &config, &opts);
    let mut resp = Html(markup.into_string()).into_response();
    let h = resp.headers_mut();
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn layout(nonce: &str, config: &serde_json::Value, opts: &options::PickerOptions) -> Markup {
    // A JSON data block is not executed, but `</script>` inside it would end the element.
    let config = config.to_string().replace('<', "\\u003c");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "File Picker (emulated)" }
                style nonce=(nonce) { (PreEscaped(STYLE)) }
            }
            body data-state="waiting" {
                header {
                    strong { "Microsoft (emulated)" } " · File Picker"
                    span id="picker-account" {}
                }
                nav id="picker-nav" {
                    @if opts.pivots.one_drive { button type="button" id="picker-nav-onedrive" disabled { "My files" } }
                    @if opts.pivots.recent { button type="button" id="picker-nav-recent" disabled { "Recent" } }
                    @if opts.pivots.shared { button type="button" id="picker-nav-shared" disabled { "Shared" } }
                    @if opts.pivots.site { button type="button" id="picker-nav-sites" disabled { "Sites" } }
                }
                ol id="picker-breadcrumb" {}
                p id="picker-error" class="err" role="alert" hidden {}
                p id="picker-status" role="status" { "Waiting for the host to activate the picker…" }
                ul id="picker-list" {}
                footer {
                    span id="picker-selection-count" { "0 selected" }
                    button type="button" id="picker-select" disabled { (opts.pick_label) }
                    button type="button" id="picker-cancel" disabled { (opts.close_label) }
                }
                script id="picker-config" type="application/json" { (PreEscaped(config)) }
                script nonce=(nonce) { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

/// A refusal the user sees in the picker's window (`id="picker-error"`).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "File Picker (emulated)" } }
            body data-state="error" {
                p { strong { "Microsoft (emulated)" } " · File Picker" }
                h1 { "The picker cannot open" }
                p id="picker-error" data-status=(status.as_u16()) { (message) }
            }
        }
    };
    let mut resp = (status, Html(page.into_string())).into_response();
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    resp
}
