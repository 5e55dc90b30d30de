//! The webhook outbox job: one pass of `Core::deliver_due_webhooks`.

use chrono::{DateTime, Utc};

use crate::connections::{Core, Error};
pub use crate::webhooks::DeliveryRun;

pub async fn run_once(core: &Core, now: DateTime<Utc>) -> Result<DeliveryRun, Error> {
    core.deliver_due_webhooks(now).await
}
