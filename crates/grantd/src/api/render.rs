//! Wire shapes: integrations and connections rendered as Nango's SDKs read them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::catalog::Provider;
use crate::model::{ConfigKey, Connection, EndUser, Integration};

pub fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn integration(i: &Integration, public_url: &str, with_credentials: bool) -> Value {
    let mut v = json!({
        "unique_key": i.unique_key.as_str(),
        "provider": i.provider,
        "display_name": i.display_name,
        "logo": format!("{}/images/template-logos/{}.svg", public_url.trim_end_matches('/'), i.provider),
        "forward_webhooks": i.forward_webhooks,
        "created_at": ts(&i.created_at),
        "updated_at": ts(&i.updated_at),
    });
    if with_credentials {
        v["credentials"] = json!({
            "type": "OAUTH2",
            "client_id": i.client_id,
            "client_secret": i.client_secret.expose_secret(),
            "scopes": i.scopes.join(","),
            "webhook_secret": null,
        });
    }
    v
}

pub fn provider(p: &Provider, public_url: &str, callback_url: &str) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_else(|_| json!({}));
    v["logo_url"] = json!(format!(
        "{}/images/template-logos/{}.svg",
        public_url.trim_end_matches('/'),
        p.name
    ));
    v["setup"] = json!({ "redirect_uri": callback_url, "account_types": p.account_types });
    v
}

pub fn end_user(u: &Option<EndUser>) -> Value {
    match u {
        None => Value::Null,
        Some(u) => json!({
            "id": u.id,
            "display_name": u.display_name,
            "email": u.email,
            "tags": u.tags,
            "organization": u.organization.as_ref().map(|o| json!({"id": o.id, "display_name": o.display_name})),
        }),
    }
}

fn errors(c: &Connection) -> Value {
    match &c.auth_failure {
        Some(f) => {
            json!([{ "type": "auth", "log_id": format!("auth-{}", c.id), "message": f.description }])
        }
        None => json!([]),
    }
}

/// The list item of `GET /connections` (note `created`, not `created_at`).
pub fn connection_item(c: &Connection) -> Value {
    json!({
        "id": c.id,
        "connection_id": c.connection_id.as_str(),
        "provider_config_key": c.provider_config_key.as_str(),
        "provider": c.provider,
        "created": ts(&c.created_at),
        "metadata": c.metadata,
        "tags": c.tags,
        "errors": errors(c),
        "end_user": end_user(&c.end_user),
    })
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

/// The full connection of `GET /connections/{id}`.
pub fn connection(c: &Connection, with_refresh_token: bool, sharepoint_expected: bool) -> Value {
    let creds = &c.credentials;
    // Built by moving values into maps: `json!` would deep-copy every nested `Value` through
    // the serializer, which dominated the cost of `GET /connections/{id}`.
    let mut credentials = Map::new();
    credentials.insert("type".into(), "OAUTH2".into());
    credentials.insert(
        "access_token".into(),
        creds.access_token.expose_secret().into(),
    );
    credentials.insert(
        "expires_at".into(),
        creds.expires_at.as_ref().map(ts).into(),
    );
    credentials.insert("raw".into(), creds.raw.clone());
    if let Some(rt) = &creds.refresh_token {
        credentials.insert("refresh_token".into(), rt.expose_secret().into());
    }
    let mut credentials = Value::Object(credentials);
    let mut config: Map<String, Value> =
        c.connection_config.as_object().cloned().unwrap_or_default();
    match &creds.sharepoint {
        Some(sp) => {
            config.insert(
                ConfigKey::SharepointAccessToken.as_str().into(),
                json!({
                    "access_token": sp.access_token.expose_secret(),
                    "expires_at": sp.expires_at.as_ref().map(ts),
                    "token_type": sp.token_type,
                    "scope": sp.scope,
                    "resource": format!("https://{}", sp.host),
                }),
            );
        }
        None if sharepoint_expected
            && config
                .get(ConfigKey::SharepointTokenStatus.as_str())
                .and_then(Value::as_str)
                == Some("ok") =>
        {
            config.insert(
                ConfigKey::SharepointTokenStatus.as_str().into(),
                json!("unavailable: the SharePoint token could not be refreshed; reauthorize to obtain it"),
            );
        }
        None => {}
    }
    let mut config = Value::Object(config);
    if !with_refresh_token {
        strip_refresh_tokens(&mut credentials);
        strip_refresh_tokens(&mut config);
    }
    let mut out = Map::new();
    out.insert("id".into(), c.id.into());
    out.insert("connection_id".into(), c.connection_id.as_str().into());
    out.insert(
        "provider_config_key".into(),
        c.provider_config_key.as_str().into(),
    );
    out.insert("provider".into(), c.provider.as_str().into());
    out.insert("errors".into(), errors(c));
    out.insert("end_user".into(), end_user(&c.end_user));
    out.insert("metadata".into(), c.metadata.clone());
    out.insert(
        "tags".into(),
        Value::Object(
            c.tags
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect(),
        ),
    );
    out.insert("connection_config".into(), config);
    out.insert(
        "webhook_url_override".into(),
        c.webhook_url_override.as_deref().into(),
    );
    out.insert("created_at".into(), ts(&c.created_at).into());
    out.insert("updated_at".into(), ts(&c.updated_at).into());
    out.insert(
        "last_fetched_at".into(),
        c.last_fetched_at.as_ref().map(ts).into(),
    );
    out.insert(
        "last_refreshed_at".into(),
        c.last_refreshed_at.as_ref().map(ts).into(),
    );
    out.insert(
        "auth_error".into(),
        c.auth_failure
            .as_ref()
            .map(|f| {
                json!({
                    "type": f.kind, "description": f.description, "aadsts": f.aadsts, "error": f.error, "at": ts(&f.at),
                })
            })
            .into(),
    );
    out.insert("credentials".into(), credentials);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
