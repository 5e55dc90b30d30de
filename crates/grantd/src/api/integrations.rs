//! `/integrations` and `/providers`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use grantd_api as wire;

use super::{ApiError, JsonBody, Query, SecretKey, render};
use crate::connections::{Error as CoreError, StoreError};
use crate::edge::{AppState, Caller, SecretOrSession};
use crate::model::{ClientSecret, NewIntegration, ProviderConfigKey};

/// Comma-separated scopes of `[0-9A-Za-z:/_.*-]`.
fn parse_scopes(s: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(s) = s else { return Ok(vec![]) };
    let mut out = Vec::new();
    for scope in s.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !scope
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":/_.*-".contains(c))
        {
            return Err(ApiError::validation(
                "invalid_body",
                &["credentials", "scopes"],
                format!("Invalid scope {scope:?}: scopes are comma separated"),
            ));
        }
        out.push(scope.to_owned());
    }
    Ok(out)
}

fn parse_key(s: &str, path: &'static str) -> Result<ProviderConfigKey, ApiError> {
    ProviderConfigKey::parse(s).map_err(|e| {
        ApiError::validation("invalid_body", &[path], format!("Invalid unique_key: {e}"))
    })
}

fn path_key(s: &str) -> Result<ProviderConfigKey, ApiError> {
    ProviderConfigKey::parse(s).map_err(|e| {
        ApiError::validation(
            "invalid_uri_params",
            &["uniqueKey"],
            format!("Invalid integration key: {e}"),
        )
    })
}

/// `GET /integrations`: the secret key, or a connect session token (which sees only its allowed
/// integrations).
pub async fn list(
    State(st): State<AppState>,
    parts: Parts,
) -> Result<Json<wire::Data<Vec<wire::Integration>>>, ApiError> {
    let token = super::bearer(&parts)?;
    super::no_query(&parts)?;
    let allowed: Option<Vec<String>> = if st.core.config.secret_key.ct_eq(&token) {
        None
    } else if token.starts_with(crate::connections::sessions::TOKEN_PREFIX) {
        if !crate::connections::sessions::is_well_formed(&token) {
            return Err(ApiError::auth(
                "invalid_connect_session_token_format",
                "The connect session token is malformed.",
            ));
        }
        let session = st.core.connect_session(&token).await?.ok_or_else(|| {
            ApiError::auth(
                "unknown_connect_session_token",
                "The connect session token is unknown or expired.",
            )
        })?;
        Some(session.allowed_integrations.unwrap_or_default()).filter(|v| !v.is_empty())
    } else {
        return Err(super::wrong_secret_key(&token));
    };
    let now = st.core.clock.now();
    if let Err(e) = st.core.check_credential_expiry(now).await {
        tracing::warn!(error = %crate::edge::error_chain(&e), "credential expiry check failed");
    }
    let all = st.core.list_integrations().await?;
    let public = st.core.config.public_url.as_str();
    let data: Vec<wire::Integration> = all
        .iter()
        .filter(|i| {
            allowed
                .as_ref()
                .is_none_or(|a| a.iter().any(|k| k == i.unique_key.as_str()))
        })
        .map(|i| {
            let mut v = render::integration(i, public, false);
            super::app_only::decorate_integration(&mut v, i, now);
            v
        })
        .collect();
    Ok(Json(wire::Data { data }))
}

pub async fn create(
    State(st): State<AppState>,
    _: SecretKey,
    JsonBody(b): JsonBody<wire::CreateIntegration>,
) -> Result<Json<wire::Data<wire::Integration>>, ApiError> {
    let unique_key = parse_key(&b.unique_key, "unique_key")?;
    if st.core.catalog.get(&b.provider).is_none() {
        return Err(ApiError::validation(
            "invalid_body",
            &["provider"],
            "Invalid provider",
        ));
    }
    let creds = b.credentials.ok_or_else(|| {
        ApiError::validation("invalid_body", &["credentials"], "Missing credentials")
    })?;
    let provider = st.core.catalog.get(&b.provider).expect("checked above");
    let app_credential = super::app_only::check_credentials(&creds, provider)?;
    if let Some(d) = &b.display_name {
        if d.is_empty() || d.len() > 255 {
            return Err(ApiError::validation(
                "invalid_body",
                &["display_name"],
                "display_name must be 1-255 characters",
            ));
        }
    }
    let mut integration_config = b.integration_config.unwrap_or_default();
    integration_config.extend(b.custom.unwrap_or_default());
    check_user_agent(&integration_config)?;
    let created = st
        .core
        .create_integration(
            NewIntegration {
                unique_key,
                provider: b.provider,
                display_name: b.display_name,
                client_id: creds.client_id,
                client_secret: ClientSecret::new(creds.client_secret.unwrap_or_default()),
                scopes: parse_scopes(creds.scopes.as_deref())?,
                forward_webhooks: b.forward_webhooks.unwrap_or(true),
                integration_config,
            },
            app_credential,
        )
        .await
        .map_err(|e| match e {
            CoreError::Store(StoreError::Conflict(_)) => ApiError::validation(
                "invalid_body",
                &["uniqueKey"],
                "An integration with this unique_key already exists",
            ),
            other => other.into(),
        })?;
    tracing::info!(integration.key = %created.unique_key, "integration {} created", created.unique_key);
    let mut v = render::integration(&created, st.core.config.public_url.as_str(), false);
    super::app_only::decorate_integration(&mut v, &created, st.core.clock.now());
    Ok(Json(wire::Data { data: v }))
}

/// `include=webhook|credentials`, one value, repeated, or comma-separated.
fn includes(parts: &Parts) -> Result<Vec<String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::validation("invalid_query_params", &[], e.to_string()))?;
    let mut out = Vec::new();
    for (k, v) in pairs {
        if k != "include" && k != "include[]" {
            return Err(ApiError::validation(
                "invalid_query_params",
                &[k.as_str()],
                format!("Unknown query parameter {k}"),
            ));
        }
        for v in v.split(',').filter(|s| !s.is_empty()) {
            if v != "webhook" && v != "credentials" {
                return Err(ApiError::validation(
                    "invalid_query_params",
                    &["include"],
                    format!("include must be webhook or credentials, not {v:?}"),
                ));
            }
            out.push(v.to_owned());
        }
    }
    Ok(out)
}

pub async fn show(
    State(st): State<AppState>,
    SecretOrSession(caller): SecretOrSession,
    Path(key): Path<String>,
    parts: Parts,
) -> Result<Json<wire::Data<wire::Integration>>, ApiError> {
    let include = includes(&parts)?;
    if caller == Caller::Session && !include.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "include needs the secret key; a connect session token reads the integration only",
        ));
    }
    let key = path_key(&key)?;
    let i = st
        .core
        .get_integration(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Integration \"{key}\" does not exist")))?;
    let mut v = render::integration(
        &i,
        st.core.config.public_url.as_str(),
        include.iter().any(|s| s == "credentials"),
    );
    if include.iter().any(|s| s == "webhook") {
        v.webhook_url = Some(None);
    }
    super::app_only::decorate_integration(&mut v, &i, st.core.clock.now());
    Ok(Json(wire::Data { data: v }))
}

pub async fn update(
    State(st): State<AppState>,
    _: SecretKey,
    Path(key): Path<String>,
    JsonBody(b): JsonBody<wire::UpdateIntegration>,
) -> Result<Json<wire::Data<wire::Integration>>, ApiError> {
    let key = path_key(&key)?;
    let cur = st
        .core
        .get_integration(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Integration \"{key}\" does not exist")))?;
    let mut new = NewIntegration {
        unique_key: match &b.unique_key {
            Some(k) => parse_key(k, "unique_key")?,
            None => cur.unique_key.clone(),
        },
        provider: cur.provider.clone(),
        display_name: b.display_name.or(cur.display_name.clone()),
        client_id: cur.client_id.clone(),
        client_secret: cur.client_secret.clone(),
        scopes: cur.scopes.clone(),
        forward_webhooks: b.forward_webhooks.unwrap_or(cur.forward_webhooks),
        integration_config: cur.integration_config.clone(),
    };
    let mut app_credential = None;
    if let Some(c) = b.credentials {
        let provider = st.core.catalog.get(&cur.provider).ok_or_else(|| {
            ApiError::validation("invalid_body", &["provider"], "Invalid provider")
        })?;
        app_credential = Some(super::app_only::check_credentials(&c, provider)?);
        new.client_id = c.client_id;
        new.client_secret = ClientSecret::new(c.client_secret.unwrap_or_default());
        new.scopes = parse_scopes(c.scopes.as_deref())?;
    }
    if let Some(ic) = b.integration_config {
        new.integration_config = ic;
    }
    if let Some(c) = b.custom {
        new.integration_config.extend(c);
    }
    check_user_agent(&new.integration_config)?;
    let updated = st
        .core
        .update_integration(&key, new, app_credential)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Integration \"{key}\" does not exist")))?;
    let mut v = render::integration(&updated, st.core.config.public_url.as_str(), false);
    super::app_only::decorate_integration(&mut v, &updated, st.core.clock.now());
    Ok(Json(wire::Data { data: v }))
}

pub async fn delete(
    State(st): State<AppState>,
    _: SecretKey,
    Path(key): Path<String>,
) -> Result<Json<wire::Success>, ApiError> {
    let key = path_key(&key)?;
    if !st.core.delete_integration(&key).await? {
        return Err(ApiError::not_found("Integration does not exist"));
    }
    tracing::info!(integration.key = %key, "integration {key} deleted");
    Ok(Json(wire::Success::TRUE))
}

pub async fn providers(
    State(st): State<AppState>,
    _: SecretOrSession,
    Query(q): Query<wire::ProvidersQuery>,
) -> Json<wire::Data<Vec<wire::Provider>>> {
    let search = q.search.map(|s| s.to_ascii_lowercase());
    let cfg = &st.core.config;
    let data: Vec<wire::Provider> = st
        .core
        .catalog
        .all()
        .filter(|p| {
            search
                .as_ref()
                .is_none_or(|s| p.name.to_ascii_lowercase().contains(s))
        })
        .map(|p| render::provider(p, cfg.public_url.as_str(), &cfg.callback_url()))
        .collect();
    Json(wire::Data { data })
}

pub async fn provider(
    State(st): State<AppState>,
    _: SecretKey,
    Path(name): Path<String>,
) -> Result<Json<wire::Data<wire::Provider>>, ApiError> {
    let p = st
        .core
        .catalog
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("Unknown provider {name}")))?;
    let cfg = &st.core.config;
    Ok(Json(wire::Data {
        data: render::provider(p, cfg.public_url.as_str(), &cfg.callback_url()),
    }))
}

/// `integration_config.user_agent`, Microsoft's recommended traffic decoration
/// (`ISV|Company|App/Version`), sent as `User-Agent` on Graph calls: a visible-ASCII header value.
fn check_user_agent(config: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    match config.get(crate::connections::throttle::USER_AGENT_KEY) {
        Some(ua) if !crate::connections::throttle::valid_user_agent(ua) => {
            Err(ApiError::validation(
                "invalid_body",
                &[
                    "integration_config",
                    crate::connections::throttle::USER_AGENT_KEY,
                ],
                "user_agent must be 1-256 visible ASCII characters, e.g. ISV|Contoso|FileSync/1.2",
            ))
        }
        _ => Ok(()),
    }
}
