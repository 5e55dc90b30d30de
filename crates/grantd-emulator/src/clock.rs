//! The emulator's clock: real time plus an offset that the control API can advance, so tests can
//! age tokens (expiry, 90-day inactivity) without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    /// Unix seconds on the emulator's clock.
    pub fn unix(&self) -> i64 {
        self.now().timestamp()
    }

    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        self.offset_secs.store(0, Ordering::Relaxed);
    }
}
