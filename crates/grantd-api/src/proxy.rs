//! The proxy (`/proxy/{path}`, any method): request headers, and the body of its own failures
//! (upstream answers pass through unchanged).

use serde::{Deserialize, Serialize};

/// Request header: the connection id (required).
pub const CONNECTION_ID: &str = "Connection-Id";
/// Request header: the integration key (required).
pub const PROVIDER_CONFIG_KEY: &str = "Provider-Config-Key";
/// Request header: extra attempts on a retryable answer (default 0).
pub const RETRIES: &str = "Retries";
/// Request header: extra retryable statuses, comma-separated.
pub const RETRY_ON: &str = "Retry-On";
/// Request header: replaces the provider's base URL (policy permitting); `""` means unset.
pub const BASE_URL_OVERRIDE: &str = "Base-Url-Override";
pub const DECOMPRESS: &str = "Decompress";
/// Request header: `sharepoint` sends the call with the connection's SharePoint token.
pub const GRANTD_RESOURCE: &str = "Grantd-Resource";
/// Request header prefix: `Nango-Proxy-<Name>` is sent upstream as `<Name>`.
pub const NANGO_PROXY_PREFIX: &str = "Nango-Proxy-";

/// The proxy's answer when no upstream response came (502 or 504).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProxyFailure {
    pub message: String,
    /// `timeout` or `upstream_unreachable`.
    pub code: String,
    pub status: u16,
    pub method: String,
}
