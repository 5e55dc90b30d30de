//! `/connections` (and the deprecated `/connection` forms): list, fetch with fresh credentials,
//! import, patch, delete, metadata.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Tags;
use crate::sessions::EndUserInput;

/// The end user linked to a connection (through a connect session or an import).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndUser {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub organization: Option<Organization>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Organization {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// An entry of a connection's `errors`: its last refresh failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionErrorItem {
    /// `auth` (or `sync` in Nango).
    #[serde(rename = "type")]
    pub kind: String,
    pub log_id: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// An item of `GET /connections` (note `created`, not `created_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionListItem {
    pub id: i64,
    pub connection_id: String,
    pub provider_config_key: String,
    pub provider: String,
    pub created: String,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub errors: Vec<ConnectionErrorItem>,
    /// Deprecated in Nango, still sent.
    #[serde(default)]
    pub end_user: Option<EndUser>,
}

/// `GET /connections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionList {
    pub connections: Vec<ConnectionListItem>,
}

/// A connection with its credentials: `GET /connections/{id}` (fresh for at least the refresh
/// margin), `POST /connections` (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connection {
    pub id: i64,
    pub connection_id: String,
    pub provider_config_key: String,
    pub provider: String,
    #[serde(default)]
    pub errors: Vec<ConnectionErrorItem>,
    #[serde(default)]
    pub end_user: Option<EndUser>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub tags: Tags,
    pub connection_config: ConnectionConfig,
    #[serde(default)]
    pub webhook_url_override: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The time of this read, for `GET /connections/{id}`.
    #[serde(default)]
    pub last_fetched_at: Option<String>,
    /// grantd extension: the last successful refresh.
    #[serde(default)]
    pub last_refreshed_at: Option<String>,
    /// grantd extension: why the last refresh failed (`null` when it did not).
    #[serde(default)]
    pub auth_error: Option<AuthError>,
    /// Absent only inside the `payload.connection` of an `invalid_credentials` error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

/// A connection's `connection_config`: free-form (e.g. `tenant`, `tenantId`), plus the
/// SharePoint token grantd obtains for providers that ask for one.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionConfig {
    /// A token for the SharePoint host (providers with `sharepoint_token`), refreshed with the
    /// Graph token.
    #[serde(
        rename = "sharepointAccessToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sharepoint_access_token: Option<SharepointAccessToken>,
    /// Every other key.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `connection_config.sharepointAccessToken`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharepointAccessToken {
    pub access_token: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    pub token_type: String,
    #[serde(default)]
    pub scope: Option<String>,
    /// `https://<tenant>.sharepoint.com`.
    pub resource: String,
}

/// grantd extension: the classified cause of the last failed refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthError {
    /// `reconnect`, `misconfigured` or `transient`.
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    #[serde(default)]
    pub aadsts: Option<u32>,
    #[serde(default)]
    pub error: Option<String>,
    pub at: String,
}

/// A connection's credentials, by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum Credentials {
    /// Delegated OAuth 2 tokens.
    #[serde(rename = "OAUTH2")]
    OAuth2(OAuth2Credentials),
    /// An application-permission (client credentials) token.
    #[serde(rename = "OAUTH2_CC")]
    OAuth2Cc(OAuth2CcCredentials),
}

impl Credentials {
    /// The bearer token, whatever the type.
    pub fn access_token(&self) -> &str {
        match self {
            Credentials::OAuth2(c) => &c.access_token,
            Credentials::OAuth2Cc(c) => &c.token,
        }
    }

    pub fn expires_at(&self) -> Option<&str> {
        match self {
            Credentials::OAuth2(c) => c.expires_at.as_deref(),
            Credentials::OAuth2Cc(c) => c.expires_at.as_deref(),
        }
    }
}

/// `type: OAUTH2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuth2Credentials {
    pub access_token: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The token response as received (refresh tokens removed unless asked for).
    #[serde(default)]
    pub raw: Value,
    /// Only with `?refresh_token=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// `type: OAUTH2_CC`. The client secret is never returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuth2CcCredentials {
    pub token: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    pub client_id: String,
    #[serde(default)]
    pub raw: Value,
}

/// `GET /connections/{id}` query. The booleans also accept `1`/`0`, `yes`/`no`, `on`/`off`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct GetConnectionQuery {
    /// Required.
    #[serde(default)]
    pub provider_config_key: Option<String>,
    /// Refresh now, whatever the expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_refresh: Option<String>,
    /// Include refresh tokens (otherwise every key named like one is removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Accepted for @nangohq/node; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_github_app_jwt_token: Option<String>,
}

/// `?provider_config_key=…` (DELETE and PATCH `/connections/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ProviderConfigKeyQuery {
    /// Required.
    #[serde(default)]
    pub provider_config_key: Option<String>,
}

/// `PATCH /connections/{id}?provider_config_key=…`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PatchConnection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUserInput>,
    /// Replaces the tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// `""` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_override: Option<String>,
}

/// `POST /connections`: import a connection. `C` is the `credentials`: [`ImportCredentials`]
/// for a delegated integration; for an app-only one (`OAUTH2_CC`) `Option<ImportCcCredentials>`
/// (grantd obtains the token; give `connection_config.tenantId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportConnection<C = ImportCredentials> {
    pub provider_config_key: String,
    /// Default: a new UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_config: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUserInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    pub credentials: C,
}

/// The `credentials` of an OAUTH2 import.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportCredentials {
    /// `OAUTH2`.
    #[serde(rename = "type")]
    pub kind: String,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// ISO 8601 (or `YYYY-MM-DD HH:MM:SS`, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_override: Option<Value>,
    /// Stored as `credentials.raw` (default: these credentials as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

/// The optional `credentials` of an app-only (`OAUTH2_CC`) import.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportCcCredentials {
    /// `OAUTH2_CC`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Must be the integration's client id when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// One connection id or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ConnectionIds {
    One(String),
    Many(Vec<String>),
}

/// `POST` (replace) and `PATCH` (shallow merge) `/connections/metadata`; the answer echoes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MetadataRequest {
    pub connection_id: ConnectionIds,
    pub provider_config_key: String,
    /// An object.
    pub metadata: Value,
}

/// `GET /connections` query. `tags[<key>]=<value>` pairs (every one must match) are read from the
/// raw query string and are not part of this struct.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ListConnectionsQuery {
    /// Exact connection id.
    #[serde(
        rename = "connectionId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub connection_id: Option<String>,
    /// Case-insensitive substring of the connection id or the end user's name or email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(rename = "endUserId", default, skip_serializing_if = "Option::is_none")]
    pub end_user_id: Option<String>,
    #[serde(
        rename = "endUserOrganizationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub end_user_organization_id: Option<String>,
    /// Comma-separated integration keys.
    #[serde(
        rename = "integrationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub integration_id: Option<String>,
    /// 1–10000 (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Offset = page × limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
}
