//! The proactive refresh job: one pass of `Core::run_due_refreshes` (see
//! `connections::due_refresh` for what is due and how leases split the work).

use chrono::{DateTime, Utc};

pub use crate::connections::due_refresh::RefreshRun;
use crate::connections::{Core, Error};

/// One pass at `now`: claims and refreshes until nothing is due.
pub async fn run_once(core: &Core, now: DateTime<Utc>) -> Result<RefreshRun, Error> {
    core.run_due_refreshes(now).await
}
