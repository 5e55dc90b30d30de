//! Auth webhooks in Nango's shape (nango-api.md §8): the body (`type: auth`, operation
//! `creation` / `override` / `refresh`, success, error…) as compact key-sorted JSON, its two
//! signatures (`X-Nango-Hmac-Sha256` = HMAC-SHA256(key, body), `X-Nango-Signature` =
//! SHA-256(key ‖ body)), and delivery from the database outbox: at least once, retried with
//! exponential backoff on network errors and 5xx (a 3xx/4xx answer is final), surviving restarts
//! (the outbox row is the only state).
//!
//! Events are enqueued by `connections` (refresh failures, atomically with recording them; the
//! OAuth callback) and delivered by the `jobs` outbox runner through `deliver_due`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::model::{Connection, EndUser, Tags};
use crate::store::{self, Store};

/// Nango's environment name for the only environment grantd has.
pub const ENVIRONMENT: &str = "prod";
/// Attempts before a webhook is abandoned (about 13 hours of retries with the backoff below).
pub const MAX_ATTEMPTS: i32 = 18;
/// How long one delivery attempt may take (Nango: 20 s).
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// `creation`, `override` or `refresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Creation,
    Override,
    Refresh,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Creation => "creation",
            Operation::Override => "override",
            Operation::Refresh => "refresh",
        }
    }
}

/// What an auth webhook is about.
#[derive(Debug, Clone)]
pub struct AuthEvent<'a> {
    pub connection_id: &'a str,
    pub provider_config_key: &'a str,
    pub provider: &'a str,
    pub operation: Operation,
    /// `None` on success; `(type, description)` on failure.
    pub error: Option<(&'a str, &'a str)>,
    pub end_user: Option<&'a EndUser>,
    pub tags: Option<&'a Tags>,
}

impl<'a> AuthEvent<'a> {
    /// The event for a stored connection.
    pub fn for_connection(
        c: &'a Connection,
        operation: Operation,
        error: Option<(&'a str, &'a str)>,
    ) -> Self {
        AuthEvent {
            connection_id: c.connection_id.as_str(),
            provider_config_key: c.provider_config_key.as_str(),
            provider: &c.provider,
            operation,
            error,
            end_user: c.end_user.as_ref(),
            tags: Some(&c.tags),
        }
    }

    /// The webhook body: compact JSON with sorted keys, as Nango sends it.
    pub fn body(&self) -> String {
        use grantd_api::webhooks as wire;
        let failed_creation = self.error.is_some() && self.operation == Operation::Creation;
        let body = wire::Webhook::Auth(wire::AuthWebhook {
            from: "nango".into(),
            connection_id: self.connection_id.to_owned(),
            provider_config_key: self.provider_config_key.to_owned(),
            provider: self.provider.to_owned(),
            auth_mode: "OAUTH2".into(),
            environment: ENVIRONMENT.into(),
            operation: match self.operation {
                Operation::Creation => wire::AuthOperation::Creation,
                Operation::Override => wire::AuthOperation::Override,
                Operation::Refresh => wire::AuthOperation::Refresh,
            },
            success: self.error.is_none(),
            tags: self.tags.filter(|_| !failed_creation).cloned(),
            end_user: self.end_user.map(|eu| wire::WebhookEndUser {
                end_user_id: eu.id.clone(),
                end_user_email: eu.email.clone(),
                organization_id: eu.organization.as_ref().map(|o| o.id.clone()),
                tags: eu.tags.clone().unwrap_or_default(),
            }),
            error: self.error.map(|(kind, description)| wire::WebhookError {
                kind: kind.to_owned(),
                description: description.to_owned(),
            }),
        });
        canonical_json(&serde_json::to_value(body).unwrap_or_default())
    }
}

/// What a `sync` webhook reports: one committed batch of records.
#[derive(Debug, Clone)]
pub struct SyncEvent<'a> {
    pub connection_id: &'a str,
    pub provider_config_key: &'a str,
    pub sync_name: &'a str,
    pub model: &'a str,
    /// The first batch of a connection's first sync (`INITIAL`), else `INCREMENTAL`.
    pub initial: bool,
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
    /// When the batch was committed: `GET /records?modified_after=` this returns its records.
    pub at: DateTime<Utc>,
}

impl SyncEvent<'_> {
    /// Nango's `sync` webhook body: compact JSON with sorted keys.
    pub fn body(&self) -> String {
        use grantd_api::webhooks as wire;
        let at = self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let body = wire::Webhook::Sync(wire::SyncWebhook {
            from: "nango".into(),
            connection_id: self.connection_id.to_owned(),
            provider_config_key: self.provider_config_key.to_owned(),
            sync_name: self.sync_name.to_owned(),
            sync_variant: "base".into(),
            model: self.model.to_owned(),
            sync_type: if self.initial {
                "INITIAL"
            } else {
                "INCREMENTAL"
            }
            .into(),
            success: true,
            modified_after: Some(at.clone()),
            query_time_stamp: Some(at),
            response_results: Some(grantd_api::SyncResult {
                added: self.added,
                updated: self.updated,
                deleted: self.deleted,
            }),
            error: None,
        });
        canonical_json(&serde_json::to_value(body).unwrap_or_default())
    }
}

/// Compact JSON with object keys sorted at every level (whatever `serde_json`'s map order).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `(X-Nango-Hmac-Sha256, X-Nango-Signature)` for `body`: lowercase hex of
/// HMAC-SHA256(key, body) and of SHA-256(key ‖ body).
pub fn signatures(key: &str, body: &str) -> (String, String) {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body.as_bytes());
    let hmac = hex::encode(mac.finalize().into_bytes());
    let mut sha = Sha256::new();
    sha.update(key.as_bytes());
    sha.update(body.as_bytes());
    (hmac, hex::encode(sha.finalize()))
}

/// Where a connection's webhooks go: its override, else the configured URL.
pub fn target_url(config: &Config, webhook_url_override: Option<&str>) -> Option<String> {
    webhook_url_override
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .or_else(|| config.lifecycle.webhook_url.as_ref().map(|u| u.to_string()))
}

/// Delay before attempt `attempts + 1`: 30 s doubling per attempt, at most an hour, plus up to
/// 10 % jitter so a receiver coming back is not hit by every instance at once.
pub fn backoff(attempts: i32) -> Duration {
    let base = 30u64
        .saturating_mul(1u64 << attempts.clamp(0, 20))
        .min(3600);
    let jitter = rand::thread_rng().gen_range(0..=base / 10);
    Duration::from_secs(base + jitter)
}

/// Outcome of one `deliver_due` pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRun {
    pub delivered: usize,
    /// Failed and rescheduled (network error, timeout, 5xx).
    pub failed: usize,
    /// Given up after `MAX_ATTEMPTS`.
    pub abandoned: usize,
    /// Refused with a 3xx/4xx: recorded as failed for good, never retried (as Nango).
    pub rejected: usize,
}

/// Delivers every webhook due at `now` (oldest first, in batches), recording each outcome.
/// Network errors, timeouts and 5xx are retried later per `backoff`; after `MAX_ATTEMPTS` a
/// webhook is abandoned. A 3xx/4xx answer is not retried (as Nango): the webhook is recorded as
/// failed (abandoned, with the status as its last error) at once.
pub async fn deliver_due(
    store: &Store,
    http: &reqwest::Client,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<DeliveryRun, store::Error> {
    let key = match &config.lifecycle.webhook_signing_key {
        Some(k) => k.expose_secret().to_owned(),
        None => config.secret_key.expose_secret().to_owned(),
    };
    let allow_private = config.lifecycle.webhook_allow_private;
    let http = crate::outbound::webhook_client(allow_private).unwrap_or(http);
    let lease = now + TimeDelta::seconds(TIMEOUT.as_secs() as i64 * 3);
    let mut run = DeliveryRun::default();
    loop {
        let batch = store.claim_due_webhooks(now, lease, 32).await?;
        if batch.is_empty() {
            return Ok(run);
        }
        for item in batch {
            let sent = match crate::outbound::check_webhook_target(&item.url, allow_private).await {
                Ok(()) => send(http, &key, &item).await,
                Err(why) => Err(Undelivered::Rejected(format!("target not allowed: {why}"))),
            };
            match sent {
                Ok(()) => {
                    store.webhook_delivered(item.id, now).await?;
                    run.delivered += 1;
                }
                Err(Undelivered::Rejected(why)) => {
                    // Nango retries only network errors and 5xx: a 3xx/4xx is final.
                    tracing::warn!(
                        webhook.id = item.id,
                        "webhook {} refused by the receiver ({why}); not retried",
                        item.id
                    );
                    store.webhook_failed(item.id, None, &why, now).await?;
                    run.rejected += 1;
                }
                Err(Undelivered::Retry(why)) => {
                    let attempts = item.attempts + 1;
                    let next = (attempts < MAX_ATTEMPTS).then(|| {
                        now + TimeDelta::from_std(backoff(attempts - 1))
                            .unwrap_or(TimeDelta::hours(1))
                    });
                    tracing::warn!(
                        webhook.id = item.id,
                        attempts,
                        "webhook {} not delivered ({why}); {}",
                        item.id,
                        if next.is_some() {
                            "will retry"
                        } else {
                            "giving up"
                        }
                    );
                    store.webhook_failed(item.id, next, &why, now).await?;
                    if next.is_some() {
                        run.failed += 1;
                    } else {
                        run.abandoned += 1;
                    }
                }
            }
        }
    }
}

/// Why a delivery attempt failed, in words safe to store and log (no body, no key).
enum Undelivered {
    /// Network error, timeout or 5xx: try again later.
    Retry(String),
    /// The receiver answered 3xx or 4xx: final.
    Rejected(String),
}

/// One POST.
async fn send(
    http: &reqwest::Client,
    key: &str,
    item: &store::OutboxItem,
) -> Result<(), Undelivered> {
    let (hmac, legacy) = signatures(key, &item.body);
    let r = http
        .post(&item.url)
        .timeout(TIMEOUT)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("grantd/", env!("CARGO_PKG_VERSION"), " (nango-compatible)"),
        )
        .header("x-nango-hmac-sha256", hmac)
        .header("x-nango-signature", legacy)
        .header("x-grantd-delivery-id", item.id.to_string())
        .body(item.body.clone())
        .send()
        .await
        .map_err(|e| {
            if crate::outbound::is_refused(&e) {
                return Undelivered::Rejected("target resolves to a non-public address".into());
            }
            Undelivered::Retry(if e.is_timeout() {
                "timed out".to_owned()
            } else {
                "could not connect".to_owned()
            })
        })?;
    let status = r.status();
    let why = format!("receiver answered HTTP {}", status.as_u16());
    if status.is_success() {
        Ok(())
    } else if status.is_server_error() {
        Err(Undelivered::Retry(why))
    } else {
        Err(Undelivered::Rejected(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_compact_and_sorted() {
        let eu = EndUser {
            id: "u-1".into(),
            email: Some("a@b.c".into()),
            display_name: None,
            tags: None,
            organization: None,
        };
        let tags = Tags::from([
            ("z".to_owned(), "1".to_owned()),
            ("a".to_owned(), "é/x".to_owned()),
        ]);
        let body = AuthEvent {
            connection_id: "c-1",
            provider_config_key: "one-drive",
            provider: "one-drive",
            operation: Operation::Refresh,
            error: Some(("refresh_token_external_error", "revoked")),
            end_user: Some(&eu),
            tags: Some(&tags),
        }
        .body();
        assert_eq!(
            body,
            r#"{"authMode":"OAUTH2","connectionId":"c-1","endUser":{"endUserEmail":"a@b.c","endUserId":"u-1","tags":{}},"environment":"prod","error":{"description":"revoked","type":"refresh_token_external_error"},"from":"nango","operation":"refresh","provider":"one-drive","providerConfigKey":"one-drive","success":false,"tags":{"a":"é/x","z":"1"},"type":"auth"}"#
        );
        // Re-serialising the parsed body (what Nango's legacy check does) gives the same bytes.
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(canonical_json(&v), body);
    }

    #[test]
    fn failed_creation_has_no_tags() {
        let tags = Tags::new();
        let body = AuthEvent {
            connection_id: "c",
            provider_config_key: "k",
            provider: "p",
            operation: Operation::Creation,
            error: Some(("unknown", "x")),
            end_user: None,
            tags: Some(&tags),
        }
        .body();
        assert!(!body.contains("\"tags\""), "{body}");
        assert!(body.contains("\"success\":false"));
    }

    #[test]
    fn signatures_match_known_values() {
        // HMAC-SHA256 test vector (RFC 4231 case 2) and SHA-256("abc").
        let (hmac, _) = signatures("Jefe", "what do ya want for nothing?");
        assert_eq!(
            hmac,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let (_, legacy) = signatures("a", "bc");
        assert_eq!(
            legacy,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!((30..=33).contains(&backoff(0).as_secs()));
        assert!((60..=66).contains(&backoff(1).as_secs()));
        assert!((3600..=3960).contains(&backoff(30).as_secs()));
    }
}
