//! The identity platform (stands in for `https://login.microsoftonline.com`): authorize with its
//! sign-in and consent pages, the token endpoint, discovery + JWKS, admin consent and logout.
//!
//! Files: `authorize.rs` (authorize, sign-in and consent form posts, redirects), `pages.rs` (HTML),
//! `token.rs` (grants), `client_auth.rs` (secrets, Basic, `private_key_jwt`), `scopes.rs`,
//! `errors.rs` (AADSTS wire shapes), `discovery.rs` (OIDC metadata, JWKS, instance discovery,
//! logout), `adminconsent.rs`. This file holds what they share: the router, the request origin
//! and the authority (tenant path segment) rules.

pub mod adminconsent;
pub mod authorize;
pub mod client_auth;
pub mod discovery;
pub mod errors;
pub mod pages;
pub mod scopes;
pub mod token;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::routing::{any, get, post};
use http::request::Parts;

use crate::directory::{AccountKind, App, Directory, MSA_TENANT_ID, SignInAudience, Tenant, User};
use crate::state::AppState;
use errors::AadError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize::authorize))
        .route("/{tenant}/oauth2/v2.0/token", any(token::token))
        .route("/{tenant}/oauth2/v2.0/logout", get(discovery::logout))
        .route("/{tenant}/login", post(authorize::login))
        .route("/{tenant}/consent", post(authorize::consent))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::keys))
        .route("/{tenant}/discovery/keys", get(discovery::keys))
        .route("/{tenant}/discovery/instance", get(discovery::instance))
        .route("/{tenant}/adminconsent", get(adminconsent::adminconsent_v1))
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(adminconsent::adminconsent_v2),
        )
}

/// The origin clients reach the emulator at (`public_base_url`, or scheme + `Host` of the
/// request); stands in for `https://login.microsoftonline.com` in issuers and URLs.
#[derive(Debug, Clone)]
pub struct Origin(pub String);

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(base) = &state.settings.public_base_url {
            return Ok(Origin(base.trim_end_matches('/').to_owned()));
        }
        Ok(Origin(request_origin(&parts.uri, &parts.headers)))
    }
}

/// Scheme and authority the client used. The server sets `x-forwarded-proto` to `https` over
/// TLS and, on plain HTTP, to what a TLS-terminating proxy reported (`X-Forwarded-Proto` or
/// `Forwarded: proto=`), removing anything else (see `server::mark_scheme`).
pub fn request_origin(uri: &http::Uri, headers: &http::HeaderMap) -> String {
    let scheme = uri
        .scheme_str()
        .or_else(|| {
            headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or("http");
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// The `{tenant}` path segment, resolved.
#[derive(Debug, Clone)]
pub enum Authority {
    Common,
    Organizations,
    Consumers,
    Tenant(Tenant),
}

impl Authority {
    pub fn resolve(dir: &Directory, segment: &str) -> Result<Authority, AadError> {
        match segment.to_ascii_lowercase().as_str() {
            "common" => Ok(Authority::Common),
            "organizations" => Ok(Authority::Organizations),
            "consumers" | MSA_TENANT_ID => Ok(Authority::Consumers),
            _ => dir
                .tenant(segment)
                .cloned()
                .map(Authority::Tenant)
                .ok_or_else(|| errors::tenant_not_found(segment)),
        }
    }

    pub fn is_tenant_specific(&self) -> bool {
        matches!(self, Authority::Tenant(_))
    }

    /// A label used in messages.
    pub fn label(&self) -> String {
        match self {
            Authority::Common => "common".into(),
            Authority::Organizations => "organizations".into(),
            Authority::Consumers => "consumers".into(),
            Authority::Tenant(t) => t.name.clone(),
        }
    }

    /// Whether this authority may serve this app (AADSTS50194, AADSTS9002332).
    pub fn check_app(&self, app: &App) -> Result<(), AadError> {
        use SignInAudience::*;
        match (self, app.sign_in_audience) {
            (Authority::Common | Authority::Organizations | Authority::Consumers, AzureADMyOrg) => {
                Err(AadError::new(
                    "invalid_request",
                    50194,
                    format!(
                        "Application '{}'({}) is not configured as a multi-tenant application. Usage of the /common endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant.",
                        app.client_id, app.display_name
                    ),
                ))
            }
            (Authority::Consumers, AzureADMultipleOrgs) => Err(AadError::new(
                "invalid_request",
                9002332,
                format!(
                    "Application '{}'({}) is configured for use by Azure Active Directory users only. Please do not use the /consumers endpoint to serve this request.",
                    app.client_id, app.display_name
                ),
            )),
            (Authority::Organizations | Authority::Tenant(_), PersonalMicrosoftAccount) => {
                Err(AadError::new(
                    "unauthorized_client",
                    700016,
                    format!(
                        "Application with identifier '{}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                        app.client_id,
                        self.label()
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Whether `user` may sign in here to `app` (AADSTS500200, AADSTS50020).
    pub fn check_user(&self, dir: &Directory, app: &App, user: &User) -> Result<(), AadError> {
        let personal = user.kind == AccountKind::Personal;
        let not_in_tenant = |tenant_name: &str| {
            AadError::new(
                "invalid_request",
                50020,
                format!(
                    "User account '{}' from identity provider '{}' does not exist in tenant '{}' and cannot access the application '{}'({}) in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Azure Active Directory user account.",
                    user.upn,
                    if personal {
                        "live.com".to_owned()
                    } else {
                        format!("https://sts.windows.net/{}/", user.tenant_id)
                    },
                    tenant_name,
                    app.client_id,
                    app.display_name
                ),
            )
        };
        let personal_refused = || {
            AadError::new(
                "invalid_request",
                500200,
                format!(
                    "User account '{}' is a personal Microsoft account. Personal Microsoft accounts are not supported for this application unless explicitly invited to an organization. Try signing out and signing back in with an organizational account.",
                    user.upn
                ),
            )
        };
        match self {
            Authority::Organizations if personal => return Err(personal_refused()),
            Authority::Consumers if !personal => return Err(not_in_tenant("Microsoft Services")),
            Authority::Tenant(t) if t.id != user.tenant_id => return Err(not_in_tenant(&t.name)),
            _ => {}
        }
        match app.sign_in_audience {
            SignInAudience::AzureADMyOrg if user.tenant_id != app.home_tenant_id => {
                let name = dir
                    .tenants
                    .get(&app.home_tenant_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_else(|| app.home_tenant_id.clone());
                Err(not_in_tenant(&name))
            }
            SignInAudience::AzureADMyOrg | SignInAudience::AzureADMultipleOrgs if personal => {
                Err(personal_refused())
            }
            SignInAudience::PersonalMicrosoftAccount if !personal => {
                Err(not_in_tenant("Microsoft Services"))
            }
            _ => Ok(()),
        }
    }
}

/// Microsoft ignores the port of loopback `http` redirect URIs (`localhost`, `127.0.0.1`, `[::1]`);
/// everything else must match exactly (path case-sensitive).
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(r), Ok(q)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    let loopback = |u: &url::Url| {
        u.scheme() == "http" && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
    };
    loopback(&r)
        && loopback(&q)
        && r.host_str() == q.host_str()
        && r.path() == q.path()
        && r.query() == q.query()
}

/// The `client-request-id` header, which Microsoft reports as the correlation id.
pub fn correlation(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A random opaque string (base64url).
pub fn random_token(bytes: usize) -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::redirect_uri_matches;

    #[test]
    fn loopback_redirects_ignore_port() {
        let reg = "http://localhost/oauth/callback";
        assert!(redirect_uri_matches(
            reg,
            "http://localhost:3003/oauth/callback"
        ));
        assert!(redirect_uri_matches(
            "http://127.0.0.1/oauth/callback",
            "http://127.0.0.1:9/oauth/callback"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "http://localhost:3003/oauth/Callback"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "http://127.0.0.1:3003/oauth/callback"
        ));
        assert!(!redirect_uri_matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
        assert!(redirect_uri_matches(
            "https://app.example/cb",
            "https://app.example/cb"
        ));
    }
}
