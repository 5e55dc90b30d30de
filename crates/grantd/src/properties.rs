//! Property tests for the parsers that see untrusted text: the proxy's path check and header
//! mapping, the AADSTS parser, the webhook URL validator, the request-target check and URL
//! redaction (the SSRF classifier's are in `outbound::properties`). A few hundred cases run in
//! CI; `PROPTEST_CASES=100000 cargo test -p grantd --lib properties` searches longer.

use proptest::prelude::*;

fn cases() -> ProptestConfig {
    ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(256),
    )
}

/// Path-ish text: segments of dots, slashes, backslashes, percent escapes and letters.
fn pathish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("\\".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E".to_owned()),
            Just("%2f".to_owned()),
            Just("%252e".to_owned()),
            Just("%5c".to_owned()),
            Just("%00".to_owned()),
            "[a-z0-9]{1,4}",
            any::<char>().prop_map(String::from),
        ],
        0..16,
    )
    .prop_map(|v| v.concat())
}

/// Fully decodes `s` (repeatedly), as a lenient upstream might.
fn decode_fully(s: &str) -> String {
    let mut cur = s.to_owned();
    for _ in 0..4 {
        let next: String = percent_decode_lossy(&cur).replace('\\', "/");
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

fn percent_decode_lossy(s: &str) -> String {
    String::from_utf8_lossy(&crate::validate::percent_decoded(s)).into_owned()
}

proptest! {
    #![proptest_config(cases())]

    /// An accepted proxy path never has a `.` or `..` segment, however an upstream decodes it.
    #[test]
    fn accepted_proxy_paths_have_no_dot_segments(p in pathish()) {
        if crate::proxy::request::checked_path(&p).is_ok() {
            let d = decode_fully(&p);
            prop_assert!(!d.split('/').any(|s| s == "." || s == ".."), "{:?} -> {:?}", p, d);
        }
    }

    /// The header mapping never forwards credentials or hop-by-hop headers.
    #[test]
    fn upstream_headers_never_carry_credentials(
        names in prop::collection::vec("(nango-proxy-)?(authorization|cookie|connection|host|te|x-[a-z]{1,6}|content-type|transfer-encoding)", 0..8)
    ) {
        let mut h = axum::http::HeaderMap::new();
        for n in &names {
            h.append(axum::http::HeaderName::from_bytes(n.as_bytes()).unwrap(), "v".parse().unwrap());
        }
        let out = crate::proxy::request::upstream_headers(&h);
        for bad in ["authorization", "cookie", "connection", "host", "te", "transfer-encoding"] {
            prop_assert!(!out.contains_key(bad), "{} forwarded from {:?}", bad, names);
        }
    }

    /// The AADSTS parser never panics and finds the code wherever the description holds it.
    #[test]
    fn aadsts_parser_total(prefix in ".{0,40}", code in 0u32..10_000_000, suffix in ".{0,40}", junk in ".{0,80}") {
        let body = |d: String| crate::oauth::OAuthErrorBody { error: "invalid_grant".into(), error_description: Some(d), ..Default::default() };
        let _ = crate::microsoft::aadsts::aadsts_code(&body(junk.clone()));
        let _ = crate::microsoft::aadsts::explain_authorize_error(&junk, Some(&junk));
        if !prefix.contains("AADSTS") {
            let d = format!("{prefix}AADSTS{code}: {suffix}");
            prop_assert_eq!(crate::microsoft::aadsts::aadsts_code(&body(d)), Some(code));
        }
    }

    /// An accepted webhook URL is http(s), has a host and carries no credentials.
    #[test]
    fn accepted_webhook_urls_are_plain_http(s in "(https?|file|ftp|gopher|data|javascript)://([a-z]{0,5}(:[a-z]{0,5})?@)?[a-z0-9.\\[\\]:%]{0,20}(/[ -~]{0,20})?|.{0,40}") {
        if let Ok(u) = crate::validate::webhook_url(&s) {
            prop_assert!(matches!(u.scheme(), "http" | "https"), "{}", s);
            prop_assert!(u.host_str().is_some_and(|h| !h.is_empty()), "{}", s);
            prop_assert!(u.username().is_empty() && u.password().is_none(), "{}", s);
        }
    }

    /// A request target with `%00` anywhere is refused; the check never panics.
    #[test]
    fn nul_in_any_request_target_is_refused(a in "[a-z/%0-9]{0,20}", b in "[a-z=&%0-9]{0,20}") {
        for t in [format!("/{a}%00{b}"), format!("/{a}?{b}%00")] {
            if let Ok(uri) = t.parse::<http::Uri>() {
                prop_assert!(crate::validate::uri_problem(&uri).is_some(), "{}", t);
            }
        }
        if let Ok(uri) = format!("/{a}?{b}").parse::<http::Uri>() {
            let _ = crate::validate::uri_problem(&uri);
        }
    }

    /// A password-like query value never survives redaction.
    #[test]
    fn redaction_hides_secret_params(name in "(password|PassWord|sslpassword|token|api_key|secret)", value in "[A-Za-z0-9]{8,20}", other in "[a-z]{1,8}") {
        let url = format!("postgres://u@db/x?{other}=1&{name}={value}");
        let shown = crate::validate::redacted_url(&url);
        prop_assert!(!shown.contains(&value), "{}", shown);
    }
}
