//! Background jobs: the proactive refresh scheduler (`refresh`), webhook outbox delivery
//! (`outbox`) and the change feed's schedule (`sync`). Each job is one idempotent pass,
//! `run_once(core, now)`, that tests call directly with a driven clock; `spawn` runs them every
//! `jobs_interval` (with jitter, so instances started together spread out) for `grantd serve`
//! and `grantd dev`, and runs the outbox pass also as soon as a webhook is queued
//! (`Core::webhook_queued`: after the commit, in this process or, on PostgreSQL, in another
//! instance), so webhooks leave right away and the timer only retries.
//!
//! Invariant: jobs hold no state of their own; everything they need to resume after a crash is
//! in the database (leases, retry times, the outbox).

pub mod outbox;
pub mod refresh;
pub mod sync;

use std::time::Duration;

use rand::Rng;
use tokio::task::JoinHandle;

use crate::connections::Core;
use crate::edge::error_chain;

/// Runs the jobs until the returned task is aborted (or the runtime stops).
pub fn spawn(core: Core) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::join!(timed(core.clone()), deliveries(core.clone()), syncs(core));
    })
}

/// The outbox pass, woken by each queued webhook and at least every `jobs_interval` (retries).
async fn deliveries(core: Core) {
    let interval = core.config.lifecycle.jobs_interval;
    loop {
        let jitter_ms = rand::thread_rng().gen_range(0..=interval.as_millis() as u64 / 5);
        tokio::select! {
            _ = core.webhook_queued() => {}
            _ = tokio::time::sleep(interval + Duration::from_millis(jitter_ms)) => {}
        }
        if let Err(e) = outbox::run_once(&core, core.clock.now()).await {
            tracing::error!(error = %error_chain(&e), "webhook delivery pass failed");
        }
    }
}

/// The change feed's schedule: a pass when the next drive is due (never later than
/// `jobs_interval` after the previous pass), planned again whenever one of this instance's runs
/// ends.
async fn syncs(core: Core) {
    let interval = core.config.lifecycle.jobs_interval;
    // Started with the other jobs, after a first interval (as `timed`).
    let jitter_ms = rand::thread_rng().gen_range(0..=interval.as_millis() as u64 / 5);
    tokio::time::sleep(interval + Duration::from_millis(jitter_ms)).await;
    loop {
        if let Err(e) = sync::run_once(&core, core.clock.now()).await {
            tracing::error!(error = %error_chain(&e), "sync schedule pass failed");
        }
        let now = core.clock.now();
        let wait = match core.next_sync_due(now).await {
            Ok(Some(due)) => (due - now).to_std().unwrap_or_default().min(interval),
            Ok(None) => interval,
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "sync schedule planning failed");
                interval
            }
        };
        tokio::select! {
            _ = core.sync_run_ended() => {}
            // Not sooner than a few milliseconds: a due drive another instance is claiming
            // does not make this one spin.
            _ = tokio::time::sleep(wait.max(MIN_SYNC_WAIT)) => {}
        }
    }
}

/// The shortest pause between two passes of the change feed's schedule.
const MIN_SYNC_WAIT: Duration = Duration::from_millis(50);

/// The refresh pass and the credential expiry check, every `jobs_interval`.
async fn timed(core: Core) {
    let interval = core.config.lifecycle.jobs_interval;
    loop {
        let jitter_ms = rand::thread_rng().gen_range(0..=interval.as_millis() as u64 / 5);
        tokio::time::sleep(interval + Duration::from_millis(jitter_ms)).await;
        let now = core.clock.now();
        if let Err(e) = refresh::run_once(&core, now).await {
            tracing::error!(error = %error_chain(&e), "proactive refresh pass failed");
        }
        let now = core.clock.now();
        if let Err(e) = core.check_credential_expiry(now).await {
            tracing::error!(error = %error_chain(&e), "credential expiry check failed");
        }
    }
}
