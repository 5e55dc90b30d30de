//! Fresh credentials on read. A token expiring within the margin (or a forced refresh) is
//! refreshed under a per-connection lock, so concurrent readers in this process share one refresh;
//! after taking the lock the connection is read again and, if someone else already refreshed it,
//! their result is used. The new credentials are written with a compare-and-swap on the
//! connection's version before anyone sees the new access token.
//!
//! The SharePoint token is minted from the newest refresh token right after the Graph token, and
//! the refresh token it returns (rotation) is the one stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use chrono::{TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::{Core, Error};
use crate::catalog::Provider;
use crate::microsoft::{self, Class, sharepoint};
use crate::model::{AuthFailure, Connection, Credentials, Integration, ResourceToken};
use crate::oauth::{self, ClientAuth};

/// Per-connection async locks for in-process single flight. Entries are weak, so finished
/// refreshes leave nothing behind.
#[derive(Default)]
pub struct Flights {
    locks: Mutex<HashMap<i64, Weak<tokio::sync::Mutex<()>>>>,
}

impl Flights {
    fn lock_for(&self, id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().expect("flights lock poisoned");
        if let Some(l) = map.get(&id).and_then(Weak::upgrade) {
            return l;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(id, Arc::downgrade(&l));
        l
    }
}

impl Core {
    fn needs_refresh(&self, c: &Connection) -> bool {
        let margin =
            TimeDelta::from_std(self.config.refresh_margin).unwrap_or(TimeDelta::minutes(15));
        c.credentials
            .expires_at
            .is_some_and(|at| at <= self.clock.now() + margin)
    }

    /// The connection with credentials valid for at least the refresh margin (refreshing them if
    /// needed or forced).
    pub async fn fresh_connection(
        &self,
        conn: Connection,
        force: bool,
    ) -> Result<Connection, Error> {
        if !force && !self.needs_refresh(&conn) {
            return Ok(conn);
        }
        if conn.credentials.refresh_token.is_none() && !self.is_app_only(&conn) {
            // Nothing to refresh with: Nango returns the stored token as it is.
            return Ok(conn);
        }
        let lock = self.flights.lock_for(conn.id);
        let _guard = lock.lock().await;
        let current = self
            .store
            .get_connection_by_id(conn.id)
            .await?
            .ok_or(Error::UnknownConnection)?;
        // Someone refreshed while we waited: use their result.
        if current.version != conn.version && !self.needs_refresh(&current) {
            return Ok(current);
        }
        self.refresh_locked(current).await
    }

    async fn refresh_locked(&self, conn: Connection) -> Result<Connection, Error> {
        let (integration, provider) = self.integration(&conn.provider_config_key).await?;
        let tenant = self.token_tenant(&integration, &provider, &conn);
        let token_url = provider.token_url(&self.config.microsoft, &tenant);
        let refresh_token = conn
            .credentials
            .refresh_token
            .clone()
            .ok_or(Error::UnknownConnection)?;
        let scopes = self
            .scopes_for(&integration, &provider, None)
            .join(&provider.scope_separator);
        let now = self.clock.now();
        let result = oauth::token_request(
            &self.http,
            &token_url,
            &integration.client_id,
            ClientAuth::of(&integration),
            oauth::refresh_grant(&refresh_token, Some(&scopes)),
            now,
        )
        .await;
        let tokens = match result {
            Ok(t) => t,
            Err(e) => {
                let c = microsoft::classify(&e);
                tracing::warn!(
                    connection.id = %conn.connection_id,
                    integration.key = %conn.provider_config_key,
                    aadsts = ?c.aadsts,
                    class = c.class.as_str(),
                    "refresh failed for connection {}: {}",
                    conn.connection_id,
                    c.cause
                );
                if c.class == Class::Transient
                    && conn.credentials.expires_at.is_some_and(|at| at > now)
                {
                    // The current token still works; a passing outage must not break anything.
                    return Ok(conn);
                }
                if c.class != Class::Transient {
                    let failure = AuthFailure {
                        kind: c.class.as_str().into(),
                        description: c.cause.clone(),
                        aadsts: c.aadsts,
                        error: c.error.clone(),
                        at: now,
                    };
                    self.store.set_auth_failure(conn.id, Some(&failure)).await?;
                }
                return Err(Error::Refresh(c));
            }
        };
        let mut credentials = Credentials {
            access_token: tokens.access_token,
            // Providers that do not rotate send no new refresh token: keep the old one.
            refresh_token: tokens.refresh_token.or(Some(refresh_token)),
            expires_at: tokens.expires_at,
            raw: tokens.raw,
            sharepoint: conn.credentials.sharepoint.clone(),
        };
        let mut config = match conn.connection_config.clone() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if provider.sharepoint_token && credentials.sharepoint.is_some() {
            self.obtain_sharepoint_token(
                &integration,
                &provider,
                &tenant,
                &mut credentials,
                &mut config,
                tokens.scope.as_deref(),
            )
            .await;
        }
        match self
            .store
            .save_refreshed(conn.id, conn.version, &credentials, now)
            .await?
        {
            Some(saved) => {
                tracing::info!(connection.id = %saved.connection_id, integration.key = %saved.provider_config_key, "refreshed connection {}", saved.connection_id);
                Ok(saved)
            }
            // Another writer won the race (e.g. a reconnect): theirs is newer.
            None => self
                .store
                .get_connection_by_id(conn.id)
                .await?
                .ok_or(Error::UnknownConnection),
        }
    }

    /// The tenant to call the token endpoint on: the user's own tenant once known (required for
    /// tokens of other resources), else the flow's authority.
    fn token_tenant(
        &self,
        integration: &Integration,
        provider: &Provider,
        conn: &Connection,
    ) -> String {
        let cfg = &conn.connection_config;
        cfg.get("tenantId")
            .and_then(Value::as_str)
            .filter(|t| *t != crate::microsoft::MSA_TENANT_ID)
            .map(str::to_owned)
            .or_else(|| {
                provider.authority(
                    integration
                        .integration_config
                        .get("tenant")
                        .map(String::as_str),
                    cfg.get("tenant").and_then(Value::as_str),
                )
            })
            .unwrap_or_else(|| "common".into())
    }

    /// Obtains (or refreshes) the SharePoint token into `credentials.sharepoint` when the granted
    /// scopes include `Sites.Read.All`; otherwise, or on failure, records why in `config`
    /// (`sharepointTokenStatus`). Never fails the caller: the Graph token is still good.
    pub(crate) async fn obtain_sharepoint_token(
        &self,
        integration: &Integration,
        provider: &Provider,
        flow_tenant: &str,
        credentials: &mut Credentials,
        config: &mut Map<String, Value>,
        granted_scopes: Option<&str>,
    ) {
        let granted = granted_scopes
            .map(str::to_owned)
            .or_else(|| {
                microsoft::TokenIdentity::from_jwt(credentials.access_token.expose_secret())
                    .and_then(|i| i.scp)
            })
            .unwrap_or_default();
        if !microsoft::grants_sites_read(&granted) && credentials.sharepoint.is_none() {
            config.insert(
                "sharepointTokenStatus".into(),
                json!("not_requested: the connection was not granted Sites.Read.All, so no SharePoint token is issued"),
            );
            return;
        }
        let Some(refresh_token) = credentials.refresh_token.clone() else {
            config.insert(
                "sharepointTokenStatus".into(),
                json!("unavailable: no refresh token (offline_access missing)"),
            );
            return;
        };
        let host = match credentials.sharepoint.as_ref().map(|s| s.host.clone()) {
            Some(h) => h,
            None => match sharepoint::discover_host(
                &self.http,
                self.config.microsoft.graph_url.as_str(),
                &credentials.access_token,
            )
            .await
            {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(integration.key = %integration.unique_key, "SharePoint host discovery failed: {e}");
                    config.insert(
                        "sharepointTokenStatus".into(),
                        json!(format!(
                            "unavailable: {e}; reauthorize to obtain the SharePoint token"
                        )),
                    );
                    return;
                }
            },
        };
        let tenant = config
            .get("tenantId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| flow_tenant.to_owned());
        let token_url = provider.token_url(&self.config.microsoft, &tenant);
        let now = Utc::now().max(self.clock.now());
        match oauth::token_request(
            &self.http,
            &token_url,
            &integration.client_id,
            ClientAuth::of(integration),
            oauth::refresh_grant(&refresh_token, Some(&sharepoint::scope_for(&host))),
            now,
        )
        .await
        {
            Ok(t) => {
                if let Some(rt) = t.refresh_token {
                    credentials.refresh_token = Some(rt);
                }
                credentials.sharepoint = Some(ResourceToken {
                    access_token: t.access_token,
                    expires_at: t.expires_at,
                    token_type: t.token_type,
                    scope: t.scope,
                    host: host.clone(),
                });
                config.insert("sharepointHost".into(), json!(host));
                config.insert("sharepointTokenStatus".into(), json!("ok"));
            }
            Err(e) => {
                let c = microsoft::classify(&e);
                tracing::warn!(integration.key = %integration.unique_key, aadsts = ?c.aadsts, "SharePoint token request failed: {}", c.cause);
                credentials.sharepoint = None;
                config.insert(
                    "sharepointTokenStatus".into(),
                    json!(format!(
                        "unavailable: {} Reauthorize to obtain the SharePoint token.",
                        c.cause
                    )),
                );
            }
        }
    }
}
