//! `/connect/sessions` (secret key) and `/connect/session` (session token).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use grantd_api as wire;
use serde_json::Value;

use super::{ApiError, JsonBody, SecretKey, render};
use crate::connections::sessions::SessionRequest;
use crate::edge::AppState;
use crate::model::{ConnectionId, EndUser, Organization, ProviderConfigKey, Tags};

/// Checks tags as Nango does and lowercases their keys, as Nango stores them (values are kept as
/// given); two keys that differ only by case are refused.
pub(super) fn validate_tags(tags: &Tags, path: &'static str) -> Result<Tags, ApiError> {
    if tags.len() > 10 {
        return Err(ApiError::validation(
            "invalid_body",
            &[path],
            "At most 10 tags",
        ));
    }
    let mut out = Tags::new();
    for (k, v) in tags {
        let ok_key = k.len() <= 64
            && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
        if !ok_key {
            return Err(ApiError::validation(
                "invalid_body",
                &[path, k],
                "Tag keys start with a letter and use letters, digits, _ - . / (at most 64)",
            ));
        }
        if v.is_empty() || v.len() > 255 {
            return Err(ApiError::validation(
                "invalid_body",
                &[path, k],
                "Tag values must be 1-255 characters",
            ));
        }
        if out.insert(k.to_ascii_lowercase(), v.clone()).is_some() {
            return Err(ApiError::validation(
                "invalid_body",
                &[path, k],
                "Tag keys are case-insensitive: two keys differ only by case",
            ));
        }
    }
    Ok(out)
}

/// Optional tags through [`validate_tags`].
pub(super) fn tags_opt(t: Option<Tags>, path: &'static str) -> Result<Option<Tags>, ApiError> {
    t.as_ref().map(|t| validate_tags(t, path)).transpose()
}

fn end_user(b: Option<wire::EndUserInput>) -> Result<Option<EndUser>, ApiError> {
    let Some(b) = b else { return Ok(None) };
    if b.id.is_empty() || b.id.len() > 255 {
        return Err(ApiError::validation(
            "invalid_body",
            &["end_user", "id"],
            "end_user.id must be 1-255 characters",
        ));
    }
    if let Some(e) = &b.email {
        if e.len() < 5 || !e.contains('@') {
            return Err(ApiError::validation(
                "invalid_body",
                &["end_user", "email"],
                "Invalid email",
            ));
        }
    }
    let tags = b
        .tags
        .as_ref()
        .map(|t| validate_tags(t, "end_user"))
        .transpose()?;
    Ok(Some(EndUser {
        id: b.id,
        email: b.email,
        display_name: b.display_name,
        tags,
        organization: None,
    }))
}

fn organization(b: Option<wire::OrganizationInput>) -> Option<Organization> {
    b.map(|o| Organization {
        id: o.id,
        display_name: o.display_name,
    })
}

/// Nango's `overrides`: per integration, only `docs_connect` (an http(s) URL the Connect UI
/// links as the integration's docs). Returned as stored (`Null` when absent or empty).
fn overrides_value(o: Option<BTreeMap<String, wire::ConnectOverrides>>) -> Result<Value, ApiError> {
    let Some(map) = o.filter(|m| !m.is_empty()) else {
        return Ok(Value::Null);
    };
    for (key, entry) in &map {
        if ProviderConfigKey::parse(key).is_err() {
            return Err(ApiError::validation(
                "invalid_body",
                &["overrides", key],
                "Not an integration key",
            ));
        }
        if let Some(u) = &entry.docs_connect {
            let ok = url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(ApiError::validation(
                    "invalid_body",
                    &["overrides", key, "docs_connect"],
                    "Must be an http(s) URL",
                ));
            }
        }
    }
    Ok(serde_json::to_value(map).unwrap_or(Value::Null))
}

fn defaults_value(
    d: Option<BTreeMap<String, wire::IntegrationConfigDefaults>>,
) -> Result<Value, ApiError> {
    Ok(serde_json::to_value(d.unwrap_or_default()).unwrap_or(Value::Null))
}

async fn respond(
    st: &AppState,
    req: SessionRequest,
) -> Result<(StatusCode, Json<wire::Data<wire::ConnectSessionCreated>>), ApiError> {
    let allowed = req.allowed_integrations.clone().unwrap_or_default();
    let (token, session) = st
        .core
        .create_connect_session(req)
        .await
        .map_err(|e| match e {
            crate::connections::Error::UnknownIntegration(k) => {
                // Nango's path names the offending entry: ["allowed_integrations", i].
                let (field, index) = match allowed.iter().position(|a| *a == k) {
                    Some(i) => ("allowed_integrations", i.to_string()),
                    None => ("integrations_config_defaults", k.clone()),
                };
                ApiError::validation(
                    "invalid_body",
                    &[field, index.as_str()],
                    "Integration does not exist",
                )
            }
            crate::connections::Error::UnknownConnection => ApiError::validation(
                "invalid_body",
                &["connection_id"],
                "The connection id or integration id does not exist",
            ),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(wire::Data {
            data: wire::ConnectSessionCreated {
                token: token.expose_secret().to_owned(),
                connect_link: st.core.connect_link(&token),
                expires_at: render::ts(&session.expires_at),
            },
        }),
    ))
}

pub async fn create(
    State(st): State<AppState>,
    _: SecretKey,
    JsonBody(b): JsonBody<wire::CreateConnectSession>,
) -> Result<(StatusCode, Json<wire::Data<wire::ConnectSessionCreated>>), ApiError> {
    let overrides = overrides_value(b.overrides)?;
    if b.end_user.is_none() && b.tags.is_none() {
        return Err(ApiError::validation(
            "invalid_body",
            &["end_user"],
            "end_user is required (or top-level tags)",
        ));
    }
    let req = SessionRequest {
        end_user: end_user(b.end_user)?,
        organization: organization(b.organization),
        allowed_integrations: b.allowed_integrations,
        integrations_config_defaults: defaults_value(b.integrations_config_defaults)?,
        tags: b
            .tags
            .as_ref()
            .map(|t| validate_tags(t, "tags"))
            .transpose()?
            .unwrap_or_default(),
        webhook_url_override: crate::edge::extract::webhook_url_override(b.webhook_url_override)?,
        reconnect: None,
        overrides,
    };
    respond(&st, req).await
}

pub async fn reconnect(
    State(st): State<AppState>,
    _: SecretKey,
    JsonBody(b): JsonBody<wire::ReconnectSession>,
) -> Result<(StatusCode, Json<wire::Data<wire::ConnectSessionCreated>>), ApiError> {
    let overrides = overrides_value(b.overrides)?;
    let bad = || {
        ApiError::validation(
            "invalid_body",
            &["connection_id"],
            "The connection id or integration id does not exist",
        )
    };
    let key = ProviderConfigKey::parse(&b.integration_id).map_err(|_| bad())?;
    let cid = ConnectionId::parse(&b.connection_id).map_err(|_| bad())?;
    let existing = st.core.get_connection(&key, &cid).await?.ok_or_else(bad)?;
    let req = SessionRequest {
        end_user: end_user(b.end_user)?.or(existing.end_user.clone()),
        organization: organization(b.organization),
        allowed_integrations: Some(vec![key.to_string()]),
        integrations_config_defaults: defaults_value(b.integrations_config_defaults)?,
        tags: b
            .tags
            .as_ref()
            .map(|t| validate_tags(t, "tags"))
            .transpose()?
            .unwrap_or_else(|| existing.tags.clone()),
        webhook_url_override: crate::edge::extract::webhook_url_override(b.webhook_url_override)?
            .or(existing.webhook_url_override.clone()),
        reconnect: Some((key, cid)),
        overrides,
    };
    respond(&st, req).await
}

async fn session_from(
    st: &AppState,
    parts: &Parts,
) -> Result<(String, crate::model::ConnectSession), ApiError> {
    let token = super::bearer(parts)?;
    if !crate::connections::sessions::is_well_formed(&token) {
        return Err(ApiError::auth(
            "invalid_connect_session_token_format",
            "The connect session token is malformed.",
        ));
    }
    let s = st.core.connect_session(&token).await?.ok_or_else(|| {
        ApiError::auth(
            "unknown_connect_session_token",
            "The connect session token is unknown or expired.",
        )
    })?;
    Ok((token, s))
}

pub async fn show(
    State(st): State<AppState>,
    parts: Parts,
) -> Result<Json<wire::Data<wire::ConnectSessionInfo>>, ApiError> {
    let (_, s) = session_from(&st, &parts).await?;
    super::no_query(&parts)?;
    let theme = |primary: &str| wire::ConnectUiTheme {
        primary: primary.to_owned(),
    };
    Ok(Json(wire::Data {
        data: wire::ConnectSessionInfo {
            end_user: render::end_user(&s.end_user),
            connect_ui_settings: wire::ConnectUiSettings {
                theme: wire::ConnectUiThemes {
                    light: theme("#0b5cad"),
                    dark: theme("#5ea7ff"),
                },
                default_theme: "system".into(),
                show_watermark: false,
            },
            allowed_integrations: s.allowed_integrations,
            integrations_config_defaults: s.integrations_config_defaults,
            is_reconnecting: s.reconnect.is_some().then_some(true),
            overrides: Some(s.overrides).filter(|o| !o.is_null()),
        },
    }))
}

pub async fn delete(State(st): State<AppState>, parts: Parts) -> Result<StatusCode, ApiError> {
    let (token, _) = session_from(&st, &parts).await?;
    super::no_query(&parts)?;
    st.core.delete_connect_session(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}
