//! The proactive refresh use case (`jobs::refresh` runs it on a timer). One pass
//! (`Core::run_due_refreshes(now)`) leases due connections in batches
//! — refresh token idle for `idle_refresh_after` (default 30 days, far inside Microsoft's 90-day
//! inactivity limit), or, when `proactive_refresh_window` is set, access token expiring within it
//! — and refreshes them with bounded concurrency through the same single flight as reads. Leases
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL) keep instances from doing the same work twice.

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;

use super::{Core, Error};

/// How long a claimed connection stays reserved for the instance that claimed it.
const LEASE: TimeDelta = TimeDelta::minutes(5);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRun {
    /// Connections this instance leased.
    pub claimed: usize,
    /// Refreshed by this pass.
    pub refreshed: usize,
    /// Already fresh (someone refreshed it meanwhile) or nothing to refresh with.
    pub skipped: usize,
    /// Refresh failed (recorded on the connection: backoff or auth failure).
    pub failed: usize,
}

enum Outcome {
    Refreshed,
    Skipped,
    Failed,
}

impl Core {
    /// One pass at `now`: claims and refreshes until nothing is due.
    pub async fn run_due_refreshes(&self, now: DateTime<Utc>) -> Result<RefreshRun, Error> {
        run_once(self, now).await
    }
}

async fn run_once(core: &Core, now: DateTime<Utc>) -> Result<RefreshRun, Error> {
    let lc = &core.config.lifecycle;
    let idle = TimeDelta::from_std(lc.idle_refresh_after).unwrap_or(TimeDelta::days(30));
    let window = lc
        .proactive_refresh_window
        .and_then(|w| TimeDelta::from_std(w).ok());
    let concurrency = lc.refresh_concurrency.max(1);
    let batch = u32::try_from(concurrency * 8).unwrap_or(32);
    let mut run = RefreshRun::default();
    loop {
        let ids = core
            .store
            .claim_due_refreshes(now, window.map(|w| now + w), now - idle, now + LEASE, batch)
            .await?;
        if ids.is_empty() {
            return Ok(run);
        }
        run.claimed += ids.len();
        let outcomes: Vec<Result<Outcome, Error>> = futures::stream::iter(ids)
            .map(|id| refresh_one(core, id))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for o in outcomes {
            match o? {
                Outcome::Refreshed => run.refreshed += 1,
                Outcome::Skipped => run.skipped += 1,
                Outcome::Failed => run.failed += 1,
            }
        }
    }
}

async fn refresh_one(core: &Core, id: i64) -> Result<Outcome, Error> {
    let Some(conn) = core.store.get_connection_by_id(id).await? else {
        return Ok(Outcome::Skipped);
    };
    if conn.credentials.refresh_token.is_none() {
        return Ok(Outcome::Skipped);
    }
    match core
        .refresh_single_flight(id, Some(conn.version), true)
        .await
    {
        Ok(c) if c.version != conn.version && c.last_refreshed_at.is_some() => {
            Ok(Outcome::Refreshed)
        }
        Ok(_) => Ok(Outcome::Skipped),
        Err(Error::Refresh(_)) => Ok(Outcome::Failed),
        // Claims skip connections backing off; one that started meanwhile is left for later.
        Err(Error::RefreshBackoff(_)) => Ok(Outcome::Skipped),
        Err(Error::UnknownConnection) => Ok(Outcome::Skipped),
        Err(e) => Err(e),
    }
}
