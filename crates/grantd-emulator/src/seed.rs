//! Seed data: the built-in tenants (contoso, fabrikam, the personal-account tenant), users and the
//! `grantd dev` app registration, the constants tests refer to, and loading overrides from TOML.

use serde::{Deserialize, Serialize};

use crate::directory::{
    AccountKind, App, ClientSecret, Directory, MSA_TENANT_ID, SignInAudience, Tenant, User,
};

/// Every seeded user's password.
pub const PASSWORD: &str = "emulator";

pub const CONTOSO_TENANT_ID: &str = "6d3c1a0e-4b7f-4e2a-9c51-0b8e2f4a7c10";
pub const CONTOSO_DOMAIN: &str = "contoso.onmicrosoft.com";
pub const CONTOSO_SHAREPOINT_HOST: &str = "contoso.sharepoint.com";
pub const CONTOSO_MY_HOST: &str = "contoso-my.sharepoint.com";
pub const FABRIKAM_TENANT_ID: &str = "2f9b7d41-8e0c-4a63-b5d2-7c1e9a3f6b20";
pub const FABRIKAM_DOMAIN: &str = "fabrikam.onmicrosoft.com";
pub const FABRIKAM_SHAREPOINT_HOST: &str = "fabrikam.sharepoint.com";
pub const FABRIKAM_MY_HOST: &str = "fabrikam-my.sharepoint.com";
/// Personal accounts live in Microsoft's consumers tenant.
pub const CONSUMERS_TENANT_ID: &str = MSA_TENANT_ID;

pub const ADELE_UPN: &str = "adele@contoso.onmicrosoft.com";
pub const ADELE_ID: &str = "a1e0c3d2-5b6f-4a7e-8d9c-0e1f2a3b4c01";
/// Global administrator of contoso.
pub const MEGAN_UPN: &str = "megan@contoso.onmicrosoft.com";
pub const MEGAN_ID: &str = "b2f1d4e3-6c7a-4b8f-9e0d-1f2a3b4c5d02";
pub const DIEGO_UPN: &str = "diego@fabrikam.onmicrosoft.com";
pub const DIEGO_ID: &str = "c3a2e5f4-7d8b-4c9a-8f1e-2a3b4c5d6e03";
/// A personal Microsoft account.
pub const SAM_UPN: &str = "sam@outlook.com";
pub const SAM_ID: &str = "00000000-0000-0000-4a5b-6c7d8e9f0a04";

/// The `grantd dev` app registration: multitenant + personal accounts, registered in fabrikam
/// (so contoso is a customer tenant that must admin-consent before app-only access).
pub const DEV_CLIENT_ID: &str = "7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60";
pub const DEV_CLIENT_SECRET: &str = "gDv8Q~emulator.dev-secret_0123456789abcdefgh";
pub const DEV_APP_NAME: &str = "grantd dev";
/// Redirect URIs of the dev app; loopback http URIs match any port, as at Microsoft.
pub const DEV_REDIRECT_URIS: [&str; 2] = [
    "http://localhost/oauth/callback",
    "http://127.0.0.1/oauth/callback",
];
/// Graph application permissions of the dev app (granted by admin consent).
pub const DEV_APP_PERMISSIONS: [&str; 3] = ["Files.Read.All", "Sites.Read.All", "User.Read.All"];

/// Statically configured delegated permissions of the dev app (what `/.default` consents to).
pub const DEV_DELEGATED_PERMISSIONS: [&str; 6] = [
    "User.Read",
    "Files.Read",
    "Files.Read.All",
    "Files.ReadWrite.All",
    "Sites.Read.All",
    "offline_access",
];

/// The whole seed: what `reset` restores. Every section of a TOML override replaces the default
/// section of the same name; omitted sections keep the defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seed {
    pub tenants: Vec<Tenant>,
    pub users: Vec<SeedUser>,
    pub apps: Vec<App>,
    /// Tenant-wide admin consents present from the start.
    #[serde(default)]
    pub admin_consents: Vec<SeedAdminConsent>,
}

/// A user as written in a seed file; `id` and `password` may be omitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedUser {
    #[serde(default)]
    pub id: String,
    pub upn: String,
    pub display_name: String,
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub surname: String,
    /// Tenant GUID, domain or short name; personal accounts use `consumers`.
    pub tenant: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default = "default_password")]
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedAdminConsent {
    pub tenant: String,
    pub client_id: String,
}

fn default_password() -> String {
    PASSWORD.to_owned()
}

#[derive(Debug, Deserialize)]
struct SeedFile {
    tenants: Option<Vec<Tenant>>,
    users: Option<Vec<SeedUser>>,
    apps: Option<Vec<App>>,
    admin_consents: Option<Vec<SeedAdminConsent>>,
}

impl Seed {
    /// Parses a TOML override on top of the defaults.
    pub fn from_toml(text: &str) -> anyhow::Result<Seed> {
        let file: SeedFile = toml::from_str(text)?;
        let mut seed = Seed::default();
        if let Some(t) = file.tenants {
            seed.tenants = t;
        }
        if let Some(u) = file.users {
            seed.users = u;
        }
        if let Some(a) = file.apps {
            seed.apps = a;
        }
        if let Some(c) = file.admin_consents {
            seed.admin_consents = c;
        }
        seed.directory()?;
        Ok(seed)
    }

    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Seed> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading seed file {}: {e}", path.display()))?;
        Self::from_toml(&text)
    }

    /// Builds the directory this seed describes.
    pub fn directory(&self) -> anyhow::Result<Directory> {
        let mut dir = Directory::default();
        for t in &self.tenants {
            dir.tenants.insert(t.id.clone(), t.clone());
        }
        for u in &self.users {
            let (tenant_id, kind) =
                if u.tenant.eq_ignore_ascii_case("consumers") || u.tenant == MSA_TENANT_ID {
                    (MSA_TENANT_ID.to_owned(), AccountKind::Personal)
                } else {
                    let t = dir.tenant(&u.tenant).ok_or_else(|| {
                        anyhow::anyhow!("seed user {}: unknown tenant {}", u.upn, u.tenant)
                    })?;
                    (t.id.clone(), AccountKind::Work)
                };
            let id = if u.id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                u.id.clone()
            };
            dir.users.insert(
                id.clone(),
                User {
                    id,
                    upn: u.upn.clone(),
                    display_name: u.display_name.clone(),
                    given_name: u.given_name.clone(),
                    surname: u.surname.clone(),
                    tenant_id,
                    kind,
                    admin: u.admin,
                    password: u.password.clone(),
                },
            );
        }
        for a in &self.apps {
            dir.apps.insert(a.client_id.clone(), a.clone());
        }
        Ok(dir)
    }
}

fn user(id: &str, upn: &str, given: &str, surname: &str, tenant: &str, admin: bool) -> SeedUser {
    SeedUser {
        id: id.to_owned(),
        upn: upn.to_owned(),
        display_name: format!("{given} {surname}"),
        given_name: given.to_owned(),
        surname: surname.to_owned(),
        tenant: tenant.to_owned(),
        admin,
        password: PASSWORD.to_owned(),
    }
}

/// The `grantd dev` app registration.
pub fn dev_app() -> App {
    App {
        client_id: DEV_CLIENT_ID.to_owned(),
        display_name: DEV_APP_NAME.to_owned(),
        home_tenant_id: FABRIKAM_TENANT_ID.to_owned(),
        sign_in_audience: SignInAudience::AzureADandPersonalMicrosoftAccount,
        redirect_uris: DEV_REDIRECT_URIS.iter().map(|s| s.to_string()).collect(),
        secrets: vec![ClientSecret {
            value: DEV_CLIENT_SECRET.to_owned(),
            expires_at: None,
        }],
        certificates: Vec::new(),
        application_permissions: DEV_APP_PERMISSIONS.iter().map(|s| s.to_string()).collect(),
        delegated_permissions: DEV_DELEGATED_PERMISSIONS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        public_client: false,
    }
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            tenants: vec![
                Tenant {
                    id: CONTOSO_TENANT_ID.to_owned(),
                    name: "contoso".to_owned(),
                    domain: CONTOSO_DOMAIN.to_owned(),
                    sharepoint_host: CONTOSO_SHAREPOINT_HOST.to_owned(),
                    my_host: CONTOSO_MY_HOST.to_owned(),
                },
                Tenant {
                    id: FABRIKAM_TENANT_ID.to_owned(),
                    name: "fabrikam".to_owned(),
                    domain: FABRIKAM_DOMAIN.to_owned(),
                    sharepoint_host: FABRIKAM_SHAREPOINT_HOST.to_owned(),
                    my_host: FABRIKAM_MY_HOST.to_owned(),
                },
            ],
            users: vec![
                user(ADELE_ID, ADELE_UPN, "Adele", "Vance", "contoso", false),
                user(MEGAN_ID, MEGAN_UPN, "Megan", "Bowen", "contoso", true),
                user(DIEGO_ID, DIEGO_UPN, "Diego", "Siciliani", "fabrikam", true),
                user(SAM_ID, SAM_UPN, "Sam", "Taylor", "consumers", false),
            ],
            apps: vec![dev_app()],
            admin_consents: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_seed_builds() {
        let dir = Seed::default().directory().expect("seed");
        assert_eq!(
            dir.user_by_upn(MEGAN_UPN).expect("megan").tenant_id,
            CONTOSO_TENANT_ID
        );
        assert!(dir.user_by_upn(MEGAN_UPN).expect("megan").admin);
        assert!(!dir.user_by_upn(ADELE_UPN).expect("adele").admin);
        assert_eq!(
            dir.user_by_upn(SAM_UPN).expect("sam").kind,
            AccountKind::Personal
        );
        assert!(dir.apps.contains_key(DEV_CLIENT_ID));
    }

    #[test]
    fn toml_override_replaces_sections() {
        let seed = Seed::from_toml(
            r#"
            [[users]]
            upn = "zoe@contoso.onmicrosoft.com"
            display_name = "Zoe"
            tenant = "contoso"
            "#,
        )
        .expect("parse");
        let dir = seed.directory().expect("dir");
        assert_eq!(dir.users.len(), 1);
        assert_eq!(
            dir.user_by_upn("zoe@contoso.onmicrosoft.com")
                .expect("zoe")
                .password,
            PASSWORD
        );
        assert!(Seed::from_toml("[[users]]\nupn='x'\ndisplay_name='x'\ntenant='nowhere'").is_err());
    }
}
