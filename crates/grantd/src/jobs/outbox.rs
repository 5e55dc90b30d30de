//! The webhook outbox job: one pass delivers every due webhook (`webhooks::deliver_due`).

use chrono::{DateTime, Utc};

use crate::connections::{Core, Error};
use crate::webhooks::{self, DeliveryRun};

pub async fn run_once(core: &Core, now: DateTime<Utc>) -> Result<DeliveryRun, Error> {
    Ok(webhooks::deliver_due(&core.store, &core.http, &core.config, now).await?)
}
