//! Application-permission ("app-only", `OAUTH2_CC`) connections: one per customer tenant whose
//! administrator granted admin consent.
//!
//! - Connect: `start_connect` sends the administrator to the admin-consent endpoint (no PKCE, no
//!   code); `finish_admin_consent` reads `tenant` / `admin_consent` / `state` or Microsoft's error,
//!   then **confirms** the tenant by obtaining a client-credentials token for it — the returned
//!   `tenant` parameter is forgeable, the token's `tid` is not — and stores the connection with
//!   `connection_config.tenantId`.
//! - Tokens: `client_credentials` with the `/.default` scope on the tenant's token endpoint.
//!   There is no refresh token: `refresh_app_only` requests a new token under the same single
//!   flight (in-process lock + the store's refresh lock) as delegated refreshes.
//! - Import: `create_app_only_connection` for tenants that consented out of band.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::flow::{CallbackError, Connected, FlowFailure};
use super::{Core, Error};
use crate::catalog::Provider;
use crate::microsoft::{self, TokenIdentity, admin_consent};
use crate::model::{
    ConfigKey, Connection, ConnectionId, Credentials, EndUser, Integration, NewConnection,
    OAuthFlow, ProviderConfigKey, Tags,
};
use crate::oauth::{self, ClientAuth, TokenError, TokenResponse};
use crate::store::RefreshLock;

/// What `POST /connections` asks for an app-only integration.
#[derive(Debug, Clone)]
pub struct NewAppOnlyConnection {
    pub key: ProviderConfigKey,
    pub connection_id: Option<ConnectionId>,
    pub tenant: String,
    pub connection_config: Map<String, Value>,
    pub metadata: Option<Value>,
    pub end_user: Option<EndUser>,
    pub tags: Tags,
    pub webhook_url_override: Option<String>,
}

/// A tenant id or verified domain as Microsoft writes them; not a multi-tenant alias.
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 253
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !["common", "organizations", "consumers"].contains(&t.to_ascii_lowercase().as_str())
}

impl Core {
    /// True for connections of application-permission providers.
    pub fn is_app_only(&self, conn: &Connection) -> bool {
        self.catalog
            .get(&conn.provider)
            .is_some_and(Provider::is_app_only)
    }

    /// The one `{resource}/.default` scope an app-only integration requests: the integration's
    /// own `.default` scope if it set one (another resource), else the provider's.
    pub fn app_scope(&self, integration: &Integration, provider: &Provider) -> String {
        integration
            .scopes
            .iter()
            .chain(&provider.default_scopes)
            .find(|s| s.ends_with("/.default"))
            .cloned()
            .unwrap_or_else(|| "https://graph.microsoft.com/.default".into())
    }

    /// The admin-consent URL (v2: `client_id`, `redirect_uri`, `scope`, `state`).
    pub(crate) fn admin_consent_url(
        &self,
        integration: &Integration,
        provider: &Provider,
        authority: &str,
        redirect_uri: &str,
        state: &str,
    ) -> Result<String, url::ParseError> {
        let mut url =
            url::Url::parse(&provider.authorization_url(&self.config.microsoft, authority))?;
        url.query_pairs_mut()
            .append_pair("client_id", &integration.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.app_scope(integration, provider))
            .append_pair("state", state);
        Ok(url.into())
    }

    /// A client-credentials token for `tenant`, authenticated with the integration's secret or
    /// certificate.
    pub async fn client_credentials_token(
        &self,
        integration: &Integration,
        provider: &Provider,
        tenant: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenResponse, TokenError> {
        oauth::token_request(
            &self.http,
            &provider.token_url(&self.config.microsoft, tenant),
            &integration.client_id,
            ClientAuth::of(integration),
            oauth::client_credentials_grant(&self.app_scope(integration, provider)),
            now,
        )
        .await
    }

    /// Gets a token for `tenant` and checks it was issued there. On success: the credentials and
    /// the non-secret facts for `connection_config` (confirmed `tenantId`, granted `roles`).
    async fn confirmed_token(
        &self,
        integration: &Integration,
        provider: &Provider,
        tenant: &str,
    ) -> Result<(Credentials, Map<String, Value>), microsoft::Classified> {
        let now = self.clock.now();
        let tokens = self
            .client_credentials_token(integration, provider, tenant, now)
            .await
            .map_err(|e| microsoft::classify(&e))?;
        let identity = TokenIdentity::from_jwt(tokens.access_token.expose_secret());
        let tid = identity.as_ref().and_then(|i| i.tid.clone());
        let mut facts = Map::new();
        match tid {
            Some(tid) => {
                if !tid.eq_ignore_ascii_case(tenant) && valid_guid(tenant) {
                    return Err(microsoft::Classified {
                        class: microsoft::Class::Misconfigured,
                        aadsts: None,
                        error: None,
                        cause: "Microsoft issued the token for another tenant than the one that consented.".into(),
                    });
                }
                facts.insert(ConfigKey::TenantId.as_str().into(), json!(tid));
            }
            // Not a JWT (another cloud's opaque token): keep the tenant we asked for.
            None => {
                facts.insert(ConfigKey::TenantId.as_str().into(), json!(tenant));
            }
        }
        if let Some(roles) = identity.and_then(|i| i.roles) {
            facts.insert("roles".into(), json!(roles));
        }
        Ok((
            Credentials {
                access_token: tokens.access_token,
                refresh_token: None,
                expires_at: tokens.expires_at,
                raw: tokens.raw,
                sharepoint: None,
            },
            facts,
        ))
    }

    /// The admin-consent callback: `flow` was taken (single use) and has not expired.
    pub(crate) async fn finish_admin_consent(
        &self,
        flow: OAuthFlow,
        query: &BTreeMap<String, String>,
    ) -> Result<Connected, CallbackError> {
        let fail = |error_type: &'static str, message: String, what_to_do: &str| {
            CallbackError::Flow(FlowFailure {
                error_type,
                message,
                what_to_do: what_to_do.to_owned(),
                provider_config_key: Some(flow.provider_config_key.to_string()),
                connection_id: Some(flow.connection_id.to_string()),
                ws_client_id: flow.ws_client_id.clone(),
            })
        };
        if let Some(error) = query.get("error") {
            let (what, todo) = admin_consent::explain_error(
                error,
                query.get("error_description").map(String::as_str),
            );
            tracing::info!(integration.key = %flow.provider_config_key, error = %error, "admin consent refused: {what}");
            return Err(fail("callback_err", what, &todo));
        }
        if !query
            .get("admin_consent")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err(fail(
                "callback_err",
                "Microsoft did not report an administrator's approval.".into(),
                "Start again and have an administrator of your organization accept.",
            ));
        }
        let tenant = query
            .get(ConfigKey::Tenant.as_str())
            .filter(|t| valid_tenant(t))
            .ok_or_else(|| {
                fail(
                    "callback_err",
                    "Microsoft did not say which organization approved the app.".into(),
                    "Start the connection again.",
                )
            })?;
        let (integration, provider) =
            self.integration(&flow.provider_config_key)
                .await
                .map_err(|e| match e {
                    Error::UnknownIntegration(_) | Error::UnknownProvider(_) => fail(
                        "provider_config_err",
                        e.to_string(),
                        "The integration was removed while you were signing in.",
                    ),
                    other => CallbackError::Internal(other),
                })?;
        let (credentials, facts) = self
            .confirmed_token(&integration, &provider, tenant)
            .await
            .map_err(|c| {
                tracing::warn!(integration.key = %flow.provider_config_key, tenant.id = %tenant, aadsts = ?c.aadsts, class = c.class.as_str(), "admin consent for tenant {tenant} could not be confirmed: {}", c.cause);
                fail(
                    "token_err",
                    admin_consent::explain_confirmation(&c),
                    "Try again in a moment; if it keeps failing, the app's administrator should check the integration.",
                )
            })?;
        let mut connection_config = match flow.connection_config.clone() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        connection_config.extend(facts);
        let (connection, created) = self
            .store_flow_connection(&flow, &integration.provider, credentials, connection_config)
            .await?;
        tracing::info!(
            connection.id = %connection.connection_id,
            integration.key = %connection.provider_config_key,
            tenant.id = %tenant,
            created,
            "admin-consent connection {} for tenant {tenant} {}",
            connection.connection_id,
            if created { "created" } else { "renewed" }
        );
        Ok(Connected {
            connection,
            created,
            ws_client_id: flow.ws_client_id,
        })
    }

    /// Requests a new client-credentials token for a locked app-only connection and saves it;
    /// failures are recorded like delegated refresh failures (misconfigured, transient…).
    pub(crate) async fn refresh_app_only(&self, lock: RefreshLock) -> Result<Connection, Error> {
        let conn = lock.connection.clone();
        let (integration, provider) = self.integration(&conn.provider_config_key).await?;
        let tenant = conn
            .connection_config
            .get(ConfigKey::TenantId.as_str())
            .and_then(Value::as_str)
            .filter(|t| valid_tenant(t))
            .map(str::to_owned)
            .ok_or_else(|| Error::Invalid("the app-only connection has no tenantId".into()))?;
        let now = self.clock.now();
        let tokens = match self
            .client_credentials_token(&integration, &provider, &tenant, now)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                return self
                    .refresh_failed(lock, microsoft::classify(&e), now)
                    .await;
            }
        };
        let mut config = match conn.connection_config.clone() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if let Some(roles) =
            TokenIdentity::from_jwt(tokens.access_token.expose_secret()).and_then(|i| i.roles)
        {
            config.insert("roles".into(), json!(roles));
        }
        let credentials = Credentials {
            access_token: tokens.access_token,
            refresh_token: None,
            expires_at: tokens.expires_at,
            raw: tokens.raw,
            sharepoint: None,
        };
        match lock.save(&credentials, &Value::Object(config), now).await? {
            Some(saved) => {
                tracing::info!(connection.id = %saved.connection_id, integration.key = %saved.provider_config_key, tenant.id = %tenant, "new app-only token for connection {}", saved.connection_id);
                Ok(saved)
            }
            None => self
                .store
                .get_connection_by_id(conn.id)
                .await?
                .ok_or(Error::UnknownConnection),
        }
    }

    /// Creates (or renews) an app-only connection for a tenant that consented out of band: the
    /// token is obtained now, which also proves the consent.
    pub async fn create_app_only_connection(
        &self,
        req: NewAppOnlyConnection,
    ) -> Result<(Connection, bool), Error> {
        let (integration, provider) = self.integration(&req.key).await?;
        if !provider.is_app_only() {
            return Err(Error::Invalid(format!(
                "integration {} uses delegated permissions: import its OAUTH2 tokens instead",
                req.key
            )));
        }
        if !valid_tenant(&req.tenant) {
            return Err(Error::Invalid(
                "connection_config.tenantId must be the customer's tenant id (a GUID) or domain, not common/organizations".into(),
            ));
        }
        let (credentials, facts) = self
            .confirmed_token(&integration, &provider, &req.tenant)
            .await
            .map_err(Error::Refresh)?;
        let mut config = req.connection_config;
        config.extend(facts);
        let (conn, created) = self
            .store
            .upsert_connection(NewConnection {
                connection_id: req.connection_id.unwrap_or_else(ConnectionId::new_random),
                provider_config_key: req.key,
                provider: integration.provider.clone(),
                credentials,
                connection_config: Value::Object(config),
                metadata: req.metadata,
                end_user: req.end_user,
                tags: req.tags,
                webhook_url_override: req.webhook_url_override,
            })
            .await?;
        tracing::info!(connection.id = %conn.connection_id, integration.key = %conn.provider_config_key, tenant.id = %req.tenant, created, "app-only connection {} created for tenant {}", conn.connection_id, req.tenant);
        Ok((conn, created))
    }
}

fn valid_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants() {
        assert!(valid_tenant("0b5c1a3e-1111-4222-8333-444455556666"));
        assert!(valid_tenant("contoso.onmicrosoft.com"));
        assert!(!valid_tenant("common"));
        assert!(!valid_tenant("Organizations"));
        assert!(!valid_tenant("a/b"));
        assert!(!valid_tenant(""));
    }
}
