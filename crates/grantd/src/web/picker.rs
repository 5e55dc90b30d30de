//! The hosted File Picker: `GET /picker?session_token=…` (the page), `POST /picker/token` and
//! `POST /picker/picked` (what only that page calls, with the session token as bearer and its
//! own origin), and `GET /picker/sdk.js` (the app's helper that opens the page in a popup).
//!
//! The page frames Microsoft's File Picker v8 (`{SharePoint host}/_layouts/15/FilePicker.aspx`
//! for work or school accounts, `https://onedrive.live.com/picker` for personal ones; a form POST
//! carrying the first token) and speaks its protocol over the `MessageChannel` the
//! picker opens (`initialize` → `activate`; `authenticate` → a token for exactly that resource,
//! asked of `/picker/token`; `pick` → `/picker/picked`; `close`). The SharePoint tokens stay in
//! this page and the picker's frame: the app's page (opener or parent) only ever receives
//! `{type:'picked', items}` and `{type:'close'}`, posted to the origin the session recorded.

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use grantd_api as wire;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use rand::RngCore;
use serde_json::json;

use crate::connections::picker::{PickerError, Problem};
use crate::edge::{ApiError, AppState, JsonBody, bearer};

/// The picker page's script: launches the picker and speaks its protocol.
const PAGE_JS: &str = include_str!("picker_page.js");
/// The app's helper (`grantdPicker.open({url})`).
const SDK_JS: &str = include_str!("picker_sdk.js");

fn nonce() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn csp(nonce: &str, picker_origin: Option<&str>, app_origin: Option<&str>) -> String {
    let frame = picker_origin.unwrap_or("'none'");
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src 'self'; connect-src 'self'; frame-src {frame}; form-action {frame}; \
         base-uri 'none'; frame-ancestors {}",
        app_origin.unwrap_or("'none'")
    )
}

fn page(nonce: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · grantd" }
                style nonce=(nonce) { (PreEscaped(super::pages::STYLE)) (PreEscaped(PICKER_STYLE)) }
            }
            body { main { (body) } }
        }
    }
}

const PICKER_STYLE: &str = "body{max-width:none;margin:0;padding:0}main{display:flex;flex-direction:column;height:100vh}\
header{padding:.5rem 1rem;border-bottom:1px solid #ddd}header h1{margin:0;font-size:1.1rem}\
iframe{flex:1;border:0;width:100%}.notice{max-width:36rem;margin:2rem auto;padding:0 1rem}";

fn respond(status: StatusCode, csp: String, body: Markup) -> Response {
    let mut resp = (status, Html(body.into_string())).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn notice(status: StatusCode, title: &str, message: &str, link: Option<(&str, &str)>) -> Response {
    let n = nonce();
    respond(
        status,
        csp(&n, None, None),
        page(
            &n,
            title,
            html! {
                div.notice.error role="alert" {
                    h1 { (title) }
                    p { (message) }
                    @if let Some((href, text)) = link {
                        p { a.button #reconnect href=(href) target="_blank" rel="noopener" { (text) } }
                    }
                }
            },
        ),
    )
}

fn query_token(parts: &Parts) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(parts.uri.query().unwrap_or(""))
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "session_token")
        .map(|(_, v)| v)
}

/// `GET /picker?session_token=…`.
pub async fn page_handler(State(st): State<AppState>, parts: Parts) -> Response {
    let Some(token) = query_token(&parts) else {
        return notice(
            StatusCode::BAD_REQUEST,
            "This picker link is incomplete",
            "Ask the app to open the file picker again.",
            None,
        );
    };
    let view = match st.core.picker_page(&token).await {
        Ok(v) => v,
        Err(PickerError::UnknownSession) => {
            return notice(
                StatusCode::UNAUTHORIZED,
                "This picker link has expired or is invalid",
                "Go back to the app and open the file picker again.",
                None,
            );
        }
        Err(PickerError::SessionUsed) => {
            return notice(
                StatusCode::CONFLICT,
                "This picker link was already used",
                "Files were already picked with it. Go back to the app and open the file picker again.",
                None,
            );
        }
        Err(PickerError::UnknownConnection) => {
            return notice(
                StatusCode::NOT_FOUND,
                "The account is no longer connected",
                "Go back to the app and connect your account again.",
                None,
            );
        }
        Err(PickerError::NotSupported(m)) => {
            return notice(
                StatusCode::BAD_REQUEST,
                "The file picker is not available",
                &m,
                None,
            );
        }
        Err(e) => {
            let e = ApiError::from(e);
            if e.status.is_server_error() {
                tracing::error!("picker page failed");
            }
            return notice(
                e.status,
                "The file picker could not open",
                e.message.as_deref().unwrap_or("Try again in a moment."),
                None,
            );
        }
    };
    let app_origin = view.session.options.origin.clone();
    let launch = match view.launch {
        Ok(l) => l,
        Err(Problem {
            message, reconnect, ..
        }) => {
            let link = if reconnect {
                st.core
                    .picker_reconnect_link(&view.session)
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %crate::edge::error_chain(&e), "picker reconnect link failed")
                    })
                    .ok()
            } else {
                None
            };
            return notice(
                StatusCode::CONFLICT,
                "Your account needs to be reconnected",
                &message,
                link.as_deref().map(|l| (l, "Reconnect your account")),
            );
        }
    };
    let n = nonce();
    let cfg = json!({
        "token": token,
        "action": launch.action,
        "pickerOrigin": launch.picker_origin,
        "resource": launch.resource,
        "channelId": launch.channel_id,
        "appOrigin": app_origin,
    });
    respond(
        StatusCode::OK,
        csp(&n, Some(&launch.picker_origin), Some(&app_origin)),
        page(
            &n,
            "Pick files",
            html! {
                header { h1 { "Pick files" } p #status.muted role="status" { "Opening your files…" } }
                form #launch method="post" target="grantd-picker-frame" action=(launch.action) hidden {
                    input type="hidden" name="access_token" value="";
                }
                iframe #picker name="grantd-picker-frame" title="Microsoft File Picker" {}
                div #cfg hidden data-cfg=(cfg.to_string()) {}
                script nonce=(n) { (PreEscaped(PAGE_JS)) }
            },
        ),
    )
}

/// The page's own requests must come from grantd's origin (a browser always sends `Origin` on a
/// POST); anything else is refused before the session is looked at.
fn same_origin(st: &AppState, parts: &Parts) -> Result<(), ApiError> {
    let public = st.core.config.public_url.origin().ascii_serialization();
    let ok = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o == public);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "Only grantd's picker page may call this endpoint.",
        ))
    }
}

/// `POST /picker/token` `{resource}` → `{data: {token, expires_at}}`.
pub async fn token(
    State(st): State<AppState>,
    parts: Parts,
    JsonBody(b): JsonBody<wire::PickerTokenRequest>,
) -> Result<Response, ApiError> {
    same_origin(&st, &parts)?;
    let session = bearer(&parts)?;
    let (t, exp) = st.core.picker_token(&session, &b.resource).await?;
    let mut resp = Json(wire::Data {
        data: wire::PickerToken {
            token: t.expose_secret().to_owned(),
            expires_at: exp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        },
    })
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /picker/picked` `{items: [driveItem…]}` → `{data: {items}}` (what the app receives).
pub async fn picked(
    State(st): State<AppState>,
    parts: Parts,
    JsonBody(b): JsonBody<wire::PickedRequest>,
) -> Result<Json<wire::Data<wire::PickedItems>>, ApiError> {
    same_origin(&st, &parts)?;
    let session = bearer(&parts)?;
    let p = st.core.picker_picked(&session, &b.items).await?;
    Ok(Json(wire::Data {
        data: wire::PickedItems {
            items: p.items.iter().map(|i| i.to_wire()).collect(),
        },
    }))
}

/// `GET /picker/sdk.js`.
pub async fn sdk() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        SDK_JS,
    )
        .into_response()
}
