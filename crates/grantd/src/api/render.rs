//! Model → wire: integrations, providers and connections as `grantd_api` types (the shapes
//! Nango's SDKs read), and the JSON response they are written into.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use grantd_api as wire;
use serde::Serialize;
use serde_json::Value;

use crate::catalog::Provider;
use crate::model::{ConfigKey, Connection, EndUser, Integration};

/// RFC 3339 with milliseconds and `Z`, as `to_rfc3339_opts(SecondsFormat::Millis, true)` writes
/// it; written by hand for years 0–9999 (every timestamp of a connection, several per credential
/// fetch: chrono's general formatter costs far more than the 24 bytes).
pub fn ts(t: &DateTime<Utc>) -> String {
    match ts_fixed(t) {
        Some(b) => String::from_utf8(b.to_vec()).expect("ASCII digits"),
        None => t.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// `ts` for years 0–9999 (24 ASCII bytes, written without allocating); `None` for other years.
pub fn ts_fixed(t: &DateTime<Utc>) -> Option<[u8; 24]> {
    use chrono::{Datelike, Timelike};
    let t = t.naive_utc();
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    // A leap second shows as second 59 with nanoseconds ≥ 1e9; chrono writes it as :60.
    let nanos = t.nanosecond();
    let (sec, millis) = if nanos >= 1_000_000_000 {
        (t.second() + 1, (nanos - 1_000_000_000) / 1_000_000)
    } else {
        (t.second(), nanos / 1_000_000)
    };
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, sec);
    put(20, 3, millis);
    Some(b)
}

/// `status` with `body` as compact JSON (serde_json's bytes, written by `json_out`), in a buffer of
/// `capacity` bytes (a guess of the body's size, so the hot answers are written without regrowing).
pub fn json_with_capacity<T: Serialize>(status: StatusCode, body: &T, capacity: usize) -> Response {
    match super::json_out::to_vec_with_capacity(body, capacity) {
        Ok(buf) => json_bytes(status, buf),
        // Only a `Serialize` impl that fails could get here; the wire types have none.
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            super::ApiError::internal().into_response()
        }
    }
}

/// `status` with `body`, JSON already written, as `application/json`.
/// Built directly: `(status, Vec<u8>).into_response()` first inserts an `application/octet-stream`
/// content type that is then replaced (~0.6k instructions per credential fetch).
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(axum::body::Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A `200 application/json` answer (as `axum::Json`, with a buffer sized for the usual body).
pub fn json<T: Serialize>(body: &T) -> Response {
    json_with_capacity(StatusCode::OK, body, 512)
}

pub fn integration(i: &Integration, public_url: &str, with_credentials: bool) -> wire::Integration {
    wire::Integration {
        unique_key: i.unique_key.as_str().to_owned(),
        provider: i.provider.clone(),
        display_name: i.display_name.clone(),
        logo: format!(
            "{}/images/template-logos/{}.svg",
            public_url.trim_end_matches('/'),
            i.provider
        ),
        forward_webhooks: i.forward_webhooks,
        created_at: ts(&i.created_at),
        updated_at: ts(&i.updated_at),
        webhook_url: None,
        credentials: with_credentials.then(|| wire::IntegrationCredentials {
            kind: "OAUTH2".into(),
            client_id: i.client_id.clone(),
            client_secret: i.client_secret.expose_secret().to_owned(),
            scopes: i.scopes.join(","),
            webhook_secret: None,
            client_certificate: None,
            client_assertion_alg: None,
            client_certificate_expires_at: None,
            client_secret_expires_at: None,
        }),
        credentials_expiry: None,
    }
}

pub fn provider(p: &Provider, public_url: &str, callback_url: &str) -> wire::Provider {
    wire::Provider {
        name: p.name.clone(),
        display_name: p.display_name.clone(),
        auth_mode: p.auth_mode.clone(),
        categories: p.categories.clone(),
        authority: p.authority.clone(),
        authorization_url: p.authorization_url.clone(),
        token_url: p.token_url.clone(),
        default_scopes: p.default_scopes.clone(),
        scope_separator: p.scope_separator.clone(),
        proxy_base_url: p.proxy_base_url.clone(),
        sharepoint_token: p.sharepoint_token,
        account_types: p.account_types.clone(),
        docs: p.docs.clone(),
        disable_pkce: p.disable_pkce,
        logo_url: format!(
            "{}/images/template-logos/{}.svg",
            public_url.trim_end_matches('/'),
            p.name
        ),
        setup: wire::ProviderSetup {
            redirect_uri: callback_url.to_owned(),
            account_types: p.account_types.clone(),
        },
    }
}

pub fn end_user(u: &Option<EndUser>) -> Option<wire::EndUser> {
    u.as_ref().map(|u| wire::EndUser {
        id: u.id.clone(),
        display_name: u.display_name.clone(),
        email: u.email.clone(),
        tags: u.tags.clone(),
        organization: u.organization.as_ref().map(|o| wire::Organization {
            id: o.id.clone(),
            display_name: o.display_name.clone(),
        }),
    })
}

fn errors(c: &Connection) -> Vec<wire::ConnectionErrorItem> {
    match &c.auth_failure {
        Some(f) => vec![wire::ConnectionErrorItem {
            kind: "auth".into(),
            log_id: format!("auth-{}", c.id),
            message: Some(f.description.clone()),
        }],
        None => vec![],
    }
}

/// The list item of `GET /connections` (note `created`, not `created_at`).
pub fn connection_item(c: &Connection) -> wire::ConnectionListItem {
    wire::ConnectionListItem {
        id: c.id,
        connection_id: c.connection_id.as_str().to_owned(),
        provider_config_key: c.provider_config_key.as_str().to_owned(),
        provider: c.provider.clone(),
        created: ts(&c.created_at),
        metadata: Some(c.metadata.clone()),
        tags: c.tags.clone(),
        errors: errors(c),
        end_user: end_user(&c.end_user),
    }
}

/// Whether a key names a refresh token: `refresh_token`, `refreshToken`, `Refresh-Token`, …
/// (case, `_` and `-` ignored). Allocation-free: it runs on every key of every credential read.
fn is_refresh_token_key(k: &str) -> bool {
    const WANT: &[u8] = b"refreshtoken";
    let mut want = WANT.iter();
    for b in k.bytes().filter(|b| !matches!(b, b'_' | b'-')) {
        match want.next() {
            Some(w) if b.eq_ignore_ascii_case(w) => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

/// Removes every key named like a refresh token, recursively (Nango hides them unless asked).
fn strip_refresh_tokens(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !is_refresh_token_key(k));
            m.values_mut().for_each(strip_refresh_tokens);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_refresh_tokens),
        _ => {}
    }
}

/// The `OAUTH2` credentials of a connection; refresh tokens only when asked for.
fn oauth2_credentials(c: &Connection, with_refresh_token: bool) -> wire::Credentials {
    let creds = &c.credentials;
    let mut raw = creds.raw.clone();
    if !with_refresh_token {
        strip_refresh_tokens(&mut raw);
    }
    wire::Credentials::OAuth2(wire::OAuth2Credentials {
        access_token: creds.access_token.expose_secret().to_owned(),
        expires_at: creds.expires_at.as_ref().map(ts),
        raw,
        refresh_token: creds
            .refresh_token
            .as_ref()
            .filter(|_| with_refresh_token)
            .map(|rt| rt.expose_secret().to_owned()),
    })
}

/// The full connection of `GET /connections/{id}` and `POST /connections`, with `OAUTH2`
/// credentials (the app-only handlers replace them with `OAUTH2_CC` ones).
pub fn connection(
    c: &Connection,
    with_refresh_token: bool,
    sharepoint_expected: bool,
) -> wire::Connection {
    let mut other = c.connection_config.as_object().cloned().unwrap_or_default();
    let sharepoint_access_token = match &c.credentials.sharepoint {
        Some(sp) => {
            other.remove(ConfigKey::SharepointAccessToken.as_str());
            Some(wire::SharepointAccessToken {
                access_token: sp.access_token.expose_secret().to_owned(),
                expires_at: sp.expires_at.as_ref().map(ts),
                token_type: sp.token_type.clone(),
                scope: sp.scope.clone(),
                resource: format!("https://{}", sp.host),
            })
        }
        None => {
            let status = ConfigKey::SharepointTokenStatus.as_str();
            if sharepoint_expected && other.get(status).and_then(Value::as_str) == Some("ok") {
                other.insert(
                    status.into(),
                    "unavailable: the SharePoint token could not be refreshed; reauthorize to obtain it".into(),
                );
            }
            None
        }
    };
    if !with_refresh_token {
        other.retain(|k, _| !is_refresh_token_key(k));
        other.values_mut().for_each(strip_refresh_tokens);
    }
    wire::Connection {
        id: c.id,
        connection_id: c.connection_id.as_str().to_owned(),
        provider_config_key: c.provider_config_key.as_str().to_owned(),
        provider: c.provider.clone(),
        errors: errors(c),
        end_user: end_user(&c.end_user),
        metadata: Some(c.metadata.clone()),
        tags: c.tags.clone(),
        connection_config: wire::ConnectionConfig {
            sharepoint_access_token,
            other,
        },
        webhook_url_override: c.webhook_url_override.clone(),
        created_at: ts(&c.created_at),
        updated_at: ts(&c.updated_at),
        last_fetched_at: c.last_fetched_at.as_ref().map(ts),
        last_refreshed_at: c.last_refreshed_at.as_ref().map(ts),
        auth_error: c.auth_failure.as_ref().map(|f| wire::AuthError {
            kind: f.kind.as_str().to_owned(),
            description: f.description.clone(),
            aadsts: f.aadsts,
            error: f.error.clone(),
            at: ts(&f.at),
        }),
        credentials: Some(oauth2_credentials(c, with_refresh_token)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ts_is_chronos_rfc3339_with_millis() {
        let cases = [
            "2026-12-03T07:36:02.123456789Z",
            "1970-01-01T00:00:00Z",
            "0001-02-03T04:05:06.007Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T12:00:00.5Z",
        ];
        for c in cases {
            let t: DateTime<Utc> = c.parse().unwrap();
            assert_eq!(
                ts(&t),
                t.to_rfc3339_opts(SecondsFormat::Millis, true),
                "{c}"
            );
        }
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_milli_opt(23, 59, 59, 1_500)
            .unwrap()
            .and_utc();
        assert_eq!(ts(&leap), leap.to_rfc3339_opts(SecondsFormat::Millis, true));
        for secs in [-62_198_755_200_i64, 253_402_300_800, -1] {
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            assert_eq!(
                ts(&t),
                t.to_rfc3339_opts(SecondsFormat::Millis, true),
                "{secs}"
            );
        }
    }

    #[test]
    fn refresh_token_key_names() {
        for k in [
            "refresh_token",
            "refreshToken",
            "Refresh-Token",
            "REFRESHTOKEN",
            "refresh__token",
        ] {
            assert!(is_refresh_token_key(k), "{k}");
        }
        for k in [
            "refresh_tokens",
            "refresh",
            "access_token",
            "",
            "xrefreshtoken",
            "refresh_toke",
        ] {
            assert!(!is_refresh_token_key(k), "{k}");
        }
    }

    #[test]
    fn strips_refresh_tokens_everywhere() {
        let mut v = json!({"refresh_token":"S1","raw":{"refresh_token":"S2","refreshToken":"S3","access_token":"a"},"list":[{"refresh-token":"S4"}]});
        strip_refresh_tokens(&mut v);
        let s = v.to_string();
        assert!(
            !s.contains("S1") && !s.contains("S2") && !s.contains("S3") && !s.contains("S4"),
            "{s}"
        );
        assert!(s.contains("access_token"));
    }
}
