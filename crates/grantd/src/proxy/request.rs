//! The incoming side of `/proxy`: the caller's headers parsed and validated into `Options`
//! (Nango's `Connection-Id`, `Provider-Config-Key`, `Retries`, `Retry-On`, `Base-Url-Override`,
//! `Decompress`, `Forward-Headers-On-Redirect`, plus grantd's `Grantd-Resource` and
//! `Grantd-Follow-Redirects`, `Grantd-Pre-Authenticated`), the size limits, the path check that cannot escape the base URL,
//! and the headers sent upstream.

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::edge::ApiError;
use crate::model::{ConnectionId, ProviderConfigKey};

/// Longest path + query accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most headers accepted on one request, and their total size.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Largest request body streamed upstream (Graph's simple upload limit is 250 MB; upload-session
/// fragments are below 60 MiB).
pub const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;
/// Bodies up to this size with a known length are buffered so the request can be replayed.
pub const REPLAYABLE_BODY_BYTES: u64 = 64 * 1024;

/// Headers that describe one hop and are never forwarded, either way.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Incoming headers forwarded upstream as they are (the rest only as `Nango-Proxy-*`).
const PASSED: &[&str] = &[
    "content-type",
    "content-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "range",
    "accept",
    "prefer",
    "client-request-id",
];

#[derive(Debug, Clone)]
pub struct Options {
    pub connection_id: ConnectionId,
    pub key: ProviderConfigKey,
    pub retries: u32,
    pub retry_on: Vec<u16>,
    pub base_url_override: Option<url::Url>,
    pub sharepoint: bool,
    /// Follow redirects (`Grantd-Follow-Redirects: true`, or Nango's
    /// `Forward-Headers-On-Redirect: true`).
    pub follow_redirects: bool,
    /// Send the caller's `Nango-Proxy-*` headers to a redirect target on another host
    /// (`Forward-Headers-On-Redirect: true`). The Authorization header never goes there.
    pub forward_headers_on_redirect: bool,
    /// The URL carries its own authorization (Graph upload-session and download URLs):
    /// `Grantd-Pre-Authenticated: true` sends no Authorization header, as Microsoft requires.
    pub pre_authenticated: bool,
    /// `Content-Length` of the incoming body, when given.
    pub content_length: Option<u64>,
    /// Whether the request carries a body at all.
    pub has_body: bool,
}

fn header_str<'a>(h: &Read<'a>, name: &HeaderName) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub fn invalid_header(name: &str, msg: &str) -> ApiError {
    ApiError::validation("invalid_headers", &[name], msg)
}

fn bool_header(h: &Read<'_>, name: &HeaderName) -> Result<bool, ApiError> {
    match header_str(h, name) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(invalid_header(
            name.as_str(),
            &format!("{name} must be true or false"),
        )),
    }
}

// The request headers `Options` reads, built once: looking a header up by `&str` parses and
// hashes the name on every call.
static BASE_URL_OVERRIDE: HeaderName = HeaderName::from_static("base-url-override");
static CONNECTION_ID: HeaderName = HeaderName::from_static("connection-id");
static DECOMPRESS: HeaderName = HeaderName::from_static("decompress");
static FORWARD_HEADERS_ON_REDIRECT: HeaderName =
    HeaderName::from_static("forward-headers-on-redirect");
static GRANTD_FOLLOW_REDIRECTS: HeaderName = HeaderName::from_static("grantd-follow-redirects");
static GRANTD_PRE_AUTHENTICATED: HeaderName = HeaderName::from_static("grantd-pre-authenticated");
static GRANTD_RESOURCE: HeaderName = HeaderName::from_static("grantd-resource");
static PROVIDER_CONFIG_KEY: HeaderName = HeaderName::from_static("provider-config-key");
static RETRIES: HeaderName = HeaderName::from_static("retries");
static RETRY_ON: HeaderName = HeaderName::from_static("retry-on");
static CONTENT_LENGTH: HeaderName = header::CONTENT_LENGTH;
static TRANSFER_ENCODING: HeaderName = header::TRANSFER_ENCODING;

/// Every header `Options` reads.
static READ: [&HeaderName; 12] = [
    &CONNECTION_ID,
    &PROVIDER_CONFIG_KEY,
    &RETRIES,
    &RETRY_ON,
    &BASE_URL_OVERRIDE,
    &GRANTD_RESOURCE,
    &DECOMPRESS,
    &FORWARD_HEADERS_ON_REDIRECT,
    &GRANTD_FOLLOW_REDIRECTS,
    &GRANTD_PRE_AUTHENTICATED,
    &CONTENT_LENGTH,
    &TRANSFER_ENCODING,
];

/// The first value of each header in `READ`, found in one pass over the request's headers: a
/// request carries a handful, and a lookup by name hashes it (twelve lookups cost more).
struct Read<'a>([Option<&'a HeaderValue>; READ.len()]);

impl<'a> Read<'a> {
    fn new(h: &'a HeaderMap) -> Read<'a> {
        let mut values = [None; READ.len()];
        for (name, value) in h {
            if let Some(i) = READ.iter().position(|r| *r == name) {
                values[i].get_or_insert(value);
            }
        }
        Read(values)
    }

    /// The first value of `name`, one of the statics in `READ`.
    fn get(&self, name: &HeaderName) -> Option<&'a HeaderValue> {
        let i = READ.iter().position(|r| std::ptr::eq(*r, name));
        debug_assert!(i.is_some(), "{name} is not in READ");
        i.and_then(|i| self.0[i])
    }
}

impl Options {
    /// A call without body or proxy headers: no retries, Graph, no redirects
    /// followed (the dashboard's test call).
    pub fn plain(key: ProviderConfigKey, connection_id: ConnectionId) -> Options {
        Options {
            connection_id,
            key,
            retries: 0,
            retry_on: vec![],
            base_url_override: None,
            sharepoint: false,
            follow_redirects: false,
            forward_headers_on_redirect: false,
            pre_authenticated: false,
            content_length: None,
            has_body: false,
        }
    }

    pub fn parse(parts: &Parts) -> Result<Options, ApiError> {
        check_limits(parts)?;
        let h = &Read::new(&parts.headers);
        let connection_id = header_str(h, &CONNECTION_ID)
            .ok_or_else(|| invalid_header("connection-id", "The Connection-Id header is required"))
            .and_then(|s| {
                ConnectionId::parse(s).map_err(|e| invalid_header("connection-id", &e.to_string()))
            })?;
        let key = header_str(h, &PROVIDER_CONFIG_KEY)
            .ok_or_else(|| {
                invalid_header(
                    "provider-config-key",
                    "The Provider-Config-Key header is required",
                )
            })
            .and_then(|s| {
                ProviderConfigKey::parse(s)
                    .map_err(|e| invalid_header("provider-config-key", &e.to_string()))
            })?;
        let retries = match header_str(h, &RETRIES) {
            None => super::retry::DEFAULT_RETRIES,
            Some(s) => s.parse::<u32>().ok().filter(|n| *n <= 10).ok_or_else(|| {
                invalid_header("retries", "Retries must be a whole number up to 10")
            })?,
        };
        let retry_on = match header_str(h, &RETRY_ON) {
            None => vec![],
            Some(s) => s
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|c| (100..600).contains(c))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    invalid_header("retry-on", "Retry-On must be comma-separated status codes")
                })?,
        };
        let base_url_override = match header_str(h, &BASE_URL_OVERRIDE) {
            None => None,
            Some(o) => Some(
                url::Url::parse(o)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| {
                        invalid_header(
                            "base-url-override",
                            "Base-Url-Override must be an absolute http(s) URL",
                        )
                    })?,
            ),
        };
        let sharepoint = match header_str(h, &GRANTD_RESOURCE) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("sharepoint") => true,
            Some(v) if v.eq_ignore_ascii_case("graph") => false,
            Some(_) => {
                return Err(invalid_header(
                    "grantd-resource",
                    "Grantd-Resource must be graph or sharepoint",
                ));
            }
        };
        bool_header(h, &DECOMPRESS)?;
        let forward_headers_on_redirect = bool_header(h, &FORWARD_HEADERS_ON_REDIRECT)?;
        let follow_redirects =
            bool_header(h, &GRANTD_FOLLOW_REDIRECTS)? || forward_headers_on_redirect;
        let pre_authenticated = bool_header(h, &GRANTD_PRE_AUTHENTICATED)?;
        let content_length = match h.get(&CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| invalid_header("content-length", "Invalid Content-Length"))?,
            ),
        };
        if content_length.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "The request body is larger than {MAX_BODY_BYTES} bytes; upload large files in upload-session fragments"
                ),
            ));
        }
        let has_body = content_length.is_some_and(|n| n > 0) || h.get(&TRANSFER_ENCODING).is_some();
        Ok(Options {
            connection_id,
            key,
            retries,
            retry_on,
            base_url_override,
            sharepoint,
            follow_redirects,
            forward_headers_on_redirect,
            pre_authenticated,
            content_length,
            has_body,
        })
    }
}

fn check_limits(parts: &Parts) -> Result<(), ApiError> {
    let uri_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("The path and query may not exceed {MAX_URI_BYTES} bytes"),
        ));
    }
    let bytes: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if parts.headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("At most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in total"),
        ));
    }
    Ok(())
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|x| u8::from_str_radix(x, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The proxied path (after `/proxy`), refused when any segment is `.` or `..` — also when
/// written as `%2e%2e`, `..%2f`, `%252e%252e` or with backslashes — so the call cannot escape
/// the base URL, whatever the upstream decodes.
pub fn checked_path(raw: &str) -> Result<&str, ApiError> {
    let dot_segment = |p: &str| p.split('/').any(|seg| seg == ".." || seg == ".");
    let refused = || {
        ApiError::validation(
            "invalid_uri_params",
            &["path"],
            "The path may not contain '.' or '..' segments (encoded or not)",
        )
    };
    if !raw.bytes().any(|c| c == b'%' || c == b'\\') {
        // Nothing to decode (the usual path): the segments as they are, without the copies.
        if dot_segment(raw) {
            return Err(refused());
        }
    } else {
        let mut s = raw.to_owned();
        for _ in 0..3 {
            let decoded = percent_decode(&s).replace('\\', "/");
            if dot_segment(&decoded) {
                return Err(refused());
            }
            if decoded == s {
                break;
            }
            s = decoded;
        }
    }
    if raw.bytes().any(|c| c.is_ascii_control()) {
        return Err(ApiError::validation(
            "invalid_uri_params",
            &["path"],
            "The path may not contain control characters",
        ));
    }
    Ok(raw)
}

/// The headers sent upstream: the content headers as they are, and `Nango-Proxy-<Name>` as
/// `<Name>` (hop-by-hop and credentials headers excluded: grantd sets Authorization itself).
pub fn upstream_headers(h: &HeaderMap) -> axum::http::header::HeaderMap {
    let mut out = axum::http::header::HeaderMap::new();
    for (name, value) in h {
        let n = name.as_str();
        if let Some(stripped) = n.strip_prefix("nango-proxy-") {
            if HOP_BY_HOP.contains(&stripped) || stripped == "authorization" || stripped == "cookie"
            {
                continue;
            }
            if let Ok(hn) = HeaderName::from_bytes(stripped.as_bytes()) {
                out.insert(hn, value.clone());
            }
        } else if PASSED.contains(&n) && !out.contains_key(name) {
            out.insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_refused_however_encoded() {
        for p in [
            "/v1.0/../x",
            "/v1.0/%2e%2e/x",
            "/v1.0/%2E%2E/x",
            "/v1.0/..%2fx",
            "/v1.0/..%2Fx",
            "/v1.0/%2e%2e%2fx",
            "/v1.0/.%2e/x",
            "/v1.0/%252e%252e/x",
            "/v1.0/..\\x",
            "/v1.0/..%5cx",
            "/v1.0/./me",
            "/..",
        ] {
            assert!(checked_path(p).is_err(), "{p}");
        }
        for p in [
            "/v1.0/me/drive/root:/a..b.txt:/content",
            "/v1.0/me/drive/items/01ABC/children",
            "/v1.0/me/drive/root:/My%20Files:",
            "/_upload/abc",
            "",
        ] {
            assert!(checked_path(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn nango_proxy_headers_are_forwarded_without_credentials() {
        let mut h = HeaderMap::new();
        h.insert("nango-proxy-x-custom", "1".parse().unwrap());
        h.insert("nango-proxy-authorization", "Bearer evil".parse().unwrap());
        h.insert("nango-proxy-host", "evil".parse().unwrap());
        h.insert("authorization", "Bearer api-key".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("cookie", "a=b".parse().unwrap());
        let out = upstream_headers(&h);
        assert_eq!(out.get("x-custom").unwrap(), "1");
        assert_eq!(out.get("content-type").unwrap(), "application/json");
        assert!(out.get("authorization").is_none());
        assert!(out.get("host").is_none());
        assert!(out.get("cookie").is_none());
    }
}
