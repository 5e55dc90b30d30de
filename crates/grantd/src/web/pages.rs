//! Server-rendered pages (maud): the Connect UI, and the callback's success and failure pages.
//! The callback pages also tell an opener window or the Connect UI the outcome, the way Nango's
//! do (`postMessage` and a `BroadcastChannel`), and close themselves on success.

use maud::{DOCTYPE, Markup, PreEscaped, html};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b;background:#fff;line-height:1.5}\
h1{font-size:1.5rem}a.button,button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:6px;padding:.6rem 1.1rem;font-size:1rem;text-decoration:none;margin:.25rem 0}\
a.button:focus,button:focus{outline:3px solid #ffbf47;outline-offset:2px}.muted{color:#4a4a4a}.error{border-left:4px solid #b00020;padding-left:1rem}\
.ok{border-left:4px solid #1e7b34;padding-left:1rem}code{background:#f2f2f2;padding:.1rem .3rem;border-radius:3px}ul{padding-left:0;list-style:none}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · grantd" }
                style { (PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
    }
}

/// `integrations`: (key, display name, docs link from the session's `overrides`).
pub fn connect_ui(
    token: &str,
    integrations: &[(String, String, Option<String>)],
    reconnecting: bool,
) -> Markup {
    layout(
        "Connect an account",
        html! {
            h1 { @if reconnecting { "Reconnect your account" } @else { "Connect an account" } }
            @if integrations.is_empty() {
                p.error { "No integration is available for this link. Ask the app's developers to set one up." }
            } @else {
                p.muted { "Choose what to connect. You will sign in with Microsoft and approve access; then you come back here." }
                ul {
                    @for (key, name, docs) in integrations {
                        li {
                            a.button href=(format!("/oauth/connect/{}?connect_session_token={}", urlencode(key), urlencode(token))) {
                                "Connect " (name)
                            }
                            @if let Some(docs) = docs {
                                " "
                                a.docs href=(docs) target="_blank" rel="noopener noreferrer" { "Setup guide" }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn success(provider_config_key: &str, connection_id: &str, created: bool) -> Markup {
    let script = format!(
        "(function(){{var m={{type:'nango_oauth_callback_success',providerConfigKey:{k},connectionId:{c}}};\
try{{if(window.opener)window.opener.postMessage(m,'*')}}catch(e){{}}\
try{{new BroadcastChannel('nango-oauth-callback').postMessage(m)}}catch(e){{}}\
setTimeout(function(){{window.close()}},500);}})();",
        k = serde_json::Value::String(provider_config_key.into()),
        c = serde_json::Value::String(connection_id.into()),
    );
    layout(
        "Connected",
        html! {
            div.ok role="status" {
                h1 { @if created { "Connected" } @else { "Reconnected" } }
                p { "Your account is connected. You can close this window and return to the app." }
            }
            script { (PreEscaped(script)) }
        },
    )
}

pub fn failure(message: &str, what_to_do: &str, error_type: &str) -> Markup {
    let script = format!(
        "(function(){{var p={{message:{m},errorType:{t}}};window.__nangoOAuthError=p;var e={{type:'nango_oauth_callback_error',payload:p}};\
try{{if(window.opener)window.opener.postMessage(e,'*')}}catch(x){{}}\
try{{new BroadcastChannel('nango-oauth-callback').postMessage(e)}}catch(x){{}}}})();",
        m = serde_json::Value::String(message.into()),
        t = serde_json::Value::String(error_type.into()),
    );
    layout(
        "Connection failed",
        html! {
            div.error role="alert" {
                h1 { "The connection did not complete" }
                p { strong { (message) } }
                p { "What to do: " (what_to_do) }
                p.muted { "Error type: " code { (error_type) } }
            }
            script { (PreEscaped(script)) }
        },
    )
}
