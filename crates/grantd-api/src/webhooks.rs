//! Webhooks grantd sends (nango-api.md §8): the bodies, and the signature headers.
//!
//! The body is compact JSON with keys sorted at every level. Verify it over the **exact bytes
//! received**: `X-Nango-Hmac-Sha256` = lowercase hex HMAC-SHA256(signing key, body);
//! the legacy `X-Nango-Signature` = lowercase hex SHA-256(signing key ‖ body).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Tags;
use crate::picker::PickedItem;
use crate::sync::SyncResult;

/// Header: lowercase hex of HMAC-SHA256(signing key, body).
pub const HMAC_HEADER: &str = "X-Nango-Hmac-Sha256";
/// Header (legacy): lowercase hex of SHA-256(signing key ‖ body).
pub const SIGNATURE_HEADER: &str = "X-Nango-Signature";

/// Any webhook grantd sends, by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum Webhook {
    /// A connection was created or overridden, or its refresh failed.
    #[serde(rename = "auth")]
    Auth(AuthWebhook),
    /// A sync committed a batch of records.
    #[serde(rename = "sync")]
    Sync(SyncWebhook),
    /// grantd extension: an integration's client secret or certificate expires soon.
    #[serde(rename = "credentials_expiry")]
    CredentialsExpiry(CredentialsExpiryWebhook),
    /// grantd extension: a user picked files in the hosted File Picker.
    #[serde(rename = "picker")]
    Picker(PickerWebhook),
}

/// `type: auth`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthWebhook {
    /// `nango`.
    pub from: String,
    #[serde(rename = "connectionId")]
    pub connection_id: String,
    #[serde(rename = "providerConfigKey")]
    pub provider_config_key: String,
    pub provider: String,
    /// `OAUTH2`.
    #[serde(rename = "authMode")]
    pub auth_mode: String,
    /// `prod`.
    pub environment: String,
    pub operation: AuthOperation,
    pub success: bool,
    /// Left out on a failed creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Only when the connection has an end user.
    #[serde(rename = "endUser", default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<WebhookEndUser>,
    /// Only when `success` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WebhookError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AuthOperation {
    Creation,
    Override,
    Refresh,
}

impl AuthOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOperation::Creation => "creation",
            AuthOperation::Override => "override",
            AuthOperation::Refresh => "refresh",
        }
    }
}

/// `endUser` of an auth webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEndUser {
    #[serde(rename = "endUserId")]
    pub end_user_id: String,
    #[serde(
        rename = "endUserEmail",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub end_user_email: Option<String>,
    #[serde(
        rename = "organizationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub tags: Tags,
}

/// `error` of a failed auth webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookError {
    /// e.g. `reconnect`, `transient`, `misconfigured`, `callback_err`.
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
}

/// `type: sync`: one committed batch; `GET /records?modified_after=<modifiedAfter>` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncWebhook {
    /// `nango`.
    pub from: String,
    #[serde(rename = "connectionId")]
    pub connection_id: String,
    #[serde(rename = "providerConfigKey")]
    pub provider_config_key: String,
    #[serde(rename = "syncName")]
    pub sync_name: String,
    /// `base`.
    #[serde(rename = "syncVariant")]
    pub sync_variant: String,
    pub model: String,
    /// `INITIAL` or `INCREMENTAL`.
    #[serde(rename = "syncType")]
    pub sync_type: String,
    pub success: bool,
    #[serde(
        rename = "modifiedAfter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub modified_after: Option<String>,
    #[serde(
        rename = "queryTimeStamp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub query_time_stamp: Option<String>,
    #[serde(
        rename = "responseResults",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_results: Option<SyncResult>,
    /// On failure (Nango's shape; grantd reports sync failures in `GET /sync/status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// `type: credentials_expiry` (grantd extension, `from: grantd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CredentialsExpiryWebhook {
    /// `grantd`.
    pub from: String,
    #[serde(rename = "providerConfigKey")]
    pub provider_config_key: String,
    pub provider: String,
    /// `secret` or `certificate`.
    pub credential: String,
    #[serde(rename = "expiresAt")]
    pub expires_at: String,
    #[serde(rename = "daysLeft")]
    pub days_left: i64,
    /// `ok`, `expiring` or `expired`.
    pub state: String,
}

/// `type: picker` (grantd extension, `from: grantd`): what a user picked in the hosted File
/// Picker, the same items the app's page receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PickerWebhook {
    /// `grantd`.
    pub from: String,
    /// `picked`.
    pub operation: String,
    pub success: bool,
    #[serde(rename = "connectionId")]
    pub connection_id: String,
    #[serde(rename = "providerConfigKey")]
    pub provider_config_key: String,
    pub items: Vec<PickedItem>,
    /// Whether the items were merged into the connection's metadata selection.
    #[serde(rename = "selectionSaved")]
    pub selection_saved: bool,
}
