//! Coalesced `last_fetched_at` writes. `GET /connections/{id}` is the hottest read of the API and
//! used to write its row on every call, which capped it at the database's commit rate. Instead,
//! `Store::note_fetched` records the time in memory (the latest per connection), and
//! `Store::flush_fetched` writes everything pending in one statement per batch: every
//! `FLUSH_EVERY` from the task `Store::spawn_fetched_flusher` starts, and once more on shutdown
//! (`server::start`).
//!
//! Precision: reads through this `Store` see pending values at once (`overlay`); the database —
//! and so other instances on PostgreSQL — lags by at most `FLUSH_EVERY` (plus the write), and a
//! crash loses at most that much. A flush never moves a stored value backwards.
//! The batched write is one of the few statements that differ per database (`touch_many`): how a
//! batch of (id, time) pairs is passed in (a JSON array on SQLite, two arrays on PostgreSQL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::db::{Db, Ts};
use super::{Error, Store, micros};
use crate::model::Connection;

/// How often pending `last_fetched_at` values are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Most rows per write statement.
const BATCH: usize = 5_000;

impl Db {
    /// Sets `last_fetched_at` of each `(row id, time)` unless the stored value is later; rows that
    /// no longer exist are skipped. One statement per batch.
    async fn touch_many(&self, touches: &[(i64, DateTime<Utc>)]) -> Result<(), Error> {
        if touches.is_empty() {
            return Ok(());
        }
        match self {
            Db::Sqlite(pool) => {
                // `[[id, "2025-01-31T12:00:00.000000Z"], …]`: stored timestamps are fixed-width
                // UTC text, so comparing them as text orders them in time.
                let batch = serde_json::Value::Array(
                    touches
                        .iter()
                        .map(|(id, at)| serde_json::json!([id, Ts(*at).sqlite_text()]))
                        .collect(),
                )
                .to_string();
                sqlx::query(
                    "UPDATE connections SET last_fetched_at = t.at \
                     FROM (SELECT value ->> 0 AS id, value ->> 1 AS at FROM json_each($1)) AS t \
                     WHERE connections.id = t.id \
                       AND (connections.last_fetched_at IS NULL OR connections.last_fetched_at < t.at)",
                )
                .bind(batch)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
            }
            Db::Postgres(pool) => {
                let (ids, ats): (Vec<i64>, Vec<DateTime<Utc>>) = touches.iter().copied().unzip();
                // Instances flushing overlapping rows at once may deadlock; PostgreSQL then fails
                // one flush, whose values stay pending for the next. The cache-notify trigger
                // ignores this column, so no notifications follow.
                sqlx::query(
                    "UPDATE connections AS c SET last_fetched_at = t.at \
                     FROM UNNEST($1::bigint[], $2::timestamptz[]) AS t(id, at) \
                     WHERE c.id = t.id AND (c.last_fetched_at IS NULL OR c.last_fetched_at < t.at)",
                )
                .bind(ids)
                .bind(ats)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
            }
        }
        .map_err(Error::Database)?;
        Ok(())
    }
}

/// Pending values and the lock that keeps flushes in order (so an older batch can never land
/// after a newer one).
#[derive(Default)]
pub(super) struct Touches {
    pending: Mutex<HashMap<i64, DateTime<Utc>>>,
    flushing: tokio::sync::Mutex<()>,
}

impl Touches {
    fn note(&self, id: i64, at: DateTime<Utc>) {
        let mut p = self.pending.lock().expect("touch lock poisoned");
        p.entry(id).and_modify(|t| *t = (*t).max(at)).or_insert(at);
    }

    /// The pending value of row `id`, when later than `stored`.
    fn latest(&self, id: i64, stored: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let p = self.pending.lock().expect("touch lock poisoned");
        match (p.get(&id).copied(), stored) {
            (Some(t), Some(s)) => Some(t.max(s)),
            (t, s) => t.or(s),
        }
    }

    fn take(&self) -> Vec<(i64, DateTime<Utc>)> {
        let mut p = self.pending.lock().expect("touch lock poisoned");
        if p.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut *p).into_iter().collect()
    }

    /// Puts back what a failed flush took, keeping later values noted meanwhile.
    fn restore(&self, touches: &[(i64, DateTime<Utc>)]) {
        for (id, at) in touches {
            self.note(*id, *at);
        }
    }
}

impl Store {
    /// Records that connection row `id` was fetched at `at`; written by the next flush.
    pub fn note_fetched(&self, id: i64, at: DateTime<Utc>) {
        self.touches.note(id, micros(at));
    }

    /// `c.last_fetched_at` including a pending (not yet written) value.
    pub(super) fn overlay_fetched(&self, c: &mut Connection) {
        c.last_fetched_at = self.touches.latest(c.id, c.last_fetched_at);
    }

    /// Writes every pending `last_fetched_at`; returns how many rows were written. On failure the
    /// values stay pending for the next flush.
    pub async fn flush_fetched(&self) -> Result<usize, Error> {
        flush(&self.touches, &self.db).await
    }

    /// Flushes every `FLUSH_EVERY` until the store is dropped or the handle aborted. Call
    /// `flush_fetched` once more at shutdown.
    pub fn spawn_fetched_flusher(&self) -> tokio::task::JoinHandle<()> {
        let touches: Weak<Touches> = Arc::downgrade(&self.touches);
        let db: Weak<Db> = Arc::downgrade(&self.db);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + FLUSH_EVERY, FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(t), Some(db)) = (touches.upgrade(), db.upgrade()) else {
                    return;
                };
                if let Err(e) = flush(&t, &db).await {
                    // Only a database error's text: ids and timestamps, never secrets.
                    let cause = std::error::Error::source(&e).map(ToString::to_string);
                    tracing::warn!(error = %e, cause, "writing last_fetched_at failed; will retry");
                }
            }
        })
    }
}

async fn flush(touches: &Touches, db: &Db) -> Result<usize, Error> {
    let _order = touches.flushing.lock().await;
    let mut batch = Unwritten {
        touches,
        rest: touches.take(),
    };
    let n = batch.rest.len();
    while !batch.rest.is_empty() {
        let len = batch.rest.len().min(BATCH);
        db.touch_many(&batch.rest[..len]).await?;
        batch.rest.drain(..len);
    }
    Ok(n)
}

/// What a flush took but has not written: put back when the flush fails or is cancelled (the
/// flusher aborted at shutdown), so nothing is lost. Writing a value twice is harmless.
struct Unwritten<'a> {
    touches: &'a Touches,
    rest: Vec<(i64, DateTime<Utc>)>,
}

impl Drop for Unwritten<'_> {
    fn drop(&mut self) {
        self.touches.restore(&self.rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn keeps_the_latest_value_per_row() {
        let touches = Touches::default();
        touches.note(1, t(5));
        touches.note(1, t(3));
        touches.note(2, t(1));
        assert_eq!(touches.latest(1, Some(t(4))), Some(t(5)));
        assert_eq!(touches.latest(1, Some(t(9))), Some(t(9)));
        assert_eq!(touches.latest(3, None), None);
        let mut taken = touches.take();
        taken.sort();
        assert_eq!(taken, vec![(1, t(5)), (2, t(1))]);
        assert!(touches.take().is_empty());
        touches.note(1, t(7));
        touches.restore(&taken);
        assert_eq!(touches.latest(1, None), Some(t(7)));
        assert_eq!(touches.latest(2, None), Some(t(1)));
    }
}
