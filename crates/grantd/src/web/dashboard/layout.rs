//! The dashboard's page frame (head, navigation, sign-out form), its style sheet and the login
//! page. Colours meet WCAG AA contrast on white; every control has a visible focus ring.

use maud::{DOCTYPE, Markup, PreEscaped, html};

const STYLE: &str = "*{box-sizing:border-box}body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1b1b1b;background:#f7f7f8;line-height:1.5}\
header{background:#12263f;color:#fff;padding:.6rem 1.5rem;display:flex;gap:1.5rem;align-items:center;flex-wrap:wrap}header a{color:#fff}header .brand{font-weight:700;margin-right:1rem}\
header form{margin-left:auto}main{max-width:72rem;margin:1.5rem auto;padding:0 1.5rem}h1{font-size:1.5rem;margin-top:0}h2{font-size:1.15rem;margin-top:2rem}\
a{color:#0b5cad}a:focus,button:focus,input:focus,select:focus,summary:focus{outline:3px solid #ffbf47;outline-offset:2px}\
.button,button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:6px;padding:.45rem .9rem;font-size:.95rem;text-decoration:none;cursor:pointer}\
button.secondary,.button.secondary{background:#fff;color:#0b5cad;border:1px solid #0b5cad}button.danger{background:#a4001d}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.5rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}th{background:#eef1f5}\
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}\
label{display:block;font-weight:600;margin:.8rem 0 .2rem}input[type=text],input[type=password],input[type=date],input[type=search],select{font-size:1rem;padding:.4rem;border:1px solid #767676;border-radius:4px;width:100%;max-width:32rem}\
fieldset{border:1px solid #ccc;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}legend{font-weight:600}.check label{display:inline;font-weight:400}.check{margin:.35rem 0}\
.hint{color:#4a4a4a;font-size:.9rem;margin:.1rem 0}.error{border-left:4px solid #b00020;padding-left:.8rem;color:#7a0016}.ok{border-left:4px solid #1e7b34;padding-left:.8rem}.warn{border-left:4px solid #8a5a00;padding-left:.8rem;color:#5c3c00}\
.status{display:inline-block;border-radius:999px;padding:.05rem .6rem;font-size:.85rem;font-weight:600;white-space:nowrap}\
.s-healthy{background:#dff3e4;color:#14532d}.s-refreshing{background:#fff4ce;color:#5c3c00}.s-reconnect{background:#fde2e4;color:#7a0016}.s-sharepoint{background:#e8e3f7;color:#3b2a7a}.s-misconfigured{background:#fde2e4;color:#7a0016}\
code,pre{background:#f2f2f2;padding:.1rem .3rem;border-radius:3px;font-size:.9rem}pre{padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}\
.row{display:flex;gap:.5rem;flex-wrap:wrap;align-items:center}.row form{display:inline}.muted{color:#4a4a4a}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{font-weight:600}dd{margin:0}td time{white-space:nowrap}";

/// A dashboard page. `csrf` is `Some` when signed in (renders the navigation and sign-out form).
pub fn page(title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · grantd dashboard" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    span.brand { "grantd" }
                    @if let Some(csrf) = csrf {
                        nav aria-label="Dashboard" {
                            a href="/dashboard" { "Overview" } " · "
                            a href="/dashboard/integrations" { "Integrations" } " · "
                            a href="/dashboard/connections" { "Connections" } " · "
                            a href="/openapi.json" { "API (OpenAPI)" }
                        }
                        form method="post" action="/dashboard/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden CSRF field every dashboard form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// The login page; `csrf` is the double-submit token also set as the `grantd_login_csrf` cookie.
pub fn login(admin_configured: bool, error: Option<&str>, csrf: &str) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in to the grantd dashboard" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.card method="post" action="/dashboard/login" {
                (csrf_field(csrf))
                @if admin_configured {
                    label for="username" { "Admin user name" }
                    p.hint id="username-hint" { "Leave empty to sign in with the secret key." }
                    input #username type="text" name="username" autocomplete="username" aria-describedby="username-hint";
                }
                label for="password" { @if admin_configured { "Password or secret key" } @else { "Secret key" } }
                p.hint id="password-hint" { "The secret key is the value apps send as " code { "Authorization: Bearer …" } " (GRANTD_SECRET_KEY; grantd dev prints it)." }
                input #password type="password" name="password" required autocomplete="current-password" aria-describedby="password-hint";
                p { button type="submit" { "Sign in" } }
            }
        },
    )
}
