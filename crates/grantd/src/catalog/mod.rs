//! The provider catalog: data-driven definitions (endpoints with placeholders, default scopes,
//! proxy base URL, flags) loaded from `providers.toml`, embedded in the binary. Extra generic
//! OAuth2 providers can be added from a file named by `GRANTD_PROVIDERS_FILE` in the same format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::MicrosoftHosts;
use crate::model::Integration;

const BUILTIN: &str = include_str!("providers.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provider {
    #[serde(skip_deserializing)]
    pub name: String,
    pub display_name: String,
    pub auth_mode: String,
    #[serde(default)]
    pub categories: Vec<String>,
    /// The default authority segment (`common`, `organizations`, `consumers`, a tenant, or a
    /// `${connectionConfig.tenant}` placeholder).
    #[serde(default)]
    pub authority: Option<String>,
    pub authorization_url: String,
    pub token_url: String,
    #[serde(default)]
    pub default_scopes: Vec<String>,
    #[serde(default = "space")]
    pub scope_separator: String,
    pub proxy_base_url: String,
    /// Obtain a SharePoint-audience token after connecting when `Sites.Read.All` was granted.
    #[serde(default)]
    pub sharepoint_token: bool,
    #[serde(default)]
    pub account_types: Option<String>,
    #[serde(default)]
    pub docs: Option<String>,
    /// Disable PKCE for providers that reject it (none of the Microsoft ones).
    #[serde(default)]
    pub disable_pkce: bool,
}

fn space() -> String {
    " ".into()
}

/// The auth mode of application-permission providers: admin consent, then client-credentials
/// tokens per tenant (Nango's name).
pub const AUTH_MODE_CC: &str = "OAUTH2_CC";

impl Provider {
    /// True for application-permission providers (`OAUTH2_CC`): admin-consent connections with
    /// client-credentials tokens.
    pub fn is_app_only(&self) -> bool {
        self.auth_mode == AUTH_MODE_CC
    }

    /// True for providers served by Microsoft's identity platform (AADSTS errors, tenants).
    pub fn is_microsoft(&self) -> bool {
        self.authorization_url.starts_with("${login}")
    }

    /// The authority for a connection: the connection config's `tenant` where the provider needs
    /// one, else the integration's configured tenant, else the provider default.
    pub fn authority(
        &self,
        integration_tenant: Option<&str>,
        connection_tenant: Option<&str>,
    ) -> Option<String> {
        match self.authority.as_deref() {
            Some("${connectionConfig.tenant}") => connection_tenant.map(str::to_owned),
            Some(default) => Some(integration_tenant.unwrap_or(default).to_owned()),
            None => integration_tenant.map(str::to_owned),
        }
    }

    pub fn authorization_url(&self, hosts: &MicrosoftHosts, tenant: &str) -> String {
        fill(&self.authorization_url, hosts, tenant)
    }

    pub fn token_url(&self, hosts: &MicrosoftHosts, tenant: &str) -> String {
        fill(&self.token_url, hosts, tenant)
    }

    pub fn proxy_base_url(&self, hosts: &MicrosoftHosts) -> String {
        fill(&self.proxy_base_url, hosts, "")
    }
}

fn fill(template: &str, hosts: &MicrosoftHosts, tenant: &str) -> String {
    template
        .replace("${login}", hosts.login_url.as_str().trim_end_matches('/'))
        .replace("${graph}", hosts.graph_url.as_str().trim_end_matches('/'))
        .replace("${tenant}", tenant)
}

#[derive(Debug, Clone)]
pub struct Catalog {
    providers: BTreeMap<String, Provider>,
}

#[derive(Debug, thiserror::Error)]
#[error("provider catalog {source_name}: {message}")]
pub struct CatalogError {
    source_name: String,
    message: String,
}

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Self {
        Self::parse("built-in", BUILTIN).expect("the embedded catalog is valid (tested)")
    }

    /// The built-in catalog plus providers from another TOML document (same format; a name that
    /// exists already replaces the built-in entry).
    pub fn with_extra(extra_name: &str, extra_toml: &str) -> Result<Self, CatalogError> {
        let mut c = Self::builtin();
        c.providers
            .extend(Self::parse(extra_name, extra_toml)?.providers);
        Ok(c)
    }

    fn parse(source_name: &str, text: &str) -> Result<Self, CatalogError> {
        let err = |message: String| CatalogError {
            source_name: source_name.into(),
            message,
        };
        let mut providers: BTreeMap<String, Provider> =
            toml::from_str(text).map_err(|e| err(e.to_string()))?;
        for (name, p) in providers.iter_mut() {
            p.name = name.clone();
            if p.auth_mode != "OAUTH2" && p.auth_mode != AUTH_MODE_CC {
                return Err(err(format!(
                    "{name}: auth_mode {} is not supported (OAUTH2 or OAUTH2_CC)",
                    p.auth_mode
                )));
            }
            if p.auth_mode == AUTH_MODE_CC && !p.is_microsoft() {
                return Err(err(format!(
                    "{name}: OAUTH2_CC is supported for Microsoft providers only (admin consent)"
                )));
            }
        }
        Ok(Self { providers })
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    /// What the Connect UI and the dashboard call an integration: its own display name, else its
    /// provider's, else its key.
    pub fn display_name(&self, i: &Integration) -> String {
        i.display_name
            .clone()
            .or_else(|| self.get(&i.provider).map(|p| p.display_name.clone()))
            .unwrap_or_else(|| i.unique_key.to_string())
    }

    pub fn all(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_the_microsoft_providers() {
        let c = Catalog::builtin();
        for name in [
            "one-drive",
            "one-drive-personal",
            "sharepoint-online",
            "microsoft",
            "microsoft-tenant-specific",
        ] {
            let p = c.get(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(p.is_microsoft());
            assert!(p.default_scopes.contains(&"offline_access".to_string()));
        }
        assert!(c.get("one-drive").unwrap().sharepoint_token);
    }

    #[test]
    fn urls_and_authority() {
        let c = Catalog::builtin();
        let hosts = MicrosoftHosts::emulator("http://127.0.0.1:4100/");
        let od = c.get("one-drive").unwrap();
        let tenant = od.authority(None, None).unwrap();
        assert_eq!(
            od.token_url(&hosts, &tenant),
            "http://127.0.0.1:4100/organizations/oauth2/v2.0/token"
        );
        assert_eq!(od.proxy_base_url(&hosts), "http://127.0.0.1:4100");
        let ts = c.get("microsoft-tenant-specific").unwrap();
        assert_eq!(ts.authority(None, None), None);
        assert_eq!(
            ts.authority(None, Some("contoso.onmicrosoft.com"))
                .as_deref(),
            Some("contoso.onmicrosoft.com")
        );
    }

    #[test]
    fn app_only_provider() {
        let c = Catalog::builtin();
        let hosts = MicrosoftHosts::emulator("http://127.0.0.1:4100/");
        let p = c.get("one-drive-app").unwrap();
        assert!(p.is_app_only() && p.is_microsoft());
        let tenant = p.authority(None, None).unwrap();
        assert_eq!(
            p.authorization_url(&hosts, &tenant),
            "http://127.0.0.1:4100/organizations/v2.0/adminconsent"
        );
        assert_eq!(p.default_scopes, ["https://graph.microsoft.com/.default"]);
        assert!(Catalog::with_extra(
            "extra",
            "[acme]\ndisplay_name = \"A\"\nauth_mode = \"OAUTH2_CC\"\nauthorization_url = \"https://a.example/x\"\ntoken_url = \"https://a.example/t\"\nproxy_base_url = \"https://a.example\"\n",
        )
        .is_err());
    }

    #[test]
    fn extra_generic_providers() {
        let c = Catalog::with_extra(
            "extra",
            r#"[acme]
display_name = "Acme"
auth_mode = "OAUTH2"
authorization_url = "https://acme.example/authorize"
token_url = "https://acme.example/token"
proxy_base_url = "https://api.acme.example"
"#,
        )
        .unwrap();
        assert!(!c.get("acme").unwrap().is_microsoft());
        assert!(c.get("one-drive").is_some());
    }
}
