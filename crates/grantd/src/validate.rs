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

#[cfg(test)]
mod tests {
    use super::*;

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
