//! Server-rendered pages (maud): the Connect UI, and the callback's success and failure pages.
//! The callback pages also tell an opener window or the Connect UI the outcome, the way Nango's
//! do (`postMessage` and a `BroadcastChannel`), and close themselves on success.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::connect_i18n::Texts;

pub(super) const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b;background:#fff;line-height:1.5}\
h1{font-size:1.5rem}a.button,button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:6px;padding:.6rem 1.1rem;font-size:1rem;text-decoration:none;margin:.25rem 0}\
a.button:focus,button:focus{outline:3px solid #ffbf47;outline-offset:2px}.muted{color:#4a4a4a}.error{border-left:4px solid #b00020;padding-left:1rem}\
.ok{border-left:4px solid #1e7b34;padding-left:1rem}code{background:#f2f2f2;padding:.1rem .3rem;border-radius:3px}ul{padding-left:0;list-style:none}li img{vertical-align:middle}\
button.secondary{background:transparent;color:#1b1b1b;font-size:1.5rem;float:right;padding:0 .5rem}";

fn layout(title: &str, body: Markup) -> Markup {
    layout_lang("en", title, body)
}

fn layout_lang(lang: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang) {
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

/// The Connect UI's list. `integrations`: (key, display name, docs link from the session's
/// `overrides`, logo URL). Standalone (from `connect_link`) each integration is a link that
/// starts the flow in this tab; `embedded` (inside `@nangohq/frontend`'s `openConnectUI`
/// iframe) the link opens a popup instead, and the outcome the callback page posts back is
/// passed to the parent window as Nango's Connect UI events (`connect`, `error`, `close`).
pub fn connect_ui(
    t: &Texts,
    token: &str,
    integrations: &[(String, String, Option<String>, String)],
    reconnecting: bool,
    embedded: bool,
) -> Markup {
    let title = if reconnecting {
        t.title_reconnect
    } else {
        t.title
    };
    layout_lang(
        t.code,
        title,
        html! {
            @if embedded {
                button #close.secondary type="button" aria-label=(t.close) { "×" }
            }
            h1 { (title) }
            @if integrations.is_empty() {
                p.error { (t.none) }
            } @else {
                p.muted { (t.intro) }
                ul #integrations {
                    @for (key, name, docs, logo) in integrations {
                        li {
                            img src=(logo) alt="" width="32" height="32";
                            " "
                            a.button.connect href=(format!("/oauth/connect/{}?connect_session_token={}", urlencode(key), urlencode(token))) data-key=(key) {
                                (t.connect) " " (name)
                            }
                            @if let Some(docs) = docs {
                                " "
                                a.docs href=(docs) target="_blank" rel="noopener noreferrer" { (t.docs) }
                            }
                        }
                    }
                }
            }
            p #waiting.muted hidden { (t.waiting) }
            div #done.ok role="status" hidden { h2 { (t.connected) } p { (t.connected_detail) } }
            div #failed.error role="alert" hidden { h2 { (t.failed) } p #failed-message {} }
            @if embedded {
                script { (PreEscaped(EMBEDDED_JS)) }
            }
        },
    )
}

/// In the iframe: popups for the flow, their outcome to the parent as Connect UI events.
const EMBEDDED_JS: &str = "(function(){\
var parentWin=window.parent,done=false;\
function send(m){try{parentWin.postMessage(m,'*')}catch(e){}}\
function show(id){['waiting','done','failed'].forEach(function(x){document.getElementById(x).hidden=(x!==id)})}\
function outcome(d){if(!d||typeof d!=='object'||done)return;\
if(d.type==='nango_oauth_callback_success'){done=true;show('done');send({type:'connect',payload:{providerConfigKey:d.providerConfigKey,connectionId:d.connectionId}})}\
else if(d.type==='nango_oauth_callback_error'){done=true;var p=d.payload||{};document.getElementById('failed-message').textContent=p.message||'';show('failed');send({type:'error',payload:{errorType:p.errorType||'unknown_error',errorMessage:p.message||''}})}}\
window.addEventListener('message',function(e){if(e.origin===location.origin)outcome(e.data)});\
try{new BroadcastChannel('nango-oauth-callback').onmessage=function(e){outcome(e.data)}}catch(e){}\
document.getElementById('close').onclick=function(){send({type:'close'})};\
document.querySelectorAll('a.connect').forEach(function(a){a.addEventListener('click',function(ev){ev.preventDefault();done=false;show('waiting');\
window.open(a.href,'nango-connect','popup,width=520,height=720')})});\
})();";

/// What `openConnectUI` loads at `{host}/connect/`: tells the parent it is `ready`, waits for
/// `session_token`, then shows the list for that session (embedded). Opened outside a frame
/// without a token it says the link is incomplete.
pub fn connect_shell(t: &Texts) -> Markup {
    let script = format!(
        "(function(){{var lang={lang};\
if(window.parent===window){{document.getElementById('status').textContent={incomplete};return}}\
window.addEventListener('message',function(e){{var d=e.data;if(e.source!==window.parent||!d||d.type!=='session_token'||typeof d.sessionToken!=='string')return;\
location.replace('./?session_token='+encodeURIComponent(d.sessionToken)+'&embedded=1&lang='+encodeURIComponent(lang))}});\
window.parent.postMessage({{type:'ready'}},'*');}})();",
        lang = serde_json::Value::String(t.code.into()),
        incomplete = serde_json::Value::String(t.incomplete.into()),
    );
    layout_lang(
        t.code,
        t.title,
        html! {
            p #status.muted role="status" { (t.loading) }
            script { (PreEscaped(script)) }
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
