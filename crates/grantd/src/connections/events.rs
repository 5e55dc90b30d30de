//! Auth webhooks for the OAuth callback: `creation` (new connection) or `override` (reconnect of
//! an existing one), success or failure, and for imports through `POST /connections` (success
//! only, as Nango), queued in the outbox for delivery by the jobs. Refresh failure webhooks are
//! queued by `refresh` atomically with recording the failure.

use super::Core;
use super::flow::{CallbackError, Connected};
use crate::model::{Connection, ConnectionId, ProviderConfigKey};
use crate::webhooks::{self, AuthEvent, Operation};

impl Core {
    /// Queues the webhook for a finished callback. Never fails the callback: a queueing error is
    /// logged (the connection itself was stored or not regardless).
    pub(super) async fn connect_webhook(&self, result: &Result<Connected, CallbackError>) {
        let queued = match result {
            Ok(c) => {
                let conn = &c.connection;
                let Some(url) =
                    webhooks::target_url(&self.config, conn.webhook_url_override.as_deref())
                else {
                    return;
                };
                let op = if c.created {
                    Operation::Creation
                } else {
                    Operation::Override
                };
                let body = AuthEvent::for_connection(conn, op, None).body();
                self.store
                    .enqueue_webhook(&url, &body, self.clock.now())
                    .await
            }
            Err(CallbackError::Flow(f)) => {
                let (Some(key), Some(cid)) = (&f.provider_config_key, &f.connection_id) else {
                    return;
                };
                let (Ok(key), Ok(cid)) = (ProviderConfigKey::parse(key), ConnectionId::parse(cid))
                else {
                    return;
                };
                // A failed reconnect of a live connection is an `override` failure.
                let existing = self.store.get_connection(&key, &cid).await.ok().flatten();
                let Some(url) = webhooks::target_url(
                    &self.config,
                    existing
                        .as_ref()
                        .and_then(|c| c.webhook_url_override.as_deref()),
                ) else {
                    return;
                };
                let provider = match self.integration(&key).await {
                    Ok((i, _)) => i.provider,
                    Err(_) => "unknown".to_owned(),
                };
                let body = AuthEvent {
                    connection_id: cid.as_str(),
                    provider_config_key: key.as_str(),
                    provider: &provider,
                    operation: if existing.is_some() {
                        Operation::Override
                    } else {
                        Operation::Creation
                    },
                    // Nango's webhook names a refusal or error at the callback
                    // `invalid_callback` (the browser's `callback_err`).
                    error: Some((webhook_error_type(f.error_type), &f.message)),
                    end_user: existing.as_ref().and_then(|c| c.end_user.as_ref()),
                    tags: existing.as_ref().map(|c| &c.tags),
                }
                .body();
                self.store
                    .enqueue_webhook(&url, &body, self.clock.now())
                    .await
            }
            Err(_) => return,
        };
        if let Err(e) = queued {
            tracing::error!(error = %e, "could not queue the auth webhook");
        }
    }

    /// Queues the success webhook of an imported connection: `creation` when `created`, else
    /// `override`. Never fails the import: a queueing error is logged.
    pub async fn import_webhook(&self, conn: &Connection, created: bool) {
        let Some(url) = webhooks::target_url(&self.config, conn.webhook_url_override.as_deref())
        else {
            return;
        };
        let op = if created {
            Operation::Creation
        } else {
            Operation::Override
        };
        let body = AuthEvent::for_connection(conn, op, None).body();
        if let Err(e) = self
            .store
            .enqueue_webhook(&url, &body, self.clock.now())
            .await
        {
            tracing::error!(connection.id = %conn.connection_id, error = %e, "could not queue the import webhook");
        }
    }
}

/// The webhook's error type for a failed callback: Nango's `invalid_callback` where the browser
/// is told `callback_err`; other types as they are.
fn webhook_error_type(browser_type: &'static str) -> &'static str {
    match browser_type {
        "callback_err" => "invalid_callback",
        other => other,
    }
}
