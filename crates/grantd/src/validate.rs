//! Edge validation shared by several routes: which `authorization_params` may reach the
//! authorize URL, and which webhook URLs are acceptable.

/// Authorize parameters grantd sets itself. Neither the browser nor a session's defaults may
/// replace them: they decide where the code goes, what is granted and how the flow is bound.
pub const RESERVED_AUTHORIZE_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "request",
    "request_uri",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
];

/// What a browser may add to the authorize URL (`authorization_params[…]` on
/// `/oauth/connect/…`): hints and prompts that change how the sign-in looks, never what is
/// granted or where the code is sent.
pub const BROWSER_AUTHORIZE_PARAMS: &[&str] = &[
    "prompt",
    "login_hint",
    "domain_hint",
    "claims",
    "ui_locales",
    "max_age",
    "display",
    "access_type",
];

/// Whether `name` is a reserved authorize parameter (case-insensitive: some servers fold case).
pub fn is_reserved_authorize_param(name: &str) -> bool {
    RESERVED_AUTHORIZE_PARAMS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name.trim()))
}

/// Refuses browser-supplied authorize parameters outside the allow-list, naming the first one.
pub fn browser_authorization_params(params: &[(String, String)]) -> Result<(), String> {
    match params
        .iter()
        .find(|(k, _)| !BROWSER_AUTHORIZE_PARAMS.contains(&k.as_str()))
    {
        None => Ok(()),
        Some((k, _)) => Err(format!(
            "authorization_params[{k}] cannot be set from the browser; allowed: {}",
            BROWSER_AUTHORIZE_PARAMS.join(", ")
        )),
    }
}

/// Longest webhook URL accepted.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;

/// Checks a webhook URL: parseable, absolute `http`/`https` with a host, no credentials in it,
/// no control characters, at most `MAX_WEBHOOK_URL_LEN` bytes. Where it may point (public
/// addresses only, unless `GRANTD_WEBHOOK_ALLOW_PRIVATE`) is checked at delivery time, since DNS
/// can change in between.
pub fn webhook_url(s: &str) -> Result<url::Url, String> {
    if s.len() > MAX_WEBHOOK_URL_LEN {
        return Err(format!(
            "the webhook URL is longer than {MAX_WEBHOOK_URL_LEN} bytes"
        ));
    }
    if s.chars().any(char::is_control) {
        return Err("the webhook URL contains control characters".into());
    }
    let u = url::Url::parse(s).map_err(|e| format!("the webhook URL is not a valid URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("the webhook URL must be http or https".into());
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("the webhook URL has no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("the webhook URL must not carry credentials (user:password@)".into());
    }
    Ok(u)
}

/// Percent-decodes `s` (bytes, no `+` handling: both are only inspected, never used).
pub(crate) fn percent_decoded(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// What is wrong with a request target, if anything: a NUL byte or invalid UTF-8 once
/// percent-decoded, in the path or the query. Databases differ on both (PostgreSQL refuses NUL
/// in text), so they are refused at the edge, the same on every route and backend.
pub fn uri_problem(uri: &http::Uri) -> Option<&'static str> {
    let parts = [Some(uri.path()), uri.query()];
    for part in parts.into_iter().flatten() {
        // An `http::Uri` holds only visible ASCII, so without an escape there is nothing to find
        // (the common case, and on every request: no decoding, no allocation).
        if !part.contains('%') {
            continue;
        }
        let bytes = percent_decoded(part);
        if bytes.contains(&0) {
            return Some("The URL contains a NUL byte (%00)");
        }
        if std::str::from_utf8(&bytes).is_err() {
            return Some("The URL is not valid UTF-8 once percent-decoded");
        }
    }
    None
}

/// Whether a JSON value holds a NUL character in any string or object key.
pub fn json_has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(json_has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// Query parameter names whose values are secrets (compared case-insensitively, by substring).
const SECRET_PARAMS: &[&str] = &["password", "passwd", "pwd", "secret", "token", "key"];

/// A URL fit to print: the userinfo password and every secret-bearing query parameter
/// (`password=`, `sslpassword=`, `token=`, `…key=`) shown as `***`. Text that is not a URL is
/// returned with everything after `?` and `@` hidden.
pub fn redacted_url(s: &str) -> String {
    let Ok(mut u) = url::Url::parse(s) else {
        let head = s.split(['?', '@']).next().unwrap_or("");
        return if head.len() == s.len() {
            s.to_owned()
        } else {
            format!("{head}***")
        };
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = SECRET_PARAMS.iter().any(|p| lower.contains(p));
                (
                    k.into_owned(),
                    if secret {
                        "***".to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_with_nul_or_invalid_utf8() {
        let p = |s: &str| uri_problem(&s.parse::<http::Uri>().unwrap());
        assert!(p("/oauth/callback?state=%00").is_some());
        assert!(p("/connections/a%00b").is_some());
        assert!(p("/connections?q=%ff%fe").is_some());
        assert!(p("/connections/%C3%A9?q=%E2%82%AC&x=%").is_none());
        assert!(p("/x?y=%2").is_none());
        let j: serde_json::Value = serde_json::from_str(r#"{"a":["\u0000"]}"#).unwrap();
        assert!(json_has_nul(&j));
        let j: serde_json::Value = serde_json::from_str(r#"{"\u0000":1}"#).unwrap();
        assert!(json_has_nul(&j));
        assert!(!json_has_nul(&serde_json::json!({"a": ["b", 1, null]})));
    }

    #[test]
    fn webhook_urls() {
        for ok in ["https://hooks.example/x?y=1", "http://127.0.0.1:9/x"] {
            assert!(webhook_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "file:///etc/passwd",
            "not a url",
            "https://user:pw@hooks.example/",
            "https://user@hooks.example/",
            "gopher://hooks.example/",
            "data:text/plain,x",
            "http://hooks.example/\u{0}",
            "/relative",
            "",
        ] {
            assert!(webhook_url(bad).is_err(), "{bad}");
        }
        assert!(webhook_url(&format!("https://h.example/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn browser_params_are_allow_listed() {
        let p = |k: &str| vec![(k.to_owned(), "x".to_owned())];
        assert!(browser_authorization_params(&p("prompt")).is_ok());
        assert!(browser_authorization_params(&p("login_hint")).is_ok());
        for k in RESERVED_AUTHORIZE_PARAMS {
            assert!(browser_authorization_params(&p(k)).is_err(), "{k}");
        }
        assert!(browser_authorization_params(&p("Redirect_Uri")).is_err());
        assert!(is_reserved_authorize_param("REDIRECT_URI "));
    }
}
