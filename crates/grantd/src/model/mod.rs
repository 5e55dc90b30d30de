//! Plain domain data shared by every layer: integrations, connections, their credentials, connect
//! sessions and OAuth flow state. No I/O here.

pub mod app_credential;
pub mod ids;
pub mod picker;
pub mod secret;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use app_credential::{AppCredential, AssertionAlg, ClientCertificate};
pub use ids::{ConnectionId, ProviderConfigKey};
pub use picker::{PickerEntry, PickerMode, PickerOptions, PickerSession};
pub use secret::{
    AccessToken, ApiKey, AuthCode, ClientSecret, CodeVerifier, PrivateKeyPem, RefreshToken,
    SessionToken,
};

pub type Tags = BTreeMap<String, String>;

/// An app's OAuth client registration for one provider (Nango: "integration" / provider config).
#[derive(Debug, Clone)]
pub struct Integration {
    pub id: i64,
    pub unique_key: ProviderConfigKey,
    /// Catalog name, e.g. `one-drive`.
    pub provider: String,
    pub display_name: Option<String>,
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// Scopes as the app configured them (Nango stores them comma-separated).
    pub scopes: Vec<String>,
    pub forward_webhooks: bool,
    /// Provider-specific extras (`integration_config`).
    pub integration_config: BTreeMap<String, String>,
    /// The certificate credential and the recorded secret/certificate expiry (stored apart from
    /// the integration row; empty by default).
    pub app_credential: AppCredential,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Integration {
    /// The tenant the app pinned for this integration (`integration_config.tenant`), if any.
    pub fn pinned_tenant(&self) -> Option<&str> {
        self.integration_config
            .get(ConfigKey::Tenant.as_str())
            .map(String::as_str)
    }
}

#[cfg(test)]
impl Integration {
    /// A minimal integration for unit tests: `provider`, a client secret expiring at
    /// `secret_expires_at`, created and updated at `at`.
    pub(crate) fn for_tests(
        provider: &str,
        secret_expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Integration {
        Integration {
            id: 1,
            unique_key: ProviderConfigKey::parse("k").expect("valid key"),
            provider: provider.into(),
            display_name: None,
            client_id: "c".into(),
            client_secret: ClientSecret::new("s"),
            scopes: vec![],
            forward_webhooks: true,
            integration_config: Default::default(),
            app_credential: AppCredential {
                secret_expires_at,
                ..Default::default()
            },
            created_at: at,
            updated_at: at,
        }
    }
}

/// Fields to create an integration, or the new values when updating one.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub unique_key: ProviderConfigKey,
    pub provider: String,
    pub display_name: Option<String>,
    pub client_id: String,
    pub client_secret: ClientSecret,
    pub scopes: Vec<String>,
    pub forward_webhooks: bool,
    pub integration_config: BTreeMap<String, String>,
}

/// The end user a connection belongs to (Nango's EndUser).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndUser {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub organization: Option<Organization>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A token for a second resource (the SharePoint host) obtained with the connection's refresh
/// token, kept next to the Graph token and refreshed with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceToken {
    pub access_token: AccessToken,
    pub expires_at: Option<DateTime<Utc>>,
    pub token_type: String,
    pub scope: Option<String>,
    /// The resource host, e.g. `contoso.sharepoint.com`.
    pub host: String,
}

/// A connection's OAuth credentials. Encrypted as a whole at rest (`raw` holds tokens too).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub access_token: AccessToken,
    #[serde(default)]
    pub refresh_token: Option<RefreshToken>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The provider's token response as received.
    #[serde(default)]
    pub raw: Value,
    /// The SharePoint token (`connection_config.sharepointAccessToken` on the wire).
    #[serde(default)]
    pub sharepoint: Option<ResourceToken>,
}

/// What a failed token call means for the connection; recorded (and sent) as its lowercase name.
/// `microsoft::aadsts` classifies failures into it (as `Class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// The stored grant is dead or needs the user: send them through the connect flow again.
    Reconnect,
    /// The app registration or grantd's configuration is wrong: an operator must act.
    Misconfigured,
    /// Retry later with backoff; keep the grant.
    Transient,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Reconnect => "reconnect",
            FailureKind::Misconfigured => "misconfigured",
            FailureKind::Transient => "transient",
        }
    }
}

/// The `connection_config` keys grantd writes and reads (Nango's wire names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKey {
    /// The tenant id from the token (`tid`), or the consenting tenant for app-only.
    TenantId,
    /// The user's object id (`oid`).
    UserId,
    UserPrincipalName,
    /// The user scopes asked for at connect time.
    UserScope,
    /// The authority tenant the flow used (`common`, `organizations`, a tenant id).
    Tenant,
    /// The tenant's SharePoint host, discovered from Graph.
    SharepointHost,
    /// `ok`, or why there is no SharePoint token.
    SharepointTokenStatus,
    /// The SharePoint access token (rendered, never stored in `connection_config`).
    SharepointAccessToken,
}

impl ConfigKey {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConfigKey::TenantId => "tenantId",
            ConfigKey::UserId => "userId",
            ConfigKey::UserPrincipalName => "userPrincipalName",
            ConfigKey::UserScope => "user_scope",
            ConfigKey::Tenant => "tenant",
            ConfigKey::SharepointHost => "sharepointHost",
            ConfigKey::SharepointTokenStatus => "sharepointTokenStatus",
            ConfigKey::SharepointAccessToken => "sharepointAccessToken",
        }
    }
}

/// Why a connection's credentials stopped working, as recorded on the connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthFailure {
    pub kind: FailureKind,
    /// A plain-language cause.
    pub description: String,
    /// Microsoft's AADSTS code, when there was one.
    #[serde(default)]
    pub aadsts: Option<u32>,
    /// The OAuth `error` value, when there was one.
    #[serde(default)]
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// A stored connection: one end user's grant for one integration.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Internal numeric id (Nango's `id`).
    pub id: i64,
    pub connection_id: ConnectionId,
    pub provider_config_key: ProviderConfigKey,
    pub provider: String,
    pub credentials: Credentials,
    /// Non-secret configuration (e.g. `tenantId`), a JSON object.
    pub connection_config: Value,
    /// Free-form app metadata, a JSON object.
    pub metadata: Value,
    pub end_user: Option<EndUser>,
    pub tags: Tags,
    pub webhook_url_override: Option<String>,
    pub auth_failure: Option<AuthFailure>,
    /// Bumped on every credentials write; guards against lost updates.
    pub version: i64,
    pub last_fetched_at: Option<DateTime<Utc>>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What is written when a connection is created or overwritten (OAuth callback, import).
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub connection_id: ConnectionId,
    pub provider_config_key: ProviderConfigKey,
    pub provider: String,
    pub credentials: Credentials,
    pub connection_config: Value,
    /// `None` keeps the existing metadata on overwrite (empty object on create).
    pub metadata: Option<Value>,
    pub end_user: Option<EndUser>,
    pub tags: Tags,
    pub webhook_url_override: Option<String>,
}

/// Filters for listing connections; all optional.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub connection_id: Option<String>,
    /// Case-insensitive substring of the connection id or the end user's id/email/display name.
    pub search: Option<String>,
    pub end_user_id: Option<String>,
    pub end_user_organization_id: Option<String>,
    pub integration_keys: Vec<String>,
    /// Every pair must match.
    pub tags: Tags,
    pub limit: u32,
    pub offset: u64,
}

/// A connect session: a short-lived token that lets a browser connect one end user.
#[derive(Debug, Clone)]
pub struct ConnectSession {
    pub id: i64,
    pub end_user: Option<EndUser>,
    pub organization: Option<Organization>,
    pub allowed_integrations: Option<Vec<String>>,
    /// Nango's `integrations_config_defaults`, as sent.
    pub integrations_config_defaults: Value,
    /// For a reconnect session: the connection it rewrites.
    pub reconnect: Option<(ProviderConfigKey, ConnectionId)>,
    pub tags: Tags,
    pub webhook_url_override: Option<String>,
    /// Nango's `overrides` as validated (`{integration: {docs_connect}}`); `Null` when none.
    pub overrides: Value,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A connect session about to be stored; the store keeps only the token's SHA-256 hash.
#[derive(Debug, Clone)]
pub struct NewConnectSession {
    pub token_hash: String,
    pub end_user: Option<EndUser>,
    pub organization: Option<Organization>,
    pub allowed_integrations: Option<Vec<String>>,
    pub integrations_config_defaults: Value,
    pub reconnect: Option<(ProviderConfigKey, ConnectionId)>,
    pub tags: Tags,
    pub webhook_url_override: Option<String>,
    /// Nango's `overrides` as validated; `Null` when none.
    pub overrides: Value,
    pub expires_at: DateTime<Utc>,
}

/// Which callback an OAuth flow expects; stored as text (`OAuthFlow::kind`) by its `as_str` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// Authorization code with PKCE for a user (`delegated`).
    Delegated,
    /// Admin consent for application permissions (`admin_consent`).
    AdminConsent,
}

impl FlowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::Delegated => "delegated",
            FlowKind::AdminConsent => "admin_consent",
        }
    }

    /// The stored name back; anything else is a delegated flow (the only kind before admin
    /// consent existed).
    pub fn from_stored(s: &str) -> FlowKind {
        if s == FlowKind::AdminConsent.as_str() {
            FlowKind::AdminConsent
        } else {
            FlowKind::Delegated
        }
    }
}

/// Server-side state of one OAuth authorization in flight, keyed by the `state` parameter.
/// Single use: taken (read and deleted) by the callback.
#[derive(Debug, Clone)]
pub struct OAuthFlow {
    pub state: String,
    pub provider_config_key: ProviderConfigKey,
    pub connection_id: ConnectionId,
    pub connect_session_id: Option<i64>,
    pub ws_client_id: Option<String>,
    pub code_verifier: CodeVerifier,
    /// Connection config gathered before the redirect (params, tenant…), a JSON object.
    pub connection_config: Value,
    /// The redirect URI sent on the authorize request (the token request must repeat it).
    pub redirect_uri: String,
    /// `delegated` (authorization code) or `admin_consent`.
    pub kind: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl OAuthFlow {
    /// `kind` as the enum the callback branches on.
    pub fn flow_kind(&self) -> FlowKind {
        FlowKind::from_stored(&self.kind)
    }
}
