//! Token minting and validation: RS256 JWTs (access tokens in Microsoft's v1 shape for Graph and
//! SharePoint, v2 id_tokens), the signing key and its JWKS, and bearer validation for resources.

use serde::{Deserialize, Serialize};

/// The Graph resource's application id, used as `aud` in Graph v1 access tokens.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Which resource a bearer token must be for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Microsoft Graph (`00000003-0000-0000-c000-000000000000` or `https://graph.microsoft.com`).
    Graph,
    /// A SharePoint host, e.g. `contoso.sharepoint.com` (aud `https://contoso.sharepoint.com`).
    SharePoint(String),
}

/// The validated claims of an access token, as resources need them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub aud: String,
    pub iss: String,
    pub tid: String,
    /// Object id of the user (delegated) or of the app's service principal (app-only).
    pub oid: String,
    /// The client application's id.
    pub appid: String,
    /// Delegated scopes (space separated in the JWT); empty for app-only tokens.
    #[serde(default)]
    pub scp: Option<String>,
    /// Application permissions; present on app-only tokens.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub upn: Option<String>,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
}

impl AccessClaims {
    pub fn scopes(&self) -> Vec<&str> {
        self.scp.as_deref().map(|s| s.split(' ').collect()).unwrap_or_default()
    }
    pub fn is_app_only(&self) -> bool {
        self.scp.is_none()
    }
    /// True when the token grants any of `needed` as a delegated scope or an app role.
    pub fn has_any(&self, needed: &[&str]) -> bool {
        let scopes = self.scopes();
        let roles = self.roles.as_deref().unwrap_or_default();
        needed.iter().any(|n| {
            scopes.iter().any(|s| s.eq_ignore_ascii_case(n))
                || roles.iter().any(|r| r.eq_ignore_ascii_case(n))
        })
    }
}

/// Why a bearer token was refused; resources render this as their own error JSON.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BearerError {
    #[error("no bearer token")]
    Missing,
    #[error("access token validation failure")]
    Invalid,
    #[error("access token has expired or is not yet valid")]
    Expired,
    #[error("invalid audience {0}")]
    WrongAudience(String),
}
