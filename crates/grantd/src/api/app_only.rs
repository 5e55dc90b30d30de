//! API pieces for application permissions and app credentials: validating an integration's
//! credentials (`OAUTH2` / `OAUTH2_CC`, client secret or certificate + private key, the secret's
//! expiry), the `credentials_expiry` field of integrations, Nango's `OAUTH2_CC` credential shape
//! of app-only connections, and `POST /connections` for a tenant that consented out of band.

use axum::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use grantd_api as wire;
use serde_json::Value;

use super::{ApiError, render};
use crate::catalog::Provider;
use crate::connections::app_only::NewAppOnlyConnection;
use crate::connections::credential_expiry;
use crate::edge::AppState;
use crate::model::{
    AppCredential, AssertionAlg, ConfigKey, Connection, ConnectionId, EndUser, Integration,
    PrivateKeyPem, ProviderConfigKey,
};
use crate::oauth::assertion;

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::validation("invalid_body", &["credentials", field], message)
}

fn parse_time(s: &str, field: &'static str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        })
        .map_err(|_| invalid(field, format!("{field} must be an ISO 8601 date")))
}

/// Checks an integration's `credentials` for `provider` and returns the app credential they
/// describe (certificate parsed and matched with its key; secret expiry).
pub fn check_credentials(
    c: &wire::IntegrationCredentialsInput,
    provider: &Provider,
) -> Result<AppCredential, ApiError> {
    let accepted: &[&str] = if provider.is_app_only() {
        &["OAUTH2_CC", "OAUTH2"]
    } else {
        &["OAUTH2"]
    };
    if !accepted.contains(&c.kind.as_str()) {
        return Err(invalid(
            "type",
            format!(
                "Credential type {} is incompatible with the provider's auth mode {}",
                c.kind, provider.auth_mode
            ),
        ));
    }
    if c.client_id.is_empty() || c.client_id.len() > 255 {
        return Err(invalid("client_id", "client_id must be 1-255 characters"));
    }
    let secret = c.client_secret.as_deref().unwrap_or("");
    let certificate = match (&c.client_certificate, &c.private_key) {
        (Some(cert), Some(key)) => {
            if !provider.is_microsoft() {
                return Err(invalid(
                    "client_certificate",
                    "certificate credentials are supported for Microsoft providers only",
                ));
            }
            let alg = match c.client_assertion_alg.as_deref() {
                None => AssertionAlg::default(),
                Some(a) => AssertionAlg::parse(a).ok_or_else(|| {
                    invalid(
                        "client_assertion_alg",
                        "client_assertion_alg must be PS256 or RS256",
                    )
                })?,
            };
            let parsed = assertion::client_certificate(cert, PrivateKeyPem::new(key.clone()), alg)
                .map_err(|e| {
                    let field = match e {
                        assertion::Error::BadPrivateKey | assertion::Error::KeyMismatch => {
                            "private_key"
                        }
                        _ => "client_certificate",
                    };
                    invalid(field, e.to_string())
                })?;
            Some(parsed)
        }
        (Some(_), None) => {
            return Err(invalid(
                "private_key",
                "private_key (PEM) is required with client_certificate",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "client_certificate",
                "client_certificate (PEM) is required with private_key",
            ));
        }
        (None, None) => None,
    };
    if secret.is_empty() && certificate.is_none() {
        return Err(invalid(
            "client_secret",
            "client_secret must not be empty (or give client_certificate and private_key)",
        ));
    }
    if c.client_assertion_alg.is_some() && certificate.is_none() {
        return Err(invalid(
            "client_assertion_alg",
            "client_assertion_alg applies to certificate credentials only",
        ));
    }
    let secret_expires_at = c
        .client_secret_expires_at
        .as_deref()
        .map(|s| parse_time(s, "client_secret_expires_at"))
        .transpose()?;
    Ok(AppCredential {
        certificate,
        secret_expires_at,
        expiry_warned_days: None,
    })
}

/// Adds grantd's extensions to a rendered integration: `credentials_expiry` always; with
/// credentials, the certificate (public) and the secret's expiry — never the private key.
pub fn decorate_integration(v: &mut wire::Integration, i: &Integration, now: DateTime<Utc>) {
    v.credentials_expiry = credential_expiry::expiry(i, now).map(|e| wire::CredentialsExpiry {
        expires_at: render::ts(&e.expires_at),
        days_left: e.days_left,
        state: e.state.as_str().to_owned(),
        credential: e.credential.to_owned(),
    });
    if let Some(creds) = v.credentials.as_mut() {
        let a = &i.app_credential;
        if let Some(c) = &a.certificate {
            creds.client_certificate = Some(c.certificate_pem.clone());
            creds.client_assertion_alg = Some(c.alg.as_str().to_owned());
            creds.client_certificate_expires_at = Some(render::ts(&c.not_after));
        }
        creds.client_secret_expires_at = a.secret_expires_at.as_ref().map(render::ts);
    }
}

/// Nango's `OAUTH2_CC` credentials for an app-only connection. The client secret is not exposed.
pub fn cc_credentials(c: &Connection, client_id: &str) -> wire::Credentials {
    wire::Credentials::OAuth2Cc(wire::OAuth2CcCredentials {
        token: c.credentials.access_token.expose_secret().to_owned(),
        expires_at: c.credentials.expires_at.as_ref().map(render::ts),
        client_id: client_id.to_owned(),
        raw: c.credentials.raw.clone(),
    })
}

/// `POST /connections` for an app-only integration: `connection_config.tenantId` and no token.
type ImportBody = wire::ImportConnection<Option<wire::ImportCcCredentials>>;

/// True when a `POST /connections` body is for an app-only connection (grantd obtains the token).
pub fn is_app_only_import(body: &Value) -> bool {
    match body.get("credentials") {
        None => true,
        Some(c) => c.get("type").and_then(Value::as_str) == Some("OAUTH2_CC"),
    }
}

pub async fn import(
    st: &AppState,
    body: Value,
) -> Result<(StatusCode, Json<wire::Connection>), ApiError> {
    let mut b: ImportBody = serde_json::from_value(body)
        .map_err(|e| ApiError::validation("invalid_body", &[], e.to_string()))?;
    b.tags = super::sessions::tags_opt(b.tags, "tags")?;
    if let Some(u) = b.end_user.as_mut() {
        u.tags = super::sessions::tags_opt(u.tags.take(), "end_user")?;
    }
    let key = ProviderConfigKey::parse(&b.provider_config_key).map_err(|e| {
        ApiError::validation("invalid_body", &["provider_config_key"], e.to_string())
    })?;
    let (integration, provider) = st.core.integration(&key).await.map_err(|e| match e {
        crate::connections::Error::UnknownIntegration(_) => {
            ApiError::not_found("Integration does not exist")
        }
        other => other.into(),
    })?;
    if !provider.is_app_only() {
        return Err(ApiError::validation(
            "invalid_body",
            &["credentials"],
            "credentials are required: this integration uses delegated permissions (OAUTH2)",
        ));
    }
    if let Some(c) = &b.credentials {
        if c.kind != "OAUTH2_CC" {
            return Err(ApiError::validation(
                "invalid_body",
                &["credentials", "type"],
                "credentials.type must be OAUTH2_CC for this provider",
            ));
        }
        if c.client_id
            .as_ref()
            .is_some_and(|id| *id != integration.client_id)
        {
            return Err(ApiError::validation(
                "invalid_body",
                &["credentials", "client_id"],
                "credentials.client_id differs from the integration's client id",
            ));
        }
    }
    let mut config = b.connection_config.unwrap_or_default();
    let tenant = config
        .remove(ConfigKey::TenantId.as_str())
        .and_then(|v| v.as_str().map(str::to_owned))
        .filter(|t| crate::connections::app_only::valid_tenant(t))
        .ok_or_else(|| {
            ApiError::validation(
                "invalid_body",
                &["connection_config", ConfigKey::TenantId.as_str()],
                "connection_config.tenantId must be the customer's tenant id (a GUID) or verified domain",
            )
        })?;
    let connection_id = b
        .connection_id
        .map(|c| {
            ConnectionId::parse(&c).map_err(|e| {
                ApiError::validation("invalid_body", &["connection_id"], e.to_string())
            })
        })
        .transpose()?;
    let (conn, created) = st
        .core
        .create_app_only_connection(NewAppOnlyConnection {
            key,
            connection_id,
            tenant,
            connection_config: config,
            metadata: b.metadata,
            end_user: b.end_user.map(|u| EndUser {
                id: u.id,
                email: u.email,
                display_name: u.display_name,
                tags: u.tags,
                organization: None,
            }),
            tags: b.tags.unwrap_or_default(),
            webhook_url_override: crate::edge::extract::webhook_url_override(
                b.webhook_url_override,
            )?,
        })
        .await?;
    st.core.import_webhook(&conn, created).await;
    let mut v = render::connection(&conn, false, false);
    v.credentials = Some(cc_credentials(&conn, &integration.client_id));
    Ok((StatusCode::CREATED, Json(v)))
}
