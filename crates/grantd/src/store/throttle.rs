//! Per-tenant throttling windows shared by every instance (table `tenant_throttle`, migration
//! `0011_tenant_throttle`): written when Microsoft answers 429/503 with `Retry-After`, read at
//! start and whenever the PostgreSQL listener reconnects, announced at once with
//! `NOTIFY grantd_throttle` (heard by `cache::listen`). SQLite is one process: the table is all
//! the sharing there is.

use chrono::{DateTime, Utc};

use super::db::{Db, Ts, execute, fetch};
use super::{Error, Store, micros};

impl Db {
    /// Announces a throttled tenant to every instance (PostgreSQL); nothing on SQLite.
    async fn announce_throttle(&self, payload: &str) -> Result<(), sqlx::Error> {
        if let Db::Postgres(pool) = self {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(super::cache::THROTTLE_CHANNEL)
                .bind(payload)
                .execute(pool)
                .await?;
        }
        Ok(())
    }
}

impl Store {
    /// Records that `tenant` is throttled until `until` (never shortening a longer window another
    /// instance recorded) and tells the other instances. Returns the window's end as stored.
    pub async fn throttle_tenant(
        &self,
        tenant: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, Error> {
        let stored: DateTime<Utc> = fetch!(
            &self.db,
            scalar fetch_one::<DateTime<Utc>>(
                "INSERT INTO tenant_throttle (tenant, blocked_until, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant) DO UPDATE SET
                   blocked_until = CASE WHEN excluded.blocked_until > tenant_throttle.blocked_until
                                        THEN excluded.blocked_until
                                        ELSE tenant_throttle.blocked_until END,
                   updated_at = excluded.updated_at
                 RETURNING blocked_until",
                tenant,
                Ts(micros(until)),
                Ts(micros(now)),
            )
        )?;
        let payload = format!("{tenant}|{}", stored.to_rfc3339());
        if let Err(e) = self.db.announce_throttle(&payload).await {
            tracing::warn!(error = %e, "could not announce a throttled tenant to other instances");
        }
        Ok(stored)
    }

    /// The tenants throttled beyond `now`, with the end of their window; drops ended windows.
    pub async fn throttled_tenants(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, Error> {
        execute!(
            &self.db,
            "DELETE FROM tenant_throttle WHERE blocked_until <= $1",
            Ts(micros(now)),
        )?;
        fetch!(
            &self.db,
            fetch_all::<(String, DateTime<Utc>)>(
                "SELECT tenant, blocked_until FROM tenant_throttle WHERE blocked_until > $1",
                Ts(micros(now)),
            )
        )
    }

    /// Throttle notices from any instance (`<tenant>|<RFC 3339 end>`), and an empty notice when
    /// the PostgreSQL listener (re)connected (read `throttled_tenants` again).
    pub fn throttle_notices(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.cache.throttle_notices.subscribe()
    }
}
