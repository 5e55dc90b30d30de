//! The change feed's push side and schedule: one Graph subscription per watched drive root,
//! created at the end of a successful run against `{public_url}/sync/notifications` (with
//! lifecycle notifications at `/sync/lifecycle`) and renewed by a run once less than
//! `RENEW_BEFORE` remain; a notification, verified by its `clientState`, only asks for a
//! (coalesced) delta run of its drive. `run_due_syncs` is the schedule: drives without working
//! push are polled every `sync_poll_interval`, the others reconciled daily.
//!
//! `clientState` is not stored: it is an HMAC of the drive's row id under the secret key,
//! recomputed and compared in constant time (`Mac::verify_slice`) when a notification arrives.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Core, CredentialsOpts, Error};
use crate::model::Connection;
use crate::store::SyncDrive;

/// Where Graph posts change and lifecycle notifications (routes in `api::sync`).
pub const NOTIFY_PATH: &str = "/sync/notifications";
pub const LIFECYCLE_PATH: &str = "/sync/lifecycle";
/// Subscription lifetime asked for: within Graph's 42,300-minute maximum for drive items.
const SUBSCRIPTION_LIFETIME: TimeDelta = TimeDelta::minutes(42_000);
/// A run renews the subscription once less than this remains.
const RENEW_BEFORE: TimeDelta = TimeDelta::days(3);
/// Even with push working, a drive is reconciled by a delta run this often.
pub(super) const RECONCILE_EVERY: TimeDelta = TimeDelta::hours(24);

/// What became of a received notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// Verified: a run of its drive was asked for.
    Accepted,
    /// Unknown subscription or wrong `clientState`: ignored.
    Rejected,
}

impl Core {
    /// Whether drives are watched through Graph subscriptions (else polled).
    pub fn sync_push_enabled(&self) -> bool {
        self.config
            .lifecycle
            .sync_push
            .unwrap_or(self.config.public_url.scheme() == "https")
    }

    fn client_state_mac(&self, drive: i64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.config.secret_key.expose_secret().as_bytes())
                .expect("HMAC accepts keys of any length");
        mac.update(format!("grantd sync clientState {drive}").as_bytes());
        mac
    }

    fn client_state(&self, drive: i64) -> String {
        hex::encode(self.client_state_mac(drive).finalize().into_bytes())
    }

    /// The drive of `subscription_id` when `client_state` is its own (constant-time compare).
    async fn verified_drive(
        &self,
        subscription_id: &str,
        client_state: Option<&str>,
    ) -> Result<Option<SyncDrive>, Error> {
        let Some(drive) = self
            .store
            .sync_drive_by_subscription(subscription_id)
            .await?
        else {
            return Ok(None);
        };
        let given = client_state.and_then(|c| hex::decode(c).ok());
        let ok = given.is_some_and(|g| self.client_state_mac(drive.id).verify_slice(&g).is_ok());
        Ok(ok.then_some(drive))
    }

    /// A change notification: asks for a run of its drive (coalesced with any in progress).
    pub async fn sync_notification(
        &self,
        subscription_id: &str,
        client_state: Option<&str>,
    ) -> Result<Notification, Error> {
        let Some(drive) = self.verified_drive(subscription_id, client_state).await? else {
            crate::metrics::sync_notification(false);
            return Ok(Notification::Rejected);
        };
        crate::metrics::sync_notification(true);
        self.store
            .note_sync_notification(drive.id, self.clock.now())
            .await?;
        self.store.request_sync_run(drive.id, false).await?;
        self.spawn_sync_run(drive.id);
        Ok(Notification::Accepted)
    }

    /// A lifecycle notification: `reauthorizationRequired` renews (with a fresh token),
    /// `subscriptionRemoved` forgets the subscription so the next run creates a new one,
    /// `missed` runs delta; each asks for a run, which does the rest.
    pub async fn sync_lifecycle(
        &self,
        subscription_id: &str,
        client_state: Option<&str>,
        event: &str,
    ) -> Result<Notification, Error> {
        let Some(drive) = self.verified_drive(subscription_id, client_state).await? else {
            crate::metrics::sync_notification(false);
            return Ok(Notification::Rejected);
        };
        crate::metrics::sync_notification(true);
        let now = self.clock.now();
        match event {
            "subscriptionRemoved" => self.store.set_sync_subscription(drive.id, None).await?,
            // Due for renewal now: the run renews it.
            "reauthorizationRequired" => {
                self.store
                    .set_sync_subscription(drive.id, Some((subscription_id, now)))
                    .await?
            }
            _ => {}
        }
        self.store.request_sync_run(drive.id, false).await?;
        self.spawn_sync_run(drive.id);
        Ok(Notification::Accepted)
    }

    /// Creates or renews the drive's subscription when push is on and it is missing or due.
    /// Failures are logged: polling covers the drive meanwhile.
    pub(super) async fn ensure_subscription(
        &self,
        drive: &SyncDrive,
        conn: &Connection,
        graph: &str,
    ) {
        if !self.sync_push_enabled() {
            return;
        }
        if let Err(e) = self.try_ensure_subscription(drive, conn, graph).await {
            crate::metrics::sync_subscription("failed");
            tracing::warn!(
                sync.drive = drive.id,
                "change notifications not set up: {e}"
            );
        }
    }

    async fn try_ensure_subscription(
        &self,
        drive: &SyncDrive,
        conn: &Connection,
        graph: &str,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let expiry = now + SUBSCRIPTION_LIFETIME;
        if let (Some(id), Some(exp)) = (&drive.subscription_id, drive.subscription_expires_at) {
            if exp > now + RENEW_BEFORE {
                return Ok(());
            }
            let (status, body) = self
                .graph_json(
                    conn,
                    reqwest::Method::PATCH,
                    &format!("{graph}/v1.0/subscriptions/{id}"),
                    &json!({"expirationDateTime": graph_time(expiry)}),
                )
                .await?;
            match status {
                200 => {
                    crate::metrics::sync_subscription("renewed");
                    return self.save_subscription(drive.id, &body).await;
                }
                404 => {} // gone: create a new one
                s => {
                    return Err(Error::Invalid(format!(
                        "Microsoft Graph answered {s} to renewing the subscription"
                    )));
                }
            }
        }
        let base = self.config.public_url.as_str().trim_end_matches('/');
        let (status, body) = self
            .graph_json(
                conn,
                reqwest::Method::POST,
                &format!("{graph}/v1.0/subscriptions"),
                &json!({
                    "changeType": "updated",
                    "notificationUrl": format!("{base}{NOTIFY_PATH}"),
                    "lifecycleNotificationUrl": format!("{base}{LIFECYCLE_PATH}"),
                    "resource": super::sync::drive_root(&drive.drive_key),
                    "expirationDateTime": graph_time(expiry),
                    "clientState": self.client_state(drive.id),
                }),
            )
            .await?;
        if status != 201 {
            return Err(Error::Invalid(format!(
                "Microsoft Graph answered {status} to creating the subscription"
            )));
        }
        crate::metrics::sync_subscription("created");
        self.save_subscription(drive.id, &body).await
    }

    async fn save_subscription(&self, drive: i64, body: &Value) -> Result<(), Error> {
        let id = body.get("id").and_then(Value::as_str);
        let exp = body
            .get("expirationDateTime")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        match (id, exp) {
            (Some(id), Some(exp)) => Ok(self
                .store
                .set_sync_subscription(drive, Some((id, exp)))
                .await?),
            _ => Err(Error::Invalid(
                "Microsoft Graph's subscription has no id or expiry".into(),
            )),
        }
    }

    /// Deletes the Graph subscription of a drive no longer watched (best effort: an unknown
    /// subscription's notifications are refused anyway, and it expires on its own).
    pub(super) async fn drop_subscription(&self, drive: &SyncDrive, conn: &Connection) {
        let Some(id) = &drive.subscription_id else {
            return;
        };
        let result = async {
            let (_, provider) = self.integration(&conn.provider_config_key).await?;
            let graph = provider.proxy_base_url(&self.config.microsoft);
            self.graph_json(
                conn,
                reqwest::Method::DELETE,
                &format!("{graph}/v1.0/subscriptions/{id}"),
                &Value::Null,
            )
            .await
        }
        .await;
        match result {
            Ok((204 | 404, _)) => {}
            Ok((status, _)) => {
                tracing::warn!(
                    sync.drive = drive.id,
                    "subscription delete answered {status}"
                )
            }
            Err(e) => tracing::warn!(sync.drive = drive.id, "subscription not deleted: {e}"),
        }
    }

    /// A JSON call to Graph with the connection's fresh token: (status, body or null).
    async fn graph_json(
        &self,
        conn: &Connection,
        method: reqwest::Method,
        url: &str,
        body: &Value,
    ) -> Result<(u16, Value), Error> {
        let tenant = super::throttle::tenant_key(conn);
        self.throttle_admit(
            &tenant,
            crate::throttle::Priority::Background,
            super::throttle::BACKGROUND_MAX_WAIT,
        )
        .await?;
        let fresh = self
            .credentials(
                &conn.provider_config_key,
                &conn.connection_id,
                CredentialsOpts::default(),
            )
            .await?;
        let token = fresh
            .connection
            .credentials
            .access_token
            .expose_secret()
            .to_owned();
        let mut req = self.http.request(method, url).bearer_auth(token).json(body);
        if let Some(ua) = self.user_agent(&conn.provider_config_key).await {
            req = req.header(reqwest::header::USER_AGENT, ua);
        }
        let resp = req
            .send()
            .await
            .map_err(|_| Error::Invalid("Microsoft Graph could not be reached".into()))?;
        let status = resp.status().as_u16();
        self.throttle_observe(&tenant, status, resp.headers()).await;
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// When the schedule has a drive to run next (`now` if one is due; `None` without watched
    /// drives): `jobs` sleeps until then.
    pub async fn next_sync_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, Error> {
        let poll = TimeDelta::from_std(self.config.lifecycle.sync_poll_interval)
            .unwrap_or(TimeDelta::minutes(5));
        Ok(self.store.next_sync_due(now, poll, RECONCILE_EVERY).await?)
    }

    /// Resolves when a sync run of this instance ended (the schedule plans again).
    pub async fn sync_run_ended(&self) {
        self.store.sync_run_ended().await
    }

    /// The schedule's pass: leases the drives due at `now` (polling where push is not working,
    /// daily reconciliation where it is) and runs them in the background. Returns how many.
    pub async fn run_due_syncs(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let poll = TimeDelta::from_std(self.config.lifecycle.sync_poll_interval)
            .unwrap_or(TimeDelta::minutes(5));
        let lease = now + self.sync_lease();
        let due = self
            .store
            .claim_due_sync_drives(now, lease, now - poll, now - RECONCILE_EVERY, 32)
            .await?;
        let n = due.len();
        let (active, expired, none) = self.store.sync_subscription_states(now).await?;
        crate::metrics::sync_subscription_states(active, expired, none);
        for drive in due {
            let core = self.clone();
            self.spawn_background(async move {
                if let Err(e) = core.run_leased_then_more(drive, lease).await {
                    tracing::error!(error = %e, "scheduled sync run failed");
                }
            });
        }
        Ok(n)
    }
}

fn graph_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
