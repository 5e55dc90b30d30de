//! The emulator's directory: tenants, users and app registrations (seeded, plus apps registered at
//! run time through the control API). Owned by the identity side; Graph reads users from here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The tenant id Microsoft uses for every personal Microsoft account (the `consumers` tenant).
pub const MSA_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    /// Tenant GUID (`tid`).
    pub id: String,
    /// Short name, e.g. `contoso`.
    pub name: String,
    /// Initial domain, e.g. `contoso.onmicrosoft.com`.
    pub domain: String,
    /// SharePoint root host, e.g. `contoso.sharepoint.com`.
    pub sharepoint_host: String,
    /// OneDrive host, e.g. `contoso-my.sharepoint.com`.
    pub my_host: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// Work or school account in an Entra tenant.
    Work,
    /// Personal Microsoft account (outlook.com, live.com…).
    Personal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Object id (`oid`, Graph `/me` `id`).
    pub id: String,
    /// Sign-in name (`upn` / `preferred_username`), e.g. `adele@contoso.onmicrosoft.com`.
    pub upn: String,
    pub display_name: String,
    pub given_name: String,
    pub surname: String,
    /// Tenant GUID; [`MSA_TENANT_ID`] for personal accounts.
    pub tenant_id: String,
    pub kind: AccountKind,
    /// Global administrator of its tenant (may grant admin consent).
    pub admin: bool,
    pub password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignInAudience {
    /// Only the home tenant.
    AzureADMyOrg,
    /// Any Entra tenant.
    AzureADMultipleOrgs,
    /// Any Entra tenant and personal accounts.
    AzureADandPersonalMicrosoftAccount,
    /// Personal accounts only.
    PersonalMicrosoftAccount,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSecret {
    pub value: String,
    /// Unix seconds; `None` = never expires.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct App {
    pub client_id: String,
    pub display_name: String,
    /// Tenant GUID the app is registered in.
    pub home_tenant_id: String,
    pub sign_in_audience: SignInAudience,
    pub redirect_uris: Vec<String>,
    pub secrets: Vec<ClientSecret>,
    /// PEM certificates whose keys may sign client assertions.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Graph application permissions (app roles) the app requests, e.g. `Files.Read.All`.
    #[serde(default)]
    pub application_permissions: Vec<String>,
    /// Statically configured delegated Graph permissions (what `/.default` asks for), e.g.
    /// `User.Read`, `Files.Read.All`, `offline_access`.
    #[serde(default)]
    pub delegated_permissions: Vec<String>,
    /// A public client (no secret or certificate; sending one is AADSTS700025).
    #[serde(default)]
    pub public_client: bool,
}

/// All tenants, users and apps; lookups by id, domain, name and upn.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub tenants: BTreeMap<String, Tenant>,
    pub users: BTreeMap<String, User>,
    pub apps: BTreeMap<String, App>,
}

impl Directory {
    /// Resolves a tenant path segment (GUID, domain or short name) to a tenant; `None` for
    /// `common`/`organizations`/`consumers` and unknown values.
    pub fn tenant(&self, segment: &str) -> Option<&Tenant> {
        let s = segment.to_ascii_lowercase();
        self.tenants
            .values()
            .find(|t| t.id == s || t.domain == s || t.name == s)
    }

    pub fn user_by_upn(&self, upn: &str) -> Option<&User> {
        let upn = upn.to_ascii_lowercase();
        self.users
            .values()
            .find(|u| u.upn.to_ascii_lowercase() == upn)
    }

    /// By object id or by UPN (Graph accepts both in `/users/{id-or-upn}`).
    pub fn user(&self, id_or_upn: &str) -> Option<&User> {
        self.users
            .get(id_or_upn)
            .or_else(|| self.user_by_upn(id_or_upn))
    }

    /// The tenant owning a SharePoint host (root or `-my`).
    pub fn tenant_by_sharepoint_host(&self, host: &str) -> Option<&Tenant> {
        let h = host.to_ascii_lowercase();
        self.tenants
            .values()
            .find(|t| t.sharepoint_host == h || t.my_host == h)
    }
}
