//! Expiry of integrations' app credentials (the client secret's recorded expiry, or the
//! certificate's notAfter). `expiry` computes the state shown in `/integrations`; `check_all`
//! gives each warning once — 30, 14 and 3 days ahead, and on expiry — as a log line and a webhook
//! (`type: "credentials_expiry"`), the "given" mark being a compare-and-swap in the store so
//! several instances warn once between them. Each check also sets the metrics: days left per
//! integration (`grantd_integration_credentials_expiry_days`) and warnings given by stage.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Core, Error};
use crate::model::{Integration, ProviderConfigKey};

/// Days ahead at which a warning is given.
pub const WARN_DAYS: [i32; 3] = [30, 14, 3];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryState {
    Ok,
    Expiring,
    Expired,
}

impl ExpiryState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryState::Ok => "ok",
            ExpiryState::Expiring => "expiring",
            ExpiryState::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub expires_at: DateTime<Utc>,
    /// Whole days left (rounded down); negative once expired.
    pub days_left: i64,
    pub state: ExpiryState,
    /// `client_secret` or `certificate`.
    pub credential: &'static str,
    /// The warning due now: 30, 14, 3, or 0 when expired; `None` while more than 30 days remain.
    pub stage: Option<i32>,
}

pub fn expiry(i: &Integration, now: DateTime<Utc>) -> Option<Expiry> {
    let (expires_at, credential) = i.app_credential.expires_at()?;
    let left = expires_at - now;
    let days_left =
        left.num_days() - i64::from(left.num_seconds() < 0 && left.num_seconds() % 86_400 != 0);
    let stage = if left.num_seconds() <= 0 {
        Some(0)
    } else {
        WARN_DAYS
            .iter()
            .rev()
            .find(|d| left.num_seconds() <= i64::from(**d) * 86_400)
            .copied()
    };
    let state = match stage {
        Some(0) => ExpiryState::Expired,
        Some(_) => ExpiryState::Expiring,
        None => ExpiryState::Ok,
    };
    Some(Expiry {
        expires_at,
        days_left,
        state,
        credential,
        stage,
    })
}

impl Core {
    /// Gives the expiry warnings that are due at `now` and not given yet (log + webhook); returns
    /// how many were given. Idempotent; called from `/integrations` reads and the job runner.
    pub async fn check_credential_expiry(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let mut given = 0;
        for i in self.store.list_integrations().await? {
            let e = expiry(&i, now);
            crate::metrics::credentials_expiry_days(
                i.unique_key.as_str(),
                e.as_ref().map(|e| {
                    let days = (e.expires_at - now).num_seconds() as f64 / 86_400.0;
                    (e.credential, days)
                }),
            );
            let Some(e) = e else { continue };
            let warned = i.app_credential.expiry_warned_days;
            if e.stage == warned || e.stage.is_none() && warned.is_none() {
                continue;
            }
            // A later stage only: a credential replaced with a longer-lived one restarts at None.
            let newer = match (e.stage, warned) {
                (Some(s), Some(w)) => s < w,
                (Some(_), None) => true,
                (None, Some(_)) => true,
                (None, None) => false,
            };
            if !newer || !self.store.mark_expiry_warned(i.id, warned, e.stage).await? {
                continue;
            }
            let Some(stage) = e.stage else { continue };
            given += 1;
            crate::metrics::credentials_expiry_warning(stage);
            let what = if e.credential == "certificate" {
                "certificate"
            } else {
                "client secret"
            };
            if stage == 0 {
                tracing::error!(integration.key = %i.unique_key, credential = e.credential, expires_at = %e.expires_at, "app misconfigured: the {what} of integration {} expired on {}; create a new one in Entra ID and update the integration", i.unique_key, e.expires_at.date_naive());
            } else {
                tracing::warn!(integration.key = %i.unique_key, credential = e.credential, expires_at = %e.expires_at, days_left = e.days_left, "the {what} of integration {} expires in {} days (on {}); create a new one in Entra ID and update the integration", i.unique_key, e.days_left, e.expires_at.date_naive());
            }
            if let Some(url) = crate::webhooks::target_url(&self.config, None) {
                let body = json!({
                    "type": "credentials_expiry",
                    "from": "grantd",
                    "providerConfigKey": i.unique_key.as_str(),
                    "provider": i.provider,
                    "credential": e.credential,
                    "expiresAt": e.expires_at.to_rfc3339(),
                    "daysLeft": e.days_left,
                    "state": e.state.as_str(),
                });
                self.store
                    .enqueue_webhook(&url, &crate::webhooks::canonical_json(&body), now)
                    .await?;
            }
        }
        Ok(given)
    }
}

impl Core {
    /// After an integration's app credentials were replaced: clears the `misconfigured` failures
    /// of its connections (e.g. AADSTS7000222, secret expired) so the next read retries with the
    /// new credentials. Failures only the user can fix (`reconnect`) stay. Returns how many.
    pub async fn app_credentials_updated(&self, key: &ProviderConfigKey) -> Result<usize, Error> {
        let n = self
            .store
            .clear_misconfigured(key.as_str(), self.clock.now())
            .await?;
        if n > 0 {
            tracing::info!(integration.key = %key, connections = n, "app credentials of integration {key} updated: cleared the misconfigured state of {n} connections");
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn integration(expires_at: DateTime<Utc>) -> Integration {
        Integration::for_tests("one-drive-app", Some(expires_at), expires_at)
    }

    #[test]
    fn stages() {
        let now = Utc::now();
        let at = |d: i64, h: i64| {
            expiry(
                &integration(now + TimeDelta::days(d) + TimeDelta::hours(h)),
                now,
            )
            .unwrap()
        };
        assert_eq!((at(40, 0).stage, at(40, 0).state), (None, ExpiryState::Ok));
        assert_eq!(at(30, 1).stage, None);
        assert_eq!(at(30, 0).stage, Some(30));
        assert_eq!(at(29, 0).days_left, 29);
        assert_eq!(at(14, 0).stage, Some(14));
        assert_eq!(at(3, 0).stage, Some(3));
        assert_eq!(at(0, 1).stage, Some(3));
        assert_eq!(
            (at(0, 0).stage, at(0, 0).state),
            (Some(0), ExpiryState::Expired)
        );
        assert_eq!(at(-2, 0).days_left, -2);
    }
}
