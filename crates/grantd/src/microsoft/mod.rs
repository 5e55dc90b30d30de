//! Everything Microsoft-specific: classifying token-endpoint failures by AADSTS code into
//! reconnect / misconfigured / transient (the only place that reads AADSTS text), reading the
//! identity claims out of Graph access tokens, and obtaining the SharePoint-audience token.

pub mod aadsts;
pub mod admin_consent;
pub mod sharepoint;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

pub use aadsts::{Class, Classified, classify};

/// The tenant id of every personal Microsoft account.
pub const MSA_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Identity claims from a (v1) Graph access token. The token is not verified here — it came
/// straight from the token endpoint over TLS — it is only read for tenant and user identity.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenIdentity {
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub oid: Option<String>,
    #[serde(default)]
    pub upn: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub unique_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scp: Option<String>,
    /// Application permissions of an app-only token.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

impl TokenIdentity {
    /// Reads the payload of a JWT; `None` for opaque tokens (personal-account Graph tokens are not
    /// JWTs).
    pub fn from_jwt(token: &str) -> Option<Self> {
        let payload = token.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn username(&self) -> Option<&str> {
        self.upn
            .as_deref()
            .or(self.preferred_username.as_deref())
            .or(self.unique_name.as_deref())
    }
}

/// True when `Sites.Read.All` (or a broader Sites permission) is among the granted scopes.
pub fn grants_sites_read(scopes: &str) -> bool {
    scopes.split([' ', ',']).any(|s| {
        let s = s.rsplit('/').next().unwrap_or(s);
        [
            "sites.read.all",
            "sites.readwrite.all",
            "sites.manage.all",
            "sites.fullcontrol.all",
        ]
        .contains(&s.to_ascii_lowercase().as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_claims_from_jwt_payload() {
        let payload = URL_SAFE_NO_PAD
            .encode(br#"{"tid":"t-1","oid":"o-1","upn":"adele@contoso.onmicrosoft.com"}"#);
        let id = TokenIdentity::from_jwt(&format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig")).unwrap();
        assert_eq!(id.tid.as_deref(), Some("t-1"));
        assert_eq!(id.username(), Some("adele@contoso.onmicrosoft.com"));
        assert!(TokenIdentity::from_jwt("EwB4A8l6BAAU-opaque").is_none());
    }

    #[test]
    fn sites_scope_detection() {
        assert!(grants_sites_read(
            "User.Read Files.ReadWrite.All Sites.Read.All"
        ));
        assert!(grants_sites_read(
            "https://graph.microsoft.com/Sites.Read.All"
        ));
        assert!(!grants_sites_read("User.Read Files.Read.All"));
    }
}
