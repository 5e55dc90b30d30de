//! `/integrations` and `/providers`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An integration (Nango: provider config): an app's OAuth client for one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Integration {
    /// The integration key (provider config key).
    pub unique_key: String,
    /// The catalog name, e.g. `one-drive`.
    pub provider: String,
    /// As given at creation, `null` when none was.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `<public url>/images/template-logos/<provider>.svg`.
    pub logo: String,
    pub forward_webhooks: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Only with `?include=webhook` (always `null`: grantd routes no incoming webhooks).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::double_option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub webhook_url: Option<Option<String>>,
    /// Only with `?include=credentials` (secret key only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<IntegrationCredentials>,
    /// grantd extension: when the client secret or certificate expires (`null`: not known).
    #[serde(default)]
    pub credentials_expiry: Option<CredentialsExpiry>,
}

/// An integration's credentials as `?include=credentials` shows them. Never the private key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntegrationCredentials {
    /// `OAUTH2`.
    #[serde(rename = "type")]
    pub kind: String,
    pub client_id: String,
    pub client_secret: String,
    /// Comma-separated.
    pub scopes: String,
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// grantd extension: the PEM certificate, with certificate credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// grantd extension: `PS256` or `RS256`, with certificate credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion_alg: Option<String>,
    /// grantd extension: the certificate's `notAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_expires_at: Option<String>,
    /// grantd extension: the secret's expiry, when it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<String>,
}

/// grantd extension: the nearest expiry of the integration's client secret or certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CredentialsExpiry {
    pub expires_at: String,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// `ok`, `expiring` or `expired`.
    pub state: String,
    /// `client_secret` or `client_certificate`.
    pub credential: String,
}

/// `POST /integrations`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    /// A catalog name (`GET /providers`).
    pub provider: String,
    /// `^[a-zA-Z0-9~:.@ _-]+$`, at most 255.
    pub unique_key: String,
    /// 1–255 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_webhooks: Option<bool>,
    /// Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<IntegrationCredentialsInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_config: Option<BTreeMap<String, String>>,
    /// Merged into `integration_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<BTreeMap<String, String>>,
}

/// `PATCH /integrations/{key}`: every field optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateIntegration {
    /// Renames the integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_webhooks: Option<bool>,
    /// Replaces client id, secret and scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<IntegrationCredentialsInput>,
    /// Replaces the integration config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_config: Option<BTreeMap<String, String>>,
    /// Merged into the integration config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<BTreeMap<String, String>>,
}

/// The `credentials` of an integration create or update.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IntegrationCredentialsInput {
    /// The provider's auth mode: `OAUTH2` or `OAUTH2_CC`.
    #[serde(rename = "type")]
    pub kind: String,
    /// 1–255 characters.
    pub client_id: String,
    /// Optional when a certificate is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Comma-separated scopes of `[0-9A-Za-z:/_.*-]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// grantd extension: a PEM certificate registered on the app; with `private_key`, the client
    /// authenticates with signed assertions instead of the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// grantd extension: the certificate's PEM private key (encrypted at rest, never returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// grantd extension: `PS256` (default) or `RS256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion_alg: Option<String>,
    /// grantd extension: when the client secret expires (ISO 8601), for expiry warnings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<String>,
}

/// A catalog entry (`GET /providers`, `GET /providers/{provider}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provider {
    /// The catalog key, e.g. `one-drive`.
    pub name: String,
    pub display_name: String,
    /// `OAUTH2` (delegated) or `OAUTH2_CC` (application permissions).
    pub auth_mode: String,
    #[serde(default)]
    pub categories: Vec<String>,
    /// The default authority segment (`common`, `organizations`, a tenant, or a placeholder).
    #[serde(default)]
    pub authority: Option<String>,
    pub authorization_url: String,
    pub token_url: String,
    #[serde(default)]
    pub default_scopes: Vec<String>,
    pub scope_separator: String,
    pub proxy_base_url: String,
    /// Whether connections also get a SharePoint-audience token
    /// (`connection_config.sharepointAccessToken`).
    #[serde(default)]
    pub sharepoint_token: bool,
    #[serde(default)]
    pub account_types: Option<String>,
    #[serde(default)]
    pub docs: Option<String>,
    #[serde(default)]
    pub disable_pkce: bool,
    pub logo_url: String,
    pub setup: ProviderSetup,
}

/// What to register on the provider's side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderSetup {
    /// The redirect URI to register on the app.
    pub redirect_uri: String,
    #[serde(default)]
    pub account_types: Option<String>,
}

/// `GET /integrations/{key}?include=…`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct IntegrationQuery {
    /// `webhook`, `credentials`, or both comma-separated (repeatable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,
}

/// `GET /providers?search=…`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ProvidersQuery {
    /// A case-insensitive substring of the provider name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
}
