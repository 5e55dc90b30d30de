//! `/connect/sessions` (secret key) and `/connect/session` (connect session token).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Tags;
use crate::connections::EndUser;

/// The end user a connect session (or an imported connection) is for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EndUserInput {
    /// Your id for the user: 1–255 characters.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// The end user's organization.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrganizationInput {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Per-integration defaults of a connect session (`integrations_config_defaults.<key>`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfigDefaults {
    /// Space- or comma-separated scopes requested on top of the integration's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_scopes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_params: Option<BTreeMap<String, String>>,
    /// Starting `connection_config` of the new connection (e.g. `tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_config: Option<serde_json::Map<String, Value>>,
}

/// Per-integration overrides of the Connect UI (`overrides.<key>`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConnectOverrides {
    /// An http(s) URL the Connect UI links as the integration's docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs_connect: Option<String>,
}

/// `POST /connect/sessions`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateConnectSession {
    /// Required unless top-level `tags` are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUserInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<OrganizationInput>,
    /// Integration keys the session may connect (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_integrations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrations_config_defaults: Option<BTreeMap<String, IntegrationConfigDefaults>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<BTreeMap<String, ConnectOverrides>>,
    /// Webhooks of the connection this session creates go only here (`""`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `POST /connect/sessions/reconnect`: a session bound to an existing connection.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReconnectSession {
    pub connection_id: String,
    /// The connection's integration key.
    pub integration_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUserInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<OrganizationInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrations_config_defaults: Option<BTreeMap<String, IntegrationConfigDefaults>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<BTreeMap<String, ConnectOverrides>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// The `data` of a created (or reconnect) session: 201.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectSessionCreated {
    /// `nango_connect_session_` + 64 hex; valid 30 minutes, reusable until then.
    pub token: String,
    /// The hosted Connect UI for this session.
    pub connect_link: String,
    pub expires_at: String,
}

/// The `data` of `GET /connect/session` (what the Connect UI reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectSessionInfo {
    #[serde(rename = "endUser")]
    pub end_user: Option<EndUser>,
    #[serde(rename = "connectUISettings")]
    pub connect_ui_settings: ConnectUiSettings,
    #[serde(default)]
    pub allowed_integrations: Option<Vec<String>>,
    #[serde(default)]
    pub integrations_config_defaults: Value,
    /// Present (`true`) for a reconnect session.
    #[serde(
        rename = "isReconnecting",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub is_reconnecting: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectUiSettings {
    pub theme: ConnectUiThemes,
    /// `system`, `light` or `dark`.
    #[serde(rename = "defaultTheme")]
    pub default_theme: String,
    #[serde(rename = "showWatermark")]
    pub show_watermark: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectUiThemes {
    pub light: ConnectUiTheme,
    pub dark: ConnectUiTheme,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectUiTheme {
    /// A CSS colour.
    pub primary: String,
}
