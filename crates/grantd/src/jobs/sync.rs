//! The change feed's schedule: one pass of `Core::run_due_syncs` (drives without working push
//! polled every `GRANTD_SYNC_POLL_SECS`, the others reconciled daily; leased through the
//! database so instances split the drives).

use chrono::{DateTime, Utc};

use crate::connections::{Core, Error};

pub async fn run_once(core: &Core, now: DateTime<Utc>) -> Result<usize, Error> {
    core.run_due_syncs(now).await
}
