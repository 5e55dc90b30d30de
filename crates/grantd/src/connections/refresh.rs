//! Fresh credentials on read, and the single-flight refresh every path uses (reads, the proxy,
//! the proactive job).
//!
//! A token expiring within the margin (or a forced refresh) is refreshed under two locks: a
//! per-connection async lock in this process (`Flights`), then the database's
//! (`Store::lock_for_refresh`: a PostgreSQL row lock held across the token call, so instances
//! sharing the database take turns). After each lock the connection is read again and, if someone
//! else already refreshed it, their result is used. The new credentials — the rotated refresh
//! token first of all — are committed before any caller sees the new access token.
//!
//! Failures are classified by `microsoft::classify`. Transient ones record a backoff
//! (`refresh_retry_at`) and never mark the connection broken while its access token is still
//! valid (that token is served meanwhile). Terminal ones (`reconnect`, `misconfigured`) are
//! recorded on the connection with the plain-language cause and AADSTS code, enqueue one
//! `refresh` failure webhook in the same transaction, and stop further attempts until a
//! reconnect (`upsert_connection`) clears them.
//!
//! Every refresh is counted in `metrics` (`grantd_refreshes_total`, failures by class in
//! `grantd_refresh_failures_total`), whoever asked for it: a read, the proxy or the proactive job.
//!
//! The Graph result is committed first; then the SharePoint token is minted from the refresh token
//! just stored and committed separately (compare-and-swap on the version), with the refresh token
//! that call returns (rotation). docs/security.md states the window that remains.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::flow::{CallbackError, Connected};
use super::{Core, Error};
use crate::catalog::Provider;
use crate::metrics::{self, RefreshOutcome};
use crate::microsoft::{self, Class, Classified, sharepoint};
use crate::model::{
    AuthFailure, ConfigKey, Connection, Credentials, FailureKind, Integration, ResourceToken,
};
use crate::oauth::{self, ClientAuth};
use crate::store::{RefreshFailure, RefreshLock};
use crate::webhooks::{self, AuthEvent, Operation};

/// Per-connection async locks for in-process single flight. Entries are weak, so finished
/// refreshes leave nothing behind.
#[derive(Default)]
pub struct Flights {
    locks: Mutex<HashMap<i64, Weak<tokio::sync::Mutex<()>>>>,
}

impl Flights {
    pub(super) fn lock_for(&self, id: i64) -> Arc<tokio::sync::Mutex<()>> {
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

/// Delay before the next refresh attempt after `failures` consecutive transient failures: 30 s
/// doubling, at most 30 minutes, plus up to 10 % jitter.
/// How long a token response is kept while the database is unavailable, waiting to be committed.
const COMMIT_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

pub fn refresh_backoff(failures: i32) -> TimeDelta {
    let base = 30i64
        .saturating_mul(1i64 << (failures - 1).clamp(0, 10))
        .min(1800);
    let jitter = rand::thread_rng().gen_range(0..=base / 10);
    TimeDelta::seconds(base + jitter)
}

/// The failure recorded on a connection, as the classification callers branch on.
fn recorded(f: &AuthFailure) -> Classified {
    Classified {
        class: f.kind,
        aadsts: f.aadsts,
        error: f.error.clone(),
        cause: f.description.clone(),
    }
}

impl Core {
    /// Whether the access token expires within the refresh margin (the one freshness rule; the
    /// hot path in `cached.rs` applies it too).
    pub(super) fn needs_refresh(&self, c: &Connection) -> bool {
        let margin =
            TimeDelta::from_std(self.config.refresh_margin).unwrap_or(TimeDelta::minutes(15));
        c.credentials
            .expires_at
            .is_some_and(|at| at <= self.clock.now() + margin)
    }

    fn token_valid(&self, c: &Connection, now: DateTime<Utc>) -> bool {
        c.credentials.expires_at.is_none_or(|at| at > now)
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
        self.refresh_single_flight(conn.id, Some(conn.version), force)
            .await
    }

    /// Refreshes connection `id` under the in-process and database locks. `seen_version` is the
    /// version the caller read: when the connection has moved past it and is fresh, that newer
    /// result is returned instead of refreshing again (even when `force`d). Without it, `force`
    /// always refreshes.
    pub async fn refresh_single_flight(
        &self,
        id: i64,
        seen_version: Option<i64>,
        force: bool,
    ) -> Result<Connection, Error> {
        let fresh_enough = |c: &Connection| {
            !self.needs_refresh(c) && (!force || seen_version.is_some_and(|v| v != c.version))
        };
        let flight = self.flights.lock_for(id);
        let _in_process = flight.lock().await;
        // A plain read first: another caller here or another instance may have refreshed while
        // we waited, and then nobody needs the database lock.
        let current = self
            .store
            .get_connection_by_id(id)
            .await?
            .ok_or(Error::UnknownConnection)?;
        if fresh_enough(&current) {
            return Ok(current);
        }
        let lock = self
            .store
            .lock_for_refresh(id)
            .await?
            .ok_or(Error::UnknownConnection)?;
        if fresh_enough(&lock.connection) {
            return Ok(lock.connection);
        }
        if let Some(f) = &lock.connection.auth_failure {
            if f.kind != FailureKind::Transient {
                // Recorded earlier: no further attempts until a reconnect clears it.
                return Err(Error::Refresh(recorded(f)));
            }
        }
        let now = self.clock.now();
        if let Some(retry_at) = lock.retry.retry_at.filter(|at| *at > now && !force) {
            // Backing off after transient failures: serve the still-valid token, else say so.
            if self.token_valid(&lock.connection, now) {
                return Ok(lock.connection);
            }
            return Err(Error::RefreshBackoff(Classified {
                class: Class::Transient,
                aadsts: None,
                error: None,
                cause: format!(
                    "Refreshing failed temporarily; grantd retries after {}.",
                    retry_at.to_rfc3339()
                ),
            }));
        }
        let before = lock.connection.version;
        let result = if self.is_app_only(&lock.connection) {
            // Application permissions: no refresh token, a new client-credentials token.
            self.refresh_app_only(lock).await
        } else if lock.connection.credentials.refresh_token.is_none() {
            return Ok(lock.connection);
        } else {
            self.refresh_locked(lock).await
        };
        // Failures are counted where they are recorded (`refresh_failed`); a transient one
        // returns the unchanged connection, a success the saved, newer one.
        if matches!(&result, Ok(c) if c.version > before) {
            metrics::refresh(RefreshOutcome::Ok);
        }
        result
    }

    /// After a reconnect (an OAuth callback that overrode a connection with new tokens): the
    /// idle clock of the proactive refresh restarts, so the new refresh token is not refreshed
    /// early for idleness counted from the old one. Never fails the callback.
    pub(super) async fn restart_idle_clock(&self, result: &Result<Connected, CallbackError>) {
        let Ok(Connected {
            connection: c,
            created: false,
            ..
        }) = result
        else {
            return;
        };
        if c.credentials.refresh_token.is_none() {
            return;
        }
        if let Err(e) = self
            .store
            .restart_idle_clock(c.id, c.version, self.clock.now())
            .await
        {
            tracing::warn!(connection.id = %c.connection_id, error = %e, "could not restart the idle clock of connection {}", c.connection_id);
        }
    }

    async fn refresh_locked(&self, lock: RefreshLock) -> Result<Connection, Error> {
        let conn = &lock.connection;
        let (integration, provider) = self.integration(&conn.provider_config_key).await?;
        let tenant = self.token_tenant(&integration, &provider, conn);
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
                return self
                    .refresh_failed(lock, microsoft::classify(&e), now)
                    .await;
            }
        };
        let credentials = Credentials {
            access_token: tokens.access_token,
            // Providers that do not rotate send no new refresh token: keep the old one.
            refresh_token: tokens.refresh_token.or(Some(refresh_token)),
            expires_at: tokens.expires_at,
            raw: tokens.raw,
            sharepoint: conn.credentials.sharepoint.clone(),
        };
        let id = conn.id;
        let version = conn.version;
        let config = conn.connection_config.clone();
        // The Graph result — the rotated refresh token above all — is committed before anything
        // else happens (issue 14, item 6): a crash from here on cannot lose it. When the
        // database went away while the token call ran (a restart drops the row lock with its
        // connection), the result is kept and committed once the database is back.
        let saved = match lock.save(&credentials, &config, now).await {
            Ok(saved) => saved,
            Err(e) if e.is_unavailable() => {
                tracing::warn!(
                    connection.id = id,
                    "the database went away during a refresh; committing its result when it is back"
                );
                self.save_if_unchanged_retrying(id, version, &credentials, &config)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        let saved = match saved {
            Some(saved) => saved,
            // Another writer won the race (e.g. a reconnect): theirs is newer.
            None => {
                return self
                    .store
                    .get_connection_by_id(id)
                    .await?
                    .ok_or(Error::UnknownConnection);
            }
        };
        tracing::info!(connection.id = %saved.connection_id, integration.key = %saved.provider_config_key, "refreshed connection {}", saved.connection_id);
        if !(provider.sharepoint_token && saved.credentials.sharepoint.is_some()) {
            return Ok(saved);
        }
        // The SharePoint token, a second token call redeeming the refresh token just stored, is
        // committed on its own, compare-and-swap on the version just written.
        let mut credentials = saved.credentials.clone();
        let mut config = match saved.connection_config.clone() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.obtain_sharepoint_token(
            &integration,
            &provider,
            &tenant,
            &mut credentials,
            &mut config,
            tokens.scope.as_deref(),
        )
        .await;
        match self
            .save_if_unchanged_retrying(id, saved.version, &credentials, &Value::Object(config))
            .await?
        {
            Some(again) => Ok(again),
            // Another writer (a reconnect, another instance's refresh) came first: theirs wins.
            None => self
                .store
                .get_connection_by_id(id)
                .await?
                .ok_or(Error::UnknownConnection),
        }
    }

    /// Commits a token response compare-and-swap on `version`, retrying while the database is
    /// unavailable (for up to `COMMIT_RETRY_FOR`): the response may hold a rotated refresh token
    /// that exists nowhere else. `None` when another writer moved the connection first.
    async fn save_if_unchanged_retrying(
        &self,
        id: i64,
        version: i64,
        credentials: &Credentials,
        config: &Value,
    ) -> Result<Option<Connection>, Error> {
        let give_up = tokio::time::Instant::now() + COMMIT_RETRY_FOR;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let saved = self
                .store
                .save_refreshed_if_unchanged(id, version, credentials, config, self.clock.now())
                .await;
            match saved {
                Err(e) if e.is_unavailable() && tokio::time::Instant::now() + pause < give_up => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(1));
                }
                other => return Ok(other?),
            }
        }
    }

    /// Records a failed refresh: transient → backoff (the still-valid token is served);
    /// terminal → auth failure + one `refresh` webhook, atomically.
    pub(super) async fn refresh_failed(
        &self,
        lock: RefreshLock,
        c: Classified,
        now: DateTime<Utc>,
    ) -> Result<Connection, Error> {
        let conn = lock.connection.clone();
        metrics::refresh(RefreshOutcome::Failed {
            cause: c.class.as_str(),
        });
        tracing::warn!(
            connection.id = %conn.connection_id,
            integration.key = %conn.provider_config_key,
            aadsts = ?c.aadsts,
            class = c.class.as_str(),
            "refresh failed for connection {}: {}",
            conn.connection_id,
            c.cause
        );
        if c.class == Class::Transient {
            let retry_at = now + refresh_backoff(lock.retry.failures + 1);
            lock.fail(RefreshFailure::Transient { retry_at }, now)
                .await?;
            if self.token_valid(&conn, now) {
                // The current token still works; a passing outage must not break anything.
                return Ok(conn);
            }
            return Err(Error::Refresh(c));
        }
        let failure = AuthFailure {
            kind: c.class,
            description: c.cause.clone(),
            aadsts: c.aadsts,
            error: c.error.clone(),
            at: now,
        };
        let webhook =
            webhooks::target_url(&self.config, conn.webhook_url_override.as_deref()).map(|url| {
                let body = AuthEvent::for_connection(
                    &conn,
                    Operation::Refresh,
                    Some(("refresh_token_external_error", &c.cause)),
                )
                .body();
                (url, body)
            });
        lock.fail(RefreshFailure::Terminal { failure, webhook }, now)
            .await?;
        Err(Error::Refresh(c))
    }

    /// The tenant to call the token endpoint on: the user's own tenant once known (required for
    /// tokens of other resources), else the flow's authority.
    pub(super) fn token_tenant(
        &self,
        integration: &Integration,
        provider: &Provider,
        conn: &Connection,
    ) -> String {
        let cfg = &conn.connection_config;
        cfg.get(ConfigKey::TenantId.as_str())
            .and_then(Value::as_str)
            .filter(|t| *t != crate::microsoft::MSA_TENANT_ID)
            .map(str::to_owned)
            .or_else(|| {
                provider.authority(
                    integration.pinned_tenant(),
                    cfg.get(ConfigKey::Tenant.as_str()).and_then(Value::as_str),
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
                ConfigKey::SharepointTokenStatus.as_str().into(),
                json!("not_requested: the connection was not granted Sites.Read.All, so no SharePoint token is issued"),
            );
            return;
        }
        let Some(refresh_token) = credentials.refresh_token.clone() else {
            config.insert(
                ConfigKey::SharepointTokenStatus.as_str().into(),
                json!("unavailable: no refresh token (offline_access missing)"),
            );
            return;
        };
        let host = match credentials.sharepoint.as_ref().map(|s| s.host.clone()) {
            Some(h) => h,
            None => match self
                .discover_sharepoint_host(config, &credentials.access_token)
                .await
            {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(integration.key = %integration.unique_key, "SharePoint host discovery failed: {e}");
                    config.insert(
                        ConfigKey::SharepointTokenStatus.as_str().into(),
                        json!(format!(
                            "unavailable: {e}; reauthorize to obtain the SharePoint token"
                        )),
                    );
                    return;
                }
            },
        };
        let tenant = config
            .get(ConfigKey::TenantId.as_str())
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| flow_tenant.to_owned());
        let token_url = provider.token_url(&self.config.microsoft, &tenant);
        let now = self.clock.now();
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
                config.insert(ConfigKey::SharepointHost.as_str().into(), json!(host));
                config.insert(
                    ConfigKey::SharepointTokenStatus.as_str().into(),
                    json!("ok"),
                );
            }
            Err(e) => {
                let c = microsoft::classify(&e);
                tracing::warn!(integration.key = %integration.unique_key, aadsts = ?c.aadsts, "SharePoint token request failed: {}", c.cause);
                credentials.sharepoint = None;
                config.insert(
                    ConfigKey::SharepointTokenStatus.as_str().into(),
                    json!(format!(
                        "unavailable: {} Reauthorize to obtain the SharePoint token.",
                        c.cause
                    )),
                );
            }
        }
    }
}
