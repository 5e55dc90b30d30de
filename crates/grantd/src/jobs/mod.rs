//! Background jobs: the proactive refresh scheduler (`refresh`), webhook outbox delivery
//! (`outbox`) and the change feed's schedule (`sync`). Each job is one idempotent pass,
//! `run_once(core, now)`, that tests call directly with a driven clock; `spawn` runs them every
//! `jobs_interval` (with jitter, so instances started together spread out) for `grantd serve`
//! and `grantd dev`.
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
            if let Err(e) = outbox::run_once(&core, now).await {
                tracing::error!(error = %error_chain(&e), "webhook delivery pass failed");
            }
            if let Err(e) = sync::run_once(&core, core.clock.now()).await {
                tracing::error!(error = %error_chain(&e), "sync schedule pass failed");
            }
        }
    })
}
